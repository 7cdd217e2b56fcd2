/*
 * hash.c - MurmurHash3 (x86_32) for feature hashing and CRC32C for checksums.
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define OTI_HAVE_SSE42_DISPATCH 1
#endif

static inline uint32_t rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

uint32_t oti_murmur3(const void *data, size_t len, uint32_t seed)
{
    const uint8_t *p = data;
    const uint32_t c1 = 0xcc9e2d51u, c2 = 0x1b873593u;
    uint32_t h = seed, k;
    size_t i, nblocks = len / 4;

    for (i = 0; i < nblocks; i++) {
        memcpy(&k, p + 4 * i, 4); /* little-endian hosts; see docs/formats.md */
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
        h = rotl32(h, 13);
        h = h * 5 + 0xe6546b64u;
    }
    p += 4 * nblocks;
    k = 0;
    switch (len & 3) {
    case 3: k ^= (uint32_t)p[2] << 16; /* fall through */
    case 2: k ^= (uint32_t)p[1] << 8;  /* fall through */
    case 1:
        k ^= p[0];
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
    }
    h ^= (uint32_t)len;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

uint32_t ot_hash(const void *data, size_t len, uint32_t seed)
{
    if (data == NULL)
        len = 0;
    return oti_murmur3(data != NULL ? data : "", len, seed);
}

/* ---- CRC32C ------------------------------------------------------------
 *
 * One implementation for every checksum of the library (delta frames, WAL
 * records, checkpoints, model files).  Three ways to run the register
 * update, all giving the same result (tests compare them):
 *
 *  - table driven, eight bytes a step (any processor);
 *  - the SSE4.2 crc32 instruction, when the processor has it (checked at
 *    run time), one stream;
 *  - the same instruction on four independent streams for long buffers.
 *    crc32 has a latency of three cycles and a throughput of one a cycle,
 *    so one serial stream runs at a third of the possible speed.  Cutting
 *    4K bytes into four K-byte parts A, B, C, D and running them
 *    independently gives the same register: with u(s, X) the raw update,
 *    u(s, ABCD) = z(z(z(u(s, A)) ^ u(0, B)) ^ u(0, C)) ^ u(0, D), where z
 *    shifts a register over K zero bytes, a linear map applied with four
 *    256-entry tables built once.
 *
 * The raw register (no pre- or post-inversion) of A B is linear in its
 * parts, so the CRC of a concatenation follows from the CRCs of the parts
 * and the second part's length (oti_crc32c_combine), which the delta
 * encoder uses to checksum a frame while writing it.
 */

#define CRC_POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t crc_table[8][256];
static int crc_table_ready;

static void crc_init(void)
{
    uint32_t i, j, c;

    for (i = 0; i < 256; i++) {
        c = i;
        for (j = 0; j < 8; j++)
            c = (c & 1) ? (c >> 1) ^ CRC_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (i = 0; i < 256; i++) {
        c = crc_table[0][i];
        for (j = 1; j < 8; j++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[j][i] = c;
        }
    }
    __atomic_store_n(&crc_table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t len)
{
    /* The table is a pure function of constants: building it twice from two
     * threads writes the same values, so no lock is needed. */
    if (!__atomic_load_n(&crc_table_ready, __ATOMIC_ACQUIRE))
        crc_init();
    while (len >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
              crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#ifdef OTI_HAVE_SSE42_DISPATCH
#define CRC_K 1024u        /* bytes per stream and round */
#define CRC_STREAMS 4u

static uint32_t crc_shift[4][256]; /* z: the register over CRC_K zero bytes */
static int crc_shift_ready;

__attribute__((target("sse4.2"))) static uint32_t crc_hw1(uint32_t c, const uint8_t *p, size_t len)
{
    uint64_t x = c;

    for (; len >= 8; len -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        x = _mm_crc32_u64(x, v);
    }
    for (; len > 0; len--)
        x = _mm_crc32_u8((uint32_t)x, *p++);
    return (uint32_t)x;
}

static void crc_shift_init(void)
{
    static const uint8_t zeros[CRC_K];
    uint32_t basis[32];
    int i, v, bit;

    for (bit = 0; bit < 32; bit++)
        basis[bit] = crc_hw1(1u << bit, zeros, CRC_K);
    for (i = 0; i < 4; i++) {
        for (v = 0; v < 256; v++) {
            uint32_t r = 0;
            for (bit = 0; bit < 8; bit++)
                if (v & (1 << bit))
                    r ^= basis[8 * i + bit];
            crc_shift[i][v] = r;
        }
    }
    /* a pure function of constants, like crc_table */
    __atomic_store_n(&crc_shift_ready, 1, __ATOMIC_RELEASE);
}

static inline uint32_t crc_shift_k(uint32_t c)
{
    return crc_shift[0][c & 0xff] ^ crc_shift[1][(c >> 8) & 0xff] ^
           crc_shift[2][(c >> 16) & 0xff] ^ crc_shift[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
    if (len >= CRC_STREAMS * CRC_K && !__atomic_load_n(&crc_shift_ready, __ATOMIC_ACQUIRE))
        crc_shift_init();
    for (; len >= CRC_STREAMS * CRC_K; len -= CRC_STREAMS * CRC_K, p += CRC_STREAMS * CRC_K) {
        uint64_t a = c, b = 0, d = 0, e = 0, va, vb, vd, ve;
        size_t i;
        for (i = 0; i < CRC_K; i += 8) {
            memcpy(&va, p + i, 8);
            memcpy(&vb, p + CRC_K + i, 8);
            memcpy(&vd, p + 2 * CRC_K + i, 8);
            memcpy(&ve, p + 3 * CRC_K + i, 8);
            a = _mm_crc32_u64(a, va);
            b = _mm_crc32_u64(b, vb);
            d = _mm_crc32_u64(d, vd);
            e = _mm_crc32_u64(e, ve);
        }
        c = crc_shift_k(crc_shift_k(crc_shift_k((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d) ^
            (uint32_t)e;
    }
    return crc_hw1(c, p, len);
}
#endif

/* The raw register update over len bytes (no inversions). */
static uint32_t crc_raw(uint32_t c, const uint8_t *p, size_t len)
{
#ifdef OTI_HAVE_SSE42_DISPATCH
    if (__builtin_cpu_supports("sse4.2"))
        return crc_hw(c, p, len);
#endif
    return crc_soft(c, p, len);
}

uint32_t oti_crc32c(uint32_t crc, const void *data, size_t len)
{
    return ~crc_raw(~crc, data, len);
}

uint32_t oti_crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    return ~crc_soft(~crc, data, len);
}

/*
 * Shifting a register over n zero bytes is a linear map over GF(2): the
 * n-th power of the one-zero-bit map, by repeated squaring (32x32 bit
 * matrices as 32 column words).  O(log n).
 */
static uint32_t gf2_apply(const uint32_t *mat, uint32_t v)
{
    uint32_t r = 0;
    int i;

    for (i = 0; v != 0; i++, v >>= 1)
        if (v & 1u)
            r ^= mat[i];
    return r;
}

static void gf2_square(uint32_t *dst, const uint32_t *mat)
{
    int i;

    for (i = 0; i < 32; i++)
        dst[i] = gf2_apply(mat, mat[i]);
}

uint32_t oti_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2)
{
    uint32_t a[32], b[32];
    int i;

    if (len2 == 0 || crc1 == 0)
        return crc1 ^ crc2;
    /* one zero bit */
    a[0] = CRC_POLY;
    for (i = 1; i < 32; i++)
        a[i] = 1u << (i - 1);
    gf2_square(b, a); /* two bits */
    gf2_square(a, b); /* four */
    gf2_square(b, a); /* eight: one zero byte, in b */
    for (;;) {
        if (len2 & 1u)
            crc1 = gf2_apply(b, crc1);
        len2 >>= 1;
        if (len2 == 0)
            break;
        gf2_square(a, b);
        memcpy(b, a, sizeof(a));
    }
    return crc1 ^ crc2;
}
