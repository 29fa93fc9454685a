/* vp_decimate.c - see vp_decimate.h. */
#include "vp_decimate.h"

#include <math.h>
#include <string.h>

#include "vp_err.h"
#include "vp_limits.h"
#include "vp_mem.h"

double vp_decimate_allowed_hz(double duration_s)
{
    static const double at_h[] = {3, 6, 12, 24};
    static const double hz[] = {100, 50, 20, 1};
    double h = duration_s / 3600.0;
    if (h <= at_h[0])
        return hz[0];
    for (int i = 1; i < 4; i++) {
        if (h <= at_h[i])
            return hz[i - 1] + (hz[i] - hz[i - 1]) * (h - at_h[i - 1]) / (at_h[i] - at_h[i - 1]);
    }
    return hz[3];
}

uint32_t vp_decimate_factor(uint64_t samples, double span_s, double duration_s)
{
    if (samples < 2 || span_s <= 0)
        return 1;
    double rate = (double)samples / span_s;
    double f = floor(rate / vp_decimate_allowed_hz(duration_s));
    if (f < 1)
        return 1;
    return f > 1e6 ? 1000000u : (uint32_t)f;
}

typedef struct state {
    const uint8_t *in;
    uint8_t *out;
    size_t out_len;
    size_t copied;        /* input bytes before this offset are handled */
    const vp_vmprof_reader *r;
    uint32_t factor;
    uint64_t rng;
    uint32_t in_window;   /* samples seen in the current window */
    uint64_t window_max_rss;
    uint8_t chosen[VP_MAX_RECORD_BYTES];
    size_t chosen_len;
    size_t chosen_rss_at; /* offset of the RSS word in chosen, 0 if none */
    vp_decimate_result *res;
} state;

static uint64_t next_random(uint64_t *s)
{
    /* splitmix64: small, fast, and good enough to pick a sample fairly */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void emit_chosen(state *st)
{
    if (st->in_window == 0)
        return;
    if (st->chosen_rss_at) {
        for (int i = 0; i < 8; i++)
            st->chosen[st->chosen_rss_at + (size_t)i] = (uint8_t)(st->window_max_rss >> (8 * i));
    }
    memcpy(st->out + st->out_len, st->chosen, st->chosen_len);
    st->out_len += st->chosen_len;
    st->res->out_samples++;
    st->in_window = 0;
    st->window_max_rss = 0;
}

static int on_sample(void *ctx, const vp_vmprof_sample *s)
{
    state *st = ctx;
    const uint8_t *rec = s->entries - 17;
    size_t tail = (st->r->version >= 1 ? 8u : 0u) + ((st->r->mode & VP_VMPROF_MODE_MEMORY) ? 8u : 0u) +
                  (st->r->version >= 7 ? 8u : 0u);
    size_t len = 17u + (size_t)s->depth * 8u + tail;
    size_t at = (size_t)(rec - st->in);
    /* Other records since the last sample pass through as they are. */
    memcpy(st->out + st->out_len, st->in + st->copied, at - st->copied);
    st->out_len += at - st->copied;
    st->copied = at + len;
    st->res->in_samples++;
    st->in_window++;
    if (s->rss_kb > st->window_max_rss)
        st->window_max_rss = s->rss_kb;
    /* Reservoir of one: the i-th sample replaces the choice with chance 1/i. */
    if (next_random(&st->rng) % st->in_window == 0) {
        memcpy(st->chosen, rec, len);
        st->chosen_len = len;
        st->chosen_rss_at = (st->r->mode & VP_VMPROF_MODE_MEMORY)
                                ? 17u + (size_t)s->depth * 8u + (st->r->version >= 1 ? 8u : 0u)
                                : 0;
    }
    if (st->in_window == st->factor)
        emit_chosen(st);
    return 0;
}

int vp_decimate(vp_vmprof_reader *r, const uint8_t *in, size_t in_len, uint32_t factor,
                uint64_t seed, uint8_t *out, vp_decimate_result *res)
{
    memset(res, 0, sizeof(*res));
    /* The chosen record can be as large as the largest record: too big for
     * a thread-pool thread's stack. */
    state *st = vp_calloc(1, sizeof(*st));
    if (!st)
        return VP_ENOMEM;
    st->in = in;
    st->out = out;
    st->r = r;
    st->factor = factor ? factor : 1;
    st->rng = seed ^ 0x6a09e667f3bcc909ull;
    st->res = res;
    vp_vmprof_handler h = {.ctx = st, .on_sample = on_sample};
    size_t used = 0;
    int rc = vp_vmprof_feed(r, in, in_len, &used, &h);
    emit_chosen(st); /* the last window of this stretch, even if short */
    memcpy(out + st->out_len, in + st->copied, used - st->copied);
    st->out_len += used - st->copied;
    res->out_len = st->out_len;
    vp_free(st);
    return rc;
}
