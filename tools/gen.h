/*
 * gen.h - a seeded synthetic click stream: the generator behind `ot gen`,
 * also compiled into tests and benchmarks (they #include "../tools/gen.c").
 *
 * Each example has one feature in each of K namespaces, named by letters
 * ('a'..'z', then 'A'..'Z').  The feature of namespace k is "<k><id>" with
 * id drawn from a Zipf law over 0..M-1 (id 0 most popular), the same law in
 * every namespace.  Labels come from a hidden logistic model:
 *
 *   linear (default): logit = bias + sum_k w[k][id_k], every w ~ N(0, s^2)
 *                     with s = scale / sqrt(K), so the logit's spread is
 *                     about `scale` whatever K is;
 *   xor:              logit = bias + 2 * scale * (bit_a(id_a) XOR bit_b(id_b) ? 1 : -1),
 *                     where each id of namespaces 'a' and 'b' carries a hidden
 *                     bit, assigned so that each bit value holds half of the
 *                     Zipf mass; the other namespaces are noise.  Each
 *                     feature alone says (almost) nothing about the label,
 *                     so a linear model over these features stays near the
 *                     base rate.
 *
 * and the label is +1 with probability sigmoid(logit), else -1.
 *
 * Drift: after every 1000 examples, round(R * K * M) hidden weights (with
 * the fraction carried over) chosen uniformly at random are re-drawn from
 * their prior (xor: hidden bits re-drawn uniformly).
 *
 * The generator uses only the public header.  Not thread-safe: one
 * generator per thread.
 */
#ifndef OT_TOOL_GEN_H
#define OT_TOOL_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "onlinetrain.h"

#define OTG_MAX_NAMESPACES 52
#define OTG_DRIFT_PERIOD 1000

typedef struct otg_params {
    int namespaces;  /* K: 1..OTG_MAX_NAMESPACES (xor needs 2); default 20 */
    uint32_t ids;    /* M: vocabulary per namespace, 1..2^24; default 100000 */
    double zipf;     /* Zipf exponent, 0..10; default 1.1 */
    uint64_t seed;   /* default 1 */
    double drift;    /* R: fraction of hidden weights re-drawn per 1000 examples, 0..1; default 0 */
    int xor_target;  /* 1: labels from the xor of namespaces a and b; default 0 */
    double bias;     /* base-rate logit; default -1 */
    double scale;    /* spread of the hidden logit, 0..20; default 1.5 */
} otg_params;

/* One generated example. */
typedef struct otg_sample {
    float label;    /* +1 or -1 */
    double prob;    /* P(label = +1) under the hidden model when it was drawn */
    uint32_t id[OTG_MAX_NAMESPACES]; /* id of the feature in namespace k */
} otg_sample;

typedef struct otg otg;

/* Fills p with the defaults above. */
void otg_params_default(otg_params *p);

/*
 * Creates a generator.  Returns 0, or -1 with a reason in err (errlen bytes)
 * for parameters out of range or out of memory.
 */
int otg_create(const otg_params *p, otg **out, char *err, size_t errlen);

/* Destroys a generator.  Accepts NULL. */
void otg_destroy(otg *g);

/* Draws the next example (applies drift every OTG_DRIFT_PERIOD examples). */
void otg_next(otg *g, otg_sample *s);

/* Number of examples drawn so far. */
uint64_t otg_count(const otg *g);

/* The namespace letter of namespace k (0-based). */
char otg_namespace_name(int k);

/* The longest line otg_format_vw() can write, newline included. */
size_t otg_line_max(const otg *g);

/*
 * Writes s as one VW text line ("1 |a a12 |b b7 ...\n") into buf, which must
 * hold otg_line_max(g) bytes.  Returns the number of bytes written (no NUL).
 */
size_t otg_format_vw(const otg *g, const otg_sample *s, char *buf);

/*
 * Writes p with 9 decimals and a newline ("0.731058579\n") into buf (at
 * least 16 bytes).  Returns the number of bytes written (no NUL).
 */
size_t otg_format_prob(double p, char *buf);

/*
 * Fills ex (cleared first) with s's label and features, named and hashed
 * exactly as the VW parser hashes otg_format_vw()'s line.
 */
ot_status otg_fill_example(const otg *g, const otg_sample *s, ot_example *ex);

/* Log loss of predicting probability p for label y (+1/-1), p clamped to [1e-15, 1-1e-15]. */
double otg_logloss(double p, float y);

#endif /* OT_TOOL_GEN_H */
