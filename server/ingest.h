/*
 * ingest.h - profile data into the store: batches (proto/PROTOCOL.md §C)
 * and plain uploads (§D). Profiles are parsed only with common/vp_vmprof.h.
 *
 * Both calls block on the store and therefore run on the thread pool. They
 * borrow body for the duration of the call and always fill *out.
 */
#ifndef VPS_INGEST_H
#define VPS_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "store.h"

/* vps_ingest_batch applies one batch. token is the server's intake token
 * ("" = none); bearer is the request's "Authorization: Bearer" value or NULL.
 * Either the batch's own token or the bearer must match. */
void vps_ingest_batch(vps_store *s, const char *token, const char *bearer, size_t bearer_len,
                      const uint8_t *body, size_t len, vps_reply *out);

/* Metadata of a plain upload, from the query string; NULL = not given. */
typedef struct vps_upload_meta {
    const char *project;
    const char *function;
    const char *host;
} vps_upload_meta;

/* vps_ingest_upload stores a whole vmprof file as a new run. */
void vps_ingest_upload(vps_store *s, const vps_upload_meta *m, const uint8_t *body, size_t len,
                       vps_reply *out);

/* vps_ingest_new_run_id writes a fresh random run id (VP_RUN_ID_LEN bytes
 * from getrandom, as hex) into out, NUL included; VP_EIO if the system has
 * no randomness to give, out then left alone. */
int vps_ingest_new_run_id(char out[33]);

/* vps_frames_hash is the 64-bit hash stack ids are derived from. */
uint64_t vps_frames_hash(const uint64_t *frames, uint32_t n);

/* A small cache of recently stored stacks for one ingest, so that a stack
 * seen again skips the store's lookup: VP_STACK_CACHE_SLOTS slots holding
 * at most VP_STACK_CACHE_BYTES of frames. */
typedef struct vps_stack_cache {
    void *slots; /* NULL if it could not be had: every stack goes to the store */
    size_t bytes;
} vps_stack_cache;

void vps_stack_cache_init(vps_stack_cache *c);
void vps_stack_cache_fini(vps_stack_cache *c);

/* vps_stack_cache_id stores the stack (root-first frames) of run rid if
 * new, in db's write transaction, and returns its stack id. */
int vps_stack_cache_id(vps_stack_cache *c, vps_db *db, int64_t rid, const uint64_t *frames,
                       uint32_t n, int64_t *id);

#endif
