/*
 * agent_int.h - declarations shared by vmpv-agent's own files only.
 *
 * Threads: the libuv loop thread owns every session; file reads and the
 * appends to the run logs go through libuv's thread pool; the sender
 * thread owns the nng socket. Loop and sender share only the sender's queue
 * of places in run logs, under its mutex.
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
    char runs_dir[4096];
} vpa_store;

/* The run log's fixed parts (proto/PROTOCOL.md, "Agent run log"). */
#define VP_AGENT_LOG_HEADER 16u       /* "VPAQ", u16 version, u16 0, u64 acked */
#define VP_AGENT_LOG_ENTRY_HEADER 16u /* "VPAE", u32 batch len, u32 state len, u32 crc */

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

/* vpa_sender_start starts the sender thread (after recovery queued the
 * batches a previous process left, so they go first). */
int vpa_sender_start(vpa_sender *s);

/* vpa_sender_put queues the batch of len bytes at offset off of the run
 * log log_path, with its seq; is_close marks a run's CLOSE batch, after
 * whose acknowledgement the log (and owned_profile, if not NULL: copied) is
 * removed. On success the sender owns log_path (a vp_malloc'd string); on
 * failure the caller still owns it. */
int vpa_sender_put(vpa_sender *s, char *log_path, uint64_t off, size_t len, uint64_t seq, int is_close,
                   const char *owned_profile);

/* vpa_sender_over_bound is non-zero when the queue holds max_bytes or more. */
int vpa_sender_over_bound(vpa_sender *s);

/* vpa_sender_free waits up to drain_ms for the queue to empty, then stops
 * the thread; unsent batch files stay on disk for the next start. */
void vpa_sender_free(vpa_sender *s, uint64_t drain_ms);

/* store.c (blocking disk I/O: thread pool, sender thread, or start-up) ----- */

int vpa_store_init(vpa_store *st, const char *data_dir, char *err, size_t errlen);
/* The run log's path for run_id, written to out. */
void vpa_store_log_path(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], char *out, size_t cap);
/* Appends one encoded batch (msg, borrowed) with the run's state once that
 * batch exists (JSON text, borrowed) to the run's log, creating it. Sets
 * *batch_off to the batch's offset in the log. */
int vpa_store_append(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], const uint8_t *msg,
                     size_t len, const char *state, uint64_t *batch_off);
/* Reads len bytes at off of a run log. Returns a vp_malloc'd buffer the
 * caller frees, or NULL with *rc set. */
uint8_t *vpa_store_read_batch(const char *log_path, uint64_t off, size_t len, int *rc);
/* Records in the log that every batch before next_seq is acknowledged. */
int vpa_store_mark_acked(const char *log_path, uint64_t next_seq);
/* The relay has the run's CLOSE: remove its log and owned_profile (if not
 * NULL), the profile file the client left to the agent. */
void vpa_store_run_acked(const char *log_path, const char *owned_profile);
/* Start-up: reads every run log, queues its unacknowledged batches on sender
 * in (run, seq) order, and calls fn with the last state (borrowed JSON) of
 * each run that was still being read. */
int vpa_store_recover(const vpa_store *st, vpa_sender *sender, void (*fn)(void *ctx, json_t *state),
                      void *ctx, uint64_t *queued);

#endif
