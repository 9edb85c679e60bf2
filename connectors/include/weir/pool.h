/*
 * pool.h - the connection pool every network connector uses (pg.c,
 * redis.c): a process-wide registry of pools by connector and name,
 * reference-counted pools, idle connections reused most recently used
 * first, closed past their idle timeout (down to min_size) or their
 * lifetime, and checked on checkout (with a round trip when they were idle
 * longer than validate_after_ms). C only: not part of the FFI; each
 * connector keeps its own FFI options and translates them.
 *
 * Ownership: a pool is referenced by the registry (until it is replaced or
 * dropped), by each holder that got it from weir_pool_get, and by each
 * connection checked out of it; the last reference closes its idle
 * connections and frees it (weir_pool_class.free). A connector embeds
 * weir_pool as the first member of its pool and weir_pool_conn as the
 * first member of its connection, and casts back in its callbacks.
 *
 * One mutex guards the registry and every pool's counts and idle list.
 * Opening and checking a connection (network round trips) happen outside
 * it; closing one happens under it.
 */
#ifndef WEIR_POOL_H
#define WEIR_POOL_H

#include "weir/common.h"

#include <stddef.h>
#include <stdint.h>

typedef struct weir_pool weir_pool;
typedef struct weir_pool_conn weir_pool_conn;

/* The one set of pool options (what weir.yaml's pool: maps to). */
typedef struct {
    int32_t min_size;         /* kept open against the idle timeout; opened
                               * by weir_pool_fill */
    int32_t max_size;         /* at most this many open at once, >= 1 */
    double idle_timeout_ms;   /* > 0: idle this long: closed (while more
                               * than min_size are open); else never */
    double max_lifetime_ms;   /* > 0: this old: closed when given back or
                               * found idle; else never */
    double validate_after_ms; /* >= 0: idle at least this long: checked
                               * with a round trip on checkout; < 0 never */
} weir_pool_opts;

/* What a connector does for its pools; one static instance per connector,
 * which also keeps its pool names apart from other connectors'. */
typedef struct {
    /* Open a connection of p (calloc'ed with weir_pool_conn first):
     * WEIR_OK and *out, or a status with the reason in err. */
    int (*open)(weir_pool *p, weir_pool_conn **out, char *err,
                size_t errlen);
    /* 1 when the idle connection c is still usable (ping: make sure with
     * a round trip), else 0 and the pool closes it. */
    int (*check)(weir_pool_conn *c, int ping);
    /* Close and free c. */
    void (*close)(weir_pool_conn *c);
    /* Free what the connector allocated for p, and p itself (the pool
     * frees its name and connections first). */
    void (*free)(weir_pool *p);
} weir_pool_class;

struct weir_pool_conn {
    weir_pool *pool;
    double created, last_used; /* monotonic ms (clock.h) */
    weir_pool_conn *next;      /* in the idle list */
};

struct weir_pool {
    const weir_pool_class *cls;
    char *name;
    weir_pool_opts o;
    int refs;
    int retired;            /* not in the registry (any more) */
    int open, in_use, nidle;
    int64_t connects;       /* connections opened so far */
    int64_t dropped;        /* closed as broken, dead, expired, or failing
                             * their check (not for being retired) */
    weir_pool_conn *idle;   /* most recently used first */
    weir_pool *next;        /* every live pool */
};

/* Set up p (the connector allocated it, zeroed) for name: one reference,
 * the registry's once weir_pool_add puts it there. WEIR_EINVAL for bad
 * options (min_size < 0, max_size < 1, min_size > max_size), WEIR_ENOMEM;
 * on failure nothing is kept and the caller frees p. */
int weir_pool_init(weir_pool *p, const weir_pool_class *cls,
                   const char *name, const weir_pool_opts *o);
/* Register p under its name, retiring the pool registered there. */
void weir_pool_add(weir_pool *p);
/* The pool registered as name for cls, with a new reference; or NULL. */
weir_pool *weir_pool_get(const weir_pool_class *cls, const char *name);
void weir_pool_ref(weir_pool *p);
/* Drop one reference; the last closes and frees. NULL-safe. */
void weir_pool_unref(weir_pool *p);
/* Take p out of the registry (if there), close its idle connections (the
 * ones in use close when given back) and drop the registry's reference. */
void weir_pool_retire(weir_pool *p);
/* Retire the pool registered as name: WEIR_OK or WEIR_ENOENT. */
int weir_pool_drop(const weir_pool_class *cls, const char *name);
/* Retire every registered pool of cls. */
void weir_pool_drop_all(const weir_pool_class *cls);
/* Pools of cls alive: registered or still referenced. */
int weir_pool_live(const weir_pool_class *cls);

/* Open connections until min_size are open (idle). WEIR_OK, or the first
 * failure of cls->open. */
int weir_pool_fill(weir_pool *p, char *err, size_t errlen);
/* A connection of p: an idle one that passes its check, else a new one.
 * The caller holds a reference to p; the connection holds another until
 * given back. WEIR_ELIMIT when max_size are open and none is idle (err
 * untouched: the connector says it its way), else cls->open's status. */
int weir_pool_acquire(weir_pool *p, weir_pool_conn **out, char *err,
                      size_t errlen);
/* Give c back: kept idle when reuse is 1 and its pool is not retired and
 * it is not past its lifetime; otherwise closed. */
void weir_pool_release(weir_pool_conn *c, int reuse);

typedef struct {
    int32_t open, idle, in_use, retired;
    int64_t connects, dropped;
} weir_pool_stats;

void weir_pool_get_stats(weir_pool *p, weir_pool_stats *out);

#endif
