/*
 * linalg.h - the library's dense linear algebra; linalg.c is the only file
 * that calls CBLAS.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef OT_LINALG_H
#define OT_LINALG_H

#include <stddef.h>

/* "OpenBLAS <config>" when OpenBLAS is the BLAS in use, else "reference". */
const char *oti_linalg_vendor(void);

/* Dot product of two float vectors of length n. */
float oti_sdot(int n, const float *x, const float *y);

#endif /* OT_LINALG_H */
