/*
 * ack_floor.c - vmpv-ack-floor: the least a relay can do before it
 * acknowledges a batch durably, to put the relay's ack latency next to what
 * this machine allows under the same load.
 *
 * It speaks the relay's side of proto/PROTOCOL.md §B to vmpv-loadgen: each
 * batch's header is checked (no token, no decompression unless --decode),
 * the message is appended to one file, and one writer thread makes all the
 * batches that arrived meanwhile durable with a single fdatasync, then
 * acknowledges them: the relay's group commit with a plain file instead of
 * SQLite. --decode also LZ4-decodes each batch on the receiving thread, as
 * the relay must to check its records.
 *
 *   vmpv-ack-floor --file PATH [--listen URL] [--decode] [--contexts N]
 * --contexts: batches taken in at once, 32 as vmpv-relay's default.
 * Prints "vmpv-ack-floor listening on URL" and serves until SIGTERM or SIGINT.
 */
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vp_batch.h"
#include "vp_err.h"
#include "vp_limits.h"
#include "vp_mem.h"

typedef struct floor_ctx {
    nng_ctx ctx;
    nng_aio *aio;
    int sending;
    nng_msg *msg;
    uint8_t status;
    uint8_t run_id[VP_RUN_ID_LEN];
    uint64_t seq;
    struct floor_ctx *next;
} floor_ctx;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static floor_ctx *pending; /* received, waiting for the writer */
static int decode_too;

static void on_aio(void *arg)
{
    floor_ctx *c = arg;
    int rv = nng_aio_result(c->aio);
    if (c->sending) {
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(c->aio));
        c->sending = 0;
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    if (rv != 0) {
        if (rv != NNG_ECLOSED)
            nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    c->msg = nng_aio_get_msg(c->aio);
    vp_batch_view v;
    char why[256];
    c->status = VP_ACK_STORED;
    memset(c->run_id, 0, sizeof(c->run_id));
    c->seq = 0;
    if (vp_batch_decode(nng_msg_body(c->msg), nng_msg_len(c->msg), &v, why, sizeof(why)) != VP_OK) {
        c->status = VP_ACK_MALFORMED;
    } else {
        memcpy(c->run_id, v.run_id, VP_RUN_ID_LEN);
        c->seq = v.seq;
        uint8_t *raw = NULL;
        if (decode_too && vp_batch_payload(&v, &raw, why, sizeof(why)) != VP_OK)
            c->status = VP_ACK_MALFORMED;
        vp_free(raw);
    }
    pthread_mutex_lock(&mu);
    c->next = pending;
    pending = c;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void *writer_main(void *arg)
{
    int fd = *(int *)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!pending)
            pthread_cond_wait(&cv, &mu);
        floor_ctx *batch = pending;
        pending = NULL;
        pthread_mutex_unlock(&mu);
        for (floor_ctx *c = batch; c; c = c->next) {
            if (c->status == VP_ACK_STORED &&
                write(fd, nng_msg_body(c->msg), nng_msg_len(c->msg)) != (ssize_t)nng_msg_len(c->msg))
                c->status = VP_ACK_BUSY;
        }
        if (fdatasync(fd) != 0)
            perror("vmpv-ack-floor: fdatasync");
        for (floor_ctx *c = batch, *next; c; c = next) {
            next = c->next;
            uint8_t ack[VP_ACK_HEADER_LEN];
            int n = vp_ack_encode(c->status, c->run_id, c->seq, "", ack, sizeof(ack));
            nng_msg_clear(c->msg);
            if (n < 0 || nng_msg_append(c->msg, ack, (size_t)n) != 0) {
                nng_msg_free(c->msg);
                nng_ctx_recv(c->ctx, c->aio);
                continue;
            }
            nng_aio_set_msg(c->aio, c->msg);
            c->msg = NULL;
            c->sending = 1;
            nng_ctx_send(c->ctx, c->aio);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *listen = "tcp://127.0.0.1:0", *path = NULL;
    unsigned contexts = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc)
            listen = argv[++i];
        else if (!strcmp(argv[i], "--file") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--contexts") && i + 1 < argc)
            contexts = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--decode"))
            decode_too = 1;
        else {
            fprintf(stderr, "usage: vmpv-ack-floor --file PATH [--listen URL] [--decode] [--contexts N]\n");
            return 2;
        }
    }
    if (!path || contexts < 1 || contexts > VP_MAX_RELAY_PENDING) {
        fprintf(stderr, "vmpv-ack-floor: --file is required, --contexts 1..%u\n", VP_MAX_RELAY_PENDING);
        return 2;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* every thread: only sigwait sees them */
    nng_socket sock;
    nng_listener l;
    int rv = nng_rep0_open(&sock);
    if (rv == 0)
        nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, VP_MAX_HTTP_BATCH_BODY);
    if (rv == 0)
        rv = nng_listener_create(&l, sock, listen);
    if (rv == 0)
        rv = nng_listener_start(l, 0);
    if (rv != 0) {
        fprintf(stderr, "vmpv-ack-floor: cannot listen on %s: %s\n", listen, nng_strerror(rv));
        return 1;
    }
    char *url = NULL;
    nng_listener_get_string(l, NNG_OPT_URL, &url);
    pthread_t writer;
    pthread_create(&writer, NULL, writer_main, &fd);
    static floor_ctx ctxs[VP_MAX_RELAY_PENDING];
    for (unsigned i = 0; i < contexts; i++) {
        if (nng_ctx_open(&ctxs[i].ctx, sock) != 0 || nng_aio_alloc(&ctxs[i].aio, on_aio, &ctxs[i]) != 0) {
            fprintf(stderr, "vmpv-ack-floor: out of nng contexts\n");
            return 1;
        }
        nng_ctx_recv(ctxs[i].ctx, ctxs[i].aio);
    }
    printf("vmpv-ack-floor listening on %s\n", url ? url : listen);
    fflush(stdout);
    nng_strfree(url);
    int sig;
    sigwait(&stop, &sig);
    /* A benchmark helper: the process exit is the cleanup. */
    return 0;
}
