/*
 * net_server.c - the supervisor's side of brokered TCP connections
 * (net.h, docs/adr/0007-worker-network-access.md): the endpoints workers
 * may connect to, and the serving of a worker's SOCKET and CONNECT
 * requests, which broker_server.c hands over from the broker socket. Also
 * the supervisor's name resolution for the connections of weir.yaml. The
 * worker's side is net_client.c, the packets are in broker_wire.h.
 *
 * The sockets made and connected here are the supervisor's own: they go
 * to the kernel by syscall(2), never through the weir binary's socket()
 * and connect() (interpose.c), so serving a request can never become a
 * request itself. Relies on Linux and glibc (getaddrinfo).
 */
#include "weir/net.h"

#include "broker_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct weir_net_allow {
    struct sockaddr_in6 *eps;   /* IPv4 kept as v4-mapped IPv6 */
    size_t n, cap;
};

/* addr as an IPv6 address (IPv4 mapped) and port; -1 if not INET/INET6. */
static int net_canon(const void *addr, size_t len, struct in6_addr *ip,
                     uint16_t *port)
{
    sa_family_t fam;

    if (len < sizeof(sa_family_t))
        return -1;
    memcpy(&fam, addr, sizeof(fam));
    if (fam == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;

        memcpy(&a, addr, sizeof(a));
        memset(ip, 0, sizeof(*ip));
        ip->s6_addr[10] = ip->s6_addr[11] = 0xff;
        memcpy(&ip->s6_addr[12], &a.sin_addr, 4);
        *port = a.sin_port;
        return 0;
    }
    if (fam == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;

        memcpy(&a, addr, sizeof(a));
        *ip = a.sin6_addr;
        *port = a.sin6_port;
        return 0;
    }
    return -1;
}

int weir_net_allow_add(weir_net_allow **allow, const char *endpoint,
                       char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    struct sockaddr_in6 ep;
    weir_net_allow *a;
    size_t hl;
    long port;
    char *end;

    if (allow == NULL || endpoint == NULL)
        return WEIR_EINVAL;
    colon = strrchr(endpoint, ':');
    hl = colon ? (size_t)(colon - endpoint) : 0;
    if (colon == NULL || hl == 0 || hl >= sizeof(host))
        goto bad;
    memcpy(host, endpoint, hl);
    host[hl] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535)
        goto bad;
    memset(&ep, 0, sizeof(ep));
    ep.sin6_family = AF_INET6;
    ep.sin6_port = htons((uint16_t)port);
    if (host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &ep.sin6_addr) != 1)
            goto bad;
    } else {
        struct in_addr v4;

        if (inet_pton(AF_INET, host, &v4) != 1)
            goto bad;
        ep.sin6_addr.s6_addr[10] = ep.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&ep.sin6_addr.s6_addr[12], &v4, 4);
    }
    a = *allow;
    if (a == NULL) {
        a = calloc(1, sizeof(*a));
        if (a == NULL)
            return WEIR_ENOMEM;
        *allow = a;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        struct sockaddr_in6 *p = realloc(a->eps, cap * sizeof(*p));

        if (p == NULL)
            return WEIR_ENOMEM;
        a->eps = p;
        a->cap = cap;
    }
    a->eps[a->n++] = ep;
    return WEIR_OK;
bad:
    weir_set_err(err, errlen, "endpoint %s: expected IP:PORT or [IPv6]:PORT",
                 endpoint);
    return WEIR_EINVAL;
}

void weir_net_allow_free(weir_net_allow *allow)
{
    if (allow == NULL)
        return;
    free(allow->eps);
    free(allow);
}

static int net_allowed(const weir_net_allow *allow, const void *addr,
                       size_t len)
{
    struct in6_addr ip;
    uint16_t port;
    size_t i;

    if (allow == NULL || net_canon(addr, len, &ip, &port) != 0)
        return 0;
    for (i = 0; i < allow->n; i++)
        if (allow->eps[i].sin6_port == port
            && memcmp(&allow->eps[i].sin6_addr, &ip, sizeof(ip)) == 0)
            return 1;
    return 0;
}

/* A TCP socket of ours to hand out: 0 on success with *fd set, or -errno. */
static int net_do_socket(const struct net_req *rq, int *fd)
{
    int s;

    if ((rq->domain != AF_INET && rq->domain != AF_INET6)
        || (rq->type & 0xf) != SOCK_STREAM
        || (rq->protocol != 0 && rq->protocol != IPPROTO_TCP))
        return -EACCES;
    s = (int)syscall(SYS_socket, rq->domain, SOCK_STREAM | SOCK_CLOEXEC,
                     rq->protocol);
    if (s < 0)
        return -errno;
    *fd = s;
    return 0;
}

/* Connect the worker's socket fd (ours is the same open socket); -errno. */
static int net_do_connect(const weir_net_allow *allow,
                          const struct net_req *rq, int fd)
{
    int type = 0, dom = 0, flags, rc;
    socklen_t tl = sizeof(type), dl = sizeof(dom);

    if (fd < 0)
        return -EBADF;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0
        || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) != 0)
        return -ENOTSOCK;
    if (type != SOCK_STREAM || (dom != AF_INET && dom != AF_INET6))
        return -EACCES;
    if (!net_allowed(allow, rq->addr, rq->addrlen))
        return -EACCES;
    /* Never block the supervisor: connect non-blocking; the worker waits
     * for completion itself when its socket was blocking. */
    flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (!(flags & O_NONBLOCK))
        (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    rc = (int)syscall(SYS_connect, fd, (const struct sockaddr *)rq->addr,
                      (socklen_t)rq->addrlen);
    rc = rc == 0 ? 0 : -errno;
    if (!(flags & O_NONBLOCK))
        (void)fcntl(fd, F_SETFL, flags);
    return rc;
}

int weir_net_serve(const weir_net_allow *allow, int sock, const void *in,
                   size_t n, int fd)
{
    struct net_req rq;
    struct net_rep rep;
    int out_fd = -1, rc, status = WEIR_OK;

    memset(&rq, 0, sizeof(rq));
    memcpy(&rq, in, n < sizeof(rq) ? n : sizeof(rq));
    memset(&rep, 0, sizeof(rep));
    rep.magic = NET_MAGIC;
    rep.op = rq.op;
    rep.seq = rq.seq;
    if (n != sizeof(rq) || rq.addrlen > sizeof(rq.addr)
        || (rq.op == NET_SOCKET && fd >= 0)
        || (rq.op != NET_SOCKET && rq.op != NET_CONNECT)) {
        rep.result = -EINVAL;
        status = WEIR_EINVAL;
    } else if (rq.op == NET_SOCKET) {
        rep.result = net_do_socket(&rq, &out_fd);
    } else {
        rep.result = net_do_connect(allow, &rq, fd);
    }
    weir_wire_close_passed(fd);
    rc = weir_wire_send(sock, &rep, sizeof(rep), out_fd);
    if (out_fd >= 0)
        close(out_fd);
    if (rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN)
        return WEIR_ECLOSED;
    return rc != 0 ? WEIR_EIO : status;
}

WEIR_API int weir_ffi_net_resolve(const char *host, int32_t port, char *out,
                                  size_t len, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL, *ai;
    char ip[INET6_ADDRSTRLEN], serv[8];
    size_t used = 0;
    int rc;

    if (host == NULL || out == NULL || len == 0 || port <= 0 || port > 65535)
        return WEIR_EINVAL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(serv, sizeof(serv), "%d", (int)port);
    rc = getaddrinfo(host, serv, &hints, &res);
    if (rc != 0) {
        weir_set_err(err, errlen, "cannot resolve host %s: %s", host,
                     gai_strerror(rc));
        return WEIR_ENOENT;
    }
    out[0] = '\0';
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        const void *a = ai->ai_family == AF_INET
            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        int w;

        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (inet_ntop(ai->ai_family, a, ip, sizeof(ip)) == NULL)
            continue;
        w = snprintf(out + used, len - used,
                     ai->ai_family == AF_INET6 ? "%s[%s]:%d" : "%s%s:%d",
                     used ? "\n" : "", ip, (int)port);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
    freeaddrinfo(res);
    if (used == 0) {
        weir_set_err(err, errlen, "cannot resolve host %s: no address", host);
        return WEIR_ENOENT;
    }
    return WEIR_OK;
}
