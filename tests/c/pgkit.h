/*
 * pgkit.h - what the PostgreSQL COPY codec tests share: the unit tests
 * (tests/c/test_pgbinary.c, test_pgcodec.c), the checks against a live
 * server (tests/integration/test_pgbinary_server.c) and the benchmark
 * (tests/bench/bench_pgbinary.c). A trusted Lua state (the NULL sentinel,
 * weir.json) and Lua helpers (deepeq, dump, random
 * strings and JSON), the type OIDs, a deterministic generator, and a
 * libpq connection with COPY TO / COPY FROM through either codec. Built
 * from tests/c/pgkit.c into each of these programs.
 */
#ifndef WEIR_TEST_PGKIT_H
#define WEIR_TEST_PGKIT_H

#include "weir/pgbinary.h"
#include "weir/pgcodec.h"

#include <libpq-fe.h>
#include <lua.h>
#include <stdint.h>

/* The state, and its stack slot 1: { "c" }, the names of one-column rows.
 * err: the codecs' error text. */
extern lua_State *L;
extern char err[256];
#define NAMES1 1

enum {
    BOOL = 16, BYTEA = 17, NAME = 19, INT8 = 20, INT2 = 21, INT4 = 23,
    TEXT = 25, OID = 26, JSON = 114, FLOAT4 = 700, FLOAT8 = 701,
    BPCHAR = 1042, VARCHAR = 1043, DATE = 1082, TIMESTAMP = 1114,
    TIMESTAMPTZ = 1184, UUID = 2950, JSONB = 3802, NUMERIC = 1700
};

/* Open L (NULL sentinel, helpers, NAMES1, Lua's random seed); 0 or -1. */
int pgkit_open(void);
void pgkit_close(void);

/* Push the value of a Lua expression (nil, said on stderr, if it fails). */
void push_expr(const char *expr);
/* i as a positive stack index. */
int absidx(int i);
/* deepeq(a, b) in Lua; the stack is left as it was. */
int deepeq_at(int a, int b);
/* dump(v) into one of two static buffers (two may be live at once). */
const char *dump_at(int i);
/* splitmix64: deterministic, from the same seed in every program. */
uint64_t rnd(void);
double now_ns(void);

/* ---- a live server (WEIR_TEST_PG_URL) -------------------------------- */

extern PGconn *pg;
extern int quiet;        /* server errors are expected: don't print them */
extern double decode_ns; /* time copy_out spent in the codecs */
extern int keep_rows;    /* 0: copy_out drops each row, as a stream would */
extern int copy_switches; /* IN_SWITCH copies that went on in text */

/* The exit status of a test whose server is not configured: ctest's
 * SKIP_RETURN_CODE for it, as a pending spec is for busted. */
#define PGKIT_SKIPPED 77

/* Connect to WEIR_TEST_PG_URL in UTC, ISO dates, extra_float_digits 3.
 * 0; PGKIT_SKIPPED when it is not set; -1 when the connection fails (both
 * said on stderr). */
int pgkit_connect(void);
void pgkit_disconnect(void);

/* Run q; 0, or -1 (said on stderr). */
int pg_cmd(const char *q);
/* Drain the results after a COPY; -1 unless it ended well (the SQLSTATE
 * goes to state). */
int copy_result(char state[6]);
/* COPY (query) TO STDOUT as text or binary: pushes an array of row
 * tables decoded by the text or the binary codec; the count or -1. */
int copy_out(const char *query, int binary, int ncols, const uint32_t *oids,
             int names);
/* Start COPY target FROM STDIN; b gets the binary header. */
int copy_start(const char *target, int binary, weir_buf *b);

enum { IN_TEXT, IN_BINARY, IN_SWITCH };

/* COPY target FROM STDIN with the rows of the array at rows, encoded by
 * the text codec, the binary codec, or (IN_SWITCH) binary until a row
 * returns WEIR_EAGAIN and text from that row on, in a second COPY: the
 * fallback pg.c does. 0; -1 the server refused (SQLSTATE in state); -2 a
 * row did not encode. */
int copy_in(const char *target, int mode, int rows, int ncols,
            const uint32_t *oids, int names, char state[6]);

/* The row shape the benchmark times: its column names (a Lua expression)
 * and types. shape_tables(n): temp tables tm, n rows of that shape, and
 * tm2 like it, empty; 0 or -1. */
#define SHAPE_NAMES "{ 'id', 'name', 'score', 'ts', 'ok' }"
extern const uint32_t shape_oids[5];
int shape_tables(int n);

#endif
