/*
 * client.c - a blocking HTTP/1.1 exchange with a deadline (client.h).
 */
#include "weir/client.h"
#include "weir/buf.h"
#include "weir/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Wait until fd is ready for events or the deadline (monotonic ms). */
static int wait_fd(int fd, short events, double deadline)
{
    struct pollfd p = { .fd = fd, .events = events };
    double left = deadline - weir_clock_mono_ms();
    int rc;

    if (left <= 0)
        return WEIR_ETIMEOUT;
    do {
        rc = poll(&p, 1, (int)left + 1);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return WEIR_ETIMEOUT;
    return rc < 0 ? WEIR_EIO : WEIR_OK;
}

static int dial(const char *host, int32_t port, double deadline, char *err,
                size_t errlen)
{
    struct addrinfo hints = { 0 }, *res = NULL, *ai;
    char service[16];
    int fd = -1, rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(service, sizeof service, "%d", (int)port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == WEIR_OK
            && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0
            && soerr == 0)
            break;
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, (int)port,
                 strerror(soerr ? soerr : errno == EINPROGRESS ? ETIMEDOUT : errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

WEIR_API int weir_ffi_http_exchange(const char *host, int32_t port,
                                    const char *req, size_t len,
                                    int32_t timeout_ms, size_t max,
                                    char **out, size_t *outlen, char *err,
                                    size_t errlen)
{
    double deadline = weir_clock_mono_ms() + timeout_ms;
    weir_buf b = { 0 };
    size_t off = 0;
    int fd, rc = WEIR_OK;

    *out = NULL;
    *outlen = 0;
    fd = dial(host, port, deadline, err, errlen);
    if (fd < 0)
        return WEIR_EIO;
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);

        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            rc = wait_fd(fd, POLLOUT, deadline);
            if (rc != WEIR_OK)
                break;
        } else {
            snprintf(err, errlen, "cannot send to %s:%d: %s", host, (int)port,
                     strerror(errno));
            rc = WEIR_EIO;
            break;
        }
    }
    while (rc == WEIR_OK) {
        char chunk[16384];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);

        if (n > 0) {
            if (b.len + (size_t)n > max) {
                snprintf(err, errlen, "the answer of %s:%d is over %zu bytes", host,
                         (int)port, max);
                rc = WEIR_ELIMIT;
            } else if (weir_buf_append(&b, chunk, (size_t)n) != WEIR_OK) {
                rc = WEIR_ENOMEM;
            }
        } else if (n == 0) {
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            rc = wait_fd(fd, POLLIN, deadline);
        } else {
            snprintf(err, errlen, "cannot read from %s:%d: %s", host, (int)port,
                     strerror(errno));
            rc = WEIR_EIO;
        }
    }
    close(fd);
    if (rc == WEIR_ETIMEOUT)
        snprintf(err, errlen, "no answer from %s:%d within %d ms", host, (int)port,
                 (int)timeout_ms);
    if (rc == WEIR_OK && b.data == NULL)
        rc = weir_buf_reserve(&b, 0); /* an empty answer is still a string */
    if (rc != WEIR_OK) {
        weir_buf_free(&b);
        return rc;
    }
    *out = b.data;
    *outlen = b.len;
    return WEIR_OK;
}

WEIR_API void weir_ffi_client_free(char *p)
{
    free(p);
}
