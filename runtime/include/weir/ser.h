/*
 * ser.h - the weir._ser format (lua/weir/_ser.lua) for plain data, in C.
 *
 * Jobs, results and pipeline definitions cross the supervisor/worker
 * boundary in that format on every task attempt; the Lua codec is the
 * reference and handles everything (functions, builtins, metatables,
 * shared tables). These two functions do the common case only, and much
 * faster, especially in attempt states, which run without the JIT.
 *
 * weir._native.ser_encode(v) -> string | nil
 *   nil when v holds anything but nil, booleans, numbers, strings and
 *   tables without metatables, a table reached twice (shared, or a
 *   cycle), nesting deeper than 100, or more bytes than an attempt state
 *   has left under its memory cap: the caller then uses the Lua encoder,
 *   which handles it or says why not.
 *
 * weir._native.ser_encode_ud(v) -> userdata, length | nil
 *   The same bytes in a full userdata instead of a string. Lua interns
 *   every string, and thousands of long strings that differ in a few bytes
 *   (one job per task) can all land in a few hash chains: building 10,000
 *   of them sometimes took half a second. A userdata is never interned;
 *   the executor sends it as it is.
 *
 * weir._native.ser_decode(s [, start [, array_mt]]) -> value, next_pos |
 *   nil, err | false
 *   false when s holds a tag only the Lua decoder knows (function, builtin,
 *   metatable) or nests deeper than 100. Tables that were sequences get
 *   array_mt when it is given. Input is untrusted: bounds, nesting and
 *   references are checked, and errors are returned, never raised.
 *
 * weir._native.ser_decode_ptr(ptr, len [, array_mt])
 *   The same, from len bytes at ptr (a light userdata, or an FFI
 *   `const char *`: any other cdata is read as if it held one, since C
 *   cannot tell cdata types apart, so callers check with ffi.istype)
 *   instead of a string: a worker's result is decoded where the executor
 *   read it, without making a Lua string of it first.
 *
 * weir_ser_put_fields(out, n, keys, vals, vlens)
 *   From C, without a Lua state: append to out the record of a table of
 *   n string fields, keys[i] (NUL-terminated) = vals[i] (vlens[i]
 *   bytes), as the encoders write it. A worker sends its failure results
 *   this way when Lua itself failed. WEIR_OK, or WEIR_ENOMEM with out as
 *   it was.
 */
/*
 * The same, as listed for tests/lua/unit/native_spec.lua:
 * weir:native:begin
 * ser_encode(v) -> string | nil
 * ser_encode_ud(v) -> userdata, length | nil
 * ser_decode(s [, start [, array_mt]]) -> value, next_pos | nil, err | false
 * ser_decode_ptr(ptr, len [, array_mt]) -> value | nil, err | false
 * weir:native:end
 */
#ifndef WEIR_SER_H
#define WEIR_SER_H

#include "weir/buf.h"
#include "weir/common.h"

#include <lua.h>
#include <stddef.h>

int weir_ser_encode(lua_State *L);
int weir_ser_encode_ud(lua_State *L);
int weir_ser_decode(lua_State *L);
int weir_ser_decode_ptr(lua_State *L);
int weir_ser_put_fields(weir_buf *out, int n,
                        const char *const *keys,
                        const char *const *vals,
                        const size_t *vlens);

#endif
