/*
 * test_buf.c - unit tests for the growable byte buffer (runtime/buf.c):
 * appends keep a NUL after the bytes, growth keeps what was written,
 * shift drops the front, a request that cannot fit is refused with the
 * buffer unchanged, and free is safe twice. Relies on check.h.
 */
#include "weir/buf.h"

#include <stdint.h>

#include "check.h"

int main(void)
{
    weir_buf b = {0};
    char big[1000];
    size_t cap;

    CHECK_EQ_INT(weir_buf_append(&b, NULL, 0), WEIR_OK);
    CHECK(b.data != NULL && b.len == 0 && b.data[0] == '\0');

    CHECK_EQ_INT(weir_buf_append(&b, "ab", 2), WEIR_OK);
    CHECK_EQ_INT(weir_buf_putc(&b, 'c'), WEIR_OK);
    CHECK_EQ_INT(b.len, 3);
    CHECK_EQ_STR(b.data, "abc");

    /* growth past the first block keeps every byte */
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(weir_buf_append(&b, big, sizeof big), WEIR_OK);
    CHECK_EQ_INT(b.len, 3 + 5 * sizeof big);
    CHECK(b.cap > b.len);
    CHECK(memcmp(b.data, "abc", 3) == 0);
    CHECK(memcmp(b.data + 3 + 4 * sizeof big, big, sizeof big) == 0);
    CHECK(b.data[b.len] == '\0');

    /* reserve: room for the bytes and the NUL, nothing appended */
    CHECK_EQ_INT(weir_buf_reserve(&b, 100000), WEIR_OK);
    CHECK(b.cap >= b.len + 100001);
    CHECK_EQ_INT(b.len, 3 + 5 * sizeof big);
    cap = b.cap;
    CHECK_EQ_INT(weir_buf_reserve(&b, 10), WEIR_OK);
    CHECK_EQ_INT(b.cap, cap);

    /* too much to ever fit: refused, the buffer as it was */
    CHECK_EQ_INT(weir_buf_reserve(&b, SIZE_MAX), WEIR_ENOMEM);
    CHECK_EQ_INT(weir_buf_reserve(&b, SIZE_MAX - b.len), WEIR_ENOMEM);
    CHECK_EQ_INT(b.cap, cap);
    CHECK(memcmp(b.data, "abc", 3) == 0);

    /* shift drops consumed bytes from the front, truncate from the end */
    weir_buf_shift(&b, 2);
    CHECK_EQ_INT(b.len, 1 + 5 * sizeof big);
    CHECK(b.data[0] == 'c' && b.data[1] == 'a');
    CHECK(b.data[b.len] == '\0');
    weir_buf_shift(&b, 0);
    CHECK(b.data[0] == 'c');
    weir_buf_truncate(&b, 1);
    CHECK_EQ_STR(b.data, "c");
    weir_buf_shift(&b, 1);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_STR(b.data, "");

    weir_buf_free(&b);
    weir_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    return CHECK_DONE();
}
