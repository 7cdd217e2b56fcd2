/*
 * shard.c - key-range shards: splitting a trainer's delta frame into one
 * frame per shard, and assembling a model from the masters of a sharded
 * server's shards (docs/deployment.md, "Key ranges").
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "delta.h"
#include "model.h"
#include "params.h"
#include "protocol.h"
#include "shard.h"

ot_status ot_model_copy_shard(ot_model *dst, const ot_model *src, uint32_t shard,
                              uint32_t num_shards)
{
    oti_params *d;
    const oti_params *s;
    uint64_t lo, hi;
    size_t b;
    ot_status st;

    if (dst == NULL || src == NULL)
        return OT_EINVAL;
    d = oti_model_params(dst);
    s = oti_model_params_c(src);
    if (d->fingerprint != s->fingerprint || d->nblocks != s->nblocks)
        return OT_EMISMATCH;
    if ((st = oti_shard_range(s, shard, num_shards, &lo, &hi)) != OT_OK)
        return st;
    for (b = 0; b < s->nblocks; b++) {
        const oti_block *sb = &s->blocks[b];
        oti_block *db = &d->blocks[b];
        uint64_t r0, r1;
        size_t off, n;
        int a;
        oti_shard_rows(s, b, lo, hi, &r0, &r1);
        if (r0 == r1)
            continue;
        off = (size_t)(r0 * sb->cols);
        n = (size_t)((r1 - r0) * sb->cols);
        memcpy(db->w + off, sb->w + off, n * sizeof(float));
        for (a = 0; a < sb->nstate && a < db->nstate; a++)
            memcpy(db->s[a] + off, sb->s[a] + off, n * sizeof(float));
    }
    return OT_OK;
}

/* ---- splitting a delta frame by key range ------------------------------------ */

/* One parsed section of the frame being split. */
typedef struct ssec {
    const oti_block *blk;
    uint64_t block, first, count;
    uint32_t cols;
    uint8_t array, enc, layout;
    const uint8_t *scale;  /* int8: the 4 scale bytes */
    size_t rowbytes;       /* value bytes per row */
} ssec;

typedef struct split_state {
    const oti_alloc *a;
    const uint64_t *bounds;
    uint32_t n;
    oti_split_buf *out;
    uint64_t *entries;     /* n counters */
} split_state;

/* The shard whose range holds flat index x (bounds[0] <= x < bounds[n] is
 * checked by the caller). */
static uint32_t shard_of(const split_state *z, uint64_t x)
{
    uint32_t lo = 0, hi = z->n;

    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->bounds[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Makes room for `need` more bytes after out->len. */
static int split_room(const oti_alloc *a, oti_split_buf *b, size_t need)
{
    size_t ncap;
    uint8_t *d;

    if (need <= b->cap - b->len)
        return 0;
    if (need > SIZE_MAX - b->len)
        return -1;
    ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + need) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap *= 2;
    }
    if ((d = oti_realloc(a, b->data, b->cap, ncap)) == NULL)
        return -1;
    b->data = d;
    b->cap = ncap;
    return 0;
}

/* Appends rows of section s to shard i: `count` rows from row `first`, the
 * gap bytes [g0, g1) (sparse), the value bytes at v. */
static int split_emit(split_state *z, uint32_t i, const ssec *s, uint64_t first, uint64_t count,
                      const uint8_t *g0, const uint8_t *g1, const uint8_t *v)
{
    oti_split_buf *b = &z->out[i];
    size_t glen = (size_t)(g1 - g0), vlen = (size_t)count * s->rowbytes;
    size_t need = oti_varint_len(s->block) + 3 + oti_varint_len(s->cols) +
                  oti_varint_len(first) + oti_varint_len(count) + (s->scale != NULL ? 4 : 0) +
                  glen + vlen;
    uint8_t *o;

    if (split_room(z->a, b, need) != 0)
        return -1;
    o = b->data + b->len;
    o = oti_put_varint(o, s->block);
    *o++ = s->array;
    *o++ = s->enc;
    *o++ = s->layout;
    o = oti_put_varint(o, s->cols);
    o = oti_put_varint(o, first);
    o = oti_put_varint(o, count);
    if (s->scale != NULL) {
        memcpy(o, s->scale, 4);
        o += 4;
    }
    if (glen > 0) {
        memcpy(o, g0, glen);
        o += glen;
    }
    memcpy(o, v, vlen);
    b->len += need;
    z->entries[i] += count * s->cols;
    return 0;
}

/* Skips `n` varints; NULL when the bytes end first. */
static const uint8_t *skip_varints(const uint8_t *q, const uint8_t *end, uint64_t n)
{
    while (n > 0) {
        if (q >= end)
            return NULL;
        n -= (*q++ & 0x80) == 0;
    }
    return q;
}

/* Splits one sparse section whose gaps start at q; returns the byte after
 * its values, NULL for a malformed section, or (split_failed) on ENOMEM. */
static const uint8_t split_failed_byte = 0;
#define SPLIT_NOMEM (&split_failed_byte)

static const uint8_t *split_sparse(split_state *z, const ssec *s, const uint8_t *q,
                                   const uint8_t *end, uint32_t first_shard, uint32_t last_shard)
{
    const uint8_t *gaps = q, *g, *gend, *v;
    uint64_t row, k, part_start = 0, part_first = s->first, hi;
    const uint8_t *part_g0 = gaps;
    uint32_t i;

    if ((gend = skip_varints(q, end, s->count - 1)) == NULL)
        return NULL;
    if (s->count > (size_t)(end - gend) / s->rowbytes)
        return NULL;
    v = gend;
    if (first_shard == last_shard) {
        if (split_emit(z, first_shard, s, s->first, s->count, gaps, gend, v) != 0)
            return SPLIT_NOMEM;
        return v + (size_t)s->count * s->rowbytes;
    }
    i = shard_of(z, s->blk->offset + s->first * s->cols);
    hi = z->bounds[i + 1];
    row = s->first;
    g = gaps;
    for (k = 1; k < s->count; k++) {
        uint64_t gap;
        const uint8_t *gk = g;
        if (oti_get_varint(&g, gend, &gap) != 0 || gap == 0 || gap >= s->blk->rows - row)
            return NULL;
        row += gap;
        if (s->blk->offset + row * s->cols >= hi) {
            /* rows [part_start, k) go to shard i; gap k is dropped */
            if (split_emit(z, i, s, part_first, k - part_start, part_g0, gk,
                           v + (size_t)part_start * s->rowbytes) != 0)
                return SPLIT_NOMEM;
            i = shard_of(z, s->blk->offset + row * s->cols);
            hi = z->bounds[i + 1];
            part_start = k;
            part_first = row;
            part_g0 = g;
        }
    }
    if (split_emit(z, i, s, part_first, s->count - part_start, part_g0, gend,
                   v + (size_t)part_start * s->rowbytes) != 0)
        return SPLIT_NOMEM;
    return v + (size_t)s->count * s->rowbytes;
}

/* Splits one dense section whose values start at q (see split_sparse). */
static const uint8_t *split_dense(split_state *z, const ssec *s, const uint8_t *q,
                                  const uint8_t *end, uint32_t first_shard, uint32_t last_shard)
{
    uint64_t row = s->first, stop;

    if (s->count > s->blk->rows - s->first || s->count > (size_t)(end - q) / s->rowbytes)
        return NULL;
    stop = s->first + s->count;
    if (first_shard == last_shard) {
        if (split_emit(z, first_shard, s, s->first, s->count, q, q, q) != 0)
            return SPLIT_NOMEM;
        return q + (size_t)s->count * s->rowbytes;
    }
    while (row < stop) {
        uint32_t i = shard_of(z, s->blk->offset + row * s->cols);
        uint64_t hi = z->bounds[i + 1], lim;
        /* rows r with offset + r * cols < hi: r < ceil((hi - offset) / cols) */
        lim = hi >= s->blk->offset + s->blk->rows * s->cols
                  ? stop
                  : (hi - s->blk->offset + s->cols - 1) / s->cols;
        if (lim > stop)
            lim = stop;
        if (split_emit(z, i, s, row, lim - row, q, q,
                       q + (size_t)(row - s->first) * s->rowbytes) != 0)
            return SPLIT_NOMEM;
        row = lim;
    }
    return q + (size_t)s->count * s->rowbytes;
}

ot_status oti_shard_split(const oti_alloc *a, const oti_params *p, const uint8_t *frame,
                          size_t len, const uint64_t *bounds, const uint64_t *base, uint32_t n,
                          oti_split_buf *out, char *err)
{
    uint64_t entries_buf[16], *entries = entries_buf;
    const uint8_t *q, *end;
    size_t hlen, plen;
    split_state z;
    ot_status st = OT_OK;
    uint32_t i;

    if (a == NULL || p == NULL || frame == NULL || bounds == NULL || base == NULL || n == 0 ||
        out == NULL)
        return oti_err(err, OT_EINVAL, "NULL argument or no shards");
    if (len < OTI_HEADER_SIZE || frame[OTI_H_MAGIC] != OTI_FRAME_MAGIC0 ||
        frame[OTI_H_MAGIC + 1] != OTI_FRAME_MAGIC1 || frame[OTI_H_MAGIC + 2] != OTI_FRAME_MAGIC2 ||
        frame[OTI_H_MAGIC + 3] != OTI_FRAME_MAGIC3 || frame[OTI_H_MAJOR] != OTI_FRAME_MAJOR ||
        frame[OTI_H_KIND] != OT_DELTA_ADD)
        return oti_err(err, OT_EFORMAT, "not an ADD frame");
    hlen = oti_get16(frame + OTI_H_HLEN);
    plen = oti_get32(frame + OTI_H_PAYLOAD);
    if (hlen < OTI_HEADER_SIZE || hlen > len || plen != len - hlen)
        return oti_err(err, OT_EFORMAT, "frame lengths do not add up");
    if (oti_get64(frame + OTI_H_FINGERPRINT) != p->fingerprint)
        return oti_err(err, OT_EMISMATCH, "frame of another model");
    if (n > sizeof(entries_buf) / sizeof(entries_buf[0]) &&
        (entries = oti_calloc(a, n, sizeof(*entries))) == NULL)
        return oti_err(err, OT_ENOMEM, "out of memory");
    memset(entries, 0, n * sizeof(*entries));
    z.a = a;
    z.bounds = bounds;
    z.n = n;
    z.out = out;
    z.entries = entries;
    for (i = 0; i < n; i++) {
        out[i].len = 0;
        if (split_room(a, &out[i], hlen + plen / n) != 0) {
            st = oti_err(err, OT_ENOMEM, "out of memory");
            goto done;
        }
        memcpy(out[i].data, frame, hlen);
        out[i].len = hlen;
    }
    q = frame + hlen;
    end = frame + len;
    while (q < end) {
        ssec s;
        uint64_t v, last_flat;
        uint32_t f0, f1;
        const uint8_t *next;
        memset(&s, 0, sizeof(s));
        if (oti_get_varint(&q, end, &s.block) != 0 || s.block >= p->nblocks || end - q < 3) {
            st = oti_err(err, OT_EFORMAT, "malformed section");
            goto done;
        }
        s.blk = &p->blocks[s.block];
        s.array = q[0];
        s.enc = q[1];
        s.layout = q[2];
        q += 3;
        if (s.array >= OTI_NARRAYS || s.enc > OTI_ENC_INT8 || s.layout > OTI_LAYOUT_DENSE ||
            oti_get_varint(&q, end, &v) != 0 || v != s.blk->cols ||
            oti_get_varint(&q, end, &s.first) != 0 || s.first >= s.blk->rows ||
            oti_get_varint(&q, end, &s.count) != 0 || s.count == 0) {
            st = oti_err(err, OT_EFORMAT, "malformed section");
            goto done;
        }
        s.cols = s.blk->cols;
        s.rowbytes = (size_t)s.cols * oti_enc_size(s.enc);
        if (s.enc == OTI_ENC_INT8) {
            if (end - q < 4) {
                st = oti_err(err, OT_EFORMAT, "malformed section");
                goto done;
            }
            s.scale = q;
            q += 4;
        }
        /* the shards of the block's first and last row bound the section's */
        last_flat = s.blk->offset + (s.blk->rows - 1) * s.cols;
        if (s.blk->offset < bounds[0] || last_flat >= bounds[n]) {
            st = oti_err(err, OT_EFORMAT, "block %llu lies outside the key ranges",
                         (unsigned long long)s.block);
            goto done;
        }
        f0 = shard_of(&z, s.blk->offset);
        f1 = shard_of(&z, last_flat);
        next = s.layout == OTI_LAYOUT_SPARSE ? split_sparse(&z, &s, q, end, f0, f1)
                                             : split_dense(&z, &s, q, end, f0, f1);
        if (next == SPLIT_NOMEM) {
            st = oti_err(err, OT_ENOMEM, "out of memory");
            goto done;
        }
        if (next == NULL) {
            st = oti_err(err, OT_EFORMAT, "malformed section");
            goto done;
        }
        q = next;
    }
    for (i = 0; i < n; i++) {
        uint8_t *d = out[i].data;
        if (entries[i] > UINT32_MAX || out[i].len - hlen > UINT32_MAX) {
            st = oti_err(err, OT_ETOOBIG, "shard %u's frame is too large", (unsigned)i);
            goto done;
        }
        oti_put32(d + OTI_H_SHARD, i);
        oti_put64(d + OTI_H_BASE_VERSION, base[i]);
        oti_put64(d + OTI_H_NEW_VERSION, 0);
        oti_put32(d + OTI_H_ENTRIES, (uint32_t)entries[i]);
        oti_put32(d + OTI_H_PAYLOAD, (uint32_t)(out[i].len - hlen));
        oti_put32(d + OTI_H_CHECKSUM, oti_frame_crc(d, out[i].len));
    }
done:
    if (entries != entries_buf)
        oti_free(a, entries, n * sizeof(*entries));
    return st;
}
