/*
 * cmd_train.c - `ot train`: a single-process learner with Vowpal Wabbit's
 * flags and progressive-validation output.
 *
 * Reporting (all to standard error unless --quiet):
 *  - a table line after 1, 2, 4, 8, ... examples: average loss so far, loss
 *    since the previous line, example counter, weight sum, the current
 *    label, prediction and feature count;
 *  - a summary at the end: examples, passes, average loss, holdout loss (when
 *    --holdout_every is given), AUC (logistic loss), examples per second.
 *
 * Losses are the loss of each example's prediction made before the model
 * learned from it (progressive validation), weighted by the example's
 * importance weight: logistic log(1 + exp(-y z)) with y = +1 for labels > 0
 * and -1 otherwise (for examples it learns from, the value ot_model_learn()
 * reports, from which the prediction is recovered as well); squared
 * (prediction - label)^2, as Vowpal Wabbit reports it (the library's own
 * squared loss is half of that).
 *
 * AUC is computed exactly from stored (prediction, label, weight) triples as
 * long as there are at most AUC_EXACT_MAX of them; past that the triples are
 * folded into a histogram of AUC_BINS bins over the logit in [-AUC_LOGIT,
 * AUC_LOGIT] (ties within a bin count half).  The summary says which.  The
 * examples used: with -t every example; with --holdout_every the held-out
 * examples of the last pass; otherwise the progressive predictions of the
 * first pass (made before each example was learned).
 *
 * Learning: with a wide-only model and logistic loss (without -t and -i) it
 * reads 64 examples at a time and learns runs of them with
 * ot_model_learn_batch(), which gives the results of ot_model_learn() one at
 * a time; every output is the same as learning one example at a time (see
 * train_pool).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ot.h"

/* ---- flags -------------------------------------------------------------------- */

enum {
    F_DATA = 1, F_FORMAT, F_BITS, F_QUAD, F_LOSS, F_OPT, F_RATE, F_POWER_T, F_L1, F_L2,
    F_FTRL_ALPHA, F_FTRL_BETA, F_PASSES, F_FINAL, F_INITIAL, F_TESTONLY, F_PREDS, F_HIDDEN,
    F_EMBED, F_HOLDOUT, F_SKIP_BAD, F_SEED, F_HASH, F_QUIET, F_OPTION, F_HELP
};

typedef struct train_flag {
    int id;
    const char *shrt, *lng, *metavar;
    int option; /* the library option the flag sets, 0 if none */
    const char *help;
} train_flag;

static const train_flag train_flags[] = {
    {F_DATA, "-d", "--data", "DATA", 0, "read examples from DATA (absent or \"-\": standard input; .gz ok)"},
    {F_FORMAT, NULL, "--format", "FMT", OT_OPT_FORMAT, "input format: vw (default) or libsvm"},
    {F_BITS, "-b", "--bit_precision", "BITS", OT_OPT_BITS, "log2 of the number of wide weights (default 18)"},
    {F_QUAD, "-q", "--quadratic", "AB", OT_OPT_QUADRATIC,
     "cross namespaces A and B (first letters); repeatable"},
    {F_LOSS, NULL, "--loss_function", "LOSS", OT_OPT_LOSS, "logistic (default) or squared"},
    {F_OPT, NULL, "--optimizer", "OPT", OT_OPT_OPTIMIZER, "sgd, adagrad or ftrl (default)"},
    {F_RATE, "-l", "--learning_rate", "RATE", OT_OPT_LEARNING_RATE,
     "learning rate of sgd and adagrad (ftrl uses --ftrl_alpha)"},
    {F_POWER_T, NULL, "--power_t", "X", OT_OPT_POWER_T, "sgd rate decay exponent"},
    {F_L1, NULL, "--l1", "X", OT_OPT_L1, "L1 regularisation strength"},
    {F_L2, NULL, "--l2", "X", OT_OPT_L2, "L2 regularisation strength"},
    {F_FTRL_ALPHA, NULL, "--ftrl_alpha", "X", OT_OPT_FTRL_ALPHA, "FTRL-Proximal alpha"},
    {F_FTRL_BETA, NULL, "--ftrl_beta", "X", OT_OPT_FTRL_BETA, "FTRL-Proximal beta"},
    {F_PASSES, NULL, "--passes", "N", 0, "passes over the data (default 1; more than 1 needs -d FILE)"},
    {F_FINAL, "-f", "--final_regressor", "MODEL", 0, "save the model (weights and optimizer state) to MODEL"},
    {F_INITIAL, "-i", "--initial_regressor", "MODEL", 0,
     "start from MODEL, saved with -f (its options replace the model flags; give the "
     "--loss_function it was trained with, for reporting)"},
    {F_TESTONLY, "-t", "--testonly", NULL, 0, "test only: predict and report losses, do not learn"},
    {F_PREDS, "-p", "--predictions", "PREDS", 0,
     "write one prediction per example (of the last pass), and its tag if any, to PREDS"},
    {F_HIDDEN, NULL, "--hidden", "WIDTHS", OT_OPT_HIDDEN_LAYERS, "hidden layer widths of a deep part, e.g. 64,32"},
    {F_EMBED, NULL, "--embed", "NS:DIM", OT_OPT_EMBEDDING,
     "embedding table of width DIM for namespace NS, input to the deep part; repeatable"},
    {F_HOLDOUT, NULL, "--holdout_every", "N", 0,
     "do not learn from every Nth example of each pass; report its loss as holdout loss"},
    {F_SKIP_BAD, NULL, "--skip-bad", NULL, OT_OPT_ON_ERROR, "skip malformed lines (default: stop with an error)"},
    {F_SEED, NULL, "--random_seed", "SEED", OT_OPT_SEED, "seed for hashing and initialisation"},
    {F_HASH, NULL, "--hash", "MODE", OT_OPT_HASH, "feature-name hashing: strings (default) or all"},
    {F_QUIET, NULL, "--quiet", NULL, 0, "print neither the progress table nor the summary"},
    {F_OPTION, "-O", "--option", "NAME=VALUE", 0, "set any library option (see `ot options`); repeatable"},
    {F_HELP, "-h", "--help", NULL, 0, "print this help"},
};

#define NTRAIN_FLAGS (sizeof(train_flags) / sizeof(train_flags[0]))

static void train_usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: ot train [FLAGS]\n\n"
               "Learns from examples in one pass or several, printing progressive validation\n"
               "(each example's loss before the model learns from it) as it goes.\n"
               "A flag's value follows it (\"-b 20\", \"--passes 3\") or is joined with '='\n"
               "(\"--passes=3\").\n\nflags:\n");
    for (i = 0; i < NTRAIN_FLAGS; i++) {
        const train_flag *t = &train_flags[i];
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s%s%s", t->shrt ? t->shrt : "", t->shrt ? ", " : "",
                 t->lng, t->metavar ? " " : "", t->metavar ? t->metavar : "");
        fprintf(f, "  %-30s %s\n", left, t->help);
    }
}

/* ---- AUC ------------------------------------------------------------------------ */

#define AUC_EXACT_MAX ((size_t)1 << 23)
#define AUC_BINS 65536
#define AUC_LOGIT 16.0

typedef struct auc_pair {
    float score;
    float wlabel; /* importance weight, negated for negative labels */
} auc_pair;

typedef struct auc_acc {
    auc_pair *pairs;
    size_t n, cap;
    double *hist;   /* AUC_BINS positive weights, then AUC_BINS negative weights */
    uint64_t count;
} auc_acc;

static void auc_free(auc_acc *a)
{
    free(a->pairs);
    free(a->hist);
    memset(a, 0, sizeof(*a));
}

static size_t auc_bin(float p)
{
    double z, lo = 1e-12;
    double q = p < lo ? lo : (p > 1.0 - lo ? 1.0 - lo : (double)p);
    long b;

    z = log(q / (1.0 - q));
    b = (long)floor((z + AUC_LOGIT) / (2.0 * AUC_LOGIT) * AUC_BINS);
    return (size_t)(b < 0 ? 0 : (b >= AUC_BINS ? AUC_BINS - 1 : b));
}

/* Returns 0, or -1 when out of memory. */
static int auc_add(auc_acc *a, float p, float label, float weight)
{
    float wl = label > 0.0f ? weight : -weight;

    if (!(weight > 0.0f))
        return 0;
    a->count++;
    if (a->hist == NULL && a->n == a->cap && a->cap < AUC_EXACT_MAX) {
        size_t ncap = a->cap ? a->cap * 2 : 4096;
        auc_pair *np = realloc(a->pairs, ncap * sizeof(*np));
        if (np == NULL)
            return -1;
        a->pairs = np;
        a->cap = ncap;
    }
    if (a->hist == NULL && a->n < a->cap) {
        a->pairs[a->n].score = p;
        a->pairs[a->n].wlabel = wl;
        a->n++;
        return 0;
    }
    if (a->hist == NULL) {
        size_t i;
        a->hist = calloc(2 * AUC_BINS, sizeof(double));
        if (a->hist == NULL)
            return -1;
        for (i = 0; i < a->n; i++) {
            size_t b = auc_bin(a->pairs[i].score);
            if (a->pairs[i].wlabel > 0)
                a->hist[b] += a->pairs[i].wlabel;
            else
                a->hist[AUC_BINS + b] -= a->pairs[i].wlabel;
        }
        free(a->pairs);
        a->pairs = NULL;
        a->n = a->cap = 0;
    }
    if (wl > 0)
        a->hist[auc_bin(p)] += wl;
    else
        a->hist[AUC_BINS + auc_bin(p)] -= wl;
    return 0;
}

static int cmp_pair(const void *x, const void *y)
{
    float a = ((const auc_pair *)x)->score, b = ((const auc_pair *)y)->score;
    return (a > b) - (a < b);
}

/* AUC over what was added, or NAN when there are not both classes. */
static double auc_value(auc_acc *a)
{
    double below = 0.0, num = 0.0, pos = 0.0, neg = 0.0;
    size_t i, j;

    if (a->hist != NULL) {
        for (i = 0; i < AUC_BINS; i++) {
            double pw = a->hist[i], nw = a->hist[AUC_BINS + i];
            num += pw * below + 0.5 * pw * nw;
            below += nw;
            pos += pw;
            neg += nw;
        }
    } else {
        qsort(a->pairs, a->n, sizeof(auc_pair), cmp_pair);
        for (i = 0; i < a->n; i = j) {
            double pw = 0.0, nw = 0.0;
            for (j = i; j < a->n && a->pairs[j].score == a->pairs[i].score; j++) {
                if (a->pairs[j].wlabel > 0)
                    pw += a->pairs[j].wlabel;
                else
                    nw -= a->pairs[j].wlabel;
            }
            num += pw * below + 0.5 * pw * nw;
            below += nw;
            pos += pw;
            neg += nw;
        }
    }
    return pos > 0.0 && neg > 0.0 ? num / (pos * neg) : NAN;
}

/* ---- the run ---------------------------------------------------------------------- */

typedef struct train_run {
    const char *data, *final_path, *initial_path, *preds_path;
    long passes, holdout_every;
    int testonly, quiet, squared;
    char model_flags[256]; /* model flags given alongside -i, for the note */
} train_run;

typedef struct train_stats {
    uint64_t examples;          /* every example read, all passes */
    double loss, weight;        /* progressive, over examples that counted */
    double last_loss, last_weight;
    uint64_t next_print;
    double hold_loss, hold_weight;
    uint64_t hold_count;
    int hold_pass;
} train_stats;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The loss of prediction p for an example with this label and weight. */
static double example_loss(int squared, float p, float label, float weight)
{
    double d;

    if (squared) {
        d = (double)p - (double)label;
        return d * d * weight;
    }
    /* p is sigmoid(z); log(1 + exp(-y z)) = -log(p) or -log(1 - p). */
    d = label > 0.0f ? (double)p : 1.0 - (double)p;
    return -log(d < 1e-15 ? 1e-15 : d) * weight;
}

static void print_header(void)
{
    fprintf(stderr, "%-10s %-10s %12s %12s %8s %8s %8s\n", "average", "since", "example",
            "example", "current", "current", "current");
    fprintf(stderr, "%-10s %-10s %12s %12s %8s %8s %8s\n", "loss", "last", "counter", "weight",
            "label", "predict", "features");
}

static void print_progress(train_stats *s, const ot_example *ex, int has_label, float p)
{
    double avg = s->weight > 0 ? s->loss / s->weight : 0.0;
    double since = s->weight > s->last_weight ? (s->loss - s->last_loss) / (s->weight - s->last_weight)
                                              : 0.0;
    char label[16];

    if (has_label)
        snprintf(label, sizeof(label), "%.4f", (double)ot_example_label(ex));
    else
        snprintf(label, sizeof(label), "unknown");
    fprintf(stderr, "%-10.6f %-10.6f %12llu %12.1f %8s %8.4f %8zu\n", avg, since,
            (unsigned long long)s->examples, s->weight, label, (double)p,
            ot_example_num_features(ex));
    s->last_loss = s->loss;
    s->last_weight = s->weight;
}

static int write_prediction(FILE *f, float p, const ot_example *ex)
{
    size_t tlen;
    const char *tag = ot_example_tag(ex, &tlen);

    if (fprintf(f, "%.6f", (double)p) < 0)
        return -1;
    if (tlen > 0 && (fputc(' ', f) == EOF || fwrite(tag, 1, tlen, f) != tlen))
        return -1;
    return fputc('\n', f) == EOF ? -1 : 0;
}

static int reader_fail(const char *path, const ot_reader *r, ot_status st)
{
    char what[512];
    const char *msg = ot_reader_errmsg(r);

    if (st == OT_EFORMAT && strstr(msg, "line ") == NULL)
        snprintf(what, sizeof(what), "%s: line %llu", path, (unsigned long long)ot_reader_line(r));
    else
        snprintf(what, sizeof(what), "%s", path);
    return ot_tool_fail(what, st, msg);
}

static int model_fail(const char *path, uint64_t line, const ot_model *m, ot_status st)
{
    char what[512];

    snprintf(what, sizeof(what), "%s: line %llu", path, (unsigned long long)line);
    return ot_tool_fail(what, st, ot_model_errmsg(m));
}

/* ---- batches ---------------------------------------------------------------------- */

/*
 * Examples are read TRAIN_BATCH at a time into a pool of examples created
 * once and refilled for every batch (nothing is allocated per example).  A
 * run of consecutive examples whose prediction is recovered from the loss
 * (see `derive` below) is learned with one ot_model_learn_batch() call; the
 * others one at a time, in order.  This is done only for a model with just a
 * wide part, for which ot_model_learn_batch() gives exactly what
 * ot_model_learn() gives on each example in order, so losses, predictions
 * and the saved model are the same as one example at a time.
 */
#define TRAIN_BATCH 64

typedef struct train_pool {
    ot_example *ex[TRAIN_BATCH];
    uint64_t line[TRAIN_BATCH]; /* the reader's line number after reading it */
    float loss[TRAIN_BATCH];
    unsigned char holdout[TRAIN_BATCH], learn[TRAIN_BATCH], derive[TRAIN_BATCH];
    size_t cap, n;              /* cap: TRAIN_BATCH when batching, else 1 */
} train_pool;

/* What the pass loop keeps between examples. */
typedef struct train_ctx {
    const train_run *run;
    const char *shown;
    train_stats *s;
    auc_acc *auc;
    FILE *preds;
    long pass;
    int last;
} train_ctx;

/*
 * Counts an example whose prediction p (and, when derived, loss) is known:
 * progressive or holdout loss, AUC, its prediction line, the table line.
 * Returns 0, or the exit status after printing why.
 */
static int account(train_ctx *c, const ot_example *ex, int holdout, int derive, float p, float loss)
{
    const train_run *run = c->run;
    train_stats *s = c->s;
    int has_label = ot_example_has_label(ex);
    float w = ot_example_weight(ex);

    s->examples++;
    if (has_label) {
        double l = derive ? (double)loss : example_loss(run->squared, p, ot_example_label(ex), w);
        int for_auc = run->testonly ? c->last : run->holdout_every > 0 ? holdout && c->last : c->pass == 1;
        if (holdout) {
            s->hold_loss += l;
            s->hold_weight += w;
            s->hold_count++;
        } else {
            s->loss += l;
            s->weight += w;
        }
        if (!run->squared && for_auc && auc_add(c->auc, p, ot_example_label(ex), w) != 0)
            return ot_tool_fail("auc", OT_ENOMEM, NULL);
    }
    if (c->preds != NULL && c->last && write_prediction(c->preds, p, ex) != 0)
        return ot_tool_fail(run->preds_path, OT_EIO, strerror(errno));
    if (s->examples == s->next_print) {
        if (!run->quiet)
            print_progress(s, ex, has_label, p);
        s->next_print *= 2;
    }
    return 0;
}

/* The prediction an example had before learning, from the loss learning
 * reported (logistic loss, weight > 0): p_y = exp(-loss / weight). */
static float derived_prediction(const ot_example *ex, float loss)
{
    double lw = (double)loss / (double)ot_example_weight(ex);

    return (float)(ot_example_label(ex) > 0.0f ? exp(-lw) : -expm1(-lw));
}

/* Predicts and learns pool example k on its own.  Returns 0 or the exit status. */
static int learn_single(train_ctx *c, ot_model *m, train_pool *pl, size_t k)
{
    const ot_example *ex = pl->ex[k];
    float p = 0.0f, loss = 0.0f;
    ot_status st;

    if (!pl->derive[k] && (st = ot_model_predict(m, ex, &p)) != OT_OK)
        return model_fail(c->shown, pl->line[k], m, st);
    if (pl->learn[k] && (st = ot_model_learn(m, ex, &loss)) != OT_OK)
        return model_fail(c->shown, pl->line[k], m, st);
    if (pl->derive[k])
        p = derived_prediction(ex, loss);
    return account(c, ex, pl->holdout[k], pl->derive[k], p, loss);
}

/* Learns and counts the pool's examples, in order.  Returns 0 or the exit status. */
static int learn_pool(train_ctx *c, ot_model *m, train_pool *pl)
{
    size_t i, j, k;
    int rc;

    for (i = 0; i < pl->n; i = j) {
        j = i + 1;
        if (pl->cap > 1 && pl->derive[i]) {
            while (j < pl->n && pl->derive[j])
                j++;
            if (j - i > 1 && ot_model_learn_batch(m, (const ot_example *const *)pl->ex + i, j - i,
                                                  pl->loss + i) == OT_OK) {
                for (k = i; k < j; k++)
                    if ((rc = account(c, pl->ex[k], 0, 1, derived_prediction(pl->ex[k], pl->loss[k]),
                                      pl->loss[k])) != 0)
                        return rc;
                continue;
            }
            /* A refused batch learned nothing: one at a time finds the
             * example and reports it as without batches. */
            j = i + 1;
        }
        if ((rc = learn_single(c, m, pl, i)) != 0)
            return rc;
    }
    return 0;
}

/* Runs the passes.  Returns the exit status. */
static int run_train(const train_run *run, ot_config *cfg, ot_model *m)
{
    const char *data = run->data != NULL ? run->data : "-";
    const char *shown = strcmp(data, "-") == 0 ? "standard input" : data;
    ot_reader *r = NULL;
    train_pool pool;
    train_ctx ctx;
    FILE *preds = NULL;
    train_stats s;
    auc_acc auc;
    uint64_t skipped = 0, per_pass = 0;
    double t0 = now_s(), elapsed;
    long pass;
    size_t i;
    int rc = 1;
    ot_status st;

    memset(&s, 0, sizeof(s));
    memset(&auc, 0, sizeof(auc));
    memset(&pool, 0, sizeof(pool));
    s.next_print = 1;
    /* Batches only where they change nothing (see train_pool): a wide-only
     * model, logistic loss, learning, no -i (derive below). */
    pool.cap = !run->squared && !run->testonly && run->initial_path == NULL && ot_tool_wide_only(m)
                   ? TRAIN_BATCH : 1;
    for (i = 0; i < pool.cap; i++)
        if ((st = ot_example_create(cfg, &pool.ex[i])) != OT_OK) {
            rc = ot_tool_fail("train", st, NULL);
            goto out;
        }
    if (run->preds_path != NULL) {
        preds = strcmp(run->preds_path, "-") == 0 ? stdout : fopen(run->preds_path, "w");
        if (preds == NULL) {
            rc = ot_tool_fail(run->preds_path, errno == ENOENT ? OT_ENOENT : OT_EIO, strerror(errno));
            goto out;
        }
    }
    ctx.run = run;
    ctx.shown = shown;
    ctx.s = &s;
    ctx.auc = &auc;
    ctx.preds = preds;
    if (!run->quiet)
        print_header();
    for (pass = 1; pass <= run->passes; pass++) {
        uint64_t n_in_pass = 0;

        ctx.pass = pass;
        ctx.last = pass == run->passes;
        if ((st = ot_reader_open_file(cfg, data, &r)) != OT_OK) {
            rc = ot_tool_fail(shown, st, ot_strerror(st));
            goto out;
        }
        s.hold_loss = s.hold_weight = 0.0;
        s.hold_count = 0;
        do {
            /* Fill the pool; a read error is reported after the examples
             * read before it are learned, as one at a time. */
            for (pool.n = 0; pool.n < pool.cap; pool.n++) {
                ot_example *ex = pool.ex[pool.n];
                size_t k = pool.n;
                int has_label;
                float w;

                if ((st = ot_reader_next(r, ex)) != OT_OK)
                    break;
                n_in_pass++;
                has_label = ot_example_has_label(ex);
                w = ot_example_weight(ex);
                pool.line[k] = ot_reader_line(r);
                pool.holdout[k] = !run->testonly && run->holdout_every > 0 &&
                                  n_in_pass % (uint64_t)run->holdout_every == 0;
                pool.learn[k] = has_label && !run->testonly && !pool.holdout[k];
                /* The prediction before learning.  With logistic loss,
                 * learn()'s loss gives it back (p_y = exp(-loss / weight)),
                 * which saves a second forward pass; otherwise predict()
                 * runs first.  Not with -i: the loaded model's loss is not
                 * known for certain. */
                pool.derive[k] = pool.learn[k] && !run->squared && w > 0.0f && run->initial_path == NULL;
            }
            if ((rc = learn_pool(&ctx, m, &pool)) != 0)
                goto out;
            rc = 1;
        } while (st == OT_OK);
        if (st != OT_EEOF) {
            rc = reader_fail(shown, r, st);
            goto out;
        }
        skipped += ot_reader_skipped(r);
        ot_reader_close(r);
        r = NULL;
        if (pass == 1)
            per_pass = n_in_pass;
        s.hold_pass = (int)pass;
    }
    elapsed = now_s() - t0;
    if (preds != NULL && preds != stdout) {
        int bad = fclose(preds) != 0;
        preds = NULL;
        if (bad) {
            rc = ot_tool_fail(run->preds_path, OT_EIO, strerror(errno));
            goto out;
        }
    } else if (preds == stdout && fflush(stdout) != 0) {
        rc = ot_tool_fail("standard output", OT_EIO, strerror(errno));
        goto out;
    }
    if (run->final_path != NULL &&
        (st = ot_model_save(m, run->final_path, OT_SAVE_WEIGHTS_AND_STATE)) != OT_OK) {
        rc = ot_tool_fail(run->final_path, st, ot_model_errmsg(m));
        goto out;
    }
    if (!run->quiet) {
        double a = run->squared ? NAN : auc_value(&auc);
        fprintf(stderr, "\nfinished run%s\n", run->testonly ? " (test only)" : "");
        fprintf(stderr, "number of examples = %llu\n", (unsigned long long)s.examples);
        fprintf(stderr, "examples per pass = %llu\n", (unsigned long long)per_pass);
        fprintf(stderr, "passes used = %ld\n", run->passes);
        fprintf(stderr, "weighted example sum = %.1f\n", s.weight);
        fprintf(stderr, "average loss = %.6f\n", s.weight > 0 ? s.loss / s.weight : 0.0);
        if (run->holdout_every > 0 && !run->testonly)
            fprintf(stderr, "holdout loss = %.6f (%llu examples of pass %d)\n",
                    s.hold_weight > 0 ? s.hold_loss / s.hold_weight : 0.0,
                    (unsigned long long)s.hold_count, s.hold_pass);
        if (!run->squared) {
            const char *over = run->testonly ? "every example"
                               : run->holdout_every > 0 ? "held-out examples of the last pass"
                                                        : "progressive predictions of pass 1";
            if (isnan(a))
                fprintf(stderr, "auc = n/a (needs both classes among the %s)\n", over);
            else
                fprintf(stderr, "auc = %.6f (%s over %llu %s)\n", a,
                        auc.hist != NULL ? "histogram of 65536 logit bins" : "exact",
                        (unsigned long long)auc.count, over);
        }
        if (skipped > 0)
            fprintf(stderr, "skipped bad lines = %llu\n", (unsigned long long)skipped);
        fprintf(stderr, "examples/s = %.0f (%.3f s)\n",
                elapsed > 0 ? (double)s.examples / elapsed : 0.0, elapsed);
        if (run->final_path != NULL)
            fprintf(stderr, "model saved to %s\n", run->final_path);
    }
    rc = 0;
out:
    if (preds != NULL && preds != stdout)
        fclose(preds);
    ot_reader_close(r);
    for (i = 0; i < pool.cap; i++)
        ot_example_destroy(pool.ex[i]);
    auc_free(&auc);
    return rc;
}

/* ---- flag parsing ---------------------------------------------------------------- */

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "ot: train: %s wants an integer in [%ld, %ld], got \"%s\"\n", flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Appends ",value" (or "value") to a list option. */
static int append_list(ot_config *cfg, int option, const char *flag, const char *value)
{
    const char *cur = "";
    char buf[1024];
    ot_status st;

    ot_config_get_str(cfg, option, &cur);
    if ((size_t)snprintf(buf, sizeof(buf), "%s%s%s", cur, *cur ? "," : "", value) >= sizeof(buf)) {
        fprintf(stderr, "ot: train: %s: list too long\n", flag);
        return -1;
    }
    if ((st = ot_config_set_str(cfg, option, buf)) != OT_OK) {
        ot_tool_fail(flag, st, ot_config_errmsg(cfg));
        return -1;
    }
    return 0;
}

static void note_model_flag(train_run *run, const char *flag)
{
    size_t n = strlen(run->model_flags);

    if (n + strlen(flag) + 3 < sizeof(run->model_flags))
        snprintf(run->model_flags + n, sizeof(run->model_flags) - n, "%s%s", n ? ", " : "", flag);
}

int ot_cmd_train(int argc, char **argv)
{
    train_run run;
    ot_config *cfg = NULL;
    ot_model *m = NULL;
    ot_status st;
    int a, rc = 2;

    memset(&run, 0, sizeof(run));
    run.passes = 1;
    if (ot_config_create(&cfg) != OT_OK)
        return ot_tool_fail("train", OT_ENOMEM, NULL);
    for (a = 1; a < argc; a++) {
        const char *arg = argv[a], *val = NULL, *eq = NULL;
        const train_flag *f = NULL;
        size_t j;

        for (j = 0; j < NTRAIN_FLAGS && f == NULL; j++) {
            const train_flag *t = &train_flags[j];
            size_t ll = strlen(t->lng);
            if (strncmp(arg, t->lng, ll) == 0 && (arg[ll] == '\0' || arg[ll] == '=')) {
                f = t;
                eq = arg[ll] == '=' ? arg + ll : NULL;
            } else if (t->shrt != NULL && strcmp(arg, t->shrt) == 0) {
                f = t;
            } else if (t->shrt != NULL && t->metavar != NULL && strncmp(arg, t->shrt, 2) == 0 &&
                       arg[2] != '\0') {
                f = t; /* "-b20": the value joined to a short flag */
                val = arg + 2;
            }
        }
        if (f == NULL) {
            fprintf(stderr, "ot: train: unknown flag \"%s\" (see `ot train --help`)\n", arg);
            goto out;
        }
        if (f->metavar != NULL && val == NULL) {
            if (eq != NULL)
                val = eq + 1;
            else if (a + 1 < argc)
                val = argv[++a];
            else {
                fprintf(stderr, "ot: train: %s needs a value (%s)\n", arg, f->metavar);
                goto out;
            }
        } else if (f->metavar == NULL && eq != NULL) {
            fprintf(stderr, "ot: train: %s takes no value\n", f->lng);
            goto out;
        }
        if (f->option >= 100 && f->option < 200)
            note_model_flag(&run, f->lng);
        switch (f->id) {
        case F_DATA: run.data = val; break;
        case F_PASSES:
            if (parse_long(f->lng, val, 1, 1000000, &run.passes) != 0)
                goto out;
            break;
        case F_FINAL: run.final_path = val; break;
        case F_INITIAL: run.initial_path = val; break;
        case F_TESTONLY: run.testonly = 1; break;
        case F_PREDS: run.preds_path = val; break;
        case F_HOLDOUT:
            if (parse_long(f->lng, val, 1, 1000000000, &run.holdout_every) != 0)
                goto out;
            break;
        case F_QUIET: run.quiet = 1; break;
        case F_HELP:
            train_usage(stdout);
            rc = 0;
            goto out;
        case F_SKIP_BAD:
            if ((st = ot_config_set_str(cfg, OT_OPT_ON_ERROR, "skip")) != OT_OK) {
                rc = ot_tool_fail(f->lng, st, ot_config_errmsg(cfg)) + 1;
                goto out;
            }
            break;
        case F_OPTION: {
            int id;
            const char *e = strchr(val, '=');
            char name[128];
            if (ot_tool_set_option(cfg, val) != 0)
                goto out;
            if (e != NULL && (size_t)(e - val) < sizeof(name)) {
                memcpy(name, val, (size_t)(e - val));
                name[e - val] = '\0';
                if (ot_option_by_name(name, &id) == OT_OK && id >= 100 && id < 200)
                    note_model_flag(&run, name);
            }
            break;
        }
        case F_QUAD:
        case F_EMBED:
            if (append_list(cfg, f->option, f->lng, val) != 0)
                goto out;
            break;
        default:
            if ((st = ot_config_set_text(cfg, f->option, val)) != OT_OK) {
                rc = ot_tool_fail(f->lng, st, ot_config_errmsg(cfg)) + 1;
                goto out;
            }
            break;
        }
    }
    {
        const char *loss = "logistic";
        ot_config_get_str(cfg, OT_OPT_LOSS, &loss);
        run.squared = strcmp(loss, "squared") == 0;
    }
    if (run.passes > 1 && (run.data == NULL || strcmp(run.data, "-") == 0)) {
        fprintf(stderr, "ot: train: --passes %ld needs a file (-d FILE): standard input cannot be re-read\n",
                run.passes);
        goto out;
    }
    if ((st = ot_config_validate(cfg)) != OT_OK) {
        rc = ot_tool_fail("options", st, ot_config_errmsg(cfg)) + 1;
        goto out;
    }
    if (run.initial_path != NULL) {
        if ((st = ot_model_load(cfg, run.initial_path, &m)) != OT_OK) {
            rc = ot_tool_fail(run.initial_path, st, ot_strerror(st));
            goto out;
        }
        if (run.model_flags[0] != '\0' && !run.quiet)
            fprintf(stderr, "ot: train: note: the model's options come from %s, so %s do not "
                            "change it (--loss_function still sets how losses are reported)\n",
                    run.initial_path, run.model_flags);
    } else if ((st = ot_model_create(cfg, &m)) != OT_OK) {
        const char *why = ot_config_errmsg(cfg);
        if (*why == '\0' && st == OT_EINVAL)
            why = "the model options do not fit together (--hidden needs --embed or -O dense_dim=N)";
        rc = ot_tool_fail("model", st, why) + (st == OT_EINVAL);
        goto out;
    }
    rc = run_train(&run, cfg, m);
out:
    ot_model_destroy(m);
    ot_config_destroy(cfg);
    return rc;
}
