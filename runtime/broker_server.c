/*
 * broker_server.c - the supervisor's side of the broker: the file policy
 * (roots, the deny list, WEIR_O_TEMP files, journaled by temps.c) and the
 * serving of one request from a worker's broker socket; network requests
 * on the same socket are handed to net_server.c. The worker's side is
 * broker_client.c, the packets are in broker_wire.h.
 *
 * weir_broker_handle reads one request from a SOCK_SEQPACKET socket,
 * confines its path(s) to a configured root and performs the operation
 * relative to that root's O_PATH descriptor with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so ".." and symlinks
 * cannot leave the root even under concurrent renames. A path is resolved
 * to its real directory (O_PATH) and last name first, a last symlink
 * followed by hand, so that the folders denied with weir_broker_deny, and
 * the files guarded with weir_broker_protect (by inode, and by folder
 * inode and name), can be refused before anything is opened for real.
 *
 * Relies on Linux >= 5.6 (openat2 via syscall(2); faccessat2 from 5.8 is
 * used when present, else /proc/self/fd), glibc and common.h.
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

#include "broker_wire.h"
#include "temps.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define BR_EAGAIN_TRIES 16
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

/*
 * A file of weir_broker_protect: the file itself (by identity, so every
 * hard link and symlink to it matches) and its name in its folder (so it
 * cannot be made again there when missing, nor replaced by a rename).
 */
struct br_guard {
    struct br_id id;    /* the file; 0/0 when it did not exist */
    struct br_id dir;   /* the folder holding name */
    char *name;
    int hide;           /* refuse reading too */
};

/* How a request touches its target, for the guards. */
enum br_how { BR_HOW_READ, BR_HOW_WRITE, BR_HOW_MOVE };

struct weir_broker {
    struct br_root *roots;
    size_t nroots;
    weir_net_allow *net; /* endpoints workers may connect to (net_server.c) */
    struct br_id *deny; /* weir_broker_deny's folders */
    size_t ndeny;
    struct br_guard *guards;    /* weir_broker_protect's files */
    size_t nguards;
    struct br_id *pinned;   /* folders holding them: never moved, removed */
    size_t npinned;
    char **breakers;    /* breakers workers may change (breaker.c) */
    size_t nbreakers;
    int roots_denied;   /* some root has denied set */
    /* the journal of WEIR_O_TEMP files (temps.h), for
     * weir_broker_sweep_temps and the sweeps of later runs */
    pthread_mutex_t temps_lock;
    struct weir_temps temps;
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
    b->temps.fd = -1;
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
            weir_wire_errno_text(e, text, sizeof(text));
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
        weir_wire_errno_text(e, text, sizeof(text));
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
            weir_wire_errno_text(-rc, text, sizeof(text));
            weir_set_err(err, errlen, "root \"%s\": %s", b->roots[i].path,
                         text);
            return br_errno_status(-rc);
        }
        if (rc == 1)
            b->roots[i].denied = b->roots_denied = 1;
    }
    return WEIR_OK;
}

/* Add id to the n ids in *ids (kept once). 0, or -ENOMEM. */
static int br_id_add(struct br_id **ids, size_t *n, const struct stat *st)
{
    struct br_id *grown;

    for (size_t i = 0; i < *n; i++) {
        if ((*ids)[i].dev == st->st_dev && (*ids)[i].ino == st->st_ino)
            return 0;
    }
    grown = realloc(*ids, (*n + 1) * sizeof(*grown));
    if (grown == NULL)
        return -ENOMEM;
    *ids = grown;
    grown[*n].dev = st->st_dev;
    grown[*n].ino = st->st_ino;
    (*n)++;
    return 0;
}

/*
 * Guard the file path names in b (see weir_broker_protect): its folder
 * and every folder above it are pinned, its name there and, when it
 * exists, the file itself are guarded. A missing folder guards nothing
 * (0). 0, or -errno.
 */
static int br_guard_path(weir_broker *b, const char *path, int hide)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/'), *name;
    struct br_guard *grown, *g;
    struct stat st, fst;
    size_t len;
    int fd, next, rc = 0, level, have;

    if (slash == NULL || slash[1] == '\0')
        return -EINVAL;
    name = slash + 1;
    len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= sizeof(dir))
        return -ENAMETOOLONG;
    memcpy(dir, path, len);
    dir[len] = '\0';
    fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    have = fstatat(fd, name, &fst, 0) == 0 && !S_ISDIR(fst.st_mode);
    grown = realloc(b->guards, (b->nguards + 1) * sizeof(*grown));
    if (grown == NULL) {
        close(fd);
        return -ENOMEM;
    }
    b->guards = grown;
    g = &b->guards[b->nguards];
    memset(g, 0, sizeof(*g));
    g->dir.dev = st.st_dev;
    g->dir.ino = st.st_ino;
    g->hide = hide;
    if (have) {
        g->id.dev = fst.st_dev;
        g->id.ino = fst.st_ino;
    }
    g->name = strdup(name);
    if (g->name == NULL) {
        close(fd);
        return -ENOMEM;
    }
    b->nguards++;
    /* the folder and its parents up to "/" */
    for (level = 0; rc == 0 && level < BR_WALK_MAX; level++) {
        struct stat up;

        rc = br_id_add(&b->pinned, &b->npinned, &st);
        next = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rc != 0 || next < 0 || fstat(next, &up) != 0) {
            rc = rc != 0 ? rc : -errno;
            if (next >= 0)
                close(next);
            break;
        }
        close(fd);
        fd = next;
        if (up.st_dev == st.st_dev && up.st_ino == st.st_ino)
            break;
        st = up;
    }
    close(fd);
    return rc;
}

int weir_broker_protect(weir_broker *b, const char *path, int hide,
                        char *err, size_t errlen)
{
    char *real;
    char text[128];
    int rc;

    if (b == NULL || path == NULL || path[0] != '/') {
        weir_set_err(err, errlen, "broker: bad arguments");
        return WEIR_EINVAL;
    }
    rc = br_guard_path(b, path, hide);
    /* the file a symlink at path leads to, under its own name too */
    real = rc == 0 ? realpath(path, NULL) : NULL;
    if (real != NULL && strcmp(real, path) != 0)
        rc = br_guard_path(b, real, hide);
    free(real);
    if (rc != 0) {
        weir_wire_errno_text(-rc, text, sizeof(text));
        weir_set_err(err, errlen, "protected file \"%s\": %s", path, text);
        return br_errno_status(-rc);
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
    for (i = 0; i < b->nguards; i++)
        free(b->guards[i].name);
    free(b->guards);
    free(b->pinned);
    for (i = 0; i < b->nbreakers; i++)
        free(b->breakers[i]);
    free(b->breakers);
    weir_temps_close(&b->temps);
    pthread_mutex_destroy(&b->temps_lock);
    weir_net_allow_free(b->net);
    free(b);
}

int weir_broker_journal(weir_broker *b, const char *dir, char *err,
                        size_t errlen)
{
    int rc;

    if (b == NULL) {
        weir_set_err(err, errlen, "broker: bad arguments");
        return WEIR_EINVAL;
    }
    pthread_mutex_lock(&b->temps_lock);
    rc = weir_temps_open_dir(&b->temps, dir, err, errlen);
    pthread_mutex_unlock(&b->temps_lock);
    return rc;
}

/* The entry n was renamed or removed (or replaced): if it was a live
 * temporary file, it is no longer one. */
static void br_temp_gone(weir_broker *b, const struct br_node *n)
{
    if (n->lerr != 0 || !S_ISREG(n->st.st_mode))
        return;
    pthread_mutex_lock(&b->temps_lock);
    weir_temps_drop(&b->temps, n->st.st_dev, n->st.st_ino);
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

/*
 * Refuse n when it is a file of weir_broker_protect, under any name (its
 * identity) or where one belongs (its folder and name, also when missing),
 * for how (a hidden file: whatever how), or when how moves or removes a
 * folder holding one. 0, or -EPERM with *reason = BR_R_PROTECTED.
 */
static int br_guarded(const weir_broker *b, const struct br_node *n,
                      enum br_how how, uint32_t *reason)
{
    struct stat dst;
    int isdir = n->lerr == 0 && S_ISDIR(n->st.st_mode);
    size_t i;

    if (b->nguards == 0)
        return 0;
    if (isdir && how == BR_HOW_MOVE) {
        for (i = 0; i < b->npinned; i++) {
            if (b->pinned[i].dev == n->st.st_dev
                && b->pinned[i].ino == n->st.st_ino)
                goto refused;
        }
    }
    if (strcmp(n->base, ".") == 0)
        return 0;
    if (fstat(n->dfd, &dst) != 0)
        goto refused;
    for (i = 0; i < b->nguards; i++) {
        const struct br_guard *g = &b->guards[i];

        if (how == BR_HOW_READ && !g->hide)
            continue;
        if (n->lerr == 0 && !isdir && g->id.ino != 0
            && g->id.dev == n->st.st_dev && g->id.ino == n->st.st_ino)
            goto refused;
        if (g->dir.dev == dst.st_dev && g->dir.ino == dst.st_ino
            && strcmp(g->name, n->base) == 0)
            goto refused;
    }
    return 0;
refused:
    *reason = BR_R_PROTECTED;
    return -EPERM;
}

/* br_locate, then br_check and br_guarded. */
static int br_lookup(const weir_broker *b, const struct br_target *t,
                     int follow, enum br_how how, struct br_node *n,
                     uint32_t *reason)
{
    int rc = br_locate(t, follow, n, reason);

    if (rc == 0)
        rc = br_check(b, t, n, reason);
    return rc == 0 ? br_guarded(b, n, how, reason) : rc;
}

/*
 * A directory entry to remove, create or rename (never followed): the root
 * itself is refused (BR_R_ROOT) and a last ".." is invalid.
 */
static int br_entry(const weir_broker *b, const struct br_target *t,
                    enum br_how how, struct br_node *n, uint32_t *reason)
{
    const char *slash = strrchr(t->rel, '/');

    n->dfd = -1;
    if (strcmp(t->rel, ".") == 0) {
        *reason = BR_R_ROOT;
        return -EPERM;
    }
    if (strcmp(slash != NULL ? slash + 1 : t->rel, "..") == 0)
        return -EINVAL;
    return br_lookup(b, t, 0, how, n, reason);
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

/*
 * Create the WEIR_O_TEMP file n (flags hold O_CREAT | O_EXCL) so that its
 * journal record is written before its name exists: an unnamed file
 * (O_TMPFILE) in n's directory, the record "+identity canonical-path",
 * then linkat to the name, which fails when the name is taken, as O_EXCL
 * does. A kill at any point leaves either no name or a journaled one.
 * Where the file system has no O_TMPFILE, the file is created as usual
 * and journaled right after (a kill in between leaves it). 0 or -errno.
 */
static int br_temp_create(weir_broker *b, const struct br_node *n,
                          int32_t flags, uint32_t mode, int *fd_out,
                          uint32_t *reason)
{
    char dir[PATH_MAX], path[PATH_MAX + NAME_MAX + 2], proc[64];
    struct weir_temp_id id;
    ssize_t len;
    int fd, rc, named = 0;

    if (n->lerr == 0)
        return -EEXIST;     /* also "." and a symlink in its place */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", n->dfd);
    len = readlink(proc, dir, sizeof(dir) - 1);
    if (len <= 0 || dir[0] != '/')
        return len < 0 ? -errno : -EIO;
    dir[len] = '\0';
    snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") == 0 ? "" : dir,
             n->base);
    mode &= BR_FILE_MODE_MAX;
    fd = (flags & O_ACCMODE) == O_RDONLY ? -EOPNOTSUPP
         : br_resolve(n->dfd, ".", (uint32_t)(flags & ~(O_CREAT | O_EXCL
                                                         | O_TRUNC
                                                         | O_CLOEXEC))
                      | O_TMPFILE, mode, RESOLVE_NO_SYMLINKS, reason);
    if (fd == -EOPNOTSUPP || fd == -EISDIR) {
        /* no O_TMPFILE here: name first, record right after */
        rc = br_do_open(n, flags, mode, &fd, reason);
        if (rc != 0)
            return rc;
        named = 1;
    } else if (fd < 0) {
        return fd;
    }
    rc = weir_temps_identify(fd, &id);
    if (rc == 0) {
        pthread_mutex_lock(&b->temps_lock);
        rc = weir_temps_add(&b->temps, &id, path);
        pthread_mutex_unlock(&b->temps_lock);
    }
    if (rc != 0)
        goto fail;
    if (!named) {
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, n->dfd, n->base, AT_SYMLINK_FOLLOW) != 0
            && (errno != ENOENT
                || linkat(fd, "", n->dfd, n->base, AT_EMPTY_PATH) != 0)) {
            rc = -errno;
            pthread_mutex_lock(&b->temps_lock);
            weir_temps_drop(&b->temps, id.dev, id.ino);
            pthread_mutex_unlock(&b->temps_lock);
            close(fd);
            return rc;
        }
    }
    *fd_out = fd;
    return 0;
fail:
    if (named)
        (void)unlinkat(n->dfd, n->base, 0);
    close(fd);
    return rc;
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
static void br_serve(weir_broker *b, const struct br_req *rq,
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
        rc = br_lookup(b, &t1, follow,
                       (rq->arg & O_ACCMODE) != O_RDONLY
                       || (rq->arg & (O_CREAT | O_TRUNC)) != 0
                       ? BR_HOW_WRITE : BR_HOW_READ, &d1, &reason);
        if (rc == 0 && (rq->mode & BR_MODE_TEMP)
            && (rq->arg & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
            rc = br_temp_create(b, &d1, rq->arg, rq->mode, fd_out, &reason);
        else if (rc == 0)
            rc = br_do_open(&d1, rq->arg, rq->mode, fd_out, &reason);
        break;
    case BR_STAT:
    case BR_LSTAT:
        rc = br_lookup(b, &t1, rq->op == BR_STAT, BR_HOW_READ, &d1,
                       &reason);
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
        rc = br_lookup(b, &t1, 1, BR_HOW_READ, &d1, &reason);
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
        rc = br_lookup(b, &t1, 0, BR_HOW_READ, &d1, &reason);
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
        rc = br_entry(b, &t1, BR_HOW_MOVE, &d1, &reason);
        if (rc == 0 && unlinkat(d1.dfd, d1.base, rq->op == BR_RMDIR
                                                 ? AT_REMOVEDIR : 0) != 0)
            rc = -errno;
        if (rc == 0)
            br_temp_gone(b, &d1);
        break;
    case BR_MKDIR:
        if (strcmp(t1.rel, ".") == 0) {
            rc = -EEXIST;
            break;
        }
        rc = br_entry(b, &t1, BR_HOW_WRITE, &d1, &reason);
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
        rc = br_entry(b, &t1, BR_HOW_MOVE, &d1, &reason);
        if (rc == 0) {
            rc = br_entry(b, &t2, BR_HOW_MOVE, &d2, &reason);
            if (rc != 0 && reason != BR_R_NONE)
                reason |= BR_R_SECOND;
        }
        if (rc == 0 && renameat(d1.dfd, d1.base, d2.dfd, d2.base) != 0)
            rc = -errno;
        if (rc == 0) {
            br_temp_gone(b, &d1);   /* renamed into place */
            br_temp_gone(b, &d2);   /* replaced */
        }
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

/* The magic a packet in[0..n) starts with, or 0. */
static uint32_t br_magic(const unsigned char *in, size_t n)
{
    uint32_t magic = 0;

    if (n >= sizeof(magic))
        memcpy(&magic, in, sizeof(magic));
    return magic;
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
    if (br_magic(in, (size_t)n) == BRK_MAGIC) {
        /* a breaker change (breaker.c): never carries a descriptor */
        weir_wire_take_fds(&msg, 0);
        if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
            n = 0;
        return weir_breaker_serve((const char *const *)b->breakers,
                                  b->nbreakers, sock, in, (size_t)n);
    }
    if (br_magic(in, (size_t)n) == NET_MAGIC) {
        /* a network request (net_server.c): CONNECT carries the socket */
        fd = weir_wire_take_fds(&msg, 1);
        if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
            weir_wire_close_passed(fd);
            fd = -1;
            n = 0;
        }
        return weir_net_serve(b->net, sock, in, (size_t)n, fd);
    }
    /* A request never carries descriptors: drop any, refuse the request. */
    weir_wire_take_fds(&msg, 0);

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
    }
    memcpy(out, &rep, sizeof(rep));
    rc = weir_wire_send(sock, out, sizeof(rep) + rep.len, fd);
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
    size_t removed;

    if (b == NULL)
        return 0;
    pthread_mutex_lock(&b->temps_lock);
    removed = weir_temps_finish(&b->temps);
    pthread_mutex_unlock(&b->temps_lock);
    return removed;
}

int weir_broker_allow_endpoint(weir_broker *b, const char *endpoint,
                                        char *err, size_t errlen)
{
    if (b == NULL || endpoint == NULL)
        return WEIR_EINVAL;
    return weir_net_allow_add(&b->net, endpoint, err, errlen);
}

int weir_broker_allow_breaker(weir_broker *b, const char *name, char *err,
                              size_t errlen)
{
    char **grown, *copy;

    if (b == NULL || name == NULL) {
        weir_set_err(err, errlen, "broker: bad arguments");
        return WEIR_EINVAL;
    }
    grown = realloc(b->breakers, (b->nbreakers + 1) * sizeof(*grown));
    if (grown == NULL || (copy = strdup(name)) == NULL) {
        if (grown != NULL)
            b->breakers = grown;
        weir_set_err(err, errlen, "broker: out of memory");
        return WEIR_ENOMEM;
    }
    b->breakers = grown;
    b->breakers[b->nbreakers++] = copy;
    return WEIR_OK;
}
