/*
 * temps.h - private to runtime/: the journal of the temporary files the
 * broker creates for workers (WEIR_O_TEMP), so that those a killed
 * supervisor leaves behind can be removed later, and only those (ADR 16).
 * The broker (broker_server.c) writes it; temps.c also holds the sweep
 * of other supervisors' journals (weir_ffi_temps_sweep, broker.h). Not
 * installed, no cdef region, never seen by Lua.
 *
 * A journal is a file WEIR_HOME/temps/journal-XXXXXX, made at the first
 * record, that its supervisor holds an exclusive flock(2) on for as long
 * as it runs: a journal nobody holds belongs to a supervisor that is gone.
 * Without a folder (weir script, tests) it is an anonymous memfd: the
 * same records, swept when the pool stops, nothing left for later.
 * Records, each ended by a NUL (paths may hold newlines, never NUL):
 *
 *   +DEV INO GEN PATH  the file with this identity is created at PATH (the
 *                      canonical path: no symlink in it), written and
 *                      synced before the name exists
 *   -DEV INO           it was renamed or removed by its attempt: nothing
 *                      to do
 *
 * The identity is the device, the inode number and the inode's generation
 * (FS_IOC_GETVERSION: random on ext4, xfs, so an inode number reused for
 * another file has another; "-" where the file system has none). A sweep
 * removes PATH only when the name, reached without following any symlink,
 * is still a regular file with that identity.
 *
 * Relies on Linux (memfd_create, openat2 >= 5.6, flock) and common.h.
 * Not thread-safe: the broker calls it under its own lock.
 */
#ifndef WEIR_TEMPS_H
#define WEIR_TEMPS_H

#include <stddef.h>
#include <sys/types.h>

struct weir_temp_id {
    dev_t dev;
    ino_t ino;
    long long gen;      /* the inode's generation, -1 when unknown */
};

/* One supervisor's journal. Zero-initialise, then set fd = -1. */
struct weir_temps {
    int fd;                     /* -1: none yet (made at the first record) */
    char *dir;                  /* where a durable one goes; NULL: memfd */
    char *path;                 /* the durable file; NULL for a memfd */
    struct weir_temp_id *live;  /* journaled and not yet renamed/removed */
    size_t nlive, cap;
};

/*
 * Keep the journal in a new durable file of dir (created 0700 now when
 * missing, its parent must exist), made and locked for this process's
 * life at the first record: a pool that creates no temporary file costs
 * nothing more. Call before the first record. WEIR_OK, WEIR_EINVAL (a
 * journal already exists), WEIR_ENOMEM or WEIR_EIO, with the reason in
 * err.
 */
int weir_temps_open_dir(struct weir_temps *j, const char *dir, char *err,
                        size_t errlen);

/* The identity of the open file fd: 0, or -errno. */
int weir_temps_identify(int fd, struct weir_temp_id *id);

/*
 * Record that the file id is about to get the name path (absolute,
 * canonical); written, and synced for a durable journal, before returning.
 * 0 or -errno (then the caller must not create the name).
 */
int weir_temps_add(struct weir_temps *j, const struct weir_temp_id *id,
                   const char *path);

/* Record that (dev, ino), if it is a live temporary file, was renamed or
 * removed: it is not swept. Not synced (a sweep checks identity anyway). */
void weir_temps_drop(struct weir_temps *j, dev_t dev, ino_t ino);

/*
 * Remove the live temporary files of this journal (no worker is left),
 * then the journal itself; j is empty again afterwards. Returns how many
 * files were removed.
 */
size_t weir_temps_finish(struct weir_temps *j);

/* Close and free j, leaving a durable journal in place, as a killed
 * process would: the next sweep of its folder handles it. */
void weir_temps_close(struct weir_temps *j);

#endif
