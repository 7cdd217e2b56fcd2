/*
 * parse_fuzz.h - the body of the parser fuzz targets (fuzz_vw.c, fuzz_libsvm.c),
 * which define FORMAT and include this file.
 *
 * The input is parsed as one line (ot_example_parse, which must never read
 * past its length), then read as a whole file through ot_reader_open_memory
 * with on_error "stop" and a small max_line, and again with "skip".  Any
 * broken invariant aborts, which libFuzzer reports.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "onlinetrain.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_example(const ot_example *ex)
{
    size_t i, n = ot_example_num_features(ex), tlen;
    float w = ot_example_weight(ex);

    if (!isfinite(ot_example_label(ex)) || !isfinite(w) || w < 0.0f)
        abort();
    if (!ot_example_has_label(ex) && ot_example_label(ex) != 0.0f)
        abort();
    (void)ot_example_tag(ex, &tlen);
    for (i = 0; i < n; i++) {
        float v;
        if (ot_example_feature(ex, i, NULL, NULL, &v) != OT_OK || !isfinite(v) || v == 0.0f)
            abort();
    }
}

static void read_all(const ot_config *cfg, const uint8_t *data, size_t size, ot_example *ex)
{
    ot_reader *r;
    ot_status st;
    size_t calls = 0;

    if (ot_reader_open_memory(cfg, data, size, &r) != OT_OK)
        abort();
    /* Each call consumes at least one line, so this ends. */
    while ((st = ot_reader_next(r, ex)) != OT_EEOF) {
        if (st == OT_OK)
            check_example(ex);
        else if (st != OT_EFORMAT || strncmp(ot_reader_errmsg(r), "line ", 5) != 0)
            abort();
        if (++calls > size + 1)
            abort();
    }
    if (ot_reader_line(r) > size + 1)
        abort();
    ot_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ot_config *stop, *skip;
    static ot_example *ex;
    ot_status st;

    if (ex == NULL) {
        if (ot_config_create(&stop) != OT_OK || ot_config_create(&skip) != OT_OK ||
            ot_config_set_str(stop, OT_OPT_FORMAT, FORMAT) != OT_OK ||
            ot_config_set_str(skip, OT_OPT_FORMAT, FORMAT) != OT_OK ||
            ot_config_set_i64(stop, OT_OPT_MAX_LINE, 64) != OT_OK ||
            ot_config_set_str(skip, OT_OPT_ON_ERROR, "skip") != OT_OK ||
            ot_config_set_str(skip, OT_OPT_HASH, "all") != OT_OK ||
            ot_example_create(NULL, &ex) != OT_OK)
            abort();
    }

    st = ot_example_parse(ex, FORMAT, (const char *)data, size);
    if (st == OT_OK)
        check_example(ex);
    else if (st != OT_EFORMAT || strncmp(ot_example_errmsg(ex), "column ", 7) != 0 ||
             ot_example_num_features(ex) != 0)
        abort();

    read_all(stop, data, size, ex);
    read_all(skip, data, size, ex);
    return 0;
}
