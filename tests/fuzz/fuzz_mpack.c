/*
 * fuzz_mpack.c - libFuzzer target for the server's bounded msgpack reader
 * (POST /submit/): in both modes (a buffer, a refilled stream window) it
 * must never read out of bounds, loop forever or allocate by a claimed count.
 */
#include <stdint.h>
#include <string.h>
#include "mpack.h"
#include "vp_err.h"

typedef struct src { const uint8_t *p; size_t n, pos, chunk; } src;
static int refill(void *ctx, uint8_t *buf, size_t cap, size_t *got)
{
    src *s = ctx;
    size_t k = s->n - s->pos;
    if (k > cap) k = cap;
    if (k > s->chunk) k = s->chunk;
    memcpy(buf, s->p + s->pos, k);
    s->pos += k;
    *got = k;
    return VP_OK;
}
static void walk(vps_mp *r)
{
    for (int i = 0; i < 10000; i++) {
        vps_mp_item it;
        if (vps_mp_next(r, &it) != VP_OK) return;
        if (it.type == VPS_MP_ARRAY || it.type == VPS_MP_MAP) {
            if (i & 1) { if (vps_mp_skip(r, &it, 8) != VP_OK) return; }
        }
        if (vps_mp_at_end(r)) return;
    }
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vps_mp r;
    vps_mp_init_buf(&r, data, size);
    walk(&r);
    src s = {data, size, 0, size ? (size_t)(data[0] % 7) + 1 : 1};
    if (vps_mp_init_stream(&r, 64, refill, &s) == VP_OK) {
        walk(&r);
        vps_mp_fini(&r);
    }
    return 0;
}
