/*
 * buf.c - the growable byte buffer (see buf.h). Relies on libc only.
 */
#include "weir/buf.h"

#include <stdint.h>
#include <stdlib.h>

int weir_buf_reserve(weir_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > SIZE_MAX - b->len - 1)
        return WEIR_ENOMEM;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return WEIR_OK;
    cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (p == NULL)
        return WEIR_ENOMEM;
    b->data = p;
    b->cap = cap;
    return WEIR_OK;
}

void weir_buf_shift(weir_buf *b, size_t n)
{
    if (n == 0)
        return;
    memmove(b->data, b->data + n, b->len - n);
    weir_buf_truncate(b, b->len - n);
}

void weir_buf_free(weir_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
