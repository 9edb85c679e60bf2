/*
 * sqlite.c - the SQLite primitive behind the metadata store and the SQLite
 * connector. Pass-through to the SQLite C API with weir status codes and
 * caller-provided error buffers. Relies on libsqlite3 (serialized or
 * multi-thread mode; each handle is used by one thread).
 */
#include "weir/sqlite.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>

struct weir_db {
    sqlite3 *h;
};

struct weir_stmt {
    sqlite3_stmt *h;
    sqlite3 *db;
};

/*
 * Task code writes SQL, so every handle is hardened: defensive mode (no
 * writable_schema tricks, no shadow-table writes), untrusted schema, no
 * loadable extensions, and the fts3_tokenizer() function refused (with a
 * second argument it registers a pointer of the caller's choosing as a
 * tokenizer: native code execution; with one it leaks an address).
 */
static int authorize(void *ud, int action, const char *a, const char *b,
                     const char *db, const char *trigger)
{
    (void)ud;
    (void)a;
    (void)db;
    (void)trigger;
    if (action == SQLITE_FUNCTION && b != NULL &&
        sqlite3_stricmp(b, "fts3_tokenizer") == 0)
        return SQLITE_DENY;
    return SQLITE_OK;
}

static void harden(sqlite3 *h)
{
    sqlite3_db_config(h, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(h, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, NULL);
    sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
    sqlite3_set_authorizer(h, authorize, NULL);
}

static int fail(sqlite3 *db, int rc, char *err, size_t errlen)
{
    weir_set_err(err, errlen, "sqlite: %s",
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return WEIR_EAGAIN;
    if (rc == SQLITE_NOMEM)
        return WEIR_ENOMEM;
    if (rc == SQLITE_CANTOPEN)
        return WEIR_ENOENT;
    return WEIR_ESQL;
}

WEIR_API int weir_ffi_db_open(const char *path, int32_t create,
                              int32_t readonly, int32_t busy_ms,
                              weir_db **out, char *err, size_t errlen)
{
    int flags = SQLITE_OPEN_NOMUTEX;
    sqlite3 *h = NULL;
    weir_db *db;
    int rc;

    *out = NULL;
    flags |= readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (create && !readonly)
        flags |= SQLITE_OPEN_CREATE;
    rc = sqlite3_open_v2(path, &h, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = fail(h, rc, err, errlen);
        sqlite3_close(h);
        return rc;
    }
    sqlite3_busy_timeout(h, busy_ms);
    sqlite3_extended_result_codes(h, 1);
    harden(h);
    db = malloc(sizeof *db);
    if (db == NULL) {
        sqlite3_close(h);
        weir_set_err(err, errlen, "sqlite: out of memory");
        return WEIR_ENOMEM;
    }
    db->h = h;
    *out = db;
    return WEIR_OK;
}

WEIR_API void weir_ffi_db_keep_wal(weir_db *db)
{
    sqlite3_db_config(db->h, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
}

WEIR_API void weir_ffi_db_close(weir_db *db)
{
    if (db == NULL)
        return;
    /* close_v2: statements still alive keep the connection as a zombie
     * until they are finalized, so finalizers may run in any order. */
    sqlite3_close_v2(db->h);
    free(db);
}

WEIR_API int weir_ffi_db_exec(weir_db *db, const char *sql, char *err,
                              size_t errlen)
{
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? WEIR_OK : fail(db->h, rc, err, errlen);
}

WEIR_API int weir_ffi_db_prepare(weir_db *db, const char *sql, size_t len,
                                 weir_stmt **out, char *err, size_t errlen)
{
    sqlite3_stmt *h = NULL, *more = NULL;
    const char *tail = NULL;
    weir_stmt *st;
    int rc;

    *out = NULL;
    rc = sqlite3_prepare_v2(db->h, sql, (int)len, &h, &tail);
    if (rc != SQLITE_OK)
        return fail(db->h, rc, err, errlen);
    if (h == NULL) {
        weir_set_err(err, errlen, "sqlite: empty statement");
        return WEIR_EINVAL;
    }
    /* One statement per call: a second one would be silently ignored. */
    if (tail != NULL && tail < sql + len) {
        rc = sqlite3_prepare_v2(db->h, tail, (int)(sql + len - tail), &more,
                                NULL);
        sqlite3_finalize(more);
        if (rc != SQLITE_OK || more != NULL) {
            sqlite3_finalize(h);
            weir_set_err(err, errlen, "sqlite: one statement per call "
                         "(more SQL follows the first statement)");
            return WEIR_EINVAL;
        }
    }
    st = malloc(sizeof *st);
    if (st == NULL) {
        sqlite3_finalize(h);
        weir_set_err(err, errlen, "sqlite: out of memory");
        return WEIR_ENOMEM;
    }
    st->h = h;
    st->db = db->h;
    *out = st;
    return WEIR_OK;
}

sqlite3_stmt *weir_stmt_handle(weir_stmt *st)
{
    return st->h;
}

WEIR_API void weir_ffi_db_finalize(weir_stmt *st)
{
    if (st == NULL)
        return;
    sqlite3_finalize(st->h);
    free(st);
}

WEIR_API int weir_ffi_db_bind_null(weir_stmt *st, int32_t i)
{
    return sqlite3_bind_null(st->h, i) == SQLITE_OK ? WEIR_OK : WEIR_EINVAL;
}

WEIR_API int weir_ffi_db_bind_int64(weir_stmt *st, int32_t i, int64_t v)
{
    return sqlite3_bind_int64(st->h, i, v) == SQLITE_OK ? WEIR_OK
                                                        : WEIR_EINVAL;
}

WEIR_API int weir_ffi_db_bind_double(weir_stmt *st, int32_t i, double v)
{
    return sqlite3_bind_double(st->h, i, v) == SQLITE_OK ? WEIR_OK
                                                         : WEIR_EINVAL;
}

WEIR_API int weir_ffi_db_bind_text(weir_stmt *st, int32_t i, const char *s,
                                   size_t len)
{
    return sqlite3_bind_text64(st->h, i, s, len, SQLITE_TRANSIENT,
                               SQLITE_UTF8) == SQLITE_OK ? WEIR_OK
                                                         : WEIR_EINVAL;
}

WEIR_API int weir_ffi_db_bind_blob(weir_stmt *st, int32_t i, const char *s,
                                   size_t len)
{
    return sqlite3_bind_blob64(st->h, i, s, len, SQLITE_TRANSIENT)
        == SQLITE_OK ? WEIR_OK : WEIR_EINVAL;
}

WEIR_API int32_t weir_ffi_db_bind_count(weir_stmt *st)
{
    return sqlite3_bind_parameter_count(st->h);
}

WEIR_API int weir_ffi_db_step(weir_stmt *st, char *err, size_t errlen)
{
    int rc = sqlite3_step(st->h);

    if (rc == SQLITE_ROW)
        return WEIR_SQL_ROW;
    if (rc == SQLITE_DONE)
        return WEIR_SQL_DONE;
    rc = fail(st->db, rc, err, errlen);
    sqlite3_reset(st->h);
    return rc;
}

WEIR_API void weir_ffi_db_reset(weir_stmt *st)
{
    sqlite3_reset(st->h);
    sqlite3_clear_bindings(st->h);
}

WEIR_API int32_t weir_ffi_db_column_count(weir_stmt *st)
{
    return sqlite3_column_count(st->h);
}

WEIR_API const char *weir_ffi_db_column_name(weir_stmt *st, int32_t i)
{
    const char *n = sqlite3_column_name(st->h, i);

    return n ? n : "";
}

WEIR_API int32_t weir_ffi_db_column_type(weir_stmt *st, int32_t i)
{
    return sqlite3_column_type(st->h, i);
}

WEIR_API int64_t weir_ffi_db_column_int64(weir_stmt *st, int32_t i)
{
    return sqlite3_column_int64(st->h, i);
}

WEIR_API double weir_ffi_db_column_double(weir_stmt *st, int32_t i)
{
    return sqlite3_column_double(st->h, i);
}

WEIR_API const char *weir_ffi_db_column_bytes(weir_stmt *st, int32_t i,
                                              size_t *len)
{
    const char *p;

    if (sqlite3_column_type(st->h, i) == SQLITE_BLOB)
        p = sqlite3_column_blob(st->h, i);
    else
        p = (const char *)sqlite3_column_text(st->h, i);
    *len = (size_t)sqlite3_column_bytes(st->h, i);
    return p ? p : "";
}

WEIR_API int64_t weir_ffi_db_changes(weir_db *db)
{
    return sqlite3_changes64(db->h);
}

WEIR_API int64_t weir_ffi_db_last_rowid(weir_db *db)
{
    return sqlite3_last_insert_rowid(db->h);
}

/* ------------------------------------------------ background checkpoints */

struct weir_checkpointer {
    sqlite3 *h;
    int32_t interval_ms;
    int last_log; /* WAL frames at the last turn */
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
};

/* Past this many frames (16 MB of 4 KB pages) a fully checkpointed WAL
 * is truncated: otherwise it keeps its largest size, and every open reads
 * it whole to rebuild its index. */
#define WAL_FOLD_FRAMES 4096

/* One turn: copy what the WAL holds into the database without making
 * writers wait (busy or locked: the next turn tries again). When the WAL
 * is large, all copied, and nothing was written since the last turn (the
 * server is idle), truncate it: truncating holds the writers' lock while
 * it syncs, which under load would stall commits for a long moment. */
static void checkpoint_once(weir_checkpointer *c)
{
    int log = 0, done = 0;

    if (sqlite3_wal_checkpoint_v2(c->h, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
                                  &done) != SQLITE_OK)
        return;
    if (log > WAL_FOLD_FRAMES && done == log && log == c->last_log) {
        sqlite3_busy_timeout(c->h, 0);
        if (sqlite3_wal_checkpoint_v2(c->h, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                      &log, &done) == SQLITE_OK)
            log = 0;
        sqlite3_busy_timeout(c->h, 100);
    }
    c->last_log = log;
}

static void *checkpoint_loop(void *arg)
{
    weir_checkpointer *c = arg;

    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec at;

        clock_gettime(CLOCK_REALTIME, &at);
        at.tv_sec += c->interval_ms / 1000;
        at.tv_nsec += (long)(c->interval_ms % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &at);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->mu);
        checkpoint_once(c);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

WEIR_API int weir_ffi_db_checkpointer_start(const char *path,
                                            int32_t interval_ms,
                                            weir_checkpointer **out,
                                            char *err, size_t errlen)
{
    weir_checkpointer *c;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return WEIR_ENOMEM;
    rc = sqlite3_open_v2(path, &c->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         NULL);
    /* no cache worth keeping: a checkpoint copies frames to the file */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->h, "PRAGMA synchronous=NORMAL; PRAGMA cache_size=16",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = fail(c->h, rc, err, errlen);
        sqlite3_close(c->h);
        free(c);
        return rc;
    }
    sqlite3_busy_timeout(c->h, 100);
    harden(c->h);
    c->interval_ms = interval_ms > 0 ? interval_ms : 1000;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, checkpoint_loop, c) != 0) {
        weir_set_err(err, errlen, "sqlite: cannot start the checkpoint thread");
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        sqlite3_close(c->h);
        free(c);
        return WEIR_EIO;
    }
    *out = c;
    return WEIR_OK;
}

WEIR_API void weir_ffi_db_checkpointer_stop(weir_checkpointer *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    sqlite3_close(c->h);
    free(c);
}
