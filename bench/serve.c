/*
 * bench/serve.c - serving predictions: in process and over tcp://127.0.0.1,
 * while real-time updates arrive every 100 ms and a full update every 10 s;
 * and the time a restarted predictor needs to serve again.
 *
 * Figures (one line each, "bench.serve.<figure> <value> <unit>"):
 *
 *  inproc.threads<T>.preds_per_s   ot_predictor_predict() calls per second,
 *                                  T = 1 or 2 threads (examples of 20 hashed
 *                                  features, a 2^20-weight wide model)
 *  inproc.threads<T>.p50_us/.p99_us  latency of one call (a sample of one
 *                                  call in 8; the clock is read around each)
 *  tcp.ex<E>.clients<C>.preds_per_s  examples scored per second through
 *                                  ot_predict_server_start() and
 *                                  ot_predict_client_predict_text(), E = 1,
 *                                  8 or 64 examples (VW text) per request,
 *                                  C = 1 or 4 clients (threads, one client each)
 *  tcp.ex<E>.clients<C>.p50_us/.p99_us  latency of one request
 *  baseline.echo.ex<E>.clients<C>.req_per_s  requests per second of a bare
 *                                  request/reply (lib/transport.h, raw: one
 *                                  request context per client, reused) with
 *                                  the same request and reply sizes and the
 *                                  same concurrency; .p99_us its latency
 *  tcp.ex<E>.clients<C>.req_per_s  the served requests per second, to set
 *                                  against the baseline (served and echo
 *                                  phases alternate in 4 slices of 500 ms,
 *                                  so both see the same machine load);
 *                                  .vs_echo the ratio of the two
 *  tcp_bin.ex<E>.clients<C>.*      the same with requests in the binary form
 *                                  (hashed features, ot_predict_client_predict():
 *                                  the server parses and hashes nothing),
 *                                  against baseline.echo_bin, a bare echo of
 *                                  the binary requests' size
 *  full.p99_us / nofull.p99_us     in-process latency (1 thread) of calls
 *                                  that started while a full update was being
 *                                  applied (from its publication until the
 *                                  predictor swapped it in), and of the others,
 *                                  with a full update every 250 ms in that phase
 *                                  (3 x PHASE_MS long); .vs_nofull their ratio
 *  restart.shards2.bits22.ms       a predictor restarted against 2 shards of a
 *                                  2^22-weight model over tcp://127.0.0.1:
 *                                  from create to its first served prediction
 *                                  (HELLO and a full copy from each shard);
 *                                  best and median of 5
 *
 * Arguments name the phases to run (inproc, tcp, full, restart); none: all.
 *
 * Updates: a trainer thread learns 200 examples and syncs every 100 ms; the
 * server publishes real-time updates every 100 ms; a full update is
 * published every 10 s.  Each phase runs PHASE_MS.  Everything runs in this
 * process, so the clients, the server and the update traffic share the CPUs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "onlinetrain.h"
#include "transport.h"

#define PHASE_MS 2000
#define ROUNDS 4 /* TCP: served and echo phases alternate in this many slices */
#define NEX 4096
#define NFEAT 20
#define MAXLAT 6000000 /* latencies kept per worker: 3 phases of 1 call in 8 */

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    return v[(size_t)(p * (double)(n - 1))];
}

static unsigned rng_next(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* ---- shared state ------------------------------------------------------------- */

static ot_example *examples[NEX];
static char *lines; /* NEX lines of VW text */
static size_t line_off[NEX + 1];
static ot_predictor *pred;
static ot_param_server *server;
static volatile int stop_updates, stop_phase;
#define MAXWIN 256
static double win_from[MAXWIN], win_until[MAXWIN]; /* us: full updates in flight */
static volatile int nwin;

static ot_config *cfg_for(int bits, uint32_t shard, uint32_t n)
{
    ot_config *c = NULL;

    if (ot_config_create(&c) != OT_OK)
        exit(1);
    ot_config_set_i64(c, OT_OPT_BITS, bits);
    ot_config_set_str(c, OT_OPT_OPTIMIZER, "sgd");
    ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 100);
    ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0); /* published by hand */
    ot_config_set_i64(c, OT_OPT_SYNC_EVERY_EXAMPLES, 0);
    ot_config_set_i64(c, OT_OPT_SYNC_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_TIMEOUT_MS, 10000);
    ot_config_set_i64(c, OT_OPT_REQUEST_CONTEXTS, 8);
    ot_config_set_i64(c, OT_OPT_RECV_MAX_BYTES, (int64_t)64 << 20);
    ot_config_set_i64(c, OT_OPT_SHARD_ID, shard);
    ot_config_set_i64(c, OT_OPT_NUM_SHARDS, n);
    return c;
}

static void make_examples(void)
{
    unsigned s = 7;
    size_t cap = (size_t)NEX * NFEAT * 12 + NEX, used = 0;
    int i, k;

    lines = malloc(cap);
    for (i = 0; i < NEX; i++) {
        if (ot_example_create(NULL, &examples[i]) != OT_OK)
            exit(1);
        line_off[i] = used;
        used += (size_t)snprintf(lines + used, cap - used, "%d |a", (i & 1) ? 1 : -1);
        for (k = 0; k < NFEAT; k++) {
            unsigned f = rng_next(&s) % 200000u;
            char name[16];
            snprintf(name, sizeof(name), "f%u", f);
            ot_example_add_feature(examples[i], "a", name, 1.0f);
            used += (size_t)snprintf(lines + used, cap - used, " %s", name);
        }
        ot_example_set_label(examples[i], (i & 1) ? 1.0f : 0.0f);
        lines[used++] = '\n';
    }
    line_off[NEX] = used;
}

/* Learns and syncs every 100 ms; publishes a full update every
 * `full_every_ms`, recording the window until the predictor swaps it in. */
static long full_every_ms = 10000;

static void *updater(void *arg)
{
    ot_trainer *tr = arg;
    double last_full = now_us();
    int i = 0;

    while (!stop_updates) {
        int k;
        for (k = 0; k < 200; k++, i++)
            ot_trainer_learn(tr, examples[i % NEX], NULL);
        ot_trainer_sync(tr);
        if ((now_us() - last_full) / 1e3 >= (double)full_every_ms) {
            double before = 0, after = 0, t0 = now_us();
            ot_predictor_stat(pred, "full_updates", &before);
            ot_param_server_publish(server, 1);
            do {
                nap_ms(1);
                ot_predictor_stat(pred, "full_updates", &after);
            } while (after <= before && now_us() - t0 < 5e6);
            if (nwin < MAXWIN) {
                win_from[nwin] = t0;
                win_until[nwin] = now_us();
                nwin++;
            }
            last_full = t0;
        }
        nap_ms(100);
    }
    return NULL;
}

/* ---- in-process ----------------------------------------------------------------- */

typedef struct worker {
    int id;
    double *lat, *start;
    size_t n;
    size_t calls; /* in-process: calls made (a sample of 1 in 8 is kept) */
    size_t ex_per_req;
    int binary; /* requests in the binary form (hashed features), not VW text */
    ot_predict_client *client;
    oti_sock *echo;
    size_t echo_bytes;
} worker;

static void *inproc_worker(void *arg)
{
    worker *w = arg;
    size_t i = (size_t)w->id * 997;

    while (!stop_phase && w->n < MAXLAT) {
        float out;
        double t0 = now_us(), t1;
        ot_predictor_predict(pred, examples[i++ % NEX], &out);
        t1 = now_us();
        if ((w->calls++ & 7) == 0) {
            w->start[w->n] = t0;
            w->lat[w->n++] = t1 - t0;
        }
    }
    return NULL;
}

static void *tcp_worker(void *arg)
{
    worker *w = arg;
    size_t i = (size_t)w->id * 997 % (NEX - 64);
    float scores[64];

    while (!stop_phase && w->n < MAXLAT) {
        size_t first = i % (NEX - w->ex_per_req), got = 0;
        const char *text = lines + line_off[first];
        size_t len = line_off[first + w->ex_per_req] - line_off[first];
        double t0 = now_us();
        ot_status st;
        if (w->binary)
            st = ot_predict_client_predict(w->client, (const ot_example *const *)examples + first,
                                           w->ex_per_req, scores, NULL);
        else
            st = ot_predict_client_predict_text(w->client, text, len, scores, 64, &got, NULL);
        if (st != OT_OK) {
            fprintf(stderr, "predict: %s\n", ot_predict_client_errmsg(w->client));
            exit(1);
        }
        w->lat[w->n++] = now_us() - t0;
        i += w->ex_per_req;
    }
    return NULL;
}

/* The bare round trip: one request context per client, reused, the reply
 * read in place (as the prediction client does). */
static void *echo_worker(void *arg)
{
    worker *w = arg;
    uint8_t *buf = calloc(1, w->echo_bytes);
    char err[OTI_ERRMSG_LEN];
    oti_request *rq = NULL;

    if (buf == NULL || oti_request_create(w->echo, &rq, err) != OT_OK)
        exit(1);
    while (!stop_phase && w->n < MAXLAT) {
        const uint8_t *d;
        size_t n;
        double t0 = now_us();
        if (oti_request_start(rq, buf, w->echo_bytes, 10000) != OT_OK ||
            oti_request_wait(rq) != OT_OK || oti_request_reply(rq, &d, &n) != OT_OK)
            exit(1);
        w->lat[w->n++] = now_us() - t0;
    }
    oti_request_destroy(rq);
    free(buf);
    return NULL;
}

static size_t echo_reply_bytes;

static ot_status echo_handler(void *arg, const uint8_t *req, size_t len, oti_reply *reply)
{
    uint8_t *o;
    ot_status st;

    (void)arg;
    (void)req;
    (void)len;
    if ((st = oti_reply_reserve(reply, echo_reply_bytes, &o)) == OT_OK)
        memset(o, 0, echo_reply_bytes);
    return st;
}

/* Length of the next run_phase(): PHASE_MS, or a slice of it for the
 * interleaved TCP phases. */
static int phase_ms = PHASE_MS;

/* Runs `n` workers of `fn` for phase_ms; returns all latencies in *all
 * (every one the workers hold: they accumulate over calls). */
static size_t run_phase(void *(*fn)(void *), worker *w, int n, double **all, double **starts)
{
    pthread_t th[8];
    size_t total = 0, k;
    int i;

    stop_phase = 0;
    for (i = 0; i < n; i++)
        pthread_create(&th[i], NULL, fn, &w[i]);
    nap_ms(phase_ms);
    stop_phase = 1;
    for (i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n;
    }
    *all = malloc(total * sizeof(double));
    if (starts != NULL)
        *starts = malloc(total * sizeof(double));
    total = 0;
    for (i = 0; i < n; i++)
        for (k = 0; k < w[i].n; k++) {
            (*all)[total] = w[i].lat[k];
            if (starts != NULL)
                (*starts)[total] = w[i].start[k];
            total++;
        }
    return total;
}

static worker *workers(int n)
{
    worker *w = calloc((size_t)n, sizeof(*w));
    int i;

    for (i = 0; i < n; i++) {
        w[i].id = i;
        w[i].lat = malloc(MAXLAT * sizeof(double));
        w[i].start = malloc(MAXLAT * sizeof(double));
    }
    return w;
}

static void free_workers(worker *w, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        free(w[i].lat);
        free(w[i].start);
    }
    free(w);
}

/* ---- restart ---------------------------------------------------------------------- */

static void restart_bench(void)
{
    ot_param_server *ps[2];
    const char *req[2], *pub[2];
    double t[5];
    uint32_t i;
    int r;

    for (i = 0; i < 2; i++) {
        ot_config *c = cfg_for(22, i, 2);
        if (ot_param_server_create(c, &ps[i]) != OT_OK ||
            ot_param_server_listen(ps[i], "tcp://127.0.0.1:0", "tcp://127.0.0.1:0") != OT_OK ||
            ot_param_server_start(ps[i]) != OT_OK)
            exit(1);
        req[i] = ot_param_server_url(ps[i], 0);
        pub[i] = ot_param_server_url(ps[i], 1);
        ot_config_destroy(c);
    }
    for (r = 0; r < 5; r++) {
        ot_config *c = cfg_for(22, 0, 2);
        ot_predictor *p = NULL;
        float out;
        double t0 = now_us();
        if (ot_predictor_create(c, &p) != OT_OK ||
            ot_predictor_subscribe_shards(p, pub, req, 2) != OT_OK) {
            fprintf(stderr, "restart: %s\n", ot_predictor_errmsg(p));
            exit(1);
        }
        ot_predictor_predict(p, examples[0], &out);
        t[r] = (now_us() - t0) / 1e3;
        ot_predictor_destroy(p);
        ot_config_destroy(c);
    }
    qsort(t, 5, sizeof(double), cmp_double);
    printf("bench.serve.restart.shards2.bits22.best_ms %.1f ms\n", t[0]);
    printf("bench.serve.restart.shards2.bits22.median_ms %.1f ms\n", t[2]);
    for (i = 0; i < 2; i++)
        ot_param_server_destroy(ps[i]);
}

/*
 * One TCP case: nc clients sending requests of ex examples (VW text, or the
 * binary form), alternating with a bare echo of the same sizes.  Prints its
 * figures; returns 0, or 1 on a setup failure.
 */
static int tcp_case(const ot_config *c, ot_predict_server *srv, int binary, int ex, int nc)
{
    worker *w = workers(nc), *we = workers(nc);
    oti_sock *rep = NULL;
    char err[OTI_ERRMSG_LEN], url[64];
    oti_tp_opts o;
    int port = 0, i, r;
    size_t req_bytes = 12 + (line_off[ex] - line_off[0]), n = 0, ne = 0;
    const char *tcp = binary ? "tcp_bin" : "tcp", *echo = binary ? "echo_bin" : "echo";
    double *all = NULL, *alle = NULL;

    if (binary) /* the binary form: 4 bytes and 9 a feature per example */
        for (i = 0, req_bytes = 12; i < ex; i++)
            req_bytes += 4 + 9 * ot_example_num_features(examples[i]);
    for (i = 0; i < nc; i++) {
        w[i].ex_per_req = (size_t)ex;
        w[i].binary = binary;
        if (ot_predict_client_create(c, ot_predict_server_url(srv), &w[i].client) != OT_OK)
            return 1;
    }
    /* the bare baseline with the same sizes and concurrency */
    echo_reply_bytes = 20 + 4 * (size_t)ex;
    oti_tp_opts_init(&o);
    o.contexts = 8;
    if (oti_sock_create(OTI_SOCK_REP, &o, &rep, err) != OT_OK ||
        oti_sock_listen(rep, "tcp://127.0.0.1:0", &port, err) != OT_OK ||
        oti_server_start(rep, echo_handler, NULL, err) != OT_OK)
        return 1;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
    for (i = 0; i < nc; i++) {
        we[i].echo_bytes = req_bytes;
        if (oti_sock_create(OTI_SOCK_REQ, &o, &we[i].echo, err) != OT_OK ||
            oti_sock_dial(we[i].echo, url, OTI_DIAL_WAIT, err) != OT_OK)
            return 1;
    }
    phase_ms = PHASE_MS / ROUNDS;
    for (r = 0; r < ROUNDS; r++) {
        free(all);
        free(alle);
        n = run_phase(tcp_worker, w, nc, &all, NULL);
        ne = run_phase(echo_worker, we, nc, &alle, NULL);
    }
    phase_ms = PHASE_MS;
    printf("bench.serve.%s.ex%d.clients%d.preds_per_s %.0f preds/s\n", tcp, ex,
           nc, (double)n * ex / (PHASE_MS / 1e3));
    printf("bench.serve.%s.ex%d.clients%d.req_per_s %.0f req/s\n", tcp, ex,
           nc, (double)n / (PHASE_MS / 1e3));
    printf("bench.serve.%s.ex%d.clients%d.p50_us %.1f us\n", tcp, ex, nc,
           pct(all, n, 0.5));
    printf("bench.serve.%s.ex%d.clients%d.p99_us %.1f us\n", tcp, ex, nc,
           pct(all, n, 0.99));
    printf("bench.serve.baseline.%s.ex%d.clients%d.req_per_s %.0f req/s\n", echo,
           ex, nc, (double)ne / (PHASE_MS / 1e3));
    printf("bench.serve.baseline.%s.ex%d.clients%d.p99_us %.1f us\n", echo, ex,
           nc, pct(alle, ne, 0.99));
    printf("bench.serve.%s.ex%d.clients%d.vs_echo %.1f %%\n", tcp, ex, nc,
           100.0 * (double)n / (double)ne);
    fflush(stdout);
    free(all);
    free(alle);
    for (i = 0; i < nc; i++) {
        ot_predict_client_destroy(w[i].client);
        oti_sock_destroy(we[i].echo);
    }
    oti_sock_destroy(rep);
    free_workers(w, nc);
    free_workers(we, nc);
    return 0;
}

/* Phases named on the command line run; none named: all. */
static int want(int argc, char **argv, const char *phase)
{
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], phase) == 0)
            return 1;
    return argc < 2;
}

int main(int argc, char **argv)
{
    ot_config *c = cfg_for(20, 0, 1);
    ot_trainer *tr = NULL;
    ot_predict_server *srv = NULL;
    pthread_t up;
    static const int threads[2] = {1, 2}, exs[3] = {1, 8, 64}, clients[2] = {1, 4};
    double *all, *starts;
    size_t n, k;
    int ti, ei, ci, fi;

    make_examples();
    if (ot_param_server_create(c, &server) != OT_OK ||
        ot_param_server_listen(server, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0") != OT_OK ||
        ot_param_server_start(server) != OT_OK || ot_trainer_create(c, &tr) != OT_OK ||
        ot_trainer_connect(tr, ot_param_server_url(server, 0)) != OT_OK ||
        ot_predictor_create(c, &pred) != OT_OK ||
        ot_predictor_subscribe(pred, ot_param_server_url(server, 1),
                               ot_param_server_url(server, 0)) != OT_OK ||
        ot_predict_server_start(pred, c, "tcp://127.0.0.1:0", &srv) != OT_OK) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    pthread_create(&up, NULL, updater, tr);

    for (ti = 0; ti < 2 && want(argc, argv, "inproc"); ti++) {
        worker *w = workers(threads[ti]);
        size_t calls = 0;
        int i;
        n = run_phase(inproc_worker, w, threads[ti], &all, NULL);
        for (i = 0; i < threads[ti]; i++)
            calls += w[i].calls;
        printf("bench.serve.inproc.threads%d.preds_per_s %.0f preds/s\n", threads[ti],
               (double)calls / (PHASE_MS / 1e3));
        printf("bench.serve.inproc.threads%d.p50_us %.2f us\n", threads[ti], pct(all, n, 0.5));
        printf("bench.serve.inproc.threads%d.p99_us %.2f us\n", threads[ti], pct(all, n, 0.99));
        fflush(stdout);
        free(all);
        free_workers(w, threads[ti]);
    }
    /* Served and bare echo phases alternate in ROUNDS slices of
     * PHASE_MS / ROUNDS each, so a change in the machine's load during the
     * run weighs on both alike. */
    for (fi = 0; fi < 2 && want(argc, argv, "tcp"); fi++)
        for (ei = 0; ei < 3; ei++)
            for (ci = 0; ci < 2; ci++)
                if (tcp_case(c, srv, fi, exs[ei], clients[ci]) != 0)
                    return 1;
    /* p99 while full updates land vs the rest */
    if (want(argc, argv, "full")) {
        worker *w = workers(1);
        double *in = NULL, *out = NULL;
        size_t nin = 0, nout = 0;
        nwin = 0;
        full_every_ms = 250;
        phase_ms = 3 * PHASE_MS; /* 24 full updates: a p99 of the calls during them */
        n = run_phase(inproc_worker, w, 1, &all, &starts);
        phase_ms = PHASE_MS;
        full_every_ms = 10000;
        in = malloc(n * sizeof(double));
        out = malloc(n * sizeof(double));
        /* a call is "during a full update" when it started inside a window
         * the updater recorded (publication until the swap was seen) */
        for (k = 0; k < n; k++) {
            int wi, during = 0;
            for (wi = 0; wi < nwin && !during; wi++)
                during = starts[k] >= win_from[wi] && starts[k] <= win_until[wi];
            if (during)
                in[nin++] = all[k];
            else
                out[nout++] = all[k];
        }
        printf("bench.serve.full.p99_us %.2f us\n", pct(in, nin, 0.99));
        printf("bench.serve.full.calls %zu calls\n", nin);
        printf("bench.serve.nofull.p99_us %.2f us\n", pct(out, nout, 0.99));
        printf("bench.serve.full.vs_nofull %.2f x\n", pct(in, nin, 0.99) / pct(out, nout, 0.99));
        free(in);
        free(out);
        free(all);
        free(starts);
        free_workers(w, 1);
    }
    stop_updates = 1;
    pthread_join(up, NULL);
    ot_predict_server_destroy(srv);
    ot_predictor_destroy(pred);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(server);
    if (want(argc, argv, "restart"))
        restart_bench();
    for (k = 0; k < NEX; k++)
        ot_example_destroy(examples[k]);
    free(lines);
    ot_config_destroy(c);
    return 0;
}
