/* vp_spool.c - see vp_spool.h. */
#include "vp_spool.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vp_err.h"
#include "vp_limits.h"
#include "vp_log.h"
#include "vp_mem.h"

/* A run's info never changes once stored (it is the run's HEADER and first
 * sample time) and is never deleted, so a cached copy cannot go stale. */
typedef struct info_slot {
    uint8_t run_id[VP_RUN_ID_LEN];
    uint8_t used;
    vp_spool_run_info info;
} info_slot;

struct vp_spool {
    sqlite3 *db;
    pthread_mutex_t mu;
    uint64_t max_bytes;
    uint64_t bytes; /* this connection's view; refreshed before each put */
    sqlite3_stmt *put, *put_body, *exists, *seen, *bytes_q, *runs, *peek, *del, *mark, *info_get, *info_put,
        *keep_copy;
    info_slot infos[VP_SPOOL_INFO_CACHE];
};

/* Spool format 2 (user_version 2): a batch's metadata and its body live in
 * different tables. Format 1 kept the body in the batches row itself: a
 * WITHOUT ROWID row keeps up to a quarter page of its payload on the leaf,
 * so the (run_id, seq) tree had a handful of rows per 32 KiB page, and with
 * a hundred runs interleaving, every insert split or rebalanced such fat
 * pages somewhere in the middle of the tree: ~870 KiB read and ~360 KiB
 * written per 100 KB batch (1.0 ms), against ~100 KiB read (the WAL
 * checkpoint) and ~240 KiB written (0.5 ms) with the bodies appended to a
 * table of their own (BENCHMARKS.md, relay, "spool format 2"). */
static const char pragmas[] =
    /* For a new file. A commit writes its batches' bodies (~80 KB each from
     * 100 agents) and a few metadata pages (the two trees' leaves, the
     * total): 32 KiB pages made those few cost more than the body, 4 KiB
     * ones split a body into twenty frames; 16 KiB cost the relay the least
     * (BENCHMARKS.md, relay, "spool format 2"). */
    "PRAGMA page_size=16384;"
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    /* Inserts read the B-tree pages they land on; with SQLite's default 2 MB
     * cache, each batch's overflow pages pushed them out and every insert
     * read them again from the WAL. Part of the relay's stated memory bound. */
    "PRAGMA cache_size=-" VP_SPOOL_CACHE_KIB_STR ";"
    /* Statements that fire a trigger keep a statement journal of the pages
     * they change; in a file, that was two 32 KiB writes per insert. */
    "PRAGMA temp_store=MEMORY;";

/* A format 1 spool becomes format 2 when opened: its table is renamed
 * batches_v1 in the transaction that creates the new ones, then its rows
 * move a chunk at a time (move_from_format_1), and the last transaction
 * drops it and counts the total afresh (the insert trigger fired for every
 * moved row). */
static const char upgrade_from_1[] =
    "DROP TRIGGER IF EXISTS batches_added;"
    "DROP TRIGGER IF EXISTS batches_removed;"
    "DROP TRIGGER IF EXISTS batches_rewritten;"
    "DROP INDEX IF EXISTS batches_run_received;"
    "ALTER TABLE batches RENAME TO batches_v1;";

static const char upgrade_done[] =
    "BEGIN IMMEDIATE;"
    "DROP TABLE batches_v1;"
    "UPDATE totals SET bytes = (SELECT coalesce(sum(len),0) FROM batches)"
    " + (SELECT coalesce(sum(length(body)),0) FROM copies);"
    "PRAGMA user_version=2;"
    "COMMIT;";

static const char schema[] =
    /* Appended in id order and removed from the front as the server
     * confirms: the tree only ever grows at its right edge. */
    "CREATE TABLE IF NOT EXISTS bodies(id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
    /* Small rows: the forwarder's "which runs, oldest first" and the
     * largest-run query scan this table alone, never a body. */
    "CREATE TABLE IF NOT EXISTS batches("
    " run_id BLOB NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,"
    " received INTEGER NOT NULL DEFAULT (unixepoch()), len INTEGER NOT NULL,"
    " body_id INTEGER NOT NULL, PRIMARY KEY(run_id, seq)) WITHOUT ROWID;"
    /* Format 1's index; an older relay that was started on this file and
     * refused it still created it on the new table. */
    "DROP INDEX IF EXISTS batches_run_received;"
    "CREATE TABLE IF NOT EXISTS forwarded("
    " run_id BLOB PRIMARY KEY, next_seq INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS copies("
    " run_id BLOB NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL, body BLOB NOT NULL,"
    " PRIMARY KEY(run_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS run_info("
    " run_id BLOB PRIMARY KEY, version INTEGER, mode INTEGER, period_us INTEGER,"
    " first_t_ns INTEGER, seen INTEGER NOT NULL DEFAULT (unixepoch())) WITHOUT ROWID;"
    /* The bodies' total size, kept by triggers in the transactions that
     * change it: summing length(body) read every leaf page of the spool,
     * which the forwarder did after each pass (a fifth of the relay's CPU
     * with a 30 MB spool, more the longer the server is away). A spool
     * from before gets its row from one sum, in the same transaction that
     * adds the triggers. */
    "CREATE TABLE IF NOT EXISTS totals(id INTEGER PRIMARY KEY CHECK (id = 0),"
    " bytes INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO totals(id, bytes) SELECT 0,"
    " (SELECT coalesce(sum(len),0) FROM batches)"
    " + (SELECT coalesce(sum(length(body)),0) FROM copies);"
    "CREATE TRIGGER IF NOT EXISTS batches_added AFTER INSERT ON batches"
    " BEGIN UPDATE totals SET bytes = bytes + NEW.len; END;"
    /* A batch's body goes with it. */
    "CREATE TRIGGER IF NOT EXISTS batches_removed AFTER DELETE ON batches"
    " BEGIN UPDATE totals SET bytes = bytes - OLD.len;"
    " DELETE FROM bodies WHERE id = OLD.body_id; END;"
    "CREATE TRIGGER IF NOT EXISTS batches_rewritten AFTER UPDATE OF len ON batches"
    " BEGIN UPDATE totals SET bytes = bytes - OLD.len + NEW.len; END;"
    "CREATE TRIGGER IF NOT EXISTS copies_added AFTER INSERT ON copies"
    " BEGIN UPDATE totals SET bytes = bytes + length(NEW.body); END;"
    "CREATE TRIGGER IF NOT EXISTS copies_removed AFTER DELETE ON copies"
    " BEGIN UPDATE totals SET bytes = bytes - length(OLD.body); END;";

/* SQLite's own busy timeout sleeps 1, 2, 5, 10 ... 100 ms between tries:
 * a commit that meets a checkpoint's short lock would wait ten times longer
 * than the lock lasts. Try every 200 us at first, then every millisecond,
 * for up to ~20 s in all. */
static int busy_wait(void *arg, int tries)
{
    (void)arg;
    if (tries >= 20000)
        return 0;
    struct timespec ts = {0, tries < 100 ? 200000L : 1000000L};
    nanosleep(&ts, NULL);
    return 1;
}

/* The checkpointer's RESTART holds off new writers while it waits for
 * readers: give up after ~5 ms and try again at the next wake-up rather
 * than stall the intake. */
static int busy_wait_briefly(void *arg, int tries)
{
    (void)arg;
    if (tries >= 25)
        return 0;
    struct timespec ts = {0, 200000L};
    nanosleep(&ts, NULL);
    return 1;
}

static int prepare(vp_spool *s, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK
               ? VP_OK
               : VP_EIO;
}

static int has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    int found = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE type='table' AND name=?", -1,
                                   &st, NULL) == SQLITE_OK &&
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
                sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* Moves every row of batches_v1 into bodies and batches, a transaction per
 * VP_SPOOL_UPGRADE_CHUNK_BYTES of bodies and a checkpoint after each, so
 * that neither memory nor the WAL grows with the spool; a crash in between
 * leaves rows in both tables, and the next open goes on. Nothing else uses
 * the file yet. */
static int move_from_format_1(vp_spool *s, const char *path)
{
    sqlite3_stmt *first = NULL, *body = NULL, *row = NULL, *del = NULL;
    int rc = VP_EIO, done = 0;
    uint64_t moved = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT run_id, seq, kind, received, body FROM batches_v1"
                                  " ORDER BY run_id, seq LIMIT 1", -1, &first, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "INSERT INTO bodies(body) VALUES(?)", -1, &body, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "INSERT INTO batches(run_id, seq, kind, received, len, body_id)"
                                  " VALUES(?,?,?,?,?,?)", -1, &row, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "DELETE FROM batches_v1 WHERE run_id=? AND seq=?", -1, &del,
                           NULL) != SQLITE_OK)
        goto out;
    while (!done) {
        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            goto out;
        uint64_t chunk = 0;
        while (chunk < VP_SPOOL_UPGRADE_CHUNK_BYTES) {
            int step = sqlite3_step(first);
            if (step == SQLITE_DONE) {
                done = 1;
                break;
            }
            if (step != SQLITE_ROW)
                goto rollback;
            uint8_t run_id[VP_RUN_ID_LEN];
            sqlite3_int64 seq = sqlite3_column_int64(first, 1);
            int id_len = sqlite3_column_bytes(first, 0);
            if (id_len != VP_RUN_ID_LEN) { /* no relay wrote one: drop it, keep the rest */
                vp_warn("spool %s: dropping batch %lld, its run id has %d bytes", path, (long long)seq, id_len);
                sqlite3_bind_value(del, 1, sqlite3_column_value(first, 0)); /* a copy */
                sqlite3_bind_int64(del, 2, seq);
                sqlite3_reset(first);
                int d = sqlite3_step(del);
                sqlite3_reset(del);
                if (d != SQLITE_DONE)
                    goto rollback;
                continue;
            }
            memcpy(run_id, sqlite3_column_blob(first, 0), VP_RUN_ID_LEN);
            int len = sqlite3_column_bytes(first, 4);
            /* The body is read from the row in place: store it before the
             * old row is deleted. */
            sqlite3_bind_blob(body, 1, sqlite3_column_blob(first, 4), len, SQLITE_STATIC);
            int b = sqlite3_step(body);
            sqlite3_reset(body);
            sqlite3_bind_blob(row, 1, run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
            sqlite3_bind_int64(row, 2, seq);
            sqlite3_bind_int(row, 3, sqlite3_column_int(first, 2));
            sqlite3_bind_int64(row, 4, sqlite3_column_int64(first, 3));
            sqlite3_bind_int64(row, 5, len);
            sqlite3_bind_int64(row, 6, sqlite3_last_insert_rowid(s->db));
            int r = b == SQLITE_DONE ? sqlite3_step(row) : SQLITE_ERROR;
            sqlite3_reset(row);
            sqlite3_reset(first);
            sqlite3_bind_blob(del, 1, run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
            sqlite3_bind_int64(del, 2, seq);
            int d = r == SQLITE_DONE ? sqlite3_step(del) : SQLITE_ERROR;
            sqlite3_reset(del);
            if (d != SQLITE_DONE)
                goto rollback;
            chunk += (uint64_t)len;
            moved++;
        }
        if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            goto rollback;
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        if (!done)
            vp_info("spool %s: moving to format 2, %llu batches moved", path, (unsigned long long)moved);
    }
    rc = sqlite3_exec(s->db, upgrade_done, NULL, NULL, NULL) == SQLITE_OK ? VP_OK : VP_EIO;
    if (rc == VP_OK)
        vp_info("spool %s: moved to format 2 (bodies in their own table), %llu batches", path,
                (unsigned long long)moved);
    goto out;
rollback:
    vp_error("spool %s: moving to format 2 failed: %s", path, sqlite3_errmsg(s->db));
    sqlite3_reset(first);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
    sqlite3_finalize(first);
    sqlite3_finalize(body);
    sqlite3_finalize(row);
    sqlite3_finalize(del);
    return rc;
}

/* 0: a new file; 1: bodies inside the batches rows (before user_version
 * was set), or a move to format 2 under way; else the file's user_version. */
static int spool_format(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int format = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        format = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (format != 0)
        return format;
    if (has_table(db, "batches_v1"))
        return 1;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('batches') WHERE name='body'", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        format = 1;
    sqlite3_finalize(st);
    return format;
}

int vp_spool_open(const char *path, uint64_t max_bytes, vp_spool **out, char *err, size_t errlen)
{
    err[0] = '\0';
    vp_spool *s = vp_calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return VP_ENOMEM;
    }
    s->max_bytes = max_bytes;
    pthread_mutex_init(&s->mu, NULL);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_handler(s->db, busy_wait, NULL);
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    int format = spool_format(s->db);
    if (format > 2) {
        snprintf(err, errlen, "spool %s is format %d, newer than this relay's 2: use a newer relay or another --data",
                 path, format);
        goto fail; /* closing the connection rolls the transaction back */
    }
    if ((format == 1 && !has_table(s->db, "batches_v1") &&
         sqlite3_exec(s->db, upgrade_from_1, NULL, NULL, NULL) != SQLITE_OK) ||
        sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        (format == 0 && sqlite3_exec(s->db, "PRAGMA user_version=2", NULL, NULL, NULL) != SQLITE_OK) ||
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (format == 1 && move_from_format_1(s, path) != VP_OK)
        goto fail;
    if (prepare(s, "INSERT INTO batches(run_id, seq, kind, len, body_id) VALUES(?,?,?,?,?)", &s->put) ||
        prepare(s, "INSERT INTO bodies(body) VALUES(?)", &s->put_body) ||
        prepare(s, "SELECT 1 FROM batches WHERE run_id=? AND seq=?", &s->exists) ||
        prepare(s, "SELECT next_seq FROM forwarded WHERE run_id=?", &s->seen) ||
        prepare(s, "SELECT bytes FROM totals", &s->bytes_q) ||
        prepare(s, "SELECT run_id FROM batches GROUP BY run_id ORDER BY min(received), run_id LIMIT ?", &s->runs) ||
        prepare(s, "SELECT b.seq, b.kind, d.body FROM batches b JOIN bodies d ON d.id = b.body_id"
                   " WHERE b.run_id=? ORDER BY b.seq LIMIT ?", &s->peek) ||
        prepare(s, "DELETE FROM batches WHERE run_id=? AND seq=?", &s->del) ||
        prepare(s, "INSERT INTO forwarded(run_id, next_seq) VALUES(?,?) ON CONFLICT(run_id)"
                   " DO UPDATE SET next_seq=max(next_seq, excluded.next_seq)", &s->mark) ||
        prepare(s, "SELECT version, mode, period_us, first_t_ns FROM run_info WHERE run_id=?", &s->info_get) ||
        prepare(s, "INSERT OR REPLACE INTO run_info(run_id, version, mode, period_us, first_t_ns)"
                   " VALUES(?,?,?,?,?)", &s->info_put) ||
        prepare(s, "INSERT OR IGNORE INTO copies SELECT b.run_id, b.seq, b.kind, d.body"
                   " FROM batches b JOIN bodies d ON d.id = b.body_id"
                   " WHERE b.run_id=? AND b.seq=?", &s->keep_copy))
        goto fail;
    if (sqlite3_step(s->bytes_q) == SQLITE_ROW)
        s->bytes = (uint64_t)sqlite3_column_int64(s->bytes_q, 0);
    sqlite3_reset(s->bytes_q);
    *out = s;
    return VP_OK;
fail:
    if (!err[0])
        snprintf(err, errlen, "cannot open spool %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "?");
    vp_spool_close(s);
    return VP_EIO;
}

static uint64_t refresh_bytes(vp_spool *s)
{
    if (sqlite3_step(s->bytes_q) == SQLITE_ROW)
        s->bytes = (uint64_t)sqlite3_column_int64(s->bytes_q, 0);
    sqlite3_reset(s->bytes_q);
    return s->bytes;
}

/* Inserts one batch inside the caller's transaction; the caller holds mu. */
static void put_locked(vp_spool *s, vp_spool_put_req *q)
{
    q->result = VP_EIO;
    q->duplicate = 0;
    sqlite3_bind_blob(s->seen, 1, q->run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
    int step = sqlite3_step(s->seen);
    int forwarded = step == SQLITE_ROW && (uint64_t)sqlite3_column_int64(s->seen, 0) > q->seq;
    sqlite3_reset(s->seen);
    if (forwarded) {
        q->duplicate = 1;
        q->result = VP_OK;
        return;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return;
    /* The forwarder deletes with its own connection, so our running total
     * would only grow; ask the file when we look close to the bound. */
    if (s->bytes + q->len > s->max_bytes && refresh_bytes(s) + q->len > s->max_bytes) {
        q->result = VP_EFULL;
        return;
    }
    /* Inside our write transaction nobody else can add it between the
     * check and the insert. */
    sqlite3_bind_blob(s->exists, 1, q->run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s->exists, 2, (sqlite3_int64)q->seq);
    step = sqlite3_step(s->exists);
    sqlite3_reset(s->exists);
    if (step == SQLITE_ROW) {
        q->duplicate = 1;
        q->result = VP_OK;
        return;
    }
    if (step != SQLITE_DONE)
        return;
    sqlite3_bind_blob(s->put_body, 1, q->body, (int)q->len, SQLITE_STATIC);
    step = sqlite3_step(s->put_body);
    sqlite3_reset(s->put_body);
    sqlite3_clear_bindings(s->put_body);
    if (step == SQLITE_DONE) {
        sqlite3_bind_blob(s->put, 1, q->run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(s->put, 2, (sqlite3_int64)q->seq);
        sqlite3_bind_int(s->put, 3, q->kind);
        sqlite3_bind_int64(s->put, 4, (sqlite3_int64)q->len);
        sqlite3_bind_int64(s->put, 5, sqlite3_last_insert_rowid(s->db));
        step = sqlite3_step(s->put);
        sqlite3_reset(s->put);
        if (step != SQLITE_DONE) /* the rest of the transaction goes on: no body without its batch */
            sqlite3_exec(s->db, "DELETE FROM bodies WHERE id = last_insert_rowid()", NULL, NULL, NULL);
    }
    if (step != SQLITE_DONE) {
        vp_error("spool insert failed: %s", sqlite3_errmsg(s->db));
        return;
    }
    s->bytes += q->len;
    if (q->info) {
        sqlite3_bind_blob(s->info_put, 1, q->run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_int(s->info_put, 2, q->info->version);
        sqlite3_bind_int(s->info_put, 3, q->info->mode);
        sqlite3_bind_int64(s->info_put, 4, (sqlite3_int64)q->info->period_us);
        sqlite3_bind_int64(s->info_put, 5, q->info->first_t_ns);
        step = sqlite3_step(s->info_put);
        sqlite3_reset(s->info_put);
        if (step != SQLITE_DONE)
            return;
    }
    q->result = VP_OK;
}

int vp_spool_get_info(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN], vp_spool_run_info *out)
{
    /* Run ids are random: their first bytes spread runs over the slots. */
    uint64_t spread;
    memcpy(&spread, run_id, sizeof(spread));
    info_slot *slot = &s->infos[spread % VP_SPOOL_INFO_CACHE];
    pthread_mutex_lock(&s->mu);
    if (slot->used && memcmp(slot->run_id, run_id, VP_RUN_ID_LEN) == 0) {
        *out = slot->info;
        pthread_mutex_unlock(&s->mu);
        return VP_OK;
    }
    sqlite3_bind_blob(s->info_get, 1, run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
    int step = sqlite3_step(s->info_get);
    int rc = step == SQLITE_ROW ? VP_OK : step == SQLITE_DONE ? VP_ENOTFOUND : VP_EIO;
    if (rc == VP_OK) {
        out->version = (uint16_t)sqlite3_column_int(s->info_get, 0);
        out->mode = (uint8_t)sqlite3_column_int(s->info_get, 1);
        out->period_us = (uint64_t)sqlite3_column_int64(s->info_get, 2);
        out->first_t_ns = sqlite3_column_int64(s->info_get, 3);
        memcpy(slot->run_id, run_id, VP_RUN_ID_LEN);
        slot->info = *out;
        slot->used = 1;
    }
    sqlite3_reset(s->info_get);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int vp_spool_put_many(vp_spool *s, vp_spool_put_req *reqs, size_t n)
{
    pthread_mutex_lock(&s->mu);
    uint64_t bytes_before = s->bytes;
    int rc = VP_EIO;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK) {
        for (size_t i = 0; i < n; i++)
            put_locked(s, &reqs[i]);
        if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
            rc = VP_OK;
        else
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    if (rc != VP_OK) {
        vp_error("spool commit failed: %s", sqlite3_errmsg(s->db));
        s->bytes = bytes_before;
        for (size_t i = 0; i < n; i++)
            reqs[i].result = VP_EIO;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int vp_spool_put(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN], uint64_t seq, uint8_t kind,
                 const uint8_t *body, size_t len, int *duplicate)
{
    vp_spool_put_req q = {.run_id = run_id, .seq = seq, .kind = kind, .body = body, .len = len};
    int rc = vp_spool_put_many(s, &q, 1);
    *duplicate = q.duplicate;
    return rc == VP_OK ? q.result : rc;
}

int vp_spool_runs(vp_spool *s, uint8_t (*ids)[VP_RUN_ID_LEN], size_t cap)
{
    int n = 0, step;
    pthread_mutex_lock(&s->mu);
    sqlite3_bind_int64(s->runs, 1, (sqlite3_int64)cap);
    while ((step = sqlite3_step(s->runs)) == SQLITE_ROW && (size_t)n < cap) {
        if (sqlite3_column_bytes(s->runs, 0) != VP_RUN_ID_LEN)
            continue;
        memcpy(ids[n++], sqlite3_column_blob(s->runs, 0), VP_RUN_ID_LEN);
    }
    sqlite3_reset(s->runs);
    pthread_mutex_unlock(&s->mu);
    return step == SQLITE_ROW || step == SQLITE_DONE ? n : VP_EIO;
}

int vp_spool_peek(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN], vp_spool_item *items,
                  size_t cap)
{
    int n = 0, step;
    pthread_mutex_lock(&s->mu);
    sqlite3_bind_blob(s->peek, 1, run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s->peek, 2, (sqlite3_int64)cap);
    while ((step = sqlite3_step(s->peek)) == SQLITE_ROW && (size_t)n < cap) {
        vp_spool_item *it = &items[n];
        it->len = (size_t)sqlite3_column_bytes(s->peek, 2);
        it->body = vp_malloc(it->len);
        if (!it->body)
            break;
        memcpy(it->body, sqlite3_column_blob(s->peek, 2), it->len);
        memcpy(it->run_id, run_id, VP_RUN_ID_LEN);
        it->seq = (uint64_t)sqlite3_column_int64(s->peek, 0);
        it->kind = (uint8_t)sqlite3_column_int(s->peek, 1);
        n++;
    }
    sqlite3_reset(s->peek);
    pthread_mutex_unlock(&s->mu);
    return step == SQLITE_ROW || step == SQLITE_DONE ? n : VP_EIO;
}

void vp_spool_items_free(vp_spool_item *items, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        vp_free(items[i].body);
        items[i].body = NULL;
    }
}

/* One forwarded batch, inside vp_spool_done's transaction. */
static int done_one(vp_spool *s, const vp_spool_done_req *r)
{
    int c = SQLITE_DONE;
    if (r->keep_copy) {
        sqlite3_bind_blob(s->keep_copy, 1, r->run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(s->keep_copy, 2, (sqlite3_int64)r->seq);
        c = sqlite3_step(s->keep_copy);
        sqlite3_reset(s->keep_copy);
    }
    sqlite3_bind_blob(s->mark, 1, r->run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s->mark, 2, (sqlite3_int64)(r->seq + 1));
    int a = sqlite3_step(s->mark);
    sqlite3_reset(s->mark);
    sqlite3_bind_blob(s->del, 1, r->run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s->del, 2, (sqlite3_int64)r->seq);
    int b = sqlite3_step(s->del);
    sqlite3_reset(s->del);
    return a == SQLITE_DONE && b == SQLITE_DONE && c == SQLITE_DONE ? VP_OK : VP_EIO;
}

int vp_spool_done(vp_spool *s, const vp_spool_done_req *reqs, size_t n)
{
    int rc = VP_EIO;
    pthread_mutex_lock(&s->mu);
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto done;
    size_t i = 0;
    while (i < n && done_one(s, &reqs[i]) == VP_OK)
        i++;
    if (i == n && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        rc = VP_OK;
    else
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
done:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int vp_spool_copies_ready(vp_spool *s, uint8_t (*ids)[VP_RUN_ID_LEN], size_t cap)
{
    sqlite3_stmt *st = NULL;
    int n = 0, step = SQLITE_ERROR;
    pthread_mutex_lock(&s->mu);
    if (sqlite3_prepare_v2(s->db, "SELECT run_id FROM copies WHERE kind=3 LIMIT ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)cap);
        while ((step = sqlite3_step(st)) == SQLITE_ROW && (size_t)n < cap) {
            if (sqlite3_column_bytes(st, 0) == VP_RUN_ID_LEN)
                memcpy(ids[n++], sqlite3_column_blob(st, 0), VP_RUN_ID_LEN);
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return step == SQLITE_DONE || step == SQLITE_ROW ? n : VP_EIO;
}

int vp_spool_copies_each(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN],
                         int (*fn)(void *ctx, const uint8_t *body, size_t len), void *ctx)
{
    sqlite3_stmt *st = NULL;
    int rc = VP_EIO, step = SQLITE_ERROR;
    pthread_mutex_lock(&s->mu);
    if (sqlite3_prepare_v2(s->db, "SELECT body FROM copies WHERE run_id=? ORDER BY seq", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
        rc = VP_OK;
        while (rc == VP_OK && (step = sqlite3_step(st)) == SQLITE_ROW)
            rc = fn(ctx, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
        if (rc == VP_OK && step != SQLITE_DONE)
            rc = VP_EIO;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int vp_spool_copies_drop(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN])
{
    sqlite3_stmt *st = NULL;
    int rc = VP_EIO;
    pthread_mutex_lock(&s->mu);
    if (sqlite3_prepare_v2(s->db, "DELETE FROM copies WHERE run_id=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_DONE)
            rc = VP_OK;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int vp_spool_largest_run(vp_spool *s, uint8_t run_id[VP_RUN_ID_LEN], uint64_t *bytes)
{
    sqlite3_stmt *st = NULL;
    int rc = VP_EIO;
    pthread_mutex_lock(&s->mu);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT run_id, sum(len) FROM batches WHERE kind=2"
                           " GROUP BY run_id ORDER BY 2 DESC LIMIT 1", -1, &st, NULL) != SQLITE_OK)
        goto done;
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        rc = VP_ENOTFOUND;
    } else if (step == SQLITE_ROW && sqlite3_column_bytes(st, 0) == VP_RUN_ID_LEN) {
        memcpy(run_id, sqlite3_column_blob(st, 0), VP_RUN_ID_LEN);
        *bytes = (uint64_t)sqlite3_column_int64(st, 1);
        rc = VP_OK;
    }
done:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int64_t vp_spool_rewrite_data(vp_spool *s, const uint8_t run_id[VP_RUN_ID_LEN],
                              vp_spool_rewrite_fn fn, void *ctx)
{
    sqlite3_stmt *sel = NULL, *upd = NULL, *upd_len = NULL;
    int64_t freed = 0;
    int ok = 0;
    pthread_mutex_lock(&s->mu);
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_prepare_v2(s->db, "SELECT b.seq, b.body_id, d.body FROM batches b"
                                  " JOIN bodies d ON d.id = b.body_id"
                                  " WHERE b.run_id=? AND b.kind=2 ORDER BY b.seq",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "UPDATE bodies SET body=? WHERE id=?", -1, &upd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "UPDATE batches SET len=? WHERE run_id=? AND seq=?", -1, &upd_len,
                           NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_blob(sel, 1, run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(sel)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(sel, 0);
        sqlite3_int64 body_id = sqlite3_column_int64(sel, 1);
        const uint8_t *body = sqlite3_column_blob(sel, 2);
        size_t len = (size_t)sqlite3_column_bytes(sel, 2);
        uint8_t *nb = NULL;
        size_t nlen = 0;
        if (fn(ctx, seq, body, len, &nb, &nlen) != VP_OK || !nb)
            continue;
        if (nlen < len) {
            sqlite3_bind_blob(upd, 1, nb, (int)nlen, SQLITE_STATIC);
            sqlite3_bind_int64(upd, 2, body_id);
            sqlite3_bind_int64(upd_len, 1, (sqlite3_int64)nlen);
            sqlite3_bind_blob(upd_len, 2, run_id, VP_RUN_ID_LEN, SQLITE_STATIC);
            sqlite3_bind_int64(upd_len, 3, (sqlite3_int64)seq);
            int u = sqlite3_step(upd), l = sqlite3_step(upd_len);
            sqlite3_reset(upd);
            sqlite3_reset(upd_len);
            if (u != SQLITE_DONE || l != SQLITE_DONE) {
                vp_free(nb);
                goto rollback; /* a body and its length must not disagree */
            }
            freed += (int64_t)(len - nlen);
        }
        vp_free(nb);
    }
    if (step != SQLITE_DONE)
        goto rollback;
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    sqlite3_finalize(upd_len);
    sel = upd = upd_len = NULL;
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
        ok = 1;
        s->bytes = s->bytes > (uint64_t)freed ? s->bytes - (uint64_t)freed : 0;
        goto out;
    }
rollback:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    sqlite3_finalize(upd_len);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
    pthread_mutex_unlock(&s->mu);
    return ok ? freed : VP_EIO;
}

uint64_t vp_spool_bytes(vp_spool *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t b = refresh_bytes(s);
    pthread_mutex_unlock(&s->mu);
    return b;
}

/* ---- background checkpoints ---------------------------------------------- */

struct vp_spool_checkpointer {
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wal_pages; /* the WAL's size at the last commit that woke us, 0: none */
    int page_size; /* of the spool file, to turn byte limits into pages */
    int quit;
    uint64_t done;
};

/* Runs in the committing thread, after each commit of a handed connection:
 * only signals, the checkpoint itself happens on the checkpointer's thread. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    vp_spool_checkpointer *c = arg;
    if ((uint64_t)pages * (uint64_t)c->page_size >= VP_SPOOL_CHECKPOINT_BYTES) {
        pthread_mutex_lock(&c->mu);
        c->wal_pages = pages;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    return SQLITE_OK;
}

static void *checkpoint_main(void *arg)
{
    vp_spool_checkpointer *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!c->wal_pages && !c->quit)
            pthread_cond_wait(&c->cv, &c->mu);
        int pages = c->wal_pages, quit = c->quit;
        c->wal_pages = 0;
        pthread_mutex_unlock(&c->mu);
        /* PASSIVE never makes a writer wait: it copies what no reader still
         * needs and syncs the database file. But under steady commits it is
         * never complete, and SQLite resets the WAL only after a complete
         * one: so once the WAL passes its bound, a RESTART (which makes
         * writers wait) finishes the little PASSIVE left and resets it. */
        int log = 0, copied = 0;
        uint64_t restart = VP_SPOOL_WAL_RESTART_BYTES / (uint64_t)c->page_size;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
        if (rc == SQLITE_OK && ((uint64_t)pages >= restart || (uint64_t)log >= restart)) {
            sqlite3_busy_handler(c->db, busy_wait_briefly, NULL);
            rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_RESTART, &log, &copied);
            sqlite3_busy_handler(c->db, busy_wait, NULL);
        }
        if (rc == SQLITE_OK) {
            pthread_mutex_lock(&c->mu);
            c->done++;
            pthread_mutex_unlock(&c->mu);
        } else if (rc != SQLITE_BUSY) {
            vp_warn("spool checkpoint failed: %s", sqlite3_errmsg(c->db));
        }
        if (quit)
            break;
    }
    return NULL;
}

int vp_spool_checkpointer_start(const char *path, vp_spool_checkpointer **out, char *err, size_t errlen)
{
    vp_spool_checkpointer *c = vp_calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return VP_ENOMEM;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_handler(c->db, busy_wait, NULL);
    /* A connection that has not read the file does not know it is in WAL
     * mode, and its checkpoints would do nothing. */
    sqlite3_stmt *ps = NULL;
    if (sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "PRAGMA page_size", -1, &ps, NULL) != SQLITE_OK)
        goto fail;
    c->page_size = sqlite3_step(ps) == SQLITE_ROW ? sqlite3_column_int(ps, 0) : 0;
    sqlite3_finalize(ps);
    if (c->page_size < 512)
        goto fail;
    if (pthread_create(&c->thread, NULL, checkpoint_main, c) != 0)
        goto fail;
    *out = c;
    return VP_OK;
fail:
    snprintf(err, errlen, "cannot open spool %s for checkpoints: %s", path,
             c->db ? sqlite3_errmsg(c->db) : "cannot start a thread");
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    vp_free(c);
    return VP_EIO;
}

void vp_spool_hand_checkpoints(vp_spool *s, vp_spool_checkpointer *c)
{
    pthread_mutex_lock(&s->mu);
    sqlite3_wal_autocheckpoint(s->db, 0);
    sqlite3_wal_hook(s->db, on_wal_commit, c);
    pthread_mutex_unlock(&s->mu);
}

uint64_t vp_spool_checkpoints(const vp_spool_checkpointer *c)
{
    pthread_mutex_lock((pthread_mutex_t *)&c->mu);
    uint64_t n = c->done;
    pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
    return n;
}

void vp_spool_checkpointer_stop(vp_spool_checkpointer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->quit = 1;
    c->wal_pages = 1; /* one last pass */
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    vp_free(c);
}

void vp_spool_close(vp_spool *s)
{
    if (!s)
        return;
    sqlite3_stmt *all[] = {s->put, s->put_body, s->exists,  s->seen,    s->bytes_q, s->runs,
                           s->peek, s->del,     s->mark,    s->info_get, s->info_put, s->keep_copy};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sqlite3_finalize(all[i]);
    if (s->db)
        sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    vp_free(s);
}
