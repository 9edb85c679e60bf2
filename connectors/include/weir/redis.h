/*
 * redis.h - the Redis connector: a connection pool per (process,
 * connection name), binary-safe commands and pipelines, and the conversion
 * of replies into Lua values.
 *
 * Pools live in C, in a process-global registry keyed by name (pool.h,
 * shared with PostgreSQL), so they outlive the Lua state of one attempt. A pool hands out connections that
 * are checked on checkout (closed by the peer? idle long: PING), replaced
 * when dead, and closed past their idle timeout or lifetime. Replies are
 * read with hiredis's reader under a byte budget (max_reply_bytes): the
 * Lua memory cap never sees hiredis's buffers.
 *
 * Status codes (common.h) and what they mean here; the "transient" ones
 * are worth a retry (weir_ffi_redis_transient):
 *   WEIR_EIO       connect failed (refused, unreachable), socket error  [t]
 *   WEIR_ECLOSED   the server closed or reset the connection            [t]
 *   WEIR_ETIMEOUT  connect or reply timed out                           [t]
 *   WEIR_EAGAIN    LOADING, BUSY, TRYAGAIN, MASTERDOWN; pool exhausted  [t]
 *   WEIR_EPERM     AUTH refused (WRONGPASS, NOAUTH, NOPERM), or the
 *                  network broker denied the endpoint
 *   WEIR_ESQL      any other error reply (ERR, WRONGTYPE, ...)
 *   WEIR_ELIMIT    a reply exceeded max_reply_bytes
 *   WEIR_EPARSE    protocol error (not a Redis server?)
 *   WEIR_EINVAL    bad options or arguments
 * Error text is "redis \"NAME\": ..." and never contains the password.
 */
#ifndef WEIR_REDIS_H
#define WEIR_REDIS_H

#include "weir/common.h"
#include "weir/connectors.h"

#include <lua.h>

/* weir:cdef:begin */
typedef struct weir_redis_pool weir_redis_pool;

/* Pool options. Strings are borrowed for the call (the pool copies them).
 * A 0 in a numeric field means "the default" (in brackets); a negative
 * idle_timeout_ms, max_lifetime_ms or validate_after_ms means "never".
 * min_size, max_size, idle_timeout_ms, max_lifetime_ms and
 * validate_after_ms are the shared pool's options (pool.h), named as for
 * PostgreSQL (pg.h). */
typedef struct weir_redis_opts {
    const char *host;           /* numeric IPv4 or IPv6 address */
    int32_t port;               /* 1..65535 */
    const char *username;       /* NULL: AUTH with the password only */
    const char *password;       /* NULL or "": no AUTH */
    int32_t db;                 /* SELECT index when > 0 */
    int32_t connect_timeout_ms; /* [5000] */
    int32_t command_timeout_ms; /* longest wait for one reply [10000] */
    int32_t min_size;           /* kept open against the idle timeout [0] */
    int32_t max_size;           /* connections open at once [8] */
    int32_t idle_timeout_ms;    /* close connections idle this long [60000] */
    int32_t max_lifetime_ms;    /* close connections this old [1800000] */
    int32_t validate_after_ms;  /* PING on checkout after this idle [10000] */
    int64_t max_reply_bytes;    /* one reply's size bound [64 MB] */
    const char *tls_ca;         /* NULL: plain TCP; else TLS (tls.h) trusting
                                   these PEM certificates */
    const char *tls_host;       /* the name the certificate must be for */
    const char *tls_cert;       /* NULL, or a client certificate (PEM)... */
    const char *tls_key;        /* ...and its private key (PEM) */
} weir_redis_opts;

typedef struct weir_redis_stats {
    int32_t open;     /* connections alive: idle + in use */
    int32_t idle;
    int32_t in_use;
    int32_t retired;  /* 1 when replaced or dropped from the registry */
    int64_t connects; /* connections opened so far */
    int64_t dropped;  /* closed as broken, dead, expired or failed PING */
} weir_redis_stats;

/* The pool registered as name, created on first use; when opts differ from
 * the registered pool's, a new pool replaces it (the old one closes its
 * connections as their users give them back). Connects lazily. *out is one
 * reference: give it back with weir_ffi_redis_pool_release. */
WEIR_API int weir_ffi_redis_pool_get(const char *name,
                                     const weir_redis_opts *opts,
                                     weir_redis_pool **out, char *err,
                                     size_t errlen);
/* Give back a reference from pool_get; NULL-safe. The registry keeps the
 * pool (and its idle connections) for the next attempt. */
WEIR_API void weir_ffi_redis_pool_release(weir_redis_pool *pool);
/* Remove name from the registry and close its idle connections. Returns
 * WEIR_OK or WEIR_ENOENT. */
WEIR_API int weir_ffi_redis_pool_drop(const char *name);
/* Drop every pool (process exit, tests). */
WEIR_API void weir_ffi_redis_shutdown(void);
/* Pools alive in this process: registered or still referenced. */
WEIR_API int32_t weir_ffi_redis_live_pools(void);
WEIR_API void weir_ffi_redis_pool_stats(weir_redis_pool *pool,
                                        weir_redis_stats *out);
/* PING over a pooled connection; *ms is the round trip in milliseconds. */
WEIR_API int weir_ffi_redis_ping(weir_redis_pool *pool, double *ms,
                                 char *err, size_t errlen);
/* 1 when status code rc is worth a retry (see the list above), else 0. */
WEIR_API int32_t weir_ffi_redis_transient(int32_t rc);
/* weir:cdef:end */

/* ------------------------------------------------------------------------
 * C API (not for Lua): one checked-out connection at a time.
 * ------------------------------------------------------------------------ */
typedef struct weir_redis_conn weir_redis_conn;
struct redisReply;

/* Check out a connection (connecting when none is idle); the caller holds
 * a pool reference. WEIR_EAGAIN when max_size connections are in use. */
int weir_redis_acquire(weir_redis_pool *pool, weir_redis_conn **out,
                       char *err, size_t errlen);
/* Give k back. reusable = 0 closes it; so does any I/O error seen on it,
 * or replies still unread. */
void weir_redis_release(weir_redis_conn *k, int reusable);
/* Queue one command: argv[i] is argvlen[i] bytes (binary-safe, copied). */
int weir_redis_append(weir_redis_conn *k, int argc,
                      const char *const *argv,
                      const size_t *argvlen, char *err,
                      size_t errlen);
/* Send what is queued and read the next reply into *reply (free it with
 * hiredis's freeReplyObject). An error reply is a reply (WEIR_OK). */
int weir_redis_read(weir_redis_conn *k, struct redisReply **reply,
                    char *err, size_t errlen);
/* The status code for an error reply's text (WEIR_EAGAIN, WEIR_EPERM or
 * WEIR_ESQL). */
int weir_redis_error_code(const char *msg, size_t len);

/*
 * The classic-Lua-API functions of trusted weir.redis (they build Lua
 * tables per reply: one boundary crossing per command, not per value).
 * weir_connector_redis registers them as weir._native.redis.command and
 * .pipeline (connectors.h). Both take the pool (the weir_redis_pool * cdata
 * itself, from weir.redis's private state) and errmt,
 * the metatable for error objects (weir.errors'), and return nil, err on
 * failure, err = { code, message, transient, redis = "WRONGTYPE" | nil }.
 *
 * weir:native:begin
 * redis.command(pool, args, shape, errmt) -> result(s) | nil, err
 *     args: { cmd, arg... } of strings and numbers. shape 0: the reply;
 *     1 (SCAN): cursor, { {key=}... }; 2 (HSCAN): cursor,
 *     { {field=, value=}... }; 3 (XRANGE): { {id=, field=value...}... },
 *     last id (nil when empty).
 * redis.pipeline(pool, cmds, errmt) -> replies | nil, err
 *     cmds: array of args tables, sent over one connection (windows of
 *     1000); an error reply becomes an err object in its slot.
 * weir:native:end
 *
 * Replies: status and bulk strings -> strings, integers -> numbers, nil
 * -> lightuserdata NULL (json.null), arrays -> sequences. They raise only
 * on misuse (bad argument types) and on Lua memory errors; a checked-out
 * connection is then closed by a finalizer.
 */
extern const weir_connector_desc weir_connector_redis;

#endif
