/*
 * linalg.c - dense linear algebra through CBLAS.  The only file that
 * includes cblas.h, so another BLAS is a change here alone.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <dlfcn.h>

#include <cblas.h>

#include "internal.h"
#include "linalg.h"

const char *oti_linalg_vendor(void)
{
    /* OpenBLAS, when it is the libblas.so.3 in use, exports openblas_get_config;
     * the reference BLAS does not. */
    typedef char *(*config_fn)(void);
    config_fn f = (config_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_get_config");

    return f != NULL ? "OpenBLAS" : "reference";
}

float oti_sdot(int n, const float *x, const float *y)
{
    return cblas_sdot(n, x, 1, y, 1);
}
