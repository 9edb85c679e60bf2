/*
 * client.c - a blocking HTTP/1.1 exchange with a deadline, plain or over
 * TLS (client.h).
 */
#include "weir/client.h"
#include "weir/buf.h"
#include "weir/clock.h"
#include "weir/tls.h"

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

/* One connection, plain or TLS. */
typedef struct {
    int fd;
    SSL *ssl;
    const char *host;
    int32_t port;
} conn;

/* Wait for what a TLS call that returned ret asks for; WEIR_OK to call it
 * again, WEIR_ECLOSED when the peer closed, else an error with err set. */
static int tls_wait(conn *c, int ret, double deadline, char *err, size_t errlen)
{
    short events = 0;
    int closed = 0;

    if (!weir_tls_retry(c->ssl, ret, &events, &closed, err, errlen))
        return closed ? WEIR_ECLOSED : WEIR_EIO;
    return wait_fd(c->fd, events, deadline);
}

static int conn_tls(conn *c, SSL_CTX *ctx, double deadline, char *err,
                    size_t errlen)
{
    int r, rc;

    c->ssl = weir_tls_new(ctx, c->fd, c->host, err, errlen);
    if (c->ssl == NULL)
        return WEIR_EIO;
    while ((r = SSL_connect(c->ssl)) != 1) {
        rc = tls_wait(c, r, deadline, err, errlen);
        if (rc != WEIR_OK)
            return rc == WEIR_ECLOSED ? WEIR_EIO : rc;
    }
    return WEIR_OK;
}

static int conn_send(conn *c, const char *req, size_t len, double deadline,
                     char *err, size_t errlen)
{
    size_t off = 0;
    int rc;

    while (off < len) {
        if (c->ssl != NULL) {
            int n = SSL_write(c->ssl, req + off, (int)(len - off > 65536 ? 65536 : len - off));

            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            rc = tls_wait(c, n, deadline, err, errlen);
        } else {
            ssize_t n = send(c->fd, req + off, len - off, MSG_NOSIGNAL);

            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                rc = wait_fd(c->fd, POLLOUT, deadline);
            } else {
                snprintf(err, errlen, "cannot send to %s:%d: %s", c->host,
                         (int)c->port, strerror(errno));
                rc = WEIR_EIO;
            }
        }
        if (rc != WEIR_OK)
            return rc == WEIR_ECLOSED ? WEIR_EIO : rc;
    }
    return WEIR_OK;
}

/* Read until the server closes, at most max bytes, into b. */
static int conn_recv(conn *c, weir_buf *b, size_t max, double deadline,
                     char *err, size_t errlen)
{
    char chunk[16384];
    int rc = WEIR_OK;

    while (rc == WEIR_OK) {
        ssize_t n;

        if (c->ssl != NULL) {
            int r = SSL_read(c->ssl, chunk, (int)sizeof chunk);

            if (r <= 0) {
                rc = tls_wait(c, r, deadline, err, errlen);
                if (rc == WEIR_ECLOSED)
                    return WEIR_OK;
                continue;
            }
            n = r;
        } else {
            n = recv(c->fd, chunk, sizeof chunk, 0);
            if (n == 0)
                return WEIR_OK;
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    rc = wait_fd(c->fd, POLLIN, deadline);
                } else {
                    snprintf(err, errlen, "cannot read from %s:%d: %s", c->host,
                             (int)c->port, strerror(errno));
                    rc = WEIR_EIO;
                }
                continue;
            }
        }
        if (b->len + (size_t)n > max) {
            snprintf(err, errlen, "the answer of %s:%d is over %zu bytes", c->host,
                     (int)c->port, max);
            rc = WEIR_ELIMIT;
        } else if (weir_buf_append(b, chunk, (size_t)n) != WEIR_OK) {
            rc = WEIR_ENOMEM;
        }
    }
    return rc;
}

WEIR_API int weir_ffi_http_exchange(const char *host, int32_t port,
                                    const char *ca,
                                    const char *req, size_t len,
                                    int32_t timeout_ms, size_t max,
                                    char **out, size_t *outlen, char *err,
                                    size_t errlen)
{
    double deadline = weir_clock_mono_ms() + timeout_ms;
    weir_buf b = { 0 };
    conn c = { .host = host, .port = port };
    SSL_CTX *ctx = NULL;
    int rc = WEIR_OK;

    *out = NULL;
    *outlen = 0;
    if (ca != NULL) {
        ctx = weir_tls_client_ctx(ca, NULL, NULL, err, errlen);
        if (ctx == NULL)
            return WEIR_EIO;
    }
    c.fd = dial(host, port, deadline, err, errlen);
    if (c.fd < 0) {
        SSL_CTX_free(ctx);
        return WEIR_EIO;
    }
    if (ctx != NULL)
        rc = conn_tls(&c, ctx, deadline, err, errlen);
    if (rc == WEIR_OK)
        rc = conn_send(&c, req, len, deadline, err, errlen);
    if (rc == WEIR_OK)
        rc = conn_recv(&c, &b, max, deadline, err, errlen);
    if (c.ssl != NULL) {
        SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
    }
    SSL_CTX_free(ctx);
    close(c.fd);
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
