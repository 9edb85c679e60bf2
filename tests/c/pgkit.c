/*
 * pgkit.c - the shared part of the PostgreSQL COPY codec tests (see
 * pgkit.h). Relies on a trusted state (lstate.h: weir._native, weir.json)
 * and libpq.
 */
#include "pgkit.h"
#include "weir/lstate.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

lua_State *L;
char err[256];
PGconn *pg;
int quiet;
double decode_ns;
int keep_rows = 1;
int copy_switches;
const uint32_t shape_oids[5] = {INT8, TEXT, FLOAT8, TIMESTAMPTZ, BOOL};

static const char *lua_helpers =
    "NULL = require('weir._native').NULL\n"
    /* a json value (the text codec's userdata) equals one with the same
     * text (its __eq), and a Lua value when its decode() does */
    "function deepeq(a, b)\n"
    "  if a == b then return true end\n"
    "  if type(a) == 'userdata' and a ~= NULL and type(b) ~= 'userdata' "
    "then\n"
    "    return deepeq(a:decode(), b) end\n"
    "  if type(b) == 'userdata' and b ~= NULL and type(a) ~= 'userdata' "
    "then\n"
    "    return deepeq(a, b:decode()) end\n"
    "  if type(a) == 'number' and type(b) == 'number' then\n"
    "    return a ~= a and b ~= b end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then return false end\n"
    "  for k, v in pairs(a) do if not deepeq(v, b[k]) then return false end"
    " end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function dump(v)\n"
    "  if type(v) == 'string' then return string.format('%q', v) end\n"
    "  if v == NULL then return 'NULL' end\n"
    "  if type(v) == 'number' then return string.format('%.17g', v) end\n"
    "  if type(v) == 'userdata' then return 'json(' .. tostring(v) .. ')' "
    "end\n"
    "  if type(v) ~= 'table' then return tostring(v) end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  table.sort(keys, function(x, y) return tostring(x) < tostring(y) "
    "end)\n"
    "  local parts = {}\n"
    "  for _, k in ipairs(keys) do\n"
    "    parts[#parts + 1] = '[' .. dump(k) .. ']=' .. dump(v[k]) end\n"
    "  return '{' .. table.concat(parts, ',') .. '}'\n"
    "end\n"
    "function bytes(from, to)\n"
    "  local t = {}\n"
    "  for i = from, to do t[#t + 1] = string.char(i) end\n"
    "  return table.concat(t)\n"
    "end\n"
    /* what random strings are made of (a test may set its own) */
    "rstr_pieces = { 'a', 'Z', ' ', ',', '{', '}', '\"', '\\\\', 'NULL',\n"
    "  '\\t', '\\n', '\\r', '\\\\.', '.', 'é', '日本', '\\1', '\\127' }\n"
    "function rstr(max)\n"
    "  local t = {}\n"
    "  for i = 1, math.random(0, max) do\n"
    "    t[i] = rstr_pieces[math.random(#rstr_pieces)] end\n"
    "  return table.concat(t)\n"
    "end\n"
    "function rjson(depth)\n"
    "  local r = math.random(depth > 0 and 8 or 5)\n"
    "  if r == 1 then return NULL elseif r == 2 then return math.random()"
    " < 0.5\n"
    "  elseif r == 3 then return math.random(-1e6, 1e6) / 8\n"
    "  elseif r <= 5 then return rstr(6) end\n"
    "  local t = {}\n"
    "  if r == 6 then for i = 1, math.random(1, 4) do t[i] = rjson(depth -"
    " 1) end\n"
    "  else for i = 1, math.random(0, 4) do t[rstr(3) .. i] = "
    "rjson(depth - 1) end end\n"
    "  return t\n"
    "end\n";

/* J(text) -> the json value holding text, as the text codec reads a
 * jsonb value: for expectations that must be json values. */
static int lua_json_value(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    if (weir_pgcodec_push(L, 3802, s, len, err, sizeof err) != WEIR_OK)
        return luaL_error(L, "%s", err);
    return 1;
}

int pgkit_open(void)
{
    L = weir_state_new_trusted();
    if (L == NULL)
        return -1;
    lua_settop(L, 0);
    lua_register(L, "J", lua_json_value);
    if (luaL_dostring(L, lua_helpers) != 0) {
        fprintf(stderr, "helpers: %s\n", lua_tostring(L, -1));
        return -1;
    }
    lua_settop(L, 0);
    push_expr("{ 'c' }"); /* NAMES1 */
    luaL_dostring(L, "math.randomseed(12345)");
    lua_settop(L, NAMES1);
    return 0;
}

void pgkit_close(void)
{
    lua_close(L);
    L = NULL;
}

void push_expr(const char *expr)
{
    char code[4096];

    snprintf(code, sizeof code, "return %s", expr);
    if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

int absidx(int i)
{
    return i < 0 && i > LUA_REGISTRYINDEX ? lua_gettop(L) + i + 1 : i;
}

/* deepeq(a, b) in Lua; the stack is left as it was. */
int deepeq_at(int a, int b)
{
    int r;

    a = absidx(a);
    b = absidx(b);
    lua_getglobal(L, "deepeq");
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

/* dump(v) into one of two static buffers (two may be live at once). */
const char *dump_at(int i)
{
    static char out[2][512];
    static int which;

    i = absidx(i);
    lua_getglobal(L, "dump");
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    which ^= 1;
    snprintf(out[which], sizeof out[which], "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return out[which];
}

/* splitmix64: a deterministic generator for the random cases. */
uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int pgkit_connect(void)
{
    static const char *const keys[] = {"dbname", "options", NULL};
    const char *vals[] = {getenv("WEIR_TEST_PG_URL"),
                          "-c TimeZone=UTC -c DateStyle=ISO "
                          "-c IntervalStyle=postgres "
                          "-c extra_float_digits=3",
                          NULL};

    if (vals[0] == NULL) {
        fprintf(stderr, "skipped: WEIR_TEST_PG_URL is unset (bash "
                        "scripts/services.sh start DIR; . DIR/env)\n");
        return PGKIT_SKIPPED;
    }
    pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "server: %s", PQerrorMessage(pg));
        PQfinish(pg);
        pg = NULL;
        return -1;
    }
    printf("server: PostgreSQL %d, encoding %s\n", PQserverVersion(pg),
           PQparameterStatus(pg, "server_encoding"));
    return 0;
}

void pgkit_disconnect(void)
{
    PQfinish(pg);
    pg = NULL;
}

int pg_cmd(const char *q)
{
    PGresult *r = PQexec(pg, q);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "sql failed: %s  %s\n", PQerrorMessage(pg), q);
    PQclear(r);
    return ok ? 0 : -1;
}

/* Drain the results after a COPY; -1 unless it ended well (the SQLSTATE
 * goes to state). */
int copy_result(char state[6])
{
    PGresult *r = PQgetResult(pg);
    int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;

    if (!ok && state != NULL) {
        const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

        snprintf(state, 6, "%s", s ? s : "?????");
    }
    if (!ok && !quiet)
        fprintf(stderr, "copy: %s", r ? PQresultErrorMessage(r)
                                      : PQerrorMessage(pg));
    PQclear(r);
    while ((r = PQgetResult(pg)) != NULL)
        PQclear(r);
    return ok ? 0 : -1;
}

/* COPY (query) TO STDOUT as text or binary: pushes an array of row
 * tables decoded by the text or the binary codec; the count or -1. */
int copy_out(const char *query, int binary, int ncols,
             const uint32_t *oids, int names)
{
    char q[4096];
    PGresult *r;
    char *line;
    int len, n = 0, first = 1, trailers = 0, failed = 0;
    double t0;

    snprintf(q, sizeof q, "COPY (%s) TO STDOUT%s", query,
             binary ? " (FORMAT binary)" : "");
    r = PQexec(pg, q);
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
        fprintf(stderr, "copy out: %s", PQerrorMessage(pg));
        PQclear(r);
        lua_newtable(L);
        return -1;
    }
    PQclear(r);
    lua_newtable(L);
    while ((len = PQgetCopyData(pg, &line, 0)) > 0) {
        const char *p = line;
        size_t l = (size_t)len, h;
        int rc;

        if (binary && first) {
            /* the header comes with the first tuple (or the trailer) */
            if ((h = weir_pgbinary_header_len(p, l)) == 0) {
                fprintf(stderr, "copy out: bad binary header\n");
                failed = 1;
            }
            p += h;
            l -= h;
        }
        first = 0;
        t0 = now_ns();
        rc = binary ? weir_pgbinary_copy_row(L, p, l, ncols, oids, names,
                                             err, sizeof err)
                    : weir_pgcodec_copy_row(L, p, l, ncols, oids, names,
                                            err, sizeof err);
        decode_ns += now_ns() - t0;
        PQfreemem(line);
        if (binary && rc == WEIR_ENOENT) {
            trailers++;
            continue;
        }
        if (rc != WEIR_OK || trailers > 0) {
            fprintf(stderr, "copy out row %d: %s\n", n + 1,
                    rc != WEIR_OK ? err : "a row after the trailer");
            failed = 1;
            if (rc == WEIR_OK)
                lua_pop(L, 1);
            continue;
        }
        if (keep_rows)
            lua_rawseti(L, -2, ++n);
        else
            lua_pop(L, 1), ++n;
    }
    if (copy_result(NULL) != 0 || len != -1) {
        fprintf(stderr, "copy out: %s", PQerrorMessage(pg));
        failed = 1;
    }
    if (binary && trailers != 1) {
        fprintf(stderr, "copy out: %d trailers\n", trailers);
        failed = 1;
    }
    return failed ? -1 : n;
}

int copy_start(const char *target, int binary, weir_buf *b)
{
    char q[512];
    PGresult *r;

    snprintf(q, sizeof q, "COPY %s FROM STDIN%s", target,
             binary ? " (FORMAT binary)" : "");
    r = PQexec(pg, q);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        fprintf(stderr, "copy in: %s", PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    b->len = 0;
    return binary ? weir_pgbinary_header(b) : 0;
}

int copy_in(const char *target, int mode, int rows, int ncols,
            const uint32_t *oids, int names, char state[6])
{
    weir_buf b = {0};
    int n = (int)lua_objlen(L, rows), rc = WEIR_OK, ret;
    int binary = mode != IN_TEXT;

    if (copy_start(target, binary, &b) != 0)
        return -1;
    for (int i = 1; i <= n && rc == WEIR_OK; i++) {
        lua_rawgeti(L, rows, i);
        rc = binary ? weir_pgbinary_encode_row(L, -1, ncols, names, oids, &b,
                                               err, sizeof err)
                    : weir_pgcodec_copy_encode_row(L, -1, ncols, names, oids,
                                                   &b, err, sizeof err);
        if (rc == WEIR_EAGAIN && mode == IN_SWITCH && binary) {
            /* the rows so far are whole: end that COPY, go on in text */
            weir_pgbinary_trailer(&b);
            PQputCopyData(pg, b.data, (int)b.len);
            PQputCopyEnd(pg, NULL);
            if (copy_result(state) != 0) {
                lua_pop(L, 1);
                weir_buf_free(&b);
                return -1;
            }
            copy_switches++;
            binary = 0;
            if (copy_start(target, 0, &b) != 0) {
                lua_pop(L, 1);
                weir_buf_free(&b);
                return -1;
            }
            rc = weir_pgcodec_copy_encode_row(L, -1, ncols, names, oids, &b,
                                              err, sizeof err);
        }
        lua_pop(L, 1);
        if (rc != WEIR_OK)
            fprintf(stderr, "copy in row %d: %s\n", i, err);
        if (b.len > 65536) {
            PQputCopyData(pg, b.data, (int)b.len);
            b.len = 0;
        }
    }
    if (binary)
        weir_pgbinary_trailer(&b);
    if (rc == WEIR_OK && b.len > 0)
        PQputCopyData(pg, b.data, (int)b.len);
    PQputCopyEnd(pg, rc == WEIR_OK ? NULL : "a row did not encode");
    weir_buf_free(&b);
    ret = copy_result(state);
    return rc != WEIR_OK ? -2 : ret;
}

int shape_tables(int n)
{
    char q[512];

    snprintf(q, sizeof q, "CREATE TEMP TABLE tm (id int8, name text, "
             "score float8, ts timestamptz, ok bool); INSERT INTO tm SELECT "
             "g, 'name ' || g, g * 1.25, timestamptz '2026-01-02 03:04:05' - "
             "g * interval '1.5 second', g %% 2 = 0 FROM generate_series(1, "
             "%d) g; CREATE TEMP TABLE tm2 (LIKE tm)", n);
    return pg_cmd(q);
}
