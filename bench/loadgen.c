/*
 * loadgen.c - vmpv-loadgen: many simulated agents sending real batches to a
 * vmpv-relay, for the 200-agent test and the intake benchmark.
 *
 * Each simulated agent is an nng req context that sends runs made of the
 * batches a real agent would send for one real profile file (OPEN, DATA cut
 * at record boundaries, CLOSE), one batch at a time, each after the previous
 * one's acknowledgement, as vmpv-agent does. It prints what it sent (runs,
 * batches, samples: the known counts a test compares with what arrived) and
 * the acknowledgement latencies.
 *
 *   vmpv-loadgen --relay URL --profile FILE [--agents N] [--runs R] [--token T]
 *                [--rate SAMPLES_PER_S] [--skip-seq K] [--idle SECONDS] [--corrupt N]
 *                [--latencies FILE] [--spool-limit DIR]
 *
 * --latencies FILE writes every acknowledgement latency, in microseconds, one
 * per line, so that several runs can be pooled into one distribution (a p99
 * of all acknowledgements rather than a median of per-run p99s).
 *
 * --spool-limit DIR measures the physical limit instead: LZ4 decoding plus
 * the spool's SQLite insert of the same batches, on one thread, nothing else
 * (committed in groups as large as the relay's, checkpoints on their own
 * thread, as the relay does).
 */
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_mem.h"
#include "vp_spool.h"
#include "vp_vmprof.h"

typedef struct chunk {
    uint8_t *raw;
    size_t len;
    uint32_t samples;
    uint8_t *msg;   /* the DATA batch, encoded once; run id and seq patched per send */
    size_t msg_len;
} chunk;

typedef struct plan {
    chunk *chunks;
    size_t count;
    uint64_t samples;
} plan;

typedef struct sim {
    nng_ctx ctx;
    nng_aio *aio;
    int agent;
    int run;           /* runs done */
    size_t step;       /* 0 OPEN, 1..count DATA, count+1 CLOSE */
    uint8_t run_id[VP_RUN_ID_LEN];
    uint64_t sent_ns;
    int receiving;
    int sleeping;
    uint64_t sent;     /* batches this agent has had acknowledged */
} sim;

static plan the_plan;
static const char *token = "";
static int runs_per_agent = 1;
static double rate_limit = 0; /* samples per second over all agents; 0 = as fast as acks come */
static long long skip_seq = -1; /* a batch never sent, to make a gap (tests) */
static atomic_int corrupt_left;  /* --corrupt N: damage the first N DATA sends (tests) */
static atomic_int agents_left;
static atomic_ullong batches_ok, batches_refused, samples_ok;
static uint64_t *latencies;
static atomic_ullong latency_count;
static uint64_t latency_cap;
static uint64_t start_ns;
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int load_plan(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)size);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        snprintf(err, errlen, "cannot read %s", path);
        return -1;
    }
    fclose(f);
    /* Cut exactly as the agent does: at record boundaries near the target. */
    vp_vmprof_reader r;
    vp_vmprof_reader_init(&r);
    size_t off = 0;
    for (;;) {
        size_t want = (size_t)size - off;
        if (want > VP_BATCH_TARGET_RAW)
            want = VP_BATCH_TARGET_RAW;
        uint64_t before = r.samples;
        size_t used = 0;
        int rc = vp_vmprof_feed(&r, data + off, want, &used, NULL);
        if (used == 0 && want < (size_t)size - off) {
            /* a record larger than the window: offer more */
            rc = vp_vmprof_feed(&r, data + off, (size_t)size - off, &used, NULL);
        }
        if (used) {
            the_plan.chunks = realloc(the_plan.chunks, (the_plan.count + 1) * sizeof(chunk));
            chunk *c = &the_plan.chunks[the_plan.count++];
            c->raw = data + off;
            c->len = used;
            c->samples = (uint32_t)(r.samples - before);
            the_plan.samples += c->samples;
            off += used;
        }
        if (rc != VP_OK || used == 0 || off >= (size_t)size)
            break;
    }
    if (the_plan.count == 0) {
        snprintf(err, errlen, "%s holds no complete vmprof records: %s", path, r.error);
        return -1;
    }
    /* Compress once: the simulated agents should cost the machine little,
     * so that what is measured is the relay. */
    static const uint8_t zero_id[VP_RUN_ID_LEN];
    for (size_t i = 0; i < the_plan.count; i++) {
        chunk *c = &the_plan.chunks[i];
        if (vp_batch_encode(VP_BATCH_DATA, zero_id, 0, c->samples, token, c->raw, c->len, &c->msg,
                            &c->msg_len) != VP_OK) {
            snprintf(err, errlen, "cannot encode a batch");
            return -1;
        }
    }
    return 0;
}

static int make_batch(sim *s, nng_msg **out)
{
    uint8_t kind;
    const uint8_t *raw;
    size_t len;
    uint32_t samples = 0;
    char json[256];
    if (s->step == 0) {
        kind = VP_BATCH_OPEN;
        snprintf(json, sizeof(json),
                 "{\"project\":\"loadgen\",\"function\":\"agent%d\",\"host\":\"sim%d\",\"period\":0.01,"
                 "\"source\":\"client\"}", s->agent, s->agent);
        raw = (const uint8_t *)json;
        len = strlen(json);
    } else if (s->step <= the_plan.count) {
        chunk *c = &the_plan.chunks[s->step - 1];
        int rv = nng_msg_alloc(out, 0);
        if (rv == 0)
            rv = nng_msg_append(*out, c->msg, c->msg_len);
        if (rv == 0) {
            uint8_t *b = nng_msg_body(*out);
            memcpy(b + 8, s->run_id, VP_RUN_ID_LEN);
            vp_store_u64le(b + 24, s->step);
        }
        return rv;
    } else {
        kind = VP_BATCH_CLOSE;
        snprintf(json, sizeof(json), "{\"status\":\"complete\",\"samples\":%llu}",
                 (unsigned long long)the_plan.samples);
        raw = (const uint8_t *)json;
        len = strlen(json);
    }
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    if (vp_batch_encode(kind, s->run_id, s->step, samples, token, raw, len, &msg, &msg_len) != VP_OK)
        return -1;
    int rv = nng_msg_alloc(out, 0);
    if (rv == 0)
        rv = nng_msg_append(*out, msg, msg_len);
    vp_free(msg);
    return rv;
}

static void new_run(sim *s)
{
    for (unsigned i = 0; i < VP_RUN_ID_LEN; i++)
        s->run_id[i] = (uint8_t)rand();
    s->step = 0;
}

static void send_now(sim *s)
{
    nng_msg *msg = NULL;
    if (make_batch(s, &msg) != 0) {
        fprintf(stderr, "loadgen: cannot build a batch\n");
        exit(1);
    }
    if (s->step >= 1 && s->step <= the_plan.count && atomic_load(&corrupt_left) > 0 &&
        atomic_fetch_sub(&corrupt_left, 1) > 0) {
        /* Flip one payload byte: the relay must refuse this batch, and only it. */
        uint8_t *b = nng_msg_body(msg);
        b[nng_msg_len(msg) - 9] ^= 0x55;
    }
    s->receiving = 0;
    s->sleeping = 0;
    s->sent_ns = now_ns();
    nng_aio_set_msg(s->aio, msg);
    nng_ctx_send(s->ctx, s->aio);
}

static int agent_count = 1;

/* Paced sends wait in one pacer thread, never in a callback thread, so
 * waiting agents do not delay the acknowledgements of the others. (A
 * sleeping nng aio per agent kept nng's timer thread busy: half a core at
 * 650 sends a second, taken from the relay being measured.) */
static pthread_mutex_t pace_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pace_cv;
static sim **pace_sims; /* agents waiting for their slot, at most one entry each */
static uint64_t *pace_due;
static size_t pace_n;
static int pace_quit;

static void pace(sim *s, uint64_t due_ns)
{
    pthread_mutex_lock(&pace_mu);
    pace_sims[pace_n] = s;
    pace_due[pace_n++] = due_ns;
    pthread_cond_signal(&pace_cv);
    pthread_mutex_unlock(&pace_mu);
}

static void *pacer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pace_mu);
    while (!pace_quit) {
        if (pace_n == 0) {
            pthread_cond_wait(&pace_cv, &pace_mu);
            continue;
        }
        size_t first = 0;
        for (size_t i = 1; i < pace_n; i++) {
            if (pace_due[i] < pace_due[first])
                first = i;
        }
        uint64_t due = pace_due[first];
        if (due > now_ns()) {
            struct timespec until = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            pthread_cond_timedwait(&pace_cv, &pace_mu, &until);
            continue;
        }
        sim *s = pace_sims[first];
        pace_sims[first] = pace_sims[--pace_n];
        pace_due[first] = pace_due[pace_n];
        pthread_mutex_unlock(&pace_mu);
        send_now(s);
        pthread_mutex_lock(&pace_mu);
    }
    pthread_mutex_unlock(&pace_mu);
    return NULL;
}

static void send_next(sim *s)
{
    if (rate_limit > 0) {
        /* Spread the agents evenly in time: over all agents, batches go out
         * at rate / (samples per batch) per second, agent a's k-th at slot
         * k * agents + a, so no wave of simultaneous sends builds up. A
         * run's OPEN and CLOSE take slots too: without them in the count,
         * samples went out at 13/15 of the rate asked for. */
        double batch_rate = rate_limit * (double)(the_plan.count + 2) / (double)the_plan.samples;
        double due = ((double)s->sent * agent_count + s->agent) / batch_rate;
        double elapsed = (double)(now_ns() - start_ns) / 1e9;
        if (due > elapsed + 0.0002) {
            pace(s, start_ns + (uint64_t)(due * 1e9));
            return;
        }
    }
    send_now(s);
}

static void finish_agent(void)
{
    if (atomic_fetch_sub(&agents_left, 1) == 1) {
        pthread_mutex_lock(&done_mu);
        pthread_cond_signal(&done_cv);
        pthread_mutex_unlock(&done_mu);
    }
}

static void on_aio(void *arg)
{
    sim *s = arg;
    int rv = nng_aio_result(s->aio);
    if (s->sleeping) {
        send_now(s);
        return;
    }
    if (!s->receiving) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(s->aio));
            s->sleeping = 1;
            nng_sleep_aio(50, s->aio);
            return;
        }
        s->receiving = 1;
        nng_ctx_recv(s->ctx, s->aio);
        return;
    }
    if (rv != 0) {
        send_next(s); /* timeout or relay gone: resend the same batch */
        return;
    }
    nng_msg *reply = nng_aio_get_msg(s->aio);
    vp_ack ack;
    int ok = vp_ack_decode(nng_msg_body(reply), nng_msg_len(reply), &ack) == VP_OK &&
             (ack.status == VP_ACK_STORED || ack.status == VP_ACK_DUPLICATE);
    nng_msg_free(reply);
    if (!ok) {
        atomic_fetch_add(&batches_refused, 1);
        s->sleeping = 1;
        nng_sleep_aio(20, s->aio);
        return;
    }
    uint64_t lat = now_ns() - s->sent_ns;
    uint64_t i = atomic_fetch_add(&latency_count, 1);
    if (i < latency_cap)
        latencies[i] = lat;
    atomic_fetch_add(&batches_ok, 1);
    s->sent++;
    if (s->step >= 1 && s->step <= the_plan.count)
        atomic_fetch_add(&samples_ok, the_plan.chunks[s->step - 1].samples);
    s->step++;
    if ((long long)s->step == skip_seq && s->step >= 1 && s->step <= the_plan.count) {
        char id[33];
        vp_run_id_hex(s->run_id, id);
        printf("skipped %s %llu %u\n", id, (unsigned long long)s->step,
               the_plan.chunks[s->step - 1].samples);
        s->step++;
    }
    if (s->step > the_plan.count + 1) {
        char id[33];
        vp_run_id_hex(s->run_id, id);
        printf("run %s %llu\n", id, (unsigned long long)the_plan.samples);
        if (++s->run >= runs_per_agent) {
            finish_agent();
            return;
        }
        new_run(s);
    }
    send_next(s);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int spool_limit(const char *dir)
{
    char path[4096], err[256];
    snprintf(path, sizeof(path), "%s/limit.sqlite", dir);
    unlink(path);
    vp_spool *sp = NULL;
    if (vp_spool_open(path, UINT64_MAX, &sp, err, sizeof(err)) != VP_OK) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 1;
    }
    /* Encode first (the agents' work), then time decode + insert alone. */
    size_t n = the_plan.count * (size_t)runs_per_agent;
    uint8_t **msgs = calloc(n, sizeof(*msgs));
    size_t *lens = calloc(n, sizeof(*lens));
    sim s = {0};
    for (size_t i = 0; i < n; i++) {
        if (i % the_plan.count == 0)
            new_run(&s);
        chunk *c = &the_plan.chunks[i % the_plan.count];
        vp_batch_encode(VP_BATCH_DATA, s.run_id, 1 + i % the_plan.count, c->samples, "", c->raw,
                        c->len, &msgs[i], &lens[i]);
    }
    /* As the relay stores them: decoded, then committed in groups as large
     * as the relay's (one sync per group), WAL checkpoints on their own
     * thread. */
    vp_spool_checkpointer *ckpt = NULL;
    if (vp_spool_checkpointer_start(path, &ckpt, err, sizeof(err)) != VP_OK) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 1;
    }
    vp_spool_hand_checkpoints(sp, ckpt);
    vp_spool_put_req reqs[VP_MAX_RELAY_PENDING];
    uint64_t t0 = now_ns(), samples = 0;
    for (size_t first = 0; first < n; first += VP_MAX_RELAY_PENDING) {
        size_t group = n - first < VP_MAX_RELAY_PENDING ? n - first : VP_MAX_RELAY_PENDING;
        for (size_t g = 0; g < group; g++) {
            size_t i = first + g;
            vp_batch_view v;
            uint8_t *raw = NULL;
            if (vp_batch_decode(msgs[i], lens[i], &v, err, sizeof(err)) != VP_OK ||
                vp_batch_payload(&v, &raw, err, sizeof(err)) != VP_OK) {
                fprintf(stderr, "loadgen: limit run failed at batch %zu: %s\n", i, err);
                return 1;
            }
            vp_free(raw);
            samples += v.samples;
            reqs[g] = (vp_spool_put_req){.run_id = msgs[i] + 8, .seq = v.seq, .kind = v.kind,
                                         .body = msgs[i], .len = lens[i]};
        }
        if (vp_spool_put_many(sp, reqs, group) != VP_OK) {
            fprintf(stderr, "loadgen: limit commit failed at batch %zu\n", first);
            return 1;
        }
        for (size_t g = 0; g < group; g++) {
            if (reqs[g].result != VP_OK) {
                fprintf(stderr, "loadgen: limit insert failed at batch %zu\n", first + g);
                return 1;
            }
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("limit batches %zu samples %llu seconds %.3f samples_per_s %.0f\n", n,
           (unsigned long long)samples, secs, (double)samples / secs);
    vp_spool_close(sp);
    vp_spool_checkpointer_stop(ckpt);
    for (size_t i = 0; i < n; i++)
        vp_free(msgs[i]);
    free(msgs);
    free(lens);
    return 0;
}

static const char *arg_value(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

int main(int argc, char **argv)
{
    const char *relay = arg_value(argc, argv, "--relay", NULL);
    const char *profile = arg_value(argc, argv, "--profile", NULL);
    const char *limit_dir = arg_value(argc, argv, "--spool-limit", NULL);
    int agents = atoi(arg_value(argc, argv, "--agents", "10"));
    runs_per_agent = atoi(arg_value(argc, argv, "--runs", "1"));
    token = arg_value(argc, argv, "--token", "");
    rate_limit = atof(arg_value(argc, argv, "--rate", "0"));
    skip_seq = atoll(arg_value(argc, argv, "--skip-seq", "-1"));
    int idle_s = atoi(arg_value(argc, argv, "--idle", "0"));
    const char *latency_file = arg_value(argc, argv, "--latencies", NULL);
    atomic_store(&corrupt_left, atoi(arg_value(argc, argv, "--corrupt", "0")));
    if (!profile || (!relay && !limit_dir) || agents < 1 || agents > 10000 || runs_per_agent < 1) {
        fprintf(stderr, "usage: vmpv-loadgen --relay URL --profile FILE [--agents N] [--runs R] "
                        "[--token T] [--rate SAMPLES_PER_S] | --spool-limit DIR --profile FILE\n");
        return 2;
    }
    char err[256];
    if (load_plan(profile, err, sizeof(err)) != 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 1;
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    if (limit_dir)
        return spool_limit(limit_dir);

    latency_cap = (uint64_t)agents * (uint64_t)runs_per_agent * (the_plan.count + 2);
    latencies = calloc(latency_cap, sizeof(*latencies));
    nng_socket sock;
    int rv = nng_req0_open(&sock);
    if (rv == 0) {
        nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
        nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 30000);
        rv = nng_dial(sock, relay, NULL, 0);
    }
    if (rv != 0) {
        fprintf(stderr, "loadgen: cannot reach %s: %s\n", relay, nng_strerror(rv));
        return 1;
    }
    /* One connection per simulated agent, as a fleet would have: each
     * agent gets its own socket so the relay sees N pipes. */
    sim *sims = calloc((size_t)agents, sizeof(*sims));
    nng_socket *socks = calloc((size_t)agents, sizeof(*socks));
    for (int i = 0; i < agents; i++) {
        if ((rv = nng_req0_open(&socks[i])) != 0 ||
            (nng_socket_set_ms(socks[i], NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE), 0) ||
            (rv = nng_dial(socks[i], relay, NULL, 0)) != 0 ||
            (rv = nng_ctx_open(&sims[i].ctx, socks[i])) != 0 ||
            (rv = nng_aio_alloc(&sims[i].aio, on_aio, &sims[i])) != 0) {
            fprintf(stderr, "loadgen: agent %d: %s\n", i, nng_strerror(rv));
            return 1;
        }
        nng_aio_set_timeout(sims[i].aio, 30000);
        sims[i].agent = i;
        new_run(&sims[i]);
    }
    nng_close(sock);
    if (idle_s > 0) {
        /* Connected agents that send nothing: what they cost the relay. */
        printf("idle agents %d connected; holding %d s\n", agents, idle_s);
        fflush(stdout);
        nng_msleep((nng_duration)idle_s * 1000);
        for (int i = 0; i < agents; i++) {
            nng_aio_free(sims[i].aio);
            nng_close(socks[i]);
        }
        free(sims);
        free(socks);
        free(latencies);
        return 0;
    }
    atomic_store(&agents_left, agents);
    agent_count = agents;
    pthread_t pacer;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* now_ns's clock */
    pthread_cond_init(&pace_cv, &ca);
    pace_sims = calloc((size_t)agents, sizeof(*pace_sims));
    pace_due = calloc((size_t)agents, sizeof(*pace_due));
    if (!pace_sims || !pace_due || pthread_create(&pacer, NULL, pacer_main, NULL) != 0) {
        fprintf(stderr, "loadgen: cannot start the pacer\n");
        return 1;
    }
    start_ns = now_ns();
    for (int i = 0; i < agents; i++)
        send_next(&sims[i]);
    pthread_mutex_lock(&done_mu);
    while (atomic_load(&agents_left) > 0)
        pthread_cond_wait(&done_cv, &done_mu);
    pthread_mutex_unlock(&done_mu);
    double secs = (double)(now_ns() - start_ns) / 1e9;
    pthread_mutex_lock(&pace_mu);
    pace_quit = 1;
    pthread_cond_signal(&pace_cv);
    pthread_mutex_unlock(&pace_mu);
    pthread_join(pacer, NULL);
    free(pace_sims);
    free(pace_due);
    uint64_t n = atomic_load(&latency_count);
    if (n > latency_cap)
        n = latency_cap;
    qsort(latencies, n, sizeof(*latencies), cmp_u64);
    double p50 = n ? (double)latencies[n / 2] / 1e6 : 0;
    double p99 = n ? (double)latencies[(n * 99) / 100] / 1e6 : 0;
    if (latency_file) {
        FILE *f = fopen(latency_file, "w");
        if (!f) {
            fprintf(stderr, "loadgen: cannot write %s\n", latency_file);
            return 1;
        }
        for (uint64_t i = 0; i < n; i++)
            fprintf(f, "%llu\n", (unsigned long long)(latencies[i] / 1000));
        if (ferror(f) | fclose(f)) { /* both: the file is closed either way */
            fprintf(stderr, "loadgen: writing %s failed\n", latency_file);
            return 1;
        }
    }
    printf("agents %d runs %d batches %llu refused %llu samples %llu seconds %.3f samples_per_s %.0f "
           "ack_p50_ms %.2f ack_p99_ms %.2f\n",
           agents, agents * runs_per_agent, (unsigned long long)atomic_load(&batches_ok),
           (unsigned long long)atomic_load(&batches_refused),
           (unsigned long long)atomic_load(&samples_ok), secs,
           (double)atomic_load(&samples_ok) / secs, p50, p99);
    for (int i = 0; i < agents; i++) {
        nng_aio_free(sims[i].aio);
        nng_close(socks[i]);
    }
    free(sims);
    free(socks);
    free(latencies);
    return 0;
}
