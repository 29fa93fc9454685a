/*
 * relay_int.h - declarations shared by vmpv-relay's own files only.
 *
 * Threads: nng's threads receive batches and hand them to the libuv loop
 * (a mutex-guarded list and a uv_async); the loop checks their headers and
 * gives each to libuv's thread pool to prepare (decompress, read, thin:
 * spool reads on the lookup connection), then the prepared ones to one
 * group commit at a time; acknowledgements go back out through nng once the
 * commit is durable. The forwarder is its own thread with its own spool
 * connection and a blocking libcurl handle; the checkpointer another, with
 * its own connection.
 */
#ifndef RELAY_INT_H
#define RELAY_INT_H

#include <stdint.h>
#include <uv.h>

#include "vp_metrics.h"
#include "vp_spool.h"

typedef struct vpr_intake vpr_intake;
typedef struct vpr_forwarder vpr_forwarder;

typedef struct vpr_relay {
    uv_loop_t *loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t stop_check;
    const char *token;     /* what agents must present; SIGHUP may change it */
    vp_spool *spool;       /* intake's connection, used from the thread pool */
    vp_spool *lookup;      /* reads while preparing batches (spool is busy committing) */
    vp_spool_checkpointer *checkpointer; /* checkpoints the spool's WAL off the commit path */
    vpr_intake *intake;
    vpr_forwarder *forwarder;
    struct vp_opshttp *ops; /* /healthz and /metrics, if configured */
    int stopping;
    int decimate;          /* thin long profiles to the seed's rates */
    double decimate_after; /* ... once they are this old (seconds) */
} vpr_relay;

enum {
    VPR_M_BATCHES_IN,
    VPR_M_SAMPLES_IN,
    VPR_M_DUPLICATES,
    VPR_M_REFUSED_MALFORMED,
    VPR_M_REFUSED_TOKEN,
    VPR_M_REFUSED_FULL,
    VPR_M_FORWARDED,
    VPR_M_FORWARD_RETRIES,
    VPR_M_FORWARD_DROPPED,
    VPR_M_AGENTS,
    VPR_M_SPOOL_BYTES,
    VPR_M_THINNED,
    VPR_M_GAPS,
    VPR_M_LEGACY_SENT,
    VPR_M_ACK_LATENCY,
    VPR_M_FORWARD_IN_FLIGHT,
    VPR_M_COUNT
};
extern vp_metric vpr_metrics[VPR_M_COUNT];
extern vp_histogram vpr_ack_latency; /* shown as vpr_metrics[VPR_M_ACK_LATENCY] */

/* intake.c: listen on url (tls+tcp:// URLs use tls_cert_key, a PEM file
 * with certificate and key) with `contexts` concurrent requests. On success
 * writes the bound address (with the real port) into bound. */
vpr_intake *vpr_intake_start(vpr_relay *r, const char *url, const char *tls_cert_key,
                             unsigned contexts, char *bound, size_t bound_cap, char *err,
                             size_t errlen);
/* Stops receiving; requests being written to the spool still finish. */
void vpr_intake_stop(vpr_intake *in);
void vpr_intake_free(vpr_intake *in);
/* Non-zero when no batch is waiting for or inside a spool commit. */
int vpr_intake_idle(const vpr_intake *in);

/* thin.c: what one batch becomes on its way into the spool. */
typedef struct vpr_thin_out {
    uint8_t *body;          /* the batch to store, without token; caller frees */
    size_t body_len;
    vp_spool_run_info info; /* set when the batch carries the run's header */
    int has_info;
    uint64_t removed;       /* samples thinned out */
} vpr_thin_out;

/* vpr_thin_batch checks a DATA batch's records and sample count against
 * its header and, if `enabled`, decimates it to the seed's rate for the
 * profile's age. Thread pool only (reads the spool). Returns VP_OK, or
 * VP_ECORRUPT with a reason (the batch is malformed), or VP_ENOMEM. */
int vpr_thin_batch(vp_spool *spool, const vp_batch_view *v, const uint8_t *raw, int enabled,
                   double after_s, vpr_thin_out *out, char *why, size_t whylen);

/* vpr_squeeze makes room in a full spool by halving the samples of the
 * run that takes the most room (thread pool only). Returns the bytes freed
 * (0 if nothing could be thinned) and in *removed the samples removed. */
int64_t vpr_squeeze(vp_spool *spool, uint64_t *removed);

/* forward.c: a thread that moves spooled batches to the server, up to
 * concurrency runs at once (1..VP_MAX_FORWARD_CONCURRENCY). */
vpr_forwarder *vpr_forwarder_start(const char *spool_path, const char *server_url,
                                   const char *server_token, uint64_t gap_wait_ms,
                                   const char *legacy_url, unsigned concurrency, char *err,
                                   size_t errlen);
/* From the next pass on, forward up to n runs at once (1..
 * VP_MAX_FORWARD_CONCURRENCY). Thread-safe. */
void vpr_forwarder_set_concurrency(vpr_forwarder *f, unsigned n);
/* Wakes the forwarder: something new is in the spool. Thread-safe. */
void vpr_forwarder_kick(vpr_forwarder *f);
/* Gives the forwarder up to drain_ms to empty the spool, then stops it. */
void vpr_forwarder_free(vpr_forwarder *f, uint64_t drain_ms);

/* legacy.c: sends one whole run, rebuilt from the spool's kept copies, to an
 * old vmprof-viewer server (POST base_url/submit/); forgets the copies when
 * it took them, or when the run can never be sent (logged). Forwarder
 * thread only. VP_EIO if the old server did not take it (retry later). */
int vpr_legacy_send(vp_spool *spool, const char *base_url, const uint8_t run_id[VP_RUN_ID_LEN]);

#endif
