"""A Cython extension outside zigllama, using its public cimport API
(docs/cython-api.md): every heavy loop below runs without the GIL."""
from libc.stdint cimport int64_t

import numpy as np

from zigllama.allocator cimport Allocator
from zigllama.blas_integration cimport (
    BlasInterface, ZL_NO_TRANS, ZL_ROW_MAJOR, ZL_TRANS, check_blas_status, zl_blas, zl_qtensor,
)
from zigllama.gguf_format cimport GGUFReader, check_gguf_status, gguf_find_tensor, zl_gguf_tensor_ref
from zigllama.qmatmul cimport ZL_QGEMM_EXACT, ZL_QGEMM_FAST
from zigllama.quantization cimport check_quant_status, dequantize_into, quant_type, zl_quant_type
from zigllama.tensor cimport ZL_F32, Tensor, tensor_empty, tensor_pin, tensor_unpin
from zigllama.threading cimport parallel_for, pool_ptr, zl_pool


# 1. An arena tensor, filled without the GIL. tensor_pin checks that the arena was
#    not reset and holds the memory (a reset raises BufferInUse) until tensor_unpin.
def arena_ramp(Allocator arena, Py_ssize_t rows, Py_ssize_t cols):
    cdef ptrdiff_t shape[2]
    shape[0] = rows
    shape[1] = cols
    cdef Tensor t = tensor_empty(2, shape, ZL_F32, arena)
    cdef float *p = <float *>t.view.data
    cdef Py_ssize_t i
    tensor_pin(t)
    try:
        with nogil:
            for i in range(rows * cols):
                p[i] = <float>i * 0.5
    finally:
        tensor_unpin(t)
    return t


# 2. C = A @ B.T through the BLAS vtable (any backend: "scipy", "generic", "naive").
def sgemm_abt(BlasInterface blas, const float[:, ::1] a, const float[:, ::1] b):
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = b.shape[0]
    if b.shape[1] != k:
        raise ValueError(f"a is {m}x{k}, b is {n}x{b.shape[1]}: the columns must agree")
    out = np.empty((m, n), np.float32)
    cdef float[:, ::1] c = out
    cdef zl_blas vt = blas.c
    cdef int status
    with nogil:
        status = vt.vtable.sgemm(vt.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_TRANS, m, n, k,
                                 1.0, &a[0, 0], k, &b[0, 0], k, 0.0, &c[0, 0], n)
        check_blas_status(status, "sgemm")
    return out


# 3. A parallel_for on the pool: each chunk of rows is one call of a nogil function.
ctypedef struct squares_ctx:
    double *out

cdef int squares_rows(void *ctx, int64_t begin, int64_t end) noexcept nogil:
    cdef squares_ctx *s = <squares_ctx *>ctx
    cdef int64_t i
    for i in range(begin, end):
        s.out[i] = <double>i * <double>i
    return 0

def parallel_squares(pool, int64_t n):
    """[0, 1, 4, ...] computed in chunks on `pool` (None: the default pool)."""
    out = np.empty(n, np.float64)
    cdef double[::1] o = out
    cdef squares_ctx ctx
    cdef zl_pool *p = pool_ptr(pool)
    if n == 0:
        return out
    ctx.out = &o[0]
    with nogil:
        parallel_for(p, n, 0, squares_rows, &ctx)
    return out


# 4. A GGUF tensor found by name and dequantized, without the GIL. pin() makes the
#    reader's close() refuse until unpin(), so its bytes stay mapped meanwhile.
def dequantize_by_name(GGUFReader reader, str name):
    cdef bytes key = name.encode()
    cdef const char *ckey = key
    cdef size_t key_len = len(key)
    cdef zl_gguf_tensor_ref ref
    cdef int status
    cdef int64_t n = 1
    cdef float[::1] dst
    reader.pin()
    try:
        with nogil:
            status = gguf_find_tensor(reader, ckey, key_len, &ref)
            check_gguf_status(status, reader, ckey)
        if ref.swapped:
            raise ValueError(f"{name}: a big-endian file; dequantize_into reads little-endian blocks")
        for d in range(ref.n_dims):
            n *= ref.ne[d]
        out = np.empty(n, np.float32)
        dst = out
        with nogil:
            status = dequantize_into(ref.type, ref.data, &dst[0], n, 0)
            check_quant_status(status, ref.type, n)
    finally:
        reader.unpin()
    return out.reshape(tuple(ref.ne[d] for d in reversed(range(ref.n_dims))))


# 5. A quantized GEMV through the vtable's qgemm slot: y = W @ x for the weight
#    W named `name` (rows = ne[1], cols = ne[0]), left in its GGML blocks.
def qgemv_by_name(BlasInterface blas, GGUFReader reader, str name, const float[::1] x, bint exact=False):
    cdef bytes key = name.encode()
    cdef const char *ckey = key
    cdef size_t key_len = len(key)
    cdef zl_gguf_tensor_ref ref
    cdef zl_qtensor w
    cdef const zl_quant_type *qt
    cdef zl_blas vt = blas.c
    cdef int status
    cdef int mode = ZL_QGEMM_EXACT if exact else ZL_QGEMM_FAST
    cdef float[::1] out
    reader.pin()
    try:
        with nogil:
            status = gguf_find_tensor(reader, ckey, key_len, &ref)
            check_gguf_status(status, reader, ckey)
        qt = quant_type(ref.type)
        if ref.n_dims != 2 or qt == NULL or x.shape[0] != <Py_ssize_t>ref.ne[0]:
            raise ValueError(f"{name}: need a 2-D weight of a known type with {x.shape[0]} columns")
        w.data = ref.data
        w.type = ref.type
        w.rows = ref.ne[1]
        w.cols = ref.ne[0]
        w.row_stride = w.cols // qt.block_size * qt.type_size
        y = np.empty(w.rows, np.float32)
        out = y
        with nogil:
            status = vt.vtable.qgemm(vt.ctx, &w, 1, &x[0], w.cols, &out[0], w.rows, mode, 0)
            check_blas_status(status, "qgemm")
    finally:
        reader.unpin()
    return y
