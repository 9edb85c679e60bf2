/*
 * pg.h - the PostgreSQL connector primitive (libpq): connection pools per
 * process and connection name, statements with bound parameters and a
 * prepared-statement cache, COPY in both directions, results turned into
 * Lua rows in C (pgcodec.h does the values).
 *
 * Pools live in C and outlive the Lua state of an attempt, so a worker
 * keeps its connections from one attempt to the next. Policy (retries,
 * breakers, which SQL to run for a sink mode) lives in lua/weir/pg.lua.
 *
 * The row-building calls use the classic Lua C API (one boundary crossing
 * per batch, not per field) and are registered as weir._native.pg_*;
 * they raise Lua errors "[SQLSTATE] message" (SQLSTATE 08006 when the
 * connection was lost) and never include connection parameters.
 */
#ifndef WEIR_PG_H
#define WEIR_PG_H

#include "weir/common.h"

#include <lua.h>

/* weir:cdef:begin */
typedef struct weir_pg_pool weir_pg_pool;
typedef struct weir_pg_conn weir_pg_conn;

typedef struct {
    int32_t min_size;           /* connections opened with the pool */
    int32_t max_size;           /* at most this many at once, >= 1 */
    double idle_timeout_ms;     /* idle longer: closed (down to min_size) */
    double max_lifetime_ms;     /* older: closed when returned or checked */
    double validate_after_ms;   /* idle longer: "SELECT 1" on checkout */
    int64_t max_result_bytes;   /* a result held in memory may not exceed */
} weir_pg_pool_opts;

/*
 * The pool of this process for name, created on first use. keys/vals (n
 * libpq connection keywords, borrowed for the call) say how to connect;
 * when they or the options differ from the existing pool's, that pool is
 * closed and replaced. *out is owned by the library (valid until replaced
 * or weir_ffi_pg_pools_close). Opening min_size connections may fail:
 * WEIR_EIO with libpq's message in err (never a password).
 */
WEIR_API int weir_ffi_pg_pool_get(const char *name, const char *const *keys,
                                  const char *const *vals, int32_t n,
                                  const weir_pg_pool_opts *o,
                                  weir_pg_pool **out, char *err,
                                  size_t errlen);
/*
 * A connection from the pool: an idle one that passes validation (alive,
 * not past max_lifetime_ms, answering "SELECT 1" when idle longer than
 * validate_after_ms), else a new one. WEIR_ELIMIT when max_size are in
 * use; WEIR_EIO when connecting failed (message in err). Return it with
 * weir_ffi_pg_release.
 */
WEIR_API int weir_ffi_pg_acquire(weir_pg_pool *p, weir_pg_conn **out,
                                 char *err, size_t errlen);
/*
 * Give c back. It is kept for reuse only when reuse is 1, the connection
 * is healthy and idle (no transaction, no COPY, no pending result);
 * otherwise a running statement is cancelled and the connection closed.
 */
WEIR_API void weir_ffi_pg_release(weir_pg_conn *c, int32_t reuse);
/*
 * Run sql (no parameters, one or more statements) with the simple query
 * protocol, discarding rows: BEGIN, COMMIT, SET... WEIR_ESQL with
 * "[SQLSTATE] message" in err, or WEIR_ECLOSED when the connection is lost.
 */
WEIR_API int weir_ffi_pg_run(weir_pg_conn *c, const char *sql, char *err,
                             size_t errlen);
/* libpq's transaction status of c (PQTRANS_IDLE = 0, INTRANS = 2...). */
WEIR_API int32_t weir_ffi_pg_txstatus(weir_pg_conn *c);
/* Counters of a pool: idle and busy connections, connections opened. */
WEIR_API void weir_ffi_pg_pool_stats(weir_pg_pool *p, int32_t *idle,
                                     int32_t *busy, int64_t *opened);
/* Close every pool of this process (idle connections closed, busy ones
 * closed when released). */
WEIR_API void weir_ffi_pg_pools_close(void);
/* Start a new epoch: connections checked out from now on that were last
 * used in an earlier one are reset (DISCARD ALL) first, so one attempt's
 * session settings never reach the next. */
WEIR_API void weir_ffi_pg_new_epoch(void);
/* The server version of c (e.g. 150018). */
WEIR_API int32_t weir_ffi_pg_server_version(weir_pg_conn *c);
/* weir:cdef:end */

/*
 * Classic Lua C API (weir._native.pg_*); conn arguments are the
 * weir_pg_conn address as a number.
 *
 * pg_exec(conn, sql, params|nil, nparams) -> affected, rows|nil, names|nil
 *   One statement with parameters $1..$n bound (text format, encoded by
 *   type from the statement's description; nil or NULL binds NULL).
 *   Statements with parameters are prepared once per connection and kept
 *   in a cache. rows: the result rows (tables keyed by column name) when
 *   the statement returns rows; bounded by max_result_bytes.
 * pg_describe(conn, sql) -> names, oids, nparams
 * pg_rows_begin(conn, sql, params, n)     single-row mode, any statement
 * pg_rows_batch(conn, max, names) -> rows | nil at the end
 * pg_copy_out_begin(conn, copy_sql)       COPY ... TO STDOUT (text or binary)
 * pg_copy_out_batch(conn, max, names, oids) -> rows | nil at the end
 * pg_copy_in_begin(conn, copy_sql)        COPY ... FROM STDIN (text format)
 * pg_copy_in_batch(conn, rows, names, oids, first, last) -> bytes sent
 * pg_copy_in_data(conn, address, n)     n raw bytes at address (a number)
 * pg_copy_in_end(conn, abort_message|nil) -> rows loaded
 */
WEIR_API int weir_pg_lua_open(lua_State *L);

#endif
