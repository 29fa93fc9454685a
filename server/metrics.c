/* metrics.c - the table behind metrics.h; labelled series of one family
 * stay next to each other, as vp_metrics_render expects. */
#include "metrics.h"

vp_metric vps_metrics[VPS_M_COUNT] = {
    [VPS_M_REQUESTS] = {"vmpv_server_requests_total", "HTTP requests received", 0, 0},
    [VPS_M_BATCH_STORED] = {"vmpv_server_batches_total{result=\"stored\"}",
                            "batches (POST /api/v1/batches) by outcome", 0, 0},
    [VPS_M_BATCH_DUPLICATE] = {"vmpv_server_batches_total{result=\"duplicate\"}", "", 0, 0},
    [VPS_M_BATCH_OUT_OF_ORDER] = {"vmpv_server_batches_total{result=\"out_of_order\"}", "", 0,
                                  0},
    [VPS_M_BATCH_MALFORMED] = {"vmpv_server_batches_total{result=\"malformed\"}", "", 0, 0},
    [VPS_M_BATCH_UNAUTHORIZED] = {"vmpv_server_batches_total{result=\"unauthorized\"}", "", 0,
                                  0},
    [VPS_M_BATCH_ERROR] = {"vmpv_server_batches_total{result=\"error\"}", "", 0, 0},
    [VPS_M_UPLOAD_STORED] = {"vmpv_server_uploads_total{result=\"stored\"}",
                             "plain uploads (POST /api/v1/upload) by outcome", 0, 0},
    [VPS_M_UPLOAD_REFUSED] = {"vmpv_server_uploads_total{result=\"refused\"}", "", 0, 0},
    [VPS_M_UPLOAD_ERROR] = {"vmpv_server_uploads_total{result=\"error\"}", "", 0, 0},
    [VPS_M_SUBMIT_STORED] = {"vmpv_server_submits_total{result=\"stored\"}",
                             "old-client uploads (POST /submit/) by outcome", 0, 0},
    [VPS_M_SUBMIT_REFUSED] = {"vmpv_server_submits_total{result=\"refused\"}", "", 0, 0},
    [VPS_M_SUBMIT_ERROR] = {"vmpv_server_submits_total{result=\"error\"}", "", 0, 0},
    [VPS_M_SAMPLES] = {"vmpv_server_samples_stored_total", "stack samples stored", 0, 0},
    [VPS_M_BUSY] = {"vmpv_server_busy_total",
                    "requests refused with 503 because too many were in flight", 0, 0},
    [VPS_M_JOBS] = {"vmpv_server_jobs_in_flight", "requests waiting for or running storage work",
                    1, 0},
    [VPS_M_SUMMARY_REMOVED] = {"vmpv_server_summary_files_removed_total",
                               "least recently used summary files removed to stay under "
                               "--summary-max-mb",
                               0, 0},
    [VPS_M_SUMMARY_SKIPPED] = {"vmpv_server_summary_files_skipped_total",
                               "summary files not written: larger than --summary-max-mb alone",
                               0, 0},
};
