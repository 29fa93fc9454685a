/*
 * query.c - the read API (see query.h).
 *
 * Names are resolved at query time, never at ingest: a name can arrive after
 * the samples that use it (always, for a live run), and the store keeps per
 * address the name vmprof's own reader would pick.
 *
 * A "function" is the (symbol, file, line) triple of a resolved name, so two
 * code objects of the same function (an address reused, a module reloaded)
 * count as one, as docs/API.md asks. Addresses with no name are functions
 * of their own, "<unknown 0x...>".
 */
#include "query.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"
#include "vp_err.h"
#include "vp_mem.h"

/* ---- names and functions ---- */

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

typedef struct func {
    char *key;   /* length-prefixed name, file, line: the identity */
    size_t key_len;
    char *name, *file; /* valid UTF-8 (repaired), NUL-terminated */
    size_t name_len, file_len;
    int64_t line;
    char *label; /* "name (file:line)" with ; and line breaks made _ */
    size_t label_len;
    uint64_t self, total, stamp;
} func;

typedef struct symtab {
    uint64_t *akeys;     /* address map: addr -> func index + 1 */
    uint32_t *avals;
    size_t acap, acount;
    uint32_t *fslots;    /* function map: key hash slots -> func index + 1 */
    uint64_t *fhashes;
    size_t fcap;
    func *funcs;
    size_t nfuncs, funcs_cap;
} symtab;

static uint64_t mix64(uint64_t x)
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
    return mix64(h);
}

static void symtab_fini(symtab *t)
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

/* addr_find returns the slot for addr (empty if absent: avals == 0). */
static size_t addr_slot(const symtab *t, uint64_t addr)
{
    size_t mask = t->acap - 1, i = mix64(addr) & mask;
    while (t->avals[i] && t->akeys[i] != addr)
        i = (i + 1) & mask;
    return i;
}

static int addr_put(symtab *t, uint64_t addr, uint32_t fidx)
{
    if ((t->acount + 1) * 2 > t->acap) {
        size_t cap = t->acap ? t->acap * 2 : 1024;
        symtab old = *t;
        t->akeys = vp_calloc(cap, sizeof(uint64_t));
        t->avals = vp_calloc(cap, sizeof(uint32_t));
        if (!t->akeys || !t->avals) {
            vp_free(t->akeys);
            vp_free(t->avals);
            t->akeys = old.akeys, t->avals = old.avals;
            return VP_ENOMEM;
        }
        t->acap = cap;
        for (size_t i = 0; i < old.acap; i++) {
            if (old.avals[i]) {
                size_t j = addr_slot(t, old.akeys[i]);
                t->akeys[j] = old.akeys[i];
                t->avals[j] = old.avals[i];
            }
        }
        vp_free(old.akeys);
        vp_free(old.avals);
    }
    size_t i = addr_slot(t, addr);
    if (!t->avals[i])
        t->acount++;
    t->akeys[i] = addr;
    t->avals[i] = fidx + 1;
    return VP_OK;
}

static size_t func_slot(const symtab *t, uint64_t h, const char *key, size_t key_len)
{
    size_t mask = t->fcap - 1, i = h & mask;
    while (t->fslots[i]) {
        const func *f = &t->funcs[t->fslots[i] - 1];
        if (t->fhashes[i] == h && f->key_len == key_len && memcmp(f->key, key, key_len) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

static int func_grow(symtab *t)
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
static int intern(symtab *t, const vps_name_parts *p, const char *unknown, uint32_t *out)
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
        func *nf = vp_realloc(t->funcs, cap * sizeof(func));
        if (!nf) {
            vp_free(key);
            return VP_ENOMEM;
        }
        t->funcs = nf, t->funcs_cap = cap;
    }
    func *f = &t->funcs[t->nfuncs];
    memset(f, 0, sizeof(*f));
    f->key = key, f->key_len = k;
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
    t->fslots[slot] = (uint32_t)t->nfuncs + 1;
    t->fhashes[slot] = h;
    *out = (uint32_t)t->nfuncs++;
    return VP_OK;
}

static int on_name(void *ctx, uint64_t addr, const char *name, size_t len)
{
    symtab *t = ctx;
    vps_name_parts p;
    uint32_t idx;
    vps_name_split(name, len, &p);
    int rc = intern(t, &p, NULL, &idx);
    return rc != VP_OK ? rc : addr_put(t, addr, idx);
}

/* resolve returns the function of a code address, making an unknown one
 * for an address no record named. */
static int resolve(symtab *t, uint64_t addr, uint32_t *out)
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

static int load_symtab(vps_db *db, int64_t rid, symtab *t)
{
    memset(t, 0, sizeof(*t));
    return vps_db_each_name(db, rid, on_name, t);
}

/* ---- shared plumbing ---- */

/* open_run starts a read and finds the run; on failure *out is filled. */
static vps_db *open_run(vps_store *s, const char *id, vps_run *run, vps_reply *out)
{
    vps_db *db = NULL;
    int rc = vps_store_begin(s, VPS_READ, &db);
    if (rc != VP_OK) {
        vps_reply_error(out, 503, "storage unavailable: %s", vp_strerror(rc));
        return NULL;
    }
    rc = vps_db_get_run(db, id, run);
    if (rc == VP_OK)
        return db;
    vps_db_end(db);
    if (rc == VP_ENOTFOUND)
        vps_reply_error(out, 404, "no run %s", id);
    else
        vps_reply_error(out, 500, "storage failed: %s", vp_strerror(rc));
    return NULL;
}

static void reply_failure(vps_reply *out, int rc)
{
    vps_reply_error(out, 500, "query failed: %s", vp_strerror(rc));
}

/* ---- runs ---- */

void vps_query_runs(vps_store *s, const vps_run_filter *f, vps_reply *out)
{
    vps_db *db = NULL;
    vps_run *runs = NULL;
    size_t n = 0;
    uint64_t total = 0;
    int rc = vps_store_begin(s, VPS_READ, &db);
    if (rc != VP_OK) {
        vps_reply_error(out, 503, "storage unavailable: %s", vp_strerror(rc));
        return;
    }
    rc = vps_db_list_runs(db, f, &runs, &n, &total);
    vps_db_end(db);
    if (rc != VP_OK) {
        reply_failure(out, rc);
        return;
    }
    int64_t now = vps_now_us();
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (arr && json_array_append_new(arr, vps_run_json(&runs[i], 0, now)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
        vps_run_fini(&runs[i]);
    }
    vp_free(runs);
    vps_reply_json(out, 200, json_pack("{s:o, s:I}", "runs", arr, "total", (json_int_t)total));
}

void vps_query_run(vps_store *s, const char *id, vps_reply *out)
{
    vps_run run;
    vps_db *db = open_run(s, id, &run, out);
    if (!db)
        return;
    vps_db_end(db);
    vps_reply_json(out, 200, vps_run_json(&run, 1, vps_now_us()));
    vps_run_fini(&run);
}

/* ---- collapsed stacks and functions ---- */

typedef struct line {
    char *text;
    size_t len;
    uint64_t count;
} line;

typedef struct stacks_ctx {
    symtab syms;
    uint64_t stamp;
    uint32_t *fidx; /* per-frame function, scratch */
    uint32_t fidx_cap;
    line *lines;    /* collapsed only */
    size_t nlines, lines_cap;
    int collapsed;
} stacks_ctx;

static int on_stack(void *vctx, int64_t stack_id, const uint64_t *frames, uint32_t n,
                    uint64_t count)
{
    stacks_ctx *c = vctx;
    (void)stack_id;
    if (n == 0)
        return 0; /* nothing to attribute; still counted in the run's samples */
    if (n > c->fidx_cap) {
        uint32_t *p = vp_realloc(c->fidx, (size_t)n * sizeof(uint32_t));
        if (!p)
            return VP_ENOMEM;
        c->fidx = p, c->fidx_cap = n;
    }
    for (uint32_t i = 0; i < n; i++) {
        int rc = resolve(&c->syms, frames[i], &c->fidx[i]);
        if (rc != VP_OK)
            return rc;
    }
    if (!c->collapsed) {
        /* total: once per stack however often the function recurses. */
        c->stamp++;
        for (uint32_t i = 0; i < n; i++) {
            func *f = &c->syms.funcs[c->fidx[i]];
            if (f->stamp != c->stamp) {
                f->stamp = c->stamp;
                f->total += count;
            }
        }
        c->syms.funcs[c->fidx[n - 1]].self += count;
        return 0;
    }
    size_t len = n - 1;
    for (uint32_t i = 0; i < n; i++)
        len += c->syms.funcs[c->fidx[i]].label_len;
    char *text = vp_malloc(len + 1);
    if (!text)
        return VP_ENOMEM;
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        const func *f = &c->syms.funcs[c->fidx[i]];
        if (i)
            text[k++] = ';';
        memcpy(text + k, f->label, f->label_len);
        k += f->label_len;
    }
    text[k] = '\0';
    if (c->nlines == c->lines_cap) {
        size_t cap = c->lines_cap ? c->lines_cap * 2 : 256;
        line *p = vp_realloc(c->lines, cap * sizeof(line));
        if (!p) {
            vp_free(text);
            return VP_ENOMEM;
        }
        c->lines = p, c->lines_cap = cap;
    }
    c->lines[c->nlines++] = (line){text, len, count};
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    const line *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void stacks_fini(stacks_ctx *c)
{
    for (size_t i = 0; i < c->nlines; i++)
        vp_free(c->lines[i].text);
    vp_free(c->lines);
    vp_free(c->fidx);
    symtab_fini(&c->syms);
}

/* walk_stacks loads the run's names and feeds every stack to on_stack. */
static int walk_stacks(vps_store *s, const char *id, stacks_ctx *c, vps_run *run,
                       vps_reply *out)
{
    vps_db *db = open_run(s, id, run, out);
    if (!db)
        return VP_ENOTFOUND;
    int rc = load_symtab(db, run->rid, &c->syms);
    if (rc == VP_OK)
        rc = vps_db_each_stack_count(db, run->rid, on_stack, c);
    vps_db_end(db);
    if (rc != VP_OK) {
        reply_failure(out, rc);
        vps_run_fini(run);
    }
    return rc;
}

void vps_query_collapsed(vps_store *s, const char *id, vps_reply *out)
{
    stacks_ctx c;
    vps_run run;
    memset(&c, 0, sizeof(c));
    c.collapsed = 1;
    if (walk_stacks(s, id, &c, &run, out) != VP_OK) {
        stacks_fini(&c);
        return;
    }
    vps_run_fini(&run);
    if (c.nlines > 1)
        qsort(c.lines, c.nlines, sizeof(line), cmp_line);
    /* Different stacks can print alike (two code objects of one function):
     * they are one line, summed. */
    size_t total = 0, w = 0;
    for (size_t i = 0; i < c.nlines; i++) {
        if (w > 0 && cmp_line(&c.lines[w - 1], &c.lines[i]) == 0) {
            c.lines[w - 1].count += c.lines[i].count;
            vp_free(c.lines[i].text);
            continue;
        }
        c.lines[w++] = c.lines[i];
    }
    c.nlines = w;
    for (size_t i = 0; i < c.nlines; i++)
        total += c.lines[i].len + 22;
    char *body = vp_malloc(total + 1);
    if (!body) {
        stacks_fini(&c);
        vps_reply_error(out, 500, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < c.nlines; i++) {
        memcpy(body + k, c.lines[i].text, c.lines[i].len);
        k += c.lines[i].len;
        k += (size_t)snprintf(body + k, total + 1 - k, " %" PRIu64 "\n", c.lines[i].count);
    }
    stacks_fini(&c);
    vps_reply_body(out, 200, "text/plain; charset=utf-8", body, k);
}

static int cmp_func(const void *a, const void *b)
{
    const func *x = *(func *const *)a, *y = *(func *const *)b;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    if (x->self != y->self)
        return x->self < y->self ? 1 : -1;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    c = strcmp(x->file, y->file);
    if (c)
        return c;
    return (x->line > y->line) - (x->line < y->line);
}

void vps_query_functions(vps_store *s, const char *id, vps_reply *out)
{
    stacks_ctx c;
    vps_run run;
    memset(&c, 0, sizeof(c));
    if (walk_stacks(s, id, &c, &run, out) != VP_OK) {
        stacks_fini(&c);
        return;
    }
    uint64_t samples = run.samples;
    vps_run_fini(&run);
    func **order = vp_malloc((c.syms.nfuncs ? c.syms.nfuncs : 1) * sizeof(func *));
    json_t *arr = json_array();
    if (!order || !arr) {
        vp_free(order);
        json_decref(arr);
        stacks_fini(&c);
        vps_reply_error(out, 500, "out of memory");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < c.syms.nfuncs; i++) {
        if (c.syms.funcs[i].total > 0)
            order[n++] = &c.syms.funcs[i];
    }
    if (n > 1)
        qsort(order, n, sizeof(func *), cmp_func);
    for (size_t i = 0; i < n && arr; i++) {
        const func *f = order[i];
        json_t *o = json_pack("{s:s%, s:s%, s:I, s:I, s:I}", "name", f->name, f->name_len,
                              "file", f->file, f->file_len, "line", (json_int_t)f->line, "self",
                              (json_int_t)f->self, "total", (json_int_t)f->total);
        if (json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    vp_free(order);
    stacks_fini(&c);
    vps_reply_json(out, 200, json_pack("{s:I, s:o}", "samples", (json_int_t)samples,
                                       "functions", arr));
}

/* ---- memory ---- */

typedef struct bucket {
    uint64_t n, min, max, sum, best_rss;
    int64_t best_stack;
} bucket;

typedef struct memory_ctx {
    bucket *b;
    uint32_t nb;
    int64_t first_ns;
    double from, width;
} memory_ctx;

static int on_sample(void *vctx, const vps_sample_row *row)
{
    memory_ctx *m = vctx;
    double t = (double)(row->t_ns - m->first_ns) / 1e9;
    uint32_t i = 0;
    if (m->width > 0) {
        double k = floor((t - m->from) / m->width);
        i = k < 0 ? 0 : k >= m->nb ? m->nb - 1 : (uint32_t)k;
    }
    bucket *b = &m->b[i];
    if (b->n == 0 || row->rss_kb < b->min)
        b->min = row->rss_kb;
    if (b->n == 0 || row->rss_kb > b->max)
        b->max = row->rss_kb;
    /* The first sample with the bucket's highest RSS names its stack. */
    if (b->n == 0 || row->rss_kb > b->best_rss) {
        b->best_rss = row->rss_kb;
        b->best_stack = row->stack_id;
    }
    b->n++;
    b->sum += row->rss_kb;
    return 0;
}

static json_t *stack_labels(vps_db *db, int64_t rid, int64_t stack_id, symtab *syms)
{
    uint64_t *frames = NULL;
    uint32_t n = 0;
    json_t *arr = json_array();
    int rc = vps_db_get_stack(db, rid, stack_id, &frames, &n);
    if (rc == VP_ENOTFOUND)
        return arr;
    if (rc != VP_OK || !arr) {
        json_decref(arr);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx;
        if (resolve(syms, frames[i], &idx) != VP_OK ||
            json_array_append_new(arr, vps_json_str(syms->funcs[idx].label,
                                                    syms->funcs[idx].label_len)) != 0) {
            json_decref(arr);
            arr = NULL;
            break;
        }
    }
    vp_free(frames);
    return arr;
}

static double clamp_s(double v)
{
    /* Keep seconds within what int64 nanoseconds can hold. */
    return v < -9e9 ? -9e9 : v > 9e9 ? 9e9 : v;
}

void vps_query_memory(vps_store *s, const char *id, const vps_memory_args *a, vps_reply *out)
{
    vps_run run;
    symtab syms;
    memory_ctx m;
    memset(&syms, 0, sizeof(syms));
    memset(&m, 0, sizeof(m));
    vps_db *db = open_run(s, id, &run, out);
    if (!db)
        return;
    double t_end = run.samples && run.last_t_ns > run.first_t_ns
                       ? (double)(run.last_t_ns - run.first_t_ns) / 1e9
                       : 0.0;
    double from = a->has_from ? clamp_s(a->from) : 0.0;
    /* Without 'to' the window runs to the last sample, or is empty if
     * 'from' is past it; an explicit 'to' before 'from' is an error. */
    double to = a->has_to ? clamp_s(a->to) : t_end > from ? t_end : from;
    json_t *points = NULL, *stacks = NULL, *doc = NULL;
    int64_t *ids = NULL;
    int rc = VP_OK;
    if (to < from) {
        vps_db_end(db);
        vps_run_fini(&run);
        vps_reply_error(out, 400, "'to' is before 'from'");
        return;
    }
    m.nb = a->buckets;
    m.b = vp_calloc(m.nb, sizeof(bucket));
    ids = vp_calloc(m.nb, sizeof(int64_t));
    points = json_array();
    stacks = json_array();
    if (!m.b || !ids || !points || !stacks) {
        rc = VP_ENOMEM;
        goto fail;
    }
    m.first_ns = run.first_t_ns;
    m.from = from;
    m.width = (to - from) / m.nb;
    if (run.samples > 0) {
        int64_t from_ns = run.first_t_ns + (int64_t)floor(from * 1e9);
        int64_t to_ns = run.first_t_ns + (int64_t)ceil(to * 1e9);
        if ((rc = vps_db_each_sample(db, run.rid, from_ns, to_ns, on_sample, &m)) != VP_OK)
            goto fail;
        if ((rc = load_symtab(db, run.rid, &syms)) != VP_OK)
            goto fail;
    }
    uint64_t peak = 0;
    size_t nids = 0;
    for (uint32_t i = 0; i < m.nb; i++) {
        const bucket *b = &m.b[i];
        if (b->n == 0)
            continue;
        size_t k = 0;
        while (k < nids && ids[k] != b->best_stack)
            k++;
        if (k == nids) {
            json_t *labels = stack_labels(db, run.rid, b->best_stack, &syms);
            if (!labels || json_array_append_new(stacks, labels) != 0) {
                rc = VP_ENOMEM;
                goto fail;
            }
            ids[nids++] = b->best_stack;
        }
        if (b->max > peak)
            peak = b->max;
        json_t *p = json_pack("{s:f, s:I, s:I, s:I, s:I, s:I}", "t", from + i * m.width, "n",
                              (json_int_t)b->n, "min", (json_int_t)b->min, "mean",
                              (json_int_t)((b->sum + b->n / 2) / b->n), "max",
                              (json_int_t)b->max, "stack", (json_int_t)k);
        if (json_array_append_new(points, p) != 0) {
            rc = VP_ENOMEM;
            goto fail;
        }
    }
    vps_db_end(db);
    db = NULL;
    doc = json_pack("{s:f, s:f, s:I, s:o, s:o}", "from", from, "to", to, "peak_rss_kb",
                    (json_int_t)peak, "points", points, "stacks", stacks);
    points = stacks = NULL;
    vps_reply_json(out, 200, doc);
fail:
    if (db)
        vps_db_end(db);
    if (rc != VP_OK)
        reply_failure(out, rc);
    json_decref(points);
    json_decref(stacks);
    vp_free(m.b);
    vp_free(ids);
    symtab_fini(&syms);
    vps_run_fini(&run);
}
