/*
 * model.h - the model's internals, shared by model.c (forward, backward,
 * learn, predict), optim.c (per-coordinate optimizers) and model_io.c
 * (save and load).  Nothing here is exported.
 *
 * The parameters live in oti_params blocks (params.h), in this order:
 *   "bias" (1 x 1), "wide" (2^bits x 1), "embed.<ns>" (2^embedding_bits x
 *   dim) per embedded namespace in the order of the `embedding` option, then
 *   for each deep layer k: "deep.<k>.w" (out x in) and "deep.<k>.b" (out x 1).
 * docs/models.md describes the layout, the formulas and the file format.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_MODEL_H
#define OT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "params.h"

/* Choice indices of the options (the order of their words in config.c). */
enum { OTI_LOSS_LOGISTIC = 0, OTI_LOSS_SQUARED = 1 };
enum { OTI_ACT_RELU = 0, OTI_ACT_TANH = 1, OTI_ACT_SIGMOID = 2, OTI_ACT_LINEAR = 3 };

/* Per-block optimizer kinds.  The first three are the option's choices; the
 * fourth is what embedding and deep blocks use under "ftrl": an AdaGrad step
 * with FTRL's per-coordinate rate alpha / (beta + sqrt(n)). */
enum {
    OTI_OPT_SGD = 0,
    OTI_OPT_ADAGRAD = 1,
    OTI_OPT_FTRL = 2,
    OTI_OPT_ADAPTIVE = 3
};

#define OTI_MODEL_MAX_LAYERS 17 /* 16 hidden layers plus the output layer */

/* The options that define a model; what a model file stores. */
typedef struct oti_shape {
    uint32_t bits;
    int loss;          /* OTI_LOSS_* */
    int optimizer;     /* OTI_OPT_SGD, OTI_OPT_ADAGRAD or OTI_OPT_FTRL */
    int activation;    /* OTI_ACT_* */
    double learning_rate, power_t, l1, l2, ftrl_alpha, ftrl_beta, init_scale;
    uint32_t embedding_bits;
    uint32_t dense_dim;
    uint32_t seed;
    const char *quadratic;     /* the option strings, as given ("" when unset) */
    const char *embedding;
    const char *hidden_layers;
} oti_shape;

typedef struct oti_embed {
    uint8_t ns;        /* namespace byte */
    uint32_t dim;      /* columns of the table */
    uint32_t in_off;   /* where its pooled vector starts in the deep input */
    size_t block;      /* index of its block */
} oti_embed;

typedef struct oti_layer {
    uint32_t in, out;
    size_t wblock, bblock; /* indices of "deep.<k>.w" and "deep.<k>.b" */
    size_t in_off;         /* offset of this layer's input in the activation buffer */
    size_t out_off;        /* offset of its output */
} oti_layer;

struct ot_model {
    oti_alloc alloc;
    oti_shape shape;
    char *strings;          /* storage of the shape's three strings */
    size_t strings_size;

    oti_params params;
    int *block_opt;         /* per block: OTI_OPT_* */
    int *block_reg;         /* per block: 1 if l1/l2 apply (the wide block only) */

    /* Hyper-parameters as floats, ready for the hot path. */
    float lr, power_t, l1, l2, alpha, inv_alpha, beta;
    uint32_t wmask;         /* 2^bits - 1 */
    uint32_t emask;         /* 2^embedding_bits - 1 */

    uint8_t (*pairs)[2];    /* quadratic namespace pairs */
    size_t npairs;
    oti_embed *embeds;
    size_t nembeds;
    int16_t embed_of_ns[256]; /* namespace byte -> index in embeds, or -1 */
    oti_layer *layers;
    size_t nlayers;         /* 0: wide only, no deep part at all */
    uint32_t deep_in;       /* length of the deep input (dense_dim + embedding dims) */
    uint32_t max_width;     /* max of deep_in and every layer's output */
    size_t act_total;       /* deep_in + sum of layer outputs */

    uint64_t examples;

    /* Learning scratch, owned by the model (so learn does not allocate per
     * example once warm).  predict never touches it. */
    uint32_t *sc_idx;
    float *sc_val;
    size_t sc_cap;
    float *act;             /* act_total floats: deep input, then each layer's output */
    float *dbuf;            /* 2 * max_width floats for backward */
    /* Mini-batch scratch, grown to the largest batch seen. */
    float *bt_act;          /* n * act_total */
    float *bt_d;            /* 2 * n * max_width */
    float *bt_gl;           /* n */
    size_t bt_cap;          /* batch size the above hold */
    float *bt_grad;         /* largest layer's out * in, then max_width for bias sums */
    size_t bt_grad_size;    /* floats */

    char errmsg[OTI_ERRMSG_LEN];
};

/* ---- model.c ------------------------------------------------------------ */

/* The parameter view of a model (never NULL for a non-NULL model). */
oti_params *oti_model_params(ot_model *m);
const oti_params *oti_model_params_c(const ot_model *m);

/*
 * Computes the gradient of the example's loss (times its importance weight,
 * without regularisation) with respect to every parameter, at the current
 * weights, into grad[0 .. total) (zeroed first; a coordinate used several
 * times gets the sum), and the loss into *loss.  Either pointer may be NULL.
 * Changes nothing in the model.  OT_EINVAL for an unlabeled example or a
 * dense vector of the wrong length; OT_ENOMEM.
 */
ot_status oti_model_gradient(const ot_model *m, const ot_example *ex, float *grad, double *loss);

/*
 * The checks ot_model_learn_batch() makes before it learns anything: OT_OK
 * when it would accept every one of the n examples, else OT_EINVAL with the
 * reason in the model's errmsg.  Changes nothing else.
 */
ot_status oti_model_check_batch(ot_model *m, const ot_example *const *ex, size_t n);

/*
 * Builds a model from a shape (copied).  With init 0 every array is left
 * zero (load and clone fill them); with init 1 the deep and embedding
 * weights are drawn from the seeded generator.  On failure the detail is
 * written to errmsg (OTI_ERRMSG_LEN bytes) when it is not NULL.
 */
ot_status oti_model_build(const oti_alloc *a, const oti_shape *shape, int init, ot_model **out,
                          char *errmsg);

/* Without allocating: the number of weights and blocks a shape makes;
 * OT_EINVAL for a shape oti_model_build would refuse for its syntax or
 * bounds (duplicates and a missing deep input are found by the build). */
ot_status oti_shape_total(const oti_shape *sh, uint64_t *total, size_t *nblocks);

/* Reads a model's shape options from a config (NULL: defaults). */
void oti_shape_from_config(const ot_config *cfg, oti_shape *shape);

/* ---- optim.c ------------------------------------------------------------ */

/* Per-example SGD rate: learning_rate / (1 + t)^power_t, t = examples seen. */
float oti_optim_sgd_rate(const ot_model *m);

/* Updates the wide coordinates idx[0..k) (gradient gl * val[i] each, one
 * update per occurrence) and marks their rows touched. */
void oti_optim_wide(ot_model *m, const uint32_t *idx, const float *val, size_t k, float gl,
                    float rate);

/* Updates the n coordinates starting at index `first` of block `bi` with
 * gradients scale * g[0..n). */
void oti_optim_block(ot_model *m, size_t bi, uint64_t first, const float *g, float scale,
                     size_t n, float rate);

/* The params derive callback: recomputes FTRL weights of one row from z, n. */
void oti_optim_derive(void *ctx, oti_block *b, uint64_t row);

/* Number of state arrays the optimizer kind keeps. */
int oti_optim_nstate(int opt);

/* ---- model_io.c ---------------------------------------------------------- */

/* Loads a model from bytes in memory (what ot_model_load does with a file). */
ot_status oti_model_load_mem(const ot_config *cfg, const void *data, size_t len, ot_model **out,
                             char *errmsg);

#endif /* OT_MODEL_H */
