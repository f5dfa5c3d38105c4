"""Tensor: the twin of ZigLlama's ``tensor.zig`` (``Tensor(T)``).

Zig's ``Tensor(T)`` is a type function evaluated at compile time: one struct per
element type, so the inner loops know ``T``. Cython cannot parametrise a class by a
type, so the split is: every kernel is written once over the fused type ``scalar``
and Cython emits one specialisation per element type (the comptime part); the
Python ``Tensor`` carries its dtype code and picks the specialisation once per call,
never per element.

Layout is row-major with byte strides (numpy's convention), so views (reshape,
transpose, slicing) share memory and every kernel walks strided operands. Owned
memory comes from an :class:`Allocator` (a ``HeapAllocator`` by default), aligned to
64 bytes, and goes back to the same allocator when the tensor dies.
"""
cimport cython
cimport numpy as cnp
from cpython.pycapsule cimport (
    PyCapsule_GetName,
    PyCapsule_GetPointer,
    PyCapsule_IsValid,
    PyCapsule_New,
    PyCapsule_SetName,
)
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS,
    PyBUF_C_CONTIGUOUS,
    PyBUF_F_CONTIGUOUS,
    PyBUF_FORMAT,
    PyBUF_ND,
    PyBUF_STRIDES,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from libc.stdint cimport INT32_MIN, PTRDIFF_MAX, int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import numpy as np

from zigllama._core.allocator cimport Allocator, ZL_DEFAULT_ALIGNMENT
from zigllama._core.platform cimport zl_cpu_has_avx2
from .array_data cimport array_data

from zigllama._arguments import wrong_type
from zigllama._core.allocator import HeapAllocator
from zigllama.errors import (
    BufferInUse,
    DLPackError,
    IncompatibleShapes,
    InvalidArgumentType,
    NotCopyable,
    InvalidIndex,
    InvalidLayout,
    InvalidShape,
    OutOfMemory,
    ReadOnlyTensor,
    TensorError,
    UnsupportedDtype,
    UseAfterReset,
    ValueOutOfRange,
)

cdef extern from "zl_tensor_simd.h" nogil:
    void zl_add_f32_avx2(ptrdiff_t n, const float *a, const float *b, float *out) noexcept
    void zl_mul_f32_avx2(ptrdiff_t n, const float *a, const float *b, float *out) noexcept
    void zl_add_f64_avx2(ptrdiff_t n, const double *a, const double *b, double *out) noexcept
    void zl_mul_f64_avx2(ptrdiff_t n, const double *a, const double *b, double *out) noexcept

cnp.import_array()

cdef extern from *:
    """
    /* The buffer protocol wants Py_ssize_t arrays; the C view uses ptrdiff_t. */
    _Static_assert(sizeof(Py_ssize_t) == sizeof(ptrdiff_t), "Py_ssize_t must match ptrdiff_t");
    """

cdef ptrdiff_t ONE = 1   # the shape of a one-element tensor

# ---- dtypes -------------------------------------------------------------------------

DTYPES = ("float32", "float64", "float16", "bfloat16", "int8", "int32")
cdef dict _CODE_OF = {"float32": ZL_F32, "float64": ZL_F64, "float16": ZL_F16,
                      "bfloat16": ZL_BF16, "int8": ZL_I8, "int32": ZL_I32}
cdef dict _NAME_OF = {code: name for name, code in _CODE_OF.items()}
# numpy's single-character codes, for dtypes numpy has (bfloat16 is exported as uint16)
cdef dict _CODE_OF_NUMPY_CHAR = {"f": ZL_F32, "d": ZL_F64, "e": ZL_F16, "b": ZL_I8, "i": ZL_I32}


cdef const char *buffer_format(int dtype) noexcept nogil:
    if dtype == ZL_F32:
        return b"f"
    elif dtype == ZL_F64:
        return b"d"
    elif dtype == ZL_F16:
        return b"e"
    elif dtype == ZL_BF16:
        return b"H"
    elif dtype == ZL_I8:
        return b"b"
    return b"i"


cdef object unsupported(object dtype):
    return UnsupportedDtype(
        f"unsupported dtype {dtype!r}: zigllama tensors hold {', '.join(DTYPES)} "
        "(in native byte order)"
    )


cdef int dtype_code(object dtype) except -1:
    """A dtype name, numpy dtype or numpy scalar type -> its zl_dtype code."""
    cdef object code
    if type(dtype) is str:
        code = _CODE_OF.get(dtype)
        if code is not None:
            return code
    try:
        npdt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise unsupported(dtype) from None
    code = _CODE_OF_NUMPY_CHAR.get(npdt.char)
    if code is None or not npdt.isnative or npdt.itemsize != zl_dtype_itemsize(code):
        raise unsupported(dtype)
    return code


def dtype_name(int code):
    """The name of a zl_dtype code (``zigllama/zl_tensor.h``); ggml's type ids."""
    try:
        return _NAME_OF[code]
    except KeyError:
        raise unsupported(code) from None


# ---- element types and their arithmetic (the comptime part) ---------------------------

ctypedef fused scalar:
    float
    double
    zl_f16
    zl_bf16
    int8_t
    int32_t

# A second, independent fused type: casts are specialised for every (source, target).
ctypedef fused target:
    float
    double
    zl_f16
    zl_bf16
    int8_t
    int32_t

# Operation tags: a fused type over two empty structs selects add or multiply at
# compile time, so one loop serves both without a branch per element.
cdef struct AddTag:
    char unused
cdef struct MulTag:
    char unused
ctypedef fused binop:
    AddTag
    MulTag


cdef inline float half_to_float(scalar x) noexcept nogil:
    if scalar is zl_f16:
        return zl_f16_bits_to_f32(x.bits)
    elif scalar is zl_bf16:
        return zl_bf16_bits_to_f32(x.bits)
    else:
        return <float>x


cdef inline scalar float_to_half(float x, const scalar *type_tag) noexcept nogil:
    cdef scalar r
    if scalar is zl_f16:
        r.bits = zl_f32_to_f16_bits(x)
    elif scalar is zl_bf16:
        r.bits = zl_f32_to_bf16_bits(x)
    else:
        r = <scalar>x
    return r


cdef inline scalar apply(const binop *op, scalar x, scalar y) noexcept nogil:
    # float16/bfloat16: computed in float32 and rounded once, as numpy does for float16.
    # Integers wrap modulo 2**bits, as numpy's do (unsigned arithmetic: no C overflow).
    if scalar is zl_f16 or scalar is zl_bf16:
        if binop is AddTag:
            return float_to_half(half_to_float(x) + half_to_float(y), &x)
        else:
            return float_to_half(half_to_float(x) * half_to_float(y), &x)
    elif scalar is int8_t:
        if binop is AddTag:
            return <int8_t><uint8_t>(<uint32_t><uint8_t>x + <uint32_t><uint8_t>y)
        else:
            return <int8_t><uint8_t>(<uint32_t><uint8_t>x * <uint32_t><uint8_t>y)
    elif scalar is int32_t:
        if binop is AddTag:
            return <int32_t>(<uint32_t>x + <uint32_t>y)
        else:
            return <int32_t>(<uint32_t>x * <uint32_t>y)
    else:
        if binop is AddTag:
            return x + y
        else:
            return x * y


cdef inline int32_t float_to_int32(double x) noexcept nogil:
    # C leaves out-of-range conversions undefined; x86 (and so numpy there) gives
    # INT32_MIN for NaN and out-of-range values. Make that the rule everywhere.
    if x != x or x >= 2147483648.0 or x < -2147483648.0:
        return INT32_MIN
    return <int32_t>x


cdef inline target from_double(double x, const target *type_tag) noexcept nogil:
    cdef target r
    if target is zl_f16:
        r.bits = zl_f64_to_f16_bits(x)      # directly, as numpy: no double rounding
    elif target is zl_bf16:
        r.bits = zl_f32_to_bf16_bits(<float>x)
    elif target is int8_t:
        r = <int8_t><uint8_t><uint32_t>float_to_int32(x)
    elif target is int32_t:
        r = float_to_int32(x)
    else:
        r = <target>x
    return r


cdef inline target from_float(float x, const target *type_tag) noexcept nogil:
    cdef target r
    if target is zl_f16:
        r.bits = zl_f32_to_f16_bits(x)
    elif target is zl_bf16:
        r.bits = zl_f32_to_bf16_bits(x)
    elif target is int8_t or target is int32_t:
        r = from_double(<double>x, type_tag)
    else:
        r = <target>x
    return r


cdef inline target from_int(int32_t x, const target *type_tag) noexcept nogil:
    cdef target r
    if target is zl_f16 or target is zl_bf16:
        r = from_float(<float>x, type_tag)
    elif target is int8_t:
        r = <int8_t><uint8_t><uint32_t>x
    else:
        r = <target>x
    return r


cdef inline target convert(scalar x, const target *type_tag) noexcept nogil:
    """One element of ``astype``: numpy's conversion rules (see docs/tensors.md)."""
    if scalar is zl_f16 and target is double:
        return zl_f16_bits_to_f64(x.bits)
    elif scalar is zl_f16 or scalar is zl_bf16 or scalar is float:
        return from_float(half_to_float(x), type_tag)
    elif scalar is double:
        return from_double(x, type_tag)
    else:
        return from_int(<int32_t>x, type_tag)


# ---- walking strided operands ---------------------------------------------------------

cdef enum:
    MAX_OPERANDS = 3

cdef struct nd_iter:
    # Up to three operands over one (broadcast) shape. The innermost dimension is the
    # kernel's loop; the outer ones are walked here. Dimensions of size 1 are dropped
    # and dimensions that are contiguous for every operand merged, so a contiguous
    # tensor is one loop of `size` elements.
    int nops
    int outer_ndim
    ptrdiff_t inner_n
    ptrdiff_t inner_step[MAX_OPERANDS]
    char *ptr[MAX_OPERANDS]
    ptrdiff_t shape[ZL_MAX_DIMS]
    ptrdiff_t index[ZL_MAX_DIMS]
    ptrdiff_t strides[MAX_OPERANDS][ZL_MAX_DIMS]


cdef void iter_prepare(nd_iter *it, int ndim) noexcept nogil:
    """Coalesce it.shape/it.strides (filled by the caller) and set up the walk."""
    cdef int d, j = 0, k
    cdef bint merge
    for d in range(ndim):
        if it.shape[d] != 1:
            it.shape[j] = it.shape[d]
            for k in range(it.nops):
                it.strides[k][j] = it.strides[k][d]
            j += 1
    ndim = j
    if ndim == 0:
        ndim = 1
        it.shape[0] = 1
        for k in range(it.nops):
            it.strides[k][0] = 0
    j = 0
    for d in range(1, ndim):
        merge = True
        for k in range(it.nops):
            if it.strides[k][j] != it.strides[k][d] * it.shape[d]:
                merge = False
        if merge:
            it.shape[j] *= it.shape[d]
        else:
            j += 1
            it.shape[j] = it.shape[d]
        for k in range(it.nops):
            it.strides[k][j] = it.strides[k][d]
    ndim = j + 1
    it.inner_n = it.shape[ndim - 1]
    for k in range(it.nops):
        it.inner_step[k] = it.strides[k][ndim - 1]
    it.outer_ndim = ndim - 1
    memset(it.index, 0, sizeof(it.index))


cdef inline bint iter_next(nd_iter *it) noexcept nogil:
    """Move to the next inner row; False when every row was visited."""
    cdef int d = it.outer_ndim - 1, k
    while d >= 0:
        it.index[d] += 1
        for k in range(it.nops):
            it.ptr[k] += it.strides[k][d]
        if it.index[d] < it.shape[d]:
            return True
        for k in range(it.nops):
            it.ptr[k] -= it.strides[k][d] * it.shape[d]
        it.index[d] = 0
        d -= 1
    return False


# ---- kernels (each written once; Cython specialises them per element type) -------------

cdef inline bint simd_binary(const binop *op, ptrdiff_t n, const scalar *a, const scalar *b,
                             scalar *o) noexcept nogil:
    """The AVX2 build of the contiguous loop, where there is one and the CPU has AVX2."""
    if scalar is float:
        if binop is AddTag:
            zl_add_f32_avx2(n, a, b, o)
        else:
            zl_mul_f32_avx2(n, a, b, o)
        return True
    elif scalar is double:
        if binop is AddTag:
            zl_add_f64_avx2(n, a, b, o)
        else:
            zl_mul_f64_avx2(n, a, b, o)
        return True
    else:
        return False



cdef void binary_kernel(nd_iter *it, const binop *op, const scalar *type_tag) noexcept nogil:
    cdef ptrdiff_t n = it.inner_n, i
    cdef ptrdiff_t sa = it.inner_step[0] // <ptrdiff_t>sizeof(scalar)
    cdef ptrdiff_t sb = it.inner_step[1] // <ptrdiff_t>sizeof(scalar)
    cdef ptrdiff_t so = it.inner_step[2] // <ptrdiff_t>sizeof(scalar)
    cdef const scalar *a
    cdef const scalar *b
    cdef scalar *o
    cdef bint avx2 = (scalar is float or scalar is double) and zl_cpu_has_avx2()
    while True:
        a = <const scalar *>it.ptr[0]
        b = <const scalar *>it.ptr[1]
        o = <scalar *>it.ptr[2]
        if sa == 1 and sb == 1 and so == 1:
            # the common case, and the one the compiler vectorises
            if not (avx2 and simd_binary(op, n, a, b, o)):
                for i in range(n):
                    o[i] = apply(op, a[i], b[i])
        elif sa == 1 and sb == 0 and so == 1:
            for i in range(n):
                o[i] = apply(op, a[i], b[0])
        else:
            for i in range(n):
                o[i * so] = apply(op, a[i * sa], b[i * sb])
        if not iter_next(it):
            break


cdef void cast_kernel(nd_iter *it, const scalar *src_tag, const target *dst_tag) noexcept nogil:
    cdef ptrdiff_t n = it.inner_n, i
    cdef ptrdiff_t ss = it.inner_step[0] // <ptrdiff_t>sizeof(scalar)
    cdef ptrdiff_t sd = it.inner_step[1] // <ptrdiff_t>sizeof(target)
    cdef const scalar *s
    cdef target *d
    while True:
        s = <const scalar *>it.ptr[0]
        d = <target *>it.ptr[1]
        if ss == 1 and sd == 1:
            for i in range(n):
                d[i] = convert(s[i], dst_tag)
        else:
            for i in range(n):
                d[i * sd] = convert(s[i * ss], dst_tag)
        if not iter_next(it):
            break


cdef void fill_kernel(nd_iter *it, scalar value) noexcept nogil:
    cdef ptrdiff_t n = it.inner_n, i
    cdef ptrdiff_t so = it.inner_step[0] // <ptrdiff_t>sizeof(scalar)
    cdef scalar *o
    while True:
        o = <scalar *>it.ptr[0]
        for i in range(n):
            o[i * so] = value
        if not iter_next(it):
            break


cdef void matmul_kernel(ptrdiff_t batch, ptrdiff_t m, ptrdiff_t k, ptrdiff_t n,
                        const char *a, const ptrdiff_t *sa,
                        const char *b, const ptrdiff_t *sb,
                        char *out, const ptrdiff_t *so,
                        const scalar *type_tag) noexcept nogil:
    """out[p] = a[p] @ b[p] for p < batch; strides in bytes, [batch, rows, cols].

    The plain loops of the seed, ordered i-k-j so the inner loop runs along rows of
    b and out. Every out[i, j] is summed over k in order, as numpy's own loop does;
    float16/bfloat16 sum in float32 and round once (numpy's float16 matmul)."""
    cdef ptrdiff_t p, i, j, kk
    cdef ptrdiff_t a0 = sa[1] // <ptrdiff_t>sizeof(scalar), a1 = sa[2] // <ptrdiff_t>sizeof(scalar)
    cdef ptrdiff_t b0 = sb[1] // <ptrdiff_t>sizeof(scalar), b1 = sb[2] // <ptrdiff_t>sizeof(scalar)
    cdef ptrdiff_t o0 = so[1] // <ptrdiff_t>sizeof(scalar), o1 = so[2] // <ptrdiff_t>sizeof(scalar)
    cdef const scalar *A
    cdef const scalar *B
    cdef scalar *O
    cdef scalar *row
    cdef const scalar *brow
    cdef scalar aik
    cdef float acc
    cdef AddTag add_op
    cdef MulTag mul_op
    for p in range(batch):
        A = <const scalar *>(a + p * sa[0])
        B = <const scalar *>(b + p * sb[0])
        O = <scalar *>(out + p * so[0])
        if scalar is zl_f16 or scalar is zl_bf16:
            for i in range(m):
                for j in range(n):
                    acc = 0.0
                    for kk in range(k):
                        acc = acc + half_to_float(A[i * a0 + kk * a1]) * half_to_float(B[kk * b0 + j * b1])
                    O[i * o0 + j * o1] = float_to_half(acc, type_tag)
        else:
            for i in range(m):
                row = O + i * o0
                for j in range(n):
                    row[j * o1] = 0
                for kk in range(k):
                    aik = A[i * a0 + kk * a1]
                    brow = B + kk * b0
                    if o1 == 1 and b1 == 1:
                        for j in range(n):
                            row[j] = apply(&add_op, row[j], apply(&mul_op, aik, brow[j]))
                    else:
                        for j in range(n):
                            row[j * o1] = apply(&add_op, row[j * o1], apply(&mul_op, aik, brow[j * b1]))


# ---- dispatch: the dtype code picks a specialisation, once per call ----------------------
# `<float *>NULL` and friends are type arguments (Zig's comptime T), never dereferenced.

cdef void binary_dispatch(nd_iter *it, int dtype, const binop *op) noexcept nogil:
    if dtype == ZL_F32:
        binary_kernel(it, op, <float *>NULL)
    elif dtype == ZL_F64:
        binary_kernel(it, op, <double *>NULL)
    elif dtype == ZL_F16:
        binary_kernel(it, op, <zl_f16 *>NULL)
    elif dtype == ZL_BF16:
        binary_kernel(it, op, <zl_bf16 *>NULL)
    elif dtype == ZL_I8:
        binary_kernel(it, op, <int8_t *>NULL)
    elif dtype == ZL_I32:
        binary_kernel(it, op, <int32_t *>NULL)


cdef void cast_dispatch_target(nd_iter *it, const scalar *src_tag, int dst) noexcept nogil:
    if dst == ZL_F32:
        cast_kernel(it, src_tag, <float *>NULL)
    elif dst == ZL_F64:
        cast_kernel(it, src_tag, <double *>NULL)
    elif dst == ZL_F16:
        cast_kernel(it, src_tag, <zl_f16 *>NULL)
    elif dst == ZL_BF16:
        cast_kernel(it, src_tag, <zl_bf16 *>NULL)
    elif dst == ZL_I8:
        cast_kernel(it, src_tag, <int8_t *>NULL)
    elif dst == ZL_I32:
        cast_kernel(it, src_tag, <int32_t *>NULL)


cdef void cast_dispatch(nd_iter *it, int src, int dst) noexcept nogil:
    if src == ZL_F32:
        cast_dispatch_target(it, <float *>NULL, dst)
    elif src == ZL_F64:
        cast_dispatch_target(it, <double *>NULL, dst)
    elif src == ZL_F16:
        cast_dispatch_target(it, <zl_f16 *>NULL, dst)
    elif src == ZL_BF16:
        cast_dispatch_target(it, <zl_bf16 *>NULL, dst)
    elif src == ZL_I8:
        cast_dispatch_target(it, <int8_t *>NULL, dst)
    elif src == ZL_I32:
        cast_dispatch_target(it, <int32_t *>NULL, dst)


cdef void fill_dispatch(nd_iter *it, int dtype, double value) noexcept nogil:
    if dtype == ZL_F32:
        fill_kernel(it, from_double(value, <float *>NULL))
    elif dtype == ZL_F64:
        fill_kernel(it, value)
    elif dtype == ZL_F16:
        fill_kernel(it, from_double(value, <zl_f16 *>NULL))
    elif dtype == ZL_BF16:
        fill_kernel(it, from_double(value, <zl_bf16 *>NULL))
    elif dtype == ZL_I8:
        fill_kernel(it, from_double(value, <int8_t *>NULL))
    elif dtype == ZL_I32:
        fill_kernel(it, from_double(value, <int32_t *>NULL))


cdef int naive_matmul(const zl_tensor_view *a, const zl_tensor_view *b,
                      zl_tensor_view *out) noexcept nogil:
    """The default matmul_impl: the plain loops (the BLAS module swaps in its GEMM)."""
    cdef ptrdiff_t sa[3]
    cdef ptrdiff_t sb[3]
    cdef ptrdiff_t so[3]
    cdef ptrdiff_t batch = 1, m, k, n
    matrix_strides(a, sa)
    matrix_strides(b, sb)
    matrix_strides(out, so)
    if out.ndim == 3:
        batch = out.shape[0]
    m = out.shape[out.ndim - 2]
    n = out.shape[out.ndim - 1]
    k = a.shape[a.ndim - 1]
    if a.dtype == ZL_F32:
        matmul_kernel(batch, m, k, n, a.data, sa, b.data, sb, out.data, so, <float *>NULL)
    elif a.dtype == ZL_F64:
        matmul_kernel(batch, m, k, n, a.data, sa, b.data, sb, out.data, so, <double *>NULL)
    elif a.dtype == ZL_F16:
        matmul_kernel(batch, m, k, n, a.data, sa, b.data, sb, out.data, so, <zl_f16 *>NULL)
    elif a.dtype == ZL_BF16:
        matmul_kernel(batch, m, k, n, a.data, sa, b.data, sb, out.data, so, <zl_bf16 *>NULL)
    elif a.dtype == ZL_I8:
        matmul_kernel(batch, m, k, n, a.data, sa, b.data, sb, out.data, so, <int8_t *>NULL)
    elif a.dtype == ZL_I32:
        matmul_kernel(batch, m, k, n, a.data, sa, b.data, sb, out.data, so, <int32_t *>NULL)
    return 0


cdef void matrix_strides(const zl_tensor_view *t, ptrdiff_t *s) noexcept nogil:
    # [batch, row, column] byte strides; a 2-D operand (or a batch of 1) repeats.
    s[0] = t.strides[0] if t.ndim == 3 and t.shape[0] != 1 else 0
    s[1] = t.strides[t.ndim - 2]
    s[2] = t.strides[t.ndim - 1]


# ---- the registry (see tensor.pxd): filled by the package's wire() (zigllama/_core/__init__.py) ------------------

# NULL until the package's wiring chose the backend: never the plain loops by
# accident of import order.
cdef matmul_impl_t _matmul_impl = NULL
cdef bint _wired = False
cdef range_runner_t _range_runner = NULL


cdef void set_matmul_impl(matmul_impl_t impl) noexcept:
    global _matmul_impl
    _matmul_impl = impl if impl != NULL else naive_matmul


cdef int ensure_wired() except -1:
    # _wired is set first: the wiring itself asks for backends (get_blas), which
    # must not start it again.
    global _wired
    if not _wired:
        _wired = True
        try:
            from zigllama._core import wire

            wire()
        except BaseException:
            _wired = False
            raise
    return 0


_backend_lookup = None


def set_backend_lookup(lookup):
    """The package's wiring: `lookup(name)` gives the BLAS backend called `name`
    (None: the default), for modules that split GEMMs themselves."""
    global _backend_lookup
    _backend_lookup = lookup


def matmul_backend(name=None):
    """The BLAS backend called `name` (None: the default), as the package wired it:
    how ParallelOps reaches the BLAS without importing its module."""
    ensure_wired()
    return _backend_lookup(name)


cdef void set_range_runner(range_runner_t runner) noexcept:
    global _range_runner
    _range_runner = runner


cdef range_runner_t range_runner() noexcept nogil:
    return _range_runner


cdef class RangeTask:
    """A C task over rows, prepared by one module and run by another (see tensor.pxd)."""

    def __cinit__(self):
        self.fn = NULL
        self.ctx = NULL


cdef matmul_prepare_t _matmul_prepare = NULL

cdef void set_matmul_prepare(matmul_prepare_t prepare) noexcept:
    global _matmul_prepare
    _matmul_prepare = prepare


# ---- checks: nogil kernels return a zl_tensor_status; check_tensor_status raises -----

cdef tuple shape_of(const zl_tensor_view *t):
    return tuple([t.shape[d] for d in range(t.ndim)])


cdef int raise_tensor_status(int status, const char *what, const zl_tensor_view *a,
                             const zl_tensor_view *b, const zl_tensor_view *out) except -1 with gil:
    name = what.decode()
    if status == ZL_TENSOR_EDTYPE:
        other = b if b.dtype != a.dtype else out
        raise UnsupportedDtype(
            f"{name}: operands of different dtypes ({_NAME_OF.get(a.dtype, a.dtype)} and "
            f"{_NAME_OF.get(other.dtype, other.dtype)}); convert one with astype() first"
        )
    if status == ZL_TENSOR_ESHAPE:
        msg = f"{name}: shapes {shape_of(a)} and {shape_of(b)}"
        if out != NULL:
            msg += f" do not fit the output shape {shape_of(out)}"
        else:
            msg += " are incompatible"
        raise IncompatibleShapes(msg)
    if status == ZL_TENSOR_ENOMEM:
        raise OutOfMemory(f"{name}: the matmul backend found no memory for its buffers "
                          f"(shapes {shape_of(a)} and {shape_of(b)})")
    raise TensorError(f"{name}: the kernel failed with status {status} "
                      f"(shapes {shape_of(a)} and {shape_of(b)})")


cdef int check_tensor_status(int status, const char *what, const zl_tensor_view *a,
                             const zl_tensor_view *b, const zl_tensor_view *out) except -1 nogil:
    if status == ZL_TENSOR_OK:
        return 0
    return raise_tensor_status(status, what, a, b, out)


cdef int broadcast_shape_status(const zl_tensor_view *a, const zl_tensor_view *b,
                                int *ndim, ptrdiff_t *shape) noexcept nogil:
    """numpy's broadcasting of a and b: aligned from the last axis, sizes equal or 1."""
    cdef int n = a.ndim if a.ndim > b.ndim else b.ndim, d
    cdef ptrdiff_t da, db
    for d in range(n):
        da = a.shape[a.ndim - n + d] if d >= n - a.ndim else 1
        db = b.shape[b.ndim - n + d] if d >= n - b.ndim else 1
        if da != db and da != 1 and db != 1:
            return ZL_TENSOR_ESHAPE
        shape[d] = da if da != 1 else db
    ndim[0] = n
    return ZL_TENSOR_OK


cdef int broadcast_strides(const zl_tensor_view *t, const zl_tensor_view *out,
                           ptrdiff_t *strides) noexcept nogil:
    """t's strides as an operand of out's shape (0 along broadcast axes); 0, or -1
    if t does not broadcast to out."""
    cdef int lead = out.ndim - t.ndim, d
    if lead < 0:
        return -1
    for d in range(out.ndim):
        if d < lead:
            strides[d] = 0
        elif t.shape[d - lead] == out.shape[d]:
            strides[d] = t.strides[d - lead]
        elif t.shape[d - lead] == 1:
            strides[d] = 0
        else:
            return -1
    return 0


cdef int binary_status(const zl_tensor_view *a, const zl_tensor_view *b,
                       zl_tensor_view *out, const binop *op) noexcept nogil:
    cdef nd_iter it
    if a.dtype != b.dtype or a.dtype != out.dtype:
        return ZL_TENSOR_EDTYPE
    it.nops = 3
    if broadcast_strides(a, out, it.strides[0]) < 0 or broadcast_strides(b, out, it.strides[1]) < 0:
        return ZL_TENSOR_ESHAPE
    memcpy(it.strides[2], out.strides, out.ndim * sizeof(ptrdiff_t))
    memcpy(it.shape, out.shape, out.ndim * sizeof(ptrdiff_t))
    it.ptr[0] = a.data
    it.ptr[1] = b.data
    it.ptr[2] = out.data
    iter_prepare(&it, out.ndim)
    binary_dispatch(&it, out.dtype, op)
    return ZL_TENSOR_OK


cdef int tensor_add_status(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) noexcept nogil:
    cdef AddTag op
    return binary_status(a, b, out, &op)


cdef int tensor_mul_status(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) noexcept nogil:
    cdef MulTag op
    return binary_status(a, b, out, &op)


cdef int tensor_add(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) except -1 nogil:
    return check_tensor_status(tensor_add_status(a, b, out), "add", a, b, out)


cdef int tensor_mul(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) except -1 nogil:
    return check_tensor_status(tensor_mul_status(a, b, out), "mul", a, b, out)


cdef int tensor_copy_status(const zl_tensor_view *src, zl_tensor_view *dst) noexcept nogil:
    cdef nd_iter it
    it.nops = 2
    if broadcast_strides(src, dst, it.strides[0]) < 0:
        return ZL_TENSOR_ESHAPE
    memcpy(it.strides[1], dst.strides, dst.ndim * sizeof(ptrdiff_t))
    memcpy(it.shape, dst.shape, dst.ndim * sizeof(ptrdiff_t))
    it.ptr[0] = src.data
    it.ptr[1] = dst.data
    iter_prepare(&it, dst.ndim)
    cast_dispatch(&it, src.dtype, dst.dtype)
    return ZL_TENSOR_OK


cdef int tensor_copy(const zl_tensor_view *src, zl_tensor_view *dst) except -1 nogil:
    return check_tensor_status(tensor_copy_status(src, dst), "copy", src, dst, dst)


cdef void tensor_fill(zl_tensor_view *t, double value) noexcept nogil:
    cdef nd_iter it
    it.nops = 1
    memcpy(it.strides[0], t.strides, t.ndim * sizeof(ptrdiff_t))
    memcpy(it.shape, t.shape, t.ndim * sizeof(ptrdiff_t))
    it.ptr[0] = t.data
    iter_prepare(&it, t.ndim)
    fill_dispatch(&it, t.dtype, value)


cdef int matmul_shape_status(const zl_tensor_view *a, const zl_tensor_view *b,
                             int *ndim, ptrdiff_t *shape) noexcept nogil:
    """The shape of a @ b: (m,k)@(k,n) -> (m,n); a batch of 3-D operands broadcasts."""
    cdef ptrdiff_t ba, bb
    if a.dtype != b.dtype:
        return ZL_TENSOR_EDTYPE
    if a.ndim < 2 or a.ndim > 3 or b.ndim < 2 or b.ndim > 3 \
            or a.shape[a.ndim - 1] != b.shape[b.ndim - 2]:
        return ZL_TENSOR_ESHAPE
    ba = a.shape[0] if a.ndim == 3 else 1
    bb = b.shape[0] if b.ndim == 3 else 1
    if ba != bb and ba != 1 and bb != 1:
        return ZL_TENSOR_ESHAPE
    ndim[0] = 3 if (a.ndim == 3 or b.ndim == 3) else 2
    if ndim[0] == 3:
        shape[0] = ba if ba != 1 else bb
    shape[ndim[0] - 2] = a.shape[a.ndim - 2]
    shape[ndim[0] - 1] = b.shape[b.ndim - 1]
    return ZL_TENSOR_OK


cdef int tensor_matmul_status(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) noexcept nogil:
    cdef int ndim = 0, d, status
    cdef ptrdiff_t shape[3]
    status = matmul_shape_status(a, b, &ndim, shape)
    if status != ZL_TENSOR_OK:
        return status
    if out.dtype != a.dtype:
        return ZL_TENSOR_EDTYPE
    if out.ndim != ndim:
        return ZL_TENSOR_ESHAPE
    for d in range(ndim):
        if out.shape[d] != shape[d]:
            return ZL_TENSOR_ESHAPE
    if _matmul_impl == NULL:
        # A nogil product before the package's wiring ran (no Python-level product
        # and no ensure_wired() yet): the plain loops, never the GIL.
        return naive_matmul(a, b, out)
    return _matmul_impl(a, b, out)


cdef int tensor_matmul(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) except -1 nogil:
    return check_tensor_status(tensor_matmul_status(a, b, out), "matmul", a, b, out)


# ---- shapes ------------------------------------------------------------------------------

cdef int parse_shape(object shape, ptrdiff_t *out) except -1:
    """A positive int or a sequence of them -> out[]; returns ndim. Zero dims are
    rejected as the seed rejects them: zigllama has no empty tensors."""
    cdef int ndim = 0, d
    cdef Py_ssize_t dim
    if not isinstance(shape, (tuple, list)):
        shape = (shape,)
    ndim = len(shape)
    if ndim == 0 or ndim > ZL_MAX_DIMS:
        raise InvalidShape(f"shape {tuple(shape)} must have 1 to {ZL_MAX_DIMS} dimensions")
    for d in range(ndim):
        try:
            dim = shape[d]
        except (TypeError, OverflowError):
            raise InvalidShape(f"shape {tuple(shape)} must hold integers") from None
        if dim <= 0:
            raise InvalidShape(
                f"shape {tuple(shape)} has a dimension of size {dim} at axis {d}: "
                "every dimension must be at least 1"
            )
        out[d] = dim
    return ndim


cdef Py_ssize_t checked_size(int ndim, const ptrdiff_t *shape, ptrdiff_t itemsize) except -1:
    """Number of elements; raises when size * itemsize would overflow."""
    cdef Py_ssize_t size = 1
    cdef int d
    for d in range(ndim):
        if size > PTRDIFF_MAX // itemsize // shape[d]:
            raise InvalidShape(
                f"shape {tuple([shape[i] for i in range(ndim)])} is too large to address"
            )
        size *= shape[d]
    return size


cdef void contiguous_strides(zl_tensor_view *v) noexcept nogil:
    cdef int d
    cdef ptrdiff_t s = v.itemsize
    for d in range(v.ndim - 1, -1, -1):
        v.strides[d] = s
        s *= v.shape[d]


cdef bint is_c_contiguous(const zl_tensor_view *v) noexcept nogil:
    cdef int d
    cdef ptrdiff_t s = v.itemsize
    for d in range(v.ndim - 1, -1, -1):
        if v.shape[d] != 1 and v.strides[d] != s:
            return False
        s *= v.shape[d]
    return True


cdef bint is_f_contiguous(const zl_tensor_view *v) noexcept nogil:
    cdef int d
    cdef ptrdiff_t s = v.itemsize
    for d in range(v.ndim):
        if v.shape[d] != 1 and v.strides[d] != s:
            return False
        s *= v.shape[d]
    return True


# ---- factories ------------------------------------------------------------------------------

cdef Allocator _default_allocator = HeapAllocator()


def default_allocator():
    """The HeapAllocator tensors use when none is given."""
    return _default_allocator


cdef inline Tensor new_tensor():
    return Tensor.__new__(Tensor)


cdef inline Tensor contiguous_tensor(char *data, int dtype, int ndim, const ptrdiff_t *shape,
                                     Py_ssize_t size, bint writable, object owner):
    """A row-major tensor over `data` (checked shape); `owner` keeps the memory alive."""
    cdef Tensor t = new_tensor()
    t.view.data = data
    t.view.dtype = dtype
    t.view.ndim = ndim
    t.view.itemsize = zl_dtype_itemsize(dtype)
    memcpy(t.view.shape, shape, ndim * sizeof(ptrdiff_t))
    contiguous_strides(&t.view)
    t.size = size
    t.writable = writable
    t.owner = owner
    return t


cdef Tensor tensor_empty(int ndim, const ptrdiff_t *shape, int dtype, Allocator allocator):
    cdef ptrdiff_t itemsize = zl_dtype_itemsize(dtype)
    cdef Tensor t
    cdef Py_ssize_t size
    cdef int d
    if itemsize == 0:
        raise unsupported(dtype)
    if ndim < 1 or ndim > ZL_MAX_DIMS:
        raise InvalidShape(f"a tensor has 1 to {ZL_MAX_DIMS} dimensions, not {ndim}")
    for d in range(ndim):
        if shape[d] <= 0:
            raise InvalidShape(
                f"shape {tuple([shape[i] for i in range(ndim)])} has a dimension of size "
                f"{shape[d]} at axis {d}: every dimension must be at least 1"
            )
    size = checked_size(ndim, shape, itemsize)
    if allocator is None:
        allocator = _default_allocator
    t = contiguous_tensor(NULL, dtype, ndim, shape, size, True, None)
    # if allocate raises, `t` is dropped owning nothing
    t.view.data = <char *>allocator.allocate(<size_t>(size * itemsize), ZL_DEFAULT_ALIGNMENT)
    t.allocator = allocator
    t.generation = allocator.generation
    t.alloc_size = <size_t>(size * itemsize)
    return t


cdef Tensor tensor_zeros(int ndim, const ptrdiff_t *shape, int dtype, Allocator allocator):
    cdef Tensor t = tensor_empty(ndim, shape, dtype, allocator)
    memset(t.view.data, 0, t.alloc_size)   # all-zero bits are 0 in every dtype
    return t


cdef int pin_memory(Tensor t) except -1:
    t.check_alive()
    if t.allocator is not None:
        t.allocator.acquire_export(t.generation)
    return 0


cdef int tensor_pin(Tensor t) except -1:
    # The public pin also wires the package (once: the first pin imports the
    # backends), so a nogil tensor_matmul after a pin always takes the package's
    # backend, never the plain loops that stand in before the wiring.
    ensure_wired()
    return pin_memory(t)


cdef void tensor_unpin(Tensor t) noexcept:
    if t.allocator is not None:
        t.allocator.release_export()


cdef int pin_operands(Tensor a, Tensor b, Tensor c) except -1:
    """tensor_pin of a, b and c (b, c may be None) for a method's nogil work: another
    thread's arena reset then raises BufferInUse instead of freeing the memory under
    the kernel. All or none: a failed pin undoes the others. (The methods' own
    pins leave the wiring to the methods that need a backend.)"""
    pin_memory(a)
    try:
        if b is not None:
            pin_memory(b)
        try:
            if c is not None:
                pin_memory(c)
        except BaseException:
            if b is not None:
                tensor_unpin(b)
            raise
    except BaseException:
        tensor_unpin(a)
        raise
    return 0


cdef void unpin_operands(Tensor a, Tensor b, Tensor c) noexcept:
    tensor_unpin(a)
    if b is not None:
        tensor_unpin(b)
    if c is not None:
        tensor_unpin(c)


cdef Tensor view_of(Tensor base):
    """A new Tensor sharing base's memory (same dtype and data; caller sets the shape)."""
    cdef Tensor v = new_tensor()
    v.view = base.view
    v.size = base.size
    v.writable = base.writable
    v.owner = base if base.owner is None else base.owner
    v.allocator = base.allocator
    v.generation = base.generation
    return v


# Object arguments are untyped in the signatures (Cython's own check raises a bare
# TypeError) and checked here, inline: an isinstance test on the fast path.
cdef inline Tensor tensor_argument(object value, str name, bint optional):
    if isinstance(value, Tensor) or (optional and value is None):
        return <Tensor>value
    raise wrong_type(value, name, "a Tensor or None" if optional else "a Tensor")


cdef inline Allocator allocator_argument(object value):
    if value is None or isinstance(value, Allocator):
        return <Allocator>value
    raise wrong_type(value, "allocator", "an Allocator or None")


cdef Tensor like(Tensor t, int ndim, const ptrdiff_t *shape, int dtype, Allocator allocator):
    """A result tensor: from `allocator`, else from t's allocator, else the default."""
    if allocator is None:
        allocator = t.allocator
    return tensor_empty(ndim, shape, dtype, allocator)


@cython.no_gc_clear  # __dealloc__ releases the buffer through its exporter: keep it
cdef class _BufferHolder:
    """Keeps a buffer exported (a bytearray cannot resize, a map cannot close)."""
    cdef Py_buffer buf
    cdef bint held

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.buf)


cdef object root_tensor(object obj):
    """The Tensor at the end of a numpy array's base chain, if any: an array made by
    np.asarray(tensor) keeps tensor's arena check when wrapped again."""
    while obj is not None and not isinstance(obj, Tensor):
        if isinstance(obj, np.ndarray):
            obj = obj.base
        elif isinstance(obj, memoryview):
            obj = (<memoryview>obj).obj
        else:
            return None
    return obj


cdef object python_scalar(const char *p, int dtype):
    if dtype == ZL_F32:
        return (<const float *>p)[0]
    elif dtype == ZL_F64:
        return (<const double *>p)[0]
    elif dtype == ZL_F16:
        return zl_f16_bits_to_f32((<const zl_f16 *>p)[0].bits)
    elif dtype == ZL_BF16:
        return zl_bf16_bits_to_f32((<const zl_bf16 *>p)[0].bits)
    elif dtype == ZL_I8:
        return (<const int8_t *>p)[0]
    return (<const int32_t *>p)[0]


cdef double fill_value(object value, int dtype) except? -1:
    """A Python number as the double tensor_fill takes. Integer dtypes want integers
    in range (numpy 2 raises OverflowError too); floats are converted from the double."""
    cdef int64_t lo, hi
    if not isinstance(value, (int, float)) and not hasattr(value, "__index__") \
            and not hasattr(value, "__float__"):
        raise InvalidArgumentType(f"a tensor element must be a number, not {type(value).__name__}")
    if dtype == ZL_I8 or dtype == ZL_I32:
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueOutOfRange(f"cannot store {value} in an integer tensor")
            value = int(value)
        value = int(value)
        lo, hi = (-128, 127) if dtype == ZL_I8 else (-2147483648, 2147483647)
        if value < lo or value > hi:
            raise ValueOutOfRange(f"{value} is out of bounds for {_NAME_OF[dtype]}")
        return <double>value
    try:
        return <double>float(value)
    except OverflowError:
        raise ValueOutOfRange(f"{value} is out of range for {_NAME_OF[dtype]}") from None


# ---- helpers of the Python methods ------------------------------------------------------

cdef char *element(Tensor t, tuple index) except NULL:
    """The address of one element; exactly ndim integer indices, negative from the end."""
    cdef int d
    cdef Py_ssize_t i
    cdef char *p = t.view.data
    if len(index) != t.view.ndim:
        raise InvalidIndex(
            f"{len(index)} indices {index} for a tensor of shape {shape_of(&t.view)}: "
            f"need {t.view.ndim}"
        )
    for d in range(t.view.ndim):
        try:
            i = index[d]
        except (TypeError, OverflowError):
            raise InvalidIndex(f"index {index} must hold integers") from None
        if i < 0:
            i += t.view.shape[d]
        if i < 0 or i >= t.view.shape[d]:
            raise InvalidIndex(
                f"index {index[d]} is out of range for axis {d} of shape "
                f"{shape_of(&t.view)}"
            )
        p += i * t.view.strides[d]
    return p


cdef object sliced(Tensor t, tuple index):
    """A view for a basic index (integers, slices, '...', None), or an element when
    every axis was indexed by an integer."""
    cdef Tensor v = view_of(t)
    cdef int d = 0, nd = 0, used = 0, n_ellipsis = 0, expand
    cdef Py_ssize_t start, stop, step, count, i, length
    for k in index:
        if k is Ellipsis:
            n_ellipsis += 1
        elif k is not None:
            used += 1
    if n_ellipsis > 1:
        raise InvalidIndex(f"index {index} has more than one '...'")
    if used > t.view.ndim:
        raise InvalidIndex(
            f"too many indices ({used}) in {index} for a tensor of shape {shape_of(&t.view)}"
        )
    for k in index:
        if k is Ellipsis:
            for expand in range(t.view.ndim - used):
                nd = push_axis(v, nd, t.view.shape[d], t.view.strides[d])
                d += 1
        elif k is None:
            nd = push_axis(v, nd, 1, 0)
        elif isinstance(k, slice):
            length = t.view.shape[d]
            if k.step == 0:
                raise InvalidIndex(f"slice step cannot be zero (axis {d} in {index})")
            start, stop, step = k.indices(length)
            count = len(range(start, stop, step))
            if count == 0:
                raise InvalidShape(
                    f"slice {k.start}:{k.stop}:{k.step} selects no elements of axis {d} "
                    f"(size {length}) of shape {shape_of(&t.view)}: zigllama has no "
                    "empty tensors"
                )
            v.view.data += start * t.view.strides[d]
            nd = push_axis(v, nd, count, step * t.view.strides[d])
            d += 1
        else:
            try:
                if isinstance(k, bool):
                    raise TypeError("a bool is not an index")
                i = k
            except (TypeError, OverflowError):
                raise InvalidIndex(
                    f"index {k!r} in {index}: only integers, slices, '...' and None "
                    "index a tensor"
                ) from None
            if i < 0:
                i += t.view.shape[d]
            if i < 0 or i >= t.view.shape[d]:
                raise InvalidIndex(
                    f"index {k} is out of range for axis {d} of shape {shape_of(&t.view)}"
                )
            v.view.data += i * t.view.strides[d]
            d += 1
    while d < t.view.ndim:
        nd = push_axis(v, nd, t.view.shape[d], t.view.strides[d])
        d += 1
    if nd == 0:
        # every axis indexed by an integer (around a '...'): an element, as numpy's
        return python_scalar(v.view.data, t.view.dtype)
    v.view.ndim = nd
    v.size = 1
    for d in range(nd):
        v.size *= v.view.shape[d]
    return v


cdef int push_axis(Tensor v, int nd, ptrdiff_t size, ptrdiff_t stride) except -1:
    if nd >= ZL_MAX_DIMS:
        raise InvalidIndex(f"the view would have more than {ZL_MAX_DIMS} dimensions")
    v.view.shape[nd] = size
    v.view.strides[nd] = stride
    return nd + 1


cdef void extent(const zl_tensor_view *v, uintptr_t *lo, uintptr_t *hi) noexcept nogil:
    """The bytes [lo, hi) a view can touch."""
    cdef int d
    cdef ptrdiff_t low = 0, high = v.itemsize, reach
    for d in range(v.ndim):
        reach = (v.shape[d] - 1) * v.strides[d]
        if reach < 0:
            low += reach
        else:
            high += reach
    lo[0] = <uintptr_t>v.data + <uintptr_t>low
    hi[0] = <uintptr_t>v.data + <uintptr_t>high


cdef bint overlaps(const zl_tensor_view *a, const zl_tensor_view *b) noexcept nogil:
    cdef uintptr_t alo, ahi, blo, bhi
    extent(a, &alo, &ahi)
    extent(b, &blo, &bhi)
    return alo < bhi and blo < ahi


cdef bint same_elements(const zl_tensor_view *a, const zl_tensor_view *b) noexcept nogil:
    """Element i of a is element i of b (so an element-wise kernel may write a into b)."""
    cdef int d
    if a.data != b.data or a.ndim != b.ndim or a.dtype != b.dtype:
        return False
    for d in range(a.ndim):
        if a.shape[d] != b.shape[d] or (a.shape[d] != 1 and a.strides[d] != b.strides[d]):
            return False
    return True


cdef Tensor unaliased(Tensor src, Tensor out, bint elementwise):
    """src, or a copy of it when writing out would change src's elements before they
    are read (numpy buffers such operands too). Element-wise kernels may write
    in place over an identical view; matmul never may."""
    if overlaps(&src.view, &out.view) and not (elementwise and same_elements(&src.view, &out.view)):
        return src.copy()
    return src


cdef int assign(Tensor t, value) except -1:
    """Store value into this view: a number fills it, a tensor or array is copied
    (converted to this dtype, broadcast to this shape)."""
    cdef Tensor src
    if isinstance(value, (int, float)):
        t.fill(value)
        return 0
    if isinstance(value, Tensor):
        src = value
    else:
        arr = np.asarray(value)
        if t.view.dtype != ZL_BF16:
            arr = np.ascontiguousarray(arr, dtype=t.dtype)
        else:
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        src = Tensor.from_numpy(arr)
    src.check_alive()
    src = unaliased(src, t, True)
    pin_operands(src, t, None)
    try:
        with nogil:
            tensor_copy(&src.view, &t.view)
    finally:
        unpin_operands(src, t, None)
    return 0


cdef Tensor operand(Tensor t, other):
    """other as a Tensor of t's dtype: a Python number becomes a 1-element tensor."""
    cdef Tensor r
    if isinstance(other, Tensor):
        r = other
        r.check_alive()
        return r
    if isinstance(other, (int, float)):
        if isinstance(other, float) and (t.view.dtype == ZL_I8 or t.view.dtype == ZL_I32):
            raise UnsupportedDtype(
                f"cannot combine an {_NAME_OF[t.view.dtype]} tensor with the float "
                f"{other!r}: convert the tensor with astype() first"
            )
        # numpy's rule for Python numbers: the number takes the tensor's dtype
        r = tensor_empty(1, &ONE, t.view.dtype, _default_allocator)
        tensor_fill(&r.view, fill_value(other, t.view.dtype))
        return r
    raise InvalidArgumentType(f"cannot combine a Tensor with {type(other).__name__}")


cdef Tensor binary(Tensor t, other, Tensor out, Allocator allocator, bint multiply):
    cdef Tensor b = operand(t, other)
    cdef ptrdiff_t shape[ZL_MAX_DIMS]
    cdef int ndim = 0
    cdef const char *cwhat = "mul" if multiply else "add"
    t.check_alive()
    if out is None:
        check_tensor_status(broadcast_shape_status(&t.view, &b.view, &ndim, shape), cwhat, &t.view, &b.view, NULL)
        if t.view.dtype != b.view.dtype:
            check_tensor_status(ZL_TENSOR_EDTYPE, cwhat, &t.view, &b.view, NULL)
        out = like(t, ndim, shape, t.view.dtype, allocator)
    else:
        out.check_alive()
        out.check_writable()
        t = unaliased(t, out, True)
        b = unaliased(b, out, True)
    pin_operands(t, b, out)
    try:
        with nogil:
            if multiply:
                tensor_mul(&t.view, &b.view, &out.view)
            else:
                tensor_add(&t.view, &b.view, &out.view)
    finally:
        unpin_operands(t, b, out)
    return out


cdef object operator(Tensor t, other, bint multiply):
    """`t + other` / `t * other` (either order): tensors and Python numbers only, so
    that other types get their say through NotImplemented."""
    if not isinstance(other, (Tensor, int, float)):
        return NotImplemented
    return binary(t, other, None, None, multiply)


# ---- the Python object -------------------------------------------------------------------

@cython.final
@cython.no_gc
@cython.freelist(32)
cdef class Tensor:
    """An n-dimensional array of one element type, row-major, over an allocator's
    memory (or over a numpy array / buffer it wraps without copying).

    Make one with :meth:`zeros`, :meth:`empty`, :meth:`from_numpy` or
    :meth:`from_buffer`. ``np.asarray(t)`` shares its memory.
    """

    def __init__(self, *args, **kwargs):
        raise InvalidArgumentType(
            "create tensors with Tensor.zeros(shape, dtype, allocator), Tensor.empty(...), "
            "Tensor.from_numpy(array) or Tensor.from_buffer(obj, dtype, shape)"
        )

    def __dealloc__(self):
        # Owned memory goes back to its allocator, unless an arena reset took it already.
        if self.alloc_size != 0 and self.allocator is not None \
                and self.generation == self.allocator.generation:
            self.allocator.c.vtable.free(self.allocator.c.ctx, self.view.data,
                                         self.alloc_size, ZL_DEFAULT_ALIGNMENT)
        self.view.data = NULL

    cdef int check_alive(self) except -1:
        if self.view.ndim == 0:
            # only Tensor.__new__(Tensor) from Python makes one: nothing to touch
            raise TensorError("this Tensor was not made by a factory (zeros, empty, from_numpy, ...)")
        if self.allocator is not None and self.generation != self.allocator.generation:
            raise UseAfterReset(
                f"tensor {_NAME_OF[self.view.dtype]} {shape_of(&self.view)} was allocated from "
                f"{type(self.allocator).__name__} (generation {self.generation}), which has "
                f"been reset since (now generation {self.allocator.generation}): its memory is "
                "gone. Copy tensors that must outlive the arena's reset into another allocator."
            )
        return 0

    cdef int check_writable(self) except -1:
        if not self.writable:
            raise ReadOnlyTensor(
                f"tensor {_NAME_OF[self.view.dtype]} {shape_of(&self.view)} is read-only "
                "(it wraps read-only memory)"
            )
        return 0

    # ---- creation -----------------------------------------------------------------------
    @staticmethod
    def zeros(shape, dtype="float32", Allocator allocator=None):
        """A zero-filled tensor (the seed's ``Tensor(T).init``) from ``allocator``
        (a HeapAllocator when None). Every dimension must be >= 1."""
        cdef ptrdiff_t dims[ZL_MAX_DIMS]
        cdef int ndim = parse_shape(shape, dims)
        return tensor_zeros(ndim, dims, dtype_code(dtype), allocator)

    @staticmethod
    def empty(shape, dtype="float32", Allocator allocator=None):
        """Like :meth:`zeros` without the zero fill: the contents are whatever the
        memory held."""
        cdef ptrdiff_t dims[ZL_MAX_DIMS]
        cdef int ndim = parse_shape(shape, dims)
        return tensor_empty(ndim, dims, dtype_code(dtype), allocator)

    @staticmethod
    def from_numpy(array):
        """Wrap a numpy array without copying. The tensor keeps the array alive and
        is read-only when the array is.

        The array must be C-contiguous and aligned for its dtype (else
        :class:`InvalidLayout`: pass ``np.ascontiguousarray(a)`` to copy), hold
        float32, float64, float16, int8 or int32 in native byte order (else
        :class:`UnsupportedDtype`), and have no zero-size axis and at least one
        dimension (else :class:`InvalidShape`).
        """
        cdef Tensor t
        cdef int code, ndim
        cdef cnp.dtype npdt
        cdef cnp.ndarray arr
        if not isinstance(array, np.ndarray):
            raise UnsupportedDtype(
                f"from_numpy expects a numpy.ndarray, got {type(array).__name__}"
            )
        arr = array
        npdt = arr.descr
        code = _CODE_OF_NUMPY_CHAR.get(npdt.char, -1)
        if code < 0 or not npdt.isnative or npdt.itemsize != zl_dtype_itemsize(code):
            raise unsupported(array.dtype)
        ndim = cnp.PyArray_NDIM(arr)
        if ndim < 1 or ndim > ZL_MAX_DIMS or cnp.PyArray_SIZE(arr) == 0:
            raise InvalidShape(
                f"cannot wrap an array of shape {array.shape}: a tensor has 1 to "
                f"{ZL_MAX_DIMS} dimensions, each of size >= 1"
            )
        if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
            raise InvalidLayout(
                f"cannot wrap a non-contiguous array (shape {array.shape}, strides "
                f"{array.strides}) without copying: use Tensor.from_numpy(np.ascontiguousarray(a))"
            )
        if (<uintptr_t>array_data(arr)) % <uintptr_t>npdt.itemsize != 0:
            raise InvalidLayout(
                f"cannot wrap an array whose data (at 0x{<uintptr_t>array_data(arr):x}) "
                f"is misaligned for {array.dtype}: copy it with np.array(a) first"
            )
        t = contiguous_tensor(<char *>array_data(arr), code, ndim,
                              <const ptrdiff_t *>cnp.PyArray_DIMS(arr), cnp.PyArray_SIZE(arr),
                              cnp.PyArray_ISWRITEABLE(arr), array)
        root = root_tensor(array.base)
        if root is not None:
            (<Tensor>root).check_alive()
            t.allocator = (<Tensor>root).allocator
            t.generation = (<Tensor>root).generation
        return t

    @staticmethod
    def from_buffer(obj, dtype, shape, Py_ssize_t offset=0):
        """A tensor over ``obj``'s memory (any contiguous buffer: bytes, bytearray,
        mmap, MemoryMap, numpy array), starting ``offset`` bytes in, without copying.
        Read-only when the buffer is. The buffer stays exported while the tensor
        lives (a bytearray cannot resize under it, a map cannot close).

        This is how float16/bfloat16 weights inside a mapped GGUF file become tensors."""
        cdef ptrdiff_t dims[ZL_MAX_DIMS]
        cdef int ndim = parse_shape(shape, dims)
        cdef int code = dtype_code(dtype)
        cdef ptrdiff_t itemsize = zl_dtype_itemsize(code)
        cdef Py_ssize_t size = checked_size(ndim, dims, itemsize)
        cdef _BufferHolder holder = _BufferHolder.__new__(_BufferHolder)
        cdef char *data
        try:
            PyObject_GetBuffer(obj, &holder.buf, PyBUF_ANY_CONTIGUOUS)
        except BufferError as e:
            raise InvalidLayout(f"from_buffer needs a contiguous buffer: {e}") from None
        holder.held = True
        if offset < 0 or offset > holder.buf.len or size * itemsize > holder.buf.len - offset:
            raise InvalidShape(
                f"shape {tuple([dims[i] for i in range(ndim)])} of {_NAME_OF[code]} needs "
                f"{size * itemsize} bytes at offset {offset}, but the buffer holds "
                f"{holder.buf.len} bytes"
            )
        data = <char *>holder.buf.buf + offset
        if (<uintptr_t>data) % <uintptr_t>itemsize != 0:
            raise InvalidLayout(
                f"data at offset {offset} (address 0x{<uintptr_t>data:x}) is misaligned for "
                f"{_NAME_OF[code]} ({itemsize}-byte elements)"
            )
        return contiguous_tensor(data, code, ndim, dims, size, not holder.buf.readonly, holder)

    # ---- attributes ----------------------------------------------------------------------
    @property
    def ndim(self):
        return self.view.ndim

    @property
    def shape(self):
        return shape_of(&self.view)

    @property
    def strides(self):
        """Byte strides, as numpy's."""
        return tuple([self.view.strides[d] for d in range(self.view.ndim)])

    @property
    def element_strides(self):
        """Strides in elements: flat index = sum(i_d * element_strides[d])."""
        return tuple([self.view.strides[d] // self.view.itemsize for d in range(self.view.ndim)])

    @property
    def dtype(self):
        """The element type's name: 'float32', 'float64', 'float16', 'bfloat16', 'int8', 'int32'."""
        return _NAME_OF[self.view.dtype]

    @property
    def dtype_code(self):
        """The element type's code in ``zigllama/zl_tensor.h`` (ggml's type id)."""
        return self.view.dtype

    @property
    def itemsize(self):
        return self.view.itemsize

    @property
    def nbytes(self):
        return self.size * self.view.itemsize

    @property
    def is_contiguous(self):
        """True when the elements are adjacent in row-major order."""
        return is_c_contiguous(&self.view)

    @property
    def owns_data(self):
        """True when this tensor allocated its memory (False for views and wrappers)."""
        return self.alloc_size != 0

    @property
    def base(self):
        """What keeps the memory alive: the owning tensor of a view, the wrapped array
        or buffer, or None when this tensor owns its memory."""
        return self.owner

    @property
    def allocator(self):
        """The allocator the memory came from (None for wrapped memory)."""
        return self.allocator

    @property
    def valid(self):
        """False once the memory's arena was reset."""
        return self.allocator is None or self.generation == self.allocator.generation

    def __len__(self):
        return self.view.shape[0]

    # ---- the buffer protocol (np.asarray(t) shares memory) ----------------------------------
    def __getbuffer__(self, Py_buffer *buffer, int flags):
        self.check_alive()
        if (flags & PyBUF_WRITABLE) == PyBUF_WRITABLE and not self.writable:
            raise BufferInUse(f"tensor {shape_of(&self.view)} is read-only")
        if ((flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS and not is_c_contiguous(&self.view)) \
                or ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS and not is_f_contiguous(&self.view)) \
                or ((flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS
                    and not (is_c_contiguous(&self.view) or is_f_contiguous(&self.view))) \
                or ((flags & PyBUF_STRIDES) != PyBUF_STRIDES and not is_c_contiguous(&self.view)):
            raise BufferInUse(
                f"tensor with shape {shape_of(&self.view)} and strides {self.strides} "
                "is not contiguous as the consumer asked"
            )
        if self.allocator is not None:
            # an arena refuses to reset while this view is out
            self.allocator.acquire_export(self.generation)
        buffer.buf = self.view.data
        buffer.len = self.size * self.view.itemsize
        buffer.readonly = not self.writable
        buffer.itemsize = self.view.itemsize
        buffer.format = <char *>buffer_format(self.view.dtype) if flags & PyBUF_FORMAT else NULL
        buffer.ndim = self.view.ndim
        buffer.shape = <Py_ssize_t *>self.view.shape if flags & PyBUF_ND else NULL
        buffer.strides = <Py_ssize_t *>self.view.strides \
            if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buffer.suboffsets = NULL
        buffer.internal = NULL
        buffer.obj = self

    def __releasebuffer__(self, Py_buffer *buffer):
        if self.allocator is not None:
            self.allocator.release_export()

    # ---- DLPack (np.from_dlpack(t), torch.from_dlpack(t) share memory) ----------------------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """Export this tensor as a DLPack capsule (the array API's protocol): the
        consumer shares the memory, and an arena refuses to reset while it holds it.

        A ``max_version`` of (1, 0) or later gets a versioned capsule that carries the
        read-only flag; older consumers get the legacy capsule, which cannot say
        "read-only", so read-only tensors refuse it (as numpy does). ``copy=True``
        exports a fresh copy."""
        return dlpack_export(self, stream, max_version, dl_device, copy)

    def __dlpack_device__(self):
        """(device type, device id) of the memory: (1, 0), the CPU."""
        return (ZL_DL_CPU, 0)

    @staticmethod
    def from_dlpack(obj, *, copy=None):
        """A tensor sharing the memory of any DLPack producer on the CPU (a numpy
        array, a torch or JAX CPU tensor, another Tensor), with its strides; read-only
        when the producer says so. ``copy=True`` copies into a new heap tensor."""
        return dlpack_import(obj, copy)

    # ---- elements --------------------------------------------------------------------------

    def get(self, *index):
        """The element at ``index`` (``t.get(i, j)`` or ``t.get((i, j))``), bounds-checked."""
        if len(index) == 1 and isinstance(index[0], tuple):
            index = index[0]
        self.check_alive()
        return python_scalar(element(self, index), self.view.dtype)

    def set(self, index, value):
        """Store ``value`` at ``index`` (an int or a tuple), bounds-checked."""
        if not isinstance(index, tuple):
            index = (index,)
        self.check_alive()
        self.check_writable()
        cdef char *p = element(self, index)
        cdef zl_tensor_view one
        one.data = p
        one.dtype = self.view.dtype
        one.ndim = 1
        one.itemsize = self.view.itemsize
        one.shape[0] = 1
        one.strides[0] = 0
        tensor_fill(&one, fill_value(value, self.view.dtype))

    def fill(self, value):
        """Set every element to ``value``."""
        self.check_alive()
        self.check_writable()
        cdef double v = fill_value(value, self.view.dtype)
        pin_operands(self, None, None)
        try:
            with nogil:
                tensor_fill(&self.view, v)
        finally:
            unpin_operands(self, None, None)

    # ---- views -------------------------------------------------------------------------------
    def __getitem__(self, key):
        """``t[i, j]`` is an element; slices, fewer indices, ``...`` and ``None`` give views."""
        cdef tuple index = key if isinstance(key, tuple) else (key,)
        cdef bint all_int = len(index) == self.view.ndim
        for k in index:
            if not (isinstance(k, int) or hasattr(k, "__index__")) or isinstance(k, bool):
                all_int = False
                break
        self.check_alive()
        if all_int:
            return python_scalar(element(self, index), self.view.dtype)
        return sliced(self, index)

    def __setitem__(self, key, value):
        cdef Tensor target_view
        self.check_alive()
        self.check_writable()
        sub = self[key]
        if not isinstance(sub, Tensor):
            self.set(key, value)
            return
        target_view = sub
        assign(target_view, value)




    def reshape(self, *shape):
        """The same elements in a new shape (one dimension may be -1). A view when
        the tensor is contiguous; otherwise a contiguous copy, as numpy does."""
        cdef ptrdiff_t dims[ZL_MAX_DIMS]
        cdef int ndim, infer = -1
        cdef Py_ssize_t known
        cdef Tensor v
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        self.check_alive()
        shape = tuple(shape)
        if -1 in shape:
            infer = shape.index(-1)   # its size is what the others leave
        ndim = parse_shape(tuple(1 if d == infer else dim for d, dim in enumerate(shape)), dims)
        known = checked_size(ndim, dims, self.view.itemsize)
        if infer >= 0 and self.size % known == 0:
            dims[infer] = self.size // known
            known = self.size
        if known != self.size:
            raise InvalidShape(
                f"cannot reshape a tensor of shape {self.shape} ({self.size} elements) "
                f"into {shape}" + ("" if infer >= 0 else f" ({known} elements)")
            )
        if not is_c_contiguous(&self.view):
            return self.copy().reshape(*shape)
        v = view_of(self)
        v.view.ndim = ndim
        memcpy(v.view.shape, dims, ndim * sizeof(ptrdiff_t))
        contiguous_strides(&v.view)
        return v

    def transpose(self, *axes):
        """A view with the axes permuted; reversed when no axes are given."""
        cdef Tensor v
        cdef int d, n = self.view.ndim
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if len(axes) == 0:
            axes = tuple(range(n - 1, -1, -1))
        try:
            perm = [a + n if a < 0 else a for a in axes]
        except TypeError:
            raise InvalidIndex(f"axes {axes} must be integers") from None
        if sorted(perm) != list(range(n)):
            raise InvalidIndex(
                f"axes {axes} are not a permutation of the {n} axes of shape {self.shape}"
            )
        self.check_alive()
        v = view_of(self)
        for d in range(n):
            v.view.shape[d] = self.view.shape[perm[d]]
            v.view.strides[d] = self.view.strides[perm[d]]
        return v

    @property
    def T(self):
        """The transpose (axes reversed), a view."""
        return self.transpose()

    # ---- new tensors ------------------------------------------------------------------------
    def copy(self, allocator=None):
        """A contiguous copy, from ``allocator`` (default: this tensor's, else the heap)."""
        return self.astype(_NAME_OF[self.view.dtype], allocator)

    def astype(self, dtype, allocator=None):
        """A contiguous copy converted to ``dtype``, element by element as numpy's
        ``astype`` converts (float16 rounding bit for bit; bfloat16 as ggml rounds)."""
        cdef int code = dtype_code(dtype)
        cdef Tensor out
        self.check_alive()
        out = like(self, self.view.ndim, self.view.shape, code, allocator_argument(allocator))
        pin_operands(self, out, None)
        try:
            with nogil:
                tensor_copy(&self.view, &out.view)
        finally:
            unpin_operands(self, out, None)
        return out



    def add(self, other, out=None, allocator=None):
        """Element-wise ``self + other`` with numpy's broadcasting (so a bias of shape
        (d,) adds to every row of an (s, d) tensor). Both of one dtype. The result goes
        into ``out`` if given, else into a new tensor from ``allocator`` (default: this
        tensor's allocator, else the heap)."""
        return binary(self, other, tensor_argument(out, "out", True), allocator_argument(allocator), False)

    def mul(self, other, out=None, allocator=None):
        """Element-wise (Hadamard) product, broadcasting as :meth:`add`."""
        return binary(self, other, tensor_argument(out, "out", True), allocator_argument(allocator), True)

    def matmul(self, other, out=None, allocator=None):
        """Matrix product: (m, k) @ (k, n) -> (m, n); (B, m, k) @ (k, n) -> (B, m, n);
        3-D operands multiply batch by batch (a batch of 1 broadcasts).
        ``other`` may also be a quantized weight's transpose (``QuantizedTensor.T``,
        float32 only): the product then runs in ``zigllama.qgemm``."""
        cdef ptrdiff_t shape[3]
        cdef int ndim = 0
        cdef Tensor a = self
        if hasattr(type(other), "_zl_rmatmul"):
            return self._product_protocol(other, out, allocator)
        cdef Tensor b = tensor_argument(other, "other", False)
        cdef Tensor o = tensor_argument(out, "out", True)
        self.check_alive()
        b.check_alive()
        ensure_wired()
        if o is None:
            check_tensor_status(matmul_shape_status(&self.view, &b.view, &ndim, shape), "matmul",
                                &self.view, &b.view, NULL)
            o = like(self, ndim, shape, self.view.dtype, allocator_argument(allocator))
        else:
            o.check_alive()
            o.check_writable()
            a = unaliased(a, o, False)
            b = unaliased(b, o, False)
        if _matmul_prepare != NULL:
            _matmul_prepare(&a.view, &b.view, &o.view)
        pin_operands(a, b, o)
        try:
            with nogil:
                tensor_matmul(&a.view, &b.view, &o.view)
        finally:
            unpin_operands(a, b, o)
        return o

    def _product_protocol(self, other, out, allocator):
        # A right operand that multiplies itself (a quantized weight's transpose,
        # defined above this module): out is made here, through the allocator,
        # and filled in place.
        cdef Tensor o = tensor_argument(out, "out", True)
        cdef ptrdiff_t shape[3]
        cdef int i
        self.check_alive()
        if self.view.ndim < 1 or self.view.ndim > 3:
            raise IncompatibleShapes(f"cannot multiply a tensor of shape {self.shape} by a matrix")
        if o is None:
            for i in range(self.view.ndim - 1):
                shape[i] = self.view.shape[i]
            shape[self.view.ndim - 1] = other.shape[1]
            o = like(self, self.view.ndim, shape, self.view.dtype, allocator_argument(allocator))
        else:
            o.check_alive()
            o.check_writable()
        other._zl_rmatmul(np.asarray(self), out=np.asarray(o))
        return o

    def __add__(self, other):
        return operator(self, other, False)

    def __radd__(self, other):
        return operator(self, other, False)   # a number + tensor: addition commutes

    def __mul__(self, other):
        return operator(self, other, True)

    def __rmul__(self, other):
        return operator(self, other, True)

    def __matmul__(self, other):
        if not isinstance(other, Tensor) and not hasattr(type(other), "_zl_rmatmul"):
            return NotImplemented
        return self.matmul(other)

    # ---- copying: copy/deepcopy give a new tensor; pickle says how -----------------------------
    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        raise NotCopyable("a Tensor cannot be pickled (its memory belongs to an allocator or a buffer): "
                          "pickle np.asarray(t) and rebuild it with Tensor.from_numpy")

    # ---- printing -------------------------------------------------------------------------------
    def __repr__(self):
        if self.view.ndim == 0:
            return "Tensor(<not made by a factory>)"
        if not self.valid:
            return f"Tensor({self.dtype}, shape={self.shape}, <memory reset with its arena>)"
        arr = np.asarray(self)
        if self.view.dtype == ZL_BF16:
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        body = np.array2string(arr, separator=", ", threshold=200)
        return f"Tensor({self.dtype}, shape={self.shape})\n{body}"


# ---- DLPack -----------------------------------------------------------------------------------
# An export is one malloc'd block: the managed tensor the consumer sees, the int64 shape
# and strides it points into, and a strong reference to the Tensor (manager_ctx) that
# keeps the memory alive and holds an arena export until the consumer's deleter runs.

cdef extern from "zigllama/zl_dlpack.h" nogil:
    enum:
        ZL_DLPACK_MAJOR_VERSION
        ZL_DLPACK_MINOR_VERSION
        ZL_DL_CPU
        ZL_DL_INT
        ZL_DL_FLOAT
        ZL_DL_BFLOAT
    uint64_t ZL_DLPACK_FLAG_READ_ONLY
    uint64_t ZL_DLPACK_FLAG_IS_COPIED
    ctypedef struct zl_dl_device:
        int32_t device_type
        int32_t device_id
    ctypedef struct zl_dl_data_type:
        uint8_t code
        uint8_t bits
        uint16_t lanes
    ctypedef struct zl_dl_tensor:
        void *data
        zl_dl_device device
        int32_t ndim
        zl_dl_data_type dtype
        int64_t *shape
        int64_t *strides
        uint64_t byte_offset
    ctypedef struct zl_dl_managed_tensor:
        zl_dl_tensor dl_tensor
        void *manager_ctx
        void (*deleter)(zl_dl_managed_tensor *self) noexcept
    ctypedef struct zl_dlpack_version:
        uint32_t major
        uint32_t minor
    ctypedef struct zl_dl_managed_tensor_versioned:
        zl_dlpack_version version
        void *manager_ctx
        void (*deleter)(zl_dl_managed_tensor_versioned *self) noexcept
        uint64_t flags
        zl_dl_tensor dl_tensor

# Each export is one block whose first member is the managed tensor, so the deleter frees it.
cdef struct legacy_export:
    zl_dl_managed_tensor managed
    int64_t shape[ZL_MAX_DIMS]
    int64_t strides[ZL_MAX_DIMS]

cdef struct versioned_export:
    zl_dl_managed_tensor_versioned managed
    int64_t shape[ZL_MAX_DIMS]
    int64_t strides[ZL_MAX_DIMS]

cdef const char *DLTENSOR = b"dltensor"
cdef const char *DLTENSOR_VERSIONED = b"dltensor_versioned"
cdef const char *USED_DLTENSOR = b"used_dltensor"
cdef const char *USED_DLTENSOR_VERSIONED = b"used_dltensor_versioned"


cdef inline void release_exported(PyObject *owner) noexcept:
    cdef Tensor t = <Tensor>owner
    if t.allocator is not None:
        t.allocator.release_export()
    Py_DECREF(t)


# The deleters may be called from any thread, with or without the GIL.
cdef void delete_legacy(zl_dl_managed_tensor *m) noexcept with gil:
    release_exported(<PyObject *>m.manager_ctx)
    free(m)


cdef void delete_versioned(zl_dl_managed_tensor_versioned *m) noexcept with gil:
    release_exported(<PyObject *>m.manager_ctx)
    free(m)


# A capsule nobody consumed still owns its export: its destructor runs the deleter.
cdef void destroy_unconsumed_capsule(object capsule) noexcept:
    cdef zl_dl_managed_tensor *legacy
    cdef zl_dl_managed_tensor_versioned *versioned
    if PyCapsule_IsValid(capsule, DLTENSOR_VERSIONED):
        versioned = <zl_dl_managed_tensor_versioned *>PyCapsule_GetPointer(capsule, DLTENSOR_VERSIONED)
        versioned.deleter(versioned)
    elif PyCapsule_IsValid(capsule, DLTENSOR):
        legacy = <zl_dl_managed_tensor *>PyCapsule_GetPointer(capsule, DLTENSOR)
        legacy.deleter(legacy)


cdef zl_dl_data_type dl_dtype_of(int dtype) noexcept:
    cdef zl_dl_data_type d
    d.lanes = 1
    d.bits = <uint8_t>(8 * zl_dtype_itemsize(dtype))
    d.code = ZL_DL_BFLOAT if dtype == ZL_BF16 else \
        (ZL_DL_INT if dtype == ZL_I8 or dtype == ZL_I32 else ZL_DL_FLOAT)
    return d


cdef int dtype_of_dl(zl_dl_data_type d) except -1:
    cdef zl_dl_data_type ours
    for code in (ZL_F32, ZL_F64, ZL_F16, ZL_BF16, ZL_I8, ZL_I32):
        ours = dl_dtype_of(code)
        if d.code == ours.code and d.bits == ours.bits and d.lanes == ours.lanes:
            return code
    raise UnsupportedDtype(
        f"DLPack dtype (code {d.code}, {d.bits} bits, {d.lanes} lanes) has no zigllama dtype: "
        "float32, float64, float16, bfloat16, int8 and int32 are supported"
    )


cdef void fill_dl_tensor(zl_dl_tensor *dl, Tensor t, int64_t *shape, int64_t *strides) noexcept:
    cdef int d
    dl.data = t.view.data
    dl.device.device_type = ZL_DL_CPU
    dl.device.device_id = 0
    dl.ndim = t.view.ndim
    dl.dtype = dl_dtype_of(t.view.dtype)
    dl.byte_offset = 0
    for d in range(t.view.ndim):
        shape[d] = t.view.shape[d]
        strides[d] = t.view.strides[d] // t.view.itemsize   # bytes -> elements
    dl.shape = shape
    dl.strides = strides


cdef object dlpack_export(Tensor t, stream, max_version, dl_device, copy):
    cdef legacy_export *legacy
    cdef versioned_export *versioned
    cdef void *managed
    cdef const char *name
    t.check_alive()
    if stream is not None:
        raise DLPackError(f"a CPU tensor takes no stream, got stream={stream!r}")
    if dl_device is not None and tuple(dl_device) != (ZL_DL_CPU, 0):
        raise DLPackError(f"the tensor lives on the CPU (1, 0); cannot export to device {dl_device!r}")
    if copy:
        t = t.copy(None)
    if max_version is None or tuple(max_version)[0] < ZL_DLPACK_MAJOR_VERSION:
        if not t.writable:
            raise DLPackError(
                "a read-only tensor cannot go to a legacy DLPack consumer, which has no "
                "read-only flag: the consumer must ask for max_version >= (1, 0), or copy=True"
            )
        legacy = <legacy_export *>malloc(sizeof(legacy_export))
        if legacy == NULL:
            raise OutOfMemory("no memory for a DLPack export")
        fill_dl_tensor(&legacy.managed.dl_tensor, t, legacy.shape, legacy.strides)
        legacy.managed.manager_ctx = <void *>t
        legacy.managed.deleter = delete_legacy
        managed, name = legacy, DLTENSOR
    else:
        versioned = <versioned_export *>malloc(sizeof(versioned_export))
        if versioned == NULL:
            raise OutOfMemory("no memory for a DLPack export")
        fill_dl_tensor(&versioned.managed.dl_tensor, t, versioned.shape, versioned.strides)
        versioned.managed.version.major = ZL_DLPACK_MAJOR_VERSION
        versioned.managed.version.minor = ZL_DLPACK_MINOR_VERSION
        versioned.managed.flags = (0 if t.writable else ZL_DLPACK_FLAG_READ_ONLY) | \
            (ZL_DLPACK_FLAG_IS_COPIED if copy else 0)
        versioned.managed.manager_ctx = <void *>t
        versioned.managed.deleter = delete_versioned
        managed, name = versioned, DLTENSOR_VERSIONED
    # The export's share of the tensor: a reference, and (for arena memory) an export
    # count that refuses resets until the consumer's deleter runs.
    if t.allocator is not None:
        try:
            t.allocator.acquire_export(t.generation)
        except BaseException:
            free(managed)
            raise
    Py_INCREF(t)
    try:
        return PyCapsule_New(managed, name, destroy_unconsumed_capsule)
    except BaseException:
        if name == DLTENSOR:
            delete_legacy(<zl_dl_managed_tensor *>managed)
        else:
            delete_versioned(<zl_dl_managed_tensor_versioned *>managed)
        raise


@cython.final
cdef class _DLPackOwner:
    """Holds a consumed DLPack capsule's managed tensor; its deleter runs when the last
    Tensor over the memory goes."""
    cdef zl_dl_managed_tensor *legacy
    cdef zl_dl_managed_tensor_versioned *versioned

    def __dealloc__(self):
        if self.versioned != NULL and self.versioned.deleter != NULL:
            self.versioned.deleter(self.versioned)
        elif self.legacy != NULL and self.legacy.deleter != NULL:
            self.legacy.deleter(self.legacy)


cdef object dlpack_import(obj, copy):
    cdef _DLPackOwner owner = _DLPackOwner.__new__(_DLPackOwner)
    cdef zl_dl_tensor *dl
    cdef bint writable = True
    cdef int dtype, d
    cdef ptrdiff_t itemsize
    cdef ptrdiff_t dims[ZL_MAX_DIMS]
    cdef Tensor t
    cdef Py_ssize_t size
    cdef char *data
    if isinstance(obj, Tensor):
        (<Tensor>obj).check_alive()
        return (<Tensor>obj).copy(None) if copy else view_of(<Tensor>obj)
    if not hasattr(obj, "__dlpack__"):
        raise DLPackError(f"{type(obj).__name__} is not a DLPack producer (no __dlpack__)")
    if hasattr(obj, "__dlpack_device__"):
        device = tuple(obj.__dlpack_device__())
        if device[:1] != (ZL_DL_CPU,):
            raise DLPackError(f"{type(obj).__name__} lives on device {device}, not the CPU (1, 0)")
    try:
        capsule = obj.__dlpack__(max_version=(ZL_DLPACK_MAJOR_VERSION, ZL_DLPACK_MINOR_VERSION))
    except TypeError:
        capsule = obj.__dlpack__()   # a producer older than DLPack 1.0
    if PyCapsule_IsValid(capsule, DLTENSOR_VERSIONED):
        owner.versioned = <zl_dl_managed_tensor_versioned *>PyCapsule_GetPointer(
            capsule, DLTENSOR_VERSIONED)
        PyCapsule_SetName(capsule, USED_DLTENSOR_VERSIONED)   # now ours to delete
        if owner.versioned.version.major > ZL_DLPACK_MAJOR_VERSION:
            raise DLPackError(
                f"DLPack version {owner.versioned.version.major}.{owner.versioned.version.minor} "
                f"is newer than the {ZL_DLPACK_MAJOR_VERSION}.x this build reads"
            )
        dl = &owner.versioned.dl_tensor
        writable = not (owner.versioned.flags & ZL_DLPACK_FLAG_READ_ONLY)
    elif PyCapsule_IsValid(capsule, DLTENSOR):
        owner.legacy = <zl_dl_managed_tensor *>PyCapsule_GetPointer(capsule, DLTENSOR)
        PyCapsule_SetName(capsule, USED_DLTENSOR)
        dl = &owner.legacy.dl_tensor
    else:
        raise DLPackError(
            f"{type(obj).__name__}.__dlpack__() returned {type(capsule).__name__}, not an "
            "unconsumed 'dltensor' or 'dltensor_versioned' capsule"
        )
    if dl.device.device_type != ZL_DL_CPU:
        raise DLPackError(f"the DLPack tensor lives on device type {dl.device.device_type}, not the CPU")
    dtype = dtype_of_dl(dl.dtype)
    itemsize = zl_dtype_itemsize(dtype)
    if dl.ndim < 1 or dl.ndim > ZL_MAX_DIMS:
        raise InvalidShape(
            f"a DLPack tensor of {dl.ndim} dimensions: a tensor has 1 to {ZL_MAX_DIMS}"
        )
    for d in range(dl.ndim):
        if dl.shape[d] < 1 or dl.shape[d] > PTRDIFF_MAX:
            raise InvalidShape(
                f"a DLPack tensor of shape {tuple([dl.shape[i] for i in range(dl.ndim)])}: "
                f"axis {d} has {dl.shape[d]} elements, and every axis must have at least 1"
            )
        dims[d] = <ptrdiff_t>dl.shape[d]
    size = checked_size(dl.ndim, dims, itemsize)
    if dl.data == NULL or dl.byte_offset > <uint64_t>PTRDIFF_MAX:
        raise DLPackError("the DLPack tensor has no data pointer or an impossible byte offset")
    data = <char *>dl.data + dl.byte_offset
    if (<uintptr_t>data) % <uintptr_t>itemsize != 0:
        raise InvalidLayout(f"DLPack data at 0x{<uintptr_t>data:x} is misaligned for {_NAME_OF[dtype]}")
    t = new_tensor()
    t.view.data = data
    t.view.dtype = dtype
    t.view.ndim = dl.ndim
    t.view.itemsize = itemsize
    memcpy(t.view.shape, dims, dl.ndim * sizeof(ptrdiff_t))
    if dl.strides == NULL:
        contiguous_strides(&t.view)
    else:
        for d in range(dl.ndim):
            # |stride| * (extent - 1) * itemsize stays within the producer's allocation,
            # whose size fits in a ptrdiff_t; a larger stride is a lie we refuse to follow.
            if dl.strides[d] > PTRDIFF_MAX // itemsize or dl.strides[d] < -(PTRDIFF_MAX // itemsize):
                raise InvalidLayout(f"DLPack stride {dl.strides[d]} on axis {d} is out of range")
            t.view.strides[d] = <ptrdiff_t>dl.strides[d] * itemsize
    t.size = size
    t.writable = writable
    t.owner = owner
    return t.copy(None) if copy else t
