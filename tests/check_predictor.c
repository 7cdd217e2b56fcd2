/*
 * check_predictor.c - the prediction worker (lib/predictor.c): loading a full
 * copy, real-time and full updates, sequence gaps under both gap policies,
 * reads that are never torn while updates land, several transports and
 * several predictors, and that predicting never changes the model.
 *
 * The server is driven by hand (rt_interval_ms = 0, full_interval_ms = 0,
 * ot_param_server_publish) and its master is set with
 * oti_param_server_with_master.  Sockets and threads are created only inside
 * tests (Check forks each one); test cases are tagged "net".  Waits are
 * bounded, and nothing passes or fails on how long something took.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "delta.h"
#include "internal.h"
#include "model.h"
#include "params.h"
#include "protocol.h"
#include "tests.h"
#include "transport.h"

/* Bound of every wait, so that a test fails rather than hangs; longer under
 * valgrind (make check-valgrind sets OT_VALGRIND), which runs one thread at a
 * time, many times slower. */
#define WAIT_MS (getenv("OT_VALGRIND") != NULL ? 60000 : 20000)

/* ---- helpers ------------------------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double pstat(const ot_predictor *p, const char *name)
{
    double v = -1.0;

    ck_assert_int_eq(ot_predictor_stat(p, name, &v), OT_OK);
    return v;
}

static double sstat(const ot_param_server *ps, const char *name)
{
    double v = -1.0;

    ck_assert_int_eq(ot_param_server_stat(ps, name, &v), OT_OK);
    return v;
}

/* Polls until stat `name` >= want or WAIT_MS pass; returns the last value. */
static double wait_stat(const ot_predictor *p, const char *name, double want)
{
    long end = now_ms() + WAIT_MS;
    double v = pstat(p, name);

    while (v < want && now_ms() < end) {
        sleep_ms(1);
        v = pstat(p, name);
    }
    return v;
}

/* A model config: squared loss (a prediction is the logit itself), SGD (no
 * optimizer state), the server publishing only when told to. */
static ot_config *make_cfg(int bits, const char *hidden, int dense_dim)
{
    ot_config *c = NULL;

    ck_assert_int_eq(ot_config_create(&c), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, bits), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_LOSS, "squared"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_OPTIMIZER, "sgd"), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_f64(c, OT_OPT_RT_THRESHOLD, 0.5), OT_OK);
    if (hidden != NULL)
        ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HIDDEN_LAYERS, hidden), OT_OK);
    if (dense_dim > 0)
        ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_DENSE_DIM, dense_dim), OT_OK);
    return c;
}

/* URLs for a server: scheme "inproc", "ipc" or "tcp" (port 0). */
static void server_urls(const char *scheme, char *tr, char *pub, size_t n)
{
    static int seq;

    if (strcmp(scheme, "ipc") == 0) {
        snprintf(tr, n, "ipc:///tmp/ot-pred-%ld-%d-t.ipc", (long)getpid(), seq);
        snprintf(pub, n, "ipc:///tmp/ot-pred-%ld-%d-p.ipc", (long)getpid(), seq);
    } else if (strcmp(scheme, "tcp") == 0) {
        snprintf(tr, n, "tcp://127.0.0.1:0");
        snprintf(pub, n, "tcp://127.0.0.1:0");
    } else {
        snprintf(tr, n, "inproc://ot-pred-%ld-%d-t", (long)getpid(), seq);
        snprintf(pub, n, "inproc://ot-pred-%ld-%d-p", (long)getpid(), seq);
    }
    seq++;
}

static ot_param_server *start_server(const ot_config *cfg, const char *scheme)
{
    ot_param_server *ps = NULL;
    char tr[128], pub[128];

    server_urls(scheme, tr, pub, sizeof(tr));
    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_OK);
    ck_assert_msg(ot_param_server_listen(ps, tr, pub) == OT_OK, "listen: %s",
                  ot_param_server_errmsg(ps));
    ck_assert_int_eq(ot_param_server_start(ps), OT_OK);
    return ps;
}

static void stop_server(ot_param_server *ps)
{
    const char *u;
    int i;

    for (i = 0; i < 2; i++) {
        u = ot_param_server_url(ps, i);
        if (u != NULL && strncmp(u, "ipc://", 6) == 0)
            unlink(u + 6);
    }
    ot_param_server_destroy(ps);
}

static ot_predictor *subscribe(const ot_config *cfg, ot_param_server *ps)
{
    ot_predictor *p = NULL;
    ot_status st;
    double before;
    long end;

    ck_assert_int_eq(ot_predictor_create(cfg, &p), OT_OK);
    st = ot_predictor_subscribe(p, ot_param_server_url(ps, 1), ot_param_server_url(ps, 0));
    ck_assert_msg(st == OT_OK, "subscribe: %s: %s", ot_status_name(st), ot_predictor_errmsg(p));
    /* Publish/subscribe drops what is sent before the publisher has added
     * the new subscriber's pipe, and the server does not say when it has:
     * publish real-time updates until one arrives, so that what a test
     * publishes next reaches the predictor. */
    end = now_ms() + WAIT_MS;
    before = pstat(p, "bytes_in");
    while (pstat(p, "bytes_in") == before && now_ms() < end) {
        ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
        sleep_ms(2);
    }
    ck_assert_double_gt(pstat(p, "bytes_in"), before);
    /* Then until the updates still in flight have landed (bytes_in quiet
     * for a while), so that a test's own frames are the next ones; a test
     * hook counting frames from now on must not count these. */
    {
        long quiet = getenv("OT_VALGRIND") != NULL ? 500 : 30, since = now_ms();
        double last = pstat(p, "bytes_in");
        end = now_ms() + WAIT_MS;
        while (now_ms() - since < quiet && now_ms() < end) {
            sleep_ms(5);
            if (pstat(p, "bytes_in") != last) {
                last = pstat(p, "bytes_in");
                since = now_ms();
            }
        }
    }
    return p;
}

/* Weights of every block bit-identical. */
static int same_weights(const ot_model *a, const ot_model *b)
{
    size_t i, nb = ot_model_num_blocks(a);

    if (nb != ot_model_num_blocks(b))
        return 0;
    for (i = 0; i < nb; i++) {
        uint64_t rows;
        uint32_t cols;
        const float *wa, *wb;
        if (ot_model_block_info(a, i, NULL, NULL, NULL, &rows, &cols, NULL) != OT_OK ||
            ot_model_block_data(a, i, OT_ARRAY_WEIGHTS, &wa) != OT_OK ||
            ot_model_block_data(b, i, OT_ARRAY_WEIGHTS, &wb) != OT_OK)
            return 0;
        if (memcmp(wa, wb, (size_t)(rows * cols) * sizeof(float)) != 0)
            return 0;
    }
    return 1;
}

/* The predictor's model has the master's weights. */
static int serves_master(ot_predictor *p, ot_param_server *ps)
{
    ot_model *a = NULL, *b = NULL;
    int eq;

    ck_assert_int_eq(ot_predictor_copy_model(p, &a), OT_OK);
    ck_assert_int_eq(ot_param_server_copy_model(ps, &b), OT_OK);
    eq = same_weights(a, b);
    ot_model_destroy(a);
    ot_model_destroy(b);
    return eq;
}

/* Waits until the predictor serves the master's version. */
static void wait_master_version(ot_predictor *p, ot_param_server *ps)
{
    uint64_t v = ot_param_server_version(ps);

    ck_assert_msg(ot_predictor_wait_version(p, v, WAIT_MS) == OT_OK,
                  "predictor of %s at version %llu, master at %llu (bytes_in %g, bad_frames %g, "
                  "ignored_stale %g, gaps %g)",
                  ot_param_server_url(ps, 1), (unsigned long long)ot_predictor_version(p),
                  (unsigned long long)v, pstat(p, "bytes_in"), pstat(p, "bad_frames"),
                  pstat(p, "ignored_stale"), pstat(p, "gaps"));
}

/* Like wait_master_version(), for tests whose subscriber may drop frames (a
 * slow subscriber under valgrind): with rt_interval_ms 0 nothing follows a
 * dropped last frame, so every 200 ms this publishes again, as the server's
 * publishers would (`full`: a full update, else a real-time update, which
 * tells the predictor of the gap, repaired by a full copy). */
static void catch_up(ot_predictor *p, ot_param_server *ps, int full)
{
    uint64_t v = ot_param_server_version(ps);
    long end = now_ms() + WAIT_MS;

    while (ot_predictor_wait_version(p, v, 200) != OT_OK && now_ms() < end)
        ck_assert_int_eq(ot_param_server_publish(ps, full), OT_OK);
    wait_master_version(p, ps);
}

/* ---- setting the master --------------------------------------------------------- */

/* Every weight := v, except row `skip` of the wide block when skip >= 0. */
typedef struct fill_arg {
    float v;
    long skip;
} fill_arg;

static void fill_all(void *arg, ot_model *m)
{
    const fill_arg *fa = arg;
    oti_params *p = oti_model_params(m);
    size_t b;
    uint64_t i;

    for (b = 0; b < p->nblocks; b++) {
        oti_block *blk = &p->blocks[b];
        for (i = 0; i < blk->rows * blk->cols; i++) {
            if (blk->kind == OTI_BLOCK_WIDE && (long)i == fa->skip)
                continue;
            blk->w[i] = fa->v;
        }
    }
}

static void set_all(ot_param_server *ps, float v, long skip)
{
    fill_arg fa;

    fa.v = v;
    fa.skip = skip;
    ck_assert_int_eq(oti_param_server_with_master(ps, fill_all, &fa), OT_OK);
}

/* Adds to single weights: wide rows and the bias. */
typedef struct bump_arg {
    int n;
    long row[8];    /* wide row, or -1 for the bias */
    float add[8];
} bump_arg;

static float *wide_w(ot_model *m)
{
    oti_params *p = oti_model_params(m);
    size_t b;

    for (b = 0; b < p->nblocks; b++)
        if (p->blocks[b].kind == OTI_BLOCK_WIDE)
            return p->blocks[b].w;
    return NULL;
}

static float *bias_w(ot_model *m)
{
    oti_params *p = oti_model_params(m);
    size_t b;

    for (b = 0; b < p->nblocks; b++)
        if (p->blocks[b].kind == OTI_BLOCK_BIAS)
            return p->blocks[b].w;
    return NULL;
}

static void bump(void *arg, ot_model *m)
{
    const bump_arg *ba = arg;
    int i;

    for (i = 0; i < ba->n; i++) {
        if (ba->row[i] < 0)
            bias_w(m)[0] += ba->add[i];
        else
            wide_w(m)[ba->row[i]] += ba->add[i];
    }
}

/* Wide weight i := i / 4 + 1, bias := 3. */
static void ramp(void *arg, ot_model *m)
{
    oti_params *p = oti_model_params(m);
    size_t b;
    uint64_t i;

    (void)arg;
    for (b = 0; b < p->nblocks; b++) {
        oti_block *blk = &p->blocks[b];
        if (blk->kind == OTI_BLOCK_WIDE)
            for (i = 0; i < blk->rows; i++)
                blk->w[i] = (float)i / 4.0f + 1.0f;
        else if (blk->kind == OTI_BLOCK_BIAS)
            blk->w[0] = 3.0f;
    }
}

/* An example with features of hashes 1..k (rows 1..k), value 1. */
static ot_example *example_k(int k, int dense_dim)
{
    ot_example *ex = NULL;
    int i;

    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    for (i = 1; i <= k; i++)
        ck_assert_int_eq(ot_example_add_hashed(ex, ' ', (uint32_t)i, 1.0f), OT_OK);
    if (dense_dim > 0) {
        float d[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        ck_assert_int_eq(ot_example_set_dense(ex, d, (size_t)dense_dim), OT_OK);
    }
    return ex;
}

/* ---- tests: serving the master ------------------------------------------------ */

START_TEST(test_predictor_serves_full_then_realtime)
{
    ot_config *cfg = make_cfg(6, NULL, 0);
    ot_param_server *ps = start_server(cfg, "inproc");
    ot_predictor *p = subscribe(cfg, ps);
    ot_model *before = NULL, *after = NULL, *master = NULL;
    ot_example *ex = example_k(2, 0);
    bump_arg ba;
    float y = 0.0f, want = 0.0f;
    const float *wa, *wb, *wm, *ba_, *bb, *bm;
    uint64_t i;

    ck_assert_uint_eq(ot_predictor_version(p), 0);
    ck_assert_double_eq(pstat(p, "full_copies"), 1);

    /* A full update: the predictor holds the master bit for bit. */
    ck_assert_int_eq(oti_param_server_with_master(ps, ramp, NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    ck_assert_double_eq(pstat(p, "full_updates"), 1);
    ck_assert(serves_master(p, ps));
    ck_assert_int_eq(ot_predictor_predict(p, ex, &y), OT_OK);
    ck_assert_float_eq(y, 3.0f + (1.0f / 4 + 1) + (2.0f / 4 + 1));

    /* A real-time update: the changes at or over rt_threshold (0.5) arrive,
     * the one below stays behind. */
    ck_assert_int_eq(ot_predictor_copy_model(p, &before), OT_OK);
    ba.n = 3;
    ba.row[0] = 1;  ba.add[0] = 1.0f;
    ba.row[1] = 2;  ba.add[1] = 0.25f;
    ba.row[2] = -1; ba.add[2] = 0.75f;
    ck_assert_int_eq(oti_param_server_with_master(ps, bump, &ba), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    wait_master_version(p, ps);
    ck_assert_double_eq(pstat(p, "rt_updates"), 1);
    ck_assert_double_eq(pstat(p, "rt_entries"), 2);
    ck_assert_double_eq(pstat(p, "gaps"), 0);
    ck_assert_int_eq(ot_predictor_copy_model(p, &after), OT_OK);
    ck_assert_int_eq(ot_param_server_copy_model(ps, &master), OT_OK);
    ck_assert_int_eq(ot_model_block_data(after, 1, OT_ARRAY_WEIGHTS, &wa), OT_OK);
    ck_assert_int_eq(ot_model_block_data(before, 1, OT_ARRAY_WEIGHTS, &wb), OT_OK);
    ck_assert_int_eq(ot_model_block_data(master, 1, OT_ARRAY_WEIGHTS, &wm), OT_OK);
    ck_assert_int_eq(ot_model_block_data(after, 0, OT_ARRAY_WEIGHTS, &ba_), OT_OK);
    ck_assert_int_eq(ot_model_block_data(before, 0, OT_ARRAY_WEIGHTS, &bb), OT_OK);
    ck_assert_int_eq(ot_model_block_data(master, 0, OT_ARRAY_WEIGHTS, &bm), OT_OK);
    ck_assert_float_eq(ba_[0], bm[0]);
    ck_assert_float_eq(ba_[0], 3.75f);
    ck_assert_float_eq(wa[1], wm[1]);
    ck_assert_float_eq(wa[1], 1.25f + 1.0f);
    ck_assert_float_eq(wa[2], wb[2]); /* below the threshold: not sent yet */
    ck_assert_float_ne(wa[2], wm[2]);
    for (i = 3; i < 64; i++)
        ck_assert_float_eq(wa[i], wm[i]);
    ck_assert_float_eq(wa[0], wm[0]);
    want = ba_[0] + wa[1] + wa[2];
    ck_assert_int_eq(ot_predictor_predict(p, ex, &y), OT_OK);
    ck_assert_float_eq(y, want);
    ck_assert_double_ge(pstat(p, "bytes_in"), 64);
    ck_assert_double_eq(pstat(p, "version"), (double)ot_param_server_version(ps));
    ck_assert_double_eq(pstat(p, "staleness_versions"), 0);
    ck_assert_double_ge(pstat(p, "update_latency_ms"), 0);
    ck_assert_double_eq(pstat(p, "predictions"), 2);

    ot_model_destroy(before);
    ot_model_destroy(after);
    ot_model_destroy(master);
    ot_example_destroy(ex);
    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_predictor_ignores_set_not_newer_than_its_copy)
{
    ot_config *cfg = make_cfg(4, NULL, 0);
    ot_param_server *ps = start_server(cfg, "inproc");
    ot_predictor *p;
    bump_arg ba;
    double stale;

    /* The master moves before the predictor loads its copy; the real-time
     * update published after carries that same version: nothing new. */
    ba.n = 1;
    ba.row[0] = 3;
    ba.add[0] = 2.0f;
    ck_assert_int_eq(oti_param_server_with_master(ps, bump, &ba), OT_OK);
    p = subscribe(cfg, ps); /* its probes are such updates already */
    ck_assert_uint_eq(ot_predictor_version(p), 1);
    ck_assert(serves_master(p, ps));
    stale = wait_stat(p, "ignored_stale", 1);
    ck_assert_double_ge(stale, 1);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    ck_assert_double_eq(wait_stat(p, "ignored_stale", stale + 1), stale + 1);
    ck_assert_double_eq(pstat(p, "rt_updates"), 0);
    ck_assert_double_eq(pstat(p, "full_copies"), 1);
    ck_assert_uint_eq(ot_predictor_version(p), 1);
    ck_assert(serves_master(p, ps));

    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- tests: gaps ----------------------------------------------------------------- */

START_TEST(test_predictor_gap_requests_full_copy)
{
    ot_config *cfg = make_cfg(5, NULL, 0);
    ot_param_server *ps = start_server(cfg, "inproc");
    ot_predictor *p = subscribe(cfg, ps);
    bump_arg ba;
    int i;

    /* Messages 3, 6, ... are lost; message 4 shows the gap. */
    ck_assert_int_eq(oti_predictor_set_test_hook(p, 3, 0), OT_OK);
    for (i = 1; i <= 5; i++) {
        ba.n = 2;
        ba.row[0] = i;
        ba.add[0] = 1.0f;
        ba.row[1] = -1;
        ba.add[1] = 1.0f;
        ck_assert_int_eq(oti_param_server_with_master(ps, bump, &ba), OT_OK);
        ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    }
    ck_assert_double_ge(wait_stat(p, "full_copies", 2), 2);
    ck_assert_double_ge(pstat(p, "gaps"), 1);
    wait_master_version(p, ps);
    ck_assert_double_ge(wait_stat(p, "resyncs", 1), 1);
    ck_assert(serves_master(p, ps));
    ck_assert_double_eq(pstat(p, "full_updates"), 0);

    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_predictor_gap_waits_for_full_update)
{
    ot_config *cfg = make_cfg(5, NULL, 0);
    ot_param_server *ps;
    ot_predictor *p;
    bump_arg ba;
    int i;

    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_GAP_POLICY, "wait"), OT_OK);
    ps = start_server(cfg, "inproc");
    p = subscribe(cfg, ps);
    ck_assert_int_eq(oti_predictor_set_test_hook(p, 3, 0), OT_OK);
    for (i = 1; i <= 5; i++) {
        ba.n = 1;
        ba.row[0] = i;
        ba.add[0] = 1.0f;
        ck_assert_int_eq(oti_param_server_with_master(ps, bump, &ba), OT_OK);
        ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    }
    /* Message 3 lost; 4 shows the gap and, with 5, is ignored. */
    ck_assert_double_eq(wait_stat(p, "ignored_waiting", 2), 2);
    ck_assert_double_eq(pstat(p, "gaps"), 1);
    ck_assert_double_eq(pstat(p, "rt_updates"), 2);
    ck_assert_double_eq(pstat(p, "full_copies"), 1);
    ck_assert_uint_eq(ot_predictor_version(p), 2);
    ck_assert_double_eq(pstat(p, "staleness_versions"), 3);
    ck_assert(!serves_master(p, ps));

    /* The next full update brings it level. */
    ck_assert_int_eq(oti_predictor_set_test_hook(p, 0, 0), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    ck_assert_double_eq(wait_stat(p, "full_updates", 1), 1);
    ck_assert_double_eq(pstat(p, "resyncs"), 1);
    ck_assert_double_eq(pstat(p, "full_copies"), 1);
    ck_assert(serves_master(p, ps));

    /* And real-time updates apply again. */
    ba.n = 1;
    ba.row[0] = 7;
    ba.add[0] = 1.0f;
    ck_assert_int_eq(oti_param_server_with_master(ps, bump, &ba), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    wait_master_version(p, ps);
    ck_assert_double_eq(pstat(p, "rt_updates"), 3);
    ck_assert(serves_master(p, ps));

    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- tests: reads while updates land ------------------------------------------- */

typedef struct reader_arg {
    ot_predictor *p;
    const float *expect; /* expect[v]: the prediction when every weight is v */
    int nexpect;
    int integral;        /* mixed in-place updates: any integer in [0, max] */
    float max;
    int dense_dim;
    atomic_int *stop;
    atomic_long predictions;
    long bad;
    float bad_value;
    float last_bad;
} reader_arg;

static int in_set(const reader_arg *a, float y)
{
    int lo = 0, hi = a->nexpect - 1;

    if (a->integral)
        return y >= 0.0f && y <= a->max && y == floorf(y);
    /* expect[] is increasing */
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (a->expect[mid] == y)
            return 1;
        if (a->expect[mid] < y)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

static void *reader_main(void *arg)
{
    reader_arg *a = arg;
    ot_example *ex = NULL;
    float y;

    if (ot_example_create(NULL, &ex) != OT_OK)
        return NULL;
    ot_example_add_hashed(ex, ' ', 1, 1.0f);
    ot_example_add_hashed(ex, ' ', 2, 1.0f);
    ot_example_add_hashed(ex, ' ', 3, 1.0f);
    if (a->dense_dim > 0) {
        float d[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        ot_example_set_dense(ex, d, (size_t)a->dense_dim);
    }
    while (!atomic_load(a->stop)) {
        if (ot_predictor_predict(a->p, ex, &y) != OT_OK || !in_set(a, y)) {
            if (a->bad++ == 0)
                a->bad_value = y;
            a->last_bad = y;
        }
        atomic_fetch_add(&a->predictions, 1);
    }
    ot_example_destroy(ex);
    return NULL;
}

#define NREADERS 4

typedef struct readers {
    pthread_t t[NREADERS];
    reader_arg a[NREADERS];
    atomic_int stop;
} readers;

static void readers_start(readers *r, ot_predictor *p, const float *expect, int nexpect,
                          int integral, float max, int dense_dim)
{
    int i;

    atomic_store(&r->stop, 0);
    for (i = 0; i < NREADERS; i++) {
        memset(&r->a[i], 0, sizeof(r->a[i]));
        r->a[i].p = p;
        r->a[i].expect = expect;
        r->a[i].nexpect = nexpect;
        r->a[i].integral = integral;
        r->a[i].max = max;
        r->a[i].dense_dim = dense_dim;
        r->a[i].stop = &r->stop;
        atomic_init(&r->a[i].predictions, 0);
        ck_assert_int_eq(pthread_create(&r->t[i], NULL, reader_main, &r->a[i]), 0);
    }
    /* Updates start once every reader is predicting. */
    for (i = 0; i < NREADERS; i++) {
        long end = now_ms() + WAIT_MS;
        while (atomic_load(&r->a[i].predictions) == 0 && now_ms() < end)
            sleep_ms(1);
        ck_assert_int_gt(atomic_load(&r->a[i].predictions), 0);
    }
}

static void readers_finish(readers *r)
{
    long preds = 0;
    int i;

    atomic_store(&r->stop, 1);
    for (i = 0; i < NREADERS; i++)
        pthread_join(r->t[i], NULL);
    for (i = 0; i < NREADERS; i++) {
        ck_assert_msg(r->a[i].bad == 0,
                      "reader %d: %ld of %ld predictions unexpected (first %.9g, last %.9g)", i,
                      r->a[i].bad, atomic_load(&r->a[i].predictions), (double)r->a[i].bad_value,
                      (double)r->a[i].last_bad);
        preds += atomic_load(&r->a[i].predictions);
    }
    ck_assert_int_gt(preds, 0);
}

/* expect[v] for v = 0..n-1: the prediction of a model of cfg's shape whose
 * weights are all v (except wide row `skip`, left 0, when skip >= 0). */
static float *expected_values(const ot_config *cfg, int n, long skip, int dense_dim)
{
    float *e = malloc((size_t)n * sizeof(float));
    ot_model *m = NULL;
    ot_example *ex = example_k(3, dense_dim);
    fill_arg fa;
    int v;

    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(ot_model_create(cfg, &m), OT_OK);
    for (v = 0; v < n; v++) {
        fa.v = (float)v;
        fa.skip = skip;
        fill_all(&fa, m);
        ck_assert_int_eq(ot_model_predict(m, ex, &e[v]), OT_OK);
        if (v > 0)
            ck_assert_float_gt(e[v], e[v - 1]);
    }
    ot_model_destroy(m);
    ot_example_destroy(ex);
    return e;
}

/* The torn-read tests publish `n` updates while threads predict; under
 * valgrind, a thirtieth (at least 10), so the memory checks finish within
 * the waits and the test timeout. */
static int updates_to_run(int n)
{
    if (getenv("OT_VALGRIND") == NULL)
        return n;
    return n / 30 > 10 ? n / 30 : 10;
}

START_TEST(test_predictor_no_torn_reads_during_full_updates)
{
    const int N = updates_to_run(1000);
    ot_config *cfg = make_cfg(4, NULL, 0);
    ot_param_server *ps = start_server(cfg, "inproc");
    ot_predictor *p = subscribe(cfg, ps);
    float *expect = expected_values(cfg, N + 1, -1, 0);
    readers r;
    int v;

    /* A wide model with a bias and 3 features of value 1: logit 4 v. */
    ck_assert_float_eq(expect[1], 4.0f);
    ck_assert_float_eq(expect[N], 4.0f * N);
    readers_start(&r, p, expect, N + 1, 0, 0.0f, 0);
    for (v = 1; v <= N; v++) {
        set_all(ps, (float)v, -1);
        ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    }
    catch_up(p, ps, 1);
    readers_finish(&r);
    ck_assert(serves_master(p, ps));
    ck_assert_double_ge(pstat(p, "full_updates") + pstat(p, "full_copies"), 2);
    ck_assert_double_eq(pstat(p, "rt_updates"), 0);

    free(expect);
    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_predictor_no_torn_reads_during_realtime_updates)
{
    const int N = updates_to_run(1000);
    ot_config *cfg = make_cfg(4, NULL, 0);
    ot_param_server *ps = start_server(cfg, "inproc");
    ot_predictor *p = subscribe(cfg, ps);
    readers r;
    int v;

    /* Every weight but wide row 0 (which the readers' example does not use)
     * changes by 1 each time: one SET frame written in place, weight by
     * weight.  A reader may see some weights at v and others at v + 1, but
     * each weight whole, so the logit is a sum of 4 integers. */
    readers_start(&r, p, NULL, 0, 1, 4.0f * N, 0);
    for (v = 1; v <= N; v++) {
        set_all(ps, (float)v, 0);
        ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    }
    catch_up(p, ps, 0);
    readers_finish(&r);
    ck_assert(serves_master(p, ps));
    ck_assert_double_ge(pstat(p, "rt_updates"), 1);
    ck_assert_double_ge(sstat(ps, "rt_updates"), N);

    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_predictor_realtime_update_of_deep_layers_is_swapped)
{
    const int N = updates_to_run(200);
    ot_config *cfg = make_cfg(4, "4", 2);
    ot_param_server *ps = start_server(cfg, "inproc");
    ot_predictor *p = subscribe(cfg, ps);
    float *expect = expected_values(cfg, N + 1, 0, 2);
    readers r;
    int v;

    /* Real-time frames that touch the deep layers are applied to a copy and
     * swapped in whole: every prediction is that of one v. */
    set_all(ps, 1.0f, 0);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    readers_start(&r, p, expect, N + 1, 0, 0.0f, 2);
    for (v = 2; v <= N; v++) {
        set_all(ps, (float)v, 0);
        ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    }
    catch_up(p, ps, 0);
    readers_finish(&r);
    ck_assert(serves_master(p, ps));
    /* Under valgrind the subscriber can fall so far behind that frames are
     * dropped and the gaps repaired by full copies instead. */
    if (getenv("OT_VALGRIND") == NULL)
        ck_assert_double_ge(pstat(p, "rt_updates"), 2);

    free(expect);
    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- tests: transports, several predictors -------------------------------------- */

static void serve_over(const char *scheme)
{
    ot_config *cfg = make_cfg(5, NULL, 0);
    ot_param_server *ps = start_server(cfg, scheme);
    ot_predictor *p = subscribe(cfg, ps);
    bump_arg ba;

    ck_assert_int_eq(oti_param_server_with_master(ps, ramp, NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    ck_assert(serves_master(p, ps));
    ba.n = 1;
    ba.row[0] = 9;
    ba.add[0] = -2.0f;
    ck_assert_int_eq(oti_param_server_with_master(ps, bump, &ba), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    wait_master_version(p, ps);
    ck_assert(serves_master(p, ps));
    ck_assert_double_eq(pstat(p, "rt_updates"), 1);
    ck_assert_double_eq(pstat(p, "full_updates"), 1);
    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}

START_TEST(test_predictor_over_ipc)
{
    serve_over("ipc");
}
END_TEST

START_TEST(test_predictor_over_tcp)
{
    serve_over("tcp");
}
END_TEST

START_TEST(test_predictor_two_on_one_server)
{
    ot_config *cfg = make_cfg(5, NULL, 0);
    ot_param_server *ps = start_server(cfg, "tcp");
    ot_predictor *a = subscribe(cfg, ps);
    ot_predictor *b = subscribe(cfg, ps);
    bump_arg ba;
    int i;

    ck_assert_int_eq(oti_param_server_with_master(ps, ramp, NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    for (i = 0; i < 10; i++) {
        ba.n = 1;
        ba.row[0] = i;
        ba.add[0] = 1.0f;
        ck_assert_int_eq(oti_param_server_with_master(ps, bump, &ba), OT_OK);
        ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    }
    wait_master_version(a, ps);
    wait_master_version(b, ps);
    ck_assert(serves_master(a, ps));
    ck_assert(serves_master(b, ps));
    ck_assert_double_eq(pstat(a, "rt_updates"), 10);
    ck_assert_double_eq(pstat(b, "rt_updates"), 10);
    ck_assert_double_eq(sstat(ps, "hellos"), 2);
    ot_predictor_destroy(a);
    ot_predictor_destroy(b);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST


/* ---- tests: with a trainer; chunked full updates ---------------------------------- */

START_TEST(test_predictor_follows_trainer_ftrl_state)
{
    ot_config *cfg = make_cfg(8, NULL, 0);
    ot_param_server *ps;
    ot_predictor *p;
    ot_trainer *tr = NULL;
    ot_example *ex = NULL;
    ot_model *m = NULL;
    float yp = 0.0f, ym = 0.0f;
    int i, j;

    /* FTRL with state deltas: the server publishes weights and state, and
     * the predictor derives the weights of the rows whose state arrives. */
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_OPTIMIZER, "ftrl"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_LOSS, "logistic"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "state"), OT_OK);
    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_RT_THRESHOLD, 0.0), OT_OK);
    ps = start_server(cfg, "inproc");
    p = subscribe(cfg, ps);
    ck_assert_int_eq(ot_trainer_create(cfg, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, ot_param_server_url(ps, 0)), OT_OK);
    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    for (i = 0; i < 300; i++) {
        ot_example_clear(ex);
        for (j = 0; j < 4; j++)
            ck_assert_int_eq(ot_example_add_hashed(ex, ' ', (uint32_t)((i * 7 + j * 13) % 97), 1.0f),
                             OT_OK);
        ck_assert_int_eq(ot_example_set_label(ex, (i % 3) == 0 ? 1.0f : -1.0f), OT_OK);
        ck_assert_int_eq(ot_trainer_learn(tr, ex, NULL), OT_OK);
    }
    ck_assert_int_eq(ot_trainer_sync(tr), OT_OK);
    ck_assert_uint_gt(ot_param_server_version(ps), 0);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    wait_master_version(p, ps);
    ck_assert_double_ge(pstat(p, "rt_updates"), 1);
    ck_assert(serves_master(p, ps));
    ck_assert_int_eq(ot_param_server_copy_model(ps, &m), OT_OK);
    ck_assert_int_eq(ot_predictor_predict(p, ex, &yp), OT_OK);
    ck_assert_int_eq(ot_model_predict(m, ex, &ym), OT_OK);
    ck_assert_float_eq(yp, ym);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    ck_assert_double_eq(wait_stat(p, "full_updates", 1), 1);
    ck_assert(serves_master(p, ps));

    ot_model_destroy(m);
    ot_example_destroy(ex);
    ot_trainer_destroy(tr);
    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_predictor_full_update_in_chunks)
{
    ot_config *cfg = make_cfg(12, NULL, 0);
    ot_param_server *ps;
    ot_predictor *p;

    /* 4097 weights in frames of at most 4096 bytes: several chunks, for the
     * full copy at start as for the published full update. */
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, 4096), OT_OK);
    ps = start_server(cfg, "inproc");
    p = subscribe(cfg, ps);
    ck_assert(serves_master(p, ps));
    ck_assert_int_eq(oti_param_server_with_master(ps, ramp, NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    ck_assert_double_eq(wait_stat(p, "full_updates", 1), 1);
    ck_assert(serves_master(p, ps));
    set_all(ps, 0.5f, -1);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    ck_assert_double_eq(wait_stat(p, "full_updates", 2), 2);
    ck_assert_double_eq(pstat(p, "gaps"), 0);
    ck_assert_double_gt(sstat(ps, "full_bytes"), 4 * 4096);
    ck_assert(serves_master(p, ps));

    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* Changes the master (a wide row and the bias) and publishes a real-time
 * update: run between making a scheduled full update's copy and sending it. */
typedef struct between_arg {
    ot_param_server *ps;
    ot_status st;
} between_arg;

/* Adds a0 to wide row r0 and a1 to row r1 (-1: the bias), then publishes
 * (a full update when `full`). */
static void bump_two_and_publish(between_arg *a, long r0, float a0, long r1, float a1, int full)
{
    bump_arg ba;

    memset(&ba, 0, sizeof(ba));
    ba.n = 2;
    ba.row[0] = r0;
    ba.add[0] = a0;
    ba.row[1] = r1;
    ba.add[1] = a1;
    a->st = oti_param_server_with_master(a->ps, bump, &ba);
    if (a->st == OT_OK)
        a->st = ot_param_server_publish(a->ps, full);
}

static void bump_and_publish(void *arg)
{
    bump_two_and_publish(arg, 3, 5.0f, -1, 2.0f, 0);
}

/*
 * A real-time update newer than a scheduled full update's copy goes out
 * before the copy's first chunk (the full publisher does not hold the
 * real-time one back).  Predictors swapping the copy in must still end with
 * the newer values, and the server's published copy must say so.  With
 * real-time updates on (rt_ms > 0) the server replays the newer values after
 * the first chunk; with them off it sends a newer copy instead.
 */
static void full_update_keeps_newer_values(int64_t rt_ms)
{
    ot_config *cfg = make_cfg(12, NULL, 0);
    ot_param_server *ps;
    ot_predictor *p;
    between_arg ba;
    uint64_t v_copy;
    double fulls, entries, rts, rts0;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, 4096), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_RT_INTERVAL_MS, rt_ms), OT_OK);
    ps = start_server(cfg, "inproc");
    p = subscribe(cfg, ps);
    ck_assert_int_eq(oti_param_server_with_master(ps, ramp, NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    fulls = wait_stat(p, "full_updates", 1);
    ck_assert(serves_master(p, ps));
    v_copy = ot_param_server_version(ps);
    rts0 = sstat(ps, "rt_updates"); /* subscribe() published some */

    ba.ps = ps;
    ba.st = OT_EINVAL;
    ck_assert_int_eq(oti_param_server_test_full_update(ps, bump_and_publish, &ba), OT_OK);
    ck_assert_int_eq(ba.st, OT_OK);
    ck_assert_uint_eq(ot_param_server_version(ps), v_copy + 1);
    ck_assert_double_eq(wait_stat(p, "full_updates", fulls + 1), fulls + 1);
    wait_master_version(p, ps);
    ck_assert(serves_master(p, ps));
    ck_assert_uint_eq(ot_predictor_version(p), v_copy + 1);
    ck_assert_double_eq(sstat(ps, "published_version"), (double)(v_copy + 1));
    ck_assert_double_eq(pstat(p, "gaps"), 0);
    /* one real-time update asked for by bump_and_publish; with them on, a
     * second one replayed the newer values after the first chunk */
    rts = sstat(ps, "rt_updates") - rts0;
    if (rt_ms == 0)
        ck_assert_double_eq(rts, 1);
    else
        ck_assert_double_ge(rts, 2);
    /* the published copy is what predictors hold: nothing is left to send */
    entries = sstat(ps, "rt_entries");
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    ck_assert_double_eq(sstat(ps, "rt_entries"), entries);

    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}

START_TEST(test_predictor_full_update_keeps_newer_realtime_values)
{
    full_update_keeps_newer_values(0);
    full_update_keeps_newer_values(60000); /* the timer never fires in the test */
}
END_TEST

/* Changes two wide rows and publishes a full update on demand: run between
 * making a scheduled full update's copy and sending it. */
static void bump_and_publish_full(void *arg)
{
    bump_two_and_publish(arg, 5, 1.0f, 9, -1.0f, 1);
}

/*
 * With real-time updates off (rt_interval_ms 0, as `ot cluster --full-only`
 * sets), a scheduled full update is just the full update: no real-time
 * update before the copy for what changed since the last update, and none
 * after the first chunk when an update published on demand is newer than
 * the copy (a copy of the newest master goes out instead).
 */
START_TEST(test_predictor_full_only_sends_no_realtime_updates)
{
    ot_config *cfg = make_cfg(12, NULL, 0);
    ot_param_server *ps;
    ot_predictor *p;
    between_arg ba;
    bump_arg bb;
    double fulls, rts0, prts0;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, 4096), OT_OK);
    ps = start_server(cfg, "inproc");
    p = subscribe(cfg, ps);
    ck_assert_int_eq(oti_param_server_with_master(ps, ramp, NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    fulls = wait_stat(p, "full_updates", 1);
    rts0 = sstat(ps, "rt_updates"); /* subscribe() published some */
    prts0 = pstat(p, "rt_updates");

    /* a few rows change, then the scheduled full update */
    memset(&bb, 0, sizeof(bb));
    bb.n = 2;
    bb.row[0] = 3;
    bb.add[0] = 5.0f;
    bb.row[1] = -1;
    bb.add[1] = 2.0f;
    ck_assert_int_eq(oti_param_server_with_master(ps, bump, &bb), OT_OK);
    ck_assert_int_eq(oti_param_server_test_full_update(ps, NULL, NULL), OT_OK);
    ck_assert_double_eq(sstat(ps, "rt_updates"), rts0);
    ck_assert_double_eq(wait_stat(p, "full_updates", fulls + 1), fulls + 1);
    wait_master_version(p, ps);
    ck_assert(serves_master(p, ps));

    /* a newer full update goes out on demand after the copy was made */
    ba.ps = ps;
    ba.st = OT_EINVAL;
    ck_assert_int_eq(oti_param_server_test_full_update(ps, bump_and_publish_full, &ba), OT_OK);
    ck_assert_int_eq(ba.st, OT_OK);
    ck_assert_double_eq(sstat(ps, "rt_updates"), rts0);
    ck_assert_double_eq(sstat(ps, "published_version"), (double)ot_param_server_version(ps));
    ck_assert_double_eq(wait_stat(p, "full_updates", fulls + 3), fulls + 3);
    wait_master_version(p, ps);
    ck_assert(serves_master(p, ps));
    ck_assert_double_eq(pstat(p, "rt_updates"), prts0);
    ck_assert_double_eq(pstat(p, "gaps"), 0);

    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- tests: frames from a hand-driven publisher ----------------------------------- */

/* A publisher driven by the test: its own PUB socket and encoders, so frames
 * can be interleaved, skipped, repeated or damaged.  Full copies still come
 * from a real server. */
typedef struct handpub {
    oti_sock *pub;
    char url[128];
    uint64_t seq;
    const ot_config *cfg;
} handpub;

static void hp_open(handpub *h, const ot_config *cfg)
{
    static int n;

    memset(h, 0, sizeof(*h));
    h->cfg = cfg;
    h->seq = 1;
    snprintf(h->url, sizeof(h->url), "inproc://ot-pred-%ld-hand-%d", (long)getpid(), n++);
    ck_assert_int_eq(oti_sock_create(OTI_SOCK_PUB, NULL, &h->pub, NULL), OT_OK);
    ck_assert_int_eq(oti_sock_listen(h->pub, h->url, NULL, NULL), OT_OK);
}

static void hp_send(handpub *h, const uint8_t *d, size_t n)
{
    ck_assert_int_eq(oti_sock_publish(h->pub, d, n, NULL), OT_OK);
}

/* Encodes the frames of a full update of m at version v, with consecutive
 * sequence numbers from h->seq; returns how many (at most 64) in bufs. */
static size_t hp_full(handpub *h, ot_model *m, uint64_t v, ot_buf **bufs)
{
    ot_delta_encoder *enc = NULL;
    ot_snapshot *snap = NULL;
    size_t n = 0;
    int more = 1;

    ck_assert_int_eq(ot_delta_encoder_create(h->cfg, &enc), OT_OK);
    ck_assert_int_eq(ot_snapshot_create(h->cfg, m, 0, &snap), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_set_versions(enc, v, v), OT_OK);
    while (more) {
        ck_assert_uint_lt(n, 64);
        ck_assert_int_eq(ot_delta_encoder_set_sequence(enc, h->seq++), OT_OK);
        ck_assert_int_eq(ot_delta_encode_set_buf(enc, m, &snap, 1, &bufs[n], &more), OT_OK);
        n++;
    }
    ot_snapshot_release(snap);
    ot_delta_encoder_destroy(enc);
    return n;
}

/* A SET frame at version v setting wide row `row` to `value` (m's shape). */
static ot_buf *hp_set(handpub *h, ot_model *m, uint64_t v, long row, float value)
{
    ot_delta_encoder *enc = NULL;
    ot_snapshot *snap = NULL;
    ot_buf *b = NULL;
    oti_params *pr = oti_model_params(m);

    ck_assert_int_eq(ot_delta_encoder_create(h->cfg, &enc), OT_OK);
    oti_params_clear_touched(pr);
    ck_assert_int_eq(ot_snapshot_create(h->cfg, m, 0, &snap), OT_OK);
    if (row >= 0) {
        wide_w(m)[row] = value;
        oti_block_touch(&pr->blocks[1], (uint64_t)row);
    }
    ck_assert_int_eq(ot_delta_encoder_set_versions(enc, v, v), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_set_sequence(enc, h->seq++), OT_OK);
    ck_assert_int_eq(ot_delta_encode_set_buf(enc, m, &snap, 0, &b, NULL), OT_OK);
    ot_snapshot_release(snap);
    ot_delta_encoder_destroy(enc);
    return b;
}

static void release_all(ot_buf **b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        ot_buf_release(b[i]);
}

static float served_wide(ot_predictor *p, long row)
{
    ot_model *m = NULL;
    float v;

    ck_assert_int_eq(ot_predictor_copy_model(p, &m), OT_OK);
    v = wide_w(m)[row];
    ot_model_destroy(m);
    return v;
}

START_TEST(test_predictor_interleaved_skipped_stale_and_damaged_frames)
{
    ot_config *cfg = make_cfg(12, NULL, 0);
    ot_param_server *ps;
    ot_predictor *p = NULL;
    handpub h;
    ot_model *m = NULL;
    ot_buf *full[64], *set, *probe;
    uint8_t *bad;
    size_t n, i;
    double before;
    long end;
    fill_arg fa;
    ot_status st;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, 4096), OT_OK);
    ps = start_server(cfg, "inproc");
    hp_open(&h, cfg);
    ck_assert_int_eq(ot_model_create(cfg, &m), OT_OK);
    ck_assert_int_eq(ot_predictor_create(cfg, &p), OT_OK);
    st = ot_predictor_subscribe(p, h.url, ot_param_server_url(ps, 0));
    ck_assert_msg(st == OT_OK, "subscribe: %s", ot_predictor_errmsg(p));
    ck_assert_uint_eq(ot_predictor_version(p), 0);

    /* Probes (empty SET frames at version 0, not newer than the copy) until
     * one arrives. */
    end = now_ms() + WAIT_MS;
    before = pstat(p, "bytes_in");
    while (pstat(p, "bytes_in") == before && now_ms() < end) {
        probe = hp_set(&h, m, 0, -1, 0.0f);
        hp_send(&h, ot_buf_data(probe), ot_buf_size(probe));
        ot_buf_release(probe);
        sleep_ms(2);
    }
    ck_assert_double_gt(pstat(p, "bytes_in"), before);
    ck_assert_double_eq(pstat(p, "full_copies"), 1);

    /* A SET frame newer than a full update arrives between its chunks: the
     * swap at the last chunk keeps the SET's value. */
    fa.v = 1.0f;
    fa.skip = -1;
    fill_all(&fa, m);
    {
        /* The chunks twice: numbered from s0 (for chunk 0) and from s0 + 1
         * (for the others, after the SET frame, which takes s0 + 1). */
        uint64_t s0 = h.seq;
        ot_buf *c0[64], *rest[64];
        size_t n0, k;
        n0 = hp_full(&h, m, 5, c0);
        h.seq = s0 + 1;
        n = hp_full(&h, m, 5, rest);
        ck_assert_uint_eq(n0, n);
        ck_assert_uint_ge(n, 3);
        hp_send(&h, ot_buf_data(c0[0]), ot_buf_size(c0[0]));
        h.seq = s0 + 1;
        set = hp_set(&h, m, 6, 7, 9.0f);
        hp_send(&h, ot_buf_data(set), ot_buf_size(set));
        ot_buf_release(set);
        for (k = 1; k < n; k++) /* rest[k] carries s0 + 1 + k */
            hp_send(&h, ot_buf_data(rest[k]), ot_buf_size(rest[k]));
        h.seq = s0 + 1 + n;
        release_all(c0, n0);
        release_all(rest, n);
    }
    ck_assert_double_eq(wait_stat(p, "full_updates", 1), 1);
    ck_assert_double_eq(pstat(p, "gaps"), 0);
    ck_assert_double_eq(pstat(p, "rt_updates"), 1);
    ck_assert_uint_eq(ot_predictor_version(p), 6);
    ck_assert_float_eq(served_wide(p, 7), 9.0f);
    ck_assert_float_eq(served_wide(p, 8), 1.0f);

    /* A skipped frame found at the first chunk of a full update: that update
     * repairs it, no full copy is fetched. */
    h.seq++;
    fa.v = 2.0f;
    fill_all(&fa, m);
    n = hp_full(&h, m, 7, full);
    for (i = 0; i < n; i++)
        hp_send(&h, ot_buf_data(full[i]), ot_buf_size(full[i]));
    release_all(full, n);
    ck_assert_double_eq(wait_stat(p, "full_updates", 2), 2);
    ck_assert_double_eq(pstat(p, "gaps"), 1);
    ck_assert_double_eq(pstat(p, "resyncs"), 1);
    ck_assert_double_eq(pstat(p, "full_copies"), 1);
    ck_assert_float_eq(served_wide(p, 7), 2.0f);
    ck_assert_uint_eq(ot_predictor_version(p), 7);

    /* A full update older than the one loaded is ignored. */
    before = pstat(p, "ignored_stale");
    fa.v = 3.0f;
    fill_all(&fa, m);
    n = hp_full(&h, m, 3, full);
    for (i = 0; i < n; i++)
        hp_send(&h, ot_buf_data(full[i]), ot_buf_size(full[i]));
    release_all(full, n);
    ck_assert_double_eq(wait_stat(p, "ignored_stale", before + 1), before + 1);
    ck_assert_double_eq(pstat(p, "full_updates"), 2);
    ck_assert_float_eq(served_wide(p, 7), 2.0f);

    /* A damaged SET frame: refused, counted, and repaired by a full copy
     * from the server (whose master is still all zero, at version 0). */
    set = hp_set(&h, m, 8, 5, 4.0f);
    bad = malloc(ot_buf_size(set));
    ck_assert_ptr_nonnull(bad);
    memcpy(bad, ot_buf_data(set), ot_buf_size(set));
    bad[ot_buf_size(set) - 1] ^= 0x40;
    hp_send(&h, bad, ot_buf_size(set));
    free(bad);
    ot_buf_release(set);
    ck_assert_double_eq(wait_stat(p, "full_copies", 2), 2);
    ck_assert_double_eq(pstat(p, "bad_frames"), 1);
    ck_assert_double_eq(wait_stat(p, "resyncs", 2), 2);
    ck_assert(serves_master(p, ps));
    ck_assert_uint_eq(ot_predictor_version(p), 0);
    ck_assert_double_eq(pstat(p, "gaps"), 1);

    ot_predictor_destroy(p);
    oti_sock_destroy(h.pub);
    ot_model_destroy(m);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- tests: predicting never trains; errors and lifecycle ------------------------ */

START_TEST(test_predictor_never_trains)
{
    ot_config *cfg = make_cfg(5, "3", 2);
    ot_param_server *ps = start_server(cfg, "inproc");
    ot_predictor *p = subscribe(cfg, ps);
    ot_model *before = NULL, *after = NULL;
    ot_example *ex = example_k(4, 2);
    const ot_example *batch[3];
    float y[3], y1 = 0.0f;
    int i;

    ck_assert_int_eq(oti_param_server_with_master(ps, ramp, NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    wait_master_version(p, ps);
    ck_assert_int_eq(ot_predictor_copy_model(p, &before), OT_OK);
    ck_assert_int_eq(ot_example_set_label(ex, 100.0f), OT_OK);
    batch[0] = batch[1] = batch[2] = ex;
    for (i = 0; i < 200; i++) {
        ck_assert_int_eq(ot_predictor_predict(p, ex, &y1), OT_OK);
        ck_assert_int_eq(ot_predictor_predict_batch(p, batch, 3, y), OT_OK);
        /* the batch's deep part runs as one sgemm: equal within rounding */
        ck_assert_float_eq_tol(y[0], y1, 1e-4f * (1.0f + fabsf(y1)));
        ck_assert_float_eq_tol(y[2], y[0], 1e-4f * (1.0f + fabsf(y1)));
    }
    ck_assert_int_eq(ot_predictor_copy_model(p, &after), OT_OK);
    ck_assert(same_weights(before, after));
    ck_assert_uint_eq(ot_model_examples(after), ot_model_examples(before));
    ck_assert(serves_master(p, ps));
    ck_assert_double_eq(pstat(p, "predictions"), 800);
    ck_assert_uint_eq(ot_predictor_version(p), ot_param_server_version(ps));

    ot_model_destroy(before);
    ot_model_destroy(after);
    ot_example_destroy(ex);
    ot_predictor_destroy(p);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_predictor_errors_and_lifecycle)
{
    ot_config *cfg = make_cfg(5, NULL, 0);
    ot_config *other = make_cfg(6, NULL, 0);
    ot_param_server *ps = start_server(cfg, "inproc");
    ot_predictor *p = NULL, *q = NULL;
    ot_example *ex = example_k(1, 0);
    ot_model *m = NULL;
    const char *name;
    double v;
    float y;
    size_t i;

    ck_assert_int_eq(ot_predictor_create(NULL, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_predictor_create(cfg, &p), OT_OK);
    /* Nothing to serve before subscribing. */
    ck_assert_int_eq(ot_predictor_predict(p, ex, &y), OT_ESTATE);
    ck_assert_int_eq(ot_predictor_predict_batch(p, (const ot_example *const *)&ex, 1, &y),
                     OT_ESTATE);
    ck_assert_int_eq(ot_predictor_copy_model(p, &m), OT_ESTATE);
    ck_assert_int_eq(oti_predictor_set_test_hook(p, 2, 0), OT_ESTATE);
    ck_assert_int_eq(ot_predictor_wait_version(p, 1, 10), OT_ETIMEDOUT);
    ck_assert_int_eq(ot_predictor_wait_version(p, 0, 0), OT_OK);
    ck_assert_int_eq(ot_predictor_wait_version(p, 0, -1), OT_EINVAL);
    ck_assert_int_eq(ot_predictor_predict(NULL, ex, &y), OT_EINVAL);
    ck_assert_int_eq(ot_predictor_predict(p, NULL, &y), OT_EINVAL);
    ck_assert_int_eq(ot_predictor_subscribe(p, NULL, "inproc://x"), OT_EINVAL);
    ck_assert_uint_eq(ot_predictor_version(NULL), 0);
    ck_assert_str_eq(ot_predictor_errmsg(NULL), "");

    /* Stats by name. */
    for (i = 0; (name = ot_predictor_stat_name(p, i)) != NULL; i++)
        ck_assert_int_eq(ot_predictor_stat(p, name, &v), OT_OK);
    ck_assert_uint_eq(i, 15);
    ck_assert_int_eq(ot_predictor_stat(p, "no_such_stat", &v), OT_ENOENT);
    ck_assert_ptr_null(ot_predictor_stat_name(NULL, 0));

    /* A predictor for another shape is refused. */
    ck_assert_int_eq(ot_predictor_create(other, &q), OT_OK);
    ck_assert_int_eq(ot_predictor_subscribe(q, ot_param_server_url(ps, 1),
                                            ot_param_server_url(ps, 0)),
                     OT_EMISMATCH);
    ck_assert_str_ne(ot_predictor_errmsg(q), "");
    ot_predictor_destroy(q);

    /* Subscribing twice is refused; stop is idempotent and serving goes on. */
    ck_assert_int_eq(ot_predictor_subscribe(p, ot_param_server_url(ps, 1),
                                            ot_param_server_url(ps, 0)),
                     OT_OK);
    ck_assert_int_eq(ot_predictor_subscribe(p, ot_param_server_url(ps, 1),
                                            ot_param_server_url(ps, 0)),
                     OT_ESTATE);
    ck_assert_int_eq(ot_predictor_predict(p, ex, &y), OT_OK);
    ck_assert_int_eq(ot_predictor_stop(p), OT_OK);
    ck_assert_int_eq(ot_predictor_stop(p), OT_OK);
    ck_assert_int_eq(ot_predictor_predict(p, ex, &y), OT_OK);
    ck_assert_int_eq(ot_predictor_copy_model(p, &m), OT_OK);
    ot_model_destroy(m);
    ck_assert_int_eq(oti_predictor_set_test_hook(p, 2, 0), OT_ESTATE);
    ck_assert_int_eq(ot_predictor_subscribe(p, ot_param_server_url(ps, 1),
                                            ot_param_server_url(ps, 0)),
                     OT_ESTATE);
    ot_predictor_destroy(p);
    ot_predictor_destroy(NULL);

    ot_example_destroy(ex);
    stop_server(ps);
    ot_config_destroy(cfg);
    ot_config_destroy(other);
}
END_TEST

START_TEST(test_predictor_subscribe_times_out_without_server)
{
    ot_config *cfg = make_cfg(5, NULL, 0);
    ot_predictor *p = NULL;
    char tr[128], pub[128];

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, 200), OT_OK);
    server_urls("inproc", tr, pub, sizeof(tr));
    ck_assert_int_eq(ot_predictor_create(cfg, &p), OT_OK);
    ck_assert_int_eq(ot_predictor_subscribe(p, pub, tr), OT_ETIMEDOUT);
    ck_assert_str_ne(ot_predictor_errmsg(p), "");
    ck_assert_int_eq(ot_predictor_predict(p, NULL, NULL), OT_EINVAL);
    ot_predictor_destroy(p);
    ot_config_destroy(cfg);
}
END_TEST

Suite *suite_predictor(void)
{
    Suite *s = suite_create("predictor");
    TCase *tc = tcase_create("predictor");

    tcase_set_tags(tc, "net");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_predictor_serves_full_then_realtime);
    tcase_add_test(tc, test_predictor_ignores_set_not_newer_than_its_copy);
    tcase_add_test(tc, test_predictor_gap_requests_full_copy);
    tcase_add_test(tc, test_predictor_gap_waits_for_full_update);
    tcase_add_test(tc, test_predictor_no_torn_reads_during_full_updates);
    tcase_add_test(tc, test_predictor_no_torn_reads_during_realtime_updates);
    tcase_add_test(tc, test_predictor_realtime_update_of_deep_layers_is_swapped);
    tcase_add_test(tc, test_predictor_over_ipc);
    tcase_add_test(tc, test_predictor_over_tcp);
    tcase_add_test(tc, test_predictor_two_on_one_server);
    tcase_add_test(tc, test_predictor_follows_trainer_ftrl_state);
    tcase_add_test(tc, test_predictor_full_update_in_chunks);
    tcase_add_test(tc, test_predictor_full_update_keeps_newer_realtime_values);
    tcase_add_test(tc, test_predictor_full_only_sends_no_realtime_updates);
    tcase_add_test(tc, test_predictor_interleaved_skipped_stale_and_damaged_frames);
    tcase_add_test(tc, test_predictor_never_trains);
    tcase_add_test(tc, test_predictor_errors_and_lifecycle);
    tcase_add_test(tc, test_predictor_subscribe_times_out_without_server);
    suite_add_tcase(s, tc);
    return s;
}
