/* The seed's reference loops, written once for both element types (included by
 * naive.c with ZL_T and ZL_X(name) defined): one multiply-add at a time, in the
 * textbook order, no blocking, no threads. The correctness baseline. */

/* Element (i, j) of op(X) for X stored with `layout`, leading dimension ld. */
static inline ZL_T ZL_X(naive_at)(const ZL_T *x, zl_blas_layout layout, zl_blas_trans t, zl_blas_int ld,
                                  zl_blas_int i, zl_blas_int j) {
    if (t == ZL_TRANS) {
        zl_blas_int tmp = i; i = j; j = tmp;
    }
    return layout == ZL_ROW_MAJOR ? x[i * ld + j] : x[i + j * ld];
}

static int ZL_X(naive_gemm)(void *ctx, zl_blas_layout layout, zl_blas_trans ta, zl_blas_trans tb, zl_blas_int m,
                            zl_blas_int n, zl_blas_int k, ZL_T alpha, const ZL_T *a, zl_blas_int lda,
                            const ZL_T *b, zl_blas_int ldb, ZL_T beta, ZL_T *c, zl_blas_int ldc) {
    (void)ctx;
    if (zl_blas_check_gemm(layout, ta, tb, m, n, k, lda, ldb, ldc)) return ZL_BLAS_EINVAL;
    for (zl_blas_int i = 0; i < m; i++) {
        for (zl_blas_int j = 0; j < n; j++) {
            ZL_T sum = 0;
            for (zl_blas_int p = 0; p < k; p++)
                sum += ZL_X(naive_at)(a, layout, ta, lda, i, p) * ZL_X(naive_at)(b, layout, tb, ldb, p, j);
            ZL_T *cij = layout == ZL_ROW_MAJOR ? c + i * ldc + j : c + i + j * ldc;
            *cij = beta == 0 ? alpha * sum : alpha * sum + beta * *cij;
        }
    }
    return ZL_BLAS_OK;
}

static int ZL_X(naive_gemv)(void *ctx, zl_blas_layout layout, zl_blas_trans trans, zl_blas_int m, zl_blas_int n,
                            ZL_T alpha, const ZL_T *a, zl_blas_int lda, const ZL_T *x, zl_blas_int incx,
                            ZL_T beta, ZL_T *y, zl_blas_int incy) {
    (void)ctx;
    if (zl_blas_check_gemv(layout, trans, m, n, lda, incx, incy)) return ZL_BLAS_EINVAL;
    const zl_blas_int rows = trans == ZL_NO_TRANS ? m : n, cols = trans == ZL_NO_TRANS ? n : m;
    for (zl_blas_int i = 0; i < rows; i++) {
        ZL_T sum = 0;
        for (zl_blas_int j = 0; j < cols; j++) sum += ZL_X(naive_at)(a, layout, trans, lda, i, j) * x[j * incx];
        y[i * incy] = beta == 0 ? alpha * sum : alpha * sum + beta * y[i * incy];
    }
    return ZL_BLAS_OK;
}

static int ZL_X(naive_dot)(void *ctx, zl_blas_int n, const ZL_T *x, zl_blas_int incx, const ZL_T *y,
                           zl_blas_int incy, ZL_T *result) {
    (void)ctx;
    if (zl_blas_check_vector(n, incx) || zl_blas_check_vector(n, incy)) return ZL_BLAS_EINVAL;
    ZL_T sum = 0;
    for (zl_blas_int i = 0; i < n; i++) sum += x[i * incx] * y[i * incy];
    *result = sum;
    return ZL_BLAS_OK;
}

static int ZL_X(naive_axpy)(void *ctx, zl_blas_int n, ZL_T alpha, const ZL_T *x, zl_blas_int incx, ZL_T *y,
                            zl_blas_int incy) {
    (void)ctx;
    if (zl_blas_check_vector(n, incx) || zl_blas_check_vector(n, incy)) return ZL_BLAS_EINVAL;
    for (zl_blas_int i = 0; i < n; i++) y[i * incy] += alpha * x[i * incx];
    return ZL_BLAS_OK;
}

static int ZL_X(naive_scal)(void *ctx, zl_blas_int n, ZL_T alpha, ZL_T *x, zl_blas_int incx) {
    (void)ctx;
    if (zl_blas_check_vector(n, incx)) return ZL_BLAS_EINVAL;
    for (zl_blas_int i = 0; i < n; i++) x[i * incx] *= alpha;
    return ZL_BLAS_OK;
}

/* The textbook sqrt(sum of squares), accumulated in double. */
static int ZL_X(naive_nrm2)(void *ctx, zl_blas_int n, const ZL_T *x, zl_blas_int incx, ZL_T *result) {
    (void)ctx;
    if (zl_blas_check_vector(n, incx)) return ZL_BLAS_EINVAL;
    double ssq = 0;
    for (zl_blas_int i = 0; i < n; i++) ssq += (double)x[i * incx] * (double)x[i * incx];
    *result = (ZL_T)sqrt(ssq);
    return ZL_BLAS_OK;
}
