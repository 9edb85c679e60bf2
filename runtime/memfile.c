/*
 * memfile.c - memory files (memfile.h): sealed memfds, and the streams
 * interpose.c's fopen() opens on them in a worker. A worker is
 * single-threaded; the table is only ever appended to. Linux.
 */
#include "weir/memfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h> /* memfd_create */
#include <sys/stat.h>
#include <unistd.h>

#define MEMFILE_MAX 64
#define MEMFILE_PREFIX "/proc/self/fd/"

static struct {
    int fd;
    size_t len;
} files[MEMFILE_MAX];
static int nfiles;

static int same_text(int fd, const char *data, size_t len)
{
    char buf[4096];
    size_t off = 0;

    while (off < len) {
        size_t want = len - off < sizeof buf ? len - off : sizeof buf;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n <= 0 || memcmp(buf, data + off, (size_t)n) != 0)
            return 0;
        off += (size_t)n;
    }
    return 1;
}

int weir_ffi_memfile_new(const char *data, size_t len, int32_t *fd_out,
                         char *err, size_t errlen)
{
    size_t off = 0;
    int i, fd;

    for (i = 0; i < nfiles; i++) {
        if (files[i].len == len && same_text(files[i].fd, data, len)) {
            *fd_out = files[i].fd;
            return WEIR_OK;
        }
    }
    if (nfiles == MEMFILE_MAX) {
        weir_set_err(err, errlen, "memory files: more than %d", MEMFILE_MAX);
        return WEIR_ELIMIT;
    }
    fd = memfd_create("weir-tls", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        weir_set_err(err, errlen, "memory file: %s", strerror(errno));
        return WEIR_EIO;
    }
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        off += (size_t)n;
    }
    if (fchmod(fd, 0600) != 0
        || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE
                                      | F_SEAL_SEAL) != 0)
        goto fail;
    files[nfiles].fd = fd;
    files[nfiles].len = len;
    nfiles++;
    *fd_out = fd;
    return WEIR_OK;
fail:
    weir_set_err(err, errlen, "memory file: %s", strerror(errno));
    close(fd);
    return WEIR_EIO;
}

int weir_memfile_fopen(const char *path, const char *mode, FILE **out)
{
    const char *p;
    char *end;
    long n;
    int i, fd;

    if (path == NULL || mode == NULL
        || strncmp(path, MEMFILE_PREFIX, sizeof MEMFILE_PREFIX - 1) != 0)
        return 0;
    p = path + sizeof MEMFILE_PREFIX - 1;
    if (*p < '0' || *p > '9')
        return 0;
    errno = 0;
    n = strtol(p, &end, 10);
    if (*end != '\0' || errno != 0)
        return 0;
    for (i = 0; i < nfiles && files[i].fd != n; i++)
        ;
    if (i == nfiles)
        return 0;
    *out = NULL;
    if (mode[0] != 'r' || strchr(mode, '+') != NULL) {
        errno = EACCES;
        return 1;
    }
    /* the copy shares the offset: rewind, and read it through before the
     * next open (libpq reads each file whole, one at a time) */
    fd = dup(files[i].fd);
    if (fd < 0)
        return 1;
    if (lseek(fd, 0, SEEK_SET) != 0 || (*out = fdopen(fd, "r")) == NULL) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return 1;
}
