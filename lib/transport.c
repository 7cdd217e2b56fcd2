/*
 * transport.c - sockets by URL over nng.  The only file that includes nng.
 *
 * SPDX-License-Identifier: MIT
 */
#include <nng/nng.h>

#include "internal.h"
#include "transport.h"

const char *oti_transport_version(void)
{
    return nng_version();
}
