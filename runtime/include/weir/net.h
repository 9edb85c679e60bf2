/*
 * net.h - brokered network connections for workers (docs/adr/0007).
 *
 * A worker's seccomp filter denies the socket() and connect() system
 * calls. The weir binary defines socket() and connect() itself
 * (runtime/interpose.c), so the calls libpq and hiredis make reach it
 * (symbol interposition: the executable's definitions come first). In a
 * worker, once weir_net_client_init has run, these ask the supervisor
 * over the broker socket through weir_net_socket/weir_net_connect: it
 * creates TCP sockets, and connects one only when the destination is an
 * endpoint it allowed (weir_broker_allow_endpoint: the resolved addresses
 * of the connections in weir.yaml). The connect happens on the
 * supervisor's copy of the same open socket, so the worker's descriptor
 * is connected too. Everywhere else (the supervisor, `weir script`) the
 * two calls go straight to the kernel.
 *
 * The packets are private to runtime/ (broker_wire.h): net_client.c is
 * the worker's side, net_server.c the supervisor's. Relies on broker.h
 * for the socket, Linux.
 */
#ifndef WEIR_NET_H
#define WEIR_NET_H

#include "weir/common.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ------------------------------------------------------------------------
 * Worker side (C only).
 * ------------------------------------------------------------------------ */

/*
 * Send this process's socket() and connect() (the weir binary's,
 * interpose.c) to the supervisor from now on, over the broker client
 * socket (weir_broker_client_init). A worker calls it once, after locking
 * itself down; there is no way back. Before it, and in every process that
 * never calls it, the two go straight to the kernel.
 */
void weir_net_client_init(void);

/* 1 once weir_net_client_init has run in this process, else 0. */
int weir_net_client_active(void);

/*
 * Ask the supervisor for a TCP socket, or to connect fd to addr, over the
 * broker client socket, whether or not weir_net_client_init has run. Same
 * contract as the libc calls (-1 and errno; EIO when the broker cannot be
 * reached, EACCES when the supervisor refuses).
 */
int weir_net_socket(int domain, int type, int protocol);
int weir_net_connect(int fd, const struct sockaddr *addr, socklen_t len);

/* weir:cdef:begin */
/*
 * Resolve host (a name or a numeric address) for TCP port in the
 * supervisor: out receives the first addresses as "IP:PORT" or
 * "[IPv6]:PORT" strings separated by '\n' (caller's buffer, len bytes).
 * Returns WEIR_OK, WEIR_ENOENT (name unknown) or WEIR_EINVAL.
 */
WEIR_API int weir_ffi_net_resolve(const char *host, int32_t port, char *out,
                                  size_t len, char *err, size_t errlen);
/* weir:cdef:end */

#endif
