/*
 * pgcodec.h - PostgreSQL text-format values <-> Lua values, for the pg
 * connector: COPY text lines, query results and bound parameters. Uses the
 * classic Lua C API (one crossing per row, not per field), so none of it is
 * in the FFI. Nothing here calls back into Lua code: rows and arrays are
 * read with rawget, JSON is decoded and encoded in C. The only Lua error
 * these functions can raise is a memory error from the Lua allocator.
 * Relies on weir/buf.h (the weir_buf it appends to), weir/common.h and
 * LuaJIT's lua.h.
 *
 * SQL NULL is the lightuserdata NULL sentinel (== json.null). When
 * encoding, Lua nil means NULL too.
 *
 * Type mapping (decode -> Lua; encode <- Lua), by builtin OID:
 * - bool: true/false <-> "t"/"f". Encode also takes the strings PostgreSQL
 *   accepts (t, true, yes, on, 1, ...; written as t/f).
 * - int2, int4, oid: number. Encode: an integral number in range, or a
 *   decimal integer string (checked, sent as is).
 * - int8: number when |v| <= 2^53, else the exact decimal string. Encode:
 *   an integral number (printed exactly) or a decimal integer string.
 * - numeric: always the decimal string, never through a double ("NaN",
 *   "Infinity" included). Encode: a number literal string (checked, sent as
 *   is) or a number (integers exactly, others by the shortest text that
 *   reads back as the same double, NaN/Infinity as words).
 * - float4, float8: number, "NaN"/"Infinity"/"-Infinity" both ways. Encode
 *   prints the shortest round-trip text (float4: of the value rounded to
 *   float); a number literal string is sent as is.
 * - text, varchar, bpchar, name, char and unknown OIDs: string. Encode:
 *   strings as is, integral numbers as integers, other numbers as the
 *   shortest round-trip text, booleans as "true"/"false".
 * - date, time, timetz, timestamp, timestamptz, interval: the string the
 *   server printed (DateStyle ISO, TimeZone UTC are the caller's job).
 *   Encode: strings only, sent as is.
 * - uuid: string; encode checks the form (hyphens optional, braces too).
 * - json, jsonb: a json value, a "weir.json" userdata holding the
 *   server's text unparsed (tostring gives it; v:decode() the Lua value:
 *   tables, doubles, JSON null as the sentinel; a number beyond a double's
 *   range raises). Encode: a json value writes its text as it is (into
 *   json, jsonb and text-like types; inside a table being encoded too);
 *   a table becomes JSON text (a table whose keys are 1..n is an array,
 *   holes become null; an empty table is {}); a STRING IS TAKEN AS JSON
 *   TEXT ALREADY (pass '"x"' for a JSON string); numbers and booleans are
 *   JSON scalars. Other C units know a json value by the metatable
 *   registry["weir.json"] and read its text through __tostring.
 * - bytea: the raw bytes as a Lua string (hex "\x..." and the old escape
 *   output both decode). Encode: "\x" + hex.
 * - arrays of all the above (_int4, _text, _jsonb, ...): Lua sequences,
 *   NULL elements as the sentinel, multi-dimensional arrays as nested
 *   tables. Literals with explicit bounds ("[0:1]={...}") are rejected.
 *   Encode: a sequence, elements 1..#t (a NULL element must be the
 *   sentinel: with a nil hole #t is ambiguous); nested tables are
 *   sub-arrays, except for json elements where a table is a JSON value.
 *   A string is taken as an array literal already.
 * Strings with a NUL byte are refused for text-like types (use bytea).
 *
 * Errors: WEIR_EPARSE for malformed server text (bad int, bad array
 * literal, wrong field count), WEIR_EINVAL for a Lua value that does not
 * fit the type, WEIR_ENOMEM; the message goes to err. On error nothing is
 * left on the Lua stack and `out` is back at its length before the call.
 *
 * The codec keeps a few scratch buffers per Lua state in the registry
 * (sized to the largest escaped field seen; freed with the state).
 */
#ifndef WEIR_PGCODEC_H
#define WEIR_PGCODEC_H

#include "weir/buf.h"
#include "weir/common.h"

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* Push the Lua value of one text-format value of type oid. s == NULL is
 * SQL NULL and pushes the sentinel. s is borrowed (need not be
 * NUL-terminated). Pushes exactly one value on WEIR_OK, nothing on error. */
int weir_pgcodec_push(lua_State *L, uint32_t oid, const char *s,
                      size_t len, char *err, size_t errlen);

/* Parse one COPY text-format line (a trailing "\n" or "\r\n" is ignored):
 * tab-separated fields, \N = NULL, backslash escapes (\b \f \n \r \t \v,
 * \ooo octal, \xhh hex, \<other> = <other>). Pushes a table keyed by the
 * names in the Lua array at names_idx (names[i+1] for column i, any
 * non-nil key) with oids[i] the type of column i (oids == NULL: all text).
 * A wrong field count is WEIR_EPARSE; error messages name the column. */
int weir_pgcodec_copy_row(lua_State *L, const char *line,
                          size_t len, int ncols,
                          const uint32_t *oids, int names_idx,
                          char *err, size_t errlen);

/* Append the text form of the Lua value at idx for type oid to out.
 * copy = 1: COPY text escaping (backslash, and every control byte as \b
 * \f \n \r \t \v or \ooo, so no value can form a "\." line), and NULL/nil
 * appends "\N". copy = 0: the raw text of a bound parameter; NULL/nil
 * returns WEIR_ENOENT and appends nothing (pass a NULL pointer then). */
int weir_pgcodec_encode(lua_State *L, int idx, uint32_t oid,
                        int copy, weir_buf *out, char *err,
                        size_t errlen);

/* Append one COPY text line, terminated by "\n", for the row table at
 * row_idx: column i is row[names[i+1]] (rawget) of type oids[i]
 * (oids == NULL: all text). Errors name the column. */
int weir_pgcodec_copy_encode_row(lua_State *L, int row_idx,
                                 int ncols, int names_idx,
                                 const uint32_t *oids,
                                 weir_buf *out, char *err,
                                 size_t errlen);

/* The name of a builtin type OID this codec knows ("int8", "timestamptz",
 * "_int4", ...), or NULL. Static storage. */
const char *weir_pgcodec_type_name(uint32_t oid);

/* The OID of a type name: the names above, case-insensitive, plus SQL
 * spellings ("bigint", "double precision", "timestamp with time zone",
 * "text[]" for "_text", ...). 0 (InvalidOid) when unknown. */
uint32_t weir_pgcodec_type_oid(const char *name);

#endif
