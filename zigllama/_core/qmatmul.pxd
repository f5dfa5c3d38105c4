# Quantized matrix products for Cython callers (zigllama/zl_qmatmul.h).
#
# A QuantizedTensor's `c` is the zl_qtensor the BLAS vtable's qgemm slot takes;
# nogil code multiplies with it through any backend:
#
#     from zigllama._core.blas_integration cimport BlasInterface, zl_blas
#     from zigllama._core.qmatmul cimport QuantizedTensor, ZL_QGEMM_FAST
#     cdef zl_blas blas = (<BlasInterface>zigllama.get_blas()).c
#     cdef QuantizedTensor w = reader.quantized("output.weight")
#     with nogil:
#         status = blas.vtable.qgemm(blas.ctx, &w.c, m, x, k, y, w.c.rows, ZL_QGEMM_FAST, 0)
#
# The view keeps its bytes alive (`data`); keep the QuantizedTensor referenced
# while nogil code reads it.

from libc.stdint cimport int64_t

from .blas_integration cimport zl_blas, zl_blas_int, zl_qtensor
from .threading cimport zl_pool

cdef extern from "zigllama/zl_qmatmul.h" nogil:
    enum:
        ZL_QGEMM_FAST
        ZL_QGEMM_EXACT


cdef class QuantizedTensor:
    cdef zl_qtensor c
    cdef readonly object data      # uint8 array (rows, row bytes): the blocks, kept alive
    cdef readonly tuple shape      # numpy order: (..., cols)
    cdef readonly object ggml_type


# y = x @ W.T on `pool` (NULL: on the caller) with up to nthreads threads; the
# exact mode's sgemm runs on `blas`. Returns ZL_BLAS_OK or a ZL_BLAS_E* code.
cdef int qgemm_on(zl_blas blas, zl_pool *pool, const zl_qtensor *w, zl_blas_int m, const float *x,
                  zl_blas_int ldx, float *y, zl_blas_int ldy, int mode, int nthreads) noexcept nogil
