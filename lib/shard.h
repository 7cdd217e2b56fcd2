/*
 * shard.h - splitting a trainer's delta frame by key range, one frame per
 * parameter-server shard (docs/deployment.md, "Key ranges").  Nothing here
 * is exported.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_SHARD_H
#define OT_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "params.h"

/* One shard's output of oti_shard_split: a buffer kept and reused across
 * splits (grown with the allocator given to the split, freed by the owner
 * with oti_free(a, data, cap)). */
typedef struct oti_split_buf {
    uint8_t *data;
    size_t cap;
    size_t len; /* the frame's length after a successful split */
} oti_split_buf;

/*
 * Splits ADD frame `frame` (`len` bytes, made by this process's encoder for
 * the model of `p`) into `n` ADD frames, one per key range: frame i holds
 * the rows whose first flat index lies in [bounds[i], bounds[i + 1]), and
 * goes to shard i with base version base[i] and new version 0; every other
 * header field (fingerprint, sender, sequence, flags) is the input's.
 * Sections are copied byte for byte (same value encoding, same int8
 * scale); a section that crosses a bound is cut in two at the first row
 * past it.  One pass over the payload, no decoding of values, no check of
 * the checksum: the input is trusted to be well formed, and a section that
 * is not (a bound overrun, a block or column count that does not match `p`)
 * gives OT_EFORMAT rather than a crash.  A shard with no rows gets a frame
 * of no entries.  bounds has n + 1 increasing values; n >= 1.
 * OT_EINVAL, OT_EFORMAT, OT_ENOMEM (the outputs' lengths are then
 * meaningless; their buffers stay owned by the caller).
 */
ot_status oti_shard_split(const oti_alloc *a, const oti_params *p, const uint8_t *frame,
                          size_t len, const uint64_t *bounds, const uint64_t *base, uint32_t n,
                          oti_split_buf *out, char *err);

#endif /* OT_SHARD_H */
