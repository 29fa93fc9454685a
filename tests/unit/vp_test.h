/*
 * vp_test.h - the smallest test harness that reports like the tools CI
 * reads: each check failing prints file:line and the expression; main()
 * returns non-zero if any failed.
 */
#ifndef VP_TEST_H
#define VP_TEST_H

#include <stdio.h>

static int vp_test_failures;
static int vp_test_checks;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        vp_test_checks++;                                                            \
        if (!(cond)) {                                                               \
            vp_test_failures++;                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                      \
    do {                                                                                    \
        long long va_ = (long long)(a), vb_ = (long long)(b);                               \
        vp_test_checks++;                                                                   \
        if (va_ != vb_) {                                                                   \
            vp_test_failures++;                                                             \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, \
                    #b, va_, vb_);                                                          \
        }                                                                                   \
    } while (0)

#define RUN(test)                                 \
    do {                                          \
        int before_ = vp_test_failures;           \
        test();                                   \
        printf("%s %s\n", vp_test_failures == before_ ? "ok" : "FAIL", #test); \
    } while (0)

#define TEST_MAIN_END()                                                          \
    printf("%d checks, %d failed\n", vp_test_checks, vp_test_failures);          \
    return vp_test_failures ? 1 : 0

#endif
