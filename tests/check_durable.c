/*
 * check_durable.c - durability (checkpoints, write-ahead log, restart),
 * exactly-once syncs across server restarts, the predictor's save and load,
 * and the roles' security settings and limits over real sockets
 * (docs/durability.md, docs/security.md).
 *
 * Every test makes its sockets and threads inside the forked child, and its
 * files in a fresh directory under $TMPDIR (or /tmp), removed at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "delta.h"
#include "durable.h"
#include "model.h"
#include "protocol.h"
#include "tests.h"
#include "transport.h"

#define CERTS "tests/certs/"
#define KEY_HEX "00112233445566778899aabbccddeeff0123456789abcdef"
#define BAD_KEY_HEX "ffeeddccbbaa99887766554433221100fedcba9876543210"

/* ---- helpers ------------------------------------------------------------------- */

/* Request timeouts of the tests, stretched under valgrind (make
 * check-valgrind sets OT_VALGRIND), where a TLS handshake alone can take
 * seconds. */
static int64_t ms(int64_t t)
{
    return getenv("OT_VALGRIND") != NULL ? 10 * t : t;
}

static void make_dir(char *buf, size_t n)
{
    const char *t = getenv("TMPDIR");

    if (t == NULL || *t == '\0' || strlen(t) > 60)
        t = "/tmp";
    snprintf(buf, n, "%s/ot-durable-XXXXXX", t);
    ck_assert_ptr_nonnull(mkdtemp(buf));
}

/* Removes a directory and the plain files in it. */
static void remove_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    char path[512];

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

/* Number of files in dir whose name starts with prefix and ends with suffix. */
static int count_files(const char *dir, const char *prefix, const char *suffix)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(dp);
    while ((e = readdir(dp)) != NULL) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && l >= sl &&
            strcmp(e->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(dp);
    return n;
}

static void file_path(char *out, size_t n, const char *dir, const char *prefix, uint64_t v,
                      const char *suffix)
{
    snprintf(out, n, "%s/%s%020llu%s", dir, prefix, (unsigned long long)v, suffix);
}

static long file_size(const char *path)
{
    struct stat sb;

    ck_assert_int_eq(stat(path, &sb), 0);
    return (long)sb.st_size;
}

static void inproc_url(char *buf, size_t n, const char *what)
{
    static int seq;

    snprintf(buf, n, "inproc://ot-durable-%ld-%s-%d", (long)getpid(), what, seq++);
}

/* Small models, syncs by hand, nothing published on a schedule. */
static ot_config *base_cfg(const char *dir)
{
    ot_config *c = NULL;

    ck_assert_int_eq(ot_config_create(&c), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, 8), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_EVERY_EXAMPLES, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_TIMEOUT_MS, ms(3000)), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_RECONNECT_MS, 10), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_CHECKPOINT_INTERVAL_MS, 0), OT_OK);
    if (dir != NULL)
        ck_assert_int_eq(ot_config_set_str(c, OT_OPT_CHECKPOINT_DIR, dir), OT_OK);
    return c;
}

static ot_param_server *server_at(const ot_config *cfg, const char *url, const char *purl)
{
    ot_param_server *ps = NULL;
    ot_status st = ot_param_server_create(cfg, &ps);

    ck_assert_msg(st == OT_OK, "create: %s: %s", ot_status_name(st),
                  ps != NULL ? ot_param_server_errmsg(ps) : "");
    st = ot_param_server_listen(ps, url, purl);
    ck_assert_msg(st == OT_OK, "listen %s: %s", url, ot_param_server_errmsg(ps));
    ck_assert_int_eq(ot_param_server_start(ps), OT_OK);
    return ps;
}

/* A sync right after a server restart: the trainer's dialer may still be
 * reconnecting, so a transient failure is tried again (the frame stays
 * pending with its sequence number). */
static void sync_after_restart(ot_trainer *tr)
{
    ot_status st = OT_ETIMEDOUT;
    int i;

    for (i = 0; i < 20; i++) {
        st = ot_trainer_sync(tr);
        if (st != OT_ETIMEDOUT && st != OT_ECLOSED && st != OT_ETRANSPORT &&
            st != OT_ECONNREFUSED)
            break;
    }
    ck_assert_msg(st == OT_OK, "sync: %s: %s", ot_status_name(st), ot_trainer_errmsg(tr));
}

/* A server stat once it reaches `want` (a dropped message is counted when
 * the server gets to it, which a loaded machine may delay), else its value
 * after 10 s. */
static double stat_ps_reaches(const ot_param_server *ps, const char *name, double want)
{
    double v = tu_stat_ps(ps, name);
    int i;

    for (i = 0; i < 1000 && v < want; i++) {
        tu_sleep_ms(10);
        v = tu_stat_ps(ps, name);
    }
    return v;
}

/* ---- options ---------------------------------------------------------------------- */

START_TEST(test_durable_options_defaults_and_checks)
{
    ot_config *c = NULL;
    const char *s;
    int64_t i;
    int id;
    char longkey[600];

    ck_assert_int_eq(ot_config_create(&c), OT_OK);
    ck_assert_int_eq(ot_config_get_str(c, OT_OPT_CHECKPOINT_DIR, &s), OT_OK);
    ck_assert_str_eq(s, "");
    ck_assert_int_eq(ot_config_get_i64(c, OT_OPT_CHECKPOINT_INTERVAL_MS, &i), OT_OK);
    ck_assert_int_eq(i, 60000);
    ck_assert_int_eq(ot_config_get_str(c, OT_OPT_WAL, &s), OT_OK);
    ck_assert_str_eq(s, "on");
    ck_assert_int_eq(ot_config_get_str(c, OT_OPT_WAL_SYNC, &s), OT_OK);
    ck_assert_str_eq(s, "every");
    ck_assert_int_eq(ot_config_get_i64(c, OT_OPT_WAL_SYNC_INTERVAL_MS, &i), OT_OK);
    ck_assert_int_eq(i, 100);
    ck_assert_int_eq(ot_config_get_str(c, OT_OPT_TLS_AUTH, &s), OT_OK);
    ck_assert_str_eq(s, "required");
    ck_assert_int_eq(ot_config_get_str(c, OT_OPT_HMAC_KEY, &s), OT_OK);
    ck_assert_str_eq(s, "");
    ck_assert_int_eq(ot_config_get_i64(c, OT_OPT_MAX_DELTA_ENTRIES, &i), OT_OK);
    ck_assert_int_eq(i, INT64_C(1) << 24);
    ck_assert_int_eq(ot_config_get_i64(c, OT_OPT_MAX_PREDICT_BATCH, &i), OT_OK);
    ck_assert_int_eq(i, 4096);
    ck_assert_str_eq(ot_option_choices(OT_OPT_WAL_SYNC), "every|interval|none");
    ck_assert_str_eq(ot_option_choices(OT_OPT_TLS_AUTH), "none|optional|required");
    ck_assert_int_eq(ot_option_by_name("checkpoint_dir", &id), OT_OK);
    ck_assert_int_eq(id, OT_OPT_CHECKPOINT_DIR);
    ck_assert_int_eq(ot_option_by_name("hmac_key", &id), OT_OK);
    ck_assert_int_eq(id, OT_OPT_HMAC_KEY);
    /* hmac_key: an even number of hex digits, at most 256 bytes */
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HMAC_KEY, "abc"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HMAC_KEY, "zz"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HMAC_KEY, "00fF"), OT_OK);
    memset(longkey, 'a', 514);
    longkey[514] = '\0';
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HMAC_KEY, longkey), OT_ERANGE);
    longkey[512] = '\0';
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HMAC_KEY, longkey), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HMAC_KEY, ""), OT_OK);
    /* paths: no control characters */
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_CHECKPOINT_DIR, "a\nb"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_WAL_SYNC, "sometimes"), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_MAX_DELTA_ENTRIES, 0), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_text(c, OT_OPT_WAL, "off"), OT_OK);
    ot_config_destroy(c);
}
END_TEST

START_TEST(test_durable_hex_decode)
{
    uint8_t k[4];
    size_t n = 99;

    ck_assert_int_eq(oti_hex_decode("", k, sizeof(k), &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(oti_hex_decode("0aFf", k, sizeof(k), &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(k[0], 0x0a);
    ck_assert_uint_eq(k[1], 0xff);
    ck_assert_int_eq(oti_hex_decode("0a0b0c0d0e", k, sizeof(k), &n), -1); /* too long */
    ck_assert_int_eq(oti_hex_decode("0g", k, sizeof(k), &n), -1);
    ck_assert_int_eq(oti_hex_decode("0", k, sizeof(k), &n), -1);
}
END_TEST

/* ---- file formats ------------------------------------------------------------------- */

START_TEST(test_durable_checkpoint_file_roundtrip_and_damage)
{
    char dir[256], path[512];
    ot_config *cfg = base_cfg(NULL);
    ot_model *m = NULL, *back = NULL;
    oti_alloc a = {NULL, NULL};
    oti_ckpt_state s, r;
    oti_ckpt_trainer tt[2] = {{3, 17}, {9, 4}};
    uint8_t *bytes;
    long size, cut;
    FILE *fp;
    oti_src src;
    char err[OTI_ERRMSG_LEN];

    make_dir(dir, sizeof(dir));
    ck_assert_int_eq(ot_model_create(cfg, &m), OT_OK);
    ck_assert_int_eq(ot_model_create(cfg, &back), OT_OK);
    tu_learn_n(NULL, m, "ck", 30);
    memset(&s, 0, sizeof(s));
    memset(&r, 0, sizeof(r));
    s.version = 42;
    s.published_version = 40;
    s.shard = 0;
    s.trainers = tt;
    s.ntrainers = 2;
    snprintf(path, sizeof(path), "%s/checkpoint-x.otc", dir);
    ck_assert_int_eq(oti_ckpt_save(&a, path, m, &s, err), OT_OK);
    size = file_size(path);
    ck_assert_int_eq(size, (long)oti_ckpt_file_size(m, 2));
    /* read it back from the file */
    fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(oti_src_file(&src, fp), OT_OK);
    r.shard = 0;
    ck_assert_int_eq(oti_ckpt_read(&a, &src, back, &r, err), OT_OK);
    fclose(fp);
    ck_assert(tu_same_bits(m, back, 1));
    ck_assert_uint_eq(r.version, 42);
    ck_assert_uint_eq(r.published_version, 40);
    ck_assert_uint_eq(r.ntrainers, 2);
    ck_assert_uint_eq(r.trainers[1].id, 9);
    ck_assert_uint_eq(r.trainers[1].last_seq, 4);

    bytes = malloc((size_t)size);
    fp = fopen(path, "rb");
    ck_assert_uint_eq(fread(bytes, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    /* every truncation is refused, never read past */
    for (cut = 0; cut < size; cut += 13) {
        oti_src_mem(&src, bytes, (size_t)cut);
        ck_assert_int_ne(oti_ckpt_read(&a, &src, back, &r, err), OT_OK);
    }
    /* a flipped value byte: checksum mismatch */
    bytes[size / 2] ^= 0x10;
    oti_src_mem(&src, bytes, (size_t)size);
    ck_assert_int_eq(oti_ckpt_read(&a, &src, back, &r, err), OT_ECORRUPT);
    bytes[size / 2] ^= 0x10;
    /* another shard */
    r.shard = 1;
    oti_src_mem(&src, bytes, (size_t)size);
    ck_assert_int_eq(oti_ckpt_read(&a, &src, back, &r, err), OT_EMISMATCH);
    r.shard = 0;
    /* an unknown major version */
    bytes[8] = 2;
    oti_src_mem(&src, bytes, (size_t)size);
    ck_assert_int_eq(oti_ckpt_read(&a, &src, back, &r, err), OT_EVERSION);
    bytes[8] = 1;
    /* a trainer table out of order, with the checksum recomputed */
    oti_put32(bytes + OTI_CKPT_HEADER + OTI_CKPT_TRAINER, 2);
    oti_put32(bytes + size - 4, oti_crc32c(0, bytes, (size_t)size - 4));
    oti_src_mem(&src, bytes, (size_t)size);
    ck_assert_int_eq(oti_ckpt_read(&a, &src, back, &r, err), OT_EFORMAT);
    oti_put32(bytes + OTI_CKPT_HEADER + OTI_CKPT_TRAINER, 9);
    /* a NaN, with the checksum recomputed */
    oti_put32(bytes + size - 8, 0x7fc00000u);
    oti_put32(bytes + size - 4, oti_crc32c(0, bytes, (size_t)size - 4));
    oti_src_mem(&src, bytes, (size_t)size);
    ck_assert_int_eq(oti_ckpt_read(&a, &src, back, &r, err), OT_ENONFINITE);
    /* not a checkpoint */
    oti_src_mem(&src, "hello", 5);
    ck_assert_int_eq(oti_ckpt_read(&a, &src, back, &r, err), OT_EFORMAT);
    free(bytes);
    oti_ckpt_state_fini(&a, &r);
    ot_model_destroy(m);
    ot_model_destroy(back);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

typedef struct collect {
    int n;
    uint64_t last_version;
} collect;

static ot_status collect_rec(void *arg, const oti_wal_rec *r, char *err)
{
    collect *c = arg;

    (void)err;
    ck_assert_int_eq(ot_delta_check(r->frame, r->len), OT_OK);
    c->n++;
    c->last_version = r->version;
    return OT_OK;
}

START_TEST(test_durable_wal_segment_scan)
{
    ot_config *cfg = base_cfg(NULL);
    oti_alloc a = {NULL, NULL};
    uint8_t *seg;
    size_t len = OTI_WAL_SEG_HEADER, cap = 1 << 16, ends[4], cut;
    oti_wal_scaninfo info;
    collect c;
    oti_src src;
    char err[OTI_ERRMSG_LEN];
    int i;

    seg = malloc(cap);
    oti_wal_segment_header(seg, 0x1234, 0, 10);
    ends[0] = len;
    for (i = 0; i < 3; i++) {
        ot_buf *f = tu_hand_frame(cfg, i == 1 ? "b" : "a", 3 + i, 5, (uint64_t)(i + 1), 0);
        oti_wal_rec r;
        r.sender = 5;
        r.sequence = (uint64_t)(i + 1);
        r.version = 11 + (uint64_t)i;
        r.frame = ot_buf_data(f);
        r.len = ot_buf_size(f);
        ck_assert_uint_lt(len + OTI_WAL_REC_HEADER + r.len, cap);
        oti_wal_record_header(seg + len, &r);
        memcpy(seg + len + OTI_WAL_REC_HEADER, r.frame, r.len);
        len += OTI_WAL_REC_HEADER + r.len;
        ends[i + 1] = len;
        ot_buf_release(f);
    }
    memset(&c, 0, sizeof(c));
    oti_src_mem(&src, seg, len);
    ck_assert_int_eq(oti_wal_scan(&a, &src, 0x1234, 0, 1 << 20, collect_rec, &c, &info, err),
                     OT_OK);
    ck_assert_int_eq(c.n, 3);
    ck_assert_uint_eq(c.last_version, 13);
    ck_assert_uint_eq(info.records, 3);
    ck_assert_uint_eq(info.good_end, len);
    ck_assert_uint_eq(info.start, 10);
    ck_assert_int_eq(info.torn, 0);
    /* cut anywhere: the records before the cut are read, the rest is torn */
    for (cut = 0; cut < len; cut++) {
        size_t whole = 0;
        memset(&c, 0, sizeof(c));
        oti_src_mem(&src, seg, cut);
        ck_assert_int_eq(oti_wal_scan(&a, &src, 0x1234, 0, 1 << 20, collect_rec, &c, &info, err),
                         OT_OK);
        while (whole < 3 && ends[whole + 1] <= cut)
            whole++;
        if (cut < OTI_WAL_SEG_HEADER) {
            ck_assert_int_eq(info.header_bad, 1);
            continue;
        }
        ck_assert_uint_eq(info.records, whole);
        ck_assert_uint_eq(info.good_end, ends[whole]);
        ck_assert_int_eq(info.torn, cut != ends[whole]);
    }
    /* a flipped byte in the second record: the first one only */
    seg[ends[1] + OTI_WAL_REC_HEADER + 70] ^= 0x04;
    memset(&c, 0, sizeof(c));
    oti_src_mem(&src, seg, len);
    ck_assert_int_eq(oti_wal_scan(&a, &src, 0x1234, 0, 1 << 20, collect_rec, &c, &info, err),
                     OT_OK);
    ck_assert_uint_eq(info.records, 1);
    ck_assert_int_eq(info.torn, 1);
    ck_assert_ptr_nonnull(strstr(info.why, "checksum"));
    /* another model */
    oti_src_mem(&src, seg, len);
    ck_assert_int_eq(oti_wal_scan(&a, &src, 0x9999, 0, 1 << 20, NULL, NULL, &info, err),
                     OT_EMISMATCH);
    free(seg);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- checkpoints and the log, end to end ------------------------------------------------ */

START_TEST(test_durable_checkpoint_restores_master_and_trainers)
{
    char dir[256], url[128];
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *t1, *t2;
    ot_model *before, *after;
    oti_sock *s;
    oti_ctl ack;
    uint64_t v;
    int k;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_WAL, "off"), OT_OK);
    inproc_url(url, sizeof(url), "ck");
    ps = server_at(cfg, url, NULL);
    t1 = tu_trainer_at(cfg, 1, url);
    t2 = tu_trainer_at(cfg, 2, url);
    for (k = 0; k < 3; k++) {
        tu_learn_n(t1, NULL, k == 0 ? "a" : k == 1 ? "b" : "c", 5);
        tu_sync_ok(t1);
        tu_learn_n(t2, NULL, "z", 4);
        tu_sync_ok(t2);
    }
    ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_OK);
    v = ot_param_server_version(ps);
    ck_assert_uint_eq(v, 6);
    {
        /* every stat of this module is listed by index, once */
        static const char *const mine[] = {"checkpoints", "wal_torn_records", "rejected_too_big",
                                           "drop_auth", "drop_short"};
        size_t i, j, found = 0;
        const char *name;
        for (i = 0; (name = ot_param_server_stat_name(ps, i)) != NULL; i++)
            for (j = 0; j < sizeof(mine) / sizeof(mine[0]); j++)
                found += strcmp(name, mine[j]) == 0;
        ck_assert_uint_eq(found, sizeof(mine) / sizeof(mine[0]));
    }
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoints"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoint_version"), 6);
    ck_assert_double_gt(tu_stat_ps(ps, "checkpoint_bytes"), 0);
    /* nothing changed: nothing written */
    ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_OK);
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoints"), 1);
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc"), 1);
    ck_assert_int_eq(count_files(dir, "wal-", ".otw"), 0); /* wal off */
    before = tu_master_copy(ps);
    ot_trainer_destroy(t1);
    ot_trainer_destroy(t2);
    ck_assert_int_eq(oti_param_server_crash(ps), OT_OK);
    ot_param_server_destroy(ps);

    ps = server_at(cfg, url, NULL);
    ck_assert_uint_eq(ot_param_server_version(ps), v);
    ck_assert_double_eq(tu_stat_ps(ps, "restored_version"), (double)v);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_replayed"), 0);
    after = tu_master_copy(ps);
    ck_assert(tu_same_bits(before, after, 1));
    /* the trainer table: each trainer's last sequence (3 syncs each) */
    s = tu_raw_req(url);
    ck_assert_int_eq(oti_hello(s, ot_model_fingerprint(after), 1, 0, 1, (int32_t)ms(3000), &ack, NULL), OT_OK);
    ck_assert_uint_eq(ack.last_sequence, 3);
    ck_assert_uint_eq(ack.version, v);
    ck_assert_int_eq(oti_hello(s, ot_model_fingerprint(after), 2, 0, 1, (int32_t)ms(3000), &ack, NULL), OT_OK);
    ck_assert_uint_eq(ack.last_sequence, 3);
    oti_sock_destroy(s);
    ot_model_destroy(before);
    ot_model_destroy(after);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

/* Variants: wal_sync every, interval, none; every with aggregation "mean". */
START_TEST(test_durable_log_replayed_after_crash)
{
    static const char *const policy[] = {"every", "interval", "none", "every"};
    char dir[256], url[128];
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *before, *after;
    int k;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_WAL_SYNC, policy[_i]), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_WAL_SYNC_INTERVAL_MS, 5), OT_OK);
    if (_i == 3) {
        ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_AGGREGATION, "mean"), OT_OK);
        ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_NUM_TRAINERS, 3), OT_OK);
    }
    inproc_url(url, sizeof(url), "wal");
    ps = server_at(cfg, url, NULL);
    tr = tu_trainer_at(cfg, 7, url);
    for (k = 0; k < 5; k++) {
        tu_learn_n(tr, NULL, k % 2 ? "odd" : "even", 3 + k);
        tu_sync_ok(tr);
    }
    ck_assert_uint_eq(ot_param_server_version(ps), 5);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_records"), 5);
    if (_i == 0 || _i == 3)
        ck_assert_double_ge(tu_stat_ps(ps, "wal_syncs"), 5);
    if (_i == 2)
        ck_assert_double_eq(tu_stat_ps(ps, "wal_syncs"), 0);
    before = tu_master_copy(ps);
    /* killed: no final checkpoint, the log alone */
    ck_assert_int_eq(oti_param_server_crash(ps), OT_OK);
    ot_param_server_destroy(ps);
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc"), 0);

    ps = server_at(cfg, url, NULL);
    ck_assert_msg(ot_param_server_version(ps) == 5, "version %llu: %s",
                  (unsigned long long)ot_param_server_version(ps), ot_param_server_errmsg(ps));
    ck_assert_double_eq(tu_stat_ps(ps, "wal_replayed"), 5);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_torn_records"), 0);
    after = tu_master_copy(ps);
    ck_assert(tu_same_bits(before, after, 1));
    ot_model_destroy(after);
    /* the trainer goes on against the restored server */
    tu_learn_n(tr, NULL, "later", 4);
    sync_after_restart(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 6);
    ck_assert_double_eq(tu_stat_ps(ps, "rejected_replay"), 0);
    after = tu_master_copy(ps);
    if (_i != 3) /* with "mean" the trainer's own delta counts in full locally */
        ck_assert_double_lt(tu_max_diff(after, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(before);
    ot_model_destroy(after);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

/* _i 0: the last record cut short; 1: garbage after the last record. */
START_TEST(test_durable_torn_tail_dropped)
{
    char dir[256], url[128], wal[512];
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *at3 = NULL, *at4 = NULL, *m;
    long size;
    int k;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    inproc_url(url, sizeof(url), "torn");
    ps = server_at(cfg, url, NULL);
    tr = tu_trainer_at(cfg, 3, url);
    for (k = 0; k < 4; k++) {
        tu_learn_n(tr, NULL, k % 2 ? "p" : "q", 2 + k);
        tu_sync_ok(tr);
        if (k == 2)
            at3 = tu_master_copy(ps);
    }
    at4 = tu_master_copy(ps);
    ot_trainer_destroy(tr);
    ck_assert_int_eq(oti_param_server_crash(ps), OT_OK);
    ot_param_server_destroy(ps);

    file_path(wal, sizeof(wal), dir, "wal-", 0, ".otw");
    size = file_size(wal);
    if (_i == 0) {
        ck_assert_int_eq(truncate(wal, size - 5), 0);
    } else {
        FILE *fp = fopen(wal, "ab");
        ck_assert_ptr_nonnull(fp);
        ck_assert_uint_eq(fwrite("OTWR\x10\x00\x00\x00garbage", 1, 15, fp), 15);
        fclose(fp);
    }
    ps = server_at(cfg, url, NULL);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_torn_records"), 1);
    ck_assert_ptr_nonnull(strstr(ot_param_server_errmsg(ps), "torn"));
    m = tu_master_copy(ps);
    if (_i == 0) {
        ck_assert_uint_eq(ot_param_server_version(ps), 3);
        ck_assert(tu_same_bits(m, at3, 1));
        ck_assert_int_lt(file_size(wal), size - 5);
    } else {
        ck_assert_uint_eq(ot_param_server_version(ps), 4);
        ck_assert(tu_same_bits(m, at4, 1));
        ck_assert_int_eq(file_size(wal), size);
    }
    ot_model_destroy(m);
    /* appends continue after the cut; a second restart finds nothing torn */
    tr = tu_trainer_at(cfg, 3, url);
    tu_learn_n(tr, NULL, "again", 3);
    tu_sync_ok(tr);
    at4 = (ot_model_destroy(at4), tu_master_copy(ps));
    ot_trainer_destroy(tr);
    ck_assert_int_eq(oti_param_server_crash(ps), OT_OK);
    ot_param_server_destroy(ps);
    ps = server_at(cfg, url, NULL);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_torn_records"), 0);
    ck_assert_str_eq(ot_param_server_errmsg(ps), "");
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, at4, 1));
    ot_model_destroy(m);
    ot_model_destroy(at3);
    ot_model_destroy(at4);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

static void flip_byte(const char *path, long at)
{
    FILE *fp = fopen(path, "r+b");
    int c;

    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fseek(fp, at, SEEK_SET), 0);
    c = fgetc(fp);
    ck_assert_int_ne(c, EOF);
    ck_assert_int_eq(fseek(fp, at, SEEK_SET), 0);
    fputc(c ^ 0x40, fp);
    fclose(fp);
}

START_TEST(test_durable_corrupt_checkpoint_falls_back)
{
    char dir[256], url[128], path[512];
    ot_config *cfg;
    ot_param_server *ps = NULL;
    ot_trainer *tr;
    ot_model *at5, *m;
    int k;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    inproc_url(url, sizeof(url), "fall");
    ps = server_at(cfg, url, NULL);
    tr = tu_trainer_at(cfg, 1, url);
    for (k = 1; k <= 5; k++) {
        tu_learn_n(tr, NULL, k % 2 ? "u" : "w", k);
        tu_sync_ok(tr);
        if (k == 2 || k == 4)
            ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_OK);
    }
    at5 = tu_master_copy(ps);
    ot_trainer_destroy(tr);
    ck_assert_int_eq(oti_param_server_crash(ps), OT_OK);
    ot_param_server_destroy(ps);
    /* kept: checkpoints 2 and 4, the segments from 2 on (wal-0 deleted) */
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc"), 2);
    file_path(path, sizeof(path), dir, "wal-", 0, ".otw");
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_int_eq(count_files(dir, "wal-", ".otw"), 2);

    file_path(path, sizeof(path), dir, "checkpoint-", 4, ".otc");
    flip_byte(path, file_size(path) / 2);
    ps = server_at(cfg, url, NULL);
    ck_assert_uint_eq(ot_param_server_version(ps), 5);
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoint_fallbacks"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_replayed"), 3);
    ck_assert_ptr_nonnull(strstr(ot_param_server_errmsg(ps), "corrupt"));
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, at5, 1));
    ot_model_destroy(m);
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc.corrupt"), 1);
    ck_assert_int_eq(oti_param_server_crash(ps), OT_OK);
    ot_param_server_destroy(ps);

    /* with checkpoint 2 damaged too, and the log not reaching back to 0,
     * nothing consistent can be rebuilt: create refuses */
    file_path(path, sizeof(path), dir, "checkpoint-", 2, ".otc");
    flip_byte(path, file_size(path) - 10);
    ps = NULL;
    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_ECORRUPT);
    ck_assert_ptr_null(ps);
    ot_model_destroy(at5);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

START_TEST(test_durable_retention_and_periodic_checkpoints)
{
    char dir[256], url[128], path[512];
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    int k;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    inproc_url(url, sizeof(url), "keep");
    ps = server_at(cfg, url, NULL);
    tr = tu_trainer_at(cfg, 1, url);
    for (k = 1; k <= 4; k++) {
        tu_learn_n(tr, NULL, "r", k);
        tu_sync_ok(tr);
        ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_OK);
    }
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoints"), 4);
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc"), 2);
    file_path(path, sizeof(path), dir, "checkpoint-", 3, ".otc");
    ck_assert_int_eq(access(path, F_OK), 0);
    file_path(path, sizeof(path), dir, "checkpoint-", 4, ".otc");
    ck_assert_int_eq(access(path, F_OK), 0);
    /* segments from 3 on only */
    ck_assert_int_eq(count_files(dir, "wal-", ".otw"), 2);
    file_path(path, sizeof(path), dir, "wal-", 3, ".otw");
    ck_assert_int_eq(access(path, F_OK), 0);
    ot_trainer_destroy(tr);
    /* a clean stop writes a final checkpoint when something changed */
    ck_assert_int_eq(ot_param_server_stop(ps), OT_OK);
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoints"), 4);
    ot_param_server_destroy(ps);

    /* periodic checkpoints from the background thread */
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_CHECKPOINT_INTERVAL_MS, 20), OT_OK);
    ps = server_at(cfg, url, NULL);
    ck_assert_uint_eq(ot_param_server_version(ps), 4);
    tr = tu_trainer_at(cfg, 1, url);
    tu_learn_n(tr, NULL, "s", 3);
    tu_sync_ok(tr);
    for (k = 0; k < 500 && tu_stat_ps(ps, "checkpoint_version") < 5; k++)
        tu_sleep_ms(10);
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoint_version"), 5);
    ck_assert_double_ge(tu_stat_ps(ps, "checkpoints"), 1);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

START_TEST(test_durable_create_errors)
{
    char dir[256], path[512];
    ot_config *cfg = base_cfg(NULL), *other;
    ot_param_server *ps = NULL;
    FILE *fp;

    /* no checkpoint_dir: the call is refused */
    ck_assert_int_eq(ot_param_server_checkpoint(NULL), OT_EINVAL);
    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_OK);
    ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_ESTATE);
    ck_assert_ptr_nonnull(strstr(ot_param_server_errmsg(ps), "checkpoint_dir"));
    ot_param_server_destroy(ps);
    ps = NULL;

    make_dir(dir, sizeof(dir));
    /* a missing parent directory */
    snprintf(path, sizeof(path), "%s/no/such", dir);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_CHECKPOINT_DIR, path), OT_OK);
    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_ENOENT);
    ck_assert_ptr_null(ps);
    /* a file where the directory should be */
    snprintf(path, sizeof(path), "%s/file", dir);
    fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fclose(fp);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_CHECKPOINT_DIR, path), OT_OK);
    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_EIO);
    unlink(path);
    /* files of another model */
    snprintf(path, sizeof(path), "%s/d", dir);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_CHECKPOINT_DIR, path), OT_OK);
    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_OK);
    ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_OK);
    ot_param_server_destroy(ps);
    ps = NULL;
    ck_assert_int_eq(ot_config_clone(cfg, &other), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(other, OT_OPT_BITS, 9), OT_OK);
    ck_assert_int_eq(ot_param_server_create(other, &ps), OT_EMISMATCH);
    ck_assert_ptr_null(ps);
    /* another shard */
    ck_assert_int_eq(ot_config_set_i64(other, OT_OPT_BITS, 8), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(other, OT_OPT_NUM_SHARDS, 2), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(other, OT_OPT_SHARD_ID, 1), OT_OK);
    ck_assert_int_eq(ot_param_server_create(other, &ps), OT_EMISMATCH);
    ot_config_destroy(other);
    remove_dir(path);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

/* ---- exactly once across restarts -------------------------------------------------------- */

typedef struct crash_at {
    uint64_t version;
    int fired; /* atomic: set on a server thread */
} crash_at;

static int crash_hook(void *arg, uint64_t version)
{
    crash_at *c = arg;

    if (version != c->version)
        return 0;
    __atomic_store_n(&c->fired, 1, __ATOMIC_SEQ_CST);
    return 1;
}

START_TEST(test_durable_exactly_once_after_restart)
{
    char dir[256], url[128];
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *m;
    crash_at c = {2, 0};
    ot_status st;
    int k;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, ms(300)), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_RETRIES, 0), OT_OK);
    inproc_url(url, sizeof(url), "once");
    ps = server_at(cfg, url, NULL);
    tr = tu_trainer_at(cfg, 5, url);
    tu_learn_n(tr, NULL, "one", 4);
    tu_sync_ok(tr);
    /* The server applies and logs (and syncs) the next delta, then dies
     * before replying. */
    ck_assert_int_eq(oti_param_server_set_crash_hook(ps, crash_hook, &c), OT_OK);
    tu_learn_n(tr, NULL, "two", 4);
    st = ot_trainer_sync(tr);
    ck_assert_msg(st == OT_ETIMEDOUT || st == OT_ECLOSED, "sync: %s", ot_status_name(st));
    /* a slow machine may time the request out before the server gets to it */
    for (k = 0; k < 1000 && !__atomic_load_n(&c.fired, __ATOMIC_SEQ_CST); k++)
        tu_sleep_ms(10);
    ck_assert_int_eq(__atomic_load_n(&c.fired, __ATOMIC_SEQ_CST), 1);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ot_param_server_destroy(ps); /* no final checkpoint: the server crashed */
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc"), 0);

    ps = server_at(cfg, url, NULL);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    /* the trainer resends its unacknowledged frame, same sequence number:
     * the restored trainer table says it was applied */
    sync_after_restart(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    /* at least once answered duplicate (a resend that timed out on the
     * reconnecting socket may have been answered too), never applied */
    ck_assert_double_ge(tu_stat_ps(ps, "duplicates"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "deltas_in"), 0);
    ck_assert_double_ge(tu_stat_tr(tr, "duplicates"), 1);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(m);
    tu_learn_n(tr, NULL, "three", 4);
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 3);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(m);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

static int kill_hook(void *arg, uint64_t version)
{
    (void)arg;
    if (version == 2)
        kill(getpid(), SIGKILL);
    return 0;
}

/* A server in a child process, killed with SIGKILL between logging a delta
 * and replying; the trainer (in this process) resends to a server restored
 * from the same directory. */
START_TEST(test_durable_exactly_once_after_kill9)
{
    char dir[256], url[320], sock[300];
    const char *fork_mode = getenv("CK_FORK");
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *m;
    pid_t pid;
    int status = 0;
    ot_status st;

    if (fork_mode != NULL && strcmp(fork_mode, "no") == 0)
        return; /* nng may already be running in this process: no fork */
    make_dir(dir, sizeof(dir));
    snprintf(sock, sizeof(sock), "%s/ps.ipc", dir);
    snprintf(url, sizeof(url), "ipc://%s", sock);
    cfg = base_cfg(dir);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, ms(5000)), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_RETRIES, 0), OT_OK);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* the child: no Check assertions here */
        ot_param_server *child = NULL;
        alarm(60);
        if (ot_param_server_create(cfg, &child) != OT_OK)
            _exit(3);
        ot_config_destroy(cfg); /* the server has its copy; the process will be killed */
        if (ot_param_server_listen(child, url, NULL) != OT_OK ||
            oti_param_server_set_crash_hook(child, kill_hook, NULL) != OT_OK ||
            ot_param_server_start(child) != OT_OK)
            _exit(3);
        for (;;)
            pause();
    }
    tr = tu_trainer_at(cfg, 9, url);
    tu_learn_n(tr, NULL, "k1", 5);
    tu_sync_ok(tr);
    tu_learn_n(tr, NULL, "k2", 5);
    st = ot_trainer_sync(tr); /* no reply: the server died */
    ck_assert_msg(st == OT_ETIMEDOUT || st == OT_ECLOSED || st == OT_ETRANSPORT, "sync: %s",
                  ot_status_name(st));
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    ck_assert_int_eq(WTERMSIG(status), SIGKILL);

    unlink(sock);
    ps = server_at(cfg, url, NULL);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_replayed"), 2);
    sync_after_restart(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ck_assert_double_ge(tu_stat_ps(ps, "duplicates"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "deltas_in"), 0);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(m);
    tu_learn_n(tr, NULL, "k3", 5);
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 3);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

/* ---- the predictor's save and load ------------------------------------------------------- */

START_TEST(test_durable_predictor_save_and_load)
{
    char dir[256], url[128], purl[128], path[512];
    ot_config *cfg = base_cfg(NULL), *other;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_predictor *p1 = NULL, *p2 = NULL, *p3 = NULL;
    ot_example *ex = tu_make_ex("probe", 1);
    float y1 = -1, y2 = -2;

    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/served.otm", dir);
    inproc_url(url, sizeof(url), "pred");
    inproc_url(purl, sizeof(purl), "pub");
    ps = server_at(cfg, url, purl);
    tr = tu_trainer_at(cfg, 1, url);
    tu_learn_n(tr, NULL, "p", 20);
    tu_sync_ok(tr);
    ck_assert_int_eq(ot_predictor_create(cfg, &p1), OT_OK);
    ck_assert_int_eq(ot_predictor_save(p1, path), OT_ESTATE); /* nothing served yet */
    ck_assert_int_eq(ot_predictor_subscribe(p1, purl, url), OT_OK);
    ck_assert_uint_eq(ot_predictor_version(p1), 1);
    ck_assert_int_eq(ot_predictor_save(p1, path), OT_OK);
    ck_assert_int_eq(ot_predictor_predict(p1, ex, &y1), OT_OK);

    /* a new predictor serves the saved model before it subscribes */
    ck_assert_int_eq(ot_predictor_create(cfg, &p2), OT_OK);
    ck_assert_int_eq(ot_predictor_predict(p2, ex, &y2), OT_ESTATE);
    ck_assert_int_eq(ot_predictor_load(p2, path), OT_OK);
    ck_assert_int_eq(ot_predictor_predict(p2, ex, &y2), OT_OK);
    ck_assert_float_eq(y1, y2);
    ck_assert_uint_eq(ot_predictor_version(p2), 0);
    ck_assert_int_eq(ot_predictor_load(p2, path), OT_OK); /* again: replaces it */
    /* subscribing still loads a full copy from the server */
    tu_learn_n(tr, NULL, "q", 20);
    tu_sync_ok(tr);
    ck_assert_int_eq(ot_predictor_subscribe(p2, purl, url), OT_OK);
    ck_assert_uint_eq(ot_predictor_version(p2), 2);
    ck_assert_int_eq(ot_predictor_predict(p2, ex, &y2), OT_OK);
    ck_assert_float_ne(y1, y2);
    ck_assert_int_eq(ot_predictor_load(p2, path), OT_ESTATE);

    /* a model of another shape, a missing file */
    ck_assert_int_eq(ot_config_clone(cfg, &other), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(other, OT_OPT_BITS, 9), OT_OK);
    ck_assert_int_eq(ot_predictor_create(other, &p3), OT_OK);
    ck_assert_int_eq(ot_predictor_load(p3, path), OT_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(ot_predictor_errmsg(p3), "shape"));
    snprintf(path, sizeof(path), "%s/missing.otm", dir);
    ck_assert_int_eq(ot_predictor_load(p3, path), OT_ENOENT);
    ck_assert_int_eq(ot_predictor_load(NULL, path), OT_EINVAL);
    ck_assert_int_eq(ot_predictor_save(NULL, path), OT_EINVAL);
    ot_predictor_destroy(p3);
    ot_config_destroy(other);
    ot_predictor_destroy(p1);
    ot_predictor_destroy(p2);
    ot_example_destroy(ex);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

/* ---- security over real sockets ----------------------------------------------------------- */

static ot_config *tls_cfg(const char *cert, int server)
{
    ot_config *c = base_cfg(NULL);

    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_TIMEOUT_MS, ms(1000)), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_TLS_CA_FILE, CERTS "ca.pem"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_TLS_AUTH, "required"), OT_OK);
    if (cert != NULL)
        ck_assert_int_eq(ot_config_set_str(c, OT_OPT_TLS_CERT_KEY_FILE, cert), OT_OK);
    if (!server) /* the certificate names localhost; we dial 127.0.0.1 */
        ck_assert_int_eq(ot_config_set_str(c, OT_OPT_TLS_SERVER_NAME, "localhost"), OT_OK);
    return c;
}

START_TEST(test_durable_tls_required_refuses_trainer_without_certificate)
{
    ot_config *scfg = tls_cfg(CERTS "server.pem", 1);
    ot_config *none = tls_cfg(NULL, 0);
    ot_config *rogue = tls_cfg(CERTS "rogue-client.pem", 0);
    ot_config *good = tls_cfg(CERTS "client.pem", 0);
    ot_param_server *ps = server_at(scfg, "tls+tcp://127.0.0.1:0", NULL);
    const char *url = ot_param_server_url(ps, 0);
    ot_trainer *tr = NULL;
    ot_model *m;

    ck_assert_ptr_nonnull(strstr(url, "tls+tcp://127.0.0.1:"));
    ck_assert_int_eq(ot_trainer_create(none, &tr), OT_OK);
    ck_assert_int_ne(ot_trainer_connect(tr, url), OT_OK);
    ot_trainer_destroy(tr);
    ck_assert_int_eq(ot_trainer_create(rogue, &tr), OT_OK);
    ck_assert_int_ne(ot_trainer_connect(tr, url), OT_OK);
    ot_trainer_destroy(tr);
    ck_assert_double_eq(tu_stat_ps(ps, "hellos"), 0);
    /* a trainer with a certificate the server's CA signed syncs */
    tr = tu_trainer_at(good, 1, url);
    tu_learn_n(tr, NULL, "tls", 5);
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 1);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(m);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(scfg);
    ot_config_destroy(none);
    ot_config_destroy(rogue);
    ot_config_destroy(good);
}
END_TEST

/* An authenticated request made by hand (docs/transport.md, trailer). */
static uint8_t *hmac_wrap(const uint8_t *body, size_t n, uint32_t sender, uint64_t seq,
                          size_t *out_len)
{
    uint8_t key[64], *m = malloc(n + OTI_HMAC_TRAILER), *t = NULL;
    size_t klen = 0;
    const void *p[3];
    size_t pn[3];

    ck_assert_int_eq(oti_hex_decode(KEY_HEX, key, sizeof(key), &klen), 0);
    memcpy(m, body, n);
    t = m + n;
    memset(t, 0, OTI_HMAC_TRAILER);
    t[0] = 1; /* version */
    t[1] = 1; /* kind: request */
    oti_put32(t + 4, sender);
    oti_put64(t + 8, seq);
    p[0] = m;
    pn[0] = n;
    p[1] = t;
    pn[1] = 16;
    p[2] = NULL;
    pn[2] = 0;
    ck_assert_int_eq(oti_hmac_sha256(key, klen, p, pn, t + 16), OT_OK);
    *out_len = n + OTI_HMAC_TRAILER;
    return m;
}

START_TEST(test_durable_hmac_wrong_key_and_replay_refused)
{
    ot_config *cfg = base_cfg(NULL), *bad, *nokey;
    ot_param_server *ps;
    ot_trainer *good, *tr = NULL;
    const char *url;
    ot_buf *f;
    uint8_t *msg;
    size_t mlen;
    oti_sock *raw;
    ot_buf *reply = NULL;
    uint64_t v;
    int k;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, ms(500)), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_HMAC_KEY, KEY_HEX), OT_OK);
    ck_assert_int_eq(ot_config_clone(cfg, &bad), OT_OK);
    ck_assert_int_eq(ot_config_set_str(bad, OT_OPT_HMAC_KEY, BAD_KEY_HEX), OT_OK);
    ck_assert_int_eq(ot_config_clone(cfg, &nokey), OT_OK);
    ck_assert_int_eq(ot_config_set_str(nokey, OT_OPT_HMAC_KEY, ""), OT_OK);
    ps = server_at(cfg, "tcp://127.0.0.1:0", NULL);
    url = ot_param_server_url(ps, 0);
    good = tu_trainer_at(cfg, 1, url);
    tu_learn_n(good, NULL, "g", 5);
    tu_sync_ok(good);

    /* wrong key: every request dropped and counted; the trainer cannot connect */
    ck_assert_int_eq(ot_trainer_create(bad, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, url), OT_ETIMEDOUT);
    ot_trainer_destroy(tr);
    ck_assert_double_ge(stat_ps_reaches(ps, "drop_auth", 1), 1);
    /* no key at all */
    ck_assert_int_eq(ot_trainer_create(nokey, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, url), OT_ETIMEDOUT);
    ot_trainer_destroy(tr);
    for (k = 0; k < 1000 && tu_stat_ps(ps, "drop_auth") + tu_stat_ps(ps, "drop_short") < 2; k++)
        tu_sleep_ms(10);
    ck_assert_double_ge(tu_stat_ps(ps, "drop_auth") + tu_stat_ps(ps, "drop_short"), 2);
    /* the good trainer keeps syncing meanwhile */
    tu_learn_n(good, NULL, "h", 5);
    tu_sync_ok(good);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);

    /* a captured message sent twice: the second is a replay */
    f = tu_hand_frame(cfg, "raw", 3, 77, 1, 0);
    msg = hmac_wrap(ot_buf_data(f), ot_buf_size(f), 0x5eed, 1000, &mlen);
    raw = tu_raw_req(url);
    ck_assert_int_eq(oti_sock_call(raw, msg, mlen, (int32_t)ms(2000), &reply, NULL), OT_OK);
    ot_buf_release(reply);
    reply = NULL;
    v = ot_param_server_version(ps);
    ck_assert_uint_eq(v, 3);
    ck_assert_int_eq(oti_sock_call(raw, msg, mlen, 300, &reply, NULL), OT_ETIMEDOUT);
    ck_assert_double_eq(stat_ps_reaches(ps, "drop_replay", 1), 1);
    ck_assert_uint_eq(ot_param_server_version(ps), v);
    tu_learn_n(good, NULL, "i", 5);
    tu_sync_ok(good);
    ck_assert_uint_eq(ot_param_server_version(ps), 4);

    oti_sock_destroy(raw);
    free(msg);
    ot_buf_release(f);
    ot_trainer_destroy(good);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    ot_config_destroy(bad);
    ot_config_destroy(nokey);
}
END_TEST

START_TEST(test_durable_oversize_and_too_many_entries_refused)
{
    ot_config *cfg = base_cfg(NULL), *small;
    ot_param_server *ps;
    ot_trainer *big, *ok;
    char url[128];
    oti_sock *raw;
    uint8_t *junk;
    ot_buf *reply = NULL;
    ot_status st;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 6), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_OPTIMIZER, "sgd"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "weights"), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_RECV_MAX_BYTES, 4096), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_DELTA_ENTRIES, 2), OT_OK);
    inproc_url(url, sizeof(url), "limits");
    ps = server_at(cfg, url, NULL);
    ck_assert_int_eq(ot_config_clone(cfg, &small), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(small, OT_OPT_MAX_ENTRIES, 2), OT_OK);
    big = tu_trainer_at(cfg, 1, url);
    ok = tu_trainer_at(small, 2, url);

    /* more entries than max_delta_entries: refused and counted */
    tu_learn_n(big, NULL, "big", 1); /* 3 features and the bias */
    st = ot_trainer_sync(big);
    ck_assert_int_eq(st, OT_ETOOBIG);
    ck_assert_double_eq(tu_stat_ps(ps, "rejected_too_big"), 1);
    ck_assert_double_eq(tu_stat_tr(big, "refused"), 1);
    /* a message over recv_max_bytes: dropped and counted (inproc) */
    junk = calloc(1, 8192);
    raw = tu_raw_req(url);
    ck_assert_int_eq(oti_sock_call(raw, junk, 8192, 300, &reply, NULL), OT_ETIMEDOUT);
    ck_assert_double_eq(stat_ps_reaches(ps, "drop_oversize", 1), 1);
    /* a trainer whose frames hold at most 2 entries is served meanwhile
     * (what its encoder held back goes out in the next sync) */
    tu_learn_n(ok, NULL, "ok", 1);
    tu_sync_ok(ok);
    tu_sync_ok(ok);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ck_assert_double_eq(tu_stat_ps(ps, "rejected_too_big"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "entries_in"), 4);
    oti_sock_destroy(raw);
    free(junk);
    ot_trainer_destroy(big);
    ot_trainer_destroy(ok);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    ot_config_destroy(small);
}
END_TEST

START_TEST(test_durable_all_roles_authenticated)
{
    ot_config *cfg = base_cfg(NULL);
    ot_param_server *ps;
    ot_trainer *tr;
    ot_predictor *p = NULL;
    ot_status st;

    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_HMAC_KEY, KEY_HEX), OT_OK);
    ps = server_at(cfg, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
    tr = tu_trainer_at(cfg, 1, ot_param_server_url(ps, 0));
    ck_assert_int_eq(ot_predictor_create(cfg, &p), OT_OK);
    st = ot_predictor_subscribe(p, ot_param_server_url(ps, 1), ot_param_server_url(ps, 0));
    ck_assert_msg(st == OT_OK, "subscribe: %s", ot_predictor_errmsg(p));
    tu_learn_n(tr, NULL, "all", 10);
    tu_sync_ok(tr);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    ck_assert_int_eq(ot_predictor_wait_version(p, 1, 5000), OT_OK);
    ck_assert_double_eq(tu_stat_ps(ps, "drop_auth"), 0);
    ot_predictor_destroy(p);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- failing disks (test hooks: oti_param_server_fail_next) ------------------------ */

/* Crashes the server (no final checkpoint), destroys it and starts another
 * from the same directory on the same URL. */
static ot_param_server *crash_and_restart(ot_param_server *ps, const ot_config *cfg,
                                          const char *url)
{
    ck_assert_int_eq(oti_param_server_crash(ps), OT_OK);
    ot_param_server_destroy(ps);
    return server_at(cfg, url, NULL);
}

START_TEST(test_durable_wal_write_failure_not_acknowledged)
{
    char dir[256], url[128], seg[512];
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *before, *m;
    long good_size;
    ot_status st;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_RETRIES, 0), OT_OK);
    inproc_url(url, sizeof(url), "wfail");
    ps = server_at(cfg, url, NULL);
    tr = tu_trainer_at(cfg, 4, url);
    tu_learn_n(tr, NULL, "a", 5);
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 1);
    file_path(seg, sizeof(seg), dir, "wal-", 0, ".otw");
    good_size = file_size(seg);
    before = tu_master_copy(ps);

    /* The disk fills up halfway through the next record. */
    ck_assert_int_eq(oti_param_server_fail_next(ps, OTI_WAL_FAIL_WRITE), OT_OK);
    tu_learn_n(tr, NULL, "b", 5);
    st = ot_trainer_sync(tr);
    ck_assert_msg(st == OT_EIO, "sync: %s: %s", ot_status_name(st), ot_trainer_errmsg(tr));
    /* not acknowledged, not applied, the half record cut off the log */
    ck_assert_uint_eq(ot_param_server_version(ps), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_errors"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_records"), 1);
    ck_assert_double_eq(tu_stat_tr(tr, "refused"), 1);
    ck_assert_uint_eq(ot_trainer_version(tr), 1);
    ck_assert_int_eq(file_size(seg), good_size);
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, before, 1));
    ot_model_destroy(m);

    /* The trainer took the delta back; the next sync sends it again (a new
     * sequence number) and the log takes it. */
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_records"), 2);
    before = (ot_model_destroy(before), tu_master_copy(ps));
    ck_assert_double_lt(tu_max_diff(before, ot_trainer_model(tr)), 1e-6);

    /* Restart from the log: both records replay, nothing torn. */
    ps = crash_and_restart(ps, cfg, url);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_replayed"), 2);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_torn_records"), 0);
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, before, 1));
    ot_model_destroy(m);
    ot_model_destroy(before);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

START_TEST(test_durable_wal_sync_failure_withholds_ack)
{
    char dir[256], url[128];
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *m, *at3;
    ot_status st;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_RETRIES, 0), OT_OK);
    inproc_url(url, sizeof(url), "sfail");
    ps = server_at(cfg, url, NULL);
    tr = tu_trainer_at(cfg, 6, url);
    tu_learn_n(tr, NULL, "a", 5);
    tu_sync_ok(tr);

    /* The fdatasync after the next delta fails: the delta is applied and
     * logged, but the reply that would acknowledge it is withheld. */
    ck_assert_int_eq(oti_param_server_fail_next(ps, OTI_WAL_FAIL_SYNC), OT_OK);
    tu_learn_n(tr, NULL, "b", 5);
    st = ot_trainer_sync(tr);
    ck_assert_msg(st == OT_EBUSY, "sync: %s: %s", ot_status_name(st), ot_trainer_errmsg(tr));
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ck_assert_double_ge(tu_stat_ps(ps, "wal_errors"), 1);
    ck_assert_uint_eq(ot_trainer_version(tr), 1);
    ck_assert_double_eq(tu_stat_tr(tr, "deltas_out"), 1);
    ck_assert_double_eq(tu_stat_tr(tr, "refused"), 0); /* kept pending, not taken back */

    /* A checkpoint makes the master durable and mends the log (the server's
     * own thread may have taken it already); the resent frame is then
     * acknowledged as a duplicate, applied once. */
    ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_OK);
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoint_version"), 2);
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ck_assert_uint_eq(ot_trainer_version(tr), 2);
    ck_assert_double_ge(tu_stat_tr(tr, "duplicates"), 1);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(m);
    /* new deltas are logged again */
    tu_learn_n(tr, NULL, "c", 5);
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 3);
    at3 = tu_master_copy(ps);

    ps = crash_and_restart(ps, cfg, url);
    ck_assert_uint_eq(ot_param_server_version(ps), 3);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_replayed"), 1);
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, at3, 1));
    ot_model_destroy(m);
    ot_model_destroy(at3);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

START_TEST(test_durable_checkpoint_write_failure_keeps_previous)
{
    char dir[256], url[128];
    ot_config *cfg;
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *m, *at6;
    int k;

    make_dir(dir, sizeof(dir));
    cfg = base_cfg(dir);
    inproc_url(url, sizeof(url), "cfail");
    ps = server_at(cfg, url, NULL);
    tr = tu_trainer_at(cfg, 2, url);
    for (k = 0; k < 3; k++) {
        tu_learn_n(tr, NULL, k % 2 ? "x" : "y", 3 + k);
        tu_sync_ok(tr);
    }
    ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_OK);
    for (k = 0; k < 2; k++) {
        tu_learn_n(tr, NULL, k % 2 ? "x" : "z", 2 + k);
        tu_sync_ok(tr);
    }
    /* The disk fills up while checkpoint 5 is written. */
    ck_assert_int_eq(oti_param_server_fail_next(ps, OTI_DUR_FAIL_CHECKPOINT), OT_OK);
    ck_assert_int_eq(ot_param_server_checkpoint(ps), OT_EIO);
    ck_assert_ptr_nonnull(strstr(ot_param_server_errmsg(ps), "checkpoint-"));
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoint_errors"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "checkpoint_version"), 3);
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc"), 1);
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc.tmp"), 1);
    /* deltas are still taken: the log after checkpoint 3 holds them */
    tu_learn_n(tr, NULL, "w", 4);
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 6);
    at6 = tu_master_copy(ps);

    ps = crash_and_restart(ps, cfg, url);
    ck_assert_uint_eq(ot_param_server_version(ps), 6);
    ck_assert_double_eq(tu_stat_ps(ps, "restored_version"), 6);
    ck_assert_double_eq(tu_stat_ps(ps, "wal_replayed"), 3);
    ck_assert_int_eq(count_files(dir, "checkpoint-", ".otc.tmp"), 0);
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, at6, 1));
    ot_model_destroy(m);
    ot_model_destroy(at6);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(ps);
    ot_config_destroy(cfg);
    remove_dir(dir);
}
END_TEST

/* ---- connection limit ------------------------------------------------------------ */

START_TEST(test_durable_max_connections_refused)
{
    ot_config *cfg, *c3;
    ot_param_server *ps;
    ot_trainer *t1, *t2, *t3 = NULL, *t4;
    oti_sock *s = NULL;
    oti_tp_opts o;
    char url[128];
    int64_t v;
    ot_status st;

    /* the option and the transport's own check */
    cfg = base_cfg(NULL);
    ck_assert_int_eq(ot_config_get_i64(cfg, OT_OPT_MAX_CONNECTIONS, &v), OT_OK);
    ck_assert_int_eq(v, 1024);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_CONNECTIONS, 65537), OT_ERANGE);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_CONNECTIONS, -1), OT_ERANGE);
    oti_tp_opts_init(&o);
    ck_assert_int_eq(o.max_conns, 0);
    o.max_conns = OTI_TP_MAX_CONNS + 1;
    ck_assert_int_eq(oti_sock_create(OTI_SOCK_REP, &o, &s, NULL), OT_EINVAL);

    /* a server that holds two connections */
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_CONNECTIONS, 2), OT_OK);
    ps = server_at(cfg, "tcp://127.0.0.1:0", NULL);
    snprintf(url, sizeof(url), "%s", ot_param_server_url(ps, 0));
    t1 = tu_trainer_at(cfg, 1, url);
    t2 = tu_trainer_at(cfg, 2, url);
    tu_learn_n(t1, NULL, "one", 3);
    tu_sync_ok(t1);
    tu_learn_n(t2, NULL, "two", 3);
    tu_sync_ok(t2);
    ck_assert_double_eq(tu_stat_ps(ps, "refused_connections"), 0);

    /* the third is closed as soon as it connects (it keeps redialing) */
    ck_assert_int_eq(ot_config_clone(cfg, &c3), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c3, OT_OPT_TRAINER_ID, 3), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c3, OT_OPT_TIMEOUT_MS, ms(500)), OT_OK);
    ck_assert_int_eq(ot_trainer_create(c3, &t3), OT_OK);
    st = ot_trainer_connect(t3, url);
    ck_assert_msg(st != OT_OK, "a third connection was let in");
    ck_assert_double_ge(stat_ps_reaches(ps, "refused_connections", 1), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "hellos"), 2);

    /* the first two keep working */
    tu_learn_n(t1, NULL, "one-more", 3);
    tu_sync_ok(t1);
    tu_learn_n(t2, NULL, "two-more", 3);
    tu_sync_ok(t2);
    ck_assert_uint_eq(ot_param_server_version(ps), 4);

    /* a connection that closes frees its place */
    ot_trainer_destroy(t3);
    ot_trainer_destroy(t1);
    t4 = tu_trainer_at(cfg, 4, url);
    tu_learn_n(t4, NULL, "four", 3);
    tu_sync_ok(t4);
    ck_assert_uint_eq(ot_param_server_version(ps), 5);

    ot_trainer_destroy(t4);
    ot_trainer_destroy(t2);
    ot_param_server_destroy(ps);
    ot_config_destroy(c3);
    ot_config_destroy(cfg);
}
END_TEST

Suite *suite_durable(void)
{
    Suite *s = suite_create("durable");
    TCase *tc = tcase_create("files");
    TCase *net = tcase_create("net");
    /* Under valgrind (make check-valgrind sets OT_VALGRIND) TLS handshakes
     * and fsyncs are many times slower. */
    double limit = getenv("OT_VALGRIND") != NULL ? 900 : 120;

    tcase_set_timeout(tc, limit);
    tcase_add_test(tc, test_durable_options_defaults_and_checks);
    tcase_add_test(tc, test_durable_hex_decode);
    tcase_add_test(tc, test_durable_checkpoint_file_roundtrip_and_damage);
    tcase_add_test(tc, test_durable_wal_segment_scan);
    tcase_add_test(tc, test_durable_checkpoint_restores_master_and_trainers);
    tcase_add_loop_test(tc, test_durable_log_replayed_after_crash, 0, 4);
    tcase_add_loop_test(tc, test_durable_torn_tail_dropped, 0, 2);
    tcase_add_test(tc, test_durable_corrupt_checkpoint_falls_back);
    tcase_add_test(tc, test_durable_retention_and_periodic_checkpoints);
    tcase_add_test(tc, test_durable_create_errors);
    tcase_add_test(tc, test_durable_exactly_once_after_restart);
    tcase_add_test(tc, test_durable_exactly_once_after_kill9);
    tcase_add_test(tc, test_durable_predictor_save_and_load);
    tcase_add_test(tc, test_durable_wal_write_failure_not_acknowledged);
    tcase_add_test(tc, test_durable_wal_sync_failure_withholds_ack);
    tcase_add_test(tc, test_durable_checkpoint_write_failure_keeps_previous);
    suite_add_tcase(s, tc);

    tcase_set_tags(net, "net");
    tcase_set_timeout(net, limit);
    tcase_add_test(net, test_durable_tls_required_refuses_trainer_without_certificate);
    tcase_add_test(net, test_durable_hmac_wrong_key_and_replay_refused);
    tcase_add_test(net, test_durable_oversize_and_too_many_entries_refused);
    tcase_add_test(net, test_durable_all_roles_authenticated);
    tcase_add_test(net, test_durable_max_connections_refused);
    suite_add_tcase(s, net);
    return s;
}
