/*
 * check_roles.c - the parameter server and the trainer over nng
 * (docs/protocol.md, docs/roles.md).  Every test creates its sockets and
 * threads inside the forked child.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "delta.h"
#include "model.h"
#include "protocol.h"
#include "tests.h"
#include "transport.h"

/* ---- helpers ---------------------------------------------------------------- */

static void unique_url(char *buf, size_t n, const char *scheme, const char *what)
{
    static int seq;

    if (strcmp(scheme, "ipc") == 0)
        snprintf(buf, n, "ipc:///tmp/ot-roles-%ld-%s-%d.ipc", (long)getpid(), what, seq++);
    else if (strcmp(scheme, "tcp") == 0)
        snprintf(buf, n, "tcp://127.0.0.1:0");
    else
        snprintf(buf, n, "inproc://ot-roles-%ld-%s-%d", (long)getpid(), what, seq++);
}

/* A config for small, deterministic tests: SGD, syncs and publishing by hand. */
static ot_config *base_cfg(int bits, const char *hidden)
{
    ot_config *c = NULL;

    ck_assert_int_eq(ot_config_create(&c), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, bits), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_OPTIMIZER, "sgd"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HIDDEN_LAYERS, hidden), OT_OK);
    if (hidden[0] != '\0') { /* the deep part's input: an embedding of namespace "e" */
        ck_assert_int_eq(ot_config_set_str(c, OT_OPT_EMBEDDING, "e:3"), OT_OK);
        ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_EMBEDDING_BITS, 6), OT_OK);
    }
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_EVERY_EXAMPLES, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_TIMEOUT_MS, 5000), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_RECONNECT_MS, 10), OT_OK);
    return c;
}

static ot_param_server *start_server(const ot_config *cfg, const char *scheme, int with_pub)
{
    ot_param_server *ps = NULL;
    char url[128], purl[128];

    unique_url(url, sizeof(url), scheme, "ps");
    unique_url(purl, sizeof(purl), scheme, "pub");
    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_OK);
    ck_assert_msg(ot_param_server_listen(ps, url, with_pub ? purl : NULL) == OT_OK, "%s",
                  ot_param_server_errmsg(ps));
    ck_assert_int_eq(ot_param_server_start(ps), OT_OK);
    return ps;
}

static void stop_server(ot_param_server *ps)
{
    const char *u0 = ot_param_server_url(ps, 0), *u1 = ot_param_server_url(ps, 1);
    char p0[256] = "", p1[256] = "";

    if (u0 != NULL && strncmp(u0, "ipc://", 6) == 0)
        snprintf(p0, sizeof(p0), "%s", u0 + 6);
    if (u1 != NULL && strncmp(u1, "ipc://", 6) == 0)
        snprintf(p1, sizeof(p1), "%s", u1 + 6);
    ot_param_server_destroy(ps);
    if (p0[0])
        unlink(p0);
    if (p1[0])
        unlink(p1);
}

static ot_trainer *connect_trainer(const ot_config *cfg, uint32_t id, const ot_param_server *ps)
{
    return tu_trainer_at(cfg, id, ot_param_server_url(ps, 0));
}

static oti_sock *raw_sub(const ot_param_server *ps)
{
    oti_sock *s = NULL;
    int i;

    ck_assert_int_eq(oti_sock_create(OTI_SOCK_SUB, NULL, &s, NULL), OT_OK);
    ck_assert_int_eq(oti_sock_dial(s, ot_param_server_url(ps, 1), 0, NULL), OT_OK);
    for (i = 0; i < 500 && oti_sock_peers(s) < 1; i++)
        tu_sleep_ms(10);
    ck_assert_int_ge(oti_sock_peers(s), 1);
    tu_sleep_ms(50); /* let the publisher see the pipe too */
    return s;
}

/* Sends one frame; returns the status and, on OT_OK, the decoded ack. */
static ot_status send_raw(oti_sock *s, const void *d, size_t n, oti_ctl *ack, size_t *frames)
{
    ot_buf *reply = NULL;
    ot_status st = oti_sock_call(s, d, n, 5000, &reply, NULL);
    size_t off = 0, fl;
    const uint8_t *f;

    if (st != OT_OK)
        return st;
    ck_assert_int_eq(oti_frame_next(ot_buf_data(reply), ot_buf_size(reply), &off, &f, &fl), OT_OK);
    ck_assert_int_eq(oti_ctl_parse(f, fl, ack, NULL), OT_OK);
    ck_assert_int_eq(ack->op, OTI_CTL_SYNC_ACK);
    if (frames != NULL) {
        *frames = 0;
        while (oti_frame_next(ot_buf_data(reply), ot_buf_size(reply), &off, &f, &fl) == OT_OK)
            (*frames)++;
    }
    ot_buf_release(reply);
    return OT_OK;
}

/* ---- protocol helpers ----------------------------------------------------------- */

START_TEST(test_roles_control_payloads_roundtrip)
{
    oti_ctl c, d;
    uint8_t buf[OTI_CTL_MAX], frame[OTI_CTL_FRAME_MAX];
    size_t n, fl;
    int op;

    for (op = OTI_CTL_FULL_REQ; op <= OTI_CTL_HELLO_ACK; op++) {
        memset(&c, 0, sizeof(c));
        c.op = op;
        if (op == OTI_CTL_FULL_REQ) {
            c.version = 77;
            c.chunk = 3;
        } else if (op == OTI_CTL_SYNC_ACK) {
            c.result = 1;
            c.version = 1234567890123ull;
            c.resync = 1;
            c.full_version = 99;
        } else if (op == OTI_CTL_HELLO) {
            c.shard = 2;
            c.num_shards = 5;
        } else {
            c.fingerprint = 0x1122334455667788ull;
            c.version = 5;
            c.lo = 10;
            c.hi = 1u << 20;
            c.shard = 1;
            c.num_shards = 4;
            c.last_sequence = 41;
        }
        n = oti_ctl_encode(&c, buf);
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_le(n, OTI_CTL_MAX);
        ck_assert_int_eq(oti_ctl_decode(buf, n, &d), OT_OK);
        ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);
        ck_assert_int_eq(oti_ctl_decode(buf, n - 1, &d), OT_EFORMAT);
        ck_assert_int_eq(oti_ctl_frame(&c, 42, 0, 3, 9, 5, frame, sizeof(frame), &fl), OT_OK);
        ck_assert_int_eq(ot_delta_check(frame, fl), OT_OK);
        ck_assert_int_eq(oti_ctl_parse(frame, fl, &d, NULL), OT_OK);
        ck_assert_int_eq(memcmp(&c, &d, sizeof(c)), 0);
    }
    buf[0] = 9;
    ck_assert_int_eq(oti_ctl_decode(buf, 1, &d), OT_EFORMAT);
    /* a flag byte must be 0 or 1 */
    c.op = OTI_CTL_SYNC_ACK;
    n = oti_ctl_encode(&c, buf);
    buf[1] = 2;
    ck_assert_int_eq(oti_ctl_decode(buf, n, &d), OT_EFORMAT);
}
END_TEST

START_TEST(test_roles_frame_split)
{
    uint8_t msg[3 * OTI_CTL_FRAME_MAX];
    size_t len = 0, fl, off = 0;
    const uint8_t *f;
    oti_ctl c;
    int i;

    memset(&c, 0, sizeof(c));
    c.op = OTI_CTL_HELLO;
    for (i = 0; i < 3; i++) {
        c.shard = (uint32_t)i;
        ck_assert_int_eq(oti_ctl_frame(&c, 1, 0, 0, 0, 0, msg + len, sizeof(msg) - len, &fl), OT_OK);
        len += fl;
    }
    for (i = 0; i < 3; i++) {
        oti_ctl d;
        ck_assert_int_eq(oti_frame_next(msg, len, &off, &f, &fl), OT_OK);
        ck_assert_int_eq(oti_ctl_parse(f, fl, &d, NULL), OT_OK);
        ck_assert_uint_eq(d.shard, (uint32_t)i);
    }
    ck_assert_int_eq(oti_frame_next(msg, len, &off, &f, &fl), OT_EEOF);
    off = 0;
    ck_assert_int_eq(oti_frame_next(msg, len - 1, &off, &f, &fl), OT_OK);
    ck_assert_int_eq(oti_frame_next(msg, len - 1, &off, &f, &fl), OT_OK);
    ck_assert_int_eq(oti_frame_next(msg, len - 1, &off, &f, &fl), OT_ECORRUPT);
}
END_TEST

/* ---- two trainers ------------------------------------------------------------------ */

static void two_trainers(const char *scheme)
{
    ot_config *cfg = base_cfg(12, "");
    ot_param_server *ps = start_server(cfg, scheme, 0);
    ot_trainer *a = connect_trainer(cfg, 1, ps);
    ot_trainer *b = connect_trainer(cfg, 2, ps);
    ot_model *m;
    const char *u = ot_param_server_url(ps, 0);

    if (strcmp(scheme, "tcp") == 0) /* the bound port, not 0 */
        ck_assert_msg(strcmp(u + strlen(u) - 2, ":0") != 0, "port not resolved: %s", u);
    tu_learn_n(a, NULL, "alpha", 30);
    tu_learn_n(b, NULL, "beta", 30);
    tu_sync_ok(a);
    tu_sync_ok(b);               /* b gets a's delta in its reply */
    tu_sync_ok(a);               /* a gets b's */
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ck_assert_uint_eq(ot_trainer_version(a), 2);
    ck_assert_uint_eq(ot_trainer_version(b), 2);
    ck_assert_double_eq(tu_stat_tr(a, "updates_in"), 1);
    ck_assert_double_eq(tu_stat_tr(b, "updates_in"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "deltas_in"), 2);
    ck_assert_double_eq(tu_stat_ps(ps, "trainers"), 2);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(a)), 1e-6);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(b)), 1e-6);
    ot_model_destroy(m);
    ot_trainer_destroy(a);
    ot_trainer_destroy(b);
    stop_server(ps);
    ot_config_destroy(cfg);
}

START_TEST(test_roles_two_trainers_inproc)
{
    two_trainers("inproc");
}
END_TEST

START_TEST(test_roles_two_trainers_ipc)
{
    two_trainers("ipc");
}
END_TEST

START_TEST(test_roles_two_trainers_tcp)
{
    two_trainers("tcp");
}
END_TEST

/* ---- exact aggregation ---------------------------------------------------------------- */

static void exact_aggregation(const char *aggregation)
{
    ot_config *cfg = base_cfg(10, "4");
    ot_param_server *ps;
    ot_trainer *t[3];
    ot_model *alone[3], *start = NULL, *m;
    const char *tags[3] = {"one", "two", "three"};
    double scale = 1.0, worst = 0;
    size_t i, b, nb;

    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_AGGREGATION, aggregation), OT_OK);
    if (strcmp(aggregation, "mean") == 0) {
        ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_NUM_TRAINERS, 3), OT_OK);
        scale = 1.0 / 3.0;
    }
    ps = start_server(cfg, "inproc", 0);
    start = tu_master_copy(ps);
    for (i = 0; i < 3; i++) {
        t[i] = connect_trainer(cfg, (uint32_t)(i + 1), ps);
        ck_assert(tu_same_bits(start, ot_trainer_model(t[i]), 0));
        ck_assert_int_eq(ot_model_clone(start, &alone[i]), OT_OK);
        tu_learn_n(t[i], alone[i], tags[i], 40);
    }
    for (i = 0; i < 3; i++)
        tu_sync_ok(t[i]);
    m = tu_master_copy(ps);
    nb = ot_model_num_blocks(m);
    for (b = 0; b < nb; b++) {
        uint64_t rows, j;
        uint32_t cols;
        const float *s, *x, *y[3];
        ot_model_block_info(m, b, NULL, NULL, NULL, &rows, &cols, NULL);
        ot_model_block_data(start, b, OT_ARRAY_WEIGHTS, &s);
        ot_model_block_data(m, b, OT_ARRAY_WEIGHTS, &x);
        for (i = 0; i < 3; i++)
            ot_model_block_data(alone[i], b, OT_ARRAY_WEIGHTS, &y[i]);
        for (j = 0; j < rows * cols; j++) {
            double want = s[j], d, tol;
            for (i = 0; i < 3; i++)
                want += scale * ((double)y[i][j] - (double)s[j]);
            d = fabs(want - (double)x[j]);
            tol = 1e-5 * (fabs(want) > 1.0 ? fabs(want) : 1.0);
            ck_assert_msg(d <= tol, "block %zu index %llu: master %.9g, expected %.9g", b,
                          (unsigned long long)j, (double)x[j], want);
            if (d > worst)
                worst = d;
        }
    }
    /* and something was learned at all */
    ck_assert_double_gt(tu_max_diff(m, start), 1e-3);
    ot_model_destroy(m);
    for (i = 0; i < 3; i++) {
        ot_trainer_destroy(t[i]);
        ot_model_destroy(alone[i]);
    }
    ot_model_destroy(start);
    stop_server(ps);
    ot_config_destroy(cfg);
}

START_TEST(test_roles_exact_aggregation_sum)
{
    exact_aggregation("sum");
}
END_TEST

START_TEST(test_roles_exact_aggregation_mean)
{
    exact_aggregation("mean");
}
END_TEST

/* FTRL exchanges its state (z, n); weights are derived from it on both sides. */
START_TEST(test_roles_ftrl_state_deltas)
{
    ot_config *cfg = base_cfg(10, "");
    ot_param_server *ps;
    ot_trainer *a, *b;
    ot_model *m;

    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_OPTIMIZER, "ftrl"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "state"), OT_OK);
    ps = start_server(cfg, "inproc", 0);
    a = connect_trainer(cfg, 1, ps);
    b = connect_trainer(cfg, 2, ps);
    tu_learn_n(a, NULL, "fa", 30);
    tu_learn_n(b, NULL, "fb", 30);
    tu_sync_ok(a);
    tu_sync_ok(b);
    tu_sync_ok(a);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(a)), 1e-5);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(b)), 1e-5);
    /* a new trainer loads weights and state: learning on from the master's
     * state gives the same model as learning on the master itself */
    {
        ot_trainer *c = connect_trainer(cfg, 3, ps);
        ot_example *ex = tu_make_ex("fa", 1);
        ck_assert_int_eq(ot_trainer_learn(c, ex, NULL), OT_OK);
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
        ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(c)), 1e-6);
        ot_example_destroy(ex);
        ot_trainer_destroy(c);
    }
    ot_model_destroy(m);
    ot_trainer_destroy(a);
    ot_trainer_destroy(b);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- retries and duplicates --------------------------------------------------------- */

START_TEST(test_roles_same_frame_twice_applied_once)
{
    ot_config *cfg = base_cfg(10, "");
    ot_param_server *ps = start_server(cfg, "inproc", 0);
    oti_sock *s = tu_raw_req(ot_param_server_url(ps, 0));
    ot_buf *f1 = tu_hand_frame(cfg, "x", 10, 7, 1, 0);
    ot_buf *f2 = tu_hand_frame(cfg, "y", 10, 7, 2, 0);
    ot_model *m1, *m2;
    oti_ctl ack;

    ck_assert_int_eq(send_raw(s, ot_buf_data(f1), ot_buf_size(f1), &ack, NULL), OT_OK);
    ck_assert_int_eq(ack.result, OTI_SYNC_APPLIED);
    ck_assert_uint_eq(ack.version, 1);
    m1 = tu_master_copy(ps);
    ck_assert_int_eq(send_raw(s, ot_buf_data(f1), ot_buf_size(f1), &ack, NULL), OT_OK);
    ck_assert_int_eq(ack.result, OTI_SYNC_DUPLICATE);
    ck_assert_uint_eq(ack.version, 1);
    ck_assert_uint_eq(ot_param_server_version(ps), 1);
    m2 = tu_master_copy(ps);
    ck_assert(tu_same_bits(m1, m2, 0));
    ck_assert_double_eq(tu_stat_ps(ps, "duplicates"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "deltas_in"), 1);
    /* sequence 2, then 1 again: older than the last applied */
    ck_assert_int_eq(send_raw(s, ot_buf_data(f2), ot_buf_size(f2), &ack, NULL), OT_OK);
    ck_assert_uint_eq(ack.version, 2);
    ck_assert_int_eq(send_raw(s, ot_buf_data(f1), ot_buf_size(f1), &ack, NULL), OT_EREPLAY);
    ck_assert_double_eq(tu_stat_ps(ps, "rejected_replay"), 1);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ot_model_destroy(m1);
    ot_model_destroy(m2);
    ot_buf_release(f1);
    ot_buf_release(f2);
    oti_sock_destroy(s);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_roles_dropped_request_retried_once)
{
    ot_config *cfg = base_cfg(10, "");
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *m;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, 300), OT_OK);
    ps = start_server(cfg, "inproc", 0);
    tr = connect_trainer(cfg, 3, ps);
    /* From now on every second request the server receives is lost. */
    ck_assert_int_eq(oti_param_server_set_test_hook(ps, 2, 0), OT_OK);
    tu_learn_n(tr, NULL, "first", 10);
    tu_sync_ok(tr);                   /* request 1 passes */
    tu_learn_n(tr, NULL, "second", 10);
    tu_sync_ok(tr);                   /* request 2 lost, its retry (3) passes */
    ck_assert_double_ge(tu_stat_tr(tr, "retries"), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "deltas_in"), 2);
    ck_assert_double_eq(tu_stat_ps(ps, "duplicates"), 0);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(m);
    ot_trainer_destroy(tr);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/*
 * A sync of many rows goes to one server as several frames of consecutive
 * key ranges, each encoded while the one before is in flight: the master
 * ends equal to the trainer's model, also when requests are lost and
 * resent, and when a sync carries few rows again; with sync_piece_rows 0
 * the same sync is one frame.
 */
START_TEST(test_roles_large_sync_goes_in_pieces)
{
    ot_config *cfg = base_cfg(20, "");
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *m;
    double frames;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, 1000), OT_OK);
    ps = start_server(cfg, "inproc", 0);
    tr = connect_trainer(cfg, 4, ps);
    tu_touch_wide_rows(tr, 0, 2, 0.01f); /* 2^19 rows: 4 pieces */
    tu_sync_ok(tr);
    frames = tu_stat_tr(tr, "deltas_out");
    ck_assert_double_ge(frames, 4);
    ck_assert_double_eq(tu_stat_ps(ps, "deltas_in"), frames);
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, ot_trainer_model(tr), 0));
    ot_model_destroy(m);

    /* every second request the server receives is lost: pieces resent */
    ck_assert_int_eq(oti_param_server_set_test_hook(ps, 2, 0), OT_OK);
    tu_touch_wide_rows(tr, 1, 3, -0.02f);
    tu_sync_ok(tr);
    ck_assert_double_ge(tu_stat_tr(tr, "retries"), 1);
    ck_assert_double_ge(tu_stat_tr(tr, "deltas_out"), frames + 2);
    ck_assert_int_eq(oti_param_server_set_test_hook(ps, 0, 0), OT_OK);
    tu_touch_wide_rows(tr, 5, 100000, 0.5f); /* a few rows: one frame */
    frames = tu_stat_tr(tr, "deltas_out");
    tu_sync_ok(tr);
    ck_assert_double_eq(tu_stat_tr(tr, "deltas_out"), frames + 1);
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, ot_trainer_model(tr), 0));
    ot_model_destroy(m);
    ot_trainer_destroy(tr);

    /* sync_piece_rows 0: one frame */
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_PIECE_ROWS, 0), OT_OK);
    tr = connect_trainer(cfg, 5, ps);
    tu_touch_wide_rows(tr, 0, 2, 0.01f);
    tu_sync_ok(tr);
    ck_assert_double_eq(tu_stat_tr(tr, "deltas_out"), 1);
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, ot_trainer_model(tr), 0));
    ot_model_destroy(m);
    ot_trainer_destroy(tr);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_roles_slow_reply_applied_once)
{
    ot_config *cfg = base_cfg(10, "");
    ot_param_server *ps;
    ot_trainer *tr;
    ot_model *m;
    ot_status st;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, 150), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_RETRIES, 1), OT_OK);
    ps = start_server(cfg, "inproc", 0);
    tr = connect_trainer(cfg, 4, ps);
    /* Every request waits 400 ms: the server applies the delta, but the
     * trainer gives up first (150 ms, one retry). */
    ck_assert_int_eq(oti_param_server_set_test_hook(ps, 0, 400), OT_OK);
    tu_learn_n(tr, NULL, "slow", 10);
    st = ot_trainer_sync(tr);
    ck_assert_int_eq(st, OT_ETIMEDOUT);
    ck_assert_double_eq(tu_stat_tr(tr, "sync_failures"), 1);
    tu_sleep_ms(1200); /* both attempts reach the server and are answered into the void */
    ck_assert_int_eq(oti_param_server_set_test_hook(ps, 0, 0), OT_OK);
    ck_assert_uint_eq(ot_param_server_version(ps), 1);
    ck_assert_double_ge(tu_stat_ps(ps, "duplicates"), 1);
    tu_sync_ok(tr); /* the pending frame again: a duplicate */
    ck_assert_uint_eq(ot_param_server_version(ps), 1);
    ck_assert_double_eq(tu_stat_ps(ps, "deltas_in"), 1);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(m);
    ot_trainer_destroy(tr);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- refused frames ---------------------------------------------------------------- */

START_TEST(test_roles_bad_frames_refused_and_counted)
{
    ot_config *cfg = base_cfg(10, "");
    ot_config *other = base_cfg(11, "");
    ot_param_server *ps = start_server(cfg, "inproc", 0);
    oti_sock *s = tu_raw_req(ot_param_server_url(ps, 0));
    ot_buf *wrong = tu_hand_frame(other, "x", 5, 9, 1, 0);
    ot_buf *good = tu_hand_frame(cfg, "x", 5, 9, 1, 0);
    uint8_t *nan_frame;
    size_t n = ot_buf_size(good);
    uint32_t nanbits = 0x7fc00000u;
    ot_trainer *tr;
    ot_model *m;
    oti_ctl ack;

    ck_assert_int_eq(send_raw(s, ot_buf_data(wrong), ot_buf_size(wrong), &ack, NULL),
                     OT_EMISMATCH);
    ck_assert_double_eq(tu_stat_ps(ps, "rejected_mismatch"), 1);
    /* NaN as the frame's last value, with a valid checksum */
    nan_frame = malloc(n);
    memcpy(nan_frame, ot_buf_data(good), n);
    oti_put32(nan_frame + n - 4, nanbits);
    oti_put32(nan_frame + OTI_H_CHECKSUM, oti_frame_crc(nan_frame, n));
    ck_assert_int_eq(ot_delta_check(nan_frame, n), OT_ENONFINITE);
    ck_assert_int_eq(send_raw(s, nan_frame, n, &ack, NULL), OT_ENONFINITE);
    ck_assert_double_eq(tu_stat_ps(ps, "rejected_nonfinite"), 1);
    /* a flipped byte: checksum mismatch */
    nan_frame[n - 1] ^= 0x01;
    ck_assert_int_eq(send_raw(s, nan_frame, n, &ack, NULL), OT_ECORRUPT);
    ck_assert_double_eq(tu_stat_ps(ps, "rejected_corrupt"), 1);
    free(nan_frame);
    ck_assert_uint_eq(ot_param_server_version(ps), 0);
    /* a trainer with a model of another shape is told at connect */
    {
        ot_trainer *bad = NULL;
        ck_assert_int_eq(ot_trainer_create(other, &bad), OT_OK);
        ck_assert_int_eq(ot_trainer_connect(bad, ot_param_server_url(ps, 0)), OT_EMISMATCH);
        ot_trainer_destroy(bad);
    }
    /* the server still serves a good trainer */
    tr = connect_trainer(cfg, 1, ps);
    tu_learn_n(tr, NULL, "good", 10);
    tu_sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps), 1);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(tr)), 1e-6);
    ot_model_destroy(m);
    ot_trainer_destroy(tr);
    ot_buf_release(wrong);
    ot_buf_release(good);
    oti_sock_destroy(s);
    stop_server(ps);
    ot_config_destroy(cfg);
    ot_config_destroy(other);
}
END_TEST

/* ---- aggregated updates ------------------------------------------------------------ */

START_TEST(test_roles_update_excludes_own_and_is_small)
{
    ot_config *cfg = base_cfg(20, "");
    ot_param_server *ps = start_server(cfg, "inproc", 0);
    ot_trainer *a = connect_trainer(cfg, 1, ps);
    ot_trainer *b = connect_trainer(cfg, 2, ps);
    double before;

    tu_learn_n(a, NULL, "sparse_a", 3);
    tu_sync_ok(a);
    tu_learn_n(a, NULL, "sparse_a2", 3);
    tu_sync_ok(a);                                  /* only a's own frames in the log */
    ck_assert_double_eq(tu_stat_tr(a, "updates_in"), 0);
    tu_learn_n(b, NULL, "sparse_b", 3);
    tu_sync_ok(b);                                  /* a's two frames, not b's own */
    ck_assert_double_eq(tu_stat_tr(b, "updates_in"), 2);
    ck_assert_double_lt(tu_stat_tr(b, "update_bytes_in"), 2000);
    before = tu_stat_ps(ps, "reply_bytes_out");
    tu_sync_ok(a);                                  /* b's one frame */
    ck_assert_double_eq(tu_stat_tr(a, "updates_in"), 1);
    ck_assert_double_lt(tu_stat_tr(a, "update_bytes_in"), 1000);
    ck_assert_double_lt(tu_stat_ps(ps, "reply_bytes_out") - before, 1200);
    /* the model is 2^20 weights: 4 MiB; the exchange costs what changed */
    ck_assert_double_lt(tu_stat_tr(a, "delta_bytes_out"), 4000);
    ot_trainer_destroy(a);
    ot_trainer_destroy(b);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* A server that keeps no change log, and trainers 1 and 2 connected to it:
 * a sync whose base is behind the master's version gets resync. */
static ot_param_server *no_log_server(ot_config *cfg, ot_trainer **a, ot_trainer **b)
{
    ot_param_server *ps;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_CHANGE_LOG_BYTES, 0), OT_OK);
    ps = start_server(cfg, "inproc", 0);
    *a = connect_trainer(cfg, 1, ps);
    *b = connect_trainer(cfg, 2, ps);
    return ps;
}

static void stop_pair(ot_param_server *ps, ot_trainer *a, ot_trainer *b, ot_config *cfg)
{
    ot_trainer_destroy(a);
    ot_trainer_destroy(b);
    stop_server(ps);
    ot_config_destroy(cfg);
}

START_TEST(test_roles_lagging_trainer_resyncs)
{
    ot_config *cfg = base_cfg(10, "4");
    ot_trainer *a, *b;
    ot_param_server *ps = no_log_server(cfg, &a, &b);
    ot_model *m;

    tu_learn_n(a, NULL, "lead", 20);
    tu_sync_ok(a);
    tu_learn_n(a, NULL, "lead2", 20);
    tu_sync_ok(a);
    tu_learn_n(b, NULL, "lag", 20);
    tu_sync_ok(b);            /* b's base is 0; the log keeps nothing: resync */
    ck_assert_double_ge(tu_stat_tr(b, "resyncs"), 1);
    ck_assert_double_ge(tu_stat_ps(ps, "resyncs"), 1);
    ck_assert_uint_eq(ot_trainer_version(b), ot_param_server_version(ps));
    tu_sync_ok(b);            /* sends what rounding left, if anything */
    tu_sync_ok(a);            /* a is behind b's delta: resyncs too */
    ck_assert_double_ge(tu_stat_tr(a, "resyncs"), 1);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(a)), 1e-5);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(b)), 1e-5);
    ot_model_destroy(m);
    stop_pair(ps, a, b, cfg);
}
END_TEST

/*
 * The first piece's reply says resync (the server keeps no change log and
 * another trainer synced first): the piece encoded meanwhile is taken back,
 * and the sync still sends every piece after the resync.
 */
START_TEST(test_roles_large_sync_resyncs_between_pieces)
{
    ot_config *cfg = base_cfg(20, "");
    ot_trainer *a, *b;
    ot_param_server *ps = no_log_server(cfg, &a, &b);
    ot_model *m;

    tu_touch_wide_rows(a, 3, 1000, 0.25f);
    tu_sync_ok(a);
    tu_touch_wide_rows(b, 0, 2, 0.01f);
    tu_sync_ok(b); /* b's base is 0, the log keeps nothing: resync */
    ck_assert_double_ge(tu_stat_tr(b, "resyncs"), 1);
    ck_assert_double_ge(tu_stat_tr(b, "deltas_out"), 4);
    m = tu_master_copy(ps);
    ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(b)), 1e-6);
    ot_model_destroy(m);
    stop_pair(ps, a, b, cfg);
}
END_TEST

/* ---- publishing ---------------------------------------------------------------------- */

/* Sets some wide weights of the master: big and small changes. */
static void set_some(void *arg, ot_model *m)
{
    oti_params *p = oti_model_params(m);
    size_t b;

    (void)arg;
    for (b = 0; b < p->nblocks; b++) {
        if (p->blocks[b].kind != OTI_BLOCK_WIDE)
            continue;
        p->blocks[b].w[3] += 0.5f;    /* meets 0.1 */
        p->blocks[b].w[10] -= 0.25f;  /* meets 0.1 */
        p->blocks[b].w[20] += 0.01f;  /* below */
        p->blocks[b].w[30] -= 0.05f;  /* below */
    }
}

START_TEST(test_roles_rt_update_carries_changes_over_threshold)
{
    ot_config *cfg = base_cfg(10, "");
    ot_param_server *ps;
    oti_sock *sub;
    ot_buf *msg = NULL;
    ot_model *before, *after, *pred;
    ot_delta_decoder *dec = NULL;
    uint64_t kind = 0, seq1 = 0, seq2 = 0, entries = 0, nv = 0;
    const float *w0, *w1, *wp;
    size_t wide = 0, b;
    uint64_t j, rows;

    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_RT_THRESHOLD, 0.1), OT_OK);
    ps = start_server(cfg, "inproc", 1);
    sub = raw_sub(ps);
    before = tu_master_copy(ps);
    ck_assert_int_eq(oti_param_server_with_master(ps, set_some, NULL), OT_OK);
    after = tu_master_copy(ps);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    ck_assert_int_eq(oti_sock_recv(sub, 5000, &msg, NULL), OT_OK);
    ck_assert_int_eq(ot_delta_check(ot_buf_data(msg), ot_buf_size(msg)), OT_OK);
    ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_KIND, &kind);
    ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_SEQUENCE, &seq1);
    ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_ENTRIES, &entries);
    ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_NEW_VERSION, &nv);
    ck_assert_uint_eq(kind, OT_DELTA_SET);
    ck_assert_uint_eq(entries, 2);
    ck_assert_uint_eq(nv, ot_param_server_version(ps));
    /* applied to the old copy: exactly the two big changes */
    ck_assert_int_eq(ot_delta_decoder_create(cfg, &dec), OT_OK);
    ck_assert_int_eq(ot_model_clone(before, &pred), OT_OK);
    ck_assert_int_eq(ot_delta_apply(dec, pred, ot_buf_data(msg), ot_buf_size(msg)), OT_OK);
    for (b = 0; b < ot_model_num_blocks(pred); b++) {
        int k;
        ot_model_block_info(pred, b, NULL, &k, NULL, NULL, NULL, NULL);
        if (k == OT_BLOCK_WIDE)
            wide = b;
    }
    ot_model_block_info(pred, wide, NULL, NULL, NULL, &rows, NULL, NULL);
    ot_model_block_data(before, wide, OT_ARRAY_WEIGHTS, &w0);
    ot_model_block_data(after, wide, OT_ARRAY_WEIGHTS, &w1);
    ot_model_block_data(pred, wide, OT_ARRAY_WEIGHTS, &wp);
    for (j = 0; j < rows; j++) {
        if (j == 3 || j == 10)
            ck_assert_float_eq(wp[j], w1[j]);
        else
            ck_assert_float_eq(wp[j], w0[j]);
    }
    ot_buf_release(msg);
    msg = NULL;
    /* the next update has consecutive sequence and nothing new to carry */
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    ck_assert_int_eq(oti_sock_recv(sub, 5000, &msg, NULL), OT_OK);
    ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_SEQUENCE, &seq2);
    ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_ENTRIES, &entries);
    ck_assert_uint_eq(seq2, seq1 + 1);
    ck_assert_uint_eq(entries, 0);
    ck_assert_double_eq(tu_stat_ps(ps, "rt_updates"), 2);
    ck_assert_double_eq(tu_stat_ps(ps, "rt_entries"), 2);
    ot_buf_release(msg);
    ot_delta_decoder_destroy(dec);
    ot_model_destroy(before);
    ot_model_destroy(after);
    ot_model_destroy(pred);
    oti_sock_destroy(sub);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

static void set_all(void *arg, ot_model *m)
{
    oti_params *p = oti_model_params(m);
    float v = *(const float *)arg;
    size_t b;
    uint64_t j;

    for (b = 0; b < p->nblocks; b++)
        for (j = 0; j < p->blocks[b].rows * p->blocks[b].cols; j++)
            p->blocks[b].w[j] = v + (float)j * 1e-3f;
}

/* Receives a full update from a SUB socket into a fresh model; returns chunks. */
static int recv_full(oti_sock *sub, const ot_config *cfg, ot_model **out, uint64_t *first_seq)
{
    ot_model *m = NULL;
    ot_delta_decoder *dec = NULL;
    uint64_t prev = 0;
    int n = 0;

    ck_assert_int_eq(ot_model_create(cfg, &m), OT_OK);
    ck_assert_int_eq(ot_delta_decoder_create(cfg, &dec), OT_OK);
    for (;;) {
        ot_buf *msg = NULL;
        uint64_t kind = 0, flags = 0, seq = 0;
        ck_assert_int_eq(oti_sock_recv(sub, 5000, &msg, NULL), OT_OK);
        ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_KIND, &kind);
        ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_FLAGS, &flags);
        ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_SEQUENCE, &seq);
        ck_assert_uint_eq(kind, OT_DELTA_FULL);
        if (n == 0) {
            ck_assert(flags & OT_DELTA_FLAG_FIRST);
            *first_seq = seq;
        } else {
            ck_assert(!(flags & OT_DELTA_FLAG_FIRST));
            ck_assert_uint_eq(seq, prev + 1);
        }
        prev = seq;
        ck_assert_int_eq(ot_delta_apply(dec, m, ot_buf_data(msg), ot_buf_size(msg)), OT_OK);
        n++;
        ot_buf_release(msg);
        if (flags & OT_DELTA_FLAG_LAST)
            break;
    }
    ot_delta_decoder_destroy(dec);
    *out = m;
    return n;
}

START_TEST(test_roles_full_update_chunked_bit_exact)
{
    ot_config *cfg = base_cfg(12, "8");
    ot_param_server *ps;
    oti_sock *sub;
    ot_trainer *tr;
    ot_model *m, *got;
    float v = 0.125f;
    uint64_t seq = 0;
    int chunks;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, 4096), OT_OK);
    ps = start_server(cfg, "inproc", 1);
    sub = raw_sub(ps);
    /* a trainer's learning, then every weight set by hand */
    tr = connect_trainer(cfg, 1, ps);
    tu_learn_n(tr, NULL, "full", 30);
    tu_sync_ok(tr);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_OK);
    chunks = recv_full(sub, cfg, &got, &seq);
    ck_assert_int_ge(chunks, 4); /* 4096 wide weights in fp32 do not fit in 4 KiB */
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, got, 0));
    ot_model_destroy(m);
    ot_model_destroy(got);
    ck_assert_double_eq(tu_stat_ps(ps, "full_updates"), 1);
    /* every weight changed: a real-time update goes out as a full update */
    ck_assert_int_eq(oti_param_server_with_master(ps, set_all, &v), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK);
    {
        uint64_t seq2 = 0;
        int c2 = recv_full(sub, cfg, &got, &seq2);
        ck_assert_int_eq(c2, chunks);
        ck_assert_uint_eq(seq2, seq + (uint64_t)chunks);
    }
    m = tu_master_copy(ps);
    ck_assert(tu_same_bits(m, got, 0));
    ck_assert_double_eq(tu_stat_ps(ps, "rt_promoted_to_full"), 1);
    /* a trainer connecting now loads the same chunked full copy by request */
    {
        ot_trainer *t2 = connect_trainer(cfg, 2, ps);
        ck_assert(tu_same_bits(m, ot_trainer_model(t2), 0));
        ck_assert_uint_eq(ot_trainer_version(t2), ot_param_server_version(ps));
        ot_trainer_destroy(t2);
    }
    ot_model_destroy(m);
    ot_model_destroy(got);
    ot_trainer_destroy(tr);
    oti_sock_destroy(sub);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_roles_publisher_thread_publishes_on_schedule)
{
    ot_config *cfg = base_cfg(8, "");
    ot_param_server *ps;
    oti_sock *sub;
    int got_set = 0, got_full = 0, i;
    uint64_t prev = 0;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_RT_INTERVAL_MS, 5), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_FULL_INTERVAL_MS, 50), OT_OK);
    ps = start_server(cfg, "inproc", 1);
    sub = raw_sub(ps);
    /* Whatever the timing, within a generous bound both kinds arrive, with
     * consecutive sequence numbers (the queue holds 1024 messages). */
    for (i = 0; i < 2000 && !(got_set && got_full); i++) {
        ot_buf *msg = NULL;
        uint64_t kind = 0, seq = 0;
        ck_assert_int_eq(oti_sock_recv(sub, 10000, &msg, NULL), OT_OK);
        ck_assert_int_eq(ot_delta_check(ot_buf_data(msg), ot_buf_size(msg)), OT_OK);
        ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_KIND, &kind);
        ot_delta_peek(ot_buf_data(msg), ot_buf_size(msg), OT_DELTA_FIELD_SEQUENCE, &seq);
        if (prev != 0)
            ck_assert_uint_eq(seq, prev + 1);
        prev = seq;
        got_set |= kind == OT_DELTA_SET;
        got_full |= kind == OT_DELTA_FULL;
        ot_buf_release(msg);
    }
    ck_assert(got_set && got_full);
    ck_assert_int_eq(ot_param_server_stop(ps), OT_OK);
    oti_sock_destroy(sub);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

typedef struct worker {
    ot_trainer *tr;
    char tag[16];
    ot_status st;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    int i;

    for (i = 0; i < 60 && w->st == OT_OK; i++) {
        ot_example *ex = tu_make_ex(w->tag, i);
        w->st = ot_trainer_learn(w->tr, ex, NULL);
        ot_example_destroy(ex);
    }
    return NULL;
}

START_TEST(test_roles_concurrent_trainers_converge)
{
    ot_config *cfg = base_cfg(10, "4");
    ot_param_server *ps;
    worker w[4];
    pthread_t th[4];
    ot_model *m;
    size_t i;

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_REQUEST_CONTEXTS, 4), OT_OK);
    ps = start_server(cfg, "inproc", 0);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, 10), OT_OK);
    for (i = 0; i < 4; i++) {
        w[i].tr = connect_trainer(cfg, (uint32_t)(i + 1), ps);
        snprintf(w[i].tag, sizeof(w[i].tag), "w%zu", i);
        w[i].st = OT_OK;
    }
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].st == OT_OK, "trainer %zu: %s", i, ot_trainer_errmsg(w[i].tr));
    }
    /* every trainer synced its last example; one more round brings each the rest */
    for (i = 0; i < 4; i++)
        tu_sync_ok(w[i].tr);
    /* 6 syncs each; the last round may add frames of float rounding left
     * in local - snapshot by applying the same update to both */
    ck_assert_double_ge(tu_stat_ps(ps, "deltas_in"), 24);
    ck_assert_double_eq(tu_stat_ps(ps, "deltas_in"), (double)ot_param_server_version(ps));
    ck_assert_double_eq(tu_stat_ps(ps, "rejected_replay") + tu_stat_ps(ps, "rejected_format"), 0);
    m = tu_master_copy(ps);
    for (i = 0; i < 4; i++) {
        ck_assert_double_lt(tu_max_diff(m, ot_trainer_model(w[i].tr)), 1e-5);
        ot_trainer_destroy(w[i].tr);
    }
    ot_model_destroy(m);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

/* ---- API edges ------------------------------------------------------------------------ */

START_TEST(test_roles_states_and_stats)
{
    ot_config *cfg = base_cfg(8, "");
    ot_param_server *ps = NULL;
    ot_trainer *tr = NULL;
    char url[128];
    double v;
    size_t i;

    ck_assert_int_eq(ot_param_server_create(cfg, &ps), OT_OK);
    ck_assert_int_eq(ot_param_server_start(ps), OT_ESTATE);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_ESTATE);
    ck_assert_ptr_null(ot_param_server_url(ps, 0));
    unique_url(url, sizeof(url), "inproc", "states");
    ck_assert_int_eq(ot_param_server_listen(ps, url, NULL), OT_OK);
    ck_assert_int_eq(ot_param_server_listen(ps, url, NULL), OT_ESTATE);
    ck_assert_str_eq(ot_param_server_url(ps, 0), url);
    ck_assert_int_eq(ot_param_server_start(ps), OT_OK);
    ck_assert_int_eq(ot_param_server_start(ps), OT_ESTATE);
    ck_assert_int_eq(ot_param_server_publish(ps, 0), OT_OK); /* no predictor URL: nothing to do */
    for (i = 0; ot_param_server_stat_name(ps, i) != NULL; i++)
        ck_assert_int_eq(ot_param_server_stat(ps, ot_param_server_stat_name(ps, i), &v), OT_OK);
    ck_assert_uint_ge(i, 20);
    ck_assert_int_eq(ot_param_server_stat(ps, "no_such_stat", &v), OT_ENOENT);
    ck_assert_int_eq(ot_trainer_create(cfg, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_sync(tr), OT_ESTATE);
    ck_assert_int_eq(ot_trainer_connect(tr, url), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, url), OT_ESTATE);
    for (i = 0; ot_trainer_stat_name(tr, i) != NULL; i++)
        ck_assert_int_eq(ot_trainer_stat(tr, ot_trainer_stat_name(tr, i), &v), OT_OK);
    ck_assert_uint_ge(i, 12);
    ck_assert_int_eq(ot_param_server_stop(ps), OT_OK);
    ck_assert_int_eq(ot_param_server_stop(ps), OT_OK);
    ck_assert_int_eq(ot_param_server_publish(ps, 1), OT_ESTATE);
    ot_param_server_destroy(ps);
    ot_trainer_destroy(tr);
    ot_param_server_destroy(NULL);
    ot_trainer_destroy(NULL);
    ck_assert_str_eq(ot_param_server_errmsg(NULL), "");
    ck_assert_str_eq(ot_trainer_errmsg(NULL), "");
    ck_assert_int_eq(ot_param_server_create(cfg, NULL), OT_EINVAL);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_roles_trainer_syncs_by_example_count)
{
    ot_config *cfg = base_cfg(10, "");
    ot_param_server *ps;
    ot_trainer *tr;

    ps = start_server(cfg, "inproc", 0);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_SYNC_EVERY_EXAMPLES, 5), OT_OK);
    tr = connect_trainer(cfg, 1, ps);
    tu_learn_n(tr, NULL, "count", 12);
    ck_assert_double_eq(tu_stat_tr(tr, "syncs"), 2);
    ck_assert_double_eq(tu_stat_tr(tr, "examples"), 12);
    ck_assert_uint_eq(ot_param_server_version(ps), 2);
    ot_trainer_destroy(tr);
    stop_server(ps);
    ot_config_destroy(cfg);
}
END_TEST

START_TEST(test_roles_connect_times_out_without_server)
{
    ot_config *cfg = base_cfg(8, "");
    ot_trainer *tr = NULL;
    char url[128];

    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_TIMEOUT_MS, 200), OT_OK);
    unique_url(url, sizeof(url), "inproc", "nobody");
    ck_assert_int_eq(ot_trainer_create(cfg, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, url), OT_ETIMEDOUT);
    /* learning still works without a server */
    tu_learn_n(tr, NULL, "offline", 3);
    ot_trainer_destroy(tr);
    ot_config_destroy(cfg);
}
END_TEST

Suite *suite_roles(void)
{
    Suite *s = suite_create("roles");
    TCase *tc = tcase_create("roles");

    tcase_set_tags(tc, "net");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roles_control_payloads_roundtrip);
    tcase_add_test(tc, test_roles_frame_split);
    tcase_add_test(tc, test_roles_two_trainers_inproc);
    tcase_add_test(tc, test_roles_two_trainers_ipc);
    tcase_add_test(tc, test_roles_two_trainers_tcp);
    tcase_add_test(tc, test_roles_exact_aggregation_sum);
    tcase_add_test(tc, test_roles_exact_aggregation_mean);
    tcase_add_test(tc, test_roles_ftrl_state_deltas);
    tcase_add_test(tc, test_roles_same_frame_twice_applied_once);
    tcase_add_test(tc, test_roles_dropped_request_retried_once);
    tcase_add_test(tc, test_roles_large_sync_goes_in_pieces);
    tcase_add_test(tc, test_roles_large_sync_resyncs_between_pieces);
    tcase_add_test(tc, test_roles_slow_reply_applied_once);
    tcase_add_test(tc, test_roles_bad_frames_refused_and_counted);
    tcase_add_test(tc, test_roles_update_excludes_own_and_is_small);
    tcase_add_test(tc, test_roles_lagging_trainer_resyncs);
    tcase_add_test(tc, test_roles_rt_update_carries_changes_over_threshold);
    tcase_add_test(tc, test_roles_full_update_chunked_bit_exact);
    tcase_add_test(tc, test_roles_publisher_thread_publishes_on_schedule);
    tcase_add_test(tc, test_roles_concurrent_trainers_converge);
    tcase_add_test(tc, test_roles_states_and_stats);
    tcase_add_test(tc, test_roles_trainer_syncs_by_example_count);
    tcase_add_test(tc, test_roles_connect_times_out_without_server);
    suite_add_tcase(s, tc);
    return s;
}
