/*
 * vp_vmprof.h - a streaming, bounds-checked reader of vmprof profile files.
 *
 * The reader is a push parser with no buffer of its own: the caller hands it
 * bytes, it consumes every complete record at the front and reports how many
 * bytes that was. The caller keeps the rest and offers it again with more
 * bytes appended. This makes a file that is still being written, a record
 * split across reads, and a file cut in the middle all the same case.
 *
 * Accepted: 64-bit little-endian files, HEADER versions 0..7 (7 is vmprof
 * >= 0.5, which adds a per-sample time). The format is described in
 * proto/PROTOCOL.md and ../shared/notes/vmprof-format.md.
 */
#ifndef VP_VMPROF_H
#define VP_VMPROF_H

#include <stddef.h>
#include <stdint.h>

#define VP_VMPROF_STATIC_HEADER 40u

enum {
    VP_VMPROF_MODE_MEMORY = 0x01,
    VP_VMPROF_MODE_LINES = 0x02,
    VP_VMPROF_MODE_NATIVE = 0x04,
    VP_VMPROF_MODE_RPYTHON = 0x08,
    VP_VMPROF_MODE_REALTIME = 0x10,
};

enum {
    VP_VMPROF_STACKTRACE = 0x01,
    VP_VMPROF_VIRTUAL_IP = 0x02,
    VP_VMPROF_TRAILER = 0x03,
    VP_VMPROF_HEADER = 0x05,
    VP_VMPROF_TIME_N_ZONE = 0x06,
    VP_VMPROF_META = 0x07,
    VP_VMPROF_NATIVE_SYMBOLS = 0x08,
};

typedef struct vp_vmprof_reader vp_vmprof_reader;

/* One sample. `entries` points into the caller's buffer and is valid only
 * during the callback: `depth` little-endian 64-bit words, leaf first. In
 * line mode they alternate line number, code address. */
typedef struct vp_vmprof_sample {
    const uint8_t *entries;
    uint32_t depth;
    uint64_t thread_id;
    uint64_t rss_kb;  /* 0 when memory was off */
    int64_t time_ns;  /* sample clock (version >= 7), else -1 */
    uint64_t index;   /* 0-based ordinal of this sample in the profile */
} vp_vmprof_sample;

/* Callbacks; any may be NULL. A non-zero return stops the feed with that
 * code, before the record is counted as consumed. Strings are not
 * NUL-terminated and are untrusted bytes. */
typedef struct vp_vmprof_handler {
    void *ctx;
    int (*on_header)(void *ctx, const vp_vmprof_reader *r);
    int (*on_sample)(void *ctx, const vp_vmprof_sample *s);
    int (*on_name)(void *ctx, uint64_t addr, const char *name, size_t len, int native);
    int (*on_meta)(void *ctx, const char *key, size_t klen, const char *val, size_t vlen);
} vp_vmprof_handler;

struct vp_vmprof_reader {
    int stage;            /* private: what the next bytes must be */
    uint16_t version;
    uint8_t mode;         /* VP_VMPROF_MODE_* bits */
    uint64_t period_us;
    char interp[256];     /* NUL-terminated, from the HEADER record */
    int64_t start_us;     /* Unix microseconds, -1 if unknown */
    int64_t end_us;       /* from the TRAILER, -1 if not seen */
    uint64_t offset;      /* file offset of the next byte to consume */
    uint64_t records;     /* complete records consumed */
    uint64_t samples;     /* STACKTRACE records consumed */
    uint32_t max_depth;   /* deepest stack seen */
    char error[192];      /* why the last feed failed, "" if it did not */
};

/* vp_vmprof_reader_init prepares a reader for a file that starts at offset 0. */
void vp_vmprof_reader_init(vp_vmprof_reader *r);

/* vp_vmprof_reader_resume prepares a reader for bytes that start at a record
 * boundary after the HEADER record, given what that header said. */
void vp_vmprof_reader_resume(vp_vmprof_reader *r, uint16_t version, uint8_t mode,
                             uint64_t period_us, uint64_t offset, uint64_t samples);

/* vp_vmprof_feed consumes the complete records at the front of buf.
 * *consumed is set to the bytes consumed (always a record boundary), also on
 * failure. Returns VP_OK (the rest, if any, is an incomplete record),
 * VP_EDONE (the TRAILER was consumed; ignore what follows), or a negative
 * error (VP_ECORRUPT, VP_ETOOBIG, VP_EVERSION, or a handler's code) with
 * r->error naming the offset. Does not retain buf. */
int vp_vmprof_feed(vp_vmprof_reader *r, const uint8_t *buf, size_t len, size_t *consumed,
                   const vp_vmprof_handler *h);

/* vp_vmprof_header_done is non-zero once the HEADER record has been read. */
int vp_vmprof_header_done(const vp_vmprof_reader *r);

/* Little-endian loads at any alignment. Inline: the readers call them for
 * every word of every sample, and a call each was a few percent of the
 * agent's CPU; compilers turn these byte loops into single loads. */
static inline uint64_t vp_load_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint32_t vp_load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint16_t vp_load_u16le(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* vp_vmprof_entry reads stack entry i of a sample (no bounds beyond depth). */
static inline uint64_t vp_vmprof_entry(const vp_vmprof_sample *s, uint32_t i)
{
    return vp_load_u64le(s->entries + (size_t)i * 8u);
}

#endif
