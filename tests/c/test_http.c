/*
 * test_http.c - the HTTP primitive (http.h) over real sockets: a server
 * on a free port of 127.0.0.1 in this process, raw HTTP/1.1 written by
 * hand, requests served from the queue as the Lua loop serves them.
 * Covers the request fields, answers, /health while nobody answers, body
 * and header limits, every class of malformed HTTP (answered with
 * problem+json, never HTML), the per-address connection limit, streams
 * (and a client that leaves), the request deadline, many slow clients,
 * and deleting a server with requests in flight (ASan finds leaks).
 */
#include "check.h"
#include "loopback.h"
#include "weir/http.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char err[256];

static weir_http *start(weir_http_opts o)
{
    weir_http *h = NULL;
    int rc = weir_ffi_http_new(&o, &h, err, sizeof(err));

    if (rc != WEIR_OK)
        fprintf(stderr, "http_new: %s\n", err);
    CHECK_EQ_INT(rc, WEIR_OK);
    return h;
}

static int dial(weir_http *h)
{
    struct sockaddr_in a = loopback((uint16_t)weir_ffi_http_port(h));
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("connect");
        exit(2);
    }
    return s;
}

static void put(int s, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t k = send(s, data, n, MSG_NOSIGNAL);
        if (k <= 0)
            return; /* refused early: the answer says why */
        data += k;
        n -= (size_t)k;
    }
}

/* Read until the peer closes or 5 s pass without data; NUL-terminated. */
static size_t slurp(int s, char *buf, size_t cap)
{
    size_t n = 0;
    struct pollfd p = { .fd = s, .events = POLLIN };

    while (n + 1 < cap && poll(&p, 1, 5000) == 1) {
        ssize_t k = recv(s, buf + n, cap - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    return n;
}

/* Send raw bytes on a new connection, read the whole answer. */
static char *ask(weir_http *h, const char *raw, size_t n)
{
    static char buf[1 << 16];
    int s = dial(h);

    put(s, raw, n);
    slurp(s, buf, sizeof(buf));
    close(s);
    return buf;
}
#define ASK(h, lit) ask(h, lit, sizeof(lit) - 1)

static int status_of(const char *resp)
{
    int st = 0;

    return sscanf(resp, "HTTP/1.%*d %d", &st) == 1 ? st : 0;
}

/* A refusal: this status, a problem+json body naming it, no HTML. */
static void check_problem(const char *resp, int status, int line)
{
    char want[32];

    snprintf(want, sizeof(want), "\"status\":%d", status);
    if (status_of(resp) != status || !strstr(resp, "application/problem+json")
        || !strstr(resp, want) || !strstr(resp, "\"title\":")
        || !strstr(resp, "\"detail\":") || strstr(resp, "<html")) {
        fprintf(stderr, "line %d: expected a %d problem, got:\n%s\n", line,
                status, resp);
        check_failed++;
    } else {
        check_passed++;
    }
}
#define CHECK_PROBLEM(resp, st) check_problem(resp, st, __LINE__)

/* The next request from the queue, waiting up to 5 s; 0 when none. */
static int take(weir_http *h, weir_http_req *r)
{
    for (int i = 0; i < 50; i++) {
        if (weir_ffi_http_next(h, r))
            return 1;
        weir_ffi_http_wait(h, 100);
    }
    return 0;
}

static void test_fields_and_answer(void)
{
    weir_http_opts o = { .address = "127.0.0.1" };
    weir_http *h = start(o);
    static const char raw[] =
        "POST /a%20b/c?x=1&y=%41 HTTP/1.1\r\nHost: t\r\n"
        "X-Thing: Va lue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        "he\0lo";
    weir_http_req r;
    weir_http_stats st;
    char buf[4096];
    int s;

    CHECK(weir_ffi_http_port(h) > 0);
    CHECK(weir_ffi_http_fd(h) >= 0);
    CHECK_EQ_INT(weir_ffi_http_next(h, &r), 0);
    CHECK_EQ_INT(weir_ffi_http_wait(h, 0), 0);
    s = dial(h);
    put(s, raw, sizeof(raw) - 1);
    CHECK_EQ_INT(weir_ffi_http_wait(h, 5000), 1);
    CHECK(take(h, &r));
    CHECK_EQ_STR(r.method, "POST");
    CHECK_EQ_INT(r.path_len, 8);
    CHECK(memcmp(r.path, "/a%20b/c", 8) == 0);
    CHECK_EQ_STR(r.query, "x=1&y=%41");
    CHECK_EQ_INT(r.body_len, 5);
    CHECK(memcmp(r.body, "he\0lo", 5) == 0);
    CHECK_EQ_STR(r.client, "127.0.0.1");
    CHECK(strstr(r.headers, "x-thing: Va lue\n") != NULL);
    CHECK(strstr(r.headers, "host: t\n") != NULL);
    CHECK_EQ_INT(r.headers_len, strlen(r.headers));
    /* nothing else waits; a bad answer leaves it waiting */
    CHECK_EQ_INT(weir_ffi_http_wait(h, 0), 0);
    CHECK_EQ_INT(weir_ffi_http_respond(h, r.id, 201, "Bad\n", "", 0, err,
                                       sizeof(err)), WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_http_respond(h, r.id, 201, "X-A: b\r\n", "", 0,
                                       err, sizeof(err)), WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_http_respond(h, r.id, 99, NULL, "", 0, err,
                                       sizeof(err)), WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_http_respond(h, r.id + 7, 200, NULL, "", 0, err,
                                       sizeof(err)), WEIR_ENOENT);
    CHECK_EQ_INT(weir_ffi_http_respond(h, r.id, 201, "X-A: b\nX-B:c\n",
                                       "ok", 2, err, sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_http_respond(h, r.id, 201, NULL, "", 0, err,
                                       sizeof(err)), WEIR_ENOENT);
    slurp(s, buf, sizeof(buf));
    close(s);
    CHECK_EQ_INT(status_of(buf), 201);
    CHECK(strstr(buf, "X-A: b\r\n") != NULL);
    CHECK(strstr(buf, "X-B: c\r\n") != NULL);
    CHECK(strstr(buf, "X-Content-Type-Options: nosniff\r\n") != NULL);
    CHECK(strstr(buf, "\r\n\r\nok") != NULL);
    /* a query-less GET on a keep-alive connection, twice */
    s = dial(h);
    for (int i = 0; i < 2; i++) {
        char *end;
        put(s, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n", 28);
        CHECK(take(h, &r));
        CHECK_EQ_INT(r.path_len, 2);
        CHECK_EQ_INT(r.query_len, 0);
        CHECK_EQ_STR(r.query, "");
        CHECK_EQ_INT(r.body_len, 0);
        CHECK_EQ_INT(weir_ffi_http_respond(h, r.id, 200, "", "x", 1, err,
                                           sizeof(err)), WEIR_OK);
        memset(buf, 0, sizeof(buf));
        for (size_t n = 0; !(end = strstr(buf, "\r\n\r\nx")) && n < 4000;) {
            ssize_t k = recv(s, buf + n, sizeof(buf) - 1 - n, 0);
            if (k <= 0)
                break;
            n += (size_t)k;
        }
        CHECK(end != NULL);
    }
    close(s);
    weir_ffi_http_stats(h, &st);
    CHECK_EQ_INT(st.queued, 3);
    CHECK_EQ_INT(st.answered, 3);
    weir_ffi_http_delete(h);
}

static void test_health_while_lua_is_busy(void)
{
    weir_http_opts o = { .threads = 2 };
    weir_http *h = start(o);
    weir_http_req r;
    weir_http_stats st;
    char *resp;
    int s = dial(h);

    /* a request taken and never answered, another never taken */
    put(s, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n", 31);
    CHECK(take(h, &r));
    close(dial(h));
    resp = ASK(h, "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    CHECK_EQ_INT(status_of(resp), 200);
    CHECK(strstr(resp, "\r\n\r\n{\"status\":\"ok\"}") != NULL);
    CHECK(strstr(resp, "Content-Type: application/json") != NULL);
    CHECK(strstr(resp, "Cache-Control: no-store") != NULL);
    resp = ASK(h, "HEAD /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    CHECK_EQ_INT(status_of(resp), 200);
    CHECK(strstr(resp, "{\"status\"") == NULL);
    resp = ASK(h, "GET /health?x=1 HTTP/1.0\r\n\r\n");
    CHECK_EQ_INT(status_of(resp), 200);
    weir_ffi_http_stats(h, &st);
    CHECK_EQ_INT(st.health, 3);
    CHECK_EQ_INT(st.queued, 1);
    CHECK_EQ_INT(st.in_lua, 1);
    /* deleted with the request unanswered: nothing leaks */
    weir_ffi_http_delete(h);
    close(s);
}

static void test_body_limit(void)
{
    weir_http_opts o = { .max_body_bytes = 64 };
    weir_http *h = start(o);
    char raw[512], body[200];
    weir_http_req r;
    weir_http_stats st;
    int s, n;

    memset(body, 'b', sizeof(body));
    /* at the limit: queued */
    n = snprintf(raw, sizeof(raw), "PUT /b HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 64\r\nConnection: close\r\n\r\n%.64s", body);
    s = dial(h);
    put(s, raw, (size_t)n);
    CHECK(take(h, &r));
    CHECK_EQ_INT(r.body_len, 64);
    weir_ffi_http_respond(h, r.id, 204, NULL, NULL, 0, err, sizeof(err));
    close(s);
    /* one over, the body never sent: refused from Content-Length alone */
    CHECK_PROBLEM(ASK(h, "PUT /b HTTP/1.1\r\nHost: t\r\nContent-Length: 65"
                         "\r\n\r\n"), 413);
    CHECK_PROBLEM(ASK(h, "PUT /b HTTP/1.1\r\nHost: t\r\nContent-Length: "
                         "99999999999999999999\r\n\r\n"), 413);
    /* chunked, at the limit in two chunks */
    n = snprintf(raw, sizeof(raw), "PUT /c HTTP/1.1\r\nHost: t\r\n"
                 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                 "20\r\n%.32s\r\n20\r\n%.32s\r\n0\r\n\r\n", body, body);
    s = dial(h);
    put(s, raw, (size_t)n);
    CHECK(take(h, &r));
    CHECK_EQ_INT(r.body_len, 64);
    weir_ffi_http_respond(h, r.id, 204, NULL, NULL, 0, err, sizeof(err));
    close(s);
    /* chunked, over: refused, nothing queued */
    n = snprintf(raw, sizeof(raw), "PUT /c HTTP/1.1\r\nHost: t\r\n"
                 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                 "30\r\n%.48s\r\n30\r\n%.48s\r\n0\r\n\r\n", body, body);
    CHECK_PROBLEM(ask(h, raw, (size_t)n), 413);
    CHECK_EQ_INT(weir_ffi_http_next(h, &r), 0);
    weir_ffi_http_stats(h, &st);
    CHECK_EQ_INT(st.refused_413, 3);
    CHECK_EQ_INT(st.queued, 2);
    weir_ffi_http_delete(h);
}

static void test_header_limit(void)
{
    weir_http_opts o = { .max_header_bytes = 1024 };
    weir_http *h = start(o);
    static char raw[70000];
    weir_http_req r;
    weir_http_stats st;
    int n, s;

    /* within: served */
    n = snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: t\r\nX-Big: "
                 "%0900d\r\nConnection: close\r\n\r\n", 0);
    s = dial(h);
    put(s, raw, (size_t)n);
    CHECK(take(h, &r));
    weir_ffi_http_respond(h, r.id, 200, NULL, NULL, 0, err, sizeof(err));
    close(s);
    /* over our limit, within libmicrohttpd's buffer */
    n = snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: t\r\nX-Big: "
                 "%01100d\r\n\r\n", 0);
    CHECK_PROBLEM(ask(h, raw, (size_t)n), 431);
    /* over libmicrohttpd's buffer: its own refusal, as problem+json */
    n = snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: t\r\nX-Big: "
                 "%060000d\r\n\r\n", 0);
    CHECK_PROBLEM(ask(h, raw, (size_t)n), 431);
    n = snprintf(raw, sizeof(raw), "GET /%060000d HTTP/1.1\r\n\r\n", 0);
    CHECK_PROBLEM(ask(h, raw, (size_t)n), 414);
    weir_ffi_http_stats(h, &st);
    CHECK_EQ_INT(st.refused_431, 2);
    CHECK_EQ_INT(st.refused_414, 1);
    weir_ffi_http_delete(h);
}

static void test_malformed(void)
{
    weir_http_opts o = { 0 };
    weir_http *h = start(o);
    weir_http_req r;
    weir_http_stats st;

#define H11 "GET / HTTP/1.1\r\nHost: t\r\n"
    /* let through by libmicrohttpd, refused here */
    CHECK_PROBLEM(ASK(h, "GET / HTTP/1.1\nHost: t\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, H11 "X-A: b\nX-C: d\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "GET / HTTP/1.1\r\nHost: t\n\n"), 400);
    CHECK_PROBLEM(ASK(h, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\n"
                         "\r\nx"), 400);
    CHECK_PROBLEM(ASK(h, H11 "X-A: b\0c\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, H11 "X-A: b\rc\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, H11 "X-A: b\x01\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                         "Content-Length: 2\r\n\r\nab"), 400);
    CHECK_PROBLEM(ASK(h, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                         "Content-Length: 1\r\n\r\na"), 400);
    CHECK_PROBLEM(ASK(h, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "POST / HTTP/1.1\r\nHost: t\r\n"
                         "Transfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    CHECK_PROBLEM(ASK(h, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length : 3"
                         "\r\n\r\nabc"), 400);
    CHECK_PROBLEM(ASK(h, "GET http://x/ HTTP/1.1\r\nHost: t\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, H11 " folded\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "GET / HTTP/1.1\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n"), 400);
    /* not even a request line: libmicrohttpd closes without a word */
    CHECK_EQ_STR(ASK(h, "HELLO\r\n\r\n"), "");
    /* refused by libmicrohttpd itself: problem+json all the same */
    CHECK_PROBLEM(ASK(h, "GET / HTTP/2.0\r\nHost: t\r\n\r\n"), 505);
    CHECK_PROBLEM(ASK(h, H11 "No colon here\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: x1"
                         "\r\n\r\n"), 400);
    CHECK_PROBLEM(ASK(h, "POST / HTTP/1.1\r\nHost: t\r\n"
                         "Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"), 400);
    /* none of them reached the queue; the server still serves */
    CHECK_EQ_INT(weir_ffi_http_next(h, &r), 0);
    CHECK_EQ_INT(status_of(ASK(h, "GET /health HTTP/1.0\r\n\r\n")), 200);
    weir_ffi_http_stats(h, &st);
    CHECK(st.refused_400 >= 19);
    CHECK_EQ_INT(st.refused_501, 1);
    CHECK_EQ_INT(st.refused_505, 1);
    CHECK_EQ_INT(st.queued, 0);
    weir_ffi_http_delete(h);
#undef H11
}

static void test_per_address_limit(void)
{
    weir_http_opts o = { .max_per_address = 3 };
    weir_http *h = start(o);
    int s[3], extra;
    char buf[256];

    for (int i = 0; i < 3; i++) {
        s[i] = dial(h);
        put(s[i], "GET / HTTP/1.1\r\n", 16);
    }
    /* the fourth is closed unanswered */
    extra = dial(h);
    put(extra, "GET /health HTTP/1.0\r\n\r\n", 24);
    CHECK_EQ_INT(slurp(extra, buf, sizeof(buf)), 0);
    close(extra);
    for (int i = 0; i < 3; i++)
        close(s[i]);
    /* once they are gone, a new one is served (the server notices the
     * closes shortly after) */
    for (int i = 0; i < 50; i++) {
        if (status_of(ASK(h, "GET /health HTTP/1.0\r\n\r\n")) == 200)
            break;
        usleep(20000);
    }
    CHECK_EQ_INT(status_of(ASK(h, "GET /health HTTP/1.0\r\n\r\n")), 200);
    weir_ffi_http_delete(h);
}

static void test_streams(void)
{
    weir_http_opts o = { .stream_buffer = 64 };
    weir_http *h = start(o);
    weir_http_req r;
    weir_http_stats st;
    char buf[4096], big[100];
    int s, rc = WEIR_OK;

    memset(big, 'x', sizeof(big));
    s = dial(h);
    put(s, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n", 33);
    CHECK(take(h, &r));
    CHECK_EQ_INT(weir_ffi_http_stream_write(h, r.id, "x", 1, err,
                                            sizeof(err)), WEIR_ENOENT);
    CHECK_EQ_INT(weir_ffi_http_stream_open(h, r.id, 200,
                 "Content-Type: text/event-stream\n", err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_http_respond(h, r.id, 200, NULL, "", 0, err,
                                       sizeof(err)), WEIR_ENOENT);
    CHECK_EQ_INT(weir_ffi_http_stream_write(h, r.id, "data: 1\n\n", 9, err,
                                            sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_http_stream_write(h, r.id, big, sizeof(big), err,
                                            sizeof(err)), WEIR_ELIMIT);
    CHECK_EQ_INT(weir_ffi_http_stream_write(h, r.id, "data: 2\n\n", 9, err,
                                            sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_http_stream_close(h, r.id), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_http_stream_close(h, r.id), WEIR_ENOENT);
    {
        size_t n = 0;
        memset(buf, 0, sizeof(buf));
        while (!strstr(buf, "0\r\n\r\n") && n + 1 < sizeof(buf)) {
            struct pollfd p = { .fd = s, .events = POLLIN };
            ssize_t k;
            if (poll(&p, 1, 5000) != 1)
                break;
            k = recv(s, buf + n, sizeof(buf) - 1 - n, 0);
            if (k <= 0)
                break;
            n += (size_t)k;
        }
    }
    CHECK_EQ_INT(status_of(buf), 200);
    CHECK(strstr(buf, "Content-Type: text/event-stream") != NULL);
    CHECK(strstr(buf, "Transfer-Encoding: chunked") != NULL);
    CHECK(strstr(buf, "data: 1\n\n") != NULL);
    CHECK(strstr(buf, "data: 2\n\n") != NULL);
    CHECK(strstr(buf, "\r\n0\r\n\r\n") != NULL);
    close(s);

    /* a client that goes away: a write says so (soon after it left) */
    s = dial(h);
    put(s, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n", 33);
    CHECK(take(h, &r));
    CHECK_EQ_INT(weir_ffi_http_stream_open(h, r.id, 200, NULL, err,
                                           sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_http_stream_write(h, r.id, "a\n", 2, err,
                                            sizeof(err)), WEIR_OK);
    close(s);
    for (int i = 0; i < 200 && rc != WEIR_ECLOSED; i++) {
        usleep(10000);
        rc = weir_ffi_http_stream_write(h, r.id, "a\n", 2, err, sizeof(err));
    }
    CHECK_EQ_INT(rc, WEIR_ECLOSED);
    CHECK_EQ_INT(weir_ffi_http_stream_close(h, r.id), WEIR_OK);
    weir_ffi_http_stats(h, &st);
    CHECK_EQ_INT(st.streams_gone, 1);

    /* a stream left open when the server is deleted: nothing leaks */
    s = dial(h);
    put(s, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n", 33);
    CHECK(take(h, &r));
    CHECK_EQ_INT(weir_ffi_http_stream_open(h, r.id, 200, NULL, err,
                                           sizeof(err)), WEIR_OK);
    weir_ffi_http_delete(h);
    close(s);
}

static void test_request_deadline(void)
{
    weir_http_opts o = { .request_timeout_s = 1 };
    weir_http *h = start(o);
    weir_http_req r;
    char buf[2048];
    int s = dial(h);
    struct timespec ts = { 1, 200000000 };

    put(s, "GET /late HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 50);
    CHECK(take(h, &r));
    nanosleep(&ts, NULL);
    CHECK_EQ_INT(weir_ffi_http_next(h, &(weir_http_req){ 0 }), 0);
    slurp(s, buf, sizeof(buf));
    close(s);
    CHECK_PROBLEM(buf, 503);
    CHECK_EQ_INT(weir_ffi_http_respond(h, r.id, 200, NULL, "", 0, err,
                                       sizeof(err)), WEIR_ENOENT);
    weir_ffi_http_delete(h);
}

/* A few hundred connections each sending a header slowly (a byte now
 * and then): /health still answers. Bounded: 300 connections, about a
 * second, 127.0.0.1 only. */
static void test_slow_clients(void)
{
    enum { N = 300 };
    weir_http_opts o = { .max_per_address = N + 16,
                         .max_connections = N + 64 };
    weir_http *h;
    struct rlimit rl;
    int s[N], n = 0, ok = 0;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < N + 64) {
        rl.rlim_cur = rl.rlim_max < 2048 ? rl.rlim_max : 2048;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    h = start(o);
    for (; n < N; n++) {
        s[n] = dial(h);
        put(s[n], "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ", 34);
    }
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < n; i++)
            put(s[i], "a", 1);
        if (status_of(ASK(h, "GET /health HTTP/1.0\r\n\r\n")) == 200)
            ok++;
        usleep(100000);
    }
    CHECK_EQ_INT(ok, 5);
    for (int i = 0; i < n; i++)
        close(s[i]);
    weir_ffi_http_delete(h);
}

static void test_bad_options(void)
{
    weir_http *h = NULL;
    weir_http_opts o = { .address = "localhost" };

    CHECK_EQ_INT(weir_ffi_http_new(&o, &h, err, sizeof(err)), WEIR_EINVAL);
    CHECK(strstr(err, "not an IPv4 or IPv6 literal") != NULL);
    o.address = "127.0.0.1";
    o.tls_cert = "x";
    CHECK_EQ_INT(weir_ffi_http_new(&o, &h, err, sizeof(err)), WEIR_EINVAL);
    o.tls_key = "y";
    CHECK_EQ_INT(weir_ffi_http_new(&o, &h, err, sizeof(err)), WEIR_EIO);
    CHECK(h == NULL);
    /* IPv6 loopback, when the host has it */
    o = (weir_http_opts){ .address = "::1" };
    if (weir_ffi_http_new(&o, &h, err, sizeof(err)) == WEIR_OK) {
        CHECK(weir_ffi_http_port(h) > 0);
        weir_ffi_http_delete(h);
    }
    weir_ffi_http_delete(NULL);
}

int main(void)
{
    test_fields_and_answer();
    test_health_while_lua_is_busy();
    test_body_limit();
    test_header_limit();
    test_malformed();
    test_per_address_limit();
    test_streams();
    test_request_deadline();
    test_slow_clients();
    test_bad_options();
    return CHECK_DONE();
}
