/*
 * store_sqlite.c - the SQLite store behind store.h (chosen when
 * vps_store_open gets a directory; store.c dispatches to it).
 *
 * Layout: one database file DIR/vmpv.sqlite in WAL mode, so readers never
 * wait for the writer. Runs have an integer key (rid) and a text id; the
 * per-sample tables use rid to keep rows small. Samples are stored in
 * blocks of up to VP_STORE_BLOCK_SAMPLES consecutive samples of one run,
 * one row each (sample_blocks, sample_block.h): one SQLite row per sample
 * cost about a microsecond to insert and a fifth of that to read, which
 * made a 10-million-sample run take seconds either way. A fixed pool of connections,
 * one per thread-pool thread, each with its statements prepared once; a
 * connection is used by one thread at a time (SQLite's multi-thread mode).
 *
 * Invariants: every statement is reset and its bindings cleared before the
 * connection is given back, so text bound with SQLITE_STATIC never outlives
 * the caller's buffer. SQLite has one writer: the pool (store.c) queues
 * VPS_WRITE transactions on its write lock, so BEGIN IMMEDIATE never waits
 * on another of our own connections.
 */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "limits.h"
#include "sample_block.h"
#include "store_int.h"
#include "symtab.h"
#include "vp_err.h"
#include "vp_log.h"
#include "vp_mem.h"
#include "vp_vmprof.h"
#include "vp_batch.h"

/* 2 added runs.thin_removed and runs.thin_period_us; 3 stores samples in
 * blocks. Older files are upgraded in place when opened: the columns are
 * added, the samples table is copied into blocks and dropped. */
#define SCHEMA_VERSION 3

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS runs("
    " rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " project TEXT NOT NULL, function TEXT NOT NULL, host TEXT NOT NULL,"
    " source TEXT NOT NULL, interp TEXT NOT NULL, tags TEXT NOT NULL, error TEXT,"
    " status TEXT NOT NULL, pid INTEGER NOT NULL, period_us INTEGER NOT NULL,"
    " version INTEGER NOT NULL, mode INTEGER NOT NULL, samples INTEGER NOT NULL,"
    " peak_rss_kb INTEGER NOT NULL, threads INTEGER NOT NULL, start_us INTEGER NOT NULL,"
    " end_us INTEGER NOT NULL, first_t_ns INTEGER NOT NULL, last_t_ns INTEGER NOT NULL,"
    " next_seq INTEGER NOT NULL, bytes INTEGER NOT NULL, trailer INTEGER NOT NULL,"
    " created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL,"
    " thin_removed INTEGER NOT NULL DEFAULT 0, thin_period_us INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS runs_by_start ON runs(start_us DESC, rid DESC);"
    "CREATE INDEX IF NOT EXISTS runs_by_project ON runs(project, start_us DESC);"
    /* names: per address the greatest name in byte order; a BLOB so that
     * max() compares bytes whatever the encoding. */
    "CREATE TABLE IF NOT EXISTS names(rid INTEGER NOT NULL, addr INTEGER NOT NULL,"
    " name BLOB NOT NULL, PRIMARY KEY(rid, addr)) WITHOUT ROWID;"
    /* stacks: frames are root-first code addresses, u64 little-endian. A
     * rowid table: frame blobs can be large for WITHOUT ROWID pages. */
    "CREATE TABLE IF NOT EXISTS stacks(rid INTEGER NOT NULL, stack_id INTEGER NOT NULL,"
    " frames BLOB NOT NULL, PRIMARY KEY(rid, stack_id));"
    /* sample_blocks: n samples of run rid from index first_idx on, whose
     * clocks lie in [t_min, t_max]; data is n records (sample_block.h). A
     * rowid table: the blobs are large. */
    "CREATE TABLE IF NOT EXISTS sample_blocks(rid INTEGER NOT NULL,"
    " first_idx INTEGER NOT NULL, n INTEGER NOT NULL, t_min INTEGER NOT NULL,"
    " t_max INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(rid, first_idx));"
    "CREATE TABLE IF NOT EXISTS threads(rid INTEGER NOT NULL, thread INTEGER NOT NULL,"
    " PRIMARY KEY(rid, thread)) WITHOUT ROWID;";

#define RUN_FILTER                                                                  \
    " WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR"                        \
    " instr(lower(project), lower(?2)) > 0 OR instr(lower(function), lower(?2)) > 0)"

enum {
    ST_BEGIN,
    ST_BEGIN_WRITE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_GET_RUN,
    ST_INSERT_RUN,
    ST_UPDATE_RUN,
    ST_DELETE_RUN,
    ST_DELETE_NAMES,
    ST_DELETE_STACKS,
    ST_DELETE_SAMPLES,
    ST_DELETE_THREADS,
    ST_LIST_RUNS,
    ST_COUNT_RUNS,
    ST_PUT_NAME,
    ST_GET_STACK,
    ST_INSERT_STACK,
    ST_PUT_SAMPLE,
    ST_PUT_THREAD,
    ST_EACH_NAME,
    ST_EACH_STACK_COUNT,
    ST_EACH_SAMPLE,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    /* IMMEDIATE takes SQLite's write lock now rather than at the first
     * write, so a batch never fails half-way on a busy database. */
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_GET_RUN] = "SELECT " VPS_RUN_COLS " FROM runs WHERE id = ?1",
    [ST_INSERT_RUN] = "INSERT INTO runs(" VPS_RUN_COLS ") VALUES(NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
                      " ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,"
                      " ?23, ?24, ?25, ?26, ?27, ?28)",
    [ST_UPDATE_RUN] = "UPDATE runs SET project = ?3, function = ?4, host = ?5, source = ?6,"
                      " interp = ?7, tags = ?8, error = ?9, status = ?10, pid = ?11,"
                      " period_us = ?12, version = ?13, mode = ?14, samples = ?15,"
                      " peak_rss_kb = ?16, threads = ?17, start_us = ?18, end_us = ?19,"
                      " first_t_ns = ?20, last_t_ns = ?21, next_seq = ?22, bytes = ?23,"
                      " trailer = ?24, updated_us = ?26, thin_removed = ?27,"
                      " thin_period_us = ?28 WHERE rid = ?1",
    [ST_DELETE_RUN] = "DELETE FROM runs WHERE rid = ?1",
    [ST_DELETE_NAMES] = "DELETE FROM names WHERE rid = ?1",
    [ST_DELETE_STACKS] = "DELETE FROM stacks WHERE rid = ?1",
    [ST_DELETE_SAMPLES] = "DELETE FROM sample_blocks WHERE rid = ?1",
    [ST_DELETE_THREADS] = "DELETE FROM threads WHERE rid = ?1",
    [ST_LIST_RUNS] = "SELECT " VPS_RUN_COLS " FROM runs" RUN_FILTER
                     " ORDER BY start_us DESC, rid DESC LIMIT ?3 OFFSET ?4",
    [ST_COUNT_RUNS] = "SELECT count(*) FROM runs" RUN_FILTER,
    [ST_PUT_NAME] = "INSERT INTO names(rid, addr, name) VALUES(?1, ?2, ?3)"
                    " ON CONFLICT(rid, addr) DO UPDATE SET name = max(name, excluded.name)",
    [ST_GET_STACK] = "SELECT frames FROM stacks WHERE rid = ?1 AND stack_id = ?2",
    [ST_INSERT_STACK] = "INSERT INTO stacks(rid, stack_id, frames) VALUES(?1, ?2, ?3)",
    [ST_PUT_SAMPLE] = "INSERT INTO sample_blocks(rid, first_idx, n, t_min, t_max, data)"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_PUT_THREAD] = "INSERT OR IGNORE INTO threads(rid, thread) VALUES(?1, ?2)",
    [ST_EACH_NAME] = "SELECT addr, name FROM names WHERE rid = ?1",
    /* Every block of the run, for counting samples per stack. */
    [ST_EACH_STACK_COUNT] = "SELECT n, data FROM sample_blocks WHERE rid = ?1",
    [ST_EACH_SAMPLE] = "SELECT n, data FROM sample_blocks WHERE rid = ?1 AND t_max >= ?2"
                       " AND t_min <= ?3 ORDER BY first_idx",
};

typedef struct sq_db {
    vps_db base;                  /* first: the pool's view (store_int.h) */
    sqlite3 *conn;
    sqlite3_stmt *stmt[ST_COUNT]; /* prepared on first use */
    uint64_t *frames;             /* scratch for stack blobs, see load_frames */
    uint32_t frames_cap;
    vps_block_pend pend;      /* samples put, not yet inserted (sample_block.h) */
    vps_block_counts counts;  /* each_stack_count's scratch */
} sq_db;

typedef struct sq_store {
    vps_store base; /* first */
    sq_db *conns;
    vps_db **dbs;   /* the pool's pointers into conns */
} sq_store;

static const vps_store_ops sqlite_ops;
static int flush_samples(sq_db *db);

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int sql_fail(sq_db *db, const char *what)
{
    int code = sqlite3_errcode(db->conn);
    vp_error("sqlite: %s: %s", what, sqlite3_errmsg(db->conn));
    return code == SQLITE_NOMEM ? VP_ENOMEM : VP_EIO;
}

/* stmt returns the statement for id, prepared and clean, or NULL (logged). */
static sqlite3_stmt *stmt(sq_db *db, int id)
{
    if (!db->stmt[id] &&
        sqlite3_prepare_v3(db->conn, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &db->stmt[id],
                           NULL) != SQLITE_OK) {
        sql_fail(db, "prepare");
        db->stmt[id] = NULL;
    }
    return db->stmt[id];
}

static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* run_simple steps a statement that returns no rows. */
static int run_simple(sq_db *db, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    done(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return sql_fail(db, what);
    return VP_OK;
}

static int exec_id(sq_db *db, int id, const char *what)
{
    sqlite3_stmt *st = stmt(db, id);
    if (!st)
        return VP_EIO;
    return run_simple(db, st, what);
}

static int mkdir_p(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(path)) {
        snprintf(err, errlen, "data directory path is empty or too long");
        return VP_EINVAL;
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            return VP_EIO;
        }
        path[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", dir);
        return VP_EIO;
    }
    return VP_OK;
}

static int sq_put_sample(vps_db *vdb, int64_t rid, const vps_sample_row *row);

/* copy_v1_samples moves the samples of a file of version 1 or 2, a row
 * each, into blocks, in the caller's transaction, and drops the old table. */
static int copy_v1_samples(sq_db *db, char **msg)
{
    sqlite3_stmt *st = NULL;
    uint64_t n = 0;
    int rc = VP_OK, s = SQLITE_DONE;
    if (sqlite3_prepare_v2(db->conn,
                           "SELECT rid, idx, t_ns, rss_kb, thread, stack_id FROM samples"
                           " ORDER BY rid, idx", -1, &st, NULL) != SQLITE_OK)
        return VP_EIO;
    while (rc == VP_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        vps_sample_row row = {.idx = (uint64_t)sqlite3_column_int64(st, 1),
                              .t_ns = sqlite3_column_int64(st, 2),
                              .rss_kb = (uint64_t)sqlite3_column_int64(st, 3),
                              .thread = (uint64_t)sqlite3_column_int64(st, 4),
                              .stack_id = sqlite3_column_int64(st, 5)};
        rc = sq_put_sample(&db->base, sqlite3_column_int64(st, 0), &row);
        n++;
    }
    if (rc == VP_OK && s != SQLITE_DONE)
        rc = VP_EIO;
    sqlite3_finalize(st);
    if (rc == VP_OK)
        rc = flush_samples(db);
    if (rc == VP_OK && sqlite3_exec(db->conn, "DROP TABLE samples", NULL, NULL, msg) != SQLITE_OK)
        rc = VP_EIO;
    if (rc == VP_OK)
        vp_info("sqlite: %llu samples moved into blocks (schema version %d)",
                (unsigned long long)n, SCHEMA_VERSION);
    return rc;
}

static int open_conn(sq_db *db, const char *path, int first, char *err, size_t errlen)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    char *msg = NULL;
    if (sqlite3_open_v2(path, &db->conn, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
        return VP_EIO;
    }
    /* The writer mutex orders our own writers; the busy timeout covers
     * another process (a backup, the sqlite3 shell) holding the file. */
    sqlite3_busy_timeout(db->conn, 5000);
    /* synchronous=FULL: a 200 "stored" to a relay promises the batch
     * survives a power cut, and the relay drops its copy on it. */
    const char *pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;";
    if (sqlite3_exec(db->conn, pragmas, NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    if (first) {
        sqlite3_stmt *st = NULL;
        int version = -1;
        if (sqlite3_prepare_v2(db->conn, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (version < 0 || version > SCHEMA_VERSION) {
            snprintf(err, errlen, "%s has schema version %d; this server knows %d", path,
                     version, SCHEMA_VERSION);
            return VP_EVERSION;
        }
        /* Version 1 lacks the thinning columns (existing runs were never
         * thinned as far as the store knows: 0, 0) and has a row per sample. */
        const char *upgrade = version == 1 ? "ALTER TABLE runs ADD COLUMN thin_removed INTEGER"
                                             " NOT NULL DEFAULT 0; ALTER TABLE runs ADD COLUMN"
                                             " thin_period_us INTEGER NOT NULL DEFAULT 0;"
                                           : "";
        char set_version[64];
        snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %d; COMMIT",
                 SCHEMA_VERSION);
        if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db->conn, upgrade, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db->conn, schema_sql, NULL, NULL, &msg) != SQLITE_OK ||
            ((version == 1 || version == 2) && copy_v1_samples(db, &msg) != VP_OK) ||
            sqlite3_exec(db->conn, set_version, NULL, NULL, &msg) != SQLITE_OK) {
            sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
            goto fail;
        }
    }
    return VP_OK;
fail:
    snprintf(err, errlen, "cannot set up %s: %s", path, msg ? msg : sqlite3_errmsg(db->conn));
    sqlite3_free(msg);
    return VP_EIO;
}

static pthread_once_t config_once = PTHREAD_ONCE_INIT;

static void configure_sqlite(void)
{
    /* Before SQLite initialises: no global allocation statistics, whose
     * mutex every sqlite3_malloc would otherwise take (nothing here reads
     * them). Fails harmlessly if SQLite was initialised already. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int vps__sqlite_open(const char *dir, unsigned nconn, vps_store **out, char *err, size_t errlen)
{
    char path[4200];
    pthread_once(&config_once, configure_sqlite);
    int rc = mkdir_p(dir, err, errlen);
    if (rc != VP_OK)
        return rc;
    snprintf(path, sizeof(path), "%s/vmpv.sqlite", dir);
    sq_store *s = vp_calloc(1, sizeof(*s));
    if (!s || !(s->conns = vp_calloc(nconn, sizeof(sq_db))) ||
        !(s->dbs = vp_calloc(nconn, sizeof(vps_db *)))) {
        if (s)
            vp_free(s->conns);
        vp_free(s);
        snprintf(err, errlen, "out of memory");
        return VP_ENOMEM;
    }
    for (unsigned i = 0; i < nconn; i++)
        s->dbs[i] = &s->conns[i].base;
    /* SQLite takes one writer at a time: the pool queues them (store_int.h). */
    vps__store_init(&s->base, &sqlite_ops, 1, s->dbs, nconn);
    for (unsigned i = 0; i < nconn; i++) {
        if (vps_block_pend_init(&s->conns[i].pend) != VP_OK) {
            snprintf(err, errlen, "out of memory");
            rc = VP_ENOMEM;
            goto fail;
        }
        if ((rc = open_conn(&s->conns[i], path, i == 0, err, errlen)) != VP_OK)
            goto fail;
    }
    *out = &s->base;
    return VP_OK;
fail:
    vps_store_free(&s->base);
    return rc;
}

static void sq_free(vps_store *vs)
{
    sq_store *s = (sq_store *)vs;
    for (unsigned i = 0; i < s->base.nconn; i++) {
        sq_db *db = &s->conns[i];
        for (int j = 0; j < ST_COUNT; j++)
            sqlite3_finalize(db->stmt[j]);
        if (db->conn)
            sqlite3_close(db->conn);
        vp_free(db->frames);
        vps_block_pend_fini(&db->pend);
        vps_block_counts_fini(&db->counts);
    }
    vp_free(s->conns);
    vp_free(s->dbs);
    vp_free(s);
}

static int sq_begin(vps_db *vdb, int mode)
{
    return exec_id((sq_db *)vdb, mode == VPS_WRITE ? ST_BEGIN_WRITE : ST_BEGIN, "begin");
}

static int sq_commit(vps_db *vdb)
{
    sq_db *db = (sq_db *)vdb;
    int rc = flush_samples(db);
    if (rc == VP_OK)
        rc = exec_id(db, ST_COMMIT, "commit");
    if (rc != VP_OK && !sqlite3_get_autocommit(db->conn))
        exec_id(db, ST_ROLLBACK, "rollback");
    return rc;
}

static void sq_rollback(vps_db *vdb)
{
    sq_db *db = (sq_db *)vdb;
    vps_block_clear(&db->pend);
    if (!sqlite3_get_autocommit(db->conn))
        exec_id(db, ST_ROLLBACK, "rollback");
}

static char *col_text(sqlite3_stmt *st, int i, int *oom)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return NULL;
    char *copy = vp_strndup((const char *)t, (size_t)sqlite3_column_bytes(st, i));
    if (!copy)
        *oom = 1;
    return copy;
}

/* read_run fills r from a row of VPS_RUN_COLS. */
static int read_run(sqlite3_stmt *st, vps_run *r)
{
    int oom = 0;
    memset(r, 0, sizeof(*r));
    r->rid = sqlite3_column_int64(st, 0);
    snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(st, 1));
    r->project = col_text(st, 2, &oom);
    r->function = col_text(st, 3, &oom);
    r->host = col_text(st, 4, &oom);
    r->source = col_text(st, 5, &oom);
    r->interp = col_text(st, 6, &oom);
    r->tags = col_text(st, 7, &oom);
    r->error = col_text(st, 8, &oom);
    snprintf(r->status, sizeof(r->status), "%s", (const char *)sqlite3_column_text(st, 9));
    r->pid = sqlite3_column_int64(st, 10);
    r->period_us = (uint64_t)sqlite3_column_int64(st, 11);
    r->version = sqlite3_column_int(st, 12);
    r->mode = sqlite3_column_int(st, 13);
    r->samples = (uint64_t)sqlite3_column_int64(st, 14);
    r->peak_rss_kb = (uint64_t)sqlite3_column_int64(st, 15);
    r->threads = (uint64_t)sqlite3_column_int64(st, 16);
    r->start_us = sqlite3_column_int64(st, 17);
    r->end_us = sqlite3_column_int64(st, 18);
    r->first_t_ns = sqlite3_column_int64(st, 19);
    r->last_t_ns = sqlite3_column_int64(st, 20);
    r->next_seq = (uint64_t)sqlite3_column_int64(st, 21);
    r->bytes = (uint64_t)sqlite3_column_int64(st, 22);
    r->trailer = sqlite3_column_int(st, 23);
    r->created_us = sqlite3_column_int64(st, 24);
    r->updated_us = sqlite3_column_int64(st, 25);
    r->thin_removed = (uint64_t)sqlite3_column_int64(st, 26);
    r->thin_period_us = (uint64_t)sqlite3_column_int64(st, 27);
    if (oom) {
        vps_run_fini(r);
        return VP_ENOMEM;
    }
    return VP_OK;
}

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* bind_run binds every VPS_RUN_COLS parameter (?1..?28) from r. */
static void bind_run(sqlite3_stmt *st, const vps_run *r)
{
    sqlite3_bind_int64(st, 1, r->rid);
    bind_str(st, 2, r->id);
    bind_str(st, 3, r->project ? r->project : "");
    bind_str(st, 4, r->function ? r->function : "");
    bind_str(st, 5, r->host ? r->host : "");
    bind_str(st, 6, r->source ? r->source : "");
    bind_str(st, 7, r->interp ? r->interp : "");
    bind_str(st, 8, r->tags ? r->tags : "{}");
    bind_str(st, 9, r->error);
    bind_str(st, 10, r->status);
    sqlite3_bind_int64(st, 11, r->pid);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)r->period_us);
    sqlite3_bind_int(st, 13, r->version);
    sqlite3_bind_int(st, 14, r->mode);
    sqlite3_bind_int64(st, 15, (sqlite3_int64)r->samples);
    sqlite3_bind_int64(st, 16, (sqlite3_int64)r->peak_rss_kb);
    sqlite3_bind_int64(st, 17, (sqlite3_int64)r->threads);
    sqlite3_bind_int64(st, 18, r->start_us);
    sqlite3_bind_int64(st, 19, r->end_us);
    sqlite3_bind_int64(st, 20, r->first_t_ns);
    sqlite3_bind_int64(st, 21, r->last_t_ns);
    sqlite3_bind_int64(st, 22, (sqlite3_int64)r->next_seq);
    sqlite3_bind_int64(st, 23, (sqlite3_int64)r->bytes);
    sqlite3_bind_int(st, 24, r->trailer);
    sqlite3_bind_int64(st, 25, r->created_us);
    sqlite3_bind_int64(st, 26, r->updated_us);
    sqlite3_bind_int64(st, 27, (sqlite3_int64)r->thin_removed);
    sqlite3_bind_int64(st, 28, (sqlite3_int64)r->thin_period_us);
}

static int sq_get_run(vps_db *vdb, const char *id, vps_run *out)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_GET_RUN);
    if (!st)
        return VP_EIO;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = read_run(st, out);
    else if (rc == SQLITE_DONE)
        rc = VP_ENOTFOUND;
    else
        rc = sql_fail(db, "get run");
    done(st);
    return rc;
}

static int sq_insert_run(vps_db *vdb, vps_run *r)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_INSERT_RUN);
    if (!st)
        return VP_EIO;
    r->created_us = r->updated_us = now_us();
    bind_run(st, r);
    int rc = run_simple(db, st, "insert run");
    if (rc == VP_OK)
        r->rid = sqlite3_last_insert_rowid(db->conn);
    return rc;
}

static int sq_update_run(vps_db *vdb, const vps_run *r)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_UPDATE_RUN);
    if (!st)
        return VP_EIO;
    vps_run copy = *r; /* shallow: only updated_us differs */
    copy.updated_us = now_us();
    bind_run(st, &copy);
    return run_simple(db, st, "update run");
}

static int sq_delete_run(vps_db *vdb, int64_t rid)
{
    sq_db *db = (sq_db *)vdb;
    static const int ids[] = {ST_DELETE_SAMPLES, ST_DELETE_STACKS, ST_DELETE_NAMES,
                              ST_DELETE_THREADS, ST_DELETE_RUN};
    int frc = flush_samples(db);
    if (frc != VP_OK)
        return frc;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        sqlite3_stmt *st = stmt(db, ids[i]);
        if (!st)
            return VP_EIO;
        sqlite3_bind_int64(st, 1, rid);
        int rc = run_simple(db, st, "delete run");
        if (rc != VP_OK)
            return rc;
    }
    return VP_OK;
}

static void bind_filter(sqlite3_stmt *st, const vps_run_filter *f)
{
    bind_str(st, 1, f->project);
    bind_str(st, 2, f->q && *f->q ? f->q : NULL);
}

static int sq_list_runs(vps_db *vdb, const vps_run_filter *f, vps_run **runs, size_t *n,
                     uint64_t *total)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *cnt = stmt(db, ST_COUNT_RUNS), *st = stmt(db, ST_LIST_RUNS);
    if (!cnt || !st)
        return VP_EIO;
    bind_filter(cnt, f);
    int rc = sqlite3_step(cnt);
    uint64_t count = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(cnt, 0) : 0;
    done(cnt);
    if (rc != SQLITE_ROW)
        return sql_fail(db, "count runs");

    uint32_t limit = f->limit > VP_MAX_RUNS_PAGE ? VP_MAX_RUNS_PAGE : f->limit;
    vps_run *out = vp_calloc(limit ? limit : 1, sizeof(*out));
    if (!out)
        return VP_ENOMEM;
    size_t got = 0;
    bind_filter(st, f);
    sqlite3_bind_int64(st, 3, limit);
    sqlite3_bind_int64(st, 4, f->offset);
    rc = VP_OK;
    while (got < limit) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            rc = sql_fail(db, "list runs");
            break;
        }
        if ((rc = read_run(st, &out[got])) != VP_OK)
            break;
        got++;
    }
    done(st);
    return vps__runs_finish(rc, out, got, count, runs, n, total);
}

static int sq_put_name(vps_db *vdb, int64_t rid, uint64_t addr, const char *name, size_t len)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_PUT_NAME);
    if (!st)
        return VP_EIO;
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)addr);
    sqlite3_bind_blob(st, 3, len ? name : "", (int)len, SQLITE_STATIC);
    return run_simple(db, st, "put name");
}

/* load_frames converts a frames blob into db's scratch array. */
static int load_frames(sq_db *db, const void *blob, int bytes, uint32_t *n)
{
    return vps__frames_load("sqlite", blob, bytes, &db->frames, &db->frames_cap, n);
}

static int sq_put_stack(vps_db *vdb, int64_t rid, uint64_t hash, const uint64_t *frames,
                     uint32_t n, int64_t *stack_id)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *get = stmt(db, ST_GET_STACK), *ins = stmt(db, ST_INSERT_STACK);
    if (!get || !ins)
        return VP_EIO;
    uint8_t *blob;
    size_t bytes;
    int rc = vps__frames_blob(frames, n, &blob, &bytes);
    if (rc != VP_OK)
        return rc;
    int64_t id = (int64_t)(hash & (uint64_t)INT64_MAX);
    rc = VP_EFULL;
    for (unsigned probe = 0; probe < VP_MAX_STACK_PROBES; probe++) {
        sqlite3_bind_int64(get, 1, rid);
        sqlite3_bind_int64(get, 2, id);
        int s = sqlite3_step(get);
        if (s == SQLITE_ROW) {
            int same = (size_t)sqlite3_column_bytes(get, 0) == bytes &&
                       (bytes == 0 || memcmp(sqlite3_column_blob(get, 0), blob, bytes) == 0);
            done(get);
            if (same) {
                rc = VP_OK;
                break;
            }
            id = (int64_t)(((uint64_t)id + 1) & (uint64_t)INT64_MAX); /* collision */
            continue;
        }
        done(get);
        if (s != SQLITE_DONE) {
            rc = sql_fail(db, "get stack");
            break;
        }
        sqlite3_bind_int64(ins, 1, rid);
        sqlite3_bind_int64(ins, 2, id);
        sqlite3_bind_blob(ins, 3, blob, (int)bytes, SQLITE_STATIC);
        rc = run_simple(db, ins, "insert stack");
        break;
    }
    vp_free(blob);
    if (rc == VP_EFULL)
        vp_error("stack id space around %llx is full", (unsigned long long)hash);
    if (rc == VP_OK)
        *stack_id = id;
    return rc;
}

/* ---- samples (sample_block.h) ---- */

/* block_data checks the block of a row whose count is column ncol and data
 * column dcol. */
static int block_data(sqlite3_stmt *st, int ncol, int dcol, const uint8_t **data, uint32_t *n)
{
    const void *blob = sqlite3_column_blob(st, dcol);
    int bytes = sqlite3_column_bytes(st, dcol);
    int rc = vps_block_check("sqlite", sqlite3_column_int64(st, ncol), blob,
                             bytes < 0 ? 0 : (size_t)bytes, n);
    if (rc == VP_OK)
        *data = blob;
    return rc;
}

/* flush_samples inserts the pending samples as one block. They are gone
 * from pend either way; on failure the caller's transaction is rolled
 * back. */
static int flush_samples(sq_db *db)
{
    const vps_block_pend *p = &db->pend;
    unsigned n = p->n;
    if (n == 0)
        return VP_OK;
    vps_block_clear(&db->pend);
    sqlite3_stmt *st = stmt(db, ST_PUT_SAMPLE);
    if (!st)
        return VP_EIO;
    sqlite3_bind_int64(st, 1, p->rid);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)p->first);
    sqlite3_bind_int64(st, 3, n);
    sqlite3_bind_int64(st, 4, p->t_min);
    sqlite3_bind_int64(st, 5, p->t_max);
    sqlite3_bind_blob(st, 6, p->data, (int)(n * VPS_BLOCK_RECORD), SQLITE_STATIC);
    return run_simple(db, st, "put samples");
}

static int flush_pending(void *db)
{
    return flush_samples(db);
}

static int sq_put_sample(vps_db *vdb, int64_t rid, const vps_sample_row *row)
{
    sq_db *db = (sq_db *)vdb;
    return vps_block_put(&db->pend, "sqlite", rid, row, flush_pending, db);
}

static int sq_put_thread(vps_db *vdb, int64_t rid, uint64_t thread, int *is_new)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_PUT_THREAD);
    if (!st)
        return VP_EIO;
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)thread);
    int rc = run_simple(db, st, "put thread");
    if (rc == VP_OK)
        *is_new = sqlite3_changes(db->conn) > 0;
    return rc;
}

static int sq_each_name(vps_db *vdb, int64_t rid, vps_name_cb cb, void *ctx)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_EACH_NAME);
    if (!st)
        return VP_EIO;
    sqlite3_bind_int64(st, 1, rid);
    int rc = VP_OK, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const void *name = sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        if ((rc = cb(ctx, (uint64_t)sqlite3_column_int64(st, 0), name ? name : "",
                     (size_t)len)) != 0)
            break;
    }
    if (rc == VP_OK && s != SQLITE_DONE)
        rc = sql_fail(db, "names");
    done(st);
    return rc;
}

/* Every distinct stack with its sample count, in stack id order (as the
 * GROUP BY of a row per sample gave them); a stack id without its stacks
 * row is left out, as a join would. */
static int sq_each_stack_count(vps_db *vdb, int64_t rid, vps_stack_count_cb cb, void *ctx)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_EACH_STACK_COUNT), *get = stmt(db, ST_GET_STACK);
    vps_stack_tally *list = NULL;
    size_t k = 0;
    int rc = st && get ? flush_samples(db) : VP_EIO, s = SQLITE_DONE;
    if (rc != VP_OK)
        return rc;
    vps_block_counts_reset(&db->counts);
    sqlite3_bind_int64(st, 1, rid);
    while (rc == VP_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *data;
        uint32_t n;
        if ((rc = block_data(st, 0, 1, &data, &n)) != VP_OK)
            break;
        rc = vps_block_counts_add(&db->counts, data, n);
    }
    if (rc == VP_OK && s != SQLITE_DONE)
        rc = sql_fail(db, "stack counts");
    done(st);
    if (rc == VP_OK)
        rc = vps_block_counts_list(&db->counts, &list, &k);
    for (size_t i = 0; rc == VP_OK && i < k; i++) {
        sqlite3_bind_int64(get, 1, rid);
        sqlite3_bind_int64(get, 2, list[i].id);
        s = sqlite3_step(get);
        uint32_t n = 0;
        if (s == SQLITE_ROW) {
            rc = load_frames(db, sqlite3_column_blob(get, 0), sqlite3_column_bytes(get, 0), &n);
            done(get);
            if (rc == VP_OK)
                rc = cb(ctx, list[i].id, db->frames, n, list[i].n);
        } else {
            done(get);
            if (s != SQLITE_DONE)
                rc = sql_fail(db, "get stack");
        }
    }
    vp_free(list);
    return rc;
}

static int sq_each_sample(vps_db *vdb, int64_t rid, int64_t from_ns, int64_t to_ns,
                       vps_sample_cb cb, void *ctx)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_EACH_SAMPLE);
    if (!st)
        return VP_EIO;
    int rc = flush_samples(db), s = SQLITE_DONE;
    if (rc != VP_OK)
        return rc;
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, from_ns);
    sqlite3_bind_int64(st, 3, to_ns);
    while (rc == VP_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *data;
        uint32_t n;
        if ((rc = block_data(st, 0, 1, &data, &n)) != VP_OK)
            break;
        for (uint32_t i = 0; i < n; i++) {
            vps_sample_row row;
            vps_block_decode(data + (size_t)i * VPS_BLOCK_RECORD, &row);
            if (row.t_ns < from_ns || row.t_ns > to_ns)
                continue;
            if ((rc = cb(ctx, &row)) != 0)
                break;
        }
    }
    if (rc == VP_OK && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = sql_fail(db, "samples");
    done(st);
    return rc;
}

static int sq_get_stack(vps_db *vdb, int64_t rid, int64_t stack_id, uint64_t **frames, uint32_t *n)
{
    sq_db *db = (sq_db *)vdb;
    sqlite3_stmt *st = stmt(db, ST_GET_STACK);
    if (!st)
        return VP_EIO;
    sqlite3_bind_int64(st, 1, rid);
    sqlite3_bind_int64(st, 2, stack_id);
    int rc, s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        uint32_t count = 0;
        rc = load_frames(db, sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0), &count);
        if (rc == VP_OK) {
            uint64_t *copy = vp_malloc((count ? count : 1) * sizeof(uint64_t));
            if (!copy) {
                rc = VP_ENOMEM;
            } else {
                if (count)
                    memcpy(copy, db->frames, (size_t)count * sizeof(uint64_t));
                *frames = copy;
                *n = count;
            }
        }
    } else if (s == SQLITE_DONE) {
        rc = VP_ENOTFOUND;
    } else {
        rc = sql_fail(db, "get stack");
    }
    done(st);
    return rc;
}

static const vps_store_ops sqlite_ops = {
    .name = "sqlite",
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .free = sq_free,
    .get_run = sq_get_run,
    .insert_run = sq_insert_run,
    .update_run = sq_update_run,
    .delete_run = sq_delete_run,
    .list_runs = sq_list_runs,
    .put_name = sq_put_name,
    .put_stack = sq_put_stack,
    .put_sample = sq_put_sample,
    .put_thread = sq_put_thread,
    .each_name = sq_each_name,
    .each_stack_count = sq_each_stack_count,
    .each_sample = sq_each_sample,
    .get_stack = sq_get_stack,
};
