/*
 * broker.h - the file broker: privilege separation for worker file access.
 *
 * Workers may run as an unprivileged user that cannot reach the configured
 * data directories. Every file operation of a worker is therefore sent over
 * an AF_UNIX SOCK_SEQPACKET socket to the supervisor, which checks that the
 * path is confined to one of its root directories (openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) and not inside a denied folder
 * (weir's own state), performs the operation with its own privileges and
 * replies; an opened descriptor travels back with SCM_RIGHTS. The worker
 * side also routes SQLite's unix VFS system calls through the broker, so
 * databases, journals and WAL files work unchanged.
 *
 * Relies on Linux >= 5.6 (openat2), SQLite >= 3.40 (unix VFS
 * system call names) and common.h for status codes. The wire format is
 * private to runtime/ (broker_wire.h): broker_server.c is the supervisor's
 * side, broker_client.c the worker's.
 */
#ifndef WEIR_BROKER_H
#define WEIR_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "weir/common.h"

/* ------------------------------------------------------------------------
 * Supervisor side (C only, not part of the FFI).
 * ------------------------------------------------------------------------ */

typedef struct weir_broker weir_broker;

/*
 * Create a broker confined to the given root directories. Each root is made
 * absolute and canonical with realpath() and opened O_PATH|O_DIRECTORY; the
 * broker keeps those descriptors until weir_broker_delete. roots (and each
 * string) are borrowed for the call; roots may be NULL when nroots is 0 (a
 * broker that refuses every path). On success *out owns a new broker that
 * the caller frees with weir_broker_delete. On failure returns WEIR_EINVAL,
 * WEIR_ENOENT, WEIR_EPERM, WEIR_ENOMEM or WEIR_EIO and writes the reason into
 * err (err may be NULL when errlen is 0).
 */
int weir_broker_new(const char *const *roots, size_t nroots,
                    weir_broker **out, char *err, size_t errlen);

/*
 * Refuse every request whose target lies physically inside dir, or is dir
 * itself: the supervisor's own state folder (WEIR_HOME) when it sits inside
 * a root, so that a task can neither read nor change the metadata store and
 * the broker never opens (and closes) a descriptor of a database the
 * supervisor holds POSIX locks on. dir is opened O_PATH|O_DIRECTORY once and
 * remembered by device and inode number, whatever path later reaches it
 * (symlinks, "..", bind mounts); a folder that is removed and made again is
 * a new folder and must be denied again. dir is borrowed for the call and
 * must exist: nothing is created (the caller creates WEIR_HOME first).
 * Denying a folder twice is harmless; a root at or below a denied folder
 * refuses everything. Call before serving: this modifies b, so it must not
 * run concurrently with weir_broker_handle. Returns WEIR_OK, WEIR_EINVAL (b
 * or dir NULL, or dir empty), WEIR_ENOENT (dir missing or not a
 * directory), WEIR_EPERM, WEIR_ENOMEM or WEIR_EIO, with the reason in err
 * (err may be NULL when errlen is 0).
 */
int weir_broker_deny(weir_broker *b, const char *dir, char *err,
                     size_t errlen);

/*
 * Keep the file path (absolute) out of the workers' reach for writing, or
 * for everything when hide is 1: weir.yaml, the secret files it reads,
 * the pipeline file. Refused: opening it for writing (or at all when
 * hidden, stat and access too), creating, truncating, removing or
 * renaming it, renaming or making anything in its place, and moving or
 * removing a folder that holds it. The file is matched by device and
 * inode, so a symlink or a hard link to it (made before or after) is
 * refused too, and its name by its folder's device and inode, so a
 * missing file cannot be made there (the broker offers no link(2)). A
 * symlink at path guards its target under both names. A missing folder
 * guards nothing. path is borrowed. Call before serving, like
 * weir_broker_deny. Returns WEIR_OK, WEIR_EINVAL (b NULL, path not
 * absolute or naming a folder), WEIR_ENOMEM or WEIR_EIO, with the reason
 * in err (err may be NULL when errlen is 0).
 */
int weir_broker_protect(weir_broker *b, const char *path, int hide,
                        char *err, size_t errlen);

/* Close the root descriptors and free the broker. b may be NULL. */
void weir_broker_delete(weir_broker *b);

/*
 * Receive exactly one request from sock (one end of a SOCK_SEQPACKET
 * socketpair; the caller keeps ownership), perform it and send the reply.
 * Returns WEIR_OK when a request was answered (even if the operation itself
 * failed or was refused: that outcome travels in the reply), WEIR_ECLOSED
 * when the peer has closed (or sent an empty packet), WEIR_EAGAIN when there
 * is nothing to read on a non-blocking socket or the wait was interrupted by
 * a signal, WEIR_EINVAL for a malformed request (an error reply is still
 * sent when possible) and WEIR_EIO when the socket failed. Descriptors a peer
 * attaches to a request are closed and the request is refused. One broker
 * may serve several sockets, also from several threads: the only state it
 * keeps (the journal of WEIR_O_TEMP files) has its own lock.
 */
int weir_broker_handle(weir_broker *b, int sock);

/*
 * Keep the journal of the WEIR_O_TEMP files this broker creates in a new
 * file of dir (WEIR_HOME/temps; made 0700 when missing), locked for the
 * process's life, so that what a killed supervisor leaves is removed by
 * the next weir_ffi_temps_sweep of dir (ADR 16). Without it the journal
 * is in memory only. Call before serving. Returns WEIR_OK, WEIR_EINVAL or
 * WEIR_EIO, with the reason in err.
 */
int weir_broker_journal(weir_broker *b, const char *dir, char *err,
                        size_t errlen);

/*
 * Remove the files workers created with WEIR_O_TEMP that are still there,
 * neither renamed nor removed (an attempt killed while writing one): each
 * only when its name, reached without following a symlink, still holds the
 * file the broker created. Then the journal goes. Call it when no worker
 * is left (the executor does when the pool stops). Returns how many files
 * were removed.
 */
size_t weir_broker_sweep_temps(weir_broker *b);

/*
 * Let workers connect to endpoint ("IP:PORT" or "[IPv6]:PORT", numeric):
 * their socket() and connect() calls reach the supervisor through this
 * broker (net.h, net_server.c), which connects only to endpoints allowed here. Call
 * before serving. Returns WEIR_OK, WEIR_EINVAL or WEIR_ENOMEM.
 */
int weir_broker_allow_endpoint(weir_broker *b, const char *endpoint,
                               char *err, size_t errlen);

/*
 * Let workers change the breaker called name (a connection of weir.yaml)
 * in the supervisor's breaker table: workers map it read-only and send
 * every change here (breaker.c); other names are refused. name is copied.
 * Call before serving. Returns WEIR_OK, WEIR_EINVAL or WEIR_ENOMEM.
 */
int weir_broker_allow_breaker(weir_broker *b, const char *name, char *err,
                              size_t errlen);

/* Number of roots. b must not be NULL. */
size_t weir_broker_nroots(const weir_broker *b);

/*
 * The canonical path of root i (owned by the broker, valid until
 * weir_broker_delete), or NULL when i is out of range.
 */
const char *weir_broker_root(const weir_broker *b, size_t i);

/* ------------------------------------------------------------------------
 * Worker side.
 * ------------------------------------------------------------------------ */

/*
 * Route this process's file access through the broker listening on the
 * other end of sock: the weir_ffi_file_* calls below and SQLite's unix VFS
 * system calls "open", "access", "stat", "lstat", "unlink", "readlink",
 * "mkdir" and "rmdir" (installed on the default VFS; every unix VFS shares
 * them). sock stays owned by the caller and must outlive every use. Calling
 * it again replaces the socket. Not thread-safe: call it before any database
 * is opened. Returns WEIR_OK, WEIR_EINVAL (sock < 0) or WEIR_EIO when the
 * default VFS does not accept the overrides.
 */
int weir_broker_client_init(int sock);

/*
 * Forget the socket and restore SQLite's default system calls, so the
 * weir_ffi_file_* calls act directly again. Safe to call at any time.
 */
void weir_broker_client_reset(void);

/* weir:cdef:begin */
/*
 * Open flags accepted by weir_ffi_file_open: the Linux O_* values of the
 * generic ABI (x86-64, aarch64's differ and are translated in C). Any bit
 * not listed here is refused with WEIR_EINVAL.
 */
enum {
    WEIR_O_RDONLY = 0,
    WEIR_O_WRONLY = 1,
    WEIR_O_RDWR = 2,
    WEIR_O_CREAT = 64,          /* 0100 */
    WEIR_O_EXCL = 128,          /* 0200 */
    WEIR_O_NOCTTY = 256,        /* 0400 */
    WEIR_O_TRUNC = 512,         /* 01000 */
    WEIR_O_APPEND = 1024,       /* 02000 */
    WEIR_O_NONBLOCK = 2048,     /* 04000 */
    WEIR_O_DIRECTORY = 65536,   /* 0200000 */
    WEIR_O_NOFOLLOW = 131072,   /* 0400000 */
    WEIR_O_CLOEXEC = 524288,    /* 02000000 */
    /* weir's own: a temporary file (with WEIR_O_CREAT | WEIR_O_EXCL),
     * journaled by the supervisor before its name exists and removed
     * when the pool stops, or by the next run if the supervisor is
     * killed, when it is still there, i.e. neither renamed nor removed:
     * what a killed attempt leaves (ADR 16) */
    WEIR_O_TEMP = 1073741824    /* 1 << 30 */
};

/*
 * Supervisor only: remove what the journals in dir (WEIR_HOME/temps) of
 * supervisors that are gone (nobody holds their lock) list as live
 * temporary files, then those journals. A file is removed only when its
 * recorded name, reached without following any symlink, is a regular file
 * with the device and inode recorded when it was created; nothing else in
 * any folder is touched. A missing dir is fine. *removed: how many files
 * went. Returns WEIR_OK, WEIR_EINVAL or WEIR_EIO (dir unreadable), with
 * the reason in err (caller's).
 */
WEIR_API int weir_ffi_temps_sweep(const char *dir, int32_t *removed,
                                  char *err, size_t errlen);

/*
 * Open path (absolute, or relative to the current directory) with flags
 * from the WEIR_O_* set. mode is used with WEIR_O_CREAT: 0 means 0644; it
 * is capped at 0644 and the supervisor's umask applies. On success *fd_out
 * is a descriptor the caller closes with weir_ffi_file_close. Returns
 * WEIR_OK, WEIR_EPERM (outside the allowed roots, or inside a folder the
 * supervisor denied with weir_broker_deny), WEIR_ENOENT,
 * WEIR_EINVAL (bad flags), WEIR_ECLOSED (broker gone) or WEIR_EIO. err may
 * be NULL when errlen is 0; messages name only the path.
 */
WEIR_API int weir_ffi_file_open(const char *path, int32_t flags,
                                int32_t mode, int32_t *fd_out, char *err,
                                size_t errlen);

/* Remove a file (not a directory). Same status codes as open. */
WEIR_API int weir_ffi_file_unlink(const char *path, char *err,
                                  size_t errlen);

/* Rename from to to; both must lie inside the allowed roots. */
WEIR_API int weir_ffi_file_rename(const char *from, const char *to,
                                  char *err, size_t errlen);

/*
 * Set *exists_out to 1 when path exists (following symlinks), else 0. A
 * path outside the roots is WEIR_EPERM, not "does not exist".
 */
WEIR_API int weir_ffi_file_exists(const char *path, int32_t *exists_out,
                                  char *err, size_t errlen);

/* Create a directory with mode 0755 (umask applies). */
WEIR_API int weir_ffi_file_mkdir(const char *path, char *err, size_t errlen);

/* Close fd. Returns WEIR_OK, WEIR_EINVAL (fd < 0) or WEIR_EIO. */
WEIR_API int weir_ffi_file_close(int32_t fd);

/*
 * Read at most len bytes into buf (caller's memory); *n_out is the count,
 * 0 at end of file. Retries on EINTR. WEIR_EAGAIN on a non-blocking fd with
 * nothing to read.
 */
WEIR_API int weir_ffi_file_read(int32_t fd, char *buf, size_t len,
                                int64_t *n_out, char *err, size_t errlen);

/* Write all len bytes of buf, retrying short writes and EINTR. */
WEIR_API int weir_ffi_file_write(int32_t fd, const char *buf, size_t len,
                                 char *err, size_t errlen);

/* Flush fd to stable storage. */
WEIR_API int weir_ffi_file_fsync(int32_t fd, char *err, size_t errlen);
/* weir:cdef:end */

#endif
