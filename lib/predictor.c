/*
 * predictor.c - the prediction worker (docs/protocol.md, "Server to
 * predictors"; docs/threading.md).
 *
 * A predictor serves ot_predictor_predict() from many threads out of a local
 * copy of the model, while one update thread applies what the parameter
 * server publishes:
 *
 *  - SET frames (real-time updates) are written into the served model in
 *    place, one 32-bit weight at a time with relaxed atomic stores, so a
 *    reader sees each weight either before or after, never torn (model.c
 *    reads the wide, bias and embedding weights with relaxed atomic loads).
 *    A SET frame that touches a DENSE (deep) block is applied to a copy that
 *    is then swapped in, because CBLAS reads the deep weights as plain
 *    memory.
 *  - FULL frames (full updates) are applied to a separate model, swapped in
 *    at the chunk flagged LAST.
 *  - A sequence gap makes it fetch a full copy over request/reply (gap_policy
 *    "request") or ignore SET frames until the next complete full update
 *    ("wait").
 *
 * The update thread keeps three models of the same shape:
 *
 *   current  the served model (readers load the pointer);
 *   stage    a private copy equal to current after every update.  Frames are
 *            decoded into it by the delta codec (which validates everything
 *            first and marks the rows it writes touched); the touched rows
 *            are then copied into current with atomic stores.  This keeps
 *            every byte of decoding in the codec;
 *   spare    the model a swap retired, kept to be reused as the next copy
 *            (so the steady state allocates nothing).
 *
 * plus `building`, the full update being assembled.
 *
 * Swapping models uses a grace period (see publish_model()): readers
 * register in one of two counters chosen by an epoch bit; the writer flips
 * the epoch after storing the new pointer and frees the old model once the
 * old epoch's counter drains.  Readers never wait for the writer.
 *
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "delta.h"
#include "durable.h"
#include "internal.h"
#include "model.h"
#include "params.h"
#include "protocol.h"
#include "stats.h"
#include "transport.h"

/* How long one receive waits, so that stop is noticed promptly. */
#define RECV_POLL_MS 20
/* How long stop waits for the update thread to notice before it closes the
 * request socket under a full-copy fetch in flight. */
#define STOP_GRACE_MS 200
/* Longest wait between two attempts to fetch a full copy after a failure. */
#define FETCH_BACKOFF_MAX_MS 5000

/* ---- stats ------------------------------------------------------------------- */

enum {
    ST_RT_UPDATES,
    ST_RT_ENTRIES,
    ST_FULL_UPDATES,
    ST_FULL_COPIES,
    ST_GAPS,
    ST_RESYNCS,
    ST_IGNORED_STALE,
    ST_IGNORED_WAITING,
    ST_BAD_FRAMES,
    ST_FETCH_ERRORS,
    ST_BYTES_IN,
    ST_VERSION,
    ST_STALENESS,
    ST_LATENCY,
    ST_PREDICTIONS,
    ST_COUNT
};

static const oti_stat_def stat_defs[ST_COUNT] = {
    {"rt_updates", OTI_COUNTER, "real-time (SET) frames applied"},
    {"rt_entries", OTI_COUNTER, "values carried by the real-time frames applied"},
    {"full_updates", OTI_COUNTER, "published full updates swapped in"},
    {"full_copies", OTI_COUNTER, "full copies loaded over request/reply, the first included"},
    {"gaps", OTI_COUNTER, "sequence gaps seen in the published frames"},
    {"resyncs", OTI_COUNTER, "recoveries from a gap or a refused frame (full copy or full update)"},
    {"ignored_stale", OTI_COUNTER, "frames ignored as not newer than the full copy loaded"},
    {"ignored_waiting", OTI_COUNTER, "SET frames ignored while waiting for a full update"},
    {"bad_frames", OTI_COUNTER, "frames refused by the decoder or of an unexpected kind"},
    {"fetch_errors", OTI_COUNTER, "full-copy fetches that failed (retried later)"},
    {"bytes_in", OTI_COUNTER, "bytes received: published messages and full copies"},
    {"version", OTI_GAUGE, "master version of the model served"},
    {"staleness_versions", OTI_GAUGE, "latest version seen on the wire minus the version served"},
    {"update_latency_ms", OTI_GAUGE, "time to apply the last update, from its first frame"},
    {"predictions", OTI_COUNTER, "examples predicted"},
};

/* ---- the handle ------------------------------------------------------------- */

enum { PS_CREATED = 0, PS_RUNNING = 1, PS_STOPPED = 2 };

/* Reader slots: a thread registers in the slot its stack address hashes
 * to, so threads on different cores mostly touch different cache lines. */
#define NSLOTS 16 /* a power of two */

typedef struct rslot {
    uint64_t active[2];   /* atomic: readers inside, by epoch */
    char pad[48];         /* one slot per 64-byte line */
} rslot;

/* One shard of a sharded predictor (num_shards > 1). */
typedef struct pshard {
    oti_sock *req;         /* the shard's trainer URL, for full copies */
    uint64_t base_version; /* the shard's last full copy or full update loaded */
    uint64_t version;      /* the shard's newest version applied */
    uint64_t last_seq;     /* the shard's publisher sequence */
    int have_seq;
    int need_fetch;        /* a frame of this shard was lost: fetch its full copy */
} pshard;

struct ot_predictor {
    oti_alloc alloc;
    ot_config *cfg;           /* the copy made at create */
    int gap_wait;             /* gap_policy "wait" */
    int32_t timeout_ms;
    int32_t reconnect_ms;
    size_t recv_max;
    uint32_t shard, num_shards;
    oti_stats stats;

    /* Lifecycle: subscribe, stop and destroy hold `mu`. */
    pthread_mutex_t mu;
    int state;                /* PS_*, under mu */
    int stop_flag;            /* atomic */
    pthread_t thread;
    int thread_started;
    int thread_done;          /* under vmu: the update thread has returned */

    /* Version waits. */
    pthread_mutex_t vmu;
    pthread_cond_t vcv;
    uint64_t version;         /* atomic: master version served */

    /* Held by the update thread while it writes `current` in place, and by
     * copy_model while it copies `current`. */
    pthread_mutex_t apply_mu;

    /* Grace periods (see publish_model). */
    rslot slots[NSLOTS];
    unsigned epoch;           /* atomic: 0 or 1 */
    ot_model *current;        /* atomic: the served model */

    /* Sockets and decoder; set by subscribe, then used by the update thread. */
    oti_sock *sub;
    oti_sock *req;
    ot_delta_decoder *dec;

    /* ---- owned by the update thread once it runs -------------------------- */
    ot_model *stage;
    ot_model *spare;
    ot_model *building;
    uint64_t building_version;
    uint64_t building_start_ns;
    uint8_t *replay;          /* SET frames received while building: [size_t len][bytes]... */
    size_t replay_len, replay_cap;
    int replay_overflow;
    uint64_t base_version;    /* version of the last full copy or full update loaded */
    uint64_t latest_seen;     /* highest version seen on the wire */
    uint64_t last_seq;
    int have_seq;
    int need_fetch;           /* gap_policy request: fetch a full copy */
    int waiting;              /* gap_policy wait: ignore SET until a full update completes */
    int resync_pending;       /* a gap or lost frame not yet repaired */
    uint64_t next_fetch_ns;   /* earliest time of the next fetch attempt */
    pshard *shards;           /* sharded: num_shards entries; NULL for one server */
    uint32_t cur_shard;       /* sharded: the shard of the frame being handled */
    uint32_t building_shard;  /* sharded: the shard whose full update is being built */
    int32_t fetch_backoff_ms;

    char errmsg[OTI_ERRMSG_LEN];
};

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec ts;

    ts.tv_sec = ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    nanosleep(&ts, NULL);
}

static void set_latency(ot_predictor *p, uint64_t start_ns)
{
    oti_stats_set(&p->stats, ST_LATENCY, (double)(now_ns() - start_ns) / 1e6);
}

static uint64_t load_version(const ot_predictor *p)
{
    return __atomic_load_n(&p->version, __ATOMIC_SEQ_CST);
}

static void update_staleness(ot_predictor *p)
{
    uint64_t v = load_version(p);

    oti_stats_set(&p->stats, ST_STALENESS,
                  p->latest_seen > v ? (double)(p->latest_seen - v) : 0.0);
}

/* Sets the served version and wakes ot_predictor_wait_version(). */
static void set_version(ot_predictor *p, uint64_t v)
{
    __atomic_store_n(&p->version, v, __ATOMIC_SEQ_CST);
    oti_stats_set(&p->stats, ST_VERSION, (double)v);
    pthread_mutex_lock(&p->vmu);
    pthread_cond_broadcast(&p->vcv);
    pthread_mutex_unlock(&p->vmu);
    update_staleness(p);
}

/* The base version that frames of the current shard are compared with. */
static uint64_t *base_of(ot_predictor *p)
{
    return p->shards != NULL ? &p->shards[p->cur_shard].base_version : &p->base_version;
}

/* Sharded: the served version is the sum of the shards' versions. */
static void set_shard_version(ot_predictor *p, uint32_t s, uint64_t v)
{
    uint64_t sum = 0;
    uint32_t i;

    if (v > p->shards[s].version)
        p->shards[s].version = v;
    for (i = 0; i < p->num_shards; i++)
        sum += p->shards[i].version;
    set_version(p, sum);
}

/* Copies every array of src into dst (same shape) and clears dst's touched
 * rows.  Both are private to the update thread. */
static void copy_arrays(ot_model *dst, const ot_model *src)
{
    oti_params *d = oti_model_params(dst);
    const oti_params *s = oti_model_params_c(src);
    size_t i;

    for (i = 0; i < d->nblocks; i++) {
        oti_block *db = &d->blocks[i];
        const oti_block *sb = &s->blocks[i];
        size_t n = (size_t)(sb->rows * sb->cols) * sizeof(float);
        int a;
        memcpy(db->w, sb->w, n);
        for (a = 0; a < sb->nstate; a++)
            memcpy(db->s[a], sb->s[a], n);
    }
    oti_params_clear_touched(d);
}

/* A private model equal to stage: the spare, refilled, or a new clone. */
static ot_status copy_of_stage(ot_predictor *p, ot_model **out)
{
    ot_model *m;
    ot_status st;

    if (p->spare != NULL) {
        m = p->spare;
        p->spare = NULL;
        copy_arrays(m, p->stage);
    } else {
        if ((st = ot_model_clone(p->stage, &m)) != OT_OK)
            return st;
        oti_params_clear_touched(oti_model_params(m));
    }
    *out = m;
    return OT_OK;
}

/* Keeps a retired model as the spare, or destroys it. */
static void retire(ot_predictor *p, ot_model *m)
{
    if (m == NULL)
        return;
    if (p->spare == NULL)
        p->spare = m;
    else
        ot_model_destroy(m);
}

/* ---- grace periods ----------------------------------------------------------- */

/*
 * Readers (any number of threads), each in some slot s (a slot is chosen
 * per call; several threads may share one):
 *
 *   1. e = load(epoch)
 *   2. fetch_add(active[s][e], 1)
 *   3. if load(epoch) != e: fetch_sub(active[s][e], 1) and start again
 *   4. m = load(current); use m
 *   5. fetch_sub(active[s][e], 1)
 *
 * Writer (the update thread only; one swap at a time):
 *
 *   A. store(current, new)
 *   B. old_e = epoch; store(epoch, old_e ^ 1)
 *   C. for each slot s: wait until load(active[s][old_e]) == 0
 *   D. free the old model
 *
 * Below, "active[old_e]" means the counter of the reader's slot: the
 * argument is made for one reader and its own slot, so it holds for every
 * slot.  Seeing a slot's counter at 0 once after B is enough: a reader that
 * increments it later does so after B, so its check at 3 fails (or, after a
 * later swap's flip, it loads a newer model at 4).
 *
 * Every operation is sequentially consistent, so all of them lie in one
 * total order S.  Take a reader that loaded m == old at step 4 (old: the
 * model that swap A replaced).  Its load at 4 precedes A in S (it did not
 * see new), and steps 2 and 3 precede 4, so they precede A and therefore B.
 * The epoch it checked at 3 is the value of the last flip before step 3:
 *
 *  - If that is old_e (the flip of the previous swap, or the initial value),
 *    the reader's increment of active[old_e] precedes B, and B precedes
 *    every load of step C; a seq_cst load reads the latest value in S, so C
 *    sees the reader's count until its decrement at 5.  The decrement is a
 *    release and C's load an acquire, so the reader's use of m happens
 *    before D.
 *  - If it is old_e ^ 1, the reader's step 3 precedes the previous swap's
 *    flip B', and the reader read `old` at step 4, so old was stored by the
 *    previous swap's A' (A' precedes the reader's 4).  The previous swap's C'
 *    then waited on active[old_e ^ 1], which held this reader's count: C'
 *    ended after the reader's step 5.  Swaps run one after the other, so D
 *    of this swap comes after C'.
 *
 * A reader that registers after B under old_e fails its check at 3 and
 * retries under the new epoch; only the finitely many readers that checked
 * before B can hold C up, each for one prediction.  Readers never wait.
 */

/* The caller's slot: a hash of an address on its stack.  Threads' stacks
 * lie far apart, so concurrent threads mostly get different slots; any
 * slot is correct, as long as exit uses the one enter chose. */
static unsigned pick_slot(void)
{
    unsigned char probe = 0;
    uint64_t a = (uint64_t)(uintptr_t)&probe >> 16;

    return (unsigned)((a * UINT64_C(0x9E3779B97F4A7C15)) >> 60) & (NSLOTS - 1);
}

static unsigned read_enter(ot_predictor *p, rslot **slot)
{
    rslot *s = &p->slots[pick_slot()];

    *slot = s;
    for (;;) {
        unsigned e = __atomic_load_n(&p->epoch, __ATOMIC_SEQ_CST);
        __atomic_fetch_add(&s->active[e], 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&p->epoch, __ATOMIC_SEQ_CST) == e)
            return e;
        __atomic_fetch_sub(&s->active[e], 1, __ATOMIC_SEQ_CST);
    }
}

static void read_exit(rslot *s, unsigned e)
{
    __atomic_fetch_sub(&s->active[e], 1, __ATOMIC_SEQ_CST);
}

/* Step C: waits until every slot's readers of epoch e have left. */
static void wait_readers(ot_predictor *p, unsigned e)
{
    unsigned spins = 0;
    size_t i;

    for (i = 0; i < NSLOTS; i++) {
        while (__atomic_load_n(&p->slots[i].active[e], __ATOMIC_SEQ_CST) != 0) {
            if (++spins < 64)
                sched_yield();
            else
                sleep_ns(50000);
        }
    }
}


static ot_model *read_current(ot_predictor *p)
{
    return __atomic_load_n(&p->current, __ATOMIC_SEQ_CST);
}

/* Serves `m` (fully written by this thread) and retires the model it
 * replaces once no reader can hold it.  Update thread only. */
static void publish_model(ot_predictor *p, ot_model *m)
{
    ot_model *old = __atomic_load_n(&p->current, __ATOMIC_SEQ_CST);
    unsigned old_e;

    __atomic_store_n(&p->current, m, __ATOMIC_SEQ_CST);
    old_e = __atomic_load_n(&p->epoch, __ATOMIC_SEQ_CST);
    __atomic_store_n(&p->epoch, old_e ^ 1u, __ATOMIC_SEQ_CST);
    wait_readers(p, old_e);
    retire(p, old);
}

/* ---- applying frames (update thread) ---------------------------------------- */

static void abandon_build(ot_predictor *p)
{
    retire(p, p->building);
    p->building = NULL;
    p->replay_len = 0;
    p->replay_overflow = 0;
}

/* Records that values were lost: repair per gap_policy. */
static void lost(ot_predictor *p)
{
    if (p->shards != NULL) {
        /* sharded: fetch the shard's full copy (all of them when the frame's
         * shard is unknown) */
        uint32_t i;
        for (i = 0; i < p->num_shards; i++)
            if (p->cur_shard >= p->num_shards || p->cur_shard == i)
                p->shards[i].need_fetch = 1;
        p->resync_pending = 1;
        p->need_fetch = 1;
        return;
    }
    p->resync_pending = 1;
    if (p->gap_wait)
        p->waiting = 1;
    else
        p->need_fetch = 1;
}

/* The repair is done: a full copy or a full update was swapped in. */
static void repaired(ot_predictor *p)
{
    if (p->resync_pending)
        oti_stats_add(&p->stats, ST_RESYNCS, 1);
    p->resync_pending = 0;
    p->waiting = 0;
    p->need_fetch = 0;
    p->fetch_backoff_ms = 0;
}

/* Whether stage has a touched row in a DENSE block. */
static int dense_touched(const ot_model *stage)
{
    const oti_params *pr = oti_model_params_c(stage);
    size_t i;

    for (i = 0; i < pr->nblocks; i++) {
        const oti_block *b = &pr->blocks[i];
        if (b->kind == OTI_BLOCK_DENSE && (b->all_touched || b->ntouched > 0))
            return 1;
    }
    return 0;
}

/* Copies one row of stage into current: weights with relaxed atomic stores
 * (readers load them concurrently), state arrays plainly (predict never
 * reads them; copy_model is kept out by apply_mu). */
static void copy_row(oti_block *dst, const oti_block *src, uint64_t row)
{
    size_t off = (size_t)(row * src->cols), c;
    int a;

    for (c = 0; c < src->cols; c++) {
        float v = src->w[off + c];
        __atomic_store(&dst->w[off + c], &v, __ATOMIC_RELAXED);
    }
    for (a = 0; a < src->nstate; a++)
        memcpy(dst->s[a] + off, src->s[a] + off, src->cols * sizeof(float));
}

/* Writes stage's touched rows (no DENSE block among them) into current. */
static void write_touched_in_place(ot_predictor *p)
{
    const oti_params *s = oti_model_params_c(p->stage);
    oti_params *d = oti_model_params(p->current);
    size_t i;
    uint64_t k;

    pthread_mutex_lock(&p->apply_mu);
    for (i = 0; i < s->nblocks; i++) {
        const oti_block *sb = &s->blocks[i];
        oti_block *db = &d->blocks[i];
        if (sb->all_touched) {
            for (k = 0; k < sb->rows; k++)
                copy_row(db, sb, k);
        } else {
            for (k = 0; k < sb->ntouched; k++)
                copy_row(db, sb, sb->touched_list[k]);
        }
    }
    pthread_mutex_unlock(&p->apply_mu);
}

/* Keeps a copy of a SET frame received while a full update is being built,
 * to apply on top of it at the end. */
static void record_replay(ot_predictor *p, const uint8_t *frame, size_t len)
{
    size_t need = p->replay_len + sizeof(size_t) + len;

    if (p->replay_overflow)
        return;
    if (need > p->recv_max ||
        oti_grow(&p->alloc, (void **)&p->replay, &p->replay_cap, need, 1) != 0) {
        p->replay_overflow = 1;
        return;
    }
    memcpy(p->replay + p->replay_len, &len, sizeof(size_t));
    memcpy(p->replay + p->replay_len + sizeof(size_t), frame, len);
    p->replay_len = need;
}

/* A SET frame: into stage, then into current in place, or by a swap when it
 * touches a DENSE block. */
static void apply_set(ot_predictor *p, const oti_frame *f, const uint8_t *frame, size_t len,
                      uint64_t t0)
{
    ot_status st;

    if (p->waiting) {
        oti_stats_add(&p->stats, ST_IGNORED_WAITING, 1);
        return;
    }
    if (f->new_version <= *base_of(p)) {
        oti_stats_add(&p->stats, ST_IGNORED_STALE, 1);
        return;
    }
    st = oti_delta_apply_params(p->dec, oti_model_params(p->stage), frame, len);
    if (st != OT_OK) {
        /* Nothing changed; the frame's values are lost. */
        oti_stats_add(&p->stats, ST_BAD_FRAMES, 1);
        lost(p);
        return;
    }
    if (dense_touched(p->stage)) {
        ot_model *m;
        if (copy_of_stage(p, &m) != OT_OK) {
            /* Out of memory: undo stage from current and ask for a copy. */
            oti_params_clear_touched(oti_model_params(p->stage));
            copy_arrays(p->stage, p->current);
            oti_stats_add(&p->stats, ST_FETCH_ERRORS, 1);
            lost(p);
            return;
        }
        publish_model(p, m);
    } else {
        write_touched_in_place(p);
    }
    oti_params_clear_touched(oti_model_params(p->stage));
    if (p->building != NULL &&
        (f->new_version > p->building_version ||
         (p->shards != NULL && p->cur_shard != p->building_shard)))
        record_replay(p, frame, len);
    if (f->entries > 0) { /* an empty frame only says nothing changed enough */
        oti_stats_add(&p->stats, ST_RT_UPDATES, 1);
        oti_stats_add(&p->stats, ST_RT_ENTRIES, f->entries);
    }
    if (p->shards != NULL)
        set_shard_version(p, p->cur_shard, f->new_version);
    else if (f->new_version > load_version(p))
        set_version(p, f->new_version);
    set_latency(p, t0);
}

/* The last chunk of a full update arrived: replay the SET frames that came
 * during it, swap it in, bring stage level with it. */
static void finish_build(ot_predictor *p)
{
    ot_model *m = p->building;
    uint64_t v = p->building_version;
    size_t off = 0;

    if (p->replay_overflow) {
        /* Newer SET values would be lost by this swap: drop it and repair. */
        abandon_build(p);
        oti_stats_add(&p->stats, ST_BAD_FRAMES, 1);
        lost(p);
        return;
    }
    while (off < p->replay_len) {
        size_t len;
        uint64_t nv = 0;
        memcpy(&len, p->replay + off, sizeof(size_t));
        off += sizeof(size_t);
        /* These frames were validated against stage, which has m's shape. */
        uint64_t fs = 0;
        if (oti_delta_apply_params(p->dec, oti_model_params(m), p->replay + off, len) == OT_OK &&
            ot_delta_peek(p->replay + off, len, OT_DELTA_FIELD_NEW_VERSION, &nv) == OT_OK &&
            ot_delta_peek(p->replay + off, len, OT_DELTA_FIELD_SHARD, &fs) == OT_OK &&
            nv > v && (p->shards == NULL || fs == p->building_shard))
            v = nv;
        off += len;
    }
    p->building = NULL;
    p->replay_len = 0;
    oti_params_clear_touched(oti_model_params(m));
    publish_model(p, m);
    copy_arrays(p->stage, m);
    oti_stats_add(&p->stats, ST_FULL_UPDATES, 1);
    if (p->shards != NULL) {
        pshard *sh = &p->shards[p->building_shard];
        uint32_t i;
        int pending = 0;
        sh->base_version = p->building_version;
        sh->need_fetch = 0;
        for (i = 0; i < p->num_shards; i++)
            pending |= p->shards[i].need_fetch;
        if (!pending)
            repaired(p);
        set_shard_version(p, p->building_shard, v);
    } else {
        p->base_version = p->building_version;
        repaired(p);
        set_version(p, v);
    }
    set_latency(p, p->building_start_ns);
}

/* One chunk of a full update. */
static void apply_full(ot_predictor *p, const oti_frame *f, const uint8_t *frame, size_t len,
                       uint64_t t0)
{
    ot_status st;

    if (p->shards != NULL && p->building != NULL && p->cur_shard != p->building_shard) {
        /* sharded: another shard's full update is being built; this one is
         * skipped (its real-time updates still apply) */
        oti_stats_add(&p->stats, ST_IGNORED_WAITING, 1);
        return;
    }
    if (f->flags & OTI_FLAG_FIRST) {
        abandon_build(p);
        if (f->new_version < *base_of(p)) {
            oti_stats_add(&p->stats, ST_IGNORED_STALE, 1);
            return;
        }
        if (copy_of_stage(p, &p->building) != OT_OK) {
            p->building = NULL;
            oti_stats_add(&p->stats, ST_FETCH_ERRORS, 1);
            return;
        }
        p->building_version = f->new_version;
        p->building_start_ns = t0;
        p->building_shard = p->cur_shard;
    } else if (p->building == NULL) {
        return; /* joined an update in the middle, or gave it up */
    } else if (f->new_version != p->building_version) {
        abandon_build(p);
        oti_stats_add(&p->stats, ST_BAD_FRAMES, 1);
        return;
    }
    st = oti_delta_apply_params(p->dec, oti_model_params(p->building), frame, len);
    if (st != OT_OK) {
        abandon_build(p);
        oti_stats_add(&p->stats, ST_BAD_FRAMES, 1);
        return;
    }
    if (f->flags & OTI_FLAG_LAST)
        finish_build(p);
}

/* Sharded: fetches the full copy of every shard that lost a frame. */
static ot_status fetch_full_shards(ot_predictor *p)
{
    uint32_t i;

    for (i = 0; i < p->num_shards; i++) {
        pshard *sh = &p->shards[i];
        ot_model *m;
        uint64_t v = 0, bytes = 0, t0 = now_ns();
        ot_status st;
        char err[OTI_ERRMSG_LEN];
        if (!sh->need_fetch)
            continue;
        if ((st = copy_of_stage(p, &m)) != OT_OK)
            return st;
        /* the shard's full copy holds its key range only: the rest of m
         * keeps the other shards' values */
        st = oti_fetch_full_copy(sh->req, p->dec, m, p->cfg, NULL, 0, p->timeout_ms, &v, &bytes,
                                 err);
        oti_stats_add(&p->stats, ST_BYTES_IN, bytes);
        if (st != OT_OK) {
            retire(p, m);
            return st;
        }
        oti_stats_add(&p->stats, ST_FULL_COPIES, 1);
        if (p->building != NULL && p->building_shard == i)
            abandon_build(p);
        publish_model(p, m);
        copy_arrays(p->stage, m);
        sh->base_version = v;
        sh->need_fetch = 0;
        set_shard_version(p, i, v);
        set_latency(p, t0);
    }
    repaired(p);
    return OT_OK;
}

/* Fetches a full copy over request/reply and swaps it in. */
static ot_status fetch_full(ot_predictor *p)
{
    ot_model *m;
    uint64_t v = 0, bytes = 0, t0 = now_ns();
    ot_status st;
    char err[OTI_ERRMSG_LEN];

    if ((st = copy_of_stage(p, &m)) != OT_OK)
        return st;
    st = oti_fetch_full_copy(p->req, p->dec, m, p->cfg, NULL, 0, p->timeout_ms, &v, &bytes, err);
    oti_stats_add(&p->stats, ST_BYTES_IN, bytes);
    if (st != OT_OK) {
        retire(p, m);
        return st;
    }
    oti_stats_add(&p->stats, ST_FULL_COPIES, 1);
    abandon_build(p);
    publish_model(p, m);
    copy_arrays(p->stage, m);
    p->base_version = v;
    p->latest_seen = v;
    repaired(p);
    set_version(p, v);
    set_latency(p, t0);
    return OT_OK;
}

/* Tries the pending fetch when its time has come. */
static void maybe_fetch(ot_predictor *p)
{
    uint64_t t = now_ns();

    if (!p->need_fetch || t < p->next_fetch_ns ||
        __atomic_load_n(&p->stop_flag, __ATOMIC_SEQ_CST))
        return;
    if ((p->shards != NULL ? fetch_full_shards(p) : fetch_full(p)) == OT_OK)
        return;
    oti_stats_add(&p->stats, ST_FETCH_ERRORS, 1);
    if (p->fetch_backoff_ms == 0)
        p->fetch_backoff_ms = p->reconnect_ms;
    else if (p->fetch_backoff_ms < FETCH_BACKOFF_MAX_MS / 2)
        p->fetch_backoff_ms *= 2;
    else
        p->fetch_backoff_ms = FETCH_BACKOFF_MAX_MS;
    p->next_fetch_ns = now_ns() + (uint64_t)p->fetch_backoff_ms * 1000000u;
}

static void handle_frame(ot_predictor *p, const uint8_t *frame, size_t len, uint64_t t0)
{
    oti_frame f;

    if (oti_frame_peek(frame, len, &f, NULL) != OT_OK) {
        oti_stats_add(&p->stats, ST_BAD_FRAMES, 1);
        lost(p);
        return;
    }
    if (f.kind != OTI_KIND_SET && f.kind != OTI_KIND_FULL) {
        oti_stats_add(&p->stats, ST_BAD_FRAMES, 1);
        return;
    }
    if (p->shards != NULL) {
        pshard *sh;
        if (f.shard >= p->num_shards) {
            oti_stats_add(&p->stats, ST_BAD_FRAMES, 1);
            return;
        }
        p->cur_shard = f.shard;
        sh = &p->shards[f.shard];
        /* each shard numbers its frames: a gap is per shard */
        if (!sh->have_seq) {
            if (f.new_version > sh->base_version &&
                !(f.kind == OTI_KIND_FULL && (f.flags & OTI_FLAG_FIRST)))
                lost(p);
        } else if (f.sequence != sh->last_seq + 1) {
            oti_stats_add(&p->stats, ST_GAPS, 1);
            if (p->building != NULL && p->building_shard == f.shard)
                abandon_build(p);
            if (!(f.kind == OTI_KIND_FULL && (f.flags & OTI_FLAG_FIRST)))
                lost(p);
        }
        sh->last_seq = f.sequence;
        sh->have_seq = 1;
        maybe_fetch(p);
        if (f.kind == OTI_KIND_SET)
            apply_set(p, &f, frame, len, t0);
        else
            apply_full(p, &f, frame, len, t0);
        p->cur_shard = UINT32_MAX;
        return;
    }
    if (!p->have_seq) {
        /* The first frame since subscribing.  Frames published before it
         * may have been missed while the subscription was being set up
         * (pub/sub's slow joiner); those carry versions up to this one's, so
         * they matter only when this one is newer than the copy loaded. */
        if (f.new_version > p->base_version &&
            !(f.kind == OTI_KIND_FULL && (f.flags & OTI_FLAG_FIRST)))
            lost(p);
    } else if (f.sequence != p->last_seq + 1) {
        oti_stats_add(&p->stats, ST_GAPS, 1);
        abandon_build(p);
        if (f.kind == OTI_KIND_FULL && (f.flags & OTI_FLAG_FIRST)) {
            /* The full update starting now repairs the gap. */
            p->resync_pending = 1;
            p->waiting = p->gap_wait;
        } else {
            lost(p);
        }
    }
    p->last_seq = f.sequence;
    p->have_seq = 1;
    if (f.new_version > p->latest_seen)
        p->latest_seen = f.new_version;
    maybe_fetch(p);
    if (f.kind == OTI_KIND_SET)
        apply_set(p, &f, frame, len, t0);
    else
        apply_full(p, &f, frame, len, t0);
    update_staleness(p);
}

static void handle_message(ot_predictor *p, const uint8_t *msg, size_t len)
{
    uint64_t t0 = now_ns();
    size_t off = 0;
    const uint8_t *frame;
    size_t flen;
    ot_status st;

    oti_stats_add(&p->stats, ST_BYTES_IN, len);
    while ((st = oti_frame_next(msg, len, &off, &frame, &flen)) == OT_OK)
        handle_frame(p, frame, flen, t0);
    if (st != OT_EEOF) {
        oti_stats_add(&p->stats, ST_BAD_FRAMES, 1);
        lost(p);
    }
}

static void *update_thread(void *arg)
{
    ot_predictor *p = arg;

    while (!__atomic_load_n(&p->stop_flag, __ATOMIC_SEQ_CST)) {
        ot_buf *msg = NULL;
        ot_status st = oti_sock_recv(p->sub, RECV_POLL_MS, &msg, NULL);
        if (st == OT_OK) {
            handle_message(p, ot_buf_data(msg), ot_buf_size(msg));
            ot_buf_release(msg);
        } else if (st == OT_ECLOSED) {
            break;
        } else if (st != OT_ETIMEDOUT) {
            sleep_ns(1000000L); /* OT_ENOMEM and the like: do not spin */
        }
        maybe_fetch(p);
    }
    pthread_mutex_lock(&p->vmu);
    p->thread_done = 1;
    pthread_cond_broadcast(&p->vcv);
    pthread_mutex_unlock(&p->vmu);
    return NULL;
}

/* ---- public API --------------------------------------------------------------- */

ot_status ot_predictor_create(const ot_config *cfg, ot_predictor **out)
{
    oti_alloc a = oti_cfg_alloc(cfg);
    ot_predictor *p;
    oti_shape sh;
    uint64_t total;
    size_t nblocks;
    pthread_condattr_t ca;
    int cv_ok = 0;
    ot_status st;

    if (out == NULL)
        return OT_EINVAL;
    oti_shape_from_config(cfg, &sh);
    if (oti_shape_total(&sh, &total, &nblocks) != OT_OK)
        return OT_EINVAL;
    p = oti_calloc(&a, 1, sizeof(*p));
    if (p == NULL)
        return OT_ENOMEM;
    p->alloc = a;
    if (cfg != NULL)
        st = ot_config_clone(cfg, &p->cfg);
    else
        st = ot_config_create(&p->cfg);
    if (st != OT_OK) {
        oti_free(&a, p, sizeof(*p));
        return st;
    }
    p->gap_wait = oti_cfg_choice(p->cfg, OT_OPT_GAP_POLICY) == 1;
    p->timeout_ms = (int32_t)oti_cfg_i64(p->cfg, OT_OPT_TIMEOUT_MS);
    p->reconnect_ms = (int32_t)oti_cfg_i64(p->cfg, OT_OPT_RECONNECT_MS);
    p->recv_max = (size_t)oti_cfg_i64(p->cfg, OT_OPT_RECV_MAX_BYTES);
    p->shard = (uint32_t)oti_cfg_i64(p->cfg, OT_OPT_SHARD_ID);
    p->num_shards = (uint32_t)oti_cfg_i64(p->cfg, OT_OPT_NUM_SHARDS);
    if ((st = oti_stats_init(&p->stats, &a, stat_defs, ST_COUNT)) != OT_OK) {
        ot_config_destroy(p->cfg);
        oti_free(&a, p, sizeof(*p));
        return st;
    }
    if (pthread_condattr_init(&ca) == 0) {
        cv_ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                pthread_cond_init(&p->vcv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!cv_ok) {
        oti_stats_fini(&p->stats, &a);
        ot_config_destroy(p->cfg);
        oti_free(&a, p, sizeof(*p));
        return OT_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->vmu, NULL);
    pthread_mutex_init(&p->apply_mu, NULL);
    p->state = PS_CREATED;
    *out = p;
    return OT_OK;
}

/* Frees what a subscribe set up (sockets, decoder, models). */
static void teardown(ot_predictor *p)
{
    if (p->shards != NULL) {
        uint32_t i;
        for (i = 0; i < p->num_shards; i++)
            oti_sock_destroy(p->shards[i].req);
        oti_free(&p->alloc, p->shards, p->num_shards * sizeof(*p->shards));
        p->shards = NULL;
    }
    oti_sock_destroy(p->sub);
    oti_sock_destroy(p->req);
    p->sub = p->req = NULL;
    ot_delta_decoder_destroy(p->dec);
    p->dec = NULL;
    ot_model_destroy(p->building);
    ot_model_destroy(p->spare);
    ot_model_destroy(p->stage);
    p->building = p->spare = p->stage = NULL;
    oti_free(&p->alloc, p->replay, p->replay_cap);
    p->replay = NULL;
    p->replay_len = p->replay_cap = 0;
}

/*
 * The end of a subscribe: m, loaded from the full copies, becomes the
 * served model at version v (through the grace period: a model loaded by
 * ot_predictor_load() may be in use by readers, it is retired as the spare),
 * with a staging copy for the update thread, which is started.  On failure
 * m is destroyed and the subscription torn down.
 */
static ot_status start_serving(ot_predictor *p, ot_model *m, uint64_t v)
{
    ot_status st;

    oti_params_clear_touched(oti_model_params(m));
    if ((st = ot_model_clone(m, &p->stage)) != OT_OK) {
        oti_err(p->errmsg, st, "out of memory");
        goto fail;
    }
    publish_model(p, m);
    m = NULL;
    set_version(p, v);
    __atomic_store_n(&p->stop_flag, 0, __ATOMIC_SEQ_CST);
    p->thread_done = 0;
    if (pthread_create(&p->thread, NULL, update_thread, p) != 0) {
        st = oti_err(p->errmsg, OT_ENOMEM, "cannot start the update thread");
        m = __atomic_exchange_n(&p->current, NULL, __ATOMIC_SEQ_CST);
        goto fail;
    }
    p->thread_started = 1;
    p->errmsg[0] = '\0';
    return OT_OK;

fail:
    ot_model_destroy(m);
    teardown(p);
    return st;
}

static ot_status subscribe_locked(ot_predictor *p, const char *pub_url, const char *req_url)
{
    oti_tp_opts o;
    oti_ctl ack;
    ot_model *m = NULL;
    uint64_t v = 0, bytes = 0, fp, deadline;
    ot_status st;
    uint8_t key[OTI_HMAC_KEY_MAX];

    if ((st = ot_model_create(p->cfg, &m)) != OT_OK)
        return oti_err(p->errmsg, st, "cannot create the model: %s", ot_config_errmsg(p->cfg));
    fp = ot_model_fingerprint(m);
    if ((st = ot_delta_decoder_create(p->cfg, &p->dec)) != OT_OK) {
        ot_model_destroy(m);
        return oti_err(p->errmsg, st, "cannot create the decoder");
    }

    oti_tp_opts_init(&o);
    o.alloc = p->alloc;
    o.recv_max = p->recv_max;
    o.send_timeout_ms = p->timeout_ms;
    o.recv_timeout_ms = p->timeout_ms;
    o.reconnect_min_ms = p->reconnect_ms;
    if ((st = oti_role_security(p->cfg, &o, key, p->errmsg)) != OT_OK ||
        (st = oti_sock_create(OTI_SOCK_SUB, &o, &p->sub, p->errmsg)) != OT_OK ||
        (st = oti_sock_dial(p->sub, pub_url, 0, p->errmsg)) != OT_OK ||
        (st = oti_sock_create(OTI_SOCK_REQ, &o, &p->req, p->errmsg)) != OT_OK ||
        (st = oti_sock_dial(p->req, req_url, 0, p->errmsg)) != OT_OK) {
        oti_wipe(key, sizeof(key));
        goto fail;
    }
    oti_wipe(key, sizeof(key)); /* the sockets keep their own copies */
    st = oti_hello(p->req, fp, 0, p->shard, p->num_shards, p->timeout_ms, &ack, p->errmsg);
    if (st != OT_OK)
        goto fail;
    if ((st = ot_delta_decoder_set_shard(p->dec, ack.shard, ack.lo, ack.hi)) != OT_OK) {
        oti_err(p->errmsg, st, "the server announced a bad key range");
        goto fail;
    }
    /* Be connected to the publisher before loading the copy, so that every
     * frame published after the copy was made reaches this predictor.  A
     * publisher that is not up in time is redialed in the background. */
    deadline = now_ns() + (uint64_t)p->timeout_ms * 1000000u;
    while (oti_sock_peers(p->sub) < 1 && now_ns() < deadline)
        sleep_ns(1000000L);
    st = oti_fetch_full_copy(p->req, p->dec, m, p->cfg, NULL, 0, p->timeout_ms, &v, &bytes,
                             p->errmsg);
    if (st != OT_OK)
        goto fail;
    oti_stats_add(&p->stats, ST_FULL_COPIES, 1);
    oti_stats_add(&p->stats, ST_BYTES_IN, bytes);
    p->base_version = v;
    p->latest_seen = v;
    return start_serving(p, m, v);

fail:
    ot_model_destroy(m);
    teardown(p);
    return st;
}

/*
 * Sharded: one SUB socket dialing every shard's predictor URL, one REQ
 * socket per shard; HELLO to each (it must be shard i of num_shards, with
 * the key range oti_shard_range gives), then each shard's full copy (its key
 * range) into one model.
 */
static ot_status subscribe_shards_locked(ot_predictor *p, const char *const *pub_urls,
                                         const char *const *req_urls)
{
    oti_tp_opts o;
    ot_model *m = NULL;
    uint64_t fp, deadline, sum = 0;
    uint32_t i, n = p->num_shards;
    ot_status st;
    uint8_t key[OTI_HMAC_KEY_MAX];

    if ((st = ot_model_create(p->cfg, &m)) != OT_OK)
        return oti_err(p->errmsg, st, "cannot create the model: %s", ot_config_errmsg(p->cfg));
    fp = ot_model_fingerprint(m);
    p->shards = oti_calloc(&p->alloc, n, sizeof(*p->shards));
    if (p->shards == NULL) {
        st = oti_err(p->errmsg, OT_ENOMEM, "out of memory");
        goto fail;
    }
    if ((st = ot_delta_decoder_create(p->cfg, &p->dec)) != OT_OK) {
        oti_err(p->errmsg, st, "cannot create the decoder");
        goto fail;
    }
    oti_tp_opts_init(&o);
    o.alloc = p->alloc;
    o.recv_max = p->recv_max;
    o.send_timeout_ms = p->timeout_ms;
    o.recv_timeout_ms = p->timeout_ms;
    o.reconnect_min_ms = p->reconnect_ms;
    if ((st = oti_role_security(p->cfg, &o, key, p->errmsg)) != OT_OK)
        goto fail;
    st = oti_sock_create(OTI_SOCK_SUB, &o, &p->sub, p->errmsg);
    for (i = 0; i < n && st == OT_OK; i++) {
        if ((st = oti_sock_dial(p->sub, pub_urls[i], 0, p->errmsg)) == OT_OK &&
            (st = oti_sock_create(OTI_SOCK_REQ, &o, &p->shards[i].req, p->errmsg)) == OT_OK)
            st = oti_sock_dial(p->shards[i].req, req_urls[i], 0, p->errmsg);
    }
    oti_wipe(key, sizeof(key));
    if (st != OT_OK)
        goto fail;
    for (i = 0; i < n; i++) {
        oti_ctl ack;
        uint64_t lo = 0, hi = 0;
        st = oti_hello(p->shards[i].req, fp, 0, i, n, p->timeout_ms, &ack, p->errmsg);
        if (st != OT_OK)
            goto fail;
        if (oti_shard_range(oti_model_params_c(m), i, n, &lo, &hi) != OT_OK || ack.shard != i ||
            ack.num_shards != n || ack.lo != lo || ack.hi != hi) {
            st = oti_err(p->errmsg, OT_EMISMATCH,
                         "shard layout mismatch: expected shard %u of %u with keys [%llu, %llu), "
                         "the server at %s is shard %u of %u with keys [%llu, %llu)",
                         (unsigned)i, (unsigned)n, (unsigned long long)lo, (unsigned long long)hi,
                         req_urls[i], (unsigned)ack.shard, (unsigned)ack.num_shards,
                         (unsigned long long)ack.lo, (unsigned long long)ack.hi);
            goto fail;
        }
    }
    deadline = now_ns() + (uint64_t)p->timeout_ms * 1000000u;
    while (oti_sock_peers(p->sub) < (int)n && now_ns() < deadline)
        sleep_ns(1000000L);
    for (i = 0; i < n; i++) {
        uint64_t v = 0, bytes = 0;
        st = oti_fetch_full_copy(p->shards[i].req, p->dec, m, p->cfg, NULL, 0, p->timeout_ms, &v,
                                 &bytes, p->errmsg);
        if (st != OT_OK)
            goto fail;
        p->shards[i].base_version = v;
        p->shards[i].version = v;
        sum += v;
        oti_stats_add(&p->stats, ST_FULL_COPIES, 1);
        oti_stats_add(&p->stats, ST_BYTES_IN, bytes);
    }
    p->cur_shard = UINT32_MAX;
    return start_serving(p, m, sum);

fail:
    ot_model_destroy(m);
    teardown(p);
    return st;
}

ot_status ot_predictor_subscribe_shards(ot_predictor *p, const char *const *pub_urls,
                                        const char *const *req_urls, size_t n)
{
    ot_status st;
    size_t i;

    if (p == NULL)
        return OT_EINVAL;
    if (pub_urls == NULL || req_urls == NULL || n == 0)
        return oti_err(p->errmsg, OT_EINVAL, "no URLs");
    for (i = 0; i < n; i++)
        if (pub_urls[i] == NULL || req_urls[i] == NULL)
            return oti_err(p->errmsg, OT_EINVAL, "NULL URL");
    if (n != p->num_shards)
        return oti_err(p->errmsg, OT_EINVAL, "%zu shards given, num_shards is %u", n,
                       (unsigned)p->num_shards);
    if (n == 1)
        return ot_predictor_subscribe(p, pub_urls[0], req_urls[0]);
    pthread_mutex_lock(&p->mu);
    if (p->state != PS_CREATED) {
        st = oti_err(p->errmsg, OT_ESTATE, "already subscribed");
    } else {
        st = subscribe_shards_locked(p, pub_urls, req_urls);
        if (st == OT_OK)
            p->state = PS_RUNNING;
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

ot_status ot_predictor_subscribe(ot_predictor *p, const char *pub_url, const char *req_url)
{
    ot_status st;

    if (p == NULL)
        return OT_EINVAL;
    pthread_mutex_lock(&p->mu);
    if (pub_url == NULL || req_url == NULL) {
        st = oti_err(p->errmsg, OT_EINVAL, "NULL URL");
    } else if (p->state != PS_CREATED) {
        st = oti_err(p->errmsg, OT_ESTATE, "already subscribed");
    } else if (p->num_shards > 1) {
        st = oti_err(p->errmsg, OT_EINVAL,
                     "num_shards is %u: use ot_predictor_subscribe_shards()",
                     (unsigned)p->num_shards);
    } else {
        st = subscribe_locked(p, pub_url, req_url);
        if (st == OT_OK)
            p->state = PS_RUNNING;
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

ot_status ot_predictor_predict(ot_predictor *p, const ot_example *ex, float *out)
{
    ot_model *m;
    rslot *s;
    unsigned e;
    ot_status st;

    if (p == NULL || ex == NULL || out == NULL)
        return OT_EINVAL;
    e = read_enter(p, &s);
    m = read_current(p);
    st = m != NULL ? ot_model_predict(m, ex, out) : OT_ESTATE;
    read_exit(s, e);
    if (st == OT_OK)
        oti_stats_add(&p->stats, ST_PREDICTIONS, 1);
    return st;
}

ot_status ot_predictor_predict_batch(ot_predictor *p, const ot_example *const *ex, size_t n,
                                     float *out)
{
    ot_model *m;
    rslot *s;
    unsigned e;
    ot_status st;

    if (p == NULL || ((ex == NULL || out == NULL) && n > 0))
        return OT_EINVAL;
    e = read_enter(p, &s);
    m = read_current(p);
    st = m != NULL ? ot_model_predict_batch(m, ex, n, out) : OT_ESTATE;
    read_exit(s, e);
    if (st == OT_OK)
        oti_stats_add(&p->stats, ST_PREDICTIONS, n);
    return st;
}

uint64_t ot_predictor_version(const ot_predictor *p)
{
    return p != NULL ? load_version(p) : 0;
}

ot_status ot_predictor_wait_version(ot_predictor *p, uint64_t version, int32_t timeout_ms)
{
    struct timespec dl;
    ot_status st = OT_OK;

    if (p == NULL || timeout_ms < 0)
        return OT_EINVAL;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->vmu);
    while (load_version(p) < version) {
        if (pthread_cond_timedwait(&p->vcv, &p->vmu, &dl) != 0 && load_version(p) < version) {
            st = OT_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&p->vmu);
    return st;
}

ot_status ot_predictor_copy_model(ot_predictor *p, ot_model **out)
{
    ot_model *m;
    rslot *s;
    unsigned e;
    ot_status st;

    if (p == NULL || out == NULL)
        return OT_EINVAL;
    pthread_mutex_lock(&p->apply_mu);
    e = read_enter(p, &s);
    m = read_current(p);
    st = m != NULL ? ot_model_clone(m, out) : OT_ESTATE;
    read_exit(s, e);
    pthread_mutex_unlock(&p->apply_mu);
    if (st == OT_OK)
        oti_params_clear_touched(oti_model_params(*out));
    return st;
}

ot_status ot_predictor_stat(const ot_predictor *p, const char *name, double *value)
{
    if (p == NULL)
        return OT_EINVAL;
    return oti_stats_lookup(&p->stats, name, value);
}

const char *ot_predictor_stat_name(const ot_predictor *p, size_t i)
{
    return p != NULL ? oti_stats_name(&p->stats, i) : NULL;
}

const char *ot_predictor_errmsg(const ot_predictor *p)
{
    return p != NULL ? p->errmsg : "";
}

ot_status ot_predictor_serve_metrics(ot_predictor *p, const char *url)
{
    if (p == NULL)
        return OT_EINVAL;
    return oti_metrics_serve(&p->stats, &p->alloc, "predictor", url, p->errmsg);
}

ot_status ot_predictor_stop(ot_predictor *p)
{
    if (p == NULL)
        return OT_EINVAL;
    pthread_mutex_lock(&p->mu);
    if (p->state == PS_RUNNING) {
        __atomic_store_n(&p->stop_flag, 1, __ATOMIC_SEQ_CST);
        /* The update thread sees the flag within RECV_POLL_MS, unless it is
         * fetching a full copy; then closing the request socket ends the
         * fetch.  Sockets are not closed under a receive in flight: nng
         * 1.5.2 can panic when a socket is closed while another thread's
         * receive on it is timing out. */
        if (p->thread_started) {
            struct timespec dl;
            int done;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            dl.tv_nsec += STOP_GRACE_MS * 1000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            pthread_mutex_lock(&p->vmu);
            while (!p->thread_done && pthread_cond_timedwait(&p->vcv, &p->vmu, &dl) == 0)
                ;
            done = p->thread_done;
            pthread_mutex_unlock(&p->vmu);
            if (!done) {
                oti_sock_stop(p->req);
                if (p->shards != NULL) {
                    uint32_t i;
                    for (i = 0; i < p->num_shards; i++)
                        oti_sock_stop(p->shards[i].req);
                }
            }
            pthread_join(p->thread, NULL);
            p->thread_started = 0;
        }
        /* Serving goes on from `current`; the rest is no longer needed. */
        teardown(p);
        p->state = PS_STOPPED;
    } else if (p->state == PS_CREATED) {
        p->state = PS_STOPPED;
    }
    pthread_mutex_unlock(&p->mu);
    return OT_OK;
}

void ot_predictor_destroy(ot_predictor *p)
{
    oti_alloc a;

    if (p == NULL)
        return;
    ot_predictor_stop(p);
    a = p->alloc;
    ot_model_destroy(__atomic_load_n(&p->current, __ATOMIC_SEQ_CST));
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->vmu);
    pthread_mutex_destroy(&p->apply_mu);
    pthread_cond_destroy(&p->vcv);
    oti_stats_fini(&p->stats, &a);
    ot_config_destroy(p->cfg);
    oti_free(&a, p, sizeof(*p));
}

ot_status ot_predictor_save(ot_predictor *p, const char *path)
{
    ot_model *m = NULL;
    ot_status st;

    if (p == NULL || path == NULL)
        return OT_EINVAL;
    if ((st = ot_predictor_copy_model(p, &m)) != OT_OK) {
        pthread_mutex_lock(&p->mu);
        oti_err(p->errmsg, st, st == OT_ESTATE ? "no model loaded yet" : "cannot copy the model");
        pthread_mutex_unlock(&p->mu);
        return st;
    }
    st = ot_model_save(m, path, OT_SAVE_WEIGHTS_AND_STATE);
    if (st != OT_OK) {
        pthread_mutex_lock(&p->mu);
        oti_err(p->errmsg, st, "%s", ot_model_errmsg(m));
        pthread_mutex_unlock(&p->mu);
    }
    ot_model_destroy(m);
    return st;
}

ot_status ot_predictor_load(ot_predictor *p, const char *path)
{
    ot_model *m = NULL, *shape = NULL;
    ot_status st;

    if (p == NULL || path == NULL)
        return OT_EINVAL;
    pthread_mutex_lock(&p->mu);
    if (p->state != PS_CREATED) {
        st = oti_err(p->errmsg, OT_ESTATE, "load before subscribing");
    } else if ((st = ot_model_load(p->cfg, path, &m)) != OT_OK) {
        oti_err(p->errmsg, st, "cannot load %s", path);
    } else if ((st = ot_model_create(p->cfg, &shape)) != OT_OK) {
        oti_err(p->errmsg, st, "cannot create the model: %s", ot_config_errmsg(p->cfg));
    } else if (ot_model_fingerprint(m) != ot_model_fingerprint(shape)) {
        st = oti_err(p->errmsg, OT_EMISMATCH,
                     "%s holds a model of another shape than this predictor's", path);
    } else {
        ot_model *old;
        oti_params_clear_touched(oti_model_params(m));
        old = __atomic_exchange_n(&p->current, m, __ATOMIC_SEQ_CST);
        m = NULL;
        /* Not subscribed: no update thread, and readers may hold old only
         * through the grace period.  Wait for them, as publish_model does. */
        if (old != NULL) {
            unsigned e = __atomic_load_n(&p->epoch, __ATOMIC_SEQ_CST);
            __atomic_store_n(&p->epoch, e ^ 1u, __ATOMIC_SEQ_CST);
            wait_readers(p, e);
            ot_model_destroy(old);
        }
        p->errmsg[0] = '\0';
    }
    pthread_mutex_unlock(&p->mu);
    ot_model_destroy(shape);
    ot_model_destroy(m);
    return st;
}

ot_status oti_predictor_set_test_hook(ot_predictor *p, uint32_t drop_every, uint32_t delay_ms)
{
    ot_status st = OT_OK;

    if (p == NULL)
        return OT_EINVAL;
    pthread_mutex_lock(&p->mu);
    if (p->state != PS_RUNNING || p->sub == NULL)
        st = OT_ESTATE;
    else
        oti_sock_set_test_hook(p->sub, drop_every, delay_ms);
    pthread_mutex_unlock(&p->mu);
    return st;
}
