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
 * Relies on broker.c for the socket and the dispatch of requests, Linux.
 */
#ifndef WEIR_NET_H
#define WEIR_NET_H

#include "weir/common.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ------------------------------------------------------------------------
 * Supervisor side (C only).
 * ------------------------------------------------------------------------ */

typedef struct weir_net_allow weir_net_allow;

/*
 * Add "IP:PORT" or "[IPv6]:PORT" (numeric only) to *allow, creating the
 * list on first use. Returns WEIR_OK, WEIR_EINVAL (not numeric) or
 * WEIR_ENOMEM, with the reason in err.
 */
int weir_net_allow_add(weir_net_allow **allow, const char *endpoint,
                       char *err, size_t errlen);
void weir_net_allow_free(weir_net_allow *allow);

/*
 * Close a descriptor a worker passed. A socket's SO_LINGER is switched off
 * first: with it on and data unsent, this close (the last reference once
 * the worker closed its copy) would block the supervisor for the linger
 * time, up to forever.
 */
void weir_net_close_passed(int fd);

/* Is the packet in[0..n) a network request (as opposed to a file one)? */
int weir_net_is_request(const void *in, size_t n);

/*
 * Serve one network request in[0..n) that arrived on sock, with fd the
 * descriptor it carried (-1 if none; always consumed). Replies on sock.
 * Returns WEIR_OK, WEIR_EINVAL (malformed; an error reply was sent) or
 * WEIR_ECLOSED / WEIR_EIO when the reply could not be sent.
 */
int weir_net_serve(const weir_net_allow *allow, int sock, const void *in,
                   size_t n, int fd);

/* ------------------------------------------------------------------------
 * Worker side: what the binary's socket() and connect() call.
 * Same contract as the libc calls (-1 and errno).
 * ------------------------------------------------------------------------ */
int weir_net_socket(int domain, int type, int protocol);
int weir_net_connect(int fd, const struct sockaddr *addr,
                     socklen_t len);

/* Send one packet on sock, attaching fd when >= 0 (broker.c): 0, or
 * -errno. */
int weir_broker_send(int sock, const void *buf, size_t len, int fd);

/* The broker client socket of this process, or -1 (set by broker.c). */
int weir_broker_client_sock(void);

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
