/*
 * bench_pgbinary.c - what the PostgreSQL COPY codecs cost per row
 * (connectors/pgbinary.c, pgcodec.c): the binary and the text codec side
 * by side on one row shape (int8, text, float8, timestamptz, bool), and a
 * jsonb value through the text codec, best of 5; then, when WEIR_TEST_PG_URL is set (scripts/services.sh), COPY TO
 * and COPY FROM end to end against that server, best of 3.
 *
 * Usage: bench_pgbinary [N]   N rows for the codec part (1,000,000).
 * A measurement, never an assertion (see docs/performance.md); it exits
 * non-zero only when a step fails.
 *
 * Relies on pgkit.h (tests/c) and libpq.
 */
#include "pgkit.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static weir_buf buf;
static int failed;

/* A step that must work for the numbers to mean anything. */
#define NEED(expr) do { if (!(expr)) { failed++; \
        fprintf(stderr, "bench: %s:%d: %s failed\n", __FILE__, __LINE__, \
                #expr); } } while (0)

/* The best of 5 runs of n calls, in ns per call: the machine may be
 * shared, and the minimum is the least disturbed. */
#define BEST_OF(n, best, body) do { \
        best = 1e30; \
        for (int rep_ = 0; rep_ < 5; rep_++) { \
            double t0_ = now_ns(), t_; \
            for (int i_ = 0; i_ < (n); i_++) { body; } \
            t_ = (now_ns() - t0_) / (n); \
            if (t_ < best) best = t_; \
        } \
    } while (0)

static void bench(int n)
{
    const uint32_t *oids = shape_oids;
    int names, row, rc = WEIR_OK;
    weir_buf tuple = {0}, line = {0};
    double bd, be, td, te, fl;

    push_expr(SHAPE_NAMES);
    names = lua_gettop(L);
    push_expr("{ id = 1234567890, name = 'hello world', score = 3.25, "
              "ts = '2024-01-02 03:04:05.123456+00', ok = true }");
    row = lua_gettop(L);
    if (weir_pgbinary_encode_row(L, row, 5, names, oids, &tuple, err,
                                 sizeof err) != WEIR_OK ||
        weir_pgcodec_copy_encode_row(L, row, 5, names, oids, &line, err,
                                     sizeof err) != WEIR_OK) {
        fprintf(stderr, "bench: %s\n", err);
        return;
    }
    BEST_OF(n, bd, {
        rc |= weir_pgbinary_copy_row(L, tuple.data, tuple.len, 5, oids,
                                     names, err, sizeof err);
        lua_pop(L, 1);
    });
    BEST_OF(n, be, {
        buf.len = 0;
        rc |= weir_pgbinary_encode_row(L, row, 5, names, oids, &buf, err,
                                       sizeof err);
    });
    BEST_OF(n, td, {
        rc |= weir_pgcodec_copy_row(L, line.data, line.len, 5, oids, names,
                                    err, sizeof err);
        lua_pop(L, 1);
    });
    BEST_OF(n, te, {
        buf.len = 0;
        rc |= weir_pgcodec_copy_encode_row(L, row, 5, names, oids, &buf,
                                           err, sizeof err);
    });
    /* the floor of any decoder: the same table from constants */
    BEST_OF(n, fl, {
        lua_createtable(L, 0, 5);
        for (int c = 1; c <= 5; c++) {
            lua_rawgeti(L, names, c);
            lua_pushnumber(L, c);
            lua_rawset(L, -3);
        }
        lua_pop(L, 1);
    });
    if (rc != WEIR_OK)
        fprintf(stderr, "bench: %s\n", err);
    printf("row (int8, text, float8, timestamptz, bool), best of 5 x %d:\n"
           "  binary decode %4.0f ns/row   text decode %4.0f ns/row\n"
           "  binary encode %4.0f ns/row   text encode %4.0f ns/row\n"
           "  (a 5-field Lua table from constants: %.0f ns)\n"
           "  bytes per row: binary %zu, text %zu\n",
           n, bd, td, be, te, fl, tuple.len, line.len);
    /* a jsonb value through the text codec */
    push_expr("{ id = 7, name = 'x', tags = { 'a', 'b' }, score = 1.5, "
              "nested = { ok = true, none = NULL } }");
    line.len = 0;
    if (weir_pgcodec_encode(L, -1, 3802, 0, &line, err, sizeof err) !=
        WEIR_OK) {
        fprintf(stderr, "bench: %s\n", err);
        failed++;
    } else {
        BEST_OF(n / 4, bd, {
            rc |= weir_pgcodec_push(L, 3802, line.data, line.len, err,
                                    sizeof err);
            lua_pop(L, 1);
        });
        printf("jsonb decode (text codec, %zu bytes), best of 5 x %d: "
               "%.0f ns/value\n", line.len, n / 4, bd);
    }
    weir_buf_free(&tuple);
    weir_buf_free(&line);
    lua_settop(L, names - 1);
}


/* End to end, client and server on this machine: COPY TO and COPY FROM
 * of the bench row shape in text and in binary, best of 3. Prints only. */
static void server_timing(void)
{
    const uint32_t *oids = shape_oids;
    const int n = 200000;
    int top = lua_gettop(L), names, rows;
    double out[2] = {1e30, 1e30}, in[2] = {1e30, 1e30}, dec[2] = {1e30, 1e30};
    char state[6];

    push_expr(SHAPE_NAMES);
    names = lua_gettop(L);
    NEED(shape_tables(n) == 0);
    for (int rep = 0; rep < 3; rep++) {
        for (int binary = 0; binary < 2; binary++) {
            double t0 = now_ns(), t;

            decode_ns = 0;
            keep_rows = 0;
            NEED(copy_out("SELECT * FROM tm", binary, 5, oids, names) ==
                 n);
            keep_rows = 1;
            t = (now_ns() - t0) / n;
            out[binary] = t < out[binary] ? t : out[binary];
            t = decode_ns / n;
            dec[binary] = t < dec[binary] ? t : dec[binary];
            lua_pop(L, 1);
            /* the rows for COPY FROM, untimed */
            NEED(copy_out("SELECT * FROM tm", binary, 5, oids, names) ==
                 n);
            rows = lua_gettop(L);
            NEED(pg_cmd("TRUNCATE tm2") == 0);
            t0 = now_ns();
            NEED(copy_in("tm2", binary ? IN_BINARY : IN_TEXT, rows, 5, oids,
                         names, state) == 0);
            t = (now_ns() - t0) / n;
            in[binary] = t < in[binary] ? t : in[binary];
            lua_settop(L, names);
        }
    }
    printf("server timing, %d rows (int8, text, float8, timestamptz, "
           "bool), ns/row end to end, best of 3:\n"
           "  COPY TO:   text %4.0f   binary %4.0f  (rows dropped; of "
           "which decoding: text %.0f, binary %.0f)\n"
           "  COPY FROM: text %4.0f   binary %4.0f  (encoding included)\n",
           n, out[0], out[1], dec[0], dec[1], in[0], in[1]);
    lua_settop(L, top);
}

int main(int argc, char **argv)
{
    int rc;

    if (pgkit_open() != 0)
        return 2;
    bench(argc > 1 ? atoi(argv[1]) : 1000000);
    rc = pgkit_connect();
    if (rc == 0) {
        server_timing();
        pgkit_disconnect();
    }
    weir_buf_free(&buf);
    pgkit_close();
    return failed || rc == -1 ? 1 : 0;
}
