/*
 * test_spin.c - unit tests for the bounded busy-poll (runtime/spin.c): a
 * ready descriptor returns at once; an idle one gives up after the budget;
 * a process competing for the same CPU makes the waiter back off, so the
 * next waits return at once without polling. Relies on check.h, fork and
 * sched_setaffinity (the competitor is pinned to the waiter's CPU).
 */
#include "weir/spin.h"

#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(void)
{
    int sv[2];
    struct pollfd p;
    weir_spin s = { 0 };
    int64_t t0, took;
    cpu_set_t one;
    pid_t hog;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 2;
    p.fd = sv[0];
    p.events = POLLIN;

    /* nothing to read: polls for the whole budget, then 0 (tests running
     * beside this one may make it back off early: then try again) */
    for (int i = 0; i < 20; i++) {
        s.off = 0;
        t0 = mono_us();
        CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 2000), 0);
        took = mono_us() - t0;
        if (s.off == 0)
            break;
    }
    CHECK_EQ_INT(s.off, 0);
    CHECK(took >= 2000);

    /* something to read: at once */
    CHECK_EQ_INT(write(sv[1], "x", 1), 1);
    t0 = mono_us();
    CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 2000000), 1);
    CHECK(mono_us() - t0 < 1000000);

    /* a competitor on the same CPU: the waiter notices and backs off */
    {
        char c;

        CHECK_EQ_INT(read(sv[0], &c, 1), 1);
    }
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
    CHECK_EQ_INT(sched_setaffinity(0, sizeof one, &one), 0);
    hog = fork();
    if (hog == 0) {
        /* never outlive the test, whatever happens to it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(10);
        for (;;) {
        }
    }
    CHECK(hog > 0);
    usleep(20000); /* let it run */
    t0 = mono_us();
    CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 1000000), 0);
    took = mono_us() - t0;
    CHECK(took < 1000000);
    CHECK(s.off > 0);
    /* backing off: returns at once, without polling */
    {
        int off = s.off;

        CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 1000000), 0);
        CHECK_EQ_INT(s.off, off - 1);
    }
    kill(hog, SIGKILL);
    waitpid(hog, NULL, 0);
    close(sv[0]);
    close(sv[1]);
    return CHECK_DONE();
}
