/*
 * checkpoint.c - the parameter server's checkpoint file (docs/durability.md,
 * "Checkpoint file"): the master's arrays, its version, the published
 * snapshot's version and the per-trainer sequence table, with a CRC32C.
 *
 * Writing goes to "<path>.tmp", which is fsync'd and renamed over path, then
 * the directory is fsync'd: a crash leaves either the old set of files or
 * the new one, never a half-written checkpoint under its final name.
 *
 * Reading treats the file as hostile: the header's sizes must add up to the
 * file's size exactly before anything is allocated, the trainer table must
 * be strictly increasing, every value finite, and the checksum must match.
 * Values are streamed straight into the target model, so a failed read may
 * leave it partly overwritten: read into a scratch model.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable.h"
#include "model.h"

static const uint8_t CKPT_MAGIC[8] = {'O', 'T', 'C', 'K', 'P', 'T', 0, 0};

#define OUT_BUF (64u * 1024u)
#define CHUNK 4096 /* floats converted per step */

/* ---- byte sources ---------------------------------------------------------- */

void oti_src_mem(oti_src *s, const void *data, size_t len)
{
    memset(s, 0, sizeof(*s));
    s->mem = data;
    s->len = data != NULL ? len : 0;
}

ot_status oti_src_file(oti_src *s, FILE *fp)
{
    struct stat sb;

    memset(s, 0, sizeof(*s));
    if (fp == NULL || fstat(fileno(fp), &sb) != 0 || sb.st_size < 0)
        return OT_EIO;
    s->fp = fp;
    s->len = (uint64_t)sb.st_size;
    return OT_OK;
}

size_t oti_src_read(oti_src *s, void *buf, size_t n)
{
    size_t got;

    if (n > s->len - s->pos)
        n = (size_t)(s->len - s->pos);
    if (n == 0)
        return 0;
    if (s->fp != NULL) {
        got = fread(buf, 1, n, s->fp);
    } else {
        memcpy(buf, s->mem + s->pos, n);
        got = n;
    }
    s->pos += got;
    return got;
}

int oti_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY);
    int rc = 0;

    if (fd < 0)
        return -1;
    /* Some file systems refuse fsync on a directory; that is not an error. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EBADF && errno != EROFS)
        rc = -1;
    close(fd);
    return rc;
}

/* ---- state ----------------------------------------------------------------------- */

ot_status oti_ckpt_state_reserve(const oti_alloc *a, oti_ckpt_state *s, size_t n)
{
    return oti_grow(a, (void **)&s->trainers, &s->cap, n, sizeof(*s->trainers)) == 0 ? OT_OK
                                                                                      : OT_ENOMEM;
}

void oti_ckpt_state_fini(const oti_alloc *a, oti_ckpt_state *s)
{
    oti_free(a, s->trainers, s->cap * sizeof(*s->trainers));
    s->trainers = NULL;
    s->ntrainers = s->cap = 0;
}

uint64_t oti_ckpt_floats(const ot_model *m)
{
    const oti_params *p = oti_model_params_c(m);
    uint64_t n = 0;
    size_t b;

    for (b = 0; b < p->nblocks; b++)
        n += p->blocks[b].rows * p->blocks[b].cols * (uint64_t)(1 + p->blocks[b].nstate);
    return n;
}

uint64_t oti_ckpt_file_size(const ot_model *m, size_t ntrainers)
{
    return OTI_CKPT_HEADER + (uint64_t)ntrainers * OTI_CKPT_TRAINER + 4 * oti_ckpt_floats(m) + 4;
}

/* ---- write ------------------------------------------------------------------------ */

typedef struct out {
    int fd;
    uint32_t crc;
    int err; /* errno of the first failure; 0 while all is well */
    size_t n;
    uint8_t buf[OUT_BUF];
} out;

static void out_flush(out *o)
{
    size_t done = 0;

    while (o->err == 0 && done < o->n) {
        ssize_t w = write(o->fd, o->buf + done, o->n - done);
        if (w < 0) {
            if (errno != EINTR)
                o->err = errno;
        } else if (w == 0) {
            o->err = EIO;
        } else {
            done += (size_t)w;
        }
    }
    o->n = 0;
}

static void out_put(out *o, const void *data, size_t n)
{
    const uint8_t *p = data;

    o->crc = oti_crc32c(o->crc, p, n);
    while (n > 0 && o->err == 0) {
        size_t k = OUT_BUF - o->n < n ? OUT_BUF - o->n : n;
        memcpy(o->buf + o->n, p, k);
        o->n += k;
        p += k;
        n -= k;
        if (o->n == OUT_BUF)
            out_flush(o);
    }
}

static void out_floats(out *o, const float *x, uint64_t n)
{
    uint8_t b[CHUNK * 4];

    while (n > 0 && o->err == 0) {
        size_t k = n > CHUNK ? CHUNK : (size_t)n, i;
        for (i = 0; i < k; i++) {
            uint32_t v;
            memcpy(&v, &x[i], 4);
            oti_put32(b + 4 * i, v);
        }
        out_put(o, b, 4 * k);
        x += k;
        n -= k;
    }
}

/* The directory part of path ("." when there is none), in a new string. */
static char *dir_of(const oti_alloc *a, const char *path, size_t *size)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 1 : (slash == path ? 1 : (size_t)(slash - path));
    char *d = oti_malloc(a, n + 1);

    if (d == NULL)
        return NULL;
    if (slash == NULL)
        memcpy(d, ".", 1);
    else if (slash == path)
        memcpy(d, "/", 1);
    else
        memcpy(d, path, n);
    d[n] = '\0';
    *size = n + 1;
    return d;
}

ot_status oti_ckpt_save(const oti_alloc *a, const char *path, const ot_model *m,
                        const oti_ckpt_state *s, char *err)
{
    const oti_params *p = oti_model_params_c(m);
    uint8_t h[OTI_CKPT_HEADER], crcb[4];
    size_t plen = strlen(path), dsize = 0, i, b;
    char *tmp, *dir = NULL;
    out *o;
    ot_status st = OT_OK;

    tmp = oti_malloc(a, plen + 5);
    o = oti_malloc(a, sizeof(*o));
    if (tmp == NULL || o == NULL || (dir = dir_of(a, path, &dsize)) == NULL) {
        oti_free(a, tmp, plen + 5);
        oti_free(a, o, sizeof(*o));
        return oti_err(err, OT_ENOMEM, "out of memory writing a checkpoint");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    memset(h, 0, sizeof(h));
    memcpy(h, CKPT_MAGIC, 8);
    oti_put16(h + 8, OTI_CKPT_MAJOR);
    oti_put16(h + 10, OTI_CKPT_MINOR);
    oti_put32(h + 12, OTI_CKPT_HEADER);
    oti_put64(h + 16, oti_ckpt_file_size(m, s->ntrainers));
    oti_put64(h + 24, p->fingerprint);
    oti_put64(h + 32, s->version);
    oti_put64(h + 40, s->published_version);
    oti_put64(h + 48, oti_ckpt_floats(m));
    oti_put32(h + 56, (uint32_t)s->ntrainers);
    oti_put32(h + 60, s->shard);

    o->crc = 0;
    o->err = 0;
    o->n = 0;
    o->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (o->fd < 0) {
        int e = errno;
        st = oti_err(err, e == ENOENT || e == ENOTDIR ? OT_ENOENT : OT_EIO, "cannot create %s: %s",
                     tmp, strerror(e));
        goto done;
    }
    out_put(o, h, sizeof(h));
    for (i = 0; i < s->ntrainers; i++) {
        uint8_t t[OTI_CKPT_TRAINER];
        memset(t, 0, sizeof(t));
        oti_put32(t, s->trainers[i].id);
        oti_put64(t + 8, s->trainers[i].last_seq);
        out_put(o, t, sizeof(t));
    }
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *bl = &p->blocks[b];
        int k;
        out_floats(o, bl->w, bl->rows * bl->cols);
        for (k = 0; k < bl->nstate; k++)
            out_floats(o, bl->s[k], bl->rows * bl->cols);
    }
    oti_put32(crcb, o->crc);
    out_put(o, crcb, 4);
    out_flush(o);
    if (o->err == 0 && fsync(o->fd) != 0)
        o->err = errno;
    if (close(o->fd) != 0 && o->err == 0)
        o->err = errno;
    if (o->err != 0) {
        st = oti_err(err, OT_EIO, "cannot write %s: %s", tmp, strerror(o->err));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        st = oti_err(err, OT_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
        unlink(tmp);
        goto done;
    }
    if (oti_fsync_dir(dir) != 0)
        st = oti_err(err, OT_EIO, "cannot sync directory %s: %s", dir, strerror(errno));
done:
    oti_free(a, dir, dsize);
    oti_free(a, tmp, plen + 5);
    oti_free(a, o, sizeof(*o));
    return st;
}

/* ---- read -------------------------------------------------------------------------- */

/* Reads exactly n bytes and adds them to the CRC; -1 when the input ends. */
static int take(oti_src *src, void *buf, size_t n, uint32_t *crc)
{
    if (oti_src_read(src, buf, n) != n)
        return -1;
    *crc = oti_crc32c(*crc, buf, n);
    return 0;
}

static ot_status read_floats(oti_src *src, float *x, uint64_t n, uint32_t *crc, char *err)
{
    uint8_t b[CHUNK * 4];

    while (n > 0) {
        size_t k = n > CHUNK ? CHUNK : (size_t)n, i;
        if (take(src, b, 4 * k, crc) != 0)
            return oti_err(err, OT_ECORRUPT, "checkpoint cut short in its values");
        for (i = 0; i < k; i++) {
            uint32_t v = oti_get32(b + 4 * i);
            float f;
            memcpy(&f, &v, 4);
            if (!isfinite(f))
                return oti_err(err, OT_ENONFINITE, "checkpoint holds a NaN or infinite value");
            x[i] = f;
        }
        x += k;
        n -= k;
    }
    return OT_OK;
}

ot_status oti_ckpt_read(const oti_alloc *a, oti_src *src, ot_model *m, oti_ckpt_state *s,
                        char *err)
{
    oti_params *p = oti_model_params(m);
    uint8_t h[OTI_CKPT_HEADER], t[OTI_CKPT_TRAINER], crcb[4];
    uint64_t file_len, nfloats, want, hlen;
    uint32_t crc = 0, nt, shard;
    size_t i, b;
    ot_status st;

    s->ntrainers = 0;
    if (take(src, h, 8, &crc) != 0 || memcmp(h, CKPT_MAGIC, 8) != 0)
        return oti_err(err, OT_EFORMAT, "not a checkpoint file (bad magic)");
    if (take(src, h + 8, OTI_CKPT_HEADER - 8, &crc) != 0)
        return oti_err(err, OT_ECORRUPT, "checkpoint cut short in its header");
    if (oti_get16(h + 8) != OTI_CKPT_MAJOR)
        return oti_err(err, OT_EVERSION, "checkpoint format %u.%u; this library reads %d.x",
                       oti_get16(h + 8), oti_get16(h + 10), OTI_CKPT_MAJOR);
    hlen = oti_get32(h + 12);
    if (hlen < OTI_CKPT_HEADER || hlen > OTI_CKPT_HEADER_MAX)
        return oti_err(err, OT_EFORMAT, "checkpoint header length %llu is not in [%d, %d]",
                       (unsigned long long)hlen, OTI_CKPT_HEADER, OTI_CKPT_HEADER_MAX);
    file_len = oti_get64(h + 16);
    if (file_len != src->len)
        return oti_err(err, OT_ECORRUPT, "checkpoint says %llu bytes, the file has %llu",
                       (unsigned long long)file_len, (unsigned long long)src->len);
    if (oti_get64(h + 24) != p->fingerprint)
        return oti_err(err, OT_EMISMATCH,
                       "checkpoint of model %016llx, this server's model is %016llx",
                       (unsigned long long)oti_get64(h + 24), (unsigned long long)p->fingerprint);
    nfloats = oti_get64(h + 48);
    if (nfloats != oti_ckpt_floats(m))
        return oti_err(err, OT_EFORMAT, "checkpoint holds %llu values, the model %llu",
                       (unsigned long long)nfloats, (unsigned long long)oti_ckpt_floats(m));
    nt = oti_get32(h + 56);
    shard = oti_get32(h + 60);
    if (shard != s->shard)
        return oti_err(err, OT_EMISMATCH, "checkpoint of shard %u, this server is shard %u",
                       shard, s->shard);
    want = hlen + (uint64_t)nt * OTI_CKPT_TRAINER + 4 * nfloats + 4;
    if (want != file_len)
        return oti_err(err, OT_EFORMAT, "checkpoint sizes do not add up (%llu, file %llu)",
                       (unsigned long long)want, (unsigned long long)file_len);
    /* Header bytes of a later minor version: covered by the CRC, skipped. */
    for (i = OTI_CKPT_HEADER; i < hlen; i++) {
        uint8_t skip;
        if (take(src, &skip, 1, &crc) != 0)
            return oti_err(err, OT_ECORRUPT, "checkpoint cut short in its header");
    }
    if ((st = oti_ckpt_state_reserve(a, s, nt)) != OT_OK)
        return oti_err(err, st, "out of memory for %u trainers", nt);
    for (i = 0; i < nt; i++) {
        uint32_t id;
        if (take(src, t, sizeof(t), &crc) != 0)
            return oti_err(err, OT_ECORRUPT, "checkpoint cut short in its trainer table");
        id = oti_get32(t);
        if (oti_get32(t + 4) != 0 || (i > 0 && id <= s->trainers[i - 1].id))
            return oti_err(err, OT_EFORMAT, "checkpoint trainer table entry %zu is malformed", i);
        s->trainers[i].id = id;
        s->trainers[i].last_seq = oti_get64(t + 8);
    }
    s->ntrainers = nt;
    for (b = 0; b < p->nblocks; b++) {
        oti_block *bl = &p->blocks[b];
        int k;
        if ((st = read_floats(src, bl->w, bl->rows * bl->cols, &crc, err)) != OT_OK)
            return st;
        for (k = 0; k < bl->nstate; k++)
            if ((st = read_floats(src, bl->s[k], bl->rows * bl->cols, &crc, err)) != OT_OK)
                return st;
    }
    if (oti_src_read(src, crcb, 4) != 4)
        return oti_err(err, OT_ECORRUPT, "checkpoint cut short before its checksum");
    if (oti_get32(crcb) != crc)
        return oti_err(err, OT_ECORRUPT, "checkpoint checksum mismatch (stored %08x, computed %08x)",
                       oti_get32(crcb), crc);
    s->version = oti_get64(h + 32);
    s->published_version = oti_get64(h + 40);
    return OT_OK;
}
