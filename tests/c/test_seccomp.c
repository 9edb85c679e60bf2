/*
 * test_seccomp.c - the worker's system-call filter (ADR 42), in child
 * processes: once installed, what a worker does all day (memory, reading
 * and writing its descriptors, time, signals to itself) works; the calls
 * libraries try and cope with (opening files, glibc's own sockets, isatty's
 * ioctl) fail with EPERM; and every other call kills the process with
 * SIGSYS, one child per forbidden call.
 */
#include "check.h"
#include "weir/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int lock(void)
{
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           weir_seccomp_install() == 0;
}

/* Each bit of the child's exit code is one expectation that failed. */
static int allowed_child(void)
{
    int bad = 0, p[2], s[2];
    struct timespec ts;
    void *m;

    if (pipe(p) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0 ||
        !lock())
        return 255;
    if (open("/etc/hostname", O_RDONLY) != -1 || errno != EPERM)
        bad |= 1;
    if (openat(AT_FDCWD, "/etc/hostname", O_RDONLY) != -1 || errno != EPERM)
        bad |= 2;
    if (socket(AF_UNIX, SOCK_STREAM, 0) != -1 || errno != EPERM)
        bad |= 4;
    if (ioctl(0, FIONREAD, &(int){ 0 }) != -1 || errno != EPERM)
        bad |= 8;
    m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || munmap(m, 1 << 20) != 0 ||
        write(p[1], "x", 1) != 1 || clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        bad |= 16;
    {
        int one = 1;

        /* the options libpq and hiredis set; plain sends */
        if (setsockopt(s[0], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0
            || send(s[0], "y", 1, 0) != 1 || recv(s[1], &one, 1, 0) != 1)
            bad |= 32;
    }
    if (memfd_create("t", MFD_CLOEXEC) < 0 ||
        syscall(SYS_tgkill, getpid(), gettid(), 0) != 0)
        bad |= 64;
    return bad;
}

/* Forbidden calls: each one is made in a child of its own. */
static void forbidden(int which)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    char *args[] = { "/bin/true", NULL };
    char hdr[24] = { 0 };

    switch (which) {
    case 0:
        execve("/bin/true", args, NULL);
        break;
    case 1:
        kill(getppid(), 0);
        break;
    case 2: /* TCP Fast Open would connect without connect() */
        sendto(0, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&sa, sizeof sa);
        break;
    case 3: /* IPv6 routing headers would steer packets elsewhere */
        setsockopt(0, IPPROTO_IPV6, 51 /* IPV6_RTHDR */, hdr, sizeof hdr);
        break;
    case 4:
        setsockopt(0, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3);
        break;
    case 5:
        syscall(SYS_unshare, CLONE_NEWUSER);
        break;
    case 6: /* a call unknown to the filter */
        syscall(1000);
        break;
    case 7:
        syscall(SYS_tgkill, getppid(), getppid(), 0);
        break;
    case 8:
        syscall(SYS_mount, "none", "/", "tmpfs", 0, NULL);
        break;
#if defined(__x86_64__)
    case 9: /* the x32 ABI's getpid */
        syscall(0x40000000 | SYS_getpid);
        break;
#endif
#ifndef WEIR_ASAN /* LeakSanitizer needs both at exit (seccomp.c) */
    case 10:
        syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
        break;
    case 11:
        fork();
        break;
#endif
    default:
        _exit(3); /* not on this architecture or build */
    }
}

static int run(int (*fn)(int), int which)
{
    int st = 0;
    pid_t pid = fork();

    if (pid == 0)
        _exit(fn(which));
    CHECK(pid > 0);
    CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
    return st;
}

static int forbidden_child(int which)
{
    if (!lock())
        return 255;
    forbidden(which);
    return 0; /* survived: the test fails */
}

static int allowed_wrap(int which)
{
    (void)which;
    return allowed_child();
}

int main(void)
{
    int st = run(allowed_wrap, 0);

    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
    for (int which = 0; which < 12; which++) {
        st = run(forbidden_child, which);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
            continue;
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSYS)
            fprintf(stderr, "forbidden call %d: status %#x\n", which, st);
        CHECK(WIFSIGNALED(st));
        CHECK_EQ_INT(WTERMSIG(st), SIGSYS);
    }
    return CHECK_DONE();
}
