/*
 * cmd_roles.c - the roles as processes (docs/deployment.md):
 *   ot ps        one parameter-server shard
 *   ot trainer   a training worker over one or more shards
 *   ot predictor a prediction worker that serves predictions
 *   ot predict   a client of `ot predictor --serve`
 * Each runs until SIGINT or SIGTERM (ot trainer and ot predict also stop at
 * the end of their input), then stops cleanly.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"
#include "ot.h"

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void nap_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* ---- shared flags ------------------------------------------------------------ */

typedef struct role_args {
    ot_config *cfg;
    const char *shard;      /* ps: "i/N" */
    const char *trainers;   /* ps: trainer URL */
    const char *predictors; /* ps: predictor URL */
    const char *checkpoint; /* ps */
    const char *ps;         /* trainer, predictor: server trainer URLs, comma-separated */
    const char *sub;        /* predictor: server predictor URLs */
    const char *serve;      /* predictor: serving URL */
    const char *connect;    /* predict */
    const char *data;       /* trainer, predict */
    const char *save;       /* ps, predictor: model file written at exit */
    const char *local;      /* predict: shards' saved masters, in shard order */
    const char *ack_log;    /* trainer: file of acknowledged delta frames */
    const char *metrics;    /* ps, trainer, predictor: Prometheus endpoint (http://host:port/path) */
    long stats_ms;
    long batch;
} role_args;

static void roles_usage(FILE *f, const char *cmd)
{
    if (strcmp(cmd, "ps") == 0)
        fprintf(f, "usage: ot ps --shard I/N --trainers URL [--predictors URL] [--checkpoint DIR]\n"
                   "             [--save FILE] [FLAGS]\n"
                   "Runs one parameter-server shard until SIGINT or SIGTERM.\n"
                   "  --save FILE      write the master to FILE (ot_model_save) when stopping\n");
    else if (strcmp(cmd, "trainer") == 0)
        fprintf(f, "usage: ot trainer --ps URL[,URL...] [-d FILE|-] [FLAGS]\n"
                   "Trains on the examples of FILE (absent or \"-\": standard input) and syncs\n"
                   "with every shard (trainer URLs in shard order); stops at the end of the input\n"
                   "or at SIGINT/SIGTERM, after a last sync (retried for up to 30 s while\n"
                   "the server does not answer).\n"
                   "  --ack-log FILE   append one record per delta frame the server\n"
                   "                   acknowledged (see scripts/chaos.sh; single shard only)\n");
    else if (strcmp(cmd, "predictor") == 0)
        fprintf(f, "usage: ot predictor --ps URL[,URL...] --sub URL[,URL...] [--serve URL]\n"
                   "                    [--save FILE] [FLAGS]\n"
                   "Follows every shard (--ps: trainer URLs, for full copies; --sub: predictor\n"
                   "URLs; both in shard order) and serves predictions at --serve until SIGINT\n"
                   "or SIGTERM.  --save FILE writes the served model when stopping.\n");
    else
        fprintf(f, "usage: ot predict --connect URL [-d FILE|-] [--batch N] [FLAGS]\n"
                   "       ot predict --local FILE[,FILE...] [-d FILE|-] [FLAGS]\n"
                   "Prints one score per example: from `ot predictor --serve` at URL, in\n"
                   "requests of N examples (default 64), or with --local from the union of the\n"
                   "shards' saved masters (`ot ps --save`, in shard order).\n");
    fprintf(f, "flags shared by the roles (model flags must agree between processes):\n"
               "  -b BITS, --optimizer OPT, --hidden WIDTHS, --embed NS:DIM, --loss_function LOSS\n"
               "  -O NAME=VALUE    set any library option (see `ot options`); repeatable\n"
               "  --stats-interval MS  print the role's stats every MS (0: never)\n"
               "  --metrics URL    ps, trainer, predictor: serve the stats to Prometheus at\n"
               "                   URL (http://0.0.0.0:PORT/metrics)\n"
               "See docs/deployment.md.\n");
}

/* Parses the flags of every role; returns 0, or the exit status. */
static int parse_roles(int argc, char **argv, role_args *a)
{
    int i;

    memset(a, 0, sizeof(*a));
    a->batch = 64;
    if (ot_config_create(&a->cfg) != OT_OK)
        return 1;
    for (i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0, takes = 1;
        if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) {
            roles_usage(stdout, argv[0]);
            return -1;
        }
        if (v == NULL) {
            fprintf(stderr, "ot %s: %s needs a value\n", argv[0], f);
            return 2;
        }
        if (strcmp(f, "--shard") == 0)
            a->shard = v;
        else if (strcmp(f, "--trainers") == 0)
            a->trainers = v;
        else if (strcmp(f, "--predictors") == 0)
            a->predictors = v;
        else if (strcmp(f, "--checkpoint") == 0)
            a->checkpoint = v;
        else if (strcmp(f, "--ps") == 0)
            a->ps = v;
        else if (strcmp(f, "--sub") == 0)
            a->sub = v;
        else if (strcmp(f, "--serve") == 0)
            a->serve = v;
        else if (strcmp(f, "--connect") == 0)
            a->connect = v;
        else if (strcmp(f, "-d") == 0 || strcmp(f, "--data") == 0)
            a->data = v;
        else if (strcmp(f, "--save") == 0)
            a->save = v;
        else if (strcmp(f, "--local") == 0)
            a->local = v;
        else if (strcmp(f, "--ack-log") == 0)
            a->ack_log = v;
        else if (strcmp(f, "--metrics") == 0)
            a->metrics = v;
        else if (strcmp(f, "--stats-interval") == 0)
            a->stats_ms = strtol(v, NULL, 10);
        else if (strcmp(f, "--batch") == 0)
            a->batch = strtol(v, NULL, 10);
        else if (strcmp(f, "-b") == 0)
            rc = ot_config_set_text(a->cfg, OT_OPT_BITS, v) != OT_OK;
        else if (strcmp(f, "--optimizer") == 0)
            rc = ot_config_set_text(a->cfg, OT_OPT_OPTIMIZER, v) != OT_OK;
        else if (strcmp(f, "--hidden") == 0)
            rc = ot_config_set_text(a->cfg, OT_OPT_HIDDEN_LAYERS, v) != OT_OK;
        else if (strcmp(f, "--embed") == 0)
            rc = ot_config_set_text(a->cfg, OT_OPT_EMBEDDING, v) != OT_OK;
        else if (strcmp(f, "--loss_function") == 0)
            rc = ot_config_set_text(a->cfg, OT_OPT_LOSS, v) != OT_OK;
        else if (strcmp(f, "-O") == 0 || strcmp(f, "--option") == 0) {
            int r = ot_tool_set_option(a->cfg, v);
            if (r != 0)
                return r;
        } else {
            fprintf(stderr, "ot %s: unknown flag %s\n", argv[0], f);
            roles_usage(stderr, argv[0]);
            return 2;
        }
        if (rc != 0) {
            fprintf(stderr, "ot %s: %s %s: %s\n", argv[0], f, v, ot_config_errmsg(a->cfg));
            return 2;
        }
        i += takes;
    }
    if (a->stats_ms < 0 || a->batch < 1) {
        fprintf(stderr, "ot %s: bad --stats-interval or --batch\n", argv[0]);
        return 2;
    }
    return 0;
}

/* Splits a comma-separated list in place; returns the count (at most max). */
static size_t split_list(char *s, char **out, size_t max)
{
    size_t n = 0;
    char *p = s;

    while (p != NULL && *p != '\0' && n < max) {
        char *c = strchr(p, ',');
        if (c != NULL)
            *c = '\0';
        out[n++] = p;
        p = c != NULL ? c + 1 : NULL;
    }
    return n;
}

typedef ot_status (*stat_fn)(const void *h, const char *name, double *v);
typedef const char *(*stat_name_fn)(const void *h, size_t i);

static ot_status ps_stat(const void *h, const char *n, double *v)
{
    return ot_param_server_stat((const ot_param_server *)h, n, v);
}
static const char *ps_stat_name(const void *h, size_t i)
{
    return ot_param_server_stat_name((const ot_param_server *)h, i);
}
static ot_status tr_stat(const void *h, const char *n, double *v)
{
    return ot_trainer_stat((const ot_trainer *)h, n, v);
}
static const char *tr_stat_name(const void *h, size_t i)
{
    return ot_trainer_stat_name((const ot_trainer *)h, i);
}
static ot_status pr_stat(const void *h, const char *n, double *v)
{
    return ot_predictor_stat((const ot_predictor *)h, n, v);
}
static const char *pr_stat_name(const void *h, size_t i)
{
    return ot_predictor_stat_name((const ot_predictor *)h, i);
}

/* One line: "<role> t=<s> name=value ..." to stderr. */
static void print_stats(const char *role, double t0, const void *h, stat_fn get, stat_name_fn name)
{
    size_t i;
    const char *n;

    fprintf(stderr, "%s t=%.3f", role, mono_s() - t0);
    for (i = 0; (n = name(h, i)) != NULL; i++) {
        double v = 0;
        if (get(h, n, &v) == OT_OK)
            fprintf(stderr, " %s=%.17g", n, v);
    }
    fputc('\n', stderr);
}

/* ---- ot ps --------------------------------------------------------------------- */

int ot_cmd_ps(int argc, char **argv)
{
    role_args a;
    ot_param_server *ps = NULL;
    unsigned shard = 0, nshards = 1;
    double t0 = mono_s(), next;
    ot_status st;
    int rc;

    if ((rc = parse_roles(argc, argv, &a)) != 0) {
        ot_config_destroy(a.cfg);
        return rc < 0 ? 0 : rc;
    }
    if (a.trainers == NULL) {
        fprintf(stderr, "ot ps: --trainers URL is required\n");
        ot_config_destroy(a.cfg);
        return 2;
    }
    if (a.shard != NULL && (sscanf(a.shard, "%u/%u", &shard, &nshards) != 2 || nshards == 0 ||
                            shard >= nshards)) {
        fprintf(stderr, "ot ps: --shard takes I/N with I < N, got \"%s\"\n", a.shard);
        ot_config_destroy(a.cfg);
        return 2;
    }
    if (ot_config_set_i64(a.cfg, OT_OPT_SHARD_ID, shard) != OT_OK ||
        ot_config_set_i64(a.cfg, OT_OPT_NUM_SHARDS, nshards) != OT_OK ||
        (a.checkpoint != NULL &&
         ot_config_set_str(a.cfg, OT_OPT_CHECKPOINT_DIR, a.checkpoint) != OT_OK)) {
        rc = ot_tool_fail("ps", OT_EINVAL, ot_config_errmsg(a.cfg));
        ot_config_destroy(a.cfg);
        return rc;
    }
    catch_signals();
    if ((st = ot_param_server_create(a.cfg, &ps)) != OT_OK) {
        rc = ot_tool_fail("ps: create", st, ps != NULL ? ot_param_server_errmsg(ps) : "");
        goto out;
    }
    if ((st = ot_param_server_listen(ps, a.trainers, a.predictors)) != OT_OK ||
        (st = ot_param_server_start(ps)) != OT_OK) {
        rc = ot_tool_fail("ps", st, ot_param_server_errmsg(ps));
        goto out;
    }
    if (a.metrics != NULL && (st = ot_param_server_serve_metrics(ps, a.metrics)) != OT_OK) {
        rc = ot_tool_fail("ps: --metrics", st, ot_param_server_errmsg(ps));
        goto out;
    }
    fprintf(stderr, "ps shard=%u/%u trainers=%s predictors=%s ready\n", shard, nshards,
            ot_param_server_url(ps, 0),
            ot_param_server_url(ps, 1) != NULL ? ot_param_server_url(ps, 1) : "-");
    next = t0 + (double)a.stats_ms / 1000.0;
    while (!stop_requested) {
        nap_ms(20);
        if (a.stats_ms > 0 && mono_s() >= next) {
            print_stats("ps", t0, ps, ps_stat, ps_stat_name);
            next += (double)a.stats_ms / 1000.0;
        }
    }
    /* finishes the replies in flight and the last checkpoint */
    if ((st = ot_param_server_stop(ps)) != OT_OK)
        fprintf(stderr, "ot ps: stop: %s: %s\n", ot_status_name(st), ot_param_server_errmsg(ps));
    rc = 0;
    if (a.save != NULL) {
        ot_model *m = NULL;
        if ((st = ot_param_server_copy_model(ps, &m)) != OT_OK ||
            (st = ot_model_save(m, a.save, OT_SAVE_WEIGHTS)) != OT_OK)
            rc = ot_tool_fail("ps: --save", st, a.save);
        ot_model_destroy(m);
    }
    fprintf(stderr, "ps shard=%u/%u version=%llu stopped\n", shard, nshards,
            (unsigned long long)ot_param_server_version(ps));
out:
    ot_param_server_destroy(ps);
    ot_config_destroy(a.cfg);
    return rc;
}

/* ---- ot trainer ----------------------------------------------------------------- */

/*
 * --ack-log: per acknowledged frame, a record in host byte order:
 * u32 sender, u32 duplicate (0/1), u64 sequence, u64 frame length, the frame.
 * Flushed per record, so a trainer stopped by a signal leaves whole records.
 */
static void log_ack(void *ctx, const uint8_t *frame, size_t len, int duplicate)
{
    FILE *f = ctx;
    uint64_t sender = 0, seq = 0, flen = len;
    uint32_t hdr[2];

    (void)ot_delta_peek(frame, len, OT_DELTA_FIELD_SENDER, &sender);
    (void)ot_delta_peek(frame, len, OT_DELTA_FIELD_SEQUENCE, &seq);
    hdr[0] = (uint32_t)sender;
    hdr[1] = duplicate != 0;
    if (fwrite(hdr, sizeof(hdr), 1, f) != 1 || fwrite(&seq, sizeof(seq), 1, f) != 1 ||
        fwrite(&flen, sizeof(flen), 1, f) != 1 || fwrite(frame, 1, len, f) != len ||
        fflush(f) != 0)
        fprintf(stderr, "ot trainer: --ack-log: %s\n", strerror(errno));
}

#define MAX_URLS 64
#define FINAL_SYNC_S 30.0 /* ot trainer: how long the last sync keeps trying */
#define TRAINER_BATCH 64  /* ot trainer: examples per ot_trainer_learn_batch */

static void trainer_report(ot_trainer *tr, ot_status st)
{
    if (st != OT_OK && st != OT_ETIMEDOUT && st != OT_ECLOSED)
        fprintf(stderr, "ot trainer: %s: %s\n", ot_status_name(st), ot_trainer_errmsg(tr));
}

/*
 * Learns the n examples held, in order: one ot_trainer_learn_batch() (which
 * syncs at the same examples as one at a time), or, when it refused an
 * example and so learned nothing, one ot_trainer_learn() each, so the others
 * are learned and the refused one is reported as without batches.
 */
static void trainer_learn_held(ot_trainer *tr, ot_example *const *ex, size_t n)
{
    double before = 0.0, after = 0.0;
    ot_status st;
    size_t i;

    if (n == 1) {
        trainer_report(tr, ot_trainer_learn(tr, ex[0], NULL));
        return;
    }
    (void)ot_trainer_stat(tr, "examples", &before);
    st = ot_trainer_learn_batch(tr, (const ot_example *const *)ex, n, NULL);
    (void)ot_trainer_stat(tr, "examples", &after);
    if (st == OT_EINVAL && after == before) {
        for (i = 0; i < n; i++)
            trainer_report(tr, ot_trainer_learn(tr, ex[i], NULL));
        return;
    }
    trainer_report(tr, st);
}

int ot_cmd_trainer(int argc, char **argv)
{
    role_args a;
    ot_trainer *tr = NULL;
    ot_example *pool[TRAINER_BATCH] = {NULL};
    char *list = NULL, *urls[MAX_URLS];
    size_t n = 0, cap = 0, npool = 1, held = 0, i;
    struct stat sb;
    char *line = NULL;
    ssize_t got;
    FILE *in = stdin, *acks = NULL;
    double t0 = mono_s(), next;
    unsigned long long lines = 0, bad = 0;
    double until;
    ot_status st;
    int rc;

    if ((rc = parse_roles(argc, argv, &a)) != 0) {
        ot_config_destroy(a.cfg);
        return rc < 0 ? 0 : rc;
    }
    if (a.ps == NULL || (list = strdup(a.ps)) == NULL) {
        fprintf(stderr, "ot trainer: --ps URL[,URL...] is required\n");
        ot_config_destroy(a.cfg);
        return 2;
    }
    n = split_list(list, urls, MAX_URLS);
    if (ot_config_set_i64(a.cfg, OT_OPT_NUM_SHARDS, (int64_t)n) != OT_OK) {
        rc = ot_tool_fail("trainer", OT_EINVAL, ot_config_errmsg(a.cfg));
        goto out;
    }
    if (a.data != NULL && strcmp(a.data, "-") != 0 && (in = fopen(a.data, "r")) == NULL) {
        fprintf(stderr, "ot trainer: %s: %s\n", a.data, strerror(errno));
        rc = 1;
        goto out;
    }
    if (a.ack_log != NULL && (n != 1 || (acks = fopen(a.ack_log, "ab")) == NULL)) {
        fprintf(stderr, "ot trainer: --ack-log %s: %s\n", a.ack_log,
                n != 1 ? "needs a single --ps URL" : strerror(errno));
        rc = 2;
        goto out;
    }
    catch_signals();
    if ((st = ot_trainer_create(a.cfg, &tr)) != OT_OK) {
        rc = ot_tool_fail("trainer: create", st, "");
        goto out;
    }
    if (acks != NULL)
        oti_trainer_set_ack_hook(tr, log_ack, acks);
    if ((st = ot_trainer_connect_shards(tr, (const char *const *)urls, n)) != OT_OK) {
        rc = ot_tool_fail("trainer: connect", st, ot_trainer_errmsg(tr));
        goto out;
    }
    if (a.metrics != NULL && (st = ot_trainer_serve_metrics(tr, a.metrics)) != OT_OK) {
        rc = ot_tool_fail("trainer: --metrics", st, ot_trainer_errmsg(tr));
        goto out;
    }
    /* Batches where they change nothing: a wide-only model (the same
     * results as one at a time) and input from a regular file (a pipe or
     * terminal may pause between lines: examples are learned as they come). */
    if (ot_tool_wide_only(ot_trainer_model(tr)) && fstat(fileno(in), &sb) == 0 &&
        S_ISREG(sb.st_mode))
        npool = TRAINER_BATCH;
    for (i = 0; i < npool; i++)
        if ((st = ot_example_create(a.cfg, &pool[i])) != OT_OK) {
            rc = ot_tool_fail("trainer", st, "");
            goto out;
        }
    fprintf(stderr, "trainer shards=%zu version=%llu ready\n", n,
            (unsigned long long)ot_trainer_version(tr));
    next = t0 + (double)a.stats_ms / 1000.0;
    rc = 0;
    while (!stop_requested && (got = getline(&line, &cap, in)) >= 0) {
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        lines++;
        if (ot_example_parse(pool[held], NULL, line, len) != OT_OK) {
            bad++;
            continue;
        }
        if (++held == npool) {
            trainer_learn_held(tr, pool, held);
            held = 0;
        }
        if (a.stats_ms > 0 && mono_s() >= next) {
            print_stats("trainer", t0, tr, tr_stat, tr_stat_name);
            next += (double)a.stats_ms / 1000.0;
        }
    }
    if (held > 0)
        trainer_learn_held(tr, pool, held);
    /* send what is left; a server that is away (restarting, or busy) gets up
     * to FINAL_SYNC_S seconds of further tries */
    for (until = mono_s() + FINAL_SYNC_S; (st = ot_trainer_sync(tr)) != OT_OK;)
        if ((st != OT_ETIMEDOUT && st != OT_ECLOSED) || mono_s() >= until)
            break;
    if (st != OT_OK)
        rc = ot_tool_fail("trainer: final sync", st, ot_trainer_errmsg(tr));
    if (a.stats_ms > 0)
        print_stats("trainer", t0, tr, tr_stat, tr_stat_name);
    fprintf(stderr, "trainer lines=%llu bad=%llu version=%llu stopped\n", lines, bad,
            (unsigned long long)ot_trainer_version(tr));
out:
    free(line);
    if (in != NULL && in != stdin)
        fclose(in);
    for (i = 0; i < npool; i++)
        ot_example_destroy(pool[i]);
    ot_trainer_destroy(tr);
    if (acks != NULL)
        fclose(acks);
    free(list);
    ot_config_destroy(a.cfg);
    return rc;
}

/* ---- ot predictor --------------------------------------------------------------- */

int ot_cmd_predictor(int argc, char **argv)
{
    role_args a;
    ot_predictor *p = NULL;
    ot_predict_server *srv = NULL;
    char *reqlist = NULL, *sublist = NULL, *reqs[MAX_URLS], *subs[MAX_URLS];
    size_t nreq, nsub;
    double t0 = mono_s(), next;
    ot_status st;
    int rc;

    if ((rc = parse_roles(argc, argv, &a)) != 0) {
        ot_config_destroy(a.cfg);
        return rc < 0 ? 0 : rc;
    }
    if (a.ps == NULL || a.sub == NULL) {
        fprintf(stderr, "ot predictor: --ps REQ_URL and --sub PUB_URL are required\n");
        ot_config_destroy(a.cfg);
        return 2;
    }
    if ((reqlist = strdup(a.ps)) == NULL || (sublist = strdup(a.sub)) == NULL) {
        rc = 1;
        goto out;
    }
    nreq = split_list(reqlist, reqs, MAX_URLS);
    nsub = split_list(sublist, subs, MAX_URLS);
    if (nreq != nsub || nreq == 0) {
        fprintf(stderr, "ot predictor: --ps lists %zu URLs and --sub %zu: one of each per shard\n",
                nreq, nsub);
        rc = 2;
        goto out;
    }
    if (ot_config_set_i64(a.cfg, OT_OPT_NUM_SHARDS, (int64_t)nreq) != OT_OK) {
        rc = ot_tool_fail("predictor", OT_EINVAL, ot_config_errmsg(a.cfg));
        goto out;
    }
    catch_signals();
    if ((st = ot_predictor_create(a.cfg, &p)) != OT_OK) {
        rc = ot_tool_fail("predictor: create", st, "");
        goto out;
    }
    st = ot_predictor_subscribe_shards(p, (const char *const *)subs, (const char *const *)reqs,
                                       nreq);
    if (st != OT_OK) {
        rc = ot_tool_fail("predictor: subscribe", st, ot_predictor_errmsg(p));
        goto out;
    }
    if (a.serve != NULL && (st = ot_predict_server_start(p, a.cfg, a.serve, &srv)) != OT_OK) {
        rc = ot_tool_fail("predictor: --serve", st, a.serve);
        goto out;
    }
    if (a.metrics != NULL && (st = ot_predictor_serve_metrics(p, a.metrics)) != OT_OK) {
        rc = ot_tool_fail("predictor: --metrics", st, ot_predictor_errmsg(p));
        goto out;
    }
    fprintf(stderr, "predictor version=%llu serve=%s ready\n",
            (unsigned long long)ot_predictor_version(p),
            srv != NULL ? ot_predict_server_url(srv) : "-");
    next = t0 + (double)a.stats_ms / 1000.0;
    while (!stop_requested) {
        nap_ms(20);
        if (a.stats_ms > 0 && mono_s() >= next) {
            print_stats("predictor", t0, p, pr_stat, pr_stat_name);
            next += (double)a.stats_ms / 1000.0;
        }
    }
    ot_predict_server_destroy(srv); /* answers the requests in flight first */
    srv = NULL;
    rc = 0;
    if (a.save != NULL && (st = ot_predictor_save(p, a.save)) != OT_OK)
        rc = ot_tool_fail("predictor: --save", st, ot_predictor_errmsg(p));
    fprintf(stderr, "predictor version=%llu stopped\n", (unsigned long long)ot_predictor_version(p));
out:
    ot_predict_server_destroy(srv);
    ot_predictor_destroy(p);
    free(reqlist);
    free(sublist);
    ot_config_destroy(a.cfg);
    return rc;
}

/* ---- ot predict ------------------------------------------------------------------ */

/* --local: assembles the shards' saved masters and scores the input with it. */
static int predict_local(role_args *a, FILE *in)
{
    char *list = strdup(a->local), *files[MAX_URLS];
    size_t n, i, cap = 0;
    ot_model *m = NULL;
    ot_example *ex = NULL;
    char *line = NULL;
    ssize_t got;
    ot_status st = OT_OK;
    int rc = 0;

    if (list == NULL)
        return 1;
    n = split_list(list, files, MAX_URLS);
    for (i = 0; i < n && rc == 0; i++) {
        ot_model *s = NULL;
        if ((st = ot_model_load(NULL, files[i], &s)) != OT_OK) {
            rc = ot_tool_fail("predict: --local", st, files[i]);
        } else if (m == NULL) {
            m = s; /* shard 0 of n: its range is already in place */
            s = NULL;
            if (n > 1 && (st = ot_model_copy_shard(m, m, 0, (uint32_t)n)) != OT_OK)
                rc = ot_tool_fail("predict: --local", st, files[i]);
        } else if ((st = ot_model_copy_shard(m, s, (uint32_t)i, (uint32_t)n)) != OT_OK) {
            rc = ot_tool_fail("predict: --local", st, files[i]);
        }
        ot_model_destroy(s);
    }
    if (rc == 0 && (st = ot_example_create(a->cfg, &ex)) != OT_OK)
        rc = ot_tool_fail("predict", st, "");
    while (rc == 0 && !stop_requested && (got = getline(&line, &cap, in)) >= 0) {
        size_t len = (size_t)got;
        float score = 0;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if ((st = ot_example_parse(ex, "vw", line, len)) != OT_OK ||
            (st = ot_model_predict(m, ex, &score)) != OT_OK) {
            rc = ot_tool_fail("predict", st, ot_example_errmsg(ex));
            break;
        }
        printf("%.9g\n", (double)score);
    }
    free(line);
    ot_example_destroy(ex);
    ot_model_destroy(m);
    free(list);
    return rc;
}

static int flush_batch(ot_predict_client *c, const char *buf, size_t len, size_t count,
                       float *scores, uint64_t *version)
{
    size_t n = 0, i;
    ot_status st;

    if (count == 0)
        return 0;
    st = ot_predict_client_predict_text(c, buf, len, scores, count, &n, version);
    if (st != OT_OK)
        return ot_tool_fail("predict", st, ot_predict_client_errmsg(c));
    for (i = 0; i < n; i++)
        printf("%.9g\n", (double)scores[i]);
    return 0;
}

int ot_cmd_predict(int argc, char **argv)
{
    role_args a;
    ot_predict_client *c = NULL;
    FILE *in = stdin;
    char *line = NULL, *buf = NULL;
    size_t cap = 0, blen = 0, bcap = 0, count = 0;
    float *scores = NULL;
    uint64_t version = 0;
    ssize_t got;
    ot_status st;
    int rc;

    if ((rc = parse_roles(argc, argv, &a)) != 0) {
        ot_config_destroy(a.cfg);
        return rc < 0 ? 0 : rc;
    }
    if (a.connect == NULL && a.local == NULL) {
        fprintf(stderr, "ot predict: --connect URL or --local FILES is required\n");
        ot_config_destroy(a.cfg);
        return 2;
    }
    if (a.data != NULL && strcmp(a.data, "-") != 0 && (in = fopen(a.data, "r")) == NULL) {
        fprintf(stderr, "ot predict: %s: %s\n", a.data, strerror(errno));
        ot_config_destroy(a.cfg);
        return 1;
    }
    catch_signals();
    if (a.local != NULL) {
        rc = predict_local(&a, in);
        goto out;
    }
    if ((scores = malloc((size_t)a.batch * sizeof(float))) == NULL) {
        rc = 1;
        goto out;
    }
    if ((st = ot_predict_client_create(a.cfg, a.connect, &c)) != OT_OK) {
        rc = ot_tool_fail("predict: connect", st, a.connect);
        goto out;
    }
    rc = 0;
    while (!stop_requested && rc == 0 && (got = getline(&line, &cap, in)) >= 0) {
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if (blen + len + 1 > bcap) {
            size_t nc = bcap ? bcap * 2 : 4096;
            char *nb;
            while (nc < blen + len + 1)
                nc *= 2;
            if ((nb = realloc(buf, nc)) == NULL) {
                rc = 1;
                break;
            }
            buf = nb;
            bcap = nc;
        }
        memcpy(buf + blen, line, len);
        blen += len;
        buf[blen++] = '\n';
        if (++count == (size_t)a.batch) {
            rc = flush_batch(c, buf, blen, count, scores, &version);
            blen = 0;
            count = 0;
        }
    }
    if (rc == 0)
        rc = flush_batch(c, buf, blen, count, scores, &version);
    fflush(stdout);
    fprintf(stderr, "predict version=%llu\n", (unsigned long long)version);
out:
    free(line);
    free(buf);
    free(scores);
    if (in != stdin)
        fclose(in);
    ot_predict_client_destroy(c);
    ot_config_destroy(a.cfg);
    return rc;
}
