/*
 * bench/durability.c - what the parameter server's durability costs: sync
 * throughput with the write-ahead log off and on (docs/durability.md).
 *
 * Figures (one line each, "bench.durability.<figure> <value> <unit>"):
 *
 *  baseline.fsync_us          median time of write(64 bytes) + fdatasync on
 *                             a growing file in the bench directory, from an
 *                             otherwise idle thread: the disk's own sync
 *                             latency, measured in the same run
 *  baseline.fsync_p10_us      its 10th percentile (on virtual disks the
 *                             latency is often bimodal; docs/durability.md)
 *  syncs_per_s.<mode>         ot_trainer_sync() calls per second, one trainer
 *                             over inproc://, each sending a small delta (one
 *                             example of 5 features learned since the last
 *                             sync: 6 rows of a 2^18-weight FTRL model, z and
 *                             n, about 130 bytes), for SECONDS seconds:
 *      nodurability           checkpoint_dir "" (the baseline: no file I/O)
 *      wal_off                checkpoint_dir set, wal off (no checkpoint is
 *                             due during the run)
 *      wal_interval           wal on, wal_sync interval (100 ms)
 *      wal_every              wal on, wal_sync every (an fdatasync per sync)
 *  sync_us.<mode>             median time of one sync in that mode
 *  checkpoint_ms              ot_param_server_checkpoint() of that model
 *                             (weights and FTRL state: 3 MiB), best of 3
 *  checkpoint_bytes           its file size
 *  restart_ms                 ot_param_server_create() from a directory with
 *                             no checkpoint and the wal_every run's log
 *  replay_records_per_s       log records replayed per second by that create
 *
 * The directory is $OT_BENCH_DIR, else $TMPDIR, else /tmp (a new
 * subdirectory, removed at the end); the figures describe that disk.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "durable.h"
#include "onlinetrain.h"

#define SECONDS 2.0
#define WARMUP 50
#define FSYNCS 200
#define MAX_SAMPLES 200000

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n > 0 ? v[n / 2] : 0;
}

static void die(const char *what, int st)
{
    fprintf(stderr, "bench.durability: %s: %s\n", what, ot_status_name(st));
    exit(1);
}

static void remove_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    char path[1024];

    if (dp == NULL)
        return;
    while ((e = readdir(dp)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(dp);
    rmdir(dir);
}

/* Median and 10th percentile of write + fdatasync on a growing file. */
static void fsync_baseline(const char *dir, double *med, double *p10)
{
    static double t[FSYNCS];
    char path[1024], buf[64];
    int fd, i;

    snprintf(path, sizeof(path), "%s/fsync-probe", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (fd < 0) {
        perror("bench.durability: fsync probe");
        exit(1);
    }
    memset(buf, 'x', sizeof(buf));
    for (i = 0; i < FSYNCS; i++) {
        double t0 = now_us();
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || fdatasync(fd) != 0) {
            perror("bench.durability: fsync probe");
            exit(1);
        }
        t[i] = now_us() - t0;
    }
    close(fd);
    unlink(path);
    *med = median(t, FSYNCS); /* sorts t */
    *p10 = t[FSYNCS / 10];
}

static ot_config *make_cfg(const char *dir, const char *wal, const char *sync)
{
    ot_config *c = NULL;
    int st;

    if ((st = ot_config_create(&c)) != OT_OK)
        die("config", st);
    ot_config_set_i64(c, OT_OPT_BITS, 18);
    ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_SYNC_EVERY_EXAMPLES, 0);
    ot_config_set_i64(c, OT_OPT_SYNC_INTERVAL_MS, 0);
    ot_config_set_i64(c, OT_OPT_CHECKPOINT_INTERVAL_MS, 0);
    if (dir != NULL) {
        ot_config_set_str(c, OT_OPT_CHECKPOINT_DIR, dir);
        ot_config_set_str(c, OT_OPT_WAL, wal);
        ot_config_set_str(c, OT_OPT_WAL_SYNC, sync);
        ot_config_set_i64(c, OT_OPT_WAL_SYNC_INTERVAL_MS, 100);
    }
    return c;
}

static ot_example *example(int i)
{
    ot_example *ex = NULL;
    char name[32];
    int k;

    ot_example_create(NULL, &ex);
    for (k = 0; k < 5; k++) {
        snprintf(name, sizeof(name), "f%d", (i * 5 + k) % 100003);
        ot_example_add_feature(ex, NULL, name, 1.0f);
    }
    ot_example_set_label(ex, (i & 1) ? 1.0f : 0.0f);
    return ex;
}

/* Runs syncs for SECONDS; prints the figures of `mode`.  With keep, the
 * server is crashed (no final checkpoint) so its log stays for the restart
 * figures; *records receives the number of records it logged. */
static void run_mode(const char *mode, const char *dir, const char *wal, const char *sync,
                     int keep, double *records)
{
    static double t[MAX_SAMPLES];
    ot_config *cfg = make_cfg(dir, wal, sync);
    ot_param_server *ps = NULL;
    ot_trainer *tr = NULL;
    char url[128];
    size_t n = 0;
    double start, t0, elapsed;
    int i, st;

    snprintf(url, sizeof(url), "inproc://bench-durability-%s", mode);
    if ((st = ot_param_server_create(cfg, &ps)) != OT_OK)
        die("server create", st);
    if ((st = ot_param_server_listen(ps, url, NULL)) != OT_OK ||
        (st = ot_param_server_start(ps)) != OT_OK)
        die("server listen", st);
    ot_config_set_i64(cfg, OT_OPT_TRAINER_ID, 1);
    if ((st = ot_trainer_create(cfg, &tr)) != OT_OK || (st = ot_trainer_connect(tr, url)) != OT_OK)
        die("trainer", st);
    for (i = 0; i < WARMUP; i++) {
        ot_example *ex = example(i);
        ot_trainer_learn(tr, ex, NULL);
        ot_example_destroy(ex);
        if ((st = ot_trainer_sync(tr)) != OT_OK)
            die("sync", st);
    }
    start = now_us();
    while ((elapsed = now_us() - start) < SECONDS * 1e6 && n < MAX_SAMPLES) {
        ot_example *ex = example(i++);
        ot_trainer_learn(tr, ex, NULL);
        ot_example_destroy(ex);
        t0 = now_us();
        if ((st = ot_trainer_sync(tr)) != OT_OK)
            die("sync", st);
        t[n++] = now_us() - t0;
    }
    printf("bench.durability.syncs_per_s.%s %.0f syncs/s\n", mode, (double)n / (elapsed / 1e6));
    printf("bench.durability.sync_us.%s %.1f us\n", mode, median(t, n));
    if (records != NULL)
        ot_param_server_stat(ps, "wal_records", records);
    ot_trainer_destroy(tr);
    if (keep)
        oti_param_server_crash(ps);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
}

static void make_subdir(char *out, size_t n, const char *base, const char *name)
{
    snprintf(out, n, "%s/%s", base, name);
}

int main(void)
{
    const char *base = getenv("OT_BENCH_DIR");
    char root[512], dir[600];
    ot_config *cfg;
    ot_param_server *ps = NULL;
    double records = 0, t0, best = 1e30, bytes = 0, ms, med, p10;
    int k, st;

    if (base == NULL || *base == '\0')
        base = getenv("TMPDIR");
    if (base == NULL || *base == '\0')
        base = "/tmp";
    snprintf(root, sizeof(root), "%s/ot-bench-durability-XXXXXX", base);
    if (mkdtemp(root) == NULL) {
        perror("bench.durability: mkdtemp");
        return 1;
    }
    fprintf(stderr, "# bench.durability: directory %s\n", root);

    fsync_baseline(root, &med, &p10);
    printf("bench.durability.baseline.fsync_us %.1f us\n", med);
    printf("bench.durability.baseline.fsync_p10_us %.1f us\n", p10);
    run_mode("nodurability", NULL, "off", "every", 0, NULL);
    make_subdir(dir, sizeof(dir), root, "off");
    run_mode("wal_off", dir, "off", "every", 0, NULL);
    make_subdir(dir, sizeof(dir), root, "interval");
    run_mode("wal_interval", dir, "on", "interval", 0, NULL);
    make_subdir(dir, sizeof(dir), root, "every");
    run_mode("wal_every", dir, "on", "every", 1, &records);

    /* Restart from the wal_every run's log alone (no checkpoint). */
    cfg = make_cfg(dir, "on", "every");
    t0 = now_us();
    if ((st = ot_param_server_create(cfg, &ps)) != OT_OK)
        die("restart", st);
    ms = (now_us() - t0) / 1e3;
    printf("bench.durability.restart_ms %.1f ms\n", ms);
    printf("bench.durability.replay_records_per_s %.0f records/s\n", records / (ms / 1e3));
    /* Checkpoints of the restored master: the first writes the version the
     * log reached; each later one follows one more sync. */
    if ((st = ot_param_server_listen(ps, "inproc://bench-durability-ck", NULL)) != OT_OK ||
        (st = ot_param_server_start(ps)) != OT_OK)
        die("listen", st);
    ot_config_set_i64(cfg, OT_OPT_TRAINER_ID, 1);
    for (k = 0; k < 3; k++) {
        if (k > 0) {
            ot_trainer *tr = NULL;
            ot_example *ex = example(k);
            if ((st = ot_trainer_create(cfg, &tr)) != OT_OK ||
                (st = ot_trainer_connect(tr, "inproc://bench-durability-ck")) != OT_OK)
                die("trainer", st);
            ot_trainer_learn(tr, ex, NULL);
            if ((st = ot_trainer_sync(tr)) != OT_OK)
                die("sync", st);
            ot_example_destroy(ex);
            ot_trainer_destroy(tr);
        }
        t0 = now_us();
        if ((st = ot_param_server_checkpoint(ps)) != OT_OK)
            die("checkpoint", st);
        ms = (now_us() - t0) / 1e3;
        if (ms < best)
            best = ms;
    }
    ot_param_server_stat(ps, "checkpoint_bytes", &bytes);
    printf("bench.durability.checkpoint_ms %.1f ms\n", best);
    printf("bench.durability.checkpoint_bytes %.0f bytes\n", bytes);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
    make_subdir(dir, sizeof(dir), root, "interval");
    remove_dir(dir);
    make_subdir(dir, sizeof(dir), root, "off");
    remove_dir(dir);
    rmdir(root);
    return 0;
}
