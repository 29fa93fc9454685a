/*
 * forward.c - the relay's forwarder thread: moves spooled batches to
 * vmpv-server (proto/PROTOCOL.md §C), each run in seq order, deleting a batch
 * from the spool only once the server has confirmed it.
 *
 * Up to --forward-concurrency runs are forwarded at once (libcurl's multi
 * interface, one connection each), one request per run at a time, since the
 * server applies a run's batches in order. One request at a time left the
 * relay and the server each mostly waiting for the other, and emptied the
 * spool slower than the intake filled it.
 *
 * Outcomes per response, after Fluent Bit's out_http: 200 done; 409 means the
 * server wants another seq first (already applied: done; missing: wait for
 * it); other 4xx but 408/429 are permanent (logged, counted, dropped); 5xx,
 * 408, 429 and transport errors are retried with exponential backoff and
 * jitter.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"

#define RUNS_PER_PASS 64
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define IDLE_WAIT_MS 1000
#define RESPONSE_MAX 4096
#define GAP_SLOTS 64 /* runs waiting for a missing batch that we keep time for */

/* A run whose next batch the server waits for and the spool lacks. */
typedef struct gap_wait {
    uint8_t run_id[VP_RUN_ID_LEN];
    uint64_t expected;
    uint64_t since_ms;
    int used;
} gap_wait;

typedef struct response {
    char body[RESPONSE_MAX];
    size_t len;
} response;

/* A request slot: one run's batches, one request in flight at a time. */
typedef struct fwd_slot {
    CURL *easy;
    int in_flight;
    vp_spool_item items[VP_FORWARD_PEEK];
    int count, next; /* items peeked; the one being sent */
    uint8_t *msg;    /* the request's body while it is in flight */
    response resp;
} fwd_slot;

struct vpr_forwarder {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int kicked, quit, draining;
    int kickable_wait; /* in a wait that a kick ends: only then wake it */
    vp_spool *spool;
    CURL *curl; /* gap notices, one at a time, between requests */
    CURLM *multi;
    fwd_slot slots[VP_MAX_FORWARD_CONCURRENCY]; /* every one ready: SIGHUP may use more */
    unsigned concurrency;                       /* for the pass under way */
    _Atomic unsigned wanted_concurrency;        /* from the next pass on */
    int server_up; /* its last answer was not one to retry */
    struct curl_slist *headers;
    char *url;
    char *token;
    uint64_t backoff_ms;
    unsigned rand_state;
    uint64_t gap_wait_ms;
    gap_wait gaps[GAP_SLOTS];
    char *legacy_url;          /* second sink, or NULL */
    uint64_t legacy_next_ms;   /* back off while the old server is away */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

enum outcome { SENT_OK, SENT_WAIT_GAP, SENT_DROP, SENT_RETRY, SENT_AGAIN };

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    response *r = arg;
    size_t len = size * n, room = sizeof(r->body) - 1 - r->len;
    size_t take = len < room ? len : room; /* keep the start, ignore the rest */
    memcpy(r->body + r->len, p, take);
    r->len += take;
    r->body[r->len] = '\0';
    return len;
}

/* wait_ms sleeps ms, or until quit, or (if kickable) until new batches
 * are stored. A backoff is not kickable: after every commit the intake
 * kicks, and a kick that ended the backoff made the forwarder retry a
 * server that was down after every commit, reading the spool each time.
 * A kick that comes meanwhile is kept for the next wait; the one that
 * starts a drain ends any wait. */
static void wait_ms(vpr_forwarder *f, uint64_t ms, int kickable)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&f->mu);
    f->kickable_wait = kickable;
    while (!((kickable || f->draining) && f->kicked) && !f->quit &&
           pthread_cond_timedwait(&f->cv, &f->mu, &until) != ETIMEDOUT) {
    }
    f->kickable_wait = 0;
    if (kickable || f->draining)
        f->kicked = 0;
    pthread_mutex_unlock(&f->mu);
}

/* POSTs one batch message; returns the HTTP status (0 on a transport
 * error) with the start of the response body in resp. */
static long send_batch(vpr_forwarder *f, const uint8_t *msg, size_t len, response *resp)
{
    resp->len = 0;
    resp->body[0] = '\0';
    curl_easy_setopt(f->curl, CURLOPT_POSTFIELDS, (const char *)msg);
    curl_easy_setopt(f->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, resp);
    CURLcode cc = curl_easy_perform(f->curl);
    if (cc != CURLE_OK) {
        snprintf(resp->body, sizeof(resp->body), "%s", curl_easy_strerror(cc));
        return 0;
    }
    long code = 0;
    curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

/* The server waits for `expected` of this run, which the spool does not
 * have. After gap_wait_ms of that, tell the server to skip to `seq`: the
 * gap is recorded in the profile instead of blocking it forever. Returns 1
 * if the gap was closed. */
static int close_gap(vpr_forwarder *f, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t expected,
                     uint64_t seq)
{
    uint64_t now = mono_ms();
    gap_wait *slot = NULL, *oldest = &f->gaps[0];
    for (int i = 0; i < GAP_SLOTS; i++) {
        gap_wait *g = &f->gaps[i];
        if (g->used && memcmp(g->run_id, run_id, VP_RUN_ID_LEN) == 0) {
            slot = g;
            break;
        }
        if (!g->used || g->since_ms < oldest->since_ms)
            oldest = g;
    }
    if (!slot || slot->expected != expected) {
        slot = slot ? slot : oldest;
        memcpy(slot->run_id, run_id, VP_RUN_ID_LEN);
        slot->expected = expected;
        slot->since_ms = now;
        slot->used = 1;
        return 0;
    }
    if (now - slot->since_ms < f->gap_wait_ms)
        return 0;
    char json[128], id[33];
    vp_run_id_hex(run_id, id);
    snprintf(json, sizeof(json), "{\"to\":%llu,\"reason\":\"never reached the relay\"}",
             (unsigned long long)seq);
    uint8_t *msg = NULL;
    size_t len = 0;
    if (vp_batch_encode(VP_BATCH_GAP, run_id, expected, 0, f->token, (const uint8_t *)json,
                        strlen(json), &msg, &len) != VP_OK)
        return 0;
    response resp;
    long code = send_batch(f, msg, len, &resp);
    vp_free(msg);
    if (code != 200) {
        vp_warn("server did not take the gap %s/%llu..%llu: %ld %s", id,
                (unsigned long long)expected, (unsigned long long)seq - 1, code, resp.body);
        slot->since_ms = now; /* try again after another wait */
        return 0;
    }
    vp_warn("run %s: batches %llu..%llu never arrived; the gap is recorded in the profile", id,
            (unsigned long long)expected, (unsigned long long)seq - 1);
    vp_metric_add(&vpr_metrics[VPR_M_GAPS], 1);
    slot->used = 0;
    return 1;
}

/* Starts the request for slot->items[slot->next]. Returns -1 once it is in
 * flight, or an outcome at once: a spooled batch that cannot be read is
 * dropped, one that cannot be copied is retried later. */
static int start_post(vpr_forwarder *f, fwd_slot *slot)
{
    const vp_spool_item *it = &slot->items[slot->next];
    char id[33], why[128];
    vp_batch_view v;
    size_t len = 0;
    if (vp_batch_decode(it->body, it->len, &v, why, sizeof(why)) != VP_OK) {
        vp_run_id_hex(it->run_id, id);
        vp_error("spooled batch %s/%llu is unreadable (%s); dropping it", id,
                 (unsigned long long)it->seq, why);
        return SENT_DROP;
    }
    if (vp_batch_retoken(&v, f->token, &slot->msg, &len) != VP_OK)
        return SENT_RETRY;
    slot->resp.len = 0;
    slot->resp.body[0] = '\0';
    curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDS, (const char *)slot->msg);
    curl_easy_setopt(slot->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(slot->easy, CURLOPT_WRITEDATA, &slot->resp);
    if (curl_multi_add_handle(f->multi, slot->easy) != CURLM_OK) {
        vp_free(slot->msg);
        slot->msg = NULL;
        return SENT_RETRY;
    }
    slot->in_flight = 1;
    vp_metric_add(&vpr_metrics[VPR_M_FORWARD_IN_FLIGHT], 1);
    return -1;
}

/* What the server's answer to slot's request means. SENT_AGAIN: the gap
 * before it was just closed, send it again. */
static enum outcome judge(vpr_forwarder *f, fwd_slot *slot, CURLcode cc)
{
    const vp_spool_item *it = &slot->items[slot->next];
    const char *body = slot->resp.body;
    char id[33];
    vp_run_id_hex(it->run_id, id);
    if (cc != CURLE_OK) {
        vp_warn("forwarding %s/%llu failed: %s", id, (unsigned long long)it->seq,
                curl_easy_strerror(cc));
        return SENT_RETRY;
    }
    long code = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code == 200)
        return SENT_OK;
    if (code == 409) {
        json_t *j = json_loads(body, 0, NULL);
        json_t *e = json_object_get(j, "expected");
        long long expected = json_is_integer(e) ? json_integer_value(e) : -1;
        json_decref(j);
        if (expected > (long long)it->seq)
            return SENT_OK; /* the server has it already */
        if (expected >= 0 && close_gap(f, it->run_id, (uint64_t)expected, it->seq))
            return SENT_AGAIN;
        vp_debug("server waits for %s/%lld before %llu", id, expected, (unsigned long long)it->seq);
        return SENT_WAIT_GAP;
    }
    if (code >= 400 && code < 500 && code != 408 && code != 429 && code != 401) {
        vp_error("server refused %s/%llu with %ld: %s; dropping it", id,
                 (unsigned long long)it->seq, code, body);
        return SENT_DROP;
    }
    vp_warn("server answered %ld for %s/%llu: %s", code, id, (unsigned long long)it->seq, body);
    return SENT_RETRY;
}

/* The work of one pass: the runs the spool listed, each taken by the next
 * free slot for one peek's worth of batches. */
typedef struct pass {
    uint8_t ids[RUNS_PER_PASS][VP_RUN_ID_LEN];
    int runs, next_run;
    int progress, retry;
    /* Confirmed by the server, still spooled: removed together, one sync
     * for many. A crash before that only makes the server see them again,
     * and it answers "duplicate". */
    vp_spool_done_req done[VP_MAX_FORWARD_CONCURRENCY * VP_FORWARD_PEEK];
    size_t ndone;
} pass;

static void remove_done(vpr_forwarder *f, pass *p)
{
    if (p->ndone && vp_spool_done(f->spool, p->done, p->ndone) != VP_OK)
        p->retry = 1; /* they stay spooled and go again */
    p->ndone = 0;
}

static void release_items(fwd_slot *slot)
{
    if (slot->count > 0)
        vp_spool_items_free(slot->items, (size_t)slot->count);
    slot->count = slot->next = 0;
}

/* Keeps slot busy: settles outcome o of its current item (or none: -1),
 * then starts its next request, from its run or from the next run of the
 * pass, until one is in flight or there is nothing left to start. */
static void advance(vpr_forwarder *f, pass *p, fwd_slot *slot, int o)
{
    for (;;) {
        if (o == SENT_OK || o == SENT_DROP) {
            const vp_spool_item *it = &slot->items[slot->next];
            vp_metric_add(&vpr_metrics[o == SENT_OK ? VPR_M_FORWARDED : VPR_M_FORWARD_DROPPED], 1);
            if (p->ndone == sizeof(p->done) / sizeof(p->done[0]))
                remove_done(f, p);
            vp_spool_done_req *d = &p->done[p->ndone++];
            memcpy(d->run_id, it->run_id, VP_RUN_ID_LEN);
            d->seq = it->seq;
            d->keep_copy = f->legacy_url && o == SENT_OK;
            p->progress = 1;
            slot->next++;
        } else if (o == SENT_RETRY) {
            vp_metric_add(&vpr_metrics[VPR_M_FORWARD_RETRIES], 1);
            p->retry = 1;
        } else if (o == SENT_WAIT_GAP) {
            release_items(slot); /* this run waits for a missing batch */
        }
        if (p->retry) {
            release_items(slot);
            return;
        }
        if (o != SENT_AGAIN && slot->next >= slot->count) {
            release_items(slot);
            if (p->next_run >= p->runs)
                return;
            int n = vp_spool_peek(f->spool, p->ids[p->next_run++], slot->items, VP_FORWARD_PEEK);
            if (n <= 0) {
                o = -1;
                continue;
            }
            slot->count = n;
        }
        o = start_post(f, slot);
        if (o < 0)
            return;
    }
}

/* One pass over the spooled runs, up to f->concurrency requests at once.
 * While the server may be away (at the start, after a failure) one request
 * goes first and the others only follow its success: a server coming back
 * meets one request, and one down costs one failed attempt per backoff.
 * After a failure that calls for a retry no new request starts, and the
 * ones in flight are settled. Returns 1 if it got anything done. */
static int forward_pass(vpr_forwarder *f, int *retry)
{
    pass p = {.runs = 0};
    f->concurrency = atomic_load(&f->wanted_concurrency);
    p.runs = vp_spool_runs(f->spool, p.ids, RUNS_PER_PASS);
    unsigned started = f->server_up ? f->concurrency : 1;
    for (unsigned k = 0; k < started; k++)
        advance(f, &p, &f->slots[k], -1);
    for (;;) {
        int running = 0, left = 0;
        curl_multi_perform(f->multi, &running);
        CURLMsg *m;
        while ((m = curl_multi_info_read(f->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            char *private = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &private);
            fwd_slot *slot = (fwd_slot *)private;
            CURLcode cc = m->data.result;
            curl_multi_remove_handle(f->multi, slot->easy);
            slot->in_flight = 0;
            vp_metric_sub(&vpr_metrics[VPR_M_FORWARD_IN_FLIGHT], 1);
            vp_free(slot->msg);
            slot->msg = NULL;
            enum outcome o = judge(f, slot, cc);
            f->server_up = o != SENT_RETRY;
            advance(f, &p, slot, (int)o);
            for (; f->server_up && started < f->concurrency; started++)
                advance(f, &p, &f->slots[started], -1);
        }
        unsigned busy = 0;
        for (unsigned k = 0; k < f->concurrency; k++)
            busy += (unsigned)f->slots[k].in_flight;
        if (!busy)
            break;
        pthread_mutex_lock(&f->mu);
        int quit = f->quit;
        pthread_mutex_unlock(&f->mu);
        if (quit) { /* what is in flight stays spooled: the server takes it again */
            for (unsigned k = 0; k < f->concurrency; k++) {
                fwd_slot *slot = &f->slots[k];
                if (slot->in_flight) {
                    curl_multi_remove_handle(f->multi, slot->easy);
                    vp_metric_sub(&vpr_metrics[VPR_M_FORWARD_IN_FLIGHT], 1);
                }
                slot->in_flight = 0;
                vp_free(slot->msg);
                slot->msg = NULL;
                release_items(slot);
            }
            break;
        }
        curl_multi_poll(f->multi, NULL, 0, 1000, NULL);
    }
    remove_done(f, &p);
    *retry = p.retry;
    if (f->legacy_url && mono_ms() >= f->legacy_next_ms) {
        int ready = vp_spool_copies_ready(f->spool, p.ids, RUNS_PER_PASS);
        for (int r = 0; r < ready; r++) {
            if (vpr_legacy_send(f->spool, f->legacy_url, p.ids[r]) != VP_OK) {
                f->legacy_next_ms = mono_ms() + 5000;
                break;
            }
            p.progress = 1;
        }
    }
    return p.progress;
}

static void *forwarder_main(void *arg)
{
    vpr_forwarder *f = arg;
    f->backoff_ms = BACKOFF_MIN_MS;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        int quit = f->quit;
        pthread_mutex_unlock(&f->mu);
        if (quit)
            break;
        int retry = 0;
        int progress = forward_pass(f, &retry);
        if (retry) {
            /* Full jitter keeps a fleet of relays from retrying in step. */
            uint64_t sleep_ms = f->backoff_ms / 2 + (uint64_t)rand_r(&f->rand_state) % (f->backoff_ms / 2 + 1);
            wait_ms(f, sleep_ms, 0);
            f->backoff_ms = f->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : f->backoff_ms * 2;
        } else {
            f->backoff_ms = BACKOFF_MIN_MS;
            if (!progress)
                wait_ms(f, IDLE_WAIT_MS, 1);
        }
        uint64_t left = vp_spool_bytes(f->spool);
        vp_metric_set(&vpr_metrics[VPR_M_SPOOL_BYTES], left);
        pthread_mutex_lock(&f->mu);
        if (f->draining && !progress && left == 0)
            f->quit = 1;
        pthread_mutex_unlock(&f->mu);
    }
    return NULL;
}

/* A handle for requests to the server's batch intake; slot, if any, is
 * where a finished transfer of the multi handle leads back to. */
static CURL *new_easy(vpr_forwarder *f, fwd_slot *slot)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_URL, f->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)slot);
    return e;
}

static void free_curl(vpr_forwarder *f)
{
    for (unsigned k = 0; k < VP_MAX_FORWARD_CONCURRENCY; k++)
        if (f->slots[k].easy)
            curl_easy_cleanup(f->slots[k].easy);
    if (f->multi)
        curl_multi_cleanup(f->multi);
    if (f->curl)
        curl_easy_cleanup(f->curl);
    curl_slist_free_all(f->headers);
}

vpr_forwarder *vpr_forwarder_start(const char *spool_path, const char *server_url,
                                   const char *server_token, uint64_t gap_wait_ms,
                                   const char *legacy_url, unsigned concurrency, char *err,
                                   size_t errlen)
{
    vpr_forwarder *f = vp_calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t n = strlen(server_url);
    while (n && server_url[n - 1] == '/')
        n--;
    f->url = vp_malloc(n + sizeof("/api/v1/batches"));
    f->token = vp_strndup(server_token ? server_token : "", server_token ? strlen(server_token) : 0);
    if (!f->url || !f->token) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    memcpy(f->url, server_url, n);
    memcpy(f->url + n, "/api/v1/batches", sizeof("/api/v1/batches"));
    if (vp_spool_open(spool_path, UINT64_MAX, &f->spool, err, errlen) != VP_OK)
        goto fail;
    char auth[VP_MAX_TOKEN_LEN + 32];
    f->headers = curl_slist_append(NULL, "Content-Type: application/x-vmpv-batch");
    f->headers = curl_slist_append(f->headers, "Expect:"); /* no 100-continue round trip */
    if (f->token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", f->token);
        f->headers = curl_slist_append(f->headers, auth);
    }
    vpr_forwarder_set_concurrency(f, concurrency);
    f->curl = new_easy(f, NULL);
    f->multi = curl_multi_init();
    int have_all = f->headers && f->curl && f->multi;
    for (unsigned k = 0; k < VP_MAX_FORWARD_CONCURRENCY; k++)
        have_all &= (f->slots[k].easy = new_easy(f, &f->slots[k])) != NULL;
    if (!have_all) {
        snprintf(err, errlen, "cannot initialise libcurl");
        goto fail;
    }
    f->rand_state = (unsigned)time(NULL);
    f->gap_wait_ms = gap_wait_ms;
    if (legacy_url && *legacy_url) {
        size_t ln = strlen(legacy_url);
        while (ln && legacy_url[ln - 1] == '/')
            ln--;
        if (!(f->legacy_url = vp_strndup(legacy_url, ln))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->thread, NULL, forwarder_main, f) != 0) {
        snprintf(err, errlen, "cannot start the forwarder thread");
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        goto fail;
    }
    return f;
fail:
    vp_free(f->legacy_url);
    free_curl(f);
    vp_spool_close(f->spool);
    vp_free(f->url);
    vp_free(f->token);
    vp_free(f);
    return NULL;
}

void vpr_forwarder_set_concurrency(vpr_forwarder *f, unsigned n)
{
    atomic_store(&f->wanted_concurrency, n < 1 ? 1 : n > VP_MAX_FORWARD_CONCURRENCY ? VP_MAX_FORWARD_CONCURRENCY : n);
}

void vpr_forwarder_kick(vpr_forwarder *f)
{
    pthread_mutex_lock(&f->mu);
    f->kicked = 1;
    /* During a backoff the kick is only kept: waking the thread after every
     * commit just to let it sleep again cost a context switch per batch. */
    if (f->kickable_wait)
        pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

void vpr_forwarder_free(vpr_forwarder *f, uint64_t drain_ms)
{
    /* Drain: let the thread empty the spool for a while, then stop it. What
     * is left stays in the spool for the next start: nothing is lost. */
    pthread_mutex_lock(&f->mu);
    f->draining = 1;
    f->kicked = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        pthread_mutex_lock(&f->mu);
        int quit = f->quit;
        pthread_mutex_unlock(&f->mu);
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t spent = (uint64_t)(now.tv_sec - start.tv_sec) * 1000u +
                         (uint64_t)((now.tv_nsec - start.tv_nsec) / 1000000L);
        if (quit || spent >= drain_ms)
            break;
        struct timespec ten = {0, 10 * 1000000L};
        nanosleep(&ten, NULL);
    }
    pthread_mutex_lock(&f->mu);
    f->quit = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    curl_multi_wakeup(f->multi); /* out of a wait for the server: drain-ms is the bound */
    pthread_join(f->thread, NULL);
    free_curl(f);
    vp_spool_close(f->spool);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    vp_free(f->url);
    vp_free(f->token);
    vp_free(f->legacy_url);
    vp_free(f);
}
