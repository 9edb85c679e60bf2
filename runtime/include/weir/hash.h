/*
 * hash.h - digests, MACs, password hashing and randomness from OpenSSL's
 * libcrypto. Inputs are pointer + length, borrowed for the call; outputs
 * go to caller's buffers. Nothing is allocated for the caller to free.
 */
#ifndef WEIR_HASH_H
#define WEIR_HASH_H

#include "weir/common.h"

/* weir:cdef:begin */
/* SHA-256 of data (len bytes) as 64 lowercase hex chars plus NUL in out
 * (caller's buffer of at least 65 bytes). */
WEIR_API int weir_ffi_sha256_hex(const char *data, size_t len, char *out);
/* SHA-256 of data (len bytes) as 32 raw bytes in out (caller's buffer of
 * at least 32 bytes). data may be NULL when len is 0. */
WEIR_API int weir_ffi_sha256(const char *data, size_t len, uint8_t *out);
/* HMAC-SHA256 (RFC 2104) of data under key as 32 raw bytes in out
 * (caller's buffer of at least 32 bytes). key and data may be NULL when
 * their length is 0. */
WEIR_API int weir_ffi_hmac_sha256(const char *key, size_t keylen,
                                  const char *data, size_t len,
                                  uint8_t *out);
/* PBKDF2-HMAC-SHA256 (RFC 8018) of the password pw with salt and
 * iterations (>= 1): outlen bytes (1..1024) in out (caller's buffer).
 * pw and salt may be NULL when their length is 0. WEIR_EINVAL with a
 * message in err for bad parameters. */
WEIR_API int weir_ffi_pbkdf2_sha256(const char *pw, size_t pwlen,
                                    const char *salt, size_t saltlen,
                                    uint32_t iterations,
                                    uint8_t *out, size_t outlen,
                                    char *err, size_t errlen);
/* scrypt (RFC 7914) of the password pw with salt, cost n (a power of 2,
 * > 1), block size r and parallelism p (>= 1): outlen bytes (1..1024) in
 * out (caller's buffer). The work area, 128 * r * (n + p + 2) bytes, must
 * fit in maxmem bytes, else WEIR_ELIMIT; bad parameters give WEIR_EINVAL;
 * both with a message in err. pw and salt may be NULL when their length
 * is 0. */
WEIR_API int weir_ffi_scrypt(const char *pw, size_t pwlen,
                             const char *salt, size_t saltlen,
                             uint64_t n, uint32_t r, uint32_t p,
                             uint64_t maxmem,
                             uint8_t *out, size_t outlen,
                             char *err, size_t errlen);
/* Compares len bytes of a and b in a time that depends on len only
 * (CRYPTO_memcmp): WEIR_OK when they are equal, WEIR_EPERM when not. */
WEIR_API int weir_ffi_mem_equal(const char *a, const char *b, size_t len);
/* len cryptographically random bytes into out (caller's buffer), from the
 * kernel (getrandom). */
WEIR_API int weir_ffi_random(uint8_t *out, size_t len);
/* weir:cdef:end */

#endif
