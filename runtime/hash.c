/*
 * hash.c - SHA-256 (Nettle), HMAC-SHA256, PBKDF2-HMAC-SHA256, scrypt and
 * constant-time comparison (OpenSSL's libcrypto), random bytes (the
 * kernel's getrandom). No policy here: the parameters of password hashes
 * and what is compared are chosen by lua/weir/auth.lua.
 *
 * Why two libraries: the first digest through libcrypto's EVP loads its
 * default provider, 1.6 to 2.3 MB of resident memory in every process
 * that does it. A server hashes pipeline sources and API keys and makes
 * run ids all the time; Nettle's SHA-256 and getrandom need no set-up, so
 * only a login or a JWT (HMAC, scrypt, PBKDF2) ever loads the provider.
 */
#include "weir/hash.h"

#include <limits.h>

#include <errno.h>
#include <nettle/sha2.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* Largest derived key the KDFs produce: far above any use, small enough
 * that a caller's mistake cannot make OpenSSL loop for long. */
#define KDF_MAX_OUT 1024

/* libcrypto wants a non-NULL pointer even for an empty input. */
static const char *nonnull(const char *p)
{
    return p ? p : "";
}

WEIR_API int weir_ffi_sha256_hex(const char *data, size_t len, char *out)
{
    uint8_t md[32];
    static const char hex[] = "0123456789abcdef";

    if (weir_ffi_sha256(data, len, md) != WEIR_OK)
        return WEIR_EIO;
    for (unsigned int i = 0; i < sizeof md; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * sizeof md] = '\0';
    return WEIR_OK;
}

WEIR_API int weir_ffi_sha256(const char *data, size_t len, uint8_t *out)
{
    struct sha256_ctx ctx;

    sha256_init(&ctx);
    sha256_update(&ctx, len, (const uint8_t *)nonnull(data));
    sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
    return WEIR_OK;
}

WEIR_API int weir_ffi_hmac_sha256(const char *key, size_t keylen,
                                  const char *data, size_t len,
                                  uint8_t *out)
{
    unsigned int n = 0;

    if (keylen > INT_MAX)
        return WEIR_EINVAL;
    if (!HMAC(EVP_sha256(), nonnull(key), (int)keylen,
              (const unsigned char *)nonnull(data), len, out, &n)
        || n != 32)
        return WEIR_EIO;
    return WEIR_OK;
}

WEIR_API int weir_ffi_pbkdf2_sha256(const char *pw, size_t pwlen,
                                    const char *salt, size_t saltlen,
                                    uint32_t iterations,
                                    uint8_t *out, size_t outlen,
                                    char *err, size_t errlen)
{
    if (iterations < 1 || iterations > INT_MAX) {
        weir_set_err(err, errlen, "pbkdf2: iterations must be 1..%d",
                     INT_MAX);
        return WEIR_EINVAL;
    }
    if (outlen < 1 || outlen > KDF_MAX_OUT || pwlen > INT_MAX
        || saltlen > INT_MAX) {
        weir_set_err(err, errlen, "pbkdf2: output must be 1..%d bytes",
                     KDF_MAX_OUT);
        return WEIR_EINVAL;
    }
    if (PKCS5_PBKDF2_HMAC(nonnull(pw), (int)pwlen,
                          (const unsigned char *)nonnull(salt), (int)saltlen,
                          (int)iterations, EVP_sha256(), (int)outlen,
                          out) != 1) {
        weir_set_err(err, errlen, "pbkdf2: libcrypto failed");
        return WEIR_EIO;
    }
    return WEIR_OK;
}

WEIR_API int weir_ffi_scrypt(const char *pw, size_t pwlen,
                             const char *salt, size_t saltlen,
                             uint64_t n, uint32_t r, uint32_t p,
                             uint64_t maxmem,
                             uint8_t *out, size_t outlen,
                             char *err, size_t errlen)
{
    if (n < 2 || (n & (n - 1)) != 0 || r < 1 || p < 1) {
        weir_set_err(err, errlen,
                     "scrypt: n must be a power of 2 above 1, r and p >= 1");
        return WEIR_EINVAL;
    }
    if (outlen < 1 || outlen > KDF_MAX_OUT) {
        weir_set_err(err, errlen, "scrypt: output must be 1..%d bytes",
                     KDF_MAX_OUT);
        return WEIR_EINVAL;
    }
    /* RFC 7914: p * r < 2^30; the work area is 128 * r * (n + p + 2)
     * bytes (V: n blocks, B: p blocks, X and T: 2 blocks). Each step is
     * checked against maxmem before it can overflow. */
    if ((uint64_t)r * p >= (1u << 30) || r > maxmem / 128
        || n + p + 2 > maxmem / (128u * r)) {
        weir_set_err(err, errlen,
                     "scrypt: n=%llu r=%u p=%u need more than %llu bytes",
                     (unsigned long long)n, r, p,
                     (unsigned long long)maxmem);
        return WEIR_ELIMIT;
    }
    if (EVP_PBE_scrypt(nonnull(pw), pwlen,
                       (const unsigned char *)nonnull(salt), saltlen,
                       n, r, p, maxmem, out, outlen) != 1) {
        weir_set_err(err, errlen, "scrypt: libcrypto failed");
        return WEIR_EIO;
    }
    return WEIR_OK;
}

WEIR_API int weir_ffi_mem_equal(const char *a, const char *b, size_t len)
{
    if (len == 0)
        return WEIR_OK;
    return CRYPTO_memcmp(a, b, len) == 0 ? WEIR_OK : WEIR_EPERM;
}

WEIR_API int weir_ffi_random(uint8_t *out, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(out + got, len - got, 0);

        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno != EINTR)
            return WEIR_EIO;
    }
    return WEIR_OK;
}
