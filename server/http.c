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
 * Request bodies: uploads (up to 1 GiB) are read by the worker in place, in
 * h2o's input buffer, rather than copied. That is safe because h2o 2.2's
 * HTTP/1 connection stops reading and drops its timeout from the moment the
 * body is complete until the response is sent, so it cannot free the
 * request under the worker. HTTP/2 (where a stream reset frees the request
 * at any time) is therefore switched off: upgrade_to_http2 = 0, and there is
 * no TLS to negotiate it. Batches (<= 8 MiB) are copied anyway: cheap, and
 * one assumption fewer on the path relays depend on.
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
    char *token;
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
    char *s1, *s2, *s3; /* owned query strings: project/q, or project/function/host */
    vps_run_filter filter;
    vps_memory_args mem;
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

static void send_reply(h2o_req_t *req, const vps_reply *r)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    if (!r->body) {
        send_body(req, r->status ? r->status : 500, json_ctype, oom, sizeof(oom) - 1);
        return;
    }
    send_body(req, r->status ? r->status : 500, r->content_type ? r->content_type : json_ctype,
              r->body, r->len);
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

static void work_cb(uv_work_t *w)
{
    job *j = w->data;
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
        vps_query_runs(h->store, &j->filter, &j->reply);
        break;
    case JOB_RUN:
        vps_query_run(h->store, j->id, &j->reply);
        break;
    case JOB_COLLAPSED:
        vps_query_collapsed(h->store, j->id, &j->reply);
        break;
    case JOB_FUNCTIONS:
        vps_query_functions(h->store, j->id, &j->reply);
        break;
    case JOB_MEMORY:
        vps_query_memory(h->store, j->id, &j->mem, &j->reply);
        break;
    }
}

static void after_work_cb(uv_work_t *w, int status)
{
    job *j = w->data;
    vps_http *h = j->http;
    (void)status; /* jobs are never cancelled */
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

static int on_runs(vps_http *h, h2o_req_t *req)
{
    job *j = new_job(h, req, JOB_RUNS);
    if (!j)
        return 0;
    uint32_t limit = 0, offset = 0;
    int rc;
    if ((rc = query_get(req, "project", &j->s1)) != VP_OK ||
        (rc = query_get(req, "q", &j->s2)) != VP_OK ||
        (rc = query_u32(req, "limit", 1, VP_MAX_RUNS_PAGE, 100, &limit)) != VP_OK ||
        (rc = query_u32(req, "offset", 0, INT32_MAX, 0, &offset)) != VP_OK) {
        job_free(j);
        if (rc == VP_ENOMEM)
            return send_error(req, 500, "out of memory");
        return send_error(req, 400, "bad query: limit is 1..%u, offset a whole number",
                          VP_MAX_RUNS_PAGE);
    }
    j->filter = (vps_run_filter){.project = j->s1, .q = j->s2, .limit = limit, .offset = offset};
    return start_job(h, req, j);
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
        kind = JOB_RUN;
    else if (path_is(view, "collapsed"))
        kind = JOB_COLLAPSED;
    else if (path_is(view, "functions"))
        kind = JOB_FUNCTIONS;
    else if (path_is(view, "memory"))
        kind = JOB_MEMORY;
    else
        return send_error(req, 404, "no such API path");
    if (vp_run_id_parse(rest, idlen, raw) != VP_OK)
        return send_error(req, 404, "no run %.*s", (int)(idlen > 64 ? 64 : idlen), rest);
    if (!is_get(req))
        return send_405(req, "GET");
    vps_memory_args mem = {0};
    int rc;
    if (kind == JOB_MEMORY &&
        ((rc = query_u32(req, "buckets", 1, VP_MAX_MEMORY_BUCKETS, 800, &mem.buckets)) != VP_OK ||
         (rc = query_double(req, "from", &mem.from, &mem.has_from)) != VP_OK ||
         (rc = query_double(req, "to", &mem.to, &mem.has_to)) != VP_OK)) {
        if (rc == VP_ENOMEM)
            return send_error(req, 500, "out of memory");
        return send_error(req, 400, "bad query: buckets is 1..%u, from and to are seconds",
                          VP_MAX_MEMORY_BUCKETS);
    }
    job *j = new_job(h, req, kind);
    if (!j)
        return 0;
    vp_run_id_hex(raw, j->id); /* lowercase, as stored */
    j->mem = mem;
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
        return on_runs(h, req);
    }
    if (path_starts(p, "/api/runs/") && p.len > 10)
        return on_run(h, req, p.base + 10, p.len - 10);
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
    int rc = h->token ? find_web(h, o->web) : VP_ENOMEM;
    if (rc != VP_OK) {
        snprintf(err, errlen, "out of memory");
        vp_free(h->token);
        vp_free(h->web_root);
        vp_free(h->index_path);
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
        vp_free(h->token);
        vp_free(h->web_root);
        vp_free(h->index_path);
        vp_free(h);
        return rc;
    }
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
    vp_free(h->token);
    vp_free(h->web_root);
    vp_free(h->index_path);
    /* h itself holds the h2o context and configuration: see http.h. */
}
