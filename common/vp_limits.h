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

/* Batches the relay has received but not yet made durable. */
#define VP_MAX_RELAY_PENDING 256u

static_assert(VP_MAX_RECORD_BYTES < VP_MAX_BATCH_RAW, "a record must fit a batch");
static_assert(VP_BATCH_TARGET_RAW < VP_MAX_BATCH_RAW, "target below the cap");
static_assert(VP_MAX_TOKEN_LEN <= 0xffffu, "token length is a u16 on the wire");
static_assert(VP_MAX_REASON_LEN <= 0xffffu, "reason length is a u16 on the wire");

#endif
