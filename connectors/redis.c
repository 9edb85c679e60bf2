/*
 * redis.c - the Redis connector: pools of connections (pool.h: the
 * registry, references, idle timeout, lifetime, checks), RESP commands written by hand (binary-safe, no per-command
 * allocation), replies parsed by hiredis's reader under a byte budget, and
 * the classic-Lua-API functions that turn replies into Lua values.
 *
 * The socket I/O is ours rather than hiredis's so that: writes use
 * MSG_NOSIGNAL (a closed peer must not SIGPIPE the process), every wait is
 * a poll() with the command timeout, and reading stops as soon as a reply
 * outgrows max_reply_bytes (hiredis 0.14 would buffer it whole, and abort
 * the process when malloc fails). Connecting takes a numeric address only:
 * no resolver. socket() and connect() go through the binary's interposed
 * versions in workers (runtime/interpose.c, net.h); the pool is the shared
 * one of pool.c.
 *
 * Relies on hiredis 0.14 (redisReader and its object functions, with the
 * task privdata set from reader->privdata), POSIX sockets, Linux.
 */
#include "weir/redis.h"
#include "weir/buf.h"
#include "weir/clock.h"
#include "weir/numfmt.h"
#include "weir/lstate.h"
#include "weir/pool.h"
#include "weir/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <openssl/err.h>
#include <lauxlib.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEF_CONNECT_MS 5000
#define DEF_COMMAND_MS 10000
#define DEF_POOL_MAX 8
#define DEF_IDLE_MS 60000
#define DEF_LIFETIME_MS 1800000
#define DEF_VALIDATE_MS 10000
#define DEF_MAX_REPLY ((int64_t)64 << 20)
#define FLUSH_AT ((size_t)256 << 10) /* send queued commands past this */
#define WINDOW 1000                  /* pipeline: commands per round trip */

typedef struct pool_opts {
    char *host;
    int port;
    char *username;
    char *password;
    int db;
    int connect_ms, command_ms, min, max, idle_ms, lifetime_ms, validate_ms;
    size_t max_reply;
    char *tls_host, *tls_ca, *tls_cert, *tls_key; /* tls.h; NULL: none */
    SSL_CTX *tls;
} pool_opts;

struct weir_redis_conn {
    weir_pool_conn base;  /* first: pool.h */
    weir_redis_pool *pool;
    int fd;
    SSL *ssl;          /* NULL: plain TCP */
    redisReader *rd;
    weir_buf out;      /* queued commands not yet sent */
    size_t outpos;     /* bytes of out already sent */
    long pending;      /* replies expected */
    int broken;        /* an I/O or protocol error: never reuse */
    pid_t pid;         /* the process that connected it */
    size_t used;       /* bytes charged to the reply being read */
    int over;          /* that reply went over max_reply */
};

/* References, idle connections and the registry: pool.h. */
struct weir_redis_pool {
    weir_pool base;    /* first: pool.h */
    pool_opts o;
};

static double now_ms(void)
{
    return weir_clock_mono_ms();
}

/* ---- error text -------------------------------------------------------- */

/* Replace every copy of secret in s with "***" (a safety net: no message
 * we build contains the password, but server text is not ours). */
static void scrub(char *s, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    char *p;

    if (n < 4)
        return;
    while ((p = strstr(s, secret)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + n, strlen(p + n) + 1);
    }
}

static void perr(const weir_redis_pool *p, char *err, size_t errlen,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void perr(const weir_redis_pool *p, char *err, size_t errlen,
                 const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL || errlen == 0)
        return;
    n = snprintf(err, errlen, "redis \"%s\": ", p->base.name);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    scrub(err, p->o.password);
}

int weir_redis_error_code(const char *msg, size_t len)
{
    static const struct {
        const char *word;
        int rc;
    } words[] = {
        { "LOADING", WEIR_EAGAIN },  { "BUSY", WEIR_EAGAIN },
        { "TRYAGAIN", WEIR_EAGAIN }, { "MASTERDOWN", WEIR_EAGAIN },
        { "NOAUTH", WEIR_EPERM },    { "WRONGPASS", WEIR_EPERM },
        { "NOPERM", WEIR_EPERM },
    };
    size_t w = 0;

    while (w < len && msg[w] != ' ')
        w++;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i].word) == w && memcmp(msg, words[i].word, w) == 0)
            return words[i].rc;
    return WEIR_ESQL;
}

WEIR_API int32_t weir_ffi_redis_transient(int32_t rc)
{
    return rc == WEIR_EIO || rc == WEIR_ECLOSED || rc == WEIR_ETIMEOUT ||
           rc == WEIR_EAGAIN;
}

/* ---- reply objects under a budget ------------------------------------- */

/* Charge n bytes to the reply being read; fails (and marks it) past the
 * bound, which makes the reader stop with an "out of memory" error. */
static int charge(weir_redis_conn *k, size_t n)
{
    if (k->over || n > k->pool->o.max_reply - k->used) {
        k->over = 1;
        return -1;
    }
    k->used += n;
    return 0;
}

static redisReply *new_obj(const redisReadTask *t, size_t extra)
{
    weir_redis_conn *k = t->privdata;
    redisReply *r;

    if (charge(k, sizeof *r + extra) != 0)
        return NULL;
    r = calloc(1, sizeof *r);
    if (r != NULL)
        r->type = t->type;
    return r;
}

static void *attach(const redisReadTask *t, redisReply *r)
{
    if (t->parent != NULL) {
        redisReply *parent = t->parent->obj;
        parent->element[t->idx] = r;
    }
    return r;
}

static void *obj_string(const redisReadTask *t, char *s, size_t len)
{
    redisReply *r = new_obj(t, len + 1);

    if (r == NULL)
        return NULL;
    r->str = malloc(len + 1);
    if (r->str == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return attach(t, r);
}

static void *obj_array(const redisReadTask *t, int n)
{
    size_t cnt = n > 0 ? (size_t)n : 0;
    redisReply *r = new_obj(t, cnt * sizeof(redisReply *));

    if (r == NULL)
        return NULL;
    if (cnt > 0) {
        r->element = calloc(cnt, sizeof(redisReply *));
        if (r->element == NULL) {
            free(r);
            return NULL;
        }
    }
    r->elements = cnt;
    return attach(t, r);
}

static void *obj_integer(const redisReadTask *t, long long v)
{
    redisReply *r = new_obj(t, 0);

    if (r == NULL)
        return NULL;
    r->integer = v;
    return attach(t, r);
}

static void *obj_nil(const redisReadTask *t)
{
    redisReply *r = new_obj(t, 0);

    if (r == NULL)
        return NULL;
    r->type = REDIS_REPLY_NIL; /* the task says "$" or "*" */
    return attach(t, r);
}

static redisReplyObjectFunctions obj_fns = {
    obj_string, obj_array, obj_integer, obj_nil, freeReplyObject,
};

/* ---- sockets ----------------------------------------------------------- */

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss,
                      socklen_t *len)
{
    char buf[64];
    size_t n = strlen(host);

    memset(ss, 0, sizeof *ss);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)port);
            *len = sizeof *a4;
            return 0;
        }
    }
    {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)port);
            *len = sizeof *a6;
            return 0;
        }
    }
    return -1;
}

/* Wait for events on fd until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, double deadline)
{
    struct pollfd pfd = { .fd = fd, .events = events };

    for (;;) {
        double left = deadline - now_ms();
        int rc;

        if (left <= 0)
            return 0;
        rc = poll(&pfd, 1, (int)ceil(left));
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* The status code for a failed socket call's errno. */
static int errno_code(int e)
{
    if (e == ETIMEDOUT)
        return WEIR_ETIMEOUT;
    if (e == ECONNRESET || e == EPIPE || e == ECONNABORTED)
        return WEIR_ECLOSED;
    if (e == EACCES || e == EPERM)
        return WEIR_EPERM;
    if (e == ENOMEM || e == ENOBUFS)
        return WEIR_ENOMEM;
    return WEIR_EIO;
}

static int tcp_connect(weir_redis_pool *p, int *out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, e = 0, one = 1;

    if (parse_addr(p->o.host, p->o.port, &ss, &len) != 0) {
        perr(p, err, errlen, "host must be a numeric IP address");
        return WEIR_EINVAL;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        e = errno;
        perr(p, err, errlen, "socket: %s", strerror(e));
        return errno_code(e);
    }
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        e = errno;
        if (e == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, now_ms() + p->o.connect_ms);
            socklen_t el = sizeof e;

            if (w == 0) {
                close(fd);
                perr(p, err, errlen, "connect to %s:%d timed out after %d ms",
                     p->o.host, p->o.port, p->o.connect_ms);
                return WEIR_ETIMEOUT;
            }
            if (w < 0)
                e = errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
                e = errno;
        }
    }
    if (e != 0) {
        close(fd);
        perr(p, err, errlen, "connect to %s:%d: %s", p->o.host, p->o.port,
             strerror(e));
        return errno_code(e);
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    *out = fd;
    return WEIR_OK;
}

/* ---- connections ------------------------------------------------------- */

static void conn_free(weir_redis_conn *k)
{
    if (k == NULL)
        return;
    SSL_free(k->ssl);
    if (k->fd >= 0)
        close(k->fd);
    redisReaderFree(k->rd);
    weir_buf_free(&k->out);
    free(k);
}

static int fail_io(weir_redis_conn *k, int rc, char *err, size_t errlen,
                   const char *what)
{
    k->broken = 1;
    perr(k->pool, err, errlen, "%s", what);
    return rc;
}

static int fail_errno(weir_redis_conn *k, int e, char *err, size_t errlen)
{
    k->broken = 1;
    if (e == ECONNRESET || e == EPIPE)
        perr(k->pool, err, errlen, "connection lost: %s", strerror(e));
    else
        perr(k->pool, err, errlen, "%s", strerror(e));
    return errno_code(e);
}

/* After a TLS call returned ret <= 0: 0 with the events to wait for in
 * *ev, or a status code < 0 (the connection is broken; message in err). */
static int tls_wait(weir_redis_conn *k, int ret, short *ev, char *err,
                    size_t errlen)
{
    char msg[256];
    int closed;

    if (weir_tls_retry(k->ssl, ret, ev, &closed, msg, sizeof msg))
        return 0;
    return fail_io(k, closed ? WEIR_ECLOSED : WEIR_EIO, err, errlen, msg);
}

static int conn_flush(weir_redis_conn *k, char *err, size_t errlen)
{
    double deadline = now_ms() + k->pool->o.command_ms;

    while (k->outpos < k->out.len) {
        size_t left = k->out.len - k->outpos;
        short ev = POLLOUT;
        ssize_t n;

        if (k->ssl != NULL) {
            n = SSL_write(k->ssl, k->out.data + k->outpos,
                          left > INT_MAX ? INT_MAX : (int)left);
            if (n <= 0) {
                int rc = tls_wait(k, (int)n, &ev, err, errlen);
                if (rc < 0)
                    return rc;
                errno = EAGAIN;
                n = -1;
            }
        } else {
            n = send(k->fd, k->out.data + k->outpos, left, MSG_NOSIGNAL);
        }
        if (n > 0) {
            k->outpos += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(k->fd, ev, deadline);
            if (w == 0) {
                k->broken = 1;
                perr(k->pool, err, errlen, "write timed out after %d ms",
                     k->pool->o.command_ms);
                return WEIR_ETIMEOUT;
            }
            if (w < 0)
                return fail_errno(k, errno, err, errlen);
            continue;
        }
        return fail_errno(k, n < 0 ? errno : EPIPE, err, errlen);
    }
    k->outpos = k->out.len = 0;
    return WEIR_OK;
}

static void out_header(weir_redis_conn *k, char kind, size_t n)
{
    k->out.len += (size_t)sprintf(k->out.data + k->out.len, "%c%zu\r\n", kind,
                                  n);
}

int weir_redis_append(weir_redis_conn *k, int argc,
                      const char *const *argv,
                      const size_t *argvlen, char *err,
                      size_t errlen)
{
    size_t need = 24;

    if (argc < 1) {
        perr(k->pool, err, errlen, "empty command");
        return WEIR_EINVAL;
    }
    for (int i = 0; i < argc; i++)
        need += argvlen[i] + 26;
    if (weir_buf_reserve(&k->out, need) != WEIR_OK) {
        perr(k->pool, err, errlen, "out of memory queuing a command");
        return WEIR_ENOMEM;
    }
    out_header(k, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        out_header(k, '$', argvlen[i]);
        memcpy(k->out.data + k->out.len, argv[i], argvlen[i]);
        k->out.len += argvlen[i];
        memcpy(k->out.data + k->out.len, "\r\n", 2);
        k->out.len += 2;
    }
    k->pending++;
    if (k->out.len - k->outpos >= FLUSH_AT)
        return conn_flush(k, err, errlen);
    return WEIR_OK;
}

int weir_redis_read(weir_redis_conn *k, redisReply **reply,
                    char *err, size_t errlen)
{
    const weir_redis_pool *p = k->pool;
    redisReader *rd = k->rd;
    double deadline;
    void *aux = NULL;
    char buf[16384];
    int rc;

    *reply = NULL;
    if (k->broken)
        return fail_io(k, WEIR_ECLOSED, err, errlen, "connection is broken");
    if (k->pending <= 0) {
        perr(p, err, errlen, "no reply expected");
        return WEIR_EINVAL;
    }
    if ((rc = conn_flush(k, err, errlen)) != WEIR_OK)
        return rc;
    k->used = 0;
    k->over = 0;
    deadline = now_ms() + p->o.command_ms;
    for (;;) {
        ssize_t n;

        if (redisReaderGetReply(rd, &aux) != REDIS_OK) {
            if (k->over)
                break;
            k->broken = 1;
            perr(p, err, errlen, "protocol error: %s", rd->errstr);
            return WEIR_EPARSE;
        }
        if (aux != NULL)
            break;
        if (k->used + (rd->len - rd->pos) > p->o.max_reply) {
            k->over = 1;
            break;
        }
        short ev = POLLIN;
        if (k->ssl != NULL) {
            n = SSL_read(k->ssl, buf, (int)sizeof buf);
            if (n <= 0) {
                if ((rc = tls_wait(k, (int)n, &ev, err, errlen)) < 0)
                    return rc;
                errno = EAGAIN;
                n = -1;
            }
        } else {
            n = recv(k->fd, buf, sizeof buf, 0);
        }
        if (n > 0) {
            if (redisReaderFeed(rd, buf, (size_t)n) != REDIS_OK)
                return fail_io(k, WEIR_ENOMEM, err, errlen,
                               "out of memory reading a reply");
            continue;
        }
        if (n == 0)
            return fail_io(k, WEIR_ECLOSED, err, errlen,
                           "server closed the connection");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(k->fd, ev, deadline);
            if (w == 0) {
                k->broken = 1;
                perr(p, err, errlen, "no reply within %d ms",
                     p->o.command_ms);
                return WEIR_ETIMEOUT;
            }
            if (w < 0)
                return fail_errno(k, errno, err, errlen);
            continue;
        }
        return fail_errno(k, errno, err, errlen);
    }
    if (k->over) {
        if (aux != NULL)
            freeReplyObject(aux);
        k->broken = 1;
        perr(p, err, errlen, "reply larger than max_reply_bytes (%zu)",
             p->o.max_reply);
        return WEIR_ELIMIT;
    }
    k->pending--;
    *reply = aux;
    return WEIR_OK;
}

/* Send one command and read its reply; an error reply becomes the status
 * code of its text, with context (e.g. "auth") in the message. */
static int conn_simple(weir_redis_conn *k, const char *ctx, int argc,
                       const char *const *argv, char *err, size_t errlen)
{
    size_t lens[4];
    redisReply *r;
    int rc;

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if ((rc = weir_redis_append(k, argc, argv, lens, err, errlen)) != 0 ||
        (rc = weir_redis_read(k, &r, err, errlen)) != 0)
        return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = weir_redis_error_code(r->str, r->len);
        perr(k->pool, err, errlen, "%s: %s", ctx, r->str);
    }
    freeReplyObject(r);
    return rc;
}

/* The TLS handshake on k's connected socket, within connect_ms. */
static int tls_connect(weir_redis_conn *k, char *err, size_t errlen)
{
    const weir_redis_pool *p = k->pool;
    double deadline = now_ms() + p->o.connect_ms;
    char msg[256];
    int r, w;

    k->ssl = weir_tls_new(p->o.tls, k->fd, p->o.tls_host, msg, sizeof msg);
    if (k->ssl == NULL)
        return fail_io(k, WEIR_EIO, err, errlen, msg);
    while ((r = SSL_connect(k->ssl)) != 1) {
        short ev;
        int rc = tls_wait(k, r, &ev, err, errlen);

        if (rc < 0)
            return rc;
        if ((w = wait_fd(k->fd, ev, deadline)) == 0) {
            perr(p, err, errlen, "tls handshake with %s:%d timed out after "
                 "%d ms", p->o.host, p->o.port, p->o.connect_ms);
            return WEIR_ETIMEOUT;
        }
        if (w < 0)
            return fail_errno(k, errno, err, errlen);
    }
    return WEIR_OK;
}

static int conn_open(weir_redis_pool *p, weir_redis_conn **out, char *err,
                     size_t errlen)
{
    weir_redis_conn *k = calloc(1, sizeof *k);
    int rc;

    if (k == NULL) {
        perr(p, err, errlen, "out of memory");
        return WEIR_ENOMEM;
    }
    k->fd = -1;
    k->pool = p;
    k->rd = redisReaderCreateWithFunctions(&obj_fns);
    if (k->rd == NULL) {
        free(k);
        perr(p, err, errlen, "out of memory");
        return WEIR_ENOMEM;
    }
    k->rd->privdata = k;
    if ((rc = tcp_connect(p, &k->fd, err, errlen)) != WEIR_OK ||
        (p->o.tls != NULL && (rc = tls_connect(k, err, errlen)) != WEIR_OK))
        goto fail;
    if (p->o.password != NULL) {
        const char *argv[3] = { "AUTH", p->o.username, p->o.password };
        if (p->o.username == NULL) {
            argv[1] = p->o.password;
            rc = conn_simple(k, "authentication failed", 2, argv, err, errlen);
        } else {
            rc = conn_simple(k, "authentication failed", 3, argv, err, errlen);
        }
        if (rc == WEIR_ESQL) /* e.g. "ERR AUTH <password> called without..." */
            rc = WEIR_EPERM;
        if (rc != WEIR_OK)
            goto fail;
    }
    if (p->o.db > 0) {
        char db[16];
        const char *argv[2] = { "SELECT", db };

        snprintf(db, sizeof db, "%d", p->o.db);
        if ((rc = conn_simple(k, "select", 2, argv, err, errlen)) != WEIR_OK)
            goto fail;
    }
    k->pid = getpid();
    *out = k;
    return WEIR_OK;
fail:
    conn_free(k);
    return rc;
}

/* Is an idle connection still usable without a round trip? Nothing may be
 * readable on it: readable means EOF (server restart) or stray bytes. And
 * it must be ours: after a fork the parent's sockets are shared, and two
 * processes talking on one would mix their replies (closing our copy of
 * the descriptor leaves the parent's connection alone). */
static int conn_quiet(weir_redis_conn *k)
{
    struct pollfd pfd = { .fd = k->fd, .events = POLLIN };
    char c;
    int r;

    if (k->fd < 0 || k->pid != getpid())
        return 0;
    if (poll(&pfd, 1, 0) == 0)
        return 1;
    if (k->ssl == NULL)
        return 0;
    /* TLS 1.3 servers send session tickets after the handshake: records
     * that carry no data leave the connection quiet */
    r = SSL_peek(k->ssl, &c, 1);
    if (r <= 0 && SSL_get_error(k->ssl, r) == SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        return 1;
    }
    ERR_clear_error();
    return 0;
}

static int conn_ping(weir_redis_conn *k, char *err, size_t errlen)
{
    const char *argv[1] = { "PING" };

    return conn_simple(k, "ping", 1, argv, err, errlen);
}

/* ---- pools ------------------------------------------------------------- */

static int class_open(weir_pool *p, weir_pool_conn **out, char *err,
                      size_t errlen)
{
    weir_redis_conn *k;
    int rc = conn_open((weir_redis_pool *)p, &k, err, errlen);

    if (rc == WEIR_OK)
        *out = &k->base;
    return rc;
}

/* closed by the server while idle (restart, timeout)? */
static int class_check(weir_pool_conn *c, int ping)
{
    weir_redis_conn *k = (weir_redis_conn *)c;

    return conn_quiet(k) && (!ping || conn_ping(k, NULL, 0) == WEIR_OK);
}

static void class_close(weir_pool_conn *c)
{
    conn_free((weir_redis_conn *)c);
}

static void opts_free(pool_opts *o)
{
    free(o->host);
    free(o->username);
    if (o->password != NULL) {
        explicit_bzero(o->password, strlen(o->password));
        free(o->password);
    }
    free(o->tls_host);
    free(o->tls_ca);
    free(o->tls_cert);
    if (o->tls_key != NULL) {
        explicit_bzero(o->tls_key, strlen(o->tls_key));
        free(o->tls_key);
    }
    SSL_CTX_free(o->tls);
}

static int dflt(int32_t v, int d)
{
    return v == 0 ? d : v < 0 ? -1 : v;
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int same_opts(const pool_opts *a, const pool_opts *b)
{
    return strcmp(a->host, b->host) == 0 && a->port == b->port &&
           same_str(a->username, b->username) &&
           same_str(a->password, b->password) && a->db == b->db &&
           a->connect_ms == b->connect_ms && a->command_ms == b->command_ms &&
           a->min == b->min && a->max == b->max && a->idle_ms == b->idle_ms &&
           a->lifetime_ms == b->lifetime_ms &&
           a->validate_ms == b->validate_ms && a->max_reply == b->max_reply &&
           same_str(a->tls_host, b->tls_host) &&
           same_str(a->tls_ca, b->tls_ca) &&
           same_str(a->tls_cert, b->tls_cert) &&
           same_str(a->tls_key, b->tls_key);
}

static char *dup_or_null(const char *s, int *oom)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *oom = 1;
    return d;
}

/* Validate opts into o (owning copies). 0 or -1 (message in err). */
static int opts_load(const char *name, const weir_redis_opts *in,
                     pool_opts *o, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int oom = 0;

    memset(o, 0, sizeof *o);
    if (in->host == NULL ||
        parse_addr(in->host, in->port, &ss, &len) != 0) {
        weir_set_err(err, errlen,
                     "redis \"%s\": host must be a numeric IP address", name);
        return WEIR_EINVAL;
    }
    if (in->port < 1 || in->port > 65535 || in->db < 0 ||
        in->connect_timeout_ms < 0 || in->command_timeout_ms < 0 ||
        in->min_size < 0 || in->max_size < 0 || in->max_reply_bytes < 0) {
        weir_set_err(err, errlen, "redis \"%s\": bad port, db, timeout, "
                     "pool size or reply bound", name);
        return WEIR_EINVAL;
    }
    if (in->username != NULL &&
        (in->password == NULL || in->password[0] == '\0')) {
        weir_set_err(err, errlen,
                     "redis \"%s\": a username needs a password", name);
        return WEIR_EINVAL;
    }
    o->host = dup_or_null(in->host, &oom);
    o->port = in->port;
    o->username = dup_or_null(in->username, &oom);
    if (in->password != NULL && in->password[0] != '\0')
        o->password = dup_or_null(in->password, &oom);
    o->db = in->db;
    o->connect_ms = dflt(in->connect_timeout_ms, DEF_CONNECT_MS);
    o->command_ms = dflt(in->command_timeout_ms, DEF_COMMAND_MS);
    o->min = in->min_size;
    o->max = dflt(in->max_size, DEF_POOL_MAX);
    o->idle_ms = dflt(in->idle_timeout_ms, DEF_IDLE_MS);
    o->lifetime_ms = dflt(in->max_lifetime_ms, DEF_LIFETIME_MS);
    o->validate_ms = dflt(in->validate_after_ms, DEF_VALIDATE_MS);
    o->max_reply = (size_t)(in->max_reply_bytes ? in->max_reply_bytes
                                                : DEF_MAX_REPLY);
    if (in->tls_ca != NULL) {
        char msg[256];

        if (in->tls_host == NULL || (in->tls_cert == NULL) != (in->tls_key == NULL)) {
            opts_free(o);
            weir_set_err(err, errlen, "redis \"%s\": tls needs a host name, "
                         "and a cert goes with a key", name);
            return WEIR_EINVAL;
        }
        o->tls_host = dup_or_null(in->tls_host, &oom);
        o->tls_ca = dup_or_null(in->tls_ca, &oom);
        o->tls_cert = dup_or_null(in->tls_cert, &oom);
        o->tls_key = dup_or_null(in->tls_key, &oom);
        if (!oom && (o->tls = weir_tls_client_ctx(in->tls_ca, in->tls_cert,
                                                  in->tls_key, msg,
                                                  sizeof msg)) == NULL) {
            opts_free(o);
            weir_set_err(err, errlen, "redis \"%s\": %s", name, msg);
            return WEIR_EINVAL;
        }
    }
    if (oom) {
        opts_free(o);
        weir_set_err(err, errlen, "redis \"%s\": out of memory", name);
        return WEIR_ENOMEM;
    }
    return WEIR_OK;
}

static void class_free(weir_pool *p)
{
    opts_free(&((weir_redis_pool *)p)->o);
    free(p);
}

static const weir_pool_class redis_pools = {
    .open = class_open,
    .check = class_check,
    .close = class_close,
    .free = class_free,
};

WEIR_API int weir_ffi_redis_pool_get(const char *name,
                                     const weir_redis_opts *opts,
                                     weir_redis_pool **out, char *err,
                                     size_t errlen)
{
    weir_redis_pool *p;
    weir_pool_opts po;
    pool_opts o;
    int rc;

    *out = NULL;
    if (name == NULL || name[0] == '\0' || opts == NULL) {
        weir_set_err(err, errlen, "redis: a pool needs a name and options");
        return WEIR_EINVAL;
    }
    if ((rc = opts_load(name, opts, &o, err, errlen)) != WEIR_OK)
        return rc;
    p = (weir_redis_pool *)weir_pool_get(&redis_pools, name);
    if (p != NULL && same_opts(&p->o, &o)) {
        opts_free(&o);
        *out = p; /* the reference weir_pool_get took */
        return WEIR_OK;
    }
    if (p != NULL)
        weir_pool_unref(&p->base); /* replaced by weir_pool_add below */
    po = (weir_pool_opts){ .min_size = o.min, .max_size = o.max,
                           .idle_timeout_ms = o.idle_ms,
                           .max_lifetime_ms = o.lifetime_ms,
                           .validate_after_ms = o.validate_ms };
    p = calloc(1, sizeof *p);
    if (p == NULL || weir_pool_init(&p->base, &redis_pools, name, &po)
                         != WEIR_OK) {
        free(p);
        opts_free(&o);
        weir_set_err(err, errlen, "redis \"%s\": out of memory", name);
        return WEIR_ENOMEM;
    }
    p->o = o;
    weir_pool_ref(&p->base); /* the caller's, with the registry's */
    weir_pool_add(&p->base); /* replaces a pool of other options */
    *out = p;
    return WEIR_OK;
}

WEIR_API void weir_ffi_redis_pool_release(weir_redis_pool *pool)
{
    if (pool != NULL)
        weir_pool_unref(&pool->base);
}

WEIR_API int weir_ffi_redis_pool_drop(const char *name)
{
    return weir_pool_drop(&redis_pools, name);
}

WEIR_API void weir_ffi_redis_shutdown(void)
{
    weir_pool_drop_all(&redis_pools);
}

WEIR_API int32_t weir_ffi_redis_live_pools(void)
{
    return weir_pool_live(&redis_pools);
}

WEIR_API void weir_ffi_redis_pool_stats(weir_redis_pool *pool,
                                        weir_redis_stats *out)
{
    weir_pool_stats st;

    weir_pool_get_stats(&pool->base, &st);
    out->open = st.open;
    out->idle = st.idle;
    out->in_use = st.in_use;
    out->retired = st.retired;
    out->connects = st.connects;
    out->dropped = st.dropped;
}

int weir_redis_acquire(weir_redis_pool *p, weir_redis_conn **out,
                       char *err, size_t errlen)
{
    weir_pool_conn *c;
    int rc = weir_pool_acquire(&p->base, &c, err, errlen);

    *out = (weir_redis_conn *)c;
    if (rc == WEIR_ELIMIT) {
        weir_pool_stats st;

        weir_pool_get_stats(&p->base, &st);
        perr(p, err, errlen, "pool exhausted (%d connections in use)",
             (int)st.in_use);
        return WEIR_EAGAIN;
    }
    return rc;
}

void weir_redis_release(weir_redis_conn *k, int reusable)
{
    if (k != NULL)
        weir_pool_release(&k->base, reusable && !k->broken
                                        && k->pending == 0
                                        && k->out.len == 0);
}

WEIR_API int weir_ffi_redis_ping(weir_redis_pool *pool, double *ms, char *err,
                                 size_t errlen)
{
    weir_redis_conn *k;
    double t0;
    int rc;

    *ms = 0;
    if ((rc = weir_redis_acquire(pool, &k, err, errlen)) != WEIR_OK)
        return rc;
    t0 = now_ms();
    rc = conn_ping(k, err, errlen);
    *ms = now_ms() - t0;
    weir_redis_release(k, rc == WEIR_OK);
    return rc;
}

/* ---- Lua --------------------------------------------------------------- */

#define GUARD_MT "weir.redis.guard"

/* What one classic call holds outside the Lua heap; a finalizer frees it
 * if a Lua error (memory, misuse) cuts the call short. */
typedef struct guard {
    weir_redis_conn *k;
    redisReply *r;
    const char **argv;
    size_t *lens;
    char *nums; /* numbers formatted as text, 32 bytes per argument */
    int cap;
} guard;

static void guard_clear(guard *g, int reusable)
{
    if (g->r != NULL)
        freeReplyObject(g->r);
    g->r = NULL;
    if (g->k != NULL)
        weir_redis_release(g->k, reusable);
    g->k = NULL;
    free(g->argv);
    free(g->lens);
    free(g->nums);
    g->argv = NULL;
    g->lens = NULL;
    g->nums = NULL;
    g->cap = 0;
}

static int guard_gc(lua_State *L)
{
    guard_clear(lua_touserdata(L, 1), 0);
    return 0;
}

static guard *guard_new(lua_State *L)
{
    guard *g = lua_newuserdata(L, sizeof *g);

    memset(g, 0, sizeof *g);
    if (luaL_newmetatable(L, GUARD_MT)) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return g;
}

static weir_redis_pool *pool_arg(lua_State *L, int i)
{
    return weir_lua_cdata_ptr(L, i, "weir_redis_pool *");
}

/* Integers as integers (Redis parses "1e+15" as no integer, and "-0" as
 * none either), other numbers in the fewest digits that read back the
 * same (numfmt.h). buf holds 32 bytes. */
static int fmt_number(char *buf, lua_Number x)
{
    if (isinf(x))
        return snprintf(buf, 32, "%s", x > 0 ? "+inf" : "-inf");
    if (x == floor(x) && fabs(x) < 9.2e18)
        return (int)weir_fmt_i64(buf, (int64_t)x);
    return (int)weir_fmt_double(buf, x);
}

/* Check that the table at idx is a non-empty array of strings and numbers
 * (misuse raises); returns its length. */
static int check_args(lua_State *L, int idx, int cmd)
{
    int n = (int)lua_objlen(L, idx);

    if (n < 1)
        luaL_error(L, "redis: command %d is empty", cmd);
    for (int i = 1; i <= n; i++) {
        int t;
        lua_rawgeti(L, idx, i);
        t = lua_type(L, -1);
        if (t == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
            luaL_error(L, "redis: command %d, argument %d is NaN", cmd, i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "redis: command %d, argument %d: string or number "
                       "expected, got %s", cmd, i, lua_typename(L, t));
        lua_pop(L, 1);
    }
    return n;
}

/* Point g->argv at the arguments of the (checked) table at idx. Strings
 * are borrowed from the table, which the caller's stack anchors. */
static void gather_args(lua_State *L, int idx, int n, guard *g)
{
    if (n > g->cap) {
        free(g->argv);
        free(g->lens);
        free(g->nums);
        g->argv = malloc((size_t)n * sizeof *g->argv);
        g->lens = malloc((size_t)n * sizeof *g->lens);
        g->nums = malloc((size_t)n * 32);
        g->cap = g->argv && g->lens && g->nums ? n : 0;
        if (g->cap == 0)
            luaL_error(L, "redis: out of memory");
    }
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            g->argv[i] = lua_tolstring(L, -1, &g->lens[i]);
        } else {
            char *s = g->nums + (size_t)i * 32;
            g->lens[i] = (size_t)fmt_number(s, lua_tonumber(L, -1));
            g->argv[i] = s;
        }
        lua_pop(L, 1);
    }
}

static const char *code_name(int rc)
{
    switch (rc) {
    case WEIR_EINVAL: return "invalid";
    case WEIR_ENOMEM: return "nomem";
    case WEIR_EIO: return "io";
    case WEIR_EPERM: return "denied";
    case WEIR_ELIMIT: return "limit";
    case WEIR_EPARSE: return "parse";
    case WEIR_ESQL: return "sql";
    case WEIR_EAGAIN: return "again";
    case WEIR_ECLOSED: return "closed";
    case WEIR_ETIMEOUT: return "timeout";
    default: return "error";
    }
}

/* Push an error object; word: the Redis error code ("WRONGTYPE") or
 * NULL for transport errors. */
static void push_err(lua_State *L, int errmt, int rc, const char *msg,
                     const char *word, size_t wlen)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, code_name(rc));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, weir_ffi_redis_transient(rc));
    lua_setfield(L, -2, "transient");
    lua_pushinteger(L, rc);
    lua_setfield(L, -2, "rc");
    if (word != NULL) {
        lua_pushlstring(L, word, wlen);
        lua_setfield(L, -2, "redis");
    }
    if (lua_istable(L, errmt)) {
        lua_pushvalue(L, errmt);
        lua_setmetatable(L, -2);
    }
}

static void push_reply_err(lua_State *L, int errmt, const weir_redis_pool *p,
                           const redisReply *r)
{
    char msg[1024];
    size_t w = 0;

    while (w < r->len && r->str[w] != ' ')
        w++;
    perr(p, msg, sizeof msg, "%s", r->str);
    push_err(L, errmt, weir_redis_error_code(r->str, r->len), msg, r->str,
             w);
}

static void push_reply(lua_State *L, int errmt, const weir_redis_pool *p,
                       const redisReply *r)
{
    luaL_checkstack(L, 4, "redis: reply nested too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushnumber(L, (lua_Number)r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, errmt, p, r->element[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    case REDIS_REPLY_ERROR:
        push_reply_err(L, errmt, p, r);
        break;
    default: /* nil */
        lua_pushlightuserdata(L, NULL);
        break;
    }
}

static int is_str(const redisReply *r)
{
    return r != NULL &&
           (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* [cursor, [a, b, ...]] into cursor, { {ka=a}... } or { {ka=a, kb=b}... }.
 * 0, or -1 when the reply has another shape. */
static int push_scan(lua_State *L, const redisReply *r, const char *ka,
                     const char *kb)
{
    const redisReply *items;
    size_t step = kb ? 2 : 1;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        !is_str(r->element[0]) || r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[1]->elements % step != 0)
        return -1;
    items = r->element[1];
    for (size_t i = 0; i < items->elements; i++)
        if (!is_str(items->element[i]))
            return -1;
    lua_pushlstring(L, r->element[0]->str, r->element[0]->len);
    lua_createtable(L, (int)(items->elements / step), 0);
    for (size_t i = 0; i < items->elements; i += step) {
        lua_createtable(L, 0, (int)step);
        lua_pushlstring(L, items->element[i]->str, items->element[i]->len);
        lua_setfield(L, -2, ka);
        if (kb) {
            const redisReply *v = items->element[i + 1];
            lua_pushlstring(L, v->str, v->len);
            lua_setfield(L, -2, kb);
        }
        lua_rawseti(L, -2, (int)(i / step) + 1);
    }
    return 0;
}

/* [[id, [f, v, ...] | nil], ...] into { {id=, f=v...}... }, last id. */
static int push_xrange(lua_State *L, const redisReply *r)
{
    const redisReply *last = NULL;

    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i], *f;
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            !is_str(e->element[0]))
            return -1;
        f = e->element[1];
        if (f->type == REDIS_REPLY_ARRAY) {
            if (f->elements % 2 != 0)
                return -1;
            for (size_t j = 0; j < f->elements; j++)
                if (!is_str(f->element[j]))
                    return -1;
        } else if (f->type != REDIS_REPLY_NIL) {
            return -1;
        }
    }
    lua_createtable(L, (int)r->elements, 0);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i], *f = e->element[1];
        size_t nf = f->type == REDIS_REPLY_ARRAY ? f->elements : 0;

        lua_createtable(L, 0, (int)nf / 2 + 1);
        for (size_t j = 0; j < nf; j += 2) {
            lua_pushlstring(L, f->element[j]->str, f->element[j]->len);
            lua_pushlstring(L, f->element[j + 1]->str,
                            f->element[j + 1]->len);
            lua_rawset(L, -3);
        }
        /* set last: the entry id wins over a field named "id" */
        lua_pushlstring(L, e->element[0]->str, e->element[0]->len);
        lua_setfield(L, -2, "id");
        lua_rawseti(L, -2, (int)i + 1);
        last = e->element[0];
    }
    if (last != NULL)
        lua_pushlstring(L, last->str, last->len);
    else
        lua_pushnil(L);
    return 0;
}

/* nil, err: the connection in g is given back (closed when broken). */
static int ret_fail(lua_State *L, guard *g, int errmt, int rc, const char *msg)
{
    guard_clear(g, 1);
    lua_pushnil(L);
    push_err(L, errmt, rc, msg, NULL, 0);
    return 2;
}

/* command(pool, args, shape, errmt) -> result(s) | nil, err */
static int l_command(lua_State *L)
{
    weir_redis_pool *p = pool_arg(L, 1);
    int shape = (int)luaL_optinteger(L, 3, 0);
    const int errmt = 4;
    char err[1024];
    guard *g;
    int n, rc, nret = 1;

    luaL_checktype(L, 2, LUA_TTABLE);
    if (shape < 0 || shape > 3)
        luaL_argerror(L, 3, "shape 0..3 expected");
    lua_settop(L, 4);
    n = check_args(L, 2, 1);
    g = guard_new(L); /* at 5 */
    gather_args(L, 2, n, g);
    if ((rc = weir_redis_acquire(p, &g->k, err, sizeof err)) != WEIR_OK ||
        (rc = weir_redis_append(g->k, n, g->argv, g->lens, err,
                                sizeof err)) != WEIR_OK ||
        (rc = weir_redis_read(g->k, &g->r, err, sizeof err)) != WEIR_OK)
        return ret_fail(L, g, errmt, rc, err);
    if (g->r->type == REDIS_REPLY_ERROR) {
        lua_pushnil(L);
        push_reply_err(L, errmt, p, g->r);
        guard_clear(g, 1);
        return 2;
    }
    if (shape == 0) {
        push_reply(L, errmt, p, g->r);
    } else {
        int bad = shape == 1   ? push_scan(L, g->r, "key", NULL)
                  : shape == 2 ? push_scan(L, g->r, "field", "value")
                               : push_xrange(L, g->r);
        if (bad) {
            perr(p, err, sizeof err, "unexpected reply shape to %s",
                 shape == 3 ? "XRANGE" : "SCAN");
            return ret_fail(L, g, errmt, WEIR_EPARSE, err);
        }
        nret = 2;
    }
    guard_clear(g, 1);
    return nret;
}

/* pipeline(pool, cmds, errmt) -> replies | nil, err */
static int l_pipeline(lua_State *L)
{
    weir_redis_pool *p = pool_arg(L, 1);
    const int errmt = 3, res = 5;
    char err[1024];
    guard *g;
    int n, rc;

    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3);
    n = (int)lua_objlen(L, 2);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1))
            luaL_error(L, "redis: command %d: table expected, got %s", i,
                       luaL_typename(L, -1));
        check_args(L, lua_gettop(L), i);
        lua_pop(L, 1);
    }
    g = guard_new(L); /* at 4 */
    lua_createtable(L, n, 0); /* res */
    if (n == 0)
        return 1;
    if ((rc = weir_redis_acquire(p, &g->k, err, sizeof err)) != WEIR_OK)
        return ret_fail(L, g, errmt, rc, err);
    for (int base = 1; base <= n; base += WINDOW) {
        int last = base + WINDOW - 1 < n ? base + WINDOW - 1 : n;

        for (int i = base; i <= last; i++) {
            int argc;
            lua_rawgeti(L, 2, i);
            argc = (int)lua_objlen(L, -1);
            gather_args(L, lua_gettop(L), argc, g);
            rc = weir_redis_append(g->k, argc, g->argv, g->lens, err,
                                   sizeof err);
            lua_pop(L, 1);
            if (rc != WEIR_OK)
                return ret_fail(L, g, errmt, rc, err);
        }
        for (int i = base; i <= last; i++) {
            if ((rc = weir_redis_read(g->k, &g->r, err, sizeof err)) != 0)
                return ret_fail(L, g, errmt, rc, err);
            push_reply(L, errmt, p, g->r);
            lua_rawseti(L, res, i);
            freeReplyObject(g->r);
            g->r = NULL;
        }
    }
    guard_clear(g, 1);
    return 1;
}

static const luaL_Reg redis_natives[] = {
    { "command", l_command },
    { "pipeline", l_pipeline },
    { NULL, NULL },
};

const weir_connector_desc weir_connector_redis = {
    .name = "redis",
    .table = "redis",
    .natives = redis_natives,
};
