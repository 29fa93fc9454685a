/*
 * sample_block.h - samples stored in blocks, the layout both stores use
 * (store_sqlite.c, store_pg.c): one database row holds up to
 * VP_STORE_BLOCK_SAMPLES consecutive samples of one run, because a row per
 * sample cost either database about a microsecond or more to insert and to
 * read, whatever the row's size (BENCHMARKS.md, server).
 *
 * A block's data is n records of VPS_BLOCK_RECORD bytes: idx, t_ns,
 * rss_kb, thread, stack_id, each a u64 little-endian (t_ns and stack_id as
 * two's complement). Its row also carries the run, the first sample's idx
 * and the smallest and largest t_ns, so a time window reads only the
 * blocks that overlap it. A block holds samples in index order, and a
 * run's blocks follow each other in index order too: every writer puts a
 * run's samples in the order of the profile (ingest.c, submit.c), which
 * vps_block_add checks.
 *
 * Only the stores and sample_block.c include this.
 */
#ifndef VPS_SAMPLE_BLOCK_H
#define VPS_SAMPLE_BLOCK_H

#include "u64map.h"
#include <stddef.h>
#include <stdint.h>

#include "limits.h"
#include "store.h"
#include "vp_batch.h"
#include "vp_vmprof.h"

/* Bytes of one stored sample. Part of both stores' schema 3: changing it
 * needs a schema version and an upgrade. */
#define VPS_BLOCK_RECORD 40u

static inline void vps_block_encode(uint8_t *p, const vps_sample_row *row)
{
    vp_store_u64le(p, row->idx);
    vp_store_u64le(p + 8, (uint64_t)row->t_ns);
    vp_store_u64le(p + 16, row->rss_kb);
    vp_store_u64le(p + 24, row->thread);
    vp_store_u64le(p + 32, (uint64_t)row->stack_id);
}

static inline void vps_block_decode(const uint8_t *p, vps_sample_row *row)
{
    row->idx = vp_load_u64le(p);
    row->t_ns = (int64_t)vp_load_u64le(p + 8);
    row->rss_kb = vp_load_u64le(p + 16);
    row->thread = vp_load_u64le(p + 24);
    row->stack_id = (int64_t)vp_load_u64le(p + 32);
}

/* vps_block_stack is the stack id of record i of a block's data, without
 * decoding the rest (stack counting reads nothing else). */
static inline int64_t vps_block_stack(const uint8_t *data, uint32_t i)
{
    return (int64_t)vp_load_u64le(data + (size_t)i * VPS_BLOCK_RECORD + 32);
}

/* vps_block_check checks a stored block's data of nbytes at data against
 * its row's count: VP_OK and *n = count if they agree, else VP_ECORRUPT,
 * logged under store (the store's name). */
int vps_block_check(const char *store, int64_t count, const void *data, size_t nbytes,
                    uint32_t *n);

/* The block a connection is filling: samples put but not yet written.
 * The store writes it (and calls vps_block_clear) when it is full, when a
 * sample of another run comes, before its commit and before any statement
 * that reads or deletes samples, so a transaction sees every sample it
 * put; a rollback clears it. So a block never spans two transactions: a
 * live run that grows a batch at a time has a partial block per commit,
 * and the next transaction starts a new one at the next idx. */
typedef struct vps_block_pend {
    uint8_t *data; /* VP_STORE_BLOCK_SAMPLES records; owned, vps_block_pend_fini frees it */
    uint32_t n;    /* records in data */
    int64_t rid;
    uint64_t first, last; /* idx of the first and last record */
    int64_t t_min, t_max;
} vps_block_pend;

/* vps_block_pend_init allocates p's data (VP_ENOMEM); p must be zeroed
 * or finished. vps_block_pend_fini frees it (p may be zeroed). */
int vps_block_pend_init(vps_block_pend *p);
void vps_block_pend_fini(vps_block_pend *p);

static inline void vps_block_clear(vps_block_pend *p)
{
    p->n = 0;
}

/* vps_block_put appends one sample of run rid to p, a store's pending
 * block: first it has flush(ctx) write p if p holds another run's samples,
 * and after it, if p is full. flush writes p's samples as one block and
 * clears p, or returns an error code (returned here). A sample whose idx
 * does not follow the last one is refused (VP_EINVAL, logged under store):
 * the blocks' order would break. */
typedef int (*vps_block_flush_fn)(void *ctx);
int vps_block_put(vps_block_pend *p, const char *store, int64_t rid, const vps_sample_row *row,
                  vps_block_flush_fn flush, void *ctx);

/* Samples per stack id, counted from blocks (each_stack_count). A store
 * keeps one per connection so its memory is reused; zeroed is empty. */
typedef struct vps_block_counts {
    vps_u64map ids;  /* stack id + 1 -> samples */
    uint64_t minus1; /* samples of stack id -1, whose key would be 0 */
} vps_block_counts;

typedef struct vps_stack_tally {
    int64_t id;
    uint64_t n;
} vps_stack_tally;

/* vps_block_counts_reset empties c and keeps its memory. */
void vps_block_counts_reset(vps_block_counts *c);

/* vps_block_counts_add counts the n records of a block's data (checked
 * with vps_block_check). VP_ENOMEM leaves the counts incomplete. */
int vps_block_counts_add(vps_block_counts *c, const uint8_t *data, uint32_t n);

/* vps_block_counts_list hands out every counted stack id with its count,
 * in stack id order; *list is vp_malloc'd (never NULL on VP_OK), owned by
 * the caller (vp_free), *n its length. */
int vps_block_counts_list(const vps_block_counts *c, vps_stack_tally **list, size_t *n);

/* vps_block_counts_fini frees c's memory; c is then zeroed. */
void vps_block_counts_fini(vps_block_counts *c);

#endif
