/*
 * linalg.c - dense linear algebra through CBLAS.  The only file that
 * includes cblas.h, so another BLAS is a change here alone.  Each call can
 * be timed, per thread, for benchmarks (oti_linalg_timing).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>

#include <cblas.h>

#include "internal.h"
#include "linalg.h"

/* The timing counters of oti_linalg_timing, per thread. */
static _Thread_local int timing_on;
static _Thread_local uint64_t timing_calls, timing_ns;

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* Brackets one CBLAS call: t0 = TIMING_START; call; TIMING_STOP(t0). */
#define TIMING_START (OTI_UNLIKELY(timing_on) ? mono_ns() : 0)
#define TIMING_STOP(t0)                       \
    do {                                      \
        if (OTI_UNLIKELY(timing_on)) {        \
            timing_ns += mono_ns() - (t0);    \
            timing_calls++;                   \
        }                                     \
    } while (0)

void oti_linalg_timing(int on)
{
    timing_on = on != 0;
    timing_calls = 0;
    timing_ns = 0;
}

void oti_linalg_timing_read(uint64_t *calls, uint64_t *ns)
{
    if (calls != NULL)
        *calls = timing_calls;
    if (ns != NULL)
        *ns = timing_ns;
}

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
    uint64_t t0 = TIMING_START;
    float r = cblas_sdot(n, x, 1, y, 1);

    TIMING_STOP(t0);
    return r;
}

void oti_saxpy(int n, float alpha, const float *x, float *y)
{
    uint64_t t0 = TIMING_START;

    cblas_saxpy(n, alpha, x, 1, y, 1);
    TIMING_STOP(t0);
}

void oti_sgemv(int trans, int rows, int cols, float alpha, const float *a, const float *x,
               float beta, float *y)
{
    uint64_t t0;

    if (rows <= 0 || cols <= 0)
        return;
    t0 = TIMING_START;
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, rows, cols, alpha, a, cols, x, 1,
                beta, y, 1);
    TIMING_STOP(t0);
}

void oti_sger(int rows, int cols, float alpha, const float *x, const float *y, float *a)
{
    uint64_t t0;

    if (rows <= 0 || cols <= 0)
        return;
    t0 = TIMING_START;
    cblas_sger(CblasRowMajor, rows, cols, alpha, x, 1, y, 1, a, cols);
    TIMING_STOP(t0);
}

void oti_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
               const float *b, int ldb, float beta, float *c, int ldc)
{
    uint64_t t0;

    if (m <= 0 || n <= 0 || k <= 0)
        return;
    t0 = TIMING_START;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, a, lda, b, ldb, beta, c, ldc);
    TIMING_STOP(t0);
}
