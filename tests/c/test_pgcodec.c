/*
 * test_pgcodec.c - unit tests for the PostgreSQL text codec
 * (connectors/pgcodec.c): every mapped type both ways, NULLs, NaN and
 * infinities, int8 past 2^53, long numerics, bytea with all byte values,
 * JSON (checked against weir.json, the Lua implementation), array literals (quoting, NULL vs
 * "NULL", nesting), COPY lines (escapes, field counts, "\."), error
 * messages, and randomized round trips. Needs no server; its timing is
 * tests/bench/bench_pgbinary.c. Relies on check.h and pgkit.h (a plain
 * trusted Lua state, deepeq and dump).
 */
#include "pgkit.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static weir_buf buf;

/* The text codec's own random values for the round trips (over pgkit's
 * NULL, deepeq, dump, bytes and rstr); math.random is seeded by
 * pgkit_open. */
static const char *lua_codec_helpers =
    "rstr_pieces = { 'a', 'Z', ' ', ',', '{', '}', '\"', '\\\\', 'NULL',\n"
    "  'null', '\\t', '\\n', '\\r', '\\\\.', '.', 'é', '日本', '\\1', "
    "'\\127', 'x y' }\n"
    "function rtext_array(depth)\n"
    "  local t = {}\n"
    "  local n = math.random(0, 4)\n"
    "  for i = 1, n do\n"
    "    if depth > 0 then t[i] = rtext_array(depth - 1)\n"
    "    elseif math.random(5) == 1 then t[i] = NULL\n"
    "    else t[i] = rstr(4) end\n"
    "  end\n"
    "  if depth > 0 and n == 0 then t[1] = rtext_array(depth - 1) end\n"
    "  return t\n"
    "end\n"
    "function rjson(depth)\n"
    "  local r = math.random(depth > 0 and 8 or 5)\n"
    "  if r == 1 then return NULL\n"
    "  elseif r == 2 then return math.random(2) == 1\n"
    "  elseif r == 3 then return (math.random() - 0.5) * 10 ^ "
    "math.random(-10, 20)\n"
    "  elseif r == 4 then return math.random(-1e9, 1e9)\n"
    "  elseif r == 5 then return rstr(6)\n"
    "  elseif r <= 6 then\n"
    "    local t = {}\n"
    "    for i = 1, math.random(0, 4) do t[i] = rjson(depth - 1) end\n"
    "    return t\n"
    "  else\n"
    "    local t = {}\n"
    "    for _ = 1, math.random(1, 4) do t[rstr(5) .. 'k'] = "
    "rjson(depth - 1) end\n"
    "    return t\n"
    "  end\n"
    "end\n";

static void expect_eq_(int line, const char *what)
{
    int top = lua_gettop(L);
    const char *got, *want;

    if (deepeq_at(-2, -1)) {
        check_passed++;
        return;
    }
    check_failed++;
    got = dump_at(top - 1);
    want = dump_at(top);
    fprintf(stderr, "test_pgcodec.c:%d: %s: got %s, expected %s\n", line,
            what, got, want);
    lua_settop(L, top);
}

/* Decode text of type oid and compare with a Lua expression. */
static void check_decode_(int line, uint32_t oid, const char *text,
                          size_t len, const char *expr)
{
    int top = lua_gettop(L);
    int rc = weir_pgcodec_push(L, oid, text, len, err, sizeof err);

    if (rc != WEIR_OK) {
        check_failed++;
        fprintf(stderr, "test_pgcodec.c:%d: decode %s as %u failed: %s\n",
                line, text, oid, err);
        return;
    }
    CHECK_EQ_INT(lua_gettop(L), top + 1);
    push_expr(expr);
    expect_eq_(line, text);
    lua_settop(L, top);
}
#define CHECK_DECODE(oid, text, expr) \
    check_decode_(__LINE__, oid, text, strlen(text), expr)

static void check_decode_err_(int line, uint32_t oid, const char *text,
                              const char *msg)
{
    int top = lua_gettop(L);
    int rc = weir_pgcodec_push(L, oid, text, strlen(text), err, sizeof err);

    if (rc == WEIR_EPARSE && lua_gettop(L) == top && strstr(err, msg)) {
        check_passed++;
        return;
    }
    check_failed++;
    fprintf(stderr, "test_pgcodec.c:%d: decode %s as %u: rc %d, err \"%s\", "
            "wanted \"%s\"\n", line, text, oid, rc, rc ? err : "", msg);
    lua_settop(L, top);
}
#define CHECK_DECODE_ERR(oid, text, msg) \
    check_decode_err_(__LINE__, oid, text, msg)

/* Encode a Lua expression and compare the bytes. */
static void check_encode_(int line, uint32_t oid, const char *expr, int copy,
                          const char *want, size_t wantlen)
{
    int top = lua_gettop(L), rc;

    push_expr(expr);
    buf.len = 0;
    rc = weir_pgcodec_encode(L, -1, oid, copy, &buf, err, sizeof err);
    if (rc == WEIR_OK && buf.len == wantlen &&
        memcmp(buf.data, want, wantlen) == 0 && buf.data[buf.len] == '\0' &&
        lua_gettop(L) == top + 1) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "test_pgcodec.c:%d: encode %s as %u: rc %d (%s), "
                "got \"%.*s\", expected \"%s\"\n", line, expr, oid, rc,
                rc ? err : "", (int)buf.len, buf.data ? buf.data : "",
                want);
    }
    lua_settop(L, top);
}
#define CHECK_ENCODE(oid, expr, want) \
    check_encode_(__LINE__, oid, expr, 0, want, strlen(want))
#define CHECK_ENCODE_COPY(oid, expr, want) \
    check_encode_(__LINE__, oid, expr, 1, want, strlen(want))

static void check_encode_err_(int line, uint32_t oid, const char *expr,
                              int copy, int want_rc, const char *msg)
{
    int top = lua_gettop(L), rc;

    push_expr(expr);
    buf.len = 3; /* what was there must stay */
    memcpy(buf.data, "abc", 4);
    rc = weir_pgcodec_encode(L, -1, oid, copy, &buf, err, sizeof err);
    if (rc == want_rc && strstr(err, msg) != NULL && buf.len == 3 &&
        strcmp(buf.data, "abc") == 0 && lua_gettop(L) == top + 1) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "test_pgcodec.c:%d: encode %s as %u: rc %d, err "
                "\"%s\", wanted %d \"%s\"\n", line, expr, oid, rc, err,
                want_rc, msg);
    }
    lua_settop(L, top);
}
#define CHECK_ENCODE_ERR(oid, expr, msg) \
    check_encode_err_(__LINE__, oid, expr, 0, WEIR_EINVAL, msg)

/* Lua value -> text -> Lua value, as a parameter and through a COPY line
 * of one column; both must give the value back. */
static void check_roundtrip_(int line, uint32_t oid, const char *expr)
{
    int top = lua_gettop(L), rc;

    push_expr(expr);
    buf.len = 0;
    rc = weir_pgcodec_encode(L, -1, oid, 0, &buf, err, sizeof err);
    if (rc == WEIR_ENOENT) {
        rc = weir_pgcodec_push(L, oid, NULL, 0, err, sizeof err);
    } else if (rc == WEIR_OK) {
        rc = weir_pgcodec_push(L, oid, buf.data, buf.len, err, sizeof err);
    }
    if (rc != WEIR_OK) {
        check_failed++;
        fprintf(stderr, "test_pgcodec.c:%d: round trip %s as %u: %s\n",
                line, expr, oid, err);
        lua_settop(L, top);
        return;
    }
    expect_eq_(line, "parameter round trip");
    lua_pop(L, 1);
    buf.len = 0;
    rc = weir_pgcodec_encode(L, -1, oid, 1, &buf, err, sizeof err);
    if (rc == WEIR_OK)
        rc = weir_pgcodec_copy_row(L, buf.data, buf.len, 1, &oid, NAMES1,
                                   err, sizeof err);
    if (rc != WEIR_OK) {
        check_failed++;
        fprintf(stderr, "test_pgcodec.c:%d: copy round trip %s as %u: %s\n",
                line, expr, oid, err);
        lua_settop(L, top);
        return;
    }
    CHECK(memchr(buf.data, '\n', buf.len) == NULL);
    lua_getfield(L, -1, "c");
    lua_replace(L, -2);
    expect_eq_(line, "copy round trip");
    lua_settop(L, top);
}
#define CHECK_ROUNDTRIP(oid, expr) check_roundtrip_(__LINE__, oid, expr)

/* ---- scalars ------------------------------------------------------------ */

static void test_null(void)
{
    int top = lua_gettop(L);

    CHECK_EQ_INT(weir_pgcodec_push(L, 23, NULL, 0, err, sizeof err),
                 WEIR_OK);
    CHECK(lua_type(L, -1) == LUA_TLIGHTUSERDATA &&
          lua_touserdata(L, -1) == NULL);
    push_expr("NULL");
    CHECK(lua_rawequal(L, -1, -2)); /* the sentinel is json.null */
    lua_settop(L, top);
    for (uint32_t oid = 16; oid < 4000; oid++) {
        if (weir_pgcodec_type_name(oid) == NULL)
            continue;
        CHECK_ENCODE_COPY(oid, "nil", "\\N");
        CHECK_ENCODE_COPY(oid, "NULL", "\\N");
        CHECK_ROUNDTRIP(oid, "NULL");
    }
    push_expr("NULL");
    buf.len = 0;
    CHECK_EQ_INT(weir_pgcodec_encode(L, -1, 25, 0, &buf, err, sizeof err),
                 WEIR_ENOENT);
    CHECK_EQ_INT(buf.len, 0);
    lua_pushnil(L);
    CHECK_EQ_INT(weir_pgcodec_encode(L, -1, 20, 0, &buf, err, sizeof err),
                 WEIR_ENOENT);
    lua_settop(L, top);
}

static void test_bool(void)
{
    CHECK_DECODE(16, "t", "true");
    CHECK_DECODE(16, "f", "false");
    CHECK_DECODE_ERR(16, "x", "invalid input syntax for type bool: \"x\"");
    CHECK_ENCODE(16, "true", "t");
    CHECK_ENCODE(16, "false", "f");
    CHECK_ENCODE(16, "'yes'", "t");
    CHECK_ENCODE(16, "'OFF'", "f");
    CHECK_ENCODE_ERR(16, "1", "expected boolean for bool, got 1");
    CHECK_ENCODE_ERR(16, "'maybe'", "expected boolean");
    CHECK_ROUNDTRIP(16, "true");
    CHECK_ROUNDTRIP(16, "false");
}

static void test_ints(void)
{
    CHECK_DECODE(21, "-32768", "-32768");
    CHECK_DECODE(23, "2147483647", "2147483647");
    CHECK_DECODE(26, "4294967295", "4294967295");
    CHECK_DECODE(20, "9007199254740992", "2^53");
    CHECK_DECODE(20, "-9007199254740992", "-2^53");
    CHECK_DECODE(20, "9007199254740993", "'9007199254740993'");
    CHECK_DECODE(20, "-9223372036854775808", "'-9223372036854775808'");
    CHECK_DECODE(20, "9223372036854775807", "'9223372036854775807'");
    CHECK_DECODE_ERR(23, "12a", "invalid input syntax for type int4: "
                                "\"12a\"");
    CHECK_DECODE_ERR(23, "", "invalid input syntax for type int4");
    CHECK_DECODE_ERR(21, "32768", "out of range for type int2");
    CHECK_DECODE_ERR(20, "9223372036854775808", "out of range for type int8");
    CHECK_DECODE_ERR(20, "1.5", "invalid input syntax for type int8");

    CHECK_ENCODE(23, "42", "42");
    CHECK_ENCODE(23, "-2147483648", "-2147483648");
    CHECK_ENCODE(21, "-0.0", "0");
    CHECK_ENCODE(20, "2^53", "9007199254740992");
    CHECK_ENCODE(20, "-1e15", "-1000000000000000");
    CHECK_ENCODE(20, "2^62", "4611686018427387904");
    CHECK_ENCODE(20, "-2^63", "-9223372036854775808");
    CHECK_ENCODE(20, "'9223372036854775807'", "9223372036854775807");
    CHECK_ENCODE(20, "'-42'", "-42");
    CHECK_ENCODE(23, "'17'", "17");
    CHECK_ENCODE(26, "4294967295", "4294967295");
    CHECK_ENCODE_ERR(23, "1.5", "expected integer for int4, got 1.5");
    CHECK_ENCODE_ERR(21, "40000", "expected integer for int2");
    CHECK_ENCODE_ERR(23, "2^31", "expected integer for int4");
    CHECK_ENCODE_ERR(20, "2^63", "expected integer for int8");
    CHECK_ENCODE_ERR(20, "0/0", "expected integer");
    CHECK_ENCODE_ERR(20, "1/0", "expected integer");
    CHECK_ENCODE_ERR(20, "'9223372036854775808'", "expected integer");
    CHECK_ENCODE_ERR(20, "'12 '", "expected integer for int8, got string "
                                  "\"12 \"");
    CHECK_ENCODE_ERR(23, "true", "expected integer for int4, got true");
    CHECK_ENCODE_ERR(23, "{}", "got a table");
    CHECK_ROUNDTRIP(21, "-7");
    CHECK_ROUNDTRIP(23, "123456");
    CHECK_ROUNDTRIP(26, "3000000000");
    CHECK_ROUNDTRIP(20, "2^53 - 1");
    CHECK_ROUNDTRIP(20, "'1234567890123456789'");
    CHECK_ROUNDTRIP(20, "'-9223372036854775808'");
}

static void test_numeric(void)
{
    const char *n40 = "1234567890123456789012345678901234567890.0123456789";

    CHECK_DECODE(1700, n40, "'1234567890123456789012345678901234567890."
                            "0123456789'");
    CHECK_DECODE(1700, "NaN", "'NaN'");
    CHECK_DECODE(1700, "-Infinity", "'-Infinity'");
    CHECK_DECODE(1700, "-0.000100", "'-0.000100'");
    CHECK_DECODE_ERR(1700, "1.2.3", "invalid input syntax for type numeric");
    CHECK_ENCODE(1700, "'1234567890123456789012345678901234567890.5'",
                 "1234567890123456789012345678901234567890.5");
    CHECK_ENCODE(1700, "'-1.5e-7'", "-1.5e-7");
    CHECK_ENCODE(1700, "'NaN'", "NaN");
    CHECK_ENCODE(1700, "0.1", "0.1");
    CHECK_ENCODE(1700, "1/3", "0.3333333333333333");
    CHECK_ENCODE(1700, "42", "42");
    CHECK_ENCODE(1700, "1e20", "100000000000000000000");
    CHECK_ENCODE(1700, "-2^70", "-1180591620717411303424");
    CHECK_ENCODE(1700, "0/0", "NaN");
    CHECK_ENCODE(1700, "-1/0", "-Infinity");
    CHECK_ENCODE_ERR(1700, "'12abc'", "expected number for numeric, got "
                                      "string \"12abc\"");
    CHECK_ENCODE_ERR(1700, "'1e'", "expected number");
    CHECK_ENCODE_ERR(1700, "''", "expected number");
    CHECK_ROUNDTRIP(1700, "'1234567890123456789012345678901234567890'");
    CHECK_ROUNDTRIP(1700, "'-0.00000000000000000000000000000000000001'");
}

/* Significant digits of a printed number (no leading/trailing zeros). */
static int sig_digits(const char *s)
{
    char d[64];
    int n = 0, first = 0;

    for (; *s && *s != 'e' && n < 63; s++)
        if (*s >= '0' && *s <= '9')
            d[n++] = *s;
    while (first < n && d[first] == '0')
        first++;
    while (n > first && d[n - 1] == '0')
        n--;
    return n - first;
}

static void test_floats(void)
{
    CHECK_DECODE(701, "NaN", "0/0");
    CHECK_DECODE(701, "Infinity", "1/0");
    CHECK_DECODE(701, "-Infinity", "-1/0");
    CHECK_DECODE(701, "0.1", "0.1");
    CHECK_DECODE(701, "-1.5e-300", "-1.5e-300");
    CHECK_DECODE(701, "1.7976931348623157e+308", "1.7976931348623157e308");
    CHECK_DECODE(701, "2.2250738585072014e-308", "2.2250738585072014e-308");
    CHECK_DECODE(701, "0.30000000000000004", "0.1 + 0.2");
    CHECK_DECODE(701, "123456789012345678901234567890",
                 "123456789012345678901234567890");
    CHECK_DECODE(701, "-0", "-0.0");
    CHECK_DECODE(700, "0.1", "0.1");
    CHECK_DECODE(700, "3.4028235e+38", "3.4028235e+38");
    CHECK_DECODE_ERR(701, "1,5", "invalid input syntax for type float8");
    CHECK_DECODE_ERR(701, "0x10", "invalid input syntax for type float8");
    CHECK_ENCODE(701, "0/0", "NaN");
    CHECK_ENCODE(701, "1/0", "Infinity");
    CHECK_ENCODE(701, "-1/0", "-Infinity");
    CHECK_ENCODE(701, "0.1", "0.1");
    CHECK_ENCODE(701, "0.1 + 0.2", "0.30000000000000004");
    CHECK_ENCODE(701, "1e300", "1e+300");
    CHECK_ENCODE(701, "3", "3");
    CHECK_ENCODE(701, "-0.0", "-0");
    CHECK_ENCODE(701, "'1.5e3'", "1.5e3");
    CHECK_ENCODE(701, "'-Infinity'", "-Infinity");
    CHECK_ENCODE(700, "0.1", "0.1");
    CHECK_ENCODE(700, "1/3", "0.33333334");
    CHECK_ENCODE_ERR(700, "1e39", "out of range for type float4");
    CHECK_ENCODE_ERR(701, "'fast'", "expected number for float8");
    CHECK_ENCODE_ERR(701, "true", "expected number");
    CHECK_ROUNDTRIP(701, "0/0");
    CHECK_ROUNDTRIP(701, "1/0");
    CHECK_ROUNDTRIP(701, "-1/0");
    CHECK_ROUNDTRIP(701, "math.pi");
    CHECK_ROUNDTRIP(701, "-2.2250738585072014e-308");
    CHECK_ROUNDTRIP(701, "4.9406564584124654e-324");
    CHECK_ROUNDTRIP(701, "1.7976931348623157e308");
    CHECK_ROUNDTRIP(701, "123456.789e10");
    CHECK_ROUNDTRIP(700, "0.5");
    CHECK_ROUNDTRIP(700, "1/0");
    {
        /* shortest round trip holds for many random doubles */
        int top = lua_gettop(L), bad = 0;

        for (int i = 0; i < 20000; i++) {
            union {
                uint64_t u;
                double d;
            } x;
            double back;

            x.u = (uint64_t)rand() << 62 ^ (uint64_t)rand() << 31 ^
                  (uint64_t)rand();
            if (!isfinite(x.d))
                continue;
            lua_pushnumber(L, x.d);
            buf.len = 0;
            if (weir_pgcodec_encode(L, -1, 701, 0, &buf, err, sizeof err) ||
                weir_pgcodec_push(L, 701, buf.data, buf.len, err,
                                  sizeof err)) {
                bad++;
            } else {
                back = lua_tonumber(L, -1);
                if (memcmp(&back, &x.d, sizeof back) != 0 ||
                    strtod(buf.data, NULL) != x.d)
                    bad++;
            }
            lua_settop(L, top);
        }
        CHECK_EQ_INT(bad, 0);
    }
    {
        /* decimal-looking values print with as few digits as any %.Ng
         * that reads back, and read back exactly */
        int top = lua_gettop(L), bad = 0;

        for (int i = 0; i < 50000; i++) {
            double v, back;
            char ref[40];
            int refdig = 0, dig = 0;

            if (i % 2 == 0)
                v = (double)(rand() % 100000000) / pow(10, rand() % 12);
            else
                v = ((double)rand() / RAND_MAX - 0.5) *
                    pow(10, rand() % 24 - 6);
            for (int prec = 1; prec <= 17; prec++) {
                snprintf(ref, sizeof ref, "%.*g", prec, v);
                if (strtod(ref, NULL) == v) {
                    refdig = prec;
                    break;
                }
            }
            lua_pushnumber(L, v);
            buf.len = 0;
            weir_pgcodec_encode(L, -1, 701, 0, &buf, err, sizeof err);
            back = strtod(buf.data, NULL);
            dig = sig_digits(buf.data);
            if (back != v) {
                bad++;
                fprintf(stderr, "%.17g printed %s\n", v, buf.data);
            } else if (dig > refdig &&
                       !(v == floor(v) && fabs(v) < 9.3e18)) {
                /* integers up to int64 print in full, by design */
                bad++;
                fprintf(stderr, "%.17g printed %s, %%.%dg is shorter\n", v,
                        buf.data, refdig);
            }
            lua_settop(L, top);
        }
        CHECK_EQ_INT(bad, 0);
    }
}

static void test_text(void)
{
    CHECK_DECODE(25, "héllo", "'héllo'");
    CHECK_DECODE(1043, "", "''");
    CHECK_DECODE(1042, "ab  ", "'ab  '");
    CHECK_DECODE(19, "pg_class", "'pg_class'");
    CHECK_DECODE(99999, "whatever", "'whatever'"); /* unknown OID */
    CHECK_ENCODE(25, "'plain'", "plain");
    CHECK_ENCODE(25, "42", "42");
    CHECK_ENCODE(25, "-2^60", "-1152921504606846976");
    CHECK_ENCODE(25, "1.25", "1.25");
    CHECK_ENCODE(25, "true", "true");
    CHECK_ENCODE(25, "false", "false");
    CHECK_ENCODE(99999, "7", "7");
    CHECK_ENCODE_ERR(25, "'a\\0b'", "cannot contain a NUL byte");
    CHECK_ENCODE_ERR(25, "{}", "expected string for text, got a table");
    CHECK_ENCODE_COPY(25, "'tab\\there'", "tab\\there");
    CHECK_ENCODE_COPY(25, "'a\\\\b'", "a\\\\b");
    CHECK_ENCODE_COPY(25, "'\\\\.'", "\\\\.");
    CHECK_ENCODE_COPY(25, "'\\\\N'", "\\\\N");
    CHECK_ENCODE_COPY(25, "'l1\\nl2\\r\\n'", "l1\\nl2\\r\\n");
    CHECK_ENCODE_COPY(25, "'\\8\\12\\11\\13\\12\\r'",
                      "\\b\\f\\v\\r\\f\\r"); /* Lua escapes are decimal */
    CHECK_ENCODE_COPY(25, "'\\1\\31\\127x'", "\\001\\037\\177x");
    CHECK_ROUNDTRIP(25, "bytes(1, 255)");
    CHECK_ROUNDTRIP(25, "'\\\\.'");
    CHECK_ROUNDTRIP(25, "'\\\\N'");
    CHECK_ROUNDTRIP(25, "''");
    CHECK_ROUNDTRIP(1043, "'tab\\tnl\\ncr\\rbs\\\\'");
    CHECK_ROUNDTRIP(1082, "'2024-02-29'");
    CHECK_ROUNDTRIP(1083, "'23:59:59.999999'");
    CHECK_ROUNDTRIP(1114, "'2024-01-02 03:04:05.123456'");
    CHECK_ROUNDTRIP(1184, "'2024-01-02 03:04:05+00'");
    CHECK_ROUNDTRIP(1186, "'1 year 2 mons 3 days 04:05:06'");
    CHECK_ENCODE_ERR(1184, "1700000000", "expected string for timestamptz");
}

static void test_uuid(void)
{
    CHECK_DECODE(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                 "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'");
    CHECK_ENCODE(2950, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                 "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    CHECK_ENCODE(2950, "'{A0EEBC999C0B4EF8BB6D6BB9BD380A11}'",
                 "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}");
    CHECK_ENCODE(2950, "'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11'",
                 "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11");
    CHECK_ENCODE_ERR(2950, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1'",
                     "expected uuid string");
    CHECK_ENCODE_ERR(2950, "'g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                     "expected uuid string");
    CHECK_ENCODE_ERR(2950, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-'",
                     "expected uuid string");
    CHECK_ROUNDTRIP(2950, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'");
}

static void test_bytea(void)
{
    CHECK_DECODE(17, "\\x", "''");
    CHECK_DECODE(17, "\\x00ff41", "'\\0\\255A'");
    CHECK_DECODE(17, "\\x0A0b", "'\\10\\11'");
    CHECK_DECODE(17, "a\\\\b\\000\\377", "'a\\\\b\\0\\255'"); /* escape fmt */
    CHECK_DECODE_ERR(17, "\\x0g", "invalid input syntax for type bytea");
    CHECK_DECODE_ERR(17, "\\x123", "invalid input syntax for type bytea");
    CHECK_DECODE_ERR(17, "a\\b", "invalid input syntax for type bytea");
    CHECK_ENCODE(17, "'\\0\\255A'", "\\x00ff41");
    CHECK_ENCODE(17, "''", "\\x");
    CHECK_ENCODE_COPY(17, "'\\0\\255A'", "\\\\x00ff41");
    CHECK_ENCODE_ERR(17, "12", "expected string for bytea, got 12");
    CHECK_ROUNDTRIP(17, "bytes(0, 255)");
    CHECK_ROUNDTRIP(17, "bytes(0, 255):rep(40)"); /* past stack buffers */
    CHECK_ROUNDTRIP(17, "''");
}

/* ---- JSON --------------------------------------------------------------- */

/* A json or jsonb text decodes to a json value holding it byte for byte,
 * and writes back as the same bytes: as a parameter, in COPY text, into
 * text. */
static void check_json_kept_(int line, uint32_t oid, const char *text)
{
    int top = lua_gettop(L);
    size_t len = strlen(text), n;
    const char *s;

    if (weir_pgcodec_push(L, oid, text, len, err, sizeof err) != WEIR_OK ||
        lua_type(L, -1) != LUA_TUSERDATA) {
        check_failed++;
        fprintf(stderr, "test_pgcodec.c:%d: %s is not a json value\n", line,
                text);
        lua_settop(L, top);
        return;
    }
    CHECK(luaL_callmeta(L, -1, "__tostring"));
    s = lua_tolstring(L, -1, &n);
    CHECK(s != NULL && n == len && memcmp(s, text, len) == 0);
    lua_pop(L, 1);
    for (int i = 0; i < 3; i++) {
        static const uint32_t to[] = {114, 3802, 25};

        buf.len = 0;
        CHECK_EQ_INT(weir_pgcodec_encode(L, -1, to[i], 0, &buf, err,
                                         sizeof err), WEIR_OK);
        if (buf.len != len || memcmp(buf.data, text, len) != 0) {
            check_failed++;
            fprintf(stderr, "test_pgcodec.c:%d: %s written as %.*s\n",
                    line, text, (int)buf.len, buf.data);
        }
    }
    /* through a COPY text line and back: the same text */
    buf.len = 0;
    CHECK_EQ_INT(weir_pgcodec_encode(L, -1, oid, 1, &buf, err, sizeof err),
                 WEIR_OK);
    CHECK_EQ_INT(weir_pgcodec_copy_row(L, buf.data, buf.len, 1, &oid,
                                       NAMES1, err, sizeof err), WEIR_OK);
    lua_getfield(L, -1, "c");
    CHECK(lua_equal(L, -1, -3));
    lua_settop(L, top);
}
#define CHECK_JSON_KEPT(oid, text) check_json_kept_(__LINE__, oid, text)

/* v:decode() of a json value holding text raises msg. */
static void check_json_decode_err_(int line, const char *text,
                                   const char *msg)
{
    int top = lua_gettop(L);

    CHECK_EQ_INT(weir_pgcodec_push(L, 3802, text, strlen(text), err,
                                   sizeof err), WEIR_OK);
    lua_getfield(L, -1, "decode");
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != 0 && strstr(lua_tostring(L, -1), msg)) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "test_pgcodec.c:%d: decode() of %.40s: wanted "
                "\"%s\", got %s\n", line, text, msg, dump_at(-1));
    }
    lua_settop(L, top);
}
#define CHECK_JSON_DECODE_ERR(text, msg) \
    check_json_decode_err_(__LINE__, text, msg)

/* What a json value does in Lua and where it can be written. */
static void test_json_values(void)
{
    int top = lua_gettop(L);

    /* two values of the same text are equal; other fields are refused */
    CHECK_EQ_INT(weir_pgcodec_push(L, 3802, "[1]", 3, err, sizeof err), 0);
    CHECK_EQ_INT(weir_pgcodec_push(L, 114, "[1]", 3, err, sizeof err), 0);
    CHECK(lua_equal(L, -1, -2));
    lua_settop(L, top + 1);
    CHECK_EQ_INT(luaL_loadstring(L, "local v = ... return v.a"), 0);
    lua_pushvalue(L, top + 1);
    CHECK(lua_pcall(L, 1, 1, 0) != 0);
    CHECK(strstr(lua_tostring(L, -1), "has no field 'a'") != NULL);
    lua_settop(L, top + 1);
    /* its metatable is hidden behind a name */
    lua_getglobal(L, "getmetatable");
    lua_pushvalue(L, top + 1);
    lua_call(L, 1, 1);
    CHECK_EQ_STR(lua_tostring(L, -1), "weir.json");
    lua_settop(L, top + 1);

    /* inside a table it is embedded as its text */
    lua_setglobal(L, "jv");
    CHECK_ENCODE(3802, "{ a = jv }", "{\"a\":[1]}");
    CHECK_ENCODE(3807, "{ jv, NULL, J('\"a b\"') }",
                 "{[1],NULL,\"\\\"a b\\\"\"}");
    CHECK_ENCODE_ERR(23, "jv", "expected integer for int4, got a json "
                               "value");
    CHECK_ENCODE_ERR(1082, "jv", "got a json value");
    lua_pushnil(L);
    lua_setglobal(L, "jv");
    CHECK_EQ_INT(lua_gettop(L), top);
}

static void test_json(void)
{
    CHECK_DECODE(3802, "{\"a\": 1, \"b\": null, \"c\": [1, null, \"x\"]}",
                 "{ a = 1, b = NULL, c = { 1, NULL, 'x' } }");
    CHECK_DECODE(114, " [ ] ", "{}");
    CHECK_DECODE(114, "null", "J('null')"); /* JSON null, not SQL NULL */
    CHECK_DECODE(114, "\"str\"", "'str'");
    CHECK_DECODE(114, "-12.5e-1", "-1.25");
    CHECK_DECODE(114, "true", "true");
    CHECK_DECODE(3802, "{\"k\\\"ey\": \"a\\\\b\\/c\\n\\t\\u00e9\\u65e5"
                       "\\ud83d\\ude00\\u0001\"}",
                 "{ ['k\"ey'] = 'a\\\\b/c\\n\\té日\\240\\159\\152\\128\\1' }");
    CHECK_DECODE(3802, "{\"a\": {\"b\": {\"c\": [[[]]]}}}",
                 "{ a = { b = { c = { { {} } } } } }");
    CHECK_DECODE(3802, "12345678901234567890", "12345678901234567890");
    CHECK_JSON_KEPT(114, " {\"b\":1,  \"a\": \"\\u00e9\\/\"} ");
    CHECK_JSON_KEPT(3802, "\"123\"");
    CHECK_JSON_KEPT(3802, "\"{\\\"a\\\": 1}\"");
    CHECK_JSON_KEPT(3802, "null");
    CHECK_JSON_KEPT(3802, "9007199254740993");
    CHECK_JSON_KEPT(3802, "1e400");
    CHECK_JSON_DECODE_ERR("{\"a\": }", "invalid JSON at offset 6");
    CHECK_JSON_DECODE_ERR("[1, 2", "invalid JSON");
    CHECK_JSON_DECODE_ERR("{\"a\" 1}", "expected ':'");
    CHECK_JSON_DECODE_ERR("\"abc", "unterminated string");
    CHECK_JSON_DECODE_ERR("1 2", "trailing characters");
    CHECK_JSON_DECODE_ERR("\"\\q\"", "bad escape");
    CHECK_JSON_DECODE_ERR("nul", "invalid JSON");
    CHECK_JSON_DECODE_ERR("[1e400]", "number beyond the range of a double");
    {
        /* deep nesting is refused, not a crash */
        char deep[2100];

        memset(deep, '[', 1000);
        memset(deep + 1000, ']', 1000);
        deep[2000] = '\0';
        CHECK_JSON_DECODE_ERR(deep, "nested too deeply");
    }
    test_json_values();

    CHECK_ENCODE(3802, "{ 1, 'two', NULL, true, 2.5 }",
                 "[1,\"two\",null,true,2.5]");
    CHECK_ENCODE(3802, "{ a = { b = 'x\"y\\\\z\\n\\1' } }",
                 "{\"a\":{\"b\":\"x\\\"y\\\\z\\n\\u0001\"}}");
    CHECK_ENCODE(3802, "{}", "{}");
    CHECK_ENCODE(3802, "'{\"already\": \"json\"}'",
                 "{\"already\": \"json\"}");
    CHECK_ENCODE(3802, "0.1", "0.1");
    CHECK_ENCODE(3802, "false", "false");
    CHECK_ENCODE(3802, "{ [1] = 'a', [3] = 'c' }", "[\"a\",null,\"c\"]");
    CHECK_ENCODE(3802, "{ [1.5] = 'x' }", "{\"1.5\":\"x\"}");
    CHECK_ENCODE_COPY(114, "{ s = 'tab\\t' }", "{\"s\":\"tab\\\\t\"}");
    CHECK_ENCODE_ERR(3802, "{ 0/0 }", "cannot encode NaN or Infinity");
    CHECK_ENCODE_ERR(3802, "{ f = print }", "cannot encode a function");
    CHECK_ENCODE_ERR(3802, "{ [true] = 1 }", "cannot encode a boolean key");
    CHECK_ENCODE_ERR(3802, "{ [1] = 1, [1000] = 2 }", "sparse array");
    CHECK_ENCODE_ERR(3802, "(function() local t = {} t.t = t return t "
                           "end)()", "nested too deeply");
    CHECK_ROUNDTRIP(3802, "{ id = 7, tags = { 'a', 'b' }, none = NULL, "
                          "nested = { x = { y = { 1.5, -2, true } } } }");
    CHECK_ROUNDTRIP(114, "{ 'line\\nbreak', 'tab\\t', 'q\"', 'bs\\\\' }");

    /* random documents: the C encoder read back by weir.json and by C */
    {
        int top = lua_gettop(L), bad = 0;

        for (int i = 0; i < 500; i++) {
            push_expr("{ rjson(4) }");
            buf.len = 0;
            if (weir_pgcodec_encode(L, -1, 3802, 0, &buf, err, sizeof err)) {
                bad++;
                fprintf(stderr, "json encode: %s\n", err);
                lua_settop(L, top);
                continue;
            }
            lua_getglobal(L, "require");
            lua_pushstring(L, "weir.json");
            lua_call(L, 1, 1);
            lua_getfield(L, -1, "decode");
            lua_pushlstring(L, buf.data, buf.len);
            if (lua_pcall(L, 1, 1, 0) != 0 || (lua_replace(L, -2), 0) ||
                !deepeq_at(-2, -1)) {
                bad++;
                fprintf(stderr, "weir.json disagrees: %s\n", buf.data);
            }
            lua_pop(L, 1);
            if (weir_pgcodec_push(L, 3802, buf.data, buf.len, err,
                                  sizeof err) != WEIR_OK || !deepeq_at(-2, -1)) {
                bad++;
                fprintf(stderr, "json round trip: %s\n", buf.data);
            }
            lua_settop(L, top);
        }
        CHECK_EQ_INT(bad, 0);
    }
}

/* ---- arrays ------------------------------------------------------------- */

static void test_arrays(void)
{
    CHECK_DECODE(1007, "{1,2,3}", "{ 1, 2, 3 }");
    CHECK_DECODE(1007, "{}", "{}");
    CHECK_DECODE(1007, "{1,NULL,3}", "{ 1, NULL, 3 }");
    CHECK_DECODE(1007, " { 1 , null , 3 } ", "{ 1, NULL, 3 }");
    CHECK_DECODE(1007, "{{1,2},{3,4}}", "{ { 1, 2 }, { 3, 4 } }");
    CHECK_DECODE(1007, "{{{1},{2}},{{3},{4}}}",
                 "{ { { 1 }, { 2 } }, { { 3 }, { 4 } } }");
    CHECK_DECODE(1009, "{\"NULL\",NULL,\"\",\"a,b\",\"{x}\",\"q\\\"q\","
                       "\"b\\\\s\",\" sp \"}",
                 "{ 'NULL', NULL, '', 'a,b', '{x}', 'q\"q', 'b\\\\s', "
                 "' sp ' }");
    CHECK_DECODE(1009, "{a\\,b,c\\ ,  d e  }", "{ 'a,b', 'c ', 'd e' }");
    CHECK_DECODE(1016, "{9007199254740993,-1}",
                 "{ '9007199254740993', -1 }");
    CHECK_DECODE(1231, "{1.50,NaN}", "{ '1.50', 'NaN' }");
    CHECK_DECODE(1022, "{NaN,Infinity,-Infinity,0.5}",
                 "{ 0/0, 1/0, -1/0, 0.5 }");
    CHECK_DECODE(1000, "{t,f,NULL}", "{ true, false, NULL }");
    CHECK_DECODE(1001, "{\"\\\\x00ff\",NULL}", "{ '\\0\\255', NULL }");
    CHECK_DECODE(3807, "{\"{\\\"a\\\": null}\",\"[1, 2]\",NULL,\"null\"}",
                 "{ J('{\"a\": null}'), J('[1, 2]'), NULL, J('null') }");
    CHECK_DECODE(1185, "{\"2024-01-02 03:04:05+00\"}",
                 "{ '2024-01-02 03:04:05+00' }");
    CHECK_DECODE(2951, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
                 "{ 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' }");
    CHECK_DECODE_ERR(1007, "[0:1]={1,2}", "explicit dimensions are not "
                                          "supported");
    CHECK_DECODE_ERR(1007, "{1,2", "malformed array literal for type _int4");
    CHECK_DECODE_ERR(1007, "{1,,2}", "empty element");
    CHECK_DECODE_ERR(1007, "{{1},2}", "sub-arrays and scalars mixed");
    CHECK_DECODE_ERR(1007, "{1,2}x", "junk after closing");
    CHECK_DECODE_ERR(1007, "1,2", "expected '{'");
    CHECK_DECODE_ERR(1009, "{\"abc}", "unterminated quoted element");
    CHECK_DECODE_ERR(1009, "{a\"b}", "unexpected character");
    CHECK_DECODE_ERR(1007, "{1,x}", "invalid input syntax for type int4");

    CHECK_ENCODE(1007, "{ 1, 2, NULL }", "{1,2,NULL}");
    CHECK_ENCODE(1007, "{}", "{}");
    CHECK_ENCODE(1007, "{ { 1, 2 }, { 3, 4 } }", "{{1,2},{3,4}}");
    CHECK_ENCODE(1009, "{ 'a,b', 'NULL', 'null', '', 'x\"y', 'b\\\\s', "
                       "' sp', '{}', 'plain', NULL }",
                 "{\"a,b\",\"NULL\",\"null\",\"\",\"x\\\"y\",\"b\\\\s\","
                 "\" sp\",\"{}\",plain,NULL}");
    CHECK_ENCODE(1009, "'{a,b}'", "{a,b}"); /* a literal already */
    CHECK_ENCODE(1001, "{ '\\1\\2' }", "{\"\\\\x0102\"}");
    CHECK_ENCODE(3807, "{ { a = 1 }, NULL, { 1, 2 } }",
                 "{\"{\\\"a\\\":1}\",NULL,\"[1,2]\"}");
    CHECK_ENCODE(1022, "{ 0/0, 1/0, 0.25 }", "{NaN,Infinity,0.25}");
    CHECK_ENCODE_COPY(1009, "{ 'a\\\\b', 'tab\\t' }",
                      "{\"a\\\\\\\\b\",\"tab\\t\"}");
    CHECK_ENCODE_ERR(1007, "{ 1, 'x' }", "array element 2: expected integer "
                                         "for int4");
    CHECK_ENCODE_ERR(1007, "{ a = 1 }", "expected a sequence");
    CHECK_ENCODE_ERR(1007, "7", "expected table for _int4, got 7");
    CHECK_ROUNDTRIP(1009, "{ 'a,b', 'NULL', NULL, '', ' x ', '\"', '\\\\', "
                          "'{', '}', 'tab\\t', 'nl\\n', bytes(1, 255) }");
    CHECK_ROUNDTRIP(1015, "{ { 'a', 'b' }, { NULL, 'd e' } }");
    CHECK_ROUNDTRIP(1016, "{ '9223372036854775807', 1, -2^53, NULL }");
    CHECK_ROUNDTRIP(1005, "{ 1, -32768 }");
    CHECK_ROUNDTRIP(1021, "{ 0.5, -1/0 }");
    CHECK_ROUNDTRIP(1000, "{ true, false, NULL }");
    CHECK_ROUNDTRIP(1001, "{ bytes(0, 255), '', NULL }");
    CHECK_ROUNDTRIP(1231, "{ '1.000000000000000000001', 'NaN' }");
    CHECK_ROUNDTRIP(199, "{ { a = { 1, 2 } }, NULL, 'x' == 'x' }");
    CHECK_ROUNDTRIP(3807, "{ { s = 'q\"\\\\,{}' } }");
    CHECK_ROUNDTRIP(2951, "{ 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' }");
    CHECK_ROUNDTRIP(1182, "{ '2024-01-01', NULL }");
    CHECK_ROUNDTRIP(1183, "{ '12:00:00' }");
    CHECK_ROUNDTRIP(1115, "{ '2024-01-02 03:04:05' }");
    CHECK_ROUNDTRIP(1185, "{ '2024-01-02 03:04:05+00' }");
    CHECK_ROUNDTRIP(1187, "{ '1 day 02:00:00' }");
    CHECK_ROUNDTRIP(1014, "{ 'ab ' }");
    CHECK_ROUNDTRIP(1007, "{}");
    CHECK_ROUNDTRIP(1009, "{ { { 'deep' } } }");
    {
        /* long elements go through the scratch buffers */
        CHECK_ROUNDTRIP(1009, "{ ('x\"'):rep(300), ('\\\\ '):rep(300) }");
    }
    {
        int top = lua_gettop(L), bad = 0;

        for (int i = 0; i < 1000; i++) {
            char expr[32];

            snprintf(expr, sizeof expr, "rtext_array(%d)", i % 3);
            push_expr(expr);
            buf.len = 0;
            if (weir_pgcodec_encode(L, -1, 1009, 1, &buf, err, sizeof err) ||
                weir_pgcodec_copy_row(L, buf.data, buf.len, 1,
                                      (const uint32_t[]){1009}, NAMES1, err,
                                      sizeof err)) {
                bad++;
                fprintf(stderr, "random array: %s\n", err);
            } else {
                lua_getfield(L, -1, "c");
                lua_replace(L, -2);
                if (!deepeq_at(-2, -1)) {
                    bad++;
                    fprintf(stderr, "random array: %s\n", buf.data);
                }
            }
            lua_settop(L, top);
        }
        CHECK_EQ_INT(bad, 0);
    }
}

/* ---- COPY lines --------------------------------------------------------- */

static void test_copy_lines(void)
{
    static const uint32_t oids[] = {20, 25, 701, 1184, 16, 3802, 1009, 17};
    int top = lua_gettop(L), names, rc;
    const char *line;

    push_expr("{ 'id', 'name', 'score', 'ts', 'ok', 'doc', 'tags', 'raw' }");
    names = lua_gettop(L);

    line = "42\tAnn\\tB\\\\C\\nD\t0.5\t2024-01-02 03:04:05+00\tt\t"
           "{\"k\": \"v\\\\nw\", \"n\": null}\t{a,\"b c\",NULL}\t"
           "\\\\x00ff\n";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    push_expr("{ id = 42, name = 'Ann\\tB\\\\C\\nD', score = 0.5, "
              "ts = '2024-01-02 03:04:05+00', ok = true, "
              "doc = { k = 'v\\nw', n = NULL }, tags = { 'a', 'b c', NULL }, "
              "raw = '\\0\\255' }");
    expect_eq_(__LINE__, "copy row");
    lua_settop(L, names);

    /* NULLs, CRLF, octal and hex escapes, an escaped tab, \N in text */
    line = "\\N\t\\101\\x42\\x4\\x\\q\\\tx\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\r\n";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    push_expr("{ id = NULL, name = 'AB\\4xq\\tx', score = NULL, ts = NULL, "
              "ok = NULL, doc = NULL, tags = NULL, raw = NULL }");
    expect_eq_(__LINE__, "copy row with NULLs");
    lua_settop(L, names);

    /* empty trailing field, "\N" only when the whole field */
    line = "1\t\\Nx\t1\tx\tf\tnull\t{}\t\\\\x";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    push_expr("{ id = 1, name = 'Nx', score = 1, ts = 'x', ok = false, "
              "doc = J('null'), tags = {}, raw = '' }");
    expect_eq_(__LINE__, "copy row edge cases");
    lua_settop(L, names);

    /* wrong field counts */
    line = "1\tx\n";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_EPARSE);
    CHECK(strstr(err, "expected 8 fields, got 2") != NULL);
    CHECK_EQ_INT(lua_gettop(L), names);
    line = "1\t2\t3\t4\tt\t5\t{}\t\\\\x\tEXTRA\tMORE\n";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_EPARSE);
    CHECK(strstr(err, "expected 8 fields, got 10") != NULL);
    CHECK_EQ_INT(lua_gettop(L), names);

    /* bad values name the column */
    line = "1x\ta\t1\tx\tt\t1\t{}\t\\\\x\n";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_EPARSE);
    CHECK_EQ_STR(err, "column \"id\": invalid input syntax for type int8: "
                      "\"1x\"");
    CHECK_EQ_INT(lua_gettop(L), names);
    line = "1\ta\t1\tx\tt\t1\t{1,\t\\\\x\n";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_EPARSE);
    CHECK(strstr(err, "column \"tags\": malformed array literal") != NULL);
    line = "1\ta\t1\tx\tmaybe\t1\t{}\t\\\\x\n";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK(strstr(err, "column \"ok\": invalid input syntax for type bool")
          != NULL);
    /* json text is the server's, kept unchecked (decode() checks it) */
    line = "1\ta\t1\tx\tt\t{\t{}\t\\\\x\n";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    lua_settop(L, names);
    line = "1\ta\\";
    rc = weir_pgcodec_copy_row(L, line, strlen(line), 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_EPARSE);
    CHECK(strstr(err, "lone backslash") != NULL);
    CHECK_EQ_INT(lua_gettop(L), names);

    /* misuse: names that are not a table, a negative count */
    lua_pushnumber(L, 1);
    rc = weir_pgcodec_copy_row(L, "1", 1, 1, NULL, -1, err, sizeof err);
    CHECK_EQ_INT(rc, WEIR_EINVAL);
    lua_settop(L, names);
    rc = weir_pgcodec_copy_row(L, "1", 1, -1, NULL, names, err, sizeof err);
    CHECK_EQ_INT(rc, WEIR_EINVAL);
    CHECK_EQ_INT(lua_gettop(L), names);

    /* zero columns, and oids == NULL (all text) */
    rc = weir_pgcodec_copy_row(L, "\n", 1, 0, NULL, names, err, sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    CHECK(lua_istable(L, -1));
    lua_settop(L, names);
    rc = weir_pgcodec_copy_row(L, "7\t8", 3, 2, NULL, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    push_expr("{ id = '7', name = '8' }");
    expect_eq_(__LINE__, "untyped row");
    lua_settop(L, names);

    /* encode: exact bytes, then back */
    push_expr("{ id = 2^53 + 2, name = 'a\\tb\\\\.\\n', score = 0/0, "
              "ts = '2024-01-02 03:04:05+00', ok = false, "
              "doc = { k = NULL }, tags = { 'x y', NULL, 'NULL' }, "
              "raw = '\\\\' }");
    buf.len = 0;
    rc = weir_pgcodec_copy_encode_row(L, -1, 8, names, oids, &buf, err,
                                      sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    CHECK_EQ_STR(buf.data, "9007199254740994\ta\\tb\\\\.\\n\tNaN\t"
                           "2024-01-02 03:04:05+00\tf\t{\"k\":null}\t"
                           "{\"x y\",NULL,\"NULL\"}\t\\\\x5c\n");
    rc = weir_pgcodec_copy_row(L, buf.data, buf.len, 8, oids, names, err,
                               sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    push_expr("{ id = '9007199254740994', name = 'a\\tb\\\\.\\n', "
              "score = 0/0, ts = '2024-01-02 03:04:05+00', ok = false, "
              "doc = { k = NULL }, tags = { 'x y', NULL, 'NULL' }, "
              "raw = '\\\\' }");
    expect_eq_(__LINE__, "encoded row read back");
    lua_settop(L, names);

    /* missing keys are NULL; a bad value names the column and leaves the
     * buffer as it was */
    push_expr("{ id = 1 }");
    buf.len = 0;
    rc = weir_pgcodec_copy_encode_row(L, -1, 8, names, oids, &buf, err,
                                      sizeof err);
    CHECK_EQ_INT(rc, WEIR_OK);
    CHECK_EQ_STR(buf.data, "1\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n");
    lua_settop(L, names);
    push_expr("{ id = 1, score = 'abc' }");
    rc = weir_pgcodec_copy_encode_row(L, -1, 8, names, oids, &buf, err,
                                      sizeof err);
    CHECK_EQ_INT(rc, WEIR_EINVAL);
    CHECK_EQ_STR(err, "column \"score\": expected number for float8, got "
                      "string \"abc\"");
    CHECK_EQ_STR(buf.data, "1\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n");
    CHECK_EQ_INT(lua_gettop(L), names + 1);
    lua_pushnumber(L, 5);
    rc = weir_pgcodec_copy_encode_row(L, -1, 8, names, oids, &buf, err,
                                      sizeof err);
    CHECK_EQ_INT(rc, WEIR_EINVAL);
    CHECK(strstr(err, "expected a table") != NULL);
    lua_settop(L, top);
}

/* Random bytes through COPY rows: text (no NUL) and bytea columns. */
static void test_copy_random(void)
{
    static const uint32_t oids[] = {25, 17, 1043};
    int top = lua_gettop(L), names, bad = 0;
    char a[300], b[300], c[8];

    push_expr("{ 't', 'b', 'v' }");
    names = lua_gettop(L);
    for (int i = 0; i < 5000; i++) {
        size_t na = (size_t)rand() % sizeof a, nb = (size_t)rand() % sizeof b;
        size_t nc = (size_t)rand() % sizeof c;

        for (size_t j = 0; j < na; j++)
            a[j] = (char)(rand() % 255 + 1);
        for (size_t j = 0; j < nb; j++)
            b[j] = (char)rand();
        for (size_t j = 0; j < nc; j++)
            c[j] = "\\.\n\t\r Nx"[rand() % 8];
        lua_createtable(L, 0, 3);
        lua_pushlstring(L, a, na);
        lua_setfield(L, -2, "t");
        lua_pushlstring(L, b, nb);
        lua_setfield(L, -2, "b");
        lua_pushlstring(L, c, nc);
        lua_setfield(L, -2, "v");
        buf.len = 0;
        if (weir_pgcodec_copy_encode_row(L, -1, 3, names, oids, &buf, err,
                                         sizeof err) != WEIR_OK ||
            memchr(buf.data, '\n', buf.len - 1) != NULL ||
            memchr(buf.data, '\r', buf.len) != NULL ||
            strcmp(buf.data, "\\.\n") == 0 ||
            weir_pgcodec_copy_row(L, buf.data, buf.len, 3, oids, names, err,
                                  sizeof err) != WEIR_OK ||
            !deepeq_at(-2, -1)) {
            bad++;
        }
        lua_settop(L, names);
    }
    CHECK_EQ_INT(bad, 0);
    lua_settop(L, top);
}

static void test_types_and_buffer(void)
{
    weir_buf b = {0};

    CHECK_EQ_STR(weir_pgcodec_type_name(20), "int8");
    CHECK_EQ_STR(weir_pgcodec_type_name(1184), "timestamptz");
    CHECK_EQ_STR(weir_pgcodec_type_name(1007), "_int4");
    CHECK_EQ_STR(weir_pgcodec_type_name(3807), "_jsonb");
    CHECK(weir_pgcodec_type_name(12345) == NULL);
    CHECK_EQ_INT(weir_pgcodec_type_oid("int8"), 20);
    CHECK_EQ_INT(weir_pgcodec_type_oid("bigint"), 20);
    CHECK_EQ_INT(weir_pgcodec_type_oid("TIMESTAMPTZ"), 1184);
    CHECK_EQ_INT(weir_pgcodec_type_oid("timestamp with time zone"), 1184);
    CHECK_EQ_INT(weir_pgcodec_type_oid("double precision"), 701);
    CHECK_EQ_INT(weir_pgcodec_type_oid("_int4"), 1007);
    CHECK_EQ_INT(weir_pgcodec_type_oid("integer[]"), 1007);
    CHECK_EQ_INT(weir_pgcodec_type_oid("jsonb[]"), 3807);
    CHECK_EQ_INT(weir_pgcodec_type_oid("nope"), 0);
    CHECK_EQ_INT(weir_pgcodec_type_oid("nope[]"), 0);
    CHECK_EQ_INT(weir_pgcodec_type_oid(NULL), 0);
    for (uint32_t oid = 0; oid < 5000; oid++) {
        const char *n = weir_pgcodec_type_name(oid);

        if (n != NULL)
            CHECK_EQ_INT(weir_pgcodec_type_oid(n), oid);
    }

    CHECK_EQ_INT(weir_buf_append(&b, "ab", 2), WEIR_OK);
    CHECK_EQ_INT(weir_buf_reserve(&b, 100000), WEIR_OK);
    CHECK(b.cap >= 100003);
    CHECK_EQ_STR(b.data, "ab");
    CHECK_EQ_INT(weir_buf_reserve(&b, SIZE_MAX), WEIR_ENOMEM);
    weir_buf_free(&b);
    weir_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

int main(void)
{
    if (pgkit_open() != 0)
        return 2;
    if (luaL_dostring(L, lua_codec_helpers) != 0) {
        fprintf(stderr, "helpers: %s\n", lua_tostring(L, -1));
        return 2;
    }
    lua_settop(L, NAMES1);
    weir_buf_reserve(&buf, 16);
    srand(12345);
    test_null();
    test_bool();
    test_ints();
    test_numeric();
    test_floats();
    test_text();
    test_uuid();
    test_bytea();
    test_json();
    test_arrays();
    test_copy_lines();
    test_copy_random();
    test_types_and_buffer();
    CHECK_EQ_INT(lua_gettop(L), NAMES1);
    weir_buf_free(&buf);
    pgkit_close();
    return CHECK_DONE();
}
