/*
 * store.c - the store dispatcher behind store.h: picks the implementation
 * at vps_store_open (SQLite in a directory, or PostgreSQL at a URL), runs
 * the connection pool they share, and forwards every vps_db_* call through
 * the implementation's table (store_int.h).
 *
 * Invariants: a connection is checked out by one thread at a time; for a
 * one_writer store the write_lock is taken before the pool lock, in that
 * order only, and released after the connection is back in the pool.
 */
#include "store.h"

#include <stdio.h>
#include <string.h>

#include "store_int.h"
#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

/* is_pg_url: the prefixes libpq takes as a connection URI. */
static int is_pg_url(const char *where)
{
    return strncmp(where, "postgresql://", 13) == 0 || strncmp(where, "postgres://", 11) == 0;
}

int vps_store_open(const char *where, unsigned nconn, vps_store **out, char *err, size_t errlen)
{
    if (nconn == 0) {
        snprintf(err, errlen, "no connections");
        return VP_EINVAL;
    }
    if (is_pg_url(where))
        return vps__pg_open(where, nconn, out, err, errlen);
    return vps__sqlite_open(where, nconn, out, err, errlen);
}

void vps__store_init(vps_store *s, const vps_store_ops *ops, int one_writer, vps_db **dbs,
                     unsigned nconn)
{
    s->ops = ops;
    s->one_writer = one_writer;
    s->dbs = dbs;
    s->nconn = nconn;
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_free, NULL);
    pthread_mutex_init(&s->write_lock, NULL);
    for (unsigned i = 0; i < nconn; i++)
        dbs[i]->store = s;
}

void vps__store_fini(vps_store *s)
{
    pthread_mutex_destroy(&s->pool_lock);
    pthread_cond_destroy(&s->pool_free);
    pthread_mutex_destroy(&s->write_lock);
}

void vps_store_free(vps_store *s)
{
    if (!s)
        return;
    vps__store_fini(s);
    s->ops->free(s);
}

static void give_back(vps_db *db)
{
    vps_store *s = db->store;
    int writing = db->writing;
    pthread_mutex_lock(&s->pool_lock);
    db->in_use = 0;
    db->writing = 0;
    pthread_cond_signal(&s->pool_free);
    pthread_mutex_unlock(&s->pool_lock);
    if (writing)
        pthread_mutex_unlock(&s->write_lock);
}

int vps_store_begin(vps_store *s, int mode, vps_db **out)
{
    int serial = mode == VPS_WRITE && s->one_writer;
    if (serial)
        pthread_mutex_lock(&s->write_lock);
    pthread_mutex_lock(&s->pool_lock);
    vps_db *db = NULL;
    for (;;) {
        for (unsigned i = 0; i < s->nconn && !db; i++) {
            if (!s->dbs[i]->in_use)
                db = s->dbs[i];
        }
        if (db)
            break;
        pthread_cond_wait(&s->pool_free, &s->pool_lock);
    }
    db->in_use = 1;
    db->writing = serial;
    pthread_mutex_unlock(&s->pool_lock);
    int rc = s->ops->begin(db, mode);
    if (rc != VP_OK) {
        give_back(db);
        return rc;
    }
    *out = db;
    return VP_OK;
}

int vps_db_commit(vps_db *db)
{
    int rc = db->store->ops->commit(db);
    give_back(db);
    return rc;
}

void vps_db_end(vps_db *db)
{
    db->store->ops->rollback(db);
    give_back(db);
}

void vps_run_fini(vps_run *r)
{
    vp_free(r->project);
    vp_free(r->function);
    vp_free(r->host);
    vp_free(r->source);
    vp_free(r->interp);
    vp_free(r->tags);
    vp_free(r->error);
    r->project = r->function = r->host = r->source = r->interp = r->tags = r->error = NULL;
}

/* ---- helpers the stores share (store_int.h) ---- */

int vps__frames_blob(const uint64_t *frames, uint32_t n, uint8_t **blob, size_t *nbytes)
{
    size_t bytes = (size_t)n * 8;
    uint8_t *p = vp_malloc(bytes ? bytes : 1);
    if (!p)
        return VP_ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        vp_store_u64le(p + (size_t)i * 8, frames[i]);
    *blob = p;
    *nbytes = bytes;
    return VP_OK;
}

int vps__frames_load(const char *store, const void *blob, int nbytes, uint64_t **frames,
                     uint32_t *cap, uint32_t *n)
{
    if (nbytes < 0 || nbytes % 8 != 0 || (uint64_t)nbytes / 8 > VP_MAX_STACK_DEPTH) {
        vp_error("%s: a stored stack has %d bytes", store, nbytes);
        return VP_ECORRUPT;
    }
    uint32_t count = (uint32_t)nbytes / 8;
    if (count > *cap) {
        uint64_t *p = vp_realloc(*frames, (size_t)count * sizeof(uint64_t));
        if (!p)
            return VP_ENOMEM;
        *frames = p;
        *cap = count;
    }
    for (uint32_t i = 0; i < count; i++)
        (*frames)[i] = vp_load_u64le((const uint8_t *)blob + (size_t)i * 8);
    *n = count;
    return VP_OK;
}

int vps__runs_finish(int rc, vps_run *out, size_t got, uint64_t count, vps_run **runs,
                     size_t *n, uint64_t *total)
{
    if (rc != VP_OK) {
        for (size_t i = 0; i < got; i++)
            vps_run_fini(&out[i]);
        vp_free(out);
        return rc;
    }
    *runs = out;
    *n = got;
    *total = count;
    return VP_OK;
}

/* ---- forwarding ---- */

#define OPS(db) ((db)->store->ops)

int vps_db_get_run(vps_db *db, const char *id, vps_run *out)
{
    return OPS(db)->get_run(db, id, out);
}

int vps_db_insert_run(vps_db *db, vps_run *r)
{
    return OPS(db)->insert_run(db, r);
}

int vps_db_update_run(vps_db *db, const vps_run *r)
{
    return OPS(db)->update_run(db, r);
}

int vps_db_delete_run(vps_db *db, int64_t rid)
{
    return OPS(db)->delete_run(db, rid);
}

int vps_db_list_runs(vps_db *db, const vps_run_filter *f, vps_run **runs, size_t *n,
                     uint64_t *total)
{
    return OPS(db)->list_runs(db, f, runs, n, total);
}

int vps_db_put_name(vps_db *db, int64_t rid, uint64_t addr, const char *name, size_t len)
{
    return OPS(db)->put_name(db, rid, addr, name, len);
}

int vps_db_put_stack(vps_db *db, int64_t rid, uint64_t hash, const uint64_t *frames,
                     uint32_t n, int64_t *stack_id)
{
    return OPS(db)->put_stack(db, rid, hash, frames, n, stack_id);
}

int vps_db_put_sample(vps_db *db, int64_t rid, const vps_sample_row *row)
{
    return OPS(db)->put_sample(db, rid, row);
}

int vps_db_put_thread(vps_db *db, int64_t rid, uint64_t thread, int *is_new)
{
    return OPS(db)->put_thread(db, rid, thread, is_new);
}

int vps_db_each_name(vps_db *db, int64_t rid, vps_name_cb cb, void *ctx)
{
    return OPS(db)->each_name(db, rid, cb, ctx);
}

int vps_db_each_stack_count(vps_db *db, int64_t rid, vps_stack_count_cb cb, void *ctx)
{
    return OPS(db)->each_stack_count(db, rid, cb, ctx);
}

int vps_db_each_sample(vps_db *db, int64_t rid, int64_t from_ns, int64_t to_ns,
                       vps_sample_cb cb, void *ctx)
{
    return OPS(db)->each_sample(db, rid, from_ns, to_ns, cb, ctx);
}

int vps_db_get_stack(vps_db *db, int64_t rid, int64_t stack_id, uint64_t **frames, uint32_t *n)
{
    return OPS(db)->get_stack(db, rid, stack_id, frames, n);
}
