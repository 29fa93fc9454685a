/*
 * vp_spool.h - a durable store of batches waiting to be forwarded: one
 * SQLite file in WAL mode, synchronous=FULL, so a batch put is on disk when
 * vp_spool_put returns and survives a SIGKILL of the process.
 *
 * Each vp_spool holds one SQLite connection and is used by one thread at a
 * time (its calls take an internal mutex, so sharing is safe but serial).
 * Several vp_spool objects may open the same file: intake and forwarding
 * each have their own. Every call blocks on disk: never call one from a
 * libuv loop thread.
 */
#ifndef VP_SPOOL_H
#define VP_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "vp_batch.h"

typedef struct vp_spool vp_spool;

typedef struct vp_spool_item {
    uint8_t run_id[VP_RUN_ID_LEN];
    uint64_t seq;
    uint8_t kind;
    uint8_t *body;  /* a whole batch message without token; owned by the item */
    size_t len;
} vp_spool_item;

/* vp_spool_open opens (creating if needed) the spool at path. max_bytes
 * bounds the stored bodies (vp_spool_put refuses past it). On success *out
 * is owned by the caller (vp_spool_close). */
int vp_spool_open(const char *path, uint64_t max_bytes, vp_spool **out, char *err, size_t errlen);

/* A background thread with its own connection that checkpoints a spool's
 * WAL, so that no commit of a connection handed to it ever waits for a
 * checkpoint (SQLite's automatic checkpoint runs inside the commit that
 * crosses its threshold, and copying megabytes and syncing the database file
 * there was the tail of the relay's acknowledgement latency). */
typedef struct vp_spool_checkpointer vp_spool_checkpointer;

/* vp_spool_checkpointer_start opens path (which vp_spool_open has created)
 * and starts the thread. On success *out is owned by the caller
 * (vp_spool_checkpointer_stop, after every spool handed to it is closed). */
int vp_spool_checkpointer_start(const char *path, vp_spool_checkpointer **out, char *err, size_t errlen);

/* vp_spool_hand_checkpoints turns s's automatic checkpoints off and wakes c
 * whenever s's commits have grown the WAL to VP_SPOOL_CHECKPOINT_BYTES. */
void vp_spool_hand_checkpoints(vp_spool *s, vp_spool_checkpointer *c);

/* vp_spool_checkpointer_stop runs a last checkpoint, stops the thread and
 * frees c. */
void vp_spool_checkpointer_stop(vp_spool_checkpointer *c);

/* Checkpoints done by c so far (for metrics). */
uint64_t vp_spool_checkpoints(const vp_spool_checkpointer *c);

/* vp_spool_put stores one batch body (copied). Returns VP_OK with
 * *duplicate = 1 if (run, seq) was stored or forwarded before, VP_EFULL at
 * the size bound, VP_EIO on a disk error. */
int vp_spool_put(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq, uint8_t kind,
                 const uint8_t *body, size_t len, int *duplicate);

/* What the relay must remember of a run to read its later batches on its
 * own: the HEADER's layout and where the sample clock started. */
typedef struct vp_spool_run_info {
    uint16_t version;
    uint8_t mode;
    uint64_t period_us;
    int64_t first_t_ns;
} vp_spool_run_info;

/* vp_spool_get_info reads what vp_spool_put_many stored for a run;
 * VP_ENOTFOUND if nothing. A run found once is answered from s's memory
 * after that (VP_SPOOL_INFO_CACHE runs). */
int vp_spool_get_info(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN], vp_spool_run_info *out);

/* One batch of a group commit: the inputs, and where its outcome goes. */
typedef struct vp_spool_put_req {
    const vp_spool_run_info *info; /* stored with the batch if not NULL */
    const uint8_t *run_id;
    uint64_t seq;
    uint8_t kind;
    const uint8_t *body;
    size_t len;
    int result;    /* out: VP_OK, VP_EFULL or VP_EIO */
    int duplicate; /* out: 1 if stored or forwarded before */
} vp_spool_put_req;

/* vp_spool_put_many stores several batches in one transaction, so many
 * agents' batches share one disk sync (group commit). Each request's result
 * says what happened to it; the return is VP_OK unless the transaction as a
 * whole failed (then every result is VP_EIO). */
int vp_spool_put_many(vp_spool *s, vp_spool_put_req *reqs, size_t n);

/* vp_spool_runs lists up to cap run ids that have stored batches, oldest
 * first. Returns the count, or a negative error. */
int vp_spool_runs(vp_spool *s, uint8_t (*ids)[VP_RUN_ID_LEN], size_t cap);

/* vp_spool_peek reads up to cap stored batches of one run in seq order into
 * items (each body a new allocation; free with vp_spool_items_free). Returns
 * the count, or a negative error. */
int vp_spool_peek(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN], vp_spool_item *items,
                  size_t cap);
void vp_spool_items_free(vp_spool_item *items, size_t count);

/* A forwarded batch, for vp_spool_done. */
typedef struct vp_spool_done_req {
    uint8_t run_id[VP_RUN_ID_LEN];
    uint64_t seq;
    int keep_copy; /* move it to the second sink's table instead of dropping it */
} vp_spool_done_req;

/* vp_spool_done removes n forwarded batches in one transaction (one sync
 * for all) and remembers that each run's seqs up to them were forwarded, so
 * a late resend is recognised as a duplicate. All or none: on VP_EIO every
 * one stays spooled. */
int vp_spool_done(vp_spool *s, const vp_spool_done_req *reqs, size_t n);

/* The second sink's table: batches kept by vp_spool_done (keep_copy) until the
 * whole run has gone to the second sink. */
/* vp_spool_copies_ready lists up to cap runs whose kept copies include the
 * CLOSE batch (the run is whole). Returns the count or a negative error. */
int vp_spool_copies_ready(vp_spool *s, uint8_t (*ids)[VP_RUN_ID_LEN], size_t cap);
/* vp_spool_copies_each calls fn with each kept batch of a run in seq order
 * (body valid during the call); a non-zero return stops and is returned. */
int vp_spool_copies_each(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN],
                         int (*fn)(void *ctx, const uint8_t *body, size_t len), void *ctx);
/* vp_spool_copies_drop forgets a run's kept batches. */
int vp_spool_copies_drop(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN]);

/* vp_spool_largest_run finds the run whose DATA batches take the most room
 * in the spool (VP_ENOTFOUND if none). */
int vp_spool_largest_run(vp_spool *s, uint8_t run_id[VP_RUN_ID_LEN], uint64_t *bytes);

/* vp_spool_rewrite_data calls fn for each stored DATA batch of a run, in seq
 * order; when fn returns VP_OK with a new body (a vp_malloc'd buffer that the
 * spool then frees), the stored body is replaced. All in one transaction.
 * Returns the bytes freed, or a negative error. Must not run concurrently
 * with vp_spool_put_many on the same connection (it takes the same lock). */
typedef int (*vp_spool_rewrite_fn)(void *ctx, uint64_t seq, const uint8_t *body, size_t len,
                                   uint8_t **new_body, size_t *new_len);
int64_t vp_spool_rewrite_data(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN],
                              vp_spool_rewrite_fn fn, void *ctx);

/* vp_spool_bytes is the total size of the stored bodies. */
uint64_t vp_spool_bytes(vp_spool *s);

void vp_spool_close(vp_spool *s);

#endif
