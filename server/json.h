/*
 * json.h - HTTP replies built off the loop thread, and the JSON shapes the
 * API shares (docs/API.md).
 *
 * Every string that came from a profile reaches JSON through vps_json_str,
 * which repairs invalid UTF-8 (jansson refuses it) and leaves escaping to
 * jansson.
 */
#ifndef VPS_JSON_H
#define VPS_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* A finished reply: made by a worker, sent by the loop thread. */
typedef struct vps_reply {
    int status;               /* HTTP status; 0 = not set */
    const char *content_type; /* static string */
    char *body;               /* vp_malloc'd, owned; NULL with status 500 = out of memory */
    size_t len;
    char disposition[96];     /* Content-Disposition value, "" = none */
    char run_id[33];          /* a run the request stored, "" = none */
    int retry;                /* failed on derived data now dropped: asking again works */
} vps_reply;

/* vps_reply_json serialises obj (the reply takes the reference). */
void vps_reply_json(vps_reply *r, int status, json_t *obj);

/* vps_reply_error sets {"error": "..."} with the formatted one-line reason. */
void vps_reply_error(vps_reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* vps_reply_body takes ownership of body (vp_malloc'd). */
void vps_reply_body(vps_reply *r, int status, const char *content_type, char *body, size_t len);

void vps_reply_fini(vps_reply *r);

/* vps_utf8_clean returns a vp_malloc'd, NUL-terminated copy of s[0..n) in
 * which every invalid UTF-8 sequence is replaced by U+FFFD; *out_len is its
 * length. NULL if out of memory. */
char *vps_utf8_clean(const char *s, size_t n, size_t *out_len);

/* vps_json_str makes a JSON string from untrusted bytes (NULL on OOM). */
json_t *vps_json_str(const char *s, size_t n);

/* vps_run_json is RUN of docs/API.md; with detail, the extra fields of
 * GET /api/runs/{id}. now_us is the current time, for live runs. */
json_t *vps_run_json(const vps_run *r, int detail, int64_t now_us);

/* vps_run_duration is RUN's duration_s: end - start, or for a live run
 * now - start. */
double vps_run_duration(const vps_run *r, int64_t now_us);

/* vps_iso8601 writes e.g. 2026-11-25T15:27:00.438Z (cap >= 32). */
void vps_iso8601(int64_t unix_us, char *out, size_t cap);

/* vps_now_us is the wall clock in Unix microseconds. */
int64_t vps_now_us(void);

/* vps_parse_time reads a point in time: ISO 8601 (2026-11-25T15:27:00Z,
 * fractions and a +HH:MM offset allowed, no zone = UTC, a date alone =
 * midnight UTC) or Unix seconds (a decimal number). VP_EINVAL otherwise. */
int vps_parse_time(const char *s, size_t n, int64_t *unix_us);

/* ---- a JSON text writer for large answers ----
 *
 * Trees of 200000 nodes and per-sample exports are written as text
 * directly: jansson would allocate an object per node. Errors are sticky
 * (SQLite's mallocFailed): write everything, check err once at the end. */
typedef struct vps_jw {
    char *buf;
    size_t len, cap, max;
    int err; /* 0, VP_ENOMEM, or VP_ETOOBIG once past max bytes */
} vps_jw;

void vps_jw_init(vps_jw *w, size_t max);
void vps_jw_fini(vps_jw *w);
void vps_jw_raw(vps_jw *w, const char *s, size_t n);
void vps_jw_lit(vps_jw *w, const char *s); /* NUL-terminated, written as is */
/* vps_jw_str writes s[0..n) as a quoted JSON string, repairing bad UTF-8. */
void vps_jw_str(vps_jw *w, const char *s, size_t n);
void vps_jw_u64(vps_jw *w, uint64_t v);
void vps_jw_i64(vps_jw *w, int64_t v);
void vps_jw_real(vps_jw *w, double v); /* non-finite values become 0 */
/* vps_jw_copy appends n bytes already written at offset at. */
void vps_jw_copy(vps_jw *w, size_t at, size_t n);
/* vps_jw_reply hands the text to r as a 200 reply (or the error). */
void vps_jw_reply(vps_jw *w, vps_reply *r, const char *content_type);

#endif
