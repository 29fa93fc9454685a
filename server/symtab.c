/*
 * symtab.c - addresses to functions (see symtab.h).
 *
 * Two open-addressing tables: addresses to function indices, and function
 * identities (the length-prefixed name, file and line) to indices. Both are
 * kept at most half full, so a probe ends at an empty slot.
 */
#include "symtab.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "vp_err.h"
#include "vp_mem.h"

void vps_name_split(const char *name, size_t len, vps_name_parts *p)
{
    const char *f[4];
    size_t flen[4];
    int n = 0;
    size_t start = 0;
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i <= len && n < 4; i++) {
        /* The fourth field (the file) runs to the end, colons and all. */
        if (i == len || (name[i] == ':' && n < 3)) {
            f[n] = name + start;
            flen[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    p->fields = n;
    if (n == 1) {
        p->sym = f[0], p->sym_len = flen[0];
    } else {
        p->sym = f[1], p->sym_len = flen[1];
    }
    if (n >= 3)
        p->line = f[2], p->line_len = flen[2];
    if (n >= 4)
        p->file = f[3], p->file_len = flen[3];
    int64_t v = 0;
    int ok = p->line_len > 0 && p->line_len <= 18;
    for (size_t i = 0; ok && i < p->line_len; i++) {
        if (p->line[i] < '0' || p->line[i] > '9')
            ok = 0;
        else
            v = v * 10 + (p->line[i] - '0');
    }
    p->line_no = ok ? v : 0;
    if (!p->sym)
        p->sym = "";
    if (!p->file)
        p->file = "";
    if (!p->line)
        p->line = "";
}

uint64_t vps_hash64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then mixed */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return vps_hash64(h);
}

void vps_symtab_init(vps_symtab *t)
{
    memset(t, 0, sizeof(*t));
}

void vps_symtab_fini(vps_symtab *t)
{
    for (size_t i = 0; i < t->nfuncs; i++) {
        vp_free(t->funcs[i].key);
        vp_free(t->funcs[i].name);
        vp_free(t->funcs[i].file);
        vp_free(t->funcs[i].label);
    }
    vp_free(t->funcs);
    vp_free(t->akeys);
    vp_free(t->avals);
    vp_free(t->fslots);
    vp_free(t->fhashes);
    memset(t, 0, sizeof(*t));
}

/* addr_slot returns the slot for addr (empty if absent: avals == 0). */
static size_t addr_slot(const vps_symtab *t, uint64_t addr)
{
    size_t mask = t->acap - 1, i = vps_hash64(addr) & mask;
    while (t->avals[i] && t->akeys[i] != addr)
        i = (i + 1) & mask;
    return i;
}

static int addr_put(vps_symtab *t, uint64_t addr, uint32_t fidx)
{
    if ((t->acount + 1) * 2 > t->acap) {
        size_t cap = t->acap ? t->acap * 2 : 1024;
        uint64_t *old_keys = t->akeys;
        uint32_t *old_vals = t->avals;
        size_t old_cap = t->acap;
        uint64_t *keys = vp_calloc(cap, sizeof(uint64_t));
        uint32_t *vals = vp_calloc(cap, sizeof(uint32_t));
        if (!keys || !vals) {
            vp_free(keys);
            vp_free(vals);
            return VP_ENOMEM;
        }
        t->akeys = keys, t->avals = vals, t->acap = cap;
        for (size_t i = 0; i < old_cap; i++) {
            if (old_vals[i]) {
                size_t j = addr_slot(t, old_keys[i]);
                t->akeys[j] = old_keys[i];
                t->avals[j] = old_vals[i];
            }
        }
        vp_free(old_keys);
        vp_free(old_vals);
        t->bytes += (cap - old_cap) * (sizeof(uint64_t) + sizeof(uint32_t));
    }
    size_t i = addr_slot(t, addr);
    if (!t->avals[i])
        t->acount++;
    t->akeys[i] = addr;
    t->avals[i] = fidx + 1;
    return VP_OK;
}

static size_t func_slot(const vps_symtab *t, uint64_t h, const char *key, size_t key_len)
{
    size_t mask = t->fcap - 1, i = h & mask;
    while (t->fslots[i]) {
        const vps_func *f = &t->funcs[t->fslots[i] - 1];
        if (t->fhashes[i] == h && f->key_len == key_len && memcmp(f->key, key, key_len) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

static int func_grow(vps_symtab *t)
{
    size_t cap = t->fcap ? t->fcap * 2 : 1024;
    uint32_t *slots = vp_calloc(cap, sizeof(uint32_t));
    uint64_t *hashes = vp_calloc(cap, sizeof(uint64_t));
    if (!slots || !hashes) {
        vp_free(slots);
        vp_free(hashes);
        return VP_ENOMEM;
    }
    uint32_t *old_slots = t->fslots;
    uint64_t *old_hashes = t->fhashes;
    size_t old_cap = t->fcap;
    t->fslots = slots, t->fhashes = hashes, t->fcap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old_slots[i]) {
            size_t j = old_hashes[i] & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = old_slots[i];
            hashes[j] = old_hashes[i];
        }
    }
    vp_free(old_slots);
    vp_free(old_hashes);
    t->bytes += (cap - old_cap) * (sizeof(uint32_t) + sizeof(uint64_t));
    return VP_OK;
}

static char *make_label(const vps_name_parts *p, const char *name, size_t name_len,
                        const char *file, size_t file_len, const char *line, size_t line_len,
                        size_t *out_len)
{
    size_t cap = name_len + file_len + line_len + 8;
    char *s = vp_malloc(cap);
    if (!s)
        return NULL;
    int n;
    if (p && p->fields >= 3)
        n = snprintf(s, cap, "%.*s (%.*s:%.*s)", (int)name_len, name, (int)file_len, file,
                     (int)line_len, line);
    else
        n = snprintf(s, cap, "%.*s", (int)name_len, name);
    /* snprintf stops at a NUL inside a name; labels are text, so it goes. */
    size_t len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ';' || s[i] == '\n' || s[i] == '\r')
            s[i] = '_';
    }
    *out_len = strlen(s);
    return s;
}

/* intern returns the index of the function with these (raw) parts. */
static int intern(vps_symtab *t, const vps_name_parts *p, const char *unknown, uint32_t *out)
{
    const char *sym = unknown ? unknown : p->sym, *file = unknown ? "" : p->file;
    const char *line = unknown ? "" : p->line;
    size_t sl = unknown ? strlen(unknown) : p->sym_len, fl = unknown ? 0 : p->file_len;
    size_t ll = unknown ? 0 : p->line_len;
    char *key = vp_malloc(12 + sl + fl + ll);
    if (!key)
        return VP_ENOMEM;
    size_t k = 0;
    const char *parts[3] = {sym, file, line};
    size_t lens[3] = {sl, fl, ll};
    for (int i = 0; i < 3; i++) {
        uint32_t n = (uint32_t)lens[i];
        memcpy(key + k, &n, 4);
        memcpy(key + k + 4, parts[i], lens[i]);
        k += 4 + lens[i];
    }
    if ((t->nfuncs + 1) * 2 > t->fcap && func_grow(t) != VP_OK) {
        vp_free(key);
        return VP_ENOMEM;
    }
    uint64_t h = hash_bytes(key, k);
    size_t slot = func_slot(t, h, key, k);
    if (t->fslots[slot]) {
        vp_free(key);
        *out = t->fslots[slot] - 1;
        return VP_OK;
    }
    if (t->nfuncs == t->funcs_cap) {
        size_t cap = t->funcs_cap ? t->funcs_cap * 2 : 256;
        vps_func *nf = vp_realloc(t->funcs, cap * sizeof(vps_func));
        if (!nf) {
            vp_free(key);
            return VP_ENOMEM;
        }
        t->bytes += (cap - t->funcs_cap) * sizeof(vps_func);
        t->funcs = nf, t->funcs_cap = cap;
    }
    vps_func *f = &t->funcs[t->nfuncs];
    memset(f, 0, sizeof(*f));
    f->key = key, f->key_len = k, f->key_hash = h;
    size_t line_len = 0;
    char *line_clean = vps_utf8_clean(line, ll, &line_len);
    f->name = vps_utf8_clean(sym, sl, &f->name_len);
    f->file = vps_utf8_clean(file, fl, &f->file_len);
    f->line = unknown ? 0 : p->line_no;
    if (f->name && f->file && line_clean)
        f->label = make_label(unknown ? NULL : p, f->name, f->name_len, f->file, f->file_len,
                              line_clean, line_len, &f->label_len);
    vp_free(line_clean);
    if (!f->label) {
        vp_free(f->key), vp_free(f->name), vp_free(f->file);
        return VP_ENOMEM;
    }
    t->bytes += k + f->name_len + f->file_len + f->label_len + 3 + 64; /* + allocator slack */
    t->fslots[slot] = (uint32_t)t->nfuncs + 1;
    t->fhashes[slot] = h;
    *out = (uint32_t)t->nfuncs++;
    return VP_OK;
}

static int on_name(void *ctx, uint64_t addr, const char *name, size_t len)
{
    vps_symtab *t = ctx;
    vps_name_parts p;
    uint32_t idx;
    vps_name_split(name, len, &p);
    int rc = intern(t, &p, NULL, &idx);
    return rc != VP_OK ? rc : addr_put(t, addr, idx);
}

int vps_symtab_load(vps_symtab *t, vps_db *db, int64_t rid)
{
    return vps_db_each_name(db, rid, on_name, t);
}

int vps_symtab_resolve(vps_symtab *t, uint64_t addr, uint32_t *out)
{
    if (t->acap) {
        size_t i = addr_slot(t, addr);
        if (t->avals[i]) {
            *out = t->avals[i] - 1;
            return VP_OK;
        }
    }
    char unknown[48];
    snprintf(unknown, sizeof(unknown), "<unknown 0x%" PRIx64 ">", addr);
    int rc = intern(t, NULL, unknown, out);
    return rc != VP_OK ? rc : addr_put(t, addr, *out);
}

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

int vps_func_order(const vps_func *a, const vps_func *b)
{
    int c = cmp_bytes(a->name, a->name_len, b->name, b->name_len);
    if (c)
        return c;
    c = cmp_bytes(a->file, a->file_len, b->file, b->file_len);
    if (c)
        return c;
    return (a->line > b->line) - (a->line < b->line);
}

int vps_func_same(const vps_func *a, const vps_func *b)
{
    return a->key_hash == b->key_hash && a->key_len == b->key_len &&
           memcmp(a->key, b->key, a->key_len) == 0;
}
