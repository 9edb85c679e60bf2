/*
 * test_exec.c - the executor primitive with fake workers: this binary
 * re-executes itself as the worker (argv[1] == "__worker"), so the tests
 * control exactly what a worker sends. Checks: job frames in and result
 * frames out in order, a worker's death reported with its signal and a
 * fresh worker started, SIGKILL on request, and a worker that announces an
 * oversized frame is killed instead of being buffered.
 */
#include "check.h"
#include "weir/exec.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The fake worker's behaviour rides on --user (its environment is
 * scrubbed): "huge" announces an oversized frame, anything else echoes. */
static int fake_worker(int argc, char **argv)
{
    char hdr[WEIR_FRAME_HDR];
    const char *mode = "";

    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], "--user") == 0)
            mode = argv[i + 1];
    if (strcmp(mode, "huge") == 0) {
        uint32_t len = 0xfffffff0u, type = WEIR_FRAME_RESULT;
        memset(hdr, 0, sizeof hdr);
        memcpy(hdr, &len, 4);
        memcpy(hdr + 4, &type, 4);
        if (write(3, hdr, sizeof hdr) != (ssize_t)sizeof hdr)
            return 1;
        pause();
        return 0;
    }
    for (;;) { /* echo: each job comes back as its result */
        uint32_t len, type = WEIR_FRAME_RESULT;
        char *p;
        size_t got = 0;

        while (got < sizeof hdr) {
            ssize_t k = read(3, hdr + got, sizeof hdr - got);
            if (k <= 0)
                return 0;
            got += (size_t)k;
        }
        memcpy(&len, hdr, 4);
        memcpy(hdr + 4, &type, 4);
        p = malloc(len + 1);
        for (got = 0; got < len;) {
            ssize_t k = read(3, p + got, len - got);
            if (k <= 0)
                return 0;
            got += (size_t)k;
        }
        if (len == 5 && memcmp(p, "crash", 5) == 0)
            abort();
        if (write(3, hdr, sizeof hdr) < 0 || write(3, p, len) < 0)
            return 1;
        free(p);
    }
}

static int wait_events(weir_exec *e, weir_exec_event *evs, int want,
                       char *seen, size_t seenlen)
{
    int got = 0;
    int32_t n;
    char err[256];

    seen[0] = '\0';
    for (int tries = 0; tries < 200 && got < want; tries++) {
        if (weir_ffi_exec_poll(e, 50, evs + got, 16, &n, err,
                               sizeof err) != WEIR_OK)
            return -1;
        for (int i = 0; i < n; i++) {
            size_t l = strlen(seen);
            if (evs[got + i].kind == WEIR_EV_RESULT)
                snprintf(seen + l, seenlen - l, "%.*s;",
                         (int)evs[got + i].len, evs[got + i].data);
            else
                snprintf(seen + l, seenlen - l, "exit%d;",
                         evs[got + i].status);
        }
        got += n;
    }
    return got;
}

int main(int argc, char **argv)
{
    weir_exec_opts o;
    weir_exec *e = NULL;
    weir_exec_event evs[64];
    char err[256], seen[512];
    int32_t old;

    if (argc > 1 && strcmp(argv[1], "__worker") == 0)
        return fake_worker(argc, argv);
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.exe = "/proc/self/exe";
    {
        char self[4096];
        ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
        if (k > 0) {
            self[k] = '\0';
            o.exe = strdup(self);
        }
    }
    o.user = "nobody";
    CHECK_EQ_INT(weir_ffi_exec_new(&o, &e, err, sizeof err), WEIR_OK);

    /* jobs in, results out, in order */
    CHECK_EQ_INT(weir_ffi_exec_send(e, 0, 0, "one", 3, err, sizeof err),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_exec_send(e, 0, 0, "two", 3, err, sizeof err),
                 WEIR_OK);
    CHECK_EQ_INT(wait_events(e, evs, 2, seen, sizeof seen), 2);
    CHECK_EQ_STR(seen, "one;two;");

    /* a crash is reported with its signal, and a fresh worker follows */
    old = weir_ffi_exec_pid(e, 0);
    CHECK_EQ_INT(weir_ffi_exec_send(e, 0, 0, "crash", 5, err, sizeof err),
                 WEIR_OK);
    CHECK_EQ_INT(wait_events(e, evs, 1, seen, sizeof seen), 1);
    CHECK_EQ_STR(seen, "exit-6;");
    CHECK(weir_ffi_exec_pid(e, 0) != old);
    CHECK_EQ_INT(weir_ffi_exec_send(e, 0, 0, "after", 5, err, sizeof err),
                 WEIR_OK);
    CHECK_EQ_INT(wait_events(e, evs, 1, seen, sizeof seen), 1);
    CHECK_EQ_STR(seen, "after;");

    /* kill on request */
    CHECK_EQ_INT(weir_ffi_exec_kill(e, 0), WEIR_OK);
    CHECK_EQ_INT(wait_events(e, evs, 1, seen, sizeof seen), 1);
    CHECK_EQ_STR(seen, "exit-9;");
    weir_ffi_exec_delete(e);

    /* an oversized frame gets its worker killed, not a 4 GB buffer */
    o.user = "huge";
    CHECK_EQ_INT(weir_ffi_exec_new(&o, &e, err, sizeof err), WEIR_OK);
    CHECK_EQ_INT(wait_events(e, evs, 1, seen, sizeof seen), 1);
    CHECK_EQ_STR(seen, "exit-9;");
    weir_ffi_exec_delete(e);
    free((void *)o.exe);
    return CHECK_DONE();
}
