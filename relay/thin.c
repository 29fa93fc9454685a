/*
 * thin.c - decimation at the relay's intake (see common/vp_decimate.h for
 * what it preserves). Runs on libuv's thread pool, inside a commit wave.
 *
 * Profiles younger than --decimate-after on their sample clock are left as
 * they are. After that, the rate is judged per DATA batch: the batch's samples over its stretch
 * of the sample clock, against the seed's table for the profile's age on
 * that clock (the run's first sample time, remembered in the spool). Profiles
 * whose format has no sample clock (vmprof < 0.5) pass unchanged, as do
 * batches of a run whose header this relay has not seen (another relay of a
 * fleet got it).
 *
 * A thinned batch carries a META record "vmpv.thinned" saying by how much,
 * so the profile records its original and its new rate.
 */
#include <stdio.h>
#include <string.h>

#include "relay_int.h"
#include "vp_batch.h"
#include "vp_decimate.h"
#include "vp_err.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

typedef struct census {
    uint64_t n;
    int64_t t_first, t_last;
    vp_spool_run_info info;
    int header;
} census;

static int census_header(void *ctx, const vp_vmprof_reader *r)
{
    census *c = ctx;
    c->header = 1;
    c->info.version = r->version;
    c->info.mode = r->mode;
    c->info.period_us = r->period_us;
    return 0;
}

static int census_sample(void *ctx, const vp_vmprof_sample *s)
{
    census *c = ctx;
    if (c->n == 0)
        c->t_first = s->time_ns;
    c->t_last = s->time_ns;
    c->n++;
    return 0;
}

static int starts_with_static_header(const uint8_t *raw, size_t len)
{
    static const uint8_t head[16] = {0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0};
    return len >= 16 && memcmp(raw, head, 16) == 0;
}

static void reader_for(vp_vmprof_reader *r, int fresh, const vp_spool_run_info *info)
{
    if (fresh)
        vp_vmprof_reader_init(r);
    else
        vp_vmprof_reader_resume(r, info->version, info->mode, info->period_us, 0, 0);
}

static size_t put_meta(uint8_t *p, const char *key, const char *val)
{
    size_t k = strlen(key), v = strlen(val);
    p[0] = VP_VMPROF_META;
    vp_store_u64le(p + 1, k);
    memcpy(p + 9, key, k);
    vp_store_u64le(p + 9 + k, v);
    memcpy(p + 17 + k, val, v);
    return 17 + k + v;
}

/* add_note adds the vmpv.thinned META record val to thinned records
 * buf[0..len) (room for 256 more bytes): at the end, or, when they end with
 * the TRAILER (which must stay last), just before it, so that the server
 * learns of the last batch's thinning too. Returns the new length. */
static size_t add_note(uint8_t *buf, size_t len, int trailer, uint16_t version, const char *val)
{
    /* The TRAILER is a marker byte, plus a time (25 bytes) from version 5. */
    size_t tl = !trailer ? 0 : version < 5 ? 1u : 25u;
    uint8_t tail[25];
    if (tl > len)
        tl = 0; /* cannot happen: the trailer was among the records */
    memcpy(tail, buf + len - tl, tl);
    size_t at = len - tl;
    at += put_meta(buf + at, "vmpv.thinned", val);
    memcpy(buf + at, tail, tl);
    return at + tl;
}

int vpr_thin_batch(vp_spool *spool, const vp_batch_view *v, const uint8_t *raw, int enabled,
                   double after_s, vpr_thin_out *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (v->kind != VP_BATCH_DATA || !enabled)
        return vp_batch_retoken(v, NULL, &out->body, &out->body_len);
    int fresh = starts_with_static_header(raw, v->raw_len);
    census c = {.t_first = -1, .t_last = -1};
    if (!fresh && vp_spool_get_info(spool, v->run_id, &c.info) != VP_OK)
        return vp_batch_retoken(v, NULL, &out->body, &out->body_len);
    vp_vmprof_reader r;
    reader_for(&r, fresh, &c.info);
    vp_vmprof_handler h = {.ctx = &c, .on_header = census_header, .on_sample = census_sample};
    size_t used = 0;
    int rc = vp_vmprof_feed(&r, raw, v->raw_len, &used, &h);
    if ((rc != VP_OK && rc != VP_EDONE) || used != v->raw_len) {
        snprintf(why, whylen, "DATA payload is not whole vmprof records: %s",
                 r.error[0] ? r.error : "it ends inside a record");
        return VP_ECORRUPT;
    }
    if (c.n != v->samples) {
        snprintf(why, whylen, "batch says %u samples, its payload holds %llu", v->samples,
                 (unsigned long long)c.n);
        return VP_ECORRUPT;
    }
    if (fresh && c.header) {
        c.info.first_t_ns = c.t_first;
        out->info = c.info;
        out->has_info = 1;
    }
    uint32_t factor = 1;
    if (r.version >= 7 && c.n > 1 && c.info.first_t_ns >= 0 && c.t_last > c.t_first) {
        double span = (double)(c.t_last - c.t_first) / 1e9;
        double age = (double)(c.t_last - c.info.first_t_ns) / 1e9;
        /* A young profile keeps the rate its user asked for (the seed
         * promises period=0.001 for short work); thinning starts when it
         * has run long enough for volume to matter. */
        if (age >= after_s)
            factor = vp_decimate_factor(c.n, span, age);
    }
    if (factor <= 1)
        return vp_batch_retoken(v, NULL, &out->body, &out->body_len);

    uint8_t *thin = vp_malloc((size_t)v->raw_len + 256);
    if (!thin)
        return VP_ENOMEM;
    reader_for(&r, fresh, &c.info);
    vp_decimate_result res;
    rc = vp_decimate(&r, raw, v->raw_len, factor, v->seq ^ vp_load_u64le(v->run_id), thin, &res);
    if (rc != VP_OK && rc != VP_EDONE) {
        vp_free(thin);
        snprintf(why, whylen, "cannot thin the batch: %s", r.error);
        return VP_ECORRUPT;
    }
    char val[160];
    snprintf(val, sizeof(val), "factor=%u period_us=%llu samples_in=%llu samples_out=%llu",
             factor, (unsigned long long)c.info.period_us, (unsigned long long)res.in_samples,
             (unsigned long long)res.out_samples);
    size_t len = add_note(thin, res.out_len, rc == VP_EDONE, r.version, val);
    rc = vp_batch_encode(VP_BATCH_DATA, v->run_id, v->seq, (uint32_t)res.out_samples, NULL, thin,
                         len, &out->body, &out->body_len);
    vp_free(thin);
    out->removed = res.in_samples - res.out_samples;
    return rc;
}

/* ---- making room in a full spool ---------------------------------------- */

typedef struct squeeze {
    vp_spool_run_info info;
    int has_info;
    uint64_t removed;
} squeeze;

/* Halves the samples of one spooled DATA batch (same invariants as above). */
static int squeeze_batch(void *ctx, uint64_t seq, const uint8_t *body, size_t len, uint8_t **nb,
                         size_t *nlen)
{
    squeeze *sq = ctx;
    vp_batch_view v;
    char why[128];
    uint8_t *raw = NULL, *thin = NULL;
    int rc = VP_ENOTFOUND;
    if (vp_batch_decode(body, len, &v, why, sizeof(why)) != VP_OK ||
        vp_batch_payload(&v, &raw, why, sizeof(why)) != VP_OK)
        return VP_ECORRUPT;
    int fresh = starts_with_static_header(raw, v.raw_len);
    if (!fresh && !sq->has_info)
        goto fail; /* cannot read it without its header: leave it */
    thin = vp_malloc((size_t)v.raw_len + 256);
    if (!thin) {
        rc = VP_ENOMEM;
        goto fail;
    }
    vp_vmprof_reader r;
    reader_for(&r, fresh, &sq->info);
    vp_decimate_result res;
    int drc = vp_decimate(&r, raw, v.raw_len, 2, seq * 0x9e3779b97f4a7c15ull, thin, &res);
    if ((drc != VP_OK && drc != VP_EDONE) || res.out_samples == res.in_samples)
        goto fail;
    char val[160];
    snprintf(val, sizeof(val), "factor=2 reason=spool-full samples_in=%llu samples_out=%llu",
             (unsigned long long)res.in_samples, (unsigned long long)res.out_samples);
    size_t out_len = add_note(thin, res.out_len, drc == VP_EDONE, r.version, val);
    rc = vp_batch_encode(VP_BATCH_DATA, v.run_id, v.seq, (uint32_t)res.out_samples, NULL, thin,
                         out_len, nb, nlen);
    if (rc == VP_OK)
        sq->removed += res.in_samples - res.out_samples;
fail:
    vp_free(thin);
    vp_free(raw);
    return rc;
}

int64_t vpr_squeeze(vp_spool *spool, uint64_t *removed)
{
    uint8_t run[VP_RUN_ID_LEN];
    uint64_t bytes = 0;
    *removed = 0;
    if (vp_spool_largest_run(spool, run, &bytes) != VP_OK)
        return 0;
    squeeze sq = {.has_info = 0};
    sq.has_info = vp_spool_get_info(spool, run, &sq.info) == VP_OK;
    int64_t freed = vp_spool_rewrite_data(spool, run, squeeze_batch, &sq);
    *removed = sq.removed;
    if (freed > 0) {
        char id[33];
        vp_run_id_hex(run, id);
        vp_warn("spool full: thinned run %s by half (%llu samples, %lld bytes freed)", id,
                (unsigned long long)sq.removed, (long long)freed);
    }
    return freed;
}
