/*
 * fuzz_delta.c - libFuzzer target for the delta decoder.
 *
 * Feeds arbitrary bytes to every decoding entry point against a small
 * params view (four blocks: bias, wide, an embedding with FTRL-like state,
 * a dense layer): header peek, model-free check and walk, validate and apply
 * to the params, apply to a shadow, merge with itself and with a valid
 * frame.  When the first byte is odd the checksum is recomputed first, so the
 * fuzzer gets past it and explores the payload parser.  After applying, the
 * encoder runs on the result, first limited to a key range taken from the
 * input, then whole, and its frames must validate (the encoder's output is
 * checked too).  Any crash, sanitizer report, leak or abort is a
 * finding.
 *
 * Build: `make fuzz` (clang -fsanitize=fuzzer,address,undefined); seeds in
 * tests/fuzz/corpus/fuzz_delta/ (frames of this params shape; fingerprint
 * 0x0123456789abcdef).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "delta.h"

#define FP 0x0123456789abcdefULL

typedef struct spec {
    uint64_t rows;
    uint32_t cols;
    int nstate;
    int dense;
} spec;

static const spec shape[] = {{1, 1, 0, 0}, {100, 1, 0, 0}, {10, 3, 2, 0}, {4, 5, 1, 1}};
#define NB (sizeof(shape) / sizeof(shape[0]))

static oti_params *params_new(void)
{
    oti_params *p = calloc(1, sizeof(*p));
    uint64_t off = 0;
    size_t b, i;
    int k;

    if (p == NULL)
        abort();
    p->blocks = calloc(NB, sizeof(oti_block));
    if (p->blocks == NULL)
        abort();
    p->nblocks = NB;
    for (b = 0; b < NB; b++) {
        oti_block *blk = &p->blocks[b];
        size_t n = (size_t)(shape[b].rows * shape[b].cols);
        blk->kind = shape[b].dense ? OTI_BLOCK_DENSE : OTI_BLOCK_WIDE;
        blk->offset = off;
        blk->rows = shape[b].rows;
        blk->cols = shape[b].cols;
        blk->nstate = shape[b].nstate;
        blk->dense_hint = shape[b].dense;
        blk->w = calloc(n, sizeof(float));
        for (k = 0; k < shape[b].nstate; k++)
            blk->s[k] = calloc(n, sizeof(float));
        blk->touched_bits = calloc((size_t)((blk->rows + 63) / 64), sizeof(uint64_t));
        blk->touched_list = calloc((size_t)blk->rows, sizeof(uint32_t));
        for (i = 0; i < n; i++) {
            blk->w[i] = (float)i * 0.25f - 1.0f;
            for (k = 0; k < shape[b].nstate; k++)
                blk->s[k][i] = (float)i * 0.5f;
        }
        off += n;
    }
    p->total = off;
    p->fingerprint = FP;
    return p;
}

static void params_free(oti_params *p)
{
    size_t b;
    int k;

    for (b = 0; b < p->nblocks; b++) {
        free(p->blocks[b].w);
        for (k = 0; k < OTI_MAX_STATE; k++)
            free(p->blocks[b].s[k]);
        free(p->blocks[b].touched_bits);
        free(p->blocks[b].touched_list);
    }
    free(p->blocks);
    free(p);
}

static int walk_cb(void *user, uint32_t block, int array, int encoding, int layout,
                   uint64_t first_row, uint64_t rows, uint32_t cols, size_t bytes, float mn,
                   float mx)
{
    uint64_t *sum = user;

    *sum += block + (uint64_t)array + (uint64_t)encoding + (uint64_t)layout + first_row + rows +
            cols + bytes + (mn <= mx);
    return 0;
}

/* The encoder's output must always be valid for the params it came from.
 * `d` accepts every shard: the encoder here writes shard 0, while the
 * input's decoder may have been limited to another shard. */
static void encode_and_check(ot_delta_encoder *e, ot_delta_decoder *d, oti_params *p,
                             oti_shadow *sh, int full)
{
    uint8_t buf[8192];
    size_t len = 0;
    int more = 0;
    ot_status st = full ? oti_delta_encode_set(e, p, sh, 1, buf, sizeof(buf), &len, &more)
                        : oti_delta_encode_add(e, p, sh, buf, sizeof(buf), &len, &more);
    oti_frame f;

    if (st == OT_OK && oti_delta_validate_params(d, p, buf, len, &f) != OT_OK)
        abort();
    if (st != OT_OK && st != OT_ENOSPC && st != OT_ETOOBIG)
        abort();
}

/* An ADD frame limited to a key range taken from the input's last bytes
 * must hold only rows that start in it (a decoder of that range takes it);
 * the rows outside stay for the frame encode_and_check() makes next. */
static void encode_range_and_check(ot_delta_encoder *e, oti_params *p, oti_shadow *sh,
                                   const uint8_t *data, size_t size)
{
    ot_delta_decoder *rd = NULL;
    uint8_t buf[8192];
    size_t len = 0;
    uint64_t lo, hi;
    int more = 0;
    ot_status st;
    oti_frame f;

    if (size < 3)
        return;
    lo = data[size - 2] * p->total / 256;
    hi = lo + 1 + data[size - 3] * (p->total - lo) / 256;
    if (ot_delta_decoder_create(NULL, &rd) != OT_OK ||
        ot_delta_decoder_set_shard(rd, 0, lo, hi) != OT_OK)
        abort();
    oti_delta_encoder_range(e, lo, hi);
    st = oti_delta_encode_add(e, p, sh, buf, sizeof(buf), &len, &more);
    oti_delta_encoder_range(e, 0, 0);
    if (st == OT_OK && oti_delta_validate_params(rd, p, buf, len, &f) != OT_OK)
        abort();
    if (st != OT_OK && st != OT_ENOSPC && st != OT_ETOOBIG)
        abort();
    ot_delta_decoder_destroy(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    oti_params *p = params_new();
    oti_shadow *sh = NULL;
    ot_delta_decoder *d = NULL, *any = NULL;
    ot_delta_encoder *e = NULL;
    uint8_t *buf = malloc(size ? size : 1), *m = NULL;
    size_t mlen = 0;
    uint64_t v, sum = 0;
    const uint8_t *pl;
    size_t pn;
    int field;
    oti_frame f;

    if (buf == NULL)
        abort();
    memcpy(buf, data, size);
    /* odd first byte: fix the checksum so the payload parser is reached */
    if (size >= OTI_HEADER_SIZE && (data[0] & 1u)) {
        buf[0] = OTI_FRAME_MAGIC0;
        oti_put32(buf + OTI_H_CHECKSUM, oti_frame_crc(buf, size));
    }
    for (field = 0; field <= OT_DELTA_FIELD_FRAME_LENGTH + 1; field++)
        if (ot_delta_peek(buf, size, field, &v) == OT_OK)
            sum += v;
    (void)ot_delta_check(buf, size);
    (void)ot_delta_walk(buf, size, walk_cb, &sum);
    (void)ot_delta_control_payload(buf, size, &pl, &pn);

    if (ot_delta_decoder_create(NULL, &d) != OT_OK || ot_delta_decoder_create(NULL, &any) != OT_OK ||
        ot_delta_encoder_create(NULL, &e) != OT_OK ||
        oti_shadow_create(NULL, p, OTI_SRC_BOTH, 0, &sh) != OT_OK)
        abort();
    if (size > 0 && (data[size - 1] & 3u) == 1)
        (void)ot_delta_decoder_set_shard(d, 7, 10, 60);
    (void)oti_delta_validate_params(d, p, buf, size, &f);
    if (oti_delta_apply_params(d, p, buf, size) == OT_OK) {
        /* a valid frame: the shadow takes it too, then the encoder sends
         * the difference, which must validate */
        (void)oti_delta_apply_shadow(d, sh, buf, size);
        encode_range_and_check(e, p, sh, data, size);
        encode_and_check(e, any, p, sh, 0);
        encode_and_check(e, any, p, sh, 1);
        /* merging a frame with itself doubles it */
        if (oti_delta_merge(e, p, buf, size, buf, size, NULL, 0, &mlen) == OT_ENOSPC) {
            m = malloc(mlen);
            if (m == NULL)
                abort();
            if (oti_delta_merge(e, p, buf, size, buf, size, m, mlen, &mlen) == OT_OK &&
                oti_delta_validate_params(any, p, m, mlen, &f) != OT_OK)
                abort();
            free(m);
        }
    } else {
        (void)oti_delta_apply_shadow(d, sh, buf, size);
    }
    ot_delta_encoder_destroy(e);
    ot_delta_decoder_destroy(d);
    ot_delta_decoder_destroy(any);
    oti_shadow_destroy(sh);
    params_free(p);
    free(buf);
    return sum == 42 ? 0 : 0;
}
