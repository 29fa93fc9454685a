/*
 * sender.c - the agent's sender thread: sends queued batches to the relay in
 * order over nng req/rep; a batch counts as sent, in its run log, only once
 * the relay has acknowledged it as durable (stored or duplicate).
 *
 * The queue holds places in run logs, not batches: the bytes wait on disk,
 * so a relay outage costs disk, not memory, and a restarted agent finds them
 * again (vpa_store_recover). One batch is in flight at a time, so the batches of a
 * run reach the relay in seq order. A batch the relay could not take (busy,
 * timeout, relay away) is retried with exponential backoff; one it calls
 * malformed is logged and dropped, since sending it again cannot succeed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    char *path;          /* the run log */
    uint64_t off, seq;
    size_t len;
    int is_close;
    char *owned_profile; /* removed with the log after the CLOSE, or NULL */
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
    const vpa_store *store;
};

static void item_free(item *it)
{
    vp_free(it->path);
    vp_free(it->owned_profile);
    vp_free(it);
}

static void deadline_in(struct timespec *until, uint64_t ms)
{
    clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += (time_t)(ms / 1000);
    until->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until->tv_nsec >= 1000000000L) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000L;
    }
}

/* Sleep up to ms, waking early if the sender is told to quit. */
static void nap(vpa_sender *s, uint64_t ms)
{
    struct timespec until;
    deadline_in(&until, ms);
    pthread_mutex_lock(&s->mu);
    while (!s->quit && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&s->mu);
}

/* One exchange. Returns the ack status, or -1 if no ack came. */
static int exchange(vpa_sender *s, const uint8_t *msg, size_t len, vp_ack *ack)
{
    int rv = nng_send(s->sock, (void *)msg, len, 0);
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

/* Sends the head item until it is acknowledged or must be dropped.
 * Returns 1 when the item is done, 0 to retry it later. */
static int send_one(vpa_sender *s, const item *it, uint64_t *backoff)
{
    size_t len = it->len;
    int rc = VP_OK;
    uint8_t *msg = vpa_store_read_batch(it->path, it->off, len, &rc);
    if (!msg) {
        vp_error("batch %llu in %s is unreadable (%s); dropping it", (unsigned long long)it->seq,
                 it->path, rc == VP_EIO ? strerror(errno) : vp_strerror(rc));
        return 1;
    }
    vp_batch_view v;
    char why[128];
    if (vp_batch_decode(msg, len, &v, why, sizeof(why)) != VP_OK) {
        vp_error("batch %llu in %s is damaged (%s); dropping it", (unsigned long long)it->seq,
                 it->path, why);
        vp_free(msg);
        return 1;
    }
    vp_metric_set(&vpa_metrics[VPA_M_BATCHES_INFLIGHT], 1);
    vp_ack ack;
    int status = exchange(s, msg, len, &ack);
    vp_metric_set(&vpa_metrics[VPA_M_BATCHES_INFLIGHT], 0);
    int done = 0;
    if (status == VP_ACK_STORED || status == VP_ACK_DUPLICATE) {
        done = 1;
        *backoff = BACKOFF_MIN_MS;
        vp_metric_add(&vpa_metrics[VPA_M_BATCHES_SENT], 1);
    } else if (status == VP_ACK_MALFORMED) {
        vp_error("relay refused batch %llu of %s as malformed: %s; dropping it",
                 (unsigned long long)it->seq, it->path, ack.reason);
        done = 1;
    } else {
        if (status == VP_ACK_UNAUTHORIZED)
            vp_error("relay refused our token: %s", ack.reason);
        else if (status == VP_ACK_BUSY)
            vp_info("relay busy: %s", ack.reason);
        vp_metric_add(&vpa_metrics[VPA_M_RELAY_ERRORS], 1);
    }
    vp_free(msg);
    return done;
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
        if (!it || (quit && backoff > BACKOFF_MIN_MS))
            break; /* draining ends when the relay stops answering */
        if (!send_one(s, it, &backoff)) {
            nap(s, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        if (it->is_close)
            vpa_store_run_acked(it->path, it->owned_profile);
        else if (vpa_store_mark_acked(it->path, it->seq + 1) != VP_OK)
            vp_warn("cannot record the acknowledgement in %s: %s", it->path, strerror(errno));
        pthread_mutex_lock(&s->mu);
        s->head = it->next;
        if (!s->head)
            s->tail = NULL;
        s->bytes -= it->len;
        s->count--;
        vp_metric_set(&vpa_metrics[VPA_M_BUFFERED_BYTES], s->bytes);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        item_free(it);
    }
    return NULL;
}

vpa_sender *vpa_sender_new(const char *relay_urls, const char *tls_ca, const char *tls_server_name,
                           const vpa_store *store, uint64_t max_bytes, char *err, size_t errlen)
{
    vpa_sender *s = vp_calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->max_bytes = max_bytes;
    s->store = store;
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
    /* Several relays: one dialer each on the same req socket, which sends
     * each request to a connected relay that is ready, so a fleet spreads
     * over them and a relay that goes away is simply not chosen. */
    char urls[4096];
    snprintf(urls, sizeof(urls), "%s", relay_urls);
    char *save = NULL;
    int dialers = 0;
    for (char *url = strtok_r(urls, ",", &save); url; url = strtok_r(NULL, ",", &save)) {
        while (*url == ' ')
            url++;
        nng_dialer d;
        rv = nng_dialer_create(&d, s->sock, url);
        if (rv == 0 && strncmp(url, "tls+", 4) == 0) {
            if (tls_ca && *tls_ca)
                rv = nng_dialer_set_string(d, NNG_OPT_TLS_CA_FILE, tls_ca);
            if (rv == 0)
                rv = nng_dialer_set_int(d, NNG_OPT_TLS_AUTH_MODE,
                                        tls_ca && *tls_ca ? NNG_TLS_AUTH_MODE_REQUIRED
                                                          : NNG_TLS_AUTH_MODE_NONE);
            if (rv == 0 && tls_server_name && *tls_server_name)
                rv = nng_dialer_set_string(d, NNG_OPT_TLS_SERVER_NAME, tls_server_name);
        }
        if (rv == 0)
            rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            snprintf(err, errlen, "cannot dial relay %s: %s", url, nng_strerror(rv));
            nng_close(s->sock);
            goto fail;
        }
        dialers++;
    }
    if (dialers == 0) {
        snprintf(err, errlen, "--relay names no relay");
        nng_close(s->sock);
        goto fail;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    return s;
fail:
    vp_free(s);
    return NULL;
}

int vpa_sender_start(vpa_sender *s)
{
    return pthread_create(&s->thread, NULL, sender_main, s) == 0 ? VP_OK : VP_EIO;
}

int vpa_sender_put(vpa_sender *s, char *log_path, uint64_t off, size_t len, uint64_t seq, int is_close,
                   const char *owned_profile)
{
    item *it = vp_calloc(1, sizeof(*it));
    if (!it)
        return VP_ENOMEM;
    if (owned_profile && !(it->owned_profile = vp_strndup(owned_profile, strlen(owned_profile)))) {
        vp_free(it);
        return VP_ENOMEM;
    }
    it->path = log_path;
    it->off = off;
    it->len = len;
    it->seq = seq;
    it->is_close = is_close;
    pthread_mutex_lock(&s->mu);
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
    deadline_in(&until, drain_ms);
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
        vp_warn("stopping with %zu batches (%llu bytes) not yet acknowledged; they stay "
                "queued on disk for the next start", s->count, (unsigned long long)s->bytes);
    for (item *it = s->head, *next; it; it = next) {
        next = it->next;
        item_free(it);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    vp_free(s);
}
