/*
 * cmd_gen.c - `ot gen`: writes a seeded synthetic click stream in VW text
 * (the generator is tools/gen.c).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "ot.h"

enum { G_EXAMPLES = 1, G_NAMESPACES, G_IDS, G_ZIPF, G_SEED, G_DRIFT, G_XOR, G_BIAS, G_SCALE,
       G_OUTPUT, G_TRUTH, G_HELP };

typedef struct gen_flag {
    int id;
    const char *shrt, *lng, *metavar, *help;
} gen_flag;

static const gen_flag gen_flags[] = {
    {G_EXAMPLES, "-n", "--examples", "N", "number of examples to write (default 100000)"},
    {G_NAMESPACES, NULL, "--namespaces", "K", "namespaces per example, 1-52 (default 20)"},
    {G_IDS, NULL, "--ids", "M", "vocabulary per namespace, 1-16777216 (default 100000)"},
    {G_ZIPF, NULL, "--zipf", "S", "Zipf exponent of id popularity (default 1.1)"},
    {G_SEED, NULL, "--seed", "SEED", "random seed (default 1); the same seed gives the same stream"},
    {G_DRIFT, NULL, "--drift", "R", "fraction of hidden weights re-drawn every 1000 examples (default 0)"},
    {G_XOR, NULL, "--xor", NULL,
     "labels from the xor of hidden bits of namespaces a and b (not linearly learnable)"},
    {G_BIAS, NULL, "--bias", "B", "base-rate logit of the hidden model (default -1)"},
    {G_SCALE, NULL, "--scale", "S", "spread of the hidden logit (default 1.5; xor: +-2S)"},
    {G_OUTPUT, "-o", "--output", "FILE", "write examples to FILE (default: standard output)"},
    {G_TRUTH, NULL, "--truth", "FILE", "write each example's true P(label = 1), one per line, to FILE"},
    {G_HELP, "-h", "--help", NULL, "print this help"},
};

#define NGEN_FLAGS (sizeof(gen_flags) / sizeof(gen_flags[0]))

static void gen_usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: ot gen [FLAGS]\n\n"
               "Writes a synthetic click stream in VW text: one feature per namespace, ids\n"
               "Zipf-popular, labels +1/-1 drawn from a hidden logistic model.\n\nflags:\n");
    for (i = 0; i < NGEN_FLAGS; i++) {
        const gen_flag *g = &gen_flags[i];
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s%s%s", g->shrt ? g->shrt : "", g->shrt ? ", " : "",
                 g->lng, g->metavar ? " " : "", g->metavar ? g->metavar : "");
        fprintf(f, "  %-24s %s\n", left, g->help);
    }
}

static int parse_count(const char *flag, const char *s, double lo, double hi, uint64_t *out)
{
    double v;

    if (ot_tool_parse_double("gen", flag, s, lo, hi, &v) != 0)
        return -1;
    if (v != floor(v)) {
        fprintf(stderr, "ot: gen: %s wants a whole number, got \"%s\"\n", flag, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static int write_all(FILE *f, const char *buf, size_t n, const char *path)
{
    if (n > 0 && fwrite(buf, 1, n, f) != n)
        return ot_tool_fail(path, OT_EIO, strerror(errno));
    return 0;
}

int ot_cmd_gen(int argc, char **argv)
{
    otg_params p;
    uint64_t examples = 100000, i, v;
    const char *out_path = NULL, *truth_path = NULL;
    FILE *out = stdout, *truth = NULL;
    otg *g = NULL;
    char err[256], *buf = NULL, *tbuf = NULL;
    size_t cap = 1 << 20, tcap = 1 << 16, len = 0, tlen = 0, line_max;
    int a, rc = 1;
    otg_sample s;

    otg_params_default(&p);
    for (a = 1; a < argc; a++) {
        const char *arg = argv[a], *val = NULL, *eq;
        const gen_flag *f = NULL;
        size_t j, nlen;

        eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        for (j = 0; j < NGEN_FLAGS && f == NULL; j++)
            if ((gen_flags[j].shrt && strlen(gen_flags[j].shrt) == nlen &&
                 strncmp(arg, gen_flags[j].shrt, nlen) == 0) ||
                (strlen(gen_flags[j].lng) == nlen && strncmp(arg, gen_flags[j].lng, nlen) == 0))
                f = &gen_flags[j];
        if (f == NULL) {
            fprintf(stderr, "ot: gen: unknown flag \"%s\" (see `ot gen --help`)\n", arg);
            return 2;
        }
        if (f->metavar != NULL) {
            if (eq != NULL)
                val = eq + 1;
            else if (a + 1 < argc)
                val = argv[++a];
            else {
                fprintf(stderr, "ot: gen: %s needs a value\n", arg);
                return 2;
            }
        } else if (eq != NULL) {
            fprintf(stderr, "ot: gen: %s takes no value\n", f->lng);
            return 2;
        }
        switch (f->id) {
        case G_EXAMPLES:
            if (parse_count(f->lng, val, 0, 1e15, &examples) != 0)
                return 2;
            break;
        case G_NAMESPACES:
            if (parse_count(f->lng, val, 1, OTG_MAX_NAMESPACES, &v) != 0)
                return 2;
            p.namespaces = (int)v;
            break;
        case G_IDS:
            if (parse_count(f->lng, val, 1, 16777216, &v) != 0)
                return 2;
            p.ids = (uint32_t)v;
            break;
        case G_ZIPF:
            if (ot_tool_parse_double("gen", f->lng, val, 0, 10, &p.zipf) != 0)
                return 2;
            break;
        case G_SEED: {
            char *end;
            errno = 0;
            p.seed = strtoull(val, &end, 0);
            if (errno != 0 || end == val || *end != '\0' || val[0] == '-') {
                fprintf(stderr, "ot: gen: --seed wants an unsigned integer, got \"%s\"\n", val);
                return 2;
            }
            break;
        }
        case G_DRIFT:
            if (ot_tool_parse_double("gen", f->lng, val, 0, 1, &p.drift) != 0)
                return 2;
            break;
        case G_XOR:
            p.xor_target = 1;
            break;
        case G_BIAS:
            if (ot_tool_parse_double("gen", f->lng, val, -50, 50, &p.bias) != 0)
                return 2;
            break;
        case G_SCALE:
            if (ot_tool_parse_double("gen", f->lng, val, 0, 20, &p.scale) != 0)
                return 2;
            break;
        case G_OUTPUT:
            out_path = val;
            break;
        case G_TRUTH:
            truth_path = val;
            break;
        default:
            gen_usage(stdout);
            return 0;
        }
    }
    if (otg_create(&p, &g, err, sizeof(err)) != 0) {
        fprintf(stderr, "ot: gen: %s\n", err);
        return 2;
    }
    if (out_path != NULL && strcmp(out_path, "-") != 0) {
        out = fopen(out_path, "w");
        if (out == NULL) {
            rc = ot_tool_fail(out_path, errno == ENOENT ? OT_ENOENT : OT_EIO, strerror(errno));
            out = stdout;
            goto done;
        }
    } else {
        out_path = "standard output";
    }
    if (truth_path != NULL && (truth = fopen(truth_path, "w")) == NULL) {
        rc = ot_tool_fail(truth_path, errno == ENOENT ? OT_ENOENT : OT_EIO, strerror(errno));
        goto done;
    }
    line_max = otg_line_max(g);
    buf = malloc(cap);
    tbuf = malloc(tcap);
    if (buf == NULL || tbuf == NULL || line_max > cap) {
        rc = ot_tool_fail("gen", OT_ENOMEM, NULL);
        goto done;
    }
    for (i = 0; i < examples; i++) {
        otg_next(g, &s);
        if (len + line_max > cap) {
            if (write_all(out, buf, len, out_path) != 0)
                goto done;
            len = 0;
        }
        len += otg_format_vw(g, &s, buf + len);
        if (truth != NULL) {
            if (tlen + 16 > tcap) {
                if (write_all(truth, tbuf, tlen, truth_path) != 0)
                    goto done;
                tlen = 0;
            }
            tlen += otg_format_prob(s.prob, tbuf + tlen);
        }
    }
    if (write_all(out, buf, len, out_path) != 0 ||
        (truth != NULL && write_all(truth, tbuf, tlen, truth_path) != 0))
        goto done;
    if (fflush(out) != 0) {
        rc = ot_tool_fail(out_path, OT_EIO, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (out != stdout && fclose(out) != 0 && rc == 0)
        rc = ot_tool_fail(out_path, OT_EIO, strerror(errno));
    if (truth != NULL && fclose(truth) != 0 && rc == 0)
        rc = ot_tool_fail(truth_path, OT_EIO, strerror(errno));
    free(buf);
    free(tbuf);
    otg_destroy(g);
    return rc;
}
