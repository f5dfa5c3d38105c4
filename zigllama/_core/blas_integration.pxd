# The BLAS interface for Cython callers (ZigLlama's BlasInterface vtable).
#
# nogil code takes `BlasInterface.c` (a {name, ctx, vtable} struct) and calls
# through it; every function returns a status (ZL_BLAS_OK or a negative code)
# and never touches the GIL:
#
#     from zigllama.blas_integration cimport BlasInterface, zl_blas, ZL_ROW_MAJOR, ZL_NO_TRANS
#     cdef zl_blas blas = (<BlasInterface>zigllama.get_blas("generic")).c
#     with nogil:
#         status = blas.vtable.sgemm(blas.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_NO_TRANS,
#                                    m, n, k, 1.0, a, k, b, n, 0.0, c, n)

from libc.stdint cimport int64_t, uint8_t

cdef extern from "zigllama/zl_blas.h" nogil:
    ctypedef int64_t zl_blas_int

    ctypedef enum zl_blas_layout:
        ZL_ROW_MAJOR
        ZL_COL_MAJOR

    ctypedef enum zl_blas_trans:
        ZL_NO_TRANS
        ZL_TRANS

    enum:
        ZL_BLAS_OK
        ZL_BLAS_EINVAL
        ZL_BLAS_ENOMEM
        ZL_BLAS_ERANGE
        ZL_BLAS_ENOSYS

    const char *ZL_BLAS_CAPSULE_NAME

    # A quantized weight (zigllama/zl_qmatmul.h; zigllama._core.qmatmul builds them).
    ctypedef struct zl_qtensor:
        const uint8_t *data
        int type
        int64_t rows
        int64_t cols
        int64_t row_stride

    ctypedef struct zl_blas_vtable:
        int (*sdot)(void *ctx, zl_blas_int n, const float *x, zl_blas_int incx,
                    const float *y, zl_blas_int incy, float *result) noexcept nogil
        int (*ddot)(void *ctx, zl_blas_int n, const double *x, zl_blas_int incx,
                    const double *y, zl_blas_int incy, double *result) noexcept nogil
        int (*saxpy)(void *ctx, zl_blas_int n, float alpha, const float *x, zl_blas_int incx,
                     float *y, zl_blas_int incy) noexcept nogil
        int (*daxpy)(void *ctx, zl_blas_int n, double alpha, const double *x, zl_blas_int incx,
                     double *y, zl_blas_int incy) noexcept nogil
        int (*sscal)(void *ctx, zl_blas_int n, float alpha, float *x, zl_blas_int incx) noexcept nogil
        int (*dscal)(void *ctx, zl_blas_int n, double alpha, double *x, zl_blas_int incx) noexcept nogil
        int (*snrm2)(void *ctx, zl_blas_int n, const float *x, zl_blas_int incx, float *result) noexcept nogil
        int (*dnrm2)(void *ctx, zl_blas_int n, const double *x, zl_blas_int incx, double *result) noexcept nogil
        int (*sgemv)(void *ctx, zl_blas_layout layout, zl_blas_trans trans, zl_blas_int m, zl_blas_int n,
                     float alpha, const float *a, zl_blas_int lda, const float *x, zl_blas_int incx,
                     float beta, float *y, zl_blas_int incy) noexcept nogil
        int (*dgemv)(void *ctx, zl_blas_layout layout, zl_blas_trans trans, zl_blas_int m, zl_blas_int n,
                     double alpha, const double *a, zl_blas_int lda, const double *x, zl_blas_int incx,
                     double beta, double *y, zl_blas_int incy) noexcept nogil
        int (*sgemm)(void *ctx, zl_blas_layout layout, zl_blas_trans trans_a, zl_blas_trans trans_b,
                     zl_blas_int m, zl_blas_int n, zl_blas_int k, float alpha,
                     const float *a, zl_blas_int lda, const float *b, zl_blas_int ldb,
                     float beta, float *c, zl_blas_int ldc) noexcept nogil
        int (*dgemm)(void *ctx, zl_blas_layout layout, zl_blas_trans trans_a, zl_blas_trans trans_b,
                     zl_blas_int m, zl_blas_int n, zl_blas_int k, double alpha,
                     const double *a, zl_blas_int lda, const double *b, zl_blas_int ldb,
                     double beta, double *c, zl_blas_int ldc) noexcept nogil
        # Last entry: y = x @ W.T with W quantized (zigllama/zl_qmatmul.h).
        int (*qgemm)(void *ctx, const zl_qtensor *w, zl_blas_int m, const float *x, zl_blas_int ldx,
                     float *y, zl_blas_int ldy, int mode, int nthreads) noexcept nogil

    ctypedef struct zl_blas:
        const char *name
        void *ctx
        const zl_blas_vtable *vtable

    int zl_blas_check_gemm(zl_blas_layout layout, zl_blas_trans ta, zl_blas_trans tb,
                           zl_blas_int m, zl_blas_int n, zl_blas_int k,
                           zl_blas_int lda, zl_blas_int ldb, zl_blas_int ldc) noexcept
    int zl_blas_check_gemv(zl_blas_layout layout, zl_blas_trans t, zl_blas_int m, zl_blas_int n,
                           zl_blas_int lda, zl_blas_int incx, zl_blas_int incy) noexcept
    int zl_blas_check_vector(zl_blas_int n, zl_blas_int inc) noexcept


# The module's one checked wrapper: 0 for ZL_BLAS_OK, else takes the GIL and raises
# BlasError (OutOfMemory for ZL_BLAS_ENOMEM) naming the operation `what`.
cdef int check_blas_status(int status, const char *what) except -1 nogil


cdef class BlasInterface:
    # {name, ctx, vtable}: what nogil code is handed. Valid for the life of the process.
    cdef zl_blas c
    cdef readonly str name
    # Index into the module's backend table.
    cdef int index


# The backend `blas` with every call run on the calling thread: for callers that
# split work over threads of their own (a pool's blocks), so that no call starts
# a team of its own. The generic backend gets a one-thread context; naive has
# no threads; the scipy backend is returned unchanged (its BLAS has one
# process-wide thread count: pin it with limit_blas_threads(1) or threadpoolctl).
cdef zl_blas single_threaded(zl_blas blas) noexcept nogil


# The implementation behind every backend's qgemm slot; zigllama._core.qmatmul
# registers it when imported. `blas` is the backend whose sgemm the exact mode uses.
ctypedef int (*qgemm_impl_fn)(zl_blas blas, const zl_qtensor *w, zl_blas_int m, const float *x,
                              zl_blas_int ldx, float *y, zl_blas_int ldy, int mode,
                              int nthreads) noexcept nogil
cdef void register_qgemm(qgemm_impl_fn impl) noexcept nogil
