/*
 * json.c - JSON (RFC 8259) between text and Lua values, in C: the fast
 * path for task outputs and inputs, JSON lines files, dead-letter records
 * and PostgreSQL json/jsonb values (ADR 44). weir.json (Lua) is the other
 * one, for what must explain itself (paths of bad values, error positions
 * by line and column, sorted keys). Also the "weir.json" userdata: a json
 * value read from PostgreSQL kept as the server's text (ADR 14).
 * Numbers print exactly (numfmt.h: every integer of int64 range in full,
 * others by the shortest round-trip text) and parse to the nearest double.
 * Relies on the classic Lua C API of LuaJIT, numfmt.h and buf.h.
 */
#include "weir/json.h"
#include "weir/numfmt.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 512
#define ENCODE_MAX_DEPTH 128

static inline int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int no_memory(char *err, size_t errlen)
{
    weir_set_err(err, errlen, "out of memory");
    return WEIR_ENOMEM;
}

/* The unescape space of the decoder: a userdata in the registry, freed
 * with the state and safe if a Lua memory error unwinds through us. */
static char scratch_key;

static char *scratch(lua_State *L, size_t need)
{
    void *p;
    size_t cap;

    lua_pushlightuserdata(L, &scratch_key);
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
    lua_pushlightuserdata(L, &scratch_key);
    p = lua_newuserdata(L, cap);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return p;
}

/* v (finite) as JSON text: every integer of int64 range in full, the rest
 * by the shortest round-trip text. buf holds WEIR_NUMFMT_MAX bytes. */
static size_t fmt_number(char *buf, double v)
{
    if (v != 0 && v >= -9223372036854775808.0 && v < 9223372036854775808.0 &&
        (double)(int64_t)v == v)
        return weir_fmt_i64(buf, (int64_t)v);
    return weir_fmt_double(buf, v);
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct {
    lua_State *L;
    const char *s, *p, *end;
    char *buf; /* unescape space, as long as the whole text */
    char *err;
    size_t errlen;
    int depth;
} jdec;

static int j_fail(jdec *d, const char *what)
{
    weir_set_err(d->err, d->errlen, "invalid JSON at offset %zu: %s",
                 (size_t)(d->p - d->s), what);
    return WEIR_EPARSE;
}

static inline void j_ws(jdec *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' ||
                             *d->p == '\r' || *d->p == '\t'))
        d->p++;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
    unsigned v = 0;

    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int h = weir_hexval((unsigned char)p[i]);

        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

static size_t utf8_put(char *dst, unsigned cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | cp >> 6);
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | cp >> 12);
        dst[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | cp >> 18);
    dst[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    dst[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at d->p (the opening quote); pushes it. Escaped text never
 * grows, so the unescape space is the length of the whole text. */
static int j_string(jdec *d)
{
    const char *p = d->p + 1, *end = d->end, *run = p;
    size_t n = 0;
    char *dst;

    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    if (p < end && *p == '"') {
        lua_pushlstring(d->L, run, (size_t)(p - run));
        d->p = p + 1;
        return WEIR_OK;
    }
    if (d->buf == NULL)
        d->buf = scratch(d->L, (size_t)(d->end - d->s));
    dst = d->buf;
    n = (size_t)(p - run);
    memcpy(dst, run, n);
    for (;;) {
        while (p < end && *p != '"' && *p != '\\' &&
               (unsigned char)*p >= 0x20)
            dst[n++] = *p++;
        if (p >= end) {
            d->p = p;
            return j_fail(d, "unterminated string");
        }
        if (*p == '"')
            break;
        if (*p != '\\') {
            d->p = p;
            return j_fail(d, "control character in string");
        }
        if (++p >= end) {
            d->p = p;
            return j_fail(d, "unterminated string");
        }
        switch (*p++) {
        case '"': dst[n++] = '"'; break;
        case '\\': dst[n++] = '\\'; break;
        case '/': dst[n++] = '/'; break;
        case 'b': dst[n++] = '\b'; break;
        case 'f': dst[n++] = '\f'; break;
        case 'n': dst[n++] = '\n'; break;
        case 'r': dst[n++] = '\r'; break;
        case 't': dst[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;

            if (hex4(p, end, &cp) != 0) {
                d->p = p;
                return j_fail(d, "bad \\u escape");
            }
            p += 4;
            /* a surrogate pair is one code point; a lone surrogate is
             * kept as its 3-byte form (json, unlike jsonb, allows it) */
            if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' &&
                p[1] == 'u' && hex4(p + 2, end, &lo) == 0 && lo >= 0xdc00 &&
                lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            n += utf8_put(dst + n, cp);
            break;
        }
        default:
            d->p = p - 1;
            return j_fail(d, "bad escape");
        }
    }
    lua_pushlstring(d->L, dst, n);
    d->p = p + 1;
    return WEIR_OK;
}

static int j_value(jdec *d);

static int j_enter(jdec *d)
{
    if (++d->depth > JSON_MAX_DEPTH)
        return j_fail(d, "nested too deeply");
    if (!lua_checkstack(d->L, 4))
        return no_memory(d->err, d->errlen);
    d->p++;
    return WEIR_OK;
}

static int j_array(jdec *d)
{
    int rc, n = 0;

    if ((rc = j_enter(d)) != WEIR_OK)
        return rc;
    lua_createtable(d->L, 4, 0);
    j_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        d->depth--;
        return WEIR_OK;
    }
    for (;;) {
        if ((rc = j_value(d)) != WEIR_OK)
            return rc;
        lua_rawseti(d->L, -2, ++n);
        j_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == ']')
            break;
        return j_fail(d, "expected ',' or ']'");
    }
    d->p++;
    d->depth--;
    return WEIR_OK;
}

static int j_object(jdec *d)
{
    int rc;

    if ((rc = j_enter(d)) != WEIR_OK)
        return rc;
    lua_createtable(d->L, 0, 4);
    j_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        d->depth--;
        return WEIR_OK;
    }
    for (;;) {
        j_ws(d);
        if (d->p >= d->end || *d->p != '"')
            return j_fail(d, "expected a string key");
        if ((rc = j_string(d)) != WEIR_OK)
            return rc;
        j_ws(d);
        if (d->p >= d->end || *d->p != ':')
            return j_fail(d, "expected ':'");
        d->p++;
        if ((rc = j_value(d)) != WEIR_OK)
            return rc;
        lua_rawset(d->L, -3);
        j_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == '}')
            break;
        return j_fail(d, "expected ',' or '}'");
    }
    d->p++;
    d->depth--;
    return WEIR_OK;
}

static int j_word(jdec *d, const char *w, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, w, n) != 0)
        return j_fail(d, "unexpected character");
    d->p += n;
    return WEIR_OK;
}

/* A number by RFC 8259's grammar at d->p, skipped: 0, or -1 when what is
 * there is not one. */
static int j_number(jdec *d)
{
    const char *p = d->p, *end = d->end;

    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        while (p < end && is_digit(*p))
            p++;
    else
        return -1;
    if (p < end && *p == '.') {
        if (++p >= end || !is_digit(*p))
            return -1;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return -1;
        while (p < end && is_digit(*p))
            p++;
    }
    d->p = p;
    return 0;
}

/* s[0..len), a valid JSON number, as the nearest double (glibc's strtod
 * rounds correctly; weir never changes LC_NUMERIC). */
static int to_double(const char *s, size_t len, double *out)
{
    char stackbuf[64], *buf = stackbuf;

    if (len >= sizeof stackbuf && (buf = malloc(len + 1)) == NULL)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = strtod(buf, NULL);
    if (buf != stackbuf)
        free(buf);
    return 0;
}

static int j_value(jdec *d)
{
    const char *start;
    double v;
    int rc;

    j_ws(d);
    if (d->p >= d->end)
        return j_fail(d, "unexpected end of input");
    switch (*d->p) {
    case '{':
        return j_object(d);
    case '[':
        return j_array(d);
    case '"':
        return j_string(d);
    case 't':
        if ((rc = j_word(d, "true", 4)) == WEIR_OK)
            lua_pushboolean(d->L, 1);
        return rc;
    case 'f':
        if ((rc = j_word(d, "false", 5)) == WEIR_OK)
            lua_pushboolean(d->L, 0);
        return rc;
    case 'n':
        if ((rc = j_word(d, "null", 4)) == WEIR_OK)
            lua_pushlightuserdata(d->L, NULL);
        return rc;
    default:
        break;
    }
    start = d->p;
    if (j_number(d) != 0) {
        d->p = start;
        return j_fail(d, *start == '-' || is_digit(*start) ? "bad number"
                                                           : "unexpected character");
    }
    if (to_double(start, (size_t)(d->p - start), &v) != 0) {
        d->p = start;
        return no_memory(d->err, d->errlen);
    }
    if (!isfinite(v)) {
        d->p = start;
        return j_fail(d, "number beyond the range of a double");
    }
    lua_pushnumber(d->L, v);
    return WEIR_OK;
}

int weir_json_decode(lua_State *L, const char *s, size_t len, char *err,
                     size_t errlen)
{
    jdec d = {L, s, s, s + len, NULL, err, errlen, 0};
    int rc = j_value(&d);

    if (rc != WEIR_OK)
        return rc;
    j_ws(&d);
    if (d.p != d.end)
        return j_fail(&d, "trailing characters");
    return WEIR_OK;
}

/* ---- json values (text kept) ------------------------------------------- */

/* A json or jsonb value as read: a "weir.json" userdata holding the
 * server's text, never parsed on the way through, so a copy writes the
 * very text it read (JSON null, a string "123", 9007199254740993, 1e400,
 * json's key order and escapes). A map reads inside it with v:decode();
 * tostring(v) is the text. Other C units and trusted Lua know it by the
 * metatable registry["weir.json"] (getmetatable gives the string
 * "weir.json") and take the text from __tostring. */
#define JSONVAL_MT "weir.json"

typedef struct {
    size_t len;
    char text[]; /* len bytes and a NUL */
} jsonval;

const char *weir_json_value_text(lua_State *L, int idx, size_t *len)
{
    jsonval *v;
    int same;

    if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, JSONVAL_MT);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!same)
        return NULL;
    v = lua_touserdata(L, idx);
    *len = v->len;
    return v->text;
}

static jsonval *jsonval_check(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, JSONVAL_MT);
}

static int jsonval_tostring(lua_State *L)
{
    jsonval *v = jsonval_check(L, 1);

    lua_pushlstring(L, v->text, v->len);
    return 1;
}

static int jsonval_eq(lua_State *L)
{
    jsonval *a = jsonval_check(L, 1), *b = jsonval_check(L, 2);

    lua_pushboolean(L, a->len == b->len &&
                           memcmp(a->text, b->text, a->len) == 0);
    return 1;
}

/* v:decode() -> the Lua value: tables, numbers (doubles), strings,
 * booleans, JSON null as the NULL sentinel. Raises when a number does
 * not fit a double (1e400): the text keeps it, a Lua number cannot. */
static int jsonval_decode(lua_State *L)
{
    jsonval *v = jsonval_check(L, 1);
    char err[200];

    lua_settop(L, 1);
    if (weir_json_decode(L, v->text, v->len, err, sizeof err) != WEIR_OK)
        return luaL_error(L, "json value: %s", err);
    return 1;
}

static int jsonval_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);

    if (k != NULL && strcmp(k, "decode") == 0) {
        lua_pushcfunction(L, jsonval_decode);
        return 1;
    }
    return luaL_error(L, "a json value has no field %s%s%s: read inside it "
                         "with v:decode(), its text with tostring(v)",
                      k != NULL ? "'" : "", k != NULL ? k : "of this type",
                      k != NULL ? "'" : "");
}

/* Push a json value holding s[0..len). */
void weir_json_value_push(lua_State *L, const char *s, size_t len)
{
    jsonval *v = lua_newuserdata(L, sizeof *v + len + 1);

    v->len = len;
    memcpy(v->text, s, len);
    v->text[len] = '\0';
    if (luaL_newmetatable(L, JSONVAL_MT)) {
        lua_pushcfunction(L, jsonval_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, jsonval_eq);
        lua_setfield(L, -2, "__eq");
        lua_pushcfunction(L, jsonval_index);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, JSONVAL_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
}

/* ---- encoding ----------------------------------------------------------- */

/* Extra bytes a JSON string needs per byte: 1 for \" \\ \b \f \n \r \t,
 * 5 for \u00XX, 0 otherwise (bytes >= 0x80 included). */
static const unsigned char json_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5,
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static const char hexdig[] = "0123456789abcdef";

static int j_enc_string(weir_buf *out, const char *s, size_t len)
{
    size_t extra = 0;
    char *dst;

    for (size_t i = 0; i < len; i++)
        extra += json_extra[(unsigned char)s[i]];
    if (weir_buf_reserve(out, len + extra + 2) != WEIR_OK)
        return WEIR_ENOMEM;
    dst = out->data + out->len;
    *dst++ = '"';
    if (extra == 0) {
        memcpy(dst, s, len);
        dst += len;
    } else {
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];

            if (json_extra[c] == 0) {
                *dst++ = (char)c;
                continue;
            }
            *dst++ = '\\';
            switch (c) {
            case '"': *dst++ = '"'; break;
            case '\\': *dst++ = '\\'; break;
            case '\b': *dst++ = 'b'; break;
            case '\f': *dst++ = 'f'; break;
            case '\n': *dst++ = 'n'; break;
            case '\r': *dst++ = 'r'; break;
            case '\t': *dst++ = 't'; break;
            default:
                memcpy(dst, "u00", 3);
                dst[3] = hexdig[c >> 4];
                dst[4] = hexdig[c & 15];
                dst += 5;
            }
        }
    }
    *dst++ = '"';
    out->len = (size_t)(dst - out->data);
    out->data[out->len] = '\0';
    return WEIR_OK;
}

static int j_enc(lua_State *L, int idx, weir_buf *out, char *err,
                 size_t errlen, int depth);

/* An object's key: its text (a number key as its number text), kept in
 * the key itself or in num. */
typedef struct {
    const char *s;
    size_t len;
    int i;           /* its index in the keys table */
    char num[WEIR_NUMFMT_MAX];
} jkey;

static int jkey_cmp(const void *pa, const void *pb)
{
    const jkey *a = pa, *b = pb;
    int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);

    return c != 0 ? c : (a->len > b->len) - (a->len < b->len);
}

/* The object at idx, its keys sorted by their text (byte order, as
 * weir.json sorts them), so one value always has one text. The keys are
 * held by a table of their own, not the stack, however many there are. */
static int j_enc_object(lua_State *L, int idx, size_t n, weir_buf *out,
                        char *err, size_t errlen, int depth)
{
    int keys, rc = WEIR_OK;
    jkey *k;

    lua_createtable(L, (int)n, 0);
    keys = lua_gettop(L);
    k = lua_newuserdata(L, (n ? n : 1) * sizeof *k);
    n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, keys, (int)++n);
        k[n - 1].i = (int)n;
        if (lua_type(L, -1) == LUA_TSTRING) {
            k[n - 1].s = lua_tolstring(L, -1, &k[n - 1].len);
        } else if (lua_type(L, -1) == LUA_TNUMBER &&
                   isfinite(lua_tonumber(L, -1))) {
            /* formatted here: lua_tolstring would change the key */
            k[n - 1].len = fmt_number(k[n - 1].num, lua_tonumber(L, -1));
            k[n - 1].s = k[n - 1].num;
        } else {
            weir_set_err(err, errlen, "cannot encode a %s key as JSON",
                         lua_typename(L, lua_type(L, -1)));
            lua_settop(L, keys - 1);
            return WEIR_EINVAL;
        }
    }
    qsort(k, n, sizeof *k, jkey_cmp);
    if (weir_buf_putc(out, '{') != WEIR_OK)
        rc = no_memory(err, errlen);
    for (size_t i = 0; i < n && rc == WEIR_OK; i++) {
        if ((i > 0 && weir_buf_putc(out, ',') != WEIR_OK) ||
            j_enc_string(out, k[i].s, k[i].len) != WEIR_OK ||
            weir_buf_putc(out, ':') != WEIR_OK) {
            rc = no_memory(err, errlen);
            break;
        }
        lua_rawgeti(L, keys, k[i].i);
        lua_rawget(L, idx);
        rc = j_enc(L, lua_gettop(L), out, err, errlen, depth + 1);
        lua_pop(L, 1);
    }
    if (rc == WEIR_OK && weir_buf_putc(out, '}') != WEIR_OK)
        rc = no_memory(err, errlen);
    lua_settop(L, keys - 1);
    return rc;
}

static int j_enc_table(lua_State *L, int idx, weir_buf *out, char *err,
                       size_t errlen, int depth)
{
    size_t count = 0, max = 0, nkeys = 0;
    int is_array = 1, rc = WEIR_OK;

    if (depth > ENCODE_MAX_DEPTH) {
        weir_set_err(err, errlen, "table nested too deeply (a cycle?)");
        return WEIR_EINVAL;
    }
    if (!lua_checkstack(L, 8))
        return no_memory(err, errlen);
    /* keys 1..n (holes allowed) make an array; anything else an object */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_Number k;

        lua_pop(L, 1);
        nkeys++;
        if (lua_type(L, -1) == LUA_TNUMBER &&
            (k = lua_tonumber(L, -1)) >= 1 && k == floor(k) &&
            k < 2147483648.0) {
            count++;
            if ((size_t)k > max)
                max = (size_t)k;
        } else {
            is_array = 0;
        }
    }
    if (count == 0)
        is_array = 0; /* the empty table is {} */
    if (is_array && max > 2 * count + 10) {
        weir_set_err(err, errlen,
                     "cannot encode a sparse array as JSON "
                     "(%zu elements, largest index %zu)",
                     count, max);
        return WEIR_EINVAL;
    }
    if (is_array) {
        if (weir_buf_putc(out, '[') != WEIR_OK)
            return no_memory(err, errlen);
        for (size_t i = 1; i <= max && rc == WEIR_OK; i++) {
            if (i > 1 && weir_buf_putc(out, ',') != WEIR_OK)
                return no_memory(err, errlen);
            lua_rawgeti(L, idx, (int)i);
            rc = j_enc(L, lua_gettop(L), out, err, errlen, depth + 1);
            lua_pop(L, 1);
        }
        if (rc == WEIR_OK && weir_buf_putc(out, ']') != WEIR_OK)
            return no_memory(err, errlen);
        return rc;
    }
    return j_enc_object(L, idx, nkeys, out, err, errlen, depth);
}

static int j_enc(lua_State *L, int idx, weir_buf *out, char *err,
                 size_t errlen, int depth)
{
    char num[40];
    const char *s;
    size_t len;
    double v;

    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        s = "null", len = 4;
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL)
            goto unsupported;
        s = "null", len = 4;
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            s = "true", len = 4;
        else
            s = "false", len = 5;
        break;
    case LUA_TNUMBER:
        v = lua_tonumber(L, idx);
        if (!isfinite(v)) {
            weir_set_err(err, errlen, "cannot encode NaN or Infinity as "
                                      "JSON");
            return WEIR_EINVAL;
        }
        len = fmt_number(num, v);
        s = num;
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        if (j_enc_string(out, s, len) != WEIR_OK)
            return no_memory(err, errlen);
        return WEIR_OK;
    case LUA_TTABLE:
        return j_enc_table(L, idx, out, err, errlen, depth);
    case LUA_TUSERDATA: /* a json value inside: its text as it is */
        if ((s = weir_json_value_text(L, idx, &len)) == NULL)
            goto unsupported;
        break;
    default:
    unsupported:
        weir_set_err(err, errlen, "cannot encode a %s as JSON",
                     lua_typename(L, lua_type(L, idx)));
        return WEIR_EINVAL;
    }
    if (weir_buf_append(out, s, len) != WEIR_OK)
        return no_memory(err, errlen);
    return WEIR_OK;
}

int weir_json_encode(lua_State *L, int idx, weir_buf *out, int depth,
                     char *err, size_t errlen)
{
    return j_enc(L, idx, out, err, errlen, depth);
}

/* ---- weir._native ------------------------------------------------------- */

/* The text being built, kept between calls: the encoder only pushes to the
 * Lua stack, which may raise a memory error and unwind past us, and a
 * buffer that outlives the call cannot leak. Never re-entered (encoding
 * runs no Lua code). A large one is given back after use. */
static weir_buf enc_buf;

int weir_json_native_encode(lua_State *L)
{
    char err[256];
    lua_Integer max = luaL_optinteger(L, 2, 0);
    int rc;

    lua_settop(L, 1);
    weir_buf_truncate(&enc_buf, 0);
    rc = weir_json_encode(L, 1, &enc_buf, 0, err, sizeof err);
    if (rc == WEIR_OK && max > 0 && enc_buf.len > (size_t)max) {
        weir_set_err(err, sizeof err, "more than %lld bytes of JSON",
                     (long long)max);
        rc = WEIR_ELIMIT;
    }
    if (rc == WEIR_OK)
        lua_pushlstring(L, enc_buf.data != NULL ? enc_buf.data : "",
                        enc_buf.len);
    if (enc_buf.cap > (1u << 20))
        weir_buf_free(&enc_buf);
    if (rc == WEIR_OK)
        return 1;
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

int weir_json_native_decode(lua_State *L)
{
    char err[256];
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    if (weir_json_decode(L, s, len, err, sizeof err) == WEIR_OK)
        return 1;
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}
