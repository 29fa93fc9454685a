/*
 * query_int.h - what query.c and analysis.c share; no other module
 * includes it.
 */
#ifndef VPS_QUERY_INT_H
#define VPS_QUERY_INT_H

#include <stdint.h>

#include "json.h"
#include "query.h"
#include "rundata.h"
#include "store.h"

/* A resolved time window: seconds relative to the first sample, the same
 * bounds as absolute sample-clock nanoseconds, and whether it is simply the
 * whole run (then the rundata's precomputed counts serve). */
typedef struct vps__win {
    double from, to;
    int64_t from_ns, to_ns;
    int whole;
} vps__win;

/* vps__window resolves w for run; on a bad window it fills out (400) and
 * returns VP_EINVAL. */
int vps__window(const vps_run *run, const vps_window *w, vps__win *out, vps_reply *reply);

/* vps__open_run starts a read and finds the run; on failure *out is filled
 * and NULL returned. */
vps_db *vps__open_run(vps_store *s, const char *id, vps_run *run, vps_reply *out);

/* vps__acquire gets the run's rundata; on failure it ends db, fills out
 * and returns NULL. */
vps_rundata *vps__acquire(vps_rdcache *c, vps_db *db, const vps_run *run, vps_reply *out);

/* vps__open_window starts a read, finds run id, resolves w for it into *win
 * and gets the run's rundata. On success the caller holds the read in *db
 * (to end with vps_db_end) and the rundata (to give back with
 * vps_rd_release); on failure out is filled, nothing is held, *db is left
 * alone and NULL is returned. */
vps_rundata *vps__open_window(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w,
                              vps__win *win, vps_db **db, vps_reply *out);

void vps__reply_failure(vps_reply *out, int rc);

/* vps__subtree: tot[n] = self[n] + the tot of n's children (nnodes each). */
void vps__subtree(const vps_rundata *rd, const uint64_t *self, uint64_t *tot);

/* vps__per_func adds per-node values into per-function arrays (nfuncs
 * each, zeroed by the caller): fself from self at the node's function,
 * ftot from tot at nodes where the function first appears on the path, so
 * a function counts once per sample however deep it recurses. */
void vps__per_func(const vps_rundata *rd, const uint64_t *self, const uint64_t *tot,
                   uint64_t *fself, uint64_t *ftot);

/* vps__func_fields writes "name":..,"file":..,"line":.. of a function, or
 * of the root ("all") for func == VPS_RD_NONE. */
void vps__func_fields(vps_jw *w, const vps_func *f);

/* A tree to write as nested JSON objects: node 0 is the root, a parent's
 * index is below its children's, and size never grows from a parent to a
 * child (so cutting the smallest keeps a tree). */
typedef struct vps__tree {
    uint32_t n;
    const double *size; /* 0: not shown */
    uint32_t (*parent)(void *ctx, uint32_t node);
    int (*order)(void *ctx, uint32_t a, uint32_t b); /* siblings, < 0: a first */
    void (*fields)(void *ctx, uint32_t node, vps_jw *w); /* without braces */
    void *ctx;
} vps__tree;

/* vps__tree_write writes the root object with at most max_nodes nodes and
 * sets *truncated if some were cut. */
int vps__tree_write(const vps__tree *t, uint32_t max_nodes, vps_jw *w, int *truncated);

#endif
