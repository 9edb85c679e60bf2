/*
 * test_pool.c - the connection pool (pool.h) with a fake connector whose
 * connections are plain structs: references, idle timeout, lifetime,
 * validation on checkout, exhaustion, the registry. Ages are made by
 * moving a connection's timestamps back, never by sleeping. Every pool
 * and connection is freed at the end (ASan checks it).
 */
#include "check.h"
#include "weir/pool.h"

#include <stdlib.h>

typedef struct {
    weir_pool base;
    int *freed;        /* set when the pool is freed */
} fake_pool;

typedef struct {
    weir_pool_conn base;
    int id;
} fake_conn;

static int n_open, n_closed, n_checks, n_pings, fail_open, fail_check;

static int fake_open(weir_pool *p, weir_pool_conn **out, char *err,
                     size_t errlen)
{
    fake_conn *c;

    (void)p;
    if (fail_open) {
        weir_set_err(err, errlen, "refused");
        return WEIR_EIO;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return WEIR_ENOMEM;
    c->id = ++n_open;
    *out = &c->base;
    return WEIR_OK;
}

static int fake_check(weir_pool_conn *c, int ping)
{
    (void)c;
    n_checks++;
    n_pings += ping;
    return !fail_check;
}

static void fake_close(weir_pool_conn *c)
{
    n_closed++;
    free(c);
}

static void fake_free(weir_pool *p)
{
    fake_pool *f = (fake_pool *)p;

    if (f->freed)
        *f->freed = 1;
    free(f);
}

static const weir_pool_class fake = {
    .open = fake_open, .check = fake_check,
    .close = fake_close, .free = fake_free,
};

/* another connector: its pool names are its own */
static const weir_pool_class other = {
    .open = fake_open, .check = fake_check,
    .close = fake_close, .free = fake_free,
};

static fake_pool *new_pool_of(const weir_pool_class *cls, const char *name,
                              weir_pool_opts o, int *freed)
{
    fake_pool *f = calloc(1, sizeof *f);

    CHECK(f != NULL);
    CHECK_EQ_INT(weir_pool_init(&f->base, cls, name, &o), WEIR_OK);
    f->freed = freed;
    weir_pool_add(&f->base); /* the registry holds the one reference */
    return f;
}

static fake_pool *new_pool(const char *name, weir_pool_opts o, int *freed)
{
    return new_pool_of(&fake, name, o, freed);
}

static weir_pool_opts opts(int min, int max)
{
    return (weir_pool_opts){ .min_size = min, .max_size = max,
                             .idle_timeout_ms = 0, .max_lifetime_ms = 0,
                             .validate_after_ms = -1 };
}

static fake_conn *take(weir_pool *p)
{
    weir_pool_conn *c = NULL;
    char err[64];

    CHECK_EQ_INT(weir_pool_acquire(p, &c, err, sizeof err), WEIR_OK);
    return (fake_conn *)c;
}

/* A pool lives while the registry, a holder or a connection refers to it. */
static void test_references(void)
{
    int freed = 0;
    weir_pool *p;
    fake_conn *a;

    new_pool("ref", opts(0, 2), &freed);
    CHECK_EQ_INT(weir_pool_live(&fake), 1);
    p = weir_pool_get(&fake, "ref");
    CHECK(p != NULL);
    CHECK(weir_pool_get(&fake, "other") == NULL);
    new_pool_of(&other, "ref", opts(0, 1), NULL);
    CHECK(weir_pool_get(&fake, "ref") == p); /* not replaced */
    weir_pool_unref(p);
    CHECK_EQ_INT(weir_pool_live(&other), 1);
    weir_pool_drop_all(&other);
    CHECK_EQ_INT(weir_pool_live(&other), 0);
    a = take(p);
    CHECK(a->base.pool == p);
    CHECK_EQ_INT(weir_pool_drop(&fake, "ref"), WEIR_OK);
    CHECK_EQ_INT(weir_pool_drop(&fake, "ref"), WEIR_ENOENT);
    CHECK(weir_pool_get(&fake, "ref") == NULL); /* not registered */
    weir_pool_unref(p); /* the holder's: the connection still holds it */
    CHECK_EQ_INT(freed, 0);
    CHECK_EQ_INT(weir_pool_live(&fake), 1);
    weir_pool_release(&a->base, 1); /* retired: closed, not kept */
    CHECK_EQ_INT(freed, 1);
    CHECK_EQ_INT(weir_pool_live(&fake), 0);
    CHECK_EQ_INT(n_open, n_closed);

    /* adding under a taken name replaces that pool */
    freed = 0;
    new_pool("rep", opts(0, 1), &freed);
    p = weir_pool_get(&fake, "rep");
    new_pool("rep", opts(0, 1), NULL);
    CHECK_EQ_INT(freed, 0); /* still held */
    CHECK(p->retired);
    weir_pool_unref(p);
    CHECK_EQ_INT(freed, 1);
    weir_pool_drop_all(&fake);
    CHECK_EQ_INT(weir_pool_live(&fake), 0);
}

/* Idle connections are reused most recently used first; past the idle
 * timeout they close, down to min_size; past their lifetime they close
 * when found idle or given back. */
static void test_idle_and_lifetime(void)
{
    weir_pool_opts o = opts(1, 3);
    weir_pool *p;
    weir_pool_stats st;
    fake_conn *a, *b, *c;
    char err[64];
    int closed;

    o.idle_timeout_ms = 1000;
    new_pool("idle", o, NULL);
    p = weir_pool_get(&fake, "idle");
    CHECK_EQ_INT(weir_pool_fill(p, err, sizeof err), WEIR_OK);
    weir_pool_get_stats(p, &st);
    CHECK_EQ_INT(st.open, 1);
    CHECK_EQ_INT(st.idle, 1);
    a = take(p);
    b = take(p);
    c = take(p);
    weir_pool_release(&a->base, 1);
    weir_pool_release(&b->base, 1);
    CHECK(take(p) == b); /* most recently used first */
    weir_pool_release(&b->base, 1);
    weir_pool_release(&c->base, 1);
    weir_pool_get_stats(p, &st);
    CHECK_EQ_INT(st.idle, 3);
    /* all three idle too long: two close, min_size stays */
    closed = n_closed;
    a->base.last_used -= 5000;
    b->base.last_used -= 5000;
    c->base.last_used -= 5000;
    a = take(p);
    CHECK_EQ_INT(n_closed - closed, 2);
    weir_pool_get_stats(p, &st);
    CHECK_EQ_INT(st.open, 1);
    CHECK_EQ_INT(st.dropped, 2);
    /* the lifetime: closed when given back past it */
    p->o.max_lifetime_ms = 1000;
    a->base.created -= 5000;
    closed = n_closed;
    weir_pool_release(&a->base, 1);
    CHECK_EQ_INT(n_closed - closed, 1);
    /* and when found idle past it, even below min_size */
    a = take(p);
    weir_pool_release(&a->base, 1);
    a->base.created -= 5000;
    closed = n_closed;
    b = take(p);
    CHECK(b != a);
    CHECK_EQ_INT(n_closed - closed, 1);
    /* not reusable: closed */
    weir_pool_release(&b->base, 0);
    weir_pool_get_stats(p, &st);
    CHECK_EQ_INT(st.open, 0);
    CHECK_EQ_INT(st.in_use, 0);
    weir_pool_unref(p);
    weir_pool_drop_all(&fake);
}

/* An idle connection is checked on checkout, with a round trip once it
 * was idle validate_after_ms; one failing its check is closed and
 * replaced. */
static void test_validation(void)
{
    weir_pool_opts o = opts(0, 2);
    weir_pool *p;
    weir_pool_stats st;
    fake_conn *a, *b;
    int closed;

    o.validate_after_ms = 1000;
    n_checks = n_pings = 0;
    new_pool("val", o, NULL);
    p = weir_pool_get(&fake, "val");
    a = take(p);
    CHECK_EQ_INT(n_checks, 0); /* new: not checked */
    weir_pool_release(&a->base, 1);
    CHECK(take(p) == a);
    CHECK_EQ_INT(n_checks, 1);
    CHECK_EQ_INT(n_pings, 0); /* idle briefly: no round trip */
    weir_pool_release(&a->base, 1);
    a->base.last_used -= 5000;
    CHECK(take(p) == a);
    CHECK_EQ_INT(n_pings, 1);
    weir_pool_release(&a->base, 1);
    fail_check = 1;
    closed = n_closed;
    b = take(p);
    fail_check = 0;
    CHECK(b != a);
    CHECK_EQ_INT(n_closed - closed, 1);
    weir_pool_get_stats(p, &st);
    CHECK_EQ_INT(st.open, 1);
    CHECK_EQ_INT(st.in_use, 1);
    CHECK_EQ_INT(st.dropped, 1);
    weir_pool_release(&b->base, 1);
    weir_pool_unref(p);
    weir_pool_drop_all(&fake);
}

/* At max_size in use: WEIR_ELIMIT, nothing opened; a failed open frees
 * its slot. */
static void test_exhaustion(void)
{
    weir_pool *p;
    weir_pool_conn *c = NULL;
    weir_pool_stats st;
    fake_conn *a, *b;
    char err[64] = "";
    int opened;

    new_pool("ex", opts(0, 2), NULL);
    p = weir_pool_get(&fake, "ex");
    a = take(p);
    b = take(p);
    opened = n_open;
    CHECK_EQ_INT(weir_pool_acquire(p, &c, err, sizeof err), WEIR_ELIMIT);
    CHECK(c == NULL);
    CHECK_EQ_INT(n_open, opened);
    weir_pool_release(&b->base, 0);
    fail_open = 1;
    CHECK_EQ_INT(weir_pool_acquire(p, &c, err, sizeof err), WEIR_EIO);
    CHECK_EQ_STR(err, "refused");
    fail_open = 0;
    weir_pool_get_stats(p, &st);
    CHECK_EQ_INT(st.open, 1);
    CHECK_EQ_INT(st.in_use, 1);
    b = take(p);
    weir_pool_release(&a->base, 1);
    weir_pool_release(&b->base, 1);
    /* bad options */
    {
        fake_pool f = { 0 };
        weir_pool_opts o = opts(3, 2);

        CHECK_EQ_INT(weir_pool_init(&f.base, &fake, "bad", &o), WEIR_EINVAL);
        o = opts(0, 0);
        CHECK_EQ_INT(weir_pool_init(&f.base, &fake, "bad", &o), WEIR_EINVAL);
    }
    weir_pool_unref(p);
    weir_pool_drop_all(&fake);
}

int main(void)
{
    test_references();
    test_idle_and_lifetime();
    test_validation();
    test_exhaustion();
    CHECK_EQ_INT(weir_pool_live(&fake), 0);
    CHECK_EQ_INT(n_open, n_closed);
    return CHECK_DONE();
}
