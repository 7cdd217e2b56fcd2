/*
 * cmd_inspect.c - `ot inspect FILE`: describes a delta file (one frame or
 * several written back to back) or a model file.
 *
 * For each delta frame: the header fields, whether the frame passes the
 * checks, and per block the sections, entries, value range and bytes per
 * entry.  With --model MODEL the frame is also validated against that model
 * and blocks are named.  For a model file: its fingerprint, its blocks and
 * the range of their values.
 *
 * Uses only the public header.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ot.h"

typedef struct blockstat {
    uint64_t sections, sparse, dense, entries, bytes;
    float mn, mx;
    int used;
} blockstat;

typedef struct walkstate {
    blockstat *bs;
    size_t nbs;
    int nomem;
    uint64_t encodings[4];
} walkstate;

static int inspect_usage(FILE *f)
{
    fprintf(f, "usage: ot inspect [--model MODEL] FILE\n\n"
               "Describes a delta file (one or more frames back to back) or a model file.\n"
               "  --model MODEL   also validate delta frames against this model file and\n"
               "                  name their blocks\n");
    return f == stdout ? 0 : 2;
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL) {
        fprintf(stderr, "ot: inspect: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t got;
        if (n == cap) {
            uint8_t *nb;
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                fprintf(stderr, "ot: inspect: %s: out of memory\n", path);
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "ot: inspect: %s: read error\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static int on_section(void *user, uint32_t block, int array, int encoding, int layout,
                      uint64_t first_row, uint64_t rows, uint32_t cols, size_t bytes, float mn,
                      float mx)
{
    walkstate *w = user;
    blockstat *b;

    (void)array;
    (void)first_row;
    if (block >= w->nbs) {
        size_t n = (size_t)block + 1, i;
        blockstat *nb = realloc(w->bs, n * sizeof(*nb));
        if (nb == NULL) {
            w->nomem = 1;
            return 1;
        }
        for (i = w->nbs; i < n; i++)
            memset(&nb[i], 0, sizeof(nb[i]));
        w->bs = nb;
        w->nbs = n;
    }
    b = &w->bs[block];
    if (!b->used) {
        b->used = 1;
        b->mn = mn;
        b->mx = mx;
    }
    b->sections++;
    if (layout == 0)
        b->sparse++;
    else
        b->dense++;
    b->entries += rows * cols;
    b->bytes += bytes;
    if (mn < b->mn)
        b->mn = mn;
    if (mx > b->mx)
        b->mx = mx;
    if (encoding >= 0 && encoding < 4)
        w->encodings[encoding] += rows * cols;
    return 0;
}

static uint64_t field(const uint8_t *d, size_t len, int f)
{
    uint64_t v = 0;

    ot_delta_peek(d, len, f, &v);
    return v;
}

static int inspect_frame(const uint8_t *d, size_t len, size_t index, const ot_model *m,
                         ot_delta_decoder *dec)
{
    walkstate w;
    ot_status st;
    uint64_t flags = field(d, len, OT_DELTA_FIELD_FLAGS), total_bytes = 0, total_entries = 0;
    size_t i;
    int k, bad = 0;

    memset(&w, 0, sizeof(w));
    printf("frame %zu: %zu bytes\n", index, len);
    printf("  format      %llu.%llu\n", (unsigned long long)field(d, len, OT_DELTA_FIELD_VERSION_MAJOR),
           (unsigned long long)field(d, len, OT_DELTA_FIELD_VERSION_MINOR));
    printf("  kind        %s%s%s\n", ot_delta_kind_name((int)field(d, len, OT_DELTA_FIELD_KIND)),
           (flags & OT_DELTA_FLAG_FIRST) ? ", first" : "", (flags & OT_DELTA_FLAG_LAST) ? ", last" : "");
    printf("  fingerprint %016llx\n", (unsigned long long)field(d, len, OT_DELTA_FIELD_FINGERPRINT));
    printf("  shard %llu, sender %llu, sequence %llu, version %llu -> %llu\n",
           (unsigned long long)field(d, len, OT_DELTA_FIELD_SHARD),
           (unsigned long long)field(d, len, OT_DELTA_FIELD_SENDER),
           (unsigned long long)field(d, len, OT_DELTA_FIELD_SEQUENCE),
           (unsigned long long)field(d, len, OT_DELTA_FIELD_BASE_VERSION),
           (unsigned long long)field(d, len, OT_DELTA_FIELD_NEW_VERSION));
    printf("  entries %llu, payload %llu bytes, checksum %08llx\n",
           (unsigned long long)field(d, len, OT_DELTA_FIELD_ENTRIES),
           (unsigned long long)field(d, len, OT_DELTA_FIELD_PAYLOAD_LENGTH),
           (unsigned long long)field(d, len, OT_DELTA_FIELD_CHECKSUM));
    st = ot_delta_walk(d, len, on_section, &w);
    if (st != OT_OK) {
        printf("  check       %s: %s\n", ot_status_name(st), ot_strerror(st));
        bad = 1;
    } else if (w.nomem) {
        printf("  (out of memory summarising sections)\n");
        bad = 1;
    } else {
        printf("  check       ok\n");
    }
    if (m != NULL && dec != NULL) {
        st = ot_delta_validate(dec, m, d, len);
        printf("  model       %s%s%s\n", st == OT_OK ? "matches" : ot_status_name(st),
               st == OT_OK ? "" : ": ", st == OT_OK ? "" : ot_delta_decoder_errmsg(dec));
        bad |= st != OT_OK;
    }
    if (w.nbs > 0) {
        printf("  %-5s %-14s %8s %6s %6s %10s %10s %11s %13s %13s\n", "block", "name", "sections",
               "sparse", "dense", "entries", "bytes", "bytes/entry", "min", "max");
        for (i = 0; i < w.nbs; i++) {
            const blockstat *b = &w.bs[i];
            const char *name = "";
            if (!b->used)
                continue;
            if (m != NULL)
                ot_model_block_info(m, i, &name, NULL, NULL, NULL, NULL, NULL);
            printf("  %-5zu %-14s %8llu %6llu %6llu %10llu %10llu %11.3f %13.6g %13.6g\n", i,
                   name != NULL ? name : "", (unsigned long long)b->sections,
                   (unsigned long long)b->sparse, (unsigned long long)b->dense,
                   (unsigned long long)b->entries, (unsigned long long)b->bytes,
                   b->entries ? (double)b->bytes / (double)b->entries : 0.0, b->mn, b->mx);
            total_bytes += b->bytes;
            total_entries += b->entries;
        }
        printf("  values:");
        for (k = 0; k < 4; k++)
            if (w.encodings[k] > 0)
                printf(" %s %llu", ot_delta_encoding_name(k), (unsigned long long)w.encodings[k]);
        printf("; %.3f payload bytes per entry, %.3f with the header\n",
               total_entries ? (double)total_bytes / (double)total_entries : 0.0,
               total_entries ? (double)len / (double)total_entries : 0.0);
    }
    free(w.bs);
    return bad;
}

static int inspect_model(const char *path)
{
    ot_model *m;
    ot_status st = ot_model_load(NULL, path, &m);
    size_t i, nb;

    if (st != OT_OK)
        return ot_tool_fail(path, st, "neither a delta frame nor a loadable model file");
    nb = ot_model_num_blocks(m);
    printf("model %s\n", path);
    printf("  fingerprint %016llx\n", (unsigned long long)ot_model_fingerprint(m));
    printf("  weights     %llu in %zu blocks, %llu examples learned\n",
           (unsigned long long)ot_model_num_weights(m), nb,
           (unsigned long long)ot_model_examples(m));
    printf("  %-5s %-14s %-5s %12s %10s %6s %5s %13s %13s %10s\n", "block", "name", "kind", "offset",
           "rows", "cols", "state", "min", "max", "nonzero");
    for (i = 0; i < nb; i++) {
        const char *name = "";
        const float *w;
        int kind = 0, nstate = 0;
        uint64_t off = 0, rows = 0, k, nz = 0;
        uint32_t cols = 0;
        float mn = 0, mx = 0;
        ot_model_block_info(m, i, &name, &kind, &off, &rows, &cols, &nstate);
        if (ot_model_block_data(m, i, OT_ARRAY_WEIGHTS, &w) == OT_OK && rows * cols > 0) {
            mn = mx = w[0];
            for (k = 0; k < rows * cols; k++) {
                if (w[k] < mn)
                    mn = w[k];
                if (w[k] > mx)
                    mx = w[k];
                nz += w[k] != 0.0f;
            }
        }
        printf("  %-5zu %-14s %-5d %12llu %10llu %6u %5d %13.6g %13.6g %10llu\n", i, name, kind,
               (unsigned long long)off, (unsigned long long)rows, cols, nstate, mn, mx,
               (unsigned long long)nz);
    }
    ot_model_destroy(m);
    return 0;
}

int ot_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL, *model_path = NULL;
    ot_model *m = NULL;
    ot_delta_decoder *dec = NULL;
    uint8_t *data;
    size_t len, off = 0, index = 0;
    int i, rc = 0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return inspect_usage(stdout);
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model_path = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return inspect_usage(stderr);
        else if (path == NULL)
            path = argv[i];
        else
            return inspect_usage(stderr);
    }
    if (path == NULL)
        return inspect_usage(stderr);
    if (read_file(path, &data, &len) != 0)
        return 1;
    if (len < 4 || memcmp(data, "OTDF", 4) != 0) {
        free(data);
        return inspect_model(path);
    }
    if (model_path != NULL) {
        ot_status st = ot_model_load(NULL, model_path, &m);
        if (st != OT_OK) {
            free(data);
            return ot_tool_fail(model_path, st, NULL);
        }
        if (ot_delta_decoder_create(NULL, &dec) != OT_OK) {
            ot_model_destroy(m);
            free(data);
            return ot_tool_fail("inspect", OT_ENOMEM, NULL);
        }
    }
    while (off < len) {
        uint64_t flen = 0;
        ot_status st = ot_delta_peek(data + off, len - off, OT_DELTA_FIELD_FRAME_LENGTH, &flen);
        if (st != OT_OK) {
            printf("frame %zu at byte %zu: %s: %s\n", index, off, ot_status_name(st),
                   ot_strerror(st));
            rc = 1;
            break;
        }
        rc |= inspect_frame(data + off, (size_t)flen, index, m, dec);
        off += (size_t)flen;
        index++;
    }
    ot_delta_decoder_destroy(dec);
    ot_model_destroy(m);
    free(data);
    return rc;
}
