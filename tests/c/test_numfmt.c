/*
 * test_numfmt.c - unit tests for the number printer (runtime/numfmt.c):
 * integers exactly, doubles in the shortest text that reads back as the
 * same double (the classic cases, negative zero, subnormals, the ends of
 * the range), and a sweep of random bit patterns checked both ways: the
 * text reads back, and one digit fewer never does. Relies on check.h.
 */
#include "weir/numfmt.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

static const char *dbl(double v)
{
    static char buf[WEIR_NUMFMT_MAX + 1];
    size_t n = weir_fmt_double(buf, v);

    buf[n] = '\0';
    return buf;
}

static const char *i64(int64_t v)
{
    static char buf[WEIR_NUMFMT_MAX + 1];

    buf[weir_fmt_i64(buf, v)] = '\0';
    return buf;
}

/* Significant digits of a printed number. */
static int sig_digits(const char *s)
{
    int n = 0, lead = 1;

    for (; *s != '\0' && *s != 'e'; s++) {
        if (*s < '0' || *s > '9')
            continue;
        if (lead && *s == '0')
            continue;
        lead = 0;
        n++;
    }
    return n;
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* v prints as text that reads back as v, and no text with one digit less
 * does (%.Ng rounds correctly, so it is the best N-digit candidate). */
static int round_trips_shortest(double v)
{
    char fewer[400];
    const char *s = dbl(v);
    int n = sig_digits(s);

    if (strtod(s, NULL) != v && !(v != v))
        return 0;
    if (n <= 1 || (fabs(v) < 9007199254740992.0 && v == floor(v)))
        return 1;
    snprintf(fewer, sizeof fewer, "%.*g", n - 1, v);
    return strtod(fewer, NULL) != v;
}

int main(void)
{
    double two53 = 9007199254740992.0;
    int bad = 0;

    CHECK_EQ_STR(i64(0), "0");
    CHECK_EQ_STR(i64(-1), "-1");
    CHECK_EQ_STR(i64(INT64_MAX), "9223372036854775807");
    CHECK_EQ_STR(i64(INT64_MIN), "-9223372036854775808");

    CHECK_EQ_STR(dbl(0.0), "0");
    CHECK_EQ_STR(dbl(-0.0), "-0");
    CHECK_EQ_STR(dbl(1.0), "1");
    CHECK_EQ_STR(dbl(-42.0), "-42");
    CHECK_EQ_STR(dbl(0.1), "0.1");
    CHECK_EQ_STR(dbl(-1.5), "-1.5");
    CHECK_EQ_STR(dbl(123.456), "123.456");
    CHECK_EQ_STR(dbl(0.1 + 0.2), "0.30000000000000004");
    CHECK_EQ_STR(dbl(1.0 / 3), "0.3333333333333333");
    CHECK_EQ_STR(dbl(two53 - 1), "9007199254740991");
    CHECK_EQ_STR(dbl(-(two53 - 1)), "-9007199254740991");
    CHECK_EQ_STR(dbl(two53), "9007199254740992");
    /* 2^53 + 1 is no double: it is 2^53 */
    CHECK_EQ_STR(dbl((double)(INT64_C(9007199254740992) + 1)),
                 "9007199254740992");
    CHECK_EQ_STR(dbl(two53 + 2), "9007199254740994");
    CHECK_EQ_STR(dbl(1e15 + 0.5), "1000000000000000.5");
    CHECK_EQ_STR(dbl(0.0001), "0.0001");
    CHECK_EQ_STR(dbl(1.5e-5), "1.5e-05");
    CHECK_EQ_STR(dbl(1e21), "1e+21");
    CHECK_EQ_STR(dbl(1e300), "1e+300");
    CHECK_EQ_STR(dbl(-1e300), "-1e+300");
    CHECK_EQ_STR(dbl(1e23), "1e+23");
    CHECK_EQ_STR(dbl(DBL_MAX), "1.7976931348623157e+308");
    CHECK_EQ_STR(dbl(DBL_MIN), "2.2250738585072014e-308");
    /* subnormals keep fewer digits than normal doubles */
    CHECK_EQ_STR(dbl(5e-324), "5e-324");
    CHECK_EQ_STR(dbl(-5e-324), "-5e-324");
    CHECK_EQ_STR(dbl(1e-320), "1e-320");
    CHECK_EQ_STR(dbl(nextafter(DBL_MIN, 0)), "2.225073858507201e-308");
    CHECK_EQ_STR(dbl(1.5e-310), "1.5e-310");
    CHECK_EQ_INT(weir_fmt_double(NULL, NAN), 0);
    CHECK_EQ_INT(weir_fmt_double(NULL, INFINITY), 0);
    CHECK_EQ_INT(weir_fmt_double(NULL, -INFINITY), 0);

    /* random doubles of every magnitude, and random short decimals */
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = next();
        double v;

        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        if (!round_trips_shortest(v)) {
            if (bad++ < 5)
                fprintf(stderr, "not shortest or not exact: %.17g -> %s\n",
                        v, dbl(v));
        }
        v = (double)(int64_t)(next() % 2000000000) / 1000.0;
        if (!round_trips_shortest(v) || !round_trips_shortest(-v)) {
            if (bad++ < 5)
                fprintf(stderr, "not shortest or not exact: %.17g -> %s\n",
                        v, dbl(v));
        }
    }
    CHECK_EQ_INT(bad, 0);
    return CHECK_DONE();
}
