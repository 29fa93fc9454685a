/*
 * fuzz_batch.c - libFuzzer target for the batch and acknowledgement decoders,
 * the first code on the relay and server that reads bytes from a peer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vp_batch.h"
#include "vp_err.h"
#include "vp_mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vp_batch_view v;
    char err[128];
    if (vp_batch_decode(data, size, &v, err, sizeof(err)) == VP_OK) {
        if (v.payload + v.payload_len != data + size)
            abort();
        uint8_t *raw = NULL;
        if (vp_batch_payload(&v, &raw, err, sizeof(err)) == VP_OK) {
            volatile uint8_t last = v.raw_len ? raw[v.raw_len - 1] : 0;
            (void)last;
            vp_free(raw);
        }
        uint8_t *copy = NULL;
        size_t len = 0;
        if (vp_batch_retoken(&v, "t", &copy, &len) == VP_OK)
            vp_free(copy);
        (void)vp_batch_token_ok(&v, "secret");
    }
    vp_ack a;
    (void)vp_ack_decode(data, size, &a);
    return 0;
}
