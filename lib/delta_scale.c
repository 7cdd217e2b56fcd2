/*
 * delta_scale.c - multiplies the values of a delta frame in place, for the
 * parameter server's aggregation "mean" (every ADD frame scaled by
 * 1/num_trainers) and for a trainer taking back a refused delta (scale -1).
 *
 * The frame keeps its layout, its rows and its value encoding; only values
 * change, then the checksum is recomputed:
 *   fp32       each value times the factor (rounded once, to float);
 *   fp16/bf16  each value decoded, multiplied, re-encoded to nearest;
 *   int8       the section's scale times |factor| (the codes are kept, and
 *              negated for a negative factor), so the result is exact.
 * Section layout: docs/wire-format.md.
 *
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <string.h>

#include "delta.h"
#include "delta_scale.h"

static float rdf(const uint8_t *p)
{
    uint32_t x = oti_get32(p);
    float f;

    memcpy(&f, &x, 4);
    return f;
}

static void wrf(uint8_t *p, float f)
{
    uint32_t x;

    memcpy(&x, &f, 4);
    oti_put32(p, x);
}

static ot_status scale_values(uint8_t *v, size_t n, int venc, float factor)
{
    size_t i;

    switch (venc) {
    case OTI_ENC_FP32:
        for (i = 0; i < n; i++) {
            float f = rdf(v + 4 * i) * factor;
            if (!isfinite(f))
                return OT_ENONFINITE;
            wrf(v + 4 * i, f);
        }
        return OT_OK;
    case OTI_ENC_FP16:
        for (i = 0; i < n; i++)
            oti_put16(v + 2 * i, oti_f32_to_f16(oti_f16_to_f32(oti_get16(v + 2 * i)) * factor));
        return OT_OK;
    case OTI_ENC_BF16:
        for (i = 0; i < n; i++)
            oti_put16(v + 2 * i,
                      oti_f32_to_bf16(oti_bf16_to_f32(oti_get16(v + 2 * i)) * factor));
        return OT_OK;
    default: /* int8: codes are negated for a negative factor; -127..127 stays in range */
        if (factor < 0.0f)
            for (i = 0; i < n; i++)
                v[i] = (uint8_t)(int8_t)(-(int)(int8_t)v[i]);
        return OT_OK;
    }
}

ot_status oti_delta_scale(uint8_t *frame, size_t len, float factor)
{
    oti_frame f;
    uint8_t *p, *end;
    char err[OTI_ERRMSG_LEN];
    ot_status st;

    if (frame == NULL || !isfinite(factor) || fabsf(factor) > 1.0f)
        return OT_EINVAL;
    if ((st = oti_frame_check(frame, len, 0, &f, err)) != OT_OK)
        return st;
    if (f.kind == OTI_KIND_CONTROL)
        return OT_EINVAL;
    p = frame + f.header_len;
    end = frame + len;
    while (p < end) {
        uint64_t block, cols, first, count, i;
        int venc, layout;
        const uint8_t *q = p;
        size_t vb;

        /* The frame checked, so these reads stay inside it. */
        if (oti_get_varint(&q, end, &block) != 0 || end - q < 3)
            return OT_EFORMAT;
        venc = q[1];
        layout = q[2];
        q += 3;
        if (oti_get_varint(&q, end, &cols) != 0 || oti_get_varint(&q, end, &first) != 0 ||
            oti_get_varint(&q, end, &count) != 0)
            return OT_EFORMAT;
        vb = oti_enc_size(venc);
        p = (uint8_t *)frame + (q - frame);
        if (venc == OTI_ENC_INT8) {
            float sc;
            if (end - p < 4)
                return OT_EFORMAT;
            sc = rdf(p) * fabsf(factor);
            wrf(p, sc);
            p += 4;
        }
        if (layout == OTI_LAYOUT_SPARSE) {
            q = p;
            for (i = 1; i < count; i++) {
                uint64_t gap;
                if (oti_get_varint(&q, end, &gap) != 0)
                    return OT_EFORMAT;
            }
            p = (uint8_t *)frame + (q - frame);
        }
        if (cols == 0 || count > (uint64_t)(end - p) / vb / cols)
            return OT_EFORMAT;
        if ((st = scale_values(p, (size_t)(count * cols), venc, factor)) != OT_OK)
            return st;
        p += (size_t)(count * cols) * vb;
    }
    oti_put32(frame + OTI_H_CHECKSUM, oti_frame_crc(frame, len));
    return OT_OK;
}
