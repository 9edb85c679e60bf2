/*
 * yaml.c - YAML loader for Lua: decodes one YAML document into Lua tables
 * plus a path -> line table (see weir/yaml.h for the rules callers rely
 * on). Relies on libyaml's event API and the classic Lua C API (a bulk
 * conversion, so not an FFI call).
 *
 * Two passes. First libyaml's events are turned into a small C tree (an
 * explicit stack, no recursion), resolving scalars, checking tags, keys
 * and depth, linking aliases to their anchored node and counting each
 * node's size after alias expansion, so a billion-laughs document fails
 * before anything is expanded. Then the tree is walked into Lua tables,
 * copying aliased nodes afresh each time. All C memory (parser, current
 * event, tree, path buffer) hangs off a userdata with a __gc guard: errors
 * found here release it and then raise; an error raised by the Lua API
 * itself (out of memory) leaves it to the guard.
 */
#include "weir/yaml.h"
#include "weir/buf.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_MAX_DEPTH 256
#define YAML_MAX_NODES ((size_t)1 << 20)
#define YAML_MAX_PATH_BYTES ((size_t)64 << 20)
#define YAML_GUARD_MT "weir.yaml.guard"

/* Fixed stack slots of weir_yaml_decode. */
enum {
    ARG_TEXT = 1,
    ARG_NAME,
    ARG_ARRAY_MT,
    ARG_NULL,
    SLOT_GUARD,
    SLOT_ANCHORS,   /* anchor name -> lightuserdata node */
    SLOT_LINES      /* path -> line, the second result */
};

enum ykind { YN_NULL, YN_BOOL, YN_NUM, YN_STR, YN_SEQ, YN_MAP, YN_ALIAS };

/* What the core schema makes of a plain scalar. */
enum yres { R_NULL, R_BOOL, R_INT, R_FLOAT, R_STR };

struct ynode {
    uint8_t kind;           /* enum ykind */
    uint8_t merge_key;      /* the plain, untagged scalar "<<" */
    uint8_t boolean;
    uint32_t line;          /* 1-based */
    uint32_t col;           /* 1-based */
    double num;
    char *text;             /* scalars: the text, NUL-terminated */
    size_t len;
    struct ynode **items;   /* SEQ: elements; MAP: key, value, ... */
    size_t n;
    size_t cap;
    struct ynode *target;   /* ALIAS: the anchored node */
    size_t size;            /* nodes after alias expansion, saturating */
};

struct yframe {
    struct ynode *node;
    char *anchor;           /* registered when the collection closes */
};

struct yctx {
    lua_State *L;
    const char *name;
    int nil_null;
    int has_array_mt;
    yaml_parser_t parser;
    yaml_event_t event;
    int parser_live;
    int event_live;
    struct ynode **nodes;   /* every node, for freeing */
    size_t nnodes;
    size_t capnodes;
    struct yframe frames[YAML_MAX_DEPTH];
    int depth;
    struct ynode *root;
    weir_buf path;          /* the current path ("tasks.a.after[1]") */
    size_t path_total;
};

/* Frees everything the context owns; safe to call twice. */
static void yctx_release(struct yctx *c)
{
    size_t i;

    if (c->event_live) {
        yaml_event_delete(&c->event);
        c->event_live = 0;
    }
    if (c->parser_live) {
        yaml_parser_delete(&c->parser);
        c->parser_live = 0;
    }
    for (i = 0; i < c->nnodes; i++) {
        free(c->nodes[i]->text);
        free(c->nodes[i]->items);
        free(c->nodes[i]);
    }
    free(c->nodes);
    c->nodes = NULL;
    c->nnodes = 0;
    c->capnodes = 0;
    c->root = NULL;
    while (c->depth > 0)
        free(c->frames[--c->depth].anchor);
    weir_buf_free(&c->path);
}

static int yctx_gc(lua_State *L)
{
    yctx_release(lua_touserdata(L, 1));
    return 0;
}

/* Releases the context and raises "NAME:LINE:COL: yaml: PROBLEM". */
static void yfail(struct yctx *c, size_t line, size_t col,
                  const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

static void yfail(struct yctx *c, size_t line, size_t col,
                  const char *fmt, ...)
{
    lua_State *L = c->L;
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    yctx_release(c);
    lua_pushfstring(L, "%s:%d:%d: yaml: %s", c->name, (int)line, (int)col,
                    msg);
    lua_error(L);
    abort();    /* not reached: lua_error does not return */
}

static void yfail_at(struct yctx *c, const struct ynode *at,
                     const char *what) __attribute__((noreturn));

static void yfail_at(struct yctx *c, const struct ynode *at,
                     const char *what)
{
    yfail(c, at->line, at->col, "%s", what);
}

/* Reports a libyaml failure with the best position it offers. */
static void parser_fail(struct yctx *c, const char *text, size_t len)
{
    const yaml_parser_t *p = &c->parser;
    size_t line = 1, col = 1, i;

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        yfail(c, p->mark.line + 1, p->mark.column + 1, "out of memory");
        break;
    case YAML_READER_ERROR:
        /* The reader runs ahead of the marks: count up to the byte. */
        for (i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        if (p->problem_value != -1)
            yfail(c, line, col, "%s (0x%02x)", p->problem,
                  (unsigned)p->problem_value);
        yfail(c, line, col, "%s", p->problem);
        break;
    default:
        if (p->context != NULL)
            yfail(c, p->problem_mark.line + 1, p->problem_mark.column + 1,
                  "%s (%s at line %zu)", p->problem ? p->problem : "error",
                  p->context, p->context_mark.line + 1);
        yfail(c, p->problem_mark.line + 1, p->problem_mark.column + 1,
              "%s", p->problem ? p->problem : "error");
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Pass 1: events -> tree                                              */
/* ------------------------------------------------------------------ */

static struct ynode *new_node(struct yctx *c, int kind,
                              const yaml_mark_t *m)
{
    struct ynode *nd;

    if (c->nnodes == c->capnodes) {
        size_t ncap = c->capnodes ? c->capnodes * 2 : 64;
        struct ynode **nn = realloc(c->nodes, ncap * sizeof(*nn));

        if (nn == NULL)
            yfail(c, m->line + 1, m->column + 1, "out of memory");
        c->nodes = nn;
        c->capnodes = ncap;
    }
    nd = calloc(1, sizeof(*nd));
    if (nd == NULL)
        yfail(c, m->line + 1, m->column + 1, "out of memory");
    c->nodes[c->nnodes++] = nd;
    nd->kind = (uint8_t)kind;
    nd->line = (uint32_t)(m->line + 1);
    nd->col = (uint32_t)(m->column + 1);
    nd->size = 1;
    return nd;
}

static void add_size(struct yctx *c, struct ynode *p, size_t k,
                     const struct ynode *at)
{
    /* Both terms are at most YAML_MAX_NODES + 1: no overflow. */
    p->size += k;
    if (p->size > YAML_MAX_NODES)
        yfail_at(c, at, "document too large");
}

/* Links a new node into the open collection (or makes it the root). */
static void attach(struct yctx *c, struct ynode *nd)
{
    struct ynode *p;

    if (c->depth == 0) {
        c->root = nd;
        return;
    }
    p = c->frames[c->depth - 1].node;
    if (p->kind == YN_MAP && p->n % 2 == 0) {
        const struct ynode *k = nd->kind == YN_ALIAS ? nd->target : nd;

        if (k->kind == YN_SEQ || k->kind == YN_MAP)
            yfail_at(c, nd, "mapping keys must be scalars");
    }
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 4;
        struct ynode **ni = realloc(p->items, ncap * sizeof(*ni));

        if (ni == NULL)
            yfail_at(c, nd, "out of memory");
        p->items = ni;
        p->cap = ncap;
    }
    p->items[p->n++] = nd;
    add_size(c, p, nd->size, nd);
}

static void register_anchor(struct yctx *c, const char *anchor,
                            struct ynode *nd)
{
    lua_pushstring(c->L, anchor);
    lua_pushlightuserdata(c->L, nd);
    lua_rawset(c->L, SLOT_ANCHORS);
}

static int is_one_of(const char *s, size_t n, const char *a, const char *b,
                     const char *d)
{
    return (strlen(a) == n && memcmp(s, a, n) == 0)
        || (strlen(b) == n && memcmp(s, b, n) == 0)
        || (strlen(d) == n && memcmp(s, d, n) == 0);
}

static size_t count_digits(const char *s, size_t i, size_t n)
{
    size_t k = i;

    while (k < n && s[k] >= '0' && s[k] <= '9')
        k++;
    return k - i;
}


/* Resolves a scalar's text by the YAML 1.2 core schema. */
static enum yres resolve_core(struct ynode *nd)
{
    const char *s = nd->text;
    size_t n = nd->len, i, d1, d2;
    double v;
    int neg;

    if (n == 0 || (n == 1 && s[0] == '~')
        || is_one_of(s, n, "null", "Null", "NULL")) {
        nd->kind = YN_NULL;
        return R_NULL;
    }
    if (is_one_of(s, n, "true", "True", "TRUE")
        || is_one_of(s, n, "false", "False", "FALSE")) {
        nd->kind = YN_BOOL;
        nd->boolean = s[0] == 't' || s[0] == 'T';
        return R_BOOL;
    }
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        int base = s[1] == 'x' ? 16 : 8;

        for (v = 0, i = 2; i < n; i++) {
            int h = weir_hexval(s[i]);

            if (h < 0 || h >= base)
                break;
            v = v * base + h;
        }
        if (i == n) {
            nd->kind = YN_NUM;
            nd->num = v;
            return R_INT;
        }
        return R_STR;
    }
    neg = s[0] == '-';
    i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    d1 = count_digits(s, i, n);
    if (d1 > 0 && i + d1 == n) {
        if (d1 <= 15) {
            for (v = 0; i < n; i++)
                v = v * 10 + (s[i] - '0');
            v = neg && v != 0 ? -v : v;
        } else {
            v = strtod(s, NULL);
        }
        nd->kind = YN_NUM;
        nd->num = v;
        return R_INT;
    }
    if (is_one_of(s + i, n - i, ".inf", ".Inf", ".INF")) {
        nd->kind = YN_NUM;
        nd->num = neg ? -HUGE_VAL : HUGE_VAL;
        return R_FLOAT;
    }
    if (is_one_of(s, n, ".nan", ".NaN", ".NAN")) {
        nd->kind = YN_NUM;
        nd->num = NAN;
        return R_FLOAT;
    }
    /* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
    i += d1;
    d2 = 0;
    if (i < n && s[i] == '.') {
        d2 = count_digits(s, i + 1, n);
        i += 1 + d2;
    } else if (d1 == 0) {
        return R_STR;
    }
    if (d1 == 0 && d2 == 0)
        return R_STR;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t de;

        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        de = count_digits(s, i, n);
        if (de == 0)
            return R_STR;
        i += de;
    }
    if (i != n)
        return R_STR;
    nd->kind = YN_NUM;
    nd->num = strtod(s, NULL);
    return R_FLOAT;
}

/* Prints a tag the short way for messages ("!!int", "!local"). */
static const char *short_tag(const char *tag, char *buf, size_t n)
{
    static const char core[] = "tag:yaml.org,2002:";

    if (strncmp(tag, core, sizeof(core) - 1) == 0) {
        snprintf(buf, n, "!!%s", tag + sizeof(core) - 1);
        return buf;
    }
    return tag;
}

static void on_scalar(struct yctx *c, const yaml_event_t *ev)
{
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *want = NULL;
    struct ynode *nd;
    char buf[80];
    enum yres res;

    nd = new_node(c, YN_STR, &ev->start_mark);
    nd->len = ev->data.scalar.length;
    nd->text = malloc(nd->len + 1);
    if (nd->text == NULL)
        yfail_at(c, nd, "out of memory");
    memcpy(nd->text, ev->data.scalar.value, nd->len);
    nd->text[nd->len] = '\0';

    if (tag == NULL) {
        if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            resolve_core(nd);
            nd->merge_key = nd->len == 2 && memcmp(nd->text, "<<", 2) == 0;
        }
    } else if (strcmp(tag, "!") == 0 || strcmp(tag, YAML_STR_TAG) == 0) {
        /* a string as it stands */
    } else if (strcmp(tag, YAML_NULL_TAG) == 0
               || strcmp(tag, YAML_BOOL_TAG) == 0
               || strcmp(tag, YAML_INT_TAG) == 0
               || strcmp(tag, YAML_FLOAT_TAG) == 0) {
        res = resolve_core(nd);
        if (strcmp(tag, YAML_NULL_TAG) == 0 && res != R_NULL)
            want = "!!null";
        else if (strcmp(tag, YAML_BOOL_TAG) == 0 && res != R_BOOL)
            want = "!!bool";
        else if (strcmp(tag, YAML_INT_TAG) == 0 && res != R_INT)
            want = "!!int";
        else if (strcmp(tag, YAML_FLOAT_TAG) == 0 && res != R_INT
                 && res != R_FLOAT)
            want = "!!float";
        if (want != NULL)
            yfail(c, nd->line, nd->col, "value \"%.64s\" does not match "
                  "tag %s", nd->text, want);
    } else {
        yfail(c, nd->line, nd->col, "unsupported tag \"%.64s\"",
              short_tag(tag, buf, sizeof(buf)));
    }
    attach(c, nd);
    if (ev->data.scalar.anchor != NULL)
        register_anchor(c, (const char *)ev->data.scalar.anchor, nd);
}

static void on_start(struct yctx *c, const yaml_event_t *ev, int kind,
                     const yaml_char_t *tag, const yaml_char_t *anchor)
{
    const char *t = (const char *)tag;
    struct ynode *nd;
    char buf[80];

    if (t != NULL && strcmp(t, "!") != 0
        && strcmp(t, kind == YN_SEQ ? YAML_SEQ_TAG : YAML_MAP_TAG) != 0)
        yfail(c, ev->start_mark.line + 1, ev->start_mark.column + 1,
              "unsupported tag \"%.64s\"", short_tag(t, buf, sizeof(buf)));
    if (c->depth == YAML_MAX_DEPTH)
        yfail(c, ev->start_mark.line + 1, ev->start_mark.column + 1,
              "nesting too deep (limit %d)", YAML_MAX_DEPTH);
    nd = new_node(c, kind, &ev->start_mark);
    attach(c, nd);
    c->frames[c->depth].node = nd;
    c->frames[c->depth].anchor = NULL;
    c->depth++;
    if (anchor != NULL) {
        c->frames[c->depth - 1].anchor = strdup((const char *)anchor);
        if (c->frames[c->depth - 1].anchor == NULL)
            yfail_at(c, nd, "out of memory");
    }
}

static void on_end(struct yctx *c)
{
    struct yframe *f = &c->frames[c->depth - 1];
    struct ynode *nd = f->node;

    /* Registered only now, so an alias inside its own anchor fails as
     * unknown (or finds an earlier anchor of that name). */
    if (f->anchor != NULL) {
        register_anchor(c, f->anchor, nd);
        free(f->anchor);
        f->anchor = NULL;
    }
    c->depth--;
    if (c->depth > 0)
        add_size(c, c->frames[c->depth - 1].node, nd->size - 1, nd);
}

static void on_alias(struct yctx *c, const yaml_event_t *ev)
{
    const char *anchor = (const char *)ev->data.alias.anchor;
    struct ynode *target, *nd;

    lua_pushstring(c->L, anchor);
    lua_rawget(c->L, SLOT_ANCHORS);
    target = lua_touserdata(c->L, -1);
    lua_pop(c->L, 1);
    if (target == NULL)
        yfail(c, ev->start_mark.line + 1, ev->start_mark.column + 1,
              "unknown anchor \"%.64s\"", anchor);
    nd = new_node(c, YN_ALIAS, &ev->start_mark);
    nd->target = target;
    nd->size = target->size;
    attach(c, nd);
}

static void load_tree(struct yctx *c, const char *text, size_t len)
{
    yaml_event_t *ev = &c->event;
    int docs = 0, done = 0;

    if (!yaml_parser_initialize(&c->parser))
        yfail(c, 1, 1, "out of memory");
    c->parser_live = 1;
    yaml_parser_set_input_string(&c->parser, (const unsigned char *)text,
                                 len);
    while (!done) {
        if (!yaml_parser_parse(&c->parser, ev))
            parser_fail(c, text, len);
        c->event_live = 1;
        switch (ev->type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ > 0)
                yfail(c, ev->start_mark.line + 1,
                      ev->start_mark.column + 1,
                      "multiple documents are not supported");
            break;
        case YAML_SCALAR_EVENT:
            on_scalar(c, ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            on_start(c, ev, YN_SEQ, ev->data.sequence_start.tag,
                     ev->data.sequence_start.anchor);
            break;
        case YAML_MAPPING_START_EVENT:
            on_start(c, ev, YN_MAP, ev->data.mapping_start.tag,
                     ev->data.mapping_start.anchor);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            on_end(c);
            break;
        case YAML_ALIAS_EVENT:
            on_alias(c, ev);
            break;
        default:
            break;
        }
        yaml_event_delete(ev);
        c->event_live = 0;
    }
    yaml_parser_delete(&c->parser);
    c->parser_live = 0;
}

/* ------------------------------------------------------------------ */
/* Pass 2: tree -> Lua                                                 */
/* ------------------------------------------------------------------ */

static void path_reserve(struct yctx *c, size_t extra,
                         const struct ynode *at)
{
    if (weir_buf_reserve(&c->path, extra) != WEIR_OK)
        yfail_at(c, at, "out of memory");
}

/* Appends ".key" (or "key" at the root); returns the length to restore. */
static size_t path_key(struct yctx *c, const char *key, size_t n,
                       const struct ynode *at)
{
    size_t old = c->path.len;

    path_reserve(c, n + 1, at);
    if (c->path.len > 0)
        c->path.data[c->path.len++] = '.';
    memcpy(c->path.data + c->path.len, key, n);
    c->path.len += n;
    return old;
}

static size_t path_index(struct yctx *c, size_t i, const struct ynode *at)
{
    size_t old = c->path.len;

    path_reserve(c, 24, at);
    c->path.len += (size_t)snprintf(c->path.data + c->path.len, 24, "[%zu]", i);
    return old;
}

static void record_line(struct yctx *c, uint32_t line,
                        const struct ynode *at)
{
    c->path_total += c->path.len + 16;
    if (c->path_total > YAML_MAX_PATH_BYTES)
        yfail_at(c, at, "document too large");
    lua_pushlstring(c->L, c->path.data, c->path.len);
    lua_pushinteger(c->L, (lua_Integer)line);
    lua_rawset(c->L, SLOT_LINES);
}

static const struct ynode *deref(const struct ynode *nd)
{
    return nd->kind == YN_ALIAS ? nd->target : nd;
}

static void emit(struct yctx *c, const struct ynode *nd, uint32_t line,
                 int depth);

/* Sets the members of mapping m into the table at tidx. seen is the
 * index of the table recording keys already set (tidx itself when null
 * is not nil). Merged members never replace a key already set. */
static void fill_map(struct yctx *c, const struct ynode *m, int tidx,
                     int seen, int merging, int depth)
{
    lua_State *L = c->L;
    int has_merge = 0;
    size_t i, j, old;

    if (depth > YAML_MAX_DEPTH)
        yfail(c, m->line, m->col, "nesting too deep (limit %d)",
              YAML_MAX_DEPTH);
    if (!lua_checkstack(L, 8))
        yfail_at(c, m, "out of memory");
    for (i = 0; i + 1 < m->n; i += 2) {
        const struct ynode *k = m->items[i], *kt = deref(k);

        if (k->merge_key) {
            has_merge = 1;
            continue;
        }
        lua_pushlstring(L, kt->text, kt->len);
        lua_pushvalue(L, -1);
        lua_rawget(L, seen);
        if (!lua_isnil(L, -1)) {
            lua_pop(L, 2);
            if (merging)
                continue;
            yfail(c, k->line, k->col, "duplicate key \"%.64s\"", kt->text);
        }
        lua_pop(L, 1);
        if (seen != tidx) {
            lua_pushvalue(L, -1);
            lua_pushboolean(L, 1);
            lua_rawset(L, seen);
        }
        old = path_key(c, kt->text, kt->len, k);
        emit(c, m->items[i + 1], k->line, depth + 1);
        lua_rawset(L, tidx);
        c->path.len = old;
    }
    if (!has_merge)
        return;
    for (i = 0; i + 1 < m->n; i += 2) {
        const struct ynode *v = m->items[i + 1], *src = deref(v);

        if (!m->items[i]->merge_key)
            continue;
        if (src->kind == YN_MAP) {
            fill_map(c, src, tidx, seen, 1, depth + 1);
            continue;
        }
        if (src->kind != YN_SEQ)
            yfail_at(c, v, "merge value must be a mapping or a sequence "
                     "of mappings");
        for (j = 0; j < src->n; j++) {
            const struct ynode *e = deref(src->items[j]);

            if (e->kind != YN_MAP)
                yfail_at(c, src->items[j], "merge value must be a mapping "
                         "or a sequence of mappings");
            fill_map(c, e, tidx, seen, 1, depth + 1);
        }
    }
}

/* Records nd's line under the current path and pushes its value. */
static void emit(struct yctx *c, const struct ynode *nd, uint32_t line,
                 int depth)
{
    lua_State *L = c->L;
    size_t i, old;
    int tidx;

    record_line(c, line, nd);
    nd = deref(nd);
    switch (nd->kind) {
    case YN_NULL:
        lua_pushvalue(L, ARG_NULL);
        break;
    case YN_BOOL:
        lua_pushboolean(L, nd->boolean);
        break;
    case YN_NUM:
        lua_pushnumber(L, nd->num);
        break;
    case YN_STR:
        lua_pushlstring(L, nd->text, nd->len);
        break;
    case YN_SEQ:
        if (depth > YAML_MAX_DEPTH)
            yfail(c, nd->line, nd->col, "nesting too deep (limit %d)",
                  YAML_MAX_DEPTH);
        if (!lua_checkstack(L, 8))
            yfail_at(c, nd, "out of memory");
        lua_createtable(L, nd->n < 1u << 24 ? (int)nd->n : 0, 0);
        if (c->has_array_mt) {
            lua_pushvalue(L, ARG_ARRAY_MT);
            lua_setmetatable(L, -2);
        }
        for (i = 0; i < nd->n; i++) {
            old = path_index(c, i + 1, nd);
            emit(c, nd->items[i], nd->items[i]->line, depth + 1);
            lua_rawseti(L, -2, (int)(i + 1));
            c->path.len = old;
        }
        break;
    case YN_MAP:
        if (!lua_checkstack(L, 8))
            yfail_at(c, nd, "out of memory");
        lua_createtable(L, 0, nd->n < 1u << 24 ? (int)(nd->n / 2) : 0);
        tidx = lua_gettop(L);
        if (c->nil_null)
            lua_newtable(L);
        fill_map(c, nd, tidx, c->nil_null ? tidx + 1 : tidx, 0, depth);
        if (c->nil_null)
            lua_pop(L, 1);
        break;
    }
}

int weir_yaml_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, ARG_TEXT, &len);
    const char *name = luaL_checkstring(L, ARG_NAME);
    struct yctx *c;

    if (!lua_isnoneornil(L, ARG_ARRAY_MT))
        luaL_checktype(L, ARG_ARRAY_MT, LUA_TTABLE);
    lua_settop(L, ARG_NULL);

    c = lua_newuserdata(L, sizeof(*c));         /* SLOT_GUARD */
    memset(c, 0, sizeof(*c));
    if (luaL_newmetatable(L, YAML_GUARD_MT)) {
        lua_pushcfunction(L, yctx_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    c->L = L;
    c->name = name;
    c->nil_null = lua_isnil(L, ARG_NULL);
    c->has_array_mt = lua_istable(L, ARG_ARRAY_MT);
    lua_newtable(L);                            /* SLOT_ANCHORS */
    lua_newtable(L);                            /* SLOT_LINES */

    load_tree(c, text, len);
    if (c->root == NULL) {
        lua_pushvalue(L, ARG_NULL);
    } else {
        path_reserve(c, 0, c->root);
        emit(c, c->root, c->root->line, 1);
    }
    yctx_release(c);
    lua_pushvalue(L, SLOT_LINES);
    return 2;
}
