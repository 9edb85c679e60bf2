/*
 * spin.c - bounded busy-polling with back-off (see spin.h). Relies on
 * Linux sched_yield and CLOCK_MONOTONIC.
 */
#include "weir/spin.h"

#include <sched.h>
#include <stdint.h>
#include <time.h>

/* A yield longer than this gave the CPU to another process. */
#define SPIN_BUSY_US 200
/* Waits that sleep at once after that. */
#define SPIN_BACKOFF 50

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int weir_spin_poll(weir_spin *s, struct pollfd *pfd, nfds_t n,
                   int budget_us)
{
    int64_t start, before, t;

    if (s->off > 0) {
        s->off--;
        return 0;
    }
    start = mono_us();
    for (;;) {
        int rc = poll(pfd, n, 0);

        if (rc != 0)
            return rc;
        before = mono_us();
        sched_yield();
        t = mono_us();
        if (t - before > SPIN_BUSY_US) {
            s->off = SPIN_BACKOFF;
            return 0;
        }
        if (t - start >= budget_us)
            return 0;
    }
}
