/*
 * fuzz_model_load.c - libFuzzer target for model files (lib/model_io.c).
 *
 * Each input is loaded twice through oti_model_load_mem (what
 * ot_model_load does with a file's bytes): as it is, which exercises the
 * header, size and checksum checks, and with both CRC32C fields recomputed,
 * so that mutations also reach the checks behind the checksums (options,
 * block table, fingerprint, values).  A model that loads is then used
 * (predict, learn, clone) and destroyed.  Seeds:
 * tests/fuzz/corpus/fuzz_model_load/ (small saved models).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void use(ot_model *m)
{
    ot_example *ex = NULL;
    ot_model *c = NULL;
    float p;

    if (ot_example_create(NULL, &ex) != OT_OK)
        return;
    ot_example_add_hashed(ex, 'a', 12345u, 1.0f);
    ot_example_add_hashed(ex, 'u', 678u, 0.5f);
    ot_example_set_label(ex, 1.0f);
    ot_model_predict(m, ex, &p);
    ot_model_learn(m, ex, NULL);
    if (ot_model_clone(m, &c) == OT_OK)
        ot_model_destroy(c);
    ot_example_destroy(ex);
}

static void try_load(const uint8_t *data, size_t size)
{
    ot_model *m = NULL;

    if (oti_model_load_mem(NULL, data, size, &m, NULL) == OT_OK) {
        use(m);
        ot_model_destroy(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    uint64_t meta;

    try_load(data, size);
    /* Recompute the header CRC (at 32 + shape + 8 + 64 * blocks) and the
     * file CRC (the last 4 bytes), and make the size field match. */
    if (size < 40 || size > (1u << 20))
        return 0;
    meta = 32 + (uint64_t)rd32(data + 24) + 8 + 64 * (uint64_t)rd32(data + 28);
    if (meta + 8 > size)
        return 0;
    copy = malloc(size);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    {
        uint64_t s = size;
        int i;
        for (i = 0; i < 8; i++)
            copy[16 + i] = (uint8_t)(s >> (8 * i));
    }
    wr32(copy + meta, oti_crc32c(0, copy, (size_t)meta));
    wr32(copy + size - 4, oti_crc32c(0, copy, size - 4));
    try_load(copy, size);
    free(copy);
    return 0;
}
