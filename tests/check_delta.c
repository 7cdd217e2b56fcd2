/*
 * check_delta.c - snapshots and the delta codec: value encodings, property
 * tests over random params and random sparse "training", header and payload
 * mutations, truncation, hand-built frames (from docs/wire-format.md), merge,
 * chunked full updates, and the same through real models.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delta.h"
#include "tests.h"

/* ---- helpers ------------------------------------------------------------------ */

static uint32_t trng(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return (uint32_t)(x >> 16);
}

static float tunif(uint64_t *s, float lo, float hi)
{
    return lo + (hi - lo) * (float)(trng(s) & 0xffffff) / 16777216.0f;
}

/* Block specs: rows, cols, nstate, dense_hint. */
typedef struct bspec {
    uint64_t rows;
    uint32_t cols;
    int nstate;
    int dense;
} bspec;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* A params view built by hand, as model.c would build one, with random values. */
static oti_params *tp_new(const bspec *bs, size_t nb, uint64_t fingerprint, uint64_t seed)
{
    oti_params *p = xcalloc(1, sizeof(*p));
    uint64_t off = 0, s = seed * 2654435761u + 1;
    size_t b, i;
    int k;

    p->blocks = xcalloc(nb, sizeof(oti_block));
    p->nblocks = nb;
    for (b = 0; b < nb; b++) {
        oti_block *blk = &p->blocks[b];
        size_t n = (size_t)(bs[b].rows * bs[b].cols);
        blk->kind = bs[b].dense ? OTI_BLOCK_DENSE : OTI_BLOCK_WIDE;
        snprintf(blk->name, sizeof(blk->name), "b%zu", b);
        blk->offset = off;
        blk->rows = bs[b].rows;
        blk->cols = bs[b].cols;
        blk->nstate = bs[b].nstate;
        blk->dense_hint = bs[b].dense;
        blk->w = xcalloc(n, sizeof(float));
        for (i = 0; i < n; i++)
            blk->w[i] = tunif(&s, -1.0f, 1.0f);
        for (k = 0; k < bs[b].nstate; k++) {
            blk->s[k] = xcalloc(n, sizeof(float));
            for (i = 0; i < n; i++)
                blk->s[k][i] = tunif(&s, 0.0f, 2.0f);
        }
        blk->touched_bits = xcalloc((size_t)((blk->rows + 63) / 64), sizeof(uint64_t));
        blk->touched_list = xcalloc((size_t)blk->rows, sizeof(uint32_t));
        off += n;
    }
    p->total = off;
    p->fingerprint = fingerprint;
    return p;
}

static void tp_free(oti_params *p)
{
    size_t b;
    int k;

    if (p == NULL)
        return;
    for (b = 0; b < p->nblocks; b++) {
        free(p->blocks[b].w);
        for (k = 0; k < OTI_MAX_STATE; k++)
            free(p->blocks[b].s[k]);
        free(p->blocks[b].touched_bits);
        free(p->blocks[b].touched_list);
    }
    free(p->blocks);
    free(p);
}

/* Same shape, same values, an empty tracker. */
static oti_params *tp_clone(const oti_params *src)
{
    bspec bs[16];
    oti_params *p;
    size_t b;
    int k;

    ck_assert_uint_le(src->nblocks, 16);
    for (b = 0; b < src->nblocks; b++) {
        bs[b].rows = src->blocks[b].rows;
        bs[b].cols = src->blocks[b].cols;
        bs[b].nstate = src->blocks[b].nstate;
        bs[b].dense = src->blocks[b].dense_hint;
    }
    p = tp_new(bs, src->nblocks, src->fingerprint, 1);
    for (b = 0; b < src->nblocks; b++) {
        size_t n = (size_t)(bs[b].rows * bs[b].cols) * sizeof(float);
        memcpy(p->blocks[b].w, src->blocks[b].w, n);
        for (k = 0; k < bs[b].nstate; k++)
            memcpy(p->blocks[b].s[k], src->blocks[b].s[k], n);
    }
    return p;
}

static float *tp_arr(oti_params *p, size_t b, int a)
{
    return a == 0 ? p->blocks[b].w : p->blocks[b].s[a - 1];
}

/* Random sparse "training": nrows random rows of random blocks change a
 * little (weights and state), and are marked touched. */
static void tp_train(oti_params *p, uint64_t *s, size_t nrows, float scale)
{
    size_t i;

    for (i = 0; i < nrows; i++) {
        size_t b = trng(s) % p->nblocks;
        oti_block *blk = &p->blocks[b];
        uint64_t row = trng(s) % blk->rows;
        uint32_t c;
        int k;
        for (c = 0; c < blk->cols; c++) {
            blk->w[row * blk->cols + c] += tunif(s, -scale, scale);
            for (k = 0; k < blk->nstate; k++)
                blk->s[k][row * blk->cols + c] += tunif(s, 0.0f, scale);
        }
        if (blk->dense_hint)
            blk->all_touched = 1;
        else
            oti_block_touch(blk, row);
    }
}

static const bspec shape_small[] = {
    {1, 1, 2, 0},      /* bias-like */
    {4096, 1, 2, 0},   /* wide */
    {512, 8, 2, 0},    /* embedding */
    {16, 24, 0, 1},    /* dense layer */
};
#define NSMALL (sizeof(shape_small) / sizeof(shape_small[0]))

static ot_config *cfg_with(int source, int enc, double thr, double rel, int64_t maxent, int sr,
                           int64_t maxmsg)
{
    static const char *src[] = {"weights", "state", "both"};
    static const char *encs[] = {"fp32", "fp16", "bf16", "int8"};
    ot_config *cfg;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, src[source]), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_VALUE_ENCODING, encs[enc]), OT_OK);
    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_THRESHOLD, thr), OT_OK);
    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_THRESHOLD_REL, rel), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_ENTRIES, maxent), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_STOCHASTIC_ROUNDING, sr), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, maxmsg), OT_OK);
    return cfg;
}

static ot_delta_encoder *enc_with(int source, int enc, double thr, double rel, int64_t maxent,
                                  int sr, int64_t maxmsg)
{
    ot_config *cfg = cfg_with(source, enc, thr, rel, maxent, sr, maxmsg);
    ot_delta_encoder *e;

    ck_assert_int_eq(ot_delta_encoder_create(cfg, &e), OT_OK);
    ot_config_destroy(cfg);
    return e;
}

static ot_delta_decoder *dec_new(void)
{
    ot_delta_decoder *d;

    ck_assert_int_eq(ot_delta_decoder_create(NULL, &d), OT_OK);
    return d;
}

static oti_shadow *shadow_of(const oti_params *p, int source)
{
    oti_shadow *sh;

    ck_assert_int_eq(oti_shadow_create(NULL, p, source, 0, &sh), OT_OK);
    return sh;
}

/* Encodes one ADD frame into a fresh malloc'd buffer. */
static uint8_t *encode_add(ot_delta_encoder *e, oti_params *p, oti_shadow *sh, size_t *len,
                           int *more)
{
    size_t cap = oti_delta_encode_bound(e, p, 0);
    uint8_t *buf = xcalloc(cap, 1);
    ot_status st = oti_delta_encode_add(e, p, sh, buf, cap, len, more);

    ck_assert_msg(st == OT_OK, "encode: %s: %s", ot_status_name(st), ot_delta_encoder_errmsg(e));
    ck_assert_uint_le(*len, cap);
    return buf;
}

static void apply_ok(ot_delta_decoder *d, oti_params *p, const uint8_t *f, size_t len)
{
    ot_status st = oti_delta_apply_params(d, p, f, len);

    ck_assert_msg(st == OT_OK, "apply: %s: %s", ot_status_name(st), ot_delta_decoder_errmsg(d));
}

/* max |p - shadow| over the arrays the shadow holds */
static double max_resid(const oti_params *p, const oti_shadow *sh)
{
    double m = 0;
    size_t b;
    int a;

    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        for (a = 0; a < OTI_NARRAYS; a++) {
            uint64_t r;
            uint32_t c;
            if (sh->blocks[b].pages[a] == NULL)
                continue;
            for (r = 0; r < blk->rows; r++) {
                const float *s = oti_shadow_row(sh, b, a, r);
                const float *l = (a == 0 ? blk->w : blk->s[a - 1]) + r * blk->cols;
                for (c = 0; c < blk->cols; c++) {
                    double d = fabs((double)l[c] - (double)s[c]);
                    if (d > m)
                        m = d;
                }
            }
        }
    }
    return m;
}

/* 1 if every array the shadow holds equals params bit for bit */
static int same_bits(const oti_params *p, const oti_shadow *sh)
{
    size_t b;
    int a;

    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        for (a = 0; a < OTI_NARRAYS; a++) {
            uint64_t r;
            if (sh->blocks[b].pages[a] == NULL)
                continue;
            for (r = 0; r < blk->rows; r++)
                if (memcmp(oti_shadow_row(sh, b, a, r),
                           (a == 0 ? blk->w : blk->s[a - 1]) + r * blk->cols,
                           (size_t)blk->cols * 4) != 0)
                    return 0;
        }
    }
    return 1;
}

static int params_equal(oti_params *a, oti_params *b, int narr)
{
    size_t k;
    int x;

    for (k = 0; k < a->nblocks; k++)
        for (x = 0; x < narr && x <= a->blocks[k].nstate; x++)
            if (memcmp(tp_arr(a, k, x), tp_arr(b, k, x),
                       (size_t)(a->blocks[k].rows * a->blocks[k].cols) * 4) != 0)
                return 0;
    return 1;
}

static uint64_t ntouched_total(const oti_params *p)
{
    uint64_t n = 0;
    size_t b;

    for (b = 0; b < p->nblocks; b++)
        n += p->blocks[b].ntouched + (p->blocks[b].all_touched ? 1 : 0);
    return n;
}

/* ---- value encodings --------------------------------------------------------------- */

START_TEST(test_delta_fp16_bf16_conversions)
{
    uint64_t s = 7;
    int i;

    ck_assert_uint_eq(oti_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(oti_f32_to_f16(-2.0f), 0xc000);
    ck_assert_uint_eq(oti_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(oti_f32_to_f16(1e9f), 0x7bff);   /* clamped, never infinity */
    ck_assert_uint_eq(oti_f32_to_f16(-1e9f), 0xfbff);
    ck_assert_uint_eq(oti_f32_to_f16(5.9604645e-8f), 0x0001); /* 2^-24 */
    ck_assert_uint_eq(oti_f32_to_f16(6.103515625e-05f), 0x0400); /* 2^-14 */
    ck_assert_uint_eq(oti_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    ck_assert_uint_eq(oti_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    ck_assert_uint_eq(oti_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(oti_f32_to_bf16(FLT_MAX), 0x7f7f);
    ck_assert_uint_eq(oti_f32_to_bf16(-FLT_MAX), 0xff7f);
    ck_assert(oti_f16_to_f32(0x3c00) == 1.0f);
    ck_assert(oti_f16_to_f32(0x0001) == 5.9604645e-8f);
    ck_assert(oti_bf16_to_f32(0x3f80) == 1.0f);
    /* round trip of every finite half */
    for (i = 0; i < 0x10000; i++) {
        uint16_t h = (uint16_t)i;
        if ((h & 0x7c00) == 0x7c00)
            continue;
        ck_assert_uint_eq(oti_f32_to_f16(oti_f16_to_f32(h)), h);
        ck_assert_uint_eq(oti_f32_to_f16_sr(oti_f16_to_f32(h), trng(&s)), h);
    }
    /* nearest rounding error is at most half a step; stochastic below a step */
    for (i = 0; i < 100000; i++) {
        float v = tunif(&s, -70000.0f, 70000.0f) * (i % 2 ? 1e-6f : 1.0f);
        float h = oti_f16_to_f32(oti_f32_to_f16(v));
        float hs = oti_f16_to_f32(oti_f32_to_f16_sr(v, trng(&s)));
        float b = oti_bf16_to_f32(oti_f32_to_bf16(v));
        float bs = oti_bf16_to_f32(oti_f32_to_bf16_sr(v, trng(&s)));
        float step16 = fabsf(v) < 6.1035e-5f ? 5.9604645e-8f : ldexpf(1.0f, ilogbf(v) - 10);
        float stepb = ldexpf(1.0f, ilogbf(v) - 7);
        if (fabsf(v) > 65504.0f)
            continue;
        ck_assert_float_le(fabsf(h - v), step16 / 2);
        ck_assert_float_lt(fabsf(hs - v), step16);
        ck_assert_float_le(fabsf(b - v), stepb / 2);
        ck_assert_float_lt(fabsf(bs - v), stepb);
    }
}
END_TEST

START_TEST(test_delta_stochastic_rounding_unbiased)
{
    oti_rng r;
    const float v = 1.0f + 0.3f / 1024; /* 0.3 of an fp16 step above 1 */
    double sum16 = 0, sum8 = 0;
    float q[1], d[1];
    uint8_t code[2];
    int i, n = 200000;

    oti_rng_seed(&r, 42);
    for (i = 0; i < n; i++) {
        sum16 += oti_f16_to_f32(oti_f32_to_f16_sr(v, oti_rng_next(&r)));
        q[0] = 0.3f;
        oti_quantize(OTI_ENC_INT8, q, 1, 1.0f, &r, code, d);
        sum8 += d[0];
    }
    ck_assert_double_eq_tol(sum16 / n, (double)v, 2e-5);
    ck_assert_double_eq_tol(sum8 / n, 0.3, 0.01);
    /* nearest rounding of the same value is biased: always down */
    ck_assert(oti_f16_to_f32(oti_f32_to_f16(v)) == 1.0f);
}
END_TEST

START_TEST(test_delta_int8_scale)
{
    const float m[] = {1.0f, 127.0f, 1e-40f, FLT_MAX, 3e38f, 5.0f};
    size_t i;

    ck_assert(oti_int8_scale(0.0f) == 0.0f);
    for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        float s = oti_int8_scale(m[i]);
        ck_assert(s > 0.0f);
        ck_assert(isfinite(127.0f * s));
        ck_assert(127.0f * s >= m[i] || m[i] > FLT_MAX / 2);
    }
}
END_TEST

/* ---- convergence ------------------------------------------------------------------- */

/*
 * A trainer (local params + shadow) and a server (a copy of the initial
 * params): rounds of random sparse training, each followed by an ADD frame
 * the server applies.  For every value encoding, the server always equals
 * the shadow bit for bit, and after a final threshold-0 fp32 round the
 * shadow equals local within float rounding.
 */
START_TEST(test_delta_add_converges)
{
    int venc = _i % 4, sr = _i / 4;
    oti_params *local = tp_new(shape_small, NSMALL, 0xabcdef, 3);
    oti_params *server = tp_clone(local);
    oti_shadow *sh = shadow_of(local, OTI_SRC_BOTH);
    ot_delta_encoder *e = enc_with(OTI_SRC_BOTH, venc, 0.0, 0.0, 0, sr, 1 << 20);
    ot_delta_encoder *final = enc_with(OTI_SRC_BOTH, OTI_ENC_FP32, 0.0, 0.0, 0, 0, 1 << 20);
    ot_delta_decoder *d = dec_new();
    uint64_t s = 11 + (uint64_t)_i;
    int round, more;
    size_t len;
    uint8_t *f;

    for (round = 0; round < 40; round++) {
        tp_train(local, &s, 60, 0.05f);
        f = encode_add(e, local, sh, &len, &more);
        ck_assert_int_eq(more, 0);
        apply_ok(d, server, f, len);
        free(f);
        ck_assert_msg(same_bits(server, sh), "server and shadow differ in round %d", round);
    }
    /* nothing is lost: the rest goes in threshold-0 fp32 rounds */
    for (round = 0; round < 3; round++) {
        f = encode_add(final, local, sh, &len, &more);
        apply_ok(d, server, f, len);
        free(f);
    }
    ck_assert(same_bits(server, sh));
    ck_assert_double_le(max_resid(local, sh), 1e-6);
    /* and nothing stays touched once nothing differs */
    if (max_resid(local, sh) == 0)
        ck_assert_uint_eq(ntouched_total(local), 0);
    ot_delta_encoder_destroy(e);
    ot_delta_encoder_destroy(final);
    ot_delta_decoder_destroy(d);
    oti_shadow_destroy(sh);
    tp_free(local);
    tp_free(server);
}
END_TEST

/*
 * With a threshold and a lossy encoding, after every round the residual per
 * coordinate stays within threshold plus one quantisation step of the
 * largest change of the round, however many rounds run.
 */
START_TEST(test_delta_residual_bounded)
{
    int venc = 1 + _i % 3, sr = _i / 3;
    const double thr = 0.02;
    oti_params *local = tp_new(shape_small, NSMALL, 0x1234, 5);
    oti_shadow *sh = shadow_of(local, OTI_SRC_WEIGHTS);
    ot_delta_encoder *e = enc_with(OTI_SRC_WEIGHTS, venc, thr, 0.0, 0, sr, 1 << 20);
    uint64_t s = 99 + (uint64_t)_i;
    int round, more;
    size_t len;

    for (round = 0; round < 150; round++) {
        double maxd, step, bound;
        uint8_t *f;
        tp_train(local, &s, 40, 0.01f * (float)(1 + round % 7));
        maxd = max_resid(local, sh);
        /* one step of the coarsest encoding at this magnitude */
        if (venc == OTI_ENC_INT8)
            step = maxd / 127;
        else if (venc == OTI_ENC_FP16)
            step = maxd / 1024 + 6e-8;
        else
            step = maxd / 128;
        f = encode_add(e, local, sh, &len, &more);
        free(f);
        bound = thr + step * (sr ? 1.0 : 0.5) * 1.0001 + 1e-6;
        ck_assert_msg(max_resid(local, sh) <= bound, "round %d: residual %g > %g", round,
                      max_resid(local, sh), bound);
    }
    ot_delta_encoder_destroy(e);
    oti_shadow_destroy(sh);
    tp_free(local);
}
END_TEST

/* Relative threshold: a change is sent once it reaches rel * |snapshot value|. */
START_TEST(test_delta_threshold_relative)
{
    const bspec bs[] = {{8, 1, 0, 0}};
    oti_params *p = tp_new(bs, 1, 1, 1);
    oti_shadow *sh;
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.1, 0, 0, 1 << 20);
    size_t len;
    int more, i;
    uint8_t *f;

    for (i = 0; i < 8; i++)
        p->blocks[0].w[i] = 10.0f;
    sh = shadow_of(p, 0);
    p->blocks[0].w[1] = 10.5f; /* 0.05 relative: held */
    p->blocks[0].w[2] = 11.5f; /* 0.15 relative: sent */
    oti_block_touch(&p->blocks[0], 1);
    oti_block_touch(&p->blocks[0], 2);
    f = encode_add(e, p, sh, &len, &more);
    ck_assert(oti_shadow_row(sh, 0, 0, 1)[0] == 10.0f);
    ck_assert(oti_shadow_row(sh, 0, 0, 2)[0] == 11.5f);
    /* the held row stays touched, the sent one does not */
    ck_assert_uint_eq(p->blocks[0].ntouched, 1);
    ck_assert_uint_eq(p->blocks[0].touched_list[0], 1);
    free(f);
    ot_delta_encoder_destroy(e);
    oti_shadow_destroy(sh);
    tp_free(p);
}
END_TEST

/* ---- top-k ---------------------------------------------------------------------- */

START_TEST(test_delta_topk_selects_largest)
{
    const bspec bs[] = {{100000, 1, 0, 0}};
    oti_params *p = tp_new(bs, 1, 1, 1);
    oti_shadow *sh = shadow_of(p, 0);
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 50, 0, 1 << 20);
    float *w = p->blocks[0].w, mags[1000], kth;
    uint64_t s = 5;
    size_t len, i, sent = 0, big_sent = 0;
    int more;
    uint8_t *f;

    /* 1000 scattered rows change by distinct amounts */
    for (i = 0; i < 1000; i++) {
        uint32_t r = (uint32_t)((i * 7919u + 13) % 100000u);
        mags[i] = 0.001f * (float)(i + 1);
        w[r] += (trng(&s) & 1) ? mags[i] : -mags[i];
        oti_block_touch(&p->blocks[0], r);
    }
    kth = mags[1000 - 50];
    f = encode_add(e, p, sh, &len, &more);
    for (i = 0; i < 1000; i++) {
        uint32_t r = (uint32_t)((i * 7919u + 13) % 100000u);
        int was_sent = w[r] == oti_shadow_row(sh, 0, 0, r)[0];
        sent += was_sent;
        if (mags[i] >= kth - 1e-7f && was_sent)
            big_sent++;
    }
    ck_assert_uint_eq(big_sent, 50); /* the 50 largest, all of them */
    ck_assert_uint_eq(sent, 50);     /* and no more: scattered rows make sparse sections */
    ck_assert_uint_eq(p->blocks[0].ntouched, 950);
    free(f);
    ot_delta_encoder_destroy(e);
    oti_shadow_destroy(sh);
    tp_free(p);
}
END_TEST

/* ---- SET and FULL ------------------------------------------------------------------- */

START_TEST(test_delta_set_idempotent)
{
    oti_params *master = tp_new(shape_small, NSMALL, 77, 8);
    oti_params *pred = tp_clone(master), *once;
    oti_shadow *pub = shadow_of(master, OTI_SRC_WEIGHTS);
    ot_delta_encoder *e = enc_with(0, _i, 0.001, 0.0, 0, 0, 1 << 20);
    ot_delta_decoder *d = dec_new();
    uint64_t s = 3;
    size_t len;
    int more;
    uint8_t *f;

    tp_train(master, &s, 300, 0.1f);
    f = xcalloc(1 << 20, 1);
    ck_assert_int_eq(oti_delta_encode_set(e, master, pub, 0, f, 1 << 20, &len, &more), OT_OK);
    apply_ok(d, pred, f, len);
    once = tp_clone(pred);
    apply_ok(d, pred, f, len);
    ck_assert(params_equal(pred, once, 1));
    /* and the predictor holds what the published shadow says */
    ck_assert(same_bits(pred, pub));
    free(f);
    tp_free(once);
    tp_free(pred);
    tp_free(master);
    oti_shadow_destroy(pub);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
}
END_TEST

/* A full update, chunked under a small max_message, rebuilds the source bit
 * for bit (weights and state), with first/last flags and consecutive
 * sequence numbers. */
START_TEST(test_delta_full_update_bit_exact)
{
    oti_params *src = tp_new(shape_small, NSMALL, 5150, 21);
    oti_params *dst = tp_new(shape_small, NSMALL, 5150, 22); /* other values */
    oti_shadow *pub = shadow_of(dst, OTI_SRC_BOTH);         /* what dst holds */
    ot_delta_encoder *e = enc_with(OTI_SRC_BOTH, OTI_ENC_FP32, 0.5, 0.0, 0, 0, 4096);
    ot_delta_decoder *d = dec_new();
    uint8_t buf[4096];
    uint64_t seq0 = ot_delta_encoder_sequence(e), v;
    size_t len;
    int more = 1, n = 0;

    src->blocks[1].w[7] = -0.0f; /* signed zero survives */
    while (more) {
        ck_assert_int_eq(oti_delta_encode_set(e, src, pub, 1, buf, sizeof(buf), &len, &more),
                         OT_OK);
        ck_assert_uint_le(len, 4096);
        ck_assert_int_eq(ot_delta_peek(buf, len, OT_DELTA_FIELD_KIND, &v), OT_OK);
        ck_assert_uint_eq(v, OT_DELTA_FULL);
        ck_assert_int_eq(ot_delta_peek(buf, len, OT_DELTA_FIELD_FLAGS, &v), OT_OK);
        ck_assert_uint_eq(v & OT_DELTA_FLAG_FIRST, n == 0 ? OT_DELTA_FLAG_FIRST : 0);
        ck_assert_uint_eq(v & OT_DELTA_FLAG_LAST, more ? 0 : OT_DELTA_FLAG_LAST);
        ck_assert_int_eq(ot_delta_peek(buf, len, OT_DELTA_FIELD_SEQUENCE, &v), OT_OK);
        ck_assert_uint_eq(v, seq0 + (uint64_t)n);
        apply_ok(d, dst, buf, len);
        n++;
        ck_assert_int_lt(n, 1000);
    }
    ck_assert_int_gt(n, 10);
    ck_assert(params_equal(src, dst, 3));
    ck_assert(same_bits(src, pub));
    ck_assert(signbit(dst->blocks[1].w[7]));
    oti_shadow_destroy(pub);
    tp_free(src);
    tp_free(dst);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
}
END_TEST

/* ADD frames too stay under max_message; what does not fit goes next time. */
START_TEST(test_delta_add_chunked_by_max_message)
{
    const bspec bs[] = {{20000, 1, 0, 0}, {300, 16, 0, 0}};
    oti_params *local = tp_new(bs, 2, 9, 9), *server = tp_clone(local);
    oti_shadow *sh = shadow_of(local, 0);
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 0, 0, 4096);
    ot_delta_decoder *d = dec_new();
    uint64_t s = 1;
    size_t len;
    int more = 1, frames = 0;

    tp_train(local, &s, 5000, 0.5f);
    while (more || ntouched_total(local) > 0) { /* the last rounds fix float rounding */
        uint8_t *f = encode_add(e, local, sh, &len, &more);
        ck_assert_uint_le(len, 4096);
        apply_ok(d, server, f, len);
        free(f);
        frames++;
        ck_assert_int_lt(frames, 100);
    }
    ck_assert_int_gt(frames, 3);
    ck_assert(same_bits(server, sh));
    ck_assert_double_eq(max_resid(local, sh), 0.0);
    ck_assert_uint_eq(ntouched_total(local), 0);
    tp_free(local);
    tp_free(server);
    oti_shadow_destroy(sh);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
}
END_TEST

START_TEST(test_delta_too_big_row)
{
    const bspec bs[] = {{2, 2000, 0, 0}};
    oti_params *p = tp_new(bs, 1, 9, 9);
    oti_shadow *sh = shadow_of(p, 0);
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 0, 0, 4096);
    uint8_t buf[4096];
    size_t len;
    int more;

    p->blocks[0].w[5] += 1.0f;
    oti_block_touch(&p->blocks[0], 0);
    ck_assert_int_eq(oti_delta_encode_add(e, p, sh, buf, sizeof(buf), &len, &more), OT_ETOOBIG);
    ck_assert_uint_eq(p->blocks[0].ntouched, 1); /* nothing changed */
    ck_assert(oti_shadow_row(sh, 0, 0, 0)[5] != p->blocks[0].w[5]);
    tp_free(p);
    oti_shadow_destroy(sh);
    ot_delta_encoder_destroy(e);
}
END_TEST

/* ---- buffers -------------------------------------------------------------------------- */

START_TEST(test_delta_enospc_reports_size)
{
    oti_params *p = tp_new(shape_small, NSMALL, 4, 4);
    oti_shadow *sh = shadow_of(p, OTI_SRC_BOTH), *copy;
    ot_delta_encoder *e = enc_with(OTI_SRC_BOTH, OTI_ENC_BF16, 0.0, 0.0, 0, 1, 1 << 20);
    uint64_t s = 4, seq;
    uint8_t small[100], *big;
    size_t len = 0, len2 = 0, nt;
    int more;

    tp_train(p, &s, 200, 0.1f);
    ck_assert_int_eq(oti_shadow_clone(sh, &copy), OT_OK);
    nt = (size_t)ntouched_total(p);
    seq = ot_delta_encoder_sequence(e);
    ck_assert_int_eq(oti_delta_encode_add(e, p, sh, small, sizeof(small), &len, &more), OT_ENOSPC);
    ck_assert_uint_gt(len, sizeof(small));
    ck_assert_ptr_nonnull(strstr(ot_delta_encoder_errmsg(e), "bytes"));
    /* nothing changed: tracker, shadow, sequence */
    ck_assert_uint_eq(ntouched_total(p), nt);
    ck_assert_uint_eq(ot_delta_encoder_sequence(e), seq);
    ck_assert_double_eq(max_resid(p, sh), max_resid(p, copy));
    /* exactly the size reported is enough */
    big = xcalloc(len, 1);
    ck_assert_int_eq(oti_delta_encode_add(e, p, sh, big, len, &len2, &more), OT_OK);
    ck_assert_uint_eq(len2, len);
    ck_assert_int_eq(ot_delta_check(big, len2), OT_OK);
    free(big);
    oti_shadow_destroy(copy);
    oti_shadow_destroy(sh);
    tp_free(p);
    ot_delta_encoder_destroy(e);
}
END_TEST

/* ---- frames built by hand, from docs/wire-format.md ------------------------------- */

typedef struct wbuf {
    uint8_t b[4096];
    size_t n;
} wbuf;

static void w8(wbuf *w, unsigned v)
{
    w->b[w->n++] = (uint8_t)v;
}

static void wle(wbuf *w, uint64_t v, int bytes)
{
    int i;

    for (i = 0; i < bytes; i++)
        w8(w, (unsigned)(v >> (8 * i)) & 0xffu);
}

static void wvar(wbuf *w, uint64_t v)
{
    while (v >= 0x80) {
        w8(w, (unsigned)(v & 0x7f) | 0x80u);
        v >>= 7;
    }
    w8(w, (unsigned)v);
}

static void wf32(wbuf *w, float f)
{
    uint32_t x;

    memcpy(&x, &f, 4);
    wle(w, x, 4);
}

/* The 64-byte header of docs/wire-format.md; entries, payload length and
 * checksum are filled by hand_finish(). */
static void hand_header(wbuf *w, int kind, int flags, uint64_t fingerprint)
{
    w->n = 0;
    w8(w, 'O');
    w8(w, 'T');
    w8(w, 'D');
    w8(w, 'F');
    w8(w, 1);           /* major */
    w8(w, 0);           /* minor */
    w8(w, (unsigned)kind);
    w8(w, (unsigned)flags);
    wle(w, 64, 2);      /* header length */
    wle(w, 0, 2);       /* reserved */
    wle(w, 7, 4);       /* shard */
    wle(w, fingerprint, 8);
    wle(w, 1001, 8);    /* sequence */
    wle(w, 40, 8);      /* base version */
    wle(w, 41, 8);      /* new version */
    wle(w, 3, 4);       /* sender */
    wle(w, 0, 4);       /* entries */
    wle(w, 0, 4);       /* payload length */
    wle(w, 0, 4);       /* checksum */
    ck_assert_uint_eq(w->n, 64);
}

/* CRC32C of the frame with the checksum field read as zero (the document's rule). */
static void hand_crc(uint8_t *f, size_t n)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    uint32_t c = oti_crc32c_portable(0, f, 60);

    c = oti_crc32c_portable(c, zero, 4);
    c = oti_crc32c_portable(c, f + 64, n - 64);
    f[60] = (uint8_t)c;
    f[61] = (uint8_t)(c >> 8);
    f[62] = (uint8_t)(c >> 16);
    f[63] = (uint8_t)(c >> 24);
}

static void hand_finish(wbuf *w, uint32_t entries)
{
    uint32_t payload = (uint32_t)(w->n - 64);

    w->b[52] = (uint8_t)entries;
    w->b[53] = (uint8_t)(entries >> 8);
    w->b[54] = (uint8_t)(entries >> 16);
    w->b[55] = (uint8_t)(entries >> 24);
    w->b[56] = (uint8_t)payload;
    w->b[57] = (uint8_t)(payload >> 8);
    w->b[58] = (uint8_t)(payload >> 16);
    w->b[59] = (uint8_t)(payload >> 24);
    hand_crc(w->b, w->n);
}

/* Section header: block, array, encoding, layout, cols, first row, count. */
static void hand_section(wbuf *w, uint64_t block, int array, int enc, int layout, uint32_t cols,
                         uint64_t first, uint64_t count)
{
    wvar(w, block);
    w8(w, (unsigned)array);
    w8(w, (unsigned)enc);
    w8(w, (unsigned)layout);
    wvar(w, cols);
    wvar(w, first);
    wvar(w, count);
}

static const bspec shape_hand[] = {{1, 1, 0, 0}, {100, 1, 0, 0}, {10, 3, 2, 0}};

/* The example frame of the document: three sections, four encodings. */
static void hand_frame(wbuf *w)
{
    hand_header(w, 1, 3, 0x0123456789abcdefULL);
    /* block 1, weights, fp32, sparse: rows 5, 7, 97 (gaps 2, 90) */
    hand_section(w, 1, 0, 0, 0, 1, 5, 3);
    wvar(w, 2);
    wvar(w, 90);
    wf32(w, 1.5f);
    wf32(w, -2.0f);
    wf32(w, 0.25f);
    /* block 1, weights, int8, dense: rows 98, 99, scale 0.5, q = 2, -4 */
    hand_section(w, 1, 0, 3, 1, 1, 98, 2);
    wf32(w, 0.5f);
    w8(w, 2);
    w8(w, 0xfc);
    /* block 2, state 0, fp16, dense: rows 2..3, 3 columns */
    hand_section(w, 2, 1, 1, 1, 3, 2, 2);
    wle(w, 0x3c00, 2);  /* 1.0 */
    wle(w, 0xc000, 2);  /* -2.0 */
    wle(w, 0x3800, 2);  /* 0.5 */
    wle(w, 0x0000, 2);
    wle(w, 0x8000, 2);  /* -0.0 */
    wle(w, 0x4200, 2);  /* 3.0 */
    /* block 2, state 1, bf16, sparse: row 9 */
    hand_section(w, 2, 2, 2, 0, 3, 9, 1);
    wle(w, 0x3f80, 2);  /* 1.0 */
    wle(w, 0x4040, 2);  /* 3.0 */
    wle(w, 0xbf00, 2);  /* -0.5 */
    hand_finish(w, 3 + 2 + 6 + 3);
}

/* The four-stream CRC32C equals the portable table code at every length
 * around its round size, and combining the CRCs of two parts equals the CRC
 * of the whole. */
START_TEST(test_delta_crc32c_streams_and_combine)
{
    const size_t n = 3 * 4096 + 77;
    uint8_t *buf = xcalloc(n, 1);
    uint64_t s = 991;
    size_t i, len;

    for (i = 0; i < n; i++)
        buf[i] = (uint8_t)trng(&s);
    ck_assert_uint_eq(oti_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    for (len = 0; len <= n; len += len < 4200 ? 1 : 511) {
        uint32_t whole = oti_crc32c_portable(0, buf, len);
        ck_assert_uint_eq(oti_crc32c(0, buf, len), whole);
        ck_assert_uint_eq(oti_crc32c(0x12345678u, buf, len),
                          oti_crc32c_portable(0x12345678u, buf, len));
        for (i = 0; i <= len; i += 1 + len / 3)
            ck_assert_uint_eq(oti_crc32c_combine(oti_crc32c(0, buf, i),
                                                 oti_crc32c(0, buf + i, len - i), len - i),
                              whole);
    }
    free(buf);
}
END_TEST

/* The frame checksum (several code paths by length) equals plain CRC32C with
 * the checksum field read as zero, and the encoder's running checksum of a
 * large frame agrees. */
START_TEST(test_delta_checksum_matches_crc32c)
{
    static const size_t sizes[] = {64, 65, 100, 4096, 12352, 12353, 16448, 16449, 49216,
                                   65600, 100001, 300000};
    uint64_t s = 77;
    size_t i, k;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *f = xcalloc(sizes[i], 1), *g = xcalloc(sizes[i], 1);
        for (k = 0; k < sizes[i]; k++)
            f[k] = (uint8_t)trng(&s);
        memcpy(g, f, sizes[i]);
        hand_crc(g, sizes[i]);
        ck_assert_uint_eq(oti_frame_crc(f, sizes[i]), oti_get32(g + 60));
        free(f);
        free(g);
    }
    {
        const bspec bs[] = {{300000, 1, 0, 1}};
        oti_params *p = tp_new(bs, 1, 5, 5);
        oti_shadow *sh = shadow_of(p, 0);
        ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 0, 0, 1 << 22);
        size_t len;
        int more;
        uint8_t *f, *g;
        for (k = 0; k < 2; k++) {
            size_t i2;
            e->nt_min = k == 0 ? (size_t)32 << 20 : 0; /* k = 1: non-temporal stores */
            for (i2 = 0; i2 < 300000; i2++)
                p->blocks[0].w[i2] += 1.0f;
            p->blocks[0].all_touched = 1;
            f = encode_add(e, p, sh, &len, &more);
            ck_assert_uint_gt(len, 1000000);
            g = xcalloc(len, 1);
            memcpy(g, f, len);
            hand_crc(g, len);
            ck_assert_int_eq(memcmp(f, g, len), 0);
            ck_assert_double_eq(max_resid(p, sh), 0.0);
            free(f);
            free(g);
        }
        ot_delta_encoder_destroy(e);
        oti_shadow_destroy(sh);
        tp_free(p);
    }
}
END_TEST

/* The example frame printed in docs/wire-format.md, byte for byte. */
static const uint8_t doc_example[130] = {
        0x4f, 0x54, 0x44, 0x46, 0x01, 0x00, 0x01, 0x03, 0x40, 0x00, 0x00, 0x00,
        0x07, 0x00, 0x00, 0x00, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01,
        0xe9, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x42, 0x00, 0x00, 0x00,
        0xd1, 0xaf, 0x76, 0x63, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x03, 0x02,
        0x5a, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x80,
        0x3e, 0x01, 0x00, 0x03, 0x01, 0x01, 0x62, 0x02, 0x00, 0x00, 0x00, 0x3f,
        0x02, 0xfc, 0x02, 0x01, 0x01, 0x01, 0x03, 0x02, 0x02, 0x00, 0x3c, 0x00,
        0xc0, 0x00, 0x38, 0x00, 0x00, 0x00, 0x80, 0x00, 0x42, 0x02, 0x02, 0x02,
        0x00, 0x03, 0x09, 0x01, 0x80, 0x3f, 0x40, 0x40, 0x00, 0xbf,
};

START_TEST(test_delta_hand_built_frame_decodes)
{
    oti_params *p = tp_new(shape_hand, 3, 0x0123456789abcdefULL, 2), *orig = tp_clone(p);
    ot_delta_decoder *d = dec_new();
    wbuf w;
    uint64_t v;
    int i;

    hand_frame(&w);
    ck_assert_uint_eq(w.n, sizeof(doc_example));
    ck_assert_int_eq(memcmp(w.b, doc_example, w.n), 0);
    ck_assert_int_eq(ot_delta_check(w.b, w.n), OT_OK);
    ck_assert_int_eq(ot_delta_peek(w.b, w.n, OT_DELTA_FIELD_SHARD, &v), OT_OK);
    ck_assert_uint_eq(v, 7);
    ck_assert_int_eq(ot_delta_peek(w.b, w.n, OT_DELTA_FIELD_SEQUENCE, &v), OT_OK);
    ck_assert_uint_eq(v, 1001);
    ck_assert_int_eq(ot_delta_peek(w.b, w.n, OT_DELTA_FIELD_SENDER, &v), OT_OK);
    ck_assert_uint_eq(v, 3);
    ck_assert_int_eq(ot_delta_peek(w.b, w.n, OT_DELTA_FIELD_NEW_VERSION, &v), OT_OK);
    ck_assert_uint_eq(v, 41);
    ck_assert_int_eq(ot_delta_peek(w.b, w.n, OT_DELTA_FIELD_ENTRIES, &v), OT_OK);
    ck_assert_uint_eq(v, 14);
    ck_assert_int_eq(ot_delta_peek(w.b, w.n, OT_DELTA_FIELD_FRAME_LENGTH, &v), OT_OK);
    ck_assert_uint_eq(v, w.n);
    apply_ok(d, p, w.b, w.n);
    ck_assert(p->blocks[1].w[5] == orig->blocks[1].w[5] + 1.5f);
    ck_assert(p->blocks[1].w[7] == orig->blocks[1].w[7] - 2.0f);
    ck_assert(p->blocks[1].w[97] == orig->blocks[1].w[97] + 0.25f);
    ck_assert(p->blocks[1].w[98] == orig->blocks[1].w[98] + 1.0f);
    ck_assert(p->blocks[1].w[99] == orig->blocks[1].w[99] - 2.0f);
    ck_assert(p->blocks[1].w[6] == orig->blocks[1].w[6]);
    {
        const float add0[6] = {1.0f, -2.0f, 0.5f, 0.0f, -0.0f, 3.0f};
        const float add1[3] = {1.0f, 3.0f, -0.5f};
        for (i = 0; i < 6; i++)
            ck_assert(p->blocks[2].s[0][6 + i] == orig->blocks[2].s[0][6 + i] + add0[i]);
        for (i = 0; i < 3; i++)
            ck_assert(p->blocks[2].s[1][27 + i] == orig->blocks[2].s[1][27 + i] + add1[i]);
    }
    /* rows written are marked touched */
    ck_assert_uint_eq(p->blocks[1].ntouched, 5);
    ck_assert_uint_eq(p->blocks[2].ntouched, 3);
    /* the same bytes as a SET frame overwrite instead */
    w.b[6] = 2;
    hand_crc(w.b, w.n);
    apply_ok(d, p, w.b, w.n);
    ck_assert(p->blocks[1].w[5] == 1.5f);
    ck_assert(p->blocks[1].w[99] == -2.0f);
    ck_assert(p->blocks[2].s[1][28] == 3.0f);
    ot_delta_decoder_destroy(d);
    tp_free(p);
    tp_free(orig);
}
END_TEST

/* Validation statuses by hand-built section faults (docs/wire-format.md). */
/* Sparse row gaps of one, two and three bytes in every mix and alignment
 * decode to the right rows; a zero gap or an overlong two-byte gap at any
 * position is refused. */
static void gaps_frame(wbuf *w, uint64_t first, const uint64_t *gaps, size_t n, size_t bad_at,
                       int bad_kind)
{
    size_t i;

    hand_header(w, OT_DELTA_SET, 3, 0x77);
    hand_section(w, 0, 0, 0, 0, 1, first, n);
    for (i = 1; i < n; i++) {
        if (i == bad_at && bad_kind == 1) {
            w8(w, 0); /* a zero gap */
        } else if (i == bad_at && bad_kind == 2) {
            w8(w, (unsigned)(gaps[i] & 0x7f) | 0x80u); /* gap < 128 in two bytes */
            w8(w, 0);
        } else {
            wvar(w, gaps[i]);
        }
    }
    for (i = 0; i < n; i++)
        wf32(w, (float)(i + 1));
    hand_finish(w, (uint32_t)n);
}

START_TEST(test_delta_sparse_gaps_every_length)
{
    static const bspec shape[] = {{1u << 22, 1, 0, 0}};
    oti_params *p = tp_new(shape, 1, 0x77, 3), *orig = tp_clone(p);
    ot_delta_decoder *d = dec_new();
    enum { N = 300 };
    uint64_t gaps[N], s = 4242, row;
    size_t i, at;
    wbuf w;

    for (i = 0; i < N; i++) {
        uint32_t r = trng(&s) % 16;
        gaps[i] = r < 9 ? 1 + trng(&s) % 127 : r < 15 ? 128 + trng(&s) % 16256 : 16384 + trng(&s) % 5000;
    }
    gaps[0] = 0; /* the first row is the section's first */
    gaps_frame(&w, 5, gaps, N, 0, 0);
    apply_ok(d, p, w.b, w.n);
    row = 5;
    for (i = 0; i < N; i++) {
        if (i > 0) {
            /* rows between two listed ones are untouched */
            ck_assert(tp_arr(p, 0, 0)[row + 1] == tp_arr(orig, 0, 0)[row + 1] || gaps[i] == 1);
            row += gaps[i];
        }
        ck_assert_float_eq(tp_arr(p, 0, 0)[row], (float)(i + 1));
    }
    /* a short-gap-only prefix, so the eight-byte words hold one and two byte gaps */
    for (i = 0; i < N; i++)
        if (gaps[i] >= 16384)
            gaps[i] = 200;
    for (at = 1; at < 40; at++) {
        gaps_frame(&w, 5, gaps, N, at, 1);
        ck_assert_int_eq(oti_delta_apply_params(d, p, w.b, w.n), OT_EFORMAT);
        if (gaps[at] < 128) {
            gaps_frame(&w, 5, gaps, N, at, 2);
            ck_assert_int_eq(oti_delta_apply_params(d, p, w.b, w.n), OT_EFORMAT);
        }
    }
    /* the last row, from the gaps' sum, is checked against the block's end */
    for (row = 0, i = 1; i < N; i++)
        row += gaps[i];
    gaps_frame(&w, (1u << 22) - 1 - row, gaps, N, 0, 0);
    apply_ok(d, p, w.b, w.n);
    ck_assert_float_eq(tp_arr(p, 0, 0)[(1u << 22) - 1], (float)N);
    gaps_frame(&w, (1u << 22) - row, gaps, N, 0, 0);
    ck_assert_int_eq(oti_delta_apply_params(d, p, w.b, w.n), OT_EFORMAT);
    tp_free(p);
    tp_free(orig);
    ot_delta_decoder_destroy(d);
}
END_TEST

/*
 * The sparse fp32 apply of single values decodes two halves of the sections
 * at once, in chunks: pages holding 1, 2, 511 to 513 and 1500 changed rows
 * (around the chunk size), some holding none, give every row its value, ADD
 * and SET, and mark exactly the changed rows touched.
 */
START_TEST(test_delta_sparse_apply_sections_and_chunks)
{
    static const bspec shape[] = {{1u << 16, 1, 0, 0}};
    static const unsigned per_page[] = {1, 0, 2, 511, 512, 513, 0, 1500, 3, 0, 700, 1, 64, 65, 1};
    oti_params *local = tp_new(shape, 1, 0x99, 5), *recv;
    oti_shadow *sh;
    ot_delta_encoder *e = enc_with(OTI_SRC_WEIGHTS, OTI_ENC_FP32, 0.0, 0.0, 0, 0, 1 << 22);
    ot_delta_decoder *d = dec_new();
    float *want = xcalloc(1u << 16, sizeof(float));
    unsigned char *changed = xcalloc(1u << 16, 1);
    size_t pg, i, len, nchanged = 0;
    int more, set;
    uint8_t *f;

    /* multiples of 1/16 below 64: every sum and difference is exact, so an
     * ADD leaves no residual and the expected values are plain */
    for (i = 0; i < (1u << 16); i++)
        tp_arr(local, 0, 0)[i] = (float)(i % 512) / 16.0f;
    recv = tp_clone(local);
    sh = shadow_of(local, OTI_SRC_WEIGHTS);
    for (set = 0; set < 2; set++) {
        float *l = tp_arr(local, 0, 0), *r = tp_arr(recv, 0, 0);
        memcpy(want, r, (1u << 16) * sizeof(float));
        for (pg = 0; pg < sizeof(per_page) / sizeof(per_page[0]); pg++) {
            for (i = 0; i < per_page[pg]; i++) {
                /* spread over the page's 4096 rows, some gaps of two bytes */
                uint32_t row = (uint32_t)(pg * 4096 + (i * 2654435761u + pg) % 4096);
                if (changed[row] != set + 1) {
                    l[row] += (float)(1 + i % 7) / 4.0f;
                    oti_block_touch(&local->blocks[0], row);
                    changed[row] = (unsigned char)(set + 1);
                }
            }
        }
        for (i = 0, nchanged = 0; i < (1u << 16); i++) {
            if (changed[i] != set + 1)
                continue;
            want[i] = l[i];
            nchanged++;
        }
        if (set) {
            ot_delta_encoder_destroy(e);
            e = enc_with(OTI_SRC_WEIGHTS, OTI_ENC_FP32, 0.0, 0.0, 0, 0, 1 << 22);
            f = xcalloc(1, 1u << 22);
            ck_assert_int_eq(oti_delta_encode_set(e, local, sh, 0, f, 1u << 22, &len, &more),
                             OT_OK);
        } else {
            f = encode_add(e, local, sh, &len, &more);
        }
        ck_assert_int_eq(more, 0);
        oti_params_clear_touched(recv);
        apply_ok(d, recv, f, len);
        free(f);
        for (i = 0; i < (1u << 16); i++)
            ck_assert_msg(memcmp(&r[i], &want[i], sizeof(float)) == 0, "row %zu: %g, want %g", i,
                          (double)r[i], (double)want[i]);
        ck_assert_uint_eq(recv->blocks[0].ntouched, nchanged);
        for (i = 0; i < recv->blocks[0].ntouched; i++)
            ck_assert_int_eq(changed[recv->blocks[0].touched_list[i]], set + 1);
    }
    free(want);
    free(changed);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
    oti_shadow_destroy(sh);
    tp_free(local);
    tp_free(recv);
}
END_TEST

START_TEST(test_delta_index_faults)
{
    oti_params *p = tp_new(shape_hand, 3, 0x0123456789abcdefULL, 2), *orig = tp_clone(p);
    ot_delta_decoder *d = dec_new();
    oti_frame f;
    wbuf w;
    static const struct {
        uint64_t block;
        int array;
        uint32_t cols;
        uint64_t first, count;
        int enc, layout;
        ot_status want;
    } cases[] = {
        {3, 0, 1, 0, 1, 0, 1, OT_EFORMAT},    /* no block 3 */
        {1, 0, 1, 100, 1, 0, 1, OT_EFORMAT},  /* row 100 of 100 */
        {1, 0, 1, 99, 2, 0, 1, OT_EFORMAT},   /* dense range past the end */
        {1, 0, 2, 0, 1, 0, 1, OT_EFORMAT},    /* wrong column count */
        {1, 1, 1, 0, 1, 0, 1, OT_EFORMAT},    /* no state in block 1 */
        {1, 3, 1, 0, 1, 0, 1, OT_EFORMAT},    /* no array 3 at all */
        {1, 0, 1, 0, 1, 4, 1, OT_EFORMAT},    /* no encoding 4 */
        {1, 0, 1, 0, 1, 0, 2, OT_EFORMAT},    /* no layout 2 */
        {1, 0, 1, 0, 0, 0, 1, OT_EFORMAT},    /* empty section */
        {1, 0, 0, 0, 1, 0, 1, OT_EFORMAT},    /* zero columns */
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t k, nv = cases[i].count * (cases[i].cols ? cases[i].cols : 1);
        hand_header(&w, 1, 3, 0x0123456789abcdefULL);
        hand_section(&w, cases[i].block, cases[i].array, cases[i].enc, cases[i].layout,
                     cases[i].cols, cases[i].first, cases[i].count);
        for (k = 0; k < nv; k++)
            wf32(&w, 1.0f);
        hand_finish(&w, (uint32_t)nv);
        ck_assert_msg(oti_delta_validate_params(d, p, w.b, w.n, &f) == cases[i].want,
                      "case %zu: %s (%s)", i,
                      ot_status_name(oti_delta_validate_params(d, p, w.b, w.n, &f)),
                      ot_delta_decoder_errmsg(d));
        ck_assert_int_ne(oti_delta_apply_params(d, p, w.b, w.n), OT_OK);
        ck_assert(params_equal(p, orig, 3));
    }
    /* sparse rows must increase: a zero gap is malformed */
    hand_header(&w, 1, 3, 0x0123456789abcdefULL);
    hand_section(&w, 1, 0, 0, 0, 1, 5, 2);
    wvar(&w, 0);
    wf32(&w, 1.0f);
    wf32(&w, 1.0f);
    hand_finish(&w, 2);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_EFORMAT);
    /* overlapping sections are malformed */
    hand_header(&w, 1, 3, 0x0123456789abcdefULL);
    hand_section(&w, 1, 0, 0, 1, 1, 5, 2);
    wf32(&w, 1.0f);
    wf32(&w, 1.0f);
    hand_section(&w, 1, 0, 0, 1, 1, 6, 1);
    wf32(&w, 1.0f);
    hand_finish(&w, 3);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_EFORMAT);
    /* an overlong varint is malformed */
    hand_header(&w, 1, 3, 0x0123456789abcdefULL);
    w8(&w, 0x81);
    w8(&w, 0x00);
    w8(&w, 0);
    w8(&w, 0);
    w8(&w, 1);
    wvar(&w, 1);
    wvar(&w, 0);
    wvar(&w, 1);
    wf32(&w, 1.0f);
    hand_finish(&w, 1);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_EFORMAT);
    /* the shard range: indices outside it give OT_ERANGE; another shard OT_EMISMATCH */
    hand_header(&w, 1, 3, 0x0123456789abcdefULL);
    hand_section(&w, 1, 0, 0, 1, 1, 10, 2); /* flat 11, 12 */
    wf32(&w, 1.0f);
    wf32(&w, 1.0f);
    hand_finish(&w, 2);
    ck_assert_int_eq(ot_delta_decoder_set_shard(d, 7, 0, 13), OT_OK);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_OK);
    ck_assert_int_eq(ot_delta_decoder_set_shard(d, 7, 12, 50), OT_OK);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_ERANGE);
    ck_assert_int_eq(ot_delta_decoder_set_shard(d, 7, 0, 12), OT_OK);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_ERANGE);
    ck_assert_int_eq(ot_delta_decoder_set_shard(d, 8, 0, 1000), OT_OK);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_EMISMATCH);
    ck_assert_int_eq(ot_delta_decoder_set_shard(d, 8, 10, 9), OT_EINVAL);
    ck_assert(params_equal(p, orig, 3));
    ot_delta_decoder_destroy(d);
    tp_free(p);
    tp_free(orig);
}
END_TEST

/* An encoded frame with several sections, for mutation tests. */
static uint8_t *sample_frame(oti_params **pp, size_t *len, int venc)
{
    oti_params *p = tp_new(shape_small, NSMALL, 0xfeedULL, 31);
    oti_shadow *sh = shadow_of(p, OTI_SRC_BOTH);
    ot_delta_encoder *e = enc_with(OTI_SRC_BOTH, venc, 0.0, 0.0, 0, 0, 1 << 20);
    uint64_t s = 8;
    int more;
    uint8_t *f;

    tp_train(p, &s, 100, 0.1f);
    f = encode_add(e, p, sh, len, &more);
    ot_delta_encoder_destroy(e);
    oti_shadow_destroy(sh);
    *pp = p;
    return f;
}

static void put_le(uint8_t *f, size_t off, uint64_t v, int bytes)
{
    int i;

    for (i = 0; i < bytes; i++)
        f[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}

START_TEST(test_delta_header_mutations)
{
    oti_params *p, *orig;
    size_t len;
    uint8_t *f = sample_frame(&p, &len, OTI_ENC_FP32), *m = xcalloc(len + 8, 1);
    ot_delta_decoder *d = dec_new();
    oti_frame fr;
    static const struct {
        size_t off;
        int bytes;
        uint64_t xor_mask;
        int fix_crc;
        ot_status want;
    } cases[] = {
        {0, 1, 0x01, 0, OT_EFORMAT},     /* magic */
        {3, 1, 0x80, 1, OT_EFORMAT},     /* magic, even with a good checksum */
        {4, 1, 0x03, 0, OT_EVERSION},    /* major version 2 */
        {4, 1, 0x03, 1, OT_EVERSION},
        {5, 1, 0x01, 0, OT_ECORRUPT},    /* minor: covered by the checksum */
        {5, 1, 0x01, 1, OT_OK},          /* a newer minor is accepted */
        {6, 1, 0x04, 1, OT_EFORMAT},     /* kind 5 */
        {6, 1, 0x03, 0, OT_ECORRUPT},    /* kind, stale checksum */
        {7, 1, 0x10, 1, OT_EFORMAT},     /* unknown flag */
        {7, 1, 0x01, 1, OT_EFORMAT},     /* an ADD frame is first and last */
        {8, 2, 0x40, 1, OT_EFORMAT},     /* header length 0 (< 64) */
        {9, 1, 0x01, 0, OT_ECORRUPT},    /* header length 64 + 256 > frame */
        {10, 1, 0x01, 1, OT_EFORMAT},    /* reserved */
        {12, 4, 0x01, 0, OT_ECORRUPT},   /* shard, stale checksum */
        {16, 8, 0x100, 1, OT_EMISMATCH}, /* fingerprint */
        {16, 8, 0x100, 0, OT_ECORRUPT},  /* fingerprint, stale checksum */
        {24, 8, 0x5, 0, OT_ECORRUPT},    /* sequence */
        {24, 8, 0x5, 1, OT_OK},
        {32, 8, 0x5, 1, OT_OK},          /* versions */
        {40, 8, 0x5, 0, OT_ECORRUPT},
        {48, 4, 0x5, 1, OT_OK},          /* sender */
        {52, 4, 0x1, 1, OT_EFORMAT},     /* entry count */
        {52, 4, 0x1, 0, OT_ECORRUPT},
        {56, 4, 0x1, 1, OT_ECORRUPT},    /* payload length: more or fewer bytes than present */
        {56, 4, 0x100000, 1, OT_ECORRUPT},
        {60, 4, 0x1, 0, OT_ECORRUPT},    /* checksum */
        {63, 1, 0x80, 0, OT_ECORRUPT},
        {64, 1, 0x01, 0, OT_ECORRUPT},   /* first payload byte */
    };
    size_t i, k;

    orig = tp_clone(p);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 0;
        int b;
        ot_status st;
        memcpy(m, f, len);
        for (b = 0; b < cases[i].bytes; b++)
            v |= (uint64_t)m[cases[i].off + (size_t)b] << (8 * b);
        put_le(m, cases[i].off, v ^ cases[i].xor_mask, cases[i].bytes);
        if (cases[i].fix_crc)
            hand_crc(m, len);
        st = oti_delta_validate_params(d, p, m, len, &fr);
        ck_assert_msg(st == cases[i].want, "case %zu (offset %zu): got %s (%s), want %s", i,
                      cases[i].off, ot_status_name(st), ot_delta_decoder_errmsg(d),
                      ot_status_name(cases[i].want));
        if (st != OT_OK) {
            ck_assert_int_eq(oti_delta_apply_params(d, p, m, len), st);
            ck_assert(params_equal(p, orig, 3));
        }
    }
    /* a payload length one less: the last byte trails the frame */
    memcpy(m, f, len);
    put_le(m, 56, len - 64 - 1, 4);
    hand_crc(m, len - 1);
    ck_assert_int_eq(oti_delta_validate_params(d, p, m, len, &fr), OT_EFORMAT);
    /* every single payload byte flipped is caught by the checksum */
    for (k = 64; k < len; k += 7) {
        memcpy(m, f, len);
        m[k] ^= 0x20;
        ck_assert_int_eq(oti_delta_validate_params(d, p, m, len, &fr), OT_ECORRUPT);
    }
    /* over max_message: OT_ETOOBIG */
    {
        ot_config *cfg;
        ot_delta_decoder *small;
        ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
        ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, 4096), OT_OK);
        ck_assert_int_eq(ot_delta_decoder_create(cfg, &small), OT_OK);
        if (len > 4096)
            ck_assert_int_eq(oti_delta_validate_params(small, p, f, len, &fr), OT_ETOOBIG);
        ot_delta_decoder_destroy(small);
        ot_config_destroy(cfg);
    }
    ck_assert_uint_gt(len, 4096);
    free(m);
    free(f);
    tp_free(p);
    tp_free(orig);
    ot_delta_decoder_destroy(d);
}
END_TEST

/* Non-finite values, even with a correct checksum, are refused. */
START_TEST(test_delta_nonfinite_refused)
{
    oti_params *p = tp_new(shape_hand, 3, 0x0123456789abcdefULL, 2), *orig = tp_clone(p);
    ot_delta_decoder *d = dec_new();
    oti_frame f;
    wbuf w, base;
    static const size_t value_at[] = {64 + 9, 64 + 13, 64 + 17};
    static const uint32_t bad32[] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f800001u};
    size_t i, k;

    hand_frame(&base);
    ck_assert_int_eq(oti_delta_validate_params(d, p, base.b, base.n, &f), OT_OK);
    /* fp32 values of the first section: NaN, +inf, -inf, signalling NaN */
    for (i = 0; i < 3; i++) {
        for (k = 0; k < 4; k++) {
            w = base;
            put_le(w.b, value_at[i], bad32[k], 4);
            hand_crc(w.b, w.n);
            ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_ENONFINITE);
            ck_assert_int_eq(oti_delta_apply_params(d, p, w.b, w.n), OT_ENONFINITE);
        }
    }
    /* int8 scale NaN, int8 code -128, fp16 infinity, bf16 NaN */
    w = base;
    put_le(w.b, 64 + 21 + 7, 0x7fc00000u, 4);
    hand_crc(w.b, w.n);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_ENONFINITE);
    w = base;
    w.b[64 + 21 + 11] = 0x80;
    hand_crc(w.b, w.n);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_EFORMAT);
    w = base;
    put_le(w.b, 64 + 34 + 7, 0x7c00, 2);
    hand_crc(w.b, w.n);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_ENONFINITE);
    w = base;
    put_le(w.b, w.n - 2, 0x7fc1, 2);
    hand_crc(w.b, w.n);
    ck_assert_int_eq(oti_delta_validate_params(d, p, w.b, w.n, &f), OT_ENONFINITE);
    ck_assert(params_equal(p, orig, 3));
    ot_delta_decoder_destroy(d);
    tp_free(p);
    tp_free(orig);
}
END_TEST

/* Every truncation of a valid frame is refused and changes nothing. */
START_TEST(test_delta_truncation_refused)
{
    oti_params *p, *orig;
    size_t len, n;
    uint8_t *f = sample_frame(&p, &len, _i);
    ot_delta_decoder *d = dec_new();
    oti_frame fr;

    orig = tp_clone(p);
    for (n = 0; n < len; n++) {
        uint8_t *t = malloc(n ? n : 1);
        ot_status st;
        memcpy(t, f, n);
        st = oti_delta_validate_params(d, p, t, n, &fr);
        ck_assert_msg(st == OT_ECORRUPT, "length %zu: %s", n, ot_status_name(st));
        ck_assert_int_eq(ot_delta_check(t, n), OT_ECORRUPT);
        ck_assert_int_eq(oti_delta_apply_params(d, p, t, n), OT_ECORRUPT);
        free(t);
    }
    ck_assert(params_equal(p, orig, 3));
    ck_assert_int_eq(oti_delta_validate_params(d, p, f, len, &fr), OT_OK);
    free(f);
    tp_free(p);
    tp_free(orig);
    ot_delta_decoder_destroy(d);
}
END_TEST

/* Random byte damage with a recomputed checksum: never a crash; on any
 * error the params are unchanged. */
START_TEST(test_delta_random_damage)
{
    oti_params *p, *orig;
    size_t len;
    uint8_t *f = sample_frame(&p, &len, _i), *m = xcalloc(len, 1);
    ot_delta_decoder *d = dec_new();
    uint64_t s = 1234;
    int i, refused = 0;

    orig = tp_clone(p);
    for (i = 0; i < 3000; i++) {
        int k, flips = 1 + (int)(trng(&s) % 3);
        memcpy(m, f, len);
        for (k = 0; k < flips; k++)
            m[64 + trng(&s) % (len - 64)] ^= (uint8_t)(1u << (trng(&s) % 8));
        hand_crc(m, len);
        if (oti_delta_apply_params(d, p, m, len) != OT_OK) {
            ck_assert(params_equal(p, orig, 3));
            refused++;
        } else {
            /* accepted damage (a changed value): restore for the next try */
            size_t b;
            int a;
            for (b = 0; b < p->nblocks; b++)
                for (a = 0; a <= p->blocks[b].nstate; a++)
                    memcpy(tp_arr(p, b, a), tp_arr(orig, b, a),
                           (size_t)(p->blocks[b].rows * p->blocks[b].cols) * 4);
        }
    }
    ck_assert_int_gt(refused, 100);
    free(m);
    free(f);
    tp_free(p);
    tp_free(orig);
    ot_delta_decoder_destroy(d);
}
END_TEST

/* ---- merge ------------------------------------------------------------------------- */

START_TEST(test_delta_merge_equals_sequence)
{
    oti_params *base = tp_new(shape_small, NSMALL, 66, 66);
    oti_params *ta = tp_clone(base), *tb = tp_clone(base);
    oti_params *s1 = tp_clone(base), *s2 = tp_clone(base);
    oti_shadow *sha = shadow_of(base, OTI_SRC_BOTH), *shb = shadow_of(base, OTI_SRC_BOTH);
    ot_delta_encoder *ea = enc_with(OTI_SRC_BOTH, _i, 0.0, 0.0, 0, 0, 1 << 20);
    ot_delta_encoder *eb = enc_with(OTI_SRC_BOTH, OTI_ENC_FP32, 0.0, 0.0, 0, 0, 1 << 20);
    ot_delta_decoder *d = dec_new();
    uint64_t s = 17;
    size_t la, lb, lm = 0, lm2 = 0, b;
    int more, a;
    uint8_t *fa, *fb, *fm;

    tp_train(ta, &s, 200, 0.2f);
    tp_train(tb, &s, 200, 0.2f);
    fa = encode_add(ea, ta, sha, &la, &more);
    fb = encode_add(eb, tb, shb, &lb, &more);
    /* ENOSPC first, with the size */
    ck_assert_int_eq(oti_delta_merge(ea, base, fa, la, fb, lb, NULL, 0, &lm), OT_ENOSPC);
    fm = xcalloc(lm, 1);
    ck_assert_int_eq(oti_delta_merge(ea, base, fa, la, fb, lb, fm, lm, &lm2), OT_OK);
    ck_assert_uint_eq(lm, lm2);
    apply_ok(d, s1, fa, la);
    apply_ok(d, s1, fb, lb);
    apply_ok(d, s2, fm, lm);
    for (b = 0; b < base->nblocks; b++) {
        for (a = 0; a <= base->blocks[b].nstate; a++) {
            size_t i, n = (size_t)(base->blocks[b].rows * base->blocks[b].cols);
            float *x = tp_arr(s1, b, a), *y = tp_arr(s2, b, a);
            for (i = 0; i < n; i++)
                ck_assert_float_eq_tol(x[i], y[i], 1e-5f * (1.0f + fabsf(x[i])));
        }
    }
    /* merging with an empty frame changes nothing */
    {
        oti_shadow *sh0 = shadow_of(base, OTI_SRC_BOTH);
        size_t l0, lz;
        uint8_t *f0 = encode_add(eb, base, sh0, &l0, &more), *fz;
        ck_assert_int_eq(oti_delta_merge(eb, base, fb, lb, f0, l0, NULL, 0, &lz), OT_ENOSPC);
        fz = xcalloc(lz, 1);
        ck_assert_int_eq(oti_delta_merge(eb, base, fb, lb, f0, l0, fz, lz, &lz), OT_OK);
        ck_assert_uint_eq(lz, lb);
        free(fz);
        free(f0);
        oti_shadow_destroy(sh0);
    }
    /* only ADD frames merge; damaged input is refused */
    fa[6] = 2;
    hand_crc(fa, la);
    ck_assert_int_eq(oti_delta_merge(ea, base, fa, la, fb, lb, fm, lm, &lm2), OT_EINVAL);
    fb[70] ^= 1;
    ck_assert_int_eq(oti_delta_merge(ea, base, fb, lb, fb, lb, fm, lm, &lm2), OT_ECORRUPT);
    free(fa);
    free(fb);
    free(fm);
    tp_free(base);
    tp_free(ta);
    tp_free(tb);
    tp_free(s1);
    tp_free(s2);
    oti_shadow_destroy(sha);
    oti_shadow_destroy(shb);
    ot_delta_encoder_destroy(ea);
    ot_delta_encoder_destroy(eb);
    ot_delta_decoder_destroy(d);
}
END_TEST

/* ---- snapshots ------------------------------------------------------------------------ */

static size_t shared_pages(const oti_shadow *x, const oti_shadow *y)
{
    size_t b, i, n = 0;
    int a;

    for (b = 0; b < x->nblocks; b++)
        for (a = 0; a < OTI_NARRAYS; a++)
            if (x->blocks[b].pages[a] != NULL && y->blocks[b].pages[a] != NULL)
                for (i = 0; i < x->blocks[b].npages; i++)
                    n += x->blocks[b].pages[a][i] == y->blocks[b].pages[a][i];
    return n;
}

static size_t total_pages(const oti_shadow *x)
{
    size_t b, n = 0;
    int a;

    for (b = 0; b < x->nblocks; b++)
        for (a = 0; a < OTI_NARRAYS; a++)
            if (x->blocks[b].pages[a] != NULL)
                n += x->blocks[b].npages;
    return n;
}

START_TEST(test_delta_snapshot_copy_on_write)
{
    const bspec bs[] = {{1 << 16, 1, 0, 0}};
    oti_params *p = tp_new(bs, 1, 3, 3);
    oti_shadow *sh = shadow_of(p, 0);
    ot_snapshot *snap;
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 0, 0, 1 << 20);
    float before[64], after[64];
    size_t len, np;
    int more;
    uint8_t *f;

    ck_assert_int_eq(oti_shadow_publish(sh, 9, &snap), OT_OK);
    np = total_pages(sh);
    ck_assert_uint_eq(np, 16);
    ck_assert_uint_eq(shared_pages(sh, &snap->body), np);
    ck_assert_int_eq(ot_snapshot_read(snap, 0, 5000, 64, before), OT_OK);
    /* touch rows in 2 of the 16 pages, encode: the shadow copies 2 pages */
    p->blocks[0].w[5000] += 1.0f;
    p->blocks[0].w[5010] += 1.0f;
    p->blocks[0].w[40000] += 1.0f;
    oti_block_touch(&p->blocks[0], 5000);
    oti_block_touch(&p->blocks[0], 5010);
    oti_block_touch(&p->blocks[0], 40000);
    f = encode_add(e, p, sh, &len, &more);
    ck_assert_uint_eq(shared_pages(sh, &snap->body), np - 2);
    ck_assert_int_eq(ot_snapshot_read(snap, 0, 5000, 64, after), OT_OK);
    ck_assert_int_eq(memcmp(before, after, sizeof(before)), 0); /* the snapshot never changes */
    ck_assert(oti_shadow_row(sh, 0, 0, 5000)[0] == p->blocks[0].w[5000]);
    ck_assert_uint_eq(ot_snapshot_version(snap), 9);
    ck_assert_uint_eq(ot_snapshot_num_weights(snap), 1 << 16);
    ck_assert_uint_eq(ot_snapshot_fingerprint(snap), 3);
    ck_assert_int_eq(ot_snapshot_has_array(snap, OT_ARRAY_WEIGHTS), 1);
    ck_assert_int_eq(ot_snapshot_has_array(snap, OT_ARRAY_STATE0), 0);
    ck_assert_int_eq(ot_snapshot_read(snap, 1, 0, 1, after), OT_ENOENT);
    ck_assert_int_eq(ot_snapshot_read(snap, 0, (1 << 16) - 1, 2, after), OT_ERANGE);
    /* releasing in any order frees everything */
    ot_snapshot_release(snap);
    ot_snapshot_release(NULL);
    free(f);
    oti_shadow_destroy(sh);
    tp_free(p);
    ot_delta_encoder_destroy(e);
}
END_TEST

typedef struct reader_arg {
    ot_snapshot *snap;
    const float *want;
    uint64_t n;
    int bad;
} reader_arg;

static void *reader_main(void *arg)
{
    reader_arg *ra = arg;
    float buf[333];
    int round;

    for (round = 0; round < 20; round++) {
        ot_snapshot *s = ot_snapshot_retain(ra->snap);
        uint64_t i;
        for (i = 0; i < ra->n; i += 333) {
            size_t n = ra->n - i < 333 ? (size_t)(ra->n - i) : 333;
            if (ot_snapshot_read(s, 0, i, n, buf) != OT_OK ||
                memcmp(buf, ra->want + i, n * 4) != 0)
                ra->bad++;
        }
        ot_snapshot_release(s);
    }
    return NULL;
}

/* Many threads read, retain and release one snapshot while its shadow moves on. */
START_TEST(test_delta_snapshot_threads)
{
    const bspec bs[] = {{20000, 1, 0, 0}, {100, 7, 0, 0}};
    oti_params *p = tp_new(bs, 2, 3, 3);
    oti_shadow *sh = shadow_of(p, 0);
    ot_snapshot *snap;
    float *want = xcalloc((size_t)p->total, sizeof(float));
    reader_arg ra[4];
    pthread_t th[4];
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 0, 0, 1 << 20);
    uint64_t s = 1;
    size_t len;
    int i, more;

    memcpy(want, p->blocks[0].w, 20000 * 4);
    memcpy(want + 20000, p->blocks[1].w, 700 * 4);
    ck_assert_int_eq(oti_shadow_publish(sh, 1, &snap), OT_OK);
    for (i = 0; i < 4; i++) {
        ra[i].snap = snap;
        ra[i].want = want;
        ra[i].n = p->total;
        ra[i].bad = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_main, &ra[i]), 0);
    }
    for (i = 0; i < 20; i++) {
        uint8_t *f;
        tp_train(p, &s, 500, 1.0f);
        f = encode_add(e, p, sh, &len, &more);
        free(f);
    }
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(ra[i].bad, 0);
    }
    ot_snapshot_release(snap);
    oti_shadow_destroy(sh);
    ot_delta_encoder_destroy(e);
    free(want);
    tp_free(p);
}
END_TEST

/* Applying to a snapshot: in place for the only holder, a new one otherwise. */
START_TEST(test_delta_apply_snapshot_ownership)
{
    oti_params *p = tp_new(shape_hand, 3, 0x0123456789abcdefULL, 2);
    oti_shadow *sh = shadow_of(p, OTI_SRC_BOTH);
    ot_snapshot *snap, *held, *before;
    ot_delta_decoder *d = dec_new();
    float v;
    wbuf w;

    hand_frame(&w);
    ck_assert_int_eq(oti_shadow_into_snapshot(sh, &snap), OT_OK);
    before = snap;
    ck_assert_int_eq(ot_delta_apply_snapshot(d, &snap, w.b, w.n), OT_OK);
    ck_assert_ptr_eq(snap, before); /* sole holder: advanced in place */
    ck_assert_uint_eq(ot_snapshot_version(snap), 41);
    ck_assert_int_eq(ot_snapshot_read(snap, 0, 1 + 5, 1, &v), OT_OK);
    ck_assert(v == p->blocks[1].w[5] + 1.5f);
    held = ot_snapshot_retain(snap);
    ck_assert_int_eq(ot_delta_apply_snapshot(d, &snap, w.b, w.n), OT_OK);
    ck_assert_ptr_ne(snap, held); /* shared: a new snapshot, the held one unchanged */
    ck_assert_int_eq(ot_snapshot_read(held, 0, 1 + 5, 1, &v), OT_OK);
    ck_assert(v == p->blocks[1].w[5] + 1.5f);
    ck_assert_int_eq(ot_snapshot_read(snap, 0, 1 + 5, 1, &v), OT_OK);
    ck_assert(v == p->blocks[1].w[5] + 1.5f + 1.5f);
    /* a refused frame leaves the caller's snapshot as it was */
    w.b[70] ^= 1;
    before = snap;
    ck_assert_int_eq(ot_delta_apply_snapshot(d, &snap, w.b, w.n), OT_ECORRUPT);
    ck_assert_ptr_eq(snap, before);
    ot_snapshot_release(held);
    ot_snapshot_release(snap);
    ot_delta_decoder_destroy(d);
    tp_free(p);
}
END_TEST

/* ---- peek, control, walk ------------------------------------------------------------ */

typedef struct walk_sum {
    uint64_t entries, sections;
    float mn, mx;
} walk_sum;

static int walk_cb(void *user, uint32_t block, int array, int encoding, int layout,
                   uint64_t first_row, uint64_t rows, uint32_t cols, size_t bytes, float mn,
                   float mx)
{
    walk_sum *ws = user;

    (void)block;
    (void)array;
    (void)first_row;
    ck_assert_int_le(encoding, 3);
    ck_assert_int_le(layout, 1);
    ck_assert_uint_gt(bytes, 0);
    ws->entries += rows * cols;
    ws->sections++;
    if (mn < ws->mn)
        ws->mn = mn;
    if (mx > ws->mx)
        ws->mx = mx;
    return 0;
}

START_TEST(test_delta_peek_control_walk)
{
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 0, 0, 8192);
    uint8_t buf[8192];
    const uint8_t *pl;
    size_t len, n;
    uint64_t v;
    walk_sum ws = {0, 0, INFINITY, -INFINITY};
    wbuf w;

    ck_assert_int_eq(ot_delta_encoder_set_ids(e, 4, 5), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_set_sequence(e, 77), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_set_versions(e, 10, 11), OT_OK);
    ck_assert_int_eq(ot_delta_encode_control(e, 0x99, "hello", 5, buf, 10, &len), OT_ENOSPC);
    ck_assert_uint_eq(len, 69);
    ck_assert_int_eq(ot_delta_encode_control(e, 0x99, "hello", 5, buf, sizeof(buf), &len), OT_OK);
    ck_assert_int_eq(ot_delta_encode_control(e, 0x99, buf, 8192, buf, sizeof(buf), &n),
                     OT_ETOOBIG);
    ck_assert_uint_eq(ot_delta_encoder_sequence(e), 78);
    ck_assert_int_eq(ot_delta_check(buf, len), OT_OK);
    ck_assert_int_eq(ot_delta_control_payload(buf, len, &pl, &n), OT_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(memcmp(pl, "hello", 5), 0);
#define PEEK(field, want) \
    do { \
        ck_assert_int_eq(ot_delta_peek(buf, len, field, &v), OT_OK); \
        ck_assert_uint_eq(v, want); \
    } while (0)
    PEEK(OT_DELTA_FIELD_VERSION_MAJOR, 1);
    PEEK(OT_DELTA_FIELD_VERSION_MINOR, 0);
    PEEK(OT_DELTA_FIELD_KIND, OT_DELTA_CONTROL);
    PEEK(OT_DELTA_FIELD_FLAGS, OT_DELTA_FLAG_FIRST | OT_DELTA_FLAG_LAST);
    PEEK(OT_DELTA_FIELD_HEADER_LENGTH, 64);
    PEEK(OT_DELTA_FIELD_SHARD, 4);
    PEEK(OT_DELTA_FIELD_FINGERPRINT, 0x99);
    PEEK(OT_DELTA_FIELD_SEQUENCE, 77);
    PEEK(OT_DELTA_FIELD_BASE_VERSION, 10);
    PEEK(OT_DELTA_FIELD_NEW_VERSION, 11);
    PEEK(OT_DELTA_FIELD_SENDER, 5);
    PEEK(OT_DELTA_FIELD_ENTRIES, 0);
    PEEK(OT_DELTA_FIELD_PAYLOAD_LENGTH, 5);
    PEEK(OT_DELTA_FIELD_FRAME_LENGTH, 69);
    ck_assert_int_eq(ot_delta_peek(buf, len, OT_DELTA_FIELD_CHECKSUM, &v), OT_OK);
    ck_assert_uint_eq(v, oti_get32(buf + 60));
#undef PEEK
    ck_assert_int_eq(ot_delta_peek(buf, len, 99, &v), OT_ENOTSUP);
    ck_assert_int_eq(ot_delta_peek(buf, 10, OT_DELTA_FIELD_KIND, &v), OT_ECORRUPT);
    ck_assert_int_eq(ot_delta_peek("OTDX", 4, OT_DELTA_FIELD_KIND, &v), OT_EFORMAT);
    ck_assert_int_eq(ot_delta_peek(buf, len, OT_DELTA_FIELD_KIND, NULL), OT_EINVAL);
    ck_assert_str_eq(ot_delta_kind_name(OT_DELTA_ADD), "ADD");
    ck_assert_str_eq(ot_delta_kind_name(OT_DELTA_SET), "SET");
    ck_assert_str_eq(ot_delta_kind_name(OT_DELTA_FULL), "FULL");
    ck_assert_str_eq(ot_delta_kind_name(OT_DELTA_CONTROL), "CONTROL");
    ck_assert_str_eq(ot_delta_kind_name(0), "?");
    ck_assert_str_eq(ot_delta_encoding_name(3), "int8");
    ck_assert_str_eq(ot_delta_encoding_name(9), "?");
    /* a control frame has nothing to apply */
    {
        oti_params *p = tp_new(shape_hand, 3, 0x99, 1);
        ot_delta_decoder *d = dec_new();
        ck_assert_int_eq(oti_delta_apply_params(d, p, buf, len), OT_EINVAL);
        ot_delta_decoder_destroy(d);
        tp_free(p);
    }
    /* walk the hand-built frame */
    hand_frame(&w);
    ck_assert_int_eq(ot_delta_walk(w.b, w.n, walk_cb, &ws), OT_OK);
    ck_assert_uint_eq(ws.sections, 4);
    ck_assert_uint_eq(ws.entries, 14);
    ck_assert(ws.mn == -2.0f);
    ck_assert(ws.mx == 3.0f);
    ck_assert_int_eq(ot_delta_control_payload(w.b, w.n, &pl, &n), OT_EINVAL);
    w.b[80] ^= 1;
    ck_assert_int_eq(ot_delta_walk(w.b, w.n, walk_cb, &ws), OT_ECORRUPT);
    ck_assert_uint_eq(ws.sections, 4);
    ot_delta_encoder_destroy(e);
}
END_TEST

/* ---- through real models ------------------------------------------------------------- */

static ot_model *model_new(ot_config *cfg)
{
    ot_model *m;

    ck_assert_int_eq(ot_model_create(cfg, &m), OT_OK);
    return m;
}

static void learn_some(ot_model *m, uint64_t *s, int n)
{
    ot_example *ex;
    int i, k;

    ck_assert_int_eq(ot_example_create(NULL, &ex), OT_OK);
    for (i = 0; i < n; i++) {
        ot_example_clear(ex);
        ck_assert_int_eq(ot_example_set_label(ex, (trng(s) & 1) ? 1.0f : 0.0f), OT_OK);
        for (k = 0; k < 5; k++)
            ck_assert_int_eq(ot_example_add_hashed(ex, 'a', trng(s) % 3000, 1.0f), OT_OK);
        ck_assert_int_eq(ot_model_learn(m, ex, NULL), OT_OK);
    }
    ot_example_destroy(ex);
}

/* max |a - b| over every array of every block */
static double model_diff(const ot_model *a, const ot_model *b, int array)
{
    size_t i, nb = ot_model_num_blocks(a);
    double m = 0;

    for (i = 0; i < nb; i++) {
        const float *x, *y;
        uint64_t rows, k;
        uint32_t cols;
        ck_assert_int_eq(ot_model_block_info(a, i, NULL, NULL, NULL, &rows, &cols, NULL), OT_OK);
        if (ot_model_block_data(a, i, array, &x) != OT_OK)
            continue;
        ck_assert_int_eq(ot_model_block_data(b, i, array, &y), OT_OK);
        for (k = 0; k < rows * cols; k++)
            if (fabs((double)x[k] - y[k]) > m)
                m = fabs((double)x[k] - y[k]);
    }
    return m;
}

/* A trainer sends FTRL state (z, n) to a server, which derives its weights. */
START_TEST(test_delta_model_trainer_to_server)
{
    static const char *sources[] = {"weights", "state", "both"};
    ot_config *cfg;
    ot_model *local, *server;
    ot_snapshot *snap, *first;
    ot_delta_encoder *e;
    ot_delta_decoder *d = dec_new();
    uint64_t s = 5;
    int round;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 12), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_HIDDEN_LAYERS, "4"), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_EMBEDDING, "a:4"), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_EMBEDDING_BITS, 8), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, sources[_i]), OT_OK);
    local = model_new(cfg);
    ck_assert_int_eq(ot_model_clone(local, &server), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_create(cfg, &e), OT_OK);
    ck_assert_int_eq(ot_snapshot_create(cfg, local, 0, &snap), OT_OK);
    first = ot_snapshot_retain(snap);
    for (round = 0; round < 10; round++) {
        ot_buf *b = NULL;
        int more;
        learn_some(local, &s, 50);
        ck_assert_int_eq(ot_delta_encode_buf(e, local, &snap, &b, &more), OT_OK);
        ck_assert_int_eq(more, 0);
        ck_assert_int_eq(ot_delta_apply(d, server, ot_buf_data(b), ot_buf_size(b)), OT_OK);
        ot_buf_release(b);
    }
    ck_assert_ptr_ne(snap, first); /* someone else held the first: it was not touched */
    ck_assert_uint_eq(ot_snapshot_version(first), 0);
    ck_assert_msg(model_diff(local, server, OT_ARRAY_WEIGHTS) <= (_i == 0 ? 1e-5 : 1e-3),
                  "source %s: weights differ by %g", sources[_i],
                  model_diff(local, server, OT_ARRAY_WEIGHTS));
    if (_i != 0)
        ck_assert_double_le(model_diff(local, server, OT_ARRAY_STATE0), 1e-4);
    ot_snapshot_release(first);
    ot_snapshot_release(snap);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
    ot_model_destroy(local);
    ot_model_destroy(server);
    ot_config_destroy(cfg);
}
END_TEST

/* A server publishes real-time SET updates and a full update to a predictor. */
START_TEST(test_delta_model_server_to_predictor)
{
    ot_config *cfg;
    ot_model *master, *pred, *fresh;
    ot_snapshot *pub;
    ot_delta_encoder *e;
    ot_delta_decoder *d = dec_new();
    uint64_t s = 9;
    int round, more, chunks = 0;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 14), OT_OK);
    ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_THRESHOLD, 1e-3), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, 8192), OT_OK);
    master = model_new(cfg);
    ck_assert_int_eq(ot_model_clone(master, &pred), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_create(cfg, &e), OT_OK);
    ck_assert_int_eq(ot_snapshot_create(cfg, master, 0, &pub), OT_OK);
    for (round = 0; round < 5; round++) {
        learn_some(master, &s, 100);
        more = 1;
        while (more) {
            ot_buf *b = NULL;
            ck_assert_int_eq(ot_delta_encode_set_buf(e, master, &pub, 0, &b, &more), OT_OK);
            ck_assert_uint_le(ot_buf_size(b), 8192);
            ck_assert_int_eq(ot_delta_apply(d, pred, ot_buf_data(b), ot_buf_size(b)), OT_OK);
            ot_buf_release(b);
        }
        /* the predictor is within the threshold of the master */
        ck_assert_double_le(model_diff(master, pred, OT_ARRAY_WEIGHTS), 1e-3);
    }
    /* a new predictor gets a full update, in chunks, bit for bit */
    {
        ot_config *c0;
        ot_snapshot *p0;
        ck_assert_int_eq(ot_config_create(&c0), OT_OK);
        ck_assert_int_eq(ot_config_set_i64(c0, OT_OPT_BITS, 14), OT_OK);
        fresh = model_new(c0);
        ck_assert_int_eq(ot_snapshot_create(cfg, fresh, 0, &p0), OT_OK);
        more = 1;
        while (more) {
            uint8_t buf[8192];
            size_t len;
            ck_assert_int_eq(ot_delta_encode_set(e, master, &p0, 1, buf, sizeof(buf), &len, &more),
                             OT_OK);
            ck_assert_int_eq(ot_delta_apply(d, fresh, buf, len), OT_OK);
            chunks++;
        }
        ck_assert_int_gt(chunks, 5);
        ck_assert_double_eq(model_diff(master, fresh, OT_ARRAY_WEIGHTS), 0.0);
        ot_snapshot_release(p0);
        ot_config_destroy(c0);
    }
    ot_snapshot_release(pub);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
    ot_model_destroy(master);
    ot_model_destroy(pred);
    ot_model_destroy(fresh);
    ot_config_destroy(cfg);
}
END_TEST

/* ot_snapshot_update shares the pages without touched rows. */
START_TEST(test_delta_snapshot_update_shares_pages)
{
    ot_config *cfg;
    ot_model *m, *other;
    ot_snapshot *s0, *s1;
    uint64_t s = 3, total;
    float *want, *got;
    size_t shared, np;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 18), OT_OK);
    ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_DELTA_SOURCE, "weights"), OT_OK);
    m = model_new(cfg);
    ck_assert_int_eq(ot_snapshot_create(cfg, m, 1, &s0), OT_OK);
    learn_some(m, &s, 20); /* features hash below 3000: the first page only */
    ck_assert_int_eq(ot_snapshot_update(s0, m, 2, &s1), OT_OK);
    np = total_pages(&s1->body);
    shared = shared_pages(&s0->body, &s1->body);
    ck_assert_uint_ge(shared, np - 3);
    ck_assert_uint_lt(shared, np);
    total = ot_snapshot_num_weights(s1);
    want = xcalloc((size_t)total, 4);
    got = xcalloc((size_t)total, 4);
    {
        size_t i, nb = ot_model_num_blocks(m);
        for (i = 0; i < nb; i++) {
            const float *x;
            uint64_t off, rows;
            uint32_t cols;
            ck_assert_int_eq(ot_model_block_info(m, i, NULL, NULL, &off, &rows, &cols, NULL), OT_OK);
            ck_assert_int_eq(ot_model_block_data(m, i, OT_ARRAY_WEIGHTS, &x), OT_OK);
            memcpy(want + off, x, (size_t)(rows * cols) * 4);
        }
    }
    ck_assert_int_eq(ot_snapshot_read(s1, OT_ARRAY_WEIGHTS, 0, (size_t)total, got), OT_OK);
    ck_assert_int_eq(memcmp(want, got, (size_t)total * 4), 0);
    ck_assert_uint_eq(ot_snapshot_version(s1), 2);
    /* a snapshot of another model is refused */
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 10), OT_OK);
    other = model_new(cfg);
    ot_snapshot_release(s1);
    ck_assert_int_eq(ot_snapshot_update(s0, other, 3, &s1), OT_EMISMATCH);
    free(want);
    free(got);
    ot_snapshot_release(s0);
    ot_model_destroy(m);
    ot_model_destroy(other);
    ot_config_destroy(cfg);
}
END_TEST

/* Errors through the public API: NULLs, mismatched snapshots, foreign frames. */
START_TEST(test_delta_public_errors)
{
    ot_config *cfg;
    ot_model *m, *other;
    ot_snapshot *snap, *osnap;
    ot_delta_encoder *e;
    ot_delta_decoder *d = dec_new();
    uint8_t buf[256];
    size_t len;
    int more;

    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 8), OT_OK);
    m = model_new(cfg);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_BITS, 9), OT_OK);
    other = model_new(cfg);
    ck_assert_int_eq(ot_delta_encoder_create(cfg, &e), OT_OK);
    ck_assert_int_eq(ot_snapshot_create(cfg, m, 0, &snap), OT_OK);
    ck_assert_int_eq(ot_snapshot_create(cfg, other, 0, &osnap), OT_OK);
    ck_assert_int_eq(ot_delta_encode(NULL, m, &snap, buf, sizeof(buf), &len, &more), OT_EINVAL);
    ck_assert_int_eq(ot_delta_encode(e, NULL, &snap, buf, sizeof(buf), &len, &more), OT_EINVAL);
    ck_assert_int_eq(ot_delta_encode(e, m, NULL, buf, sizeof(buf), &len, &more), OT_EINVAL);
    ck_assert_int_eq(ot_delta_encode(e, m, &osnap, buf, sizeof(buf), &len, &more), OT_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(ot_delta_encoder_errmsg(e), "shape"));
    ck_assert_int_eq(ot_delta_encode(e, m, &snap, buf, 10, &len, &more), OT_ENOSPC);
    ck_assert_uint_eq(len, 64);
    ck_assert_int_eq(ot_delta_encode(e, m, &snap, buf, sizeof(buf), &len, &more), OT_OK);
    ck_assert_uint_eq(len, 64); /* nothing changed: an empty frame */
    ck_assert_int_eq(ot_delta_validate(d, m, buf, len), OT_OK);
    ck_assert_int_eq(ot_delta_validate(d, other, buf, len), OT_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(ot_delta_decoder_errmsg(d), "model"));
    ck_assert_int_eq(ot_delta_apply(d, other, buf, len), OT_EMISMATCH);
    ck_assert_int_eq(ot_delta_validate(NULL, m, buf, len), OT_EINVAL);
    ck_assert_int_eq(ot_delta_validate(d, NULL, buf, len), OT_EINVAL);
    ck_assert_int_eq(ot_delta_apply_snapshot(d, &osnap, buf, len), OT_EMISMATCH);
    ck_assert_uint_eq(ot_delta_encode_bound(e, m, OT_DELTA_ADD), 64);
    ck_assert_uint_eq(ot_delta_encode_bound(e, m, 99), 0);
    ck_assert_uint_gt(ot_delta_encode_bound(e, m, OT_DELTA_FULL), 1024);
    ck_assert_uint_eq(ot_delta_encoder_nonfinite(e), 0);
    ck_assert_int_eq(ot_snapshot_create(cfg, NULL, 0, &snap), OT_EINVAL);
    ck_assert_str_eq(ot_delta_encoder_errmsg(NULL), "");
    ck_assert_str_eq(ot_delta_decoder_errmsg(NULL), "");
    ot_delta_encoder_destroy(NULL);
    ot_delta_decoder_destroy(NULL);
    ot_delta_encoder_reset(NULL);
    ot_snapshot_release(snap);
    ot_snapshot_release(osnap);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
    ot_model_destroy(m);
    ot_model_destroy(other);
    ot_config_destroy(cfg);
}
END_TEST

/* Non-finite model values are held back, counted, and stay touched. */
/*
 * Rows of many values go through vectorised kernels; a row with a
 * non-finite value, or a difference too large for a float, takes the
 * careful path: the first is held back and counted, the second is sent
 * clamped.  A deep layer's page with a non-finite value leaves the
 * whole-page pass for the row-by-row one.
 */
START_TEST(test_delta_nonfinite_rows_of_many_values)
{
    const bspec bs[] = {{64, 16, 0, 0}, {32, 16, 0, 1}};
    oti_params *p = tp_new(bs, 2, 1, 2);
    oti_shadow *sh = shadow_of(p, 0);
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 0, 0, 1 << 20);
    float *emb = p->blocks[0].w, *lay = p->blocks[1].w;
    size_t len;
    int more, c;
    uint8_t *f;

    emb[3 * 16 + 5] = NAN;         /* row 3: held back */
    emb[4 * 16 + 7] += 1.0f;       /* row 4: sent */
    emb[5 * 16 + 0] = FLT_MAX;     /* row 5: the difference overflows */
    oti_shadow_row_w(sh, 0, 0, 5)[0] = -FLT_MAX;
    oti_block_touch(&p->blocks[0], 3);
    oti_block_touch(&p->blocks[0], 4);
    oti_block_touch(&p->blocks[0], 5);
    for (c = 0; c < 32 * 16; c++)
        lay[c] += 0.5f;
    lay[7 * 16 + 2] = INFINITY;    /* layer row 7: held back, the rest sent */
    p->blocks[1].all_touched = 1;
    f = encode_add(e, p, sh, &len, &more);
    ck_assert_int_eq(ot_delta_check(f, len), OT_OK);
    ck_assert_uint_eq(ot_delta_encoder_nonfinite(e), 32);
    for (c = 0; c < 16; c++) {
        ck_assert(oti_shadow_row(sh, 0, 0, 4)[c] == emb[4 * 16 + c]);
        ck_assert(oti_shadow_row(sh, 1, 0, 6)[c] == lay[6 * 16 + c]);
        ck_assert(oti_shadow_row(sh, 1, 0, 8)[c] == lay[8 * 16 + c]);
    }
    /* -FLT_MAX + (FLT_MAX - -FLT_MAX clamped to FLT_MAX) = 0: still differs */
    ck_assert(oti_shadow_row(sh, 0, 0, 5)[0] == 0.0f);
    /* the NaN row's shadow is untouched */
    ck_assert(oti_shadow_row(sh, 0, 0, 3)[4] == emb[3 * 16 + 4]);
    ck_assert(!isnan(oti_shadow_row(sh, 0, 0, 3)[5]));
    ck_assert(oti_shadow_row(sh, 1, 0, 7)[2] != lay[7 * 16 + 2]);
    /* rows 3 and 5 stay touched; the layer stays all touched */
    ck_assert_uint_eq(p->blocks[0].ntouched, 2);
    ck_assert_int_eq(p->blocks[1].all_touched, 1);
    free(f);
    ot_delta_encoder_destroy(e);
    oti_shadow_destroy(sh);
    tp_free(p);
}
END_TEST

START_TEST(test_delta_nonfinite_held_back)
{
    const bspec bs[] = {{64, 1, 0, 0}, {4096, 1, 0, 1}};
    oti_params *p = tp_new(bs, 2, 1, 1);
    oti_shadow *sh = shadow_of(p, 0);
    ot_delta_encoder *e = enc_with(0, 0, 0.0, 0.0, 0, 0, 1 << 20);
    size_t len;
    int more, full;
    uint8_t *f;

    p->blocks[0].w[3] = NAN;
    p->blocks[0].w[4] += 1.0f;
    oti_block_touch(&p->blocks[0], 3);
    oti_block_touch(&p->blocks[0], 4);
    p->blocks[1].w[100] = INFINITY;
    p->blocks[1].w[200] += 1.0f;
    p->blocks[1].all_touched = 1;
    f = encode_add(e, p, sh, &len, &more);
    ck_assert_int_eq(ot_delta_check(f, len), OT_OK);
    ck_assert_uint_eq(ot_delta_encoder_nonfinite(e), 2);
    ck_assert_uint_eq(p->blocks[0].ntouched, 1);
    ck_assert_uint_eq(p->blocks[0].touched_list[0], 3);
    ck_assert_int_eq(p->blocks[1].all_touched, 1);
    ck_assert(oti_shadow_row(sh, 0, 0, 4)[0] == p->blocks[0].w[4]);
    ck_assert(oti_shadow_row(sh, 1, 0, 200)[0] == p->blocks[1].w[200]);
    free(f);
    /* a full update skips them too */
    for (full = 0; full < 1; full++) {
        uint8_t buf[1 << 16];
        ck_assert_int_eq(oti_delta_encode_set(e, p, sh, 1, buf, sizeof(buf), &len, &more), OT_OK);
        ck_assert_int_eq(ot_delta_check(buf, len), OT_OK);
        ck_assert_uint_eq(ot_delta_encoder_nonfinite(e), 2);
    }
    ot_delta_encoder_destroy(e);
    oti_shadow_destroy(sh);
    tp_free(p);
}
END_TEST

/* Every handle uses the config's allocator and frees with the sizes it got. */
typedef struct counting {
    long allocs, frees, live, bad;
} counting;

static void *count_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    counting *c = user;
    size_t *q;

    if (ptr != NULL) {
        q = (size_t *)ptr - 2;
        if (q[0] != old_size)
            c->bad++;
        c->live -= (long)old_size;
    }
    if (new_size == 0) {
        c->frees++;
        free((size_t *)ptr - 2);
        return NULL;
    }
    q = realloc(ptr != NULL ? (size_t *)ptr - 2 : NULL, new_size + 2 * sizeof(size_t));
    if (q == NULL)
        return NULL;
    if (ptr == NULL)
        c->allocs++;
    q[0] = new_size;
    c->live += (long)new_size;
    return q + 2;
}

START_TEST(test_delta_allocator_sized_free)
{
    counting c = {0, 0, 0, 0};
    ot_config *cfg, *mcfg;
    ot_model *m, *m2;
    ot_snapshot *snap, *s2;
    ot_delta_encoder *e;
    ot_delta_decoder *d;
    ot_buf *b = NULL, *mb = NULL;
    uint64_t s = 1;
    int more;

    ck_assert_int_eq(ot_config_create(&mcfg), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(mcfg, OT_OPT_BITS, 10), OT_OK);
    m = model_new(mcfg);
    ck_assert_int_eq(ot_model_clone(m, &m2), OT_OK);
    ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
    ck_assert_int_eq(ot_config_set_allocator(cfg, count_alloc, &c), OT_OK);
    ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_ENTRIES, 10), OT_OK);
    ck_assert_int_eq(ot_delta_encoder_create(cfg, &e), OT_OK);
    ck_assert_int_eq(ot_delta_decoder_create(cfg, &d), OT_OK);
    ck_assert_int_eq(ot_snapshot_create(cfg, m, 0, &snap), OT_OK);
    s2 = ot_snapshot_retain(snap);
    learn_some(m, &s, 30);
    ck_assert_int_eq(ot_delta_encode_buf(e, m, &snap, &b, &more), OT_OK);
    ck_assert_int_eq(ot_delta_merge_buf(e, m, ot_buf_data(b), ot_buf_size(b), ot_buf_data(b),
                                        ot_buf_size(b), &mb),
                     OT_OK);
    ck_assert_int_eq(ot_delta_apply(d, m2, ot_buf_data(mb), ot_buf_size(mb)), OT_OK);
    ck_assert_int_eq(ot_delta_apply_snapshot(d, &s2, ot_buf_data(b), ot_buf_size(b)), OT_OK);
    ck_assert_int_gt(c.allocs, 5);
    ot_buf_release(b);
    ot_buf_release(mb);
    ot_snapshot_release(snap);
    ot_snapshot_release(s2);
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
    ck_assert_int_eq(c.allocs, c.frees);
    ck_assert_int_eq(c.live, 0);
    ck_assert_int_eq(c.bad, 0);
    ot_config_destroy(cfg);
    ot_config_destroy(mcfg);
    ot_model_destroy(m);
    ot_model_destroy(m2);
}
END_TEST

START_TEST(test_delta_options)
{
    int id;
    int64_t lo, hi;

    ck_assert_int_eq(ot_option_by_name("delta_source", &id), OT_OK);
    ck_assert_int_eq(id, OT_OPT_DELTA_SOURCE);
    ck_assert_str_eq(ot_option_choices(OT_OPT_VALUE_ENCODING), "fp32|fp16|bf16|int8");
    ck_assert_int_eq(ot_option_type(OT_OPT_THRESHOLD), OT_TYPE_F64);
    ck_assert_int_eq(ot_option_type(OT_OPT_THRESHOLD_REL), OT_TYPE_F64);
    ck_assert_int_eq(ot_option_type(OT_OPT_MAX_ENTRIES), OT_TYPE_I64);
    ck_assert_int_eq(ot_option_type(OT_OPT_STOCHASTIC_ROUNDING), OT_TYPE_I64);
    ck_assert_int_eq(ot_option_bounds_i64(OT_OPT_MAX_MESSAGE, &lo, &hi), OT_OK);
    ck_assert_int_eq(lo, 4096);
    ck_assert_int_eq(hi, UINT32_MAX);
    {
        ot_config *cfg;
        ck_assert_int_eq(ot_config_create(&cfg), OT_OK);
        ck_assert_int_eq(ot_config_set_f64(cfg, OT_OPT_THRESHOLD, -1.0), OT_ERANGE);
        ck_assert_int_eq(ot_config_set_str(cfg, OT_OPT_VALUE_ENCODING, "fp8"), OT_ERANGE);
        ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_STOCHASTIC_ROUNDING, 2), OT_ERANGE);
        ck_assert_int_eq(ot_config_set_i64(cfg, OT_OPT_MAX_MESSAGE, 100), OT_ERANGE);
        ck_assert_int_eq(ot_config_set_text(cfg, OT_OPT_MAX_ENTRIES, "1000"), OT_OK);
        ot_config_destroy(cfg);
    }
}
END_TEST

Suite *suite_delta(void)
{
    Suite *s = suite_create("delta");
    TCase *tc = tcase_create("delta");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_delta_fp16_bf16_conversions);
    tcase_add_test(tc, test_delta_stochastic_rounding_unbiased);
    tcase_add_test(tc, test_delta_int8_scale);
    tcase_add_loop_test(tc, test_delta_add_converges, 0, 8);
    tcase_add_loop_test(tc, test_delta_residual_bounded, 0, 6);
    tcase_add_test(tc, test_delta_threshold_relative);
    tcase_add_test(tc, test_delta_topk_selects_largest);
    tcase_add_loop_test(tc, test_delta_set_idempotent, 0, 4);
    tcase_add_test(tc, test_delta_full_update_bit_exact);
    tcase_add_test(tc, test_delta_add_chunked_by_max_message);
    tcase_add_test(tc, test_delta_too_big_row);
    tcase_add_test(tc, test_delta_enospc_reports_size);
    tcase_add_test(tc, test_delta_checksum_matches_crc32c);
    tcase_add_test(tc, test_delta_crc32c_streams_and_combine);
    tcase_add_test(tc, test_delta_sparse_gaps_every_length);
    tcase_add_test(tc, test_delta_sparse_apply_sections_and_chunks);
    tcase_add_test(tc, test_delta_hand_built_frame_decodes);
    tcase_add_test(tc, test_delta_index_faults);
    tcase_add_test(tc, test_delta_header_mutations);
    tcase_add_test(tc, test_delta_nonfinite_refused);
    tcase_add_loop_test(tc, test_delta_truncation_refused, 0, 4);
    tcase_add_loop_test(tc, test_delta_random_damage, 0, 4);
    tcase_add_loop_test(tc, test_delta_merge_equals_sequence, 0, 4);
    tcase_add_test(tc, test_delta_snapshot_copy_on_write);
    tcase_add_test(tc, test_delta_snapshot_threads);
    tcase_add_test(tc, test_delta_apply_snapshot_ownership);
    tcase_add_test(tc, test_delta_peek_control_walk);
    tcase_add_loop_test(tc, test_delta_model_trainer_to_server, 0, 3);
    tcase_add_test(tc, test_delta_model_server_to_predictor);
    tcase_add_test(tc, test_delta_snapshot_update_shares_pages);
    tcase_add_test(tc, test_delta_public_errors);
    tcase_add_test(tc, test_delta_nonfinite_held_back);
    tcase_add_test(tc, test_delta_nonfinite_rows_of_many_values);
    tcase_add_test(tc, test_delta_allocator_sized_free);
    tcase_add_test(tc, test_delta_options);
    suite_add_tcase(s, tc);
    return s;
}
