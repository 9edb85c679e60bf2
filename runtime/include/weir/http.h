/*
 * http.h - the HTTP server primitive (runtime/http.c) on libmicrohttpd:
 * libmicrohttpd's own threads accept, read and check requests and write
 * answers; one Lua loop takes complete requests from a queue and answers
 * them by id (ADR 17). Answered in C, without Lua: GET and HEAD /health,
 * and every refusal of bad or oversized input (an RFC 9457
 * application/problem+json body, never HTML). No routing, no policy.
 */
#ifndef WEIR_HTTP_H
#define WEIR_HTTP_H

#include "weir/common.h"

/* weir:cdef:begin */
typedef struct weir_http weir_http;

typedef struct {
    const char *address;      /* IPv4 or IPv6 literal; NULL = 127.0.0.1 */
    int32_t port;             /* 0 = a free port (weir_ffi_http_port) */
    int32_t threads;          /* libmicrohttpd threads; 0 = 1 */
    int64_t max_header_bytes; /* request line + header fields; 0 = 8192 */
    int64_t max_body_bytes;   /* request body; 0 = 1 MiB */
    int32_t max_connections;  /* open connections; 0 = 1024 */
    int32_t max_per_address;  /* open connections of one client address;
                               * 0 = 64; more are closed unanswered */
    int32_t timeout_s;        /* idle connection timeout; 0 = 30 */
    int32_t request_timeout_s; /* a request taken by Lua and not answered
                                * in this time gets 503; 0 = never */
    const char *tls_cert;     /* PEM text (not a path), or NULL: no TLS */
    const char *tls_key;      /* PEM text of the key, with tls_cert */
    int64_t stream_buffer;    /* bytes a stream may hold unsent;
                               * 0 = 256 KiB */
} weir_http_opts;

/* One request taken from the queue. Every pointer is owned by the server
 * and stays valid until the request is answered (respond or stream_open)
 * or the server is deleted. Strings are NUL-terminated besides their
 * lengths; the body may hold NUL bytes. */
typedef struct {
    uint64_t id;
    const char *method;
    const char *path;     /* raw target before '?', not percent-decoded */
    size_t path_len;
    const char *query;    /* raw text after '?' ("" when none) */
    size_t query_len;
    const char *headers;  /* "name: value\n" lines, names lowercased */
    size_t headers_len;
    const char *body;
    size_t body_len;
    const char *client;   /* the peer's address as text */
} weir_http_req;

/* Counters since the server started (read with weir_ffi_http_stats). */
typedef struct {
    uint64_t queued;       /* requests handed to Lua */
    uint64_t answered;     /* answers Lua gave (respond, stream_open) */
    uint64_t health;       /* GET/HEAD /health answered in C */
    uint64_t refused_400;  /* malformed or ambiguous HTTP */
    uint64_t refused_413;  /* body over max_body_bytes */
    uint64_t refused_414;  /* request line over libmicrohttpd's buffer */
    uint64_t refused_431;  /* header fields over max_header_bytes */
    uint64_t refused_501;  /* a transfer coding other than chunked */
    uint64_t refused_505;  /* an HTTP version other than 1.0 and 1.1 */
    uint64_t refused_503;  /* shutting down, or request_timeout_s passed */
    uint64_t refused_other; /* other refusals of libmicrohttpd's own */
    uint64_t streams_gone; /* streams whose client went away */
    uint64_t waiting;      /* requests queued, not yet taken (a gauge) */
    uint64_t in_lua;       /* requests taken, not yet answered (a gauge) */
} weir_http_stats;

/* Start a server; its threads run until weir_ffi_http_delete. *out is
 * freed with weir_ffi_http_delete. opts and its strings are borrowed for
 * the call. err: caller's buffer. */
WEIR_API int weir_ffi_http_new(const weir_http_opts *opts, weir_http **out,
                               char *err, size_t errlen);
/* Stop accepting, answer what is still queued or taken with 503 (and end
 * open streams), stop the threads, free everything. NULL-safe. */
WEIR_API void weir_ffi_http_delete(weir_http *h);
/* The port the server listens on. */
WEIR_API int32_t weir_ffi_http_port(weir_http *h);
/* An eventfd that is readable while requests wait in the queue: poll it
 * for POLLIN. Owned by the server, closed by weir_ffi_http_delete. */
WEIR_API int32_t weir_ffi_http_fd(weir_http *h);
/* Wait up to timeout_ms (-1 forever) until a request waits: 1 when one
 * does, 0 when the time passed (for loops that poll nothing else). */
WEIR_API int32_t weir_ffi_http_wait(weir_http *h, int32_t timeout_ms);
/* Take the next complete request into *out: 1, or 0 when none waits.
 * Also answers with 503 the taken requests whose request_timeout_s has
 * passed. */
WEIR_API int32_t weir_ffi_http_next(weir_http *h, weir_http_req *out);
/* Answer request id: status, headers as "Name: value\n" lines (NULL or
 * "" for none), body (len bytes; copied). The server adds
 * X-Content-Type-Options: nosniff unless the block names it, and
 * Content-Length. WEIR_ENOENT when id is not a request waiting for an
 * answer (answered, expired, or never taken); WEIR_EINVAL for a bad
 * status or header line (the request still waits then). */
WEIR_API int weir_ffi_http_respond(weir_http *h, uint64_t id, int32_t status,
                                   const char *headers, const char *body,
                                   size_t len, char *err, size_t errlen);
/* Answer request id with a stream (status and headers as in respond; the
 * length is not known, the body is sent as it is written). */
WEIR_API int weir_ffi_http_stream_open(weir_http *h, uint64_t id,
                                       int32_t status, const char *headers,
                                       char *err, size_t errlen);
/* Queue len bytes on stream id (copied). WEIR_ECLOSED when the client
 * went away (the stream must still be closed), WEIR_ELIMIT when the
 * stream already holds stream_buffer bytes unsent (nothing queued),
 * WEIR_ENOENT for an unknown id. */
WEIR_API int weir_ffi_http_stream_write(weir_http *h, uint64_t id,
                                        const char *data, size_t len,
                                        char *err, size_t errlen);
/* End stream id: what is queued is sent, then the answer ends. The id is
 * forgotten. WEIR_ENOENT for an unknown id. */
WEIR_API int weir_ffi_http_stream_close(weir_http *h, uint64_t id);
/* Copy the counters into *out. */
WEIR_API void weir_ffi_http_stats(weir_http *h, weir_http_stats *out);
/* weir:cdef:end */

#endif
