/*
 * reader.c - ot_reader: examples from a file, standard input, a gzip file or
 * memory, one line at a time.
 *
 * The reader keeps one buffer (1 MiB, grown up to max_line + 1 bytes when a
 * single line needs it), finds each line in place with memchr and parses it
 * straight from the buffer, so reading allocates nothing in the steady state.
 * Gzip input is decompressed with zlib's inflate, whose memory comes from the
 * reader's allocator.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef OT_HAVE_ZLIB
#include <zlib.h>
#endif

#include "internal.h"

#define READ_BUF_SIZE ((size_t)1 << 20) /* initial buffer of file readers */
#define GZ_IN_SIZE ((size_t)1 << 17)    /* compressed input chunk */

enum { SRC_MEMORY = 0, SRC_FD = 1, SRC_GZIP = 2 };

struct ot_reader {
    oti_alloc alloc;
    int format;      /* 0 vw, 1 libsvm */
    int skip;        /* on_error == "skip" */
    int hash_all;    /* hash == "all" */
    size_t max_line; /* longest accepted line, newline excluded */

    int kind;        /* SRC_* */
    int fd;          /* SRC_FD, SRC_GZIP */
    int own_fd;      /* close fd at the end (not for standard input) */

    char *buf;       /* bytes [pos, end) are read but not yet consumed */
    size_t cap, pos, end;
    int eof;         /* nothing more will come after buf[end] */
    int discarding;  /* skipping the rest of a line longer than max_line */
    ot_status failed; /* a sticky read error, or OT_OK */

    uint64_t line;   /* lines consumed so far */
    uint64_t skipped;
    char errmsg[OTI_ERRMSG_LEN];

#ifdef OT_HAVE_ZLIB
    z_stream z;
    int z_ready;     /* inflateInit2 succeeded */
    int z_in_eof;    /* the compressed file is exhausted */
    int z_member_end; /* the current gzip member is complete */
    int z_any;       /* some compressed input was seen */
    unsigned char *z_in;
#endif
};

/* ---- opening and closing -------------------------------------------------- */

static ot_status reader_new(const ot_config *cfg, ot_reader **out)
{
    oti_alloc a = oti_cfg_alloc(cfg);
    ot_reader *r = oti_calloc(&a, 1, sizeof(*r));

    if (r == NULL)
        return OT_ENOMEM;
    r->alloc = a;
    r->format = oti_cfg_choice(cfg, OT_OPT_FORMAT);
    r->skip = oti_cfg_choice(cfg, OT_OPT_ON_ERROR) == 1;
    r->hash_all = oti_cfg_choice(cfg, OT_OPT_HASH) == 1;
    r->max_line = (size_t)oti_cfg_i64(cfg, OT_OPT_MAX_LINE);
    r->fd = -1;
    r->failed = OT_OK;
    *out = r;
    return OT_OK;
}

void ot_reader_close(ot_reader *r)
{
    oti_alloc a;

    if (r == NULL)
        return;
    a = r->alloc;
#ifdef OT_HAVE_ZLIB
    if (r->z_ready)
        inflateEnd(&r->z);
    oti_free(&a, r->z_in, GZ_IN_SIZE);
#endif
    if (r->own_fd && r->fd >= 0)
        close(r->fd);
    oti_free(&a, r->buf, r->cap);
    oti_free(&a, r, sizeof(*r));
}

ot_status ot_reader_open_memory(const ot_config *cfg, const void *data, size_t len, ot_reader **out)
{
    ot_reader *r;
    ot_status st;

    if (out == NULL || (data == NULL && len > 0))
        return OT_EINVAL;
    st = reader_new(cfg, &r);
    if (st != OT_OK)
        return st;
    r->kind = SRC_MEMORY;
    r->cap = len > 0 ? len : 1;
    r->buf = oti_malloc(&r->alloc, r->cap);
    if (r->buf == NULL) {
        ot_reader_close(r);
        return OT_ENOMEM;
    }
    if (len > 0)
        memcpy(r->buf, data, len);
    r->end = len;
    r->eof = 1;
    *out = r;
    return OT_OK;
}

#ifdef OT_HAVE_ZLIB
/* zlib frees without a size; keep it in front of each block. */
#define Z_HDR ((sizeof(size_t) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * _Alignof(max_align_t))

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    ot_reader *r = opaque;
    size_t n;
    unsigned char *p;

    if (size != 0 && items > (SIZE_MAX - Z_HDR) / size)
        return Z_NULL;
    n = (size_t)items * size;
    p = oti_malloc(&r->alloc, n + Z_HDR);
    if (p == NULL)
        return Z_NULL;
    memcpy(p, &n, sizeof(n));
    return p + Z_HDR;
}

static void z_free(voidpf opaque, voidpf addr)
{
    ot_reader *r = opaque;
    unsigned char *p;
    size_t n;

    if (addr == Z_NULL)
        return;
    p = (unsigned char *)addr - Z_HDR;
    memcpy(&n, p, sizeof(n));
    oti_free(&r->alloc, p, n + Z_HDR);
}
#endif

static int ends_with_gz(const char *path)
{
    size_t n = strlen(path);
    return n >= 3 && strcmp(path + n - 3, ".gz") == 0;
}

ot_status ot_reader_open_file(const ot_config *cfg, const char *path, ot_reader **out)
{
    ot_reader *r;
    ot_status st;
    int gz;
    struct stat sb;

    if (out == NULL || path == NULL || path[0] == '\0')
        return OT_EINVAL;
    gz = strcmp(path, "-") != 0 && ends_with_gz(path);
#ifndef OT_HAVE_ZLIB
    if (gz)
        return OT_ENOTSUP;
#endif
    st = reader_new(cfg, &r);
    if (st != OT_OK)
        return st;
    if (strcmp(path, "-") == 0) {
        r->fd = STDIN_FILENO;
        r->own_fd = 0;
    } else {
        do
            r->fd = open(path, O_RDONLY | O_CLOEXEC);
        while (r->fd < 0 && errno == EINTR);
        if (r->fd < 0) {
            st = (errno == ENOENT || errno == ENOTDIR) ? OT_ENOENT : OT_EIO;
            ot_reader_close(r);
            return st;
        }
        r->own_fd = 1;
        if (fstat(r->fd, &sb) != 0 || S_ISDIR(sb.st_mode)) {
            ot_reader_close(r);
            return OT_EIO;
        }
    }
    r->kind = gz ? SRC_GZIP : SRC_FD;
    r->cap = READ_BUF_SIZE;
    if (r->cap > r->max_line + 1)
        r->cap = r->max_line + 1 > 4096 ? r->max_line + 1 : 4096;
    r->buf = oti_malloc(&r->alloc, r->cap);
    if (r->buf == NULL) {
        ot_reader_close(r);
        return OT_ENOMEM;
    }
#ifdef OT_HAVE_ZLIB
    if (gz) {
        r->z_in = oti_malloc(&r->alloc, GZ_IN_SIZE);
        if (r->z_in == NULL) {
            ot_reader_close(r);
            return OT_ENOMEM;
        }
        r->z.zalloc = z_alloc;
        r->z.zfree = z_free;
        r->z.opaque = r;
        r->z.next_in = Z_NULL;
        r->z.avail_in = 0;
        /* 15 + 16: gzip format only, the largest window. */
        if (inflateInit2(&r->z, 15 + 16) != Z_OK) {
            ot_reader_close(r);
            return OT_ENOMEM;
        }
        r->z_ready = 1;
    }
#endif
    *out = r;
    return OT_OK;
}

/* ---- reading -------------------------------------------------------------- */

static ot_status read_failed(ot_reader *r, ot_status st, const char *what, int err)
{
    char text[128];

    if (err != 0) {
        if (strerror_r(err, text, sizeof(text)) != 0)
            snprintf(text, sizeof(text), "errno %d", err);
        oti_err(r->errmsg, st, "line %llu: %s: %s", (unsigned long long)r->line + 1, what, text);
    } else {
        oti_err(r->errmsg, st, "line %llu: %s", (unsigned long long)r->line + 1, what);
    }
    r->failed = st;
    return st;
}

/* read(2) that retries on EINTR; -1 with errno on error. */
static ssize_t read_some(int fd, void *p, size_t n)
{
    ssize_t got;

    if (n > (size_t)SSIZE_MAX)
        n = (size_t)SSIZE_MAX;
    do
        got = read(fd, p, n);
    while (got < 0 && errno == EINTR);
    return got;
}

#ifdef OT_HAVE_ZLIB
/* Inflates into buf[end, cap) until some output comes or the input ends. */
static ot_status fill_gzip(ot_reader *r)
{
    z_stream *z = &r->z;
    size_t room = r->cap - r->end;

    if (room > UINT_MAX)
        room = UINT_MAX;
    z->next_out = (Bytef *)r->buf + r->end;
    z->avail_out = (uInt)room;
    while (z->avail_out == room && !r->eof) {
        int rc;

        if (z->avail_in == 0) {
            ssize_t got;
            if (r->z_in_eof) {
                /* An empty file is an empty input; a member cut short is not. */
                if (r->z_member_end || !r->z_any) {
                    r->eof = 1;
                    break;
                }
                return read_failed(r, OT_ECORRUPT, "truncated gzip data", 0);
            }
            got = read_some(r->fd, r->z_in, GZ_IN_SIZE);
            if (got < 0)
                return read_failed(r, OT_EIO, "read failed", errno);
            if (got == 0) {
                r->z_in_eof = 1;
                continue;
            }
            z->next_in = r->z_in;
            z->avail_in = (uInt)got;
            r->z_any = 1;
        }
        if (r->z_member_end) {
            /* More bytes after a complete member: the next member (RFC 1952). */
            if (inflateReset(z) != Z_OK)
                return read_failed(r, OT_ECORRUPT, "corrupt gzip data", 0);
            r->z_member_end = 0;
        }
        rc = inflate(z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            r->z_member_end = 1;
        } else if (rc == Z_MEM_ERROR) {
            return read_failed(r, OT_ENOMEM, "out of memory in zlib", 0);
        } else if (rc == Z_BUF_ERROR) {
            if (z->avail_in != 0)
                return read_failed(r, OT_ECORRUPT, "corrupt gzip data", 0);
        } else if (rc != Z_OK) {
            return read_failed(r, OT_ECORRUPT, "corrupt gzip data", 0);
        }
    }
    r->end += room - z->avail_out;
    return OT_OK;
}
#endif

/* Adds input after buf[end]; sets eof at the end. */
static ot_status fill(ot_reader *r)
{
    ssize_t got;

#ifdef OT_HAVE_ZLIB
    if (r->kind == SRC_GZIP)
        return fill_gzip(r);
#endif
    got = read_some(r->fd, r->buf + r->end, r->cap - r->end);
    if (got < 0)
        return read_failed(r, OT_EIO, "read failed", errno);
    if (got == 0)
        r->eof = 1;
    r->end += (size_t)got;
    return OT_OK;
}

/*
 * The next line: *line, *len (newline excluded); *too_long set for a line
 * longer than max_line, of which nothing is returned.  OT_EEOF at the end.
 */
static ot_status next_line(ot_reader *r, const char **line, size_t *len, int *too_long)
{
    ot_status st;

    *too_long = 0;
    for (;;) {
        size_t avail = r->end - r->pos;
        char *start = r->buf + r->pos;
        char *nl = avail > 0 ? memchr(start, '\n', avail) : NULL;

        if (nl != NULL) {
            size_t n = (size_t)(nl - start);
            r->pos += n + 1;
            if (r->discarding) {
                r->discarding = 0;
                *too_long = 1;
                *line = start;
                *len = 0;
                return OT_OK;
            }
            *line = start;
            *len = n;
            *too_long = n > r->max_line;
            return OT_OK;
        }
        if (r->eof) {
            r->pos = r->end;
            if (r->discarding) {
                r->discarding = 0;
                *too_long = 1;
                *line = start;
                *len = 0;
                return OT_OK;
            }
            if (avail == 0)
                return OT_EEOF;
            *line = start;
            *len = avail;
            *too_long = avail > r->max_line;
            return OT_OK;
        }
        if (r->discarding || avail > r->max_line) {
            /* Too long already: drop it and look for its end. */
            r->discarding = 1;
            r->pos = r->end = 0;
        } else if (r->pos > 0) {
            memmove(r->buf, start, avail);
            r->pos = 0;
            r->end = avail;
        }
        if (r->end == r->cap) {
            /* The buffer holds one partial line of at most max_line bytes;
             * grow it towards max_line + 1 so the newline fits too. */
            size_t ncap = r->cap * 2 < r->max_line + 1 ? r->cap * 2 : r->max_line + 1;
            char *nb = oti_realloc(&r->alloc, r->buf, r->cap, ncap);
            if (nb == NULL)
                return read_failed(r, OT_ENOMEM, "out of memory for a long line", 0);
            r->buf = nb;
            r->cap = ncap;
        }
        st = fill(r);
        if (st != OT_OK)
            return st;
    }
}

static int blank_or_comment(const char *s, size_t n)
{
    size_t i;

    if (n > 0 && s[0] == '#')
        return 1;
    for (i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

ot_status ot_reader_next(ot_reader *r, ot_example *ex)
{
    if (r == NULL || ex == NULL)
        return OT_EINVAL;
    if (r->failed != OT_OK)
        return r->failed;
    for (;;) {
        const char *line;
        size_t len;
        int too_long, saved_hash;
        ot_status st = next_line(r, &line, &len, &too_long);

        if (st == OT_EEOF) {
            ot_example_clear(ex);
            return OT_EEOF;
        }
        if (st != OT_OK)
            return st;
        r->line++;
        if (OTI_UNLIKELY(too_long)) {
            ot_example_clear(ex);
            oti_err(r->errmsg, OT_EFORMAT, "line %llu, column %zu: line longer than max_line (%zu bytes)",
                    (unsigned long long)r->line, r->max_line + 1, r->max_line);
            if (r->skip) {
                r->skipped++;
                continue;
            }
            return OT_EFORMAT;
        }
        if (r->line == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
            line += 3; /* a UTF-8 byte-order mark */
            len -= 3;
        }
        if (len == 0 || blank_or_comment(line, len))
            continue;
        saved_hash = ex->hash_all;
        ex->hash_all = r->hash_all;
        st = r->format == 1 ? oti_parse_libsvm(ex, line, len) : oti_parse_vw(ex, line, len);
        ex->hash_all = saved_hash;
        if (OTI_LIKELY(st == OT_OK))
            return OT_OK;
        if (st != OT_EFORMAT)
            return oti_err(r->errmsg, st, "line %llu: %s", (unsigned long long)r->line, ex->errmsg);
        oti_err(r->errmsg, OT_EFORMAT, "line %llu, %s", (unsigned long long)r->line, ex->errmsg);
        if (r->skip) {
            r->skipped++;
            continue;
        }
        return OT_EFORMAT;
    }
}

uint64_t ot_reader_line(const ot_reader *r)
{
    return r != NULL ? r->line : 0;
}

uint64_t ot_reader_skipped(const ot_reader *r)
{
    return r != NULL ? r->skipped : 0;
}

const char *ot_reader_errmsg(const ot_reader *r)
{
    return r != NULL ? r->errmsg : "";
}
