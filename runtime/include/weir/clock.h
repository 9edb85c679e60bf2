/*
 * clock.h - the one clock every C unit reads: monotonic time for
 * deadlines, timeouts and pool ages (CLOCK_MONOTONIC, the same in every
 * process of the machine, so the shared breaker table can compare
 * readings of different workers; meaningless after a reboot), and wall
 * time for what is recorded. Lua reaches the same two functions through
 * the FFI (weir_ffi_now_mono_ms and weir_ffi_now_wall_ms in exec.h, for
 * the supervisor) and through weir._native.now (attempt states). Internal
 * C. Relies on Linux clock_gettime.
 */
#ifndef WEIR_CLOCK_H
#define WEIR_CLOCK_H

#include <stdint.h>

/* Monotonic nanoseconds. */
int64_t weir_clock_mono_ns(void);
/* Wall clock milliseconds since the epoch, with a fraction. */
double weir_clock_wall_ms(void);

/* The monotonic clock in the units callers count in. */
static inline int64_t weir_clock_mono_us(void)
{
    return weir_clock_mono_ns() / 1000;
}

static inline double weir_clock_mono_ms(void)
{
    return (double)weir_clock_mono_ns() / 1e6;
}

#endif
