/*
 * rundata.c - call tries, per-sample arrays and their cache (see rundata.h).
 *
 * Building a rundata reads the store in the caller's read transaction:
 * names, then every distinct stack with its sample count (one GROUP BY in
 * SQLite), then, in cached mode, every sample once. Nothing is read per
 * sample in a nested query, so a store that streams one result at a time
 * (PostgreSQL) works the same.
 *
 * Cache: entries are keyed by run id and invalidated by the run's
 * updated_us and sample count, so a live run that grew is rebuilt. The
 * bytes of every rundata the cache made, in the table or detached but still
 * in use, are counted against the budget; an entry that would not fit once
 * every unused entry is evicted is not cached, and its query streams from
 * the store. A query waits only for an entry being built by another query,
 * and a builder never waits for anything but the store, so two queries that
 * each hold one rundata and want another cannot deadlock.
 */
#include "rundata.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "metrics.h"
#include "u64map.h"

/* ---- building the trie ---- */

typedef struct builder {
    vps_rundata *rd;
    uint32_t nodes_cap;
    vps_u64map children; /* (parent << 32 | func) + 1 -> node */
    uint32_t *fstamp; /* per function: the last insertion that saw it */
    size_t fstamp_cap;
    uint32_t stamp;
    uint32_t *path; /* scratch: functions of one stack */
    uint32_t path_cap;
    uint64_t counted;
} builder;

static int add_node(builder *b, uint32_t parent, uint32_t func, uint32_t first, uint32_t *out)
{
    vps_rundata *rd = b->rd;
    if (rd->nnodes >= VP_MAX_QUERY_NODES)
        return VP_ETOOBIG;
    if (rd->nnodes == b->nodes_cap) {
        uint32_t cap = b->nodes_cap ? b->nodes_cap * 2 : 1024;
        vps_rd_node *n = vp_realloc(rd->nodes, (size_t)cap * sizeof(vps_rd_node));
        uint64_t *w = vp_realloc(rd->whole, (size_t)cap * sizeof(uint64_t));
        if (n)
            rd->nodes = n;
        if (w)
            rd->whole = w;
        if (!n || !w)
            return VP_ENOMEM;
        b->nodes_cap = cap;
    }
    uint32_t id = rd->nnodes++;
    rd->nodes[id] = (vps_rd_node){parent, func, parent == VPS_RD_NONE ? 0
                                                 : rd->nodes[parent].depth + 1, first};
    rd->whole[id] = 0;
    *out = id;
    return VP_OK;
}

/* child returns the node for func under parent, making it if needed. */
static int child(builder *b, uint32_t parent, uint32_t func, uint32_t first, uint32_t *out)
{
    int added;
    uint64_t *node = vps_u64map_slot(&b->children, ((uint64_t)parent << 32 | func) + 1, &added);
    if (!node)
        return VP_ENOMEM;
    if (!added) {
        *out = (uint32_t)*node;
        return VP_OK;
    }
    /* A failure here ends the build, and the map with it. */
    int rc = add_node(b, parent, func, first, out);
    if (rc == VP_OK)
        *node = *out;
    return rc;
}

static int smap_grow(vps_rundata *rd)
{
    size_t cap = rd->scap ? rd->scap * 2 : 1024;
    int64_t *keys = vp_malloc(cap * sizeof(int64_t));
    uint32_t *vals = vp_calloc(cap, sizeof(uint32_t));
    if (!keys || !vals) {
        vp_free(keys);
        vp_free(vals);
        return VP_ENOMEM;
    }
    for (size_t i = 0; i < rd->scap; i++) {
        if (!rd->svals[i])
            continue;
        size_t j = vps_hash64((uint64_t)rd->skeys[i]) & (cap - 1);
        while (vals[j])
            j = (j + 1) & (cap - 1);
        keys[j] = rd->skeys[i];
        vals[j] = rd->svals[i];
    }
    vp_free(rd->skeys);
    vp_free(rd->svals);
    rd->skeys = keys, rd->svals = vals, rd->scap = cap;
    return VP_OK;
}

/* smap_get returns the node of a stored stack id (the root if unknown). */
static uint32_t smap_get(const vps_rundata *rd, int64_t id)
{
    if (!rd->scap)
        return VPS_RD_ROOT;
    size_t mask = rd->scap - 1, i = vps_hash64((uint64_t)id) & mask;
    while (rd->svals[i]) {
        if (rd->skeys[i] == id)
            return rd->svals[i] - 1;
        i = (i + 1) & mask;
    }
    return VPS_RD_ROOT;
}

/* smap_find looks a stack id up: 1 and *val if present. */
static int smap_find(const vps_rundata *rd, int64_t id, uint32_t *val)
{
    if (!rd->scap)
        return 0;
    size_t mask = rd->scap - 1, i = vps_hash64((uint64_t)id) & mask;
    while (rd->svals[i]) {
        if (rd->skeys[i] == id) {
            *val = rd->svals[i] - 1;
            return 1;
        }
        i = (i + 1) & mask;
    }
    return 0;
}

static int smap_put(vps_rundata *rd, int64_t id, uint32_t node)
{
    if (rd->scount >= VP_MAX_QUERY_NODES)
        return VP_ETOOBIG;
    if ((rd->scount + 1) * 2 > rd->scap && smap_grow(rd) != VP_OK)
        return VP_ENOMEM;
    size_t mask = rd->scap - 1, i = vps_hash64((uint64_t)id) & mask;
    while (rd->svals[i] && rd->skeys[i] != id)
        i = (i + 1) & mask;
    if (!rd->svals[i])
        rd->scount++;
    rd->skeys[i] = id;
    rd->svals[i] = node + 1;
    return VP_OK;
}

/* insert_path returns the trie node of a stack (root-first addresses). */
static int insert_path(builder *b, const uint64_t *frames, uint32_t n, uint32_t *out)
{
    vps_rundata *rd = b->rd;
    int rc;
    if (n > b->path_cap) {
        uint32_t *p = vp_realloc(b->path, (size_t)n * sizeof(uint32_t));
        if (!p)
            return VP_ENOMEM;
        b->path = p, b->path_cap = n;
    }
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = vps_symtab_resolve(&rd->syms, frames[i], &b->path[i])) != VP_OK)
            return rc;
    }
    if (rd->syms.nfuncs > b->fstamp_cap) {
        size_t cap = rd->syms.nfuncs * 2;
        uint32_t *p = vp_realloc(b->fstamp, cap * sizeof(uint32_t));
        if (!p)
            return VP_ENOMEM;
        memset(p + b->fstamp_cap, 0, (cap - b->fstamp_cap) * sizeof(uint32_t));
        b->fstamp = p, b->fstamp_cap = cap;
    }
    /* A function's first appearance on the path marks its node, so that a
     * function's total counts each sample once however deep it recurses. */
    if (++b->stamp == 0) {
        memset(b->fstamp, 0, b->fstamp_cap * sizeof(uint32_t));
        b->stamp = 1;
    }
    uint32_t node = VPS_RD_ROOT;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t f = b->path[i];
        uint32_t first = b->fstamp[f] != b->stamp;
        b->fstamp[f] = b->stamp;
        if ((rc = child(b, node, f, first, &node)) != VP_OK)
            return rc;
    }
    *out = node;
    return VP_OK;
}

static int on_stack(void *ctx, int64_t stack_id, const uint64_t *frames, uint32_t n,
                    uint64_t count)
{
    builder *b = ctx;
    uint32_t node;
    int rc = insert_path(b, frames, n, &node);
    if (rc == VP_OK)
        rc = smap_put(b->rd, stack_id, node);
    if (rc != VP_OK)
        return rc;
    b->rd->whole[node] += count;
    b->counted += count;
    return 0;
}

static void rd_free(vps_rundata *rd)
{
    if (!rd)
        return;
    vps_symtab_fini(&rd->syms);
    vp_free(rd->nodes);
    vp_free(rd->checks);
    if (rd->map) {
        /* Everything but nodes and syms lives in the mapping. */
        munmap(rd->map, rd->map_len);
        vp_free(rd->skeys);
        vp_free(rd->svals);
        vp_free(rd);
        return;
    }
    vp_free(rd->whole);
    vp_free(rd->t_ns);
    vp_free(rd->rss_kb);
    vp_free(rd->node);
    vp_free(rd->blocks);
    vp_free(rd->bt);
    vp_free(rd->hist);
    vp_free(rd->order);
    vp_free(rd->skeys);
    vp_free(rd->svals);
    vp_free(rd);
}

/* rd_start makes an empty rundata of run with its names and root node. */
static int rd_start(vps_db *db, const vps_run *run, builder *b, vps_rundata **out)
{
    memset(b, 0, sizeof(*b));
    vps_rundata *rd = vp_calloc(1, sizeof(*rd));
    if (!rd)
        return VP_ENOMEM;
    vps_symtab_init(&rd->syms);
    rd->rid = run->rid;
    b->rd = rd;
    uint32_t root;
    int rc = add_node(b, VPS_RD_NONE, VPS_RD_NONE, 0, &root);
    if (rc == VP_OK)
        rc = vps_symtab_load(&rd->syms, db, run->rid);
    if (rc != VP_OK) {
        rd_free(rd);
        return rc;
    }
    *out = rd;
    return VP_OK;
}

static void builder_fini(builder *b)
{
    vps_u64map_fini(&b->children);
    vp_free(b->fstamp);
    vp_free(b->path);
}

static size_t trie_bytes(const vps_rundata *rd, const builder *b)
{
    return sizeof(*rd) + rd->syms.bytes +
           (size_t)b->nodes_cap * (sizeof(vps_rd_node) + sizeof(uint64_t)) +
           rd->scap * (sizeof(int64_t) + sizeof(uint32_t));
}

/* build_trie makes the names, trie and stack map of run: streaming mode.
 * The stacks come from one GROUP BY over the run's samples. */
static int build_trie(vps_db *db, const vps_run *run, vps_rundata **out)
{
    builder b;
    vps_rundata *rd;
    int rc = rd_start(db, run, &b, &rd);
    if (rc != VP_OK)
        return rc;
    rc = vps_db_each_stack_count(db, run->rid, on_stack, &b);
    if (rc != VP_OK) {
        builder_fini(&b);
        rd_free(rd);
        return rc;
    }
    /* Samples whose stack row is missing count as empty stacks. */
    rd->samples = run->samples > b.counted ? run->samples : b.counted;
    rd->whole[VPS_RD_ROOT] += rd->samples - b.counted;
    rd->bytes = trie_bytes(rd, &b);
    builder_fini(&b);
    *out = rd;
    return VP_OK;
}

/* ---- cached mode: the samples in arrays ---- */

/* Distinct stacks a cached load fetches one by one after its scan; past
 * this, one GROUP BY over the samples is cheaper than the lookups. */
#define POINT_LOOKUPS 65536u

typedef struct loader {
    vps_rundata *rd;
    uint64_t n, cap;
    int64_t *ids; /* per slot: the stack id */
    uint32_t nslots, slots_cap;
    uint32_t *slot_node;
    builder *b;
} loader;

/* During the scan node[i] holds the sample's stack slot, a dense number
 * per distinct stack id; the slots become trie nodes afterwards. */
static int on_row(void *ctx, const vps_sample_row *row)
{
    loader *l = ctx;
    vps_rundata *rd = l->rd;
    uint32_t slot;
    /* More rows than the run counts, or an RSS past 4 TiB: not cacheable
     * as laid out; the caller falls back to streaming. */
    if (l->n == l->cap || row->rss_kb > UINT32_MAX)
        return VP_EFULL;
    if (!smap_find(rd, row->stack_id, &slot)) {
        if (l->nslots == l->slots_cap) {
            uint32_t cap = l->slots_cap ? l->slots_cap * 2 : 1024;
            int64_t *p = vp_realloc(l->ids, (size_t)cap * sizeof(int64_t));
            if (!p)
                return VP_ENOMEM;
            l->ids = p, l->slots_cap = cap;
        }
        slot = l->nslots++;
        l->ids[slot] = row->stack_id;
        int rc = smap_put(rd, row->stack_id, slot);
        if (rc != VP_OK)
            return rc;
    }
    uint64_t i = l->n++;
    rd->t_ns[i] = row->t_ns;
    rd->rss_kb[i] = (uint32_t)row->rss_kb;
    rd->node[i] = slot;
    if (i > 0 && row->t_ns < rd->t_ns[i - 1])
        rd->monotonic = 0;
    return 0;
}

/* on_slot_stack gives a slot its node (the GROUP BY way). */
static int on_slot_stack(void *ctx, int64_t stack_id, const uint64_t *frames, uint32_t n,
                         uint64_t count)
{
    loader *l = ctx;
    uint32_t slot, node;
    (void)count;
    if (!smap_find(l->rd, stack_id, &slot))
        return 0;
    int rc = insert_path(l->b, frames, n, &node);
    if (rc == VP_OK)
        l->slot_node[slot] = node;
    return rc;
}

/* summarise fills the block summaries of a cached rundata. */
static int summarise(vps_rundata *rd)
{
    uint64_t nb = (rd->samples + VPS_RD_BLOCK - 1) / VPS_RD_BLOCK;
    rd->blocks = vp_calloc(nb ? nb : 1, sizeof(vps_rd_block));
    rd->bt = vp_malloc((nb ? nb : 1) * sizeof(int64_t));
    uint32_t *cnt = vp_calloc(rd->nnodes, sizeof(uint32_t));
    uint32_t *seen = vp_malloc(VPS_RD_BLOCK * sizeof(uint32_t));
    size_t hcap = 0, hn = 0;
    int rc = rd->blocks && rd->bt && cnt && seen ? VP_OK : VP_ENOMEM;
    for (uint64_t k = 0; k < nb && rc == VP_OK; k++) {
        uint64_t lo = k * VPS_RD_BLOCK, hi = lo + VPS_RD_BLOCK;
        if (hi > rd->samples)
            hi = rd->samples;
        vps_rd_block *b = &rd->blocks[k];
        rd->bt[k] = rd->t_ns[lo];
        b->min = UINT32_MAX, b->max = 0, b->sum = 0, b->argmax = 0;
        uint32_t nseen = 0;
        for (uint64_t i = lo; i < hi; i++) {
            uint32_t v = rd->rss_kb[i], x = rd->node[i];
            if (v < b->min)
                b->min = v;
            if (v > b->max || i == lo)
                b->max = v, b->argmax = (uint32_t)(i - lo), b->argmax_node = x;
            b->sum += v;
            if (cnt[x]++ == 0)
                seen[nseen++] = x;
        }
        b->nhist = VPS_RD_NONE;
        b->hist = hn;
        if (nseen <= VPS_RD_HIST_MAX) {
            if (hn + nseen > hcap) {
                size_t cap = hcap ? hcap * 2 : 4096;
                while (cap < hn + nseen)
                    cap *= 2;
                vps_rd_hist *p = vp_realloc(rd->hist, cap * sizeof(vps_rd_hist));
                if (!p) {
                    rc = VP_ENOMEM;
                    break;
                }
                rd->hist = p, hcap = cap;
            }
            for (uint32_t j = 0; j < nseen; j++)
                rd->hist[hn + j] = (vps_rd_hist){seen[j], cnt[seen[j]]};
            b->nhist = nseen;
            hn += nseen;
        }
        for (uint32_t j = 0; j < nseen; j++)
            cnt[seen[j]] = 0;
    }
    vp_free(cnt);
    vp_free(seen);
    if (rc == VP_OK)
        rd->bytes += nb * (sizeof(vps_rd_block) + sizeof(int64_t)) + hcap * sizeof(vps_rd_hist);
    return rc;
}

static int cmp_time(const void *a, const void *b, void *ctx)
{
    const int64_t *t = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (t[x] != t[y])
        return t[x] < t[y] ? -1 : 1;
    return (x > y) - (x < y);
}

/* time_order sorts positions by time for a clock that went backwards (the
 * threads of a real-time profile each write their own samples), so that the
 * memory view still sees each time bucket as one run of samples. */
static int time_order(vps_rundata *rd)
{
    rd->order = vp_malloc((rd->samples ? rd->samples : 1) * sizeof(uint32_t));
    if (!rd->order)
        return VP_ENOMEM;
    for (uint64_t i = 0; i < rd->samples; i++)
        rd->order[i] = (uint32_t)i;
    qsort_r(rd->order, rd->samples, sizeof(uint32_t), cmp_time, rd->t_ns);
    rd->bytes += rd->samples * sizeof(uint32_t);
    return VP_OK;
}

/* build_cached reads every sample once into arrays, then turns their
 * distinct stacks into the trie. VP_EFULL: the run does not fit the layout;
 * build a streaming rundata instead. */
static int build_cached(vps_db *db, const vps_run *run, vps_rundata **out)
{
    builder b;
    vps_rundata *rd;
    int rc = rd_start(db, run, &b, &rd);
    if (rc != VP_OK)
        return rc;
    uint64_t cap = run->samples;
    loader l = {.rd = rd, .cap = cap, .b = &b};
    rd->t_ns = vp_malloc((cap ? cap : 1) * sizeof(int64_t));
    rd->rss_kb = vp_malloc((cap ? cap : 1) * sizeof(uint32_t));
    rd->node = vp_malloc((cap ? cap : 1) * sizeof(uint32_t));
    rd->monotonic = 1;
    rc = rd->t_ns && rd->rss_kb && rd->node ? VP_OK : VP_ENOMEM;
    if (rc == VP_OK)
        rc = vps_db_each_sample(db, run->rid, INT64_MIN, INT64_MAX, on_row, &l);
    if (rc == VP_OK && l.n != cap)
        rc = VP_EFULL; /* the run's count and its rows disagree: stream */
    if (rc == VP_OK && !(l.slot_node = vp_calloc(l.nslots ? l.nslots : 1, sizeof(uint32_t))))
        rc = VP_ENOMEM;
    if (rc == VP_OK && l.nslots <= POINT_LOOKUPS) {
        for (uint32_t k = 0; k < l.nslots && rc == VP_OK; k++) {
            uint64_t *frames = NULL;
            uint32_t n = 0;
            rc = vps_db_get_stack(db, run->rid, l.ids[k], &frames, &n);
            if (rc == VP_ENOTFOUND) {
                rc = VP_OK; /* a sample without its stack row: an empty stack */
                continue;
            }
            if (rc == VP_OK)
                rc = insert_path(&b, frames, n, &l.slot_node[k]);
            vp_free(frames);
        }
    } else if (rc == VP_OK) {
        rc = vps_db_each_stack_count(db, run->rid, on_slot_stack, &l);
    }
    if (rc == VP_OK) {
        for (uint64_t i = 0; i < cap; i++) {
            uint32_t node = l.slot_node[rd->node[i]];
            rd->node[i] = node;
            rd->whole[node]++;
        }
        rd->samples = cap;
        /* The stack map is only needed to read samples from the store. */
        vp_free(rd->skeys), vp_free(rd->svals);
        rd->skeys = NULL, rd->svals = NULL, rd->scap = rd->scount = 0;
        rd->bytes = trie_bytes(rd, &b) + (size_t)cap * 16;
        rd->cached = 1;
        rc = summarise(rd);
        if (rc == VP_OK && !rd->monotonic)
            rc = time_order(rd);
    }
    vp_free(l.ids);
    vp_free(l.slot_node);
    builder_fini(&b);
    if (rc != VP_OK) {
        rd_free(rd);
        return rc;
    }
    *out = rd;
    return VP_OK;
}

/* ---- iteration ---- */

typedef struct stream_ctx {
    const vps_rundata *rd;
    vps_rd_cb cb;
    void *ctx;
} stream_ctx;

static int on_stream_row(void *vctx, const vps_sample_row *row)
{
    stream_ctx *s = vctx;
    return s->cb(s->ctx, row->idx, row->t_ns, row->rss_kb, smap_get(s->rd, row->stack_id));
}

/* bisect returns the first position whose time is >= t (arrays sorted). */
static uint64_t bisect(const int64_t *a, uint64_t n, int64_t t)
{
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int vps_rd_each(const vps_rundata *rd, vps_db *db, int64_t from_ns, int64_t to_ns, vps_rd_cb cb,
                void *ctx)
{
    if (!rd->cached) {
        stream_ctx s = {rd, cb, ctx};
        return vps_db_each_sample(db, rd->rid, from_ns, to_ns, on_stream_row, &s);
    }
    uint64_t lo = 0, hi = rd->samples;
    if (rd->monotonic) {
        lo = bisect(rd->t_ns, rd->samples, from_ns);
        hi = to_ns == INT64_MAX ? rd->samples : bisect(rd->t_ns, rd->samples, to_ns + 1);
    }
    vps_rd_will_need(rd, lo, hi, 1);
    int rc = vps_rd_check_samples(rd, lo, hi);
    if (rc != VP_OK)
        return rc;
    for (uint64_t i = lo; i < hi; i++) {
        int64_t t = rd->t_ns[i];
        if (t < from_ns || t > to_ns)
            continue;
        rc = cb(ctx, i, t, rd->rss_kb[i], rd->node[i]);
        if (rc)
            return rc;
    }
    return VP_OK;
}

typedef struct count_ctx {
    uint64_t *counts, n;
} count_ctx;

static int on_count(void *vctx, uint64_t idx, int64_t t, uint64_t rss, uint32_t node)
{
    count_ctx *c = vctx;
    (void)idx, (void)t, (void)rss;
    c->counts[node]++;
    c->n++;
    return 0;
}

int vps_rd_count(const vps_rundata *rd, vps_db *db, int whole, int64_t from_ns, int64_t to_ns,
                 uint64_t *counts, uint64_t *n)
{
    if (whole) {
        memcpy(counts, rd->whole, (size_t)rd->nnodes * sizeof(uint64_t));
        *n = rd->samples;
        return VP_OK;
    }
    memset(counts, 0, (size_t)rd->nnodes * sizeof(uint64_t));
    if (rd->cached) {
        /* The hot loop of every windowed CPU query: no callback. */
        uint64_t lo = 0, hi = rd->samples, k = 0;
        if (rd->monotonic) {
            lo = bisect(rd->t_ns, rd->samples, from_ns);
            hi = to_ns == INT64_MAX ? rd->samples : bisect(rd->t_ns, rd->samples, to_ns + 1);
            *n = hi - lo;
            return vps_rd_count_range(rd, lo, hi, counts);
        }
        /* A clock that went backwards: every index was checked at load. */
        vps_rd_will_need(rd, lo, hi, 1);
        for (uint64_t i = lo; i < hi; i++) {
            if (rd->t_ns[i] >= from_ns && rd->t_ns[i] <= to_ns) {
                counts[rd->node[i]]++;
                k++;
            }
        }
        *n = k;
        return VP_OK;
    }
    count_ctx c = {counts, 0};
    int rc = vps_rd_each(rd, db, from_ns, to_ns, on_count, &c);
    *n = c.n;
    return rc;
}

int vps_rd_count_range(const vps_rundata *rd, uint64_t lo, uint64_t hi, uint64_t *counts)
{
    int rc;
    while (lo < hi) {
        uint64_t k = lo / VPS_RD_BLOCK, end = (k + 1) * VPS_RD_BLOCK;
        const vps_rd_block *b = &rd->blocks[k];
        if ((rc = vps_rd_check_summary(rd, k)) != VP_OK)
            return rc;
        if (lo == k * VPS_RD_BLOCK && end <= hi && b->nhist != VPS_RD_NONE) {
            const vps_rd_hist *h = rd->hist + b->hist;
            for (uint32_t j = 0; j < b->nhist; j++)
                counts[h[j].node] += h[j].count;
            lo = end;
            continue;
        }
        if (end > hi)
            end = hi;
        if ((rc = vps_rd_check_samples(rd, lo, end)) != VP_OK)
            return rc;
        for (uint64_t i = lo; i < end; i++)
            counts[rd->node[i]]++;
        lo = end;
    }
    return VP_OK;
}

uint64_t vps_rd_lower(const vps_rundata *rd, int64_t t_ns)
{
    /* Blocks first: a search touches two pages of t_ns, not twenty. The
     * answer is in the block before the first that starts at or after
     * t_ns, or is that block's start. */
    uint64_t nb = (rd->samples + VPS_RD_BLOCK - 1) / VPS_RD_BLOCK;
    uint64_t k = bisect(rd->bt, nb, t_ns);
    if (k == 0)
        return 0;
    uint64_t lo = (k - 1) * VPS_RD_BLOCK, hi = k * VPS_RD_BLOCK;
    if (hi > rd->samples)
        hi = rd->samples;
    return lo + bisect(rd->t_ns + lo, hi - lo, t_ns);
}

/* Linux reads at most the device's read-ahead size (8 MiB here) per
 * MADV_WILLNEED call and drops the rest, so longer ranges go in pieces. */
#define ADVISE_CHUNK ((uintptr_t)4 << 20)

/* advise starts reading n bytes at p of a mapping (pages around them). */
static void advise(const void *p, size_t n)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(page - 1), z = ((uintptr_t)p + n + page - 1) & ~(page - 1);
    for (; n && a < z; a += ADVISE_CHUNK) {
        uintptr_t len = z - a < ADVISE_CHUNK ? z - a : ADVISE_CHUNK;
        (void)madvise((void *)a, len, MADV_WILLNEED); /* advice: failure is harmless */
    }
}

void vps_rd_will_need(const vps_rundata *rd, uint64_t lo, uint64_t hi, int with_time)
{
    if (!rd->map || lo >= hi)
        return;
    if (hi > rd->samples)
        hi = rd->samples;
    if (with_time)
        advise(rd->t_ns + lo, (hi - lo) * sizeof(int64_t));
    advise(rd->rss_kb + lo, (hi - lo) * sizeof(uint32_t));
    advise(rd->node + lo, (hi - lo) * sizeof(uint32_t));
}

void vps_rd_will_need_at(const vps_rundata *rd, int64_t t_ns)
{
    if (!rd->map)
        return;
    uint64_t k = bisect(rd->bt, (rd->samples + VPS_RD_BLOCK - 1) / VPS_RD_BLOCK, t_ns);
    if (k > 0)
        vps_rd_will_need(rd, (k - 1) * VPS_RD_BLOCK, k * VPS_RD_BLOCK, 1);
}

uint32_t vps_rd_lca(const vps_rundata *rd, uint32_t a, uint32_t b)
{
    const vps_rd_node *n = rd->nodes;
    while (n[a].depth > n[b].depth)
        a = n[a].parent;
    while (n[b].depth > n[a].depth)
        b = n[b].parent;
    while (a != b) {
        a = n[a].parent;
        b = n[b].parent;
    }
    return a;
}

/* ---- summary files ----
 *
 * A finished run's cached rundata written as it is in memory, so that the
 * next server (or this one after an eviction) maps it instead of reading
 * every sample from the store again. Layout: a sum_head, then the sections
 * at the offsets it gives (8-byte aligned), in this host's byte order (the
 * head says which; another order is simply rebuilt):
 *   NODES  vps_rd_node x nnodes (func is not trusted: see ADDRS)
 *   ADDRS  u64 x nnodes: a code address of each node's function; function
 *          indices depend on the order a symtab met them, so a loader
 *          resolves these again against the run's names
 *   WHOLE  u64 x nnodes;  T i64, RSS u32, NODE u32 x samples;
 *   BLOCKS vps_rd_block x ceil(samples / VPS_RD_BLOCK); HIST vps_rd_hist x nhist;
 *   ORDER  u32 x samples when the clock is not monotonic, else empty.
 * A file is valid for one version of a run: id, rid, updated_us and
 * samples must match the run read in the query's transaction. Files are
 * written to a temporary name, synced and renamed, so a reader sees a
 * whole file or none; the loader checks every index it will follow, so a
 * damaged file is refused (and rebuilt), never trusted.
 */

enum { SEC_NODES, SEC_ADDRS, SEC_WHOLE, SEC_T, SEC_RSS, SEC_NODE, SEC_BLOCKS, SEC_HIST,
       SEC_ORDER, SEC_BT, SEC_COUNT };

/* 2 added BT and each block's argmax_node; a file of 1 is rebuilt. */
#define SUM_MAGIC "VPRDSUM2"
#define SUM_ENDIAN 0x01020304u

typedef struct sum_head {
    char magic[8];
    uint32_t endian, head_bytes;
    char id[40];
    int64_t rid, updated_us;
    uint64_t samples, nblocks, nhist;
    uint32_t nnodes, monotonic;
    uint64_t off[SEC_COUNT], len[SEC_COUNT];
    uint64_t file_bytes;
} sum_head;

static void sum_path(const char *dir, const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.rd", dir, id);
}

/* sum_layout fills h's section lengths and offsets from its counts. */
static void sum_layout(sum_head *h)
{
    uint64_t n = h->samples, k = h->nnodes;
    h->len[SEC_NODES] = k * sizeof(vps_rd_node);
    h->len[SEC_ADDRS] = k * sizeof(uint64_t);
    h->len[SEC_WHOLE] = k * sizeof(uint64_t);
    h->len[SEC_T] = n * sizeof(int64_t);
    h->len[SEC_RSS] = n * sizeof(uint32_t);
    h->len[SEC_NODE] = n * sizeof(uint32_t);
    h->len[SEC_BLOCKS] = h->nblocks * sizeof(vps_rd_block);
    h->len[SEC_HIST] = h->nhist * sizeof(vps_rd_hist);
    h->len[SEC_ORDER] = h->monotonic ? 0 : n * sizeof(uint32_t);
    h->len[SEC_BT] = h->nblocks * sizeof(int64_t);
    uint64_t at = (sizeof(sum_head) + 63) & ~(uint64_t)63;
    for (int i = 0; i < SEC_COUNT; i++) {
        h->off[i] = at;
        at = (at + h->len[i] + 63) & ~(uint64_t)63;
    }
    h->file_bytes = at;
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t at)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return VP_EIO;
        p += w, n -= (size_t)w, at += (uint64_t)w;
    }
    return VP_OK;
}

/* sum_write writes the summary file of a cached, store-built rundata;
 * VP_EFULL if it would be bigger than max bytes. */
static int sum_write(const char *dir, const vps_run *run, const vps_rundata *rd, uint64_t max)
{
    sum_head h;
    char path[4200], tmp[4200];
    uint64_t *fa = NULL, *addrs = NULL;
    int fd = -1, made = 0, rc = VP_ENOMEM;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, SUM_MAGIC, 8);
    h.endian = SUM_ENDIAN;
    h.head_bytes = sizeof(h);
    memcpy(h.id, run->id, sizeof(run->id));
    h.rid = run->rid;
    h.updated_us = run->updated_us;
    h.samples = rd->samples;
    h.nnodes = rd->nnodes;
    h.monotonic = rd->monotonic ? 1 : 0;
    h.nblocks = (rd->samples + VPS_RD_BLOCK - 1) / VPS_RD_BLOCK;
    for (uint64_t k = 0; k < h.nblocks; k++) {
        const vps_rd_block *b = &rd->blocks[k];
        if (b->nhist != VPS_RD_NONE && b->hist + b->nhist > h.nhist)
            h.nhist = b->hist + b->nhist;
    }
    sum_layout(&h);
    if (h.file_bytes > max)
        return VP_EFULL;
    /* One address per function: any address the symtab maps to it. */
    fa = vp_calloc(rd->syms.nfuncs ? rd->syms.nfuncs : 1, sizeof(uint64_t));
    addrs = vp_calloc(rd->nnodes, sizeof(uint64_t));
    if (!fa || !addrs)
        goto fail;
    for (size_t i = 0; i < rd->syms.acap; i++) {
        if (rd->syms.avals[i])
            fa[rd->syms.avals[i] - 1] = rd->syms.akeys[i];
    }
    for (uint32_t i = 1; i < rd->nnodes; i++)
        addrs[i] = fa[rd->nodes[i].func];
    sum_path(dir, run->id, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, run->id);
    rc = VP_EIO;
    if ((fd = mkstemp(tmp)) < 0)
        goto fail;
    made = 1;
    const void *sec[SEC_COUNT] = {rd->nodes, addrs, rd->whole, rd->t_ns, rd->rss_kb,
                                  rd->node, rd->blocks, rd->hist, rd->order, rd->bt};
    if (ftruncate(fd, (off_t)h.file_bytes) != 0 || pwrite_all(fd, &h, sizeof(h), 0) != VP_OK)
        goto fail;
    for (int i = 0; i < SEC_COUNT; i++) {
        if (h.len[i] && pwrite_all(fd, sec[i], h.len[i], h.off[i]) != VP_OK)
            goto fail;
    }
    /* Synced before the rename: after a crash the name holds all of it or
     * the previous file (or none), never a file with holes. */
    int synced = fsync(fd) == 0;
    int closed = close(fd) == 0;
    fd = -1;
    if (!synced || !closed)
        goto fail;
    if (rename(tmp, path) != 0)
        goto fail;
    made = 0;
    rc = VP_OK;
fail:
    if (fd >= 0)
        close(fd);
    if (made)
        unlink(tmp);
    vp_free(fa);
    vp_free(addrs);
    return rc;
}

/* sum_check says whether the head describes a file of len bytes for run. */
static int sum_check(const sum_head *h, const vps_run *run, uint64_t len)
{
    sum_head want;
    if (memcmp(h->magic, SUM_MAGIC, 8) != 0 || h->endian != SUM_ENDIAN ||
        h->head_bytes != sizeof(*h) || memcmp(h->id, run->id, sizeof(run->id)) != 0 ||
        h->rid != run->rid || h->updated_us != run->updated_us || h->samples != run->samples ||
        h->samples > UINT32_MAX || h->nnodes == 0 || h->nnodes > VP_MAX_QUERY_NODES ||
        h->monotonic > 1 || h->nblocks != (h->samples + VPS_RD_BLOCK - 1) / VPS_RD_BLOCK ||
        h->nhist > h->nblocks * VPS_RD_HIST_MAX)
        return 0;
    memcpy(&want, h, sizeof(want));
    sum_layout(&want);
    return memcmp(want.off, h->off, sizeof(want.off)) == 0 &&
           memcmp(want.len, h->len, sizeof(want.len)) == 0 && want.file_bytes == len &&
           h->file_bytes == len;
}

/* block_samples_ok says whether every node index of block k's samples
 * is a node. No early exit: the compiler vectorises the loop. */
static int block_samples_ok(const vps_rundata *rd, uint64_t k)
{
    const uint32_t *node = rd->node, nn = rd->nnodes;
    uint64_t lo = k * VPS_RD_BLOCK, hi = lo + VPS_RD_BLOCK;
    if (hi > rd->samples)
        hi = rd->samples;
    uint32_t bad = 0;
    for (uint64_t i = lo; i < hi; i++)
        bad |= node[i] >= nn;
    return !bad;
}

/* block_summary_ok checks what block k's summary points at: its argmax
 * and its hist entries (of nhist in the file). */
static int block_summary_ok(const vps_rundata *rd, uint64_t k, uint64_t nhist)
{
    const vps_rd_block *b = &rd->blocks[k];
    if (b->argmax >= VPS_RD_BLOCK || b->argmax >= rd->samples - k * VPS_RD_BLOCK ||
        b->argmax_node >= rd->nnodes)
        return 0;
    if (b->nhist == VPS_RD_NONE)
        return 1;
    if (b->nhist > VPS_RD_HIST_MAX || b->hist > nhist || b->nhist > nhist - b->hist)
        return 0;
    for (uint32_t j = 0; j < b->nhist; j++) {
        if (rd->hist[b->hist + j].node >= rd->nnodes)
            return 0;
    }
    return 1;
}

/* sum_valid checks every index a query can follow in a mapped rundata
 * whose clock went backwards: its order array sends a walk anywhere, so
 * such a file is checked whole at load. */
static int sum_valid(const vps_rundata *rd, uint64_t nhist)
{
    const uint32_t *order = rd->order;
    const uint64_t ns = rd->samples, nb = (ns + VPS_RD_BLOCK - 1) / VPS_RD_BLOCK;
    const uint32_t n32 = (uint32_t)ns; /* ns <= UINT32_MAX: sum_check */
    uint32_t bad = 0;
    for (uint64_t i = 0; order && i < ns; i++)
        bad |= order[i] >= n32;
    for (uint64_t k = 0; k < nb && !bad; k++)
        bad |= !block_samples_ok(rd, k) || !block_summary_ok(rd, k, nhist);
    return !bad;
}

static int checks_failed(const vps_rundata *rd)
{
    atomic_store(&rd->checks->damaged, 1);
    return VP_ECORRUPT;
}

int vps__rd_check_samples_slow(const vps_rundata *rd, uint64_t lo, uint64_t hi)
{
    if (hi > rd->samples)
        hi = rd->samples;
    for (uint64_t k = lo / VPS_RD_BLOCK; k * VPS_RD_BLOCK < hi; k++) {
        _Atomic uint8_t *bits = &rd->checks->block[k];
        if (atomic_load_explicit(bits, memory_order_acquire) & VPS_RD_CHECKED_SAMPLES)
            continue;
        /* Two queries may check the same block at once: both find the
         * same answer, so no lock. */
        if (!block_samples_ok(rd, k))
            return checks_failed(rd);
        atomic_fetch_or_explicit(bits, VPS_RD_CHECKED_SAMPLES, memory_order_release);
    }
    return VP_OK;
}

int vps__rd_check_summary_slow(const vps_rundata *rd, uint64_t k)
{
    if (!block_summary_ok(rd, k, rd->checks->nhist))
        return checks_failed(rd);
    atomic_fetch_or_explicit(&rd->checks->block[k], VPS_RD_CHECKED_SUMMARY,
                             memory_order_release);
    return VP_OK;
}

/* sum_load maps run's summary file. VP_ENOTFOUND: no usable file (a stale
 * one is removed); any other failure is the caller's cue to rebuild. */
static int sum_load(const char *dir, vps_db *db, const vps_run *run, vps_rundata **out)
{
    char path[4200];
    sum_head h;
    struct stat st;
    vps_rundata *rd = NULL;
    void *map = MAP_FAILED;
    int rc = VP_ENOTFOUND;
    sum_path(dir, run->id, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return VP_ENOTFOUND;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < sizeof(h) ||
        pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
        goto fail;
    if (!sum_check(&h, run, (uint64_t)st.st_size)) {
        /* An older version of the run (or garbage): it will not be valid
         * again. A newer one belongs to a reader that came late: keep. */
        if (memcmp(h.magic, SUM_MAGIC, 8) != 0 || h.updated_us < run->updated_us)
            unlink(path);
        goto fail;
    }
    rc = VP_ENOMEM;
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED || !(rd = vp_calloc(1, sizeof(*rd))))
        goto fail;
    /* Recently used: sum_trim removes the least recently used files. */
    (void)futimens(fd, NULL);
    close(fd);
    fd = -1;
    const uint8_t *base = map;
    vps_symtab_init(&rd->syms);
    rd->map = map, rd->map_len = (size_t)st.st_size;
    map = MAP_FAILED;
    rd->rid = run->rid;
    rd->nnodes = h.nnodes;
    rd->samples = h.samples;
    rd->cached = 1;
    rd->monotonic = (int)h.monotonic;
    rd->whole = (uint64_t *)(base + h.off[SEC_WHOLE]);
    rd->t_ns = (int64_t *)(base + h.off[SEC_T]);
    rd->rss_kb = (uint32_t *)(base + h.off[SEC_RSS]);
    rd->node = (uint32_t *)(base + h.off[SEC_NODE]);
    rd->blocks = (vps_rd_block *)(base + h.off[SEC_BLOCKS]);
    rd->hist = (vps_rd_hist *)(base + h.off[SEC_HIST]);
    rd->order = h.monotonic ? NULL : (uint32_t *)(base + h.off[SEC_ORDER]);
    rd->bt = (int64_t *)(base + h.off[SEC_BT]);
    /* Read a page at a time where queries look (the device's read-ahead
     * here is 8 MiB: each first touch of a cold page read that much, so a
     * query that needed a few pages read most of the file); what a query
     * scans is asked for in one go (vps_rd_will_need), and the small
     * sections now, since the trie and every block query read them. */
    (void)madvise(rd->map, rd->map_len, MADV_RANDOM);
    for (int i = 0; i < SEC_COUNT; i++) {
        if (i != SEC_T && i != SEC_RSS && i != SEC_NODE && (i != SEC_ORDER || !h.monotonic))
            advise(base + h.off[i], h.len[i]);
    }
    if (!h.monotonic)
        advise(base + h.off[SEC_NODE], h.len[SEC_NODE]); /* checked whole below */
    if (!(rd->nodes = vp_malloc((size_t)h.nnodes * sizeof(vps_rd_node))))
        goto fail;
    memcpy(rd->nodes, base + h.off[SEC_NODES], (size_t)h.nnodes * sizeof(vps_rd_node));
    const uint64_t *addrs = (const uint64_t *)(base + h.off[SEC_ADDRS]);
    if ((rc = vps_symtab_load(&rd->syms, db, run->rid)) != VP_OK)
        goto fail;
    rc = VP_ECORRUPT;
    rd->nodes[0] = (vps_rd_node){VPS_RD_NONE, VPS_RD_NONE, 0, 0};
    for (uint32_t i = 1; i < h.nnodes; i++) {
        vps_rd_node *n = &rd->nodes[i];
        if (n->parent >= i || n->first > 1)
            goto fail;
        n->depth = rd->nodes[n->parent].depth + 1;
        int r = vps_symtab_resolve(&rd->syms, addrs[i], &n->func);
        if (r != VP_OK) {
            rc = r;
            goto fail;
        }
    }
    if (h.monotonic) {
        rc = VP_ENOMEM;
        if (!(rd->checks = vp_calloc(1, sizeof(vps_rd_checks) + h.nblocks)))
            goto fail;
        rd->checks->nhist = h.nhist;
        rc = VP_ECORRUPT;
    } else if (!sum_valid(rd, h.nhist)) {
        goto fail;
    }
    rd->bytes = sizeof(*rd) + rd->syms.bytes + (size_t)h.nnodes * sizeof(vps_rd_node) +
                rd->map_len + (rd->checks ? sizeof(vps_rd_checks) + h.nblocks : 0);
    *out = rd;
    return VP_OK;
fail:
    if (rc == VP_ECORRUPT) {
        vp_warn("run %s: summary file %s is damaged; reading the run from the store", run->id,
                path);
        unlink(path);
    }
    if (fd >= 0)
        close(fd);
    if (map != MAP_FAILED)
        munmap(map, (size_t)st.st_size);
    rd_free(rd);
    return rc == VP_ECORRUPT ? VP_ENOTFOUND : rc;
}

/* ---- the cache ---- */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

enum { E_LOADING, E_READY };

typedef struct entry {
    struct entry *next;
    char id[33];
    int64_t rid, updated_us;
    uint64_t samples;
    int state;
    int detached; /* out of the table; freed by the last release */
    unsigned pins;
    uint64_t used; /* LRU clock */
    size_t bytes;  /* counted in the cache's total */
    vps_rundata *rd;
} entry;

struct vps_rdcache {
    char *dir; /* summary files, NULL if none */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    entry *head;
    unsigned count, max_runs;
    size_t bytes, budget;
    uint64_t clock;
    uint64_t sum_max;          /* bytes of summary files kept */
    pthread_mutex_t trim_lock; /* one sum_trim at a time */
};

int vps_rdcache_new(size_t budget, unsigned max_runs, const char *dir, vps_rdcache **out)
{
    vps_rdcache *c = vp_calloc(1, sizeof(*c));
    if (!c)
        return VP_ENOMEM;
    if (dir && *dir) {
        /* Without the directory the server still works, only slower. */
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            vp_warn("summary files off: cannot create %s: %s", dir, strerror(errno));
        else if (!(c->dir = vp_strndup(dir, strlen(dir)))) {
            vp_free(c);
            return VP_ENOMEM;
        }
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    pthread_mutex_init(&c->trim_lock, NULL);
    c->sum_max = VP_SUMMARY_BYTES;
    c->budget = budget;
    c->max_runs = max_runs ? max_runs : 1;
    *out = c;
    return VP_OK;
}

void vps_rdcache_free(vps_rdcache *c)
{
    if (!c)
        return;
    for (entry *e = c->head, *next; e; e = next) {
        next = e->next;
        rd_free(e->rd);
        vp_free(e);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->trim_lock);
    vp_free(c->dir);
    vp_free(c);
}

void vps_rdcache_set_summary_max(vps_rdcache *c, uint64_t bytes)
{
    c->sum_max = bytes;
}

typedef struct sum_file {
    char name[64];
    uint64_t bytes;
    struct timespec used;
} sum_file;

static int cmp_used(const void *a, const void *b)
{
    const struct timespec *x = &((const sum_file *)a)->used, *y = &((const sum_file *)b)->used;
    if (x->tv_sec != y->tv_sec)
        return x->tv_sec < y->tv_sec ? -1 : 1;
    return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

/* sum_trim removes the least recently used summary files (a load touches
 * its file's mtime) but keep until the directory holds at most sum_max
 * bytes. A file unlinked while a rundata maps it stays readable to it. */
static void sum_trim(vps_rdcache *c, const char *keep)
{
    sum_file *files = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    pthread_mutex_lock(&c->trim_lock);
    DIR *d = opendir(c->dir);
    if (!d)
        goto fail;
    for (struct dirent *de; (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        struct stat st;
        if (len < 4 || len >= sizeof(files->name) || strcmp(de->d_name + len - 3, ".rd") != 0 ||
            de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, 0) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        total += (uint64_t)st.st_size;
        if (strcmp(de->d_name, keep) == 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            sum_file *p = vp_realloc(files, ncap * sizeof(*p));
            if (!p)
                goto fail;
            files = p, cap = ncap;
        }
        memcpy(files[n].name, de->d_name, len + 1);
        files[n].bytes = (uint64_t)st.st_size;
        files[n].used = st.st_mtim;
        n++;
    }
    if (total > c->sum_max)
        qsort(files, n, sizeof(*files), cmp_used);
    for (size_t i = 0; i < n && total > c->sum_max; i++) {
        if (unlinkat(dirfd(d), files[i].name, 0) == 0) {
            total -= files[i].bytes;
            VPS_COUNT(VPS_M_SUMMARY_REMOVED);
            vp_info("summary file %s/%s removed: the directory is over %llu MiB", c->dir,
                    files[i].name, (unsigned long long)(c->sum_max >> 20));
        }
    }
fail:
    if (d)
        closedir(d);
    pthread_mutex_unlock(&c->trim_lock);
    vp_free(files);
}

/* unlink takes e out of the table (lock held). */
static void unlink_entry(vps_rdcache *c, entry *e)
{
    for (entry **p = &c->head; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            c->count--;
            return;
        }
    }
}

/* retire detaches e; it is freed now if nobody uses it (lock held). */
static void retire(vps_rdcache *c, entry *e)
{
    unlink_entry(c, e);
    e->detached = 1;
    if (e->pins == 0 && e->state == E_READY) {
        c->bytes -= e->bytes;
        rd_free(e->rd);
        vp_free(e);
    }
}

/* make_room evicts unused ready entries, oldest first, until bytes more
 * fit and a slot is free; says whether they do (lock held). */
static int make_room(vps_rdcache *c, size_t bytes, const entry *keep)
{
    /* Evict nothing if evicting everything unused would not be enough. */
    size_t free_bytes = 0;
    unsigned free_runs = 0;
    for (entry *e = c->head; e; e = e->next) {
        if (e != keep && e->state == E_READY && e->pins == 0)
            free_bytes += e->bytes, free_runs++;
    }
    if (c->bytes - free_bytes + bytes > c->budget || c->count - free_runs > c->max_runs)
        return 0;
    for (;;) {
        if (c->bytes + bytes <= c->budget && c->count <= c->max_runs)
            return 1;
        entry *victim = NULL;
        for (entry *e = c->head; e; e = e->next) {
            if (e != keep && e->state == E_READY && e->pins == 0 &&
                (!victim || e->used < victim->used))
                victim = e;
        }
        if (!victim)
            return 0;
        retire(c, victim);
    }
}

static entry *find(vps_rdcache *c, const char *id)
{
    for (entry *e = c->head; e; e = e->next) {
        if (strcmp(e->id, id) == 0)
            return e;
    }
    return NULL;
}

int vps_rd_acquire(vps_rdcache *c, vps_db *db, const vps_run *run, vps_rundata **out)
{
    if (!c)
        return build_trie(db, run, out);
    pthread_mutex_lock(&c->lock);
    entry *e;
    for (;;) {
        e = find(c, run->id);
        if (!e)
            break;
        if (e->rid != run->rid || e->updated_us != run->updated_us ||
            e->samples != run->samples) {
            /* The run changed since (or a reader with an older snapshot
             * came late): the newer version wins the slot. */
            if (e->updated_us > run->updated_us) {
                pthread_mutex_unlock(&c->lock);
                return build_trie(db, run, out);
            }
            if (e->state == E_LOADING) {
                pthread_cond_wait(&c->changed, &c->lock);
                continue;
            }
            retire(c, e);
            break;
        }
        if (e->state == E_READY) {
            e->pins++;
            e->used = ++c->clock;
            *out = e->rd;
            pthread_mutex_unlock(&c->lock);
            return VP_OK;
        }
        pthread_cond_wait(&c->changed, &c->lock);
    }
    e = vp_calloc(1, sizeof(*e));
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        return VP_ENOMEM;
    }
    memcpy(e->id, run->id, sizeof(e->id));
    e->rid = run->rid;
    e->updated_us = run->updated_us;
    e->samples = run->samples;
    e->state = E_LOADING;
    e->next = c->head;
    c->head = e;
    c->count++;
    pthread_mutex_unlock(&c->lock);

    /* Reserve the arrays' bytes (plus some for the trie) before reading
     * anything, so that two big loads at once cannot both overshoot. */
    vps_rundata *rd = NULL;
    int64_t t0 = mono_us();
    size_t want = sizeof(*rd) + (size_t)run->samples * 16 + ((size_t)1 << 20);
    int fits = 0;
    pthread_mutex_lock(&c->lock);
    if (run->samples <= UINT32_MAX && want <= c->budget && make_room(c, want, e)) {
        c->bytes += want;
        e->bytes = want;
        fits = 1;
    }
    pthread_mutex_unlock(&c->lock);
    int rc = VP_EFULL, wrote = 0;
    if (fits && c->dir)
        rc = sum_load(c->dir, db, run, &rd);
    if (fits && rc != VP_OK) {
        rc = build_cached(db, run, &rd);
        /* A finished run will not change: keep it for the next time. */
        if (rc == VP_OK && c->dir && strcmp(run->status, "live") != 0) {
            int64_t w0 = mono_us();
            int wrc = sum_write(c->dir, run, rd, c->sum_max);
            if (wrc == VP_EFULL) {
                VPS_COUNT(VPS_M_SUMMARY_SKIPPED);
                vp_info("run %s: no summary file: larger than --summary-max-mb", run->id);
            } else if (wrc != VP_OK) {
                vp_warn("run %s: cannot write its summary file in %s: %s", run->id, c->dir,
                        vp_strerror(wrc));
            } else {
                wrote = (int)((mono_us() - w0) / 1000) + 1;
                char keep[64];
                snprintf(keep, sizeof(keep), "%s.rd", run->id);
                sum_trim(c, keep);
            }
        }
    }
    if (rc == VP_EFULL)
        rc = build_trie(db, run, &rd);
    pthread_mutex_lock(&c->lock);
    if (rc == VP_OK && rd->cached) {
        /* The real size; evict more if the trie was bigger than guessed. */
        c->bytes = c->bytes - e->bytes + rd->bytes;
        e->bytes = rd->bytes;
        make_room(c, 0, e);
        e->rd = rd;
        rd->entry = e;
        e->state = E_READY;
        e->pins = 1;
        e->used = ++c->clock;
    } else {
        /* Not cached: the entry goes, the rundata (if any) is this query's. */
        c->bytes -= e->bytes;
        unlink_entry(c, e);
        vp_free(e);
        e = NULL;
    }
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    if (rc != VP_OK) {
        rd_free(rd);
        return rc;
    }
    vp_info("run %s: %llu samples, %u call paths read in %lld ms%s; %s, %zu KiB%s", run->id,
            (unsigned long long)run->samples, rd->nnodes, (long long)(mono_us() - t0) / 1000,
            rd->map ? " from its summary file" : "",
            rd->cached ? "cached" : "not cached (streamed per query)", rd->bytes / 1024,
            wrote ? "; summary file written" : "");
    *out = rd;
    return VP_OK;
}

void vps_rd_release(vps_rdcache *c, vps_rundata *rd)
{
    if (!rd)
        return;
    entry *e = rd->entry;
    if (!c || !e) {
        rd_free(rd);
        return;
    }
    int damaged = rd->checks && atomic_load(&rd->checks->damaged);
    pthread_mutex_lock(&c->lock);
    if (damaged && !e->detached) {
        /* A query found the file damaged: nobody new gets this rundata,
         * and the next query reads the run from the store (and writes the
         * file again: removed under the lock, before anyone can). */
        char path[4200] = "";
        if (c->dir) {
            sum_path(c->dir, e->id, path, sizeof(path));
            unlink(path);
        }
        vp_warn("run %s: summary file %s is damaged; reading the run from the store", e->id,
                path);
        retire(c, e);
    }
    if (--e->pins == 0 && e->detached) {
        c->bytes -= e->bytes;
        rd_free(e->rd);
        vp_free(e);
    }
    pthread_mutex_unlock(&c->lock);
}

int vps_rd_warm(vps_rdcache *c, vps_db *db, const vps_run *run)
{
    /* The same estimate vps_rd_acquire reserves; the budget never changes. */
    if (!c || sizeof(vps_rundata) + (size_t)run->samples * 16 + ((size_t)1 << 20) > c->budget)
        return VP_OK;
    vps_rundata *rd = NULL;
    int rc = vps_rd_acquire(c, db, run, &rd);
    if (rc == VP_OK)
        vps_rd_release(c, rd);
    return rc;
}

void vps_rdcache_drop(vps_rdcache *c, const char *id)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, id);
    if (e && e->state == E_READY)
        retire(c, e);
    pthread_mutex_unlock(&c->lock);
    if (c->dir) {
        char path[4200];
        sum_path(c->dir, id, path, sizeof(path));
        unlink(path);
    }
}
