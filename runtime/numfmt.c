/*
 * numfmt.c - the number printer (see numfmt.h). Common values take a fast
 * path without snprintf: integers by digit loop, and decimals with few
 * enough digits by one exact multiply-and-check; the rest tries %.15g,
 * %.16g, %.17g and keeps the first that reads back (15 significant digits
 * always survive a round trip through a double, so a shorter text, when
 * one exists, is what %.15g prints). Subnormals, which keep fewer digits,
 * try every precision from 1. Relies on libc and libm.
 */
#include "weir/numfmt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Powers of ten that doubles hold exactly. */
static const double pow10_exact[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

size_t weir_fmt_i64(char *buf, int64_t v)
{
    char tmp[24];
    size_t n = 0, i = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        buf[i++] = '-';
    while (n > 0)
        buf[i++] = tmp[--n];
    return i;
}

/* v with k decimals if m / 10^k (m = v * 10^k rounded) reads back as v:
 * the first k that works is the shortest text. Both m and 10^k are
 * exact, so the check is one correctly rounded division. Covers the
 * values %g prints without an exponent; 0 when it does not apply. */
static size_t fmt_fixed(char *buf, double v)
{
    static const uint64_t p10[18] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
        100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL};
    double a = fabs(v);
    size_t n = 0;

    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 1; k <= 17; k++) {
        double t = a * pow10_exact[k], r;
        uint64_t m, ip, fp;

        if (t >= 9007199254740992.0)
            return 0;
        r = nearbyint(t);
        if (r / pow10_exact[k] != a)
            continue;
        m = (uint64_t)r;
        ip = m / p10[k];
        fp = m % p10[k];
        if (v < 0)
            buf[n++] = '-';
        n += weir_fmt_i64(buf + n, (int64_t)ip);
        buf[n++] = '.';
        for (int j = k - 1; j >= 0; j--) {
            buf[n + (size_t)j] = (char)('0' + fp % 10);
            fp /= 10;
        }
        return n + (size_t)k;
    }
    return 0;
}

/* Does the %g text in buf (NUL-terminated) read back as v? Exactly
 * representable mantissas with small exponents are one correctly rounded
 * multiply or divide (Clinger's fast path); the rest is strtod's. */
static int reads_back(const char *buf, double v)
{
    const char *p = buf;
    uint64_t m = 0;
    int nd = 0, frac = 0, point = 0, dexp;
    double r;

    if (*p == '-')
        p++;
    for (; *p != '\0' && *p != 'e'; p++) {
        if (*p == '.') {
            point = 1;
            continue;
        }
        m = m * 10 + (uint64_t)(*p - '0');
        nd += m != 0;
        frac += point;
    }
    dexp = (*p == 'e' ? atoi(p + 1) : 0) - frac;
    if (nd > 16 || m > (UINT64_C(1) << 53) || dexp < -22 || dexp > 22)
        return strtod(buf, NULL) == v;
    r = (double)m;
    r = dexp < 0 ? r / pow10_exact[-dexp] : r * pow10_exact[dexp];
    return (*buf == '-' ? -r : r) == v;
}

size_t weir_fmt_double(char *buf, double v)
{
    char tmp[WEIR_NUMFMT_MAX];
    int n = 0, prec;
    size_t f;

    if (!isfinite(v))
        return 0;
    if (v == 0) {
        if (signbit(v)) {
            memcpy(buf, "-0", 2);
            return 2;
        }
        buf[0] = '0';
        return 1;
    }
    if (fabs(v) < 9007199254740992.0 && v == floor(v))
        return weir_fmt_i64(buf, (int64_t)v);
    if ((f = fmt_fixed(buf, v)) != 0)
        return f;
    for (prec = fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (prec == 17 || reads_back(tmp, v))
            break;
    }
    memcpy(buf, tmp, (size_t)n);
    return (size_t)n;
}
