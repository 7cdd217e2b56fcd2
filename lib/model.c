/*
 * model.c - the model: building it from options, the forward pass (wide,
 * quadratic crosses, embeddings, deep layers), losses, the backward pass,
 * learn and predict (one example or a mini-batch), and the accessors.
 *
 * The optimizers are in optim.c, save and load in model_io.c, the dense
 * algebra in linalg.c.  docs/models.md describes what this file computes.
 *
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "linalg.h"
#include "model.h"

/* Multiplier of the first feature's hash in a quadratic cross (FNV prime). */
#define CROSS_MUL 16777619u

#if defined(__GNUC__)
#define OTI_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#define OTI_PREFETCH_R(p) __builtin_prefetch((p), 0, 3)
/* For functions made only of prefetches: GCC finds them free of side
 * effects and drops their calls unless they are inlined first. */
#define OTI_PREFETCH_FN static inline __attribute__((always_inline))
#else
#define OTI_PREFETCH_W(p) ((void)(p))
#define OTI_PREFETCH_R(p) ((void)(p))
#define OTI_PREFETCH_FN static inline
#endif

/* Deep weights are uniform in +-INIT_GAIN * init_scale * sqrt(6 / (in + out)):
 * Glorot's range at the default init_scale 0.1. */
#define INIT_GAIN 10.0

/* Floats of per-call scratch a predict keeps on its stack. */
#define PREDICT_STACK_FLOATS 1024

/*
 * Reads a wide, bias or embedding weight on the predict path.  A predictor's
 * update thread (predictor.c) writes these weights of the model it serves in
 * place, with relaxed atomic stores, while other threads predict; a relaxed
 * atomic load (a plain load on x86-64 and arm64) makes that race
 * well-defined and never torn.  The deep layers are never written in place
 * (CBLAS reads them as plain memory), so their reads stay plain.
 */
static inline float wload(const float *p)
{
    float v;

    __atomic_load(p, &v, __ATOMIC_RELAXED);
    return v;
}

/* ---- parsing the list options -------------------------------------------- */

/* Reads a decimal number in [lo, hi] at *sp; -1 if there is none. */
static int parse_num(const char **sp, unsigned long lo, unsigned long hi, uint32_t *out)
{
    const char *s = *sp;
    unsigned long v = 0;
    int digits = 0;

    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > hi)
            return -1;
        s++;
        digits++;
    }
    if (digits == 0 || v < lo)
        return -1;
    *sp = s;
    *out = (uint32_t)v;
    return 0;
}

/* "ab,cd": pairs of namespace bytes.  Counts them; fills pairs when not NULL. */
static int parse_pairs(const char *s, uint8_t (*pairs)[2], size_t *n)
{
    size_t k = 0;

    while (*s) {
        if (s[0] == ',' || s[1] == '\0' || s[1] == ',')
            return -1;
        if (pairs != NULL) {
            pairs[k][0] = (uint8_t)s[0];
            pairs[k][1] = (uint8_t)s[1];
        }
        k++;
        s += 2;
        if (*s == ',' && s[1] != '\0')
            s++;
        else if (*s != '\0')
            return -1;
    }
    *n = k;
    return 0;
}

/* "u:16,i:8": namespace byte, ':', width 1..1024.  At most 256 entries. */
static int parse_embeds(const char *s, oti_embed *e, size_t *n)
{
    size_t k = 0;

    while (*s) {
        uint32_t dim;
        if (s[0] == ',' || s[0] == ':' || s[1] != ':')
            return -1;
        if (k >= 256)
            return -1;
        if (e != NULL)
            e[k].ns = (uint8_t)s[0];
        s += 2;
        if (parse_num(&s, 1, 1024, &dim) != 0)
            return -1;
        if (e != NULL)
            e[k].dim = dim;
        k++;
        if (*s == ',' && s[1] != '\0')
            s++;
        else if (*s != '\0')
            return -1;
    }
    *n = k;
    return 0;
}

/* "64,32": widths 1..65536, at most 16. */
static int parse_widths(const char *s, uint32_t *w, size_t *n)
{
    size_t k = 0;

    while (*s) {
        if (k >= 16 || parse_num(&s, 1, 65536, &w[k]) != 0)
            return -1;
        k++;
        if (*s == ',' && s[1] != '\0')
            s++;
        else if (*s != '\0')
            return -1;
    }
    *n = k;
    return 0;
}

/* ---- building ---------------------------------------------------------- */

void oti_shape_from_config(const ot_config *cfg, oti_shape *sh)
{
    memset(sh, 0, sizeof(*sh));
    sh->bits = (uint32_t)oti_cfg_i64(cfg, OT_OPT_BITS);
    sh->loss = oti_cfg_choice(cfg, OT_OPT_LOSS);
    sh->optimizer = oti_cfg_choice(cfg, OT_OPT_OPTIMIZER);
    sh->activation = oti_cfg_choice(cfg, OT_OPT_ACTIVATION);
    sh->learning_rate = oti_cfg_f64(cfg, OT_OPT_LEARNING_RATE);
    sh->power_t = oti_cfg_f64(cfg, OT_OPT_POWER_T);
    sh->l1 = oti_cfg_f64(cfg, OT_OPT_L1);
    sh->l2 = oti_cfg_f64(cfg, OT_OPT_L2);
    sh->ftrl_alpha = oti_cfg_f64(cfg, OT_OPT_FTRL_ALPHA);
    sh->ftrl_beta = oti_cfg_f64(cfg, OT_OPT_FTRL_BETA);
    sh->init_scale = oti_cfg_f64(cfg, OT_OPT_INIT_SCALE);
    sh->embedding_bits = (uint32_t)oti_cfg_i64(cfg, OT_OPT_EMBEDDING_BITS);
    sh->dense_dim = (uint32_t)oti_cfg_i64(cfg, OT_OPT_DENSE_DIM);
    sh->seed = (uint32_t)oti_cfg_i64(cfg, OT_OPT_SEED);
    sh->quadratic = oti_cfg_str(cfg, OT_OPT_QUADRATIC);
    sh->embedding = oti_cfg_str(cfg, OT_OPT_EMBEDDING);
    sh->hidden_layers = oti_cfg_str(cfg, OT_OPT_HIDDEN_LAYERS);
}

static int in_range(double v, double lo, double hi)
{
    return v >= lo && v <= hi; /* false for NaN */
}

/* The same bounds as the options have in config.c, checked again because
 * a shape may come from a file. */
static ot_status check_shape(const oti_shape *sh, char *errmsg)
{
    if (sh->bits < 1 || sh->bits > 30)
        return oti_err(errmsg, OT_EINVAL, "bits %u is outside [1, 30]", (unsigned)sh->bits);
    if (sh->embedding_bits < 1 || sh->embedding_bits > 26)
        return oti_err(errmsg, OT_EINVAL, "embedding_bits %u is outside [1, 26]",
                       (unsigned)sh->embedding_bits);
    if (sh->dense_dim > (1u << 20))
        return oti_err(errmsg, OT_EINVAL, "dense_dim %u is too large", (unsigned)sh->dense_dim);
    if (sh->loss < 0 || sh->loss > OTI_LOSS_SQUARED || sh->optimizer < 0 ||
        sh->optimizer > OTI_OPT_FTRL || sh->activation < 0 || sh->activation > OTI_ACT_LINEAR)
        return oti_err(errmsg, OT_EINVAL, "unknown loss, optimizer or activation");
    if (!in_range(sh->learning_rate, 0, 1e6) || !in_range(sh->power_t, 0, 1) ||
        !in_range(sh->l1, 0, 1e6) || !in_range(sh->l2, 0, 1e6) ||
        !in_range(sh->ftrl_alpha, 1e-9, 1e6) || !in_range(sh->ftrl_beta, 0, 1e6) ||
        !in_range(sh->init_scale, 0, 100))
        return oti_err(errmsg, OT_EINVAL, "a hyper-parameter is out of range");
    if (sh->quadratic == NULL || sh->embedding == NULL || sh->hidden_layers == NULL)
        return oti_err(errmsg, OT_EINVAL, "missing list option");
    return OT_OK;
}

/* splitmix64: a small seeded generator for initial weights. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Fills n floats uniformly from [-r, r]. */
static void fill_uniform(float *w, uint64_t n, float r, uint64_t seed)
{
    uint64_t st = seed, i;

    for (i = 0; i < n; i++) {
        double u = (double)(splitmix64(&st) >> 40) * (1.0 / 16777216.0); /* [0, 1) */
        w[i] = (float)((2.0 * u - 1.0) * r);
    }
}

/* FNV-1a, 64 bits. */
static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
    uint8_t b[8];
    int i;

    for (i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return fnv(h, b, 8);
}

static uint64_t compute_fingerprint(const ot_model *m)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    size_t i;

    h = fnv(h, "otmodel-shape-1", 15);
    h = fnv_u64(h, (uint64_t)m->shape.loss);
    h = fnv_u64(h, (uint64_t)m->shape.optimizer);
    h = fnv_u64(h, (uint64_t)m->shape.activation);
    h = fnv_u64(h, strlen(m->shape.quadratic));
    h = fnv(h, m->shape.quadratic, strlen(m->shape.quadratic));
    h = fnv_u64(h, m->params.nblocks);
    for (i = 0; i < m->params.nblocks; i++) {
        const oti_block *b = &m->params.blocks[i];
        h = fnv_u64(h, (uint64_t)b->kind);
        h = fnv(h, b->name, strlen(b->name) + 1);
        h = fnv_u64(h, b->rows);
        h = fnv_u64(h, b->cols);
        h = fnv_u64(h, (uint64_t)b->nstate);
    }
    return h;
}

static size_t block_elems(const oti_block *b)
{
    return (size_t)(b->rows * b->cols);
}

void ot_model_destroy(ot_model *m)
{
    oti_alloc a;
    size_t i;

    if (m == NULL)
        return;
    a = m->alloc;
    if (m->params.blocks != NULL) {
        for (i = 0; i < m->params.nblocks; i++) {
            oti_block *b = &m->params.blocks[i];
            size_t n = block_elems(b) * sizeof(float);
            int s;
            oti_free(&a, b->w, n);
            for (s = 0; s < OTI_MAX_STATE; s++)
                oti_free(&a, b->s[s], n);
            oti_free(&a, b->touched_bits, (size_t)((b->rows + 63) / 64) * sizeof(uint64_t));
            oti_free(&a, b->touched_list, (size_t)b->rows * sizeof(uint32_t));
        }
        oti_free(&a, m->params.blocks, m->params.nblocks * sizeof(oti_block));
    }
    oti_free(&a, m->block_opt, m->params.nblocks * sizeof(int));
    oti_free(&a, m->block_reg, m->params.nblocks * sizeof(int));
    oti_free(&a, m->pairs, m->npairs * sizeof(*m->pairs));
    oti_free(&a, m->embeds, m->nembeds * sizeof(oti_embed));
    oti_free(&a, m->layers, m->nlayers * sizeof(oti_layer));
    oti_free(&a, m->strings, m->strings_size);
    oti_free(&a, m->sc_idx, m->sc_cap * sizeof(uint32_t));
    oti_free(&a, m->sc_val, m->sc_cap * sizeof(float));
    oti_free(&a, m->act, m->act_total * sizeof(float));
    oti_free(&a, m->dbuf, 2 * (size_t)m->max_width * sizeof(float));
    oti_free(&a, m->bt_act, m->bt_cap * m->act_total * sizeof(float));
    oti_free(&a, m->bt_d, 2 * m->bt_cap * m->max_width * sizeof(float));
    oti_free(&a, m->bt_gl, m->bt_cap * sizeof(float));
    oti_free(&a, m->bt_grad, m->bt_grad_size * sizeof(float));
    oti_free(&a, m, sizeof(*m));
}

/* Sets up block i; the arrays are allocated later. */
static void set_block(ot_model *m, size_t i, int kind, const char *name, uint64_t rows,
                      uint32_t cols, int opt, int reg)
{
    oti_block *b = &m->params.blocks[i];

    b->kind = kind;
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->rows = rows;
    b->cols = cols;
    b->nstate = oti_optim_nstate(opt);
    b->dense_hint = kind == OTI_BLOCK_DENSE;
    m->block_opt[i] = opt;
    m->block_reg[i] = reg;
}

static ot_status alloc_blocks(ot_model *m, char *errmsg)
{
    uint64_t off = 0;
    size_t i;

    for (i = 0; i < m->params.nblocks; i++) {
        oti_block *b = &m->params.blocks[i];
        uint64_t n = b->rows * b->cols;
        int s;

        if (n > SIZE_MAX / sizeof(float) / 4)
            return oti_err(errmsg, OT_ENOMEM, "block %s is too large", b->name);
        b->offset = off;
        off += n;
        b->w = oti_calloc(&m->alloc, (size_t)n, sizeof(float));
        if (b->w == NULL)
            goto nomem;
        for (s = 0; s < b->nstate; s++) {
            b->s[s] = oti_calloc(&m->alloc, (size_t)n, sizeof(float));
            if (b->s[s] == NULL)
                goto nomem;
        }
        b->touched_bits = oti_calloc(&m->alloc, (size_t)((b->rows + 63) / 64), sizeof(uint64_t));
        b->touched_list = oti_malloc(&m->alloc, (size_t)b->rows * sizeof(uint32_t));
        if (b->touched_bits == NULL || b->touched_list == NULL)
            goto nomem;
    }
    m->params.total = off;
    return OT_OK;
nomem:
    return oti_err(errmsg, OT_ENOMEM, "out of memory for block %s", m->params.blocks[i].name);
}

/* Initial weights: deep matrices uniform in +-INIT_GAIN * init_scale *
 * sqrt(6 / (in + out)); embedding tables uniform in +-init_scale; wide,
 * bias and deep biases zero. */
static void init_weights(ot_model *m)
{
    uint64_t base = (uint64_t)m->shape.seed * UINT64_C(0x9E3779B97F4A7C15) + 0x5eed;
    size_t i;

    for (i = 0; i < m->nembeds; i++) {
        oti_block *b = &m->params.blocks[m->embeds[i].block];
        fill_uniform(b->w, b->rows * b->cols, (float)m->shape.init_scale,
                     base ^ ((uint64_t)(m->embeds[i].block + 1) << 32));
    }
    for (i = 0; i < m->nlayers; i++) {
        const oti_layer *L = &m->layers[i];
        oti_block *b = &m->params.blocks[L->wblock];
        double r = INIT_GAIN * m->shape.init_scale * sqrt(6.0 / ((double)L->in + (double)L->out));
        fill_uniform(b->w, b->rows * b->cols, (float)r, base ^ ((uint64_t)(L->wblock + 1) << 32));
    }
}

static ot_status build_layers(ot_model *m, const uint32_t *widths, size_t nh, char *errmsg)
{
    size_t k, nb = 2 + m->nembeds;
    uint32_t in = m->deep_in;
    size_t off = 0, total;
    int dopt = m->shape.optimizer == OTI_OPT_FTRL ? OTI_OPT_ADAPTIVE : m->shape.optimizer;

    m->max_width = m->deep_in;
    total = m->deep_in;
    for (k = 0; k < m->nlayers; k++) {
        oti_layer *L = &m->layers[k];
        char name[32];
        L->in = in;
        L->out = k < nh ? widths[k] : 1;
        L->wblock = nb++;
        L->bblock = nb++;
        L->in_off = off;
        L->out_off = total;
        snprintf(name, sizeof(name), "deep.%u.w", (unsigned)k);
        set_block(m, L->wblock, OTI_BLOCK_DENSE, name, L->out, L->in, dopt, 0);
        snprintf(name, sizeof(name), "deep.%u.b", (unsigned)k);
        set_block(m, L->bblock, OTI_BLOCK_DENSE, name, L->out, 1, dopt, 0);
        if (L->out > m->max_width)
            m->max_width = L->out;
        off = total;
        total += L->out;
        in = L->out;
    }
    (void)errmsg;
    m->act_total = total;
    return OT_OK;
}

ot_status oti_shape_total(const oti_shape *sh, uint64_t *total, size_t *nblocks)
{
    char ignored[OTI_ERRMSG_LEN];
    oti_embed e[256];
    uint32_t widths[16], in;
    size_t npairs, ne, nh, i;
    uint64_t t;

    if (check_shape(sh, ignored) != OT_OK || parse_pairs(sh->quadratic, NULL, &npairs) != 0 ||
        parse_embeds(sh->embedding, e, &ne) != 0 ||
        parse_widths(sh->hidden_layers, widths, &nh) != 0)
        return OT_EINVAL;
    t = 1 + (UINT64_C(1) << sh->bits);
    in = sh->dense_dim;
    for (i = 0; i < ne; i++) {
        t += (UINT64_C(1) << sh->embedding_bits) * e[i].dim;
        in += e[i].dim;
    }
    *nblocks = 2 + ne;
    if (in > 0) {
        for (i = 0; i <= nh; i++) {
            uint32_t out = i < nh ? widths[i] : 1;
            t += (uint64_t)out * in + out;
            in = out;
        }
        *nblocks += 2 * (nh + 1);
    }
    *total = t;
    return OT_OK;
}

ot_status oti_model_build(const oti_alloc *a, const oti_shape *sh, int init, ot_model **out,
                          char *errmsg)
{
    char dummy[OTI_ERRMSG_LEN];
    ot_model *m;
    size_t lq, le, lh, npairs, nembeds, nh, i, nblocks;
    uint32_t widths[16];
    ot_status st;
    int opt;

    if (errmsg == NULL)
        errmsg = dummy;
    if ((st = check_shape(sh, errmsg)) != OT_OK)
        return st;
    if (parse_pairs(sh->quadratic, NULL, &npairs) != 0)
        return oti_err(errmsg, OT_EINVAL, "quadratic: cannot parse \"%s\"", sh->quadratic);
    if (parse_embeds(sh->embedding, NULL, &nembeds) != 0)
        return oti_err(errmsg, OT_EINVAL, "embedding: cannot parse \"%s\"", sh->embedding);
    if (parse_widths(sh->hidden_layers, widths, &nh) != 0)
        return oti_err(errmsg, OT_EINVAL, "hidden_layers: cannot parse \"%s\"", sh->hidden_layers);

    m = oti_calloc(a, 1, sizeof(*m));
    if (m == NULL)
        return oti_err(errmsg, OT_ENOMEM, "out of memory");
    m->alloc = *a;
    m->shape = *sh;
    lq = strlen(sh->quadratic) + 1;
    le = strlen(sh->embedding) + 1;
    lh = strlen(sh->hidden_layers) + 1;
    m->strings_size = lq + le + lh;
    m->strings = oti_malloc(a, m->strings_size);
    if (m->strings == NULL)
        goto nomem;
    memcpy(m->strings, sh->quadratic, lq);
    memcpy(m->strings + lq, sh->embedding, le);
    memcpy(m->strings + lq + le, sh->hidden_layers, lh);
    m->shape.quadratic = m->strings;
    m->shape.embedding = m->strings + lq;
    m->shape.hidden_layers = m->strings + lq + le;

    m->lr = (float)sh->learning_rate;
    m->power_t = (float)sh->power_t;
    m->l1 = (float)sh->l1;
    m->l2 = (float)sh->l2;
    m->alpha = (float)sh->ftrl_alpha;
    m->inv_alpha = (float)(1.0 / sh->ftrl_alpha);
    m->beta = (float)sh->ftrl_beta;
    m->wmask = (uint32_t)((UINT64_C(1) << sh->bits) - 1);
    m->emask = (uint32_t)((UINT64_C(1) << sh->embedding_bits) - 1);

    if (npairs > 0) {
        m->pairs = oti_calloc(a, npairs, sizeof(*m->pairs));
        if (m->pairs == NULL)
            goto nomem;
        m->npairs = npairs;
        parse_pairs(m->shape.quadratic, m->pairs, &npairs);
    }
    for (i = 0; i < 256; i++)
        m->embed_of_ns[i] = -1;
    if (nembeds > 0) {
        m->embeds = oti_calloc(a, nembeds, sizeof(oti_embed));
        if (m->embeds == NULL)
            goto nomem;
        m->nembeds = nembeds;
        parse_embeds(m->shape.embedding, m->embeds, &nembeds);
    }
    m->deep_in = sh->dense_dim;
    for (i = 0; i < m->nembeds; i++) {
        oti_embed *e = &m->embeds[i];
        if (m->embed_of_ns[e->ns] >= 0) {
            st = oti_err(errmsg, OT_EINVAL, "embedding: namespace '%c' is listed twice", e->ns);
            goto fail;
        }
        m->embed_of_ns[e->ns] = (int16_t)i;
        e->in_off = m->deep_in;
        e->block = 2 + i;
        m->deep_in += e->dim;
    }
    if (nh > 0 && m->deep_in == 0) {
        st = oti_err(errmsg, OT_EINVAL,
                     "hidden_layers needs a deep input: set dense_dim or embedding");
        goto fail;
    }
    /* The deep part exists when there is anything to feed it. */
    m->nlayers = m->deep_in > 0 ? nh + 1 : 0;
    if (m->nlayers > 0) {
        m->layers = oti_calloc(a, m->nlayers, sizeof(oti_layer));
        if (m->layers == NULL)
            goto nomem;
    }

    nblocks = 2 + m->nembeds + 2 * m->nlayers;
    m->params.blocks = oti_calloc(a, nblocks, sizeof(oti_block));
    m->block_opt = oti_calloc(a, nblocks, sizeof(int));
    m->block_reg = oti_calloc(a, nblocks, sizeof(int));
    m->params.nblocks = nblocks;
    if (m->params.blocks == NULL || m->block_opt == NULL || m->block_reg == NULL) {
        /* destroy frees with nblocks sizes; keep it consistent */
        goto nomem;
    }
    opt = sh->optimizer;
    set_block(m, 0, OTI_BLOCK_BIAS, "bias", 1, 1, opt, 0);
    set_block(m, 1, OTI_BLOCK_WIDE, "wide", UINT64_C(1) << sh->bits, 1, opt, 1);
    for (i = 0; i < m->nembeds; i++) {
        char name[32];
        uint8_t ns = m->embeds[i].ns;
        if (ns > 0x20 && ns < 0x7f)
            snprintf(name, sizeof(name), "embed.%c", ns);
        else
            snprintf(name, sizeof(name), "embed.%02x", (unsigned)ns);
        set_block(m, 2 + i, OTI_BLOCK_EMBED, name, UINT64_C(1) << sh->embedding_bits,
                  m->embeds[i].dim, opt == OTI_OPT_FTRL ? OTI_OPT_ADAPTIVE : opt, 0);
    }
    if ((st = build_layers(m, widths, nh, errmsg)) != OT_OK)
        goto fail;
    if ((st = alloc_blocks(m, errmsg)) != OT_OK)
        goto fail;
    m->params.derive = oti_optim_derive;
    m->params.derive_ctx = m;
    m->params.fingerprint = compute_fingerprint(m);

    m->sc_cap = 256;
    m->sc_idx = oti_malloc(a, m->sc_cap * sizeof(uint32_t));
    m->sc_val = oti_malloc(a, m->sc_cap * sizeof(float));
    if (m->sc_idx == NULL || m->sc_val == NULL)
        goto nomem;
    if (m->nlayers > 0) {
        m->act = oti_calloc(a, m->act_total, sizeof(float));
        m->dbuf = oti_calloc(a, 2 * (size_t)m->max_width, sizeof(float));
        if (m->act == NULL || m->dbuf == NULL)
            goto nomem;
    }
    if (init)
        init_weights(m);
    *out = m;
    return OT_OK;

nomem:
    st = oti_err(errmsg, OT_ENOMEM, "out of memory");
fail:
    ot_model_destroy(m);
    return st;
}

ot_status ot_model_create(const ot_config *cfg, ot_model **out)
{
    oti_alloc a = oti_cfg_alloc(cfg);
    oti_shape sh;

    if (out == NULL)
        return OT_EINVAL;
    oti_shape_from_config(cfg, &sh);
    return oti_model_build(&a, &sh, 1, out, NULL);
}

ot_status ot_model_clone(const ot_model *m, ot_model **out)
{
    ot_model *c;
    ot_status st;
    size_t i;

    if (m == NULL || out == NULL)
        return OT_EINVAL;
    st = oti_model_build(&m->alloc, &m->shape, 0, &c, NULL);
    if (st != OT_OK)
        return st;
    for (i = 0; i < m->params.nblocks; i++) {
        const oti_block *src = &m->params.blocks[i];
        oti_block *dst = &c->params.blocks[i];
        size_t n = block_elems(src) * sizeof(float);
        int s;
        memcpy(dst->w, src->w, n);
        for (s = 0; s < src->nstate; s++)
            memcpy(dst->s[s], src->s[s], n);
        memcpy(dst->touched_bits, src->touched_bits,
               (size_t)((src->rows + 63) / 64) * sizeof(uint64_t));
        memcpy(dst->touched_list, src->touched_list, (size_t)src->ntouched * sizeof(uint32_t));
        dst->ntouched = src->ntouched;
        dst->all_touched = src->all_touched;
    }
    c->examples = m->examples;
    *out = c;
    return OT_OK;
}

oti_params *oti_model_params(ot_model *m)
{
    return m != NULL ? &m->params : NULL;
}

const oti_params *oti_model_params_c(const ot_model *m)
{
    return m != NULL ? &m->params : NULL;
}

/* ---- forward pass -------------------------------------------------------- */

/*
 * Walks the wide coordinates of an example: each feature (hash & mask),
 * then for each quadratic pair (a, b) every feature f of namespace a with
 * every feature g of namespace b: ((f.hash * 16777619) ^ g.hash) & mask with
 * value f.value * g.value.  Stores the first `cap` (index, value) pairs,
 * sets *logit to the sum of w[index] * value over all of them, and returns
 * how many there are.  The order of the sum is the same whatever cap is.
 */
static size_t wide_collect(const ot_model *m, const ot_example *ex, uint32_t *idx, float *val,
                           size_t cap, float *logit)
{
    const oti_feat *f = ex->feat;
    const size_t nf = ex->nfeat;
    const float *w = m->params.blocks[1].w;
    const uint32_t mask = m->wmask;
    float s = 0.0f;
    size_t i, j, p, k = 0;

    if (cap >= nf) {
        /* Learning: fetch the optimizer state of each coordinate now, so the
         * update that follows finds it in cache (the misses overlap here). */
        const oti_block *wb = &m->params.blocks[1];
        const float *s0 = wb->s[0], *s1 = wb->s[1];
        for (i = 0; i < nf; i++) {
            uint32_t x = f[i].hash & mask;
            idx[i] = x;
            val[i] = f[i].value;
            OTI_PREFETCH_W(&w[x]);
            if (s1 != NULL)
                OTI_PREFETCH_W(&s1[x]);
            if (s0 != NULL)
                OTI_PREFETCH_W(&s0[x]);
            OTI_PREFETCH_W(&wb->touched_bits[x >> 6]);
        }
        for (i = 0; i < nf; i++)
            s += w[idx[i]] * val[i];
        k = nf;
    } else {
        for (i = 0; i < nf; i++) {
            uint32_t x = f[i].hash & mask;
            float v = f[i].value;
            if (k < cap) {
                idx[k] = x;
                val[k] = v;
            }
            k++;
            s += wload(&w[x]) * v;
        }
    }
    for (p = 0; p < m->npairs; p++) {
        const uint8_t a = m->pairs[p][0], b = m->pairs[p][1];
        for (i = 0; i < nf; i++) {
            uint32_t hf;
            float vf;
            if (f[i].ns != a)
                continue;
            hf = f[i].hash * CROSS_MUL;
            vf = f[i].value;
            for (j = 0; j < nf; j++) {
                uint32_t x;
                float v;
                if (f[j].ns != b)
                    continue;
                x = (hf ^ f[j].hash) & mask;
                v = vf * f[j].value;
                if (k < cap) {
                    idx[k] = x;
                    val[k] = v;
                }
                k++;
                s += wload(&w[x]) * v;
            }
        }
    }
    *logit = s;
    return k;
}

static ot_status check_example(const ot_model *m, const ot_example *ex, int need_label,
                               char *errmsg)
{
    if (need_label && !ex->has_label)
        return oti_err(errmsg, OT_EINVAL, "the example has no label");
    if (m->shape.dense_dim > 0 && ex->ndense != m->shape.dense_dim)
        return oti_err(errmsg, OT_EINVAL, "dense vector has %zu values, the model takes %u",
                       ex->ndense, (unsigned)m->shape.dense_dim);
    return OT_OK;
}

/* Writes the deep input of an example: the dense vector, then each embedded
 * namespace's value-weighted sum of its features' rows. */
static void deep_input(const ot_model *m, const ot_example *ex, float *x)
{
    const uint32_t dd = m->shape.dense_dim;
    size_t i;

    if (dd > 0)
        memcpy(x, ex->dense, dd * sizeof(float));
    if (m->nembeds == 0)
        return;
    memset(x + dd, 0, (size_t)(m->deep_in - dd) * sizeof(float));
    for (i = 0; i < ex->nfeat; i++) {
        const oti_feat *f = &ex->feat[i];
        int e = m->embed_of_ns[f->ns];
        const oti_embed *em;
        const float *row;
        float *dst, v;
        uint32_t c;
        if (e < 0)
            continue;
        em = &m->embeds[e];
        row = m->params.blocks[em->block].w + (size_t)(f->hash & m->emask) * em->dim;
        dst = x + em->in_off;
        v = f->value;
        for (c = 0; c < em->dim; c++)
            dst[c] += v * wload(&row[c]);
    }
}

static void activate(int kind, float *y, size_t n)
{
    size_t i;

    switch (kind) {
    case OTI_ACT_RELU:
        for (i = 0; i < n; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case OTI_ACT_TANH:
        for (i = 0; i < n; i++)
            y[i] = tanhf(y[i]);
        break;
    case OTI_ACT_SIGMOID:
        for (i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + expf(-y[i]));
        break;
    default:
        break;
    }
}

/* d[i] *= activation'(at the output y[i]). */
static void activate_backward(int kind, const float *y, float *d, size_t n)
{
    size_t i;

    switch (kind) {
    case OTI_ACT_RELU:
        for (i = 0; i < n; i++)
            d[i] = y[i] > 0.0f ? d[i] : 0.0f;
        break;
    case OTI_ACT_TANH:
        for (i = 0; i < n; i++)
            d[i] *= 1.0f - y[i] * y[i];
        break;
    case OTI_ACT_SIGMOID:
        for (i = 0; i < n; i++)
            d[i] *= y[i] * (1.0f - y[i]);
        break;
    default:
        break;
    }
}

/* Runs the deep layers on act (input filled in) with sgemv; returns the deep logit. */
static float deep_forward(const ot_model *m, float *act)
{
    size_t k;

    for (k = 0; k < m->nlayers; k++) {
        const oti_layer *L = &m->layers[k];
        float *y = act + L->out_off;
        memcpy(y, m->params.blocks[L->bblock].w, L->out * sizeof(float));
        oti_sgemv(0, (int)L->out, (int)L->in, 1.0f, m->params.blocks[L->wblock].w,
                  act + L->in_off, 1.0f, y);
        if (k + 1 < m->nlayers)
            activate(m->shape.activation, y, L->out);
    }
    return act[m->layers[m->nlayers - 1].out_off];
}

/* Deep forward of n examples with sgemm: act holds n * act_total floats,
 * layer by layer (each an n x width matrix at n * offset). */
static void deep_forward_batch(const ot_model *m, const ot_example *const *ex, size_t n,
                               float *act)
{
    size_t i, k;

    for (i = 0; i < n; i++)
        deep_input(m, ex[i], act + i * m->deep_in);
    for (k = 0; k < m->nlayers; k++) {
        const oti_layer *L = &m->layers[k];
        float *y = act + n * L->out_off;
        const float *b = m->params.blocks[L->bblock].w;
        for (i = 0; i < n; i++)
            memcpy(y + i * L->out, b, L->out * sizeof(float));
        oti_sgemm(0, 1, (int)n, (int)L->out, (int)L->in, 1.0f, act + n * L->in_off, (int)L->in,
                  m->params.blocks[L->wblock].w, (int)L->in, 1.0f, y, (int)L->out);
        if (k + 1 < m->nlayers)
            activate(m->shape.activation, y, n * L->out);
    }
}

/* The logit before the deep part: the example's initial prediction (VW's
 * third label field, 0 when absent), the bias and the wide sum. */
static inline float base_logit(const ot_model *m, const ot_example *ex, float wl)
{
    return ex->initial + wload(&m->params.blocks[0].w[0]) + wl;
}

/* ---- losses ---------------------------------------------------------------- */

static float link(const ot_model *m, float z)
{
    if (m->shape.loss == OTI_LOSS_LOGISTIC)
        return 1.0f / (1.0f + expf(-z));
    return z;
}

/* Loss of logit z against a label (logistic: labels > 0 are positive). */
static double loss_value(int loss, float z, float label)
{
    if (loss == OTI_LOSS_LOGISTIC) {
        double mgn = label > 0.0f ? (double)z : -(double)z;
        return mgn >= 0 ? log1p(exp(-mgn)) : -mgn + log1p(exp(mgn));
    } else {
        double d = (double)z - (double)label;
        return 0.5 * d * d;
    }
}

/* d loss / d z. */
static float loss_grad(int loss, float z, float label)
{
    if (loss == OTI_LOSS_LOGISTIC) {
        float p = 1.0f / (1.0f + expf(-z));
        return p - (label > 0.0f ? 1.0f : 0.0f);
    }
    return z - label;
}

/* The learning path's loss and gradient in single precision, with one
 * exponential: returns d loss / d z and, when loss is not NULL, the loss. */
static float loss_terms(int loss, float z, float label, float *lossp)
{
    if (loss == OTI_LOSS_LOGISTIC) {
        const int pos = label > 0.0f;
        const float e = expf(-fabsf(z)); /* in (0, 1] */
        const float p = z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        if (lossp != NULL) {
            float mg = pos ? z : -z;
            *lossp = log1pf(e) + (mg < 0.0f ? -mg : 0.0f);
        }
        return p - (pos ? 1.0f : 0.0f);
    } else {
        float d = z - label;
        if (lossp != NULL)
            *lossp = 0.5f * d * d;
        return d;
    }
}

/* ---- backward pass ---------------------------------------------------------- */

/*
 * Backward pass of the deep part of one example.  act holds its forward pass,
 * gl is d loss / d logit, dbuf has 2 * max_width floats.  With grad != NULL
 * the gradients are added into grad (flat index space) and the model is not
 * changed; otherwise mu (the same model) is updated by its optimizers.
 */
static void deep_backward(ot_model *mu, const ot_model *m, const ot_example *ex, const float *act,
                          float *dbuf, float gl, float rate, float *grad)
{
    float *d = dbuf, *dn = dbuf + m->max_width, *t;
    size_t k, i;

    d[0] = gl;
    for (k = m->nlayers; k-- > 0;) {
        const oti_layer *L = &m->layers[k];
        const oti_block *wb = &m->params.blocks[L->wblock];
        const float *x = act + L->in_off;
        int need_dx = k > 0 || m->nembeds > 0;

        /* Gradient with respect to the layer's input, with the weights as
         * they were in the forward pass. */
        if (need_dx)
            oti_sgemv(1, (int)L->out, (int)L->in, 1.0f, wb->w, d, 0.0f, dn);
        if (grad != NULL) {
            float *gb = grad + m->params.blocks[L->bblock].offset;
            oti_sger((int)L->out, (int)L->in, 1.0f, d, x, grad + wb->offset);
            for (i = 0; i < L->out; i++)
                gb[i] += d[i];
        } else {
            for (i = 0; i < L->out; i++)
                oti_optim_block(mu, L->wblock, (uint64_t)i * L->in, x, d[i], L->in, rate);
            oti_optim_block(mu, L->bblock, 0, d, 1.0f, L->out, rate);
        }
        if (k > 0)
            activate_backward(m->shape.activation, x, dn, L->in);
        t = d;
        d = dn;
        dn = t;
    }
    if (m->nembeds == 0)
        return;
    /* d is now the gradient with respect to the deep input. */
    for (i = 0; i < ex->nfeat; i++) {
        const oti_feat *f = &ex->feat[i];
        int e = m->embed_of_ns[f->ns];
        const oti_embed *em;
        uint32_t row;
        if (e < 0)
            continue;
        em = &m->embeds[e];
        row = f->hash & m->emask;
        if (grad != NULL) {
            float *g = grad + m->params.blocks[em->block].offset + (size_t)row * em->dim;
            uint32_t c;
            for (c = 0; c < em->dim; c++)
                g[c] += f->value * d[em->in_off + c];
        } else {
            oti_optim_block(mu, em->block, (uint64_t)row * em->dim, d + em->in_off, f->value,
                            em->dim, rate);
            oti_block_touch(&mu->params.blocks[em->block], row);
        }
    }
}

static void mark_deep_touched(ot_model *m)
{
    size_t k;

    for (k = 0; k < m->nlayers; k++) {
        m->params.blocks[m->layers[k].wblock].all_touched = 1;
        m->params.blocks[m->layers[k].bblock].all_touched = 1;
    }
}

/* Makes the learning scratch hold at least need wide coordinates (its
 * contents are not kept). */
static int grow_scratch(ot_model *m, size_t need)
{
    size_t cap = m->sc_cap * 2 > need ? m->sc_cap * 2 : need;
    uint32_t *pi;
    float *pv;

    if (cap > SIZE_MAX / sizeof(uint32_t))
        return -1;
    pi = oti_malloc(&m->alloc, cap * sizeof(uint32_t));
    pv = oti_malloc(&m->alloc, cap * sizeof(float));
    if (pi == NULL || pv == NULL) {
        oti_free(&m->alloc, pi, cap * sizeof(uint32_t));
        oti_free(&m->alloc, pv, cap * sizeof(float));
        return -1;
    }
    oti_free(&m->alloc, m->sc_idx, m->sc_cap * sizeof(uint32_t));
    oti_free(&m->alloc, m->sc_val, m->sc_cap * sizeof(float));
    m->sc_idx = pi;
    m->sc_val = pv;
    m->sc_cap = cap;
    return 0;
}

/* Updates the bias with gradient gl and marks it touched. */
static void learn_bias(ot_model *m, float gl, float rate)
{
    static const float one = 1.0f;

    oti_optim_block(m, 0, 0, &one, gl, 1, rate);
    oti_block_touch(&m->params.blocks[0], 0);
}

/* The wide part of learning one example whose deep logit is known: returns
 * d loss / d z (times the importance weight) and the weighted loss. */
static ot_status learn_wide(ot_model *m, const ot_example *ex, float deep, float *loss,
                            float *glp)
{
    float wl, z, gl, rate;
    size_t k;

    k = wide_collect(m, ex, m->sc_idx, m->sc_val, m->sc_cap, &wl);
    if (OTI_UNLIKELY(k > m->sc_cap)) {
        if (grow_scratch(m, k) != 0)
            return oti_err(m->errmsg, OT_ENOMEM, "out of memory for %zu wide coordinates", k);
        k = wide_collect(m, ex, m->sc_idx, m->sc_val, m->sc_cap, &wl);
    }
    z = base_logit(m, ex, wl);
    if (m->nlayers > 0)
        z += deep;
    gl = loss_terms(m->shape.loss, z, ex->label, loss);
    if (loss != NULL)
        *loss *= ex->weight;
    gl *= ex->weight;
    rate = m->shape.optimizer == OTI_OPT_SGD ? oti_optim_sgd_rate(m) : 0.0f;
    oti_optim_wide(m, m->sc_idx, m->sc_val, k, gl, rate);
    learn_bias(m, gl, rate);
    *glp = gl;
    return OT_OK;
}

/* ---- prefetching a mini-batch ------------------------------------------------ */

/*
 * Learning one wide example waits on memory: each feature's weight, its
 * optimizer state and its touched word are likely cache misses, and within
 * one example the next step depends on them.  A mini-batch knows the
 * examples that follow, so learn_batch requests their lines ahead, in three
 * stages: the header of example i + 3, the features of example i + 2, and
 * the wide lines of example i + 1 (their weights, state and touched words),
 * while example i is learned.  Each stage reads only what the stage before
 * brought in.  Prefetches change no value: the results are those of
 * learning the examples one by one.
 */
OTI_PREFETCH_FN void prefetch_header(const ot_example *ex)
{
    OTI_PREFETCH_R(&ex->label);
    OTI_PREFETCH_R(&ex->feat);
    OTI_PREFETCH_R(&ex->ndense);
}

OTI_PREFETCH_FN void prefetch_features(const ot_example *ex)
{
    const char *p = (const char *)ex->feat;
    const size_t len = ex->nfeat * sizeof(oti_feat);
    size_t off;

    if (len == 0)
        return; /* feat may be NULL */
    for (off = 0; off < len; off += 64)
        OTI_PREFETCH_R(p + off);
    OTI_PREFETCH_R(p + len - 1);
}

OTI_PREFETCH_FN void prefetch_wide(const ot_model *m, const ot_example *ex)
{
    const oti_block *b = &m->params.blocks[1];
    const float *w = b->w, *s0 = b->s[0], *s1 = b->s[1];
    const uint64_t *bits = b->touched_bits;
    const oti_feat *f = ex->feat;
    const uint32_t mask = m->wmask;
    size_t i;

    for (i = 0; i < ex->nfeat; i++) {
        uint32_t x = f[i].hash & mask;
        OTI_PREFETCH_W(&w[x]);
        if (s0 != NULL)
            OTI_PREFETCH_W(&s0[x]);
        if (s1 != NULL)
            OTI_PREFETCH_W(&s1[x]);
        OTI_PREFETCH_W(&bits[x >> 6]);
    }
}

/* How many examples ahead each stage works (see above). */
#define PF_WIDE_AHEAD 1
#define PF_FEAT_AHEAD (PF_WIDE_AHEAD + 1)
#define PF_HEAD_AHEAD (PF_FEAT_AHEAD + 1)

/* Requests, while example i of ex[0 .. n) is learned, what the next ones
 * will touch (see above); with i == 0, also what the examples before the
 * stages' distances touch. */
OTI_PREFETCH_FN void prefetch_ahead(const ot_model *m, const ot_example *const *ex, size_t n,
                                    size_t i)
{
    if (i == 0) {
        size_t j;
        for (j = 0; j < PF_HEAD_AHEAD && j < n; j++)
            prefetch_header(ex[j]);
        for (j = 0; j < PF_FEAT_AHEAD && j < n; j++)
            prefetch_features(ex[j]);
        for (j = 0; j < PF_WIDE_AHEAD && j < n; j++)
            prefetch_wide(m, ex[j]);
    }
    if (i + PF_HEAD_AHEAD < n)
        prefetch_header(ex[i + PF_HEAD_AHEAD]);
    if (i + PF_FEAT_AHEAD < n)
        prefetch_features(ex[i + PF_FEAT_AHEAD]);
    if (i + PF_WIDE_AHEAD < n)
        prefetch_wide(m, ex[i + PF_WIDE_AHEAD]);
}

/* ot_model_learn on an example that check_example accepted. */
static ot_status learn_one(ot_model *m, const ot_example *ex, float *loss)
{
    float deep = 0.0f, gl;
    ot_status st;

    if (m->nlayers > 0) {
        deep_input(m, ex, m->act);
        deep = deep_forward(m, m->act);
    }
    if ((st = learn_wide(m, ex, deep, loss, &gl)) != OT_OK)
        return st;
    if (m->nlayers > 0) {
        float rate = m->shape.optimizer == OTI_OPT_SGD ? oti_optim_sgd_rate(m) : 0.0f;
        deep_backward(m, m, ex, m->act, m->dbuf, gl, rate, NULL);
        mark_deep_touched(m);
    }
    m->examples++;
    return OT_OK;
}

ot_status ot_model_learn(ot_model *m, const ot_example *ex, float *loss)
{
    ot_status st;

    if (m == NULL)
        return OT_EINVAL;
    if (ex == NULL)
        return oti_err(m->errmsg, OT_EINVAL, "example is NULL");
    if ((st = check_example(m, ex, 1, m->errmsg)) != OT_OK)
        return st;
    return learn_one(m, ex, loss);
}

/* Makes the batch scratch hold n examples. */
static ot_status grow_batch(ot_model *m, size_t n)
{
    const oti_alloc *a = &m->alloc;
    size_t grad = 0, k, ncap;
    float *act, *d, *gl;

    for (k = 0; k < m->nlayers; k++) {
        size_t g = (size_t)m->layers[k].out * m->layers[k].in + m->layers[k].out;
        if (g > grad)
            grad = g;
    }
    if (m->bt_grad_size < grad) {
        float *g = oti_malloc(a, grad * sizeof(float));
        if (g == NULL)
            return oti_err(m->errmsg, OT_ENOMEM, "out of memory for the batch gradient");
        oti_free(a, m->bt_grad, m->bt_grad_size * sizeof(float));
        m->bt_grad = g;
        m->bt_grad_size = grad;
    }
    if (n <= m->bt_cap)
        return OT_OK;
    ncap = n;
    if (ncap > (size_t)INT_MAX / (m->act_total + 2 * (size_t)m->max_width))
        return oti_err(m->errmsg, OT_EINVAL, "batch of %zu examples is too large", n);
    act = oti_malloc(a, ncap * m->act_total * sizeof(float));
    d = oti_malloc(a, 2 * ncap * m->max_width * sizeof(float));
    gl = oti_malloc(a, ncap * sizeof(float));
    if (act == NULL || d == NULL || gl == NULL) {
        oti_free(a, act, ncap * m->act_total * sizeof(float));
        oti_free(a, d, 2 * ncap * m->max_width * sizeof(float));
        oti_free(a, gl, ncap * sizeof(float));
        return oti_err(m->errmsg, OT_ENOMEM, "out of memory for a batch of %zu", n);
    }
    oti_free(a, m->bt_act, m->bt_cap * m->act_total * sizeof(float));
    oti_free(a, m->bt_d, 2 * m->bt_cap * m->max_width * sizeof(float));
    oti_free(a, m->bt_gl, m->bt_cap * sizeof(float));
    m->bt_act = act;
    m->bt_d = d;
    m->bt_gl = gl;
    m->bt_cap = ncap;
    return OT_OK;
}

ot_status oti_model_check_batch(ot_model *m, const ot_example *const *ex, size_t n)
{
    size_t i;
    ot_status st;

    if (m == NULL)
        return OT_EINVAL;
    if (ex == NULL && n > 0)
        return oti_err(m->errmsg, OT_EINVAL, "examples array is NULL");
    for (i = 0; i < n; i++) {
        if (ex[i] == NULL)
            return oti_err(m->errmsg, OT_EINVAL, "example %zu is NULL", i);
        if ((st = check_example(m, ex[i], 1, m->errmsg)) != OT_OK)
            return st;
    }
    return OT_OK;
}

ot_status ot_model_learn_batch(ot_model *m, const ot_example *const *ex, size_t n, float *losses)
{
    float rate, *D, *Dn, *t;
    size_t i, k;
    ot_status st;

    if ((st = oti_model_check_batch(m, ex, n)) != OT_OK)
        return st;
    if (m->nlayers == 0) {
        for (i = 0; i < n; i++) {
            prefetch_ahead(m, ex, n, i);
            if ((st = learn_one(m, ex[i], losses != NULL ? &losses[i] : NULL)) != OT_OK)
                return st;
        }
        return OT_OK;
    }
    if (n == 0)
        return OT_OK;
    if ((st = grow_batch(m, n)) != OT_OK)
        return st;

    /* Forward with the deep weights as they are before the batch. */
    deep_forward_batch(m, ex, n, m->bt_act);
    rate = m->shape.optimizer == OTI_OPT_SGD ? oti_optim_sgd_rate(m) : 0.0f;
    {
        const float *out = m->bt_act + n * m->layers[m->nlayers - 1].out_off;
        for (i = 0; i < n; i++) {
            prefetch_ahead(m, ex, n, i);
            if ((st = learn_wide(m, ex[i], out[i], losses != NULL ? &losses[i] : NULL,
                                 &m->bt_gl[i])) != OT_OK)
                return st;
            m->examples++;
        }
    }

    /* Backward: gradients summed over the batch, one update per layer. */
    D = m->bt_d;
    Dn = m->bt_d + n * m->max_width;
    memcpy(D, m->bt_gl, n * sizeof(float));
    for (k = m->nlayers; k-- > 0;) {
        const oti_layer *L = &m->layers[k];
        const float *W = m->params.blocks[L->wblock].w;
        const float *X = m->bt_act + n * L->in_off;
        float *G = m->bt_grad, *gb = m->bt_grad + (size_t)L->out * L->in;
        size_t r;

        if (k > 0 || m->nembeds > 0)
            oti_sgemm(0, 0, (int)n, (int)L->in, (int)L->out, 1.0f, D, (int)L->out, W, (int)L->in,
                      0.0f, Dn, (int)L->in);
        oti_sgemm(1, 0, (int)L->out, (int)L->in, (int)n, 1.0f, D, (int)L->out, X, (int)L->in, 0.0f,
                  G, (int)L->in);
        for (r = 0; r < L->out; r++)
            gb[r] = 0.0f;
        for (i = 0; i < n; i++)
            for (r = 0; r < L->out; r++)
                gb[r] += D[i * L->out + r];
        oti_optim_block(m, L->wblock, 0, G, 1.0f, (size_t)L->out * L->in, rate);
        oti_optim_block(m, L->bblock, 0, gb, 1.0f, L->out, rate);
        if (k > 0)
            activate_backward(m->shape.activation, X, Dn, n * L->in);
        t = D;
        D = Dn;
        Dn = t;
    }
    for (i = 0; m->nembeds > 0 && i < n; i++) {
        const ot_example *e = ex[i];
        const float *dx = D + i * m->deep_in;
        size_t j;
        for (j = 0; j < e->nfeat; j++) {
            const oti_feat *f = &e->feat[j];
            int ei = m->embed_of_ns[f->ns];
            const oti_embed *em;
            uint32_t row;
            if (ei < 0)
                continue;
            em = &m->embeds[ei];
            row = f->hash & m->emask;
            oti_optim_block(m, em->block, (uint64_t)row * em->dim, dx + em->in_off, f->value,
                            em->dim, rate);
            oti_block_touch(&m->params.blocks[em->block], row);
        }
    }
    mark_deep_touched(m);
    return OT_OK;
}

/* ---- predict ------------------------------------------------------------- */

ot_status ot_model_predict(const ot_model *m, const ot_example *ex, float *out)
{
    char ignored[OTI_ERRMSG_LEN];
    float wl, z;
    ot_status st;

    if (m == NULL || ex == NULL || out == NULL)
        return OT_EINVAL;
    /* The model is shared between threads here: its errmsg is not written. */
    if ((st = check_example(m, ex, 0, ignored)) != OT_OK)
        return st;
    wide_collect(m, ex, NULL, NULL, 0, &wl);
    z = base_logit(m, ex, wl);
    if (m->nlayers > 0) {
        float stack[PREDICT_STACK_FLOATS];
        float *act = stack;
        if (m->act_total > PREDICT_STACK_FLOATS) {
            act = oti_malloc(&m->alloc, m->act_total * sizeof(float));
            if (act == NULL)
                return OT_ENOMEM;
        }
        deep_input(m, ex, act);
        z += deep_forward(m, act);
        if (act != stack)
            oti_free(&m->alloc, act, m->act_total * sizeof(float));
    }
    *out = link(m, z);
    return OT_OK;
}

ot_status ot_model_predict_batch(const ot_model *m, const ot_example *const *ex, size_t n,
                                 float *out)
{
    char ignored[OTI_ERRMSG_LEN];
    float *act, wl, z;
    size_t i, bytes;
    ot_status st;

    if (m == NULL || ((ex == NULL || out == NULL) && n > 0))
        return OT_EINVAL;
    for (i = 0; i < n; i++) {
        if (ex[i] == NULL)
            return OT_EINVAL;
        if ((st = check_example(m, ex[i], 0, ignored)) != OT_OK)
            return st;
    }
    if (m->nlayers == 0 || n == 0) {
        for (i = 0; i < n; i++)
            if ((st = ot_model_predict(m, ex[i], &out[i])) != OT_OK)
                return st;
        return OT_OK;
    }
    if (n > (size_t)INT_MAX / m->act_total)
        return OT_EINVAL;
    bytes = n * m->act_total * sizeof(float);
    act = oti_malloc(&m->alloc, bytes);
    if (act == NULL)
        return OT_ENOMEM;
    deep_forward_batch(m, ex, n, act);
    for (i = 0; i < n; i++) {
        wide_collect(m, ex[i], NULL, NULL, 0, &wl);
        z = base_logit(m, ex[i], wl);
        z += act[n * m->layers[m->nlayers - 1].out_off + i];
        out[i] = link(m, z);
    }
    oti_free(&m->alloc, act, bytes);
    return OT_OK;
}

/* ---- gradient (for tests and tools) -------------------------------------- */

ot_status oti_model_gradient(const ot_model *m, const ot_example *ex, float *grad, double *loss)
{
    char ignored[OTI_ERRMSG_LEN];
    const oti_alloc *a;
    uint32_t *idx = NULL;
    float *val = NULL, *act = NULL, *dbuf = NULL, wl, z, gl;
    size_t k, i, nact = 0, nd = 0;
    ot_status st = OT_OK;

    if (m == NULL || ex == NULL)
        return OT_EINVAL;
    if ((st = check_example(m, ex, 1, ignored)) != OT_OK)
        return st;
    a = &m->alloc;
    k = wide_collect(m, ex, NULL, NULL, 0, &wl);
    idx = oti_malloc(a, (k + 1) * sizeof(uint32_t));
    val = oti_malloc(a, (k + 1) * sizeof(float));
    if (m->nlayers > 0) {
        nact = m->act_total;
        nd = 2 * (size_t)m->max_width;
        act = oti_malloc(a, nact * sizeof(float));
        dbuf = oti_malloc(a, nd * sizeof(float));
    }
    if (idx == NULL || val == NULL || (m->nlayers > 0 && (act == NULL || dbuf == NULL))) {
        st = OT_ENOMEM;
        goto out;
    }
    wide_collect(m, ex, idx, val, k, &wl);
    z = base_logit(m, ex, wl);
    if (m->nlayers > 0) {
        deep_input(m, ex, act);
        z += deep_forward(m, act);
    }
    if (loss != NULL)
        *loss = loss_value(m->shape.loss, z, ex->label) * (double)ex->weight;
    if (grad != NULL) {
        const uint64_t wo = m->params.blocks[1].offset;
        gl = loss_grad(m->shape.loss, z, ex->label) * ex->weight;
        memset(grad, 0, (size_t)m->params.total * sizeof(float));
        grad[m->params.blocks[0].offset] += gl;
        for (i = 0; i < k; i++)
            grad[wo + idx[i]] += gl * val[i];
        if (m->nlayers > 0)
            deep_backward(NULL, m, ex, act, dbuf, gl, 0.0f, grad);
    }
out:
    oti_free(a, idx, (k + 1) * sizeof(uint32_t));
    oti_free(a, val, (k + 1) * sizeof(float));
    oti_free(a, act, nact * sizeof(float));
    oti_free(a, dbuf, nd * sizeof(float));
    return st;
}

/* ---- accessors ----------------------------------------------------------- */

uint64_t ot_model_fingerprint(const ot_model *m)
{
    return m != NULL ? m->params.fingerprint : 0;
}

uint64_t ot_model_num_weights(const ot_model *m)
{
    return m != NULL ? m->params.total : 0;
}

size_t ot_model_num_blocks(const ot_model *m)
{
    return m != NULL ? m->params.nblocks : 0;
}

ot_status ot_model_block_info(const ot_model *m, size_t i, const char **name, int *kind,
                              uint64_t *offset, uint64_t *rows, uint32_t *cols, int *num_state)
{
    const oti_block *b;

    if (m == NULL)
        return OT_EINVAL;
    if (i >= m->params.nblocks)
        return OT_ERANGE;
    b = &m->params.blocks[i];
    if (name != NULL)
        *name = b->name;
    if (kind != NULL)
        *kind = b->kind;
    if (offset != NULL)
        *offset = b->offset;
    if (rows != NULL)
        *rows = b->rows;
    if (cols != NULL)
        *cols = b->cols;
    if (num_state != NULL)
        *num_state = b->nstate;
    return OT_OK;
}

ot_status ot_model_block_data(const ot_model *m, size_t i, int array, const float **out)
{
    const oti_block *b;

    if (m == NULL || out == NULL)
        return OT_EINVAL;
    if (i >= m->params.nblocks)
        return OT_ERANGE;
    b = &m->params.blocks[i];
    if (array == OT_ARRAY_WEIGHTS) {
        *out = b->w;
        return OT_OK;
    }
    if (array < OT_ARRAY_STATE0 || array > OT_ARRAY_STATE0 + b->nstate - 1)
        return OT_ENOENT;
    *out = b->s[array - OT_ARRAY_STATE0];
    return OT_OK;
}

uint64_t ot_model_examples(const ot_model *m)
{
    return m != NULL ? m->examples : 0;
}

const char *ot_model_errmsg(const ot_model *m)
{
    return m != NULL ? m->errmsg : "";
}
