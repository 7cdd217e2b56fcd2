/*
 * check_shard.c - sharded parameter servers (docs/deployment.md): the key
 * ranges, trainers that split their deltas over 1, 2 and 4 shards, and the
 * refusal of a client whose shard layout disagrees with a server's.  Every
 * test creates its sockets and threads inside the forked child.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "delta.h"
#include "model.h"
#include "params.h"
#include "protocol.h"
#include "tests.h"

#define MAX_SHARDS 4

static ot_config *shard_cfg(uint32_t shard, uint32_t num_shards, const char *optimizer,
                            const char *encoding)
{
    ot_config *c = NULL;

    ck_assert_int_eq(ot_config_create(&c), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, 10), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_OPTIMIZER, optimizer), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_HIDDEN_LAYERS, "4"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_EMBEDDING, "e:3"), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_EMBEDDING_BITS, 6), OT_OK);
    ck_assert_int_eq(ot_config_set_str(c, OT_OPT_VALUE_ENCODING, encoding), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_RT_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_FULL_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_EVERY_EXAMPLES, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_INTERVAL_MS, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_TIMEOUT_MS, 5000), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_RECONNECT_MS, 10), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_NUM_SHARDS, num_shards), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SHARD_ID, shard), OT_OK);
    return c;
}

static void shard_url(char *buf, size_t n, const char *what, uint32_t nshards, uint32_t shard)
{
    snprintf(buf, n, "inproc://ot-shard-%ld-%s-%u-%u", (long)getpid(), what, (unsigned)nshards,
             (unsigned)shard);
}

static ot_param_server *start_shard(uint32_t shard, uint32_t n, const char *opt, const char *enc,
                                    int with_pub)
{
    ot_config *c = shard_cfg(shard, n, opt, enc);
    ot_param_server *ps = NULL;
    char url[128], purl[128];

    shard_url(url, sizeof(url), "ps", n, shard);
    shard_url(purl, sizeof(purl), "pub", n, shard);
    ck_assert_int_eq(ot_param_server_create(c, &ps), OT_OK);
    ck_assert_msg(ot_param_server_listen(ps, url, with_pub ? purl : NULL) == OT_OK, "%s",
                  ot_param_server_errmsg(ps));
    ck_assert_int_eq(ot_param_server_start(ps), OT_OK);
    ot_config_destroy(c);
    return ps;
}

static ot_example *make_ex(const char *tag, int i)
{
    ot_example *ex = NULL;
    char name[64];
    int k;

    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    for (k = 0; k < 5; k++) {
        snprintf(name, sizeof(name), "%s_f%d", tag, (i * 7 + k * 13) % 97);
        ck_assert_int_eq(ot_example_add_feature(ex, NULL, name, 0.5f + 0.25f * (float)k), OT_OK);
    }
    snprintf(name, sizeof(name), "%s_e%d", tag, i % 11);
    ck_assert_int_eq(ot_example_add_feature(ex, "e", name, 1.0f), OT_OK);
    ck_assert_int_eq(ot_example_set_label(ex, ((i * 5) % 3 == 0) ? 1.0f : 0.0f), OT_OK);
    return ex;
}

static void learn(ot_trainer *tr, const char *tag, int from, int n)
{
    int i;

    for (i = from; i < from + n; i++) {
        ot_example *ex = make_ex(tag, i);
        ck_assert_int_eq(ot_trainer_learn(tr, ex, NULL), OT_OK);
        ot_example_destroy(ex);
    }
}

static void sync_ok(ot_trainer *tr)
{
    ot_status st = ot_trainer_sync(tr);

    ck_assert_msg(st == OT_OK, "sync: %s: %s", ot_status_name(st), ot_trainer_errmsg(tr));
}

/* Copies the values of every array of m in [lo, hi) into `into` (same shape). */
static void copy_range(ot_model *into, const ot_model *m, uint64_t lo, uint64_t hi)
{
    oti_params *d = oti_model_params(into);
    const oti_params *s = oti_model_params_c(m);
    size_t b;

    ck_assert_uint_eq(d->fingerprint, s->fingerprint);
    for (b = 0; b < s->nblocks; b++) {
        uint64_t r0, r1;
        int a;
        oti_shard_rows(s, b, lo, hi, &r0, &r1);
        if (r0 == r1)
            continue;
        for (a = 0; a <= OTI_MAX_STATE; a++) {
            const float *src = a == 0 ? s->blocks[b].w : s->blocks[b].s[a - 1];
            float *dst = a == 0 ? d->blocks[b].w : d->blocks[b].s[a - 1];
            size_t cols = s->blocks[b].cols;
            if (src == NULL || dst == NULL)
                continue;
            memcpy(dst + r0 * cols, src + r0 * cols, (size_t)(r1 - r0) * cols * sizeof(float));
        }
    }
}

/* Whether every array of a and b holds the same bits. */
static int same_bits(const ot_model *a, const ot_model *b)
{
    const oti_params *pa = oti_model_params_c(a), *pb = oti_model_params_c(b);
    size_t i;

    if (pa->fingerprint != pb->fingerprint || pa->nblocks != pb->nblocks)
        return 0;
    for (i = 0; i < pa->nblocks; i++) {
        size_t n = (size_t)(pa->blocks[i].rows * pa->blocks[i].cols) * sizeof(float);
        int k;
        if (memcmp(pa->blocks[i].w, pb->blocks[i].w, n) != 0)
            return 0;
        for (k = 0; k < OTI_MAX_STATE; k++) {
            if ((pa->blocks[i].s[k] == NULL) != (pb->blocks[i].s[k] == NULL))
                return 0;
            if (pa->blocks[i].s[k] != NULL && memcmp(pa->blocks[i].s[k], pb->blocks[i].s[k], n))
                return 0;
        }
    }
    return 1;
}

/*
 * Two trainers train in turns over n shards; returns the master assembled
 * from the shards' key ranges, and in *local the first trainer's model.
 */
static ot_model *run_sharded(uint32_t n, const char *opt, const char *enc, ot_model **local)
{
    ot_param_server *ps[MAX_SHARDS];
    ot_trainer *tr[2];
    const char *urls[MAX_SHARDS];
    ot_config *c = shard_cfg(0, n, opt, enc);
    ot_model *assembled = NULL;
    uint32_t i;
    int k, r;

    for (i = 0; i < n; i++) {
        ps[i] = start_shard(i, n, opt, enc, 0);
        urls[i] = ot_param_server_url(ps[i], 0);
    }
    for (k = 0; k < 2; k++) {
        ot_status st;
        ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_TRAINER_ID, 1 + k), OT_OK);
        ck_assert_int_eq(ot_trainer_create(c, &tr[k]), OT_OK);
        st = ot_trainer_connect_shards(tr[k], urls, n);
        ck_assert_msg(st == OT_OK, "connect: %s: %s", ot_status_name(st),
                      ot_trainer_errmsg(tr[k]));
    }
    for (r = 0; r < 8; r++) {
        learn(tr[0], "a", r * 25, 25);
        sync_ok(tr[0]);
        learn(tr[1], "b", r * 25, 25);
        sync_ok(tr[1]);
    }
    sync_ok(tr[0]);
    sync_ok(tr[1]);
    ck_assert_int_eq(ot_model_create(c, &assembled), OT_OK);
    for (i = 0; i < n; i++) {
        ot_model *m = NULL;
        uint64_t lo, hi;
        ck_assert_int_eq(ot_param_server_copy_model(ps[i], &m), OT_OK);
        ck_assert_int_eq(oti_shard_range(oti_model_params_c(m), i, n, &lo, &hi), OT_OK);
        copy_range(assembled, m, lo, hi);
        ot_model_destroy(m);
    }
    ck_assert_int_eq(ot_model_clone(ot_trainer_model(tr[0]), local), OT_OK);
    for (k = 0; k < 2; k++)
        ot_trainer_destroy(tr[k]);
    for (i = 0; i < n; i++)
        ot_param_server_destroy(ps[i]);
    ot_config_destroy(c);
    return assembled;
}

static void bit_identity(const char *opt, const char *enc)
{
    ot_model *m1, *l1, *m, *l;
    static const uint32_t counts[2] = {2, 4};
    int i;

    m1 = run_sharded(1, opt, enc, &l1);
    for (i = 0; i < 2; i++) {
        m = run_sharded(counts[i], opt, enc, &l);
        ck_assert_msg(same_bits(m, m1), "master over %u shards differs from one shard",
                      (unsigned)counts[i]);
        ck_assert_msg(same_bits(l, l1), "trainer over %u shards differs from one shard",
                      (unsigned)counts[i]);
        ot_model_destroy(m);
        ot_model_destroy(l);
    }
    ot_model_destroy(m1);
    ot_model_destroy(l1);
}

START_TEST(test_shard_bit_identity_sgd_fp32)
{
    bit_identity("sgd", "fp32");
}
END_TEST

START_TEST(test_shard_bit_identity_adagrad_int8)
{
    bit_identity("adagrad", "int8");
}
END_TEST

START_TEST(test_shard_ranges_cover_rows)
{
    ot_config *c = shard_cfg(0, 1, "sgd", "fp32");
    ot_model *m = NULL;
    const oti_params *p;
    uint32_t n;

    ck_assert_int_eq(ot_model_create(c, &m), OT_OK);
    p = oti_model_params_c(m);
    for (n = 1; n <= 64; n++) {
        uint64_t prev = 0, lo, hi;
        uint32_t s;
        for (s = 0; s < n; s++) {
            ot_status st = oti_shard_range(p, s, n, &lo, &hi);
            ck_assert_int_eq(st, OT_OK);
            ck_assert_uint_eq(lo, prev);
            ck_assert_uint_lt(lo, hi);
            /* both ends on row boundaries */
            if (hi < p->total) {
                const oti_block *b = oti_params_find(p, hi);
                ck_assert_ptr_nonnull(b);
                ck_assert_uint_eq((hi - b->offset) % b->cols, 0);
            }
            prev = hi;
        }
        ck_assert_uint_eq(prev, p->total);
    }
    {
        uint64_t lo, hi;
        ck_assert_int_eq(oti_shard_range(p, 2, 2, &lo, &hi), OT_EINVAL);
        ck_assert_int_eq(oti_shard_range(NULL, 0, 1, &lo, &hi), OT_EINVAL);
    }
    ot_model_destroy(m);
    ot_config_destroy(c);
}
END_TEST

START_TEST(test_shard_layout_mismatch_refused)
{
    ot_param_server *ps0 = start_shard(0, 2, "sgd", "fp32", 0);
    ot_param_server *ps1 = start_shard(1, 2, "sgd", "fp32", 0);
    ot_config *one = shard_cfg(0, 1, "sgd", "fp32");
    ot_config *two = shard_cfg(0, 2, "sgd", "fp32");
    ot_trainer *tr = NULL;
    const char *swapped[2];

    /* a one-shard trainer against shard 0 of 2 */
    ck_assert_int_eq(ot_trainer_create(one, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, ot_param_server_url(ps0, 0)), OT_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(ot_trainer_errmsg(tr), "shard"));
    ot_trainer_destroy(tr);
    /* a two-shard trainer given the shards in the wrong order */
    swapped[0] = ot_param_server_url(ps1, 0);
    swapped[1] = ot_param_server_url(ps0, 0);
    ck_assert_int_eq(ot_trainer_create(two, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect_shards(tr, swapped, 2), OT_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(ot_trainer_errmsg(tr), "shard layout mismatch"));
    ck_assert_int_eq(ot_trainer_sync(tr), OT_ESTATE);
    ot_trainer_destroy(tr);
    /* the right order works; a URL count other than num_shards does not */
    swapped[0] = ot_param_server_url(ps0, 0);
    swapped[1] = ot_param_server_url(ps1, 0);
    ck_assert_int_eq(ot_trainer_create(two, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect_shards(tr, swapped, 1), OT_EINVAL);
    ck_assert_int_eq(ot_trainer_connect_shards(tr, swapped, 2), OT_OK);
    ck_assert_int_eq(ot_trainer_connect(tr, swapped[0]), OT_ESTATE);
    learn(tr, "x", 0, 10);
    sync_ok(tr);
    ck_assert_uint_eq(ot_param_server_version(ps0) + ot_param_server_version(ps1),
                      ot_trainer_version(tr));
    ot_trainer_destroy(tr);
    ot_config_destroy(one);
    ot_config_destroy(two);
    ot_param_server_destroy(ps0);
    ot_param_server_destroy(ps1);
}
END_TEST

/* Weights of a and b in [lo, hi) are bitwise equal. */
static int same_weights_in(const ot_model *a, const ot_model *b, uint64_t lo, uint64_t hi)
{
    const oti_params *pa = oti_model_params_c(a), *pb = oti_model_params_c(b);
    size_t i;

    for (i = 0; i < pa->nblocks; i++) {
        uint64_t r0, r1;
        size_t cols = pa->blocks[i].cols;
        oti_shard_rows(pa, i, lo, hi, &r0, &r1);
        if (r1 > r0 && memcmp(pa->blocks[i].w + r0 * cols, pb->blocks[i].w + r0 * cols,
                              (size_t)(r1 - r0) * cols * sizeof(float)) != 0)
            return 0;
    }
    return 1;
}

/* Waits up to 5 s for the predictor to serve version v. */
static void wait_version(ot_predictor *p, uint64_t v)
{
    ot_status st = ot_predictor_wait_version(p, v, 5000);

    ck_assert_msg(st == OT_OK, "predictor at version %llu, want %llu",
                  (unsigned long long)ot_predictor_version(p), (unsigned long long)v);
}

START_TEST(test_shard_predictor_follows_every_shard)
{
    ot_param_server *ps[2];
    const char *req[2], *pub[2];
    ot_config *c = shard_cfg(0, 2, "sgd", "fp32");
    ot_trainer *tr = NULL;
    ot_predictor *pred = NULL, *one = NULL;
    ot_model *m = NULL, *served = NULL;
    uint64_t v;
    uint32_t i;

    for (i = 0; i < 2; i++) {
        ps[i] = start_shard(i, 2, "sgd", "fp32", 1);
        req[i] = ot_param_server_url(ps[i], 0);
        pub[i] = ot_param_server_url(ps[i], 1);
    }
    ck_assert_int_eq(ot_trainer_create(c, &tr), OT_OK);
    ck_assert_int_eq(ot_trainer_connect_shards(tr, req, 2), OT_OK);
    learn(tr, "a", 0, 50);
    sync_ok(tr);
    ck_assert_int_eq(ot_predictor_create(c, &pred), OT_OK);
    ck_assert_int_eq(ot_predictor_subscribe(pred, pub[0], req[0]), OT_EINVAL);
    ck_assert_msg(ot_predictor_subscribe_shards(pred, pub, req, 2) == OT_OK, "%s",
                  ot_predictor_errmsg(pred));
    /* the full copies of both shards were loaded */
    v = ot_param_server_version(ps[0]) + ot_param_server_version(ps[1]);
    ck_assert_uint_eq(ot_predictor_version(pred), v);
    ck_assert_uint_gt(v, 0);
    /* more training, then real-time and full updates from each shard */
    learn(tr, "b", 0, 50);
    sync_ok(tr);
    for (i = 0; i < 2; i++)
        ck_assert_int_eq(ot_param_server_publish(ps[i], 0), OT_OK);
    v = ot_param_server_version(ps[0]) + ot_param_server_version(ps[1]);
    wait_version(pred, v);
    /* each shard's full update in turn (one at a time: a full update that
     * starts while another shard's is being assembled is skipped) */
    for (i = 0; i < 2; i++) {
        int tries;
        double fu = 0;
        ck_assert_int_eq(ot_param_server_publish(ps[i], 1), OT_OK);
        for (tries = 0; tries < 250; tries++) {
            ck_assert_int_eq(ot_predictor_stat(pred, "full_updates", &fu), OT_OK);
            if (fu >= (double)(i + 1))
                break;
            nanosleep(&(struct timespec){0, 20000000L}, NULL);
        }
        ck_assert_double_eq(fu, (double)(i + 1));
    }
    /* the served model is the union of the shards' masters */
    ck_assert_int_eq(ot_predictor_copy_model(pred, &served), OT_OK);
    for (i = 0; i < 2; i++) {
        uint64_t lo, hi;
        ck_assert_int_eq(ot_param_server_copy_model(ps[i], &m), OT_OK);
        ck_assert_int_eq(oti_shard_range(oti_model_params_c(m), i, 2, &lo, &hi), OT_OK);
        ck_assert_msg(same_weights_in(served, m, lo, hi), "shard %u's range differs", i);
        ot_model_destroy(m);
        m = NULL;
    }
    ot_model_destroy(served);
    /* a one-shard predictor is refused by a shard of two */
    {
        ot_config *c1 = shard_cfg(0, 1, "sgd", "fp32");
        ck_assert_int_eq(ot_predictor_create(c1, &one), OT_OK);
        ck_assert_int_eq(ot_predictor_subscribe(one, pub[0], req[0]), OT_EMISMATCH);
        ck_assert_ptr_nonnull(strstr(ot_predictor_errmsg(one), "shard"));
        ot_predictor_destroy(one);
        ot_config_destroy(c1);
    }
    ot_predictor_destroy(pred);
    ot_trainer_destroy(tr);
    for (i = 0; i < 2; i++)
        ot_param_server_destroy(ps[i]);
    ot_config_destroy(c);
}
END_TEST

Suite *suite_shard(void)
{
    Suite *s = suite_create("shard");
    TCase *tc = tcase_create("shard");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_shard_ranges_cover_rows);
    tcase_add_test(tc, test_shard_bit_identity_sgd_fp32);
    tcase_add_test(tc, test_shard_bit_identity_adagrad_int8);
    tcase_add_test(tc, test_shard_layout_mismatch_refused);
    tcase_add_test(tc, test_shard_predictor_follows_every_shard);
    suite_add_tcase(s, tc);
    return s;
}
