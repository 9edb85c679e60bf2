/*
 * interpose.c - the weir binary's own socket(), connect() and fopen(), in
 * place of libc's for the whole process (fopen: see the end of the file).
 *
 * What: the executable's definitions come first in symbol lookup, and the
 * binary exports them (ENABLE_EXPORTS in CMakeLists.txt), so every call to
 * socket() or connect() by name lands here: libpq's (dlopened,
 * connectors/pq.h) and the Redis connector's (connectors/redis.c). Calls
 * glibc makes inside itself (getaddrinfo's DNS sockets) use internal
 * names and never do.
 *
 * When: active only in a worker, from the moment weir_worker_main has
 * locked the process down and called weir_net_client_init, until it
 * exits. Then each call is a request to the supervisor (net_client.c).
 * Everywhere else, the supervisor and `weir script` (`weir run`'s
 * metadata store on PostgreSQL, `weir health`'s probes, the Lua specs),
 * a call is one flag test and then the system call itself, as libc's
 * would be: nothing goes near the broker. The sockets the supervisor
 * makes and connects for workers never come here at all (net_server.c
 * calls the kernel directly).
 *
 * Why: a worker's seccomp filter denies the socket and connect system
 * calls (ADR 6), yet the PostgreSQL and Redis connectors must connect
 * from workers; the supervisor creates the sockets and connects them only
 * to the endpoints of weir.yaml (ADR 7).
 *
 * Built into the weir executable only (and tests/c/test_interpose), never
 * into libweir: a library must not replace socket() for whoever loads it.
 * Relies on net.h and Linux system call numbers.
 */
#include "weir/memfile.h"
#include "weir/net.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int socket(int domain, int type, int protocol)
{
    if (!weir_net_client_active())
        return (int)syscall(SYS_socket, domain, type, protocol);
    return weir_net_socket(domain, type, protocol);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!weir_net_client_active())
        return (int)syscall(SYS_connect, fd, addr, len);
    return weir_net_connect(fd, addr, len);
}

/*
 * fopen() and fopen64(): in a worker, the memory files of memfile.h (the
 * TLS material libpq's OpenSSL loads by path); everything else, and every
 * call outside workers, goes to the next definition (libc's). A worker's
 * other opens still fail in the kernel (seccomp).
 */
static FILE *open_stream(const char *name, FILE *(**next)(const char *,
                                                          const char *),
                         const char *path, const char *mode)
{
    FILE *f;

    if (weir_net_client_active() && weir_memfile_fopen(path, mode, &f))
        return f;
    if (*next == NULL)
        *(void **)next = dlsym(RTLD_NEXT, name);
    if (*next == NULL) {
        errno = ENOSYS;
        return NULL;
    }
    return (*next)(path, mode);
}

/* by their symbol names: stdio.h may map fopen to fopen64 */
FILE *weir_fopen(const char *path, const char *mode) __asm__("fopen");
FILE *weir_fopen64(const char *path, const char *mode) __asm__("fopen64");

FILE *weir_fopen(const char *path, const char *mode)
{
    static FILE *(*next)(const char *, const char *);
    return open_stream("fopen", &next, path, mode);
}

FILE *weir_fopen64(const char *path, const char *mode)
{
    static FILE *(*next)(const char *, const char *);
    return open_stream("fopen64", &next, path, mode);
}
