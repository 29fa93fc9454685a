/*
 * store.c - the agent's queue on disk, so that a SIGKILL loses nothing:
 * one append-only log per run, DATA/runs/<run>.log (format in
 * proto/PROTOCOL.md, "Agent run log"). Each entry holds one encoded batch and
 * the run's state as it is once that batch exists (how far the profile file
 * has been batched, the next seq, the reader's header state, the OPEN
 * metadata), under one CRC, so batch and state can never disagree. The log's
 * header holds the next seq the relay has not acknowledged, overwritten in
 * place by the sender.
 *
 * One log per run instead of a file per batch: creating and deleting two
 * files per batch cost the agent a quarter of its CPU in ext4's inode
 * allocator (BENCHMARKS.md, agent throughput).
 *
 * Nothing is fsynced: the log survives the agent's death (SIGKILL), which is
 * what it is for; the profile file it was read from is not fsynced by vmprof
 * either.
 *
 * Every function here does blocking disk I/O: call them from libuv's thread
 * pool, the sender thread, or before the loop starts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "agent_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

#define PATH_CAP 8192
#define LOG_MAGIC "VPAQ"
#define ENTRY_MAGIC "VPAE"
#define LOG_VERSION 1u

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return VP_EIO;
    }
    return VP_OK;
}

/* Batch files of the layout before run logs (DATA/queue/ *.vpb): refusing
 * to start beats silently leaving them unsent. */
static int old_layout_present(const char *queue_dir)
{
    DIR *d = opendir(queue_dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        found = len > 4 && strcmp(e->d_name + len - 4, ".vpb") == 0;
    }
    closedir(d);
    return found;
}

int vpa_store_init(vpa_store *st, const char *data_dir, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    if (strlen(data_dir) > 3900) {
        snprintf(err, errlen, "--data path too long");
        return VP_EINVAL;
    }
    snprintf(st->dir, sizeof(st->dir), "%s", data_dir);
    snprintf(st->runs_dir, sizeof(st->runs_dir), "%s/runs", data_dir);
    if (make_dir(st->dir, err, errlen) || make_dir(st->runs_dir, err, errlen))
        return VP_EIO;
    char queue_dir[PATH_CAP];
    snprintf(queue_dir, sizeof(queue_dir), "%s/queue", data_dir);
    if (old_layout_present(queue_dir)) {
        snprintf(err, errlen,
                 "%s holds batches queued by an older vmpv-agent (one file per batch); let that "
                 "version send them first, or move them away",
                 queue_dir);
        return VP_EINVAL;
    }
    return VP_OK;
}

void vpa_store_log_path(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], char *out, size_t cap)
{
    char id[33];
    vp_run_id_hex(run_id, id);
    snprintf(out, cap, "%s/%s.log", st->runs_dir, id);
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return VP_EIO;
        done += (size_t)n;
    }
    return VP_OK;
}

static int pread_all(int fd, uint8_t *p, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? VP_ECORRUPT : VP_EIO;
        done += (size_t)n;
    }
    return VP_OK;
}

static uint32_t entry_crc(const uint8_t *batch, size_t batch_len, const char *state, size_t state_len)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, batch, (uInt)batch_len);
    crc = crc32(crc, (const Bytef *)state, (uInt)state_len);
    return (uint32_t)crc;
}

int vpa_store_append(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], const uint8_t *msg,
                     size_t len, const char *state, uint64_t *batch_off)
{
    size_t state_len = strlen(state);
    if (len > VP_MAX_HTTP_BATCH_BODY || state_len > VP_MAX_AGENT_STATE)
        return VP_ETOOBIG;
    char path[PATH_CAP];
    vpa_store_log_path(st, run_id, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return VP_EIO;
    int rc = VP_EIO;
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        goto fail;
    uint64_t end = (uint64_t)sb.st_size;
    /* Header and entry go out in one write: a log never exists without its
     * header, and a torn entry is only ever the last one. */
    size_t head_len = end == 0 ? VP_AGENT_LOG_HEADER : 0;
    size_t total = head_len + VP_AGENT_LOG_ENTRY_HEADER + len + state_len;
    uint8_t *buf = vp_malloc(total);
    if (!buf) {
        rc = VP_ENOMEM;
        goto fail;
    }
    uint8_t *p = buf;
    if (head_len) {
        memcpy(p, LOG_MAGIC, 4);
        vp_store_u16le(p + 4, LOG_VERSION);
        vp_store_u16le(p + 6, 0);
        vp_store_u64le(p + 8, 0); /* nothing acknowledged yet */
        p += head_len;
    }
    memcpy(p, ENTRY_MAGIC, 4);
    vp_store_u32le(p + 4, (uint32_t)len);
    vp_store_u32le(p + 8, (uint32_t)state_len);
    vp_store_u32le(p + 12, entry_crc(msg, len, state, state_len));
    p += VP_AGENT_LOG_ENTRY_HEADER;
    memcpy(p, msg, len);
    memcpy(p + len, state, state_len);
    rc = write_all(fd, buf, total);
    vp_free(buf);
    if (rc != VP_OK) {
        /* Cut a partial entry so the next append starts clean. */
        if (ftruncate(fd, (off_t)end) != 0)
            vp_warn("cannot cut a partial entry off %s: %s", path, strerror(errno));
        goto fail;
    }
    *batch_off = end + head_len + VP_AGENT_LOG_ENTRY_HEADER;
    rc = close(fd) == 0 ? VP_OK : VP_EIO;
    return rc;
fail:
    close(fd);
    return rc;
}

uint8_t *vpa_store_read_batch(const char *log_path, uint64_t off, size_t len, int *rc)
{
    *rc = VP_EINVAL;
    if (len == 0 || len > VP_MAX_HTTP_BATCH_BODY)
        return NULL;
    int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *rc = VP_EIO;
        return NULL;
    }
    uint8_t *buf = vp_malloc(len);
    if (!buf) {
        *rc = VP_ENOMEM;
        goto fail;
    }
    if ((*rc = pread_all(fd, buf, len, off)) != VP_OK)
        goto fail;
    close(fd);
    return buf;
fail:
    vp_free(buf);
    close(fd);
    return NULL;
}

int vpa_store_mark_acked(const char *log_path, uint64_t next_seq)
{
    int fd = open(log_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return VP_EIO;
    uint8_t v[8];
    vp_store_u64le(v, next_seq);
    /* 8 aligned bytes inside one page: a kill cannot tear them. */
    int rc = pwrite(fd, v, sizeof(v), 8) == (ssize_t)sizeof(v) ? VP_OK : VP_EIO;
    close(fd);
    return rc;
}

void vpa_store_run_acked(const char *log_path, const char *owned_profile)
{
    /* The relay has every batch of this run now, so the profile file the
     * client left to us is no longer needed. */
    if (owned_profile && unlink(owned_profile) != 0 && errno != ENOENT)
        vp_warn("cannot remove %s: %s", owned_profile, strerror(errno));
    if (unlink(log_path) != 0 && errno != ENOENT)
        vp_warn("cannot remove %s: %s", log_path, strerror(errno));
}

/* ---- recovery ------------------------------------------------------------ */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists names in dir ending in suffix, sorted. *names is a vp_malloc'd array
 * of vp_malloc'd strings (free with free_names). Returns the count or < 0. */
static int list_dir(const char *dir, const char *suffix, char ***names)
{
    DIR *d = opendir(dir);
    if (!d)
        return VP_EIO;
    size_t n = 0, cap = 0, sl = strlen(suffix);
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= sl || strcmp(e->d_name + len - sl, suffix) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = vp_realloc(v, cap * sizeof(*v));
            if (!nv)
                break;
            v = nv;
        }
        if (!(v[n] = vp_strndup(e->d_name, len)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), by_name);
    *names = v;
    return (int)n;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        vp_free(names[i]);
    vp_free(names);
}

/* The owned profile a run's state names, or NULL (borrowed from state). */
static const char *owned_profile(json_t *state)
{
    if (!json_is_true(json_object_get(state, "owned")))
        return NULL;
    return json_string_value(json_object_get(state, "path"));
}

/* Reads one run log: queues its unacknowledged batches and returns its last
 * state (a new reference) in *last, NULL if it holds no complete entry. A
 * torn last entry (the agent died while appending it) is cut off. */
static int recover_log(const char *path, vpa_sender *sender, json_t **last, uint64_t *queued)
{
    *last = NULL;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return VP_EIO;
    int rc = VP_OK;
    uint8_t *buf = NULL;
    struct stat sb;
    uint8_t head[VP_AGENT_LOG_HEADER];
    if (fstat(fd, &sb) != 0) {
        rc = VP_EIO;
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size, good_end = 0, acked = 0;
    if (size < VP_AGENT_LOG_HEADER || pread_all(fd, head, sizeof(head), 0) != VP_OK ||
        memcmp(head, LOG_MAGIC, 4) != 0 || vp_load_u16le(head + 4) != LOG_VERSION) {
        rc = VP_ECORRUPT;
        goto fail;
    }
    acked = vp_load_u64le(head + 8);
    good_end = VP_AGENT_LOG_HEADER;
    buf = vp_malloc(VP_AGENT_LOG_ENTRY_HEADER + VP_MAX_HTTP_BATCH_BODY + VP_MAX_AGENT_STATE + 1);
    if (!buf) {
        rc = VP_ENOMEM;
        goto fail;
    }
    for (uint64_t off = VP_AGENT_LOG_HEADER; off + VP_AGENT_LOG_ENTRY_HEADER <= size;) {
        uint8_t *e = buf;
        if (pread_all(fd, e, VP_AGENT_LOG_ENTRY_HEADER, off) != VP_OK || memcmp(e, ENTRY_MAGIC, 4) != 0)
            break;
        uint32_t blen = vp_load_u32le(e + 4), slen = vp_load_u32le(e + 8), crc = vp_load_u32le(e + 12);
        uint64_t body = off + VP_AGENT_LOG_ENTRY_HEADER;
        if (blen < VP_BATCH_HEADER_LEN || blen > VP_MAX_HTTP_BATCH_BODY || slen > VP_MAX_AGENT_STATE ||
            body + blen + slen > size)
            break;
        uint8_t *batch = e + VP_AGENT_LOG_ENTRY_HEADER;
        char *state = (char *)batch + blen;
        if (pread_all(fd, batch, (size_t)blen + slen, body) != VP_OK ||
            entry_crc(batch, blen, state, slen) != crc)
            break;
        json_t *st = json_loadb(state, slen, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(st)) {
            json_decref(st);
            break;
        }
        json_decref(*last);
        *last = st;
        uint64_t seq = vp_load_u64le(batch + 24);
        if (seq >= acked) {
            char *copy = vp_strndup(path, strlen(path));
            const char *owned = batch[6] == VP_BATCH_CLOSE ? owned_profile(st) : NULL;
            if (copy && vpa_sender_put(sender, copy, body, blen, seq, batch[6] == VP_BATCH_CLOSE, owned) == VP_OK)
                (*queued)++;
            else
                vp_free(copy);
        }
        off = good_end = body + blen + slen;
    }
    if (good_end < size) {
        vp_warn("%s: %llu bytes after offset %llu are a torn entry; cutting them off", path,
                (unsigned long long)(size - good_end), (unsigned long long)good_end);
        if (ftruncate(fd, (off_t)good_end) != 0)
            vp_warn("cannot cut %s: %s", path, strerror(errno));
    }
    /* Everything was acknowledged, the CLOSE included: the agent died
     * between the last acknowledgement and removing the log. */
    if (*last && json_is_true(json_object_get(*last, "close_queued")) &&
        (uint64_t)json_integer_value(json_object_get(*last, "next_seq")) <= acked) {
        vpa_store_run_acked(path, owned_profile(*last));
        json_decref(*last);
        *last = NULL;
    }
fail:
    vp_free(buf);
    close(fd);
    return rc;
}

int vpa_store_recover(const vpa_store *st, vpa_sender *sender, void (*fn)(void *ctx, json_t *state),
                      void *ctx, uint64_t *queued)
{
    char **names = NULL;
    int n = list_dir(st->runs_dir, ".log", &names);
    if (n < 0)
        return n;
    *queued = 0;
    for (int i = 0; i < n; i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof(path), "%s/%s", st->runs_dir, names[i]);
        json_t *last = NULL;
        int rc = recover_log(path, sender, &last, queued);
        if (rc == VP_ECORRUPT) {
            vp_error("run log %s has no valid header; leaving it", path);
        } else if (rc != VP_OK) {
            vp_error("cannot read run log %s: %s", path, vp_strerror(rc));
        } else if (!last) {
            struct stat sb;
            /* Only a header, or a torn first entry: the run never got an
             * OPEN batch to disk, so its client was never told "ok". */
            if (stat(path, &sb) == 0 && (uint64_t)sb.st_size <= VP_AGENT_LOG_HEADER)
                unlink(path);
        } else {
            if (!json_is_true(json_object_get(last, "close_queued")))
                fn(ctx, last);
            json_decref(last);
        }
    }
    free_names(names, n);
    return VP_OK;
}
