/*
 * temps.c - the journal of the broker's temporary files (temps.h, ADR 16):
 * writing one supervisor's records, and sweeping the journals of
 * supervisors that are gone (weir_ffi_temps_sweep). A sweep removes only
 * the exact files a journal lists, reached without following a symlink and
 * still holding the identity (device and inode) recorded when they were
 * created: never a name pattern, never a file someone else made.
 *
 * Relies on Linux (memfd_create, openat2 >= 5.6, flock), glibc, common.h
 * and buf.c.
 */
#include "temps.h"

#include "weir/broker.h"
#include "weir/buf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define JOURNAL_PREFIX "journal-"

/* Write all n bytes of p to fd (appending). 0 or -errno. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int weir_temps_open_dir(struct weir_temps *j, const char *dir, char *err,
                        size_t errlen)
{
    if (j->fd >= 0 || j->dir != NULL || dir == NULL || dir[0] == '\0') {
        weir_set_err(err, errlen, "temporary files journal: bad arguments");
        return WEIR_EINVAL;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        weir_set_err(err, errlen, "temporary files journal in %s: %s", dir,
                     strerror(errno));
        return WEIR_EIO;
    }
    j->dir = strdup(dir);
    return j->dir != NULL ? WEIR_OK : WEIR_ENOMEM;
}

/* Make j's durable journal in j->dir, locked. 0 or -errno. */
static int journal_create(struct weir_temps *j)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    int fd, dfd, n, e;

    n = snprintf(tmp, sizeof(tmp), "%s/new-XXXXXX", j->dir);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    /* locked under a name no sweep looks at, then given its real name:
     * a sweep never sees a live journal unlocked */
    fd = mkostemp(tmp, O_CLOEXEC | O_APPEND);
    if (fd < 0)
        return -errno;
    snprintf(final, sizeof(final), "%s/" JOURNAL_PREFIX "%s", j->dir,
             strrchr(tmp, '-') + 1);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, final) != 0
        || (j->path = strdup(final)) == NULL) {
        e = errno != 0 ? errno : ENOMEM;
        unlink(tmp);
        close(fd);
        return -e;
    }
    /* the journal's name itself survives a power loss */
    dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    j->fd = fd;
    return 0;
}

/* The generation of the inode open as fd, or -1 when it has none. */
static long long generation(int fd)
{
    int gen;

    return ioctl(fd, FS_IOC_GETVERSION, &gen) == 0 ? (long long)(unsigned)gen
                                                   : -1;
}

int weir_temps_identify(int fd, struct weir_temp_id *id)
{
    struct stat st;

    if (fstat(fd, &st) != 0)
        return -errno;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->gen = generation(fd);
    return 0;
}

int weir_temps_add(struct weir_temps *j, const struct weir_temp_id *id,
                   const char *path)
{
    weir_buf rec = { 0 };
    char head[96], gen[24] = "-";
    int rc, n;

    if (j->nlive == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 16;
        struct weir_temp_id *grown = realloc(j->live, cap * sizeof(*grown));

        if (grown == NULL)
            return -ENOMEM;
        j->live = grown;
        j->cap = cap;
    }
    if (j->fd < 0 && j->dir != NULL) {
        rc = journal_create(j);
        if (rc != 0)
            return rc;
    } else if (j->fd < 0) {
        j->fd = memfd_create("weir-temps", MFD_CLOEXEC);
        if (j->fd < 0)
            return -errno;
    }
    if (id->gen >= 0)
        snprintf(gen, sizeof(gen), "%lld", id->gen);
    n = snprintf(head, sizeof(head), "+%ju %ju %s ", (uintmax_t)id->dev,
                 (uintmax_t)id->ino, gen);
    if (weir_buf_append(&rec, head, (size_t)n) != WEIR_OK
        || weir_buf_append(&rec, path, strlen(path) + 1) != WEIR_OK) {
        weir_buf_free(&rec);
        return -ENOMEM;
    }
    rc = write_all(j->fd, rec.data, rec.len);
    weir_buf_free(&rec);
    if (rc == 0 && j->path != NULL && fdatasync(j->fd) != 0)
        rc = -errno;
    if (rc != 0)
        return rc;
    j->live[j->nlive++] = *id;
    return 0;
}

void weir_temps_drop(struct weir_temps *j, dev_t dev, ino_t ino)
{
    char rec[64];
    int n;

    for (size_t i = 0; i < j->nlive; i++) {
        if (j->live[i].dev == dev && j->live[i].ino == ino) {
            j->live[i] = j->live[--j->nlive];
            n = snprintf(rec, sizeof(rec), "-%ju %ju", (uintmax_t)dev,
                         (uintmax_t)ino);
            (void)write_all(j->fd, rec, (size_t)n + 1);
            return;
        }
    }
}

/* One record of a journal being swept: its identity, its place in the
 * journal, and for a '+' the path (pointing into the journal's text). */
struct rec {
    uintmax_t dev, ino;
    long long gen;
    size_t seq;
    const char *path;
};

static int rec_cmp(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;

    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Remove x's path when it is, without following any symlink on the way,
 * a regular file with x's identity. 1 when removed. */
static int sweep_one(const struct rec *x)
{
    const char *path = x->path;
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    struct open_how how;
    struct stat st;
    size_t len;
    long dfd;
    int fd, removed = 0;

    if (path[0] != '/' || slash == NULL || slash[1] == '\0'
        || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
        return 0;
    len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= sizeof(dir))
        return 0;
    memcpy(dir, path, len);
    dir[len] = '\0';
    memset(&how, 0, sizeof(how));
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    do
        dfd = syscall(SYS_openat2, AT_FDCWD, dir, &how, sizeof(how));
    while (dfd < 0 && (errno == EINTR || errno == EAGAIN));
    if (dfd < 0)
        return 0;
    if (fstatat((int)dfd, slash + 1, &st, AT_SYMLINK_NOFOLLOW) != 0
        || !S_ISREG(st.st_mode) || (uintmax_t)st.st_dev != x->dev
        || (uintmax_t)st.st_ino != x->ino)
        goto done;
    if (x->gen >= 0) {
        /* the inode number may have been reused for another file since */
        fd = openat((int)dfd, slash + 1,
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
            goto done;
        if (fstat(fd, &st) != 0 || (uintmax_t)st.st_ino != x->ino
            || generation(fd) != x->gen) {
            close(fd);
            goto done;
        }
        close(fd);
    }
    removed = unlinkat((int)dfd, slash + 1, 0) == 0;
done:
    close((int)dfd);
    return removed;
}

/* Read the whole journal fd and remove the files it leaves live. */
static size_t sweep_fd(int fd)
{
    weir_buf text = { 0 };
    struct rec *recs = NULL;
    size_t nrecs = 0, cap = 0, removed = 0, off = 0;
    ssize_t got;

    for (;;) {
        if (weir_buf_reserve(&text, 65536) != WEIR_OK)
            goto done;
        got = pread(fd, text.data + text.len, 65536, (off_t)text.len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        text.len += (size_t)got;
    }
    if (text.data == NULL)
        goto done;
    /* records end with a NUL; a torn last one (no NUL) is left out */
    while (off < text.len) {
        char *r = text.data + off, *end = memchr(r, '\0', text.len - off);
        char *p;
        struct rec x;

        if (end == NULL)
            break;
        off = (size_t)(end - text.data) + 1;
        if (r[0] != '+' && r[0] != '-')
            continue;
        errno = 0;
        x.dev = strtoumax(r + 1, &p, 10);
        if (errno != 0 || *p != ' ')
            continue;
        x.ino = strtoumax(p + 1, &p, 10);
        if (errno != 0 || (r[0] == '+' ? *p != ' ' : *p != '\0'))
            continue;
        x.gen = -1;
        x.path = NULL;
        if (r[0] == '+') {
            if (p[1] == '-') {
                p += 2;
            } else {
                uintmax_t g = strtoumax(p + 1, &p, 10);

                if (errno != 0 || g > 0xffffffffu)
                    continue;
                x.gen = (long long)g;
            }
            if (*p != ' ')
                continue;
            x.path = p + 1;
        }
        x.seq = nrecs;
        if (nrecs == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            struct rec *grown = realloc(recs, ncap * sizeof(*grown));

            if (grown == NULL)
                goto done;
            recs = grown;
            cap = ncap;
        }
        recs[nrecs++] = x;
    }
    if (nrecs == 0)
        goto done;
    /* by identity, in journal order: the last record of each says */
    qsort(recs, nrecs, sizeof(*recs), rec_cmp);
    for (size_t i = 0; i < nrecs; i++) {
        const struct rec *x = &recs[i];

        if (i + 1 < nrecs && recs[i + 1].dev == x->dev
            && recs[i + 1].ino == x->ino)
            continue;
        if (x->path != NULL)
            removed += (size_t)sweep_one(x);
    }
done:
    free(recs);
    weir_buf_free(&text);
    return removed;
}

size_t weir_temps_finish(struct weir_temps *j)
{
    size_t removed = 0;

    if (j->fd >= 0 && j->nlive > 0)
        removed = sweep_fd(j->fd);
    if (j->path != NULL)
        unlink(j->path);
    weir_temps_close(j);
    return removed;
}

void weir_temps_close(struct weir_temps *j)
{
    if (j->fd >= 0)
        close(j->fd);
    free(j->path);
    free(j->dir);
    free(j->live);
    memset(j, 0, sizeof(*j));
    j->fd = -1;
}

WEIR_API int weir_ffi_temps_sweep(const char *dir, int32_t *removed,
                                  char *err, size_t errlen)
{
    struct dirent *ent;
    DIR *d;
    int dfd;

    if (removed == NULL || dir == NULL) {
        weir_set_err(err, errlen, "temps_sweep: bad arguments");
        return WEIR_EINVAL;
    }
    *removed = 0;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT)
        return WEIR_OK;
    if (dfd < 0 || (d = fdopendir(dfd)) == NULL) {
        weir_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return WEIR_EIO;
    }
    while ((ent = readdir(d)) != NULL) {
        struct stat st, again;
        int fd;

        if (strncmp(ent->d_name, JOURNAL_PREFIX, strlen(JOURNAL_PREFIX))
            != 0)
            continue;
        fd = openat(dfd, ent->d_name,
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        /* held: its supervisor runs. Taken: it is gone, unless another
         * sweep took it first and removed the name meanwhile */
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
            && flock(fd, LOCK_EX | LOCK_NB) == 0
            && fstatat(dfd, ent->d_name, &again, AT_SYMLINK_NOFOLLOW) == 0
            && again.st_dev == st.st_dev && again.st_ino == st.st_ino) {
            *removed += (int32_t)sweep_fd(fd);
            unlinkat(dfd, ent->d_name, 0);
        }
        close(fd);
    }
    closedir(d);
    return WEIR_OK;
}
