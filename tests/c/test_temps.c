/*
 * test_temps.c - the journal of temporary files (runtime/temps.c, ADR 16)
 * across a killed supervisor: a forked child serves broker requests with a
 * journal in home/temps while this process, as its worker, creates
 * WEIR_O_TEMP files and renames, removes or replaces some; then the child
 * is SIGKILLed and weir_ffi_temps_sweep removes exactly the files it left,
 * and nothing else: not a file that only looks like one, not a file put
 * in the place of one, not one reached through a symlink, and nothing at
 * all while the journal's owner is alive.
 *
 * Relies on check.h, Linux >= 5.6 and a file system with O_TMPFILE under
 * $WEIR_TEST_TMP (or /tmp); the tree is removed at the end.
 */
#include "check.h"
#include "tree.h"
#include "weir/broker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char err[512];

/* The whole (small) file path, or "" when it cannot be read. */
static const char *text_of(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "r");
    size_t n = 0;

    buf[0] = '\0';
    if (f != NULL) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

static int present(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Entries of dir other than "." and "..". */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A supervisor: a broker over base/data journaling in base/home/temps,
 * serving sock until the peer hangs up (or this process is killed). */
static void supervise(int sock)
{
    const char *roots[1] = { at("data") };
    weir_broker *b = NULL;

    if (weir_broker_new(roots, 1, &b, err, sizeof(err)) != WEIR_OK
        || weir_broker_journal(b, at("home/temps"), err, sizeof(err))
           != WEIR_OK) {
        fprintf(stderr, "broker: %s\n", err);
        _exit(3);
    }
    while (weir_broker_handle(b, sock) != WEIR_ECLOSED)
        ;
    weir_broker_sweep_temps(b);
    weir_broker_delete(b);
    _exit(0);
}

static pid_t start_supervisor(int *sock)
{
    int sv[2];
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        exit(2);
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(sv[0]);
        supervise(sv[1]);
    }
    close(sv[1]);
    *sock = sv[0];
    CHECK_EQ_INT(weir_broker_client_init(sv[0]), WEIR_OK);
    return pid;
}

/* Create the temporary file rel through the broker, with text in it. */
static int make_temp(const char *rel, const char *text)
{
    int32_t fd = -1;
    int rc = weir_ffi_file_open(at(rel), WEIR_O_WRONLY | WEIR_O_CREAT
                                | WEIR_O_EXCL | WEIR_O_CLOEXEC | WEIR_O_TEMP,
                                0, &fd, err, sizeof(err));

    if (rc == WEIR_OK) {
        CHECK_EQ_INT(weir_ffi_file_write(fd, text, strlen(text), err,
                                         sizeof(err)), WEIR_OK);
        weir_ffi_file_close(fd);
    }
    return rc;
}

int main(void)
{
    int32_t removed = -1;
    struct stat st;
    int sock, status;
    pid_t pid;

    tree_make("temps");
    if (mkdir(at("data"), 0755) != 0
        || mkdir(at("data/sub"), 0755) != 0 || mkdir(at("home"), 0700) != 0) {
        perror(base);
        return 2;
    }
    /* files that only look like temporary files: never journaled */
    put_file(at("data/out.csv.tmp-t-1"), "a user's file\n");
    put_file(at("data/taken.tmp"), "taken\n");

    /* nothing to sweep yet: no folder at all */
    CHECK_EQ_INT(weir_ffi_temps_sweep(at("home/temps"), &removed, err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(removed, 0);

    pid = start_supervisor(&sock);
    CHECK_EQ_INT(make_temp("data/left.tmp", "left\n"), WEIR_OK);
    CHECK_EQ_INT(make_temp("data/sub/linked.tmp", "linked\n"), WEIR_OK);
    CHECK_EQ_INT(make_temp("data/again.tmp", "again\n"), WEIR_OK);
    CHECK_EQ_INT(make_temp("data/ren.tmp", "renamed\n"), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/ren.tmp"), at("data/done"),
                                      err, sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(make_temp("data/del.tmp", "removed\n"), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_file_unlink(at("data/del.tmp"), err, sizeof(err)),
                 WEIR_OK);
    /* a temporary file replaced by another file renamed onto it */
    CHECK_EQ_INT(make_temp("data/replaced.tmp", "temp\n"), WEIR_OK);
    put_file(at("data/user"), "put in its place\n");
    CHECK_EQ_INT(weir_ffi_file_rename(at("data/user"), at("data/replaced.tmp"),
                                      err, sizeof(err)), WEIR_OK);
    /* a name that is taken is refused, as O_EXCL does, and kept */
    CHECK_EQ_INT(make_temp("data/taken.tmp", "mine\n"), WEIR_EIO);
    CHECK(strstr(err, "exists") != NULL);
    CHECK_EQ_STR(text_of(at("data/taken.tmp")), "taken\n");
    CHECK_EQ_STR(text_of(at("data/left.tmp")), "left\n");
    CHECK_EQ_INT(entries(at("home/temps")), 1);
    CHECK(stat(at("home/temps"), &st) == 0 && (st.st_mode & 07777) == 0700);

    /* its supervisor is alive: its journal is held, nothing is swept */
    CHECK_EQ_INT(weir_ffi_temps_sweep(at("home/temps"), &removed, err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(removed, 0);
    CHECK(present(at("data/left.tmp")));
    CHECK_EQ_INT(entries(at("home/temps")), 1);

    /* the supervisor is killed: what it journaled stays behind */
    kill(pid, SIGKILL);
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    weir_broker_client_reset();
    close(sock);
    CHECK(present(at("data/left.tmp")));
    CHECK(present(at("data/sub/linked.tmp")));
    /* after the kill: a folder on the way becomes a symlink to where the
     * file now is, and a user's file takes the place of another */
    CHECK_EQ_INT(rename(at("data/sub"), at("data/sub2")), 0);
    CHECK_EQ_INT(symlink("sub2", at("data/sub")), 0);
    CHECK_EQ_INT(unlink(at("data/again.tmp")), 0);
    put_file(at("data/again.tmp"), "a user's file since\n");

    CHECK_EQ_INT(weir_ffi_temps_sweep(at("home/temps"), &removed, err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(removed, 1);
    CHECK(!present(at("data/left.tmp")));
    CHECK_EQ_STR(text_of(at("data/sub/linked.tmp")), "linked\n");
    CHECK_EQ_STR(text_of(at("data/again.tmp")), "a user's file since\n");
    CHECK_EQ_STR(text_of(at("data/done")), "renamed\n");
    CHECK_EQ_STR(text_of(at("data/replaced.tmp")), "put in its place\n");
    CHECK_EQ_STR(text_of(at("data/taken.tmp")), "taken\n");
    CHECK_EQ_STR(text_of(at("data/out.csv.tmp-t-1")), "a user's file\n");
    CHECK_EQ_INT(entries(at("home/temps")), 0);
    /* and once only */
    CHECK_EQ_INT(weir_ffi_temps_sweep(at("home/temps"), &removed, err,
                                      sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(removed, 0);

    /* a supervisor that stops as usual sweeps its own and leaves no
     * journal behind */
    pid = start_supervisor(&sock);
    /* no journal before the first temporary file */
    CHECK_EQ_INT(weir_ffi_file_mkdir(at("data/made"), err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(entries(at("home/temps")), 0);
    CHECK_EQ_INT(make_temp("data/own.tmp", "own\n"), WEIR_OK);
    CHECK_EQ_INT(entries(at("home/temps")), 1);
    weir_broker_client_reset();
    close(sock);
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(!present(at("data/own.tmp")));
    CHECK_EQ_INT(entries(at("home/temps")), 0);

    tree_remove();
    return CHECK_DONE();
}
