/*
 * test_csv.c - unit tests for the CSV reader and writer (connectors/csv.c):
 * RFC 4180 quoting, CRLF, custom delimiters, blank and trailing lines,
 * malformed rows and resync, the row size limit, rows across the buffer
 * boundary, short reads from a pipe and a writer round trip. Relies on
 * check.h and a scratch directory under $WEIR_TEST_TMP (or /tmp), which it
 * removes.
 */
#include "weir/csv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char tmp_dir[512];
static char tmp_path[600];

static void tmp_setup(void)
{
    const char *base = getenv("WEIR_TEST_TMP");

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    if (mkdir(base, 0700) != 0 && errno != EEXIST)
        base = "/tmp";
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/test_csv.XXXXXX", base);
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(tmp_path, sizeof(tmp_path), "%s/data.csv", tmp_dir);
}

static void tmp_teardown(void)
{
    unlink(tmp_path);
    CHECK(rmdir(tmp_dir) == 0);
}

static void write_file(const char *data, size_t len)
{
    FILE *f = fopen(tmp_path, "wb");

    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(tmp_path);
        exit(2);
    }
}

static char *read_file(size_t *len)
{
    FILE *f = fopen(tmp_path, "rb");
    char *buf;
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
        perror(tmp_path);
        exit(2);
    }
    rewind(f);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(tmp_path);
        exit(2);
    }
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A growable string for rendering parse results. */
struct sbuf {
    char *s;
    size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (b->s == NULL)
            exit(2);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Renders every result of a reader: a row as "L:" then its fields, "[x]"
 * unquoted, "<x>" quoted; an error as "L:E<code> <message>". One result a
 * line; stops at WEIR_ENOENT. */
static char *render_reader(weir_csv_reader *r)
{
    struct sbuf b = { NULL, 0, 0 };
    const weir_csv_field *f;
    uint32_t n, i;
    uint64_t line;
    char err[256], tmp[64];
    int rc;

    sb_str(&b, "");
    for (;;) {
        err[0] = '\0';
        rc = weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err));
        if (rc == WEIR_ENOENT)
            break;
        snprintf(tmp, sizeof(tmp), "%llu:", (unsigned long long)line);
        sb_str(&b, tmp);
        if (rc != WEIR_OK) {
            snprintf(tmp, sizeof(tmp), "E%d ", rc);
            sb_str(&b, tmp);
            sb_str(&b, err);
            sb_str(&b, "\n");
            if (rc == WEIR_EIO || rc == WEIR_ENOMEM)
                break;
            continue;
        }
        for (i = 0; i < n; i++) {
            sb_str(&b, f[i].quoted ? "<" : "[");
            sb_add(&b, f[i].data, f[i].len);
            sb_str(&b, f[i].quoted ? ">" : "]");
        }
        sb_str(&b, "\n");
    }
    return b.s;
}

static weir_csv_reader *open_reader(uint8_t delim, uint8_t quote,
                                    size_t max_row)
{
    weir_csv_reader *r = NULL;
    char err[256];
    int fd = open(tmp_path, O_RDONLY);
    int rc;

    if (fd < 0) {
        perror(tmp_path);
        exit(2);
    }
    rc = weir_ffi_csv_reader_new(fd, 1, delim, quote, max_row, &r,
                                 err, sizeof(err));
    CHECK_EQ_INT(rc, WEIR_OK);
    if (rc != WEIR_OK) {
        fprintf(stderr, "reader_new: %s\n", err);
        exit(2);
    }
    return r;
}

/* Parses data with the given settings and renders the results. */
static char *parse_with(const char *data, size_t len, uint8_t delim,
                        uint8_t quote, size_t max_row)
{
    weir_csv_reader *r;
    char *out;

    write_file(data, len);
    r = open_reader(delim, quote, max_row);
    out = render_reader(r);
    weir_ffi_csv_reader_delete(r);
    return out;
}

#define CHECK_PARSE(data, want) do { \
    char *got_ = parse_with((data), sizeof(data) - 1, ',', '"', 0); \
    CHECK_EQ_STR(got_, (want)); \
    free(got_); } while (0)

#define CHECK_PARSE_WITH(data, delim, quote, max, want) do { \
    char *got_ = parse_with((data), sizeof(data) - 1, (delim), (quote), \
                            (max)); \
    CHECK_EQ_STR(got_, (want)); \
    free(got_); } while (0)

static void test_basic_and_quoting(void)
{
    CHECK_PARSE("a,b,c\n1,2,3\n", "1:[a][b][c]\n2:[1][2][3]\n");
    CHECK_PARSE("\"a\",\"b,c\",\"d\"\"e\"\n",
                "1:<a><b,c><d\"e>\n");
    CHECK_PARSE("\"\"\"\",\"x\"\"\"\"y\"\n", "1:<\"><x\"\"y>\n");
    CHECK_PARSE("\"multi\nline\",z\nnext,1\n",
                "1:<multi\nline>[z]\n3:[next][1]\n");
    CHECK_PARSE("\"a\n\nb\",\"c\nd\"\ne\n", "1:<a\n\nb><c\nd>\n5:[e]\n");
    CHECK_PARSE("x,\"has \"\"quotes\"\" and, commas\",y\n",
                "1:[x]<has \"quotes\" and, commas>[y]\n");
    CHECK_PARSE(" spaced , kept \n", "1:[ spaced ][ kept ]\n");
}

static void test_crlf(void)
{
    CHECK_PARSE("a,b\r\nc,\"d\"\r\n", "1:[a][b]\n2:[c]<d>\n");
    CHECK_PARSE("\"a\r\nb\",c\r\nd\r\n", "1:<a\r\nb>[c]\n3:[d]\n");
    CHECK_PARSE("a,\r\n\r\nb", "1:[a][]\n2:[]\n3:[b]\n");
    /* A CR not followed by LF is data in an unquoted field. */
    CHECK_PARSE("a\rb,c\n", "1:[a\rb][c]\n");
    CHECK_PARSE("\"a\"\rb\n",
                "1:E-7 line 1: unexpected character after closing quote\n");
}

static void test_delimiters(void)
{
    CHECK_PARSE_WITH("a;b,c;\"d;e\"\n", ';', '"', 0,
                     "1:[a][b,c]<d;e>\n");
    CHECK_PARSE_WITH("a\tb c\t\n", '\t', '"', 0, "1:[a][b c][]\n");
    CHECK_PARSE_WITH("a|'b|c'|'it''s'\n", '|', '\'', 0,
                     "1:[a]<b|c><it's>\n");
    /* quote 0: no quoting at all, quotes are data. */
    CHECK_PARSE_WITH("\"a\",b\"c\n", ',', 0, 0, "1:[\"a\"][b\"c]\n");
}

static void test_empty_and_trailing(void)
{
    CHECK_PARSE(",,\n", "1:[][][]\n");
    CHECK_PARSE("a,\n", "1:[a][]\n");
    CHECK_PARSE("\"\",x,\"\"\n", "1:<>[x]<>\n");
    CHECK_PARSE("a\nb", "1:[a]\n2:[b]\n");
    CHECK_PARSE("a\nb\n", "1:[a]\n2:[b]\n");
    CHECK_PARSE("a,\"b\"", "1:[a]<b>\n");
    CHECK_PARSE("a,", "1:[a][]\n");
    CHECK_PARSE("a\n\nb\n", "1:[a]\n2:[]\n3:[b]\n");
    CHECK_PARSE("a\n\n", "1:[a]\n2:[]\n");
    CHECK_PARSE("\n", "1:[]\n");
    CHECK_PARSE("", "");
    CHECK_PARSE("\"\"", "1:<>\n");
}

static void test_malformed_rows(void)
{
    weir_csv_reader *r;
    const weir_csv_field *f;
    const char *raw;
    size_t raw_len;
    uint32_t n;
    uint64_t line;
    char err[256];
    static const char data[] =
        "ok,1\nbad\"x,2\nfine,3\n\"q\"z,4\r\nlast,5\n";

    CHECK_PARSE("ok,1\nbad\"x,2\nfine,3\n\"q\"z,4\r\nlast,5\n",
                "1:[ok][1]\n"
                "2:E-7 line 2: unexpected quote in unquoted field\n"
                "3:[fine][3]\n"
                "4:E-7 line 4: unexpected character after closing quote\n"
                "5:[last][5]\n");
    /* The error names the physical line, after embedded newlines. */
    CHECK_PARSE("\"m\nm\",1\n\"a\nb\"x\ngood\n",
                "1:<m\nm>[1]\n"
                "3:E-7 line 4: unexpected character after closing quote\n"
                "5:[good]\n");
    CHECK_PARSE("a,b\n\"open,1\nx,2\n",
                "1:[a][b]\n"
                "2:E-7 line 2: unterminated quoted field at end of input\n");
    CHECK_PARSE("x,\"c\"\r", "1:E-7 line 1: unexpected character after "
                "closing quote\n");

    /* The raw text of a rejected row is available for a dead letter. */
    write_file(data, sizeof(data) - 1);
    r = open_reader(',', '"', 0);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_csv_reader_raw(r, &raw, &raw_len), WEIR_ENOENT);
    CHECK(raw == NULL && raw_len == 0);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_EPARSE);
    CHECK(f == NULL && n == 0);
    CHECK_EQ_INT(line, 2);
    CHECK_EQ_STR(err, "line 2: unexpected quote in unquoted field");
    CHECK_EQ_INT(weir_ffi_csv_reader_raw(r, &raw, &raw_len), WEIR_OK);
    CHECK(raw_len == 7 && memcmp(raw, "bad\"x,2", 7) == 0);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_OK);
    CHECK(n == 2 && f[0].len == 4 && memcmp(f[0].data, "fine", 4) == 0);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_EPARSE);
    CHECK_EQ_INT(weir_ffi_csv_reader_raw(r, &raw, &raw_len), WEIR_OK);
    CHECK(raw_len == 6 && memcmp(raw, "\"q\"z,4", 6) == 0);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(line, 5);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_ENOENT);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_ENOENT);
    weir_ffi_csv_reader_delete(r);
}

static void test_max_row_bytes(void)
{
    struct sbuf in = { NULL, 0, 0 };
    char *got;
    int i;

    /* Exactly max_row_bytes is fine; the terminator does not count. */
    CHECK_PARSE_WITH("0123456789\r\n\"12345678\"\n", ',', '"', 10,
                     "1:[0123456789]\n2:<12345678>\n");
    CHECK_PARSE_WITH("short\n0123456789a\nok\n", ',', '"', 10,
                     "1:[short]\n"
                     "2:E-6 line 2: row exceeds max_row_bytes (10)\n"
                     "3:[ok]\n");
    CHECK_PARSE_WITH("\"0123\n4567\n89\"\nok\n", ',', '"', 10,
                     "1:E-6 line 1: row exceeds max_row_bytes (10)\n"
                     "4:[ok]\n");

    /* A row far larger than the buffer is skipped with constant memory,
     * its quoted newlines still counted and honoured. */
    sb_str(&in, "first\n\"");
    for (i = 0; i < 30000; i++)
        sb_str(&in, "abcdefgh,\n");
    sb_str(&in, "\",tail\nafter,row\n");
    got = parse_with(in.s, in.len, ',', '"', 100000);
    CHECK_EQ_STR(got, "1:[first]\n"
                 "2:E-6 line 2: row exceeds max_row_bytes (100000)\n"
                 "30003:[after][row]\n");
    free(got);
    free(in.s);

    /* At most 1048576 fields a row. */
    {
        size_t n = ((size_t)1 << 20) + 4;
        char *commas = malloc(n);

        memset(commas, ',', n - 4);
        memcpy(commas + n - 4, "\na\n", 3);
        got = parse_with(commas, n - 1, ',', '"', 0);
        CHECK_EQ_STR(got, "1:E-6 line 1: row has more than 1048576 "
                     "fields\n2:[a]\n");
        free(got);
        memset(commas, ',', n - 4);
        got = parse_with(commas, n - 5, ',', '"', 0);
        CHECK(got != NULL && strncmp(got, "1:[][]", 6) == 0
              && strlen(got) == 2 + 2 * ((size_t)1 << 20) + 1);
        free(got);
        free(commas);
    }
}

/* Many rows, > 64 KiB in all, so rows straddle buffer refills. */
static void test_buffer_boundaries(void)
{
    struct sbuf in = { NULL, 0, 0 }, want = { NULL, 0, 0 };
    char tmp[256], *got, *big;
    int i, line = 1;
    size_t k;

    for (i = 0; i < 20000; i++) {
        switch (i % 4) {
        case 0:
            snprintf(tmp, sizeof(tmp), "%d,plain text,%d\n", i, i * 7);
            sb_str(&in, tmp);
            snprintf(tmp, sizeof(tmp), "%d:[%d][plain text][%d]\n",
                     line, i, i * 7);
            line += 1;
            break;
        case 1:
            snprintf(tmp, sizeof(tmp), "\"q%d\"\"x\",\"a,b\",\r\n", i);
            sb_str(&in, tmp);
            snprintf(tmp, sizeof(tmp), "%d:<q%d\"x><a,b>[]\n", line, i);
            line += 1;
            break;
        case 2:
            snprintf(tmp, sizeof(tmp), "\"multi\nline %d\",end\n", i);
            sb_str(&in, tmp);
            snprintf(tmp, sizeof(tmp), "%d:<multi\nline %d>[end]\n",
                     line, i);
            line += 2;
            break;
        default:
            sb_str(&in, "\n");
            snprintf(tmp, sizeof(tmp), "%d:[]\n", line);
            line += 1;
            break;
        }
        sb_str(&want, tmp);
    }
    CHECK(in.len > 5 * 64 * 1024);
    got = parse_with(in.s, in.len, ',', '"', 0);
    CHECK(got != NULL && strcmp(got, want.s) == 0);
    free(got);

    /* Fed through a pipe a few bytes at a time: every state is resumed
     * after a short read. */
    {
        int pfd[2];
        pid_t pid;
        weir_csv_reader *r = NULL;
        char err[256];
        int status;

        CHECK(pipe(pfd) == 0);
        pid = fork();
        if (pid == 0) {
            size_t off = 0;

            close(pfd[0]);
            while (off < in.len) {
                size_t n = in.len - off < 3 ? in.len - off : 3;
                ssize_t w = write(pfd[1], in.s + off, n);

                if (w <= 0)
                    _exit(1);
                off += (size_t)w;
            }
            _exit(0);
        }
        close(pfd[1]);
        CHECK_EQ_INT(weir_ffi_csv_reader_new(pfd[0], 1, ',', '"', 0, &r,
                                             err, sizeof(err)), WEIR_OK);
        got = render_reader(r);
        weir_ffi_csv_reader_delete(r);
        CHECK(waitpid(pid, &status, 0) == pid && status == 0);
        CHECK(got != NULL && strcmp(got, want.s) == 0);
        free(got);
    }
    free(in.s);
    free(want.s);

    /* One row of 300 KiB grows the buffer (default limit is 16 MiB). */
    big = malloc(300 * 1024 + 16);
    memcpy(big, "x,\"", 3);
    for (k = 3; k < 300 * 1024; k++)
        big[k] = (char)('a' + k % 26);
    memcpy(big + k, "\",y\nz\n", 6);
    write_file(big, k + 6);
    {
        weir_csv_reader *r = open_reader(',', '"', 0);
        const weir_csv_field *f;
        uint32_t n;
        uint64_t line2;
        char err[256];

        CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line2, err,
                                       sizeof(err)), WEIR_OK);
        CHECK_EQ_INT(n, 3);
        CHECK_EQ_INT(f[1].len, 300 * 1024 - 3);
        CHECK(f[1].len > 3 && memcmp(f[1].data, big + 3, f[1].len) == 0);
        CHECK(f[2].len == 1 && f[2].data[0] == 'y');
        CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line2, err,
                                       sizeof(err)), WEIR_OK);
        CHECK(n == 1 && f[0].len == 1 && f[0].data[0] == 'z');
        CHECK_EQ_INT(line2, 2);
        CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line2, err,
                                       sizeof(err)), WEIR_ENOENT);
        weir_ffi_csv_reader_delete(r);
    }
    free(big);
}

static void test_bad_arguments(void)
{
    weir_csv_reader *r = (weir_csv_reader *)&r;
    weir_csv_writer *w = (weir_csv_writer *)&w;
    char err[256];

    CHECK_EQ_INT(weir_ffi_csv_reader_new(0, 0, ',', ',', 0, &r, err,
                                         sizeof(err)), WEIR_EINVAL);
    CHECK(r == NULL);
    CHECK_EQ_STR(err, "csv reader: bad delimiter 0x2c");
    CHECK_EQ_INT(weir_ffi_csv_reader_new(0, 0, '\n', '"', 0, &r, err,
                                         sizeof(err)), WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_csv_reader_new(-1, 0, ',', '"', 0, &r, err,
                                         sizeof(err)), WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_csv_reader_new(0, 0, ',', '"', (size_t)2 << 30,
                                         &r, NULL, 0), WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_csv_writer_new(1, 0, '"', &w, err, sizeof(err)),
                 WEIR_EINVAL);
    CHECK(w == NULL);
    weir_ffi_csv_reader_delete(NULL);
    weir_ffi_csv_writer_delete(NULL);
}

static void test_writer(void)
{
    static const char nul_field[] = { 'a', '\0', 'b' };
    static const weir_csv_field row1[] = {
        { "plain", 5, 0 }, { "a,b", 3, 0 }, { "say \"hi\"", 8, 0 },
        { "two\nlines", 9, 0 }, { "cr\r", 3, 0 }, { " lead", 5, 0 },
        { "trail\t", 6, 0 }, { "", 0, 0 }, { NULL, 0, 0 },
        { "forced", 6, 1 }, { "", 0, 1 }, { nul_field, 3, 0 },
    };
    static const weir_csv_field row2[] = { { NULL, 0, 0 } };
    static const weir_csv_field row3[] = { { "x;y", 3, 0 }, { "z", 1, 0 } };
    weir_csv_writer *w;
    weir_csv_reader *r;
    const weir_csv_field *f;
    weir_csv_field bad = { NULL, 4, 0 };
    uint32_t n, i;
    uint64_t line;
    char err[256], *text, *got;
    size_t len;
    int fd, ok;

    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ_INT(weir_ffi_csv_writer_new(fd, 1, ',', &w, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_csv_write_row(w, row1, 12, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_csv_write_row(w, row2, 1, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_csv_write_row(w, row3, 2, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_csv_write_row(w, row3, 0, err, sizeof(err)),
                 WEIR_EINVAL);
    CHECK_EQ_INT(weir_ffi_csv_write_row(w, &bad, 1, err, sizeof(err)),
                 WEIR_EINVAL);
    CHECK_EQ_STR(err, "csv writer: field 1 has no data");
    CHECK_EQ_INT(weir_ffi_csv_writer_flush(w, err, sizeof(err)), WEIR_OK);
    weir_ffi_csv_writer_delete(w);

    text = read_file(&len);
    {
        static const char want[] =
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\","
            "\" lead\",\"trail\t\",,,\"forced\",\"\",a\0b\n"
            "\"\"\n"
            "x;y,z\n";

        CHECK_EQ_INT(len, sizeof(want) - 1);
        CHECK(len == sizeof(want) - 1 && memcmp(text, want, len) == 0);
    }
    free(text);

    /* Round trip through the reader. */
    r = open_reader(',', '"', 0);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(n, 12);
    ok = n == 12;
    for (i = 0; ok && i < n; i++) {
        ok = f[i].len == row1[i].len
            && (f[i].len == 0 || memcmp(f[i].data, row1[i].data,
                                        f[i].len) == 0);
    }
    CHECK(ok);
    CHECK(n == 12 && f[9].quoted && f[10].quoted && !f[0].quoted);
    CHECK_EQ_INT(weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err)),
                 WEIR_OK);
    CHECK(n == 1 && f[0].len == 0);
    CHECK_EQ_INT(line, 3);
    got = render_reader(r);
    CHECK_EQ_STR(got, "4:[x;y][z]\n");
    free(got);
    weir_ffi_csv_reader_delete(r);

    /* Over 64 KiB of output exercises the flush inside write_row, with a
     * custom delimiter. */
    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK_EQ_INT(weir_ffi_csv_writer_new(fd, 1, ';', &w, err, sizeof(err)),
                 WEIR_OK);
    for (i = 0; i < 10000; i++) {
        char a[32];
        weir_csv_field row[3] = {
            { a, 0, 0 }, { "with;delim \"q\"", 14, 0 }, { "end", 3, 0 }
        };

        row[0].len = (uint32_t)snprintf(a, sizeof(a), "%u", i);
        if (weir_ffi_csv_write_row(w, row, 3, err, sizeof(err)) != WEIR_OK)
            break;
    }
    CHECK_EQ_INT(i, 10000);
    weir_ffi_csv_writer_delete(w);   /* flushes */
    r = open_reader(';', '"', 0);
    ok = 1;
    for (i = 0; ok; i++) {
        int rc = weir_ffi_csv_next(r, &f, &n, &line, err, sizeof(err));
        char a[32];
        int alen = snprintf(a, sizeof(a), "%u", i);

        if (rc == WEIR_ENOENT)
            break;
        ok = rc == WEIR_OK && n == 3 && line == i + 1
            && f[0].len == (uint32_t)alen && memcmp(f[0].data, a, alen) == 0
            && f[1].len == 14 && memcmp(f[1].data, "with;delim \"q\"", 14)
                == 0 && f[1].quoted;
    }
    CHECK(ok);
    CHECK_EQ_INT(i, 10000);
    weir_ffi_csv_reader_delete(r);
}

static void test_writer_failure(void)
{
    static const weir_csv_field row[] = { { "a", 1, 0 } };
    weir_csv_writer *w;
    char err[256];
    int pfd[2];

    /* Writing into a pipe whose read end is closed fails with EPIPE; the
     * failure is sticky. */
    CHECK(pipe(pfd) == 0);
    close(pfd[0]);
    CHECK_EQ_INT(weir_ffi_csv_writer_new(pfd[1], 1, ',', &w, err,
                                         sizeof(err)), WEIR_OK);
    CHECK_EQ_INT(weir_ffi_csv_write_row(w, row, 1, err, sizeof(err)),
                 WEIR_OK);
    CHECK_EQ_INT(weir_ffi_csv_writer_flush(w, err, sizeof(err)), WEIR_EIO);
    CHECK_EQ_STR(err, "csv writer: write failed: Broken pipe");
    CHECK_EQ_INT(weir_ffi_csv_write_row(w, row, 1, err, sizeof(err)),
                 WEIR_EIO);
    weir_ffi_csv_writer_delete(w);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    tmp_setup();
    test_basic_and_quoting();
    test_crlf();
    test_delimiters();
    test_empty_and_trailing();
    test_malformed_rows();
    test_max_row_bytes();
    test_buffer_boundaries();
    test_bad_arguments();
    test_writer();
    test_writer_failure();
    tmp_teardown();
    return CHECK_DONE();
}
