/*
 * numfmt.h - the one number printer for data: integers exactly, doubles
 * in the shortest text that reads back as the same double. Used for
 * PostgreSQL parameters and COPY text, Redis arguments, weir._ser records
 * and weir.json (through weir._native.num_format). Internal C, no FFI.
 * Relies on libc's snprintf and strtod (correctly rounded, as glibc's).
 */
#ifndef WEIR_NUMFMT_H
#define WEIR_NUMFMT_H

#include "weir/common.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes a buffer for either printer needs (no NUL is written). */
#define WEIR_NUMFMT_MAX 32

/* v in decimal ("-9223372036854775808" at most). Returns the length. */
size_t weir_fmt_i64(char *buf, int64_t v);

/* The shortest text that strtod reads back as v:
 * - integral values below 2^53 in magnitude: all digits ("42",
 *   "-9007199254740991"), never an exponent;
 * - zero as "0", negative zero as "-0";
 * - others as the fewest significant digits that round-trip, in %g style
 *   ("0.1", "0.30000000000000004", "1e+300", "9007199254740992",
 *   "5e-324"). Callers that want every integer of int64 range in full
 *   print those with weir_fmt_i64 first.
 * NaN and infinities: returns 0 and writes nothing (the caller's format
 * decides: "NaN", "Infinity", a tag, an error). Otherwise the length. */
size_t weir_fmt_double(char *buf, double v);

#endif
