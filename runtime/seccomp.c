/*
 * seccomp.c - the worker's system-call filter, an allow-list built with
 * libseccomp (ADR 43). A worker reaches files only through the broker
 * (fd 4), talks only to its supervisor (fd 3) and to the TCP sockets the
 * supervisor connected for it (net.h); after its lock-down it needs little
 * more than memory, reading and writing its descriptors, time and
 * signals to itself. Every other system call kills the whole process
 * (SIGSYS), including calls that do not exist yet and foreign ABIs (x32,
 * i386 entry points). A short list of calls that glibc, OpenSSL and libpq
 * try and cope with failing (opening a configuration file, a DNS socket,
 * isatty's ioctl) fails with EPERM instead, as it did under ADR 6.
 * The list was collected by running the whole test suite (C units, specs,
 * e2e, integration against PostgreSQL and Redis, plain and ASan+UBSan)
 * with the default action set to log. Relies on Linux seccomp-bpf and
 * libseccomp; x86-64 and aarch64.
 */
#include "weir/seccomp.h"

#include <errno.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a worker does all day. */
static const char *const allowed[] = {
    /* its descriptors: fds 3 and 4, stderr, the broker's files and
     * memory files (SQLite databases, file sinks, TLS material) */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
    "pwritev", "close", "lseek", "fstat", "newfstatat", "statx", "fcntl",
    "dup", "dup3", "fsync", "fdatasync", "ftruncate", "fallocate", "flock",
    "fchmod",
    "memfd_create",
    /* memory: LuaJIT's allocator and JIT-free states, glibc's malloc */
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk",
    /* waiting on descriptors (libpq, hiredis, the broker client) */
    "poll", "ppoll", "select", "pselect6",
    /* the connected TCP sockets and the supervisor's socketpair */
    "recvfrom", "recvmsg", "getsockopt", "getsockname", "getpeername",
    "shutdown",
    /* signals, to itself only (tgkill below) */
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "restart_syscall",
    /* time, identity, randomness */
    "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep",
    "clock_nanosleep", "sched_yield", "getpid", "gettid", "getppid",
    "getuid", "geteuid", "getgid", "getegid", "getrandom", "uname",
    "getrusage", "prlimit64", "getrlimit", "sysinfo",
    /* threads' bookkeeping in glibc (no thread is ever made) */
    "futex", "set_robust_list", "rseq",
    "exit", "exit_group",
    NULL,
};

/* Tried by libraries, which cope with the failure: EPERM. */
static const char *const refused[] = {
    /* glibc (nsswitch, passwd, hosts, locale), OpenSSL (its
     * configuration), libpq (~/.pgpass, the service file) */
    "open", "openat", "openat2", "access", "faccessat", "faccessat2",
    "readlink", "readlinkat",
    /* glibc's own DNS sockets; socket() and connect() by name go to the
     * supervisor (interpose.c) */
    "socket", "connect",
    /* isatty() on stdio streams */
    "ioctl",
    NULL,
};

#ifdef WEIR_ASAN
/* AddressSanitizer: LeakSanitizer's check at exit makes the process
 * dumpable again and stops the world with a tracing helper thread (prctl
 * and clone were seen in the ASan+UBSan test run), so sanitizer builds,
 * which are for tests only, allow those. */
static const char *const asan_extra[] = {
    "clone", "prctl", "ptrace", "wait4", NULL,
};
#endif

static int add_list(scmp_filter_ctx ctx, uint32_t action,
                    const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);

        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture (open on aarch64) */
        if (seccomp_rule_add(ctx, action, nr, 0) != 0)
            return -1;
    }
    return 0;
}

/* Calls allowed only with some arguments; with others they kill. */
static int add_conditional(scmp_filter_ctx ctx)
{
    const uint32_t A = SCMP_ACT_ALLOW;
    int rc = 0;

    /* TCP Fast Open would connect without connect(): no MSG_FASTOPEN */
    rc |= seccomp_rule_add(ctx, A, SCMP_SYS(sendto), 1,
                           SCMP_A3(SCMP_CMP_MASKED_EQ, MSG_FASTOPEN, 0));
    rc |= seccomp_rule_add(ctx, A, SCMP_SYS(sendmsg), 1,
                           SCMP_A2(SCMP_CMP_MASKED_EQ, MSG_FASTOPEN, 0));
    rc |= seccomp_rule_add(ctx, A, SCMP_SYS(sendmmsg), 1,
                           SCMP_A3(SCMP_CMP_MASKED_EQ, MSG_FASTOPEN, 0));
    /* libpq and hiredis set TCP options and SOL_SOCKET keepalives; never
     * SO_BINDTODEVICE, nor IPv6 routing headers (which would steer a
     * connected socket's packets to another host) */
    rc |= seccomp_rule_add(ctx, A, SCMP_SYS(setsockopt), 1,
                           SCMP_A1(SCMP_CMP_EQ, IPPROTO_TCP));
    rc |= seccomp_rule_add(ctx, A, SCMP_SYS(setsockopt), 2,
                           SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET),
                           SCMP_A2(SCMP_CMP_NE, SO_BINDTODEVICE));
    /* abort() and raise(): signals to itself only */
    rc |= seccomp_rule_add(ctx, A, SCMP_SYS(tgkill), 1,
                           SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    return rc == 0 ? 0 : -1;
}

int weir_seccomp_install(void)
{
#if defined(__x86_64__) || defined(__aarch64__)
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    int rc = -1;

    if (ctx == NULL) {
        errno = ENOMEM;
        return -1;
    }
    /* another ABI's entry points (i386's int 0x80, x32) kill too; the
     * context holds the native architecture only */
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
                         SCMP_ACT_KILL_PROCESS) == 0 &&
        add_list(ctx, SCMP_ACT_ALLOW, allowed) == 0 &&
#ifdef WEIR_ASAN
        add_list(ctx, SCMP_ACT_ALLOW, asan_extra) == 0 &&
#endif
        add_list(ctx, SCMP_ACT_ERRNO(EPERM), refused) == 0 &&
        add_conditional(ctx) == 0) {
        int e = seccomp_load(ctx);

        if (e == 0)
            rc = 0;
        else
            errno = -e;
    } else {
        errno = EINVAL;
    }
    seccomp_release(ctx);
    return rc;
#else
    errno = ENOSYS;
    return -1;
#endif
}
