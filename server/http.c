/*
 * http.c - h2o setup, routing, static files and replies (see http.h).
 *
 * Requests that touch the store become a job: the loop thread checks the
 * arguments, queues the job on libuv's thread pool (uv_queue_work) and
 * returns; the worker fills a vps_reply; the after-work callback, back on
 * the loop thread, sends it. The loop thread itself never waits for SQLite.
 *
 * Request lifetime: a job holds a small reference object allocated in the
 * request's memory pool (h2o_mem_alloc_shared). If h2o frees the request
 * while the job runs, the reference's dispose callback clears job->req and
 * the after-work callback only frees the job. Once a reply is sent the job
 * unhooks itself from the reference first, so dispose never touches a freed
 * job.
 *
 * Request bodies: uploads (up to 1 GiB) and the old client's POST /submit/
 * bodies are read by the worker in place, in
 * h2o's input buffer, rather than copied. That is safe because h2o 2.2's
 * HTTP/1 connection stops reading and drops its timeout from the moment the
 * body is complete until the response is sent, so it cannot free the
 * request under the worker. HTTP/2 (where a stream reset frees the request
 * at any time) is therefore switched off: upgrade_to_http2 = 0, and there is
 * no TLS to negotiate it. Batches (<= 8 MiB) are copied anyway: cheap, and
 * one assumption fewer on the path relays depend on.
 *
 * Tokens: the intake token guards POST /api/v1/batches; the admin token
 * DELETE /api/runs/{id}; the read token, when set, every GET /api/...
 * (Bearer header or the vmpv_token cookie that GET /login?token= sets).
 * Pages, assets, /healthz and /metrics stay public.
 */
#include "http.h"

#include <errno.h>
#include <h2o.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ingest.h"
#include "json.h"
#include "limits.h"
#include "metrics.h"
#include "query.h"
#include "rundata.h"
#include "submit.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_net.h"

struct vps_http {
    uv_loop_t *loop;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    uv_timer_t retry; /* re-tries an accept that ran out of memory */
    int listening;
    vps_store *store;
    vps_rdcache *cache; /* derived per-run data shared by the queries */
    char *token;
    char *admin_token; /* "" = DELETE is off */
    char *read_token;  /* "" = reads are open */
    char *web_root;   /* realpath of the UI directory, NULL if it has no index.html */
    char *index_path; /* web_root/index.html */
    unsigned jobs;    /* queued or running */
    int stopping;
    void (*drained)(void *);
    void *drained_arg;
};

typedef struct handler {
    h2o_handler_t super;
    vps_http *http;
} handler;

typedef enum {
    JOB_BATCH,
    JOB_UPLOAD,
    JOB_RUNS,
    JOB_RUN,
    JOB_COLLAPSED,
    JOB_FUNCTIONS,
    JOB_MEMORY,
    JOB_TREE,
    JOB_GROWTH,
    JOB_DIFF,
    JOB_SPEEDSCOPE,
    JOB_DELETE,
    JOB_SUBMIT,
    JOB_WARM, /* no request: reads a just-stored run into the query cache */
} job_kind;

typedef struct job_ref job_ref;

typedef struct job {
    uv_work_t work;
    vps_http *http;
    h2o_req_t *req; /* NULL once h2o has freed the request */
    job_ref *ref;   /* in req's pool; NULL once unhooked */
    job_kind kind;
    char id[33];
    uint8_t *copy;  /* owned body copy (batches) */
    const uint8_t *body;
    size_t body_len;
    char *bearer;   /* owned */
    size_t bearer_len;
    char *s1, *s2, *s3; /* owned query strings: project/q/function, or project/function/host */
    vps_runs_args runs;
    vps_memory_args mem;
    vps_window win, win2; /* the window; diff: a's and b's */
    uint32_t max_nodes;
    char id2[33];         /* diff: run b */
    vps_reply reply;
} job;

struct job_ref {
    job *job;
};

static const char json_ctype[] = "application/json";

/* ---- replies on the loop thread ---- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 302: return "Found";
    case 403: return "Forbidden";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 503: return "Service Unavailable";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

static void send_body(h2o_req_t *req, int status, const char *type, const char *body,
                      size_t len)
{
    req->res.status = status;
    req->res.reason = reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type,
                   strlen(type));
    /* API answers change as runs grow; never let a cache keep one. */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
}

typedef struct owned_body {
    char *body;
} owned_body;

static void owned_dispose(void *p)
{
    vp_free(((owned_body *)p)->body);
}

/* send_reply sends r and takes its body: the request's pool frees it once
 * h2o is done, so a 200 MB export is not copied (h2o_send_inline would). */
static void send_reply(h2o_req_t *req, vps_reply *r)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    static h2o_generator_t generator = {NULL, NULL};
    if (!r->body) {
        send_body(req, r->status ? r->status : 500, json_ctype, oom, sizeof(oom) - 1);
        return;
    }
    const char *type = r->content_type ? r->content_type : json_ctype;
    owned_body *ob = h2o_mem_alloc_shared(&req->pool, sizeof(*ob), owned_dispose);
    ob->body = r->body;
    r->body = NULL;
    req->res.status = r->status;
    req->res.reason = reason(r->status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    if (r->status == 204) {
        req->res.content_length = SIZE_MAX;
        h2o_start_response(req, &generator);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    req->res.content_length = r->len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type,
                   strlen(type));
    if (r->disposition[0]) {
        h2o_iovec_t v = h2o_strdup(&req->pool, r->disposition, SIZE_MAX);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_DISPOSITION, NULL,
                       v.base, v.len);
    }
    h2o_iovec_t buf = h2o_iovec_init(ob->body, r->len);
    h2o_start_response(req, &generator);
    if (h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD")))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

static int send_error(h2o_req_t *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int send_error(h2o_req_t *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vps_reply r = {0};
    vps_reply_error(&r, status, "%s", msg);
    send_reply(req, &r);
    vps_reply_fini(&r);
    return 0;
}

static int send_405(h2o_req_t *req, const char *allow)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    return send_error(req, 405, "method not allowed; use %s", allow);
}

/* ---- jobs ---- */

static void job_free(job *j)
{
    vps_reply_fini(&j->reply);
    vp_free(j->copy);
    vp_free(j->bearer);
    vp_free(j->s1);
    vp_free(j->s2);
    vp_free(j->s3);
    vp_free(j);
}

static void ref_dispose(void *p)
{
    job_ref *ref = p;
    if (ref->job) {
        ref->job->req = NULL;
        ref->job->ref = NULL;
    }
}

static void run_job(job *j)
{
    vps_http *h = j->http;
    switch (j->kind) {
    case JOB_BATCH:
        vps_ingest_batch(h->store, h->token, j->bearer, j->bearer_len, j->body, j->body_len,
                         &j->reply);
        break;
    case JOB_UPLOAD: {
        vps_upload_meta m = {j->s1, j->s2, j->s3};
        vps_ingest_upload(h->store, &m, j->body, j->body_len, &j->reply);
        break;
    }
    case JOB_RUNS:
        vps_query_runs(h->store, &j->runs, &j->reply);
        break;
    case JOB_RUN:
        vps_query_run(h->store, j->id, &j->reply);
        break;
    case JOB_COLLAPSED:
        vps_query_collapsed(h->store, j->id, &j->reply);
        break;
    case JOB_FUNCTIONS:
        vps_query_functions(h->store, h->cache, j->id, &j->win, &j->reply);
        break;
    case JOB_MEMORY:
        vps_query_memory(h->store, h->cache, j->id, &j->mem, &j->reply);
        break;
    case JOB_TREE:
        vps_query_tree(h->store, h->cache, j->id, &j->win, j->max_nodes, &j->reply);
        break;
    case JOB_GROWTH:
        vps_query_growth(h->store, h->cache, j->id, &j->win, j->max_nodes, &j->reply);
        break;
    case JOB_DIFF:
        vps_query_diff(h->store, h->cache, j->id, &j->win, j->id2, &j->win2, j->max_nodes,
                       &j->reply);
        break;
    case JOB_SPEEDSCOPE:
        vps_query_speedscope(h->store, h->cache, j->id, &j->reply);
        break;
    case JOB_DELETE:
        vps_query_delete(h->store, h->cache, j->id, &j->reply);
        break;
    case JOB_SUBMIT:
        vps_submit(h->store, j->body, j->body_len, &j->reply);
        break;
    case JOB_WARM:
        vps_query_warm(h->store, h->cache, j->id);
        break;
    }
}

static void work_cb(uv_work_t *w)
{
    job *j = w->data;
    run_job(j);
    if (j->reply.retry) {
        /* Once: the answer failed on a damaged summary file, which the
         * cache has dropped, so this time the run is read from the store. */
        vps_reply_fini(&j->reply);
        j->reply.status = 0;
        j->reply.content_type = NULL;
        j->reply.retry = 0;
        run_job(j);
    }
}

static void warm(vps_http *h, const char *id);

static void after_work_cb(uv_work_t *w, int status)
{
    job *j = w->data;
    vps_http *h = j->http;
    (void)status; /* jobs are never cancelled */
    if ((j->kind == JOB_UPLOAD || j->kind == JOB_SUBMIT || j->kind == JOB_BATCH) &&
        j->reply.run_id[0])
        warm(h, j->reply.run_id);
    if (j->req) {
        h2o_req_t *req = j->req;
        j->ref->job = NULL; /* unhook before h2o may dispose the pool */
        j->ref = NULL;
        send_reply(req, &j->reply);
    }
    job_free(j);
    h->jobs--;
    vp_metric_sub(&vps_metrics[VPS_M_JOBS], 1);
    if (h->stopping && h->jobs == 0 && h->drained)
        h->drained(h->drained_arg);
}

/* warm reads a run that was just uploaded (or closed by its last batch)
 * into the query cache, and so into its summary file, in the
 * background: whoever uploaded it is about to look at it, and a first
 * query of a 10-million-sample run would otherwise wait seconds for it.
 * Skipped when the server is busy or stopping. */
static void warm(vps_http *h, const char *id)
{
    if (h->stopping || h->jobs + 1 >= VP_MAX_SERVER_JOBS)
        return;
    job *j = vp_calloc(1, sizeof(*j));
    if (!j)
        return;
    j->http = h;
    j->kind = JOB_WARM;
    j->work.data = j;
    memcpy(j->id, id, sizeof(j->id));
    if (uv_queue_work(h->loop, &j->work, work_cb, after_work_cb) != 0) {
        job_free(j);
        return;
    }
    h->jobs++;
    vp_metric_add(&vps_metrics[VPS_M_JOBS], 1);
}

/* new_job makes a job bound to req, or answers 503/500 itself (NULL). */
static job *new_job(vps_http *h, h2o_req_t *req, job_kind kind)
{
    if (h->stopping) {
        /* The store closes once the jobs in flight are done; no new ones. */
        send_error(req, 503, "shutting down");
        return NULL;
    }
    if (h->jobs >= VP_MAX_SERVER_JOBS) {
        VPS_COUNT(VPS_M_BUSY);
        send_error(req, 503, "busy: %u requests in flight, retry later", h->jobs);
        return NULL;
    }
    job *j = vp_calloc(1, sizeof(*j));
    if (!j) {
        send_error(req, 500, "out of memory");
        return NULL;
    }
    j->http = h;
    j->req = req;
    j->kind = kind;
    j->work.data = j;
    return j;
}

static int start_job(vps_http *h, h2o_req_t *req, job *j)
{
    /* h2o aborts if the pool cannot grow; that is its OOM policy. */
    job_ref *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), ref_dispose);
    ref->job = j;
    j->ref = ref;
    int rc = uv_queue_work(h->loop, &j->work, work_cb, after_work_cb);
    if (rc != 0) {
        ref->job = NULL;
        job_free(j);
        return send_error(req, 500, "cannot queue work: %s", uv_strerror(rc));
    }
    h->jobs++;
    vp_metric_add(&vps_metrics[VPS_M_JOBS], 1);
    return 0;
}

/* ---- query strings ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* query_get finds key in req's query string and returns its decoded value
 * as a vp_malloc'd string in *out (NULL if absent). VP_EINVAL for a value
 * with a NUL or a broken %-escape. */
static int query_get(h2o_req_t *req, const char *key, char **out)
{
    *out = NULL;
    if (req->query_at == SIZE_MAX)
        return VP_OK;
    const char *q = req->path.base + req->query_at + 1;
    const char *end = req->path.base + req->path.len;
    size_t klen = strlen(key);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - q) == klen && memcmp(q, key, klen) == 0) {
            const char *v = eq ? eq + 1 : pe;
            char *s = vp_malloc((size_t)(pe - v) + 1);
            if (!s)
                return VP_ENOMEM;
            size_t n = 0;
            for (const char *p = v; p < pe; p++) {
                int c = (unsigned char)*p;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    if (pe - p < 3 || hexval(p[1]) < 0 || hexval(p[2]) < 0) {
                        vp_free(s);
                        return VP_EINVAL;
                    }
                    c = hexval(p[1]) << 4 | hexval(p[2]);
                    p += 2;
                }
                if (c == 0) {
                    vp_free(s);
                    return VP_EINVAL;
                }
                s[n++] = (char)c;
            }
            s[n] = '\0';
            vp_free(*out); /* the last occurrence wins */
            *out = s;
        }
        q = pe + 1;
    }
    return VP_OK;
}

/* query_u32 parses key as a whole number in [min, max] (def if absent). */
static int query_u32(h2o_req_t *req, const char *key, uint32_t min, uint32_t max, uint32_t def,
                     uint32_t *out)
{
    char *s = NULL;
    int rc = query_get(req, key, &s);
    if (rc != VP_OK)
        return rc;
    if (!s) {
        *out = def;
        return VP_OK;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    rc = (!*s || *end || errno || s[0] == '-' || v < min || v > max) ? VP_EINVAL : VP_OK;
    vp_free(s);
    if (rc == VP_OK)
        *out = (uint32_t)v;
    return rc;
}

/* query_double parses key as a finite number; *has says if it was given. */
static int query_double(h2o_req_t *req, const char *key, double *out, int *has)
{
    char *s = NULL;
    int rc = query_get(req, key, &s);
    *has = 0;
    if (rc != VP_OK || !s)
        return rc;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    rc = (!*s || *end || errno || !isfinite(v)) ? VP_EINVAL : VP_OK;
    vp_free(s);
    if (rc == VP_OK) {
        *out = v;
        *has = 1;
    }
    return rc;
}

/* ---- routes ---- */

static int is_method(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static int is_get(h2o_req_t *req)
{
    return is_method(req, "GET") || is_method(req, "HEAD");
}

static int path_is(h2o_iovec_t p, const char *s)
{
    return h2o_memis(p.base, p.len, s, strlen(s));
}

static int path_starts(h2o_iovec_t p, const char *s)
{
    size_t n = strlen(s);
    return p.len >= n && memcmp(p.base, s, n) == 0;
}

static int on_batch(vps_http *h, h2o_req_t *req)
{
    if (!is_method(req, "POST"))
        return send_405(req, "POST");
    if (req->entity.len > VP_MAX_HTTP_BATCH_BODY) {
        VPS_COUNT(VPS_M_BATCH_MALFORMED);
        return send_error(req, 413, "batch body over %u bytes", VP_MAX_HTTP_BATCH_BODY);
    }
    job *j = new_job(h, req, JOB_BATCH);
    if (!j)
        return 0;
    j->copy = vp_malloc(req->entity.len ? req->entity.len : 1);
    ssize_t auth = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (auth >= 0) {
        h2o_iovec_t v = req->headers.entries[auth].value;
        if (v.len > 7 && h2o_lcstris(v.base, 7, H2O_STRLIT("bearer "))) {
            j->bearer = vp_strndup(v.base + 7, v.len - 7);
            j->bearer_len = v.len - 7;
            if (!j->bearer)
                goto oom;
        }
    }
    if (!j->copy)
        goto oom;
    if (req->entity.len)
        memcpy(j->copy, req->entity.base, req->entity.len);
    j->body = j->copy;
    j->body_len = req->entity.len;
    return start_job(h, req, j);
oom:
    job_free(j);
    return send_error(req, 500, "out of memory");
}

static int on_upload(vps_http *h, h2o_req_t *req)
{
    if (!is_method(req, "POST"))
        return send_405(req, "POST");
    if (req->entity.len > VP_MAX_UPLOAD_BYTES)
        return send_error(req, 413, "upload over %u bytes", VP_MAX_UPLOAD_BYTES);
    job *j = new_job(h, req, JOB_UPLOAD);
    if (!j)
        return 0;
    int rc;
    if ((rc = query_get(req, "project", &j->s1)) != VP_OK ||
        (rc = query_get(req, "function", &j->s2)) != VP_OK ||
        (rc = query_get(req, "host", &j->s3)) != VP_OK) {
        job_free(j);
        if (rc == VP_ENOMEM)
            return send_error(req, 500, "out of memory");
        VPS_COUNT(VPS_M_UPLOAD_REFUSED);
        return send_error(req, 400, "bad query string");
    }
    j->body = (const uint8_t *)(req->entity.base ? req->entity.base : "");
    j->body_len = req->entity.len;
    return start_job(h, req, j);
}

/* ---- tokens ---- */

/* token_eq compares in time that depends on the expected token's length
 * only, like vp_batch_token_ok. */
static int token_eq(const char *want, const char *got, size_t n)
{
    size_t t = strlen(want);
    unsigned diff = (unsigned)(t ^ n);
    for (size_t i = 0; i < t; i++)
        diff |= (unsigned)(want[i] ^ (i < n ? got[i] : 0));
    return diff == 0;
}

/* bearer returns the request's "Authorization: Bearer" value, or 0. */
static int bearer(h2o_req_t *req, h2o_iovec_t *out)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len <= 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer ")))
        return 0;
    *out = h2o_iovec_init(v.base + 7, v.len - 7);
    return 1;
}

/* pct_decode decodes s[0..n) into out (cap bytes); -1 if it does not fit
 * or is malformed. */
static ssize_t pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return -1;
            c = hexval(s[i + 1]) << 4 | hexval(s[i + 2]);
            i += 2;
        }
        if (k == cap)
            return -1;
        out[k++] = (char)c;
    }
    return (ssize_t)k;
}

/* cookie_token finds the vmpv_token cookie and says whether it is want. */
static int cookie_ok(h2o_req_t *req, const char *want)
{
    static const char name[] = "vmpv_token=";
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) >= 0;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        size_t p = 0;
        while (p < v.len) {
            while (p < v.len && (v.base[p] == ' ' || v.base[p] == ';'))
                p++;
            size_t e = p;
            while (e < v.len && v.base[e] != ';')
                e++;
            if (e - p >= sizeof(name) - 1 && memcmp(v.base + p, name, sizeof(name) - 1) == 0) {
                char buf[VP_MAX_TOKEN_LEN];
                const char *val = v.base + p + sizeof(name) - 1;
                ssize_t n = pct_decode(val, (size_t)(v.base + e - val), buf, sizeof(buf));
                if (n >= 0 && token_eq(want, buf, (size_t)n))
                    return 1;
            }
            p = e;
        }
    }
    return 0;
}

/* read_ok says whether req may read the API: no read token is set, or it
 * carries the read (or admin) token as a Bearer header or the cookie. */
static int read_ok(vps_http *h, h2o_req_t *req)
{
    if (!*h->read_token)
        return 1;
    h2o_iovec_t b;
    if (bearer(req, &b) && (token_eq(h->read_token, b.base, b.len) ||
                            (*h->admin_token && token_eq(h->admin_token, b.base, b.len))))
        return 1;
    return cookie_ok(req, h->read_token) || (*h->admin_token && cookie_ok(req, h->admin_token));
}

static int send_unauthorized(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                   H2O_STRLIT("Bearer realm=\"vmpv\""));
    return send_error(req, 401, "this server needs its read token: Authorization: Bearer, "
                                "or open /login?token=...");
}

/* on_login sets the cookie the UI's requests carry, then goes to /. */
static int on_login(vps_http *h, h2o_req_t *req)
{
    if (!is_get(req))
        return send_405(req, "GET");
    char *tok = NULL;
    int rc = query_get(req, "token", &tok);
    if (rc != VP_OK)
        return send_error(req, rc == VP_ENOMEM ? 500 : 400, "bad query string");
    if (*h->read_token) {
        size_t n = tok ? strlen(tok) : 0;
        int ok = tok && (token_eq(h->read_token, tok, n) ||
                         (*h->admin_token && token_eq(h->admin_token, tok, n)));
        if (!ok) {
            vp_free(tok);
            return send_error(req, 403, "wrong token");
        }
        /* The value is percent-encoded: a token may hold any byte. */
        static const char hex[] = "0123456789ABCDEF";
        size_t cap = 16 + n * 3 + 64;
        char *c = h2o_mem_alloc_pool(&req->pool, cap);
        size_t k = (size_t)snprintf(c, cap, "vmpv_token=");
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)tok[i];
            if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '-' || ch == '.' || ch == '_' || ch == '~') {
                c[k++] = (char)ch;
            } else {
                c[k++] = '%', c[k++] = hex[ch >> 4], c[k++] = hex[ch & 15];
            }
        }
        k += (size_t)snprintf(c + k, cap - k, "; Path=/; HttpOnly; SameSite=Lax");
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, c, k);
    }
    vp_free(tok);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, H2O_STRLIT("/"));
    send_body(req, 302, "text/plain; charset=utf-8", "", 0);
    return 0;
}

/* ---- API routes ---- */

static int bad_query(h2o_req_t *req, int rc, const char *what)
{
    if (rc == VP_ENOMEM)
        return send_error(req, 500, "out of memory");
    return send_error(req, 400, "bad query: %s", what);
}

/* query_window reads from/to (or the given names) into w. */
static int query_window(h2o_req_t *req, const char *from, const char *to, vps_window *w)
{
    int rc;
    memset(w, 0, sizeof(*w));
    if ((rc = query_double(req, from, &w->from, &w->has_from)) != VP_OK ||
        (rc = query_double(req, to, &w->to, &w->has_to)) != VP_OK)
        return rc;
    if (w->has_from && w->has_to && w->to < w->from)
        return VP_EINVAL;
    return VP_OK;
}

/* query_time reads a point in time (ISO 8601 or Unix seconds). */
static int query_time(h2o_req_t *req, const char *key, int64_t *out, int *has)
{
    char *v = NULL;
    int rc = query_get(req, key, &v);
    *has = 0;
    if (rc != VP_OK || !v)
        return rc;
    rc = vps_parse_time(v, strlen(v), out);
    vp_free(v);
    if (rc == VP_OK)
        *has = 1;
    return rc;
}

static const char *const sort_names[] = {
    [VPS_SORT_START] = "start_time", [VPS_SORT_DURATION] = "duration",
    [VPS_SORT_PEAK] = "peak_rss",    [VPS_SORT_SAMPLES] = "samples",
    [VPS_SORT_PROJECT] = "project",  [VPS_SORT_FUNCTION] = "function",
};

static int on_runs(vps_http *h, h2o_req_t *req)
{
    job *j = new_job(h, req, JOB_RUNS);
    if (!j)
        return 0;
    uint32_t limit = 0, offset = 0;
    char *sort = NULL, *order = NULL;
    vps_runs_args *a = &j->runs;
    int rc;
    if ((rc = query_get(req, "project", &j->s1)) != VP_OK ||
        (rc = query_get(req, "q", &j->s2)) != VP_OK ||
        (rc = query_get(req, "function", &j->s3)) != VP_OK ||
        (rc = query_u32(req, "limit", 1, VP_MAX_RUNS_PAGE, 100, &limit)) != VP_OK ||
        (rc = query_u32(req, "offset", 0, INT32_MAX, 0, &offset)) != VP_OK ||
        (rc = query_time(req, "since", &a->since_us, &a->has_since)) != VP_OK ||
        (rc = query_time(req, "until", &a->until_us, &a->has_until)) != VP_OK ||
        (rc = query_get(req, "sort", &sort)) != VP_OK ||
        (rc = query_get(req, "order", &order)) != VP_OK)
        goto bad;
    a->sort = VPS_SORT_START;
    if (sort) {
        rc = VP_EINVAL;
        for (size_t i = 0; i < sizeof(sort_names) / sizeof(sort_names[0]); i++) {
            if (strcmp(sort, sort_names[i]) == 0)
                a->sort = (int)i, rc = VP_OK;
        }
        if (rc != VP_OK)
            goto bad;
    }
    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        rc = VP_EINVAL;
        goto bad;
    }
    a->asc = order && strcmp(order, "asc") == 0;
    vp_free(sort);
    vp_free(order);
    a->f = (vps_run_filter){.project = j->s1, .q = j->s2, .limit = limit, .offset = offset};
    a->function = j->s3;
    return start_job(h, req, j);
bad:
    vp_free(sort);
    vp_free(order);
    job_free(j);
    return bad_query(req, rc,
                     "limit is 1..1000, offset a whole number, since/until ISO 8601 or Unix "
                     "seconds, sort start_time|duration|peak_rss|samples|project|function, "
                     "order asc|desc");
}

/* on_run routes /api/runs/{id}[/{view}]; rest points after "/api/runs/". */
static int on_run(vps_http *h, h2o_req_t *req, const char *rest, size_t len)
{
    uint8_t raw[VP_RUN_ID_LEN];
    const char *slash = memchr(rest, '/', len);
    size_t idlen = slash ? (size_t)(slash - rest) : len;
    h2o_iovec_t view = slash ? h2o_iovec_init(slash + 1, len - idlen - 1) : h2o_iovec_init("", 0);
    job_kind kind;
    if (!slash)
        kind = is_method(req, "DELETE") ? JOB_DELETE : JOB_RUN;
    else if (path_is(view, "collapsed"))
        kind = JOB_COLLAPSED;
    else if (path_is(view, "functions"))
        kind = JOB_FUNCTIONS;
    else if (path_is(view, "memory"))
        kind = JOB_MEMORY;
    else if (path_is(view, "tree"))
        kind = JOB_TREE;
    else if (path_is(view, "growth"))
        kind = JOB_GROWTH;
    else if (path_is(view, "speedscope"))
        kind = JOB_SPEEDSCOPE;
    else
        return send_error(req, 404, "no such API path");
    if (kind == JOB_DELETE) {
        /* The admin token first, so a stranger learns nothing of the ids. */
        h2o_iovec_t b;
        if (!*h->admin_token)
            return send_error(req, 403, "deleting runs is off: the server has no admin token");
        if (!bearer(req, &b) || !token_eq(h->admin_token, b.base, b.len))
            return send_error(req, 403, "deleting a run needs the admin token");
    } else {
        if (!is_get(req))
            return send_405(req, slash ? "GET" : "GET, DELETE");
        if (!read_ok(h, req))
            return send_unauthorized(req);
    }
    if (vp_run_id_parse(rest, idlen, raw) != VP_OK)
        return send_error(req, 404, "no run %.*s", (int)(idlen > 64 ? 64 : idlen), rest);
    vps_memory_args mem = {0};
    vps_window win = {0};
    uint32_t max_nodes = VP_TREE_NODES_DEFAULT;
    int rc = VP_OK;
    if (kind == JOB_MEMORY &&
        ((rc = query_u32(req, "buckets", 1, VP_MAX_MEMORY_BUCKETS, 800, &mem.buckets)) != VP_OK ||
         (rc = query_window(req, "from", "to", &mem.w)) != VP_OK))
        return bad_query(req, rc, "buckets is 1..5000, from and to are seconds, from <= to");
    if ((kind == JOB_FUNCTIONS || kind == JOB_TREE || kind == JOB_GROWTH) &&
        ((rc = query_window(req, "from", "to", &win)) != VP_OK ||
         (kind != JOB_FUNCTIONS &&
          (rc = query_u32(req, "max_nodes", 1, VP_MAX_TREE_NODES, VP_TREE_NODES_DEFAULT,
                          &max_nodes)) != VP_OK)))
        return bad_query(req, rc, "from and to are seconds, from <= to; max_nodes is 1..200000");
    job *j = new_job(h, req, kind);
    if (!j)
        return 0;
    vp_run_id_hex(raw, j->id); /* lowercase, as stored */
    j->mem = mem;
    j->win = win;
    j->max_nodes = max_nodes;
    return start_job(h, req, j);
}

/* query_run_id reads a run id parameter; VP_EINVAL if absent or bad. */
static int query_run_id(h2o_req_t *req, const char *key, char out[33])
{
    char *v = NULL;
    uint8_t raw[VP_RUN_ID_LEN];
    int rc = query_get(req, key, &v);
    if (rc != VP_OK)
        return rc;
    rc = v && vp_run_id_parse(v, strlen(v), raw) == VP_OK ? VP_OK : VP_EINVAL;
    vp_free(v);
    if (rc == VP_OK)
        vp_run_id_hex(raw, out);
    return rc;
}

static int on_diff(vps_http *h, h2o_req_t *req)
{
    if (!is_get(req))
        return send_405(req, "GET");
    if (!read_ok(h, req))
        return send_unauthorized(req);
    char a[33], b[33];
    vps_window wa, wb;
    uint32_t max_nodes;
    int rc;
    if ((rc = query_run_id(req, "a", a)) != VP_OK || (rc = query_run_id(req, "b", b)) != VP_OK ||
        (rc = query_window(req, "a_from", "a_to", &wa)) != VP_OK ||
        (rc = query_window(req, "b_from", "b_to", &wb)) != VP_OK ||
        (rc = query_u32(req, "max_nodes", 1, VP_MAX_TREE_NODES, VP_TREE_NODES_DEFAULT,
                        &max_nodes)) != VP_OK)
        return bad_query(req, rc, "a and b are run ids (32 hex digits); a_from, a_to, b_from, "
                                  "b_to are seconds; max_nodes is 1..200000");
    job *j = new_job(h, req, JOB_DIFF);
    if (!j)
        return 0;
    memcpy(j->id, a, sizeof(a));
    memcpy(j->id2, b, sizeof(b));
    j->win = wa;
    j->win2 = wb;
    j->max_nodes = max_nodes;
    return start_job(h, req, j);
}

static int on_submit(vps_http *h, h2o_req_t *req)
{
    if (!is_method(req, "POST"))
        return send_405(req, "POST");
    if (req->entity.len > VP_MAX_SUBMIT_BODY)
        return send_error(req, 413, "submit body over %u bytes", VP_MAX_SUBMIT_BODY);
    job *j = new_job(h, req, JOB_SUBMIT);
    if (!j)
        return 0;
    /* Read in place, like uploads: see the file comment. */
    j->body = (const uint8_t *)(req->entity.base ? req->entity.base : "");
    j->body_len = req->entity.len;
    return start_job(h, req, j);
}

static int on_api(vps_http *h, h2o_req_t *req)
{
    h2o_iovec_t p = req->path_normalized;
    if (path_is(p, "/api/v1/batches"))
        return on_batch(h, req);
    if (path_is(p, "/api/v1/upload"))
        return on_upload(h, req);
    if (path_is(p, "/api/runs")) {
        if (!is_get(req))
            return send_405(req, "GET");
        if (!read_ok(h, req))
            return send_unauthorized(req);
        return on_runs(h, req);
    }
    if (path_starts(p, "/api/runs/") && p.len > 10)
        return on_run(h, req, p.base + 10, p.len - 10);
    if (path_is(p, "/api/diff"))
        return on_diff(h, req);
    if (is_get(req) && !read_ok(h, req))
        return send_unauthorized(req);
    return send_error(req, 404, "no such API path");
}

/* ---- static files ---- */

static const char not_built[] =
    "<!doctype html><meta charset=utf-8><title>vmprof-viewer</title>"
    "<p>The web UI is not built (no index.html in the --web directory). "
    "The API still works: <a href=\"/api/runs\">/api/runs</a>.</p>\n";

static int send_file(vps_http *h, h2o_req_t *req, const char *path, int no_cache)
{
    h2o_iovec_t ext = h2o_get_filext(path, strlen(path));
    h2o_mimemap_type_t *type = h2o_mimemap_get_type_by_extension(h->config.mimemap, ext);
    h2o_iovec_t mime = type && type->type == H2O_MIMEMAP_TYPE_MIMETYPE
                           ? type->data.mimetype
                           : h2o_iovec_init(H2O_STRLIT("application/octet-stream"));
    if (no_cache)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                       H2O_STRLIT("no-cache"));
    /* Small files from local disk: h2o reads them on the loop thread. */
    if (h2o_file_send(req, 200, "OK", path, mime, 0) != 0)
        return send_error(req, 404, "not found");
    return 0;
}

/* safe_path says whether a normalized URL path may name a file under the
 * web root: printable, no backslash, no segment starting with a dot. */
static int safe_path(h2o_iovec_t p)
{
    if (p.len == 0 || p.len > 1024 || p.base[0] != '/')
        return 0;
    for (size_t i = 0; i < p.len; i++) {
        unsigned char c = (unsigned char)p.base[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return 0;
        if (c == '/' && i + 1 < p.len && p.base[i + 1] == '.')
            return 0;
    }
    return 1;
}

static int on_static(vps_http *h, h2o_req_t *req)
{
    h2o_iovec_t p = req->path_normalized;
    int page = path_is(p, "/") || path_is(p, "/index.html") || path_is(p, "/runs") ||
               path_starts(p, "/runs/");
    if (!is_get(req))
        return send_405(req, "GET");
    if (!h->web_root) {
        if (page) {
            send_body(req, 200, "text/html; charset=utf-8", not_built, sizeof(not_built) - 1);
            return 0;
        }
        return send_error(req, 404, "not found");
    }
    if (page)
        return send_file(h, req, h->index_path, 1);
    if (!safe_path(p))
        return send_error(req, 404, "not found");
    /* realpath resolves symlinks, so the prefix check below also keeps a
     * link inside the web directory from pointing outside it. */
    size_t rl = strlen(h->web_root);
    char *want = h2o_mem_alloc_pool(&req->pool, rl + p.len + 1);
    memcpy(want, h->web_root, rl);
    memcpy(want + rl, p.base, p.len);
    want[rl + p.len] = '\0';
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(want, real) || strncmp(real, h->web_root, rl) != 0 || real[rl] != '/' ||
        stat(real, &st) != 0 || !S_ISREG(st.st_mode))
        return send_error(req, 404, "not found");
    return send_file(h, req, real, 0);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    vps_http *h = ((handler *)self)->http;
    h2o_iovec_t p = req->path_normalized;
    VPS_COUNT(VPS_M_REQUESTS);
    if (path_is(p, "/healthz")) {
        if (!is_get(req))
            return send_405(req, "GET");
        send_body(req, 200, "text/plain; charset=utf-8", "ok", 2);
        return 0;
    }
    if (path_is(p, "/metrics")) {
        if (!is_get(req))
            return send_405(req, "GET");
        char buf[8192];
        size_t n = vp_metrics_render(vps_metrics, VPS_M_COUNT, buf, sizeof(buf));
        send_body(req, 200, "text/plain; version=0.0.4", buf, n);
        return 0;
    }
    if (path_is(p, "/api") || path_starts(p, "/api/"))
        return on_api(h, req);
    if (path_is(p, "/submit/") || path_is(p, "/submit"))
        return on_submit(h, req);
    if (path_is(p, "/login"))
        return on_login(h, req);
    return on_static(h, req);
}

/* ---- listening ---- */

static void on_conn_close(uv_handle_t *handle)
{
    vp_free(handle);
}

static void accept_one(vps_http *h);

static void on_retry(uv_timer_t *t)
{
    accept_one(t->data);
}

/* accept_one takes the connection libuv has ready. libuv stops watching
 * the listener until uv_accept is called, so when there is no memory for
 * the handle the accept is retried shortly instead of dropped: dropping it
 * would leave the server deaf for good. */
static void accept_one(vps_http *h)
{
    if (!h->listening)
        return;
    uv_tcp_t *conn = vp_malloc(sizeof(*conn));
    if (!conn) {
        vp_warn("accept: out of memory; retrying in 100 ms");
        uv_timer_start(&h->retry, on_retry, 100, 0);
        return;
    }
    uv_tcp_init(h->loop, conn);
    if (uv_accept((uv_stream_t *)&h->listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, on_conn_close);
        return;
    }
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_conn_close);
    h2o_accept(&h->accept_ctx, sock);
}

static void on_accept(uv_stream_t *listener, int status)
{
    if (status != 0) {
        vp_warn("accept: %s", uv_strerror(status));
        return;
    }
    accept_one(listener->data);
}

static int listen_on(vps_http *h, const char *spec, uint16_t *port, char *url, size_t url_cap,
                     char *err, size_t errlen)
{
    char host[256], portstr[8];
    uint16_t want;
    if (vp_net_split_hostport(spec, host, sizeof(host), &want) != VP_OK) {
        snprintf(err, errlen, "--listen must be HOST:PORT, not '%s'", spec);
        return VP_EINVAL;
    }
    snprintf(portstr, sizeof(portstr), "%u", want);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, portstr, &hints, &ai);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return VP_EINVAL;
    }
    uv_tcp_init(h->loop, &h->listener);
    h->listener.data = h;
    uv_timer_init(h->loop, &h->retry);
    h->retry.data = h;
    h->listening = 1;
    int rc = uv_tcp_bind(&h->listener, ai->ai_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 128, on_accept);
    freeaddrinfo(ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", spec, uv_strerror(rc));
        return VP_EIO;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &sl);
    char shown[64];
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        *port = ntohs(a->sin6_port);
        uv_ip6_name(a, shown, sizeof(shown));
        /* A wildcard address is not one to connect to; loopback is. */
        snprintf(url, url_cap, "http://[%s]:%u",
                 IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) ? "::1" : shown, *port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        *port = ntohs(a->sin_port);
        uv_ip4_name(a, shown, sizeof(shown));
        snprintf(url, url_cap, "http://%s:%u",
                 a->sin_addr.s_addr == htonl(INADDR_ANY) ? "127.0.0.1" : shown, *port);
    }
    return VP_OK;
}

static int find_web(vps_http *h, const char *web)
{
    char real[PATH_MAX], index[PATH_MAX + 16];
    struct stat st;
    if (!web || !*web || !realpath(web, real)) {
        vp_warn("web UI directory %s not found; serving the API only", web ? web : "(none)");
        return VP_OK;
    }
    snprintf(index, sizeof(index), "%s/index.html", real);
    if (stat(index, &st) != 0 || !S_ISREG(st.st_mode)) {
        vp_warn("%s has no index.html; serving the API only", real);
        return VP_OK;
    }
    h->web_root = vp_strndup(real, strlen(real));
    h->index_path = vp_strndup(index, strlen(index));
    return h->web_root && h->index_path ? VP_OK : VP_ENOMEM;
}

/* free_fields frees what vps_http_start allocates into h besides the h2o
 * context and configuration (the cache, tokens, web paths); h itself and
 * the h2o parts stay with the caller. */
static void free_fields(vps_http *h)
{
    vps_rdcache_free(h->cache);
    vp_free(h->token);
    vp_free(h->admin_token);
    vp_free(h->read_token);
    vp_free(h->web_root);
    vp_free(h->index_path);
}

int vps_http_start(uv_loop_t *loop, const vps_http_opts *o, vps_http **out, uint16_t *port,
                   char *url, size_t url_cap, char *err, size_t errlen)
{
    vps_http *h = vp_calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return VP_ENOMEM;
    }
    h->loop = loop;
    h->store = o->store;
    h->token = vp_strndup(o->token ? o->token : "", o->token ? strlen(o->token) : 0);
    /* Until main.c has --admin-token and --read-token, the environment. */
    const char *admin = o->admin_token ? o->admin_token : getenv("VMPV_ADMIN_TOKEN");
    const char *reader = o->read_token ? o->read_token : getenv("VMPV_READ_TOKEN");
    admin = admin ? admin : "";
    reader = reader ? reader : "";
    h->admin_token = vp_strndup(admin, strlen(admin));
    h->read_token = vp_strndup(reader, strlen(reader));
    int rc = h->token && h->admin_token && h->read_token ? VP_OK : VP_ENOMEM;
    /* $VMPV_QUERY_CACHE_MB lowers (or raises) the analysis cache; 0 turns
     * it off, and every query then streams its run from the store. */
    size_t cache_bytes = VP_QUERY_CACHE_BYTES;
    const char *mb = getenv("VMPV_QUERY_CACHE_MB");
    if (mb && *mb) {
        char *end = NULL;
        unsigned long long v = strtoull(mb, &end, 10);
        if (*end || v > (1ull << 20))
            rc = VP_EINVAL;
        else
            cache_bytes = (size_t)v << 20;
    }
    if (rc == VP_OK)
        rc = vps_rdcache_new(cache_bytes, VP_QUERY_CACHE_RUNS, cache_bytes ? o->summaries : NULL,
                             &h->cache);
    if (rc == VP_OK && o->summary_max_bytes)
        vps_rdcache_set_summary_max(h->cache, o->summary_max_bytes);
    if (rc == VP_OK)
        rc = find_web(h, o->web);
    if (rc == VP_OK && (strlen(admin) > VP_MAX_TOKEN_LEN || strlen(reader) > VP_MAX_TOKEN_LEN))
        rc = VP_EINVAL;
    if (rc != VP_OK) {
        if (rc == VP_EINVAL)
            snprintf(err, errlen, "tokens are at most %u bytes, VMPV_QUERY_CACHE_MB a number "
                     "of MiB", VP_MAX_TOKEN_LEN);
        else
            snprintf(err, errlen, "out of memory");
        free_fields(h);
        vp_free(h);
        return rc;
    }

    h2o_config_init(&h->config);
    h->config.max_request_entity_size = VP_MAX_UPLOAD_BYTES;
    h->config.http1.upgrade_to_http2 = 0; /* see the file comment */
    h2o_hostconf_t *host =
        h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    handler *hd = (handler *)h2o_create_handler(path, sizeof(*hd));
    hd->super.on_req = on_req;
    hd->http = h;
    h2o_context_init(&h->ctx, loop, &h->config);
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->config.hosts;

    if ((rc = listen_on(h, o->listen, port, url, url_cap, err, errlen)) != VP_OK) {
        /* No connection exists yet, so unlike at shutdown the context can
         * be disposed; it runs the loop once, which finishes the close. */
        if (h->listening) {
            uv_close((uv_handle_t *)&h->listener, NULL);
            uv_close((uv_handle_t *)&h->retry, NULL);
        }
        h2o_context_dispose(&h->ctx);
        h2o_config_dispose(&h->config);
        free_fields(h);
        vp_free(h);
        return rc;
    }
    vp_info("DELETE /api/runs/{id} %s; reading the API %s; analysis cache %zu MiB",
            *h->admin_token ? "needs the admin token" : "is off (no admin token)",
            *h->read_token ? "needs the read token" : "is open", cache_bytes >> 20);
    *out = h;
    return VP_OK;
}

void vps_http_stop(vps_http *h, void (*drained)(void *arg), void *arg)
{
    h->stopping = 1;
    h->drained = drained;
    h->drained_arg = arg;
    if (h->listening) {
        uv_close((uv_handle_t *)&h->listener, NULL);
        uv_close((uv_handle_t *)&h->retry, NULL);
        h->listening = 0;
    }
    if (h->jobs == 0 && drained)
        drained(arg);
}

void vps_http_free(vps_http *h)
{
    if (!h)
        return;
    free_fields(h);
    /* h itself holds the h2o context and configuration: see http.h. */
}
