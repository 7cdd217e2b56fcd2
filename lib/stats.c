/*
 * stats.c - named counters and gauges (see stats.h).
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "internal.h"
#include "stats.h"

ot_status oti_stats_init(oti_stats *st, const oti_alloc *a, const oti_stat_def *defs, size_t n)
{
    st->defs = defs;
    st->n = n;
    st->metrics = NULL;
    st->v = oti_calloc(a, n, sizeof(uint64_t));
    return st->v != NULL ? OT_OK : OT_ENOMEM;
}

void oti_stats_fini(oti_stats *st, const oti_alloc *a)
{
    /* The metrics endpoint reads v: stop it first. */
    oti_metrics_stop(st->metrics);
    st->metrics = NULL;
    oti_free(a, st->v, st->n * sizeof(uint64_t));
    st->v = NULL;
}

void oti_stats_add(oti_stats *st, size_t idx, uint64_t delta)
{
    __atomic_fetch_add(&st->v[idx], delta, __ATOMIC_RELAXED);
}

void oti_stats_set(oti_stats *st, size_t idx, double value)
{
    uint64_t bits;

    memcpy(&bits, &value, sizeof(bits));
    __atomic_store_n(&st->v[idx], bits, __ATOMIC_RELAXED);
}

double oti_stats_get(const oti_stats *st, size_t idx)
{
    uint64_t bits = __atomic_load_n(&st->v[idx], __ATOMIC_RELAXED);
    double d;

    if (st->defs[idx].type == OTI_COUNTER)
        return (double)bits;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

ot_status oti_stats_lookup(const oti_stats *st, const char *name, double *value)
{
    size_t i;

    if (name == NULL || value == NULL)
        return OT_EINVAL;
    for (i = 0; i < st->n; i++) {
        if (strcmp(st->defs[i].name, name) == 0) {
            *value = oti_stats_get(st, i);
            return OT_OK;
        }
    }
    return OT_ENOENT;
}

const char *oti_stats_name(const oti_stats *st, size_t i)
{
    return i < st->n ? st->defs[i].name : NULL;
}
