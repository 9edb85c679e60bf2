/*
 * pgbinary.h - PostgreSQL binary COPY rows <-> Lua values, for COPY
 * between PostgreSQL servers without printing and parsing numbers and
 * timestamps. A binary tuple decodes to EXACTLY the Lua row the text codec
 * (weir/pgcodec.h) gives for the same data under weir's session settings
 * (DateStyle ISO, TimeZone UTC, extra_float_digits 3), and a Lua row
 * encodes to the values the server would store from the text codec's
 * line. Classic Lua C API like pgcodec, so none of it is in the FFI;
 * nothing calls back into Lua code. Relies on weir/pgcodec.h (weir_buf,
 * and JSON and non-string text values go through it).
 *
 * Types (weir_pgbinary_supported): bool, bytea, name, int8, int2, int4,
 * text, oid, json, float4, float8, bpchar, varchar, date, timestamp,
 * timestamptz, uuid, jsonb. Anything else (numeric, time, timetz,
 * interval, arrays, "char", unknown OIDs) has no binary codec here: the
 * caller uses text COPY for the whole statement.
 *
 * Lua values are the text codec's: int8 beyond +-2^53 is the decimal
 * string; float4 is the double the server's shortest text reads as
 * (1.1::float4 -> 1.1); date "2026-01-02", timestamp "2026-01-02
 * 03:04:05.5", timestamptz "2026-01-02 03:04:05.5+00", " BC" suffixes,
 * "infinity"/"-infinity"; uuid lowercase with hyphens; json/jsonb the
 * json value of the text codec (the text after jsonb's version byte).
 *
 * Encoding accepts what weir_pgcodec_encode accepts per type. Date and
 * time strings are parsed here, in these forms only (anything else is
 * WEIR_EAGAIN, see below):
 *   date:        YYYY-MM-DD[ BC] | infinity | -infinity
 *   timestamp,
 *   timestamptz: YYYY-MM-DD[( |T)HH:MM[:SS[.f{1,6}]][[ ]Z|[ ](+|-)HH[[:]MM
 *                [:SS]]]][ BC] | infinity | -infinity
 * YYYY is 4 digits, or 5 without a leading zero: years 1 to 99999, and
 * 1 to 4713 BC. An offset is at most 15:59:59, as the server allows; on
 * a timestamp (without time zone) it is ignored, as PostgreSQL does; a
 * timestamptz without one is UTC (weir's session TimeZone).
 *
 * The fallback contract: WEIR_EAGAIN from weir_pgbinary_encode_row means
 * "this row cannot be written in binary COPY with the same result as the
 * text codec" (a date/time string in another form or out of the checked
 * range, an out-of-range float literal the server would reject, a name
 * longer than 63 bytes). Nothing is appended then (out is back at its
 * length). The rows already appended are complete and valid, so the
 * caller finishes the binary COPY (trailer, PQputCopyEnd) and goes on
 * from that row with a text COPY of the same table in the same
 * transaction; the text path then gives the server's own result,
 * error included. Other errors are the text codec's: WEIR_EINVAL for a
 * Lua value that does not fit the type (same checks, same messages),
 * WEIR_ENOMEM.
 *
 * Decoding: WEIR_EPARSE for malformed binary (wrong field count, bad
 * lengths, trailing bytes, jsonb version), WEIR_EINVAL for an OID without
 * a binary codec or a column without a name. Errors name the column.
 * On error nothing is left on the Lua stack.
 */
#ifndef WEIR_PGBINARY_H
#define WEIR_PGBINARY_H

#include "weir/common.h"
#include "weir/pgcodec.h"

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* 1 if binary COPY handles type oid (exactly as the text codec), else 0. */
int weir_pgbinary_supported(uint32_t oid);

/* 1 if every one of the ncols oids is supported (and ncols fits the
 * format's int16 field count), else 0: the test for a whole COPY. */
int weir_pgbinary_all_supported(int ncols, const uint32_t *oids);

/* The length of the binary COPY file header at the start of buf
 * (signature, flags, header extension), or 0 if buf does not start with
 * a complete header this codec reads (flags with the OID bit or unknown
 * critical bits set are refused). In COPY TO STDOUT the server sends the
 * header in the same CopyData message as the first tuple (or the
 * trailer, for no rows): strip it from the first message only. */
size_t weir_pgbinary_header_len(const char *buf, size_t len);

/* Push the row table for one binary tuple (one CopyData message after the
 * header), keyed like weir_pgcodec_copy_row: column i is names[i+1] from
 * the Lua array at names_idx, of type oids[i] (oids == NULL: all text).
 * The trailer (the int16 -1, exactly 2 bytes) returns WEIR_ENOENT and
 * pushes nothing. buf is borrowed. */
int weir_pgbinary_copy_row(lua_State *L, const char *buf,
                           size_t len, int ncols,
                           const uint32_t *oids, int names_idx,
                           char *err, size_t errlen);

/* Append one binary tuple for the row table at row_idx: column i is
 * row[names[i+1]] (rawget) of type oids[i] (oids == NULL: all text); nil
 * or the NULL sentinel is SQL NULL. WEIR_EAGAIN: see the fallback
 * contract above. On any error out is back at its length. */
int weir_pgbinary_encode_row(lua_State *L, int row_idx, int ncols,
                             int names_idx, const uint32_t *oids,
                             weir_buf *out, char *err,
                             size_t errlen);

/* Append the 19-byte file header (no OIDs, no extension): send it before
 * the first tuple of a COPY FROM STDIN (FORMAT binary). WEIR_OK or
 * WEIR_ENOMEM. */
int weir_pgbinary_header(weir_buf *out);

/* Append the 2-byte trailer: send it after the last tuple, before
 * PQputCopyEnd. WEIR_OK or WEIR_ENOMEM. */
int weir_pgbinary_trailer(weir_buf *out);

#endif
