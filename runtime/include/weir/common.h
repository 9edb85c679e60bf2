/*
 * common.h - status codes, the export macro and the ABI version shared by
 * every weir C unit. The region between the cdef markers is copied verbatim
 * into the Lua FFI declarations at build time (scripts/cdef.lua), so it must
 * stay in the subset ffi.cdef parses: no macros, fixed-width integers.
 */
#ifndef WEIR_COMMON_H
#define WEIR_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define WEIR_API __attribute__((visibility("default")))

/* WEIR_ASAN: built with AddressSanitizer (gcc or clang); the worker's
 * system-call filter lets LeakSanitizer do its work at exit. */
#if defined(__SANITIZE_ADDRESS__)
#define WEIR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEIR_ASAN 1
#endif
#endif

/* weir:cdef:begin */
enum {
    WEIR_ABI_VERSION = 3
};

/* Status codes: every boundary call returns WEIR_OK or one of these. */
enum {
    WEIR_OK = 0,
    WEIR_EINVAL = -1,   /* bad argument or input */
    WEIR_ENOMEM = -2,   /* allocation failed */
    WEIR_EIO = -3,      /* read/write/system call failed */
    WEIR_ENOENT = -4,   /* no such file, row or object */
    WEIR_EPERM = -5,    /* outside the allowed roots, or denied */
    WEIR_ELIMIT = -6,   /* a configured size or count limit was hit */
    WEIR_EPARSE = -7,   /* malformed input (CSV, YAML, JSON) */
    WEIR_ESQL = -8,     /* the database reported an error */
    WEIR_EAGAIN = -9,   /* try again later (busy, would block) */
    WEIR_ECLOSED = -10, /* peer closed, or object already closed */
    WEIR_ETIMEOUT = -11 /* deadline passed */
};

/* The ABI version this library was built with (WEIR_ABI_VERSION). */
WEIR_API int weir_ffi_abi_version(void);
/* weir:cdef:end */

/* Internal helper: the value of the hex digit c, or -1. */
static inline int weir_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Internal helper: format into err (may be NULL when errlen is 0). */
void weir_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
