/*
 * main.c - vmpv-agent: one per host. Profiled Python processes tell it over a
 * local socket which profile file they are writing; it reads those files as
 * they grow and sends them, batched and LZ4-compressed, to vmpv-relay over
 * nng, keeping every batch until the relay has it on disk.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_int.h"
#include "vp_config.h"
#include "vp_err.h"
#include "vp_log.h"
#include "vp_net.h"
#include "vp_opshttp.h"
#include "vp_version.h"

static const vp_option options[] = {
    {"socket", "PATH", "/tmp/vmpv-agent.sock", "local socket the profiled processes connect to"},
    {"socket-mode", "OCTAL", "0666", "permissions of the socket file"},
    {"relay", "URL[,URL...]", "tcp://127.0.0.1:7000", "vmpv-relay address(es), nng URLs: tcp:// or tls+tcp://"},
    {"tls-ca", "FILE", "", "PEM file of the CA that signed the relays' certificates (tls+tcp://)"},
    {"tls-server-name", "NAME", "", "name expected in the relay's certificate (default: the URL's host)"},
    {"data", "DIR", "./vmpv-agent-data", "the agent's state directory"},
    {"token", "TOKEN", "", "shared token presented to the relay"},
    {"max-buffer-bytes", "N", "268435456", "batch bytes held for the relay before new runs are refused"},
    {"poll-ms", "MS", "20", "how often a growing profile file is read"},
    {"drain-ms", "MS", "5000", "on SIGTERM, how long to wait for the relay to take what is buffered"},
    {"metrics-listen", "HOST:PORT", "", "serve /healthz and /metrics here (empty: off)"},
    {"log-level", "LEVEL", "info", "debug, info, warn or error"},
};

static void on_connection(uv_stream_t *server, int status)
{
    vpa_agent *a = server->data;
    if (status < 0) {
        vp_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    vpa_session_accept(a);
}

static void recover_run(void *ctx, json_t *state)
{
    vpa_session_recover(ctx, state);
}

/* Sessions finish their disk operation in flight, then the loop stops (it
 * would not by itself while h2o's timers are on it). */
static void on_stop_check(uv_timer_t *t)
{
    vpa_agent *a = t->data;
    if (a->session_count)
        return;
    uv_close((uv_handle_t *)t, NULL);
    uv_stop(a->loop);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    vpa_agent *a = sig->data;
    vp_info("signal %d: stopping", signum);
    a->stopping = 1;
    uv_close((uv_handle_t *)&a->listener, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    if (a->ops)
        vp_opshttp_close(a->ops);
    vpa_session_close_all(a);
    uv_timer_start(&a->stop_check, on_stop_check, 0, 10);
}

int main(int argc, char **argv)
{
    /* Session buffers (64 KiB and up) are freed while their runs are quiet;
     * a fixed mmap threshold makes glibc return that memory to the system
     * instead of raising the threshold and keeping it in the heap. */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    vp_config cfg;
    char err[512];
    int exit_code = 1;
    vpa_agent a;
    memset(&a, 0, sizeof(a));
    int rc = vp_config_load(&cfg, "vmpv-agent", VP_VERSION,
                            "Reads vmprof profiles as they are written and sends them to vmpv-relay.",
                            options, sizeof(options) / sizeof(options[0]), argc, argv, err,
                            sizeof(err));
    if (rc == VP_CONFIG_EXIT_OK) {
        vp_config_free(&cfg);
        return 0;
    }
    if (rc != VP_OK) {
        fprintf(stderr, "vmpv-agent: %s\n", err);
        goto fail;
    }
    int level = vp_log_parse_level(vp_config_get(&cfg, "log-level"));
    vp_log_init("vmpv-agent", level < 0 ? VP_LOG_INFO : (enum vp_log_level)level);
    uint64_t drain_ms = 0, mode = 0;
    if (vp_config_get_u64(&cfg, "max-buffer-bytes", 4096, 1ull << 40, &a.max_buffer_bytes, err, sizeof(err)) ||
        vp_config_get_u64(&cfg, "poll-ms", 1, 10000, &a.poll_ms, err, sizeof(err)) ||
        vp_config_get_u64(&cfg, "drain-ms", 0, 600000, &drain_ms, err, sizeof(err))) {
        fprintf(stderr, "vmpv-agent: %s\n", err);
        goto fail;
    }
    const char *mode_s = vp_config_get(&cfg, "socket-mode");
    char *end = NULL;
    mode = strtoul(mode_s, &end, 8);
    if (*end || mode > 0777) {
        fprintf(stderr, "vmpv-agent: --socket-mode must be octal permissions like 0660\n");
        goto fail;
    }
    a.token = vp_config_get(&cfg, "token");
    if (vpa_store_init(&a.store, vp_config_get(&cfg, "data"), err, sizeof(err)) != VP_OK) {
        fprintf(stderr, "vmpv-agent: %s\n", err);
        goto fail;
    }

    a.loop = uv_default_loop();
    a.sender = vpa_sender_new(vp_config_get(&cfg, "relay"), vp_config_get(&cfg, "tls-ca"),
                              vp_config_get(&cfg, "tls-server-name"), &a.store,
                              a.max_buffer_bytes, err, sizeof(err));
    if (!a.sender) {
        fprintf(stderr, "vmpv-agent: %s\n", err);
        goto fail;
    }
    /* What a previous process left: its unsent batches go first, then the
     * runs it was reading continue where their logs say. */
    uint64_t recovered = 0;
    vpa_store_recover(&a.store, a.sender, recover_run, &a, &recovered);
    if (recovered)
        vp_info("%llu batches from a previous run are queued for the relay",
                (unsigned long long)recovered);
    if (vpa_sender_start(a.sender) != VP_OK) {
        fprintf(stderr, "vmpv-agent: cannot start the sender thread\n");
        goto fail_sender;
    }
    const char *path = vp_config_get(&cfg, "socket");
    /* A socket file left by a previous agent that died would make bind fail. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    uv_pipe_init(a.loop, &a.listener, 0);
    a.listener.data = &a;
    if ((rc = uv_pipe_bind(&a.listener, path)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&a.listener, 128, on_connection)) != 0) {
        fprintf(stderr, "vmpv-agent: cannot listen on %s: %s\n", path, uv_strerror(rc));
        goto fail_sender;
    }
    if (chmod(path, (mode_t)mode) != 0)
        vp_warn("cannot chmod %s: %s", path, strerror(errno));
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigint);
    a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_timer_init(a.loop, &a.stop_check);
    a.stop_check.data = &a;
    const char *ops = vp_config_get(&cfg, "metrics-listen");
    if (ops && *ops) {
        char ops_url[300];
        if (vp_opshttp_start(a.loop, ops, vpa_metrics, VPA_M_COUNT, NULL, NULL, &a.ops, ops_url,
                             sizeof(ops_url), err, sizeof(err)) != VP_OK) {
            fprintf(stderr, "vmpv-agent: %s\n", err);
            on_signal(&a.sigterm, SIGTERM);
            uv_run(a.loop, UV_RUN_DEFAULT);
            vp_opshttp_free(a.ops, a.loop);
            unlink(path);
            goto fail_sender;
        }
        vp_info("metrics on %s/metrics", ops_url);
    }
    vp_info("sending to %s", vp_config_get(&cfg, "relay"));
    char what[4200];
    snprintf(what, sizeof(what), "unix:%s", path);
    vp_net_ready("vmpv-agent", what);

    uv_run(a.loop, UV_RUN_DEFAULT);
    vp_opshttp_free(a.ops, a.loop);
    unlink(path);
    exit_code = 0;
fail_sender:
    vpa_sender_free(a.sender, drain_ms);
fail:
    if (a.loop)
        uv_loop_close(a.loop);
    vp_config_free(&cfg);
    return exit_code;
}
