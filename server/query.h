/*
 * query.h - the read API of docs/API.md, answered from the store.
 *
 * Every call blocks on the store (run it on the thread pool) and always
 * fills *out: 200 with the document, 404 for an unknown run, 400 for a bad
 * argument, 413 for an answer over its bound, 500 for a store failure.
 * Arguments were syntax-checked by the HTTP layer; run ids are 32 lowercase
 * hex digits. c is the rundata cache (rundata.h); NULL = no caching.
 */
#ifndef VPS_QUERY_H
#define VPS_QUERY_H

#include <stdint.h>

#include "json.h"
#include "rundata.h"
#include "store.h"

/* A time window of docs/API.md: seconds on the profile's clock relative to
 * its first sample, from <= t <= to; each bound optional. */
typedef struct vps_window {
    int has_from, has_to;
    double from, to;
} vps_window;

enum { VPS_SORT_START, VPS_SORT_DURATION, VPS_SORT_PEAK, VPS_SORT_SAMPLES, VPS_SORT_PROJECT,
       VPS_SORT_FUNCTION };

/* GET /api/runs. f carries project, q, limit and offset; the rest are the
 * filters and orders the store does not know, applied here. */
typedef struct vps_runs_args {
    vps_run_filter f;
    const char *function; /* substring of the top-level function, or NULL */
    int has_since, has_until;
    int64_t since_us, until_us; /* start time bounds, inclusive */
    int sort;                   /* VPS_SORT_* */
    int asc;
} vps_runs_args;

void vps_query_runs(vps_store *s, const vps_runs_args *a, vps_reply *out);

/* GET /api/runs/{id} */
void vps_query_run(vps_store *s, const char *id, vps_reply *out);

/* GET /api/runs/{id}/collapsed (text/plain) */
void vps_query_collapsed(vps_store *s, const char *id, vps_reply *out);

/* GET /api/runs/{id}/functions[?from=&to=] */
void vps_query_functions(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w,
                         vps_reply *out);

/* GET /api/runs/{id}/memory */
typedef struct vps_memory_args {
    uint32_t buckets;
    vps_window w;
} vps_memory_args;

void vps_query_memory(vps_store *s, vps_rdcache *c, const char *id, const vps_memory_args *a,
                      vps_reply *out);

/* DELETE /api/runs/{id} (the caller checked the admin token): 204 or 404. */
void vps_query_delete(vps_store *s, vps_rdcache *c, const char *id, vps_reply *out);

/* GET /api/runs/{id}/tree */
void vps_query_tree(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w,
                    uint32_t max_nodes, vps_reply *out);

/* GET /api/runs/{id}/growth */
void vps_query_growth(vps_store *s, vps_rdcache *c, const char *id, const vps_window *w,
                      uint32_t max_nodes, vps_reply *out);

/* GET /api/diff?a=&b= */
void vps_query_diff(vps_store *s, vps_rdcache *c, const char *a, const vps_window *wa,
                    const char *b, const vps_window *wb, uint32_t max_nodes, vps_reply *out);

/* vps_query_warm builds run id's analysis data into the cache (nothing if
 * the run is gone or too big to cache). */
void vps_query_warm(vps_store *s, vps_rdcache *c, const char *id);

/* GET /api/runs/{id}/speedscope */
void vps_query_speedscope(vps_store *s, vps_rdcache *c, const char *id, vps_reply *out);

#endif
