/*
 * vp_opshttp.h - the operators' HTTP endpoint of a daemon: GET /healthz and
 * GET /metrics (Prometheus text from a vp_metric table), served by h2o on
 * the daemon's libuv loop. Rendering is a memory copy of counters, so it is
 * cheap enough for the loop thread.
 */
#ifndef VP_OPSHTTP_H
#define VP_OPSHTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vp_metrics.h"

typedef struct vp_opshttp vp_opshttp;

/* Called before each /metrics render, on the loop thread, to refresh gauges. */
typedef void (*vp_opshttp_refresh_cb)(void *arg);

/* vp_opshttp_start listens on HOST:PORT (port 0 picks one) and writes the
 * URL it serves into url. metrics (count entries) must outlive the endpoint.
 * On success *out is owned by the caller: vp_opshttp_close it, let the loop
 * run to finish the close, then vp_opshttp_free. */
int vp_opshttp_start(uv_loop_t *loop, const char *listen, vp_metric *metrics, size_t count,
                     vp_opshttp_refresh_cb refresh, void *refresh_arg, vp_opshttp **out,
                     char *url, size_t url_cap, char *err, size_t errlen);

/* vp_opshttp_close stops listening. h2o keeps timers on the loop, so a loop
 * with an endpoint never runs out of work: stop it with uv_stop. */
void vp_opshttp_close(vp_opshttp *h);

/* vp_opshttp_free releases what is left after the loop has stopped
 * (running the loop once more to finish h2o's own closes). */
void vp_opshttp_free(vp_opshttp *h, uv_loop_t *loop);

#endif
