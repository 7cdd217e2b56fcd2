/* parse.c - VW text and libsvm parsers (being written). */
#include "internal.h"

ot_status oti_parse_vw(ot_example *ex, const char *line, size_t len)
{
    (void)line; (void)len;
    return oti_err(ex->errmsg, OT_ENOTSUP, "not yet");
}

ot_status oti_parse_libsvm(ot_example *ex, const char *line, size_t len)
{
    (void)line; (void)len;
    return oti_err(ex->errmsg, OT_ENOTSUP, "not yet");
}
