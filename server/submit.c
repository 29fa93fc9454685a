/*
 * submit.c - the old client's msgpack upload into the store (submit.h).
 *
 * The body is a msgpack map (github blue-yonder/vmprof-viewer-client,
 * protocol.py): "version" (1 or 2), "project", "period" (microseconds from
 * that client; a value below 1 is taken as seconds), "duration" (same
 * unit), "max_mem", optional "top_level_function" and "start_date" (ISO
 * 8601), and three gzip-compressed msgpack blobs: "mem_profile", a list of
 * [trace, rss_kb] with trace a root-first list of addresses (negative
 * entries, line numbers, are dropped), "addr_name_map", address ->
 * "py:name:line:file" with the address a decimal string (Python 2's
 * bytes(addr)) or an integer, and "cpu_profile", which is ignored: the
 * samples come from mem_profile, one per entry.
 *
 * Bounds: the body is at most VP_MAX_SUBMIT_BODY (checked by http.c); the
 * blobs are inflated as a stream through a window of VP_SUBMIT_WINDOW bytes
 * and never held whole, so memory stays bounded whatever they claim; each
 * stops at VP_MAX_SUBMIT_RAW bytes of output (a gzip bomb stops there);
 * entries, depths and strings are checked against vp_limits.h before use.
 *
 * The run is stored in slices of VP_SUBMIT_SLICE_SAMPLES, one write
 * transaction each, so the single writer is not held for the whole body;
 * if anything is wrong half-way the run is deleted again.
 */
#include "submit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "ingest.h"
#include "metrics.h"
#include "mpack.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

typedef struct blob {
    const uint8_t *p;
    size_t n;
    int present;
} blob;

typedef struct meta {
    int64_t version;
    int has_version;
    char *project, *function;
    int64_t start_us;
    int has_start;
    double period, duration;
    int has_period, has_duration;
    blob mem, names;
} meta;

/* What went wrong: the HTTP status and the reason for the client. */
typedef struct failure {
    int status;
    char why[256];
} failure;

static int refuse(failure *f, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(failure *f, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof(f->why), fmt, ap);
    va_end(ap);
    f->status = status;
    return status == 413 ? VP_ETOOBIG : status >= 500 ? VP_EIO : VP_ECORRUPT;
}

/* mp_refuse turns a reader failure into a 400/413 with its reason. */
static int mp_refuse(failure *f, const vps_mp *r, int rc, const char *where)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "%s: %s", where, r->err ? r->err : vp_strerror(rc));
    if (rc == VP_ENOMEM)
        return refuse(f, 500, "out of memory");
    return refuse(f, rc == VP_ETOOBIG ? 413 : 400, "%s", msg);
}

/* ---- the outer map ---- */

static int key_is(const vps_mp_item *k, const char *name)
{
    size_t n = strlen(name);
    return (k->type == VPS_MP_STR || k->type == VPS_MP_BIN) && k->n == n &&
           memcmp(k->p, name, n) == 0;
}

static int as_number(const vps_mp_item *v, double *out)
{
    if (v->type == VPS_MP_INT)
        *out = v->neg ? (double)v->i : (double)v->u;
    else if (v->type == VPS_MP_FLOAT && isfinite(v->f))
        *out = v->f;
    else
        return 0;
    return 1;
}

/* as_string copies a STR/BIN value of at most max bytes. */
static int as_string(const vps_mp_item *v, size_t max, char **out, failure *f, const char *key)
{
    if (v->type == VPS_MP_NIL)
        return VP_OK;
    if ((v->type != VPS_MP_STR && v->type != VPS_MP_BIN) || v->n > max)
        return refuse(f, 400, "'%s' must be a string of at most %zu bytes", key, max);
    char *s = vp_strndup((const char *)v->p, v->n);
    if (!s)
        return refuse(f, 500, "out of memory");
    vp_free(*out);
    *out = s;
    return VP_OK;
}

static int as_blob(const vps_mp_item *v, blob *b, failure *f, const char *key)
{
    if (v->type != VPS_MP_STR && v->type != VPS_MP_BIN)
        return refuse(f, 400, "'%s' must be gzip-compressed msgpack bytes", key);
    b->p = v->p;
    b->n = v->n;
    b->present = 1;
    return VP_OK;
}

static int parse_outer(const uint8_t *body, size_t len, meta *m, failure *f)
{
    vps_mp r;
    vps_mp_item top, k, v;
    int rc;
    vps_mp_init_buf(&r, body, len);
    if ((rc = vps_mp_next(&r, &top)) != VP_OK)
        return mp_refuse(f, &r, rc, "body");
    if (top.type != VPS_MP_MAP)
        return refuse(f, 400, "the body must be a msgpack map");
    for (uint32_t i = 0; i < top.n; i++) {
        if ((rc = vps_mp_next(&r, &k)) != VP_OK || (rc = vps_mp_skip(&r, &k, 1)) != VP_OK ||
            (rc = vps_mp_next(&r, &v)) != VP_OK)
            return mp_refuse(f, &r, rc, "body");
        double num;
        if (key_is(&k, "version")) {
            if (v.type != VPS_MP_INT || v.neg || (v.u != 1 && v.u != 2))
                return refuse(f, 400, "'version' must be 1 or 2");
            m->version = (int64_t)v.u;
            m->has_version = 1;
        } else if (key_is(&k, "project")) {
            if ((rc = as_string(&v, VP_MAX_META_STRING, &m->project, f, "project")) != VP_OK)
                return rc;
        } else if (key_is(&k, "top_level_function")) {
            if ((rc = as_string(&v, VP_MAX_META_STRING, &m->function, f,
                                "top_level_function")) != VP_OK)
                return rc;
        } else if (key_is(&k, "start_date")) {
            if (v.type == VPS_MP_NIL)
                continue;
            if ((v.type != VPS_MP_STR && v.type != VPS_MP_BIN) || v.n > 64 ||
                vps_parse_time((const char *)v.p, v.n, &m->start_us) != VP_OK)
                return refuse(f, 400, "'start_date' must be an ISO 8601 time");
            m->has_start = 1;
        } else if (key_is(&k, "period")) {
            if (!as_number(&v, &num) || !(num > 0))
                return refuse(f, 400, "'period' must be a positive number");
            m->period = num;
            m->has_period = 1;
        } else if (key_is(&k, "duration")) {
            if (v.type == VPS_MP_NIL)
                continue;
            if (!as_number(&v, &num) || !(num >= 0))
                return refuse(f, 400, "'duration' must be a number >= 0");
            m->duration = num;
            m->has_duration = 1;
        } else if (key_is(&k, "max_mem")) {
            if (v.type != VPS_MP_NIL && !as_number(&v, &num))
                return refuse(f, 400, "'max_mem' must be a number");
        } else if (key_is(&k, "mem_profile")) {
            if ((rc = as_blob(&v, &m->mem, f, "mem_profile")) != VP_OK)
                return rc;
        } else if (key_is(&k, "addr_name_map")) {
            if ((rc = as_blob(&v, &m->names, f, "addr_name_map")) != VP_OK)
                return rc;
        } else if ((rc = vps_mp_skip(&r, &v, VP_MAX_MSGPACK_DEPTH)) != VP_OK) {
            /* cpu_profile and anything newer: not needed. */
            return mp_refuse(f, &r, rc, "body");
        }
    }
    if (!vps_mp_at_end(&r))
        return refuse(f, 400, "bytes after the msgpack map");
    if (!m->has_version)
        return refuse(f, 400, "'version' is missing");
    if (!m->project)
        return refuse(f, 400, "'project' is missing");
    if (!m->has_period)
        return refuse(f, 400, "'period' is missing");
    if (!m->mem.present || !m->names.present)
        return refuse(f, 400, "'mem_profile' and 'addr_name_map' are required");
    return VP_OK;
}

/* ---- inflating a blob ---- */

typedef struct gz {
    z_stream zs;
    int open, done;
    uint64_t out;
} gz;

static voidpf gz_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return vp_calloc(items, size);
}

static void gz_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    vp_free(p);
}

static int gz_open(gz *g, const blob *b)
{
    memset(g, 0, sizeof(*g));
    g->zs.zalloc = gz_alloc;
    g->zs.zfree = gz_free;
    g->zs.next_in = (Bytef *)(uintptr_t)b->p;
    g->zs.avail_in = (uInt)b->n; /* <= VP_MAX_SUBMIT_BODY < 4 GiB */
    /* 15 + 32: gzip or zlib framing, told apart by the header. */
    int z = inflateInit2(&g->zs, 15 + 32);
    if (z != Z_OK)
        return z == Z_MEM_ERROR ? VP_ENOMEM : VP_EIO;
    g->open = 1;
    return VP_OK;
}

static void gz_close(gz *g)
{
    if (g->open)
        inflateEnd(&g->zs);
    g->open = 0;
}

static int gz_refill(void *ctx, uint8_t *buf, size_t cap, size_t *got)
{
    gz *g = ctx;
    *got = 0;
    if (g->done)
        return VP_OK;
    g->zs.next_out = buf;
    g->zs.avail_out = (uInt)cap;
    while (g->zs.avail_out > 0) {
        int z = inflate(&g->zs, Z_NO_FLUSH);
        if (z == Z_STREAM_END) {
            g->done = 1;
            break;
        }
        if (z == Z_MEM_ERROR)
            return VP_ENOMEM;
        if (z == Z_BUF_ERROR && g->zs.avail_in == 0)
            return VP_ECORRUPT; /* the input ended before the stream did */
        if (z != Z_OK && z != Z_BUF_ERROR)
            return VP_ECORRUPT;
    }
    *got = cap - g->zs.avail_out;
    g->out += *got;
    if (g->out > VP_MAX_SUBMIT_RAW)
        return VP_ETOOBIG;
    return VP_OK;
}

/* ---- storing ---- */

typedef struct sink {
    vps_store *s;
    vps_db *db;
    vps_run run;
    int inserted; /* the run row is committed */
    vps_stack_cache cache;
    uint32_t in_txn;
    uint64_t *frames;
    uint64_t period_ns;
} sink;

static int sink_begin(sink *k)
{
    if (k->db)
        return VP_OK;
    int rc = vps_store_begin(k->s, VPS_WRITE, &k->db);
    if (rc != VP_OK)
        return rc;
    if (!k->inserted && (rc = vps_db_insert_run(k->db, &k->run)) != VP_OK) {
        vps_db_end(k->db);
        k->db = NULL;
    }
    return rc;
}

static int sink_commit(sink *k)
{
    if (!k->db)
        return VP_OK;
    int rc = vps_db_update_run(k->db, &k->run);
    if (rc != VP_OK) {
        vps_db_end(k->db);
        k->db = NULL;
        return rc;
    }
    rc = vps_db_commit(k->db);
    k->db = NULL;
    k->in_txn = 0;
    if (rc == VP_OK)
        k->inserted = 1;
    return rc;
}

/* store_failure marks a store error (500) unless a refusal came first. */
static int store_failure(failure *f, int rc)
{
    if (f->status)
        return rc;
    f->status = rc == VP_EIO || rc == VP_ENOMEM ? 500 : 503;
    snprintf(f->why, sizeof(f->why), "storage failed: %s", vp_strerror(rc));
    return rc;
}

/* sink_row_done counts a row stored in the open transaction and commits
 * once the slice holds VP_SUBMIT_SLICE_SAMPLES rows; a failed commit is
 * marked in f as a store failure and returned. */
static int sink_row_done(sink *k, failure *f)
{
    int rc;
    if (++k->in_txn == VP_SUBMIT_SLICE_SAMPLES && (rc = sink_commit(k)) != VP_OK)
        return store_failure(f, rc);
    return VP_OK;
}

/* stream_end checks that r, the stream of key what, holds nothing after
 * its top item (a kind such as "list"); otherwise f says why. r stays the
 * caller's to close. */
static int stream_end(vps_mp *r, const char *what, const char *kind, failure *f)
{
    if (vps_mp_at_end(r))
        return VP_OK;
    return r->err ? mp_refuse(f, r, VP_ECORRUPT, what)
                  : refuse(f, 400, "%s: data after the %s", what, kind);
}

/* stream_open inflates b (the value of key what) into a streaming reader
 * r over g and reads its top item into *top, which must be of type want
 * (must_be says so to the client otherwise) with at most max entries. On
 * success the caller owns g and r (vps_mp_fini(r), then gz_close(g)); on
 * failure nothing is held and f says why. */
static int stream_open(gz *g, vps_mp *r, const blob *b, const char *what, vps_mp_type want,
                       uint32_t max, const char *must_be, vps_mp_item *top, failure *f)
{
    int rc = gz_open(g, b);
    if (rc != VP_OK)
        return refuse(f, rc == VP_ENOMEM ? 500 : 400, "%s: cannot inflate", what);
    if (vps_mp_init_stream(r, VP_SUBMIT_WINDOW, gz_refill, g) != VP_OK) {
        gz_close(g);
        return refuse(f, 500, "out of memory");
    }
    if ((rc = vps_mp_next(r, top)) != VP_OK)
        rc = mp_refuse(f, r, rc, what);
    else if (top->type != want)
        rc = refuse(f, 400, "%s", must_be);
    else if (top->n > max)
        rc = refuse(f, 413, "%s has more than %u entries", what, max);
    if (rc != VP_OK) {
        vps_mp_fini(r);
        gz_close(g);
    }
    return rc;
}

static int read_samples(sink *k, const blob *b, failure *f)
{
    gz g;
    vps_mp r;
    vps_mp_item list, e, trace, x, mem;
    int rc = stream_open(&g, &r, b, "mem_profile", VPS_MP_ARRAY, VP_MAX_SUBMIT_SAMPLES,
                         "mem_profile must be a list of [trace, rss]", &list, f);
    if (rc != VP_OK)
        return rc;
    vps_run *run = &k->run;
    for (uint32_t i = 0; i < list.n; i++) {
        if ((rc = vps_mp_next(&r, &e)) != VP_OK || (rc = vps_mp_next(&r, &trace)) != VP_OK) {
            rc = mp_refuse(f, &r, rc, "mem_profile");
            goto done;
        }
        if (e.type != VPS_MP_ARRAY || e.n != 2 || trace.type != VPS_MP_ARRAY) {
            rc = refuse(f, 400, "each mem_profile entry must be [trace, rss]");
            goto done;
        }
        if (trace.n > VP_MAX_STACK_DEPTH) {
            rc = refuse(f, 413, "a trace is deeper than %u frames", VP_MAX_STACK_DEPTH);
            goto done;
        }
        uint32_t n = 0;
        for (uint32_t j = 0; j < trace.n; j++) {
            if ((rc = vps_mp_next(&r, &x)) != VP_OK) {
                rc = mp_refuse(f, &r, rc, "mem_profile");
                goto done;
            }
            if (x.type != VPS_MP_INT) {
                rc = refuse(f, 400, "trace entries must be integer addresses");
                goto done;
            }
            /* Line numbers (line mode) are negative; 0 is no code. */
            if (!x.neg && x.u != 0)
                k->frames[n++] = x.u;
        }
        if ((rc = vps_mp_next(&r, &mem)) != VP_OK) {
            rc = mp_refuse(f, &r, rc, "mem_profile");
            goto done;
        }
        if (mem.type != VPS_MP_INT || mem.neg) {
            rc = refuse(f, 400, "rss must be an integer >= 0 (KiB)");
            goto done;
        }
        if ((rc = sink_begin(k)) != VP_OK) {
            store_failure(f, rc);
            goto done;
        }
        vps_sample_row row = {.idx = i, .t_ns = (int64_t)(i * k->period_ns),
                              .rss_kb = mem.u, .thread = 0};
        int is_new = 0;
        if ((rc = vps_stack_cache_id(&k->cache, k->db, run->rid, k->frames, n,
                                     &row.stack_id)) != VP_OK ||
            (rc = vps_db_put_sample(k->db, run->rid, &row)) != VP_OK ||
            (i == 0 && (rc = vps_db_put_thread(k->db, run->rid, 0, &is_new)) != VP_OK)) {
            store_failure(f, rc);
            goto done;
        }
        run->samples = (uint64_t)i + 1;
        run->threads = 1;
        if (mem.u > run->peak_rss_kb)
            run->peak_rss_kb = mem.u;
        if (i == 0)
            run->first_t_ns = row.t_ns;
        run->last_t_ns = row.t_ns;
        if ((rc = sink_row_done(k, f)) != VP_OK)
            goto done;
    }
    rc = stream_end(&r, "mem_profile", "list", f);
done:
    vps_mp_fini(&r);
    gz_close(&g);
    return rc;
}

/* parse_addr reads an address key: an integer or its decimal text. */
static int parse_addr(const vps_mp_item *key, uint64_t *out)
{
    if (key->type == VPS_MP_INT && !key->neg) {
        *out = key->u;
        return 1;
    }
    if ((key->type != VPS_MP_STR && key->type != VPS_MP_BIN) || key->n == 0 || key->n > 20)
        return 0;
    uint64_t v = 0;
    for (uint32_t i = 0; i < key->n; i++) {
        unsigned d = (unsigned)key->p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

static int read_names(sink *k, const blob *b, failure *f)
{
    gz g;
    vps_mp r;
    vps_mp_item map, key, val;
    int rc = stream_open(&g, &r, b, "addr_name_map", VPS_MP_MAP, VP_MAX_SUBMIT_NAMES,
                         "addr_name_map must be a map of address to name", &map, f);
    if (rc != VP_OK)
        return rc;
    for (uint32_t i = 0; i < map.n; i++) {
        uint64_t addr;
        if ((rc = vps_mp_next(&r, &key)) != VP_OK) {
            rc = mp_refuse(f, &r, rc, "addr_name_map");
            goto done;
        }
        if (!parse_addr(&key, &addr)) {
            rc = refuse(f, 400, "addr_name_map keys must be addresses (decimal or integer)");
            goto done;
        }
        if ((rc = vps_mp_next(&r, &val)) != VP_OK) {
            rc = mp_refuse(f, &r, rc, "addr_name_map");
            goto done;
        }
        if (val.type == VPS_MP_NIL)
            continue;
        if ((val.type != VPS_MP_STR && val.type != VPS_MP_BIN) || val.n > VP_MAX_NAME_LEN) {
            rc = refuse(f, 400, "addr_name_map values must be names of at most %u bytes",
                        VP_MAX_NAME_LEN);
            goto done;
        }
        if ((rc = sink_begin(k)) != VP_OK ||
            (rc = vps_db_put_name(k->db, k->run.rid, addr, (const char *)val.p, val.n)) !=
                VP_OK) {
            store_failure(f, rc);
            goto done;
        }
        if ((rc = sink_row_done(k, f)) != VP_OK)
            goto done;
    }
    rc = stream_end(&r, "addr_name_map", "map", f);
done:
    vps_mp_fini(&r);
    gz_close(&g);
    return rc;
}

static char *copy_str(const char *s)
{
    return vp_strndup(s, strlen(s));
}

void vps_submit(vps_store *s, const uint8_t *body, size_t len, vps_reply *out)
{
    meta m;
    failure f = {0};
    sink k;
    memset(&m, 0, sizeof(m));
    memset(&k, 0, sizeof(k));
    k.s = s;
    int rc = parse_outer(body, len, &m, &f);
    if (rc != VP_OK)
        goto fail;
    /* The old client sends microseconds (period * 10**6); a value below 1
     * can only be seconds. Duration is in the same unit. */
    double unit_us = m.period < 1 ? 1e6 : 1.0;
    double period_us = m.period * unit_us;
    if (!(period_us >= 1 && period_us < 1e9)) {
        rc = refuse(&f, 400, "'period' must be 1 us .. 1000 s");
        goto fail;
    }
    vps_run *run = &k.run;
    memset(run, 0, sizeof(*run));
    snprintf(run->status, sizeof(run->status), "live");
    run->version = -1;
    run->mode = VP_VMPROF_MODE_MEMORY;
    run->period_us = (uint64_t)llround(period_us);
    run->start_us = m.has_start ? m.start_us : vps_now_us();
    run->end_us = -1;
    run->first_t_ns = run->last_t_ns = -1;
    run->bytes = len;
    run->project = m.project, m.project = NULL;
    run->function = m.function && *m.function ? m.function : copy_str("submit");
    if (run->function == m.function)
        m.function = NULL;
    run->host = copy_str("");
    run->source = copy_str("submit");
    run->interp = copy_str("");
    run->tags = copy_str("{}");
    k.period_ns = run->period_us * 1000u;
    k.frames = vp_malloc((size_t)VP_MAX_STACK_DEPTH * sizeof(uint64_t));
    vps_stack_cache_init(&k.cache);
    if (!run->function || !run->host || !run->source || !run->interp || !run->tags ||
        !k.frames) {
        rc = refuse(&f, 500, "out of memory");
        goto fail;
    }
    if (vps_ingest_new_run_id(run->id) != VP_OK) {
        rc = refuse(&f, 500, "no randomness for a run id");
        goto fail;
    }
    if ((rc = sink_begin(&k)) != VP_OK) {
        store_failure(&f, rc);
        goto fail;
    }
    if ((rc = read_samples(&k, &m.mem, &f)) != VP_OK ||
        (rc = read_names(&k, &m.names, &f)) != VP_OK)
        goto fail;
    if ((rc = sink_begin(&k)) != VP_OK) {
        store_failure(&f, rc);
        goto fail;
    }
    snprintf(run->status, sizeof(run->status), "complete");
    run->trailer = 1;
    int64_t span_us = run->samples ? (run->last_t_ns - run->first_t_ns) / 1000 : 0;
    run->end_us = run->start_us +
                  (m.has_duration && m.duration * unit_us < 1e15 ? (int64_t)(m.duration * unit_us)
                                                                 : span_us);
    if ((rc = sink_commit(&k)) != VP_OK) {
        store_failure(&f, rc);
        goto fail;
    }
    VPS_COUNT(VPS_M_SUBMIT_STORED);
    vp_metric_add(&vps_metrics[VPS_M_SAMPLES], run->samples);
    vp_info("submit %s: %llu samples from the old client, project %s", run->id,
            (unsigned long long)run->samples, run->project);
    char path[48];
    int n = snprintf(path, sizeof(path), "/runs/%s", run->id);
    char *text = vp_strndup(path, (size_t)n);
    if (text) {
        vps_reply_body(out, 200, "text/plain; charset=utf-8", text, (size_t)n);
        memcpy(out->run_id, run->id, sizeof(out->run_id));
    } else {
        vps_reply_error(out, 500, "out of memory");
    }
    goto done;
fail:
    if (k.db) {
        vps_db_end(k.db);
        k.db = NULL;
    }
    if (k.inserted && vps_store_begin(s, VPS_WRITE, &k.db) == VP_OK) {
        /* Leave no half-stored run behind. */
        if (vps_db_delete_run(k.db, k.run.rid) == VP_OK)
            vps_db_commit(k.db);
        else
            vps_db_end(k.db);
    }
    if (!f.status)
        refuse(&f, 500, "submit failed");
    if (f.status >= 500) {
        VPS_COUNT(VPS_M_SUBMIT_ERROR);
        vp_error("submit refused: %s", f.why);
    } else {
        VPS_COUNT(VPS_M_SUBMIT_REFUSED);
        vp_info("submit refused: %s", f.why);
    }
    vps_reply_error(out, f.status, "%s", f.why);
done:
    vps_stack_cache_fini(&k.cache);
    vp_free(k.frames);
    vps_run_fini(&k.run);
    vp_free(m.project);
    vp_free(m.function);
}
