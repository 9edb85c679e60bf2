/*
 * breaker.c - circuit breakers in a file-backed table shared by processes
 * (see breaker.h for the file, the locking rules and the semantics).
 *
 * Lock-free: a breaker's state is one packed word changed by CAS, the
 * failure window a ring of timestamps appended with fetch-add, a slot's
 * name published by a claim word. Relies on lock-free 64-bit C11 atomics
 * (checked below) working across processes on a MAP_SHARED mapping,
 * flock(), weir/clock.h (CLOCK_MONOTONIC) and /proc/sys/kernel/random/boot_id
 * (optional).
 */
#include "weir/breaker.h"
#include "weir/clock.h"

#include "broker_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2,
               "shared breakers need lock-free 64-bit atomics");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
               "shared breakers need lock-free 32-bit atomics");

#define TABLE_MAGIC 0x31424b5252494557ULL /* "WEIRRKB1" */
#define TABLE_VERSION 1u
#define RING WEIR_BREAKER_MAX_THRESHOLD
#define BOOT_ID_LEN 40

/* A claim unfinished for this long belongs to a dead or stalled process. */
#define CLAIM_STALE_MS 250u
/* How long open() waits for another process initialising the file. */
#define LOCK_WAIT_MS 2000

/* Claim word: 0 empty, READY published, DEAD abandoned; odd = claiming,
 * (ms << 23) | (pid << 1) | 1, so the age of a claim can be told. */
#define CLAIM_EMPTY 0u
#define CLAIM_READY 2u
#define CLAIM_DEAD 4u

/* State word: bits 0-1 state, 2-9 probes in flight, 10-63 a time in us:
 * CLOSED when it last closed (earlier failures do not count), OPEN until
 * when, HALF_OPEN when the probe leases expire. */
#define W_TIME_MASK ((UINT64_C(1) << 54) - 1)

struct slot {
    _Alignas(64) _Atomic uint64_t claim;
    _Atomic uint64_t word;
    _Atomic uint64_t head;          /* failures recorded: next ring index */
    _Atomic uint64_t opened;        /* times it opened */
    _Atomic int32_t threshold;
    _Atomic int32_t probes;
    _Atomic int64_t window_us;
    _Atomic int64_t open_us;
    char name[WEIR_BREAKER_NAME_MAX + 1];
    _Atomic uint64_t ring[RING];    /* failure times in us, 0 = none */
};

struct header {
    _Atomic uint64_t magic;         /* stored last when initialising */
    uint32_t version;
    uint32_t nslots;
    uint32_t slot_size;
    uint32_t header_size;
    char boot_id[BOOT_ID_LEN];
};

struct table {
    struct header hdr;
    struct slot slots[WEIR_BREAKER_SLOTS];
};

_Static_assert(sizeof(struct header) == 64, "header layout");
_Static_assert(sizeof(struct slot) % 64 == 0, "slot layout");

static struct table *g_tbl;  /* this process's table, or NULL */
static int g_fd = -1;        /* descriptor opened by breaker_open, or -1 */
static int g_rfd = -1;       /* its read-only twin for workers, or -1 */
static bool g_ro;            /* mapped read-only: changes go to the broker */
static char g_path[PATH_MAX]; /* breaker_open's path, for the twin */
static uint32_t g_seq;       /* breaker requests sent (workers) */

_Static_assert(sizeof(((struct brk_req *)0)->name) ==
               WEIR_BREAKER_NAME_MAX + 1, "breaker request name size");

static inline uint64_t now_us(void)
{
    return (uint64_t)weir_clock_mono_us();
}

static inline uint64_t pack(unsigned state, unsigned probes, uint64_t t)
{
    return (uint64_t)state | ((uint64_t)(probes & 0xffu) << 2) |
           ((t & W_TIME_MASK) << 10);
}

static inline unsigned w_state(uint64_t w) { return (unsigned)(w & 3u); }
static inline unsigned w_probes(uint64_t w)
{
    return (unsigned)((w >> 2) & 0xffu);
}
static inline uint64_t w_time(uint64_t w) { return w >> 10; }

static int errno_status(int e)
{
    switch (e) {
    case ENOENT: case ENOTDIR: return WEIR_ENOENT;
    case EACCES: case EPERM: case EROFS: return WEIR_EPERM;
    case ELOOP: case EINVAL: case EBADF: case EISDIR: return WEIR_EINVAL;
    default: return WEIR_EIO;
    }
}

static void sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

    nanosleep(&ts, NULL);
}

/* The current boot's id, or "" when /proc is not there. */
static void read_boot_id(char out[BOOT_ID_LEN])
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;

    memset(out, 0, BOOT_ID_LEN);
    if (fd < 0)
        return;
    n = read(fd, out, BOOT_ID_LEN - 1);
    close(fd);
    if (n <= 0) {
        memset(out, 0, BOOT_ID_LEN);
        return;
    }
    out[strcspn(out, "\n")] = '\0';
}

static bool layout_ok(const struct header *h)
{
    return h->version == TABLE_VERSION &&
           h->nslots == WEIR_BREAKER_SLOTS &&
           h->slot_size == sizeof(struct slot) &&
           h->header_size == sizeof(struct header);
}

/*
 * With the exclusive lock held (nobody else uses the file): keep a valid
 * table of this boot, (re-)initialise an empty, half-made or stale weir
 * table, refuse anything else.
 */
static int prepare_exclusive(int fd, const char *path, char *err,
                             size_t errlen)
{
    struct header h;
    struct stat st;
    char boot[BOOT_ID_LEN];
    ssize_t n;
    int e;

    if (fstat(fd, &st) != 0) {
        weir_set_err(err, errlen, "breaker table %s: %s", path,
                     strerror(errno));
        return WEIR_EIO;
    }
    memset(&h, 0, sizeof h);
    n = pread(fd, &h, sizeof h, 0);
    if (n < 0) {
        weir_set_err(err, errlen, "breaker table %s: %s", path,
                     strerror(errno));
        return WEIR_EIO;
    }
    read_boot_id(boot);
    if (h.magic != 0 && h.magic != TABLE_MAGIC) {
        weir_set_err(err, errlen, "breaker table %s: not a weir breaker "
                     "table (bad magic); remove it or use another path",
                     path);
        return WEIR_EPARSE;
    }
    if (h.magic == TABLE_MAGIC && layout_ok(&h) &&
        st.st_size == (off_t)sizeof(struct table) &&
        (boot[0] == '\0' || h.boot_id[0] == '\0' ||
         strncmp(boot, h.boot_id, BOOT_ID_LEN) == 0))
        return WEIR_OK;

    /* Start from zeros, and reserve the blocks so that a full disk fails
     * here instead of raising SIGBUS on a write through the mapping. */
    if (ftruncate(fd, 0) != 0 ||
        ftruncate(fd, (off_t)sizeof(struct table)) != 0) {
        weir_set_err(err, errlen, "breaker table %s: cannot size: %s", path,
                     strerror(errno));
        return WEIR_EIO;
    }
    e = posix_fallocate(fd, 0, (off_t)sizeof(struct table));
    if (e != 0 && e != EOPNOTSUPP && e != EINVAL) {
        weir_set_err(err, errlen, "breaker table %s: cannot allocate: %s",
                     path, strerror(e));
        return WEIR_EIO;
    }
    memset(&h, 0, sizeof h);
    h.version = TABLE_VERSION;
    h.nslots = WEIR_BREAKER_SLOTS;
    h.slot_size = sizeof(struct slot);
    h.header_size = sizeof(struct header);
    memcpy(h.boot_id, boot, BOOT_ID_LEN);
    /* magic (offset 0) still zero: a crash before the next write leaves
     * a file that the next exclusive opener initialises again. */
    if (pwrite(fd, (const char *)&h + 8, sizeof h - 8, 8) !=
        (ssize_t)(sizeof h - 8)) {
        weir_set_err(err, errlen, "breaker table %s: cannot write: %s", path,
                     strerror(errno));
        return WEIR_EIO;
    }
    h.magic = TABLE_MAGIC;
    if (pwrite(fd, &h, 8, 0) != 8) {
        weir_set_err(err, errlen, "breaker table %s: cannot write: %s", path,
                     strerror(errno));
        return WEIR_EIO;
    }
    return WEIR_OK;
}

/* Map fd and check the header. *out receives the mapping, *ro whether it
 * is read-only. */
static int map_table(int fd, const char *what, struct table **out, bool *ro,
                     char *err, size_t errlen)
{
    struct stat st;
    struct table *t;
    int fl;

    if (fstat(fd, &st) != 0) {
        weir_set_err(err, errlen, "breaker table %s: %s", what,
                     strerror(errno));
        return errno_status(errno);
    }
    if (!S_ISREG(st.st_mode)) {
        weir_set_err(err, errlen, "breaker table %s: not a regular file",
                     what);
        return WEIR_EINVAL;
    }
    if (st.st_size != (off_t)sizeof(struct table)) {
        weir_set_err(err, errlen, "breaker table %s: size %lld, expected "
                     "%zu (another weir version, or not a table)", what,
                     (long long)st.st_size, sizeof(struct table));
        return WEIR_EPARSE;
    }
    /* a descriptor opened read-only (a worker's) maps read-only, and the
     * kernel then refuses to make the mapping writable (mprotect) */
    fl = fcntl(fd, F_GETFL);
    *ro = fl >= 0 && (fl & O_ACCMODE) == O_RDONLY;
    t = mmap(NULL, sizeof *t, *ro ? PROT_READ : PROT_READ | PROT_WRITE,
             MAP_SHARED, fd, 0);
    if (t == MAP_FAILED) {
        weir_set_err(err, errlen, "breaker table %s: cannot map: %s", what,
                     strerror(errno));
        return errno == EACCES ? WEIR_EPERM : WEIR_EIO;
    }
    if (atomic_load_explicit(&t->hdr.magic, memory_order_acquire) !=
            TABLE_MAGIC || !layout_ok(&t->hdr)) {
        munmap(t, sizeof *t);
        weir_set_err(err, errlen, "breaker table %s: bad header (another "
                     "weir version, or not a table)", what);
        return WEIR_EPARSE;
    }
    *out = t;
    return WEIR_OK;
}

static void install(struct table *t, int fd, bool ro)
{
    if (g_tbl != NULL)
        munmap(g_tbl, sizeof *g_tbl);
    if (g_fd >= 0 && g_fd != fd)
        close(g_fd);
    if (g_rfd >= 0 && g_fd != fd)
        close(g_rfd);
    if (g_fd != fd)
        g_rfd = -1;
    g_tbl = t;
    g_fd = fd;
    g_ro = ro;
}

WEIR_API int weir_ffi_breaker_open(const char *path, int32_t *fd_out,
                                   char *err, size_t errlen)
{
    struct table *t = NULL;
    struct stat st;
    uint64_t deadline;
    bool ro = false;
    int fd, rc;

    if (path == NULL || path[0] == '\0' || fd_out == NULL) {
        weir_set_err(err, errlen, "breaker table: path and fd_out required");
        return WEIR_EINVAL;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = errno_status(errno);
        weir_set_err(err, errlen, "breaker table %s: cannot open: %s", path,
                     strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        weir_set_err(err, errlen, "breaker table %s: not a regular file",
                     path);
        close(fd);
        return WEIR_EINVAL;
    }
    deadline = now_us() + (uint64_t)LOCK_WAIT_MS * 1000u;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            /* Nobody else holds the file: safe to initialise. */
            rc = prepare_exclusive(fd, path, err, errlen);
            if (rc == WEIR_OK)
                rc = map_table(fd, path, &t, &ro, err, errlen);
            /* Downgrade (not atomic: another opener may take it
             * exclusively in between, and will find a valid table). */
            if (rc == WEIR_OK && flock(fd, LOCK_SH) != 0) {
                weir_set_err(err, errlen, "breaker table %s: flock: %s",
                             path, strerror(errno));
                munmap(t, sizeof *t);
                rc = WEIR_EIO;
            }
            break;
        }
        if (errno != EWOULDBLOCK && errno != EINTR) {
            weir_set_err(err, errlen, "breaker table %s: flock: %s", path,
                         strerror(errno));
            rc = WEIR_EIO;
            break;
        }
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
            /* In use by others: use it as it is, never rewrite it. */
            struct header h;

            memset(&h, 0, sizeof h);
            if (pread(fd, &h, sizeof h, 0) >= 8 && h.magic == 0) {
                /* Its initialiser died; retry for the exclusive lock. */
                flock(fd, LOCK_UN);
            } else {
                rc = map_table(fd, path, &t, &ro, err, errlen);
                if (rc == WEIR_EPARSE)
                    weir_set_err(err, errlen, "breaker table %s: bad or "
                                 "incompatible header and in use by another "
                                 "process (another weir version?); stop it "
                                 "or use another path", path);
                break;
            }
        }
        if (now_us() >= deadline) {
            weir_set_err(err, errlen, "breaker table %s: locked by another "
                         "process for %d ms", path, LOCK_WAIT_MS);
            rc = WEIR_ETIMEOUT;
            break;
        }
        sleep_us(1000);
    }
    if (rc != WEIR_OK) {
        close(fd);
        return rc;
    }
    install(t, fd, false);
    snprintf(g_path, sizeof g_path, "%s", path);
    *fd_out = fd;
    return WEIR_OK;
}

WEIR_API int weir_ffi_breaker_reader(int32_t *fd_out, char *err,
                                     size_t errlen)
{
    struct stat a, b;
    int fd;

    if (fd_out == NULL || g_fd < 0) {
        weir_set_err(err, errlen, "breaker table: not opened by path");
        return WEIR_EINVAL;
    }
    if (g_rfd < 0) {
        fd = open(g_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            weir_set_err(err, errlen, "breaker table %s: cannot open: %s",
                         g_path, strerror(errno));
            return errno_status(errno);
        }
        /* the same file, not one put in its place since */
        if (fstat(fd, &a) != 0 || fstat(g_fd, &b) != 0
            || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
            close(fd);
            weir_set_err(err, errlen, "breaker table %s: replaced while "
                         "in use", g_path);
            return WEIR_EIO;
        }
        g_rfd = fd;
    }
    *fd_out = g_rfd;
    return WEIR_OK;
}

WEIR_API int weir_ffi_breaker_attach(int32_t fd, char *err, size_t errlen)
{
    struct table *t = NULL;
    char what[32];
    bool ro = false;
    int rc;

    if (fd < 0) {
        weir_set_err(err, errlen, "breaker table: bad descriptor %d",
                     (int)fd);
        return WEIR_EINVAL;
    }
    snprintf(what, sizeof what, "fd %d", (int)fd);
    rc = map_table(fd, what, &t, &ro, err, errlen);
    if (rc != WEIR_OK)
        return rc;
    /* Attaching the descriptor open() gave us keeps it ours. */
    install(t, fd == g_fd ? fd : -1, ro);
    return WEIR_OK;
}

WEIR_API int weir_ffi_breaker_close(void)
{
    install(NULL, -1, false);
    return WEIR_OK;
}

static int check_cfg(const char *name, const weir_breaker_cfg *c, char *err,
                     size_t errlen)
{
    if (c->threshold < 1 || c->threshold > WEIR_BREAKER_MAX_THRESHOLD) {
        weir_set_err(err, errlen, "breaker \"%s\": threshold %d out of "
                     "range 1..%d", name, (int)c->threshold,
                     WEIR_BREAKER_MAX_THRESHOLD);
        return WEIR_EINVAL;
    }
    if (c->half_open_probes < 1 ||
        c->half_open_probes > WEIR_BREAKER_MAX_PROBES) {
        weir_set_err(err, errlen, "breaker \"%s\": half_open_probes %d out "
                     "of range 1..%d", name, (int)c->half_open_probes,
                     WEIR_BREAKER_MAX_PROBES);
        return WEIR_EINVAL;
    }
    if (!(c->window_ms > 0 && c->window_ms <= WEIR_BREAKER_MAX_MS) ||
        !(c->open_ms > 0 && c->open_ms <= WEIR_BREAKER_MAX_MS)) {
        weir_set_err(err, errlen, "breaker \"%s\": window_ms and open_ms "
                     "must be in (0, %d]", name, WEIR_BREAKER_MAX_MS);
        return WEIR_EINVAL;
    }
    return WEIR_OK;
}

static int64_t ms_to_us(double ms)
{
    int64_t us = (int64_t)llround(ms * 1000.0);

    return us < 1 ? 1 : us;
}

static void store_cfg(struct slot *s, const weir_breaker_cfg *c)
{
    atomic_store_explicit(&s->threshold, c->threshold, memory_order_relaxed);
    atomic_store_explicit(&s->probes, c->half_open_probes,
                          memory_order_relaxed);
    atomic_store_explicit(&s->window_us, ms_to_us(c->window_ms),
                          memory_order_relaxed);
    atomic_store_explicit(&s->open_us, ms_to_us(c->open_ms),
                          memory_order_relaxed);
}

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/*
 * A worker's table is read-only: ask the supervisor to make the change
 * (weir_breaker_serve), one round trip on the broker socket. WEIR_OK with
 * *rep filled, or WEIR_EIO (no broker, or a bad reply).
 */
static int remote(struct brk_req *rq, struct brk_rep *rep)
{
    int sock = weir_broker_client_sock(), fd = -1, flags = 0;
    ssize_t n;

    if (sock < 0)
        return WEIR_EIO;
    rq->magic = BRK_MAGIC;
    rq->seq = ++g_seq;
    if (weir_wire_send(sock, rq, sizeof *rq, -1) != 0)
        return WEIR_EIO;
    n = weir_wire_recv(sock, rep, sizeof *rep, &fd, &flags);
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof *rep || (flags & (MSG_TRUNC | MSG_CTRUNC))
        || rep->magic != BRK_MAGIC || rep->seq != rq->seq
        || rep->op != rq->op)
        return WEIR_EIO;
    return WEIR_OK;
}

/* Does slot s hold exactly cfg (as store_cfg would write it)? */
static bool same_cfg(struct slot *s, const weir_breaker_cfg *c)
{
    return atomic_load_explicit(&s->threshold, memory_order_relaxed)
               == c->threshold
           && atomic_load_explicit(&s->probes, memory_order_relaxed)
               == c->half_open_probes
           && atomic_load_explicit(&s->window_us, memory_order_relaxed)
               == ms_to_us(c->window_ms)
           && atomic_load_explicit(&s->open_us, memory_order_relaxed)
               == ms_to_us(c->open_ms);
}

/*
 * find_slot on a read-only table: a published slot of that name with that
 * cfg needs no change; anything else (a new name, another cfg) is asked
 * of the supervisor. Claims in progress are skipped, never buried here.
 */
static int find_slot_ro(const char *name, size_t n,
                        const weir_breaker_cfg *cfg, int32_t *slot_out,
                        char *err, size_t errlen)
{
    uint32_t h = name_hash(name, n);
    struct brk_req rq;
    struct brk_rep rep;

    for (uint32_t k = 0; k < WEIR_BREAKER_SLOTS; k++) {
        uint32_t idx = (h + k) % WEIR_BREAKER_SLOTS;
        struct slot *s = &g_tbl->slots[idx];
        uint64_t c = atomic_load_explicit(&s->claim, memory_order_acquire);

        if (c == CLAIM_EMPTY)
            break;
        if (c != CLAIM_READY || memcmp(s->name, name, n) != 0
            || s->name[n] != '\0')
            continue;
        if (cfg == NULL || same_cfg(s, cfg)) {
            *slot_out = (int32_t)idx;
            return WEIR_OK;
        }
        break;
    }
    if (cfg == NULL) {
        weir_set_err(err, errlen, "no breaker named \"%s\"", name);
        return WEIR_ENOENT;
    }
    memset(&rq, 0, sizeof rq);
    rq.op = BRK_SLOT;
    rq.threshold = cfg->threshold;
    rq.probes = cfg->half_open_probes;
    rq.window_ms = cfg->window_ms;
    rq.open_ms = cfg->open_ms;
    memcpy(rq.name, name, n);
    if (remote(&rq, &rep) != WEIR_OK) {
        weir_set_err(err, errlen, "breaker \"%s\": the supervisor did not "
                     "answer", name);
        return WEIR_EIO;
    }
    if (rep.result != WEIR_OK) {
        weir_set_err(err, errlen, "breaker \"%s\": refused by the "
                     "supervisor (%d)", name, (int)rep.result);
        return rep.result;
    }
    *slot_out = rep.value;
    return WEIR_OK;
}

/*
 * Linear probing from the name's hash; names are never removed, so the
 * first empty slot ends the search. A claim in progress may be for the
 * same name: wait for it, or bury it when it is stale.
 */
static int find_slot(const char *name, const weir_breaker_cfg *cfg,
                     bool stall, int32_t *slot_out, char *err, size_t errlen)
{
    size_t n;
    uint32_t h;
    int rc;

    if (g_tbl == NULL) {
        weir_set_err(err, errlen, "breaker: no table (call "
                     "weir_ffi_breaker_open or _attach first)");
        return WEIR_EINVAL;
    }
    if (name == NULL || slot_out == NULL) {
        weir_set_err(err, errlen, "breaker: name and slot_out required");
        return WEIR_EINVAL;
    }
    n = strnlen(name, WEIR_BREAKER_NAME_MAX + 1);
    if (n == 0 || n > WEIR_BREAKER_NAME_MAX) {
        weir_set_err(err, errlen, "breaker name %s (%zu bytes, 1..%d "
                     "allowed)", n == 0 ? "empty" : "too long",
                     n == 0 ? (size_t)0 : strlen(name),
                     WEIR_BREAKER_NAME_MAX);
        return WEIR_EINVAL;
    }
    if (cfg != NULL && (rc = check_cfg(name, cfg, err, errlen)) != WEIR_OK)
        return rc;
    if (g_ro)
        return find_slot_ro(name, n, cfg, slot_out, err, errlen);
    h = name_hash(name, n);
restart:
    for (uint32_t k = 0; k < WEIR_BREAKER_SLOTS; k++) {
        uint32_t idx = (h + k) % WEIR_BREAKER_SLOTS;
        struct slot *s = &g_tbl->slots[idx];
        uint64_t c = atomic_load_explicit(&s->claim, memory_order_acquire);

        for (;;) {
            if (c == CLAIM_READY) {
                if (memcmp(s->name, name, n) != 0 || s->name[n] != '\0')
                    break;
                if (cfg != NULL)
                    store_cfg(s, cfg);
                *slot_out = (int32_t)idx;
                return WEIR_OK;
            }
            if (c == CLAIM_DEAD)
                break;
            if (c == CLAIM_EMPTY) {
                uint64_t ms = now_us() / 1000u;
                uint64_t tok = (ms << 23) |
                               (((uint64_t)getpid() & 0x3fffffu) << 1) | 1u;
                uint64_t mine;

                if (cfg == NULL) {
                    weir_set_err(err, errlen, "no breaker named \"%s\"",
                                 name);
                    return WEIR_ENOENT;
                }
                if (!atomic_compare_exchange_strong(&s->claim, &c, tok))
                    continue;
                memset(s->name, 0, sizeof s->name);
                memcpy(s->name, name, n);
                store_cfg(s, cfg);
                if (stall) {
                    *slot_out = (int32_t)idx;
                    return WEIR_OK;
                }
                mine = tok;
                if (atomic_compare_exchange_strong_explicit(
                        &s->claim, &mine, CLAIM_READY, memory_order_release,
                        memory_order_relaxed)) {
                    *slot_out = (int32_t)idx;
                    return WEIR_OK;
                }
                /* Buried as stale while we were stopped: the name may be
                 * claimed elsewhere by now. */
                goto restart;
            }
            /* Claiming in progress. */
            if (now_us() / 1000u - (c >> 23) > CLAIM_STALE_MS) {
                if (atomic_compare_exchange_strong(&s->claim, &c, CLAIM_DEAD))
                    c = CLAIM_DEAD;
                continue;
            }
            sleep_us(200);
            c = atomic_load_explicit(&s->claim, memory_order_acquire);
        }
    }
    if (cfg == NULL) {
        weir_set_err(err, errlen, "no breaker named \"%s\"", name);
        return WEIR_ENOENT;
    }
    weir_set_err(err, errlen, "breaker table full (%d names); cannot add "
                 "\"%s\"", WEIR_BREAKER_SLOTS, name);
    return WEIR_ELIMIT;
}

WEIR_API int weir_ffi_breaker_slot(const char *name,
                                   const weir_breaker_cfg *cfg,
                                   int32_t *slot_out, char *err,
                                   size_t errlen)
{
    return find_slot(name, cfg, false, slot_out, err, errlen);
}

int weir_breaker_test_claim_stall(const char *name,
                                  const weir_breaker_cfg *cfg,
                                  int32_t *slot_out)
{
    if (cfg == NULL)
        return WEIR_EINVAL;
    return find_slot(name, cfg, true, slot_out, NULL, 0);
}

void *weir_breaker_test_table(void)
{
    return g_tbl;
}

/* The published slot, or NULL. Acquire: its cfg is visible afterwards. */
static struct slot *get_slot(int32_t slot)
{
    struct slot *s;

    if (g_tbl == NULL || slot < 0 || slot >= WEIR_BREAKER_SLOTS)
        return NULL;
    s = &g_tbl->slots[slot];
    if (atomic_load_explicit(&s->claim, memory_order_acquire) != CLAIM_READY)
        return NULL;
    return s;
}

static uint64_t cfg_open_us(struct slot *s)
{
    return (uint64_t)atomic_load_explicit(&s->open_us, memory_order_relaxed);
}

/* Has an OPEN breaker's time run out? A time further away than open_ms
 * (open_ms was lowered since) counts as run out too. */
static bool open_over(uint64_t until, uint64_t now, uint64_t open_us)
{
    return now >= until || until - now > open_us;
}

/* allow() of a worker when it would change the slot (a probe lease). */
static int remote_allow(int32_t slot, int32_t *state_out,
                        double *retry_in_ms_out)
{
    struct brk_req rq;
    struct brk_rep rep;

    memset(&rq, 0, sizeof rq);
    rq.op = BRK_ALLOW;
    rq.slot = slot;
    if (remote(&rq, &rep) != WEIR_OK) {
        /* no answer: fail fast, as an open breaker would */
        *state_out = WEIR_BREAKER_OPEN;
        return WEIR_EAGAIN;
    }
    *state_out = rep.value;
    *retry_in_ms_out = rep.retry_ms;
    return rep.result;
}

WEIR_API int weir_ffi_breaker_allow(int32_t slot, int32_t *state_out,
                                    double *retry_in_ms_out)
{
    struct slot *s = get_slot(slot);
    int32_t state_dummy;
    double retry_dummy;
    uint64_t w, now, open_us;
    unsigned maxp;

    if (state_out == NULL)
        state_out = &state_dummy;
    if (retry_in_ms_out == NULL)
        retry_in_ms_out = &retry_dummy;
    *retry_in_ms_out = 0;
    if (s == NULL) {
        *state_out = WEIR_BREAKER_CLOSED;
        return WEIR_EINVAL;
    }
    w = atomic_load_explicit(&s->word, memory_order_acquire);
    if (w_state(w) != WEIR_BREAKER_OPEN &&
        w_state(w) != WEIR_BREAKER_HALF_OPEN) {
        *state_out = WEIR_BREAKER_CLOSED;
        return WEIR_OK;
    }
    now = now_us();
    open_us = cfg_open_us(s);
    maxp = (unsigned)atomic_load_explicit(&s->probes, memory_order_relaxed);
    if (g_ro) {
        /* open and not over: no change, fail fast here */
        if (w_state(w) == WEIR_BREAKER_OPEN
            && !open_over(w_time(w), now, open_us)) {
            *state_out = WEIR_BREAKER_OPEN;
            *retry_in_ms_out = (double)(w_time(w) - now) / 1000.0;
            return WEIR_EAGAIN;
        }
        return remote_allow(slot, state_out, retry_in_ms_out);
    }
    for (;;) {
        uint64_t t = w_time(w), nw;

        if (w_state(w) == WEIR_BREAKER_OPEN) {
            if (!open_over(t, now, open_us)) {
                *state_out = WEIR_BREAKER_OPEN;
                *retry_in_ms_out = (double)(t - now) / 1000.0;
                return WEIR_EAGAIN;
            }
            nw = pack(WEIR_BREAKER_HALF_OPEN, 1, now + open_us);
        } else if (w_state(w) == WEIR_BREAKER_HALF_OPEN) {
            /* Leases run out together, open_ms after the last grant. */
            unsigned p = open_over(t, now, open_us) ? 0 : w_probes(w);

            if (p >= maxp) {
                *state_out = WEIR_BREAKER_HALF_OPEN;
                *retry_in_ms_out = (double)(t - now) / 1000.0;
                return WEIR_EAGAIN;
            }
            nw = pack(WEIR_BREAKER_HALF_OPEN, p + 1, now + open_us);
        } else {
            *state_out = WEIR_BREAKER_CLOSED;
            return WEIR_OK;
        }
        if (atomic_compare_exchange_weak_explicit(&s->word, &w, nw,
                memory_order_acq_rel, memory_order_acquire)) {
            *state_out = WEIR_BREAKER_HALF_OPEN;
            return WEIR_OK;
        }
    }
}

/* Open the breaker if it is still in state w. */
static bool trip(struct slot *s, uint64_t *w, uint64_t now)
{
    uint64_t nw = pack(WEIR_BREAKER_OPEN, 0, now + cfg_open_us(s));

    if (!atomic_compare_exchange_weak_explicit(&s->word, w, nw,
            memory_order_acq_rel, memory_order_acquire))
        return false;
    atomic_fetch_add_explicit(&s->opened, 1, memory_order_relaxed);
    return true;
}

/* The oldest failure time that still counts for a closed breaker. */
static uint64_t window_start(struct slot *s, uint64_t w, uint64_t now)
{
    uint64_t win = (uint64_t)atomic_load_explicit(&s->window_us,
                                                  memory_order_relaxed);
    uint64_t from = now > win ? now - win : 0;

    return from > w_time(w) ? from : w_time(w);
}

/* record() of a worker when it would change the slot. */
static int remote_record(int32_t slot, int32_t success)
{
    struct brk_req rq;
    struct brk_rep rep;

    memset(&rq, 0, sizeof rq);
    rq.op = BRK_RECORD;
    rq.slot = slot;
    rq.success = success != 0;
    if (remote(&rq, &rep) != WEIR_OK)
        return WEIR_EIO;
    return rep.result;
}

WEIR_API int weir_ffi_breaker_record(int32_t slot, int32_t success)
{
    struct slot *s = get_slot(slot);
    uint64_t w, now, i = 0;
    bool pushed = false;

    if (s == NULL)
        return WEIR_EINVAL;
    w = atomic_load_explicit(&s->word, memory_order_acquire);
    if (g_ro) {
        /* a change only for a probe's outcome or a failure that counts */
        if (w_state(w) == WEIR_BREAKER_OPEN
            || (success && w_state(w) != WEIR_BREAKER_HALF_OPEN))
            return WEIR_OK;
        return remote_record(slot, success);
    }
    if (success) {
        while (w_state(w) == WEIR_BREAKER_HALF_OPEN) {
            uint64_t nw = pack(WEIR_BREAKER_CLOSED, 0, now_us());

            if (atomic_compare_exchange_weak_explicit(&s->word, &w, nw,
                    memory_order_acq_rel, memory_order_acquire))
                break;
        }
        return WEIR_OK;
    }
    now = now_us();
    for (;;) {
        uint64_t thr, old;

        switch (w_state(w)) {
        case WEIR_BREAKER_OPEN:
            return WEIR_OK;  /* a call allowed before it opened */
        case WEIR_BREAKER_HALF_OPEN:
            if (trip(s, &w, now))
                return WEIR_OK;
            continue;
        default:
            break;
        }
        if (!pushed) {
            i = atomic_fetch_add_explicit(&s->head, 1, memory_order_relaxed);
            atomic_store_explicit(&s->ring[i % RING], now,
                                  memory_order_release);
            pushed = true;
        }
        thr = (uint64_t)atomic_load_explicit(&s->threshold,
                                             memory_order_relaxed);
        if (thr < 1 || thr > RING || i + 1 < thr)
            return WEIR_OK;
        /* The thr-th most recent failure decides. */
        old = atomic_load_explicit(&s->ring[(i + 1 - thr) % RING],
                                   memory_order_acquire);
        if (old == 0 || old < window_start(s, w, now))
            return WEIR_OK;
        if (trip(s, &w, now))
            return WEIR_OK;
    }
}

WEIR_API int weir_ffi_breaker_info(int32_t slot, weir_breaker_info *out)
{
    struct slot *s = get_slot(slot);
    uint64_t w, now, open_us, t;
    unsigned maxp;

    if (s == NULL || out == NULL)
        return WEIR_EINVAL;
    memset(out, 0, sizeof *out);
    w = atomic_load_explicit(&s->word, memory_order_acquire);
    now = now_us();
    open_us = cfg_open_us(s);
    maxp = (unsigned)atomic_load_explicit(&s->probes, memory_order_relaxed);
    t = w_time(w);
    out->opened_count = atomic_load_explicit(&s->opened,
                                             memory_order_relaxed);
    switch (w_state(w)) {
    case WEIR_BREAKER_OPEN:
        if (open_over(t, now, open_us)) {
            out->state = WEIR_BREAKER_HALF_OPEN;
        } else {
            out->state = WEIR_BREAKER_OPEN;
            out->retry_in_ms = (double)(t - now) / 1000.0;
        }
        break;
    case WEIR_BREAKER_HALF_OPEN:
        out->state = WEIR_BREAKER_HALF_OPEN;
        if (!open_over(t, now, open_us)) {
            out->probes = (int32_t)w_probes(w);
            if (w_probes(w) >= maxp)
                out->retry_in_ms = (double)(t - now) / 1000.0;
        }
        break;
    default: {
        uint64_t from = window_start(s, w, now);

        out->state = WEIR_BREAKER_CLOSED;
        for (int k = 0; k < RING; k++) {
            uint64_t ts = atomic_load_explicit(&s->ring[k],
                                               memory_order_relaxed);

            if (ts != 0 && ts >= from)
                out->failures++;
        }
        break;
    }
    }
    return WEIR_OK;
}

WEIR_API int32_t weir_ffi_breaker_attached(void)
{
    return g_tbl != NULL;
}

/* Is the published slot's name one of names? */
static bool slot_named(int32_t slot, const char *const *names, size_t n)
{
    struct slot *s = get_slot(slot);

    if (s == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(s->name, names[i], sizeof s->name) == 0)
            return true;
    }
    return false;
}

int weir_breaker_serve(const char *const *names, size_t nnames, int sock,
                       const void *in, size_t n)
{
    struct brk_req rq;
    struct brk_rep rep;
    int status = WEIR_OK, rc;
    bool known = false;

    memset(&rq, 0, sizeof rq);
    memcpy(&rq, in, n < sizeof rq ? n : sizeof rq);
    memset(&rep, 0, sizeof rep);
    rep.magic = BRK_MAGIC;
    rep.op = rq.op;
    rep.seq = rq.seq;
    rep.result = WEIR_EINVAL;
    if (n != sizeof rq || memchr(rq.name, '\0', sizeof rq.name) == NULL
        || g_tbl == NULL || g_ro) {
        status = WEIR_EINVAL;
    } else if (rq.op == BRK_SLOT) {
        weir_breaker_cfg cfg = { rq.threshold, rq.probes, rq.window_ms,
                                 rq.open_ms };
        int32_t slot = -1;

        for (size_t i = 0; i < nnames; i++)
            known = known || strcmp(rq.name, names[i]) == 0;
        /* only the run's own connections may take a slot */
        rep.result = known ? find_slot(rq.name, &cfg, false, &slot, NULL, 0)
                           : WEIR_EPERM;
        rep.value = slot;
    } else if (rq.op == BRK_ALLOW || rq.op == BRK_RECORD) {
        if (!slot_named(rq.slot, names, nnames)) {
            rep.result = WEIR_EPERM;
        } else if (rq.op == BRK_ALLOW) {
            rep.result = weir_ffi_breaker_allow(rq.slot, &rep.value,
                                                &rep.retry_ms);
        } else {
            rep.result = weir_ffi_breaker_record(rq.slot, rq.success);
        }
    } else {
        status = WEIR_EINVAL;
    }
    rc = weir_wire_send(sock, &rep, sizeof rep, -1);
    if (rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN)
        return WEIR_ECLOSED;
    return rc != 0 ? WEIR_EIO : status;
}
