/*
 * pg.h - the PostgreSQL connector primitive (libpq): connection pools per
 * process and connection name, statements with bound parameters and a
 * prepared-statement cache, COPY in both directions, results turned into
 * Lua rows in C (pgcodec.h does the values).
 *
 * Pools live in C (pool.h, shared with Redis) and outlive the Lua state of
 * an attempt, so a worker keeps its connections from one attempt to the
 * next. Policy (retries,
 * breakers, which SQL to run for a sink mode) lives in lua/weir/pg.lua.
 *
 * Connections and the row-building calls use the classic Lua C API (one
 * boundary crossing per batch, not per field) and are registered as
 * weir._native.pg_*; pools are set up through the FFI.
 */
#ifndef WEIR_PG_H
#define WEIR_PG_H

#include "weir/common.h"
#include "weir/connectors.h"

#include <lua.h>

/* C only: the pool of a name, and a connection checked out of it (Lua
 * holds a connection as a "weir.pg.conn" userdata, never as cdata). */
typedef struct weir_pg_pool weir_pg_pool;
typedef struct weir_pg_conn weir_pg_conn;

/* weir:cdef:begin */
enum {
    WEIR_PRELOAD_LIBPQ = 1 /* workers will use PostgreSQL: libpq is loaded
                            * before their seccomp filter (pq.h) */
};

typedef struct {
    int32_t min_size;           /* connections opened with the pool */
    int32_t max_size;           /* at most this many at once, >= 1 */
    double idle_timeout_ms;     /* idle longer: closed (down to min_size) */
    double max_lifetime_ms;     /* older: closed when returned or checked */
    double validate_after_ms;   /* idle longer: "SELECT 1" on checkout */
    int64_t max_result_bytes;   /* a result held in memory may not exceed */
} weir_pg_pool_opts;

/*
 * Set up the pool of this process for name, created on first use. keys/vals
 * (n libpq connection keywords, borrowed for the call) say how to connect;
 * when they or the options differ from the existing pool's, that pool is
 * closed (its busy connections when they are released) and replaced.
 * Connections are taken from it by name (pg_acquire below). Opening
 * min_size connections may fail: WEIR_EIO with libpq's message in err
 * (never a password).
 */
WEIR_API int weir_ffi_pg_pool_set(const char *name, const char *const *keys,
                                  const char *const *vals, int32_t n,
                                  const weir_pg_pool_opts *o, char *err,
                                  size_t errlen);
/* Close every pool of this process (idle connections closed, busy ones
 * closed when released). */
WEIR_API void weir_ffi_pg_pools_close(void);
/* Start a new epoch: connections checked out from now on that were last
 * used in an earlier one are reset (DISCARD ALL) first, so one attempt's
 * session settings never reach the next. */
WEIR_API void weir_ffi_pg_new_epoch(void);
/* weir:cdef:end */

/*
 * Classic Lua C API, registered into weir._native. conn is a "weir.pg.conn"
 * userdata from pg_acquire (checked on every call; one released is refused
 * with "pg: connection not acquired (released already)"). The listing below
 * is read by tests/lua/unit/native_spec.lua: one function a line.
 *
 * weir:native:begin
 * pg_acquire(pool_name) -> conn | nil, status, message
 *   An idle connection of the pool that passes validation (alive, not past
 *   max_lifetime_ms, answering "SELECT 1" when idle longer than
 *   validate_after_ms), else a new one. status WEIR_ELIMIT when max_size
 *   are in use, WEIR_EIO when connecting failed, WEIR_ENOENT for a name
 *   with no pool.
 * pg_release(conn, reuse)
 *   Give conn back (safe twice; the collector does it with reuse false).
 *   Kept for reuse only when reuse is true and it is healthy and idle (no
 *   transaction, COPY or pending result); otherwise a running statement is
 *   cancelled and the connection closed.
 * pg_run(conn, sql)
 *   Statements without parameters (simple protocol), rows discarded.
 * pg_txstatus(conn) -> "idle" | "active" | "intrans" | "inerror" | "unknown"
 * pg_exec(conn, sql, params|nil, nparams) -> affected, rows|nil, names|nil
 *   One statement with parameters $1..$n bound (text format, encoded by
 *   type from the statement's description; nil or NULL binds NULL).
 *   Statements with parameters are prepared once per connection and kept
 *   in a cache. rows: the result rows (tables keyed by column name) when
 *   the statement returns rows; bounded by max_result_bytes.
 * pg_describe(conn, sql) -> names, oids, nparams, typmods
 * pg_rows_begin(conn, sql, params, n)
 *   Single-row mode, any statement.
 * pg_rows_batch(conn, max, names) -> rows | nil at the end
 * pg_copy_out_begin(conn, copy_sql)
 *   COPY ... TO STDOUT (text or binary).
 * pg_copy_out_batch(conn, max, names, oids) -> rows | nil at the end
 * pg_copy_in_begin(conn, copy_sql, text_copy_sql|nil)
 *   COPY ... FROM STDIN (text, or binary switching to text_copy_sql).
 * pg_copy_in_batch(conn, rows, names, oids, first, last) -> bytes sent
 * pg_copy_in_file(conn, fd) -> true | nil, message
 *   The bytes of the open file fd to its end, as they are (a read error
 *   is returned).
 * pg_copy_in_end(conn, abort_message|nil) -> rows loaded
 * pg_binary_ok(oids) -> true when every type has a binary COPY form
 * weir:native:end
 *
 * They raise "[SQLSTATE] message" (SQLSTATE 08006 when the connection was
 * lost) and never include connection parameters.
 */
extern const weir_connector_desc weir_connector_pg;

#endif
