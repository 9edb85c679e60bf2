/*
 * bench_sandbox.c - what one task attempt costs inside a worker: a fresh
 * Lua state with its counting allocator, the trusted modules loaded from
 * the embedded bytecode, the task's closure rebuilt in a new sandbox, the
 * task run (a no-op) and its result encoded, the state closed. This is
 * exactly run_job() of runtime/worker.c minus the socket I/O.
 *
 * Usage: bench_sandbox [iterations]   prints the median and p90 in us.
 * A measurement, never an assertion (see docs/performance.md).
 */
#include "weir/lstate.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *MAKE_JOB =
    "local ser = require('weir._ser')\n"
    "local sandbox = require('weir.sandbox')\n"
    "local env, _, names = sandbox.new()\n"
    "local fn = load('return function(ctx) return nil end', '=bench', 't', env)()\n"
    "local blob = assert(ser.encode(fn, { builtins = names, env = env }))\n"
    "return ser.encode({ kind = 'attempt', fn = blob, run_id = 'bench',\n"
    "  task = 't', attempt = 1, pipeline = 'bench', params = {},\n"
    "  inputs = {}, base_dir = '/tmp', roots = { '/tmp' },\n"
    "  output_max = 1048576, log_max = 65536 })\n";

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    lua_State *T = weir_state_new_trusted();
    double *t = malloc(sizeof(double) * (size_t)n);
    size_t len;
    char *job;

    if (T == NULL || t == NULL || luaL_dostring(T, MAKE_JOB) != 0) {
        fprintf(stderr, "bench: %s\n", T ? lua_tostring(T, -1) : "no state");
        return 1;
    }
    {
        const char *j = lua_tolstring(T, -1, &len);

        job = malloc(len);
        memcpy(job, j, len);
    }
    /* built: every attempt state made from scratch; restored: the worker's
     * way (ADR 9), a prepared state saved once and restored for each */
    for (int mode = 0; mode < 2; mode++) {
        static weir_alloc_acc acc;
        double sum = 0;

        for (int i = 0; i < n; i++) {
            double t0 = now_us();
            lua_State *L = mode ? weir_state_snapshot_restore(&acc) : NULL;

            if (L == NULL) {
                memset(&acc, 0, sizeof acc);
                acc.cap = 64u << 20;
                L = weir_state_new_attempt(&acc);
                if (weir_state_load_embedded(L, "weir._worker") != 0 ||
                    lua_pcall(L, 0, 1, 0) != 0) {
                    fprintf(stderr, "bench: %s\n", lua_tostring(L, -1));
                    return 1;
                }
                lua_getfield(L, -1, "prepare");
                if (lua_pcall(L, 0, 0, 0) != 0) {
                    fprintf(stderr, "bench: %s\n", lua_tostring(L, -1));
                    return 1;
                }
                if (mode && weir_state_snapshot_save(L, &acc) != 0) {
                    fprintf(stderr, "bench: cannot save a snapshot\n");
                    return 1;
                }
            }
            lua_getfield(L, -1, "handle");
            lua_pushlstring(L, job, len);
            if (lua_pcall(L, 1, 1, 0) != 0) {
                fprintf(stderr, "bench: %s\n", lua_tostring(L, -1));
                return 1;
            }
            if (i == 0 && strstr(lua_tostring(L, -1), "success") == NULL) {
                fprintf(stderr, "bench: the attempt did not succeed\n");
                return 1;
            }
            lua_close(L);
            t[i] = now_us() - t0;
        }
        for (int i = 0; i < n; i++)
            sum += t[i];
        qsort(t, (size_t)n, sizeof(double), cmp);
        printf("sandbox attempt (%s): n=%d median %.1f us mean %.1f us "
               "p90 %.1f us p99 %.1f us\n", mode ? "restored" : "built", n,
               t[n / 2], sum / n, t[n * 9 / 10], t[n * 99 / 100]);
    }
    weir_state_snapshot_drop();
    free(t);
    free(job);
    lua_close(T);
    return 0;
}
