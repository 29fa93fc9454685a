/*
 * vp_decimate.h - thinning a vmprof record stream so that a long profile
 * stays small enough to send and look at, without lying in either view:
 *
 *  - CPU view: out of every `factor` consecutive samples one is kept, chosen
 *    uniformly at random (reservoir sampling), so every sample has the same
 *    chance 1/factor and each function's self and total shares are unbiased
 *    estimates of the originals;
 *  - Memory view: the kept sample carries the highest RSS of its window, so
 *    no peak disappears.
 *
 * Records other than samples (names, meta, header, trailer) pass unchanged.
 * The output is never longer than the input.
 */
#ifndef VP_DECIMATE_H
#define VP_DECIMATE_H

#include <stddef.h>
#include <stdint.h>

#include "vp_vmprof.h"

/* The seed's recommended rate for a profile that has run duration_s
 * seconds: at most 100 Hz up to 3 h, 50 Hz at 6 h, 20 Hz at 12 h, 1 Hz from
 * 24 h, linear in between. */
double vp_decimate_allowed_hz(double duration_s);

/* vp_decimate_factor: how many samples to fold into one so that a stretch
 * of `samples` samples over `span_s` seconds of a profile now `duration_s`
 * long stays within the allowed rate. 1 means keep everything. */
uint32_t vp_decimate_factor(uint64_t samples, double span_s, double duration_s);

typedef struct vp_decimate_result {
    uint64_t in_samples;
    uint64_t out_samples;
    size_t out_len;
} vp_decimate_result;

/* vp_decimate rewrites the complete records in `in`, read with reader r
 * (initialised by the caller for where `in` starts: vp_vmprof_reader_init at
 * offset 0, else vp_vmprof_reader_resume), into out (room for in_len bytes).
 * seed makes the random choice repeatable. Returns VP_OK or VP_EDONE (trailer
 * seen) with *res filled, or the reader's error (r->error says why). */
int vp_decimate(vp_vmprof_reader *r, const uint8_t *in, size_t in_len, uint32_t factor,
                uint64_t seed, uint8_t *out, vp_decimate_result *res);

#endif
