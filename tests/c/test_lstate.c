/*
 * test_lstate.c - unit tests for attempt states and their snapshots
 * (runtime/lstate.c, ADR 9): a restored state is the saved one, whatever
 * the attempt before it did (globals, registry, string table, memory);
 * nothing of an attempt survives into the next; the memory cap holds in a
 * restored state; a state that spilled out of the arena is refused; a
 * restore needs the same accounting block and no open state; and the C
 * encoder of weir._ser stays under an attempt's cap. Relies on
 * check.h and the embedded library (weir._worker).
 */
#include "weir/lstate.h"
#include "weir/ser.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static weir_alloc_acc acc;

static int run(lua_State *L, const char *code)
{
    if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* The value of expr in L, as a string (copied into buf). */
static const char *eval(lua_State *L, const char *expr, char *buf, size_t n)
{
    char code[256];

    snprintf(code, sizeof code, "return tostring(%s)", expr);
    buf[0] = '\0';
    if (run(L, code) == 0) {
        snprintf(buf, n, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return buf;
}

static void test_restore_is_the_saved_state(void)
{
    char buf[128];
    lua_State *L = weir_state_new_attempt(&acc);
    size_t used;

    CHECK(L != NULL);
    /* prepared: the worker module loaded, one global set */
    CHECK_EQ_INT(weir_state_load_embedded(L, "weir._worker"), 0);
    CHECK_EQ_INT(lua_pcall(L, 0, 1, 0), 0);
    CHECK_EQ_INT(run(L, "prepared = 'yes' return nil"), 0);
    lua_pop(L, 1);
    CHECK_EQ_INT(weir_state_snapshot_save(L, &acc), 0);
    used = acc.used;
    for (int i = 0; i < 200; i++) {
        lua_State *R;

        /* an attempt: globals, the registry, many strings, a big table */
        CHECK_EQ_INT(run(L, "leaked = (leaked or 0) + 1 "
                            "debug.getregistry().mark = true "
                            "local t = {} for i = 1, 5000 do "
                            "t[i] = 'row ' .. i end return #t"), 0);
        lua_pop(L, 1);
        lua_close(L);
        CHECK_EQ_INT(acc.used, 0);
        R = weir_state_snapshot_restore(&acc);
        CHECK(R == L);
        if (R == NULL)
            return;
        CHECK_EQ_INT(acc.used, used);
        CHECK_EQ_INT(lua_gettop(L), 1); /* the module, as saved */
        CHECK_EQ_STR(eval(L, "prepared", buf, sizeof buf), "yes");
        CHECK_EQ_STR(eval(L, "leaked", buf, sizeof buf), "nil");
        CHECK_EQ_STR(eval(L, "debug.getregistry().mark", buf, sizeof buf),
                     "nil");
        CHECK_EQ_STR(eval(L, "type(package)", buf, sizeof buf), "nil");
    }
    lua_close(L);
}

static void test_cap_holds_after_restore(void)
{
    lua_State *L = weir_state_snapshot_restore(&acc);

    CHECK(L != NULL);
    if (L == NULL)
        return;
    acc.cap = acc.used + (1u << 20);
    CHECK(run(L, "return string.rep('x', 4 * 1024 * 1024)") != 0);
    CHECK(acc.exceeded);
    lua_close(L);
    CHECK_EQ_INT(acc.used, 0);
}

/* The C encoder's buffer counts against the cap: past what is left of it,
 * it declines (nil) and leaves the job to the Lua encoder, which fails
 * inside the cap; it never grows its own buffer past the cap. */
static void test_encoder_within_cap(void)
{
    weir_alloc_acc a = { 0, 0, 0, 0, 0 };
    lua_State *S = weir_state_new_attempt(&a);

    CHECK(S != NULL);
    if (S == NULL)
        return;
    CHECK_EQ_INT(run(S, "s = string.rep('x', 1024 * 1024) "
                        "t = {} for i = 1, 20 do t[i] = s end return nil"), 0);
    lua_pop(S, 1);
    a.cap = a.used + (8u << 20);
    lua_pushcfunction(S, weir_ser_encode);
    lua_getglobal(S, "t");
    CHECK_EQ_INT(lua_pcall(S, 1, 1, 0), 0);
    CHECK(lua_isnil(S, -1));
    lua_pop(S, 1);
    /* within the cap it encodes */
    lua_pushcfunction(S, weir_ser_encode);
    lua_getglobal(S, "s");
    CHECK_EQ_INT(lua_pcall(S, 1, 1, 0), 0);
    CHECK(lua_isstring(S, -1) && lua_objlen(S, -1) > 1024 * 1024);
    lua_pop(S, 1);
    lua_close(S);
}

static void test_refusals(void)
{
    weir_alloc_acc other = { 0, 0, 0, 0, 0 };
    lua_State *L = weir_state_snapshot_restore(&acc), *M;

    CHECK(L != NULL);
    /* a state is open: no second one over it */
    CHECK(weir_state_snapshot_restore(&acc) == NULL);
    lua_close(L);
    /* another accounting block: its address is inside the snapshot */
    CHECK(weir_state_snapshot_restore(&other) == NULL);
    /* a state with a block outside the arena cannot be saved */
    M = weir_state_new_attempt(&other);
    CHECK(M != NULL);
    CHECK_EQ_INT(run(M, "big = string.rep('y', 24 * 1024 * 1024) "
                        "return nil"), 0);
    lua_pop(M, 1);
    CHECK_EQ_INT(weir_state_snapshot_save(M, &other), -1);
    lua_close(M);
    /* nor one that loaded a module with C-side memory of its own */
    M = weir_state_new_attempt(&other);
    CHECK(M != NULL);
    CHECK_EQ_INT(run(M, "require('ffi') return nil"), 0);
    lua_pop(M, 1);
    CHECK_EQ_INT(weir_state_snapshot_save(M, &other), -1);
    lua_close(M);
    /* the old snapshot is still there, then dropped */
    L = weir_state_snapshot_restore(&acc);
    CHECK(L != NULL);
    lua_close(L);
    weir_state_snapshot_drop();
    CHECK(weir_state_snapshot_restore(&acc) == NULL);
}

int main(void)
{
    test_restore_is_the_saved_state();
    test_cap_holds_after_restore();
    test_refusals();
    test_encoder_within_cap();
    return CHECK_DONE();
}
