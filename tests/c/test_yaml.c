/*
 * test_yaml.c - unit tests for the YAML loader (runtime/yaml.c): block and
 * flow collections, scalar resolution (core schema), tags, multi-line
 * strings, the null value and array metatable arguments, anchors, aliases
 * and merge keys, the path -> line table, and every error (libyaml's with
 * line and column, multiple documents, depth, size, keys, tags). Relies on
 * check.h and a LuaJIT state; values are checked through the Lua API.
 */
#include "weir/yaml.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static lua_State *L;
static char err_msg[1024];

/* Decodes text as "test.yaml" with the globals ARRAY_MT and NULL (or nil
 * for null when nil_null). On success sets the globals v and lines and
 * returns 0; on error copies the message into err_msg and returns -1. */
static int decode_len(const char *text, size_t len, int nil_null)
{
    lua_pushcfunction(L, weir_yaml_decode);
    lua_pushlstring(L, text, len);
    lua_pushstring(L, "test.yaml");
    lua_getglobal(L, "ARRAY_MT");
    if (nil_null)
        lua_pushnil(L);
    else
        lua_getglobal(L, "NULL");
    err_msg[0] = '\0';
    if (lua_pcall(L, 4, 2, 0) != 0) {
        snprintf(err_msg, sizeof(err_msg), "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    lua_setglobal(L, "lines");
    lua_setglobal(L, "v");
    return 0;
}

static int decode(const char *text)
{
    return decode_len(text, strlen(text), 0);
}

static int decode_nil(const char *text)
{
    return decode_len(text, strlen(text), 1);
}

/* Evaluates a Lua expression over v/lines: "type:tostring(value)". */
static const char *eval(const char *expr)
{
    static char out[512];
    char code[1024];

    snprintf(code, sizeof(code),
             "local x = (%s) return type(x) .. ':' .. tostring(x)", expr);
    if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        snprintf(out, sizeof(out), "error:%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return out;
    }
    snprintf(out, sizeof(out), "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return out;
}

#define CHECK_LUA(expr, want) CHECK_EQ_STR(eval(expr), (want))
#define CHECK_TRUE(expr) CHECK_EQ_STR(eval(expr), "boolean:true")

#define CHECK_ERROR(text, want) do { \
    CHECK_EQ_INT(decode(text), -1); \
    CHECK_EQ_STR(err_msg, (want)); } while (0)

static const char pipeline_doc[] =
    "name: orders_daily\n"                  /* 1 */
    "tasks:\n"                              /* 2 */
    "  extract:\n"                          /* 3 */
    "    retries: 3\n"                      /* 4 */
    "    command: \"run.sh --day 1\"\n"     /* 5 */
    "  load:\n"                             /* 6 */
    "    after:\n"                          /* 7 */
    "      - extract\n"                     /* 8 */
    "      - transform\n"                   /* 9 */
    "    with: {table: orders, mode: upsert, keys: [id, day]}\n" /* 10 */
    "    enabled: true\n";                  /* 11 */

static void test_nested_and_lines(void)
{
    CHECK_EQ_INT(decode(pipeline_doc), 0);
    CHECK_LUA("v.name", "string:orders_daily");
    CHECK_LUA("v.tasks.extract.retries", "number:3");
    CHECK_LUA("v.tasks.extract.command", "string:run.sh --day 1");
    CHECK_LUA("v.tasks.load.after[1]", "string:extract");
    CHECK_LUA("v.tasks.load.after[2]", "string:transform");
    CHECK_LUA("#v.tasks.load.after", "number:2");
    CHECK_LUA("v.tasks.load.with.table", "string:orders");
    CHECK_LUA("v.tasks.load.with.keys[2]", "string:day");
    CHECK_LUA("v.tasks.load.enabled", "boolean:true");
    /* Sequences carry array_mt, mappings no metatable. */
    CHECK_TRUE("getmetatable(v.tasks.load.after) == ARRAY_MT");
    CHECK_TRUE("getmetatable(v.tasks.load.with.keys) == ARRAY_MT");
    CHECK_TRUE("getmetatable(v.tasks) == nil and getmetatable(v) == nil");

    CHECK_LUA("lines['']", "number:1");
    CHECK_LUA("lines.name", "number:1");
    CHECK_LUA("lines.tasks", "number:2");
    CHECK_LUA("lines['tasks.extract']", "number:3");
    CHECK_LUA("lines['tasks.extract.retries']", "number:4");
    CHECK_LUA("lines['tasks.load.after']", "number:7");
    CHECK_LUA("lines['tasks.load.after[1]']", "number:8");
    CHECK_LUA("lines['tasks.load.after[2]']", "number:9");
    CHECK_LUA("lines['tasks.load.with.keys[2]']", "number:10");
    CHECK_LUA("lines['tasks.load.enabled']", "number:11");
    CHECK_LUA("lines['tasks.load.after[3]']", "nil:nil");

    /* The same checks straight through the C API. */
    lua_getglobal(L, "v");
    lua_getfield(L, -1, "tasks");
    lua_getfield(L, -1, "extract");
    lua_getfield(L, -1, "retries");
    CHECK_EQ_INT(lua_type(L, -1), LUA_TNUMBER);
    CHECK_EQ_INT(lua_tointeger(L, -1), 3);
    lua_pop(L, 4);
    lua_getglobal(L, "lines");
    lua_getfield(L, -1, "tasks.load.after[2]");
    CHECK_EQ_INT(lua_tointeger(L, -1), 9);
    lua_pop(L, 2);

    /* Flow style at the root, nested both ways. */
    CHECK_EQ_INT(decode("{a: 1, b: [x, \"y\", {c: d}], e: []}"), 0);
    CHECK_LUA("v.a", "number:1");
    CHECK_LUA("v.b[3].c", "string:d");
    CHECK_LUA("#v.e", "number:0");
    CHECK_TRUE("getmetatable(v.e) == ARRAY_MT");
    CHECK_LUA("lines['b[3].c']", "number:1");

    /* A sequence of mappings: each element's line is where it starts. */
    CHECK_EQ_INT(decode("steps:\n  - name: a\n    run: x\n"
                        "  - name: b\n"), 0);
    CHECK_LUA("v.steps[2].name", "string:b");
    CHECK_LUA("lines['steps[2]']", "number:4");
    CHECK_LUA("lines['steps[1].run']", "number:3");
}

static void test_scalars(void)
{
    static const char doc[] =
        "s1: plain text\n"
        "s2: \"123\"\n"
        "s3: '4.5'\n"
        "i1: 42\n"
        "i2: -17\n"
        "i3: 0x1F\n"
        "i4: 0o17\n"
        "i5: +5\n"
        "i6: 007\n"
        "i7: -0\n"
        "f1: 3.25\n"
        "f2: -1.5e3\n"
        "f3: .inf\n"
        "f4: -.Inf\n"
        "f5: .NaN\n"
        "f6: 1.\n"
        "f7: .5\n"
        "b1: true\n"
        "b2: False\n"
        "b3: TRUE\n"
        "n1: null\n"
        "n2: ~\n"
        "n3:\n"
        "n4: NULL\n"
        "y1: yes\n"
        "y2: off\n"
        "y3: 1_000\n"
        "y4: 0b101\n"
        "y5: tRue\n"
        "y6: 2001-12-14\n"
        "y7: 1e\n"
        "y8: .\n"
        "y9: 0x\n"
        "q1: \"true\"\n"
        "q2: 'null'\n"
        "q3: ''\n"
        "t1: !!str 12\n"
        "t2: !!int \"12\"\n"
        "t3: !!float 1\n"
        "t4: !!null ''\n"
        "t5: ! 12\n"
        "t6: !!bool \"false\"\n"
        "1: one\n"
        "true: two\n"
        "~: three\n"
        "\"quoted key\": four\n";

    CHECK_EQ_INT(decode(doc), 0);
    CHECK_LUA("v.s1", "string:plain text");
    CHECK_LUA("v.s2", "string:123");
    CHECK_LUA("v.s3", "string:4.5");
    CHECK_LUA("v.i1", "number:42");
    CHECK_LUA("v.i2", "number:-17");
    CHECK_LUA("v.i3", "number:31");
    CHECK_LUA("v.i4", "number:15");
    CHECK_LUA("v.i5", "number:5");
    CHECK_LUA("v.i6", "number:7");
    CHECK_LUA("v.i7", "number:0");
    CHECK_LUA("v.f1", "number:3.25");
    CHECK_LUA("v.f2", "number:-1500");
    CHECK_TRUE("v.f3 == math.huge");
    CHECK_TRUE("v.f4 == -math.huge");
    CHECK_TRUE("v.f5 ~= v.f5");
    CHECK_LUA("v.f6", "number:1");
    CHECK_LUA("v.f7", "number:0.5");
    CHECK_LUA("v.b1", "boolean:true");
    CHECK_LUA("v.b2", "boolean:false");
    CHECK_LUA("v.b3", "boolean:true");
    CHECK_TRUE("v.n1 == NULL and v.n2 == NULL and v.n3 == NULL "
               "and v.n4 == NULL");
    CHECK_LUA("v.y1", "string:yes");
    CHECK_LUA("v.y2", "string:off");
    CHECK_LUA("v.y3", "string:1_000");
    CHECK_LUA("v.y4", "string:0b101");
    CHECK_LUA("v.y5", "string:tRue");
    CHECK_LUA("v.y6", "string:2001-12-14");
    CHECK_LUA("v.y7", "string:1e");
    CHECK_LUA("v.y8", "string:.");
    CHECK_LUA("v.y9", "string:0x");
    CHECK_LUA("v.q1", "string:true");
    CHECK_LUA("v.q2", "string:null");
    CHECK_LUA("v.q3", "string:");
    CHECK_LUA("v.t1", "string:12");
    CHECK_LUA("v.t2", "number:12");
    CHECK_LUA("v.t3", "number:1");
    CHECK_TRUE("v.t4 == NULL");
    CHECK_LUA("v.t5", "string:12");
    CHECK_LUA("v.t6", "boolean:false");
    /* Keys are always strings. */
    CHECK_LUA("v['1']", "string:one");
    CHECK_LUA("v[1]", "nil:nil");
    CHECK_LUA("v['true']", "string:two");
    CHECK_LUA("v['~']", "string:three");
    CHECK_LUA("v['quoted key']", "string:four");
}

static void test_block_scalars(void)
{
    static const char doc[] =
        "lit: |\n"
        "  line one\n"
        "    indented\n"
        "  line two\n"
        "fold: >\n"
        "  folded\n"
        "  text\n"
        "\n"
        "  para\n"
        "strip: |-\n"
        "  stripped\n"
        "keep: |+\n"
        "  kept\n"
        "\n"
        "plain: a\n"
        "  continued\n"
        "dq: \"esc\\t\\u00e9\\n\"\n"
        "sq: 'it''s'\n"
        "last: 1\n";

    CHECK_EQ_INT(decode(doc), 0);
    CHECK_LUA("v.lit", "string:line one\n  indented\nline two\n");
    CHECK_LUA("v.fold", "string:folded text\npara\n");
    CHECK_LUA("v.strip", "string:stripped");
    CHECK_LUA("v.keep", "string:kept\n\n");
    CHECK_LUA("v.plain", "string:a continued");
    CHECK_LUA("v.dq", "string:esc\t\xc3\xa9\n");
    CHECK_LUA("v.sq", "string:it's");
    CHECK_LUA("lines.lit", "number:1");
    CHECK_LUA("lines.fold", "number:5");
    CHECK_LUA("lines.last", "number:19");
}

static void test_null_and_array_mt_arguments(void)
{
    /* With a sentinel, nulls are kept everywhere. */
    CHECK_EQ_INT(decode("list: [1, ~, 3]\nk: null\n"), 0);
    CHECK_LUA("#v.list", "number:3");
    CHECK_TRUE("v.list[2] == NULL and v.k == NULL");

    /* With nil, null members are absent and sequences get holes. */
    CHECK_EQ_INT(decode_nil("list: [1, ~, 3]\nk: null\nj: 2\n"), 0);
    CHECK_TRUE("v.list[1] == 1 and v.list[2] == nil and v.list[3] == 3");
    CHECK_TRUE("v.k == nil and v.j == 2");
    CHECK_LUA("lines.k", "number:2");
    /* Duplicate keys are still caught when the value is null. */
    CHECK_EQ_INT(decode_nil("k: ~\nk: 1\n"), -1);
    CHECK_EQ_STR(err_msg, "test.yaml:2:1: yaml: duplicate key \"k\"");

    /* array_mt may be nil. */
    lua_pushcfunction(L, weir_yaml_decode);
    lua_pushstring(L, "[1, 2]");
    lua_pushstring(L, "x");
    lua_pushnil(L);
    lua_pushnil(L);
    CHECK_EQ_INT(lua_pcall(L, 4, 2, 0), 0);
    CHECK(lua_istable(L, -2) && !lua_getmetatable(L, -2));
    lua_pop(L, 2);

    /* Empty streams are null with no lines. */
    CHECK_EQ_INT(decode(""), 0);
    CHECK_TRUE("v == NULL and next(lines) == nil");
    CHECK_EQ_INT(decode("# only a comment\n"), 0);
    CHECK_TRUE("v == NULL");
    CHECK_EQ_INT(decode("---\n...\n"), 0);
    CHECK_TRUE("v == NULL and lines[''] ~= nil");
    CHECK_EQ_INT(decode("--- 5\n"), 0);
    CHECK_LUA("v", "number:5");

    /* Bad arguments raise like any Lua C function. */
    lua_pushcfunction(L, weir_yaml_decode);
    lua_pushnumber(L, 1);
    lua_pushnil(L);
    CHECK(lua_pcall(L, 2, 2, 0) != 0);
    lua_pop(L, 1);
}

static void test_anchors_and_merges(void)
{
    static const char doc[] =
        "base: &b\n"                        /* 1 */
        "  retries: 3\n"                    /* 2 */
        "  tags: [a, b]\n"                  /* 3 */
        "name: &n job\n"                    /* 4 */
        "copy: *b\n"                        /* 5 */
        "list: [*b, *n]\n"                  /* 6 */
        "merged:\n"                         /* 7 */
        "  <<: *b\n"                        /* 8 */
        "  retries: 5\n"                    /* 9 */
        "multi:\n"                          /* 10 */
        "  <<: [{x: 1}, {x: 2, y: 2}]\n"    /* 11 */
        "  z: 0\n"                          /* 12 */
        "chain:\n"                          /* 13 */
        "  <<: *m\n"                        /* 14: unknown yet */
        ;
    static const char doc2[] =
        "base: &b\n"
        "  retries: 3\n"
        "  tags: [a, b]\n"
        "name: &n job\n"
        "copy: *b\n"
        "list: [*b, *n]\n"
        "merged: &m\n"
        "  <<: *b\n"
        "  retries: 5\n"
        "multi:\n"
        "  <<: [{x: 1}, {x: 2, y: 2}]\n"
        "  z: 0\n"
        "chain:\n"
        "  <<: *m\n"
        "  own: 1\n"
        "\"<<\": quoted\n"
        "*n : aliased key\n";

    CHECK_EQ_INT(decode(doc), -1);
    CHECK_EQ_STR(err_msg, "test.yaml:14:7: yaml: unknown anchor \"m\"");

    CHECK_EQ_INT(decode(doc2), 0);
    CHECK_LUA("v.copy.retries", "number:3");
    CHECK_LUA("v.copy.tags[2]", "string:b");
    /* Aliases are fresh copies, not shared tables. */
    CHECK_TRUE("v.copy ~= v.base and v.copy.tags ~= v.base.tags");
    CHECK_TRUE("v.list[1] ~= v.copy and v.list[1].retries == 3");
    CHECK_LUA("v.list[2]", "string:job");
    CHECK_TRUE("getmetatable(v.copy.tags) == ARRAY_MT");
    /* Explicit keys win over merged ones. */
    CHECK_LUA("v.merged.retries", "number:5");
    CHECK_LUA("v.merged.tags[1]", "string:a");
    CHECK_TRUE("v.merged['<<'] == nil");
    /* Earlier merge sources win over later ones. */
    CHECK_LUA("v.multi.x", "number:1");
    CHECK_LUA("v.multi.y", "number:2");
    CHECK_LUA("v.multi.z", "number:0");
    /* Merges of merges. */
    CHECK_LUA("v.chain.retries", "number:5");
    CHECK_LUA("v.chain.tags[2]", "string:b");
    CHECK_LUA("v.chain.own", "number:1");
    CHECK_LUA("v['<<']", "string:quoted");
    CHECK_LUA("v.job", "string:aliased key");
    /* An alias's own path has its line; its content the anchored lines. */
    CHECK_LUA("lines.copy", "number:5");
    CHECK_LUA("lines['copy.retries']", "number:2");
    CHECK_LUA("lines['copy.tags[2]']", "number:3");
    CHECK_LUA("lines['list[1]']", "number:6");
    CHECK_LUA("lines['merged.retries']", "number:9");
    CHECK_LUA("lines['merged.tags']", "number:3");
    CHECK_LUA("lines['multi.y']", "number:11");

    CHECK_ERROR("a: &x {k: 1}\nb:\n  <<: *x\n  <<: 5\n",
                "test.yaml:4:7: yaml: merge value must be a mapping or a "
                "sequence of mappings");
    CHECK_ERROR("a: &x [1]\nb:\n  <<: *x\n",
                "test.yaml:1:8: yaml: merge value must be a mapping or a "
                "sequence of mappings");
    CHECK_ERROR("b:\n  <<: [{a: 1}, 2]\n",
                "test.yaml:2:16: yaml: merge value must be a mapping or a "
                "sequence of mappings");
    /* An alias inside its own anchor is unknown: no cycles. */
    CHECK_ERROR("a: &x [1, *x]\n",
                "test.yaml:1:11: yaml: unknown anchor \"x\"");
}

static void test_limits(void)
{
    char *deep;
    size_t i, n;

    /* Billion laughs fails before anything is expanded. */
    CHECK_ERROR("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n",
                "test.yaml:6:44: yaml: document too large");
    /* ... while moderate reuse is fine. */
    CHECK_EQ_INT(decode("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                        "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"),
                 0);
    CHECK_LUA("v.c[10][10][10]", "string:x");
    CHECK_LUA("lines['c[10][10][10]']", "number:1");

    /* 256 levels are fine, 257 are not; no C recursion in the parser. */
    n = 100000;
    deep = malloc(2 * n + 1);
    for (i = 0; i < 256; i++) {
        deep[i] = '[';
        deep[256 + i] = ']';
    }
    CHECK_EQ_INT(decode_len(deep, 512, 0), 0);
    CHECK_LUA("type(v[1][1][1])", "string:table");
    for (i = 0; i < n; i++) {
        deep[i] = '[';
        deep[n + i] = ']';
    }
    CHECK_EQ_INT(decode_len(deep, 2 * n, 0), -1);
    CHECK_EQ_STR(err_msg, "test.yaml:1:257: yaml: nesting too deep "
                 "(limit 256)");
    free(deep);

    /* Depth is also counted through aliases: 200 levels anchored, then
     * aliased 100 levels down. */
    {
        char doc[1024];
        size_t k = 0;
        const char *tail;

        k += (size_t)snprintf(doc + k, sizeof(doc) - k, "a: &d ");
        for (i = 0; i < 200; i++)
            doc[k++] = '[';
        for (i = 0; i < 200; i++)
            doc[k++] = ']';
        k += (size_t)snprintf(doc + k, sizeof(doc) - k, "\nb: ");
        for (i = 0; i < 100; i++)
            doc[k++] = '[';
        k += (size_t)snprintf(doc + k, sizeof(doc) - k, "*d");
        for (i = 0; i < 100; i++)
            doc[k++] = ']';
        CHECK_EQ_INT(decode_len(doc, k, 0), -1);
        tail = strstr(err_msg, ": yaml: ");
        CHECK_EQ_STR(tail, ": yaml: nesting too deep (limit 256)");
        CHECK(strncmp(err_msg, "test.yaml:1:", 12) == 0);
    }
}

static void test_errors(void)
{
    CHECK_ERROR("a: 1\nb: [1, 2\nc: 3\n",
                "test.yaml:3:2: yaml: did not find expected ',' or ']' "
                "(while parsing a flow sequence at line 2)");
    CHECK_ERROR("a:\n  b: 1\n c: 2\n",
                "test.yaml:3:2: yaml: did not find expected key "
                "(while parsing a block mapping at line 1)");
    CHECK_ERROR("a: 1\n---\nb: 2\n",
                "test.yaml:2:1: yaml: multiple documents are not "
                "supported");
    CHECK_ERROR("a: \"x\n",
                "test.yaml:2:1: yaml: found unexpected end of stream "
                "(while scanning a quoted scalar at line 1)");
    CHECK_ERROR("a: b: c\n",
                "test.yaml:1:5: yaml: mapping values are not allowed in "
                "this context");
    CHECK_ERROR("ok: 1\nbad: \xff\n",
                "test.yaml:2:6: yaml: invalid leading UTF-8 octet (0xff)");
    CHECK_ERROR("a: 1\nb: 2\na: 3\n",
                "test.yaml:3:1: yaml: duplicate key \"a\"");
    CHECK_ERROR("? [a, b]\n: c\n",
                "test.yaml:1:3: yaml: mapping keys must be scalars");
    CHECK_ERROR("x: &k {a: 1}\n*k : 2\n",
                "test.yaml:2:1: yaml: mapping keys must be scalars");
    CHECK_ERROR("a: !env HOME\n",
                "test.yaml:1:4: yaml: unsupported tag \"!env\"");
    CHECK_ERROR("a: !!binary aGk=\n",
                "test.yaml:1:4: yaml: unsupported tag \"!!binary\"");
    CHECK_ERROR("a: !!set {x}\n",
                "test.yaml:1:4: yaml: unsupported tag \"!!set\"");
    CHECK_ERROR("a: !!int abc\n",
                "test.yaml:1:4: yaml: value \"abc\" does not match tag "
                "!!int");
    CHECK_ERROR("a: !!float x1\n",
                "test.yaml:1:4: yaml: value \"x1\" does not match tag "
                "!!float");
    CHECK_ERROR("a: *nope\n",
                "test.yaml:1:4: yaml: unknown anchor \"nope\"");
    /* The name argument prefixes every error. */
    lua_pushcfunction(L, weir_yaml_decode);
    lua_pushstring(L, "[");
    lua_pushstring(L, "pipelines/x.yaml");
    lua_pushnil(L);
    lua_pushnil(L);
    CHECK(lua_pcall(L, 4, 2, 0) != 0);
    CHECK(strncmp(lua_tostring(L, -1), "pipelines/x.yaml:2:1: yaml: ",
                  28) == 0);
    lua_pop(L, 1);
}

int main(void)
{
    L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "luaL_newstate failed\n");
        return 1;
    }
    luaL_openlibs(L);
    lua_newtable(L);
    lua_setglobal(L, "ARRAY_MT");
    lua_newtable(L);
    lua_setglobal(L, "NULL");

    test_nested_and_lines();
    test_scalars();
    test_block_scalars();
    test_null_and_array_mt_arguments();
    test_anchors_and_merges();
    test_limits();
    test_errors();

    /* Errors left their guards to the collector: run it, then check the
     * stack is balanced. */
    lua_gc(L, LUA_GCCOLLECT, 0);
    CHECK_EQ_INT(lua_gettop(L), 0);
    lua_close(L);
    return CHECK_DONE();
}
