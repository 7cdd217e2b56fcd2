/*
 * stats.h - named counters and gauges for the roles, safe to update from
 * library threads while the host reads them.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_STATS_H
#define OT_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "onlinetrain.h"

enum { OTI_COUNTER = 0, OTI_GAUGE = 1 };

typedef struct oti_stat_def {
    const char *name; /* snake_case, e.g. "deltas_in" */
    int type;         /* OTI_COUNTER (only grows) or OTI_GAUGE */
    const char *help; /* one line, for `# HELP` */
} oti_stat_def;

typedef struct oti_stats {
    const oti_stat_def *defs;
    size_t n;
    uint64_t *v; /* counters: integer counts; gauges: the bits of a double */
    struct oti_metrics *metrics; /* the HTTP endpoint serving these (metrics.c), or NULL */
} oti_stats;

/* Allocates zeroed values for n definitions. */
ot_status oti_stats_init(oti_stats *st, const oti_alloc *a, const oti_stat_def *defs, size_t n);
void oti_stats_fini(oti_stats *st, const oti_alloc *a);

void oti_stats_add(oti_stats *st, size_t idx, uint64_t delta);
void oti_stats_set(oti_stats *st, size_t idx, double value);
double oti_stats_get(const oti_stats *st, size_t idx);

/* The public name -> value and index -> name calls of every role use these. */
ot_status oti_stats_lookup(const oti_stats *st, const char *name, double *value);
const char *oti_stats_name(const oti_stats *st, size_t i);

/* ---- metrics (metrics.c): the stats in Prometheus' text format --------- */

/*
 * Renders every stat as "# HELP", "# TYPE" (counter or gauge) and
 * "ot_<role>_<name> <value>" lines into a new buffer of *cap bytes
 * allocated with `a` (*len bytes used).  Reads only the atomic values, so
 * any thread may render while the role runs.  OT_ENOMEM.
 */
ot_status oti_metrics_render(const oti_stats *st, const char *role, const oti_alloc *a,
                             uint8_t **data, size_t *len, size_t *cap);

/*
 * Serves the rendering over HTTP at `url` (default path /metrics) until
 * oti_stats_fini(), which stops it.  `role` must be a static string.  The
 * detail of a failure goes to `errmsg` (OTI_ERRMSG_LEN bytes).
 * OT_ESTATE if already serving; the statuses of oti_http_serve().
 */
ot_status oti_metrics_serve(oti_stats *st, const oti_alloc *a, const char *role, const char *url,
                            char *errmsg);

/* Stops serving; returns when no rendering is running.  NULL is ignored. */
void oti_metrics_stop(struct oti_metrics *m);

#endif /* OT_STATS_H */
