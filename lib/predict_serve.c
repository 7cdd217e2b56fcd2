/*
 * predict_serve.c - a predictor's serving socket: prediction requests over
 * request/reply (docs/wire-format.md, "Prediction requests"), answered by a
 * pool of nng contexts with the public predictor calls.
 *
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "delta.h"
#include "durable.h"
#include "predict_wire.h"
#include "transport.h"

/* ---- the request format (shared with predict_client.c) -------------------- */

void oti_pq_header(uint8_t out[OTI_PQ_HEADER], int form, uint32_t count)
{
    out[0] = 'O';
    out[1] = 'T';
    out[2] = 'P';
    out[3] = 'Q';
    out[4] = OTI_PQ_VERSION;
    out[5] = (uint8_t)form;
    out[6] = 0;
    out[7] = 0;
    oti_put32(out + 8, count);
}

ot_status oti_pq_parse(const uint8_t *req, size_t len, oti_pq *out, char *err)
{
    if (req == NULL || len < OTI_PQ_HEADER || memcmp(req, "OTPQ", 4) != 0)
        return oti_err(err, OT_EFORMAT, "not a prediction request");
    if (req[4] != OTI_PQ_VERSION)
        return oti_err(err, OT_EFORMAT, "prediction request version %u, this is %u",
                       (unsigned)req[4], (unsigned)OTI_PQ_VERSION);
    if (req[5] != OTI_PQ_TEXT && req[5] != OTI_PQ_BINARY)
        return oti_err(err, OT_EFORMAT, "unknown request form %u", (unsigned)req[5]);
    if (req[6] != 0 || req[7] != 0)
        return oti_err(err, OT_EFORMAT, "reserved bytes are not zero");
    out->form = req[5];
    out->count = oti_get32(req + 8);
    out->body = req + OTI_PQ_HEADER;
    out->body_len = len - OTI_PQ_HEADER;
    return OT_OK;
}

ot_status oti_pq_next(const oti_pq *q, size_t *off, ot_example *ex, char *err)
{
    size_t o = *off;

    if (o >= q->body_len)
        return OT_EEOF;
    if (q->form == OTI_PQ_TEXT) {
        const uint8_t *line = q->body + o;
        const uint8_t *nl = memchr(line, '\n', q->body_len - o);
        size_t n = nl != NULL ? (size_t)(nl - line) : q->body_len - o;
        ot_status st;
        *off = o + n + (nl != NULL);
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if ((st = ot_example_parse(ex, "vw", (const char *)line, n)) != OT_OK)
            return oti_err(err, st, "%s", ot_example_errmsg(ex));
        return OT_OK;
    } else {
        uint32_t nf, i;
        if (q->body_len - o < 4)
            return oti_err(err, OT_EFORMAT, "truncated example record");
        nf = oti_get32(q->body + o);
        o += 4;
        if (nf > (q->body_len - o) / OTI_PQ_FEATURE)
            return oti_err(err, OT_EFORMAT, "example record claims %u features, %zu bytes left",
                           (unsigned)nf, q->body_len - o);
        for (i = 0; i < nf; i++) {
            const uint8_t *f = q->body + o;
            uint32_t bits = oti_get32(f + 5);
            float v;
            ot_status st;
            memcpy(&v, &bits, sizeof(v));
            if ((st = ot_example_add_hashed(ex, f[0], oti_get32(f + 1), v)) != OT_OK)
                return oti_err(err, st == OT_ENONFINITE ? OT_EFORMAT : st,
                               "feature %u: %s", (unsigned)i,
                               st == OT_ENONFINITE ? "non-finite value" : ot_strerror(st));
            o += OTI_PQ_FEATURE;
        }
        *off = o;
        return OT_OK;
    }
}

/* ---- the server ------------------------------------------------------------------ */

/* Per-request scratch: examples and scores, kept on a free list. */
typedef struct scratch {
    struct scratch *next;
    ot_example **ex;
    size_t nex, cap;
    float *scores;
} scratch;

struct ot_predict_server {
    oti_alloc alloc;
    ot_predictor *pred;
    ot_config *cfg;
    oti_sock *rep;
    uint32_t max_examples;
    pthread_mutex_t mu;
    scratch *free_list;
    char url[256];
    char errmsg[OTI_ERRMSG_LEN];
};

static void scratch_destroy(ot_predict_server *s, scratch *x)
{
    size_t i;

    if (x == NULL)
        return;
    for (i = 0; i < x->nex; i++)
        ot_example_destroy(x->ex[i]);
    oti_free(&s->alloc, x->ex, x->cap * sizeof(*x->ex));
    oti_free(&s->alloc, x->scores, x->cap * sizeof(float));
    oti_free(&s->alloc, x, sizeof(*x));
}

static scratch *scratch_get(ot_predict_server *s)
{
    scratch *x;

    pthread_mutex_lock(&s->mu);
    x = s->free_list;
    if (x != NULL)
        s->free_list = x->next;
    pthread_mutex_unlock(&s->mu);
    if (x == NULL)
        x = oti_calloc(&s->alloc, 1, sizeof(*x));
    return x;
}

static void scratch_put(ot_predict_server *s, scratch *x)
{
    pthread_mutex_lock(&s->mu);
    x->next = s->free_list;
    s->free_list = x;
    pthread_mutex_unlock(&s->mu);
}

/* Room for n examples. */
static ot_status scratch_reserve(ot_predict_server *s, scratch *x, size_t n)
{
    if (n > x->cap) {
        size_t cap = x->cap ? x->cap : 16;
        ot_example **ex;
        float *sc;
        while (cap < n)
            cap *= 2;
        ex = oti_calloc(&s->alloc, cap, sizeof(*ex));
        sc = oti_calloc(&s->alloc, cap, sizeof(float));
        if (ex == NULL || sc == NULL) {
            oti_free(&s->alloc, ex, ex != NULL ? cap * sizeof(*ex) : 0);
            oti_free(&s->alloc, sc, sc != NULL ? cap * sizeof(float) : 0);
            return OT_ENOMEM;
        }
        if (x->nex > 0)
            memcpy(ex, x->ex, x->nex * sizeof(*ex));
        oti_free(&s->alloc, x->ex, x->cap * sizeof(*x->ex));
        oti_free(&s->alloc, x->scores, x->cap * sizeof(float));
        x->ex = ex;
        x->scores = sc;
        x->cap = cap;
    }
    while (x->nex < n) {
        if (ot_example_create(s->cfg, &x->ex[x->nex]) != OT_OK)
            return OT_ENOMEM;
        x->nex++;
    }
    return OT_OK;
}

static ot_status serve_handler(void *arg, const uint8_t *req, size_t len, oti_reply *reply)
{
    ot_predict_server *s = arg;
    char *err = oti_reply_errbuf(reply);
    oti_pq q;
    scratch *x;
    size_t off = 0, i;
    uint32_t got = 0;
    uint8_t *out;
    uint64_t version;
    ot_status st;

    if ((st = oti_pq_parse(req, len, &q, err)) != OT_OK)
        return st;
    if (q.count == 0)
        return oti_err(err, OT_EFORMAT, "a request of no examples");
    if (q.count > s->max_examples)
        return oti_err(err, OT_ERANGE, "%u examples in one request, max_predict_batch is %u",
                       (unsigned)q.count, (unsigned)s->max_examples);
    if ((x = scratch_get(s)) == NULL)
        return oti_err(err, OT_ENOMEM, "out of memory");
    if (scratch_reserve(s, x, q.count) != OT_OK) {
        scratch_put(s, x);
        return oti_err(err, OT_ENOMEM, "out of memory");
    }
    for (got = 0; got < q.count; got++) {
        ot_example_clear(x->ex[got]);
        st = oti_pq_next(&q, &off, x->ex[got], err);
        if (st == OT_EEOF) {
            st = oti_err(err, OT_EFORMAT, "the request says %u examples and holds %u",
                         (unsigned)q.count, (unsigned)got);
            break;
        }
        if (st != OT_OK) {
            char tmp[OTI_ERRMSG_LEN];
            memcpy(tmp, err, sizeof(tmp));
            tmp[sizeof(tmp) - 1] = '\0';
            oti_err(err, st, "example %u: %s", (unsigned)got, tmp);
            break;
        }
    }
    if (st == OT_OK && got == q.count && off < q.body_len)
        st = oti_err(err, OT_EFORMAT, "bytes after example %u", (unsigned)q.count);
    if (st == OT_OK) {
        st = ot_predictor_predict_batch(s->pred, (const ot_example *const *)x->ex, q.count,
                                        x->scores);
        if (st != OT_OK)
            oti_err(err, st, "no model to serve yet");
    }
    version = ot_predictor_version(s->pred);
    if (st == OT_OK && (st = oti_reply_reserve(reply, OTI_PR_HEADER + 4 * (size_t)q.count,
                                               &out)) == OT_OK) {
        memcpy(out, "OTPR", 4);
        out[4] = OTI_PQ_VERSION;
        out[5] = 0;
        out[6] = 0;
        out[7] = 0;
        oti_put32(out + 8, q.count);
        oti_put64(out + 12, version);
        for (i = 0; i < q.count; i++) {
            uint32_t bits;
            memcpy(&bits, &x->scores[i], 4);
            oti_put32(out + OTI_PR_HEADER + 4 * i, bits);
        }
    } else if (st == OT_ENOMEM) {
        oti_err(err, st, "out of memory for the reply");
    }
    scratch_put(s, x);
    return st;
}

ot_status ot_predict_server_start(ot_predictor *pred, const ot_config *cfg, const char *url,
                                  ot_predict_server **out)
{
    oti_alloc a = oti_cfg_alloc(cfg);
    ot_predict_server *s;
    oti_tp_opts o;
    ot_status st;
    int port = 0;
    uint8_t key[OTI_HMAC_KEY_MAX];

    if (pred == NULL || url == NULL || out == NULL)
        return OT_EINVAL;
    if ((s = oti_calloc(&a, 1, sizeof(*s))) == NULL)
        return OT_ENOMEM;
    s->alloc = a;
    s->pred = pred;
    pthread_mutex_init(&s->mu, NULL);
    st = cfg != NULL ? ot_config_clone(cfg, &s->cfg) : ot_config_create(&s->cfg);
    if (st != OT_OK) {
        pthread_mutex_destroy(&s->mu);
        oti_free(&a, s, sizeof(*s));
        return st;
    }
    s->max_examples = (uint32_t)oti_cfg_i64(s->cfg, OT_OPT_MAX_PREDICT_BATCH);
    oti_tp_opts_init(&o);
    o.alloc = a;
    o.recv_max = (size_t)oti_cfg_i64(s->cfg, OT_OPT_RECV_MAX_BYTES);
    o.contexts = (int)oti_cfg_i64(s->cfg, OT_OPT_REQUEST_CONTEXTS);
    o.send_timeout_ms = (int32_t)oti_cfg_i64(s->cfg, OT_OPT_TIMEOUT_MS);
    if ((st = oti_role_security(s->cfg, &o, key, s->errmsg)) == OT_OK) {
        st = oti_sock_create(OTI_SOCK_REP, &o, &s->rep, s->errmsg);
        oti_wipe(key, sizeof(key));
    }
    if (st == OT_OK)
        st = oti_sock_listen(s->rep, url, &port, s->errmsg);
    if (st == OT_OK)
        st = oti_server_start(s->rep, serve_handler, s, s->errmsg);
    if (st != OT_OK) {
        /* the detail is lost with the handle: keep the status only */
        ot_predict_server_destroy(s);
        return st;
    }
    if (port > 0 && strncmp(url, "tcp://", 6) == 0) {
        const char *colon = strrchr(url, ':');
        snprintf(s->url, sizeof(s->url), "%.*s:%d", (int)(colon - url), url, port);
    } else {
        snprintf(s->url, sizeof(s->url), "%s", url);
    }
    *out = s;
    return OT_OK;
}

const char *ot_predict_server_url(const ot_predict_server *s)
{
    return s != NULL ? s->url : NULL;
}

void ot_predict_server_destroy(ot_predict_server *s)
{
    oti_alloc a;

    if (s == NULL)
        return;
    a = s->alloc;
    oti_sock_destroy(s->rep); /* no handler runs after this */
    while (s->free_list != NULL) {
        scratch *x = s->free_list;
        s->free_list = x->next;
        scratch_destroy(s, x);
    }
    ot_config_destroy(s->cfg);
    pthread_mutex_destroy(&s->mu);
    oti_free(&a, s, sizeof(*s));
}
