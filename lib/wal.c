/*
 * wal.c - the parameter server's write-ahead log (docs/durability.md,
 * "Write-ahead log"): segment files of records, each record one applied ADD
 * frame with the trainer id, its sequence number and the master version it
 * produced, protected by a CRC32C.
 *
 * Appends are serialized by the caller (the server's master lock), so the
 * records of a segment are in the order the frames were applied.  Syncs run
 * without that lock: each caller waits until an fdatasync that started after
 * its record was written has finished, and one fdatasync serves every record
 * written before it started (group commit).  `written` and `synced` count
 * bytes over the life of the appender, across segments: a rotation
 * fdatasyncs the old segment before it switches, so everything before the
 * new segment counts as synced.
 *
 * The scanner reads a segment front to back and stops at the first record
 * that is cut short or fails a check; what it read before is trustworthy
 * (every record's CRC covers its header and frame).
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "durable.h"

static const uint8_t SEG_MAGIC[8] = {'O', 'T', 'W', 'A', 'L', 0, 0, 0};
static const uint8_t REC_MAGIC[4] = {'O', 'T', 'W', 'R'};

/* ---- formats ------------------------------------------------------------------ */

void oti_wal_segment_header(uint8_t out[OTI_WAL_SEG_HEADER], uint64_t fingerprint, uint32_t shard,
                            uint64_t start)
{
    memset(out, 0, OTI_WAL_SEG_HEADER);
    memcpy(out, SEG_MAGIC, 8);
    oti_put16(out + 8, OTI_WAL_MAJOR);
    oti_put16(out + 10, OTI_WAL_MINOR);
    oti_put32(out + 12, OTI_WAL_SEG_HEADER);
    oti_put64(out + 16, fingerprint);
    oti_put64(out + 24, start);
    oti_put32(out + 32, shard);
    oti_put32(out + 36, oti_crc32c(0, out, 36));
}

void oti_wal_record_header(uint8_t out[OTI_WAL_REC_HEADER], const oti_wal_rec *r)
{
    uint32_t crc;

    memcpy(out, REC_MAGIC, 4);
    oti_put32(out + 4, (uint32_t)r->len);
    oti_put64(out + 8, r->version);
    oti_put64(out + 16, r->sequence);
    oti_put32(out + 24, r->sender);
    crc = oti_crc32c(0, out, 28);
    crc = oti_crc32c(crc, r->frame, r->len);
    oti_put32(out + 28, crc);
}

/* ---- scanner ------------------------------------------------------------------ */

static void stop_at(oti_wal_scaninfo *out, int header, const char *why)
{
    if (header)
        out->header_bad = 1;
    else
        out->torn = 1;
    snprintf(out->why, sizeof(out->why), "%s", why);
}

ot_status oti_wal_scan(const oti_alloc *a, oti_src *src, uint64_t fingerprint, uint32_t shard,
                       size_t max_record, oti_wal_rec_fn fn, void *arg, oti_wal_scaninfo *out,
                       char *err)
{
    uint8_t h[OTI_WAL_SEG_HEADER], rh[OTI_WAL_REC_HEADER];
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t last_version;
    ot_status st = OT_OK;

    memset(out, 0, sizeof(*out));
    if (oti_src_read(src, h, sizeof(h)) != sizeof(h)) {
        stop_at(out, 1, "segment header cut short");
        return OT_OK;
    }
    if (memcmp(h, SEG_MAGIC, 8) != 0 || oti_get32(h + 12) != OTI_WAL_SEG_HEADER ||
        oti_get32(h + 36) != oti_crc32c(0, h, 36)) {
        stop_at(out, 1, "segment header corrupt");
        return OT_OK;
    }
    if (oti_get16(h + 8) != OTI_WAL_MAJOR)
        return oti_err(err, OT_EVERSION, "log segment format %u.%u; this library reads %d.x",
                       oti_get16(h + 8), oti_get16(h + 10), OTI_WAL_MAJOR);
    if (fingerprint != 0 && oti_get64(h + 16) != fingerprint)
        return oti_err(err, OT_EMISMATCH, "log segment of model %016llx, this server's is %016llx",
                       (unsigned long long)oti_get64(h + 16), (unsigned long long)fingerprint);
    if (shard != UINT32_MAX && oti_get32(h + 32) != shard)
        return oti_err(err, OT_EMISMATCH, "log segment of shard %u, this server is shard %u",
                       oti_get32(h + 32), shard);
    out->start = oti_get64(h + 24);
    out->good_end = OTI_WAL_SEG_HEADER;
    last_version = out->start;

    for (;;) {
        oti_wal_rec r;
        uint32_t len, crc;
        size_t got = oti_src_read(src, rh, sizeof(rh));
        const uint8_t *f;

        if (got == 0)
            break; /* clean end */
        if (got < sizeof(rh)) {
            stop_at(out, 0, "record header cut short");
            break;
        }
        if (memcmp(rh, REC_MAGIC, 4) != 0) {
            stop_at(out, 0, "bad record magic");
            break;
        }
        len = oti_get32(rh + 4);
        if (len < OTI_HEADER_SIZE || len > max_record) {
            stop_at(out, 0, "record length out of range");
            break;
        }
        if (cap < len) {
            uint8_t *nb = oti_realloc(a, buf, cap, len);
            if (nb == NULL) {
                st = oti_err(err, OT_ENOMEM, "out of memory reading the log");
                break;
            }
            buf = nb;
            cap = len;
        }
        if (oti_src_read(src, buf, len) != len) {
            stop_at(out, 0, "record cut short");
            break;
        }
        crc = oti_crc32c(0, rh, 28);
        crc = oti_crc32c(crc, buf, len);
        if (crc != oti_get32(rh + 28)) {
            stop_at(out, 0, "record checksum mismatch");
            break;
        }
        r.len = len;
        r.frame = f = buf;
        r.version = oti_get64(rh + 8);
        r.sequence = oti_get64(rh + 16);
        r.sender = oti_get32(rh + 24);
        /* The frame's own header must agree with the record's.  Its checksum
         * and contents are checked when it is applied. */
        if (memcmp(f, "OTDF", 4) != 0 || f[OTI_H_KIND] != OTI_KIND_ADD ||
            oti_get16(f + OTI_H_HLEN) < OTI_HEADER_SIZE ||
            (uint64_t)oti_get16(f + OTI_H_HLEN) + oti_get32(f + OTI_H_PAYLOAD) != len ||
            oti_get32(f + OTI_H_SENDER) != r.sender || oti_get64(f + OTI_H_SEQUENCE) != r.sequence) {
            stop_at(out, 0, "record does not hold the ADD frame it describes");
            break;
        }
        if (r.version <= last_version) {
            stop_at(out, 0, "record versions out of order");
            break;
        }
        if (fn != NULL && (st = fn(arg, &r, err)) != OT_OK)
            break;
        last_version = r.version;
        out->records++;
        out->good_end += OTI_WAL_REC_HEADER + (uint64_t)len;
    }
    oti_free(a, buf, cap);
    return st;
}

/* ---- appender ------------------------------------------------------------------ */

struct oti_wal {
    oti_alloc alloc;
    char *dir;
    size_t dir_size;
    uint64_t fingerprint;
    uint32_t shard;
    int policy;
    int fd;               /* the open segment; -1 none */
    uint64_t seg_start;   /* its start version */
    uint64_t seg_off;     /* its length in bytes */
    uint64_t seg_records; /* records appended to it by this appender */
    uint64_t written;     /* atomic: bytes appended over the appender's life */
    int broken;           /* atomic: appends refused; set under smu */
    int mendable;         /* under smu: the break is older than the open segment */
    int fail_next;        /* atomic: OTI_WAL_FAIL_* test hook bits */
    uint8_t *buf;
    size_t cap;
    pthread_mutex_t smu;  /* syncing, synced, and fd against rotation */
    pthread_cond_t scv;
    int syncing;
    uint64_t synced;
};

/* Marks the log broken (smu held): appends and syncs are refused until a
 * checkpoint written after the next rotation mends it. */
static void set_broken(oti_wal *w)
{
    w->mendable = 0;
    __atomic_store_n(&w->broken, 1, __ATOMIC_RELEASE);
}

/* "<dir>/wal-<start 20 digits>.otw" into a buffer of n bytes. */
static void seg_path(const oti_wal *w, uint64_t start, char *out, size_t n)
{
    snprintf(out, n, "%s/wal-%020llu.otw", w->dir, (unsigned long long)start);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

ot_status oti_wal_create(const oti_alloc *a, const char *dir, uint64_t fingerprint, uint32_t shard,
                         int policy, oti_wal **out, char *err)
{
    oti_wal *w = oti_calloc(a, 1, sizeof(*w));

    if (w == NULL)
        return oti_err(err, OT_ENOMEM, "out of memory for the log");
    w->alloc = *a;
    w->dir = oti_strdup(a, dir);
    if (w->dir == NULL) {
        oti_free(a, w, sizeof(*w));
        return oti_err(err, OT_ENOMEM, "out of memory for the log");
    }
    w->dir_size = strlen(dir) + 1;
    w->fingerprint = fingerprint;
    w->shard = shard;
    w->policy = policy;
    w->fd = -1;
    pthread_mutex_init(&w->smu, NULL);
    pthread_cond_init(&w->scv, NULL);
    *out = w;
    return OT_OK;
}

void oti_wal_destroy(oti_wal *w)
{
    oti_alloc a;

    if (w == NULL)
        return;
    a = w->alloc;
    if (w->fd >= 0)
        close(w->fd);
    pthread_cond_destroy(&w->scv);
    pthread_mutex_destroy(&w->smu);
    oti_free(&a, w->buf, w->cap);
    oti_free(&a, w->dir, w->dir_size);
    oti_free(&a, w, sizeof(*w));
}

/* Opens (end > 0: existing, cut to end) or creates segment wal-<start>. */
static ot_status seg_open(oti_wal *w, uint64_t start, uint64_t end, int *fd_out, char *err)
{
    char path[4200];
    int fd;

    seg_path(w, start, path, sizeof(path));
    if (end > 0) {
        fd = open(path, O_WRONLY | O_APPEND);
        if (fd < 0)
            return oti_err(err, OT_EIO, "cannot open %s: %s", path, strerror(errno));
        if (ftruncate(fd, (off_t)end) != 0 ||
            (w->policy != OTI_WAL_SYNC_NONE && fdatasync(fd) != 0)) {
            int e = errno;
            close(fd);
            return oti_err(err, OT_EIO, "cannot cut %s to %llu bytes: %s", path,
                           (unsigned long long)end, strerror(e));
        }
    } else {
        uint8_t h[OTI_WAL_SEG_HEADER];
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
        if (fd < 0)
            return oti_err(err, OT_EIO, "cannot create %s: %s", path, strerror(errno));
        oti_wal_segment_header(h, w->fingerprint, w->shard, start);
        if (write_all(fd, h, sizeof(h)) != 0 ||
            (w->policy != OTI_WAL_SYNC_NONE &&
             (fdatasync(fd) != 0 || oti_fsync_dir(w->dir) != 0))) {
            int e = errno;
            close(fd);
            unlink(path);
            return oti_err(err, OT_EIO, "cannot write %s: %s", path, strerror(e));
        }
    }
    *fd_out = fd;
    return OT_OK;
}

ot_status oti_wal_attach(oti_wal *w, uint64_t start, uint64_t end, char *err)
{
    int fd;
    ot_status st = seg_open(w, start, end, &fd, err);

    if (st != OT_OK)
        return st;
    pthread_mutex_lock(&w->smu);
    while (w->syncing)
        pthread_cond_wait(&w->scv, &w->smu);
    if (w->fd >= 0)
        close(w->fd);
    w->fd = fd;
    w->seg_start = start;
    w->seg_off = end > 0 ? end : OTI_WAL_SEG_HEADER;
    w->seg_records = 0;
    w->synced = __atomic_load_n(&w->written, __ATOMIC_ACQUIRE);
    __atomic_store_n(&w->broken, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&w->smu);
    return OT_OK;
}

ot_status oti_wal_append(oti_wal *w, const oti_wal_rec *r, uint64_t *ticket, char *err)
{
    size_t total = OTI_WAL_REC_HEADER + r->len;
    uint64_t t;
    int e = 0;

    if (w->fd < 0 || __atomic_load_n(&w->broken, __ATOMIC_ACQUIRE))
        return oti_err(err, OT_EIO, "the write-ahead log failed earlier; deltas are refused "
                                    "until a checkpoint succeeds");
    if (r->len > UINT32_MAX)
        return oti_err(err, OT_EIO, "a frame of %zu bytes is too long for the log", r->len);
    if (w->cap < total) {
        uint8_t *nb = oti_realloc(&w->alloc, w->buf, w->cap, total);
        if (nb == NULL)
            return oti_err(err, OT_ENOMEM, "out of memory appending to the log");
        w->buf = nb;
        w->cap = total;
    }
    oti_wal_record_header(w->buf, r);
    memcpy(w->buf + OTI_WAL_REC_HEADER, r->frame, r->len);
    if (__atomic_fetch_and(&w->fail_next, ~OTI_WAL_FAIL_WRITE, __ATOMIC_ACQ_REL) &
        OTI_WAL_FAIL_WRITE) {
        /* Test hook: a disk that fills up halfway through the record. */
        (void)write_all(w->fd, w->buf, total / 2);
        e = ENOSPC;
    } else if (write_all(w->fd, w->buf, total) != 0) {
        e = errno;
    }
    if (e != 0) {
        /* Cut a partial record off, so later records follow good ones. */
        if (ftruncate(w->fd, (off_t)w->seg_off) != 0) {
            pthread_mutex_lock(&w->smu);
            set_broken(w);
            pthread_mutex_unlock(&w->smu);
        }
        return oti_err(err, OT_EIO, "cannot append to the write-ahead log: %s", strerror(e));
    }
    w->seg_off += total;
    w->seg_records++;
    t = __atomic_add_fetch(&w->written, total, __ATOMIC_ACQ_REL);
    if (ticket != NULL)
        *ticket = t;
    return OT_OK;
}

ot_status oti_wal_sync(oti_wal *w, uint64_t ticket, int *did, char *err)
{
    ot_status st = OT_OK;

    if (did != NULL)
        *did = 0;
    pthread_mutex_lock(&w->smu);
    while (w->synced < ticket) {
        uint64_t target;
        int fd, rc, e = 0;
        if (w->syncing) {
            pthread_cond_wait(&w->scv, &w->smu);
            continue;
        }
        if (__atomic_load_n(&w->broken, __ATOMIC_ACQUIRE)) {
            /* A later fdatasync could succeed without the lost pages
             * (Linux reports a write-back error once): only a new segment
             * after a checkpoint makes the log trustworthy again. */
            st = oti_err(err, OT_EIO, "the write-ahead log failed earlier and is not synced "
                                      "until a checkpoint succeeds");
            break;
        }
        target = __atomic_load_n(&w->written, __ATOMIC_ACQUIRE);
        fd = w->fd;
        w->syncing = 1;
        pthread_mutex_unlock(&w->smu);
        if (__atomic_fetch_and(&w->fail_next, ~OTI_WAL_FAIL_SYNC, __ATOMIC_ACQ_REL) &
            OTI_WAL_FAIL_SYNC) {
            rc = -1; /* test hook */
            errno = EIO;
        } else {
            rc = fd >= 0 ? fdatasync(fd) : -1;
        }
        if (rc != 0)
            e = fd >= 0 ? errno : EBADF;
        pthread_mutex_lock(&w->smu);
        w->syncing = 0;
        pthread_cond_broadcast(&w->scv);
        if (did != NULL)
            *did = 1;
        if (rc != 0) {
            /* The kernel may have dropped the pages: nothing written since
             * the last good sync can be trusted to be on disk. */
            set_broken(w);
            st = oti_err(err, OT_EIO, "cannot sync the write-ahead log: %s", strerror(e));
            break;
        }
        if (target > w->synced)
            w->synced = target;
    }
    pthread_mutex_unlock(&w->smu);
    return st;
}

uint64_t oti_wal_written(const oti_wal *w)
{
    return __atomic_load_n(&w->written, __ATOMIC_ACQUIRE);
}

int oti_wal_broken(const oti_wal *w)
{
    return __atomic_load_n(&w->broken, __ATOMIC_ACQUIRE);
}

void oti_wal_mend(oti_wal *w)
{
    pthread_mutex_lock(&w->smu);
    if (w->mendable) {
        w->mendable = 0;
        __atomic_store_n(&w->broken, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&w->smu);
}

void oti_wal_fail_next(oti_wal *w, int what)
{
    __atomic_fetch_or(&w->fail_next, what & (OTI_WAL_FAIL_WRITE | OTI_WAL_FAIL_SYNC),
                      __ATOMIC_ACQ_REL);
}

uint64_t oti_wal_segment_start(const oti_wal *w)
{
    return w->seg_start;
}

ot_status oti_wal_rotate(oti_wal *w, uint64_t start, char *err)
{
    int fd, old;
    ot_status st;

    if (w->fd >= 0 && start == w->seg_start) {
        /* Only possible when nothing was applied since the segment began
         * (a retried checkpoint).  A broken log may hold part of a record
         * after the good ones: cut it off. */
        if (w->seg_records != 0)
            return oti_err(err, OT_EIO, "log segment %llu is already in use",
                           (unsigned long long)start);
        pthread_mutex_lock(&w->smu);
        while (w->syncing)
            pthread_cond_wait(&w->scv, &w->smu);
        if (__atomic_load_n(&w->broken, __ATOMIC_ACQUIRE)) {
            if (ftruncate(w->fd, (off_t)w->seg_off) != 0 || fdatasync(w->fd) != 0) {
                int e = errno;
                pthread_mutex_unlock(&w->smu);
                return oti_err(err, OT_EIO, "cannot cut log segment %llu back: %s",
                               (unsigned long long)start, strerror(e));
            }
            w->mendable = 1;
        }
        pthread_mutex_unlock(&w->smu);
        return OT_OK;
    }
    pthread_mutex_lock(&w->smu);
    while (w->syncing)
        pthread_cond_wait(&w->scv, &w->smu);
    if (w->fd >= 0 && w->policy != OTI_WAL_SYNC_NONE &&
        !__atomic_load_n(&w->broken, __ATOMIC_ACQUIRE) && fdatasync(w->fd) != 0) {
        int e = errno;
        pthread_mutex_unlock(&w->smu);
        return oti_err(err, OT_EIO, "cannot sync the write-ahead log: %s", strerror(e));
    }
    /* Hold smu: a sync must not pick up the old descriptor as it closes. */
    st = seg_open(w, start, 0, &fd, err);
    if (st != OT_OK) {
        pthread_mutex_unlock(&w->smu);
        return st;
    }
    old = w->fd;
    w->fd = fd;
    w->seg_start = start;
    w->seg_off = OTI_WAL_SEG_HEADER;
    w->seg_records = 0;
    w->synced = __atomic_load_n(&w->written, __ATOMIC_ACQUIRE);
    /* A broken log stays broken: what the old segment lost is only safe
     * once the checkpoint that starts this segment is written (mend). */
    w->mendable = __atomic_load_n(&w->broken, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&w->smu);
    if (old >= 0)
        close(old);
    return OT_OK;
}
