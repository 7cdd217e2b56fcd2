/*
 * bench/train.c - training throughput of the wide and the deep model.
 *
 * Figures (one line each, "bench.train.<figure> <value> <unit>"):
 *
 *  wide model (2^20 weights, FTRL, 20 features per example from `ot gen`'s
 *  generator, 20 namespaces, 100000 Zipf(1.1) ids each):
 *   wide.learn_examples / wide.learn_features     ot_model_learn, one example at
 *                                                  a time, on examples parsed
 *                                                  beforehand, in memory
 *   wide.learn_batch64_examples / _features       ot_model_learn_batch, 64 at a
 *                                                  time, same examples
 *   wide.predict_examples                         ot_model_predict, same examples
 *   wide.text_examples / wide.text_features       end to end from VW text in
 *                                                  memory: ot_reader_next + learn
 *   wide.text_batch64_examples / _features        end to end from VW text, as
 *                                                  `ot train` does it: 64
 *                                                  ot_reader_next into a pool of
 *                                                  examples, then one
 *                                                  ot_model_learn_batch
 *   wide.parse_examples / wide.parse_mbytes       the reader alone (parse only)
 *  baselines, measured in the same run on the same data:
 *   baseline.sum_features_examples                a plain loop summing
 *                                                  w[hash & mask] * value over the
 *                                                  same features (the memory-bound
 *                                                  gather floor of a linear model)
 *   baseline.memcpy_text                          memcpy bandwidth over the text
 *  gen.examples                                   `ot gen`'s generator: draw an
 *                                                  example and format its VW line
 *  deep model (dense input of 32 + the same 20 wide features, hidden 64,32,
 *  relu, FTRL: adaptive steps on the deep weights):
 *   deep.learn_examples                           ot_model_learn, one at a time
 *   deep.learn_batch64_examples                   ot_model_learn_batch, 64 at a time
 *   deep.blas_share                               the share of ot_model_learn's
 *                                                  time spent inside CBLAS, measured
 *                                                  in the same loop: lib/linalg.c
 *                                                  times each of its CBLAS calls
 *                                                  (per-thread counters that
 *                                                  oti_linalg_timing turns on for
 *                                                  this figure only), over the
 *                                                  loop's time on the same clock;
 *                                                  median of REPEATS runs
 *   deep.blas_calls_per_example                   CBLAS calls per example (5: three
 *                                                  forward sgemv, two backward)
 *   deep.blas_timer_overhead                      the share of that loop's time the
 *                                                  two clock reads per call take: a
 *                                                  bound on how far the timing
 *                                                  itself moves blas_share
 *   deep.batch64_blas_*                           the same for ot_model_learn_batch,
 *                                                  64 at a time (sgemm)
 *   deep.wide_part_examples                       the same examples on a model
 *                                                  without hidden layers or dense input
 *   deep.deep_part_share                          1 - deep.learn / wide part time: the
 *                                                  share of learn time the deep part
 *                                                  takes (difference of two runs)
 *
 * Each throughput figure is the best of REPEATS timed runs, timed with the
 * thread's CPU-time clock: the machine the figures are taken on may be
 * shared, and time spent descheduled is not the code's.  The CBLAS shares
 * use CLOCK_MONOTONIC for both the calls and the loop, so their ratio is
 * taken on one clock.  Single thread.  `train wide`, `train wide.learn` or
 * `train deep` runs one part only (for profiling).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/gen.c"
#include "linalg.h"

#define REPEATS 3
#define WIDE_N 100000     /* distinct examples kept in memory */
#define WIDE_ROUNDS 10    /* passes over them per timed run */
#define DEEP_N 20000
#define DEEP_ROUNDS 2
#define DENSE 32
#define TEXT_BATCH 64    /* examples read into the pool per ot_model_learn_batch */

/* CPU time of this thread: the machine the figures are taken on may be
 * shared, and time spent descheduled is not the code's. */
static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, ot_status st, const char *msg)
{
    fprintf(stderr, "bench.train: %s: %s: %s\n", what, ot_status_name(st), msg);
    exit(1);
}

static void figure(const char *name, double value, const char *unit)
{
    printf("bench.train.%s %.6g %s\n", name, value, unit);
    fflush(stdout);
}

static ot_model *make_model(const char *bits, const char *hidden, const char *dense)
{
    ot_config *cfg;
    ot_model *m;
    ot_status st;

    if (ot_config_create(&cfg) != OT_OK)
        die("config", OT_ENOMEM, "");
    if ((st = ot_config_set_text(cfg, OT_OPT_BITS, bits)) != OT_OK ||
        (st = ot_config_set_text(cfg, OT_OPT_OPTIMIZER, "ftrl")) != OT_OK ||
        (st = ot_config_set_text(cfg, OT_OPT_HIDDEN_LAYERS, hidden)) != OT_OK ||
        (st = ot_config_set_text(cfg, OT_OPT_DENSE_DIM, dense)) != OT_OK)
        die("config", st, ot_config_errmsg(cfg));
    if ((st = ot_model_create(cfg, &m)) != OT_OK)
        die("model", st, ot_config_errmsg(cfg));
    ot_config_destroy(cfg);
    return m;
}

typedef struct data {
    ot_example **ex;
    size_t n;
    char *text;       /* the same examples as VW text */
    size_t text_len;
    uint32_t *hash;   /* every feature's hash and value, flat, for the baseline */
    float *value;
    size_t nfeat;
} data;

static void make_data(data *d, size_t n, size_t dense)
{
    otg_params gp;
    otg *g;
    otg_sample s;
    char err[256];
    size_t i, j, cap;
    float *dv = malloc(DENSE * sizeof(float));
    uint64_t rs[4] = {1, 2, 3, 12345}; /* xoshiro state for the dense values */

    otg_params_default(&gp);
    gp.seed = 2024;
    if (otg_create(&gp, &g, err, sizeof(err)) != 0 || dv == NULL) {
        fprintf(stderr, "bench.train: %s\n", err);
        exit(1);
    }
    cap = n * otg_line_max(g);
    d->n = n;
    d->ex = calloc(n, sizeof(*d->ex));
    d->text = malloc(cap);
    d->hash = malloc(n * (size_t)gp.namespaces * sizeof(uint32_t));
    d->value = malloc(n * (size_t)gp.namespaces * sizeof(float));
    if (d->ex == NULL || d->text == NULL || d->hash == NULL || d->value == NULL) {
        fprintf(stderr, "bench.train: out of memory\n");
        exit(1);
    }
    d->text_len = 0;
    d->nfeat = 0;
    for (i = 0; i < n; i++) {
        ot_status st;
        otg_next(g, &s);
        if ((st = ot_example_create(NULL, &d->ex[i])) != OT_OK ||
            (st = otg_fill_example(g, &s, d->ex[i])) != OT_OK)
            die("example", st, "");
        if (dense > 0) {
            for (j = 0; j < dense; j++)
                dv[j] = (float)rng_normal(rs);
            if ((st = ot_example_set_dense(d->ex[i], dv, dense)) != OT_OK)
                die("dense", st, "");
        }
        d->text_len += otg_format_vw(g, &s, d->text + d->text_len);
        for (j = 0; j < ot_example_num_features(d->ex[i]); j++) {
            ot_example_feature(d->ex[i], j, NULL, &d->hash[d->nfeat], &d->value[d->nfeat]);
            d->nfeat++;
        }
    }
    free(dv);
    otg_destroy(g);
}

static void free_data(data *d)
{
    size_t i;

    for (i = 0; i < d->n; i++)
        ot_example_destroy(d->ex[i]);
    free(d->ex);
    free(d->text);
    free(d->hash);
    free(d->value);
}

/* Seconds for `rounds` passes of ot_model_learn over d (best of REPEATS, fresh model each). */
static double time_learn(const data *d, int rounds, const char *bits, const char *hidden,
                         const char *dense)
{
    double best = INFINITY;
    int rep, r;
    size_t i;

    for (rep = 0; rep < REPEATS; rep++) {
        ot_model *m = make_model(bits, hidden, dense);
        double t0 = now_s(), t;
        ot_status st;
        for (r = 0; r < rounds; r++)
            for (i = 0; i < d->n; i++)
                if ((st = ot_model_learn(m, d->ex[i], NULL)) != OT_OK)
                    die("learn", st, ot_model_errmsg(m));
        t = now_s() - t0;
        best = t < best ? t : best;
        ot_model_destroy(m);
    }
    return best;
}

static double time_learn_batch(const data *d, int rounds, size_t batch, const char *bits,
                               const char *hidden, const char *dense)
{
    double best = INFINITY;
    int rep, r;
    size_t i;

    for (rep = 0; rep < REPEATS; rep++) {
        ot_model *m = make_model(bits, hidden, dense);
        double t0 = now_s(), t;
        ot_status st;
        for (r = 0; r < rounds; r++)
            for (i = 0; i + batch <= d->n; i += batch)
                if ((st = ot_model_learn_batch(m, (const ot_example *const *)d->ex + i, batch, NULL)) !=
                    OT_OK)
                    die("learn_batch", st, ot_model_errmsg(m));
        t = now_s() - t0;
        best = t < best ? t : best;
        ot_model_destroy(m);
    }
    return best;
}

static void bench_wide(int learn_only)
{
    data d;
    double t, best, sink = 0.0;
    const double learns = (double)WIDE_N * WIDE_ROUNDS;
    double feats_per_ex;
    float *w;
    int rep, r;
    size_t i;
    ot_config *cfg;
    ot_model *m;
    ot_status st;

    make_data(&d, WIDE_N, 0);
    feats_per_ex = (double)d.nfeat / (double)d.n;
    if (learn_only) {
        t = time_learn(&d, WIDE_ROUNDS, "20", "", "0");
        figure("wide.learn_examples", learns / t, "examples/s");
        t = time_learn_batch(&d, WIDE_ROUNDS, 64, "20", "", "0");
        figure("wide.learn_batch64_examples", learns / t, "examples/s");
        free_data(&d);
        return;
    }

    /* Baseline: the gather of a linear model's forward pass, nothing else. */
    w = calloc((size_t)1 << 20, sizeof(float));
    if (w == NULL)
        exit(1);
    for (i = 0; i < ((size_t)1 << 20); i++)
        w[i] = (float)(i & 7) * 0.125f;
    best = INFINITY;
    for (rep = 0; rep < REPEATS; rep++) {
        double t0 = now_s();
        for (r = 0; r < WIDE_ROUNDS; r++) {
            float s = 0.0f;
            for (i = 0; i < d.nfeat; i++)
                s += w[d.hash[i] & 0xfffff] * d.value[i];
            sink += s;
        }
        t = now_s() - t0;
        best = t < best ? t : best;
    }
    free(w);
    figure("baseline.sum_features_examples", learns / best, "examples/s");
    figure("baseline.sum_features_features", learns * feats_per_ex / best, "features/s");
    {
        char *copy = malloc(d.text_len);
        if (copy == NULL)
            exit(1);
        best = INFINITY;
        for (rep = 0; rep < REPEATS; rep++) {
            double t0 = now_s();
            for (r = 0; r < WIDE_ROUNDS; r++) {
                memcpy(copy, d.text, d.text_len);
                sink += copy[(size_t)r * 7919 % d.text_len];
            }
            t = now_s() - t0;
            best = t < best ? t : best;
        }
        free(copy);
        figure("baseline.memcpy_text", (double)d.text_len * WIDE_ROUNDS / best / 1e6, "MB/s");
    }

    /* The generator of `ot gen`: draw and format one VW line per example. */
    {
        otg_params gp;
        otg *g;
        otg_sample smp;
        char err[256], *line;
        otg_params_default(&gp);
        if (otg_create(&gp, &g, err, sizeof(err)) != 0 || (line = malloc(otg_line_max(g))) == NULL)
            exit(1);
        best = INFINITY;
        for (rep = 0; rep < REPEATS; rep++) {
            double t0 = now_s();
            for (i = 0; i < (size_t)learns; i++) {
                otg_next(g, &smp);
                sink += (double)otg_format_vw(g, &smp, line);
            }
            t = now_s() - t0;
            best = t < best ? t : best;
        }
        free(line);
        otg_destroy(g);
        figure("gen.examples", learns / best, "examples/s");
    }

    t = time_learn(&d, WIDE_ROUNDS, "20", "", "0");
    figure("wide.learn_examples", learns / t, "examples/s");
    figure("wide.learn_features", learns * feats_per_ex / t, "features/s");
    t = time_learn_batch(&d, WIDE_ROUNDS, 64, "20", "", "0");
    figure("wide.learn_batch64_examples", learns / t, "examples/s");
    figure("wide.learn_batch64_features", learns * feats_per_ex / t, "features/s");

    /* Predict, on a model that has learned the data once. */
    m = make_model("20", "", "0");
    for (i = 0; i < d.n; i++)
        ot_model_learn(m, d.ex[i], NULL);
    best = INFINITY;
    for (rep = 0; rep < REPEATS; rep++) {
        double t0 = now_s();
        for (r = 0; r < WIDE_ROUNDS; r++)
            for (i = 0; i < d.n; i++) {
                float p;
                ot_model_predict(m, d.ex[i], &p);
                sink += p;
            }
        t = now_s() - t0;
        best = t < best ? t : best;
    }
    ot_model_destroy(m);
    figure("wide.predict_examples", learns / best, "examples/s");

    /* End to end from VW text in memory: parse + learn one at a time, parse
     * 64 examples into a pool + learn them as a batch, and parse alone. */
    if (ot_config_create(&cfg) != OT_OK)
        exit(1);
    {
        enum { PARSE_ONLY, ONE, BATCH };
        ot_example *pool[TEXT_BATCH];
        int mode;
        for (i = 0; i < TEXT_BATCH; i++)
            if ((st = ot_example_create(cfg, &pool[i])) != OT_OK)
                die("example", st, "");
        for (mode = ONE; mode >= PARSE_ONLY; mode = mode == ONE ? BATCH : mode == BATCH ? PARSE_ONLY : -1) {
            size_t cap = mode == BATCH ? TEXT_BATCH : 1;
            best = INFINITY;
            for (rep = 0; rep < REPEATS; rep++) {
                double t0;
                m = make_model("20", "", "0");
                t0 = now_s();
                for (r = 0; r < WIDE_ROUNDS; r++) {
                    ot_reader *rd;
                    size_t n = 0, k;
                    if ((st = ot_reader_open_memory(cfg, d.text, d.text_len, &rd)) != OT_OK)
                        die("reader", st, "");
                    do {
                        for (k = 0; k < cap && (st = ot_reader_next(rd, pool[k])) == OT_OK; k++)
                            ;
                        n += k;
                        if (mode == ONE && k == 1 && (st = ot_model_learn(m, pool[0], NULL)) != OT_OK)
                            die("learn", st, ot_model_errmsg(m));
                        if (mode == BATCH && k > 0) {
                            ot_status lst = ot_model_learn_batch(m, (const ot_example *const *)pool, k, NULL);
                            if (lst != OT_OK)
                                die("learn_batch", lst, ot_model_errmsg(m));
                        }
                    } while (st == OT_OK);
                    if (st != OT_EEOF || n != d.n)
                        die("reader", st, ot_reader_errmsg(rd));
                    ot_reader_close(rd);
                }
                t = now_s() - t0;
                best = t < best ? t : best;
                ot_model_destroy(m);
            }
            if (mode == ONE) {
                figure("wide.text_examples", learns / best, "examples/s");
                figure("wide.text_features", learns * feats_per_ex / best, "features/s");
            } else if (mode == BATCH) {
                figure("wide.text_batch64_examples", learns / best, "examples/s");
                figure("wide.text_batch64_features", learns * feats_per_ex / best, "features/s");
            } else {
                figure("wide.parse_examples", learns / best, "examples/s");
                figure("wide.parse_mbytes", (double)d.text_len * WIDE_ROUNDS / best / 1e6, "MB/s");
            }
        }
        for (i = 0; i < TEXT_BATCH; i++)
            ot_example_destroy(pool[i]);
    }
    ot_config_destroy(cfg);
    free_data(&d);
    if (sink == 12345.678)
        printf("#\n");
}

/* Wall-clock seconds, the clock lib/linalg.c times its CBLAS calls with. */
static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * The share of the deep model's learn time spent inside CBLAS, measured in
 * the same loop: with lib/linalg.c's per-thread timing on, `rounds` passes
 * of ot_model_learn (batch 0) or ot_model_learn_batch over d, timed with the
 * same clock as the calls.  The median of REPEATS runs; *calls gets the
 * CBLAS calls per example and *overhead the share of the loop's time that
 * the two clock reads per call take.
 */
static double blas_share(const data *d, int rounds, size_t batch, double *calls_per_ex,
                         double *overhead)
{
    double share[REPEATS], calls[REPEATS], clock_ns, t0, t;
    uint64_t nc, ns;
    int rep, r, a, b;
    size_t i;
    long k;

    /* Cost of one clock read, for the overhead figure. */
    t0 = mono_s();
    for (k = 0; k < 1000000; k++)
        (void)mono_s();
    clock_ns = (mono_s() - t0) * 1e3;

    for (rep = 0; rep < REPEATS; rep++) {
        ot_model *m = make_model("20", "64,32", "32");
        ot_status st = OT_OK;
        oti_linalg_timing(1);
        t0 = mono_s();
        for (r = 0; r < rounds; r++) {
            if (batch == 0) {
                for (i = 0; i < d->n && st == OT_OK; i++)
                    st = ot_model_learn(m, d->ex[i], NULL);
            } else {
                for (i = 0; i + batch <= d->n && st == OT_OK; i += batch)
                    st = ot_model_learn_batch(m, (const ot_example *const *)d->ex + i, batch, NULL);
            }
        }
        t = mono_s() - t0;
        oti_linalg_timing_read(&nc, &ns);
        oti_linalg_timing(0);
        if (st != OT_OK)
            die("learn", st, ot_model_errmsg(m));
        share[rep] = (double)ns * 1e-9 / t;
        calls[rep] = (double)nc;
        *overhead = 2.0 * (double)nc * clock_ns * 1e-9 / t;
        ot_model_destroy(m);
    }
    /* Median (REPEATS is 3). */
    for (a = 0; a < REPEATS; a++)
        for (b = a + 1; b < REPEATS; b++)
            if (share[b] < share[a]) {
                double x = share[a];
                share[a] = share[b];
                share[b] = x;
            }
    *calls_per_ex = calls[0] / ((double)rounds * (double)(batch == 0 ? d->n : d->n / batch * batch));
    return share[REPEATS / 2];
}

static void bench_deep(void)
{
    data d;
    const double learns = (double)DEEP_N * DEEP_ROUNDS;
    double t_deep, t_batch, t_wide, share, calls, overhead;
    size_t i;

    make_data(&d, DEEP_N, DENSE);
    t_deep = time_learn(&d, DEEP_ROUNDS, "20", "64,32", "32");
    t_batch = time_learn_batch(&d, DEEP_ROUNDS, 64, "20", "64,32", "32");
    figure("deep.learn_examples", learns / t_deep, "examples/s");
    figure("deep.learn_batch64_examples", learns / t_batch, "examples/s");

    share = blas_share(&d, DEEP_ROUNDS, 0, &calls, &overhead);
    figure("deep.blas_share", 100.0 * share, "%");
    figure("deep.blas_calls_per_example", calls, "calls");
    figure("deep.blas_timer_overhead", 100.0 * overhead, "%");
    share = blas_share(&d, DEEP_ROUNDS, 64, &calls, &overhead);
    figure("deep.batch64_blas_share", 100.0 * share, "%");
    figure("deep.batch64_blas_calls_per_example", calls, "calls");
    figure("deep.batch64_blas_timer_overhead", 100.0 * overhead, "%");

    /* The same examples without a deep part: the model ignores the dense
     * vectors only when it has no dense input, so strip them. */
    for (i = 0; i < d.n; i++)
        ot_example_set_dense(d.ex[i], NULL, 0);
    t_wide = time_learn(&d, DEEP_ROUNDS, "20", "", "0");
    figure("deep.wide_part_examples", learns / t_wide, "examples/s");
    figure("deep.deep_part_share", 100.0 * (1.0 - t_wide / t_deep), "%");
    free_data(&d);
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";

    printf("# bench.train: %s\n", ot_build_info());
    {
        /* The machine's load when the run starts (Linux), for the record. */
        FILE *f = fopen("/proc/loadavg", "r");
        char line[128];
        if (f != NULL) {
            if (fgets(line, sizeof(line), f) != NULL)
                printf("# load average: %s", line);
            fclose(f);
        }
    }
    if (strcmp(only, "") == 0 || strcmp(only, "wide") == 0)
        bench_wide(0);
    if (strcmp(only, "wide.learn") == 0)
        bench_wide(1);
    if (strcmp(only, "") == 0 || strcmp(only, "deep") == 0)
        bench_deep();
    return 0;
}
