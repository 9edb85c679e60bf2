/*
 * test_broker.c - the file broker end to end: a forked child serves
 * requests with weir_broker_handle while this process, as the worker, uses
 * the weir_ffi_file_* calls and SQLite through weir_broker_client_init.
 *
 * When run as root the worker drops to nobody (65534) after the fork, and
 * the temp tree is 0700 root, so every successful file access below can
 * only have gone through the broker; in any case the child reports how many
 * requests it handled. Relies on check.h, SQLite and Linux >= 5.6. Temp
 * files live under $WEIR_TEST_TMP (or /tmp) and the child removes them.
 *
 * The tree has a state folder data/.weir inside the root, denied with
 * weir_broker_deny, holding a database weir.db the serving child keeps a
 * POSIX write lock on, as the supervisor's SQLite would: every way in is
 * refused, and at the end a third process still sees the lock.
 */
#include "check.h"
#include "tree.h"
#include "weir/broker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534

/* What the serving child tells the parent when the worker hangs up. */
struct report {
    long handled;       /* weir_broker_handle returned WEIR_OK */
    long malformed;     /* ... returned WEIR_EINVAL */
    long other;         /* ... returned anything else */
    int secret_intact;  /* the file outside the root still exists */
    int state_intact;   /* data/.weir holds weir.db and nothing else */
    int db_lock_held;   /* a third process sees the lock on weir.db */
    int ctl_lock_held;  /* ... and on data/lock.txt (opened: dropped) */
    long swept;         /* weir_broker_sweep_temps removed this many */
    int temp_left;      /* the abandoned WEIR_O_TEMP file is still there */
    int temp_done;      /* the renamed one is */
    int guarded_intact; /* the protected files are unchanged, no weir.lock */
};

static char root[1100];         /* base/data: the main root */
static char err[512];

static void setup_tree(void)
{
    tree_make("broker");
    snprintf(root, sizeof(root), "%s/data", base);
    if (mkdir(root, 0755) != 0 || mkdir(at("data/sub"), 0755) != 0
        || mkdir(at("data2"), 0755) != 0 || mkdir(at("outside"), 0755) != 0
        || mkdir(at("data/.weir"), 0700) != 0
        || mkdir(at("data/.weir2"), 0755) != 0
        || mkdir(at("weirhome"), 0755) != 0
        || mkdir(at("weirhome/pipes"), 0755) != 0
        || mkdir(at("data/conf"), 0755) != 0) {
        perror("mkdir");
        exit(2);
    }
    put_file(at("data2/x"), "sibling\n");
    put_file(at("outside/secret.txt"), "secret\n");
    put_file(at("data/sub/inner.txt"), "inner\n");
    put_file(at("data/.weir2/f"), "next door\n");
    put_file(at("data/lock.txt"), "control\n");
    put_file(at("weirhome/pipes/a.txt"), "in a denied folder\n");
    put_file(at("data/conf/weir.yaml"), "connections: {}\n");
    put_file(at("data/conf/db.pw"), "pw\n");
    put_file(at("data/conf/other.txt"), "other\n");
    put_file(at("data/pipe.lua"), "return 1\n");
    if (link(at("data/conf/weir.yaml"), at("data/hard.yaml")) != 0
        || symlink("conf/weir.yaml", at("data/yamllink")) != 0
        || symlink("conf/db.pw", at("data/pwlink")) != 0) {
        perror("link");
        exit(2);
    }
    if (symlink("../outside/secret.txt", at("data/escape")) != 0
        || symlink(at("outside/secret.txt"), at("data/abs")) != 0
        || symlink("sub/inner.txt", at("data/good")) != 0
        || symlink("sub", at("data/sublink")) != 0
        || symlink(".weir", at("data/statelink")) != 0
        || symlink(".weir/weir.db", at("data/dblink")) != 0
        || symlink("dblink", at("data/chain")) != 0
        || symlink("../.weir", at("data/sub/deep")) != 0) {
        perror("symlink");
        exit(2);
    }
}

/* Read a whole (small) file through the FFI calls into buf. */
static int slurp(const char *path, char *buf, size_t len)
{
    int32_t fd = -1;
    int64_t n = 0;
    int rc;

    rc = weir_ffi_file_open(path, WEIR_O_RDONLY, 0, &fd, err, sizeof(err));
    if (rc != WEIR_OK)
        return rc;
    rc = weir_ffi_file_read(fd, buf, len - 1, &n, err, sizeof(err));
    buf[rc == WEIR_OK ? n : 0] = '\0';
    weir_ffi_file_close(fd);
    return rc;
}

static int exists(const char *path)
{
    int32_t e = -1;

    if (weir_ffi_file_exists(path, &e, err, sizeof(err)) != WEIR_OK)
        return -1;
    return e;
}

/* WEIR_O_TEMP files: one abandoned (the supervisor sweeps it), one renamed
 * into place and one removed (both forgotten); the flag needs CREAT|EXCL. */
static void test_temps(void)
{
    const int32_t f = WEIR_O_WRONLY | WEIR_O_CREAT | WEIR_O_EXCL | WEIR_O_TEMP;
    int32_t fd = -1;

    CHECK_EQ_INT(weir_ffi_file_open(at("data/t_left.tmp"), f, 0, &fd, err,
                                    sizeof(err)), WEIR_OK);
    weir_ffi_file_close(fd);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/t_ren.tmp"), f, 0, &fd, err,
                                    sizeof(err)), WEIR_OK);
    weir_ffi_file_close(fd);
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/t_ren.tmp"), at("data/t_done"),
                                      err, sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/t_del.tmp"), f, 0, &fd, err,
                                    sizeof(err)), WEIR_OK);
    weir_ffi_file_close(fd);
    CHECK_EQ_INT(weir_ffi_file_unlink(at("data/t_del.tmp"), err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/t_bad.tmp"),
                                    WEIR_O_WRONLY | WEIR_O_CREAT | WEIR_O_TEMP,
                                    0, &fd, err, sizeof(err)), WEIR_EINVAL);
    CHECK_EQ_INT(exists(at("data/t_left.tmp")), 1);
}

/* Broker creation, root canonicalisation and the non-blocking paths. */
static void test_broker_object(void)
{
    weir_broker *b = NULL;
    char messy[PATH_MAX], canon[PATH_MAX];
    const char *roots[2];
    int sp[2];

    snprintf(messy, sizeof(messy), "%s//./data/", base);
    CHECK(realpath(root, canon) != NULL);
    roots[0] = messy;
    CHECK_EQ_INT(weir_broker_new(roots, 1, &b, err, sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_broker_nroots(b), 1);
    CHECK_EQ_STR(weir_broker_root(b, 0), canon);
    CHECK(weir_broker_root(b, 1) == NULL);

    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sp),
                 0);
    CHECK_EQ_INT(weir_broker_handle(b, sp[0]), WEIR_EAGAIN);
    close(sp[1]);
    CHECK_EQ_INT(weir_broker_handle(b, sp[0]), WEIR_ECLOSED);
    close(sp[0]);

    /* deny: the folder must exist and is never created */
    CHECK_EQ_INT(weir_broker_deny(b, at("data/.weir"), err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_broker_deny(b, at("data/sub/../.weir/"), err,
                                  sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_broker_deny(b, at("data/.weir-missing"), err,
                                  sizeof(err)), WEIR_ENOENT);
    CHECK(strstr(err, ".weir-missing\": no such file") != NULL);
    CHECK(access(at("data/.weir-missing"), F_OK) != 0);
    CHECK_EQ_INT(weir_broker_deny(b, at("data2/x"), err, sizeof(err)),
                 WEIR_ENOENT);
    CHECK_EQ_INT(weir_broker_deny(b, "", err, sizeof(err)), WEIR_EINVAL);
    CHECK_EQ_INT(weir_broker_deny(b, NULL, NULL, 0), WEIR_EINVAL);
    CHECK_EQ_INT(weir_broker_deny(NULL, root, err, sizeof(err)),
                 WEIR_EINVAL);
    weir_broker_delete(b);
    weir_broker_delete(NULL);

    roots[0] = root;
    roots[1] = at("missing");
    b = (weir_broker *)&b;
    CHECK_EQ_INT(weir_broker_new(roots, 2, &b, err, sizeof(err)),
                 WEIR_ENOENT);
    CHECK(b == NULL);
    CHECK(strstr(err, "missing") != NULL);
    roots[1] = at("data2/x");
    CHECK(weir_broker_new(roots, 2, &b, err, sizeof(err)) != WEIR_OK);
    CHECK(b == NULL);
}

/* Before weir_broker_client_init the calls act directly (trusted mode). */
static void test_direct_mode(void)
{
    char buf[64];
    int32_t fd = -1;

    CHECK_EQ_INT(weir_ffi_file_open(at("outside/direct.txt"),
                                    WEIR_O_WRONLY | WEIR_O_CREAT, 0, &fd,
                                    err, sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_write(fd, "direct", 6, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_close(fd), WEIR_OK);
    CHECK_EQ_INT(slurp(at("outside/direct.txt"), buf, sizeof(buf)),
                 WEIR_OK);
    CHECK_EQ_STR(buf, "direct");
    CHECK_EQ_INT(exists(at("outside/direct.txt")), 1);
    CHECK_EQ_INT(weir_ffi_file_unlink(at("outside/direct.txt"), err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(exists(at("outside/direct.txt")), 0);
    CHECK_EQ_INT(weir_ffi_file_open(at("outside/nope"), WEIR_O_RDONLY, 0,
                                    &fd, err, sizeof(err)), WEIR_ENOENT);
    CHECK(strstr(err, "no such file") != NULL);
}

/* The supervisor's metadata store: a real database, made before serving. */
static void make_state_db(const char *path)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE
                        | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK
        || sqlite3_exec(db, "CREATE TABLE runs(id INTEGER PRIMARY KEY);"
                            "INSERT INTO runs DEFAULT VALUES", NULL, NULL,
                        NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
        exit(3);
    }
    sqlite3_close(db);
}

/* Hold a whole-file POSIX write lock on path, as SQLite would. */
static int lock_file(const char *path)
{
    struct flock fl;
    int fd = open(path, O_RDWR | O_CLOEXEC);

    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fd < 0 || fcntl(fd, F_SETLK, &fl) != 0) {
        perror(path);
        exit(3);
    }
    return fd;
}

/* Does a third process see this process's write lock on path? */
static int lock_seen(const char *path)
{
    pid_t self = getpid(), pid;
    int status = -1;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        struct flock fl;
        int fd = open(path, O_RDWR | O_CLOEXEC);

        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fd < 0 || fcntl(fd, F_GETLK, &fl) != 0)
            _exit(2);
        _exit(fl.l_type == F_WRLCK && fl.l_pid == self ? 0 : 1);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Is dir's only entry name? */
static int only_entry(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int seen = 0, other = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, name) == 0)
            seen = 1;
        else if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            other = 1;
    }
    closedir(d);
    return seen && !other;
}

/* Does path (read directly, by the serving child) hold exactly text? */
static int slurp_plain(const char *path, const char *text)
{
    char buf[256];
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strcmp(buf, text) == 0;
}

/*
 * The serving child: deny the state folders, lock the databases, answer
 * until the worker hangs up, then report. Roots: data, and weirhome/pipes,
 * which lies inside the denied weirhome and so refuses everything.
 */
static void serve(int sock, int report_fd)
{
    const char *roots[2] = { root, at("weirhome/pipes") };
    struct report r;
    weir_broker *b = NULL;
    int rc, db_fd, ctl_fd;

    memset(&r, 0, sizeof(r));
    make_state_db(at("data/.weir/weir.db"));
    db_fd = lock_file(at("data/.weir/weir.db"));
    ctl_fd = lock_file(at("data/lock.txt"));
    if (weir_broker_new(roots, 2, &b, err, sizeof(err)) != WEIR_OK
        || weir_broker_deny(b, at("data/.weir"), err, sizeof(err))
           != WEIR_OK
        || weir_broker_deny(b, at("weirhome"), err, sizeof(err))
           != WEIR_OK
        || weir_broker_protect(b, at("data/conf/weir.yaml"), 1, err,
                               sizeof(err)) != WEIR_OK
        || weir_broker_protect(b, at("data/conf/db.pw"), 1, err,
                               sizeof(err)) != WEIR_OK
        || weir_broker_protect(b, at("data/conf/weir.lock"), 0, err,
                               sizeof(err)) != WEIR_OK
        || weir_broker_protect(b, at("data/pipe.lua"), 0, err,
                               sizeof(err)) != WEIR_OK) {
        fprintf(stderr, "broker: %s\n", err);
        exit(3);
    }
    /* a hard link made after the files were protected, outside weir */
    if (link(at("data/conf/weir.yaml"), at("data/late.yaml")) != 0) {
        perror("link");
        exit(3);
    }
    while ((rc = weir_broker_handle(b, sock)) != WEIR_ECLOSED) {
        if (rc == WEIR_OK)
            r.handled++;
        else if (rc == WEIR_EINVAL)
            r.malformed++;
        else if (rc != WEIR_EAGAIN)
            r.other++;
    }
    r.swept = (long)weir_broker_sweep_temps(b);
    r.temp_left = access(at("data/t_left.tmp"), F_OK) == 0;
    r.temp_done = access(at("data/t_done"), F_OK) == 0;
    weir_broker_delete(b);
    close(sock);
    r.secret_intact = access(at("outside/secret.txt"), F_OK) == 0;
    r.guarded_intact = slurp_plain(at("data/conf/weir.yaml"), "connections: {}\n")
                       && slurp_plain(at("data/pipe.lua"), "return 1\n")
                       && access(at("data/conf/weir.lock"), F_OK) != 0;
    r.state_intact = only_entry(at("data/.weir"), "weir.db");
    r.db_lock_held = lock_seen(at("data/.weir/weir.db"));
    r.ctl_lock_held = lock_seen(at("data/lock.txt"));
    close(db_fd);
    close(ctl_fd);
    tree_remove();
    if (write(report_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
        exit(4);
    close(report_fd);
    exit(0);
}

/* As root: become nobody, so only the broker can reach the tree. */
static int drop_privileges(void)
{
    if (geteuid() != 0)
        return 0;
    if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0
        || setuid(NOBODY) != 0) {
        perror("drop privileges");
        exit(2);
    }
    /* setuid clears "dumpable"; LeakSanitizer needs it to ptrace us. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    return 1;
}

static void test_files(void)
{
    char buf[64], rel[PATH_MAX], want[PATH_MAX + 64];
    int32_t fd = -1;

    /* create, write, read back inside the root */
    CHECK_EQ_INT(weir_ffi_file_open(at("data/new.txt"), WEIR_O_WRONLY
                                    | WEIR_O_CREAT | WEIR_O_TRUNC
                                    | WEIR_O_CLOEXEC, 0600, &fd, err,
                                    sizeof(err)), WEIR_OK);
    CHECK(fd >= 0);
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    CHECK_EQ_INT(weir_ffi_file_write(fd, "hello broker", 12, err,
                                     sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_fsync(fd, err, sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_close(fd), WEIR_OK);
    CHECK_EQ_INT(slurp(at("data/new.txt"), buf, sizeof(buf)), WEIR_OK);
    CHECK_EQ_STR(buf, "hello broker");
    CHECK_EQ_INT(exists(at("data/new.txt")), 1);
    CHECK_EQ_INT(exists(at("data/missing.txt")), 0);
    CHECK_EQ_INT(exists(root), 1);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/new.txt"), WEIR_O_RDONLY, 0,
                                    &fd, err, sizeof(err)), WEIR_OK);
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0);
    CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) == 0);
    weir_ffi_file_close(fd);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/new.txt"), WEIR_O_WRONLY
                                    | WEIR_O_CREAT | WEIR_O_EXCL, 0, &fd,
                                    err, sizeof(err)), WEIR_EIO);
    CHECK(strstr(err, "file exists") != NULL);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/missing.txt"), WEIR_O_RDONLY,
                                    0, &fd, err, sizeof(err)), WEIR_ENOENT);
    CHECK_EQ_INT(fd, -1);

    /* a relative path is made absolute against the cwd */
    CHECK_EQ_INT(chdir("/"), 0);
    snprintf(rel, sizeof(rel), "%s/new.txt", root + 1);
    CHECK_EQ_INT(slurp(rel, buf, sizeof(buf)), WEIR_OK);
    CHECK_EQ_STR(buf, "hello broker");

    /* ".." escapes */
    CHECK_EQ_INT(weir_ffi_file_open(at("data/../outside/secret.txt"),
                                    WEIR_O_RDONLY, 0, &fd, err, sizeof(err)),
                 WEIR_EPERM);
    CHECK(strstr(err, "is outside the allowed roots") != NULL);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/sub/../../data2/x"),
                                    WEIR_O_RDONLY, 0, &fd, err, sizeof(err)),
                 WEIR_EPERM);
    CHECK_EQ_INT(exists(at("data/..")), -1);

    /* absolute path outside every root: exact message */
    CHECK_EQ_INT(weir_ffi_file_open(at("outside/secret.txt"), WEIR_O_RDONLY,
                                    0, &fd, err, sizeof(err)), WEIR_EPERM);
    snprintf(want, sizeof(want), "path \"%s\" is outside the allowed roots",
             at("outside/secret.txt"));
    CHECK_EQ_STR(err, want);
    CHECK_EQ_INT(weir_ffi_file_open("/etc/passwd", WEIR_O_RDONLY, 0, &fd,
                                    err, sizeof(err)), WEIR_EPERM);
    CHECK_EQ_INT(fd, -1);

    /* a prefix sibling: root .../data must not match .../data2/x */
    CHECK_EQ_INT(weir_ffi_file_open(at("data2/x"), WEIR_O_RDONLY, 0, &fd,
                                    err, sizeof(err)), WEIR_EPERM);
    CHECK_EQ_INT(weir_ffi_file_open(at("data2/new"), WEIR_O_WRONLY
                                    | WEIR_O_CREAT, 0, &fd, err,
                                    sizeof(err)), WEIR_EPERM);

    /* symlinks: leaving the root is refused, staying inside is fine */
    CHECK_EQ_INT(weir_ffi_file_open(at("data/escape"), WEIR_O_RDONLY, 0,
                                    &fd, err, sizeof(err)), WEIR_EPERM);
    CHECK(strstr(err, "is outside the allowed roots") != NULL);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/abs"), WEIR_O_RDONLY, 0, &fd,
                                    err, sizeof(err)), WEIR_EPERM);
    CHECK_EQ_INT(slurp(at("data/good"), buf, sizeof(buf)), WEIR_OK);
    CHECK_EQ_STR(buf, "inner\n");
    CHECK_EQ_INT(slurp(at("data/sublink/inner.txt"), buf, sizeof(buf)),
                 WEIR_OK);
    CHECK_EQ_STR(buf, "inner\n");
    CHECK(weir_ffi_file_open(at("data/good"), WEIR_O_RDONLY
                             | WEIR_O_NOFOLLOW, 0, &fd, err, sizeof(err))
          != WEIR_OK);

    /* flags outside the allow-list */
    CHECK_EQ_INT(weir_ffi_file_open(at("data/new.txt"), WEIR_O_RDWR
                                    | 0x4000, 0, &fd, err, sizeof(err)),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/new.txt"), 3, 0, &fd, err,
                                    sizeof(err)), WEIR_EINVAL);

    /* mkdir, rename inside, rename out refused, unlink */
    CHECK_EQ_INT(weir_ffi_file_mkdir(at("data/newdir"), err, sizeof(err)),
                 WEIR_OK);
    CHECK(weir_ffi_file_mkdir(at("data/newdir"), err, sizeof(err))
          != WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_mkdir(at("outside/dir"), err, sizeof(err)),
                 WEIR_EPERM);
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/new.txt"),
                                      at("data/newdir/moved.txt"), err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(exists(at("data/new.txt")), 0);
    CHECK_EQ_INT(exists(at("data/newdir/moved.txt")), 1);
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/newdir/moved.txt"),
                                      at("outside/stolen.txt"), err,
                                      sizeof(err)), WEIR_EPERM);
    snprintf(want, sizeof(want), "path \"%s\" is outside the allowed roots",
             at("outside/stolen.txt"));
    CHECK_EQ_STR(err, want);
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/newdir/moved.txt"),
                                      at("data/sub/../../outside/s.txt"),
                                      err, sizeof(err)), WEIR_EPERM);
    CHECK_EQ_INT(weir_ffi_file_rename(at("outside/secret.txt"),
                                      at("data/got.txt"), err, sizeof(err)),
                 WEIR_EPERM);
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/newdir"), root, err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK_EQ_INT(exists(at("data/newdir/moved.txt")), 1);
    CHECK_EQ_INT(weir_ffi_file_unlink(at("data/newdir/moved.txt"), err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_unlink(at("data/newdir/moved.txt"), err,
                                      sizeof(err)), WEIR_ENOENT);
    CHECK_EQ_INT(weir_ffi_file_unlink(at("outside/secret.txt"), err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK_EQ_INT(weir_ffi_file_unlink(root, err, sizeof(err)), WEIR_EPERM);
    /* unlinking a symlink removes the link, never its target */
    CHECK_EQ_INT(weir_ffi_file_unlink(at("data/escape"), err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(exists(at("data/escape")), 0);
}

/*
 * Malformed packets (too short, too long, carrying a descriptor) each get
 * an error reply and the session goes on.
 */
static void test_malformed(int sock)
{
    static char big[9000];
    unsigned char reply[64];
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = { .iov_base = big, .iov_len = 32 };
    struct msghdr msg;
    struct cmsghdr *c;
    int fd = 0;

    CHECK_EQ_INT(send(sock, "bad", 3, 0), 3);
    CHECK_EQ_INT(recv(sock, reply, sizeof(reply), 0), 24);
    CHECK_EQ_INT(send(sock, big, sizeof(big), 0), sizeof(big));
    CHECK_EQ_INT(recv(sock, reply, sizeof(reply), 0), 24);
    memset(&msg, 0, sizeof(msg));
    memset(&ctl, 0, sizeof(ctl));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.space;
    msg.msg_controllen = sizeof(ctl.space);
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    CHECK_EQ_INT(sendmsg(sock, &msg, 0), 32);
    CHECK_EQ_INT(recv(sock, reply, sizeof(reply), 0), 24);
    CHECK_EQ_INT(exists(at("data/sub/inner.txt")), 1);
}

static int count_rows(const char *path, const char *sql, char *mode_out,
                      size_t mode_len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL)
        != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (mode_out != NULL
        && sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL)
           == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        snprintf(mode_out, mode_len, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK)
        fprintf(stderr, "sqlite: %s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    return rc;
}

static void test_sqlite(const char *name, int wal)
{
    char db_path[PATH_MAX], side[PATH_MAX + 8], mode[16] = "";
    sqlite3 *db = NULL;

    if (snprintf(db_path, sizeof(db_path), "%s/%s", root, name)
        >= (int)sizeof(db_path))
        abort();
    CHECK_EQ_INT(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE
                                 | SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
    CHECK_EQ_INT(exec(db, wal ? "PRAGMA journal_mode=WAL"
                              : "PRAGMA journal_mode=DELETE"), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"),
                 SQLITE_OK);
    CHECK_EQ_INT(exec(db, "BEGIN; INSERT INTO t(v) VALUES ('a'), ('b');"
                          "INSERT INTO t(v) VALUES ('c')"), SQLITE_OK);
    /* the write transaction has its journal (or WAL) on disk now */
    snprintf(side, sizeof(side), "%s%s", db_path, wal ? "-wal" : "-journal");
    CHECK_EQ_INT(exists(side), 1);
    CHECK_EQ_INT(exec(db, "COMMIT"), SQLITE_OK);
    /* temp files follow SQLITE_TMPDIR, set to the root in main() */
    CHECK_EQ_INT(exec(db, "PRAGMA temp_store=FILE;"
                          "CREATE TEMP TABLE tt(b BLOB);"
                          "PRAGMA temp.cache_size=2;"
                          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                          "SELECT i + 1 FROM n WHERE i < 200) "
                          "INSERT INTO tt SELECT zeroblob(4000) FROM n;"
                          "DROP TABLE tt"), SQLITE_OK);
    if (wal) {
        snprintf(side, sizeof(side), "%s-shm", db_path);
        CHECK_EQ_INT(exists(side), 1);
    } else {
        CHECK_EQ_INT(exists(side), 0);
    }
    CHECK_EQ_INT(sqlite3_close(db), SQLITE_OK);
    CHECK_EQ_INT(count_rows(db_path, "SELECT count(*) FROM t", mode,
                            sizeof(mode)), 3);
    CHECK_EQ_STR(mode, wal ? "wal" : "delete");
    /* a clean close removes the side files */
    snprintf(side, sizeof(side), "%s%s", db_path, wal ? "-wal" : "-journal");
    CHECK_EQ_INT(exists(side), 0);
}

/*
 * A database reached through a symlink inside the root (SQLite resolves it
 * with lstat + readlink), and the dot-file locking VFS (mkdir + rmdir).
 */
static void test_sqlite_paths(void)
{
    sqlite3 *db = NULL;

    CHECK_EQ_INT(sqlite3_open_v2(at("data/sublink/linked.db"), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                 NULL), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)"),
                 SQLITE_OK);
    CHECK_EQ_STR(sqlite3_db_filename(db, "main"),
                 at("data/sub/linked.db"));
    sqlite3_close(db);
    CHECK_EQ_INT(exists(at("data/sub/linked.db")), 1);

    db = NULL;
    CHECK_EQ_INT(sqlite3_open_v2(at("data/dot.db"), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                 "unix-dotfile"), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)"),
                 SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(exists(at("data/dot.db.lock")), 0);
}

static void test_sqlite_refused(void)
{
    const char *bad[] = { at("outside/o.db"), at("data2/o.db"),
                          at("data/../outside/o.db"), at("data/abs") };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(bad[i], &db, SQLITE_OPEN_READWRITE
                                 | SQLITE_OPEN_CREATE, NULL);

        /* either open fails, or the first real access does */
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL);
        CHECK(rc != SQLITE_OK);
        sqlite3_close(db);
    }
}

/* Does err say that path is inside weir's state folder? */
static int says_denied(const char *path)
{
    char want[PATH_MAX + 64];

    snprintf(want, sizeof(want), "path \"%s\" is inside weir's state "
                     "folder or a secrets folder",
             path);
    if (strcmp(err, want) == 0)
        return 1;
    fprintf(stderr, "unexpected error text: %s\n", err);
    return 0;
}

/* One of the SQLite system call shims weir_broker_client_init installed. */
static sqlite3_syscall_ptr shim(const char *name)
{
    sqlite3_vfs *vfs = sqlite3_vfs_find(NULL);

    return vfs->xGetSystemCall(vfs, name);
}

/* Did the stat-like shim name refuse path with EPERM? */
static int stat_refused(const char *name, const char *path)
{
    int (*fn)(const char *, struct stat *) =
        (int (*)(const char *, struct stat *))shim(name);
    struct stat st;

    errno = 0;
    return fn(path, &st) == -1 && errno == EPERM;
}

/* Can SQLite neither open db_path nor read or write through it? */
static int sqlite_refused(const char *db_path, int flags)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(db_path, &db, flags, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS t(x);"
                              "SELECT count(*) FROM t", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc != SQLITE_OK;
}

/*
 * The state folder data/.weir (denied) and everything in it are out of
 * reach, by name, through symlinks and through SQLite; the folder next to
 * it works. The serving child's lock on weir.db is checked at the end.
 */
static void test_denied(void)
{
    int (*rmdir_fn)(const char *) = (int (*)(const char *))shim("rmdir");
    int (*lstat_fn)(const char *, struct stat *) =
        (int (*)(const char *, struct stat *))shim("lstat");
    char buf[64], db[PATH_MAX], dir[PATH_MAX];
    struct stat st;
    int32_t fd = -1;

    snprintf(db, sizeof(db), "%s", at("data/.weir/weir.db"));
    snprintf(dir, sizeof(dir), "%s", at("data/.weir"));

    /* by name: the exact message, for every operation */
    CHECK_EQ_INT(weir_ffi_file_open(db, WEIR_O_RDONLY, 0, &fd, err,
                                    sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(db));
    CHECK_EQ_INT(fd, -1);
    CHECK_EQ_INT(weir_ffi_file_open(db, WEIR_O_RDWR | WEIR_O_CREAT, 0, &fd,
                                    err, sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(db));
    CHECK_EQ_INT(weir_ffi_file_open(at("data/.weir/new.txt"), WEIR_O_WRONLY
                                    | WEIR_O_CREAT | WEIR_O_EXCL, 0, &fd,
                                    err, sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/.weir/new.txt")));
    CHECK_EQ_INT(weir_ffi_file_open(dir, WEIR_O_RDONLY | WEIR_O_DIRECTORY,
                                    0, &fd, err, sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(dir));
    CHECK_EQ_INT(exists(db), -1);
    CHECK(says_denied(db));
    CHECK_EQ_INT(exists(at("data/.weir/missing")), -1);
    CHECK_EQ_INT(exists(dir), -1);
    CHECK(stat_refused("stat", db));
    CHECK(stat_refused("lstat", db));
    CHECK(stat_refused("stat", dir));
    CHECK(stat_refused("stat", at("data/sub/../.weir/weir.db-wal")));
    CHECK_EQ_INT(weir_ffi_file_unlink(db, err, sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(db));
    CHECK_EQ_INT(weir_ffi_file_mkdir(at("data/.weir/d"), err, sizeof(err)),
                 WEIR_EPERM);
    CHECK(says_denied(at("data/.weir/d")));
    errno = 0;
    CHECK(rmdir_fn(dir) == -1 && errno == EPERM);

    /* rename into, out of, and of the folder itself */
    CHECK_EQ_INT(weir_ffi_file_open(at("data/sib.txt"), WEIR_O_WRONLY
                                    | WEIR_O_CREAT, 0, &fd, err, sizeof(err)),
                 WEIR_OK);
    weir_ffi_file_close(fd);
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/sib.txt"),
                                      at("data/.weir/sib.txt"), err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/.weir/sib.txt")));
    CHECK_EQ_INT(weir_ffi_file_rename(db, at("data/stolen.db"), err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(db));
    CHECK_EQ_INT(weir_ffi_file_rename(dir, at("data/moved"), err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(dir));
    CHECK_EQ_INT(exists(at("data/sib.txt")), 1);
    CHECK_EQ_INT(exists(at("data/stolen.db")), 0);

    /* through symlinks inside the root that point (relatively) in */
    CHECK_EQ_INT(weir_ffi_file_open(at("data/statelink/weir.db"),
                                    WEIR_O_RDONLY, 0, &fd, err, sizeof(err)),
                 WEIR_EPERM);
    CHECK(says_denied(at("data/statelink/weir.db")));
    CHECK_EQ_INT(weir_ffi_file_open(at("data/dblink"), WEIR_O_RDWR, 0, &fd,
                                    err, sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/dblink")));
    CHECK_EQ_INT(weir_ffi_file_open(at("data/chain"), WEIR_O_RDONLY, 0, &fd,
                                    err, sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/chain")));
    CHECK_EQ_INT(weir_ffi_file_open(at("data/sub/deep/weir.db"),
                                    WEIR_O_RDONLY, 0, &fd, err, sizeof(err)),
                 WEIR_EPERM);
    CHECK(says_denied(at("data/sub/deep/weir.db")));
    CHECK_EQ_INT(weir_ffi_file_open(at("data/statelink"), WEIR_O_RDONLY
                                    | WEIR_O_DIRECTORY, 0, &fd, err,
                                    sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/statelink")));
    CHECK_EQ_INT(exists(at("data/dblink")), -1);
    CHECK(says_denied(at("data/dblink")));
    CHECK(stat_refused("stat", at("data/dblink")));
    CHECK(stat_refused("stat", at("data/sublink/deep/weir.db")));
    /* the link itself lies outside the folder: lstat shows the link */
    CHECK(lstat_fn(at("data/dblink"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK_EQ_INT(weir_ffi_file_unlink(at("data/statelink/weir.db"), err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/statelink/weir.db")));
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/sib.txt"),
                                      at("data/statelink/sib.txt"), err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/statelink/sib.txt")));
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/sub/deep/weir.db"),
                                      at("data/stolen.db"), err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/sub/deep/weir.db")));
    CHECK_EQ_INT(weir_ffi_file_mkdir(at("data/sub/deep/d"), err,
                                     sizeof(err)), WEIR_EPERM);
    CHECK(says_denied(at("data/sub/deep/d")));

    /* the folder next door (a name prefix) and the rest of the root work */
    CHECK_EQ_INT(slurp(at("data/.weir2/f"), buf, sizeof(buf)), WEIR_OK);
    CHECK_EQ_STR(buf, "next door\n");
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/sib.txt"),
                                      at("data/.weir2/sib.txt"), err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_mkdir(at("data/.weir2/d"), err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_unlink(at("data/.weir2/sib.txt"), err,
                                      sizeof(err)), WEIR_OK);
    CHECK(lstat_fn(at("data/.weir2/d"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_EQ_INT(slurp(at("data/sub/inner.txt"), buf, sizeof(buf)),
                 WEIR_OK);
    CHECK(lstat_fn(root, &st) == 0 && S_ISDIR(st.st_mode));
    /* the control: opening a locked file outside the folder is allowed,
     * and the broker's close drops the serving child's lock (see main) */
    CHECK_EQ_INT(slurp(at("data/lock.txt"), buf, sizeof(buf)), WEIR_OK);
    CHECK_EQ_STR(buf, "control\n");

    /* a root inside a denied folder refuses everything; its ancestor the
     * folder may not even be stat'ed, the one above it may */
    CHECK_EQ_INT(slurp(at("weirhome/pipes/a.txt"), buf, sizeof(buf)),
                 WEIR_EPERM);
    CHECK(says_denied(at("weirhome/pipes/a.txt")));
    CHECK_EQ_INT(exists(at("weirhome/pipes")), -1);
    CHECK(stat_refused("lstat", at("weirhome")));
    CHECK(lstat_fn(base, &st) == 0 && S_ISDIR(st.st_mode));

    /* SQLite through the shims: the metadata store stays out of reach */
    CHECK(sqlite_refused(db, SQLITE_OPEN_READWRITE));
    CHECK(sqlite_refused(db, SQLITE_OPEN_READONLY));
    CHECK(sqlite_refused(at("data/statelink/weir.db"),
                         SQLITE_OPEN_READWRITE));
    CHECK(sqlite_refused(at("data/dblink"), SQLITE_OPEN_READWRITE));
    CHECK(sqlite_refused(at("data/.weir/new.db"), SQLITE_OPEN_READWRITE
                         | SQLITE_OPEN_CREATE));
    CHECK(!sqlite_refused(at("data/.weir2/ok.db"), SQLITE_OPEN_READWRITE
                          | SQLITE_OPEN_CREATE));
}

/* Does err say that path is protected? */
static int says_protected(const char *path)
{
    char want[PATH_MAX + 128];

    snprintf(want, sizeof(want), "path \"%s\" is protected (weir's "
             "configuration, a secret it reads or the pipeline file)", path);
    if (strcmp(err, want) == 0)
        return 1;
    fprintf(stderr, "unexpected error text: %s\n", err);
    return 0;
}

/* May fd be opened for path with flags? Refused: says_protected. */
static int open_protected(const char *path, int32_t flags)
{
    int32_t fd = -1;
    int rc = weir_ffi_file_open(path, flags, 0644, &fd, err, sizeof(err));

    if (fd >= 0)
        weir_ffi_file_close(fd);
    return rc == WEIR_EPERM && fd == -1 && says_protected(path);
}

/*
 * weir_broker_protect's files: conf/weir.yaml and conf/db.pw (hidden),
 * pipe.lua and the missing conf/weir.lock (not written). Refused by name,
 * through a symlink, through hard links made before and after they were
 * protected, for every operation that could write, replace or (hidden)
 * read them; the folder holding them cannot move. Their neighbours work.
 */
static void test_protected(void)
{
    const char *hidden[] = { "data/conf/weir.yaml", "data/yamllink",
                             "data/hard.yaml", "data/late.yaml",
                             "data/conf/db.pw", "data/pwlink" };
    int (*access_fn)(const char *, int) =
        (int (*)(const char *, int))shim("access");
    int (*rmdir_fn)(const char *) = (int (*)(const char *))shim("rmdir");
    char buf[64], p[PATH_MAX];
    int32_t fd = -1;
    size_t i;

    for (i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
        snprintf(p, sizeof(p), "%s", at(hidden[i]));
        CHECK(open_protected(p, WEIR_O_RDONLY));
        CHECK(open_protected(p, WEIR_O_WRONLY | WEIR_O_APPEND));
        CHECK(open_protected(p, WEIR_O_RDWR | WEIR_O_CREAT));
        CHECK(open_protected(p, WEIR_O_RDONLY | WEIR_O_TRUNC));
        CHECK(sqlite_refused(p, SQLITE_OPEN_READONLY));
        CHECK(sqlite_refused(p, SQLITE_OPEN_READWRITE));
    }
    CHECK(stat_refused("stat", at("data/conf/db.pw")));
    CHECK(stat_refused("stat", at("data/pwlink")));
    errno = 0;
    CHECK(access_fn(at("data/conf/db.pw"), F_OK) == -1 && errno == EPERM);
    /* the pipeline file: read yes, written no */
    snprintf(p, sizeof(p), "%s", at("data/pipe.lua"));
    CHECK_EQ_INT(slurp(p, buf, sizeof(buf)), WEIR_OK);
    CHECK_EQ_STR(buf, "return 1\n");
    CHECK(open_protected(p, WEIR_O_WRONLY));
    CHECK(open_protected(p, WEIR_O_RDONLY | WEIR_O_TRUNC));
    CHECK(open_protected(p, WEIR_O_RDWR | WEIR_O_CREAT | WEIR_O_TRUNC));
    CHECK(sqlite_refused(p, SQLITE_OPEN_READWRITE));
    CHECK_EQ_INT(weir_ffi_file_unlink(p, err, sizeof(err)), WEIR_EPERM);
    CHECK(says_protected(p));
    CHECK_EQ_INT(weir_ffi_file_rename(p, at("data/moved.lua"), err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK(says_protected(p));
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/sub/inner.txt"), p, err,
                                      sizeof(err)), WEIR_EPERM);
    CHECK(says_protected(p));
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/late.yaml"),
                                      at("data/late2.yaml"), err,
                                      sizeof(err)), WEIR_EPERM);
    /* the missing weir.lock cannot be made, as a file or a folder */
    snprintf(p, sizeof(p), "%s", at("data/conf/weir.lock"));
    CHECK(open_protected(p, WEIR_O_WRONLY | WEIR_O_CREAT | WEIR_O_EXCL));
    CHECK_EQ_INT(weir_ffi_file_mkdir(p, err, sizeof(err)), WEIR_EPERM);
    CHECK(says_protected(p));
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/sub/inner.txt"), p, err,
                                      sizeof(err)), WEIR_EPERM);
    /* nor reached by a path that climbs back in */
    CHECK(open_protected(at("data/sub/../conf/weir.lock"),
                         WEIR_O_WRONLY | WEIR_O_CREAT));
    /* the folder holding them stays where it is */
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/conf"), at("data/conf2"), err,
                                      sizeof(err)), WEIR_EPERM);
    errno = 0;
    CHECK(rmdir_fn(at("data/conf")) == -1 && errno == EPERM);
    /* their neighbours work */
    CHECK_EQ_INT(slurp(at("data/conf/other.txt"), buf, sizeof(buf)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/conf/new.txt"), WEIR_O_WRONLY
                                    | WEIR_O_CREAT | WEIR_O_TRUNC, 0600, &fd,
                                    err, sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_close(fd), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/conf/new.txt"),
                                      at("data/conf/new2.txt"), err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_unlink(at("data/conf/new2.txt"), err,
                                      sizeof(err)), WEIR_OK);
}

/* With the broker gone, every call reports WEIR_ECLOSED. */
static void test_closed(void)
{
    sqlite3 *db = NULL;
    int32_t fd = -1;
    int sp[2];

    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    close(sp[1]);
    CHECK_EQ_INT(weir_broker_client_init(sp[0]), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_open(at("data/sub/inner.txt"), WEIR_O_RDONLY,
                                    0, &fd, err, sizeof(err)), WEIR_ECLOSED);
    CHECK_EQ_STR(err, "file broker closed");
    CHECK_EQ_INT(weir_ffi_file_mkdir(at("data/x"), err, sizeof(err)),
                 WEIR_ECLOSED);
    CHECK(sqlite3_open_v2(at("data/c.db"), &db, SQLITE_OPEN_READWRITE
                          | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK);
    sqlite3_close(db);
    weir_broker_client_reset();
    close(sp[0]);
}

int main(void)
{
    struct report r;
    int sv[2], rp[2], status = -1, dropped;
    pid_t pid;

    setup_tree();
    /* SQLite's temp files must go inside a root too (read once, lazily) */
    setenv("SQLITE_TMPDIR", root, 1);
    test_broker_object();
    test_direct_mode();

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0
        || pipe(rp) != 0) {
        perror("socketpair");
        return 2;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        close(sv[0]);
        close(rp[0]);
        serve(sv[1], rp[1]);
    }
    close(sv[1]);
    close(rp[1]);

    dropped = drop_privileges();
    if (dropped) {
        /* the proof: this process cannot reach the tree by itself */
        CHECK(access(at("data/sub/inner.txt"), F_OK) != 0 && errno == EACCES);
    } else {
        printf("note: not root, broker use is proven by request count\n");
    }
    CHECK_EQ_INT(weir_broker_client_init(sv[0]), WEIR_OK);
    CHECK_EQ_INT(weir_broker_client_init(sv[0]), WEIR_OK);
    CHECK_EQ_INT(weir_broker_client_init(-1), WEIR_EINVAL);

    test_files();
    test_temps();
    test_denied();
    test_malformed(sv[0]);
    test_sqlite("journal.db", 0);
    test_sqlite("wal.db", 1);
    test_sqlite_paths();
    test_sqlite_refused();
    test_protected();
    test_closed();

    close(sv[0]);
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(read(rp[0], &r, sizeof(r)), sizeof(r));
    close(rp[0]);
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("broker handled %ld requests (%ld malformed)%s\n", r.handled,
           r.malformed, dropped ? ", worker ran as nobody" : "");
    CHECK(r.handled >= 100);
    CHECK_EQ_INT(r.malformed, 3);
    CHECK_EQ_INT(r.other, 0);
    CHECK(r.secret_intact);
    CHECK(r.state_intact);
    CHECK(r.guarded_intact);
    CHECK_EQ_INT(r.swept, 1);
    CHECK_EQ_INT(r.temp_left, 0);
    CHECK_EQ_INT(r.temp_done, 1);
    /* the lock on weir.db survived every refused request; the control
     * lock was dropped when the broker closed its copy of lock.txt */
    CHECK_EQ_INT(r.db_lock_held, 1);
    CHECK_EQ_INT(r.ctl_lock_held, 0);
    return CHECK_DONE();
}
