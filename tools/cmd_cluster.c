/*
 * cmd_cluster.c - `ot cluster`: a parameter server, N trainers and M
 * predictors in one process, talking over nng (inproc:// by default).
 *
 * One feeder thread reads the stream (a VW/libsvm file, or the built-in
 * generator of tools/gen.h) and deals it round-robin: example i goes to
 * trainer i mod N, in batches through a small bounded queue per trainer.
 * Each trainer runs on its own thread (a trainer object is used by that
 * thread only).  For each example, before it is learned:
 *
 *   served loss   predictor (i mod M) scores it: progressive validation of
 *                 what the predictors serve;
 *   trainer loss  the loss ot_trainer_learn() reports, the trainer's own
 *                 prediction before its update.
 *
 * A trainer with a wide-only model learns each queue slot (up to 64
 * examples) with one ot_trainer_learn_batch(): the same results and syncs as
 * one at a time; a deep model learns one example at a time.
 *
 * Both are the library's losses (docs/models.md): logistic log(1 + e^-yz),
 * squared 0.5 (z - y)^2, times the importance weight.  Examples without a
 * label are skipped (and counted).
 *
 * The main thread prints a table line when the examples learned have
 * doubled since the previous line (the first after 1000), or every
 * --print-ms milliseconds when that is given, and a summary line at the
 * end.  Byte figures are per predictor:
 * what the server published (every subscriber receives each message).  The
 * comparison "full only" is what sending a full update every real-time
 * interval would have cost: the number of real-time intervals elapsed times
 * the size of one full copy (measured as the bytes trainer 1 loaded when it
 * connected).
 *
 * Freshness: the main thread samples, every 10 ms, the master version and
 * each predictor's served version.  "lag" is the master version minus the
 * oldest served version; "staleness" is how long ago the master first moved
 * past that served version (known to the 10 ms sampling period).
 *
 * The model's delta_source defaults by optimizer (unless set with
 * --option): "state" for ftrl (trainers exchange z and n, from which the
 * weights follow), "both" for adagrad, "weights" for sgd.
 *
 * --csv FILE writes the same figures as a time series, one row every
 * --csv-ms milliseconds and one at the end (after the last sync, before the
 * final update), with a header row:
 *
 *   time_s        seconds since the server started
 *   examples      examples learned and scored so far
 *   train_loss    trainers' progressive loss over the examples since the
 *   served_loss   previous row, and the served loss over the same examples
 *                 (empty when no example came in between)
 *   rt_updates, full_updates   updates published so far
 *   rt_bytes, full_bytes       bytes published so far to each predictor,
 *                              by kind
 *   fullonly_bytes             a full copy every real-time interval instead
 *   master_version, served_version   the master's and the oldest served
 *   lag_ver, stale_ms                version, and freshness as above
 *
 * --freshness-csv FILE writes every freshness sample (time_s, lag_ver,
 * stale_ms), one per main-loop tick (about 10 ms).  Either file may be
 * "-" for standard output (with -q, so the table does not interleave).
 *
 * Exit status: 0; 1 when the stream could not be read, the model refused
 * an example, a prediction failed or a trainer's final sync failed (a sync
 * that fails during the run keeps its delta for the next one and is only
 * reported); 2 for bad flags or options.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gen.h"
#include "ot.h"

#define CL_BATCH 64      /* examples per queue slot */
#define CL_QDEPTH 4      /* slots per trainer queue */
#define CL_MAX_WORKERS 64
#define CL_FIRST_PRINT 1000

/* ---- flags ---------------------------------------------------------------------- */

enum {
    C_TRAINERS = 1, C_PREDICTORS, C_DATA, C_EXAMPLES, C_NAMESPACES, C_IDS, C_ZIPF, C_DRIFT,
    C_SEED, C_RT_MS, C_FULL_MS, C_RT_THRESHOLD, C_SYNC_EVERY, C_BITS, C_OPTIMIZER, C_OPTION,
    C_FULL_ONLY, C_URL_BASE, C_PRINT_MS, C_SECONDS, C_CSV, C_CSV_MS, C_FRESH_CSV, C_QUIET, C_HELP
};

typedef struct cl_flag {
    int id;
    const char *shrt, *lng, *metavar, *help;
} cl_flag;

static const cl_flag cl_flags[] = {
    {C_TRAINERS, "-n", "--trainers", "N", "training workers, each on its own thread (default 4)"},
    {C_PREDICTORS, "-m", "--predictors", "M", "prediction workers (default 2)"},
    {C_DATA, "-d", "--data", "FILE", "read examples from FILE (\"-\": standard input; .gz ok) "
                                     "instead of the generator"},
    {C_EXAMPLES, NULL, "--examples", "N", "generator: examples to draw (default 1000000)"},
    {C_NAMESPACES, NULL, "--namespaces", "K", "generator: namespaces per example (default 20)"},
    {C_IDS, NULL, "--ids", "M", "generator: vocabulary per namespace (default 100000)"},
    {C_ZIPF, NULL, "--zipf", "S", "generator: Zipf exponent of id popularity (default 1.1)"},
    {C_DRIFT, NULL, "--drift", "R", "generator: fraction of hidden weights re-drawn every 1000 "
                                    "examples (default 0)"},
    {C_SEED, NULL, "--seed", "SEED", "generator: random seed (default 1)"},
    {C_RT_MS, NULL, "--rt-ms", "MS", "real-time update interval (option rt_interval_ms, default 100)"},
    {C_FULL_MS, NULL, "--full-ms", "MS", "full update interval (option full_interval_ms, default 10000)"},
    {C_RT_THRESHOLD, NULL, "--rt-threshold", "X", "smallest change a real-time update sends "
                                                  "(option rt_threshold, default 1e-4)"},
    {C_SYNC_EVERY, NULL, "--sync-every", "N", "a trainer syncs after N examples (option "
                                              "sync_every_examples, default 250)"},
    {C_BITS, "-b", "--bits", "BITS", "log2 of the number of wide weights (option bits, default 18)"},
    {C_OPTIMIZER, NULL, "--optimizer", "OPT", "sgd, adagrad or ftrl (default)"},
    {C_OPTION, "-O", "--option", "NAME=VALUE", "set any library option (see `ot options`); repeatable"},
    {C_FULL_ONLY, NULL, "--full-only", NULL, "publish full updates only (no real-time updates), "
                                             "for comparison"},
    {C_URL_BASE, NULL, "--url-base", "URL", "where the server listens: inproc://NAME (default), "
                                            "ipc://PATH (NAME/PATH + -trainers, -predictors), "
                                            "tcp://HOST[:PORT] (PORT and PORT+1; none: free "
                                            "ports), or just inproc, ipc, tcp"},
    {C_PRINT_MS, NULL, "--print-ms", "MS", "print a table line every MS milliseconds "
                                           "(default: at every doubling of the examples)"},
    {C_SECONDS, NULL, "--seconds", "S", "stop reading the stream after S seconds (default: no limit)"},
    {C_CSV, NULL, "--csv", "FILE", "write a time series to FILE: a CSV row every --csv-ms with the "
                                   "losses, updates, bytes by kind and freshness"},
    {C_CSV_MS, NULL, "--csv-ms", "MS", "period of the --csv rows (default 500)"},
    {C_FRESH_CSV, NULL, "--freshness-csv", "FILE", "write every freshness sample (one per 10 ms) "
                                                   "to FILE as CSV"},
    {C_QUIET, "-q", "--quiet", NULL, "print only the summary line"},
    {C_HELP, "-h", "--help", NULL, "print this help"},
};

#define NCL_FLAGS (sizeof(cl_flags) / sizeof(cl_flags[0]))

static void cluster_usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: ot cluster [FLAGS]\n\n"
               "Runs a parameter server, N trainers (threads) and M predictors in one process.\n"
               "The trainers share the stream round-robin; before each example is learned a\n"
               "predictor scores it, so the table compares the trainers' progressive loss with\n"
               "the loss of what the predictors serve, and shows the bytes the real-time and\n"
               "full updates cost against full updates at every real-time interval.\n"
               "A flag's value follows it (\"-n 4\") or is joined with '=' (\"--rt-ms=50\").\n\n"
               "flags:\n");
    for (i = 0; i < NCL_FLAGS; i++) {
        const cl_flag *c = &cl_flags[i];
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s%s%s", c->shrt ? c->shrt : "", c->shrt ? ", " : "",
                 c->lng, c->metavar ? " " : "", c->metavar ? c->metavar : "");
        fprintf(f, "  %-26s %s\n", left, c->help);
    }
}

/* ---- shared state --------------------------------------------------------------- */

typedef struct cl_slot {
    size_t n;
    uint64_t index[CL_BATCH]; /* stream position of each example */
    ot_example *ex[CL_BATCH];
} cl_slot;

/* One trainer: its queue (filled by the feeder) and its running sums. */
typedef struct cl_worker {
    struct cl_run *run;
    int id; /* 0-based */
    ot_trainer *tr;
    pthread_t thread;
    int started;

    pthread_mutex_t mu;
    pthread_cond_t cv;     /* signalled on push, pop and close */
    cl_slot slot[CL_QDEPTH];
    size_t head, tail;     /* slots [head, tail) are full */
    int closed;            /* the feeder will push no more */

    /* under mu: sums since the start */
    uint64_t examples;
    double train_loss, served_loss, weight;
    uint64_t learn_errors, predict_errors, sync_errors;
    char last_error[256];
    int final_sync_failed;
    int done;
} cl_worker;

typedef struct cl_run {
    ot_config *cfg;
    int squared;
    int ntrainers, npredictors;
    cl_worker *w;
    ot_predictor **pred;
    /* the stream */
    const char *data;
    otg *gen;
    uint64_t examples_max;
    double seconds;
    /* feeder results */
    pthread_t feeder;
    uint64_t fed, unlabeled;
    int feed_status;       /* 0, or 1 when reading failed */
    char feed_error[512];
} cl_run;

static volatile sig_atomic_t cl_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    cl_interrupted = 1;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !cl_interrupted)
        ;
}

/* The loss of prediction p (probability or value) for a labelled example. */
static double served_loss(int squared, float p, float label, float weight)
{
    double d;

    if (squared) {
        d = (double)p - (double)label;
        return 0.5 * d * d * weight;
    }
    d = label > 0.0f ? (double)p : 1.0 - (double)p;
    return -log(d < 1e-15 ? 1e-15 : d) * weight;
}

/* ---- the trainers ------------------------------------------------------------------ */

static void *trainer_main(void *arg)
{
    cl_worker *w = arg;
    cl_run *run = w->run;
    int batch = ot_tool_wide_only(ot_trainer_model(w->tr));

    for (;;) {
        cl_slot *s;
        double tl = 0.0, sl = 0.0, wt = 0.0;
        uint64_t lerr = 0, perr = 0, serr = 0;
        char err[256] = "";
        const ot_example *ok[CL_BATCH];
        float pred[CL_BATCH], loss[CL_BATCH];
        size_t i, nok = 0;
        int learned;

        pthread_mutex_lock(&w->mu);
        while (w->head == w->tail && !w->closed)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->head == w->tail) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        s = &w->slot[w->head % CL_QDEPTH];
        pthread_mutex_unlock(&w->mu);

        /* Served predictions of the whole slot first, then learning: a sync
         * made while learning the slot can no longer reach the predictors
         * before the slot's later examples are scored, so served scores may
         * lag by up to one slot more than when predicting and learning
         * alternate (publishes arrive asynchronously in either case). */
        for (i = 0; i < s->n; i++) {
            ot_predictor *p = run->pred[s->index[i] % (uint64_t)run->npredictors];
            ot_status st = ot_predictor_predict(p, s->ex[i], &pred[nok]);
            if (st != OT_OK) {
                perr++;
                snprintf(err, sizeof(err), "predict: %s: %s", ot_status_name(st),
                         ot_predictor_errmsg(p));
                continue;
            }
            ok[nok++] = s->ex[i];
        }
        /* A wide-only model learns the slot as one batch (the same results
         * as one at a time; syncs at the same examples).  A refused batch
         * learned nothing: then one at a time, as for a deep model. */
        learned = 0;
        if (batch && nok > 1) {
            double before = 0.0, after = 0.0;
            ot_status st;
            (void)ot_trainer_stat(w->tr, "examples", &before);
            st = ot_trainer_learn_batch(w->tr, ok, nok, loss);
            (void)ot_trainer_stat(w->tr, "examples", &after);
            learned = st == OT_OK || !(st == OT_EINVAL && after == before);
            if (st != OT_OK && learned) {
                snprintf(err, sizeof(err), "sync: %s: %s", ot_status_name(st), ot_trainer_errmsg(w->tr));
                serr++;
            }
        }
        for (i = 0; i < nok; i++) {
            const ot_example *ex = ok[i];
            float label = ot_example_label(ex), weight = ot_example_weight(ex);

            if (!learned) {
                ot_status st = ot_trainer_learn(w->tr, ex, &loss[i]);
                if (st != OT_OK) {
                    /* OT_EINVAL: the model refused the example.  Anything
                     * else is a failed sync: the example was learned, and
                     * the delta is kept for the next sync. */
                    snprintf(err, sizeof(err), "%s: %s: %s", st == OT_EINVAL ? "learn" : "sync",
                             ot_status_name(st), ot_trainer_errmsg(w->tr));
                    if (st == OT_EINVAL) {
                        lerr++;
                        continue;
                    }
                    serr++;
                }
            }
            tl += loss[i];
            sl += served_loss(run->squared, pred[i], label, weight);
            wt += weight;
        }

        pthread_mutex_lock(&w->mu);
        w->examples += s->n - lerr - perr; /* the examples learned and scored */
        w->train_loss += tl;
        w->served_loss += sl;
        w->weight += wt;
        w->learn_errors += lerr;
        w->predict_errors += perr;
        w->sync_errors += serr;
        if (err[0])
            memcpy(w->last_error, err, sizeof(err));
        w->head++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    /* Send what is left, so the master holds every example. */
    {
        ot_status st = ot_trainer_sync(w->tr);
        pthread_mutex_lock(&w->mu);
        if (st != OT_OK) {
            w->final_sync_failed = 1;
            snprintf(w->last_error, sizeof(w->last_error), "final sync: %s: %s",
                     ot_status_name(st), ot_trainer_errmsg(w->tr));
        }
        w->done = 1;
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

/* ---- the feeder ---------------------------------------------------------------------- */

/* Waits for a free slot in w's queue; returns it (owned by the feeder until pushed). */
static cl_slot *slot_to_fill(cl_worker *w)
{
    cl_slot *s;

    pthread_mutex_lock(&w->mu);
    while (w->tail - w->head >= CL_QDEPTH)
        pthread_cond_wait(&w->cv, &w->mu);
    s = &w->slot[w->tail % CL_QDEPTH];
    pthread_mutex_unlock(&w->mu);
    return s;
}

static void slot_push(cl_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->tail++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void queue_close(cl_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->closed = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void *feeder_main(void *arg)
{
    cl_run *run = arg;
    cl_slot *fill[CL_MAX_WORKERS];
    ot_reader *r = NULL;
    otg_sample gs;
    double t_end = run->seconds > 0 ? now_s() + run->seconds : 0.0;
    uint64_t i = 0;
    int t;

    for (t = 0; t < run->ntrainers; t++) {
        fill[t] = slot_to_fill(&run->w[t]);
        fill[t]->n = 0;
    }
    if (run->data != NULL) {
        ot_status st = ot_reader_open_file(run->cfg, run->data, &r);
        if (st != OT_OK) {
            snprintf(run->feed_error, sizeof(run->feed_error), "%s: %s: %s", run->data,
                     ot_status_name(st), ot_strerror(st));
            run->feed_status = 1;
            goto close;
        }
    }
    for (;;) {
        cl_worker *w;
        cl_slot *s;
        ot_example *ex;

        if (cl_interrupted || (run->gen != NULL && i >= run->examples_max))
            break;
        if (t_end > 0 && (i % 1024) == 0 && now_s() >= t_end)
            break;
        w = &run->w[i % (uint64_t)run->ntrainers];
        s = fill[w->id];
        ex = s->ex[s->n];
        if (r != NULL) {
            ot_status st = ot_reader_next(r, ex);
            if (st == OT_EEOF)
                break;
            if (st != OT_OK) {
                snprintf(run->feed_error, sizeof(run->feed_error), "%s: line %llu: %s: %s",
                         run->data, (unsigned long long)ot_reader_line(r), ot_status_name(st),
                         ot_reader_errmsg(r));
                run->feed_status = 1;
                break;
            }
            if (!ot_example_has_label(ex)) {
                run->unlabeled++;
                continue;
            }
        } else {
            otg_next(run->gen, &gs);
            if (otg_fill_example(run->gen, &gs, ex) != OT_OK) {
                snprintf(run->feed_error, sizeof(run->feed_error), "generator: out of memory");
                run->feed_status = 1;
                break;
            }
        }
        s->index[s->n++] = i++;
        if (s->n == CL_BATCH) {
            slot_push(w);
            fill[w->id] = slot_to_fill(w);
            fill[w->id]->n = 0;
        }
    }
    run->fed = i;
close:
    for (t = 0; t < run->ntrainers; t++) {
        if (fill[t]->n > 0)
            slot_push(&run->w[t]);
        queue_close(&run->w[t]);
    }
    ot_reader_close(r);
    return NULL;
}

/* ---- reporting ------------------------------------------------------------------------ */

typedef struct cl_sums {
    uint64_t examples, learn_errors, predict_errors, sync_errors;
    int final_sync_failed;
    double train_loss, served_loss, weight;
    int done;
} cl_sums;

static void sum_workers(cl_run *run, cl_sums *s)
{
    int t;

    memset(s, 0, sizeof(*s));
    s->done = 1;
    for (t = 0; t < run->ntrainers; t++) {
        cl_worker *w = &run->w[t];
        pthread_mutex_lock(&w->mu);
        s->examples += w->examples;
        s->train_loss += w->train_loss;
        s->served_loss += w->served_loss;
        s->weight += w->weight;
        s->learn_errors += w->learn_errors;
        s->predict_errors += w->predict_errors;
        s->sync_errors += w->sync_errors;
        s->final_sync_failed |= w->final_sync_failed;
        s->done &= w->done;
        pthread_mutex_unlock(&w->mu);
    }
}

static double ps_stat(const ot_param_server *ps, const char *name)
{
    double v = 0.0;

    (void)ot_param_server_stat(ps, name, &v);
    return v;
}

/* When the master first reached a version (sampled by the main thread). */
typedef struct cl_vtime {
    uint64_t version;
    double t;
} cl_vtime;

typedef struct cl_report {
    double t0;          /* when the server started */
    double rt_ms;       /* the real-time interval the comparison uses */
    double full_copy;   /* bytes of one full copy */
    cl_sums last;       /* at the previous line */
    cl_vtime *hist;     /* master versions in increasing order, with first-seen times */
    size_t nhist, hist_cap;
    /* freshness samples (one per main-loop tick) */
    uint64_t lag_now, lag_max;
    double stale_now, stale_max, lag_sum, stale_sum;
    uint64_t samples;
    uint64_t oldest_now; /* the oldest served version at the last sample */
    /* --csv and --freshness-csv */
    FILE *csv, *fresh;
    double csv_ms;
    cl_sums csv_last; /* sums at the previous --csv row */
    int csv_failed, fresh_failed;
} cl_report;

typedef struct cl_pubstats {
    double rt, full, bytes, baseline;
    double values; /* values carried by real-time updates */
} cl_pubstats;

static void pub_stats(const ot_param_server *ps, const cl_report *rep, double t, cl_pubstats *o)
{
    double intervals = floor((t - rep->t0) * 1000.0 / rep->rt_ms);

    o->rt = ps_stat(ps, "rt_updates");
    o->full = ps_stat(ps, "full_updates");
    o->bytes = ps_stat(ps, "rt_bytes") + ps_stat(ps, "full_bytes");
    o->values = ps_stat(ps, "rt_entries");
    o->baseline = intervals * rep->full_copy;
}

/*
 * Samples freshness now: the version lag (master version minus the oldest
 * served version) and the staleness (how long ago the master first moved
 * past the oldest served version; 0 when it serves the master's version).
 * The master's versions are sampled here too, so staleness is known to
 * the sampling period (the main loop's 10 ms).
 */
static void sample_freshness(const cl_run *run, const ot_param_server *ps, cl_report *rep)
{
    uint64_t master = ot_param_server_version(ps), oldest = master;
    double t = now_s(), stale = 0.0;
    size_t lo, hi;
    int j;

    if (rep->nhist == 0 || rep->hist[rep->nhist - 1].version < master) {
        if (rep->nhist == rep->hist_cap) {
            size_t ncap = rep->hist_cap ? 2 * rep->hist_cap : 1024;
            cl_vtime *n = realloc(rep->hist, ncap * sizeof(*n));
            if (n != NULL) {
                rep->hist = n;
                rep->hist_cap = ncap;
            }
        }
        if (rep->nhist < rep->hist_cap) {
            rep->hist[rep->nhist].version = master;
            rep->hist[rep->nhist].t = t;
            rep->nhist++;
        }
    }
    for (j = 0; j < run->npredictors; j++) {
        uint64_t v = ot_predictor_version(run->pred[j]);
        if (v < oldest)
            oldest = v;
    }
    /* the first sample with a version above the oldest served one */
    lo = 0;
    hi = rep->nhist;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rep->hist[mid].version <= oldest)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < rep->nhist)
        stale = (t - rep->hist[lo].t) * 1000.0;
    rep->lag_now = master - oldest;
    rep->stale_now = stale;
    rep->oldest_now = oldest;
    if (rep->fresh != NULL &&
        fprintf(rep->fresh, "%.3f,%llu,%.0f\n", t - rep->t0, (unsigned long long)rep->lag_now,
                stale) < 0)
        rep->fresh_failed = 1;
    if (rep->lag_now > rep->lag_max)
        rep->lag_max = rep->lag_now;
    if (stale > rep->stale_max)
        rep->stale_max = stale;
    rep->lag_sum += (double)rep->lag_now;
    rep->stale_sum += stale;
    rep->samples++;
}

static void print_header(void)
{
    printf("%10s %7s %10s %10s %6s %5s %9s %11s %7s %7s %8s\n", "examples", "time_s",
           "train_loss", "served_los", "rt_upd", "full", "pred_MB", "fullonly_MB", "ratio",
           "lag_ver", "stale_ms");
}

static void print_line(const ot_param_server *ps, cl_report *rep, const cl_sums *s)
{
    double t = now_s(), dw = s->weight - rep->last.weight;
    double tl = dw > 0 ? (s->train_loss - rep->last.train_loss) / dw : 0.0;
    double sl = dw > 0 ? (s->served_loss - rep->last.served_loss) / dw : 0.0;
    char ratio[32];
    cl_pubstats p;

    pub_stats(ps, rep, t, &p);
    /* The ratio means something once a weight has been sent. */
    if (p.values > 0 || p.full > 0)
        snprintf(ratio, sizeof(ratio), "%.1fx", p.baseline / p.bytes);
    else
        snprintf(ratio, sizeof(ratio), "-");
    printf("%10llu %7.1f %10.6f %10.6f %6.0f %5.0f %9.2f %11.1f %7s %7llu %8.0f\n",
           (unsigned long long)s->examples, t - rep->t0, tl, sl, p.rt, p.full, p.bytes / 1e6,
           p.baseline / 1e6, ratio, (unsigned long long)rep->lag_now, rep->stale_now);
    fflush(stdout);
    rep->last = *s;
}

static void csv_header(cl_report *rep)
{
    if (fprintf(rep->csv, "time_s,examples,train_loss,served_loss,rt_updates,full_updates,"
                          "rt_bytes,full_bytes,fullonly_bytes,master_version,served_version,"
                          "lag_ver,stale_ms\n") < 0)
        rep->csv_failed = 1;
}

/* One --csv row: losses since the previous row, everything else so far. */
static void csv_row(const ot_param_server *ps, cl_report *rep, const cl_sums *s)
{
    double t = now_s(), dw = s->weight - rep->csv_last.weight;
    char tl[32] = "", sl[32] = "";
    cl_pubstats p;

    pub_stats(ps, rep, t, &p);
    if (dw > 0) {
        snprintf(tl, sizeof(tl), "%.6f", (s->train_loss - rep->csv_last.train_loss) / dw);
        snprintf(sl, sizeof(sl), "%.6f", (s->served_loss - rep->csv_last.served_loss) / dw);
    }
    if (fprintf(rep->csv, "%.3f,%llu,%s,%s,%.0f,%.0f,%.0f,%.0f,%.0f,%llu,%llu,%llu,%.0f\n",
                t - rep->t0, (unsigned long long)s->examples, tl, sl, p.rt, p.full,
                ps_stat(ps, "rt_bytes"), ps_stat(ps, "full_bytes"), p.baseline,
                (unsigned long long)(rep->oldest_now + rep->lag_now),
                (unsigned long long)rep->oldest_now, (unsigned long long)rep->lag_now,
                rep->stale_now) < 0)
        rep->csv_failed = 1;
    rep->csv_last = *s;
}

/* Opens a --csv or --freshness-csv file ("-": standard output). */
static FILE *csv_open(const char *flag, const char *path)
{
    FILE *f;

    if (strcmp(path, "-") == 0)
        return stdout;
    f = fopen(path, "w");
    if (f == NULL)
        fprintf(stderr, "ot: cluster: %s %s: %s\n", flag, path, strerror(errno));
    return f;
}

/* Closes a file csv_open() gave; returns nonzero (and says so) if writing failed. */
static int csv_close(FILE *f, const char *path, int failed)
{
    if (f == NULL)
        return 0;
    if (f == stdout)
        failed |= fflush(f) != 0;
    else
        failed |= fclose(f) != 0;
    if (failed)
        fprintf(stderr, "ot: cluster: cannot write %s\n", path);
    return failed;
}

/* ---- setting up ---------------------------------------------------------------------- */

/* Trainer and predictor URLs from --url-base. */
static int make_urls(const char *base, char *tu, char *pu, size_t n, char *ipc0, char *ipc1)
{
    const char *tmp = getenv("TMPDIR");
    long pid = (long)getpid();

    ipc0[0] = ipc1[0] = '\0';
    if (tmp == NULL || *tmp == '\0')
        tmp = "/tmp";
    if (base == NULL || strcmp(base, "inproc") == 0) {
        snprintf(tu, n, "inproc://ot-cluster-%ld-trainers", pid);
        snprintf(pu, n, "inproc://ot-cluster-%ld-predictors", pid);
    } else if (strcmp(base, "ipc") == 0) {
        snprintf(tu, n, "ipc://%s/ot-cluster-%ld-trainers", tmp, pid);
        snprintf(pu, n, "ipc://%s/ot-cluster-%ld-predictors", tmp, pid);
    } else if (strcmp(base, "tcp") == 0) {
        snprintf(tu, n, "tcp://127.0.0.1:0");
        snprintf(pu, n, "tcp://127.0.0.1:0");
    } else if (strncmp(base, "inproc://", 9) == 0 || strncmp(base, "ipc://", 6) == 0) {
        snprintf(tu, n, "%s-trainers", base);
        snprintf(pu, n, "%s-predictors", base);
    } else if (strncmp(base, "tcp://", 6) == 0) {
        const char *host = base + 6, *colon = strrchr(host, ':');
        char *end;
        long port;
        if (colon == NULL || strchr(colon, ']') != NULL) {
            snprintf(tu, n, "%s:0", base);
            snprintf(pu, n, "%s:0", base);
        } else {
            errno = 0;
            port = strtol(colon + 1, &end, 10);
            if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 || port > 65534) {
                fprintf(stderr, "ot: cluster: bad port in --url-base \"%s\"\n", base);
                return -1;
            }
            snprintf(tu, n, "%.*s:%ld", (int)(colon - base), base, port);
            snprintf(pu, n, "%.*s:%ld", (int)(colon - base), base, port ? port + 1 : 0);
        }
    } else {
        fprintf(stderr, "ot: cluster: --url-base wants inproc://, ipc:// or tcp://, got \"%s\"\n",
                base);
        return -1;
    }
    if (strncmp(tu, "ipc://", 6) == 0) {
        snprintf(ipc0, n, "%s", tu + 6);
        snprintf(ipc1, n, "%s", pu + 6);
    }
    return 0;
}

static int parse_whole(const char *flag, const char *s, double lo, double hi, double *out)
{
    if (ot_tool_parse_double("cluster", flag, s, lo, hi, out) != 0)
        return -1;
    if (*out != floor(*out)) {
        fprintf(stderr, "ot: cluster: %s wants a whole number, got \"%s\"\n", flag, s);
        return -1;
    }
    return 0;
}

/* Sets an option from a flag's text; prints the error and returns nonzero if refused. */
static int set_text(ot_config *cfg, int option, const char *flag, const char *val)
{
    ot_status st = ot_config_set_text(cfg, option, val);

    if (st != OT_OK) {
        ot_tool_fail(flag, st, ot_config_errmsg(cfg));
        return -1;
    }
    return 0;
}

/* ---- the command ---------------------------------------------------------------------- */

int ot_cmd_cluster(int argc, char **argv)
{
    cl_run run;
    cl_report rep;
    cl_sums s;
    otg_params gp;
    ot_config *cfg = NULL;
    ot_param_server *ps = NULL;
    const char *url_base = NULL, *src = NULL, *csv_path = NULL, *fresh_path = NULL;
    char tu[512], pu[512], ipc0[512], ipc1[512], err[256];
    double v, print_ms = 0, rt_ms_flag = -1, t_last, t_csv;
    uint64_t next_print = CL_FIRST_PRINT;
    int a, t, j, rc = 2, quiet = 0, full_only = 0, source_set = 0;
    int threads_started = 0;
    struct sigaction sa, old_int, old_term;
    ot_status st;

    memset(&run, 0, sizeof(run));
    memset(&rep, 0, sizeof(rep));
    rep.csv_ms = 500;
    run.ntrainers = 4;
    run.npredictors = 2;
    run.examples_max = 1000000;
    otg_params_default(&gp);
    ipc0[0] = ipc1[0] = '\0';
    if (ot_config_create(&cfg) != OT_OK)
        return ot_tool_fail("cluster", OT_ENOMEM, NULL);
    run.cfg = cfg;

    for (a = 1; a < argc; a++) {
        const char *arg = argv[a], *val = NULL, *eq;
        const cl_flag *f = NULL;
        size_t k, nlen;

        eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        for (k = 0; k < NCL_FLAGS && f == NULL; k++)
            if ((cl_flags[k].shrt && strlen(cl_flags[k].shrt) == nlen &&
                 strncmp(arg, cl_flags[k].shrt, nlen) == 0) ||
                (strlen(cl_flags[k].lng) == nlen && strncmp(arg, cl_flags[k].lng, nlen) == 0))
                f = &cl_flags[k];
        if (f == NULL) {
            fprintf(stderr, "ot: cluster: unknown flag \"%s\" (see `ot cluster --help`)\n", arg);
            goto out;
        }
        if (f->metavar != NULL) {
            if (eq != NULL)
                val = eq + 1;
            else if (a + 1 < argc)
                val = argv[++a];
            else {
                fprintf(stderr, "ot: cluster: %s needs a value (%s)\n", arg, f->metavar);
                goto out;
            }
        } else if (eq != NULL) {
            fprintf(stderr, "ot: cluster: %s takes no value\n", f->lng);
            goto out;
        }
        switch (f->id) {
        case C_TRAINERS:
            if (parse_whole(f->lng, val, 1, CL_MAX_WORKERS, &v) != 0)
                goto out;
            run.ntrainers = (int)v;
            break;
        case C_PREDICTORS:
            if (parse_whole(f->lng, val, 1, CL_MAX_WORKERS, &v) != 0)
                goto out;
            run.npredictors = (int)v;
            break;
        case C_DATA: run.data = val; break;
        case C_EXAMPLES:
            if (parse_whole(f->lng, val, 0, 1e15, &v) != 0)
                goto out;
            run.examples_max = (uint64_t)v;
            break;
        case C_NAMESPACES:
            if (parse_whole(f->lng, val, 1, OTG_MAX_NAMESPACES, &v) != 0)
                goto out;
            gp.namespaces = (int)v;
            break;
        case C_IDS:
            if (parse_whole(f->lng, val, 1, 16777216, &v) != 0)
                goto out;
            gp.ids = (uint32_t)v;
            break;
        case C_ZIPF:
            if (ot_tool_parse_double("cluster", f->lng, val, 0, 10, &gp.zipf) != 0)
                goto out;
            break;
        case C_DRIFT:
            if (ot_tool_parse_double("cluster", f->lng, val, 0, 1, &gp.drift) != 0)
                goto out;
            break;
        case C_SEED:
            if (parse_whole(f->lng, val, 0, 9007199254740992.0, &v) != 0)
                goto out;
            gp.seed = (uint64_t)v;
            break;
        case C_RT_MS:
            if (parse_whole(f->lng, val, 1, 86400000, &rt_ms_flag) != 0 ||
                set_text(cfg, OT_OPT_RT_INTERVAL_MS, f->lng, val) != 0)
                goto out;
            break;
        case C_FULL_MS:
            if (set_text(cfg, OT_OPT_FULL_INTERVAL_MS, f->lng, val) != 0)
                goto out;
            break;
        case C_RT_THRESHOLD:
            if (set_text(cfg, OT_OPT_RT_THRESHOLD, f->lng, val) != 0)
                goto out;
            break;
        case C_SYNC_EVERY:
            if (set_text(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, f->lng, val) != 0)
                goto out;
            break;
        case C_BITS:
            if (set_text(cfg, OT_OPT_BITS, f->lng, val) != 0)
                goto out;
            break;
        case C_OPTIMIZER:
            if (set_text(cfg, OT_OPT_OPTIMIZER, f->lng, val) != 0)
                goto out;
            break;
        case C_OPTION:
            if (ot_tool_set_option(cfg, val) != 0)
                goto out;
            if (strncmp(val, "delta_source=", 13) == 0)
                source_set = 1;
            if (strncmp(val, "rt_interval_ms=", 15) == 0) {
                int64_t r = 0;
                ot_config_get_i64(cfg, OT_OPT_RT_INTERVAL_MS, &r);
                rt_ms_flag = r > 0 ? (double)r : -1;
            }
            break;
        case C_FULL_ONLY: full_only = 1; break;
        case C_URL_BASE: url_base = val; break;
        case C_PRINT_MS:
            if (parse_whole(f->lng, val, 1, 86400000, &print_ms) != 0)
                goto out;
            break;
        case C_SECONDS:
            if (ot_tool_parse_double("cluster", f->lng, val, 0.001, 1e9, &run.seconds) != 0)
                goto out;
            break;
        case C_CSV: csv_path = val; break;
        case C_CSV_MS:
            if (parse_whole(f->lng, val, 1, 86400000, &rep.csv_ms) != 0)
                goto out;
            break;
        case C_FRESH_CSV: fresh_path = val; break;
        case C_QUIET: quiet = 1; break;
        default:
            cluster_usage(stdout);
            rc = 0;
            goto out;
        }
    }

    /* Options that follow from the flags. */
    {
        const char *opt = "ftrl", *loss = "logistic";
        int64_t r = 100;
        ot_config_get_str(cfg, OT_OPT_OPTIMIZER, &opt);
        ot_config_get_str(cfg, OT_OPT_LOSS, &loss);
        run.squared = strcmp(loss, "squared") == 0;
        if (!source_set) {
            src = strcmp(opt, "ftrl") == 0 ? "state" : strcmp(opt, "adagrad") == 0 ? "both"
                                                                                    : "weights";
            if ((st = ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, src)) != OT_OK) {
                rc = ot_tool_fail("delta_source", st, ot_config_errmsg(cfg));
                goto out;
            }
        }
        ot_config_get_str(cfg, OT_OPT_DELTA_SOURCE, &src);
        ot_config_get_i64(cfg, OT_OPT_RT_INTERVAL_MS, &r);
        rep.rt_ms = rt_ms_flag > 0 ? rt_ms_flag : (r > 0 ? (double)r : 100.0);
        if (full_only && set_text(cfg, OT_OPT_RT_INTERVAL_MS, "--full-only", "0") != 0)
            goto out;
    }
    if ((st = ot_config_validate(cfg)) != OT_OK) {
        rc = ot_tool_fail("options", st, ot_config_errmsg(cfg)) + 1;
        goto out;
    }
    if (make_urls(url_base, tu, pu, sizeof(tu), ipc0, ipc1) != 0)
        goto out;
    if (run.data == NULL && otg_create(&gp, &run.gen, err, sizeof(err)) != 0) {
        fprintf(stderr, "ot: cluster: generator: %s\n", err);
        goto out;
    }
    rc = 1;
    if (csv_path != NULL && (rep.csv = csv_open("--csv", csv_path)) == NULL)
        goto out;
    if (fresh_path != NULL) {
        if ((rep.fresh = csv_open("--freshness-csv", fresh_path)) == NULL)
            goto out;
        if (fprintf(rep.fresh, "time_s,lag_ver,stale_ms\n") < 0)
            rep.fresh_failed = 1;
    }
    if (rep.csv != NULL)
        csv_header(&rep);

    /* The server. */
    if ((st = ot_param_server_create(cfg, &ps)) != OT_OK) {
        rc = ot_tool_fail("parameter server", st, ot_param_server_errmsg(ps));
        goto out;
    }
    if ((st = ot_param_server_listen(ps, tu, pu)) != OT_OK ||
        (st = ot_param_server_start(ps)) != OT_OK) {
        rc = ot_tool_fail(tu, st, ot_param_server_errmsg(ps));
        goto out;
    }
    rep.t0 = now_s();

    /* The workers. */
    run.w = calloc((size_t)run.ntrainers, sizeof(*run.w));
    run.pred = calloc((size_t)run.npredictors, sizeof(*run.pred));
    if (run.w == NULL || run.pred == NULL) {
        rc = ot_tool_fail("cluster", OT_ENOMEM, NULL);
        goto out;
    }
    for (t = 0; t < run.ntrainers; t++) {
        cl_worker *w = &run.w[t];
        ot_config *tc = NULL;
        size_t q, k;

        w->run = &run;
        w->id = t;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        for (q = 0; q < CL_QDEPTH; q++)
            for (k = 0; k < CL_BATCH; k++)
                if ((st = ot_example_create(cfg, &w->slot[q].ex[k])) != OT_OK) {
                    rc = ot_tool_fail("cluster", st, NULL);
                    goto out;
                }
        if ((st = ot_config_clone(cfg, &tc)) != OT_OK ||
            (st = ot_config_set_i64(tc, OT_OPT_TRAINER_ID, t + 1)) != OT_OK ||
            (st = ot_trainer_create(tc, &w->tr)) != OT_OK) {
            ot_config_destroy(tc);
            rc = ot_tool_fail("trainer", st, ot_trainer_errmsg(w->tr));
            goto out;
        }
        ot_config_destroy(tc);
        if ((st = ot_trainer_connect(w->tr, ot_param_server_url(ps, 0))) != OT_OK) {
            rc = ot_tool_fail("trainer connect", st, ot_trainer_errmsg(w->tr));
            goto out;
        }
    }
    (void)ot_trainer_stat(run.w[0].tr, "full_bytes_in", &rep.full_copy);
    for (j = 0; j < run.npredictors; j++) {
        if ((st = ot_predictor_create(cfg, &run.pred[j])) != OT_OK) {
            rc = ot_tool_fail("predictor", st, NULL);
            goto out;
        }
        if ((st = ot_predictor_subscribe(run.pred[j], ot_param_server_url(ps, 1),
                                         ot_param_server_url(ps, 0))) != OT_OK) {
            rc = ot_tool_fail("predictor subscribe", st, ot_predictor_errmsg(run.pred[j]));
            goto out;
        }
    }

    if (!quiet) {
        int64_t full_ms = 0, sync_every = 0, bits = 0;
        double thr = 0;
        const char *opt = "";
        ot_config_get_i64(cfg, OT_OPT_FULL_INTERVAL_MS, &full_ms);
        ot_config_get_i64(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, &sync_every);
        ot_config_get_i64(cfg, OT_OPT_BITS, &bits);
        ot_config_get_f64(cfg, OT_OPT_RT_THRESHOLD, &thr);
        ot_config_get_str(cfg, OT_OPT_OPTIMIZER, &opt);
        printf("cluster: %d trainers, %d predictors; server at %s (trainers), %s (predictors)\n",
               run.ntrainers, run.npredictors, ot_param_server_url(ps, 0),
               ot_param_server_url(ps, 1));
        if (full_only)
            printf("cluster: full updates only, every %lld ms; ", (long long)full_ms);
        else
            printf("cluster: real-time updates every %.0f ms (threshold %g), full every %lld ms; ",
                   rep.rt_ms, thr, (long long)full_ms);
        printf("2^%lld weights, %s, delta_source %s, sync every %lld examples\n", (long long)bits,
               opt, src, (long long)sync_every);
        if (run.data != NULL)
            printf("cluster: stream from %s\n", run.data);
        else
            printf("cluster: generated stream: %llu examples, %d namespaces of %u ids, zipf %g, "
                   "drift %g, seed %llu\n",
                   (unsigned long long)run.examples_max, gp.namespaces, gp.ids, gp.zipf, gp.drift,
                   (unsigned long long)gp.seed);
        printf("cluster: losses are since the previous line; pred_MB: bytes published to each "
               "predictor; fullonly_MB: a full update (%.2f MB) every %.0f ms instead; "
               "lag_ver: master version minus the oldest served version; stale_ms: how long ago the "
               "master moved past that version\n",
               rep.full_copy / 1e6, rep.rt_ms);
        print_header();
        fflush(stdout);
    }

    /* Run. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    for (t = 0; t < run.ntrainers; t++) {
        if (pthread_create(&run.w[t].thread, NULL, trainer_main, &run.w[t]) != 0) {
            fprintf(stderr, "ot: cluster: cannot start a trainer thread\n");
            cl_interrupted = 1; /* the feeder stops at once */
            for (; t < run.ntrainers; t++)
                run.w[t].done = 1;
            break;
        }
        run.w[t].started = 1;
    }
    if (pthread_create(&run.feeder, NULL, feeder_main, &run) != 0) {
        for (t = 0; t < run.ntrainers; t++)
            queue_close(&run.w[t]);
        cl_interrupted = 1;
    } else {
        threads_started = 1;
    }
    t_last = t_csv = now_s();
    for (;;) {
        double t_now;
        sleep_ms(10);
        sum_workers(&run, &s);
        if (s.done)
            break;
        sample_freshness(&run, ps, &rep);
        t_now = now_s();
        if (rep.csv != NULL && (t_now - t_csv) * 1000.0 >= rep.csv_ms) {
            csv_row(ps, &rep, &s);
            t_csv = t_now;
        }
        if (quiet)
            continue;
        if (print_ms > 0 ? (t_now - t_last) * 1000.0 >= print_ms : s.examples >= next_print) {
            print_line(ps, &rep, &s);
            t_last = t_now;
            next_print = 2 * s.examples;
        }
    }
    if (threads_started)
        pthread_join(run.feeder, NULL);
    for (t = 0; t < run.ntrainers; t++)
        if (run.w[t].started)
            pthread_join(run.w[t].thread, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    /* Every trainer has synced: one more update (real-time, or full with
     * --full-only) brings the predictors to the final master. */
    {
        double t_end = now_s(), fresh_ms = -1;
        uint64_t master = ot_param_server_version(ps), oldest = master;
        cl_pubstats p;
        int all = 1;

        pub_stats(ps, &rep, t_end, &p); /* before the extra update, for the figures */
        sum_workers(&run, &s);
        sample_freshness(&run, ps, &rep);
        if (!quiet && s.examples > rep.last.examples)
            print_line(ps, &rep, &s);
        if (rep.csv != NULL)
            csv_row(ps, &rep, &s);
        if (ot_param_server_publish(ps, full_only) == OT_OK) {
            double t1 = now_s();
            for (j = 0; j < run.npredictors; j++)
                if (ot_predictor_wait_version(run.pred[j], master, 5000) != OT_OK)
                    all = 0;
            if (all)
                fresh_ms = (now_s() - t1) * 1000.0;
        }
        for (j = 0; j < run.npredictors; j++)
            if (ot_predictor_version(run.pred[j]) < oldest)
                oldest = ot_predictor_version(run.pred[j]);
        if (run.feed_status != 0)
            fprintf(stderr, "ot: cluster: %s\n", run.feed_error);
        for (t = 0; t < run.ntrainers; t++) {
            cl_worker *w = &run.w[t];
            if (w->learn_errors + w->predict_errors + w->sync_errors > 0 || w->final_sync_failed)
                fprintf(stderr, "ot: cluster: trainer %d: %llu examples refused, %llu predictions "
                                "failed, %llu syncs failed (their deltas were kept for the next "
                                "sync)%s; last: %s\n",
                        t + 1, (unsigned long long)w->learn_errors,
                        (unsigned long long)w->predict_errors,
                        (unsigned long long)w->sync_errors,
                        w->final_sync_failed ? ", and the final sync failed" : "",
                        w->last_error);
        }
        if (run.unlabeled > 0)
            fprintf(stderr, "ot: cluster: skipped %llu examples without a label\n",
                    (unsigned long long)run.unlabeled);
        printf("cluster: %llu examples in %.1f s (%.0f/s), %d trainers, %d predictors: "
               "trainer loss %.6f, served loss %.6f (%+.2f%%); %.0f real-time + %.0f full updates, "
               "%.2f MB to each predictor vs %.1f MB for a full update every %.0f ms (%.1fx less); "
               "served version lag mean %.1f, max %llu; staleness mean %.0f ms, max %.0f ms; "
               "at the end the predictors serve version %llu of %llu\n",
               (unsigned long long)s.examples, t_end - rep.t0,
               t_end > rep.t0 ? (double)s.examples / (t_end - rep.t0) : 0.0, run.ntrainers,
               run.npredictors, s.weight > 0 ? s.train_loss / s.weight : 0.0,
               s.weight > 0 ? s.served_loss / s.weight : 0.0,
               s.train_loss > 0 ? 100.0 * (s.served_loss - s.train_loss) / s.train_loss : 0.0,
               p.rt, p.full, p.bytes / 1e6, p.baseline / 1e6, rep.rt_ms,
               p.bytes > 0 ? p.baseline / p.bytes : 0.0,
               rep.samples > 0 ? rep.lag_sum / (double)rep.samples : 0.0,
               (unsigned long long)rep.lag_max,
               rep.samples > 0 ? rep.stale_sum / (double)rep.samples : 0.0, rep.stale_max,
               (unsigned long long)oldest, (unsigned long long)master);
        if (!quiet) {
            double syncs = 0, resyncs = 0, failures = 0, retries = 0, sv = 0, bytes = 0;
            for (t = 0; t < run.ntrainers; t++) {
                ot_trainer *tr = run.w[t].tr;
                if (ot_trainer_stat(tr, "syncs", &sv) == OT_OK)
                    syncs += sv;
                if (ot_trainer_stat(tr, "resyncs", &sv) == OT_OK)
                    resyncs += sv;
                if (ot_trainer_stat(tr, "sync_failures", &sv) == OT_OK)
                    failures += sv;
                if (ot_trainer_stat(tr, "retries", &sv) == OT_OK)
                    retries += sv;
                if (ot_trainer_stat(tr, "delta_bytes_out", &sv) == OT_OK)
                    bytes += sv;
            }
            printf("cluster: trainers: %.0f syncs (%.2f MB of deltas sent), %.0f resyncs, "
                   "%.0f failed syncs, %.0f retries\n",
                   syncs, bytes / 1e6, resyncs, failures, retries);
        }
        if (oldest == master && fresh_ms >= 0 && !quiet)
            printf("cluster: after the last sync, one more update reached every predictor in "
                   "%.1f ms\n", fresh_ms);
        rc = run.feed_status != 0 || s.learn_errors + s.predict_errors > 0 ||
                     s.final_sync_failed ? 1 : 0;
        if (csv_close(rep.csv, csv_path, rep.csv_failed) != 0)
            rc = 1;
        if (csv_close(rep.fresh, fresh_path, rep.fresh_failed) != 0)
            rc = 1;
        rep.csv = rep.fresh = NULL;
        if (cl_interrupted)
            fprintf(stderr, "ot: cluster: interrupted: the stream was not read to its end\n");
    }

out:
    if (run.pred != NULL)
        for (j = 0; j < run.npredictors; j++)
            ot_predictor_destroy(run.pred[j]);
    if (run.w != NULL) {
        for (t = 0; t < run.ntrainers; t++) {
            cl_worker *w = &run.w[t];
            size_t q, k;
            ot_trainer_destroy(w->tr);
            for (q = 0; q < CL_QDEPTH; q++)
                for (k = 0; k < CL_BATCH; k++)
                    ot_example_destroy(w->slot[q].ex[k]);
            if (w->run != NULL) {
                pthread_mutex_destroy(&w->mu);
                pthread_cond_destroy(&w->cv);
            }
        }
    }
    ot_param_server_destroy(ps);
    if (ipc0[0])
        unlink(ipc0);
    if (ipc1[0])
        unlink(ipc1);
    free(run.w);
    free(run.pred);
    free(rep.hist);
    if (rep.csv != NULL && rep.csv != stdout)
        fclose(rep.csv);
    if (rep.fresh != NULL && rep.fresh != stdout)
        fclose(rep.fresh);
    otg_destroy(run.gen);
    ot_config_destroy(cfg);
    return rc;
}
