/*
 * parse.c - parsers of one line of text into an ot_example: Vowpal Wabbit's
 * text format and libsvm's.  docs/formats.md describes both.
 *
 * A line is a pointer and a length; it is not NUL-terminated, and nothing
 * here reads outside [line, line + len).  Errors leave the example empty and
 * put "column N: what is wrong" into ex->errmsg (N is the 1-based byte
 * column of the offending token).
 *
 * Numbers are parsed here rather than with strtof, which needs a
 * NUL-terminated string, follows the locale's decimal point and is slow.
 * The fast paths are exact (Clinger's method); inputs outside them are
 * rewritten into a locale-free form ("digits e exponent") in a small buffer
 * and handed to strtof.
 *
 * SPDX-License-Identifier: MIT
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- character classes -------------------------------------------------- */

enum {
    C_WS = 1,     /* ' ', '\t', '\r', '\n': separate tokens */
    C_BAR = 2,    /* '|': starts a namespace */
    C_COLON = 4,  /* ':': separates a name from its value */
    C_NUM = 8     /* a character a number may start with: digit, sign, '.' */
};

#define C_DELIM (C_WS | C_BAR | C_COLON)

static const uint8_t cls[256] = {
    [' '] = C_WS, ['\t'] = C_WS, ['\r'] = C_WS, ['\n'] = C_WS,
    ['|'] = C_BAR, [':'] = C_COLON,
    ['0'] = C_NUM, ['1'] = C_NUM, ['2'] = C_NUM, ['3'] = C_NUM, ['4'] = C_NUM,
    ['5'] = C_NUM, ['6'] = C_NUM, ['7'] = C_NUM, ['8'] = C_NUM, ['9'] = C_NUM,
    ['+'] = C_NUM, ['-'] = C_NUM, ['.'] = C_NUM,
};

#define CLS(c) (cls[(uint8_t)(c)])

/* ---- numbers ------------------------------------------------------------ */

enum { NUM_OK = 0, NUM_BAD = 1, NUM_RANGE = 2 };

/* Significant decimal digits kept for the strtof fallback; more than any
 * float needs to be rounded correctly (a sticky digit stands for the rest). */
#define SLOW_DIGITS 120

static const double pow10_d[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static const float pow10_f[11] = {
    1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f, 1e6f, 1e7f, 1e8f, 1e9f, 1e10f,
};

static int is_digit(char c)
{
    return (unsigned)(c - '0') < 10u;
}

/*
 * The slow path: the token [s, e) is known to be a well-formed decimal
 * number.  Rewrites it as [-]DIGITSeEXP (no radix character, so the locale
 * does not matter), keeping SLOW_DIGITS significant digits plus a sticky
 * digit, and lets strtof round it.
 */
static int parse_num_slow(const char *s, const char *e, float *out)
{
    char buf[SLOW_DIGITS + 40];
    size_t n = 0;
    int64_t exp10 = 0, ev = 0;
    int ndig = 0, sticky = 0, eneg = 0, frac = 0;
    const char *p = s;
    float f;
    char *endp;

    if (*p == '-' || *p == '+') {
        if (*p == '-')
            buf[n++] = '-';
        p++;
    }
    for (; p < e && (is_digit(*p) || *p == '.'); p++) {
        if (*p == '.') {
            frac = 1;
            continue;
        }
        if (ndig == 0 && *p == '0') {
            if (frac)
                exp10--;
            continue;
        }
        if (ndig < SLOW_DIGITS) {
            buf[n++] = *p;
            ndig++;
            if (frac)
                exp10--;
        } else {
            if (!frac)
                exp10++;
            if (*p != '0')
                sticky = 1;
        }
    }
    if (ndig == 0) {
        *out = (n > 0) ? -0.0f : 0.0f;
        return NUM_OK;
    }
    if (sticky) {
        buf[n++] = '1';
        exp10--;
    }
    if (p < e) { /* exponent, already checked to be well formed */
        p++;
        if (*p == '-' || *p == '+')
            eneg = *p++ == '-';
        for (; p < e; p++)
            if (ev < 10000000)
                ev = ev * 10 + (*p - '0');
    }
    exp10 += eneg ? -ev : ev;
    if (exp10 > 99999)
        exp10 = 99999;
    if (exp10 < -99999)
        exp10 = -99999;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "e%d", (int)exp10);
    f = strtof(buf, &endp);
    if (endp != buf + n)
        return NUM_BAD;
    if (isinf(f))
        return NUM_RANGE;
    *out = f;
    return NUM_OK;
}

/*
 * Parses the whole token [s, e) as a decimal number:
 *   [+-] (digits [. [digits]] | . digits) [(e|E) [+-] digits]
 * No "nan", "inf", hexadecimal or spaces.  Returns NUM_OK with *out set,
 * NUM_BAD for a malformed token, NUM_RANGE for a value beyond float's range
 * (values too small for a float round to 0 or a subnormal and are fine).
 */
static int parse_num(const char *s, const char *e, float *out)
{
    const char *p = s;
    uint64_t m = 0;
    int64_t exp10 = 0;
    int neg = 0, ndig = 0, any = 0, trunc = 0;

    if (p < e && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    for (; p < e && is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        any = 1;
        if (m == 0 && d == 0)
            continue;
        if (ndig < 19) {
            m = m * 10 + d;
            ndig++;
        } else {
            exp10++;
            trunc |= d != 0;
        }
    }
    if (p < e && *p == '.') {
        for (p++; p < e && is_digit(*p); p++) {
            unsigned d = (unsigned)(*p - '0');
            any = 1;
            if (m == 0 && d == 0) {
                exp10--;
            } else if (ndig < 19) {
                m = m * 10 + d;
                ndig++;
                exp10--;
            } else {
                trunc |= d != 0;
            }
        }
    }
    if (!any)
        return NUM_BAD;
    if (p < e && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        int64_t ev = 0;
        int eneg = 0, edig = 0;
        if (q < e && (*q == '-' || *q == '+'))
            eneg = *q++ == '-';
        for (; q < e && is_digit(*q); q++) {
            edig = 1;
            if (ev < 10000000)
                ev = ev * 10 + (*q - '0');
        }
        if (!edig || q != e)
            return NUM_BAD;
        exp10 += eneg ? -ev : ev;
    } else if (p != e) {
        return NUM_BAD;
    }
    if (m == 0) {
        *out = neg ? -0.0f : 0.0f;
        return NUM_OK;
    }
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    if (!trunc) {
        /* m and 10^|exp10| are exact, so one IEEE operation rounds once. */
        if (m <= (UINT64_C(1) << 24) && exp10 >= -10 && exp10 <= 10) {
            float f = (float)m;
            f = exp10 < 0 ? f / pow10_f[-exp10] : f * pow10_f[exp10];
            *out = neg ? -f : f;
            return NUM_OK;
        }
        if (m <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
            double d = (double)m;
            uint64_t bits;
            d = exp10 < 0 ? d / pow10_d[-exp10] : d * pow10_d[exp10];
            memcpy(&bits, &d, sizeof(bits));
            /* The double is correctly rounded; rounding it again to float is
             * correct unless it sits exactly halfway between two floats
             * (29 dropped bits 1000...0): then the double's own rounding may
             * have decided the tie, so ask strtof.  The range here (1e-22 to
             * 9e37) holds only normal floats. */
            if ((bits & 0x1fffffffu) != 0x10000000u) {
                float f = (float)d;
                *out = neg ? -f : f;
                return NUM_OK;
            }
        }
    }
#else
    (void)trunc;
    (void)pow10_d;
    (void)pow10_f;
#endif
    return parse_num_slow(s, e, out);
}

/* ---- errors ------------------------------------------------------------- */

/* Fails the parse: empties the example and writes "column N: what \"tok\"". */
static ot_status fail(ot_example *ex, const char *line, const char *at, const char *what,
                      const char *tok, size_t toklen)
{
    size_t col = (size_t)(at - line) + 1;

    ot_example_clear(ex);
    if (tok != NULL) {
        char shown[44];
        size_t i, n = toklen > 40 ? 40 : toklen;
        for (i = 0; i < n; i++) {
            unsigned char c = (unsigned char)tok[i];
            shown[i] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
        }
        if (toklen > n) {
            memcpy(shown + n, "...", 3);
            n += 3;
        }
        shown[n] = '\0';
        return oti_err(ex->errmsg, OT_EFORMAT, "column %zu: %s \"%s\"", col, what, shown);
    }
    return oti_err(ex->errmsg, OT_EFORMAT, "column %zu: %s", col, what);
}

/* Parses a numeric field [s, e) for the label section or libsvm. */
static ot_status number_field(ot_example *ex, const char *line, const char *s, const char *e,
                              const char *bad, const char *range, float *out)
{
    int r = parse_num(s, e, out);

    if (OTI_LIKELY(r == NUM_OK))
        return OT_OK;
    return fail(ex, line, s, r == NUM_RANGE ? range : bad, s, (size_t)(e - s));
}

static int word_is(const char *s, size_t n, const char *w)
{
    size_t i;

    if (strlen(w) != n)
        return 0;
    for (i = 0; i < n; i++)
        if ((s[i] | 0x20) != w[i])
            return 0;
    return 1;
}

/* "nan", "inf", "infinity" (any case) or "nan(...)": refused as values. */
static int nonfinite_word(const char *s, size_t n)
{
    return word_is(s, n, "nan") || word_is(s, n, "inf") || word_is(s, n, "infinity") ||
           (n > 3 && word_is(s, 3, "nan") && s[3] == '(');
}

/* Appends a feature; the common case is inline, growth goes to example.c. */
static inline ot_status push(ot_example *ex, uint8_t ns, uint32_t hash, float value)
{
    oti_feat *f;

    if (OTI_UNLIKELY(ex->nfeat == ex->feat_cap))
        return oti_example_push(ex, ns, hash, value);
    f = &ex->feat[ex->nfeat++];
    f->hash = hash;
    f->value = value;
    f->ns = ns;
    return OT_OK;
}

/* ---- Vowpal Wabbit ------------------------------------------------------ */

/*
 * The part before the first '|': [label [importance [initial]]] [tag].
 * The tag is the last field when it starts with a quote (dropped) or when
 * it touches the '|' with no space between.
 */
static ot_status vw_header(ot_example *ex, const char *line, const char *pe, const char *bar)
{
    const char *ts[4], *te[4];
    const char *p = line;
    size_t ntok = 0;
    ot_status st;
    float v;

    for (;;) {
        const char *s;
        while (p < pe && (CLS(*p) & C_WS))
            p++;
        if (p == pe)
            break;
        s = p;
        while (p < pe && !(CLS(*p) & C_WS))
            p++;
        if (ntok == 4)
            return fail(ex, line, s,
                        bar != NULL ? "too many fields before '|' (label [importance [initial]] [tag])"
                                    : "missing '|' before features",
                        s, (size_t)(p - s));
        ts[ntok] = s;
        te[ntok] = p;
        ntok++;
    }
    if (ntok > 0 && (ts[ntok - 1][0] == '\'' || (bar != NULL && te[ntok - 1] == bar))) {
        const char *s = ts[ntok - 1];
        ntok--;
        if (*s == '\'')
            s++;
        if (ot_example_set_tag(ex, s, (size_t)(te[ntok] - s)) != OT_OK)
            return oti_err(ex->errmsg, OT_ENOMEM, "out of memory for the tag");
    }
    if (ntok == 0)
        return OT_OK;
    if (ntok > 3)
        return fail(ex, line, ts[3],
                    bar != NULL ? "too many fields before '|' (label [importance [initial]] [tag])"
                                : "missing '|' before features",
                    ts[3], (size_t)(te[3] - ts[3]));
    st = number_field(ex, line, ts[0], te[0],
                      bar != NULL ? "bad label" : "bad label (missing '|' before features?)",
                      "label out of range", &v);
    if (st != OT_OK)
        return st;
    ex->label = v;
    ex->has_label = 1;
    if (ntok > 1) {
        st = number_field(ex, line, ts[1], te[1],
                          bar != NULL ? "bad importance" : "bad importance (missing '|' before features?)",
                          "importance out of range", &v);
        if (st != OT_OK)
            return st;
        if (v < 0.0f)
            return fail(ex, line, ts[1], "negative importance", ts[1], (size_t)(te[1] - ts[1]));
        ex->weight = v + 0.0f; /* -0 becomes +0 */
    }
    if (ntok > 2) {
        st = number_field(ex, line, ts[2], te[2],
                          bar != NULL ? "bad initial prediction"
                                      : "bad initial prediction (missing '|' before features?)",
                          "initial prediction out of range", &v);
        if (st != OT_OK)
            return st;
        ex->initial = v;
    }
    return OT_OK;
}

ot_status oti_parse_vw(ot_example *ex, const char *line, size_t len)
{
    const char *end = line + len, *bar, *p;
    const int hash_all = ex->hash_all;
    uint32_t ns_hash = 0;
    uint8_t ns = ' ';
    float scale = 1.0f;
    ot_status st;

    ot_example_clear(ex);
    bar = len > 0 ? memchr(line, '|', len) : NULL;
    st = vw_header(ex, line, bar != NULL ? bar : end, bar);
    if (st != OT_OK || bar == NULL)
        return st;

    p = bar;
    while (p < end) {
        const char *ns_start, *name, *name_end, *val, *val_end;
        float v;
        uint32_t h;

        if (CLS(*p) & C_WS) {
            p++;
            continue;
        }
        if (*p == '|') {
            p++;
            if (p == end || (CLS(*p) & (C_WS | C_BAR))) {
                ns_hash = 0;
                ns = ' ';
                scale = 1.0f;
                continue;
            }
            ns_start = p;
            if (*p == ':')
                return fail(ex, line, p, "namespace scale without a namespace name", NULL, 0);
            while (p < end && !(CLS(*p) & C_DELIM))
                p++;
            ns = (uint8_t)ns_start[0];
            ns_hash = oti_hash_namespace(ns_start, (size_t)(p - ns_start), hash_all);
            scale = 1.0f;
            if (p < end && *p == ':') {
                val = ++p;
                while (p < end && !(CLS(*p) & C_DELIM))
                    p++;
                if (p < end && *p == ':')
                    return fail(ex, line, p, "second ':' in namespace", NULL, 0);
                if (p == val)
                    return fail(ex, line, val - 1, "':' with no value", NULL, 0);
                switch (parse_num(val, p, &scale)) {
                case NUM_OK:
                    break;
                case NUM_RANGE:
                    return fail(ex, line, val, "namespace scale out of range", val, (size_t)(p - val));
                default:
                    return fail(ex, line, val, "bad namespace scale", val, (size_t)(p - val));
                }
            }
            continue;
        }

        /* A feature: name[:value]. */
        name = p;
        while (p < end && !(CLS(*p) & C_DELIM))
            p++;
        name_end = p;
        if (OTI_LIKELY(p == end || *p != ':')) {
            if (OTI_UNLIKELY(scale == 0.0f))
                continue;
            st = push(ex, ns, oti_hash_feature(name, (size_t)(name_end - name), ns_hash, hash_all), scale);
            if (OTI_UNLIKELY(st != OT_OK))
                return st;
            continue;
        }
        if (name == name_end)
            return fail(ex, line, name, "empty feature name", NULL, 0);
        val = ++p;
        while (p < end && !(CLS(*p) & C_DELIM))
            p++;
        val_end = p;
        if (p < end && *p == ':')
            return fail(ex, line, p, "second ':' in feature", NULL, 0);
        if (val == val_end)
            return fail(ex, line, val - 1, "':' with no value", NULL, 0);
        h = oti_hash_feature(name, (size_t)(name_end - name), ns_hash, hash_all);
        if (OTI_LIKELY(CLS(*val) & C_NUM)) {
            int r = parse_num(val, val_end, &v);
            if (OTI_UNLIKELY(r != NUM_OK))
                return fail(ex, line, val, r == NUM_RANGE ? "value out of range" : "bad value", val,
                            (size_t)(val_end - val));
        } else {
            /* A string value (VW's name:word): the word is hashed with the
             * name's hash as seed, and the value is 1. */
            if (nonfinite_word(val, (size_t)(val_end - val)))
                return fail(ex, line, val, "value is not finite", val, (size_t)(val_end - val));
            h = oti_hash_feature(val, (size_t)(val_end - val), h, hash_all);
            v = 1.0f;
        }
        v *= scale;
        if (v == 0.0f)
            continue;
        if (OTI_UNLIKELY(!isfinite(v)))
            return fail(ex, line, val, "value times the namespace scale is not finite", val,
                        (size_t)(val_end - val));
        st = push(ex, ns, h, v);
        if (OTI_UNLIKELY(st != OT_OK))
            return st;
    }
    return OT_OK;
}

/* ---- libsvm ------------------------------------------------------------- */

/* A non-negative decimal integer up to UINT32_MAX, the whole of [s, e). */
static int parse_index(const char *s, const char *e, uint32_t *out)
{
    uint64_t v = 0;

    if (s == e)
        return -1;
    for (; s < e; s++) {
        if (!is_digit(*s))
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return -2;
    }
    *out = (uint32_t)v;
    return 0;
}

ot_status oti_parse_libsvm(ot_example *ex, const char *line, size_t len)
{
    const char *end = line + len, *p = line, *s;
    ot_status st;
    float v;

    ot_example_clear(ex);
    while (p < end && (CLS(*p) & C_WS))
        p++;
    if (p == end)
        return fail(ex, line, p, "missing label", NULL, 0);
    s = p;
    while (p < end && !(CLS(*p) & C_WS))
        p++;
    st = number_field(ex, line, s, p, "bad label", "label out of range", &v);
    if (st != OT_OK)
        return st;
    ex->label = v;
    ex->has_label = 1;

    for (;;) {
        const char *colon, *val;
        uint32_t idx;
        int r;

        while (p < end && (CLS(*p) & C_WS))
            p++;
        if (p == end || *p == '#') /* end, or a trailing "# comment" */
            break;
        s = p;
        while (p < end && !(CLS(*p) & (C_WS | C_COLON)))
            p++;
        colon = p;
        if (colon == end || *colon != ':') {
            return fail(ex, line, s, "expected index:value", s, (size_t)(colon - s));
        }
        val = ++p;
        while (p < end && !(CLS(*p) & (C_WS | C_COLON)))
            p++;
        if (p < end && *p == ':')
            return fail(ex, line, p, "second ':' in feature", NULL, 0);
        if (val == p)
            return fail(ex, line, colon, "':' with no value", NULL, 0);
        if (colon - s == 3 && memcmp(s, "qid", 3) == 0) {
            if (parse_index(val, p, &idx) != 0)
                return fail(ex, line, val, "bad qid", val, (size_t)(p - val));
            continue;
        }
        r = parse_index(s, colon, &idx);
        if (r != 0)
            return fail(ex, line, s, r == -2 ? "index above 4294967295" : "bad index", s,
                        (size_t)(colon - s));
        r = parse_num(val, p, &v);
        if (r != NUM_OK)
            return fail(ex, line, val, r == NUM_RANGE ? "value out of range" : "bad value", val,
                        (size_t)(p - val));
        if (v == 0.0f)
            continue;
        st = push(ex, ' ', idx, v);
        if (st != OT_OK)
            return st;
    }
    return OT_OK;
}
