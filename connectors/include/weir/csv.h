/*
 * csv.h - streaming RFC 4180 CSV reader and buffered writer over file
 * descriptors: the ABI the Lua CSV connector binds through the FFI. Relies
 * on weir/common.h for the status codes and WEIR_API.
 *
 * Reader rules a caller must know:
 * - A row ends at LF or CRLF outside quotes. A CR that is not followed by
 *   LF is ordinary data (in an unquoted field) or garbage (after a closing
 *   quote).
 * - Every line terminator ends a row, so a blank line yields one row with
 *   one empty unquoted field (RFC 4180 behaviour; blank lines are not
 *   skipped). Only the terminator of the very last row is optional: a
 *   trailing newline at end of input does not create an extra row, and
 *   empty input has no rows at all.
 * - Fields are pointer + length, not NUL-terminated, and may contain NUL
 *   bytes. Quotes are removed and "" is unescaped to " (in place in the
 *   reader's buffer). No byte-order mark is stripped and no encoding is
 *   checked.
 * - max_row_bytes counts the raw bytes of one row (quotes and embedded
 *   newlines included, the terminating LF/CRLF excluded). The buffer starts
 *   at 64 KiB and grows only while a single row needs it, up to
 *   max_row_bytes + 2. 0 selects the default of 16 MiB; the largest
 *   accepted value is 1 GiB.
 * - Error text always starts with "line N: " where N is the 1-based
 *   physical line of the problem (for an unterminated quote, the line where
 *   the quoted field opened; for an over-long row, the row's first line).
 *   After WEIR_EPARSE or WEIR_ELIMIT the rest of the bad row has already
 *   been skipped and the next call returns the next row. The resync rule:
 *   after a quote in an unquoted field or garbage after a closing quote,
 *   the row ends at the next LF; an over-long row is skipped while still
 *   honouring quotes; an unterminated quote runs to end of input.
 *
 * Writer rules: the quote character is always '"', rows end with LF (not
 * CRLF), and a field is quoted when it contains the delimiter, '"', CR or
 * LF, starts or ends with a space or tab, or has its quoted flag set. A
 * row of one empty field is written as "" (never a blank line, which
 * other tools tend to skip); the reader reads it back as one empty field.
 *
 * Both objects are single-threaded, expect a blocking fd, and never call
 * back into Lua.
 */
#ifndef WEIR_CSV_H
#define WEIR_CSV_H

#include "weir/common.h"

/* weir:cdef:begin */
typedef struct weir_csv_reader weir_csv_reader;
typedef struct weir_csv_writer weir_csv_writer;

/* One field: data/len (not NUL-terminated; data may be NULL when len is 0
 * on input to the writer). quoted: the reader sets 1 when the field was
 * quoted in the input; the writer quotes the field when it is non-zero. */
typedef struct {
    const char *data;
    uint32_t len;
    uint32_t quoted;
} weir_csv_field;

/* Creates a reader over fd (read with read(2) from its current offset).
 * delim: field separator, any byte except CR, LF and quote. quote: the
 * quote byte, or 0 for no quoting at all. max_row_bytes: see above, 0 for
 * the default. On WEIR_OK *out owns a new reader the caller frees with
 * weir_ffi_csv_reader_delete, and when owns_fd is non-zero the reader
 * closes fd on delete. On failure (WEIR_EINVAL, WEIR_ENOMEM) *out is NULL
 * and fd is left open whatever owns_fd says. out must not be NULL; err may
 * be NULL when errlen is 0. */
WEIR_API int weir_ffi_csv_reader_new(int fd, int owns_fd, uint8_t delim,
    uint8_t quote, size_t max_row_bytes, weir_csv_reader **out,
    char *err, size_t errlen);

/* Reads the next row. WEIR_OK: *fields points to *nfields (>= 1) fields
 * owned by the reader, valid until the next call on r or its deletion.
 * WEIR_ENOENT: end of input (and again on every later call). WEIR_EPARSE:
 * the row is malformed; WEIR_ELIMIT: the row is longer than max_row_bytes;
 * for both the row was skipped, *fields is NULL, *nfields 0 and err says
 * why. WEIR_EIO: read(2) failed. *line is set for WEIR_OK, WEIR_EPARSE and
 * WEIR_ELIMIT to the 1-based physical line where the row starts. r,
 * fields, nfields and line must not be NULL; err may be NULL when errlen
 * is 0. */
WEIR_API int weir_ffi_csv_next(weir_csv_reader *r,
    const weir_csv_field **fields, uint32_t *nfields, uint64_t *line,
    char *err, size_t errlen);

/* The raw bytes (terminator excluded) of the row the last call to
 * weir_ffi_csv_next rejected with WEIR_EPARSE, for a dead-letter sink.
 * WEIR_OK: *data and *len borrow the reader's buffer until the next call on
 * r. WEIR_ENOENT (with *data NULL, *len 0) after any other result. r, data
 * and len must not be NULL. */
WEIR_API int weir_ffi_csv_reader_raw(weir_csv_reader *r, const char **data,
    size_t *len);

/* Frees r and closes its fd when it owns it. r may be NULL. */
WEIR_API void weir_ffi_csv_reader_delete(weir_csv_reader *r);

/* Creates a buffered writer to fd. delim: field separator, any byte except
 * CR, LF and '"'. On WEIR_OK *out owns a new writer the caller frees with
 * weir_ffi_csv_writer_delete (which closes fd when owns_fd is non-zero).
 * On failure *out is NULL and fd is left open. out must not be NULL; err
 * may be NULL when errlen is 0. */
WEIR_API int weir_ffi_csv_writer_new(int fd, int owns_fd, uint8_t delim,
    weir_csv_writer **out, char *err, size_t errlen);

/* Appends one row of n >= 1 fields (borrowed for the call) to the buffer,
 * writing to fd whenever the 64 KiB buffer fills. WEIR_EINVAL: n is 0, or
 * fields is NULL, or a field has NULL data with len > 0 (nothing written).
 * WEIR_EIO: write(2) failed; the writer is then failed for good and every
 * later call returns WEIR_EIO. w must not be NULL; err may be NULL when
 * errlen is 0. */
WEIR_API int weir_ffi_csv_write_row(weir_csv_writer *w,
    const weir_csv_field *fields, uint32_t n, char *err, size_t errlen);

/* Writes out everything buffered (short writes and EINTR are retried; the
 * fd is not fsync'd). WEIR_OK or WEIR_EIO as for write_row. w must not be
 * NULL; err may be NULL when errlen is 0. */
WEIR_API int weir_ffi_csv_writer_flush(weir_csv_writer *w, char *err,
    size_t errlen);

/* Flushes (errors are lost: call flush first to see them), closes fd when
 * owned and frees w. w may be NULL. */
WEIR_API void weir_ffi_csv_writer_delete(weir_csv_writer *w);
/* weir:cdef:end */

#endif
