/*
 * bench_spin.c - the timing of the bounded busy-poll (runtime/spin.c),
 * which tests/c/test_spin.c leaves out because it depends on the
 * scheduler and on whatever else the machine runs:
 *   1. an idle descriptor: how long a wait with a 2000 us budget takes
 *      (the claim: at least the budget, unless the waiter backed off), and
 *      how many of the waits backed off with no competitor started;
 *   2. a ready descriptor: how long until the wait returns (the claim:
 *      at once, far under the budget);
 *   3. a competitor pinned to the waiter's CPU: whether the waiter notices
 *      and backs off, and how long that takes (the claim: well under the
 *      1 s budget), then that backing-off waits return without polling.
 *
 * Usage: bench_spin [waits]   prints medians and counts, never asserts.
 * Relies on fork and sched_setaffinity (the competitor is pinned).
 */
#include "weir/spin.h"

#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static void report(const char *what, int64_t *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp);
    printf("%s: n=%d min %lld us median %lld us p90 %lld us max %lld us\n",
           what, n, (long long)t[0], (long long)t[n / 2],
           (long long)t[n * 9 / 10], (long long)t[n - 1]);
}

/* n waits with nothing to read, each from a fresh waiter: their times in
 * t; how many backed off. */
static int idle_waits(struct pollfd *p, int n, int budget_us, int64_t *t)
{
    int backed = 0;

    for (int i = 0; i < n; i++) {
        weir_spin s = { 0 };
        int64_t t0 = mono_us();

        weir_spin_poll(&s, p, 1, budget_us);
        t[i] = mono_us() - t0;
        backed += s.off > 0;
    }
    return backed;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    int sv[2], backed, rc;
    struct pollfd p;
    weir_spin s = { 0 };
    int64_t *t = malloc(sizeof *t * (size_t)(n > 0 ? n : 1)), t0;
    cpu_set_t one;
    pid_t hog;
    char c;

    if (n <= 0 || t == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 1;
    p.fd = sv[0];
    p.events = POLLIN;

    /* 1. idle, 2000 us budget */
    backed = idle_waits(&p, n, 2000, t);
    report("idle wait, budget 2000 us", t, n);
    printf("  backed off without a competitor: %d of %d\n", backed, n);

    /* 2. ready at once */
    for (int i = 0; i < n; i++) {
        s.off = 0;
        if (write(sv[1], "x", 1) != 1)
            return 1;
        t0 = mono_us();
        rc = weir_spin_poll(&s, &p, 1, 2000000);
        t[i] = mono_us() - t0;
        if (rc != 1 || read(sv[0], &c, 1) != 1)
            return 1;
    }
    report("ready descriptor, budget 2 s", t, n);

    /* 3. a competitor on the same CPU */
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) {
        perror("sched_setaffinity");
        return 1;
    }
    hog = fork();
    if (hog < 0)
        return 1;
    if (hog == 0) {
        /* never outlive the benchmark, whatever happens to it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(60);
        for (;;) {
        }
    }
    usleep(20000); /* let it run */
    backed = idle_waits(&p, n, 1000000, t);
    report("idle wait beside a pinned competitor, budget 1 s", t, n);
    printf("  backed off: %d of %d\n", backed, n);
    {
        int off;

        s.off = 2;
        off = s.off;
        t0 = mono_us();
        weir_spin_poll(&s, &p, 1, 1000000);
        printf("  a wait while backing off: %lld us, waits left %d -> %d\n",
               (long long)(mono_us() - t0), off, s.off);
    }
    kill(hog, SIGKILL);
    waitpid(hog, NULL, 0);
    close(sv[0]);
    close(sv[1]);
    free(t);
    return 0;
}
