/*
 * symtab.h - a run's code addresses resolved to functions.
 *
 * A "function" is the (symbol, file, line) triple of a resolved vmprof name,
 * so two code objects of one function (an address reused, a module
 * reloaded) count as one, as docs/API.md asks. An address no record named
 * is a function of its own, "<unknown 0x...>".
 *
 * Names are resolved at query time, never at ingest: a name can arrive after
 * the samples that use it (always, for a live run), and the store keeps per
 * address the name vmprof's own reader would pick.
 *
 * A vps_symtab is used by one thread while it is built; once built and no
 * longer resolved into, any number of threads may read it.
 */
#ifndef VPS_SYMTAB_H
#define VPS_SYMTAB_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* vps_name_split parses a vmprof symbol name "lang:symbol:line:file" (split
 * at the first three colons; fewer fields allowed) into views of name. The
 * line is 0 when absent or not a number. */
typedef struct vps_name_parts {
    const char *sym, *file, *line;
    size_t sym_len, file_len, line_len;
    int fields; /* how many colon-separated fields there were, 1..4 */
    int64_t line_no;
} vps_name_parts;

void vps_name_split(const char *name, size_t len, vps_name_parts *p);

typedef struct vps_func {
    char *key; /* length-prefixed name, file, line: the identity */
    size_t key_len;
    uint64_t key_hash;
    char *name, *file; /* valid UTF-8 (repaired), NUL-terminated */
    size_t name_len, file_len;
    int64_t line;
    char *label; /* "name (file:line)" with ; and line breaks made _ */
    size_t label_len;
} vps_func;

typedef struct vps_symtab {
    uint64_t *akeys; /* address map: addr -> func index + 1 */
    uint32_t *avals;
    size_t acap, acount;
    uint32_t *fslots; /* function map: key hash slots -> func index + 1 */
    uint64_t *fhashes;
    size_t fcap;
    vps_func *funcs;
    size_t nfuncs, funcs_cap;
    size_t bytes; /* heap bytes held, for the query cache's accounting */
} vps_symtab;

void vps_symtab_init(vps_symtab *t);
void vps_symtab_fini(vps_symtab *t);

/* vps_symtab_load adds every name the store holds for run rid. */
int vps_symtab_load(vps_symtab *t, vps_db *db, int64_t rid);

/* vps_symtab_resolve returns in *out the function of a code address,
 * making an unknown one for an address no record named. */
int vps_symtab_resolve(vps_symtab *t, uint64_t addr, uint32_t *out);

/* vps_func_order compares two functions by name, file, line (bytes). */
int vps_func_order(const vps_func *a, const vps_func *b);

/* vps_func_same says whether two functions (of any symtabs) are one. */
int vps_func_same(const vps_func *a, const vps_func *b);

/* vps_hash64 is the mixer the server's hash tables use. */
uint64_t vps_hash64(uint64_t x);

#endif
