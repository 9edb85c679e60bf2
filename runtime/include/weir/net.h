/*
 * net.h - brokered network connections for workers (docs/adr/0007).
 *
 * A worker's seccomp filter denies the socket() and connect() system
 * calls. The weir binary defines socket() and connect() itself, so the
 * calls libpq and hiredis make reach weir_net_socket/weir_net_connect
 * (symbol interposition: the executable's definitions come first). In a
 * worker these ask the supervisor over the broker socket: it creates TCP
 * sockets, and connects one only when the destination is an endpoint it
 * allowed (the resolved addresses of the connections in weir.yaml). The
 * connect happens on the supervisor's copy of the same open socket, so the
 * worker's descriptor is connected too. Outside a worker (no broker client
 * set up) both call the kernel directly.
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
 * Worker side: what the binary's socket() and connect() call.
 * Same contract as the libc calls (-1 and errno).
 * ------------------------------------------------------------------------ */
WEIR_API int weir_net_socket(int domain, int type, int protocol);
WEIR_API int weir_net_connect(int fd, const struct sockaddr *addr,
                              socklen_t len);

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
