/*
 * lstate.h - creating Lua states: the trusted state of the supervisor and of
 * `weir script`, and the per-attempt state of a worker (counting allocator,
 * a minimal standard library, embedded trusted modules only).
 *
 * Both can require weir._native, the classic-Lua-API functions of trusted
 * code (bulk conversions that build Lua tables, and objects that must be
 * checked userdata). Every function it holds is listed, one a line, in a
 * weir:native region of the header that declares it;
 * tests/lua/unit/native_spec.lua fails when the table and the listings
 * differ. Those of lstate.c:
 *
 * weir:native:begin
 * resource(name) -> string | nil
 *   An embedded raw file (the JSON schemas).
 * memory() -> used, peak, cap, exceeded
 *   The attempt state's allocator counters; nothing in a trusted state.
 * now() -> wall clock ms, monotonic ms
 * num_format(x) -> string
 *   The shortest text that reads back as the double x (numfmt.c).
 * string_dump() -> string.dump
 *   Even where the string library no longer has it (attempt states).
 * NULL = lightuserdata NULL
 *   SQL NULL in rows, the same value as json.null.
 * progress(payload) -> boolean
 *   In a worker: send payload (weir._ser text) to the supervisor as a
 *   progress frame on the job socket (exec.h); false elsewhere.
 * weir:native:end
 */
#ifndef WEIR_LSTATE_H
#define WEIR_LSTATE_H

#include "weir/common.h"

#include <stddef.h>

#include <lua.h>

/* Memory accounting of one attempt state. cap == 0 means no cap. */
typedef struct {
    size_t used;
    size_t peak;
    size_t cap;
    int exceeded; /* set when an allocation was refused by the cap */
    int arena;    /* internal: the state allocates from the process arena */
} weir_alloc_acc;

/* A trusted state: every standard library, `require` finds the embedded
 * library first, then package.path. Returns NULL on allocation failure.
 * The caller closes it with lua_close. */
lua_State *weir_state_new_trusted(void);

/* A fresh attempt state charged to acc (borrowed; must outlive the state):
 * base, table, string, math and debug are opened for the trusted library;
 * the global `require` only finds embedded modules, "ffi", and
 * "os" and "bit" (opened on first use). NULL on failure. Close with
 * lua_close. */
lua_State *weir_state_new_attempt(weir_alloc_acc *acc);

/* Snapshots of a prepared attempt state (ADR 9). save: remember the
 * whole of L, an attempt state made with acc and not yet closed; -1 when
 * it cannot be (the state does not live entirely in the arena). restore:
 * once the previous attempt state is closed, bring the saved state back,
 * bit for bit, at its own address, and return it (NULL when there is no
 * snapshot, acc is not the one it was saved with, or a state is open). The
 * restored state is closed with lua_close like any other. drop: forget the
 * snapshot (idempotent). */
int weir_state_snapshot_save(lua_State *L, weir_alloc_acc *acc);
lua_State *weir_state_snapshot_restore(weir_alloc_acc *acc);
void weir_state_snapshot_drop(void);

/* Push the embedded module `name` compiled but not run; 0 or an error
 * status with the message pushed. */
int weir_state_load_embedded(lua_State *L, const char *name);

/* The descriptor weir._native.progress writes progress frames to (the
 * worker's job socket, fd 3); -1 (the default) makes it a no-op. */
void weir_state_progress_fd(int fd);

/*
 * The pointer held by the pointer cdata at idx (an FFI object passed to a
 * classic-API function as it is, never as a number); raises naming what
 * when idx holds no cdata or a NULL pointer. C cannot tell cdata types
 * apart: the Lua caller passes only a pointer of the type the function
 * documents, from its own private state.
 */
void *weir_lua_cdata_ptr(lua_State *L, int idx, const char *what);

/*
 * The pointer held by the pointer cdata at idx (an FFI object passed to a
 * classic-API function as it is, never as a number); raises naming what
 * when idx holds no cdata or a NULL pointer. C cannot tell cdata types
 * apart: the Lua caller passes only a pointer of the type the function
 * documents, from its own private state.
 */
void *weir_lua_cdata_ptr(lua_State *L, int idx, const char *what);

#endif
