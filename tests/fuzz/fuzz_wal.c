/*
 * fuzz_wal.c - libFuzzer target for write-ahead log segments (lib/wal.c,
 * docs/durability.md "Write-ahead log").
 *
 * Each input is scanned as a segment with oti_wal_scan(), any model and
 * shard accepted, and every record it hands out is applied to a small FTRL
 * model (bits 4) with the delta decoder, as a server's restart does.  The
 * scan runs twice: on the input as it is, and with the segment header's and
 * every record's CRC32C recomputed, so that mutations also reach the checks
 * behind the checksums (lengths, frame headers, versions, the frames
 * themselves).  Seeds: tests/fuzz/corpus/fuzz_wal/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "durable.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct ctx {
    ot_model *m;
    ot_delta_decoder *dec;
    uint64_t last;
} ctx;

static ctx *state(void)
{
    static ctx c;

    if (c.m == NULL) {
        ot_config *cfg = NULL;
        if (ot_config_create(&cfg) != OT_OK)
            abort();
        ot_config_set_i64(cfg, OT_OPT_BITS, 4);
        if (ot_model_create(cfg, &c.m) != OT_OK || ot_delta_decoder_create(cfg, &c.dec) != OT_OK)
            abort();
        ot_config_destroy(cfg);
    }
    return &c;
}

static ot_status apply(void *arg, const oti_wal_rec *r, char *err)
{
    ctx *c = arg;

    (void)err;
    if (r->version <= c->last)
        abort(); /* the scanner promised increasing versions */
    c->last = r->version;
    (void)ot_delta_apply(c->dec, c->m, r->frame, r->len);
    return OT_OK;
}

static void scan(const uint8_t *data, size_t size)
{
    oti_alloc a = {NULL, NULL};
    oti_wal_scaninfo info;
    oti_src src;
    ctx *c = state();
    char err[OTI_ERRMSG_LEN];

    c->last = 0;
    oti_src_mem(&src, data, size);
    if (oti_wal_scan(&a, &src, 0, UINT32_MAX, 1u << 16, apply, c, &info, err) == OT_OK &&
        (info.good_end > size || (!info.torn && !info.header_bad && info.good_end != size)))
        abort(); /* a clean scan ends at the end; good_end never passes it */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    size_t off;

    scan(data, size);
    if (size < OTI_WAL_SEG_HEADER || size > (1u << 20))
        return 0;
    copy = malloc(size);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    oti_put32(copy + 36, oti_crc32c(0, copy, 36));
    off = OTI_WAL_SEG_HEADER;
    while (size - off >= OTI_WAL_REC_HEADER) {
        uint32_t len = oti_get32(copy + off + 4), crc;
        if (len > size - off - OTI_WAL_REC_HEADER)
            break;
        crc = oti_crc32c(0, copy + off, 28);
        crc = oti_crc32c(crc, copy + off + OTI_WAL_REC_HEADER, len);
        oti_put32(copy + off + 28, crc);
        off += OTI_WAL_REC_HEADER + len;
    }
    scan(copy, size);
    free(copy);
    return 0;
}
