/*
 * quant.c - value encodings of the delta codec: fp32, fp16, bf16 and int8
 * with a per-section scale, rounding to nearest or stochastically, and the
 * seeded generator stochastic rounding draws from.
 *
 * Every encoder clamps to the largest finite code instead of producing an
 * infinity, so whatever does not fit stays in local - snapshot and is sent
 * in a later round.
 *
 * SPDX-License-Identifier: MIT
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "delta.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define OTI_LITTLE_ENDIAN 1
#else
#define OTI_LITTLE_ENDIAN 0
#endif

size_t oti_enc_size(int enc)
{
    switch (enc) {
    case OTI_ENC_FP32: return 4;
    case OTI_ENC_FP16:
    case OTI_ENC_BF16: return 2;
    default: return 1;
    }
}

unsigned oti_source_mask(int source, int nstate)
{
    unsigned state = 0;

    if (nstate >= 1)
        state |= 2u;
    if (nstate >= 2)
        state |= 4u;
    switch (source) {
    case OTI_SRC_STATE:
        /* Two state arrays (FTRL's z and n) determine the weights, which the
         * receiver derives; one (AdaGrad's sum of squares) does not, so the
         * weights go too; no state: the weights are the state. */
        return nstate >= 2 ? state : 1u | state;
    case OTI_SRC_BOTH: return 1u | state;
    default: return 1u;
    }
}

static inline uint32_t fbits(float f)
{
    uint32_t x;

    memcpy(&x, &f, 4);
    return x;
}

static inline float bitsf(uint32_t x)
{
    float f;

    memcpy(&f, &x, 4);
    return f;
}

/* ---- fp16 ---------------------------------------------------------------- */

#define F16_CLAMP_AT 0x477ff000u /* 65520: rounds to infinity under RNE */
#define F16_MIN_NORMAL 0x38800000u /* 2^-14 */

uint16_t oti_f32_to_f16(float f)
{
    uint32_t x = fbits(f), ax = x & 0x7fffffffu;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);

    if (ax >= F16_CLAMP_AT)
        return (uint16_t)(sign | 0x7bffu);
    if (ax < F16_MIN_NORMAL) {
        /* Subnormal half: a multiple of 2^-24.  Scaling by 2^24 is exact. */
        float t = bitsf(ax) * 16777216.0f;
        uint32_t q = (uint32_t)t;
        float frac = t - (float)q;
        if (frac > 0.5f || (frac == 0.5f && (q & 1u)))
            q++;
        return (uint16_t)(sign | q); /* q == 1024 is the smallest normal */
    }
    ax += 0x0fffu + ((ax >> 13) & 1u);
    return (uint16_t)(sign | ((ax - 0x38000000u) >> 13));
}

uint16_t oti_f32_to_f16_sr(float f, uint32_t rnd)
{
    uint32_t x = fbits(f), ax = x & 0x7fffffffu;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t h;

    if (ax >= 0x477fe000u) /* at or above 65504, the largest half */
        return (uint16_t)(sign | 0x7bffu);
    if (ax < F16_MIN_NORMAL) {
        float t = bitsf(ax) * 16777216.0f;
        uint32_t q = (uint32_t)t;
        float frac = t - (float)q; /* exact, in [0, 1) */
        if ((float)(rnd >> 8) * (1.0f / 16777216.0f) < frac)
            q++;
        return (uint16_t)(sign | q);
    }
    h = (ax + (rnd & 0x1fffu) - 0x38000000u) >> 13;
    if (h > 0x7bffu)
        h = 0x7bffu;
    return (uint16_t)(sign | h);
}

float oti_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;

    if (e == 0) {
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31)
        return bitsf(sign | 0x7f800000u | (m << 13));
    return bitsf(sign | ((e + 112u) << 23) | (m << 13));
}

/* ---- bf16 ------------------------------------------------------------------ */

uint16_t oti_f32_to_bf16(float f)
{
    uint32_t x = fbits(f), ax = x & 0x7fffffffu;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);

    if (ax >= 0x7f7f8000u)
        return (uint16_t)(sign | 0x7f7fu);
    ax += 0x7fffu + ((ax >> 16) & 1u);
    return (uint16_t)(sign | (ax >> 16));
}

uint16_t oti_f32_to_bf16_sr(float f, uint32_t rnd)
{
    uint32_t x = fbits(f), ax = x & 0x7fffffffu;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);

    if (ax >= 0x7f7f0000u)
        return (uint16_t)(sign | 0x7f7fu);
    ax += rnd & 0xffffu;
    if (ax >= 0x7f800000u)
        ax = 0x7f7f0000u;
    return (uint16_t)(sign | (ax >> 16));
}

float oti_bf16_to_f32(uint16_t h)
{
    return bitsf((uint32_t)h << 16);
}

/* ---- int8 ------------------------------------------------------------------ */

float oti_int8_scale(float maxabs)
{
    float s;

    if (!(maxabs > 0.0f))
        return 0.0f;
    if (maxabs > FLT_MAX)
        maxabs = FLT_MAX;
    s = maxabs / 127.0f;
    if (s == 0.0f)
        s = FLT_TRUE_MIN;
    while (s * 127.0f < maxabs)
        s = nextafterf(s, FLT_MAX);
    while (!isfinite(s * 127.0f))
        s = nextafterf(s, 0.0f);
    return s;
}

static inline int int8_round(float v, float scale, oti_rng *rng)
{
    float x, fl;
    int q;

    if (scale == 0.0f)
        return 0;
    x = v / scale;
    if (x >= 127.0f)
        return 127;
    if (x <= -127.0f)
        return -127;
    if (rng == NULL) {
        q = (int)x; /* toward zero */
        fl = x - (float)q;
        if (fl >= 0.5f)
            q++;
        else if (fl <= -0.5f)
            q--;
    } else {
        fl = floorf(x);
        q = (int)fl;
        if ((float)(oti_rng_next(rng) >> 8) * (1.0f / 16777216.0f) < x - fl)
            q++;
        if (q > 127)
            q = 127;
    }
    return q;
}

/* ---- generator --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void oti_rng_seed(oti_rng *r, uint64_t seed)
{
    uint64_t a = splitmix64(&seed), b = splitmix64(&seed);

    r->s[0] = (uint32_t)a;
    r->s[1] = (uint32_t)(a >> 32);
    r->s[2] = (uint32_t)b;
    r->s[3] = (uint32_t)(b >> 32);
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 1;
}

static inline uint32_t rotl(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

uint32_t oti_rng_next(oti_rng *r)
{
    uint32_t *s = r->s;
    uint32_t result = rotl(s[1] * 5u, 7) * 9u, t = s[1] << 9;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
}

/* ---- bulk ------------------------------------------------------------------ */

void oti_quantize(int enc, const float *v, size_t n, float scale, oti_rng *rng, uint8_t *dst,
                  float *deq)
{
    size_t i;

    switch (enc) {
    case OTI_ENC_FP32:
#if OTI_LITTLE_ENDIAN
        memcpy(dst, v, n * 4);
#else
        for (i = 0; i < n; i++)
            oti_put32(dst + 4 * i, fbits(v[i]));
#endif
        if (deq != NULL && deq != v)
            memcpy(deq, v, n * 4);
        break;
    case OTI_ENC_FP16:
        for (i = 0; i < n; i++) {
            uint16_t h = rng != NULL ? oti_f32_to_f16_sr(v[i], oti_rng_next(rng))
                                     : oti_f32_to_f16(v[i]);
            oti_put16(dst + 2 * i, h);
            if (deq != NULL)
                deq[i] = oti_f16_to_f32(h);
        }
        break;
    case OTI_ENC_BF16:
        for (i = 0; i < n; i++) {
            uint16_t h = rng != NULL ? oti_f32_to_bf16_sr(v[i], oti_rng_next(rng))
                                     : oti_f32_to_bf16(v[i]);
            oti_put16(dst + 2 * i, h);
            if (deq != NULL)
                deq[i] = oti_bf16_to_f32(h);
        }
        break;
    default:
        for (i = 0; i < n; i++) {
            int q = int8_round(v[i], scale, rng);
            dst[i] = (uint8_t)(int8_t)q;
            if (deq != NULL)
                deq[i] = (float)q * scale;
        }
        break;
    }
}

void oti_dequantize(int enc, const uint8_t *src, size_t n, float scale, float *out)
{
    size_t i;

    switch (enc) {
    case OTI_ENC_FP32:
#if OTI_LITTLE_ENDIAN
        memcpy(out, src, n * 4);
#else
        for (i = 0; i < n; i++)
            out[i] = bitsf(oti_get32(src + 4 * i));
#endif
        break;
    case OTI_ENC_FP16:
        for (i = 0; i < n; i++)
            out[i] = oti_f16_to_f32(oti_get16(src + 2 * i));
        break;
    case OTI_ENC_BF16:
        for (i = 0; i < n; i++)
            out[i] = oti_bf16_to_f32(oti_get16(src + 2 * i));
        break;
    default:
        for (i = 0; i < n; i++)
            out[i] = (float)(int8_t)src[i] * scale;
        break;
    }
}
