/*
 * test_breaker.c - the shared circuit breaker: the state machine with real
 * (short) timings, state shared with fork()ed processes (inherited mapping,
 * weir_ffi_breaker_attach on the descriptor, a second open by path),
 * processes SIGKILLed mid-claim, mid-probe and in a busy loop, the table's
 * limits and its header checks.
 *
 * Relies on check.h and fork(); temp files live in a fresh directory under
 * $WEIR_TEST_TMP (or /tmp) and are removed at the end.
 */
#include "check.h"
#include "weir/breaker.h"
#include "weir/broker.h"
#include "weir/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOBODY 65534

static char dir[1024];
static char err[512];

static const char *tmp_path(const char *name)
{
    static char bufs[4][1200];
    static int next;
    char *b = bufs[next++ % 4];

    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static void msleep(double ms)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000) * 1e6);
    nanosleep(&ts, NULL);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000 + (double)ts.tv_nsec / 1e6;
}

static weir_breaker_cfg cfg(int thr, int probes, double window, double open)
{
    weir_breaker_cfg c = { thr, probes, window, open };

    return c;
}

static int32_t slot_of(const char *name, weir_breaker_cfg c)
{
    int32_t s = -1;
    int rc = weir_ffi_breaker_slot(name, &c, &s, err, sizeof err);

    if (rc != WEIR_OK)
        fprintf(stderr, "slot %s: %d %s\n", name, rc, err);
    CHECK_EQ_INT(rc, WEIR_OK);
    return s;
}

static void fail_n(int32_t s, int n)
{
    for (int i = 0; i < n; i++)
        CHECK_EQ_INT(weir_ffi_breaker_record(s, 0), WEIR_OK);
}

/* allow() and return its status; *st and *retry receive the outputs. */
static int allow(int32_t s, int32_t *st, double *retry)
{
    *st = -1;
    *retry = -1;
    return weir_ffi_breaker_allow(s, st, retry);
}

static int wait_child(pid_t pid)
{
    int status = 0;

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static void test_open(const char *path, int32_t *fd)
{
    struct stat st;

    *fd = -1;
    CHECK_EQ_INT(weir_ffi_breaker_open(path, fd, err, sizeof err), WEIR_OK);
    CHECK(*fd >= 0);
    CHECK(fstat(*fd, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    CHECK(st.st_size > 0);
    CHECK(fcntl(*fd, F_GETFD) & FD_CLOEXEC);
}

static void test_closed_to_open(void)
{
    int32_t s = slot_of("pg-open", cfg(3, 1, 1000, 100)), st;
    weir_breaker_info info;
    double retry;

    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_CLOSED);
    fail_n(s, 2);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_CLOSED);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.state, WEIR_BREAKER_CLOSED);
    CHECK_EQ_INT(info.failures, 2);
    CHECK_EQ_INT(info.opened_count, 0);
    fail_n(s, 1);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(st, WEIR_BREAKER_OPEN);
    CHECK(retry > 0 && retry <= 100);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.state, WEIR_BREAKER_OPEN);
    CHECK(info.retry_in_ms > 0 && info.retry_in_ms <= 100);
    CHECK_EQ_INT(info.opened_count, 1);
}

static void test_window(void)
{
    int32_t s = slot_of("pg-window", cfg(3, 1, 40, 100)), st;
    weir_breaker_info info;
    double retry;

    fail_n(s, 2);
    msleep(60);
    fail_n(s, 1);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_CLOSED);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.failures, 1);
    fail_n(s, 2);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(st, WEIR_BREAKER_OPEN);
}

static void test_half_open(void)
{
    int32_t s = slot_of("pg-half", cfg(2, 2, 1000, 50)), st;
    weir_breaker_info info;
    double retry;

    fail_n(s, 2);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    msleep(60);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.state, WEIR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(info.probes, 0);
    /* Exactly half_open_probes calls go through. */
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(st, WEIR_BREAKER_HALF_OPEN);
    CHECK(retry > 0 && retry <= 50);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.probes, 2);
    /* A probe success closes it; failures from before do not count. */
    CHECK_EQ_INT(weir_ffi_breaker_record(s, 1), WEIR_OK);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_CLOSED);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.failures, 0);
    fail_n(s, 1);  /* the second probe's outcome, now in closed */
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_CLOSED);
    fail_n(s, 1);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.opened_count, 2);
    /* A probe failure opens it again for a new open_ms. */
    msleep(60);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(weir_ffi_breaker_record(s, 0), WEIR_OK);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(st, WEIR_BREAKER_OPEN);
    CHECK(retry > 40 && retry <= 50);
    /* Late outcomes while open change nothing. */
    CHECK_EQ_INT(weir_ffi_breaker_record(s, 1), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_breaker_record(s, 0), WEIR_OK);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.state, WEIR_BREAKER_OPEN);
    CHECK_EQ_INT(info.opened_count, 3);
}

/* Become a worker: nobody (when root), no_new_privs, the seccomp filter;
 * then prove that open() is refused. */
static int lock_down(void)
{
    if (getuid() == 0 && (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 ||
                          setuid(NOBODY) != 0))
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        weir_seccomp_install() != 0)
        return -1;
    if (open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0 || errno != EPERM)
        return -1;
    return 0;
}

/* mode 0: inherited mapping, 1: attach(fd), 2: a second open by path,
 * 3: attach(fd) in a locked-down worker. */
static void test_shared(const char *path, int32_t fd, int mode)
{
    static const char *names[] = { "shared-inherit", "shared-attach",
                                   "shared-open", "shared-worker" };
    weir_breaker_info info;
    int32_t s = -1, st;
    double retry;
    pid_t pid = fork();

    if (pid == 0) {
        int32_t cs, cfd;
        weir_breaker_cfg c = cfg(3, 1, 1000, 5000);

        if (mode == 3) {
            /* As exec.c hands it over: a copy at another number, and no
             * inherited mapping. */
            int wfd = fcntl(fd, F_DUPFD_CLOEXEC, 10);

            weir_ffi_breaker_close();
            if (wfd < 0 || lock_down() != 0)
                _exit(9);
            if (weir_ffi_breaker_attach(wfd, err, sizeof err) != 0)
                _exit(10);
        }
        if (mode == 1 && weir_ffi_breaker_attach(fd, err, sizeof err) != 0)
            _exit(10);
        if (mode == 2 &&
            weir_ffi_breaker_open(path, &cfd, err, sizeof err) != 0)
            _exit(11);
        if (weir_ffi_breaker_slot(names[mode], &c, &cs, err, sizeof err) !=
            WEIR_OK)
            _exit(12);
        for (int i = 0; i < 3; i++)
            if (weir_ffi_breaker_record(cs, 0) != WEIR_OK)
                _exit(13);
        _exit(0);
    }
    CHECK(pid > 0);
    CHECK_EQ_INT(wait_child(pid), 0);
    /* The child claimed the name: a look-up without cfg finds it. */
    CHECK_EQ_INT(weir_ffi_breaker_slot(names[mode], NULL, &s, err,
                                       sizeof err), WEIR_OK);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(st, WEIR_BREAKER_OPEN);
    CHECK(retry > 0 && retry <= 5000);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.opened_count, 1);
}

/* In a fork()ed child: drop the inherited table and map the read-only
 * descriptor instead, as a worker does. 0, or -1. */
static int attach_reader(int32_t rfd)
{
    int wfd = fcntl(rfd, F_DUPFD_CLOEXEC, 10);

    weir_ffi_breaker_close();
    if (wfd < 0 || weir_ffi_breaker_attach(wfd, err, sizeof err) != 0)
        return -1;
    close(wfd);
    return 0;
}

/*
 * A worker's table: the reader descriptor maps read-only, the kernel
 * refuses to make the mapping writable and a write through it kills the
 * process; every change goes to the supervisor over the broker socket,
 * which makes it for the breakers it allowed and refuses the others.
 */
static void test_readonly(void)
{
    weir_broker *b = NULL;
    weir_breaker_info info;
    int32_t rfd = -1, s = -1, st;
    double retry;
    int sp[2];
    pid_t pid;

    CHECK_EQ_INT(weir_ffi_breaker_reader(&rfd, err, sizeof err), WEIR_OK);
    CHECK((fcntl(rfd, F_GETFL) & O_ACCMODE) == O_RDONLY);
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    CHECK_EQ_INT(weir_broker_new(NULL, 0, &b, err, sizeof err), WEIR_OK);
    CHECK_EQ_INT(weir_broker_allow_breaker(b, "ro-mine", err, sizeof err),
                 WEIR_OK);
    pid = fork();
    if (pid == 0) {
        weir_breaker_cfg c = cfg(2, 1, 1000, 5000);
        int32_t cs = -1, other = -1, cst;
        double cretry;
        char *tbl;

        close(sp[0]);
        if (attach_reader(rfd) != 0)
            _exit(10);
        tbl = weir_breaker_test_table();
        /* read-only for good: not even mprotect makes it writable */
        if (mprotect(tbl, 4096, PROT_READ | PROT_WRITE) == 0
            || errno != EACCES)
            _exit(11);
        if (weir_broker_client_init(sp[1]) != WEIR_OK)
            _exit(12);
        /* a new name is claimed by the supervisor; a foreign one refused */
        if (weir_ffi_breaker_slot("ro-mine", &c, &cs, err, sizeof err) != 0)
            _exit(13);
        if (weir_ffi_breaker_slot("ro-other", &c, &other, err, sizeof err)
            != WEIR_EPERM)
            _exit(14);
        /* closed: a local read; two failures open it, through the broker */
        if (weir_ffi_breaker_allow(cs, &cst, &cretry) != WEIR_OK
            || weir_ffi_breaker_record(cs, 1) != WEIR_OK
            || weir_ffi_breaker_record(cs, 0) != WEIR_OK
            || weir_ffi_breaker_record(cs, 0) != WEIR_OK)
            _exit(15);
        if (weir_ffi_breaker_allow(cs, &cst, &cretry) != WEIR_EAGAIN
            || cst != WEIR_BREAKER_OPEN)
            _exit(16);
        weir_broker_client_reset();
        _exit(0);
    }
    CHECK(pid > 0);
    close(sp[1]);
    while (weir_broker_handle(b, sp[0]) != WEIR_ECLOSED)
        ;
    CHECK_EQ_INT(wait_child(pid), 0);
    close(sp[0]);
    weir_broker_delete(b);
    CHECK_EQ_INT(weir_ffi_breaker_slot("ro-mine", NULL, &s, err, sizeof err),
                 WEIR_OK);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK_EQ_INT(info.opened_count, 1);
    CHECK_EQ_INT(weir_ffi_breaker_slot("ro-other", NULL, &s, err, sizeof err),
                 WEIR_ENOENT);

    /* a write through the read-only mapping faults (SIGSEGV; under
     * AddressSanitizer its handler reports it and exits 1) */
    pid = fork();
    if (pid == 0) {
        volatile char *tbl;

        if (attach_reader(rfd) != 0)
            _exit(10);
        tbl = weir_breaker_test_table();
        tbl[128] = 1;
        _exit(0);
    }
    CHECK(pid > 0);
    st = wait_child(pid);
    CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV)
          || (WIFEXITED(st) && WEXITSTATUS(st) == 1));
}

static void test_killed_mid_probe(void)
{
    int32_t s = slot_of("probe-kill", cfg(1, 1, 1000, 80)), st;
    double retry;
    int status;
    pid_t pid;

    fail_n(s, 1);
    msleep(90);
    pid = fork();
    if (pid == 0) {
        int32_t cst;
        double cr;

        if (weir_ffi_breaker_allow(s, &cst, &cr) == WEIR_OK &&
            cst == WEIR_BREAKER_HALF_OPEN)
            raise(SIGKILL);  /* dies holding the only probe */
        _exit(1);
    }
    status = wait_child(pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    CHECK_EQ_INT(st, WEIR_BREAKER_HALF_OPEN);
    CHECK(retry > 0 && retry <= 80);
    /* The lease runs out open_ms after it was granted. */
    msleep(retry + 5);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_HALF_OPEN);
    CHECK_EQ_INT(weir_ffi_breaker_record(s, 1), WEIR_OK);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    CHECK_EQ_INT(st, WEIR_BREAKER_CLOSED);
}

static void test_killed_mid_claim(void)
{
    weir_breaker_cfg c = cfg(2, 1, 1000, 100);
    int32_t stalled = -1, s = -1, again = -1, st;
    int fds[2];
    double t0, took, retry;
    pid_t pid;

    CHECK(pipe(fds) == 0);
    pid = fork();
    if (pid == 0) {
        int32_t cs = -1;

        close(fds[0]);
        if (weir_breaker_test_claim_stall("stuck", &c, &cs) != WEIR_OK)
            _exit(1);
        if (write(fds[1], &cs, sizeof cs) != (ssize_t)sizeof cs)
            _exit(2);
        pause();  /* killed by the parent in the middle of the claim */
        _exit(3);
    }
    close(fds[1]);
    CHECK(read(fds[0], &stalled, sizeof stalled) == (ssize_t)sizeof stalled);
    close(fds[0]);
    CHECK(stalled >= 0);
    kill(pid, SIGKILL);
    CHECK(WIFSIGNALED(wait_child(pid)));
    /* An unpublished slot is not usable. */
    CHECK_EQ_INT(weir_ffi_breaker_allow(stalled, NULL, NULL), WEIR_EINVAL);
    t0 = now_ms();
    CHECK_EQ_INT(weir_ffi_breaker_slot("stuck", &c, &s, err, sizeof err),
                 WEIR_OK);
    took = now_ms() - t0;
    CHECK(took >= 200 && took < 1000);
    CHECK(s >= 0 && s != stalled);
    CHECK_EQ_INT(weir_ffi_breaker_slot("stuck", NULL, &again, err,
                                       sizeof err), WEIR_OK);
    CHECK_EQ_INT(again, s);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_OK);
    fail_n(s, 2);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
}

/* Processes hammering one breaker, SIGKILLed at arbitrary points. */
static void test_killed_busy(void)
{
    int32_t s = slot_of("busy", cfg(3, 2, 20, 5)), st;
    weir_breaker_info info;
    pid_t pids[4];
    double retry, t0;
    int ok = 0;

    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            for (unsigned n = (unsigned)i;; n++) {
                int32_t cst;
                double cr;

                if (weir_ffi_breaker_allow(s, &cst, &cr) == WEIR_OK)
                    weir_ffi_breaker_record(s, (n % 3) == 0);
            }
        }
        CHECK(pids[i] > 0);
    }
    for (int i = 0; i < 4; i++) {
        msleep(20 + 7 * i);
        kill(pids[i], SIGKILL);
        CHECK(WIFSIGNALED(wait_child(pids[i])));
    }
    CHECK_EQ_INT(weir_ffi_breaker_info(s, &info), WEIR_OK);
    CHECK(info.state >= WEIR_BREAKER_CLOSED &&
          info.state <= WEIR_BREAKER_HALF_OPEN);
    CHECK(info.probes >= 0 && info.probes <= 2);
    CHECK(info.opened_count > 0);
    /* Whatever the children left, it closes again with a probe success. */
    t0 = now_ms();
    while (now_ms() - t0 < 100) {
        if (allow(s, &st, &retry) == WEIR_OK) {
            CHECK_EQ_INT(weir_ffi_breaker_record(s, 1), WEIR_OK);
            if (allow(s, &st, &retry) == WEIR_OK &&
                st == WEIR_BREAKER_CLOSED) {
                ok = 1;
                break;
            }
        }
        msleep(1);
    }
    CHECK(ok);
}

static void test_names_and_args(void)
{
    weir_breaker_cfg c = cfg(1, 1, 10, 10), bad;
    char name[80];
    int32_t s = -1;
    weir_breaker_info info;

    memset(name, 'a', sizeof name);
    name[63] = '\0';
    CHECK_EQ_INT(weir_ffi_breaker_slot(name, &c, &s, err, sizeof err),
                 WEIR_OK);
    name[63] = 'a';
    name[64] = '\0';
    CHECK_EQ_INT(weir_ffi_breaker_slot(name, &c, &s, err, sizeof err),
                 WEIR_EINVAL);
    CHECK(strstr(err, "too long") != NULL);
    name[79] = '\0';
    CHECK_EQ_INT(weir_ffi_breaker_slot(name, &c, &s, err, sizeof err),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_breaker_slot("", &c, &s, err, sizeof err),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_breaker_slot(NULL, &c, &s, err, sizeof err),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_breaker_slot("x", &c, NULL, err, sizeof err),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_breaker_slot("nobody-claimed-me", NULL, &s, err,
                                       sizeof err), WEIR_ENOENT);
    CHECK(strstr(err, "nobody-claimed-me") != NULL);

    bad = cfg(0, 1, 10, 10);
    CHECK_EQ_INT(weir_ffi_breaker_slot("x", &bad, &s, err, sizeof err),
                 WEIR_EINVAL);
    bad = cfg(WEIR_BREAKER_MAX_THRESHOLD + 1, 1, 10, 10);
    CHECK_EQ_INT(weir_ffi_breaker_slot("x", &bad, &s, err, sizeof err),
                 WEIR_EINVAL);
    bad = cfg(1, 0, 10, 10);
    CHECK_EQ_INT(weir_ffi_breaker_slot("x", &bad, &s, err, sizeof err),
                 WEIR_EINVAL);
    bad = cfg(1, 1, 0, 10);
    CHECK_EQ_INT(weir_ffi_breaker_slot("x", &bad, &s, err, sizeof err),
                 WEIR_EINVAL);
    bad = cfg(1, 1, 10, NAN);
    CHECK_EQ_INT(weir_ffi_breaker_slot("x", &bad, &s, err, sizeof err),
                 WEIR_EINVAL);
    /* Nothing was claimed by the refused calls. */
    CHECK_EQ_INT(weir_ffi_breaker_slot("x", NULL, &s, err, sizeof err),
                 WEIR_ENOENT);

    CHECK_EQ_INT(weir_ffi_breaker_allow(-1, NULL, NULL), WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_breaker_allow(WEIR_BREAKER_SLOTS, NULL, NULL),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_breaker_record(-1, 0), WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_breaker_info(-1, &info), WEIR_EINVAL);
}

static void test_table_full(const char *path)
{
    weir_breaker_cfg c = cfg(1, 1, 10, 10);
    char used[WEIR_BREAKER_SLOTS] = { 0 };
    char name[32];
    int32_t fd, s = -1, distinct = 0, ok = 0;

    CHECK_EQ_INT(weir_ffi_breaker_open(path, &fd, err, sizeof err), WEIR_OK);
    for (int i = 0; i < WEIR_BREAKER_SLOTS; i++) {
        snprintf(name, sizeof name, "conn-%d", i);
        if (weir_ffi_breaker_slot(name, &c, &s, err, sizeof err) == WEIR_OK)
            ok++;
        if (s >= 0 && s < WEIR_BREAKER_SLOTS && !used[s]) {
            used[s] = 1;
            distinct++;
        }
    }
    CHECK_EQ_INT(ok, WEIR_BREAKER_SLOTS);
    CHECK_EQ_INT(distinct, WEIR_BREAKER_SLOTS);
    CHECK_EQ_INT(weir_ffi_breaker_slot("one-more", &c, &s, err, sizeof err),
                 WEIR_ELIMIT);
    CHECK(strstr(err, "full") != NULL);
    CHECK_EQ_INT(weir_ffi_breaker_slot("one-more", NULL, &s, err,
                                       sizeof err), WEIR_ENOENT);
    CHECK_EQ_INT(weir_ffi_breaker_slot("conn-7", &c, &s, err, sizeof err),
                 WEIR_OK);
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* Overwrite len bytes at off in the file at path. */
static void patch(const char *path, off_t off, const void *data, size_t len)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);

    CHECK(fd >= 0);
    CHECK(pwrite(fd, data, len, off) == (ssize_t)len);
    close(fd);
}

static void test_header(const char *path, const char *foreign)
{
    weir_breaker_cfg c = cfg(1, 1, 1000, 1000);
    uint32_t v99 = 99;
    int32_t fd, s = -1, st, pfd;
    double retry;
    char buf[64];
    FILE *f;
    int fds[2], ready[2];
    pid_t pid;

    /* A foreign file is refused and left alone. */
    put_file(foreign, "not a breaker table, just some text\n");
    CHECK_EQ_INT(weir_ffi_breaker_open(foreign, &fd, err, sizeof err),
                 WEIR_EPARSE);
    CHECK(strstr(err, "not a weir breaker table") != NULL);
    f = fopen(foreign, "r");
    CHECK(f != NULL && fgets(buf, sizeof buf, f) != NULL &&
          strcmp(buf, "not a breaker table, just some text\n") == 0);
    if (f != NULL)
        fclose(f);
    pfd = open(foreign, O_RDWR | O_CLOEXEC);
    CHECK_EQ_INT(weir_ffi_breaker_attach(pfd, err, sizeof err), WEIR_EPARSE);
    close(pfd);
    CHECK_EQ_INT(weir_ffi_breaker_attach(-1, err, sizeof err), WEIR_EINVAL);
    CHECK(pipe(fds) == 0);
    CHECK_EQ_INT(weir_ffi_breaker_attach(fds[0], err, sizeof err),
                 WEIR_EINVAL);
    close(fds[0]);
    close(fds[1]);
    CHECK_EQ_INT(weir_ffi_breaker_open(dir, &fd, err, sizeof err),
                 WEIR_EINVAL);

    /* A table of another layout while someone uses it: refused, and the
     * table this process had stays in place. */
    CHECK_EQ_INT(weir_ffi_breaker_open(path, &fd, err, sizeof err), WEIR_OK);
    s = slot_of("kept", c);
    CHECK(pipe(fds) == 0);
    CHECK(pipe(ready) == 0);
    pid = fork();
    if (pid == 0) {
        int32_t cfd;

        close(fds[1]);
        close(ready[0]);
        weir_ffi_breaker_close();
        if (weir_ffi_breaker_open(path, &cfd, err, sizeof err) != WEIR_OK)
            _exit(1);
        if (write(ready[1], "r", 1) != 1)
            _exit(2);
        if (read(fds[0], buf, 1) < 0)  /* hold it until told to go */
            _exit(3);
        _exit(0);
    }
    close(fds[0]);
    close(ready[1]);
    weir_ffi_breaker_close();
    CHECK(read(ready[0], buf, 1) == 1);
    close(ready[0]);
    patch(path, 8, &v99, sizeof v99);
    CHECK_EQ_INT(weir_ffi_breaker_open(path, &fd, err, sizeof err),
                 WEIR_EPARSE);
    CHECK(strstr(err, "in use") != NULL);
    close(fds[1]);
    CHECK_EQ_INT(wait_child(pid), 0);

    /* Nobody uses it now: re-initialised, its breakers are gone. */
    CHECK_EQ_INT(weir_ffi_breaker_open(path, &fd, err, sizeof err), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_breaker_slot("kept", NULL, &s, err, sizeof err),
                 WEIR_ENOENT);
    s = slot_of("kept", c);
    fail_n(s, 1);
    weir_ffi_breaker_close();

    /* Same boot: state survives a reopen. */
    CHECK_EQ_INT(weir_ffi_breaker_open(path, &fd, err, sizeof err), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_breaker_slot("kept", NULL, &s, err, sizeof err),
                 WEIR_OK);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    /* A failed open keeps the current table. */
    CHECK_EQ_INT(weir_ffi_breaker_open(foreign, &pfd, err, sizeof err),
                 WEIR_EPARSE);
    CHECK_EQ_INT(allow(s, &st, &retry), WEIR_EAGAIN);
    weir_ffi_breaker_close();

    /* Another boot's table (CLOCK_MONOTONIC restarted) is reset. */
    patch(path, 24, "another-boot", 13);
    CHECK_EQ_INT(weir_ffi_breaker_open(path, &fd, err, sizeof err), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_breaker_slot("kept", NULL, &s, err, sizeof err),
                 WEIR_ENOENT);
    weir_ffi_breaker_close();
    CHECK_EQ_INT(weir_ffi_breaker_slot("kept", NULL, &s, err, sizeof err),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_breaker_close(), WEIR_OK);
}

int main(void)
{
    const char *base = getenv("WEIR_TEST_TMP");
    int32_t fd = -1;

    alarm(10);  /* a process blocked by a dead one fails the test */
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0700);
    snprintf(dir, sizeof dir, "%s/breaker-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror(dir);
        return 2;
    }

    test_open(tmp_path("breakers"), &fd);
    test_closed_to_open();
    test_window();
    test_half_open();
    test_shared(tmp_path("breakers"), fd, 0);
    test_shared(tmp_path("breakers"), fd, 1);
    test_shared(tmp_path("breakers"), fd, 2);
    test_shared(tmp_path("breakers"), fd, 3);
    test_readonly();
    test_killed_mid_probe();
    test_killed_mid_claim();
    test_killed_busy();
    test_names_and_args();
    test_table_full(tmp_path("full"));
    test_header(tmp_path("hdr"), tmp_path("foreign"));

    unlink(tmp_path("breakers"));
    unlink(tmp_path("full"));
    unlink(tmp_path("hdr"));
    unlink(tmp_path("foreign"));
    rmdir(dir);
    return CHECK_DONE();
}
