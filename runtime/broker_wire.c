/*
 * broker_wire.c - sending and receiving one packet on the broker socket,
 * with a descriptor attached by SCM_RIGHTS: what the supervisor's units
 * (broker_server.c, net_server.c) and the worker's (broker_client.c,
 * net_client.c) share. The packets themselves are in broker_wire.h.
 * Relies on Linux and glibc (strerror_r, MSG_CMSG_CLOEXEC).
 */
#include "broker_wire.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int weir_wire_send(int sock, const void *buf, size_t len, int fd)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg;
    struct pollfd pfd;
    ssize_t n;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *c;

        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.space;
        msg.msg_controllen = sizeof(ctl.space);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    for (;;) {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* A well-behaved peer has an empty queue; wait briefly. */
            pfd.fd = sock;
            pfd.events = POLLOUT;
            if (poll(&pfd, 1, 1000) > 0)
                continue;
            return -EAGAIN;
        }
        return -errno;
    }
}

ssize_t weir_wire_recv(int sock, void *buf, size_t cap, int *fd_out,
                       int *flags_out)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov;
    struct msghdr msg;
    struct pollfd pfd;
    ssize_t n;

    *fd_out = -1;
    *flags_out = 0;
    for (;;) {
        memset(&msg, 0, sizeof(msg));
        iov.iov_base = buf;
        iov.iov_len = cap;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.space;
        msg.msg_controllen = sizeof(ctl.space);
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        pfd.fd = sock;
        pfd.events = POLLIN;
        (void)poll(&pfd, 1, -1);
    }
    *fd_out = weir_wire_take_fds(&msg, 1);
    *flags_out = msg.msg_flags;
    return n;
}

int weir_wire_take_fds(struct msghdr *msg, int keep_first)
{
    struct cmsghdr *c;
    int kept = -1;

    if (msg->msg_controllen == 0)
        return -1;
    for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        size_t nfd, i;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (i = 0; i < nfd; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (keep_first && kept < 0)
                kept = fd;
            else
                weir_wire_close_passed(fd);
        }
    }
    return kept;
}

void weir_wire_close_passed(int fd)
{
    struct linger off = { 0, 0 };

    if (fd < 0)
        return;
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
    close(fd);
}

void weir_wire_errno_text(int e, char *buf, size_t len)
{
    const char *s = strerror_r(e, buf, len);

    if (s != buf)
        snprintf(buf, len, "%s", s);
    if (buf[0] != '\0')
        buf[0] = (char)tolower((unsigned char)buf[0]);
}
