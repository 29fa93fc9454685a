/*
 * mpack.h - a bounded msgpack pull reader, for the seed's old client
 * protocol (POST /submit/).
 *
 * Why not msgpack-c: its C unpacker allocates a container's declared size
 * before reading any element (a 6-byte "array of 64M" asks for 2 GiB) and
 * has no limits API (only its C++ side does), and it builds a tree of
 * 24-byte objects per element through plain malloc. This reader allocates
 * nothing per item: it hands out one item header at a time, with string
 * bytes as a view into its buffer, and the caller checks every count
 * against vp_limits.h before using it.
 *
 * Two sources: a buffer in memory (the request body), or a stream through
 * a refill callback (an inflating gzip blob) read into a window of fixed
 * size, so a blob of any length is parsed in bounded memory.
 */
#ifndef VPS_MPACK_H
#define VPS_MPACK_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    VPS_MP_NIL,
    VPS_MP_BOOL,
    VPS_MP_INT,
    VPS_MP_FLOAT,
    VPS_MP_STR,
    VPS_MP_BIN,
    VPS_MP_ARRAY,
    VPS_MP_MAP,
    VPS_MP_EXT,
} vps_mp_type;

typedef struct vps_mp_item {
    vps_mp_type type;
    int neg;          /* VPS_MP_INT: the value is i (< 0), else u */
    uint64_t u;       /* VPS_MP_INT >= 0; VPS_MP_BOOL */
    int64_t i;        /* VPS_MP_INT < 0 */
    double f;         /* VPS_MP_FLOAT */
    const uint8_t *p; /* STR, BIN, EXT: the bytes, valid until the next call */
    uint32_t n;       /* STR, BIN, EXT: length; ARRAY: elements; MAP: pairs */
} vps_mp_item;

/* A refill callback fills buf (cap bytes) and sets *got; *got == 0 means
 * the stream has ended. A negative return is an error passed through. */
typedef int (*vps_mp_refill)(void *ctx, uint8_t *buf, size_t cap, size_t *got);

typedef struct vps_mp {
    const uint8_t *buf;
    size_t len, pos;
    uint8_t *win; /* stream mode: the owned window */
    size_t cap;
    vps_mp_refill refill;
    void *ctx;
    int eof;
    const char *err; /* why the last call failed (static text) */
} vps_mp;

/* vps_mp_init_buf reads the msgpack in buf[0..len), which must outlive r. */
void vps_mp_init_buf(vps_mp *r, const uint8_t *buf, size_t len);

/* vps_mp_init_stream reads through refill with a window of cap bytes (the
 * longest STR/BIN/EXT it can return). VP_ENOMEM if the window cannot be
 * had. vps_mp_fini releases it. */
int vps_mp_init_stream(vps_mp *r, size_t cap, vps_mp_refill refill, void *ctx);
void vps_mp_fini(vps_mp *r);

/* vps_mp_next reads one item header (and a string's bytes). VP_ECORRUPT
 * for malformed or truncated input, VP_ETOOBIG for a string longer than
 * the window, or the refill's error; err says why. */
int vps_mp_next(vps_mp *r, vps_mp_item *it);

/* vps_mp_skip skips the elements of the container it (just read), nesting
 * at most depth levels deep; a scalar has nothing to skip. */
int vps_mp_skip(vps_mp *r, const vps_mp_item *it, unsigned depth);

/* vps_mp_at_end says whether the input is exhausted. */
int vps_mp_at_end(vps_mp *r);

#endif
