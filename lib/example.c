/*
 * example.c - the ot_example buffer and feature hashing.
 *
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <string.h>

#include "internal.h"

ot_status ot_example_create(const ot_config *cfg, ot_example **out)
{
    oti_alloc a = oti_cfg_alloc(cfg);
    ot_example *ex;

    if (out == NULL)
        return OT_EINVAL;
    ex = oti_calloc(&a, 1, sizeof(*ex));
    if (ex == NULL)
        return OT_ENOMEM;
    ex->alloc = a;
    ex->hash_all = oti_cfg_choice(cfg, OT_OPT_HASH) == 1;
    ex->format = oti_cfg_choice(cfg, OT_OPT_FORMAT);
    ot_example_clear(ex);
    *out = ex;
    return OT_OK;
}

void ot_example_destroy(ot_example *ex)
{
    oti_alloc a;

    if (ex == NULL)
        return;
    a = ex->alloc;
    oti_free(&a, ex->tag, ex->tag_cap);
    oti_free(&a, ex->feat, ex->feat_cap * sizeof(oti_feat));
    oti_free(&a, ex->dense, ex->dense_cap * sizeof(float));
    oti_free(&a, ex, sizeof(*ex));
}

void ot_example_clear(ot_example *ex)
{
    if (ex == NULL)
        return;
    ex->label = 0.0f;
    ex->weight = 1.0f;
    ex->initial = 0.0f;
    ex->has_label = 0;
    ex->tag_len = 0;
    ex->nfeat = 0;
    ex->ndense = 0;
}

ot_status ot_example_set_label(ot_example *ex, float label)
{
    if (ex == NULL)
        return OT_EINVAL;
    if (!isfinite(label))
        return oti_err(ex->errmsg, OT_ENONFINITE, "label is not finite");
    ex->label = label;
    ex->has_label = 1;
    return OT_OK;
}

ot_status ot_example_set_weight(ot_example *ex, float weight)
{
    if (ex == NULL)
        return OT_EINVAL;
    if (!isfinite(weight))
        return oti_err(ex->errmsg, OT_ENONFINITE, "importance weight is not finite");
    if (weight < 0.0f)
        return oti_err(ex->errmsg, OT_ERANGE, "importance weight %g is negative", (double)weight);
    ex->weight = weight;
    return OT_OK;
}

ot_status ot_example_set_tag(ot_example *ex, const char *tag, size_t len)
{
    if (ex == NULL || (tag == NULL && len > 0))
        return OT_EINVAL;
    if (oti_grow(&ex->alloc, (void **)&ex->tag, &ex->tag_cap, len + 1, 1) != 0)
        return OT_ENOMEM;
    if (len > 0)
        memcpy(ex->tag, tag, len);
    ex->tag[len] = '\0';
    ex->tag_len = len;
    return OT_OK;
}

ot_status oti_example_push(ot_example *ex, uint8_t ns, uint32_t hash, float value)
{
    oti_feat *f;

    if (OTI_UNLIKELY(ex->nfeat == ex->feat_cap) &&
        oti_grow(&ex->alloc, (void **)&ex->feat, &ex->feat_cap, ex->nfeat + 1, sizeof(oti_feat)) != 0)
        return oti_err(ex->errmsg, OT_ENOMEM, "out of memory for features");
    f = &ex->feat[ex->nfeat++];
    f->hash = hash;
    f->value = value;
    f->ns = ns;
    return OT_OK;
}

ot_status ot_example_add_hashed(ot_example *ex, uint8_t ns, uint32_t hash, float value)
{
    if (ex == NULL)
        return OT_EINVAL;
    if (!isfinite(value))
        return oti_err(ex->errmsg, OT_ENONFINITE, "feature value is not finite");
    return oti_example_push(ex, ns, hash, value);
}

/* VW's rule (--hash strings): a name made only of digits maps to its value
 * plus the seed; any other name is hashed.  --hash all hashes every name.
 * VW adds in 64 bits and the model keeps the low bits, so the value wraps
 * modulo 2^32 here, for names of any length. */
static int all_digits(const char *s, size_t len, uint32_t *value)
{
    uint32_t v = 0;
    size_t i;

    if (len == 0)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10u + (uint32_t)(s[i] - '0');
    }
    *value = v;
    return 1;
}

uint32_t oti_hash_namespace(const char *s, size_t len, int hash_all)
{
    uint32_t v;

    if (len == 0)
        return 0;
    if (!hash_all && all_digits(s, len, &v))
        return v;
    return oti_murmur3(s, len, 0);
}

uint32_t oti_hash_feature(const char *s, size_t len, uint32_t ns_hash, int hash_all)
{
    uint32_t v;

    if (!hash_all && all_digits(s, len, &v))
        return v + ns_hash;
    return oti_murmur3(s, len, ns_hash);
}

ot_status ot_example_add_feature(ot_example *ex, const char *ns_name, const char *name, float value)
{
    size_t nlen;
    uint32_t nsh;

    if (ex == NULL || name == NULL || name[0] == '\0')
        return OT_EINVAL;
    if (!isfinite(value))
        return oti_err(ex->errmsg, OT_ENONFINITE, "feature value is not finite");
    nlen = ns_name != NULL ? strlen(ns_name) : 0;
    nsh = oti_hash_namespace(ns_name, nlen, ex->hash_all);
    return oti_example_push(ex, nlen ? (uint8_t)ns_name[0] : (uint8_t)' ',
                            oti_hash_feature(name, strlen(name), nsh, ex->hash_all), value);
}

ot_status ot_example_set_dense(ot_example *ex, const float *values, size_t n)
{
    size_t i;

    if (ex == NULL || (values == NULL && n > 0))
        return OT_EINVAL;
    for (i = 0; i < n; i++)
        if (!isfinite(values[i]))
            return oti_err(ex->errmsg, OT_ENONFINITE, "dense value %zu is not finite", i);
    if (oti_grow(&ex->alloc, (void **)&ex->dense, &ex->dense_cap, n, sizeof(float)) != 0)
        return OT_ENOMEM;
    if (n > 0)
        memcpy(ex->dense, values, n * sizeof(float));
    ex->ndense = n;
    return OT_OK;
}

int ot_example_has_label(const ot_example *ex)
{
    return ex != NULL && ex->has_label;
}

float ot_example_label(const ot_example *ex)
{
    return ex != NULL ? ex->label : 0.0f;
}

float ot_example_weight(const ot_example *ex)
{
    return ex != NULL ? ex->weight : 0.0f;
}

const char *ot_example_tag(const ot_example *ex, size_t *len)
{
    if (ex == NULL || ex->tag_len == 0) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = ex->tag_len;
    return ex->tag;
}

size_t ot_example_num_features(const ot_example *ex)
{
    return ex != NULL ? ex->nfeat : 0;
}

ot_status ot_example_feature(const ot_example *ex, size_t i, uint8_t *ns, uint32_t *hash, float *value)
{
    if (ex == NULL)
        return OT_EINVAL;
    if (i >= ex->nfeat)
        return OT_ERANGE;
    if (ns)
        *ns = ex->feat[i].ns;
    if (hash)
        *hash = ex->feat[i].hash;
    if (value)
        *value = ex->feat[i].value;
    return OT_OK;
}

const float *ot_example_dense(const ot_example *ex, size_t *n)
{
    if (ex == NULL || ex->ndense == 0) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = ex->ndense;
    return ex->dense;
}

ot_status ot_example_parse(ot_example *ex, const char *format, const char *line, size_t len)
{
    int fmt;

    if (ex == NULL || (line == NULL && len > 0))
        return OT_EINVAL;
    if (format == NULL)
        fmt = ex->format;
    else if (strcmp(format, "vw") == 0)
        fmt = 0;
    else if (strcmp(format, "libsvm") == 0)
        fmt = 1;
    else
        return oti_err(ex->errmsg, OT_EINVAL, "unknown format \"%s\"", format);
    return fmt == 0 ? oti_parse_vw(ex, line ? line : "", len)
                    : oti_parse_libsvm(ex, line ? line : "", len);
}

const char *ot_example_errmsg(const ot_example *ex)
{
    return ex != NULL ? ex->errmsg : "";
}
