/*
 * test_sercodec.c - unit tests for the C codec of the weir._ser format
 * (runtime/sercodec.c): every plain value kind round-trips, byte for byte
 * the bytes of the Lua reference encoder (lua/weir/_ser.lua); what the C
 * encoder declines (functions, userdata, metatables, shared tables,
 * cycles, deep nesting, odd keys) is declined; and the decoder, which
 * reads what a worker sent, refuses hostile input cleanly: truncated at
 * every length, bad tags, oversize and overflowing lengths, bad numbers
 * and references, nil and NaN keys, deep nesting, and random mutations.
 * Hostile bytes are decoded from a heap block of exactly their length,
 * so the ASan pass of the suite catches any read past the end.
 *
 * Relies on check.h, a trusted state (weir_state_new_trusted) for the Lua
 * reference codec, and the four functions of weir/ser.h.
 */
#include "weir/lstate.h"
#include "weir/ser.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static lua_State *L;

/* Run a Lua check: the chunk returns true, or false and why. */
static void lua_check_at(const char *code, int line)
{
    int top = lua_gettop(L);

    if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 2, 0) != 0) {
        check_failed++;
        fprintf(stderr, "%s:%d: lua error: %s\n", __FILE__, line,
                lua_tostring(L, -1));
    } else if (lua_toboolean(L, -2)) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "%s:%d: lua check failed: %s\n", __FILE__, line,
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no reason)");
    }
    lua_settop(L, top);
}
#define LUA_CHECK(code) lua_check_at(code, __LINE__)

/* Call f with the arguments on the stack (nargs of them) and push all it
 * returned; LUA_MULTRET. */
static int call(lua_CFunction f, int nargs)
{
    lua_pushcfunction(L, f);
    lua_insert(L, -nargs - 1);
    return lua_pcall(L, nargs, LUA_MULTRET, 0);
}

/* decode_exact(s [, array_mt]): weir_ser_decode_ptr over a heap copy of
 * exactly #s bytes (nothing readable after it), freed after the call. */
static int decode_exact(lua_State *S)
{
    size_t n;
    const char *s = luaL_checklstring(S, 1, &n);
    char *copy = malloc(n ? n : 1);
    int base, rc;

    if (copy == NULL)
        return luaL_error(S, "out of memory");
    memcpy(copy, s, n);
    lua_settop(S, 2);
    base = lua_gettop(S);
    lua_pushcfunction(S, weir_ser_decode_ptr);
    lua_pushlightuserdata(S, copy);
    lua_pushinteger(S, (lua_Integer)n);
    lua_pushvalue(S, 2);
    rc = lua_pcall(S, 3, LUA_MULTRET, 0);
    free(copy);
    if (rc != 0)
        return lua_error(S);
    return lua_gettop(S) - base;
}

/* decode_ud(ud, n [, array_mt]): weir_ser_decode_ptr over the bytes of a
 * full userdata, as the executor reads what ser_encode_ud made. */
static int decode_ud(lua_State *S)
{
    void *p = lua_touserdata(S, 1);

    luaL_checktype(S, 1, LUA_TUSERDATA);
    lua_settop(S, 3);
    lua_pushlightuserdata(S, p);
    lua_replace(S, 1);
    return weir_ser_decode_ptr(S);
}

/* Globals for the Lua checks: the C codec, the Lua reference (forced with
 * an empty builtins table, which the C codec leaves to Lua), deepeq. */
static const char *prelude =
    "local native = require('weir._native')\n"
    "local ser = require('weir._ser')\n"
    "enc, enc_ud, dec = native.ser_encode, native.ser_encode_ud,"
    " native.ser_decode\n"
    "function ref_enc(v) return ser.encode(v, { builtins = {} }) end\n"
    "function ref_dec(s, mt) return ser.decode(s,"
    " { builtins = {}, array_mt = mt }) end\n"
    "function deepeq(a, b)\n"
    "  if type(a) == 'number' and type(b) == 'number' then\n"
    "    if a ~= a then return b ~= b end\n"
    "    return a == b and 1 / a == 1 / b end\n"
    "  if a == b then return true end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then return false end\n"
    "  for k, v in pairs(a) do if not deepeq(v, b[k]) then return false end"
    " end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function nested(n, leaf)\n"
    "  local v = leaf\n"
    "  for _ = 1, n do v = { v } end\n"
    "  return v\n"
    "end\n"
    "local all = {}\n"
    "for i = 0, 255 do all[#all + 1] = string.char(i) end\n"
    "all = table.concat(all)\n"
    "values = {\n"
    "  true, false, 0, -0.0, 1, -1, 42, 2 ^ 53, 2 ^ 53 + 2, 1e14 - 1,\n"
    "  1e14, -1e14, -(1e14 - 1), 0.1, 1 / 3, -2.5, 1e-300,\n"
    "  1.7976931348623157e308, 2.2250738585072014e-308, 4.9e-324,\n"
    "  math.huge, -math.huge, 0 / 0,\n"
    "  '', 'a', 'a\\0b', all, string.rep(all, 4096), 'e', 't1;', 's9:',\n"
    "  {}, { 1, 2, 3 }, { 'x' }, { a = 1 }, { [1] = 'a', [3] = 'c' },\n"
    "  { [true] = 'yes', [false] = 'no' }, { [0.5] = 'half', [-1] = 'm',"
    " [0] = 'z' },\n"
    "  { [all] = all, [''] = '' }, { 1, 2, k = 'v', { nested = { 1 } } },\n"
    "  { n = 0 / 0, i = math.huge, z = -0.0, f = false, t = true },\n"
    "  nested(99, 'deep'),\n"
    "}\n"
    /* every kind in one value, for the truncation checks: but the big
     * string and the 99 deep tables (the last value); tables only once,
     * or they would be shared */
    "everything = { list = {}, map = {}, deep = nested(90, 'deep') }\n"
    "for i = 1, #values - 1 do\n"
    "  local v = values[i]\n"
    "  if type(v) ~= 'string' or #v < 1000 then\n"
    "    everything.list[#everything.list + 1] = v\n"
    "    if type(v) ~= 'table' then everything.map['k' .. i] = v end\n"
    "  end\n"
    "end\n";

static void test_round_trips(void)
{
    /* nil is a value too, and is not in the list */
    LUA_CHECK("local s = enc(nil)\n"
              "if s ~= 'n' then return false, tostring(s) end\n"
              "local v, pos = dec(s)\n"
              "return v == nil and pos == 2");
    /* every value: the reference's bytes, and back the same by each path */
    LUA_CHECK("for i, v in ipairs(values) do\n"
              "  local s = enc(v)\n"
              "  if s == nil then return false, 'declined value ' .. i end\n"
              "  if s ~= ref_enc(v) then\n"
              "    return false, 'value ' .. i .. ': ' .. s:sub(1, 60) .. "
              "' ~= ' .. ref_enc(v):sub(1, 60) end\n"
              "  local a, pos = dec(s)\n"
              "  if not deepeq(a, v) or pos ~= #s + 1 then\n"
              "    return false, 'decode of value ' .. i end\n"
              "  local b, pos2 = decode_exact(s)\n"
              "  if not deepeq(b, v) or pos2 ~= #s + 1 then\n"
              "    return false, 'decode_ptr of value ' .. i end\n"
              "  if not deepeq(ref_dec(s), v) then\n"
              "    return false, 'reference decode of value ' .. i end\n"
              "  local ud, n = enc_ud(v)\n"
              "  if type(ud) ~= 'userdata' or n ~= #s then\n"
              "    return false, 'encode_ud of value ' .. i end\n"
              "  local c, pos3 = decode_ud(ud, n)\n"
              "  if not deepeq(c, v) or pos3 ~= #s + 1 then\n"
              "    return false, 'decode of encode_ud of value ' .. i end\n"
              "end\n"
              "return true");
    /* a big table too, both forms */
    LUA_CHECK("local t = {}\n"
              "for i = 1, 20000 do t[i] = { id = i, name = 'row ' .. i,"
              " score = i / 7 } end\n"
              "local s = enc(t)\n"
              "return s == ref_enc(t) and deepeq(dec(s), t)");
    /* a decoded value starts where it is told and says where it ends */
    LUA_CHECK("local s = enc('ab') .. enc(7) .. enc({ 1 })\n"
              "local a, p = dec(s)\n"
              "local b, q = dec(s, p)\n"
              "local c, r = dec(s, q)\n"
              "return a == 'ab' and b == 7 and deepeq(c, { 1 })"
              " and r == #s + 1");
}

static void test_array_mt(void)
{
    /* sequences, and only sequences, get array_mt, at every level */
    LUA_CHECK("local mt = {}\n"
              "local s = enc({ list = { 1, { 2 } }, map = { k = { 3 } },"
              " holes = { [1] = 1, [3] = 3 }, empty = {} })\n"
              "for _, v in ipairs({ (dec(s, 1, mt)), (decode_exact(s, mt)) }) do\n"
              "  if getmetatable(v.list) ~= mt or"
              " getmetatable(v.list[2]) ~= mt or"
              " getmetatable(v.map.k) ~= mt then\n"
              "    return false, 'a sequence without array_mt' end\n"
              "  if getmetatable(v) or getmetatable(v.map) or"
              " getmetatable(v.holes) or getmetatable(v.empty) then\n"
              "    return false, 'array_mt on a table that is no sequence'"
              " end\n"
              "end\n"
              "return getmetatable(dec(s).list) == nil");
}

static void test_encoder_declines(void)
{
    /* what only the Lua encoder does, or nobody: nil, never an error */
    LUA_CHECK("local shared = { 1 }\n"
              "local cyc = {} cyc.self = cyc\n"
              "local declined = {\n"
              "  print, function() end, coroutine.create(print), io.stdout,\n"
              "  setmetatable({}, {}), { a = shared, b = shared },\n"
              "  { shared, shared }, cyc, { [{}] = 1 }, { [print] = 1 },\n"
              "  { f = print }, nested(101, 1), nested(200, 1),\n"
              "}\n"
              "for i, v in ipairs(declined) do\n"
              "  if enc(v) ~= nil then return false, 'encoded value ' .. i end\n"
              "  if enc_ud(v) ~= nil then return false, 'encode_ud value '"
              " .. i end\n"
              "end\n"
              "return enc(nested(100, 1)) ~= nil");
    /* the reference writes shared tables and cycles as references, and
     * the C decoder keeps them: one table, reached twice */
    LUA_CHECK("local shared = { 1 }\n"
              "local cyc = { name = 'c', list = { 'x' } }\n"
              "cyc.self = cyc cyc.list[2] = cyc\n"
              "local v = dec(assert(ref_enc({ a = shared, b = shared })))\n"
              "if v.a ~= v.b or v.a[1] ~= 1 then return false, 'shared' end\n"
              "local c = decode_exact(assert(ref_enc(cyc)))\n"
              "return c.self == c and c.list[2] == c and c.name == 'c'");
}

/* Each string must be refused: nil and "serialised value: <why> at N",
 * or false where the Lua decoder is to judge. */
static const struct {
    const char *in;
    size_t len; /* 0: strlen(in) */
    const char *why; /* NULL: false (the Lua decoder's) */
} hostile[] = {
    {"", 0, "truncated"},
    {"x", 0, "bad tag"},
    {"\0", 1, "bad tag"},
    {"\xff", 0, "bad tag"},
    {"e", 0, "bad tag"},
    {"A", 0, "bad tag"},
    {"t1;s1:ae", 0, "bad tag"}, /* a key without its value */
    {"t1;xe", 0, "bad tag"},
    {"d", 0, "truncated"},
    {"d1", 0, "truncated"},
    {"d;", 0, "bad number"},
    {"dabc;", 0, "bad number"},
    {"d1x;", 0, "bad number"},
    {"d0000000000000000000000000000000000000000000000000000000000000000001;",
     0, "bad number"},
    {"s", 0, "truncated"},
    {"s1", 0, "truncated"},
    {"s1:", 0, "truncated"},
    {"s5:abc", 0, "truncated"},
    {"s:", 0, "bad number"},
    {"s-1:a", 0, "bad length"},
    {"s1.5:ab", 0, "bad length"},
    {"snan:a", 0, "bad length"},
    {"sinf:a", 0, "bad length"},
    {"s1e999:a", 0, "bad length"},
    {"s2147483648:a", 0, "bad length"},
    {"s4294967297:a", 0, "bad length"},
    {"s18446744073709551617:a", 0, "bad length"},
    {"s2147483647:abc", 0, "truncated"},
    {"s0x7fffffff:a", 0, "truncated"},
    {"t", 0, "truncated"},
    {"t1", 0, "truncated"},
    {"t1;", 0, "truncated"},
    {"t1;A", 0, "truncated"},
    {"t1;s1:a", 0, "truncated"},
    {"t1;s1:aT", 0, "truncated"},
    {"t-1;e", 0, "bad length"},
    {"t4294967296;e", 0, "bad length"},
    {"t1;nTe", 0, "bad table key"},
    {"t1;NTe", 0, "bad table key"},
    {"r", 0, "truncated"},
    {"r1;", 0, "bad reference"},
    {"r0;", 0, "bad reference"},
    {"r-1;", 0, "bad length"},
    {"t1;s1:ar2;e", 0, "bad reference"},
    {"t1;s1:ar99999999;e", 0, "bad reference"},
    {"t1;Mt2;ee", 0, NULL}, /* metatables, functions, builtins: Lua's */
    {"f1;0:0;", 0, NULL},
    {"b5:print", 0, NULL},
    {"t1;s1:ab5:printe", 0, NULL},
};

static void test_hostile(void)
{
    int top = lua_gettop(L);

    lua_getglobal(L, "decode_exact");
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        size_t n = hostile[i].len ? hostile[i].len : strlen(hostile[i].in);
        char want[128];

        lua_pushvalue(L, top + 1);
        lua_pushlstring(L, hostile[i].in, n);
        CHECK_EQ_INT(lua_pcall(L, 1, 2, 0), 0);
        if (hostile[i].why == NULL) {
            if (!(lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2)))
                fprintf(stderr, "input %zu (%s) not left to Lua\n", i,
                        hostile[i].in);
            CHECK(lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2));
        } else {
            snprintf(want, sizeof want, "serialised value: %s at ",
                     hostile[i].why);
            CHECK(lua_isnil(L, -2));
            CHECK(lua_isstring(L, -1) &&
                  strncmp(lua_tostring(L, -1), want, strlen(want)) == 0);
            if (!lua_isstring(L, -1) ||
                strncmp(lua_tostring(L, -1), want, strlen(want)) != 0)
                fprintf(stderr, "input %zu (%s): got %s\n", i,
                        hostile[i].in, lua_tostring(L, -1));
        }
        lua_settop(L, top + 1);
    }
    lua_settop(L, top);
    /* trailing bytes after a value are the caller's (next_pos says so) */
    LUA_CHECK("local v, pos = decode_exact('d1;2')\n"
              "return v == 1 and pos == 4");
    /* a cycle by reference is data, not a hazard */
    LUA_CHECK("local t = decode_exact('t1;s1:ar1;s1:bt2;s1:cr1;ee')\n"
              "return t.a == t and t.b.c == t");
    /* a table key may be a table, as in Lua */
    LUA_CHECK("local t = decode_exact('t1;t2;eTe')\n"
              "local k = next(t) return type(k) == 'table' and t[k] == true");
}

static void test_truncated_everywhere(void)
{
    /* every proper prefix of every value: truncated, at every length */
    LUA_CHECK("local s = enc(everything)\n"
              "if not s then return false, 'everything declined' end\n"
              "for n = 0, #s - 1 do\n"
              "  local v, err = decode_exact(s:sub(1, n))\n"
              "  if v ~= nil or not tostring(err):match("
              "'^serialised value: truncated at %d+$') then\n"
              "    return false, 'prefix ' .. n .. ': ' .. tostring(err) end\n"
              "end\n"
              "return true");
    LUA_CHECK("for i, v in ipairs(values) do\n"
              "  local s = enc(v)\n"
              "  for n = 0, math.min(#s - 1, 300) do\n"
              "    local d, err = decode_exact(s:sub(1, n))\n"
              "    if d ~= nil or not tostring(err):match('truncated') then\n"
              "      return false, 'value ' .. i .. ' prefix ' .. n end\n"
              "  end\n"
              "end\n"
              "return true");
    /* and from every start: a value, an error or false, never a raise */
    LUA_CHECK("local s = enc(everything)\n"
              "for start = 1, #s + 1 do\n"
              "  local v, pos = dec(s, start)\n"
              "  local fine\n"
              "  if type(pos) == 'number' then\n"
              "    fine = pos > start and pos <= #s + 1\n"
              "  elseif type(pos) == 'string' then\n"
              "    fine = v == nil and pos:match('^serialised value: ')\n"
              "  else\n"
              "    fine = v == false and pos == nil\n"
              "  end\n"
              "  if not fine then return false, 'start ' .. start end\n"
              "end\n"
              "local v, err = dec(s, #s + 1)\n"
              "return v == nil and err:match('truncated') ~= nil");
    /* misuse raises, blaming the argument */
    LUA_CHECK("local ok, e1 = pcall(dec, 'n', 0)\n"
              "local ok2, e2 = pcall(dec, 'n', 3)\n"
              "local ok3, e3 = pcall(dec, nil)\n"
              "return not ok and not ok2 and not ok3 and"
              " e1:match('out of range') and e2:match('out of range')"
              " and e3:match('string expected') ~= nil");
}

static void test_decode_ptr_arguments(void)
{
    int top = lua_gettop(L);

    /* NULL with a length, a negative length, a string: raised */
    lua_pushnil(L);
    lua_pushinteger(L, 3);
    CHECK(call(weir_ser_decode_ptr, 2) != 0);
    CHECK(strstr(lua_tostring(L, -1), "pointer expected") != NULL);
    lua_settop(L, top);
    lua_pushlightuserdata(L, (void *)"n");
    lua_pushinteger(L, -1);
    CHECK(call(weir_ser_decode_ptr, 2) != 0);
    CHECK(strstr(lua_tostring(L, -1), "negative length") != NULL);
    lua_settop(L, top);
    lua_pushstring(L, "n");
    lua_pushinteger(L, 1);
    CHECK(call(weir_ser_decode_ptr, 2) != 0);
    lua_settop(L, top);
    /* NULL and no bytes: truncated, like an empty string */
    lua_pushnil(L);
    lua_pushinteger(L, 0);
    CHECK_EQ_INT(call(weir_ser_decode_ptr, 2), 0);
    CHECK(lua_isnil(L, top + 1));
    CHECK(strstr(lua_tostring(L, top + 2), "truncated") != NULL);
    lua_settop(L, top);
    /* the length bounds the read, whatever follows in memory */
    lua_pushlightuserdata(L, (void *)"s3:abcdef");
    lua_pushinteger(L, 5);
    CHECK_EQ_INT(call(weir_ser_decode_ptr, 2), 0);
    CHECK(lua_isnil(L, top + 1));
    lua_settop(L, top);
}

static void test_deep_nesting(void)
{
    /* 100 tables and their leaf (depths 0 to 100) decode here; deeper is
     * Lua's to judge, however deep: the C stack does not grow with the
     * input */
    LUA_CHECK("local s = ref_enc(nested(100, 1))\n"
              "local v = decode_exact(s)\n"
              "for _ = 1, 100 do v = v[1] end\n"
              "return v == 1");
    LUA_CHECK("local s = ref_enc(nested(101, 1))\n"
              "return decode_exact(s) == false");
    LUA_CHECK("return decode_exact(string.rep('t1;s1:a', 1000000)) == false"
              " and decode_exact(string.rep('t1;', 1000000)) == false");
}

/* A small deterministic generator for the mutations. */
static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void test_mutations(void)
{
    /* bytes that mean something in the format, and any byte */
    static const char pieces[] = "ntTFNIidsrtMAbfe;:0123456789-.x";
    size_t len;
    const char *src;
    char *m;
    int top = lua_gettop(L), bad = 0;

    luaL_dostring(L, "return enc({ 1, 'two', { three = 3.5, [true] = false,"
                     " list = { 'a', 'b', { 'c' } } }, 0 / 0, math.huge })");
    src = lua_tolstring(L, -1, &len);
    CHECK(src != NULL);
    if (src == NULL)
        return;
    m = malloc(len);
    CHECK(m != NULL);
    if (m == NULL)
        return;
    lua_getglobal(L, "decode_exact");
    for (int i = 0; i < 30000; i++) {
        size_t n = len - rnd((unsigned)len / 4 + 1);
        int edits = 1 + (int)rnd(3);

        memcpy(m, src, n);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd((unsigned)n);

            m[at] = rnd(4) == 0 ? (char)rnd(256)
                                : pieces[rnd(sizeof pieces - 1)];
        }
        lua_pushvalue(L, top + 2);
        lua_pushlstring(L, m, n);
        if (lua_pcall(L, 1, 2, 0) != 0) {
            bad++;
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            /* refused, with a reason */
            if (!lua_isnil(L, -2) ||
                strncmp(lua_tostring(L, -1), "serialised value: ", 18) != 0)
                bad++;
        } else if (lua_type(L, -1) == LUA_TNIL) {
            /* left to the Lua decoder */
            if (lua_type(L, -2) != LUA_TBOOLEAN || lua_toboolean(L, -2))
                bad++;
        } else if (lua_type(L, -1) != LUA_TNUMBER ||
                   lua_tointeger(L, -1) < 2 ||
                   (size_t)lua_tointeger(L, -1) > n + 1) {
            bad++;
        }
        lua_settop(L, top + 2);
    }
    CHECK_EQ_INT(bad, 0);
    free(m);
    lua_settop(L, top);
}

int main(void)
{
    L = weir_state_new_trusted();
    if (L == NULL)
        return 2;
    lua_register(L, "decode_exact", decode_exact);
    lua_register(L, "decode_ud", decode_ud);
    if (luaL_dostring(L, prelude) != 0) {
        fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 2;
    }
    test_round_trips();
    test_array_mt();
    test_encoder_declines();
    test_hostile();
    test_truncated_everywhere();
    test_decode_ptr_arguments();
    test_deep_nesting();
    test_mutations();
    CHECK_EQ_INT(lua_gettop(L), 0);
    lua_close(L);
    return CHECK_DONE();
}
