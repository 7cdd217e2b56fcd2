/*
 * bench/push.c - trainer -> server syncs over tcp://127.0.0.1 with 1 and 2
 * parameter-server shards, against a bare request/reply of the same sizes.
 *
 * Figures (one line each, "bench.push.<figure> <value> <unit>"):
 *
 *  shards<S>.keys<K>.keys_per_s   keys pushed per second by ot_trainer_sync()
 *                                 when each sync carries K changed weights
 *                                 (K = 100, 10000, 1000000) of a 2^22-weight
 *                                 wide model (SGD, fp32 frames), to S = 1 or
 *                                 2 shards over tcp://127.0.0.1 (median sync)
 *  shards<S>.keys<K>.sync_ms      median time of one such sync
 *  shards<S>.keys<K>.bytes        delta bytes sent per sync (all shards)
 *  baseline.echo.keys<K>.keys_per_s  the same K over a bare request/reply
 *                                 (lib/transport.h, raw: one request
 *                                 context, reused, as the trainer's) whose
 *                                 request has the sync's delta bytes and
 *                                 whose reply has the size of a sync
 *                                 acknowledgement (93 bytes): what the
 *                                 transport alone allows
 *  baseline.echo.keys<K>.ms       its median round trip
 *  baseline.echo2.keys<K>.keys_per_s / .ms  the 2-shard syncs' bytes as two
 *                                 requests of half the size to two servers
 *                                 at once (what a 2-shard sync costs the
 *                                 transport)
 *
 * Each sync is followed at once by a bare exchange of the bytes it sent, so
 * a sync and its baseline see the same load on the machine.
 *
 * The changed weights are written into the trainer's local model directly
 * (a strided set of K rows, each +0.01), so the figure measures the sync
 * (encode, send, apply at the server, reply), not learning.  The
 * servers run in this process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "onlinetrain.h"
#include "params.h"
#include "transport.h"

#define BITS 22

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static ot_config *cfg_for(uint32_t shard, uint32_t n)
{
    ot_config *c = NULL;

    if (ot_config_create(&c) != OT_OK)
        exit(1);
    ot_config_set_i64(c, OT_OPT_BITS, BITS);
    ot_config_set_str(c, OT_OPT_OPTIMIZER, "sgd");
    ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_SYNC_EVERY_EXAMPLES, 0);
    ot_config_set_i64(c, OT_OPT_SYNC_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_TIMEOUT_MS, 30000);
    ot_config_set_i64(c, OT_OPT_RECV_MAX_BYTES, (int64_t)64 << 20);
    ot_config_set_i64(c, OT_OPT_CHANGE_LOG_BYTES, (int64_t)64 << 20);
    ot_config_set_i64(c, OT_OPT_SHARD_ID, shard);
    ot_config_set_i64(c, OT_OPT_NUM_SHARDS, n);
    return c;
}

/* Changes K strided rows of the wide block of the trainer's local model. */
static void touch_keys(ot_trainer *tr, size_t k, unsigned round)
{
    oti_params *p = oti_model_params((ot_model *)ot_trainer_model(tr));
    oti_block *w = NULL;
    size_t i, stride;

    for (i = 0; i < p->nblocks; i++)
        if (p->blocks[i].kind == OTI_BLOCK_WIDE)
            w = &p->blocks[i];
    if (w == NULL)
        exit(1);
    stride = (size_t)(w->rows / k);
    for (i = 0; i < k; i++) {
        uint64_t r = (uint64_t)i * stride + (round % stride);
        w->w[r] += 0.01f;
        oti_block_touch(w, r);
    }
}

static double stat(const ot_trainer *tr, const char *name)
{
    double v = 0;
    ot_trainer_stat(tr, name, &v);
    return v;
}

static ot_status ack_handler(void *arg, const uint8_t *req, size_t len, oti_reply *reply)
{
    static const uint8_t ack[93];

    (void)arg;
    (void)req;
    (void)len;
    return oti_reply_append(reply, ack, sizeof(ack));
}

/* Bare request/reply to `ns` servers (lib/transport.h, raw: one request
 * context per server, reused, as the trainer's), answered with a 93-byte
 * reply. */
typedef struct echo {
    int ns;
    oti_sock *rep[2], *req[2];
    oti_request *rq[2];
    uint8_t *buf;
    size_t cap;
} echo;

static void echo_open(echo *e, int ns)
{
    oti_tp_opts o;
    char err[OTI_ERRMSG_LEN], url[64];
    int port = 0, k;

    memset(e, 0, sizeof(*e));
    e->ns = ns;
    oti_tp_opts_init(&o);
    o.recv_max = (size_t)64 << 20;
    for (k = 0; k < ns; k++) {
        if (oti_sock_create(OTI_SOCK_REP, &o, &e->rep[k], err) != OT_OK ||
            oti_sock_listen(e->rep[k], "tcp://127.0.0.1:0", &port, err) != OT_OK ||
            oti_server_start(e->rep[k], ack_handler, NULL, err) != OT_OK ||
            oti_sock_create(OTI_SOCK_REQ, &o, &e->req[k], err) != OT_OK)
            exit(1);
        snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
        if (oti_sock_dial(e->req[k], url, OTI_DIAL_WAIT, err) != OT_OK ||
            oti_request_create(e->req[k], &e->rq[k], err) != OT_OK)
            exit(1);
    }
}

/* One exchange of `bytes` in all: ns requests of bytes / ns, started
 * together, then all awaited.  Returns its time in ms. */
static double echo_once(echo *e, size_t bytes)
{
    size_t part = bytes / (size_t)e->ns, n;
    const uint8_t *d;
    double t0;
    int k;

    if (part + 1 > e->cap) {
        free(e->buf);
        e->cap = part + 1;
        if ((e->buf = calloc(1, e->cap)) == NULL)
            exit(1);
    }
    t0 = now_ms();
    for (k = 0; k < e->ns; k++)
        if (oti_request_start(e->rq[k], e->buf, part, 30000) != OT_OK)
            exit(1);
    for (k = 0; k < e->ns; k++)
        if (oti_request_wait(e->rq[k]) != OT_OK || oti_request_reply(e->rq[k], &d, &n) != OT_OK)
            exit(1);
    return now_ms() - t0;
}

static void echo_close(echo *e)
{
    int k;

    for (k = 0; k < e->ns; k++) {
        oti_request_destroy(e->rq[k]);
        oti_sock_destroy(e->req[k]);
        oti_sock_destroy(e->rep[k]);
    }
    free(e->buf);
}

int main(int argc, char **argv)
{
    static const size_t keys[3] = {100, 10000, 1000000};
    int reps[3] = {200, 100, 7};
    /* optional, for profiling one case: push [KEYS [SHARDS [REPS]]] */
    size_t only_keys = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 0;
    uint32_t only_shards = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 0;
    uint32_t nshards;
    int ki;

    if (argc > 3 && atoi(argv[3]) > 0)
        reps[0] = reps[1] = reps[2] = atoi(argv[3]);

    for (nshards = 1; nshards <= 2; nshards++) {
        ot_param_server *ps[2] = {NULL, NULL};
        const char *urls[2];
        const char *base = nshards == 1 ? "echo" : "echo2";
        ot_config *c;
        ot_trainer *tr = NULL;
        echo e;
        uint32_t i;
        if (only_shards != 0 && nshards != only_shards)
            continue;
        c = cfg_for(0, nshards);
        for (i = 0; i < nshards; i++) {
            ot_config *sc = cfg_for(i, nshards);
            if (ot_param_server_create(sc, &ps[i]) != OT_OK ||
                ot_param_server_listen(ps[i], "tcp://127.0.0.1:0", NULL) != OT_OK ||
                ot_param_server_start(ps[i]) != OT_OK)
                return 1;
            urls[i] = ot_param_server_url(ps[i], 0);
            ot_config_destroy(sc);
        }
        if (ot_trainer_create(c, &tr) != OT_OK ||
            ot_trainer_connect_shards(tr, urls, nshards) != OT_OK) {
            fprintf(stderr, "connect: %s\n", ot_trainer_errmsg(tr));
            return 1;
        }
        echo_open(&e, (int)nshards);
        for (ki = 0; ki < 3; ki++) {
            double *t, *te, m, me, b0, total = 0;
            int r;
            if (only_keys != 0 && keys[ki] != only_keys)
                continue;
            t = calloc((size_t)reps[ki], sizeof(double));
            te = calloc((size_t)reps[ki], sizeof(double));
            if (t == NULL || te == NULL)
                return 1;
            /* r < 0: warm-up.  Each sync is followed by a bare exchange of
             * the bytes it sent, so both see the same machine load. */
            for (r = -2; r < reps[ki]; r++) {
                double t0, dt, bytes;
                touch_keys(tr, keys[ki], (unsigned)(r + 2));
                b0 = stat(tr, "delta_bytes_out");
                t0 = now_ms();
                if (ot_trainer_sync(tr) != OT_OK) {
                    fprintf(stderr, "sync: %s\n", ot_trainer_errmsg(tr));
                    return 1;
                }
                dt = now_ms() - t0;
                bytes = stat(tr, "delta_bytes_out") - b0;
                me = echo_once(&e, (size_t)bytes);
                if (r >= 0) {
                    t[r] = dt;
                    te[r] = me;
                    total += bytes;
                }
            }
            m = median(t, (size_t)reps[ki]);
            me = median(te, (size_t)reps[ki]);
            printf("bench.push.shards%u.keys%zu.keys_per_s %.0f keys/s\n", (unsigned)nshards,
                   keys[ki], (double)keys[ki] / (m / 1e3));
            printf("bench.push.shards%u.keys%zu.sync_ms %.3f ms\n", (unsigned)nshards, keys[ki],
                   m);
            printf("bench.push.shards%u.keys%zu.bytes %.0f bytes\n", (unsigned)nshards, keys[ki],
                   total / reps[ki]);
            printf("bench.push.baseline.%s.keys%zu.keys_per_s %.0f keys/s\n", base, keys[ki],
                   (double)keys[ki] / (me / 1e3));
            printf("bench.push.baseline.%s.keys%zu.ms %.3f ms\n", base, keys[ki], me);
            fflush(stdout);
            free(t);
            free(te);
        }
        echo_close(&e);
        ot_trainer_destroy(tr);
        for (i = 0; i < nshards; i++)
            ot_param_server_destroy(ps[i]);
        ot_config_destroy(c);
    }
    return 0;
}
