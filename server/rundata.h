/*
 * rundata.h - what the analysis queries derive from a stored run, and the
 * bounded in-memory cache that keeps it between queries.
 *
 * A run's distinct stacks become a call trie: node 0 is the root (the empty
 * stack), every other node is one function called from its parent's path,
 * so a stack is a node and "samples per node" is the whole CPU tree. Every
 * query aggregates per node first and expands to functions and names once,
 * never per sample.
 *
 * Two modes:
 *  - cached: the rundata also holds every sample as (time, RSS, node) in
 *    three arrays (16 bytes a sample), and lives in the cache;
 *  - streaming: a run too big for the cache keeps only its trie and names
 *    for one query, and samples are read from the store each time.
 * vps_rd_each hides the difference.
 *
 * Threads: a rundata handed out by vps_rd_acquire is read-only and may be
 * shared by several queries at once (cached mode); a streaming rundata is
 * private to the query. Either way release it with vps_rd_release.
 */
#ifndef VPS_RUNDATA_H
#define VPS_RUNDATA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "symtab.h"

#define VPS_RD_ROOT 0u
#define VPS_RD_NONE UINT32_MAX

typedef struct vps_rd_node {
    uint32_t parent; /* VPS_RD_NONE for the root */
    uint32_t func;   /* index into syms.funcs; VPS_RD_NONE for the root */
    uint32_t depth;  /* 0 for the root */
    uint32_t first;  /* 1 if func appears nowhere above this node */
} vps_rd_node;

/* Cached runs keep a summary per block of VPS_RD_BLOCK samples, so that a
 * window covering millions of samples costs a few thousand steps: RSS
 * min/max/sum and the first position of the max, and, when the block has
 * at most VPS_RD_HIST_MAX distinct nodes, their counts in first-seen order
 * (so ties between equally frequent stacks resolve as a sample scan would). */
#define VPS_RD_BLOCK 1024u
#define VPS_RD_HIST_MAX 128u

typedef struct vps_rd_block {
    uint32_t min, max, argmax; /* argmax: position in the block */
    uint32_t nhist;            /* entries in hist; VPS_RD_NONE: none kept */
    uint64_t sum, hist;        /* hist: index of the first entry */
    uint32_t argmax_node;      /* node of the sample at argmax */
    uint32_t unused;
} vps_rd_block;

typedef struct vps_rd_hist {
    uint32_t node, count;
} vps_rd_hist;

typedef struct vps_rundata vps_rundata;

/* What of a mapped rundata's blocks was checked, shared by the queries
 * using it: block[k] holds VPS_RD_CHECKED_* bits; damaged is set once a
 * check failed, and the cache then drops the rundata and its file when
 * the last query releases it. */
typedef struct vps_rd_checks {
    uint64_t nhist; /* entries in the file's hist section */
    atomic_int damaged;
    _Atomic uint8_t block[]; /* ceil(samples / VPS_RD_BLOCK) */
} vps_rd_checks;

struct vps_rundata {
    vps_symtab syms;
    vps_rd_node *nodes; /* parents come before their children */
    uint32_t nnodes;
    uint64_t *whole;  /* per node: samples of the whole run whose stack ends there */
    uint64_t samples; /* samples of the whole run */
    int64_t rid;

    /* cached mode: per sample, in index order */
    int cached;
    int64_t *t_ns;
    uint32_t *rss_kb;
    uint32_t *node;
    int monotonic; /* t_ns never decreases, so windows are found by bisection */
    uint32_t *order;      /* clock not monotonic: positions by time, stable */
    vps_rd_block *blocks; /* ceil(samples / VPS_RD_BLOCK) */
    int64_t *bt;          /* per block: the time of its first sample */
    vps_rd_hist *hist;

    /* streaming mode: stack id -> node */
    int64_t *skeys;
    uint32_t *svals;
    size_t scap, scount;

    size_t bytes; /* heap bytes held, plus the bytes of map */
    void *entry;  /* the cache entry, NULL if private */
    /* A rundata read from its summary file (rundata.c, "summary files"):
     * whole and every per-sample and per-block array point into this
     * read-only mapping, which rd_free unmaps; nodes and syms are on the
     * heap as usual. NULL when built from the store. */
    void *map;
    size_t map_len;
    /* Mapped only (see vps_rd_check_samples); NULL when every index is
     * trusted (built here, or checked whole at load). */
    vps_rd_checks *checks;
};

#define VPS_RD_CHECKED_SAMPLES 1u /* every node index of the block's samples */
#define VPS_RD_CHECKED_SUMMARY 2u /* argmax, its node and every hist entry */

typedef struct vps_rdcache vps_rdcache;

/* vps_rdcache_new makes a cache of at most budget bytes and max_runs runs;
 * the caller owns *out. vps_rdcache_free needs every rundata released.
 *
 * dir (NULL or "" = none) is a directory for summary files: a finished
 * run's cached rundata is also written there (DIR/<run id>.rd), and a run
 * not in memory is mapped from its file instead of being read from the
 * store again, so a first query after a restart or an eviction costs
 * milliseconds. The files are derived data: a missing, stale or damaged one
 * is rebuilt from the store. The directory is created if needed. */
int vps_rdcache_new(size_t budget, unsigned max_runs, const char *dir, vps_rdcache **out);

/* vps_rdcache_set_summary_max bounds the summary files' bytes (default
 * VP_SUMMARY_BYTES): after each file written, the least recently used
 * others are removed until the directory fits; a file bigger than the
 * bound alone is not written. Call before the cache is used. */
void vps_rdcache_set_summary_max(vps_rdcache *c, uint64_t bytes);
void vps_rdcache_free(vps_rdcache *c);

/* vps_rd_acquire gives the rundata of run (read in db's transaction, which
 * must stay open until release for a streaming rundata). c may be NULL: no
 * caching. Returns VP_ETOOBIG if the run has more than VP_MAX_QUERY_NODES
 * call paths or stacks. */
int vps_rd_acquire(vps_rdcache *c, vps_db *db, const vps_run *run, vps_rundata **out);
void vps_rd_release(vps_rdcache *c, vps_rundata *rd);

/* vps_rd_warm builds run's rundata into the cache if it can be cached,
 * and does nothing for a run too big for it. */
int vps_rd_warm(vps_rdcache *c, vps_db *db, const vps_run *run);

/* vps_rdcache_drop forgets run id (after it was deleted), its summary
 * file too. */
void vps_rdcache_drop(vps_rdcache *c, const char *id);

/* vps_rd_each calls cb for every sample with from_ns <= t_ns <= to_ns, in
 * index order; idx is the sample's index in the run. A non-zero return
 * stops the walk and is returned. db is the transaction the rundata was
 * acquired in (unused in cached mode). */
typedef int (*vps_rd_cb)(void *ctx, uint64_t idx, int64_t t_ns, uint64_t rss_kb, uint32_t node);
int vps_rd_each(const vps_rundata *rd, vps_db *db, int64_t from_ns, int64_t to_ns, vps_rd_cb cb,
                void *ctx);

/* vps_rd_count fills counts[nnodes] with the samples per node in the window
 * (whole: the whole run, from the rundata) and *n with their sum. */
int vps_rd_count(const vps_rundata *rd, vps_db *db, int whole, int64_t from_ns, int64_t to_ns,
                 uint64_t *counts, uint64_t *n);

/* vps_rd_lower is the first sample position whose time is >= t_ns; only
 * for a cached rundata whose clock is monotonic. */
uint64_t vps_rd_lower(const vps_rundata *rd, int64_t t_ns);

/* vps_rd_count_range adds the samples per node of positions [lo, hi) to
 * counts; cached rundata only. VP_ECORRUPT as vps_rd_check_samples. */
int vps_rd_count_range(const vps_rundata *rd, uint64_t lo, uint64_t hi, uint64_t *counts);

/* A rundata mapped from a summary file is checked block by block as
 * queries reach the blocks (a whole check at load read the whole file,
 * which was most of a first query's time once the file had left the page
 * cache). Before following rd->node[i] for i in [lo, hi) a query calls
 * vps_rd_check_samples; before using blocks[k]'s summary (argmax, hist),
 * vps_rd_check_summary. VP_ECORRUPT: the file is damaged; rd is marked
 * so that the cache forgets it and its file on release, and the query
 * fails with that code (vps__reply_failure asks for one retry, which
 * reads the run from the store). Safe from several threads at once. */
int vps__rd_check_samples_slow(const vps_rundata *rd, uint64_t lo, uint64_t hi);
int vps__rd_check_summary_slow(const vps_rundata *rd, uint64_t k);

static inline int vps_rd_check_samples(const vps_rundata *rd, uint64_t lo, uint64_t hi)
{
    return rd->checks && lo < hi ? vps__rd_check_samples_slow(rd, lo, hi) : 0;
}

static inline int vps_rd_check_summary(const vps_rundata *rd, uint64_t k)
{
    return rd->checks && !(atomic_load_explicit(&rd->checks->block[k], memory_order_acquire) &
                           VPS_RD_CHECKED_SUMMARY)
               ? vps__rd_check_summary_slow(rd, k)
               : 0;
}

/* vps_rd_will_need says that a query will soon read the per-sample arrays
 * at positions [lo, hi) (the times too if with_time): a rundata mapped
 * from its file starts reading them from disk at once, in one go (its
 * mapping is otherwise read a page at a time: see sum_load). Nothing for a
 * rundata in memory. */
void vps_rd_will_need(const vps_rundata *rd, uint64_t lo, uint64_t hi, int with_time);

/* vps_rd_will_need_at: the same for the block a vps_rd_lower(rd, t_ns)
 * searches, for a walk that will read around that position. */
void vps_rd_will_need_at(const vps_rundata *rd, int64_t t_ns);

/* vps_rd_lca is the deepest common ancestor of two nodes. */
uint32_t vps_rd_lca(const vps_rundata *rd, uint32_t a, uint32_t b);

#endif
