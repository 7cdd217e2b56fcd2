/*
 * metrics.c - a role's stats in Prometheus' text exposition format, served
 * over HTTP by the transport's HTTP server (transport.c holds the nng code).
 *
 * For each stat of a role, in the role's order:
 *
 *   # HELP ot_<role>_<name> <help text>
 *   # TYPE ot_<role>_<name> counter|gauge
 *   ot_<role>_<name> <value>
 *
 * Counters are printed as exact integers; gauges with the fewest digits
 * that read back as the same double ("NaN", "+Inf", "-Inf" when not finite).
 * Rendering reads only the atomic stat values (stats.h), never the role's
 * other state, so it is safe while the role runs on other threads; this is
 * what lets an externally synchronized trainer be scraped from nng's threads.
 *
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stats.h"
#include "transport.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_PATH "/metrics"

struct oti_metrics {
    oti_alloc alloc;
    const oti_stats *st;
    const char *role;
    oti_http *http;
};

/* ---- rendering ------------------------------------------------------------ */

typedef struct text {
    const oti_alloc *a;
    uint8_t *p;
    size_t len, cap;
    int oom;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (n > SIZE_MAX - t->len - 1 ||
        oti_grow(t->a, (void **)&t->p, &t->cap, t->len + n + 1, 1) != 0) {
        t->oom = 1;
        return;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

static void puts_(text *t, const char *s)
{
    put(t, s, strlen(s));
}

/* A metric name: [a-zA-Z_:][a-zA-Z0-9_:]*; any other byte becomes '_'. */
static void put_name(text *t, const char *role, const char *stat)
{
    const char *parts[3];
    char c;
    size_t i, k;

    parts[0] = "ot_";
    parts[1] = role;
    parts[2] = stat;
    for (k = 0; k < 3; k++) {
        for (i = 0; parts[k][i] != '\0'; i++) {
            c = parts[k][i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                  (c >= '0' && c <= '9')))
                c = '_';
            put(t, &c, 1);
        }
        if (k == 1)
            put(t, "_", 1);
    }
}

/* HELP text: backslash and newline escaped, as the format requires. */
static void put_help(text *t, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            puts_(t, "\\\\");
        else if (*s == '\n')
            puts_(t, "\\n");
        else
            put(t, s, 1);
    }
}

/* The shortest %g form that reads back as the same double. */
static void put_double(text *t, double v)
{
    char buf[40];
    int prec;

    if (isnan(v)) {
        puts_(t, "NaN");
        return;
    }
    if (isinf(v)) {
        puts_(t, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    puts_(t, buf);
}

ot_status oti_metrics_render(const oti_stats *st, const char *role, const oti_alloc *a,
                             uint8_t **data, size_t *len, size_t *cap)
{
    text t;
    size_t i;

    if (st == NULL || role == NULL || a == NULL || data == NULL || len == NULL || cap == NULL)
        return OT_EINVAL;
    memset(&t, 0, sizeof(t));
    t.a = a;
    /* About 150 bytes a stat: usually one allocation. */
    if (oti_grow(a, (void **)&t.p, &t.cap, st->n * 160 + 64, 1) != 0)
        return OT_ENOMEM;
    for (i = 0; i < st->n; i++) {
        const oti_stat_def *d = &st->defs[i];
        const char *type = d->type == OTI_COUNTER ? "counter" : "gauge";
        char num[32];

        puts_(&t, "# HELP ");
        put_name(&t, role, d->name);
        puts_(&t, " ");
        put_help(&t, d->help != NULL ? d->help : d->name);
        puts_(&t, "\n# TYPE ");
        put_name(&t, role, d->name);
        puts_(&t, " ");
        puts_(&t, type);
        puts_(&t, "\n");
        put_name(&t, role, d->name);
        puts_(&t, " ");
        if (d->type == OTI_COUNTER) {
            uint64_t v = __atomic_load_n(&st->v[i], __ATOMIC_RELAXED);
            snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
            puts_(&t, num);
        } else {
            put_double(&t, oti_stats_get(st, i));
        }
        puts_(&t, "\n");
    }
    if (t.oom) {
        oti_free(a, t.p, t.cap);
        return OT_ENOMEM;
    }
    *data = t.p;
    *len = t.len;
    *cap = t.cap;
    return OT_OK;
}

/* ---- serving ---------------------------------------------------------------- */

static ot_status render_cb(void *arg, uint8_t **data, size_t *len, size_t *cap)
{
    struct oti_metrics *m = arg;

    return oti_metrics_render(m->st, m->role, &m->alloc, data, len, cap);
}

ot_status oti_metrics_serve(oti_stats *st, const oti_alloc *a, const char *role, const char *url,
                            char *errmsg)
{
    struct oti_metrics *m, *expected = NULL;
    char err[OTI_ERRMSG_LEN] = "";
    ot_status s;

    if (st == NULL || a == NULL || role == NULL || url == NULL)
        return oti_err(errmsg, OT_EINVAL, "NULL URL");
    if (__atomic_load_n(&st->metrics, __ATOMIC_ACQUIRE) != NULL)
        return oti_err(errmsg, OT_ESTATE, "metrics are already served");
    if ((m = oti_calloc(a, 1, sizeof(*m))) == NULL)
        return oti_err(errmsg, OT_ENOMEM, "out of memory");
    m->alloc = *a;
    m->st = st;
    m->role = role;
    s = oti_http_serve(&m->alloc, url, METRICS_PATH, METRICS_CONTENT_TYPE, render_cb, m, &m->http,
                       NULL, err);
    if (s != OT_OK) {
        oti_free(a, m, sizeof(*m));
        return oti_err(errmsg, s, "metrics: %s", err);
    }
    /* Two threads serving at once: the first one to get here wins. */
    if (!__atomic_compare_exchange_n(&st->metrics, &expected, m, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        oti_metrics_stop(m);
        return oti_err(errmsg, OT_ESTATE, "metrics are already served");
    }
    return OT_OK;
}

void oti_metrics_stop(struct oti_metrics *m)
{
    oti_alloc a;

    if (m == NULL)
        return;
    oti_http_stop(m->http);
    a = m->alloc;
    oti_free(&a, m, sizeof(*m));
}
