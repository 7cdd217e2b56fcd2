/*
 * check_model.c - the model core: block layout, gradients against finite
 * differences, each optimizer against a hand computation, FTRL sparsity, the
 * CBLAS forward against plain C, save/load, touched tracking, allocation in
 * the steady state, concurrent predict, error paths, mini-batches against
 * one by one, and the CBLAS call timing of benchmarks.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "linalg.h"
#include "model.h"
#include "tests.h"

/* ---- helpers ------------------------------------------------------------- */

static ot_config *cfg_new(void)
{
    ot_config *cfg;
    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    return cfg;
}

static void set_i(ot_config *cfg, int opt, int64_t v)
{
    ck_assert_int_eq(ot_config_set_i64(cfg, opt, v), OT_OK);
}

static void set_f(ot_config *cfg, int opt, double v)
{
    ck_assert_int_eq(ot_config_set_f64(cfg, opt, v), OT_OK);
}

static void set_s(ot_config *cfg, int opt, const char *v)
{
    ck_assert_int_eq(ot_config_set_str(cfg, opt, v), OT_OK);
}

static ot_model *model_new(ot_config *cfg)
{
    ot_model *m = NULL;
    ck_assert_int_eq(ot_model_create(cfg, &m), OT_OK);
    ck_assert_ptr_nonnull(m);
    return m;
}

/* A deterministic generator for test data. */
static uint64_t rng_state = 88172645463325252ull;

static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static float rndf(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rnd32() & 0xffffff) / 16777216.0f;
}

/* Fills ex with features in namespaces 'a', 'b', 'u' and a dense vector. */
static void random_example(ot_example *ex, size_t nfeat, size_t ndense, float label)
{
    static const uint8_t ns[3] = {'a', 'b', 'u'};
    float dense[64];
    size_t i;

    ot_example_clear(ex);
    for (i = 0; i < nfeat; i++)
        ck_assert_int_eq(ot_example_add_hashed(ex, ns[i % 3], rnd32(), rndf(0.2f, 1.5f)), OT_OK);
    for (i = 0; i < ndense && i < 64; i++)
        dense[i] = rndf(-1.0f, 1.0f);
    if (ndense > 0)
        ck_assert_int_eq(ot_example_set_dense(ex, dense, ndense), OT_OK);
    ck_assert_int_eq(ot_example_set_label(ex, label), OT_OK);
}

static ot_example *example_new(void)
{
    ot_example *ex;
    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    return ex;
}

/* Sets every weight of the model to a small random value (wide included),
 * so that gradients are not trivially zero. */
static void randomize_weights(ot_model *m, float r)
{
    oti_params *p = oti_model_params(m);
    size_t b;
    uint64_t i;

    for (b = 0; b < p->nblocks; b++) {
        oti_block *blk = &p->blocks[b];
        for (i = 0; i < blk->rows * blk->cols; i++)
            blk->w[i] = rndf(-r, r);
    }
}

static float *flat_weight(ot_model *m, uint64_t idx)
{
    oti_params *p = oti_model_params(m);
    oti_block *b = oti_params_find(p, idx);
    ck_assert_ptr_nonnull(b);
    return &b->w[idx - b->offset];
}

static double reference_loss(const ot_model *m, const ot_example *ex);

/*
 * Compares the analytic gradient (float, from the model) with central
 * differences of the loss on every coordinate whose analytic gradient is not
 * tiny.  The loss for the differences is evaluated in double precision by
 * the plain-C reference below (test_model_forward_matches_reference checks
 * that it is the model's function), so eps can be small.  Returns the number
 * of coordinates compared.
 */
static int checked_in_block[64];

static int gradient_check(ot_model *m, const ot_example *ex, double eps, double min_grad)
{
    const oti_params *p = oti_model_params_c(m);
    float *g = malloc((size_t)p->total * sizeof(float));
    uint64_t i;
    int checked = 0, bad = 0;

    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(oti_model_gradient(m, ex, g, NULL), OT_OK);
    for (i = 0; i < p->total; i++) {
        float *w, w0;
        double lp, lm, num, rel;
        if (fabs(g[i]) < min_grad)
            continue;
        w = flat_weight(m, i);
        w0 = *w;
        *w = (float)(w0 + eps);
        lp = reference_loss(m, ex);
        *w = (float)(w0 - eps);
        lm = reference_loss(m, ex);
        num = (lp - lm) / ((double)(float)(w0 + eps) - (double)(float)(w0 - eps));
        *w = w0;
        rel = fabs(num - g[i]) / fmax(fabs(num), fabs(g[i]));
        if (rel >= 1e-3) {
            const oti_block *b = oti_params_find(p, i);
            fprintf(stderr, "gradient %s[%llu]: analytic %.8g numeric %.8g rel %.3g\n", b->name,
                    (unsigned long long)(i - b->offset), g[i], num, rel);
            bad++;
        }
        checked_in_block[oti_params_find(p, i) - p->blocks]++;
        checked++;
    }
    free(g);
    ck_assert_int_eq(bad, 0);
    return checked;
}

/* ---- layout and fingerprint -------------------------------------------- */

START_TEST(test_model_default_layout)
{
    ot_model *m = model_new(NULL);
    const char *name;
    int kind, nstate;
    uint64_t off, rows;
    uint32_t cols;
    const float *data;

    ck_assert_uint_eq(ot_model_num_blocks(m), 2);
    ck_assert_uint_eq(ot_model_num_weights(m), 1 + (1u << 18));
    ck_assert_int_eq(ot_model_block_info(m, 0, &name, &kind, &off, &rows, &cols, &nstate), OT_OK);
    ck_assert_str_eq(name, "bias");
    ck_assert_int_eq(kind, OT_BLOCK_BIAS);
    ck_assert_uint_eq(off, 0);
    ck_assert_uint_eq(rows, 1);
    ck_assert_uint_eq(cols, 1);
    ck_assert_int_eq(nstate, 2);
    ck_assert_int_eq(ot_model_block_info(m, 1, &name, &kind, &off, &rows, &cols, &nstate), OT_OK);
    ck_assert_str_eq(name, "wide");
    ck_assert_int_eq(kind, OT_BLOCK_WIDE);
    ck_assert_uint_eq(off, 1);
    ck_assert_uint_eq(rows, 1u << 18);
    ck_assert_int_eq(ot_model_block_info(m, 2, NULL, NULL, NULL, NULL, NULL, NULL), OT_ERANGE);
    ck_assert_int_eq(ot_model_block_data(m, 1, OT_ARRAY_STATE1, &data), OT_OK);
    ck_assert_int_eq(ot_model_block_data(m, 2, OT_ARRAY_WEIGHTS, &data), OT_ERANGE);
    ck_assert_int_eq(ot_model_block_data(m, 1, 7, &data), OT_ENOENT);
    ck_assert_uint_eq(ot_model_examples(m), 0);
    ck_assert_str_eq(ot_model_errmsg(m), "");
    ot_model_destroy(m);
}
END_TEST

START_TEST(test_model_deep_layout_and_find)
{
    ot_config *cfg = cfg_new();
    ot_model *m;
    const oti_params *p;
    static const char *names[] = {"bias", "wide", "embed.u", "embed.i", "deep.0.w", "deep.0.b",
                                  "deep.1.w", "deep.1.b", "deep.2.w", "deep.2.b"};
    static const uint64_t rows[] = {1, 1024, 256, 256, 8, 8, 4, 4, 1, 1};
    static const uint32_t cols[] = {1, 1, 3, 2, 8, 1, 8, 1, 4, 1};
    size_t i;
    uint64_t off = 0;

    set_i(cfg, OT_OPT_BITS, 10);
    set_s(cfg, OT_OPT_EMBEDDING, "u:3,i:2");
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 8);
    set_i(cfg, OT_OPT_DENSE_DIM, 3);
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "8,4");
    m = model_new(cfg);
    p = oti_model_params_c(m);
    ck_assert_uint_eq(p->nblocks, 10);
    for (i = 0; i < p->nblocks; i++) {
        const oti_block *b = &p->blocks[i];
        ck_assert_str_eq(b->name, names[i]);
        ck_assert_uint_eq(b->rows, rows[i]);
        ck_assert_uint_eq(b->cols, cols[i]);
        ck_assert_uint_eq(b->offset, off);
        ck_assert_ptr_eq(oti_params_find(p, off), b);
        ck_assert_ptr_eq(oti_params_find(p, off + b->rows * b->cols - 1), b);
        /* Under ftrl the wide and bias blocks keep z and n; the rest n only. */
        ck_assert_int_eq(b->nstate, i < 2 ? 2 : 1);
        ck_assert_int_eq(b->dense_hint, i >= 4);
        off += b->rows * b->cols;
    }
    ck_assert_uint_eq(p->total, off);
    ck_assert_uint_eq(ot_model_num_weights(m), off);
    ck_assert_ptr_null(oti_params_find(p, off));
    ck_assert_ptr_eq(p->derive_ctx, m);
    ck_assert(p->derive != NULL);
    ot_model_destroy(m);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_model_fingerprint)
{
    ot_config *cfg = cfg_new();
    ot_model *a, *b, *c, *d;

    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "4");
    set_i(cfg, OT_OPT_DENSE_DIM, 2);
    a = model_new(cfg);
    set_f(cfg, OT_OPT_LEARNING_RATE, 0.01); /* not part of the shape */
    set_i(cfg, OT_OPT_SEED, 7);
    b = model_new(cfg);
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "5");
    c = model_new(cfg);
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "4");
    set_s(cfg, OT_OPT_OPTIMIZER, "sgd");
    d = model_new(cfg);
    ck_assert_uint_ne(ot_model_fingerprint(a), 0);
    ck_assert_uint_eq(ot_model_fingerprint(a), ot_model_fingerprint(b));
    ck_assert_uint_ne(ot_model_fingerprint(a), ot_model_fingerprint(c));
    ck_assert_uint_ne(ot_model_fingerprint(a), ot_model_fingerprint(d));
    ck_assert_uint_eq(oti_model_params_c(a)->fingerprint, ot_model_fingerprint(a));
    ot_model_destroy(a);
    ot_model_destroy(b);
    ot_model_destroy(c);
    ot_model_destroy(d);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_model_inconsistent_options)
{
    ot_config *cfg = cfg_new();
    ot_model *m = NULL;

    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "4"); /* no dense_dim, no embedding: no input */
    ck_assert_int_eq(ot_model_create(cfg, &m), OT_EINVAL);
    ck_assert_ptr_null(m);
    set_s(cfg, OT_OPT_EMBEDDING, "u:2,u:3"); /* a namespace twice */
    ck_assert_int_eq(ot_model_create(cfg, &m), OT_EINVAL);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(ot_model_create(cfg, NULL), OT_EINVAL);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- gradients ------------------------------------------------------------ */

static void check_gradients(const char *loss, const char *quadratic, const char *embedding,
                            const char *hidden, int dense, const char *act)
{
    ot_config *cfg = cfg_new();
    ot_example *ex = example_new();
    ot_model *m;
    int trial, checked = 0;
    size_t b;

    memset(checked_in_block, 0, sizeof(checked_in_block));
    set_i(cfg, OT_OPT_BITS, 12);
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 6);
    set_s(cfg, OT_OPT_LOSS, loss);
    set_s(cfg, OT_OPT_QUADRATIC, quadratic);
    set_s(cfg, OT_OPT_EMBEDDING, embedding);
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, hidden);
    set_i(cfg, OT_OPT_DENSE_DIM, dense);
    set_s(cfg, OT_OPT_ACTIVATION, act);
    m = model_new(cfg);
    for (trial = 0; trial < 4; trial++) {
        randomize_weights(m, 0.3f);
        random_example(ex, 7, (size_t)dense, trial & 1 ? 1.0f : (loss[0] == 'l' ? -1.0f : 0.3f));
        ck_assert_int_eq(ot_example_set_weight(ex, 0.5f + (float)trial), OT_OK);
        checked += gradient_check(m, ex, 1e-3, 1e-3);
    }
    /* Every block of the model took part. */
    ck_assert_int_gt(checked, 8);
    for (b = 0; b < ot_model_num_blocks(m); b++)
        ck_assert_msg(checked_in_block[b] > 0, "block %s: no coordinate compared",
                      oti_model_params_c(m)->blocks[b].name);
    ot_model_destroy(m);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}

START_TEST(test_model_gradient_wide_logistic)
{
    check_gradients("logistic", "ab", "", "", 0, "relu");
}
END_TEST

START_TEST(test_model_gradient_wide_squared)
{
    check_gradients("squared", "ab,aa", "", "", 0, "relu");
}
END_TEST

START_TEST(test_model_gradient_deep_logistic)
{
    check_gradients("logistic", "", "u:3,b:2", "5,3", 4, "tanh");
}
END_TEST

START_TEST(test_model_gradient_deep_squared)
{
    check_gradients("squared", "ab", "u:3", "4", 3, "sigmoid");
}
END_TEST

START_TEST(test_model_gradient_embedding_linear)
{
    /* Embeddings straight into the output layer (no hidden layer). */
    check_gradients("logistic", "", "a:4", "", 0, "linear");
}
END_TEST

START_TEST(test_model_gradient_covers_every_block)
{
    ot_config *cfg = cfg_new();
    ot_example *ex = example_new();
    ot_model *m;
    const oti_params *p;
    float *g;
    size_t b;

    set_i(cfg, OT_OPT_BITS, 8);
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 4);
    set_s(cfg, OT_OPT_EMBEDDING, "u:2");
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "3");
    set_i(cfg, OT_OPT_DENSE_DIM, 2);
    set_s(cfg, OT_OPT_ACTIVATION, "tanh");
    m = model_new(cfg);
    p = oti_model_params_c(m);
    g = malloc((size_t)p->total * sizeof(float));
    random_example(ex, 6, 2, 1.0f);
    ck_assert_int_eq(oti_model_gradient(m, ex, g, NULL), OT_OK);
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        uint64_t i;
        int nonzero = 0;
        for (i = 0; i < blk->rows * blk->cols; i++)
            nonzero += g[blk->offset + i] != 0.0f;
        ck_assert_msg(nonzero > 0, "no gradient in block %s", blk->name);
    }
    free(g);
    ot_model_destroy(m);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- optimizers against hand computations ------------------------------ */

/* The tiny model of these tests: 16 wide weights, two features. */
static ot_model *tiny_model(const char *opt, double lr, double l1, double l2)
{
    ot_config *cfg = cfg_new();
    ot_model *m;

    set_i(cfg, OT_OPT_BITS, 4);
    set_s(cfg, OT_OPT_OPTIMIZER, opt);
    set_f(cfg, OT_OPT_LEARNING_RATE, lr);
    set_f(cfg, OT_OPT_L1, l1);
    set_f(cfg, OT_OPT_L2, l2);
    set_f(cfg, OT_OPT_FTRL_ALPHA, 0.3);
    set_f(cfg, OT_OPT_FTRL_BETA, 0.7);
    set_f(cfg, OT_OPT_POWER_T, 0.5);
    m = model_new(cfg);
    ot_config_destroy(cfg);
    return m;
}

/* Feature j of the tiny examples: hash (16 + j) lands on row j; values 1 and 2. */
static const float tiny_x[3] = {1.0f, 2.0f, 1.0f}; /* last is the bias */
static const float tiny_y[3] = {1.0f, 0.0f, 1.0f};

static void tiny_example(ot_example *ex, int step)
{
    ot_example_clear(ex);
    ck_assert_int_eq(ot_example_add_hashed(ex, ' ', 16 + 1, tiny_x[0]), OT_OK);
    ck_assert_int_eq(ot_example_add_hashed(ex, ' ', 16 + 2, tiny_x[1]), OT_OK);
    ck_assert_int_eq(ot_example_set_label(ex, tiny_y[step]), OT_OK);
}

static double sigmoid(double z)
{
    return 1.0 / (1.0 + exp(-z));
}

static void assert_close(double got, double want, double tol)
{
    ck_assert_msg(fabs(got - want) <= tol * fmax(1.0, fabs(want)), "got %.9g, want %.9g", got,
                  want);
}

/* Runs three steps of the tiny problem and returns the model's weights of
 * rows 1 and 2 and the bias, after each step, into got[step][3]. */
static void tiny_run(ot_model *m, float got[3][3], float st0[3][3], float st1[3][3])
{
    ot_example *ex = example_new();
    const float *w, *b, *s0 = NULL, *s1 = NULL, *bs0 = NULL, *bs1 = NULL;
    int step;

    for (step = 0; step < 3; step++) {
        tiny_example(ex, step);
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
        ck_assert_int_eq(ot_model_block_data(m, 1, OT_ARRAY_WEIGHTS, &w), OT_OK);
        ck_assert_int_eq(ot_model_block_data(m, 0, OT_ARRAY_WEIGHTS, &b), OT_OK);
        ot_model_block_data(m, 1, OT_ARRAY_STATE0, &s0);
        ot_model_block_data(m, 1, OT_ARRAY_STATE1, &s1);
        ot_model_block_data(m, 0, OT_ARRAY_STATE0, &bs0);
        ot_model_block_data(m, 0, OT_ARRAY_STATE1, &bs1);
        got[step][0] = w[1];
        got[step][1] = w[2];
        got[step][2] = b[0];
        if (st0 != NULL) {
            st0[step][0] = s0[1];
            st0[step][1] = s0[2];
            st0[step][2] = bs0[0];
        }
        if (st1 != NULL) {
            st1[step][0] = s1[1];
            st1[step][1] = s1[2];
            st1[step][2] = bs1[0];
        }
    }
    ot_example_destroy(ex);
}

static double shrink(double w, double a)
{
    return w > a ? w - a : (w < -a ? w + a : 0.0);
}

START_TEST(test_model_sgd_matches_hand_computation)
{
    const double lr = 0.5, l1 = 0.01, l2 = 0.1;
    ot_model *m = tiny_model("sgd", lr, l1, l2);
    float got[3][3];
    double w[3] = {0, 0, 0};
    int step, j;

    tiny_run(m, got, NULL, NULL);
    for (step = 0; step < 3; step++) {
        double z = w[0] * tiny_x[0] + w[1] * tiny_x[1] + w[2];
        double gl = sigmoid(z) - tiny_y[step];
        double rate = lr / sqrt(1.0 + step);
        for (j = 0; j < 3; j++) {
            int reg = j < 2; /* the bias is not regularised */
            double g = gl * tiny_x[j] + (reg ? l2 * w[j] : 0);
            w[j] -= rate * g;
            if (reg)
                w[j] = shrink(w[j], rate * l1);
            assert_close(got[step][j], w[j], 1e-6);
        }
    }
    ot_model_destroy(m);
}
END_TEST

START_TEST(test_model_adagrad_matches_hand_computation)
{
    const double lr = 0.4, l1 = 0.02, l2 = 0.05;
    ot_model *m = tiny_model("adagrad", lr, l1, l2);
    float got[3][3], s0[3][3];
    double w[3] = {0, 0, 0}, s[3] = {0, 0, 0};
    int step, j;

    tiny_run(m, got, s0, NULL);
    for (step = 0; step < 3; step++) {
        double z = w[0] * tiny_x[0] + w[1] * tiny_x[1] + w[2];
        double gl = sigmoid(z) - tiny_y[step];
        for (j = 0; j < 3; j++) {
            int reg = j < 2;
            double g = gl * tiny_x[j] + (reg ? l2 * w[j] : 0), st;
            s[j] += g * g;
            st = lr / sqrt(s[j]);
            w[j] -= st * g;
            if (reg)
                w[j] = shrink(w[j], st * l1);
            assert_close(got[step][j], w[j], 1e-6);
            assert_close(s0[step][j], s[j], 1e-6);
        }
    }
    ot_model_destroy(m);
}
END_TEST

START_TEST(test_model_ftrl_matches_hand_computation)
{
    const double alpha = 0.3, beta = 0.7, l1 = 0.05, l2 = 0.2;
    ot_model *m = tiny_model("ftrl", 0.5, l1, l2);
    float got[3][3], zs[3][3], ns[3][3];
    double w[3] = {0, 0, 0}, z[3] = {0, 0, 0}, n[3] = {0, 0, 0};
    int step, j, nonzero = 0;

    tiny_run(m, got, zs, ns);
    for (step = 0; step < 3; step++) {
        double zz = w[0] * tiny_x[0] + w[1] * tiny_x[1] + w[2];
        double gl = sigmoid(zz) - tiny_y[step];
        for (j = 0; j < 3; j++) {
            double L1 = j < 2 ? l1 : 0, L2 = j < 2 ? l2 : 0;
            double g = gl * tiny_x[j];
            double sigma = (sqrt(n[j] + g * g) - sqrt(n[j])) / alpha;
            z[j] += g - sigma * w[j];
            n[j] += g * g;
            if (fabs(z[j]) <= L1)
                w[j] = 0;
            else
                w[j] = -(z[j] - (z[j] > 0 ? L1 : -L1)) / ((beta + sqrt(n[j])) / alpha + L2);
            assert_close(got[step][j], w[j], 1e-6);
            assert_close(zs[step][j], z[j], 1e-6);
            assert_close(ns[step][j], n[j], 1e-6);
            nonzero += w[j] != 0;
        }
    }
    ck_assert_int_gt(nonzero, 3);
    ot_model_destroy(m);
}
END_TEST

START_TEST(test_model_ftrl_derive_recomputes_weights)
{
    ot_model *m = tiny_model("ftrl", 0.5, 0.05, 0.2);
    ot_example *ex = example_new();
    oti_params *p = oti_model_params(m);
    oti_block *wide = &p->blocks[1];
    float before;

    tiny_example(ex, 0);
    ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    before = wide->w[2];
    ck_assert(before != 0.0f);
    wide->w[2] = 123.0f;
    p->derive(p->derive_ctx, wide, 2);
    ck_assert(wide->w[2] == before); /* bit-identical to what learn left */
    /* A changed state gives the formula's weight. */
    wide->s[0][2] = 0.01f; /* |z| <= l1: exactly zero */
    p->derive(p->derive_ctx, wide, 2);
    ck_assert(wide->w[2] == 0.0f);
    ot_example_destroy(ex);
    ot_model_destroy(m);
}
END_TEST

START_TEST(test_model_ftrl_l1_exact_zeros)
{
    ot_config *cfg = cfg_new();
    ot_example *ex = example_new();
    ot_model *m, *m0;
    const float *w, *w0;
    int i, j, zeros = 0, zeros0 = 0, seen_rare = 0;
    uint32_t r;

    set_i(cfg, OT_OPT_BITS, 16);
    m0 = model_new(cfg); /* no l1 */
    set_f(cfg, OT_OPT_L1, 1.0);
    m = model_new(cfg);
    for (i = 0; i < 3000; i++) {
        ot_example_clear(ex);
        /* Two frequent informative features and one rare one. */
        ck_assert_int_eq(ot_example_add_hashed(ex, 'a', (uint32_t)(i & 1), 1.0f), OT_OK);
        ck_assert_int_eq(ot_example_add_hashed(ex, 'a', 1000u + (uint32_t)i, 1.0f), OT_OK);
        ck_assert_int_eq(ot_example_set_label(ex, (i & 1) ? 1.0f : 0.0f), OT_OK);
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
        ck_assert_int_eq(ot_model_learn(m0, ex, NULL), OT_OK);
    }
    ck_assert_int_eq(ot_model_block_data(m, 1, OT_ARRAY_WEIGHTS, &w), OT_OK);
    ck_assert_int_eq(ot_model_block_data(m0, 1, OT_ARRAY_WEIGHTS, &w0), OT_OK);
    for (j = 0; j < 3000; j++) {
        r = (1000u + (uint32_t)j) & 0xffff;
        seen_rare++;
        zeros += w[r] == 0.0f;
        zeros0 += w0[r] == 0.0f;
    }
    /* Every rarely seen feature is exactly zero under L1; without L1 none is. */
    ck_assert_int_eq(zeros, seen_rare);
    ck_assert_int_eq(zeros0, 0);
    /* The frequent features are not. */
    ck_assert(w[0] != 0.0f && w[1] != 0.0f);
    ot_model_destroy(m);
    ot_model_destroy(m0);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- CBLAS forward against plain C ----------------------------------------- */

static double act_ref(int kind, double x)
{
    switch (kind) {
    case OTI_ACT_RELU: return x > 0 ? x : 0;
    case OTI_ACT_TANH: return tanh(x);
    case OTI_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    default: return x;
    }
}

/* The model's logit computed in plain C (double) from its block arrays. */
static double reference_logit(const ot_model *m, const ot_example *ex)
{
    const oti_params *p = oti_model_params_c(m);
    double x[512], y[512], z = (double)ex->initial + p->blocks[0].w[0];
    size_t i, j, k, in;

    for (i = 0; i < ex->nfeat; i++)
        z += (double)p->blocks[1].w[ex->feat[i].hash & m->wmask] * ex->feat[i].value;
    for (i = 0; i < m->npairs; i++)
        for (j = 0; j < ex->nfeat; j++)
            for (k = 0; k < ex->nfeat; k++)
                if (ex->feat[j].ns == m->pairs[i][0] && ex->feat[k].ns == m->pairs[i][1])
                    z += (double)p->blocks[1].w[((ex->feat[j].hash * 16777619u) ^ ex->feat[k].hash) &
                                                m->wmask] *
                         ex->feat[j].value * ex->feat[k].value;
    if (m->nlayers > 0) {
        in = m->shape.dense_dim;
        for (i = 0; i < in; i++)
            x[i] = ex->dense[i];
        for (i = 0; i < m->nembeds; i++) {
            const oti_block *eb = &p->blocks[m->embeds[i].block];
            size_t c;
            for (c = 0; c < eb->cols; c++)
                x[in + c] = 0;
            for (j = 0; j < ex->nfeat; j++) {
                if (ex->feat[j].ns != m->embeds[i].ns)
                    continue;
                for (c = 0; c < eb->cols; c++)
                    x[in + c] += (double)ex->feat[j].value *
                                 eb->w[(ex->feat[j].hash & m->emask) * eb->cols + c];
            }
            in += eb->cols;
        }
        for (k = 0; k < m->nlayers; k++) {
            const oti_block *W = &p->blocks[m->layers[k].wblock];
            const oti_block *B = &p->blocks[m->layers[k].bblock];
            size_t r, c;
            for (r = 0; r < W->rows; r++) {
                double s = B->w[r];
                for (c = 0; c < W->cols; c++)
                    s += (double)W->w[r * W->cols + c] * x[c];
                y[r] = k + 1 < m->nlayers ? act_ref(m->shape.activation, s) : s;
            }
            for (r = 0; r < W->rows; r++)
                x[r] = y[r];
        }
        z += x[0];
    }
    return z;
}

static double reference_predict(const ot_model *m, const ot_example *ex)
{
    double z = reference_logit(m, ex);
    return m->shape.loss == OTI_LOSS_LOGISTIC ? sigmoid(z) : z;
}

/* The example's weighted loss, in double precision from the reference logit. */
static double reference_loss(const ot_model *m, const ot_example *ex)
{
    double z = reference_logit(m, ex), l;

    if (m->shape.loss == OTI_LOSS_LOGISTIC) {
        double mg = ex->label > 0 ? z : -z;
        l = mg >= 0 ? log1p(exp(-mg)) : -mg + log1p(exp(mg));
    } else {
        l = 0.5 * (z - ex->label) * (z - ex->label);
    }
    return l * ex->weight;
}

START_TEST(test_model_forward_matches_reference)
{
    static const char *acts[] = {"relu", "tanh", "sigmoid", "linear"};
    ot_example *ex = example_new();
    int a, i;

    for (a = 0; a < 4; a++) {
        ot_config *cfg = cfg_new();
        ot_model *m;
        set_i(cfg, OT_OPT_BITS, 10);
        set_i(cfg, OT_OPT_EMBEDDING_BITS, 5);
        set_s(cfg, OT_OPT_LOSS, "squared");
        set_s(cfg, OT_OPT_QUADRATIC, "ab");
        set_s(cfg, OT_OPT_EMBEDDING, "u:4,a:3");
        set_s(cfg, OT_OPT_HIDDEN_LAYERS, "16,8");
        set_i(cfg, OT_OPT_DENSE_DIM, 5);
        set_s(cfg, OT_OPT_ACTIVATION, acts[a]);
        set_f(cfg, OT_OPT_INIT_SCALE, 0.3);
        m = model_new(cfg);
        randomize_weights(m, 0.4f);
        for (i = 0; i < 20; i++) {
            float got;
            double want;
            random_example(ex, 9, 5, 0.0f);
            ck_assert_int_eq(ot_model_predict(m, ex, &got), OT_OK);
            want = reference_predict(m, ex);
            ck_assert_msg(fabs(got - want) <= 1e-5 * fmax(fabs(want), 1e-2),
                          "%s: predict %.9g, reference %.9g", acts[a], got, want);
        }
        ot_model_destroy(m);
        ot_config_destroy(cfg);
    }
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_model_predict_batch_matches_single)
{
    ot_config *cfg = cfg_new();
    ot_example *ex[17];
    float single[17], batch[17];
    ot_model *m;
    int i;

    set_i(cfg, OT_OPT_BITS, 10);
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 5);
    set_s(cfg, OT_OPT_EMBEDDING, "u:4");
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "12");
    set_i(cfg, OT_OPT_DENSE_DIM, 3);
    m = model_new(cfg);
    randomize_weights(m, 0.4f);
    for (i = 0; i < 17; i++) {
        ex[i] = example_new();
        random_example(ex[i], 6, 3, 1.0f);
        ck_assert_int_eq(ot_model_predict(m, ex[i], &single[i]), OT_OK);
    }
    ck_assert_int_eq(ot_model_predict_batch(m, (const ot_example *const *)ex, 17, batch), OT_OK);
    for (i = 0; i < 17; i++)
        ck_assert_msg(fabs(batch[i] - single[i]) <= 1e-5, "%d: %g vs %g", i, batch[i], single[i]);
    ck_assert_int_eq(ot_model_predict_batch(m, NULL, 0, NULL), OT_OK);
    for (i = 0; i < 17; i++)
        ot_example_destroy(ex[i]);
    ot_model_destroy(m);
    ot_config_destroy(cfg);
}
END_TEST

/* learn_batch with a batch of one is learn. */
START_TEST(test_model_learn_batch_of_one_is_learn)
{
    ot_config *cfg = cfg_new();
    ot_example *ex = example_new();
    ot_model *a, *b;
    const oti_params *pa, *pb;
    int i;
    size_t k;

    set_i(cfg, OT_OPT_BITS, 8);
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 4);
    set_s(cfg, OT_OPT_EMBEDDING, "u:3");
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "5");
    set_i(cfg, OT_OPT_DENSE_DIM, 2);
    set_s(cfg, OT_OPT_ACTIVATION, "tanh");
    a = model_new(cfg);
    b = model_new(cfg);
    for (i = 0; i < 30; i++) {
        float la, lb;
        const ot_example *one[1];
        random_example(ex, 5, 2, (float)(i & 1));
        one[0] = ex;
        ck_assert_int_eq(ot_model_learn(a, ex, &la), OT_OK);
        ck_assert_int_eq(ot_model_learn_batch(b, one, 1, &lb), OT_OK);
        ck_assert(fabsf(la - lb) <= 1e-5f * fmaxf(1.0f, fabsf(la)));
    }
    pa = oti_model_params_c(a);
    pb = oti_model_params_c(b);
    for (k = 0; k < pa->nblocks; k++) {
        uint64_t j;
        for (j = 0; j < pa->blocks[k].rows * pa->blocks[k].cols; j++)
            ck_assert(fabsf(pa->blocks[k].w[j] - pb->blocks[k].w[j]) <= 1e-4f);
    }
    ck_assert_uint_eq(ot_model_examples(b), 30);
    ot_model_destroy(a);
    ot_model_destroy(b);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- learning works at all ------------------------------------------------ */

static double mean_loss(ot_model *m, int n, int deep)
{
    ot_example *ex = example_new();
    double sum = 0;
    int i;

    for (i = 0; i < n; i++) {
        float d[2], l;
        int y;
        d[0] = rndf(-1, 1);
        d[1] = rndf(-1, 1);
        ot_example_clear(ex);
        if (deep) {
            y = (d[0] > 0) != (d[1] > 0); /* XOR: not linear */
            ck_assert_int_eq(ot_example_set_dense(ex, d, 2), OT_OK);
        } else {
            y = d[0] + 0.5f * d[1] > 0;
            ck_assert_int_eq(ot_example_add_hashed(ex, 'a', 1, d[0]), OT_OK);
            ck_assert_int_eq(ot_example_add_hashed(ex, 'a', 2, d[1]), OT_OK);
        }
        ck_assert_int_eq(ot_example_set_label(ex, y ? 1.0f : -1.0f), OT_OK);
        ck_assert_int_eq(ot_model_learn(m, ex, &l), OT_OK);
        sum += l;
    }
    ot_example_destroy(ex);
    return sum / n;
}

START_TEST(test_model_learns_linear_and_xor)
{
    static const char *opts[] = {"ftrl", "adagrad", "sgd"};
    int o;

    for (o = 0; o < 3; o++) {
        ot_config *cfg = cfg_new();
        ot_model *wide, *deep;
        double first, last;
        set_s(cfg, OT_OPT_OPTIMIZER, opts[o]);
        set_f(cfg, OT_OPT_FTRL_ALPHA, 0.5);
        wide = model_new(cfg);
        first = mean_loss(wide, 200, 0);
        mean_loss(wide, 3000, 0);
        last = mean_loss(wide, 1000, 0);
        ck_assert_msg(last < 0.5 * first && last < 0.25, "%s wide: %g -> %g", opts[o], first, last);

        set_i(cfg, OT_OPT_DENSE_DIM, 2);
        set_s(cfg, OT_OPT_HIDDEN_LAYERS, "16");
        set_f(cfg, OT_OPT_LEARNING_RATE, o == 0 ? 0.5 : 0.05);
        set_f(cfg, OT_OPT_POWER_T, 0.0); /* sgd: a constant rate */
        deep = model_new(cfg);
        first = mean_loss(deep, 500, 1);
        mean_loss(deep, 20000, 1);
        last = mean_loss(deep, 2000, 1);
        ck_assert_msg(last < 0.35, "%s deep XOR: %g -> %g", opts[o], first, last);
        ot_model_destroy(wide);
        ot_model_destroy(deep);
        ot_config_destroy(cfg);
    }
}
END_TEST

/* ---- save and load -------------------------------------------------------- */

static void temp_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/ot_check_model_%ld_%s.otm", (long)getpid(), tag);
}

static ot_model *trained_deep_model(const char *opt, int nexamples)
{
    ot_config *cfg = cfg_new();
    ot_example *ex = example_new();
    ot_model *m;
    int i;

    set_i(cfg, OT_OPT_BITS, 6);
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 3);
    set_s(cfg, OT_OPT_OPTIMIZER, opt);
    set_s(cfg, OT_OPT_QUADRATIC, "ab");
    set_s(cfg, OT_OPT_EMBEDDING, "u:2");
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "3");
    set_i(cfg, OT_OPT_DENSE_DIM, 2);
    set_f(cfg, OT_OPT_L1, 0.01);
    m = model_new(cfg);
    for (i = 0; i < nexamples; i++) {
        random_example(ex, 5, 2, (float)(i % 2));
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    }
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
    return m;
}

static void assert_same_arrays(const ot_model *a, const ot_model *b, int with_state)
{
    const oti_params *pa = oti_model_params_c(a), *pb = oti_model_params_c(b);
    size_t i;

    ck_assert_uint_eq(pa->nblocks, pb->nblocks);
    ck_assert_uint_eq(pa->fingerprint, pb->fingerprint);
    for (i = 0; i < pa->nblocks; i++) {
        size_t n = (size_t)(pa->blocks[i].rows * pa->blocks[i].cols) * sizeof(float);
        int s;
        ck_assert_int_eq(memcmp(pa->blocks[i].w, pb->blocks[i].w, n), 0);
        for (s = 0; with_state && s < pa->blocks[i].nstate; s++)
            ck_assert_int_eq(memcmp(pa->blocks[i].s[s], pb->blocks[i].s[s], n), 0);
    }
}

/* learn_batch on a wide-only model (which prefetches the examples ahead)
 * gives, bit for bit, the losses, arrays and touched rows of learning the
 * examples one by one, whatever the batch sizes and feature counts. */
START_TEST(test_model_learn_batch_wide_is_sequential)
{
    static const size_t sizes[] = {0, 1, 2, 3, 4, 37};
    static const char *opts[] = {"ftrl", "adagrad", "sgd"};
    ot_example *ex[37];
    size_t o, k, i;

    for (i = 0; i < 37; i++)
        ex[i] = example_new();
    for (o = 0; o < 3; o++) {
        ot_config *cfg = cfg_new();
        ot_model *a, *b;
        const oti_params *pa, *pb;
        set_i(cfg, OT_OPT_BITS, 10);
        set_s(cfg, OT_OPT_OPTIMIZER, opts[o]);
        set_s(cfg, OT_OPT_QUADRATIC, "ab");
        set_f(cfg, OT_OPT_L1, 0.01);
        a = model_new(cfg);
        b = model_new(cfg);
        for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            float la[37], lb[37];
            for (i = 0; i < sizes[k]; i++)
                random_example(ex[i], (i * 7 + k) % 30, 0, (float)((i + k) & 1));
            for (i = 0; i < sizes[k]; i++)
                ck_assert_int_eq(ot_model_learn(a, ex[i], &la[i]), OT_OK);
            ck_assert_int_eq(ot_model_learn_batch(b, (const ot_example *const *)ex, sizes[k], lb),
                             OT_OK);
            for (i = 0; i < sizes[k]; i++)
                ck_assert_int_eq(memcmp(&la[i], &lb[i], sizeof(float)), 0);
        }
        assert_same_arrays(a, b, 1);
        pa = oti_model_params_c(a);
        pb = oti_model_params_c(b);
        for (i = 0; i < pa->nblocks; i++) {
            ck_assert_uint_eq(pa->blocks[i].ntouched, pb->blocks[i].ntouched);
            ck_assert_int_eq(memcmp(pa->blocks[i].touched_list, pb->blocks[i].touched_list,
                                    (size_t)pa->blocks[i].ntouched * sizeof(uint32_t)),
                             0);
        }
        ck_assert_uint_eq(ot_model_examples(a), ot_model_examples(b));
        ot_model_destroy(a);
        ot_model_destroy(b);
        ot_config_destroy(cfg);
    }
    for (i = 0; i < 37; i++)
        ot_example_destroy(ex[i]);
}
END_TEST

/* lib/linalg.c's timing (bench/train's CBLAS share) counts the calling
 * thread's CBLAS calls only while it is on: one example through a 2 -> 5 ->
 * 1 network makes two forward sgemv and one backward. */
START_TEST(test_model_linalg_timing_counts_calls)
{
    ot_config *cfg = cfg_new();
    ot_example *ex = example_new();
    ot_model *m;
    uint64_t calls = 99, ns = 99;

    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "5");
    set_i(cfg, OT_OPT_DENSE_DIM, 2);
    m = model_new(cfg);
    random_example(ex, 4, 2, 1.0f);
    ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    oti_linalg_timing_read(&calls, &ns);
    ck_assert_uint_eq(calls, 0);
    ck_assert_uint_eq(ns, 0);
    oti_linalg_timing(1);
    ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    oti_linalg_timing_read(&calls, NULL);
    ck_assert_uint_eq(calls, 3);
    ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    oti_linalg_timing_read(&calls, &ns);
    ck_assert_uint_eq(calls, 6);
    ck_assert_uint_gt(ns, 0);
    oti_linalg_timing(0);
    ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    oti_linalg_timing_read(&calls, &ns);
    ck_assert_uint_eq(calls, 0);
    ck_assert_uint_eq(ns, 0);
    ot_model_destroy(m);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_model_save_load_bit_identical)
{
    static const char *opts[] = {"ftrl", "adagrad", "sgd"};
    ot_example *ex = example_new();
    char path[256];
    int o, what, i;

    temp_path(path, sizeof(path), "rt");
    for (o = 0; o < 3; o++) {
        for (what = 0; what < 2; what++) {
            ot_model *m = trained_deep_model(opts[o], 200), *l = NULL;
            ck_assert_int_eq(ot_model_save(m, path, what), OT_OK);
            ck_assert_int_eq(access(path, F_OK), 0);
            ck_assert_int_ne(access("/tmp/never", F_OK) == 0, 1);
            ck_assert_int_eq(ot_model_load(NULL, path, &l), OT_OK);
            ck_assert_uint_eq(ot_model_examples(l), 200);
            assert_same_arrays(m, l, what == OT_SAVE_WEIGHTS_AND_STATE);
            for (i = 0; i < 50; i++) {
                float pm, pl;
                random_example(ex, 5, 2, 1.0f);
                ck_assert_int_eq(ot_model_predict(m, ex, &pm), OT_OK);
                ck_assert_int_eq(ot_model_predict(l, ex, &pl), OT_OK);
                ck_assert(memcmp(&pm, &pl, sizeof(float)) == 0);
            }
            if (what == OT_SAVE_WEIGHTS_AND_STATE) {
                /* Training continues exactly as without the round trip. */
                uint64_t saved = rng_state;
                for (i = 0; i < 100; i++) {
                    random_example(ex, 5, 2, (float)(i % 2));
                    ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
                }
                rng_state = saved;
                for (i = 0; i < 100; i++) {
                    random_example(ex, 5, 2, (float)(i % 2));
                    ck_assert_int_eq(ot_model_learn(l, ex, NULL), OT_OK);
                }
                assert_same_arrays(m, l, 1);
            }
            ot_model_destroy(m);
            ot_model_destroy(l);
        }
    }
    unlink(path);
    ot_example_destroy(ex);
}
END_TEST

START_TEST(test_model_weights_only_ftrl_keeps_weights)
{
    ot_model *m = trained_deep_model("ftrl", 300), *l = NULL;
    oti_params *p;
    char path[256];
    size_t b;
    uint64_t r;

    temp_path(path, sizeof(path), "wo");
    ck_assert_int_eq(ot_model_save(m, path, OT_SAVE_WEIGHTS), OT_OK);
    ck_assert_int_eq(ot_model_load(NULL, path, &l), OT_OK);
    /* z is rebuilt so that deriving w from (z, n = 0) gives the weights back. */
    p = oti_model_params(l);
    for (b = 0; b < 2; b++) {
        oti_block *blk = &p->blocks[b];
        for (r = 0; r < blk->rows; r++) {
            float w = blk->w[r];
            p->derive(p->derive_ctx, blk, r);
            ck_assert(fabsf(blk->w[r] - w) <= 1e-6f * fmaxf(1.0f, fabsf(w)));
        }
    }
    unlink(path);
    ot_model_destroy(m);
    ot_model_destroy(l);
}
END_TEST

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const uint8_t *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(d, 1, n, f), n);
    fclose(f);
}

static int is_load_error(ot_status st)
{
    return st == OT_EFORMAT || st == OT_EVERSION || st == OT_ECORRUPT;
}

START_TEST(test_model_load_rejects_damage)
{
    ot_model *m = trained_deep_model("ftrl", 50), *l;
    char path[256], bad[256];
    uint8_t *good, *copy;
    size_t len, i;
    int x;

    temp_path(path, sizeof(path), "dmg");
    temp_path(bad, sizeof(bad), "bad");
    ck_assert_int_eq(ot_model_save(m, path, OT_SAVE_WEIGHTS_AND_STATE), OT_OK);
    good = read_all(path, &len);
    copy = malloc(len);
    ck_assert_int_gt(len, 500);
    l = NULL;
    ck_assert_int_eq(oti_model_load_mem(NULL, good, len, &l, NULL), OT_OK);
    ot_model_destroy(l);

    /* A flipped byte anywhere. */
    for (i = 0; i < len; i++) {
        for (x = 0; x < 2; x++) {
            ot_status st;
            memcpy(copy, good, len);
            copy[i] ^= x ? 0xff : 0x01;
            l = NULL;
            st = oti_model_load_mem(NULL, copy, len, &l, NULL);
            ck_assert_msg(is_load_error(st), "byte %zu ^ %d: %s", i, x, ot_status_name(st));
            ck_assert_ptr_null(l);
        }
    }
    /* Every truncation. */
    for (i = 0; i < len; i++) {
        ot_status st;
        l = NULL;
        st = oti_model_load_mem(NULL, good, i, &l, NULL);
        ck_assert_msg(is_load_error(st), "length %zu: %s", i, ot_status_name(st));
        ck_assert_ptr_null(l);
    }
    /* The same through files, for a sample. */
    for (i = 0; i < len; i += 97) {
        memcpy(copy, good, len);
        copy[i] ^= 0x10;
        write_all(bad, copy, len);
        l = NULL;
        ck_assert(is_load_error(ot_model_load(NULL, bad, &l)));
        write_all(bad, good, i);
        ck_assert(is_load_error(ot_model_load(NULL, bad, &l)));
        ck_assert_ptr_null(l);
    }
    /* Specific codes: magic, major version. */
    memcpy(copy, good, len);
    copy[0] = 'X';
    ck_assert_int_eq(oti_model_load_mem(NULL, copy, len, &l, NULL), OT_EFORMAT);
    memcpy(copy, good, len);
    copy[8] = 2;
    ck_assert_int_eq(oti_model_load_mem(NULL, copy, len, &l, NULL), OT_EVERSION);
    memcpy(copy, good, len);
    copy[len - 10] ^= 1; /* in the data: the checksum catches it */
    ck_assert_int_eq(oti_model_load_mem(NULL, copy, len, &l, NULL), OT_ECORRUPT);
    ck_assert_int_eq(oti_model_load_mem(NULL, "hello", 5, &l, NULL), OT_EFORMAT);
    ck_assert_int_eq(oti_model_load_mem(NULL, good, len - 1, &l, NULL), OT_ECORRUPT);
    unlink(path);
    unlink(bad);
    free(good);
    free(copy);
    ot_model_destroy(m);
}
END_TEST

START_TEST(test_model_load_other_shape)
{
    ot_config *cfg = cfg_new();
    ot_model *m, *l = NULL;
    char path[256];
    const char *name;
    uint64_t rows;
    uint32_t cols;

    set_i(cfg, OT_OPT_BITS, 7);
    set_s(cfg, OT_OPT_LOSS, "squared");
    set_s(cfg, OT_OPT_OPTIMIZER, "adagrad");
    set_s(cfg, OT_OPT_EMBEDDING, "z:5");
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 2);
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "6,2");
    set_s(cfg, OT_OPT_ACTIVATION, "sigmoid");
    m = model_new(cfg);
    temp_path(path, sizeof(path), "shape");
    ck_assert_int_eq(ot_model_save(m, path, OT_SAVE_WEIGHTS), OT_OK);
    /* The loading config's own options do not matter; the file's do. */
    ck_assert_int_eq(ot_model_load(NULL, path, &l), OT_OK);
    ck_assert_uint_eq(ot_model_fingerprint(l), ot_model_fingerprint(m));
    ck_assert_uint_eq(ot_model_num_blocks(l), 2 + 1 + 6);
    ck_assert_uint_eq(ot_model_num_weights(l), ot_model_num_weights(m));
    ck_assert_int_eq(ot_model_block_info(l, 2, &name, NULL, NULL, &rows, &cols, NULL), OT_OK);
    ck_assert_str_eq(name, "embed.z");
    ck_assert_uint_eq(rows, 4);
    ck_assert_uint_eq(cols, 5);
    ck_assert_int_eq(l->shape.loss, OTI_LOSS_SQUARED);
    ck_assert_int_eq(l->shape.optimizer, OTI_OPT_ADAGRAD);
    ck_assert_int_eq(l->shape.activation, OTI_ACT_SIGMOID);
    ck_assert_uint_eq(l->shape.bits, 7);
    ot_model_destroy(l);
    /* Missing files and bad arguments. */
    ck_assert_int_eq(ot_model_load(NULL, "/nonexistent/dir/x.otm", &l), OT_ENOENT);
    ck_assert_int_eq(ot_model_load(NULL, "/tmp", &l), OT_EIO);
    ck_assert_int_eq(ot_model_load(NULL, NULL, &l), OT_EINVAL);
    ck_assert_int_eq(ot_model_save(m, "/nonexistent/dir/x.otm", OT_SAVE_WEIGHTS), OT_ENOENT);
    ck_assert_str_ne(ot_model_errmsg(m), "");
    ck_assert_int_eq(ot_model_save(m, path, 5), OT_EINVAL);
    ck_assert_int_eq(ot_model_save(NULL, path, OT_SAVE_WEIGHTS), OT_EINVAL);
    unlink(path);
    ot_model_destroy(m);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_model_clone_is_independent)
{
    ot_model *m = trained_deep_model("adagrad", 100), *c = NULL;
    ot_example *ex = example_new();
    float a, b;

    ck_assert_int_eq(ot_model_clone(m, &c), OT_OK);
    assert_same_arrays(m, c, 1);
    ck_assert_uint_eq(ot_model_examples(c), 100);
    random_example(ex, 5, 2, 1.0f);
    ck_assert_int_eq(ot_model_learn(c, ex, NULL), OT_OK);
    ck_assert_int_eq(ot_model_predict(m, ex, &a), OT_OK);
    ck_assert_int_eq(ot_model_predict(c, ex, &b), OT_OK);
    ck_assert(a != b);
    ck_assert_uint_eq(ot_model_examples(m), 100);
    ck_assert_int_eq(ot_model_clone(NULL, &c), OT_EINVAL);
    ot_model_destroy(c);
    ot_model_destroy(m);
    ot_example_destroy(ex);
}
END_TEST

/* ---- touched tracking ---------------------------------------------------- */

START_TEST(test_model_touched_rows)
{
    ot_config *cfg = cfg_new();
    ot_example *ex = example_new();
    ot_model *m;
    oti_params *p;
    uint8_t want_wide[1024], want_emb[64];
    size_t i, nwide = 0, nemb = 0;
    int k;

    memset(want_wide, 0, sizeof(want_wide));
    memset(want_emb, 0, sizeof(want_emb));
    set_i(cfg, OT_OPT_BITS, 10);
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 6);
    set_s(cfg, OT_OPT_QUADRATIC, "ab");
    set_s(cfg, OT_OPT_EMBEDDING, "u:2");
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "3");
    m = model_new(cfg);
    p = oti_model_params(m);
    for (k = 0; k < 5; k++) {
        random_example(ex, 6, 0, 1.0f);
        for (i = 0; i < ex->nfeat; i++) {
            size_t j;
            want_wide[ex->feat[i].hash & 1023] = 1;
            if (ex->feat[i].ns == 'u')
                want_emb[ex->feat[i].hash & 63] = 1;
            for (j = 0; j < ex->nfeat; j++)
                if (ex->feat[i].ns == 'a' && ex->feat[j].ns == 'b')
                    want_wide[((ex->feat[i].hash * 16777619u) ^ ex->feat[j].hash) & 1023] = 1;
        }
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    }
    for (i = 0; i < 1024; i++)
        nwide += want_wide[i];
    for (i = 0; i < 64; i++)
        nemb += want_emb[i];
    ck_assert_uint_eq(p->blocks[1].ntouched, nwide);
    for (i = 0; i < p->blocks[1].ntouched; i++)
        ck_assert(want_wide[p->blocks[1].touched_list[i]]);
    ck_assert_uint_eq(p->blocks[2].ntouched, nemb);
    for (i = 0; i < p->blocks[2].ntouched; i++)
        ck_assert(want_emb[p->blocks[2].touched_list[i]]);
    ck_assert_uint_eq(p->blocks[0].ntouched, 1);
    ck_assert_uint_eq(p->blocks[0].touched_list[0], 0);
    for (i = 3; i < p->nblocks; i++)
        ck_assert_int_eq(p->blocks[i].all_touched, 1);

    oti_params_clear_touched(p);
    for (i = 0; i < p->nblocks; i++) {
        uint64_t words = (p->blocks[i].rows + 63) / 64, w;
        ck_assert_uint_eq(p->blocks[i].ntouched, 0);
        ck_assert_int_eq(p->blocks[i].all_touched, 0);
        for (w = 0; w < words; w++)
            ck_assert_uint_eq(p->blocks[i].touched_bits[w], 0);
    }
    /* Tracking starts again after a clear. */
    ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    ck_assert_uint_gt(p->blocks[1].ntouched, 0);
    ot_model_destroy(m);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- allocation in the steady state -------------------------------------- */

typedef struct counting {
    long allocs, frees, bad_sizes;
} counting;

static void *count_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    counting *c = user;
    size_t *p;

    if (ptr != NULL && ((size_t *)ptr)[-2] != old_size)
        c->bad_sizes++;
    if (new_size == 0) {
        c->frees++;
        free((size_t *)ptr - 2);
        return NULL;
    }
    p = realloc(ptr != NULL ? (size_t *)ptr - 2 : NULL, new_size + 2 * sizeof(size_t));
    if (p == NULL)
        return NULL;
    c->allocs += ptr == NULL;
    p[0] = new_size;
    return p + 2;
}

static void steady_state(const char *hidden, const char *embedding, int dense)
{
    counting c = {0, 0, 0};
    ot_config *cfg = cfg_new();
    ot_example *ex;
    ot_model *m;
    const ot_example *batch[4];
    long before;
    int i;

    ck_assert_int_eq(ot_config_set_allocator(cfg, count_alloc, &c), OT_OK);
    set_i(cfg, OT_OPT_BITS, 12);
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 6);
    set_s(cfg, OT_OPT_QUADRATIC, "ab");
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, hidden);
    set_s(cfg, OT_OPT_EMBEDDING, embedding);
    set_i(cfg, OT_OPT_DENSE_DIM, dense);
    ck_assert_int_eq(ot_example_create(cfg, &ex), OT_OK);
    m = model_new(cfg);
    batch[0] = batch[1] = batch[2] = batch[3] = ex;
    for (i = 0; i < 100; i++) { /* warm up: scratch grows to the largest example */
        random_example(ex, 20, (size_t)dense, (float)(i & 1));
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
        ck_assert_int_eq(ot_model_learn_batch(m, batch, 4, NULL), OT_OK);
    }
    before = c.allocs;
    for (i = 0; i < 1000; i++) {
        float p;
        random_example(ex, 20, (size_t)dense, (float)(i & 1));
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
        ck_assert_int_eq(ot_model_learn_batch(m, batch, 4, NULL), OT_OK);
        ck_assert_int_eq(ot_model_predict(m, ex, &p), OT_OK);
    }
    ck_assert_int_eq(c.allocs, before);
    ot_model_destroy(m);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
    ck_assert_int_eq(c.allocs, c.frees);
    ck_assert_int_eq(c.bad_sizes, 0);
}

START_TEST(test_model_no_alloc_per_example_wide)
{
    steady_state("", "", 0);
}
END_TEST

START_TEST(test_model_no_alloc_per_example_deep)
{
    steady_state("16,8", "u:4", 3);
}
END_TEST

/* An allocator that fails every allocation from the limit-th on (when armed). */
typedef struct failing {
    long allocs, frees, limit;
    int armed;
} failing;

static void *fail_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    failing *f = user;

    (void)old_size;
    if (new_size == 0) {
        f->frees++;
        free(ptr);
        return NULL;
    }
    if (f->armed && f->allocs >= f->limit)
        return NULL;
    if (ptr == NULL) {
        void *p = malloc(new_size);
        if (p != NULL)
            f->allocs++;
        return p;
    }
    return realloc(ptr, new_size);
}

START_TEST(test_model_out_of_memory)
{
    failing f = {0, 0, 0, 0};
    ot_config *cfg = cfg_new();
    ot_model *m = NULL, *src = trained_deep_model("ftrl", 20);
    ot_example *ex = example_new();
    char path[256];
    const ot_example *batch[3];
    long limit, base;
    int created = 0, loaded = 0;
    ot_status st;

    ck_assert_int_eq(ot_config_set_allocator(cfg, fail_alloc, &f), OT_OK);
    set_i(cfg, OT_OPT_BITS, 6);
    set_i(cfg, OT_OPT_EMBEDDING_BITS, 3);
    set_s(cfg, OT_OPT_QUADRATIC, "ab");
    set_s(cfg, OT_OPT_EMBEDDING, "u:2");
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "3");
    set_i(cfg, OT_OPT_DENSE_DIM, 2);
    base = f.allocs;
    /* Creating: every allocation failure gives OT_ENOMEM and leaks nothing. */
    for (limit = 0; !created; limit++) {
        f.allocs = base;
        f.frees = 0;
        f.limit = base + limit;
        f.armed = 1;
        m = NULL;
        st = ot_model_create(cfg, &m);
        f.armed = 0;
        if (st == OT_OK) {
            created = 1;
            break;
        }
        ck_assert_int_eq(st, OT_ENOMEM);
        ck_assert_ptr_null(m);
        ck_assert_int_eq(f.allocs - base, f.frees);
    }
    ck_assert_int_gt(limit, 10);
    /* Learning that must grow its scratch, and a first batch, fail cleanly. */
    random_example(ex, 300, 2, 1.0f);
    f.limit = f.allocs;
    f.armed = 1;
    ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_ENOMEM);
    batch[0] = batch[1] = batch[2] = ex;
    random_example(ex, 5, 2, 1.0f);
    ck_assert_int_eq(ot_model_learn_batch(m, batch, 3, NULL), OT_ENOMEM);
    f.armed = 0;
    ck_assert_int_eq(ot_model_learn_batch(m, batch, 3, NULL), OT_OK);
    ot_model_destroy(m);

    /* Loading, likewise. */
    temp_path(path, sizeof(path), "oom");
    ck_assert_int_eq(ot_model_save(src, path, OT_SAVE_WEIGHTS_AND_STATE), OT_OK);
    for (limit = 0; !loaded; limit++) {
        f.allocs = 0;
        f.frees = 0;
        f.limit = limit;
        f.armed = 1;
        m = NULL;
        st = ot_model_load(cfg, path, &m);
        f.armed = 0;
        if (st == OT_OK) {
            loaded = 1;
            break;
        }
        ck_assert_int_eq(st, OT_ENOMEM);
        ck_assert_ptr_null(m);
        ck_assert_int_eq(f.allocs, f.frees);
    }
    assert_same_arrays(src, m, 1);
    ot_model_destroy(m);
    unlink(path);

    /* A predict whose activations do not fit its stack buffer allocates. */
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "1100");
    set_s(cfg, OT_OPT_EMBEDDING, "");
    m = model_new(cfg);
    random_example(ex, 5, 2, 1.0f);
    f.limit = f.allocs;
    f.armed = 1;
    {
        float out;
        const ot_example *one[1];
        one[0] = ex;
        ck_assert_int_eq(ot_model_predict(m, ex, &out), OT_ENOMEM);
        ck_assert_int_eq(ot_model_predict_batch(m, one, 1, &out), OT_ENOMEM);
        f.armed = 0;
        ck_assert_int_eq(ot_model_predict(m, ex, &out), OT_OK);
    }
    ot_model_destroy(m);
    ot_model_destroy(src);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- concurrent predict --------------------------------------------------- */

#define NPRED 400

typedef struct pred_job {
    const ot_model *m;
    ot_example **ex;
    float out[NPRED];
    int failures;
} pred_job;

static void *pred_thread(void *arg)
{
    pred_job *j = arg;
    int r, i;

    for (r = 0; r < 5; r++)
        for (i = 0; i < NPRED; i++)
            if (ot_model_predict(j->m, j->ex[i], &j->out[i]) != OT_OK)
                j->failures++;
    return NULL;
}

START_TEST(test_model_predict_from_threads)
{
    ot_model *m = trained_deep_model("ftrl", 300);
    ot_example *ex[NPRED];
    float ref[NPRED];
    pred_job jobs[4];
    pthread_t th[4];
    int i, t;

    for (i = 0; i < NPRED; i++) {
        ex[i] = example_new();
        random_example(ex[i], 8, 2, 1.0f);
        ck_assert_int_eq(ot_model_predict(m, ex[i], &ref[i]), OT_OK);
    }
    for (t = 0; t < 4; t++) {
        jobs[t].m = m;
        jobs[t].ex = ex;
        jobs[t].failures = 0;
        ck_assert_int_eq(pthread_create(&th[t], NULL, pred_thread, &jobs[t]), 0);
    }
    for (t = 0; t < 4; t++) {
        ck_assert_int_eq(pthread_join(th[t], NULL), 0);
        ck_assert_int_eq(jobs[t].failures, 0);
        ck_assert_int_eq(memcmp(jobs[t].out, ref, sizeof(ref)), 0);
    }
    for (i = 0; i < NPRED; i++)
        ot_example_destroy(ex[i]);
    ot_model_destroy(m);
}
END_TEST

/* ---- error paths ---------------------------------------------------------- */

START_TEST(test_model_error_paths)
{
    ot_config *cfg = cfg_new();
    ot_example *ex = example_new();
    ot_model *m, *w;
    float out = -1.0f, l = -1.0f, dense[3] = {1, 2, 3};
    const ot_example *arr[2];

    set_i(cfg, OT_OPT_DENSE_DIM, 2);
    set_s(cfg, OT_OPT_HIDDEN_LAYERS, "4");
    m = model_new(cfg);
    w = model_new(NULL);

    ck_assert_int_eq(ot_model_predict(NULL, ex, &out), OT_EINVAL);
    ck_assert_int_eq(ot_model_predict(m, NULL, &out), OT_EINVAL);
    ck_assert_int_eq(ot_model_predict(m, ex, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_model_learn(NULL, ex, &l), OT_EINVAL);
    ck_assert_int_eq(ot_model_learn(m, NULL, &l), OT_EINVAL);
    ck_assert_int_eq(ot_model_learn_batch(NULL, arr, 1, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_model_learn_batch(m, NULL, 1, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_model_predict_batch(m, NULL, 1, &out), OT_EINVAL);

    /* Unlabeled: learn refuses, predict is fine on the wide model. */
    ck_assert_int_eq(ot_example_add_hashed(ex, 'a', 5, 1.0f), OT_OK);
    ck_assert_int_eq(ot_model_learn(w, ex, &l), OT_EINVAL);
    ck_assert_str_ne(ot_model_errmsg(w), "");
    ck_assert_uint_eq(ot_model_examples(w), 0);
    ck_assert_int_eq(ot_model_predict(w, ex, &out), OT_OK);
    ck_assert(out == 0.5f);

    /* Dense vector of the wrong length (missing, too long). */
    ck_assert_int_eq(ot_example_set_label(ex, 1.0f), OT_OK);
    ck_assert_int_eq(ot_model_learn(m, ex, &l), OT_EINVAL);
    ck_assert_int_eq(ot_model_predict(m, ex, &out), OT_EINVAL);
    ck_assert_int_eq(ot_example_set_dense(ex, dense, 3), OT_OK);
    ck_assert_int_eq(ot_model_learn(m, ex, &l), OT_EINVAL);
    arr[0] = ex;
    arr[1] = NULL;
    ck_assert_int_eq(ot_model_learn_batch(m, arr, 1, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_model_learn_batch(m, arr, 2, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_model_predict_batch(m, arr, 1, &out), OT_EINVAL);
    ck_assert_uint_eq(ot_model_examples(m), 0);
    ck_assert_int_eq(ot_example_set_dense(ex, dense, 2), OT_OK);
    ck_assert_int_eq(ot_model_learn(m, ex, &l), OT_OK);
    ck_assert_uint_eq(ot_model_examples(m), 1);
    /* The wide model ignores a dense vector. */
    ck_assert_int_eq(ot_model_learn(w, ex, &l), OT_OK);

    /* NULL-safe accessors and destroy. */
    ck_assert_uint_eq(ot_model_fingerprint(NULL), 0);
    ck_assert_uint_eq(ot_model_num_weights(NULL), 0);
    ck_assert_uint_eq(ot_model_num_blocks(NULL), 0);
    ck_assert_uint_eq(ot_model_examples(NULL), 0);
    ck_assert_str_eq(ot_model_errmsg(NULL), "");
    ck_assert_int_eq(ot_model_block_info(NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL), OT_EINVAL);
    ck_assert_int_eq(ot_model_block_data(m, 0, 0, NULL), OT_EINVAL);
    ck_assert_ptr_null(oti_model_params(NULL));
    ot_model_destroy(NULL);
    oti_params_clear_touched(NULL);
    ck_assert_ptr_null(oti_params_find(NULL, 0));

    ot_model_destroy(m);
    ot_model_destroy(w);
    ot_example_destroy(ex);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_model_loss_is_before_update_and_weighted)
{
    ot_model *m = model_new(NULL);
    ot_example *ex = example_new();
    float l, l2, p;

    ck_assert_int_eq(ot_example_add_hashed(ex, 'a', 9, 1.0f), OT_OK);
    ck_assert_int_eq(ot_example_set_label(ex, -1.0f), OT_OK); /* -1 is negative */
    ck_assert_int_eq(ot_model_learn(m, ex, &l), OT_OK);
    ck_assert(fabsf(l - logf(2.0f)) < 1e-6f); /* p was 0.5 */
    ck_assert_int_eq(ot_model_predict(m, ex, &p), OT_OK);
    ck_assert(p < 0.5f);
    ck_assert_int_eq(ot_example_set_weight(ex, 3.0f), OT_OK);
    ck_assert_int_eq(ot_model_learn(m, ex, &l2), OT_OK);
    ck_assert(fabsf(l2 - 3.0f * -logf(1.0f - p)) < 1e-5f);
    /* VW's initial prediction is added to the logit. */
    ot_model_destroy(m);
    m = model_new(NULL);
    ex->initial = 0.75f;
    ck_assert_int_eq(ot_model_predict(m, ex, &p), OT_OK);
    ck_assert(fabsf(p - (float)sigmoid(0.75)) < 1e-6f);
    ot_example_destroy(ex);
    ot_model_destroy(m);
}
END_TEST

Suite *suite_model(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_model_default_layout);
    tcase_add_test(tc, test_model_deep_layout_and_find);
    tcase_add_test(tc, test_model_fingerprint);
    tcase_add_test(tc, test_model_inconsistent_options);
    tcase_add_test(tc, test_model_gradient_wide_logistic);
    tcase_add_test(tc, test_model_gradient_wide_squared);
    tcase_add_test(tc, test_model_gradient_deep_logistic);
    tcase_add_test(tc, test_model_gradient_deep_squared);
    tcase_add_test(tc, test_model_gradient_embedding_linear);
    tcase_add_test(tc, test_model_gradient_covers_every_block);
    tcase_add_test(tc, test_model_sgd_matches_hand_computation);
    tcase_add_test(tc, test_model_adagrad_matches_hand_computation);
    tcase_add_test(tc, test_model_ftrl_matches_hand_computation);
    tcase_add_test(tc, test_model_ftrl_derive_recomputes_weights);
    tcase_add_test(tc, test_model_ftrl_l1_exact_zeros);
    tcase_add_test(tc, test_model_forward_matches_reference);
    tcase_add_test(tc, test_model_predict_batch_matches_single);
    tcase_add_test(tc, test_model_learn_batch_of_one_is_learn);
    tcase_add_test(tc, test_model_learn_batch_wide_is_sequential);
    tcase_add_test(tc, test_model_linalg_timing_counts_calls);
    tcase_add_test(tc, test_model_learns_linear_and_xor);
    tcase_add_test(tc, test_model_save_load_bit_identical);
    tcase_add_test(tc, test_model_weights_only_ftrl_keeps_weights);
    tcase_add_test(tc, test_model_load_rejects_damage);
    tcase_add_test(tc, test_model_load_other_shape);
    tcase_add_test(tc, test_model_clone_is_independent);
    tcase_add_test(tc, test_model_touched_rows);
    tcase_add_test(tc, test_model_no_alloc_per_example_wide);
    tcase_add_test(tc, test_model_no_alloc_per_example_deep);
    tcase_add_test(tc, test_model_out_of_memory);
    tcase_add_test(tc, test_model_predict_from_threads);
    tcase_add_test(tc, test_model_error_paths);
    tcase_add_test(tc, test_model_loss_is_before_update_and_weighted);
    suite_add_tcase(s, tc);
    return s;
}
