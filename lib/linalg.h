/*
 * linalg.h - the library's dense linear algebra; linalg.c is the only file
 * that calls CBLAS.  Matrices are row-major; dimensions are ints, as CBLAS
 * takes them (callers check that they fit).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_LINALG_H
#define OT_LINALG_H

#include <stddef.h>
#include <stdint.h>

/* "OpenBLAS" when OpenBLAS is the BLAS in use, else "reference". */
const char *oti_linalg_vendor(void);

/* Dot product of two float vectors of length n. */
float oti_sdot(int n, const float *x, const float *y);

/* y = alpha * x + y, vectors of length n. */
void oti_saxpy(int n, float alpha, const float *x, float *y);

/*
 * y = alpha * op(A) x + beta * y, A row-major with `rows` rows and `cols`
 * columns (leading dimension cols).  trans 0: op(A) = A (x has cols
 * entries, y rows); trans 1: op(A) = A^T (x has rows entries, y cols).
 */
void oti_sgemv(int trans, int rows, int cols, float alpha, const float *a, const float *x,
               float beta, float *y);

/* A += alpha * x y^T, A row-major rows x cols, x of rows, y of cols entries. */
void oti_sger(int rows, int cols, float alpha, const float *x, const float *y, float *a);

/*
 * C = alpha * op(A) op(B) + beta * C, all row-major: op(A) is m x k, op(B)
 * k x n, C m x n.  ta / tb: 1 to transpose.  lda, ldb, ldc are the row
 * lengths of A, B and C as stored.
 */
void oti_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
               const float *b, int ldb, float beta, float *c, int ldc);

/*
 * Time spent inside CBLAS, for benchmarks (bench/train): oti_linalg_timing(1)
 * zeroes the calling thread's counters and starts counting that thread's
 * calls of the functions above, each bracketed by two CLOCK_MONOTONIC reads;
 * oti_linalg_timing(0) zeroes them and stops.  Counters are per thread.  Off
 * (the default), the cost is one test of a thread-local flag per call.
 */
void oti_linalg_timing(int on);

/* The calling thread's counters: CBLAS calls and nanoseconds inside them. */
void oti_linalg_timing_read(uint64_t *calls, uint64_t *ns);

#endif /* OT_LINALG_H */
