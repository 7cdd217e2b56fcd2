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

void oti_saxpy(int n, float alpha, const float *x, float *y)
{
    cblas_saxpy(n, alpha, x, 1, y, 1);
}

void oti_sgemv(int trans, int rows, int cols, float alpha, const float *a, const float *x,
               float beta, float *y)
{
    if (rows <= 0 || cols <= 0)
        return;
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, rows, cols, alpha, a, cols, x, 1,
                beta, y, 1);
}

void oti_sger(int rows, int cols, float alpha, const float *x, const float *y, float *a)
{
    if (rows <= 0 || cols <= 0)
        return;
    cblas_sger(CblasRowMajor, rows, cols, alpha, x, 1, y, 1, a, cols);
}

void oti_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
               const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0 || k <= 0)
        return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, a, lda, b, ldb, beta, c, ldc);
}
