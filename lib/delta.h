/*
 * delta.h - snapshots, the delta encoder and decoder (internal).
 *
 * Everything here works on the oti_params view of lib/params.h, so it does
 * not depend on how lib/model.c stores a model.  Frames are documented byte
 * by byte in docs/wire-format.md.
 *
 * Shadows and snapshots.  An oti_shadow is a mutable copy of some arrays of
 * a params view (weights, state or both), stored in pages of rows that are
 * shared by reference count: publishing an immutable ot_snapshot from a
 * shadow shares every page (O(pages), no copy), and the shadow copies a page
 * the first time it writes to one that is shared (copy on write).  An
 * ot_snapshot is an oti_shadow body behind an atomic reference count.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_DELTA_H
#define OT_DELTA_H

#include <stdatomic.h>

#include "internal.h"
#include "params.h"

/* ---- wire constants (docs/wire-format.md) -------------------------------- */

#define OTI_FRAME_MAGIC0 'O'
#define OTI_FRAME_MAGIC1 'T'
#define OTI_FRAME_MAGIC2 'D'
#define OTI_FRAME_MAGIC3 'F'
#define OTI_FRAME_MAJOR 1
#define OTI_FRAME_MINOR 0
#define OTI_HEADER_SIZE 64

/* header field offsets */
#define OTI_H_MAGIC 0
#define OTI_H_MAJOR 4
#define OTI_H_MINOR 5
#define OTI_H_KIND 6
#define OTI_H_FLAGS 7
#define OTI_H_HLEN 8
#define OTI_H_RESERVED 10
#define OTI_H_SHARD 12
#define OTI_H_FINGERPRINT 16
#define OTI_H_SEQUENCE 24
#define OTI_H_BASE_VERSION 32
#define OTI_H_NEW_VERSION 40
#define OTI_H_SENDER 48
#define OTI_H_ENTRIES 52
#define OTI_H_PAYLOAD 56
#define OTI_H_CHECKSUM 60

#define OTI_FLAG_FIRST 0x01u
#define OTI_FLAG_LAST 0x02u
#define OTI_FLAGS_KNOWN 0x03u

/* value encodings (the order of the value_encoding option's words) */
enum { OTI_ENC_FP32 = 0, OTI_ENC_FP16 = 1, OTI_ENC_BF16 = 2, OTI_ENC_INT8 = 3 };
/* section layouts */
enum { OTI_LAYOUT_SPARSE = 0, OTI_LAYOUT_DENSE = 1 };
/* delta sources (the order of the delta_source option's words) */
enum { OTI_SRC_WEIGHTS = 0, OTI_SRC_STATE = 1, OTI_SRC_BOTH = 2 };

/* arrays: 0 weights, 1 state 0, 2 state 1 */
#define OTI_NARRAYS 3

/* Bytes per value of an encoding (1, 2 or 4). */
size_t oti_enc_size(int enc);

/* Which arrays of a block a source selects (bit a = array a). */
unsigned oti_source_mask(int source, int nstate);

/* ---- little-endian and varint helpers ---------------------------------- */

static inline void oti_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void oti_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void oti_put64(uint8_t *p, uint64_t v)
{
    oti_put32(p, (uint32_t)v);
    oti_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t oti_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t oti_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t oti_get64(const uint8_t *p)
{
    return (uint64_t)oti_get32(p) | ((uint64_t)oti_get32(p + 4) << 32);
}

/* Number of bytes of the LEB128 varint of v (1..10); no branches, since
 * row gaps of one and two bytes come in no predictable order. */
static inline size_t oti_varint_len(uint64_t v)
{
    return 1 + (size_t)(v >> 7 != 0) + (size_t)(v >> 14 != 0) + (size_t)(v >> 21 != 0) +
           (size_t)(v >> 28 != 0) + (size_t)(v >> 35 != 0) + (size_t)(v >> 42 != 0) +
           (size_t)(v >> 49 != 0) + (size_t)(v >> 56 != 0) + (size_t)(v >> 63 != 0);
}

/* Writes v as an LEB128 varint; returns the byte after it. */
static inline uint8_t *oti_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/*
 * Writes a row gap as a varint, one or two bytes without a branch on which.
 * May write the byte after a one-byte varint: only for gaps that values
 * follow (a sparse section's), whose space it then takes first.
 */
static inline uint8_t *oti_put_gap(uint8_t *p, uint64_t v)
{
    if (v < 16384) {
        uint32_t two = v >= 128;
        p[0] = (uint8_t)(v | (two << 7));
        p[1] = (uint8_t)(v >> 7);
        return p + 1 + two;
    }
    return oti_put_varint(p, v);
}

/*
 * Reads a varint from [*pp, end): at most 10 bytes, the last within 64 bits,
 * no redundant trailing zero groups (one encoding per value).  Returns 0 and
 * advances *pp, or -1 for truncated or malformed input.
 */
static inline int oti_get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    unsigned shift = 0;

    if (p < end && *p < 0x80) { /* fast path: one byte */
        *out = *p;
        *pp = p + 1;
        return 0;
    }
    for (;;) {
        uint8_t b;
        if (p >= end || shift > 63)
            return -1;
        b = *p++;
        if (shift == 63 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift > 0)
                return -1; /* overlong */
            break;
        }
        shift += 7;
    }
    *out = v;
    *pp = p;
    return 0;
}

/*
 * Row gaps are mostly one or two bytes, in no predictable order, so a
 * branch on the length mispredicts often.  These read one or two bytes
 * without a branch on which; longer varints go to the general code.
 */

/* Reads a varint of a frame that already validated (no checks). */
static inline uint64_t oti_varint_validated(const uint8_t **pp)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    unsigned shift = 0;

    while (*p & 0x80) {
        v |= (uint64_t)(*p++ & 0x7f) << shift;
        shift += 7;
    }
    v |= (uint64_t)*p++ << shift;
    *pp = p;
    return v;
}

/* A row gap of a frame that already validated (p[1] is always readable:
 * a section's values follow its gaps). */
static inline uint64_t oti_gap_validated(const uint8_t **pp)
{
    const uint8_t *p = *pp;
    uint32_t b0 = p[0], b1 = p[1], two = b0 >> 7;

    if (((b0 & b1) & 0x80u) == 0) {
        *pp = p + 1 + two;
        return (b0 & 0x7fu) | ((b1 << 7) & (0u - two));
    }
    return oti_varint_validated(pp);
}

/*
 * Reads a row gap from [*pp, end) with the checks of oti_get_varint plus
 * gap != 0; problems are or-ed into *bad (non-zero: refuse the frame)
 * instead of returned, so the common path has no unpredictable branch.
 */
static inline uint64_t oti_gap_checked(const uint8_t **pp, const uint8_t *end, unsigned *bad)
{
    const uint8_t *p = *pp;
    uint64_t v;

    if (end - p >= 2 && ((p[0] & p[1]) & 0x80u) == 0) {
        uint32_t b0 = p[0], b1 = p[1], two = b0 >> 7;
        v = (b0 & 0x7fu) | ((b1 << 7) & (0u - two));
        *bad |= (unsigned)(v == 0) | (two & (unsigned)(b1 == 0)); /* zero, overlong */
        *pp = p + 1 + two;
        return v;
    }
    if (oti_get_varint(pp, end, &v) != 0 || v == 0) {
        *bad |= 1u;
        *pp = end;
        return 1;
    }
    return v;
}

/* ---- quantisation (quant.c) ------------------------------------------- */

/* fp16 and bf16 codes from a finite float: round to nearest even, clamped to
 * the largest finite code (never infinity). */
uint16_t oti_f32_to_f16(float f);
uint16_t oti_f32_to_bf16(float f);
float oti_f16_to_f32(uint16_t h);
float oti_bf16_to_f32(uint16_t h);
/* Stochastic rounding: rounds away from zero with probability equal to the
 * distance to the lower-magnitude neighbour over the gap; u in [0, 1). */
uint16_t oti_f32_to_f16_sr(float f, uint32_t rnd);
uint16_t oti_f32_to_bf16_sr(float f, uint32_t rnd);

/* Per-section int8 scale for a largest magnitude (finite, >= 0): 127 * scale
 * is finite and >= maxabs, so |q| <= 127. */
float oti_int8_scale(float maxabs);

/* A small seeded generator (xoshiro128** seeded through splitmix64). */
typedef struct oti_rng {
    uint32_t s[4];
} oti_rng;

void oti_rng_seed(oti_rng *r, uint64_t seed);
uint32_t oti_rng_next(oti_rng *r);

/* Encodes n values into dst with encoding enc (int8 uses scale); writes the
 * decoded (dequantised) values to deq.  rng NULL: round to nearest. */
void oti_quantize(int enc, const float *v, size_t n, float scale, oti_rng *rng, uint8_t *dst,
                  float *deq);
/* Decodes n values of encoding enc (int8 with scale). */
void oti_dequantize(int enc, const uint8_t *src, size_t n, float scale, float *out);

/* ---- pages, shadows and snapshots (snapshot.c) --------------------------- */

typedef struct oti_page {
    atomic_uint refs;
    uint32_t nfloats;  /* data length */
    uint64_t pad;      /* keeps data 16-byte aligned */
    float data[];
} oti_page;

typedef struct oti_sblock {
    int kind;
    char name[32];
    uint64_t offset;
    uint64_t rows;
    uint32_t cols;
    int nstate;            /* state arrays the params block has */
    unsigned amask;        /* arrays this shadow holds (bit a) */
    unsigned shift;        /* rows per page = 1 << shift */
    size_t npages;
    oti_page **pages[OTI_NARRAYS]; /* NULL for arrays not held */
} oti_sblock;

typedef struct oti_shadow {
    oti_alloc alloc;
    uint64_t fingerprint;
    uint64_t total;
    uint64_t version;
    int source;
    size_t nblocks;
    oti_sblock *blocks;
} oti_shadow;

struct ot_snapshot {
    atomic_uint refs;
    oti_shadow body;
};

/* Rows per page are chosen so a page holds about this many floats. */
#define OTI_PAGE_FLOATS 4096u

/* A full copy of the arrays `source` selects from p. */
ot_status oti_shadow_create(const oti_alloc *a, const oti_params *p, int source, uint64_t version,
                            oti_shadow **out);
/* A mutable shadow sharing the snapshot's pages (O(pages)). */
ot_status oti_shadow_from_snapshot(const ot_snapshot *s, oti_shadow **out);
/* Deep-copies the page tables of src (sharing pages) into a new shadow. */
ot_status oti_shadow_clone(const oti_shadow *src, oti_shadow **out);
void oti_shadow_destroy(oti_shadow *sh);
/* An immutable snapshot sharing the shadow's pages; the shadow stays usable
 * and copies a page before its next write to it. */
ot_status oti_shadow_publish(const oti_shadow *sh, uint64_t version, ot_snapshot **out);
/* A snapshot the caller may modify: s itself when the caller holds the only
 * reference, else a new snapshot sharing s's pages.  After the change,
 * oti_snapshot_commit(&slot, w, status) keeps w in *slot on success (and
 * releases the old one) or drops w on failure. */
ot_status oti_snapshot_writable(ot_snapshot *s, ot_snapshot **w);
void oti_snapshot_commit(ot_snapshot **slot, ot_snapshot *w, ot_status st);
/* In a snapshot forked from another (pages shared), replaces every page that
 * holds a row p marks touched with a copy of p's rows. */
ot_status oti_snapshot_refresh(ot_snapshot *s, const oti_params *p);
/* Wraps a shadow into a snapshot (takes ownership of the shadow's body on
 * success; the shadow struct is freed). */
ot_status oti_shadow_into_snapshot(oti_shadow *sh, ot_snapshot **out);

/* Whether the shadow's shape (fingerprint and blocks) matches p. */
int oti_shadow_matches(const oti_shadow *sh, const oti_params *p);

/* Row access: the row's first value, NULL if the array is not held. */
static inline const float *oti_shadow_row(const oti_shadow *sh, size_t b, int a, uint64_t row)
{
    const oti_sblock *sb = &sh->blocks[b];
    const oti_page *pg;

    if (sb->pages[a] == NULL)
        return NULL;
    pg = sb->pages[a][row >> sb->shift];
    return pg->data + (size_t)(row & ((UINT64_C(1) << sb->shift) - 1)) * sb->cols;
}

/* Makes page `pg` of (b, a) exclusive (copies it if shared): 0, or -1 ENOMEM. */
int oti_shadow_unshare(oti_shadow *sh, size_t b, int a, size_t pg);
/* Makes the pages holding rows [first, last] of (b, a) exclusive. */
int oti_shadow_unshare_rows(oti_shadow *sh, size_t b, int a, uint64_t first, uint64_t last);

/* Writable row; the page must already be exclusive (oti_shadow_unshare). */
static inline float *oti_shadow_row_w(oti_shadow *sh, size_t b, int a, uint64_t row)
{
    oti_sblock *sb = &sh->blocks[b];
    oti_page *pg = sb->pages[a][row >> sb->shift];

    return pg->data + (size_t)(row & ((UINT64_C(1) << sb->shift) - 1)) * sb->cols;
}

/* Copies n values of array a from flat index first. OT_ENOENT, OT_ERANGE. */
ot_status oti_shadow_read(const oti_shadow *sh, int a, uint64_t first, size_t n, float *out);

/* ---- encoder (delta_enc.c) --------------------------------------------- */

/* Frame kinds (the public OT_DELTA_* values). */
enum { OTI_KIND_ADD = 1, OTI_KIND_SET = 2, OTI_KIND_FULL = 3, OTI_KIND_CONTROL = 4 };

/* Candidate rows of one block during an encode. */
typedef struct oti_bcand {
    size_t start, n; /* rows[start .. start+n) when !all */
    int all;         /* every row of the range (no tracking, all_touched, or scan_all):
                      * rows first .. first+n */
    uint64_t first;
    uint64_t r0, r1; /* the block's rows in the encoder's range */
} oti_bcand;

/* Encoder internals shared with the merge code. */
struct ot_delta_encoder {
    oti_alloc alloc;
    int source;
    float threshold, threshold_rel;
    uint64_t max_entries;
    int encoding;
    int stochastic;
    oti_rng rng;
    size_t max_message;
    int scan_all;           /* ignore touched tracking (benchmarks, tests) */
    int exact_cap;          /* the caller's cap is the size a dry pass just found */
    size_t nt_min;          /* frames at least this large bypass the caches (32 MiB) */
    uint32_t shard, sender;
    uint64_t seq, base_version, new_version;
    uint64_t nonfinite;     /* values held back as non-finite by the last call */
    /* frames carry only the rows whose first index lies in
     * [range_lo, range_hi) (a shard's key range); range_hi 0: every row */
    uint64_t range_lo, range_hi;
    /* full-update cursor */
    int full_active;
    size_t full_block;
    int full_array;
    uint64_t full_row;
    /* scratch */
    oti_bcand *bc;    size_t bc_cap;
    uint32_t *rows;   size_t rows_cap;   /* candidate rows of all blocks */
    uint32_t *tmp;    size_t tmp_cap;    /* radix-sort buffer */
    uint32_t *sel;    size_t sel_cap;    /* selected rows of a page */
    uint32_t *cidx;   size_t cidx_cap;   /* their candidate indices */
    uint32_t *keep;   size_t keep_cap;   /* rows to leave touched */
    float *vals;      size_t vals_cap;   /* a page's values */
    float *outv;      size_t outv_cap;   /* a section's values */
    float *deq;       size_t deq_cap;    /* a section's decoded values */
    uint32_t *edge;   size_t edge_cap;   /* rows of a page the range cuts */
    float *mags;      size_t mags_cap;   /* top-k magnitudes */
    uint32_t *wts;    size_t wts_cap;    /* top-k weights (cols) */
    char errmsg[OTI_ERRMSG_LEN];
};

/*
 * Encodes one ADD frame of local - shadow into dst (cap bytes) and advances
 * the shadow by the decoded values.  *more is set when selected rows did not
 * fit under max_message (they stay touched).  OT_ENOSPC: *len receives the
 * size needed and nothing changes.
 */
ot_status oti_delta_encode_add(ot_delta_encoder *enc, oti_params *p, oti_shadow *sh, uint8_t *dst,
                               size_t cap, size_t *len, int *more);
/* One SET frame (real-time, full = 0) or the next FULL chunk (full = 1). */
ot_status oti_delta_encode_set(ot_delta_encoder *enc, oti_params *p, oti_shadow *sh, int full,
                               uint8_t *dst, size_t cap, size_t *len, int *more);
/* An upper bound of the next frame's size (never above max_message + header). */
size_t oti_delta_encode_bound(const ot_delta_encoder *enc, const oti_params *p, int full);
/* Frame header writer (checksum added by oti_frame_finish). */
void oti_frame_header(const ot_delta_encoder *enc, uint8_t *dst, int kind, unsigned flags,
                      uint64_t fingerprint);
void oti_frame_finish(uint8_t *frame, uint32_t entries, size_t payload_len);
/* Ignore touched tracking and scan every row (for benchmarks and tests). */
void oti_delta_encoder_scan_all(ot_delta_encoder *enc, int on);
/* Limits the frames that follow (ADD, SET and FULL chunks) to the rows whose
 * first flat index lies in [lo, hi) (a shard's key range); hi 0: every row
 * (the default).  An ADD or SET frame leaves the rows outside the range
 * touched, for a later frame of their own range. */
void oti_delta_encoder_range(ot_delta_encoder *enc, uint64_t lo, uint64_t hi);

/* ---- decoder (delta_dec.c) --------------------------------------------- */

/* The shape a frame is checked against: a params view or a shadow. */
typedef struct oti_tblock {
    uint64_t offset, rows;
    uint32_t cols;
    unsigned amask; /* arrays present */
} oti_tblock;

struct oti_dsec; /* a parsed section (delta_dec.c) */

struct ot_delta_decoder {
    oti_alloc alloc;
    size_t max_message;
    int shard_set;
    uint32_t shard;
    uint64_t lo, hi;
    oti_tblock *shape; size_t shape_cap;
    struct oti_dsec *secs; size_t secs_cap, nsecs; /* sections of the last validated frame */
    int secs_failed;
    char errmsg[OTI_ERRMSG_LEN];
};

/* Parsed header of a frame. */
typedef struct oti_frame {
    unsigned major, minor, kind, flags;
    size_t header_len;
    uint32_t shard, sender, entries, checksum;
    uint64_t fingerprint, sequence, base_version, new_version;
    size_t payload_len;
    const uint8_t *payload;
} oti_frame;

/* Header checks only (magic, version, lengths); no checksum. */
ot_status oti_frame_peek(const uint8_t *d, size_t len, oti_frame *f, char *errmsg);
/* Header, checksum and payload structure and values, without a model. */
ot_status oti_frame_check(const uint8_t *d, size_t len, size_t max_message, oti_frame *f,
                          char *errmsg);
/* The CRC32C of a frame (checksum field taken as zero). */
uint32_t oti_frame_crc(const uint8_t *d, size_t total);

/* Validates a frame against params / a shadow (everything but the
 * checksum-free header peek); nothing is modified. */
ot_status oti_delta_validate_params(ot_delta_decoder *dec, const oti_params *p, const uint8_t *d,
                                    size_t len, oti_frame *f);
ot_status oti_delta_validate_shadow(ot_delta_decoder *dec, const oti_shadow *sh, const uint8_t *d,
                                    size_t len, oti_frame *f);
/* Validates, then applies (ADD adds, SET/FULL overwrite). */
ot_status oti_delta_apply_params(ot_delta_decoder *dec, oti_params *p, const uint8_t *d, size_t len);
ot_status oti_delta_apply_shadow(ot_delta_decoder *dec, oti_shadow *sh, const uint8_t *d,
                                 size_t len);
/* Merges two ADD frames valid for p into one fp32 ADD frame whose
 * application equals applying a then b (up to float rounding of sums). */
ot_status oti_delta_merge(ot_delta_encoder *enc, const oti_params *p, const uint8_t *a, size_t alen,
                          const uint8_t *b, size_t blen, uint8_t *dst, size_t cap, size_t *len);
/* Upper bound of a merge's output size. */
size_t oti_delta_merge_bound(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

#endif /* OT_DELTA_H */
