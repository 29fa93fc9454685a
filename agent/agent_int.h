/*
 * agent_int.h - declarations shared by vmpv-agent's own files only.
 *
 * Threads: the libuv loop thread owns every session and all file reading
 * (through libuv's thread pool); the sender thread owns the nng socket and
 * the queue's contents once a batch is put. They share only the queue, under
 * its mutex.
 */
#ifndef AGENT_INT_H
#define AGENT_INT_H

#include <stdint.h>
#include <uv.h>

#include "vp_metrics.h"

typedef struct vpa_sender vpa_sender;
typedef struct vpa_session vpa_session;

typedef struct vpa_agent {
    uv_loop_t *loop;
    uv_pipe_t listener;
    uv_signal_t sigterm, sigint;
    const char *token;
    uint64_t max_buffer_bytes;
    uint64_t poll_ms;
    int stopping;
    size_t session_count;
    vpa_session *sessions; /* doubly linked through vpa_session.next/prev */
    vpa_sender *sender;
} vpa_agent;

/* Metrics, indices into vpa_metrics. */
enum {
    VPA_M_SESSIONS_TOTAL,
    VPA_M_SESSIONS_ACTIVE,
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

/* session.c: accept one client connection on the listener. */
void vpa_session_accept(vpa_agent *a);

/* session.c: close every session's client connection (shutdown). */
void vpa_session_close_all(vpa_agent *a);

/* sender.c ---------------------------------------------------------------- */

/* vpa_sender_new starts the sender thread, dialing relay_url in the
 * background. Returns NULL with a reason in err on failure. */
vpa_sender *vpa_sender_new(const char *relay_url, uint64_t max_bytes, char *err, size_t errlen);

/* vpa_sender_put queues one encoded batch. On success the sender owns msg
 * (and unlink_path, a heap string or NULL: the file the sender deletes once
 * this batch is acknowledged). VP_EFULL if the queue is at its byte bound;
 * then the caller still owns both. */
int vpa_sender_put(vpa_sender *s, uint8_t *msg, size_t len, char *unlink_path);

/* vpa_sender_over_bound is non-zero when the queue holds max_bytes or more. */
int vpa_sender_over_bound(vpa_sender *s);

/* vpa_sender_free waits up to drain_ms for the queue to empty, stops the
 * thread, and frees what is left (logging how many batches were dropped). */
void vpa_sender_free(vpa_sender *s, uint64_t drain_ms);

#endif
