/*
 * param_server.c - the parameter server: one shard of the master model, the
 * trainers' syncs with aggregated updates, full copies, and the publisher of
 * real-time and full updates to predictors (docs/protocol.md, docs/roles.md).
 *
 * Locks, always taken in this order (a thread holding one may take a later
 * one, never an earlier one):
 *
 *   pub_mu    the publishing side: pub_enc, published, pub_seq, pub_version, the PUB
 *             socket and the started/stopped state seen by publish;
 *   build_mu  building full copies: full_enc, fc_model, fc_snap;
 *   mu        the master model, its version, the decoder, the change log
 *             and the per-trainer table;
 *   fc_mu     the kept full copies (cur, prev) and their reference counts.
 *
 * Request handlers run on nng's threads, several at once.  A sync checks
 * the frame (checksum, structure, finite values, fingerprint) before it
 * takes mu, and holds mu only to deduplicate, apply, log and copy the
 * aggregated update into the reply: O(frame + update), never O(model).
 * Building a full copy copies the master's arrays under mu (one memcpy per
 * array) and encodes the chunks after releasing it.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "delta.h"
#include "delta_scale.h"
#include "durable.h"
#include "model.h"
#include "protocol.h"
#include "stats.h"
#include "transport.h"

/* ---- stats ------------------------------------------------------------------ */

enum {
    S_DELTAS_IN,
    S_DELTA_BYTES_IN,
    S_ENTRIES_IN,
    S_DUPLICATES,
    S_REJ_MISMATCH,
    S_REJ_NONFINITE,
    S_REJ_CORRUPT,
    S_REJ_FORMAT,
    S_REJ_RANGE,
    S_REJ_REPLAY,
    S_REPLIES,
    S_REPLY_BYTES,
    S_UPDATE_FRAMES_OUT,
    S_RESYNCS,
    S_HELLOS,
    S_FULL_REQUESTS,
    S_FULL_COPIES,
    S_RT_UPDATES,
    S_RT_ENTRIES,
    S_RT_BYTES,
    S_FULL_UPDATES,
    S_FULL_BYTES,
    S_RT_PROMOTED,
    S_PUBLISH_ERRORS,
    S_VERSION,
    S_TRAINERS,
    S_LOG_BYTES,
    S_LOG_ENTRIES,
    S_PUBLISHED_VERSION,
    S_DUR, /* durability and limits: OTI_DS_COUNT stats (durable.h), in its order */
    S_COUNT = S_DUR + OTI_DS_COUNT
};

static const oti_stat_def stat_defs[S_COUNT] = {
    {"deltas_in", OTI_COUNTER, "ADD frames applied to the master"},
    {"delta_bytes_in", OTI_COUNTER, "bytes of the ADD frames applied"},
    {"entries_in", OTI_COUNTER, "values carried by the ADD frames applied"},
    {"duplicates", OTI_COUNTER, "ADD frames received again (same trainer and sequence) and not reapplied"},
    {"rejected_mismatch", OTI_COUNTER, "frames refused: another model's fingerprint or another shard"},
    {"rejected_nonfinite", OTI_COUNTER, "frames refused: NaN or infinite values"},
    {"rejected_corrupt", OTI_COUNTER, "frames refused: checksum mismatch or truncated"},
    {"rejected_format", OTI_COUNTER, "requests refused: malformed, unknown version, wrong kind or too big"},
    {"rejected_range", OTI_COUNTER, "frames refused: indices outside the shard's key range"},
    {"rejected_replay", OTI_COUNTER, "frames refused: sequence older than the trainer's last applied"},
    {"replies", OTI_COUNTER, "successful replies sent (syncs, full-copy chunks, hellos)"},
    {"reply_bytes_out", OTI_COUNTER, "payload bytes of the successful replies"},
    {"update_frames_out", OTI_COUNTER, "logged ADD frames sent back in aggregated updates"},
    {"resyncs", OTI_COUNTER, "sync replies that told the trainer to fetch a full copy"},
    {"hellos", OTI_COUNTER, "HELLO requests answered"},
    {"full_requests", OTI_COUNTER, "FULL_REQ requests (one per chunk asked for)"},
    {"full_copies", OTI_COUNTER, "full copies built"},
    {"rt_updates", OTI_COUNTER, "real-time updates published"},
    {"rt_entries", OTI_COUNTER, "values carried by real-time updates"},
    {"rt_bytes", OTI_COUNTER, "bytes of real-time updates"},
    {"full_updates", OTI_COUNTER, "full updates published"},
    {"full_bytes", OTI_COUNTER, "bytes of full updates published"},
    {"rt_promoted_to_full", OTI_COUNTER, "real-time updates that carried every value and went out as full updates"},
    {"publish_errors", OTI_COUNTER, "scheduled publications that failed"},
    {"version", OTI_GAUGE, "master version"},
    {"trainers", OTI_GAUGE, "distinct trainer ids seen"},
    {"log_bytes", OTI_GAUGE, "bytes held by the change log"},
    {"log_entries", OTI_GAUGE, "frames held by the change log"},
    {"published_version", OTI_GAUGE, "master version of the newest update published to predictors"},
    /* S_DUR: the order of OTI_DS_* (durable.h; docs/durability.md) */
    {"checkpoints", OTI_COUNTER, "checkpoints written"},
    {"checkpoint_errors", OTI_COUNTER, "checkpoints that failed"},
    {"checkpoint_fallbacks", OTI_COUNTER, "corrupt checkpoints skipped at start (an older one was loaded)"},
    {"checkpoint_version", OTI_GAUGE, "master version of the newest checkpoint"},
    {"checkpoint_ms", OTI_GAUGE, "duration of the last checkpoint in milliseconds"},
    {"checkpoint_bytes", OTI_GAUGE, "size of the last checkpoint file"},
    {"wal_records", OTI_COUNTER, "records appended to the write-ahead log"},
    {"wal_bytes", OTI_COUNTER, "bytes appended to the write-ahead log"},
    {"wal_syncs", OTI_COUNTER, "fdatasync calls on the write-ahead log"},
    {"wal_errors", OTI_COUNTER, "failed appends and syncs of the write-ahead log"},
    {"wal_replayed", OTI_COUNTER, "log records applied at start"},
    {"wal_torn_records", OTI_COUNTER, "torn records dropped from the end of the log at start"},
    {"restored_version", OTI_GAUGE, "master version restored at start (checkpoint plus log)"},
    {"rejected_too_big", OTI_COUNTER, "frames refused: more entries than max_delta_entries"},
    {"drop_auth", OTI_COUNTER, "requests dropped by the transport: bad HMAC"},
    {"drop_replay", OTI_COUNTER, "requests dropped by the transport: replayed message"},
    {"drop_oversize", OTI_COUNTER, "requests dropped by the transport: over recv_max_bytes"},
    {"drop_short", OTI_COUNTER, "requests dropped by the transport: too short for the HMAC trailer"},
    {"refused_connections", OTI_COUNTER, "connections closed at once: max_connections were open (trainer and predictor sockets)"},
};

/* ---- types ------------------------------------------------------------------ */

/* A full copy: FULL frames made from one state of the master. */
typedef struct fullcopy {
    uint64_t version;
    size_t n, cap;
    ot_buf **chunks;
    size_t bytes;
    unsigned refs; /* under fc_mu */
} fullcopy;

typedef struct log_entry {
    uint64_t version;
    uint32_t sender;
    size_t len;
    uint8_t *data;
    oti_kept *kept; /* non-NULL: data is this kept request's bytes, not a copy */
} log_entry;

typedef struct trainer_rec {
    uint32_t sender;
    uint64_t last_seq;
} trainer_rec;

enum { ST_CREATED = 0, ST_BOUND = 1, ST_STARTED = 2, ST_STOPPED = 3 };

struct ot_param_server {
    oti_alloc alloc;
    ot_config *cfg;
    uint32_t shard, num_shards;
    uint64_t lo, hi; /* this shard's key range (oti_shard_range) */
    uint64_t fingerprint, total;
    uint64_t pub_values; /* values a full update carries */
    int64_t rt_ms, full_ms;
    size_t log_limit;
    size_t reply_limit;
    float scale; /* 1, or 1/num_trainers for aggregation "mean" */
    int state;
    oti_stats stats;
    char errmsg[OTI_ERRMSG_LEN];
    oti_dur *dur; /* checkpoints, write-ahead log, limits (durable.h) */

    oti_sock *rep, *pub;
    char *url[2];
    size_t url_size[2];

    /* pub_mu */
    pthread_mutex_t pub_mu;
    ot_delta_encoder *pub_enc;
    ot_snapshot *published;
    uint64_t pub_seq;
    uint64_t pub_version; /* master version of the newest update published */
    uint8_t *pub_scratch;
    size_t pub_scratch_cap;

    /* build_mu */
    pthread_mutex_t build_mu;
    ot_delta_encoder *full_enc;
    ot_model *fc_model;
    ot_snapshot *fc_snap;

    /* mu */
    pthread_mutex_t mu;
    ot_model *master;
    uint64_t version; /* written under mu, read atomically anywhere */
    ot_delta_decoder *dec;
    log_entry *log;
    size_t log_cap, log_head, log_count, log_bytes;
    uint64_t log_floor; /* every version <= log_floor may be missing from the log */
    trainer_rec *trainers;
    size_t ntrainers, trainers_cap;

    /* fc_mu */
    pthread_mutex_t fc_mu;
    fullcopy *fc_cur, *fc_prev;

    /* stop and destroy */
    pthread_mutex_t life_mu;

    /* publisher threads: real-time updates (thr), full updates (thr_full) */
    pthread_mutex_t thr_mu;
    pthread_cond_t thr_cv;
    pthread_t thr, thr_full;
    int thr_running, thr_full_running, thr_stop;
};

/* ---- small helpers ------------------------------------------------------------ */

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t get_version(const ot_param_server *ps)
{
    return __atomic_load_n(&ps->version, __ATOMIC_ACQUIRE);
}

static void set_version(ot_param_server *ps, uint64_t v)
{
    __atomic_store_n(&ps->version, v, __ATOMIC_RELEASE);
    oti_stats_set(&ps->stats, S_VERSION, (double)v);
}

static void count(ot_param_server *ps, size_t idx, uint64_t n)
{
    oti_stats_add(&ps->stats, idx, n);
}

static uint64_t peek(const uint8_t *d, size_t len, int field)
{
    uint64_t v = 0;

    (void)ot_delta_peek(d, len, field, &v);
    return v;
}

/* Counts a refused frame by reason. */
static void count_rejected(ot_param_server *ps, ot_status st)
{
    switch (st) {
    case OT_EMISMATCH: count(ps, S_REJ_MISMATCH, 1); break;
    case OT_ENONFINITE: count(ps, S_REJ_NONFINITE, 1); break;
    case OT_ECORRUPT: count(ps, S_REJ_CORRUPT, 1); break;
    case OT_ERANGE: count(ps, S_REJ_RANGE, 1); break;
    case OT_EREPLAY: count(ps, S_REJ_REPLAY, 1); break;
    default: count(ps, S_REJ_FORMAT, 1); break;
    }
}

/* Copies every array of the master into `dst` (same shape). */
static void copy_arrays(ot_model *dst, const ot_model *src)
{
    oti_params *d = oti_model_params(dst);
    const oti_params *s = oti_model_params_c(src);
    size_t b;
    int k;

    for (b = 0; b < s->nblocks; b++) {
        size_t n = (size_t)(s->blocks[b].rows * s->blocks[b].cols) * sizeof(float);
        memcpy(d->blocks[b].w, s->blocks[b].w, n);
        for (k = 0; k < s->blocks[b].nstate; k++)
            memcpy(d->blocks[b].s[k], s->blocks[b].s[k], n);
    }
}

/* ---- full copies ------------------------------------------------------------ */

static void fullcopy_free(ot_param_server *ps, fullcopy *fc)
{
    size_t i;

    if (fc == NULL)
        return;
    for (i = 0; i < fc->n; i++)
        ot_buf_release(fc->chunks[i]);
    oti_free(&ps->alloc, fc->chunks, fc->cap * sizeof(*fc->chunks));
    oti_free(&ps->alloc, fc, sizeof(*fc));
}

static void fullcopy_release(ot_param_server *ps, fullcopy *fc)
{
    int last;

    if (fc == NULL)
        return;
    pthread_mutex_lock(&ps->fc_mu);
    last = --fc->refs == 0;
    pthread_mutex_unlock(&ps->fc_mu);
    if (last)
        fullcopy_free(ps, fc);
}

/* The kept full copy of version v, retained; NULL if none. */
static fullcopy *fullcopy_find(ot_param_server *ps, uint64_t v)
{
    fullcopy *fc = NULL;

    pthread_mutex_lock(&ps->fc_mu);
    if (ps->fc_cur != NULL && ps->fc_cur->version == v)
        fc = ps->fc_cur;
    else if (ps->fc_prev != NULL && ps->fc_prev->version == v)
        fc = ps->fc_prev;
    if (fc != NULL)
        fc->refs++;
    pthread_mutex_unlock(&ps->fc_mu);
    return fc;
}

/*
 * With build_mu held: the newest full copy, built from the master when the
 * kept one is older than it; retained for the caller.  Afterwards fc_snap
 * holds exactly the values of fc_cur.
 */
static ot_status newest_locked(ot_param_server *ps, fullcopy **out, char *err)
{
    fullcopy *fc, *old = NULL;
    uint64_t v;
    ot_status st = OT_OK;
    int more = 1;

    pthread_mutex_lock(&ps->fc_mu);
    fc = ps->fc_cur;
    if (fc != NULL && fc->version == get_version(ps)) {
        fc->refs++;
        pthread_mutex_unlock(&ps->fc_mu);
        *out = fc;
        return OT_OK;
    }
    pthread_mutex_unlock(&ps->fc_mu);

    fc = oti_calloc(&ps->alloc, 1, sizeof(*fc));
    if (fc == NULL)
        return oti_err(err, OT_ENOMEM, "out of memory for a full copy");
    pthread_mutex_lock(&ps->mu);
    copy_arrays(ps->fc_model, ps->master);
    v = ps->version;
    pthread_mutex_unlock(&ps->mu);

    fc->version = v;
    ot_delta_encoder_reset(ps->full_enc);
    ot_delta_encoder_set_sequence(ps->full_enc, 1);
    ot_delta_encoder_set_versions(ps->full_enc, v, v);
    while (more) {
        ot_buf *b = NULL;
        more = 0;
        st = ot_delta_encode_set_buf(ps->full_enc, ps->fc_model, &ps->fc_snap, 1, &b, &more);
        if (st != OT_OK) {
            oti_err(err, st, "building a full copy: %s", ot_delta_encoder_errmsg(ps->full_enc));
            break;
        }
        if (oti_grow(&ps->alloc, (void **)&fc->chunks, &fc->cap, fc->n + 1, sizeof(*fc->chunks)) !=
            0) {
            ot_buf_release(b);
            st = oti_err(err, OT_ENOMEM, "out of memory for a full copy");
            break;
        }
        fc->chunks[fc->n++] = b;
        fc->bytes += ot_buf_size(b);
    }
    if (st != OT_OK) {
        ot_delta_encoder_reset(ps->full_enc);
        fullcopy_free(ps, fc);
        return st;
    }
    count(ps, S_FULL_COPIES, 1);
    fc->refs = 2; /* kept as fc_cur, and the caller's */
    pthread_mutex_lock(&ps->fc_mu);
    if (ps->fc_prev != NULL && --ps->fc_prev->refs == 0)
        old = ps->fc_prev;
    ps->fc_prev = ps->fc_cur;
    ps->fc_cur = fc;
    pthread_mutex_unlock(&ps->fc_mu);
    fullcopy_free(ps, old);
    *out = fc;
    return OT_OK;
}

static ot_status newest(ot_param_server *ps, fullcopy **out, char *err)
{
    ot_status st;

    pthread_mutex_lock(&ps->build_mu);
    st = newest_locked(ps, out, err);
    pthread_mutex_unlock(&ps->build_mu);
    return st;
}

/* ---- change log and trainer table (under mu) --------------------------------- */

static log_entry *log_at(ot_param_server *ps, size_t i)
{
    return &ps->log[(ps->log_head + i) % ps->log_cap];
}

static void log_entry_free(const oti_alloc *a, log_entry *e)
{
    if (e->kept != NULL)
        oti_kept_free(e->kept);
    else
        oti_free(a, e->data, e->len);
    e->kept = NULL;
    e->data = NULL;
}

static void log_evict(ot_param_server *ps)
{
    log_entry *e = log_at(ps, 0);

    ps->log_floor = e->version;
    ps->log_bytes -= e->len;
    log_entry_free(&ps->alloc, e);
    ps->log_head = (ps->log_head + 1) % ps->log_cap;
    ps->log_count--;
}

static void log_stats(ot_param_server *ps)
{
    oti_stats_set(&ps->stats, S_LOG_BYTES, (double)ps->log_bytes);
    oti_stats_set(&ps->stats, S_LOG_ENTRIES, (double)ps->log_count);
}

static void log_clear(ot_param_server *ps, uint64_t floor)
{
    while (ps->log_count > 0)
        log_evict(ps);
    ps->log_floor = floor;
    log_stats(ps);
}

/* Appends a frame applied as `version`; a frame that cannot be kept raises
 * the floor instead (trainers behind it resync).  With `keep_from` (d is
 * the request that reply answers) the request itself is kept, not a copy:
 * no fresh pages for a large delta. */
static void log_store(ot_param_server *ps, uint64_t version, uint32_t sender, const uint8_t *d,
                      size_t len, oti_reply *keep_from)
{
    log_entry *e;
    uint8_t *copy;
    oti_kept *kept = NULL;

    if (len > ps->log_limit) {
        log_clear(ps, version);
        return;
    }
    while (ps->log_count > 0 && ps->log_bytes + len > ps->log_limit)
        log_evict(ps);
    if (ps->log_count == ps->log_cap) {
        /* grow the ring, unrolling it so the oldest entry is first */
        size_t ncap = ps->log_cap ? ps->log_cap * 2 : 64, i;
        log_entry *n = oti_calloc(&ps->alloc, ncap, sizeof(*n));
        if (n == NULL) {
            log_clear(ps, version);
            return;
        }
        for (i = 0; i < ps->log_count; i++)
            n[i] = *log_at(ps, i);
        oti_free(&ps->alloc, ps->log, ps->log_cap * sizeof(*ps->log));
        ps->log = n;
        ps->log_cap = ncap;
        ps->log_head = 0;
    }
    if (keep_from != NULL && (kept = oti_reply_keep_request(keep_from)) != NULL) {
        copy = (uint8_t *)d;
    } else {
        copy = oti_malloc(&ps->alloc, len);
        if (copy == NULL) {
            log_clear(ps, version);
            return;
        }
        memcpy(copy, d, len);
    }
    e = &ps->log[(ps->log_head + ps->log_count) % ps->log_cap];
    e->version = version;
    e->sender = sender;
    e->len = len;
    e->data = copy;
    e->kept = kept;
    ps->log_count++;
    ps->log_bytes += len;
    log_stats(ps);
}

static void log_append(ot_param_server *ps, uint64_t version, uint32_t sender, const uint8_t *d,
                       size_t len)
{
    log_store(ps, version, sender, d, len, NULL);
}

/* The trainer record of `sender`, created when absent; NULL on ENOMEM. */
static trainer_rec *trainer_get(ot_param_server *ps, uint32_t sender, int create)
{
    size_t lo = 0, hi = ps->ntrainers;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ps->trainers[mid].sender < sender)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < ps->ntrainers && ps->trainers[lo].sender == sender)
        return &ps->trainers[lo];
    if (!create)
        return NULL;
    if (oti_grow(&ps->alloc, (void **)&ps->trainers, &ps->trainers_cap, ps->ntrainers + 1,
                 sizeof(*ps->trainers)) != 0)
        return NULL;
    memmove(&ps->trainers[lo + 1], &ps->trainers[lo],
            (ps->ntrainers - lo) * sizeof(*ps->trainers));
    ps->trainers[lo].sender = sender;
    ps->trainers[lo].last_seq = 0;
    ps->ntrainers++;
    oti_stats_set(&ps->stats, S_TRAINERS, (double)ps->ntrainers);
    return &ps->trainers[lo];
}

/* ---- request handlers ----------------------------------------------------------- */

static ot_status append_ctl(ot_param_server *ps, oti_reply *reply, const oti_ctl *c,
                            uint64_t sequence, uint64_t version)
{
    uint8_t buf[OTI_CTL_FRAME_MAX];
    size_t n;
    ot_status st;

    st = oti_ctl_frame(c, ps->fingerprint, ps->shard, 0, sequence, version, buf, sizeof(buf), &n);
    if (st != OT_OK)
        return oti_err(oti_reply_errbuf(reply), st, "cannot encode a control frame");
    if ((st = oti_reply_append(reply, buf, n)) != OT_OK)
        return oti_err(oti_reply_errbuf(reply), st, "out of memory for the reply");
    return OT_OK;
}

static ot_status handle_sync(ot_param_server *ps, const uint8_t *req, size_t len,
                             oti_reply *reply)
{
    char *err = oti_reply_errbuf(reply);
    uint64_t fp, seq, base, entries, v, last;
    uint32_t sender;
    ot_status st;
    uint8_t *scaled = NULL;
    const uint8_t *frame = req;
    trainer_rec *tr;
    int duplicate = 0, resync = 0;
    size_t i, first, need;
    uint64_t ticket = 0;
    oti_ctl ack;

    /* A frame that is applied is validated once, by the apply under the
     * lock; until then its header fields only route it.  One of another
     * model, one to be scaled first, and one that will not be applied (a
     * duplicate, an older sequence, no entries: below) get every check that
     * needs no model first, so a refusal says why. */
    fp = peek(req, len, OT_DELTA_FIELD_FINGERPRINT);
    st = OT_OK;
    if (fp != ps->fingerprint || ps->scale != 1.0f) {
        st = ot_delta_check(req, len);
        if ((st == OT_OK || st == OT_ENONFINITE) && fp != ps->fingerprint)
            st = OT_EMISMATCH;
    }
    if (st != OT_OK) {
        count_rejected(ps, st);
        if (st == OT_EMISMATCH)
            return oti_err(err, st, "delta for model %016llx, this server's is %016llx",
                           (unsigned long long)fp, (unsigned long long)ps->fingerprint);
        return oti_err(err, st, "delta refused: %s", ot_strerror(st));
    }
    sender = (uint32_t)peek(req, len, OT_DELTA_FIELD_SENDER);
    seq = peek(req, len, OT_DELTA_FIELD_SEQUENCE);
    base = peek(req, len, OT_DELTA_FIELD_BASE_VERSION);
    entries = peek(req, len, OT_DELTA_FIELD_ENTRIES);
    if ((st = oti_dur_check_frame(ps->dur, entries, err)) != OT_OK)
        return st;
    if (ps->scale != 1.0f && entries > 0) {
        scaled = oti_malloc(&ps->alloc, len);
        if (scaled == NULL)
            return oti_err(err, OT_ENOMEM, "out of memory scaling a delta");
        memcpy(scaled, req, len);
        if ((st = oti_delta_scale(scaled, len, ps->scale)) != OT_OK) {
            oti_free(&ps->alloc, scaled, len);
            count_rejected(ps, st);
            return oti_err(err, st, "delta refused while scaling it: %s", ot_strerror(st));
        }
        frame = scaled;
    }

    pthread_mutex_lock(&ps->mu);
    /* The sender's record is added only after the frame passed its checks
     * (a damaged sender id adds none); room for it is made now, so adding
     * it after the apply cannot fail. */
    tr = trainer_get(ps, sender, 0);
    last = tr != NULL ? tr->last_seq : 0;
    if (tr == NULL && oti_grow(&ps->alloc, (void **)&ps->trainers, &ps->trainers_cap,
                               ps->ntrainers + 1, sizeof(*ps->trainers)) != 0) {
        pthread_mutex_unlock(&ps->mu);
        oti_free(&ps->alloc, scaled, len);
        return oti_err(err, OT_ENOMEM, "out of memory for the trainer table");
    }
    if ((seq <= last || entries == 0) && ps->scale == 1.0f &&
        (st = ot_delta_check(req, len)) != OT_OK) {
        pthread_mutex_unlock(&ps->mu);
        count_rejected(ps, st);
        return oti_err(err, st, "delta refused: %s", ot_strerror(st));
    }
    if (seq < last) {
        pthread_mutex_unlock(&ps->mu);
        oti_free(&ps->alloc, scaled, len);
        count(ps, S_REJ_REPLAY, 1);
        return oti_err(err, OT_EREPLAY,
                       "trainer %u sent sequence %llu, its last applied is %llu", sender,
                       (unsigned long long)seq, (unsigned long long)last);
    }
    if (seq == last) {
        duplicate = 1;
    } else if (entries > 0) {
        /* With the write-ahead log on, the frame is validated and logged
         * first (durable.c); it is durable before the reply (commit below). */
        st = oti_dur_log(ps->dur, ps->dec, ps->master, sender, seq, ps->version + 1, frame, len,
                         &ticket, err);
        if (st == OT_OK)
            st = ot_delta_apply(ps->dec, ps->master, frame, len);
        if (st != OT_OK) {
            if (st != OT_EIO)
                oti_err(err, st, "delta refused: %s", ot_delta_decoder_errmsg(ps->dec));
            pthread_mutex_unlock(&ps->mu);
            oti_free(&ps->alloc, scaled, len);
            if (st != OT_EIO)
                count_rejected(ps, st);
            return st;
        }
        set_version(ps, ps->version + 1);
        log_store(ps, ps->version, sender, frame, len, frame == req ? reply : NULL);
    }
    if (!duplicate) {
        if (tr == NULL)
            tr = trainer_get(ps, sender, 1); /* room was made above */
        tr->last_seq = seq;
    }
    v = ps->version;

    /* The aggregated update: logged frames of other trainers after base. */
    need = OTI_CTL_FRAME_MAX;
    first = ps->log_count;
    if (base > v || (base < ps->log_floor && !(ps->log_floor == v && base + 1 == v &&
                                                !duplicate && entries > 0))) {
        resync = 1;
    } else {
        while (first > 0 && log_at(ps, first - 1)->version > base) {
            const log_entry *e = log_at(ps, first - 1);
            if (e->sender != sender)
                need += e->len;
            first--;
        }
        if (need > ps->reply_limit)
            resync = 1;
    }
    memset(&ack, 0, sizeof(ack));
    ack.op = OTI_CTL_SYNC_ACK;
    ack.result = duplicate ? OTI_SYNC_DUPLICATE : OTI_SYNC_APPLIED;
    ack.version = v;
    if (!resync) {
        size_t nframes = 0;
        st = append_ctl(ps, reply, &ack, seq, v);
        for (i = first; st == OT_OK && i < ps->log_count; i++) {
            const log_entry *e = log_at(ps, i);
            if (e->sender == sender)
                continue;
            if ((st = oti_reply_append(reply, e->data, e->len)) != OT_OK)
                oti_err(err, st, "out of memory for the reply");
            nframes++;
        }
        count(ps, S_UPDATE_FRAMES_OUT, nframes);
    }
    /* Everything this reply reports (this frame, a duplicate's original,
     * the other trainers' frames) was logged by now: with wal_sync "every"
     * it is made durable before the reply goes out. */
    ticket = oti_dur_ticket(ps->dur);
    pthread_mutex_unlock(&ps->mu);
    oti_free(&ps->alloc, scaled, len);
    if ((st = oti_dur_commit(ps->dur, ticket, err)) != OT_OK)
        return st; /* applied but not durable: no acknowledgement (durable.h) */
    if (oti_dur_crash_point(ps->dur, v, !duplicate && entries > 0))
        return oti_err(err, OT_ECLOSED, "the server is stopping");

    if (duplicate)
        count(ps, S_DUPLICATES, 1);
    else if (entries > 0) {
        count(ps, S_DELTAS_IN, 1);
        count(ps, S_DELTA_BYTES_IN, len);
        count(ps, S_ENTRIES_IN, entries);
    }
    if (resync) {
        fullcopy *fc = NULL;
        if ((st = newest(ps, &fc, err)) != OT_OK)
            return st;
        ack.resync = 1;
        ack.full_version = fc->version;
        fullcopy_release(ps, fc);
        count(ps, S_RESYNCS, 1);
        st = append_ctl(ps, reply, &ack, seq, v);
    }
    return st;
}

static ot_status handle_full_req(ot_param_server *ps, const oti_ctl *c, oti_reply *reply)
{
    char *err = oti_reply_errbuf(reply);
    fullcopy *fc = NULL;
    ot_status st = OT_OK;

    count(ps, S_FULL_REQUESTS, 1);
    if (c->version == 0)
        st = newest(ps, &fc, err);
    else if ((fc = fullcopy_find(ps, c->version)) == NULL)
        st = oti_err(err, OT_ENOENT, "full copy of version %llu is no longer kept",
                     (unsigned long long)c->version);
    if (st != OT_OK)
        return st;
    /* A full copy shows the master: the records of every version it holds
     * were logged before it was made; make them durable first. */
    if ((st = oti_dur_commit(ps->dur, oti_dur_ticket(ps->dur), err)) != OT_OK) {
        fullcopy_release(ps, fc);
        return st;
    }
    if (c->chunk >= fc->n) {
        st = oti_err(err, OT_ERANGE, "full copy of version %llu has %zu chunks, asked for %u",
                     (unsigned long long)fc->version, fc->n, c->chunk);
    } else if ((st = oti_reply_append(reply, ot_buf_data(fc->chunks[c->chunk]),
                                      ot_buf_size(fc->chunks[c->chunk]))) != OT_OK) {
        oti_err(err, st, "out of memory for the reply");
    }
    fullcopy_release(ps, fc);
    return st;
}

static ot_status handle_hello(ot_param_server *ps, const oti_ctl *hello, const uint8_t *req,
                              size_t len, oti_reply *reply)
{
    uint32_t sender = (uint32_t)peek(req, len, OT_DELTA_FIELD_SENDER);
    trainer_rec *tr;
    oti_ctl ack;

    if (hello->shard != ps->shard || hello->num_shards != ps->num_shards) {
        count(ps, S_REJ_MISMATCH, 1);
        return oti_err(oti_reply_errbuf(reply), OT_EMISMATCH,
                       "shard layout mismatch: the client expects shard %u of %u, this server "
                       "is shard %u of %u",
                       (unsigned)hello->shard, (unsigned)hello->num_shards, (unsigned)ps->shard,
                       (unsigned)ps->num_shards);
    }
    memset(&ack, 0, sizeof(ack));
    ack.op = OTI_CTL_HELLO_ACK;
    ack.fingerprint = ps->fingerprint;
    ack.lo = ps->lo;
    ack.hi = ps->hi;
    ack.shard = ps->shard;
    ack.num_shards = ps->num_shards;
    pthread_mutex_lock(&ps->mu);
    ack.version = ps->version;
    tr = trainer_get(ps, sender, 0);
    ack.last_sequence = tr != NULL ? tr->last_seq : 0;
    pthread_mutex_unlock(&ps->mu);
    count(ps, S_HELLOS, 1);
    return append_ctl(ps, reply, &ack, 0, ack.version);
}

static ot_status handler(void *arg, const uint8_t *req, size_t len, oti_reply *reply)
{
    ot_param_server *ps = arg;
    char *err = oti_reply_errbuf(reply);
    uint64_t kind = 0, fl = 0;
    ot_status st;
    oti_ctl c;

    oti_dur_refresh_transport(ps->dur, ps->rep);
    if (oti_dur_crash_point(ps->dur, 0, 0)) /* a simulated crash: no reply */
        return oti_err(err, OT_ECLOSED, "the server is stopping");
    if ((st = ot_delta_peek(req, len, OT_DELTA_FIELD_KIND, &kind)) != OT_OK ||
        (st = ot_delta_peek(req, len, OT_DELTA_FIELD_FRAME_LENGTH, &fl)) != OT_OK) {
        count_rejected(ps, st);
        return oti_err(err, st, "request is not a delta frame");
    }
    if (fl != len) {
        count(ps, S_REJ_FORMAT, 1);
        return oti_err(err, len < fl ? OT_ECORRUPT : OT_EFORMAT,
                       "request of %zu bytes holds a frame of %llu", len, (unsigned long long)fl);
    }
    if (kind == OT_DELTA_ADD) {
        st = handle_sync(ps, req, len, reply);
    } else if (kind == OT_DELTA_CONTROL) {
        if ((st = oti_ctl_parse(req, len, &c, err)) != OT_OK) {
            count_rejected(ps, st);
            return st;
        }
        if (peek(req, len, OT_DELTA_FIELD_FINGERPRINT) != ps->fingerprint) {
            count(ps, S_REJ_MISMATCH, 1);
            return oti_err(err, OT_EMISMATCH, "request for model %016llx, this server's is %016llx",
                           (unsigned long long)peek(req, len, OT_DELTA_FIELD_FINGERPRINT),
                           (unsigned long long)ps->fingerprint);
        }
        if (c.op == OTI_CTL_FULL_REQ)
            st = handle_full_req(ps, &c, reply);
        else if (c.op == OTI_CTL_HELLO)
            st = handle_hello(ps, &c, req, len, reply);
        else {
            count(ps, S_REJ_FORMAT, 1);
            st = oti_err(err, OT_EFORMAT, "control op %d is not a request", c.op);
        }
    } else {
        count(ps, S_REJ_FORMAT, 1);
        return oti_err(err, OT_EFORMAT, "a %s frame is not a request", ot_delta_kind_name((int)kind));
    }
    if (st == OT_OK) {
        count(ps, S_REPLIES, 1);
        count(ps, S_REPLY_BYTES, oti_reply_size(reply));
    }
    return st;
}

/* ---- publishing ------------------------------------------------------------ */

/* pub_mu held: records that predictors were sent the master at `v`. */
static void set_pub_version_locked(ot_param_server *ps, uint64_t v)
{
    ps->pub_version = v;
    oti_stats_set(&ps->stats, S_PUBLISHED_VERSION, (double)v);
}

/* Publishes a copy of `frame` restamped with the publisher's next sequence. */
static ot_status publish_restamped(ot_param_server *ps, const uint8_t *frame, size_t len,
                                   char *err)
{
    ot_status st;

    if (ps->pub_scratch_cap < len) {
        uint8_t *n = oti_realloc(&ps->alloc, ps->pub_scratch, ps->pub_scratch_cap, len);
        if (n == NULL)
            return oti_err(err, OT_ENOMEM, "out of memory publishing");
        ps->pub_scratch = n;
        ps->pub_scratch_cap = len;
    }
    memcpy(ps->pub_scratch, frame, len);
    oti_put64(ps->pub_scratch + OTI_H_SEQUENCE, ps->pub_seq);
    oti_put32(ps->pub_scratch + OTI_H_CHECKSUM, oti_frame_crc(ps->pub_scratch, len));
    st = oti_sock_publish(ps->pub, ps->pub_scratch, len, err);
    if (st == OT_OK)
        ps->pub_seq++;
    return st;
}

/* A full update while pub_mu is held throughout (on demand, and for a
 * real-time update that carried every value). */
static ot_status publish_full_locked(ot_param_server *ps, char *err)
{
    fullcopy *fc = NULL;
    ot_snapshot *snap;
    ot_status st = OT_OK;
    size_t i;

    pthread_mutex_lock(&ps->build_mu);
    if ((st = newest_locked(ps, &fc, err)) != OT_OK) {
        pthread_mutex_unlock(&ps->build_mu);
        return st;
    }
    snap = ot_snapshot_retain(ps->fc_snap);
    pthread_mutex_unlock(&ps->build_mu);
    for (i = 0; i < fc->n && st == OT_OK; i++)
        st = publish_restamped(ps, ot_buf_data(fc->chunks[i]), ot_buf_size(fc->chunks[i]), err);
    if (st == OT_OK) {
        count(ps, S_FULL_UPDATES, 1);
        count(ps, S_FULL_BYTES, fc->bytes);
    }
    /* What the predictors are sent is the full copy, even if a chunk failed.
     * The copy was made under pub_mu, so it is at least as new as every
     * update published before it. */
    ot_snapshot_release(ps->published);
    ps->published = snap;
    set_pub_version_locked(ps, fc->version);
    fullcopy_release(ps, fc);
    return st;
}

static ot_status publish_rt_locked(ot_param_server *ps, char *err)
{
    ot_buf *frames[64];
    size_t nf = 0, i;
    uint64_t entries = 0, bytes = 0, v;
    ot_status st = OT_OK;
    int more = 1;

    pthread_mutex_lock(&ps->mu);
    v = ps->version;
    ot_delta_encoder_set_versions(ps->pub_enc, v, v);
    ot_delta_encoder_set_sequence(ps->pub_enc, ps->pub_seq);
    while (more && nf < sizeof(frames) / sizeof(frames[0])) {
        ot_buf *b = NULL;
        more = 0;
        st = ot_delta_encode_set_buf(ps->pub_enc, ps->master, &ps->published, 0, &b, &more);
        if (st != OT_OK) {
            oti_err(err, st, "real-time update: %s", ot_delta_encoder_errmsg(ps->pub_enc));
            break;
        }
        frames[nf++] = b;
        entries += peek(ot_buf_data(b), ot_buf_size(b), OT_DELTA_FIELD_ENTRIES);
        bytes += ot_buf_size(b);
    }
    pthread_mutex_unlock(&ps->mu);

    if (st == OT_OK && entries >= ps->pub_values) {
        /* Every value changed: a full update says the same, chunked. */
        for (i = 0; i < nf; i++)
            ot_buf_release(frames[i]);
        count(ps, S_RT_PROMOTED, 1);
        return publish_full_locked(ps, err);
    }
    /* Frames made advanced the published snapshot: send them even after an
     * error, so predictors get what the snapshot says they have. */
    for (i = 0; i < nf; i++) {
        ot_status s2 = oti_sock_publish(ps->pub, ot_buf_data(frames[i]), ot_buf_size(frames[i]),
                                        st == OT_OK ? err : NULL);
        if (s2 != OT_OK && st == OT_OK)
            st = s2;
        ps->pub_seq++;
        ot_buf_release(frames[i]);
    }
    if (nf > 0) {
        count(ps, S_RT_UPDATES, 1);
        count(ps, S_RT_ENTRIES, entries);
        count(ps, S_RT_BYTES, bytes);
        if (v > ps->pub_version)
            set_pub_version_locked(ps, v);
    }
    return st;
}

static ot_status do_publish(ot_param_server *ps, int full, char *err)
{
    ot_status st;

    pthread_mutex_lock(&ps->pub_mu);
    if (ps->state != ST_STARTED)
        st = oti_err(err, OT_ESTATE, "the server is not started");
    else if (ps->pub == NULL)
        st = OT_OK; /* no predictor URL: nothing to publish to */
    else
        st = full ? publish_full_locked(ps, err) : publish_rt_locked(ps, err);
    pthread_mutex_unlock(&ps->pub_mu);
    return st;
}

/*
 * pub_mu held, right after the first chunk of a scheduled full update made
 * at master version `v` went out: the published snapshot becomes that copy.
 * A real-time update published after the copy was made carried newer values
 * and cleared their rows' touched marks; the predictors drop those values
 * when they swap the copy in.  So every row is marked touched and a
 * real-time update goes out now, inside the full update: predictors replay
 * it on top of the copy (docs/protocol.md), and nothing is lost or served
 * older.  (With real-time updates off the caller sends a copy at least as
 * new as pub_version instead, so this never publishes then.)
 */
static ot_status switch_to_full_locked(ot_param_server *ps, ot_snapshot *snap, uint64_t v,
                                       char *err)
{
    size_t i;

    ot_snapshot_release(ps->published);
    ps->published = snap;
    if (ps->pub_version <= v) {
        set_pub_version_locked(ps, v);
        return OT_OK;
    }
    pthread_mutex_lock(&ps->mu);
    {
        oti_params *p = oti_model_params(ps->master);
        for (i = 0; i < p->nblocks; i++)
            if (p->blocks[i].touched_bits != NULL)
                p->blocks[i].all_touched = 1;
    }
    pthread_mutex_unlock(&ps->mu);
    return publish_rt_locked(ps, err);
}

/*
 * pub_mu held: replaces *fc (and its snapshot *snap) with the newest full
 * copy, at least as new as every update published so far.
 */
static ot_status renew_copy_locked(ot_param_server *ps, fullcopy **fc, ot_snapshot **snap,
                                   char *err)
{
    fullcopy *nf = NULL;
    ot_status st;

    pthread_mutex_lock(&ps->build_mu);
    st = newest_locked(ps, &nf, err);
    if (st == OT_OK) {
        ot_snapshot_release(*snap);
        *snap = ot_snapshot_retain(ps->fc_snap);
        fullcopy_release(ps, *fc);
        *fc = nf;
    }
    pthread_mutex_unlock(&ps->build_mu);
    return st;
}

/*
 * The scheduled full update: when real-time updates are on, a real-time
 * update first; then the copy, built (or reused) under build_mu alone, its
 * chunks going out one at a time, each under pub_mu, so the real-time
 * publisher is never held behind a full update for longer than one chunk
 * takes to send.  When real-time updates are off (rt_interval_ms 0), a full
 * update is only the full update: if an update published on demand after the
 * copy was made is newer than the copy, a copy of the newest master is made
 * (under pub_mu) and sent instead, so no real-time update is needed after the
 * first chunk.  `between` (tests) runs after the copy is made, before its
 * first chunk goes out.
 */
static ot_status publish_full_chunked(ot_param_server *ps, void (*between)(void *), void *arg,
                                      char *err)
{
    fullcopy *fc = NULL;
    ot_snapshot *snap;
    ot_status st;
    size_t i;

    /* First what changed since the last real-time update, as one: a small
     * update that predictors apply at once, where a change that only the
     * full copy carried would be served once the copy is received and
     * swapped in.  Not when real-time updates are off. */
    if (ps->rt_ms > 0 && do_publish(ps, 0, err) != OT_OK)
        count(ps, S_PUBLISH_ERRORS, 1);
    pthread_mutex_lock(&ps->build_mu);
    st = newest_locked(ps, &fc, err);
    snap = st == OT_OK ? ot_snapshot_retain(ps->fc_snap) : NULL;
    pthread_mutex_unlock(&ps->build_mu);
    if (st != OT_OK)
        return st;
    if (between != NULL)
        between(arg);
    for (i = 0; i < fc->n && st == OT_OK; i++) {
        pthread_mutex_lock(&ps->pub_mu);
        if (ps->state != ST_STARTED || ps->pub == NULL) {
            st = oti_err(err, OT_ESTATE, "the server is not started");
        } else {
            if (i == 0 && ps->rt_ms == 0 && ps->pub_version > fc->version)
                st = renew_copy_locked(ps, &fc, &snap, err);
            if (st == OT_OK)
                st = publish_restamped(ps, ot_buf_data(fc->chunks[i]),
                                       ot_buf_size(fc->chunks[i]), err);
            if (i == 0 && st == OT_OK) {
                ot_status s2 = switch_to_full_locked(ps, snap, fc->version, err);
                snap = NULL;
                if (s2 != OT_OK)
                    count(ps, S_PUBLISH_ERRORS, 1);
            }
        }
        pthread_mutex_unlock(&ps->pub_mu);
    }
    if (st == OT_OK) {
        count(ps, S_FULL_UPDATES, 1);
        count(ps, S_FULL_BYTES, fc->bytes);
    }
    ot_snapshot_release(snap);
    fullcopy_release(ps, fc);
    return st;
}

/* thr_mu held: waits until CLOCK_MONOTONIC reaches `when` (nanoseconds).
 * 1: the time has come; 0: stop was asked, or woken before (spuriously). */
static int wait_until_locked(ot_param_server *ps, uint64_t when)
{
    struct timespec ts;

    if (mono_ns() >= when)
        return 1;
    ts.tv_sec = (time_t)(when / 1000000000u);
    ts.tv_nsec = (long)(when % 1000000000u);
    (void)pthread_cond_timedwait(&ps->thr_cv, &ps->thr_mu, &ts);
    return !ps->thr_stop && mono_ns() >= when;
}

/*
 * The publishers, one thread each, on fixed grids of CLOCK_MONOTONIC:
 * real-time updates every rt_interval_ms, full updates every
 * full_interval_ms.  Full updates never move the real-time grid, so a change
 * waits at most one interval for the update that carries it.  A real-time
 * update that starts late does not move its grid, and one more than an
 * interval late is followed at once by the next; a late full update moves
 * its grid to a whole period after it.
 */
static void publish_loop(ot_param_server *ps, int full)
{
    const uint64_t period = (uint64_t)(full ? ps->full_ms : ps->rt_ms) * 1000000u;
    uint64_t next = mono_ns() + period;

    pthread_mutex_lock(&ps->thr_mu);
    while (!ps->thr_stop) {
        char err[OTI_ERRMSG_LEN];
        uint64_t now;
        ot_status st;

        if (!wait_until_locked(ps, next))
            continue;
        pthread_mutex_unlock(&ps->thr_mu);
        st = full ? publish_full_chunked(ps, NULL, NULL, err) : do_publish(ps, 0, err);
        if (st != OT_OK)
            count(ps, S_PUBLISH_ERRORS, 1);
        pthread_mutex_lock(&ps->thr_mu);
        now = mono_ns();
        next += period;
        if (next <= now)
            next = full ? now + period : now;
    }
    pthread_mutex_unlock(&ps->thr_mu);
}

static void *rt_publisher_main(void *arg)
{
    publish_loop(arg, 0);
    return NULL;
}

static void *full_publisher_main(void *arg)
{
    publish_loop(arg, 1);
    return NULL;
}

/* ---- durability hooks (durable.h) --------------------------------------------- */

/* At create: take over a checkpoint's version and trainer table (the master
 * already holds its arrays).  Every row is marked touched, so the first
 * real-time update sends what differs from the published snapshot. */
static ot_status dur_restored(void *arg, const oti_ckpt_state *s, char *err)
{
    ot_param_server *ps = arg;
    oti_params *p = oti_model_params(ps->master);
    size_t i;

    for (i = 0; i < s->ntrainers; i++) {
        trainer_rec *tr = trainer_get(ps, s->trainers[i].id, 1);
        if (tr == NULL)
            return oti_err(err, OT_ENOMEM, "out of memory for the trainer table");
        tr->last_seq = s->trainers[i].last_seq;
    }
    set_version(ps, s->version);
    log_clear(ps, s->version);
    for (i = 0; i < p->nblocks; i++)
        if (p->blocks[i].touched_bits != NULL)
            p->blocks[i].all_touched = 1;
    return OT_OK;
}

/* At create: applies one logged frame, as handle_sync did. */
static ot_status dur_replay(void *arg, const oti_wal_rec *r, char *err)
{
    ot_param_server *ps = arg;
    trainer_rec *tr = trainer_get(ps, r->sender, 1);
    ot_status st;

    if (tr == NULL)
        return oti_err(err, OT_ENOMEM, "out of memory for the trainer table");
    if (r->sequence <= tr->last_seq)
        return OT_EREPLAY;
    if ((st = ot_delta_apply(ps->dec, ps->master, r->frame, r->len)) != OT_OK)
        return oti_err(err, st, "logged delta of trainer %u sequence %llu does not apply: %s",
                       r->sender, (unsigned long long)r->sequence,
                       ot_delta_decoder_errmsg(ps->dec));
    tr->last_seq = r->sequence;
    set_version(ps, r->version);
    log_append(ps, r->version, r->sender, r->frame, r->len);
    return OT_OK;
}

/* For a checkpoint: copies the master, its version and the trainer table
 * under mu, and starts a new log segment there, so that the checkpoint and
 * the log split at one version. */
static ot_status dur_capture(void *arg, ot_model *scratch, oti_ckpt_state *s, char *err)
{
    ot_param_server *ps = arg;
    ot_status st = OT_OK;
    size_t i;

    pthread_mutex_lock(&ps->pub_mu);
    s->published_version = ot_snapshot_version(ps->published);
    pthread_mutex_unlock(&ps->pub_mu);
    pthread_mutex_lock(&ps->mu);
    s->version = ps->version;
    if (!oti_dur_checkpoint_due(ps->dur, ps->version)) {
        s->skip = 1;
    } else if ((st = oti_ckpt_state_reserve(&ps->alloc, s, ps->ntrainers)) != OT_OK) {
        oti_err(err, st, "out of memory for the trainer table");
    } else {
        for (i = 0; i < ps->ntrainers; i++) {
            s->trainers[i].id = ps->trainers[i].sender;
            s->trainers[i].last_seq = ps->trainers[i].last_seq;
        }
        s->ntrainers = ps->ntrainers;
        copy_arrays(scratch, ps->master);
        st = oti_dur_rotate(ps->dur, ps->version, err);
    }
    pthread_mutex_unlock(&ps->mu);
    return st;
}

/* ---- public API ----------------------------------------------------------------- */

static ot_status derived_config(const ot_config *cfg, const char *source, int rt, ot_config **out)
{
    ot_config *c;
    ot_status st;

    if ((st = ot_config_clone(cfg, &c)) != OT_OK)
        return st;
    st = ot_config_set_str(c, OT_OPT_DELTA_SOURCE, source);
    if (st == OT_OK && rt) {
        st = ot_config_set_f64(c, OT_OPT_THRESHOLD, oti_cfg_f64(cfg, OT_OPT_RT_THRESHOLD));
        if (st == OT_OK)
            st = ot_config_set_f64(c, OT_OPT_THRESHOLD_REL, 0.0);
        if (st == OT_OK)
            st = ot_config_set_i64(c, OT_OPT_MAX_ENTRIES, oti_cfg_i64(cfg, OT_OPT_RT_MAX_ENTRIES));
    } else if (st == OT_OK) {
        st = ot_config_set_str(c, OT_OPT_VALUE_ENCODING, "fp32");
        if (st == OT_OK)
            st = ot_config_set_f64(c, OT_OPT_THRESHOLD, 0.0);
        if (st == OT_OK)
            st = ot_config_set_f64(c, OT_OPT_THRESHOLD_REL, 0.0);
        if (st == OT_OK)
            st = ot_config_set_i64(c, OT_OPT_MAX_ENTRIES, 0);
    }
    if (st != OT_OK) {
        ot_config_destroy(c);
        return st;
    }
    *out = c;
    return OT_OK;
}

ot_status ot_param_server_create(const ot_config *cfg, ot_param_server **out)
{
    oti_alloc a;
    ot_param_server *ps;
    ot_config *pub_cfg = NULL, *full_cfg = NULL;
    const char *source;
    const oti_params *p;
    pthread_condattr_t ca;
    ot_status st;
    size_t b;

    if (out == NULL)
        return OT_EINVAL;
    a = oti_cfg_alloc(cfg);
    ps = oti_calloc(&a, 1, sizeof(*ps));
    if (ps == NULL)
        return OT_ENOMEM;
    ps->alloc = a;
    st = cfg != NULL ? ot_config_clone(cfg, &ps->cfg) : ot_config_create(&ps->cfg);
    if (st != OT_OK) {
        oti_free(&a, ps, sizeof(*ps));
        return st;
    }
    if ((st = oti_stats_init(&ps->stats, &a, stat_defs, S_COUNT)) != OT_OK) {
        ot_config_destroy(ps->cfg);
        oti_free(&a, ps, sizeof(*ps));
        return st;
    }
    pthread_mutex_init(&ps->pub_mu, NULL);
    pthread_mutex_init(&ps->build_mu, NULL);
    pthread_mutex_init(&ps->mu, NULL);
    pthread_mutex_init(&ps->fc_mu, NULL);
    pthread_mutex_init(&ps->thr_mu, NULL);
    pthread_mutex_init(&ps->life_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ps->thr_cv, &ca);
    pthread_condattr_destroy(&ca);
    ps->pub_seq = 1;

    if ((st = ot_config_validate(ps->cfg)) != OT_OK) {
        oti_err(ps->errmsg, st, "%s", ot_config_errmsg(ps->cfg));
        goto fail;
    }
    ps->shard = (uint32_t)oti_cfg_i64(ps->cfg, OT_OPT_SHARD_ID);
    ps->num_shards = (uint32_t)oti_cfg_i64(ps->cfg, OT_OPT_NUM_SHARDS);
    ps->rt_ms = oti_cfg_i64(ps->cfg, OT_OPT_RT_INTERVAL_MS);
    ps->full_ms = oti_cfg_i64(ps->cfg, OT_OPT_FULL_INTERVAL_MS);
    ps->log_limit = (size_t)oti_cfg_i64(ps->cfg, OT_OPT_CHANGE_LOG_BYTES);
    ps->reply_limit = (size_t)oti_cfg_i64(ps->cfg, OT_OPT_RECV_MAX_BYTES) - OTI_REPLY_HEADER -
                      OTI_HMAC_TRAILER;
    ps->scale = 1.0f;
    if (strcmp(oti_cfg_str(ps->cfg, OT_OPT_AGGREGATION), "mean") == 0)
        ps->scale = 1.0f / (float)oti_cfg_i64(ps->cfg, OT_OPT_NUM_TRAINERS);
    /* Real-time updates go to predictors, which never train: weights only.
     * Full copies also load trainers, so they carry the optimizer state too
     * when trainers exchange state. */
    source = strcmp(oti_cfg_str(ps->cfg, OT_OPT_DELTA_SOURCE), "weights") == 0 ? "weights"
                                                                               : "both";
    if ((st = derived_config(ps->cfg, "weights", 1, &pub_cfg)) != OT_OK ||
        (st = derived_config(ps->cfg, source, 0, &full_cfg)) != OT_OK) {
        oti_err(ps->errmsg, st, "cannot derive the publishing options");
        goto fail;
    }
    if ((st = ot_model_create(ps->cfg, &ps->master)) != OT_OK ||
        (st = ot_model_create(ps->cfg, &ps->fc_model)) != OT_OK) {
        oti_err(ps->errmsg, st, "cannot create the master model: %s", ot_config_errmsg(ps->cfg));
        goto fail;
    }
    oti_params_clear_touched(oti_model_params(ps->master));
    p = oti_model_params_c(ps->master);
    ps->fingerprint = p->fingerprint;
    ps->total = p->total;
    if ((st = oti_shard_range(p, ps->shard, ps->num_shards, &ps->lo, &ps->hi)) != OT_OK) {
        oti_err(ps->errmsg, st, "shard %u of %u holds no rows of this model",
                (unsigned)ps->shard, (unsigned)ps->num_shards);
        goto fail;
    }
    for (b = 0; b < p->nblocks; b++) {
        unsigned m = oti_source_mask(oti_cfg_choice(full_cfg, OT_OPT_DELTA_SOURCE),
                                     p->blocks[b].nstate);
        unsigned k, bits = 0;
        uint64_t r0, r1;
        for (k = 0; k < OTI_NARRAYS; k++)
            bits += (m >> k) & 1u;
        oti_shard_rows(p, b, ps->lo, ps->hi, &r0, &r1);
        ps->pub_values += (r1 - r0) * p->blocks[b].cols * bits;
    }
    if ((st = ot_delta_encoder_create(pub_cfg, &ps->pub_enc)) != OT_OK ||
        (st = ot_delta_encoder_create(full_cfg, &ps->full_enc)) != OT_OK ||
        (st = ot_delta_decoder_create(ps->cfg, &ps->dec)) != OT_OK ||
        (st = ot_snapshot_create(pub_cfg, ps->master, 0, &ps->published)) != OT_OK ||
        (st = ot_snapshot_create(full_cfg, ps->master, 0, &ps->fc_snap)) != OT_OK) {
        oti_err(ps->errmsg, st, "cannot create the codec");
        goto fail;
    }
    ot_delta_encoder_set_ids(ps->pub_enc, ps->shard, 0);
    ot_delta_encoder_set_ids(ps->full_enc, ps->shard, 0);
    ot_delta_decoder_set_shard(ps->dec, ps->shard, ps->lo, ps->hi);
    if (ps->num_shards > 1) /* full copies and full updates carry this shard's range */
        oti_delta_encoder_range(ps->full_enc, ps->lo, ps->hi);
    {
        /* Restores from checkpoint_dir when it is set (docs/durability.md). */
        const oti_dur_hooks h = {ps, dur_restored, dur_replay, dur_capture};
        if ((st = oti_dur_create(ps->cfg, &ps->alloc, ps->master, ps->shard, &ps->stats, S_DUR,
                                 &h, &ps->dur, ps->errmsg)) != OT_OK)
            goto fail;
    }
    ot_config_destroy(pub_cfg);
    ot_config_destroy(full_cfg);
    *out = ps;
    return OT_OK;

fail:
    ot_config_destroy(pub_cfg);
    ot_config_destroy(full_cfg);
    ot_param_server_destroy(ps);
    return st;
}

/* The URL with a TCP port 0 replaced by the bound port. */
static ot_status keep_url(ot_param_server *ps, int which, const char *url, int port)
{
    size_t n = strlen(url);
    char *s;

    s = oti_malloc(&ps->alloc, n + 16);
    if (s == NULL)
        return OT_ENOMEM;
    if (port > 0 && (strncmp(url, "tcp", 3) == 0 || strncmp(url, "tls+tcp", 7) == 0) && n >= 2 &&
        strcmp(url + n - 2, ":0") == 0)
        snprintf(s, n + 16, "%.*s:%d", (int)(n - 2), url, port);
    else
        memcpy(s, url, n + 1);
    ps->url[which] = s;
    ps->url_size[which] = n + 16;
    return OT_OK;
}

ot_status ot_param_server_listen(ot_param_server *ps, const char *trainer_url,
                                 const char *predictor_url)
{
    oti_tp_opts o;
    ot_status st;
    int port = 0;
    uint8_t key[OTI_HMAC_KEY_MAX];

    if (ps == NULL)
        return OT_EINVAL;
    if (trainer_url == NULL)
        return oti_err(ps->errmsg, OT_EINVAL, "NULL trainer URL");
    if (ps->state != ST_CREATED)
        return oti_err(ps->errmsg, OT_ESTATE, "the server is already bound");
    oti_tp_opts_init(&o);
    o.alloc = ps->alloc;
    o.recv_max = (size_t)oti_cfg_i64(ps->cfg, OT_OPT_RECV_MAX_BYTES);
    o.contexts = (int)oti_cfg_i64(ps->cfg, OT_OPT_REQUEST_CONTEXTS);
    o.send_timeout_ms = (int32_t)oti_cfg_i64(ps->cfg, OT_OPT_TIMEOUT_MS);
    o.reconnect_min_ms = (int32_t)oti_cfg_i64(ps->cfg, OT_OPT_RECONNECT_MS);
    if ((st = oti_role_security(ps->cfg, &o, key, ps->errmsg)) == OT_OK)
        st = oti_sock_create(OTI_SOCK_REP, &o, &ps->rep, ps->errmsg);
    if (st != OT_OK) {
        oti_wipe(key, sizeof(key));
        return st;
    }
    if ((st = oti_sock_listen(ps->rep, trainer_url, &port, ps->errmsg)) != OT_OK ||
        (st = keep_url(ps, 0, trainer_url, port)) != OT_OK)
        goto fail;
    if (predictor_url != NULL) {
        port = 0;
        if ((st = oti_sock_create(OTI_SOCK_PUB, &o, &ps->pub, ps->errmsg)) != OT_OK ||
            (st = oti_sock_listen(ps->pub, predictor_url, &port, ps->errmsg)) != OT_OK ||
            (st = keep_url(ps, 1, predictor_url, port)) != OT_OK)
            goto fail;
    }
    oti_wipe(key, sizeof(key));
    ps->state = ST_BOUND;
    return OT_OK;

fail:
    oti_wipe(key, sizeof(key));
    oti_sock_destroy(ps->rep);
    oti_sock_destroy(ps->pub);
    ps->rep = ps->pub = NULL;
    oti_free(&ps->alloc, ps->url[0], ps->url_size[0]);
    oti_free(&ps->alloc, ps->url[1], ps->url_size[1]);
    ps->url[0] = ps->url[1] = NULL;
    if (st == OT_ENOMEM)
        oti_err(ps->errmsg, st, "out of memory");
    return st;
}

const char *ot_param_server_url(const ot_param_server *ps, int which)
{
    if (ps == NULL || which < 0 || which > 1)
        return NULL;
    return ps->url[which];
}

ot_status ot_param_server_start(ot_param_server *ps)
{
    ot_status st;

    if (ps == NULL)
        return OT_EINVAL;
    if (ps->state != ST_BOUND)
        return oti_err(ps->errmsg, OT_ESTATE,
                       ps->state == ST_CREATED ? "the server is not bound (call listen first)"
                                               : "the server was already started");
    if ((st = oti_server_start(ps->rep, handler, ps, ps->errmsg)) != OT_OK)
        return st;
    pthread_mutex_lock(&ps->pub_mu);
    ps->state = ST_STARTED;
    pthread_mutex_unlock(&ps->pub_mu);
    if (ps->pub != NULL && (ps->rt_ms > 0 || ps->full_ms > 0)) {
        ps->thr_stop = 0;
        if (ps->rt_ms > 0) {
            if (pthread_create(&ps->thr, NULL, rt_publisher_main, ps) != 0) {
                ot_param_server_stop(ps);
                return oti_err(ps->errmsg, OT_ENOMEM, "cannot start the publisher thread");
            }
            ps->thr_running = 1;
        }
        if (ps->full_ms > 0) {
            if (pthread_create(&ps->thr_full, NULL, full_publisher_main, ps) != 0) {
                ot_param_server_stop(ps);
                return oti_err(ps->errmsg, OT_ENOMEM, "cannot start the publisher thread");
            }
            ps->thr_full_running = 1;
        }
    }
    if (oti_dur_start(ps->dur) != OT_OK) {
        ot_param_server_stop(ps);
        return oti_err(ps->errmsg, OT_ENOMEM, "cannot start the durability thread");
    }
    return OT_OK;
}

ot_status ot_param_server_publish(ot_param_server *ps, int full)
{
    char err[OTI_ERRMSG_LEN];
    ot_status st;

    if (ps == NULL)
        return OT_EINVAL;
    err[0] = '\0';
    st = do_publish(ps, full, err);
    if (st != OT_OK) {
        pthread_mutex_lock(&ps->pub_mu);
        memcpy(ps->errmsg, err, sizeof(err));
        pthread_mutex_unlock(&ps->pub_mu);
    }
    return st;
}

ot_status ot_param_server_stop(ot_param_server *ps)
{
    char err[OTI_ERRMSG_LEN];
    ot_status st;

    if (ps == NULL)
        return OT_EINVAL;
    pthread_mutex_lock(&ps->life_mu);
    if (ps->thr_running || ps->thr_full_running) {
        pthread_mutex_lock(&ps->thr_mu);
        ps->thr_stop = 1;
        pthread_cond_broadcast(&ps->thr_cv);
        pthread_mutex_unlock(&ps->thr_mu);
        if (ps->thr_running)
            pthread_join(ps->thr, NULL);
        if (ps->thr_full_running)
            pthread_join(ps->thr_full, NULL);
        ps->thr_running = ps->thr_full_running = 0;
    }
    oti_dur_release(ps->dur); /* before the REP socket: wakes handlers held by a crash */
    oti_sock_stop(ps->rep);
    pthread_mutex_lock(&ps->pub_mu);
    if (ps->state != ST_CREATED)
        ps->state = ST_STOPPED;
    oti_dur_refresh_conns(ps->dur, ps->rep, ps->pub);
    oti_sock_destroy(ps->pub);
    ps->pub = NULL;
    pthread_mutex_unlock(&ps->pub_mu);
    oti_dur_refresh_transport(ps->dur, ps->rep);
    oti_sock_destroy(ps->rep);
    ps->rep = NULL;
    /* The final checkpoint (when checkpoint_dir is set and it would hold
     * something new): a restart then has no log to replay. */
    err[0] = '\0';
    if ((st = oti_dur_finish(ps->dur, err)) != OT_OK)
        memcpy(ps->errmsg, err, sizeof(err));
    pthread_mutex_unlock(&ps->life_mu);
    return st;
}

void ot_param_server_destroy(ot_param_server *ps)
{
    oti_alloc a;
    size_t i;

    if (ps == NULL)
        return;
    ot_param_server_stop(ps);
    a = ps->alloc;
    fullcopy_free(ps, ps->fc_cur);
    fullcopy_free(ps, ps->fc_prev);
    for (i = 0; i < ps->log_count; i++)
        log_entry_free(&a, log_at(ps, i));
    oti_free(&a, ps->log, ps->log_cap * sizeof(*ps->log));
    oti_free(&a, ps->trainers, ps->trainers_cap * sizeof(*ps->trainers));
    oti_free(&a, ps->pub_scratch, ps->pub_scratch_cap);
    oti_free(&a, ps->url[0], ps->url_size[0]);
    oti_free(&a, ps->url[1], ps->url_size[1]);
    ot_snapshot_release(ps->published);
    ot_snapshot_release(ps->fc_snap);
    ot_delta_encoder_destroy(ps->pub_enc);
    ot_delta_encoder_destroy(ps->full_enc);
    ot_delta_decoder_destroy(ps->dec);
    oti_dur_destroy(ps->dur);
    ot_model_destroy(ps->master);
    ot_model_destroy(ps->fc_model);
    oti_stats_fini(&ps->stats, &a);
    ot_config_destroy(ps->cfg);
    pthread_cond_destroy(&ps->thr_cv);
    pthread_mutex_destroy(&ps->thr_mu);
    pthread_mutex_destroy(&ps->life_mu);
    pthread_mutex_destroy(&ps->fc_mu);
    pthread_mutex_destroy(&ps->mu);
    pthread_mutex_destroy(&ps->build_mu);
    pthread_mutex_destroy(&ps->pub_mu);
    oti_free(&a, ps, sizeof(*ps));
}

ot_status ot_param_server_checkpoint(ot_param_server *ps)
{
    char err[OTI_ERRMSG_LEN];
    ot_status st;

    if (ps == NULL)
        return OT_EINVAL;
    err[0] = '\0';
    if ((st = oti_dur_checkpoint(ps->dur, err)) != OT_OK) {
        pthread_mutex_lock(&ps->pub_mu);
        memcpy(ps->errmsg, err, sizeof(err));
        pthread_mutex_unlock(&ps->pub_mu);
    }
    return st;
}

uint64_t ot_param_server_version(const ot_param_server *ps)
{
    return ps != NULL ? get_version(ps) : 0;
}

ot_status ot_param_server_copy_model(const ot_param_server *ps, ot_model **out)
{
    ot_param_server *w = (ot_param_server *)(uintptr_t)ps; /* the lock is not part of the value */
    ot_status st;

    if (ps == NULL || out == NULL)
        return OT_EINVAL;
    pthread_mutex_lock(&w->mu);
    st = ot_model_clone(w->master, out);
    pthread_mutex_unlock(&w->mu);
    return st;
}

ot_status ot_param_server_stat(const ot_param_server *ps, const char *name, double *value)
{
    ot_param_server *w = (ot_param_server *)(uintptr_t)ps; /* the lock is not part of the value */

    if (ps == NULL)
        return OT_EINVAL;
    /* The transport's drop counters, read while stop cannot close the socket. */
    pthread_mutex_lock(&w->life_mu);
    oti_dur_refresh_transport(w->dur, w->rep);
    oti_dur_refresh_conns(w->dur, w->rep, w->pub);
    pthread_mutex_unlock(&w->life_mu);
    return oti_stats_lookup(&ps->stats, name, value);
}

const char *ot_param_server_stat_name(const ot_param_server *ps, size_t i)
{
    return ps != NULL ? oti_stats_name(&ps->stats, i) : NULL;
}

const char *ot_param_server_errmsg(const ot_param_server *ps)
{
    return ps != NULL ? ps->errmsg : "";
}

ot_status ot_param_server_serve_metrics(ot_param_server *ps, const char *url)
{
    if (ps == NULL)
        return OT_EINVAL;
    return oti_metrics_serve(&ps->stats, &ps->alloc, "param_server", url, ps->errmsg);
}

/* ---- hooks for tests ---------------------------------------------------------------- */

ot_status oti_param_server_test_full_update(ot_param_server *ps, void (*between)(void *),
                                           void *arg)
{
    char err[OTI_ERRMSG_LEN];
    ot_status st;

    if (ps == NULL)
        return OT_EINVAL;
    err[0] = '\0';
    if ((st = publish_full_chunked(ps, between, arg, err)) != OT_OK) {
        pthread_mutex_lock(&ps->pub_mu);
        memcpy(ps->errmsg, err, sizeof(err));
        pthread_mutex_unlock(&ps->pub_mu);
    }
    return st;
}

ot_status oti_param_server_with_master(ot_param_server *ps, oti_master_fn fn, void *arg)
{
    oti_params *p;
    size_t b;

    if (ps == NULL || fn == NULL)
        return OT_EINVAL;
    pthread_mutex_lock(&ps->mu);
    fn(arg, ps->master);
    p = oti_model_params(ps->master);
    for (b = 0; b < p->nblocks; b++)
        if (p->blocks[b].touched_bits != NULL)
            p->blocks[b].all_touched = 1;
    set_version(ps, ps->version + 1);
    log_clear(ps, ps->version);
    pthread_mutex_unlock(&ps->mu);
    return OT_OK;
}

ot_status oti_param_server_set_crash_hook(ot_param_server *ps, oti_crash_fn fn, void *arg)
{
    if (ps == NULL)
        return OT_EINVAL;
    oti_dur_set_crash_hook(ps->dur, fn, arg);
    return OT_OK;
}

ot_status oti_param_server_crash(ot_param_server *ps)
{
    if (ps == NULL)
        return OT_EINVAL;
    oti_dur_crash(ps->dur);
    return OT_OK;
}

ot_status oti_param_server_fail_next(ot_param_server *ps, int what)
{
    if (ps == NULL)
        return OT_EINVAL;
    if (!oti_dur_enabled(ps->dur))
        return OT_ESTATE;
    oti_dur_fail_next(ps->dur, what);
    return OT_OK;
}

ot_status oti_param_server_set_test_hook(ot_param_server *ps, uint32_t drop_every,
                                         uint32_t delay_ms)
{
    if (ps == NULL)
        return OT_EINVAL;
    if (ps->rep == NULL)
        return OT_ESTATE;
    oti_sock_set_test_hook(ps->rep, drop_every, delay_ms);
    return OT_OK;
}
