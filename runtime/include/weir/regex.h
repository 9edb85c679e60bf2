/*
 * regex.h - regular expressions through PCRE2 (Debian's libpcre2-8), for
 * JSON Schema `pattern` and `patternProperties` (weir.schema) and any
 * trusted module that matches patterns it did not write (ADR 42).
 *
 * A pattern is compiled once (weir_ffi_regex_new) in UTF mode with the
 * options that bring PCRE2 close to ECMA-262 (regex.c lists them and what
 * differs); weir.regex caches compiled patterns by source. Every match
 * runs under a match limit, a depth limit and a heap limit, so a pattern
 * written to backtrack forever on a hostile subject stops with WEIR_ELIMIT
 * instead of hanging a worker. No JIT: patterns are interpreted.
 */
#ifndef WEIR_REGEX_H
#define WEIR_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "weir/common.h"

/* weir:cdef:begin */
typedef struct weir_regex weir_regex;

/* Limits of a pattern and of one match. */
enum {
    WEIR_REGEX_MAX_PATTERN = 4096,     /* bytes of pattern source */
    WEIR_REGEX_MATCH_LIMIT = 1000000,  /* PCRE2 match() calls per match */
    WEIR_REGEX_DEPTH_LIMIT = 10000,    /* backtracking depth per match */
    WEIR_REGEX_HEAP_KIB = 8192         /* backtracking memory per match */
};

/* Compile the pattern src (len bytes, UTF-8, ECMA-262 flavoured) into
 * *out, owned by the caller (weir_ffi_regex_delete). WEIR_EPARSE with
 * "<what is wrong> at offset N" in err for a bad pattern, WEIR_ELIMIT
 * for one longer than WEIR_REGEX_MAX_PATTERN, WEIR_ENOMEM. */
WEIR_API int weir_ffi_regex_new(const char *src, size_t len,
                                weir_regex **out, char *err, size_t errlen);
/* Search s (len bytes, UTF-8) for a match anywhere: *matched is 1 or 0.
 * match_limit is capped at WEIR_REGEX_MATCH_LIMIT (0: that limit). WEIR_ELIMIT when a limit
 * stopped the search, WEIR_EINVAL when s is not valid UTF-8; both with
 * a message in err. s may be NULL when len is 0. */
WEIR_API int weir_ffi_regex_test(weir_regex *re, const char *s, size_t len,
                                 uint32_t match_limit, int32_t *matched,
                                 char *err, size_t errlen);
/* Free a compiled pattern; NULL is a no-op. */
WEIR_API void weir_ffi_regex_delete(weir_regex *re);
/* weir:cdef:end */

#endif
