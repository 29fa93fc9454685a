/* test_batch.c - the batch and acknowledgement codec. */
#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>

#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_mem.h"
#include "vp_test.h"

static const uint8_t run_id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static uint8_t *make_raw(size_t n)
{
    uint8_t *raw = malloc(n);
    for (size_t i = 0; i < n; i++)
        raw[i] = (uint8_t)(i * 7 + (i >> 8)); /* compressible but not trivial */
    return raw;
}

/* A DATA batch of raw[0..n) as our encoder makes it; the caller vp_frees it. */
static uint8_t *encode_data(const uint8_t *raw, size_t n, uint64_t seq, uint32_t samples,
                            const char *token, size_t *len)
{
    uint8_t *msg = NULL;
    CHECK_EQ(vp_batch_encode(VP_BATCH_DATA, run_id, seq, samples, token, raw, n, &msg, len), VP_OK);
    return msg;
}

/* 1 if msg decodes to exactly raw[0..n), 0 if it is refused, -1 if it
 * decodes to other bytes: the one outcome a checksum must prevent. */
static int decode_outcome(const uint8_t *msg, size_t len, const uint8_t *raw, size_t n)
{
    vp_batch_view v;
    char err[128];
    uint8_t *out = NULL;
    if (vp_batch_decode(msg, len, &v, err, sizeof(err)) != VP_OK ||
        vp_batch_payload(&v, &out, err, sizeof(err)) != VP_OK)
        return 0;
    int same = v.raw_len == n && memcmp(out, raw, n) == 0;
    vp_free(out);
    return same ? 1 : -1;
}

static void test_roundtrip(void)
{
    size_t n = 100000;
    uint8_t *raw = make_raw(n);
    size_t len = 0;
    uint8_t *msg = encode_data(raw, n, 42, 17, "secret", &len);
    vp_batch_view v;
    char err[128];
    CHECK_EQ(vp_batch_decode(msg, len, &v, err, sizeof(err)), VP_OK);
    CHECK_EQ(v.kind, VP_BATCH_DATA);
    CHECK_EQ(v.seq, 42);
    CHECK_EQ(v.samples, 17);
    CHECK_EQ(v.raw_len, n);
    CHECK(memcmp(v.run_id, run_id, 16) == 0);
    CHECK(vp_batch_token_ok(&v, "secret"));
    CHECK(!vp_batch_token_ok(&v, "secreT"));
    CHECK(!vp_batch_token_ok(&v, "secret2"));
    CHECK(vp_batch_token_ok(&v, ""));
    CHECK_EQ(decode_outcome(msg, len, raw, n), 1);
    vp_free(msg);
    free(raw);
}

static void test_empty_payload(void)
{
    uint8_t *msg = NULL;
    size_t len = 0;
    CHECK_EQ(vp_batch_encode(VP_BATCH_CLOSE, run_id, 3, 0, NULL, (const uint8_t *)"", 0, &msg, &len), VP_OK);
    vp_batch_view v;
    char err[128];
    CHECK_EQ(vp_batch_decode(msg, len, &v, err, sizeof(err)), VP_OK);
    uint8_t *out = NULL;
    CHECK_EQ(vp_batch_payload(&v, &out, err, sizeof(err)), VP_OK);
    vp_free(out);
    vp_free(msg);
}

/* Flips each payload byte of msg in turn and counts the decodings that
 * returned other bytes than raw[0..n) as if they were good. */
static int undetected_flips(uint8_t *msg, size_t len, const uint8_t *raw, size_t n)
{
    int undetected = 0;
    for (size_t i = VP_BATCH_HEADER_LEN; i < len; i++) {
        msg[i] ^= 0x5a;
        undetected += decode_outcome(msg, len, raw, n) < 0;
        msg[i] ^= 0x5a;
    }
    return undetected;
}

/* Flip each byte of the payload in turn: decompression must refuse it (the
 * LZ4 frame checksum), never return wrong bytes as if they were good. */
static void test_corrupt_payload_detected(void)
{
    size_t n = 4096;
    uint8_t *raw = make_raw(n);
    size_t len = 0;
    uint8_t *msg = encode_data(raw, n, 1, 1, "", &len);
    CHECK_EQ(undetected_flips(msg, len, raw, n), 0);
    vp_free(msg);
    free(raw);
}

/* Agents before block checksums wrote the content checksum instead: such a
 * batch still decodes, and damage to it is still caught. The frame is made
 * by liblz4 itself, not by our encoder. */
static void test_content_checksum_frames_from_older_agents(void)
{
    size_t n = 4096;
    uint8_t *raw = make_raw(n);
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    size_t bound = LZ4F_compressFrameBound(n, &prefs);
    size_t len = 0;
    uint8_t *msg = encode_data(raw, n, 1, 1, "", &len);
    uint8_t *old = malloc(VP_BATCH_HEADER_LEN + bound);
    memcpy(old, msg, VP_BATCH_HEADER_LEN);
    size_t clen = LZ4F_compressFrame(old + VP_BATCH_HEADER_LEN, bound, raw, n, &prefs);
    CHECK(!LZ4F_isError(clen));
    vp_store_u32le(old + 36, (uint32_t)clen);
    size_t old_len = VP_BATCH_HEADER_LEN + clen;
    CHECK_EQ(decode_outcome(old, old_len, raw, n), 1);
    CHECK_EQ(undetected_flips(old, old_len, raw, n), 0);
    free(old);
    vp_free(msg);
    free(raw);
}

static void test_malformed_headers(void)
{
    uint8_t *raw = make_raw(1000);
    size_t len = 0;
    uint8_t *msg = encode_data(raw, 1000, 1, 1, "tok", &len);
    vp_batch_view v;
    char err[128];
    /* Every truncation is refused. */
    for (size_t cut = 0; cut < len; cut++)
        CHECK(vp_batch_decode(msg, cut, &v, err, sizeof(err)) != VP_OK);
    /* Claimed raw length over the limit. */
    uint8_t *bad = malloc(len);
    memcpy(bad, msg, len);
    vp_store_u32le(bad + 32, VP_MAX_BATCH_RAW + 1);
    CHECK_EQ(vp_batch_decode(bad, len, &v, err, sizeof(err)), VP_ETOOBIG);
    /* Token length pointing past the end. */
    memcpy(bad, msg, len);
    vp_store_u16le(bad + 44, 200);
    CHECK_EQ(vp_batch_decode(bad, len, &v, err, sizeof(err)), VP_ECORRUPT);
    CHECK(strstr(err, "length") != NULL);
    /* Wrong version and magic. */
    memcpy(bad, msg, len);
    bad[4] = 9;
    CHECK_EQ(vp_batch_decode(bad, len, &v, err, sizeof(err)), VP_EVERSION);
    memcpy(bad, msg, len);
    bad[0] = 'X';
    CHECK_EQ(vp_batch_decode(bad, len, &v, err, sizeof(err)), VP_ECORRUPT);
    /* Header raw_len smaller than the frame's content: refused on decompress. */
    memcpy(bad, msg, len);
    vp_store_u32le(bad + 32, 999);
    CHECK_EQ(vp_batch_decode(bad, len, &v, err, sizeof(err)), VP_OK);
    uint8_t *out = NULL;
    CHECK(vp_batch_payload(&v, &out, err, sizeof(err)) != VP_OK);
    CHECK(out == NULL);
    free(bad);
    vp_free(msg);
    free(raw);
}

static void test_ack_roundtrip(void)
{
    uint8_t buf[VP_ACK_HEADER_LEN + VP_MAX_REASON_LEN];
    int n = vp_ack_encode(VP_ACK_MALFORMED, run_id, 77, "batch length does not match", buf,
                          sizeof(buf));
    CHECK(n > 0);
    vp_ack a;
    CHECK_EQ(vp_ack_decode(buf, (size_t)n, &a), VP_OK);
    CHECK_EQ(a.status, VP_ACK_MALFORMED);
    CHECK_EQ(a.seq, 77);
    CHECK(strcmp(a.reason, "batch length does not match") == 0);
    CHECK(vp_ack_decode(buf, (size_t)n - 1, &a) != VP_OK);
    buf[6] = 99;
    CHECK(vp_ack_decode(buf, (size_t)n, &a) != VP_OK);
}

static void test_run_id_text(void)
{
    char hex[33];
    vp_run_id_hex(run_id, hex);
    CHECK(strcmp(hex, "0102030405060708090a0b0c0d0e0f10") == 0);
    uint8_t back[16];
    CHECK_EQ(vp_run_id_parse(hex, 32, back), VP_OK);
    CHECK(memcmp(back, run_id, 16) == 0);
    CHECK_EQ(vp_run_id_parse("0102030405060708090a0b0c0d0e0f1g", 32, back), VP_EINVAL);
    CHECK_EQ(vp_run_id_parse(hex, 31, back), VP_EINVAL);
}

int main(void)
{
    RUN(test_roundtrip);
    RUN(test_empty_payload);
    RUN(test_corrupt_payload_detected);
    RUN(test_content_checksum_frames_from_older_agents);
    RUN(test_malformed_headers);
    RUN(test_ack_roundtrip);
    RUN(test_run_id_text);
    TEST_MAIN_END();
}
