/*
 * main.c - the `weir` binary: `weir __worker` becomes a worker process;
 * everything else is the trusted Lua CLI (weir.cli) in a trusted state.
 * The binary also replaces socket() and connect() (interpose.c).
 */
#include "weir/exec.h"
#include "weir/lstate.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);

    luaL_traceback(L, L, msg ? msg : "(error object)", 1);
    return 1;
}

int main(int argc, char **argv)
{
    lua_State *L;
    int status;

    if (argc > 1 && strcmp(argv[1], "__worker") == 0)
        return weir_worker_main(argc, argv);
    L = weir_state_new_trusted();
    if (L == NULL) {
        fprintf(stderr, "weir: cannot create Lua state\n");
        return 70;
    }
    /* global arg = { [0] = argv[0], ... } as the stock interpreter does */
    lua_createtable(L, argc, 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "weir.cli");
    if (lua_pcall(L, 1, 1, -3) != 0) {
        fprintf(stderr, "weir: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 70;
    }
    lua_getfield(L, -1, "main");
    lua_getglobal(L, "arg");
    if (lua_pcall(L, 1, 1, -4) != 0) {
        fprintf(stderr, "weir: internal error: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 70;
    }
    status = (int)lua_tointeger(L, -1);
    lua_close(L);
    return status;
}
