/*
 * bench/train.c - training throughput of the wide and the deep model.
 *
 * Figures (one line each, "bench.train.<figure> <value> <unit>"):
 *
 *  wide model (2^20 weights, FTRL, 20 features per example from `ot gen`'s
 *  generator, 20 namespaces, 100000 Zipf(1.1) ids each):
 *   wide.learn_examples / wide.learn_features     ot_model_learn on examples
 *                                                  parsed beforehand, in memory
 *   wide.predict_examples                         ot_model_predict, same examples
 *   wide.text_examples / wide.text_features       end to end from VW text in
 *                                                  memory: ot_reader_next + learn
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
 *   deep.wide_part_examples                       the same examples on a model
 *                                                  without hidden layers or dense input
 *   deep.deep_part_share                          1 - deep.learn / wide part time: the
 *                                                  share of learn time the deep part
 *                                                  takes (difference of two runs)
 *   deep.blas_share_estimate                      time of the CBLAS calls one learn
 *                                                  makes (3 forward sgemv, 2 backward
 *                                                  sgemv^T, shapes of this model),
 *                                                  replayed here through lib/linalg.c,
 *                                                  over the per-example learn time.
 *                                                  An estimate: the library has no
 *                                                  counter inside its linalg calls.
 *
 * Each figure is the best of REPEATS timed runs.  Single thread.
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

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
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

static void bench_wide(void)
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

    /* End to end from VW text in memory: parse + learn; and parse alone. */
    if (ot_config_create(&cfg) != OT_OK)
        exit(1);
    {
        int learn;
        for (learn = 1; learn >= 0; learn--) {
            ot_example *ex;
            if ((st = ot_example_create(cfg, &ex)) != OT_OK)
                die("example", st, "");
            best = INFINITY;
            for (rep = 0; rep < REPEATS; rep++) {
                double t0;
                m = make_model("20", "", "0");
                t0 = now_s();
                for (r = 0; r < WIDE_ROUNDS; r++) {
                    ot_reader *rd;
                    size_t n = 0;
                    if ((st = ot_reader_open_memory(cfg, d.text, d.text_len, &rd)) != OT_OK)
                        die("reader", st, "");
                    while ((st = ot_reader_next(rd, ex)) == OT_OK) {
                        n++;
                        if (learn && (st = ot_model_learn(m, ex, NULL)) != OT_OK)
                            die("learn", st, ot_model_errmsg(m));
                    }
                    if (st != OT_EEOF || n != d.n)
                        die("reader", st, ot_reader_errmsg(rd));
                    ot_reader_close(rd);
                }
                t = now_s() - t0;
                best = t < best ? t : best;
                ot_model_destroy(m);
            }
            ot_example_destroy(ex);
            if (learn) {
                figure("wide.text_examples", learns / best, "examples/s");
                figure("wide.text_features", learns * feats_per_ex / best, "features/s");
            } else {
                figure("wide.parse_examples", learns / best, "examples/s");
                figure("wide.parse_mbytes", (double)d.text_len * WIDE_ROUNDS / best / 1e6, "MB/s");
            }
        }
    }
    ot_config_destroy(cfg);
    free_data(&d);
    if (sink == 12345.678)
        printf("#\n");
}

static void bench_deep(void)
{
    data d;
    const double learns = (double)DEEP_N * DEEP_ROUNDS;
    double t_deep, t_batch, t_wide, per_ex, blas = INFINITY;
    static float wa[64 * (DENSE)], wb[32 * 64], wc[32], x[64], y[64], dd[64];
    int rep;
    size_t i;

    make_data(&d, DEEP_N, DENSE);
    t_deep = time_learn(&d, DEEP_ROUNDS, "20", "64,32", "32");
    t_batch = time_learn_batch(&d, DEEP_ROUNDS, 64, "20", "64,32", "32");
    /* The same examples without a deep part: the model ignores the dense
     * vectors only when it has no dense input, so strip them. */
    for (i = 0; i < d.n; i++)
        ot_example_set_dense(d.ex[i], NULL, 0);
    t_wide = time_learn(&d, DEEP_ROUNDS, "20", "", "0");
    figure("deep.learn_examples", learns / t_deep, "examples/s");
    figure("deep.learn_batch64_examples", learns / t_batch, "examples/s");
    figure("deep.wide_part_examples", learns / t_wide, "examples/s");
    figure("deep.deep_part_share", 100.0 * (1.0 - t_wide / t_deep), "%");

    /* Replay of the per-example BLAS calls of a 32 -> 64 -> 32 -> 1 network:
     * forward sgemv 64x32, 32x64, 1x32; backward sgemv^T 1x32, 32x64. */
    for (i = 0; i < sizeof(wa) / sizeof(wa[0]); i++)
        wa[i] = (float)((i * 37) % 17) * 0.01f;
    for (i = 0; i < sizeof(wb) / sizeof(wb[0]); i++)
        wb[i] = (float)((i * 13) % 11) * 0.01f;
    for (i = 0; i < 32; i++)
        wc[i] = 0.02f * (float)i;
    for (i = 0; i < 64; i++)
        x[i] = 0.1f * (float)(i % 5);
    for (rep = 0; rep < REPEATS; rep++) {
        double t0 = now_s(), t;
        long k;
        for (k = 0; k < (long)learns; k++) {
            oti_sgemv(0, 64, DENSE, 1.0f, wa, x, 0.0f, y);
            oti_sgemv(0, 32, 64, 1.0f, wb, y, 0.0f, dd);
            oti_sgemv(0, 1, 32, 1.0f, wc, dd, 0.0f, y);
            oti_sgemv(1, 1, 32, 1.0f, wc, y, 0.0f, dd);
            oti_sgemv(1, 32, 64, 1.0f, wb, dd, 0.0f, y);
        }
        t = now_s() - t0;
        blas = t < blas ? t : blas;
    }
    per_ex = t_deep / learns;
    figure("deep.blas_share_estimate", 100.0 * (blas / learns) / per_ex, "%");
    free_data(&d);
}

int main(void)
{
    printf("# bench.train: %s\n", ot_build_info());
    bench_wide();
    bench_deep();
    return 0;
}
