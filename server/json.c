/* json.c - see json.h. */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "vp_err.h"
#include "vp_mem.h"
#include "vp_vmprof.h"

int64_t vps_now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

void vps_reply_fini(vps_reply *r)
{
    vp_free(r->body);
    r->body = NULL;
    r->len = 0;
    r->disposition[0] = '\0';
    r->run_id[0] = '\0';
}

void vps_reply_body(vps_reply *r, int status, const char *content_type, char *body, size_t len)
{
    vp_free(r->body);
    r->status = status;
    r->content_type = content_type;
    r->body = body;
    r->len = len;
}

void vps_reply_json(vps_reply *r, int status, json_t *obj)
{
    /* JSON_REAL_PRECISION(12): durations and rates, not 17 noisy digits. */
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    json_decref(obj);
    if (!text) {
        vps_reply_body(r, 500, "application/json", NULL, 0);
        return;
    }
    vps_reply_body(r, status, "application/json", text, strlen(text));
}

void vps_reply_error(vps_reply *r, int status, const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vps_reply_json(r, status, json_pack("{s:o}", "error", vps_json_str(msg, strlen(msg))));
}

/* utf8_seq returns the length of the valid UTF-8 sequence at s (n bytes
 * left), or 0 if it is invalid: overlong forms, surrogates and code points
 * above U+10FFFF are invalid (RFC 3629). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned cp, min;
    if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

char *vps_utf8_clean(const char *s, size_t n, size_t *out_len)
{
    /* Worst case every byte becomes the 3-byte U+FFFD. */
    char *out = vp_malloc(n * 3 + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

json_t *vps_json_str(const char *s, size_t n)
{
    size_t len;
    char *clean = vps_utf8_clean(s ? s : "", s ? n : 0, &len);
    if (!clean)
        return NULL;
    json_t *j = json_stringn_nocheck(clean, len); /* checked above */
    vp_free(clean);
    return j;
}

static json_t *str(const char *s)
{
    return vps_json_str(s ? s : "", s ? strlen(s) : 0);
}

void vps_iso8601(int64_t unix_us, char *out, size_t cap)
{
    if (unix_us < 0)
        unix_us = 0;
    time_t sec = (time_t)(unix_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(unix_us % 1000000 / 1000));
}

/* real keeps NaN and infinities, which jansson refuses, out of the output. */
static json_t *real(double v)
{
    return json_real(isfinite(v) ? v : 0.0);
}

static double span_s(const vps_run *r)
{
    if (r->samples == 0 || r->last_t_ns < r->first_t_ns)
        return 0.0;
    return (double)(r->last_t_ns - r->first_t_ns) / 1e9;
}

double vps_run_duration(const vps_run *r, int64_t now_us)
{
    double duration;
    if (r->end_us >= 0)
        duration = (double)(r->end_us - r->start_us) / 1e6;
    else if (strcmp(r->status, "live") == 0)
        duration = (double)(now_us - r->start_us) / 1e6;
    else
        duration = span_s(r);
    return duration < 0 ? 0 : duration;
}

json_t *vps_run_json(const vps_run *r, int detail, int64_t now_us)
{
    double period_s = (double)r->period_us / 1e6;
    double span = span_s(r);
    double rate = 0.0;
    /* Rates from the samples actually present: the kernel rounds the timer
     * up to its tick, so 1/period overstates it (vmprof-format.md §7). */
    if (r->version >= 7 && span > 0)
        rate = (double)r->samples / span;
    else if (r->period_us > 0)
        rate = 1e6 / (double)r->period_us;
    double duration = vps_run_duration(r, now_us);
    char when[80]; /* room for any int the compiler thinks tm can hold */
    vps_iso8601(r->start_us, when, sizeof(when));

    json_t *o = json_pack("{s:s, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:s, s:s, s:o}",
                          "id", r->id, "project", str(r->project), "function", str(r->function),
                          "samples", (json_int_t)r->samples, "peak_rss_kb",
                          (json_int_t)r->peak_rss_kb, "duration_s", real(duration), "period_s",
                          real(period_s), "rate_hz", real(rate), "start_time", when, "status",
                          r->status, "host", str(r->host));
    /* Thinned by a relay: the rate the profile was written at and the one
     * it was stored at, and the samples of the whole run before and after
     * (docs/API.md). */
    json_t *dec = r->thin_period_us == 0
                      ? json_null()
                      : json_pack("{s:o, s:o, s:I, s:I}", "original_period_s", real(period_s),
                                  "period_s", real((double)r->thin_period_us / 1e6),
                                  "samples_before", (json_int_t)(r->samples + r->thin_removed),
                                  "samples_after", (json_int_t)r->samples);
    if (!o || !dec || json_object_set_new(o, "decimation", dec) != 0) {
        if (!o)
            json_decref(dec);
        json_decref(o);
        return NULL;
    }
    if (!detail)
        return o;
    json_t *tags = r->tags ? json_loads(r->tags, 0, NULL) : NULL;
    if (!json_is_object(tags)) {
        json_decref(tags);
        tags = json_object();
    }
    json_t *extra = json_pack(
        "{s:I, s:o, s:o, s:b, s:b, s:i, s:I, s:I, s:o}", "pid", (json_int_t)r->pid, "tags",
        tags, "error", r->error ? str(r->error) : json_null(), "memory",
        (r->mode & VP_VMPROF_MODE_MEMORY) != 0, "lines", (r->mode & VP_VMPROF_MODE_LINES) != 0,
        "version", r->version < 0 ? 0 : r->version, "threads", (json_int_t)r->threads, "bytes",
        (json_int_t)r->bytes, "t_end_s", real(span));
    if (!extra || json_object_update(o, extra) != 0) {
        json_decref(extra);
        json_decref(o);
        return NULL;
    }
    json_decref(extra);
    return o;
}

/* ---- time ---- */

static int digits(const char *s, size_t n, size_t *i, int count, int *out)
{
    int v = 0;
    for (int k = 0; k < count; k++) {
        if (*i >= n || s[*i] < '0' || s[*i] > '9')
            return 0;
        v = v * 10 + (s[(*i)++] - '0');
    }
    *out = v;
    return 1;
}

int vps_parse_time(const char *s, size_t n, int64_t *unix_us)
{
    size_t i = 0;
    int year, mon, day, hour = 0, min = 0, sec = 0;
    /* Unix seconds: digits with an optional fraction, no exponent. */
    int numeric = n > 0 && n < 32, dots = 0;
    for (size_t k = 0; k < n && numeric; k++) {
        dots += s[k] == '.';
        numeric = ((s[k] >= '0' && s[k] <= '9') || (s[k] == '.' && k > 0)) && dots <= 1;
    }
    if (numeric && (n < 5 || s[4] != '-')) {
        char buf[32];
        memcpy(buf, s, n);
        buf[n] = '\0';
        double v = strtod(buf, NULL);
        if (!(v >= 0 && v < 1e11))
            return VP_EINVAL;
        *unix_us = (int64_t)llround(v * 1e6);
        return VP_OK;
    }
    if (!digits(s, n, &i, 4, &year) || i >= n || s[i++] != '-' || !digits(s, n, &i, 2, &mon) ||
        i >= n || s[i++] != '-' || !digits(s, n, &i, 2, &day))
        return VP_EINVAL;
    int64_t frac_us = 0, offset_s = 0;
    if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        if (!digits(s, n, &i, 2, &hour) || i >= n || s[i++] != ':' ||
            !digits(s, n, &i, 2, &min))
            return VP_EINVAL;
        if (i < n && s[i] == ':') {
            i++;
            if (!digits(s, n, &i, 2, &sec))
                return VP_EINVAL;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                i++;
                int64_t scale = 100000;
                size_t start = i;
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                    frac_us += (s[i] - '0') * scale;
                    scale /= 10;
                    i++;
                }
                if (i == start)
                    return VP_EINVAL;
            }
        }
        if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i++] == '-' ? -1 : 1, oh, om = 0;
            if (!digits(s, n, &i, 2, &oh))
                return VP_EINVAL;
            if (i < n && s[i] == ':')
                i++;
            if (i < n && !digits(s, n, &i, 2, &om))
                return VP_EINVAL;
            if (oh > 23 || om > 59)
                return VP_EINVAL;
            offset_s = sign * (oh * 3600 + om * 60);
        }
    }
    if (i != n || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60 || year < 1970)
        return VP_EINVAL;
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
                    .tm_hour = hour, .tm_min = min, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return VP_EINVAL;
    *unix_us = ((int64_t)t - offset_s) * 1000000 + frac_us;
    return VP_OK;
}

/* ---- the text writer ---- */

void vps_jw_init(vps_jw *w, size_t max)
{
    memset(w, 0, sizeof(*w));
    w->max = max;
}

void vps_jw_fini(vps_jw *w)
{
    vp_free(w->buf);
    memset(w, 0, sizeof(*w));
}

static int jw_reserve(vps_jw *w, size_t n)
{
    if (w->err)
        return 0;
    if (n > w->max || w->len > w->max - n) {
        w->err = VP_ETOOBIG;
        return 0;
    }
    if (w->len + n <= w->cap)
        return 1;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + n)
        cap = cap * 2;
    if (cap > w->max + 1)
        cap = w->max + 1;
    char *p = vp_realloc(w->buf, cap);
    if (!p) {
        w->err = VP_ENOMEM;
        return 0;
    }
    w->buf = p;
    w->cap = cap;
    return 1;
}

void vps_jw_raw(vps_jw *w, const char *s, size_t n)
{
    if (jw_reserve(w, n)) {
        memcpy(w->buf + w->len, s, n);
        w->len += n;
    }
}

void vps_jw_copy(vps_jw *w, size_t at, size_t n)
{
    /* Offsets, not pointers: reserving may move the buffer. */
    if (at + n <= w->len && jw_reserve(w, n)) {
        memcpy(w->buf + w->len, w->buf + at, n);
        w->len += n;
    }
}

void vps_jw_lit(vps_jw *w, const char *s)
{
    vps_jw_raw(w, s, strlen(s));
}

void vps_jw_str(vps_jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    /* Worst case: every byte an invalid sequence (3 bytes) or \u00XX (6). */
    if (!jw_reserve(w, n * 6 + 2))
        return;
    char *o = w->buf + w->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                *o++ = 'u', *o++ = '0', *o++ = '0';
                *o++ = hex[c >> 4], *o++ = hex[c & 15];
            }
            i++;
            continue;
        }
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(o, p + i, k);
            o += k;
            i += k;
        }
    }
    *o++ = '"';
    w->len = (size_t)(o - w->buf);
}

void vps_jw_u64(vps_jw *w, uint64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);
    vps_jw_raw(w, buf, (size_t)n);
}

void vps_jw_i64(vps_jw *w, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    vps_jw_raw(w, buf, (size_t)n);
}

void vps_jw_real(vps_jw *w, double v)
{
    char buf[40];
    if (!isfinite(v))
        v = 0.0;
    int n = snprintf(buf, sizeof(buf), "%.12g", v);
    /* Keep it a JSON number that reads back as a float, as jansson does. */
    if (!strpbrk(buf, ".eEn"))
        buf[n++] = '.', buf[n++] = '0', buf[n] = '\0';
    vps_jw_raw(w, buf, (size_t)n);
}

void vps_jw_reply(vps_jw *w, vps_reply *r, const char *content_type)
{
    if (!w->err && w->len == w->max)
        w->err = VP_ETOOBIG;
    if (!w->err)
        jw_reserve(w, 1); /* the NUL */
    if (w->err == VP_ETOOBIG) {
        vps_reply_error(r, 413, "the answer would be over %zu bytes; ask for a smaller one",
                        w->max);
    } else if (w->err) {
        vps_reply_error(r, 500, "out of memory");
    } else {
        w->buf[w->len] = '\0';
        vps_reply_body(r, 200, content_type, w->buf, w->len);
        w->buf = NULL;
    }
    vps_jw_fini(w);
}
