/*
 * buf.h - the growable byte buffer every C unit builds bytes in: frames
 * queued for a worker socket (exec.c), Redis commands not yet sent,
 * weir._ser records, PostgreSQL COPY data, YAML paths. Internal C only, no
 * FFI. Relies on weir/common.h and libc's realloc.
 */
#ifndef WEIR_BUF_H
#define WEIR_BUF_H

#include "weir/common.h"

#include <stddef.h>
#include <string.h>

/* Zero-initialise it (`weir_buf b = {0}`); free with weir_buf_free. The
 * buffer owns data. After any append through these functions data[len]
 * is '\0' (the byte is reserved, not counted in len), so text built in
 * it is a C string; bytes written straight into data + len after a
 * reserve are the caller's to terminate if it needs that. */
typedef struct {
    char *data;
    size_t len, cap;
} weir_buf;

/* Make room for `extra` more bytes plus a terminating NUL, growing by
 * doubling from 256 bytes. WEIR_OK, or WEIR_ENOMEM with the buffer
 * unchanged. */
int weir_buf_reserve(weir_buf *b, size_t extra);

/* Drop the first n bytes (n <= len), moving the rest to the front: for
 * queues that send or parse from the front. */
void weir_buf_shift(weir_buf *b, size_t n);

/* Free the memory and zero the struct; safe twice. */
void weir_buf_free(weir_buf *b);

/* Append n bytes of p (borrowed; may be NULL when n is 0) and keep the
 * NUL. WEIR_OK or WEIR_ENOMEM (nothing appended then). Inline: the common
 * case, room already there, is a copy. */
static inline int weir_buf_append(weir_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len <= n && weir_buf_reserve(b, n) != WEIR_OK)
        return WEIR_ENOMEM;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return WEIR_OK;
}

/* Append one byte. WEIR_OK or WEIR_ENOMEM. */
static inline int weir_buf_putc(weir_buf *b, char c)
{
    if (b->cap - b->len <= 1 && weir_buf_reserve(b, 1) != WEIR_OK)
        return WEIR_ENOMEM;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return WEIR_OK;
}

/* Cut the buffer back to len bytes (len <= b->len), NUL kept. */
static inline void weir_buf_truncate(weir_buf *b, size_t len)
{
    b->len = len;
    if (b->data != NULL)
        b->data[len] = '\0';
}

#endif
