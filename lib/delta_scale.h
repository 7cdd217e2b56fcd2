/*
 * delta_scale.h - scaling the values of a delta frame in place
 * (delta_scale.c).  Internal.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_DELTA_SCALE_H
#define OT_DELTA_SCALE_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/*
 * Multiplies every value of an ADD, SET or FULL frame by `factor`
 * (|factor| <= 1, finite) in place and rewrites its checksum.  The frame is
 * checked first (ot_delta_check's statuses); OT_EINVAL for a CONTROL frame
 * or a bad factor.  On error the frame may be partly scaled.
 */
ot_status oti_delta_scale(uint8_t *frame, size_t len, float factor);

#endif /* OT_DELTA_SCALE_H */
