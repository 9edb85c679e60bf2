/*
 * pool.c - the connection pool of the network connectors (see pool.h):
 * the registry, references, checkout with validation, idle timeout and
 * lifetime. What a connection is, and how it is opened, checked and
 * closed, belongs to the connector (weir_pool_class).
 */
#include "weir/pool.h"
#include "weir/clock.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static weir_pool *g_pools; /* every live pool, registered or retired */

static int expired(const weir_pool *p, const weir_pool_conn *c, double now)
{
    return (p->o.max_lifetime_ms > 0
            && now - c->created >= p->o.max_lifetime_ms)
           || (p->o.idle_timeout_ms > 0 && p->open > p->o.min_size
               && now - c->last_used >= p->o.idle_timeout_ms);
}

/* Close idle connections past their time (all of them when all != 0).
 * With g_mu held. */
static void sweep(weir_pool *p, int all)
{
    weir_pool_conn **pp = &p->idle;
    double now = weir_clock_mono_ms();

    while (*pp != NULL) {
        weir_pool_conn *c = *pp;

        if (all || expired(p, c, now)) {
            *pp = c->next;
            p->nidle--;
            p->open--;
            if (!all)
                p->dropped++;
            p->cls->close(c);
        } else {
            pp = &c->next;
        }
    }
}

/* With g_mu held. */
static void unref(weir_pool *p)
{
    weir_pool **pp;

    if (--p->refs > 0)
        return;
    sweep(p, 1);
    for (pp = &g_pools; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    free(p->name);
    p->cls->free(p);
}

/* With g_mu held. */
static void retire(weir_pool *p)
{
    if (p->retired)
        return;
    p->retired = 1;
    sweep(p, 1);
    unref(p);
}

/* The registered pool of cls called name, with g_mu held. */
static weir_pool *find(const weir_pool_class *cls, const char *name)
{
    for (weir_pool *p = g_pools; p != NULL; p = p->next)
        if (!p->retired && p->cls == cls && strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

int weir_pool_init(weir_pool *p, const weir_pool_class *cls,
                   const char *name, const weir_pool_opts *o)
{
    if (o->min_size < 0 || o->max_size < 1 || o->min_size > o->max_size)
        return WEIR_EINVAL;
    p->name = strdup(name);
    if (p->name == NULL)
        return WEIR_ENOMEM;
    p->cls = cls;
    p->o = *o;
    p->refs = 1;
    p->retired = 1; /* until added */
    return WEIR_OK;
}

void weir_pool_add(weir_pool *p)
{
    weir_pool *old;

    pthread_mutex_lock(&g_mu);
    if ((old = find(p->cls, p->name)) != NULL)
        retire(old);
    p->retired = 0;
    p->next = g_pools;
    g_pools = p;
    pthread_mutex_unlock(&g_mu);
}

weir_pool *weir_pool_get(const weir_pool_class *cls, const char *name)
{
    weir_pool *p;

    pthread_mutex_lock(&g_mu);
    if ((p = find(cls, name)) != NULL)
        p->refs++;
    pthread_mutex_unlock(&g_mu);
    return p;
}

void weir_pool_ref(weir_pool *p)
{
    pthread_mutex_lock(&g_mu);
    p->refs++;
    pthread_mutex_unlock(&g_mu);
}

void weir_pool_unref(weir_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&g_mu);
    unref(p); /* a pool never added is in no list: freed all the same */
    pthread_mutex_unlock(&g_mu);
}

void weir_pool_retire(weir_pool *p)
{
    pthread_mutex_lock(&g_mu);
    retire(p);
    pthread_mutex_unlock(&g_mu);
}

int weir_pool_drop(const weir_pool_class *cls, const char *name)
{
    weir_pool *p;

    pthread_mutex_lock(&g_mu);
    if ((p = find(cls, name)) != NULL)
        retire(p);
    pthread_mutex_unlock(&g_mu);
    return p != NULL ? WEIR_OK : WEIR_ENOENT;
}

void weir_pool_drop_all(const weir_pool_class *cls)
{
    weir_pool *p;

    pthread_mutex_lock(&g_mu);
    while ((p = g_pools) != NULL) {
        while (p != NULL && (p->retired || p->cls != cls))
            p = p->next;
        if (p == NULL)
            break;
        retire(p);
    }
    pthread_mutex_unlock(&g_mu);
}

int weir_pool_live(const weir_pool_class *cls)
{
    int n = 0;

    pthread_mutex_lock(&g_mu);
    for (weir_pool *p = g_pools; p != NULL; p = p->next)
        n += p->cls == cls;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* Open one connection for p, counted as open and in use while it
 * connects. The caller holds a reference to p. */
static int open_one(weir_pool *p, weir_pool_conn **out, char *err,
                    size_t errlen)
{
    weir_pool_conn *c = NULL;
    int rc;

    pthread_mutex_lock(&g_mu);
    if (p->open >= p->o.max_size) {
        pthread_mutex_unlock(&g_mu);
        return WEIR_ELIMIT;
    }
    p->open++; /* the slot is reserved while connecting */
    p->in_use++;
    p->refs++;
    pthread_mutex_unlock(&g_mu);
    rc = p->cls->open(p, &c, err, errlen);
    pthread_mutex_lock(&g_mu);
    if (rc != WEIR_OK) {
        p->open--;
        p->in_use--;
        unref(p);
    } else {
        c->pool = p;
        c->created = c->last_used = weir_clock_mono_ms();
        c->next = NULL;
        p->connects++;
        *out = c;
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int weir_pool_fill(weir_pool *p, char *err, size_t errlen)
{
    for (;;) {
        weir_pool_conn *c;
        int rc;

        pthread_mutex_lock(&g_mu);
        rc = p->open >= p->o.min_size;
        pthread_mutex_unlock(&g_mu);
        if (rc)
            return WEIR_OK;
        if ((rc = open_one(p, &c, err, errlen)) != WEIR_OK)
            return rc;
        weir_pool_release(c, 1);
    }
}

int weir_pool_acquire(weir_pool *p, weir_pool_conn **out, char *err,
                      size_t errlen)
{
    weir_pool_conn *c;

    *out = NULL;
    pthread_mutex_lock(&g_mu);
    sweep(p, 0);
    while ((c = p->idle) != NULL) {
        int ping;

        p->idle = c->next;
        c->next = NULL;
        p->nidle--;
        p->in_use++;
        p->refs++;
        pthread_mutex_unlock(&g_mu);
        ping = p->o.validate_after_ms >= 0
               && weir_clock_mono_ms() - c->last_used
                      >= p->o.validate_after_ms;
        if (p->cls->check(c, ping)) {
            *out = c;
            return WEIR_OK;
        }
        p->cls->close(c);
        pthread_mutex_lock(&g_mu);
        p->in_use--;
        p->open--;
        p->dropped++;
        unref(p); /* not the last: the caller holds one */
    }
    pthread_mutex_unlock(&g_mu);
    return open_one(p, out, err, errlen);
}

void weir_pool_release(weir_pool_conn *c, int reuse)
{
    weir_pool *p;

    if (c == NULL)
        return;
    p = c->pool;
    c->last_used = weir_clock_mono_ms();
    pthread_mutex_lock(&g_mu);
    p->in_use--;
    if (!reuse || p->retired) {
        p->open--;
        if (!p->retired)
            p->dropped++;
        p->cls->close(c);
    } else {
        c->next = p->idle;
        p->idle = c;
        p->nidle++;
    }
    sweep(p, 0); /* c too, when past its lifetime */
    unref(p);
    pthread_mutex_unlock(&g_mu);
}

void weir_pool_get_stats(weir_pool *p, weir_pool_stats *out)
{
    pthread_mutex_lock(&g_mu);
    out->open = p->open;
    out->idle = p->nidle;
    out->in_use = p->in_use;
    out->retired = p->retired;
    out->connects = p->connects;
    out->dropped = p->dropped;
    pthread_mutex_unlock(&g_mu);
}
