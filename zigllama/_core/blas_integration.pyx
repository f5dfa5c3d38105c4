"""BLAS integration (twin of ZigLlama's ``blas_integration.zig``).

One interface, three backends. ``BlasInterface`` is a vtable of nogil C function
pointers plus a context (Zig's ``{ptr, vtable}`` interface), for float32 and
float64: Level 1 ``dot``, ``axpy``, ``scal``, ``nrm2``; Level 2 ``gemv``; Level 3
``gemm``, each with row- or column-major layout, N/T operations, alpha/beta and
leading dimensions. Backends:

- ``scipy``: ``scipy.linalg.cython_blas``, i.e. whatever BLAS scipy links
  (OpenBLAS, MKL, Accelerate, FlexiBLAS), called without the GIL. Row-major calls
  become column-major ones by swapping operands (C = AB is C^T = B^T A^T).
- ``generic``: zigllama's own cache-blocked, packed, register-tiled GEMM (AVX2/FMA
  micro-kernel chosen at run time, portable C otherwise), OpenMP over blocks of rows.
- ``naive``: the seed's triple loop, the teaching and correctness baseline.

Python callers use ``get_blas(name)``; Cython callers ``cimport`` this module's
``.pxd`` and call ``BlasInterface.c`` without the GIL; ctypes/cffi/numba callers
take ``BlasInterface.capsule`` (a PyCapsule named ``"zigllama.blas_vtable"``
holding a ``zl_blas *``, see ``zigllama/zl_blas.h``).
"""
import os
from contextlib import contextmanager

import numpy as np
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New
from libc.limits cimport INT_MAX
from libc.math cimport hypot, hypotf
from libc.stdint cimport int64_t, uintptr_t
from .array_data cimport array_data
from scipy.linalg.cython_blas cimport (
    ddot, daxpy, dgemm, dgemv, dnrm2, dscal, sdot, saxpy, sgemm, sgemv, snrm2, sscal,
)

from cpython.pythread cimport (
    PyThread_acquire_lock, PyThread_allocate_lock, PyThread_release_lock, PyThread_type_lock, WAIT_LOCK,
)
from zigllama._core.tensor cimport (
    ZL_F32, ZL_F64, ZL_TENSOR_EBACKEND, ZL_TENSOR_ENOMEM, ZL_TENSOR_OK, RangeTask, ensure_wired, naive_matmul,
    range_fn_t, range_runner, range_runner_t, set_matmul_impl, set_matmul_prepare, zl_tensor_view,
)

from .._config import num_threads, openmp_threads
from ..errors import BlasError, InvalidArgumentType, NotCopyable, OutOfMemory, ZigLlamaError

cnp.import_array()

# threadpoolctl lists and limits zigllama's runtimes from the moment the first
# of its extensions that runs threads (this one) is loaded.
from .._threadpoolctl import register as _register_threadpoolctl
from . import scipy_blas

_register_threadpoolctl()

ctypedef fused floating:
    float
    double

# The integer type of scipy's Fortran BLAS interface. SciPy 1.17's
# cython_blas.pxd has no `blas_int` typedef: its routines take `int` (LP64), so
# sizes and increments beyond INT_MAX are split (Level 1) or refused (ERANGE).
ctypedef int blas_int


cdef extern from "zl_blas_backends.h" nogil:
    ctypedef struct zl_gemm_blocking:
        zl_blas_int mc, kc, nc
    ctypedef struct zl_generic_ctx:
        int num_threads
        long l1d, l2, l3
        zl_gemm_blocking s, d, s512, d512
    void zl_generic_ctx_init(zl_generic_ctx *ctx)
    int zl_generic_uses_avx2()
    int zl_generic_uses_avx512()
    int ZL_SGEMM_MR, ZL_SGEMM_NR, ZL_DGEMM_MR, ZL_DGEMM_NR
    int ZL_SGEMM512_MR, ZL_SGEMM512_NR, ZL_DGEMM512_MR, ZL_DGEMM512_NR
    const zl_blas_vtable zl_blas_generic_vtable
    const zl_blas_vtable zl_blas_naive_vtable
    void zl_blas_register_qgemm(qgemm_impl_fn impl)
    int zl_blas_qgemm_via(zl_blas self, const zl_qtensor *w, zl_blas_int m, const float *x,
                          zl_blas_int ldx, float *y, zl_blas_int ldy, int mode, int nthreads)

cdef extern from "zigllama/zl_omp.h" nogil:
    int zl_omp_max_threads() noexcept


# ---------------------------------------------------------------------------
# The scipy backend: one fused-type nogil shim per routine (the style of
# scikit-learn's sklearn/utils/_cython_blas.pyx), then the typed vtable entries.

cdef inline blas_int _chunk(zl_blas_int n, zl_blas_int inc) noexcept nogil:
    # Elements per Fortran call such that n and the last index fit in `int`.
    cdef zl_blas_int most = INT_MAX // inc
    return <blas_int>(n if n < most else most)


cdef int _scipy_dot(void *ctx, zl_blas_int n, const floating *x, zl_blas_int incx,
                    const floating *y, zl_blas_int incy, floating *result) noexcept nogil:
    if zl_blas_check_vector(n, incx) or zl_blas_check_vector(n, incy):
        return ZL_BLAS_EINVAL
    if incx > INT_MAX or incy > INT_MAX:
        return ZL_BLAS_ERANGE
    cdef blas_int ix = <blas_int>incx, iy = <blas_int>incy, nn
    cdef floating total = 0
    while n > 0:
        nn = _chunk(n, incx if incx > incy else incy)
        if floating is float:
            total += sdot(&nn, <float *>x, &ix, <float *>y, &iy)
        else:
            total += ddot(&nn, <double *>x, &ix, <double *>y, &iy)
        x += nn * incx
        y += nn * incy
        n -= nn
    result[0] = total
    return ZL_BLAS_OK


cdef int _scipy_axpy(void *ctx, zl_blas_int n, floating alpha, const floating *x, zl_blas_int incx,
                     floating *y, zl_blas_int incy) noexcept nogil:
    if zl_blas_check_vector(n, incx) or zl_blas_check_vector(n, incy):
        return ZL_BLAS_EINVAL
    if incx > INT_MAX or incy > INT_MAX:
        return ZL_BLAS_ERANGE
    cdef blas_int ix = <blas_int>incx, iy = <blas_int>incy, nn
    while n > 0:
        nn = _chunk(n, incx if incx > incy else incy)
        if floating is float:
            saxpy(&nn, &alpha, <float *>x, &ix, y, &iy)
        else:
            daxpy(&nn, &alpha, <double *>x, &ix, y, &iy)
        x += nn * incx
        y += nn * incy
        n -= nn
    return ZL_BLAS_OK


cdef int _scipy_scal(void *ctx, zl_blas_int n, floating alpha, floating *x, zl_blas_int incx) noexcept nogil:
    if zl_blas_check_vector(n, incx):
        return ZL_BLAS_EINVAL
    if incx > INT_MAX:
        return ZL_BLAS_ERANGE
    cdef blas_int ix = <blas_int>incx, nn
    while n > 0:
        nn = _chunk(n, incx)
        if floating is float:
            sscal(&nn, &alpha, x, &ix)
        else:
            dscal(&nn, &alpha, x, &ix)
        x += nn * incx
        n -= nn
    return ZL_BLAS_OK


cdef int _scipy_nrm2(void *ctx, zl_blas_int n, const floating *x, zl_blas_int incx,
                     floating *result) noexcept nogil:
    if zl_blas_check_vector(n, incx):
        return ZL_BLAS_EINVAL
    if incx > INT_MAX:
        return ZL_BLAS_ERANGE
    cdef blas_int ix = <blas_int>incx, nn
    cdef floating total = 0
    while n > 0:
        nn = _chunk(n, incx)
        if floating is float:
            total = hypotf(total, snrm2(&nn, <float *>x, &ix))
        else:
            total = hypot(total, dnrm2(&nn, <double *>x, &ix))
        x += nn * incx
        n -= nn
    result[0] = total
    return ZL_BLAS_OK


cdef inline bint _fits_int(zl_blas_int a, zl_blas_int b, zl_blas_int c) noexcept nogil:
    return a <= INT_MAX and b <= INT_MAX and c <= INT_MAX


cdef int _scipy_gemv(void *ctx, zl_blas_layout layout, zl_blas_trans trans, zl_blas_int m, zl_blas_int n,
                     floating alpha, const floating *a, zl_blas_int lda, const floating *x, zl_blas_int incx,
                     floating beta, floating *y, zl_blas_int incy) noexcept nogil:
    if zl_blas_check_gemv(layout, trans, m, n, lda, incx, incy):
        return ZL_BLAS_EINVAL
    if not (_fits_int(m, n, lda) and _fits_int(incx, incy, 0)):
        return ZL_BLAS_ERANGE
    cdef zl_blas_int len_y = m if trans == ZL_NO_TRANS else n
    cdef zl_blas_int len_x = n if trans == ZL_NO_TRANS else m
    cdef zl_blas_int i
    if len_y == 0:
        return ZL_BLAS_OK
    if len_x == 0:
        # Fortran gemv returns early with y untouched; the product is beta * y.
        for i in range(len_y):
            y[i * incy] = 0 if beta == 0 else beta * y[i * incy]
        return ZL_BLAS_OK
    # A row-major m x n matrix is the column-major n x m A^T: flip the operation.
    cdef char op = b'N' if (trans == ZL_NO_TRANS) == (layout == ZL_COL_MAJOR) else b'T'
    cdef blas_int rows = <blas_int>(m if layout == ZL_COL_MAJOR else n)
    cdef blas_int cols = <blas_int>(n if layout == ZL_COL_MAJOR else m)
    cdef blas_int ld = <blas_int>lda, ix = <blas_int>incx, iy = <blas_int>incy
    if floating is float:
        sgemv(&op, &rows, &cols, &alpha, <float *>a, &ld, <float *>x, &ix, &beta, y, &iy)
    else:
        dgemv(&op, &rows, &cols, &alpha, <double *>a, &ld, <double *>x, &ix, &beta, y, &iy)
    return ZL_BLAS_OK


cdef int _scipy_gemm(void *ctx, zl_blas_layout layout, zl_blas_trans trans_a, zl_blas_trans trans_b,
                     zl_blas_int m, zl_blas_int n, zl_blas_int k, floating alpha,
                     const floating *a, zl_blas_int lda, const floating *b, zl_blas_int ldb,
                     floating beta, floating *c, zl_blas_int ldc) noexcept nogil:
    if zl_blas_check_gemm(layout, trans_a, trans_b, m, n, k, lda, ldb, ldc):
        return ZL_BLAS_EINVAL
    if not (_fits_int(m, n, k) and _fits_int(lda, ldb, ldc)):
        return ZL_BLAS_ERANGE
    if m == 0 or n == 0:
        return ZL_BLAS_OK
    cdef char ta = b'N' if trans_a == ZL_NO_TRANS else b'T'
    cdef char tb = b'N' if trans_b == ZL_NO_TRANS else b'T'
    cdef blas_int mi = <blas_int>m, ni = <blas_int>n, ki = <blas_int>k
    cdef blas_int la = <blas_int>lda, lb = <blas_int>ldb, lc = <blas_int>ldc
    if layout == ZL_COL_MAJOR:
        _fortran_gemm(ta, tb, mi, ni, ki, alpha, <floating *>a, la, <floating *>b, lb, beta, c, lc)
    else:
        # Row-major C is column-major C^T = op(B)^T op(A)^T: swap the operands.
        _fortran_gemm(tb, ta, ni, mi, ki, alpha, <floating *>b, lb, <floating *>a, la, beta, c, lc)
    return ZL_BLAS_OK


cdef void _fortran_gemm(char ta, char tb, blas_int m, blas_int n, blas_int k, floating alpha,
                        floating *a, blas_int lda, floating *b, blas_int ldb, floating beta,
                        floating *c, blas_int ldc) noexcept nogil:
    """Column-major gemm; one column or one row of C goes to gemv, as numpy's
    matmul does (a BLAS's gemm may not forward these, and then packs a whole
    operand to use it once)."""
    cdef char op
    cdef blas_int rows, cols, incx, one = 1
    cdef floating *x
    if k > 0 and (n == 1 or m == 1):
        if n == 1:
            # c = op(A) x, x the one column of op(B); c is contiguous.
            x, incx = b, (1 if tb == b'N' else ldb)
            op, rows, cols = ta, (m if ta == b'N' else k), (k if ta == b'N' else m)
            if floating is float:
                sgemv(&op, &rows, &cols, &alpha, a, &lda, x, &incx, &beta, c, &one)
            else:
                dgemv(&op, &rows, &cols, &alpha, a, &lda, x, &incx, &beta, c, &one)
        else:
            # c^T = op(B)^T x, x the one row of op(A); c's elements are ldc apart.
            x, incx = a, (lda if ta == b'N' else 1)
            op = b'T' if tb == b'N' else b'N'
            rows, cols = (k if tb == b'N' else n), (n if tb == b'N' else k)
            if floating is float:
                sgemv(&op, &rows, &cols, &alpha, b, &ldb, x, &incx, &beta, c, &ldc)
            else:
                dgemv(&op, &rows, &cols, &alpha, b, &ldb, x, &incx, &beta, c, &ldc)
        return
    if floating is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)


# The backends' {name, ctx, vtable}, filled in below.
cdef zl_blas _backends[3]


cdef int _scipy_qgemm(void *ctx, const zl_qtensor *w, zl_blas_int m, const float *x, zl_blas_int ldx,
                      float *y, zl_blas_int ldy, int mode, int nthreads) noexcept nogil:
    return zl_blas_qgemm_via(_backends[0], w, m, x, ldx, y, ldy, mode, nthreads)


cdef void register_qgemm(qgemm_impl_fn impl) noexcept nogil:
    zl_blas_register_qgemm(impl)


cdef zl_blas_vtable _scipy_vtable
_scipy_vtable.sdot = _scipy_dot[float]
_scipy_vtable.ddot = _scipy_dot[double]
_scipy_vtable.saxpy = _scipy_axpy[float]
_scipy_vtable.daxpy = _scipy_axpy[double]
_scipy_vtable.sscal = _scipy_scal[float]
_scipy_vtable.dscal = _scipy_scal[double]
_scipy_vtable.snrm2 = _scipy_nrm2[float]
_scipy_vtable.dnrm2 = _scipy_nrm2[double]
_scipy_vtable.sgemv = _scipy_gemv[float]
_scipy_vtable.dgemv = _scipy_gemv[double]
_scipy_vtable.sgemm = _scipy_gemm[float]
_scipy_vtable.dgemm = _scipy_gemm[double]
_scipy_vtable.qgemm = _scipy_qgemm


# ---------------------------------------------------------------------------
# The backend table. Contexts are module globals: a `zl_blas` handed out (to
# Cython code or in a capsule) stays valid for the life of the process.

BACKENDS = ("scipy", "generic", "naive")

cdef zl_generic_ctx _generic_ctx
zl_generic_ctx_init(&_generic_ctx)

# The generic backend with its OpenMP team pinned to one thread: the context of
# single_threaded() views, for callers that run blocks on threads of their own.
cdef zl_generic_ctx _generic_ctx_one = _generic_ctx
_generic_ctx_one.num_threads = 1

_backends[0].name = b"scipy"
_backends[0].ctx = NULL
_backends[0].vtable = &_scipy_vtable
_backends[1].name = b"generic"
_backends[1].ctx = &_generic_ctx
_backends[1].vtable = &zl_blas_generic_vtable
_backends[2].name = b"naive"
_backends[2].ctx = NULL
_backends[2].vtable = &zl_blas_naive_vtable


# ---------------------------------------------------------------------------
# Threads: one setting (zigllama.num_threads / ZIGLLAMA_NUM_THREADS, capped by
# threadpoolctl's limits) sizes the generic backend's OpenMP region and the
# pool's split of the scipy backend's large GEMMs; the BLAS behind scipy keeps
# the count the user or threadpoolctl gave it, and is pinned to one thread while
# a split runs (its team never spins beside the pool's).

# Below this many multiply-adds a call is single-threaded in any backend, so the
# thread setting is only looked up (a Python call) for calls above it.
cdef double _THREAD_SYNC_WORK = 64.0 * 64.0 * 64.0

cdef int _blas_threads_pinned = 0   # > 0 inside limit_blas_threads(): leave the BLAS alone
# num_threads() as last read with the GIL, for nogil code (Tensor.matmul reads it
# just before its product: see _prepare_tensor_matmul).
cdef int _threads_snapshot = 1


def _sync_threads(int index):
    """Apply the thread setting to backend `index`. Only the generic backend's
    OpenMP team is sized from it (capped by threadpoolctl's OpenMP limit). The
    BLAS behind scipy is never raised: its large GEMMs are split over the pool
    with it pinned to one thread (see _pin_scipy_blas), the rest of its calls
    run with whatever count the user or threadpoolctl gave it."""
    if _blas_threads_pinned:
        return
    if index == 1:
        _generic_ctx.num_threads = openmp_threads()


# Pinning the BLAS behind scipy to one thread for the length of a split GEMM.
# Through the library's own C entry points when threadpoolctl finds OpenBLAS
# (tens of nanoseconds), else through threadpoolctl (microseconds). Nested and
# concurrent callers share one pin (a depth counter under the GIL): the first
# saves the count, the last restores it.
ctypedef void (*_set_threads_fn)(int) noexcept nogil
ctypedef int (*_get_threads_fn)() noexcept nogil

cdef int _pin_depth = 0
_pin_saved = None

# The direct entry points as C state, so that nogil code can pin without the GIL:
# _n_direct is -1 until looked up (with the GIL), then their number (0: none, and
# pinning needs threadpoolctl, hence the GIL). _pin_lock orders pins of any thread.
cdef enum:
    _MAX_DIRECT = 4
cdef int _n_direct = -1
cdef _set_threads_fn _direct_set[_MAX_DIRECT]
cdef _get_threads_fn _direct_get[_MAX_DIRECT]
cdef int _direct_saved[_MAX_DIRECT]
cdef PyThread_type_lock _pin_lock = PyThread_allocate_lock()


cdef int _resolve_direct() except -1:
    global _n_direct
    cdef size_t addr
    cdef int i
    if _n_direct >= 0:
        return 0
    direct = scipy_blas.entry_points()
    if not direct or len(direct) > _MAX_DIRECT:
        _n_direct = 0
        return 0
    for i, (set_addr, get_addr) in enumerate(direct):
        addr = set_addr
        _direct_set[i] = <_set_threads_fn>addr
        addr = get_addr
        _direct_get[i] = <_get_threads_fn>addr
    _n_direct = len(direct)
    return 0


cdef bint _pin_direct_nogil() noexcept nogil:
    """Pin through the direct entry points: True, or False when there are none."""
    global _pin_depth
    cdef int i
    if _n_direct <= 0:
        return False
    PyThread_acquire_lock(_pin_lock, WAIT_LOCK)
    _pin_depth += 1
    if _pin_depth == 1:
        for i in range(_n_direct):
            _direct_saved[i] = _direct_get[i]()
            _direct_set[i](1)
    PyThread_release_lock(_pin_lock)
    return True


cdef void _unpin_direct_nogil() noexcept nogil:
    global _pin_depth
    cdef int i
    PyThread_acquire_lock(_pin_lock, WAIT_LOCK)
    _pin_depth -= 1
    if _pin_depth == 0:
        for i in range(_n_direct):
            _direct_set[i](_direct_saved[i])
    PyThread_release_lock(_pin_lock)


cdef int _pin_scipy_blas() except -1:
    global _pin_depth, _pin_saved
    _resolve_direct()
    if _pin_direct_nogil():
        return 0
    _pin_depth += 1
    if _pin_depth > 1:
        return 0
    libs = scipy_blas.libraries()
    _pin_saved = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    return 0


cdef int _unpin_scipy_blas() except -1:
    global _pin_depth
    if _n_direct > 0:
        _unpin_direct_nogil()
        return 0
    _pin_depth -= 1
    if _pin_depth > 0:
        return 0
    for lib, n in zip(scipy_blas.libraries(), _pin_saved):
        lib.set_num_threads(n)
    return 0


# Large GEMMs of the scipy backend run as row (or column) blocks on the pool,
# each block one single-threaded BLAS call: one thread runtime (the pool) on the
# cores instead of OpenBLAS's team spinning beside it. The pool's runner comes
# from the tensor module's registry (this module does not import the pool).

# Above this many multiply-adds the scipy backend splits (OpenBLAS itself runs
# one thread up to 64**3): a block must stay large enough for the BLAS to run
# at full speed and pay for the pool's dispatch (a few microseconds).
cdef double _SPLIT_WORK = 96.0 * 96.0 * 96.0
# Rows (or columns) a block has at least.
cdef zl_blas_int _SPLIT_MIN_ROWS = 64

ctypedef struct _GemmSplit:
    zl_blas blas
    bint f32
    bint by_rows
    int64_t nchunks
    zl_blas_layout layout
    zl_blas_trans ta
    zl_blas_trans tb
    zl_blas_int m, n, k, lda, ldb, ldc
    double alpha, beta
    const char *a
    const char *b
    char *c
    size_t item


cdef int _gemm_block(void *vctx, int64_t begin, int64_t end) noexcept nogil:
    cdef _GemmSplit *g = <_GemmSplit *>vctx
    cdef zl_blas_int total = g.m if g.by_rows else g.n
    cdef zl_blas_int r0 = <zl_blas_int>(total * begin // g.nchunks)
    cdef zl_blas_int r1 = <zl_blas_int>(total * end // g.nchunks)
    cdef zl_blas_int m = g.m, n = g.n
    cdef const char *a = g.a
    cdef const char *b = g.b
    cdef char *c = g.c
    cdef bint row_major = g.layout == ZL_ROW_MAJOR
    if r1 <= r0:
        return 0
    if g.by_rows:
        # Rows r0.. of op(a) and of c: a row of a stored matrix is ld apart, a
        # column one element apart (and the other way in column-major).
        a += g.item * r0 * (g.lda if row_major == (g.ta == ZL_NO_TRANS) else 1)
        c += g.item * r0 * (g.ldc if row_major else 1)
        m = r1 - r0
    else:
        b += g.item * r0 * (1 if row_major == (g.tb == ZL_NO_TRANS) else g.ldb)
        c += g.item * r0 * (1 if row_major else g.ldc)
        n = r1 - r0
    if g.f32:
        return g.blas.vtable.sgemm(g.blas.ctx, g.layout, g.ta, g.tb, m, n, g.k, <float>g.alpha,
                                   <const float *>a, g.lda, <const float *>b, g.ldb, <float>g.beta,
                                   <float *>c, g.ldc)
    return g.blas.vtable.dgemm(g.blas.ctx, g.layout, g.ta, g.tb, m, n, g.k, g.alpha,
                               <const double *>a, g.lda, <const double *>b, g.ldb, g.beta,
                               <double *>c, g.ldc)


cdef int64_t _split_chunks(zl_blas_int m, zl_blas_int n, zl_blas_int k, int threads, bint *by_rows) noexcept nogil:
    """Blocks to split a GEMM into (<= 1: do not split): one per thread. Each
    block is a BLAS call that packs its own copy of the shared operand, and thin
    blocks run slower (measured with OpenBLAS on 256 x 256: one block 348 us,
    2 blocks 368 us, 4 blocks 432 us, 8 blocks 554 us on the caller alone), so
    more blocks than threads cost more than the balance they buy."""
    if threads <= 1 or range_runner() == NULL or <double>m * <double>n * <double>k < _SPLIT_WORK:
        return 1
    by_rows[0] = m >= n
    cdef zl_blas_int rows = m if by_rows[0] else n
    cdef int64_t nchunks = threads
    if rows // nchunks < _SPLIT_MIN_ROWS:
        nchunks = rows // _SPLIT_MIN_ROWS
    return nchunks


cdef int _scipy_gemm_split(zl_blas blas, bint f32, int64_t nchunks, bint by_rows, zl_blas_layout layout,
                           zl_blas_trans ta, zl_blas_trans tb, zl_blas_int m, zl_blas_int n, zl_blas_int k,
                           double alpha, const void *a, zl_blas_int lda, const void *b, zl_blas_int ldb,
                           double beta, void *c, zl_blas_int ldc) noexcept nogil:
    cdef _GemmSplit g
    cdef int status = zl_blas_check_gemm(layout, ta, tb, m, n, k, lda, ldb, ldc)
    if status != ZL_BLAS_OK:
        return status
    g.blas = blas
    g.f32 = f32
    g.by_rows = by_rows
    g.nchunks = nchunks
    g.layout = layout
    g.ta = ta
    g.tb = tb
    g.m = m
    g.n = n
    g.k = k
    g.lda = lda
    g.ldb = ldb
    g.ldc = ldc
    g.alpha = alpha
    g.beta = beta
    g.a = <const char *>a
    g.b = <const char *>b
    g.c = <char *>c
    g.item = sizeof(float) if f32 else sizeof(double)
    return range_runner()(nchunks, 1, _gemm_block, &g)


@contextmanager
def limit_blas_threads(int limit=1):
    """Context in which every backend (and every loaded BLAS) runs at most
    `limit` threads.

    For code that calls a BLAS from inside its own parallel region (worker
    threads, prange): the BLAS must not start a team per worker. Inside it the
    thread setting is not applied; on exit it is again.
    """
    global _blas_threads_pinned
    from threadpoolctl import threadpool_limits

    if limit < 1:
        raise BlasError(f"limit must be >= 1, got {limit}")
    with threadpool_limits(limits=limit, user_api="blas"):
        _blas_threads_pinned += 1
        previous = _generic_ctx.num_threads
        _generic_ctx.num_threads = min(previous, limit)
        try:
            yield
        finally:
            _blas_threads_pinned -= 1
            _generic_ctx.num_threads = previous


# ---------------------------------------------------------------------------
# Argument checks, once, at the Python boundary.

cdef struct _Mat:
    char *data
    zl_blas_int rows, cols, ld
    zl_blas_layout layout
    bint both_layouts     # 0 or 1 rows/columns: either layout describes it
    int type_num


cdef struct _Vec:
    char *data
    zl_blas_int n, inc
    int type_num


cdef inline str _shape(cnp.ndarray arr):
    return str((<object>arr).shape)


def as_operand(obj, op, what):
    """``obj`` as a numpy array, or BlasError naming the operation ``op`` and the
    operand ``what`` (for the Python-level companions, BlasManager)."""
    return _as_array(obj, op, what)


cdef cnp.ndarray _as_array(obj, str op, str what):
    if cnp.PyArray_Check(obj):
        return <cnp.ndarray>obj
    try:
        arr = np.asarray(obj)
    except ZigLlamaError:
        raise  # the object's own reason (a tensor of a reset arena: UseAfterReset)
    except Exception as exc:
        arr = None
    # Anything numpy would wrap as an object or a string is not numeric data.
    if arr is None or arr.dtype.kind in "OUSV":
        raise BlasError(f"{op}: {what} must be an array or support the buffer protocol, "
                        f"got {type(obj).__name__}")
    return arr


cdef int _check_array(cnp.ndarray arr, str op, str what, int ndim, int type_num, bint writeable) except -1:
    if cnp.PyArray_NDIM(arr) != ndim:
        raise BlasError(f"{op}: {what} must be {ndim}-D, got shape {_shape(arr)}")
    _check_dtype(arr, op, what, type_num)
    if writeable and not cnp.PyArray_ISWRITEABLE(arr):
        raise BlasError(f"{op}: {what} is read-only")
    return 0


cdef int _check_dtype(cnp.ndarray arr, str op, str what, int type_num) except -1:
    cdef int t = cnp.PyArray_TYPE(arr)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise BlasError(f"{op}: {what} has dtype {arr.dtype}, BLAS supports float32 and float64")
    if not cnp.PyArray_ISNOTSWAPPED(arr):
        # BLAS reads native floats: a '>f4' array would be computed on as garbage
        raise BlasError(f"{op}: {what} has non-native byte order ({arr.dtype.str}); convert it with "
                        f"{what}.astype({arr.dtype.str[1:]!r})")
    if type_num >= 0 and t != type_num:
        raise BlasError(f"{op}: {what} has dtype {arr.dtype} but the other operands are "
                        f"{np.dtype('float32' if type_num == cnp.NPY_FLOAT32 else 'float64')}")
    return 0


# _describe_matrix results
cdef enum:
    _MATRIX_OK = 0
    _MATRIX_BAD_STRIDES = 1      # negative, zero or not whole elements
    _MATRIX_NOT_CONTIGUOUS = 2   # neither rows nor columns contiguous


cdef int _describe_matrix(char *data, zl_blas_int rows, zl_blas_int cols, Py_ssize_t sb0, Py_ssize_t sb1,
                          Py_ssize_t item, _Mat *out) noexcept nogil:
    """A matrix given by byte strides as (data, layout, ld), if BLAS can take it."""
    # Strides of dimensions of length <= 1 are never stepped, nor any of an empty
    # matrix: any value is fine there.
    if rows == 0 or cols == 0:
        sb0 = sb1 = item
    cdef zl_blas_int s0 = sb0 // item if rows > 1 else 0
    cdef zl_blas_int s1 = sb1 // item if cols > 1 else 0
    if (rows > 1 and (sb0 % item or s0 < 1)) or (cols > 1 and (sb1 % item or s1 < 1)):
        return _MATRIX_BAD_STRIDES
    cdef bint row_ok = (cols <= 1 or s1 == 1) and (rows <= 1 or s0 >= cols)
    cdef bint col_ok = (rows <= 1 or s0 == 1) and (cols <= 1 or s1 >= rows)
    if not (row_ok or col_ok):
        return _MATRIX_NOT_CONTIGUOUS
    out.data = data
    out.rows = rows
    out.cols = cols
    out.both_layouts = row_ok and col_ok
    if row_ok:
        out.layout = ZL_ROW_MAJOR
        out.ld = s0 if rows > 1 else max(cols, 1)
    else:
        out.layout = ZL_COL_MAJOR
        out.ld = s1 if cols > 1 else max(rows, 1)
    return _MATRIX_OK


cdef int _matrix(cnp.ndarray arr, str op, str what, int type_num, bint writeable, _Mat *out) except -1:
    """A 2-D array whose rows (or columns) are contiguous, as (data, ld, layout)."""
    _check_array(arr, op, what, 2, type_num, writeable)
    cdef int code = _describe_matrix(cnp.PyArray_BYTES(arr), cnp.PyArray_DIM(arr, 0), cnp.PyArray_DIM(arr, 1),
                                     cnp.PyArray_STRIDE(arr, 0), cnp.PyArray_STRIDE(arr, 1),
                                     cnp.PyArray_ITEMSIZE(arr), out)
    if code == _MATRIX_BAD_STRIDES:
        raise BlasError(f"{op}: {what} of shape {_shape(arr)} has strides {(<object>arr).strides}: BLAS needs "
                        f"positive strides in whole elements (use np.ascontiguousarray)")
    if code == _MATRIX_NOT_CONTIGUOUS:
        raise BlasError(f"{op}: {what} of shape {_shape(arr)} has strides {(<object>arr).strides}: BLAS needs "
                        f"contiguous rows or columns, each at least a row (column) apart "
                        f"(use np.ascontiguousarray)")
    out.type_num = cnp.PyArray_TYPE(arr)
    return 0


cdef inline void _relayout(_Mat *m, zl_blas_layout layout) noexcept nogil:
    # A matrix that fits both layouts (one row or one column) takes the call's.
    if m.both_layouts and m.layout != layout:
        m.layout = layout
        m.ld = max(m.cols, 1) if layout == ZL_ROW_MAJOR else max(m.rows, 1)


cdef int _vector(cnp.ndarray arr, str op, str what, int type_num, bint writeable, _Vec *out) except -1:
    _check_array(arr, op, what, 1, type_num, writeable)
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(arr), sb = cnp.PyArray_STRIDE(arr, 0)
    cdef zl_blas_int n = cnp.PyArray_DIM(arr, 0)
    if n > 1 and (sb % item or sb <= 0):
        raise BlasError(f"{op}: {what} of shape {_shape(arr)} has stride {sb}: BLAS needs a positive "
                        f"stride in whole elements (use np.ascontiguousarray)")
    out.data = cnp.PyArray_BYTES(arr)
    out.n = n
    out.inc = sb // item if n > 1 else 1
    out.type_num = cnp.PyArray_TYPE(arr)
    return 0


cdef int _vector_pair(x, y, str op, bint y_writeable, _Vec *vx, _Vec *vy) except -1:
    cdef cnp.ndarray X = _as_array(x, op, "x")
    cdef cnp.ndarray Y = _as_array(y, op, "y")
    _vector(X, op, "x", -1, False, vx)
    _vector(Y, op, "y", vx.type_num, y_writeable, vy)
    if vx.n != vy.n:
        raise BlasError(f"{op}: x has shape {_shape(X)} but y has shape {_shape(Y)}")
    if y_writeable:
        _check_no_overlap(Y, X, op, "x")
    return 0


cdef cnp.ndarray _output(out, int ndim, cnp.npy_intp *dims, int type_num, str op, str product,
                         cnp.ndarray in1, cnp.ndarray in2):
    """A new array for the result, or `out` checked: its shape, and no memory
    shared with the inputs (named a and, for gemm, b; for gemv, x)."""
    if out is None:
        return cnp.PyArray_EMPTY(ndim, dims, type_num, 0)
    cdef cnp.ndarray arr = _as_array(out, op, "out")
    cdef tuple want = tuple([dims[i] for i in range(ndim)])
    if (<object>arr).shape != want:
        raise BlasError(f"{op}: out has shape {_shape(arr)}, {product} has shape {want}")
    _check_no_overlap(arr, in1, op, "a")
    _check_no_overlap(arr, in2, op, "b" if ndim == 2 else "x")
    return arr


cdef int _check_no_overlap(cnp.ndarray out, cnp.ndarray other, str op, str what) except -1:
    # Bounds first (cheap); the exact test only when the bounds overlap.
    cdef char *lo1
    cdef char *hi1
    cdef char *lo2
    cdef char *hi2
    if cnp.PyArray_SIZE(out) == 0 or cnp.PyArray_SIZE(other) == 0:
        return 0
    _extent(out, &lo1, &hi1)
    _extent(other, &lo2, &hi2)
    if lo1 < hi2 and lo2 < hi1 and np.shares_memory(out, other):
        raise BlasError(f"{op}: out {_shape(out)} shares memory with {what} {_shape(other)}; "
                        f"BLAS reads {what} while writing out (pass a separate array)")
    return 0


cdef void _extent(cnp.ndarray arr, char **lo, char **hi) noexcept:
    cdef char *p = cnp.PyArray_BYTES(arr)
    cdef Py_ssize_t span = 0, d
    for d in range(cnp.PyArray_NDIM(arr)):
        span += (cnp.PyArray_DIM(arr, d) - 1) * cnp.PyArray_STRIDE(arr, d)
    lo[0] = p
    hi[0] = p + span + cnp.PyArray_ITEMSIZE(arr)


cdef int check_blas_status(int status, const char *what) except -1 nogil:
    if status == ZL_BLAS_OK:
        return 0
    with gil:
        return _raise_status(status, what.decode())


cdef int _raise_status(int status, str op) except -1:
    if status == ZL_BLAS_OK:
        return 0
    if status == ZL_BLAS_ENOMEM:
        raise OutOfMemory(f"{op}: no memory for the packing buffers")
    if status == ZL_BLAS_ERANGE:
        raise BlasError(f"{op}: a size or stride exceeds the 32-bit integers of the BLAS behind scipy")
    if status == ZL_BLAS_ENOSYS:
        raise BlasError(f"{op}: quantized products need zigllama._core.qmatmul imported first "
                        "(get_blas() imports it)")
    raise BlasError(f"{op}: the backend rejected the arguments (status {status})")


cdef inline zl_blas_trans _flip(zl_blas_trans t) noexcept nogil:
    return ZL_TRANS if t == ZL_NO_TRANS else ZL_NO_TRANS


# ---------------------------------------------------------------------------

cdef class BlasInterface:
    """One BLAS backend behind the common vtable. Get one with ``get_blas(name)``.

    Operations take numpy arrays or any object with the buffer protocol
    (a zigllama Tensor): float32 or float64, 2-D matrices with contiguous rows or
    columns (a leading dimension larger than the row is fine: no copy is made).
    """

    def __init__(self):
        raise InvalidArgumentType("use zigllama.get_blas(name) to get a BlasInterface")

    def __reduce__(self):
        raise NotCopyable("a BlasInterface cannot be pickled or copied: get it again with "
                          "zigllama.get_blas(name)")

    def __repr__(self):
        return f"<zigllama.BlasInterface {self.name!r}>"

    @property
    def capsule(self):
        """PyCapsule named "zigllama.blas_vtable" holding a ``zl_blas *``
        (see zigllama/zl_blas.h); valid for the life of the process."""
        return PyCapsule_New(<void *>&_backends[self.index], ZL_BLAS_CAPSULE_NAME, NULL)

    @property
    def address(self):
        """The ``zl_blas *`` as an integer (for ctypes.cast / cffi.cast)."""
        return <uintptr_t>&_backends[self.index]

    @property
    def threads(self):
        """Threads the next large call may use: the generic backend's OpenMP
        team, the threads of the BLAS behind scipy, 1 for naive."""
        if self.c.vtable == &zl_blas_generic_vtable:
            return (<zl_generic_ctx *>self.c.ctx).num_threads
        if self.index == 0:
            # Large GEMMs split over the pool (the BLAS pinned to one thread).
            return num_threads()
        return 1

    def single_threaded(self):
        """This backend as a view whose calls run on the calling thread only
        (``single_threaded(blas)`` of blas_integration.pxd), for work already
        split over threads. The BLAS behind scipy has one process-wide thread
        count: pin it with ``limit_blas_threads(1)`` instead."""
        if self.index == 0:
            raise BlasError("the scipy backend's threads are process-wide: "
                            "use zigllama.limit_blas_threads(1)")
        view = <BlasInterface>BlasInterface.__new__(BlasInterface)
        view.c = single_threaded(self.c)
        view.name = self.name
        view.index = self.index
        return view

    def gemm_rows(self, a, b, out):
        """C = a @ b as a RangeTask over the rows of a (C-contiguous float32 or
        float64 arrays of one dtype, shapes already checked): each chunk of rows is
        one GEMM on the calling thread, for a pool to split (ParallelOps.matmul).
        Used as a context, it pins the BLAS behind scipy to one thread meanwhile:
        the pool is then the only parallel layer."""
        task = <_GemmRows>_GemmRows.__new__(_GemmRows)
        task.backend = self
        task.arrays = (a, b, out)
        task.c.blas = single_threaded(self.c)
        task.c.a = <const void *><uintptr_t>array_data(a)
        task.c.b = <const void *><uintptr_t>array_data(b)
        task.c.c = <void *><uintptr_t>array_data(out)
        task.c.n = b.shape[1]
        task.c.k = a.shape[1]
        task.c.f32 = a.dtype == np.float32
        task.fn = _gemm_rows
        task.ctx = &task.c
        return task

    def gemm(self, a, b, out=None, double alpha=1.0, double beta=0.0, bint trans_a=False,
             bint trans_b=False):
        """``out = alpha * op(a) @ op(b) + beta * out``; returns ``out``.

        op(x) is x, or x.T when trans_x. Without ``out`` a new C-ordered array is
        returned (beta then has nothing to scale). beta == 0 overwrites ``out``
        (NaN there does not propagate).
        """
        cdef cnp.ndarray A = _as_array(a, "gemm", "a")
        cdef cnp.ndarray B = _as_array(b, "gemm", "b")
        cdef cnp.ndarray C
        cdef _Mat ma, mb, mc
        _matrix(A, "gemm", "a", -1, False, &ma)
        _matrix(B, "gemm", "b", ma.type_num, False, &mb)
        cdef zl_blas_int m = ma.cols if trans_a else ma.rows
        cdef zl_blas_int k = ma.rows if trans_a else ma.cols
        cdef zl_blas_int kb = mb.cols if trans_b else mb.rows
        cdef zl_blas_int n = mb.rows if trans_b else mb.cols
        cdef cnp.npy_intp dims[2]
        if k != kb:
            raise BlasError(f"gemm: op(a) is ({m}, {k}) (a {_shape(A)}{', transposed' if trans_a else ''}) "
                            f"but op(b) is ({kb}, {n}) (b {_shape(B)}{', transposed' if trans_b else ''}): "
                            f"inner dimensions {k} and {kb} differ")
        dims[0] = m
        dims[1] = n
        C = _output(out, 2, dims, ma.type_num, "gemm", "op(a) @ op(b)", A, B)
        _matrix(C, "gemm", "out", ma.type_num, True, &mc)
        if out is None:
            beta = 0.0   # a fresh C has nothing to scale
        # The call's layout is out's; an operand stored the other way is its own
        # transpose in this layout, with the same leading dimension.
        _relayout(&ma, mc.layout)
        _relayout(&mb, mc.layout)
        cdef zl_blas_trans ta = ZL_TRANS if trans_a else ZL_NO_TRANS
        cdef zl_blas_trans tb = ZL_TRANS if trans_b else ZL_NO_TRANS
        if ma.layout != mc.layout:
            ta = _flip(ta)
        if mb.layout != mc.layout:
            tb = _flip(tb)
        cdef int status
        cdef zl_blas c = self.c
        cdef bint by_rows = True
        cdef int64_t nchunks = 1
        cdef bint pinned = False
        if self.index == 1 and <double>m * <double>n * <double>k >= _THREAD_SYNC_WORK:
            _sync_threads(self.index)
        elif self.index == 0 and <double>m * <double>n * <double>k > _THREAD_SYNC_WORK \
                and not _blas_threads_pinned:
            # (OpenBLAS runs up to 64**3 multiply-adds on one thread by itself.)
            ensure_wired()   # the pool that splits it, whatever was imported first
            nchunks = _split_chunks(m, n, k, num_threads(), &by_rows)
            _pin_scipy_blas()
            pinned = True
        if nchunks > 1:
            with nogil:
                status = _scipy_gemm_split(c, ma.type_num == cnp.NPY_FLOAT32, nchunks, by_rows, mc.layout,
                                           ta, tb, m, n, k, alpha, ma.data, ma.ld, mb.data, mb.ld,
                                           beta, mc.data, mc.ld)
            _unpin_scipy_blas()
            _raise_status(status, "gemm")
            return C if out is None else out
        with nogil:
            if ma.type_num == cnp.NPY_FLOAT32:
                status = c.vtable.sgemm(c.ctx, mc.layout, ta, tb, m, n, k, <float>alpha,
                                        <const float *>ma.data, ma.ld, <const float *>mb.data, mb.ld,
                                        <float>beta, <float *>mc.data, mc.ld)
            else:
                status = c.vtable.dgemm(c.ctx, mc.layout, ta, tb, m, n, k, alpha,
                                        <const double *>ma.data, ma.ld, <const double *>mb.data, mb.ld,
                                        beta, <double *>mc.data, mc.ld)
        if pinned:
            _unpin_scipy_blas()
        _raise_status(status, "gemm")
        return C if out is None else out

    def gemv(self, a, x, out=None, double alpha=1.0, double beta=0.0, bint trans=False):
        """``out = alpha * op(a) @ x + beta * out``; returns ``out``."""
        cdef cnp.ndarray A = _as_array(a, "gemv", "a")
        cdef cnp.ndarray X = _as_array(x, "gemv", "x")
        cdef cnp.ndarray Y
        cdef _Mat ma
        cdef _Vec vx, vy
        cdef cnp.npy_intp dims[1]
        _matrix(A, "gemv", "a", -1, False, &ma)
        _vector(X, "gemv", "x", ma.type_num, False, &vx)
        cdef zl_blas_int len_x = ma.rows if trans else ma.cols
        cdef zl_blas_int len_y = ma.cols if trans else ma.rows
        if vx.n != len_x:
            raise BlasError(f"gemv: op(a) is ({len_y}, {len_x}) (a {_shape(A)}{', transposed' if trans else ''}) "
                            f"but x has shape {_shape(X)}")
        dims[0] = len_y
        Y = _output(out, 1, dims, ma.type_num, "gemv", "op(a) @ x", A, X)
        _vector(Y, "gemv", "out", ma.type_num, True, &vy)
        if out is None:
            beta = 0.0
        if <double>ma.rows * <double>ma.cols >= _THREAD_SYNC_WORK:
            _sync_threads(self.index)
        cdef zl_blas_trans t = ZL_TRANS if trans else ZL_NO_TRANS
        cdef int status
        cdef zl_blas c = self.c
        with nogil:
            if ma.type_num == cnp.NPY_FLOAT32:
                status = c.vtable.sgemv(c.ctx, ma.layout, t, ma.rows, ma.cols, <float>alpha,
                                        <const float *>ma.data, ma.ld, <const float *>vx.data, vx.inc,
                                        <float>beta, <float *>vy.data, vy.inc)
            else:
                status = c.vtable.dgemv(c.ctx, ma.layout, t, ma.rows, ma.cols, alpha,
                                        <const double *>ma.data, ma.ld, <const double *>vx.data, vx.inc,
                                        beta, <double *>vy.data, vy.inc)
        _raise_status(status, "gemv")
        return Y if out is None else out

    def dot(self, x, y):
        """``sum(x * y)`` as a Python float."""
        cdef _Vec vx, vy
        _vector_pair(x, y, "dot", False, &vx, &vy)
        cdef int status
        cdef float rs = 0
        cdef double rd = 0
        cdef zl_blas c = self.c
        with nogil:
            if vx.type_num == cnp.NPY_FLOAT32:
                status = c.vtable.sdot(c.ctx, vx.n, <const float *>vx.data, vx.inc,
                                       <const float *>vy.data, vy.inc, &rs)
            else:
                status = c.vtable.ddot(c.ctx, vx.n, <const double *>vx.data, vx.inc,
                                       <const double *>vy.data, vy.inc, &rd)
        _raise_status(status, "dot")
        return rs if vx.type_num == cnp.NPY_FLOAT32 else rd

    def axpy(self, double alpha, x, y):
        """``y += alpha * x`` in place; returns ``y``."""
        cdef _Vec vx, vy
        _vector_pair(x, y, "axpy", True, &vx, &vy)
        cdef int status
        cdef zl_blas c = self.c
        with nogil:
            if vx.type_num == cnp.NPY_FLOAT32:
                status = c.vtable.saxpy(c.ctx, vx.n, <float>alpha, <const float *>vx.data, vx.inc,
                                        <float *>vy.data, vy.inc)
            else:
                status = c.vtable.daxpy(c.ctx, vx.n, alpha, <const double *>vx.data, vx.inc,
                                        <double *>vy.data, vy.inc)
        _raise_status(status, "axpy")
        return y

    def scal(self, double alpha, x):
        """``x *= alpha`` in place; returns ``x``."""
        cdef cnp.ndarray X = _as_array(x, "scal", "x")
        cdef _Vec vx
        _vector(X, "scal", "x", -1, True, &vx)
        cdef int status
        cdef zl_blas c = self.c
        with nogil:
            if vx.type_num == cnp.NPY_FLOAT32:
                status = c.vtable.sscal(c.ctx, vx.n, <float>alpha, <float *>vx.data, vx.inc)
            else:
                status = c.vtable.dscal(c.ctx, vx.n, alpha, <double *>vx.data, vx.inc)
        _raise_status(status, "scal")
        return x

    def nrm2(self, x):
        """The Euclidean norm of ``x`` as a Python float."""
        cdef cnp.ndarray X = _as_array(x, "nrm2", "x")
        cdef _Vec vx
        _vector(X, "nrm2", "x", -1, False, &vx)
        cdef int status
        cdef float rs = 0
        cdef double rd = 0
        cdef zl_blas c = self.c
        with nogil:
            if vx.type_num == cnp.NPY_FLOAT32:
                status = c.vtable.snrm2(c.ctx, vx.n, <const float *>vx.data, vx.inc, &rs)
            else:
                status = c.vtable.dnrm2(c.ctx, vx.n, <const double *>vx.data, vx.inc, &rd)
        _raise_status(status, "nrm2")
        return rs if vx.type_num == cnp.NPY_FLOAT32 else rd


cdef zl_blas single_threaded(zl_blas blas) noexcept nogil:
    if blas.vtable == &zl_blas_generic_vtable:
        blas.ctx = &_generic_ctx_one
    return blas


ctypedef struct _GemmRowsCtx:
    zl_blas blas
    const void *a
    const void *b
    void *c
    int64_t n
    int64_t k
    bint f32


cdef int _gemm_rows(void *vctx, int64_t begin, int64_t end) noexcept nogil:
    # Rows [begin, end) of C = A @ B: one GEMM of (end - begin) x n x k. BLAS
    # status codes are negative; a chunk reports failures as positive numbers.
    cdef _GemmRowsCtx *c = <_GemmRowsCtx *>vctx
    cdef int rc
    if c.f32:
        rc = c.blas.vtable.sgemm(c.blas.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_NO_TRANS,
                                 end - begin, c.n, c.k, 1.0, <const float *>c.a + begin * c.k, c.k,
                                 <const float *>c.b, c.n, 0.0, <float *>c.c + begin * c.n, c.n)
    else:
        rc = c.blas.vtable.dgemm(c.blas.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_NO_TRANS,
                                 end - begin, c.n, c.k, 1.0, <const double *>c.a + begin * c.k, c.k,
                                 <const double *>c.b, c.n, 0.0, <double *>c.c + begin * c.n, c.n)
    return -rc


cdef class _GemmRows(RangeTask):
    """BlasInterface.gemm_rows's task: the context, and the arrays it points into."""
    cdef _GemmRowsCtx c
    cdef object arrays
    cdef BlasInterface backend
    cdef bint pinned

    def __enter__(self):
        if self.backend.index == 0 and not self.pinned:
            _pin_scipy_blas()
            self.pinned = True
        return self

    def __exit__(self, *exc):
        if self.pinned:
            self.pinned = False
            _unpin_scipy_blas()
        return False

    def raise_status(self, int status):
        """BlasError for a chunk's status (a positive BLAS code); nothing for 0."""
        if status == 0:
            return
        m, k, n = self.arrays[0].shape[0], self.c.k, self.c.n
        raise BlasError(f"the {self.backend.name} BLAS refused a {m}x{k} @ {k}x{n} block "
                        f"(status {-status}: {'out of memory' if -status == ZL_BLAS_ENOMEM else 'invalid argument or size'})")


cdef list _interfaces = []
for _i, _name in enumerate(BACKENDS):
    _bi = BlasInterface.__new__(BlasInterface)
    (<BlasInterface>_bi).c = _backends[_i]
    (<BlasInterface>_bi).name = _name
    (<BlasInterface>_bi).index = _i
    _interfaces.append(_bi)


def default_backend():
    """The backend ``get_blas()`` returns: ``ZIGLLAMA_BLAS``, else "scipy"."""
    return os.environ.get("ZIGLLAMA_BLAS", "").strip() or "scipy"


def get_blas(name=None):
    """The BlasInterface of backend `name` ("scipy", "generic" or "naive");
    None means ``ZIGLLAMA_BLAS``, else "scipy"."""
    if name is None:
        name = default_backend()
    try:
        interface = _interfaces[BACKENDS.index(name)]
    except ValueError:
        raise BlasError(f"unknown BLAS backend {name!r}; choose one of {', '.join(BACKENDS)} "
                        f"(ZIGLLAMA_BLAS selects the default)") from None
    if _module_ready:
        # The qgemm slot's implementation lives in zigllama._core.qmatmul (on top of
        # this module); the package's wiring imports it, so a C caller of the slot
        # of any interface handed out never sees ZL_BLAS_ENOSYS for want of an import.
        ensure_wired()
    return interface


cdef bint _module_ready = False


def generic_threads():
    """OpenMP threads the generic backend's next large call may use."""
    return _generic_ctx.num_threads


def generic_info():
    """What the generic backend runs: micro-kernel, tiles, cache sizes, blocking."""
    avx2 = bool(zl_generic_uses_avx2())
    wide = bool(zl_generic_uses_avx512())
    cdef zl_gemm_blocking bs = _generic_ctx.s512 if wide else _generic_ctx.s
    cdef zl_gemm_blocking bd = _generic_ctx.d512 if wide else _generic_ctx.d
    return {
        "micro_kernel": "avx512" if wide else "avx2+fma" if avx2 else "portable",
        "tile_float32": f"{ZL_SGEMM512_MR}x{ZL_SGEMM512_NR}" if wide else f"{ZL_SGEMM_MR}x{ZL_SGEMM_NR}",
        "tile_float64": f"{ZL_DGEMM512_MR}x{ZL_DGEMM512_NR}" if wide else f"{ZL_DGEMM_MR}x{ZL_DGEMM_NR}",
        "cache_bytes": {"l1d": _generic_ctx.l1d, "l2": _generic_ctx.l2, "l3": _generic_ctx.l3},
        "blocking_float32": {"mc": bs.mc, "kc": bs.kc, "nc": bs.nc},
        "blocking_float64": {"mc": bd.mc, "kc": bd.kc, "nc": bd.nc},
        "openmp_max_threads": zl_omp_max_threads(),
    }


# ---------------------------------------------------------------------------
# Tensor.matmul and `@`: the tensor module's one matmul entry point runs the
# default backend's GEMM for float32/float64 operands BLAS can take (rows or
# columns contiguous); other dtypes and strides keep the plain loops.

cdef int _tensor_backend = 0


cdef int _tensor_operand(const zl_tensor_view *t, _Mat *out, ptrdiff_t *batch_stride) noexcept nogil:
    cdef int d = t.ndim
    batch_stride[0] = t.strides[0] if d == 3 and t.shape[0] != 1 else 0
    return _describe_matrix(t.data, t.shape[d - 2], t.shape[d - 1], t.strides[d - 2], t.strides[d - 1],
                            t.itemsize, out)


cdef int _prepare_tensor_matmul(const zl_tensor_view *a, const zl_tensor_view *b,
                                const zl_tensor_view *out) except -1:
    """With the GIL, before Tensor.matmul's nogil product: the thread setting (a
    Python value) into C state, for products big enough to read it."""
    global _threads_snapshot
    cdef ptrdiff_t batch = out.shape[0] if out.ndim == 3 else 1
    if <double>batch * out.shape[out.ndim - 2] * out.shape[out.ndim - 1] * a.shape[a.ndim - 1] \
            >= _THREAD_SYNC_WORK:
        _sync_threads(_tensor_backend)
        _threads_snapshot = num_threads()
        _resolve_direct()
    return 0


cdef int _tensor_matmul(const zl_tensor_view *a, const zl_tensor_view *b, zl_tensor_view *out) noexcept nogil:
    """out[p] = a[p] @ b[p] (shapes already checked by the tensor module); a
    zl_tensor_status. Never takes the GIL: the thread setting comes from C state
    (_prepare_tensor_matmul), the BLAS is pinned through its C entry points (no
    split where threadpoolctl would be needed)."""
    cdef _Mat ma, mb, mc
    cdef ptrdiff_t sa, sb, sc, p, batch = out.shape[0] if out.ndim == 3 else 1
    if (a.dtype != ZL_F32 and a.dtype != ZL_F64) or _tensor_operand(a, &ma, &sa) \
            or _tensor_operand(b, &mb, &sb) or _tensor_operand(out, &mc, &sc):
        return naive_matmul(a, b, out)
    _relayout(&ma, mc.layout)
    _relayout(&mb, mc.layout)
    cdef zl_blas_trans ta = ZL_NO_TRANS if ma.layout == mc.layout else ZL_TRANS
    cdef zl_blas_trans tb = ZL_NO_TRANS if mb.layout == mc.layout else ZL_TRANS
    cdef zl_blas_int m = mc.rows, n = mc.cols, k = ma.cols
    # A batch (B, m, k) @ (k, n) stored row after row is one (B*m, k) @ (k, n).
    if batch > 1 and sb == 0 and ma.layout == ZL_ROW_MAJOR and mc.layout == ZL_ROW_MAJOR \
            and sa == m * ma.ld * a.itemsize and sc == m * mc.ld * out.itemsize:
        m *= batch
        batch = 1
    cdef zl_blas blas = _backends[_tensor_backend]
    cdef int status = ZL_BLAS_OK
    cdef bint pinned = False
    cdef bint by_rows = True
    cdef int64_t nchunks = 1
    if <double>batch * m * n * k >= _THREAD_SYNC_WORK and _tensor_backend == 0 and not _blas_threads_pinned:
        nchunks = _split_chunks(m, n, k, _threads_snapshot, &by_rows)
        pinned = _pin_direct_nogil()
        if not pinned:
            nchunks = 1
    for p in range(batch):
        if nchunks > 1:
            status = _scipy_gemm_split(blas, a.dtype == ZL_F32, nchunks, by_rows, mc.layout, ta, tb, m, n, k,
                                       1.0, ma.data + p * sa, ma.ld, mb.data + p * sb, mb.ld,
                                       0.0, mc.data + p * sc, mc.ld)
            if status != ZL_BLAS_OK:
                break
            continue
        if a.dtype == ZL_F32:
            status = blas.vtable.sgemm(blas.ctx, mc.layout, ta, tb, m, n, k, 1.0,
                                       <const float *>(ma.data + p * sa), ma.ld,
                                       <const float *>(mb.data + p * sb), mb.ld,
                                       0.0, <float *>(mc.data + p * sc), mc.ld)
        else:
            status = blas.vtable.dgemm(blas.ctx, mc.layout, ta, tb, m, n, k, 1.0,
                                       <const double *>(ma.data + p * sa), ma.ld,
                                       <const double *>(mb.data + p * sb), mb.ld,
                                       0.0, <double *>(mc.data + p * sc), mc.ld)
        if status != ZL_BLAS_OK:
            break
    if pinned:
        _unpin_direct_nogil()
    if status == ZL_BLAS_OK:
        return ZL_TENSOR_OK
    return ZL_TENSOR_ENOMEM if status == ZL_BLAS_ENOMEM else ZL_TENSOR_EBACKEND


def set_tensor_backend(name=None):
    """Choose the backend behind Tensor.matmul and `@` (None: the default,
    ``ZIGLLAMA_BLAS`` or "scipy"); returns its BlasInterface."""
    global _tensor_backend
    ensure_wired()
    cdef BlasInterface blas = get_blas(name)
    _tensor_backend = blas.index
    set_matmul_impl(_tensor_matmul)
    set_matmul_prepare(_prepare_tensor_matmul)
    return blas


def tensor_backend():
    """The BlasInterface behind Tensor.matmul and `@`."""
    ensure_wired()
    return _interfaces[_tensor_backend]


def install_tensor_backend():
    """The package's wiring (zigllama._core.wire), once: the default backend behind
    Tensor.matmul. Importing this module changes nothing of the tensor module."""
    global _tensor_backend
    try:
        _tensor_backend = (<BlasInterface>get_blas()).index
    except BlasError:
        # A misspelt ZIGLLAMA_BLAS must not break tensors: get_blas() reports
        # it; tensors use scipy meanwhile.
        _tensor_backend = (<BlasInterface>get_blas("scipy")).index
    set_matmul_impl(_tensor_matmul)
    set_matmul_prepare(_prepare_tensor_matmul)


_module_ready = True
