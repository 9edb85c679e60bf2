/*
 * regex.c - regular expressions through PCRE2 (regex.h, ADR 42).
 *
 * JSON Schema patterns are ECMA-262 regular expressions; PCRE2 is brought
 * close to them by its options and by a short rewrite of the source:
 * - PCRE2_UTF: patterns and subjects are UTF-8, matched by code point;
 *   no PCRE2_UCP, so \d \w \b are ASCII as in ECMA-262;
 * - PCRE2_ALT_BSUX and PCRE2_EXTRA_ALT_BSUX: \uHHHH, \u{H...} and \xHH as
 *   ECMA-262 reads them; a surrogate pair \uD83D\uDE00 is rewritten to
 *   the one code point it encodes;
 * - PCRE2_DOLLAR_ENDONLY: $ is the end of the subject, never before a
 *   final newline; PCRE2_ALLOW_EMPTY_CLASS: [] matches nothing and [^]
 *   any character; PCRE2_MATCH_UNSET_BACKREF: a backreference to a group
 *   that did not take part matches the empty string;
 * - rewritten: \s and \S outside a class and \s inside one to ECMA-262's
 *   white space and line terminators (U+00A0, U+FEFF, the Zs spaces,
 *   U+2028, U+2029); . outside a class to "anything but \n \r U+2028
 *   U+2029".
 * What still differs is listed in docs/adr/0042-regex-through-pcre2.md.
 * Each compiled pattern keeps its own match data; not thread-safe per
 * pattern. Relies on libpcre2-8 (10.34 or later) and buf.h.
 */
#include "weir/regex.h"
#include "weir/buf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct weir_regex {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mc;
};

/* written as PCRE2_EXTRA_ALT_BSUX reads code points: \u{H...} */
#define ECMA_SPACE "\\t\\n\\x0b\\f\\r \\u{a0}\\u{1680}\\u{2000}-\\u{200a}" \
                   "\\u{2028}\\u{2029}\\u{202f}\\u{205f}\\u{3000}\\u{feff}"

/* The code unit of \uHHHH at s[i] (s[i] == '\\'), or -1. */
static long u4(const char *s, size_t len, size_t i)
{
    long v = 0;

    if (i + 6 > len || s[i] != '\\' || s[i + 1] != 'u')
        return -1;
    for (size_t k = i + 2; k < i + 6; k++) {
        int h = weir_hexval((unsigned char)s[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static int append_str(weir_buf *b, const char *s)
{
    return weir_buf_append(b, s, strlen(s));
}

/* ECMA-262's long General_Category names, which PCRE2 10.42 lacks. */
static const char *const gc_long[][2] = {
    {"Letter", "L"}, {"Cased_Letter", "L&"}, {"Uppercase_Letter", "Lu"},
    {"Lowercase_Letter", "Ll"}, {"Titlecase_Letter", "Lt"},
    {"Modifier_Letter", "Lm"}, {"Other_Letter", "Lo"}, {"Mark", "M"},
    {"Nonspacing_Mark", "Mn"}, {"Spacing_Mark", "Mc"},
    {"Enclosing_Mark", "Me"}, {"Number", "N"}, {"Decimal_Number", "Nd"},
    {"digit", "Nd"}, {"Letter_Number", "Nl"}, {"Other_Number", "No"},
    {"Punctuation", "P"}, {"punct", "P"}, {"Connector_Punctuation", "Pc"},
    {"Dash_Punctuation", "Pd"}, {"Open_Punctuation", "Ps"},
    {"Close_Punctuation", "Pe"}, {"Initial_Punctuation", "Pi"},
    {"Final_Punctuation", "Pf"}, {"Other_Punctuation", "Po"},
    {"Symbol", "S"}, {"Math_Symbol", "Sm"}, {"Currency_Symbol", "Sc"},
    {"Modifier_Symbol", "Sk"}, {"Other_Symbol", "So"}, {"Separator", "Z"},
    {"Space_Separator", "Zs"}, {"Line_Separator", "Zl"},
    {"Paragraph_Separator", "Zp"}, {"Other", "C"}, {"Control", "Cc"},
    {"cntrl", "Cc"}, {"Format", "Cf"}, {"Surrogate", "Cs"},
    {"Private_Use", "Co"}, {"Unassigned", "Cn"},
};

/* \p{...} or \P{...} at s[i] in PCRE2's spelling: General_Category=X and
 * gc=X as X, long category names as short ones, Script=X and sc=X (and
 * the _Extensions forms) as sc:X; the rest as written. Returns the bytes
 * of src consumed, 0 when s[i] starts no such escape. */
static size_t property(const char *s, size_t len, size_t i, weir_buf *out,
                       int *rc)
{
    const char *name, *end;
    size_t n;
    char tmp[96];

    if (i + 3 >= len || (s[i + 1] != 'p' && s[i + 1] != 'P') || s[i + 2] != '{')
        return 0;
    name = s + i + 3;
    end = memchr(name, '}', len - (i + 3));
    if (end == NULL || end - name >= 64)
        return 0;
    n = (size_t)(end - name);
    if (n > 17 && memcmp(name, "General_Category=", 17) == 0)
        name += 17, n -= 17;
    else if (n > 3 && memcmp(name, "gc=", 3) == 0)
        name += 3, n -= 3;
    for (size_t k = 0; k < sizeof gc_long / sizeof gc_long[0]; k++)
        if (strlen(gc_long[k][0]) == n && memcmp(name, gc_long[k][0], n) == 0) {
            name = gc_long[k][1];
            n = strlen(name);
            break;
        }
    {
        const char *eq = memchr(name, '=', n);

        if (eq != NULL) {
            size_t key = (size_t)(eq - name);
            int scx = (key == 3 && memcmp(name, "scx", 3) == 0) ||
                      (key == 17 && memcmp(name, "Script_Extensions", 17) == 0);
            int sc = (key == 2 && memcmp(name, "sc", 2) == 0) ||
                     (key == 6 && memcmp(name, "Script", 6) == 0);
            if (sc || scx) {
                snprintf(tmp, sizeof tmp, "\\%c{%s:%.*s}", s[i + 1],
                         scx ? "scx" : "sc", (int)(n - key - 1), eq + 1);
                *rc = append_str(out, tmp);
                return (size_t)(end - s) + 1 - i;
            }
        }
    }
    snprintf(tmp, sizeof tmp, "\\%c{%.*s}", s[i + 1], (int)n, name);
    *rc = append_str(out, tmp);
    return (size_t)(end - s) + 1 - i;
}

/* The rewrite described at the top of the file, into out (NUL-ended). */
static int rewrite(const char *s, size_t len, weir_buf *out)
{
    int in_class = 0, rc = 0;
    char tmp[32];

    for (size_t i = 0; i < len && rc == 0; i++) {
        char c = s[i];

        if (c == '\\' && i + 1 < len) {
            char n = s[i + 1];
            long hi = u4(s, len, i), lo = u4(s, len, i + 6);
            size_t used;

            if ((used = property(s, len, i, out, &rc)) > 0) {
                i += used - 1;
            } else if (hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
                snprintf(tmp, sizeof tmp, "\\u{%lx}",
                         0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00));
                rc = weir_buf_append(out, tmp, strlen(tmp));
                i += 11;
            } else if (n == 's') {
                rc = append_str(out, in_class ? ECMA_SPACE : "[" ECMA_SPACE "]");
                i++;
            } else if (n == 'S' && !in_class) {
                rc = append_str(out, "[^" ECMA_SPACE "]");
                i++;
            } else {
                rc = weir_buf_append(out, s + i, 2);
                i++;
            }
            continue;
        }
        if (in_class) {
            if (c == ']')
                in_class = 0;
            rc = weir_buf_append(out, &c, 1);
        } else if (c == '[') {
            in_class = 1;
            rc = weir_buf_append(out, &c, 1);
            /* a ] right after [ or [^ closes the class (ECMA-262) */
            if (i + 1 < len && s[i + 1] == '^' && rc == 0) {
                rc = weir_buf_append(out, "^", 1);
                i++;
            }
            if (i + 1 < len && s[i + 1] == ']' && rc == 0) {
                rc = weir_buf_append(out, "]", 1);
                in_class = 0;
                i++;
            }
        } else if (c == '.') {
            rc = append_str(out, "[^\\n\\r\\u{2028}\\u{2029}]");
        } else {
            rc = weir_buf_append(out, &c, 1);
        }
    }
    if (rc == 0 && out->data == NULL)
        rc = weir_buf_reserve(out, 1); /* the empty pattern */
    return rc;
}

/* The offset in src of what PCRE2 reported at offset off of the rewritten
 * source: the shortest prefix whose rewrite reaches past off. */
static size_t source_offset(const char *src, size_t len, size_t off)
{
    for (size_t k = 1; k <= len; k++) {
        weir_buf b = {0};
        int past = rewrite(src, k, &b) == 0 && b.len > off;

        weir_buf_free(&b);
        if (past)
            return k - 1;
    }
    return len;
}

WEIR_API int weir_ffi_regex_new(const char *src, size_t len,
                                weir_regex **out, char *err, size_t errlen)
{
    weir_buf b = {0};
    weir_regex *re;
    pcre2_compile_context *cc;
    int ecode = 0;
    PCRE2_SIZE eoff = 0;

    *out = NULL;
    if (len > WEIR_REGEX_MAX_PATTERN) {
        snprintf(err, errlen, "pattern longer than %d bytes",
                 WEIR_REGEX_MAX_PATTERN);
        return WEIR_ELIMIT;
    }
    re = calloc(1, sizeof *re);
    cc = pcre2_compile_context_create(NULL);
    if (re == NULL || cc == NULL || rewrite(src, len, &b) != 0) {
        pcre2_compile_context_free(cc);
        weir_buf_free(&b);
        free(re);
        snprintf(err, errlen, "out of memory");
        return WEIR_ENOMEM;
    }
    pcre2_set_compile_extra_options(cc, PCRE2_EXTRA_ALT_BSUX);
    pcre2_set_parens_nest_limit(cc, 250);
    re->code = pcre2_compile((PCRE2_SPTR)b.data, b.len,
                             PCRE2_UTF | PCRE2_ALT_BSUX |
                             PCRE2_DOLLAR_ENDONLY | PCRE2_ALLOW_EMPTY_CLASS |
                             PCRE2_MATCH_UNSET_BACKREF | PCRE2_NEVER_BACKSLASH_C,
                             &ecode, &eoff, cc);
    pcre2_compile_context_free(cc);
    weir_buf_free(&b);
    if (re->code == NULL) {
        PCRE2_UCHAR msg[256];

        free(re);
        if (pcre2_get_error_message(ecode, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", ecode);
        snprintf(err, errlen, "%s at offset %zu", (const char *)msg,
                 source_offset(src, len, (size_t)eoff));
        return WEIR_EPARSE;
    }
    re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
    re->mc = pcre2_match_context_create(NULL);
    if (re->md == NULL || re->mc == NULL) {
        weir_ffi_regex_delete(re);
        snprintf(err, errlen, "out of memory");
        return WEIR_ENOMEM;
    }
    pcre2_set_depth_limit(re->mc, WEIR_REGEX_DEPTH_LIMIT);
    pcre2_set_heap_limit(re->mc, WEIR_REGEX_HEAP_KIB);
    *out = re;
    return WEIR_OK;
}

WEIR_API int weir_ffi_regex_test(weir_regex *re, const char *s, size_t len,
                                 uint32_t match_limit, int32_t *matched,
                                 char *err, size_t errlen)
{
    int rc;

    *matched = 0;
    if (match_limit == 0 || match_limit > WEIR_REGEX_MATCH_LIMIT)
        match_limit = WEIR_REGEX_MATCH_LIMIT;
    pcre2_set_match_limit(re->mc, match_limit);
    rc = pcre2_match(re->code, (PCRE2_SPTR)(s ? s : ""), len, 0, 0, re->md,
                     re->mc);
    if (rc >= 0) {
        *matched = 1;
        return WEIR_OK;
    }
    if (rc == PCRE2_ERROR_NOMATCH)
        return WEIR_OK;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
        rc == PCRE2_ERROR_HEAPLIMIT) {
        snprintf(err, errlen, "too complex (a match limit was reached)");
        return WEIR_ELIMIT;
    }
    if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21) {
        snprintf(err, errlen, "the value is not valid UTF-8 (at byte %zu)",
                 (size_t)pcre2_get_startchar(re->md));
        return WEIR_EINVAL;
    }
    {
        PCRE2_UCHAR msg[256];

        if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", rc);
        snprintf(err, errlen, "%s", (const char *)msg);
    }
    return WEIR_EINVAL;
}

WEIR_API void weir_ffi_regex_delete(weir_regex *re)
{
    if (re == NULL)
        return;
    pcre2_match_context_free(re->mc);
    pcre2_match_data_free(re->md);
    pcre2_code_free(re->code);
    free(re);
}
