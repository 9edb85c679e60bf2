/*
 * check.h - the tiny assertion kit every C unit test uses. A failed check
 * prints file:line and the expression, counts the failure and goes on;
 * CHECK_DONE() prints "N passed, N failed" and returns the exit status.
 */
#ifndef WEIR_TEST_CHECK_H
#define WEIR_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(expr) do { \
    if (expr) { check_passed++; } else { check_failed++; \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                #expr); } } while (0)

#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a); \
    long long b_ = (long long)(b); \
    if (a_ == b_) { check_passed++; } else { check_failed++; \
        fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", \
                __FILE__, __LINE__, #a, #b, a_, b_); } } while (0)

#define CHECK_EQ_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (a_ && b_ && strcmp(a_, b_) == 0) { check_passed++; } else { \
        check_failed++; fprintf(stderr, "%s:%d: %s == %s failed: " \
        "\"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, \
        a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } } while (0)

#define CHECK_DONE() (printf("%d passed, %d failed\n", check_passed, \
    check_failed), check_failed ? 1 : 0)

#endif
