/*
 * test_redis_server.c - the Redis pool and connection C API against the
 * server of WEIR_TEST_REDIS_PORT/PASSWORD (scripts/services.sh):
 * binary-safe commands, pipelining, the reply bound, pool exhaustion, and
 * the Lua functions' cleanup when a Lua memory error cuts a call short.
 * Ends with every pool freed (ASan checks the rest). Skipped (exit status
 * 77) when the server is not configured.
 */
#include "check.h"
#include "redis_opts.h"
#include "weir/redis.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static redisReply *run(weir_redis_conn *k, int argc, const char **argv,
                       const size_t *lens)
{
    char err[256];
    redisReply *r = NULL;

    if (weir_redis_append(k, argc, argv, lens, err, sizeof err) != 0 ||
        weir_redis_read(k, &r, err, sizeof err) != 0) {
        fprintf(stderr, "command failed: %s\n", err);
        return NULL;
    }
    return r;
}

static void test_commands(weir_redis_pool *p)
{
    char err[256];
    weir_redis_conn *k, *k2;
    redisReply *r;
    const char val[] = "a\0b\r\nc";
    const char *set[] = { "SET", "c:bin", val };
    size_t setl[] = { 3, 5, sizeof val - 1 };
    const char *get[] = { "GET", "c:bin" };
    size_t getl[] = { 3, 5 };

    CHECK_EQ_INT(weir_redis_acquire(p, &k, err, sizeof err), 0);
    r = run(k, 3, set, setl);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = run(k, 2, get, getl);
    CHECK(r != NULL && r->type == REDIS_REPLY_STRING &&
          r->len == sizeof val - 1 && memcmp(r->str, val, r->len) == 0);
    freeReplyObject(r);

    /* pipelined: three appends, three replies in order */
    {
        const char *inc[] = { "INCR", "c:bin" };
        size_t incl[] = { 4, 5 };
        const char *ping[] = { "PING" };
        size_t pingl[] = { 4 };

        CHECK_EQ_INT(weir_redis_append(k, 2, get, getl, err, sizeof err), 0);
        CHECK_EQ_INT(weir_redis_append(k, 2, inc, incl, err, sizeof err), 0);
        CHECK_EQ_INT(weir_redis_append(k, 1, ping, pingl, err, sizeof err),
                     0);
        CHECK_EQ_INT(weir_redis_read(k, &r, err, sizeof err), 0);
        CHECK(r->type == REDIS_REPLY_STRING);
        freeReplyObject(r);
        CHECK_EQ_INT(weir_redis_read(k, &r, err, sizeof err), 0);
        CHECK(r->type == REDIS_REPLY_ERROR);
        freeReplyObject(r);
        CHECK_EQ_INT(weir_redis_read(k, &r, err, sizeof err), 0);
        CHECK(r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0);
        freeReplyObject(r);
        CHECK_EQ_INT(weir_redis_read(k, &r, err, sizeof err), WEIR_EINVAL);
    }

    /* max_size = 2: a third checkout is refused, not waited for */
    CHECK_EQ_INT(weir_redis_acquire(p, &k2, err, sizeof err), 0);
    {
        weir_redis_conn *k3;
        CHECK_EQ_INT(weir_redis_acquire(p, &k3, err, sizeof err),
                     WEIR_EAGAIN);
        CHECK(strstr(err, "pool exhausted") != NULL);
    }
    weir_redis_release(k2, 1);
    weir_redis_release(k, 1);
    {
        weir_redis_stats st;
        weir_ffi_redis_pool_stats(p, &st);
        CHECK_EQ_INT(st.open, 2);
        CHECK_EQ_INT(st.idle, 2);
        CHECK_EQ_INT(st.in_use, 0);
    }
}

static void test_reply_bound(int port, const char *pw)
{
    char err[256];
    weir_redis_opts o = opts_for(port, pw);
    weir_redis_pool *p;
    weir_redis_conn *k;
    redisReply *r;
    size_t n = 300000;
    char *big = malloc(n);
    const char *set[] = { "SET", "c:big", big };
    size_t setl[] = { 3, 5, n };
    const char *get[] = { "GET", "c:big" };
    size_t getl[] = { 3, 5 };

    memset(big, 'x', n);
    o.max_reply_bytes = 100000;
    o.db = 10;
    CHECK_EQ_INT(weir_ffi_redis_pool_get("bound", &o, &p, err, sizeof err),
                 0);
    CHECK_EQ_INT(weir_redis_acquire(p, &k, err, sizeof err), 0);
    r = run(k, 3, set, setl);
    CHECK(r != NULL);
    freeReplyObject(r);
    CHECK_EQ_INT(weir_redis_append(k, 2, get, getl, err, sizeof err), 0);
    CHECK_EQ_INT(weir_redis_read(k, &r, err, sizeof err), WEIR_ELIMIT);
    CHECK(r == NULL);
    CHECK(strstr(err, "max_reply_bytes (100000)") != NULL);
    weir_redis_release(k, 1); /* broken: closed, not pooled */
    {
        weir_redis_stats st;
        weir_ffi_redis_pool_stats(p, &st);
        CHECK_EQ_INT(st.open, 0);
        CHECK_EQ_INT(st.dropped, 1);
    }
    free(big);
    weir_ffi_redis_pool_release(p);
}

/* A Lua allocator with a cap, like an attempt state's. */
typedef struct { size_t used, cap; } acc_t;

static void *cap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    acc_t *a = ud;
    size_t old = ptr ? osize : 0;
    void *p;

    if (nsize == 0) {
        free(ptr);
        a->used -= old;
        return NULL;
    }
    if (a->cap && nsize > old && a->used - old + nsize > a->cap)
        return NULL;
    p = realloc(ptr, nsize);
    if (p != NULL)
        a->used = a->used - old + nsize;
    return p;
}

/* Push { command, pipeline }, as weir._native.redis holds them. */
static void push_natives(lua_State *L)
{
    lua_newtable(L);
    luaL_register(L, NULL, weir_connector_redis.natives);
}

/* Push p as weir.redis holds it: a weir_redis_pool * cdata. */
static void push_pool(lua_State *L, weir_redis_pool *p)
{
    CHECK_EQ_INT(luaL_dostring(L, "local ffi = require('ffi')\n"
                                  "pcall(ffi.cdef, 'typedef struct weir_redis_pool "
                                  "weir_redis_pool;')\n"
                                  "return function(p) return "
                                  "ffi.cast('weir_redis_pool *', p) end"),
                 0);
    lua_pushlightuserdata(L, p);
    lua_call(L, 1, 1);
}

static void test_lua_cleanup(weir_redis_pool *p)
{
    acc_t acc = { 0, 0 };
    lua_State *L = lua_newstate(cap_alloc, &acc);
    weir_redis_stats st;
    const char *script =
        "local R, pool = ...\n"
        "assert(R.command(pool, {'SET', 'c:lua', string.rep('y', 200000)}))\n"
        "assert(R.command(pool, {'GET', 'c:lua'}) == string.rep('y', 200000))\n"
        "local v, err = R.command(pool, {'LPUSH', 'c:lua', 1})\n"
        "assert(v == nil and err.redis == 'WRONGTYPE' and err.code == 'sql')\n"
        "assert(not pcall(R.pipeline, pool, {{'PING'}, {'GET', {}}}))\n"
        "return true\n";

    CHECK(L != NULL);
    luaL_openlibs(L);
    CHECK_EQ_INT(luaL_loadstring(L, script), 0);
    push_natives(L);
    push_pool(L, p);
    if (lua_pcall(L, 2, 1, 0) != 0) {
        fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
        CHECK(0);
    }
    lua_pop(L, 1);
    weir_ffi_redis_pool_stats(p, &st);
    CHECK_EQ_INT(st.in_use, 0); /* misuse raised before checkout */

    /* a memory error while the reply becomes a Lua string */
    lua_gc(L, LUA_GCCOLLECT, 0);
    acc.cap = acc.used + 100000;
    CHECK_EQ_INT(luaL_loadstring(L, "local R, pool = ...\n"
                                    "return R.command(pool, {'GET', 'c:lua'})"),
                 0);
    push_natives(L);
    push_pool(L, p);
    CHECK_EQ_INT(lua_pcall(L, 2, 1, 0), LUA_ERRMEM);
    weir_ffi_redis_pool_stats(p, &st);
    CHECK_EQ_INT(st.in_use, 1); /* held by the call's guard until GC */
    acc.cap = 0;
    lua_close(L);
    weir_ffi_redis_pool_stats(p, &st);
    CHECK_EQ_INT(st.in_use, 0);
}

int main(void)
{
    const char *port = getenv("WEIR_TEST_REDIS_PORT");
    const char *pw = getenv("WEIR_TEST_REDIS_PASSWORD");
    char err[256];
    weir_redis_opts o;
    weir_redis_pool *p;

    if (port == NULL || pw == NULL) {
        fprintf(stderr, "skipped: WEIR_TEST_REDIS_PORT/PASSWORD are unset "
                        "(bash scripts/services.sh start DIR; . DIR/env)\n");
        return 77;
    }
    o = opts_for(atoi(port), pw);
    o.max_size = 2;
    o.db = 10;
    CHECK_EQ_INT(weir_ffi_redis_pool_get("c", &o, &p, err, sizeof err), 0);
    test_commands(p);
    test_lua_cleanup(p);
    weir_ffi_redis_pool_release(p);
    test_reply_bound(atoi(port), pw);
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 2); /* registered */
    weir_ffi_redis_shutdown();
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 0);
    return CHECK_DONE();
}
