/*
 * vp_vmprof.c - see vp_vmprof.h.
 *
 * Invariant: the reader never looks past buf+len, and it computes a record's
 * full size from its fixed head (checked against vp_limits.h) before reading
 * any field behind it. A record is consumed only whole, so *consumed is
 * always a boundary the caller can cut at.
 */
#include "vp_vmprof.h"

#include <stdio.h>
#include <string.h>

#include "vp_err.h"
#include "vp_limits.h"

enum { STAGE_STATIC, STAGE_HEADER, STAGE_RECORDS, STAGE_DONE };

#define NEED_MORE 1 /* internal: the record is not complete in the buffer */

void vp_vmprof_reader_init(vp_vmprof_reader *r)
{
    memset(r, 0, sizeof(*r));
    r->stage = STAGE_STATIC;
    r->start_us = -1;
    r->end_us = -1;
}

void vp_vmprof_reader_resume(vp_vmprof_reader *r, uint16_t version, uint8_t mode,
                             uint64_t period_us, uint64_t offset, uint64_t samples)
{
    vp_vmprof_reader_init(r);
    r->stage = STAGE_RECORDS;
    r->version = version;
    r->mode = mode;
    r->period_us = period_us;
    r->offset = offset;
    r->samples = samples;
}

int vp_vmprof_header_done(const vp_vmprof_reader *r)
{
    return r->stage >= STAGE_RECORDS;
}

static int fail(vp_vmprof_reader *r, int code, uint64_t at, const char *what)
{
    snprintf(r->error, sizeof(r->error), "%s at offset %llu", what, (unsigned long long)at);
    return code;
}

static int parse_static(vp_vmprof_reader *r, const uint8_t *p, size_t len, size_t *used)
{
    static const uint8_t word3[8] = {3, 0, 0, 0, 0, 0, 0, 0};
    if (len < VP_VMPROF_STATIC_HEADER)
        return NEED_MORE;
    if (vp_load_u64le(p) != 0 || memcmp(p + 8, word3, 8) != 0 || vp_load_u64le(p + 16) != 0 ||
        vp_load_u64le(p + 32) != 0)
        return fail(r, VP_ECORRUPT, r->offset, "not a 64-bit little-endian vmprof profile");
    r->period_us = vp_load_u64le(p + 24);
    if (r->period_us == 0 || r->period_us > 1000000000u)
        return fail(r, VP_ECORRUPT, r->offset + 24, "implausible sampling period");
    *used = VP_VMPROF_STATIC_HEADER;
    return VP_OK;
}

static int parse_header(vp_vmprof_reader *r, const uint8_t *p, size_t len, size_t *used)
{
    if (len < 1)
        return NEED_MORE;
    if (p[0] != VP_VMPROF_HEADER)
        return fail(r, VP_ECORRUPT, r->offset, "expected the HEADER record");
    if (len < 3)
        return NEED_MORE;
    uint16_t version = (uint16_t)(p[1] << 8 | p[2]); /* the one big-endian field */
    if (version > 7)
        return fail(r, VP_EVERSION, r->offset + 1, "profile format version newer than 7");
    size_t pos = 3;
    uint8_t mode = 0;
    if (version >= 4) {
        if (len < pos + 1)
            return NEED_MORE;
        mode = p[pos++];
    } else if (version == 3) {
        mode = VP_VMPROF_MODE_MEMORY; /* v3 meant "memory on" before the mode byte */
    }
    if (mode & VP_VMPROF_MODE_RPYTHON)
        return fail(r, VP_EVERSION, r->offset + 3, "PyPy (rpython) profiles are not supported");
    if (len < pos + 1)
        return NEED_MORE;
    size_t n = p[pos++];
    if (len < pos + n)
        return NEED_MORE;
    memcpy(r->interp, p + pos, n);
    r->interp[n] = '\0';
    r->version = version;
    r->mode = mode;
    *used = pos + n;
    return VP_OK;
}

static int parse_stack(vp_vmprof_reader *r, const uint8_t *p, size_t len, size_t *used,
                       const vp_vmprof_handler *h)
{
    if (len < 17)
        return NEED_MORE;
    uint64_t count = vp_load_u64le(p + 1);
    uint64_t depth = vp_load_u64le(p + 9);
    if (count != 1)
        return fail(r, VP_ECORRUPT, r->offset + 1, "stack record count is not 1");
    if (depth > VP_MAX_STACK_DEPTH)
        return fail(r, VP_ETOOBIG, r->offset + 9, "stack depth over the limit");
    size_t tail = (r->version >= 1 ? 8u : 0u) + ((r->mode & VP_VMPROF_MODE_MEMORY) ? 8u : 0u) +
                  (r->version >= 7 ? 8u : 0u);
    size_t need = 17u + (size_t)depth * 8u + tail;
    if (len < need)
        return NEED_MORE;
    vp_vmprof_sample s = {.entries = p + 17, .depth = (uint32_t)depth, .time_ns = -1,
                          .index = r->samples};
    size_t pos = 17u + (size_t)depth * 8u;
    if (r->version >= 1) {
        s.thread_id = vp_load_u64le(p + pos);
        pos += 8;
    }
    if (r->mode & VP_VMPROF_MODE_MEMORY) {
        s.rss_kb = vp_load_u64le(p + pos);
        pos += 8;
    }
    if (r->version >= 7)
        s.time_ns = (int64_t)vp_load_u64le(p + pos);
    if (h && h->on_sample) {
        int rc = h->on_sample(h->ctx, &s);
        if (rc != 0)
            return fail(r, rc, r->offset, "sample handler failed");
    }
    if ((uint32_t)depth > r->max_depth)
        r->max_depth = (uint32_t)depth;
    r->samples++;
    *used = need;
    return VP_OK;
}

static int parse_name(vp_vmprof_reader *r, const uint8_t *p, size_t len, size_t *used,
                      const vp_vmprof_handler *h)
{
    if (len < 17)
        return NEED_MORE;
    uint64_t addr = vp_load_u64le(p + 1);
    uint64_t n = vp_load_u64le(p + 9);
    if (n > VP_MAX_NAME_LEN)
        return fail(r, VP_ETOOBIG, r->offset + 9, "symbol name length over the limit");
    if (len < 17u + n)
        return NEED_MORE;
    if (h && h->on_name) {
        int rc = h->on_name(h->ctx, addr, (const char *)p + 17, (size_t)n,
                            p[0] == VP_VMPROF_NATIVE_SYMBOLS);
        if (rc != 0)
            return fail(r, rc, r->offset, "name handler failed");
    }
    *used = 17u + (size_t)n;
    return VP_OK;
}

static int parse_meta(vp_vmprof_reader *r, const uint8_t *p, size_t len, size_t *used,
                      const vp_vmprof_handler *h)
{
    if (len < 9)
        return NEED_MORE;
    uint64_t k = vp_load_u64le(p + 1);
    if (k > VP_MAX_META_LEN)
        return fail(r, VP_ETOOBIG, r->offset + 1, "meta key length over the limit");
    if (len < 9u + k + 8u)
        return NEED_MORE;
    uint64_t v = vp_load_u64le(p + 9 + k);
    if (v > VP_MAX_META_LEN)
        return fail(r, VP_ETOOBIG, r->offset + 9 + k, "meta value length over the limit");
    size_t need = 17u + (size_t)k + (size_t)v;
    if (len < need)
        return NEED_MORE;
    if (h && h->on_meta) {
        int rc = h->on_meta(h->ctx, (const char *)p + 9, (size_t)k, (const char *)p + 17 + k,
                            (size_t)v);
        if (rc != 0)
            return fail(r, rc, r->offset, "meta handler failed");
    }
    *used = need;
    return VP_OK;
}

static int parse_time(vp_vmprof_reader *r, const uint8_t *p, size_t len, size_t *used,
                      int64_t *out)
{
    if (len < 25)
        return NEED_MORE;
    int64_t sec = (int64_t)vp_load_u64le(p + 1);
    int64_t usec = (int64_t)vp_load_u64le(p + 9);
    /* Bound before multiplying: a corrupt word must not overflow. */
    if (sec < 0 || sec > 100000000000LL || usec < 0 || usec >= 1000000)
        return fail(r, VP_ECORRUPT, r->offset + 1, "implausible timestamp");
    *out = sec * 1000000 + usec;
    *used = 25;
    return VP_OK;
}

static int parse_record(vp_vmprof_reader *r, const uint8_t *p, size_t len, size_t *used,
                        const vp_vmprof_handler *h)
{
    switch (p[0]) {
    case VP_VMPROF_STACKTRACE:
        return parse_stack(r, p, len, used, h);
    case VP_VMPROF_VIRTUAL_IP:
    case VP_VMPROF_NATIVE_SYMBOLS:
        return parse_name(r, p, len, used, h);
    case VP_VMPROF_META:
        return parse_meta(r, p, len, used, h);
    case VP_VMPROF_TIME_N_ZONE:
        return parse_time(r, p, len, used, &r->start_us);
    case VP_VMPROF_TRAILER:
        if (r->version < 5) {
            *used = 1;
            return VP_OK;
        }
        return parse_time(r, p, len, used, &r->end_us);
    case VP_VMPROF_HEADER:
        return fail(r, VP_ECORRUPT, r->offset, "a second HEADER record");
    default: {
        char what[64];
        snprintf(what, sizeof(what), "unknown record marker 0x%02x", p[0]);
        return fail(r, VP_ECORRUPT, r->offset, what);
    }
    }
}

int vp_vmprof_feed(vp_vmprof_reader *r, const uint8_t *buf, size_t len, size_t *consumed,
                   const vp_vmprof_handler *h)
{
    size_t pos = 0;
    int rc = VP_OK;
    r->error[0] = '\0';
    while (r->stage != STAGE_DONE && pos < len) {
        size_t used = 0;
        const uint8_t *p = buf + pos;
        size_t avail = len - pos;
        if (r->stage == STAGE_STATIC)
            rc = parse_static(r, p, avail, &used);
        else if (r->stage == STAGE_HEADER)
            rc = parse_header(r, p, avail, &used);
        else
            rc = parse_record(r, p, avail, &used, h);
        if (rc == NEED_MORE) {
            rc = VP_OK;
            break;
        }
        if (rc != VP_OK)
            break;
        uint8_t marker = p[0];
        int stage = r->stage;
        pos += used;
        r->offset += used;
        if (stage == STAGE_STATIC) {
            r->stage = STAGE_HEADER;
            continue;
        }
        r->records++;
        if (stage == STAGE_HEADER) {
            r->stage = STAGE_RECORDS;
            if (h && h->on_header && (rc = h->on_header(h->ctx, r)) != 0) {
                fail(r, rc, r->offset, "header handler failed");
                break;
            }
        } else if (marker == VP_VMPROF_TRAILER) {
            r->stage = STAGE_DONE;
        }
    }
    *consumed = pos;
    if (rc == VP_OK && r->stage == STAGE_DONE)
        return VP_EDONE;
    return rc;
}
