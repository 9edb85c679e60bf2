/*
 * test_net.c - brokered connections (net.h, ADR 7). A child process plays
 * the worker: seccomp installed, broker client on a socketpair. Through
 * weir_net_socket/weir_net_connect it reaches the allowed endpoint and no
 * other; the raw system calls are refused outright.
 * The parent serves the broker like the supervisor does. Whether the
 * binary's socket() and connect() come here is test_interpose.c's.
 */
#include "check.h"
#include "loopback.h"
#include "weir/broker.h"
#include "weir/net.h"
#include "weir/seccomp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The worker: each bit of the exit code is an expectation that failed. */
static int child(int sock, uint16_t ok_port, uint16_t other_port)
{
    struct sockaddr_in ok = loopback(ok_port), other = loopback(other_port);
    int bad = 0, s;

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        || weir_broker_client_init(sock) != 0 || weir_seccomp_install() != 0)
        return 255;
    /* allowed: a blocking socket connects */
    s = weir_net_socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || weir_net_connect(s, (struct sockaddr *)&ok, sizeof(ok)) != 0)
        bad |= 1;
    if (s >= 0 && write(s, "hi", 2) != 2)
        bad |= 1;
    /* allowed, non-blocking: EINPROGRESS then connected, as libpq does */
    s = weir_net_socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s < 0)
        bad |= 2;
    else if (weir_net_connect(s, (struct sockaddr *)&ok, sizeof(ok)) != 0) {
        struct pollfd p = { .fd = s, .events = POLLOUT };
        int e = -1;
        socklen_t el = sizeof(e);

        if (errno != EINPROGRESS || poll(&p, 1, 5000) != 1
            || getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e != 0)
            bad |= 2;
    }
    /* a port nobody configured: refused by the supervisor */
    s = weir_net_socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || weir_net_connect(s, (struct sockaddr *)&other, sizeof(other)) == 0
        || errno != EACCES)
        bad |= 4;
    /* UDP and unix sockets are not handed out */
    if (weir_net_socket(AF_INET, SOCK_DGRAM, 0) != -1 || errno != EACCES)
        bad |= 8;
    if (weir_net_socket(AF_UNIX, SOCK_STREAM, 0) != -1 || errno != EACCES)
        bad |= 8;
    /* the raw system calls stay shut */
    if (syscall(SYS_socket, AF_INET, SOCK_STREAM, 0) != -1 || errno != EPERM)
        bad |= 16;
    s = weir_net_socket(AF_INET, SOCK_STREAM, 0);
    if (syscall(SYS_connect, s, (struct sockaddr *)&other, sizeof(other)) != -1
        || errno != EPERM)
        bad |= 32;
    /* TCP options stay allowed; TCP Fast Open, IPv6 routing headers and
     * SO_BINDTODEVICE kill the worker (test_seccomp.c) */
    {
        int one = 1;

        if (setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0
            || setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0)
            bad |= 128;
    }
    return bad;
}

int main(void)
{
    uint16_t ok_port = 0, other_port = 0;
    int l1 = listener(&ok_port), l2 = listener(&other_port);
    int sp[2], st = 0;
    char ep[64], err[256];
    weir_broker *b = NULL;
    pid_t pid;

    CHECK(l1 >= 0 && l2 >= 0);
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0);
    CHECK_EQ_INT(weir_broker_new(NULL, 0, &b, err, sizeof err), WEIR_OK);
    snprintf(ep, sizeof ep, "127.0.0.1:%u", ok_port);
    CHECK_EQ_INT(weir_broker_allow_endpoint(b, ep, err, sizeof err), WEIR_OK);
    CHECK_EQ_INT(weir_broker_allow_endpoint(b, "localhost:5432", err, sizeof err),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_broker_allow_endpoint(b, "[::1]:70000", err, sizeof err),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_broker_allow_endpoint(b, "[::1]:6379", err, sizeof err),
                 WEIR_OK);

    pid = fork();
    if (pid == 0) {
        close(sp[0]);
        _exit(child(sp[1], ok_port, other_port));
    }
    close(sp[1]);
    for (;;) {
        struct pollfd p = { .fd = sp[0], .events = POLLIN };

        if (poll(&p, 1, 10000) <= 0)
            break;
        if (weir_broker_handle(b, sp[0]) == WEIR_ECLOSED)
            break;
    }
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
    /* without a broker they fail closed; outside a worker the binary's
     * socket() and connect() never call them (test_interpose.c) */
    errno = 0;
    CHECK_EQ_INT(weir_net_socket(AF_INET, SOCK_STREAM, 0), -1);
    CHECK_EQ_INT(errno, EIO);
    weir_broker_delete(b);
    close(sp[0]);
    close(l1);
    close(l2);
    return CHECK_DONE();
}
