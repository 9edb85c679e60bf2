/*
 * pgshared.h - small helpers of the PostgreSQL codecs, defined once in
 * pgcodec.c and used by pgbinary.c too. Internal to libweir (hidden, not
 * part of the FFI). The short names below are what both files call.
 */
#ifndef WEIR_PGSHARED_H
#define WEIR_PGSHARED_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#define abs_index weir_pg_abs_index
#define bool_word weir_pg_bool_word
#define dbl_to_i64 weir_pg_dbl_to_i64
#define decimal_ok weir_pg_decimal_ok
#define describe weir_pg_describe
#define excerpt weir_pg_excerpt
#define expected weir_pg_expected
#define hexval weir_hexval /* common.h */
#define no_memory weir_pg_no_memory
#define parse_int64 weir_pg_parse_int64
#define special_float weir_pg_special_float

/* A stack index that stays valid when more is pushed. */
int abs_index(lua_State *L, int idx);
/* PostgreSQL's boolean words (t, true, yes, on, 1 ...): 1, 0, or -1. */
int bool_word(const char *s, size_t len);
/* An integral double in int64 range -> *out: 0, else -1. */
int dbl_to_i64(double v, int64_t *out);
/* Is s a decimal literal: [+-](digits[.digits]|.digits)[e[+-]digits]? */
int decimal_ok(const char *s, size_t len);
/* s[0..len) made printable and cut to fit dst (dstlen bytes), for errors. */
const char *excerpt(char *dst, size_t dstlen, const char *s, size_t len);
/* A short description of the Lua value at idx, for error messages. */
const char *describe(lua_State *L, int idx, char *buf, size_t n);
/* WEIR_EINVAL with "expected WHAT for TYPE, got ..." in err: the Lua value
 * at idx does not fit a column of type oid. */
int expected(lua_State *L, int idx, const char *what, uint32_t oid,
             char *err, size_t errlen);
/* WEIR_ENOMEM with "out of memory" in err. */
int no_memory(char *err, size_t errlen);
/* [+-]digits -> int64: 0, -1 bad syntax, -2 out of range. */
int parse_int64(const char *s, size_t len, int64_t *out);
/* NaN / Infinity spellings PostgreSQL accepts for float and numeric. */
int special_float(const char *s, size_t len, double *v);

static inline int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

#endif
