/*
 * main.c - vmpv-server: flags and config, the libuv loop, signals.
 *
 * The loop thread runs h2o (http.c); storage work runs on libuv's thread
 * pool, one store connection per pool thread (store.c): SQLite in --data
 * DIR, or PostgreSQL at --db URL, which several servers may share. SIGTERM
 * or SIGINT stops accepting, waits for the storage work in flight, then
 * exits 0.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "http.h"
#include "store.h"
#include "vp_config.h"
#include "vp_err.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_net.h"
#include "vp_version.h"

static const vp_option options[] = {
    {"listen", "HOST:PORT", "127.0.0.1:8000", "serve HTTP here; port 0 picks a free port"},
    {"data", "DIR", "./vmpv-data", "directory of the store, DIR/vmpv.sqlite (created if missing)"},
    {"db", "URL", "",
     "store in PostgreSQL instead: postgresql://USER@HOST:PORT/DBNAME (a libpq URI; servers "
     "may share it); empty = SQLite in --data"},
    {"web", "DIR", "web/dist", "directory of the built web UI"},
    {"token", "TOKEN", "", "intake token POST /api/v1/batches must carry; empty = none"},
    {"admin-token", "TOKEN", "", "token DELETE /api/runs/{id} needs (Bearer); empty = deleting is off"},
    {"read-token", "TOKEN", "", "token every GET /api/... needs (Bearer or the vmpv_token cookie "
                                "set by /login?token=); empty = reading is open"},
    {"summary-max-mb", "MB", "4096",
     "bytes of summary files (DATA/rundata: each finished run's query data) to keep; the "
     "least recently used go first; 0 = write none"},
    {"log-level", "LEVEL", "info", "debug, info, warn or error"},
    {"config", "FILE", NULL, "read settings from FILE (lines of key = value)"},
};

/* The loop and server live in static storage: h2o 2.2 cannot dispose a
 * context with keep-alive connections open (http.h), so what they still
 * hold at exit stays reachable rather than leaked. */
static uv_loop_t loop;
static vps_http *http;
static uv_signal_t sig_term, sig_int;

/* pool_threads is the size of libuv's thread pool, which runs every store
 * call: one store connection per thread means none ever waits for one. */
static unsigned pool_threads(void)
{
    const char *e = getenv("UV_THREADPOOL_SIZE");
    long n = e ? strtol(e, NULL, 10) : 4;
    return n < 1 ? 1 : n > 1024 ? 1024 : (unsigned)n;
}

static void on_drained(void *arg)
{
    (void)arg;
    vp_info("no storage work in flight; exiting");
    uv_stop(&loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    vp_info("signal %d: shutting down", signum);
    /* Closing the watchers restores the default action: a second signal
     * kills at once, which either store survives (a transaction is whole). */
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    vps_http_stop(http, on_drained, NULL);
}

int main(int argc, char **argv)
{
    vp_config cfg;
    vps_store *store = NULL;
    char err[512], url[128];
    uint16_t port = 0;
    int status = 1;

    int rc = vp_config_load(&cfg, "vmpv-server", VP_VERSION,
                            "Stores vmprof profiles and serves the vmprof-viewer API and web UI.",
                            options, sizeof(options) / sizeof(options[0]), argc, argv, err,
                            sizeof(err));
    if (rc == VP_CONFIG_EXIT_OK) {
        vp_config_free(&cfg);
        return 0;
    }
    if (rc != VP_OK) {
        fprintf(stderr, "vmpv-server: %s\n", err);
        vp_config_free(&cfg);
        return 2;
    }
    int level = vp_log_parse_level(vp_config_get(&cfg, "log-level"));
    if (level < 0) {
        fprintf(stderr, "vmpv-server: --log-level must be debug, info, warn or error\n");
        vp_config_free(&cfg);
        return 2;
    }
    vp_log_init("vmpv-server", (enum vp_log_level)level);
    /* jansson allocates through vp_malloc (fault injection reaches it), and
     * its hash seed is fixed before worker threads use it. */
    json_set_alloc_funcs(vp_malloc, vp_free);
    json_object_seed(0);
    signal(SIGPIPE, SIG_IGN);

    /* Check the address before the store creates any directory. */
    char host[256];
    uint16_t want_port;
    if (vp_net_split_hostport(vp_config_get(&cfg, "listen"), host, sizeof(host), &want_port) !=
        VP_OK) {
        vp_error("--listen must be HOST:PORT, not '%s'", vp_config_get(&cfg, "listen"));
        goto fail;
    }
    const char *data = vp_config_get(&cfg, "data");
    const char *db = vp_config_get(&cfg, "db");
    if (*db && strncmp(db, "postgresql://", 13) != 0 && strncmp(db, "postgres://", 11) != 0) {
        vp_error("--db must be a postgresql:// or postgres:// URL (or empty for SQLite)");
        goto fail;
    }
    uint64_t summary_mb;
    char cfg_err[256];
    if (vp_config_get_u64(&cfg, "summary-max-mb", 0, (uint64_t)1 << 30, &summary_mb, cfg_err,
                          sizeof(cfg_err)) != VP_OK) {
        vp_error("%s", cfg_err);
        goto fail;
    }
    unsigned nconn = pool_threads();
    /* vps_store_open tells a PostgreSQL URL from a directory. */
    if ((rc = vps_store_open(*db ? db : data, nconn, &store, err, sizeof(err))) != VP_OK) {
        vp_error("%s", err);
        goto fail;
    }
    uv_loop_init(&loop);
    /* Summary files are derived data, kept next to the SQLite file; with
     * PostgreSQL each server keeps its own. */
    char summaries[4200];
    struct stat st;
    snprintf(summaries, sizeof(summaries), "%s/rundata", data);
    /* A PostgreSQL server makes no directory of its own: it keeps summary
     * files only if --data names one that exists. */
    if ((*db && (stat(data, &st) != 0 || !S_ISDIR(st.st_mode))) || summary_mb == 0)
        summaries[0] = '\0';
    vps_http_opts o = {.listen = vp_config_get(&cfg, "listen"),
                       .summaries = summaries,
                       .summary_max_bytes = summary_mb << 20,
                       .web = vp_config_get(&cfg, "web"),
                       .token = vp_config_get(&cfg, "token"),
                       .store = store};
    /* Unset flags leave the environment ($VMPV_ADMIN_TOKEN, $VMPV_READ_TOKEN)
     * to decide, so a deployment can keep secrets out of command lines. */
    const char *admin = vp_config_get(&cfg, "admin-token");
    const char *reader = vp_config_get(&cfg, "read-token");
    o.admin_token = admin && *admin ? admin : NULL;
    o.read_token = reader && *reader ? reader : NULL;
    if ((rc = vps_http_start(&loop, &o, &http, &port, url, sizeof(url), err, sizeof(err))) !=
        VP_OK) {
        vp_error("%s", err);
        goto fail;
    }
    uv_signal_init(&loop, &sig_term);
    uv_signal_init(&loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    if (*db)
        vp_info("store PostgreSQL, %u connections; intake token %s", nconn,
                *o.token ? "required" : "not required");
    else
        vp_info("store %s/vmpv.sqlite, %u connections; intake token %s", data, nconn,
                *o.token ? "required" : "not required");
    vp_net_ready("vmpv-server", url);
    uv_run(&loop, UV_RUN_DEFAULT);
    status = 0;
fail:
    /* Every job has finished (on_drained), so no connection is in use. */
    vps_store_free(store);
    vps_http_free(http);
    vp_config_free(&cfg);
    return status;
}
