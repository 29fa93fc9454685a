/*
 * submit.h - POST /submit/, the seed's original intake (docs/API.md, "The
 * seed's original intake"): the old vmprof-viewer client's msgpack upload.
 *
 * Blocks on the store: run it on the thread pool. body is borrowed for the
 * call; *out is always filled: 200 with the text "/runs/<id>", 400 with a
 * reason for anything malformed, 413 past a bound of vp_limits.h, 500/503
 * for the store.
 */
#ifndef VPS_SUBMIT_H
#define VPS_SUBMIT_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "store.h"

void vps_submit(vps_store *s, const uint8_t *body, size_t len, vps_reply *out);

#endif
