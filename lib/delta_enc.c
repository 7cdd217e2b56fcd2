/*
 * delta_enc.c - the delta encoder: ADD frames of local - snapshot, SET
 * frames of absolute values (real-time and full updates), frame headers.
 *
 * One encode call:
 *  1. gathers the candidate rows of every block: the rows the model marks
 *     touched, sorted (radix sort, or a walk of the touched bitmap when many
 *     are touched), or every row of blocks without tracking;
 *  2. with max_entries, finds the magnitude of the k-th largest change by a
 *     weighted quickselect (rows weigh their column count);
 *  3. if the caller's buffer is smaller than the cheap bound, sizes the
 *     frame with a dry pass that writes nothing (OT_ENOSPC if it does not
 *     fit);
 *  4. makes every page it may write exclusive (copy on write), so the pass
 *     that follows cannot fail half way;
 *  5. walks the candidates page by page: a page's selected rows become one
 *     section, sparse or dense, whichever is smaller; values are quantised,
 *     written, and the shadow advanced by exactly the decoded values; rows
 *     whose difference is still nonzero are marked touched again.
 *
 * SPDX-License-Identifier: MIT
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "delta.h"
#include "protocol.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
#include <immintrin.h>
#define OTI_NT_STORES 1
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define OTI_LITTLE_ENDIAN_HOST 1
#else
#define OTI_LITTLE_ENDIAN_HOST 0
#endif

#define PF_AHEAD 48 /* candidate rows prefetched ahead */
#define ROW_VEC_MIN 8 /* rows of at least this many values take the vectorised kernels */
#define SEC_HDR_MAX 32u /* varint block, 3 bytes, varints cols/first/count, scale */

#define GROW(e, field, n) \
    oti_grow(&(e)->alloc, (void **)&(e)->field, &(e)->field##_cap, (n), sizeof(*(e)->field))

typedef struct job {
    ot_delta_encoder *enc;
    oti_params *p;
    oti_shadow *sh;
    int kind;       /* OTI_KIND_ADD, _SET or _FULL */
    int dry;        /* size only: write nothing, change nothing */
    uint8_t *out;   /* payload (NULL when dry) */
    size_t limit;   /* payload bytes allowed */
    size_t used;
    uint64_t entries;
    int stop;       /* the frame is full */
    size_t vb;      /* bytes per value */
    int venc;       /* value encoding */
    float thr, rel;
    int topk;
    float kth;
    uint64_t tie_left;
    int track;      /* current block: 0 no tracking, 1 touched list, 2 all_touched flag */
    uint32_t pcrc;  /* CRC32C of the payload written so far */
    int nt;         /* copy fp32 values with non-temporal stores (large frames) */
    const uint32_t *cend; /* end of the current block's candidate rows (prefetching) */
    oti_block *blk;
    /* full-update cursor (a copy, committed by the real pass) */
    size_t fb;
    int fa;
    uint64_t frow;
    int fdone;
} job;

static inline float clampf(float d)
{
    return d > FLT_MAX ? FLT_MAX : (d < -FLT_MAX ? -FLT_MAX : d);
}

static inline const float *parr(const oti_block *b, int a)
{
    return a == 0 ? b->w : b->s[a - 1];
}

static inline int finitef(float x)
{
    return fabsf(x) <= FLT_MAX;
}

static uint32_t page_nrows(const oti_sblock *sb, size_t pg)
{
    uint64_t rpp = UINT64_C(1) << sb->shift, first = (uint64_t)pg << sb->shift;
    uint64_t n = sb->rows - first;

    return (uint32_t)(n < rpp ? n : rpp);
}

static inline size_t hdr_size(uint64_t block, uint32_t cols, uint64_t first, uint64_t count,
                              int enc)
{
    return oti_varint_len(block) + 3 + oti_varint_len(cols) + oti_varint_len(first) +
           oti_varint_len(count) + (enc == OTI_ENC_INT8 ? 4u : 0u);
}

/* ---- frame header ------------------------------------------------------------ */

void oti_frame_header(const ot_delta_encoder *enc, uint8_t *d, int kind, unsigned flags,
                      uint64_t fingerprint)
{
    d[0] = OTI_FRAME_MAGIC0;
    d[1] = OTI_FRAME_MAGIC1;
    d[2] = OTI_FRAME_MAGIC2;
    d[3] = OTI_FRAME_MAGIC3;
    d[OTI_H_MAJOR] = OTI_FRAME_MAJOR;
    d[OTI_H_MINOR] = OTI_FRAME_MINOR;
    d[OTI_H_KIND] = (uint8_t)kind;
    d[OTI_H_FLAGS] = (uint8_t)flags;
    oti_put16(d + OTI_H_HLEN, OTI_HEADER_SIZE);
    oti_put16(d + OTI_H_RESERVED, 0);
    oti_put32(d + OTI_H_SHARD, enc->shard);
    oti_put64(d + OTI_H_FINGERPRINT, fingerprint);
    oti_put64(d + OTI_H_SEQUENCE, enc->seq);
    oti_put64(d + OTI_H_BASE_VERSION, enc->base_version);
    oti_put64(d + OTI_H_NEW_VERSION, enc->new_version);
    oti_put32(d + OTI_H_SENDER, enc->sender);
    oti_put32(d + OTI_H_ENTRIES, 0);
    oti_put32(d + OTI_H_PAYLOAD, 0);
    oti_put32(d + OTI_H_CHECKSUM, 0);
}

uint32_t oti_frame_crc(const uint8_t *d, size_t total)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    uint32_t c = oti_crc32c(0, d, OTI_H_CHECKSUM);

    c = oti_crc32c(c, zero, 4);
    return oti_crc32c(c, d + OTI_HEADER_SIZE, total - OTI_HEADER_SIZE);
}

/* Header fields and the checksum, from the payload's CRC32C. */
static void frame_finish_crc(uint8_t *frame, uint32_t entries, size_t payload_len, uint32_t pcrc)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    uint32_t c;

    oti_put32(frame + OTI_H_ENTRIES, entries);
    oti_put32(frame + OTI_H_PAYLOAD, (uint32_t)payload_len);
    c = oti_crc32c(0, frame, OTI_H_CHECKSUM);
    c = oti_crc32c(c, zero, 4);
    oti_put32(frame + OTI_H_CHECKSUM, oti_crc32c_combine(c, pcrc, payload_len));
}

/* Copies n bytes, with non-temporal stores for the aligned middle. */
static void copy_nt(uint8_t *d, const uint8_t *s, size_t n)
{
#ifdef OTI_NT_STORES
    size_t head = (size_t)(-(uintptr_t)d & 15u);
    if (n >= 256) {
        memcpy(d, s, head);
        d += head;
        s += head;
        n -= head;
        for (; n >= 64; n -= 64, d += 64, s += 64) {
            __m128i x0 = _mm_loadu_si128((const __m128i *)(const void *)s);
            __m128i x1 = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
            __m128i x2 = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
            __m128i x3 = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));
            _mm_stream_si128((__m128i *)(void *)d, x0);
            _mm_stream_si128((__m128i *)(void *)(d + 16), x1);
            _mm_stream_si128((__m128i *)(void *)(d + 32), x2);
            _mm_stream_si128((__m128i *)(void *)(d + 48), x3);
        }
    }
#endif
    memcpy(d, s, n);
}

static void store_fence(void)
{
#ifdef OTI_NT_STORES
    _mm_sfence();
#endif
}

void oti_frame_finish(uint8_t *frame, uint32_t entries, size_t payload_len)
{
    oti_put32(frame + OTI_H_ENTRIES, entries);
    oti_put32(frame + OTI_H_PAYLOAD, (uint32_t)payload_len);
    oti_put32(frame + OTI_H_CHECKSUM, oti_frame_crc(frame, OTI_HEADER_SIZE + payload_len));
}

/* ---- candidates ------------------------------------------------------------------ */

/* LSD radix sort with digits of at most 12 bits, as few passes as the
 * largest value needs (two for 2^24 rows). */
static void radix_sort(uint32_t *a, uint32_t *tmp, size_t n, uint64_t maxval)
{
    uint32_t *src = a, *dst = tmp, *t, cnt[4096];
    unsigned shift, bits = 0, passes, digit;
    size_t i;

    while (bits < 32 && (maxval >> bits) != 0)
        bits++;
    passes = (bits + 11) / 12;
    digit = passes > 0 ? (bits + passes - 1) / passes : 1;
    for (shift = 0; shift < bits; shift += digit) {
        uint32_t mask = (1u << digit) - 1, sum = 0;
        memset(cnt, 0, sizeof(cnt[0]) << digit);
        for (i = 0; i < n; i++)
            cnt[(src[i] >> shift) & mask]++;
        for (i = 0; i <= mask; i++) {
            uint32_t c = cnt[i];
            cnt[i] = sum;
            sum += c;
        }
        for (i = 0; i < n; i++)
            dst[cnt[(src[i] >> shift) & mask]++] = src[i];
        t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof(uint32_t));
}

static inline unsigned ctz64(uint64_t x)
{
#if defined(__GNUC__)
    return (unsigned)__builtin_ctzll(x);
#else
    unsigned n = 0;
    while (!(x & 1)) {
        x >>= 1;
        n++;
    }
    return n;
#endif
}

/* The bits of word w of a row bitmap that stand for rows in [r0, r1). */
static inline uint64_t word_mask(uint64_t w, uint64_t r0, uint64_t r1)
{
    uint64_t m = ~UINT64_C(0);

    if (w == r0 / 64)
        m &= ~UINT64_C(0) << (r0 & 63);
    if (w == (r1 - 1) / 64 && (r1 & 63) != 0)
        m &= ~(~UINT64_C(0) << (r1 & 63));
    return m;
}

/* The rows [*r0, *r1) of block b in the encoder's range. */
static void block_range(const ot_delta_encoder *e, const oti_params *p, size_t b, uint64_t *r0,
                        uint64_t *r1)
{
    if (e->range_hi == 0) {
        *r0 = 0;
        *r1 = p->blocks[b].rows;
    } else {
        oti_shard_rows(p, b, e->range_lo, e->range_hi, r0, r1);
    }
}

static ot_status gather(ot_delta_encoder *e, const oti_params *p)
{
    size_t b, total = 0, maxnt = 0;

    if (GROW(e, bc, p->nblocks ? p->nblocks : 1) != 0)
        return OT_ENOMEM;
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        oti_bcand *bc = &e->bc[b];
        block_range(e, p, b, &bc->r0, &bc->r1);
        if (e->scan_all || blk->touched_bits == NULL || blk->touched_list == NULL ||
            blk->all_touched) {
            bc->all = 1;
            bc->start = 0;
            bc->first = bc->r0;
            bc->n = (size_t)(bc->r1 - bc->r0);
            continue;
        }
        bc->all = 0;
        bc->start = total;
        bc->n = (size_t)(blk->ntouched < blk->rows ? blk->ntouched : blk->rows);
        if (bc->r1 == bc->r0)
            bc->n = 0;
        total += bc->n;
        if (bc->n > maxnt)
            maxnt = bc->n;
    }
    if (GROW(e, rows, total ? total : 1) != 0 || GROW(e, tmp, maxnt ? maxnt : 1) != 0)
        return OT_ENOMEM;
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        oti_bcand *bc = &e->bc[b];
        uint32_t *dst = e->rows + bc->start;
        if (bc->all || bc->n == 0)
            continue;
        /* sorting costs a few passes over the touched rows, the bitmap walk
         * one over every word of the range with a hard-to-predict branch on
         * each */
        if ((uint64_t)bc->n < (bc->r1 - bc->r0) / 64) {
            size_t i, k = 0;
            if (bc->r0 == 0 && bc->r1 == blk->rows) {
                memcpy(dst, blk->touched_list, bc->n * sizeof(uint32_t));
                k = bc->n;
            } else {
                for (i = 0; i < bc->n; i++) {
                    uint32_t r = blk->touched_list[i];
                    dst[k] = r;
                    k += r >= bc->r0 && r < bc->r1;
                }
            }
            radix_sort(dst, e->tmp, k, blk->rows - 1);
            bc->n = k;
        } else {
            size_t w, w1 = (size_t)((bc->r1 + 63) / 64), k = 0;
            for (w = (size_t)(bc->r0 / 64); w < w1 && k < bc->n; w++) {
                uint64_t x = blk->touched_bits[w] & word_mask(w, bc->r0, bc->r1);
                while (x != 0 && k < bc->n) {
                    dst[k++] = (uint32_t)(w * 64 + ctz64(x));
                    x &= x - 1;
                }
            }
            bc->n = k;
        }
    }
    return OT_OK;
}

/*
 * Evaluates one row: the values to send into v (the difference for ADD, the
 * model's value for SET), its largest |difference| into *mag, whether some
 * difference is nonzero into *nz.  Returns -1 if a value is not finite, 1 if
 * some column passes the thresholds, else 0.
 */
static inline int eval_row(const job *j, const float *l, const float *s, uint32_t cols, float *v,
                           float *mag, int *nz)
{
    float m = 0.0f;
    int pass = 0, any = 0;
    uint32_t c;

    for (c = 0; c < cols; c++) {
        float lc = l[c], sc = s[c], d, ad;
        if (!finitef(lc) || !finitef(sc))
            return -1;
        d = clampf(lc - sc);
        ad = fabsf(d);
        if (d != 0.0f) {
            any = 1;
            if (ad >= j->thr && ad >= j->rel * fabsf(sc))
                pass = 1;
        }
        if (ad > m)
            m = ad;
        if (v != NULL)
            v[c] = j->kind == OTI_KIND_ADD ? d : lc;
    }
    *mag = m;
    *nz = any;
    return pass;
}

/* The top-k budget: rows above the cut always, rows at it while ties last. */
static inline int take(job *j, float mag, uint32_t cols)
{
    if (!j->topk || mag > j->kth)
        return 1;
    if (mag == j->kth && cols <= j->tie_left) {
        j->tie_left -= cols;
        return 1;
    }
    return 0;
}

static uint32_t xorshift32(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/*
 * Weighted selection, largest first: finds t such that the weight of values
 * above t is at most k and the weight of values at or above t exceeds k.
 * Returns 0 with t and the weight above it, or -1 when everything fits.
 * Expected O(n) (three-way partitions around random pivots).
 */
static int wselect(float *m, uint32_t *w, size_t n, uint64_t k, float *t, uint64_t *above)
{
    size_t lo = 0, hi = n;
    uint64_t acc = 0;
    uint32_t seed = 0x9e3779b9u;

    while (lo < hi) {
        float piv = m[lo + xorshift32(&seed) % (hi - lo)], tf;
        size_t i = lo, gt = lo, lt = hi, q;
        uint64_t wg = 0, we = 0;
        uint32_t tw;
        while (i < lt) {
            if (m[i] > piv) {
                tf = m[i], m[i] = m[gt], m[gt] = tf;
                tw = w[i], w[i] = w[gt], w[gt] = tw;
                gt++;
                i++;
            } else if (m[i] < piv) {
                lt--;
                tf = m[i], m[i] = m[lt], m[lt] = tf;
                tw = w[i], w[i] = w[lt], w[lt] = tw;
            } else {
                i++;
            }
        }
        for (q = lo; q < gt; q++)
            wg += w[q];
        for (q = gt; q < lt; q++)
            we += w[q];
        if (acc + wg > k) {
            hi = gt;
        } else if (acc + wg + we > k) {
            *t = piv;
            *above = acc + wg;
            return 0;
        } else {
            acc += wg + we;
            lo = lt;
        }
    }
    return -1;
}

static ot_status topk_prepare(job *j)
{
    ot_delta_encoder *e = j->enc;
    const oti_params *p = j->p;
    size_t b, n = 0, m = 0;
    float t;
    uint64_t above;

    j->topk = 0;
    if (e->max_entries == 0)
        return OT_OK;
    for (b = 0; b < p->nblocks; b++) {
        unsigned mask = j->sh->blocks[b].amask;
        n += (size_t)((mask & 1u) + ((mask >> 1) & 1u) + ((mask >> 2) & 1u)) * e->bc[b].n;
    }
    if (GROW(e, mags, n ? n : 1) != 0 || GROW(e, wts, n ? n : 1) != 0)
        return OT_ENOMEM;
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        const oti_sblock *sb = &j->sh->blocks[b];
        const oti_bcand *bc = &e->bc[b];
        int a;
        for (a = 0; a < OTI_NARRAYS; a++) {
            const float *L;
            size_t k;
            if (!(sb->amask & (1u << a)))
                continue;
            L = parr(blk, a);
            for (k = 0; k < bc->n; k++) {
                uint64_t row = bc->all ? bc->first + k : e->rows[bc->start + k];
                float mag;
                int nz;
                if (eval_row(j, L + row * sb->cols, oti_shadow_row(j->sh, b, a, row), sb->cols,
                             NULL, &mag, &nz) == 1) {
                    e->mags[m] = mag;
                    e->wts[m] = sb->cols;
                    m++;
                }
            }
        }
    }
    if (wselect(e->mags, e->wts, m, e->max_entries, &t, &above) == 0) {
        j->topk = 1;
        j->kth = t;
        j->tie_left = e->max_entries - above;
    }
    return OT_OK;
}

/* ---- kernels --------------------------------------------------------------------
 *
 * Loops over a page's contiguous values, written as fixed 16-wide inner
 * loops so that compilers vectorise them at -O2 (GCC 12's default cost model
 * vectorises only loops whose trip count needs no scalar epilogue), with a
 * scalar tail.
 */

#define KV 16

/* number of d[i] that pass: nonzero, >= thr, >= rel * |s[i]| */
static size_t k_pass(const float *restrict d, const float *restrict s, size_t n, float thr,
                     float rel)
{
    size_t i = 0, k, cnt = 0;

    if (thr == 0.0f && rel == 0.0f) {
        for (; i + KV <= n; i += KV) {
            unsigned c = 0;
            for (k = 0; k < KV; k++)
                c += (unsigned)(d[i + k] != 0.0f);
            cnt += c;
        }
        for (; i < n; i++)
            cnt += d[i] != 0.0f;
        return cnt;
    }
    for (; i + KV <= n; i += KV) {
        unsigned c = 0;
        for (k = 0; k < KV; k++) {
            float ad = fabsf(d[i + k]);
            c += (unsigned)(d[i + k] != 0.0f) & (unsigned)(ad >= thr) &
                 (unsigned)(ad >= rel * fabsf(s[i + k]));
        }
        cnt += c;
    }
    for (; i < n; i++) {
        float ad = fabsf(d[i]);
        cnt += (d[i] != 0.0f) & (ad >= thr) & (ad >= rel * fabsf(s[i]));
    }
    return cnt;
}

/*
 * d[i] = l[i] - s[i]; returns the number of nonzero d[i], and in *bad
 * whether some d[i] is not finite (a NaN or infinity in l or s, or an
 * overflow of the difference: the caller then takes the careful path).
 */
#ifdef OTI_NT_STORES
/* 8-wide versions, used when the processor has AVX2 */
__attribute__((target("avx2"))) static size_t k_scan_avx2(const float *restrict l,
                                                         const float *restrict s,
                                                         float *restrict d, size_t n,
                                                         unsigned *bad_out)
{
    const __m256 vmax = _mm256_set1_ps(FLT_MAX), zero = _mm256_setzero_ps();
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256i c = _mm256_setzero_si256();
    __m256 b = _mm256_setzero_ps();
    int32_t cs[8];
    size_t i = 0, cnt = 0, k;
    unsigned bad;

    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_sub_ps(_mm256_loadu_ps(l + i), _mm256_loadu_ps(s + i));
        _mm256_storeu_ps(d + i, x);
        b = _mm256_or_ps(b, _mm256_cmp_ps(_mm256_and_ps(x, absm), vmax, _CMP_NLE_UQ));
        c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_NEQ_UQ)));
    }
    _mm256_storeu_si256((__m256i *)(void *)cs, c);
    for (k = 0; k < 8; k++)
        cnt += (uint32_t)cs[k];
    bad = (unsigned)_mm256_movemask_ps(b) != 0;
    for (; i < n; i++) {
        float x = l[i] - s[i];
        d[i] = x;
        bad |= (unsigned)!(fabsf(x) <= FLT_MAX);
        cnt += x != 0.0f;
    }
    *bad_out = bad;
    return cnt;
}

__attribute__((target("avx2"))) static unsigned k_advance_check_avx2(float *restrict s,
                                                                    const float *restrict v,
                                                                    const float *restrict l,
                                                                    size_t n)
{
    const __m256 vmax = _mm256_set1_ps(FLT_MAX), vmin = _mm256_set1_ps(-FLT_MAX);
    const __m256 zero = _mm256_setzero_ps();
    __m256 a = _mm256_setzero_ps();
    size_t i = 0;
    unsigned any;

    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_add_ps(_mm256_loadu_ps(s + i), _mm256_loadu_ps(v + i));
        x = _mm256_max_ps(_mm256_min_ps(x, vmax), vmin);
        _mm256_storeu_ps(s + i, x);
        a = _mm256_or_ps(a, _mm256_cmp_ps(_mm256_sub_ps(_mm256_loadu_ps(l + i), x), zero,
                                          _CMP_NEQ_UQ));
    }
    any = (unsigned)_mm256_movemask_ps(a) != 0;
    for (; i < n; i++) {
        s[i] = clampf(s[i] + v[i]);
        any |= (unsigned)(l[i] - s[i] != 0.0f);
    }
    return any;
}

/* Writes to idx the positions of the nonzero d[i]; returns how many. */
__attribute__((target("avx2"))) static size_t k_nonzero_avx2(const float *d, size_t n,
                                                             uint32_t *idx)
{
    const __m256 zero = _mm256_setzero_ps();
    size_t i = 0, m = 0;

    for (; i + 8 <= n; i += 8) {
        unsigned mask = (unsigned)_mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_loadu_ps(d + i), zero, _CMP_NEQ_UQ));
        while (mask != 0) {
            idx[m++] = (uint32_t)(i + (unsigned)__builtin_ctz(mask));
            mask &= mask - 1;
        }
    }
    for (; i < n; i++)
        if (d[i] != 0.0f)
            idx[m++] = (uint32_t)i;
    return m;
}

static int have_avx2(void)
{
    static int cached = -1; /* benign race: every thread computes the same */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);

    if (v < 0) {
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

static size_t k_nonzero(const float *d, size_t n, uint32_t *idx)
{
    size_t i = 0, m = 0;

#ifdef OTI_NT_STORES
    if (have_avx2())
        return k_nonzero_avx2(d, n, idx);
    {
        const __m128 zero = _mm_setzero_ps();
        for (; i + 4 <= n; i += 4) {
            unsigned mask = (unsigned)_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(d + i), zero));
            while (mask != 0) {
                idx[m++] = (uint32_t)(i + (unsigned)__builtin_ctz(mask));
                mask &= mask - 1;
            }
        }
    }
#endif
    for (; i < n; i++)
        if (d[i] != 0.0f)
            idx[m++] = (uint32_t)i;
    return m;
}

static size_t k_scan(const float *restrict l, const float *restrict s, float *restrict d, size_t n,
                     unsigned *bad_out)
{
    size_t i = 0, cnt = 0;
    unsigned bad = 0;

#ifdef OTI_NT_STORES
    if (have_avx2())
        return k_scan_avx2(l, s, d, n, bad_out);
    if (n >= 4) {
        const __m128 vmax = _mm_set1_ps(FLT_MAX), zero = _mm_setzero_ps();
        const __m128 absm = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
        __m128i c = _mm_setzero_si128();
        __m128 b = _mm_setzero_ps();
        int32_t cs[4];
        for (; i + 4 <= n; i += 4) {
            __m128 x = _mm_sub_ps(_mm_loadu_ps(l + i), _mm_loadu_ps(s + i));
            _mm_storeu_ps(d + i, x);
            b = _mm_or_ps(b, _mm_cmpnle_ps(_mm_and_ps(x, absm), vmax));
            c = _mm_sub_epi32(c, _mm_castps_si128(_mm_cmpneq_ps(x, zero)));
        }
        _mm_storeu_si128((__m128i *)(void *)cs, c);
        cnt = (size_t)(uint32_t)cs[0] + (uint32_t)cs[1] + (uint32_t)cs[2] + (uint32_t)cs[3];
        bad = (unsigned)_mm_movemask_ps(b) != 0;
    }
#endif
    for (; i < n; i++) {
        float x = l[i] - s[i];
        d[i] = x;
        bad |= (unsigned)!(fabsf(x) <= FLT_MAX);
        cnt += x != 0.0f;
    }
    *bad_out = bad;
    return cnt;
}

/* s[i] = clamp(s[i] + v[i]); returns 1 if some l[i] - s[i] stays nonzero */
static unsigned k_advance_check(float *restrict s, const float *restrict v, const float *restrict l,
                                size_t n)
{
    size_t i = 0;
    unsigned any = 0;

#ifdef OTI_NT_STORES
    if (have_avx2())
        return k_advance_check_avx2(s, v, l, n);
    if (n >= 4) {
        const __m128 vmax = _mm_set1_ps(FLT_MAX), vmin = _mm_set1_ps(-FLT_MAX);
        const __m128 zero = _mm_setzero_ps();
        __m128 a = _mm_setzero_ps();
        for (; i + 4 <= n; i += 4) {
            __m128 x = _mm_add_ps(_mm_loadu_ps(s + i), _mm_loadu_ps(v + i));
            x = _mm_max_ps(_mm_min_ps(x, vmax), vmin);
            _mm_storeu_ps(s + i, x);
            a = _mm_or_ps(a, _mm_cmpneq_ps(_mm_sub_ps(_mm_loadu_ps(l + i), x), zero));
        }
        any = (unsigned)_mm_movemask_ps(a) != 0;
    }
#endif
    for (; i < n; i++) {
        s[i] = clampf(s[i] + v[i]);
        any |= (unsigned)(l[i] - s[i] != 0.0f);
    }
    return any;
}

/* 1 if some l[i] - s[i] is nonzero */
static unsigned k_differs(const float *restrict l, const float *restrict s, size_t n)
{
    size_t i = 0, k;
    unsigned any = 0;

    for (; i + KV <= n; i += KV) {
        unsigned a = 0;
        for (k = 0; k < KV; k++)
            a |= (unsigned)(l[i + k] - s[i + k] != 0.0f);
        any |= a;
    }
    for (; i < n; i++)
        any |= (unsigned)(l[i] - s[i] != 0.0f);
    return any;
}

/*
 * eval_row for a row of many values, without a top-k budget (so without
 * its magnitude): the vectorised kernels, and eval_row itself for a row with
 * a non-finite value or a difference that overflows.
 */
static int eval_row_vec(const job *j, const float *l, const float *s, uint32_t cols, float *v,
                        int *nz)
{
    unsigned bad;
    size_t cnt = k_scan(l, s, v, cols, &bad);
    float mag;

    if (bad)
        return eval_row(j, l, s, cols, v, &mag, nz);
    *nz = cnt > 0;
    if (cnt > 0 && (j->thr != 0.0f || j->rel != 0.0f))
        cnt = k_pass(v, s, cols, j->thr, j->rel);
    if (j->kind != OTI_KIND_ADD)
        memcpy(v, l, (size_t)cols * 4);
    return cnt > 0;
}

/* ---- sections ----------------------------------------------------------------- */

static inline void keep_row(job *j, uint64_t row)
{
    if (j->dry || j->track == 0)
        return;
    if (j->track == 2)
        j->blk->all_touched = 1;
    else
        oti_block_touch(j->blk, row);
}

/* Residual check after writing a row: keeps it touched while local differs. */
static inline void after_write(job *j, const float *l, const float *s, uint32_t cols, uint64_t row)
{
    uint32_t c;

    if (j->track == 0)
        return;
    for (c = 0; c < cols; c++) {
        if (l[c] - s[c] != 0.0f) {
            keep_row(j, row);
            return;
        }
    }
}

static inline float sat_add(float x, float d)
{
    return clampf(x + d);
}

/*
 * Writes one section (rows given as absolute row numbers in `rows` for a
 * sparse layout, or the range [first, first + count) for a dense one) with
 * values v (count * cols), and advances the shadow.  size is precomputed.
 */
static void write_section(job *j, size_t b, int a, int layout, const uint32_t *rows,
                          uint64_t first, uint64_t count, const float *v, size_t size)
{
    ot_delta_encoder *e = j->enc;
    oti_sblock *sb = &j->sh->blocks[b];
    uint32_t cols = sb->cols;
    size_t nv = (size_t)count * cols, i;
    const float *deq = v;
    const float *L = parr(j->blk, a);
    float scale = 0.0f;
    uint32_t c;

    if (!j->dry) {
        uint8_t *o0 = j->out + j->used, *o = o0;
        o = oti_put_varint(o, b);
        *o++ = (uint8_t)a;
        *o++ = (uint8_t)j->venc;
        *o++ = (uint8_t)layout;
        o = oti_put_varint(o, cols);
        o = oti_put_varint(o, first);
        o = oti_put_varint(o, count);
        if (j->venc == OTI_ENC_INT8) {
            float mx = 0.0f;
            uint32_t bits;
            for (i = 0; i < nv; i++)
                if (fabsf(v[i]) > mx)
                    mx = fabsf(v[i]);
            scale = oti_int8_scale(mx);
            memcpy(&bits, &scale, 4);
            oti_put32(o, bits);
            o += 4;
        }
        if (layout == OTI_LAYOUT_SPARSE)
            for (i = 1; i < count; i++)
                o = oti_put_gap(o, (uint64_t)rows[i] - rows[i - 1]);
        if (j->venc != OTI_ENC_FP32) {
            oti_quantize(j->venc, v, nv, scale, e->stochastic ? &e->rng : NULL, o, e->deq);
            deq = e->deq;
            o += nv * j->vb;
            j->pcrc = oti_crc32c(j->pcrc, o0, (size_t)(o - o0));
        } else {
            /* the checksum reads the values where they are in cache */
            j->pcrc = oti_crc32c(j->pcrc, o0, (size_t)(o - o0));
#if OTI_LITTLE_ENDIAN_HOST
            if (j->nt)
                copy_nt(o, (const uint8_t *)v, nv * 4);
            else
                memcpy(o, v, nv * 4);
            j->pcrc = oti_crc32c(j->pcrc, v, nv * 4);
#else
            oti_quantize(j->venc, v, nv, scale, NULL, o, NULL);
            j->pcrc = oti_crc32c(j->pcrc, o, nv * 4);
#endif
            o += nv * 4;
        }
        /* advance the shadow by exactly the decoded values */
        if (layout == OTI_LAYOUT_DENSE) {
            /* a dense section's rows are contiguous within one page */
            float *s = oti_shadow_row_w(j->sh, b, a, first);
            const float *l = L + first * cols;
            unsigned differs;
            if (j->kind == OTI_KIND_ADD) {
                /* the vectorised kernel, whose check costs little */
                differs = k_advance_check(s, deq, l, nv) && j->track != 0;
            } else {
                memcpy(s, deq, nv * 4);
                differs = j->track != 0 && k_differs(l, s, nv);
            }
            if (differs) {
                if (j->track == 2)
                    keep_row(j, first);
                else
                    for (i = 0; i < count; i++)
                        after_write(j, l + i * cols, s + i * cols, cols, first + i);
            }
        } else if (cols == 1) {
            /* all rows of a section lie in one page */
            float *pgd = sb->pages[a][rows[0] >> sb->shift]->data;
            uint64_t r0 = (uint64_t)(rows[0] >> sb->shift) << sb->shift;
            for (i = 0; i < count; i++) {
                uint64_t row = rows[i];
                float *s = pgd + (row - r0);
                if (j->kind == OTI_KIND_ADD)
                    *s = sat_add(*s, deq[i]);
                else
                    *s = deq[i];
                if (j->track != 0 && L[row] - *s != 0.0f)
                    keep_row(j, row);
            }
        } else {
            for (i = 0; i < count; i++) {
                uint64_t row = rows[i];
                float *s = oti_shadow_row_w(j->sh, b, a, row);
                const float *dv = deq + i * cols;
                if (j->kind == OTI_KIND_ADD && cols >= ROW_VEC_MIN) {
                    if (k_advance_check(s, dv, L + row * cols, cols) && j->track != 0)
                        keep_row(j, row);
                    continue;
                }
                if (j->kind == OTI_KIND_ADD)
                    for (c = 0; c < cols; c++)
                        s[c] = sat_add(s[c], dv[c]);
                else
                    memcpy(s, dv, (size_t)cols * 4);
                after_write(j, L + row * cols, s, cols, row);
            }
        }
    }
    j->used += size;
    j->entries += nv;
}

/* Sizes of the first m selected rows as sparse and dense sections. */
static void sec_sizes(const job *j, uint64_t block, uint32_t cols, const uint32_t *rows, size_t m,
                      size_t *sparse, size_t *dense)
{
    uint64_t first = rows[0], span = (uint64_t)rows[m - 1] - first + 1;
    size_t i, gaps = 0;

    for (i = 1; i < m; i++)
        gaps += oti_varint_len((uint64_t)rows[i] - rows[i - 1]);
    *sparse = hdr_size(block, cols, first, m, j->venc) + gaps + m * cols * j->vb;
    *dense = hdr_size(block, cols, first, span, j->venc) + (size_t)span * cols * j->vb;
}

/*
 * One page of (block b, array a): candidates cand[0..nc) (absolute rows,
 * sorted) or, with cand NULL, every row of the page.  Returns 1 when the
 * frame is full.
 */
static int do_page(job *j, size_t b, int a, size_t pg, const uint32_t *cand, size_t nc)
{
    ot_delta_encoder *e = j->enc;
    oti_sblock *sb = &j->sh->blocks[b];
    uint32_t cols = sb->cols;
    uint64_t r0 = (uint64_t)pg << sb->shift;
    uint32_t prows = page_nrows(sb, pg);
    const float *L = parr(j->blk, a);
    const float *S = sb->pages[a][pg]->data;
    size_t n = cand != NULL ? nc : prows, k, nsel = 0, m, sz_s, sz_d, avail;
    uint32_t *sel = e->sel; /* absolute rows */
    float *vals = e->vals;  /* generic: values by candidate index; fast: differences by row */
    int bad = 0, layout, fast = 0, all = 0, tfast = 0;
    size_t tgaps = 0;
    uint64_t first, count;
    const float *v;

    /* 1. evaluate and select */
    if (cand == NULL && (cols == 1 || j->blk->dense_hint) && !j->topk) {
        /* a whole page of single values, or of a deep layer's rows (where
         * every value usually changes): vectorised passes over the page */
        const float *Lp = L + r0 * cols;
        size_t nv = n * cols;
        unsigned badv;
        size_t cnt = k_scan(Lp, S, vals, nv, &badv);
        if (!badv) {
            fast = 1;
            if (j->thr != 0.0f || j->rel != 0.0f)
                cnt = k_pass(vals, S, nv, j->thr, j->rel);
            if (cnt == nv) {
                all = 1;
                nsel = n;
            } else if (cols > 1) {
                fast = 0; /* some values stay: rows are judged one by one below */
            } else if (cnt > 0) {
                /* positions of the nonzero differences, then the thresholds */
                size_t nz = k_nonzero(vals, n, e->cidx), q;
                for (q = 0; q < nz; q++) {
                    uint32_t i = e->cidx[q];
                    float ad = fabsf(vals[i]);
                    if (ad >= j->thr && ad >= j->rel * fabsf(S[i]))
                        sel[nsel++] = (uint32_t)(r0 + i);
                    else
                        keep_row(j, r0 + i);
                }
            }
        }
    }
    if (cand != NULL && cols == 1 && !j->topk) {
        /* touched rows of single values: values compacted by selection.
         * What the loop reads again and again is kept in locals: stores to
         * sel and vals could alias the job's fields, and reading back the
         * last selected row from sel chained every row to the one before. */
        const float thr = j->thr, rel = j->rel;
        const int add = j->kind == OTI_KIND_ADD;
        oti_page *const *pages = sb->pages[a];
        const unsigned shift = sb->shift;
        const uint32_t *cend = j->cend;
        uint32_t prev = 0;
        tfast = 1;
        for (k = 0; k < n; k++) {
            uint32_t row = cand[k];
            float l, sv, d, ad;
#if defined(__GNUC__)
            /* rows far ahead, across page boundaries: the misses overlap */
            if (cand + k + PF_AHEAD < cend) {
                uint32_t r2 = cand[k + PF_AHEAD];
                __builtin_prefetch(L + r2);
                __builtin_prefetch(pages[r2 >> shift]->data + (r2 & ((UINT32_C(1) << shift) - 1)),
                                   1);
            }
#endif
            l = L[row];
            sv = S[row - r0];
            d = l - sv;
            ad = fabsf(d);
            if (!(ad <= FLT_MAX)) {
                tfast = 0; /* NaN, infinity or overflow: the careful path */
                nsel = 0;
                tgaps = 0;
                break;
            }
            if (d == 0.0f)
                continue;
            if (ad >= thr && ad >= rel * fabsf(sv)) {
                if (nsel > 0)
                    tgaps += oti_varint_len((uint64_t)row - prev);
                prev = row;
                sel[nsel] = row;
                vals[nsel] = add ? d : l;
                nsel++;
            } else {
                keep_row(j, row);
            }
        }
    }
    if (!fast && !tfast) {
        for (k = 0; k < n; k++) {
            uint64_t row = cand != NULL ? cand[k] : r0 + k;
            float mag = 0.0f; /* set by eval_row; the budget alone reads it */
            int nz, rc;
#if defined(__GNUC__)
            if (cand != NULL && k + 32 < n) {
                __builtin_prefetch(L + (uint64_t)cand[k + 32] * cols);
                __builtin_prefetch(S + (size_t)(cand[k + 32] - r0) * cols);
            }
#endif
            if (cols >= ROW_VEC_MIN && !j->topk)
                rc = eval_row_vec(j, L + row * cols, S + (size_t)(row - r0) * cols, cols,
                                  vals + k * cols, &nz);
            else
                rc = eval_row(j, L + row * cols, S + (size_t)(row - r0) * cols, cols,
                              vals + k * cols, &mag, &nz);
            if (rc < 0) {
                bad = 1;
                if (!j->dry)
                    e->nonfinite += cols;
                keep_row(j, row);
                continue;
            }
            if (rc > 0 && take(j, mag, cols)) {
                e->cidx[nsel] = (uint32_t)k;
                sel[nsel++] = (uint32_t)row;
            } else if (nz) {
                keep_row(j, row);
            }
        }
    }
    if (nsel == 0)
        return 0;

    /* 2. layout: the smaller of sparse and dense; the largest prefix that fits */
    avail = j->limit - j->used;
    m = nsel;
    if (all) {
        sz_d = hdr_size(b, cols, r0, m, j->venc) + m * cols * j->vb;
        sz_s = sz_d + 1; /* listing every row costs more than the range */
        if (sz_d > avail) {
            while (m > 0 && hdr_size(b, cols, r0, m, j->venc) + m * cols * j->vb > avail)
                m = m * cols * j->vb > avail ? avail / (cols * j->vb) : m - 1;
            for (k = m; k < nsel; k++)
                keep_row(j, r0 + k);
            j->stop = 1;
            if (m == 0)
                return 1;
            sz_d = hdr_size(b, cols, r0, m, j->venc) + m * cols * j->vb;
            sz_s = sz_d + 1;
        }
        first = r0;
        count = m;
    } else {
        if (tfast) {
            uint64_t span = (uint64_t)sel[m - 1] - sel[0] + 1;
            sz_s = hdr_size(b, cols, sel[0], m, j->venc) + tgaps + m * j->vb;
            sz_d = hdr_size(b, cols, sel[0], span, j->venc) + (size_t)span * j->vb;
        } else {
            sec_sizes(j, b, cols, sel, m, &sz_s, &sz_d);
        }
        if ((sz_s < sz_d ? sz_s : sz_d) > avail) {
            size_t gaps = 0;
            for (m = 0; m < nsel; m++) {
                uint64_t span = (uint64_t)sel[m] - sel[0] + 1;
                size_t s2, d2;
                if (m > 0)
                    gaps += oti_varint_len((uint64_t)sel[m] - sel[m - 1]);
                s2 = hdr_size(b, cols, sel[0], m + 1, j->venc) + gaps + (m + 1) * cols * j->vb;
                d2 = hdr_size(b, cols, sel[0], span, j->venc) + (size_t)span * cols * j->vb;
                if ((s2 < d2 ? s2 : d2) > avail)
                    break;
            }
            for (k = m; k < nsel; k++)
                keep_row(j, sel[k]);
            j->stop = 1;
            if (m == 0)
                return 1;
            sec_sizes(j, b, cols, sel, m, &sz_s, &sz_d);
        }
        first = sel[0];
        count = (uint64_t)sel[m - 1] - first + 1;
    }
    layout = (!bad && sz_d <= sz_s) ? OTI_LAYOUT_DENSE : OTI_LAYOUT_SPARSE;

    /* 3. the section's values */
    if (layout == OTI_LAYOUT_DENSE) {
        if (fast && j->kind != OTI_KIND_ADD) {
            v = L + first * cols; /* SET sends the model's values */
        } else if (cand == NULL) {
            v = vals + (size_t)(first - r0) * cols;
        } else {
            /* the range holds rows that were not candidates: evaluate them */
            uint64_t row;
            float *ov = e->outv;
            for (row = first; row < first + count && layout == OTI_LAYOUT_DENSE; row++) {
                float mag;
                int nz;
                if (eval_row(j, L + row * cols, S + (size_t)(row - r0) * cols, cols,
                             ov + (size_t)(row - first) * cols, &mag, &nz) < 0)
                    layout = OTI_LAYOUT_SPARSE;
            }
            v = ov;
        }
    }
    if (layout == OTI_LAYOUT_SPARSE && tfast) {
        count = m;
        v = vals;
    } else if (layout == OTI_LAYOUT_SPARSE) {
        float *ov = e->outv;
        count = m;
        if (fast) {
            const float *src = j->kind == OTI_KIND_ADD ? vals : L + r0;
            for (k = 0; k < m; k++)
                ov[k] = src[sel[k] - r0];
        } else if (cand == NULL && cols == 1) {
            for (k = 0; k < m; k++)
                ov[k] = vals[sel[k] - r0];
        } else if (cand == NULL) {
            for (k = 0; k < m; k++)
                memcpy(ov + k * cols, vals + (size_t)(sel[k] - r0) * cols, (size_t)cols * 4);
        } else if (cols == 1) {
            for (k = 0; k < m; k++)
                ov[k] = vals[e->cidx[k]];
        } else {
            for (k = 0; k < m; k++)
                memcpy(ov + k * cols, vals + (size_t)e->cidx[k] * cols, (size_t)cols * 4);
        }
        v = ov;
    }

    /* 4. write and advance */
    write_section(j, b, a, layout, sel, first, count, v,
                  layout == OTI_LAYOUT_DENSE ? sz_d : sz_s);
    return j->stop;
}

/* ---- passes ------------------------------------------------------------------------ */

/* Marks touched every row of the block outside [r0, r1) (rows of another
 * range, which a frame of this range must leave touched). */
static void touch_outside(oti_block *blk, uint64_t r0, uint64_t r1)
{
    uint64_t r;

    for (r = 0; r < r0; r++)
        oti_block_touch(blk, r);
    for (r = r1; r < blk->rows; r++)
        oti_block_touch(blk, r);
}

static void begin_block(job *j, size_t b)
{
    oti_block *blk = &j->p->blocks[b];
    const oti_bcand *bc = &j->enc->bc[b];
    int part = bc->r0 > 0 || bc->r1 < blk->rows; /* the range cuts the block */
    uint64_t i;

    j->blk = blk;
    if (blk->touched_bits == NULL || blk->touched_list == NULL)
        j->track = 0;
    else if (blk->all_touched && bc->all && !j->enc->scan_all && !part)
        j->track = 2;
    else
        j->track = 1;
    if (j->dry || j->track == 0)
        return;
    /* Clear the tracker's rows of the range; rows that keep a difference are
     * touched again.  Bit by bit costs O(touched); a plain clear is cheaper
     * when many are. */
    if (part) {
        uint64_t w0 = bc->r0 / 64, w1 = (bc->r1 + 63) / 64, span = bc->r1 - bc->r0;
        uint64_t *bits = blk->touched_bits;
        size_t k = 0;
        if (blk->ntouched * 8 >= w1 - w0) {
            /* many: the range's bits at once, then the list without its
             * rows, without branches (which rows are in it is random) */
            for (i = w0; i < w1; i++)
                bits[i] &= ~word_mask(i, bc->r0, bc->r1);
            for (i = 0; i < blk->ntouched; i++) {
                uint32_t r = blk->touched_list[i];
                blk->touched_list[k] = r;
                k += (uint64_t)r - bc->r0 >= span;
            }
        } else {
            for (i = 0; i < blk->ntouched; i++) {
                uint32_t r = blk->touched_list[i];
                if ((uint64_t)r - bc->r0 < span)
                    bits[r >> 6] &= ~(UINT64_C(1) << (r & 63));
                else
                    blk->touched_list[k++] = r;
            }
        }
        blk->ntouched = k;
        if (blk->all_touched) {
            /* every row of the other ranges stays to be scanned */
            blk->all_touched = 0;
            touch_outside(blk, bc->r0, bc->r1);
        }
        return;
    }
    if (blk->ntouched * 8 >= (blk->rows + 63) / 64) {
        memset(blk->touched_bits, 0, (size_t)((blk->rows + 63) / 64) * sizeof(uint64_t));
    } else {
        for (i = 0; i < blk->ntouched; i++) {
            uint32_t r = blk->touched_list[i];
            blk->touched_bits[r >> 6] &= ~(UINT64_C(1) << (r & 63));
        }
    }
    blk->ntouched = 0;
    blk->all_touched = 0;
}

/* The frame filled inside block b: everything not yet settled stays touched. */
static void abort_block(job *j, size_t b)
{
    const oti_bcand *bc = &j->enc->bc[b];
    size_t k;

    if (j->dry || j->track == 0)
        return;
    if (j->track == 2 || bc->all) {
        if (j->track == 2)
            j->blk->all_touched = 1;
        else
            for (k = 0; k < bc->n; k++)
                oti_block_touch(j->blk, bc->first + k);
        return;
    }
    for (k = 0; k < bc->n; k++)
        oti_block_touch(j->blk, j->enc->rows[bc->start + k]);
}

/* The first index in [lo, hi) of the sorted r whose value is at least v
 * (hi if none). */
static size_t lower_bound(const uint32_t *r, size_t lo, size_t hi, uint64_t v)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void pass_delta(job *j)
{
    ot_delta_encoder *e = j->enc;
    size_t b;

    for (b = 0; b < j->p->nblocks && !j->stop; b++) {
        const oti_bcand *bc = &e->bc[b];
        oti_sblock *sb = &j->sh->blocks[b];
        int a;
        if (bc->n == 0)
            continue;
        begin_block(j, b);
        for (a = 0; a < OTI_NARRAYS && !j->stop; a++) {
            if (!(sb->amask & (1u << a)))
                continue;
            if (bc->all) {
                uint64_t last = bc->first + bc->n;
                size_t pg;
                for (pg = (size_t)(bc->first >> sb->shift); pg << sb->shift < last; pg++) {
                    uint64_t p0 = (uint64_t)pg << sb->shift, p1 = p0 + page_nrows(sb, pg);
                    const uint32_t *cand = NULL;
                    size_t nc = 0;
                    if (p0 < bc->first || p1 > last) {
                        /* a page the range cuts: its rows of the range */
                        uint64_t r;
                        for (r = p0 > bc->first ? p0 : bc->first; r < p1 && r < last; r++)
                            e->edge[nc++] = (uint32_t)r;
                        cand = e->edge;
                        j->cend = cand + nc;
                    }
                    if (do_page(j, b, a, pg, cand, nc))
                        break;
                }
            } else {
                const uint32_t *r = e->rows + bc->start;
                size_t i = 0;
                j->cend = r + bc->n;
                while (i < bc->n) {
                    size_t pg = r[i] >> sb->shift;
                    size_t i2 = lower_bound(r, i + 1, bc->n, (uint64_t)(pg + 1) << sb->shift);
                    if (do_page(j, b, a, pg, r + i, i2 - i))
                        break;
                    i = i2;
                }
            }
        }
        if (j->stop)
            abort_block(j, b);
    }
}

/* Makes exclusive every page the real pass may write. */
static int unshare_delta(job *j)
{
    ot_delta_encoder *e = j->enc;
    size_t b;

    for (b = 0; b < j->p->nblocks; b++) {
        const oti_bcand *bc = &e->bc[b];
        oti_sblock *sb = &j->sh->blocks[b];
        int a;
        for (a = 0; a < OTI_NARRAYS; a++) {
            size_t i;
            if (!(sb->amask & (1u << a)) || bc->n == 0)
                continue;
            if (bc->all) {
                for (i = (size_t)(bc->first >> sb->shift); i << sb->shift < bc->first + bc->n; i++)
                    if (oti_shadow_unshare(j->sh, b, a, i) != 0)
                        return -1;
                continue;
            }
            /* the candidates are sorted: one look-up a page */
            for (i = 0; i < bc->n;) {
                const uint32_t *r = e->rows + bc->start;
                size_t pg = r[i] >> sb->shift;
                if (oti_shadow_unshare(j->sh, b, a, pg) != 0)
                    return -1;
                i = lower_bound(r, i + 1, bc->n, (uint64_t)(pg + 1) << sb->shift);
            }
        }
    }
    return 0;
}

/* Next array held by block b after a (OTI_NARRAYS if none). */
static int next_array(const oti_sblock *sb, int a)
{
    for (a = a + 1; a < OTI_NARRAYS; a++)
        if (sb->amask & (1u << a))
            return a;
    return OTI_NARRAYS;
}

/*
 * A full-update chunk from the cursor: dense sections of model values, one
 * per page (runs of finite rows when a page holds non-finite values).
 * touch_pages: make the pages exclusive instead of writing (pre-pass).
 */
static int pass_full(job *j, int touch_pages)
{
    ot_delta_encoder *e = j->enc;

    while (j->fb < j->p->nblocks) {
        oti_sblock *sb = &j->sh->blocks[j->fb];
        oti_block *blk = &j->p->blocks[j->fb];
        uint32_t cols = sb->cols;
        const float *L;
        uint64_t rlo, rhi;
        if (j->fa < 0 || !(sb->amask & (1u << j->fa))) {
            j->fa = next_array(sb, j->fa);
            if (j->fa >= OTI_NARRAYS) {
                j->fb++;
                j->fa = -1;
                j->frow = 0;
                continue;
            }
        }
        L = parr(blk, j->fa);
        j->blk = blk;
        j->track = 0;
        /* a shard's key range: only its rows */
        block_range(e, j->p, j->fb, &rlo, &rhi);
        if (j->frow < rlo)
            j->frow = rlo;
        if (j->frow >= rhi)
            j->frow = sb->rows;
        while (j->frow < sb->rows) {
            size_t pg = (size_t)(j->frow >> sb->shift);
            uint64_t end = ((uint64_t)pg << sb->shift) + page_nrows(sb, pg);
            uint64_t row = j->frow, run;
            if (rhi <= row) {
                j->frow = sb->rows;
                continue;
            }
            if (end > rhi)
                end = rhi;
            size_t avail, hs, fit;
            /* skip non-finite rows; a run of finite rows up to the page end */
            while (row < end) {
                uint32_t c;
                for (c = 0; c < cols; c++)
                    if (!finitef(L[row * cols + c]))
                        break;
                if (c == cols)
                    break;
                if (!j->dry && !touch_pages)
                    e->nonfinite += cols;
                row++;
            }
            j->frow = row;
            if (row == end)
                continue;
            run = row + 1;
            while (run < end) {
                uint32_t c;
                for (c = 0; c < cols; c++)
                    if (!finitef(L[run * cols + c]))
                        break;
                if (c < cols)
                    break;
                run++;
            }
            run -= row;
            avail = j->limit - j->used;
            hs = hdr_size(j->fb, cols, row, run, j->venc);
            if (hs + (size_t)run * cols * j->vb > avail) {
                fit = avail > hs ? (avail - hs) / ((size_t)cols * j->vb) : 0;
                if (fit == 0) {
                    j->stop = 1;
                    return 1;
                }
                /* fit was sized with the whole run's count varint; a shorter
                 * count may leave room for more rows.  Take the most that
                 * fit, so the real pass (limited to the dry pass's size)
                 * cuts at the same row as the dry pass. */
                while (fit + 1 < run && hdr_size(j->fb, cols, row, fit + 1, j->venc) +
                                                (size_t)(fit + 1) * cols * j->vb <=
                                            avail)
                    fit++;
                run = fit;
                hs = hdr_size(j->fb, cols, row, run, j->venc);
                if (hs + (size_t)run * cols * j->vb > avail)
                    run--; /* the count's varint got shorter: never longer */
                if (run == 0) {
                    j->stop = 1;
                    return 1;
                }
                hs = hdr_size(j->fb, cols, row, run, j->venc);
            }
            if (touch_pages) {
                if (oti_shadow_unshare(j->sh, j->fb, j->fa, pg) != 0)
                    return -1;
                j->used += hs + (size_t)run * cols * j->vb;
            } else {
                write_section(j, j->fb, j->fa, OTI_LAYOUT_DENSE, NULL, row, run, L + row * cols,
                              hs + (size_t)run * cols * j->vb);
            }
            j->frow = row + run;
        }
        j->fa = next_array(sb, j->fa);
        j->frow = 0;
        if (j->fa >= OTI_NARRAYS) {
            j->fb++;
            j->fa = -1;
        }
    }
    j->fdone = 1;
    return 0;
}

/* ---- bound ------------------------------------------------------------------------- */

static uint64_t sat_add_u64(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul_u64(uint64_t a, uint64_t b)
{
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

size_t oti_delta_encode_bound(const ot_delta_encoder *enc, const oti_params *p, int full)
{
    uint64_t sz = OTI_HEADER_SIZE, vb;
    size_t b;

    if (enc == NULL || p == NULL)
        return 0;
    vb = oti_enc_size(enc->encoding);
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        uint64_t nc, npages, rpp = 1, per;
        uint64_t want = blk->cols > 0 && blk->cols < OTI_PAGE_FLOATS ? OTI_PAGE_FLOATS / blk->cols : 1;
        while (rpp * 2 <= want)
            rpp *= 2;
        npages = (blk->rows + rpp - 1) / rpp;
        if (full || enc->scan_all || blk->touched_bits == NULL || blk->all_touched)
            nc = blk->rows;
        else
            nc = blk->ntouched < blk->rows ? blk->ntouched : blk->rows;
        per = sat_add_u64(sat_mul_u64(nc, sat_add_u64(sat_mul_u64(blk->cols, vb), 5)),
                          sat_mul_u64(nc < npages ? nc : npages, SEC_HDR_MAX));
        if (full)
            per = sat_add_u64(per, sat_mul_u64(nc, SEC_HDR_MAX)); /* runs split by bad rows */
        sz = sat_add_u64(sz, sat_mul_u64(per, (uint64_t)(1 + blk->nstate)));
    }
    if (sz > enc->max_message)
        sz = enc->max_message;
    return (size_t)sz;
}

/* ---- top level ----------------------------------------------------------------------- */

static ot_status prepare_scratch(ot_delta_encoder *e, const oti_shadow *sh)
{
    size_t b, maxf = 1, maxr = 1;

    for (b = 0; b < sh->nblocks; b++) {
        const oti_sblock *sb = &sh->blocks[b];
        uint64_t rpp = UINT64_C(1) << sb->shift;
        if (rpp > sb->rows)
            rpp = sb->rows;
        if (rpp * sb->cols > maxf)
            maxf = (size_t)(rpp * sb->cols);
        if (rpp > maxr)
            maxr = (size_t)rpp;
    }
    if (GROW(e, vals, maxf) != 0 || GROW(e, outv, maxf) != 0 || GROW(e, deq, maxf) != 0 ||
        GROW(e, sel, maxr) != 0 || GROW(e, cidx, maxr) != 0 ||
        (e->range_hi != 0 && GROW(e, edge, maxr) != 0))
        return OT_ENOMEM;
    return OT_OK;
}

static void job_init(job *j, ot_delta_encoder *e, oti_params *p, oti_shadow *sh, int kind)
{
    memset(j, 0, sizeof(*j));
    j->enc = e;
    j->p = p;
    j->sh = sh;
    j->kind = kind;
    j->venc = e->encoding;
    j->vb = oti_enc_size(e->encoding);
    j->thr = e->threshold;
    j->rel = e->threshold_rel;
    j->fa = -1;
    if (kind == OTI_KIND_FULL && e->full_active) {
        j->fb = e->full_block;
        j->fa = e->full_array;
        j->frow = e->full_row;
    }
}

static ot_status run_encode(ot_delta_encoder *e, oti_params *p, oti_shadow *sh, int kind,
                            uint8_t *dst, size_t cap, size_t *len, int *more)
{
    job j, saved;
    size_t bound, limit_mm;
    ot_status st;
    unsigned flags = OTI_FLAG_FIRST | OTI_FLAG_LAST;

    if (e == NULL)
        return OT_EINVAL;
    e->errmsg[0] = '\0';
    if (p == NULL || sh == NULL || len == NULL || (dst == NULL && cap > 0))
        return oti_err(e->errmsg, OT_EINVAL, "NULL argument");
    if (!oti_shadow_matches(sh, p))
        return oti_err(e->errmsg, OT_EMISMATCH,
                       "the snapshot was taken from a model of another shape");
    if ((st = prepare_scratch(e, sh)) != OT_OK)
        return oti_err(e->errmsg, st, "out of memory for scratch buffers");
    limit_mm = e->max_message - OTI_HEADER_SIZE;

    job_init(&j, e, p, sh, kind);
    if (kind != OTI_KIND_FULL) {
        if ((st = gather(e, p)) != OT_OK || (st = topk_prepare(&j)) != OT_OK)
            return oti_err(e->errmsg, st, "out of memory for candidate rows");
    }
    saved = j;

    /* Size first when the buffer may be too small (and always for a full
     * chunk, whose extent decides which pages to unshare). */
    bound = oti_delta_encode_bound(e, p, kind == OTI_KIND_FULL);
    if ((cap < bound && !e->exact_cap) || kind == OTI_KIND_FULL) {
        j.dry = 1;
        j.limit = limit_mm;
        if (kind == OTI_KIND_FULL) {
            if (pass_full(&j, 1) < 0)
                return oti_err(e->errmsg, OT_ENOMEM, "out of memory copying snapshot pages");
        } else {
            pass_delta(&j);
        }
        if (OTI_HEADER_SIZE + j.used > cap) {
            *len = OTI_HEADER_SIZE + j.used;
            return oti_err(e->errmsg, OT_ENOSPC, "the frame needs %zu bytes, the buffer has %zu",
                           *len, cap);
        }
        if (j.used == 0 && j.stop)
            return oti_err(e->errmsg, OT_ETOOBIG, "one row alone exceeds max_message (%zu)",
                           e->max_message);
    }
    j = saved;
    if (kind != OTI_KIND_FULL && unshare_delta(&j) != 0)
        return oti_err(e->errmsg, OT_ENOMEM, "out of memory copying snapshot pages");

    /* The real pass: cannot fail from here on. */
    j.out = dst + OTI_HEADER_SIZE;
    j.limit = (cap - OTI_HEADER_SIZE) < limit_mm ? cap - OTI_HEADER_SIZE : limit_mm;
    /* Frames far larger than the caches go around them. */
    j.nt = j.limit >= e->nt_min && bound >= e->nt_min;
    e->nonfinite = 0;
    if (kind == OTI_KIND_FULL) {
        if (e->full_active)
            flags &= ~OTI_FLAG_FIRST;
        pass_full(&j, 0);
        if (j.used == 0 && j.stop)
            return oti_err(e->errmsg, OT_ETOOBIG, "one row alone exceeds max_message (%zu)",
                           e->max_message);
        if (!j.fdone)
            flags &= ~OTI_FLAG_LAST;
        if (j.fdone) {
            e->full_active = 0;
        } else {
            e->full_active = 1;
            e->full_block = j.fb;
            e->full_array = j.fa;
            e->full_row = j.frow;
        }
        if (more != NULL)
            *more = !j.fdone;
    } else {
        pass_delta(&j);
        if (j.used == 0 && j.stop)
            return oti_err(e->errmsg, OT_ETOOBIG, "one row alone exceeds max_message (%zu)",
                           e->max_message);
        if (more != NULL)
            *more = j.stop;
    }
    oti_frame_header(e, dst, kind, flags, p->fingerprint);
    frame_finish_crc(dst, (uint32_t)j.entries, j.used, j.pcrc);
    if (j.nt)
        store_fence();
    *len = OTI_HEADER_SIZE + j.used;
    e->seq++;
    return OT_OK;
}

ot_status oti_delta_encode_add(ot_delta_encoder *enc, oti_params *p, oti_shadow *sh, uint8_t *dst,
                               size_t cap, size_t *len, int *more)
{
    return run_encode(enc, p, sh, OTI_KIND_ADD, dst, cap, len, more);
}

ot_status oti_delta_encode_set(ot_delta_encoder *enc, oti_params *p, oti_shadow *sh, int full,
                               uint8_t *dst, size_t cap, size_t *len, int *more)
{
    return run_encode(enc, p, sh, full ? OTI_KIND_FULL : OTI_KIND_SET, dst, cap, len, more);
}

void oti_delta_encoder_range(ot_delta_encoder *enc, uint64_t lo, uint64_t hi)
{
    if (enc != NULL) {
        enc->range_lo = hi != 0 ? lo : 0;
        enc->range_hi = hi;
    }
}

void oti_delta_encoder_scan_all(ot_delta_encoder *enc, int on)
{
    if (enc != NULL)
        enc->scan_all = on != 0;
}
