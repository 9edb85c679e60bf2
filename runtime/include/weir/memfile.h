/*
 * memfile.h - files that exist only in memory, for libraries that insist
 * on a path (libpq's sslrootcert, sslcert, sslkey, sslcrl).
 *
 * A worker cannot open files (its seccomp filter denies openat, ADR 6),
 * yet libpq loads its TLS material by path: it stat()s the path, then
 * OpenSSL fopen()s it. The supervisor reads the files named in weir.yaml
 * and passes their text in the job; weir_ffi_memfile_new puts the text in
 * a sealed memfd (mode 0600, which libpq's key check wants) and the
 * connector gives libpq "/proc/self/fd/N". stat() of that path works in a
 * worker (it is not an open); the open is the weir binary's fopen()
 * (runtime/interpose.c), which in a worker hands back a stream on a copy
 * of the memfd for exactly the paths made here, and fails as before for
 * every other path. Outside workers the path opens as any file.
 * docs/adr/0015-tls-material-in-workers.md. Linux (memfd_create).
 */
#ifndef WEIR_MEMFILE_H
#define WEIR_MEMFILE_H

#include "weir/common.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* weir:cdef:begin */
/*
 * A read-only memory file holding data[0..len): *fd_out receives its
 * descriptor, open for the life of the process (the same data given again
 * gets the same descriptor). Name it "/proc/self/fd/<fd>". WEIR_OK,
 * WEIR_ELIMIT (too many distinct files: 64) or WEIR_EIO.
 */
WEIR_API int weir_ffi_memfile_new(const char *data, size_t len,
                                  int32_t *fd_out, char *err, size_t errlen);
/* weir:cdef:end */

/*
 * For interpose.c's fopen(): when path is "/proc/self/fd/N" for a memory
 * file of this process and mode only reads, a new stream on it from its
 * first byte (*out; NULL with errno on failure) and 1; else 0 (not ours).
 */
int weir_memfile_fopen(const char *path, const char *mode, FILE **out);

#endif
