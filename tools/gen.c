/*
 * gen.c - the synthetic click stream of `ot gen` (see gen.h).
 *
 * Speed: ids come from Walker/Vose alias tables (one 64-bit random number
 * per feature, O(1)), weights from one float table, and lines are formatted
 * with hand-written integer conversion, so a generator makes well over a
 * million 20-feature examples per second on one core.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

#define OTG_MAX_IDS (UINT32_C(1) << 24)

struct otg {
    otg_params p;
    uint64_t rng[4];     /* xoshiro256** state */
    uint32_t *thr;       /* alias table: keep i when the low 32 bits < thr[i] */
    uint32_t *alias;     /* ... else take alias[i] */
    float *w;            /* linear: K * M hidden weights, namespace-major */
    uint8_t *bits[2];    /* xor: hidden bit of each id of namespaces a and b */
    double sigma;        /* prior std of one hidden weight */
    double drift_carry;  /* fractional weights still owed to drift */
    uint64_t count;
};

/* ---- random numbers --------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t r = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return r;
}

/* Uniform in [0, 1). */
static inline double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, n). */
static inline uint32_t rng_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(((rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

static double rng_normal(uint64_t *s)
{
    double u = rng_unit(s), v = rng_unit(s);

    /* Box-Muller; 1 - u is in (0, 1], so the log is finite. */
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* ---- Zipf alias table ------------------------------------------------------- */

static int build_alias(otg *g)
{
    uint32_t m = g->p.ids, i, ns = 0, nl = 0;
    double *q = malloc((size_t)m * sizeof(double)), total = 0.0;
    uint32_t *small = malloc((size_t)m * sizeof(uint32_t));
    uint32_t *large = malloc((size_t)m * sizeof(uint32_t));
    int rc = -1;

    g->thr = malloc((size_t)m * sizeof(uint32_t));
    g->alias = malloc((size_t)m * sizeof(uint32_t));
    if (q == NULL || small == NULL || large == NULL || g->thr == NULL || g->alias == NULL)
        goto out;
    for (i = 0; i < m; i++) {
        q[i] = pow((double)i + 1.0, -g->p.zipf);
        total += q[i];
    }
    for (i = 0; i < m; i++) {
        q[i] = q[i] * (double)m / total;
        g->alias[i] = i;
        if (q[i] < 1.0)
            small[ns++] = i;
        else
            large[nl++] = i;
    }
    /* Vose: pair each short column with a tall one that tops it up. */
    while (ns > 0 && nl > 0) {
        uint32_t s = small[--ns], l = large[nl - 1];
        g->thr[s] = q[s] > 0.0 ? (uint32_t)(q[s] * 4294967296.0) : 0;
        g->alias[s] = l;
        q[l] -= 1.0 - q[s];
        if (q[l] < 1.0) {
            nl--;
            small[ns++] = l;
        }
    }
    /* What is left is full up to rounding. */
    while (nl > 0)
        g->thr[large[--nl]] = UINT32_MAX;
    while (ns > 0)
        g->thr[small[--ns]] = UINT32_MAX;
    rc = 0;
out:
    free(q);
    free(small);
    free(large);
    return rc;
}

static inline uint32_t zipf_draw(otg *g)
{
    uint64_t r = rng_next(g->rng);
    uint32_t i = (uint32_t)(((r >> 32) * (uint64_t)g->p.ids) >> 32);

    return (uint32_t)r < g->thr[i] ? i : g->alias[i];
}

/* Gives each id of a namespace a bit so that both bit values hold half of the
 * Zipf mass (greedy in popularity order), then inverts all bits by a coin. */
static void balance_bits(otg *g, uint8_t *bits)
{
    double mass[2] = {0.0, 0.0};
    uint8_t flip = (uint8_t)(rng_next(g->rng) >> 63);
    uint32_t i;

    for (i = 0; i < g->p.ids; i++) {
        int side = mass[1] < mass[0];
        bits[i] = (uint8_t)(side ^ flip);
        mass[side] += pow((double)i + 1.0, -g->p.zipf);
    }
}

/* ---- public ---------------------------------------------------------------- */

void otg_params_default(otg_params *p)
{
    p->namespaces = 20;
    p->ids = 100000;
    p->zipf = 1.1;
    p->seed = 1;
    p->drift = 0.0;
    p->xor_target = 0;
    p->bias = -1.0;
    p->scale = 1.5;
}

int otg_create(const otg_params *p, otg **out, char *err, size_t errlen)
{
    otg *g;
    uint64_t x;
    size_t i, n;

    if (p->namespaces < 1 || p->namespaces > OTG_MAX_NAMESPACES) {
        snprintf(err, errlen, "namespaces must be in [1, %d]", OTG_MAX_NAMESPACES);
        return -1;
    }
    if (p->xor_target && p->namespaces < 2) {
        snprintf(err, errlen, "xor needs at least 2 namespaces");
        return -1;
    }
    if (p->ids < 1 || p->ids > OTG_MAX_IDS) {
        snprintf(err, errlen, "ids must be in [1, %lu]", (unsigned long)OTG_MAX_IDS);
        return -1;
    }
    if (!(p->zipf >= 0.0 && p->zipf <= 10.0)) {
        snprintf(err, errlen, "zipf exponent must be in [0, 10]");
        return -1;
    }
    if (!(p->drift >= 0.0 && p->drift <= 1.0)) {
        snprintf(err, errlen, "drift must be in [0, 1]");
        return -1;
    }
    if (!(p->scale >= 0.0 && p->scale <= 20.0) || !(fabs(p->bias) <= 50.0)) {
        snprintf(err, errlen, "scale must be in [0, 20] and bias in [-50, 50]");
        return -1;
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    g->p = *p;
    x = p->seed;
    for (i = 0; i < 4; i++)
        g->rng[i] = splitmix64(&x);
    g->sigma = p->scale / sqrt((double)p->namespaces);
    if (build_alias(g) != 0)
        goto nomem;
    if (p->xor_target) {
        for (i = 0; i < 2; i++) {
            g->bits[i] = malloc(p->ids);
            if (g->bits[i] == NULL)
                goto nomem;
            balance_bits(g, g->bits[i]);
        }
    } else {
        n = (size_t)p->namespaces * p->ids;
        g->w = malloc(n * sizeof(float));
        if (g->w == NULL)
            goto nomem;
        for (i = 0; i < n; i++)
            g->w[i] = (float)(g->sigma * rng_normal(g->rng));
    }
    *out = g;
    return 0;
nomem:
    otg_destroy(g);
    snprintf(err, errlen, "out of memory");
    return -1;
}

void otg_destroy(otg *g)
{
    if (g == NULL)
        return;
    free(g->thr);
    free(g->alias);
    free(g->w);
    free(g->bits[0]);
    free(g->bits[1]);
    free(g);
}

static void drift_step(otg *g)
{
    double n = floor(g->drift_carry += g->p.drift * (double)g->p.namespaces * (double)g->p.ids);
    uint64_t i, cnt = (uint64_t)n;

    g->drift_carry -= n;
    for (i = 0; i < cnt; i++) {
        uint32_t k = rng_below(g->rng, (uint32_t)g->p.namespaces);
        uint32_t id = rng_below(g->rng, g->p.ids);
        if (g->p.xor_target) {
            /* Only namespaces a and b carry bits; other picks are no-ops. */
            if (k < 2)
                g->bits[k][id] = (uint8_t)(rng_next(g->rng) >> 63);
        } else {
            g->w[(size_t)k * g->p.ids + id] = (float)(g->sigma * rng_normal(g->rng));
        }
    }
}

void otg_next(otg *g, otg_sample *s)
{
    int k, nk = g->p.namespaces;
    double z = g->p.bias;

    for (k = 0; k < nk; k++)
        s->id[k] = zipf_draw(g);
    if (g->p.xor_target) {
        int x = g->bits[0][s->id[0]] ^ g->bits[1][s->id[1]];
        z += (x ? 2.0 : -2.0) * g->p.scale;
    } else {
        const float *w = g->w;
        for (k = 0; k < nk; k++, w += g->p.ids)
            z += w[s->id[k]];
    }
    s->prob = 1.0 / (1.0 + exp(-z));
    s->label = rng_unit(g->rng) < s->prob ? 1.0f : -1.0f;
    if (++g->count % OTG_DRIFT_PERIOD == 0 && g->p.drift > 0.0)
        drift_step(g);
}

uint64_t otg_count(const otg *g)
{
    return g->count;
}

char otg_namespace_name(int k)
{
    return (char)(k < 26 ? 'a' + k : 'A' + (k - 26));
}

size_t otg_line_max(const otg *g)
{
    /* "-1" + per namespace " |x x" + up to 10 digits + "\n" */
    return 2 + (size_t)g->p.namespaces * (5 + 10) + 1;
}

static inline char *put_u32(char *p, uint32_t v)
{
    char tmp[10];
    int n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

size_t otg_format_vw(const otg *g, const otg_sample *s, char *buf)
{
    char *p = buf;
    int k;

    if (s->label > 0.0f) {
        *p++ = '1';
    } else {
        *p++ = '-';
        *p++ = '1';
    }
    for (k = 0; k < g->p.namespaces; k++) {
        char ns = otg_namespace_name(k);
        p[0] = ' ';
        p[1] = '|';
        p[2] = ns;
        p[3] = ' ';
        p[4] = ns;
        p = put_u32(p + 5, s->id[k]);
    }
    *p++ = '\n';
    return (size_t)(p - buf);
}

size_t otg_format_prob(double p, char *buf)
{
    uint64_t v;
    int i;

    if (!(p > 0.0))
        p = 0.0;
    v = (uint64_t)(p * 1e9 + 0.5);
    if (v >= UINT64_C(1000000000)) {
        memcpy(buf, "1.000000000\n", 12);
        return 12;
    }
    buf[0] = '0';
    buf[1] = '.';
    for (i = 10; i >= 2; i--) {
        buf[i] = (char)('0' + v % 10);
        v /= 10;
    }
    buf[11] = '\n';
    return 12;
}

ot_status otg_fill_example(const otg *g, const otg_sample *s, ot_example *ex)
{
    char ns[2] = {0, 0}, name[16];
    ot_status st;
    int k;

    ot_example_clear(ex);
    if ((st = ot_example_set_label(ex, s->label)) != OT_OK)
        return st;
    for (k = 0; k < g->p.namespaces; k++) {
        char *end;
        ns[0] = name[0] = otg_namespace_name(k);
        end = put_u32(name + 1, s->id[k]);
        *end = '\0';
        if ((st = ot_example_add_feature(ex, ns, name, 1.0f)) != OT_OK)
            return st;
    }
    return OT_OK;
}

double otg_logloss(double p, float y)
{
    const double lo = 1e-15, hi = 1.0 - 1e-15;

    p = p < lo ? lo : (p > hi ? hi : p);
    return y > 0.0f ? -log(p) : -log(1.0 - p);
}
