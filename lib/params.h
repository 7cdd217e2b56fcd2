/*
 * params.h - a model's parameters as blocks over one flat index space.
 *
 * Every model (wide, embeddings, deep) exposes its arrays through this view,
 * so snapshots, deltas, shards and files treat all models alike.  The delta
 * codec, snapshots and roles are written against this view only; model.c
 * owns the storage and keeps it in this shape.
 *
 * Flat index of value (row r, column c) of block b: b->offset + r * b->cols + c.
 * Blocks are ordered by offset, contiguous, and cover [0, total).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_PARAMS_H
#define OT_PARAMS_H

#include <stddef.h>
#include <stdint.h>

enum {
    OTI_BLOCK_WIDE = 1,  /* hashed linear weights, cols = 1, plus the bias as its own block */
    OTI_BLOCK_BIAS = 2,  /* one weight */
    OTI_BLOCK_EMBED = 3, /* hashed embedding table: rows = 2^embedding_bits, cols = dim */
    OTI_BLOCK_DENSE = 4  /* a deep layer's weight matrix (rows = outputs, cols = inputs) or bias vector */
};

#define OTI_MAX_STATE 2 /* AdaGrad: s[0] = sum of squared gradients; FTRL: s[0] = z, s[1] = n */

typedef struct oti_block {
    int kind;
    char name[32];         /* "wide", "bias", "embed.u", "deep.0.w", "deep.0.b", ... */
    uint64_t offset;       /* flat index of (row 0, col 0) */
    uint64_t rows;
    uint32_t cols;
    float *w;              /* rows * cols weights, row-major; always current */
    float *s[OTI_MAX_STATE]; /* optimizer state arrays, same shape as w; NULL when absent */
    int nstate;            /* number of state arrays in use (0, 1 or 2) */
    int dense_hint;        /* 1: every example touches every row (deep layers) */

    /* Touched tracking, by row: a bitmap and the list of rows in first-touch
     * order since the tracker was last cleared.  For dense_hint blocks the
     * model sets all_touched instead of filling the list. */
    uint64_t *touched_bits; /* ceil(rows / 64) words */
    uint32_t *touched_list; /* capacity rows */
    uint64_t ntouched;
    int all_touched;
} oti_block;

/* Recomputes the weights of `row` of block `b` from its state (FTRL derives
 * w from z and n); NULL when weights are independent of state. */
typedef void (*oti_derive_fn)(void *ctx, oti_block *b, uint64_t row);

typedef struct oti_params {
    oti_block *blocks;
    size_t nblocks;
    uint64_t total;        /* size of the flat index space (sum of rows * cols) */
    uint64_t fingerprint;  /* hash of the shape: kinds, names, rows, cols, nstate */
    oti_derive_fn derive;
    void *derive_ctx;
} oti_params;

/* Marks a row touched (cheap; inline for the training loop). */
static inline void oti_block_touch(oti_block *b, uint64_t row)
{
    uint64_t bit = UINT64_C(1) << (row & 63);
    uint64_t *word = &b->touched_bits[row >> 6];

    if (!(*word & bit)) {
        *word |= bit;
        b->touched_list[b->ntouched++] = (uint32_t)row;
    }
}

/* Clears the touched tracker of every block: O(touched). */
void oti_params_clear_touched(oti_params *p);

/* The block holding flat index `idx`, or NULL past the end (binary search). */
oti_block *oti_params_find(const oti_params *p, uint64_t idx);

#endif /* OT_PARAMS_H */
