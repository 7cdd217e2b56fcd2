/*
 * trainer.c - the training worker: a local model, a snapshot of what the
 * server has, and the sync exchange of docs/protocol.md.
 *
 * Invariant: local - snapshot is what this trainer learned that the server
 * does not have yet.  A sync encodes part or all of it as an ADD frame D
 * (the encoder advances the snapshot by exactly D), sends D, and applies the
 * aggregated update of the reply to both the local model and the snapshot.
 * A sync that gets no reply keeps D's bytes and resends them (same
 * sequence), so the server applies D once; a D the server refuses is taken
 * back out of the snapshot (the snapshot moves by -D), so it stays in
 * local - snapshot.
 *
 * A trainer is externally synchronized: one thread at a time.
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>
#include <time.h>

#include "delta.h"
#include "delta_scale.h"
#include "model.h"
#include "protocol.h"
#include "stats.h"
#include "transport.h"

enum {
    S_EXAMPLES,
    S_SYNCS,
    S_SYNC_FAILURES,
    S_RETRIES,
    S_DELTAS_OUT,
    S_DELTA_BYTES_OUT,
    S_ENTRIES_OUT,
    S_DUPLICATES,
    S_REFUSED,
    S_UPDATES_IN,
    S_UPDATE_BYTES_IN,
    S_RESYNCS,
    S_FULL_BYTES_IN,
    S_VERSION,
    S_LAST_SYNC_MS,
    S_COUNT
};

static const oti_stat_def stat_defs[S_COUNT] = {
    {"examples", OTI_COUNTER, "examples learned"},
    {"syncs", OTI_COUNTER, "syncs completed (every delta frame acknowledged)"},
    {"sync_failures", OTI_COUNTER, "syncs that failed (timed out after the retries, or refused)"},
    {"retries", OTI_COUNTER, "delta frames resent after a timeout or a lost connection"},
    {"deltas_out", OTI_COUNTER, "delta frames acknowledged by the server"},
    {"delta_bytes_out", OTI_COUNTER, "bytes of the delta frames acknowledged"},
    {"entries_out", OTI_COUNTER, "values carried by the delta frames acknowledged"},
    {"duplicates", OTI_COUNTER, "acknowledgements saying the server already had the frame"},
    {"refused", OTI_COUNTER, "delta frames the server refused (taken back into local - snapshot)"},
    {"updates_in", OTI_COUNTER, "ADD frames of other trainers applied from sync replies"},
    {"update_bytes_in", OTI_COUNTER, "bytes of those frames"},
    {"resyncs", OTI_COUNTER, "full copies loaded because the server said resync"},
    {"full_bytes_in", OTI_COUNTER, "bytes of full copies loaded (connect and resyncs)"},
    {"version", OTI_GAUGE, "master version last seen"},
    {"last_sync_ms", OTI_GAUGE, "duration of the last sync in milliseconds, retries included"},
};

struct ot_trainer {
    oti_alloc alloc;
    ot_config *cfg;
    ot_model *local;
    ot_snapshot *snap;
    ot_delta_encoder *enc;
    ot_delta_decoder *dec;
    oti_sock *sock;
    uint64_t fingerprint;
    uint64_t version;        /* master version seen: base_version of the next delta */
    uint32_t trainer_id, shard, num_shards;
    uint64_t sync_every;     /* examples; 0 off */
    uint64_t sync_interval;  /* ms; 0 off */
    int32_t timeout_ms;
    int64_t retries;
    uint64_t since_sync;     /* examples learned since the last sync */
    uint64_t last_sync;      /* monotonic ms of the last sync */
    ot_buf *pending;         /* a sent frame without its reply */
    oti_stats stats;
    char errmsg[OTI_ERRMSG_LEN];
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void count(ot_trainer *tr, size_t idx, uint64_t n)
{
    oti_stats_add(&tr->stats, idx, n);
}

static uint64_t peek(const uint8_t *d, size_t len, int field)
{
    uint64_t v = 0;

    (void)ot_delta_peek(d, len, field, &v);
    return v;
}

static void set_version(ot_trainer *tr, uint64_t v)
{
    tr->version = v;
    oti_stats_set(&tr->stats, S_VERSION, (double)v);
}

ot_status ot_trainer_create(const ot_config *cfg, ot_trainer **out)
{
    oti_alloc a;
    ot_trainer *tr;
    ot_status st;

    if (out == NULL)
        return OT_EINVAL;
    a = oti_cfg_alloc(cfg);
    tr = oti_calloc(&a, 1, sizeof(*tr));
    if (tr == NULL)
        return OT_ENOMEM;
    tr->alloc = a;
    st = cfg != NULL ? ot_config_clone(cfg, &tr->cfg) : ot_config_create(&tr->cfg);
    if (st != OT_OK) {
        oti_free(&a, tr, sizeof(*tr));
        return st;
    }
    if ((st = oti_stats_init(&tr->stats, &a, stat_defs, S_COUNT)) != OT_OK) {
        ot_config_destroy(tr->cfg);
        oti_free(&a, tr, sizeof(*tr));
        return st;
    }
    tr->trainer_id = (uint32_t)oti_cfg_i64(tr->cfg, OT_OPT_TRAINER_ID);
    tr->shard = (uint32_t)oti_cfg_i64(tr->cfg, OT_OPT_SHARD_ID);
    tr->num_shards = (uint32_t)oti_cfg_i64(tr->cfg, OT_OPT_NUM_SHARDS);
    tr->sync_every = (uint64_t)oti_cfg_i64(tr->cfg, OT_OPT_SYNC_EVERY_EXAMPLES);
    tr->sync_interval = (uint64_t)oti_cfg_i64(tr->cfg, OT_OPT_SYNC_INTERVAL_MS);
    tr->timeout_ms = (int32_t)oti_cfg_i64(tr->cfg, OT_OPT_TIMEOUT_MS);
    tr->retries = oti_cfg_i64(tr->cfg, OT_OPT_SYNC_RETRIES);
    if ((st = ot_config_validate(tr->cfg)) != OT_OK) {
        oti_err(tr->errmsg, st, "%s", ot_config_errmsg(tr->cfg));
        goto fail;
    }
    if ((st = ot_model_create(tr->cfg, &tr->local)) != OT_OK) {
        oti_err(tr->errmsg, st, "cannot create the local model: %s", ot_config_errmsg(tr->cfg));
        goto fail;
    }
    oti_params_clear_touched(oti_model_params(tr->local));
    tr->fingerprint = ot_model_fingerprint(tr->local);
    if ((st = ot_snapshot_create(tr->cfg, tr->local, 0, &tr->snap)) != OT_OK ||
        (st = ot_delta_encoder_create(tr->cfg, &tr->enc)) != OT_OK ||
        (st = ot_delta_decoder_create(tr->cfg, &tr->dec)) != OT_OK) {
        oti_err(tr->errmsg, st, "cannot create the codec");
        goto fail;
    }
    ot_delta_encoder_set_ids(tr->enc, tr->shard, tr->trainer_id);
    *out = tr;
    return OT_OK;

fail:
    ot_trainer_destroy(tr);
    return st;
}

void ot_trainer_destroy(ot_trainer *tr)
{
    oti_alloc a;

    if (tr == NULL)
        return;
    a = tr->alloc;
    oti_sock_destroy(tr->sock);
    ot_buf_release(tr->pending);
    ot_snapshot_release(tr->snap);
    ot_delta_encoder_destroy(tr->enc);
    ot_delta_decoder_destroy(tr->dec);
    ot_model_destroy(tr->local);
    oti_stats_fini(&tr->stats, &a);
    ot_config_destroy(tr->cfg);
    oti_free(&a, tr, sizeof(*tr));
}

ot_status ot_trainer_connect(ot_trainer *tr, const char *url)
{
    oti_tp_opts o;
    oti_ctl ack;
    ot_model *m = NULL;
    ot_snapshot *s = NULL;
    uint64_t v = 0, bytes = 0;
    ot_status st;

    if (tr == NULL)
        return OT_EINVAL;
    if (url == NULL)
        return oti_err(tr->errmsg, OT_EINVAL, "NULL URL");
    if (tr->sock != NULL)
        return oti_err(tr->errmsg, OT_ESTATE, "already connected");
    oti_tp_opts_init(&o);
    o.alloc = tr->alloc;
    o.recv_max = (size_t)oti_cfg_i64(tr->cfg, OT_OPT_RECV_MAX_BYTES);
    o.recv_timeout_ms = tr->timeout_ms;
    o.send_timeout_ms = tr->timeout_ms;
    o.reconnect_min_ms = (int32_t)oti_cfg_i64(tr->cfg, OT_OPT_RECONNECT_MS);
    o.resend_ms = 0; /* the trainer resends itself, with the same bytes */
    if ((st = oti_sock_create(OTI_SOCK_REQ, &o, &tr->sock, tr->errmsg)) != OT_OK)
        return st;
    if ((st = oti_sock_dial(tr->sock, url, 0, tr->errmsg)) != OT_OK)
        goto fail;
    st = oti_hello(tr->sock, tr->fingerprint, tr->trainer_id, tr->shard, tr->num_shards,
                   tr->timeout_ms, &ack, tr->errmsg);
    if (st != OT_OK)
        goto fail;
    /* A trainer that restarts with the same id continues its sequence. */
    if (ack.last_sequence >= ot_delta_encoder_sequence(tr->enc))
        ot_delta_encoder_set_sequence(tr->enc, ack.last_sequence + 1);
    if ((st = ot_model_create(tr->cfg, &m)) != OT_OK) {
        oti_err(tr->errmsg, st, "cannot create the local model");
        goto fail;
    }
    st = oti_fetch_full_copy(tr->sock, tr->dec, m, tr->cfg, &s, 0, tr->timeout_ms, &v, &bytes,
                             tr->errmsg);
    if (st != OT_OK)
        goto fail;
    ot_model_destroy(tr->local);
    tr->local = m;
    ot_snapshot_release(tr->snap);
    tr->snap = s;
    ot_buf_release(tr->pending);
    tr->pending = NULL;
    set_version(tr, v);
    count(tr, S_FULL_BYTES_IN, bytes);
    tr->since_sync = 0;
    tr->last_sync = mono_ms();
    tr->errmsg[0] = '\0';
    return OT_OK;

fail:
    ot_model_destroy(m);
    oti_sock_destroy(tr->sock);
    tr->sock = NULL;
    return st;
}

/* Whether a failed request may succeed if resent (the server did not look
 * at the frame and refuse it). */
static int transient(ot_status st)
{
    return st == OT_ETIMEDOUT || st == OT_ECLOSED || st == OT_ETRANSPORT ||
           st == OT_ECONNREFUSED || st == OT_ENOMEM || st == OT_EBUSY;
}

/*
 * On a resync: loads the full copy F (version `want` or newer) and moves
 * local by F - snapshot, coordinate by coordinate, then snapshot = F.  What
 * was in local - snapshot stays there.
 */
static ot_status resync(ot_trainer *tr, uint64_t want, uint64_t at_least)
{
    ot_model *f = NULL;
    ot_snapshot *s = NULL;
    uint64_t v = 0, bytes = 0;
    oti_params *lp, *fp;
    const oti_shadow *sh;
    ot_status st;
    size_t b;

    if ((st = ot_model_create(tr->cfg, &f)) != OT_OK)
        return oti_err(tr->errmsg, st, "cannot create a model for the full copy");
    st = oti_fetch_full_copy(tr->sock, tr->dec, f, tr->cfg, &s, want, tr->timeout_ms, &v, &bytes,
                             tr->errmsg);
    if (st == OT_OK && v < at_least)
        st = oti_fetch_full_copy(tr->sock, tr->dec, f, tr->cfg, &s, 0, tr->timeout_ms, &v, &bytes,
                                 tr->errmsg);
    if (st == OT_OK && v < at_least)
        st = oti_err(tr->errmsg, OT_ESTATE, "the server's full copy (version %llu) is older "
                     "than its acknowledgement (%llu)", (unsigned long long)v,
                     (unsigned long long)at_least);
    if (st != OT_OK) {
        ot_snapshot_release(s);
        ot_model_destroy(f);
        return st;
    }
    lp = oti_model_params(tr->local);
    fp = oti_model_params(f);
    sh = &tr->snap->body;
    for (b = 0; b < lp->nblocks; b++) {
        oti_block *lb = &lp->blocks[b];
        const oti_block *fb = &fp->blocks[b];
        int a;
        for (a = 0; a < OTI_NARRAYS; a++) {
            uint64_t r;
            float *larr;
            const float *farr;
            if (sh->blocks[b].pages[a] == NULL)
                continue;
            larr = a == 0 ? lb->w : lb->s[a - 1];
            farr = a == 0 ? fb->w : fb->s[a - 1];
            for (r = 0; r < lb->rows; r++) {
                const float *srow = oti_shadow_row(sh, b, a, r);
                size_t off = (size_t)(r * lb->cols);
                uint32_t c;
                int changed = 0;
                for (c = 0; c < lb->cols; c++) {
                    float d = farr[off + c] - srow[c];
                    if (d != 0.0f) {
                        larr[off + c] += d;
                        changed = 1;
                    }
                }
                if (!changed)
                    continue;
                if (a != 0 && lp->derive != NULL)
                    lp->derive(lp->derive_ctx, lb, r);
                if (lb->touched_bits != NULL && lb->touched_list != NULL) {
                    if (lb->dense_hint)
                        lb->all_touched = 1;
                    else
                        oti_block_touch(lb, r);
                }
            }
        }
    }
    ot_model_destroy(f);
    ot_snapshot_release(tr->snap);
    tr->snap = s;
    set_version(tr, v);
    count(tr, S_RESYNCS, 1);
    count(tr, S_FULL_BYTES_IN, bytes);
    return OT_OK;
}

/* Applies a sync reply: SYNC_ACK, then ADD frames (all validated before any
 * is applied, so a bad reply changes nothing). */
static ot_status apply_reply(ot_trainer *tr, const uint8_t *d, size_t len)
{
    size_t off = 0, flen;
    const uint8_t *f;
    oti_ctl ack;
    ot_status st;

    if ((st = oti_frame_next(d, len, &off, &f, &flen)) != OT_OK)
        return oti_err(tr->errmsg, OT_EFORMAT, "sync reply without an acknowledgement");
    if ((st = oti_ctl_parse(f, flen, &ack, tr->errmsg)) != OT_OK)
        return st;
    if (ack.op != OTI_CTL_SYNC_ACK)
        return oti_err(tr->errmsg, OT_EFORMAT, "sync reply holds control op %d, not SYNC_ACK",
                       ack.op);
    if (ack.resync)
        return resync(tr, ack.full_version, ack.version);
    {
        size_t o2 = off;
        while ((st = oti_frame_next(d, len, &o2, &f, &flen)) == OT_OK) {
            if (peek(f, flen, OT_DELTA_FIELD_KIND) != OT_DELTA_ADD)
                return oti_err(tr->errmsg, OT_EFORMAT, "sync reply carries a %s frame",
                               ot_delta_kind_name((int)peek(f, flen, OT_DELTA_FIELD_KIND)));
            if ((st = ot_delta_validate(tr->dec, tr->local, f, flen)) != OT_OK)
                return oti_err(tr->errmsg, st, "aggregated update: %s",
                               ot_delta_decoder_errmsg(tr->dec));
        }
        if (st != OT_EEOF)
            return oti_err(tr->errmsg, st, "sync reply: bad frame boundary");
    }
    while (oti_frame_next(d, len, &off, &f, &flen) == OT_OK) {
        if ((st = ot_delta_apply_snapshot(tr->dec, &tr->snap, f, flen)) != OT_OK)
            return oti_err(tr->errmsg, st, "aggregated update: %s",
                           ot_delta_decoder_errmsg(tr->dec));
        (void)ot_delta_apply(tr->dec, tr->local, f, flen); /* validated above */
        count(tr, S_UPDATES_IN, 1);
        count(tr, S_UPDATE_BYTES_IN, flen);
    }
    if (ack.result == OTI_SYNC_DUPLICATE)
        count(tr, S_DUPLICATES, 1);
    set_version(tr, ack.version);
    return OT_OK;
}

/* Takes a refused frame back: the snapshot moves by -D, so D is again part
 * of local - snapshot.  Every row is marked touched for the next encode
 * (a refusal is rare; the encoder then scans the model once). */
static void take_back(ot_trainer *tr)
{
    size_t len = ot_buf_size(tr->pending);
    uint8_t *neg = oti_malloc(&tr->alloc, len);
    oti_params *p = oti_model_params(tr->local);
    size_t b;

    if (neg != NULL) {
        memcpy(neg, ot_buf_data(tr->pending), len);
        if (oti_delta_scale(neg, len, -1.0f) == OT_OK)
            (void)ot_delta_apply_snapshot(tr->dec, &tr->snap, neg, len);
        oti_free(&tr->alloc, neg, len);
    }
    for (b = 0; b < p->nblocks; b++)
        if (p->blocks[b].touched_bits != NULL)
            p->blocks[b].all_touched = 1;
    ot_buf_release(tr->pending);
    tr->pending = NULL;
}

/* Sends the pending frame, resending it on timeouts; applies the reply. */
static ot_status send_pending(ot_trainer *tr)
{
    const uint8_t *d = ot_buf_data(tr->pending);
    size_t len = ot_buf_size(tr->pending);
    ot_buf *reply = NULL;
    ot_status st;
    int64_t attempt;

    for (attempt = 0;; attempt++) {
        st = oti_sock_call(tr->sock, d, len, tr->timeout_ms, &reply, tr->errmsg);
        if (st == OT_OK || !transient(st) || attempt >= tr->retries)
            break;
        count(tr, S_RETRIES, 1);
    }
    if (st != OT_OK) {
        if (!transient(st)) {
            count(tr, S_REFUSED, 1);
            take_back(tr);
        }
        return st;
    }
    st = apply_reply(tr, ot_buf_data(reply), ot_buf_size(reply));
    ot_buf_release(reply);
    if (st != OT_OK)
        return st; /* the frame stays pending: resent, the server answers duplicate */
    count(tr, S_DELTAS_OUT, 1);
    count(tr, S_DELTA_BYTES_OUT, len);
    count(tr, S_ENTRIES_OUT, peek(d, len, OT_DELTA_FIELD_ENTRIES));
    ot_buf_release(tr->pending);
    tr->pending = NULL;
    return OT_OK;
}

ot_status ot_trainer_sync(ot_trainer *tr)
{
    uint64_t t0;
    ot_status st = OT_OK;
    int more = 1;

    if (tr == NULL)
        return OT_EINVAL;
    if (tr->sock == NULL)
        return oti_err(tr->errmsg, OT_ESTATE, "not connected");
    t0 = mono_ms();
    tr->since_sync = 0;
    tr->last_sync = t0;
    while (more) {
        more = 0;
        if (tr->pending == NULL) {
            ot_delta_encoder_set_versions(tr->enc, tr->version, 0);
            st = ot_delta_encode_buf(tr->enc, tr->local, &tr->snap, &tr->pending, &more);
            if (st != OT_OK) {
                tr->pending = NULL;
                oti_err(tr->errmsg, st, "encoding the delta: %s",
                        ot_delta_encoder_errmsg(tr->enc));
                break;
            }
        } else {
            more = 1; /* after the pending frame, send what is left */
        }
        if ((st = send_pending(tr)) != OT_OK)
            break;
    }
    oti_stats_set(&tr->stats, S_LAST_SYNC_MS, (double)(mono_ms() - t0));
    if (st != OT_OK) {
        count(tr, S_SYNC_FAILURES, 1);
        return st;
    }
    count(tr, S_SYNCS, 1);
    tr->errmsg[0] = '\0';
    return OT_OK;
}

/* Syncs when sync_every_examples or sync_interval_ms says so. */
static ot_status maybe_sync(ot_trainer *tr)
{
    if (tr->sock == NULL)
        return OT_OK;
    if ((tr->sync_every > 0 && tr->since_sync >= tr->sync_every) ||
        (tr->sync_interval > 0 && mono_ms() - tr->last_sync >= tr->sync_interval))
        return ot_trainer_sync(tr);
    return OT_OK;
}

ot_status ot_trainer_learn(ot_trainer *tr, const ot_example *ex, float *loss)
{
    ot_status st;

    if (tr == NULL)
        return OT_EINVAL;
    if ((st = ot_model_learn(tr->local, ex, loss)) != OT_OK)
        return oti_err(tr->errmsg, st, "%s", ot_model_errmsg(tr->local));
    count(tr, S_EXAMPLES, 1);
    tr->since_sync++;
    return maybe_sync(tr);
}

ot_status ot_trainer_learn_batch(ot_trainer *tr, const ot_example *const *ex, size_t n,
                                 float *losses)
{
    ot_status st;

    if (tr == NULL)
        return OT_EINVAL;
    if ((st = ot_model_learn_batch(tr->local, ex, n, losses)) != OT_OK)
        return oti_err(tr->errmsg, st, "%s", ot_model_errmsg(tr->local));
    count(tr, S_EXAMPLES, n);
    tr->since_sync += n;
    return maybe_sync(tr);
}

ot_status ot_trainer_predict(const ot_trainer *tr, const ot_example *ex, float *out)
{
    if (tr == NULL)
        return OT_EINVAL;
    return ot_model_predict(tr->local, ex, out);
}

const ot_model *ot_trainer_model(const ot_trainer *tr)
{
    return tr != NULL ? tr->local : NULL;
}

uint64_t ot_trainer_version(const ot_trainer *tr)
{
    return tr != NULL ? tr->version : 0;
}

ot_status ot_trainer_stat(const ot_trainer *tr, const char *name, double *value)
{
    if (tr == NULL)
        return OT_EINVAL;
    return oti_stats_lookup(&tr->stats, name, value);
}

const char *ot_trainer_stat_name(const ot_trainer *tr, size_t i)
{
    return tr != NULL ? oti_stats_name(&tr->stats, i) : NULL;
}

const char *ot_trainer_errmsg(const ot_trainer *tr)
{
    return tr != NULL ? tr->errmsg : "";
}
