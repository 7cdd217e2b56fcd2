/*
 * predict_client.c - a client of a predictor's serving socket
 * (ot_predict_server_start): sends prediction requests, reads the scores and
 * the model version (docs/wire-format.md, "Prediction requests").
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "delta.h"
#include "durable.h"
#include "predict_wire.h"
#include "transport.h"

struct ot_predict_client {
    oti_alloc alloc;
    oti_sock *req;
    oti_request *rq; /* the request context, reused by every call */
    int32_t timeout_ms;
    uint8_t *buf;
    size_t cap;
    char errmsg[OTI_ERRMSG_LEN];
};

ot_status ot_predict_client_create(const ot_config *cfg, const char *url, ot_predict_client **out)
{
    oti_alloc a = oti_cfg_alloc(cfg);
    ot_predict_client *c;
    oti_tp_opts o;
    ot_status st;
    uint8_t key[OTI_HMAC_KEY_MAX];

    if (url == NULL || out == NULL)
        return OT_EINVAL;
    if ((c = oti_calloc(&a, 1, sizeof(*c))) == NULL)
        return OT_ENOMEM;
    c->alloc = a;
    c->timeout_ms = (int32_t)oti_cfg_i64(cfg, OT_OPT_TIMEOUT_MS);
    oti_tp_opts_init(&o);
    o.alloc = a;
    o.recv_max = (size_t)oti_cfg_i64(cfg, OT_OPT_RECV_MAX_BYTES);
    o.recv_timeout_ms = c->timeout_ms;
    o.send_timeout_ms = c->timeout_ms;
    o.reconnect_min_ms = (int32_t)oti_cfg_i64(cfg, OT_OPT_RECONNECT_MS);
    if (cfg != NULL) {
        if ((st = oti_role_security(cfg, &o, key, c->errmsg)) != OT_OK) {
            oti_free(&a, c, sizeof(*c));
            return st;
        }
    }
    st = oti_sock_create(OTI_SOCK_REQ, &o, &c->req, c->errmsg);
    oti_wipe(key, sizeof(key));
    if (st == OT_OK)
        st = oti_sock_dial(c->req, url, 0, c->errmsg);
    if (st == OT_OK)
        st = oti_request_create(c->req, &c->rq, c->errmsg);
    if (st != OT_OK) {
        ot_predict_client_destroy(c);
        return st;
    }
    *out = c;
    return OT_OK;
}

void ot_predict_client_destroy(ot_predict_client *c)
{
    oti_alloc a;

    if (c == NULL)
        return;
    a = c->alloc;
    oti_request_destroy(c->rq);
    oti_sock_destroy(c->req);
    oti_free(&a, c->buf, c->cap);
    oti_free(&a, c, sizeof(*c));
}

const char *ot_predict_client_errmsg(const ot_predict_client *c)
{
    return c != NULL ? c->errmsg : "";
}

static ot_status reserve(ot_predict_client *c, size_t n)
{
    if (n > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        uint8_t *b;
        while (cap < n)
            cap *= 2;
        if ((b = oti_malloc(&c->alloc, cap)) == NULL)
            return oti_err(c->errmsg, OT_ENOMEM, "out of memory for %zu bytes", n);
        oti_free(&c->alloc, c->buf, c->cap);
        c->buf = b;
        c->cap = cap;
    }
    return OT_OK;
}

/* Sends the request in c->buf (len bytes) and reads `count` scores.  The
 * request context is reused and the reply read in place (no copy). */
static ot_status call(ot_predict_client *c, size_t len, uint32_t count, float *scores,
                      uint64_t *version)
{
    const uint8_t *d = NULL;
    size_t n = 0, i;
    ot_status st;

    st = oti_request_start(c->rq, c->buf, len, c->timeout_ms);
    if (st == OT_OK)
        st = oti_request_wait(c->rq);
    if (st == OT_OK)
        st = oti_request_reply(c->rq, &d, &n);
    if (st != OT_OK)
        return oti_err(c->errmsg, st, "%s", oti_request_errmsg(c->rq));
    if (n < OTI_PR_HEADER || memcmp(d, "OTPR", 4) != 0 || d[4] != OTI_PQ_VERSION ||
        oti_get32(d + 8) != count || n != OTI_PR_HEADER + 4 * (size_t)count) {
        return oti_err(c->errmsg, OT_EFORMAT, "the reply is not a prediction reply for %u examples",
                       (unsigned)count);
    }
    for (i = 0; i < count; i++) {
        uint32_t bits = oti_get32(d + OTI_PR_HEADER + 4 * i);
        memcpy(&scores[i], &bits, 4);
    }
    if (version != NULL)
        *version = oti_get64(d + 12);
    c->errmsg[0] = '\0';
    return OT_OK;
}

ot_status ot_predict_client_predict_text(ot_predict_client *c, const char *lines, size_t len,
                                         float *scores, size_t cap, size_t *n, uint64_t *version)
{
    size_t count = 0, i;
    ot_status st;

    if (c == NULL)
        return OT_EINVAL;
    if ((lines == NULL && len > 0) || n == NULL || (scores == NULL && cap > 0))
        return oti_err(c->errmsg, OT_EINVAL, "NULL argument");
    /* one example per line; a last line without '\n' counts, an empty end does not */
    for (i = 0; i < len;) {
        const char *nl = memchr(lines + i, '\n', len - i);
        if (nl == NULL)
            break;
        count++;
        i = (size_t)(nl - lines) + 1;
    }
    if (len > 0 && lines[len - 1] != '\n')
        count++;
    if (count == 0)
        return oti_err(c->errmsg, OT_EINVAL, "no examples");
    if (count > UINT32_MAX)
        return oti_err(c->errmsg, OT_ERANGE, "too many examples");
    *n = count;
    if (count > cap)
        return oti_err(c->errmsg, OT_ENOSPC, "%zu examples, room for %zu scores", count, cap);
    if (len > 0 && lines[len - 1] == '\n')
        len--; /* the last line's newline: the server's line splitter needs no terminator */
    if ((st = reserve(c, OTI_PQ_HEADER + len)) != OT_OK)
        return st;
    oti_pq_header(c->buf, OTI_PQ_TEXT, (uint32_t)count);
    if (len > 0)
        memcpy(c->buf + OTI_PQ_HEADER, lines, len);
    return call(c, OTI_PQ_HEADER + len, (uint32_t)count, scores, version);
}

ot_status ot_predict_client_predict(ot_predict_client *c, const ot_example *const *ex, size_t count,
                                    float *scores, uint64_t *version)
{
    size_t i, len = OTI_PQ_HEADER;
    uint8_t *o;
    ot_status st;

    if (c == NULL)
        return OT_EINVAL;
    if (ex == NULL || scores == NULL || count == 0)
        return oti_err(c->errmsg, OT_EINVAL, "NULL argument or no examples");
    if (count > UINT32_MAX)
        return oti_err(c->errmsg, OT_ERANGE, "too many examples");
    for (i = 0; i < count; i++) {
        if (ex[i] == NULL)
            return oti_err(c->errmsg, OT_EINVAL, "example %zu is NULL", i);
        len += 4 + OTI_PQ_FEATURE * ot_example_num_features(ex[i]);
    }
    if ((st = reserve(c, len)) != OT_OK)
        return st;
    oti_pq_header(c->buf, OTI_PQ_BINARY, (uint32_t)count);
    o = c->buf + OTI_PQ_HEADER;
    for (i = 0; i < count; i++) {
        size_t nf = ot_example_num_features(ex[i]), k;
        oti_put32(o, (uint32_t)nf);
        o += 4;
        for (k = 0; k < nf; k++) {
            uint8_t ns = 0;
            uint32_t h = 0, bits;
            float v = 0;
            (void)ot_example_feature(ex[i], k, &ns, &h, &v);
            memcpy(&bits, &v, 4);
            o[0] = ns;
            oti_put32(o + 1, h);
            oti_put32(o + 5, bits);
            o += OTI_PQ_FEATURE;
        }
    }
    return call(c, len, (uint32_t)count, scores, version);
}
