/*
 * spin.h - waiting for a message without sleeping, while that pays off.
 *
 * On a VM, waking a process that sleeps on another CPU costs about 55 us
 * per round trip, more than a short task; polling costs about 5 (ADR 9).
 * But polling steals the CPU from whoever else wants it, so a waiter backs
 * off as soon as it notices company: a yield that took long means another
 * process was waiting for this CPU.
 */
#ifndef WEIR_SPIN_H
#define WEIR_SPIN_H

#include "weir/common.h"

#include <poll.h>

/* The state of one waiter: zero-initialised. */
typedef struct {
    int off; /* waits left that sleep at once (backing off) */
} weir_spin;

/* Poll pfd (n entries) without sleeping for up to budget_us, yielding the
 * CPU between polls. Returns what poll returned (> 0: something is ready,
 * -1: an error), or 0 when the budget ran out, the waiter is backing off,
 * or another process turned out to want this CPU (then the next waits
 * sleep at once for a while). The caller then sleeps in poll as usual. */
int weir_spin_poll(weir_spin *s, struct pollfd *pfd, nfds_t n,
                   int budget_us);

#endif
