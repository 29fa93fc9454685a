/*
 * store.c - the agent's state on disk, so that a SIGKILL loses nothing:
 *   DATA/queue/<run>-<seq>.vpb   encoded batches the relay has not acknowledged
 *   DATA/runs/<run>.json         per run: how far the profile file has been
 *                                batched (offset, next seq, samples), the
 *                                reader's header state and the OPEN metadata
 * Files are written to a temporary name and renamed, so a reader never sees
 * half a file. A batch file is written before the run state that counts it;
 * recovery detects a batch written after the last state (see session.c).
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

#include "agent_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

#define PATH_CAP 8192

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return VP_EIO;
    }
    return VP_OK;
}

int vpa_store_init(vpa_store *st, const char *data_dir, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    if (strlen(data_dir) > 3900) {
        snprintf(err, errlen, "--data path too long");
        return VP_EINVAL;
    }
    snprintf(st->dir, sizeof(st->dir), "%s", data_dir);
    snprintf(st->queue_dir, sizeof(st->queue_dir), "%s/queue", data_dir);
    snprintf(st->runs_dir, sizeof(st->runs_dir), "%s/runs", data_dir);
    if (make_dir(st->dir, err, errlen) || make_dir(st->queue_dir, err, errlen) ||
        make_dir(st->runs_dir, err, errlen))
        return VP_EIO;
    return VP_OK;
}

/* Write all of buf to path via path.tmp and rename. */
static int write_atomic(const char *path, const void *buf, size_t len)
{
    char tmp[PATH_CAP + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return VP_EIO;
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            unlink(tmp);
            return VP_EIO;
        }
        done += (size_t)n;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return VP_EIO;
    }
    return VP_OK;
}

void vpa_store_batch_path(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq,
                          char *out, size_t cap)
{
    char id[33];
    vp_run_id_hex(run_id, id);
    /* Zero-padded, so name order is seq order within a run. */
    snprintf(out, cap, "%s/%s-%020llu.vpb", st->queue_dir, id, (unsigned long long)seq);
}

static void state_path(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], char *out, size_t cap)
{
    char id[33];
    vp_run_id_hex(run_id, id);
    snprintf(out, cap, "%s/%s.json", st->runs_dir, id);
}

int vpa_store_write_batch(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq,
                          const uint8_t *msg, size_t len)
{
    char path[PATH_CAP];
    vpa_store_batch_path(st, run_id, seq, path, sizeof(path));
    return write_atomic(path, msg, len);
}

int vpa_store_write_state(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], const char *json)
{
    char path[PATH_CAP];
    state_path(st, run_id, path, sizeof(path));
    return write_atomic(path, json, strlen(json));
}

void vpa_store_run_acked(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN])
{
    char path[PATH_CAP];
    state_path(st, run_id, path, sizeof(path));
    json_t *state = json_load_file(path, 0, NULL);
    /* The relay has every batch of this run now, so the profile file the
     * client left to us is no longer needed. */
    if (json_is_true(json_object_get(state, "owned"))) {
        const char *profile = json_string_value(json_object_get(state, "path"));
        if (profile && unlink(profile) != 0 && errno != ENOENT)
            vp_warn("cannot remove %s: %s", profile, strerror(errno));
    }
    json_decref(state);
    if (unlink(path) != 0 && errno != ENOENT)
        vp_warn("cannot remove %s: %s", path, strerror(errno));
}

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

int vpa_store_recover_queue(const vpa_store *st, vpa_sender *s, uint64_t *count)
{
    char **names = NULL;
    int n = list_dir(st->queue_dir, ".vpb", &names);
    if (n < 0)
        return n;
    *count = 0;
    for (int i = 0; i < n; i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof(path), "%s/%s", st->queue_dir, names[i]);
        struct stat sb;
        char *copy = stat(path, &sb) == 0 ? vp_strndup(path, strlen(path)) : NULL;
        if (copy && vpa_sender_put(s, copy, (size_t)sb.st_size) == VP_OK)
            (*count)++;
        else
            vp_free(copy);
    }
    free_names(names, n);
    return VP_OK;
}

int vpa_store_each_run(const vpa_store *st, void (*fn)(void *ctx, json_t *state), void *ctx)
{
    char **names = NULL;
    int n = list_dir(st->runs_dir, ".json", &names);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof(path), "%s/%s", st->runs_dir, names[i]);
        json_error_t jerr;
        json_t *state = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(state)) {
            vp_error("run state %s is unreadable (%s); leaving it", path, jerr.text);
        } else {
            fn(ctx, state);
        }
        json_decref(state);
    }
    free_names(names, n);
    return VP_OK;
}

/* Reads the header of a queued batch of a run with a seq at or after
 * next_seq: the one batch that may have been written after the last state. */
int vpa_store_orphan(const vpa_store *st, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t next_seq,
                     vp_batch_view *header)
{
    char path[PATH_CAP];
    vpa_store_batch_path(st, run_id, next_seq, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return VP_ENOTFOUND;
    uint8_t head[VP_BATCH_HEADER_LEN];
    ssize_t n = read(fd, head, sizeof(head));
    struct stat sb;
    int ok = n == (ssize_t)sizeof(head) && fstat(fd, &sb) == 0;
    close(fd);
    if (!ok)
        return VP_ECORRUPT;
    /* Decode the header alone: pretend the body is there (it is, on disk). */
    vp_batch_view v;
    memset(&v, 0, sizeof(v));
    v.kind = head[6];
    memcpy(v.run_id, head + 8, VP_RUN_ID_LEN);
    v.seq = vp_load_u64le(head + 24);
    v.raw_len = vp_load_u32le(head + 32);
    v.samples = vp_load_u32le(head + 40);
    if (memcmp(head, "VPVB", 4) != 0 || v.seq != next_seq)
        return VP_ECORRUPT;
    *header = v;
    return VP_OK;
}
