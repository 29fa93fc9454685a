/* test_decimate.c - decimation keeps the CPU view true and the memory view
 * honest, on generated profiles whose answers the generator knows. */
#include <math.h>
#include <string.h>

#include "profile_gen.h"
#include "vp_decimate.h"
#include "vp_err.h"
#include "vp_test.h"

#define N 400000
#define FUNCS 8
#define FACTOR 20

static uint64_t rng_state = 12345;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng_state >> 33) % n);
}

/* Known answers, counted while generating. */
static uint64_t self_before[FUNCS], total_before[FUNCS];
static uint64_t window_max[N / FACTOR + 1];

/* Stacks come in stretches (as real code runs: a function for a while),
 * drawn from a skewed mix; RSS drifts with rare one-sample spikes. */
static gen make(void)
{
    gen g = {0};
    gen_start(&g, 7, 1, 1000);
    uint64_t rss = 100000;
    int stretch = 0, leaf = 0, depth = 1;
    for (int i = 0; i < N; i++) {
        if (stretch-- <= 0) {
            stretch = 1 + (int)rnd(150);
            uint32_t r = rnd(100);
            leaf = r < 40 ? 1 : r < 65 ? 2 : r < 80 ? 3 : r < 90 ? 4 : 5 + (int)rnd(3);
            depth = 2 + (int)rnd(4);
        }
        uint64_t frames[8];
        int seen[FUNCS] = {0};
        for (int d = 0; d < depth - 1; d++) {
            int f = d == 0 ? 0 : (int)((leaf + d) % FUNCS);
            frames[d] = 0x1000 + 0x10 * (uint64_t)f;
            seen[f] = 1;
        }
        frames[depth - 1] = 0x1000 + 0x10 * (uint64_t)leaf;
        seen[leaf] = 1;
        self_before[leaf]++;
        for (int f = 0; f < FUNCS; f++)
            total_before[f] += (uint64_t)seen[f];
        rss += rnd(3);
        rss -= rnd(3);
        uint64_t this_rss = rnd(5000) == 0 ? rss + 50000 + rnd(1000) : rss; /* a short spike */
        if (this_rss > window_max[i / FACTOR])
            window_max[i / FACTOR] = this_rss;
        gen_stack(&g, 7, 1, frames, (size_t)depth, 0x7f00, this_rss, (int64_t)i * 1000000);
        if (i == N / 2)
            gen_name(&g, 0x02, 0x1000, "py:main:1:/x.py");
    }
    gen_trailer(&g);
    return g;
}

typedef struct after {
    uint64_t samples, self[FUNCS], total[FUNCS];
    uint64_t rss[N / FACTOR + 1];
    int names;
} after;

static int count_sample(void *ctx, const vp_vmprof_sample *s)
{
    after *a = ctx;
    int seen[FUNCS] = {0};
    for (uint32_t i = 0; i < s->depth; i++) {
        int f = (int)((vp_vmprof_entry(s, i) - 0x1000) / 0x10);
        if (f >= 0 && f < FUNCS)
            seen[f] = 1;
    }
    int leaf = (int)((vp_vmprof_entry(s, 0) - 0x1000) / 0x10);
    a->self[leaf]++;
    for (int f = 0; f < FUNCS; f++)
        a->total[f] += (uint64_t)seen[f];
    if (a->samples <= N / FACTOR)
        a->rss[a->samples] = s->rss_kb;
    a->samples++;
    return 0;
}

static int count_name(void *ctx, uint64_t addr, const char *name, size_t len, int native)
{
    (void)addr, (void)name, (void)len, (void)native;
    ((after *)ctx)->names++;
    return 0;
}

static void test_shares_and_peaks(void)
{
    gen g = make();
    uint8_t *out = malloc(g.len);
    vp_vmprof_reader r;
    vp_vmprof_reader_init(&r);
    vp_decimate_result res;
    CHECK_EQ(vp_decimate(&r, g.buf, g.len, FACTOR, 42, out, &res), VP_EDONE);
    CHECK_EQ(res.in_samples, N);
    CHECK_EQ(res.out_samples, N / FACTOR);
    CHECK(res.out_len < g.len);

    static after a;
    memset(&a, 0, sizeof(a));
    vp_vmprof_reader r2;
    vp_vmprof_reader_init(&r2);
    vp_vmprof_handler h = {.ctx = &a, .on_sample = count_sample, .on_name = count_name};
    size_t used = 0;
    CHECK_EQ(vp_vmprof_feed(&r2, out, res.out_len, &used, &h), VP_EDONE);
    CHECK_EQ(used, res.out_len);
    CHECK_EQ(a.samples, N / FACTOR);
    CHECK_EQ(a.names, 1);
    double worst = 0;
    for (int f = 0; f < FUNCS; f++) {
        double ds = fabs(100.0 * (double)a.self[f] / (double)a.samples - 100.0 * (double)self_before[f] / N);
        double dt = fabs(100.0 * (double)a.total[f] / (double)a.samples - 100.0 * (double)total_before[f] / N);
        CHECK(ds < 0.5);
        CHECK(dt < 0.5);
        worst = fmax(worst, fmax(ds, dt));
    }
    printf("worst share change %.3f percentage points\n", worst);
    /* Every window's highest RSS survives, spikes included. */
    int lost = 0;
    for (int w = 0; w < N / FACTOR; w++)
        lost += a.rss[w] != window_max[w];
    CHECK_EQ(lost, 0);
    free(out);
    free(g.buf);
}

static void test_factor_one_is_identity(void)
{
    gen g = {0};
    gen_start(&g, 7, 1, 1000);
    uint64_t f[2] = {0x1000, 0x1010};
    for (int i = 0; i < 100; i++)
        gen_stack(&g, 7, 1, f, 2, 1, 100 + (uint64_t)i, i);
    uint8_t *out = malloc(g.len);
    vp_vmprof_reader r;
    vp_vmprof_reader_init(&r);
    vp_decimate_result res;
    CHECK_EQ(vp_decimate(&r, g.buf, g.len, 1, 7, out, &res), VP_OK);
    CHECK_EQ(res.out_len, g.len);
    CHECK(memcmp(out, g.buf, g.len) == 0);
    free(out);
    free(g.buf);
}

static void test_policy(void)
{
    CHECK(vp_decimate_allowed_hz(60) == 100);
    CHECK(vp_decimate_allowed_hz(3 * 3600) == 100);
    CHECK(fabs(vp_decimate_allowed_hz(4.5 * 3600) - 75) < 1e-9);
    CHECK(vp_decimate_allowed_hz(6 * 3600) == 50);
    CHECK(vp_decimate_allowed_hz(12 * 3600) == 20);
    CHECK(vp_decimate_allowed_hz(48 * 3600) == 1);
    CHECK_EQ(vp_decimate_factor(1000, 10, 60), 1);          /* 100 Hz: fine */
    CHECK_EQ(vp_decimate_factor(2500, 10, 60), 2);          /* 250 Hz -> 2 */
    CHECK_EQ(vp_decimate_factor(2500, 10, 30 * 3600), 250); /* 1 Hz after a day */
}

int main(void)
{
    RUN(test_shares_and_peaks);
    RUN(test_factor_one_is_identity);
    RUN(test_policy);
    TEST_MAIN_END();
}
