/*
 * yaml.h - YAML document loader for Lua (weir.yaml, weir.yaml config and
 * YAML pipelines). A bulk conversion that builds Lua tables, so it uses the
 * classic Lua C API, not the FFI: there is no cdef region here. Relies on
 * libyaml (event API) and LuaJIT's lua.h.
 *
 * weir_yaml_decode is a lua_CFunction:
 *
 *   value, lines = decode(text, name, array_mt, null)
 *
 *   text      string, the whole YAML stream (one document at most)
 *   name      string used as the error prefix, e.g. "weir.yaml"
 *   array_mt  table set as the metatable of every sequence, or nil
 *   null      the value used for YAML null (any Lua value; nil means nulls
 *             become absent keys and holes in sequences)
 *
 * value: mappings become plain tables, sequences tables with array_mt.
 * Plain untagged scalars are resolved with the YAML 1.2 core schema
 * (null/Null/NULL/~/empty, true/True/TRUE/false/..., decimal, 0x and 0o
 * integers, floats incl. .inf/-.inf/.nan) to null, booleans and numbers
 * (Lua numbers are doubles: integers beyond 2^53 lose precision; floats
 * are parsed with strtod, which assumes the C LC_NUMERIC locale). Quoted
 * scalars, block scalars (| and >) and everything else stay strings, so
 * YAML 1.1 words like yes/no/on/off are strings. Explicit tags: !!str,
 * !!null, !!bool, !!int, !!float, !!seq, !!map and the non-specific "!"
 * are honoured; any other tag is an error. Mapping keys are always
 * strings (the key's text, unresolved); a collection as a key is an error,
 * and so is a duplicate key. Aliases are expanded into fresh copies of the
 * anchored value; merge keys (<<: *a, <<: [*a, *b]) are supported, with
 * explicit keys winning over merged ones and earlier merge sources over
 * later ones. An empty stream decodes to null.
 *
 * lines: maps each node's path to its 1-based line. The root's path is "",
 * mapping members are joined with "." and sequence elements are "[i]"
 * (1-based): "tasks.extract.retries", "tasks.load.after[2]". A mapping
 * member's line is the line of its key, a sequence element's the line where
 * the element starts. Keys containing "." or "[" make paths ambiguous; the
 * last node written wins. Nodes copied from an alias or merge carry the
 * lines of the anchored text (the alias itself carries its own line).
 *
 * Errors are raised as Lua errors "NAME:LINE:COL: yaml: PROBLEM" (1-based
 * line and column), e.g. "weir.yaml:3:5: yaml: did not find expected key
 * (while parsing a block mapping at line 1)". Beyond libyaml's own
 * problems: "multiple documents are not supported", "nesting too deep
 * (limit 256)" (also counted through aliases), "document too large" (more
 * than 1048576 nodes after alias expansion, or 64 MiB of path text),
 * "unknown anchor \"a\"", "mapping keys must be scalars", "duplicate key
 * \"k\"", "merge value must be a mapping or a sequence of mappings",
 * "unsupported tag \"!x\"", "value \"v\" does not match tag !!int". All
 * libyaml and C memory is released before the error is raised; if the Lua
 * API itself raises (out of memory), a __gc guard releases it.
 */
#ifndef WEIR_YAML_H
#define WEIR_YAML_H

#include <lua.h>

#include "weir/common.h"

/* lua_CFunction, see above, registered into weir._native; it must be
 * called through lua_call/lua_pcall, never through the FFI.
 * weir:native:begin
 * yaml_decode(text, name, array_mt, null) -> value, lines
 * weir:native:end
 */
int weir_yaml_decode(lua_State *L);

#endif
