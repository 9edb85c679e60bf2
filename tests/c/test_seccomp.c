/*
 * test_seccomp.c - the worker's system-call filter, in a child process:
 * once installed, opening files, making sockets, running programs,
 * signalling others and ioctl fail with EPERM, while what a worker does
 * all day (memory, reading and writing its descriptors, time) still works.
 */
#include "check.h"
#include "weir/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Each bit of the child's exit code is one expectation that failed. */
static int child(void)
{
    int bad = 0, p[2];
    struct timespec ts;
    char *args[] = { "/bin/true", NULL };
    void *m;

    if (pipe(p) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return 255;
    if (weir_seccomp_install() != 0)
        return 254;
    if (open("/etc/hostname", O_RDONLY) != -1 || errno != EPERM)
        bad |= 1;
    if (openat(AT_FDCWD, "/etc/hostname", O_RDONLY) != -1 || errno != EPERM)
        bad |= 2;
    if (socket(AF_UNIX, SOCK_STREAM, 0) != -1 || errno != EPERM)
        bad |= 4;
    execve("/bin/true", args, NULL);
    if (errno != EPERM)
        bad |= 8;
    if (kill(getppid(), 0) != -1 || errno != EPERM)
        bad |= 16;
    if (ioctl(0, FIONREAD, &(int){ 0 }) != -1 || errno != EPERM)
        bad |= 32;
    m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || write(p[1], "x", 1) != 1 ||
        clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        bad |= 64;
    return bad;
}

int main(void)
{
    int st = 0;
    pid_t pid = fork();

    if (pid == 0)
        _exit(child());
    CHECK(pid > 0);
    CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
    return CHECK_DONE();
}
