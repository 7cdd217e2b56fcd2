/*
 * bench/freshness.c - how soon a predictor serves what a trainer synced.
 *
 * Over ipc:// and then tcp:// (127.0.0.1), a parameter server with
 * rt_interval_ms RT_MS and full_interval_ms 10000, 4 trainers and 4
 * predictors, all in this process.  Trainers 2-4 learn a generated stream
 * (tools/gen.h) on their own threads, each at BG_RATE examples/s, syncing
 * every 1000 examples, so the server and the predictors are busy.  Trainer 1
 * is the marker trainer, driven by the main thread.  Each round it:
 *
 *   1. learns one example holding only the marker feature (a wide row that
 *      no stream feature uses), with label +10 or -10 in turn, which moves
 *      the marker weight by far more than rt_threshold;
 *   2. syncs (ot_trainer_sync), and notes the time t0 when the sync returns:
 *      the delta is then in the master;
 *   3. takes the marker weight it expects to be served from its own model
 *      (only this trainer ever changes that row).
 *
 * One thread per predictor then waits for the master version of that sync
 * (ot_predictor_wait_version) and checks, with ot_predictor_predict_batch
 * on the marker example and an empty example (one model version for both;
 * squared loss, so the difference of the two predictions is the marker
 * weight), that the new weight is served, polling every 0.1 ms if it is not
 * yet.  The latency is the time from t0 to that moment.  Between rounds the
 * main thread sleeps a random time in [0, RT_MS) ms, so syncs fall at every
 * phase of the publisher's clock.
 *
 * Figures, "bench.freshness.<transport>.<figure> <value> <unit>":
 *   scheduled_p50_ms, scheduled_p99_ms, scheduled_max_ms
 *        latency with the server's schedule (a real-time update every
 *        RT_MS ms): expected about RT_MS / 2 at the median, and RT_MS plus
 *        the delivery time at the tail (target: p99 < RT_MS + 2 ms)
 *   immediate_p50_ms, immediate_p99_ms, immediate_max_ms
 *        the baseline, measured in the same run: the marker trainer calls
 *        ot_param_server_publish() right after its sync, so this is the
 *        delivery time alone (publish, transport, apply)
 *   samples, late_values, missed
 *        latencies measured (rounds x 4 predictors); times the served
 *        version was reached before the value showed; answers a predictor
 *        did not give within 2 s (not counted in the percentiles)
 *   rounds_with_full_update, nofull_p99_ms, nofull_max_ms
 *        rounds during which the server published a full update (every
 *        10 s), and the latency over the other rounds.  Real-time updates
 *        keep their schedule during a full update, but a predictor applies
 *        frames in order: a sync that the full update carries, or a
 *        real-time update behind it, is served once the predictor has
 *        received and swapped in the full update (2^18 weights plus FTRL
 *        state: about 3 MB each to 4 predictors)
 *   sync_to_publish_p50_ms, _p99_ms, _max_ms
 *        where the time goes, part 1: from t0 to the moment the server's
 *        "published_version" stat reaches the sync's version (the main
 *        thread polls it every 0.1 ms; one figure per round): the wait for
 *        the real-time schedule plus making the update
 *   publish_to_served_p50_ms, _p99_ms, _max_ms
 *        part 2: from that moment to the predictor serving the value (one
 *        per answer): transport, apply and the poller's own wake-up.  The
 *        two parts are measured by different threads, so under a heavy
 *        machine load the second can come out slightly negative
 *   background_examples_per_s
 *        what the three stream trainers learned meanwhile
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tools/gen.c"

#define BITS 18
#define RT_MS 100
#define TRAINERS 4
#define PREDICTORS 4
#define BG_RATE 10000          /* examples/s per background trainer */
#define ROUNDS_SCHEDULED 150
#define ROUNDS_IMMEDIATE 100
#define MISS_NS 2000000000ull  /* a predictor that has not served the value after 2 s */
#define TOLERANCE 1e-4

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void die(const char *what, ot_status st, const char *msg)
{
    fprintf(stderr, "bench.freshness: %s: %s: %s\n", what, ot_status_name(st), msg);
    exit(1);
}

/* ---- shared state ---------------------------------------------------------------- */

typedef struct lat_set {
    double *v;
    size_t n, cap;
} lat_set;

typedef struct bench {
    ot_param_server *ps;
    ot_trainer *tr[TRAINERS];
    ot_predictor *pred[PREDICTORS];
    ot_example *marker, *empty;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the current round, under mu */
    unsigned round;
    uint64_t version, t0;
    float expect;
    int answered;
    int stop;
    /* this round's answers, by predictor (under mu) */
    double round_ms[PREDICTORS];
    int round_ok[PREDICTORS], round_late[PREDICTORS];
    /* results: every latency, and those of rounds no full update overlapped */
    lat_set all, clean;
    /* where the time goes: sync to the server publishing that version (one
     * per round), and publish to served (one per answer) */
    lat_set to_pub, to_served;
    unsigned late, missed, overlapped;

    /* background trainers */
    int bg_stop;
    uint64_t bg_examples;
    char url_base[256];
} bench;

typedef struct poller {
    bench *b;
    int j;
    pthread_t thread;
} poller;

typedef struct background {
    bench *b;
    int t;
    pthread_t thread;
} background;

/* ---- predictor threads ------------------------------------------------------------- */

static void lat_add(lat_set *s, double ms)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? 2 * s->cap : 1024;
        double *n = realloc(s->v, ncap * sizeof(*n));
        if (n == NULL)
            die("results", OT_ENOMEM, "");
        s->v = n;
        s->cap = ncap;
    }
    s->v[s->n++] = ms;
}

static void record(bench *b, int j, double ms, int late, int ok)
{
    pthread_mutex_lock(&b->mu);
    b->round_ms[j] = ms;
    b->round_ok[j] = ok;
    b->round_late[j] = late;
    b->answered++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void *poller_main(void *arg)
{
    poller *pl = arg;
    bench *b = pl->b;
    ot_predictor *p = b->pred[pl->j];
    const ot_example *ex[2];
    unsigned seen = 0;

    ex[0] = b->marker;
    ex[1] = b->empty;
    for (;;) {
        uint64_t version, t0, t;
        float expect, out[2];
        int late = 0, ok = 0;
        ot_status st;

        pthread_mutex_lock(&b->mu);
        while (b->round == seen && !b->stop)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->stop) {
            pthread_mutex_unlock(&b->mu);
            break;
        }
        seen = b->round;
        version = b->version;
        t0 = b->t0;
        expect = b->expect;
        pthread_mutex_unlock(&b->mu);

        st = ot_predictor_wait_version(p, version, (int32_t)(MISS_NS / 1000000u));
        for (;;) {
            t = now_ns();
            if (st == OT_OK && ot_predictor_predict_batch(p, ex, 2, out) == OT_OK &&
                fabsf((out[0] - out[1]) - expect) <= TOLERANCE * (1.0f + fabsf(expect))) {
                ok = 1;
                break;
            }
            if (t - t0 > MISS_NS)
                break;
            if (st == OT_OK)
                late = 1;
            else
                st = ot_predictor_wait_version(p, version, 1);
            sleep_ns(100000);
        }
        record(b, pl->j, (double)(t - t0) / 1e6, late, ok);
    }
    return NULL;
}

/* ---- background trainers ----------------------------------------------------------- */

static void *background_main(void *arg)
{
    background *bg = arg;
    bench *b = bg->b;
    ot_trainer *tr = b->tr[bg->t];
    otg_params gp;
    otg *g;
    otg_sample s;
    ot_example *ex;
    char err[256];
    uint64_t start = now_ns(), n = 0;

    otg_params_default(&gp);
    gp.ids = 2000;
    gp.seed = (uint64_t)(100 + bg->t);
    if (otg_create(&gp, &g, err, sizeof(err)) != 0)
        die("generator", OT_EINVAL, err);
    if (ot_example_create(NULL, &ex) != OT_OK)
        die("example", OT_ENOMEM, "");
    while (!__atomic_load_n(&b->bg_stop, __ATOMIC_SEQ_CST)) {
        int k;
        for (k = 0; k < 100; k++) {
            ot_status st;
            otg_next(g, &s);
            otg_fill_example(g, &s, ex);
            st = ot_trainer_learn(tr, ex, NULL);
            if (st != OT_OK && st != OT_ETIMEDOUT)
                die("background learn", st, ot_trainer_errmsg(tr));
        }
        n += 100;
        /* keep to BG_RATE examples per second */
        {
            uint64_t due = start + n * 1000000000ull / BG_RATE, t = now_ns();
            if (due > t)
                sleep_ns(due - t);
        }
    }
    __atomic_fetch_add(&b->bg_examples, n, __ATOMIC_SEQ_CST);
    ot_example_destroy(ex);
    otg_destroy(g);
    return NULL;
}

/* ---- setup --------------------------------------------------------------------------- */

/* A wide row that no feature of the generated stream (20 namespaces of 2000 ids) uses. */
static uint32_t free_row(void)
{
    otg_params gp;
    otg *g;
    otg_sample s;
    ot_example *ex;
    char err[256];
    uint32_t rows = 1u << BITS, r, k;
    unsigned char *used = calloc(rows, 1);
    int ns;

    otg_params_default(&gp);
    gp.ids = 2000;
    if (used == NULL || otg_create(&gp, &g, err, sizeof(err)) != 0 ||
        ot_example_create(NULL, &ex) != OT_OK)
        die("marker", OT_ENOMEM, err);
    memset(&s, 0, sizeof(s));
    s.label = 1.0f;
    for (k = 0; k < gp.ids; k++) {
        for (ns = 0; ns < gp.namespaces; ns++)
            s.id[ns] = k;
        otg_fill_example(g, &s, ex);
        for (ns = 0; ns < gp.namespaces; ns++) {
            uint32_t h;
            ot_example_feature(ex, (size_t)ns, NULL, &h, NULL);
            used[h & (rows - 1)] = 1;
        }
    }
    for (r = rows / 2; used[r]; r++)
        ;
    free(used);
    ot_example_destroy(ex);
    otg_destroy(g);
    return r;
}

static ot_config *make_config(void)
{
    ot_config *cfg;
    ot_status st;

    if (ot_config_create(&cfg) != OT_OK)
        die("config", OT_ENOMEM, "");
    if ((st = ot_config_set_i64(cfg, OT_OPT_BITS, BITS)) != OT_OK ||
        (st = ot_config_set_str(cfg, OT_OPT_LOSS, "squared")) != OT_OK ||
        (st = ot_config_set_str(cfg, OT_OPT_OPTIMIZER, "ftrl")) != OT_OK ||
        (st = ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "state")) != OT_OK ||
        (st = ot_config_set_i64(cfg, OT_OPT_RT_INTERVAL_MS, RT_MS)) != OT_OK ||
        (st = ot_config_set_i64(cfg, OT_OPT_FULL_INTERVAL_MS, 10000)) != OT_OK ||
        (st = ot_config_set_i64(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, 1000)) != OT_OK)
        die("config", st, ot_config_errmsg(cfg));
    return cfg;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *v, size_t n, double q)
{
    size_t i;

    if (n == 0)
        return NAN;
    i = (size_t)ceil(q * (double)n);
    return v[i == 0 ? 0 : i - 1];
}

/* Runs `rounds` rounds; immediate: publish right after each sync. */
static void run_rounds(bench *b, int rounds, int immediate, uint64_t *rng)
{
    const ot_example *ex[2];
    int r;

    ex[0] = b->marker;
    ex[1] = b->empty;
    for (r = 0; r < rounds; r++) {
        float out[2], loss;
        uint64_t t0, version;
        ot_status st;

        double fulls = 0, fulls_after = 0, pub_ms;
        int j;

        ot_param_server_stat(b->ps, "full_updates", &fulls);
        ot_example_set_label(b->marker, (r % 2) ? -10.0f : 10.0f);
        if ((st = ot_trainer_learn(b->tr[0], b->marker, &loss)) != OT_OK ||
            (st = ot_trainer_sync(b->tr[0])) != OT_OK)
            die("marker sync", st, ot_trainer_errmsg(b->tr[0]));
        t0 = now_ns();
        version = ot_trainer_version(b->tr[0]);
        if (immediate && (st = ot_param_server_publish(b->ps, 0)) != OT_OK)
            die("publish", st, ot_param_server_errmsg(b->ps));
        out[0] = out[1] = 0;
        ot_model_predict_batch(ot_trainer_model(b->tr[0]), ex, 2, out);

        pthread_mutex_lock(&b->mu);
        b->version = version;
        b->t0 = t0;
        b->expect = out[0] - out[1];
        b->answered = 0;
        b->round++;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        /* when the server published (at least) this version */
        pub_ms = -1;
        for (;;) {
            double pv = 0;
            uint64_t t;
            ot_param_server_stat(b->ps, "published_version", &pv);
            t = now_ns();
            if (pv >= (double)version) {
                pub_ms = (double)(t - t0) / 1e6;
                break;
            }
            if (t - t0 > MISS_NS)
                break;
            sleep_ns(100000);
        }
        pthread_mutex_lock(&b->mu);
        while (b->answered < PREDICTORS)
            pthread_cond_wait(&b->cv, &b->mu);
        /* Did a full update go out between the sync and the last answer? */
        ot_param_server_stat(b->ps, "full_updates", &fulls_after);
        b->overlapped += fulls_after != fulls;
        if (pub_ms >= 0)
            lat_add(&b->to_pub, pub_ms);
        for (j = 0; j < PREDICTORS; j++) {
            if (!b->round_ok[j]) {
                b->missed++;
                continue;
            }
            lat_add(&b->all, b->round_ms[j]);
            if (pub_ms >= 0)
                lat_add(&b->to_served, b->round_ms[j] - pub_ms);
            if (fulls_after == fulls)
                lat_add(&b->clean, b->round_ms[j]);
            b->late += (unsigned)b->round_late[j];
        }
        pthread_mutex_unlock(&b->mu);

        /* a random pause: the next sync lands at any phase of the publisher */
        sleep_ns(immediate ? 2000000ull : (rng_next(rng) >> 11) % (RT_MS * 1000000ull));
    }
}

/* Sorts the samples of s and prints "<what>p50_ms", "p99_ms" and "max_ms". */
static void report_dist(const char *tr, const char *mode, const char *what, lat_set *s)
{
    qsort(s->v, s->n, sizeof(*s->v), cmp_double);
    printf("bench.freshness.%s.%s_%sp50_ms %.3f ms\n", tr, mode, what,
           percentile(s->v, s->n, 0.50));
    printf("bench.freshness.%s.%s_%sp99_ms %.3f ms\n", tr, mode, what,
           percentile(s->v, s->n, 0.99));
    printf("bench.freshness.%s.%s_%smax_ms %.3f ms\n", tr, mode, what,
           s->n > 0 ? s->v[s->n - 1] : NAN);
}

static void report(const char *tr, const char *mode, bench *b)
{
    double *c = b->clean.v;
    size_t nc = b->clean.n;

    qsort(c, nc, sizeof(*c), cmp_double);
    report_dist(tr, mode, "", &b->all);
    printf("bench.freshness.%s.%s_samples %zu count\n", tr, mode, b->all.n);
    printf("bench.freshness.%s.%s_late_values %u count\n", tr, mode, b->late);
    printf("bench.freshness.%s.%s_missed %u count\n", tr, mode, b->missed);
    printf("bench.freshness.%s.%s_rounds_with_full_update %u count\n", tr, mode, b->overlapped);
    printf("bench.freshness.%s.%s_nofull_p99_ms %.3f ms\n", tr, mode, percentile(c, nc, 0.99));
    printf("bench.freshness.%s.%s_nofull_max_ms %.3f ms\n", tr, mode, nc > 0 ? c[nc - 1] : NAN);
    report_dist(tr, mode, "sync_to_publish_", &b->to_pub);
    report_dist(tr, mode, "publish_to_served_", &b->to_served);
    fflush(stdout);
    b->to_pub.n = b->to_served.n = 0;
    b->all.n = b->clean.n = 0;
    b->late = b->missed = b->overlapped = 0;
}

static void one_transport(const char *name, uint32_t marker_row)
{
    ot_config *cfg = make_config();
    bench b;
    poller pl[PREDICTORS];
    background bg[TRAINERS];
    char turl[512], purl[512], ipc0[512] = "", ipc1[512] = "";
    const char *tmp = getenv("TMPDIR");
    uint64_t rng[4] = {0x1234, 0x5678, 0x9abc, 0xdef0};
    uint64_t t_start;
    int t, j;
    ot_status st;

    memset(&b, 0, sizeof(b));
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    if (tmp == NULL || *tmp == '\0')
        tmp = "/tmp";
    if (strcmp(name, "ipc") == 0) {
        snprintf(turl, sizeof(turl), "ipc://%s/ot-bench-freshness-%ld-t", tmp, (long)getpid());
        snprintf(purl, sizeof(purl), "ipc://%s/ot-bench-freshness-%ld-p", tmp, (long)getpid());
        snprintf(ipc0, sizeof(ipc0), "%s", turl + 6);
        snprintf(ipc1, sizeof(ipc1), "%s", purl + 6);
    } else {
        snprintf(turl, sizeof(turl), "tcp://127.0.0.1:0");
        snprintf(purl, sizeof(purl), "tcp://127.0.0.1:0");
    }
    if ((st = ot_example_create(cfg, &b.marker)) != OT_OK ||
        (st = ot_example_create(cfg, &b.empty)) != OT_OK ||
        (st = ot_example_add_hashed(b.marker, 'z', marker_row, 1.0f)) != OT_OK ||
        (st = ot_example_set_label(b.empty, 0.0f)) != OT_OK)
        die("examples", st, "");
    if ((st = ot_param_server_create(cfg, &b.ps)) != OT_OK)
        die("server", st, ot_param_server_errmsg(b.ps));
    if ((st = ot_param_server_listen(b.ps, turl, purl)) != OT_OK ||
        (st = ot_param_server_start(b.ps)) != OT_OK)
        die("server listen", st, ot_param_server_errmsg(b.ps));
    for (t = 0; t < TRAINERS; t++) {
        if ((st = ot_config_set_i64(cfg, OT_OPT_TRAINER_ID, t + 1)) != OT_OK ||
            (st = ot_trainer_create(cfg, &b.tr[t])) != OT_OK)
            die("trainer", st, "");
        if ((st = ot_trainer_connect(b.tr[t], ot_param_server_url(b.ps, 0))) != OT_OK)
            die("trainer connect", st, ot_trainer_errmsg(b.tr[t]));
    }
    for (j = 0; j < PREDICTORS; j++) {
        if ((st = ot_predictor_create(cfg, &b.pred[j])) != OT_OK)
            die("predictor", st, "");
        if ((st = ot_predictor_subscribe(b.pred[j], ot_param_server_url(b.ps, 1),
                                         ot_param_server_url(b.ps, 0))) != OT_OK)
            die("predictor subscribe", st, ot_predictor_errmsg(b.pred[j]));
        pl[j].b = &b;
        pl[j].j = j;
        if (pthread_create(&pl[j].thread, NULL, poller_main, &pl[j]) != 0)
            die("thread", OT_ENOMEM, "");
    }
    t_start = now_ns();
    for (t = 1; t < TRAINERS; t++) {
        bg[t].b = &b;
        bg[t].t = t;
        if (pthread_create(&bg[t].thread, NULL, background_main, &bg[t]) != 0)
            die("thread", OT_ENOMEM, "");
    }

    run_rounds(&b, ROUNDS_IMMEDIATE, 1, rng);
    report(name, "immediate", &b);
    run_rounds(&b, ROUNDS_SCHEDULED, 0, rng);
    report(name, "scheduled", &b);

    __atomic_store_n(&b.bg_stop, 1, __ATOMIC_SEQ_CST);
    for (t = 1; t < TRAINERS; t++)
        pthread_join(bg[t].thread, NULL);
    printf("bench.freshness.%s.background_examples_per_s %.0f examples/s\n", name,
           (double)b.bg_examples / ((double)(now_ns() - t_start) / 1e9));
    printf("bench.freshness.%s.rt_interval_ms %d ms\n", name, RT_MS);
    fflush(stdout);
    pthread_mutex_lock(&b.mu);
    b.stop = 1;
    pthread_cond_broadcast(&b.cv);
    pthread_mutex_unlock(&b.mu);
    for (j = 0; j < PREDICTORS; j++) {
        double gaps = 0;
        pthread_join(pl[j].thread, NULL);
        ot_predictor_stat(b.pred[j], "gaps", &gaps);
        if (gaps > 0)
            fprintf(stderr, "# %s: predictor %d saw %.0f gaps\n", name, j + 1, gaps);
        ot_predictor_destroy(b.pred[j]);
    }
    for (t = 0; t < TRAINERS; t++)
        ot_trainer_destroy(b.tr[t]);
    ot_param_server_destroy(b.ps);
    if (ipc0[0])
        unlink(ipc0);
    if (ipc1[0])
        unlink(ipc1);
    ot_example_destroy(b.marker);
    ot_example_destroy(b.empty);
    free(b.all.v);
    free(b.clean.v);
    free(b.to_pub.v);
    free(b.to_served.v);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    ot_config_destroy(cfg);
}

int main(void)
{
    uint32_t row = free_row();

    fprintf(stderr, "# bench.freshness: rt_interval_ms %d, %d trainers (3 learning %d examples/s "
                    "each), %d predictors, 2^%d weights; marker row %u\n",
            RT_MS, TRAINERS, BG_RATE, PREDICTORS, BITS, row);
    one_transport("ipc", row);
    one_transport("tcp", row);
    return 0;
}
