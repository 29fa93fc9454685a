/*
 * sender.c - the agent's sender thread: sends queued batches to the relay in
 * order over nng req/rep and keeps each until the relay acknowledges it as
 * durable (stored or duplicate).
 *
 * One batch is in flight at a time, so batches of a run reach the relay in
 * seq order. A batch the relay could not take (busy, timeout, relay away) is
 * retried with exponential backoff; a batch it calls malformed is logged and
 * dropped, since sending it again cannot succeed.
 */
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"

#define SEND_TIMEOUT_MS 5000
#define ACK_TIMEOUT_MS 15000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 5000

typedef struct item {
    struct item *next;
    uint8_t *msg;
    size_t len;
    char *unlink_path;
} item;

struct vpa_sender {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
    uint64_t bytes, max_bytes;
    size_t count;
    int quit;
    nng_socket sock;
};

static void item_free(item *it)
{
    vp_free(it->msg);
    vp_free(it->unlink_path);
    vp_free(it);
}

/* Sleep up to ms, waking early if the sender is told to quit. */
static void nap(vpa_sender *s, uint64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->quit && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&s->mu);
}

/* One exchange. Returns the ack status, or -1 if no ack came. */
static int exchange(vpa_sender *s, const item *it, vp_ack *ack)
{
    int rv = nng_send(s->sock, it->msg, it->len, 0);
    if (rv != 0) {
        vp_debug("send to relay failed: %s", nng_strerror(rv));
        return -1;
    }
    void *reply = NULL;
    size_t rlen = 0;
    rv = nng_recv(s->sock, &reply, &rlen, NNG_FLAG_ALLOC);
    if (rv != 0) {
        vp_warn("no acknowledgement from the relay: %s", nng_strerror(rv));
        return -1;
    }
    int status = vp_ack_decode(reply, rlen, ack) == VP_OK ? ack->status : -1;
    if (status < 0)
        vp_warn("relay sent a malformed acknowledgement (%zu bytes)", rlen);
    nng_free(reply, rlen);
    return status;
}

static void *sender_main(void *arg)
{
    vpa_sender *s = arg;
    uint64_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->quit && !s->head)
            pthread_cond_wait(&s->cv, &s->mu);
        item *it = s->head;
        int quit = s->quit;
        pthread_mutex_unlock(&s->mu);
        if (quit && (!it || backoff > BACKOFF_MIN_MS))
            break; /* draining ends when the relay stops answering */
        if (!it)
            break;
        vp_metric_set(&vpa_metrics[VPA_M_BATCHES_INFLIGHT], 1);
        vp_ack ack;
        int status = exchange(s, it, &ack);
        vp_metric_set(&vpa_metrics[VPA_M_BATCHES_INFLIGHT], 0);
        int done = 0;
        if (status == VP_ACK_STORED || status == VP_ACK_DUPLICATE) {
            done = 1;
            backoff = BACKOFF_MIN_MS;
            vp_metric_add(&vpa_metrics[VPA_M_BATCHES_SENT], 1);
        } else if (status == VP_ACK_MALFORMED) {
            char id[33];
            vp_run_id_hex(ack.run_id, id);
            vp_error("relay refused batch %s/%llu as malformed: %s; dropping it", id,
                     (unsigned long long)ack.seq, ack.reason);
            done = 1;
        } else {
            if (status == VP_ACK_UNAUTHORIZED)
                vp_error("relay refused our token: %s", ack.reason);
            else if (status == VP_ACK_BUSY)
                vp_info("relay busy: %s", ack.reason);
            vp_metric_add(&vpa_metrics[VPA_M_RELAY_ERRORS], 1);
            nap(s, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        if (done) {
            pthread_mutex_lock(&s->mu);
            s->head = it->next;
            if (!s->head)
                s->tail = NULL;
            s->bytes -= it->len;
            s->count--;
            vp_metric_set(&vpa_metrics[VPA_M_BUFFERED_BYTES], s->bytes);
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            /* The relay has every batch of this run now, so the profile file
             * the client left for us is no longer needed. */
            if (it->unlink_path && unlink(it->unlink_path) != 0 && errno != ENOENT)
                vp_warn("cannot remove %s: %s", it->unlink_path, strerror(errno));
            item_free(it);
        }
    }
    return NULL;
}

vpa_sender *vpa_sender_new(const char *relay_url, uint64_t max_bytes, char *err, size_t errlen)
{
    vpa_sender *s = vp_calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->max_bytes = max_bytes;
    int rv = nng_req0_open(&s->sock);
    if (rv != 0) {
        snprintf(err, errlen, "cannot open nng req socket: %s", nng_strerror(rv));
        goto fail;
    }
    nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, SEND_TIMEOUT_MS);
    nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, ACK_TIMEOUT_MS);
    /* Resending is ours to decide (with backoff), not req0's timer. */
    nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, 2000);
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, VP_ACK_HEADER_LEN + VP_MAX_REASON_LEN);
    rv = nng_dial(s->sock, relay_url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        snprintf(err, errlen, "cannot dial relay %s: %s", relay_url, nng_strerror(rv));
        nng_close(s->sock);
        goto fail;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, sender_main, s) != 0) {
        snprintf(err, errlen, "cannot start the sender thread");
        nng_close(s->sock);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        goto fail;
    }
    return s;
fail:
    vp_free(s);
    return NULL;
}

int vpa_sender_put(vpa_sender *s, uint8_t *msg, size_t len, char *unlink_path)
{
    pthread_mutex_lock(&s->mu);
    if (s->bytes >= s->max_bytes || s->count >= VP_MAX_AGENT_QUEUE) {
        pthread_mutex_unlock(&s->mu);
        return VP_EFULL;
    }
    item *it = vp_calloc(1, sizeof(*it));
    if (!it) {
        pthread_mutex_unlock(&s->mu);
        return VP_ENOMEM;
    }
    it->msg = msg;
    it->len = len;
    it->unlink_path = unlink_path;
    if (s->tail)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    s->bytes += len;
    s->count++;
    vp_metric_set(&vpa_metrics[VPA_M_BUFFERED_BYTES], s->bytes);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return VP_OK;
}

int vpa_sender_over_bound(vpa_sender *s)
{
    pthread_mutex_lock(&s->mu);
    int over = s->bytes >= s->max_bytes || s->count >= VP_MAX_AGENT_QUEUE;
    pthread_mutex_unlock(&s->mu);
    return over;
}

void vpa_sender_free(vpa_sender *s, uint64_t drain_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(drain_ms / 1000);
    until.tv_nsec += (long)(drain_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (s->head && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT) {
    }
    s->quit = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    /* Closing the socket aborts a send or receive in progress. */
    nng_close(s->sock);
    pthread_join(s->thread, NULL);
    if (s->count)
        vp_warn("stopping with %zu batches (%llu bytes) the relay has not acknowledged", s->count,
                (unsigned long long)s->bytes);
    for (item *it = s->head, *next; it; it = next) {
        next = it->next;
        item_free(it);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    vp_free(s);
}
