/* vp_metrics.c - see vp_metrics.h. */
#include "vp_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static size_t base_len(const char *name)
{
    const char *brace = strchr(name, '{');
    return brace ? (size_t)(brace - name) : strlen(name);
}

void vp_histogram_observe(vp_histogram *h, uint64_t us)
{
    size_t i = 0;
    while (i < VP_HISTOGRAM_MAX_BOUNDS && h->bounds_us[i] && us > h->bounds_us[i])
        i++;
    if (i < VP_HISTOGRAM_MAX_BOUNDS && !h->bounds_us[i])
        i = VP_HISTOGRAM_MAX_BOUNDS; /* past the last bound given */
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

/* Appends at buf + *len; 0, or -1 when cap is reached. */
static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len) {
        buf[*len] = '\0'; /* no half line */
        return -1;
    }
    *len += (size_t)n;
    return 0;
}

/* Prometheus' cumulative buckets, then _sum (seconds) and _count. Counts
 * are read one by one while others may observe: a scrape can be a few
 * observations behind in one bucket, never inconsistent in order. */
static int render_histogram(const vp_metric *m, char *buf, size_t cap, size_t *len)
{
    const vp_histogram *h = m->hist;
    uint64_t cumulative = 0;
    if (append(buf, cap, len, "# HELP %s %s\n# TYPE %s histogram\n", m->name, m->help,
               m->name) != 0)
        return -1;
    for (size_t i = 0; i < VP_HISTOGRAM_MAX_BOUNDS && h->bounds_us[i]; i++) {
        cumulative += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (append(buf, cap, len, "%s_bucket{le=\"%g\"} %llu\n", m->name,
                   (double)h->bounds_us[i] / 1e6, (unsigned long long)cumulative) != 0)
            return -1;
    }
    cumulative += atomic_load_explicit(&h->counts[VP_HISTOGRAM_MAX_BOUNDS], memory_order_relaxed);
    uint64_t sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    return append(buf, cap, len, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
                  m->name, (unsigned long long)cumulative, m->name, (double)sum / 1e6, m->name,
                  (unsigned long long)cumulative);
}

size_t vp_metrics_render(vp_metric *table, size_t count, char *buf, size_t cap)
{
    size_t len = 0;
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (table[i].hist) {
            if (render_histogram(&table[i], buf, cap, &len) != 0)
                break;
            continue;
        }
        const char *name = table[i].name;
        size_t bl = base_len(name);
        /* HELP and TYPE once per family: labelled series follow each other. */
        int first = i == 0 || base_len(table[i - 1].name) != bl ||
                    strncmp(table[i - 1].name, name, bl) != 0;
        int n = 0;
        if (first)
            n = snprintf(buf + len, cap - len, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int)bl, name,
                         table[i].help, (int)bl, name, table[i].gauge ? "gauge" : "counter");
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
        n = snprintf(buf + len, cap - len, "%s %llu\n", name,
                     (unsigned long long)vp_metric_get(&table[i]));
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
    return len;
}
