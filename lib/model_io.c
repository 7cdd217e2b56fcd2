/*
 * model_io.c - saving and loading models: a versioned little-endian binary
 * file with a checksum (docs/models.md, "File format").
 *
 * A file is written to "<path>.tmp", flushed, fsync'd and renamed over
 * path, so a crash leaves the old file or the new one.  Loading treats the
 * file as hostile: every length is checked against the file's size before
 * anything is allocated, and the checksums are verified before the model is
 * handed out.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"

#define FILE_MAJOR 1
#define FILE_MINOR 0
#define FLAG_STATE 1u
#define HEADER_LEN 32
#define SHAPE_FIXED_LEN 96 /* the shape record before its three strings */
#define BLOCK_ENTRY_LEN 64
#define MAX_BLOCKS (2 + 256 + 2 * OTI_MODEL_MAX_LAYERS)
#define CHUNK 4096 /* floats converted per write or read */

static const uint8_t MAGIC[8] = {'O', 'T', 'M', 'O', 'D', 'E', 'L', 0};

/* ---- little-endian encoding -------------------------------------------- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    int i;
    for (i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    int i;
    for (i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_f64(uint8_t *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

static double get_f64(const uint8_t *p)
{
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* ---- save ---------------------------------------------------------------- */

typedef struct sink {
    FILE *fp;
    uint32_t crc;
    int failed;
} sink;

static void sink_write(sink *s, const void *data, size_t n)
{
    if (s->failed || n == 0)
        return;
    s->crc = oti_crc32c(s->crc, data, n);
    if (fwrite(data, 1, n, s->fp) != n)
        s->failed = 1;
}

static void sink_floats(sink *s, const float *x, uint64_t n)
{
    uint8_t buf[CHUNK * 4];

    while (n > 0 && !s->failed) {
        size_t k = n > CHUNK ? CHUNK : (size_t)n, i;
        for (i = 0; i < k; i++) {
            uint32_t v;
            memcpy(&v, &x[i], 4);
            put_u32(buf + 4 * i, v);
        }
        sink_write(s, buf, 4 * k);
        x += k;
        n -= k;
    }
}

static size_t shape_len(const oti_shape *sh)
{
    return SHAPE_FIXED_LEN + 12 + strlen(sh->quadratic) + strlen(sh->embedding) +
           strlen(sh->hidden_layers);
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    put_u32(p, (uint32_t)n);
    memcpy(p + 4, s, n);
    return p + 4 + n;
}

/* Writes the header, shape record, fingerprint, block table and header CRC
 * into buf (meta_len bytes). */
static void encode_meta(const ot_model *m, uint32_t flags, uint64_t file_size, uint8_t *buf,
                        size_t meta_len)
{
    const oti_shape *sh = &m->shape;
    size_t slen = shape_len(sh), i;
    uint8_t *p = buf;

    memcpy(p, MAGIC, 8);
    put_u16(p + 8, FILE_MAJOR);
    put_u16(p + 10, FILE_MINOR);
    put_u32(p + 12, flags);
    put_u64(p + 16, file_size);
    put_u32(p + 24, (uint32_t)slen);
    put_u32(p + 28, (uint32_t)m->params.nblocks);
    p += HEADER_LEN;
    put_u32(p + 0, sh->bits);
    put_u32(p + 4, (uint32_t)sh->loss);
    put_u32(p + 8, (uint32_t)sh->optimizer);
    put_u32(p + 12, (uint32_t)sh->activation);
    put_u32(p + 16, sh->embedding_bits);
    put_u32(p + 20, sh->dense_dim);
    put_u32(p + 24, sh->seed);
    put_u32(p + 28, 0);
    put_f64(p + 32, sh->learning_rate);
    put_f64(p + 40, sh->power_t);
    put_f64(p + 48, sh->l1);
    put_f64(p + 56, sh->l2);
    put_f64(p + 64, sh->ftrl_alpha);
    put_f64(p + 72, sh->ftrl_beta);
    put_f64(p + 80, sh->init_scale);
    put_u64(p + 88, m->examples);
    p += SHAPE_FIXED_LEN;
    p = put_str(p, sh->quadratic);
    p = put_str(p, sh->embedding);
    p = put_str(p, sh->hidden_layers);
    put_u64(p, m->params.fingerprint);
    p += 8;
    for (i = 0; i < m->params.nblocks; i++) {
        const oti_block *b = &m->params.blocks[i];
        memset(p, 0, BLOCK_ENTRY_LEN);
        put_u32(p + 0, (uint32_t)b->kind);
        put_u32(p + 4, (uint32_t)b->nstate);
        put_u64(p + 8, b->rows);
        put_u32(p + 16, b->cols);
        put_u64(p + 24, b->offset);
        memcpy(p + 32, b->name, strnlen(b->name, 31));
        p += BLOCK_ENTRY_LEN;
    }
    put_u32(p, oti_crc32c(0, buf, meta_len - 4));
}

/* fsyncs the directory holding path, so the rename itself is durable. */
static int sync_dir(const oti_alloc *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 1 : (slash == path ? 1 : (size_t)(slash - path));
    char *dir = oti_malloc(a, n + 1);
    int fd, rc = 0;

    if (dir == NULL)
        return -1;
    if (slash == NULL)
        memcpy(dir, ".", 1);
    else if (slash == path)
        memcpy(dir, "/", 1);
    else
        memcpy(dir, path, n);
    dir[n] = '\0';
    fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        /* Some file systems refuse fsync on a directory; that is not an error here. */
        if (fsync(fd) != 0 && errno != EINVAL && errno != EBADF)
            rc = -1;
        close(fd);
    }
    oti_free(a, dir, n + 1);
    return rc;
}

static ot_status io_status(int err)
{
    return err == ENOENT || err == ENOTDIR ? OT_ENOENT : OT_EIO;
}

ot_status ot_model_save(const ot_model *m, const char *path, ot_save_what what)
{
    /* The model is const for its weights; the error text is written only on
     * failure, which predict never reads. */
    char *errmsg;
    uint32_t flags;
    size_t meta_len, plen, i;
    uint64_t data = 0, file_size;
    uint8_t *meta, crcb[4];
    char *tmp;
    sink s;
    int err;
    ot_status st = OT_OK;

    if (m == NULL)
        return OT_EINVAL;
    errmsg = ((ot_model *)(uintptr_t)m)->errmsg;
    if (path == NULL || *path == '\0')
        return oti_err(errmsg, OT_EINVAL, "path is NULL or empty");
    if (what != OT_SAVE_WEIGHTS && what != OT_SAVE_WEIGHTS_AND_STATE)
        return oti_err(errmsg, OT_EINVAL, "unknown save kind %d", (int)what);
    flags = what == OT_SAVE_WEIGHTS_AND_STATE ? FLAG_STATE : 0;
    if (shape_len(&m->shape) > UINT32_MAX / 2)
        return oti_err(errmsg, OT_EINVAL, "options too long to save");
    meta_len = HEADER_LEN + shape_len(&m->shape) + 8 + BLOCK_ENTRY_LEN * m->params.nblocks + 4;
    for (i = 0; i < m->params.nblocks; i++) {
        const oti_block *b = &m->params.blocks[i];
        data += b->rows * b->cols * 4 * (uint64_t)(1 + (flags & FLAG_STATE ? b->nstate : 0));
    }
    file_size = meta_len + data + 4;

    meta = oti_malloc(&m->alloc, meta_len);
    plen = strlen(path);
    tmp = oti_malloc(&m->alloc, plen + 5);
    if (meta == NULL || tmp == NULL) {
        oti_free(&m->alloc, meta, meta_len);
        oti_free(&m->alloc, tmp, plen + 5);
        return oti_err(errmsg, OT_ENOMEM, "out of memory");
    }
    encode_meta(m, flags, file_size, meta, meta_len);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    s.fp = fopen(tmp, "wb");
    s.crc = 0;
    s.failed = 0;
    if (s.fp == NULL) {
        err = errno;
        st = oti_err(errmsg, io_status(err), "cannot create %s: %s", tmp, strerror(err));
        goto out;
    }
    sink_write(&s, meta, meta_len);
    for (i = 0; i < m->params.nblocks; i++) {
        const oti_block *b = &m->params.blocks[i];
        int k;
        sink_floats(&s, b->w, b->rows * b->cols);
        for (k = 0; (flags & FLAG_STATE) && k < b->nstate; k++)
            sink_floats(&s, b->s[k], b->rows * b->cols);
    }
    put_u32(crcb, s.crc);
    sink_write(&s, crcb, 4);
    err = s.failed ? errno : 0;
    if (!s.failed && fflush(s.fp) != 0) {
        s.failed = 1;
        err = errno;
    }
    if (!s.failed && fsync(fileno(s.fp)) != 0) {
        s.failed = 1;
        err = errno;
    }
    if (fclose(s.fp) != 0 && !s.failed) {
        s.failed = 1;
        err = errno;
    }
    if (s.failed) {
        st = oti_err(errmsg, OT_EIO, "cannot write %s: %s", tmp, strerror(err));
        remove(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        st = oti_err(errmsg, io_status(err), "cannot rename %s to %s: %s", tmp, path, strerror(err));
        remove(tmp);
        goto out;
    }
    if (sync_dir(&m->alloc, path) != 0)
        st = oti_err(errmsg, OT_EIO, "cannot sync the directory of %s", path);
out:
    oti_free(&m->alloc, meta, meta_len);
    oti_free(&m->alloc, tmp, plen + 5);
    return st;
}

/* ---- load ---------------------------------------------------------------- */

/* Where a load reads from: a file or memory, with a running CRC. */
typedef struct source {
    FILE *fp;
    const uint8_t *mem;
    uint64_t len, pos;
    uint32_t crc;
} source;

/* Reads exactly n bytes; -1 when the input ends first. */
static int src_read(source *s, void *buf, size_t n)
{
    if (n > s->len - s->pos)
        return -1;
    if (s->fp != NULL) {
        if (fread(buf, 1, n, s->fp) != n)
            return -1;
    } else {
        memcpy(buf, s->mem + s->pos, n);
    }
    s->pos += n;
    s->crc = oti_crc32c(s->crc, buf, n);
    return 0;
}

static int src_floats(source *s, float *x, uint64_t n)
{
    uint8_t buf[CHUNK * 4];

    while (n > 0) {
        size_t k = n > CHUNK ? CHUNK : (size_t)n, i;
        if (src_read(s, buf, 4 * k) != 0)
            return -1;
        for (i = 0; i < k; i++) {
            uint32_t v = get_u32(buf + 4 * i);
            memcpy(&x[i], &v, 4);
        }
        x += k;
        n -= k;
    }
    return 0;
}

static int all_finite(const float *x, uint64_t n)
{
    uint64_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* Reads a length-prefixed string from the shape record into a NUL-terminated
 * copy in out (allocated); -1 if it does not fit the record. */
static int take_str(const oti_alloc *a, const uint8_t *rec, size_t rec_len, size_t *pos,
                    char **out, size_t *out_size)
{
    uint32_t n;

    if (rec_len - *pos < 4)
        return -1;
    n = get_u32(rec + *pos);
    *pos += 4;
    if (n > rec_len - *pos || memchr(rec + *pos, 0, n) != NULL)
        return -1;
    *out = oti_malloc(a, (size_t)n + 1);
    if (*out == NULL)
        return -2;
    memcpy(*out, rec + *pos, n);
    (*out)[n] = '\0';
    *out_size = (size_t)n + 1;
    *pos += n;
    return 0;
}

/* Rebuilds FTRL's z from loaded weights (n = 0), so that a model loaded
 * without state keeps its weights until a coordinate is next trained. */
static void ftrl_from_weights(ot_model *m)
{
    size_t i;

    for (i = 0; i < m->params.nblocks; i++) {
        oti_block *b = &m->params.blocks[i];
        float l1, l2, d;
        uint64_t j, n = b->rows * b->cols;
        if (m->block_opt[i] != OTI_OPT_FTRL)
            continue;
        l1 = m->block_reg[i] ? m->l1 : 0.0f;
        l2 = m->block_reg[i] ? m->l2 : 0.0f;
        d = m->beta * m->inv_alpha + l2;
        for (j = 0; j < n; j++) {
            float w = b->w[j];
            b->s[1][j] = 0.0f;
            if (w == 0.0f || !(d > 0.0f)) {
                b->s[0][j] = 0.0f;
                if (!(d > 0.0f))
                    b->w[j] = 0.0f; /* what derive gives for n = 0 */
                continue;
            }
            b->s[0][j] = -(w * d + copysignf(l1, w));
        }
    }
}

static ot_status load_from(source *src, const ot_config *cfg, ot_model **out, char *errmsg)
{
    oti_alloc a = oti_cfg_alloc(cfg);
    uint8_t hdr[HEADER_LEN], *meta = NULL, crcb[4];
    char *strs[3] = {NULL, NULL, NULL};
    size_t strs_size[3] = {0, 0, 0};
    uint32_t flags, slen, nblocks, hcrc;
    uint64_t file_size, meta_len, data = 0, shape_total = 0, table_total = 0, examples, fp;
    size_t i, pos, plan_blocks;
    oti_shape sh;
    ot_model *m = NULL;
    ot_status st;
    const uint8_t *rec, *tab;
    int rc;

    /* Header. */
    if (src->len < HEADER_LEN) {
        size_t n = (size_t)src->len;
        if (src_read(src, hdr, n) != 0)
            return oti_err(errmsg, OT_EIO, "read failed");
        if (memcmp(hdr, MAGIC, n < 8 ? n : 8) != 0)
            return oti_err(errmsg, OT_EFORMAT, "not a model file");
        return oti_err(errmsg, OT_ECORRUPT, "truncated: %zu bytes", n);
    }
    if (src_read(src, hdr, HEADER_LEN) != 0)
        return oti_err(errmsg, OT_EIO, "read failed");
    if (memcmp(hdr, MAGIC, 8) != 0)
        return oti_err(errmsg, OT_EFORMAT, "not a model file (bad magic)");
    if (get_u16(hdr + 8) != FILE_MAJOR)
        return oti_err(errmsg, OT_EVERSION, "model file format %u.%u is not supported",
                       (unsigned)get_u16(hdr + 8), (unsigned)get_u16(hdr + 10));
    flags = get_u32(hdr + 12);
    file_size = get_u64(hdr + 16);
    slen = get_u32(hdr + 24);
    nblocks = get_u32(hdr + 28);
    if (file_size != src->len)
        return oti_err(errmsg, OT_ECORRUPT, "file is %llu bytes, its header says %llu",
                       (unsigned long long)src->len, (unsigned long long)file_size);
    if (slen < SHAPE_FIXED_LEN + 12 || nblocks < 2 || nblocks > MAX_BLOCKS)
        return oti_err(errmsg, OT_ECORRUPT, "bad header lengths");
    meta_len = (uint64_t)HEADER_LEN + slen + 8 + (uint64_t)BLOCK_ENTRY_LEN * nblocks + 4;
    if (meta_len + 4 > file_size)
        return oti_err(errmsg, OT_ECORRUPT, "header longer than the file");

    /* The rest of the metadata, checked by its own CRC before use. */
    meta = oti_malloc(&a, (size_t)meta_len);
    if (meta == NULL)
        return oti_err(errmsg, OT_ENOMEM, "out of memory");
    memcpy(meta, hdr, HEADER_LEN);
    if (src_read(src, meta + HEADER_LEN, (size_t)meta_len - HEADER_LEN) != 0) {
        st = oti_err(errmsg, OT_EIO, "read failed");
        goto out;
    }
    hcrc = get_u32(meta + meta_len - 4);
    if (oti_crc32c(0, meta, (size_t)meta_len - 4) != hcrc) {
        st = oti_err(errmsg, OT_ECORRUPT, "header checksum mismatch");
        goto out;
    }
    if (flags & ~FLAG_STATE) {
        st = oti_err(errmsg, OT_EFORMAT, "unknown flags 0x%x", (unsigned)flags);
        goto out;
    }

    /* Shape record. */
    rec = meta + HEADER_LEN;
    memset(&sh, 0, sizeof(sh));
    sh.bits = get_u32(rec + 0);
    sh.loss = get_u32(rec + 4) <= 0xff ? (int)get_u32(rec + 4) : -1; /* checked by the build */
    sh.optimizer = get_u32(rec + 8) <= 0xff ? (int)get_u32(rec + 8) : -1;
    sh.activation = get_u32(rec + 12) <= 0xff ? (int)get_u32(rec + 12) : -1;
    sh.embedding_bits = get_u32(rec + 16);
    sh.dense_dim = get_u32(rec + 20);
    sh.seed = get_u32(rec + 24);
    sh.learning_rate = get_f64(rec + 32);
    sh.power_t = get_f64(rec + 40);
    sh.l1 = get_f64(rec + 48);
    sh.l2 = get_f64(rec + 56);
    sh.ftrl_alpha = get_f64(rec + 64);
    sh.ftrl_beta = get_f64(rec + 72);
    sh.init_scale = get_f64(rec + 80);
    examples = get_u64(rec + 88);
    pos = SHAPE_FIXED_LEN;
    for (i = 0; i < 3; i++) {
        rc = take_str(&a, rec, slen, &pos, &strs[i], &strs_size[i]);
        if (rc != 0) {
            st = rc == -2 ? oti_err(errmsg, OT_ENOMEM, "out of memory")
                          : oti_err(errmsg, OT_EFORMAT, "bad option string in the shape record");
            goto out;
        }
    }
    /* Bytes after the strings belong to later minor versions: skipped. */
    sh.quadratic = strs[0];
    sh.embedding = strs[1];
    sh.hidden_layers = strs[2];
    fp = get_u64(rec + slen);
    tab = rec + slen + 8;

    /* Sizes: the shape's and the table's must agree with each other and
     * with the file's size before anything big is allocated. */
    if (oti_shape_total(&sh, &shape_total, &plan_blocks) != OT_OK) {
        st = oti_err(errmsg, OT_EFORMAT, "the file's options are invalid");
        goto out;
    }
    if (plan_blocks != nblocks) {
        st = oti_err(errmsg, OT_EFORMAT, "block count %u does not match the options",
                     (unsigned)nblocks);
        goto out;
    }
    for (i = 0; i < nblocks; i++) {
        const uint8_t *e = tab + i * BLOCK_ENTRY_LEN;
        uint64_t rows = get_u64(e + 8), cols = get_u32(e + 16), ns = get_u32(e + 4), n;
        /* Bounds well above any valid block keep the sums below from overflowing. */
        if (rows == 0 || rows > (UINT64_C(1) << 32) || cols == 0 || cols > (UINT64_C(1) << 22) ||
            ns > OTI_MAX_STATE) {
            st = oti_err(errmsg, OT_EFORMAT, "bad block table entry %zu", i);
            goto out;
        }
        n = rows * cols;
        table_total += n;
        data += n * 4 * (1 + ((flags & FLAG_STATE) ? ns : 0));
        if (table_total > file_size || data > file_size) {
            st = oti_err(errmsg, OT_ECORRUPT, "blocks larger than the file");
            goto out;
        }
    }
    if (table_total != shape_total || meta_len + data + 4 != file_size) {
        st = oti_err(errmsg, OT_ECORRUPT, "data size does not match the file size");
        goto out;
    }

    /* Rebuild the model from its options and check it is the one saved. */
    st = oti_model_build(&a, &sh, 0, &m, errmsg);
    if (st != OT_OK) {
        if (st != OT_ENOMEM)
            st = OT_EFORMAT;
        goto out;
    }
    if (m->params.fingerprint != fp) {
        st = oti_err(errmsg, OT_ECORRUPT, "fingerprint mismatch");
        goto out;
    }
    for (i = 0; i < nblocks; i++) {
        const uint8_t *e = tab + i * BLOCK_ENTRY_LEN;
        const oti_block *b = &m->params.blocks[i];
        char name[33];
        memcpy(name, e + 32, 32);
        name[32] = '\0';
        if (get_u32(e) != (uint32_t)b->kind || get_u32(e + 4) != (uint32_t)b->nstate ||
            get_u64(e + 8) != b->rows || get_u32(e + 16) != b->cols ||
            get_u64(e + 24) != b->offset || strcmp(name, b->name) != 0) {
            st = oti_err(errmsg, OT_ECORRUPT, "block %zu does not match the options", i);
            goto out;
        }
    }

    /* Arrays. */
    for (i = 0; i < nblocks; i++) {
        oti_block *b = &m->params.blocks[i];
        uint64_t n = b->rows * b->cols;
        int k;
        if (src_floats(src, b->w, n) != 0) {
            st = oti_err(errmsg, OT_ECORRUPT, "truncated in block %s", b->name);
            goto out;
        }
        for (k = 0; (flags & FLAG_STATE) && k < b->nstate; k++) {
            if (src_floats(src, b->s[k], n) != 0) {
                st = oti_err(errmsg, OT_ECORRUPT, "truncated in block %s", b->name);
                goto out;
            }
        }
    }
    {
        uint32_t want = src->crc;
        if (src_read(src, crcb, 4) != 0 || get_u32(crcb) != want) {
            st = oti_err(errmsg, OT_ECORRUPT, "checksum mismatch");
            goto out;
        }
    }
    for (i = 0; i < nblocks; i++) {
        const oti_block *b = &m->params.blocks[i];
        int k, ok = all_finite(b->w, b->rows * b->cols);
        for (k = 0; ok && (flags & FLAG_STATE) && k < b->nstate; k++)
            ok = all_finite(b->s[k], b->rows * b->cols);
        if (!ok) {
            st = oti_err(errmsg, OT_EFORMAT, "non-finite value in block %s", b->name);
            goto out;
        }
    }
    if (!(flags & FLAG_STATE))
        ftrl_from_weights(m);
    m->examples = examples;
    *out = m;
    m = NULL;
    st = OT_OK;
out:
    ot_model_destroy(m);
    for (i = 0; i < 3; i++)
        oti_free(&a, strs[i], strs_size[i]);
    oti_free(&a, meta, (size_t)meta_len);
    return st;
}

ot_status oti_model_load_mem(const ot_config *cfg, const void *data, size_t len, ot_model **out,
                             char *errmsg)
{
    char ignored[OTI_ERRMSG_LEN];
    source s;

    if (errmsg == NULL)
        errmsg = ignored;
    if (out == NULL || (data == NULL && len > 0))
        return oti_err(errmsg, OT_EINVAL, "NULL argument");
    memset(&s, 0, sizeof(s));
    s.mem = data;
    s.len = len;
    return load_from(&s, cfg, out, errmsg);
}

ot_status ot_model_load(const ot_config *cfg, const char *path, ot_model **out)
{
    char errmsg[OTI_ERRMSG_LEN];
    struct stat stt;
    source s;
    ot_status st;
    int err;

    if (path == NULL || out == NULL)
        return OT_EINVAL;
    memset(&s, 0, sizeof(s));
    s.fp = fopen(path, "rb");
    if (s.fp == NULL)
        return io_status(errno);
    if (fstat(fileno(s.fp), &stt) != 0) {
        err = errno;
        fclose(s.fp);
        return io_status(err);
    }
    if (!S_ISREG(stt.st_mode)) {
        fclose(s.fp);
        return OT_EIO;
    }
    s.len = (uint64_t)stt.st_size;
    st = load_from(&s, cfg, out, errmsg);
    fclose(s.fp);
    return st;
}
