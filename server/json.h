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

#include "store.h"

/* A finished reply: made by a worker, sent by the loop thread. */
typedef struct vps_reply {
    int status;               /* HTTP status; 0 = not set */
    const char *content_type; /* static string */
    char *body;               /* vp_malloc'd, owned; NULL with status 500 = out of memory */
    size_t len;
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

/* vps_iso8601 writes e.g. 2026-11-25T15:27:00.438Z (cap >= 32). */
void vps_iso8601(int64_t unix_us, char *out, size_t cap);

/* vps_now_us is the wall clock in Unix microseconds. */
int64_t vps_now_us(void);

#endif
