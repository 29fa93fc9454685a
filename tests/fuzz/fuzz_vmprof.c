/*
 * fuzz_vmprof.c - libFuzzer target for the streaming vmprof reader.
 *
 * Besides "no crash, no out-of-bounds read" (ASan, UBSan), it checks the
 * reader's contract: consumed never exceeds what was offered, and feeding the
 * same bytes in two pieces cut at a fuzzer-chosen point gives the same
 * samples, names and outcome as feeding them whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vp_err.h"
#include "vp_vmprof.h"

typedef struct tally {
    uint64_t samples, names, depth_sum, rss_sum;
} tally;

static int on_sample(void *ctx, const vp_vmprof_sample *s)
{
    tally *t = ctx;
    t->samples++;
    t->depth_sum += s->depth;
    t->rss_sum += s->rss_kb;
    for (uint32_t i = 0; i < s->depth; i++)
        t->depth_sum += vp_vmprof_entry(s, i) & 1; /* touch every entry */
    return 0;
}

static int on_name(void *ctx, uint64_t addr, const char *name, size_t len, int native)
{
    tally *t = ctx;
    (void)addr, (void)native;
    t->names++;
    if (len)
        t->depth_sum += (unsigned char)name[len - 1]; /* touch the last byte */
    return 0;
}

/* Feed like a tailing caller: offer what is there, keep the unconsumed tail. */
static int feed_all(const uint8_t *data, size_t size, size_t cut, tally *t, size_t *total)
{
    vp_vmprof_reader r;
    vp_vmprof_handler h = {.ctx = t, .on_sample = on_sample, .on_name = on_name};
    vp_vmprof_reader_init(&r);
    size_t start = 0, used = 0;
    int rc = vp_vmprof_feed(&r, data, cut, &used, &h);
    if (used > cut)
        abort();
    start = used;
    if (rc == VP_OK) {
        rc = vp_vmprof_feed(&r, data + start, size - start, &used, &h);
        if (used > size - start)
            abort();
        start += used;
    }
    *total = start;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t cut = ((size_t)data[0] << 8 | data[1]) % size;
    tally whole = {0}, split = {0};
    size_t used_whole = 0, used_split = 0;
    int rc_whole = feed_all(data, size, size, &whole, &used_whole);
    int rc_split = feed_all(data, size, cut, &split, &used_split);
    if (rc_whole != rc_split || used_whole != used_split || memcmp(&whole, &split, sizeof(whole)) != 0)
        abort();
    return 0;
}
