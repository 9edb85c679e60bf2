/*
 * csv.c - streaming RFC 4180 CSV reader and buffered writer (see
 * weir/csv.h for the rules callers rely on). Relies on libc (read, write,
 * memchr) and weir_set_err from common.c; never calls into Lua.
 *
 * The reader keeps one buffer. A row is scanned by a resumable state
 * machine whose positions are relative to the row's start, so the buffer
 * can be compacted or grown (only while one row needs it) between reads.
 * Scanning records field spans without touching the bytes; only a good
 * row is unescaped in place, so a rejected row's raw text stays intact for
 * weir_ffi_csv_reader_raw. Unquoted fields are scanned with a byte class
 * table, quoted fields and skipped rows with memchr.
 */
#include "weir/csv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CSV_BUF_INIT ((size_t)64 * 1024)
#define CSV_DEFAULT_MAX_ROW ((size_t)16 * 1024 * 1024)
#define CSV_MAX_MAX_ROW ((size_t)1 << 30)
#define CSV_MAX_FIELDS ((uint32_t)1 << 20)
#define CSV_WBUF ((size_t)64 * 1024)

enum csv_state {
    ST_FIELD,   /* at the start of a field */
    ST_UNQ,     /* inside an unquoted field */
    ST_QUO,     /* inside a quoted field */
    ST_QQ,      /* after a quote inside a quoted field: "" or the close */
    ST_QCR,     /* CR after a closing quote: LF must follow */
    ST_SKIP     /* malformed row: discard up to the next LF */
};

enum { CLS_DATA = 0, CLS_DELIM, CLS_LF, CLS_QUOTE };

struct csv_span {
    uint32_t off;   /* relative to the row start */
    uint32_t len;   /* raw length, quotes excluded, "" not yet collapsed */
    uint8_t quoted;
    uint8_t esc;    /* contains "" to collapse */
};

struct weir_csv_reader {
    int fd;
    int owns_fd;
    uint8_t delim;
    uint8_t quote;
    int has_quote;
    uint8_t cls[256];
    size_t max_row;
    size_t cap_max;

    char *buf;
    size_t cap;
    size_t start;       /* first byte of the row in progress */
    size_t end;         /* end of valid data */
    int eof;
    uint64_t line;      /* physical line where the row in progress starts */

    /* The row in progress; positions are relative to start. */
    enum csv_state st;
    size_t p;           /* scan position */
    size_t fstart;      /* first byte of the current field's content */
    size_t fend;        /* end of a quoted field's content */
    size_t rowlen;      /* raw length, terminator excluded (when done) */
    size_t dropped;     /* bytes of an over-long row already discarded */
    int esc;
    uint64_t nl;        /* LFs inside the row so far */
    uint64_t qline;     /* line where the open quoted field started */
    int err_code;       /* first problem found in this row, 0 if none */
    uint64_t err_line;
    const char *err_what;

    struct csv_span *spans;
    weir_csv_field *fields;
    uint32_t nspans;
    uint32_t spans_cap;

    const char *raw;    /* last row rejected with WEIR_EPARSE */
    size_t raw_len;
    int raw_ok;
};

struct weir_csv_writer {
    int fd;
    int owns_fd;
    uint8_t delim;
    uint8_t special[256];   /* bytes that force quoting */
    int failed;             /* errno of the write that failed, 0 if none */
    size_t len;
    char *buf;
};

/* ------------------------------------------------------------------ */
/* Reader                                                              */
/* ------------------------------------------------------------------ */

WEIR_API int weir_ffi_csv_reader_new(int fd, int owns_fd, uint8_t delim,
    uint8_t quote, size_t max_row_bytes, weir_csv_reader **out,
    char *err, size_t errlen)
{
    weir_csv_reader *r;

    *out = NULL;
    if (fd < 0) {
        weir_set_err(err, errlen, "csv reader: bad fd %d", fd);
        return WEIR_EINVAL;
    }
    if (delim == '\n' || delim == '\r' || (quote != 0 && delim == quote)) {
        weir_set_err(err, errlen, "csv reader: bad delimiter 0x%02x",
                     (unsigned)delim);
        return WEIR_EINVAL;
    }
    if (quote == '\n' || quote == '\r') {
        weir_set_err(err, errlen, "csv reader: bad quote 0x%02x",
                     (unsigned)quote);
        return WEIR_EINVAL;
    }
    if (max_row_bytes == 0)
        max_row_bytes = CSV_DEFAULT_MAX_ROW;
    if (max_row_bytes > CSV_MAX_MAX_ROW) {
        weir_set_err(err, errlen, "csv reader: max_row_bytes %zu above "
                     "the limit %zu", max_row_bytes, CSV_MAX_MAX_ROW);
        return WEIR_EINVAL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto nomem;
    r->buf = malloc(CSV_BUF_INIT);
    if (r->buf == NULL)
        goto nomem;
    r->cap = CSV_BUF_INIT;
    r->fd = fd;
    r->owns_fd = owns_fd != 0;
    r->delim = delim;
    r->quote = quote;
    r->has_quote = quote != 0;
    r->max_row = max_row_bytes;
    r->cap_max = max_row_bytes + 2 > CSV_BUF_INIT
        ? max_row_bytes + 2 : CSV_BUF_INIT;
    r->line = 1;
    r->st = ST_FIELD;
    r->cls[delim] = CLS_DELIM;
    r->cls['\n'] = CLS_LF;
    if (r->has_quote)
        r->cls[quote] = CLS_QUOTE;
    *out = r;
    return WEIR_OK;

nomem:
    if (r != NULL)
        free(r->buf);
    free(r);
    weir_set_err(err, errlen, "csv reader: out of memory");
    return WEIR_ENOMEM;
}

WEIR_API void weir_ffi_csv_reader_delete(weir_csv_reader *r)
{
    if (r == NULL)
        return;
    if (r->owns_fd)
        close(r->fd);
    free(r->buf);
    free(r->spans);
    free(r->fields);
    free(r);
}

/* Records the first problem of the row; later ones are ignored. */
static void row_error(weir_csv_reader *r, int code, uint64_t line,
                      const char *what)
{
    if (r->err_code != 0)
        return;
    r->err_code = code;
    r->err_line = line;
    r->err_what = what;
}

/* Appends a field span; a row already known to be bad records none.
 * Returns non-zero only when out of memory. */
static int add_span(weir_csv_reader *r, size_t off, size_t len,
                    int quoted, int esc)
{
    struct csv_span *s;

    if (r->err_code != 0)
        return 0;
    if (r->nspans == CSV_MAX_FIELDS) {
        row_error(r, WEIR_ELIMIT, r->line,
                  "row has more than 1048576 fields");
        return 0;
    }
    if (r->nspans == r->spans_cap) {
        uint32_t ncap = r->spans_cap ? r->spans_cap * 2 : 64;
        struct csv_span *ns;
        weir_csv_field *nf;

        ns = realloc(r->spans, ncap * sizeof(*ns));
        if (ns == NULL)
            return 1;
        r->spans = ns;
        nf = realloc(r->fields, ncap * sizeof(*nf));
        if (nf == NULL)
            return 1;
        r->fields = nf;
        r->spans_cap = ncap;
    }
    s = &r->spans[r->nspans++];
    s->off = (uint32_t)off;
    s->len = (uint32_t)len;
    s->quoted = (uint8_t)quoted;
    s->esc = (uint8_t)esc;
    return 0;
}

static uint64_t count_lf(const char *s, size_t n)
{
    const char *end = s + n;
    uint64_t k = 0;

    while (s < end && (s = memchr(s, '\n', (size_t)(end - s))) != NULL) {
        k++;
        s++;
    }
    return k;
}

#define ADD_SPAN(off, len, quoted, esc) do { \
    if (add_span(r, (off), (len), (quoted), (esc))) { \
        r->p = p; \
        return WEIR_ENOMEM; \
    } } while (0)

/* Scans the buffered bytes of the row in progress. Returns 1 when the row
 * ended (r->p is then the number of bytes consumed, terminator included),
 * 0 when more input is needed (r->p == bytes buffered), or WEIR_ENOMEM. */
static int scan(weir_csv_reader *r)
{
    const char *b = r->buf + r->start;
    const uint8_t *cls = r->cls;
    size_t n = r->end - r->start;
    size_t p = r->p;
    const char *q;

    for (;;) {
        switch (r->st) {
        case ST_FIELD:
            if (p == n)
                goto more;
            if (r->has_quote && (uint8_t)b[p] == r->quote) {
                r->fstart = ++p;
                r->esc = 0;
                r->qline = r->line + r->nl;
                r->st = ST_QUO;
                break;
            }
            r->fstart = p;
            r->st = ST_UNQ;
            /* fall through */
        case ST_UNQ:
            while (p < n && cls[(uint8_t)b[p]] == CLS_DATA)
                p++;
            if (p == n)
                goto more;
            switch (cls[(uint8_t)b[p]]) {
            case CLS_DELIM:
                ADD_SPAN(r->fstart, p - r->fstart, 0, 0);
                p++;
                r->st = ST_FIELD;
                break;
            case CLS_LF: {
                size_t len = p - r->fstart;

                if (len > 0 && b[p - 1] == '\r')
                    len--;
                ADD_SPAN(r->fstart, len, 0, 0);
                r->rowlen = r->fstart + len;
                p++;
                goto done;
            }
            default:
                row_error(r, WEIR_EPARSE, r->line + r->nl,
                          "unexpected quote in unquoted field");
                r->st = ST_SKIP;
                break;
            }
            break;
        case ST_QUO:
            q = memchr(b + p, r->quote, n - p);
            if (q == NULL) {
                r->nl += count_lf(b + p, n - p);
                p = n;
                goto more;
            }
            r->nl += count_lf(b + p, (size_t)(q - (b + p)));
            r->fend = (size_t)(q - b);
            p = r->fend + 1;
            r->st = ST_QQ;
            /* fall through */
        case ST_QQ:
            if (p == n)
                goto more;
            if ((uint8_t)b[p] == r->quote) {
                r->esc = 1;
                p++;
                r->st = ST_QUO;
            } else if ((uint8_t)b[p] == r->delim) {
                ADD_SPAN(r->fstart, r->fend - r->fstart, 1, r->esc);
                p++;
                r->st = ST_FIELD;
            } else if (b[p] == '\n') {
                ADD_SPAN(r->fstart, r->fend - r->fstart, 1, r->esc);
                r->rowlen = p;
                p++;
                goto done;
            } else if (b[p] == '\r') {
                p++;
                r->st = ST_QCR;
            } else {
                row_error(r, WEIR_EPARSE, r->line + r->nl,
                          "unexpected character after closing quote");
                r->st = ST_SKIP;
            }
            break;
        case ST_QCR:
            if (p == n)
                goto more;
            if (b[p] == '\n') {
                ADD_SPAN(r->fstart, r->fend - r->fstart, 1, r->esc);
                r->rowlen = p - 1;
                p++;
                goto done;
            }
            row_error(r, WEIR_EPARSE, r->line + r->nl,
                      "unexpected character after closing quote");
            r->st = ST_SKIP;
            break;
        case ST_SKIP:
            q = memchr(b + p, '\n', n - p);
            if (q == NULL) {
                p = n;
                goto more;
            }
            p = (size_t)(q - b);
            r->rowlen = p > 0 && b[p - 1] == '\r' ? p - 1 : p;
            p++;
            goto done;
        }
    }

more:
    r->p = p;
    return 0;
done:
    r->p = p;
    return 1;
}

/* End of input inside a non-empty row: close it as if a LF followed. */
static int scan_eof(weir_csv_reader *r)
{
    size_t p = r->p;

    switch (r->st) {
    case ST_FIELD:
        ADD_SPAN(p, 0, 0, 0);
        break;
    case ST_UNQ:
        ADD_SPAN(r->fstart, p - r->fstart, 0, 0);
        break;
    case ST_QUO:
        row_error(r, WEIR_EPARSE, r->qline,
                  "unterminated quoted field at end of input");
        break;
    case ST_QQ:
        ADD_SPAN(r->fstart, r->fend - r->fstart, 1, r->esc);
        break;
    case ST_QCR:
        row_error(r, WEIR_EPARSE, r->line + r->nl,
                  "unexpected character after closing quote");
        break;
    case ST_SKIP:
        break;
    }
    r->rowlen = p;
    return 1;
}

/* Makes room and reads more input; sets r->eof at end of input. */
static int fill(weir_csv_reader *r, char *err, size_t errlen)
{
    ssize_t k;

    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) {
        if (r->cap < r->cap_max) {
            size_t ncap = r->cap * 2 < r->cap_max ? r->cap * 2 : r->cap_max;
            char *nb = realloc(r->buf, ncap);

            if (nb == NULL) {
                weir_set_err(err, errlen, "csv reader: out of memory");
                return WEIR_ENOMEM;
            }
            r->buf = nb;
            r->cap = ncap;
        } else {
            /* The row cannot fit: everything buffered was scanned, drop
             * it and keep scanning (quotes still honoured) to its end. */
            row_error(r, WEIR_ELIMIT, r->line, NULL);
            r->dropped += r->p;
            r->end = 0;
            r->p = 0;
            r->fstart = 0;
            r->fend = 0;
            r->nspans = 0;
        }
    }
    do {
        k = read(r->fd, r->buf + r->end, r->cap - r->end);
    } while (k < 0 && errno == EINTR);
    if (k < 0) {
        weir_set_err(err, errlen, "csv reader: read failed: %s",
                     strerror(errno));
        return WEIR_EIO;
    }
    if (k == 0)
        r->eof = 1;
    r->end += (size_t)k;
    return WEIR_OK;
}

/* Collapses each "" to " in place; returns the new length. */
static uint32_t unescape(char *s, uint32_t len, char quote)
{
    char *end = s + len;
    char *w = memchr(s, quote, len);
    const char *rd = w;

    if (w == NULL)
        return len;
    while (rd < end) {
        const char *q;
        size_t k;

        if (*rd == quote) {
            *w++ = quote;
            rd += 2;
            continue;
        }
        q = memchr(rd, quote, (size_t)(end - rd));
        k = (size_t)((q != NULL ? q : end) - rd);
        memmove(w, rd, k);
        w += k;
        rd += k;
    }
    return (uint32_t)(w - s);
}

/* Consumes the finished row and turns it into a result. */
static int finish_row(weir_csv_reader *r, const weir_csv_field **fields,
                      uint32_t *nfields, uint64_t *line,
                      char *err, size_t errlen)
{
    char *row = r->buf + r->start;
    uint64_t row_line = r->line;
    int code = r->err_code;
    uint32_t i, n = r->nspans;

    *line = row_line;
    r->start += r->p;
    r->line += r->nl + 1;
    r->st = ST_FIELD;
    r->p = 0;
    r->nl = 0;
    r->nspans = 0;
    r->err_code = 0;

    if (r->dropped > 0 || r->rowlen > r->max_row) {
        r->dropped = 0;
        weir_set_err(err, errlen, "line %llu: row exceeds max_row_bytes "
                     "(%zu)", (unsigned long long)row_line, r->max_row);
        return WEIR_ELIMIT;
    }
    if (code != 0) {
        weir_set_err(err, errlen, "line %llu: %s",
                     (unsigned long long)r->err_line, r->err_what);
        if (code == WEIR_EPARSE) {
            r->raw = row;
            r->raw_len = r->rowlen;
            r->raw_ok = 1;
        }
        return code;
    }
    for (i = 0; i < n; i++) {
        const struct csv_span *s = &r->spans[i];
        weir_csv_field *f = &r->fields[i];

        f->data = row + s->off;
        f->len = s->esc ? unescape(row + s->off, s->len, (char)r->quote)
                        : s->len;
        f->quoted = s->quoted;
    }
    *fields = r->fields;
    *nfields = n;
    return WEIR_OK;
}

WEIR_API int weir_ffi_csv_next(weir_csv_reader *r,
    const weir_csv_field **fields, uint32_t *nfields, uint64_t *line,
    char *err, size_t errlen)
{
    int rc;

    *fields = NULL;
    *nfields = 0;
    r->raw_ok = 0;
    for (;;) {
        rc = scan(r);
        if (rc < 0) {
            weir_set_err(err, errlen, "csv reader: out of memory");
            return rc;
        }
        if (rc == 1)
            break;
        if (r->eof) {
            if (r->p == 0 && r->dropped == 0)
                return WEIR_ENOENT;
            rc = scan_eof(r);
            if (rc < 0) {
                weir_set_err(err, errlen, "csv reader: out of memory");
                return rc;
            }
            break;
        }
        rc = fill(r, err, errlen);
        if (rc != WEIR_OK)
            return rc;
    }
    return finish_row(r, fields, nfields, line, err, errlen);
}

WEIR_API int weir_ffi_csv_reader_raw(weir_csv_reader *r, const char **data,
    size_t *len)
{
    if (!r->raw_ok) {
        *data = NULL;
        *len = 0;
        return WEIR_ENOENT;
    }
    *data = r->raw;
    *len = r->raw_len;
    return WEIR_OK;
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

WEIR_API int weir_ffi_csv_writer_new(int fd, int owns_fd, uint8_t delim,
    weir_csv_writer **out, char *err, size_t errlen)
{
    weir_csv_writer *w;

    *out = NULL;
    if (fd < 0) {
        weir_set_err(err, errlen, "csv writer: bad fd %d", fd);
        return WEIR_EINVAL;
    }
    if (delim == '\n' || delim == '\r' || delim == '"') {
        weir_set_err(err, errlen, "csv writer: bad delimiter 0x%02x",
                     (unsigned)delim);
        return WEIR_EINVAL;
    }
    w = calloc(1, sizeof(*w));
    if (w != NULL)
        w->buf = malloc(CSV_WBUF);
    if (w == NULL || w->buf == NULL) {
        free(w);
        weir_set_err(err, errlen, "csv writer: out of memory");
        return WEIR_ENOMEM;
    }
    w->fd = fd;
    w->owns_fd = owns_fd != 0;
    w->delim = delim;
    w->special[delim] = 1;
    w->special['"'] = 1;
    w->special['\r'] = 1;
    w->special['\n'] = 1;
    *out = w;
    return WEIR_OK;
}

static int writer_failed(weir_csv_writer *w, char *err, size_t errlen)
{
    weir_set_err(err, errlen, "csv writer: write failed: %s",
                 strerror(w->failed));
    return WEIR_EIO;
}

WEIR_API int weir_ffi_csv_writer_flush(weir_csv_writer *w, char *err,
    size_t errlen)
{
    size_t off = 0;
    ssize_t k;

    if (w->failed)
        return writer_failed(w, err, errlen);
    while (off < w->len) {
        k = write(w->fd, w->buf + off, w->len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            w->failed = k < 0 ? errno : EIO;
            w->len = 0;
            return writer_failed(w, err, errlen);
        }
        off += (size_t)k;
    }
    w->len = 0;
    return WEIR_OK;
}

static int put(weir_csv_writer *w, const char *s, size_t n,
               char *err, size_t errlen)
{
    while (n > 0) {
        size_t k;

        if (w->len == CSV_WBUF) {
            int rc = weir_ffi_csv_writer_flush(w, err, errlen);

            if (rc != WEIR_OK)
                return rc;
        }
        k = CSV_WBUF - w->len < n ? CSV_WBUF - w->len : n;
        memcpy(w->buf + w->len, s, k);
        w->len += k;
        s += k;
        n -= k;
    }
    return WEIR_OK;
}

static int needs_quotes(const weir_csv_writer *w, const weir_csv_field *f)
{
    const uint8_t *s = (const uint8_t *)f->data;
    uint32_t i;

    if (f->quoted)
        return 1;
    if (f->len == 0)
        return 0;
    if (s[0] == ' ' || s[0] == '\t' || s[f->len - 1] == ' '
        || s[f->len - 1] == '\t')
        return 1;
    for (i = 0; i < f->len; i++)
        if (w->special[s[i]])
            return 1;
    return 0;
}

static int put_field(weir_csv_writer *w, const weir_csv_field *f,
                     int force, char *err, size_t errlen)
{
    const char *s, *end, *q;
    int rc;

    if (f->len == 0 && !force && !f->quoted)
        return WEIR_OK;
    if (f->len == 0)
        return put(w, "\"\"", 2, err, errlen);
    s = f->data;
    end = s + f->len;
    if (!force && !needs_quotes(w, f))
        return put(w, s, f->len, err, errlen);
    if ((rc = put(w, "\"", 1, err, errlen)) != WEIR_OK)
        return rc;
    while (s < end) {
        q = memchr(s, '"', (size_t)(end - s));
        if (q == NULL) {
            rc = put(w, s, (size_t)(end - s), err, errlen);
            break;
        }
        if ((rc = put(w, s, (size_t)(q - s) + 1, err, errlen)) != WEIR_OK
            || (rc = put(w, "\"", 1, err, errlen)) != WEIR_OK)
            break;
        s = q + 1;
    }
    if (rc != WEIR_OK)
        return rc;
    return put(w, "\"", 1, err, errlen);
}

WEIR_API int weir_ffi_csv_write_row(weir_csv_writer *w,
    const weir_csv_field *fields, uint32_t n, char *err, size_t errlen)
{
    char delim = (char)w->delim;
    uint32_t i;
    int rc;

    if (w->failed)
        return writer_failed(w, err, errlen);
    if (n == 0 || fields == NULL) {
        weir_set_err(err, errlen, "csv writer: row has no fields");
        return WEIR_EINVAL;
    }
    for (i = 0; i < n; i++) {
        if (fields[i].data == NULL && fields[i].len > 0) {
            weir_set_err(err, errlen, "csv writer: field %u has no data",
                         (unsigned)i + 1);
            return WEIR_EINVAL;
        }
    }
    for (i = 0; i < n; i++) {
        if (i > 0 && (rc = put(w, &delim, 1, err, errlen)) != WEIR_OK)
            return rc;
        /* A lone empty field is quoted so the line is not blank. */
        rc = put_field(w, &fields[i], n == 1 && fields[i].len == 0,
                       err, errlen);
        if (rc != WEIR_OK)
            return rc;
    }
    return put(w, "\n", 1, err, errlen);
}

WEIR_API void weir_ffi_csv_writer_delete(weir_csv_writer *w)
{
    if (w == NULL)
        return;
    weir_ffi_csv_writer_flush(w, NULL, 0);
    if (w->owns_fd)
        close(w->fd);
    free(w->buf);
    free(w);
}
