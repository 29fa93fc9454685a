/* u64map.c - see u64map.h. */
#include "u64map.h"

#include <string.h>

#include "symtab.h"
#include "vp_err.h"
#include "vp_mem.h"

/* find is key's slot, or the empty slot where it would go. */
static size_t find(const vps_u64map *m, uint64_t key)
{
    size_t mask = m->cap - 1, i = vps_hash64(key) & mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & mask;
    return i;
}

/* grow doubles the map, rehashing what it holds. */
static int grow(vps_u64map *m)
{
    vps_u64map n = {NULL, NULL, m->cap ? m->cap * 2 : 1024, m->count};
    n.keys = vp_calloc(n.cap, sizeof(uint64_t));
    n.vals = vp_malloc(n.cap * sizeof(uint64_t));
    if (!n.keys || !n.vals) {
        vp_free(n.keys);
        vp_free(n.vals);
        return VP_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = find(&n, m->keys[i]);
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
    }
    vp_free(m->keys);
    vp_free(m->vals);
    *m = n;
    return VP_OK;
}

uint64_t *vps_u64map_slot(vps_u64map *m, uint64_t key, int *added)
{
    if ((m->count + 1) * 2 > m->cap && grow(m) != VP_OK)
        return NULL;
    size_t i = find(m, key);
    *added = !m->keys[i];
    if (*added) {
        m->keys[i] = key;
        m->vals[i] = 0;
        m->count++;
    }
    return &m->vals[i];
}

uint64_t *vps_u64map_get(const vps_u64map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t i = find(m, key);
    return m->keys[i] ? &m->vals[i] : NULL;
}

void vps_u64map_clear(vps_u64map *m)
{
    if (m->cap)
        memset(m->keys, 0, m->cap * sizeof(uint64_t));
    m->count = 0;
}

void vps_u64map_fini(vps_u64map *m)
{
    vp_free(m->keys);
    vp_free(m->vals);
    memset(m, 0, sizeof(*m));
}
