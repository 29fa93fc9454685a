/*
 * session.c - one run in vmpv-agent: the client's request frames
 * (proto/PROTOCOL.md §A) and the reading of the profile file vmprof writes.
 *
 * A session reads the file through libuv's thread pool, hands the bytes to
 * the streaming vmprof reader, and cuts DATA batches only at record
 * boundaries. Each batch is appended to the run's log on disk together
 * with the run's state (how far the file is batched) before it is given to
 * the sender, so a restarted agent goes on exactly where the last one
 * stopped: no sample is sent twice under different seqs, none is skipped.
 *
 * One disk operation at a time per session (a read, or a batch write) keeps
 * the order of batches in the log simple. When the sender's queue is at
 * its bound the session stops reading: the data waits in the client's file.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "agent_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

#define READ_CHUNK (64u * 1024u)  /* one read; buffers grow past it only for a huge record */
#define ACC_START (64u * 1024u)
#define FLUSH_AGE_MS 500   /* a live profile becomes visible within this */
#define RETRY_MS 1000      /* after a failed batch write */
#define FULL_WAIT_MS 100   /* while the sender's queue is at its bound */

enum run_state { RUN_NONE, RUN_OPENING, RUN_TAILING, RUN_DONE };

struct vpa_session {
    vpa_session *next, *prev;
    vpa_agent *agent;
    uv_pipe_t conn;
    uv_timer_t timer;
    uv_fs_t fs;
    uv_work_t work;
    int conn_open, timer_open; /* 0 never/closed, 1 open, 2 closing */
    int fs_busy, work_busy;
    int recovered;             /* no client: restored from disk */

    uint8_t *in;               /* incoming request frames */
    size_t in_len;

    enum run_state state;
    int upload;                /* op "upload": reply once the file is read */
    int ending;                /* the writer is done: read to EOF, then close */
    int read_after_end;        /* the read in flight was issued after `ending` */
    int eof_after_end;
    int reader_stopped;        /* trailer seen or damage found */
    uint8_t run_id[VP_RUN_ID_LEN];
    char id[33];
    char *path;
    int owned;
    long pid;
    uv_file fd;
    uint64_t file_offset;      /* next byte to read */
    uint64_t batched_offset;   /* bytes already in batches */
    vp_vmprof_reader reader;
    uint8_t *buf;              /* read, not yet consumed: part of a record */
    size_t buf_len, buf_cap;
    uint8_t *acc;              /* complete records for the next DATA batch */
    size_t acc_len, acc_cap;
    uint64_t acc_samples, acc_since_ms;
    uint64_t seq;              /* seq of the next batch */
    uint64_t samples;          /* samples in batches */
    const char *status;        /* complete, failed, incomplete */
    char error[256];
    json_t *open_meta;         /* the OPEN payload, kept for the state file */
    int open_queued, close_queued;

    uint8_t *pending;          /* encoded batch being written to the queue */
    size_t pending_len;
    uint64_t pending_seq;
    uint8_t pending_kind;
    char *pending_state;
    uint64_t pending_off;      /* where the pending batch landed in the run log */
    int persist_rc;
};

vp_metric vpa_metrics[VPA_M_COUNT] = {
    [VPA_M_SESSIONS_TOTAL] = {"vmpv_agent_sessions_total", "client sessions started", 0, 0},
    [VPA_M_SESSIONS_ACTIVE] = {"vmpv_agent_sessions_active", "runs being read now", 1, 0},
    [VPA_M_SESSIONS_RECOVERED] = {"vmpv_agent_sessions_recovered_total", "runs resumed after a restart", 0, 0},
    [VPA_M_SAMPLES] = {"vmpv_agent_samples_total", "stack samples read from profiles", 0, 0},
    [VPA_M_BYTES_READ] = {"vmpv_agent_profile_bytes_total", "profile bytes read", 0, 0},
    [VPA_M_BATCHES_SENT] = {"vmpv_agent_batches_acked_total", "batches the relay acknowledged", 0, 0},
    [VPA_M_BATCHES_INFLIGHT] = {"vmpv_agent_batches_in_flight", "batches sent, not yet acknowledged", 1, 0},
    [VPA_M_BUFFERED_BYTES] = {"vmpv_agent_buffered_bytes", "batch bytes queued on disk for the relay", 1, 0},
    [VPA_M_REFUSED_FULL] = {"vmpv_agent_refusals_total{reason=\"buffer_full\"}", "requests refused", 0, 0},
    [VPA_M_REFUSED_BAD_REQUEST] = {"vmpv_agent_refusals_total{reason=\"bad_request\"}", "requests refused", 0, 0},
    [VPA_M_RELAY_ERRORS] = {"vmpv_agent_relay_errors_total", "sends the relay did not acknowledge", 0, 0},
};

static void session_maybe_free(vpa_session *s);
static void pump(vpa_session *s);
static void close_conn(vpa_session *s);

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

/* One reply per request and one request at a time per client keep the
 * connection's write queue bounded. Takes ownership of obj. */
static void reply_json(vpa_session *s, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text || s->conn_open != 1) {
        free(text);
        return;
    }
    size_t n = strlen(text);
    if (uv_stream_get_write_queue_size((uv_stream_t *)&s->conn) > VP_MAX_CLIENT_FRAME) {
        /* A client that sends requests without reading the replies. */
        vp_metric_add(&vpa_metrics[VPA_M_REFUSED_BAD_REQUEST], 1);
        free(text);
        close_conn(s);
        return;
    }
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

static void schedule(vpa_session *s, uint64_t delay_ms);

/* ---- batches and their state -------------------------------------------- */

/* The run's state as it will be once the pending batch is on disk. */
static char *state_json(vpa_session *s)
{
    json_t *st = json_pack("{s:i, s:s, s:s, s:b, s:I, s:b, s:I, s:I, s:I, s:s, s:s, s:b, s:b, s:b,"
                           " s:i, s:i, s:I, s:O}",
                           "v", 1, "run", s->id, "path", s->path, "owned", s->owned, "pid",
                           (json_int_t)s->pid, "upload", s->upload, "next_seq", (json_int_t)s->seq,
                           "offset", (json_int_t)s->batched_offset, "samples",
                           (json_int_t)s->samples, "status", s->status, "error", s->error,
                           "ending", s->ending, "stopped", s->reader_stopped, "close_queued",
                           s->close_queued, "version", s->reader.version, "mode", s->reader.mode,
                           "period_us", (json_int_t)s->reader.period_us, "open", s->open_meta);
    char *text = st ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    return text;
}

/* Encode a batch as the pending one, with the state that counts it. */
static int emit(vpa_session *s, uint8_t kind, const uint8_t *raw, size_t len, uint32_t samples)
{
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int rc = vp_batch_encode(kind, s->run_id, s->seq, samples, s->agent->token, raw, len, &msg,
                             &msg_len);
    if (rc != VP_OK) {
        vp_error("run %s: cannot encode a batch: %s", s->id, vp_strerror(rc));
        return rc;
    }
    s->pending = msg;
    s->pending_len = msg_len;
    s->pending_seq = s->seq;
    s->pending_kind = kind;
    s->seq++;
    if (kind == VP_BATCH_OPEN)
        s->open_queued = 1;
    if (kind == VP_BATCH_CLOSE)
        s->close_queued = 1;
    s->pending_state = state_json(s);
    if (!s->pending_state) {
        /* Undo: nothing was counted yet that the state would miss. */
        vp_free(s->pending);
        s->pending = NULL;
        s->seq--;
        return VP_ENOMEM;
    }
    return VP_OK;
}

static int emit_data(vpa_session *s)
{
    uint64_t old_offset = s->batched_offset, old_samples = s->samples;
    s->batched_offset += s->acc_len;
    s->samples += s->acc_samples;
    int rc = emit(s, VP_BATCH_DATA, s->acc, s->acc_len, (uint32_t)s->acc_samples);
    if (rc != VP_OK) {
        s->batched_offset = old_offset;
        s->samples = old_samples;
        return rc;
    }
    s->acc_len = 0;
    s->acc_samples = 0;
    return VP_OK;
}

static int emit_close(vpa_session *s)
{
    json_t *close = json_pack("{s:s, s:I, s:I}", "status", s->status, "samples",
                              (json_int_t)s->samples, "bytes", (json_int_t)s->batched_offset);
    if (close && s->error[0])
        json_object_set_new(close, "error", json_string(s->error));
    char *text = close ? json_dumps(close, JSON_COMPACT) : NULL;
    json_decref(close);
    if (!text)
        return VP_ENOMEM;
    int rc = emit(s, VP_BATCH_CLOSE, (const uint8_t *)text, strlen(text), 0);
    free(text);
    return rc;
}

static void persist_work(uv_work_t *w)
{
    vpa_session *s = w->data;
    const vpa_store *st = &s->agent->store;
    s->persist_rc = vpa_store_append(st, s->run_id, s->pending, s->pending_len, s->pending_state,
                                     &s->pending_off);
}

static void persist_done(uv_work_t *w, int status)
{
    vpa_session *s = w->data;
    s->work_busy = 0;
    if (status == UV_ECANCELED || s->agent->stopping) {
        session_maybe_free(s);
        return;
    }
    if (s->persist_rc != VP_OK) {
        vp_error("run %s: cannot write batch %llu to %s: %s; retrying", s->id,
                 (unsigned long long)s->pending_seq, s->agent->store.runs_dir, vp_strerror(s->persist_rc));
        schedule(s, RETRY_MS);
        return;
    }
    char path[8192];
    vpa_store_log_path(&s->agent->store, s->run_id, path, sizeof(path));
    char *copy = vp_strndup(path, strlen(path));
    int is_close = s->pending_kind == VP_BATCH_CLOSE;
    if (!copy || vpa_sender_put(s->agent->sender, copy, s->pending_off, s->pending_len, s->pending_seq,
                                is_close, is_close && s->owned ? s->path : NULL) != VP_OK) {
        /* It is on disk: the next agent start sends it. */
        vp_free(copy);
        vp_error("run %s: cannot queue batch %llu in memory", s->id, (unsigned long long)s->pending_seq);
    }
    uint8_t kind = s->pending_kind;
    vp_free(s->pending);
    vp_free(s->pending_state);
    s->pending = NULL;
    s->pending_state = NULL;
    /* A start is answered only now that the run is on disk: a client told
     * "ok" can rely on its run surviving an agent crash. */
    if (kind == VP_BATCH_OPEN && !s->upload && !s->recovered)
        reply_json(s, json_pack("{s:b, s:s}", "ok", 1, "run", s->id));
    pump(s);
}

static void start_persist(vpa_session *s)
{
    s->work.data = s;
    if (uv_queue_work(s->agent->loop, &s->work, persist_work, persist_done) == 0)
        s->work_busy = 1;
    else
        schedule(s, RETRY_MS);
}

/* The CLOSE batch is queued: the run is over for this session. */
static void complete_run(vpa_session *s)
{
    vp_info("run %s closed: %s, %llu samples, %llu bytes%s%s", s->id, s->status,
            (unsigned long long)s->samples, (unsigned long long)s->batched_offset,
            s->error[0] ? ": " : "", s->error);
    s->state = RUN_DONE;
    vp_metric_sub(&vpa_metrics[VPA_M_SESSIONS_ACTIVE], 1);
    if (s->upload && !s->recovered)
        reply_json(s, json_pack("{s:b, s:s, s:I}", "ok", 1, "run", s->id, "samples",
                                (json_int_t)s->samples));
    session_maybe_free(s);
}

/* ---- reading the profile ------------------------------------------------ */

static int count_sample(void *ctx, const vp_vmprof_sample *sample)
{
    (void)sample;
    ((vpa_session *)ctx)->acc_samples++;
    return 0;
}

/* Grows acc to hold `need` bytes. Idle and small runs keep small buffers:
 * an agent with a hundred quiet sessions stays small. Growth stops at the
 * batch target (consume() feeds no more), except for one record larger
 * than the target, which gets exactly its size. */
static int ensure_acc(vpa_session *s, size_t need)
{
    if (need <= s->acc_cap)
        return VP_OK;
    size_t cap = s->acc_cap ? s->acc_cap : ACC_START;
    while (cap < need)
        cap *= 2;
    if (cap > VP_BATCH_TARGET_RAW)
        cap = need > VP_BATCH_TARGET_RAW ? need : VP_BATCH_TARGET_RAW;
    uint8_t *n = vp_realloc(s->acc, cap);
    if (!n)
        return VP_ENOMEM;
    s->acc = n;
    s->acc_cap = cap;
    return VP_OK;
}

/* Gives the buffers back while a run is quiet (they are large enough to be
 * mmapped, see main.c, so this returns the memory to the system). */
static void release_idle_buffers(vpa_session *s)
{
    if (s->acc_len == 0 && s->acc) {
        vp_free(s->acc);
        s->acc = NULL;
        s->acc_cap = 0;
    }
    if (s->buf_len == 0 && s->buf) {
        vp_free(s->buf);
        s->buf = NULL;
        s->buf_cap = 0;
    }
}

/* Move complete records from buf to acc; stop when a batch is cut.
 * Only what fills the batch up to its target is fed to the reader, so a
 * batch is cut at the last record that fits, and acc never outgrows the
 * target: with a hundred sessions catching up on a backlog at once, that
 * bound is most of the agent's memory. */
static void consume(vpa_session *s)
{
    vp_vmprof_handler h = {.ctx = s, .on_sample = count_sample};
    size_t off = 0;
    int big_record = 0; /* the next record alone is larger than the target */
    while (off < s->buf_len && !s->reader_stopped && !s->pending) {
        if (s->acc_len >= VP_BATCH_TARGET_RAW)
            break; /* a cut that could not be encoded: pump() retries it */
        size_t avail = s->buf_len - off;
        size_t fill = big_record ? VP_MAX_BATCH_RAW - s->acc_len : VP_BATCH_TARGET_RAW - s->acc_len;
        int capped = avail > fill;
        if (capped)
            avail = fill; /* room always holds at least one largest record */
        uint64_t before = s->acc_samples;
        size_t used = 0;
        int rc = vp_vmprof_feed(&s->reader, s->buf + off, avail, &used, &h);
        if (rc == VP_OK && capped && used == 0 && s->acc_len == 0 && !big_record) {
            big_record = 1;
            continue;
        }
        big_record = 0;
        if (used) {
            if (s->acc_len == 0)
                s->acc_since_ms = uv_now(s->agent->loop);
            if (ensure_acc(s, s->acc_len + used) != VP_OK) {
                /* The reader counted these records: undo by re-reading them
                 * later is not possible, so stop with a clear error. */
                s->reader_stopped = 1;
                s->status = "incomplete";
                snprintf(s->error, sizeof(s->error), "agent out of memory");
                break;
            }
            memcpy(s->acc + s->acc_len, s->buf + off, used);
            s->acc_len += used;
            off += used;
            vp_metric_add(&vpa_metrics[VPA_M_SAMPLES], s->acc_samples - before);
        }
        if (rc == VP_EDONE) {
            s->reader_stopped = 1;
        } else if (rc != VP_OK) {
            s->reader_stopped = 1;
            s->status = "incomplete";
            snprintf(s->error, sizeof(s->error), "damaged profile: %s", s->reader.error);
            vp_warn("run %s: %s", s->id, s->error);
        }
        /* capped: the next record does not fit under the target. */
        if ((capped && s->acc_len) || s->acc_len >= VP_BATCH_TARGET_RAW ||
            s->acc_samples >= VP_BATCH_TARGET_SAMPLES || VP_MAX_BATCH_RAW - s->acc_len < VP_MAX_RECORD_BYTES)
            emit_data(s);
        if (used == 0)
            break;
    }
    if (off) {
        memmove(s->buf, s->buf + off, s->buf_len - off);
        s->buf_len -= off;
    }
    if (s->reader_stopped)
        s->buf_len = 0; /* after the trailer or damage nothing more is used */
}

static int process_gone(long pid)
{
    return pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}

static void on_read(uv_fs_t *req)
{
    vpa_session *s = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    s->fs_busy = 0;
    if (s->agent->stopping) {
        session_maybe_free(s);
        return;
    }
    if (n < 0) {
        s->status = "incomplete";
        snprintf(s->error, sizeof(s->error), "cannot read the profile: %s", uv_strerror((int)n));
        s->reader_stopped = 1;
        pump(s);
        return;
    }
    s->buf_len += (size_t)n;
    s->file_offset += (uint64_t)n;
    vp_metric_add(&vpa_metrics[VPA_M_BYTES_READ], (uint64_t)n);
    if (n == 0 && s->read_after_end)
        s->eof_after_end = 1;
    if (n == 0 && !s->ending && s->recovered && process_gone(s->pid)) {
        /* Nobody will send `end` for a run we took over: the writer's death
         * is the end. The next read decides whether anything follows. */
        s->ending = 1;
        if (strcmp(s->status, "complete") == 0) {
            s->status = "incomplete";
            snprintf(s->error, sizeof(s->error), "the profiled process went away before the profile ended");
        }
    }
    if (n > 0 || s->eof_after_end) {
        pump(s);
    } else {
        if (!s->acc_len)
            release_idle_buffers(s);
        schedule(s, s->agent->poll_ms);
    }
}

static void start_read(vpa_session *s)
{
    if (s->buf_cap - s->buf_len < READ_CHUNK) {
        size_t cap = s->buf_len + READ_CHUNK;
        uint8_t *nb = vp_realloc(s->buf, cap);
        if (!nb) {
            schedule(s, RETRY_MS);
            return;
        }
        s->buf = nb;
        s->buf_cap = cap;
    }
    uv_buf_t b = uv_buf_init((char *)s->buf + s->buf_len, READ_CHUNK);
    s->fs.data = s;
    s->read_after_end = s->ending;
    if (uv_fs_read(s->agent->loop, &s->fs, s->fd, &b, 1, (int64_t)s->file_offset, on_read) == 0)
        s->fs_busy = 1;
    else
        schedule(s, RETRY_MS);
}

/* The one place that decides what a session does next. */
static void pump(vpa_session *s)
{
    if (s->work_busy || s->fs_busy || s->state != RUN_TAILING || s->agent->stopping)
        return;
    if (s->pending) {
        start_persist(s);
        return;
    }
    if (!s->open_queued) {
        char *text = json_dumps(s->open_meta, JSON_COMPACT);
        int rc = text ? emit(s, VP_BATCH_OPEN, (const uint8_t *)text, strlen(text), 0) : VP_ENOMEM;
        free(text);
        if (rc == VP_OK)
            start_persist(s);
        else
            schedule(s, RETRY_MS);
        return;
    }
    if (s->close_queued) {
        complete_run(s);
        return;
    }
    consume(s);
    /* vmprof writes its trailer before the client sends `end`: a live run
     * closes only once the client has said how the call ended (or has gone
     * away), so a raised exception is never recorded as "complete". */
    int finishing = s->eof_after_end || (s->reader_stopped && (s->ending || s->recovered));
    if (!s->pending && finishing) {
        if (s->acc_len) {
            emit_data(s);
        } else {
            if (s->buf_len) {
                snprintf(s->error, sizeof(s->error),
                         "profile cut inside a record: %zu bytes after offset %llu dropped",
                         s->buf_len, (unsigned long long)s->reader.offset);
                s->status = "incomplete";
                s->buf_len = 0;
            }
            emit_close(s);
        }
    }
    if (!s->pending && s->acc_len &&
        (s->reader_stopped || uv_now(s->agent->loop) - s->acc_since_ms >= FLUSH_AGE_MS))
        emit_data(s);
    if (s->pending) {
        start_persist(s);
        return;
    }
    if (s->reader_stopped)
        return; /* nothing more to read: wait for `end` or the client's going away */
    if (vpa_sender_over_bound(s->agent->sender)) {
        schedule(s, FULL_WAIT_MS); /* backpressure: the data waits in the file */
        return;
    }
    start_read(s);
}

static void on_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void schedule(vpa_session *s, uint64_t delay_ms)
{
    if (s->timer_open == 1)
        uv_timer_start(&s->timer, on_timer, delay_ms, 0);
}

static void on_open(uv_fs_t *req)
{
    vpa_session *s = req->data;
    ssize_t fd = req->result;
    uv_fs_req_cleanup(req);
    s->fs_busy = 0;
    if (s->agent->stopping) {
        if (fd >= 0)
            close((int)fd);
        session_maybe_free(s);
        return;
    }
    if (fd < 0) {
        char why[600];
        snprintf(why, sizeof(why), "agent cannot open %s: %s", s->path, uv_strerror((int)fd));
        reply_error(s, why);
        s->state = RUN_NONE;
        return;
    }
    s->fd = (uv_file)fd;
    s->state = RUN_TAILING;
    vp_metric_add(&vpa_metrics[VPA_M_SESSIONS_TOTAL], 1);
    vp_metric_add(&vpa_metrics[VPA_M_SESSIONS_ACTIVE], 1);
    vp_info("run %s started: %s", s->id, s->path);
    pump(s);
}


/* ---- requests ----------------------------------------------------------- */

static const char *get_str(json_t *req, const char *key, size_t max, char *why, size_t cap)
{
    json_t *v = json_object_get(req, key);
    if (!json_is_string(v) || json_string_length(v) > max) {
        snprintf(why, cap, "'%s' must be a string of at most %zu bytes", key, max);
        return NULL;
    }
    return json_string_value(v);
}

static void handle_start(vpa_session *s, json_t *req, int upload)
{
    char why[128];
    const char *run = get_str(req, "run", 32, why, sizeof(why));
    const char *path = run ? get_str(req, "path", 4000, why, sizeof(why)) : NULL;
    const char *project = path ? get_str(req, "project", VP_MAX_META_STRING, why, sizeof(why)) : NULL;
    const char *function = project ? get_str(req, "function", VP_MAX_META_STRING, why, sizeof(why)) : NULL;
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
    vp_run_id_hex(s->run_id, s->id);
    json_t *tags = json_object_get(req, "tags");
    json_t *pid = json_object_get(req, "pid");
    s->open_meta = json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:O?, s:O?, s:s}", "project", project,
                             "function", function, "host", json_object_get(req, "host"), "pid",
                             json_is_integer(pid) ? pid : NULL, "tags",
                             json_is_object(tags) ? tags : NULL, "period",
                             json_object_get(req, "period"), "start",
                             json_object_get(req, "start"), "source", upload ? "upload" : "client");
    s->path = vp_strndup(path, strlen(path));
    if (!s->open_meta || !s->path) {
        reply_error(s, "agent out of memory");
        return;
    }
    s->pid = json_is_integer(pid) ? (long)json_integer_value(pid) : 0;
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
        reply_error(s, "agent cannot open the profile");
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

static void handle_metrics(vpa_session *s)
{
    char text[4096];
    vp_metrics_render(vpa_metrics, VPA_M_COUNT, text, sizeof(text));
    reply_json(s, json_pack("{s:b, s:s}", "ok", 1, "metrics", text));
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
    else if (op && strcmp(op, "metrics") == 0)
        handle_metrics(s);
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
        s->conn_open = 2;
        uv_close((uv_handle_t *)&s->conn, on_closed);
    }
}

static void on_data(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    vpa_session *s = stream->data;
    if (nread == 0)
        return;
    if (nread < 0 || b->base == NULL) {
        /* The client is gone. If its run did not end, the process died:
         * read what it wrote and close the run as incomplete. */
        if ((s->state == RUN_TAILING || s->state == RUN_OPENING) && !s->ending) {
            s->status = "incomplete";
            snprintf(s->error, sizeof(s->error),
                     "the profiled process went away before the profile ended");
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

/* Frees the session once nothing refers to it any more. A run in progress
 * keeps it alive until its CLOSE is queued, unless the agent is stopping,
 * in which case the run's state stays on disk for the next start. */
static void session_maybe_free(vpa_session *s)
{
    int run_busy = s->state == RUN_OPENING || s->state == RUN_TAILING;
    if ((!s->agent->stopping && run_busy) || s->fs_busy || s->work_busy)
        return;
    close_conn(s);
    if (s->timer_open == 1) {
        s->timer_open = 2;
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, on_closed);
    }
    if (s->conn_open || s->timer_open)
        return;
    if (s->state == RUN_TAILING)
        vp_metric_sub(&vpa_metrics[VPA_M_SESSIONS_ACTIVE], 1);
    if (s->fd >= 0)
        close(s->fd); /* a regular file: close() does not block */
    vpa_agent *a = s->agent;
    if (s->prev)
        s->prev->next = s->next;
    else
        a->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    a->session_count--;
    json_decref(s->open_meta);
    vp_free(s->in);
    vp_free(s->path);
    vp_free(s->buf);
    vp_free(s->acc);
    vp_free(s->pending);
    vp_free(s->pending_state);
    vp_free(s);
}

static vpa_session *session_new(vpa_agent *a)
{
    vpa_session *s = vp_calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->agent = a;
    s->fd = -1;
    uv_timer_init(a->loop, &s->timer);
    s->timer.data = s;
    s->timer_open = 1;
    s->next = a->sessions;
    if (a->sessions)
        a->sessions->prev = s;
    a->sessions = s;
    a->session_count++;
    return s;
}

void vpa_session_accept(vpa_agent *a)
{
    vpa_session *s = session_new(a);
    if (!s) {
        vp_error("out of memory accepting a client");
        return;
    }
    uv_pipe_init(a->loop, &s->conn, 0);
    s->conn.data = s;
    s->conn_open = 1;
    int full = a->session_count > VP_MAX_AGENT_SESSIONS;
    if (uv_accept((uv_stream_t *)&a->listener, (uv_stream_t *)&s->conn) != 0 || full) {
        if (full) {
            vp_metric_add(&vpa_metrics[VPA_M_REFUSED_FULL], 1);
            vp_warn("refusing a client: %u sessions open", VP_MAX_AGENT_SESSIONS);
        }
        session_maybe_free(s);
        return;
    }
    uv_read_start((uv_stream_t *)&s->conn, on_alloc, on_data);
}

static json_int_t get_int(json_t *st, const char *key)
{
    return json_integer_value(json_object_get(st, key));
}

void vpa_session_recover(vpa_agent *a, json_t *st)
{
    const char *run = json_string_value(json_object_get(st, "run"));
    const char *path = json_string_value(json_object_get(st, "path"));
    uint8_t run_id[VP_RUN_ID_LEN];
    if (!run || !path || vp_run_id_parse(run, strlen(run), run_id) != VP_OK) {
        vp_error("a saved run state has no valid run id or path; ignoring it");
        return;
    }
    /* The state was written with the batch it counts: it is exact. */
    uint64_t seq = (uint64_t)get_int(st, "next_seq");
    uint64_t offset = (uint64_t)get_int(st, "offset");
    uint64_t samples = (uint64_t)get_int(st, "samples");
    int stopped = json_is_true(json_object_get(st, "stopped"));
    vpa_session *s = session_new(a);
    if (!s) {
        vp_error("out of memory recovering run %s", run);
        return;
    }
    memcpy(s->run_id, run_id, VP_RUN_ID_LEN);
    vp_run_id_hex(run_id, s->id);
    s->recovered = 1;
    s->path = vp_strndup(path, strlen(path));
    s->owned = json_is_true(json_object_get(st, "owned"));
    s->upload = json_is_true(json_object_get(st, "upload"));
    s->pid = (long)get_int(st, "pid");
    s->seq = seq;
    s->open_queued = seq > 0;
    s->open_meta = json_incref(json_object_get(st, "open"));
    s->batched_offset = s->file_offset = offset;
    s->samples = samples;
    const char *status = json_string_value(json_object_get(st, "status"));
    s->status = status && strcmp(status, "failed") == 0       ? "failed"
                : status && strcmp(status, "incomplete") == 0 ? "incomplete"
                                                              : "complete";
    const char *error = json_string_value(json_object_get(st, "error"));
    snprintf(s->error, sizeof(s->error), "%s", error ? error : "");
    s->ending = json_is_true(json_object_get(st, "ending")) || s->upload;
    if (offset == 0)
        vp_vmprof_reader_init(&s->reader);
    else
        vp_vmprof_reader_resume(&s->reader, (uint16_t)get_int(st, "version"),
                                (uint8_t)get_int(st, "mode"), (uint64_t)get_int(st, "period_us"),
                                offset, samples);
    s->reader_stopped = stopped;
    s->fd = open(s->path, O_RDONLY | O_CLOEXEC); /* before the loop runs: may block */
    if (s->fd < 0) {
        s->status = "incomplete";
        snprintf(s->error, sizeof(s->error), "profile file gone after an agent restart: %s", strerror(errno));
        s->reader_stopped = 1;
    }
    s->state = RUN_TAILING;
    vp_metric_add(&vpa_metrics[VPA_M_SESSIONS_RECOVERED], 1);
    vp_metric_add(&vpa_metrics[VPA_M_SESSIONS_ACTIVE], 1);
    vp_info("run %s resumed at offset %llu (batch %llu) after a restart", s->id,
            (unsigned long long)offset, (unsigned long long)seq);
    schedule(s, 0);
}

void vpa_session_close_all(vpa_agent *a)
{
    for (vpa_session *s = a->sessions, *next; s; s = next) {
        next = s->next;
        session_maybe_free(s);
    }
}
