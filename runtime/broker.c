/*
 * broker.c - the file broker (privilege separation for worker file access)
 * and its worker-side client, including the SQLite system call shims.
 *
 * Supervisor side: weir_broker_handle reads one request from a
 * SOCK_SEQPACKET socket, confines its path(s) to a configured root and
 * performs the operation relative to that root's O_PATH descriptor with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so ".." and symlinks
 * cannot leave the root even under concurrent renames. A path is resolved
 * to its real directory (O_PATH) and last name first, a last symlink
 * followed by hand, so that the folders denied with weir_broker_deny can be
 * refused by inode before anything is opened for real. Worker side: the
 * weir_ffi_file_* calls and SQLite's unix VFS system calls turn into
 * requests and block for the matching reply.
 *
 * Relies on Linux >= 5.6 (openat2 via syscall(2); faccessat2 from 5.8 is
 * used when present, else /proc/self/fd), glibc, SQLite >= 3.40 (the
 * xSetSystemCall names) and common.h. Both ends are built from this file,
 * so the wire format below is shared by construction (same struct layout,
 * same struct stat).
 *
 * Wire format (host byte order; one request or reply per packet):
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
 * Limits, on purpose: absolute symlinks inside a root are refused (the
 * RESOLVE_BENEATH rule), relative ones that stay inside work; strict
 * ancestors of a root answer STAT/LSTAT (no-follow) and nothing else,
 * because SQLite lstat()s every component of a database path; OPEN hands
 * out regular files and directories only; files are created by, and owned
 * by, the supervisor's user. Closing the broker's copy of an opened file
 * drops POSIX locks the supervisor itself holds on it, so the supervisor's
 * own databases must live outside every root or in a denied folder (the
 * deny checks use O_PATH descriptors only, which hold no locks). A hard
 * link to such a database made elsewhere in a root before the broker
 * started is not caught (the broker itself cannot make links).
 */
#include "weir/broker.h"
#include "weir/net.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Wire format
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

/* Open flags a request may carry; anything else is refused. */
#define BR_OPEN_ALLOWED (O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND \
                         | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY | O_NOCTTY \
                         | O_NONBLOCK | O_LARGEFILE)
#define BR_FILE_MODE_MAX 0644
#define BR_DIR_MODE_MAX 0755
/* OPEN's mode bit for WEIR_O_TEMP (above any permission bit) */
#define BR_MODE_TEMP 0x10000u
/* temporary files remembered for the sweep; more are simply not */
#define BR_TEMPS_MAX 4096
#define BR_EAGAIN_TRIES 16

/* ------------------------------------------------------------------------
 * Supervisor side
 * ------------------------------------------------------------------------ */

#define BR_SYMLINK_MAX 40           /* links followed per path (MAXSYMLINKS) */
#define BR_WALK_MAX (PATH_MAX / 2)  /* deeper than any reachable directory */

/* A directory's identity: what a denied folder is remembered by. */
struct br_id {
    dev_t dev;
    ino_t ino;
};

struct br_root {
    char *path;         /* canonical, no trailing slash except "/" */
    size_t len;
    int fd;             /* O_PATH | O_DIRECTORY */
    struct br_id id;    /* where the ".." walk of a deny check stops */
    int denied;         /* the root is, or lies below, a denied folder */
};

struct weir_broker {
    struct br_root *roots;
    size_t nroots;
    weir_net_allow *net; /* endpoints workers may connect to (net.c) */
    struct br_id *deny; /* weir_broker_deny's folders */
    size_t ndeny;
    int roots_denied;   /* some root has denied set */
    /* WEIR_O_TEMP files created and not yet renamed or removed
     * (normalized paths), for weir_broker_sweep_temps */
    pthread_mutex_t temps_lock;
    char **temps;
    size_t ntemps;
};

/* A path confined to a root: rel is relative to root->fd ("." = root). */
struct br_target {
    const struct br_root *root;
    char *rel;
};

/*
 * Where a target lands: a directory below the root and one name in it,
 * after following a final symlink for the operations that follow one. The
 * deny check and the operation both work relative to dfd, so they see the
 * same directory even if names change in between.
 */
struct br_node {
    int dfd;            /* O_PATH | O_DIRECTORY, or -1 */
    const char *base;   /* one component in dfd, or "." for dfd itself */
    int lerr;           /* 0 when st is base's lstat, else its errno */
    struct stat st;
    char path[PATH_MAX];    /* the rel being resolved; base points in */
};

static void br_errno_text(int e, char *buf, size_t len)
{
    const char *s = strerror_r(e, buf, len);

    if (s != buf)
        snprintf(buf, len, "%s", s);
    if (buf[0] != '\0')
        buf[0] = (char)tolower((unsigned char)buf[0]);
}

/* The status code for a failed open/stat of a configured directory. */
static int br_errno_status(int e)
{
    if (e == ENOENT || e == ENOTDIR)
        return WEIR_ENOENT;
    if (e == EACCES || e == EPERM)
        return WEIR_EPERM;
    return e == ENOMEM ? WEIR_ENOMEM : WEIR_EIO;
}

/* Is st one of the n directories in ids? */
static int br_id_in(const struct br_id *ids, size_t n, const struct stat *st)
{
    size_t i;

    if (!S_ISDIR(st->st_mode))
        return 0;
    for (i = 0; i < n; i++) {
        if (ids[i].dev == st->st_dev && ids[i].ino == st->st_ino)
            return 1;
    }
    return 0;
}

/*
 * Walk from the directory start (an O_PATH descriptor the caller keeps) up
 * through "..", comparing each directory with ids, until stop (a root's
 * identity; NULL: none) or "/". first, when not NULL, is start's stat.
 * Only O_PATH descriptors are opened: closing one never drops a POSIX lock
 * the supervisor holds. Returns 1 when a directory on the way is in ids, 0
 * when none is, or -errno.
 */
static int br_walk(const struct br_id *ids, size_t nids, int start,
                   const struct stat *first, const struct br_id *stop)
{
    struct stat st;
    struct br_id prev = { 0, 0 };
    int cur = start, next, rc = -ELOOP, level;

    for (level = 0; level < BR_WALK_MAX; level++) {
        if (level == 0 && first != NULL) {
            st = *first;
        } else if (fstat(cur, &st) != 0) {
            rc = -errno;
            break;
        }
        if (level > 0 && st.st_dev == prev.dev && st.st_ino == prev.ino) {
            rc = 0;     /* "/" is its own parent */
            break;
        }
        if (br_id_in(ids, nids, &st)) {
            rc = 1;
            break;
        }
        if (stop != NULL && st.st_dev == stop->dev
            && st.st_ino == stop->ino) {
            rc = 0;
            break;
        }
        prev.dev = st.st_dev;
        prev.ino = st.st_ino;
        next = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (next < 0) {
            rc = -errno;
            break;
        }
        if (cur != start)
            close(cur);
        cur = next;
    }
    if (cur != start)
        close(cur);
    return rc;
}

int weir_broker_new(const char *const *roots, size_t nroots,
                    weir_broker **out, char *err, size_t errlen)
{
    weir_broker *b;
    struct stat st;
    char text[128];
    size_t i;

    if (out == NULL || (roots == NULL && nroots > 0)) {
        weir_set_err(err, errlen, "broker: bad arguments");
        return WEIR_EINVAL;
    }
    *out = NULL;
    b = calloc(1, sizeof(*b));
    if (b == NULL || (nroots > 0
                      && (b->roots = calloc(nroots, sizeof(*b->roots)))
                         == NULL)) {
        free(b);
        weir_set_err(err, errlen, "broker: out of memory");
        return WEIR_ENOMEM;
    }
    pthread_mutex_init(&b->temps_lock, NULL);
    for (i = 0; i < nroots; i++) {
        struct br_root *r = &b->roots[i];
        int e;

        if (roots[i] == NULL || roots[i][0] == '\0') {
            weir_broker_delete(b);
            weir_set_err(err, errlen, "broker: root %zu is empty", i);
            return WEIR_EINVAL;
        }
        r->fd = -1;
        r->path = realpath(roots[i], NULL);
        if (r->path != NULL) {
            r->len = strlen(r->path);
            r->fd = open(r->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        }
        b->nroots = i + 1;
        if (r->path == NULL || r->fd < 0 || fstat(r->fd, &st) != 0) {
            e = errno;
            br_errno_text(e, text, sizeof(text));
            weir_set_err(err, errlen, "root \"%s\": %s", roots[i], text);
            weir_broker_delete(b);
            return br_errno_status(e);
        }
        r->id.dev = st.st_dev;
        r->id.ino = st.st_ino;
    }
    b->nroots = nroots;
    *out = b;
    return WEIR_OK;
}

int weir_broker_deny(weir_broker *b, const char *dir, char *err,
                     size_t errlen)
{
    struct br_id *grown;
    struct stat st;
    char text[128];
    size_t i;
    int fd, e, rc;

    if (b == NULL || dir == NULL || dir[0] == '\0') {
        weir_set_err(err, errlen, "broker: bad arguments");
        return WEIR_EINVAL;
    }
    fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        e = errno;
        if (fd >= 0)
            close(fd);
        br_errno_text(e, text, sizeof(text));
        weir_set_err(err, errlen, "denied folder \"%s\": %s", dir, text);
        return br_errno_status(e);
    }
    close(fd);
    if (br_id_in(b->deny, b->ndeny, &st))
        return WEIR_OK;
    grown = realloc(b->deny, (b->ndeny + 1) * sizeof(*grown));
    if (grown == NULL) {
        weir_set_err(err, errlen, "broker: out of memory");
        return WEIR_ENOMEM;
    }
    b->deny = grown;
    b->deny[b->ndeny].dev = st.st_dev;
    b->deny[b->ndeny].ino = st.st_ino;
    b->ndeny++;
    /* A root at or below dir refuses everything; find those once, here.
     * On failure the folder stays denied: refusing too much is safe. */
    for (i = 0; i < b->nroots; i++) {
        rc = br_walk(&b->deny[b->ndeny - 1], 1, b->roots[i].fd, NULL, NULL);
        if (rc < 0) {
            br_errno_text(-rc, text, sizeof(text));
            weir_set_err(err, errlen, "root \"%s\": %s", b->roots[i].path,
                         text);
            return br_errno_status(-rc);
        }
        if (rc == 1)
            b->roots[i].denied = b->roots_denied = 1;
    }
    return WEIR_OK;
}

void weir_broker_delete(weir_broker *b)
{
    size_t i;

    if (b == NULL)
        return;
    for (i = 0; i < b->nroots; i++) {
        if (b->roots[i].fd >= 0)
            close(b->roots[i].fd);
        free(b->roots[i].path);
    }
    free(b->roots);
    free(b->deny);
    for (i = 0; i < b->ntemps; i++)
        free(b->temps[i]);
    free(b->temps);
    pthread_mutex_destroy(&b->temps_lock);
    weir_net_allow_free(b->net);
    free(b);
}

/* Remember (add) or forget a WEIR_O_TEMP file by its normalized path. */
static void br_temp_note(weir_broker *b, const char *path, int add)
{
    pthread_mutex_lock(&b->temps_lock);
    if (add) {
        char *c;

        if (b->temps == NULL)
            b->temps = calloc(BR_TEMPS_MAX, sizeof(*b->temps));
        if (b->temps != NULL && b->ntemps < BR_TEMPS_MAX
            && (c = strdup(path)) != NULL)
            b->temps[b->ntemps++] = c;
    } else {
        for (size_t i = 0; i < b->ntemps; i++) {
            if (strcmp(b->temps[i], path) == 0) {
                free(b->temps[i]);
                b->temps[i] = b->temps[--b->ntemps];
                break;
            }
        }
    }
    pthread_mutex_unlock(&b->temps_lock);
}

size_t weir_broker_nroots(const weir_broker *b)
{
    return b->nroots;
}

const char *weir_broker_root(const weir_broker *b, size_t i)
{
    return (b != NULL && i < b->nroots) ? b->roots[i].path : NULL;
}

/*
 * Lexically normalise an absolute path of n bytes into out (PATH_MAX bytes,
 * may be the same buffer as in): collapse "//", drop "." components and a
 * trailing slash. ".." is kept as a component (resolution relative to the
 * root refuses it when it would climb out). Returns the length; the result
 * is never longer than the input.
 */
static size_t br_normalize(const char *in, size_t n, char *out)
{
    size_t i = 0, o = 0;

    while (i < n) {
        size_t start;

        while (i < n && in[i] == '/')
            i++;
        start = i;
        while (i < n && in[i] != '/')
            i++;
        if (i == start || (i - start == 1 && in[start] == '.'))
            continue;
        out[o++] = '/';
        memmove(out + o, in + start, i - start);
        o += i - start;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return o;
}

/* Pick the longest root that is a component-wise prefix of norm. */
static int br_confine(const weir_broker *b, char *norm, size_t nlen,
                      struct br_target *t)
{
    const struct br_root *best = NULL;
    size_t i;

    for (i = 0; i < b->nroots; i++) {
        const struct br_root *r = &b->roots[i];

        if (r->len == 1 || (nlen >= r->len
                            && memcmp(norm, r->path, r->len) == 0
                            && (norm[r->len] == '\0'
                                || norm[r->len] == '/'))) {
            if (best == NULL || r->len > best->len)
                best = r;
        }
    }
    if (best == NULL)
        return -1;
    t->root = best;
    if (best->len == 1)
        t->rel = nlen == 1 ? NULL : norm + 1;
    else
        t->rel = norm[best->len] == '\0' ? NULL : norm + best->len + 1;
    if (t->rel == NULL)
        t->rel = ".";
    return 0;
}

/* Is norm a root or a (lexical) ancestor of one? strict: ancestors only. */
static int br_holds_root(const weir_broker *b, const char *norm, size_t nlen,
                         int strict)
{
    size_t i;

    for (i = 0; i < b->nroots; i++) {
        const struct br_root *r = &b->roots[i];

        if (r->len == nlen && memcmp(r->path, norm, nlen) == 0) {
            if (!strict)
                return 1;
        } else if (r->len > nlen && (nlen == 1 || (memcmp(r->path, norm,
                                                          nlen) == 0
                                                   && r->path[nlen] == '/'))) {
            return 1;
        }
    }
    return 0;
}

/*
 * openat2 below dirfd (a root, or a directory already resolved below one),
 * with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS plus the resolve bits in
 * extra. Returns a descriptor or -errno; an attempt to leave dirfd becomes
 * -EPERM with *reason = BR_R_ESCAPE.
 */
static int br_resolve(int dirfd, const char *rel, uint64_t flags,
                      uint64_t mode, uint64_t extra, uint32_t *reason)
{
    struct open_how how;
    long fd;
    int tries = 0;

    memset(&how, 0, sizeof(how));
    how.flags = flags | O_CLOEXEC;
    how.mode = mode;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | extra;
    for (;;) {
        fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        /* EAGAIN: a concurrent rename raced a ".." walk; try again. */
        if (errno == EINTR || (errno == EAGAIN && ++tries < BR_EAGAIN_TRIES))
            continue;
        break;
    }
    if (errno == EXDEV) {
        *reason = BR_R_ESCAPE;
        return -EPERM;
    }
    return -errno;
}

/*
 * Resolve t into n: its directory (O_PATH, below the root, the kernel
 * following any symlink on the way) and its last component, lstat'ed. With
 * follow, a symlink in the last place is read and its text resolved again
 * relative to its directory, as the kernel would, so that n names the
 * object itself and its real directory; an absolute link text leaves the
 * root (BR_R_ESCAPE). "." (the root) and a last ".." name a directory whole:
 * n->base is ".". Nothing but O_PATH descriptors is opened. Returns 0 or
 * -errno; n->dfd may be open either way (br_node_close).
 */
static int br_locate(const struct br_target *t, int follow,
                     struct br_node *n, uint32_t *reason)
{
    char link[PATH_MAX], next[2 * PATH_MAX + 2];
    const char *dir;
    char *slash;
    ssize_t got;
    size_t len;
    int hops = 0;

    n->dfd = -1;
    n->lerr = ENOENT;
    len = strlen(t->rel);
    if (len >= sizeof(n->path))
        return -ENAMETOOLONG;
    memcpy(n->path, t->rel, len + 1);
    for (;;) {
        slash = strrchr(n->path, '/');
        n->base = slash != NULL ? slash + 1 : n->path;
        if (strcmp(n->path, ".") == 0 || strcmp(n->base, "..") == 0) {
            n->dfd = br_resolve(t->root->fd, n->path, O_PATH | O_DIRECTORY,
                                0, 0, reason);
            if (n->dfd < 0)
                return n->dfd;
            n->base = ".";
            n->lerr = fstat(n->dfd, &n->st) == 0 ? 0 : errno;
            return 0;
        }
        dir = ".";
        if (slash != NULL) {
            *slash = '\0';
            dir = n->path;
        }
        n->dfd = br_resolve(t->root->fd, dir, O_PATH | O_DIRECTORY, 0, 0,
                            reason);
        if (n->dfd < 0)
            return n->dfd;
        n->lerr = fstatat(n->dfd, n->base, &n->st, AT_SYMLINK_NOFOLLOW) == 0
                  ? 0 : errno;
        if (!follow || n->lerr != 0 || !S_ISLNK(n->st.st_mode))
            return 0;
        if (++hops > BR_SYMLINK_MAX)
            return -ELOOP;
        got = readlinkat(n->dfd, n->base, link, sizeof(link));
        if (got < 0)
            return -errno;
        if (got == 0)
            return -ENOENT;
        if ((size_t)got == sizeof(link))
            return -ENAMETOOLONG;
        link[got] = '\0';
        if (link[0] == '/') {
            *reason = BR_R_ESCAPE;
            return -EPERM;
        }
        /* The text is relative to the link's directory: "/dir/text". */
        len = (size_t)snprintf(next, sizeof(next), "/%s/%s", dir, link);
        len = br_normalize(next, len, next);
        if (len > BR_PATH_MAX)
            return -ENAMETOOLONG;
        close(n->dfd);
        n->dfd = -1;
        if (len == 1)
            memcpy(n->path, ".", 2);
        else
            memcpy(n->path, next + 1, len);
    }
}

static void br_node_close(struct br_node *n)
{
    if (n->dfd >= 0)
        close(n->dfd);
    n->dfd = -1;
}

/*
 * Refuse n when it lies physically inside a denied folder, or is one: its
 * root is marked, or n is a denied directory, or the ".." walk from its
 * directory up to the root meets one. Runs before the operation touches
 * n, and opens O_PATH descriptors only. 0, or -EPERM with *reason =
 * BR_R_DENIED, or -errno when the walk failed (refused too).
 */
static int br_check(const weir_broker *b, const struct br_target *t,
                    const struct br_node *n, uint32_t *reason)
{
    int rc;

    if (b->ndeny == 0)
        return 0;
    if (t->root->denied)
        rc = 1;
    else if (strcmp(n->base, ".") == 0)
        rc = br_walk(b->deny, b->ndeny, n->dfd, n->lerr == 0 ? &n->st : NULL,
                     &t->root->id);
    else if (n->lerr == 0 && br_id_in(b->deny, b->ndeny, &n->st))
        rc = 1;
    else
        rc = br_walk(b->deny, b->ndeny, n->dfd, NULL, &t->root->id);
    if (rc == 1) {
        *reason = BR_R_DENIED;
        return -EPERM;
    }
    return rc;
}

/* br_locate, then br_check. */
static int br_lookup(const weir_broker *b, const struct br_target *t,
                     int follow, struct br_node *n, uint32_t *reason)
{
    int rc = br_locate(t, follow, n, reason);

    return rc == 0 ? br_check(b, t, n, reason) : rc;
}

/*
 * A directory entry to remove, create or rename (never followed): the root
 * itself is refused (BR_R_ROOT) and a last ".." is invalid.
 */
static int br_entry(const weir_broker *b, const struct br_target *t,
                    struct br_node *n, uint32_t *reason)
{
    const char *slash = strrchr(t->rel, '/');

    n->dfd = -1;
    if (strcmp(t->rel, ".") == 0) {
        *reason = BR_R_ROOT;
        return -EPERM;
    }
    if (strcmp(slash != NULL ? slash + 1 : t->rel, "..") == 0)
        return -EINVAL;
    return br_lookup(b, t, 0, n, reason);
}

/* Open n (never following a symlink: br_locate already did). */
static int br_do_open(const struct br_node *n, int32_t flags, uint32_t mode,
                      int *fd_out, uint32_t *reason)
{
    struct stat st;
    int fd, fl;

    mode = (flags & O_CREAT) ? (mode & BR_FILE_MODE_MAX) : 0;
    /* O_NONBLOCK: never hang on a FIFO; O_NOCTTY: never adopt a tty. */
    fd = br_resolve(n->dfd, n->base, (uint32_t)(flags & ~O_CLOEXEC)
                    | O_NONBLOCK | O_NOCTTY, mode, RESOLVE_NO_SYMLINKS,
                    reason);
    if (fd < 0)
        return fd;
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode)
                                 || S_ISDIR(st.st_mode))) {
        close(fd);
        *reason = BR_R_TYPE;
        return -EPERM;
    }
    if (!(flags & O_NONBLOCK)) {
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
            int e = errno;

            close(fd);
            return -e;
        }
    }
    *fd_out = fd;
    return 0;
}

/* access(2) on an O_PATH descriptor, from the supervisor's view. */
static int br_access_fd(int fd, int mode)
{
    char proc[64];

    if (faccessat(fd, "", mode, AT_EMPTY_PATH | AT_EACCESS) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* Kernels before 5.8 lack faccessat2: go through the magic link. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    return faccessat(AT_FDCWD, proc, mode, AT_EACCESS) == 0 ? 0 : -errno;
}

/*
 * May an ancestor of a root (norm, lstat'ed into st) be stat'ed? Not when
 * it is a denied folder or lies inside one; the latter is only possible
 * when some root does (roots_denied), so the walk is rare. 1 when denied,
 * 0 when not, or -errno.
 */
static int br_ancestor_denied(const weir_broker *b, const char *norm,
                              size_t nlen, const struct stat *st)
{
    char dir[PATH_MAX];
    const char *slash;
    size_t len;
    int fd, rc;

    if (b->ndeny == 0)
        return 0;
    if (br_id_in(b->deny, b->ndeny, st))
        return 1;
    if (!b->roots_denied)
        return 0;
    slash = memrchr(norm, '/', nlen);
    len = slash == NULL || slash == norm ? 1 : (size_t)(slash - norm);
    memcpy(dir, norm, len);
    dir[len] = '\0';
    fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = br_walk(b->deny, b->ndeny, fd, NULL, NULL);
    close(fd);
    return rc;
}

/*
 * Perform one validated request; fills rep->result/reason and payload.
 * p1 and p2 are NUL-terminated and normalised in place. Every path is
 * located and checked against the deny list before the operation runs.
 */
static void br_serve(const weir_broker *b, const struct br_req *rq,
                     char *p1, size_t n1, char *p2, size_t n2,
                     struct br_rep *rep, unsigned char *payload, int *fd_out)
{
    char *norm1 = p1, *norm2 = p2;
    struct br_target t1, t2;
    struct br_node d1, d2;
    size_t l1, l2 = 0;
    struct stat st;
    int fd, rc, follow;
    uint32_t reason = BR_R_NONE;
    ssize_t got;

    d1.dfd = d2.dfd = -1;
    if (p1[0] != '/' || (rq->op == BR_RENAME && p2[0] != '/')) {
        rep->reason = p1[0] != '/' ? BR_R_RELATIVE
                                   : BR_R_RELATIVE | BR_R_SECOND;
        rep->result = -EPERM;
        return;
    }
    l1 = br_normalize(p1, n1, norm1);
    if (rq->op == BR_RENAME)
        l2 = br_normalize(p2, n2, norm2);

    if (br_confine(b, norm1, l1, &t1) != 0) {
        /* Ancestors of a root may be stat'ed (never followed), so that
         * SQLite's per-component lstat of a database path works. */
        if ((rq->op == BR_STAT || rq->op == BR_LSTAT)
            && br_holds_root(b, norm1, l1, 1)) {
            if (fstatat(AT_FDCWD, norm1, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                rep->result = -errno;
                return;
            }
            rc = br_ancestor_denied(b, norm1, l1, &st);
            if (rc != 0) {
                rep->reason = rc == 1 ? BR_R_DENIED : BR_R_NONE;
                rep->result = rc == 1 ? -EPERM : rc;
                return;
            }
            memcpy(payload, &st, sizeof(st));
            rep->len = sizeof(st);
            return;
        }
        rep->reason = BR_R_OUTSIDE;
        rep->result = -EPERM;
        return;
    }
    if (rq->op == BR_RENAME && br_confine(b, norm2, l2, &t2) != 0) {
        rep->reason = BR_R_OUTSIDE | BR_R_SECOND;
        rep->result = -EPERM;
        return;
    }

    switch (rq->op) {
    case BR_OPEN:
        if ((rq->arg & ~BR_OPEN_ALLOWED) != 0
            || (rq->arg & O_ACCMODE) == O_ACCMODE) {
            reason = BR_R_FLAGS;
            rc = -EINVAL;
            break;
        }
        /* open(2) follows a last symlink unless O_NOFOLLOW or O_EXCL. */
        follow = !(rq->arg & O_NOFOLLOW)
                 && (rq->arg & (O_CREAT | O_EXCL)) != (O_CREAT | O_EXCL);
        rc = br_lookup(b, &t1, follow, &d1, &reason);
        if (rc == 0)
            rc = br_do_open(&d1, rq->arg, rq->mode, fd_out, &reason);
        break;
    case BR_STAT:
    case BR_LSTAT:
        rc = br_lookup(b, &t1, rq->op == BR_STAT, &d1, &reason);
        if (rc == 0 && d1.lerr != 0)
            rc = -d1.lerr;
        if (rc == 0) {
            memcpy(payload, &d1.st, sizeof(d1.st));
            rep->len = sizeof(d1.st);
        }
        break;
    case BR_ACCESS:
        if (rq->arg & ~(R_OK | W_OK | X_OK)) {
            reason = BR_R_FLAGS;
            rc = -EINVAL;
            break;
        }
        rc = br_lookup(b, &t1, 1, &d1, &reason);
        if (rc == 0 && d1.lerr != 0)
            rc = -d1.lerr;
        if (rc == 0 && rq->arg != F_OK) {
            rc = fd = br_resolve(d1.dfd, d1.base, O_PATH, 0,
                                 RESOLVE_NO_SYMLINKS, &reason);
            if (fd >= 0) {
                rc = br_access_fd(fd, rq->arg);
                close(fd);
            }
        }
        break;
    case BR_READLINK:
        rc = br_lookup(b, &t1, 0, &d1, &reason);
        if (rc == 0 && d1.lerr != 0)
            rc = -d1.lerr;
        if (rc == 0 && !S_ISLNK(d1.st.st_mode))
            rc = -EINVAL;   /* as readlink(2) on a non-link */
        if (rc == 0) {
            got = readlinkat(d1.dfd, d1.base, (char *)payload,
                             BR_PAYLOAD_MAX);
            rc = got < 0 ? -errno : (int)got;
            if (got >= 0)
                rep->len = (uint32_t)got;
        }
        break;
    case BR_UNLINK:
    case BR_RMDIR:
        if (br_holds_root(b, norm1, l1, 0)) {
            reason = BR_R_ROOT;
            rc = -EPERM;
            break;
        }
        rc = br_entry(b, &t1, &d1, &reason);
        if (rc == 0 && unlinkat(d1.dfd, d1.base, rq->op == BR_RMDIR
                                                 ? AT_REMOVEDIR : 0) != 0)
            rc = -errno;
        break;
    case BR_MKDIR:
        if (strcmp(t1.rel, ".") == 0) {
            rc = -EEXIST;
            break;
        }
        rc = br_entry(b, &t1, &d1, &reason);
        if (rc == 0
            && mkdirat(d1.dfd, d1.base, rq->mode & BR_DIR_MODE_MAX) != 0)
            rc = -errno;
        break;
    case BR_RENAME:
        if (br_holds_root(b, norm1, l1, 0)) {
            reason = BR_R_ROOT;
            rc = -EPERM;
            break;
        }
        if (br_holds_root(b, norm2, l2, 0)) {
            reason = BR_R_ROOT | BR_R_SECOND;
            rc = -EPERM;
            break;
        }
        rc = br_entry(b, &t1, &d1, &reason);
        if (rc == 0) {
            rc = br_entry(b, &t2, &d2, &reason);
            if (rc != 0 && reason != BR_R_NONE)
                reason |= BR_R_SECOND;
        }
        if (rc == 0 && renameat(d1.dfd, d1.base, d2.dfd, d2.base) != 0)
            rc = -errno;
        break;
    default:
        reason = BR_R_MALFORMED;
        rc = -EINVAL;
        break;
    }
    br_node_close(&d1);
    br_node_close(&d2);
    rep->result = rc;
    rep->reason = reason;
}

/* Send one packet, attaching fd when >= 0. 0, or -errno. */
static int br_send(int sock, const void *buf, size_t len, int fd)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg;
    struct pollfd pfd;
    ssize_t n;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *c;

        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.space;
        msg.msg_controllen = sizeof(ctl.space);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    for (;;) {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* A well-behaved peer has an empty queue; wait briefly. */
            pfd.fd = sock;
            pfd.events = POLLOUT;
            if (poll(&pfd, 1, 1000) > 0)
                continue;
            return -EAGAIN;
        }
        return -errno;
    }
}

/* Close every descriptor carried in msg's control data. */
static int br_close_passed(struct msghdr *msg, int keep_first)
{
    struct cmsghdr *c;
    int kept = -1;

    for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        size_t nfd, i;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (i = 0; i < nfd; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (keep_first && kept < 0)
                kept = fd;
            else
                weir_net_close_passed(fd);
        }
    }
    return kept;
}

/* Is the request in in[0..n) well formed? */
static int br_valid(const struct br_req *rq, const unsigned char *in,
                    size_t n)
{
    return n >= sizeof(*rq) && rq->magic == BR_MAGIC
           && rq->version == BR_VERSION && rq->op != 0
           && rq->op < BR_OP_MAX && rq->len1 > 0 && rq->len1 <= BR_PATH_MAX
           && rq->len2 <= BR_PATH_MAX
           && (rq->op == BR_RENAME) == (rq->len2 > 0)
           && n == sizeof(*rq) + rq->len1 + rq->len2
           && memchr(in + sizeof(*rq), '\0', rq->len1 + rq->len2) == NULL;
}

int weir_broker_handle(weir_broker *b, int sock)
{
    /* Two spare bytes so both paths can be NUL-terminated in place. */
    unsigned char in[BR_REQ_MAX + 2];
    unsigned char out[BR_REP_MAX];
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = { .iov_base = in, .iov_len = BR_REQ_MAX };
    struct msghdr msg;
    struct br_req rq;
    struct br_rep rep;
    ssize_t n;
    int fd = -1, rc, status = WEIR_OK;

    if (b == NULL || sock < 0)
        return WEIR_EINVAL;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.space;
    msg.msg_controllen = sizeof(ctl.space);
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return WEIR_EAGAIN;
        if (errno == ECONNRESET || errno == ENOTCONN)
            return WEIR_ECLOSED;
        return WEIR_EIO;
    }
    if (n == 0)
        return WEIR_ECLOSED;
    if (weir_net_is_request(in, (size_t)n)) {
        /* a network request (net.c): CONNECT carries the socket */
        fd = br_close_passed(&msg, 1);
        if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
            weir_net_close_passed(fd);
            fd = -1;
            n = 0;
        }
        return weir_net_serve(b->net, sock, in, (size_t)n, fd);
    }
    /* A request never carries descriptors: drop any, refuse the request. */
    br_close_passed(&msg, 0);

    memset(&rq, 0, sizeof(rq));
    memcpy(&rq, in, (size_t)n < sizeof(rq) ? (size_t)n : sizeof(rq));
    memset(&rep, 0, sizeof(rep));
    rep.magic = BR_MAGIC;
    rep.version = BR_VERSION;
    rep.op = rq.op;
    rep.seq = rq.seq;
    if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || msg.msg_controllen > 0
        || !br_valid(&rq, in, (size_t)n)) {
        rep.result = -EINVAL;
        rep.reason = BR_R_MALFORMED;
        status = WEIR_EINVAL;
    } else {
        char *p1 = (char *)in + sizeof(rq);
        char *p2 = p1 + rq.len1 + 1;

        memmove(p2, p1 + rq.len1, rq.len2);
        p1[rq.len1] = '\0';
        p2[rq.len2] = '\0';
        br_serve(b, &rq, p1, rq.len1, p2, rq.len2, &rep,
                 out + sizeof(rep), &fd);
        /* br_serve normalized p1 in place */
        if (rep.result >= 0 && rq.op == BR_OPEN && (rq.mode & BR_MODE_TEMP)
            && (rq.arg & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
            br_temp_note(b, p1, 1);
        else if (rep.result >= 0
                 && (rq.op == BR_RENAME || rq.op == BR_UNLINK))
            br_temp_note(b, p1, 0);
    }
    memcpy(out, &rep, sizeof(rep));
    rc = br_send(sock, out, sizeof(rep) + rep.len, fd);
    if (fd >= 0)
        close(fd);
    if (rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN)
        return WEIR_ECLOSED;
    if (rc != 0)
        return WEIR_EIO;
    return status;
}

size_t weir_broker_sweep_temps(weir_broker *b)
{
    size_t removed = 0;

    if (b == NULL)
        return 0;
    pthread_mutex_lock(&b->temps_lock);
    for (size_t i = 0; i < b->ntemps; i++) {
        char *norm = b->temps[i];
        size_t len = strlen(norm);
        struct br_target t;
        struct br_node d;
        uint32_t reason = BR_R_NONE;

        /* the same checks as a worker's unlink of that path */
        d.dfd = -1;
        if (br_confine(b, norm, len, &t) == 0
            && !br_holds_root(b, norm, len, 0)
            && br_entry(b, &t, &d, &reason) == 0
            && unlinkat(d.dfd, d.base, 0) == 0)
            removed++;
        br_node_close(&d);
        free(norm);
    }
    b->ntemps = 0;
    pthread_mutex_unlock(&b->temps_lock);
    return removed;
}

/* ------------------------------------------------------------------------
 * Worker side: the client
 * ------------------------------------------------------------------------ */

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
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct br_req rq;
    struct br_rep rep;
    struct iovec iov;
    struct msghdr msg;
    struct pollfd pfd;
    size_t n1, n2 = 0;
    ssize_t n;
    int rc, fd;

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
    rc = br_send(client_sock, buf, sizeof(rq) + n1 + n2, -1);
    if (rc != 0) {
        errno = (rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN)
                ? EPIPE : EPROTO;
        return -1;
    }

    for (;;) {
        memset(&msg, 0, sizeof(msg));
        iov.iov_base = buf;
        iov.iov_len = sizeof(buf);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.space;
        msg.msg_controllen = sizeof(ctl.space);
        n = recvmsg(client_sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pfd.fd = client_sock;
            pfd.events = POLLIN;
            (void)poll(&pfd, 1, -1);
            continue;
        }
        if (n <= 0) {
            errno = (n == 0 || errno == ECONNRESET || errno == ENOTCONN)
                    ? EPIPE : EPROTO;
            return -1;
        }
        fd = br_close_passed(&msg, 1);
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
        || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
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
        weir_set_err(err, errlen, "path \"%s\" is inside weir's state folder",
                     p);
        return WEIR_EPERM;
    default:
        break;
    }
    br_errno_text(e, text, sizeof(text));
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

    br_errno_text(e, text, sizeof(text));
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

int weir_broker_allow_endpoint(weir_broker *b, const char *endpoint,
                               char *err, size_t errlen)
{
    if (b == NULL || endpoint == NULL)
        return WEIR_EINVAL;
    return weir_net_allow_add(&b->net, endpoint, err, errlen);
}

int weir_broker_send(int sock, const void *buf, size_t len, int fd)
{
    return br_send(sock, buf, len, fd);
}

int weir_broker_client_sock(void)
{
    return client_sock;
}
