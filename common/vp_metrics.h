/*
 * vp_metrics.h - counters, gauges and histograms shown at /metrics in
 * Prometheus' text format. Each daemon keeps one static table of vp_metric;
 * updates are relaxed atomics, so any thread may bump a counter or observe a
 * duration without a lock.
 */
#ifndef VP_METRICS_H
#define VP_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Enough for a latency from a quarter millisecond to seconds in steps an
 * operator can read a target off (the relay's ack target is a bound). */
#define VP_HISTOGRAM_MAX_BOUNDS 24

/* A histogram of durations. bounds_us: the buckets' upper bounds in
 * microseconds, ascending, at most VP_HISTOGRAM_MAX_BOUNDS, 0-terminated
 * when fewer; rendered in seconds. Counts are kept per bucket and summed
 * at render, so an observation is two atomic adds. */
typedef struct vp_histogram {
    uint32_t bounds_us[VP_HISTOGRAM_MAX_BOUNDS];
    _Atomic uint64_t counts[VP_HISTOGRAM_MAX_BOUNDS + 1]; /* the last: above every bound */
    _Atomic uint64_t sum_us;
} vp_histogram;

typedef struct vp_metric {
    const char *name;   /* full series name, labels included: x_total{reason="busy"} */
    const char *help;   /* one line */
    int gauge;          /* 0 counter, 1 gauge; ignored for a histogram */
    _Atomic uint64_t value;
    vp_histogram *hist; /* set: the entry is this histogram, name its family's */
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

/* vp_histogram_observe counts one duration of us microseconds. */
void vp_histogram_observe(vp_histogram *h, uint64_t us);

/* vp_metrics_render writes the table as Prometheus text into buf (cap
 * bytes, NUL-terminated, cut if too small). Returns the length written. */
size_t vp_metrics_render(vp_metric *table, size_t count, char *buf, size_t cap);

#endif
