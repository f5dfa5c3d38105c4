# Tensor for Cython callers (Zig twin: tensor.zig).
#
# A Tensor is a Python object around a `zl_tensor_view` (data pointer, dtype, shape,
# byte strides): nogil code takes `&t.view` and never touches the object.
#
# The nogil rule (zigllama/errors.py): each kernel that can fail has a `*_status`
# form, `noexcept nogil`, returning a zl_tensor_status (0 = ZL_TENSOR_OK), and a
# checked form of the plain name, `except -1 nogil`, which is the status passed
# through check_tensor_status: the GIL is taken only to raise.
#
# Before nogil work on a tensor, pin it (tensor_pin: raises UseAfterReset if its
# arena was reset, and makes a reset refuse with BufferInUse until tensor_unpin).
#
#     from zigllama.tensor cimport Tensor, tensor_empty, tensor_add, tensor_pin, tensor_unpin, ZL_F32
#     cdef ptrdiff_t shape[2]
#     shape[0] = 4; shape[1] = 8
#     a = tensor_empty(2, shape, ZL_F32, arena)
#     tensor_pin(a)
#     try:
#         with nogil:
#             tensor_add(&a.view, &b.view, &out.view)
#     finally:
#         tensor_unpin(a)

cimport cython
from libc.stdint cimport int64_t, uint16_t, uint64_t

from zigllama._core.allocator cimport Allocator

cdef extern from "zigllama/zl_tensor.h" nogil:
    ctypedef enum zl_dtype:
        ZL_F32
        ZL_F16
        ZL_I8
        ZL_I32
        ZL_F64
        ZL_BF16
    enum: ZL_MAX_DIMS

    ctypedef struct zl_tensor_view:
        char *data
        int dtype
        int ndim
        ptrdiff_t itemsize
        ptrdiff_t shape[ZL_MAX_DIMS]
        ptrdiff_t strides[ZL_MAX_DIMS]

    ctypedef struct zl_f16:
        uint16_t bits
    ctypedef struct zl_bf16:
        uint16_t bits

    ctypedef enum zl_tensor_status:
        ZL_TENSOR_OK
        ZL_TENSOR_ESHAPE
        ZL_TENSOR_EDTYPE
        ZL_TENSOR_ENOMEM
        ZL_TENSOR_EBACKEND

    ptrdiff_t zl_dtype_itemsize(int dtype) noexcept
    uint16_t zl_f32_to_f16_bits(float value) noexcept
    uint16_t zl_f64_to_f16_bits(double value) noexcept
    float zl_f16_bits_to_f32(uint16_t h) noexcept
    double zl_f16_bits_to_f64(uint16_t h) noexcept
    uint16_t zl_f32_to_bf16_bits(float value) noexcept
    float zl_bf16_bits_to_f32(uint16_t b) noexcept


# The matmul kernel behind tensor_matmul: shapes already checked, out already sized;
# returns a zl_tensor_status.
ctypedef int (*matmul_impl_t)(const zl_tensor_view *a, const zl_tensor_view *b,
                              zl_tensor_view *out) noexcept nogil


@cython.final
cdef class Tensor:
    # data, dtype, ndim, shape, byte strides: everything a kernel reads
    cdef zl_tensor_view view
    cdef readonly Py_ssize_t size        # number of elements
    cdef readonly bint writable
    # The object that keeps the memory alive: None when this tensor owns it, the
    # owning Tensor for a view, the wrapped array / buffer for from_numpy/from_buffer.
    cdef object owner
    # Where the memory came from (None for wrapped memory), and its generation then:
    # an arena reset makes the memory dead, and check_alive() says so.
    cdef Allocator allocator
    cdef uint64_t generation
    cdef size_t alloc_size               # bytes to give back on dealloc (0 for views)

    # 0, or raises UseAfterReset when the memory's arena was reset since (TensorError
    # for a bare Tensor.__new__). tensor_pin below calls it and also holds the memory.
    cdef int check_alive(self) except -1
    cdef int check_writable(self) except -1


# A dtype name, numpy dtype or numpy scalar type -> its zl_dtype code (raises
# UnsupportedDtype for one a Tensor cannot hold); zl_dtype_itemsize(code) its size.
cdef int dtype_code(object dtype) except -1


# Factories (with the GIL). `allocator=None` means the default HeapAllocator.
# `shape` holds `ndim` positive extents; raises InvalidShape / UnsupportedDtype / OutOfMemory.
cdef Tensor tensor_empty(int ndim, const ptrdiff_t *shape, int dtype, Allocator allocator)
cdef Tensor tensor_zeros(int ndim, const ptrdiff_t *shape, int dtype, Allocator allocator)

# Pin before nogil work: check_alive(), then the tensor's allocator counts the pin
# as it counts a buffer view, so an arena reset (or close) raises BufferInUse until
# tensor_unpin. With the GIL; every successful tensor_pin needs one tensor_unpin.
# The first pin also wires the package (ensure_wired), so tensor_matmul after a pin
# takes the package's BLAS backend.
cdef int tensor_pin(Tensor t) except -1
cdef void tensor_unpin(Tensor t) noexcept

# Kernels over views. Operands of one dtype; broadcasting numpy's way for the
# element-wise ones (strides may be 0); `out` must have the result's shape. For add,
# mul and copy `out` may be an operand itself (same data and strides: in place) but
# must not otherwise overlap one; matmul's `out` must not overlap its operands at all
# (the Python methods copy such operands first, as numpy does).
# Each returns ZL_TENSOR_OK, ZL_TENSOR_ESHAPE or ZL_TENSOR_EDTYPE (matmul also
# ZL_TENSOR_ENOMEM / ZL_TENSOR_EBACKEND from its backend) and never takes the GIL.
cdef int tensor_add_status(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) noexcept nogil
cdef int tensor_mul_status(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) noexcept nogil
# (m,k)@(k,n), (B,m,k)@(k,n), (B,m,k)@(B,k,n), (m,k)@(B,k,n) -> out
cdef int tensor_matmul_status(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) noexcept nogil
# Converting copy: src broadcast to dst's shape, any dtype to any dtype (numpy's astype).
cdef int tensor_copy_status(const zl_tensor_view *src, zl_tensor_view *dst) noexcept nogil
# The module's one checked wrapper: 0 for ZL_TENSOR_OK, else takes the GIL and raises
# IncompatibleShapes / UnsupportedDtype / OutOfMemory / TensorError naming the
# operation (`what`) and the shapes of a, b and out (out may be NULL).
cdef int check_tensor_status(int status, const char *what, const zl_tensor_view *a,
                             const zl_tensor_view *b, const zl_tensor_view *out) except -1 nogil
# The checked forms: check_tensor_status(<op>_status(...), "<op>", ...).
cdef int tensor_add(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) except -1 nogil
cdef int tensor_mul(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) except -1 nogil
cdef int tensor_matmul(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) except -1 nogil
cdef int tensor_copy(const zl_tensor_view *src, zl_tensor_view *dst) except -1 nogil
# Every element of t set to value (converted as numpy converts a Python float).
cdef void tensor_fill(zl_tensor_view *t, double value) noexcept nogil
# The plain loops (the GEMM's fallback for dtypes and strides BLAS cannot take).
cdef int naive_matmul(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) noexcept nogil

# ---- the registry at the bottom of the module graph ---------------------------------
# The pool (threading) and the BLAS (blas_integration) both sit on this module and
# never import each other; what one needs of the other is registered here, by the
# package's one wiring function (zigllama._core.wire), the same whatever was
# imported first.
#
# tensor_matmul's kernel: the BLAS module's GEMM once wired (the plain loops when the
# BLAS module sets NULL).
cdef void set_matmul_impl(matmul_impl_t impl) noexcept
# Called by Tensor.matmul with the GIL just before its nogil product (NULL: nothing):
# the backend reads settings that live in Python here, so the nogil product never
# takes the GIL for them.
ctypedef int (*matmul_prepare_t)(const zl_tensor_view *a, const zl_tensor_view *b,
                                 const zl_tensor_view *out) except -1
cdef void set_matmul_prepare(matmul_prepare_t prepare) noexcept
# With the GIL: run the package's wiring unless done. Tensor.matmul and tensor_pin
# do; a caller of tensor_matmul on views it did not pin calls it once before its
# nogil products (before the wiring, tensor_matmul runs the plain loops).
cdef int ensure_wired() except -1

# Work split in chunks: fn over [begin, end) of [0, n), 0 or the first non-zero
# status of a chunk.
ctypedef int (*range_fn_t)(void *ctx, int64_t begin, int64_t end) noexcept nogil
# How the pool runs one: over [0, n) in chunks of `grain` on the calling task's pool,
# else the default pool, or all on the caller when the pool cannot take them (shut
# down, out of memory); 0 or the first non-zero status of a chunk.
ctypedef int (*range_runner_t)(int64_t n, int64_t grain, range_fn_t fn, void *ctx) noexcept nogil
cdef void set_range_runner(range_runner_t runner) noexcept
# The registered runner, or NULL (nothing splits then).
cdef range_runner_t range_runner() noexcept nogil


# A C task over rows that one module prepares and another runs (the BLAS module's
# row-block GEMM, run by ParallelOps on its pool): `fn(ctx, begin, end)`, with `ctx`
# owned by the object.
cdef class RangeTask:
    cdef range_fn_t fn
    cdef void *ctx
