/*
 * pg.c - PostgreSQL through libpq: pools per process and connection name
 * (pool.h), a prepared-statement cache per connection, COPY in and out,
 * rows built in C. See pg.h for the contract; values go through pgcodec.h.
 *
 * Connections are blocking: a worker runs one attempt at a time, and a
 * statement that runs too long is ended from outside (statement_timeout,
 * or the attempt's SIGKILL; the server then drops the query on its own
 * within client_connection_check_interval, which lua/weir/pg.lua sets).
 */
#include "weir/pg.h"
#include "weir/clock.h"
#include "weir/pgbinary.h"
#include "weir/pgcodec.h"
#include "weir/pool.h"
#include "weir/pq.h"

#include <errno.h>
#include <lauxlib.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PG_CACHE_MAX 64
#define PG_COPY_CHUNK (256u << 10)
#define PG_MAX_COLS 1600        /* PostgreSQL's own column limit */

struct pg_stmt {
    char *sql;
    uint64_t hash;
    char name[24];
    int nparams;
    Oid *ptypes;
    uint64_t used;              /* cache clock when last used */
};

struct weir_pg_conn {
    weir_pool_conn base;        /* first: pool.h */
    PGconn *pg;
    weir_pg_pool *pool;
    int in_copy;                /* 1 copy out, 2 copy in */
    int copy_eof;               /* a COPY out ended inside the last batch */
    int in_rows;                /* a single-row-mode result is being read */
    int copy_binary;            /* the COPY in progress is FORMAT binary */
    int copy_header;            /* binary COPY out: header not yet seen */
    int copy_in_tx;             /* the COPY began inside a transaction */
    char *copy_text_sql;        /* binary COPY in: the same COPY in text */
    double copy_rows;           /* rows of COPYs ended by a switch to text */
    struct pg_stmt cache[PG_CACHE_MAX];
    int ncache;
    uint64_t clock, next_name;
    weir_buf copy_buf;
    uint64_t epoch;             /* the epoch it was last checked out in */
    PGresult *hold;             /* a result being turned into rows */
    char *hold_line;            /* a COPY line being turned into a row */
};

/* References, idle connections and the registry: pool.h. */
struct weir_pg_pool {
    weir_pool base;             /* first: pool.h */
    char **keys, **vals;
    int n;
    weir_pg_pool_opts o;
};

/* Attempts of a worker share its pools. Session state one attempt set
 * (SET, temporary tables, prepared statements of its own) must not reach
 * the next: a connection last used in another epoch is reset on checkout
 * (weir_ffi_pg_new_epoch starts one; weir.pg calls it when it loads, which
 * is once per attempt state). */
static uint64_t epoch = 1;

/* libpq's message without the trailing newline. */
static void conn_err(PGconn *pg, const char *what, char *err, size_t errlen)
{
    const char *m = pg ? PQerrorMessage(pg) : "out of memory";
    size_t n = strlen(m);

    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    weir_set_err(err, errlen, "%s: %.*s", what, (int)n, m);
}

static void stmt_free(struct pg_stmt *s)
{
    free(s->sql);
    free(s->ptypes);
    memset(s, 0, sizeof(*s));
}

/* A Lua error (out of memory) can leave a result or COPY line behind
 * while rows are built: free it on the connection's next use. */
static void drop_held(struct weir_pg_conn *c)
{
    if (c->hold) {
        PQclear(c->hold);
        c->hold = NULL;
    }
    if (c->hold_line) {
        PQfreemem(c->hold_line);
        c->hold_line = NULL;
    }
}

static void conn_close(struct weir_pg_conn *c)
{
    drop_held(c);
    for (int i = 0; i < c->ncache; i++)
        stmt_free(&c->cache[i]);
    weir_buf_free(&c->copy_buf);
    free(c->copy_text_sql);
    if (c->pg)
        PQfinish(c->pg);
    free(c);
}

static void pool_free(weir_pool *base)
{
    weir_pg_pool *p = (weir_pg_pool *)base;

    for (int i = 0; i < p->n; i++) {
        free(p->keys[i]);
        free(p->vals[i]);
    }
    free(p->keys);
    free(p->vals);
    free(p);
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int conn_open(weir_pool *base, weir_pool_conn **out, char *err,
                     size_t errlen)
{
    weir_pg_pool *p = (weir_pg_pool *)base;
    struct weir_pg_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return WEIR_ENOMEM;
    c->pg = PQconnectdbParams((const char *const *)p->keys,
                              (const char *const *)p->vals, 0);
    if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
        conn_err(c->pg, "cannot connect", err, errlen);
        conn_close(c);
        return WEIR_EIO;
    }
    /* NOTICEs (e.g. "already exists, skipping") are not errors */
    PQsetNoticeProcessor(c->pg, quiet, NULL);
    c->pool = p;
    c->epoch = epoch;
    *out = &c->base;
    return WEIR_OK;
}

static void stmt_free(struct pg_stmt *s);

/* A connection last used by another attempt: back to its starting state
 * (DISCARD ALL also drops prepared statements, so the cache goes too).
 * 1 when it is usable. */
static int conn_reset(struct weir_pg_conn *c)
{
    PGresult *r;
    int ok;

    if (c->epoch == epoch)
        return 1;
    r = PQexec(c->pg, "DISCARD ALL");
    ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    for (int i = 0; i < c->ncache; i++)
        stmt_free(&c->cache[i]);
    c->ncache = 0;
    c->epoch = epoch;
    return ok;
}

WEIR_API void weir_ffi_pg_new_epoch(void)
{
    epoch++;
}

/* Is the idle connection c still usable (ping: "SELECT 1" answers)? Then
 * reset when it was last used in another epoch. The pool has closed it
 * already when it was past its lifetime or idle timeout. */
static int conn_check(weir_pool_conn *base, int ping)
{
    struct weir_pg_conn *c = (struct weir_pg_conn *)base;
    struct pollfd pfd;

    if (PQstatus(c->pg) != CONNECTION_OK
        || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return 0;
    /* An idle connection has nothing to read: data or EOF means the
     * server said goodbye (a restart sends 57P01, then closes). */
    pfd.fd = PQsocket(c->pg);
    pfd.events = POLLIN;
    if (pfd.fd < 0 || poll(&pfd, 1, 0) != 0)
        return 0;
    if (ping) {
        PGresult *r = PQexec(c->pg, "SELECT 1");
        int ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;

        PQclear(r);
        if (!ok)
            return 0;
    }
    return conn_reset(c);
}

static void conn_free(weir_pool_conn *base)
{
    conn_close((struct weir_pg_conn *)base);
}

static const weir_pool_class pg_pools = {
    .open = conn_open,
    .check = conn_check,
    .close = conn_free,
    .free = pool_free,
};

static int same_config(const weir_pg_pool *p, const char *const *keys,
                       const char *const *vals, int n,
                       const weir_pg_pool_opts *o)
{
    if (p->n != n || memcmp(&p->o, o, sizeof(*o)) != 0)
        return 0;
    for (int i = 0; i < n; i++)
        if (strcmp(p->keys[i], keys[i]) != 0
            || strcmp(p->vals[i], vals[i] ? vals[i] : "") != 0)
            return 0;
    return 1;
}

WEIR_API int weir_ffi_pg_pool_set(const char *name, const char *const *keys,
                                  const char *const *vals, int32_t n,
                                  const weir_pg_pool_opts *o, char *err,
                                  size_t errlen)
{
    weir_pg_pool *p;
    weir_pool_opts po;
    int rc;

    if (name == NULL || o == NULL || n < 0
        || (n > 0 && (keys == NULL || vals == NULL)) || o->max_size < 1
        || o->min_size < 0 || o->min_size > o->max_size)
        return WEIR_EINVAL;
    if (weir_pq_load(err, errlen) != WEIR_OK)
        return WEIR_EIO;
    p = (weir_pg_pool *)weir_pool_get(&pg_pools, name);
    if (p != NULL) {
        rc = same_config(p, keys, vals, n, o);
        weir_pool_unref(&p->base);
        if (rc)
            return WEIR_OK;
    }
    po = (weir_pool_opts){ .min_size = o->min_size, .max_size = o->max_size,
                           .idle_timeout_ms = o->idle_timeout_ms,
                           .max_lifetime_ms = o->max_lifetime_ms,
                           .validate_after_ms = o->validate_after_ms };
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WEIR_ENOMEM;
    if ((rc = weir_pool_init(&p->base, &pg_pools, name, &po)) != WEIR_OK) {
        free(p);
        return rc;
    }
    p->o = *o;
    p->keys = calloc((size_t)n + 1, sizeof(char *));
    p->vals = calloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; p->keys != NULL && p->vals != NULL && i < n; i++) {
        p->keys[i] = strdup(keys[i]);
        p->vals[i] = strdup(vals[i] ? vals[i] : "");
        p->n = i + 1;
        if (p->keys[i] == NULL || p->vals[i] == NULL)
            break;
    }
    if (p->keys == NULL || p->vals == NULL
        || (n > 0 && (p->keys[n - 1] == NULL || p->vals[n - 1] == NULL))) {
        weir_pool_unref(&p->base);
        return WEIR_ENOMEM;
    }
    /* replaces the pool of other settings (its busy connections close
     * when released); one that cannot open min_size leaves none */
    weir_pool_add(&p->base);
    if ((rc = weir_pool_fill(&p->base, err, errlen)) != WEIR_OK) {
        weir_pool_retire(&p->base);
        return rc == WEIR_ELIMIT ? WEIR_EIO : rc;
    }
    return WEIR_OK;
}

/* A connection from p: an idle one that passes validation, else a new
 * one. WEIR_ELIMIT when max_size are in use; WEIR_EIO when connecting
 * failed (message in err). */
static int conn_acquire(weir_pg_pool *p, struct weir_pg_conn **out,
                        char *err, size_t errlen)
{
    weir_pool_conn *c;
    int rc = weir_pool_acquire(&p->base, &c, err, errlen);

    *out = (struct weir_pg_conn *)c;
    if (rc == WEIR_ELIMIT)
        weir_set_err(err, errlen,
                     "pool %s: all %d connections are in use (pool.max)",
                     p->base.name, p->o.max_size);
    else if (rc != WEIR_OK)
        rc = WEIR_EIO;
    return rc;
}

/* Give c back: kept for reuse only when reuse is 1 and it is healthy and
 * idle; otherwise a running statement is cancelled and c closed. */
static void conn_release(struct weir_pg_conn *c, int reuse)
{
    drop_held(c);
    if (!reuse || c->in_copy || c->in_rows || PQstatus(c->pg) != CONNECTION_OK
        || PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        /* a statement may still run: ask the server to stop it */
        if (PQstatus(c->pg) == CONNECTION_OK
            && PQtransactionStatus(c->pg) == PQTRANS_ACTIVE) {
            char buf[256];
            PGcancel *k = PQgetCancel(c->pg);

            if (k) {
                (void)PQcancel(k, buf, sizeof(buf));
                PQfreeCancel(k);
            }
        }
        reuse = 0;
    }
    weir_pool_release(&c->base, reuse);
}

/* sql (no parameters, one or more statements) with the simple query
 * protocol, rows discarded: WEIR_ESQL with "[SQLSTATE] message" in err, or
 * WEIR_ECLOSED when the connection is lost. */
static int conn_run(struct weir_pg_conn *c, const char *sql, char *err,
                    size_t errlen)
{
    PGresult *r;
    int rc = WEIR_OK;

    if (!PQsendQuery(c->pg, sql)) {
        conn_err(c->pg, "[08006] connection lost", err, errlen);
        return WEIR_ECLOSED;
    }
    while ((r = PQgetResult(c->pg)) != NULL) {
        ExecStatusType st = PQresultStatus(r);

        if (rc == WEIR_OK && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK
            && st != PGRES_EMPTY_QUERY) {
            const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

            if (code == NULL) {
                conn_err(c->pg, "[08006] connection lost", err, errlen);
                rc = WEIR_ECLOSED;
            } else {
                weir_set_err(err, errlen, "[%s] %s", code, msg ? msg : "");
                rc = WEIR_ESQL;
            }
        }
        PQclear(r);
    }
    if (rc == WEIR_OK && PQstatus(c->pg) != CONNECTION_OK) {
        conn_err(c->pg, "[08006] connection lost", err, errlen);
        rc = WEIR_ECLOSED;
    }
    return rc;
}

WEIR_API void weir_ffi_pg_pools_close(void)
{
    weir_pool_drop_all(&pg_pools);
}

/* ------------------------------------------------------------------------
 * Classic Lua API
 * ------------------------------------------------------------------------ */

/*
 * A connection Lua holds is a userdata of this metatable boxing the
 * pointer: pg_release (or the collector) empties the box, so a connection
 * given back can never be reached through it again.
 */
#define CONN_MT "weir.pg.conn"

static struct weir_pg_conn *arg_conn(lua_State *L)
{
    struct weir_pg_conn **box = luaL_checkudata(L, 1, CONN_MT);

    if (*box == NULL)
        luaL_error(L, "pg: connection not acquired (released already)");
    drop_held(*box);
    return *box;
}

/* pg_acquire(pool_name) -> conn | nil, status, message */
static int l_release(lua_State *L);

static int l_acquire(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    struct weir_pg_conn **box;
    weir_pg_pool *p;
    char err[1024] = "";
    int rc;

    /* the box first: once acquired, nothing may raise before it holds c */
    box = lua_newuserdata(L, sizeof(*box));
    *box = NULL;
    if (luaL_newmetatable(L, CONN_MT)) {
        /* first acquire in this state */
        lua_pushcfunction(L, l_release);
        lua_setfield(L, -2, "__gc");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    p = (weir_pg_pool *)weir_pool_get(&pg_pools, name);
    if (p == NULL) {
        weir_set_err(err, sizeof(err), "pool %s: not configured", name);
        rc = WEIR_ENOENT;
    } else {
        rc = conn_acquire(p, box, err, sizeof(err));
        weir_pool_unref(&p->base); /* a connection holds its own */
    }
    if (rc == WEIR_OK)
        return 1;
    lua_pushnil(L);
    lua_pushinteger(L, rc);
    lua_pushstring(L, err);
    return 3;
}

/* pg_release(conn, reuse): give it back (safe twice); __gc with reuse 0 */
static int l_release(lua_State *L)
{
    struct weir_pg_conn **box = luaL_checkudata(L, 1, CONN_MT);
    struct weir_pg_conn *c = *box;

    *box = NULL;
    if (c != NULL)
        conn_release(c, lua_toboolean(L, 2));
    return 0;
}

/* pg_run(conn, sql): raises "[SQLSTATE] message" */
static int l_run(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    const char *sql = luaL_checkstring(L, 2);
    char err[1024];

    if (conn_run(c, sql, err, sizeof(err)) != WEIR_OK) {
        lua_pushstring(L, err);
        return lua_error(L);
    }
    return 0;
}

/* pg_txstatus(conn) -> "idle" | "active" | "intrans" | "inerror" |
 * "unknown" (libpq's transaction status) */
static int l_txstatus(lua_State *L)
{
    static const char *const names[] = { "idle", "active", "intrans",
                                         "inerror", "unknown" };
    int st = (int)PQtransactionStatus(arg_conn(L)->pg);

    lua_pushstring(L, names[st >= 0 && st < 5 ? st : 4]);
    return 1;
}

/* Raise "[SQLSTATE] message" for r (cleared) or the connection's error. */
static int raise_result(lua_State *L, struct weir_pg_conn *c, PGresult *r)
{
    char msg[1024];
    const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    if (code != NULL) {
        const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        const char *d = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);

        snprintf(msg, sizeof(msg), "[%s] %s%s%s", code, m ? m : "",
                 d ? " (" : "", d ? d : "");
        if (d)
            strncat(msg, ")", sizeof(msg) - strlen(msg) - 1);
    } else {
        conn_err(c->pg, "[08006] connection lost", msg, sizeof(msg));
    }
    PQclear(r);
    /* drain what follows so the connection state is known */
    while ((r = PQgetResult(c->pg)) != NULL)
        PQclear(r);
    lua_pushstring(L, msg);
    return lua_error(L);
}

static uint64_t hash_sql(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The cached prepared statement for sql, preparing it on a miss. */
static struct pg_stmt *stmt_get(lua_State *L, struct weir_pg_conn *c,
                                const char *sql, size_t n)
{
    uint64_t h = hash_sql(sql, n);
    struct pg_stmt *s = NULL;
    PGresult *r;
    int i;

    for (i = 0; i < c->ncache; i++)
        if (c->cache[i].hash == h && strcmp(c->cache[i].sql, sql) == 0) {
            c->cache[i].used = ++c->clock;
            return &c->cache[i];
        }
    if (c->ncache < PG_CACHE_MAX) {
        s = &c->cache[c->ncache++];
    } else {
        char dealloc[48];

        s = &c->cache[0];
        for (i = 1; i < c->ncache; i++)
            if (c->cache[i].used < s->used)
                s = &c->cache[i];
        snprintf(dealloc, sizeof(dealloc), "DEALLOCATE %s", s->name);
        PQclear(PQexec(c->pg, dealloc));
        stmt_free(s);
    }
    snprintf(s->name, sizeof(s->name), "weir_%llu",
             (unsigned long long)++c->next_name);
    r = PQprepare(c->pg, s->name, sql, 0, NULL);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
        /* drop the slot: the last entry takes its place */
        *s = c->cache[--c->ncache];
        memset(&c->cache[c->ncache], 0, sizeof(*s));
        return raise_result(L, c, r), NULL;
    }
    PQclear(r);
    r = PQdescribePrepared(c->pg, s->name);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
        *s = c->cache[--c->ncache];
        memset(&c->cache[c->ncache], 0, sizeof(*s));
        return raise_result(L, c, r), NULL;
    }
    s->nparams = PQnparams(r);
    s->ptypes = calloc((size_t)s->nparams + 1, sizeof(Oid));
    s->sql = strdup(sql);
    if (s->ptypes == NULL || s->sql == NULL) {
        PQclear(r);
        stmt_free(s);
        luaL_error(L, "pg: out of memory");
    }
    for (i = 0; i < s->nparams; i++)
        s->ptypes[i] = PQparamtype(r, i);
    PQclear(r);
    s->hash = h;
    s->used = ++c->clock;
    return s;
}

/* Push names (array) and oids (array) of r's columns. */
static void push_columns(lua_State *L, PGresult *r)
{
    int nf = PQnfields(r);

    lua_createtable(L, nf, 0);
    for (int j = 0; j < nf; j++) {
        lua_pushstring(L, PQfname(r, j));
        lua_rawseti(L, -2, j + 1);
    }
    lua_createtable(L, nf, 0);
    for (int j = 0; j < nf; j++) {
        lua_pushnumber(L, (lua_Number)PQftype(r, j));
        lua_rawseti(L, -2, j + 1);
    }
}

/* Push the rows of r as an array of tables keyed by name; names at nidx. */
static void push_rows(lua_State *L, struct weir_pg_conn *c, PGresult *r,
                      int nidx)
{
    int nt = PQntuples(r), nf = PQnfields(r);
    char err[256];
    Oid oids[PG_MAX_COLS];

    if (nf > PG_MAX_COLS) {
        if (c->hold == r)
            c->hold = NULL;
        PQclear(r);
        luaL_error(L, "a result of %d columns is more than %d", nf,
                   PG_MAX_COLS);
    }
    for (int j = 0; j < nf; j++)
        oids[j] = PQftype(r, j);
    c->hold = r; /* freed on the next call if building the rows raises */
    lua_createtable(L, nt, 0);
    for (int i = 0; i < nt; i++) {
        lua_createtable(L, 0, nf);
        for (int j = 0; j < nf; j++) {
            int rc;

            lua_rawgeti(L, nidx, j + 1);
            rc = weir_pgcodec_push(L, oids[j],
                                   PQgetisnull(r, i, j) ? NULL
                                                        : PQgetvalue(r, i, j),
                                   (size_t)PQgetlength(r, i, j), err,
                                   sizeof(err));
            if (rc != WEIR_OK) {
                c->hold = NULL;
                PQclear(r);
                luaL_error(L, "column %s: %s", lua_tostring(L, -1), err);
            }
            lua_rawset(L, -3);
        }
        lua_rawseti(L, -2, i + 1);
    }
    c->hold = NULL;
}

/*
 * The np parameters at stack index 3, encoded as text for statement s's
 * parameter types into b (the caller frees it); returns the value
 * pointers (in a userdata left on the stack), NULL for SQL NULL.
 */
static const char **bind_params(lua_State *L, struct pg_stmt *s, int np,
                                weir_buf *b)
{
    const char **vals;
    size_t *offs;
    char err[256];

    if (np != s->nparams)
        luaL_error(L, "expected %d parameter(s), got %d", s->nparams, np);
    vals = lua_newuserdata(L, (size_t)np * (sizeof(char *) + sizeof(size_t)));
    offs = (size_t *)(void *)(vals + np);
    for (int i = 0; i < np; i++) {
        int rc;

        lua_rawgeti(L, 3, i + 1);
        offs[i] = b->len;
        rc = weir_pgcodec_encode(L, lua_gettop(L), s->ptypes[i], 0, b, err,
                                 sizeof(err));
        lua_pop(L, 1);
        if (rc == WEIR_ENOENT) {
            offs[i] = (size_t)-1;
            continue;
        }
        if (rc == WEIR_OK)
            rc = weir_buf_reserve(b, 1);
        if (rc != WEIR_OK) {
            weir_buf_free(b);
            luaL_error(L, "parameter $%d: %s", i + 1,
                       rc == WEIR_ENOMEM ? "out of memory" : err);
        }
        b->data[b->len++] = '\0';
    }
    for (int i = 0; i < np; i++)
        vals[i] = offs[i] == (size_t)-1 ? NULL : b->data + offs[i];
    return vals;
}

/* pg_exec(conn, sql, params, nparams) -> affected, rows|nil, names|nil */
static int l_exec(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    size_t sqln;
    const char *sql = luaL_checklstring(L, 2, &sqln);
    int np = (int)luaL_optinteger(L, 4, 0);
    PGresult *r;
    ExecStatusType st;

    if (np > 0) {
        struct pg_stmt *s = stmt_get(L, c, sql, sqln);
        weir_buf b = { 0 };
        const char **vals = bind_params(L, s, np, &b);

        r = PQexecPrepared(c->pg, s->name, np, vals, NULL, NULL, 0);
        weir_buf_free(&b);
    } else {
        r = PQexecParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
    }
    st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return raise_result(L, c, r);
    lua_pushnumber(L, (lua_Number)strtod(PQcmdTuples(r), NULL));
    if (st == PGRES_TUPLES_OK) {
        size_t size = PQresultMemorySize(r);
        int top;

        if (c->pool->o.max_result_bytes > 0
            && size > (size_t)c->pool->o.max_result_bytes) {
            char msg[200];

            PQclear(r);
            snprintf(msg, sizeof(msg), "result of %zu bytes exceeds the limit "
                     "of %lld bytes (max_result); stream it with query() "
                     "instead", size,
                     (long long)c->pool->o.max_result_bytes);
            lua_pushstring(L, msg);
            return lua_error(L);
        }
        c->hold = r;
        push_columns(L, r);
        lua_pop(L, 1);
        top = lua_gettop(L);
        push_rows(L, c, r, top);
        lua_insert(L, -2);
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    PQclear(r);
    return 3;
}

/* pg_rows_begin(conn, sql, params, nparams): send the statement and read
 * its result one row at a time (libpq's single-row mode): any statement
 * that returns rows, DML with RETURNING included, in constant memory. */
static int l_rows_begin(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    size_t sqln;
    const char *sql = luaL_checklstring(L, 2, &sqln);
    int np = (int)luaL_optinteger(L, 4, 0);
    struct pg_stmt *s = stmt_get(L, c, sql, sqln);
    weir_buf b = { 0 };
    const char **vals = bind_params(L, s, np, &b);
    int ok = PQsendQueryPrepared(c->pg, s->name, np, vals, NULL, NULL, 0);

    weir_buf_free(&b);
    if (!ok)
        return raise_result(L, c, NULL);
    if (!PQsetSingleRowMode(c->pg))
        return luaL_error(L, "pg: cannot read rows one at a time");
    c->in_rows = 1;
    return 0;
}

/* pg_rows_batch(conn, max, names) -> rows | nil at the end */
static int l_rows_batch(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    int max = (int)luaL_checkinteger(L, 2);
    int n = 0;

    if (!c->in_rows) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, max, 0);
    while (n < max) {
        PGresult *r = PQgetResult(c->pg);
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_COMMAND_OK;

        if (st == PGRES_SINGLE_TUPLE) {
            push_rows(L, c, r, 3);
            lua_rawgeti(L, -1, 1);
            lua_remove(L, -2);
            lua_rawseti(L, -2, ++n);
            PQclear(r);
            continue;
        }
        c->in_rows = 0;
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
            return raise_result(L, c, r);
        PQclear(r);
        while ((r = PQgetResult(c->pg)) != NULL)
            PQclear(r);
        break;
    }
    if (n == 0) {
        lua_pushnil(L);
        return 1;
    }
    return 1;
}

/* pg_describe(conn, sql) -> names, oids, nparams, typmods */
static int l_describe(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    size_t n;
    const char *sql = luaL_checklstring(L, 2, &n);
    struct pg_stmt *s = stmt_get(L, c, sql, n);
    PGresult *r = PQdescribePrepared(c->pg, s->name);

    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
        return raise_result(L, c, r);
    c->hold = r;
    push_columns(L, r);
    lua_pushinteger(L, s->nparams);
    lua_createtable(L, PQnfields(r), 0);
    for (int j = 0; j < PQnfields(r); j++) {
        lua_pushinteger(L, PQfmod(r, j));
        lua_rawseti(L, -2, j + 1);
    }
    drop_held(c);
    return 4;
}

static void copy_begin(lua_State *L, struct weir_pg_conn *c, int want)
{
    const char *sql = luaL_checkstring(L, 2);
    int in_tx = PQtransactionStatus(c->pg) == PQTRANS_INTRANS;
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;

    if (st != (ExecStatusType)want) {
        if (st == PGRES_COPY_OUT || st == PGRES_COPY_IN) {
            PQclear(r);
            luaL_error(L, "pg: unexpected COPY direction");
        }
        raise_result(L, c, r);
    }
    c->copy_binary = PQbinaryTuples(r);
    PQclear(r);
    c->in_copy = want == PGRES_COPY_OUT ? 1 : 2;
    c->copy_eof = 0;
    c->copy_header = c->copy_binary;
    c->copy_in_tx = in_tx;
    c->copy_rows = 0;
    free(c->copy_text_sql);
    c->copy_text_sql = NULL;
    if (c->copy_binary && want == PGRES_COPY_IN) {
        c->copy_buf.len = 0;
        if (weir_pgbinary_header(&c->copy_buf) != WEIR_OK)
            luaL_error(L, "pg: out of memory");
    }
}

static int l_copy_out_begin(lua_State *L)
{
    copy_begin(L, arg_conn(L), PGRES_COPY_OUT);
    return 0;
}

/* Read the oids array at idx into out[ncols]. */
static void get_oids(lua_State *L, int idx, int ncols, Oid *out)
{
    for (int j = 0; j < ncols; j++) {
        lua_rawgeti(L, idx, j + 1);
        out[j] = (Oid)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
}

/* pg_copy_out_batch(conn, max, names, oids) -> rows | nil */
static int l_copy_out_batch(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    int max = (int)luaL_checkinteger(L, 2);
    int ncols = (int)lua_objlen(L, 3);
    Oid oids[PG_MAX_COLS];
    char err[256];
    int n = 0;

    if (c->in_copy != 1) {
        if (c->copy_eof) {
            c->copy_eof = 0;
            lua_pushnil(L);
            return 1;
        }
        return luaL_error(L, "pg: no COPY TO STDOUT in progress");
    }
    if (ncols > PG_MAX_COLS)
        return luaL_error(L, "pg: too many columns");
    get_oids(L, 4, ncols, oids);
    lua_createtable(L, max, 0);
    while (n < max) {
        char *line = NULL;
        int len = PQgetCopyData(c->pg, &line, 0);
        int rc;

        if (len == -1) {
            PGresult *r = PQgetResult(c->pg);

            c->in_copy = 0;
            if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
                return raise_result(L, c, r);
            PQclear(r);
            while ((r = PQgetResult(c->pg)) != NULL)
                PQclear(r);
            if (n == 0) {
                lua_pushnil(L);
                return 1;
            }
            c->copy_eof = 1;
            break;
        }
        if (len < 0) {
            c->in_copy = 0;
            return raise_result(L, c, PQgetResult(c->pg));
        }
        c->hold_line = line; /* freed on the next call if decoding raises */
        if (c->copy_binary) {
            const char *row = line;
            size_t rl = (size_t)len;

            if (c->copy_header) {
                /* the file header comes with the first tuple */
                size_t h = weir_pgbinary_header_len(line, rl);

                if (h == 0)
                    return luaL_error(L, "pg: bad binary COPY header");
                row += h;
                rl -= h;
                c->copy_header = 0;
            }
            rc = weir_pgbinary_copy_row(L, row, rl, ncols, oids, 3, err,
                                        sizeof(err));
            if (rc == WEIR_ENOENT) { /* the trailer: -1 comes next */
                drop_held(c);
                continue;
            }
        } else {
            rc = weir_pgcodec_copy_row(L, line, (size_t)len, ncols, oids, 3,
                                       err, sizeof(err));
        }
        drop_held(c);
        if (rc != WEIR_OK)
            return luaL_error(L, "row %d: %s", n + 1, err);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* pg_copy_in_begin(conn, copy_sql, text_sql|nil): text_sql is the same
 * COPY in text format, for when a binary COPY meets a value only the text
 * form takes (weir_pgbinary_encode_row says WEIR_EAGAIN). */
static int l_copy_in_begin(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    const char *text_sql = luaL_optstring(L, 3, NULL);

    copy_begin(L, c, PGRES_COPY_IN);
    if (text_sql != NULL && (c->copy_text_sql = strdup(text_sql)) == NULL)
        return luaL_error(L, "pg: out of memory");
    return 0;
}

static int put_copy(lua_State *L, struct weir_pg_conn *c, weir_buf *b)
{
    if (b->len > 0 && PQputCopyData(c->pg, b->data, (int)b->len) != 1) {
        c->in_copy = 0;
        b->len = 0;
        return raise_result(L, c, NULL);
    }
    b->len = 0;
    return 0;
}

/* A value needs text COPY: end the binary COPY (every row sent so far is
 * whole) and go on with the same COPY in text, in the same transaction. */
static void copy_in_switch(lua_State *L, struct weir_pg_conn *c, weir_buf *b)
{
    PGresult *r;

    if (!c->copy_in_tx || c->copy_text_sql == NULL) {
        b->len = 0;
        luaL_error(L, "pg: a value needs text COPY, and this binary COPY "
                   "cannot switch outside a transaction");
    }
    if (weir_pgbinary_trailer(b) != WEIR_OK)
        luaL_error(L, "pg: out of memory");
    put_copy(L, c, b);
    if (PQputCopyEnd(c->pg, NULL) != 1) {
        c->in_copy = 0;
        raise_result(L, c, NULL);
    }
    r = PQgetResult(c->pg);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
        c->in_copy = 0;
        raise_result(L, c, r);
    }
    c->copy_rows += strtod(PQcmdTuples(r), NULL);
    PQclear(r);
    while ((r = PQgetResult(c->pg)) != NULL)
        PQclear(r);
    r = PQexec(c->pg, c->copy_text_sql);
    if (r == NULL || PQresultStatus(r) != PGRES_COPY_IN) {
        c->in_copy = 0;
        raise_result(L, c, r);
    }
    PQclear(r);
    c->copy_binary = 0;
}

/* pg_copy_in_batch(conn, rows, names, oids, first, last) -> bytes */
static int l_copy_in_batch(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    int ncols = (int)lua_objlen(L, 3);
    int first = (int)luaL_checkinteger(L, 5), last = (int)luaL_checkinteger(L, 6);
    Oid oids[PG_MAX_COLS];
    weir_buf *b = &c->copy_buf;
    char err[256];
    double bytes = 0;

    if (c->in_copy != 2)
        return luaL_error(L, "pg: no COPY FROM STDIN in progress");
    if (ncols > PG_MAX_COLS)
        return luaL_error(L, "pg: too many columns");
    luaL_checktype(L, 2, LUA_TTABLE);
    get_oids(L, 4, ncols, oids);
    for (int i = first; i <= last; i++) {
        int rc;

        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1))
            return luaL_error(L, "row %d: not a table", i);
        rc = WEIR_EAGAIN; /* text, unless binary takes the row */
        if (c->copy_binary) {
            rc = weir_pgbinary_encode_row(L, lua_gettop(L), ncols, 3, oids, b,
                                          err, sizeof(err));
            if (rc == WEIR_EAGAIN)
                copy_in_switch(L, c, b);
        }
        if (rc == WEIR_EAGAIN)
            rc = weir_pgcodec_copy_encode_row(L, lua_gettop(L), ncols, 3, oids,
                                              b, err, sizeof(err));
        lua_pop(L, 1);
        if (rc != WEIR_OK) {
            b->len = 0;
            return luaL_error(L, "row %d: %s", i, err);
        }
        if (b->len >= PG_COPY_CHUNK) {
            bytes += (double)b->len;
            put_copy(L, c, b);
        }
    }
    bytes += (double)b->len;
    put_copy(L, c, b);
    lua_pushnumber(L, bytes);
    return 1;
}

/* pg_copy_in_file(conn, fd) -> true | nil, message: the bytes of the
 * open file fd, to its end, sent as they are (a CSV file's bytes). A read
 * error is returned (the file's fault, not the connection's). */
static int l_copy_in_file(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    int fd = (int)luaL_checkinteger(L, 2);
    weir_buf *b = &c->copy_buf;
    ssize_t n;

    if (c->in_copy != 2 || c->copy_binary)
        return luaL_error(L, "pg: no text COPY FROM STDIN in progress");
    put_copy(L, c, b); /* nothing is held in text COPY: to be sure */
    if (weir_buf_reserve(b, PG_COPY_CHUNK) != WEIR_OK)
        return luaL_error(L, "pg: out of memory");
    for (;;) {
        do
            n = read(fd, b->data, PG_COPY_CHUNK);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "read failed: %s", strerror(errno));
            return 2;
        }
        if (n == 0)
            break;
        b->len = (size_t)n;
        put_copy(L, c, b);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* pg_copy_in_end(conn, abort_message|nil) -> rows loaded */
static int l_copy_in_end(lua_State *L)
{
    struct weir_pg_conn *c = arg_conn(L);
    const char *abort_msg = luaL_optstring(L, 2, NULL);
    PGresult *r;

    if (c->in_copy != 2)
        return luaL_error(L, "pg: no COPY FROM STDIN in progress");
    if (c->copy_binary && abort_msg == NULL
        && weir_pgbinary_trailer(&c->copy_buf) != WEIR_OK)
        return luaL_error(L, "pg: out of memory");
    if (abort_msg == NULL)
        put_copy(L, c, &c->copy_buf); /* may still hold the header */
    c->copy_buf.len = 0;
    c->in_copy = 0;
    if (PQputCopyEnd(c->pg, abort_msg) != 1)
        return raise_result(L, c, NULL);
    r = PQgetResult(c->pg);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
        return raise_result(L, c, r);
    lua_pushnumber(L, c->copy_rows + strtod(PQcmdTuples(r), NULL));
    PQclear(r);
    while ((r = PQgetResult(c->pg)) != NULL)
        PQclear(r);
    return 1;
}

/* pg_binary_ok(oids) -> true when every type has a binary COPY form */
static int l_binary_ok(lua_State *L)
{
    int n = (int)lua_objlen(L, 1);
    Oid oids[PG_MAX_COLS];

    luaL_checktype(L, 1, LUA_TTABLE);
    if (n > PG_MAX_COLS)
        n = 0;
    get_oids(L, 1, n, oids);
    lua_pushboolean(L, n > 0 && weir_pgbinary_all_supported(n, oids));
    return 1;
}

static const luaL_Reg pg_natives[] = {
    { "pg_acquire", l_acquire },
    { "pg_release", l_release },
    { "pg_run", l_run },
    { "pg_txstatus", l_txstatus },
    { "pg_exec", l_exec },
    { "pg_describe", l_describe },
    { "pg_copy_out_begin", l_copy_out_begin },
    { "pg_copy_out_batch", l_copy_out_batch },
    { "pg_copy_in_begin", l_copy_in_begin },
    { "pg_copy_in_batch", l_copy_in_batch },
    { "pg_copy_in_file", l_copy_in_file },
    { "pg_binary_ok", l_binary_ok },
    { "pg_rows_begin", l_rows_begin },
    { "pg_rows_batch", l_rows_batch },
    { "pg_copy_in_end", l_copy_in_end },
    { NULL, NULL },
};

/* Workers of a run with a PostgreSQL connection load libpq before their
 * seccomp filter closes open() (pq.h). */
const weir_connector_desc weir_connector_pg = {
    .name = "pg",
    .natives = pg_natives,
    .preload_bit = WEIR_PRELOAD_LIBPQ,
    .preload = weir_pq_load,
};
