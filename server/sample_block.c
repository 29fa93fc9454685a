/*
 * sample_block.c - the stores' sample blocks: checking, filling, counting
 * stacks (layout and contracts in sample_block.h).
 */
#include "sample_block.h"

#include <stdlib.h>
#include <string.h>

#include "vp_err.h"
#include "vp_log.h"
#include "vp_mem.h"

int vps_block_check(const char *store, int64_t count, const void *data, size_t nbytes,
                    uint32_t *n)
{
    if (count < 0 || count > (int64_t)VP_STORE_BLOCK_SAMPLES || (data == NULL && count > 0) ||
        (uint64_t)nbytes != (uint64_t)count * VPS_BLOCK_RECORD) {
        vp_error("%s: a sample block of %lld samples holds %zu bytes", store, (long long)count,
                 nbytes);
        return VP_ECORRUPT;
    }
    *n = (uint32_t)count;
    return VP_OK;
}

int vps_block_pend_init(vps_block_pend *p)
{
    memset(p, 0, sizeof(*p));
    p->data = vp_malloc((size_t)VP_STORE_BLOCK_SAMPLES * VPS_BLOCK_RECORD);
    return p->data ? VP_OK : VP_ENOMEM;
}

void vps_block_pend_fini(vps_block_pend *p)
{
    vp_free(p->data);
    memset(p, 0, sizeof(*p));
}

/* add appends a sample to p, which is neither full nor holds another run. */
static int add(vps_block_pend *p, const char *store, int64_t rid, const vps_sample_row *row)
{
    if (p->n > 0 && row->idx <= p->last) {
        vp_error("%s: run %lld: sample %llu put after %llu", store, (long long)rid,
                 (unsigned long long)row->idx, (unsigned long long)p->last);
        return VP_EINVAL;
    }
    if (p->n == 0) {
        p->rid = rid;
        p->first = row->idx;
        p->t_min = p->t_max = row->t_ns;
    }
    vps_block_encode(p->data + (size_t)p->n * VPS_BLOCK_RECORD, row);
    p->n++;
    p->last = row->idx;
    if (row->t_ns < p->t_min)
        p->t_min = row->t_ns;
    if (row->t_ns > p->t_max)
        p->t_max = row->t_ns;
    return VP_OK;
}

int vps_block_put(vps_block_pend *p, const char *store, int64_t rid, const vps_sample_row *row,
                  vps_block_flush_fn flush, void *ctx)
{
    int rc;
    if (p->n > 0 && p->rid != rid && (rc = flush(ctx)) != VP_OK)
        return rc;
    if ((rc = add(p, store, rid, row)) != VP_OK)
        return rc;
    return p->n == VP_STORE_BLOCK_SAMPLES ? flush(ctx) : VP_OK;
}

void vps_block_counts_reset(vps_block_counts *c)
{
    vps_u64map_clear(&c->ids);
    c->minus1 = 0;
}

int vps_block_counts_add(vps_block_counts *c, const uint8_t *data, uint32_t n)
{
    for (uint32_t r = 0; r < n; r++) {
        int64_t id = vps_block_stack(data, r);
        if (id == -1) {
            c->minus1++;
            continue;
        }
        int added;
        uint64_t *count = vps_u64map_slot(&c->ids, (uint64_t)id + 1, &added);
        if (!count)
            return VP_ENOMEM;
        ++*count;
    }
    return VP_OK;
}

static int cmp_tally(const void *a, const void *b)
{
    int64_t x = ((const vps_stack_tally *)a)->id, y = ((const vps_stack_tally *)b)->id;
    return (x > y) - (x < y);
}

int vps_block_counts_list(const vps_block_counts *c, vps_stack_tally **list, size_t *n)
{
    const vps_u64map *m = &c->ids;
    vps_stack_tally *out = vp_malloc((m->count + 1) * sizeof(*out));
    size_t k = 0;
    if (!out)
        return VP_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i])
            out[k++] = (vps_stack_tally){(int64_t)(m->keys[i] - 1), m->vals[i]};
    }
    if (c->minus1)
        out[k++] = (vps_stack_tally){-1, c->minus1};
    qsort(out, k, sizeof(*out), cmp_tally);
    *list = out;
    *n = k;
    return VP_OK;
}

void vps_block_counts_fini(vps_block_counts *c)
{
    vps_u64map_fini(&c->ids);
    c->minus1 = 0;
}
