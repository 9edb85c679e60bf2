/*
 * bulk.h - bulk conversions between the C connectors and Lua tables, with
 * the classic Lua C API (the FFI would cross the boundary once per field;
 * these cross it once per batch). Exposed to trusted Lua as
 * weir._native.csv_batch and weir._native.db_insert (registered through
 * weir_connector_bulk, connectors.h); never to user code.
 */
#ifndef WEIR_BULK_H
#define WEIR_BULK_H

#include "weir/connectors.h"

/*
 * weir:native:begin
 * csv_batch(reader, header, types, max) -> rows, bad, eof
 *   reader: the weir_csv_reader * cdata itself; header: array of column
 *   names; types: nil or an array of codes per column (0 string, 1 number,
 *   2 integer, 3 boolean); max: rows per batch. rows: array of row tables;
 *   bad: nil or an array of { line, reason, raw } (malformed rows, wrong
 *   field counts, values that do not convert); eof: true at the end.
 *   Raises on a read error. Empty fields of typed columns become nil.
 * copy_safe(fd) -> boolean
 *   Whether COPY (FORMAT csv) would read the file on fd as the CSV reader
 *   does: false when a line is exactly \. (LF or CRLF line end, or the
 *   last line), the end of data to COPY. Reads fd to its end.
 * decimal_exact(text) -> number | nil
 *   text's value when it is a plain decimal number ([+-]digits[.digits]
 *   [e[+-]digits]) that a double holds exactly (its shortest text has the
 *   same value), else nil: no hex, inf, nan, overflow or lost digits.
 * db_insert(stmt, rows, cols, first, last) -> count
 *   stmt: the weir_stmt * cdata itself, prepared with #cols parameters;
 *   rows[first..last] are bound by column name (numbers, strings, booleans
 *   as 0/1, nil as NULL) and stepped. Raises "row N: <sqlite message>" on
 *   the first failing row.
 * weir:native:end
 *
 * C cannot tell cdata types apart (weir_lua_cdata_ptr): the callers in
 * lua/weir/stream.lua pass only their own reader and statement.
 */
extern const weir_connector_desc weir_connector_bulk;

#endif
