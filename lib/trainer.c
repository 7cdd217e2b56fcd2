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
 * Costs per sync: frames are encoded into buffers kept across syncs, sent on
 * a request object kept across syncs, and replies are read in place.  A
 * delta over max_message, or of many touched rows (pieces of key ranges:
 * pieces_of), goes as several frames, each encoded while the previous one
 * is in flight (send_pending).  A sharded trainer does the same for each
 * shard from the shard's key range, the shards taking turns
 * (sync_by_range), or, when values depend on the whole delta, splits one
 * delta in one pass, copying sections (oti_shard_split, lib/shard.c).
 *
 * A trainer is externally synchronized: one thread at a time.
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>
#include <time.h>

#include "delta.h"
#include "delta_scale.h"
#include "durable.h"
#include "model.h"
#include "protocol.h"
#include "shard.h"
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

/* One parameter-server shard of a sharded trainer (num_shards > 1). */
typedef struct tshard {
    oti_sock *sock;
    oti_request *req;
    uint64_t version;  /* the shard's master version seen */
    uint64_t lo, hi;   /* its key range */
    int pending;       /* its part (the trainer's outs[i]) was sent, without a reply */
    ot_status st;      /* the last request's status */
    int busy;          /* a request in flight, or to send */
    /* by range (sync_by_range) */
    int left;          /* rows of its range still to encode this sync */
    int has_next;      /* the trainer's outs[num_shards + i] holds its next frame */
    uint32_t piece, npieces; /* the piece of its range being encoded */
    int64_t attempts;  /* resends of the frame in flight */
} tshard;

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
    /* The encoded delta, in a buffer kept across syncs (no fresh pages per
     * sync).  Single shard: ebuf[0, plen) is the frame sent, and `pending`
     * says it awaits its reply. */
    uint8_t *ebuf;
    size_t ecap, plen;
    int pending;
    uint8_t *nbuf;           /* single shard: the next frame, encoded while one is in flight */
    size_t ncap;
    uint32_t piece, npieces; /* single shard: the key range being encoded (encode_piece) */
    uint64_t piece_rows;     /* sync_piece_rows */
    oti_request *req;        /* single shard: the sync request, reused */
    /* sharded (num_shards > 1): one connection per shard, in shard order */
    tshard *sh;              /* num_shards entries */
    oti_split_buf *outs;     /* per-shard frames, buffers kept across syncs: num_shards
                              * sent, then num_shards encoded ahead (by range) */
    uint64_t *bounds;        /* num_shards + 1 key-range bounds */
    int by_range;            /* values encoded one by one: frames by key range (sync_shards,
                              * encode_piece) */
    uint64_t *bases;         /* num_shards base versions for a split */
    uint32_t nconn;          /* shards connected so far */
    ot_model *staging;       /* full copies of the shards connected so far */
    oti_stats stats;
    oti_trainer_ack_fn ack_fn; /* oti_trainer_set_ack_hook */
    void *ack_ctx;
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
    tr->piece_rows = (uint64_t)oti_cfg_i64(tr->cfg, OT_OPT_SYNC_PIECE_ROWS);
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
    if (tr->num_shards > 1) {
        tr->sh = oti_calloc(&a, tr->num_shards, sizeof(*tr->sh));
        tr->outs = oti_calloc(&a, 2 * (size_t)tr->num_shards, sizeof(*tr->outs));
        tr->bounds = oti_calloc(&a, (size_t)tr->num_shards + 1, sizeof(*tr->bounds));
        tr->bases = oti_calloc(&a, tr->num_shards, sizeof(*tr->bases));
        if (tr->sh == NULL || tr->outs == NULL || tr->bounds == NULL || tr->bases == NULL) {
            st = oti_err(tr->errmsg, OT_ENOMEM, "out of memory");
            goto fail;
        }
    }
    /* A frame per key range carries the same values as one frame of the
     * whole delta when each value is encoded on its own. */
    tr->by_range = tr->enc->max_entries == 0 && tr->enc->encoding != OTI_ENC_INT8 &&
                   !tr->enc->stochastic;
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
    if (tr->sh != NULL) {
        uint32_t i;
        for (i = 0; i < tr->num_shards; i++) {
            oti_request_destroy(tr->sh[i].req);
            oti_sock_destroy(tr->sh[i].sock);
        }
        oti_free(&a, tr->sh, tr->num_shards * sizeof(*tr->sh));
    }
    if (tr->outs != NULL) {
        uint32_t i;
        for (i = 0; i < 2 * tr->num_shards; i++)
            oti_free(&a, tr->outs[i].data, tr->outs[i].cap);
        oti_free(&a, tr->outs, 2 * (size_t)tr->num_shards * sizeof(*tr->outs));
    }
    oti_free(&a, tr->bounds, ((size_t)tr->num_shards + 1) * sizeof(*tr->bounds));
    oti_free(&a, tr->bases, tr->num_shards * sizeof(*tr->bases));
    ot_model_destroy(tr->staging);
    oti_request_destroy(tr->req);
    oti_sock_destroy(tr->sock);
    oti_free(&a, tr->ebuf, tr->ecap);
    oti_free(&a, tr->nbuf, tr->ncap);
    ot_snapshot_release(tr->snap);
    ot_delta_encoder_destroy(tr->enc);
    ot_delta_decoder_destroy(tr->dec);
    ot_model_destroy(tr->local);
    oti_stats_fini(&tr->stats, &a);
    ot_config_destroy(tr->cfg);
    oti_free(&a, tr, sizeof(*tr));
}

static void set_shard_versions(ot_trainer *tr)
{
    uint64_t sum = 0;
    uint32_t i;

    for (i = 0; i < tr->num_shards; i++)
        sum += tr->sh[i].version;
    set_version(tr, sum);
}

/* Socket options of a connection to a server (or shard). */
static ot_status trainer_sock(ot_trainer *tr, const char *url, oti_sock **out)
{
    oti_tp_opts o;
    ot_status st;
    uint8_t key[OTI_HMAC_KEY_MAX];

    oti_tp_opts_init(&o);
    o.alloc = tr->alloc;
    o.recv_max = (size_t)oti_cfg_i64(tr->cfg, OT_OPT_RECV_MAX_BYTES);
    o.recv_timeout_ms = tr->timeout_ms;
    o.send_timeout_ms = tr->timeout_ms;
    o.reconnect_min_ms = (int32_t)oti_cfg_i64(tr->cfg, OT_OPT_RECONNECT_MS);
    o.resend_ms = 0; /* the trainer resends itself, with the same bytes */
    if ((st = oti_role_security(tr->cfg, &o, key, tr->errmsg)) != OT_OK)
        return st;
    st = oti_sock_create(OTI_SOCK_REQ, &o, out, tr->errmsg);
    oti_wipe(key, sizeof(key)); /* the socket keeps its own copy */
    if (st != OT_OK)
        return st;
    if ((st = oti_sock_dial(*out, url, 0, tr->errmsg)) != OT_OK) {
        oti_sock_destroy(*out);
        *out = NULL;
    }
    return st;
}

/*
 * Connects shard tr->nconn of a sharded trainer: HELLO (the server must be
 * that shard of num_shards, with the same key range), then its full copy
 * into the staging model.  When the last shard is connected the staging
 * model becomes the local model and the snapshot is made from it.
 */
static ot_status connect_shard(ot_trainer *tr, const char *url)
{
    uint32_t i = tr->nconn;
    tshard *t;
    oti_ctl ack;
    uint64_t lo = 0, hi = 0, v = 0, bytes = 0;
    ot_snapshot *s = NULL;
    ot_status st;

    if (i >= tr->num_shards)
        return oti_err(tr->errmsg, OT_ESTATE, "already connected to all %u shards",
                       (unsigned)tr->num_shards);
    t = &tr->sh[i];
    if ((st = oti_shard_range(oti_model_params(tr->local), i, tr->num_shards, &lo, &hi)) != OT_OK)
        return oti_err(tr->errmsg, st, "shard %u of %u holds no rows of this model", (unsigned)i,
                       (unsigned)tr->num_shards);
    if ((st = trainer_sock(tr, url, &t->sock)) != OT_OK)
        return st;
    st = oti_hello(t->sock, tr->fingerprint, tr->trainer_id, i, tr->num_shards, tr->timeout_ms,
                   &ack, tr->errmsg);
    if (st == OT_OK && (ack.shard != i || ack.num_shards != tr->num_shards || ack.lo != lo ||
                        ack.hi != hi))
        st = oti_err(tr->errmsg, OT_EMISMATCH,
                     "shard layout mismatch: expected shard %u of %u with keys [%llu, %llu), "
                     "the server at %s is shard %u of %u with keys [%llu, %llu)",
                     (unsigned)i, (unsigned)tr->num_shards, (unsigned long long)lo,
                     (unsigned long long)hi, url, (unsigned)ack.shard, (unsigned)ack.num_shards,
                     (unsigned long long)ack.lo, (unsigned long long)ack.hi);
    if (st != OT_OK)
        goto fail;
    if (ack.last_sequence >= ot_delta_encoder_sequence(tr->enc))
        ot_delta_encoder_set_sequence(tr->enc, ack.last_sequence + 1);
    if (tr->staging == NULL && (st = ot_model_create(tr->cfg, &tr->staging)) != OT_OK) {
        oti_err(tr->errmsg, st, "cannot create the local model");
        goto fail;
    }
    st = oti_fetch_full_copy(t->sock, tr->dec, tr->staging, tr->cfg, NULL, 0, tr->timeout_ms, &v,
                             &bytes, tr->errmsg);
    if (st != OT_OK)
        goto fail;
    if ((st = oti_request_create(t->sock, &t->req, tr->errmsg)) != OT_OK)
        goto fail;
    t->lo = lo;
    t->hi = hi;
    tr->bounds[i] = lo;
    tr->bounds[i + 1] = hi; /* the next shard's connect keeps it: ranges are contiguous */
    t->version = v;
    count(tr, S_FULL_BYTES_IN, bytes);
    tr->nconn++;
    if (tr->nconn == tr->num_shards) {
        if ((st = ot_snapshot_create(tr->cfg, tr->staging, 0, &s)) != OT_OK) {
            tr->nconn--;
            oti_err(tr->errmsg, st, "cannot make the snapshot");
            goto fail;
        }
        ot_model_destroy(tr->local);
        tr->local = tr->staging;
        tr->staging = NULL;
        oti_params_clear_touched(oti_model_params(tr->local));
        ot_snapshot_release(tr->snap);
        tr->snap = s;
        tr->since_sync = 0;
        tr->last_sync = mono_ms();
    }
    set_shard_versions(tr);
    tr->errmsg[0] = '\0';
    return OT_OK;

fail:
    oti_request_destroy(t->req);
    t->req = NULL;
    oti_sock_destroy(t->sock);
    t->sock = NULL;
    return st;
}

ot_status ot_trainer_connect_shards(ot_trainer *tr, const char *const *urls, size_t n)
{
    size_t i;
    ot_status st;

    if (tr == NULL)
        return OT_EINVAL;
    if (urls == NULL || n == 0)
        return oti_err(tr->errmsg, OT_EINVAL, "no URLs");
    if (n != tr->num_shards)
        return oti_err(tr->errmsg, OT_EINVAL, "%zu URLs for %u shards (num_shards)", n,
                       (unsigned)tr->num_shards);
    if (tr->num_shards > 1 && tr->nconn != 0)
        return oti_err(tr->errmsg, OT_ESTATE, "already connected");
    for (i = 0; i < n; i++)
        if ((st = ot_trainer_connect(tr, urls[i])) != OT_OK)
            return st;
    return OT_OK;
}

ot_status ot_trainer_connect(ot_trainer *tr, const char *url)
{
    oti_tp_opts o;
    oti_ctl ack;
    ot_model *m = NULL;
    ot_snapshot *s = NULL;
    uint64_t v = 0, bytes = 0;
    ot_status st;
    uint8_t key[OTI_HMAC_KEY_MAX];

    if (tr == NULL)
        return OT_EINVAL;
    if (url == NULL)
        return oti_err(tr->errmsg, OT_EINVAL, "NULL URL");
    if (tr->num_shards > 1)
        return connect_shard(tr, url);
    if (tr->sock != NULL)
        return oti_err(tr->errmsg, OT_ESTATE, "already connected");
    oti_tp_opts_init(&o);
    o.alloc = tr->alloc;
    o.recv_max = (size_t)oti_cfg_i64(tr->cfg, OT_OPT_RECV_MAX_BYTES);
    o.recv_timeout_ms = tr->timeout_ms;
    o.send_timeout_ms = tr->timeout_ms;
    o.reconnect_min_ms = (int32_t)oti_cfg_i64(tr->cfg, OT_OPT_RECONNECT_MS);
    o.resend_ms = 0; /* the trainer resends itself, with the same bytes */
    if ((st = oti_role_security(tr->cfg, &o, key, tr->errmsg)) == OT_OK)
        st = oti_sock_create(OTI_SOCK_REQ, &o, &tr->sock, tr->errmsg);
    oti_wipe(key, sizeof(key)); /* the socket keeps its own copy */
    if (st != OT_OK)
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
    if (st == OT_OK)
        st = oti_request_create(tr->sock, &tr->req, tr->errmsg);
    if (st != OT_OK) {
        ot_snapshot_release(s);
        goto fail;
    }
    ot_model_destroy(tr->local);
    tr->local = m;
    ot_snapshot_release(tr->snap);
    tr->snap = s;
    tr->pending = 0;
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

/* Sets the snapshot's rows of shard t's key range to f's values. */
static ot_status shard_snapshot_set(ot_trainer *tr, const ot_model *f, const tshard *t)
{
    const oti_params *fp = oti_model_params_c(f);
    ot_snapshot *w = NULL;
    oti_shadow *sh;
    ot_status st = OT_OK;
    size_t b;

    if ((st = oti_snapshot_writable(tr->snap, &w)) != OT_OK)
        return oti_err(tr->errmsg, st, "out of memory for the snapshot");
    sh = &w->body;
    for (b = 0; b < fp->nblocks && st == OT_OK; b++) {
        const oti_block *fb = &fp->blocks[b];
        uint64_t r0, r1, r;
        int a;
        oti_shard_rows(fp, b, t->lo, t->hi, &r0, &r1);
        if (r0 == r1)
            continue;
        for (a = 0; a < OTI_NARRAYS; a++) {
            const float *farr = a == 0 ? fb->w : fb->s[a - 1];
            if (sh->blocks[b].pages[a] == NULL || farr == NULL)
                continue;
            if (oti_shadow_unshare_rows(sh, b, a, r0, r1 - 1) != 0) {
                st = oti_err(tr->errmsg, OT_ENOMEM, "out of memory for the snapshot");
                break;
            }
            for (r = r0; r < r1; r++)
                memcpy(oti_shadow_row_w(sh, b, a, r), farr + (size_t)(r * fb->cols),
                       (size_t)fb->cols * sizeof(float));
        }
    }
    oti_snapshot_commit(&tr->snap, w, st);
    return st;
}

/*
 * On a resync: loads the full copy F (version `want` or newer) and moves
 * local by F - snapshot, coordinate by coordinate, then snapshot = F.  What
 * was in local - snapshot stays there.
 */
static ot_status resync(ot_trainer *tr, tshard *t, uint64_t want, uint64_t at_least)
{
    oti_sock *sock = t != NULL ? t->sock : tr->sock;
    ot_model *f = NULL;
    ot_snapshot *s = NULL;
    uint64_t v = 0, bytes = 0;
    oti_params *lp, *fp;
    const oti_shadow *sh;
    ot_status st;
    size_t b;

    if ((st = ot_model_create(tr->cfg, &f)) != OT_OK)
        return oti_err(tr->errmsg, st, "cannot create a model for the full copy");
    st = oti_fetch_full_copy(sock, tr->dec, f, tr->cfg, t != NULL ? NULL : &s, want,
                             tr->timeout_ms, &v, &bytes, tr->errmsg);
    if (st == OT_OK && v < at_least)
        st = oti_fetch_full_copy(sock, tr->dec, f, tr->cfg, t != NULL ? NULL : &s, 0,
                                 tr->timeout_ms, &v, &bytes, tr->errmsg);
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
        uint64_t r0 = 0, r1 = lb->rows;
        int a;
        if (t != NULL) /* a shard's full copy holds its key range only */
            oti_shard_rows(lp, b, t->lo, t->hi, &r0, &r1);
        for (a = 0; a < OTI_NARRAYS; a++) {
            uint64_t r;
            float *larr;
            const float *farr;
            if (sh->blocks[b].pages[a] == NULL)
                continue;
            larr = a == 0 ? lb->w : lb->s[a - 1];
            farr = a == 0 ? fb->w : fb->s[a - 1];
            for (r = r0; r < r1; r++) {
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
    if (t != NULL) {
        /* snapshot = F over the shard's range: a SET of those rows */
        if ((st = shard_snapshot_set(tr, f, t)) != OT_OK) {
            ot_model_destroy(f);
            return st;
        }
        ot_model_destroy(f);
        t->version = v;
        set_shard_versions(tr);
    } else {
        ot_model_destroy(f);
        ot_snapshot_release(tr->snap);
        tr->snap = s;
        set_version(tr, v);
    }
    count(tr, S_RESYNCS, 1);
    count(tr, S_FULL_BYTES_IN, bytes);
    return OT_OK;
}

/* Applies a sync reply: SYNC_ACK, then ADD frames (all validated before any
 * is applied, so a bad reply changes nothing). */
static ot_status apply_reply(ot_trainer *tr, tshard *t, const uint8_t *d, size_t len)
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
    if (ack.resync) {
        /* the frame was acknowledged (applied or duplicate) before the resync */
        st = resync(tr, t, ack.full_version, ack.version);
        if (st == OT_OK && t == NULL && tr->ack_fn != NULL && tr->pending)
            tr->ack_fn(tr->ack_ctx, tr->ebuf, tr->plen, ack.result == OTI_SYNC_DUPLICATE);
        return st;
    }
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
    if (t == NULL && tr->ack_fn != NULL && tr->pending)
        tr->ack_fn(tr->ack_ctx, tr->ebuf, tr->plen, ack.result == OTI_SYNC_DUPLICATE);
    if (t != NULL) {
        t->version = ack.version;
        set_shard_versions(tr);
    } else {
        set_version(tr, ack.version);
    }
    return OT_OK;
}

/* Takes a refused frame (len bytes at d) back: the snapshot moves by -D, so
 * D is again part of local - snapshot.  Every row is marked touched for the
 * next encode (a refusal is rare; the encoder then scans the model once). */
static void take_back(ot_trainer *tr, const uint8_t *d, size_t len)
{
    uint8_t *neg = oti_malloc(&tr->alloc, len);
    oti_params *p = oti_model_params(tr->local);
    size_t b;

    if (neg != NULL) {
        memcpy(neg, d, len);
        if (oti_delta_scale(neg, len, -1.0f) == OT_OK)
            (void)ot_delta_apply_snapshot(tr->dec, &tr->snap, neg, len);
        oti_free(&tr->alloc, neg, len);
    }
    for (b = 0; b < p->nblocks; b++)
        if (p->blocks[b].touched_bits != NULL)
            p->blocks[b].all_touched = 1;
    tr->piece = 0; /* single shard: every piece again, its rows included */
}

/* Counts an acknowledged frame. */
static void count_acked(ot_trainer *tr, const uint8_t *d, size_t len)
{
    count(tr, S_DELTAS_OUT, 1);
    count(tr, S_DELTA_BYTES_OUT, len);
    count(tr, S_ENTRIES_OUT, peek(d, len, OT_DELTA_FIELD_ENTRIES));
}

/* A frame encoded while the one before was in flight gets its base
 * version, known from that one's reply (the checksum follows). */
static void set_base(uint8_t *d, size_t len, uint64_t version)
{
    oti_put64(d + OTI_H_BASE_VERSION, version);
    oti_put32(d + OTI_H_CHECKSUM, oti_frame_crc(d, len));
}

/* Encodes the next ADD frame of local - snapshot into *buf (*cap bytes),
 * which is kept across syncs and grown to the encoder's bound when needed. */
static ot_status encode_into(ot_trainer *tr, uint8_t **buf, size_t *cap, size_t *len, int *more)
{
    size_t need = ot_delta_encode_bound(tr->enc, tr->local, OT_DELTA_ADD);
    ot_status st;
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        if (need > *cap) {
            uint8_t *b = oti_malloc(&tr->alloc, need);
            if (b == NULL)
                return oti_err(tr->errmsg, OT_ENOMEM, "out of memory for %zu bytes", need);
            oti_free(&tr->alloc, *buf, *cap);
            *buf = b;
            *cap = need;
        }
        st = ot_delta_encode(tr->enc, tr->local, &tr->snap, *buf, *cap, len, more);
        if (st != OT_ENOSPC)
            break;
        need = *len; /* the bound was short: grow to what the encoder asks */
    }
    if (st != OT_OK)
        return oti_err(tr->errmsg, st, "encoding the delta: %s", ot_delta_encoder_errmsg(tr->enc));
    return OT_OK;
}

static ot_status encode_delta(ot_trainer *tr, size_t *len, int *more)
{
    return encode_into(tr, &tr->ebuf, &tr->ecap, len, more);
}

/* encode_into() limited to the rows whose first index lies in [lo, hi)
 * (hi 0: every row); the rows outside stay touched for a later frame. */
static ot_status encode_range_into(ot_trainer *tr, uint64_t lo, uint64_t hi, uint8_t **buf,
                                   size_t *cap, size_t *len, int *more)
{
    ot_status st;

    oti_delta_encoder_range(tr->enc, lo, hi);
    st = encode_into(tr, buf, cap, len, more);
    oti_delta_encoder_range(tr->enc, 0, 0);
    return st;
}

/*
 * A large delta goes as frames of consecutive key ranges ("pieces" of about
 * sync_piece_rows touched rows), so that each piece is encoded while the one
 * before is in flight: the server applies one while the trainer encodes the
 * next (send_pending; sync_by_range for shards).  Only when values are
 * encoded one by one (by_range), so the frames carry the values one frame
 * would.  Each piece costs a round trip: on links of long round trips, a
 * large sync_piece_rows (or 0) keeps the frames few.
 */
#define MAX_PIECES 16

/* The pieces for `rows` touched rows. */
static uint32_t pieces_of(const ot_trainer *tr, uint64_t rows)
{
    uint64_t n = tr->piece_rows > 0 ? rows / tr->piece_rows : 1;

    return n < 1 ? 1 : n > MAX_PIECES ? MAX_PIECES : (uint32_t)n;
}

/* The touched rows of the local model (every row of untracked or
 * all-touched blocks) into *rows.  Returns 0 when the delta should go
 * without pieces: when values are not encoded one by one, or when a large
 * block is marked all-touched (after a frame was taken back), which is
 * scanned best at once (in pieces, its rows outside the first piece would
 * be marked touched one by one). */
static int touched_rows(const ot_trainer *tr, uint64_t *rows)
{
    const oti_params *p = oti_model_params_c(tr->local);
    size_t b;

    *rows = 0;
    if (!tr->by_range)
        return 0;
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        if (blk->touched_bits != NULL && blk->all_touched && blk->rows >= tr->piece_rows)
            return 0;
        *rows += blk->touched_bits == NULL || blk->all_touched ? blk->rows : blk->ntouched;
    }
    return 1;
}

static uint32_t pieces_for(const ot_trainer *tr)
{
    uint64_t rows;

    return touched_rows(tr, &rows) ? pieces_of(tr, rows) : 1;
}

/* Piece k of n of the key range [lo, hi): equal spans of flat index (a row
 * goes with its first index).  n is at most the touched rows, so no span
 * is empty. */
static void piece_range(uint64_t lo, uint64_t hi, uint32_t k, uint32_t n, uint64_t *plo,
                        uint64_t *phi)
{
    uint64_t step = (hi - lo) / n;

    *plo = lo + step * k;
    *phi = k + 1 < n ? *plo + step : hi;
}

/* Single shard: encodes the next frame of the current piece; *more: rows
 * are left in it, or pieces after it. */
static ot_status encode_piece(ot_trainer *tr, uint8_t **buf, size_t *cap, size_t *len, int *more)
{
    uint64_t lo, hi;
    ot_status st;
    int left = 0;

    piece_range(0, oti_model_params_c(tr->local)->total, tr->piece, tr->npieces, &lo, &hi);
    if ((st = encode_range_into(tr, lo, hi, buf, cap, len, &left)) != OT_OK)
        return st;
    if (!left)
        tr->piece++;
    *more = left || tr->piece < tr->npieces;
    return OT_OK;
}

/* Whether a sync reply says resync (or is not a sync acknowledgement). */
static int reply_resyncs(const uint8_t *d, size_t len)
{
    char scratch[OTI_ERRMSG_LEN];
    size_t off = 0, flen;
    const uint8_t *f;
    oti_ctl ack;

    if (oti_frame_next(d, len, &off, &f, &flen) != OT_OK ||
        oti_ctl_parse(f, flen, &ack, scratch) != OT_OK)
        return 1;
    return ack.op != OTI_CTL_SYNC_ACK || ack.resync;
}

/*
 * Sends the pending frame, resending it on timeouts; applies the reply.
 * When the encoder said *more (the delta did not fit one frame), the next
 * frame is encoded while this one is in flight, so the trainer's encoding
 * and the server's applying overlap.  Its base version is only known from
 * this frame's reply: it is written into the header (and the checksum
 * recomputed) before the frame becomes the pending one.  If this frame is
 * not acknowledged, or the reply says resync (the resync moves the local
 * model by the full copy minus the snapshot, which must not hold a frame
 * the server has not seen), the next frame is taken back first.
 */
static ot_status send_pending(ot_trainer *tr, int *more)
{
    const uint8_t *rd = NULL;
    size_t len = tr->plen, rlen = 0, nlen = 0;
    ot_status st;
    int64_t attempt;
    int have_next = 0;

    for (attempt = 0;; attempt++) {
        st = oti_request_start(tr->req, tr->ebuf, len, tr->timeout_ms);
        if (st == OT_OK && *more && !have_next) {
            int more2 = 0;
            ot_delta_encoder_set_versions(tr->enc, tr->version, 0);
            if (encode_piece(tr, &tr->nbuf, &tr->ncap, &nlen, &more2) == OT_OK) {
                have_next = 1;
                *more = more2;
            }
            /* else: nothing changed; the sync's loop encodes it again and
             * reports the error */
            tr->errmsg[0] = '\0';
        }
        if (st == OT_OK)
            st = oti_request_wait(tr->req);
        if (st == OT_OK || !transient(st) || attempt >= tr->retries)
            break;
        count(tr, S_RETRIES, 1);
    }
    if (st == OT_OK && (st = oti_request_reply(tr->req, &rd, &rlen)) == OT_OK && have_next &&
        reply_resyncs(rd, rlen)) {
        take_back(tr, tr->nbuf, nlen);
        have_next = 0;
        *more = 1;
    }
    if (st != OT_OK) {
        if (have_next)
            take_back(tr, tr->nbuf, nlen);
        oti_err(tr->errmsg, st, "%s", oti_request_errmsg(tr->req));
        if (!transient(st)) {
            count(tr, S_REFUSED, 1);
            take_back(tr, tr->ebuf, len);
            tr->pending = 0;
        }
        return st;
    }
    if ((st = apply_reply(tr, NULL, rd, rlen)) != OT_OK) {
        if (have_next)
            take_back(tr, tr->nbuf, nlen);
        return st; /* the frame stays pending: resent, the server answers duplicate */
    }
    count_acked(tr, tr->ebuf, len);
    tr->pending = 0;
    if (have_next) {
        uint8_t *b = tr->ebuf;
        size_t c = tr->ecap;
        set_base(tr->nbuf, nlen, tr->version);
        tr->ebuf = tr->nbuf;
        tr->ecap = tr->ncap;
        tr->nbuf = b;
        tr->ncap = c;
        tr->plen = nlen;
        tr->pending = 1;
    }
    return OT_OK;
}

/* By range: encodes shard i's next frame into *o, the rows of the current
 * piece of its key range. */
static ot_status encode_shard(ot_trainer *tr, uint32_t i, oti_split_buf *o)
{
    tshard *t = &tr->sh[i];
    uint64_t lo, hi;
    ot_status st;
    int more = 0;

    piece_range(t->lo, t->hi, t->piece, t->npieces, &lo, &hi);
    ot_delta_encoder_set_ids(tr->enc, i, tr->trainer_id);
    ot_delta_encoder_set_versions(tr->enc, t->version, 0);
    if ((st = encode_range_into(tr, lo, hi, &o->data, &o->cap, &o->len, &more)) != OT_OK)
        return st;
    if (!more)
        t->piece++;
    t->left = more || t->piece < t->npieces;
    return OT_OK;
}

/* By range: starts shard i's pending frame, encoding it first from the next
 * piece when nothing is pending and rows are left (not after an error). */
static void start_shard(ot_trainer *tr, uint32_t i, ot_status *first)
{
    tshard *t = &tr->sh[i];

    if (!t->pending && t->left && *first == OT_OK) {
        ot_status st = encode_shard(tr, i, &tr->outs[i]);
        if (st != OT_OK)
            *first = st;
        else
            t->pending = 1;
    }
    if (t->pending) {
        t->busy = 1;
        t->st = oti_request_start(t->req, tr->outs[i].data, tr->outs[i].len, tr->timeout_ms);
    }
}

/* By range: takes back shard i's frame encoded ahead, if any. */
static void drop_next(ot_trainer *tr, uint32_t i)
{
    tshard *t = &tr->sh[i];
    oti_split_buf *nx = &tr->outs[tr->num_shards + i];

    if (t->has_next)
        take_back(tr, nx->data, nx->len);
    t->has_next = 0;
}

/*
 * By range: waits for shard i's request and handles its reply as
 * send_pending does for one server: resends on a timeout (sync_retries
 * times), takes back what a shard refuses, and on success starts the frame
 * encoded ahead (its base version written now), or the next piece.
 */
static void finish_shard(ot_trainer *tr, uint32_t i, ot_status *first)
{
    tshard *t = &tr->sh[i];
    oti_split_buf *o = &tr->outs[i], *nx = &tr->outs[tr->num_shards + i];
    const uint8_t *rd = NULL;
    size_t rlen = 0;
    ot_status st = t->st;

    if (st == OT_OK)
        st = oti_request_wait(t->req);
    if (st != OT_OK && transient(st) && t->attempts < tr->retries) {
        t->attempts++;
        count(tr, S_RETRIES, 1);
        t->st = oti_request_start(t->req, o->data, o->len, tr->timeout_ms);
        return; /* still busy */
    }
    t->busy = 0;
    t->attempts = 0;
    if (st == OT_OK && (st = oti_request_reply(t->req, &rd, &rlen)) == OT_OK && t->has_next &&
        reply_resyncs(rd, rlen)) {
        /* the resync moves the range by the full copy minus the snapshot,
         * which must not hold the frame encoded ahead: encode its rows again */
        drop_next(tr, i);
        t->piece = 0;
        t->left = 1;
    }
    if (st != OT_OK) {
        drop_next(tr, i);
        oti_err(tr->errmsg, st, "shard %u: %s", (unsigned)i, oti_request_errmsg(t->req));
        if (!transient(st)) {
            count(tr, S_REFUSED, 1);
            take_back(tr, o->data, o->len);
            t->pending = 0;
        }
    } else if ((st = apply_reply(tr, t, rd, rlen)) != OT_OK) {
        drop_next(tr, i); /* the frame stays pending: resent, the shard answers duplicate */
    }
    if (st != OT_OK) {
        if (*first == OT_OK)
            *first = st;
        return;
    }
    count_acked(tr, o->data, o->len);
    t->pending = 0;
    if (t->has_next) {
        oti_split_buf tmp = *o;
        set_base(nx->data, nx->len, t->version);
        *o = *nx;
        *nx = tmp;
        t->has_next = 0;
        t->pending = 1;
    }
    start_shard(tr, i, first);
}

/*
 * Sharded, by range: a pipeline per shard.  Each shard's frames are the
 * pieces of its key range (as with one server, about sync_piece_rows
 * touched rows a piece), each encoded while the shard's frame before it is
 * in flight, and the shards take turns, so the trainer encodes for one
 * shard while the others' frames are sent and applied.  A frame left
 * pending by an earlier sync goes first.  After an error no new piece is
 * encoded; frames in flight are finished.  Returns the first error.
 */
static ot_status sync_by_range(ot_trainer *tr)
{
    const oti_params *p = oti_model_params_c(tr->local);
    uint32_t i, n = tr->num_shards;
    ot_status first = OT_OK;
    uint64_t rows;
    int whole = !touched_rows(tr, &rows), busy;

    for (i = 0; i < n; i++) {
        tshard *t = &tr->sh[i];
        t->piece = 0;
        /* touched rows spread evenly over the key space: its share */
        t->npieces = whole ? 1
                           : pieces_of(tr, (uint64_t)((double)rows * (double)(t->hi - t->lo) /
                                                      (double)p->total));
        t->left = 1;
        t->has_next = 0;
        t->attempts = 0;
        t->busy = 0;
        t->st = OT_OK;
    }
    for (i = 0; i < n; i++)
        start_shard(tr, i, &first);
    do {
        busy = 0;
        for (i = 0; i < n; i++) {
            tshard *t = &tr->sh[i];
            if (!t->busy)
                continue;
            if (t->left && !t->has_next && t->st == OT_OK && first == OT_OK) {
                ot_status st = encode_shard(tr, i, &tr->outs[n + i]);
                if (st == OT_OK)
                    t->has_next = 1;
                else
                    first = st;
            }
            finish_shard(tr, i, &first);
            busy |= t->busy;
        }
    } while (busy);
    return first;
}

/*
 * Sharded, split: sends every shard's pending part at once (one request
 * each, in flight together), resending the ones that time out; applies each
 * reply.  Returns the first error in shard order; shards that succeeded
 * keep their progress.
 */
static ot_status send_pending_shards(ot_trainer *tr)
{
    uint32_t i, n = tr->num_shards;
    int64_t attempt;
    ot_status first = OT_OK;

    for (i = 0; i < n; i++) {
        tr->sh[i].busy = tr->sh[i].pending;
        tr->sh[i].st = OT_OK;
    }
    for (attempt = 0;; attempt++) {
        int again = 0;
        for (i = 0; i < n; i++) {
            tshard *t = &tr->sh[i];
            if (!t->busy)
                continue;
            t->st = oti_request_start(t->req, tr->outs[i].data, tr->outs[i].len, tr->timeout_ms);
        }
        for (i = 0; i < n; i++) {
            tshard *t = &tr->sh[i];
            if (!t->busy)
                continue;
            if (t->st == OT_OK)
                t->st = oti_request_wait(t->req);
            t->busy = t->st != OT_OK && transient(t->st);
            again |= t->busy;
        }
        if (!again || attempt >= tr->retries)
            break;
        count(tr, S_RETRIES, 1);
    }
    for (i = 0; i < n; i++) {
        tshard *t = &tr->sh[i];
        const uint8_t *d = tr->outs[i].data;
        size_t len = tr->outs[i].len;
        ot_status st = t->st;
        if (!t->pending)
            continue;
        if (st == OT_OK) {
            const uint8_t *rd;
            size_t rlen;
            if ((st = oti_request_reply(t->req, &rd, &rlen)) == OT_OK)
                st = apply_reply(tr, t, rd, rlen);
            if (st == OT_OK) {
                count_acked(tr, d, len);
                t->pending = 0;
            }
            /* else: the part stays pending; resent, the shard answers duplicate */
        } else {
            oti_err(tr->errmsg, st, "shard %u: %s", (unsigned)i, oti_request_errmsg(t->req));
            if (!transient(st)) {
                count(tr, S_REFUSED, 1);
                take_back(tr, d, len);
                t->pending = 0;
            }
        }
        if (st != OT_OK && first == OT_OK)
            first = st;
    }
    return first;
}

/*
 * Sharded sync: by range (sync_by_range), or, when the values depend on the
 * whole delta (a top-k budget, int8 or stochastic rounding), one frame of
 * the whole delta split by range.
 */
static ot_status sync_shards(ot_trainer *tr)
{
    ot_status st = OT_OK;
    int more = 1;
    uint32_t i;

    if (tr->by_range)
        return sync_by_range(tr);
    while (more) {
        int pend = 0;
        more = 0;
        for (i = 0; i < tr->num_shards; i++)
            pend |= tr->sh[i].pending;
        if (!pend) {
            size_t len = 0;
            ot_delta_encoder_set_versions(tr->enc, 0, 0);
            if ((st = encode_delta(tr, &len, &more)) != OT_OK)
                break;
            /* one pass: each shard's rows, sections copied as encoded */
            for (i = 0; i < tr->num_shards; i++)
                tr->bases[i] = tr->sh[i].version;
            st = oti_shard_split(&tr->alloc, oti_model_params_c(tr->local), tr->ebuf, len,
                                 tr->bounds, tr->bases, tr->num_shards, tr->outs, tr->errmsg);
            if (st != OT_OK) {
                /* nothing was sent: take the whole delta back */
                char msg[OTI_ERRMSG_LEN];
                memcpy(msg, tr->errmsg, sizeof(msg));
                take_back(tr, tr->ebuf, len);
                oti_err(tr->errmsg, st, "splitting the delta: %s", msg);
                break;
            }
            for (i = 0; i < tr->num_shards; i++)
                tr->sh[i].pending = 1;
        } else {
            more = 1; /* after the pending parts, send what is left */
        }
        if ((st = send_pending_shards(tr)) != OT_OK)
            break;
    }
    return st;
}

ot_status ot_trainer_sync(ot_trainer *tr)
{
    uint64_t t0;
    ot_status st = OT_OK;
    int more = 1;

    if (tr == NULL)
        return OT_EINVAL;
    if (tr->num_shards > 1) {
        if (tr->nconn < tr->num_shards)
            return oti_err(tr->errmsg, OT_ESTATE, "connected to %u of %u shards",
                           (unsigned)tr->nconn, (unsigned)tr->num_shards);
        t0 = mono_ms();
        tr->since_sync = 0;
        tr->last_sync = t0;
        st = sync_shards(tr);
        oti_stats_set(&tr->stats, S_LAST_SYNC_MS, (double)(mono_ms() - t0));
        if (st != OT_OK) {
            count(tr, S_SYNC_FAILURES, 1);
            return st;
        }
        count(tr, S_SYNCS, 1);
        tr->errmsg[0] = '\0';
        return OT_OK;
    }
    if (tr->sock == NULL)
        return oti_err(tr->errmsg, OT_ESTATE, "not connected");
    t0 = mono_ms();
    tr->since_sync = 0;
    tr->last_sync = t0;
    tr->piece = 0;
    tr->npieces = pieces_for(tr);
    /* A frame left pending by an earlier sync goes first, then what is left
     * (more = 1); send_pending may leave the next frame pending. */
    while (more || tr->pending) {
        if (!tr->pending) {
            more = 0;
            ot_delta_encoder_set_versions(tr->enc, tr->version, 0);
            if ((st = encode_piece(tr, &tr->ebuf, &tr->ecap, &tr->plen, &more)) != OT_OK)
                break;
            tr->pending = 1;
        }
        if ((st = send_pending(tr, &more)) != OT_OK)
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
    if (tr->sock == NULL && (tr->num_shards <= 1 || tr->nconn < tr->num_shards))
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
    ot_status st, synced = OT_OK;
    size_t done = 0, k;

    if (tr == NULL)
        return OT_EINVAL;
    if ((st = oti_model_check_batch(tr->local, ex, n)) != OT_OK)
        return oti_err(tr->errmsg, st, "%s", ot_model_errmsg(tr->local));
    /* Split at sync_every_examples' sync points, so syncs come after the
     * same examples as with ot_trainer_learn(); after a failed sync the rest
     * is learned without syncing and the failure is returned. */
    do {
        k = n - done;
        if (synced == OT_OK && tr->sync_every > 0 && tr->since_sync < tr->sync_every &&
            k > tr->sync_every - tr->since_sync)
            k = (size_t)(tr->sync_every - tr->since_sync);
        if ((st = ot_model_learn_batch(tr->local, ex != NULL ? ex + done : NULL, k,
                                       losses != NULL ? losses + done : NULL)) != OT_OK)
            return oti_err(tr->errmsg, st, "%s", ot_model_errmsg(tr->local));
        count(tr, S_EXAMPLES, k);
        tr->since_sync += k;
        done += k;
        if (synced == OT_OK)
            synced = maybe_sync(tr);
    } while (done < n);
    return synced;
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

void oti_trainer_set_ack_hook(ot_trainer *tr, oti_trainer_ack_fn fn, void *ctx)
{
    if (tr == NULL)
        return;
    tr->ack_fn = fn;
    tr->ack_ctx = ctx;
}

const char *ot_trainer_errmsg(const ot_trainer *tr)
{
    return tr != NULL ? tr->errmsg : "";
}

ot_status ot_trainer_serve_metrics(ot_trainer *tr, const char *url)
{
    if (tr == NULL)
        return OT_EINVAL;
    return oti_metrics_serve(&tr->stats, &tr->alloc, "trainer", url, tr->errmsg);
}
