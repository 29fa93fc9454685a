/* vp_opshttp.c - see vp_opshttp.h. */
#include "vp_opshttp.h"

#include <h2o.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "vp_err.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_net.h"

#define METRICS_CAP (64u * 1024u) /* every daemon's table renders far smaller */

struct vp_opshttp {
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    int listening;
    unsigned open_conns;
    vp_metric *metrics;
    size_t count;
    vp_opshttp_refresh_cb refresh;
    void *refresh_arg;
};

typedef struct handler {
    h2o_handler_t super;
    vp_opshttp *ops;
} handler;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    vp_opshttp *h = ((handler *)self)->ops;
    const char *body = "not found\n";
    size_t len = strlen(body);
    int status = 404;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        status = 405;
        body = "method not allowed\n";
        len = strlen(body);
    } else if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/healthz"))) {
        status = 200;
        body = "ok\n";
        len = 3;
    } else if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/metrics"))) {
        if (h->refresh)
            h->refresh(h->refresh_arg);
        char *text = h2o_mem_alloc_pool(&req->pool, METRICS_CAP);
        len = vp_metrics_render(h->metrics, h->count, text, METRICS_CAP);
        body = text;
        status = 200;
    }
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Method Not Allowed";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_send_inline(req, body, len);
    return 0;
}

static vp_opshttp *the_endpoint; /* for on_conn_close: one endpoint per process */

static void on_conn_close(uv_handle_t *handle)
{
    if (the_endpoint)
        the_endpoint->open_conns--;
    vp_free(handle);
}

static void on_accept(uv_stream_t *listener, int status)
{
    vp_opshttp *h = listener->data;
    if (status != 0)
        return;
    uv_tcp_t *conn = vp_malloc(sizeof(*conn));
    if (!conn)
        return; /* the peer retries; metrics are not worth more */
    uv_tcp_init(listener->loop, conn);
    h->open_conns++;
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, on_conn_close);
        return;
    }
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_conn_close);
    h2o_accept(&h->accept_ctx, sock);
}

int vp_opshttp_start(uv_loop_t *loop, const char *listen, vp_metric *metrics, size_t count,
                     vp_opshttp_refresh_cb refresh, void *refresh_arg, vp_opshttp **out,
                     char *url, size_t url_cap, char *err, size_t errlen)
{
    char host[256], portstr[8];
    uint16_t port;
    if (vp_net_split_hostport(listen, host, sizeof(host), &port) != VP_OK) {
        snprintf(err, errlen, "metrics address must be HOST:PORT, not '%s'", listen);
        return VP_EINVAL;
    }
    snprintf(portstr, sizeof(portstr), "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, portstr, &hints, &ai) != 0) {
        snprintf(err, errlen, "cannot resolve %s", host);
        return VP_EINVAL;
    }
    vp_opshttp *h = vp_calloc(1, sizeof(*h));
    if (!h) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return VP_ENOMEM;
    }
    the_endpoint = h;
    h->metrics = metrics;
    h->count = count;
    h->refresh = refresh;
    h->refresh_arg = refresh_arg;
    h2o_config_init(&h->config);
    h2o_hostconf_t *hc = h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(hc, "/", 0);
    handler *hd = (handler *)h2o_create_handler(pc, sizeof(*hd));
    hd->super.on_req = on_req;
    hd->ops = h;
    h2o_context_init(&h->ctx, loop, &h->config);
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->config.hosts;
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->listening = 1;
    int rc = uv_tcp_bind(&h->listener, ai->ai_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 64, on_accept);
    freeaddrinfo(ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen, uv_strerror(rc));
        vp_opshttp_close(h);
        *out = h; /* the caller frees it after the loop has closed the handle */
        return VP_EIO;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &sl);
    char shown[64] = "127.0.0.1";
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        if (a->sin_addr.s_addr != htonl(INADDR_ANY))
            uv_ip4_name(a, shown, sizeof(shown));
        snprintf(url, url_cap, "http://%s:%u", shown, ntohs(a->sin_port));
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, shown, sizeof(shown));
        snprintf(url, url_cap, "http://[%s]:%u", shown, ntohs(a->sin6_port));
    }
    *out = h;
    return VP_OK;
}

void vp_opshttp_close(vp_opshttp *h)
{
    if (h && h->listening) {
        h->listening = 0;
        uv_close((uv_handle_t *)&h->listener, NULL);
    }
}

void vp_opshttp_free(vp_opshttp *h, uv_loop_t *loop)
{
    if (!h)
        return;
    if (h->open_conns) {
        /* h2o 2.2 cannot dispose a context while a connection is open: leave
         * it (reachable through the_endpoint) to the process exit. */
        return;
    }
    h2o_context_dispose(&h->ctx);
    uv_run(loop, UV_RUN_NOWAIT); /* let the context's timers finish closing */
    h2o_config_dispose(&h->config);
    the_endpoint = NULL;
    vp_free(h);
}
