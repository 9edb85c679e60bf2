/*
 * exec.h - the executor primitive: a pool of pre-forked worker processes,
 * each running `weir __worker`, fed length-prefixed job frames over a
 * socket and answering with result frames. File access of workers goes
 * through the broker (broker.h) on a second socket. Policy (what to run,
 * retries, deadlines) lives in Lua; this unit only moves bytes, kills and
 * replaces processes.
 *
 * Frame: uint32 payload length, uint32 type, uint64 argument, payload. A
 * worker may send progress frames (rows so far, log lines) before the
 * result frame of a job.
 */
#ifndef WEIR_EXEC_H
#define WEIR_EXEC_H

#include "weir/common.h"

#define WEIR_FRAME_JOB 1u
#define WEIR_FRAME_RESULT 2u
#define WEIR_FRAME_PROGRESS 3u /* worker -> supervisor during an attempt */
#define WEIR_FRAME_HDR 16u
#define WEIR_FRAME_MAX (64u << 20) /* largest result frame accepted */
/* Bit 63 of a job frame's argument: the worker keeps the job's Lua state
 * for the next job instead of closing it (a weir repl session, ADR 45);
 * the other bits are the memory cap, which then bounds the whole session. */
#define WEIR_JOB_KEEP (1ull << 63)

/* weir:cdef:begin */
typedef struct weir_exec weir_exec;

enum {
    WEIR_EV_RESULT = 1, /* a worker answered a job: data/len hold it */
    WEIR_EV_EXIT = 2,   /* a worker died; status = exit code, or -signal */
    WEIR_EV_SIGNAL = 3, /* the supervisor got SIGINT/SIGTERM/SIGHUP: status = sig */
    WEIR_EV_WAKE = 4,   /* the watched descriptor is readable (status = fd);
                         * reported, never read: its owner drains it */
    WEIR_EV_PROGRESS = 5 /* a worker's progress frame during an attempt:
                          * data/len hold it (the job is still running) */
};

typedef struct {
    int32_t kind;
    int32_t slot;
    int32_t pid;
    int32_t status;
    const char *data; /* WEIR_EV_RESULT: valid until the next poll */
    size_t len;
} weir_exec_event;

typedef struct {
    int32_t workers;           /* number of worker processes, >= 1 */
    const char *exe;           /* weir binary; NULL = /proc/self/exe */
    const char *const *roots;  /* directories workers may reach */
    size_t nroots;
    const char *const *deny;   /* directories inside roots they may not */
    size_t ndeny;
    const char *const *protect; /* files they may not write (broker.h) */
    size_t nprotect;
    const char *const *hide;   /* files they may not read nor write */
    size_t nhide;
    const char *user;          /* drop to this user when root; NULL=nobody */
    int64_t rlimit_as;         /* RLIMIT_AS of a worker in bytes; 0 none */
    int32_t rlimit_nofile;     /* RLIMIT_NOFILE of a worker; 0 = 64 */
    const char *const *endpoints; /* "IP:PORT" workers may connect to (net.h) */
    size_t nendpoints;
    int32_t shared_fd;         /* a descriptor every worker gets as fd 5
                                * (the breaker table, read-only), or -1 */
    const char *const *breakers; /* breakers workers may change */
    size_t nbreakers;
    int32_t preload;           /* WEIR_PRELOAD_* bits of connectors
                                * whose preload hooks workers run before
                                * the seccomp filter (connectors.h) */
} weir_exec_opts;

/* Start the pool. *out is freed with weir_ffi_exec_delete. */
WEIR_API int weir_ffi_exec_new(const weir_exec_opts *opts, weir_exec **out,
                               char *err, size_t errlen);
/* Kill and reap every worker, free the pool. NULL-safe. */
WEIR_API void weir_ffi_exec_delete(weir_exec *e);
/* Journal the temporary files workers create (WEIR_O_TEMP) in a new file
 * of dir (WEIR_HOME/temps), so that a later weir_ffi_temps_sweep of dir
 * removes those this process leaves if it is killed (broker.h, ADR 16).
 * Call before the first job is sent. */
WEIR_API int weir_ffi_exec_journal(weir_exec *e, const char *dir, char *err,
                                   size_t errlen);
/* Queue a job frame for the worker in slot (copied); the next poll sends
 * it, with every other frame queued since, in one write per worker. arg
 * travels in the frame header (the attempt's memory cap in bytes). */
WEIR_API int weir_ffi_exec_send(weir_exec *e, int32_t slot, uint64_t arg,
                                const char *data, size_t len, char *err,
                                size_t errlen);
/* The same with the payload given as n parts sent back to back (borrowed
 * for the call), so callers need not concatenate. */
WEIR_API int weir_ffi_exec_sendv(weir_exec *e, int32_t slot, uint64_t arg,
                                 const char *const *parts,
                                 const size_t *lens, int32_t n, char *err,
                                 size_t errlen);
/* Wait up to timeout_ms (-1 forever, 0 no wait) for events; serves broker
 * requests and flushes queued frames meanwhile. A dead worker is replaced
 * before its EXIT event is returned. */
WEIR_API int weir_ffi_exec_poll(weir_exec *e, int32_t timeout_ms,
                                weir_exec_event *evs, int32_t max,
                                int32_t *n, char *err, size_t errlen);
/* SIGKILL the worker in slot (its EXIT event follows from poll). */
WEIR_API int weir_ffi_exec_kill(weir_exec *e, int32_t slot);
/* SIGINT the worker in slot: a session job (WEIR_JOB_KEEP) running Lua
 * raises "interrupted" at its next hook check and the state is kept. */
WEIR_API int weir_ffi_exec_interrupt(weir_exec *e, int32_t slot);
WEIR_API int32_t weir_ffi_exec_pid(weir_exec *e, int32_t slot);
WEIR_API int32_t weir_ffi_exec_workers(weir_exec *e);
/* Also wake poll when fd is readable (one descriptor; -1 none): a
 * WEIR_EV_WAKE event. The HTTP server's queue of requests (weir serve). */
WEIR_API void weir_ffi_exec_watch(weir_exec *e, int32_t fd);
/* Route SIGINT, SIGTERM and SIGHUP to WEIR_EV_SIGNAL events (also used when no
 * pool exists: weir_ffi_signal_pending then reports them). */
WEIR_API int weir_ffi_signal_install(void);
/* The signal received since the last call (0 if none), and clear it. */
WEIR_API int32_t weir_ffi_signal_pending(void);
/* Monotonic clock in milliseconds and wall clock in milliseconds. */
WEIR_API double weir_ffi_now_mono_ms(void);
WEIR_API double weir_ffi_now_wall_ms(void);
/* Sleep for ms milliseconds (wakes early on a signal). */
WEIR_API void weir_ffi_sleep_ms(double ms);
/* The process id, and whether process pid is alive (1/0). */
WEIR_API int32_t weir_ffi_getpid(void);
WEIR_API int32_t weir_ffi_pid_alive(int32_t pid);
/* The current directory into buf (caller's, len bytes). */
WEIR_API int weir_ffi_getcwd(char *buf, size_t len);
/* Number of online processors (at least 1). */
WEIR_API int32_t weir_ffi_ncpu(void);
/* 1 when fd is a terminal. */
WEIR_API int32_t weir_ffi_isatty(int32_t fd);
/* Turn a terminal's echo off (on = 0) or back on (a password prompt). */
WEIR_API int weir_ffi_echo(int32_t fd, int32_t on);
/* Resident set size of this process in bytes (from /proc/self/statm). */
WEIR_API int64_t weir_ffi_rss_bytes(void);
/* The identity of process pid, "BOOT_ID:START_TICKS" (this boot's id and
 * the process's start time in clock ticks since boot) into out (caller's,
 * len bytes): a pid reused by another process, or on another boot, has
 * another identity. WEIR_ENOENT when there is no such process. */
WEIR_API int weir_ffi_proc_identity(int32_t pid, char *out, size_t len);
/* What path is (following links): WEIR_KIND_NONE (missing),
 * WEIR_KIND_FILE (regular), WEIR_KIND_DIR, WEIR_KIND_OTHER (a FIFO, a
 * device, a socket: reading it may block or never end). */
enum {
    WEIR_KIND_NONE = 0,
    WEIR_KIND_FILE = 1,
    WEIR_KIND_DIR = 2,
    WEIR_KIND_OTHER = 3
};
WEIR_API int32_t weir_ffi_path_kind(const char *path);
/* What path itself is (a symbolic link is not followed: it is
 * WEIR_KIND_OTHER), and into out[4] (caller's): its size in bytes, its
 * modification time in ns since the epoch, its device and its inode
 * (zeros when it is missing). */
WEIR_API int32_t weir_ffi_lstat(const char *path, int64_t *out);
/* The names in directory path ("." and ".." left out), each followed by
 * "\n", into out (outlen bytes, caller's; names holding "\n" are left
 * out). Returns WEIR_OK, WEIR_ENOENT, WEIR_ELIMIT (out too small) or
 * WEIR_EIO. */
WEIR_API int weir_ffi_dir_list(const char *path, char *out, size_t outlen,
                               char *err, size_t errlen);
/* The canonical absolute form of path (every symlink, "." and ".."
 * resolved; it must exist) into out (outlen bytes, caller's). Returns
 * WEIR_OK, WEIR_ENOENT, WEIR_ELIMIT (too long) or WEIR_EIO. */
WEIR_API int weir_ffi_realpath(const char *path, char *out, size_t outlen,
                               char *err, size_t errlen);
/* Supervisor only: weir's own state, private to its owner. The folder
 * path is created with mode 0700 when missing (an existing folder is left
 * as it is: it may be shared, like /tmp). The file path gets mode 0600:
 * created empty when missing and create is 1, else changed; a missing
 * file with create 0 is fine. Symbolic links are refused. err: caller's
 * buffer. */
WEIR_API int weir_ffi_private_dir(const char *path, char *err, size_t errlen);
WEIR_API int weir_ffi_private_file(const char *path, int32_t create, char *err,
                                   size_t errlen);
/* weir:cdef:end */

/* Run a worker (the `weir __worker` entry point). Never returns on error
 * paths that cannot report; returns the process exit status. */
int weir_worker_main(int argc, char **argv);

#endif
