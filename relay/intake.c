/*
 * intake.c - vmpv-relay's side of proto/PROTOCOL.md §B: receive batches over
 * nng rep0, check them, make them durable in the spool, acknowledge.
 *
 * Each of a fixed number of nng contexts carries one request at a time, so
 * the number of batches in the relay's memory is bounded by the context
 * count. A context moves RECV -> (loop) CHECK -> (pool) PREPARE -> (pool)
 * STORE -> SEND -> RECV.
 *
 * PREPARE (decompressing, which checks the frame's LZ4 checksums, reading the
 * records, thinning) is one pool job per batch, so batches are prepared on
 * every core while a commit runs. It used to run inside the commit, one
 * batch after another, and every batch waited for the whole wave's work.
 *
 * Group commit: at most one spool transaction runs at a time; the prepared
 * batches that arrive meanwhile wait and all go into the next one, so under
 * load many agents share each disk sync, and at low load a batch is
 * committed alone, at once.
 */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "relay_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"

enum ctx_state { CTX_RECV, CTX_SEND };

typedef struct intake_ctx {
    vpr_intake *in;
    nng_ctx ctx;
    nng_aio *aio;
    enum ctx_state state;
    nng_msg *msg;
    uint64_t arrived_ns; /* uv_hrtime when the receive finished */
    vp_batch_view batch;
    uint8_t status;
    char reason[VP_MAX_REASON_LEN + 1];
    struct intake_ctx *next_ready;
    struct intake_ctx *next_commit;
    uv_work_t prepare;
    vpr_thin_out thin;
    uint8_t *body; /* the batch as it will be stored (tokenless, maybe thinned) */
} intake_ctx;

struct vpr_intake {
    vpr_relay *relay;
    nng_socket sock;
    nng_listener listener;
    uv_async_t ready_async;
    pthread_mutex_t mu;
    intake_ctx *ready; /* received, waiting for the loop */
    intake_ctx *ctxs;
    unsigned count;
    int stopping;
    intake_ctx *waiting, *waiting_tail; /* checked, waiting for a commit */
    intake_ctx *committing;             /* in the transaction running now */
    unsigned preparing;                 /* prepare jobs queued or running */
    uv_work_t commit;
    int commit_busy;
};

static void arm_recv(intake_ctx *c)
{
    c->state = CTX_RECV;
    nng_ctx_recv(c->ctx, c->aio);
}

/* nng thread: a receive or a send finished. */
static void on_aio(void *arg)
{
    intake_ctx *c = arg;
    int rv = nng_aio_result(c->aio);
    if (c->state == CTX_SEND) {
        if (rv != 0) /* the agent went away; it will resend */
            nng_msg_free(nng_aio_get_msg(c->aio));
        if (!c->in->stopping)
            arm_recv(c);
        return;
    }
    if (rv != 0) {
        if (rv != NNG_ECLOSED && !c->in->stopping)
            arm_recv(c);
        return;
    }
    c->msg = nng_aio_get_msg(c->aio);
    c->arrived_ns = uv_hrtime();
    pthread_mutex_lock(&c->in->mu);
    c->next_ready = c->in->ready;
    c->in->ready = c;
    /* Under the mutex: once stop has closed the handle, nobody sends. */
    if (!c->in->stopping)
        uv_async_send(&c->in->ready_async);
    pthread_mutex_unlock(&c->in->mu);
}

static void reply(intake_ctx *c, uint8_t status, const uint8_t *run_id, uint64_t seq,
                  const char *reason)
{
    uint8_t ack[VP_ACK_HEADER_LEN + VP_MAX_REASON_LEN];
    int n = vp_ack_encode(status, run_id, seq, reason, ack, sizeof(ack));
    /* Reuse the request's message for the reply: no allocation can fail. */
    nng_msg_clear(c->msg);
    if (n < 0 || nng_msg_append(c->msg, ack, (size_t)n) != 0) {
        nng_msg_free(c->msg);
        c->msg = NULL;
        arm_recv(c);
        return;
    }
    nng_aio_set_msg(c->aio, c->msg);
    c->msg = NULL;
    c->state = CTX_SEND;
    /* Measured here, not at the agent: what the relay itself adds, so an
     * operator can tell a slow relay from a slow network. */
    vp_histogram_observe(&vpr_ack_latency, (uv_hrtime() - c->arrived_ns) / 1000);
    nng_ctx_send(c->ctx, c->aio);
}

/* Thread pool, one job per batch: decompress (which checks the LZ4 content
 * checksum), read its records and thin it. Sets c->body, or c->status with
 * a reason. Spool reads go through the relay's lookup connection: the
 * intake connection is busy with commits. */
static void prepare_work(uv_work_t *w)
{
    intake_ctx *c = w->data;
    vpr_intake *in = c->in;
    uint8_t *raw = NULL;
    char why[256];
    c->body = NULL;
    c->status = VP_ACK_STORED;
    if (vp_batch_payload(&c->batch, &raw, why, sizeof(why)) != VP_OK) {
        c->status = VP_ACK_MALFORMED;
        snprintf(c->reason, sizeof(c->reason), "%s", why);
        return;
    }
    int rc = vpr_thin_batch(in->relay->lookup, &c->batch, raw, in->relay->decimate,
                            in->relay->decimate_after, &c->thin, why, sizeof(why));
    vp_free(raw);
    if (rc != VP_OK) {
        c->status = rc == VP_ECORRUPT ? VP_ACK_MALFORMED : VP_ACK_BUSY;
        snprintf(c->reason, sizeof(c->reason), "%s", rc == VP_ECORRUPT ? why : "relay out of memory");
        return;
    }
    c->body = c->thin.body;
}

static void maybe_commit(vpr_intake *in);

/* Loop thread: a prepared batch waits for the next commit; a refused one is
 * answered now. */
static void prepare_done(uv_work_t *w, int status)
{
    intake_ctx *c = w->data;
    vpr_intake *in = c->in;
    in->preparing--;
    if (status == UV_ECANCELED || (in->stopping && c->status == VP_ACK_STORED)) {
        vp_free(c->body);
        c->body = NULL;
        reply(c, VP_ACK_BUSY, c->batch.run_id, c->batch.seq, "relay is stopping");
        return;
    }
    if (c->status != VP_ACK_STORED) {
        vp_metric_add(&vpr_metrics[c->status == VP_ACK_MALFORMED ? VPR_M_REFUSED_MALFORMED : VPR_M_REFUSED_FULL], 1);
        if (c->status == VP_ACK_MALFORMED)
            vp_warn("refused a malformed batch: %s", c->reason);
        reply(c, c->status, c->batch.run_id, c->batch.seq, c->reason);
        return;
    }
    c->next_commit = NULL;
    if (in->waiting_tail)
        in->waiting_tail->next_commit = c;
    else
        in->waiting = c;
    in->waiting_tail = c;
    maybe_commit(in);
}

/* Thread pool: make all the prepared batches durable in one transaction.
 * The stored copies have no token. */
static void commit_work(uv_work_t *w)
{
    vpr_intake *in = w->data;
    vp_spool_put_req reqs[VP_MAX_RELAY_PENDING];
    intake_ctx *who[VP_MAX_RELAY_PENDING];
    size_t n = 0;
    for (intake_ctx *c = in->committing; c && n < VP_MAX_RELAY_PENDING; c = c->next_commit) {
        reqs[n] = (vp_spool_put_req){.run_id = c->batch.run_id, .seq = c->batch.seq,
                                     .kind = c->batch.kind, .body = c->body,
                                     .len = c->thin.body_len,
                                     .info = c->thin.has_info ? &c->thin.info : NULL};
        who[n++] = c;
    }
    if (n)
        vp_spool_put_many(in->relay->spool, reqs, n);
    /* At the bound, thin what is spooled before refusing anything: agents
     * would hold the data, but thinned data beats data that waits. */
    for (int round = 0; round < 8; round++) {
        vp_spool_put_req again[VP_MAX_RELAY_PENDING];
        size_t idx[VP_MAX_RELAY_PENDING], m = 0;
        for (size_t i = 0; i < n; i++) {
            if (reqs[i].result == VP_EFULL) {
                again[m] = reqs[i];
                idx[m++] = i;
            }
        }
        uint64_t removed = 0;
        if (m == 0 || vpr_squeeze(in->relay->spool, &removed) <= 0)
            break;
        vp_metric_add(&vpr_metrics[VPR_M_THINNED], removed);
        vp_spool_put_many(in->relay->spool, again, m);
        for (size_t j = 0; j < m; j++)
            reqs[idx[j]] = again[j];
    }
    for (size_t i = 0; i < n; i++) {
        intake_ctx *c = who[i];
        vp_free(c->body);
        c->body = NULL;
        c->reason[0] = '\0';
        if (reqs[i].result == VP_OK) {
            c->status = reqs[i].duplicate ? VP_ACK_DUPLICATE : VP_ACK_STORED;
        } else {
            c->status = VP_ACK_BUSY;
            snprintf(c->reason, sizeof(c->reason), "%s",
                     reqs[i].result == VP_EFULL ? "relay spool is full" : "relay spool write failed");
        }
    }
}

static void commit_done(uv_work_t *w, int status)
{
    vpr_intake *in = w->data;
    vpr_relay *r = in->relay;
    int stored = 0;
    for (intake_ctx *c = in->committing, *next; c; c = next) {
        next = c->next_commit;
        if (status == UV_ECANCELED) {
            vp_free(c->body);
            c->body = NULL;
            c->status = VP_ACK_BUSY;
            snprintf(c->reason, sizeof(c->reason), "relay is stopping");
        }
        switch (c->status) {
        case VP_ACK_STORED:
            vp_metric_add(&vpr_metrics[VPR_M_BATCHES_IN], 1);
            vp_metric_add(&vpr_metrics[VPR_M_SAMPLES_IN], c->batch.samples);
            vp_metric_add(&vpr_metrics[VPR_M_THINNED], c->thin.removed);
            stored = 1;
            break;
        case VP_ACK_DUPLICATE:
            vp_metric_add(&vpr_metrics[VPR_M_DUPLICATES], 1);
            break;
        case VP_ACK_MALFORMED:
            vp_metric_add(&vpr_metrics[VPR_M_REFUSED_MALFORMED], 1);
            vp_warn("refused a malformed batch: %s", c->reason);
            break;
        default:
            vp_metric_add(&vpr_metrics[VPR_M_REFUSED_FULL], 1);
            break;
        }
        reply(c, c->status, c->batch.run_id, c->batch.seq, c->reason);
    }
    in->committing = NULL;
    in->commit_busy = 0;
    if (stored)
        vpr_forwarder_kick(r->forwarder);
    maybe_commit(in);
}

static void maybe_commit(vpr_intake *in)
{
    if (in->commit_busy || !in->waiting)
        return;
    in->committing = in->waiting;
    in->waiting = in->waiting_tail = NULL;
    in->commit.data = in;
    if (uv_queue_work(in->relay->loop, &in->commit, commit_work, commit_done) == 0) {
        in->commit_busy = 1;
        return;
    }
    for (intake_ctx *c = in->committing, *next; c; c = next) {
        next = c->next_commit;
        reply(c, VP_ACK_BUSY, c->batch.run_id, c->batch.seq, "relay is busy");
    }
    in->committing = NULL;
}

/* Loop thread: check what nng received and pass good batches to the pool. */
static void on_ready(uv_async_t *a)
{
    vpr_intake *in = a->data;
    pthread_mutex_lock(&in->mu);
    intake_ctx *list = in->ready;
    in->ready = NULL;
    pthread_mutex_unlock(&in->mu);
    while (list) {
        intake_ctx *c = list;
        list = c->next_ready;
        char why[128];
        int rc = vp_batch_decode(nng_msg_body(c->msg), nng_msg_len(c->msg), &c->batch, why,
                                 sizeof(why));
        if (rc != VP_OK) {
            vp_metric_add(&vpr_metrics[VPR_M_REFUSED_MALFORMED], 1);
            vp_warn("refused a malformed batch: %s", why);
            reply(c, VP_ACK_MALFORMED, NULL, 0, why);
            continue;
        }
        if (c->batch.kind == VP_BATCH_GAP) {
            vp_metric_add(&vpr_metrics[VPR_M_REFUSED_MALFORMED], 1);
            reply(c, VP_ACK_MALFORMED, c->batch.run_id, c->batch.seq,
                  "GAP batches are the relay's to send, not an agent's");
            continue;
        }
        if (!vp_batch_token_ok(&c->batch, in->relay->token)) {
            vp_metric_add(&vpr_metrics[VPR_M_REFUSED_TOKEN], 1);
            vp_warn("refused a batch with a wrong or missing token");
            reply(c, VP_ACK_UNAUTHORIZED, c->batch.run_id, c->batch.seq,
                  "wrong or missing token (check the agent's --token)");
            continue;
        }
        if (in->stopping) {
            reply(c, VP_ACK_BUSY, c->batch.run_id, c->batch.seq, "relay is stopping");
            continue;
        }
        c->prepare.data = c;
        if (uv_queue_work(in->relay->loop, &c->prepare, prepare_work, prepare_done) != 0) {
            reply(c, VP_ACK_BUSY, c->batch.run_id, c->batch.seq, "relay is busy");
            continue;
        }
        in->preparing++;
    }
}

/* nng thread: count agent connections for /metrics. */
static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p, (void)arg;
    if (ev == NNG_PIPE_EV_ADD_POST)
        vp_metric_add(&vpr_metrics[VPR_M_AGENTS], 1);
    else if (ev == NNG_PIPE_EV_REM_POST)
        vp_metric_sub(&vpr_metrics[VPR_M_AGENTS], 1);
}

vpr_intake *vpr_intake_start(vpr_relay *r, const char *url, const char *tls_cert_key,
                             unsigned contexts, char *bound, size_t bound_cap, char *err,
                             size_t errlen)
{
    vpr_intake *in = vp_calloc(1, sizeof(*in));
    if (!in) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    in->relay = r;
    pthread_mutex_init(&in->mu, NULL);
    int rv = nng_rep0_open(&in->sock);
    if (rv != 0) {
        snprintf(err, errlen, "cannot open nng rep socket: %s", nng_strerror(rv));
        goto fail;
    }
    nng_pipe_notify(in->sock, NNG_PIPE_EV_ADD_POST, on_pipe, NULL);
    nng_pipe_notify(in->sock, NNG_PIPE_EV_REM_POST, on_pipe, NULL);
    /* A message over this is dropped by nng before it reaches us. */
    nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, VP_MAX_HTTP_BATCH_BODY);
    in->ctxs = vp_calloc(contexts, sizeof(*in->ctxs));
    if (!in->ctxs) {
        snprintf(err, errlen, "out of memory");
        goto fail_sock;
    }
    for (unsigned i = 0; i < contexts; i++) {
        intake_ctx *c = &in->ctxs[i];
        c->in = in;
        if ((rv = nng_ctx_open(&c->ctx, in->sock)) != 0 ||
            (rv = nng_aio_alloc(&c->aio, on_aio, c)) != 0) {
            snprintf(err, errlen, "cannot set up nng contexts: %s", nng_strerror(rv));
            goto fail_sock;
        }
        in->count++;
    }
    if ((rv = nng_listener_create(&in->listener, in->sock, url)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", url, nng_strerror(rv));
        goto fail_sock;
    }
    if (strncmp(url, "tls+", 4) == 0) {
        if (!tls_cert_key || !*tls_cert_key) {
            snprintf(err, errlen, "%s needs --tls-cert-key (a PEM file with certificate and key)", url);
            goto fail_sock;
        }
        if ((rv = nng_listener_set_string(in->listener, NNG_OPT_TLS_CERT_KEY_FILE, tls_cert_key)) != 0) {
            snprintf(err, errlen, "cannot use %s: %s", tls_cert_key, nng_strerror(rv));
            goto fail_sock;
        }
    }
    if ((rv = nng_listener_start(in->listener, 0)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", url, nng_strerror(rv));
        goto fail_sock;
    }
    int port = 0;
    snprintf(bound, bound_cap, "%s", url);
    if (nng_listener_get_int(in->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0) {
        /* Report the real port when the URL asked for port 0. */
        char *colon = strrchr(bound, ':');
        if (colon)
            snprintf(colon + 1, bound_cap - (size_t)(colon + 1 - bound), "%d", port);
    }
    uv_async_init(r->loop, &in->ready_async, on_ready);
    in->ready_async.data = in;
    for (unsigned i = 0; i < in->count; i++)
        arm_recv(&in->ctxs[i]);
    return in;
fail_sock:
    for (unsigned i = 0; i < in->count; i++) {
        nng_aio_free(in->ctxs[i].aio);
        nng_ctx_close(in->ctxs[i].ctx);
    }
    vp_free(in->ctxs);
    nng_close(in->sock);
fail:
    pthread_mutex_destroy(&in->mu);
    vp_free(in);
    return NULL;
}

int vpr_intake_idle(const vpr_intake *in)
{
    return !in->commit_busy && !in->waiting && !in->preparing;
}

void vpr_intake_stop(vpr_intake *in)
{
    pthread_mutex_lock(&in->mu);
    in->stopping = 1;
    pthread_mutex_unlock(&in->mu);
    nng_listener_close(in->listener);
    uv_close((uv_handle_t *)&in->ready_async, NULL);
}

void vpr_intake_free(vpr_intake *in)
{
    nng_close(in->sock);
    for (unsigned i = 0; i < in->count; i++) {
        nng_aio_stop(in->ctxs[i].aio);
        nng_aio_free(in->ctxs[i].aio);
    }
    /* Messages received but never processed by the loop. */
    for (intake_ctx *c = in->ready; c; c = c->next_ready)
        nng_msg_free(c->msg);
    vp_free(in->ctxs);
    pthread_mutex_destroy(&in->mu);
    vp_free(in);
}
