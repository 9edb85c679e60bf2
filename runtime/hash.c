/*
 * hash.c - SHA-256 and random bytes through OpenSSL's libcrypto (EVP).
 */
#include "weir/hash.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

WEIR_API int weir_ffi_sha256_hex(const char *data, size_t len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";

    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1)
        return WEIR_EIO;
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
    return WEIR_OK;
}

WEIR_API int weir_ffi_random(uint8_t *out, size_t len)
{
    return RAND_bytes(out, (int)len) == 1 ? WEIR_OK : WEIR_EIO;
}
