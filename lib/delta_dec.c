/*
 * delta_dec.c - the delta decoder: header peek, strict validation of whole
 * frames (with or without a model), apply to a params view or a shadow,
 * merge of two ADD frames, and the section walk `ot inspect` uses.
 *
 * Frames are hostile input.  Validation reads every byte once, checks every
 * length against the bytes present before using it, and changes nothing;
 * apply runs only after the whole frame validated, and then cannot fail.
 * The order of the checks, and so which status a frame with several faults
 * gets, is documented in docs/wire-format.md ("Validation").
 *
 * SPDX-License-Identifier: MIT
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "delta.h"

#define GROW(o, field, n) \
    oti_grow(&(o)->alloc, (void **)&(o)->field, &(o)->field##_cap, (n), sizeof(*(o)->field))

static inline float clampf(float d)
{
    return d > FLT_MAX ? FLT_MAX : (d < -FLT_MAX ? -FLT_MAX : d);
}

#if defined(__GNUC__)
#define ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define ALWAYS_INLINE inline
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* little-endian hosts: plain loads, which compilers vectorise */
static inline uint64_t le64(const uint8_t *p)
{
    uint64_t x;

    memcpy(&x, p, 8);
    return x;
}
static inline uint32_t le32(const uint8_t *p)
{
    uint32_t x;

    memcpy(&x, p, 4);
    return x;
}
static inline uint16_t le16(const uint8_t *p)
{
    uint16_t x;

    memcpy(&x, p, 2);
    return x;
}
#else
#define le64 oti_get64
#define le32 oti_get32
#define le16 oti_get16
#endif

static inline float getf(const uint8_t *p)
{
    uint32_t x = le32(p);
    float f;

    memcpy(&f, &x, 4);
    return f;
}

/* Value i of an array of encoding venc (int8 with scale). */
static ALWAYS_INLINE float value_at(int venc, const uint8_t *v, size_t i, float scale)
{
    switch (venc) {
    case OTI_ENC_FP32: return getf(v + 4 * i);
    case OTI_ENC_FP16: return oti_f16_to_f32(le16(v + 2 * i));
    case OTI_ENC_BF16: return oti_bf16_to_f32(le16(v + 2 * i));
    default: return (float)(int8_t)v[i] * scale;
    }
}

/* Whether code i is refused: a non-finite float, or the int8 code -128. */
static ALWAYS_INLINE unsigned code_bad(int venc, const uint8_t *v, size_t i)
{
    switch (venc) {
    case OTI_ENC_FP32: return (le32(v + 4 * i) & 0x7f800000u) == 0x7f800000u;
    case OTI_ENC_FP16: return (le16(v + 2 * i) & 0x7c00u) == 0x7c00u;
    case OTI_ENC_BF16: return (le16(v + 2 * i) & 0x7f80u) == 0x7f80u;
    default: return v[i] == 0x80u;
    }
}

/* Reads the next row gap of a validated sparse section. */
static inline uint64_t next_gap(const uint8_t **g)
{
    return oti_gap_validated(g);
}

/* ---- header ------------------------------------------------------------------ */

static const uint8_t magic[4] = {OTI_FRAME_MAGIC0, OTI_FRAME_MAGIC1, OTI_FRAME_MAGIC2,
                                 OTI_FRAME_MAGIC3};

ot_status oti_frame_peek(const uint8_t *d, size_t len, oti_frame *f, char *errmsg)
{
    size_t hlen;
    uint64_t total;

    if (d == NULL && len > 0)
        return oti_err(errmsg, OT_EINVAL, "NULL frame");
    if (memcmp(d != NULL ? d : magic, magic, len < 4 ? len : 4) != 0)
        return oti_err(errmsg, OT_EFORMAT, "not a delta frame (bad magic)");
    if (len <= OTI_H_MAJOR)
        return oti_err(errmsg, OT_ECORRUPT, "truncated frame (%zu bytes)", len);
    if (d[OTI_H_MAJOR] != OTI_FRAME_MAJOR)
        return oti_err(errmsg, OT_EVERSION, "frame format %u.x; this library reads %u.x",
                       d[OTI_H_MAJOR], OTI_FRAME_MAJOR);
    if (len < OTI_HEADER_SIZE)
        return oti_err(errmsg, OT_ECORRUPT, "truncated header (%zu of %d bytes)", len,
                       OTI_HEADER_SIZE);
    hlen = oti_get16(d + OTI_H_HLEN);
    if (hlen < OTI_HEADER_SIZE)
        return oti_err(errmsg, OT_EFORMAT, "header length %zu is below %d", hlen, OTI_HEADER_SIZE);
    total = (uint64_t)hlen + oti_get32(d + OTI_H_PAYLOAD);
    if (total > len)
        return oti_err(errmsg, OT_ECORRUPT, "truncated frame (%zu of %llu bytes)", len,
                       (unsigned long long)total);
    f->major = d[OTI_H_MAJOR];
    f->minor = d[OTI_H_MINOR];
    f->kind = d[OTI_H_KIND];
    f->flags = d[OTI_H_FLAGS];
    f->header_len = hlen;
    f->shard = oti_get32(d + OTI_H_SHARD);
    f->fingerprint = oti_get64(d + OTI_H_FINGERPRINT);
    f->sequence = oti_get64(d + OTI_H_SEQUENCE);
    f->base_version = oti_get64(d + OTI_H_BASE_VERSION);
    f->new_version = oti_get64(d + OTI_H_NEW_VERSION);
    f->sender = oti_get32(d + OTI_H_SENDER);
    f->entries = oti_get32(d + OTI_H_ENTRIES);
    f->payload_len = oti_get32(d + OTI_H_PAYLOAD);
    f->checksum = oti_get32(d + OTI_H_CHECKSUM);
    f->payload = d + hlen;
    return OT_OK;
}

/* ---- sections ------------------------------------------------------------------ */

typedef struct oti_dsec {
    uint64_t block;
    int array, venc, layout;
    uint32_t cols;
    uint64_t first, count, last;
    float scale;
    const uint8_t *start;  /* the section's first byte */
    const uint8_t *gaps;   /* sparse: count - 1 varints */
    const uint8_t *values; /* count * cols values */
    size_t vb;
} sec;

/* What a frame is checked against (NULL: structure only). */
typedef struct tshape {
    uint64_t fingerprint;
    size_t nblocks;
    const oti_tblock *b;
    ot_status missing; /* status for an array the target does not hold */
    int shard_set;
    uint32_t shard;
    uint64_t lo, hi;
} tshape;

/* Whether some code of v[0..n) is refused: fixed 16-wide blocks without
 * early exit, so compilers vectorise them at -O2. */
static ALWAYS_INLINE unsigned any_bad(int venc, const uint8_t *v, size_t n)
{
    size_t i = 0, k;
    unsigned acc = 0;

    for (; i + 16 <= n; i += 16) {
        unsigned blk = 0;
        for (k = 0; k < 16; k++)
            blk |= code_bad(venc, v, i + k);
        acc |= blk;
    }
    for (; i < n; i++)
        acc |= code_bad(venc, v, i);
    return acc;
}

static int value_bad(int venc, const uint8_t *v, size_t n, ot_status *st)
{
    unsigned bad;

    switch (venc) {
    case OTI_ENC_FP32: bad = any_bad(OTI_ENC_FP32, v, n); break;
    case OTI_ENC_FP16: bad = any_bad(OTI_ENC_FP16, v, n); break;
    case OTI_ENC_BF16: bad = any_bad(OTI_ENC_BF16, v, n); break;
    default: bad = any_bad(OTI_ENC_INT8, v, n); break;
    }
    if (bad)
        *st = venc == OTI_ENC_INT8 ? OT_EFORMAT : OT_ENONFINITE;
    return bad != 0;
}

/*
 * The row gaps of a sparse section, eight bytes at a time, while at least
 * eight gaps are left (so every byte of a word is a gap byte).  A word is
 * taken when all its gaps are one or two bytes long; it adds to *sum each
 * gap's value and counts the gaps ended (bytes without the continuation
 * bit).  A zero byte anywhere is a zero gap or an overlong encoding: *bad.
 * Stops at a word holding a longer gap, for the byte-wise code.  Leaves *pp
 * at the start of a gap.
 */
static void gaps_swar(const uint8_t **pp, const uint8_t *end, uint64_t *left, uint64_t *sum,
                      unsigned *bad)
{
    const uint64_t k80 = UINT64_C(0x8080808080808080), k01 = UINT64_C(0x0101010101010101);
    const uint64_t k7f = UINT64_C(0x7f7f7f7f7f7f7f7f), lanes = UINT64_C(0x00ff00ff00ff00ff);
    const uint8_t *p = *pp;
    uint64_t prev = 0, s = 0, n = *left; /* prev: the byte before p continues */
    unsigned b = 0;

    while (n >= 8 && end - p >= 8) {
        uint64_t w, c, after, lo, ex;
        w = le64(p);
        c = (w & k80) >> 7;            /* bit 0 of a byte: it continues */
        after = (c << 8) | prev;       /* bit 0 of a byte: the one before continues */
        if (c & after)
            break;                     /* a gap of three or more bytes */
        b |= ((w - k01) & ~w & k80) != 0;
        lo = w & k7f;
        ex = lo & (after * 0xffu);     /* second bytes count 128 times */
        lo = (lo & lanes) + ((lo >> 8) & lanes);
        ex = (ex & lanes) + ((ex >> 8) & lanes);
        s += ((lo * UINT64_C(0x0001000100010001)) >> 48) +
             127 * ((ex * UINT64_C(0x0001000100010001)) >> 48);
        n -= 8 - ((c * k01) >> 56);     /* bytes that end a gap */
        prev = c >> 56;
        p += 8;
    }
    if (prev) { /* back to the start of the gap the last word began */
        p--;
        s -= p[0] & 0x7fu;
    }
    *pp = p;
    *left = n;
    *sum = s;
    *bad |= b;
}

/*
 * Parses and checks the section at *pp.  With ts, also checks it against the
 * target's shape.  On success advances *pp past the section.
 */
static ot_status parse_section(const uint8_t **pp, const uint8_t *end, const tshape *ts, sec *s,
                               char *errmsg, size_t idx)
{
    const uint8_t *p = *pp;
    uint64_t v, row, maxv;
    ot_status st = OT_OK;

    s->start = p;
    if (oti_get_varint(&p, end, &s->block) != 0 || s->block > UINT32_MAX)
        return oti_err(errmsg, OT_EFORMAT, "section %zu: bad block index", idx);
    if (end - p < 3)
        return oti_err(errmsg, OT_EFORMAT, "section %zu: truncated section header", idx);
    s->array = p[0];
    s->venc = p[1];
    s->layout = p[2];
    p += 3;
    if (s->array >= OTI_NARRAYS)
        return oti_err(errmsg, OT_EFORMAT, "section %zu: unknown array %d", idx, s->array);
    if (s->venc > OTI_ENC_INT8)
        return oti_err(errmsg, OT_EFORMAT, "section %zu: unknown value encoding %d", idx, s->venc);
    if (s->layout > OTI_LAYOUT_DENSE)
        return oti_err(errmsg, OT_EFORMAT, "section %zu: unknown layout %d", idx, s->layout);
    if (oti_get_varint(&p, end, &v) != 0 || v == 0 || v > UINT32_MAX)
        return oti_err(errmsg, OT_EFORMAT, "section %zu: bad column count", idx);
    s->cols = (uint32_t)v;
    if (oti_get_varint(&p, end, &s->first) != 0 || oti_get_varint(&p, end, &s->count) != 0 ||
        s->count == 0)
        return oti_err(errmsg, OT_EFORMAT, "section %zu: bad row range", idx);
    s->vb = oti_enc_size(s->venc);
    s->scale = 0.0f;
    if (s->venc == OTI_ENC_INT8) {
        if (end - p < 4)
            return oti_err(errmsg, OT_EFORMAT, "section %zu: truncated scale", idx);
        s->scale = getf(p);
        p += 4;
        if (!(fabsf(s->scale) <= FLT_MAX) || !(fabsf(s->scale * 127.0f) <= FLT_MAX))
            return oti_err(errmsg, OT_ENONFINITE, "section %zu: non-finite int8 scale", idx);
        if (s->scale < 0.0f)
            return oti_err(errmsg, OT_EFORMAT, "section %zu: negative int8 scale", idx);
    }
    /* rows */
    s->gaps = p;
    if (s->layout == OTI_LAYOUT_DENSE) {
        if (s->first > UINT64_MAX - (s->count - 1))
            return oti_err(errmsg, OT_EFORMAT, "section %zu: row range overflows", idx);
        s->last = s->first + (s->count - 1);
    } else {
        if (s->count - 1 > (uint64_t)(end - p))
            return oti_err(errmsg, OT_EFORMAT, "section %zu: %llu rows but %zu bytes left", idx,
                           (unsigned long long)s->count, (size_t)(end - p));
        unsigned bad = 0;
        uint64_t left = s->count - 1, sum = 0;
        gaps_swar(&p, end, &left, &sum, &bad);
        bad |= (unsigned)(s->first > UINT64_MAX - sum);
        row = s->first + sum;
        for (v = 0; v < left; v++) {
            uint64_t gap = oti_gap_checked(&p, end, &bad);
            bad |= (unsigned)(row > UINT64_MAX - gap);
            row += gap;
        }
        if (bad)
            return oti_err(errmsg, OT_EFORMAT, "section %zu: bad row gap", idx);
        s->last = row;
    }
    /* values: count * cols * vb bytes must be present */
    maxv = (uint64_t)(end - p) / s->vb;
    if (s->count > maxv / s->cols)
        return oti_err(errmsg, OT_EFORMAT, "section %zu: more values than the frame holds", idx);
    s->values = p;
    p += (size_t)(s->count * s->cols) * s->vb;
    /* against the target's shape */
    if (ts != NULL) {
        const oti_tblock *tb;
        if (s->block >= ts->nblocks)
            return oti_err(errmsg, OT_EFORMAT, "section %zu: block %llu of %zu", idx,
                           (unsigned long long)s->block, ts->nblocks);
        tb = &ts->b[s->block];
        if (s->cols != tb->cols)
            return oti_err(errmsg, OT_EFORMAT, "section %zu: %u columns, block has %u", idx,
                           s->cols, tb->cols);
        if (!(tb->amask & (1u << s->array)))
            return oti_err(errmsg, ts->missing, "section %zu: block %llu has no array %d here",
                           idx, (unsigned long long)s->block, s->array);
        if (s->last >= tb->rows)
            return oti_err(errmsg, OT_EFORMAT, "section %zu: row %llu past the block's %llu rows",
                           idx, (unsigned long long)s->last, (unsigned long long)tb->rows);
        if (tb->offset + s->first * s->cols < ts->lo ||
            tb->offset + (s->last + 1) * s->cols > ts->hi)
            return oti_err(errmsg, OT_ERANGE, "section %zu: indices outside the shard's range",
                           idx);
    }
    if (value_bad(s->venc, s->values, (size_t)(s->count * s->cols), &st))
        return oti_err(errmsg, st, "section %zu: %s value", idx,
                       st == OT_ENONFINITE ? "non-finite" : "invalid int8 (-128)");
    *pp = p;
    return OT_OK;
}

/* Re-parses a section of a validated frame (no checks). */
static void reparse(const uint8_t **pp, sec *s)
{
    const uint8_t *p = *pp;
    uint64_t v;

    s->block = oti_varint_validated(&p);
    s->array = p[0];
    s->venc = p[1];
    s->layout = p[2];
    p += 3;
    s->cols = (uint32_t)oti_varint_validated(&p);
    s->first = oti_varint_validated(&p);
    s->count = oti_varint_validated(&p);
    s->vb = oti_enc_size(s->venc);
    s->scale = 0.0f;
    if (s->venc == OTI_ENC_INT8) {
        s->scale = getf(p);
        p += 4;
    }
    s->gaps = p;
    if (s->layout == OTI_LAYOUT_SPARSE) {
        s->last = s->first;
        for (v = 1; v < s->count; v++)
            s->last += next_gap(&p);
    } else {
        s->last = s->first + (s->count - 1);
    }
    s->values = p;
    *pp = p + (size_t)(s->count * s->cols) * s->vb;
}

/* ---- whole frames -------------------------------------------------------------- */

typedef int (*sec_fn)(void *user, const sec *s);

/* With a decoder, validation records each section for apply (no re-parse). */
static int record_sec(void *user, const sec *s)
{
    ot_delta_decoder *dec = user;

    if (oti_grow(&dec->alloc, (void **)&dec->secs, &dec->secs_cap, dec->nsecs + 1, sizeof(sec)) != 0) {
        dec->secs_failed = 1;
        return 1;
    }
    dec->secs[dec->nsecs++] = *s;
    return 0;
}

static ot_status check_frame(const uint8_t *d, size_t len, size_t max_message, const tshape *ts,
                             oti_frame *f, char *errmsg, sec_fn fn, void *user)
{
    ot_status st;
    size_t total, idx = 0;
    const uint8_t *p, *end;
    uint64_t entries = 0, prev_block = 0, prev_last = 0;
    int prev_array = -1, have_prev = 0;

    if ((st = oti_frame_peek(d, len, f, errmsg)) != OT_OK)
        return st;
    total = f->header_len + f->payload_len;
    if (total != len)
        return oti_err(errmsg, OT_EFORMAT, "%zu bytes after the frame's end", len - total);
    if (max_message > 0 && total > max_message)
        return oti_err(errmsg, OT_ETOOBIG, "frame of %zu bytes exceeds max_message (%zu)", total,
                       max_message);
    if (oti_frame_crc(d, total) != f->checksum)
        return oti_err(errmsg, OT_ECORRUPT, "checksum mismatch");
    if (f->kind < OTI_KIND_ADD || f->kind > OTI_KIND_CONTROL)
        return oti_err(errmsg, OT_EFORMAT, "unknown frame kind %u", f->kind);
    if (f->flags & ~OTI_FLAGS_KNOWN)
        return oti_err(errmsg, OT_EFORMAT, "unknown flags 0x%02x", f->flags);
    if ((f->kind == OTI_KIND_ADD || f->kind == OTI_KIND_SET || f->kind == OTI_KIND_CONTROL) &&
        f->flags != (OTI_FLAG_FIRST | OTI_FLAG_LAST))
        return oti_err(errmsg, OT_EFORMAT, "a %s frame must be both first and last",
                       ot_delta_kind_name((int)f->kind));
    if (oti_get16(d + OTI_H_RESERVED) != 0)
        return oti_err(errmsg, OT_EFORMAT, "reserved header bytes are not zero");
    if (ts != NULL) {
        if (f->fingerprint != ts->fingerprint)
            return oti_err(errmsg, OT_EMISMATCH,
                           "frame for model %016llx, this model is %016llx",
                           (unsigned long long)f->fingerprint,
                           (unsigned long long)ts->fingerprint);
        if (ts->shard_set && f->shard != ts->shard)
            return oti_err(errmsg, OT_EMISMATCH, "frame for shard %u, this is shard %u", f->shard,
                           ts->shard);
    }
    if (f->kind == OTI_KIND_CONTROL) {
        if (f->entries != 0)
            return oti_err(errmsg, OT_EFORMAT, "a control frame carries no entries");
        return OT_OK;
    }
    p = f->payload;
    end = d + total;
    while (p < end) {
        sec s;
        if ((st = parse_section(&p, end, ts, &s, errmsg, idx)) != OT_OK)
            return st;
        if (have_prev && (s.block < prev_block ||
                          (s.block == prev_block && s.array < prev_array) ||
                          (s.block == prev_block && s.array == prev_array &&
                           s.first <= prev_last)))
            return oti_err(errmsg, OT_EFORMAT, "section %zu is out of order or overlaps", idx);
        have_prev = 1;
        prev_block = s.block;
        prev_array = s.array;
        prev_last = s.last;
        entries += s.count * s.cols;
        if (fn != NULL && fn(user, &s) != 0)
            fn = NULL;
        idx++;
    }
    if (entries != f->entries)
        return oti_err(errmsg, OT_EFORMAT, "header says %u entries, sections hold %llu",
                       f->entries, (unsigned long long)entries);
    return OT_OK;
}

ot_status oti_frame_check(const uint8_t *d, size_t len, size_t max_message, oti_frame *f,
                          char *errmsg)
{
    return check_frame(d, len, max_message, NULL, f, errmsg, NULL, NULL);
}

/* ---- shapes ------------------------------------------------------------------------ */

static ot_status shape_params(ot_delta_decoder *dec, const oti_params *p, tshape *ts)
{
    size_t b;

    if (GROW(dec, shape, p->nblocks ? p->nblocks : 1) != 0)
        return oti_err(dec->errmsg, OT_ENOMEM, "out of memory");
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        dec->shape[b].offset = blk->offset;
        dec->shape[b].rows = blk->rows;
        dec->shape[b].cols = blk->cols;
        dec->shape[b].amask = 1u | (blk->nstate >= 1 ? 2u : 0u) | (blk->nstate >= 2 ? 4u : 0u);
    }
    ts->fingerprint = p->fingerprint;
    ts->nblocks = p->nblocks;
    ts->b = dec->shape;
    ts->missing = OT_EFORMAT;
    ts->shard_set = dec->shard_set;
    ts->shard = dec->shard;
    ts->lo = dec->shard_set ? dec->lo : 0;
    ts->hi = dec->shard_set ? dec->hi : UINT64_MAX;
    return OT_OK;
}

static ot_status shape_shadow(ot_delta_decoder *dec, const oti_shadow *sh, tshape *ts)
{
    size_t b;

    if (GROW(dec, shape, sh->nblocks ? sh->nblocks : 1) != 0)
        return oti_err(dec->errmsg, OT_ENOMEM, "out of memory");
    for (b = 0; b < sh->nblocks; b++) {
        const oti_sblock *sb = &sh->blocks[b];
        int a;
        dec->shape[b].offset = sb->offset;
        dec->shape[b].rows = sb->rows;
        dec->shape[b].cols = sb->cols;
        dec->shape[b].amask = 0;
        for (a = 0; a < OTI_NARRAYS; a++)
            if (sb->pages[a] != NULL)
                dec->shape[b].amask |= 1u << a;
    }
    ts->fingerprint = sh->fingerprint;
    ts->nblocks = sh->nblocks;
    ts->b = dec->shape;
    ts->missing = OT_EMISMATCH;
    ts->shard_set = dec->shard_set;
    ts->shard = dec->shard;
    ts->lo = dec->shard_set ? dec->lo : 0;
    ts->hi = dec->shard_set ? dec->hi : UINT64_MAX;
    return OT_OK;
}

/* Validates with the decoder's section list filled. */
static ot_status check_recorded(ot_delta_decoder *dec, const uint8_t *d, size_t len,
                                const tshape *ts, oti_frame *f)
{
    ot_status st;

    dec->nsecs = 0;
    dec->secs_failed = 0;
    st = check_frame(d, len, dec->max_message, ts, f, dec->errmsg, record_sec, dec);
    if (st == OT_OK && dec->secs_failed)
        return oti_err(dec->errmsg, OT_ENOMEM, "out of memory for the section list");
    return st;
}

ot_status oti_delta_validate_params(ot_delta_decoder *dec, const oti_params *p, const uint8_t *d,
                                    size_t len, oti_frame *f)
{
    tshape ts;
    ot_status st;

    dec->errmsg[0] = '\0';
    if ((st = shape_params(dec, p, &ts)) != OT_OK)
        return st;
    return check_recorded(dec, d, len, &ts, f);
}

ot_status oti_delta_validate_shadow(ot_delta_decoder *dec, const oti_shadow *sh, const uint8_t *d,
                                    size_t len, oti_frame *f)
{
    tshape ts;
    ot_status st;

    dec->errmsg[0] = '\0';
    if ((st = shape_shadow(dec, sh, &ts)) != OT_OK)
        return st;
    return check_recorded(dec, d, len, &ts, f);
}

/* ---- apply -------------------------------------------------------------------------- *
 *
 * Apply runs after the whole frame validated and cannot fail.  The target is
 * a params view (one contiguous array per block and array) or a shadow
 * (pages of rows).  Sparse sections write all over a large model, so a
 * second cursor runs PF_DIST rows ahead of the one applying, across section
 * boundaries, and prefetches the rows it passes: the cache misses overlap
 * instead of following one another.
 */

#define PF_DIST 64

typedef struct tgt {
    oti_params *p;  /* one of the two */
    oti_shadow *sh;
} tgt;

static inline float *params_arr(oti_block *b, int a)
{
    return a == 0 ? b->w : b->s[a - 1];
}

/* Row `row` of section s's block and array in the target. */
static inline float *dst_row(const tgt *t, const sec *s, uint64_t row)
{
    if (t->p != NULL)
        return params_arr(&t->p->blocks[s->block], s->array) + row * s->cols;
    return oti_shadow_row_w(t->sh, (size_t)s->block, s->array, row);
}

/* The last row of the contiguous run of target rows that holds `row`. */
static inline uint64_t dst_run_last(const tgt *t, const sec *s, uint64_t row)
{
    unsigned shift;

    if (t->p != NULL)
        return UINT64_MAX;
    shift = t->sh->blocks[s->block].shift;
    return row | ((UINT64_C(1) << shift) - 1);
}

/* A cursor over the rows of the sparse sections of a validated frame. */
typedef struct rowcur {
    const sec *s, *end;
    uint64_t i, row;
    const uint8_t *g;
} rowcur;

static void cur_section(rowcur *c)
{
    while (c->s < c->end && c->s->layout != OTI_LAYOUT_SPARSE)
        c->s++;
    if (c->s < c->end) {
        c->i = 0;
        c->row = c->s->first;
        c->g = c->s->gaps;
    }
}

static ALWAYS_INLINE void cur_next(rowcur *c)
{
    if (++c->i < c->s->count) {
        c->row += next_gap(&c->g);
        return;
    }
    c->s++;
    cur_section(c);
}

static ALWAYS_INLINE void prefetch_step(const tgt *t, rowcur *pf)
{
    if (pf->s < pf->end) {
#if defined(__GNUC__)
        __builtin_prefetch(dst_row(t, pf->s, pf->row), 1);
#endif
        cur_next(pf);
    }
}

static inline int tracks(const oti_block *blk)
{
    return blk->touched_bits != NULL && blk->touched_list != NULL;
}

/* d[0..n) = or += the decoded values src[0..n): one loop for every
 * encoding and kind, instantiated per pair so each copy is straight-line;
 * fixed blocks of 16 decoded into a local array first, which compilers
 * vectorise at -O2, and a tail. */
static ALWAYS_INLINE void apply_run(float *restrict d, const uint8_t *restrict src, size_t n,
                                    int venc, float scale, int add)
{
    size_t i = 0, k;
    float v[16];

    for (; i + 16 <= n; i += 16) {
        for (k = 0; k < 16; k++)
            v[k] = value_at(venc, src, i + k, scale);
        for (k = 0; k < 16; k++)
            d[i + k] = add ? clampf(d[i + k] + v[k]) : v[k];
    }
    for (; i < n; i++) {
        v[0] = value_at(venc, src, i, scale);
        d[i] = add ? clampf(d[i] + v[0]) : v[0];
    }
}

static void apply_values(float *d, const uint8_t *src, size_t n, int venc, float scale, int add)
{
    if (add) {
        switch (venc) {
        case OTI_ENC_FP32: apply_run(d, src, n, OTI_ENC_FP32, scale, 1); break;
        case OTI_ENC_FP16: apply_run(d, src, n, OTI_ENC_FP16, scale, 1); break;
        case OTI_ENC_BF16: apply_run(d, src, n, OTI_ENC_BF16, scale, 1); break;
        default: apply_run(d, src, n, OTI_ENC_INT8, scale, 1); break;
        }
    } else {
        switch (venc) {
        case OTI_ENC_FP32: apply_run(d, src, n, OTI_ENC_FP32, scale, 0); break;
        case OTI_ENC_FP16: apply_run(d, src, n, OTI_ENC_FP16, scale, 0); break;
        case OTI_ENC_BF16: apply_run(d, src, n, OTI_ENC_BF16, scale, 0); break;
        default: apply_run(d, src, n, OTI_ENC_INT8, scale, 0); break;
        }
    }
}

static void apply_dense(const tgt *t, const sec *s, int add)
{
    const uint8_t *v = s->values;
    uint64_t row = s->first, i;

    while (row <= s->last) {
        uint64_t e = dst_run_last(t, s, row);
        size_t n;
        if (e > s->last)
            e = s->last;
        n = (size_t)((e - row + 1) * s->cols);
        apply_values(dst_row(t, s, row), v, n, s->venc, s->scale, add);
        v += n * s->vb;
        row = e + 1;
    }
    if (t->p != NULL) {
        oti_block *blk = &t->p->blocks[s->block];
        if (!tracks(blk))
            return;
        if (blk->dense_hint)
            blk->all_touched = 1;
        else
            for (i = 0; i < s->count; i++)
                oti_block_touch(blk, s->first + i);
    }
}

/* A sparse section's rows, the prefetch cursor kept PF_DIST rows ahead. */
static ALWAYS_INLINE void apply_sparse_run(const tgt *t, const sec *s, rowcur *pf, int venc,
                                           int add)
{
    oti_block *blk = t->p != NULL ? &t->p->blocks[s->block] : NULL;
    const uint8_t *g = s->gaps, *v = s->values;
    uint64_t row = s->first, i;
    uint32_t cols = s->cols, c;
    int track = blk != NULL && tracks(blk);
    rowcur ahead = *pf; /* a local copy the compiler keeps in registers */

    if (track && blk->dense_hint) {
        blk->all_touched = 1;
        track = 0;
    }
    for (i = 0; i < s->count; i++) {
        float *x;
        if (i > 0)
            row += next_gap(&g);
        prefetch_step(t, &ahead);
        x = dst_row(t, s, row);
        if (cols >= 16 && venc != OTI_ENC_FP16) {
            /* a long row: the blocked loop that compilers vectorise (fp16's
             * conversion does not, and was slower that way) */
            apply_run(x, v, cols, venc, s->scale, add);
        } else {
            for (c = 0; c < cols; c++) {
                float val = value_at(venc, v, c, s->scale);
                x[c] = add ? clampf(x[c] + val) : val;
            }
        }
        v += (size_t)cols * (size_t)s->vb;
        if (track)
            oti_block_touch(blk, row);
    }
    *pf = ahead;
}

static void apply_sparse(const tgt *t, const sec *s, rowcur *pf, int add)
{
    if (add) {
        switch (s->venc) {
        case OTI_ENC_FP32: apply_sparse_run(t, s, pf, OTI_ENC_FP32, 1); break;
        case OTI_ENC_FP16: apply_sparse_run(t, s, pf, OTI_ENC_FP16, 1); break;
        case OTI_ENC_BF16: apply_sparse_run(t, s, pf, OTI_ENC_BF16, 1); break;
        default: apply_sparse_run(t, s, pf, OTI_ENC_INT8, 1); break;
        }
    } else {
        switch (s->venc) {
        case OTI_ENC_FP32: apply_sparse_run(t, s, pf, OTI_ENC_FP32, 0); break;
        case OTI_ENC_FP16: apply_sparse_run(t, s, pf, OTI_ENC_FP16, 0); break;
        case OTI_ENC_BF16: apply_sparse_run(t, s, pf, OTI_ENC_BF16, 0); break;
        default: apply_sparse_run(t, s, pf, OTI_ENC_INT8, 0); break;
        }
    }
}

/*
 * The common case of a sparse frame: fp32 values of single-column rows of
 * one array of a params view, in sections s[0..n).
 *
 * Reading a gap needs the length of the one before it, so one stream of
 * gaps decodes no faster than a load and two adds a gap.  The sections of a
 * validated frame hold increasing, disjoint row ranges (check_frame refuses
 * others), so every row appears once and the order in which rows are
 * applied does not change the result: two cursors decode the first and the
 * second half of the sections in turn, two independent chains.
 *
 * Rows are decoded in chunks of FAST_CHUNK into a small buffer, then
 * applied with the rows FAST_AHEAD further on prefetched.  Decoding and
 * prefetching in one loop was slower: while the prefetches wait for free
 * miss buffers the decoding stalls behind them.
 */
#define FAST_CHUNK 512 /* rows decoded before they are applied */
#define FAST_AHEAD 64  /* rows prefetched ahead while applying */

typedef struct fastcur {
    const sec *s, *end;   /* current section; end of this cursor's sections */
    const uint8_t *g, *v; /* next gap; the current entry's value */
    uint64_t row;         /* the current entry's row */
    uint64_t left;        /* entries after the current one in section s */
    int live;             /* there is a current entry */
} fastcur;

static void fast_begin(fastcur *c, const sec *s, const sec *end)
{
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->end = end;
    c->live = s < end;
    if (c->live) {
        c->row = s->first;
        c->g = s->gaps;
        c->v = s->values;
        c->left = s->count - 1;
    }
}

/* Emits the current entry of c at rows[k], vals[k] and moves to the next. */
static ALWAYS_INLINE void fast_take(fastcur *c, uint64_t *rows, float *vals, size_t k)
{
    rows[k] = c->row;
    vals[k] = getf(c->v);
    if (c->left > 0) {
        c->row += next_gap(&c->g);
        c->v += 4;
        c->left--;
    } else if (++c->s < c->end) {
        c->row = c->s->first;
        c->g = c->s->gaps;
        c->v = c->s->values;
        c->left = c->s->count - 1;
    } else {
        c->live = 0;
    }
}

/* Decodes FAST_CHUNK entries, or what is left, from the cursors; returns
 * how many.  The cursors are copied into locals so they stay in registers. */
static ALWAYS_INLINE size_t fast_fill(fastcur *pa, fastcur *pb, uint64_t *rows, float *vals)
{
    fastcur a = *pa, b = *pb;
    size_t k = 0;

    while (k + 2 <= FAST_CHUNK && a.live && b.live) {
        /* steps that change section in neither cursor, in plain locals */
        uint64_t z = a.left < b.left ? a.left : b.left, t, arow = a.row, brow = b.row;
        const uint8_t *ag = a.g, *bg = b.g, *av = a.v, *bv = b.v;
        if (z > (FAST_CHUNK - k) / 2 - 1)
            z = (FAST_CHUNK - k) / 2 - 1;
        for (t = 0; t < z; t++, k += 2) {
            rows[k] = arow;
            vals[k] = getf(av);
            rows[k + 1] = brow;
            vals[k + 1] = getf(bv);
            arow += next_gap(&ag);
            brow += next_gap(&bg);
            av += 4;
            bv += 4;
        }
        a.row = arow;
        a.g = ag;
        a.v = av;
        a.left -= z;
        b.row = brow;
        b.g = bg;
        b.v = bv;
        b.left -= z;
        /* one more pair, where a section may end */
        fast_take(&a, rows, vals, k);
        fast_take(&b, rows, vals, k + 1);
        k += 2;
    }
    while (k < FAST_CHUNK && a.live)
        fast_take(&a, rows, vals, k++);
    while (k < FAST_CHUNK && b.live)
        fast_take(&b, rows, vals, k++);
    *pa = a;
    *pb = b;
    return k;
}

static void apply_sparse_fp32_c1(float *restrict arr, oti_block *blk, const sec *s, size_t n,
                                 int add)
{
    uint64_t rows[FAST_CHUNK], total = 0, half = 0;
    float vals[FAST_CHUNK];
    fastcur a, b;
    size_t h, mid, k, m;
    int track = tracks(blk);

    if (track && blk->dense_hint) {
        blk->all_touched = 1;
        track = 0;
    }
    /* the second cursor starts at the section holding the middle entry */
    for (h = 0; h < n; h++)
        total += s[h].count;
    for (mid = 0; mid < n && half + s[mid].count <= total / 2; mid++)
        half += s[mid].count;
    fast_begin(&a, s, s + mid);
    fast_begin(&b, s + mid, s + n);
    while ((m = fast_fill(&a, &b, rows, vals)) > 0) {
#if defined(__GNUC__)
        for (k = 0; k < m && k < FAST_AHEAD; k++)
            __builtin_prefetch(arr + rows[k], 1);
#endif
        for (k = 0; k < m; k++) {
            uint64_t row = rows[k];
            float x = vals[k];
#if defined(__GNUC__)
            if (k + FAST_AHEAD < m)
                __builtin_prefetch(arr + rows[k + FAST_AHEAD], 1);
#endif
            arr[row] = add ? clampf(arr[row] + x) : x;
        }
        if (track)
            for (k = 0; k < m; k++)
                oti_block_touch(blk, rows[k]);
    }
}

/* Applies every recorded section of the validated frame to the target. */
static void apply_frame(const ot_delta_decoder *dec, const tgt *t, int add)
{
    const sec *s, *end;
    rowcur pf;
    int k;

    if (dec->nsecs == 0)
        return; /* secs may be NULL */
    end = dec->secs + dec->nsecs;
    memset(&pf, 0, sizeof(pf));
    pf.s = dec->secs;
    pf.end = end;
    cur_section(&pf);
    for (k = 0; k < PF_DIST; k++)
        prefetch_step(t, &pf);
    for (s = dec->secs; s < end; s++) {
        if (s->layout == OTI_LAYOUT_DENSE) {
            apply_dense(t, s, add);
        } else if (t->p != NULL && s->cols == 1 && s->venc == OTI_ENC_FP32) {
            /* a run of such sections of one array: the fast path */
            const sec *e = s + 1;
            while (e < end && e->layout == OTI_LAYOUT_SPARSE && e->cols == 1 &&
                   e->venc == OTI_ENC_FP32 && e->block == s->block && e->array == s->array)
                e++;
            apply_sparse_fp32_c1(params_arr(&t->p->blocks[s->block], s->array),
                                 &t->p->blocks[s->block], s, (size_t)(e - s), add);
            s = e - 1;
            /* the general cursor skips what the fast path applied */
            while (pf.s < end && pf.s < e) {
                pf.s++;
                cur_section(&pf);
            }
        } else {
            apply_sparse(t, s, &pf, add);
        }
    }
}

static void derive_section(oti_params *p, const sec *s)
{
    oti_block *blk = &p->blocks[s->block];
    const uint8_t *g = s->gaps;
    uint64_t i, row = s->first;

    for (i = 0; i < s->count; i++) {
        if (i > 0)
            row += s->layout == OTI_LAYOUT_DENSE ? 1 : next_gap(&g);
        p->derive(p->derive_ctx, blk, row);
    }
}

ot_status oti_delta_apply_params(ot_delta_decoder *dec, oti_params *p, const uint8_t *d, size_t len)
{
    oti_frame f;
    ot_status st;
    size_t i;
    tgt t;

    if ((st = oti_delta_validate_params(dec, p, d, len, &f)) != OT_OK)
        return st;
    if (f.kind == OTI_KIND_CONTROL)
        return oti_err(dec->errmsg, OT_EINVAL, "a control frame carries no values to apply");
    t.p = p;
    t.sh = NULL;
    apply_frame(dec, &t, f.kind == OTI_KIND_ADD);
    if (p->derive != NULL)
        for (i = 0; i < dec->nsecs; i++)
            if (dec->secs[i].array != 0)
                derive_section(p, &dec->secs[i]);
    return OT_OK;
}

ot_status oti_delta_apply_shadow(ot_delta_decoder *dec, oti_shadow *sh, const uint8_t *d,
                                 size_t len)
{
    oti_frame f;
    ot_status st;
    size_t k;
    tgt t;

    if ((st = oti_delta_validate_shadow(dec, sh, d, len, &f)) != OT_OK)
        return st;
    if (f.kind == OTI_KIND_CONTROL)
        return oti_err(dec->errmsg, OT_EINVAL, "a control frame carries no values to apply");
    /* Make every page written exclusive first, so applying cannot fail. */
    for (k = 0; k < dec->nsecs; k++) {
        const sec *s = &dec->secs[k];
        if (s->layout == OTI_LAYOUT_DENSE) {
            if (oti_shadow_unshare_rows(sh, (size_t)s->block, s->array, s->first, s->last) != 0)
                return oti_err(dec->errmsg, OT_ENOMEM, "out of memory copying snapshot pages");
        } else {
            const uint8_t *g = s->gaps;
            uint64_t i, row = s->first, pg = UINT64_MAX;
            unsigned shift = sh->blocks[s->block].shift;
            for (i = 0; i < s->count; i++) {
                if (i > 0)
                    row += next_gap(&g);
                if ((row >> shift) != pg) {
                    pg = row >> shift;
                    if (oti_shadow_unshare(sh, (size_t)s->block, s->array, (size_t)pg) != 0)
                        return oti_err(dec->errmsg, OT_ENOMEM,
                                       "out of memory copying snapshot pages");
                }
            }
        }
    }
    t.p = NULL;
    t.sh = sh;
    apply_frame(dec, &t, f.kind == OTI_KIND_ADD);
    sh->version = f.new_version;
    return OT_OK;
}

/* ---- merge ------------------------------------------------------------------------- */

/* A row cursor over the sections of a validated frame. */
typedef struct rowit {
    const uint8_t *q, *end;
    sec s;
    uint64_t i, row;
    const uint8_t *g, *v;
    int valid;
} rowit;

static void rowit_next(rowit *it)
{
    if (it->valid && it->i + 1 < it->s.count) {
        it->i++;
        it->v += (size_t)it->s.cols * it->s.vb;
        if (it->s.layout == OTI_LAYOUT_DENSE) {
            it->row++;
        } else {
            it->row += next_gap(&it->g);
        }
        return;
    }
    if (it->q >= it->end) {
        it->valid = 0;
        return;
    }
    reparse(&it->q, &it->s);
    it->i = 0;
    it->row = it->s.first;
    it->g = it->s.gaps;
    it->v = it->s.values;
    it->valid = 1;
}

static int rowit_cmp(const rowit *a, const rowit *b)
{
    if (a->s.block != b->s.block)
        return a->s.block < b->s.block ? -1 : 1;
    if (a->s.array != b->s.array)
        return a->s.array < b->s.array ? -1 : 1;
    if (a->row != b->row)
        return a->row < b->row ? -1 : 1;
    return 0;
}

typedef struct mout {
    ot_delta_encoder *enc;
    const oti_params *p;
    uint8_t *out;   /* payload; NULL: size only */
    size_t used;
    uint64_t entries;
    /* pending page */
    int have;
    uint64_t block;
    int array;
    uint64_t page;
    unsigned shift;
    uint32_t cols;
    size_t n;       /* rows pending (in enc->sel), values in enc->outv */
} mout;

static unsigned page_shift(uint32_t cols)
{
    uint64_t rpp = 1, want = cols < OTI_PAGE_FLOATS ? OTI_PAGE_FLOATS / cols : 1;
    unsigned shift = 0;

    while (rpp * 2 <= want) {
        rpp *= 2;
        shift++;
    }
    return shift;
}

static void mflush(mout *m)
{
    ot_delta_encoder *e = m->enc;
    uint32_t *rows = e->sel, cols = m->cols;
    size_t i, gaps = 0, sz_s, sz_d, hs_s, hs_d;
    uint64_t first, span;
    int dense;

    if (!m->have || m->n == 0) {
        m->have = 0;
        return;
    }
    first = rows[0];
    span = (uint64_t)rows[m->n - 1] - first + 1;
    for (i = 1; i < m->n; i++)
        gaps += oti_varint_len((uint64_t)rows[i] - rows[i - 1]);
    hs_s = oti_varint_len(m->block) + 3 + oti_varint_len(cols) + oti_varint_len(first) +
           oti_varint_len(m->n);
    hs_d = oti_varint_len(m->block) + 3 + oti_varint_len(cols) + oti_varint_len(first) +
           oti_varint_len(span);
    sz_s = hs_s + gaps + m->n * cols * 4;
    sz_d = hs_d + (size_t)span * cols * 4;
    dense = sz_d <= sz_s;
    if (m->out != NULL) {
        uint8_t *o = m->out + m->used;
        o = oti_put_varint(o, m->block);
        *o++ = (uint8_t)m->array;
        *o++ = OTI_ENC_FP32;
        *o++ = dense ? OTI_LAYOUT_DENSE : OTI_LAYOUT_SPARSE;
        o = oti_put_varint(o, cols);
        o = oti_put_varint(o, first);
        o = oti_put_varint(o, dense ? span : m->n);
        if (dense) {
            /* rows absent from both frames add zero */
            size_t k = 0;
            uint64_t r;
            for (r = first; r < first + span; r++) {
                const float *src = NULL;
                uint32_t c;
                if (k < m->n && rows[k] == r)
                    src = e->outv + (k++) * cols;
                for (c = 0; c < cols; c++) {
                    float v = src != NULL ? src[c] : 0.0f;
                    uint32_t x;
                    memcpy(&x, &v, 4);
                    oti_put32(o, x);
                    o += 4;
                }
            }
        } else {
            for (i = 1; i < m->n; i++)
                o = oti_put_gap(o, (uint64_t)rows[i] - rows[i - 1]);
            for (i = 0; i < m->n * cols; i++) {
                uint32_t x;
                memcpy(&x, &e->outv[i], 4);
                oti_put32(o, x);
                o += 4;
            }
        }
    }
    m->used += dense ? sz_d : sz_s;
    m->entries += (dense ? span : m->n) * cols;
    m->have = 0;
    m->n = 0;
}

/* Adds one row (values decoded from a and/or b) to the pending page. */
static void mpush(mout *m, const rowit *key, const rowit *a, const rowit *b)
{
    ot_delta_encoder *e = m->enc;
    uint32_t cols = key->s.cols, c;
    unsigned shift = page_shift(cols);
    uint64_t page = key->row >> shift;
    float *dst, tmp[64];

    if (m->have && (m->block != key->s.block || m->array != key->s.array || m->page != page))
        mflush(m);
    if (!m->have) {
        m->have = 1;
        m->block = key->s.block;
        m->array = key->s.array;
        m->page = page;
        m->shift = shift;
        m->cols = cols;
        m->n = 0;
    }
    e->sel[m->n] = (uint32_t)key->row;
    dst = e->outv + m->n * cols;
    memset(dst, 0, (size_t)cols * 4);
    if (a != NULL) {
        for (c = 0; c < cols; c += 64) {
            uint32_t k, nn = cols - c < 64 ? cols - c : 64;
            oti_dequantize(a->s.venc, a->v + (size_t)c * a->s.vb, nn, a->s.scale, tmp);
            for (k = 0; k < nn; k++)
                dst[c + k] = tmp[k];
        }
    }
    if (b != NULL) {
        for (c = 0; c < cols; c += 64) {
            uint32_t k, nn = cols - c < 64 ? cols - c : 64;
            oti_dequantize(b->s.venc, b->v + (size_t)c * b->s.vb, nn, b->s.scale, tmp);
            for (k = 0; k < nn; k++)
                dst[c + k] = clampf(dst[c + k] + tmp[k]);
        }
    }
    m->n++;
}

static void merge_pass(mout *m, const uint8_t *a, size_t alen, const oti_frame *fa,
                       const uint8_t *b, size_t blen, const oti_frame *fb)
{
    rowit ia, ib;

    memset(&ia, 0, sizeof(ia));
    memset(&ib, 0, sizeof(ib));
    ia.q = fa->payload;
    ia.end = a + alen;
    ib.q = fb->payload;
    ib.end = b + blen;
    rowit_next(&ia);
    rowit_next(&ib);
    while (ia.valid || ib.valid) {
        int c = !ia.valid ? 1 : !ib.valid ? -1 : rowit_cmp(&ia, &ib);
        if (c < 0) {
            mpush(m, &ia, &ia, NULL);
            rowit_next(&ia);
        } else if (c > 0) {
            mpush(m, &ib, NULL, &ib);
            rowit_next(&ib);
        } else {
            mpush(m, &ia, &ia, &ib);
            rowit_next(&ia);
            rowit_next(&ib);
        }
    }
    mflush(m);
}

ot_status oti_delta_merge(ot_delta_encoder *enc, const oti_params *p, const uint8_t *a, size_t alen,
                          const uint8_t *b, size_t blen, uint8_t *dst, size_t cap, size_t *len)
{
    ot_delta_decoder dec;
    oti_frame fa, fb;
    ot_status st;
    mout m;
    size_t b2, maxr = 1, maxf = 1;

    if (enc == NULL)
        return OT_EINVAL;
    enc->errmsg[0] = '\0';
    if (p == NULL || a == NULL || b == NULL || len == NULL || (dst == NULL && cap > 0))
        return oti_err(enc->errmsg, OT_EINVAL, "NULL argument");
    memset(&dec, 0, sizeof(dec));
    dec.alloc = enc->alloc;
    dec.max_message = enc->max_message;
    st = oti_delta_validate_params(&dec, p, a, alen, &fa);
    if (st == OT_OK)
        st = oti_delta_validate_params(&dec, p, b, blen, &fb);
    oti_free(&dec.alloc, dec.shape, dec.shape_cap * sizeof(*dec.shape));
    oti_free(&dec.alloc, dec.secs, dec.secs_cap * sizeof(sec));
    if (st != OT_OK) {
        memcpy(enc->errmsg, dec.errmsg, OTI_ERRMSG_LEN);
        return st;
    }
    if (fa.kind != OTI_KIND_ADD || fb.kind != OTI_KIND_ADD)
        return oti_err(enc->errmsg, OT_EINVAL, "only ADD frames merge");
    for (b2 = 0; b2 < p->nblocks; b2++) {
        uint32_t cols = p->blocks[b2].cols;
        uint64_t rpp = UINT64_C(1) << page_shift(cols);
        if (rpp > maxr)
            maxr = (size_t)rpp;
        if (rpp * cols > maxf)
            maxf = (size_t)(rpp * cols);
    }
    if (GROW(enc, sel, maxr) != 0 || GROW(enc, outv, maxf) != 0)
        return oti_err(enc->errmsg, OT_ENOMEM, "out of memory");
    memset(&m, 0, sizeof(m));
    m.enc = enc;
    m.p = p;
    merge_pass(&m, a, alen, &fa, b, blen, &fb);
    if (OTI_HEADER_SIZE + m.used > enc->max_message)
        return oti_err(enc->errmsg, OT_ETOOBIG, "the merged frame needs %zu bytes, max_message is %zu",
                       OTI_HEADER_SIZE + m.used, enc->max_message);
    if (m.entries > UINT32_MAX)
        return oti_err(enc->errmsg, OT_ETOOBIG, "too many entries");
    if (OTI_HEADER_SIZE + m.used > cap) {
        *len = OTI_HEADER_SIZE + m.used;
        return oti_err(enc->errmsg, OT_ENOSPC, "the frame needs %zu bytes, the buffer has %zu",
                       *len, cap);
    }
    memset(&m, 0, sizeof(m));
    m.enc = enc;
    m.p = p;
    m.out = dst + OTI_HEADER_SIZE;
    merge_pass(&m, a, alen, &fa, b, blen, &fb);
    oti_frame_header(enc, dst, OTI_KIND_ADD, OTI_FLAG_FIRST | OTI_FLAG_LAST, p->fingerprint);
    oti_frame_finish(dst, (uint32_t)m.entries, m.used);
    *len = OTI_HEADER_SIZE + m.used;
    enc->seq++;
    return OT_OK;
}

/* ---- public, model-free ------------------------------------------------------------- */

ot_status ot_delta_peek(const void *data, size_t len, int field, uint64_t *value)
{
    char msg[OTI_ERRMSG_LEN];
    oti_frame f;
    ot_status st;

    if (value == NULL || (data == NULL && len > 0))
        return OT_EINVAL;
    if (field < OT_DELTA_FIELD_VERSION_MAJOR || field > OT_DELTA_FIELD_FRAME_LENGTH)
        return OT_ENOTSUP;
    if ((st = oti_frame_peek(data, len, &f, msg)) != OT_OK)
        return st;
    switch (field) {
    case OT_DELTA_FIELD_VERSION_MAJOR: *value = f.major; break;
    case OT_DELTA_FIELD_VERSION_MINOR: *value = f.minor; break;
    case OT_DELTA_FIELD_KIND: *value = f.kind; break;
    case OT_DELTA_FIELD_FLAGS: *value = f.flags; break;
    case OT_DELTA_FIELD_HEADER_LENGTH: *value = f.header_len; break;
    case OT_DELTA_FIELD_SHARD: *value = f.shard; break;
    case OT_DELTA_FIELD_FINGERPRINT: *value = f.fingerprint; break;
    case OT_DELTA_FIELD_SEQUENCE: *value = f.sequence; break;
    case OT_DELTA_FIELD_BASE_VERSION: *value = f.base_version; break;
    case OT_DELTA_FIELD_NEW_VERSION: *value = f.new_version; break;
    case OT_DELTA_FIELD_SENDER: *value = f.sender; break;
    case OT_DELTA_FIELD_ENTRIES: *value = f.entries; break;
    case OT_DELTA_FIELD_PAYLOAD_LENGTH: *value = f.payload_len; break;
    case OT_DELTA_FIELD_CHECKSUM: *value = f.checksum; break;
    default: *value = (uint64_t)f.header_len + f.payload_len; break;
    }
    return OT_OK;
}

ot_status ot_delta_check(const void *data, size_t len)
{
    char msg[OTI_ERRMSG_LEN];
    oti_frame f;

    if (data == NULL && len > 0)
        return OT_EINVAL;
    return check_frame(data, len, 0, NULL, &f, msg, NULL, NULL);
}

typedef struct walkctx {
    ot_delta_section_fn fn;
    void *user;
} walkctx;

static int walk_one(void *user, const sec *s)
{
    walkctx *w = user;
    float mn = INFINITY, mx = -INFINITY, tmp[256];
    size_t n = (size_t)(s->count * s->cols), i, k;
    const uint8_t *v = s->values;

    for (i = 0; i < n; i += k) {
        size_t nn = n - i < 256 ? n - i : 256;
        oti_dequantize(s->venc, v + i * s->vb, nn, s->scale, tmp);
        for (k = 0; k < nn; k++) {
            if (tmp[k] < mn)
                mn = tmp[k];
            if (tmp[k] > mx)
                mx = tmp[k];
        }
    }
    return w->fn(w->user, (uint32_t)s->block, s->array, s->venc, s->layout, s->first, s->count,
                 s->cols, (size_t)(s->values + n * s->vb - s->start), mn, mx);
}

ot_status ot_delta_walk(const void *data, size_t len, ot_delta_section_fn fn, void *user)
{
    char msg[OTI_ERRMSG_LEN];
    oti_frame f;
    walkctx w;
    ot_status st;

    if (fn == NULL || (data == NULL && len > 0))
        return OT_EINVAL;
    /* check first: the callback never sees a section of a bad frame */
    if ((st = check_frame(data, len, 0, NULL, &f, msg, NULL, NULL)) != OT_OK)
        return st;
    w.fn = fn;
    w.user = user;
    return check_frame(data, len, 0, NULL, &f, msg, walk_one, &w);
}

ot_status ot_delta_control_payload(const void *data, size_t len, const uint8_t **payload,
                                   size_t *n)
{
    char msg[OTI_ERRMSG_LEN];
    oti_frame f;
    ot_status st;

    if (payload == NULL || n == NULL || (data == NULL && len > 0))
        return OT_EINVAL;
    if ((st = check_frame(data, len, 0, NULL, &f, msg, NULL, NULL)) != OT_OK)
        return st;
    if (f.kind != OTI_KIND_CONTROL)
        return OT_EINVAL;
    *payload = f.payload;
    *n = f.payload_len;
    return OT_OK;
}

const char *ot_delta_kind_name(int kind)
{
    switch (kind) {
    case OT_DELTA_ADD: return "ADD";
    case OT_DELTA_SET: return "SET";
    case OT_DELTA_FULL: return "FULL";
    case OT_DELTA_CONTROL: return "CONTROL";
    default: return "?";
    }
}

const char *ot_delta_encoding_name(int encoding)
{
    switch (encoding) {
    case OTI_ENC_FP32: return "fp32";
    case OTI_ENC_FP16: return "fp16";
    case OTI_ENC_BF16: return "bf16";
    case OTI_ENC_INT8: return "int8";
    default: return "?";
    }
}

/* ---- decoder handle ------------------------------------------------------------------ */

ot_status ot_delta_decoder_create(const ot_config *cfg, ot_delta_decoder **out)
{
    oti_alloc a;
    ot_delta_decoder *dec;

    if (out == NULL)
        return OT_EINVAL;
    a = oti_cfg_alloc(cfg);
    dec = oti_calloc(&a, 1, sizeof(*dec));
    if (dec == NULL)
        return OT_ENOMEM;
    dec->alloc = a;
    dec->max_message = (size_t)oti_cfg_i64(cfg, OT_OPT_MAX_MESSAGE);
    dec->hi = UINT64_MAX;
    *out = dec;
    return OT_OK;
}

void ot_delta_decoder_destroy(ot_delta_decoder *dec)
{
    oti_alloc a;

    if (dec == NULL)
        return;
    a = dec->alloc;
    oti_free(&a, dec->shape, dec->shape_cap * sizeof(*dec->shape));
    oti_free(&a, dec->secs, dec->secs_cap * sizeof(sec));
    oti_free(&a, dec, sizeof(*dec));
}

const char *ot_delta_decoder_errmsg(const ot_delta_decoder *dec)
{
    return dec != NULL ? dec->errmsg : "";
}

ot_status ot_delta_decoder_set_shard(ot_delta_decoder *dec, uint32_t shard, uint64_t lo,
                                     uint64_t hi)
{
    if (dec == NULL)
        return OT_EINVAL;
    if (lo > hi)
        return oti_err(dec->errmsg, OT_EINVAL, "shard range [%llu, %llu) is empty or reversed",
                       (unsigned long long)lo, (unsigned long long)hi);
    dec->shard_set = 1;
    dec->shard = shard;
    dec->lo = lo;
    dec->hi = hi;
    return OT_OK;
}
