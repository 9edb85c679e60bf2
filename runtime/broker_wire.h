/*
 * broker_wire.h - private to runtime/: the packets a worker and its
 * supervisor exchange on the broker socket (fd 4, SOCK_SEQPACKET), for
 * files (broker.h) and for TCP connections (net.h), and what the units on
 * both ends share. Not installed, no cdef region, never seen by Lua.
 *
 *   supervisor: broker_server.c (file policy, dispatch), net_server.c
 *   worker:     broker_client.c (file calls, SQLite shims),
 *               net_client.c (socket/connect requests), reached from the
 *               weir binary's socket()/connect() (interpose.c)
 *   both:       broker_wire.c (sending and receiving one packet)
 *
 * Both ends are built from this header into one library, so the layout is
 * shared by construction (same struct layout, same struct stat); the magic
 * numbers only tell the two protocols apart and catch a stray packet.
 *
 * File protocol (host byte order; one request or reply per packet):
 *
 *   request  = struct br_req (24 bytes) + path1 (len1 bytes, no NUL)
 *                                       + path2 (len2 bytes, RENAME only)
 *   reply    = struct br_rep (24 bytes) + payload (len bytes):
 *                STAT/LSTAT: the struct stat; READLINK: the link text;
 *                OPEN: the descriptor in an SCM_RIGHTS control message.
 *
 * Both headers start with magic "WBR1" and version 1; a reply carries the
 * op and the sequence number of its request, the result (>= 0 or -errno)
 * and, for refusals by the broker itself, a BR_R_* reason.
 *
 * Network protocol: struct net_req and struct net_rep, fixed size, magic
 * "WNT1". SOCKET's reply carries the new socket; CONNECT's request carries
 * the worker's socket, which the supervisor connects (ADR 7).
 *
 * Relies on Linux (SCM_RIGHTS, SOCK_SEQPACKET) and common.h.
 */
#ifndef WEIR_BROKER_WIRE_H
#define WEIR_BROKER_WIRE_H

#include "weir/common.h"

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

/* ------------------------------------------------------------------------
 * File protocol
 * ------------------------------------------------------------------------ */

#define BR_MAGIC 0x31524257u    /* "WBR1" read as little-endian bytes */
#define BR_VERSION 1

enum br_op {
    BR_OPEN = 1,
    BR_STAT,
    BR_LSTAT,
    BR_ACCESS,
    BR_UNLINK,
    BR_RENAME,
    BR_READLINK,
    BR_MKDIR,
    BR_RMDIR,
    BR_OP_MAX
};

/* Why the broker refused a path; BR_R_SECOND marks the second path. */
enum br_reason {
    BR_R_NONE = 0,
    BR_R_RELATIVE = 1,  /* path is not absolute */
    BR_R_OUTSIDE = 2,   /* no root is a prefix of the path */
    BR_R_ESCAPE = 3,    /* resolution left the root (.., symlink) */
    BR_R_ROOT = 4,      /* removing/renaming a root or a root's ancestor */
    BR_R_TYPE = 5,      /* not a regular file or directory */
    BR_R_FLAGS = 6,     /* open flags or access mode not allowed */
    BR_R_MALFORMED = 7, /* the request itself was bad */
    BR_R_DENIED = 8,    /* inside a folder denied by weir_broker_deny */
    BR_R_PROTECTED = 9, /* a file of weir_broker_protect, or its folder */
    BR_R_SECOND = 0x100
};

struct br_req {
    uint32_t magic;     /* BR_MAGIC */
    uint16_t version;   /* BR_VERSION */
    uint16_t op;        /* enum br_op */
    uint32_t seq;       /* echoed in the reply */
    int32_t arg;        /* OPEN: O_* flags; ACCESS: R_OK|W_OK|X_OK */
    uint32_t mode;      /* OPEN with O_CREAT, MKDIR: permission bits */
    uint16_t len1;      /* bytes of the first path */
    uint16_t len2;      /* bytes of the second path (RENAME), else 0 */
};

struct br_rep {
    uint32_t magic;
    uint16_t version;
    uint16_t op;
    uint32_t seq;
    int32_t result;     /* >= 0 on success, else -errno */
    uint32_t reason;    /* enum br_reason when the broker refused */
    uint32_t len;       /* payload bytes after the header */
};

#define BR_PATH_MAX (PATH_MAX - 1)      /* bytes, without the NUL */
#define BR_REQ_MAX (sizeof(struct br_req) + 2 * BR_PATH_MAX)
#define BR_PAYLOAD_MAX PATH_MAX
#define BR_REP_MAX (sizeof(struct br_rep) + BR_PAYLOAD_MAX)

_Static_assert(sizeof(struct br_req) == 24, "request header layout");
_Static_assert(sizeof(struct br_rep) == 24, "reply header layout");
_Static_assert(BR_PATH_MAX <= UINT16_MAX, "path length fits len1");
_Static_assert(sizeof(struct stat) <= BR_PAYLOAD_MAX, "stat fits payload");

/* Open flags a request may carry; the server refuses anything else. */
#define BR_OPEN_ALLOWED (O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND \
                         | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY | O_NOCTTY \
                         | O_NONBLOCK | O_LARGEFILE)
#define BR_FILE_MODE_MAX 0644
#define BR_DIR_MODE_MAX 0755
/* OPEN's mode bit for WEIR_O_TEMP (above any permission bit) */
#define BR_MODE_TEMP 0x10000u

/* ------------------------------------------------------------------------
 * Network protocol
 * ------------------------------------------------------------------------ */

#define NET_MAGIC 0x31544e57u   /* "WNT1" read as little-endian bytes */

enum { NET_SOCKET = 1, NET_CONNECT = 2 };

struct net_req {
    uint32_t magic;
    uint16_t op;
    uint16_t addrlen;       /* CONNECT: bytes of addr */
    uint32_t seq;
    int32_t domain, type, protocol;
    unsigned char addr[sizeof(struct sockaddr_in6)];
};

struct net_rep {
    uint32_t magic;
    uint16_t op;
    uint16_t pad;
    uint32_t seq;
    int32_t result;         /* 0 (SOCKET: a descriptor is attached) or -errno */
};

/* ------------------------------------------------------------------------
 * Breaker protocol: a worker maps the breaker table read-only and asks
 * the supervisor for every change (breaker.c, ADR 13): struct brk_req and
 * struct brk_rep, fixed size, magic "WBK1".
 * ------------------------------------------------------------------------ */

#define BRK_MAGIC 0x314b4257u   /* "WBK1" read as little-endian bytes */

enum { BRK_SLOT = 1, BRK_ALLOW = 2, BRK_RECORD = 3 };

struct brk_req {
    uint32_t magic;
    uint16_t op;
    uint16_t pad;
    uint32_t seq;
    int32_t slot;           /* ALLOW, RECORD */
    int32_t success;        /* RECORD */
    int32_t threshold;      /* SLOT: the weir_breaker_cfg */
    int32_t probes;
    int32_t pad2;
    double window_ms;
    double open_ms;
    char name[64];          /* SLOT: NUL-terminated */
};

struct brk_rep {
    uint32_t magic;
    uint16_t op;
    uint16_t pad;
    uint32_t seq;
    int32_t result;         /* WEIR_OK or a negative WEIR_E... */
    int32_t value;          /* SLOT: the slot; ALLOW: the state */
    double retry_ms;        /* ALLOW */
};

/*
 * Serve one breaker request in[0..n) that arrived on sock with the
 * process's own (writable) table, for the breakers named in names only.
 * Replies on sock. Returns WEIR_OK, WEIR_EINVAL (malformed; an error reply
 * was sent), WEIR_ECLOSED or WEIR_EIO (the reply could not be sent).
 */
int weir_breaker_serve(const char *const *names, size_t nnames, int sock,
                       const void *in, size_t n);

/* ------------------------------------------------------------------------
 * Both ends (broker_wire.c)
 * ------------------------------------------------------------------------ */

/* Send one packet on sock, attaching fd when >= 0. 0, or -errno. */
int weir_wire_send(int sock, const void *buf, size_t len, int fd);

/*
 * Wait for and receive one packet on sock into buf (cap bytes), retrying
 * EINTR and waiting out EAGAIN. *fd_out gets the first descriptor it
 * carried (-1: none; any others are closed) and *flags_out the message
 * flags (MSG_TRUNC, MSG_CTRUNC). Returns the bytes received, 0 when the
 * peer closed, or -1 with errno.
 */
ssize_t weir_wire_recv(int sock, void *buf, size_t cap, int *fd_out,
                       int *flags_out);

/*
 * Close every descriptor carried in msg's control data, except the first
 * when keep_first, which is returned (-1 when none is kept).
 */
int weir_wire_take_fds(struct msghdr *msg, int keep_first);

/*
 * Close a descriptor a peer passed. A socket's SO_LINGER is switched off
 * first: with it on and data unsent, this close (the last reference once
 * the worker closed its copy) would block the supervisor for the linger
 * time, up to forever. fd < 0 is ignored.
 */
void weir_wire_close_passed(int fd);

/* strerror(e) into buf, first letter lowercase, as messages want it. */
void weir_wire_errno_text(int e, char *buf, size_t len);

/* ------------------------------------------------------------------------
 * Between the supervisor's units (net_server.c)
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
 * Serve one network request in[0..n) that arrived on sock, with fd the
 * descriptor it carried (-1 if none; always consumed). Replies on sock.
 * Returns WEIR_OK, WEIR_EINVAL (malformed; an error reply was sent) or
 * WEIR_ECLOSED / WEIR_EIO when the reply could not be sent.
 */
int weir_net_serve(const weir_net_allow *allow, int sock, const void *in,
                   size_t n, int fd);

/* ------------------------------------------------------------------------
 * Between the worker's units (broker_client.c)
 * ------------------------------------------------------------------------ */

/* The broker client socket of this process, or -1. */
int weir_broker_client_sock(void);

#endif
