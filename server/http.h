/*
 * http.h - the HTTP side of vmpv-server: h2o on the caller's libuv loop,
 * routing, static files of the web UI, and handing storage work to the
 * thread pool.
 *
 * Everything here runs on the loop thread.
 */
#ifndef VPS_HTTP_H
#define VPS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store.h"

typedef struct vps_http vps_http;

typedef struct vps_http_opts {
    const char *listen; /* HOST:PORT; port 0 = any free port */
    const char *web;    /* directory of the built UI; need not exist */
    const char *token;  /* intake token for POST /api/v1/batches, "" = none */
    vps_store *store;   /* borrowed; must outlive the vps_http */
    /* DELETE /api/runs/{id} needs "Authorization: Bearer <admin_token>";
     * "" = deleting is off. NULL = take $VMPV_ADMIN_TOKEN (unset = off). */
    const char *admin_token;
    /* Every GET /api/... needs the read token as a Bearer header or the
     * vmpv_token cookie (GET /login?token= sets it); "" = reading is open.
     * NULL = take $VMPV_READ_TOKEN (unset = open). */
    const char *read_token;
    /* Directory of the query cache's summary files (rundata.h); NULL or ""
     * = none. */
    const char *summaries;
    uint64_t summary_max_bytes; /* their bound; 0 = VP_SUMMARY_BYTES */
} vps_http_opts;

/* vps_http_start listens and serves on loop. On success *out is owned by the
 * caller, *port is the bound port and *url a connectable base URL (cap
 * bytes). On failure err says why. Strings in o are copied. */
int vps_http_start(uv_loop_t *loop, const vps_http_opts *o, vps_http **out, uint16_t *port,
                   char *url, size_t url_cap, char *err, size_t errlen);

/* vps_http_stop stops accepting connections and calls drained(arg) once no
 * storage work is in flight (at once if none is). Call it once. */
void vps_http_stop(vps_http *h, void (*drained)(void *arg), void *arg);

/* vps_http_free releases what h owns after the loop has stopped. h2o 2.2
 * cannot dispose a context while keep-alive connections are open, so the
 * h2o context itself is left to the process exit. */
void vps_http_free(vps_http *h);

#endif
