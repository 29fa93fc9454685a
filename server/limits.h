/*
 * limits.h - the server's own bounds, kept in the style of common/vp_limits.h.
 *
 * These belong in common/vp_limits.h; until the lead moves them there, each is
 * guarded so that the move cannot define a value twice.
 */
#ifndef VPS_LIMITS_H
#define VPS_LIMITS_H

#include "vp_limits.h"

/* Requests whose SQLite work is queued or running. Each holds its request
 * (and for uploads the whole body) in memory, so past this the server answers
 * 503, which relays retry, instead of growing without bound. */
#ifndef VP_MAX_SERVER_JOBS
#define VP_MAX_SERVER_JOBS 256u
#endif

/* An upload is stored in slices of this many input bytes, one transaction
 * each, so one big file does not hold the single SQLite writer for minutes
 * while batches from relays wait. Must hold the largest record. */
#ifndef VP_UPLOAD_SLICE_BYTES
#define VP_UPLOAD_SLICE_BYTES (8u * 1024u * 1024u)
#endif

/* Runs one GET /api/runs may return (API.md: "max 1000"). */
#ifndef VP_MAX_RUNS_PAGE
#define VP_MAX_RUNS_PAGE 1000u
#endif

/* Tags in an OPEN payload: a handful in practice; the bound keeps one run's
 * metadata small enough to list a thousand runs in one response. */
#ifndef VP_MAX_TAGS
#define VP_MAX_TAGS 64u
#endif

/* Stack ids are 63-bit hashes of the frames; on a collision the next id is
 * tried. More than this many taken neighbours means something is wrong. */
#ifndef VP_MAX_STACK_PROBES
#define VP_MAX_STACK_PROBES 64u
#endif

/* Distinct stacks remembered per ingest slice to skip the SQL lookup for
 * repeated stacks; beyond it the lookup simply goes to SQLite. */
#ifndef VP_STACK_CACHE_SLOTS
#define VP_STACK_CACHE_SLOTS 4096u
#endif

/* Bytes of frames that cache may hold: a deep stack is 8 KiB, so this keeps
 * hundreds of them without letting a hostile profile of 64K-deep stacks
 * pin gigabytes. */
#ifndef VP_STACK_CACHE_BYTES
#define VP_STACK_CACHE_BYTES (4u * 1024u * 1024u)
#endif

/* Samples either store keeps in one row (sample_block.h): inserting or
 * reading a row costs SQLite about a microsecond and PostgreSQL (a COPY
 * row) about 2.5 whatever its size, so a block of thousands makes that
 * per-sample cost vanish, while a query of a narrow window reads at most
 * two partial blocks (4096 samples x 40 bytes = 160 KiB each) it does not
 * need. Each connection buffers one block. */
#ifndef VP_STORE_BLOCK_SAMPLES
#define VP_STORE_BLOCK_SAMPLES 4096u
#endif

/* Samples one vmpv.thinned record may say it took in, and the removed
 * samples a run may count in all: far above any real profile (a batch holds
 * thousands), and small enough that a run's samples plus its removed ones
 * stay a JSON integer (int64). */
#ifndef VP_MAX_THINNED_SAMPLES
#define VP_MAX_THINNED_SAMPLES (1ull << 50)
#endif

static_assert(VP_STORE_BLOCK_SAMPLES >= 1 && VP_STORE_BLOCK_SAMPLES <= (1u << 20),
              "a block's blob must stay far below SQLite's and PostgreSQL's 1 GB limits");
static_assert(VP_UPLOAD_SLICE_BYTES > VP_MAX_RECORD_BYTES, "a record must fit a slice");
static_assert(VP_MAX_RUNS_PAGE > 0 && VP_MAX_SERVER_JOBS > 0, "no zero limits");
static_assert((VP_STACK_CACHE_SLOTS & (VP_STACK_CACHE_SLOTS - 1)) == 0, "power of two");

/* Symbol names a PostgreSQL connection buffers before sending them as one
 * INSERT of two arrays (store_pg.c): one statement per name would cost a
 * round trip each. Bounded in bytes too, since one name may be
 * VP_MAX_NAME_LEN long. */
#ifndef VP_PG_NAME_ROWS
#define VP_PG_NAME_ROWS 4096u
#endif
#ifndef VP_PG_NAME_BYTES
#define VP_PG_NAME_BYTES (1024u * 1024u)
#endif

/* Rows of the old per-sample table one FETCH returns while a database of
 * schema version 1 or 2 is upgraded (store_pg.c, move_samples): libpq holds
 * a page whole (about 100 bytes a row, so ~6 MiB), and one round trip per
 * 64K rows costs nothing next to moving them. */
#ifndef VP_PG_UPGRADE_ROWS
#define VP_PG_UPGRADE_ROWS 65536u
#endif

/* Milliseconds a PostgreSQL transaction may sit idle before the database
 * ends it (idle_in_transaction_session_timeout). A write transaction holds
 * its run's lock; a server that stalls mid-transaction without its
 * connection closing (a stopped process, a network partition) would hold
 * it until TCP keepalive gives up, hours, while other servers' batches for
 * the run wait. Our transactions never idle for long: between statements a
 * server only parses one batch or upload slice. */
#ifndef VP_PG_IDLE_TXN_MS
#define VP_PG_IDLE_TXN_MS 60000u
#endif

static_assert(VP_PG_NAME_ROWS > 0 && VP_PG_UPGRADE_ROWS > 0 && VP_PG_IDLE_TXN_MS > 0,
              "no zero limits");
static_assert(VP_PG_UPGRADE_ROWS <= 1000000u && VP_PG_UPGRADE_ROWS <= INT32_MAX,
              "a page is held in memory whole");
static_assert(VP_PG_NAME_BYTES >= VP_MAX_NAME_LEN, "a name must fit the name buffer");

#endif
