/*
 * sqlite.h - a thin SQLite primitive for the metadata store and the SQLite
 * connector: open, prepare, bind, step, read columns. Status codes follow
 * common.h; SQLite's own message goes into the caller's err buffer.
 * Statements and handles are opaque; the Lua wrapper owns them with ffi.gc.
 */
#ifndef WEIR_SQLITE_H
#define WEIR_SQLITE_H

#include "weir/common.h"

/* weir:cdef:begin */
typedef struct weir_db weir_db;
typedef struct weir_stmt weir_stmt;

enum {
    WEIR_SQL_ROW = 1,     /* weir_ffi_db_step: a row is ready */
    WEIR_SQL_DONE = 2,    /* weir_ffi_db_step: statement finished */
    WEIR_SQL_INTEGER = 1, /* column types, as SQLite numbers them */
    WEIR_SQL_FLOAT = 2,
    WEIR_SQL_TEXT = 3,
    WEIR_SQL_BLOB = 4,
    WEIR_SQL_NULL = 5
};

/* Open (creating when create != 0) the database at path. busy_ms sets the
 * busy timeout. *out is owned by the caller: weir_ffi_db_close frees it. */
WEIR_API int weir_ffi_db_open(const char *path, int32_t create,
                              int32_t readonly, int32_t busy_ms,
                              weir_db **out, char *err, size_t errlen);
/* Leave the WAL in place when the last connection closes, instead of
 * folding it back into the database and syncing (the metadata store: its
 * WAL is checkpointed by SQLite every wal_autocheckpoint pages). */
WEIR_API void weir_ffi_db_keep_wal(weir_db *db);
/* A thread with a connection of its own to the database at path (in WAL
 * mode) that checkpoints the WAL every interval_ms, PASSIVE (writers never
 * wait for it): a server whose connection sets wal_autocheckpoint=0 then
 * never pays a checkpoint and its syncs inside a commit. Stopped and freed
 * by weir_ffi_db_checkpointer_stop (NULL-safe). */
typedef struct weir_checkpointer weir_checkpointer;
WEIR_API int weir_ffi_db_checkpointer_start(const char *path,
                                            int32_t interval_ms,
                                            weir_checkpointer **out,
                                            char *err, size_t errlen);
WEIR_API void weir_ffi_db_checkpointer_stop(weir_checkpointer *c);
/* Close and free; NULL-safe. Statements stay valid until finalized. */
WEIR_API void weir_ffi_db_close(weir_db *db);
/* Run one or more statements without results (DDL, PRAGMA, BEGIN). */
WEIR_API int weir_ffi_db_exec(weir_db *db, const char *sql, char *err,
                              size_t errlen);
/* Compile sql (len bytes): exactly one statement (trailing whitespace,
 * semicolons and comments allowed; more SQL is WEIR_EINVAL).
 * *out is freed by weir_ffi_db_finalize. */
WEIR_API int weir_ffi_db_prepare(weir_db *db, const char *sql, size_t len,
                                 weir_stmt **out, char *err, size_t errlen);
WEIR_API void weir_ffi_db_finalize(weir_stmt *st);
/* Bind parameter i (1-based). Text and blobs are copied by SQLite. */
WEIR_API int weir_ffi_db_bind_null(weir_stmt *st, int32_t i);
WEIR_API int weir_ffi_db_bind_int64(weir_stmt *st, int32_t i, int64_t v);
WEIR_API int weir_ffi_db_bind_double(weir_stmt *st, int32_t i, double v);
WEIR_API int weir_ffi_db_bind_text(weir_stmt *st, int32_t i, const char *s,
                                   size_t len);
WEIR_API int weir_ffi_db_bind_blob(weir_stmt *st, int32_t i, const char *s,
                                   size_t len);
WEIR_API int32_t weir_ffi_db_bind_count(weir_stmt *st);
/* Step: WEIR_SQL_ROW, WEIR_SQL_DONE, or a negative status with err set. */
WEIR_API int weir_ffi_db_step(weir_stmt *st, char *err, size_t errlen);
/* Reset for re-execution and clear bindings. */
WEIR_API void weir_ffi_db_reset(weir_stmt *st);
WEIR_API int32_t weir_ffi_db_column_count(weir_stmt *st);
WEIR_API const char *weir_ffi_db_column_name(weir_stmt *st, int32_t i);
WEIR_API int32_t weir_ffi_db_column_type(weir_stmt *st, int32_t i);
WEIR_API int64_t weir_ffi_db_column_int64(weir_stmt *st, int32_t i);
WEIR_API double weir_ffi_db_column_double(weir_stmt *st, int32_t i);
/* Text or blob bytes of column i, valid until the next step/reset; *len is
 * set to the byte count. Never NULL (an empty value gives ""). */
WEIR_API const char *weir_ffi_db_column_bytes(weir_stmt *st, int32_t i,
                                              size_t *len);
WEIR_API int64_t weir_ffi_db_changes(weir_db *db);
WEIR_API int64_t weir_ffi_db_last_rowid(weir_db *db);
/* weir:cdef:end */

struct sqlite3_stmt;
/* The SQLite statement behind st, for bulk.c (internal, not for Lua). */
struct sqlite3_stmt *weir_stmt_handle(weir_stmt *st);

#endif
