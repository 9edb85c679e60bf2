/*
 * connectors.h - what connectors give the runtime, without the runtime
 * knowing them. Each connector C unit (connectors/NAME.c) that registers
 * classic-API functions into weir._native, or needs something done in a
 * worker before its seccomp filter, defines one
 *
 *     const weir_connector_desc weir_connector_NAME = { ... };
 *
 * at file scope. scripts/connectors.lua finds those definitions at build
 * time and generates build/gen/connectors.c, the weir_connectors table
 * below (sorted by name), as scripts/embed.lua does for the Lua library.
 * runtime/ includes this header and no connector's.
 */
#ifndef WEIR_CONNECTORS_H
#define WEIR_CONNECTORS_H

#include <lauxlib.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;        /* "pg": the NAME of weir_connector_NAME */
    const char *table;       /* NULL: natives go into weir._native itself;
                              * else into the subtable weir._native[table] */
    const luaL_Reg *natives; /* NULL-terminated, or NULL; each listed in a
                              * weir:native region of the connector's
                              * header (tests/lua/unit/native_spec.lua) */
    int32_t preload_bit;     /* a WEIR_PRELOAD_* bit (weir_exec_opts) */
    /* run in a worker before its seccomp filter when the supervisor set
     * preload_bit; WEIR_OK, or a status with the reason in err (the worker
     * reports it and goes on). NULL when there is nothing to do. */
    int (*preload)(char *err, size_t errlen);
} weir_connector_desc;

/* Every connector of the build, NULL-terminated (generated). */
extern const weir_connector_desc *const weir_connectors[];

#endif
