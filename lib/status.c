/*
 * status.c - status names and messages, and per-handle error text.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "internal.h"

static const struct {
    const char *name;
    const char *msg;
} status_table[] = {
    [OT_OK] = {"OT_OK", "success"},
    [OT_EINVAL] = {"OT_EINVAL", "invalid argument"},
    [OT_ENOMEM] = {"OT_ENOMEM", "out of memory"},
    [OT_ENOTSUP] = {"OT_ENOTSUP", "not supported"},
    [OT_EBADTYPE] = {"OT_EBADTYPE", "option has another type"},
    [OT_ERANGE] = {"OT_ERANGE", "value out of range"},
    [OT_ESTATE] = {"OT_ESTATE", "not allowed in the current state"},
    [OT_ENOSPC] = {"OT_ENOSPC", "buffer too small"},
    [OT_EFORMAT] = {"OT_EFORMAT", "malformed input"},
    [OT_ECORRUPT] = {"OT_ECORRUPT", "corrupt or truncated data"},
    [OT_EVERSION] = {"OT_EVERSION", "unsupported format version"},
    [OT_EMISMATCH] = {"OT_EMISMATCH", "data is for a model of another shape"},
    [OT_ENONFINITE] = {"OT_ENONFINITE", "non-finite value"},
    [OT_EIO] = {"OT_EIO", "input/output error"},
    [OT_EEOF] = {"OT_EEOF", "end of input"},
    [OT_ETIMEDOUT] = {"OT_ETIMEDOUT", "timed out"},
    [OT_ECLOSED] = {"OT_ECLOSED", "closed"},
    [OT_ECONNREFUSED] = {"OT_ECONNREFUSED", "connection refused"},
    [OT_EADDRINUSE] = {"OT_EADDRINUSE", "address in use"},
    [OT_EREPLAY] = {"OT_EREPLAY", "already seen (replay)"},
    [OT_EAUTH] = {"OT_EAUTH", "authentication failed"},
    [OT_ETRANSPORT] = {"OT_ETRANSPORT", "transport error"},
    [OT_ENOENT] = {"OT_ENOENT", "no such entry"},
    [OT_EBUSY] = {"OT_EBUSY", "resource busy"},
    [OT_ETOOBIG] = {"OT_ETOOBIG", "exceeds a configured limit"},
};

#define NSTATUS (sizeof(status_table) / sizeof(status_table[0]))

const char *ot_strerror(int status)
{
    if (status < 0 || (size_t)status >= NSTATUS || status_table[status].msg == NULL)
        return "unknown status";
    return status_table[status].msg;
}

const char *ot_status_name(int status)
{
    if (status < 0 || (size_t)status >= NSTATUS || status_table[status].name == NULL)
        return "OT_UNKNOWN";
    return status_table[status].name;
}

ot_status oti_err(char *buf, ot_status st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, OTI_ERRMSG_LEN, fmt, ap);
    va_end(ap);
    return st;
}
