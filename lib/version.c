/*
 * version.c - version numbers and build description.
 *
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>

#include "internal.h"
#include "linalg.h"
#include "transport.h"

uint32_t ot_version(void)
{
    return OT_VERSION_NUMBER;
}

const char *ot_version_string(void)
{
    return OT_VERSION_STRING;
}

static char build_info[256];
static pthread_once_t build_info_once = PTHREAD_ONCE_INIT;

static void build_info_init(void)
{
    snprintf(build_info, sizeof(build_info), "libonlinetrain %s; nng %s; blas %s; zlib %s",
             OT_VERSION_STRING, oti_transport_version(), oti_linalg_vendor(),
#ifdef OT_HAVE_ZLIB
             "yes"
#else
             "no"
#endif
    );
}

const char *ot_build_info(void)
{
    pthread_once(&build_info_once, build_info_init);
    return build_info;
}
