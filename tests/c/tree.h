/*
 * tree.h - a temporary folder tree for the C tests that work on files
 * (test_broker.c, test_temps.c): made under $WEIR_TEST_TMP (or /tmp),
 * paths in it built with at(), files written with put_file(), all of it
 * removed with tree_remove(). Static functions: include it once per test.
 */
#ifndef WEIR_TEST_TREE_H
#define WEIR_TEST_TREE_H

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[1024];         /* the tree */

/* Make the tree, base = $WEIR_TEST_TMP/NAME-XXXXXX; exit 2 on failure. */
static void tree_make(const char *name)
{
    const char *tmp = getenv("WEIR_TEST_TMP");

    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    (void)mkdir(tmp, 0755);
    snprintf(base, sizeof(base), "%s/%s-XXXXXX", tmp, name);
    if (mkdtemp(base) == NULL) {
        perror(base);
        exit(2);
    }
}

/* Build base/rel into a static rotating buffer (4 live at once). */
static const char *at(const char *rel)
{
    static char bufs[4][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 4];

    if (snprintf(b, PATH_MAX, "%s/%s", base, rel) >= PATH_MAX)
        abort();
    return b;
}

/* Write text to path (created or truncated); exit 2 on failure. */
static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static int tree_rm_one(const char *path, const struct stat *st, int type,
                       struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Remove the whole tree (never following a symlink). */
static void tree_remove(void)
{
    nftw(base, tree_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
