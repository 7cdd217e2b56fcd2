/*
 * check_examples.c - the example programs in examples/ and `ot cluster`,
 * run as the user runs them: as separate processes, from the build
 * directory (test_build_dir()).  Tagged "net": they open sockets.
 *
 * Nothing here creates nng sockets or threads in the test process itself;
 * the programs run in children started with fork and exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests.h"

/* A child process with its standard input and output (and error) on pipes. */
typedef struct child {
    pid_t pid;
    FILE *in;  /* the child's standard input (NULL: /dev/null) */
    FILE *out; /* the child's standard output */
} child;

static void program_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", test_build_dir(), name);
    ck_assert_msg(access(buf, X_OK) == 0, "%s is not built (make examples tools)", buf);
}

/* Starts argv[0] with argv; with_stdin gives it a pipe as standard input. */
static void spawn(child *c, char *const argv[], int with_stdin)
{
    int inp[2] = {-1, -1}, outp[2];

    ck_assert_int_eq(pipe(outp), 0);
    if (with_stdin)
        ck_assert_int_eq(pipe(inp), 0);
    fflush(NULL);
    c->pid = fork();
    ck_assert_int_ge(c->pid, 0);
    if (c->pid == 0) {
        dup2(outp[1], 1);
        dup2(outp[1], 2); /* error messages go with the output, into failure reports */
        close(outp[0]);
        close(outp[1]);
        if (with_stdin) {
            dup2(inp[0], 0);
            close(inp[0]);
            close(inp[1]);
        } else {
            int fd = open("/dev/null", O_RDONLY);
            if (fd >= 0)
                dup2(fd, 0);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(outp[1]);
    fcntl(outp[0], F_SETFD, FD_CLOEXEC); /* later children must not hold it open */
    c->out = fdopen(outp[0], "r");
    ck_assert_ptr_nonnull(c->out);
    c->in = NULL;
    if (with_stdin) {
        close(inp[0]);
        fcntl(inp[1], F_SETFD, FD_CLOEXEC);
        c->in = fdopen(inp[1], "w");
        ck_assert_ptr_nonnull(c->in);
    }
}

/* Waits for a child; returns its exit status, or 128 + signal. */
static int reap(child *c)
{
    int status = 0;

    if (c->in != NULL)
        fclose(c->in);
    c->in = NULL;
    while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (c->out != NULL)
        fclose(c->out);
    c->out = NULL;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Reads one line of the child's output (without its newline); 0 at the end. */
static int read_line(child *c, char *buf, size_t n)
{
    size_t len;

    if (fgets(buf, (int)n, c->out) == NULL)
        return 0;
    len = strcspn(buf, "\n");
    buf[len] = '\0';
    return 1;
}

/* Runs a program to its end, keeping its whole output in buf; returns the exit status. */
static int run_capture(char *const argv[], char *buf, size_t n)
{
    child c;
    size_t len = 0, got;

    spawn(&c, argv, 0);
    while (len + 1 < n && (got = fread(buf + len, 1, n - 1 - len, c.out)) > 0)
        len += got;
    buf[len] = '\0';
    return reap(&c);
}

static void sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* ---- examples/cluster_inproc ------------------------------------------------------ */

START_TEST(test_examples_cluster_inproc_serves_the_master)
{
    char path[512], out[4096];
    char *argv[2];
    unsigned long long master = 0, served = 0;
    double p_even = -1, p_odd = -1;
    const char *l;
    int rc;

    program_path(path, sizeof(path), "examples/cluster_inproc");
    argv[0] = path;
    argv[1] = NULL;
    rc = run_capture(argv, out, sizeof(out));
    ck_assert_msg(rc == 0, "cluster_inproc exited with %d:\n%s", rc, out);
    l = strstr(out, "master version ");
    ck_assert_msg(l != NULL && sscanf(l, "master version %llu, served version %llu", &master,
                                      &served) == 2, "unexpected output:\n%s", out);
    /* Two trainers, 20000 examples each, a sync every 500: 80 deltas, and
     * possibly one more from each final sync (rounding residue: the
     * snapshot advanced by D in float need not equal the local model). */
    ck_assert_uint_ge(master, 80);
    ck_assert_uint_le(master, 82);
    ck_assert_uint_ge(served, master);
    l = strstr(out, "p(click | item i4) = ");
    ck_assert_msg(l != NULL && sscanf(l, "p(click | item i4) = %lf, p(click | item i7) = %lf",
                                      &p_even, &p_odd) == 2, "unexpected output:\n%s", out);
    /* the served model learned the rule: even items are clicked */
    ck_assert_double_gt(p_even, 0.9);
    ck_assert_double_lt(p_odd, 0.1);
}
END_TEST

/* ---- the three TCP programs --------------------------------------------------------- */

/* Asks the predictor for one prediction; returns it and the version it reports. */
static double ask(child *pred, const char *example, unsigned long long *version)
{
    char line[256];
    double p = -1;

    fprintf(pred->in, "%s\n", example);
    fflush(pred->in);
    ck_assert_msg(read_line(pred, line, sizeof(line)), "predictor_tcp ended early");
    ck_assert_msg(sscanf(line, "%lf version %llu", &p, version) == 2, "predictor said \"%s\"", line);
    return p;
}

START_TEST(test_examples_tcp_roles_serve_what_was_trained)
{
    char ps_path[512], tr_path[512], pr_path[512], line[512], out[4096];
    char turl[256] = "", purl[256] = "", any[] = "tcp://127.0.0.1:0", id[] = "1", n[] = "20000";
    char *ps_argv[4], *tr_argv[5], *pr_argv[4];
    child ps, pred;
    unsigned long long v0 = 99, master = 0, v = 0, last_shown = 0;
    double p_even = -1, p_odd = -1, loss = -1;
    long waited = 0;
    int rc, stopped = 0;

    program_path(ps_path, sizeof(ps_path), "examples/ps_tcp");
    program_path(tr_path, sizeof(tr_path), "examples/trainer_tcp");
    program_path(pr_path, sizeof(pr_path), "examples/predictor_tcp");

    /* The server on free ports: it prints the URLs it is bound to. */
    ps_argv[0] = ps_path;
    ps_argv[1] = any;
    ps_argv[2] = any;
    ps_argv[3] = NULL;
    spawn(&ps, ps_argv, 0);
    ck_assert(read_line(&ps, line, sizeof(line)));
    ck_assert_msg(sscanf(line, "trainers %255s", turl) == 1, "ps_tcp said \"%s\"", line);
    ck_assert(read_line(&ps, line, sizeof(line)));
    ck_assert_msg(sscanf(line, "predictors %255s", purl) == 1, "ps_tcp said \"%s\"", line);
    ck_assert_int_eq(strncmp(turl, "tcp://127.0.0.1:", 16), 0);
    ck_assert_str_ne(turl + 16, "0");
    ck_assert_str_ne(turl, purl);

    /* A predictor subscribes before anything is trained. */
    pr_argv[0] = pr_path;
    pr_argv[1] = purl;
    pr_argv[2] = turl;
    pr_argv[3] = NULL;
    spawn(&pred, pr_argv, 1);
    ck_assert(read_line(&pred, line, sizeof(line)));
    ck_assert_msg(sscanf(line, "subscribed at version %llu", &v0) == 1, "predictor said \"%s\"",
                  line);
    ck_assert_uint_eq(v0, 0);
    p_even = ask(&pred, "|user u3 |item i4", &v);
    ck_assert_uint_eq(v, 0);
    ck_assert_double_eq_tol(p_even, 0.5, 1e-6); /* the untrained model */

    /* A trainer learns its stream and syncs; it reports the master version. */
    tr_argv[0] = tr_path;
    tr_argv[1] = turl;
    tr_argv[2] = id;
    tr_argv[3] = n;
    tr_argv[4] = NULL;
    rc = run_capture(tr_argv, out, sizeof(out));
    ck_assert_msg(rc == 0, "trainer_tcp exited with %d:\n%s", rc, out);
    ck_assert_msg(sscanf(out, "trainer 1: 20000 examples, average loss %lf, master version %llu",
                         &loss, &master) == 2, "trainer_tcp said:\n%s", out);
    ck_assert_uint_ge(master, 40); /* a delta every 500 examples, perhaps one more at the end */
    ck_assert_uint_le(master, 41);
    ck_assert_double_lt(loss, 0.3);

    /* The predictor serves that version once a real-time update (every
     * 100 ms) has carried it; ask until it does, for up to 30 s. */
    for (;;) {
        p_even = ask(&pred, "|user u3 |item i4", &v);
        if (v >= master || waited >= 30000)
            break;
        sleep_ms(20);
        waited += 20;
    }
    ck_assert_msg(v >= master, "the predictor still serves version %llu of %llu", v, master);
    p_odd = ask(&pred, "|user u3 |item i7", &v);
    ck_assert_double_gt(p_even, 0.9);
    ck_assert_double_lt(p_odd, 0.1);
    ck_assert_int_eq(reap(&pred), 0); /* ends at the end of its input */

    /* The server stops on SIGTERM and reports the deltas it applied. */
    ck_assert_int_eq(kill(ps.pid, SIGTERM), 0);
    while (read_line(&ps, line, sizeof(line))) {
        unsigned long long sv, deltas;
        if (sscanf(line, "master version %llu", &sv) == 1)
            last_shown = sv;
        if (sscanf(line, "stopped at master version %llu: %llu deltas in", &sv, &deltas) == 2) {
            ck_assert_uint_eq(sv, master);
            ck_assert_uint_eq(deltas, master);
            stopped = 1;
        }
    }
    ck_assert_msg(stopped, "ps_tcp printed no final line");
    ck_assert_uint_le(last_shown, master);
    ck_assert_int_eq(reap(&ps), 0);
}
END_TEST

START_TEST(test_examples_tcp_programs_refuse_bad_usage)
{
    char path[512], out[1024];
    char *argv[2];
    const char *names[] = {"examples/ps_tcp", "examples/trainer_tcp", "examples/predictor_tcp"};
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        program_path(path, sizeof(path), names[i]);
        argv[0] = path;
        argv[1] = NULL;
        ck_assert_int_eq(run_capture(argv, out, sizeof(out)), 2);
    }
}
END_TEST

/* ---- ot cluster ----------------------------------------------------------------------- */

/* Runs `ot cluster` with extra flags; returns its exit status, output in out. */
static int ot_cluster(char *out, size_t n, const char *const *flags)
{
    char path[512];
    char *argv[40];
    int a = 0;

    program_path(path, sizeof(path), "ot");
    argv[a++] = path;
    argv[a++] = (char *)"cluster";
    while (*flags != NULL && a < 39)
        argv[a++] = (char *)*flags++;
    argv[a] = NULL;
    return run_capture(argv, out, n);
}

typedef struct summary {
    unsigned long long examples, served, master, lag_max;
    int trainers, predictors;
    double train_loss, served_loss, rt, full, mb, full_only_mb;
} summary;

static void parse_summary(const char *out, summary *s)
{
    const char *l = strstr(out, " examples in ");
    int got = 0;

    memset(s, 0, sizeof(*s));
    ck_assert_msg(l != NULL, "no summary line in:\n%s", out);
    while (l > out && l[-1] != '\n')
        l--;
    got = sscanf(l, "cluster: %llu examples in %*f s (%*f/s), %d trainers, %d predictors: "
                    "trainer loss %lf, served loss %lf (%*f%%); %lf real-time + %lf full updates, "
                    "%lf MB to each predictor vs %lf MB",
                 &s->examples, &s->trainers, &s->predictors, &s->train_loss, &s->served_loss,
                 &s->rt, &s->full, &s->mb, &s->full_only_mb);
    ck_assert_msg(got == 9, "summary not understood (%d fields):\n%s", got, l);
    l = strstr(l, "at the end the predictors serve version ");
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(sscanf(l, "at the end the predictors serve version %llu of %llu", &s->served,
                            &s->master),
                     2);
}

START_TEST(test_examples_ot_cluster_learns_and_serves)
{
    static char out[65536];
    const char *flags[] = {"-n", "3", "-m", "2", "--examples", "30000", "--ids", "300",
                           "--namespaces", "8", "-b", "16", "--sync-every", "500",
                           "--rt-ms", "20", "--full-ms", "200", NULL};
    summary s;
    int rc = ot_cluster(out, sizeof(out), flags);

    ck_assert_msg(rc == 0, "ot cluster exited with %d:\n%s", rc, out);
    parse_summary(out, &s);
    ck_assert_uint_eq(s.examples, 30000);
    ck_assert_int_eq(s.trainers, 3);
    ck_assert_int_eq(s.predictors, 2);
    /* The trainers learned: below the loss of predicting 0.5 (log 2).  How
     * much of that the predictors served during the run depends on timing
     * (when the real-time updates landed), so only its range is checked. */
    ck_assert_double_lt(s.train_loss, 0.68);
    ck_assert_double_gt(s.served_loss, 0.0);
    ck_assert_double_le(s.served_loss, 0.6932);
    /* Every example was synced; one more update brought the predictors there. */
    ck_assert_uint_ge(s.master, 30000 / 500);
    ck_assert_uint_eq(s.served, s.master);
    /* The table was printed, with its header. */
    ck_assert_ptr_nonnull(strstr(out, "train_loss"));
    ck_assert_ptr_nonnull(strstr(out, "served version lag"));
}
END_TEST

START_TEST(test_examples_ot_cluster_full_only_sends_no_realtime_updates)
{
    static char out[65536];
    /* full updates every 20 ms: scheduled ones go out while the trainers
     * sync (how many depends on timing; none of them may bring a real-time
     * update, and --full-only overrides --rt-ms) */
    const char *flags[] = {"-n", "2", "-m", "1", "--examples", "10000", "--ids", "300",
                           "--namespaces", "8", "-b", "16", "--rt-ms", "20", "--full-ms", "20",
                           "--full-only", "-q", NULL};
    summary s;
    int rc = ot_cluster(out, sizeof(out), flags);

    ck_assert_msg(rc == 0, "ot cluster exited with %d:\n%s", rc, out);
    parse_summary(out, &s);
    ck_assert_uint_eq(s.examples, 10000);
    ck_assert_double_eq(s.rt, 0.0);
    ck_assert_double_ge(s.full, 1.0);              /* at least the last one */
    ck_assert_ptr_null(strstr(out, "train_loss")); /* --quiet: no table */
    ck_assert_uint_eq(s.served, s.master);         /* the last full update */
}
END_TEST

START_TEST(test_examples_ot_cluster_reads_a_file_and_refuses_bad_flags)
{
    static char out[65536];
    char path[] = "/tmp/ot-check-examples-XXXXXX";
    const char *flags[] = {"-d", path, "-n", "2", "-m", "1", "-b", "12", "--sync-every", "10",
                           "-q", "--url-base", "ipc", NULL};
    const char *bad1[] = {"--no-such-flag", NULL};
    const char *bad2[] = {"-n", "0", NULL};
    const char *bad3[] = {"--option", "no_such_option=1", NULL};
    const char *bad4[] = {"--rt-ms", "100", "--full-ms", "500", NULL}; /* full < 10 x rt */
    summary s;
    FILE *f;
    int fd, i, rc;

    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    for (i = 0; i < 400; i++)
        fprintf(f, "%d |a x%d |b y%d\n%s", i % 3 == 0 ? 1 : -1, i % 3, i % 7,
                i == 200 ? "|a unlabelled\n" : "");
    fclose(f);
    rc = ot_cluster(out, sizeof(out), flags);
    unlink(path);
    ck_assert_msg(rc == 0, "ot cluster exited with %d:\n%s", rc, out);
    parse_summary(out, &s);
    ck_assert_uint_eq(s.examples, 400); /* the unlabelled line is skipped */
    ck_assert_uint_eq(s.served, s.master);
    ck_assert_double_lt(s.train_loss, 0.6);

    ck_assert_int_eq(ot_cluster(out, sizeof(out), bad1), 2);
    ck_assert_int_eq(ot_cluster(out, sizeof(out), bad2), 2);
    ck_assert_int_eq(ot_cluster(out, sizeof(out), bad3), 2);
    ck_assert_int_eq(ot_cluster(out, sizeof(out), bad4), 2);
}
END_TEST

/* Splits a CSV line (no quoting) into at most max fields; returns the count. */
static int csv_split(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;

    line[strcspn(line, "\r\n")] = '\0';
    while (n < max) {
        f[n++] = p;
        p = strchr(p, ',');
        if (p == NULL)
            break;
        *p++ = '\0';
    }
    return n;
}

/* --csv and --freshness-csv: the time series the charts of `make plots` are drawn from. */
START_TEST(test_examples_ot_cluster_writes_csv_time_series)
{
    static char out[65536];
    char dir[] = "/tmp/ot-check-csv-XXXXXX", csv[64], fresh[64], line[1024], *f[16];
    const char *flags[] = {"-n", "2", "-m", "1", "--examples", "40000", "--ids", "300", "-b",
                           "14", "--csv", csv, "--csv-ms", "20", "--freshness-csv", fresh, "-q",
                           NULL};
    const char *bad[] = {"--examples", "100", "--csv", "/nonexistent-dir/x.csv", NULL};
    const char *to_stdout[] = {"--examples", "2000", "-b", "12", "--csv", "-", "-q", NULL};
    double t = 0, v[16], loss_sum = 0, loss_n = 0, prev[16] = {0};
    summary s;
    FILE *fp;
    int rc, rows = 0, k;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(csv, sizeof(csv), "%s/a.csv", dir);
    snprintf(fresh, sizeof(fresh), "%s/f.csv", dir);
    rc = ot_cluster(out, sizeof(out), flags);
    ck_assert_msg(rc == 0, "ot cluster exited with %d:\n%s", rc, out);
    parse_summary(out, &s);
    ck_assert_uint_eq(s.examples, 40000);

    fp = fopen(csv, "r");
    ck_assert_ptr_nonnull(fp);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), fp));
    ck_assert_str_eq(line, "time_s,examples,train_loss,served_loss,rt_updates,full_updates,"
                           "rt_bytes,full_bytes,fullonly_bytes,master_version,served_version,"
                           "lag_ver,stale_ms\n");
    while (fgets(line, sizeof(line), fp) != NULL) {
        ck_assert_int_eq(csv_split(line, f, 16), 13);
        for (k = 0; k < 13; k++) {
            char *end;
            if ((k == 2 || k == 3) && f[k][0] == '\0') { /* no example since the last row */
                v[k] = -1;
                continue;
            }
            v[k] = strtod(f[k], &end);
            ck_assert_msg(*end == '\0' && f[k][0] != '\0', "row %d field %d: \"%s\"", rows, k,
                          f[k]);
        }
        /* Counts and bytes only grow; the losses cover the examples since the last row. */
        ck_assert_double_ge(v[0], t);
        t = v[0];
        for (k = 1; k < 13; k++) {
            if (k == 1 || (k >= 4 && k <= 9))
                ck_assert_msg(v[k] >= prev[k], "row %d: column %d went back", rows, k);
        }
        if (v[1] > prev[1]) {
            ck_assert_double_gt(v[2], 0.0);
            ck_assert_double_gt(v[3], 0.0);
            loss_sum += v[2] * (v[1] - prev[1]);
            loss_n += v[1] - prev[1];
        } else {
            ck_assert_double_eq(v[2], -1.0);
        }
        ck_assert_double_eq(v[11], v[9] - v[10]); /* lag = master - served */
        ck_assert_double_ge(v[12], 0.0);
        memcpy(prev, v, sizeof(prev));
        rows++;
    }
    fclose(fp);
    ck_assert_int_ge(rows, 1);
    /* The last row: every example, and at least what the summary counted. */
    ck_assert_double_eq(prev[1], 40000.0);
    ck_assert_double_ge(prev[4], s.rt);
    ck_assert_double_ge(prev[5], s.full);
    ck_assert_double_ge(prev[6] + prev[7], s.mb * 1e6 - 5e3);
    /* The rows' losses, weighted by their examples, are the summary's loss. */
    ck_assert_msg(fabs(loss_sum / loss_n - s.train_loss) < 1e-5, "rows %.6f, summary %.6f",
                  loss_sum / loss_n, s.train_loss);

    fp = fopen(fresh, "r");
    ck_assert_ptr_nonnull(fp);
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), fp));
    ck_assert_str_eq(line, "time_s,lag_ver,stale_ms\n");
    rows = 0;
    t = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        double a, b, c;
        ck_assert_int_eq(sscanf(line, "%lf,%lf,%lf", &a, &b, &c), 3);
        ck_assert_double_ge(a, t);
        ck_assert_double_ge(b, 0.0);
        ck_assert_double_ge(c, 0.0);
        t = a;
        rows++;
    }
    fclose(fp);
    ck_assert_int_ge(rows, 1);
    unlink(csv);
    unlink(fresh);
    rmdir(dir);

    /* A file that cannot be written: an error before anything runs. */
    ck_assert_int_eq(ot_cluster(out, sizeof(out), bad), 1);
    ck_assert_ptr_nonnull(strstr(out, "--csv /nonexistent-dir/x.csv"));
    /* "-": standard output. */
    ck_assert_int_eq(ot_cluster(out, sizeof(out), to_stdout), 0);
    ck_assert_ptr_nonnull(strstr(out, "time_s,examples,train_loss,"));
    ck_assert_ptr_nonnull(strstr(out, ",2000,"));
}
END_TEST

Suite *suite_examples(void)
{
    Suite *s = suite_create("examples");
    TCase *tc = tcase_create("examples");

    tcase_set_tags(tc, "net");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_examples_cluster_inproc_serves_the_master);
    tcase_add_test(tc, test_examples_tcp_roles_serve_what_was_trained);
    tcase_add_test(tc, test_examples_tcp_programs_refuse_bad_usage);
    tcase_add_test(tc, test_examples_ot_cluster_learns_and_serves);
    tcase_add_test(tc, test_examples_ot_cluster_full_only_sends_no_realtime_updates);
    tcase_add_test(tc, test_examples_ot_cluster_reads_a_file_and_refuses_bad_flags);
    tcase_add_test(tc, test_examples_ot_cluster_writes_csv_time_series);
    suite_add_tcase(s, tc);
    return s;
}
