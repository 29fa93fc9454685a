/*
 * agent_int.h - declarations shared by vmpv-agent's own files only.
 *
 * Threads: the libuv loop thread owns every session; file reads and the
 * writes of batch and state files go through libuv's thread pool; the sender
 * thread owns the nng socket. Loop and sender share only the sender's queue
 * of file names, under its mutex.
 */
#ifndef AGENT_INT_H
#define AGENT_INT_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "vp_batch.h"
#include "vp_metrics.h"

typedef struct vpa_sender vpa_sender;
typedef struct vpa_session vpa_session;

typedef struct vpa_store {
    char dir[4000];
    char queue_dir[4096];
    char runs_dir[4096];
} vpa_store;

typedef struct vpa_agent {
    uv_loop_t *loop;
    uv_pipe_t listener;
    uv_signal_t sigterm, sigint;
    uv_timer_t stop_check;
    struct vp_opshttp *ops;  /* /healthz and /metrics, if configured */
    const char *token;
    uint64_t max_buffer_bytes;
    uint64_t poll_ms;
    int stopping;
    size_t session_count;
    vpa_session *sessions; /* doubly linked through vpa_session.next/prev */
    vpa_sender *sender;
    vpa_store store;
} vpa_agent;

/* Metrics, indices into vpa_metrics. */
enum {
    VPA_M_SESSIONS_TOTAL,
    VPA_M_SESSIONS_ACTIVE,
    VPA_M_SESSIONS_RECOVERED,
    VPA_M_SAMPLES,
    VPA_M_BYTES_READ,
    VPA_M_BATCHES_SENT,
    VPA_M_BATCHES_INFLIGHT,
    VPA_M_BUFFERED_BYTES,
    VPA_M_REFUSED_FULL,
    VPA_M_REFUSED_BAD_REQUEST,
    VPA_M_RELAY_ERRORS,
    VPA_M_COUNT
};
extern vp_metric vpa_metrics[VPA_M_COUNT];

/* session.c --------------------------------------------------------------- */

/* Accepts one client connection on the listener. */
void vpa_session_accept(vpa_agent *a);

/* Recreates, from its saved state, a run a previous agent process was
 * reading when it died, and goes on reading it. Call before uv_run. */
void vpa_session_recover(vpa_agent *a, json_t *state);

/* Closes every session (shutdown); their state stays on disk. */
void vpa_session_close_all(vpa_agent *a);

/* sender.c ---------------------------------------------------------------- */

/* vpa_sender_new prepares the sender, dialing each of the comma-separated
 * relay_urls in the background (tls+tcp:// ones checked against tls_ca, if
 * given). store must outlive the sender. Returns NULL with a reason in err. */
vpa_sender *vpa_sender_new(const char *relay_urls, const char *tls_ca, const char *tls_server_name,
                           const vpa_store *store, uint64_t max_bytes, char *err, size_t errlen);

/* vpa_sender_start starts the sender thread (after recovery queued the old
 * batch files, so they go first). */
int vpa_sender_start(vpa_sender *s);

/* vpa_sender_put queues a batch file of len bytes. On success the sender
 * owns path (a vp_malloc'd string) and deletes the file once the relay has
 * acknowledged it; on failure the caller still owns path. */
int vpa_sender_put(vpa_sender *s, char *path, size_t len);

/* vpa_sender_over_bound is non-zero when the queue holds max_bytes or more. */
int vpa_sender_over_bound(vpa_sender *s);

/* vpa_sender_free waits up to drain_ms for the queue to empty, then stops
 * the thread; unsent batch files stay on disk for the next start. */
void vpa_sender_free(vpa_sender *s, uint64_t drain_ms);

/* store.c (blocking disk I/O: thread pool, sender thread, or start-up) ----- */

int vpa_store_init(vpa_store *st, const char *data_dir, char *err, size_t errlen);
void vpa_store_batch_path(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq,
                          char *out, size_t cap);
int vpa_store_write_batch(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq,
                          const uint8_t *msg, size_t len);
int vpa_store_write_state(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], const char *json);
/* The relay has the run's CLOSE: remove its state (and its file, if owned). */
void vpa_store_run_acked(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN]);
/* Queues every batch file left by a previous process, in (run, seq) order. */
int vpa_store_recover_queue(const vpa_store *st, vpa_sender *s, uint64_t *count);
/* Calls fn with each saved run state (borrowed JSON). */
int vpa_store_each_run(const vpa_store *st, void (*fn)(void *ctx, json_t *state), void *ctx);
/* The header of the queued batch (run, next_seq), if one exists: a batch
 * written after the last saved state. VP_ENOTFOUND if none. */
int vpa_store_orphan(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t next_seq,
                     vp_batch_view *header);

#endif
