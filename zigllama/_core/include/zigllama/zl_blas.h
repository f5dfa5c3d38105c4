/* The BLAS interface: ZigLlama's BlasInterface vtable as a C struct.
 *
 * A backend is a context pointer plus a table of functions ({ctx, vtable}, as
 * Zig writes an interface), so a caller never knows whether scipy's BLAS
 * (OpenBLAS, MKL, ...), zigllama's own GEMM or the naive loops run.
 *
 * Conventions (CBLAS's, with 64-bit sizes):
 *  - layout ZL_ROW_MAJOR or ZL_COL_MAJOR applies to every matrix of a call;
 *  - gemm:  C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C;
 *  - gemv:  y = alpha * op(A) * x + beta * y, where A is m x n (not op(A));
 *  - beta == 0 overwrites C (or y) without reading it: NaN there gives no NaN;
 *  - increments must be >= 1, leading dimensions >= max(1, row or column length).
 *
 * Every function can be called without the GIL and from any thread, never raises
 * and returns a status: ZL_BLAS_OK, or a negative ZL_BLAS_E* code (bad argument,
 * no memory for packing buffers, a size the backend's integer type cannot hold).
 * Results of dot and nrm2 are written through their last pointer.
 *
 * From Python, `zigllama.get_blas(name).capsule` is a PyCapsule named
 * "zigllama.blas_vtable" holding a `zl_blas *`, valid for the life of the process.
 */
#ifndef ZIGLLAMA_ZL_BLAS_H
#define ZIGLLAMA_ZL_BLAS_H

#include <stdint.h>

#include "zigllama/zl_qmatmul.h" /* zl_qtensor: a quantized weight */

#ifdef __cplusplus
extern "C" {
#endif

typedef int64_t zl_blas_int;

typedef enum { ZL_ROW_MAJOR = 101, ZL_COL_MAJOR = 102 } zl_blas_layout;
typedef enum { ZL_NO_TRANS = 111, ZL_TRANS = 112 } zl_blas_trans;

enum {
    ZL_BLAS_OK = 0,
    ZL_BLAS_EINVAL = -1, /* an argument out of its domain (layout, trans, size, ld, inc) */
    ZL_BLAS_ENOMEM = -2, /* packing buffers could not be allocated */
    ZL_BLAS_ERANGE = -3, /* a size larger than the backend's integer type holds */
    ZL_BLAS_ENOSYS = -4  /* qgemm with no kernels registered (get_blas() registers them) */
};

#define ZL_BLAS_CAPSULE_NAME "zigllama.blas_vtable"


typedef struct zl_blas_vtable {
    /* Level 1 */
    int (*sdot)(void *ctx, zl_blas_int n, const float *x, zl_blas_int incx,
                const float *y, zl_blas_int incy, float *result);
    int (*ddot)(void *ctx, zl_blas_int n, const double *x, zl_blas_int incx,
                const double *y, zl_blas_int incy, double *result);
    int (*saxpy)(void *ctx, zl_blas_int n, float alpha, const float *x, zl_blas_int incx,
                 float *y, zl_blas_int incy);
    int (*daxpy)(void *ctx, zl_blas_int n, double alpha, const double *x, zl_blas_int incx,
                 double *y, zl_blas_int incy);
    int (*sscal)(void *ctx, zl_blas_int n, float alpha, float *x, zl_blas_int incx);
    int (*dscal)(void *ctx, zl_blas_int n, double alpha, double *x, zl_blas_int incx);
    int (*snrm2)(void *ctx, zl_blas_int n, const float *x, zl_blas_int incx, float *result);
    int (*dnrm2)(void *ctx, zl_blas_int n, const double *x, zl_blas_int incx, double *result);
    /* Level 2 */
    int (*sgemv)(void *ctx, zl_blas_layout layout, zl_blas_trans trans, zl_blas_int m, zl_blas_int n,
                 float alpha, const float *a, zl_blas_int lda, const float *x, zl_blas_int incx,
                 float beta, float *y, zl_blas_int incy);
    int (*dgemv)(void *ctx, zl_blas_layout layout, zl_blas_trans trans, zl_blas_int m, zl_blas_int n,
                 double alpha, const double *a, zl_blas_int lda, const double *x, zl_blas_int incx,
                 double beta, double *y, zl_blas_int incy);
    /* Level 3 */
    int (*sgemm)(void *ctx, zl_blas_layout layout, zl_blas_trans trans_a, zl_blas_trans trans_b,
                 zl_blas_int m, zl_blas_int n, zl_blas_int k, float alpha,
                 const float *a, zl_blas_int lda, const float *b, zl_blas_int ldb,
                 float beta, float *c, zl_blas_int ldc);
    int (*dgemm)(void *ctx, zl_blas_layout layout, zl_blas_trans trans_a, zl_blas_trans trans_b,
                 zl_blas_int m, zl_blas_int n, zl_blas_int k, double alpha,
                 const double *a, zl_blas_int lda, const double *b, zl_blas_int ldb,
                 double beta, double *c, zl_blas_int ldc);
    /* Quantized weights (appended last: the entries above keep their offsets).
     * y (m x w->rows, ldy) = x (m x w->cols, ldx) @ W.T; mode ZL_QGEMM_FAST or
     * ZL_QGEMM_EXACT, nthreads <= 0 for every pool thread. See zl_qmatmul.h. */
    int (*qgemm)(void *ctx, const struct zl_qtensor *w, zl_blas_int m, const float *x, zl_blas_int ldx,
                 float *y, zl_blas_int ldy, int mode, int nthreads);
} zl_blas_vtable;

typedef struct zl_blas {
    const char *name;
    void *ctx;
    const zl_blas_vtable *vtable;
} zl_blas;

/* Argument checks every backend runs first (the Python layer checks with better
 * messages before it gets here; these protect C callers). */
static inline int zl_blas_check_vector(zl_blas_int n, zl_blas_int inc) {
    return (n < 0 || inc < 1) ? ZL_BLAS_EINVAL : ZL_BLAS_OK;
}

static inline zl_blas_int zl_blas_max1(zl_blas_int v) { return v > 1 ? v : 1; }

/* lda must reach past a row (row-major) or a column (column-major) of the stored matrix. */
static inline int zl_blas_check_matrix(zl_blas_layout layout, zl_blas_int rows, zl_blas_int cols,
                                       zl_blas_int ld) {
    if (rows < 0 || cols < 0) return ZL_BLAS_EINVAL;
    if (layout == ZL_ROW_MAJOR) return ld >= zl_blas_max1(cols) ? ZL_BLAS_OK : ZL_BLAS_EINVAL;
    if (layout == ZL_COL_MAJOR) return ld >= zl_blas_max1(rows) ? ZL_BLAS_OK : ZL_BLAS_EINVAL;
    return ZL_BLAS_EINVAL;
}

static inline int zl_blas_check_trans(zl_blas_trans t) {
    return (t == ZL_NO_TRANS || t == ZL_TRANS) ? ZL_BLAS_OK : ZL_BLAS_EINVAL;
}

static inline int zl_blas_check_gemm(zl_blas_layout layout, zl_blas_trans ta, zl_blas_trans tb,
                                     zl_blas_int m, zl_blas_int n, zl_blas_int k,
                                     zl_blas_int lda, zl_blas_int ldb, zl_blas_int ldc) {
    if (zl_blas_check_trans(ta) || zl_blas_check_trans(tb)) return ZL_BLAS_EINVAL;
    /* Stored shapes: A is m x k (k x m if transposed), B is k x n (n x k). */
    if (zl_blas_check_matrix(layout, ta == ZL_NO_TRANS ? m : k, ta == ZL_NO_TRANS ? k : m, lda)) return ZL_BLAS_EINVAL;
    if (zl_blas_check_matrix(layout, tb == ZL_NO_TRANS ? k : n, tb == ZL_NO_TRANS ? n : k, ldb)) return ZL_BLAS_EINVAL;
    return zl_blas_check_matrix(layout, m, n, ldc);
}

static inline int zl_blas_check_gemv(zl_blas_layout layout, zl_blas_trans t, zl_blas_int m, zl_blas_int n,
                                     zl_blas_int lda, zl_blas_int incx, zl_blas_int incy) {
    if (zl_blas_check_trans(t) || zl_blas_check_matrix(layout, m, n, lda)) return ZL_BLAS_EINVAL;
    return (incx < 1 || incy < 1) ? ZL_BLAS_EINVAL : ZL_BLAS_OK;
}

/* Shorthands: zl_sgemm(blas, ...) calls blas.vtable->sgemm(blas.ctx, ...). */
static inline int zl_sgemm(zl_blas b, zl_blas_layout layout, zl_blas_trans ta, zl_blas_trans tb,
                           zl_blas_int m, zl_blas_int n, zl_blas_int k, float alpha,
                           const float *a, zl_blas_int lda, const float *bm, zl_blas_int ldb,
                           float beta, float *c, zl_blas_int ldc) {
    return b.vtable->sgemm(b.ctx, layout, ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc);
}

static inline int zl_dgemm(zl_blas b, zl_blas_layout layout, zl_blas_trans ta, zl_blas_trans tb,
                           zl_blas_int m, zl_blas_int n, zl_blas_int k, double alpha,
                           const double *a, zl_blas_int lda, const double *bm, zl_blas_int ldb,
                           double beta, double *c, zl_blas_int ldc) {
    return b.vtable->dgemm(b.ctx, layout, ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc);
}

#ifdef __cplusplus
}
#endif

#endif
