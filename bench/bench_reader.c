/*
 * bench_reader.c - throughput of vmpv-agent's per-byte path on one core.
 *
 * Loads a vmprof file into memory and runs exactly what a vmpv-agent session
 * does with the bytes of a profile (agent/session.c: start_read, on_read,
 * consume, emit_data), minus the disk and the network:
 *   - "read" the file in READ_CHUNK pieces appended to the unconsumed rest
 *     (a memcpy from the in-memory file stands for the read(2) copy);
 *   - vp_vmprof_feed on what is buffered (at most what fills the batch up to
 *     VP_BATCH_TARGET_RAW; a single larger record alone),
 *     counting samples with an on_sample callback, and memcpy of the consumed
 *     records into the batch accumulator (grown by doubling from 64 KiB, as
 *     the agent's ensure_acc does);
 *   - once the next record would not fit under VP_BATCH_TARGET_RAW (or the
 *     batch holds VP_BATCH_TARGET_SAMPLES samples), vp_batch_encode (LZ4 frame with content checksum)
 *     of the DATA batch, then free it; at the end, the last partial batch.
 * Prints, per repetition and as the median: samples/s, MB/s (raw profile
 * bytes), batches, mean raw batch size, compression ratio, and the split of
 * the time between the reader (feed + copies) and the encoder.
 *
 * Usage: bench_reader FILE [--repeat N] [--token T]
 * Make FILE with `python bench/replicate_profile.py` (see bench/README.md).
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

/* As agent/session.c (commit 61c580f: buffers grow on demand, 64 KiB reads,
 * glibc's mmap threshold fixed at 64 KiB in agent/main.c). */
#define READ_CHUNK (64u * 1024u)
#define ACC_START (64u * 1024u)

typedef struct result {
    double wall_s, cpu_s, feed_s, encode_s;
    uint64_t samples, bytes, batches, compressed, max_batch;
} result;

static double now(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int count_sample(void *ctx, const vp_vmprof_sample *s)
{
    (void)s;
    (*(uint64_t *)ctx)++;
    return 0;
}

static int load(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_reader: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1u << 20, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        fprintf(stderr, "bench_reader: cannot read %s\n", path);
        free(buf);
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

static int encode(const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq, uint32_t samples,
                  const char *token, const uint8_t *acc, size_t acc_len, result *res)
{
    double t0 = now(CLOCK_THREAD_CPUTIME_ID);
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int rc = vp_batch_encode(VP_BATCH_DATA, run_id, seq, samples, token, acc, acc_len, &msg, &msg_len);
    if (rc != VP_OK) {
        fprintf(stderr, "bench_reader: vp_batch_encode: %s\n", vp_strerror(rc));
        return -1;
    }
    res->compressed += msg_len - VP_BATCH_HEADER_LEN - strlen(token);
    res->batches++;
    if (acc_len > res->max_batch)
        res->max_batch = acc_len;
    vp_free(msg);
    res->encode_s += now(CLOCK_THREAD_CPUTIME_ID) - t0;
    return 0;
}

/* agent/session.c ensure_acc */
static int ensure_acc(uint8_t **acc, size_t *acc_cap, size_t need)
{
    if (need <= *acc_cap)
        return 0;
    size_t cap = *acc_cap ? *acc_cap : ACC_START;
    while (cap < need)
        cap *= 2;
    if (cap > VP_BATCH_TARGET_RAW)
        cap = need > VP_BATCH_TARGET_RAW ? need : VP_BATCH_TARGET_RAW;
    uint8_t *n = vp_realloc(*acc, cap);
    if (!n)
        return -1;
    *acc = n;
    *acc_cap = cap;
    return 0;
}

/* One pass over the file, the way a session reads it. */
static int run_once(const uint8_t *file, size_t file_len, const char *token, result *res)
{
    memset(res, 0, sizeof(*res));
    uint8_t run_id[VP_RUN_ID_LEN];
    for (unsigned i = 0; i < VP_RUN_ID_LEN; i++)
        run_id[i] = (uint8_t)(i * 37 + 1);
    uint8_t *acc = NULL;
    uint8_t *buf = NULL;
    size_t buf_len = 0, buf_cap = 0, acc_len = 0, acc_cap = 0, file_off = 0;
    uint64_t acc_samples = 0, seq = 1;
    vp_vmprof_reader reader;
    vp_vmprof_reader_init(&reader);
    vp_vmprof_handler h = {.ctx = &acc_samples, .on_sample = count_sample};
    int stopped = 0, rc = 0;
    double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
    while (!stopped) {
        /* start_read + on_read */
        if (buf_cap - buf_len < READ_CHUNK) {
            size_t cap = buf_len + READ_CHUNK;
            uint8_t *nb = vp_realloc(buf, cap);
            if (!nb) {
                rc = -1;
                break;
            }
            buf = nb;
            buf_cap = cap;
        }
        size_t n = file_len - file_off < READ_CHUNK ? file_len - file_off : READ_CHUNK;
        if (n == 0)
            break; /* EOF: the rest of buf, if any, is a cut record */
        memcpy(buf + buf_len, file + file_off, n);
        buf_len += n;
        file_off += n;

        /* consume */
        size_t off = 0;
        int big_record = 0;
        while (off < buf_len && !stopped) {
            size_t avail = buf_len - off;
            size_t fill = big_record ? VP_MAX_BATCH_RAW - acc_len : VP_BATCH_TARGET_RAW - acc_len;
            int capped = avail > fill;
            if (capped)
                avail = fill;
            size_t used = 0;
            uint64_t before = acc_samples;
            int frc = vp_vmprof_feed(&reader, buf + off, avail, &used, &h);
            if (frc == VP_OK && capped && used == 0 && acc_len == 0 && !big_record) {
                big_record = 1;
                continue;
            }
            big_record = 0;
            if (used) {
                if (ensure_acc(&acc, &acc_cap, acc_len + used) != 0) {
                    fprintf(stderr, "bench_reader: out of memory\n");
                    rc = -1;
                    break;
                }
                memcpy(acc + acc_len, buf + off, used);
                acc_len += used;
                off += used;
                res->samples += acc_samples - before;
            }
            if (frc == VP_EDONE) {
                stopped = 1;
            } else if (frc != VP_OK) {
                fprintf(stderr, "bench_reader: the file is damaged: %s\n", reader.error);
                rc = -1;
                stopped = 1;
            }
            if ((capped && acc_len) || acc_len >= VP_BATCH_TARGET_RAW ||
                acc_samples >= VP_BATCH_TARGET_SAMPLES || VP_MAX_BATCH_RAW - acc_len < VP_MAX_RECORD_BYTES) {
                if (encode(run_id, seq++, (uint32_t)acc_samples, token, acc, acc_len, res) != 0) {
                    rc = -1;
                    stopped = 1;
                }
                acc_len = 0;
                acc_samples = 0;
            }
            if (used == 0)
                break;
        }
        if (off) {
            memmove(buf, buf + off, buf_len - off);
            buf_len -= off;
        }
    }
    if (rc == 0 && acc_len)
        rc = encode(run_id, seq++, (uint32_t)acc_samples, token, acc, acc_len, res);
    res->wall_s = now(CLOCK_MONOTONIC) - w0;
    res->cpu_s = now(CLOCK_THREAD_CPUTIME_ID) - c0;
    res->feed_s = res->cpu_s - res->encode_s;
    res->bytes = reader.offset;
    vp_free(buf);
    vp_free(acc);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_reader FILE [--repeat N] [--token T]\n"
            "Runs vmpv-agent's per-byte path (vp_vmprof_feed, batch cut at %u raw bytes,\n"
            "vp_batch_encode with LZ4) over FILE held in memory, N times (default 5),\n"
            "on one thread, and prints samples/s, MB/s and the compression ratio.\n",
            VP_BATCH_TARGET_RAW);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *token = "";
    int repeat = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
            token = argv[++i];
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!path || repeat < 1 || repeat > 1000) {
        usage(stderr);
        return 2;
    }
    mallopt(M_MMAP_THRESHOLD, 64 * 1024); /* as agent/main.c */
    uint8_t *file = NULL;
    size_t file_len = 0;
    if (load(path, &file, &file_len) != 0)
        return 1;

    double *sps = calloc((size_t)repeat, sizeof(double));
    double *mbs = calloc((size_t)repeat, sizeof(double));
    double *sps_wall = calloc((size_t)repeat, sizeof(double));
    double *feed_share = calloc((size_t)repeat, sizeof(double));
    if (!sps || !mbs || !sps_wall || !feed_share)
        return 1;
    result r = {0};
    printf("file %s: %zu bytes\n", path, file_len);
    printf("%-4s %12s %12s %10s %10s %9s %8s %10s %7s %7s\n", "rep", "samples", "samples/s", "MB/s",
           "wall s/s", "cpu s", "batches", "raw/batch", "ratio", "feed%");
    for (int i = 0; i < repeat; i++) {
        if (run_once(file, file_len, token, &r) != 0)
            return 1;
        sps[i] = (double)r.samples / r.cpu_s;
        sps_wall[i] = (double)r.samples / r.wall_s;
        mbs[i] = (double)r.bytes / r.cpu_s / 1e6;
        feed_share[i] = 100.0 * r.feed_s / r.cpu_s;
        printf("%-4d %12llu %12.0f %10.1f %10.0f %9.3f %8llu %10.0f %7.2f %7.1f\n", i + 1,
               (unsigned long long)r.samples, sps[i], mbs[i], sps_wall[i], r.cpu_s,
               (unsigned long long)r.batches, (double)r.bytes / (double)r.batches,
               (double)r.bytes / (double)r.compressed, feed_share[i]);
        fflush(stdout);
    }
    printf("\nmedian of %d (CPU time of this one thread; samples/s by wall clock in the 4th column)\n", repeat);
    printf("samples/s     %12.0f\n", median(sps, repeat));
    printf("samples/s wall%12.0f\n", median(sps_wall, repeat));
    printf("MB/s          %12.1f\n", median(mbs, repeat));
    printf("bytes/sample  %12.1f\n", (double)r.bytes / (double)r.samples);
    printf("compression   %12.2f  (raw / LZ4 payload)\n", (double)r.bytes / (double)r.compressed);
    printf("mean batch    %12.0f  raw bytes (target %u, largest %llu)\n",
           (double)r.bytes / (double)r.batches, VP_BATCH_TARGET_RAW, (unsigned long long)r.max_batch);
    printf("reader share  %12.1f  %% of the time (the rest is vp_batch_encode)\n", median(feed_share, repeat));
    free(sps);
    free(mbs);
    free(sps_wall);
    free(feed_share);
    free(file);
    return 0;
}
