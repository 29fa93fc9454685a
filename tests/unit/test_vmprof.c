/* test_vmprof.c - the streaming vmprof reader against generated files. */
#include <string.h>

#include "profile_gen.h"
#include "vp_err.h"
#include "vp_test.h"
#include "vp_vmprof.h"

#define NSAMPLES 50

typedef struct seen {
    uint64_t samples;
    uint64_t rss_sum, rss_max;
    uint64_t names;
    uint64_t leaf_sum; /* sum of leaf addresses: checks entry order */
    int64_t last_t;
} seen;

static int on_sample(void *ctx, const vp_vmprof_sample *s)
{
    seen *x = ctx;
    x->samples++;
    x->rss_sum += s->rss_kb;
    if (s->rss_kb > x->rss_max)
        x->rss_max = s->rss_kb;
    x->leaf_sum += vp_vmprof_entry(s, 0);
    x->last_t = s->time_ns;
    return 0;
}

static int on_name(void *ctx, uint64_t addr, const char *name, size_t len, int native)
{
    (void)addr, (void)name, (void)len, (void)native;
    ((seen *)ctx)->names++;
    return 0;
}

/* The plan: sample i has depth 1 + i % 5, leaf address 0x1000 + 16 * (i % 5),
 * rss 1000 + i, time 1000 * i. Known answers follow from the plan. */
static gen make_profile(uint16_t version, uint8_t mode, int trailer)
{
    gen g = {0};
    gen_start(&g, version, mode, 10000);
    for (int i = 0; i < NSAMPLES; i++) {
        uint64_t frames[5];
        size_t depth = 1 + (size_t)(i % 5);
        for (size_t d = 0; d < depth; d++)
            frames[d] = 0x1000 + 16 * d;
        gen_stack(&g, version, mode, frames, depth, 0x7f00, 1000 + (uint64_t)i, 1000 * i);
        if (i == 10)
            gen_name(&g, 0x02, 0x1000, "py:main:1:/x.py");
    }
    gen_name(&g, 0x08, 0x1010, "n:<native symbol 0x1010>:0:-");
    gen_name(&g, 0x02, 0x1010, "py:f:3:/x.py");
    if (trailer)
        gen_trailer(&g);
    return g;
}

static uint64_t expected_leaf_sum(void)
{
    uint64_t sum = 0;
    for (int i = 0; i < NSAMPLES; i++)
        sum += 0x1000 + 16 * (uint64_t)(i % 5);
    return sum;
}

static void test_whole_file(void)
{
    gen g = make_profile(7, 1, 1);
    vp_vmprof_reader r;
    seen x = {0};
    vp_vmprof_handler h = {.ctx = &x, .on_sample = on_sample, .on_name = on_name};
    vp_vmprof_reader_init(&r);
    size_t used = 0;
    CHECK_EQ(vp_vmprof_feed(&r, g.buf, g.len, &used, &h), VP_EDONE);
    CHECK_EQ(used, g.len);
    CHECK_EQ(x.samples, NSAMPLES);
    CHECK_EQ(r.samples, NSAMPLES);
    CHECK_EQ(x.rss_max, 1000 + NSAMPLES - 1);
    CHECK_EQ(x.names, 3);
    CHECK_EQ(x.leaf_sum, expected_leaf_sum());
    CHECK_EQ(x.last_t, 1000 * (NSAMPLES - 1));
    CHECK_EQ(r.version, 7);
    CHECK_EQ(r.period_us, 10000);
    CHECK_EQ(r.start_us, 1700000000250000LL);
    CHECK_EQ(r.end_us, 1700000005000000LL);
    CHECK(strcmp(r.interp, "cpython") == 0);
    free(g.buf);
}

static void test_version6_no_memory(void)
{
    gen g = make_profile(6, 0, 1);
    vp_vmprof_reader r;
    seen x = {0};
    vp_vmprof_handler h = {.ctx = &x, .on_sample = on_sample};
    vp_vmprof_reader_init(&r);
    size_t used = 0;
    CHECK_EQ(vp_vmprof_feed(&r, g.buf, g.len, &used, &h), VP_EDONE);
    CHECK_EQ(x.samples, NSAMPLES);
    CHECK_EQ(x.rss_max, 0);
    CHECK_EQ(x.last_t, -1);
    CHECK_EQ(x.leaf_sum, expected_leaf_sum());
    free(g.buf);
}

/* Feed in pieces of every size from 1 to 64 bytes, keeping the unconsumed
 * tail as a caller does: the result must not depend on the cut points. */
static void test_streaming_splits(void)
{
    gen g = make_profile(7, 1, 1);
    for (size_t step = 1; step <= 64; step++) {
        vp_vmprof_reader r;
        seen x = {0};
        vp_vmprof_handler h = {.ctx = &x, .on_sample = on_sample, .on_name = on_name};
        vp_vmprof_reader_init(&r);
        size_t start = 0, avail_end = 0;
        int rc = VP_OK;
        while (rc == VP_OK && avail_end < g.len) {
            avail_end = avail_end + step > g.len ? g.len : avail_end + step;
            size_t used = 0;
            rc = vp_vmprof_feed(&r, g.buf + start, avail_end - start, &used, &h);
            start += used;
        }
        CHECK_EQ(rc, VP_EDONE);
        CHECK_EQ(x.samples, NSAMPLES);
        CHECK_EQ(x.names, 3);
        CHECK_EQ(start, g.len);
    }
    free(g.buf);
}

/* Cut the file at every offset: everything before the cut that is a whole
 * record is delivered, no error, and consumed stops at a record boundary. */
static void test_truncation_keeps_prefix(void)
{
    gen g = make_profile(7, 1, 0);
    /* Record boundaries and samples-before-boundary, from the plan. */
    uint64_t prev_samples = 0;
    for (size_t cut = 0; cut <= g.len; cut++) {
        vp_vmprof_reader r;
        seen x = {0};
        vp_vmprof_handler h = {.ctx = &x, .on_sample = on_sample};
        vp_vmprof_reader_init(&r);
        size_t used = 0;
        int rc = vp_vmprof_feed(&r, g.buf, cut, &used, &h);
        CHECK_EQ(rc, VP_OK);
        CHECK(used <= cut);
        CHECK(x.samples >= prev_samples); /* monotone in the cut */
        prev_samples = x.samples;
        if (cut == g.len)
            CHECK_EQ(x.samples, NSAMPLES);
    }
    free(g.buf);
}

static void test_corrupt_marker_keeps_good_samples(void)
{
    gen g = {0};
    gen_start(&g, 7, 1, 10000);
    uint64_t f[2] = {0x1000, 0x1010};
    for (int i = 0; i < 7; i++)
        gen_stack(&g, 7, 1, f, 2, 1, 100, i);
    size_t bad_at = g.len;
    gen_u8(&g, 0x42);
    gen_stack(&g, 7, 1, f, 2, 1, 100, 8);
    vp_vmprof_reader r;
    seen x = {0};
    vp_vmprof_handler h = {.ctx = &x, .on_sample = on_sample};
    vp_vmprof_reader_init(&r);
    size_t used = 0;
    CHECK_EQ(vp_vmprof_feed(&r, g.buf, g.len, &used, &h), VP_ECORRUPT);
    CHECK_EQ(x.samples, 7);
    CHECK_EQ(used, bad_at);
    char want[64];
    snprintf(want, sizeof(want), "offset %zu", bad_at);
    CHECK(strstr(r.error, "unknown record marker 0x42") != NULL);
    CHECK(strstr(r.error, want) != NULL);
    free(g.buf);
}

static void test_hostile_lengths(void)
{
    /* A depth of 2^40 must be refused from the head, not allocated or read. */
    gen g = {0};
    gen_start(&g, 7, 1, 10000);
    gen_u8(&g, 0x01);
    gen_word(&g, 1);
    gen_word(&g, 1ull << 40);
    vp_vmprof_reader r;
    vp_vmprof_reader_init(&r);
    size_t used = 0;
    CHECK_EQ(vp_vmprof_feed(&r, g.buf, g.len, &used, NULL), VP_ETOOBIG);
    free(g.buf);

    gen n = {0};
    gen_start(&n, 7, 1, 10000);
    gen_u8(&n, 0x02);
    gen_word(&n, 0x1000);
    gen_word(&n, UINT64_MAX);
    vp_vmprof_reader_init(&r);
    CHECK_EQ(vp_vmprof_feed(&r, n.buf, n.len, &used, NULL), VP_ETOOBIG);
    free(n.buf);

    gen m = {0};
    gen_start(&m, 7, 1, 10000);
    gen_u8(&m, 0x07);
    gen_word(&m, UINT64_MAX - 4); /* would wrap 9 + k + 8 */
    vp_vmprof_reader_init(&r);
    CHECK_EQ(vp_vmprof_feed(&r, m.buf, m.len, &used, NULL), VP_ETOOBIG);
    free(m.buf);
}

static void test_not_a_profile(void)
{
    const char text[] = "this is not a vmprof profile at all, just text......";
    vp_vmprof_reader r;
    vp_vmprof_reader_init(&r);
    size_t used = 0;
    CHECK_EQ(vp_vmprof_feed(&r, (const uint8_t *)text, sizeof(text), &used, NULL), VP_ECORRUPT);
    CHECK_EQ(used, 0);
    CHECK(strstr(r.error, "not a 64-bit little-endian vmprof profile") != NULL);

    gen g = {0};
    gen_start(&g, 8, 1, 10000);
    vp_vmprof_reader_init(&r);
    CHECK_EQ(vp_vmprof_feed(&r, g.buf, g.len, &used, NULL), VP_EVERSION);
    free(g.buf);
}

static void test_resume_after_header(void)
{
    gen g = make_profile(7, 1, 1);
    vp_vmprof_reader r;
    vp_vmprof_reader_init(&r);
    size_t used = 0;
    /* Consume only the header part, then resume a fresh reader from there. */
    CHECK_EQ(vp_vmprof_feed(&r, g.buf, 52, &used, NULL), VP_OK);
    CHECK(vp_vmprof_header_done(&r));
    vp_vmprof_reader r2;
    vp_vmprof_reader_resume(&r2, r.version, r.mode, r.period_us, used, 0);
    seen x = {0};
    vp_vmprof_handler h = {.ctx = &x, .on_sample = on_sample};
    size_t used2 = 0;
    CHECK_EQ(vp_vmprof_feed(&r2, g.buf + used, g.len - used, &used2, &h), VP_EDONE);
    CHECK_EQ(x.samples, NSAMPLES);
    CHECK_EQ(used + used2, g.len);
    free(g.buf);
}

int main(void)
{
    RUN(test_whole_file);
    RUN(test_version6_no_memory);
    RUN(test_streaming_splits);
    RUN(test_truncation_keeps_prefix);
    RUN(test_corrupt_marker_keeps_good_samples);
    RUN(test_hostile_lengths);
    RUN(test_not_a_profile);
    RUN(test_resume_after_header);
    TEST_MAIN_END();
}
