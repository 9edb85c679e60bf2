/*
 * sercodec.c - the weir._ser format for plain data, in C (see ser.h for
 * the contract and lua/weir/_ser.lua for the format, which is the
 * reference).
 */
#include "weir/ser.h"
#include "weir/buf.h"
#include "weir/lstate.h"
#include "weir/numfmt.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SER_MAX_DEPTH 100

typedef struct {
    weir_buf out;
    size_t limit; /* at most this many bytes (an attempt's memory left) */
    int failed;   /* out of memory, or past limit */
    int next_id;
    const void **seen; /* tables met so far (open addressing), for sharing */
    size_t nseen, seencap;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n > b->limit - b->out.len ||
        weir_buf_append(&b->out, s, n) != WEIR_OK)
        b->failed = 1;
}

/* The headers of a string of n bytes ("s5:") and of table number id
 * ("t1;"): the format's two length-prefixed forms. hdr holds 32 bytes. */
static size_t str_header(char *hdr, size_t n)
{
    return (size_t)snprintf(hdr, 32, "s%zu:", n);
}

static size_t table_header(char *hdr, int id)
{
    return (size_t)snprintf(hdr, 32, "t%d;", id);
}

static void put_str(sbuf *b, lua_State *L, int idx)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    char hdr[32];

    put(b, hdr, str_header(hdr, n));
    put(b, s, n);
}

static void put_num(sbuf *b, lua_Number x)
{
    char tmp[40];
    int h;

    if (x != x)
        h = snprintf(tmp, sizeof tmp, "N");
    else if (x == HUGE_VAL)
        h = snprintf(tmp, sizeof tmp, "I");
    else if (x == -HUGE_VAL)
        h = snprintf(tmp, sizeof tmp, "i");
    else {
        /* the one number printer: integers in full ("d42;", "d-0;"),
         * other doubles in the shortest text that reads back */
        tmp[0] = 'd';
        h = (int)weir_fmt_double(tmp + 1, x) + 1;
        tmp[h++] = ';';
    }
    put(b, tmp, (size_t)h);
}

/* The Lua encoder's test: every key a number, and 1..#keys all present. */
static int is_sequence(lua_State *L, int t)
{
    size_t n = 0;

    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            return 0;
        }
        n++;
    }
    if (n == 0)
        return 0;
    for (size_t i = 1; i <= n; i++) {
        int absent;

        lua_rawgeti(L, t, (int)i);
        absent = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (absent)
            return 0;
    }
    return 1;
}

/* Note table t as met; 1 when it was met before (the Lua encoder then
 * writes a reference), -1 when out of memory. */
static int seen_before(sbuf *b, const void *t)
{
    size_t i, mask;

    if (2 * (b->nseen + 1) > b->seencap) {
        size_t cap = b->seencap ? 2 * b->seencap : 64;
        const void **n = calloc(cap, sizeof *n);

        if (n == NULL)
            return -1;
        for (i = 0; i < b->seencap; i++) {
            if (b->seen[i] != NULL) {
                size_t j = ((uintptr_t)b->seen[i] >> 4) & (cap - 1);

                while (n[j] != NULL)
                    j = (j + 1) & (cap - 1);
                n[j] = b->seen[i];
            }
        }
        free(b->seen);
        b->seen = n;
        b->seencap = cap;
    }
    mask = b->seencap - 1;
    for (i = ((uintptr_t)t >> 4) & mask; b->seen[i] != NULL;
         i = (i + 1) & mask) {
        if (b->seen[i] == t)
            return 1;
    }
    b->seen[i] = t;
    b->nseen++;
    return 0;
}

/* Encode the value at idx (absolute); 0, or -1 to fall back to Lua. */
static int enc(sbuf *b, lua_State *L, int idx, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        put(b, "n", 1);
        return 0;
    case LUA_TBOOLEAN:
        put(b, lua_toboolean(L, idx) ? "T" : "F", 1);
        return 0;
    case LUA_TNUMBER:
        put_num(b, lua_tonumber(L, idx));
        return 0;
    case LUA_TSTRING:
        put_str(b, L, idx);
        return 0;
    case LUA_TTABLE: {
        char hdr[32];

        /* deep (or cyclic) and shared tables are the Lua encoder's: it
         * writes references, where copies could grow without bound */
        if (depth >= SER_MAX_DEPTH || !lua_checkstack(L, 4) ||
            seen_before(b, lua_topointer(L, idx)) != 0)
            return -1;
        if (lua_getmetatable(L, idx)) {
            lua_pop(L, 1);
            return -1;
        }
        put(b, hdr, table_header(hdr, ++b->next_id));
        if (is_sequence(L, idx))
            put(b, "A", 1);
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            int top = lua_gettop(L);
            int kt = lua_type(L, top - 1);

            if ((kt != LUA_TSTRING && kt != LUA_TNUMBER &&
                 kt != LUA_TBOOLEAN) ||
                enc(b, L, top - 1, depth + 1) != 0 ||
                enc(b, L, top, depth + 1) != 0) {
                lua_pop(L, 2);
                return -1;
            }
            lua_pop(L, 1);
        }
        put(b, "e", 1);
        return 0;
    }
    default:
        return -1;
    }
}

/* Push b's bytes as a string, or a full userdata (as_ud), into the
 * registry, from a protected call: a memory error must not skip the free. */
typedef struct {
    const sbuf *b;
    int as_ud;
} push_req;

static int push_result(lua_State *L)
{
    const push_req *r = lua_touserdata(L, 1);

    if (r->as_ud) {
        void *p = lua_newuserdata(L, r->b->out.len ? r->b->out.len : 1);

        memcpy(p, r->b->out.data, r->b->out.len);
    } else {
        lua_pushlstring(L, r->b->out.data, r->b->out.len);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "weir.ser_out");
    return 0;
}

static int encode(lua_State *L, int as_ud)
{
    sbuf b;
    push_req r;
    weir_alloc_acc *acc;
    size_t len;
    int rc;

    memset(&b, 0, sizeof b);
    b.limit = (size_t)-1;
    lua_settop(L, 1);
    /* in an attempt state the buffer counts against the memory cap: past
     * what is left of it, the Lua encoder takes over (and fails inside
     * the cap) */
    lua_getfield(L, LUA_REGISTRYINDEX, "weir.acc");
    acc = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (acc != NULL && acc->cap)
        b.limit = acc->cap > acc->used ? acc->cap - acc->used : 0;
    rc = enc(&b, L, 1, 0);
    free(b.seen);
    if (rc != 0 || b.failed) {
        weir_buf_free(&b.out);
        lua_pushnil(L);
        return 1;
    }
    r.b = &b;
    r.as_ud = as_ud;
    rc = lua_cpcall(L, push_result, &r);
    len = b.out.len;
    weir_buf_free(&b.out);
    if (rc != 0)
        return lua_error(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "weir.ser_out");
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "weir.ser_out");
    if (!as_ud)
        return 1;
    lua_pushinteger(L, (lua_Integer)len);
    return 2;
}

int weir_ser_encode(lua_State *L)
{
    return encode(L, 0);
}

int weir_ser_encode_ud(lua_State *L)
{
    return encode(L, 1);
}

int weir_ser_put_fields(weir_buf *out, int n, const char *const *keys,
                        const char *const *vals, const size_t *vlens)
{
    char hdr[32];
    size_t start = out->len;
    int rc;

    rc = weir_buf_append(out, hdr, table_header(hdr, 1));
    for (int i = 0; i < n && rc == WEIR_OK; i++) {
        size_t klen = strlen(keys[i]);

        if (weir_buf_append(out, hdr, str_header(hdr, klen)) != WEIR_OK ||
            weir_buf_append(out, keys[i], klen) != WEIR_OK ||
            weir_buf_append(out, hdr, str_header(hdr, vlens[i])) != WEIR_OK ||
            weir_buf_append(out, vals[i], vlens[i]) != WEIR_OK)
            rc = WEIR_ENOMEM;
    }
    if (rc == WEIR_OK)
        rc = weir_buf_putc(out, 'e');
    if (rc != WEIR_OK)
        weir_buf_truncate(out, start);
    return rc;
}

/* ---------------------------------------------------------------- decode */

typedef struct {
    const char *s;
    size_t len, pos;
    int refs;     /* stack index of the table of tables by id */
    int array_mt; /* stack index of the metatable for sequences, or 0 */
    int fallback; /* a tag only the Lua decoder knows */
    const char *err;
} dstate;

/* The number that runs up to the terminator ch. */
static int num_until(dstate *d, char ch, double *out)
{
    const char *start = d->s + d->pos;
    const char *e = memchr(start, ch, d->len - d->pos);
    char tmp[64], *end;
    size_t n;

    if (e == NULL) {
        d->err = "truncated";
        return -1;
    }
    n = (size_t)(e - start);
    if (n == 0 || n >= sizeof tmp) {
        d->err = "bad number";
        return -1;
    }
    memcpy(tmp, start, n);
    tmp[n] = '\0';
    *out = strtod(tmp, &end);
    if (end != tmp + n) {
        d->err = "bad number";
        return -1;
    }
    d->pos += n + 1;
    return 0;
}

static int count_until(dstate *d, char ch, size_t *out)
{
    double v;

    if (num_until(d, ch, &v) != 0)
        return -1;
    if (!(v >= 0 && v <= 2147483647.0) || v != floor(v)) {
        d->err = "bad length";
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

/* Push the value at d->pos; 0 or -1 (d->err or d->fallback set). */
static int dec(dstate *d, lua_State *L, int depth)
{
    unsigned char tag;

    if (d->pos >= d->len) {
        d->err = "truncated";
        return -1;
    }
    if (depth > SER_MAX_DEPTH || !lua_checkstack(L, 4)) {
        d->fallback = 1; /* the Lua decoder's (and its stack's) to judge */
        return -1;
    }
    tag = (unsigned char)d->s[d->pos++];
    switch (tag) {
    case 'n':
        lua_pushnil(L);
        return 0;
    case 'T':
    case 'F':
        lua_pushboolean(L, tag == 'T');
        return 0;
    case 'N':
        lua_pushnumber(L, NAN);
        return 0;
    case 'I':
    case 'i':
        lua_pushnumber(L, tag == 'I' ? HUGE_VAL : -HUGE_VAL);
        return 0;
    case 'd': {
        double v;

        if (num_until(d, ';', &v) != 0)
            return -1;
        lua_pushnumber(L, v);
        return 0;
    }
    case 's': {
        size_t n;

        if (count_until(d, ':', &n) != 0)
            return -1;
        if (n > d->len - d->pos) {
            d->err = "truncated";
            return -1;
        }
        lua_pushlstring(L, d->s + d->pos, n);
        d->pos += n;
        return 0;
    }
    case 'r': {
        size_t id;

        if (count_until(d, ';', &id) != 0)
            return -1;
        lua_rawgeti(L, d->refs, (int)id);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            d->err = "bad reference";
            return -1;
        }
        return 0;
    }
    case 't': {
        size_t id;
        int t;

        if (count_until(d, ';', &id) != 0)
            return -1;
        if (d->pos < d->len && d->s[d->pos] == 'M') {
            d->fallback = 1;
            return -1;
        }
        lua_newtable(L);
        t = lua_gettop(L);
        if (d->pos < d->len && d->s[d->pos] == 'A') {
            d->pos++;
            if (d->array_mt) {
                lua_pushvalue(L, d->array_mt);
                lua_setmetatable(L, t);
            }
        }
        lua_pushvalue(L, t);
        lua_rawseti(L, d->refs, (int)id);
        for (;;) {
            if (d->pos >= d->len) {
                d->err = "truncated";
                return -1;
            }
            if (d->s[d->pos] == 'e') {
                d->pos++;
                return 0;
            }
            if (dec(d, L, depth + 1) != 0)
                return -1;
            if (lua_isnil(L, -1) ||
                (lua_type(L, -1) == LUA_TNUMBER &&
                 lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
                d->err = "bad table key";
                return -1;
            }
            if (dec(d, L, depth + 1) != 0)
                return -1;
            lua_rawset(L, t);
        }
    }
    case 'b':
    case 'f':
        d->fallback = 1;
        return -1;
    default:
        d->err = "bad tag";
        return -1;
    }
}

/* Decode s[start..len) with the stack as weir_ser_decode leaves it: the
 * value and the next position, nil and an error, or false. */
static int decode(lua_State *L, const char *s, size_t len, size_t start,
                  int array_mt)
{
    dstate d;
    int top;

    d.s = s;
    d.len = len;
    d.pos = start;
    d.fallback = 0;
    d.err = NULL;
    d.array_mt = array_mt;
    lua_newtable(L);
    d.refs = top = lua_gettop(L);
    if (dec(&d, L, 0) != 0) {
        lua_settop(L, top);
        if (d.fallback) {
            lua_pushboolean(L, 0);
            return 1;
        }
        lua_pushnil(L);
        lua_pushfstring(L, "serialised value: %s at %d", d.err,
                        (int)d.pos);
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)d.pos + 1);
    return 2;
}

int weir_ser_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer start = luaL_optinteger(L, 2, 1);

    if (start < 1 || (size_t)start > len + 1)
        return luaL_argerror(L, 2, "out of range");
    lua_settop(L, 3);
    return decode(L, s, len, (size_t)start - 1, lua_istable(L, 3) ? 3 : 0);
}

/* LuaJIT's type tag of FFI cdata (lj_obj.h), which lua.h does not name. */
#define SER_TCDATA 10

int weir_ser_decode_ptr(lua_State *L)
{
    const char *s = NULL;
    lua_Integer len = luaL_checkinteger(L, 2);

    if (lua_type(L, 1) == SER_TCDATA) {
        s = len != 0 ? weir_lua_cdata_ptr(L, 1, "const char *") : NULL;
    } else if (lua_islightuserdata(L, 1)) {
        s = lua_touserdata(L, 1);
    }
    if (s == NULL && len != 0)
        return luaL_argerror(L, 1, "pointer expected");
    if (len < 0)
        return luaL_argerror(L, 2, "negative length");
    lua_settop(L, 3);
    return decode(L, s != NULL ? s : "", (size_t)len, 0,
                  lua_istable(L, 3) ? 3 : 0);
}
