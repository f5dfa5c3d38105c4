/* The backends written in C: zigllama's own GEMM ("generic") and the seed's
 * triple loops ("naive"). The scipy backend lives in blas_integration.pyx. */
#ifndef ZIGLLAMA_ZL_BLAS_BACKENDS_H
#define ZIGLLAMA_ZL_BLAS_BACKENDS_H

#include "zigllama/zl_blas.h"

/* Cache blocking of one element type: an mc x kc block of A stays in L2, a kc x nc
 * panel of B in L3, a kc x NR micro-panel of B in L1. */
typedef struct zl_gemm_blocking {
    zl_blas_int mc, kc, nc;
} zl_gemm_blocking;

typedef struct zl_generic_ctx {
    int num_threads;         /* OpenMP threads one call may use (>= 1) */
    long l1d, l2, l3;        /* cache sizes in bytes, as the OS reports them */
    zl_gemm_blocking s, d;   /* float32 and float64 blocking, derived from them */
    zl_gemm_blocking s512, d512; /* the same for the AVX-512 tiles */
} zl_generic_ctx;

/* Fill the cache sizes and block sizes (num_threads is set to 1). */
void zl_generic_ctx_init(zl_generic_ctx *ctx);

/* Micro-kernel tile sizes (rows x columns of C held in registers). */
#define ZL_SGEMM_MR 6
#define ZL_SGEMM_NR 16
#define ZL_DGEMM_MR 6
#define ZL_DGEMM_NR 8
/* The AVX-512 tiles: 14 rows x two zmm vectors. */
#define ZL_SGEMM512_MR 14
#define ZL_SGEMM512_NR 32
#define ZL_DGEMM512_MR 14
#define ZL_DGEMM512_NR 16

extern const zl_blas_vtable zl_blas_generic_vtable;
extern const zl_blas_vtable zl_blas_naive_vtable;

/* Which micro-kernel the generic GEMM runs: 1 for AVX2/FMA, 0 for portable C. */
int zl_generic_uses_avx2(void);
/* 1 when it runs the AVX-512 micro-kernel (and its tiles and blocking). */
int zl_generic_uses_avx512(void);

#endif
