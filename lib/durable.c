/*
 * durable.c - what a parameter server does to lose nothing (docs/durability.md):
 * restore at create (newest checkpoint that loads, then the write-ahead log
 * after it), logging each applied ADD frame before its reply, checkpoints
 * with retention, the background thread (interval syncs and periodic
 * checkpoints), the max_delta_entries limit, the stats, and the test hooks
 * that simulate a crash.
 *
 * Files in checkpoint_dir:
 *   checkpoint-<version, 20 digits>.otc   a checkpoint (checkpoint.c)
 *   wal-<start version, 20 digits>.otw    a log segment (wal.c): records of
 *                                         versions above its start
 * A checkpoint at version V starts segment wal-V (under the master lock, so
 * every record of a version <= V is in an older segment), then writes
 * checkpoint-V.  Once it is complete the newest two checkpoints are kept,
 * V and the one before it, P; segments starting below P are deleted, so a
 * corrupt V can be replaced by P plus the log after P.
 *
 * Locks: ckpt_mu (one checkpoint at a time) is taken before any of the
 * server's locks; thr_mu guards the thread's stop flag; hold_mu the crash
 * simulation.  None is held while a server lock is being waited for except
 * ckpt_mu.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "durable.h"
#include "model.h"

#define PATH_CAP 4200 /* checkpoint_dir is at most 4095 bytes (config.c) */
#define NAME_DIGITS 20
#define BROKEN_RETRY_MS 1000 /* how often a broken log makes the thread try a checkpoint */

struct oti_dur {
    oti_alloc alloc;
    oti_dur_hooks h;
    oti_stats *stats;
    size_t base;
    uint64_t max_entries;
    size_t max_record;
    uint32_t shard;
    uint64_t fingerprint;

    /* durability: dir != NULL */
    char *dir;
    size_t dir_size;
    int wal_on, policy;
    int64_t sync_ms, ckpt_ms;
    ot_model *scratch;
    oti_wal *wal;
    pthread_mutex_t ckpt_mu;
    oti_ckpt_state cs;     /* under ckpt_mu */
    uint64_t last_ckpt;    /* under ckpt_mu */
    int have_ckpt;         /* under ckpt_mu */

    /* background thread */
    pthread_mutex_t thr_mu;
    pthread_cond_t thr_cv;
    pthread_t thr;
    int thr_running, thr_stop;

    /* crash simulation */
    pthread_mutex_t hold_mu;
    pthread_cond_t hold_cv;
    int crashed; /* atomic */
    int fail_ckpt; /* atomic: test hook, the next checkpoint write fails */
    int closing; /* under hold_mu */
    oti_crash_fn crash_fn;
    void *crash_arg;
};

/* ---- small helpers ----------------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void count(oti_dur *d, size_t i, uint64_t n)
{
    if (d->stats != NULL)
        oti_stats_add(d->stats, d->base + i, n);
}

static void gauge(oti_dur *d, size_t i, double v)
{
    if (d->stats != NULL)
        oti_stats_set(d->stats, d->base + i, v);
}

/* A counter raised to v (never lowered), safe against concurrent raisers. */
static void counter_max(oti_dur *d, size_t i, uint64_t v)
{
    uint64_t *p, cur;

    if (d->stats == NULL)
        return;
    p = &d->stats->v[d->base + i];
    cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED))
        ;
}

static int is_crashed(const oti_dur *d)
{
    return __atomic_load_n(&d->crashed, __ATOMIC_ACQUIRE);
}

/* Appends a note to err ("; " between notes), keeping what fits. */
static void note(char *err, const char *fmt, ...) OTI_PRINTF(2, 3);
static void note(char *err, const char *fmt, ...)
{
    size_t n = strnlen(err, OTI_ERRMSG_LEN - 1);
    va_list ap;

    if (n > 0 && n + 2 < OTI_ERRMSG_LEN) {
        memcpy(err + n, "; ", 3);
        n += 2;
    }
    va_start(ap, fmt);
    vsnprintf(err + n, OTI_ERRMSG_LEN - n, fmt, ap);
    va_end(ap);
}

static void ckpt_path(const oti_dur *d, uint64_t v, char *out)
{
    snprintf(out, PATH_CAP, "%s/checkpoint-%020llu.otc", d->dir, (unsigned long long)v);
}

static void wal_path(const oti_dur *d, uint64_t v, char *out)
{
    snprintf(out, PATH_CAP, "%s/wal-%020llu.otw", d->dir, (unsigned long long)v);
}

/* Parses "<prefix><20 digits><suffix>" exactly; 0 and *v, or -1. */
static int parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *v)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), i;
    uint64_t x = 0;

    if (strlen(name) != pl + NAME_DIGITS + sl || strncmp(name, prefix, pl) != 0 ||
        strcmp(name + pl + NAME_DIGITS, suffix) != 0)
        return -1;
    for (i = 0; i < NAME_DIGITS; i++) {
        char c = name[pl + i];
        if (c < '0' || c > '9')
            return -1;
        if (x > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
            return -1;
        x = x * 10 + (uint64_t)(c - '0');
    }
    *v = x;
    return 0;
}

typedef struct vlist {
    uint64_t *v;
    size_t n, cap;
} vlist;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Lists the checkpoints and segments of the directory, ascending; with
 * clean_tmp, removes leftovers of interrupted checkpoint writes. */
static ot_status list_dir(oti_dur *d, vlist *ck, vlist *wl, int clean_tmp, char *err)
{
    DIR *dp = opendir(d->dir);
    struct dirent *e;
    ot_status st = OT_OK;

    if (dp == NULL)
        return oti_err(err, errno == ENOENT ? OT_ENOENT : OT_EIO, "cannot open %s: %s", d->dir,
                       strerror(errno));
    while ((e = readdir(dp)) != NULL) {
        uint64_t v;
        vlist *l = NULL;
        if (parse_name(e->d_name, "checkpoint-", ".otc", &v) == 0) {
            l = ck;
        } else if (parse_name(e->d_name, "wal-", ".otw", &v) == 0) {
            l = wl;
        } else if (clean_tmp && parse_name(e->d_name, "checkpoint-", ".otc.tmp", &v) == 0) {
            char path[PATH_CAP];
            snprintf(path, sizeof(path), "%s/%s", d->dir, e->d_name);
            unlink(path);
        }
        if (l == NULL)
            continue;
        if (oti_grow(&d->alloc, (void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v)) != 0) {
            st = oti_err(err, OT_ENOMEM, "out of memory listing %s", d->dir);
            break;
        }
        l->v[l->n++] = v;
    }
    closedir(dp);
    if (st == OT_OK) {
        if (ck->n > 1)
            qsort(ck->v, ck->n, sizeof(*ck->v), cmp_u64);
        if (wl->n > 1)
            qsort(wl->v, wl->n, sizeof(*wl->v), cmp_u64);
    }
    return st;
}

static void vlist_free(oti_dur *d, vlist *l)
{
    oti_free(&d->alloc, l->v, l->cap * sizeof(*l->v));
    l->v = NULL;
    l->n = l->cap = 0;
}

/* Copies every array of src into dst (same shape). */
static void copy_arrays(ot_model *dst, const ot_model *src)
{
    oti_params *dp = oti_model_params(dst);
    const oti_params *sp = oti_model_params_c(src);
    size_t b;
    int k;

    for (b = 0; b < sp->nblocks; b++) {
        size_t n = (size_t)(sp->blocks[b].rows * sp->blocks[b].cols) * sizeof(float);
        memcpy(dp->blocks[b].w, sp->blocks[b].w, n);
        for (k = 0; k < sp->blocks[b].nstate; k++)
            memcpy(dp->blocks[b].s[k], sp->blocks[b].s[k], n);
    }
}

/* ---- restore --------------------------------------------------------------------------- */

typedef struct replay_ctx {
    oti_dur *d;
    uint64_t version;  /* the master's version so far */
    uint64_t applied;
    uint64_t seg_last; /* the current segment's last record version (0: none yet) */
} replay_ctx;

static ot_status replay_one(void *arg, const oti_wal_rec *r, char *err)
{
    replay_ctx *c = arg;
    ot_status st;

    c->seg_last = r->version;
    if (r->version <= c->version)
        return OT_OK; /* already in the checkpoint */
    if (r->version != c->version + 1)
        return oti_err(err, OT_ECORRUPT,
                       "the log jumps from version %llu to %llu: records are missing",
                       (unsigned long long)c->version, (unsigned long long)r->version);
    st = c->d->h.replay(c->d->h.arg, r, err);
    if (st == OT_EREPLAY)
        return oti_err(err, OT_ECORRUPT,
                       "the log holds trainer %u sequence %llu at version %llu, "
                       "but the checkpoint says it was applied before",
                       r->sender, (unsigned long long)r->sequence, (unsigned long long)r->version);
    if (st != OT_OK)
        return st;
    c->version = r->version;
    c->applied++;
    return OT_OK;
}

/* Loads the newest checkpoint that reads; *loaded says whether one did. */
static ot_status load_checkpoint(oti_dur *d, ot_model *master, const vlist *ck, int *loaded,
                                 char *err)
{
    char path[PATH_CAP], why[OTI_ERRMSG_LEN];
    size_t i;

    *loaded = 0;
    for (i = ck->n; i-- > 0;) {
        FILE *fp;
        oti_src src;
        ot_status st;

        ckpt_path(d, ck->v[i], path);
        fp = fopen(path, "rb");
        if (fp == NULL)
            return oti_err(err, OT_EIO, "cannot open %s: %s", path, strerror(errno));
        why[0] = '\0';
        d->cs.shard = d->shard;
        st = oti_src_file(&src, fp);
        if (st == OT_OK)
            st = oti_ckpt_read(&d->alloc, &src, d->scratch, &d->cs, why);
        else
            oti_err(why, st, "cannot read the size of %s", path);
        fclose(fp);
        if (st == OT_OK) {
            copy_arrays(master, d->scratch);
            d->last_ckpt = d->cs.version;
            d->have_ckpt = 1;
            *loaded = 1;
            return OT_OK;
        }
        if (st == OT_EMISMATCH || st == OT_EVERSION || st == OT_ENOMEM || st == OT_EIO)
            return oti_err(err, st, "%s: %s", path, why);
        /* Corrupt: set it aside (kept for inspection) and try the one before. */
        count(d, OTI_DS_CHECKPOINT_FALLBACKS, 1);
        note(err, "%s is corrupt (%s), set aside as .corrupt", path, why);
        {
            char bad[PATH_CAP + 8];
            snprintf(bad, sizeof(bad), "%s.corrupt", path);
            rename(path, bad);
        }
    }
    return OT_OK;
}

static ot_status restore(oti_dur *d, ot_model *master, char *err)
{
    vlist ck = {NULL, 0, 0}, wl = {NULL, 0, 0};
    replay_ctx rc;
    char path[PATH_CAP];
    uint64_t last_end_version = 0, last_good_end = 0;
    int loaded = 0, have_last = 0;
    ot_status st;
    size_t i;

    if ((st = list_dir(d, &ck, &wl, 1, err)) != OT_OK)
        goto out;
    if ((st = load_checkpoint(d, master, &ck, &loaded, err)) != OT_OK)
        goto out;
    if (!loaded) {
        d->cs.version = 0;
        d->cs.published_version = 0;
        d->cs.ntrainers = 0;
        if (ck.n > 0 && !(wl.n > 0 && wl.v[0] == 0)) {
            st = oti_err(err, OT_ECORRUPT,
                         "no checkpoint in %s can be loaded and the log does not reach back to "
                         "version 0", d->dir);
            goto out;
        }
    }
    if ((st = d->h.restored(d->h.arg, &d->cs, err)) != OT_OK)
        goto out;

    rc.d = d;
    rc.version = d->cs.version;
    rc.applied = 0;
    for (i = 0; i < wl.n; i++) {
        oti_wal_scaninfo scan;
        oti_src src;
        FILE *fp;
        int last = i + 1 == wl.n;

        wal_path(d, wl.v[i], path);
        fp = fopen(path, "rb");
        if (fp == NULL) {
            st = oti_err(err, OT_EIO, "cannot open %s: %s", path, strerror(errno));
            goto out;
        }
        st = oti_src_file(&src, fp);
        rc.seg_last = 0;
        if (st == OT_OK)
            st = oti_wal_scan(&d->alloc, &src, d->fingerprint, d->shard, d->max_record,
                              replay_one, &rc, &scan, err);
        else
            oti_err(err, st, "cannot read the size of %s", path);
        fclose(fp);
        if (st != OT_OK) {
            if (strstr(err, path) == NULL) {
                char why[OTI_ERRMSG_LEN];
                memcpy(why, err, OTI_ERRMSG_LEN);
                oti_err(err, st, "%s: %s", path, why);
            }
            goto out;
        }
        if ((scan.header_bad || scan.torn) && !last) {
            st = oti_err(err, OT_ECORRUPT,
                         "%s is damaged at byte %llu (%s) and later segments exist", path,
                         (unsigned long long)scan.good_end, scan.why);
            goto out;
        }
        if (scan.header_bad) {
            /* A segment whose creation was interrupted: it holds no record. */
            note(err, "%s: %s, removed", path, scan.why);
            unlink(path);
            continue;
        }
        if (scan.torn) {
            count(d, OTI_DS_WAL_TORN, 1);
            note(err, "%s: dropped a torn record at byte %llu (%s)", path,
                 (unsigned long long)scan.good_end, scan.why);
            if (truncate(path, (off_t)scan.good_end) != 0) {
                st = oti_err(err, OT_EIO, "cannot cut the torn tail off %s: %s", path,
                             strerror(errno));
                goto out;
            }
        }
        if (last) {
            have_last = 1;
            last_good_end = scan.good_end;
            last_end_version = scan.records > 0 ? rc.seg_last : scan.start;
        }
    }
    count(d, OTI_DS_WAL_REPLAYED, rc.applied);
    gauge(d, OTI_DS_RESTORED_VERSION, (double)rc.version);
    if (d->have_ckpt)
        gauge(d, OTI_DS_CHECKPOINT_VERSION, (double)d->last_ckpt);

    if (d->wal_on) {
        char werr[OTI_ERRMSG_LEN];
        werr[0] = '\0';
        st = oti_wal_create(&d->alloc, d->dir, d->fingerprint, d->shard, d->policy, &d->wal,
                            werr);
        /* Continue the last segment when it ends exactly where the master
         * is; else start one at the master's version (the log was off for a
         * while, or the segment was removed). */
        if (st == OT_OK && have_last && last_end_version == rc.version)
            st = oti_wal_attach(d->wal, wl.v[wl.n - 1], last_good_end, werr);
        else if (st == OT_OK)
            st = oti_wal_attach(d->wal, rc.version, 0, werr);
        if (st != OT_OK) {
            oti_err(err, st, "%s", werr);
            goto out;
        }
    }
out:
    vlist_free(d, &ck);
    vlist_free(d, &wl);
    return st;
}

/* ---- create and destroy ---------------------------------------------------------------- */

ot_status oti_dur_create(const ot_config *cfg, const oti_alloc *a, ot_model *master,
                         uint32_t shard, oti_stats *stats, size_t base, const oti_dur_hooks *h,
                         oti_dur **out, char *err)
{
    oti_dur *d;
    const char *dir;
    pthread_condattr_t ca;
    struct stat sb;
    ot_status st;

    if (out == NULL || master == NULL || h == NULL)
        return OT_EINVAL;
    err[0] = '\0';
    d = oti_calloc(a, 1, sizeof(*d));
    if (d == NULL)
        return oti_err(err, OT_ENOMEM, "out of memory");
    d->alloc = *a;
    d->h = *h;
    d->stats = stats;
    d->base = base;
    d->max_entries = (uint64_t)oti_cfg_i64(cfg, OT_OPT_MAX_DELTA_ENTRIES);
    d->max_record = (size_t)oti_cfg_i64(cfg, OT_OPT_RECV_MAX_BYTES);
    d->shard = shard;
    d->fingerprint = oti_model_params_c(master)->fingerprint;
    pthread_mutex_init(&d->ckpt_mu, NULL);
    pthread_mutex_init(&d->thr_mu, NULL);
    pthread_mutex_init(&d->hold_mu, NULL);
    pthread_cond_init(&d->hold_cv, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->thr_cv, &ca);
    pthread_condattr_destroy(&ca);

    dir = oti_cfg_str(cfg, OT_OPT_CHECKPOINT_DIR);
    if (dir == NULL || *dir == '\0') {
        *out = d;
        return OT_OK;
    }
    d->dir = oti_strdup(a, dir);
    if (d->dir == NULL) {
        oti_dur_destroy(d);
        return oti_err(err, OT_ENOMEM, "out of memory");
    }
    d->dir_size = strlen(dir) + 1;
    d->wal_on = oti_cfg_choice(cfg, OT_OPT_WAL) == 1;
    d->policy = oti_cfg_choice(cfg, OT_OPT_WAL_SYNC);
    d->sync_ms = oti_cfg_i64(cfg, OT_OPT_WAL_SYNC_INTERVAL_MS);
    d->ckpt_ms = oti_cfg_i64(cfg, OT_OPT_CHECKPOINT_INTERVAL_MS);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        oti_dur_destroy(d);
        return oti_err(err, e == ENOENT || e == ENOTDIR ? OT_ENOENT : OT_EIO,
                       "cannot create checkpoint_dir %s: %s", dir, strerror(e));
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        oti_dur_destroy(d);
        return oti_err(err, OT_EIO, "checkpoint_dir %s is not a directory", dir);
    }
    if ((st = ot_model_clone(master, &d->scratch)) != OT_OK) {
        oti_dur_destroy(d);
        return oti_err(err, st, "out of memory for the checkpoint copy");
    }
    if ((st = restore(d, master, err)) != OT_OK) {
        oti_dur_destroy(d);
        return st;
    }
    *out = d;
    return OT_OK;
}

void oti_dur_destroy(oti_dur *d)
{
    oti_alloc a;

    if (d == NULL)
        return;
    a = d->alloc;
    oti_wal_destroy(d->wal);
    ot_model_destroy(d->scratch);
    oti_ckpt_state_fini(&a, &d->cs);
    oti_free(&a, d->dir, d->dir_size);
    pthread_cond_destroy(&d->thr_cv);
    pthread_cond_destroy(&d->hold_cv);
    pthread_mutex_destroy(&d->hold_mu);
    pthread_mutex_destroy(&d->thr_mu);
    pthread_mutex_destroy(&d->ckpt_mu);
    oti_free(&a, d, sizeof(*d));
}

int oti_dur_enabled(const oti_dur *d)
{
    return d != NULL && d->dir != NULL;
}

/* ---- the sync path ------------------------------------------------------------------------ */

ot_status oti_dur_check_frame(oti_dur *d, uint64_t entries, char *err)
{
    if (d == NULL || entries <= d->max_entries)
        return OT_OK;
    count(d, OTI_DS_REJ_TOO_BIG, 1);
    return oti_err(err, OT_ETOOBIG, "delta of %llu entries; this server accepts at most %llu "
                                    "(max_delta_entries)",
                   (unsigned long long)entries, (unsigned long long)d->max_entries);
}

ot_status oti_dur_log(oti_dur *d, ot_delta_decoder *dec, const ot_model *master, uint32_t sender,
                      uint64_t sequence, uint64_t version, const uint8_t *frame, size_t len,
                      uint64_t *ticket, char *err)
{
    oti_wal_rec r;
    ot_status st;

    *ticket = 0;
    if (d == NULL || d->wal == NULL)
        return OT_OK;
    /* Only a frame that will apply is logged: replay must not meet one
     * that the live server refused. */
    if ((st = ot_delta_validate(dec, master, frame, len)) != OT_OK)
        return st;
    r.sender = sender;
    r.sequence = sequence;
    r.version = version;
    r.frame = frame;
    r.len = len;
    st = oti_wal_append(d->wal, &r, ticket, err);
    if (st != OT_OK) {
        count(d, OTI_DS_WAL_ERRORS, 1);
        return OT_EIO; /* err says why (a write, or memory for the record) */
    }
    count(d, OTI_DS_WAL_RECORDS, 1);
    count(d, OTI_DS_WAL_BYTES, OTI_WAL_REC_HEADER + (uint64_t)len);
    return OT_OK;
}

static ot_status sync_log(oti_dur *d, uint64_t ticket, char *err)
{
    int did = 0;
    ot_status st = oti_wal_sync(d->wal, ticket, &did, err);

    if (st != OT_OK)
        count(d, OTI_DS_WAL_ERRORS, 1);
    if (did)
        count(d, OTI_DS_WAL_SYNCS, 1);
    return st;
}

uint64_t oti_dur_ticket(const oti_dur *d)
{
    return d != NULL && d->wal != NULL ? oti_wal_written(d->wal) : 0;
}

ot_status oti_dur_commit(oti_dur *d, uint64_t ticket, char *err)
{
    char why[OTI_ERRMSG_LEN];

    if (d == NULL || d->wal == NULL || ticket == 0 || d->policy != OTI_WAL_SYNC_EVERY)
        return OT_OK;
    why[0] = '\0';
    if (sync_log(d, ticket, why) == OT_OK)
        return OT_OK;
    return oti_err(err, OT_EBUSY, "%s; the reply is withheld until a checkpoint succeeds "
                                  "(resend: a delta already applied is acknowledged as a "
                                  "duplicate)", why);
}

/* ---- checkpoints ------------------------------------------------------------------------- */

int oti_dur_checkpoint_due(const oti_dur *d, uint64_t version)
{
    /* A broken log is mended only by a checkpoint, even of the same version. */
    return d != NULL && (!d->have_ckpt || d->last_ckpt != version ||
                         (d->wal != NULL && oti_wal_broken(d->wal)));
}

ot_status oti_dur_rotate(oti_dur *d, uint64_t version, char *err)
{
    if (d == NULL || d->wal == NULL)
        return OT_OK;
    return oti_wal_rotate(d->wal, version, err);
}

/* The checkpoint test hook: a disk that fills up while "<path>.tmp" is
 * written (half a header is left behind, as a crash would leave it). */
static ot_status fail_write(const char *path, char *err)
{
    char tmp[PATH_CAP + 8];
    FILE *fp;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((fp = fopen(tmp, "wb")) != NULL) {
        fwrite("OTCKPT", 1, 6, fp);
        fclose(fp);
    }
    return oti_err(err, OT_EIO, "cannot write %s: %s (test hook)", tmp, strerror(ENOSPC));
}

/* After checkpoint v is complete: keeps v and the newest one before it (p),
 * deletes older checkpoints and the segments that start below p. */
static void retain(oti_dur *d, uint64_t v)
{
    vlist ck = {NULL, 0, 0}, wl = {NULL, 0, 0};
    char path[PATH_CAP], err[OTI_ERRMSG_LEN];
    uint64_t p = 0;
    int have_p = 0;
    size_t i;

    if (list_dir(d, &ck, &wl, 0, err) == OT_OK) {
        for (i = 0; i < ck.n; i++)
            if (ck.v[i] < v) {
                p = ck.v[i];
                have_p = 1;
            }
        for (i = 0; i < ck.n; i++) {
            if (ck.v[i] == v || (have_p && ck.v[i] == p))
                continue;
            ckpt_path(d, ck.v[i], path);
            unlink(path);
        }
        for (i = 0; have_p && i < wl.n; i++) {
            if (wl.v[i] >= p)
                continue;
            wal_path(d, wl.v[i], path);
            unlink(path);
        }
    }
    vlist_free(d, &ck);
    vlist_free(d, &wl);
}

ot_status oti_dur_checkpoint(oti_dur *d, char *err)
{
    char path[PATH_CAP];
    uint64_t t0;
    ot_status st;

    if (d == NULL || d->dir == NULL)
        return oti_err(err, OT_ESTATE, "checkpoints are off (checkpoint_dir is empty)");
    pthread_mutex_lock(&d->ckpt_mu);
    if (is_crashed(d)) {
        pthread_mutex_unlock(&d->ckpt_mu);
        return oti_err(err, OT_ESTATE, "the server has crashed (test hook)");
    }
    t0 = mono_ms();
    /* Sync the log before the capture, so that the fdatasync the rotation
     * does under the master lock finds little left to write. */
    if (d->wal != NULL && d->policy != OTI_WAL_SYNC_NONE && !oti_wal_broken(d->wal))
        (void)sync_log(d, oti_wal_written(d->wal), err);
    err[0] = '\0';
    d->cs.skip = 0;
    d->cs.shard = d->shard;
    d->cs.ntrainers = 0;
    st = d->h.capture(d->h.arg, d->scratch, &d->cs, err);
    if (st == OT_OK && !d->cs.skip) {
        ckpt_path(d, d->cs.version, path);
        if (__atomic_exchange_n(&d->fail_ckpt, 0, __ATOMIC_ACQ_REL))
            st = fail_write(path, err); /* test hook */
        else
            st = oti_ckpt_save(&d->alloc, path, d->scratch, &d->cs, err);
        if (st == OT_OK && d->wal != NULL)
            oti_wal_mend(d->wal); /* nothing before this checkpoint is needed now */
        if (st == OT_OK) {
            d->last_ckpt = d->cs.version;
            d->have_ckpt = 1;
            count(d, OTI_DS_CHECKPOINTS, 1);
            gauge(d, OTI_DS_CHECKPOINT_VERSION, (double)d->cs.version);
            gauge(d, OTI_DS_CHECKPOINT_BYTES,
                  (double)oti_ckpt_file_size(d->scratch, d->cs.ntrainers));
            retain(d, d->cs.version);
            gauge(d, OTI_DS_CHECKPOINT_MS, (double)(mono_ms() - t0));
        }
    }
    if (st != OT_OK)
        count(d, OTI_DS_CHECKPOINT_ERRORS, 1);
    pthread_mutex_unlock(&d->ckpt_mu);
    return st;
}

void oti_dur_fail_next(oti_dur *d, int what)
{
    if (d == NULL)
        return;
    if (what & OTI_DUR_FAIL_CHECKPOINT)
        __atomic_store_n(&d->fail_ckpt, 1, __ATOMIC_RELEASE);
    if (d->wal != NULL)
        oti_wal_fail_next(d->wal, what);
}

/* ---- the background thread ------------------------------------------------------------- */

static void *dur_main(void *arg)
{
    oti_dur *d = arg;
    const uint64_t never = UINT64_MAX;
    uint64_t now = mono_ms();
    uint64_t next_sync = d->wal != NULL && d->policy == OTI_WAL_SYNC_INTERVAL
                             ? now + (uint64_t)d->sync_ms
                             : never;
    uint64_t next_ckpt = d->ckpt_ms > 0 ? now + (uint64_t)d->ckpt_ms : never;
    uint64_t next_retry = now + BROKEN_RETRY_MS;

    pthread_mutex_lock(&d->thr_mu);
    while (!d->thr_stop) {
        uint64_t wake = next_sync < next_ckpt ? next_sync : next_ckpt;
        struct timespec ts;
        char err[OTI_ERRMSG_LEN];
        int ckpt = 0;

        if (d->wal != NULL && next_retry < wake)
            wake = next_retry;
        ts.tv_sec = (time_t)(wake / 1000u);
        ts.tv_nsec = (long)(wake % 1000u) * 1000000L;
        if (mono_ms() < wake) {
            pthread_cond_timedwait(&d->thr_cv, &d->thr_mu, &ts);
            continue; /* re-check the stop flag and the time */
        }
        pthread_mutex_unlock(&d->thr_mu);
        now = mono_ms();
        if (is_crashed(d)) {
            next_sync = next_ckpt = next_retry = never;
        } else {
            if (now >= next_sync) {
                /* A broken log waits for the checkpoint below instead. */
                if (!oti_wal_broken(d->wal))
                    (void)sync_log(d, oti_wal_written(d->wal), err);
                next_sync = now + (uint64_t)d->sync_ms;
            }
            if (now >= next_ckpt) {
                ckpt = 1;
                next_ckpt = now + (uint64_t)d->ckpt_ms;
            }
            if (now >= next_retry) {
                /* A broken log refuses deltas until a checkpoint succeeds. */
                ckpt |= oti_wal_broken(d->wal);
                next_retry = now + BROKEN_RETRY_MS;
            }
            if (ckpt)
                (void)oti_dur_checkpoint(d, err); /* failures are counted */
        }
        pthread_mutex_lock(&d->thr_mu);
    }
    pthread_mutex_unlock(&d->thr_mu);
    return NULL;
}

ot_status oti_dur_start(oti_dur *d)
{
    if (d == NULL || d->dir == NULL || d->thr_running)
        return OT_OK;
    if (d->wal == NULL && d->ckpt_ms <= 0)
        return OT_OK; /* nothing to do in the background */
    d->thr_stop = 0;
    if (pthread_create(&d->thr, NULL, dur_main, d) != 0)
        return OT_ENOMEM;
    d->thr_running = 1;
    return OT_OK;
}

void oti_dur_release(oti_dur *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->hold_mu);
    d->closing = 1;
    pthread_cond_broadcast(&d->hold_cv);
    pthread_mutex_unlock(&d->hold_mu);
    if (d->thr_running) {
        pthread_mutex_lock(&d->thr_mu);
        d->thr_stop = 1;
        pthread_cond_broadcast(&d->thr_cv);
        pthread_mutex_unlock(&d->thr_mu);
        pthread_join(d->thr, NULL);
        d->thr_running = 0;
    }
}

ot_status oti_dur_finish(oti_dur *d, char *err)
{
    if (d == NULL || d->dir == NULL || is_crashed(d))
        return OT_OK;
    return oti_dur_checkpoint(d, err);
}

void oti_dur_refresh_transport(oti_dur *d, const oti_sock *rep)
{
    oti_tp_stats t;

    if (d == NULL || rep == NULL)
        return;
    oti_sock_stats(rep, &t);
    counter_max(d, OTI_DS_DROP_AUTH, t.drop_auth);
    counter_max(d, OTI_DS_DROP_REPLAY, t.drop_replay);
    counter_max(d, OTI_DS_DROP_OVERSIZE, t.drop_oversize);
    counter_max(d, OTI_DS_DROP_SHORT, t.drop_short);
}

void oti_dur_refresh_conns(oti_dur *d, const oti_sock *rep, const oti_sock *pub)
{
    oti_tp_stats t;
    uint64_t n = 0;

    if (d == NULL)
        return;
    if (rep != NULL) {
        oti_sock_stats(rep, &t);
        n += t.refused_conns;
    }
    if (pub != NULL) {
        oti_sock_stats(pub, &t);
        n += t.refused_conns;
    }
    counter_max(d, OTI_DS_REFUSED_CONNS, n);
}

/* ---- crash simulation ------------------------------------------------------------------ */

void oti_dur_set_crash_hook(oti_dur *d, oti_crash_fn fn, void *arg)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->hold_mu);
    d->crash_fn = fn;
    d->crash_arg = arg;
    pthread_mutex_unlock(&d->hold_mu);
}

void oti_dur_crash(oti_dur *d)
{
    if (d != NULL)
        __atomic_store_n(&d->crashed, 1, __ATOMIC_RELEASE);
}

int oti_dur_crash_point(oti_dur *d, uint64_t version, int applied)
{
    if (d == NULL)
        return 0;
    if (applied && !is_crashed(d)) {
        oti_crash_fn fn;
        void *arg;
        pthread_mutex_lock(&d->hold_mu);
        fn = d->crash_fn;
        arg = d->crash_arg;
        pthread_mutex_unlock(&d->hold_mu);
        if (fn != NULL && fn(arg, version))
            oti_dur_crash(d);
    }
    if (!is_crashed(d))
        return 0;
    pthread_mutex_lock(&d->hold_mu);
    while (!d->closing)
        pthread_cond_wait(&d->hold_cv, &d->hold_mu);
    pthread_mutex_unlock(&d->hold_mu);
    return 1;
}
