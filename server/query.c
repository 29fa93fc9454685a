/*
 * query.c - the read API (see query.h): runs, collapsed stacks, functions,
 * memory, delete, and the plumbing analysis.c shares (query_int.h).
 *
 * Every per-sample query goes through a rundata (rundata.h): samples are
 * counted per call-trie node first, and only the nodes that matter are
 * expanded into functions and names.
 */
#include "query.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"
#include "query_int.h"
#include "symtab.h"
#include "u64map.h"
#include "vp_err.h"
#include "vp_mem.h"

/* ---- shared plumbing ---- */

vps_db *vps__open_run(vps_store *s, const char *id, vps_run *run, vps_reply *out)
{
    vps_db *db = NULL;
    int rc = vps_store_begin(s, VPS_READ, &db);
    if (rc != VP_OK) {
        vps_reply_error(out, 503, "storage unavailable: %s", vp_strerror(rc));
        return NULL;
    }
    rc = vps_db_get_run(db, id, run);
    if (rc == VP_OK)
        return db;
    vps_db_end(db);
    if (rc == VP_ENOTFOUND)
        vps_reply_error(out, 404, "no run %s", id);
    else
        vps_reply_error(out, 500, "storage failed: %s", vp_strerror(rc));
    return NULL;
}

void vps__reply_failure(vps_reply *out, int rc)
{
    if (rc == VP_ETOOBIG) {
        vps_reply_error(out, 413, "the run has more than %u distinct call paths to analyse",
                        VP_MAX_QUERY_NODES);
    } else if (rc == VP_ECORRUPT) {
        /* A damaged summary file (rundata.h): the cache has let it go. */
        vps_reply_error(out, 500, "the run's summary file is damaged; it is being rebuilt");
        out->retry = 1;
    } else
        vps_reply_error(out, 500, "query failed: %s", vp_strerror(rc));
}

vps_rundata *vps__acquire(vps_rdcache *c, vps_db *db, const vps_run *run, vps_reply *out)
{
    vps_rundata *rd = NULL;
    int rc = vps_rd_acquire(c, db, run, &rd);
    if (rc == VP_OK)
        return rd;
    vps_db_end(db);
    vps__reply_failure(out, rc);
    return NULL;
}

vps_rundata *vps__open_window(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w,
                              vps__win *win, vps_db **db, vps_reply *out)
{
    vps_run run;
    vps_db *d = vps__open_run(s, id, &run, out);
    if (!d)
        return NULL;
    if (vps__window(&run, w, win, out) != VP_OK) {
        vps_db_end(d);
        vps_run_fini(&run);
        return NULL;
    }
    vps_rundata *rd = vps__acquire(c, d, &run, out);
    vps_run_fini(&run);
    if (rd)
        *db = d;
    return rd;
}

static double clamp_s(double v)
{
    /* Keep seconds within what int64 nanoseconds can hold. */
    return v < -9e9 ? -9e9 : v > 9e9 ? 9e9 : v;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

int vps__window(const vps_run *run, const vps_window *w, vps__win *out, vps_reply *reply)
{
    double t_end = run->samples && run->last_t_ns > run->first_t_ns
                       ? (double)(run->last_t_ns - run->first_t_ns) / 1e9
                       : 0.0;
    double from = w && w->has_from ? clamp_s(w->from) : 0.0;
    /* Without 'to' the window runs to the last sample, or is empty if
     * 'from' is past it; an explicit 'to' before 'from' is an error. */
    double to = w && w->has_to ? clamp_s(w->to) : t_end > from ? t_end : from;
    if (to < from) {
        vps_reply_error(reply, 400, "'to' is before 'from'");
        return VP_EINVAL;
    }
    out->from = from;
    out->to = to;
    /* Sample times are whole nanoseconds; a bound given in seconds means
     * the nearest one, so that from=0.1 takes a sample at exactly 0.1 s. */
    out->from_ns = sat_add(run->first_t_ns, llround(from * 1e9));
    out->to_ns = sat_add(run->first_t_ns, llround(to * 1e9));
    out->whole = !(w && (w->has_from || w->has_to));
    return VP_OK;
}

void vps__subtree(const vps_rundata *rd, const uint64_t *self, uint64_t *tot)
{
    memcpy(tot, self, (size_t)rd->nnodes * sizeof(uint64_t));
    for (uint32_t i = rd->nnodes; i-- > 1;)
        tot[rd->nodes[i].parent] += tot[i];
}

void vps__per_func(const vps_rundata *rd, const uint64_t *self, const uint64_t *tot,
                   uint64_t *fself, uint64_t *ftot)
{
    for (uint32_t i = 1; i < rd->nnodes; i++) {
        const vps_rd_node *n = &rd->nodes[i];
        fself[n->func] += self[i];
        if (n->first)
            ftot[n->func] += tot[i];
    }
}

void vps__func_fields(vps_jw *w, const vps_func *f)
{
    vps_jw_lit(w, "\"name\":");
    if (f)
        vps_jw_str(w, f->name, f->name_len);
    else
        vps_jw_lit(w, "\"all\"");
    vps_jw_lit(w, ",\"file\":");
    if (f)
        vps_jw_str(w, f->file, f->file_len);
    else
        vps_jw_lit(w, "\"\"");
    vps_jw_lit(w, ",\"line\":");
    vps_jw_i64(w, f ? f->line : 0);
}

/* ---- trees as JSON ---- */

static int cmp_by_size(const void *a, const void *b, void *ctx)
{
    const double *size = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (size[x] != size[y])
        return size[x] > size[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static int cmp_by_order(const void *a, const void *b, void *ctx)
{
    const vps__tree *t = ctx;
    return t->order(t->ctx, *(const uint32_t *)a, *(const uint32_t *)b);
}

int vps__tree_write(const vps__tree *t, uint32_t max_nodes, vps_jw *w, int *truncated)
{
    uint32_t n = t->n, ncand = 0;
    uint32_t *cand = vp_malloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    uint8_t *in = vp_calloc(n ? n : 1, 1);
    uint32_t *first = NULL, *kids = NULL, *stack = NULL, *cursor = NULL;
    int rc = VP_ENOMEM;
    *truncated = 0;
    if (!cand || !in)
        goto done;
    for (uint32_t i = 1; i < n; i++) {
        if (t->size[i] > 0)
            cand[ncand++] = i;
    }
    if (max_nodes < 1)
        max_nodes = 1;
    if (ncand > max_nodes - 1) {
        /* Keep the biggest; ties go to the lower index, a parent first. */
        qsort_r(cand, ncand, sizeof(uint32_t), cmp_by_size, (void *)t->size);
        ncand = max_nodes - 1;
        *truncated = 1;
    }
    in[0] = 1;
    for (uint32_t k = 0; k < ncand; k++)
        in[cand[k]] = 2; /* chosen */
    /* Parents come first, so one pass keeps only nodes whose parent stays. */
    uint32_t kept = 0;
    for (uint32_t i = 1; i < n; i++) {
        if (in[i] == 2) {
            in[i] = in[t->parent(t->ctx, i)] == 1 ? 1 : 0;
            if (!in[i])
                *truncated = 1;
            else
                kept++;
        }
    }
    /* Children lists: first[p]..first[p+1] in kids. */
    first = vp_calloc((size_t)n + 1, sizeof(uint32_t));
    kids = vp_malloc((size_t)(kept ? kept : 1) * sizeof(uint32_t));
    stack = vp_malloc((size_t)(kept + 1) * sizeof(uint32_t));
    cursor = vp_malloc((size_t)(kept + 1) * sizeof(uint32_t));
    if (!first || !kids || !stack || !cursor)
        goto done;
    for (uint32_t i = 1; i < n; i++) {
        if (in[i] == 1)
            first[t->parent(t->ctx, i) + 1]++;
    }
    for (uint32_t i = 0; i < n; i++)
        first[i + 1] += first[i];
    /* Fill with a moving cursor per parent (cand is free again). */
    for (uint32_t i = 0; i < n; i++)
        cand[i] = first[i];
    for (uint32_t i = 1; i < n; i++) {
        if (in[i] == 1) {
            uint32_t p = t->parent(t->ctx, i);
            kids[cand[p]++] = i;
        }
    }
    /* Depth-first, iteratively: stacks can be 65536 frames deep. */
    uint32_t sp = 0;
    stack[0] = 0;
    cursor[0] = first[0];
    vps_jw_lit(w, "{");
    t->fields(t->ctx, 0, w);
    vps_jw_lit(w, ",\"children\":[");
    qsort_r(kids + first[0], first[1] - first[0], sizeof(uint32_t), cmp_by_order, (void *)t);
    for (;;) {
        uint32_t node = stack[sp];
        if (cursor[sp] < first[node + 1]) {
            uint32_t c = kids[cursor[sp]];
            if (cursor[sp] > first[node])
                vps_jw_lit(w, ",");
            cursor[sp]++;
            vps_jw_lit(w, "{");
            t->fields(t->ctx, c, w);
            vps_jw_lit(w, ",\"children\":[");
            qsort_r(kids + first[c], first[c + 1] - first[c], sizeof(uint32_t), cmp_by_order,
                    (void *)t);
            stack[++sp] = c;
            cursor[sp] = first[c];
            if (w->err)
                break;
            continue;
        }
        vps_jw_lit(w, "]}");
        if (sp == 0)
            break;
        sp--;
    }
    rc = VP_OK;
done:
    vp_free(cand);
    vp_free(in);
    vp_free(first);
    vp_free(kids);
    vp_free(stack);
    vp_free(cursor);
    return rc;
}

/* ---- runs ---- */

static int ascii_contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle), h = strlen(hay);
    if (n == 0)
        return 1;
    for (size_t i = 0; i + n <= h; i++) {
        size_t k = 0;
        while (k < n) {
            int a = (unsigned char)hay[i + k], b = (unsigned char)needle[k];
            if (a >= 'A' && a <= 'Z')
                a += 32;
            if (b >= 'A' && b <= 'Z')
                b += 32;
            if (a != b)
                break;
            k++;
        }
        if (k == n)
            return 1;
    }
    return 0;
}

static int run_matches(const vps_run *r, const vps_runs_args *a)
{
    if (a->function && *a->function && !ascii_contains(r->function ? r->function : "",
                                                       a->function))
        return 0;
    if (a->has_since && r->start_us < a->since_us)
        return 0;
    if (a->has_until && r->start_us > a->until_us)
        return 0;
    return 1;
}

/* A matching run as sorted: the key and what fetches it again. */
typedef struct run_key {
    double num;
    char *str; /* project or function, for those sorts */
    int64_t start_us, rid;
    char id[33];
} run_key;

static int cmp_run_key(const void *pa, const void *pb, void *ctx)
{
    const run_key *x = pa, *y = pb;
    int asc = *(const int *)ctx;
    int c = 0;
    if (x->str || y->str)
        c = strcmp(x->str ? x->str : "", y->str ? y->str : "");
    else if (x->num != y->num)
        c = x->num < y->num ? -1 : 1;
    if (!c) /* ties: newest first, whatever the order */
        return x->start_us != y->start_us ? (x->start_us < y->start_us ? 1 : -1)
                                          : (x->rid < y->rid) - (x->rid > y->rid);
    return asc ? c : -c;
}

/* list_all walks every run the store filter matches, a page at a time. */
typedef int (*run_visit)(void *ctx, vps_run *r);

static int list_all(vps_db *db, const vps_runs_args *a, run_visit visit, void *ctx)
{
    vps_run_filter f = a->f;
    f.limit = VP_MAX_RUNS_PAGE;
    f.offset = 0;
    for (;;) {
        vps_run *runs = NULL;
        size_t n = 0;
        uint64_t total = 0;
        int rc = vps_db_list_runs(db, &f, &runs, &n, &total);
        if (rc != VP_OK)
            return rc;
        if (total > VP_MAX_RUNS_SCAN)
            rc = VP_ETOOBIG;
        for (size_t i = 0; i < n; i++) {
            if (rc == VP_OK)
                rc = visit(ctx, &runs[i]);
            vps_run_fini(&runs[i]);
        }
        vp_free(runs);
        if (rc != VP_OK)
            return rc;
        if (n < VP_MAX_RUNS_PAGE)
            return VP_OK;
        f.offset += VP_MAX_RUNS_PAGE;
    }
}

typedef struct page_ctx {
    const vps_runs_args *a;
    int64_t now;
    json_t *arr;
    uint64_t matched;
    run_key *keys;
    size_t nkeys, keys_cap;
} page_ctx;

/* Newest first is the store's own order: a page is kept as it streams by. */
static int on_page_run(void *vctx, vps_run *r)
{
    page_ctx *p = vctx;
    if (!run_matches(r, p->a))
        return VP_OK;
    uint64_t k = p->matched++;
    if (k < p->a->f.offset || k - p->a->f.offset >= p->a->f.limit)
        return VP_OK;
    json_t *o = vps_run_json(r, 0, p->now);
    return o && json_array_append_new(p->arr, o) == 0 ? VP_OK : VP_ENOMEM;
}

static int on_key_run(void *vctx, vps_run *r)
{
    page_ctx *p = vctx;
    if (!run_matches(r, p->a))
        return VP_OK;
    if (p->nkeys == p->keys_cap) {
        size_t cap = p->keys_cap ? p->keys_cap * 2 : 256;
        run_key *k = vp_realloc(p->keys, cap * sizeof(run_key));
        if (!k)
            return VP_ENOMEM;
        p->keys = k, p->keys_cap = cap;
    }
    run_key *k = &p->keys[p->nkeys];
    memset(k, 0, sizeof(*k));
    k->start_us = r->start_us;
    k->rid = r->rid;
    memcpy(k->id, r->id, sizeof(k->id));
    switch (p->a->sort) {
    case VPS_SORT_START: k->num = (double)r->start_us; break;
    case VPS_SORT_DURATION: k->num = vps_run_duration(r, p->now); break;
    case VPS_SORT_PEAK: k->num = (double)r->peak_rss_kb; break;
    case VPS_SORT_SAMPLES: k->num = (double)r->samples; break;
    case VPS_SORT_PROJECT:
    case VPS_SORT_FUNCTION: {
        const char *s = p->a->sort == VPS_SORT_PROJECT ? r->project : r->function;
        k->str = vp_strndup(s ? s : "", s ? strlen(s) : 0);
        if (!k->str)
            return VP_ENOMEM;
        break;
    }
    }
    p->nkeys++;
    p->matched++;
    return VP_OK;
}

void vps_query_runs(vps_store *s, const vps_runs_args *a, vps_reply *out)
{
    vps_db *db = NULL;
    vps_run *runs = NULL;
    size_t n = 0;
    uint64_t total = 0;
    int rc = vps_store_begin(s, VPS_READ, &db);
    if (rc != VP_OK) {
        vps_reply_error(out, 503, "storage unavailable: %s", vp_strerror(rc));
        return;
    }
    int64_t now = vps_now_us();
    int filtered = (a->function && *a->function) || a->has_since || a->has_until;
    int store_order = a->sort == VPS_SORT_START && !a->asc;
    page_ctx p = {.a = a, .now = now};
    p.arr = json_array();
    if (!p.arr) {
        vps_db_end(db);
        vps_reply_error(out, 500, "out of memory");
        return;
    }
    if (store_order && !filtered) {
        /* The store filters, orders and pages by itself. */
        rc = vps_db_list_runs(db, &a->f, &runs, &n, &total);
        for (size_t i = 0; i < n; i++) {
            json_t *o = rc == VP_OK ? vps_run_json(&runs[i], 0, now) : NULL;
            if (rc == VP_OK && (!o || json_array_append_new(p.arr, o) != 0))
                rc = VP_ENOMEM;
            vps_run_fini(&runs[i]);
        }
        vp_free(runs);
    } else if (store_order) {
        rc = list_all(db, a, on_page_run, &p);
        total = p.matched;
    } else {
        rc = list_all(db, a, on_key_run, &p);
        total = p.matched;
        if (rc == VP_OK && p.nkeys > 1)
            qsort_r(p.keys, p.nkeys, sizeof(run_key), cmp_run_key, (void *)&a->asc);
        for (size_t k = a->f.offset; rc == VP_OK && k < p.nkeys &&
                                     k - a->f.offset < a->f.limit; k++) {
            vps_run r;
            rc = vps_db_get_run(db, p.keys[k].id, &r);
            if (rc != VP_OK)
                break;
            json_t *o = vps_run_json(&r, 0, now);
            if (!o || json_array_append_new(p.arr, o) != 0)
                rc = VP_ENOMEM;
            vps_run_fini(&r);
        }
        for (size_t k = 0; k < p.nkeys; k++)
            vp_free(p.keys[k].str);
        vp_free(p.keys);
    }
    vps_db_end(db);
    if (rc == VP_ETOOBIG) {
        json_decref(p.arr);
        vps_reply_error(out, 400,
                        "more than %u runs to filter or sort; narrow the list with project",
                        VP_MAX_RUNS_SCAN);
        return;
    }
    if (rc != VP_OK) {
        json_decref(p.arr);
        vps__reply_failure(out, rc);
        return;
    }
    vps_reply_json(out, 200, json_pack("{s:o, s:I}", "runs", p.arr, "total", (json_int_t)total));
}

void vps_query_warm(vps_store *s, vps_rdcache *c, const char *id)
{
    vps_run run;
    vps_reply ignored = {0};
    vps_db *db = vps__open_run(s, id, &run, &ignored);
    if (db) {
        vps_rd_warm(c, db, &run);
        vps_db_end(db);
        vps_run_fini(&run);
    }
    vps_reply_fini(&ignored);
}

void vps_query_run(vps_store *s, const char *id, vps_reply *out)
{
    vps_run run;
    vps_db *db = vps__open_run(s, id, &run, out);
    if (!db)
        return;
    vps_db_end(db);
    vps_reply_json(out, 200, vps_run_json(&run, 1, vps_now_us()));
    vps_run_fini(&run);
}

void vps_query_delete(vps_store *s, vps_rdcache *c, const char *id, vps_reply *out)
{
    vps_db *db = NULL;
    vps_run run;
    int rc = vps_store_begin(s, VPS_WRITE, &db);
    if (rc != VP_OK) {
        vps_reply_error(out, 503, "storage unavailable: %s", vp_strerror(rc));
        return;
    }
    rc = vps_db_get_run(db, id, &run);
    if (rc == VP_ENOTFOUND) {
        vps_db_end(db);
        vps_reply_error(out, 404, "no run %s", id);
        return;
    }
    if (rc == VP_OK) {
        rc = vps_db_delete_run(db, run.rid);
        vps_run_fini(&run);
    }
    if (rc == VP_OK) {
        rc = vps_db_commit(db);
    } else {
        vps_db_end(db);
    }
    if (rc != VP_OK) {
        vps_reply_error(out, 500, "storage failed: %s", vp_strerror(rc));
        return;
    }
    vps_rdcache_drop(c, id);
    char *empty = vp_malloc(1);
    if (empty)
        vps_reply_body(out, 204, "text/plain; charset=utf-8", empty, 0);
    else
        vps_reply_error(out, 500, "out of memory");
}

/* ---- collapsed stacks ---- */

typedef struct line {
    char *text;
    size_t len;
    uint64_t count;
} line;

typedef struct collapsed_ctx {
    vps_symtab syms;
    uint32_t *fidx; /* per-frame function, scratch */
    uint32_t fidx_cap;
    line *lines;
    size_t nlines, lines_cap;
} collapsed_ctx;

static int on_stack(void *vctx, int64_t stack_id, const uint64_t *frames, uint32_t n,
                    uint64_t count)
{
    collapsed_ctx *c = vctx;
    (void)stack_id;
    if (n == 0)
        return 0; /* nothing to attribute; still counted in the run's samples */
    if (n > c->fidx_cap) {
        uint32_t *p = vp_realloc(c->fidx, (size_t)n * sizeof(uint32_t));
        if (!p)
            return VP_ENOMEM;
        c->fidx = p, c->fidx_cap = n;
    }
    size_t len = n - 1;
    for (uint32_t i = 0; i < n; i++) {
        int rc = vps_symtab_resolve(&c->syms, frames[i], &c->fidx[i]);
        if (rc != VP_OK)
            return rc;
        len += c->syms.funcs[c->fidx[i]].label_len;
    }
    char *text = vp_malloc(len + 1);
    if (!text)
        return VP_ENOMEM;
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        const vps_func *f = &c->syms.funcs[c->fidx[i]];
        if (i)
            text[k++] = ';';
        memcpy(text + k, f->label, f->label_len);
        k += f->label_len;
    }
    text[k] = '\0';
    if (c->nlines == c->lines_cap) {
        size_t cap = c->lines_cap ? c->lines_cap * 2 : 256;
        line *p = vp_realloc(c->lines, cap * sizeof(line));
        if (!p) {
            vp_free(text);
            return VP_ENOMEM;
        }
        c->lines = p, c->lines_cap = cap;
    }
    c->lines[c->nlines++] = (line){text, len, count};
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    const line *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void collapsed_fini(collapsed_ctx *c)
{
    for (size_t i = 0; i < c->nlines; i++)
        vp_free(c->lines[i].text);
    vp_free(c->lines);
    vp_free(c->fidx);
    vps_symtab_fini(&c->syms);
}

void vps_query_collapsed(vps_store *s, const char *id, vps_reply *out)
{
    collapsed_ctx c;
    vps_run run;
    memset(&c, 0, sizeof(c));
    vps_db *db = vps__open_run(s, id, &run, out);
    if (!db)
        return;
    int rc = vps_symtab_load(&c.syms, db, run.rid);
    if (rc == VP_OK)
        rc = vps_db_each_stack_count(db, run.rid, on_stack, &c);
    vps_db_end(db);
    vps_run_fini(&run);
    if (rc != VP_OK) {
        collapsed_fini(&c);
        vps__reply_failure(out, rc);
        return;
    }
    if (c.nlines > 1)
        qsort(c.lines, c.nlines, sizeof(line), cmp_line);
    /* Different stacks can print alike (two code objects of one function):
     * they are one line, summed. */
    size_t total = 0, w = 0;
    for (size_t i = 0; i < c.nlines; i++) {
        if (w > 0 && cmp_line(&c.lines[w - 1], &c.lines[i]) == 0) {
            c.lines[w - 1].count += c.lines[i].count;
            vp_free(c.lines[i].text);
            continue;
        }
        c.lines[w++] = c.lines[i];
    }
    c.nlines = w;
    for (size_t i = 0; i < c.nlines; i++)
        total += c.lines[i].len + 22;
    char *body = vp_malloc(total + 1);
    if (!body) {
        collapsed_fini(&c);
        vps_reply_error(out, 500, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < c.nlines; i++) {
        memcpy(body + k, c.lines[i].text, c.lines[i].len);
        k += c.lines[i].len;
        k += (size_t)snprintf(body + k, total + 1 - k, " %" PRIu64 "\n", c.lines[i].count);
    }
    collapsed_fini(&c);
    vps_reply_body(out, 200, "text/plain; charset=utf-8", body, k);
}

/* ---- functions ---- */

typedef struct func_row {
    const vps_func *f;
    uint64_t self, total;
} func_row;

static int cmp_func_row(const void *a, const void *b)
{
    const func_row *x = a, *y = b;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    if (x->self != y->self)
        return x->self < y->self ? 1 : -1;
    return vps_func_order(x->f, y->f);
}

void vps_query_functions(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w,
                         vps_reply *out)
{
    vps__win win;
    vps_db *db;
    vps_rundata *rd = vps__open_window(s, c, id, w, &win, &db, out);
    if (!rd)
        return;
    uint64_t nsamples = 0;
    size_t nn = rd->nnodes, nf = rd->syms.nfuncs ? rd->syms.nfuncs : 1;
    uint64_t *self = vp_malloc(nn * sizeof(uint64_t)), *tot = vp_malloc(nn * sizeof(uint64_t));
    uint64_t *fself = vp_calloc(nf, sizeof(uint64_t)), *ftot = vp_calloc(nf, sizeof(uint64_t));
    func_row *rows = vp_malloc(nf * sizeof(func_row));
    json_t *arr = json_array();
    int rc = VP_ENOMEM;
    if (self && tot && fself && ftot && rows && arr)
        rc = vps_rd_count(rd, db, win.whole, win.from_ns, win.to_ns, self, &nsamples);
    vps_db_end(db);
    if (rc == VP_OK) {
        vps__subtree(rd, self, tot);
        vps__per_func(rd, self, tot, fself, ftot);
        size_t n = 0;
        for (size_t i = 0; i < rd->syms.nfuncs; i++) {
            if (ftot[i] > 0)
                rows[n++] = (func_row){&rd->syms.funcs[i], fself[i], ftot[i]};
        }
        if (n > 1)
            qsort(rows, n, sizeof(func_row), cmp_func_row);
        for (size_t i = 0; i < n && rc == VP_OK; i++) {
            const vps_func *f = rows[i].f;
            json_t *o = json_pack("{s:o, s:o, s:I, s:I, s:I}", "name",
                                  vps_json_str(f->name, f->name_len), "file",
                                  vps_json_str(f->file, f->file_len), "line",
                                  (json_int_t)f->line, "self", (json_int_t)rows[i].self,
                                  "total", (json_int_t)rows[i].total);
            if (!o || json_array_append_new(arr, o) != 0)
                rc = VP_ENOMEM;
        }
    }
    vps_rd_release(c, rd);
    vp_free(self), vp_free(tot), vp_free(fself), vp_free(ftot), vp_free(rows);
    if (rc != VP_OK) {
        json_decref(arr);
        vps__reply_failure(out, rc);
        return;
    }
    json_t *doc = json_pack("{s:I, s:o}", "samples", (json_int_t)nsamples, "functions", arr);
    if (doc && !win.whole) {
        json_object_set_new(doc, "from", json_real(win.from));
        json_object_set_new(doc, "to", json_real(win.to));
    }
    vps_reply_json(out, 200, doc);
}

/* ---- memory ---- */

typedef struct bucket {
    uint64_t n, min, max, sum, best_rss, best_idx;
    uint32_t best_node; /* first sample with the highest RSS */
    uint32_t prefix;    /* common ancestor of every sample's node */
    uint32_t freq;      /* most frequent node */
    uint64_t freq_n;
} bucket;

/* Per-bucket node counts. While samples come in bucket order (the sample
 * clock only moves forward, the usual case) one dense counter array serves
 * every bucket in turn; a sample for an earlier bucket restarts the walk
 * with a hash table of (bucket, node) counts instead. */
typedef struct memory_ctx {
    const vps_rundata *rd;
    bucket *b;
    uint32_t nb;
    int64_t from_ns, span_ns;
    /* the current bucket's time range */
    uint32_t cur;
    int64_t cur_lo, cur_hi;
    int started;
    /* dense mode */
    uint32_t *cnt, *touched;
    uint32_t ntouched;
    /* hash mode */
    int hashed;
    vps_u64map counts; /* (bucket << 32 | node) + 1 -> samples */
} memory_ctx;

#define RESTART 1

static int64_t ceil_div(__int128 a, int64_t b)
{
    return (int64_t)((a + b - 1) / b);
}

static uint32_t bucket_of(memory_ctx *m, int64_t t)
{
    if (m->span_ns <= 0)
        return 0;
    int64_t off = t - m->from_ns;
    if (off <= 0)
        return 0;
    __int128 k = (__int128)off * m->nb / m->span_ns;
    return k >= m->nb ? m->nb - 1 : (uint32_t)k;
}

static void set_range(memory_ctx *m, uint32_t b)
{
    m->cur = b;
    if (m->span_ns <= 0) {
        m->cur_lo = INT64_MIN, m->cur_hi = INT64_MAX;
        return;
    }
    m->cur_lo = b == 0 ? INT64_MIN : m->from_ns + ceil_div((__int128)b * m->span_ns, m->nb);
    m->cur_hi = b + 1 >= m->nb ? INT64_MAX
                               : m->from_ns + ceil_div((__int128)(b + 1) * m->span_ns, m->nb);
}

static void finish_dense(memory_ctx *m)
{
    bucket *b = &m->b[m->cur];
    const vps_rundata *rd = m->rd;
    for (uint32_t i = 0; i < m->ntouched; i++) {
        uint32_t node = m->touched[i];
        uint64_t k = m->cnt[node];
        m->cnt[node] = 0;
        b->prefix = i == 0 ? node : vps_rd_lca(rd, b->prefix, node);
        if (k > b->freq_n) {
            b->freq_n = k;
            b->freq = node;
        }
    }
    m->ntouched = 0;
}

static int hash_add(memory_ctx *m, uint32_t bi, uint32_t node)
{
    uint64_t key = ((uint64_t)bi << 32 | node) + 1, *slot;
    int added = 0;
    if (m->counts.count >= VP_MAX_QUERY_NODES)
        slot = vps_u64map_get(&m->counts, key); /* full: only pairs already seen */
    else
        slot = vps_u64map_slot(&m->counts, key, &added);
    if (!slot)
        return m->counts.count >= VP_MAX_QUERY_NODES ? VP_ETOOBIG : VP_ENOMEM;
    uint64_t k = ++*slot;
    bucket *b = &m->b[bi];
    /* Ties go to the lower node, so the answer does not depend on order. */
    if (k > b->freq_n || (k == b->freq_n && node < b->freq)) {
        b->freq_n = k;
        b->freq = node;
    }
    return VP_OK;
}

static inline int mem_add(memory_ctx *m, uint64_t idx, int64_t t, uint64_t rss, uint32_t node)
{
    uint32_t bi;
    if (m->started && t >= m->cur_lo && t < m->cur_hi) {
        bi = m->cur;
    } else {
        bi = bucket_of(m, t);
        if (!m->hashed) {
            if (m->started && bi < m->cur)
                return RESTART;
            if (m->started)
                finish_dense(m);
        }
        set_range(m, bi);
        m->started = 1;
    }
    bucket *b = &m->b[bi];
    if (b->n == 0 || rss < b->min)
        b->min = rss;
    if (b->n == 0 || rss > b->max)
        b->max = rss;
    if (b->n == 0 || rss > b->best_rss || (rss == b->best_rss && idx < b->best_idx)) {
        b->best_rss = rss;
        b->best_idx = idx;
        b->best_node = node;
    }
    b->sum += rss;
    if (m->hashed) {
        if (b->n == 0 || node == b->prefix)
            b->prefix = node;
        else
            b->prefix = vps_rd_lca(m->rd, b->prefix, node);
        b->n++;
        return hash_add(m, bi, node);
    }
    b->n++;
    if (m->cnt[node]++ == 0)
        m->touched[m->ntouched++] = node;
    return 0;
}

static int on_mem_sample(void *ctx, uint64_t idx, int64_t t, uint64_t rss, uint32_t node)
{
    return mem_add(ctx, idx, t, rss, node);
}

/* raw_run adds cached samples [lo, hi) to the current bucket's sums. */
static void raw_run(memory_ctx *m, bucket *bk, uint64_t lo, uint64_t hi)
{
    const vps_rundata *rd = m->rd;
    const uint32_t *rss = rd->rss_kb, *nd = rd->node;
    uint32_t mn = bk->n ? (uint32_t)bk->min : UINT32_MAX, mx = 0;
    uint64_t sum = 0;
    for (uint64_t i = lo; i < hi; i++) {
        uint32_t v = rss[i];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        sum += v;
    }
    if (bk->n == 0 || mx > bk->max) {
        uint64_t first = lo;
        while (rss[first] != mx)
            first++;
        bk->max = bk->best_rss = mx;
        bk->best_idx = first;
        bk->best_node = nd[first];
    }
    bk->min = mn;
    bk->sum += sum;
    bk->n += hi - lo;
    uint32_t *cnt = m->cnt, *touched = m->touched, nt = m->ntouched;
    for (uint64_t i = lo; i < hi; i++) {
        uint32_t x = nd[i];
        if (cnt[x]++ == 0)
            touched[nt++] = x;
    }
    m->ntouched = nt;
}

/* bucket_run fills bucket b from the cached samples [lo, hi), all of which
 * fall in it: whole blocks from their summaries, the ends sample by sample.
 * Blocks are taken in order and ties keep the first, as a scan would. */
static int bucket_run(memory_ctx *m, uint32_t b, uint64_t lo, uint64_t hi)
{
    const vps_rundata *rd = m->rd;
    bucket *bk = &m->b[b];
    int rc;
    m->cur = b;
    while (lo < hi) {
        uint64_t k = lo / VPS_RD_BLOCK, end = (k + 1) * VPS_RD_BLOCK;
        const vps_rd_block *s = &rd->blocks[k];
        if ((rc = vps_rd_check_summary(rd, k)) != VP_OK)
            return rc;
        if (lo != k * VPS_RD_BLOCK || end > hi || s->nhist == VPS_RD_NONE) {
            if (end > hi)
                end = hi;
            if ((rc = vps_rd_check_samples(rd, lo, end)) != VP_OK)
                return rc;
            raw_run(m, bk, lo, end);
            lo = end;
            continue;
        }
        if (bk->n == 0 || s->min < bk->min)
            bk->min = s->min;
        if (bk->n == 0 || s->max > bk->max) {
            bk->max = bk->best_rss = s->max;
            bk->best_idx = lo + s->argmax;
            bk->best_node = s->argmax_node;
        }
        bk->sum += s->sum;
        bk->n += VPS_RD_BLOCK;
        const vps_rd_hist *h = rd->hist + s->hist;
        for (uint32_t j = 0; j < s->nhist; j++) {
            if (m->cnt[h[j].node] == 0)
                m->touched[m->ntouched++] = h[j].node;
            m->cnt[h[j].node] += h[j].count;
        }
        lo = end;
    }
    finish_dense(m);
    return VP_OK;
}

static int memory_walk(memory_ctx *m, vps_db *db)
{
    const vps_rundata *rd = m->rd;
    int rc = VP_OK;
    int64_t to_ns = m->from_ns + m->span_ns;
    if (rd->cached && rd->monotonic && !m->hashed) {
        /* The hot path of the memory view: every bucket is a range of
         * positions found by bisection. */
        uint64_t pos = vps_rd_lower(rd, m->from_ns);
        uint64_t end = to_ns == INT64_MAX ? rd->samples : vps_rd_lower(rd, to_ns + 1);
        /* Ask for what the walk reads before it starts (a summary file that
         * left the page cache is then read in one go, not a page per
         * fault): every sample of small buckets, else the block around
         * each bucket's edge (the rest comes from block summaries). */
        if (end - pos <= (uint64_t)m->nb * 2 * VPS_RD_BLOCK) {
            vps_rd_will_need(rd, pos, end, 1);
        } else {
            for (uint32_t b = 1; b < m->nb; b++) {
                set_range(m, b);
                vps_rd_will_need_at(rd, m->cur_lo);
            }
        }
        for (uint32_t b = 0; b < m->nb && pos < end; b++) {
            set_range(m, b);
            uint64_t stop = m->cur_hi == INT64_MAX ? end : vps_rd_lower(rd, m->cur_hi);
            if (stop > end)
                stop = end;
            if (stop > pos && (rc = bucket_run(m, b, pos, stop)) != VP_OK)
                return rc;
            pos = stop;
        }
        return VP_OK;
    }
    if (rd->cached && !m->hashed) {
        /* A clock that went backwards: samples in time order, so buckets
         * still come one after another. */
        const uint32_t *order = rd->order;
        uint64_t a = 0, z = rd->samples;
        while (a < z) {
            uint64_t mid = a + (z - a) / 2;
            if (rd->t_ns[order[mid]] < m->from_ns)
                a = mid + 1;
            else
                z = mid;
        }
        for (uint64_t k = a; k < rd->samples; k++) {
            uint32_t i = order[k];
            int64_t t = rd->t_ns[i];
            if (t > to_ns)
                break;
            if ((rc = mem_add(m, i, t, rd->rss_kb[i], rd->node[i])) != 0)
                break;
        }
    } else {
        rc = vps_rd_each(rd, db, m->from_ns, to_ns, on_mem_sample, m);
    }
    if (rc == 0 && !m->hashed && m->started)
        finish_dense(m);
    return rc;
}

/* stack_text writes the root-first labels of a node's path. */
static int stack_text(const vps_rundata *rd, uint32_t node, vps_jw *w)
{
    uint32_t depth = rd->nodes[node].depth;
    uint32_t *path = vp_malloc((size_t)(depth ? depth : 1) * sizeof(uint32_t));
    if (!path)
        return VP_ENOMEM;
    for (uint32_t d = depth; d-- > 0;) {
        path[d] = rd->nodes[node].func;
        node = rd->nodes[node].parent;
    }
    vps_jw_lit(w, "[");
    for (uint32_t d = 0; d < depth; d++) {
        const vps_func *f = &rd->syms.funcs[path[d]];
        if (d)
            vps_jw_lit(w, ",");
        vps_jw_str(w, f->label, f->label_len);
    }
    vps_jw_lit(w, "]");
    vp_free(path);
    return VP_OK;
}

/* A node -> index map for the "stacks" list, whose text goes to w. */
typedef struct stack_ids {
    uint32_t *keys, *vals; /* key node + 1 */
    size_t cap, n;
    vps_jw w;
} stack_ids;

static int stack_index(stack_ids *s, const vps_rundata *rd, uint32_t node, uint32_t *out)
{
    size_t i = vps_hash64(node) & (s->cap - 1);
    while (s->keys[i]) {
        if (s->keys[i] == node + 1) {
            *out = s->vals[i];
            return VP_OK;
        }
        i = (i + 1) & (s->cap - 1);
    }
    if (s->n)
        vps_jw_lit(&s->w, ",");
    int rc = stack_text(rd, node, &s->w);
    if (rc != VP_OK)
        return rc;
    s->keys[i] = node + 1;
    s->vals[i] = (uint32_t)s->n++;
    *out = s->vals[i];
    return VP_OK;
}

void vps_query_memory(vps_store *s, vps_rdcache *c, const char *id, const vps_memory_args *a,
                      vps_reply *out)
{
    vps_run run;
    vps__win win;
    memory_ctx m;
    stack_ids ids = {0};
    memset(&m, 0, sizeof(m));
    vps_db *db = vps__open_run(s, id, &run, out);
    if (!db)
        return;
    if (vps__window(&run, &a->w, &win, out) != VP_OK) {
        vps_db_end(db);
        vps_run_fini(&run);
        return;
    }
    vps_rundata *rd = NULL;
    vps_jw jw;
    int rc = VP_OK;
    vps_jw_init(&jw, VP_MAX_EXPORT_BYTES);
    vps_jw_init(&ids.w, VP_MAX_EXPORT_BYTES);
    if (run.samples > 0 && !(rd = vps__acquire(c, db, &run, out))) {
        vps_run_fini(&run);
        return;
    }
    m.rd = rd;
    m.nb = a->buckets;
    m.from_ns = win.from_ns;
    m.span_ns = win.to_ns - win.from_ns;
    m.b = vp_calloc(m.nb, sizeof(bucket));
    ids.cap = 1;
    while (ids.cap < (size_t)m.nb * 6)
        ids.cap *= 2;
    ids.keys = vp_calloc(ids.cap, sizeof(uint32_t));
    ids.vals = vp_malloc(ids.cap * sizeof(uint32_t));
    if (!m.b || !ids.keys || !ids.vals) {
        rc = VP_ENOMEM;
        goto fail;
    }
    if (rd) {
        m.cnt = vp_calloc(rd->nnodes, sizeof(uint32_t));
        m.touched = vp_malloc((size_t)rd->nnodes * sizeof(uint32_t));
        if (!m.cnt || !m.touched) {
            rc = VP_ENOMEM;
            goto fail;
        }
        rc = memory_walk(&m, db);
        if (rc == RESTART) {
            /* The clock went backwards: count per (bucket, node) instead. */
            memset(m.b, 0, m.nb * sizeof(bucket));
            memset(m.cnt, 0, (size_t)rd->nnodes * sizeof(uint32_t));
            m.ntouched = 0;
            m.started = 0;
            m.hashed = 1;
            rc = memory_walk(&m, db);
        }
        if (rc != VP_OK)
            goto fail;
    }
    vps_db_end(db);
    db = NULL;
    uint64_t peak = 0;
    for (uint32_t i = 0; i < m.nb; i++) {
        if (m.b[i].n && m.b[i].max > peak)
            peak = m.b[i].max;
    }
    double width = (win.to - win.from) / m.nb;
    vps_jw_lit(&jw, "{\"from\":");
    vps_jw_real(&jw, win.from);
    vps_jw_lit(&jw, ",\"to\":");
    vps_jw_real(&jw, win.to);
    vps_jw_lit(&jw, ",\"peak_rss_kb\":");
    vps_jw_u64(&jw, peak);
    vps_jw_lit(&jw, ",\"points\":[");
    int npoints = 0;
    for (uint32_t i = 0; i < m.nb; i++) {
        const bucket *b = &m.b[i];
        uint32_t si, pi, fi;
        if (b->n == 0)
            continue;
        if ((rc = stack_index(&ids, rd, b->best_node, &si)) != VP_OK ||
            (rc = stack_index(&ids, rd, b->prefix, &pi)) != VP_OK ||
            (rc = stack_index(&ids, rd, b->freq, &fi)) != VP_OK)
            goto fail;
        const char *keys[] = {",\"n\":", ",\"min\":", ",\"mean\":", ",\"max\":", ",\"stack\":",
                              ",\"prefix\":", ",\"frequent\":", ",\"frequent_n\":"};
        uint64_t vals[] = {b->n, b->min, (b->sum + b->n / 2) / b->n, b->max, si, pi, fi,
                           b->freq_n};
        vps_jw_lit(&jw, npoints++ ? ",{\"t\":" : "{\"t\":");
        vps_jw_real(&jw, win.from + i * width);
        for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
            vps_jw_lit(&jw, keys[k]);
            vps_jw_u64(&jw, vals[k]);
        }
        vps_jw_lit(&jw, "}");
    }
    vps_jw_lit(&jw, "],\"stacks\":[");
    if (ids.w.err)
        jw.err = ids.w.err;
    else if (ids.w.len)
        vps_jw_raw(&jw, ids.w.buf, ids.w.len);
    vps_jw_lit(&jw, "]}");
    vps_jw_reply(&jw, out, "application/json");
fail:
    if (db)
        vps_db_end(db);
    if (rc != VP_OK)
        vps__reply_failure(out, rc);
    vps_rd_release(c, rd);
    vps_jw_fini(&jw);
    vps_jw_fini(&ids.w);
    vp_free(m.b);
    vp_free(m.cnt);
    vp_free(m.touched);
    vps_u64map_fini(&m.counts);
    vp_free(ids.keys);
    vp_free(ids.vals);
    vps_run_fini(&run);
}
