/*
 * pgbinary.c - PostgreSQL binary COPY tuples <-> Lua rows (see
 * weir/pgbinary.h for the contract). Decoding prints dates and times the
 * way the server does with DateStyle ISO and TimeZone UTC, so a row is the
 * same Lua table the text codec builds; encoding parses the date/time
 * forms it can convert exactly and reports WEIR_EAGAIN for the rest, so
 * the caller can go on in text COPY. Calendar arithmetic is the proleptic
 * Gregorian days-from-civil / civil-from-days (no libc time zones), with
 * PostgreSQL's epoch 2000-01-01 and int64 microseconds. JSON and text
 * values that are not strings go through weir/pgcodec.h.
 * Relies on the classic Lua C API of LuaJIT and libc only.
 */
#include "weir/pgbinary.h"
#include "weir/numfmt.h"
#include "weir/pgshared.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- types -------------------------------------------------------------- */

enum {
    B_NONE = 0,
    B_BOOL,
    B_INT2,
    B_INT4,
    B_OID,
    B_INT8,
    B_FLOAT4,
    B_FLOAT8,
    B_TEXT,
    B_NAME,
    B_BYTEA,
    B_UUID,
    B_DATE,
    B_TS,
    B_TSTZ,
    B_JSON,
    B_JSONB
};

static inline int kind_of(uint32_t oid)
{
    switch (oid) {
    case 16: return B_BOOL;
    case 17: return B_BYTEA;
    case 19: return B_NAME;
    case 20: return B_INT8;
    case 21: return B_INT2;
    case 23: return B_INT4;
    case 25: return B_TEXT;
    case 26: return B_OID;
    case 114: return B_JSON;
    case 700: return B_FLOAT4;
    case 701: return B_FLOAT8;
    case 1042: return B_TEXT; /* bpchar: typmod applied by bpcharrecv */
    case 1043: return B_TEXT; /* varchar: likewise */
    case 1082: return B_DATE;
    case 1114: return B_TS;
    case 1184: return B_TSTZ;
    case 2950: return B_UUID;
    case 3802: return B_JSONB;
    default: return B_NONE;
    }
}

int weir_pgbinary_supported(uint32_t oid)
{
    return kind_of(oid) != B_NONE;
}

int weir_pgbinary_all_supported(int ncols, const uint32_t *oids)
{
    if (ncols < 0 || ncols > INT16_MAX || (ncols > 0 && oids == NULL))
        return 0;
    for (int i = 0; i < ncols; i++)
        if (kind_of(oids[i]) == B_NONE)
            return 0;
    return 1;
}

static const char *tname(uint32_t oid)
{
    const char *n = weir_pgcodec_type_name(oid);

    return n != NULL ? n : "unknown";
}

/* ---- big-endian bytes --------------------------------------------------- */

static inline uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) << 32 | rd32(p + 4);
}

static inline void wr16(char *p, uint16_t v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static inline void wr32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static inline void wr64(char *p, uint64_t v)
{
    wr32(p, (uint32_t)(v >> 32));
    wr32(p + 4, (uint32_t)v);
}

/* ---- errors ------------------------------------------------------------- */

/* WEIR_EAGAIN: the value is fine for text COPY, not for us. */
static int fallback(lua_State *L, int idx, uint32_t oid, const char *why,
                    char *err, size_t errlen)
{
    char d[80];

    weir_set_err(err, errlen, "%s for %s in binary COPY: %s (use text COPY)",
                 describe(L, idx, d, sizeof d), tname(oid), why);
    return WEIR_EAGAIN;
}


static void column_err(lua_State *L, int names_idx, int col, char *err,
                       size_t errlen)
{
    char inner[256], name[80];
    const char *s;

    if (err == NULL || errlen == 0)
        return;
    lua_rawgeti(L, names_idx, col + 1);
    s = lua_tostring(L, -1);
    if (s != NULL)
        snprintf(name, sizeof name, "%s", s);
    else
        snprintf(name, sizeof name, "#%d", col + 1);
    lua_pop(L, 1);
    snprintf(inner, sizeof inner, "%s", err);
    weir_set_err(err, errlen, "column \"%s\": %s", name, inner);
}


/* ---- calendar ----------------------------------------------------------- */

#define USECS_PER_DAY INT64_C(86400000000)
#define UNIX_TO_PG_DAYS 10957 /* 1970-01-01 to 2000-01-01 */

/* Days since 1970-01-01 of a proleptic Gregorian date; y is the
 * astronomical year (0 = 1 BC). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30,
                                          31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* ---- printing ----------------------------------------------------------- */

static const char digits2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";

static inline char *put2(char *p, unsigned v)
{
    memcpy(p, digits2 + 2 * v, 2);
    return p + 2;
}

/* YYYY-MM-DD as EncodeDateOnly/EncodeDateTime print it: the AD/BC year,
 * zero-padded to at least 4 digits. */
static char *put_date(char *p, int64_t y, unsigned m, unsigned d)
{
    uint64_t ay = y > 0 ? (uint64_t)y : (uint64_t)(1 - y);

    if (ay < 10000) {
        p = put2(p, (unsigned)(ay / 100));
        p = put2(p, (unsigned)(ay % 100));
    } else {
        p += weir_fmt_i64(p, (int64_t)ay);
    }
    *p++ = '-';
    p = put2(p, m);
    *p++ = '-';
    return put2(p, d);
}

/* buf: 32 bytes. */
static size_t fmt_date(char *buf, int32_t days)
{
    int64_t y;
    unsigned m, d;
    char *p;

    if (days == INT32_MAX) {
        memcpy(buf, "infinity", 8);
        return 8;
    }
    if (days == INT32_MIN) {
        memcpy(buf, "-infinity", 9);
        return 9;
    }
    civil_from_days((int64_t)days + UNIX_TO_PG_DAYS, &y, &m, &d);
    p = put_date(buf, y, m, d);
    if (y <= 0) {
        memcpy(p, " BC", 3);
        p += 3;
    }
    return (size_t)(p - buf);
}

/* buf: 64 bytes. Fractional seconds without trailing zeros, none when
 * zero (AppendSeconds); with_tz adds "+00", the UTC offset. */
static size_t fmt_timestamp(char *buf, int64_t us, int with_tz)
{
    int64_t days, rem, y;
    unsigned m, d, secs, frac;
    char *p;

    if (us == INT64_MAX) {
        memcpy(buf, "infinity", 8);
        return 8;
    }
    if (us == INT64_MIN) {
        memcpy(buf, "-infinity", 9);
        return 9;
    }
    days = us / USECS_PER_DAY;
    rem = us % USECS_PER_DAY;
    if (rem < 0) {
        rem += USECS_PER_DAY;
        days--;
    }
    civil_from_days(days + UNIX_TO_PG_DAYS, &y, &m, &d);
    p = put_date(buf, y, m, d);
    secs = (unsigned)(rem / 1000000);
    frac = (unsigned)(rem % 1000000);
    *p++ = ' ';
    p = put2(p, secs / 3600);
    *p++ = ':';
    p = put2(p, secs / 60 % 60);
    *p++ = ':';
    p = put2(p, secs % 60);
    if (frac != 0) {
        int n = 6;

        while (frac % 10 == 0)
            frac /= 10, n--;
        *p++ = '.';
        for (int i = n - 1; i >= 0; i--, frac /= 10)
            p[i] = (char)('0' + frac % 10);
        p += n;
    }
    if (with_tz) {
        memcpy(p, "+00", 3);
        p += 3;
    }
    if (y <= 0) {
        memcpy(p, " BC", 3);
        p += 3;
    }
    return (size_t)(p - buf);
}

/* One unit up in the last mantissa digit of a "%e" string, carrying
 * ("9.9e3" -> "10.0e3", which strtod reads fine). buf has room. */
static void bump_last_digit(char *buf)
{
    char *e = strchr(buf, 'e'), *q;

    for (q = e - 1; q >= buf; q--) {
        if (*q == '.')
            continue;
        if (*q != '9') {
            (*q)++;
            return;
        }
        *q = '0';
    }
    memmove(buf + 1, buf, strlen(buf) + 1);
    buf[0] = '1';
}

/* Does the decimal in buf name a (> 0) strictly inside its rounding
 * interval? float4out's Ryu never picks a decimal on the boundary (a tie
 * that strtof would round to a), so neither do we. The midpoints between
 * adjacent floats are exact doubles. */
static int inside(const char *buf, float a)
{
    double d = strtod(buf, NULL), fa = (double)a;
    double lo = (fa + (double)nextafterf(a, 0)) / 2;
    double hi = (fa + (double)nextafterf(a, INFINITY)) / 2;

    return strtof(buf, NULL) == a && d != lo && d != hi;
}

/* The double the server's float4 text reads as: float4out prints the
 * shortest digits strictly inside the interval that read back as f (Ryu,
 * extra_float_digits > 0), and the text codec parses those as a double.
 * Integers below 2^24 are printed exactly. The rest tries 1..9 digits
 * correctly rounded (ties to even, as Ryu does for exact ties), and the
 * next decimal up where the gap below a power of two is half the gap
 * above. */
static double float4_value(float f)
{
    char buf[48];
    float a = fabsf(f);
    int ex, pow2;

    if (!isfinite(f) || f == 0 || (a < 16777216.0f && a == truncf(a)))
        return (double)f;
    pow2 = frexpf(a, &ex) == 0.5f;
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, (double)a);
        if (inside(buf, a))
            break;
        if (pow2 && strtod(buf, NULL) < a) {
            bump_last_digit(buf);
            if (inside(buf, a))
                break;
        }
        if (p == 9) /* cannot happen: 9 digits always read back */
            return (double)f;
    }
    return f < 0 ? -strtod(buf, NULL) : strtod(buf, NULL);
}

/* ---- decoding ----------------------------------------------------------- */

static int bad_length(uint32_t oid, long len, char *err, size_t errlen)
{
    weir_set_err(err, errlen, "binary copy: bad length %ld for type %s", len,
                 tname(oid));
    return WEIR_EPARSE;
}

static int push_field(lua_State *L, uint32_t oid, int kind,
                      const unsigned char *p, size_t n, char *err,
                      size_t errlen)
{
    static const char hex[] = "0123456789abcdef";
    char buf[64];
    size_t k;
    int64_t i;
    uint32_t u;

    switch (kind) {
    case B_BOOL:
        if (n != 1)
            return bad_length(oid, (long)n, err, errlen);
        lua_pushboolean(L, p[0] != 0);
        return WEIR_OK;
    case B_INT2:
        if (n != 2)
            return bad_length(oid, (long)n, err, errlen);
        lua_pushnumber(L, (lua_Number)(int16_t)(p[0] << 8 | p[1]));
        return WEIR_OK;
    case B_INT4:
        if (n != 4)
            return bad_length(oid, (long)n, err, errlen);
        lua_pushnumber(L, (lua_Number)(int32_t)rd32(p));
        return WEIR_OK;
    case B_OID:
        if (n != 4)
            return bad_length(oid, (long)n, err, errlen);
        lua_pushnumber(L, (lua_Number)rd32(p));
        return WEIR_OK;
    case B_INT8:
        if (n != 8)
            return bad_length(oid, (long)n, err, errlen);
        i = (int64_t)rd64(p);
        if (i >= -(INT64_C(1) << 53) && i <= (INT64_C(1) << 53))
            lua_pushnumber(L, (lua_Number)i);
        else
            lua_pushlstring(L, buf, weir_fmt_i64(buf, i));
        return WEIR_OK;
    case B_FLOAT4: {
        float f;

        if (n != 4)
            return bad_length(oid, (long)n, err, errlen);
        u = rd32(p);
        memcpy(&f, &u, 4);
        lua_pushnumber(L, float4_value(f));
        return WEIR_OK;
    }
    case B_FLOAT8: {
        uint64_t b;
        double v;

        if (n != 8)
            return bad_length(oid, (long)n, err, errlen);
        b = rd64(p);
        memcpy(&v, &b, 8);
        lua_pushnumber(L, v);
        return WEIR_OK;
    }
    case B_TEXT:
    case B_NAME:
    case B_BYTEA:
        lua_pushlstring(L, (const char *)p, n);
        return WEIR_OK;
    case B_UUID:
        if (n != 16)
            return bad_length(oid, (long)n, err, errlen);
        k = 0;
        for (int j = 0; j < 16; j++) {
            if (j == 4 || j == 6 || j == 8 || j == 10)
                buf[k++] = '-';
            buf[k++] = hex[p[j] >> 4];
            buf[k++] = hex[p[j] & 15];
        }
        lua_pushlstring(L, buf, k);
        return WEIR_OK;
    case B_DATE:
        if (n != 4)
            return bad_length(oid, (long)n, err, errlen);
        lua_pushlstring(L, buf, fmt_date(buf, (int32_t)rd32(p)));
        return WEIR_OK;
    case B_TS:
    case B_TSTZ:
        if (n != 8)
            return bad_length(oid, (long)n, err, errlen);
        lua_pushlstring(L, buf, fmt_timestamp(buf, (int64_t)rd64(p),
                                              kind == B_TSTZ));
        return WEIR_OK;
    case B_JSON:
        return weir_pgcodec_push(L, oid, (const char *)p, n, err, errlen);
    case B_JSONB:
        if (n < 1 || p[0] != 1) {
            weir_set_err(err, errlen, "binary copy: unsupported jsonb "
                                      "version %d", n < 1 ? -1 : p[0]);
            return WEIR_EPARSE;
        }
        return weir_pgcodec_push(L, oid, (const char *)p + 1, n - 1, err,
                                 errlen);
    default:
        weir_set_err(err, errlen, "type %s (oid %u) has no binary codec",
                     tname(oid), (unsigned)oid);
        return WEIR_EINVAL;
    }
}

static const char signature[12] = "PGCOPY\n\377\r\n";

size_t weir_pgbinary_header_len(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
    uint32_t flags, ext;

    if (buf == NULL || len < 19 || memcmp(buf, signature, 11) != 0)
        return 0;
    flags = rd32(p + 11);
    ext = rd32(p + 15);
    /* bit 16: OIDs included; bits 17-31: critical, unknown to us */
    if ((flags & 0xffff0000u) != 0 || ext > len - 19)
        return 0;
    return 19 + (size_t)ext;
}

int weir_pgbinary_copy_row(lua_State *L, const char *buf,
                           size_t len, int ncols,
                           const uint32_t *oids, int names_idx,
                           char *err, size_t errlen)
{
    const unsigned char *p = (const unsigned char *)buf, *end;
    int top = lua_gettop(L), nf, rc;

    names_idx = abs_index(L, names_idx);
    if (ncols < 0 || lua_type(L, names_idx) != LUA_TTABLE) {
        weir_set_err(err, errlen, "binary copy: bad column count or names");
        return WEIR_EINVAL;
    }
    if (buf == NULL || len < 2) {
        weir_set_err(err, errlen, "binary copy: truncated row");
        return WEIR_EPARSE;
    }
    end = p + len;
    nf = (int16_t)(p[0] << 8 | p[1]);
    p += 2;
    if (nf == -1) {
        if (len == 2)
            return WEIR_ENOENT;
        weir_set_err(err, errlen, "binary copy: %zu bytes after the "
                                  "trailer", len - 2);
        return WEIR_EPARSE;
    }
    if (nf != ncols) {
        weir_set_err(err, errlen, "binary copy: expected %d fields, got %d",
                     ncols, nf);
        return WEIR_EPARSE;
    }
    if (!lua_checkstack(L, 8))
        return no_memory(err, errlen);
    lua_createtable(L, 0, ncols);
    for (int col = 0; col < ncols; col++) {
        int32_t flen;

        uint32_t oid = oids != NULL ? oids[col] : 25;
        int kind = kind_of(oid);

        lua_rawgeti(L, names_idx, col + 1);
        if (lua_isnil(L, -1)) {
            lua_settop(L, top);
            weir_set_err(err, errlen, "binary copy: column %d has no name",
                         col + 1);
            return WEIR_EINVAL;
        }
        if (kind == B_NONE) {
            /* even for a NULL: the caller chose binary for a wrong type */
            weir_set_err(err, errlen, "type %s (oid %u) has no binary codec",
                         tname(oid), (unsigned)oid);
            rc = WEIR_EINVAL;
        } else if (end - p < 4) {
            weir_set_err(err, errlen, "binary copy: truncated row");
            rc = WEIR_EPARSE;
        } else if ((flen = (int32_t)rd32(p)) == -1) {
            p += 4;
            lua_pushlightuserdata(L, NULL);
            rc = WEIR_OK;
        } else if (flen < 0 || flen > end - p - 4) {
            weir_set_err(err, errlen, "binary copy: bad field length %ld "
                         "(%ld bytes left)", (long)flen,
                         (long)(end - p - 4));
            rc = WEIR_EPARSE;
        } else {
            rc = push_field(L, oid, kind, p + 4, (size_t)flen, err, errlen);
            p += 4 + (size_t)flen;
        }
        if (rc != WEIR_OK) {
            lua_settop(L, top);
            column_err(L, names_idx, col, err, errlen);
            return rc;
        }
        lua_rawset(L, -3);
    }
    if (p != end) {
        lua_settop(L, top);
        weir_set_err(err, errlen, "binary copy: %ld bytes after the last "
                                  "field", (long)(end - p));
        return WEIR_EPARSE;
    }
    return WEIR_OK;
}

/* ---- parsing (encode side) ---------------------------------------------- */


/* [+-]digits -> int64: 0, -1 bad syntax, -2 out of range. */

/* [+-](digits[.digits]|.digits)[e[+-]digits], as the text codec checks. */

/* NaN / Infinity spellings the text codec passes for float columns. */



/* uuid_in's forms: optional braces, a hyphen allowed after any group of
 * four digits. */
static int parse_uuid(const char *s, size_t len, unsigned char out[16])
{
    const char *p = s, *end = s + len;
    int n = 0, brace = 0;

    if (p < end && *p == '{')
        brace = 1, p++;
    while (p < end && n < 32) {
        int h = hexval((unsigned char)*p);

        if (h < 0)
            return -1;
        if (n % 2 == 0)
            out[n / 2] = (unsigned char)(h << 4);
        else
            out[n / 2] |= (unsigned char)h;
        p++, n++;
        if (n % 4 == 0 && n < 32 && p < end && *p == '-')
            p++;
    }
    if (n != 32)
        return -1;
    if (brace && (p == end || *p++ != '}'))
        return -1;
    return p == end ? 0 : -1;
}

/* Exactly n digits at *pp (n <= 9) -> *v. Inlined: called per field of
 * every timestamp. */
static inline __attribute__((always_inline)) int
digits(const char **pp, const char *end, int n, int *v)
{
    const char *p = *pp;
    int x = 0;

    if (end - p < n)
        return -1;
    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return -1;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    *pp = p + n;
    return 0;
}

static inline int count_digits(const char *p, const char *end)
{
    int n = 0;

    while (p + n < end && is_digit(p[n]))
        n++;
    return n;
}

enum { DT_OK = 0, DT_POS_INF, DT_NEG_INF, DT_OTHER };

/* A date or timestamp in the forms the header lists. *days: days since
 * 2000-01-01; *usecs: microseconds since midnight; *offset: seconds east
 * of UTC (0 without one). DT_OTHER: not one we convert exactly. */
static int parse_datetime(const char *s, size_t len, int date_only,
                          int64_t *days, int64_t *usecs, int *offset)
{
    const char *p = s, *end = s + len;
    int year, mon, day, hour = 0, min = 0, sec = 0, frac = 0, bc = 0, nd;

    if (len == 8 && strncasecmp(s, "infinity", 8) == 0)
        return DT_POS_INF;
    if (len == 9 && strncasecmp(s, "-infinity", 9) == 0)
        return DT_NEG_INF;
    *offset = 0;
    nd = count_digits(p, end);
    if (!(nd == 4 || (nd == 5 && *p != '0')))
        return DT_OTHER;
    if (digits(&p, end, nd, &year) != 0 || p == end || *p++ != '-' ||
        digits(&p, end, 2, &mon) != 0 || p == end || *p++ != '-' ||
        digits(&p, end, 2, &day) != 0)
        return DT_OTHER;
    if (!date_only && end - p >= 2 && (*p == ' ' || *p == 'T') &&
        is_digit(p[1])) {
        p++;
        if (digits(&p, end, 2, &hour) != 0 || p == end || *p++ != ':' ||
            digits(&p, end, 2, &min) != 0)
            return DT_OTHER;
        if (p < end && *p == ':') {
            p++;
            if (digits(&p, end, 2, &sec) != 0)
                return DT_OTHER;
            if (p < end && *p == '.') {
                static const int scale[7] = {0,      100000, 10000, 1000,
                                             100,    10,     1};

                p++;
                nd = count_digits(p, end);
                if (nd < 1 || nd > 6 || digits(&p, end, nd, &frac) != 0)
                    return DT_OTHER;
                frac *= scale[nd];
            }
        }
        /* the zone, right after the time or after one space */
        {
            const char *q = p;

            if (end - q >= 2 && *q == ' ' &&
                (q[1] == '+' || q[1] == '-' || q[1] == 'Z'))
                q++;
            if (q < end && *q == 'Z') {
                p = q + 1;
            } else if (q < end && (*q == '+' || *q == '-')) {
                int neg = *q++ == '-', th = 0, tm = 0, ts = 0;

                nd = count_digits(q, end);
                if (nd == 1 || nd == 2) {
                    digits(&q, end, nd, &th);
                    if (q < end && *q == ':') {
                        q++;
                        if (digits(&q, end, 2, &tm) != 0)
                            return DT_OTHER;
                        if (q < end && *q == ':') {
                            q++;
                            if (digits(&q, end, 2, &ts) != 0)
                                return DT_OTHER;
                        }
                    }
                } else if (nd == 4) {
                    digits(&q, end, 2, &th);
                    digits(&q, end, 2, &tm);
                } else {
                    return DT_OTHER;
                }
                if (th > 15 || tm > 59 || ts > 59) /* the server refuses */
                    return DT_OTHER;
                *offset = (neg ? -1 : 1) * ((th * 60 + tm) * 60 + ts);
                p = q;
            }
        }
    }
    if (end - p == 3 && memcmp(p, " BC", 3) == 0) {
        bc = 1;
        p += 3;
    }
    if (p != end)
        return DT_OTHER;
    /* year 0 does not exist; 4714 BC is only partly in range */
    if (year == 0 || (bc && year > 4713))
        return DT_OTHER;
    if (bc)
        year = 1 - year;
    if (mon < 1 || mon > 12 || day < 1 ||
        (unsigned)day > days_in_month(year, (unsigned)mon) || hour > 23 ||
        min > 59 || sec > 59)
        return DT_OTHER;
    *days = days_from_civil(year, (unsigned)mon, (unsigned)day) -
            UNIX_TO_PG_DAYS;
    *usecs = ((int64_t)hour * 3600 + min * 60 + sec) * 1000000 + frac;
    return DT_OK;
}

/* ---- encoding ----------------------------------------------------------- */

/* Integral double in int64 range -> *out. */

/* Room for n more bytes; the caller fills them and bumps out->len. */
static inline char *room(weir_buf *out, size_t n)
{
    if (out->cap - out->len <= n && weir_buf_reserve(out, n) != WEIR_OK)
        return NULL;
    return out->data + out->len;
}

static int put_field(weir_buf *out, const void *s, size_t n, char *err,
                     size_t errlen)
{
    char *d;

    if (n > INT32_MAX) {
        weir_set_err(err, errlen, "value of %zu bytes is too long", n);
        return WEIR_EINVAL;
    }
    if ((d = room(out, 4 + n)) == NULL)
        return no_memory(err, errlen);
    wr32(d, (uint32_t)n);
    if (n > 0)
        memcpy(d + 4, s, n);
    out->len += 4 + n;
    return WEIR_OK;
}

static inline int put_fixed(weir_buf *out, uint64_t v, int n, char *err,
                            size_t errlen)
{
    char *d;

    if ((d = room(out, 4 + (size_t)n)) == NULL)
        return no_memory(err, errlen);
    wr32(d, (uint32_t)n);
    switch (n) {
    case 1: d[4] = (char)v; break;
    case 2: wr16(d + 4, (uint16_t)v); break;
    case 4: wr32(d + 4, (uint32_t)v); break;
    default: wr64(d + 4, v); break;
    }
    out->len += 4 + (size_t)n;
    return WEIR_OK;
}

/* The text codec's text of a non-string value (numbers, booleans, JSON
 * tables), framed as one field; jsonb gets its version byte first. */
static int put_via_text(lua_State *L, int idx, uint32_t oid, int version,
                        weir_buf *out, char *err, size_t errlen)
{
    size_t at = out->len, n;
    int rc;

    if (room(out, 5) == NULL)
        return no_memory(err, errlen);
    out->len += 4;
    if (version)
        out->data[out->len++] = 1;
    rc = weir_pgcodec_encode(L, idx, oid, 0, out, err, errlen);
    if (rc != WEIR_OK) {
        out->len = at;
        return rc;
    }
    n = out->len - at - 4;
    if (n > INT32_MAX) {
        out->len = at;
        weir_set_err(err, errlen, "value of %zu bytes is too long", n);
        return WEIR_EINVAL;
    }
    wr32(out->data + at, (uint32_t)n);
    return WEIR_OK;
}

static int no_nul(uint32_t oid, const char *s, size_t len, char *err,
                  size_t errlen)
{
    if (memchr(s, '\0', len) != NULL) {
        weir_set_err(err, errlen, "a %s value cannot contain a NUL byte "
                                  "(use bytea)", tname(oid));
        return WEIR_EINVAL;
    }
    return WEIR_OK;
}

static int enc_int(lua_State *L, int idx, int t, uint32_t oid, int size,
                   weir_buf *out, char *err, size_t errlen)
{
    int64_t lo, hi, i;
    const char *s;
    size_t len;

    switch (oid) {
    case 21: lo = -32768, hi = 32767; break;
    case 23: lo = INT32_MIN, hi = INT32_MAX; break;
    case 26: lo = 0, hi = UINT32_MAX; break;
    default: lo = INT64_MIN, hi = INT64_MAX; break;
    }
    if (t == LUA_TNUMBER) {
        if (dbl_to_i64(lua_tonumber(L, idx), &i) != 0 || i < lo || i > hi)
            return expected(L, idx, "integer", oid, err, errlen);
    } else if (t == LUA_TSTRING) {
        s = lua_tolstring(L, idx, &len);
        if (parse_int64(s, len, &i) != 0 || i < lo || i > hi)
            return expected(L, idx, "integer", oid, err, errlen);
    } else {
        return expected(L, idx, "integer", oid, err, errlen);
    }
    return put_fixed(out, (uint64_t)i, size, err, errlen);
}

static int enc_float(lua_State *L, int idx, int t, uint32_t oid, int f4,
                     weir_buf *out, char *err, size_t errlen)
{
    const char *s;
    size_t len;
    double v;
    uint64_t b8;
    uint32_t b4;
    float f;

    if (t == LUA_TNUMBER) {
        v = lua_tonumber(L, idx);
        if (f4 && isfinite(v) && isinf((float)v)) {
            weir_set_err(err, errlen, "value %.17g is out of range for "
                                      "type float4", v);
            return WEIR_EINVAL;
        }
    } else if (t == LUA_TSTRING) {
        s = lua_tolstring(L, idx, &len); /* NUL-terminated by Lua */
        if (special_float(s, len, &v)) {
            /* as spelled */
        } else if (decimal_ok(s, len)) {
            /* as float4in/float8in read it: out of range is their error */
            errno = 0;
            if (f4) {
                f = strtof(s, NULL);
                v = (double)f;
            } else {
                v = strtod(s, NULL);
            }
            if (errno == ERANGE && (v == 0 || isinf(v)))
                return fallback(L, idx, oid, "out of range", err, errlen);
        } else {
            return expected(L, idx, "number", oid, err, errlen);
        }
    } else {
        return expected(L, idx, "number", oid, err, errlen);
    }
    if (f4) {
        /* NaN as float4in makes it, whatever the payload */
        if (isnan(v)) {
            b4 = 0x7fc00000u;
        } else {
            f = (float)v;
            memcpy(&b4, &f, 4);
        }
        return put_fixed(out, b4, 4, err, errlen);
    }
    if (isnan(v))
        b8 = UINT64_C(0x7ff8000000000000);
    else
        memcpy(&b8, &v, 8);
    return put_fixed(out, b8, 8, err, errlen);
}

static int enc_datetime(lua_State *L, int idx, int t, uint32_t oid,
                        int kind, weir_buf *out, char *err, size_t errlen)
{
    const char *s;
    size_t len;
    int64_t days, usecs, ts;
    int offset, rc;

    if (t != LUA_TSTRING)
        return expected(L, idx, "string", oid, err, errlen);
    s = lua_tolstring(L, idx, &len);
    if ((rc = no_nul(oid, s, len, err, errlen)) != WEIR_OK)
        return rc;
    rc = parse_datetime(s, len, kind == B_DATE, &days, &usecs, &offset);
    if (rc == DT_OTHER)
        return fallback(L, idx, oid, "not a form converted here", err,
                        errlen);
    if (kind == B_DATE) {
        int32_t d = rc == DT_POS_INF   ? INT32_MAX
                    : rc == DT_NEG_INF ? INT32_MIN
                                       : (int32_t)days;

        return put_fixed(out, (uint32_t)d, 4, err, errlen);
    }
    if (rc == DT_POS_INF)
        ts = INT64_MAX;
    else if (rc == DT_NEG_INF)
        ts = INT64_MIN;
    else
        ts = days * USECS_PER_DAY + usecs -
             (kind == B_TSTZ ? (int64_t)offset * 1000000 : 0);
    return put_fixed(out, (uint64_t)ts, 8, err, errlen);
}

static int encode_value(lua_State *L, int idx, uint32_t oid, weir_buf *out,
                        char *err, size_t errlen)
{
    int t = lua_type(L, idx), kind = kind_of(oid), b, rc;
    const char *s;
    size_t len;

    if (t == LUA_TNIL ||
        (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL)) {
        char *d = room(out, 4);

        if (d == NULL)
            return no_memory(err, errlen);
        wr32(d, UINT32_MAX);
        out->len += 4;
        return WEIR_OK;
    }
    switch (kind) {
    case B_BOOL:
        if (t == LUA_TBOOLEAN)
            b = lua_toboolean(L, idx);
        else if (t != LUA_TSTRING ||
                 (s = lua_tolstring(L, idx, &len),
                  b = bool_word(s, len)) < 0)
            return expected(L, idx, "boolean", oid, err, errlen);
        return put_fixed(out, (uint64_t)b, 1, err, errlen);
    case B_INT2:
        return enc_int(L, idx, t, oid, 2, out, err, errlen);
    case B_INT4:
    case B_OID:
        return enc_int(L, idx, t, oid, 4, out, err, errlen);
    case B_INT8:
        return enc_int(L, idx, t, oid, 8, out, err, errlen);
    case B_FLOAT4:
    case B_FLOAT8:
        return enc_float(L, idx, t, oid, kind == B_FLOAT4, out, err,
                         errlen);
    case B_TEXT:
    case B_NAME:
    case B_JSON:
    case B_JSONB:
        if (t != LUA_TSTRING) {
            size_t at = out->len;

            rc = put_via_text(L, idx, oid, kind == B_JSONB, out, err,
                              errlen);
            if (rc == WEIR_OK && kind == B_NAME && out->len - at - 4 > 63) {
                out->len = at;
                return fallback(L, idx, oid, "namein would truncate it",
                                err, errlen);
            }
            return rc;
        }
        s = lua_tolstring(L, idx, &len);
        if ((rc = no_nul(oid, s, len, err, errlen)) != WEIR_OK)
            return rc;
        if (kind == B_NAME && len > 63) /* namerecv refuses it */
            return fallback(L, idx, oid, "namein would truncate it", err,
                            errlen);
        if (kind == B_JSONB) {
            char *d;

            if (len >= INT32_MAX) {
                weir_set_err(err, errlen, "value of %zu bytes is too long",
                             len);
                return WEIR_EINVAL;
            }
            if ((d = room(out, 5 + len)) == NULL)
                return no_memory(err, errlen);
            wr32(d, (uint32_t)(len + 1));
            d[4] = 1;
            memcpy(d + 5, s, len);
            out->len += 5 + len;
            return WEIR_OK;
        }
        return put_field(out, s, len, err, errlen);
    case B_BYTEA:
        if (t != LUA_TSTRING)
            return expected(L, idx, "string", oid, err, errlen);
        s = lua_tolstring(L, idx, &len);
        return put_field(out, s, len, err, errlen);
    case B_UUID: {
        unsigned char u[16];

        if (t != LUA_TSTRING ||
            (s = lua_tolstring(L, idx, &len), parse_uuid(s, len, u)) != 0)
            return expected(L, idx, "uuid string", oid, err, errlen);
        return put_field(out, u, 16, err, errlen);
    }
    case B_DATE:
    case B_TS:
    case B_TSTZ:
        return enc_datetime(L, idx, t, oid, kind, out, err, errlen);
    default:
        weir_set_err(err, errlen, "type %s (oid %u) has no binary codec",
                     tname(oid), (unsigned)oid);
        return WEIR_EINVAL;
    }
}

int weir_pgbinary_encode_row(lua_State *L, int row_idx, int ncols,
                             int names_idx, const uint32_t *oids,
                             weir_buf *out, char *err,
                             size_t errlen)
{
    int top = lua_gettop(L), rc = WEIR_OK;
    size_t start = out->len;
    char *d;

    row_idx = abs_index(L, row_idx);
    names_idx = abs_index(L, names_idx);
    if (lua_type(L, row_idx) != LUA_TTABLE) {
        weir_set_err(err, errlen, "copy row: expected a table, got %s",
                     lua_typename(L, lua_type(L, row_idx)));
        return WEIR_EINVAL;
    }
    if (ncols < 0 || ncols > INT16_MAX ||
        lua_type(L, names_idx) != LUA_TTABLE) {
        weir_set_err(err, errlen, "copy row: bad column count or names");
        return WEIR_EINVAL;
    }
    if (!lua_checkstack(L, 8))
        return no_memory(err, errlen);
    /* the field count and room for the fixed-size fields */
    if ((d = room(out, 2 + (size_t)ncols * 12)) == NULL)
        return no_memory(err, errlen);
    wr16(d, (uint16_t)ncols);
    out->len += 2;
    for (int i = 0; i < ncols; i++) {
        /* row[nil] is nil: look for a missing name only then */
        lua_rawgeti(L, names_idx, i + 1);
        lua_rawget(L, row_idx);
        if (lua_type(L, -1) == LUA_TNIL) {
            lua_rawgeti(L, names_idx, i + 1);
            if (lua_type(L, -1) == LUA_TNIL) {
                weir_set_err(err, errlen, "copy row: column %d has no name",
                             i + 1);
                rc = WEIR_EINVAL;
                break;
            }
            lua_pop(L, 1);
        }
        rc = encode_value(L, top + 1, oids != NULL ? oids[i] : 25, out, err,
                          errlen);
        lua_settop(L, top);
        if (rc != WEIR_OK) {
            if (rc != WEIR_ENOMEM)
                column_err(L, names_idx, i, err, errlen);
            break;
        }
    }
    lua_settop(L, top);
    if (rc != WEIR_OK)
        out->len = start;
    if (out->data != NULL)
        out->data[out->len] = '\0';
    return rc;
}

int weir_pgbinary_header(weir_buf *out)
{
    static const char hdr[20] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

    return weir_buf_append(out, hdr, 19);
}

int weir_pgbinary_trailer(weir_buf *out)
{
    return weir_buf_append(out, "\377\377", 2);
}
