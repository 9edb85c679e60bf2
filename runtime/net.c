/*
 * net.c - brokered TCP connections for workers: the request format, the
 * supervisor's policy (create TCP sockets; connect only to allowed
 * endpoints) and the worker's socket()/connect() replacements. See net.h
 * and docs/adr/0007-worker-network-access.md.
 */
#include "weir/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NET_MAGIC 0x31544e57u   /* "WNT1" read as little-endian bytes */

enum { NET_SOCKET = 1, NET_CONNECT = 2 };

struct net_req {
    uint32_t magic;
    uint16_t op;
    uint16_t addrlen;       /* CONNECT: bytes of addr */
    uint32_t seq;
    int32_t domain, type, protocol;
    unsigned char addr[sizeof(struct sockaddr_in6)];
};

struct net_rep {
    uint32_t magic;
    uint16_t op;
    uint16_t pad;
    uint32_t seq;
    int32_t result;         /* 0 (SOCKET: a descriptor is attached) or -errno */
};

struct weir_net_allow {
    struct sockaddr_in6 *eps;   /* IPv4 kept as v4-mapped IPv6 */
    size_t n, cap;
};

/* ------------------------------------------------------------------------
 * Supervisor side
 * ------------------------------------------------------------------------ */

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

void weir_net_close_passed(int fd)
{
    struct linger off = { 0, 0 };

    if (fd < 0)
        return;
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
    close(fd);
}

int weir_net_is_request(const void *in, size_t n)
{
    uint32_t magic;

    if (n < sizeof(magic))
        return 0;
    memcpy(&magic, in, sizeof(magic));
    return magic == NET_MAGIC;
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
    s = socket(rq->domain, SOCK_STREAM | SOCK_CLOEXEC, rq->protocol);
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
    rc = connect(fd, (const struct sockaddr *)rq->addr, rq->addrlen);
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
    weir_net_close_passed(fd);
    rc = weir_broker_send(sock, &rep, sizeof(rep), out_fd);
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

/* ------------------------------------------------------------------------
 * Worker side
 * ------------------------------------------------------------------------ */

static uint32_t net_seq;

/* One round trip; 0 with *result (and *fd_out for SOCKET), or -1/errno. */
static int net_call(struct net_req *rq, int send_fd, int32_t *result,
                    int *fd_out)
{
    int sock = weir_broker_client_sock();
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct net_rep rep;
    struct iovec iov;
    struct msghdr msg;
    struct cmsghdr *c;
    ssize_t n;
    int fd = -1;

    rq->magic = NET_MAGIC;
    rq->seq = ++net_seq;
    if (weir_broker_send(sock, rq, sizeof(*rq), send_fd) != 0) {
        errno = EIO;
        return -1;
    }
    for (;;) {
        memset(&msg, 0, sizeof(msg));
        iov.iov_base = &rep;
        iov.iov_len = sizeof(rep);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.space;
        msg.msg_controllen = sizeof(ctl.space);
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = { .fd = sock, .events = POLLIN };

            (void)poll(&p, 1, -1);
            continue;
        }
        break;
    }
    for (c = msg.msg_controllen ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL;
         c = CMSG_NXTHDR(&msg, c)) {
        size_t nfd, i;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (i = 0; i < nfd; i++) {
            int x;

            memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fd < 0)
                fd = x;
            else
                close(x);
        }
    }
    if (n != (ssize_t)sizeof(rep) || rep.magic != NET_MAGIC
        || rep.seq != rq->seq || rep.op != rq->op
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

    if (weir_broker_client_sock() < 0)
        return (int)syscall(SYS_socket, domain, type, protocol);
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

    if (weir_broker_client_sock() < 0)
        return (int)syscall(SYS_connect, fd, addr, len);
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
