/*
 * vp_metrics.h - counters and gauges shown at /metrics in Prometheus' text
 * format. Each daemon keeps one static table of vp_metric; updates are
 * relaxed atomics, so any thread may bump a counter without a lock.
 */
#ifndef VP_METRICS_H
#define VP_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vp_metric {
    const char *name;   /* full series name, labels included: x_total{reason="busy"} */
    const char *help;   /* one line */
    int gauge;          /* 0 counter, 1 gauge */
    _Atomic uint64_t value;
} vp_metric;

static inline void vp_metric_add(vp_metric *m, uint64_t n)
{
    atomic_fetch_add_explicit(&m->value, n, memory_order_relaxed);
}

static inline void vp_metric_sub(vp_metric *m, uint64_t n)
{
    atomic_fetch_sub_explicit(&m->value, n, memory_order_relaxed);
}

static inline void vp_metric_set(vp_metric *m, uint64_t v)
{
    atomic_store_explicit(&m->value, v, memory_order_relaxed);
}

static inline uint64_t vp_metric_get(vp_metric *m)
{
    return atomic_load_explicit(&m->value, memory_order_relaxed);
}

/* vp_metrics_render writes the table as Prometheus text into buf (cap
 * bytes, NUL-terminated, cut if too small). Returns the length written. */
size_t vp_metrics_render(vp_metric *table, size_t count, char *buf, size_t cap);

#endif
