/*
 * check_shard.c - sharded parameter servers (docs/deployment.md): the key
 * ranges, trainers that split their deltas over 1, 2 and 4 shards, and the
 * refusal of a client whose shard layout disagrees with a server's.  Every
 * test creates its sockets and threads inside the forked child.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "delta.h"
#include "model.h"
#include "params.h"
#include "protocol.h"
#include "shard.h"
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

/* An ADD frame of a model trained on a few examples (every block touched:
 * sparse wide and embedding rows, dense deep layers); *base the model the
 * frame was made against. */
static ot_buf *trained_frame(ot_config *c, ot_model **base)
{
    ot_model *m = NULL;
    ot_snapshot *s = NULL;
    ot_delta_encoder *e = NULL;
    ot_buf *b = NULL;
    int i, more = 0;

    ck_assert_int_eq(ot_model_create(c, &m), OT_OK);
    ck_assert_int_eq(ot_model_clone(m, base), OT_OK);
    oti_params_clear_touched(oti_model_params(m));
    ck_assert_int_eq(ot_snapshot_create(c, m, 0, &s), OT_OK);
    for (i = 0; i < 40; i++) {
        ot_example *ex = make_ex("split", i);
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
        ot_example_destroy(ex);
    }
    ck_assert_int_eq(ot_delta_encoder_create(c, &e), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_set_ids(e, 0, 9), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_set_sequence(e, 77), OT_OK);
    ck_assert_int_eq(ot_delta_encode_buf(e, m, &s, &b, &more), OT_OK);
    ck_assert_int_eq(more, 0);
    ot_delta_encoder_destroy(e);
    ot_snapshot_release(s);
    ot_model_destroy(m);
    return b;
}

/* Splits `frame` at `bounds` and checks the parts: headers, entry counts,
 * each part's rows inside its range (when `aligned`: row-aligned bounds),
 * and applying every part equals applying the frame, bit for bit. */
static void check_split(const ot_model *base, const uint8_t *frame, size_t len,
                        const uint64_t *bounds, uint32_t n, int aligned)
{
    oti_alloc a = {NULL, NULL};
    oti_split_buf out[MAX_SHARDS + 2];
    uint64_t base_v[MAX_SHARDS + 2], entries = 0, v = 0;
    ot_model *whole = NULL, *parts = NULL;
    ot_delta_decoder *dec = NULL;
    char err[OTI_ERRMSG_LEN];
    uint32_t i;

    memset(out, 0, sizeof(out));
    for (i = 0; i < n; i++)
        base_v[i] = 100 + i;
    ck_assert_int_eq(ot_delta_decoder_create(NULL, &dec), OT_OK);
    ck_assert_int_eq(ot_model_clone(base, &whole), OT_OK);
    ck_assert_int_eq(ot_model_clone(base, &parts), OT_OK);
    ck_assert_int_eq(ot_delta_apply(dec, whole, frame, len), OT_OK);
    ck_assert_msg(oti_shard_split(&a, oti_model_params_c(base), frame, len, bounds, base_v, n,
                                  out, err) == OT_OK,
                  "split: %s", err);
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(ot_delta_peek(out[i].data, out[i].len, OT_DELTA_FIELD_SHARD, &v), OT_OK);
        ck_assert_uint_eq(v, i);
        ck_assert_int_eq(ot_delta_peek(out[i].data, out[i].len, OT_DELTA_FIELD_BASE_VERSION, &v),
                         OT_OK);
        ck_assert_uint_eq(v, 100 + i);
        ck_assert_int_eq(ot_delta_peek(out[i].data, out[i].len, OT_DELTA_FIELD_SEQUENCE, &v),
                         OT_OK);
        ck_assert_uint_eq(v, 77);
        ck_assert_int_eq(ot_delta_peek(out[i].data, out[i].len, OT_DELTA_FIELD_SENDER, &v), OT_OK);
        ck_assert_uint_eq(v, 9);
        ck_assert_int_eq(ot_delta_peek(out[i].data, out[i].len, OT_DELTA_FIELD_ENTRIES, &v), OT_OK);
        entries += v;
        ck_assert_int_eq(ot_delta_check(out[i].data, out[i].len), OT_OK);
        if (aligned)
            ck_assert_int_eq(ot_delta_decoder_set_shard(dec, i, bounds[i], bounds[i + 1]), OT_OK);
        else
            ck_assert_int_eq(ot_delta_decoder_set_shard(dec, i, 0, UINT64_MAX), OT_OK);
        ck_assert_msg(ot_delta_apply(dec, parts, out[i].data, out[i].len) == OT_OK,
                      "part %u: %s", (unsigned)i, ot_delta_decoder_errmsg(dec));
    }
    ck_assert_int_eq(ot_delta_peek(frame, len, OT_DELTA_FIELD_ENTRIES, &v), OT_OK);
    ck_assert_uint_eq(entries, v);
    ck_assert_msg(same_bits(whole, parts), "the parts do not add up to the frame");
    for (i = 0; i < n; i++)
        oti_free(&a, out[i].data, out[i].cap);
    ot_model_destroy(whole);
    ot_model_destroy(parts);
    ot_delta_decoder_destroy(dec);
}

static void split_for(const char *opt, const char *enc)
{
    ot_config *c = shard_cfg(0, 1, opt, enc);
    ot_model *base = NULL;
    ot_buf *f = trained_frame(c, &base);
    const oti_params *p = oti_model_params_c(base);
    uint64_t bounds[MAX_SHARDS + 2], odd[5];
    uint32_t n, i;

    for (n = 1; n <= MAX_SHARDS; n++) {
        for (i = 0; i < n; i++)
            ck_assert_int_eq(oti_shard_range(p, i, n, &bounds[i], &bounds[i + 1]), OT_OK);
        check_split(base, ot_buf_data(f), ot_buf_size(f), bounds, n, 1);
    }
    /* bounds inside blocks and inside rows: every row goes where its first
     * value lies */
    odd[0] = 0;
    odd[1] = 7;
    odd[2] = p->blocks[p->nblocks - 1].offset + 1;
    odd[3] = p->total - 2;
    odd[4] = p->total;
    check_split(base, ot_buf_data(f), ot_buf_size(f), odd, 4, 0);
    ot_buf_release(f);
    ot_model_destroy(base);
    ot_config_destroy(c);
}

/* A model trained on a few examples from `base` (every block touched). */
static void learn_model(ot_model *m, int from, int n)
{
    int i;

    for (i = from; i < from + n; i++) {
        ot_example *ex = make_ex("split", i);
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
        ot_example_destroy(ex);
    }
}

static ot_model *trained_model(ot_config *c, ot_model **base)
{
    ot_model *m = NULL;

    ck_assert_int_eq(ot_model_create(c, &m), OT_OK);
    ck_assert_int_eq(ot_model_clone(m, base), OT_OK);
    oti_params_clear_touched(oti_model_params(m));
    learn_model(m, 0, 40);
    return m;
}

/* Encodes local - snap restricted to [lo, hi) (hi 0: everything), applies
 * it to `into` (checking its rows are in the range when `check`); returns
 * its entries. */
static uint64_t encode_range_into(ot_delta_encoder *e, ot_model *local, ot_snapshot **snap,
                                  ot_model *into, uint32_t shard, uint64_t lo, uint64_t hi,
                                  int check)
{
    ot_delta_decoder *dec = NULL;
    ot_buf *b = NULL;
    uint64_t entries = 0, v = 0;
    int more = 1;

    ck_assert_int_eq(ot_delta_decoder_create(NULL, &dec), OT_OK);
    if (check)
        ck_assert_int_eq(ot_delta_decoder_set_shard(dec, shard, lo, hi), OT_OK);
    oti_delta_encoder_range(e, lo, hi);
    ck_assert_int_eq(ot_delta_encoder_set_ids(e, shard, 9), OT_OK);
    ck_assert_int_eq(ot_delta_encode_buf(e, local, snap, &b, &more), OT_OK);
    ck_assert_int_eq(more, 0);
    ck_assert_int_eq(ot_delta_peek(ot_buf_data(b), ot_buf_size(b), OT_DELTA_FIELD_SHARD, &v),
                     OT_OK);
    ck_assert_uint_eq(v, shard);
    ck_assert_int_eq(ot_delta_peek(ot_buf_data(b), ot_buf_size(b), OT_DELTA_FIELD_ENTRIES,
                                   &entries),
                     OT_OK);
    ck_assert_msg(ot_delta_apply(dec, into, ot_buf_data(b), ot_buf_size(b)) == OT_OK,
                  "range [%llu, %llu): %s", (unsigned long long)lo, (unsigned long long)hi,
                  ot_delta_decoder_errmsg(dec));
    oti_delta_encoder_range(e, 0, 0);
    ot_buf_release(b);
    ot_delta_decoder_destroy(dec);
    return entries;
}

/* Whether any block of m has a row touched (or all of them). */
static int any_touched(const ot_model *m)
{
    const oti_params *p = oti_model_params_c(m);
    size_t i;

    for (i = 0; i < p->nblocks; i++)
        if (p->blocks[i].ntouched > 0 || p->blocks[i].all_touched)
            return 1;
    return 0;
}

/*
 * Frames encoded from each key range in turn (as a sharded trainer does)
 * carry, together, exactly the frame of the whole delta: applied to the
 * base they give its result bit for bit, each holds only rows of its range,
 * and a second frame afterwards sends what rounding left, as after the
 * whole delta.  For 1 to 4 shards, bounds inside blocks and rows, with the
 * trackers as training left them, with every block marked all-touched (a
 * trainer after a refused frame), and with the ranges in reverse order (a
 * frame of one range leaves the other ranges' rows touched).
 */
static void ranges_add_up(const char *enc, int bits)
{
    ot_config *c = shard_cfg(0, 1, "sgd", enc);
    ot_model *base = NULL, *m, *whole = NULL;
    const oti_params *p;
    ot_delta_encoder *e = NULL;
    ot_snapshot *snap = NULL;
    uint64_t bounds[MAX_SHARDS + 2];
    uint32_t n, i;
    int variant;

    /* bits 22: few touched rows in a large block, cleared one by one */
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, bits), OT_OK);
    m = trained_model(c, &base);
    p = oti_model_params_c(base);
    ck_assert_int_eq(ot_delta_encoder_create(c, &e), OT_OK);
    {
        /* two rounds with learning between them, then what rounding left
         * in local - snapshot (rows kept touched) */
        ot_model *l = NULL;
        ck_assert_int_eq(ot_model_clone(m, &l), OT_OK);
        ck_assert_int_eq(ot_model_clone(base, &whole), OT_OK);
        ck_assert_int_eq(ot_snapshot_create(c, base, 0, &snap), OT_OK);
        ck_assert_uint_gt(encode_range_into(e, l, &snap, whole, 0, 0, 0, 0), 0);
        learn_model(l, 40, 20);
        ck_assert_uint_gt(encode_range_into(e, l, &snap, whole, 0, 0, 0, 0), 0);
        (void)encode_range_into(e, l, &snap, whole, 0, 0, 0, 0);
        ot_snapshot_release(snap);
        ot_model_destroy(l);
    }
    for (variant = 0; variant < 3; variant++) {
        for (n = 1; n <= MAX_SHARDS + 1; n++) {
            ot_model *l = NULL, *parts = NULL;
            int check = n <= MAX_SHARDS, round; /* n = MAX_SHARDS + 1: odd bounds */
            if (check) {
                for (i = 0; i < n; i++)
                    ck_assert_int_eq(oti_shard_range(p, i, n, &bounds[i], &bounds[i + 1]),
                                     OT_OK);
            } else {
                /* inside the wide block, inside an embedding row, and
                 * inside the last deep layer */
                size_t b = 0;
                while (b < p->nblocks && p->blocks[b].cols == 1)
                    b++;
                ck_assert_uint_lt(b, p->nblocks);
                n = 4;
                bounds[0] = 0;
                bounds[1] = 7;
                bounds[2] = p->blocks[b].offset + 1;
                bounds[3] = p->total - 2;
                bounds[4] = p->total;
                ck_assert(bounds[1] < bounds[2] && bounds[2] < bounds[3]);
            }
            ck_assert_int_eq(ot_model_clone(m, &l), OT_OK);
            ck_assert_int_eq(ot_model_clone(base, &parts), OT_OK);
            ck_assert_int_eq(ot_snapshot_create(c, base, 0, &snap), OT_OK);
            if (variant == 1) {
                /* only the flag says which rows changed */
                oti_params *lp = oti_model_params(l);
                oti_params_clear_touched(lp);
                for (i = 0; i < lp->nblocks; i++)
                    if (lp->blocks[i].touched_bits != NULL)
                        lp->blocks[i].all_touched = 1;
            }
            for (round = 0; round < 2; round++) {
                uint64_t got = 0;
                if (round == 1)
                    learn_model(l, 40, 20);
                for (i = 0; i < n; i++) {
                    /* variant 2: the ranges in reverse order */
                    uint32_t r = variant == 2 ? n - 1 - i : i;
                    got += encode_range_into(e, l, &snap, parts, r, bounds[r], bounds[r + 1],
                                             check);
                    if (i == 0 && n > 1)
                        ck_assert(any_touched(l)); /* the other ranges' rows */
                }
                ck_assert_uint_gt(got, 0);
            }
            /* what rounding left, as after the whole deltas (entry counts may
             * differ: a page the range cuts may take another layout, and a
             * dense section counts unchanged rows) */
            (void)encode_range_into(e, l, &snap, parts, 0, 0, 0, 0);
            ck_assert_msg(same_bits(whole, parts),
                          "%s, variant %d, %u ranges: the frames do not add up to the whole "
                          "delta",
                          enc, variant, (unsigned)n);
            ot_snapshot_release(snap);
            ot_model_destroy(l);
            ot_model_destroy(parts);
            if (!check)
                break;
        }
    }
    ot_delta_encoder_destroy(e);
    ot_model_destroy(whole);
    ot_model_destroy(base);
    ot_model_destroy(m);
    ot_config_destroy(c);
}

START_TEST(test_shard_range_frames_add_up_fp32)
{
    ranges_add_up("fp32", 10);
    ranges_add_up("fp32", 22);
}
END_TEST

START_TEST(test_shard_range_frames_add_up_bf16)
{
    ranges_add_up("bf16", 10);
}
END_TEST

START_TEST(test_shard_split_adds_up_fp32)
{
    split_for("sgd", "fp32");
}
END_TEST

START_TEST(test_shard_split_adds_up_adagrad_int8)
{
    split_for("adagrad", "int8");
}
END_TEST

START_TEST(test_shard_split_refuses_bad_frames)
{
    ot_config *c = shard_cfg(0, 1, "sgd", "fp16");
    ot_config *other = shard_cfg(0, 1, "adagrad", "fp16");
    ot_model *base = NULL, *m2 = NULL;
    ot_buf *f = trained_frame(c, &base);
    const oti_params *p = oti_model_params_c(base);
    oti_alloc a = {NULL, NULL};
    oti_split_buf out[2];
    uint64_t bounds[3], base_v[2] = {0, 0};
    size_t len = ot_buf_size(f), i, hlen;
    uint8_t *d = malloc(len);
    char err[OTI_ERRMSG_LEN];
    int ok = 0, refused = 0;

    ck_assert_ptr_nonnull(d);
    memset(out, 0, sizeof(out));
    ck_assert_int_eq(oti_shard_range(p, 0, 2, &bounds[0], &bounds[1]), OT_OK);
    ck_assert_int_eq(oti_shard_range(p, 1, 2, &bounds[1], &bounds[2]), OT_OK);
    ck_assert_int_eq(oti_shard_split(&a, p, NULL, len, bounds, base_v, 2, out, err), OT_EINVAL);
    ck_assert_int_eq(oti_shard_split(&a, p, ot_buf_data(f), len, bounds, base_v, 0, out, err),
                     OT_EINVAL);
    /* not an ADD frame; a frame shorter than it says */
    memcpy(d, ot_buf_data(f), len);
    d[OTI_H_KIND] = OT_DELTA_SET;
    ck_assert_int_eq(oti_shard_split(&a, p, d, len, bounds, base_v, 2, out, err), OT_EFORMAT);
    ck_assert_int_eq(oti_shard_split(&a, p, ot_buf_data(f), len - 1, bounds, base_v, 2, out, err),
                     OT_EFORMAT);
    /* a frame of another model */
    ck_assert_int_eq(ot_model_create(other, &m2), OT_OK);
    ck_assert_int_eq(oti_shard_split(&a, oti_model_params_c(m2), ot_buf_data(f), len, bounds,
                                     base_v, 2, out, err),
                     OT_EMISMATCH);
    /* every payload byte damaged in turn (lengths kept consistent): a
     * clean refusal or a split, never a read past the frame */
    hlen = oti_get16(ot_buf_data(f) + OTI_H_HLEN);
    for (i = hlen; i < len; i++) {
        ot_status st;
        memcpy(d, ot_buf_data(f), len);
        d[i] ^= (uint8_t)(0x80u | (i & 0x7fu));
        st = oti_shard_split(&a, p, d, len, bounds, base_v, 2, out, err);
        ck_assert_msg(st == OT_OK || st == OT_EFORMAT, "byte %zu: %s", i, ot_status_name(st));
        if (st == OT_OK)
            ok++;
        else
            refused++;
    }
    ck_assert_int_gt(refused, 0);
    ck_assert_int_gt(ok + refused, 0);
    /* a truncated payload, header patched to match */
    memcpy(d, ot_buf_data(f), len);
    oti_put32(d + OTI_H_PAYLOAD, (uint32_t)(len - hlen - 3));
    ck_assert_int_eq(oti_shard_split(&a, p, d, len - 3, bounds, base_v, 2, out, err), OT_EFORMAT);
    for (i = 0; i < 2; i++)
        oti_free(&a, out[i].data, out[i].cap);
    free(d);
    ot_buf_release(f);
    ot_model_destroy(base);
    ot_model_destroy(m2);
    ot_config_destroy(c);
    ot_config_destroy(other);
}
END_TEST

/* Learns n examples of 8 features each, all distinct: many changed rows. */
static void learn_wide(ot_trainer *tr, const char *tag, int from, int n)
{
    int i, k;

    for (i = from; i < from + n; i++) {
        ot_example *ex = NULL;
        char name[64];
        ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
        for (k = 0; k < 8; k++) {
            snprintf(name, sizeof(name), "%s_%d_%d", tag, i, k);
            ck_assert_int_eq(ot_example_add_feature(ex, NULL, name, 1.0f), OT_OK);
        }
        ck_assert_int_eq(ot_example_set_label(ex, (i % 3 == 0) ? 1.0f : 0.0f), OT_OK);
        ck_assert_int_eq(ot_trainer_learn(tr, ex, NULL), OT_OK);
        ot_example_destroy(ex);
    }
}

/* Largest |a - b| over every weight. */
static double max_weight_diff(const ot_model *a, const ot_model *b)
{
    const oti_params *pa = oti_model_params_c(a), *pb = oti_model_params_c(b);
    double worst = 0;
    size_t i, k;

    ck_assert_uint_eq(pa->nblocks, pb->nblocks);
    for (i = 0; i < pa->nblocks; i++)
        for (k = 0; k < (size_t)(pa->blocks[i].rows * pa->blocks[i].cols); k++) {
            double d = (double)pa->blocks[i].w[k] - (double)pb->blocks[i].w[k];
            if (d < 0)
                d = -d;
            if (d > worst)
                worst = d;
        }
    return worst;
}

/* The masters of n shards assembled into one model (destroy it). */
static ot_model *assemble(ot_param_server **ps, uint32_t n)
{
    ot_model *all = NULL;
    uint32_t i;

    for (i = 0; i < n; i++) {
        ot_model *m = NULL;
        uint64_t lo, hi;
        ck_assert_int_eq(ot_param_server_copy_model(ps[i], &m), OT_OK);
        if (all == NULL)
            ck_assert_int_eq(ot_model_clone(m, &all), OT_OK);
        ck_assert_int_eq(oti_shard_range(oti_model_params_c(m), i, n, &lo, &hi), OT_OK);
        copy_range(all, m, lo, hi);
        ot_model_destroy(m);
    }
    return all;
}

/* n shards of config c (its shard id set for each; URLs named by `tag`) and
 * trainers 1 and 2 of c, connected to every shard. */
static void start_cluster(const ot_config *c, uint32_t n, const char *tag, ot_param_server **ps,
                          const char **urls, ot_trainer **tr)
{
    ot_config *tc = NULL;
    uint32_t i;
    int k;

    for (i = 0; i < n; i++) {
        ot_config *sc = NULL;
        char url[128];
        ck_assert_int_eq(ot_config_clone(c, &sc), OT_OK);
        ck_assert_int_eq(ot_config_set_i64(sc, OT_OPT_SHARD_ID, i), OT_OK);
        shard_url(url, sizeof(url), tag, n, i);
        ck_assert_int_eq(ot_param_server_create(sc, &ps[i]), OT_OK);
        ck_assert_int_eq(ot_param_server_listen(ps[i], url, NULL), OT_OK);
        ck_assert_int_eq(ot_param_server_start(ps[i]), OT_OK);
        urls[i] = ot_param_server_url(ps[i], 0);
        ot_config_destroy(sc);
    }
    ck_assert_int_eq(ot_config_clone(c, &tc), OT_OK);
    for (k = 0; k < 2; k++) {
        ck_assert_int_eq(ot_config_set_i64(tc, OT_OPT_TRAINER_ID, 1 + k), OT_OK);
        ck_assert_int_eq(ot_trainer_create(tc, &tr[k]), OT_OK);
        ck_assert_msg(ot_trainer_connect_shards(tr[k], urls, n) == OT_OK, "connect: %s",
                      ot_trainer_errmsg(tr[k]));
    }
    ot_config_destroy(tc);
}

/* Destroys what start_cluster() made, and c. */
static void stop_cluster(ot_config *c, uint32_t n, ot_param_server **ps, ot_trainer **tr)
{
    uint32_t i;
    int k;

    for (k = 0; k < 2; k++)
        ot_trainer_destroy(tr[k]);
    for (i = 0; i < n; i++)
        ot_param_server_destroy(ps[i]);
    ot_config_destroy(c);
}

/*
 * Two trainers take turns while the change log keeps nothing, so the second
 * is told to resync at every sync.  With a small max_message each delta
 * goes out as several frames per shard, the next one encoded while the
 * previous is in flight, and the resync arrives in the middle of such a
 * sync; full copies (at connect and at each resync) come in many chunks.
 * Over 1 and 2 shards, the masters end equal to both trainers' models.
 */
START_TEST(test_shard_multi_frame_syncs_add_up)
{
    uint32_t n;

    for (n = 1; n <= 2; n++) {
        ot_param_server *ps[2];
        const char *urls[2];
        ot_config *c = shard_cfg(0, n, "sgd", "fp32");
        ot_trainer *tr[2];
        ot_model *master = NULL;
        double frames = 0, resyncs = 0;
        int k, r;

        ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, 14), OT_OK);
        ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_MAX_MESSAGE, 4096), OT_OK);
        ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_CHANGE_LOG_BYTES, 0), OT_OK);
        start_cluster(c, n, "multi", ps, urls, tr);
        for (r = 0; r < 4; r++) {
            learn_wide(tr[0], "ma", r * 300, 300);
            learn_wide(tr[1], "mb", r * 300, 300);
            sync_ok(tr[0]);
            sync_ok(tr[1]); /* behind tr[0]'s frames, and the log keeps none: resync */
        }
        for (k = 0; k < 2; k++) {
            double v = 0;
            sync_ok(tr[k]);
            ck_assert_int_eq(ot_trainer_stat(tr[k], "deltas_out", &v), OT_OK);
            frames += v;
            ck_assert_int_eq(ot_trainer_stat(tr[k], "resyncs", &v), OT_OK);
            resyncs += v;
        }
        sync_ok(tr[0]); /* catches up with tr[1]'s last frames */
        /* more frames than syncs: deltas went as several frames per shard */
        ck_assert_double_gt(frames, 2.0 * 5 * n);
        ck_assert_double_gt(resyncs, 0);
        master = assemble(ps, n);
        for (k = 0; k < 2; k++)
            ck_assert_msg(max_weight_diff(master, ot_trainer_model(tr[k])) < 1e-5,
                          "%u shards: trainer %d differs from the master by %g", (unsigned)n, k,
                          max_weight_diff(master, ot_trainer_model(tr[k])));
        ot_model_destroy(master);
        stop_cluster(c, n, ps, tr);
    }
}
END_TEST

/*
 * A large delta to 2 or 3 shards goes as pieces of each shard's range (and
 * frames of max_message within them), each encoded while that shard's
 * frame before it is in flight: the assembled
 * master equals the trainer's model, also when one shard loses every
 * second request (2 shards), and when the first reply of each shard says
 * resync (the servers keep no change log and another trainer synced first).
 */
static void pipeline_case(uint32_t n, int64_t piece_rows, int64_t max_message, int drops)
{
    ot_config *c = shard_cfg(0, n, "sgd", "fp32");
    ot_param_server *ps[MAX_SHARDS];
    const char *urls[MAX_SHARDS];
    ot_trainer *tr[2];
    ot_model *m, *want = NULL; /* every change made, added up directly */
    double frames;

    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, 20), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_CHANGE_LOG_BYTES, 0), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_TIMEOUT_MS, 1000), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_SYNC_PIECE_ROWS, piece_rows), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_MAX_MESSAGE, max_message), OT_OK);
    start_cluster(c, n, "big", ps, urls, tr);
    ck_assert_int_eq(ot_model_clone(ot_trainer_model(tr[0]), &want), OT_OK);
    tu_touch_wide_rows(tr[0], 0, 2, 0.01f); /* 2^19 rows: pieces */
    tu_add_wide_rows(want, 0, 2, 0.01f);
    sync_ok(tr[0]);
    frames = tu_stat_tr(tr[0], "deltas_out");
    ck_assert_double_ge(frames, 4);
    m = assemble(ps, n);
    ck_assert(same_bits(m, ot_trainer_model(tr[0])));
    ot_model_destroy(m);

    /* with drops, shard 1 loses every second request it receives: resent
     * (each after a timeout) */
    ck_assert_int_eq(oti_param_server_set_test_hook(ps[1], drops ? 2 : 0, 0), OT_OK);
    tu_touch_wide_rows(tr[0], 1, 1, -0.02f);
    tu_add_wide_rows(want, 1, 1, -0.02f);
    sync_ok(tr[0]);
    ck_assert(!drops || tu_stat_tr(tr[0], "retries") >= 1);
    ck_assert_int_eq(oti_param_server_set_test_hook(ps[1], 0, 0), OT_OK);
    m = assemble(ps, n);
    ck_assert(same_bits(m, ot_trainer_model(tr[0])));
    ot_model_destroy(m);

    /* the other trainer syncs (and resyncs: its base is 0): the first
     * trainer's next bases are behind on both shards */
    tu_touch_wide_rows(tr[1], 5, 1000, 0.5f);
    tu_add_wide_rows(want, 5, 1000, 0.5f);
    sync_ok(tr[1]);
    tu_touch_wide_rows(tr[0], 0, 2, 0.03f);
    tu_add_wide_rows(want, 0, 2, 0.03f);
    frames = tu_stat_tr(tr[0], "deltas_out");
    sync_ok(tr[0]);
    ck_assert_double_ge(tu_stat_tr(tr[0], "resyncs"), 2);
    ck_assert_double_ge(tu_stat_tr(tr[0], "deltas_out"), frames + 4);
    m = assemble(ps, n);
    ck_assert_double_lt(max_weight_diff(m, ot_trainer_model(tr[0])), 1e-6);
    /* nothing lost: the master holds every change */
    ck_assert_double_lt(max_weight_diff(m, want), 1e-5);
    ot_model_destroy(m);
    ot_model_destroy(want);
    stop_cluster(c, n, ps, tr);
}

START_TEST(test_shard_large_sync_pipelines_pieces)
{
    pipeline_case(2, 131072, INT64_C(4) << 20, 1);
    /* 3 shards, pieces of 50k rows, each cut into frames of 64 KiB */
    pipeline_case(3, 50000, 65536, 0);
}
END_TEST

/*
 * A full copy's chunks, over a shard's key range or the whole model, for
 * many max_message sizes: every chunk is one frame that fills its buffer
 * exactly (a chunk whose frame is shorter than its buffer is not one frame
 * to the client that fetches it), and the last one is flagged LAST.
 */
START_TEST(test_shard_full_chunks_are_whole_frames)
{
    static const uint32_t counts[3] = {1, 2, 4};
    ot_config *c = shard_cfg(0, 1, "sgd", "fp32");
    ot_model *m = NULL;
    int k;

    ck_assert_int_eq(ot_config_set_i64(c, OT_OPT_BITS, 14), OT_OK);
    ck_assert_int_eq(ot_model_create(c, &m), OT_OK);
    for (k = 0; k < 3; k++) {
        uint32_t n = counts[k], i;
        for (i = 0; i < n; i++) {
            uint64_t lo = 0, hi = 0, mm;
            ck_assert_int_eq(oti_shard_range(oti_model_params_c(m), i, n, &lo, &hi), OT_OK);
            for (mm = 4096; mm < 4096 + 48; mm++) {
                ot_config *ec = NULL;
                ot_delta_encoder *enc = NULL;
                ot_snapshot *snap = NULL;
                int more = 1, chunks = 0;
                ck_assert_int_eq(ot_config_clone(c, &ec), OT_OK);
                ck_assert_int_eq(ot_config_set_i64(ec, OT_OPT_MAX_MESSAGE, (int64_t)mm), OT_OK);
                ck_assert_int_eq(ot_delta_encoder_create(ec, &enc), OT_OK);
                ck_assert_int_eq(ot_snapshot_create(ec, m, 0, &snap), OT_OK);
                if (n > 1)
                    oti_delta_encoder_range(enc, lo, hi);
                while (more) {
                    ot_buf *b = NULL;
                    uint64_t fl = 0, flags = 0;
                    more = 0;
                    ck_assert_int_eq(ot_delta_encode_set_buf(enc, m, &snap, 1, &b, &more), OT_OK);
                    ck_assert_int_eq(ot_delta_peek(ot_buf_data(b), ot_buf_size(b),
                                                   OT_DELTA_FIELD_FRAME_LENGTH, &fl),
                                     OT_OK);
                    ck_assert_int_eq(ot_delta_peek(ot_buf_data(b), ot_buf_size(b),
                                                   OT_DELTA_FIELD_FLAGS, &flags),
                                     OT_OK);
                    ck_assert_msg(fl == ot_buf_size(b),
                                  "shard %u of %u, max_message %llu, chunk %d: a frame of %llu "
                                  "bytes in a buffer of %zu",
                                  (unsigned)i, (unsigned)n, (unsigned long long)mm, chunks,
                                  (unsigned long long)fl, ot_buf_size(b));
                    ck_assert_uint_le(fl, mm);
                    ck_assert_int_eq((flags & OT_DELTA_FLAG_LAST) != 0, !more);
                    ot_buf_release(b);
                    chunks++;
                }
                ck_assert_int_gt(chunks, 1);
                ot_snapshot_release(snap);
                ot_delta_encoder_destroy(enc);
                ot_config_destroy(ec);
            }
        }
    }
    ot_model_destroy(m);
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
    tcase_add_test(tc, test_shard_range_frames_add_up_fp32);
    tcase_add_test(tc, test_shard_range_frames_add_up_bf16);
    tcase_add_test(tc, test_shard_large_sync_pipelines_pieces);
    tcase_add_test(tc, test_shard_predictor_follows_every_shard);
    tcase_add_test(tc, test_shard_split_adds_up_fp32);
    tcase_add_test(tc, test_shard_split_adds_up_adagrad_int8);
    tcase_add_test(tc, test_shard_split_refuses_bad_frames);
    tcase_add_test(tc, test_shard_multi_frame_syncs_add_up);
    tcase_add_test(tc, test_shard_full_chunks_are_whole_frames);
    suite_add_tcase(s, tc);
    return s;
}
