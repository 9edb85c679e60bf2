/*
 * http.c - the HTTP server primitive (http.h, ADR 17) on libmicrohttpd
 * 0.9.75: its internal thread(s) with epoll accept connections, read and
 * check requests, answer GET/HEAD /health and every refusal themselves,
 * and suspend each other complete request while it waits in a queue for
 * the one Lua loop. Lua takes requests (weir_ffi_http_next, woken by an
 * eventfd) and answers by id; the answer is prepared in Lua's thread and
 * queued by libmicrohttpd's thread when it resumes the connection.
 *
 * Refusals are RFC 9457 problem+json. libmicrohttpd's own refusals (a
 * request line or header block larger than its buffer, a malformed
 * request line or Content-Length, bad chunked framing, a missing Host)
 * come with hard-coded HTML pages: this unit defines
 * MHD_create_response_from_buffer and MHD_queue_response itself, so the
 * library's calls bind to them in a program that links this unit, and
 * replaces those pages with problem+json (calling the library's own
 * functions through dlsym(RTLD_NEXT)). What libmicrohttpd lets through
 * and RFC 9112 refuses (bare LF, NUL and other control bytes, several
 * Content-Length fields, Content-Length with Transfer-Encoding, field
 * names with spaces) is refused here, from the header block as
 * libmicrohttpd 0.9.75 leaves it in its read buffer (head_walk).
 *
 * One mutex guards the queue, the taken requests and the streams; the
 * counters are atomics. Relies on libmicrohttpd, buf.c, clock.c.
 */
#include "weir/http.h"
#include "weir/buf.h"
#include "weir/clock.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define NBUCKETS 1024u

enum {
    RQ_READING,  /* libmicrohttpd is reading it */
    RQ_WAITING,  /* complete, in the queue, connection suspended */
    RQ_TAKEN,    /* Lua took it, connection suspended */
    RQ_ANSWERED, /* the answer is prepared or queued */
    RQ_STREAM    /* answered with a stream Lua still writes */
};

typedef struct stream {
    weir_buf buf;  /* bytes not yet sent, from off */
    size_t off;
    int eof;       /* Lua closed it */
    int gone;      /* libmicrohttpd is done with the answer */
    int lua;       /* Lua still holds the id */
} stream;

typedef struct hreq {
    weir_http *h;
    struct MHD_Connection *conn; /* NULL once the request completed */
    uint64_t id;
    int state;
    int checked;        /* the first call's checks are done */
    int health;         /* GET /health: answered here, never queued */
    int suspended;
    int too_large;      /* body over the limit: discarding it */
    uint64_t discarded;
    const char *uri_at; /* the target in libmicrohttpd's buffer */
    size_t uri_len;
    char *target;       /* raw request target, copied */
    char *method;
    weir_buf headers;
    weir_buf body;
    char client[INET6_ADDRSTRLEN];
    struct MHD_Response *resp; /* prepared answer, queued on resume */
    unsigned status;
    int64_t taken_us;
    stream *st;
    struct hreq *next, *prev;  /* the queue or the taken list */
    struct hreq *hnext;        /* the id's bucket */
} hreq;

typedef struct {
    hreq *head, *tail;
} rlist;

struct weir_http {
    struct MHD_Daemon *d;
    int efd;
    int32_t port;
    int tls;
    size_t max_header, max_body, stream_cap;
    int64_t request_timeout_us;
    pthread_mutex_t mu;
    int closing;
    uint64_t next_id;
    rlist waiting, taken;
    hreq *ids[NBUCKETS];
    struct MHD_Response *health;
    weir_http_stats stats;
};

#define COUNT(h, field) \
    __atomic_add_fetch(&(h)->stats.field, 1, __ATOMIC_RELAXED)

static void list_push(rlist *l, hreq *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
}

static void list_remove(rlist *l, hreq *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->next = r->prev = NULL;
}

static void id_add(weir_http *h, hreq *r)
{
    hreq **b = &h->ids[r->id % NBUCKETS];

    r->hnext = *b;
    *b = r;
}

static hreq *id_find(weir_http *h, uint64_t id)
{
    hreq *r = h->ids[id % NBUCKETS];

    while (r && r->id != id)
        r = r->hnext;
    return r;
}

static void id_remove(weir_http *h, hreq *r)
{
    hreq **p = &h->ids[r->id % NBUCKETS];

    while (*p && *p != r)
        p = &(*p)->hnext;
    if (*p)
        *p = r->hnext;
    r->hnext = NULL;
}

static void req_free(hreq *r)
{
    if (r->resp)
        MHD_destroy_response(r->resp);
    if (r->st) {
        weir_buf_free(&r->st->buf);
        free(r->st);
    }
    weir_buf_free(&r->headers);
    weir_buf_free(&r->body);
    free(r->target);
    free(r->method);
    free(r);
}

/* ---------------------------------------------------------- problems */

static const char *reason(unsigned status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status >= 500 ? "Internal Server Error" : "Bad Request";
    }
}

/* A complete problem+json answer (RFC 9457), closing the connection.
 * detail is a constant of this unit (no escaping needed). */
static struct MHD_Response *problem(unsigned status, const char *detail)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"type\":\"about:blank\",\"title\":\"%s\","
                     "\"status\":%u,\"detail\":\"%s\"}",
                     reason(status), status, detail);
    struct MHD_Response *r;

    if (n < 0 || (size_t)n >= sizeof(body))
        n = 0;
    r = MHD_create_response_from_buffer((size_t)n, body,
                                        MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return NULL;
    MHD_add_response_header(r, "Content-Type", "application/problem+json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Connection", "close");
    return r;
}

static void count_refusal(weir_http *h, unsigned status)
{
    if (h == NULL)
        return;
    switch (status) {
    case 400: COUNT(h, refused_400); break;
    case 413: COUNT(h, refused_413); break;
    case 414: COUNT(h, refused_414); break;
    case 431: COUNT(h, refused_431); break;
    case 501: COUNT(h, refused_501); break;
    case 503: COUNT(h, refused_503); break;
    case 505: COUNT(h, refused_505); break;
    default: COUNT(h, refused_other); break;
    }
}

/* What libmicrohttpd refused, said in the problem's words. */
static const char *mhd_detail(unsigned status)
{
    switch (status) {
    case 413: return "a length is larger than the server accepts";
    case 414: return "the request line is longer than the server accepts";
    case 431: return "the header fields are larger than the server accepts";
    case 505: return "the HTTP version is not supported: use HTTP/1.1";
    case 400: return "the request is not valid HTTP/1.1 (request line, "
                     "Host, Content-Length or chunked framing)";
    default: return "the request could not be processed";
    }
}

/* --------------------------------------- libmicrohttpd's HTML pages
 * libmicrohttpd 0.9.75 refuses bad requests with
 * MHD_create_response_from_buffer(len, "<html>...", PERSISTENT) followed
 * at once, in the same thread, by MHD_queue_response. These two
 * definitions take the library's calls (they are exported from the
 * program, which comes first in symbol lookup): the page is marked when
 * created and swapped for a problem+json answer when queued. Everything
 * else goes straight to the library's functions. */

typedef struct MHD_Response *(*create_fn)(size_t, void *,
                                          enum MHD_ResponseMemoryMode);
typedef enum MHD_Result (*queue_fn)(struct MHD_Connection *, unsigned int,
                                    struct MHD_Response *);

static _Thread_local struct MHD_Response *mhd_page;

static void *real_fn(void **slot, const char *name)
{
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

    if (f == NULL) {
        f = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    }
    return f;
}

static void *real_create, *real_queue;

__attribute__((visibility("default"))) struct MHD_Response *
MHD_create_response_from_buffer(size_t size, void *buffer,
                                enum MHD_ResponseMemoryMode mode)
{
    create_fn f = (create_fn)real_fn(&real_create,
                                     "MHD_create_response_from_buffer");
    struct MHD_Response *r = f ? f(size, buffer, mode) : NULL;

    if (r != NULL && mode == MHD_RESPMEM_PERSISTENT && size >= 6
        && memcmp(buffer, "<html>", 6) == 0)
        mhd_page = r;
    return r;
}

__attribute__((visibility("default"))) enum MHD_Result
MHD_queue_response(struct MHD_Connection *c, unsigned int status,
                   struct MHD_Response *resp)
{
    queue_fn f = (queue_fn)real_fn(&real_queue, "MHD_queue_response");

    if (f == NULL)
        return MHD_NO;
    if (resp != NULL && resp == mhd_page) {
        const union MHD_ConnectionInfo *ci;
        struct MHD_Response *p;
        enum MHD_Result rc;

        mhd_page = NULL;
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        count_refusal(ci ? (weir_http *)ci->socket_context : NULL, status);
        p = problem(status, mhd_detail(status));
        if (p != NULL) {
            rc = f(c, status, p);
            MHD_destroy_response(p);
            return rc;
        }
    }
    return f(c, status, resp);
}

/* ------------------------------------------------ the request checks */

static enum MHD_Result refuse(weir_http *h, struct MHD_Connection *c,
                              unsigned status, const char *detail)
{
    struct MHD_Response *p = problem(status, detail);
    enum MHD_Result rc;

    count_refusal(h, status);
    if (p == NULL)
        return MHD_NO;
    rc = MHD_queue_response(c, status, p);
    MHD_destroy_response(p);
    return rc;
}

static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
           || (ch >= '0' && ch <= '9') || (ch != 0 && strchr("!#$%&'*+-.^_`|~",
                                                          ch) != NULL);
}

/* Field values: visible bytes, SP, HTAB, obs-text; no other control. */
static int value_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 1;
}

typedef struct {
    hreq *r;
    const char *expect; /* where the next field name must start */
    const char *detail; /* set: refuse with 400 */
    unsigned status;
    int n_length, n_coding, n_host;
    const char *coding;
} walk;

/* One header field, in the order received. libmicrohttpd 0.9.75 parses
 * the block in place: each CRLF becomes two NULs, the colon one NUL, and
 * the value starts after optional white space. So a field is clean when
 * its name starts where the previous line's CRLF ended and its value is
 * followed by exactly two NULs; a bare LF, a NUL or a folded line
 * breaks that. */
static enum MHD_Result head_field(void *cls, enum MHD_ValueKind kind,
                                  const char *key, size_t klen,
                                  const char *value, size_t vlen)
{
    walk *w = cls;
    hreq *r = w->r;

    (void)kind;
    if (w->detail)
        return MHD_NO;
    if (key != w->expect || value == NULL || value < key + klen + 1
        || value[vlen] != '\0' || value[vlen + 1] != '\0') {
        w->detail = "a header line is not a field ending in CRLF "
                    "(bare LF, NUL byte or folded line)";
        return MHD_NO;
    }
    w->expect = value + vlen + 2;
    for (size_t i = 0; i < klen; i++)
        if (!is_tchar((unsigned char)key[i])) {
            w->detail = "a header field name holds a character outside "
                        "the token set";
            return MHD_NO;
        }
    if (klen == 0 || !value_ok(value, vlen)) {
        w->detail = klen == 0 ? "a header field has no name"
                              : "a header field value holds a control byte";
        return MHD_NO;
    }
    if (strcasecmp(key, "content-length") == 0)
        w->n_length++;
    else if (strcasecmp(key, "host") == 0)
        w->n_host++;
    else if (strcasecmp(key, "transfer-encoding") == 0) {
        w->n_coding++;
        w->coding = value;
    }
    for (size_t i = 0; i < klen; i++) {
        char ch = key[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (weir_buf_putc(&r->headers, ch) != WEIR_OK)
            goto nomem;
    }
    if (weir_buf_append(&r->headers, ": ", 2) != WEIR_OK
        || weir_buf_append(&r->headers, value, vlen) != WEIR_OK
        || weir_buf_putc(&r->headers, '\n') != WEIR_OK)
        goto nomem;
    return MHD_YES;
nomem:
    w->detail = "out of memory";
    w->status = 503;
    return MHD_NO;
}

/* The first call for a request: 0 when it may go on, else the status to
 * refuse it with and *detail. */
static unsigned check_request(weir_http *h, hreq *r,
                              struct MHD_Connection *c, const char *method,
                              const char *version, const char **detail)
{
    walk w = { .r = r };
    size_t vlen = strlen(version);
    const char *len;

    /* the request line: METHOD SP target SP version CRLF */
    if (r->uri_at == NULL || r->uri_at + r->uri_len + 1 != version
        || version[vlen] != '\0' || version[vlen + 1] != '\0') {
        *detail = "the request line is not METHOD SP target SP version "
                  "CRLF (bare LF, NUL byte or extra spaces)";
        return 400;
    }
    if (r->target[0] != '/') {
        *detail = "the request target must be an absolute path";
        return 400;
    }
    for (const char *p = r->target; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            *detail = "the request target holds a space or a control byte";
            return 400;
        }
    w.expect = version + vlen + 2;
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, head_field, &w);
    /* the empty line that ends the block: CRLF, two NULs by now */
    if (!w.detail && (w.expect[0] != '\0' || w.expect[1] != '\0'))
        w.detail = "the header block does not end with CRLF CRLF";
    if (w.detail) {
        *detail = w.detail;
        return w.status ? w.status : 400;
    }
    if (w.n_host != 1 && strcmp(version, "HTTP/1.1") == 0) {
        *detail = "an HTTP/1.1 request needs exactly one Host field";
        return 400;
    }
    if ((size_t)(w.expect - method) + 2 > h->max_header) {
        *detail = "the request line and header fields are larger than "
                  "the server accepts";
        return 431;
    }
    if (w.n_length > 1) {
        *detail = "more than one Content-Length field";
        return 400;
    }
    if (w.n_coding > 0 && w.n_length > 0) {
        *detail = "both Content-Length and Transfer-Encoding";
        return 400;
    }
    if (w.n_coding > 1 || (w.n_coding == 1
                           && strcasecmp(w.coding, "chunked") != 0)) {
        *detail = "the only transfer coding accepted is chunked";
        return 501;
    }
    len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (len && strtoull(len, NULL, 10) > h->max_body) {
        *detail = "the request body is larger than the server accepts";
        return 413;
    }
    return 0;
}

/* ----------------------------------------------- libmicrohttpd hooks */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    hreq *r = calloc(1, sizeof(*r));

    (void)c;
    if (r == NULL)
        return NULL;
    r->h = cls;
    r->conn = c;
    r->state = RQ_READING;
    r->uri_at = uri;
    r->uri_len = uri ? strlen(uri) : 0;
    r->target = strndup(uri ? uri : "", r->uri_len);
    if (r->target == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

static void on_connection(void *cls, struct MHD_Connection *c,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)c;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        *socket_context = cls;
}

static void client_text(hreq *r, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    r->client[0] = '\0';
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                  r->client, sizeof(r->client));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                  r->client, sizeof(r->client));
}

/* A complete request: queue it for Lua and suspend the connection. */
static enum MHD_Result enqueue(weir_http *h, hreq *r,
                               struct MHD_Connection *c)
{
    uint64_t one = 1;

    pthread_mutex_lock(&h->mu);
    if (h->closing) {
        pthread_mutex_unlock(&h->mu);
        return refuse(h, c, 503, "the server is shutting down");
    }
    r->id = ++h->next_id;
    r->state = RQ_WAITING;
    list_push(&h->waiting, r);
    h->stats.waiting++;
    MHD_suspend_connection(c);
    r->suspended = 1;
    if (write(h->efd, &one, sizeof(one)) < 0) {
        /* the counter cannot overflow at these rates; nothing to do */
    }
    pthread_mutex_unlock(&h->mu);
    COUNT(h, queued);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **ctx)
{
    weir_http *h = cls;
    hreq *r = *ctx;

    (void)url;
    if (r == NULL)
        return MHD_NO; /* out of memory when the request line came */
    if (!r->checked) {
        const char *detail = NULL;
        unsigned status;

        r->checked = 1;
        status = check_request(h, r, c, method, version, &detail);
        if (status)
            return refuse(h, c, status, detail);
        if ((strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
            && (strcmp(r->target, "/health") == 0
                || strncmp(r->target, "/health?", 8) == 0)) {
            /* answered at the next call, once the request is read whole:
             * an answer queued earlier makes libmicrohttpd close the
             * connection (no keep-alive) */
            r->health = 1;
            return MHD_YES;
        }
        r->method = strdup(method);
        if (r->method == NULL)
            return refuse(h, c, 503, "out of memory");
        client_text(r, c);
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;

        *upload_size = 0;
        if (!r->too_large && r->body.len + n > h->max_body) {
            r->too_large = 1;
            weir_buf_free(&r->body);
        }
        if (r->too_large) {
            r->discarded += n;
            /* answered 413 at the end, unless it goes on for long */
            return r->discarded > h->max_body ? MHD_NO : MHD_YES;
        }
        if (weir_buf_append(&r->body, upload, n) != WEIR_OK)
            return MHD_NO;
        return MHD_YES;
    }
    if (r->state == RQ_READING && r->health) {
        COUNT(h, health);
        r->state = RQ_ANSWERED;
        return MHD_queue_response(c, 200, h->health);
    }
    if (r->state == RQ_READING) {
        if (r->too_large)
            return refuse(h, c, 413, "the request body is larger than "
                                     "the server accepts");
        return enqueue(h, r, c);
    }
    /* resumed: queue the answer Lua (or the deadline) prepared */
    if (r->resp != NULL) {
        struct MHD_Response *resp;
        enum MHD_Result rc;

        pthread_mutex_lock(&h->mu);
        resp = r->resp;
        r->resp = NULL;
        pthread_mutex_unlock(&h->mu);
        rc = MHD_queue_response(c, r->status, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
    weir_http *h = cls;
    hreq *r = *ctx;
    int keep = 0;

    (void)c;
    (void)toe;
    if (r == NULL)
        return;
    *ctx = NULL;
    pthread_mutex_lock(&h->mu);
    if (r->state == RQ_WAITING) {
        list_remove(&h->waiting, r);
        h->stats.waiting--;
    } else if (r->state == RQ_TAKEN) {
        list_remove(&h->taken, r);
        id_remove(h, r);
        h->stats.in_lua--;
    } else if (r->state == RQ_STREAM && r->st) {
        if (!r->st->eof)
            COUNT(h, streams_gone);
        r->st->gone = 1;
        keep = r->st->lua;
    }
    r->conn = NULL;
    pthread_mutex_unlock(&h->mu);
    if (!keep)
        req_free(r);
}

/* The stream's body, read by libmicrohttpd's thread: what Lua queued,
 * else suspend until it writes (or closes). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    hreq *r = cls;
    weir_http *h = r->h;
    stream *st = r->st;
    ssize_t n;

    (void)pos;
    pthread_mutex_lock(&h->mu);
    if (st->buf.len > st->off) {
        size_t k = st->buf.len - st->off;
        if (k > max)
            k = max;
        memcpy(buf, st->buf.data + st->off, k);
        st->off += k;
        if (st->off == st->buf.len) {
            weir_buf_truncate(&st->buf, 0);
            st->off = 0;
        }
        n = (ssize_t)k;
    } else if (st->eof || h->closing) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        MHD_suspend_connection(r->conn);
        r->suspended = 1;
        n = 0;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    /* libmicrohttpd's messages can quote client input: they go nowhere */
    (void)cls;
    (void)fmt;
    (void)ap;
}

/* --------------------------------------------------------- the boundary */

WEIR_API int weir_ffi_http_new(const weir_http_opts *o, weir_http **out,
                               char *err, size_t errlen)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
    struct sockaddr_in a4 = { .sin_family = AF_INET };
    struct sockaddr *sa = (struct sockaddr *)&a4;
    const char *addr = o->address ? o->address : "127.0.0.1";
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO
                     | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *di;
    size_t pool;
    weir_http *h;

    *out = NULL;
    if (o->port < 0 || o->port > 65535) {
        weir_set_err(err, errlen, "http: port %d out of range", o->port);
        return WEIR_EINVAL;
    }
    if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1)
        a4.sin_port = htons((uint16_t)o->port);
    else if (inet_pton(AF_INET6, addr, &a6.sin6_addr) == 1) {
        a6.sin6_port = htons((uint16_t)o->port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        weir_set_err(err, errlen, "http: listen address \"%.64s\" is not "
                     "an IPv4 or IPv6 literal", addr);
        return WEIR_EINVAL;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        weir_set_err(err, errlen, "http: TLS needs both a certificate and "
                     "a key");
        return WEIR_EINVAL;
    }
    if (o->tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        weir_set_err(err, errlen, "http: libmicrohttpd has no TLS support");
        return WEIR_EINVAL;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        weir_set_err(err, errlen, "http: out of memory");
        return WEIR_ENOMEM;
    }
    h->max_header = o->max_header_bytes > 0 ? (size_t)o->max_header_bytes
                                            : 8192;
    h->max_body = o->max_body_bytes > 0 ? (size_t)o->max_body_bytes
                                        : (size_t)1 << 20;
    h->stream_cap = o->stream_buffer > 0 ? (size_t)o->stream_buffer
                                         : (size_t)256 << 10;
    h->request_timeout_us = (int64_t)o->request_timeout_s * 1000000;
    h->tls = o->tls_cert != NULL;
    pthread_mutex_init(&h->mu, NULL);
    h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    h->health = MHD_create_response_from_buffer(sizeof(ok) - 1, (void *)ok,
                                                MHD_RESPMEM_PERSISTENT);
    if (h->efd < 0 || h->health == NULL) {
        weir_set_err(err, errlen, "http: %s", h->efd < 0 ? strerror(errno)
                                                        : "out of memory");
        weir_ffi_http_delete(h);
        return WEIR_EIO;
    }
    MHD_add_response_header(h->health, "Content-Type", "application/json");
    MHD_add_response_header(h->health, "Cache-Control", "no-store");
    MHD_add_response_header(h->health, "X-Content-Type-Options", "nosniff");
    if (h->tls)
        flags |= MHD_USE_TLS;
    /* libmicrohttpd's per-connection memory holds the read buffer: room
     * for the largest header block we accept, so that the exact limit is
     * ours (431 from check_request); larger blocks are refused by the
     * library (431 or 414, as problem+json) */
    pool = h->max_header * 2 + 16384;
    {
        struct MHD_OptionItem opts[16];
        int n = 0;

#define OPT(o_, v_, p_) \
    opts[n++] = (struct MHD_OptionItem){ (o_), (intptr_t)(v_), (p_) }
        /* first, so that nothing is printed while the rest is read */
        OPT(MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL);
        OPT(MHD_OPTION_SOCK_ADDR, 0, sa);
        if (o->threads > 1)
            OPT(MHD_OPTION_THREAD_POOL_SIZE, o->threads, NULL);
        OPT(MHD_OPTION_CONNECTION_LIMIT,
            o->max_connections > 0 ? o->max_connections : 1024, NULL);
        OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            o->max_per_address > 0 ? o->max_per_address : 64, NULL);
        OPT(MHD_OPTION_CONNECTION_TIMEOUT,
            o->timeout_s > 0 ? o->timeout_s : 30, NULL);
        OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool, NULL);
        OPT(MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, h);
        OPT(MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h);
        OPT(MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, h);
        if (h->tls) {
            OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)o->tls_cert);
            OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)o->tls_key);
        }
        OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
        h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                                MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    }
    if (h->d == NULL) {
        weir_set_err(err, errlen, "http: cannot listen on %.64s port %d%s",
                     addr, o->port, h->tls ? " (or the TLS certificate or "
                     "key is not valid PEM)" : "");
        weir_ffi_http_delete(h);
        return WEIR_EIO;
    }
    di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : o->port;
    *out = h;
    return WEIR_OK;
}

/* Prepare an answer for r and resume its connection; r leaves the id
 * table and the taken list. Under the mutex. */
static void answer(weir_http *h, hreq *r, struct MHD_Response *resp,
                   unsigned status)
{
    if (r->state == RQ_WAITING) {
        list_remove(&h->waiting, r);
        h->stats.waiting--;
    } else if (r->state == RQ_TAKEN) {
        list_remove(&h->taken, r);
        id_remove(h, r);
        h->stats.in_lua--;
    }
    if (r->resp)
        MHD_destroy_response(r->resp);
    r->resp = resp;
    r->status = status;
    r->state = RQ_ANSWERED;
    if (r->suspended && r->conn) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
    }
}

WEIR_API void weir_ffi_http_delete(weir_http *h)
{
    if (h == NULL)
        return;
    if (h->d) {
        MHD_socket ls = MHD_quiesce_daemon(h->d);

        if (ls != MHD_INVALID_SOCKET)
            close(ls);
        pthread_mutex_lock(&h->mu);
        h->closing = 1;
        while (h->waiting.head)
            answer(h, h->waiting.head,
                   problem(503, "the server is shutting down"), 503);
        while (h->taken.head)
            answer(h, h->taken.head,
                   problem(503, "the server is shutting down"), 503);
        for (unsigned i = 0; i < NBUCKETS; i++)
            for (hreq *r = h->ids[i]; r; r = r->hnext)
                if (r->st && r->suspended && r->conn) {
                    r->suspended = 0;
                    MHD_resume_connection(r->conn);
                }
        pthread_mutex_unlock(&h->mu);
        MHD_stop_daemon(h->d);
    }
    /* streams Lua never closed: libmicrohttpd is done with them now */
    for (unsigned i = 0; i < NBUCKETS; i++) {
        hreq *r = h->ids[i];
        while (r) {
            hreq *next = r->hnext;
            req_free(r);
            r = next;
        }
    }
    if (h->health)
        MHD_destroy_response(h->health);
    if (h->efd >= 0)
        close(h->efd);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

WEIR_API int32_t weir_ffi_http_port(weir_http *h)
{
    return h->port;
}

WEIR_API int32_t weir_ffi_http_fd(weir_http *h)
{
    return h->efd;
}

WEIR_API int32_t weir_ffi_http_wait(weir_http *h, int32_t timeout_ms)
{
    struct pollfd p = { .fd = h->efd, .events = POLLIN };

    return poll(&p, 1, timeout_ms) > 0 ? 1 : 0;
}

WEIR_API int32_t weir_ffi_http_next(weir_http *h, weir_http_req *out)
{
    int64_t now = weir_clock_mono_us();
    hreq *r;

    pthread_mutex_lock(&h->mu);
    while (h->request_timeout_us > 0 && (r = h->taken.head) != NULL
           && now - r->taken_us > h->request_timeout_us) {
        count_refusal(h, 503);
        answer(h, r, problem(503, "the request was not answered in time"),
               503);
    }
    r = h->waiting.head;
    if (r == NULL) {
        uint64_t v;
        /* empty: clear the eventfd until the next request */
        if (read(h->efd, &v, sizeof(v)) < 0) {
            /* EAGAIN: already clear */
        }
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
    list_remove(&h->waiting, r);
    h->stats.waiting--;
    r->state = RQ_TAKEN;
    r->taken_us = now;
    list_push(&h->taken, r);
    id_add(h, r);
    h->stats.in_lua++;
    if (h->waiting.head == NULL) {
        uint64_t v;
        if (read(h->efd, &v, sizeof(v)) < 0) {
            /* EAGAIN: already clear */
        }
    }
    pthread_mutex_unlock(&h->mu);
    {
        char *q = strchr(r->target, '?');
        size_t plen = q ? (size_t)(q - r->target) : r->uri_len;

        out->id = r->id;
        out->method = r->method;
        out->path = r->target;
        out->path_len = plen;
        out->query = q ? q + 1 : r->target + r->uri_len;
        out->query_len = q ? r->uri_len - plen - 1 : 0;
        out->headers = r->headers.data ? r->headers.data : "";
        out->headers_len = r->headers.len;
        out->body = r->body.data ? r->body.data : "";
        out->body_len = r->body.len;
        out->client = r->client;
    }
    return 1;
}

/* Add the "Name: value\n" lines of block to resp, and nosniff unless
 * named. WEIR_OK or WEIR_EINVAL with err set. */
static int add_headers(struct MHD_Response *resp, const char *block,
                       char *err, size_t errlen)
{
    int nosniff = 0, line = 0;
    const char *p = block ? block : "";

    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        char name[128], value[4096];
        size_t nl, vl;
        const char *v;

        line++;
        if (n == 0) {
            p = end ? end + 1 : p + n;
            continue;
        }
        nl = colon ? (size_t)(colon - p) : 0;
        v = colon ? colon + 1 : NULL;
        while (v && v < p + n && (*v == ' ' || *v == '\t'))
            v++;
        vl = v ? (size_t)(p + n - v) : 0;
        if (colon == NULL || nl == 0 || nl >= sizeof(name)
            || vl >= sizeof(value) || !value_ok(v, vl)) {
            weir_set_err(err, errlen, "http: header line %d is not "
                         "\"Name: value\"", line);
            return WEIR_EINVAL;
        }
        memcpy(name, p, nl);
        name[nl] = '\0';
        for (size_t i = 0; i < nl; i++)
            if (!is_tchar((unsigned char)name[i])) {
                weir_set_err(err, errlen, "http: header line %d: bad name",
                             line);
                return WEIR_EINVAL;
            }
        memcpy(value, v, vl);
        value[vl] = '\0';
        if (strcasecmp(name, "x-content-type-options") == 0)
            nosniff = 1;
        if (MHD_add_response_header(resp, name, value) != MHD_YES) {
            weir_set_err(err, errlen, "http: header line %d (%.64s) is not "
                         "accepted", line, name);
            return WEIR_EINVAL;
        }
        p = end ? end + 1 : p + n;
    }
    if (!nosniff)
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    return WEIR_OK;
}

static int answer_prepared(weir_http *h, uint64_t id, int32_t status,
                           struct MHD_Response *resp, const char *headers,
                           stream *st, char *err, size_t errlen)
{
    hreq *r;
    int rc;

    if (resp == NULL) {
        free(st);
        weir_set_err(err, errlen, "http: out of memory");
        return WEIR_ENOMEM;
    }
    if (status < 200 || status > 599) {
        weir_set_err(err, errlen, "http: status %d out of range", status);
        rc = WEIR_EINVAL;
        goto fail;
    }
    rc = add_headers(resp, headers, err, errlen);
    if (rc != WEIR_OK)
        goto fail;
    pthread_mutex_lock(&h->mu);
    r = id_find(h, id);
    if (r == NULL || r->state != RQ_TAKEN) {
        pthread_mutex_unlock(&h->mu);
        weir_set_err(err, errlen, "http: request %llu is not waiting for an "
                     "answer", (unsigned long long)id);
        rc = WEIR_ENOENT;
        goto fail;
    }
    answer(h, r, resp, (unsigned)status);
    if (st) {
        r->st = st;
        st->lua = 1;
        r->state = RQ_STREAM;
        id_add(h, r);
    }
    pthread_mutex_unlock(&h->mu);
    COUNT(h, answered);
    return WEIR_OK;
fail:
    MHD_destroy_response(resp);
    if (st)
        free(st);
    return rc;
}

WEIR_API int weir_ffi_http_respond(weir_http *h, uint64_t id, int32_t status,
                                   const char *headers, const char *body,
                                   size_t len, char *err, size_t errlen)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);

    return answer_prepared(h, id, status, resp, headers, NULL, err, errlen);
}

WEIR_API int weir_ffi_http_stream_open(weir_http *h, uint64_t id,
                                       int32_t status, const char *headers,
                                       char *err, size_t errlen)
{
    struct MHD_Response *resp;
    stream *st = calloc(1, sizeof(*st));
    hreq *r;

    if (st == NULL) {
        weir_set_err(err, errlen, "http: out of memory");
        return WEIR_ENOMEM;
    }
    /* the reader's closure is the request, found now (it cannot be freed
     * before Lua answers it: its connection is suspended) */
    pthread_mutex_lock(&h->mu);
    r = id_find(h, id);
    pthread_mutex_unlock(&h->mu);
    if (r == NULL || r->state != RQ_TAKEN) {
        free(st);
        weir_set_err(err, errlen, "http: request %llu is not waiting for an "
                     "answer", (unsigned long long)id);
        return WEIR_ENOENT;
    }
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
                                             stream_read, r, NULL);
    return answer_prepared(h, id, status, resp, headers, st, err, errlen);
}

WEIR_API int weir_ffi_http_stream_write(weir_http *h, uint64_t id,
                                        const char *data, size_t len,
                                        char *err, size_t errlen)
{
    hreq *r;
    int rc = WEIR_OK;

    pthread_mutex_lock(&h->mu);
    r = id_find(h, id);
    if (r == NULL || r->st == NULL || r->st->eof) {
        weir_set_err(err, errlen, "http: no open stream %llu",
                     (unsigned long long)id);
        rc = WEIR_ENOENT;
    } else if (r->st->gone) {
        weir_set_err(err, errlen, "http: the client of stream %llu went "
                     "away", (unsigned long long)id);
        rc = WEIR_ECLOSED;
    } else if (r->st->buf.len - r->st->off + len > h->stream_cap) {
        weir_set_err(err, errlen, "http: stream %llu holds %zu bytes "
                     "unsent", (unsigned long long)id,
                     r->st->buf.len - r->st->off);
        rc = WEIR_ELIMIT;
    } else if (weir_buf_append(&r->st->buf, data, len) != WEIR_OK) {
        weir_set_err(err, errlen, "http: out of memory");
        rc = WEIR_ENOMEM;
    } else if (r->suspended && r->conn) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

WEIR_API int weir_ffi_http_stream_close(weir_http *h, uint64_t id)
{
    hreq *r;
    int done;

    pthread_mutex_lock(&h->mu);
    r = id_find(h, id);
    if (r == NULL || r->st == NULL) {
        pthread_mutex_unlock(&h->mu);
        return WEIR_ENOENT;
    }
    id_remove(h, r);
    r->st->eof = 1;
    r->st->lua = 0;
    done = r->st->gone;
    if (!done && r->suspended && r->conn) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
    }
    pthread_mutex_unlock(&h->mu);
    if (done)
        req_free(r);
    return WEIR_OK;
}

WEIR_API void weir_ffi_http_stats(weir_http *h, weir_http_stats *out)
{
    const uint64_t *from = (const uint64_t *)&h->stats;
    uint64_t *to = (uint64_t *)out;

    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
    pthread_mutex_unlock(&h->mu);
}
