/*
 * cpu_jitter.c - vmpv-cpu-jitter: how steady this machine's CPU is, with
 * nothing of ours running. One thread repeats a fixed piece of arithmetic
 * (~0.07 ms here) for S seconds and prints the distribution of its times
 * and the moments when a piece took over 5x the median: on a shared VM a
 * lone loop slows down several-fold now and then, which every latency
 * tail measured on the machine inherits (BENCHMARKS.md, relay).
 *
 *   vmpv-cpu-jitter [SECONDS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_PIECES 1000000

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 12.0;
    if (secs <= 0 || secs > 3600) {
        fprintf(stderr, "usage: vmpv-cpu-jitter [SECONDS (0-3600]]\n");
        return 2;
    }
    double *took = malloc(MAX_PIECES * sizeof(double));
    double *at = malloc(MAX_PIECES * sizeof(double));
    double *sorted = malloc(MAX_PIECES * sizeof(double));
    if (!took || !at || !sorted)
        return 1;
    volatile uint64_t sink = 0;
    double t0 = now_s();
    size_t n = 0;
    while (n < MAX_PIECES && now_s() - t0 < secs) {
        double a = now_s();
        for (uint64_t i = 0; i < 100000; i++)
            sink += i * i;
        at[n] = a - t0;
        took[n++] = (now_s() - a) * 1e3;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = took[i];
    qsort(sorted, n, sizeof(double), cmp_double);
    double med = sorted[n / 2];
    size_t slow = 0;
    for (size_t i = 0; i < n; i++)
        slow += took[i] > 5 * med;
    printf("pieces %zu median_ms %.3f p99_ms %.3f p999_ms %.3f max_ms %.3f over_5x_median %zu\n", n,
           med, sorted[n * 99 / 100], sorted[n * 999 / 1000], sorted[n - 1], slow);
    /* Episodes: slow pieces closer than 50 ms to each other are one. */
    double start = -1, last = -1, worst = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && took[i] <= 5 * med)
            continue;
        if (start >= 0 && (i == n || at[i] - last > 0.05)) {
            printf("episode at %.2f s, %.0f ms long, slowest piece %.1fx the median\n", start,
                   (last - start) * 1e3 + worst, worst / med);
            start = -1;
        }
        if (i == n)
            break;
        if (start < 0)
            start = at[i], worst = 0;
        last = at[i];
        if (took[i] > worst)
            worst = took[i];
    }
    free(took);
    free(at);
    free(sorted);
    return 0;
}
