/* test_spool.c - the spool's run info: what one connection stores, another
 * reads, from SQLite the first time and from its memory after; runs that
 * share a slot of that memory do not answer for each other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vp_err.h"
#include "vp_limits.h"
#include "vp_spool.h"
#include "vp_test.h"

static char dir[] = "/tmp/vp-test-spool-XXXXXX";
static char path[256];

/* Stores one batch of run with info, through its own connection. */
static void store(const uint8_t *run, const vp_spool_run_info *info)
{
    vp_spool *w = NULL;
    char err[256];
    CHECK_EQ(vp_spool_open(path, UINT64_MAX, &w, err, sizeof(err)), VP_OK);
    static const uint8_t body[] = "not a real batch: the spool does not read bodies";
    vp_spool_put_req req = {.info = info, .run_id = run, .seq = 0, .kind = 1, .body = body,
                            .len = sizeof(body)};
    CHECK_EQ(vp_spool_put_many(w, &req, 1), VP_OK);
    CHECK_EQ(req.result, VP_OK);
    vp_spool_close(w);
}

static int same(const vp_spool_run_info *a, const vp_spool_run_info *b)
{
    return a->version == b->version && a->mode == b->mode && a->period_us == b->period_us &&
           a->first_t_ns == b->first_t_ns;
}

static void test_run_info_read_again_and_after_a_collision(void)
{
    /* a and b land in the same cache slot (same first 8 bytes), c in another. */
    uint8_t a[VP_RUN_ID_LEN] = {7, 0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t b[VP_RUN_ID_LEN] = {7, 0, 0, 0, 0, 0, 0, 0, 2};
    uint8_t c[VP_RUN_ID_LEN] = {8, 0, 0, 0, 0, 0, 0, 0, 1};
    vp_spool_run_info ia = {.version = 7, .mode = 1, .period_us = 1000, .first_t_ns = 123456789};
    vp_spool_run_info ib = {.version = 5, .mode = 0, .period_us = 10000, .first_t_ns = -1};
    vp_spool *r = NULL;
    vp_spool_run_info got;
    char err[256];
    CHECK_EQ(vp_spool_open(path, UINT64_MAX, &r, err, sizeof(err)), VP_OK);
    if (!r)
        return;
    CHECK_EQ(vp_spool_get_info(r, a, &got), VP_ENOTFOUND); /* nothing is remembered as absent */
    store(a, &ia);
    CHECK_EQ(vp_spool_get_info(r, a, &got), VP_OK);
    CHECK(same(&got, &ia));
    CHECK_EQ(vp_spool_get_info(r, a, &got), VP_OK); /* now from memory */
    CHECK(same(&got, &ia));
    CHECK_EQ(vp_spool_get_info(r, b, &got), VP_ENOTFOUND); /* a's slot, not a's answer */
    store(b, &ib);
    CHECK_EQ(vp_spool_get_info(r, b, &got), VP_OK);
    CHECK(same(&got, &ib));
    CHECK_EQ(vp_spool_get_info(r, a, &got), VP_OK); /* b took the slot: a from SQLite again */
    CHECK(same(&got, &ia));
    CHECK_EQ(vp_spool_get_info(r, c, &got), VP_ENOTFOUND);
    vp_spool_close(r);
    /* A new connection (a restarted relay) has nothing in memory. */
    CHECK_EQ(vp_spool_open(path, UINT64_MAX, &r, err, sizeof(err)), VP_OK);
    if (!r)
        return;
    CHECK_EQ(vp_spool_get_info(r, b, &got), VP_OK);
    CHECK(same(&got, &ib));
    vp_spool_close(r);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/spool.sqlite", dir);
    RUN(test_run_info_read_again_and_after_a_collision);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char file[300];
        snprintf(file, sizeof(file), "%s%s", path, suffixes[i]);
        unlink(file); /* the WAL and its index may be gone already */
    }
    if (rmdir(dir) != 0)
        perror(dir);
    TEST_MAIN_END();
}
