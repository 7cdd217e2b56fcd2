/*
 * bench/quality.c - what the three roles cost in model quality and bytes.
 *
 * Two generated streams of N_EXAMPLES examples (tools/gen.h: 20 namespaces of
 * 2000 Zipf(1.1) ids, seed 7): "stationary" (no drift) and "drift" (0.5% of
 * the hidden weights re-drawn every 1000 examples).  On each:
 *
 *   single    one model alone learns the whole stream (ot_model_learn);
 *             its progressive loss is the baseline;
 *   cluster   a parameter server, 4 trainers and 2 predictors over
 *             inproc://.  Example i goes to trainer i mod 4 and is first
 *             scored by predictor i mod 2 (served loss) and by a copy of
 *             the master taken after the latest sync (master loss); the
 *             trainer's own loss before its update is the trainer loss.
 *
 * Time is scaled so the run is deterministic and fast: one simulated
 * second is EX_PER_SECOND stream examples, and the benchmark drives
 * everything by example count from one thread.  Each trainer syncs every
 * SYNC_EVERY of its own examples, the four staggered so that a sync happens
 * every SYNC_EVERY stream examples, spread evenly between real-time updates
 * (at EX_PER_SECOND = 10000 examples/s that is 40 syncs a second, each
 * trainer's every 100 ms).  The server publishes a real-time update every
 * 100 simulated ms (RT_EVERY examples) and a full update every 10 simulated
 * seconds (FULL_EVERY examples) through ot_param_server_publish()
 * (rt_interval_ms and full_interval_ms are 0), and the benchmark waits
 * until every predictor has applied each update before it goes on.
 *
 * Two more runs of the trainers: syncing every SYNC_EVERY_SLOW examples
 * (sync_every_examples' default; no predictors), to show what slower syncs
 * cost; and, on the drifting stream, the cluster with predictors that get
 * only the full updates (every 10 simulated seconds), nothing in between.
 *
 * Figures, "bench.quality.<stream>.<figure> <value> <unit>":
 *   truth_loss, base_rate_loss   the hidden model's log loss (the best any
 *                                learner can do) and a constant prediction's
 *                                (the base rate): floor and ceiling
 *   single_loss                  one model alone (baseline)
 *   trainers_loss                the 4 trainers' progressive loss
 *   trainers_vs_single_pct       100 (trainers - single) / single (target: within 1)
 *   trainers_sync1000_loss       the trainers syncing every 1000 of their examples
 *   trainers_sync1000_vs_single_pct
 *   master_loss, served_loss     master and predictors, as above
 *   served_vs_master_pct         100 (served - master) / master
 *   full_only_served_loss        (drift) predictors with full updates only
 *   rt_vs_full_only_pct          (drift) 100 (served - full only) / full only
 *   predictor_mb                 bytes published to each predictor, real-time
 *                                plus full updates
 *   full_every_rt_mb             a full update every real-time interval instead
 *                                (intervals x the size of one full update)
 *   bytes_ratio                  full_every_rt_mb / predictor_mb (target: >= 20)
 *
 * Log loss is in nats; the model is 2^BITS weights, FTRL, trainers exchange
 * the optimizer state (delta_source "state"), rt_threshold 1e-4.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tools/gen.c"

#define N_EXAMPLES 1000000
#define BITS 18
#define TRAINERS 4
#define PREDICTORS 2
#define EX_PER_SECOND 10000                 /* the time scale */
#define RT_EVERY (EX_PER_SECOND / 10)       /* 100 simulated ms */
#define FULL_EVERY (EX_PER_SECOND * 10)     /* 10 simulated s */
#define SYNC_EVERY 250                      /* per trainer */
#define SYNC_EVERY_SLOW 1000                /* per trainer: sync_every_examples' default */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, ot_status st, const char *msg)
{
    fprintf(stderr, "bench.quality: %s: %s: %s\n", what, ot_status_name(st), msg);
    exit(1);
}

static void figure(const char *stream, const char *name, double value, const char *unit)
{
    printf("bench.quality.%s.%s %.6g %s\n", stream, name, value, unit);
    fflush(stdout);
}

static void stream_params(otg_params *gp, double drift)
{
    otg_params_default(gp);
    gp->namespaces = 20;
    gp->ids = 2000;
    gp->seed = 7;
    gp->drift = drift;
}

static ot_config *make_config(void)
{
    ot_config *cfg;
    ot_status st;

    if (ot_config_create(&cfg) != OT_OK)
        die("config", OT_ENOMEM, "");
    if ((st = ot_config_set_i64(cfg, OT_OPT_BITS, BITS)) != OT_OK ||
        (st = ot_config_set_str(cfg, OT_OPT_OPTIMIZER, "ftrl")) != OT_OK ||
        (st = ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "state")) != OT_OK ||
        (st = ot_config_set_i64(cfg, OT_OPT_RT_INTERVAL_MS, 0)) != OT_OK ||
        (st = ot_config_set_i64(cfg, OT_OPT_FULL_INTERVAL_MS, 0)) != OT_OK ||
        (st = ot_config_set_i64(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, 0)) != OT_OK ||
        (st = ot_config_set_i64(cfg, OT_OPT_SYNC_INTERVAL_MS, 0)) != OT_OK ||
        (st = ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, 30000)) != OT_OK)
        die("config", st, ot_config_errmsg(cfg));
    return cfg;
}

/* ---- one model alone, plus the floor and ceiling ------------------------------ */

typedef struct single_result {
    double loss, truth, base_rate;
} single_result;

static void run_single(const otg_params *gp, single_result *r)
{
    ot_config *cfg = make_config();
    ot_model *m;
    ot_example *ex;
    otg *g;
    otg_sample s;
    char err[256];
    double loss = 0, truth = 0, pos = 0;
    long i;
    ot_status st;

    if (otg_create(gp, &g, err, sizeof(err)) != 0)
        die("generator", OT_EINVAL, err);
    if ((st = ot_model_create(cfg, &m)) != OT_OK || (st = ot_example_create(cfg, &ex)) != OT_OK)
        die("model", st, ot_config_errmsg(cfg));
    for (i = 0; i < N_EXAMPLES; i++) {
        float l = 0.0f;
        otg_next(g, &s);
        if ((st = otg_fill_example(g, &s, ex)) != OT_OK ||
            (st = ot_model_learn(m, ex, &l)) != OT_OK)
            die("learn", st, ot_model_errmsg(m));
        loss += l;
        truth += otg_logloss(s.prob, s.label);
        pos += s.label > 0;
    }
    r->loss = loss / N_EXAMPLES;
    r->truth = truth / N_EXAMPLES;
    pos /= N_EXAMPLES;
    r->base_rate = -(pos * log(pos) + (1 - pos) * log(1 - pos));
    ot_example_destroy(ex);
    ot_model_destroy(m);
    otg_destroy(g);
    ot_config_destroy(cfg);
}

/* ---- the cluster ---------------------------------------------------------------- */

typedef struct cluster_result {
    double train_loss, served_loss, master_loss;
    double predictor_bytes, full_bytes_each, intervals;
    double rt_updates, full_updates, gaps, resyncs, sync_failures;
} cluster_result;

enum {
    C_PREDICT = 1,   /* predictors score every example */
    C_MASTER = 2,    /* a copy of the master scores every example */
    C_FULL_ONLY = 4  /* publish full updates only */
};

static double ps_stat(const ot_param_server *ps, const char *name)
{
    double v = 0;

    if (ot_param_server_stat(ps, name, &v) != OT_OK)
        die("server stat", OT_ENOENT, name);
    return v;
}

static double pred_stat(const ot_predictor *p, const char *name)
{
    double v = 0;

    if (ot_predictor_stat(p, name, &v) != OT_OK)
        die("predictor stat", OT_ENOENT, name);
    return v;
}

/* Waits until every predictor serves `version` and has swapped in `fulls` full updates. */
static void wait_predictors(ot_predictor **pred, uint64_t version, double fulls)
{
    int j;

    for (j = 0; j < PREDICTORS; j++) {
        double t0 = now_s();
        ot_status st = ot_predictor_wait_version(pred[j], version, 30000);
        if (st != OT_OK)
            die("wait for a real-time update", st, ot_predictor_errmsg(pred[j]));
        while (pred_stat(pred[j], "full_updates") < fulls) {
            struct timespec ts = {0, 50000};
            if (now_s() - t0 > 30)
                die("wait for a full update", OT_ETIMEDOUT, "");
            nanosleep(&ts, NULL);
        }
    }
}

static ot_model *master_copy(const ot_param_server *ps, ot_model *old)
{
    ot_model *m;
    ot_status st = ot_param_server_copy_model(ps, &m);

    if (st != OT_OK)
        die("copy the master", st, ot_param_server_errmsg(ps));
    ot_model_destroy(old);
    return m;
}

static void run_cluster(const otg_params *gp, int flags, long sync_every, int tag,
                        cluster_result *r)
{
    ot_config *cfg = make_config();
    ot_param_server *ps;
    ot_trainer *tr[TRAINERS];
    ot_predictor *pred[PREDICTORS];
    ot_model *master = NULL;
    ot_example *ex;
    otg *g;
    otg_sample s;
    char err[256], turl[128], purl[128];
    long count[TRAINERS] = {0}, sync_at[TRAINERS], i;
    double tl = 0, sl = 0, ml = 0, fulls = 0, v;
    int t, j;
    ot_status st;

    snprintf(turl, sizeof(turl), "inproc://bench-quality-%ld-%d-trainers", (long)getpid(), tag);
    snprintf(purl, sizeof(purl), "inproc://bench-quality-%ld-%d-predictors", (long)getpid(), tag);
    if (otg_create(gp, &g, err, sizeof(err)) != 0)
        die("generator", OT_EINVAL, err);
    if ((st = ot_example_create(cfg, &ex)) != OT_OK)
        die("example", st, "");
    if ((st = ot_param_server_create(cfg, &ps)) != OT_OK)
        die("server", st, ot_param_server_errmsg(ps));
    if ((st = ot_param_server_listen(ps, turl, purl)) != OT_OK ||
        (st = ot_param_server_start(ps)) != OT_OK)
        die("server listen", st, ot_param_server_errmsg(ps));
    for (t = 0; t < TRAINERS; t++) {
        if ((st = ot_config_set_i64(cfg, OT_OPT_TRAINER_ID, t + 1)) != OT_OK ||
            (st = ot_trainer_create(cfg, &tr[t])) != OT_OK)
            die("trainer", st, "");
        if ((st = ot_trainer_connect(tr[t], turl)) != OT_OK)
            die("trainer connect", st, ot_trainer_errmsg(tr[t]));
    }
    for (j = 0; j < PREDICTORS; j++) {
        if ((st = ot_predictor_create(cfg, &pred[j])) != OT_OK)
            die("predictor", st, "");
        if ((st = ot_predictor_subscribe(pred[j], purl, turl)) != OT_OK)
            die("predictor subscribe", st, ot_predictor_errmsg(pred[j]));
    }
    if (flags & C_MASTER)
        master = master_copy(ps, NULL);
    /* Trainer t syncs when its example count is sync_at[t] modulo
     * sync_every: at stream positions t * sync_every + sync_every / 2
     * modulo TRAINERS * sync_every, so the trainers' syncs are evenly spread
     * and none falls just before a real-time update by construction. */
    for (t = 0; t < TRAINERS; t++)
        sync_at[t] = ((t * sync_every + sync_every / 2 - t) / TRAINERS + 1) % sync_every;

    for (i = 0; i < N_EXAMPLES; i++) {
        float p, l;
        t = (int)(i % TRAINERS);
        otg_next(g, &s);
        if ((st = otg_fill_example(g, &s, ex)) != OT_OK)
            die("example", st, "");
        if (flags & C_PREDICT) {
            if ((st = ot_predictor_predict(pred[i % PREDICTORS], ex, &p)) != OT_OK)
                die("predict", st, "");
            sl += otg_logloss(p, s.label);
        }
        if (flags & C_MASTER) {
            if ((st = ot_model_predict(master, ex, &p)) != OT_OK)
                die("master predict", st, "");
            ml += otg_logloss(p, s.label);
        }
        if ((st = ot_trainer_learn(tr[t], ex, &l)) != OT_OK)
            die("learn", st, ot_trainer_errmsg(tr[t]));
        tl += l;
        if (++count[t] % sync_every == sync_at[t]) {
            if ((st = ot_trainer_sync(tr[t])) != OT_OK)
                die("sync", st, ot_trainer_errmsg(tr[t]));
            if (flags & C_MASTER)
                master = master_copy(ps, master);
        }
        if (!(flags & C_PREDICT))
            continue;
        if ((i + 1) % RT_EVERY == 0) {
            int full = (i + 1) % FULL_EVERY == 0;
            double before = ps_stat(ps, "rt_updates");
            if (!full && (flags & C_FULL_ONLY))
                continue;
            if ((st = ot_param_server_publish(ps, full)) != OT_OK)
                die("publish", st, ot_param_server_errmsg(ps));
            fulls += full;
            if (full || ps_stat(ps, "rt_updates") > before)
                wait_predictors(pred, ot_param_server_version(ps), fulls);
        }
    }

    r->train_loss = tl / N_EXAMPLES;
    r->served_loss = sl / N_EXAMPLES;
    r->master_loss = ml / N_EXAMPLES;
    r->rt_updates = ps_stat(ps, "rt_updates");
    r->full_updates = ps_stat(ps, "full_updates");
    r->predictor_bytes = ps_stat(ps, "rt_bytes") + ps_stat(ps, "full_bytes");
    r->full_bytes_each = r->full_updates > 0 ? ps_stat(ps, "full_bytes") / r->full_updates : 0;
    r->intervals = (double)(N_EXAMPLES / RT_EVERY);
    r->gaps = r->resyncs = r->sync_failures = 0;
    for (j = 0; j < PREDICTORS; j++)
        r->gaps += pred_stat(pred[j], "gaps");
    for (t = 0; t < TRAINERS; t++) {
        if (ot_trainer_stat(tr[t], "resyncs", &v) == OT_OK)
            r->resyncs += v;
        if (ot_trainer_stat(tr[t], "sync_failures", &v) == OT_OK)
            r->sync_failures += v;
    }

    for (j = 0; j < PREDICTORS; j++)
        ot_predictor_destroy(pred[j]);
    for (t = 0; t < TRAINERS; t++)
        ot_trainer_destroy(tr[t]);
    ot_param_server_destroy(ps);
    ot_model_destroy(master);
    ot_example_destroy(ex);
    otg_destroy(g);
    ot_config_destroy(cfg);
}

static double pct(double a, double b)
{
    return 100.0 * (a - b) / b;
}

static void one_stream(const char *name, double drift, int tag)
{
    otg_params gp;
    single_result single;
    cluster_result c, fo, slow;
    double t0 = now_s();

    stream_params(&gp, drift);
    run_single(&gp, &single);
    fprintf(stderr, "# %s: single model %.1f s\n", name, now_s() - t0);
    t0 = now_s();
    run_cluster(&gp, C_PREDICT | C_MASTER, SYNC_EVERY, tag, &c);
    fprintf(stderr, "# %s: cluster %.1f s (%.0f real-time and %.0f full updates, %.0f gaps, "
                    "%.0f resyncs, %.0f failed syncs)\n",
            name, now_s() - t0, c.rt_updates, c.full_updates, c.gaps, c.resyncs,
            c.sync_failures);
    t0 = now_s();
    run_cluster(&gp, 0, SYNC_EVERY_SLOW, tag + 1, &slow);
    fprintf(stderr, "# %s: trainers syncing every %d examples %.1f s\n", name, SYNC_EVERY_SLOW,
            now_s() - t0);

    figure(name, "truth_loss", single.truth, "nats");
    figure(name, "base_rate_loss", single.base_rate, "nats");
    figure(name, "single_loss", single.loss, "nats");
    figure(name, "trainers_loss", c.train_loss, "nats");
    figure(name, "trainers_vs_single_pct", pct(c.train_loss, single.loss), "%");
    figure(name, "trainers_sync1000_loss", slow.train_loss, "nats");
    figure(name, "trainers_sync1000_vs_single_pct", pct(slow.train_loss, single.loss), "%");
    figure(name, "master_loss", c.master_loss, "nats");
    figure(name, "served_loss", c.served_loss, "nats");
    figure(name, "served_vs_master_pct", pct(c.served_loss, c.master_loss), "%");
    if (drift > 0) {
        t0 = now_s();
        run_cluster(&gp, C_PREDICT | C_FULL_ONLY, SYNC_EVERY, tag + 2, &fo);
        fprintf(stderr, "# %s: cluster with full updates only %.1f s (%.0f full updates)\n", name,
                now_s() - t0, fo.full_updates);
        figure(name, "full_only_served_loss", fo.served_loss, "nats");
        figure(name, "rt_vs_full_only_pct", pct(c.served_loss, fo.served_loss), "%");
    }
    figure(name, "predictor_mb", c.predictor_bytes / 1e6, "MB");
    figure(name, "full_every_rt_mb", c.intervals * c.full_bytes_each / 1e6, "MB");
    figure(name, "bytes_ratio", c.intervals * c.full_bytes_each / c.predictor_bytes, "x");
}

int main(void)
{
    fprintf(stderr, "# bench.quality: %d examples per stream, 2^%d weights, %d trainers (sync "
                    "every %d of their examples), %d predictors; time scaled to %d examples per "
                    "simulated second: real-time update every %d examples, full every %d\n",
            N_EXAMPLES, BITS, TRAINERS, SYNC_EVERY, PREDICTORS, EX_PER_SECOND, RT_EVERY,
            FULL_EVERY);
    one_stream("stationary", 0.0, 0);
    one_stream("drift", 0.005, 10);
    return 0;
}
