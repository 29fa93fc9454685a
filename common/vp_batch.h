/*
 * vp_batch.h - the batch and acknowledgement codec of proto/PROTOCOL.md §B.
 *
 * A batch is a 48-byte header, the shared token, and a payload (LZ4 frame
 * with block checksums, or the content checksum from older agents). Decoding checks every length against the message
 * size and vp_limits.h before anything is read behind it.
 */
#ifndef VP_BATCH_H
#define VP_BATCH_H

#include <stddef.h>
#include <stdint.h>

#define VP_BATCH_VERSION 1u
#define VP_BATCH_HEADER_LEN 48u
#define VP_ACK_HEADER_LEN 40u
#define VP_RUN_ID_LEN 16u

enum { VP_BATCH_OPEN = 1, VP_BATCH_DATA = 2, VP_BATCH_CLOSE = 3, VP_BATCH_GAP = 4 };
enum { VP_BATCH_FLAG_LZ4 = 0x01 };

enum {
    VP_ACK_STORED = 0,
    VP_ACK_DUPLICATE = 1,
    VP_ACK_BUSY = 2,
    VP_ACK_MALFORMED = 3,
    VP_ACK_UNAUTHORIZED = 4,
};

/* A decoded batch; token and payload point into the message it came from. */
typedef struct vp_batch_view {
    uint8_t kind;
    uint8_t flags;
    uint8_t run_id[VP_RUN_ID_LEN];
    uint64_t seq;
    uint32_t raw_len;
    uint32_t payload_len;
    uint32_t samples;
    const uint8_t *token;
    uint16_t token_len;
    const uint8_t *payload;
} vp_batch_view;

typedef struct vp_ack {
    uint8_t status;
    uint8_t run_id[VP_RUN_ID_LEN];
    uint64_t seq;
    char reason[513]; /* NUL-terminated, at most VP_MAX_REASON_LEN bytes */
} vp_ack;

/* vp_batch_encode builds one batch message, compressing `raw`.
 * On success *out is a new vp_malloc'd buffer the caller owns (free with
 * vp_free) and *out_len its size. Fails with VP_ETOOBIG (raw_len or token too
 * long), VP_EINVAL (bad kind) or VP_ENOMEM; then *out is untouched. */
int vp_batch_encode(uint8_t kind, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq,
                    uint32_t samples, const char *token, const uint8_t *raw, size_t raw_len,
                    uint8_t **out, size_t *out_len);

/* vp_batch_decode checks a message and fills *v with views into msg (which
 * must outlive *v). Does not decompress. On failure returns VP_ECORRUPT,
 * VP_ETOOBIG or VP_EVERSION and writes a one-line reason to err. */
int vp_batch_decode(const uint8_t *msg, size_t len, vp_batch_view *v, char *err, size_t errlen);

/* vp_batch_payload decompresses a decoded batch's payload.
 * On success *raw is a new vp_malloc'd buffer of v->raw_len bytes (plus one
 * NUL byte after it, for JSON payloads) owned by the caller. On failure
 * returns VP_ECORRUPT or VP_ENOMEM with a reason in err. */
int vp_batch_payload(const vp_batch_view *v, uint8_t **raw, char *err, size_t errlen);

/* vp_batch_retoken builds a copy of a decoded batch carrying another token
 * (NULL or "" for none), e.g. to store it without the agent's token or to
 * forward it with the server's. On success *out is a new vp_malloc'd buffer
 * owned by the caller. VP_ETOOBIG if the token is too long, VP_ENOMEM. */
int vp_batch_retoken(const vp_batch_view *v, const char *token, uint8_t **out, size_t *out_len);

/* vp_batch_token_ok compares the batch's token with the expected one in
 * constant time; an empty expected token accepts any batch. */
int vp_batch_token_ok(const vp_batch_view *v, const char *expected);

/* vp_ack_encode writes an acknowledgement into out (cap bytes; the reason is
 * cut to fit VP_MAX_REASON_LEN). Returns the length, or VP_ETOOBIG if cap is
 * smaller than VP_ACK_HEADER_LEN + the reason. */
int vp_ack_encode(uint8_t status, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq,
                  const char *reason, uint8_t *out, size_t cap);

/* vp_ack_decode parses an acknowledgement into *a. VP_ECORRUPT if malformed. */
int vp_ack_decode(const uint8_t *msg, size_t len, vp_ack *a);

/* Run ids as text: 32 lowercase hex digits plus NUL. parse returns 0 or
 * VP_EINVAL. */
void vp_run_id_hex(const uint8_t id[VP_RUN_ID_LEN], char out[33]);
int vp_run_id_parse(const char *hex, size_t len, uint8_t id[VP_RUN_ID_LEN]);

/* Little-endian stores, the counterparts of vp_load_*le in vp_vmprof.h;
 * inline for the same reason (the server's sample blocks store five words
 * per sample). */
static inline void vp_store_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void vp_store_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void vp_store_u16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

#endif
