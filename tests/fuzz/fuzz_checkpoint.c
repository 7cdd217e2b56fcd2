/*
 * fuzz_checkpoint.c - libFuzzer target for parameter-server checkpoint files
 * (lib/checkpoint.c, docs/durability.md "Checkpoint file").
 *
 * Each input is read with oti_ckpt_read() into a small FTRL model (bits 4:
 * a bias and 16 wide weights, each with z and n) twice: as it is, which
 * exercises the header, size and checksum checks, and with the file-length
 * field and the trailing CRC32C recomputed, so that mutations also reach the
 * checks behind them (header length, fingerprint, counts, trainer table,
 * finite values).  Seeds: tests/fuzz/corpus/fuzz_checkpoint/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "durable.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ot_model *model(void)
{
    static ot_model *m;

    if (m == NULL) {
        ot_config *cfg = NULL;
        if (ot_config_create(&cfg) != OT_OK)
            abort();
        ot_config_set_i64(cfg, OT_OPT_BITS, 4);
        if (ot_model_create(cfg, &m) != OT_OK)
            abort();
        ot_config_destroy(cfg);
    }
    return m;
}

static void try_read(const uint8_t *data, size_t size)
{
    oti_alloc a = {NULL, NULL};
    oti_ckpt_state s;
    oti_src src;
    char err[OTI_ERRMSG_LEN];

    memset(&s, 0, sizeof(s));
    oti_src_mem(&src, data, size);
    if (oti_ckpt_read(&a, &src, model(), &s, err) == OT_OK) {
        size_t i;
        for (i = 1; i < s.ntrainers; i++)
            if (s.trainers[i].id <= s.trainers[i - 1].id)
                abort(); /* the reader promised strictly increasing ids */
    }
    oti_ckpt_state_fini(&a, &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;

    try_read(data, size);
    if (size < OTI_CKPT_HEADER + 4 || size > (1u << 20))
        return 0;
    copy = malloc(size);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    oti_put64(copy + 16, size);
    oti_put32(copy + size - 4, oti_crc32c(0, copy, size - 4));
    try_read(copy, size);
    free(copy);
    return 0;
}
