/*
 * lz4_checksum.c - vmpv-lz4-checksum: what a batch's LZ4 checksum costs the
 * one who decodes it (the relay, then the server), side by side in one
 * run. A piece of a real profile (the size of one batch) is compressed as a
 * frame with the content checksum (agents before 2026-11-27: an XXH32 of the
 * decoded bytes), with block checksums (an XXH32 of each compressed block:
 * what agents write now) and with none, then each is decoded the way
 * vp_batch_payload does, interleaved, and the medians are printed.
 *
 *   vmpv-lz4-checksum FILE [BYTES [ROUNDS]]
 */
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CONTENT, BLOCKS, NONE, KINDS };
static const char *const kind_name[KINDS] = {"content checksum", "block checksums", "no checksum"};

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Decodes one frame into out (raw_len bytes); returns 0 when it is whole. */
static int decode(const unsigned char *frame, size_t len, unsigned char *out, size_t raw_len)
{
    LZ4F_dctx *d = NULL;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
        return -1;
    size_t in = 0, pos = 0, hint = 1;
    while (hint != 0 && in < len) {
        size_t in_sz = len - in, out_sz = raw_len - pos;
        hint = LZ4F_decompress(d, out + pos, &out_sz, frame + in, &in_sz, NULL);
        if (LZ4F_isError(hint))
            break;
        in += in_sz;
        pos += out_sz;
    }
    LZ4F_freeDecompressionContext(d);
    return hint == 0 && pos == raw_len ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: vmpv-lz4-checksum FILE [BYTES [ROUNDS]]\n");
        return 2;
    }
    size_t want = argc > 2 ? (size_t)atol(argv[2]) : 230000;
    int rounds = argc > 3 ? atoi(argv[3]) : 2000;
    if (want == 0 || want > (64u << 20) || rounds <= 0 || rounds > 1000000) {
        fprintf(stderr, "vmpv-lz4-checksum: BYTES in 1..64 MiB, ROUNDS in 1..1000000\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    unsigned char *raw = malloc(want), *out = malloc(want);
    size_t n = f && raw ? fread(raw, 1, want, f) : 0;
    if (f)
        fclose(f);
    if (n == 0 || !out) {
        fprintf(stderr, "vmpv-lz4-checksum: cannot read %s\n", argv[1]);
        return 1;
    }
    unsigned char *frame[KINDS];
    size_t frame_len[KINDS];
    for (int k = 0; k < KINDS; k++) {
        LZ4F_preferences_t p;
        memset(&p, 0, sizeof(p));
        p.frameInfo.contentChecksumFlag = k == CONTENT ? LZ4F_contentChecksumEnabled : LZ4F_noContentChecksum;
        p.frameInfo.blockChecksumFlag = k == BLOCKS ? LZ4F_blockChecksumEnabled : LZ4F_noBlockChecksum;
        p.frameInfo.contentSize = n;
        size_t bound = LZ4F_compressFrameBound(n, &p);
        frame[k] = malloc(bound);
        frame_len[k] = frame[k] ? LZ4F_compressFrame(frame[k], bound, raw, n, &p) : 0;
        if (!frame[k] || LZ4F_isError(frame_len[k]) || decode(frame[k], frame_len[k], out, n) != 0 ||
            memcmp(out, raw, n) != 0) {
            fprintf(stderr, "vmpv-lz4-checksum: round trip failed\n");
            return 1;
        }
    }
    double *took[KINDS];
    for (int k = 0; k < KINDS; k++) {
        took[k] = malloc((size_t)rounds * sizeof(double));
        if (!took[k])
            return 1;
    }
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < KINDS; k++) {
            double t0 = now_us();
            if (decode(frame[k], frame_len[k], out, n) != 0)
                return 1;
            took[k][r] = now_us() - t0;
        }
    }
    printf("%zu raw bytes, %d decodes of each, interleaved\n", n, rounds);
    for (int k = 0; k < KINDS; k++) {
        qsort(took[k], (size_t)rounds, sizeof(double), cmp_double);
        printf("%-17s %7zu bytes  decode median %7.1f us  p90 %7.1f us\n", kind_name[k],
               frame_len[k], took[k][rounds / 2], took[k][rounds * 9 / 10]);
        free(took[k]);
        free(frame[k]);
    }
    free(raw);
    free(out);
    return 0;
}
