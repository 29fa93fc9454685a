/*
 * metrics.h - the server's counters, shown at GET /metrics. Any thread may
 * bump them (vp_metric_add is a relaxed atomic).
 */
#ifndef VPS_METRICS_H
#define VPS_METRICS_H

#include "vp_metrics.h"

enum {
    VPS_M_REQUESTS,
    VPS_M_BATCH_STORED,
    VPS_M_BATCH_DUPLICATE,
    VPS_M_BATCH_OUT_OF_ORDER,
    VPS_M_BATCH_MALFORMED,
    VPS_M_BATCH_UNAUTHORIZED,
    VPS_M_BATCH_ERROR,
    VPS_M_UPLOAD_STORED,
    VPS_M_UPLOAD_REFUSED,
    VPS_M_UPLOAD_ERROR,
    VPS_M_SUBMIT_STORED,
    VPS_M_SUBMIT_REFUSED,
    VPS_M_SUBMIT_ERROR,
    VPS_M_SAMPLES,
    VPS_M_BUSY,
    VPS_M_JOBS,
    VPS_M_SUMMARY_REMOVED,
    VPS_M_SUMMARY_SKIPPED,
    VPS_M_COUNT
};

extern vp_metric vps_metrics[VPS_M_COUNT];

#define VPS_COUNT(id) vp_metric_add(&vps_metrics[id], 1)

#endif
