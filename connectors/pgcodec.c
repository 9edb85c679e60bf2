/*
 * pgcodec.c - PostgreSQL text-format codec for the pg connector: one value,
 * one COPY line or one row at a time, straight between the wire text and
 * Lua values (see weir/pgcodec.h for the type mapping). Hot paths avoid
 * malloc: fields without escapes are pushed from the caller's bytes,
 * escaped ones are decoded into a stack buffer or a scratch userdata kept
 * in the registry; output goes to the caller's growable buffer. JSON is
 * parsed and printed by runtime/json.c (no pcall per value). Relies on
 * the classic Lua C API of LuaJIT, json.h and libc.
 */
#include "weir/pgcodec.h"
#include "weir/json.h"
#include "weir/numfmt.h"
#include "weir/pgshared.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- builtin types ------------------------------------------------------ */

enum {
    K_TEXT = 0, /* also every unknown OID */
    K_BOOL,
    K_INT2,
    K_INT4,
    K_OID,
    K_INT8,
    K_NUMERIC,
    K_FLOAT4,
    K_FLOAT8,
    K_TIME, /* date/time types: strings as the server prints them */
    K_UUID,
    K_JSON,
    K_BYTEA,
    K_ARRAY
};

/* oid, name, kind, element oid (arrays) */
#define PG_TYPES(X)                                                         \
    X(16, "bool", K_BOOL, 0)                                                \
    X(17, "bytea", K_BYTEA, 0)                                              \
    X(18, "char", K_TEXT, 0)                                                \
    X(19, "name", K_TEXT, 0)                                                \
    X(20, "int8", K_INT8, 0)                                                \
    X(21, "int2", K_INT2, 0)                                                \
    X(23, "int4", K_INT4, 0)                                                \
    X(25, "text", K_TEXT, 0)                                                \
    X(26, "oid", K_OID, 0)                                                  \
    X(114, "json", K_JSON, 0)                                               \
    X(199, "_json", K_ARRAY, 114)                                           \
    X(700, "float4", K_FLOAT4, 0)                                           \
    X(701, "float8", K_FLOAT8, 0)                                           \
    X(1000, "_bool", K_ARRAY, 16)                                           \
    X(1001, "_bytea", K_ARRAY, 17)                                          \
    X(1002, "_char", K_ARRAY, 18)                                           \
    X(1003, "_name", K_ARRAY, 19)                                           \
    X(1005, "_int2", K_ARRAY, 21)                                           \
    X(1007, "_int4", K_ARRAY, 23)                                           \
    X(1009, "_text", K_ARRAY, 25)                                           \
    X(1014, "_bpchar", K_ARRAY, 1042)                                       \
    X(1015, "_varchar", K_ARRAY, 1043)                                      \
    X(1016, "_int8", K_ARRAY, 20)                                           \
    X(1021, "_float4", K_ARRAY, 700)                                        \
    X(1022, "_float8", K_ARRAY, 701)                                        \
    X(1028, "_oid", K_ARRAY, 26)                                            \
    X(1042, "bpchar", K_TEXT, 0)                                            \
    X(1043, "varchar", K_TEXT, 0)                                           \
    X(1082, "date", K_TIME, 0)                                              \
    X(1083, "time", K_TIME, 0)                                              \
    X(1114, "timestamp", K_TIME, 0)                                         \
    X(1115, "_timestamp", K_ARRAY, 1114)                                    \
    X(1182, "_date", K_ARRAY, 1082)                                         \
    X(1183, "_time", K_ARRAY, 1083)                                         \
    X(1184, "timestamptz", K_TIME, 0)                                       \
    X(1185, "_timestamptz", K_ARRAY, 1184)                                  \
    X(1186, "interval", K_TIME, 0)                                          \
    X(1187, "_interval", K_ARRAY, 1186)                                     \
    X(1231, "_numeric", K_ARRAY, 1700)                                      \
    X(1266, "timetz", K_TIME, 0)                                            \
    X(1270, "_timetz", K_ARRAY, 1266)                                       \
    X(1700, "numeric", K_NUMERIC, 0)                                        \
    X(2950, "uuid", K_UUID, 0)                                              \
    X(2951, "_uuid", K_ARRAY, 2950)                                         \
    X(3802, "jsonb", K_JSON, 0)                                             \
    X(3807, "_jsonb", K_ARRAY, 3802)

/* Direct tables: every builtin OID above is below 4096, and a lookup per
 * field must cost nothing. */
#define OID_TABLE_SIZE 4096
#define KIND_ENTRY(oid, name, kind, elem) [oid] = kind,
static const unsigned char kind_by_oid[OID_TABLE_SIZE] = {
    PG_TYPES(KIND_ENTRY)};
#define ELEM_ENTRY(oid, name, kind, elem) [oid] = elem,
static const uint16_t elem_by_oid[OID_TABLE_SIZE] = {PG_TYPES(ELEM_ENTRY)};

static inline int kind_of(uint32_t oid)
{
    return oid < OID_TABLE_SIZE ? kind_by_oid[oid] : K_TEXT;
}

const char *weir_pgcodec_type_name(uint32_t oid)
{
    switch (oid) {
#define NAME_CASE(oid, name, kind, elem) case oid: return name;
    PG_TYPES(NAME_CASE)
    default:
        return NULL;
    }
}

static const struct {
    const char *name;
    uint32_t oid;
} type_aliases[] = {
    {"boolean", 16},
    {"bigint", 20},
    {"smallint", 21},
    {"integer", 23},
    {"int", 23},
    {"real", 700},
    {"double precision", 701},
    {"float", 701},
    {"character", 1042},
    {"character varying", 1043},
    {"decimal", 1700},
    {"time without time zone", 1083},
    {"time with time zone", 1266},
    {"timestamp without time zone", 1114},
    {"timestamp with time zone", 1184},
};

static uint32_t type_oid_plain(const char *name)
{
#define OID_MATCH(oid, tname, kind, elem) \
    if (strcasecmp(name, tname) == 0) return oid;
    PG_TYPES(OID_MATCH)
    for (size_t i = 0; i < sizeof type_aliases / sizeof type_aliases[0]; i++)
        if (strcasecmp(name, type_aliases[i].name) == 0)
            return type_aliases[i].oid;
    return 0;
}

uint32_t weir_pgcodec_type_oid(const char *name)
{
    char base[64];
    size_t n;
    uint32_t oid;

    if (name == NULL)
        return 0;
    n = strlen(name);
    if (n > 2 && n < sizeof base && strcmp(name + n - 2, "[]") == 0) {
        /* "T[]" is the array type of T */
        memcpy(base, name, n - 2);
        base[n - 2] = '\0';
        oid = type_oid_plain(base);
        for (uint32_t a = 0; oid != 0 && a < OID_TABLE_SIZE; a++)
            if (kind_by_oid[a] == K_ARRAY && elem_by_oid[a] == oid)
                return a;
        return 0;
    }
    return type_oid_plain(name);
}

static const char *tname(uint32_t oid)
{
    const char *n = weir_pgcodec_type_name(oid);

    return n != NULL ? n : "text";
}

/* ---- scratch memory ----------------------------------------------------- */

/* One scratch buffer per use, so nested decoders (a COPY field holding an
 * array of bytea) never share one. Userdata in the registry: freed with
 * the state, and safe if a Lua memory error unwinds through us. */
enum { SLOT_FIELD, SLOT_ELEM, SLOT_BYTES, NSLOTS };
static char scratch_keys[NSLOTS];

static char *scratch(lua_State *L, int slot, size_t need)
{
    void *p;
    size_t cap;

    lua_pushlightuserdata(L, &scratch_keys[slot]);
    lua_rawget(L, LUA_REGISTRYINDEX);
    p = lua_touserdata(L, -1);
    cap = p != NULL ? lua_objlen(L, -1) : 0;
    lua_pop(L, 1);
    if (p != NULL && cap >= need)
        return p;
    for (cap = 4096; cap < need; cap *= 2)
        if (cap > SIZE_MAX / 4) {
            cap = need;
            break;
        }
    lua_pushlightuserdata(L, &scratch_keys[slot]);
    p = lua_newuserdata(L, cap);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return p;
}

/* ---- errors ------------------------------------------------------------- */

/* A short printable excerpt of a value for messages. */
const char *excerpt(char *dst, size_t dstlen, const char *s,
                           size_t len)
{
    size_t i, n = 0, max = dstlen > 4 ? dstlen - 4 : 0;

    for (i = 0; i < len && n < max; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (i < len && dstlen >= 4) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    if (dstlen > 0)
        dst[n] = '\0';
    return dst;
}

static int bad_input(char *err, size_t errlen, uint32_t oid, const char *s,
                     size_t len)
{
    char ex[48];

    weir_set_err(err, errlen, "invalid input syntax for type %s: \"%s\"",
                 tname(oid), excerpt(ex, sizeof ex, s, len));
    return WEIR_EPARSE;
}

static int out_of_range(char *err, size_t errlen, uint32_t oid,
                        const char *s, size_t len)
{
    char ex[48];

    weir_set_err(err, errlen, "value \"%s\" is out of range for type %s",
                 excerpt(ex, sizeof ex, s, len), tname(oid));
    return WEIR_EPARSE;
}

int no_memory(char *err, size_t errlen)
{
    weir_set_err(err, errlen, "out of memory");
    return WEIR_ENOMEM;
}

/* Prefix err with a context ("column \"x\": ..."). */
static void err_prefix(char *err, size_t errlen, const char *fmt,
                       const char *arg)
{
    char inner[256];

    if (err == NULL || errlen == 0)
        return;
    snprintf(inner, sizeof inner, "%s", err);
    weir_set_err(err, errlen, fmt, arg, inner);
}

/* ---- numbers ------------------------------------------------------------ */

static const double pow10_exact[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};


/* [+-]digits -> int64: 0, -1 bad syntax, -2 out of range. */
int parse_int64(const char *s, size_t len, int64_t *out)
{
    const char *p = s, *end = s + len;
    uint64_t v = 0;
    int neg = 0, ovf = 0;

    if (p < end && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    if (p == end)
        return -1;
    for (; p < end; p++) {
        unsigned d = (unsigned)(unsigned char)*p - '0';

        if (d > 9)
            return -1;
        if (v > (UINT64_MAX - d) / 10)
            ovf = 1;
        v = v * 10 + d;
    }
    if (ovf || v > (uint64_t)INT64_MAX + (uint64_t)neg)
        return -2;
    *out = neg ? -(int64_t)(v - 1) - 1 : (int64_t)v;
    return 0;
}

/* Is s a decimal literal: [+-](digits[.digits]|.digits)[e[+-]digits]? */
int decimal_ok(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    int any = 0;

    if (p < end && (*p == '+' || *p == '-'))
        p++;
    while (p < end && is_digit(*p))
        p++, any = 1;
    if (p < end && *p == '.')
        for (p++; p < end && is_digit(*p); p++)
            any = 1;
    if (!any)
        return 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return 0;
        while (p < end && is_digit(*p))
            p++;
    }
    return p == end;
}

/* NaN / Infinity spellings PostgreSQL accepts for float and numeric. */
int special_float(const char *s, size_t len, double *v)
{
    int neg = 0;

    if (len == 3 && strncasecmp(s, "nan", 3) == 0) {
        *v = NAN;
        return 1;
    }
    if (len > 0 && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        s++, len--;
    }
    if ((len == 8 && strncasecmp(s, "infinity", 8) == 0) ||
        (len == 3 && strncasecmp(s, "inf", 3) == 0)) {
        *v = neg ? -INFINITY : INFINITY;
        return 1;
    }
    return 0;
}

/* Decimal literal -> double. Exact short inputs take Clinger's fast path
 * (mantissa <= 2^53 and |exp10| <= 22: one correctly rounded operation);
 * the rest goes through strtod. 0 or -1 on bad syntax. */
static int parse_decimal(const char *s, size_t len, double *out)
{
    const char *p = s, *end = s + len;
    uint64_t m = 0;
    long dexp = 0;
    int neg = 0, nsig = 0, trunc = 0, any = 0;

    if (p < end && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    for (; p < end && is_digit(*p); p++) {
        any = 1;
        if (m == 0 && *p == '0')
            continue;
        if (nsig < 19) {
            m = m * 10 + (uint64_t)(*p - '0');
            nsig++;
        } else {
            dexp++;
            trunc = 1;
        }
    }
    if (p < end && *p == '.') {
        for (p++; p < end && is_digit(*p); p++) {
            any = 1;
            if (m == 0 && *p == '0') {
                dexp--;
                continue;
            }
            if (nsig < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                nsig++;
                dexp--;
            } else {
                trunc = 1;
            }
        }
    }
    if (!any)
        return -1;
    if (p < end && (*p == 'e' || *p == 'E')) {
        long e = 0;
        int eneg = 0;

        p++;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p == end || !is_digit(*p))
            return -1;
        for (; p < end && is_digit(*p); p++)
            if (e < 100000)
                e = e * 10 + (*p - '0');
        dexp += eneg ? -e : e;
    }
    if (p != end)
        return -1;
    if (m == 0) {
        *out = neg ? -0.0 : 0.0;
        return 0;
    }
    if (!trunc && m <= ((uint64_t)1 << 53) && dexp >= -22 && dexp <= 22) {
        double v = (double)m;

        v = dexp < 0 ? v / pow10_exact[-dexp] : v * pow10_exact[dexp];
        *out = neg ? -v : v;
        return 0;
    }
    {
        char stackbuf[128], *buf = stackbuf;

        if (len >= sizeof stackbuf && (buf = malloc(len + 1)) == NULL)
            return -1;
        memcpy(buf, s, len);
        buf[len] = '\0';
        *out = strtod(buf, NULL);
        if (buf != stackbuf)
            free(buf);
    }
    return 0;
}

static int parse_float(const char *s, size_t len, double *out)
{
    if (len > 0 && !is_digit(s[len - 1]) && s[len - 1] != '.' &&
        special_float(s, len, out))
        return 0;
    return parse_decimal(s, len, out);
}

/* Integral double in int64 range -> *out. */
int dbl_to_i64(double v, int64_t *out)
{
    int64_t i;

    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
        return -1;
    i = (int64_t)v;
    if ((double)i != v)
        return -1;
    *out = i;
    return 0;
}

/* A number as PostgreSQL text: every integer of int64 range in full
 * (numeric and text columns keep all its digits), the rest by the shortest
 * round-trip text (numfmt.h). v must be finite. buf holds 32 bytes. */
static size_t fmt_double(char *buf, double v)
{
    int64_t i;

    if (v != 0 && dbl_to_i64(v, &i) == 0)
        return weir_fmt_i64(buf, i);
    return weir_fmt_double(buf, v);
}

/* The same for a float4 column: the value rounded to float. */
static size_t fmt_float4(char *buf, float f)
{
    int64_t i;
    int n = 0;

    if (f == 0 || dbl_to_i64((double)f, &i) == 0)
        return fmt_double(buf, (double)f);
    for (int prec = 6; prec <= 9; prec++) {
        n = snprintf(buf, 32, "%.*g", prec, (double)f);
        if (prec == 9 || strtof(buf, NULL) == f)
            break;
    }
    return (size_t)n;
}

/* ---- JSON: json.c (weir/json.h); values kept as text ------------------- */

#define ARRAY_MAX_DEPTH 32

/* Extra bytes COPY text needs per byte: 1 for \\ \b \f \n \r \t \v, 3 for
 * the other control bytes (\ooo), 0 otherwise. */
static const unsigned char copy_extra[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3,
};

static const char hexdig[] = "0123456789abcdef";

/* ---- bytea -------------------------------------------------------------- */

static inline int is_octal(int c)
{
    return c >= '0' && c <= '7';
}

static int push_bytea(lua_State *L, const char *s, size_t len, char *err,
                      size_t errlen)
{
    char stackbuf[256], *dst;
    size_t n = 0;

    if (len >= 2 && s[0] == '\\' && s[1] == 'x') {
        size_t ndig = len - 2;
        const unsigned char *p = (const unsigned char *)s + 2;

        if (ndig % 2 != 0)
            return bad_input(err, errlen, 17, s, len);
        dst = ndig / 2 <= sizeof stackbuf ? stackbuf
                                          : scratch(L, SLOT_BYTES, ndig / 2);
        for (; n < ndig / 2; n++, p += 2) {
            int hi = hexval(p[0]), lo = hexval(p[1]);

            if ((hi | lo) < 0)
                return bad_input(err, errlen, 17, s, len);
            dst[n] = (char)(hi << 4 | lo);
        }
        lua_pushlstring(L, dst, n);
        return WEIR_OK;
    }
    /* the "escape" output format: \\ and \ooo, other bytes as is */
    dst = len <= sizeof stackbuf ? stackbuf : scratch(L, SLOT_BYTES, len);
    for (size_t i = 0; i < len;) {
        if (s[i] != '\\') {
            dst[n++] = s[i++];
        } else if (i + 1 < len && s[i + 1] == '\\') {
            dst[n++] = '\\';
            i += 2;
        } else if (i + 3 < len && s[i + 1] >= '0' && s[i + 1] <= '3' &&
                   is_octal(s[i + 2]) && is_octal(s[i + 3])) {
            dst[n++] = (char)((s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 |
                              (s[i + 3] - '0'));
            i += 4;
        } else {
            return bad_input(err, errlen, 17, s, len);
        }
    }
    lua_pushlstring(L, dst, n);
    return WEIR_OK;
}

/* ---- decoding one value ------------------------------------------------- */

static int arr_decode(lua_State *L, uint32_t oid, const char *s, size_t len,
                      char *err, size_t errlen);

static int push_bool(lua_State *L, const char *s, size_t len)
{
    if (len == 1 && (s[0] == 't' || s[0] == 'f')) {
        lua_pushboolean(L, s[0] == 't');
        return 0;
    }
    if ((len == 4 && strncasecmp(s, "true", 4) == 0) ||
        (len == 5 && strncasecmp(s, "false", 5) == 0)) {
        lua_pushboolean(L, len == 4);
        return 0;
    }
    return -1;
}

static int push_value(lua_State *L, uint32_t oid, const char *s, size_t len,
                      char *err, size_t errlen)
{
    int64_t i;
    double v;
    int rc;

    switch (kind_of(oid)) {
    case K_BOOL:
        if (push_bool(L, s, len) != 0)
            return bad_input(err, errlen, oid, s, len);
        return WEIR_OK;
    case K_INT2:
    case K_INT4:
    case K_OID:
        if ((rc = parse_int64(s, len, &i)) == -1)
            return bad_input(err, errlen, oid, s, len);
        if (rc != 0 || (oid == 21 && (i < -32768 || i > 32767)) ||
            (oid == 23 && (i < INT32_MIN || i > INT32_MAX)) ||
            (oid == 26 && (i < INT32_MIN || i > (int64_t)UINT32_MAX)))
            return out_of_range(err, errlen, oid, s, len);
        lua_pushnumber(L, (lua_Number)(oid == 26 && i < 0 ? i + 4294967296
                                                           : i));
        return WEIR_OK;
    case K_INT8:
        if ((rc = parse_int64(s, len, &i)) != 0)
            return rc == -1 ? bad_input(err, errlen, oid, s, len)
                            : out_of_range(err, errlen, oid, s, len);
        if (i >= -(INT64_C(1) << 53) && i <= (INT64_C(1) << 53))
            lua_pushnumber(L, (lua_Number)i);
        else
            lua_pushlstring(L, s, len);
        return WEIR_OK;
    case K_NUMERIC:
        if (!decimal_ok(s, len) && !special_float(s, len, &v))
            return bad_input(err, errlen, oid, s, len);
        lua_pushlstring(L, s, len);
        return WEIR_OK;
    case K_FLOAT4:
    case K_FLOAT8:
        if (parse_float(s, len, &v) != 0)
            return bad_input(err, errlen, oid, s, len);
        lua_pushnumber(L, v);
        return WEIR_OK;
    case K_JSON: /* the server's text, kept (see JSON values) */
        weir_json_value_push(L, s, len);
        return WEIR_OK;
    case K_BYTEA:
        return push_bytea(L, s, len, err, errlen);
    case K_ARRAY:
        return arr_decode(L, oid, s, len, err, errlen);
    default: /* text, date/time, uuid: the server's text */
        lua_pushlstring(L, s, len);
        return WEIR_OK;
    }
}

int weir_pgcodec_push(lua_State *L, uint32_t oid, const char *s,
                      size_t len, char *err, size_t errlen)
{
    int top = lua_gettop(L), rc;

    if (!lua_checkstack(L, 8))
        return no_memory(err, errlen);
    if (s == NULL) {
        lua_pushlightuserdata(L, NULL);
        return WEIR_OK;
    }
    rc = push_value(L, oid, s, len, err, errlen);
    if (rc != WEIR_OK)
        lua_settop(L, top);
    return rc;
}

/* ---- array literals: decoding ------------------------------------------- */

typedef struct {
    lua_State *L;
    const char *s, *p, *end;
    uint32_t oid, elem;
    char *buf; /* element unescape space, as long as the literal */
    char *err;
    size_t errlen;
} adec;

static inline int a_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static int a_fail(adec *a, const char *what)
{
    char ex[48];

    weir_set_err(a->err, a->errlen,
                 "malformed array literal for type %s at offset %zu: %s "
                 "(\"%s\")",
                 tname(a->oid), (size_t)(a->p - a->s), what,
                 excerpt(ex, sizeof ex, a->s, (size_t)(a->end - a->s)));
    return WEIR_EPARSE;
}

static char *a_buf(adec *a)
{
    if (a->buf == NULL)
        a->buf = scratch(a->L, SLOT_ELEM, (size_t)(a->end - a->s));
    return a->buf;
}

static int a_elem(adec *a, const char *s, size_t len)
{
    return push_value(a->L, a->elem, s, len, a->err, a->errlen);
}

/* "..." with \x meaning x */
static int a_quoted(adec *a)
{
    const char *p = a->p + 1, *start = p;
    size_t n = 0;
    char *dst;

    while (p < a->end && *p != '"' && *p != '\\')
        p++;
    if (p < a->end && *p == '"') {
        a->p = p + 1;
        return a_elem(a, start, (size_t)(p - start));
    }
    dst = a_buf(a);
    memcpy(dst, start, (size_t)(p - start));
    n = (size_t)(p - start);
    while (p < a->end && *p != '"') {
        if (*p == '\\' && ++p >= a->end)
            break;
        dst[n++] = *p++;
    }
    if (p >= a->end) {
        a->p = p;
        return a_fail(a, "unterminated quoted element");
    }
    a->p = p + 1;
    return a_elem(a, dst, n);
}

/* Up to an unescaped ',' or '}'; surrounding whitespace is dropped,
 * escaped whitespace kept; a bare NULL is the null element. */
static int a_unquoted(adec *a)
{
    const char *p = a->p, *start = p, *last = p;
    int esc = 0;

    for (; p < a->end && *p != ',' && *p != '}'; p++) {
        if (*p == '"' || *p == '{') {
            a->p = p;
            return a_fail(a, "unexpected character in element");
        }
        if (*p == '\\') {
            if (++p >= a->end)
                break;
            esc = 1;
            last = p + 1;
        } else if (!a_space((unsigned char)*p)) {
            last = p + 1;
        }
    }
    if (p >= a->end) {
        a->p = p;
        return a_fail(a, "unexpected end of input");
    }
    a->p = p;
    if (!esc) {
        size_t n = (size_t)(last - start);

        if (n == 4 && strncasecmp(start, "NULL", 4) == 0) {
            lua_pushlightuserdata(a->L, NULL);
            return WEIR_OK;
        }
        return a_elem(a, start, n);
    }
    {
        char *dst = a_buf(a);
        size_t n = 0;

        for (p = start; p < last; p++) {
            if (*p == '\\')
                p++;
            dst[n++] = *p;
        }
        return a_elem(a, dst, n);
    }
}

static void a_ws(adec *a)
{
    while (a->p < a->end && a_space((unsigned char)*a->p))
        a->p++;
}

/* One {...} level at a->p; pushes a table. */
static int a_level(adec *a, int depth)
{
    int n = 0, rc, subs = -1; /* -1 unknown, 1 sub-arrays, 0 scalars */

    if (depth >= ARRAY_MAX_DEPTH)
        return a_fail(a, "too many dimensions");
    if (!lua_checkstack(a->L, 4))
        return no_memory(a->err, a->errlen);
    a->p++;
    lua_createtable(a->L, 4, 0);
    a_ws(a);
    if (a->p < a->end && *a->p == '}') {
        a->p++;
        return WEIR_OK;
    }
    for (;;) {
        int sub;

        a_ws(a);
        if (a->p >= a->end)
            return a_fail(a, "unexpected end of input");
        sub = *a->p == '{';
        if (subs >= 0 && sub != subs)
            return a_fail(a, "sub-arrays and scalars mixed");
        subs = sub;
        if (sub)
            rc = a_level(a, depth + 1);
        else if (*a->p == '"')
            rc = a_quoted(a);
        else if (*a->p == ',' || *a->p == '}')
            return a_fail(a, "empty element");
        else
            rc = a_unquoted(a);
        if (rc != WEIR_OK)
            return rc;
        lua_rawseti(a->L, -2, ++n);
        a_ws(a);
        if (a->p < a->end && *a->p == ',') {
            a->p++;
            continue;
        }
        if (a->p < a->end && *a->p == '}') {
            a->p++;
            return WEIR_OK;
        }
        return a_fail(a, "expected ',' or '}'");
    }
}

static int arr_decode(lua_State *L, uint32_t oid, const char *s, size_t len,
                      char *err, size_t errlen)
{
    char stackbuf[256];
    adec a = {L,   s,     s,   s + len, oid, elem_by_oid[oid],
              len <= sizeof stackbuf ? stackbuf : NULL, err, errlen};
    int rc;

    a_ws(&a);
    if (a.p < a.end && *a.p == '[')
        return a_fail(&a, "explicit dimensions are not supported");
    if (a.p >= a.end || *a.p != '{')
        return a_fail(&a, "expected '{'");
    if ((rc = a_level(&a, 0)) != WEIR_OK)
        return rc;
    a_ws(&a);
    if (a.p != a.end)
        return a_fail(&a, "junk after closing '}'");
    return WEIR_OK;
}

/* ---- COPY text lines: decoding ------------------------------------------ */

/* Decode one escaped field from p to the first unescaped tab or end into
 * dst (never longer than the input). *next is that tab or end. -1 when
 * the line ends in a lone backslash. */
static long copy_unescape(const char *p, const char *end, char *dst,
                          const char **next)
{
    size_t n = 0;

    while (p < end && *p != '\t') {
        char c = *p++;

        if (c != '\\') {
            dst[n++] = c;
            continue;
        }
        if (p >= end)
            return -1;
        c = *p++;
        switch (c) {
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'v': c = '\v'; break;
        case 'x':
            if (p < end && hexval((unsigned char)*p) >= 0) {
                int v = hexval((unsigned char)*p++);

                if (p < end && hexval((unsigned char)*p) >= 0)
                    v = v * 16 + hexval((unsigned char)*p++);
                c = (char)v;
            }
            break;
        default:
            if (is_octal(c)) {
                int v = c - '0';

                if (p < end && is_octal(*p)) {
                    v = v * 8 + (*p++ - '0');
                    if (p < end && is_octal(*p))
                        v = v * 8 + (*p++ - '0');
                }
                c = (char)(v & 0xff);
            }
            break;
        }
        dst[n++] = c;
    }
    *next = p;
    return (long)n;
}

/* Fields in the rest of a line, for the wrong-count message. */
static int count_fields(const char *p, const char *end)
{
    int n = 1;

    for (; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '\t')
            n++;
    }
    return n;
}

static void column_err(lua_State *L, int names_idx, int col, char *err,
                       size_t errlen)
{
    char name[80];
    const char *s;

    lua_rawgeti(L, names_idx, col + 1);
    s = lua_tostring(L, -1);
    if (s != NULL)
        snprintf(name, sizeof name, "%s", s);
    else
        snprintf(name, sizeof name, "#%d", col + 1);
    lua_pop(L, 1);
    err_prefix(err, errlen, "column \"%s\": %s", name);
}

int abs_index(lua_State *L, int idx)
{
    return idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1
                                              : idx;
}

int weir_pgcodec_copy_row(lua_State *L, const char *line,
                          size_t len, int ncols,
                          const uint32_t *oids, int names_idx,
                          char *err, size_t errlen)
{
    const char *p, *end;
    char stackbuf[512];
    int top = lua_gettop(L), col = 0, rc = WEIR_OK;

    if (line == NULL)
        line = "", len = 0;
    p = line;
    end = line + len;

    names_idx = abs_index(L, names_idx);
    if (ncols < 0 || lua_type(L, names_idx) != LUA_TTABLE) {
        weir_set_err(err, errlen, "copy line: bad column count or names");
        return WEIR_EINVAL;
    }
    if (len > 0 && end[-1] == '\n') {
        end--;
        if (end > line && end[-1] == '\r')
            end--;
    }
    if (!lua_checkstack(L, 8))
        return no_memory(err, errlen);
    lua_createtable(L, 0, ncols);
    if (ncols == 0) {
        if (p == end)
            return WEIR_OK;
        lua_settop(L, top);
        weir_set_err(err, errlen, "copy line: expected 0 fields, got %d",
                     count_fields(p, end));
        return WEIR_EPARSE;
    }
    for (;;) {
        const char *tab, *fend, *next;
        uint32_t oid;

        if (col == ncols) {
            lua_settop(L, top);
            weir_set_err(err, errlen,
                         "copy line: expected %d fields, got %d", ncols,
                         col + count_fields(p, end));
            return WEIR_EPARSE;
        }
        tab = memchr(p, '\t', (size_t)(end - p));
        fend = tab != NULL ? tab : end;
        oid = oids != NULL ? oids[col] : 25;
        lua_rawgeti(L, names_idx, col + 1);
        if (lua_isnil(L, -1)) {
            lua_settop(L, top);
            weir_set_err(err, errlen, "copy line: column %d has no name",
                         col + 1);
            return WEIR_EINVAL;
        }
        if (memchr(p, '\\', (size_t)(fend - p)) == NULL) {
            rc = push_value(L, oid, p, (size_t)(fend - p), err, errlen);
            next = fend;
        } else if (fend - p >= 2 && p[0] == '\\' && p[1] == 'N' &&
                   (p + 2 == end || p[2] == '\t')) {
            lua_pushlightuserdata(L, NULL);
            next = p + 2;
        } else {
            /* an escaped tab is data: the field may run past fend */
            char *dst = end - p <= (long)sizeof stackbuf
                            ? stackbuf
                            : scratch(L, SLOT_FIELD, (size_t)(end - p));
            long n = copy_unescape(p, end, dst, &next);

            if (n < 0) {
                lua_settop(L, top);
                weir_set_err(err, errlen, "copy line: lone backslash at "
                                          "the end of the line");
                return WEIR_EPARSE;
            }
            rc = push_value(L, oid, dst, (size_t)n, err, errlen);
        }
        if (rc != WEIR_OK) {
            lua_settop(L, top);
            column_err(L, names_idx, col, err, errlen);
            return rc;
        }
        lua_rawset(L, -3);
        col++;
        if (next >= end)
            break;
        p = next + 1; /* past the tab */
    }
    if (col != ncols) {
        lua_settop(L, top);
        weir_set_err(err, errlen, "copy line: expected %d fields, got %d",
                     ncols, col);
        return WEIR_EPARSE;
    }
    return WEIR_OK;
}

/* ---- encoding one value ------------------------------------------------- */

const char *describe(lua_State *L, int idx, char *buf, size_t n)
{
    char ex[48];
    size_t len;
    const char *s;

    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        snprintf(buf, n, "string \"%s\"", excerpt(ex, sizeof ex, s, len));
        break;
    case LUA_TNUMBER:
        snprintf(buf, n, "%.17g", lua_tonumber(L, idx));
        break;
    case LUA_TBOOLEAN:
        snprintf(buf, n, "%s", lua_toboolean(L, idx) ? "true" : "false");
        break;
    default:
        if (weir_json_value_text(L, idx, &len) != NULL)
            snprintf(buf, n, "a json value");
        else
            snprintf(buf, n, "a %s", lua_typename(L, lua_type(L, idx)));
    }
    return buf;
}

int expected(lua_State *L, int idx, const char *what, uint32_t oid,
             char *err, size_t errlen)
{
    char d[80];

    weir_set_err(err, errlen, "expected %s for %s, got %s", what, tname(oid),
                 describe(L, idx, d, sizeof d));
    return WEIR_EINVAL;
}

static inline int is_null(lua_State *L, int idx)
{
    int t = lua_type(L, idx);

    return t == LUA_TNIL ||
           (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL);
}

static int put(weir_buf *out, const char *s, size_t len, char *err,
               size_t errlen)
{
    if (weir_buf_append(out, s, len) != WEIR_OK)
        return no_memory(err, errlen);
    return WEIR_OK;
}

int bool_word(const char *s, size_t len)
{
    static const char *const yes[] = {"t", "true", "y", "yes", "on", "1"};
    static const char *const no[] = {"f", "false", "n", "no", "off", "0"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strlen(yes[i]) == len && strncasecmp(s, yes[i], len) == 0)
            return 1;
        if (strlen(no[i]) == len && strncasecmp(s, no[i], len) == 0)
            return 0;
    }
    return -1;
}

static int uuid_ok(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    int n = 0, brace = 0;

    if (p < end && *p == '{')
        brace = 1, p++;
    while (p < end && n < 32) {
        if (hexval((unsigned char)*p) < 0)
            return 0;
        p++, n++;
        if (n % 4 == 0 && n < 32 && p < end && *p == '-')
            p++;
    }
    if (n != 32)
        return 0;
    if (brace && (p == end || *p++ != '}'))
        return 0;
    return p == end;
}

static int enc_int(lua_State *L, int idx, uint32_t oid, weir_buf *out,
                   char *err, size_t errlen)
{
    int64_t lo, hi, i;
    char num[32];
    const char *s;
    size_t len;
    int rc;

    switch (oid) {
    case 21: lo = -32768, hi = 32767; break;
    case 23: lo = INT32_MIN, hi = INT32_MAX; break;
    case 26: lo = 0, hi = UINT32_MAX; break;
    default: lo = INT64_MIN, hi = INT64_MAX; break;
    }
    if (lua_type(L, idx) == LUA_TNUMBER) {
        if (dbl_to_i64(lua_tonumber(L, idx), &i) != 0 || i < lo || i > hi)
            return expected(L, idx, "integer", oid, err, errlen);
        return put(out, num, weir_fmt_i64(num, i), err, errlen);
    }
    if (lua_type(L, idx) != LUA_TSTRING)
        return expected(L, idx, "integer", oid, err, errlen);
    s = lua_tolstring(L, idx, &len);
    rc = parse_int64(s, len, &i);
    if (rc != 0 || i < lo || i > hi)
        return expected(L, idx, "integer", oid, err, errlen);
    return put(out, s, len, err, errlen);
}

/* Numbers for numeric: integers exactly (beyond int64 too), NaN and
 * Infinity as words, the rest by shortest round-trip. */
static int enc_numeric_number(double v, weir_buf *out, char *err,
                              size_t errlen)
{
    char num[400];
    int n;

    if (isnan(v))
        return put(out, "NaN", 3, err, errlen);
    if (isinf(v))
        return v > 0 ? put(out, "Infinity", 8, err, errlen)
                     : put(out, "-Infinity", 9, err, errlen);
    if (fabs(v) >= 9223372036854775808.0 && v == floor(v)) {
        n = snprintf(num, sizeof num, "%.0f", v);
        return put(out, num, (size_t)n, err, errlen);
    }
    return put(out, num, fmt_double(num, v), err, errlen);
}

static int enc_text(lua_State *L, int idx, uint32_t oid, weir_buf *out,
                    char *err, size_t errlen)
{
    char num[40];
    const char *s;
    size_t len;
    double v;

    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        if (memchr(s, '\0', len) != NULL) {
            weir_set_err(err, errlen, "a %s value cannot contain a NUL byte "
                                      "(use bytea)", tname(oid));
            return WEIR_EINVAL;
        }
        return put(out, s, len, err, errlen);
    case LUA_TNUMBER:
        v = lua_tonumber(L, idx);
        if (isnan(v))
            return put(out, "NaN", 3, err, errlen);
        if (isinf(v))
            return v > 0 ? put(out, "Infinity", 8, err, errlen)
                         : put(out, "-Infinity", 9, err, errlen);
        return put(out, num, fmt_double(num, v), err, errlen);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? put(out, "true", 4, err, errlen)
                                     : put(out, "false", 5, err, errlen);
    default:
        return expected(L, idx, "string", oid, err, errlen);
    }
}

static int enc_array(lua_State *L, int idx, uint32_t oid, weir_buf *out,
                     char *err, size_t errlen, int depth);

static int encode_raw(lua_State *L, int idx, uint32_t oid, weir_buf *out,
                      char *err, size_t errlen, int depth)
{
    char num[40];
    const char *s;
    size_t len;
    double v;
    int t = lua_type(L, idx), b;

    /* a json value read from PostgreSQL: its text, as it is, into json,
     * jsonb and text-like columns (json elements of arrays too); other
     * types refuse it below */
    if (t == LUA_TUSERDATA &&
        (kind_of(oid) == K_JSON || kind_of(oid) == K_TEXT) &&
        (s = weir_json_value_text(L, idx, &len)) != NULL)
        return put(out, s, len, err, errlen);
    switch (kind_of(oid)) {
    case K_BOOL:
        if (t == LUA_TBOOLEAN)
            b = lua_toboolean(L, idx);
        else if (t != LUA_TSTRING ||
                 (s = lua_tolstring(L, idx, &len),
                  b = bool_word(s, len)) < 0)
            return expected(L, idx, "boolean", oid, err, errlen);
        return put(out, b ? "t" : "f", 1, err, errlen);
    case K_INT2:
    case K_INT4:
    case K_OID:
    case K_INT8:
        return enc_int(L, idx, oid, out, err, errlen);
    case K_NUMERIC:
        if (t == LUA_TNUMBER)
            return enc_numeric_number(lua_tonumber(L, idx), out, err,
                                      errlen);
        if (t == LUA_TSTRING) {
            s = lua_tolstring(L, idx, &len);
            if (decimal_ok(s, len) || special_float(s, len, &v))
                return put(out, s, len, err, errlen);
        }
        return expected(L, idx, "number", oid, err, errlen);
    case K_FLOAT4:
    case K_FLOAT8:
        if (t == LUA_TNUMBER) {
            v = lua_tonumber(L, idx);
            if (isnan(v))
                return put(out, "NaN", 3, err, errlen);
            if (isinf(v))
                return v > 0 ? put(out, "Infinity", 8, err, errlen)
                             : put(out, "-Infinity", 9, err, errlen);
            if (kind_of(oid) == K_FLOAT8)
                return put(out, num, fmt_double(num, v), err, errlen);
            if (isinf((float)v)) {
                weir_set_err(err, errlen, "value %.17g is out of range for "
                                          "type float4", v);
                return WEIR_EINVAL;
            }
            return put(out, num, fmt_float4(num, (float)v), err, errlen);
        }
        if (t == LUA_TSTRING) {
            s = lua_tolstring(L, idx, &len);
            if (decimal_ok(s, len) || special_float(s, len, &v))
                return put(out, s, len, err, errlen);
        }
        return expected(L, idx, "number", oid, err, errlen);
    case K_TIME:
        if (t != LUA_TSTRING)
            return expected(L, idx, "string", oid, err, errlen);
        return enc_text(L, idx, oid, out, err, errlen);
    case K_UUID:
        if (t == LUA_TSTRING) {
            s = lua_tolstring(L, idx, &len);
            if (uuid_ok(s, len))
                return put(out, s, len, err, errlen);
        }
        return expected(L, idx, "uuid string", oid, err, errlen);
    case K_JSON:
        if (t == LUA_TSTRING) /* JSON text already */
            return enc_text(L, idx, oid, out, err, errlen);
        return weir_json_encode(L, idx, out, depth, err, errlen);
    case K_BYTEA: {
        char *dst;

        if (t != LUA_TSTRING)
            return expected(L, idx, "string", oid, err, errlen);
        s = lua_tolstring(L, idx, &len);
        if (len > (SIZE_MAX - 4) / 2 ||
            weir_buf_reserve(out, 2 + 2 * len) != WEIR_OK)
            return no_memory(err, errlen);
        dst = out->data + out->len;
        *dst++ = '\\';
        *dst++ = 'x';
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];

            *dst++ = hexdig[c >> 4];
            *dst++ = hexdig[c & 15];
        }
        out->len += 2 + 2 * len;
        out->data[out->len] = '\0';
        return WEIR_OK;
    }
    case K_ARRAY:
        if (t == LUA_TSTRING) /* an array literal already */
            return enc_text(L, idx, oid, out, err, errlen);
        if (t != LUA_TTABLE)
            return expected(L, idx, "table", oid, err, errlen);
        return enc_array(L, idx, elem_by_oid[oid], out, err, errlen,
                         depth);
    default:
        return enc_text(L, idx, oid, out, err, errlen);
    }
}

/* Quote the array element written at out[start..] if PostgreSQL's
 * array_in would misread it bare; works backwards in place. */
static int quote_inplace(weir_buf *out, size_t start)
{
    char *s = out->data + start, *src, *dst;
    size_t len = out->len - start, extra = 0;
    int need = len == 0 || (len == 4 && strncasecmp(s, "NULL", 4) == 0);

    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '"' || c == '\\')
            extra++, need = 1;
        else if (c == '{' || c == '}' || c == ',' ||
                 a_space((unsigned char)c))
            need = 1;
    }
    if (!need)
        return WEIR_OK;
    if (weir_buf_reserve(out, extra + 2) != WEIR_OK)
        return WEIR_ENOMEM;
    s = out->data + start;
    src = s + len;
    dst = s + len + extra + 2;
    *--dst = '"';
    while (src > s) {
        char c = *--src;

        *--dst = c;
        if (c == '"' || c == '\\')
            *--dst = '\\';
    }
    *--dst = '"';
    out->len += extra + 2;
    out->data[out->len] = '\0';
    return WEIR_OK;
}

static int enc_array(lua_State *L, int idx, uint32_t elem, weir_buf *out,
                     char *err, size_t errlen, int depth)
{
    size_t n = lua_objlen(L, idx);
    int json = kind_of(elem) == K_JSON, rc = WEIR_OK;

    if (depth > ARRAY_MAX_DEPTH) {
        weir_set_err(err, errlen, "array nested too deeply (a cycle?)");
        return WEIR_EINVAL;
    }
    if (!lua_checkstack(L, 4))
        return no_memory(err, errlen);
    if (n == 0) {
        lua_pushnil(L);
        if (lua_next(L, idx) != 0) {
            lua_pop(L, 2);
            weir_set_err(err, errlen, "expected a sequence for an array "
                                      "of %s, got a table with other keys",
                         tname(elem));
            return WEIR_EINVAL;
        }
    }
    if (weir_buf_putc(out, '{') != WEIR_OK)
        return no_memory(err, errlen);
    for (size_t i = 1; i <= n; i++) {
        int top;

        if (i > 1 && weir_buf_putc(out, ',') != WEIR_OK)
            return no_memory(err, errlen);
        lua_rawgeti(L, idx, (int)i);
        top = lua_gettop(L);
        if (is_null(L, top)) {
            rc = put(out, "NULL", 4, err, errlen);
        } else if (!json && lua_type(L, top) == LUA_TTABLE) {
            rc = enc_array(L, top, elem, out, err, errlen, depth + 1);
        } else {
            size_t start = out->len;

            rc = encode_raw(L, top, elem, out, err, errlen, depth + 1);
            if (rc == WEIR_OK && quote_inplace(out, start) != WEIR_OK)
                rc = no_memory(err, errlen);
            if (rc != WEIR_OK && rc != WEIR_ENOMEM) {
                char where[32];

                snprintf(where, sizeof where, "%zu", i);
                err_prefix(err, errlen, "array element %s: %s", where);
            }
        }
        lua_pop(L, 1);
        if (rc != WEIR_OK)
            return rc;
    }
    if (weir_buf_putc(out, '}') != WEIR_OK)
        return no_memory(err, errlen);
    return WEIR_OK;
}

/* COPY text escaping of out[start..], in place, backwards. */
static int copy_escape_inplace(weir_buf *out, size_t start)
{
    char *s, *src, *dst;
    size_t len = out->len - start, extra = 0;

    s = out->data + start;
    for (size_t i = 0; i < len; i++)
        extra += copy_extra[(unsigned char)s[i]];
    if (extra == 0)
        return WEIR_OK;
    if (weir_buf_reserve(out, extra) != WEIR_OK)
        return WEIR_ENOMEM;
    s = out->data + start;
    src = s + len;
    dst = s + len + extra;
    while (src > s) {
        unsigned char c = (unsigned char)*--src;

        switch (copy_extra[c]) {
        case 0:
            *--dst = (char)c;
            break;
        case 1:
            switch (c) {
            case '\\': *--dst = '\\'; break;
            case '\b': *--dst = 'b'; break;
            case '\f': *--dst = 'f'; break;
            case '\n': *--dst = 'n'; break;
            case '\r': *--dst = 'r'; break;
            case '\t': *--dst = 't'; break;
            default: *--dst = 'v'; break;
            }
            *--dst = '\\';
            break;
        default:
            *--dst = (char)('0' + (c & 7));
            *--dst = (char)('0' + (c >> 3 & 7));
            *--dst = (char)('0' + (c >> 6));
            *--dst = '\\';
        }
    }
    out->len += extra;
    out->data[out->len] = '\0';
    return WEIR_OK;
}

static int encode_value(lua_State *L, int idx, uint32_t oid, int copy,
                        weir_buf *out, char *err, size_t errlen)
{
    size_t start = out->len;
    int rc;

    if (is_null(L, idx)) {
        if (!copy) {
            weir_set_err(err, errlen, "value is NULL");
            return WEIR_ENOENT;
        }
        return put(out, "\\N", 2, err, errlen);
    }
    rc = encode_raw(L, idx, oid, out, err, errlen, 0);
    if (rc == WEIR_OK && copy && copy_escape_inplace(out, start) != WEIR_OK)
        rc = no_memory(err, errlen);
    if (rc != WEIR_OK)
        weir_buf_truncate(out, start);
    return rc;
}

int weir_pgcodec_encode(lua_State *L, int idx, uint32_t oid,
                        int copy, weir_buf *out, char *err,
                        size_t errlen)
{
    int top = lua_gettop(L), rc;

    idx = abs_index(L, idx);
    if (!lua_checkstack(L, 8))
        return no_memory(err, errlen);
    rc = encode_value(L, idx, oid, copy, out, err, errlen);
    lua_settop(L, top);
    return rc;
}

int weir_pgcodec_copy_encode_row(lua_State *L, int row_idx,
                                 int ncols, int names_idx,
                                 const uint32_t *oids,
                                 weir_buf *out, char *err,
                                 size_t errlen)
{
    int top = lua_gettop(L), rc = WEIR_OK;
    size_t start = out->len;

    row_idx = abs_index(L, row_idx);
    names_idx = abs_index(L, names_idx);
    if (lua_type(L, row_idx) != LUA_TTABLE) {
        weir_set_err(err, errlen, "copy row: expected a table, got %s",
                     lua_typename(L, lua_type(L, row_idx)));
        return WEIR_EINVAL;
    }
    if (ncols < 0 || lua_type(L, names_idx) != LUA_TTABLE) {
        weir_set_err(err, errlen, "copy row: bad column count or names");
        return WEIR_EINVAL;
    }
    if (!lua_checkstack(L, 8))
        return no_memory(err, errlen);
    for (int i = 0; i < ncols && rc == WEIR_OK; i++) {
        if (i > 0 && weir_buf_putc(out, '\t') != WEIR_OK) {
            rc = no_memory(err, errlen);
            break;
        }
        lua_rawgeti(L, names_idx, i + 1);
        if (lua_isnil(L, -1)) {
            weir_set_err(err, errlen, "copy row: column %d has no name",
                         i + 1);
            rc = WEIR_EINVAL;
            break;
        }
        lua_rawget(L, row_idx);
        rc = encode_value(L, top + 1, oids != NULL ? oids[i] : 25, 1, out,
                          err, errlen);
        lua_settop(L, top);
        if (rc != WEIR_OK && rc != WEIR_ENOMEM)
            column_err(L, names_idx, i, err, errlen);
    }
    if (rc == WEIR_OK && weir_buf_putc(out, '\n') != WEIR_OK)
        rc = no_memory(err, errlen);
    lua_settop(L, top);
    if (rc != WEIR_OK)
        weir_buf_truncate(out, start);
    return rc;
}
