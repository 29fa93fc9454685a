/*
 * analysis.c - the analysis endpoints of docs/API.md (issue 6): the CPU
 * tree of a window, memory growth attributed to stacks, two runs compared,
 * and the speedscope export.
 *
 * Each works on call-trie nodes (rundata.h): per-node values over the
 * window first, then subtree sums (a node's parent has a lower index, so
 * one backwards pass adds children into parents), then per-function sums
 * at the nodes where a function first appears on the path (recursion
 * counts once). Answers are written as JSON text (vps_jw): a tree of
 * 200000 nodes would cost 200000 jansson objects.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "query_int.h"
#include "symtab.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_mem.h"

static const char json_ctype[] = "application/json";

/* jw_finish sends jw as the JSON reply if rc is VP_OK, else frees it and
 * replies with the failure; either way jw is used up. */
static void jw_finish(vps_jw *jw, int rc, vps_reply *out)
{
    if (rc != VP_OK) {
        vps_jw_fini(jw);
        vps__reply_failure(out, rc);
        return;
    }
    vps_jw_reply(jw, out, json_ctype);
}

/* ---- the CPU tree ---- */

typedef struct cpu_tree {
    const vps_rundata *rd;
    const uint64_t *self, *tot;
} cpu_tree;

static uint32_t rd_parent(void *ctx, uint32_t node)
{
    const cpu_tree *t = ctx;
    return t->rd->nodes[node].parent;
}

static int cpu_order(void *ctx, uint32_t a, uint32_t b)
{
    const cpu_tree *t = ctx;
    if (t->tot[a] != t->tot[b])
        return t->tot[a] > t->tot[b] ? -1 : 1;
    return vps_func_order(&t->rd->syms.funcs[t->rd->nodes[a].func],
                          &t->rd->syms.funcs[t->rd->nodes[b].func]);
}

static const vps_func *node_func(const vps_rundata *rd, uint32_t node)
{
    return node == VPS_RD_ROOT ? NULL : &rd->syms.funcs[rd->nodes[node].func];
}

static void cpu_fields(void *ctx, uint32_t node, vps_jw *w)
{
    const cpu_tree *t = ctx;
    vps__func_fields(w, node_func(t->rd, node));
    vps_jw_lit(w, ",\"total\":");
    vps_jw_u64(w, t->tot[node]);
    vps_jw_lit(w, ",\"self\":");
    vps_jw_u64(w, t->self[node]);
}

/* window_head writes "samples", "from" and "to" of a window. */
static void window_head(vps_jw *w, uint64_t samples, const vps__win *win)
{
    vps_jw_lit(w, "\"samples\":");
    vps_jw_u64(w, samples);
    vps_jw_lit(w, ",\"from\":");
    vps_jw_real(w, win->from);
    vps_jw_lit(w, ",\"to\":");
    vps_jw_real(w, win->to);
}

void vps_query_tree(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w,
                    uint32_t max_nodes, vps_reply *out)
{
    vps__win win;
    vps_db *db;
    vps_rundata *rd = vps__open_window(s, c, id, w, &win, &db, out);
    if (!rd)
        return;
    uint64_t n = 0;
    uint64_t *self = vp_malloc((size_t)rd->nnodes * sizeof(uint64_t));
    uint64_t *tot = vp_malloc((size_t)rd->nnodes * sizeof(uint64_t));
    double *size = vp_malloc((size_t)rd->nnodes * sizeof(double));
    int rc = VP_ENOMEM, truncated = 0;
    if (self && tot && size)
        rc = vps_rd_count(rd, db, win.whole, win.from_ns, win.to_ns, self, &n);
    vps_db_end(db);
    vps_jw jw;
    vps_jw_init(&jw, VP_MAX_EXPORT_BYTES);
    if (rc == VP_OK) {
        vps__subtree(rd, self, tot);
        for (uint32_t i = 0; i < rd->nnodes; i++)
            size[i] = (double)tot[i];
        cpu_tree ct = {rd, self, tot};
        vps__tree t = {rd->nnodes, size, rd_parent, cpu_order, cpu_fields, &ct};
        vps_jw_lit(&jw, "{");
        window_head(&jw, n, &win);
        vps_jw_lit(&jw, ",\"root\":");
        rc = vps__tree_write(&t, max_nodes, &jw, &truncated);
        vps_jw_lit(&jw, truncated ? ",\"truncated\":true}" : ",\"truncated\":false}");
    }
    vps_rd_release(c, rd);
    vp_free(self), vp_free(tot), vp_free(size);
    jw_finish(&jw, rc, out);
}

/* ---- memory growth ---- */

typedef struct growth_ctx {
    uint64_t *grown, *released; /* per node, self */
    uint64_t prev_idx, prev_rss, n;
    int has_prev;
} growth_ctx;

static int on_growth(void *ctx, uint64_t idx, int64_t t, uint64_t rss, uint32_t node)
{
    growth_ctx *g = ctx;
    (void)t;
    /* Only a pair of neighbours both in the window: the first sample of a
     * window has no "before" in it. */
    if (g->has_prev && idx == g->prev_idx + 1) {
        if (rss > g->prev_rss)
            g->grown[node] += rss - g->prev_rss;
        else
            g->released[node] += g->prev_rss - rss;
    }
    g->prev_idx = idx;
    g->prev_rss = rss;
    g->has_prev = 1;
    g->n++;
    return 0;
}

/* growth_walk feeds on_growth the window's samples; over cached arrays
 * directly, since a whole-run growth is a memory-window query too. */
static int growth_walk(const vps_rundata *rd, vps_db *db, int64_t from, int64_t to,
                       growth_ctx *g)
{
    if (!rd->cached)
        return vps_rd_each(rd, db, from, to, on_growth, g);
    uint64_t lo = 0, hi = rd->samples;
    if (rd->monotonic) {
        lo = vps_rd_lower(rd, from);
        hi = to == INT64_MAX ? rd->samples : vps_rd_lower(rd, to + 1);
    }
    /* A monotonic clock's window is [lo, hi): the times need not be read
     * (half the bytes of a whole-run scan). */
    vps_rd_will_need(rd, lo, hi, !rd->monotonic);
    int rc = vps_rd_check_samples(rd, lo, hi);
    if (rc != VP_OK)
        return rc;
    if (rd->monotonic) {
        for (uint64_t i = lo; i < hi; i++)
            on_growth(g, i, 0, rd->rss_kb[i], rd->node[i]);
        return VP_OK;
    }
    for (uint64_t i = lo; i < hi; i++) {
        int64_t t = rd->t_ns[i];
        if (t < from || t > to)
            continue;
        on_growth(g, i, t, rd->rss_kb[i], rd->node[i]);
    }
    return VP_OK;
}

typedef struct growth_tree {
    const vps_rundata *rd;
    const uint64_t *grown, *released, *gtot, *rtot;
} growth_tree;

static uint32_t growth_parent(void *ctx, uint32_t node)
{
    const growth_tree *t = ctx;
    return t->rd->nodes[node].parent;
}

static int growth_order(void *ctx, uint32_t a, uint32_t b)
{
    const growth_tree *t = ctx;
    if (t->gtot[a] != t->gtot[b])
        return t->gtot[a] > t->gtot[b] ? -1 : 1;
    if (t->rtot[a] != t->rtot[b])
        return t->rtot[a] > t->rtot[b] ? -1 : 1;
    return vps_func_order(&t->rd->syms.funcs[t->rd->nodes[a].func],
                          &t->rd->syms.funcs[t->rd->nodes[b].func]);
}

static void growth_fields(void *ctx, uint32_t node, vps_jw *w)
{
    const growth_tree *t = ctx;
    vps__func_fields(w, node_func(t->rd, node));
    vps_jw_lit(w, ",\"grown_kb\":");
    vps_jw_u64(w, t->gtot[node]);
    vps_jw_lit(w, ",\"released_kb\":");
    vps_jw_u64(w, t->rtot[node]);
    vps_jw_lit(w, ",\"self_grown_kb\":");
    vps_jw_u64(w, t->grown[node]);
    vps_jw_lit(w, ",\"self_released_kb\":");
    vps_jw_u64(w, t->released[node]);
}

typedef struct growth_row {
    const vps_func *f;
    uint64_t sg, tg, sr, tr;
} growth_row;

static int cmp_growth_row(const void *pa, const void *pb)
{
    const growth_row *a = pa, *b = pb;
    if (a->tg != b->tg)
        return a->tg > b->tg ? -1 : 1;
    if (a->tr != b->tr)
        return a->tr > b->tr ? -1 : 1;
    return vps_func_order(a->f, b->f);
}

void vps_query_growth(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w,
                      uint32_t max_nodes, vps_reply *out)
{
    vps__win win;
    vps_db *db;
    vps_rundata *rd = vps__open_window(s, c, id, w, &win, &db, out);
    if (!rd)
        return;
    size_t nn = rd->nnodes, nf = rd->syms.nfuncs ? rd->syms.nfuncs : 1;
    growth_ctx g = {0};
    g.grown = vp_calloc(nn, sizeof(uint64_t));
    g.released = vp_calloc(nn, sizeof(uint64_t));
    uint64_t *gtot = vp_malloc(nn * sizeof(uint64_t)), *rtot = vp_malloc(nn * sizeof(uint64_t));
    uint64_t *fsg = vp_calloc(nf, sizeof(uint64_t)), *ftg = vp_calloc(nf, sizeof(uint64_t));
    uint64_t *fsr = vp_calloc(nf, sizeof(uint64_t)), *ftr = vp_calloc(nf, sizeof(uint64_t));
    growth_row *rows = vp_malloc(nf * sizeof(growth_row));
    double *size = vp_malloc(nn * sizeof(double));
    int rc = VP_ENOMEM, truncated = 0;
    if (g.grown && g.released && gtot && rtot && fsg && ftg && fsr && ftr && rows && size)
        rc = growth_walk(rd, db, win.whole ? INT64_MIN : win.from_ns,
                         win.whole ? INT64_MAX : win.to_ns, &g);
    vps_db_end(db);
    vps_jw jw;
    vps_jw_init(&jw, VP_MAX_EXPORT_BYTES);
    if (rc == VP_OK) {
        vps__subtree(rd, g.grown, gtot);
        vps__subtree(rd, g.released, rtot);
        vps__per_func(rd, g.grown, gtot, fsg, ftg);
        vps__per_func(rd, g.released, rtot, fsr, ftr);
        size_t n = 0;
        for (size_t i = 0; i < rd->syms.nfuncs; i++) {
            if (ftg[i] || ftr[i])
                rows[n++] = (growth_row){&rd->syms.funcs[i], fsg[i], ftg[i], fsr[i], ftr[i]};
        }
        if (n > 1)
            qsort(rows, n, sizeof(growth_row), cmp_growth_row);
        vps_jw_lit(&jw, "{");
        window_head(&jw, g.n, &win);
        vps_jw_lit(&jw, ",\"grown_kb\":");
        vps_jw_u64(&jw, gtot[0]);
        vps_jw_lit(&jw, ",\"released_kb\":");
        vps_jw_u64(&jw, rtot[0]);
        vps_jw_lit(&jw, ",\"functions\":[");
        for (size_t i = 0; i < n; i++) {
            vps_jw_lit(&jw, i ? ",{" : "{");
            vps__func_fields(&jw, rows[i].f);
            vps_jw_lit(&jw, ",\"self_grown_kb\":");
            vps_jw_u64(&jw, rows[i].sg);
            vps_jw_lit(&jw, ",\"total_grown_kb\":");
            vps_jw_u64(&jw, rows[i].tg);
            vps_jw_lit(&jw, ",\"self_released_kb\":");
            vps_jw_u64(&jw, rows[i].sr);
            vps_jw_lit(&jw, ",\"total_released_kb\":");
            vps_jw_u64(&jw, rows[i].tr);
            vps_jw_lit(&jw, "}");
        }
        vps_jw_lit(&jw, "],\"root\":");
        for (size_t i = 0; i < nn; i++)
            size[i] = (double)gtot[i] + (double)rtot[i];
        growth_tree gt = {rd, g.grown, g.released, gtot, rtot};
        vps__tree t = {rd->nnodes, size, growth_parent, growth_order, growth_fields, &gt};
        rc = vps__tree_write(&t, max_nodes, &jw, &truncated);
        vps_jw_lit(&jw, truncated ? ",\"truncated\":true}" : ",\"truncated\":false}");
    }
    vps_rd_release(c, rd);
    vp_free(g.grown), vp_free(g.released), vp_free(gtot), vp_free(rtot);
    vp_free(fsg), vp_free(ftg), vp_free(fsr), vp_free(ftr), vp_free(rows), vp_free(size);
    jw_finish(&jw, rc, out);
}

/* ---- two runs compared ---- */

/* One side of a diff: the run's counts over its window. */
typedef struct side {
    vps_rundata *rd;
    vps__win win;
    char id[33];
    uint64_t samples;
    uint64_t *self, *tot;     /* per node */
    uint64_t *fself, *ftot;   /* per function */
    uint32_t *merged;         /* per node: merged node, VPS_RD_NONE if not shown */
} side;

typedef struct mnode {
    uint32_t parent;
    const vps_func *f; /* NULL for the root */
    uint32_t node[2];  /* per side, VPS_RD_NONE if absent */
} mnode;

typedef struct merged {
    mnode *nodes;
    uint32_t n, cap;
    uint32_t *slots; /* hash of (parent, function) -> node + 1 */
    size_t scap;
    side *sides;
} merged;

static uint64_t mkey(uint32_t parent, const vps_func *f)
{
    return vps_hash64(((uint64_t)parent << 32) ^ f->key_hash);
}

static int merged_grow(merged *m)
{
    size_t cap = m->scap ? m->scap * 2 : 4096;
    uint32_t *slots = vp_calloc(cap, sizeof(uint32_t));
    if (!slots)
        return VP_ENOMEM;
    for (uint32_t i = 1; i < m->n; i++) {
        size_t j = mkey(m->nodes[i].parent, m->nodes[i].f) & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = i + 1;
    }
    vp_free(m->slots);
    m->slots = slots, m->scap = cap;
    return VP_OK;
}

/* merged_child finds or makes the merged node for f under parent. */
static int merged_child(merged *m, uint32_t parent, const vps_func *f, uint32_t *out)
{
    if ((size_t)(m->n + 1) * 2 > m->scap && merged_grow(m) != VP_OK)
        return VP_ENOMEM;
    size_t mask = m->scap - 1, i = mkey(parent, f) & mask;
    while (m->slots[i]) {
        const mnode *x = &m->nodes[m->slots[i] - 1];
        if (x->parent == parent && vps_func_same(x->f, f)) {
            *out = m->slots[i] - 1;
            return VP_OK;
        }
        i = (i + 1) & mask;
    }
    if (m->n >= VP_MAX_QUERY_NODES)
        return VP_ETOOBIG;
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 1024;
        mnode *p = vp_realloc(m->nodes, (size_t)cap * sizeof(mnode));
        if (!p)
            return VP_ENOMEM;
        m->nodes = p, m->cap = cap;
    }
    m->nodes[m->n] = (mnode){parent, f, {VPS_RD_NONE, VPS_RD_NONE}};
    m->slots[i] = m->n + 1;
    *out = m->n++;
    return VP_OK;
}

static int merge_side(merged *m, side *sd, int k)
{
    const vps_rundata *rd = sd->rd;
    sd->merged[0] = 0;
    m->nodes[0].node[k] = 0;
    for (uint32_t i = 1; i < rd->nnodes; i++) {
        uint32_t p = sd->merged[rd->nodes[i].parent];
        sd->merged[i] = VPS_RD_NONE;
        if (sd->tot[i] == 0 || p == VPS_RD_NONE)
            continue;
        uint32_t mi;
        int rc = merged_child(m, p, &rd->syms.funcs[rd->nodes[i].func], &mi);
        if (rc != VP_OK)
            return rc;
        m->nodes[mi].node[k] = i;
        sd->merged[i] = mi;
    }
    return VP_OK;
}

static uint64_t side_val(const side *sd, const uint64_t *arr, uint32_t node)
{
    (void)sd;
    return node == VPS_RD_NONE ? 0 : arr[node];
}

static double share(uint64_t v, uint64_t samples)
{
    return samples ? 100.0 * (double)v / (double)samples : 0.0;
}

static uint32_t merged_parent(void *ctx, uint32_t node)
{
    const merged *m = ctx;
    return m->nodes[node].parent;
}

static int merged_order(void *ctx, uint32_t a, uint32_t b)
{
    const merged *m = ctx;
    const side *s = m->sides;
    double sa = share(side_val(&s[0], s[0].tot, m->nodes[a].node[0]), s[0].samples) +
                share(side_val(&s[1], s[1].tot, m->nodes[a].node[1]), s[1].samples);
    double sb = share(side_val(&s[0], s[0].tot, m->nodes[b].node[0]), s[0].samples) +
                share(side_val(&s[1], s[1].tot, m->nodes[b].node[1]), s[1].samples);
    if (sa != sb)
        return sa > sb ? -1 : 1;
    return vps_func_order(m->nodes[a].f, m->nodes[b].f);
}

static void merged_fields(void *ctx, uint32_t node, vps_jw *w)
{
    const merged *m = ctx;
    const mnode *x = &m->nodes[node];
    vps__func_fields(w, x->f);
    static const char *const keys[2][2] = {{",\"a_total\":", ",\"a_self\":"},
                                           {",\"b_total\":", ",\"b_self\":"}};
    for (int k = 0; k < 2; k++) {
        const side *sd = &m->sides[k];
        vps_jw_lit(w, keys[k][0]);
        vps_jw_u64(w, side_val(sd, sd->tot, x->node[k]));
        vps_jw_lit(w, keys[k][1]);
        vps_jw_u64(w, side_val(sd, sd->self, x->node[k]));
    }
}

typedef struct diff_row {
    const vps_func *f;
    uint64_t v[4]; /* a_self, a_total, b_self, b_total */
    double dself, dtotal;
} diff_row;

static int cmp_diff_row(const void *pa, const void *pb)
{
    const diff_row *a = pa, *b = pb;
    double x = fabs(a->dtotal), y = fabs(b->dtotal);
    if (x != y)
        return x > y ? -1 : 1;
    x = fabs(a->dself), y = fabs(b->dself);
    if (x != y)
        return x > y ? -1 : 1;
    return vps_func_order(a->f, b->f);
}

/* load_side counts one run over its window; the rundata stays pinned. */
static int load_side(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w, side *sd,
                     vps_reply *out)
{
    vps_run run;
    vps_db *db = vps__open_run(s, id, &run, out);
    if (!db)
        return VP_ENOTFOUND;
    memcpy(sd->id, run.id, sizeof(sd->id));
    if (vps__window(&run, w, &sd->win, out) != VP_OK) {
        vps_db_end(db);
        vps_run_fini(&run);
        return VP_EINVAL;
    }
    sd->rd = vps__acquire(c, db, &run, out);
    vps_run_fini(&run);
    if (!sd->rd)
        return VP_EIO;
    size_t nn = sd->rd->nnodes, nf = sd->rd->syms.nfuncs ? sd->rd->syms.nfuncs : 1;
    sd->self = vp_malloc(nn * sizeof(uint64_t));
    sd->tot = vp_malloc(nn * sizeof(uint64_t));
    sd->merged = vp_malloc(nn * sizeof(uint32_t));
    sd->fself = vp_calloc(nf, sizeof(uint64_t));
    sd->ftot = vp_calloc(nf, sizeof(uint64_t));
    int rc = VP_ENOMEM;
    if (sd->self && sd->tot && sd->merged && sd->fself && sd->ftot)
        rc = vps_rd_count(sd->rd, db, sd->win.whole, sd->win.from_ns, sd->win.to_ns, sd->self,
                          &sd->samples);
    vps_db_end(db);
    if (rc != VP_OK) {
        vps__reply_failure(out, rc);
        return rc;
    }
    vps__subtree(sd->rd, sd->self, sd->tot);
    vps__per_func(sd->rd, sd->self, sd->tot, sd->fself, sd->ftot);
    return VP_OK;
}

static void side_fini(vps_rdcache *c, side *sd)
{
    vps_rd_release(c, sd->rd);
    vp_free(sd->self), vp_free(sd->tot), vp_free(sd->merged);
    vp_free(sd->fself), vp_free(sd->ftot);
}

/* diff_functions unions the two function tables by identity. */
static int diff_functions(side sides[2], diff_row **out, size_t *nout)
{
    size_t cap = 1, n = 0;
    size_t most = sides[0].rd->syms.nfuncs + sides[1].rd->syms.nfuncs;
    while (cap < most * 2 + 2)
        cap *= 2;
    uint32_t *slots = vp_calloc(cap, sizeof(uint32_t));
    diff_row *rows = vp_malloc((most ? most : 1) * sizeof(diff_row));
    if (!slots || !rows) {
        vp_free(slots), vp_free(rows);
        return VP_ENOMEM;
    }
    for (int k = 0; k < 2; k++) {
        const vps_rundata *rd = sides[k].rd;
        for (size_t i = 0; i < rd->syms.nfuncs; i++) {
            if (!sides[k].ftot[i])
                continue;
            const vps_func *f = &rd->syms.funcs[i];
            size_t j = f->key_hash & (cap - 1);
            while (slots[j] && !vps_func_same(rows[slots[j] - 1].f, f))
                j = (j + 1) & (cap - 1);
            if (!slots[j]) {
                rows[n] = (diff_row){.f = f};
                slots[j] = (uint32_t)++n;
            }
            diff_row *r = &rows[slots[j] - 1];
            r->v[2 * k] += sides[k].fself[i];
            r->v[2 * k + 1] += sides[k].ftot[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        diff_row *r = &rows[i];
        r->dself = share(r->v[2], sides[1].samples) - share(r->v[0], sides[0].samples);
        r->dtotal = share(r->v[3], sides[1].samples) - share(r->v[1], sides[0].samples);
    }
    if (n > 1)
        qsort(rows, n, sizeof(diff_row), cmp_diff_row);
    vp_free(slots);
    *out = rows;
    *nout = n;
    return VP_OK;
}

static void side_head(vps_jw *w, const side *sd)
{
    vps_jw_lit(w, "{\"id\":");
    vps_jw_str(w, sd->id, strlen(sd->id));
    vps_jw_lit(w, ",");
    window_head(w, sd->samples, &sd->win);
    vps_jw_lit(w, "}");
}

void vps_query_diff(vps_store *s, vps_rdcache *c, const char *a, const vps_window *wa,
                    const char *b, const vps_window *wb, uint32_t max_nodes, vps_reply *out)
{
    side sides[2];
    merged m = {0};
    diff_row *rows = NULL;
    size_t nrows = 0;
    double *size = NULL;
    int truncated = 0;
    memset(sides, 0, sizeof(sides));
    vps_jw jw;
    vps_jw_init(&jw, VP_MAX_EXPORT_BYTES);
    /* One side at a time: each holds a store connection only while it is
     * counted, and a's rundata is complete before b's is asked for. */
    if (load_side(s, c, a, wa, &sides[0], out) != VP_OK ||
        load_side(s, c, b, wb, &sides[1], out) != VP_OK)
        goto done;
    m.sides = sides;
    int rc = VP_ENOMEM;
    mnode root = {VPS_RD_NONE, NULL, {0, 0}};
    if ((m.nodes = vp_malloc(1024 * sizeof(mnode))) != NULL) {
        m.cap = 1024;
        m.nodes[0] = root;
        m.n = 1;
        rc = merge_side(&m, &sides[0], 0);
    }
    if (rc == VP_OK)
        rc = merge_side(&m, &sides[1], 1);
    if (rc == VP_OK)
        rc = diff_functions(sides, &rows, &nrows);
    if (rc == VP_OK && !(size = vp_malloc((size_t)m.n * sizeof(double))))
        rc = VP_ENOMEM;
    if (rc != VP_OK) {
        vps__reply_failure(out, rc);
        goto done;
    }
    for (uint32_t i = 0; i < m.n; i++) {
        const mnode *x = &m.nodes[i];
        size[i] = share(side_val(&sides[0], sides[0].tot, x->node[0]), sides[0].samples) +
                  share(side_val(&sides[1], sides[1].tot, x->node[1]), sides[1].samples);
    }
    vps_jw_lit(&jw, "{\"a\":");
    side_head(&jw, &sides[0]);
    vps_jw_lit(&jw, ",\"b\":");
    side_head(&jw, &sides[1]);
    vps_jw_lit(&jw, ",\"functions\":[");
    for (size_t i = 0; i < nrows; i++) {
        const diff_row *r = &rows[i];
        static const char *const keys[4] = {",\"a_self\":", ",\"a_total\":", ",\"b_self\":",
                                            ",\"b_total\":"};
        vps_jw_lit(&jw, i ? ",{" : "{");
        vps__func_fields(&jw, r->f);
        for (int k = 0; k < 4; k++) {
            vps_jw_lit(&jw, keys[k]);
            vps_jw_u64(&jw, r->v[k]);
        }
        vps_jw_lit(&jw, ",\"delta_self_pct\":");
        vps_jw_real(&jw, r->dself);
        vps_jw_lit(&jw, ",\"delta_total_pct\":");
        vps_jw_real(&jw, r->dtotal);
        vps_jw_lit(&jw, "}");
    }
    vps_jw_lit(&jw, "],\"root\":");
    vps__tree t = {m.n, size, merged_parent, merged_order, merged_fields, &m};
    if ((rc = vps__tree_write(&t, max_nodes, &jw, &truncated)) != VP_OK) {
        vps__reply_failure(out, rc);
        goto done;
    }
    vps_jw_lit(&jw, truncated ? ",\"truncated\":true}" : ",\"truncated\":false}");
    vps_jw_reply(&jw, out, json_ctype);
done:
    vps_jw_fini(&jw);
    side_fini(c, &sides[0]);
    side_fini(c, &sides[1]);
    vp_free(m.nodes);
    vp_free(m.slots);
    vp_free(rows);
    vp_free(size);
}

/* ---- speedscope ---- */

typedef struct scope_ctx {
    const vps_rundata *rd;
    vps_jw *w;
    const uint32_t *frame; /* per function: its index in shared.frames */
    uint32_t *path;        /* scratch, max depth */
    uint32_t prev_node;
    size_t prev_at, prev_len; /* where the previous sample's text is in w */
    uint64_t n;
} scope_ctx;

static int on_scope_sample(void *ctx, uint64_t idx, int64_t t, uint64_t rss, uint32_t node)
{
    scope_ctx *s = ctx;
    vps_jw *w = s->w;
    (void)idx, (void)t, (void)rss;
    if (s->n++)
        vps_jw_lit(w, ",");
    if (node == s->prev_node && s->prev_len) {
        /* Runs of one stack are common: repeat the text. */
        size_t start = w->len;
        vps_jw_copy(w, s->prev_at, s->prev_len);
        s->prev_at = start;
        return w->err;
    }
    const vps_rundata *rd = s->rd;
    uint32_t depth = rd->nodes[node].depth, x = node;
    for (uint32_t d = depth; d-- > 0;) {
        s->path[d] = s->frame[rd->nodes[x].func];
        x = rd->nodes[x].parent;
    }
    size_t start = w->len;
    vps_jw_lit(w, "[");
    for (uint32_t d = 0; d < depth; d++) {
        if (d)
            vps_jw_lit(w, ",");
        vps_jw_u64(w, s->path[d]);
    }
    vps_jw_lit(w, "]");
    s->prev_node = node;
    s->prev_at = start;
    s->prev_len = w->len - start;
    return w->err;
}

void vps_query_speedscope(vps_store *s, vps_rdcache *c, const char *id, vps_reply *out)
{
    vps_run run;
    vps_db *db = vps__open_run(s, id, &run, out);
    if (!db)
        return;
    vps_rundata *rd = vps__acquire(c, db, &run, out);
    if (!rd) {
        vps_run_fini(&run);
        return;
    }
    size_t nn = rd->nnodes, nf = rd->syms.nfuncs ? rd->syms.nfuncs : 1;
    uint32_t maxdepth = 1;
    for (uint32_t i = 0; i < rd->nnodes; i++) {
        if (rd->nodes[i].depth > maxdepth)
            maxdepth = rd->nodes[i].depth;
    }
    uint32_t *frame = vp_malloc(nf * sizeof(uint32_t));
    uint32_t *path = vp_malloc((size_t)maxdepth * sizeof(uint32_t));
    uint64_t *self = vp_malloc(nn * sizeof(uint64_t)), *tot = vp_malloc(nn * sizeof(uint64_t));
    uint64_t n = 0;
    int rc = VP_ENOMEM;
    vps_jw jw;
    vps_jw_init(&jw, VP_MAX_EXPORT_BYTES);
    if (frame && path && self && tot)
        rc = vps_rd_count(rd, db, 1, 0, 0, self, &n);
    if (rc == VP_OK) {
        vps__subtree(rd, self, tot);
        for (size_t i = 0; i < nf; i++)
            frame[i] = VPS_RD_NONE;
        /* Frames: the functions some sample has, in first-seen order. */
        uint32_t nframes = 0;
        vps_jw_lit(&jw, "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\","
                        "\"exporter\":\"vmprof-viewer\",\"name\":");
        const char *name = run.function && *run.function ? run.function : run.project;
        vps_jw_str(&jw, name ? name : "", name ? strlen(name) : 0);
        vps_jw_lit(&jw, ",\"activeProfileIndex\":0,\"shared\":{\"frames\":[");
        for (uint32_t i = 1; i < rd->nnodes; i++) {
            uint32_t f = rd->nodes[i].func;
            if (!tot[i] || frame[f] != VPS_RD_NONE)
                continue;
            const vps_func *fn = &rd->syms.funcs[f];
            frame[f] = nframes++;
            vps_jw_lit(&jw, nframes > 1 ? ",{\"name\":" : "{\"name\":");
            vps_jw_str(&jw, fn->name, fn->name_len);
            if (fn->file_len) {
                vps_jw_lit(&jw, ",\"file\":");
                vps_jw_str(&jw, fn->file, fn->file_len);
            }
            if (fn->line > 0) {
                vps_jw_lit(&jw, ",\"line\":");
                vps_jw_i64(&jw, fn->line);
            }
            vps_jw_lit(&jw, "}");
        }
        vps_jw_lit(&jw, "]},\"profiles\":[{\"type\":\"sampled\",\"name\":");
        vps_jw_str(&jw, name ? name : "", name ? strlen(name) : 0);
        vps_jw_lit(&jw, ",\"unit\":\"none\",\"startValue\":0,\"endValue\":");
        vps_jw_u64(&jw, n);
        vps_jw_lit(&jw, ",\"samples\":[");
        scope_ctx sc = {rd, &jw, frame, path, VPS_RD_NONE, 0, 0, 0};
        rc = vps_rd_each(rd, db, INT64_MIN, INT64_MAX, on_scope_sample, &sc);
        if (rc == VP_ETOOBIG || rc == VP_ENOMEM)
            rc = VP_OK; /* the writer's sticky error says it below */
        vps_jw_lit(&jw, "],\"weights\":[");
        for (uint64_t i = 0; i < sc.n && !jw.err; i++)
            vps_jw_raw(&jw, i ? ",1" : "1", i ? 2 : 1);
        vps_jw_lit(&jw, "]}]}");
    }
    vps_db_end(db);
    vps_rd_release(c, rd);
    vp_free(frame), vp_free(path), vp_free(self), vp_free(tot);
    if (rc != VP_OK) {
        vps_jw_fini(&jw);
        vps_run_fini(&run);
        vps__reply_failure(out, rc);
        return;
    }
    vps_jw_reply(&jw, out, json_ctype);
    if (out->status == 200)
        snprintf(out->disposition, sizeof(out->disposition),
                 "attachment; filename=\"vmprof-%s.speedscope.json\"", run.id);
    vps_run_fini(&run);
}
