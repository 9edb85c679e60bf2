/*
 * test_interpose.c - the weir binary's socket() and connect()
 * (runtime/interpose.c, linked into this test as into the binary).
 *
 * Until weir_net_client_init, as in the supervisor and `weir script`, the
 * two go straight to the kernel, even with a broker client socket set up:
 * the broker serves nothing, a UDP socket and a connect to an endpoint the
 * broker never allowed both work. After it, as in a worker, each call is
 * a request the broker serves and refuses what it did not allow.
 *
 * The broker is a thread of this same process, so while routing is on the
 * sockets it makes and connects for a request are made in a process whose
 * socket() is routed: they must go to the kernel directly, or the server
 * would wait for itself (alarm() turns that into a failure).
 */
#include "check.h"
#include "loopback.h"
#include "weir/broker.h"
#include "weir/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static weir_broker *broker;
static int serve_fd;
static atomic_long served;      /* requests weir_broker_handle answered */

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p = { .fd = serve_fd, .events = POLLIN };
        int rc;

        if (poll(&p, 1, 10000) <= 0)
            break;
        rc = weir_broker_handle(broker, serve_fd);
        if (rc == WEIR_ECLOSED)
            break;
        if (rc == WEIR_OK)
            atomic_fetch_add(&served, 1);
    }
    return NULL;
}

/* served once it reaches n (the server thread counts a request after its
 * reply is on the way, so the client may see the reply first): waits for
 * the count, up to 5 s, and returns it. */
static long await_served(long n)
{
    struct timespec ts = { 0, 1000000 };

    for (int i = 0; i < 5000 && atomic_load(&served) < n; i++)
        nanosleep(&ts, NULL);
    return atomic_load(&served);
}

/* socket() and connect() to a; 0, or the errno of the failing call. */
static int dial(struct sockaddr_in a)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e;

    if (s < 0)
        return errno;
    e = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0 ? 0 : errno;
    close(s);
    return e;
}

int main(void)
{
    uint16_t ok_port = 0, other_port = 0;
    int l1, l2, sp[2], s;
    char ep[64], err[256];
    pthread_t th;

    alarm(30);
    l1 = listener(&ok_port);
    l2 = listener(&other_port);
    CHECK(l1 >= 0 && l2 >= 0);
    CHECK_EQ_INT(weir_broker_new(NULL, 0, &broker, err, sizeof err), WEIR_OK);
    snprintf(ep, sizeof ep, "127.0.0.1:%u", ok_port);
    CHECK_EQ_INT(weir_broker_allow_endpoint(broker, ep, err, sizeof err),
                 WEIR_OK);
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0);
    serve_fd = sp[1];
    CHECK(pthread_create(&th, NULL, serve, NULL) == 0);
    CHECK_EQ_INT(weir_broker_client_init(sp[0]), WEIR_OK);

    /* the supervisor: straight to the kernel, nothing is brokered */
    CHECK_EQ_INT(weir_net_client_active(), 0);
    CHECK_EQ_INT(dial(loopback(ok_port)), 0);
    CHECK_EQ_INT(dial(loopback(other_port)), 0);
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0);
    if (s >= 0)
        close(s);
    CHECK_EQ_INT(atomic_load(&served), 0);

    /* a worker: every call is a request the broker answers */
    weir_net_client_init();
    CHECK_EQ_INT(weir_net_client_active(), 1);
    CHECK_EQ_INT(dial(loopback(ok_port)), 0);
    CHECK_EQ_INT(await_served(2), 2);
    CHECK_EQ_INT(dial(loopback(other_port)), EACCES);
    CHECK_EQ_INT(socket(AF_INET, SOCK_DGRAM, 0), -1);
    CHECK_EQ_INT(errno, EACCES);
    CHECK_EQ_INT(await_served(5), 5);

    weir_broker_client_reset();
    close(sp[0]);
    CHECK(pthread_join(th, NULL) == 0);
    close(sp[1]);
    weir_broker_delete(broker);
    close(l1);
    close(l2);
    return CHECK_DONE();
}
