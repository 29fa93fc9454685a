/*
 * store.h - the server's storage interface: runs, their samples, stacks and
 * symbol names. Two stores sit behind it (store.c dispatches): SQLite in a
 * directory (store_sqlite.c) and PostgreSQL, which several servers may share
 * (store_pg.c). The interface names no SQL type.
 *
 * Threads: every call blocks, so only libuv's thread pool calls them, never
 * the loop thread. A vps_db is one checked-out connection used by one thread
 * at a time. Writes to a run are serialised, so "read the run's next seq,
 * apply the batch, bump the seq" is atomic for every run:
 * - SQLite: vps_store_begin(..., VPS_WRITE, ...) waits for the single writer
 *   slot of the process.
 * - PostgreSQL: in a VPS_WRITE transaction, vps_db_get_run and
 *   vps_db_insert_run lock the run (by id) until commit or rollback, in the
 *   database, so across every server sharing it; writes to other runs go on
 *   in parallel. A write transaction should lock one run: two that lock two
 *   runs in opposite orders may deadlock, and the database fails one (VP_EIO).
 *
 * Addresses and thread ids are u64 in the API; stores may keep them signed.
 */
#ifndef VPS_STORE_H
#define VPS_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct vps_store vps_store;
typedef struct vps_db vps_db;

/* One run, as stored. Strings are owned by the struct (vps_run_fini). */
typedef struct vps_run {
    int64_t rid;          /* the store's key; set by vps_db_insert_run */
    char id[33];          /* 32 lowercase hex digits */
    char *project, *function, *host, *source, *interp;
    char *tags;           /* JSON object text */
    char *error;          /* NULL if none */
    char status[12];      /* live, complete, failed, incomplete */
    int64_t pid;
    uint64_t period_us;   /* from the profile's header, else what OPEN asked */
    int version;          /* vmprof HEADER version, -1 until the header is seen */
    int mode;             /* VP_VMPROF_MODE_* bits */
    uint64_t samples, peak_rss_kb, threads;
    int64_t start_us, end_us; /* Unix microseconds; end -1 if unknown */
    int64_t first_t_ns, last_t_ns; /* span of the sample clock; -1 if no sample */
    uint64_t next_seq;    /* next batch seq expected */
    uint64_t bytes;       /* profile bytes consumed: the reader's offset */
    int trailer;          /* the TRAILER record was seen */
    int64_t created_us, updated_us;
    /* Thinning a relay applied (vmpv.thinned META records, PROTOCOL.md):
     * samples it removed in all, and the coarsest sampling period it left,
     * in microseconds; 0 and 0 if the run was never thinned. */
    uint64_t thin_removed;
    uint64_t thin_period_us;
} vps_run;

/* One stored sample. t_ns is the profile's own clock (vmprof >= 0.5), or
 * index x period for older files, so queries need not care. */
typedef struct vps_sample_row {
    uint64_t idx;
    int64_t t_ns;
    uint64_t rss_kb;
    uint64_t thread;
    int64_t stack_id;
} vps_sample_row;

typedef struct vps_run_filter {
    const char *project; /* exact, or NULL */
    const char *q;       /* substring of project or function (ASCII case-blind), or NULL */
    uint32_t limit, offset;
} vps_run_filter;

enum { VPS_READ = 0, VPS_WRITE = 1 };

/* vps_store_open opens (creating tables if needed) the store at where: a
 * PostgreSQL database if where starts with postgresql:// or postgres:// (a
 * libpq URI), else SQLite in directory where (created too), with room for
 * nconn connections in use at once. On success the caller owns *out
 * (vps_store_free); on failure err says why. */
int vps_store_open(const char *where, unsigned nconn, vps_store **out, char *err,
                   size_t errlen);

/* vps_store_free closes every connection. No vps_db may be checked out. */
void vps_store_free(vps_store *s);

/* vps_store_begin checks out a connection and starts a transaction: a
 * consistent snapshot for VPS_READ, a write transaction for VPS_WRITE (for
 * SQLite the one writer slot, which it waits for; see the file comment).
 * End it with vps_db_commit or vps_db_end exactly once. */
int vps_store_begin(vps_store *s, int mode, vps_db **out);

/* vps_db_commit commits and gives the connection back (also on failure,
 * after which the transaction was rolled back). */
int vps_db_commit(vps_db *db);

/* vps_db_end rolls back (a read simply ends) and gives the connection back. */
void vps_db_end(vps_db *db);

void vps_run_fini(vps_run *r);

/* Runs. get returns VP_ENOTFOUND if there is no such id. update writes every
 * field except rid, id and created_us. In a VPS_WRITE transaction get and
 * insert lock the run (file comment). */
int vps_db_get_run(vps_db *db, const char *id, vps_run *out);
int vps_db_insert_run(vps_db *db, vps_run *r);
int vps_db_update_run(vps_db *db, const vps_run *r);
int vps_db_delete_run(vps_db *db, int64_t rid);

/* vps_db_list_runs returns filtered runs, newest first, as a vp_malloc'd
 * array the caller owns (vps_run_fini each, then vp_free), and in *total the
 * number matching without limit/offset. */
int vps_db_list_runs(vps_db *db, const vps_run_filter *f, vps_run **runs, size_t *n,
                     uint64_t *total);

/* Profile content; writes need a VPS_WRITE db.
 * put_name keeps, per address, the greatest name in byte order (vmprof's
 * reader does the same, see shared/notes/vmprof-format.md §4.6).
 * put_stack stores frames (root first) under a 63-bit id derived from hash,
 * probing on a collision; *stack_id is the id used.
 * put_thread sets *is_new when the run had not seen this thread. */
int vps_db_put_name(vps_db *db, int64_t rid, uint64_t addr, const char *name, size_t len);
int vps_db_put_stack(vps_db *db, int64_t rid, uint64_t hash, const uint64_t *frames,
                     uint32_t n, int64_t *stack_id);
int vps_db_put_sample(vps_db *db, int64_t rid, const vps_sample_row *row);
int vps_db_put_thread(vps_db *db, int64_t rid, uint64_t thread, int *is_new);

/* Iteration. A callback's non-zero return stops the walk and is returned.
 * Pointers passed to callbacks are valid only during the call. */
typedef int (*vps_name_cb)(void *ctx, uint64_t addr, const char *name, size_t len);
typedef int (*vps_stack_count_cb)(void *ctx, int64_t stack_id, const uint64_t *frames,
                                  uint32_t n, uint64_t count);
typedef int (*vps_sample_cb)(void *ctx, const vps_sample_row *row);

int vps_db_each_name(vps_db *db, int64_t rid, vps_name_cb cb, void *ctx);
/* Every distinct stack of the run with the number of samples that have it. */
int vps_db_each_stack_count(vps_db *db, int64_t rid, vps_stack_count_cb cb, void *ctx);
/* Samples with from_ns <= t_ns <= to_ns in index order. */
int vps_db_each_sample(vps_db *db, int64_t rid, int64_t from_ns, int64_t to_ns,
                       vps_sample_cb cb, void *ctx);
/* One stack's frames: *frames is vp_malloc'd, owned by the caller. */
int vps_db_get_stack(vps_db *db, int64_t rid, int64_t stack_id, uint64_t **frames,
                     uint32_t *n);

#endif
