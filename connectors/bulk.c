/*
 * bulk.c - batch conversions for the data path: CSV rows into Lua tables,
 * and Lua row tables into SQLite statements. They use the classic Lua C
 * API on purpose: one call per batch instead of one FFI crossing per
 * field. They never call back into user code (rows are read with rawget).
 */
#include "weir/bulk.h"
#include "weir/connectors.h"
#include "weir/csv.h"
#include "weir/lstate.h"
#include "weir/numfmt.h"
#include "weir/sqlite.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T_STRING = 0, T_NUMBER = 1, T_INTEGER = 2, T_BOOLEAN = 3 };

/* The significant digits (no leading or trailing zeros, at most 40) and
 * the decimal exponent of the value of a decimal number's text, so that
 * value = 0.DIGITS x 10^exp; "0" for zero. 0, or -1 when s is not a plain
 * decimal number: [+-]digits[.digits][(e|E)[+-]digits], a digit in the
 * mantissa (no hex, no inf or nan, no spaces). */
static int decimal_norm(const char *s, size_t len, char *digits, int *exp)
{
    size_t i = 0, nd = 0;
    int seen = 0, point = -1, lead = 0, e = 0, esign = 1, edigits = 0;
    long pos = 0; /* digits of the mantissa read, for the point */

    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < len; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            seen = 1;
            pos++;
            if (nd == 0 && c == '0') {
                lead++;
                continue;
            }
            if (nd < 40)
                digits[nd++] = c;
            else if (c != '0')
                return -1; /* more than 40 significant digits */
        } else if (c == '.' && point < 0) {
            point = (int)pos;
        } else {
            break;
        }
    }
    if (!seen)
        return -1;
    if (i < len) {
        if (s[i] != 'e' && s[i] != 'E')
            return -1;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            esign = s[i++] == '-' ? -1 : 1;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            if (e < 100000)
                e = e * 10 + (s[i] - '0');
            edigits++;
        }
        if (edigits == 0 || i < len)
            return -1;
    }
    while (nd > 0 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    if (nd == 0) {
        strcpy(digits, "0");
        *exp = 0;
        return 0;
    }
    /* the first significant digit is digit number lead+1 of the mantissa;
     * the point sits after `point` digits (or after all of them) */
    *exp = (point < 0 ? (int)pos : point) - lead + esign * e;
    return 0;
}

/* Whether the double v reads back as the decimal text s exactly: the
 * shortest text of v has the same significant digits and exponent. */
static int decimal_exact(const char *s, size_t len, double v)
{
    char a[48], b[48], txt[40];
    int ea, eb;
    size_t n;

    if (decimal_norm(s, len, a, &ea) != 0)
        return 0;
    /* at most 15 significant digits in the normal range: a double keeps
     * them all (DBL_DIG), no need to print it */
    if (strlen(a) <= 15 && ea > -300 && ea < 300)
        return 1;
    n = weir_fmt_double(txt, v);
    if (decimal_norm(txt, n, b, &eb) != 0)
        return 0;
    return strcmp(a, b) == 0 && (strcmp(a, "0") == 0 || ea == eb);
}

/* Push a typed field; 0 ok, -1 when it does not convert. A number is
 * taken only when the double holds it exactly (its shortest text has the
 * same value): more digits than a double keeps, hex, inf, nan and
 * overflow are refused; an integer also has no point or exponent and is
 * below 2^53 in magnitude. */
static int push_typed(lua_State *L, int type, const char *s, size_t len)
{
    char buf[64], *end;
    double v;

    if (type == T_STRING) {
        lua_pushlstring(L, s, len);
        return 0;
    }
    if (len == 0) {
        lua_pushnil(L);
        return 0;
    }
    if (type == T_BOOLEAN) {
        if ((len == 4 && memcmp(s, "true", 4) == 0) ||
            (len == 1 && s[0] == '1'))
            lua_pushboolean(L, 1);
        else if ((len == 5 && memcmp(s, "false", 5) == 0) ||
                 (len == 1 && s[0] == '0'))
            lua_pushboolean(L, 0);
        else
            return -1;
        return 0;
    }
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (type == T_INTEGER) {
        size_t i = (buf[0] == '+' || buf[0] == '-') ? 1 : 0;
        if (i == len)
            return -1;
        for (; i < len; i++)
            if (buf[i] < '0' || buf[i] > '9')
                return -1;
    }
    errno = 0;
    v = strtod(buf, &end);
    if (end == buf || *end != '\0' || !isfinite(v))
        return -1;
    if (!decimal_exact(buf, len, v))
        return -1;
    if (type == T_INTEGER && (v >= 9007199254740992.0 || v <= -9007199254740992.0))
        return -1;
    lua_pushnumber(L, v);
    return 0;
}

static void add_bad(lua_State *L, int bad_idx, int *nbad, uint64_t line,
                    const char *reason, const char *raw, size_t rawlen)
{
    if (*nbad == 0) {
        lua_newtable(L);
        lua_replace(L, bad_idx);
    }
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, (lua_Number)line);
    lua_setfield(L, -2, "line");
    lua_pushstring(L, reason);
    lua_setfield(L, -2, "reason");
    if (raw != NULL) {
        lua_pushlstring(L, raw, rawlen > 65536 ? 65536 : rawlen);
        lua_setfield(L, -2, "raw");
    }
    lua_rawseti(L, bad_idx, ++*nbad);
}

static int bulk_csv_batch(lua_State *L)
{
    weir_csv_reader *r = weir_lua_cdata_ptr(L, 1, "weir_csv_reader *");
    int ncol, max, n = 0, nbad = 0, eof = 0, has_types;
    int types[1024];
    char err[512], reason[640];

    luaL_checktype(L, 2, LUA_TTABLE);
    has_types = lua_istable(L, 3);
    max = (int)luaL_checkinteger(L, 4);
    ncol = (int)lua_objlen(L, 2);
    if (ncol < 1 || ncol > 1024)
        return luaL_error(L, "csv_batch: 1 to 1024 columns");
    for (int j = 0; j < ncol; j++) {
        types[j] = T_STRING;
        if (has_types) {
            lua_rawgeti(L, 3, j + 1);
            types[j] = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_createtable(L, max, 0); /* 5: rows */
    lua_pushnil(L);             /* 6: bad */
    while (n < max) {
        const weir_csv_field *f;
        uint32_t nf;
        uint64_t line;
        int rc = weir_ffi_csv_next(r, &f, &nf, &line, err, sizeof err);

        if (rc == WEIR_ENOENT) {
            eof = 1;
            break;
        }
        if (rc == WEIR_EPARSE || rc == WEIR_ELIMIT) {
            const char *raw = NULL;
            size_t rawlen = 0;

            if (weir_ffi_csv_reader_raw(r, &raw, &rawlen) != WEIR_OK)
                raw = NULL;
            add_bad(L, 6, &nbad, line, err, raw, rawlen);
            continue;
        }
        if (rc != WEIR_OK)
            return luaL_error(L, "%s", err);
        if ((int)nf != ncol) {
            snprintf(reason, sizeof reason,
                     "line %llu: expected %d fields, got %u",
                     (unsigned long long)line, ncol, nf);
            add_bad(L, 6, &nbad, line, reason, NULL, 0);
            continue;
        }
        lua_createtable(L, 0, ncol);
        {
            int bad_col = -1;

            for (int j = 0; j < ncol; j++) {
                lua_rawgeti(L, 2, j + 1); /* key */
                if (push_typed(L, types[j], f[j].data ? f[j].data : "",
                               f[j].len) != 0) {
                    lua_pop(L, 1);
                    bad_col = j;
                    break;
                }
                lua_rawset(L, -3);
            }
            if (bad_col >= 0) {
                static const char *names[] = { "string", "number", "integer",
                                               "boolean" };
                lua_rawgeti(L, 2, bad_col + 1);
                static const char *exact[] = { "", " (a decimal a double holds "
                                               "exactly)", " (decimal digits, "
                                               "below 2^53)", "" };
                snprintf(reason, sizeof reason,
                         "line %llu: column %s: expected %s, got \"%.*s\"%s",
                         (unsigned long long)line, lua_tostring(L, -1),
                         names[types[bad_col]],
                         (int)(f[bad_col].len > 40 ? 40 : f[bad_col].len),
                         f[bad_col].data ? f[bad_col].data : "",
                         exact[types[bad_col]]);
                lua_pop(L, 2); /* key, partial row */
                add_bad(L, 6, &nbad, line, reason, NULL, 0);
                continue;
            }
        }
        lua_rawseti(L, 5, ++n);
    }
    lua_pushboolean(L, eof);
    return 3;
}

/* A json value read from PostgreSQL (the "weir.json" userdata of
 * pgcodec.c, known by its registered metatable): push its text (its
 * __tostring, a C function of ours) and return 1; else 0, nothing pushed. */
static int json_text(lua_State *L, int idx)
{
    int same;

    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    if (!lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, "weir.json");
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same && luaL_callmeta(L, idx, "__tostring");
}

static int bulk_db_insert(lua_State *L)
{
    weir_stmt *st = weir_lua_cdata_ptr(L, 1, "weir_stmt *");
    sqlite3_stmt *h = weir_stmt_handle(st);
    int ncol, first, last;

    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    first = (int)luaL_checkinteger(L, 4);
    last = (int)luaL_checkinteger(L, 5);
    ncol = (int)lua_objlen(L, 3);
    for (int i = first; i <= last; i++) {
        int rc;

        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1))
            return luaL_error(L, "row %d: not a table", i);
        for (int j = 1; j <= ncol; j++) {
            int t;

            lua_rawgeti(L, 3, j);
            lua_rawget(L, -2);
            t = lua_type(L, -1);
            if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL)
                t = LUA_TNIL; /* ctx.NULL */
            switch (t) {
            case LUA_TNUMBER: {
                lua_Number v = lua_tonumber(L, -1);
                if (v == floor(v) && fabs(v) <= 9007199254740992.0)
                    sqlite3_bind_int64(h, j, (sqlite3_int64)v);
                else
                    sqlite3_bind_double(h, j, v);
                break;
            }
            case LUA_TSTRING: {
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                sqlite3_bind_text64(h, j, s, len, SQLITE_TRANSIENT,
                                    SQLITE_UTF8);
                break;
            }
            case LUA_TBOOLEAN:
                sqlite3_bind_int64(h, j, lua_toboolean(L, -1));
                break;
            case LUA_TNIL:
                sqlite3_bind_null(h, j);
                break;
            case LUA_TUSERDATA:
                if (json_text(L, -1)) { /* pushed its text */
                    size_t len;
                    const char *s = lua_tolstring(L, -1, &len);
                    sqlite3_bind_text64(h, j, s, len, SQLITE_TRANSIENT,
                                        SQLITE_UTF8);
                    lua_pop(L, 1);
                    break;
                }
                /* fall through */
            default:
                sqlite3_reset(h);
                lua_rawgeti(L, 3, j);
                return luaL_error(L, "row %d: column %s: cannot store a %s",
                                  i, lua_tostring(L, -1),
                                  luaL_typename(L, -2));
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        rc = sqlite3_step(h);
        sqlite3_reset(h);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return luaL_error(L, "row %d: %s", i,
                              sqlite3_errmsg(sqlite3_db_handle(h)));
    }
    sqlite3_clear_bindings(h);
    lua_pushinteger(L, last - first + 1);
    return 1;
}

/* decimal_exact(text) -> number | nil: text's value when it is a plain
 * decimal number a double holds exactly (see push_typed), else nil. */
static int bulk_decimal_exact(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char buf[64], *end;
    double v;

    if (len == 0 || len >= sizeof buf) {
        lua_pushnil(L);
        return 1;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    v = strtod(buf, &end);
    if (end == buf || *end != '\0' || !isfinite(v) || !decimal_exact(buf, len, v))
        lua_pushnil(L);
    else
        lua_pushnumber(L, v);
    return 1;
}

/* copy_safe(fd) -> boolean: whether COPY (FORMAT csv) reads the file on
 * fd as a CSV reader does: false when a line is exactly \. (LF or CRLF, or
 * at the end), which COPY takes for the end of data. Reads fd to its end. */
static int bulk_copy_safe(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    static char buf[1 << 20];
    char prev[4] = "\n"; /* the file's start counts as after a newline */
    size_t nprev = 1;
    int safe = 1;

    for (;;) {
        ssize_t n = read(fd, buf + 3, sizeof buf - 3);
        size_t len, i;
        const char *b;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            safe = 0; /* the row path will say what is wrong */
            break;
        }
        /* the last bytes of the previous chunk go in front of this one */
        memcpy(buf + 3 - nprev, prev, nprev);
        b = buf + 3 - nprev;
        len = nprev + (size_t)n;
        if (n == 0) {
            /* at the end: a last line \. without a newline */
            if (len >= 3 && memcmp(b + len - 3, "\n\\.", 3) == 0)
                safe = 0;
            break;
        }
        for (i = 0; i + 3 <= len;) {
            const char *hit = memmem(b + i, len - i, "\n\\.", 3);
            size_t at;

            if (hit == NULL)
                break;
            at = (size_t)(hit - b);
            if (at + 3 < len && (b[at + 3] == '\n' ||
                                 (b[at + 3] == '\r' && at + 4 < len &&
                                  b[at + 4] == '\n'))) {
                safe = 0;
                break;
            }
            i = at + 1;
        }
        if (!safe)
            break;
        /* keep up to 3 bytes: a match may straddle the boundary */
        nprev = len < 3 ? len : 3;
        memcpy(prev, b + len - nprev, nprev);
    }
    lua_pushboolean(L, safe);
    return 1;
}

static const luaL_Reg bulk_natives[] = {
    { "copy_safe", bulk_copy_safe },
    { "decimal_exact", bulk_decimal_exact },
    { "csv_batch", bulk_csv_batch },
    { "db_insert", bulk_db_insert },
    { NULL, NULL },
};

const weir_connector_desc weir_connector_bulk = {
    .name = "bulk",
    .natives = bulk_natives,
};
