/*
 * fuzz_predict_request.c - libFuzzer target for prediction requests
 * (lib/predict_serve.c, docs/wire-format.md "Prediction requests").
 *
 * Each input is decoded as a predictor's serving socket decodes a request:
 * the header (oti_pq_parse), then up to `count` examples (oti_pq_next, text
 * lines or binary records) into one reused example, each predicted with a
 * small model, as the server does before it replies.  Seeds:
 * tests/fuzz/corpus/fuzz_predict_request/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "predict_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EXAMPLES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ot_model *m;
    static ot_example *ex;
    char err[OTI_ERRMSG_LEN];
    oti_pq q;
    size_t off = 0;
    uint32_t i;

    if (m == NULL) {
        ot_config *cfg = NULL;
        if (ot_config_create(&cfg) != OT_OK)
            abort();
        ot_config_set_i64(cfg, OT_OPT_BITS, 8);
        if (ot_model_create(cfg, &m) != OT_OK || ot_example_create(cfg, &ex) != OT_OK)
            abort();
        ot_config_destroy(cfg);
    }
    if (oti_pq_parse(data, size, &q, err) != OT_OK)
        return 0;
    if (q.count == 0 || q.count > MAX_EXAMPLES)
        return 0;
    for (i = 0; i < q.count; i++) {
        float score;
        ot_status st;
        ot_example_clear(ex);
        st = oti_pq_next(&q, &off, ex, err);
        if (st != OT_OK)
            break;
        if (ot_model_predict(m, ex, &score) != OT_OK)
            abort();
        if (off > q.body_len)
            abort();
    }
    return 0;
}
