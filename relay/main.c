/*
 * main.c - vmpv-relay: the central intake. Agents send batches over nng; the
 * relay makes each durable in its SQLite spool before acknowledging it, and a
 * forwarder moves the spool to vmpv-server over HTTP.
 */
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "relay_int.h"
#include "vp_config.h"
#include "vp_err.h"
#include "vp_log.h"
#include "vp_limits.h"
#include "vp_net.h"
#include "vp_opshttp.h"
#include "vp_version.h"

static const vp_option options[] = {
    {"listen", "URL", "tcp://127.0.0.1:7000", "where agents connect (nng URL; port 0 picks one)"},
    {"tls-cert-key", "FILE", "", "PEM file with the certificate and key for a tls+tcp:// listen URL"},
    {"server", "URL", "http://127.0.0.1:8000", "vmpv-server's base URL"},
    {"data", "DIR", "./vmpv-relay-data", "state directory; the spool is DIR/spool.sqlite"},
    {"token", "TOKEN", "", "token agents must present (empty: any)"},
    {"server-token", "TOKEN", "", "token presented to vmpv-server's intake"},
    {"legacy-sink", "URL", "", "also send each whole run to an old vmprof-viewer server (POST URL/submit/)"},
    {"max-spool-bytes", "N", "4294967296", "spool size at which the relay stops acknowledging"},
    {"contexts", "N", "32", "batches received concurrently"},
    {"gap-wait-ms", "MS", "600000", "how long a run waits for a missing batch before it is recorded as a gap"},
    {"drain-ms", "MS", "5000", "on SIGTERM, how long to keep forwarding before exiting"},
    {"forward-concurrency", "N", "4", "runs forwarded to the server at once, one request each (1-16)"},
    {"metrics-listen", "HOST:PORT", "", "serve /healthz and /metrics here (empty: off)"},
    {"decimate", "on|off", "on", "thin long profiles to the seed's recommended rates"},
    {"decimate-after", "SECONDS", "3600", "profiles younger than this keep their full rate"},
    {"log-level", "LEVEL", "info", "debug, info, warn or error"},
};

/* What SIGHUP re-reads: the config as at start, with the same flags. */
static int saved_argc;
static char **saved_argv;
static vp_config live_cfg;

/* Bounds around the 20 ms target of the relay's acknowledgements, fine
 * enough below it to read a p99 off two scrapes. */
vp_histogram vpr_ack_latency = {
    .bounds_us = {250, 500, 1000, 2000, 3000, 5000, 7500, 10000, 12500, 15000, 17500, 20000,
                  25000, 30000, 40000, 50000, 75000, 100000, 250000, 500000, 1000000, 2500000,
                  5000000, 10000000}};

vp_metric vpr_metrics[VPR_M_COUNT] = {
    [VPR_M_BATCHES_IN] = {"vmpv_relay_batches_total", "batches stored in the spool", 0, 0},
    [VPR_M_SAMPLES_IN] = {"vmpv_relay_samples_total", "samples stored in the spool", 0, 0},
    [VPR_M_DUPLICATES] = {"vmpv_relay_duplicates_total", "batches received again and dropped", 0, 0},
    [VPR_M_REFUSED_MALFORMED] = {"vmpv_relay_refusals_total{reason=\"malformed\"}", "batches refused", 0, 0},
    [VPR_M_REFUSED_TOKEN] = {"vmpv_relay_refusals_total{reason=\"token\"}", "batches refused", 0, 0},
    [VPR_M_REFUSED_FULL] = {"vmpv_relay_refusals_total{reason=\"busy\"}", "batches refused", 0, 0},
    [VPR_M_FORWARDED] = {"vmpv_relay_forwarded_total", "batches the server confirmed", 0, 0},
    [VPR_M_FORWARD_RETRIES] = {"vmpv_relay_forward_retries_total", "forwarding attempts to retry", 0, 0},
    [VPR_M_FORWARD_DROPPED] = {"vmpv_relay_forward_dropped_total", "batches the server refused for good", 0, 0},
    [VPR_M_AGENTS] = {"vmpv_relay_agents_connected", "agent connections open now", 1, 0},
    [VPR_M_SPOOL_BYTES] = {"vmpv_relay_spool_bytes",
                           "batch bytes in the spool, not yet forwarded: the forward queue", 1, 0},
    [VPR_M_THINNED] = {"vmpv_relay_decimated_samples_total", "samples removed by decimation", 0, 0},
    [VPR_M_GAPS] = {"vmpv_relay_gaps_total", "missing batches given up on and recorded as gaps", 0, 0},
    [VPR_M_LEGACY_SENT] = {"vmpv_relay_second_sink_runs_total", "runs the old-protocol server took", 0, 0},
    [VPR_M_ACK_LATENCY] = {"vmpv_relay_ack_seconds",
                           "from a batch's arrival to its acknowledgement leaving the relay", 0, 0,
                           &vpr_ack_latency},
    [VPR_M_FORWARD_IN_FLIGHT] = {"vmpv_relay_forward_in_flight", "requests to the server under way", 1, 0},
};

/* SIGHUP: re-read --config and the flags; the agents' token, the log level
 * and forward-concurrency take effect at once, the rest needs a restart
 * (and says so). */
static void on_reload(uv_signal_t *sig, int signum)
{
    vpr_relay *r = sig->data;
    (void)signum;
    vp_config fresh;
    char err[512];
    if (vp_config_load(&fresh, "vmpv-relay", VP_VERSION, "", options,
                       sizeof(options) / sizeof(options[0]), saved_argc, saved_argv, err,
                       sizeof(err)) != VP_OK) {
        vp_error("SIGHUP: config not reloaded: %s", err);
        vp_config_free(&fresh);
        return;
    }
    uint64_t concurrency = 0;
    if (vp_config_get_u64(&fresh, "forward-concurrency", 1, VP_MAX_FORWARD_CONCURRENCY, &concurrency,
                          err, sizeof(err)) != VP_OK) {
        vp_error("SIGHUP: config not reloaded: %s", err);
        vp_config_free(&fresh);
        return;
    }
    int level = vp_log_parse_level(vp_config_get(&fresh, "log-level"));
    if (level >= 0)
        vp_log_init("vmpv-relay", (enum vp_log_level)level);
    vpr_forwarder_set_concurrency(r->forwarder, (unsigned)concurrency);
    vp_config old = live_cfg;
    live_cfg = fresh;
    r->token = vp_config_get(&live_cfg, "token"); /* read only on this thread */
    vp_config_free(&old);
    vp_info("SIGHUP: reloaded the token, the log level and forward-concurrency (%u); listen, server, "
            "data and limits need a restart", (unsigned)concurrency);
}

static void on_stop_check(uv_timer_t *t)
{
    vpr_relay *r = t->data;
    if (!vpr_intake_idle(r->intake))
        return;
    uv_close((uv_handle_t *)t, NULL);
    uv_stop(r->loop);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    vpr_relay *r = sig->data;
    vp_info("signal %d: stopping intake, draining", signum);
    r->stopping = 1;
    vpr_intake_stop(r->intake);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sighup, NULL);
    if (r->ops)
        vp_opshttp_close(r->ops);
    /* Commits in flight still answer their agents; then the loop stops
     * (it would not stop by itself while h2o's timers are on it). */
    uv_timer_start(&r->stop_check, on_stop_check, 0, 10);
}

int main(int argc, char **argv)
{
    /* Every batch is decompressed into a fresh buffer of up to a few hundred
     * KiB: above glibc's default thresholds each would be a new mapping (or
     * a heap trimmed and grown again), and its pages faulted in anew. The
     * buffers in use are bounded by --contexts, so keeping freed ones costs
     * at most that much. */
    mallopt(M_MMAP_THRESHOLD, (int)(VP_MAX_BATCH_RAW + VP_MAX_BATCH_RAW / 2));
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    vp_config cfg;
    char err[512];
    int exit_code = 1;
    vpr_relay r;
    memset(&r, 0, sizeof(r));
    saved_argc = argc;
    saved_argv = argv;
    int rc = vp_config_load(&cfg, "vmpv-relay", VP_VERSION,
                            "Takes batches from vmpv-agents, spools them durably, forwards them to vmpv-server.",
                            options, sizeof(options) / sizeof(options[0]), argc, argv, err, sizeof(err));
    if (rc == VP_CONFIG_EXIT_OK) {
        vp_config_free(&cfg);
        return 0;
    }
    if (rc != VP_OK) {
        fprintf(stderr, "vmpv-relay: %s\n", err);
        goto fail_cfg;
    }
    int level = vp_log_parse_level(vp_config_get(&cfg, "log-level"));
    vp_log_init("vmpv-relay", level < 0 ? VP_LOG_INFO : (enum vp_log_level)level);
    uint64_t max_spool = 0, contexts = 0, drain_ms = 0, gap_wait_ms = 0, forward_concurrency = 0;
    if (vp_config_get_u64(&cfg, "max-spool-bytes", 1 << 20, 1ull << 50, &max_spool, err, sizeof(err)) ||
        vp_config_get_u64(&cfg, "contexts", 1, VP_MAX_RELAY_PENDING, &contexts, err, sizeof(err)) ||
        vp_config_get_u64(&cfg, "drain-ms", 0, 600000, &drain_ms, err, sizeof(err)) ||
        vp_config_get_u64(&cfg, "gap-wait-ms", 0, 7u * 86400u * 1000u, &gap_wait_ms, err, sizeof(err)) ||
        vp_config_get_u64(&cfg, "forward-concurrency", 1, VP_MAX_FORWARD_CONCURRENCY,
                          &forward_concurrency, err, sizeof(err))) {
        fprintf(stderr, "vmpv-relay: %s\n", err);
        goto fail_cfg;
    }
    const char *data = vp_config_get(&cfg, "data");
    if (mkdir(data, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vmpv-relay: cannot create %s: %s\n", data, strerror(errno));
        goto fail_cfg;
    }
    char spool_path[4096];
    snprintf(spool_path, sizeof(spool_path), "%s/spool.sqlite", data);
    r.token = vp_config_get(&cfg, "token");
    const char *decimate = vp_config_get(&cfg, "decimate");
    if (strcmp(decimate, "on") != 0 && strcmp(decimate, "off") != 0) {
        fprintf(stderr, "vmpv-relay: --decimate must be on or off\n");
        goto fail_cfg;
    }
    r.decimate = strcmp(decimate, "on") == 0;
    uint64_t after = 0;
    if (vp_config_get_u64(&cfg, "decimate-after", 0, 10u * 365 * 86400, &after, err, sizeof(err))) {
        fprintf(stderr, "vmpv-relay: %s\n", err);
        goto fail_cfg;
    }
    r.decimate_after = (double)after;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (vp_spool_open(spool_path, max_spool, &r.spool, err, sizeof(err)) != VP_OK) {
        fprintf(stderr, "vmpv-relay: %s\n", err);
        goto fail_curl;
    }
    if (vp_spool_open(spool_path, UINT64_MAX, &r.lookup, err, sizeof(err)) != VP_OK ||
        vp_spool_checkpointer_start(spool_path, &r.checkpointer, err, sizeof(err)) != VP_OK) {
        fprintf(stderr, "vmpv-relay: %s\n", err);
        goto fail_spool;
    }
    vp_spool_hand_checkpoints(r.spool, r.checkpointer);
    r.forwarder = vpr_forwarder_start(spool_path, vp_config_get(&cfg, "server"),
                                      vp_config_get(&cfg, "server-token"), gap_wait_ms,
                                      vp_config_get(&cfg, "legacy-sink"),
                                      (unsigned)forward_concurrency, err, sizeof(err));
    if (!r.forwarder) {
        fprintf(stderr, "vmpv-relay: %s\n", err);
        goto fail_spool;
    }
    r.loop = uv_default_loop();
    char bound[512];
    r.intake = vpr_intake_start(&r, vp_config_get(&cfg, "listen"), vp_config_get(&cfg, "tls-cert-key"),
                                (unsigned)contexts, bound,
                                sizeof(bound), err, sizeof(err));
    if (!r.intake) {
        fprintf(stderr, "vmpv-relay: %s\n", err);
        goto fail_forwarder;
    }
    uv_signal_init(r.loop, &r.sigterm);
    uv_signal_init(r.loop, &r.sigint);
    r.sigterm.data = r.sigint.data = &r;
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_timer_init(r.loop, &r.stop_check);
    r.stop_check.data = &r;
    uv_signal_init(r.loop, &r.sighup);
    r.sighup.data = &r;
    uv_signal_start(&r.sighup, on_reload, SIGHUP);
    const char *ops = vp_config_get(&cfg, "metrics-listen");
    if (ops && *ops) {
        char ops_url[300];
        if (vp_opshttp_start(r.loop, ops, vpr_metrics, VPR_M_COUNT, NULL, NULL, &r.ops, ops_url,
                             sizeof(ops_url), err, sizeof(err)) != VP_OK) {
            fprintf(stderr, "vmpv-relay: %s\n", err);
            exit_code = 1;
            on_signal(&r.sigterm, SIGTERM);
            uv_run(r.loop, UV_RUN_DEFAULT);
            goto fail_intake;
        }
        vp_info("metrics on %s/metrics", ops_url);
    }
    vp_info("forwarding to %s", vp_config_get(&cfg, "server"));
    vp_net_ready("vmpv-relay", bound);
    uv_run(r.loop, UV_RUN_DEFAULT);
    exit_code = 0;
fail_intake:
    vpr_intake_free(r.intake);
    vp_opshttp_free(r.ops, r.loop);
fail_forwarder:
    vpr_forwarder_free(r.forwarder, exit_code == 0 ? drain_ms : 0);
fail_spool:
    vp_spool_close(r.lookup);
    vp_spool_close(r.spool);
    vp_spool_checkpointer_stop(r.checkpointer);
fail_curl:
    curl_global_cleanup();
    if (r.loop)
        uv_loop_close(r.loop);
fail_cfg:
    vp_config_free(&cfg);
    vp_config_free(&live_cfg);
    return exit_code;
}
