/*
 * predict_wire.h - the prediction request and reply of a predictor's
 * serving socket (docs/wire-format.md, "Prediction requests"), shared by
 * predict_serve.c and predict_client.c.  Nothing here is exported.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_PREDICT_WIRE_H
#define OT_PREDICT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define OTI_PQ_HEADER 12        /* request header bytes */
#define OTI_PR_HEADER 20        /* reply header bytes */
#define OTI_PQ_VERSION 1
#define OTI_PQ_TEXT 0           /* body: VW text lines */
#define OTI_PQ_BINARY 1         /* body: hashed features */
#define OTI_PQ_FEATURE 9        /* binary: u8 ns, u32 hash, f32 value */

/* A parsed request header. */
typedef struct oti_pq {
    int form;            /* OTI_PQ_TEXT or OTI_PQ_BINARY */
    uint32_t count;      /* examples */
    const uint8_t *body; /* after the header */
    size_t body_len;
} oti_pq;

/* Writes a request header for `count` examples of `form` into out. */
void oti_pq_header(uint8_t out[OTI_PQ_HEADER], int form, uint32_t count);

/* Checks and splits a request's header.  OT_EFORMAT with the detail in err. */
ot_status oti_pq_parse(const uint8_t *req, size_t len, oti_pq *out, char *err);

/*
 * Fills ex (already cleared) with example `*off` of a request body: one text
 * line, or one binary record.  *off advances past it.  OT_EFORMAT (and the
 * parser's statuses) with the detail in err; OT_EEOF when the body ends.
 */
ot_status oti_pq_next(const oti_pq *q, size_t *off, ot_example *ex, char *err);

#endif /* OT_PREDICT_WIRE_H */
