/*
 * net_client.c - the worker's side of brokered TCP connections (net.h,
 * docs/adr/0007-worker-network-access.md): a SOCKET or CONNECT request on
 * the broker socket (fd 4) and its reply. The weir binary's socket() and
 * connect() (interpose.c) come here once weir_net_client_init has run,
 * which only a locked-down worker does. The supervisor's side is
 * net_server.c, the packets are in broker_wire.h.
 *
 * Relies on broker_client.c for the socket, Linux.
 */
#include "weir/net.h"

#include "broker_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

/* The worker is single-threaded and blocks for each reply. */
static int net_active;
static uint32_t net_seq;

void weir_net_client_init(void)
{
    net_active = 1;
}

int weir_net_client_active(void)
{
    return net_active;
}

/* One round trip; 0 with *result (and *fd_out for SOCKET), or -1/errno. */
static int net_call(struct net_req *rq, int send_fd, int32_t *result,
                    int *fd_out)
{
    int sock = weir_broker_client_sock();
    struct net_rep rep;
    ssize_t n;
    int fd, flags;

    rq->magic = NET_MAGIC;
    rq->seq = ++net_seq;
    if (weir_wire_send(sock, rq, sizeof(*rq), send_fd) != 0) {
        errno = EIO;
        return -1;
    }
    n = weir_wire_recv(sock, &rep, sizeof(rep), &fd, &flags);
    if (n != (ssize_t)sizeof(rep) || (flags & (MSG_TRUNC | MSG_CTRUNC))
        || rep.magic != NET_MAGIC || rep.seq != rq->seq || rep.op != rq->op
        || (fd >= 0) != (rq->op == NET_SOCKET && rep.result == 0)) {
        if (fd >= 0)
            close(fd);
        errno = EIO;
        return -1;
    }
    *result = rep.result;
    if (fd_out != NULL)
        *fd_out = fd;
    return 0;
}

int weir_net_socket(int domain, int type, int protocol)
{
    struct net_req rq;
    int32_t result;
    int fd = -1;

    memset(&rq, 0, sizeof(rq));
    rq.op = NET_SOCKET;
    rq.domain = domain;
    rq.type = type;
    rq.protocol = protocol;
    if (net_call(&rq, -1, &result, &fd) != 0)
        return -1;
    if (result < 0) {
        errno = -result;
        return -1;
    }
    /* the flags of the request apply to our descriptor */
    if (type & SOCK_NONBLOCK)
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (!(type & SOCK_CLOEXEC))
        (void)fcntl(fd, F_SETFD, 0);
    return fd;
}

int weir_net_connect(int fd, const struct sockaddr *addr,
                              socklen_t len)
{
    struct net_req rq;
    int32_t result;
    int flags;

    if (addr == NULL || len > sizeof(rq.addr)) {
        errno = len > sizeof(rq.addr) ? EAFNOSUPPORT : EFAULT;
        return -1;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    memset(&rq, 0, sizeof(rq));
    rq.op = NET_CONNECT;
    rq.addrlen = (uint16_t)len;
    memcpy(rq.addr, addr, len);
    if (net_call(&rq, fd, &result, NULL) != 0)
        return -1;
    if (result == -EINPROGRESS && !(flags & O_NONBLOCK)) {
        /* a blocking socket: finish the connect as the kernel would */
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int e = 0;
        socklen_t el = sizeof(e);

        while (poll(&p, 1, -1) < 0)
            if (errno != EINTR)
                return -1;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
            return -1;
        result = -e;
    }
    if (result < 0) {
        errno = -result;
        return -1;
    }
    return 0;
}
