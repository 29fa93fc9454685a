/*
 * query.h - the read API of docs/API.md, answered from the store.
 *
 * Every call blocks on the store (run it on the thread pool) and always
 * fills *out: 200 with the document, 404 for an unknown run, 400 for a bad
 * argument, 500 for a store failure. Arguments were syntax-checked by the
 * HTTP layer; run ids are 32 lowercase hex digits.
 */
#ifndef VPS_QUERY_H
#define VPS_QUERY_H

#include <stdint.h>

#include "json.h"
#include "store.h"

/* GET /api/runs */
void vps_query_runs(vps_store *s, const vps_run_filter *f, vps_reply *out);

/* GET /api/runs/{id} */
void vps_query_run(vps_store *s, const char *id, vps_reply *out);

/* GET /api/runs/{id}/collapsed (text/plain) */
void vps_query_collapsed(vps_store *s, const char *id, vps_reply *out);

/* GET /api/runs/{id}/functions */
void vps_query_functions(vps_store *s, const char *id, vps_reply *out);

/* GET /api/runs/{id}/memory; has_from/has_to say whether from/to were given. */
typedef struct vps_memory_args {
    uint32_t buckets;
    int has_from, has_to;
    double from, to; /* seconds relative to the first sample */
} vps_memory_args;

void vps_query_memory(vps_store *s, const char *id, const vps_memory_args *a, vps_reply *out);

/* vps_name_split parses a vmprof symbol name "lang:symbol:line:file" (split
 * at the first three colons; fewer fields allowed) into views of name. The
 * line is 0 when absent or not a number. Exposed for tests. */
typedef struct vps_name_parts {
    const char *sym, *file, *line;
    size_t sym_len, file_len, line_len;
    int fields; /* how many colon-separated fields there were, 1..4 */
    int64_t line_no;
} vps_name_parts;

void vps_name_split(const char *name, size_t len, vps_name_parts *p);

#endif
