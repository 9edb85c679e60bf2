/*
 * exec.c - the executor primitive: pre-forked `weir __worker` processes,
 * job frames out, result frames back, broker requests served in between.
 * Workers are started with fork+execve so they inherit nothing but their
 * two sockets (fd 3: jobs/results, fd 4: broker), a scrubbed environment
 * and their own process group (a terminal's Ctrl-C reaches only the
 * supervisor, which then cancels cleanly). Relies on Linux (close_range,
 * SOCK_SEQPACKET, /proc/self/exe).
 */
#include "weir/exec.h"
#include "weir/broker.h"
#include "weir/buf.h"
#include "weir/clock.h"
#include "weir/spin.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    pid_t pid;
    int job_fd;
    int broker_fd;
    int eof;
    int inflight; /* jobs sent whose result has not been read */
    weir_buf in, out;        /* result frames read, job frames to send */
    size_t in_off, out_off;  /* bytes already consumed at the front */
} slot_t;

struct weir_exec {
    int n;
    int spin_armed; /* a job was queued since the last polling wait */
    slot_t *slots;
    char exe[PATH_MAX];
    char user[64];
    long long rlimit_as;
    int nofile;
    weir_broker *broker;
    int shared_fd;
    int32_t preload;
    int watch_fd; /* weir_ffi_exec_watch: -1 none */
};

static int sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t sig_last;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;

    sig_last = sig;
    if (sig_pipe[1] >= 0)
        (void)!write(sig_pipe[1], &b, 1);
    errno = saved;
}

WEIR_API int weir_ffi_signal_install(void)
{
    struct sigaction sa;

    if (sig_pipe[0] < 0) {
        if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
            return WEIR_EIO;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return WEIR_OK;
}

WEIR_API int32_t weir_ffi_signal_pending(void)
{
    int32_t s = sig_last;
    unsigned char b[64];

    sig_last = 0;
    if (sig_pipe[0] >= 0)
        while (read(sig_pipe[0], b, sizeof b) > 0)
            ;
    return s;
}

WEIR_API double weir_ffi_now_mono_ms(void)
{
    return weir_clock_mono_ms();
}

WEIR_API double weir_ffi_now_wall_ms(void)
{
    return weir_clock_wall_ms();
}

WEIR_API void weir_ffi_sleep_ms(double ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1e3);
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1e3) * 1e6);
    nanosleep(&ts, NULL);
}

WEIR_API int32_t weir_ffi_getpid(void)
{
    return (int32_t)getpid();
}

WEIR_API int32_t weir_ffi_pid_alive(int32_t pid)
{
    char path[64], buf[256], *p;
    FILE *f;
    size_t n;

    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
        return 0;
    /* a zombie (killed, not yet reaped) is not alive */
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return !(p != NULL && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

WEIR_API int weir_ffi_getcwd(char *buf, size_t len)
{
    return getcwd(buf, len) != NULL ? WEIR_OK : WEIR_EIO;
}

/* The first line of a small file into buf (len bytes); 0, or -1. */
static int read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL)
        return -1;
    n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return n > 0 ? 0 : -1;
}

WEIR_API int weir_ffi_proc_identity(int32_t pid, char *out, size_t len)
{
    char path[64], stat[1024], boot[64];
    const char *p;
    unsigned long long start = 0;
    int field;

    if (out == NULL || len == 0 || pid <= 0)
        return WEIR_EINVAL;
    out[0] = '\0';
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_line(path, stat, sizeof stat) != 0)
        return WEIR_ENOENT;
    if (read_line("/proc/sys/kernel/random/boot_id", boot, sizeof boot) != 0)
        boot[0] = '\0';
    /* field 2 (comm) may hold spaces and parentheses: count from the last
     * ')'; field 22 is the start time */
    p = strrchr(stat, ')');
    if (p == NULL)
        return WEIR_EIO;
    for (field = 2; *p != '\0' && field < 22; p++)
        if (*p == ' ')
            field++;
    if (field != 22 || sscanf(p, "%llu", &start) != 1)
        return WEIR_EIO;
    if ((size_t)snprintf(out, len, "%s:%llu", boot, start) >= len)
        return WEIR_ELIMIT;
    return WEIR_OK;
}

WEIR_API int32_t weir_ffi_path_kind(const char *path)
{
    struct stat st;

    if (path == NULL || stat(path, &st) != 0)
        return WEIR_KIND_NONE;
    if (S_ISREG(st.st_mode))
        return WEIR_KIND_FILE;
    return S_ISDIR(st.st_mode) ? WEIR_KIND_DIR : WEIR_KIND_OTHER;
}

WEIR_API int32_t weir_ffi_lstat(const char *path, int64_t *out)
{
    struct stat st;

    out[0] = out[1] = out[2] = out[3] = 0;
    if (path == NULL || lstat(path, &st) != 0)
        return WEIR_KIND_NONE;
    out[0] = (int64_t)st.st_size;
    out[1] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    out[2] = (int64_t)st.st_dev;
    out[3] = (int64_t)st.st_ino;
    if (S_ISREG(st.st_mode))
        return WEIR_KIND_FILE;
    return S_ISDIR(st.st_mode) ? WEIR_KIND_DIR : WEIR_KIND_OTHER;
}

WEIR_API int weir_ffi_dir_list(const char *path, char *out, size_t outlen,
                               char *err, size_t errlen)
{
    DIR *d;
    struct dirent *de;
    size_t used = 0;
    int rc = WEIR_OK;

    if (outlen == 0)
        return WEIR_EINVAL;
    out[0] = '\0';
    d = opendir(path);
    if (d == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT || errno == ENOTDIR ? WEIR_ENOENT : WEIR_EIO;
    }
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0
            || strchr(de->d_name, '\n') != NULL)
            continue;
        if (used + n + 2 > outlen) {
            snprintf(err, errlen, "%s: too many names", path);
            rc = WEIR_ELIMIT;
            break;
        }
        memcpy(out + used, de->d_name, n);
        used += n;
        out[used++] = '\n';
        out[used] = '\0';
    }
    closedir(d);
    return rc;
}

WEIR_API int weir_ffi_realpath(const char *path, char *out, size_t outlen,
                               char *err, size_t errlen)
{
    char *real;

    if (path == NULL || path[0] == '\0' || out == NULL || outlen == 0) {
        snprintf(err, errlen, "realpath: empty path");
        return WEIR_EINVAL;
    }
    real = realpath(path, NULL);
    if (real == NULL) {
        snprintf(err, errlen, "%s", strerror(errno));
        return errno == ENOENT || errno == ENOTDIR ? WEIR_ENOENT : WEIR_EIO;
    }
    if ((size_t)snprintf(out, outlen, "%s", real) >= outlen) {
        free(real);
        snprintf(err, errlen, "realpath: path too long");
        return WEIR_ELIMIT;
    }
    free(real);
    return WEIR_OK;
}

WEIR_API int weir_ffi_private_dir(const char *path, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "private_dir: empty path");
        return WEIR_EINVAL;
    }
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return WEIR_OK;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return WEIR_EIO;
}

WEIR_API int weir_ffi_private_file(const char *path, int32_t create, char *err,
                                   size_t errlen)
{
    struct stat st;
    int fd;

    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "private_file: empty path");
        return WEIR_EINVAL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                        (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
        if (errno == ENOENT && !create)
            return WEIR_OK;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ELOOP ? WEIR_EPERM : WEIR_EIO;
    }
    if (fstat(fd, &st) != 0 ||
        ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return WEIR_EIO;
    }
    close(fd);
    return WEIR_OK;
}

WEIR_API int32_t weir_ffi_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : (int32_t)n;
}

WEIR_API int32_t weir_ffi_isatty(int32_t fd)
{
    return isatty(fd) == 1;
}

WEIR_API int weir_ffi_echo(int32_t fd, int32_t on)
{
    struct termios t;

    if (tcgetattr(fd, &t) != 0)
        return WEIR_EIO;
    if (on)
        t.c_lflag |= ECHO;
    else
        t.c_lflag &= ~(tcflag_t)ECHO;
    return tcsetattr(fd, TCSAFLUSH, &t) == 0 ? WEIR_OK : WEIR_EIO;
}

WEIR_API int64_t weir_ffi_rss_bytes(void)
{
    long long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL)
        return -1;
    if (fscanf(f, "%lld %lld", &size, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : (int64_t)rss * sysconf(_SC_PAGESIZE);
}

/* Drop what was consumed from the front of a queue. */
static void compact(weir_buf *b, size_t *off)
{
    weir_buf_shift(b, *off);
    *off = 0;
}

static void put_u32(char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static int spawn(weir_exec *e, int i, char *err, size_t errlen)
{
    slot_t *s = &e->slots[i];
    int job[2], br[2];
    char as[32], nofile[32];
    char parent[32], preload[16];
    char *argv[] = { e->exe, "__worker", "--user", e->user, "--as", as,
                     "--nofile", nofile, "--parent", parent, "--preload",
                     preload, NULL };
    char *envp[8];
    int ne = 0;
    static const char *pass[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS",
                                  "LSAN_OPTIONS", NULL };
    static char envbuf[3][512];
    pid_t pid;

    snprintf(as, sizeof as, "%lld", e->rlimit_as);
    snprintf(parent, sizeof parent, "%d", (int)getpid());
    snprintf(nofile, sizeof nofile, "%d", e->nofile);
    snprintf(preload, sizeof preload, "%d", (int)e->preload);
    envp[ne++] = "LANG=C";
    envp[ne++] = "PATH=/usr/bin:/bin";
    for (int k = 0; pass[k]; k++) {
        const char *v = getenv(pass[k]);
        if (v) {
            snprintf(envbuf[k], sizeof envbuf[k], "%s=%s", pass[k], v);
            envp[ne++] = envbuf[k];
        }
    }
    envp[ne] = NULL;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, job) != 0) {
        weir_set_err(err, errlen, "executor: socketpair: %s",
                     strerror(errno));
        return WEIR_EIO;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, br) != 0) {
        weir_set_err(err, errlen, "executor: socketpair: %s",
                     strerror(errno));
        close(job[0]);
        close(job[1]);
        return WEIR_EIO;
    }
    pid = fork();
    if (pid < 0) {
        weir_set_err(err, errlen, "executor: fork: %s", strerror(errno));
        close(job[0]);
        close(job[1]);
        close(br[0]);
        close(br[1]);
        return WEIR_EIO;
    }
    if (pid == 0) {
        sigset_t none;
        int a, b, c = -1;

        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        a = fcntl(job[1], F_DUPFD_CLOEXEC, 10);
        b = fcntl(br[1], F_DUPFD_CLOEXEC, 10);
        if (e->shared_fd >= 0)
            c = fcntl(e->shared_fd, F_DUPFD_CLOEXEC, 10);
        if (a < 0 || b < 0 || dup2(a, 3) != 3 || dup2(b, 4) != 4)
            _exit(126);
        /* stdin and stdout: nothing to read, nothing to say; stderr stays
         * for a worker's own fatal messages */
        {
            int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (nul < 0 || dup2(nul, 0) != 0 || dup2(nul, 1) != 1)
                _exit(126);
        }
        if (e->shared_fd >= 0) {
            if (c < 0 || dup2(c, 5) != 5)
                _exit(126);
            close_range(6, ~0U, 0);
        } else {
            close_range(5, ~0U, 0);
        }
        execve(e->exe, argv, envp);
        _exit(127);
    }
    close(job[1]);
    close(br[1]);
    fcntl(job[0], F_SETFL, O_NONBLOCK);
    fcntl(br[0], F_SETFL, O_NONBLOCK);
    s->pid = pid;
    s->job_fd = job[0];
    s->broker_fd = br[0];
    s->eof = 0;
    s->in.len = s->in_off = 0;
    s->out.len = s->out_off = 0;
    return WEIR_OK;
}

static void close_slot(slot_t *s)
{
    if (s->job_fd >= 0)
        close(s->job_fd);
    if (s->broker_fd >= 0)
        close(s->broker_fd);
    s->job_fd = s->broker_fd = -1;
}

WEIR_API int weir_ffi_exec_new(const weir_exec_opts *o, weir_exec **out,
                               char *err, size_t errlen)
{
    weir_exec *e;
    int rc;

    *out = NULL;
    if (o->workers < 1 || o->workers > 1024) {
        weir_set_err(err, errlen, "executor: workers must be 1..1024");
        return WEIR_EINVAL;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return WEIR_ENOMEM;
    e->slots = calloc((size_t)o->workers, sizeof *e->slots);
    if (e->slots == NULL) {
        free(e);
        return WEIR_ENOMEM;
    }
    for (int i = 0; i < o->workers; i++)
        e->slots[i].job_fd = e->slots[i].broker_fd = -1;
    if (o->exe) {
        snprintf(e->exe, sizeof e->exe, "%s", o->exe);
    } else {
        ssize_t k = readlink("/proc/self/exe", e->exe, sizeof e->exe - 1);
        if (k <= 0) {
            weir_set_err(err, errlen, "executor: cannot find own binary");
            weir_ffi_exec_delete(e);
            return WEIR_EIO;
        }
        e->exe[k] = '\0';
    }
    snprintf(e->user, sizeof e->user, "%s", o->user ? o->user : "nobody");
    e->rlimit_as = o->rlimit_as;
    e->nofile = o->rlimit_nofile > 0 ? o->rlimit_nofile : 64;
    rc = weir_broker_new(o->roots, o->nroots, &e->broker, err, errlen);
    for (size_t i = 0; rc == WEIR_OK && i < o->ndeny; i++)
        rc = weir_broker_deny(e->broker, o->deny[i], err, errlen);
    for (size_t i = 0; rc == WEIR_OK && i < o->nprotect; i++)
        rc = weir_broker_protect(e->broker, o->protect[i], 0, err, errlen);
    for (size_t i = 0; rc == WEIR_OK && i < o->nhide; i++)
        rc = weir_broker_protect(e->broker, o->hide[i], 1, err, errlen);
    for (size_t i = 0; rc == WEIR_OK && i < o->nbreakers; i++)
        rc = weir_broker_allow_breaker(e->broker, o->breakers[i], err,
                                       errlen);
    for (size_t i = 0; rc == WEIR_OK && i < o->nendpoints; i++)
        rc = weir_broker_allow_endpoint(e->broker, o->endpoints[i], err,
                                        errlen);
    e->shared_fd = o->shared_fd > 0 ? o->shared_fd : -1;
    e->watch_fd = -1;
    e->preload = o->preload;
    if (rc != WEIR_OK) {
        weir_ffi_exec_delete(e);
        return rc;
    }
    weir_ffi_signal_install();
    for (int i = 0; i < o->workers; i++) {
        e->n = i + 1;
        rc = spawn(e, i, err, errlen);
        if (rc != WEIR_OK) {
            weir_ffi_exec_delete(e);
            return rc;
        }
    }
    *out = e;
    return WEIR_OK;
}

WEIR_API int weir_ffi_exec_journal(weir_exec *e, const char *dir, char *err,
                                   size_t errlen)
{
    if (e == NULL) {
        weir_set_err(err, errlen, "executor: bad arguments");
        return WEIR_EINVAL;
    }
    return weir_broker_journal(e->broker, dir, err, errlen);
}

WEIR_API void weir_ffi_exec_delete(weir_exec *e)
{
    if (e == NULL)
        return;
    for (int i = 0; i < e->n; i++) {
        slot_t *s = &e->slots[i];
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            close_slot(s);
            waitpid(s->pid, NULL, 0);
        }
        weir_buf_free(&s->in);
        weir_buf_free(&s->out);
    }
    /* no worker is left: what their killed attempts left half-written
     * goes (atomic file sinks write to a WEIR_O_TEMP name first) */
    weir_broker_sweep_temps(e->broker);
    weir_broker_delete(e->broker);
    free(e->slots);
    free(e);
}

static int flush_out(slot_t *s)
{
    while (s->out_off < s->out.len) {
        ssize_t k = send(s->job_fd, s->out.data + s->out_off,
                         s->out.len - s->out_off, MSG_NOSIGNAL);
        if (k > 0) {
            s->out_off += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        s->eof = 1; /* broken pipe: the worker is gone */
        return -1;
    }
    s->out_off = s->out.len = 0;
    return 0;
}

WEIR_API int weir_ffi_exec_sendv(weir_exec *e, int32_t slot, uint64_t arg,
                                 const char *const *parts,
                                 const size_t *lens, int32_t n, char *err,
                                 size_t errlen)
{
    slot_t *s;
    char hdr[WEIR_FRAME_HDR];
    size_t len = 0;

    for (int32_t i = 0; i < n; i++)
        len += lens[i];
    if (slot < 0 || slot >= e->n || n < 0 || len > 0x7fffffffu) {
        weir_set_err(err, errlen, "executor: bad slot or frame size");
        return WEIR_EINVAL;
    }
    s = &e->slots[slot];
    compact(&s->out, &s->out_off);
    if (weir_buf_reserve(&s->out, WEIR_FRAME_HDR + len) != WEIR_OK) {
        weir_set_err(err, errlen, "executor: out of memory");
        return WEIR_ENOMEM;
    }
    put_u32(hdr, (uint32_t)len);
    put_u32(hdr + 4, WEIR_FRAME_JOB);
    memcpy(hdr + 8, &arg, 8);
    memcpy(s->out.data + s->out.len, hdr, WEIR_FRAME_HDR);
    s->out.len += WEIR_FRAME_HDR;
    for (int32_t i = 0; i < n; i++) {
        memcpy(s->out.data + s->out.len, parts[i], lens[i]);
        s->out.len += lens[i];
    }
    s->inflight++;
    e->spin_armed = 1;
    /* sent by the next poll: all the jobs of one engine step to a worker
     * then go in one system call */
    return WEIR_OK;
}

WEIR_API int weir_ffi_exec_send(weir_exec *e, int32_t slot, uint64_t arg,
                                const char *data, size_t len, char *err,
                                size_t errlen)
{
    return weir_ffi_exec_sendv(e, slot, arg, &data, &len, 1, err, errlen);
}

static void read_in(slot_t *s)
{
    for (;;) {
        ssize_t k;
        uint32_t plen;

        /* a worker cannot make the supervisor buffer without bound: stop
         * reading past two full frames until they are consumed */
        if (s->in.len - s->in_off >= 2 * (size_t)WEIR_FRAME_MAX)
            return;
        /* stop at the header of an oversized frame: next_frame kills */
        if (s->in.len - s->in_off >= WEIR_FRAME_HDR) {
            memcpy(&plen, s->in.data + s->in_off, 4);
            if (plen > WEIR_FRAME_MAX)
                return;
        }
        if (weir_buf_reserve(&s->in, 65536) != WEIR_OK)
            return;
        k = read(s->job_fd, s->in.data + s->in.len,
                 s->in.cap - s->in.len - 1);
        if (k > 0) {
            s->in.len += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            s->eof = 1;
        return;
    }
}

/* Next complete frame of slot s, or 0. A worker announcing a frame larger
 * than WEIR_FRAME_MAX breaks the protocol: it is killed, never buffered. */
static int next_frame(slot_t *s, const char **data, size_t *len,
                      uint32_t *type)
{
    uint32_t plen;

    if (s->in.len - s->in_off < WEIR_FRAME_HDR)
        return 0;
    memcpy(&plen, s->in.data + s->in_off, 4);
    if (plen > WEIR_FRAME_MAX) {
        kill(s->pid, SIGKILL);
        s->eof = 1;
        s->in.len = s->in_off = 0;
        return 0;
    }
    if (s->in.len - s->in_off < WEIR_FRAME_HDR + (size_t)plen)
        return 0;
    *data = s->in.data + s->in_off + WEIR_FRAME_HDR;
    *len = plen;
    memcpy(type, s->in.data + s->in_off + 4, 4);
    s->in_off += WEIR_FRAME_HDR + plen;
    return 1;
}

static int has_frame(const slot_t *s)
{
    uint32_t plen;

    if (s->in.len - s->in_off < WEIR_FRAME_HDR)
        return 0;
    memcpy(&plen, s->in.data + s->in_off, 4);
    if (plen > WEIR_FRAME_MAX)
        return 1; /* next_frame deals with it */
    return s->in.len - s->in_off >= WEIR_FRAME_HDR + (size_t)plen;
}

/* While exactly one job is in flight (a chain, the serial parts of a DAG)
 * the supervisor first polls without sleeping (spin.h): the result of a
 * short task is then read without a wake-up. Once per job sent: a long
 * task's broker requests also end a wait, and must not each buy another
 * 200 us of polling. With more jobs in flight, the workers have queued
 * work and want the CPUs more than the supervisor needs to wait less. */
#define SPIN_US 200
static weir_spin exec_spin;

WEIR_API int weir_ffi_exec_poll(weir_exec *e, int32_t timeout_ms,
                                weir_exec_event *evs, int32_t max,
                                int32_t *n, char *err, size_t errlen)
{
    struct pollfd *pfd;
    int np = 0, k = 0, ready = 0, busy = 0, prc;

    *n = 0;
    if (max < 1)
        return WEIR_EINVAL;
    for (int i = 0; i < e->n; i++) {
        if (e->slots[i].out.len > e->slots[i].out_off)
            flush_out(&e->slots[i]);
        compact(&e->slots[i].in, &e->slots[i].in_off);
        if (e->slots[i].eof || has_frame(&e->slots[i]))
            ready = 1;
        busy += e->slots[i].inflight;
    }
    pfd = calloc((size_t)(2 * e->n + 2), sizeof *pfd);
    if (pfd == NULL)
        return WEIR_ENOMEM;
    pfd[np].fd = sig_pipe[0];
    pfd[np++].events = POLLIN;
    for (int i = 0; i < e->n; i++) {
        slot_t *s = &e->slots[i];
        pfd[np].fd = s->job_fd;
        pfd[np++].events = POLLIN | (s->out.len > s->out_off ? POLLOUT : 0);
        pfd[np].fd = s->broker_fd;
        pfd[np++].events = POLLIN;
    }
    /* last, so the slots keep their places (1 + 2 * i) */
    pfd[np].fd = e->watch_fd;
    pfd[np++].events = POLLIN;
    prc = 0;
    if (busy == 1 && e->spin_armed && !ready && timeout_ms != 0) {
        e->spin_armed = 0;
        prc = weir_spin_poll(&exec_spin, pfd, (nfds_t)np, SPIN_US);
    }
    if (prc == 0)
        prc = poll(pfd, (nfds_t)np, ready ? 0 : timeout_ms);
    if (prc < 0 && errno != EINTR) {
        weir_set_err(err, errlen, "executor: poll: %s", strerror(errno));
        free(pfd);
        return WEIR_EIO;
    }
    if (pfd[0].revents & POLLIN) {
        int32_t sig = weir_ffi_signal_pending();
        if (sig) {
            evs[k].kind = WEIR_EV_SIGNAL;
            evs[k].slot = -1;
            evs[k].pid = 0;
            evs[k].status = sig;
            evs[k].data = NULL;
            evs[k++].len = 0;
        }
    }
    if (e->watch_fd >= 0 && (pfd[np - 1].revents & POLLIN) && k < max) {
        evs[k].kind = WEIR_EV_WAKE;
        evs[k].slot = -1;
        evs[k].pid = 0;
        evs[k].status = e->watch_fd;
        evs[k].data = NULL;
        evs[k++].len = 0;
    }
    for (int i = 0; i < e->n; i++) {
        slot_t *s = &e->slots[i];
        struct pollfd *pj = &pfd[1 + 2 * i], *pb = &pfd[2 + 2 * i];

        if (pb->revents & (POLLIN | POLLHUP | POLLERR)) {
            int rc;
            do {
                rc = weir_broker_handle(e->broker, s->broker_fd);
            } while (rc == WEIR_OK);
            /* the worker's end is gone: stop polling it (its death shows
             * on the job socket) instead of waking up forever */
            if (rc == WEIR_ECLOSED || (pb->revents & (POLLHUP | POLLERR))) {
                close(s->broker_fd);
                s->broker_fd = -1;
            }
        }
        if (pj->revents & POLLOUT)
            flush_out(s);
        if (pj->revents & (POLLIN | POLLHUP | POLLERR))
            read_in(s);
    }
    free(pfd);
    for (int i = 0; i < e->n && k < max; i++) {
        slot_t *s = &e->slots[i];
        const char *data;
        size_t len;
        uint32_t type;

        while (k < max && next_frame(s, &data, &len, &type)) {
            if (type == WEIR_FRAME_PROGRESS) {
                evs[k].kind = WEIR_EV_PROGRESS;
            } else {
                if (s->inflight > 0)
                    s->inflight--;
                evs[k].kind = WEIR_EV_RESULT;
            }
            evs[k].slot = i;
            evs[k].pid = s->pid;
            evs[k].status = 0;
            evs[k].data = data;
            evs[k++].len = len;
        }
        if (s->eof && k < max && !has_frame(s)) {
            int st = 0, rc;
            pid_t old = s->pid;

            close_slot(s);
            s->inflight = 0;
            if (old <= 0) { /* a replacement that could not be started */
                s->eof = 0;     /* stays inert: never kill(-1) */
                continue;
            }
            kill(old, SIGKILL); /* it may have closed fd 3 and lived on */
            waitpid(old, &st, 0);
            evs[k].kind = WEIR_EV_EXIT;
            evs[k].slot = i;
            evs[k].pid = old;
            evs[k].status = WIFSIGNALED(st) ? -WTERMSIG(st)
                                            : WEXITSTATUS(st);
            evs[k].data = NULL;
            evs[k++].len = 0;
            rc = spawn(e, i, err, errlen);
            if (rc != WEIR_OK) {
                s->pid = -1;
                *n = k;
                return rc;
            }
        }
    }
    *n = k;
    return WEIR_OK;
}

WEIR_API int weir_ffi_exec_kill(weir_exec *e, int32_t slot)
{
    if (slot < 0 || slot >= e->n || e->slots[slot].pid <= 0)
        return WEIR_EINVAL;
    return kill(e->slots[slot].pid, SIGKILL) == 0 ? WEIR_OK : WEIR_EIO;
}

WEIR_API int weir_ffi_exec_interrupt(weir_exec *e, int32_t slot)
{
    if (slot < 0 || slot >= e->n || e->slots[slot].pid <= 0)
        return WEIR_EINVAL;
    return kill(e->slots[slot].pid, SIGINT) == 0 ? WEIR_OK : WEIR_EIO;
}

WEIR_API int32_t weir_ffi_exec_pid(weir_exec *e, int32_t slot)
{
    if (slot < 0 || slot >= e->n)
        return -1;
    return e->slots[slot].pid;
}

WEIR_API int32_t weir_ffi_exec_workers(weir_exec *e)
{
    return e->n;
}

WEIR_API void weir_ffi_exec_watch(weir_exec *e, int32_t fd)
{
    e->watch_fd = fd;
}
