/*
 * hash.h - digests and randomness from OpenSSL's libcrypto.
 */
#ifndef WEIR_HASH_H
#define WEIR_HASH_H

#include "weir/common.h"

/* weir:cdef:begin */
/* SHA-256 of data (len bytes) as 64 lowercase hex chars plus NUL in out
 * (caller's buffer of at least 65 bytes). */
WEIR_API int weir_ffi_sha256_hex(const char *data, size_t len, char *out);
/* len cryptographically random bytes into out (caller's buffer). */
WEIR_API int weir_ffi_random(uint8_t *out, size_t len);
/* weir:cdef:end */

#endif
