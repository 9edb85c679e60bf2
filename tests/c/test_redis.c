/*
 * test_redis.c - the Redis pool and connection C API without a server:
 * option checks, the registry (same name, replaced options, drop,
 * shutdown), connect errors without secrets, the error codes. The checks
 * against a server are tests/integration/test_redis_server.c. Ends with
 * every pool freed (ASan checks the rest).
 */
#include "check.h"
#include "redis_opts.h"
#include "weir/redis.h"

#include <string.h>

static const char *secret = "s3cret-never-shown";

static void test_options_and_registry(void)
{
    char err[256];
    weir_redis_opts o = opts_for(1, secret);
    weir_redis_pool *a, *b, *c;
    weir_redis_stats st;

    o.host = "localhost";
    CHECK_EQ_INT(weir_ffi_redis_pool_get("x", &o, &a, err, sizeof err),
                 WEIR_EINVAL);
    CHECK(strstr(err, "numeric IP") != NULL);
    o.host = "127.0.0.1";
    o.username = "u";
    o.password = NULL;
    CHECK_EQ_INT(weir_ffi_redis_pool_get("x", &o, &a, err, sizeof err),
                 WEIR_EINVAL);
    o.username = NULL;
    o.password = secret;
    o.port = 0;
    CHECK_EQ_INT(weir_ffi_redis_pool_get("x", &o, &a, err, sizeof err),
                 WEIR_EINVAL);
    o.port = 1;
    CHECK_EQ_INT(weir_ffi_redis_pool_get("", &o, &a, err, sizeof err),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 0);

    CHECK_EQ_INT(weir_ffi_redis_pool_get("reg", &o, &a, err, sizeof err), 0);
    CHECK_EQ_INT(weir_ffi_redis_pool_get("reg", &o, &b, err, sizeof err), 0);
    CHECK(a == b);
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 1);
    o.db = 2; /* changed options: a new pool replaces the old one */
    CHECK_EQ_INT(weir_ffi_redis_pool_get("reg", &o, &c, err, sizeof err), 0);
    CHECK(c != a);
    weir_ffi_redis_pool_stats(a, &st);
    CHECK_EQ_INT(st.retired, 1);
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 2);
    weir_ffi_redis_pool_release(a);
    weir_ffi_redis_pool_release(b); /* the last reference frees it */
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 1);

    /* port 1: nothing listens; the message names the pool, not secrets */
    {
        weir_redis_conn *k;
        int rc = weir_redis_acquire(c, &k, err, sizeof err);
        CHECK_EQ_INT(rc, WEIR_EIO);
        CHECK(k == NULL);
        CHECK_EQ_INT(weir_ffi_redis_transient(rc), 1);
        CHECK(strstr(err, "redis \"reg\": connect to 127.0.0.1:1") != NULL);
        CHECK(strstr(err, secret) == NULL);
        weir_ffi_redis_pool_stats(c, &st);
        CHECK_EQ_INT(st.open, 0);
        CHECK_EQ_INT(st.in_use, 0);
    }
    CHECK_EQ_INT(weir_ffi_redis_transient(WEIR_ESQL), 0);
    CHECK_EQ_INT(weir_ffi_redis_transient(WEIR_ELIMIT), 0);
    CHECK_EQ_INT(weir_redis_error_code("BUSY Redis is busy", 18), WEIR_EAGAIN);
    CHECK_EQ_INT(weir_redis_error_code("BUSYKEY exists", 14), WEIR_ESQL);
    CHECK_EQ_INT(weir_redis_error_code("LOADING x", 9), WEIR_EAGAIN);
    CHECK_EQ_INT(weir_redis_error_code("WRONGPASS x", 11), WEIR_EPERM);

    CHECK_EQ_INT(weir_ffi_redis_pool_drop("reg"), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_redis_pool_drop("reg"), WEIR_ENOENT);
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 1); /* c still holds it */
    weir_ffi_redis_pool_release(c);
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 0);
}


int main(void)
{
    test_options_and_registry();
    weir_ffi_redis_shutdown();
    CHECK_EQ_INT(weir_ffi_redis_live_pools(), 0);
    return CHECK_DONE();
}
