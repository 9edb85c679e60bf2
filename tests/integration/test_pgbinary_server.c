/*
 * test_pgbinary_server.c - the PostgreSQL COPY codecs (connectors/
 * pgbinary.c, pgcodec.c) against the live server of WEIR_TEST_PG_URL
 * (scripts/services.sh): COPY TO binary vs text of tricky and random rows,
 * COPY FROM binary vs text, float4 printing, input forms, refusals
 * (WEIR_PGBINARY_ROWS, WEIR_PGBINARY_FLOATS set the sizes), and the
 * row shape the benchmark times both ways. Skipped (exit
 * status 77) when WEIR_TEST_PG_URL is unset.
 *
 * Relies on check.h and pgkit.h (tests/c) and libpq.
 */
#include "pgkit.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Input generators for the server's COPY FROM checks. */
static const char *lua_server_helpers =
    "local function pad(n, w) return string.format('%0' .. w .. 'd', n)"
    " end\n"
    "local function pick(t) return t[math.random(#t)] end\n"
    "local function add(t, list) for _, v in ipairs(list) do t[#t + 1] = v"
    " end return t end\n"
    "function rdatetime(with_time)\n"
    "  local y = math.random() < 0.1 and math.random(10000, 99999)"
    " or math.random(1, 9999)\n"
    "  local s = pad(y, 4) .. '-' .. pad(math.random(1, 12), 2) .. '-' ..\n"
    "    pad(math.random(1, math.random() < 0.9 and 28 or 31), 2)\n"
    "  if with_time and math.random() < 0.9 then\n"
    "    s = s .. pick({ ' ', 'T' }) .. pad(math.random(0, 23), 2) .. ':'"
    " .. pad(math.random(0, 59), 2)\n"
    "    if math.random() < 0.9 then\n"
    "      s = s .. ':' .. pad(math.random(0, 59), 2)\n"
    "      if math.random() < 0.6 then\n"
    "        s = s .. '.' .. pad(math.random(0, 999999), 6):sub(1,"
    " math.random(1, 6)) end\n"
    "    end\n"
    "    if math.random() < 0.7 then\n"
    "      local r, sign = math.random(7), pick({ '+', '-' })\n"
    "      local sp = math.random() < 0.2 and ' ' or ''\n"
    "      local h = math.random(0, 15)\n"
    "      if r == 1 then s = s .. sp .. 'Z'\n"
    "      elseif r == 2 then s = s .. sp .. sign .. pad(h, 2)\n"
    "      elseif r == 3 then s = s .. sp .. sign .. h\n"
    "      elseif r == 4 then s = s .. sp .. sign .. pad(h, 2) .. ':' .."
    " pad(math.random(0, 59), 2)\n"
    "      elseif r == 5 then s = s .. sp .. sign .. pad(h, 2) .."
    " pad(math.random(0, 59), 2)\n"
    "      elseif r == 6 then s = s .. sp .. sign .. pad(h, 2) .. ':' .."
    " pad(math.random(0, 59), 2) .. ':' .. pad(math.random(0, 59), 2)\n"
    "      else s = s .. sp .. sign .. pad(math.random(16, 99), 2) end\n"
    "    end\n"
    "  end\n"
    "  if math.random() < 0.1 then s = s .. ' BC' end\n"
    "  return s\n"
    "end\n"
    "local fixed_ts = { '2026-01-02 03:04:05', '2026-01-02T03:04:05Z',\n"
    "  '2026-01-02 03:04:05 Z', '2026-01-02 03:04:05+02:00',\n"
    "  '2026-01-02T03:04:05.5-05:30', '2026-01-02 03:04:05+0530',\n"
    "  '2026-01-02 03:04:05+5', '2026-01-02 03:04:05 +02',\n"
    "  '2026-01-02 03:04:05-00:17:30', '2026-01-02 03:04:05+15:59',\n"
    "  '2026-01-02 03:04:05-15:59:59', '2026-01-01 00:30:00+01',\n"
    "  '2026-01-02 03:04', '2026-01-02', '2026-01-02 03:04:05.000001',\n"
    "  '2026-01-02 03:04:05.100', '2026-01-02 03:04:05+02 BC',\n"
    "  '0001-01-01 00:00:00+00 BC', '4713-01-01 00:00:00+15:59 BC',\n"
    "  '99999-12-31 23:59:59.999999', '10000-01-01 00:00:00',\n"
    "  '2024-02-29 12:00:00', '2000-02-29T00:00:00-15:59:59',\n"
    "  'infinity', '-infinity', 'Infinity', 'now', 'epoch',\n"
    "  '2026-01-02 03:04:05.1234567', '2026-01-02 24:00:00',\n"
    "  '2026-01-02 23:59:60', '2026-01-02 03:04:05.+00',\n"
    "  '2026-01-02 03:04:05 UTC', 'Jan 2 2026 03:04:05' }\n"
    "function ts_inputs()\n"
    "  local t = add({}, fixed_ts)\n"
    "  for _ = 1, 3000 do t[#t + 1] = rdatetime(true) end\n"
    "  t[#t + 1] = NULL\n"
    "  return t\n"
    "end\n"
    "function date_inputs()\n"
    "  local t = add({}, { '2026-01-02', '2024-02-29', '0001-02-29 BC',\n"
    "    '4713-01-01 BC', '99999-12-31', 'infinity', '-infinity',\n"
    "    'INFINITY', 'today', '2026-01-02 03:04:05', '2026-1-2' })\n"
    "  for _ = 1, 2000 do t[#t + 1] = rdatetime(false) end\n"
    "  return t\n"
    "end\n"
    "function float_inputs()\n"
    "  local t = add({}, { '0.1', '1e-45', '1.4e-45', '7e-46', '1e-46',\n"
    "    '3.4028235e38', '3.4028236e38', '3.5e38', '1e39', '-0', '+.5',\n"
    "    '5.', 'NaN', 'nan', 'Infinity', '-inf', '+Infinity', '1e400',\n"
    "    '1e-400', '4.9e-324', '2.4703282292062328e-324',\n"
    "    '2.4703282292062327e-324', '1.17549435e-38', '1.1754942e-38',\n"
    "    '0.000000000000000000000000000000000000000000001',\n"
    "    0.1, 1/3, 2^-149, 2^-126, 1e-320, -0.0, 1/0, -1/0, 0/0,\n"
    "    3.4028235677973366e38, 3.4028234663852886e38, 1e-50 })\n"
    "  for _ = 1, 1500 do\n"
    "    local m = tostring(math.random(0, 99999999))\n"
    "    if math.random() < 0.5 then m = m .. '.' .."
    " tostring(math.random(0, 999999)) end\n"
    "    if math.random() < 0.7 then m = m .. 'e' .. math.random(-330,"
    " 330) end\n"
    "    if math.random() < 0.3 then m = '-' .. m end\n"
    "    t[#t + 1] = m\n"
    "    t[#t + 1] = math.exp(math.random() * 1400 - 700) *"
    " (math.random() - 0.5)\n"
    "    t[#t + 1] = math.exp(math.random() * 200 - 100)\n"
    "    t[#t + 1] = 2 ^ math.random(-160, 130)\n"
    "  end\n"
    "  return t\n"
    "end\n"
    "function int_inputs()\n"
    "  local t = add({}, { '+5', '-0', '007', '00', ' 5', '5 ', '1e3',"
    " '',\n"
    "    '0x10', '9223372036854775807', '-9223372036854775808',\n"
    "    '9223372036854775808', '2147483647', '2147483648',"
    " '-2147483648',\n"
    "    '-2147483649', '32767', '32768', '-32768', '-32769',"
    " '4294967295',\n"
    "    '4294967296', '-1', 1.5, 2^53, 2^53 + 2, 2^63, -2^63, 0/0, 1/0,"
    " true,\n"
    "    -0.0, 65535, 4294967295 })\n"
    "  for _ = 1, 1500 do\n"
    "    local v = math.floor((math.random() - 0.5) * 2 ^ math.random(1,"
    " 64))\n"
    "    t[#t + 1] = v\n"
    "    t[#t + 1] = string.format('%.0f', v)\n"
    "  end\n"
    "  return t\n"
    "end\n"
    "function bool_inputs()\n"
    "  return { true, false, 't', 'f', 'true', 'false', 'TRUE', 'yes',"
    " 'no',\n"
    "    'on', 'off', '1', '0', 'y', 'n', 'Y', 'maybe', 'tr', 1, 0, '',"
    " NULL }\n"
    "end\n"
    "function uuid_inputs()\n"
    "  local t = add({}, { 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',\n"
    "    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',\n"
    "    '{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}',\n"
    "    'a0eebc999c0b4ef8bb6d6bb9bd380a11',\n"
    "    'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11',\n"
    "    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1',\n"
    "    '{a0eebc999c0b4ef8bb6d6bb9bd380a11', 'x', 5 })\n"
    "  for _ = 1, 300 do\n"
    "    local h = {}\n"
    "    for i = 1, 32 do h[i] = string.format('%x', math.random(0, 15))"
    " end\n"
    "    local s = table.concat(h)\n"
    "    if math.random() < 0.5 then s = s:upper() end\n"
    "    t[#t + 1] = s\n"
    "  end\n"
    "  return t\n"
    "end\n"
    "function text_inputs(max)\n"
    "  local t = add({}, { '', 1.5, 1e300, -0.0, 1/0, 0/0, true,\n"
    "    false, 'a\\0b', {}, 'héllo' })\n"
    "  if not max then t[#t + 1] = 2^53 + 2 end\n"
    "  for _ = 1, 1000 do\n"
    "    local s = rstr(12)\n"
    "    if not max or #s <= max then t[#t + 1] = s end\n"
    "  end\n"
    "  return t\n"
    "end\n"
    "function name_inputs()\n"
    "  local t = {}\n"
    "  for n = 0, 70 do t[#t + 1] = string.rep('n', n) end\n"
    "  t[#t + 1] = string.rep('n', 61) .. 'é'\n"
    "  t[#t + 1] = string.rep('n', 62) .. 'é'\n"
    "  return t\n"
    "end\n"
    "function bpchar_inputs()\n"
    "  return { 'a', 'abcde', 'ab   ', 'abcde   ', 'é', '日本語', '', ' ',"
    " 12, 1.5, true }\n"
    "end\n"
    "function json_inputs()\n"
    "  local t = add({}, { '\"x\"', '[1, 2]', '{\"a\":{\"b\":[]}}', ' 5 ',"
    " 'null',\n"
    "    5, 1.5, true, {}, { 1, NULL, 3 }, 'a\\0b' })\n"
    "  for _ = 1, 500 do t[#t + 1] = { rjson(3) } end\n"
    "  return t\n"
    "end\n"
    "function bytea_inputs()\n"
    "  local t = { '', bytes(0, 255), 5 }\n"
    "  for _ = 1, 300 do\n"
    "    local b = {}\n"
    "    for i = 1, math.random(0, 20) do b[i] = string.char("
    "math.random(0, 255)) end\n"
    "    t[#t + 1] = table.concat(b)\n"
    "  end\n"
    "  return t\n"
    "end\n";

/* The raw text COPY output of query. */
static int copy_out_raw(const char *query, weir_buf *out)
{
    char q[4096];
    PGresult *r;
    char *line;
    int len;

    out->len = 0;
    snprintf(q, sizeof q, "COPY (%s) TO STDOUT", query);
    r = PQexec(pg, q);
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
        fprintf(stderr, "copy out: %s", PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    while ((len = PQgetCopyData(pg, &line, 0)) > 0) {
        weir_buf_append(out, line, (size_t)len);
        PQfreemem(line);
    }
    return copy_result(NULL);
}

static int same_bytes(const weir_buf *a, const weir_buf *b)
{
    return a->len == b->len && (a->len == 0 ||
                                memcmp(a->data, b->data, a->len) == 0);
}

/* Print the first differing line of two COPY outputs. */
static void show_diff(const char *what, const weir_buf *a, const weir_buf *b)
{
    size_t i = 0, start = 0;

    while (i < a->len && i < b->len && a->data[i] == b->data[i]) {
        if (a->data[i] == '\n')
            start = i + 1;
        i++;
    }
    fprintf(stderr, "%s differ at byte %zu:\n  %.200s\n  %.200s\n", what, i,
            a->data ? a->data + start : "", b->data ? b->data + start : "");
}

#define SRC_COLS                                                            \
    "id int4, b bool, i2 int2, i4 int4, i8 int8, o oid, f4 float4, "       \
    "f8 float8, t text, vc varchar(40), bp char(5), nm name, by bytea, "    \
    "u uuid, d date, ts timestamp, tz timestamptz, j json, jb jsonb"
#define COLS_NO_J                                                           \
    "id, b, i2, i4, i8, o, f4, f8, t, vc, bp, nm, by, u, d, ts, tz, jb"

static const char *const tricky_rows =
    "INSERT INTO src (id) VALUES (1);"
    "INSERT INTO src VALUES "
    "(2, true, -32768, -2147483648, -9223372036854775808, 0, '-0', '-0', "
    "'', '', '', '', '\\x', '00000000-0000-0000-0000-000000000000', "
    "'-infinity', '-infinity', '-infinity', '[null]', '[null]'),"
    "(3, false, 32767, 2147483647, 9223372036854775807, 4294967295, 'NaN',"
    " 'NaN', E'h\\u00e9llo\\ttab\\\\back\\nnl', 'x', 'ab', 'pg_class', "
    "'\\x00ff10', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'infinity', "
    "'infinity', 'infinity', '{\"a\":[1,2,{\"b\":null}]}', "
    "'{\"a\":[1,2,{\"b\":null}]}'),"
    "(4, null, 0, 0, 9007199254740993, 1, 'Infinity', 'Infinity', "
    "'日本', 'abc  ', 'abcde', repeat('n', 63), "
    "decode(repeat('00ff', 10), 'hex'), null, '4714-11-24 BC', "
    "'4714-11-24 00:00:00 BC', '294276-12-31 23:59:59.999999+00', "
    "'[\"str\\u00e9\"]', '[\"str\\u00e9\"]'),"
    "(5, null, -1, -1, -9007199254740993, 2, '-Infinity', '-Infinity', "
    "' ', null, ' ', '', null, null, '5874897-12-31', "
    "'294276-12-31 23:59:59.999999', '4714-11-24 00:00:00+00 BC', '[1]', "
    "'[1]'),"
    "(6, null, null, null, 9007199254740992, null, '1e-45', '4.9e-324', "
    "null, null, null, null, null, null, '2000-02-29', "
    "'2000-02-29 12:00:00.5', '1970-01-01 00:00:00.000001+00', "
    "'  {\"x\" : 1 , \"x\": 2}  ', '{\"b\":2,\"a\":1,\"a\":3}'),"
    "(7, null, null, null, -9007199254740992, null, '3.4028235e38', "
    "'1.7976931348623157e308', null, null, null, null, null, null, "
    "'1900-03-01', '1899-12-31 23:59:59.999999', "
    "'1969-12-31 23:59:59.999999+00', '1e300', '[1.5e300, -0, 0.1]'),"
    "(8, null, null, null, null, null, '1.1', '0.1', null, null, null, "
    "null, null, null, '0001-01-01', '0001-12-31 23:59:59.999999 BC', "
    "'9999-12-31 23:59:59.999999+00', '{\"k\":\"\\ud83d\\ude00\"}', "
    "'{\"deep\":{\"deeper\":[true,false,null]}}'),"
    "(9, null, null, null, null, null, '1.17549435e-38', "
    "'2.2250738585072014e-308', null, null, null, null, null, null, "
    "'0001-12-31 BC', '2000-01-01 00:00:00.000001', "
    "'1999-12-31 23:59:59.999999+00', '{}', '{}'),"
    "(10, null, null, null, null, null, '-0', '-1e-320', null, null, "
    "null, null, null, null, '10000-01-01', '10000-01-01 00:00:00', "
    "'0001-01-01 00:00:00+00 BC', '[\"\"]', '[\"\"]')";

/* a printf format: the last row's id */
static const char *const random_rows =
    "INSERT INTO src SELECT g, random() < 0.5, "
    "(random() * 65535 - 32768)::int2, "
    "(random() * 4294967295 - 2147483648)::int4, "
    "((random() - 0.5) * 1.8e19)::int8, (random() * 4294967295)::int8::oid,"
    " CASE WHEN g %% 3 = 0 THEN power(2::float8, floor(random() * 277) - "
    "149)::float4 ELSE (exp(random() * 170 - 85) * sign(random() - 0.5))"
    "::float4 END, "
    "CASE WHEN g %% 3 = 0 THEN power(2::float8, floor(random() * 2098) - "
    "1074) ELSE exp(random() * 1400 - 700) * (random() - 0.5) END, "
    "md5(g::text) || E'\\t\\\\' || chr(233), left(md5(g::text), g %% 41), "
    "left(md5(g::text), g %% 6), md5(g::text), decode(md5(g::text), 'hex'),"
    " md5(g::text)::uuid, "
    /* a quarter over the whole range, the rest in 4713 BC .. 99999 AD */
    "CASE WHEN g %% 4 = 0 THEN '4714-11-24 BC'::date + (random() * "
    "2147483000)::int ELSE '4713-01-01 BC'::date + (random() * 38245271)"
    "::int END, "
    /* epoch seconds: 4714-11-24 BC up to 294277-01-01, 4713 BC up to
     * 100000-01-01, and 1653 to 2286 */
    "CASE WHEN g %% 4 = 0 THEN to_timestamp(-210866803200 + random() * "
    "9435184819199) AT TIME ZONE 'UTC' WHEN g %% 4 = 1 THEN "
    "to_timestamp(-210863520000 + random() * 3304391500799) AT TIME ZONE "
    "'UTC' ELSE to_timestamp((random() - 0.5) * 2e10) AT TIME ZONE 'UTC' "
    "END, "
    "CASE WHEN g %% 4 = 0 THEN to_timestamp(-210866803200 + random() * "
    "9435184819199) WHEN g %% 4 = 1 THEN to_timestamp(-210863520000 + "
    "random() * 3304391500799) ELSE to_timestamp((random() - 0.5) * 2e10) "
    "+ random() * interval '1 second' END, "
    "json_build_object('g', g, 'r', random(), 's', md5(g::text)), "
    "jsonb_build_array(g, random(), md5(g::text), null, true) "
    "FROM generate_series(100, %d) g";

static const uint32_t src_oids[] = {INT4,   BOOL,   INT2,  INT4, INT8,
                                    OID,    FLOAT4, FLOAT8, TEXT, VARCHAR,
                                    BPCHAR, NAME,   BYTEA, UUID, DATE,
                                    TIMESTAMP, TIMESTAMPTZ, JSON, JSONB};
#define NSRC (int)(sizeof src_oids / sizeof src_oids[0])

/* COPY TO in both formats decodes to the same rows; those rows COPY FROM
 * in both formats store the same values. */
static void server_copy(void)
{
    int top = lua_gettop(L), names, ta, ba, nt, nb, bad = 0, ok, nok = 0;
    weir_buf a = {0}, b = {0}, c = {0};
    PGresult *r;
    char state[6], q[4096];
    const char *env = getenv("WEIR_PGBINARY_ROWS");
    int nrandom = env != NULL ? atoi(env) : 5000;

    CHECK(pg_cmd("CREATE TEMP TABLE src (" SRC_COLS ")") == 0);
    CHECK(pg_cmd(tricky_rows) == 0);
    snprintf(q, sizeof q, random_rows, 99 + nrandom);
    CHECK(pg_cmd(q) == 0);
    CHECK(pg_cmd("CREATE TEMP TABLE dst_bin (LIKE src)") == 0);
    CHECK(pg_cmd("CREATE TEMP TABLE dst_txt (LIKE src)") == 0);

    r = PQexec(pg, "SELECT * FROM src LIMIT 0");
    CHECK_EQ_INT(PQnfields(r), NSRC);
    lua_createtable(L, NSRC, 0);
    for (int i = 0; i < PQnfields(r) && i < NSRC; i++) {
        CHECK_EQ_INT(PQftype(r, i), src_oids[i]);
        lua_pushstring(L, PQfname(r, i));
        lua_rawseti(L, -2, i + 1);
    }
    PQclear(r);
    names = lua_gettop(L);

    nt = copy_out("SELECT * FROM src ORDER BY id", 0, NSRC, src_oids, names);
    ta = lua_gettop(L);
    nb = copy_out("SELECT * FROM src ORDER BY id", 1, NSRC, src_oids, names);
    ba = lua_gettop(L);
    CHECK(nt == nrandom + 10);
    CHECK_EQ_INT(nb, nt);
    for (int i = 1; i <= nt && i <= nb; i++) {
        lua_rawgeti(L, ta, i);
        lua_rawgeti(L, ba, i);
        if (!deepeq_at(-2, -1) && bad++ < 5) {
            fprintf(stderr, "row %d differs:\n  text   %s\n", i,
                    dump_at(-2));
            fprintf(stderr, "  binary %s\n", dump_at(-1));
        }
        lua_pop(L, 2);
    }
    CHECK_EQ_INT(bad, 0);
    printf("server: %d rows, COPY TO binary == text: %s\n", nb,
           bad ? "NO" : "yes");

    /* the decoded rows back in, both ways */
    CHECK(pg_cmd("BEGIN") == 0);
    CHECK_EQ_INT(copy_in("dst_bin", IN_SWITCH, ba, NSRC, src_oids, names,
                         state),
                 0);
    CHECK(pg_cmd("COMMIT") == 0);
    /* rows 4 and 5 have dates the encoder leaves to text */
    CHECK_EQ_INT(copy_switches, 1);
    CHECK_EQ_INT(copy_in("dst_txt", IN_TEXT, ba, NSRC, src_oids, names,
                         state),
                 0);
    CHECK(copy_out_raw("SELECT " COLS_NO_J " FROM src ORDER BY id", &a) ==
          0);
    CHECK(copy_out_raw("SELECT " COLS_NO_J " FROM dst_bin ORDER BY id",
                       &b) == 0);
    CHECK(a.len > 100000);
    if (same_bytes(&a, &b))
        check_passed++;
    else
        check_failed++, show_diff("src and dst_bin", &a, &b);
    CHECK(copy_out_raw("SELECT * FROM dst_bin ORDER BY id", &b) == 0);
    CHECK(copy_out_raw("SELECT * FROM dst_txt ORDER BY id", &c) == 0);
    if (same_bytes(&b, &c))
        check_passed++;
    else
        check_failed++, show_diff("dst_bin and dst_txt", &b, &c);
    printf("server: COPY FROM binary (switching to text %d time(s)) == "
           "text == source: %s\n", copy_switches,
           same_bytes(&b, &c) ? "yes" : "NO");

    /* the rows that encode in binary, all in binary */
    lua_newtable(L);
    ok = lua_gettop(L);
    for (int i = 1; i <= nb; i++) {
        lua_rawgeti(L, ba, i);
        c.len = 0;
        if (weir_pgbinary_encode_row(L, -1, NSRC, names, src_oids, &c, err,
                                     sizeof err) == WEIR_OK)
            lua_rawseti(L, ok, ++nok);
        else
            lua_pop(L, 1);
    }
    CHECK(nok > nb / 2);
    CHECK(pg_cmd("CREATE TEMP TABLE dst_bin2 (LIKE src); "
                 "CREATE TEMP TABLE dst_txt2 (LIKE src)") == 0);
    CHECK_EQ_INT(copy_in("dst_bin2", IN_BINARY, ok, NSRC, src_oids, names,
                         state),
                 0);
    CHECK_EQ_INT(copy_in("dst_txt2", IN_TEXT, ok, NSRC, src_oids, names,
                         state),
                 0);
    CHECK(copy_out_raw("SELECT * FROM dst_bin2 ORDER BY id", &b) == 0);
    CHECK(copy_out_raw("SELECT * FROM dst_txt2 ORDER BY id", &c) == 0);
    if (same_bytes(&b, &c))
        check_passed++;
    else
        check_failed++, show_diff("dst_bin2 and dst_txt2", &b, &c);
    snprintf(q, sizeof q, "SELECT " COLS_NO_J " FROM src WHERE id IN "
             "(SELECT id FROM dst_bin2) ORDER BY id");
    CHECK(copy_out_raw(q, &a) == 0);
    CHECK(copy_out_raw("SELECT " COLS_NO_J " FROM dst_bin2 ORDER BY id", &b)
          == 0);
    if (same_bytes(&a, &b))
        check_passed++;
    else
        check_failed++, show_diff("src and dst_bin2", &a, &b);
    printf("server: %d rows all in binary COPY FROM == text == source: %s\n",
           nok, same_bytes(&a, &b) ? "yes" : "NO");
    weir_buf_free(&a);
    weir_buf_free(&b);
    weir_buf_free(&c);
    lua_settop(L, top);
}

/* float4 is where we emulate the server's printing (Ryu's shortest
 * digits): random bit patterns of every exponent, denormals, and every
 * power of two with its neighbours, stored with binary COPY, then read
 * back as text and as binary: the same Lua numbers. In chunks. */
static void server_float4(void)
{
    static const uint32_t oids[2] = {INT4, FLOAT4};
    const char *env = getenv("WEIR_PGBINARY_FLOATS");
    int total = env != NULL ? atoi(env) : 200000, chunk = 100000, done = 0;
    int top = lua_gettop(L), names, bad = 0;
    char state[6];

    push_expr("{ 'id', 'v' }");
    names = lua_gettop(L);
    CHECK(pg_cmd("CREATE TEMP TABLE f4 (id int4, v float4)") == 0);
    for (int first = 1; done < total || first; first = 0) {
        int rows, n = 0, ta, ba, nt, nb;

        lua_newtable(L);
        rows = lua_gettop(L);
        if (first) {
            /* powers of two and the floats around them */
            for (int e = -149; e <= 127; e++) {
                float p2 = ldexpf(1.0f, e);
                float lo = p2, hi = p2;

                for (int k = 0; k < 3; k++) {
                    lo = nextafterf(lo, 0);
                    hi = nextafterf(hi, INFINITY);
                }
                for (float f = lo; f <= hi && isfinite(f);
                     f = nextafterf(f, INFINITY)) {
                    lua_createtable(L, 0, 2);
                    lua_pushnumber(L, ++n);
                    lua_setfield(L, -2, "id");
                    lua_pushnumber(L, (double)f);
                    lua_setfield(L, -2, "v");
                    lua_rawseti(L, rows, n);
                }
            }
        }
        for (int i = 0; i < chunk && done < total; i++, done++) {
            uint32_t u = (uint32_t)rnd();
            float f;

            memcpy(&f, &u, 4);
            lua_createtable(L, 0, 2);
            lua_pushnumber(L, ++n);
            lua_setfield(L, -2, "id");
            lua_pushnumber(L, (double)f);
            lua_setfield(L, -2, "v");
            lua_rawseti(L, rows, n);
        }
        CHECK(pg_cmd("TRUNCATE f4") == 0);
        CHECK_EQ_INT(copy_in("f4", IN_BINARY, rows, 2, oids, names, state),
                     0);
        nt = copy_out("SELECT * FROM f4 ORDER BY id", 0, 2, oids, names);
        ta = lua_gettop(L);
        nb = copy_out("SELECT * FROM f4 ORDER BY id", 1, 2, oids, names);
        ba = lua_gettop(L);
        CHECK_EQ_INT(nt, n);
        CHECK_EQ_INT(nb, n);
        for (int i = 1; i <= nt && i <= nb; i++) {
            lua_rawgeti(L, ta, i);
            lua_rawgeti(L, ba, i);
            if (!deepeq_at(-2, -1) && bad++ < 10) {
                lua_getfield(L, -2, "v");
                lua_getfield(L, -2, "v");
                fprintf(stderr, "float4 %.9g: text %.17g, binary %.17g\n",
                        (double)(float)lua_tonumber(L, -2),
                        lua_tonumber(L, -2), lua_tonumber(L, -1));
                lua_pop(L, 2);
            }
            lua_pop(L, 2);
        }
        lua_settop(L, names);
    }
    CHECK_EQ_INT(bad, 0);
    printf("server: %d random float4 (and powers of two): COPY TO binary "
           "== text: %s\n", total, bad ? "NO" : "yes");
    lua_settop(L, top);
}

/* Lua inputs of every kind: what the binary encoder takes stores the same
 * value as the text codec's line; what it refuses, the text codec refuses
 * too; what it leaves to text (WEIR_EAGAIN) the text codec takes. */
static void server_inputs(void)
{
    static const struct {
        const char *type, *gen;
        uint32_t oid;
    } kinds[] = {
        {"timestamptz", "ts_inputs()", TIMESTAMPTZ},
        {"timestamp", "ts_inputs()", TIMESTAMP},
        {"date", "date_inputs()", DATE},
        {"float4", "float_inputs()", FLOAT4},
        {"float8", "float_inputs()", FLOAT8},
        {"int2", "int_inputs()", INT2},
        {"int4", "int_inputs()", INT4},
        {"int8", "int_inputs()", INT8},
        {"oid", "int_inputs()", OID},
        {"bool", "bool_inputs()", BOOL},
        {"uuid", "uuid_inputs()", UUID},
        {"text", "text_inputs()", TEXT},
        {"varchar(12)", "text_inputs(12)", VARCHAR},
        {"char(5)", "bpchar_inputs()", BPCHAR},
        {"name", "name_inputs()", NAME},
        {"json", "json_inputs()", JSON},
        {"jsonb", "json_inputs()", JSONB},
        {"bytea", "bytea_inputs()", BYTEA},
    };
    int top = lua_gettop(L), names;
    weir_buf scratch = {0}, a = {0}, b = {0};
    char q[256], state[6];

    push_expr("{ 'id', 'v' }");
    names = lua_gettop(L);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        uint32_t oids[2] = {INT4, kinds[k].oid};
        int vals, acc, nv, nacc = 0, nfall = 0, nref = 0;

        push_expr(kinds[k].gen);
        vals = lua_gettop(L);
        lua_newtable(L);
        acc = lua_gettop(L);
        nv = (int)lua_objlen(L, vals);
        for (int i = 1; i <= nv; i++) {
            int rb, rt;

            lua_createtable(L, 0, 2);
            lua_pushnumber(L, i);
            lua_setfield(L, -2, "id");
            lua_rawgeti(L, vals, i);
            lua_setfield(L, -2, "v");
            scratch.len = 0;
            rb = weir_pgbinary_encode_row(L, -1, 2, names, oids, &scratch,
                                          err, sizeof err);
            scratch.len = 0;
            rt = weir_pgcodec_copy_encode_row(L, -1, 2, names, oids,
                                              &scratch, err, sizeof err);
            if (rb == WEIR_OK && rt == WEIR_OK) {
                lua_rawseti(L, acc, ++nacc);
                continue;
            }
            if ((rb == WEIR_EAGAIN && rt == WEIR_OK) ||
                (rb == WEIR_EINVAL && rt == WEIR_EINVAL)) {
                rb == WEIR_EAGAIN ? nfall++ : nref++;
            } else {
                check_failed++;
                lua_rawgeti(L, vals, i);
                fprintf(stderr, "%s %s: binary rc %d, text rc %d\n",
                        kinds[k].type, dump_at(-1), rb, rt);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        snprintf(q, sizeof q, "CREATE TEMP TABLE in_bin (id int4, v %s); "
                 "CREATE TEMP TABLE in_txt (id int4, v %s)", kinds[k].type,
                 kinds[k].type);
        CHECK(pg_cmd(q) == 0);
        CHECK_EQ_INT(copy_in("in_bin", IN_BINARY, acc, 2, oids, names,
                             state),
                     0);
        CHECK_EQ_INT(copy_in("in_txt", IN_TEXT, acc, 2, oids, names, state),
                     0);
        CHECK(copy_out_raw("SELECT * FROM in_bin ORDER BY id", &a) == 0);
        CHECK(copy_out_raw("SELECT * FROM in_txt ORDER BY id", &b) == 0);
        if (same_bytes(&a, &b))
            check_passed++;
        else
            check_failed++, show_diff(kinds[k].type, &b, &a);
        CHECK(pg_cmd("DROP TABLE in_bin, in_txt") == 0);
        printf("server inputs %-12s %5d binary, %4d left to text, %4d "
               "refused by both: %s\n",
               kinds[k].type, nacc, nfall, nref,
               same_bytes(&a, &b) ? "same values" : "DIFFERENT");
        lua_settop(L, names);
    }
    weir_buf_free(&scratch);
    weir_buf_free(&a);
    weir_buf_free(&b);
    lua_settop(L, top);
}

/* Values the server refuses: binary COPY fails with the same SQLSTATE as
 * text COPY (typmods, encodings, JSON syntax are checked by recv too). */
static void server_refusals(void)
{
    static const struct {
        const char *type, *value;
    } cases[] = {
        {"varchar(3)", "'abcd'"},   {"varchar(3)", "'abc   '"},
        {"char(3)", "'abcd'"},      {"char(3)", "'ab'"},
        {"char(3)", "'abc    '"},   {"text", "'\\255\\254'"},
        {"json", "'{\"a\":'"},      {"jsonb", "'{\"a\":'"},
        {"jsonb", "'\"\\\\u0000\"'"}, {"json", "'\"\\\\u0000\"'"},
        {"name", "string.rep('é', 31) .. 'x'"},
        {"varchar(2)", "'日本語'"},  {"varchar(3)", "'日本語'"},
    };
    uint32_t oids[2] = {INT4, 0};
    int top = lua_gettop(L), names, rows;
    weir_buf a = {0}, b = {0};
    char q[256], sb[6], st[6];

    push_expr("{ 'id', 'v' }");
    names = lua_gettop(L);
    quiet = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char expr[256];
        int rb, rt;

        snprintf(expr, sizeof expr, "{ { id = 1, v = %s } }",
                 cases[i].value);
        push_expr(expr);
        rows = lua_gettop(L);
        oids[1] = weir_pgcodec_type_oid(cases[i].type);
        if (oids[1] == 0) /* varchar(3) -> varchar */
            oids[1] = strncmp(cases[i].type, "char", 4) == 0 ? BPCHAR
                                                              : VARCHAR;
        snprintf(q, sizeof q, "CREATE TEMP TABLE r_bin (id int4, v %s); "
                 "CREATE TEMP TABLE r_txt (id int4, v %s)", cases[i].type,
                 cases[i].type);
        CHECK(pg_cmd(q) == 0);
        sb[0] = st[0] = '\0';
        rb = copy_in("r_bin", IN_BINARY, rows, 2, oids, names, sb);
        rt = copy_in("r_txt", IN_TEXT, rows, 2, oids, names, st);
        CHECK_EQ_INT(rb, rt);
        CHECK_EQ_STR(sb, st);
        if (rb == 0 && rt == 0) {
            CHECK(copy_out_raw("SELECT * FROM r_bin", &a) == 0);
            CHECK(copy_out_raw("SELECT * FROM r_txt", &b) == 0);
            CHECK(same_bytes(&a, &b));
        }
        printf("server refusal %-11s %-28s binary %s, text %s\n",
               cases[i].type, cases[i].value, rb == 0 ? "ok" : sb,
               rt == 0 ? "ok" : st);
        CHECK(pg_cmd("DROP TABLE r_bin, r_txt") == 0);
        lua_settop(L, names);
    }
    quiet = 0;
    weir_buf_free(&a);
    weir_buf_free(&b);
    lua_settop(L, top);
}

/* The row shape tests/bench/bench_pgbinary.c times (int8, text, float8,
 * timestamptz, bool): COPY TO and COPY FROM work in both formats and
 * store the same rows. */
static void server_bench_shape(void)
{
    const uint32_t *oids = shape_oids;
    const int n = 5000;
    int top = lua_gettop(L), names, rows;
    char state[6];
    PGresult *r;

    push_expr(SHAPE_NAMES);
    names = lua_gettop(L);
    CHECK(shape_tables(n) == 0);
    for (int binary = 0; binary < 2; binary++) {
        CHECK_EQ_INT(copy_out("SELECT * FROM tm", binary, 5, oids, names), n);
        rows = lua_gettop(L);
        CHECK(pg_cmd("TRUNCATE tm2") == 0);
        CHECK_EQ_INT(copy_in("tm2", binary ? IN_BINARY : IN_TEXT, rows, 5,
                             oids, names, state),
                     0);
        r = PQexec(pg, "SELECT count(*) FROM (TABLE tm EXCEPT ALL "
                       "TABLE tm2) d");
        CHECK(PQresultStatus(r) == PGRES_TUPLES_OK &&
              strcmp(PQgetvalue(r, 0, 0), "0") == 0);
        PQclear(r);
        lua_settop(L, names);
    }
    CHECK(pg_cmd("DROP TABLE tm, tm2") == 0);
    lua_settop(L, top);
}

int main(void)
{
    int rc;

    if (pgkit_open() != 0)
        return 2;
    rc = pgkit_connect();
    if (rc != 0) {
        pgkit_close();
        return rc == PGKIT_SKIPPED ? rc : 2;
    }
    if (luaL_dostring(L, lua_server_helpers) != 0) {
        fprintf(stderr, "server helpers: %s\n", lua_tostring(L, -1));
        pgkit_disconnect();
        pgkit_close();
        return 2;
    }
    lua_settop(L, NAMES1);
    server_copy();
    server_float4();
    server_inputs();
    server_refusals();
    server_bench_shape();
    CHECK_EQ_INT(lua_gettop(L), NAMES1);
    pgkit_disconnect();
    pgkit_close();
    return CHECK_DONE();
}
