/*
 * broker_client.c - the worker's side of the file broker: the
 * weir_ffi_file_* calls and SQLite's unix VFS system calls turn into
 * requests on the broker socket (fd 4) and block for the matching reply.
 * Before weir_broker_client_init (the supervisor, `weir script`) the same
 * weir_ffi_file_* calls act directly, with the process's own rights. The
 * supervisor's side is broker_server.c, the packets are in broker_wire.h.
 *
 * Relies on Linux, glibc, SQLite >= 3.40 (the xSetSystemCall names) and
 * common.h.
 */
#include "weir/broker.h"

#include "broker_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The worker is single-threaded and blocks for each reply, so the client
 * keeps its state (and its packet buffers below) in statics.
 */
static int client_sock = -1;
static uint32_t client_seq;

struct br_result {
    int32_t result;     /* >= 0, or -errno */
    uint32_t reason;    /* BR_R_* */
    int fd;             /* OPEN: the received descriptor, else -1 */
    size_t len;         /* payload bytes */
};

/* Make path absolute (relative to the cwd) into out[PATH_MAX]; -errno. */
static int client_abs(const char *path, char *out, size_t *len)
{
    size_t n = strlen(path), c;

    if (n == 0)
        return -ENOENT;
    if (path[0] == '/') {
        if (n > BR_PATH_MAX)
            return -ENAMETOOLONG;
        memcpy(out, path, n + 1);
        *len = n;
        return 0;
    }
    if (getcwd(out, PATH_MAX) == NULL)
        return -errno;
    c = strlen(out);
    if (c + 1 + n > BR_PATH_MAX)
        return -ENAMETOOLONG;
    out[c] = '/';
    memcpy(out + c + 1, path, n + 1);
    *len = c + 1 + n;
    return 0;
}

/*
 * One round trip. Returns 0 with *res filled (the operation may still have
 * failed: res->result), or -1 with errno EPIPE (broker closed) or EPROTO.
 * payload (cap bytes) receives STAT/READLINK data; may be NULL if cap is 0.
 */
static int client_call(uint16_t op, const char *path1, const char *path2,
                       int32_t arg, uint32_t mode, void *payload, size_t cap,
                       struct br_result *res)
{
    static unsigned char buf[BR_REQ_MAX > BR_REP_MAX ? BR_REQ_MAX
                                                     : BR_REP_MAX];
    static char a1[PATH_MAX], a2[PATH_MAX];
    struct br_req rq;
    struct br_rep rep;
    size_t n1, n2 = 0;
    ssize_t n;
    int rc, fd, flags;

    res->result = 0;
    res->reason = BR_R_NONE;
    res->fd = -1;
    res->len = 0;
    if (client_sock < 0) {
        errno = EPIPE;
        return -1;
    }
    rc = client_abs(path1, a1, &n1);
    if (rc == 0 && path2 != NULL) {
        rc = client_abs(path2, a2, &n2);
        if (rc != 0)
            res->reason = BR_R_SECOND;
    }
    if (rc != 0) {
        res->result = rc;
        return 0;
    }

    memset(&rq, 0, sizeof(rq));
    rq.magic = BR_MAGIC;
    rq.version = BR_VERSION;
    rq.op = op;
    rq.seq = ++client_seq;
    rq.arg = arg;
    rq.mode = mode;
    rq.len1 = (uint16_t)n1;
    rq.len2 = (uint16_t)n2;
    memcpy(buf, &rq, sizeof(rq));
    memcpy(buf + sizeof(rq), a1, n1);
    memcpy(buf + sizeof(rq) + n1, a2, n2);
    rc = weir_wire_send(client_sock, buf, sizeof(rq) + n1 + n2, -1);
    if (rc != 0) {
        errno = (rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN)
                ? EPIPE : EPROTO;
        return -1;
    }

    for (;;) {
        n = weir_wire_recv(client_sock, buf, sizeof(buf), &fd, &flags);
        if (n <= 0) {
            errno = (n == 0 || errno == ECONNRESET || errno == ENOTCONN)
                    ? EPIPE : EPROTO;
            return -1;
        }
        memcpy(&rep, buf, (size_t)n < sizeof(rep) ? (size_t)n : sizeof(rep));
        if ((size_t)n >= sizeof(rep) && rep.magic == BR_MAGIC
            && rep.version == BR_VERSION && rep.seq != rq.seq
            && (int32_t)(rq.seq - rep.seq) > 0) {
            /* A stale reply to an earlier request: skip it. */
            if (fd >= 0)
                close(fd);
            continue;
        }
        break;
    }
    if ((size_t)n < sizeof(rep) || rep.magic != BR_MAGIC
        || rep.version != BR_VERSION || rep.seq != rq.seq || rep.op != op
        || (flags & (MSG_TRUNC | MSG_CTRUNC))
        || rep.len != (size_t)n - sizeof(rep) || rep.len > cap
        || (fd >= 0 && (op != BR_OPEN || rep.result < 0))
        || (op == BR_OPEN && rep.result >= 0 && fd < 0)) {
        if (fd >= 0)
            close(fd);
        errno = EPROTO;
        return -1;
    }
    if (rep.len > 0)
        memcpy(payload, buf + sizeof(rep), rep.len);
    res->result = rep.result;
    res->reason = rep.reason;
    res->fd = fd;
    res->len = rep.len;
    return 0;
}

/* ------------------------------------------------------------------------
 * Worker side: SQLite unix VFS system call shims
 *
 * Each behaves like the libc call it replaces: -1 and errno on failure.
 * A refusal by the broker is EPERM; a broken broker link is EIO.
 * ------------------------------------------------------------------------ */

/* Run a call through the broker; returns result or -1 with errno. */
static long shim_call(uint16_t op, const char *path, int32_t arg,
                      uint32_t mode, void *payload, size_t cap,
                      struct br_result *res)
{
    if (path == NULL) {
        errno = EFAULT;
        return -1;
    }
    if (client_call(op, path, NULL, arg, mode, payload, cap, res) != 0) {
        errno = EIO;
        return -1;
    }
    if (res->result < 0) {
        errno = -res->result;
        return -1;
    }
    return res->result;
}

static int shim_open(const char *path, int flags, int mode)
{
    struct br_result res;
    int fd;

    /* SQLite seeds its PRNG from /dev/urandom; that device is no secret
     * and outside every root, so the worker opens it itself. */
    if (path != NULL && strcmp(path, "/dev/urandom") == 0
        && (flags & (O_ACCMODE | O_CREAT | O_TRUNC)) == O_RDONLY)
        return open(path, flags | O_CLOEXEC);
    if (shim_call(BR_OPEN, path, flags, (uint32_t)mode, NULL, 0, &res) < 0)
        return -1;
    fd = res.fd;
    if (!(flags & O_CLOEXEC)) {
        int fl = fcntl(fd, F_GETFD);

        if (fl >= 0)
            (void)fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
    return fd;
}

static int shim_access(const char *path, int mode)
{
    struct br_result res;

    return shim_call(BR_ACCESS, path, mode, 0, NULL, 0, &res) < 0 ? -1 : 0;
}

static int shim_stat_op(uint16_t op, const char *path, struct stat *st)
{
    struct br_result res;
    struct stat tmp;

    if (shim_call(op, path, 0, 0, &tmp, sizeof(tmp), &res) < 0)
        return -1;
    if (res.len != sizeof(tmp)) {
        errno = EIO;
        return -1;
    }
    memcpy(st, &tmp, sizeof(tmp));
    return 0;
}

static int shim_stat(const char *path, struct stat *st)
{
    return shim_stat_op(BR_STAT, path, st);
}

static int shim_lstat(const char *path, struct stat *st)
{
    return shim_stat_op(BR_LSTAT, path, st);
}

static int shim_unlink(const char *path)
{
    struct br_result res;

    return shim_call(BR_UNLINK, path, 0, 0, NULL, 0, &res) < 0 ? -1 : 0;
}

static int shim_rmdir(const char *path)
{
    struct br_result res;

    return shim_call(BR_RMDIR, path, 0, 0, NULL, 0, &res) < 0 ? -1 : 0;
}

static int shim_mkdir(const char *path, mode_t mode)
{
    struct br_result res;

    return shim_call(BR_MKDIR, path, 0, (uint32_t)mode, NULL, 0, &res) < 0
           ? -1 : 0;
}

static ssize_t shim_readlink(const char *path, char *buf, size_t len)
{
    static char text[BR_PAYLOAD_MAX];
    struct br_result res;

    if (shim_call(BR_READLINK, path, 0, 0, text, sizeof(text), &res) < 0)
        return -1;
    if (res.len > len)
        res.len = len;      /* readlink(2) truncates silently */
    memcpy(buf, text, res.len);
    return (ssize_t)res.len;
}

static const struct {
    const char *name;
    sqlite3_syscall_ptr fn;
    int required;
} client_shims[] = {
    { "open", (sqlite3_syscall_ptr)shim_open, 1 },
    { "access", (sqlite3_syscall_ptr)shim_access, 1 },
    { "stat", (sqlite3_syscall_ptr)shim_stat, 1 },
    { "unlink", (sqlite3_syscall_ptr)shim_unlink, 1 },
    { "lstat", (sqlite3_syscall_ptr)shim_lstat, 0 },
    { "readlink", (sqlite3_syscall_ptr)shim_readlink, 0 },
    { "mkdir", (sqlite3_syscall_ptr)shim_mkdir, 0 },
    { "rmdir", (sqlite3_syscall_ptr)shim_rmdir, 0 },
};

static sqlite3_vfs *client_vfs(void)
{
    sqlite3_vfs *vfs = sqlite3_vfs_find(NULL);

    if (vfs == NULL || vfs->iVersion < 3 || vfs->xSetSystemCall == NULL)
        return NULL;
    return vfs;
}

void weir_broker_client_reset(void)
{
    sqlite3_vfs *vfs = client_vfs();
    size_t i;

    client_sock = -1;
    if (vfs == NULL)
        return;
    for (i = 0; i < sizeof(client_shims) / sizeof(client_shims[0]); i++)
        (void)vfs->xSetSystemCall(vfs, client_shims[i].name, NULL);
}

int weir_broker_client_init(int sock)
{
    sqlite3_vfs *vfs;
    size_t i;

    if (sock < 0)
        return WEIR_EINVAL;
    vfs = client_vfs();
    if (vfs == NULL)
        return WEIR_EIO;
    for (i = 0; i < sizeof(client_shims) / sizeof(client_shims[0]); i++) {
        int rc = vfs->xSetSystemCall(vfs, client_shims[i].name,
                                     client_shims[i].fn);

        if (rc != SQLITE_OK && client_shims[i].required) {
            weir_broker_client_reset();
            return WEIR_EIO;
        }
    }
    client_sock = sock;
    return WEIR_OK;
}

/* ------------------------------------------------------------------------
 * Worker side: the FFI file calls
 * ------------------------------------------------------------------------ */

static const struct {
    int32_t weir;
    int host;
} ffi_flags[] = {
    { WEIR_O_CREAT, O_CREAT },
    { WEIR_O_EXCL, O_EXCL },
    { WEIR_O_NOCTTY, O_NOCTTY },
    { WEIR_O_TRUNC, O_TRUNC },
    { WEIR_O_APPEND, O_APPEND },
    { WEIR_O_NONBLOCK, O_NONBLOCK },
    { WEIR_O_DIRECTORY, O_DIRECTORY },
    { WEIR_O_NOFOLLOW, O_NOFOLLOW },
    { WEIR_O_CLOEXEC, O_CLOEXEC },
};

/* WEIR_O_* to host O_*; -1 when a bit is unknown or the mode invalid. */
static int ffi_host_flags(int32_t flags)
{
    int32_t left = flags & ~3;
    int host = flags & 3;
    size_t i;

    if ((flags & 3) == 3)
        return -1;
    for (i = 0; i < sizeof(ffi_flags) / sizeof(ffi_flags[0]); i++) {
        if (left & ffi_flags[i].weir) {
            host |= ffi_flags[i].host;
            left &= ~ffi_flags[i].weir;
        }
    }
    return left == 0 ? host : -1;
}

/* Map a result (-errno and reason) to a status code and message. */
static int ffi_status(const char *verb, const char *path, const char *path2,
                      int result, uint32_t reason, char *err, size_t errlen)
{
    const char *p = (reason & BR_R_SECOND) && path2 != NULL ? path2 : path;
    char text[128];
    int e = -result;

    switch (reason & ~BR_R_SECOND) {
    case BR_R_OUTSIDE:
        weir_set_err(err, errlen, "path \"%s\" is outside the allowed roots",
                     p);
        return WEIR_EPERM;
    case BR_R_ESCAPE:
        weir_set_err(err, errlen, "path \"%s\" is outside the allowed roots "
                     "(it leaves its root through \"..\" or a symlink)", p);
        return WEIR_EPERM;
    case BR_R_RELATIVE:
        weir_set_err(err, errlen, "path \"%s\" is not absolute", p);
        return WEIR_EPERM;
    case BR_R_ROOT:
        weir_set_err(err, errlen, "path \"%s\" is an allowed root or "
                     "contains one", p);
        return WEIR_EPERM;
    case BR_R_TYPE:
        weir_set_err(err, errlen, "path \"%s\" is not a regular file or "
                     "directory", p);
        return WEIR_EPERM;
    case BR_R_FLAGS:
        weir_set_err(err, errlen, "%s \"%s\": flags not allowed", verb, p);
        return WEIR_EINVAL;
    case BR_R_DENIED:
        weir_set_err(err, errlen, "path \"%s\" is inside weir's state "
                     "folder or a secrets folder",
                     p);
        return WEIR_EPERM;
    case BR_R_PROTECTED:
        weir_set_err(err, errlen, "path \"%s\" is protected (weir's "
                     "configuration, a secret it reads or the pipeline file)",
                     p);
        return WEIR_EPERM;
    default:
        break;
    }
    weir_wire_errno_text(e, text, sizeof(text));
    weir_set_err(err, errlen, "%s \"%s\": %s", verb, p, text);
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return WEIR_ENOENT;
    case EACCES:
    case EPERM:
    case EROFS:
        return WEIR_EPERM;
    case EINVAL:
        return WEIR_EINVAL;
    case EAGAIN:
        return WEIR_EAGAIN;
    default:
        return WEIR_EIO;
    }
}

/* Report a failed round trip (errno from client_call). */
static int ffi_transport(char *err, size_t errlen)
{
    if (errno == EPIPE) {
        weir_set_err(err, errlen, "file broker closed");
        return WEIR_ECLOSED;
    }
    weir_set_err(err, errlen, "file broker protocol error");
    return WEIR_EIO;
}

static int ffi_bad_path(const char *path, char *err, size_t errlen)
{
    if (path == NULL) {
        weir_set_err(err, errlen, "bad 'path' (string expected, got NULL)");
        return 1;
    }
    return 0;
}

WEIR_API int weir_ffi_file_open(const char *path, int32_t flags,
                                int32_t mode, int32_t *fd_out, char *err,
                                size_t errlen)
{
    struct br_result res;
    int host, fd, temp;

    if (ffi_bad_path(path, err, errlen) || fd_out == NULL)
        return WEIR_EINVAL;
    *fd_out = -1;
    temp = (flags & WEIR_O_TEMP) != 0;
    flags &= ~WEIR_O_TEMP;
    if (temp && (flags & (WEIR_O_CREAT | WEIR_O_EXCL))
                    != (WEIR_O_CREAT | WEIR_O_EXCL))
        return ffi_status("open", path, NULL, -EINVAL, BR_R_FLAGS, err,
                          errlen);
    host = ffi_host_flags(flags);
    if (host < 0)
        return ffi_status("open", path, NULL, -EINVAL, BR_R_FLAGS, err,
                          errlen);
    if (mode <= 0)
        mode = BR_FILE_MODE_MAX;
    mode &= BR_FILE_MODE_MAX;
    if (client_sock < 0) {
        do
            fd = open(path, host, (mode_t)mode);
        while (fd < 0 && errno == EINTR);
        if (fd < 0)
            return ffi_status("open", path, NULL, -errno, 0, err, errlen);
        *fd_out = fd;
        return WEIR_OK;
    }
    if (client_call(BR_OPEN, path, NULL, host,
                    (uint32_t)mode | (temp ? BR_MODE_TEMP : 0), NULL, 0,
                    &res) != 0)
        return ffi_transport(err, errlen);
    if (res.result < 0)
        return ffi_status("open", path, NULL, res.result, res.reason, err,
                          errlen);
    if (!(host & O_CLOEXEC)) {
        int fl = fcntl(res.fd, F_GETFD);

        if (fl >= 0)
            (void)fcntl(res.fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
    *fd_out = res.fd;
    return WEIR_OK;
}

/* A path operation that returns nothing but a status. */
static int ffi_simple(uint16_t op, const char *verb, const char *path,
                      const char *path2, uint32_t mode, char *err,
                      size_t errlen)
{
    struct br_result res;
    int rc;

    if (ffi_bad_path(path, err, errlen)
        || (op == BR_RENAME && ffi_bad_path(path2, err, errlen)))
        return WEIR_EINVAL;
    if (client_sock < 0) {
        switch (op) {
        case BR_UNLINK:
            rc = unlink(path);
            break;
        case BR_RENAME:
            rc = rename(path, path2);
            break;
        default:
            rc = mkdir(path, (mode_t)mode);
            break;
        }
        if (rc != 0)
            return ffi_status(verb, path, path2, -errno, 0, err, errlen);
        return WEIR_OK;
    }
    if (client_call(op, path, path2, 0, mode, NULL, 0, &res) != 0)
        return ffi_transport(err, errlen);
    if (res.result < 0)
        return ffi_status(verb, path, path2, res.result, res.reason, err,
                          errlen);
    return WEIR_OK;
}

WEIR_API int weir_ffi_file_unlink(const char *path, char *err, size_t errlen)
{
    return ffi_simple(BR_UNLINK, "unlink", path, NULL, 0, err, errlen);
}

WEIR_API int weir_ffi_file_rename(const char *from, const char *to,
                                  char *err, size_t errlen)
{
    return ffi_simple(BR_RENAME, "rename", from, to, 0, err, errlen);
}

WEIR_API int weir_ffi_file_mkdir(const char *path, char *err, size_t errlen)
{
    return ffi_simple(BR_MKDIR, "mkdir", path, NULL, BR_DIR_MODE_MAX, err,
                      errlen);
}

WEIR_API int weir_ffi_file_exists(const char *path, int32_t *exists_out,
                                  char *err, size_t errlen)
{
    struct br_result res;
    int result;

    if (ffi_bad_path(path, err, errlen) || exists_out == NULL)
        return WEIR_EINVAL;
    *exists_out = 0;
    if (client_sock < 0) {
        result = faccessat(AT_FDCWD, path, F_OK, AT_EACCESS) == 0 ? 0
                                                                  : -errno;
        res.reason = BR_R_NONE;
    } else {
        if (client_call(BR_ACCESS, path, NULL, F_OK, 0, NULL, 0, &res) != 0)
            return ffi_transport(err, errlen);
        result = res.result;
    }
    if (result == -ENOENT || result == -ENOTDIR)
        return WEIR_OK;
    if (result < 0)
        return ffi_status("exists", path, NULL, result, res.reason, err,
                          errlen);
    *exists_out = 1;
    return WEIR_OK;
}

WEIR_API int weir_ffi_file_close(int32_t fd)
{
    if (fd < 0)
        return WEIR_EINVAL;
    /* Linux always releases fd, even on EINTR: never retry close. */
    return close(fd) == 0 || errno == EINTR ? WEIR_OK : WEIR_EIO;
}

/* Status for a failed descriptor call. */
static int ffi_fd_status(const char *verb, int e, char *err, size_t errlen)
{
    char text[128];

    weir_wire_errno_text(e, text, sizeof(text));
    weir_set_err(err, errlen, "%s failed: %s", verb, text);
    if (e == EAGAIN || e == EWOULDBLOCK)
        return WEIR_EAGAIN;
    if (e == EBADF || e == EINVAL)
        return WEIR_EINVAL;
    return WEIR_EIO;
}

WEIR_API int weir_ffi_file_read(int32_t fd, char *buf, size_t len,
                                int64_t *n_out, char *err, size_t errlen)
{
    ssize_t n;

    if (n_out == NULL || (buf == NULL && len > 0)) {
        weir_set_err(err, errlen, "read: bad arguments");
        return WEIR_EINVAL;
    }
    *n_out = 0;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return ffi_fd_status("read", errno, err, errlen);
    *n_out = (int64_t)n;
    return WEIR_OK;
}

WEIR_API int weir_ffi_file_write(int32_t fd, const char *buf, size_t len,
                                 char *err, size_t errlen)
{
    size_t done = 0;
    ssize_t n;

    if (buf == NULL && len > 0) {
        weir_set_err(err, errlen, "write: bad arguments");
        return WEIR_EINVAL;
    }
    while (done < len) {
        size_t chunk = len - done;

        if (chunk > SSIZE_MAX)
            chunk = SSIZE_MAX;
        n = write(fd, buf + done, chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ffi_fd_status("write", errno, err, errlen);
        if (n == 0)
            return ffi_fd_status("write", EIO, err, errlen);
        done += (size_t)n;
    }
    return WEIR_OK;
}

WEIR_API int weir_ffi_file_fsync(int32_t fd, char *err, size_t errlen)
{
    int rc;

    do
        rc = fsync(fd);
    while (rc != 0 && errno == EINTR);
    if (rc != 0)
        return ffi_fd_status("fsync", errno, err, errlen);
    return WEIR_OK;
}

int weir_broker_client_sock(void)
{
    return client_sock;
}
