/*
 * clock.c - the monotonic and wall clocks (see clock.h). Relies on Linux
 * clock_gettime (a vDSO call: no system call).
 */
#include "weir/clock.h"

#include <time.h>

int64_t weir_clock_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double weir_clock_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
