/*
 * json.h - JSON (RFC 8259) between text and Lua values, in C (json.c, ADR
 * 44): the fast path of weir's two JSON implementations (weir.json, in
 * Lua, is the one that explains). Internal C, no FFI; Lua reaches it
 * through weir._native.json_encode and json_decode.
 *
 * Mapping: JSON null <-> the lightuserdata NULL (json.null, ctx.NULL);
 * arrays -> tables 1..n and back (a table whose keys are exactly 1..n,
 * holes allowed up to twice the count, is an array; any other table, the
 * empty one included, an object); numbers <-> doubles, printed exactly
 * (numfmt.h); a "weir.json" userdata (a json value kept as text) is
 * written as its text. Encoding never runs a metamethod.
 *
 * weir:native:begin
 * json_encode(v [, max_bytes]) -> string | nil, err
 *   v as JSON text; nil and why for what JSON cannot hold or more than
 *   max_bytes of text.
 * json_decode(text) -> value | nil, err
 *   The value of a JSON text; nil and "invalid JSON at offset N: ...".
 * weir:native:end
 */
#ifndef WEIR_JSON_H
#define WEIR_JSON_H

#include "weir/buf.h"
#include "weir/common.h"

#include <lua.h>
#include <stddef.h>

/* Append the value at idx as JSON text to out; depth is the nesting
 * already above it (0 at the top; 128 levels at most). WEIR_OK, or
 * WEIR_EINVAL with a message in err for a value JSON cannot hold (a
 * function, NaN, a sparse array, a cycle), WEIR_ENOMEM. On error out may
 * hold part of the text. */
int weir_json_encode(lua_State *L, int idx, weir_buf *out, int depth,
                     char *err, size_t errlen);

/* Push the value of the JSON text s[0..len). WEIR_OK, or WEIR_EPARSE with
 * "invalid JSON at offset N: what" in err (nothing pushed), WEIR_ENOMEM.
 * A number beyond a double's range is refused. */
int weir_json_decode(lua_State *L, const char *s, size_t len, char *err,
                     size_t errlen);

/* Push a "weir.json" userdata holding a copy of s[0..len): tostring gives
 * the text, v:decode() the Lua value, == compares texts. */
void weir_json_value_push(lua_State *L, const char *s, size_t len);

/* The text of the "weir.json" userdata at idx (borrowed, valid while the
 * value lives), or NULL when idx holds something else. */
const char *weir_json_value_text(lua_State *L, int idx, size_t *len);

/* weir._native.json_encode and json_decode (the region above). */
int weir_json_native_encode(lua_State *L);
int weir_json_native_decode(lua_State *L);

#endif
