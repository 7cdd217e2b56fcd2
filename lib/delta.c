/*
 * delta.c - the public face of snapshots and the delta codec: encoder and
 * decoder handles, and the functions that take an ot_model (through its
 * oti_params view) or an ot_snapshot.
 *
 * A public call that advances a snapshot consumes the caller's reference and
 * hands back the advanced one: when the caller holds the only reference the
 * snapshot is advanced in place; otherwise a new snapshot sharing its pages
 * is made and advanced (copy on write), and the old reference is released
 * on success.  On error *snap is left as it was.
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "delta.h"
#include "model.h"

/* ---- encoder handle -------------------------------------------------------------- */

ot_status ot_delta_encoder_create(const ot_config *cfg, ot_delta_encoder **out)
{
    oti_alloc a;
    ot_delta_encoder *e;

    if (out == NULL)
        return OT_EINVAL;
    a = oti_cfg_alloc(cfg);
    e = oti_calloc(&a, 1, sizeof(*e));
    if (e == NULL)
        return OT_ENOMEM;
    e->alloc = a;
    e->source = oti_cfg_choice(cfg, OT_OPT_DELTA_SOURCE);
    e->threshold = (float)oti_cfg_f64(cfg, OT_OPT_THRESHOLD);
    e->threshold_rel = (float)oti_cfg_f64(cfg, OT_OPT_THRESHOLD_REL);
    e->max_entries = (uint64_t)oti_cfg_i64(cfg, OT_OPT_MAX_ENTRIES);
    e->encoding = oti_cfg_choice(cfg, OT_OPT_VALUE_ENCODING);
    e->stochastic = oti_cfg_i64(cfg, OT_OPT_STOCHASTIC_ROUNDING) != 0;
    e->max_message = (size_t)oti_cfg_i64(cfg, OT_OPT_MAX_MESSAGE);
    oti_rng_seed(&e->rng, (uint64_t)oti_cfg_i64(cfg, OT_OPT_SEED) ^ UINT64_C(0x6f74646c74610001));
    e->seq = 1;
    e->nt_min = (size_t)32 << 20;
    *out = e;
    return OT_OK;
}

#define FREE_SCRATCH(e, field) oti_free(&(e)->alloc, (e)->field, (e)->field##_cap * sizeof(*(e)->field))

void ot_delta_encoder_destroy(ot_delta_encoder *enc)
{
    oti_alloc a;

    if (enc == NULL)
        return;
    a = enc->alloc;
    FREE_SCRATCH(enc, bc);
    FREE_SCRATCH(enc, rows);
    FREE_SCRATCH(enc, tmp);
    FREE_SCRATCH(enc, sel);
    FREE_SCRATCH(enc, cidx);
    FREE_SCRATCH(enc, vals);
    FREE_SCRATCH(enc, outv);
    FREE_SCRATCH(enc, deq);
    FREE_SCRATCH(enc, mags);
    FREE_SCRATCH(enc, wts);
    FREE_SCRATCH(enc, edge);
    oti_free(&a, enc, sizeof(*enc));
}

const char *ot_delta_encoder_errmsg(const ot_delta_encoder *enc)
{
    return enc != NULL ? enc->errmsg : "";
}

ot_status ot_delta_encoder_set_ids(ot_delta_encoder *enc, uint32_t shard, uint32_t sender)
{
    if (enc == NULL)
        return OT_EINVAL;
    enc->shard = shard;
    enc->sender = sender;
    return OT_OK;
}

ot_status ot_delta_encoder_set_sequence(ot_delta_encoder *enc, uint64_t next)
{
    if (enc == NULL)
        return OT_EINVAL;
    enc->seq = next;
    return OT_OK;
}

uint64_t ot_delta_encoder_sequence(const ot_delta_encoder *enc)
{
    return enc != NULL ? enc->seq : 0;
}

ot_status ot_delta_encoder_set_versions(ot_delta_encoder *enc, uint64_t base, uint64_t new_version)
{
    if (enc == NULL)
        return OT_EINVAL;
    enc->base_version = base;
    enc->new_version = new_version;
    return OT_OK;
}

void ot_delta_encoder_reset(ot_delta_encoder *enc)
{
    if (enc != NULL)
        enc->full_active = 0;
}

uint64_t ot_delta_encoder_nonfinite(const ot_delta_encoder *enc)
{
    return enc != NULL ? enc->nonfinite : 0;
}

/* ---- encoding ------------------------------------------------------------------------ */

size_t ot_delta_encode_bound(const ot_delta_encoder *enc, const ot_model *m, int kind)
{
    if (enc == NULL || m == NULL || kind < OT_DELTA_ADD || kind > OT_DELTA_FULL)
        return 0;
    return oti_delta_encode_bound(enc, oti_model_params_c(m), kind == OT_DELTA_FULL);
}

static ot_status encode_snap(ot_delta_encoder *enc, ot_model *m, ot_snapshot **snap, int kind,
                             uint8_t *dst, size_t cap, size_t *len, int *more)
{
    ot_snapshot *w;
    ot_status st;

    if (enc == NULL)
        return OT_EINVAL;
    if (m == NULL || snap == NULL || *snap == NULL || len == NULL || (dst == NULL && cap > 0))
        return oti_err(enc->errmsg, OT_EINVAL, "NULL argument");
    if ((st = oti_snapshot_writable(*snap, &w)) != OT_OK)
        return oti_err(enc->errmsg, st, "out of memory sharing the snapshot");
    if (kind == OTI_KIND_ADD)
        st = oti_delta_encode_add(enc, oti_model_params(m), &w->body, dst, cap, len, more);
    else
        st = oti_delta_encode_set(enc, oti_model_params(m), &w->body, kind == OTI_KIND_FULL, dst,
                                  cap, len, more);
    oti_snapshot_commit(snap, w, st);
    return st;
}

/* Sizes the frame first (a pass that changes nothing), then encodes it into
 * a buffer of exactly that size. */
static ot_status encode_snap_buf(ot_delta_encoder *enc, ot_model *m, ot_snapshot **snap, int kind,
                                 ot_buf **out, int *more)
{
    size_t len = 0, len2 = 0;
    ot_status st;
    ot_buf *b;

    if (enc == NULL)
        return OT_EINVAL;
    if (out == NULL)
        return oti_err(enc->errmsg, OT_EINVAL, "NULL argument");
    st = encode_snap(enc, m, snap, kind, NULL, 0, &len, NULL);
    if (st != OT_ENOSPC)
        return st;
    b = oti_buf_new(&enc->alloc, len);
    if (b == NULL)
        return oti_err(enc->errmsg, OT_ENOMEM, "out of memory for %zu bytes", len);
    enc->exact_cap = 1;
    st = encode_snap(enc, m, snap, kind, oti_buf_mut(b), len, &len2, more);
    enc->exact_cap = 0;
    if (st != OT_OK) {
        ot_buf_release(b);
        return st;
    }
    /* The sizing pass gives an upper bound; the buffer holds exactly the
     * frames written, never stray bytes after them. */
    oti_buf_shrink(b, len2);
    *out = b;
    return OT_OK;
}

ot_status ot_delta_encode(ot_delta_encoder *enc, ot_model *m, ot_snapshot **snap, void *dst,
                          size_t cap, size_t *len, int *more)
{
    return encode_snap(enc, m, snap, OTI_KIND_ADD, dst, cap, len, more);
}

ot_status ot_delta_encode_buf(ot_delta_encoder *enc, ot_model *m, ot_snapshot **snap, ot_buf **out,
                              int *more)
{
    return encode_snap_buf(enc, m, snap, OTI_KIND_ADD, out, more);
}

ot_status ot_delta_encode_set(ot_delta_encoder *enc, ot_model *m, ot_snapshot **published, int full,
                              void *dst, size_t cap, size_t *len, int *more)
{
    return encode_snap(enc, m, published, full ? OTI_KIND_FULL : OTI_KIND_SET, dst, cap, len,
                       more);
}

ot_status ot_delta_encode_set_buf(ot_delta_encoder *enc, ot_model *m, ot_snapshot **published,
                                  int full, ot_buf **out, int *more)
{
    return encode_snap_buf(enc, m, published, full ? OTI_KIND_FULL : OTI_KIND_SET, out, more);
}

ot_status ot_delta_encode_control(ot_delta_encoder *enc, uint64_t fingerprint, const void *payload,
                                  size_t n, void *dst, size_t cap, size_t *len)
{
    uint8_t *d = dst;

    if (enc == NULL)
        return OT_EINVAL;
    enc->errmsg[0] = '\0';
    if (len == NULL || (payload == NULL && n > 0) || (dst == NULL && cap > 0))
        return oti_err(enc->errmsg, OT_EINVAL, "NULL argument");
    if (n > enc->max_message - OTI_HEADER_SIZE)
        return oti_err(enc->errmsg, OT_ETOOBIG, "control payload of %zu bytes exceeds max_message",
                       n);
    if (cap < OTI_HEADER_SIZE + n) {
        *len = OTI_HEADER_SIZE + n;
        return oti_err(enc->errmsg, OT_ENOSPC, "the frame needs %zu bytes, the buffer has %zu",
                       *len, cap);
    }
    oti_frame_header(enc, d, OTI_KIND_CONTROL, OTI_FLAG_FIRST | OTI_FLAG_LAST, fingerprint);
    if (n > 0)
        memcpy(d + OTI_HEADER_SIZE, payload, n);
    oti_frame_finish(d, 0, n);
    *len = OTI_HEADER_SIZE + n;
    enc->seq++;
    return OT_OK;
}

ot_status ot_delta_merge(ot_delta_encoder *enc, const ot_model *m, const void *a, size_t alen,
                         const void *b, size_t blen, void *dst, size_t cap, size_t *len)
{
    if (enc == NULL)
        return OT_EINVAL;
    if (m == NULL)
        return oti_err(enc->errmsg, OT_EINVAL, "NULL model");
    return oti_delta_merge(enc, oti_model_params_c(m), a, alen, b, blen, dst, cap, len);
}

ot_status ot_delta_merge_buf(ot_delta_encoder *enc, const ot_model *m, const void *a, size_t alen,
                             const void *b, size_t blen, ot_buf **out)
{
    size_t len = 0;
    ot_status st;
    ot_buf *buf;

    if (enc == NULL)
        return OT_EINVAL;
    if (out == NULL)
        return oti_err(enc->errmsg, OT_EINVAL, "NULL argument");
    st = ot_delta_merge(enc, m, a, alen, b, blen, NULL, 0, &len);
    if (st != OT_ENOSPC)
        return st;
    buf = oti_buf_new(&enc->alloc, len);
    if (buf == NULL)
        return oti_err(enc->errmsg, OT_ENOMEM, "out of memory for %zu bytes", len);
    st = ot_delta_merge(enc, m, a, alen, b, blen, oti_buf_mut(buf), len, &len);
    if (st != OT_OK) {
        ot_buf_release(buf);
        return st;
    }
    *out = buf;
    return OT_OK;
}

/* ---- decoding ---------------------------------------------------------------------- */

ot_status ot_delta_validate(ot_delta_decoder *dec, const ot_model *m, const void *data, size_t len)
{
    oti_frame f;

    if (dec == NULL)
        return OT_EINVAL;
    if (m == NULL || (data == NULL && len > 0))
        return oti_err(dec->errmsg, OT_EINVAL, "NULL argument");
    return oti_delta_validate_params(dec, oti_model_params_c(m), data, len, &f);
}

ot_status ot_delta_apply(ot_delta_decoder *dec, ot_model *m, const void *data, size_t len)
{
    if (dec == NULL)
        return OT_EINVAL;
    if (m == NULL || (data == NULL && len > 0))
        return oti_err(dec->errmsg, OT_EINVAL, "NULL argument");
    return oti_delta_apply_params(dec, oti_model_params(m), data, len);
}

ot_status ot_delta_apply_snapshot(ot_delta_decoder *dec, ot_snapshot **snap, const void *data,
                                  size_t len)
{
    ot_snapshot *w;
    ot_status st;

    if (dec == NULL)
        return OT_EINVAL;
    if (snap == NULL || *snap == NULL || (data == NULL && len > 0))
        return oti_err(dec->errmsg, OT_EINVAL, "NULL argument");
    if ((st = oti_snapshot_writable(*snap, &w)) != OT_OK)
        return oti_err(dec->errmsg, st, "out of memory sharing the snapshot");
    st = oti_delta_apply_shadow(dec, &w->body, data, len);
    oti_snapshot_commit(snap, w, st);
    return st;
}

/* ---- snapshots of models -------------------------------------------------------------- */

ot_status ot_snapshot_create(const ot_config *cfg, const ot_model *m, uint64_t version,
                             ot_snapshot **out)
{
    oti_alloc a = oti_cfg_alloc(cfg);
    oti_shadow *sh;
    ot_status st;

    if (m == NULL || out == NULL)
        return OT_EINVAL;
    st = oti_shadow_create(&a, oti_model_params_c(m), oti_cfg_choice(cfg, OT_OPT_DELTA_SOURCE),
                           version, &sh);
    if (st != OT_OK)
        return st;
    if ((st = oti_shadow_into_snapshot(sh, out)) != OT_OK)
        oti_shadow_destroy(sh);
    return st;
}

ot_status ot_snapshot_update(const ot_snapshot *prev, const ot_model *m, uint64_t version,
                             ot_snapshot **out)
{
    const oti_params *p;
    oti_shadow *sh;
    ot_snapshot *s;
    ot_status st;

    if (prev == NULL || m == NULL || out == NULL)
        return OT_EINVAL;
    p = oti_model_params_c(m);
    if (!oti_shadow_matches(&prev->body, p))
        return OT_EMISMATCH;
    if ((st = oti_shadow_clone(&prev->body, &sh)) != OT_OK)
        return st;
    sh->version = version;
    if ((st = oti_shadow_into_snapshot(sh, &s)) != OT_OK) {
        oti_shadow_destroy(sh);
        return st;
    }
    if ((st = oti_snapshot_refresh(s, p)) != OT_OK) {
        ot_snapshot_release(s);
        return st;
    }
    *out = s;
    return OT_OK;
}
