/*
 * roles_util.c - helpers shared by the suites that run parameter servers and
 * trainers (check_roles.c, check_durable.c, check_shard.c): examples,
 * learning, syncs, stats, model comparisons and hand-made frames.  Declared in tests.h.
 *
 * Every helper runs inside a test (a forked child): those that open sockets
 * must never be called from main or an unchecked fixture.  Failures are
 * Check assertions, reported against the calling test.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "params.h"
#include "tests.h"
#include "transport.h"

void tu_sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

ot_example *tu_make_ex(const char *tag, int i)
{
    ot_example *ex = NULL;
    char name[64];
    int k;

    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    for (k = 0; k < 4; k++) {
        snprintf(name, sizeof(name), "%s_f%d", tag, (i * 3 + k) % 17);
        ck_assert_int_eq(ot_example_add_feature(ex, NULL, name, 1.0f + 0.25f * (float)k), OT_OK);
    }
    snprintf(name, sizeof(name), "%s_e%d", tag, i % 5);
    ck_assert_int_eq(ot_example_add_feature(ex, "e", name, 1.0f), OT_OK);
    ck_assert_int_eq(ot_example_set_label(ex, (i % 2) ? 1.0f : 0.0f), OT_OK);
    return ex;
}

void tu_learn_n(ot_trainer *tr, ot_model *alone, const char *tag, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        ot_example *ex = tu_make_ex(tag, i);
        if (tr != NULL)
            ck_assert_int_eq(ot_trainer_learn(tr, ex, NULL), OT_OK);
        if (alone != NULL)
            ck_assert_int_eq(ot_model_learn(alone, ex, NULL), OT_OK);
        ot_example_destroy(ex);
    }
}

void tu_sync_ok(ot_trainer *tr)
{
    ot_status st = ot_trainer_sync(tr);
    ck_assert_msg(st == OT_OK, "sync: %s: %s", ot_status_name(st), ot_trainer_errmsg(tr));
}

ot_trainer *tu_trainer_at(const ot_config *cfg, uint32_t id, const char *url)
{
    ot_config *c = NULL;
    ot_trainer *tr = NULL;
    ot_status st;

    ck_assert_int_eq(ot_config_clone(cfg, &c), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_TRAINER_ID, id), OT_OK);
    ck_assert_int_eq(ot_trainer_create(c, &tr), OT_OK);
    ot_config_destroy(c);
    st = ot_trainer_connect(tr, url);
    ck_assert_msg(st == OT_OK, "connect %s: %s: %s", url, ot_status_name(st),
                  ot_trainer_errmsg(tr));
    return tr;
}

double tu_stat_ps(const ot_param_server *ps, const char *name)
{
    double v = -1;
    ck_assert_msg(ot_param_server_stat(ps, name, &v) == OT_OK, "no server stat %s", name);
    return v;
}

double tu_stat_tr(const ot_trainer *tr, const char *name)
{
    double v = -1;
    ck_assert_msg(ot_trainer_stat(tr, name, &v) == OT_OK, "no trainer stat %s", name);
    return v;
}

ot_model *tu_master_copy(const ot_param_server *ps)
{
    ot_model *m = NULL;
    ck_assert_int_eq(ot_param_server_copy_model(ps, &m), OT_OK);
    return m;
}

double tu_max_diff(const ot_model *a, const ot_model *b)
{
    size_t i, nb = ot_model_num_blocks(a);
    double worst = 0;

    ck_assert_uint_eq(ot_model_fingerprint(a), ot_model_fingerprint(b));
    for (i = 0; i < nb; i++) {
        uint64_t rows, j;
        uint32_t cols;
        const float *x, *y;
        ck_assert_int_eq(ot_model_block_info(a, i, NULL, NULL, NULL, &rows, &cols, NULL), OT_OK);
        ck_assert_int_eq(ot_model_block_data(a, i, OT_ARRAY_WEIGHTS, &x), OT_OK);
        ck_assert_int_eq(ot_model_block_data(b, i, OT_ARRAY_WEIGHTS, &y), OT_OK);
        for (j = 0; j < rows * cols; j++) {
            double d = fabs((double)x[j] - (double)y[j]);
            if (d > worst)
                worst = d;
        }
    }
    return worst;
}

int tu_same_bits(const ot_model *a, const ot_model *b, int with_state)
{
    size_t i, nb = ot_model_num_blocks(a);

    ck_assert_uint_eq(ot_model_fingerprint(a), ot_model_fingerprint(b));
    for (i = 0; i < nb; i++) {
        uint64_t rows;
        uint32_t cols;
        int ns = 0, k;
        ck_assert_int_eq(ot_model_block_info(a, i, NULL, NULL, NULL, &rows, &cols, &ns), OT_OK);
        for (k = 0; k <= (with_state ? ns : 0); k++) {
            const float *x, *y;
            ck_assert_int_eq(ot_model_block_data(a, i, k, &x), OT_OK);
            ck_assert_int_eq(ot_model_block_data(b, i, k, &y), OT_OK);
            if (memcmp(x, y, (size_t)(rows * cols) * sizeof(float)) != 0)
                return 0;
        }
    }
    return 1;
}

struct oti_sock *tu_raw_req(const char *url)
{
    oti_sock *s = NULL;
    oti_tp_opts o;

    oti_tp_opts_init(&o);
    o.resend_ms = 0;
    o.reconnect_min_ms = 10;
    ck_assert_int_eq(oti_sock_create(OTI_SOCK_REQ, &o, &s, NULL), OT_OK);
    ck_assert_int_eq(oti_sock_dial(s, url, 0, NULL), OT_OK);
    return s;
}

ot_buf *tu_hand_frame(const ot_config *cfg, const char *tag, int n, uint32_t sender,
                      uint64_t seq, uint64_t base)
{
    ot_model *m = NULL;
    ot_snapshot *s = NULL;
    ot_delta_encoder *enc = NULL;
    ot_buf *b = NULL;
    int more = 0;

    ck_assert_int_eq(ot_model_create(cfg, &m), OT_OK);
    ck_assert_int_eq(ot_snapshot_create(cfg, m, 0, &s), OT_OK);
    tu_learn_n(NULL, m, tag, n);
    ck_assert_int_eq(ot_delta_encoder_create(cfg, &enc), OT_OK);
    ot_delta_encoder_set_ids(enc, 0, sender);
    ot_delta_encoder_set_sequence(enc, seq);
    ot_delta_encoder_set_versions(enc, base, 0);
    ck_assert_int_eq(ot_delta_encode_buf(enc, m, &s, &b, &more), OT_OK);
    ck_assert_int_eq(more, 0);
    ot_delta_encoder_destroy(enc);
    ot_snapshot_release(s);
    ot_model_destroy(m);
    return b;
}

void tu_add_wide_rows(ot_model *m, uint64_t first, uint64_t stride, float delta)
{
    oti_params *p = oti_model_params(m);
    size_t b;

    for (b = 0; b < p->nblocks; b++) {
        oti_block *w = &p->blocks[b];
        uint64_t r;
        if (w->kind != OTI_BLOCK_WIDE)
            continue;
        for (r = first; r < w->rows; r += stride) {
            w->w[r] += delta * (float)(1 + r % 7);
            oti_block_touch(w, r);
        }
    }
}

void tu_touch_wide_rows(ot_trainer *tr, uint64_t first, uint64_t stride, float delta)
{
    tu_add_wide_rows((ot_model *)ot_trainer_model(tr), first, stride, delta);
}
