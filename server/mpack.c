/*
 * mpack.c - the msgpack reader (see mpack.h). Formats per the msgpack
 * specification: fixint/fixmap/fixarray/fixstr, nil, bool, bin8/16/32,
 * ext8/16/32 and fixext, float32/64, uint8..64, int8..64, str8/16/32,
 * array16/32, map16/32; big-endian throughout.
 */
#include "mpack.h"

#include <string.h>

#include "vp_err.h"
#include "vp_mem.h"

void vps_mp_init_buf(vps_mp *r, const uint8_t *buf, size_t len)
{
    memset(r, 0, sizeof(*r));
    r->buf = buf;
    r->len = len;
    r->eof = 1;
}

int vps_mp_init_stream(vps_mp *r, size_t cap, vps_mp_refill refill, void *ctx)
{
    memset(r, 0, sizeof(*r));
    r->win = vp_malloc(cap);
    if (!r->win)
        return VP_ENOMEM;
    r->buf = r->win;
    r->cap = cap;
    r->refill = refill;
    r->ctx = ctx;
    return VP_OK;
}

void vps_mp_fini(vps_mp *r)
{
    vp_free(r->win);
    r->win = NULL;
}

static int fail(vps_mp *r, int rc, const char *why)
{
    r->err = why;
    return rc;
}

/* need makes n bytes available at pos. */
static int need(vps_mp *r, size_t n)
{
    if (r->len - r->pos >= n)
        return VP_OK;
    if (!r->win || r->eof)
        return fail(r, VP_ECORRUPT, "msgpack data ends inside an item");
    if (n > r->cap)
        return fail(r, VP_ETOOBIG, "a msgpack string is longer than the reader allows");
    size_t left = r->len - r->pos;
    memmove(r->win, r->win + r->pos, left);
    r->pos = 0;
    r->len = left;
    while (r->len < n) {
        size_t got = 0;
        int rc = r->refill(r->ctx, r->win + r->len, r->cap - r->len, &got);
        if (rc != VP_OK)
            return fail(r, rc, rc == VP_ETOOBIG ? "it inflates past the server's bound"
                               : rc == VP_ENOMEM ? "out of memory"
                                                 : "the compressed data is broken");
        if (got == 0) {
            r->eof = 1;
            return fail(r, VP_ECORRUPT, "msgpack data ends inside an item");
        }
        r->len += got;
    }
    return VP_OK;
}

int vps_mp_at_end(vps_mp *r)
{
    if (r->pos < r->len)
        return 0;
    if (!r->win || r->eof)
        return 1;
    r->pos = r->len = 0;
    size_t got = 0;
    if (r->refill(r->ctx, r->win, r->cap, &got) != VP_OK) {
        r->eof = 1;
        r->err = "the compressed data is broken or inflates past the server's bound";
        return 0; /* not a clean end */
    }
    if (got == 0) {
        r->eof = 1;
        return 1;
    }
    r->len = got;
    return 0;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* take reads an n-byte big-endian number. */
static int take(vps_mp *r, int n, uint64_t *v)
{
    int rc = need(r, (size_t)n);
    if (rc != VP_OK)
        return rc;
    *v = be(r->buf + r->pos, n);
    r->pos += (size_t)n;
    return VP_OK;
}

/* bytes takes n bytes of a string into it->p. */
static int bytes(vps_mp *r, vps_mp_item *it, uint64_t n)
{
    if (n > UINT32_MAX)
        return fail(r, VP_ECORRUPT, "msgpack length out of range");
    int rc = need(r, (size_t)n);
    if (rc != VP_OK)
        return rc;
    it->p = r->buf + r->pos;
    it->n = (uint32_t)n;
    r->pos += (size_t)n;
    return VP_OK;
}

/* count sets a container's count; in a buffer, every element takes at
 * least one byte, so a count past what is left is refused at once. */
static int count(vps_mp *r, vps_mp_item *it, uint64_t n, uint64_t per)
{
    if (!r->win && n * per > r->len - r->pos)
        return fail(r, VP_ECORRUPT, "msgpack container claims more items than the data holds");
    it->n = (uint32_t)n;
    return VP_OK;
}

int vps_mp_next(vps_mp *r, vps_mp_item *it)
{
    uint64_t v = 0;
    int rc = take(r, 1, &v);
    if (rc != VP_OK)
        return rc;
    unsigned c = (unsigned)v;
    memset(it, 0, sizeof(*it));
    if (c <= 0x7f) {
        it->type = VPS_MP_INT, it->u = c;
        return VP_OK;
    }
    if (c >= 0xe0) {
        it->type = VPS_MP_INT, it->neg = 1, it->i = (int8_t)c;
        return VP_OK;
    }
    if (c >= 0x80 && c <= 0x8f) {
        it->type = VPS_MP_MAP;
        return count(r, it, c & 0x0f, 2);
    }
    if (c >= 0x90 && c <= 0x9f) {
        it->type = VPS_MP_ARRAY;
        return count(r, it, c & 0x0f, 1);
    }
    if (c >= 0xa0 && c <= 0xbf) {
        it->type = VPS_MP_STR;
        return bytes(r, it, c & 0x1f);
    }
    switch (c) {
    case 0xc0: it->type = VPS_MP_NIL; return VP_OK;
    case 0xc2: it->type = VPS_MP_BOOL, it->u = 0; return VP_OK;
    case 0xc3: it->type = VPS_MP_BOOL, it->u = 1; return VP_OK;
    case 0xc4: case 0xc5: case 0xc6:
        it->type = VPS_MP_BIN;
        if ((rc = take(r, 1 << (c - 0xc4), &v)) != VP_OK)
            return rc;
        return bytes(r, it, v);
    case 0xc7: case 0xc8: case 0xc9: {
        it->type = VPS_MP_EXT;
        uint64_t t;
        if ((rc = take(r, 1 << (c - 0xc7), &v)) != VP_OK || (rc = take(r, 1, &t)) != VP_OK)
            return rc;
        return bytes(r, it, v);
    }
    case 0xca: {
        if ((rc = take(r, 4, &v)) != VP_OK)
            return rc;
        uint32_t b = (uint32_t)v;
        float f;
        memcpy(&f, &b, 4);
        it->type = VPS_MP_FLOAT, it->f = f;
        return VP_OK;
    }
    case 0xcb: {
        if ((rc = take(r, 8, &v)) != VP_OK)
            return rc;
        double d;
        memcpy(&d, &v, 8);
        it->type = VPS_MP_FLOAT, it->f = d;
        return VP_OK;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        it->type = VPS_MP_INT;
        return take(r, 1 << (c - 0xcc), &it->u);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (c - 0xd0);
        if ((rc = take(r, n, &v)) != VP_OK)
            return rc;
        /* Sign-extend from n bytes. */
        int64_t x = n == 8 ? (int64_t)v : (int64_t)(v ^ (1ull << (8 * n - 1))) -
                                              (int64_t)(1ull << (8 * n - 1));
        it->type = VPS_MP_INT;
        if (x < 0)
            it->neg = 1, it->i = x;
        else
            it->u = (uint64_t)x;
        return VP_OK;
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: {
        uint64_t t;
        it->type = VPS_MP_EXT;
        if ((rc = take(r, 1, &t)) != VP_OK)
            return rc;
        return bytes(r, it, 1u << (c - 0xd4));
    }
    case 0xd9: case 0xda: case 0xdb:
        it->type = VPS_MP_STR;
        if ((rc = take(r, 1 << (c - 0xd9), &v)) != VP_OK)
            return rc;
        return bytes(r, it, v);
    case 0xdc: case 0xdd:
        it->type = VPS_MP_ARRAY;
        if ((rc = take(r, c == 0xdc ? 2 : 4, &v)) != VP_OK)
            return rc;
        return count(r, it, v, 1);
    case 0xde: case 0xdf:
        it->type = VPS_MP_MAP;
        if ((rc = take(r, c == 0xde ? 2 : 4, &v)) != VP_OK)
            return rc;
        return count(r, it, v, 2);
    default:
        return fail(r, VP_ECORRUPT, "msgpack type byte 0xc1 is never used");
    }
}

int vps_mp_skip(vps_mp *r, const vps_mp_item *it, unsigned depth)
{
    if (it->type != VPS_MP_ARRAY && it->type != VPS_MP_MAP)
        return VP_OK;
    if (depth == 0)
        return fail(r, VP_ECORRUPT, "msgpack nested too deeply");
    uint64_t n = it->type == VPS_MP_MAP ? 2ull * it->n : it->n;
    for (uint64_t k = 0; k < n; k++) {
        vps_mp_item sub;
        int rc = vps_mp_next(r, &sub);
        if (rc == VP_OK)
            rc = vps_mp_skip(r, &sub, depth - 1);
        if (rc != VP_OK)
            return rc;
    }
    return VP_OK;
}
