/*
 * vp_limits.h - every size and count bound in vmprof-viewer, with its reason.
 *
 * A length read from a file or a peer is compared with one of these before it
 * is used to index or allocate. None of them means "unlimited" when zero.
 */
#ifndef VP_LIMITS_H
#define VP_LIMITS_H

#include <assert.h>

/* vmprof writes at most 1019 stack entries (an 8 KiB buffer); its own reader
 * refuses more than 65536. We accept what vmprof's reader accepts. */
#define VP_MAX_STACK_DEPTH 65536u

/* vmprof's names are cut at ~1 KiB by fixed buffers; 64 KiB is generous and
 * still keeps a hostile length from allocating much. */
#define VP_MAX_NAME_LEN 65536u

/* META keys and values are tiny ("os", "linux"). */
#define VP_MAX_META_LEN 4096u

/* Interpreter name is a u8-length field in the HEADER record. */
#define VP_MAX_INTERP_LEN 255u

/* The largest single vmprof record we must be able to hold in a buffer:
 * a STACKTRACE of VP_MAX_STACK_DEPTH entries plus head and tail words. */
#define VP_MAX_RECORD_BYTES (1u + 8u + 8u + 8u * VP_MAX_STACK_DEPTH + 8u + 8u + 8u)

/* One batch's decompressed payload. Big enough for many records and for the
 * largest record; small enough that a relay can hold hundreds in memory. */
#define VP_MAX_BATCH_RAW (8u * 1024u * 1024u)

/* The agent cuts a DATA batch once it holds this many raw bytes... */
#define VP_BATCH_TARGET_RAW (256u * 1024u)
/* ... or this many samples (deep stacks make bytes a poor measure of work
 * for the relay's and server's per-sample paths), or is 0.5 s old. */
#define VP_BATCH_TARGET_SAMPLES 4096u

/* The shared token travels in every batch header. */
#define VP_MAX_TOKEN_LEN 256u

/* Reasons in acknowledgements are one log line. */
#define VP_MAX_REASON_LEN 512u

/* Client-to-agent JSON frames: a start request with tags fits easily. */
#define VP_MAX_CLIENT_FRAME (64u * 1024u)

/* Strings in run metadata (project, function, host, tag values). */
#define VP_MAX_META_STRING 1024u

/* HTTP request bodies the server accepts: a batch (header + token + LZ4
 * bound of the raw maximum) or an uploaded plain profile file. */
#define VP_MAX_HTTP_BATCH_BODY (VP_MAX_BATCH_RAW + VP_MAX_BATCH_RAW / 255u + 1024u)
#define VP_MAX_UPLOAD_BYTES (1024u * 1024u * 1024u)

/* Memory series buckets per request: more than any screen has pixels. */
#define VP_MAX_MEMORY_BUCKETS 5000u

/* Client sessions one agent serves at once; each holds a file and a buffer. */
#define VP_MAX_AGENT_SESSIONS 1024u

/* Batches the agent keeps in memory waiting for the relay's acknowledgement. */
#define VP_MAX_AGENT_QUEUE 4096u

/* Page cache of each spool connection (the relay has two: intake and
 * forwarder), in KiB; a string too, for the PRAGMA. */
#define VP_SPOOL_CACHE_KIB 16384
#define VP_SPOOL_CACHE_KIB_STR "16384"

/* Runs whose header layout each spool connection remembers in memory
 * (direct-mapped by run id, ~48 bytes each): the relay reads it for every
 * batch it prepares, and a query paid for a read transaction and, as the
 * intake's commits had changed the file meanwhile, rereading the table's
 * pages. A collision only costs one query. */
#define VP_SPOOL_INFO_CACHE 1024u

/* The relay's spool checkpoints its WAL in the background once commits have
 * grown it to this size (SQLite's own automatic threshold: 1000 pages,
 * ~4 MiB at its default page size)... */
#define VP_SPOOL_CHECKPOINT_BYTES (4u * 1024u * 1024u)
/* ... but a passive checkpoint under steady commits never completes, and
 * only a complete one lets SQLite reuse the WAL from its start: once the WAL
 * holds this much, the checkpointer restarts it, making commits wait for the
 * little the passive pass left. One short stall per 32 MiB instead of a copy
 * and a sync inside every 4 MiB. */
#define VP_SPOOL_WAL_RESTART_BYTES (32u * 1024u * 1024u)

/* Moving a format 1 spool to format 2 commits (and checkpoints) after this
 * many bytes of bodies: one transaction for a whole multi-GB spool held 2.2
 * GB of memory and grew the WAL to twice the spool. */
#define VP_SPOOL_UPGRADE_CHUNK_BYTES (32u * 1024u * 1024u)

/* A run's state in the agent's run log: the OPEN metadata (one client frame
 * at most) plus the profile's path, an error line and a few counters. */
#define VP_MAX_AGENT_STATE (VP_MAX_CLIENT_FRAME + 16u * 1024u)

/* The relay's second sink (the old server protocol) sends a run as one
 * request built in memory: ~40 bytes a sample plus its frames. */
#define VP_MAX_LEGACY_SAMPLES 2000000u
/* ... and all their frames (8 bytes each): 128 MiB at most. */
#define VP_MAX_LEGACY_FRAMES (16u * 1024u * 1024u)
/* The old protocol's call tree is packed by recursion: deeper levels are
 * cut (their samples still count at the cut) to keep the thread's stack. */
#define VP_MAX_LEGACY_TREE_DEPTH 2048u

/* Batches the relay has received but not yet made durable. */
#define VP_MAX_RELAY_PENDING 256u

/* Runs the relay forwards at once, one request each (--forward-concurrency):
 * with one request at a time the relay emptied its spool at ~0.76M
 * samples/s, under its own intake; the server's own work bounds it beyond
 * a few. Each holds up to VP_FORWARD_PEEK spooled batches in memory. */
#define VP_MAX_FORWARD_CONCURRENCY 16u
#define VP_FORWARD_PEEK 8u

/* ---- analysis queries (server/rundata.c, server/analysis.c) ---- */

/* Bytes of per-run derived data (names, call trie, per-sample arrays of
 * 16 bytes) the server keeps between queries, so that a window over a
 * 10-million-sample run is a scan of memory rather than of SQLite. It holds
 * one such run (~170 MB) with room to spare; a run that does not fit is
 * answered from the store on every query instead, slower but in bounded
 * memory. The server's RSS grows by at most this plus one uncached run's
 * trie per query in flight. */
#define VP_QUERY_CACHE_BYTES (512ull * 1024u * 1024u)

/* Bytes of summary files (server/rundata.c: each finished run's query data
 * on disk, ~16 bytes a sample, so a cold query maps it instead of reading
 * the store) one server keeps; past it the least recently used files go
 * (they are derived data, rebuilt on demand). 4 GiB holds ~25 runs of 10
 * million samples. `vmpv-server --summary-max-mb` overrides it. */
#define VP_SUMMARY_BYTES (4096ull * 1024u * 1024u)

/* Runs the cache holds at once whatever their size: lookups are a linear
 * scan, and a thousand tiny runs should not crowd out big ones anyway. */
#define VP_QUERY_CACHE_RUNS 64u

/* Distinct call paths (trie nodes) and distinct stored stacks one run may
 * have for analysis. Real profiles have thousands to a few hundred
 * thousand; each costs ~40 bytes while the trie is built, so a hostile
 * profile at the bound costs ~160 MB for one query, not more. */
#define VP_MAX_QUERY_NODES (4u * 1024u * 1024u)

/* GET /api/runs/{id}/tree?max_nodes= (API.md): default and ceiling. A
 * browser renders 20000 nodes; 200000 is what a script may ask for. */
#define VP_TREE_NODES_DEFAULT 20000u
#define VP_MAX_TREE_NODES 200000u

/* A speedscope export lists every sample's stack: ~5 bytes per frame. Past
 * this the file is refused (413); speedscope itself cannot open one much
 * bigger, and the reply is built in memory. */
#define VP_MAX_EXPORT_BYTES (256u * 1024u * 1024u)

/* GET /api/runs filters that the store cannot evaluate (function, since,
 * until, sort) are applied while paging through every run; past this many
 * runs the list is refused rather than scanned for seconds. */
#define VP_MAX_RUNS_SCAN 200000u

/* ---- POST /submit/, the seed's old client (server/submit.c) ---- */

/* The whole msgpack body: three gzip blobs and a few scalars. A profile of
 * a million samples compresses to tens of MB. */
#define VP_MAX_SUBMIT_BODY (256u * 1024u * 1024u)

/* Decompressed bytes of one blob. The blobs are inflated in a stream and
 * never held whole, so this bounds CPU time, not memory: a gzip bomb stops
 * here. */
#define VP_MAX_SUBMIT_RAW (1024u * 1024u * 1024u)

/* Entries of mem_profile (one per sample) and of addr_name_map. */
#define VP_MAX_SUBMIT_SAMPLES (20u * 1000u * 1000u)
#define VP_MAX_SUBMIT_NAMES (4u * 1024u * 1024u)

/* Nesting of msgpack containers the reader will skip through: the format
 * has three levels; the bound keeps a hostile body off the C stack. */
#define VP_MAX_MSGPACK_DEPTH 32u

/* The inflate window a blob is parsed from: holds the largest string (a
 * name) plus slack, so the reader never needs more contiguous bytes. */
#define VP_SUBMIT_WINDOW (VP_MAX_NAME_LEN + 256u * 1024u)

/* Samples stored per write transaction, so that one big submit does not
 * hold the single writer while relays' batches wait. */
#define VP_SUBMIT_SLICE_SAMPLES 50000u

static_assert(VP_MAX_TREE_NODES >= VP_TREE_NODES_DEFAULT, "default within the cap");
static_assert(VP_MAX_QUERY_NODES < (1u << 31), "node indices are u32");
static_assert(VP_SUBMIT_WINDOW > VP_MAX_NAME_LEN + 1024u, "a name fits the window");
static_assert(VP_MAX_SUBMIT_SAMPLES > 0 && VP_SUBMIT_SLICE_SAMPLES > 0, "no zero limits");

static_assert(VP_MAX_RECORD_BYTES < VP_MAX_BATCH_RAW, "a record must fit a batch");
static_assert(VP_BATCH_TARGET_RAW < VP_MAX_BATCH_RAW, "target below the cap");
static_assert(VP_MAX_TOKEN_LEN <= 0xffffu, "token length is a u16 on the wire");
static_assert(VP_MAX_REASON_LEN <= 0xffffu, "reason length is a u16 on the wire");

#endif
