/*
 * spin.c - bounded busy-polling with back-off (see spin.h). Relies on
 * Linux sched_yield and weir/clock.h.
 */
#include "weir/spin.h"
#include "weir/clock.h"

#include <sched.h>
#include <stdint.h>
#include <time.h>

/* A yield longer than this gave the CPU to another process. */
#define SPIN_BUSY_US 200
/* Waits that sleep at once after that. */
#define SPIN_BACKOFF 50

int weir_spin_poll(weir_spin *s, struct pollfd *pfd, nfds_t n,
                   int budget_us)
{
    int64_t start, before, t;

    if (s->off > 0) {
        s->off--;
        return 0;
    }
    start = weir_clock_mono_us();
    for (;;) {
        int rc = poll(pfd, n, 0);

        if (rc != 0)
            return rc;
        before = weir_clock_mono_us();
        sched_yield();
        t = weir_clock_mono_us();
        if (t - before > SPIN_BUSY_US) {
            s->off = SPIN_BACKOFF;
            return 0;
        }
        if (t - start >= budget_us)
            return 0;
    }
}
