/*
 * u64map.h - the server's one hash map: nonzero u64 keys to u64 values,
 * open addressing with linear probing, kept at most half full, grown by
 * doubling. Callers fold what they index (a stack id, a parent and a
 * function, a bucket and a node) into a nonzero key.
 *
 * Zeroed is empty. Not thread-safe: one owner at a time.
 */
#ifndef VPS_U64MAP_H
#define VPS_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct vps_u64map {
    uint64_t *keys; /* 0 = an empty slot */
    uint64_t *vals;
    size_t cap, count;
} vps_u64map;

/* vps_u64map_slot returns key's value slot, adding key with value 0 first
 * if absent (then *added is 1, else 0). The pointer is valid until the
 * next call that adds. NULL: out of memory (the map is unchanged). */
uint64_t *vps_u64map_slot(vps_u64map *m, uint64_t key, int *added);

/* vps_u64map_get returns key's value slot, or NULL if key is absent. */
uint64_t *vps_u64map_get(const vps_u64map *m, uint64_t key);

/* vps_u64map_clear empties m and keeps its memory. */
void vps_u64map_clear(vps_u64map *m);

/* vps_u64map_fini frees m's memory; m is then zeroed (empty). */
void vps_u64map_fini(vps_u64map *m);

/* Bytes m holds. */
static inline size_t vps_u64map_bytes(const vps_u64map *m)
{
    return m->cap * 2 * sizeof(uint64_t);
}

#endif
