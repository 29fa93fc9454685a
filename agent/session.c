/*
 * session.c - one client connection of vmpv-agent: the request frames of
 * proto/PROTOCOL.md §A, and the tailing of the profile file vmprof writes.
 *
 * A session reads the file with libuv's thread pool (uv_fs_read), hands the
 * bytes to the streaming vmprof reader, and cuts DATA batches only at record
 * boundaries. The profiled process does nothing but write its file and send
 * two small frames; all the rest happens here.
 *
 * Backpressure: when the sender's queue is at its bound, a session keeps the
 * batch it could not queue and stops reading; the data waits in the client's
 * file, which is the cheapest buffer there is.
 */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

#define READ_CHUNK (256u * 1024u)
#define FLUSH_AGE_MS 500 /* a live profile becomes visible within this */

enum run_state { RUN_NONE, RUN_OPENING, RUN_TAILING, RUN_DONE };

struct vpa_session {
    vpa_session *next, *prev;
    vpa_agent *agent;
    uv_pipe_t conn;
    uv_timer_t timer;
    uv_fs_t fs;
    int conn_open, timer_open, fs_busy;

    /* incoming request frames */
    uint8_t *in;
    size_t in_len;

    /* the run */
    enum run_state state;
    int upload;           /* op was "upload": reply once the file is read */
    int ending;           /* no more bytes will be written: read to EOF, then close */
    int reader_stopped;   /* trailer seen or damage found: stop reading */
    uint8_t run_id[VP_RUN_ID_LEN];
    char *path;
    int owned;
    uv_file fd;
    uint64_t file_offset;
    vp_vmprof_reader reader;
    uint8_t *buf;         /* read but not yet consumed (an incomplete record) */
    size_t buf_len, buf_cap;
    uint8_t *acc;         /* complete records waiting for the next DATA batch */
    size_t acc_len;
    uint64_t acc_samples;
    uint64_t acc_since_ms;
    uint64_t seq;
    uint64_t samples, bytes;
    const char *status;   /* complete, failed, incomplete */
    char error[256];
    char *open_json;      /* OPEN payload, sent once the file is open */
    uint8_t *pending;     /* an encoded batch the sender refused as full */
    size_t pending_len;
    int pending_is_close;
    int close_queued;     /* the CLOSE batch was encoded */
};

vp_metric vpa_metrics[VPA_M_COUNT] = {
    [VPA_M_SESSIONS_TOTAL] = {"vmpv_agent_sessions_total", "client sessions started", 0, 0},
    [VPA_M_SESSIONS_ACTIVE] = {"vmpv_agent_sessions_active", "client sessions open now", 1, 0},
    [VPA_M_SAMPLES] = {"vmpv_agent_samples_total", "stack samples read from profiles", 0, 0},
    [VPA_M_BYTES_READ] = {"vmpv_agent_profile_bytes_total", "profile bytes read", 0, 0},
    [VPA_M_BATCHES_SENT] = {"vmpv_agent_batches_acked_total", "batches the relay acknowledged", 0, 0},
    [VPA_M_BATCHES_INFLIGHT] = {"vmpv_agent_batches_in_flight", "batches sent, not yet acknowledged", 1, 0},
    [VPA_M_BUFFERED_BYTES] = {"vmpv_agent_buffered_bytes", "batch bytes waiting for the relay", 1, 0},
    [VPA_M_REFUSED_FULL] = {"vmpv_agent_refusals_total{reason=\"buffer_full\"}", "sessions refused", 0, 0},
    [VPA_M_REFUSED_BAD_REQUEST] = {"vmpv_agent_refusals_total{reason=\"bad_request\"}", "sessions refused", 0, 0},
    [VPA_M_RELAY_ERRORS] = {"vmpv_agent_relay_errors_total", "sends the relay did not acknowledge", 0, 0},
};

static void session_maybe_free(vpa_session *s);
static void schedule_read(vpa_session *s, uint64_t delay_ms);
static void pump(vpa_session *s);

/* ---- replies ------------------------------------------------------------ */

typedef struct write_req {
    uv_write_t req;
    uint8_t data[];
} write_req;

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    vp_free(req);
}

/* Replies are small and one per request, so the write queue stays bounded by
 * the number of requests a client can have outstanding: one. */
static void reply_json(vpa_session *s, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!text || !s->conn_open) {
        free(text);
        return;
    }
    size_t n = strlen(text);
    write_req *w = vp_malloc(sizeof(*w) + 4 + n);
    if (w) {
        w->data[0] = (uint8_t)(n >> 24);
        w->data[1] = (uint8_t)(n >> 16);
        w->data[2] = (uint8_t)(n >> 8);
        w->data[3] = (uint8_t)n;
        memcpy(w->data + 4, text, n);
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(4 + n));
        if (uv_write(&w->req, (uv_stream_t *)&s->conn, &b, 1, on_written) != 0)
            vp_free(w);
    }
    free(text);
}

static void reply_error(vpa_session *s, const char *why)
{
    reply_json(s, json_pack("{s:b, s:s}", "ok", 0, "error", why));
}

/* ---- batches ------------------------------------------------------------ */

/* Queue an encoded batch, or keep it as pending if the sender is full. */
static int queue_batch(vpa_session *s, uint8_t *msg, size_t len, int is_close)
{
    char *unlink_path = NULL;
    if (is_close && s->owned && s->path) {
        unlink_path = vp_strndup(s->path, strlen(s->path));
        if (!unlink_path) {
            vp_free(msg);
            return VP_ENOMEM;
        }
    }
    int rc = vpa_sender_put(s->agent->sender, msg, len, unlink_path);
    if (rc == VP_OK)
        return VP_OK;
    vp_free(unlink_path);
    if (rc != VP_EFULL) {
        vp_free(msg);
        return rc;
    }
    s->pending = msg;
    s->pending_len = len;
    s->pending_is_close = is_close;
    return VP_EFULL;
}

static int emit(vpa_session *s, uint8_t kind, const uint8_t *raw, size_t len, uint32_t samples)
{
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int rc = vp_batch_encode(kind, s->run_id, s->seq, samples, s->agent->token, raw, len, &msg,
                             &msg_len);
    if (rc != VP_OK) {
        vp_error("cannot encode a batch: %s", vp_strerror(rc));
        return rc;
    }
    s->seq++;
    return queue_batch(s, msg, msg_len, kind == VP_BATCH_CLOSE);
}

static int flush_data(vpa_session *s)
{
    if (s->acc_len == 0)
        return VP_OK;
    int rc = emit(s, VP_BATCH_DATA, s->acc, s->acc_len, (uint32_t)s->acc_samples);
    if (rc == VP_OK || rc == VP_EFULL) {
        s->acc_len = 0;
        s->acc_samples = 0;
    }
    return rc;
}

/* The CLOSE batch is queued: the run is over for this session. */
static void complete_run(vpa_session *s)
{
    char id[33];
    vp_run_id_hex(s->run_id, id);
    vp_info("run %s closed: %s, %llu samples, %llu bytes%s%s", id, s->status,
            (unsigned long long)s->samples, (unsigned long long)s->bytes,
            s->error[0] ? ": " : "", s->error);
    s->state = RUN_DONE;
    vp_metric_sub(&vpa_metrics[VPA_M_SESSIONS_ACTIVE], 1);
    if (s->upload)
        reply_json(s, json_pack("{s:b, s:s, s:I}", "ok", 1, "run", id, "samples",
                                (json_int_t)s->samples));
    if (s->fd >= 0) {
        uv_fs_t req;
        uv_fs_close(NULL, &req, s->fd, NULL); /* a regular file: close() does not block */
        uv_fs_req_cleanup(&req);
        s->fd = -1;
    }
    session_maybe_free(s);
}

/* Called once nothing more will be read; may be called again after a
 * refused batch has been queued, and picks up where it stopped. */
static void finish_run(vpa_session *s)
{
    if (s->pending)
        return;
    if (!s->close_queued) {
        if (flush_data(s) != VP_OK)
            return;
        if (s->buf_len && !s->reader_stopped) {
            snprintf(s->error, sizeof(s->error),
                     "profile cut inside a record: %zu bytes after offset %llu dropped",
                     s->buf_len, (unsigned long long)s->reader.offset);
            s->status = "incomplete";
            s->buf_len = 0;
        }
        json_t *close = json_pack("{s:s, s:I, s:I}", "status", s->status, "samples",
                                  (json_int_t)s->samples, "bytes", (json_int_t)s->bytes);
        if (close && s->error[0])
            json_object_set_new(close, "error", json_string(s->error));
        char *text = close ? json_dumps(close, JSON_COMPACT) : NULL;
        json_decref(close);
        if (!text)
            return;
        int rc = emit(s, VP_BATCH_CLOSE, (const uint8_t *)text, strlen(text), 0);
        free(text);
        if (rc != VP_OK && rc != VP_EFULL)
            return;
        s->close_queued = 1;
        if (rc == VP_EFULL)
            return;
    }
    complete_run(s);
}

/* ---- reading the profile ------------------------------------------------ */

static int on_sample(void *ctx, const vp_vmprof_sample *sample)
{
    (void)sample;
    ((vpa_session *)ctx)->acc_samples++;
    return 0;
}

static uint64_t now_ms(vpa_session *s)
{
    return uv_now(s->agent->loop);
}

/* Move every complete record from buf to acc, cutting batches as acc fills. */
static void consume(vpa_session *s)
{
    vp_vmprof_handler h = {.ctx = s, .on_sample = on_sample};
    size_t off = 0;
    while (off < s->buf_len && !s->reader_stopped && !s->pending) {
        size_t room = VP_BATCH_TARGET_RAW > s->acc_len ? VP_BATCH_TARGET_RAW - s->acc_len : 0;
        size_t avail = s->buf_len - off;
        /* Offer at most what fits the batch, but never less than one whole
         * record can need, so a large record is never starved. */
        if (avail > room && room >= VP_MAX_RECORD_BYTES)
            avail = room;
        uint64_t before = s->acc_samples;
        size_t used = 0;
        int rc = vp_vmprof_feed(&s->reader, s->buf + off, avail, &used, &h);
        if (used) {
            if (s->acc_len == 0)
                s->acc_since_ms = now_ms(s);
            memcpy(s->acc + s->acc_len, s->buf + off, used);
            s->acc_len += used;
            off += used;
            s->bytes += used;
            s->samples += s->acc_samples - before;
            vp_metric_add(&vpa_metrics[VPA_M_SAMPLES], s->acc_samples - before);
        }
        if (rc == VP_EDONE) {
            s->reader_stopped = 1;
        } else if (rc != VP_OK) {
            s->reader_stopped = 1;
            s->status = "incomplete";
            snprintf(s->error, sizeof(s->error), "damaged profile: %s", s->reader.error);
            vp_warn("%s: %s", s->path, s->error);
        }
        if (s->acc_len >= VP_BATCH_TARGET_RAW || (s->acc_len + VP_MAX_RECORD_BYTES > VP_MAX_BATCH_RAW))
            flush_data(s);
        if (used == 0)
            break;
    }
    memmove(s->buf, s->buf + off, s->buf_len - off);
    s->buf_len -= off;
    if (s->reader_stopped)
        s->buf_len = 0; /* after the trailer or damage nothing more is used */
}

static void on_read(uv_fs_t *req)
{
    vpa_session *s = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    s->fs_busy = 0;
    if (s->state == RUN_DONE || s->agent->stopping) {
        session_maybe_free(s);
        return;
    }
    if (n < 0) {
        s->status = "incomplete";
        snprintf(s->error, sizeof(s->error), "cannot read the profile: %s", uv_strerror((int)n));
        s->reader_stopped = 1;
        s->ending = 1;
        finish_run(s);
        return;
    }
    s->buf_len += (size_t)n;
    s->file_offset += (uint64_t)n;
    vp_metric_add(&vpa_metrics[VPA_M_BYTES_READ], (uint64_t)n);
    consume(s);
    if (n == 0 && s->ending) {
        finish_run(s);
        return;
    }
    if (s->acc_len && now_ms(s) - s->acc_since_ms >= FLUSH_AGE_MS)
        flush_data(s);
    schedule_read(s, n == (ssize_t)READ_CHUNK ? 0 : s->agent->poll_ms);
}

static void start_read(vpa_session *s)
{
    if (s->fs_busy || s->state != RUN_TAILING || s->pending)
        return;
    if (s->reader_stopped) {
        if (s->ending)
            finish_run(s);
        return;
    }
    if (s->buf_cap - s->buf_len < READ_CHUNK) {
        size_t cap = s->buf_len + READ_CHUNK;
        uint8_t *nb = vp_realloc(s->buf, cap);
        if (!nb) {
            schedule_read(s, 100);
            return;
        }
        s->buf = nb;
        s->buf_cap = cap;
    }
    uv_buf_t b = uv_buf_init((char *)s->buf + s->buf_len, READ_CHUNK);
    s->fs.data = s;
    if (uv_fs_read(s->agent->loop, &s->fs, s->fd, &b, 1, (int64_t)s->file_offset, on_read) == 0)
        s->fs_busy = 1;
}

static void on_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void schedule_read(vpa_session *s, uint64_t delay_ms)
{
    if (!s->timer_open)
        return;
    uv_timer_start(&s->timer, on_timer, delay_ms, 0);
}

/* Retry a refused batch, then carry on reading. */
static void pump(vpa_session *s)
{
    if (s->pending) {
        uint8_t *msg = s->pending;
        s->pending = NULL;
        if (queue_batch(s, msg, s->pending_len, s->pending_is_close) == VP_EFULL) {
            schedule_read(s, 100);
            return;
        }
        if (s->close_queued) {
            complete_run(s);
            return;
        }
    }
    if (s->state == RUN_TAILING)
        start_read(s);
}

static void on_open(uv_fs_t *req)
{
    vpa_session *s = req->data;
    ssize_t fd = req->result;
    uv_fs_req_cleanup(req);
    s->fs_busy = 0;
    if (s->agent->stopping || !s->open_json) {
        if (fd >= 0) {
            uv_fs_t c;
            uv_fs_close(NULL, &c, (uv_file)fd, NULL);
            uv_fs_req_cleanup(&c);
        }
        session_maybe_free(s);
        return;
    }
    if (fd < 0) {
        char why[512];
        snprintf(why, sizeof(why), "cannot open %s: %s", s->path, uv_strerror((int)fd));
        reply_error(s, why);
        s->state = RUN_NONE;
        vp_free(s->open_json);
        s->open_json = NULL;
        return;
    }
    s->fd = (uv_file)fd;
    int rc = emit(s, VP_BATCH_OPEN, (const uint8_t *)s->open_json, strlen(s->open_json), 0);
    vp_free(s->open_json);
    s->open_json = NULL;
    if (rc != VP_OK && rc != VP_EFULL) {
        reply_error(s, "agent cannot queue the run");
        return;
    }
    s->state = RUN_TAILING;
    vp_metric_add(&vpa_metrics[VPA_M_SESSIONS_TOTAL], 1);
    vp_metric_add(&vpa_metrics[VPA_M_SESSIONS_ACTIVE], 1);
    char id[33];
    vp_run_id_hex(s->run_id, id);
    vp_info("run %s started: %s", id, s->path);
    if (!s->upload)
        reply_json(s, json_pack("{s:b, s:s}", "ok", 1, "run", id));
    pump(s);
}

/* ---- requests ----------------------------------------------------------- */

static const char *get_str(json_t *req, const char *key, size_t max, const char **why)
{
    json_t *v = json_object_get(req, key);
    if (!json_is_string(v) || json_string_length(v) > max) {
        static char buf[96];
        snprintf(buf, sizeof(buf), "'%s' must be a string of at most %zu bytes", key, max);
        *why = buf;
        return NULL;
    }
    return json_string_value(v);
}

static void handle_start(vpa_session *s, json_t *req, int upload)
{
    const char *why = NULL;
    const char *run = get_str(req, "run", 32, &why);
    const char *path = run ? get_str(req, "path", 4096, &why) : NULL;
    const char *project = path ? get_str(req, "project", VP_MAX_META_STRING, &why) : NULL;
    const char *function = project ? get_str(req, "function", VP_MAX_META_STRING, &why) : NULL;
    if (!function) {
        vp_metric_add(&vpa_metrics[VPA_M_REFUSED_BAD_REQUEST], 1);
        reply_error(s, why);
        return;
    }
    if (s->state != RUN_NONE) {
        reply_error(s, "this connection already carries a run");
        return;
    }
    if (vp_run_id_parse(run, strlen(run), s->run_id) != VP_OK || path[0] != '/') {
        vp_metric_add(&vpa_metrics[VPA_M_REFUSED_BAD_REQUEST], 1);
        reply_error(s, "'run' must be 32 hex digits and 'path' absolute");
        return;
    }
    if (vpa_sender_over_bound(s->agent->sender)) {
        vp_metric_add(&vpa_metrics[VPA_M_REFUSED_FULL], 1);
        vp_warn("refusing a new run: the buffer for the relay is full");
        reply_error(s, "vmpv-agent is full: the relay has not taken what is buffered; retry later");
        return;
    }
    json_t *tags = json_object_get(req, "tags");
    json_t *open = json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:O?, s:O?, s:s}", "project", project,
                             "function", function, "host", json_object_get(req, "host"), "pid",
                             json_object_get(req, "pid"), "tags", json_is_object(tags) ? tags : NULL,
                             "period", json_object_get(req, "period"), "start",
                             json_object_get(req, "start"), "source", upload ? "upload" : "client");
    s->open_json = open ? json_dumps(open, JSON_COMPACT) : NULL;
    json_decref(open);
    s->path = vp_strndup(path, strlen(path));
    s->acc = vp_malloc(VP_MAX_BATCH_RAW);
    if (!s->open_json || !s->path || !s->acc) {
        reply_error(s, "agent out of memory");
        return;
    }
    s->upload = upload;
    s->ending = upload;
    s->owned = !upload && json_is_true(json_object_get(req, "owned"));
    s->status = "complete";
    vp_vmprof_reader_init(&s->reader);
    s->state = RUN_OPENING;
    s->fs.data = s;
    if (uv_fs_open(s->agent->loop, &s->fs, s->path, O_RDONLY | O_CLOEXEC, 0, on_open) == 0)
        s->fs_busy = 1;
    else
        reply_error(s, "cannot open the profile");
}

static void handle_end(vpa_session *s, json_t *req)
{
    if (s->state != RUN_TAILING && s->state != RUN_OPENING) {
        reply_error(s, "no run in progress on this connection");
        return;
    }
    const char *status = json_string_value(json_object_get(req, "status"));
    const char *err = json_string_value(json_object_get(req, "error"));
    if (status && strcmp(status, "error") == 0) {
        s->status = "failed";
        snprintf(s->error, sizeof(s->error), "%s", err ? err : "the profiled call raised");
    }
    s->ending = 1;
    reply_json(s, json_pack("{s:b}", "ok", 1));
    pump(s);
}

static void handle_frame(vpa_session *s, const uint8_t *p, size_t n)
{
    json_error_t jerr;
    json_t *req = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(req)) {
        vp_metric_add(&vpa_metrics[VPA_M_REFUSED_BAD_REQUEST], 1);
        reply_error(s, "request is not a JSON object");
        json_decref(req);
        return;
    }
    json_t *v = json_object_get(req, "v");
    const char *op = json_string_value(json_object_get(req, "op"));
    if (!json_is_integer(v) || json_integer_value(v) != 1)
        reply_error(s, "unsupported protocol version (this agent speaks v 1)");
    else if (op && strcmp(op, "start") == 0)
        handle_start(s, req, 0);
    else if (op && strcmp(op, "upload") == 0)
        handle_start(s, req, 1);
    else if (op && strcmp(op, "end") == 0)
        handle_end(s, req);
    else
        reply_error(s, "unknown op");
    json_decref(req);
}

/* ---- the connection ----------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    vpa_session *s = h->data;
    size_t want = 4 + VP_MAX_CLIENT_FRAME;
    if (!s->in)
        s->in = vp_malloc(want);
    if (!s->in || s->in_len >= want) {
        *b = uv_buf_init(NULL, 0);
        return;
    }
    *b = uv_buf_init((char *)s->in + s->in_len, (unsigned)(want - s->in_len));
}

static void on_closed(uv_handle_t *h)
{
    vpa_session *s = h->data;
    if (h == (uv_handle_t *)&s->conn)
        s->conn_open = 0;
    else
        s->timer_open = 0;
    session_maybe_free(s);
}

static void close_conn(vpa_session *s)
{
    if (s->conn_open == 1) {
        s->conn_open = 2; /* closing */
        uv_close((uv_handle_t *)&s->conn, on_closed);
    }
}

static void on_data(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    vpa_session *s = stream->data;
    if (nread < 0 || (nread == 0 && b->base == NULL)) {
        /* The client is gone. If its run did not end, the process died:
         * read what it wrote and close the run as incomplete. */
        if (s->state == RUN_TAILING || s->state == RUN_OPENING) {
            if (!s->ending) {
                s->status = "incomplete";
                snprintf(s->error, sizeof(s->error),
                         "the profiled process went away before the profile ended");
            }
            s->ending = 1;
            pump(s);
        }
        close_conn(s);
        return;
    }
    s->in_len += (size_t)nread;
    size_t off = 0;
    while (s->in_len - off >= 4) {
        const uint8_t *p = s->in + off;
        uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (n > VP_MAX_CLIENT_FRAME) {
            vp_metric_add(&vpa_metrics[VPA_M_REFUSED_BAD_REQUEST], 1);
            reply_error(s, "request frame over 64 KiB");
            close_conn(s);
            return;
        }
        if (s->in_len - off < 4u + n)
            break;
        handle_frame(s, p + 4, n);
        off += 4u + n;
    }
    memmove(s->in, s->in + off, s->in_len - off);
    s->in_len -= off;
}

static void session_maybe_free(vpa_session *s)
{
    int run_busy = s->state == RUN_OPENING || s->state == RUN_TAILING;
    if (!s->agent->stopping && run_busy)
        return;
    if (s->fs_busy)
        return;
    if (s->conn_open == 1)
        close_conn(s);
    if (s->timer_open == 1) {
        s->timer_open = 2;
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, on_closed);
    }
    if (s->conn_open || s->timer_open)
        return;
    if (run_busy)
        vp_metric_sub(&vpa_metrics[VPA_M_SESSIONS_ACTIVE], 1);
    if (s->fd >= 0) {
        uv_fs_t req;
        uv_fs_close(NULL, &req, s->fd, NULL);
        uv_fs_req_cleanup(&req);
    }
    vpa_agent *a = s->agent;
    if (s->prev)
        s->prev->next = s->next;
    else
        a->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    a->session_count--;
    vp_free(s->in);
    vp_free(s->path);
    vp_free(s->buf);
    vp_free(s->acc);
    vp_free(s->open_json);
    vp_free(s->pending);
    vp_free(s);
}

void vpa_session_accept(vpa_agent *a)
{
    vpa_session *s = vp_calloc(1, sizeof(*s));
    if (!s) {
        vp_error("out of memory accepting a client");
        return;
    }
    s->agent = a;
    s->fd = -1;
    uv_pipe_init(a->loop, &s->conn, 0);
    s->conn.data = s;
    s->conn_open = 1;
    uv_timer_init(a->loop, &s->timer);
    s->timer.data = s;
    s->timer_open = 1;
    s->next = a->sessions;
    if (a->sessions)
        a->sessions->prev = s;
    a->sessions = s;
    a->session_count++;
    if (uv_accept((uv_stream_t *)&a->listener, (uv_stream_t *)&s->conn) != 0 ||
        a->session_count > VP_MAX_AGENT_SESSIONS) {
        if (a->session_count > VP_MAX_AGENT_SESSIONS) {
            vp_metric_add(&vpa_metrics[VPA_M_REFUSED_FULL], 1);
            vp_warn("refusing a client: %u sessions open", VP_MAX_AGENT_SESSIONS);
        }
        session_maybe_free(s);
        return;
    }
    uv_read_start((uv_stream_t *)&s->conn, on_alloc, on_data);
}

void vpa_session_close_all(vpa_agent *a)
{
    for (vpa_session *s = a->sessions, *next; s; s = next) {
        next = s->next;
        session_maybe_free(s);
    }
}
