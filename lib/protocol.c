/*
 * protocol.c - CONTROL payloads, message splitting, HELLO and full-copy
 * fetching for the roles (docs/protocol.md).
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "delta.h"
#include "model.h"
#include "params.h"
#include "protocol.h"

/* Payload lengths, op byte included. */
#define LEN_FULL_REQ (1 + 8 + 4)
#define LEN_SYNC_ACK (1 + 1 + 8 + 1 + 8)
#define LEN_HELLO (1 + 4 + 4)
#define LEN_HELLO_ACK (1 + 8 + 8 + 8 + 8 + 4 + 4 + 8)

#define FETCH_RESTARTS 8

size_t oti_ctl_encode(const oti_ctl *c, uint8_t *out)
{
    out[0] = (uint8_t)c->op;
    switch (c->op) {
    case OTI_CTL_FULL_REQ:
        oti_put64(out + 1, c->version);
        oti_put32(out + 9, c->chunk);
        return LEN_FULL_REQ;
    case OTI_CTL_SYNC_ACK:
        out[1] = (uint8_t)(c->result != 0);
        oti_put64(out + 2, c->version);
        out[10] = (uint8_t)(c->resync != 0);
        oti_put64(out + 11, c->full_version);
        return LEN_SYNC_ACK;
    case OTI_CTL_HELLO:
        oti_put32(out + 1, c->shard);
        oti_put32(out + 5, c->num_shards);
        return LEN_HELLO;
    case OTI_CTL_HELLO_ACK:
        oti_put64(out + 1, c->fingerprint);
        oti_put64(out + 9, c->version);
        oti_put64(out + 17, c->lo);
        oti_put64(out + 25, c->hi);
        oti_put32(out + 33, c->shard);
        oti_put32(out + 37, c->num_shards);
        oti_put64(out + 41, c->last_sequence);
        return LEN_HELLO_ACK;
    default:
        return 0;
    }
}

ot_status oti_ctl_decode(const uint8_t *p, size_t n, oti_ctl *out)
{
    oti_ctl c;

    if (p == NULL || n < 1)
        return OT_EFORMAT;
    memset(&c, 0, sizeof(c));
    c.op = p[0];
    switch (c.op) {
    case OTI_CTL_FULL_REQ:
        if (n != LEN_FULL_REQ)
            return OT_EFORMAT;
        c.version = oti_get64(p + 1);
        c.chunk = oti_get32(p + 9);
        break;
    case OTI_CTL_SYNC_ACK:
        if (n != LEN_SYNC_ACK || p[1] > 1 || p[10] > 1)
            return OT_EFORMAT;
        c.result = p[1];
        c.version = oti_get64(p + 2);
        c.resync = p[10];
        c.full_version = oti_get64(p + 11);
        break;
    case OTI_CTL_HELLO:
        if (n != LEN_HELLO)
            return OT_EFORMAT;
        c.shard = oti_get32(p + 1);
        c.num_shards = oti_get32(p + 5);
        break;
    case OTI_CTL_HELLO_ACK:
        if (n != LEN_HELLO_ACK)
            return OT_EFORMAT;
        c.fingerprint = oti_get64(p + 1);
        c.version = oti_get64(p + 9);
        c.lo = oti_get64(p + 17);
        c.hi = oti_get64(p + 25);
        c.shard = oti_get32(p + 33);
        c.num_shards = oti_get32(p + 37);
        c.last_sequence = oti_get64(p + 41);
        break;
    default:
        return OT_EFORMAT;
    }
    *out = c;
    return OT_OK;
}

ot_status oti_ctl_frame(const oti_ctl *c, uint64_t fingerprint, uint32_t shard, uint32_t sender,
                        uint64_t sequence, uint64_t new_version, uint8_t *dst, size_t cap,
                        size_t *len)
{
    uint8_t payload[OTI_CTL_MAX];
    size_t n;

    if (c == NULL || len == NULL || (dst == NULL && cap > 0))
        return OT_EINVAL;
    if ((n = oti_ctl_encode(c, payload)) == 0)
        return OT_EINVAL;
    if (cap < OTI_HEADER_SIZE + n) {
        *len = OTI_HEADER_SIZE + n;
        return OT_ENOSPC;
    }
    {
        /* A throw-away encoder on the stack: only its header fields are
         * read, so making a CONTROL frame shares nothing between threads. */
        ot_delta_encoder e;
        memset(&e, 0, sizeof(e));
        e.shard = shard;
        e.sender = sender;
        e.seq = sequence;
        e.new_version = new_version;
        e.max_message = OTI_CTL_FRAME_MAX;
        oti_frame_header(&e, dst, OTI_KIND_CONTROL, OTI_FLAG_FIRST | OTI_FLAG_LAST, fingerprint);
    }
    memcpy(dst + OTI_HEADER_SIZE, payload, n);
    oti_frame_finish(dst, 0, n);
    *len = OTI_HEADER_SIZE + n;
    return OT_OK;
}

ot_status oti_ctl_parse(const uint8_t *frame, size_t len, oti_ctl *out, char *err)
{
    const uint8_t *payload;
    size_t n;
    uint64_t kind;
    ot_status st;
    char tmp[OTI_ERRMSG_LEN];

    if (err == NULL)
        err = tmp;
    if ((st = ot_delta_check(frame, len)) != OT_OK)
        return oti_err(err, st, "control frame: %s", ot_strerror(st));
    if (ot_delta_peek(frame, len, OT_DELTA_FIELD_KIND, &kind) != OT_OK ||
        kind != OT_DELTA_CONTROL)
        return oti_err(err, OT_EFORMAT, "expected a CONTROL frame, got %s",
                       ot_delta_kind_name((int)kind));
    if (ot_delta_control_payload(frame, len, &payload, &n) != OT_OK)
        return oti_err(err, OT_EFORMAT, "no control payload");
    if (oti_ctl_decode(payload, n, out) != OT_OK)
        return oti_err(err, OT_EFORMAT, "bad control payload (op %u, %zu bytes)",
                       n > 0 ? (unsigned)payload[0] : 0u, n);
    return OT_OK;
}

ot_status oti_frame_next(const uint8_t *msg, size_t len, size_t *off, const uint8_t **frame,
                         size_t *flen)
{
    uint64_t fl;
    ot_status st;

    if (msg == NULL || off == NULL || frame == NULL || flen == NULL || *off > len)
        return OT_EINVAL;
    if (*off == len)
        return OT_EEOF;
    if ((st = ot_delta_peek(msg + *off, len - *off, OT_DELTA_FIELD_FRAME_LENGTH, &fl)) != OT_OK)
        return st;
    if (fl < OTI_HEADER_SIZE || fl > len - *off)
        return OT_ECORRUPT;
    *frame = msg + *off;
    *flen = (size_t)fl;
    *off += (size_t)fl;
    return OT_OK;
}

ot_status oti_hello(oti_sock *sock, uint64_t fingerprint, uint32_t sender, uint32_t shard,
                    uint32_t num_shards, int32_t timeout_ms, oti_ctl *ack, char *err)
{
    uint8_t req[OTI_CTL_FRAME_MAX];
    size_t n;
    oti_ctl c;
    ot_buf *reply = NULL;
    ot_status st;
    char tmp[OTI_ERRMSG_LEN];

    if (err == NULL)
        err = tmp;
    if (sock == NULL || ack == NULL)
        return oti_err(err, OT_EINVAL, "NULL argument");
    memset(&c, 0, sizeof(c));
    c.op = OTI_CTL_HELLO;
    c.shard = shard;
    c.num_shards = num_shards;
    if ((st = oti_ctl_frame(&c, fingerprint, shard, sender, 0, 0, req, sizeof(req), &n)) != OT_OK)
        return oti_err(err, st, "cannot encode HELLO");
    if ((st = oti_sock_call(sock, req, n, timeout_ms, &reply, err)) != OT_OK)
        return st;
    st = oti_ctl_parse(ot_buf_data(reply), ot_buf_size(reply), &c, err);
    ot_buf_release(reply);
    if (st != OT_OK)
        return st;
    if (c.op != OTI_CTL_HELLO_ACK)
        return oti_err(err, OT_EFORMAT, "expected HELLO_ACK, got control op %d", c.op);
    if (c.fingerprint != fingerprint)
        return oti_err(err, OT_EMISMATCH,
                       "the server's model has fingerprint %016llx, this one %016llx",
                       (unsigned long long)c.fingerprint, (unsigned long long)fingerprint);
    *ack = c;
    return OT_OK;
}

/* Asks for one chunk; on OT_OK *reply holds the reply payload. */
static ot_status request_chunk(oti_sock *sock, uint64_t fingerprint, uint64_t version,
                               uint32_t chunk, int32_t timeout_ms, ot_buf **reply, char *err)
{
    uint8_t req[OTI_CTL_FRAME_MAX];
    size_t n;
    oti_ctl c;
    ot_status st;

    memset(&c, 0, sizeof(c));
    c.op = OTI_CTL_FULL_REQ;
    c.version = version;
    c.chunk = chunk;
    if ((st = oti_ctl_frame(&c, fingerprint, 0, 0, chunk, version, req, sizeof(req), &n)) !=
        OT_OK)
        return oti_err(err, st, "cannot encode FULL_REQ");
    return oti_sock_call(sock, req, n, timeout_ms, reply, err);
}

ot_status oti_fetch_full_copy(oti_sock *sock, ot_delta_decoder *dec, ot_model *model,
                              const ot_config *cfg, ot_snapshot **snap, uint64_t version,
                              int32_t timeout_ms, uint64_t *got_version, uint64_t *bytes,
                              char *err)
{
    uint64_t fingerprint, want = version, have = 0, received = 0;
    uint32_t chunk = 0;
    int restarts = 0;
    ot_status st;
    char tmp[OTI_ERRMSG_LEN];

    if (err == NULL)
        err = tmp;
    if (sock == NULL || dec == NULL || model == NULL)
        return oti_err(err, OT_EINVAL, "NULL argument");
    fingerprint = ot_model_fingerprint(model);
    for (;;) {
        ot_buf *reply = NULL;
        const uint8_t *d;
        size_t n;
        uint64_t kind = 0, flags = 0, fl = 0, nv = 0;
        int restart = 0;

        st = request_chunk(sock, fingerprint, want, chunk, timeout_ms, &reply, err);
        if (st == OT_ENOENT) {
            restart = 1;
        } else if (st != OT_OK) {
            return st;
        } else {
            d = ot_buf_data(reply);
            n = ot_buf_size(reply);
            received += n;
            if (ot_delta_peek(d, n, OT_DELTA_FIELD_KIND, &kind) != OT_OK ||
                ot_delta_peek(d, n, OT_DELTA_FIELD_FLAGS, &flags) != OT_OK ||
                ot_delta_peek(d, n, OT_DELTA_FIELD_FRAME_LENGTH, &fl) != OT_OK ||
                ot_delta_peek(d, n, OT_DELTA_FIELD_NEW_VERSION, &nv) != OT_OK ||
                kind != OT_DELTA_FULL || fl != n) {
                ot_buf_release(reply);
                return oti_err(err, OT_EFORMAT,
                               "full copy chunk %u: the reply is not one FULL frame (%zu bytes, "
                               "kind %llu, frame length %llu)",
                               chunk, n, (unsigned long long)kind, (unsigned long long)fl);
            }
            if (chunk == 0 && !(flags & OT_DELTA_FLAG_FIRST)) {
                ot_buf_release(reply);
                return oti_err(err, OT_EFORMAT, "full copy chunk 0 is not flagged FIRST");
            }
            if (chunk == 0) {
                have = nv;
                want = nv;
            } else if (nv != have || (flags & OT_DELTA_FLAG_FIRST)) {
                restart = 1; /* the copy changed between chunks */
            }
            if (!restart) {
                st = ot_delta_apply(dec, model, d, n);
                if (st != OT_OK) {
                    ot_buf_release(reply);
                    return oti_err(err, st, "full copy chunk %u: %s", chunk,
                                   ot_delta_decoder_errmsg(dec));
                }
            }
            ot_buf_release(reply);
            if (!restart && (flags & OT_DELTA_FLAG_LAST))
                break;
        }
        if (restart) {
            if (++restarts > FETCH_RESTARTS)
                return oti_err(err, OT_EBUSY, "the full copy changed %d times while loading it",
                               FETCH_RESTARTS);
            want = 0;
            chunk = 0;
            continue;
        }
        if (chunk == UINT32_MAX)
            return oti_err(err, OT_EFORMAT, "full copy without a LAST chunk");
        chunk++;
    }
    oti_params_clear_touched(oti_model_params(model));
    if (snap != NULL) {
        ot_snapshot *s = NULL;
        if ((st = ot_snapshot_create(cfg, model, have, &s)) != OT_OK)
            return oti_err(err, st, "cannot make a snapshot of the full copy");
        ot_snapshot_release(*snap);
        *snap = s;
    }
    if (got_version != NULL)
        *got_version = have;
    if (bytes != NULL)
        *bytes += received;
    err[0] = '\0';
    return OT_OK;
}

/* ---- sharding ------------------------------------------------------------- */

/* The first row boundary at or after flat index t (total when past the end). */
static uint64_t row_boundary(const oti_params *p, uint64_t t)
{
    size_t b;

    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        uint64_t end = blk->offset + blk->rows * blk->cols;
        if (t < end) {
            uint64_t r;
            if (t <= blk->offset)
                return blk->offset;
            r = (t - blk->offset + blk->cols - 1) / blk->cols;
            return blk->offset + r * blk->cols;
        }
    }
    return p->total;
}

ot_status oti_shard_range(const oti_params *p, uint32_t shard, uint32_t num_shards, uint64_t *lo,
                          uint64_t *hi)
{
    uint64_t a, b;

    if (p == NULL || lo == NULL || hi == NULL || num_shards == 0 || shard >= num_shards)
        return OT_EINVAL;
    /* floor(total * s / N) without overflow: total < 2^63 in practice, but
     * split the product to stay exact for any total. */
    a = shard == 0 ? 0
                   : row_boundary(p, (p->total / num_shards) * shard +
                                         (p->total % num_shards) * shard / num_shards);
    b = shard + 1 == num_shards
            ? p->total
            : row_boundary(p, (p->total / num_shards) * (shard + 1) +
                                  (p->total % num_shards) * (shard + 1) / num_shards);
    *lo = a;
    *hi = b;
    return a < b ? OT_OK : OT_ERANGE;
}

void oti_shard_rows(const oti_params *p, size_t b, uint64_t lo, uint64_t hi, uint64_t *r0,
                    uint64_t *r1)
{
    const oti_block *blk = &p->blocks[b];
    uint64_t end = blk->offset + blk->rows * blk->cols;

    *r0 = lo <= blk->offset ? 0
          : lo >= end       ? blk->rows
                            : (lo - blk->offset + blk->cols - 1) / blk->cols;
    *r1 = hi <= blk->offset ? 0
          : hi >= end       ? blk->rows
                            : (hi - blk->offset + blk->cols - 1) / blk->cols;
    if (*r1 < *r0)
        *r1 = *r0;
}
