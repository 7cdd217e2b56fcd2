/*
 * shard.c - assembling a model from the masters of a sharded server's
 * shards (docs/deployment.md, "Key ranges").
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "model.h"
#include "params.h"
#include "protocol.h"

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
