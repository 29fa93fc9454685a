/*
 * store_int.h - what the store dispatcher (store.c) shares with the stores
 * behind it (store_sqlite.c, store_pg.c). Only those three files include it.
 *
 * A store is a table of operations plus a fixed pool of connections, one per
 * thread-pool thread. store.c owns the pool (checkout, the optional single
 * writer slot, give-back) and forwards every vps_db_* call through the table;
 * an implementation embeds vps_store and vps_db as the FIRST member of its own
 * structs, so a vps_db * it gets back is its own struct.
 */
#ifndef VPS_STORE_INT_H
#define VPS_STORE_INT_H

#include <pthread.h>

#include "store.h"

typedef struct vps_store_ops {
    const char *name; /* "sqlite", "postgresql": for logs */
    /* Transactions on a checked-out connection. begin may wait (for a lock
     * of the database); rollback must leave the connection clean for the
     * next user whatever state it is in. */
    int (*begin)(vps_db *db, int mode);
    int (*commit)(vps_db *db);
    void (*rollback)(vps_db *db);
    /* Closes every connection and frees the implementation's struct; called
     * once, with no connection checked out, after vps__store_fini. */
    void (*free)(vps_store *s);

    int (*get_run)(vps_db *db, const char *id, vps_run *out);
    int (*insert_run)(vps_db *db, vps_run *r);
    int (*update_run)(vps_db *db, const vps_run *r);
    int (*delete_run)(vps_db *db, int64_t rid);
    int (*list_runs)(vps_db *db, const vps_run_filter *f, vps_run **runs, size_t *n,
                     uint64_t *total);
    int (*put_name)(vps_db *db, int64_t rid, uint64_t addr, const char *name, size_t len);
    int (*put_stack)(vps_db *db, int64_t rid, uint64_t hash, const uint64_t *frames, uint32_t n,
                     int64_t *stack_id);
    int (*put_sample)(vps_db *db, int64_t rid, const vps_sample_row *row);
    int (*put_thread)(vps_db *db, int64_t rid, uint64_t thread, int *is_new);
    int (*each_name)(vps_db *db, int64_t rid, vps_name_cb cb, void *ctx);
    int (*each_stack_count)(vps_db *db, int64_t rid, vps_stack_count_cb cb, void *ctx);
    int (*each_sample)(vps_db *db, int64_t rid, int64_t from_ns, int64_t to_ns, vps_sample_cb cb,
                       void *ctx);
    int (*get_stack)(vps_db *db, int64_t rid, int64_t stack_id, uint64_t **frames, uint32_t *n);
} vps_store_ops;

/* One connection as the pool sees it. in_use and writing are guarded by the
 * store's pool_lock. */
struct vps_db {
    vps_store *store;
    int in_use;
    int writing; /* holds the store's write_lock (one_writer stores only) */
};

struct vps_store {
    const vps_store_ops *ops;
    /* The backend takes one write transaction at a time (SQLite): a
     * VPS_WRITE begin first takes write_lock, before the pool, in that order
     * only, so two writers cannot deadlock on the pool. A store that orders
     * writers itself (PostgreSQL, per run and across servers) sets 0. */
    int one_writer;
    unsigned nconn;
    vps_db **dbs; /* nconn, the implementation's connections; owned by it */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_free;
    pthread_mutex_t write_lock;
};

/* vps__store_init sets up the pool over the implementation's nconn
 * connections dbs (which s borrows; each dbs[i] must be zeroed or set up
 * by the implementation). */
void vps__store_init(vps_store *s, const vps_store_ops *ops, int one_writer, vps_db **dbs,
                     unsigned nconn);

/* vps__store_fini destroys the pool's locks; the connections stay. */
void vps__store_fini(vps_store *s);

/* The columns of a stored run in the order both stores' read_run and
 * bind_run use; rid first, so an insert passes it as DEFAULT/NULL. */
#define VPS_RUN_COLS                                                                         \
    "rid, id, project, function, host, source, interp, tags, error, status, pid, period_us," \
    " version, mode, samples, peak_rss_kb, threads, start_us, end_us, first_t_ns, last_t_ns," \
    " next_seq, bytes, trailer, created_us, updated_us, thin_removed, thin_period_us"

/* vps__frames_blob encodes n frames as a stored stack: n * 8 bytes, u64
 * little-endian. On success the caller owns *blob (never NULL, even for
 * n == 0; vp_free it) and *nbytes is its length; on failure (VP_ENOMEM)
 * neither is written. */
int vps__frames_blob(const uint64_t *frames, uint32_t n, uint8_t **blob, size_t *nbytes);

/* vps__frames_load decodes a stored stack of nbytes bytes at blob into
 * the connection's scratch array *frames of *cap entries, growing both as
 * needed; the connection keeps owning the array (vp_free it when it
 * closes). On success *n is the number of frames; a blob that cannot be a
 * stack is VP_ECORRUPT, logged under store (ops->name). */
int vps__frames_load(const char *store, const void *blob, int nbytes, uint64_t **frames,
                     uint32_t *cap, uint32_t *n);

/* vps__runs_finish ends a list_runs that read got rows into out (an array
 * from vp_calloc). With rc VP_OK it hands out, got and count to the
 * caller through runs, n and total, who then owns the runs (vps_run_fini
 * each, vp_free the array); otherwise it frees them and leaves the
 * out-params alone. Returns rc. */
int vps__runs_finish(int rc, vps_run *out, size_t got, uint64_t count, vps_run **runs,
                     size_t *n, uint64_t *total);

/* The stores. where is what vps_store_open got: a directory for SQLite, a
 * postgresql:// URL for PostgreSQL. Same contract as vps_store_open. */
int vps__sqlite_open(const char *dir, unsigned nconn, vps_store **out, char *err, size_t errlen);
int vps__pg_open(const char *url, unsigned nconn, vps_store **out, char *err, size_t errlen);

#endif
