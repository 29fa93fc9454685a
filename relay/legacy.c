/*
 * legacy.c - the relay's optional second sink: the seed's original server
 * protocol, so an existing deployment of the old vmprof-viewer server can be
 * fed (POST /submit/, a msgpack map, version 2, with gzip-compressed msgpack
 * blobs: cpu_profile, mem_profile, addr_name_map; see docs/API.md "The seed's
 * original intake").
 *
 * The forwarder keeps a copy of each batch it forwarded (vp_spool_done with
 * keep_copy) and, once a run's CLOSE is among them, rebuilds the whole
 * profile from the copies with the vmprof reader, packs it with msgpack-c,
 * gzips with zlib and posts it. The copies go only once the old server has
 * answered 2xx. A run too large for the old protocol (it is one request) is
 * logged and given up on, never half-sent.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "relay_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

typedef struct name_entry {
    uint64_t addr;
    char *name;
} name_entry;

/* Frames of all samples, root first, back to back; sample i is
 * frames[start[i] .. start[i] + depth[i]). */
typedef struct assembly {
    char project[VP_MAX_META_STRING + 1];
    char function[VP_MAX_META_STRING + 1];
    double start_s, period_s;
    vp_vmprof_reader reader;
    int reader_started;
    uint64_t *frames;
    size_t nframes, frames_cap;
    uint64_t *start, *rss;
    uint32_t *depth;
    size_t nsamples, samples_cap;
    name_entry *names;
    size_t nnames, names_cap;
    uint64_t max_rss;
    int64_t first_t, last_t;
    int failed;
    char why[256];
} assembly;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return VP_OK;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    void *q = vp_realloc(*p, n * elem);
    if (!q)
        return VP_ENOMEM;
    *p = q;
    *cap = n;
    return VP_OK;
}

static int on_sample(void *ctx, const vp_vmprof_sample *s)
{
    assembly *a = ctx;
    if (a->nsamples >= VP_MAX_LEGACY_SAMPLES) {
        snprintf(a->why, sizeof(a->why), "more than %u samples: too large for one old-style upload",
                 VP_MAX_LEGACY_SAMPLES);
        return VP_ETOOBIG;
    }
    if (a->nframes + s->depth > VP_MAX_LEGACY_FRAMES) {
        snprintf(a->why, sizeof(a->why), "more than %u frames: too large for one old-style upload",
                 VP_MAX_LEGACY_FRAMES);
        return VP_ETOOBIG;
    }
    int lines = (a->reader.mode & VP_VMPROF_MODE_LINES) != 0;
    size_t cap_samples = a->samples_cap;
    if (grow((void **)&a->frames, &a->frames_cap, a->nframes + s->depth, sizeof(uint64_t)) ||
        grow((void **)&a->start, &cap_samples, a->nsamples + 1, sizeof(uint64_t)))
        return VP_ENOMEM;
    cap_samples = a->samples_cap;
    if (grow((void **)&a->rss, &cap_samples, a->nsamples + 1, sizeof(uint64_t)))
        return VP_ENOMEM;
    cap_samples = a->samples_cap;
    if (grow((void **)&a->depth, &cap_samples, a->nsamples + 1, sizeof(uint32_t)))
        return VP_ENOMEM;
    a->samples_cap = cap_samples;
    a->start[a->nsamples] = a->nframes;
    /* The file holds the leaf first; the old protocol wants the root first.
     * In line mode entries alternate line, code: keep the code. */
    uint32_t n = 0;
    for (uint32_t i = s->depth; i-- > 0;) {
        if (lines && (i % 2) == 0)
            continue;
        a->frames[a->nframes + n++] = vp_vmprof_entry(s, i);
    }
    a->nframes += n;
    a->depth[a->nsamples] = n;
    a->rss[a->nsamples] = s->rss_kb;
    if (s->rss_kb > a->max_rss)
        a->max_rss = s->rss_kb;
    if (a->first_t < 0)
        a->first_t = s->time_ns;
    a->last_t = s->time_ns;
    a->nsamples++;
    return 0;
}

static int on_name(void *ctx, uint64_t addr, const char *name, size_t len, int native)
{
    assembly *a = ctx;
    (void)native;
    if (grow((void **)&a->names, &a->names_cap, a->nnames + 1, sizeof(name_entry)))
        return VP_ENOMEM;
    char *copy = vp_strndup(name, len);
    if (!copy)
        return VP_ENOMEM;
    a->names[a->nnames++] = (name_entry){addr, copy};
    return 0;
}

static void take_open(assembly *a, const uint8_t *raw, size_t len)
{
    json_t *j = json_loadb((const char *)raw, len, 0, NULL);
    const char *p = json_string_value(json_object_get(j, "project"));
    const char *f = json_string_value(json_object_get(j, "function"));
    snprintf(a->project, sizeof(a->project), "%s", p ? p : "vmprof-viewer");
    snprintf(a->function, sizeof(a->function), "%s", f ? f : "");
    a->start_s = json_number_value(json_object_get(j, "start"));
    a->period_s = json_number_value(json_object_get(j, "period"));
    json_decref(j);
}

static int take_batch(void *ctx, const uint8_t *body, size_t len)
{
    assembly *a = ctx;
    vp_batch_view v;
    uint8_t *raw = NULL;
    char why[128];
    if (vp_batch_decode(body, len, &v, why, sizeof(why)) != VP_OK ||
        vp_batch_payload(&v, &raw, why, sizeof(why)) != VP_OK) {
        snprintf(a->why, sizeof(a->why), "a kept batch is unreadable: %s", why);
        return VP_ECORRUPT;
    }
    int rc = VP_OK;
    if (v.kind == VP_BATCH_OPEN) {
        take_open(a, raw, v.raw_len);
    } else if (v.kind == VP_BATCH_DATA && !a->failed) {
        if (!a->reader_started) {
            vp_vmprof_reader_init(&a->reader);
            a->reader_started = 1;
        }
        vp_vmprof_handler h = {.ctx = a, .on_sample = on_sample, .on_name = on_name};
        size_t used = 0;
        rc = vp_vmprof_feed(&a->reader, raw, v.raw_len, &used, &h);
        if (rc == VP_EDONE)
            rc = VP_OK;
        if (rc != VP_OK && !a->why[0])
            snprintf(a->why, sizeof(a->why), "%s", a->reader.error);
    }
    vp_free(raw);
    return rc;
}

/* The old client sent msgpack of Python objects; ours must read the same. */
static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_addr_str(msgpack_packer *pk, uint64_t addr)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)addr); /* Python 2's bytes(addr) */
    pack_cstr(pk, buf);
}

/* gzip (RFC 1952) of a buffer; *out is vp_malloc'd. */
static int gzip_buf(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return VP_ENOMEM;
    size_t cap = deflateBound(&z, len);
    uint8_t *buf = vp_malloc(cap);
    if (!buf) {
        deflateEnd(&z);
        return VP_ENOMEM;
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    int zr = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (zr != Z_STREAM_END) {
        vp_free(buf);
        return VP_ENOMEM;
    }
    *out = buf;
    *out_len = cap - z.avail_out;
    return VP_OK;
}

static int pack_gzipped(msgpack_packer *pk, const msgpack_sbuffer *sb)
{
    uint8_t *gz = NULL;
    size_t n = 0;
    int rc = gzip_buf(sb->data, sb->size, &gz, &n);
    if (rc != VP_OK)
        return rc;
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, gz, n);
    vp_free(gz);
    return VP_OK;
}

static int by_addr_then_name(const void *x, const void *y)
{
    const name_entry *a = x, *b = y;
    if (a->addr != b->addr)
        return a->addr < b->addr ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* The call tree the old viewer drew: [addr, count, meta, children] with
 * counts of samples passing through; built from the samples sharing each
 * prefix, so children are packed by recursion over sorted sample ranges. */
static uint64_t *sort_frames_base;
static const uint32_t *sort_depth;
static const uint64_t *sort_start;

static int by_stack(const void *x, const void *y)
{
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    uint32_t di = sort_depth[i], dj = sort_depth[j];
    const uint64_t *a = sort_frames_base + sort_start[i], *b = sort_frames_base + sort_start[j];
    for (uint32_t k = 0; k < di && k < dj; k++)
        if (a[k] != b[k])
            return a[k] < b[k] ? -1 : 1;
    return di < dj ? -1 : di > dj;
}

static void pack_tree(msgpack_packer *pk, const assembly *a, const size_t *order, size_t lo,
                      size_t hi, uint32_t level, uint64_t addr)
{
    msgpack_pack_array(pk, 4);
    pack_addr_str(pk, addr);
    msgpack_pack_uint64(pk, hi - lo);
    msgpack_pack_map(pk, 0);
    /* Children: runs of samples (sorted by stack) with the same frame at
     * `level`. Depth is bounded by the reader's stack limit. */
    size_t i = lo, nchildren = 0;
    while (i < hi && a->depth[order[i]] <= level)
        i++;
    if (level >= VP_MAX_LEGACY_TREE_DEPTH)
        i = hi; /* cut here: the samples below still count in this node */
    for (size_t j = i; j < hi;) {
        uint64_t f = a->frames[a->start[order[j]] + level];
        while (j < hi && a->frames[a->start[order[j]] + level] == f)
            j++;
        nchildren++;
    }
    msgpack_pack_array(pk, nchildren);
    while (i < hi) {
        uint64_t f = a->frames[a->start[order[i]] + level];
        size_t j = i;
        while (j < hi && a->frames[a->start[order[j]] + level] == f)
            j++;
        pack_tree(pk, a, order, i, j, level + 1, f);
        i = j;
    }
}

static int build_body(assembly *a, msgpack_sbuffer *body)
{
    msgpack_sbuffer mem, names, cpu;
    msgpack_packer pk;
    int rc = VP_ENOMEM;
    msgpack_sbuffer_init(&mem);
    msgpack_sbuffer_init(&names);
    msgpack_sbuffer_init(&cpu);
    size_t *order = vp_malloc((a->nsamples ? a->nsamples : 1) * sizeof(size_t));
    if (!order)
        goto fail;

    msgpack_packer_init(&pk, &mem, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, a->nsamples);
    for (size_t i = 0; i < a->nsamples; i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_array(&pk, a->depth[i]);
        for (uint32_t k = 0; k < a->depth[i]; k++)
            msgpack_pack_uint64(&pk, a->frames[a->start[i] + k]);
        msgpack_pack_uint64(&pk, a->rss[i]);
    }

    /* vmprof's reader keeps the greatest name per address. */
    qsort(a->names, a->nnames, sizeof(name_entry), by_addr_then_name);
    size_t distinct = 0;
    for (size_t i = 0; i < a->nnames; i++)
        distinct += i + 1 == a->nnames || a->names[i + 1].addr != a->names[i].addr;
    msgpack_packer_init(&pk, &names, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, distinct);
    for (size_t i = 0; i < a->nnames; i++) {
        if (i + 1 < a->nnames && a->names[i + 1].addr == a->names[i].addr)
            continue;
        pack_addr_str(&pk, a->names[i].addr);
        pack_cstr(&pk, a->names[i].name);
    }

    for (size_t i = 0; i < a->nsamples; i++)
        order[i] = i;
    sort_frames_base = a->frames;
    sort_depth = a->depth;
    sort_start = a->start;
    qsort(order, a->nsamples, sizeof(size_t), by_stack);
    msgpack_packer_init(&pk, &cpu, msgpack_sbuffer_write);
    pack_tree(&pk, a, order, 0, a->nsamples, 0, 0);

    double duration = a->last_t > a->first_t ? (double)(a->last_t - a->first_t) / 1e9
                                              : (double)a->nsamples * a->period_s;
    char date[40] = "";
    if (a->start_s > 0) {
        time_t t = (time_t)a->start_s;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, date[0] ? 10 : 9);
    pack_cstr(&pk, "version");
    msgpack_pack_int(&pk, 2);
    pack_cstr(&pk, "project");
    pack_cstr(&pk, a->project);
    pack_cstr(&pk, "top_level_function");
    pack_cstr(&pk, a->function);
    pack_cstr(&pk, "max_mem");
    msgpack_pack_uint64(&pk, a->max_rss);
    pack_cstr(&pk, "period");
    msgpack_pack_double(&pk, a->period_s > 0 ? a->period_s : (double)a->reader.period_us / 1e6);
    pack_cstr(&pk, "duration");
    msgpack_pack_double(&pk, duration);
    if (date[0]) {
        pack_cstr(&pk, "start_date");
        pack_cstr(&pk, date);
    }
    pack_cstr(&pk, "cpu_profile");
    if ((rc = pack_gzipped(&pk, &cpu)) != VP_OK)
        goto fail;
    pack_cstr(&pk, "mem_profile");
    if ((rc = pack_gzipped(&pk, &mem)) != VP_OK)
        goto fail;
    pack_cstr(&pk, "addr_name_map");
    rc = pack_gzipped(&pk, &names);
fail:
    vp_free(order);
    msgpack_sbuffer_destroy(&mem);
    msgpack_sbuffer_destroy(&names);
    msgpack_sbuffer_destroy(&cpu);
    return rc;
}

static void assembly_free(assembly *a)
{
    for (size_t i = 0; i < a->nnames; i++)
        vp_free(a->names[i].name);
    vp_free(a->names);
    vp_free(a->frames);
    vp_free(a->start);
    vp_free(a->rss);
    vp_free(a->depth);
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p, (void)arg;
    return size * n;
}

int vpr_legacy_send(vp_spool *spool, const char *base_url, const uint8_t run_id[VP_RUN_ID_LEN])
{
    char id[33];
    vp_run_id_hex(run_id, id);
    assembly a;
    memset(&a, 0, sizeof(a));
    a.first_t = a.last_t = -1;
    int rc = vp_spool_copies_each(spool, run_id, take_batch, &a);
    if (rc == VP_ETOOBIG || rc == VP_ECORRUPT) {
        vp_error("second sink: run %s cannot be sent (%s); giving it up", id, a.why);
        assembly_free(&a);
        vp_spool_copies_drop(spool, run_id);
        return VP_OK;
    }
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    if (rc == VP_OK)
        rc = build_body(&a, &body);
    assembly_free(&a);
    if (rc != VP_OK) {
        msgpack_sbuffer_destroy(&body);
        return rc;
    }
    char url[2048];
    snprintf(url, sizeof(url), "%s/submit/", base_url);
    CURL *c = curl_easy_init();
    long code = 0;
    if (c) {
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-msgpack");
        h = curl_slist_append(h, "Expect:");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.size);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
    }
    size_t sent = body.size;
    msgpack_sbuffer_destroy(&body);
    if (code >= 200 && code < 300) {
        vp_info("second sink took run %s (%zu bytes)", id, sent);
        vp_metric_add(&vpr_metrics[VPR_M_LEGACY_SENT], 1);
        return vp_spool_copies_drop(spool, run_id);
    }
    vp_warn("second sink %s answered %ld for run %s; will retry", url, code, id);
    return VP_EIO;
}
