/*
 * worker.c - `weir __worker`: the process a task attempt runs in. It locks
 * itself down first (drops to an unprivileged user when root, no new
 * privileges, not dumpable, killed when the supervisor dies, rlimits on
 * cores, files, processes and address space, cwd "/", a seccomp filter),
 * routes all file access through the supervisor's broker (fd 4), and its
 * socket() and connect() calls too (interpose.c), then answers job frames
 * from fd 3: each job gets a fresh Lua state with its own memory cap (made
 * ready while the worker waits for the job), runs the trusted weir._worker
 * module on the payload and sends back what it returns. A job sent with
 * WEIR_JOB_KEEP (weir repl) leaves its state for the next job: a session,
 * which SIGINT interrupts without ending it. Relies on Linux prctl.
 */
#include "weir/breaker.h"
#include "weir/broker.h"
#include "weir/connectors.h"
#include "weir/exec.h"
#include "weir/lstate.h"
#include "weir/net.h"
#include "weir/seccomp.h"
#include "weir/ser.h"
#include "weir/spin.h"
#include <fcntl.h>

#include <errno.h>
#include <grp.h>
#include <lauxlib.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;

    while (n > 0) {
        ssize_t k = read(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_full(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int send_result(const char *data, size_t len)
{
    char hdr[WEIR_FRAME_HDR];
    uint32_t l = (uint32_t)len, t = WEIR_FRAME_RESULT;
    uint64_t z = 0;
    struct iovec iov[2];
    ssize_t k;

    memcpy(hdr, &l, 4);
    memcpy(hdr + 4, &t, 4);
    memcpy(hdr + 8, &z, 8);
    /* one write for a whole result in the common case (one wake-up) */
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof hdr;
    iov[1].iov_base = (void *)data;
    iov[1].iov_len = len;
    do
        k = writev(3, iov, 2);
    while (k < 0 && errno == EINTR);
    if (k < 0)
        return -1;
    if ((size_t)k < sizeof hdr) {
        if (write_full(3, hdr + k, sizeof hdr - (size_t)k) != 0)
            return -1;
        k = 0;
    } else {
        k -= (ssize_t)sizeof hdr;
    }
    return write_full(3, data + k, len - (size_t)k);
}

/* Before sleeping on the next job, poll for it a while (spin.h): a job
 * sent to a sleeping worker costs a cross-CPU wake-up, about 55 us here,
 * more than a short task itself. */
#define WORKER_SPIN_US 200

static void await_job(void)
{
    static weir_spin spin;
    struct pollfd p = { 3, POLLIN, 0 };

    (void)weir_spin_poll(&spin, &p, 1, WORKER_SPIN_US);
}

/* A failure result built without Lua (the state may be out of memory):
 * { status = "failed", kind = kind, error = msg }, msg cut at 1024 bytes,
 * in the weir._ser format through the C codec. */
static int send_failure(const char *kind, const char *msg)
{
    const char *keys[3] = { "status", "kind", "error" };
    const char *vals[3] = { "failed", kind, msg };
    size_t lens[3] = { 6, strlen(kind), strnlen(msg, 1024) };
    weir_buf out = {0};
    int rc = -1;

    if (weir_ser_put_fields(&out, 3, keys, vals, lens) == WEIR_OK)
        rc = send_result(out.data, out.len);
    weir_buf_free(&out);
    return rc;
}

static int lock_down(const char *user, long long as, int nofile,
                     pid_t parent)
{
    struct rlimit rl;

    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(user);
        if (pw == NULL || pw->pw_uid == 0) {
            fprintf(stderr, "weir worker: user \"%s\" not usable\n", user);
            return -1;
        }
        if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 ||
            setuid(pw->pw_uid) != 0 || setuid(0) == 0) {
            fprintf(stderr, "weir worker: cannot drop privileges: %s\n",
                    strerror(errno));
            return -1;
        }
    }
    /* die with the supervisor (set after setuid, which clears it) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
        (parent > 0 && getppid() != parent))
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max = 0;
    setrlimit(RLIMIT_CORE, &rl);
    setrlimit(RLIMIT_NPROC, &rl);
    rl.rlim_cur = rl.rlim_max = (rlim_t)nofile;
    setrlimit(RLIMIT_NOFILE, &rl);
#ifndef WEIR_ASAN
    if (as > 0) {
        rl.rlim_cur = rl.rlim_max = (rlim_t)as;
        setrlimit(RLIMIT_AS, &rl);
    }
#else
    (void)as;
#endif
    if (chdir("/") != 0)
        return -1;
    return 0;
}

/*
 * A state made ready before its job arrives: created, weir._worker loaded
 * and its prepare() run, so that only the job itself is on the critical
 * path. It has never run user code; its cap is set when the job says it.
 */
typedef struct {
    weir_alloc_acc acc;
    lua_State *L;
    char err[512];
} prepared_t;

static void prepare(prepared_t *p)
{
    memset(&p->acc, 0, sizeof p->acc);
    p->err[0] = '\0';
    p->L = weir_state_new_attempt(&p->acc);
    if (p->L == NULL) {
        snprintf(p->err, sizeof p->err, "cannot create a Lua state");
        return;
    }
    if (weir_state_load_embedded(p->L, "weir._worker") != 0 ||
        lua_pcall(p->L, 0, 1, 0) != 0) {
        snprintf(p->err, sizeof p->err, "worker bootstrap: %s",
                 lua_isstring(p->L, -1) ? lua_tostring(p->L, -1) : "?");
        lua_close(p->L);
        p->L = NULL;
        return;
    }
    lua_getfield(p->L, -1, "prepare");
    if (lua_pcall(p->L, 0, 0, 0) != 0) {
        snprintf(p->err, sizeof p->err, "worker bootstrap: %s",
                 lua_isstring(p->L, -1) ? lua_tostring(p->L, -1) : "?");
        lua_close(p->L);
        p->L = NULL;
    }
}

/* The state of the session job running now (WEIR_JOB_KEEP), which SIGINT
 * interrupts: the hook raises at the next instruction the interpreter
 * runs (compiled traces never check hooks: the REPL then kills the
 * worker after a grace period). */
static lua_State *volatile interrupt_L;

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted");
}

static void on_interrupt(int sig)
{
    lua_State *L = interrupt_L;

    (void)sig;
    if (L != NULL)
        lua_sethook(L, stop_hook,
                    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* Run one job in p's state; returns 1 when the state stays for the next
 * job (a session job that ended normally), else closes it. */
static int run_job(prepared_t *p, const char *payload, size_t len,
                   uint64_t arg)
{
    lua_State *L = p->L;
    char msg[1024];
    size_t rlen;
    const char *r;
    int keep = (arg & WEIR_JOB_KEEP) != 0, rc;
    uint64_t cap = arg & ~WEIR_JOB_KEEP;

    if (L == NULL) {
        send_failure("internal", p->err);
        return 0;
    }
    p->acc.cap = (size_t)cap;
    if (p->acc.cap && p->acc.used > p->acc.cap) {
        snprintf(msg, sizeof msg, "memory limit of %zu bytes is below what "
                 "the sandbox itself needs (%zu)", p->acc.cap, p->acc.used);
        send_failure("memory", msg);
        lua_close(L);
        return 0;
    }
    lua_getfield(L, -1, "handle");
    lua_pushlstring(L, payload, len);
    if (keep)
        interrupt_L = L;
    rc = lua_pcall(L, 1, 1, 0);
    interrupt_L = NULL;
    lua_sethook(L, NULL, 0, 0);
    if (rc != 0 || !lua_isstring(L, -1)) {
        if (p->acc.exceeded)
            snprintf(msg, sizeof msg, "memory limit of %zu bytes exceeded",
                     p->acc.cap);
        else
            snprintf(msg, sizeof msg, "%s",
                     lua_isstring(L, -1) ? lua_tostring(L, -1)
                                         : "worker returned no result");
        send_failure(p->acc.exceeded ? "memory" : "internal", msg);
        lua_close(L);
        return 0;
    }
    r = lua_tolstring(L, -1, &rlen);
    send_result(r, rlen);
    if (keep) {
        lua_settop(L, 1); /* the weir._worker module, for the next job */
        return 1;
    }
    lua_close(L);
    return 0;
}

int weir_worker_main(int argc, char **argv)
{
    const char *user = "nobody";
    long long as = 0;
    int nofile = 64;
    pid_t parent = 0;
    int preload = 0;

    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--user") == 0)
            user = argv[i + 1];
        else if (strcmp(argv[i], "--as") == 0)
            as = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--nofile") == 0)
            nofile = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--parent") == 0)
            parent = (pid_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--preload") == 0)
            preload = atoi(argv[i + 1]);
    }
    if (lock_down(user, as, nofile, parent) != 0)
        return 70;
    weir_broker_client_init(4);
    /* from here on socket() and connect() ask the supervisor (interpose.c) */
    weir_net_client_init();
    if (fcntl(5, F_GETFD) >= 0) {
        /* the shared breaker table (breaker.h), mapped before the filter */
        char berr[256];

        if (weir_ffi_breaker_attach(5, berr, sizeof berr) != WEIR_OK)
            fprintf(stderr, "weir worker: breakers: %s\n", berr);
        close(5);
    }
    {
        /* SQLite seeds its PRNG from /dev/urandom on first use: do it now,
         * before the filter closes open() */
        char seed[16];
        sqlite3_randomness(sizeof seed, seed);
    }
    for (const weir_connector_desc *const *d = weir_connectors; *d; d++) {
        /* what a connector needs before the filter closes open(), when
         * the supervisor asked for it (libpq: pg.c) */
        char perr[256];

        if ((*d)->preload != NULL && (preload & (*d)->preload_bit)
            && (*d)->preload(perr, sizeof perr) != WEIR_OK)
            fprintf(stderr, "weir worker: %s\n", perr);
    }
    {
        struct sigaction sa;

        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_interrupt;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
    }
    weir_state_progress_fd(3);
    if (weir_seccomp_install() != 0) {
        fprintf(stderr, "weir worker: cannot install the seccomp filter: "
                "%s\n", strerror(errno));
        return 72;
    }
    for (;;) {
        /* static: a snapshot is tied to the address of its acc */
        static prepared_t prep;
        static int snapshot, kept;
        char hdr[WEIR_FRAME_HDR];
        uint32_t len;
        uint64_t arg;
        char *payload;

        /* the first state is built and saved; each next one is that
         * snapshot restored (ADR 9), or built again if it cannot be; a
         * session's state stays as its last job left it */
        if (!kept) {
            prep.L = snapshot ? weir_state_snapshot_restore(&prep.acc) : NULL;
            if (prep.L != NULL) {
                lua_settop(prep.L, 1); /* the weir._worker module */
                prep.err[0] = '\0';
            } else {
                prepare(&prep);
                if (!snapshot && prep.L != NULL)
                    snapshot =
                        weir_state_snapshot_save(prep.L, &prep.acc) == 0;
            }
        }
        await_job();
        if (read_full(3, hdr, sizeof hdr) != 0) {
            if (prep.L != NULL)
                lua_close(prep.L);
            return 0;
        }
        memcpy(&len, hdr, 4);
        memcpy(&arg, hdr + 8, 8);
        payload = malloc(len ? len : 1);
        if (payload == NULL || read_full(3, payload, len) != 0) {
            free(payload);
            if (prep.L != NULL)
                lua_close(prep.L);
            return 71;
        }
        kept = run_job(&prep, payload, len, arg);
        if (!kept)
            prep.L = NULL;
        free(payload);
    }
}
