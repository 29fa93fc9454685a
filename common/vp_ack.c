/* vp_ack.c - acknowledgements (proto/PROTOCOL.md §B), declared in vp_batch.h. */
#include <string.h>

#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_vmprof.h"

static const uint8_t ack_magic[4] = {'V', 'P', 'V', 'A'};

int vp_ack_encode(uint8_t status, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq,
                  const char *reason, uint8_t *out, size_t cap)
{
    size_t n = reason ? strlen(reason) : 0;
    if (n > VP_MAX_REASON_LEN)
        n = VP_MAX_REASON_LEN;
    if (cap < VP_ACK_HEADER_LEN + n)
        return VP_ETOOBIG;
    memset(out, 0, VP_ACK_HEADER_LEN);
    memcpy(out, ack_magic, 4);
    vp_store_u16le(out + 4, VP_BATCH_VERSION);
    out[6] = status;
    if (run_id)
        memcpy(out + 8, run_id, VP_RUN_ID_LEN);
    vp_store_u64le(out + 24, seq);
    vp_store_u16le(out + 36, (uint16_t)n);
    if (n)
        memcpy(out + VP_ACK_HEADER_LEN, reason, n);
    return (int)(VP_ACK_HEADER_LEN + n);
}

int vp_ack_decode(const uint8_t *msg, size_t len, vp_ack *a)
{
    if (len < VP_ACK_HEADER_LEN || memcmp(msg, ack_magic, 4) != 0 ||
        vp_load_u16le(msg + 4) != VP_BATCH_VERSION || msg[6] > VP_ACK_UNAUTHORIZED)
        return VP_ECORRUPT;
    size_t n = vp_load_u16le(msg + 36);
    if (n > VP_MAX_REASON_LEN || len != VP_ACK_HEADER_LEN + n)
        return VP_ECORRUPT;
    a->status = msg[6];
    memcpy(a->run_id, msg + 8, VP_RUN_ID_LEN);
    a->seq = vp_load_u64le(msg + 24);
    memcpy(a->reason, msg + VP_ACK_HEADER_LEN, n);
    a->reason[n] = '\0';
    return VP_OK;
}
