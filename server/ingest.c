/*
 * ingest.c - batches and uploads into the store (see ingest.h).
 *
 * Both paths push vmprof bytes through one vp_vmprof_reader whose handlers
 * write straight into an open write transaction: samples, stacks, names and
 * threads. Nothing of the profile is held in memory beyond one record and a
 * small cache of recent stacks.
 *
 * Invariants:
 * - A batch is one transaction: it is applied whole or not at all, and the
 *   run's next_seq moves in the same transaction, so a retried batch is
 *   either a duplicate or applied once.
 * - run->samples and run->bytes always equal the reader's counters after
 *   the last applied record; a later batch resumes the reader from them.
 * - Stack frames are stored root first and hold code addresses only: in
 *   line mode the line-number entries are dropped.
 */
#include "ingest.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "limits.h"
#include "metrics.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

/* The state the reader's handlers share while one transaction is open. */
typedef struct feed {
    vps_db *db;
    vps_run *run;
    int fatal; /* a store failure inside a handler (VP_E*), 0 if none */
    uint64_t *frames;
    uint32_t frames_cap;
    vps_stack_cache cache;
    uint64_t threads[8]; /* recently seen thread ids, to skip their insert */
    unsigned nthreads;
} feed;

uint64_t vps_frames_hash(const uint64_t *frames, uint32_t n)
{
    /* splitmix64's finaliser per frame: order-sensitive and well mixed. */
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t x = h ^ frames[i];
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        h = x ^ (x >> 31);
    }
    return h;
}

typedef struct cached_stack {
    uint64_t hash;
    int64_t id;
    uint32_t n;
    uint64_t *frames; /* NULL = empty slot */
} cached_stack;

void vps_stack_cache_init(vps_stack_cache *c)
{
    /* Without the cache every sample costs one more SELECT; still correct. */
    c->slots = vp_calloc(VP_STACK_CACHE_SLOTS, sizeof(cached_stack));
    c->bytes = 0;
}

void vps_stack_cache_fini(vps_stack_cache *c)
{
    cached_stack *slots = c->slots;
    if (slots) {
        for (unsigned i = 0; i < VP_STACK_CACHE_SLOTS; i++)
            vp_free(slots[i].frames);
        vp_free(slots);
    }
    c->slots = NULL;
}

int vps_stack_cache_id(vps_stack_cache *c, vps_db *db, int64_t rid, const uint64_t *frames,
                       uint32_t n, int64_t *id)
{
    uint64_t h = vps_frames_hash(frames, n);
    size_t bytes = (size_t)n * sizeof(uint64_t);
    cached_stack *slots = c->slots;
    cached_stack *slot = slots ? &slots[h & (VP_STACK_CACHE_SLOTS - 1)] : NULL;
    if (slot && slot->frames && slot->hash == h && slot->n == n &&
        (n == 0 || memcmp(slot->frames, frames, bytes) == 0)) {
        *id = slot->id;
        return VP_OK;
    }
    int rc = vps_db_put_stack(db, rid, h, frames, n, id);
    if (rc != VP_OK || !slot)
        return rc;
    /* Replace whatever was in the slot, within the byte budget. */
    if (slot->frames) {
        c->bytes -= (size_t)slot->n * sizeof(uint64_t);
        vp_free(slot->frames);
        slot->frames = NULL;
    }
    if (c->bytes + bytes <= VP_STACK_CACHE_BYTES) {
        slot->frames = vp_malloc(bytes ? bytes : 1);
        if (slot->frames) {
            if (n)
                memcpy(slot->frames, frames, bytes);
            slot->hash = h;
            slot->n = n;
            slot->id = *id;
            c->bytes += bytes;
        }
    }
    return VP_OK;
}

static void feed_init(feed *f, vps_run *run)
{
    memset(f, 0, sizeof(*f));
    f->run = run;
    vps_stack_cache_init(&f->cache);
}

static void feed_fini(feed *f)
{
    vps_stack_cache_fini(&f->cache);
    vp_free(f->frames);
}

static int on_header(void *ctx, const vp_vmprof_reader *r)
{
    feed *f = ctx;
    char *interp = vp_strndup(r->interp, strlen(r->interp));
    if (!interp)
        return f->fatal = VP_ENOMEM;
    vp_free(f->run->interp);
    f->run->interp = interp;
    f->run->version = r->version;
    f->run->mode = r->mode;
    f->run->period_us = r->period_us;
    return 0;
}

static int note_thread(feed *f, uint64_t thread)
{
    for (unsigned i = 0; i < f->nthreads; i++) {
        if (f->threads[i] == thread)
            return VP_OK;
    }
    int is_new = 0;
    int rc = vps_db_put_thread(f->db, f->run->rid, thread, &is_new);
    if (rc != VP_OK)
        return rc;
    if (is_new)
        f->run->threads++;
    unsigned cap = sizeof(f->threads) / sizeof(f->threads[0]);
    f->threads[f->nthreads < cap ? f->nthreads++ : thread % cap] = thread;
    return VP_OK;
}

static int on_sample(void *ctx, const vp_vmprof_sample *s)
{
    feed *f = ctx;
    vps_run *run = f->run;
    int rc;
    if (s->depth > f->frames_cap) {
        /* depth <= VP_MAX_STACK_DEPTH: the reader checked it. */
        uint64_t *p = vp_realloc(f->frames, (size_t)s->depth * sizeof(uint64_t));
        if (!p)
            return f->fatal = VP_ENOMEM;
        f->frames = p;
        f->frames_cap = s->depth;
    }
    /* Entries are leaf first; in line mode they alternate line, code, so
     * the code addresses are the odd positions (vmprof-format.md §4.4). */
    int lines = (run->mode & VP_VMPROF_MODE_LINES) != 0;
    uint32_t n = 0;
    for (uint32_t i = s->depth; i-- > 0;) {
        if (!lines || (i & 1))
            f->frames[n++] = vp_vmprof_entry(s, i);
    }
    vps_sample_row row = {.idx = s->index, .rss_kb = s->rss_kb, .thread = s->thread_id};
    /* Older files have no sample clock: sample i is at i x period. */
    row.t_ns = s->time_ns >= 0 ? s->time_ns : (int64_t)(s->index * run->period_us * 1000u);
    if ((rc = vps_stack_cache_id(&f->cache, f->db, run->rid, f->frames, n, &row.stack_id)) !=
            VP_OK ||
        (rc = vps_db_put_sample(f->db, run->rid, &row)) != VP_OK ||
        (rc = note_thread(f, s->thread_id)) != VP_OK)
        return f->fatal = rc;
    if (s->rss_kb > run->peak_rss_kb)
        run->peak_rss_kb = s->rss_kb;
    if (run->first_t_ns < 0 || row.t_ns < run->first_t_ns)
        run->first_t_ns = row.t_ns;
    if (row.t_ns > run->last_t_ns)
        run->last_t_ns = row.t_ns;
    return 0;
}

static int on_name(void *ctx, uint64_t addr, const char *name, size_t len, int native)
{
    feed *f = ctx;
    (void)native; /* both kinds share one namespace; the greatest name wins */
    int rc = vps_db_put_name(f->db, f->run->rid, addr, name, len);
    return rc != VP_OK ? (f->fatal = rc) : 0;
}

/* meta_u64 reads the decimal value of word key= in a META value of len
 * bytes ("k1=v1 k2=v2 ..."): 1 and *out if present and a number. */
static int meta_u64(const char *val, size_t len, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && val[end] != ' ')
            end++;
        if (end - i > klen + 1 && memcmp(val + i, key, klen) == 0 && val[i + klen] == '=') {
            uint64_t v = 0;
            size_t j = i + klen + 1;
            if (end - j > 18) /* keeps v * 10 + 9 inside 64 bits */
                return 0;
            for (; j < end; j++) {
                if (val[j] < '0' || val[j] > '9')
                    return 0;
                v = v * 10 + (uint64_t)(val[j] - '0');
            }
            *out = v;
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

/* on_meta notes a relay's thinning (PROTOCOL.md: "vmpv.thinned" =
 * "factor=F period_us=P samples_in=N samples_out=M", period_us absent when
 * a full spool was thinned). P is the period the relay read in the header,
 * so the thinned stretch was sampled every P x F. A record that does not
 * parse is ignored: it describes the data, it is not the data. */
static int on_meta(void *ctx, const char *key, size_t klen, const char *val, size_t vlen)
{
    feed *f = ctx;
    vps_run *run = f->run;
    static const char thinned[] = "vmpv.thinned";
    uint64_t factor, in, out, period;
    if (klen != sizeof(thinned) - 1 || memcmp(key, thinned, klen) != 0)
        return 0;
    if (!meta_u64(val, vlen, "factor", &factor) || !meta_u64(val, vlen, "samples_in", &in) ||
        !meta_u64(val, vlen, "samples_out", &out) || factor < 1 || factor > 1000000000u ||
        out > in || in > VP_MAX_THINNED_SAMPLES) {
        vp_debug("run %s: ignoring a malformed vmpv.thinned record", run->id);
        return 0;
    }
    if (!meta_u64(val, vlen, "period_us", &period) || period == 0 ||
        period > 1000000000u)
        period = run->period_us;
    /* Bounded so that samples + thin_removed stays a JSON integer. */
    run->thin_removed += in - out;
    if (run->thin_removed > VP_MAX_THINNED_SAMPLES)
        run->thin_removed = VP_MAX_THINNED_SAMPLES;
    if (period * factor > run->thin_period_us)
        run->thin_period_us = period * factor;
    return 0;
}

/* feed_bytes pushes buf through r and copies the reader's totals into the
 * run. Returns vp_vmprof_feed's code. */
static int feed_bytes(feed *f, vp_vmprof_reader *r, const uint8_t *buf, size_t len,
                      size_t *consumed)
{
    vp_vmprof_handler h = {.ctx = f, .on_header = on_header, .on_sample = on_sample,
                           .on_name = on_name, .on_meta = on_meta};
    int rc = vp_vmprof_feed(r, buf, len, consumed, &h);
    vps_run *run = f->run;
    run->samples = r->samples;
    run->bytes = r->offset;
    if (r->start_us >= 0)
        run->start_us = r->start_us;
    if (r->end_us >= 0) {
        run->end_us = r->end_us;
        run->trailer = 1;
    } else if (rc == VP_EDONE) {
        run->trailer = 1; /* a version < 5 trailer carries no time */
    }
    return rc;
}

/* ---- batches ---- */

static int bounded_str(json_t *o, const char *key, char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return VP_OK;
    if (!json_is_string(v) || json_string_length(v) > VP_MAX_META_STRING) {
        snprintf(err, errlen, "'%s' must be a string of at most %u bytes", key,
                 VP_MAX_META_STRING);
        return VP_EINVAL;
    }
    char *copy = vp_strndup(json_string_value(v), json_string_length(v));
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return VP_ENOMEM;
    }
    vp_free(*out);
    *out = copy;
    return VP_OK;
}

static int check_tags(json_t *tags, char **out, char *err, size_t errlen)
{
    if (!tags || json_is_null(tags))
        return VP_OK;
    if (!json_is_object(tags) || json_object_size(tags) > VP_MAX_TAGS) {
        snprintf(err, errlen, "'tags' must be an object of at most %u strings", VP_MAX_TAGS);
        return VP_EINVAL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(tags, k, v)
    {
        if (!json_is_string(v) || strlen(k) > VP_MAX_META_STRING ||
            json_string_length(v) > VP_MAX_META_STRING) {
            snprintf(err, errlen, "tag values must be strings of at most %u bytes",
                     VP_MAX_META_STRING);
            return VP_EINVAL;
        }
    }
    char *text = json_dumps(tags, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return VP_ENOMEM;
    }
    vp_free(*out);
    *out = text;
    return VP_OK;
}

/* load_payload parses the payload of a what ("OPEN", "CLOSE") batch as a
 * JSON object. On success the caller owns *out (json_decref); on failure
 * *out is not written and err says why: VP_EINVAL for a malformed payload,
 * VP_ENOMEM when we ran out of memory. */
static int load_payload(const uint8_t *raw, size_t len, const char *what, json_t **out,
                        char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *o = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, &jerr);
    if (json_is_object(o)) {
        *out = o;
        return VP_OK;
    }
    /* Out of memory is ours, not the sender's: retryable, not malformed. */
    int rc = !o && json_error_code(&jerr) == json_error_out_of_memory ? VP_ENOMEM : VP_EINVAL;
    snprintf(err, errlen, "%s payload is not a JSON object: %s", what, o ? "" : jerr.text);
    json_decref(o);
    return rc;
}

/* parse_open fills a new run from an OPEN payload (PROTOCOL.md §B). */
static int parse_open(const uint8_t *raw, size_t len, vps_run *run, char *err, size_t errlen)
{
    json_t *o;
    int rc = load_payload(raw, len, "OPEN", &o, err, errlen);
    if (rc != VP_OK)
        return rc;
    if ((rc = bounded_str(o, "project", &run->project, err, errlen)) != VP_OK ||
        (rc = bounded_str(o, "function", &run->function, err, errlen)) != VP_OK ||
        (rc = bounded_str(o, "host", &run->host, err, errlen)) != VP_OK ||
        (rc = bounded_str(o, "source", &run->source, err, errlen)) != VP_OK ||
        (rc = check_tags(json_object_get(o, "tags"), &run->tags, err, errlen)) != VP_OK)
        goto fail;
    rc = VP_EINVAL;
    json_t *pid = json_object_get(o, "pid");
    if (pid && !json_is_null(pid)) {
        if (!json_is_integer(pid)) {
            snprintf(err, errlen, "'pid' must be an integer");
            goto fail;
        }
        run->pid = (int64_t)json_integer_value(pid);
    }
    json_t *period = json_object_get(o, "period");
    if (period && !json_is_null(period)) {
        double p = json_number_value(period);
        /* vmprof itself accepts 1e-6 <= period < 1 s; allow some slack. */
        if (!json_is_number(period) || !(p > 0 && p < 1000)) {
            snprintf(err, errlen, "'period' must be seconds in (0, 1000)");
            goto fail;
        }
        run->period_us = (uint64_t)(p * 1e6);
    }
    json_t *start = json_object_get(o, "start");
    if (start && !json_is_null(start)) {
        double t = json_number_value(start);
        if (!json_is_number(start) || !(t >= 0 && t < 1e11)) {
            snprintf(err, errlen, "'start' must be Unix seconds");
            goto fail;
        }
        run->start_us = (int64_t)(t * 1e6);
    }
    rc = VP_OK;
fail:
    json_decref(o);
    return rc;
}

/* parse_close applies a CLOSE payload to the run. */
static int parse_close(const uint8_t *raw, size_t len, vps_run *run, char *err, size_t errlen)
{
    json_t *o;
    int rc = load_payload(raw, len, "CLOSE", &o, err, errlen);
    if (rc != VP_OK)
        return rc;
    rc = VP_EINVAL;
    const char *status = json_string_value(json_object_get(o, "status"));
    if (!status || (strcmp(status, "complete") != 0 && strcmp(status, "failed") != 0 &&
                    strcmp(status, "incomplete") != 0)) {
        snprintf(err, errlen, "CLOSE 'status' must be complete, failed or incomplete");
        goto fail;
    }
    json_t *e = json_object_get(o, "error");
    if (e && !json_is_null(e) && !json_is_string(e)) {
        snprintf(err, errlen, "CLOSE 'error' must be a string");
        goto fail;
    }
    if (e && json_is_string(e)) {
        /* One line for the UI; cut long tracebacks at a character boundary. */
        const char *s = json_string_value(e);
        size_t n = json_string_length(e);
        if (n > VP_MAX_META_STRING) {
            n = VP_MAX_META_STRING;
            while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                n--;
        }
        char *copy = vp_strndup(s, n);
        if (!copy) {
            rc = VP_ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        vp_free(run->error);
        run->error = copy;
    }
    json_t *samples = json_object_get(o, "samples");
    if (json_is_integer(samples) && (uint64_t)json_integer_value(samples) != run->samples)
        vp_warn("run %s closed claiming %lld samples; %llu were stored", run->id,
                (long long)json_integer_value(samples), (unsigned long long)run->samples);
    snprintf(run->status, sizeof(run->status), "%s", status);
    if (!run->trailer)
        run->end_us = vps_now_us();
    rc = VP_OK;
fail:
    json_decref(o);
    return rc;
}

/* apply_data parses one DATA payload into the open transaction. On a
 * refusal (*http = 400) or a store failure (*http = 500) err says why and
 * the caller rolls back. */
static int apply_data(vps_db *db, vps_run *run, const vp_batch_view *v, const uint8_t *raw,
                      int *http, char *err, size_t errlen)
{
    vp_vmprof_reader r;
    feed f;
    int rc;
    *http = 400;
    if (run->trailer) {
        snprintf(err, errlen, "DATA after the profile's TRAILER record");
        return VP_ECORRUPT;
    }
    if (run->version < 0)
        vp_vmprof_reader_init(&r);
    else
        vp_vmprof_reader_resume(&r, (uint16_t)run->version, (uint8_t)run->mode, run->period_us,
                                run->bytes, run->samples);
    uint64_t before = run->samples;
    size_t consumed = 0;
    feed_init(&f, run);
    f.db = db;
    rc = feed_bytes(&f, &r, raw, v->raw_len, &consumed);
    if (f.fatal) {
        *http = 500;
        snprintf(err, errlen, "storage failed: %s", vp_strerror(f.fatal));
        rc = f.fatal;
    } else if (rc != VP_OK && rc != VP_EDONE) {
        snprintf(err, errlen, "bad vmprof data: %s", r.error);
    } else if (!vp_vmprof_header_done(&r)) {
        snprintf(err, errlen, "the first DATA batch must hold the whole vmprof header");
        rc = VP_ECORRUPT;
    } else if (rc == VP_OK && consumed != v->raw_len) {
        snprintf(err, errlen, "DATA payload does not end on a record boundary (offset %llu)",
                 (unsigned long long)r.offset);
        rc = VP_ECORRUPT;
    } else if (r.samples - before != v->samples) {
        snprintf(err, errlen, "batch header says %u samples, the payload holds %llu",
                 v->samples, (unsigned long long)(r.samples - before));
        rc = VP_ECORRUPT;
    } else {
        rc = VP_OK;
    }
    feed_fini(&f);
    return rc;
}

static int bearer_ok(const char *token, const char *bearer, size_t n)
{
    size_t t = strlen(token);
    if (!bearer)
        return 0;
    /* Constant time in the token's length, like vp_batch_token_ok. */
    unsigned diff = (unsigned)(t ^ n);
    for (size_t i = 0; i < t; i++)
        diff |= (unsigned)(token[i] ^ (i < n ? bearer[i] : 0));
    return diff == 0;
}

static void run_defaults(vps_run *run)
{
    memset(run, 0, sizeof(*run));
    snprintf(run->status, sizeof(run->status), "live");
    run->version = -1;
    run->start_us = vps_now_us();
    run->end_us = -1;
    run->first_t_ns = -1;
    run->last_t_ns = -1;
}

/* What applying a batch came to; decides commit or rollback and the reply. */
typedef enum { B_STORED, B_DUPLICATE, B_OUT_OF_ORDER, B_REFUSED } batch_outcome;

typedef struct batch_result {
    batch_outcome outcome;
    uint64_t expected; /* B_OUT_OF_ORDER */
    int http;          /* B_REFUSED: 400, or 500 for a store failure */
    char err[320];
} batch_result;

static void refused(batch_result *res, int rc, const char *what)
{
    res->outcome = B_REFUSED;
    res->http = 500;
    snprintf(res->err, sizeof(res->err), "%s: %s", what, vp_strerror(rc));
}

/* apply_gap records that batches seq..to-1 of a run will never come (a
 * relay gave up waiting for them, PROTOCOL.md §B GAP) and moves the run on
 * to `to`; the loss stays visible in the run's error. */
static int apply_gap(vps_run *run, const vp_batch_view *v, const uint8_t *raw, char *err,
                     size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)raw, v->raw_len, 0, &jerr);
    json_t *to = json_object_get(j, "to");
    json_int_t m = json_is_integer(to) ? json_integer_value(to) : -1;
    json_decref(j);
    /* next_seq is a u64 seq from the wire; the bound keeps the sum sane. */
    if (m <= (json_int_t)v->seq || (uint64_t)m - v->seq > 1000000000ull) {
        snprintf(err, errlen, "GAP needs {\"to\": N} with N after seq %llu",
                 (unsigned long long)v->seq);
        return VP_ECORRUPT;
    }
    char note[160];
    snprintf(note, sizeof(note), "gap: batches %llu..%lld never arrived",
             (unsigned long long)v->seq, (long long)m - 1);
    size_t old = run->error ? strlen(run->error) : 0;
    char *joined = vp_malloc(old + strlen(note) + 3);
    if (!joined)
        return VP_ENOMEM;
    snprintf(joined, old + strlen(note) + 3, "%s%s%s", old ? run->error : "", old ? "; " : "", note);
    vp_free(run->error);
    run->error = joined;
    run->next_seq = (uint64_t)m - 1; /* the caller's increment lands on m */
    return VP_OK;
}

/* apply_batch applies one decoded batch inside the write transaction db,
 * following PROTOCOL.md §C: OPEN creates the run; DATA and CLOSE must carry
 * the run's next seq; an applied seq is a duplicate. */
static void apply_batch(vps_db *db, const vp_batch_view *v, const uint8_t *raw, const char *id,
                        batch_result *res)
{
    vps_run run;
    int rc = vps_db_get_run(db, id, &run);
    res->http = 400;
    if (rc != VP_OK && rc != VP_ENOTFOUND) {
        refused(res, rc, "storage failed");
        return;
    }
    if (v->kind == VP_BATCH_OPEN) {
        if (rc == VP_OK) {
            res->outcome = B_DUPLICATE;
            goto fail;
        }
        run_defaults(&run);
        memcpy(run.id, id, sizeof(run.id));
        run.next_seq = 1;
        if ((rc = parse_open(raw, v->raw_len, &run, res->err, sizeof(res->err))) != VP_OK) {
            res->outcome = B_REFUSED;
            res->http = rc == VP_ENOMEM ? 500 : 400;
            goto fail;
        }
        if (!run.source && !(run.source = vp_strndup("client", 6))) {
            refused(res, VP_ENOMEM, "OPEN");
            goto fail;
        }
        if ((rc = vps_db_insert_run(db, &run)) != VP_OK)
            refused(res, rc, "storage failed");
        else
            res->outcome = B_STORED;
        goto fail;
    }
    if (rc == VP_ENOTFOUND) {
        res->outcome = B_OUT_OF_ORDER; /* OPEN first */
        res->expected = 0;
        return;
    }
    if (v->seq < run.next_seq) {
        res->outcome = B_DUPLICATE;
        goto fail;
    }
    if (v->seq > run.next_seq) {
        res->outcome = B_OUT_OF_ORDER;
        res->expected = run.next_seq;
        goto fail;
    }
    if (strcmp(run.status, "live") != 0) {
        /* Not 409: the relay would resend the same batch forever. */
        res->outcome = B_REFUSED;
        snprintf(res->err, sizeof(res->err), "run %s is already closed (%s)", id, run.status);
        goto fail;
    }
    if (v->kind == VP_BATCH_DATA)
        rc = apply_data(db, &run, v, raw, &res->http, res->err, sizeof(res->err));
    else if (v->kind == VP_BATCH_GAP)
        rc = apply_gap(&run, v, raw, res->err, sizeof(res->err));
    else
        rc = parse_close(raw, v->raw_len, &run, res->err, sizeof(res->err));
    if (rc != VP_OK) {
        res->outcome = B_REFUSED;
        if (rc == VP_ENOMEM)
            res->http = 500;
        goto fail;
    }
    run.next_seq++;
    if ((rc = vps_db_update_run(db, &run)) != VP_OK)
        refused(res, rc, "storage failed");
    else
        res->outcome = B_STORED;
fail:
    vps_run_fini(&run);
}

void vps_ingest_batch(vps_store *s, const char *token, const char *bearer, size_t bearer_len,
                      const uint8_t *body, size_t len, vps_reply *out)
{
    vp_batch_view v;
    batch_result res = {.outcome = B_REFUSED, .http = 400};
    char id[33] = "";
    uint8_t *raw = NULL;
    vps_db *db = NULL;
    int rc = vp_batch_decode(body, len, &v, res.err, sizeof(res.err));
    if (rc != VP_OK) {
        res.http = rc == VP_ETOOBIG ? 413 : 400;
        goto fail;
    }
    if (!vp_batch_token_ok(&v, token) && !bearer_ok(token, bearer, bearer_len)) {
        VPS_COUNT(VPS_M_BATCH_UNAUTHORIZED);
        vps_reply_error(out, 401, "wrong or missing intake token");
        return;
    }
    vp_run_id_hex(v.run_id, id);
    if ((v.kind == VP_BATCH_OPEN) != (v.seq == 0)) {
        snprintf(res.err, sizeof(res.err), "OPEN must have seq 0 and only OPEN may");
        goto fail;
    }
    if ((rc = vp_batch_payload(&v, &raw, res.err, sizeof(res.err))) != VP_OK) {
        res.http = rc == VP_ENOMEM ? 500 : 400;
        goto fail;
    }
    if ((rc = vps_store_begin(s, VPS_WRITE, &db)) != VP_OK) {
        refused(&res, rc, "storage unavailable");
        res.http = 503;
        goto fail;
    }
    apply_batch(db, &v, raw, id, &res);
    if (res.outcome == B_STORED) {
        rc = vps_db_commit(db);
        if (rc != VP_OK)
            refused(&res, rc, "storage failed");
    } else {
        vps_db_end(db);
    }
    db = NULL;
fail:
    vp_free(raw);
    switch (res.outcome) {
    case B_STORED:
        VPS_COUNT(VPS_M_BATCH_STORED);
        if (v.kind == VP_BATCH_DATA)
            vp_metric_add(&vps_metrics[VPS_M_SAMPLES], v.samples);
        vp_debug("run %s: batch kind %u seq %llu stored", id, v.kind,
                 (unsigned long long)v.seq);
        vps_reply_json(out, 200, json_pack("{s:s}", "status", "stored"));
        /* A closed run is finished: the server reads it into the query
         * cache (and its summary file) before anyone asks. */
        if (v.kind == VP_BATCH_CLOSE)
            memcpy(out->run_id, id, sizeof(out->run_id));
        break;
    case B_DUPLICATE:
        VPS_COUNT(VPS_M_BATCH_DUPLICATE);
        vps_reply_json(out, 200, json_pack("{s:s}", "status", "duplicate"));
        break;
    case B_OUT_OF_ORDER:
        VPS_COUNT(VPS_M_BATCH_OUT_OF_ORDER);
        vps_reply_json(out, 409, json_pack("{s:s, s:I}", "error", "out of order", "expected",
                                           (json_int_t)res.expected));
        break;
    case B_REFUSED:
        if (res.http >= 500) {
            VPS_COUNT(VPS_M_BATCH_ERROR);
            vp_error("run %s: batch refused: %s", id[0] ? id : "?", res.err);
        } else {
            VPS_COUNT(VPS_M_BATCH_MALFORMED);
            vp_info("run %s: batch refused: %s", id[0] ? id : "?", res.err);
        }
        vps_reply_error(out, res.http, "%s", res.err);
        break;
    }
}

/* ---- plain uploads ---- */

/* elapsed_ms is the time since *t0 on clock id, in milliseconds. */
static long long elapsed_ms(clockid_t id, const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (long long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

int vps_ingest_new_run_id(char out[33])
{
    uint8_t id[VP_RUN_ID_LEN];
    size_t got = 0;
    while (got < sizeof(id)) {
        ssize_t n = getrandom(id + got, sizeof(id) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return VP_EIO;
        got += (size_t)n;
    }
    vp_run_id_hex(id, out);
    return VP_OK;
}

static char *dup_meta(const char *s, const char *def)
{
    const char *v = s && *s ? s : def;
    return vp_strndup(v, strlen(v));
}

static int too_long(const char *s)
{
    return s && strlen(s) > VP_MAX_META_STRING;
}

/* finish_upload sets the final status once the whole file has been fed. */
static void finish_upload(vps_run *run, int rc, const vp_vmprof_reader *r, size_t total)
{
    char msg[256];
    if (rc == VP_EDONE) {
        snprintf(run->status, sizeof(run->status), "complete");
    } else {
        snprintf(run->status, sizeof(run->status), "incomplete");
        if (rc != VP_OK)
            snprintf(msg, sizeof(msg), "%s", r->error);
        else if (r->offset < total)
            snprintf(msg, sizeof(msg), "truncated after %llu samples at offset %llu",
                     (unsigned long long)r->samples, (unsigned long long)r->offset);
        else
            snprintf(msg, sizeof(msg),
                     "no TRAILER record: the profiler did not stop cleanly");
        vp_free(run->error);
        run->error = vp_strndup(msg, strlen(msg));
    }
    if (run->end_us < 0) {
        /* No trailer time: estimate from the samples' own clock. */
        int64_t span_us = run->samples ? (run->last_t_ns - run->first_t_ns) / 1000 : 0;
        run->end_us = run->start_us + (span_us > 0 ? span_us : 0);
    }
}

void vps_ingest_upload(vps_store *s, const vps_upload_meta *m, const uint8_t *body, size_t len,
                       vps_reply *out)
{
    vp_vmprof_reader r;
    vps_run run;
    feed f;
    vps_db *db = NULL;
    size_t pos = 0, consumed = 0;
    int rc = VP_OK, stored = 0, finished = 0;
    uint64_t counted = 0;
    char err[320];
    struct timespec wall0, cpu0;
    clock_gettime(CLOCK_MONOTONIC, &wall0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);

    if (len >= 2 && body[0] == 0x1f && body[1] == 0x8b) {
        VPS_COUNT(VPS_M_UPLOAD_REFUSED);
        vps_reply_error(out, 400, "gzip not supported; gunzip first");
        return;
    }
    /* Check the static header and HEADER record before anything is stored:
     * a file that is not a profile leaves no run behind. */
    vp_vmprof_reader_init(&r);
    size_t head = len < VP_VMPROF_STATIC_HEADER + 5 + 255 ? len : VP_VMPROF_STATIC_HEADER + 5 + 255;
    rc = vp_vmprof_feed(&r, body, head, &consumed, NULL);
    if ((rc != VP_OK && rc != VP_EDONE) || !vp_vmprof_header_done(&r)) {
        VPS_COUNT(VPS_M_UPLOAD_REFUSED);
        vps_reply_error(out, 400, "not a vmprof profile: %s",
                        r.error[0] ? r.error : "too short for the vmprof header");
        return;
    }
    if (too_long(m->project) || too_long(m->function) || too_long(m->host)) {
        VPS_COUNT(VPS_M_UPLOAD_REFUSED);
        vps_reply_error(out, 400, "project, function and host are at most %u bytes",
                        VP_MAX_META_STRING);
        return;
    }

    run_defaults(&run);
    feed_init(&f, &run);
    if (vps_ingest_new_run_id(run.id) != VP_OK) {
        snprintf(err, sizeof(err), "no randomness for a run id");
        goto fail;
    }
    run.project = dup_meta(m->project, "default");
    run.function = dup_meta(m->function, "upload");
    run.host = dup_meta(m->host, "");
    run.source = dup_meta("upload", "");
    run.tags = dup_meta("{}", "");
    if (!run.project || !run.function || !run.host || !run.source || !run.tags) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    vp_vmprof_reader_init(&r);
    /* One transaction per slice: a big file must not hold the single
     * writer for its whole parse while relays' batches wait. */
    while (!finished) {
        size_t end = len - pos > VP_UPLOAD_SLICE_BYTES ? pos + VP_UPLOAD_SLICE_BYTES : len;
        if ((rc = vps_store_begin(s, VPS_WRITE, &db)) != VP_OK) {
            snprintf(err, sizeof(err), "storage unavailable: %s", vp_strerror(rc));
            goto fail;
        }
        f.db = db;
        if (!stored && (rc = vps_db_insert_run(db, &run)) != VP_OK) {
            snprintf(err, sizeof(err), "storage failed: %s", vp_strerror(rc));
            goto fail;
        }
        rc = feed_bytes(&f, &r, body + pos, end - pos, &consumed);
        pos += consumed;
        if (f.fatal) {
            snprintf(err, sizeof(err), "storage failed: %s", vp_strerror(f.fatal));
            goto fail;
        }
        /* The file ends here if the trailer came, the data went bad, all
         * bytes were used, or the last slice ended inside a record. A middle
         * slice that made no progress cannot happen (a slice holds the
         * largest record), but would loop forever: treat it as the end. */
        finished = rc != VP_OK || pos == len || end == len || consumed == 0;
        if (finished)
            finish_upload(&run, rc, &r, len);
        if ((rc = vps_db_update_run(db, &run)) != VP_OK) {
            snprintf(err, sizeof(err), "storage failed: %s", vp_strerror(rc));
            goto fail;
        }
        rc = vps_db_commit(db);
        db = NULL;
        if (rc != VP_OK) {
            snprintf(err, sizeof(err), "storage failed: %s", vp_strerror(rc));
            goto fail;
        }
        stored = 1;
        vp_metric_add(&vps_metrics[VPS_M_SAMPLES], run.samples - counted);
        counted = run.samples;
    }
    VPS_COUNT(VPS_M_UPLOAD_STORED);
    vp_info("upload %s: %llu samples, %s%s%s; stored in %lld ms (%lld ms CPU)", run.id,
            (unsigned long long)run.samples, run.status, run.error ? ": " : "",
            run.error ? run.error : "", elapsed_ms(CLOCK_MONOTONIC, &wall0),
            elapsed_ms(CLOCK_THREAD_CPUTIME_ID, &cpu0));
    char url[48];
    snprintf(url, sizeof(url), "/runs/%s", run.id);
    vps_reply_json(out, 201, json_pack("{s:s, s:s, s:I, s:s}", "id", run.id, "url", url,
                                       "samples", (json_int_t)run.samples, "status",
                                       run.status));
    memcpy(out->run_id, run.id, sizeof(out->run_id));
    feed_fini(&f);
    vps_run_fini(&run);
    return;

fail:
    if (db)
        vps_db_end(db);
    if (stored && vps_store_begin(s, VPS_WRITE, &db) == VP_OK) {
        /* Leave no half-stored run behind. */
        if (vps_db_delete_run(db, run.rid) == VP_OK)
            vps_db_commit(db);
        else
            vps_db_end(db);
    }
    VPS_COUNT(VPS_M_UPLOAD_ERROR);
    vp_error("upload failed: %s", err);
    vps_reply_error(out, 500, "%s", err);
    feed_fini(&f);
    vps_run_fini(&run);
}
