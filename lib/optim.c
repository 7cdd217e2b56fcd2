/*
 * optim.c - per-coordinate optimizers: SGD, AdaGrad, FTRL-Proximal, and the
 * adaptive step that embedding and deep blocks use under FTRL.
 *
 * Formulas (g is a coordinate's gradient, docs/models.md has the details):
 *   SGD       g += l2 w;  w -= r g;  then w = shrink(w, r l1);
 *             r = learning_rate / (1 + t)^power_t, t = examples seen.
 *   AdaGrad   g += l2 w;  s += g^2;  w -= (lr / sqrt(s)) g;  then
 *             w = shrink(w, l1 lr / sqrt(s)).                      (s = s[0])
 *   FTRL      sigma = (sqrt(n + g^2) - sqrt(n)) / alpha;  z += g - sigma w;
 *             n += g^2;  w = 0 if |z| <= l1, else
 *             -(z - sign(z) l1) / ((beta + sqrt(n)) / alpha + l2).   (z = s[0], n = s[1])
 *   adaptive  n += g^2;  w -= alpha g / (beta + sqrt(n)).          (n = s[0])
 * shrink(w, a) = sign(w) max(|w| - a, 0).  l1 and l2 apply to the wide
 * block only (block_reg); the bias, embeddings and deep layers are not
 * regularised.
 *
 * SPDX-License-Identifier: MIT
 */
#include <math.h>

#include "model.h"

static inline float shrink(float w, float a)
{
    if (w > a)
        return w - a;
    if (w < -a)
        return w + a;
    return 0.0f;
}

static inline float ftrl_weight(float z, float sqrt_n, float inv_alpha, float beta, float l1,
                                float l2)
{
    float denom;

    if (fabsf(z) <= l1)
        return 0.0f;
    denom = (beta + sqrt_n) * inv_alpha + l2;
    if (!(denom > 0.0f))
        return 0.0f;
    return -(z - copysignf(l1, z)) / denom;
}

static inline void ftrl_step(float *w, float *z, float *n, float g, float inv_alpha, float beta,
                             float l1, float l2)
{
    float n0 = *n > 0.0f ? *n : 0.0f; /* state written by a peer is never trusted to be >= 0 */
    float n1 = n0 + g * g;
    float s1 = sqrtf(n1);
    float sigma = (s1 - sqrtf(n0)) * inv_alpha;
    float zz = *z + g - sigma * *w;

    *z = zz;
    *n = n1;
    *w = ftrl_weight(zz, s1, inv_alpha, beta, l1, l2);
}

static inline void adagrad_step(float *w, float *s, float g, float lr, float l1, float l2)
{
    float wi = *w, si;

    g += l2 * wi;
    si = *s + g * g;
    *s = si;
    if (si > 0.0f) {
        float step = lr / sqrtf(si);
        wi -= step * g;
        if (l1 > 0.0f)
            wi = shrink(wi, step * l1);
        *w = wi;
    }
}

static inline void sgd_step(float *w, float g, float rate, float l1, float l2)
{
    float wi = *w;

    wi -= rate * (g + l2 * wi);
    if (l1 > 0.0f)
        wi = shrink(wi, rate * l1);
    *w = wi;
}

/*
 * The adaptive step (n += g^2; w -= alpha g / (beta + sqrt(n)), skipped when
 * beta + sqrt(n) is not positive; a negative n read back is taken as 0) over
 * a block's n weights, written so that the compiler can vectorise it:
 * restrict pointers and no branch (when skipped, w - 0.0f, which is w bit
 * for bit).
 */
static void adaptive_block(float *restrict w, float *restrict nn, const float *restrict g,
                           float scale, size_t n, float alpha, float beta)
{
    size_t i;

    for (i = 0; i < n; i++) {
        float gi = scale * g[i];
        float ni = (nn[i] > 0.0f ? nn[i] : 0.0f) + gi * gi;
        float denom = beta + sqrtf(ni);
        float step = alpha * gi / denom;

        nn[i] = ni;
        w[i] -= denom > 0.0f ? step : 0.0f;
    }
}

int oti_optim_nstate(int opt)
{
    switch (opt) {
    case OTI_OPT_ADAGRAD: return 1;
    case OTI_OPT_FTRL: return 2;
    case OTI_OPT_ADAPTIVE: return 1;
    default: return 0;
    }
}

float oti_optim_sgd_rate(const ot_model *m)
{
    double t1 = (double)m->examples + 1.0;
    double p = m->shape.power_t;

    if (p == 0.0)
        return m->lr;
    if (p == 0.5)
        return (float)(m->shape.learning_rate / sqrt(t1));
    return (float)(m->shape.learning_rate / pow(t1, p));
}

void oti_optim_wide(ot_model *m, const uint32_t *idx, const float *val, size_t k, float gl,
                    float rate)
{
    oti_block *b = &m->params.blocks[1];
    float *w = b->w;
    const float l1 = m->l1, l2 = m->l2;
    size_t i;

    switch (m->shape.optimizer) {
    case OTI_OPT_FTRL: {
        float *z = b->s[0], *n = b->s[1];
        const float ia = m->inv_alpha, beta = m->beta;
        for (i = 0; i < k; i++) {
            uint32_t j = idx[i];
            ftrl_step(&w[j], &z[j], &n[j], gl * val[i], ia, beta, l1, l2);
            oti_block_touch(b, j);
        }
        break;
    }
    case OTI_OPT_ADAGRAD: {
        float *s = b->s[0];
        const float lr = m->lr;
        for (i = 0; i < k; i++) {
            uint32_t j = idx[i];
            adagrad_step(&w[j], &s[j], gl * val[i], lr, l1, l2);
            oti_block_touch(b, j);
        }
        break;
    }
    default:
        for (i = 0; i < k; i++) {
            uint32_t j = idx[i];
            sgd_step(&w[j], gl * val[i], rate, l1, l2);
            oti_block_touch(b, j);
        }
        break;
    }
}

void oti_optim_block(ot_model *m, size_t bi, uint64_t first, const float *g, float scale,
                     size_t n, float rate)
{
    oti_block *b = &m->params.blocks[bi];
    float *w = b->w + first;
    const int reg = m->block_reg[bi];
    const float l1 = reg ? m->l1 : 0.0f, l2 = reg ? m->l2 : 0.0f;
    size_t i;

    switch (m->block_opt[bi]) {
    case OTI_OPT_FTRL: {
        float *z = b->s[0] + first, *nn = b->s[1] + first;
        for (i = 0; i < n; i++)
            ftrl_step(&w[i], &z[i], &nn[i], scale * g[i], m->inv_alpha, m->beta, l1, l2);
        break;
    }
    case OTI_OPT_ADAGRAD: {
        float *s = b->s[0] + first;
        for (i = 0; i < n; i++)
            adagrad_step(&w[i], &s[i], scale * g[i], m->lr, l1, l2);
        break;
    }
    case OTI_OPT_ADAPTIVE:
        adaptive_block(w, b->s[0] + first, g, scale, n, (float)m->shape.ftrl_alpha, m->beta);
        break;
    default:
        for (i = 0; i < n; i++)
            sgd_step(&w[i], scale * g[i], rate, l1, l2);
        break;
    }
}

void oti_optim_derive(void *ctx, oti_block *b, uint64_t row)
{
    ot_model *m = ctx;
    size_t bi;
    uint64_t c, base;
    float l1, l2;

    if (m == NULL || b == NULL || b < m->params.blocks || b >= m->params.blocks + m->params.nblocks)
        return;
    bi = (size_t)(b - m->params.blocks);
    if (m->block_opt[bi] != OTI_OPT_FTRL || row >= b->rows)
        return;
    l1 = m->block_reg[bi] ? m->l1 : 0.0f;
    l2 = m->block_reg[bi] ? m->l2 : 0.0f;
    base = row * b->cols;
    for (c = 0; c < b->cols; c++) {
        float n = b->s[1][base + c];
        float sn = n > 0.0f ? sqrtf(n) : 0.0f;
        b->w[base + c] = ftrl_weight(b->s[0][base + c], sn, m->inv_alpha, m->beta, l1, l2);
    }
}
