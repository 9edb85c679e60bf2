/*
 * redis_opts.h - the options of a test Redis pool on 127.0.0.1 (short
 * timeouts), for the Redis C tests: tests/c/test_redis.c and
 * tests/integration/test_redis_server.c.
 */
#ifndef WEIR_TEST_REDIS_OPTS_H
#define WEIR_TEST_REDIS_OPTS_H

#include "weir/redis.h"

#include <string.h>

static inline weir_redis_opts opts_for(int port, const char *password)
{
    weir_redis_opts o;

    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = port;
    o.password = password;
    o.connect_timeout_ms = 1000;
    o.command_timeout_ms = 2000;
    return o;
}

#endif
