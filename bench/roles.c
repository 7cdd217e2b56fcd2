/*
 * bench/roles.c - the parameter server and the trainer: cost of a sync
 * round trip and of loading a full copy.
 *
 * Figures (one line each, "bench.roles.<figure> <value> <unit>"):
 *
 *  sync.<transport>_us        median time of one ot_trainer_sync() that
 *                             sends a delta of 10 examples x 20 features of a
 *                             2^20-weight wide model (SGD, fp32) and gets back
 *                             the other trainer's latest delta (two trainers
 *                             take turns), over inproc:// and tcp://127.0.0.1
 *  sync.delta_bytes           mean bytes of one delta frame
 *  sync.reply_bytes           mean bytes of one sync reply (ack + update)
 *  connect.full_copy_ms       ot_trainer_connect() on the 2^20-weight model:
 *                             HELLO plus a full copy of 4 MiB in 1 MiB chunks
 *                             (max_message 1 MiB), over inproc; best of 20
 *                             (the first ones pay the allocator's first-touch
 *                             page faults of fresh 4 MiB blocks)
 *  baselines, in the same run:
 *   baseline.echo.<transport>_us  median round trip of a raw request/reply
 *                                 (lib/transport.h) of 2300 bytes (about a
 *                                 delta's size), a handler that copies it back
 *   baseline.memcpy_model_ms      memcpy of the model's 4 MiB of weights
 *
 * Medians over SYNCS syncs.  The server runs in the same process, so on a
 * machine with few cores the figures include nng's thread hand-offs
 * competing with the trainers for the CPUs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "onlinetrain.h"
#include "transport.h"

#define SYNCS 400
#define BITS 20

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
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

static void die(const char *what, int st)
{
    fprintf(stderr, "bench.roles: %s: %s\n", what, ot_strerror(st));
    exit(1);
}

static ot_config *make_cfg(void)
{
    ot_config *c = NULL;
    int st;

    if ((st = ot_config_create(&c)) != OT_OK)
        die("config", st);
    ot_config_set_i64(c, OT_OPT_BITS, BITS);
    ot_config_set_str(c, OT_OPT_OPTIMIZER, "sgd");
    ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_SYNC_EVERY_EXAMPLES, 0);
    ot_config_set_i64(c, OT_OPT_SYNC_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_MAX_MESSAGE, 1 << 20);
    ot_config_set_i64(c, OT_OPT_RECONNECT_MS, 10);
    return c;
}

static void learn_some(ot_trainer *tr, ot_example *ex, unsigned *rng)
{
    int i, k;

    for (i = 0; i < 10; i++) {
        ot_example_clear(ex);
        for (k = 0; k < 20; k++) {
            *rng = *rng * 1103515245u + 12345u;
            ot_example_add_hashed(ex, ' ', *rng >> 4, 1.0f);
        }
        ot_example_set_label(ex, (*rng >> 9) & 1 ? 1.0f : 0.0f);
        ot_trainer_learn(tr, ex, NULL);
    }
}

static ot_trainer *connect_trainer(const ot_config *cfg, const char *url, int id)
{
    ot_config *c = NULL;
    ot_trainer *tr = NULL;
    int st;

    ot_config_clone(cfg, &c);
    ot_config_set_i64(c, OT_OPT_TRAINER_ID, id);
    if ((st = ot_trainer_create(c, &tr)) != OT_OK)
        die("trainer", st);
    ot_config_destroy(c);
    if ((st = ot_trainer_connect(tr, url)) != OT_OK)
        die("connect", st);
    return tr;
}

static void bench_sync(const ot_config *cfg, const char *scheme, const char *url_in)
{
    ot_param_server *ps = NULL;
    ot_trainer *a, *b;
    ot_example *ex = NULL;
    double *t = malloc(SYNCS * sizeof(double)), d0, d1, r0, r1, v;
    unsigned rng = 12345;
    int i, st;

    if ((st = ot_param_server_create(cfg, &ps)) != OT_OK ||
        (st = ot_param_server_listen(ps, url_in, NULL)) != OT_OK ||
        (st = ot_param_server_start(ps)) != OT_OK)
        die("server", st);
    a = connect_trainer(cfg, ot_param_server_url(ps, 0), 1);
    b = connect_trainer(cfg, ot_param_server_url(ps, 0), 2);
    ot_example_create(NULL, &ex);
    ot_trainer_stat(a, "delta_bytes_out", &d0);
    ot_param_server_stat(ps, "reply_bytes_out", &r0);
    for (i = 0; i < SYNCS; i++) {
        ot_trainer *tr = (i & 1) ? b : a;
        double t0;
        learn_some(tr, ex, &rng);
        t0 = now_us();
        if ((st = ot_trainer_sync(tr)) != OT_OK)
            die("sync", st);
        t[i] = now_us() - t0;
    }
    printf("bench.roles.sync.%s_us %.1f us\n", scheme, median(t, SYNCS));
    if (strcmp(scheme, "inproc") == 0) {
        ot_trainer_stat(a, "delta_bytes_out", &d1);
        ot_trainer_stat(b, "delta_bytes_out", &v);
        d1 += v;
        ot_param_server_stat(ps, "reply_bytes_out", &r1);
        printf("bench.roles.sync.delta_bytes %.0f bytes\n", (d1 - d0) / SYNCS);
        printf("bench.roles.sync.reply_bytes %.0f bytes\n", (r1 - r0) / SYNCS);
    }
    ot_example_destroy(ex);
    ot_trainer_destroy(a);
    ot_trainer_destroy(b);
    ot_param_server_destroy(ps);
    free(t);
}

static ot_status echo(void *arg, const uint8_t *req, size_t len, oti_reply *reply)
{
    (void)arg;
    return oti_reply_append(reply, req, len);
}

static void bench_echo(const char *scheme, const char *url_in, size_t size)
{
    oti_sock *srv = NULL, *cli = NULL;
    double *t = malloc(SYNCS * sizeof(double));
    uint8_t *msg = calloc(1, size);
    char url[128];
    int port = 0, i, st;

    if ((st = oti_sock_create(OTI_SOCK_REP, NULL, &srv, NULL)) != OT_OK ||
        (st = oti_sock_listen(srv, url_in, &port, NULL)) != OT_OK ||
        (st = oti_server_start(srv, echo, NULL, NULL)) != OT_OK)
        die("echo server", st);
    if (port > 0)
        snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
    else
        snprintf(url, sizeof(url), "%s", url_in);
    if ((st = oti_sock_create(OTI_SOCK_REQ, NULL, &cli, NULL)) != OT_OK ||
        (st = oti_sock_dial(cli, url, OTI_DIAL_WAIT, NULL)) != OT_OK)
        die("echo client", st);
    for (i = 0; i < SYNCS; i++) {
        ot_buf *r = NULL;
        double t0 = now_us();
        if ((st = oti_sock_call(cli, msg, size, 5000, &r, NULL)) != OT_OK)
            die("echo", st);
        t[i] = now_us() - t0;
        ot_buf_release(r);
    }
    printf("bench.roles.baseline.echo.%s_us %.1f us\n", scheme, median(t, SYNCS));
    oti_sock_destroy(cli);
    oti_sock_destroy(srv);
    free(msg);
    free(t);
}

static void bench_connect(const ot_config *cfg, const char *url)
{
    ot_param_server *ps = NULL;
    ot_trainer *tr;
    double best = 1e30, t0;
    size_t n = (size_t)1 << BITS;
    float *src = calloc(n, sizeof(float)), *dst = calloc(n, sizeof(float));
    int i, st;

    if ((st = ot_param_server_create(cfg, &ps)) != OT_OK ||
        (st = ot_param_server_listen(ps, url, NULL)) != OT_OK ||
        (st = ot_param_server_start(ps)) != OT_OK)
        die("server", st);
    tr = connect_trainer(cfg, url, 1); /* builds the server's full copy once */
    ot_trainer_destroy(tr);
    for (i = 0; i < 20; i++) {
        t0 = now_us();
        tr = connect_trainer(cfg, url, 2 + i);
        t0 = now_us() - t0;
        if (t0 < best)
            best = t0;
        ot_trainer_destroy(tr);
    }
    printf("bench.roles.connect.full_copy_ms %.2f ms\n", best / 1e3);
    best = 1e30;
    for (i = 0; i < 5; i++) {
        src[i] = (float)i;
        t0 = now_us();
        memcpy(dst, src, n * sizeof(float));
        t0 = now_us() - t0;
        if (t0 < best && dst[i] == (float)i)
            best = t0;
    }
    printf("bench.roles.baseline.memcpy_model_ms %.3f ms\n", best / 1e3);
    ot_param_server_destroy(ps);
    free(src);
    free(dst);
}

int main(void)
{
    ot_config *cfg = make_cfg();
    char url[128];

    snprintf(url, sizeof(url), "inproc://bench-roles-%ld", (long)getpid());
    bench_sync(cfg, "inproc", url);
    bench_sync(cfg, "tcp", "tcp://127.0.0.1:0");
    bench_echo("inproc", "inproc://bench-roles-echo", 2300);
    bench_echo("tcp", "tcp://127.0.0.1:0", 2300);
    snprintf(url, sizeof(url), "inproc://bench-roles-connect-%ld", (long)getpid());
    bench_connect(cfg, url);
    ot_config_destroy(cfg);
    return 0;
}
