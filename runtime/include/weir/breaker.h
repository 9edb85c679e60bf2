/*
 * breaker.h - circuit breakers shared by every weir process on a host.
 *
 * One breaker per connection name lives in a file-backed table mapped
 * MAP_SHARED: supervisors (`weir run`) and `weir health` open the file by
 * path (weir_ffi_breaker_open), workers map the read-only descriptor they
 * were handed (weir_ffi_breaker_reader, weir_ffi_breaker_attach; they
 * cannot open files) and send every change to their supervisor over the
 * broker socket, for the breakers of their run's connections only (ADR
 * 13), so a worker that escaped its sandbox cannot write the table. A
 * process has one table at a time.
 *
 * Concurrency: lock-free. Each breaker's state is one packed 64-bit word
 * (state, probes in flight, a time) changed only by compare-and-swap; the
 * failure window is a ring of the last 64 failure times, appended with
 * fetch-add. A process killed at any instruction leaves a consistent table
 * and blocks nobody:
 * - half-open probes are leases: the probe count of a half-open breaker
 *   expires open_ms after the last probe was granted, so probes held by a
 *   killed process (or one that never reports) are given out again;
 * - claiming a name for a slot is a short two-step publish; a claim left
 *   unfinished for 250 ms (its process died or stalled) is turned into a
 *   dead slot that is skipped forever, and the name is claimed in the next
 *   slot. Dead slots are reclaimed only when the table is re-initialised.
 * Per call: allow() on a closed breaker is two atomic loads; record() of a
 * success on a closed breaker one load; a failure a clock read, a fetch-add,
 * a store, two loads and (when it opens) a CAS. In a worker those two
 * common cases stay local reads; a failure, a probe lease or outcome and
 * the first claim of a name are one round trip to the supervisor.
 *
 * The file: header (magic, layout version, slot count, slot size, boot id)
 * then WEIR_BREAKER_SLOTS slots. Every process that opens it by path holds
 * a shared flock() on its open file description for as long as it keeps the
 * table (workers share their supervisor's description). Opening takes the
 * lock exclusively first when it can, i.e. when nobody else uses the file;
 * only then is the file (re-)initialised: when it is empty, when it has the
 * weir magic but another layout, size or boot id (breaker times are
 * CLOCK_MONOTONIC, meaningless after a reboot), or when an initialisation
 * was interrupted (magic still zero). A file with a foreign magic is never
 * touched (WEIR_EPARSE), nor is a bad table that another process holds
 * (WEIR_EPARSE, the message says so). Breaker state survives between runs
 * of weir within one boot.
 *
 * Semantics: `threshold` failures recorded within `window_ms` (and since
 * the breaker last closed) open it for `open_ms`; then it is half-open:
 * up to `half_open_probes` allowed calls at once; the first probe outcome
 * decides: success closes, failure opens again for open_ms. Outcomes
 * recorded while open are ignored (calls allowed before it opened); while
 * half-open any outcome counts as a probe outcome (there is no per-call
 * token). Successes do not reset the failure window of a closed breaker.
 *
 * Relies on Linux (flock, CLOCK_MONOTONIC shared by all processes outside
 * time namespaces), lock-free 64-bit C11 atomics and common.h.
 * open/attach/close replace a process-wide mapping: do not call them
 * concurrently with other breaker calls in the same process; all other
 * calls are safe from any thread or process.
 */
#ifndef WEIR_BREAKER_H
#define WEIR_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#include "weir/common.h"

/* weir:cdef:begin */
/* Breaker states (weir_breaker_info.state, allow's state_out). */
enum {
    WEIR_BREAKER_CLOSED = 0,
    WEIR_BREAKER_OPEN = 1,
    WEIR_BREAKER_HALF_OPEN = 2
};

/* Limits of the table and of a breaker's configuration. */
enum {
    WEIR_BREAKER_SLOTS = 256,          /* names per table */
    WEIR_BREAKER_NAME_MAX = 63,        /* bytes in a name, NUL excluded */
    WEIR_BREAKER_MAX_THRESHOLD = 64,   /* threshold in 1..64 */
    WEIR_BREAKER_MAX_PROBES = 255,     /* half_open_probes in 1..255 */
    WEIR_BREAKER_MAX_MS = 1000000000   /* window_ms, open_ms in (0, this] */
};

typedef struct {
    int32_t threshold;        /* failures within window_ms that open it */
    int32_t half_open_probes; /* calls allowed at once when half-open */
    double window_ms;         /* failure window */
    double open_ms;           /* how long it stays open; probe lease */
} weir_breaker_cfg;

typedef struct {
    int32_t state;         /* WEIR_BREAKER_*, as allow() would see it now */
    int32_t failures;      /* closed: failures in the window (at most 64) */
    int32_t probes;        /* half-open: unexpired probes in flight */
    double retry_in_ms;    /* open, or half-open with every probe out:
                            * ms until a call is allowed again; else 0 */
    uint64_t opened_count; /* times it opened since the table was made */
} weir_breaker_info;

/*
 * Supervisor side: open (creating, 0600, O_CLOEXEC, O_NOFOLLOW) the table
 * file at path, initialise or validate it (see the top of this header) and
 * map it for this process, replacing any previous table. *fd_out receives
 * the descriptor, which stays owned by the library (closed by the next
 * open/attach/close): pass it to workers, do not close it. path is borrowed.
 * Returns WEIR_OK, WEIR_EINVAL (NULL or empty argument, not a regular
 * file), WEIR_ENOENT (missing directory), WEIR_EPERM, WEIR_EPARSE (foreign
 * or, while in use, incompatible file), WEIR_ETIMEOUT (another process kept
 * the file locked for initialisation for 2 s) or WEIR_EIO; the reason goes
 * into err (may be NULL when errlen is 0). On failure the previous table,
 * if any, stays in place.
 */
WEIR_API int weir_ffi_breaker_open(const char *path, int32_t *fd_out,
                                   char *err, size_t errlen);

/*
 * Supervisor side: a read-only descriptor of the table weir_ffi_breaker_open
 * mapped, for workers (opened once by path and checked to be the same
 * file; owned by the library like open's). Returns WEIR_OK, WEIR_EINVAL (no
 * table opened by path) or another status when it cannot be opened.
 */
WEIR_API int weir_ffi_breaker_reader(int32_t *fd_out, char *err,
                                     size_t errlen);

/*
 * Worker side: map the table from fd (inherited or received), replacing
 * any previous table. A read-only fd (weir_ffi_breaker_reader's) maps
 * read-only, and the kernel refuses to make it writable: every change
 * (claiming a slot, a probe lease, recording a failure or a probe's
 * outcome) is then a request on the broker socket that the supervisor
 * performs (weir_broker_allow_breaker), while allow() on a closed breaker
 * and record() of its successes stay local reads. No file is opened. fd
 * is borrowed: the caller may close it afterwards, the mapping stays.
 * Returns WEIR_OK, WEIR_EINVAL (bad descriptor, not a regular file),
 * WEIR_EPARSE (not a valid table) or WEIR_EIO, with the reason in err (may
 * be NULL when errlen is 0).
 */
WEIR_API int weir_ffi_breaker_attach(int32_t fd, char *err, size_t errlen);

/*
 * Unmap this process's table and close the descriptor open() returned.
 * Safe when no table is mapped. Always WEIR_OK.
 */
WEIR_API int weir_ffi_breaker_close(void);
/* 1 when this process has a table mapped (open or attach), else 0. */
WEIR_API int32_t weir_ffi_breaker_attached(void);

/*
 * Find the slot of breaker `name` (1..63 bytes), claiming a free one when
 * the name is new, and store cfg in it (the last writer wins). cfg may be
 * NULL to look up only (`weir health`): a name not in the table then gives
 * WEIR_ENOENT. Both pointers are borrowed. Returns WEIR_OK with *slot_out
 * set, WEIR_EINVAL (no table, bad name or cfg), WEIR_ENOENT or WEIR_ELIMIT
 * (table full), with the reason in err (may be NULL when errlen is 0).
 */
WEIR_API int weir_ffi_breaker_slot(const char *name,
                                   const weir_breaker_cfg *cfg,
                                   int32_t *slot_out, char *err,
                                   size_t errlen);

/*
 * May a call go ahead? WEIR_OK: yes; *state_out is CLOSED or HALF_OPEN (the
 * call is then a probe in flight and must be followed by record()).
 * WEIR_EAGAIN: no, fail fast; *state_out is OPEN (or HALF_OPEN with every
 * probe out) and *retry_in_ms_out the ms until a call may be allowed again
 * (0 when allowed). WEIR_EINVAL: no table or bad slot. Out-pointers may be
 * NULL.
 */
WEIR_API int weir_ffi_breaker_allow(int32_t slot, int32_t *state_out,
                                    double *retry_in_ms_out);

/*
 * Report the outcome of an allowed call: success != 0 or a failure (count
 * operational errors only). Returns WEIR_OK or WEIR_EINVAL (no table, bad
 * slot).
 */
WEIR_API int weir_ffi_breaker_record(int32_t slot, int32_t success);

/* Fill *out with the breaker's current state. WEIR_OK or WEIR_EINVAL. */
WEIR_API int weir_ffi_breaker_info(int32_t slot, weir_breaker_info *out);
/* weir:cdef:end */

/*
 * Test hook, not part of the FFI: start claiming a slot for name (cfg as in
 * weir_ffi_breaker_slot, not NULL) and stop before publishing it, as a
 * process killed in the middle would. *slot_out receives the slot left
 * half-claimed. Returns WEIR_OK or the errors of weir_ffi_breaker_slot.
 */
int weir_breaker_test_claim_stall(const char *name,
                                  const weir_breaker_cfg *cfg,
                                  int32_t *slot_out);

/* Test hook: this process's mapping of the table (NULL: none), so a test
 * can try to write through a worker's read-only one. */
void *weir_breaker_test_table(void);

#endif
