/*
 * test_spin.c - unit tests for the bounded busy-poll (runtime/spin.c),
 * what it returns and nothing about how long it takes: an idle descriptor
 * gives 0 once the budget (or a back-off) ends the wait; a ready one gives
 * what poll gives; a waiter that is backing off returns 0 at once without
 * polling, one wait fewer each time, and polls again when the back-off is
 * over; a bad descriptor is poll's answer too. How long the waits take,
 * and whether a competitor on the same CPU makes the waiter back off, are
 * scheduler timing: tests/bench/bench_spin.c measures them. Relies on
 * check.h and a socketpair.
 */
#include "weir/spin.h"

#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

int main(void)
{
    int sv[2];
    struct pollfd p;
    weir_spin s = { 0 };
    char c;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 2;
    p.fd = sv[0];
    p.events = POLLIN;

    /* nothing to read: the budget (or a back-off) ends the wait with 0 */
    p.revents = 0;
    CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 2000), 0);
    CHECK_EQ_INT(p.revents, 0);
    s.off = 0;
    CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 0), 0);

    /* something to read: poll's answer */
    s.off = 0;
    CHECK_EQ_INT(write(sv[1], "x", 1), 1);
    CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 2000000), 1);
    CHECK(p.revents & POLLIN);
    CHECK_EQ_INT(s.off, 0);

    /* backing off: 0 at once, even with data waiting, and no poll (the
     * revents stay as they were); one wait fewer each time */
    s.off = 3;
    for (int left = 2; left >= 0; left--) {
        p.revents = 0;
        CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 2000000), 0);
        CHECK_EQ_INT(p.revents, 0);
        CHECK_EQ_INT(s.off, left);
    }
    /* the back-off over, it polls again */
    CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 2000000), 1);
    CHECK(p.revents & POLLIN);
    CHECK_EQ_INT(read(sv[0], &c, 1), 1);

    /* the peer gone: readable (end of file), as poll says */
    s.off = 0;
    close(sv[1]);
    CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 2000000), 1);
    CHECK(p.revents & (POLLIN | POLLHUP));

    /* a closed descriptor: poll's POLLNVAL, not a wait */
    close(sv[0]);
    s.off = 0;
    CHECK_EQ_INT(weir_spin_poll(&s, &p, 1, 2000000), 1);
    CHECK(p.revents & POLLNVAL);
    return CHECK_DONE();
}
