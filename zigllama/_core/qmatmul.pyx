"""Quantized matrix products: ``y = x @ W.T`` with ``W`` left in its GGML blocks.

The twin of what llama.cpp's ggml-cpu does for every matrix product while
decoding: the weight stays quantized (4.5 bits per weight for Q4_K instead of
32), the activations are quantized per block on the fly (Q8_0 for the legacy
types and IQ4_NL, Q8_K for the K-quants and IQ4_XS) and every block product is
an integer dot product, scaled once (``mode="fast"``). ``mode="exact"``
dequantizes panels of ``W`` and multiplies them with the BLAS backend's sgemm:
``dequantize(W) @ x.T`` up to float summation order.

Kernels: portable C, AVX2, AVX-VNNI and AVX-512 VNNI, the widest the CPU has
chosen at run time (``ZIGLLAMA_QMATMUL_PATH`` forces a narrower one). Rows of
``W`` are split in contiguous ranges over the work-stealing pool.
"""
import operator
import time

import numpy as np
cimport numpy as cnp

from libc.stdint cimport int64_t, uint8_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from .blas_integration cimport (
    BlasInterface, ZL_BLAS_EINVAL, ZL_BLAS_ENOMEM, ZL_BLAS_OK, ZL_NO_TRANS, ZL_ROW_MAJOR, ZL_TRANS, register_qgemm)
from .quantization cimport quant_type, quantize_fn, quantizer_for, zl_quant_type
from .array_data cimport array_data
from .threading cimport (
    PoolHandle, acquire_pool, current_thread_pool, default_pool_handle, parallel_for_status, pool_ptr,
    pool_threads, release_pool, setting_threads)

from .._config import MAX_THREADS as _MAX_THREADS, resolve_threads
from ..errors import IncompatibleShapes, InvalidArgumentType, OutOfMemory, QuantizationError, UnsupportedDtype
from ..ggml_types import GGMLType
from .blas_integration import get_blas
from .quantization import ggml_type_id, ggml_type_name
from .threading import default_pool

cnp.import_array()

cdef extern from "zigllama/zl_ggml_types.h" nogil:
    enum:
        ZL_GGML_F32
        ZL_GGML_Q8_0

cdef extern from "qgemm_job.h" nogil:
    cdef struct zl_tile_kernels
    enum:
        ZL_ACT_F32
        ZL_ACT_Q8_0
        ZL_ACT_Q8_K
        ZL_QPATH_COUNT
        ZL_QGEMM_ETYPE
        ZL_QGEMM_EBLOCKS
        ZL_QGEMM_EARG
    ctypedef void (*zl_qdot_fn)(int64_t k, const uint8_t *w, int64_t stride, int64_t nrows,
                                const uint8_t *xq, float *y) noexcept nogil
    ctypedef void (*zl_act_quantize_fn)(const float *x, uint8_t *dst, int64_t k) noexcept nogil
    ctypedef void (*zl_dequantize_fn)(const uint8_t *src, float *dst, int64_t n) noexcept nogil
    ctypedef struct zl_qgemm_job:
        zl_qtensor w
        int64_t m
        const float *x
        int64_t ldx
        float *y
        int64_t ldy
        int64_t nchunks
        int64_t rows_per_block
        zl_qdot_fn dot
        int act
        zl_act_quantize_fn quantize
        uint8_t *xq
        int64_t xq_bytes
        zl_dequantize_fn dequantize
        float *panel
        int64_t panel_r0, panel_rows
        const zl_tile_kernels *tiles
        uint8_t *xpack
    int zl_qpath_supported(int path)
    int zl_qpath_best()
    int zl_qpath_active()
    const char *zl_qpath_name(int path)
    int zl_qfast_has(int type)
    int zl_act_of(int type)
    zl_qdot_fn zl_qdot_for(int type, int path)
    int64_t zl_act_row_bytes(int act, int64_t k)
    zl_act_quantize_fn zl_act_quantizer(int act, int path, zl_act_quantize_fn q8_0_portable)
    int zl_qgemm_check(const zl_qtensor *w, int64_t m, int64_t ldx, int64_t ldy, int mode)
    int zl_qgemm_quantize_rows(void *job, int64_t begin, int64_t end)
    int zl_qgemm_fast_chunk(void *job, int64_t begin, int64_t end)
    int zl_qgemm_exact_chunk(void *job, int64_t begin, int64_t end)
    int zl_qgemm_panel_chunk(void *job, int64_t begin, int64_t end)
    const zl_tile_kernels *zl_qgemm_tiles_for(int type, int64_t m, int path)
    int zl_qgemm_tile_setup(zl_qgemm_job *job, const zl_tile_kernels *kernels)
    int64_t zl_qgemm_tile_runs(int set)
    uint64_t zl_read_sweep(const uint8_t *p, int64_t n)


# Below this many multiply-adds a product runs on the caller alone: a
# parallel_for costs a few microseconds.
cdef int64_t SPLIT_MIN_WORK = 1 << 18
# Exact mode: up to this many x rows, W is dequantized a few rows at a time
# and dotted with x; above, whole panels are dequantized for sgemm.
cdef int64_t EXACT_ROWWISE_MAX_M = 32
# Bytes of W rows a chunk keeps hot while every x row passes over them (m > 1).
cdef int64_t FAST_BLOCK_BYTES = 16 << 10
# Fast mode on several threads: chunks per thread, claimed one at a time, so
# that a worker that wakes late (or is preempted) still takes its share
# instead of leaving the caller to run the other half alone; at least
# FAST_CHUNK_MIN_ROWS rows of W each.
cdef int64_t FAST_CHUNKS_PER_THREAD = 8
cdef int64_t FAST_CHUNK_MIN_ROWS = 32
# Floats of W a dequantized panel holds (exact mode, many x rows): 16 MiB, so
# the hand-overs between the pool (dequantizing) and the BLAS's own threads
# (multiplying) are few.
cdef int64_t PANEL_FLOATS = 1 << 22


ctypedef int (*chunk_fn)(void *job, int64_t begin, int64_t end) noexcept nogil

# The package's reference Q8_0 quantizer (ggml's quantize_row_q8_0_ref, byte for
# byte): the portable path's activation quantizer.
cdef quantize_fn q8_0_run = quantizer_for(ZL_GGML_Q8_0)


cdef void q8_0_reference(const float *x, uint8_t *dst, int64_t k) noexcept nogil:
    q8_0_run(x, dst, k // 32, NULL)


cdef int run_split(zl_pool *pool, int64_t n, chunk_fn fn, zl_qgemm_job *job) noexcept nogil:
    # fn over chunks [0, n): on the pool when there is one and n > 1. A pool
    # failure (closed, out of memory) runs the chunks here instead: each chunk
    # writes only its own rows. Returns a chunk's own failure (1: no memory).
    cdef int status
    if pool != NULL and n > 1:
        status = parallel_for_status(pool, n, 1, fn, job)
        if status >= 0:
            return status
    return fn(job, 0, n)


cdef int qgemm_on(zl_blas blas, zl_pool *pool, const zl_qtensor *w, zl_blas_int m, const float *x,
                  zl_blas_int ldx, float *y, zl_blas_int ldy, int mode, int nthreads) noexcept nogil:
    cdef zl_qgemm_job job
    cdef int64_t i, r0, threads, work, k = w.cols if w != NULL else 0
    cdef int status = 0, path
    cdef const zl_quant_type *qt
    cdef const zl_tile_kernels *tiles
    if zl_qgemm_check(w, m, ldx, ldy, mode) != 0:
        return ZL_BLAS_EINVAL
    if m == 0 or w.rows == 0:
        return ZL_BLAS_OK
    if k == 0:
        for i in range(m):
            memset(y + i * ldy, 0, w.rows * sizeof(float))
        return ZL_BLAS_OK
    memset(&job, 0, sizeof(job))
    job.w = w[0]
    job.m = m
    job.x = x
    job.ldx = ldx
    job.y = y
    job.ldy = ldy
    threads = pool_threads(pool) if pool != NULL else 1
    if nthreads > 0 and nthreads < threads:
        threads = nthreads
    work = w.rows * k * m
    if work < SPLIT_MIN_WORK:
        threads = 1
    job.nchunks = threads if threads < w.rows else w.rows
    path = zl_qpath_active()

    if mode == ZL_QGEMM_FAST and zl_qfast_has(w.type):
        if threads > 1:
            job.nchunks = min(threads * FAST_CHUNKS_PER_THREAD, max(threads, w.rows // FAST_CHUNK_MIN_ROWS))
        job.act = zl_act_of(w.type)
        job.dot = zl_qdot_for(w.type, path)
        job.rows_per_block = FAST_BLOCK_BYTES // w.row_stride + 1
        if job.act != ZL_ACT_F32:
            job.xq_bytes = zl_act_row_bytes(job.act, k)
            job.quantize = zl_act_quantizer(job.act, path, q8_0_reference)
            job.xq = <uint8_t *>malloc(job.xq_bytes * m + 64)
            if job.xq == NULL:
                return ZL_BLAS_ENOMEM
            if m >= 4 * threads and threads > 1:
                run_split(pool, m, zl_qgemm_quantize_rows, &job)
            else:
                zl_qgemm_quantize_rows(&job, 0, m)
            # Many x rows: the tiled integer GEMM, on x regrouped once.
            tiles = zl_qgemm_tiles_for(w.type, m, path)
            if tiles != NULL:
                status = zl_qgemm_tile_setup(&job, tiles)
                free(job.xq)
                job.xq = NULL
                if status != 0:
                    free(job.xpack)
                    return ZL_BLAS_ENOMEM
        status = run_split(pool, job.nchunks, zl_qgemm_fast_chunk, &job)
        free(job.xq)
        free(job.xpack)
        return ZL_BLAS_ENOMEM if status != 0 else ZL_BLAS_OK

    qt = quant_type(w.type)
    if qt == NULL or qt.dequantize == NULL:
        return ZL_BLAS_EINVAL
    job.dequantize = <zl_dequantize_fn>qt.dequantize
    if m <= EXACT_ROWWISE_MAX_M:
        job.dot = zl_qdot_for(ZL_GGML_F32, path)
        job.rows_per_block = (64 << 10) // (k * <int64_t>sizeof(float)) + 1
        status = run_split(pool, job.nchunks, zl_qgemm_exact_chunk, &job)
        return ZL_BLAS_ENOMEM if status != 0 else ZL_BLAS_OK
    # Panels: dequantized on the pool, then multiplied by the backend's sgemm
    # (its own threads; the pool is idle by then, so the two never compete).
    job.panel_rows = PANEL_FLOATS // k + 1
    if job.panel_rows > w.rows:
        job.panel_rows = w.rows
    job.panel = <float *>malloc(job.panel_rows * k * sizeof(float) + 64)
    if job.panel == NULL:
        return ZL_BLAS_ENOMEM
    r0 = 0
    while r0 < w.rows:
        job.panel_r0 = r0
        if job.panel_rows > w.rows - r0:
            job.panel_rows = w.rows - r0
        job.nchunks = threads if threads < job.panel_rows else job.panel_rows
        run_split(pool, job.nchunks, zl_qgemm_panel_chunk, &job)
        status = blas.vtable.sgemm(blas.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_TRANS, m, job.panel_rows, k,
                                   1.0, x, ldx, job.panel, k, 0.0, y + r0, ldy)
        if status != ZL_BLAS_OK:
            break
        r0 += job.panel_rows
    free(job.panel)
    return status


cdef int qgemm_entry(zl_blas blas, const zl_qtensor *w, zl_blas_int m, const float *x, zl_blas_int ldx,
                     float *y, zl_blas_int ldy, int mode, int nthreads) noexcept nogil:
    # The vtable's qgemm slot: the pool at hand, looked up only for work worth splitting.
    cdef void *ref = NULL
    cdef zl_pool *pool = NULL
    cdef int status
    if nthreads != 1 and w != NULL and w.rows * w.cols * m >= SPLIT_MIN_WORK:
        pool = acquire_pool(&ref)
    status = qgemm_on(blas, pool, w, m, x, ldx, y, ldy, mode, nthreads)
    release_pool(ref)
    return status


register_qgemm(qgemm_entry)


# ---------------------------------------------------------------------------
# Python API

_MODES = {"fast": ZL_QGEMM_FAST, "exact": ZL_QGEMM_EXACT}


def _type_traits(type_id):
    cdef const zl_quant_type *t = quant_type(type_id)
    if t == NULL or t.dequantize == NULL:
        raise QuantizationError(f"ggml type {ggml_type_name(type_id)} cannot be read by zigllama")
    return t.block_size, t.type_size


cdef class QuantizedTensor:
    """A zero-copy view of a GGML tensor's blocks: the weight of ``qgemm``.

    ``QuantizedTensor(data, ggml_type, shape)``: ``data`` a uint8 array (or any
    bytes-like object) of whole blocks, either flat and C-contiguous or
    (rows, row bytes) with rows any distance apart; ``ggml_type`` an id, a
    ``GGMLType`` or a name ("Q4_K"); ``shape`` in numpy order, the last axis the
    row (GGUF's ne[0]). ``GGUFReader.quantized(name)`` makes one over a file's
    map. The view keeps ``data`` (and so the map) alive.
    """

    def __init__(self, data, ggml_type, shape):
        type_id = ggml_type_id(ggml_type)
        block, size = _type_traits(type_id)
        try:
            dims = tuple(operator.index(d) for d in shape)
        except TypeError:
            try:
                dims = (operator.index(shape),)
            except TypeError:
                raise QuantizationError(f"shape must be a tuple of ints, got {shape!r}") from None
        if not dims or any(d < 0 for d in dims):
            raise QuantizationError(f"shape {dims} must have one or more non-negative dimensions")
        cols = dims[len(dims) - 1]
        rows = 1
        for d in dims[:len(dims) - 1]:
            rows *= d
        if cols % block:
            raise QuantizationError(
                f"{ggml_type_name(type_id)} rows hold whole blocks of {block} values; "
                f"shape {dims} has rows of {cols}")
        row_bytes = cols // block * size
        if isinstance(data, np.ndarray):
            arr = data
            if arr.dtype != np.uint8:
                raise UnsupportedDtype(f"quantized data must be a uint8 array, got {arr.dtype}")
        else:
            try:
                arr = np.frombuffer(data, dtype=np.uint8)
            except (TypeError, ValueError, BufferError) as e:
                raise QuantizationError(f"quantized data must be a bytes-like object: {e}") from None
        if arr.ndim == 2 and arr.shape[0] == rows and arr.shape[1] == row_bytes and (
                arr.strides[1] == 1 or row_bytes <= 1) and (arr.strides[0] >= row_bytes or rows <= 1):
            view = arr
        elif arr.ndim >= 1 and arr.flags.c_contiguous:
            if arr.size != rows * row_bytes:
                raise QuantizationError(
                    f"{ggml_type_name(type_id)} tensor of shape {dims} needs {rows * row_bytes} bytes "
                    f"({rows} rows of {row_bytes}), data has {arr.size}")
            view = arr.reshape(rows, row_bytes)
        else:
            raise QuantizationError(
                f"quantized data must be C-contiguous or (rows, row bytes) = ({rows}, {row_bytes}) "
                f"with contiguous rows; got shape {arr.shape}, strides {arr.strides}")
        self.data = view
        self.shape = dims
        self.ggml_type = GGMLType(type_id)
        self.c.type = type_id
        self.c.rows = rows
        self.c.cols = cols
        self.c.row_stride = view.strides[0] if rows > 1 else row_bytes
        self.c.data = <const uint8_t *><uintptr_t>array_data(view) if view.size else NULL

    @property
    def type_name(self):
        """The ggml name of the type ("Q4_K")."""
        return ggml_type_name(self.c.type)

    @property
    def n_rows(self):
        """Rows: the product of every axis but the last (out_features of a weight)."""
        return self.c.rows

    @property
    def n_cols(self):
        """Values per row (in_features of a weight)."""
        return self.c.cols

    @property
    def row_stride(self):
        """Bytes from one row's first block to the next row's."""
        return self.c.row_stride

    @property
    def row_bytes(self):
        """Bytes of one row's blocks."""
        return self.data.shape[1]

    @property
    def nbytes(self):
        """Bytes of blocks the view covers."""
        return self.c.rows * self.data.shape[1]

    @property
    def fast(self):
        """True when ``qgemm(mode="fast")`` has integer kernels for this type (the
        others take the exact path)."""
        return bool(zl_qfast_has(self.c.type))

    def rows(self, start, stop):
        """Rows [start, stop) as a QuantizedTensor of shape (stop - start, cols): a view."""
        start, stop, _ = slice(start, stop).indices(self.c.rows)
        stop = max(start, stop)
        return QuantizedTensor(self.data[start:stop], self.c.type, (stop - start, self.c.cols))

    def dequantize(self, threads=None):
        """The tensor dequantized to a new float32 array of ``shape``."""
        from .quantization import dequantize
        out = np.empty(self.shape, dtype=np.float32)
        if self.c.rows and self.c.cols:
            src = self.data if self.data.flags.c_contiguous else np.ascontiguousarray(self.data)
            dequantize(src, self.c.type, (self.c.rows, self.c.cols), out=out.reshape(self.c.rows, self.c.cols),
                       threads=threads)
        return out

    def take(self, indices):
        """Rows ``indices`` (ints, any shape) dequantized: float32 of shape
        ``indices.shape + (cols,)`` (an embedding lookup)."""
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise QuantizationError(f"row indices must be integers, got {idx.dtype}")
        flat = idx.reshape(-1).astype(np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= self.c.rows):
            raise IndexError(f"row index out of range for {self.c.rows} rows")
        out = np.empty((flat.size, self.c.cols), dtype=np.float32)
        cdef const zl_quant_type *t = quant_type(self.c.type)
        cdef int64_t[::1] rows = flat
        cdef float[:, ::1] o = out
        cdef Py_ssize_t i
        cdef int64_t stride = self.c.row_stride, cols = self.c.cols
        cdef const uint8_t *base = self.c.data
        if self.c.cols:
            with nogil:
                for i in range(rows.shape[0]):
                    t.dequantize(base + rows[i] * stride, &o[i, 0], cols)
        return out.reshape(idx.shape + (self.c.cols,))

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"QuantizedTensor({self.type_name}, shape={self.shape}, {self.nbytes} bytes)"

    @property
    def T(self):
        """The weight transposed, as the right operand of a product (fast mode):
        ``x @ w.T``, ``Tensor @ w.T`` and ``ParallelOps.matmul(x, w.T)`` are
        ``qgemm(x, w)``, where a float32 weight would be ``x @ w_f32.T``."""
        return QuantizedTranspose(self, "fast")

    def transposed(self, mode="fast"):
        """``T`` with the product's mode chosen: "fast" (integer kernels) or
        "exact" (float32 x against W dequantized panel by panel)."""
        return QuantizedTranspose(self, mode)


cdef class QuantizedTranspose:
    """``W.T`` of a 2-D QuantizedTensor W of shape (n, k): shape (k, n), the right
    operand of a matrix product, which runs in ``qgemm`` without a float copy of
    W. Only products take it (numpy defers ``ndarray @ this`` here)."""

    cdef readonly QuantizedTensor weight
    cdef readonly str mode
    __array_ufunc__ = None

    def __init__(self, QuantizedTensor weight, mode="fast"):
        if len(weight.shape) != 2:
            raise IncompatibleShapes(f"a product needs a 2-D weight (n, k), got shape {weight.shape}")
        if mode not in _MODES:
            raise QuantizationError(f"mode must be 'fast' or 'exact', got {mode!r}")
        self.weight = weight
        self.mode = mode

    @property
    def shape(self):
        return (self.weight.c.cols, self.weight.c.rows)

    @property
    def ndim(self):
        return 2

    @property
    def T(self):
        return self.weight

    def __rmatmul__(self, x):
        return self._zl_rmatmul(x)

    def __matmul__(self, other):
        raise InvalidArgumentType("a quantized weight multiplies from the right: x @ w.T, "
                                  "not w.T @ x (dequantize() gives the float32 matrix)")

    def _zl_rmatmul(self, x, out=None, pool=None, blas=None):
        """``x @ self``: x float32 (..., k), out float32 (..., n) or None. The
        product protocol of ``Tensor.matmul`` and ``ParallelOps.matmul``."""
        X = np.asarray(x)
        if X.ndim <= 2:
            return _qgemm(X, self.weight, out, self.mode, None, pool, blas)
        lead = X.shape[:X.ndim - 1]
        rows = X.reshape(-1, X.shape[X.ndim - 1])
        if out is None:
            return _qgemm(rows, self.weight, None, self.mode, None, pool, blas).reshape(
                lead + (self.weight.c.rows,))
        Y = np.asarray(out)
        if Y.shape != lead + (self.weight.c.rows,):
            raise IncompatibleShapes(f"out has shape {Y.shape}, the product is {lead + (self.weight.c.rows,)}")
        flat = Y.reshape(-1, self.weight.c.rows)
        if not np.shares_memory(flat, Y):
            raise QuantizationError("out must have contiguous rows")
        _qgemm(rows, self.weight, flat, self.mode, None, pool, blas)
        return out

    def __repr__(self):
        return f"{self.weight!r}.T ({self.mode} mode)"


def _qgemm_status(int status):
    if status == ZL_BLAS_ENOMEM:
        raise OutOfMemory("qgemm: no memory for the activation or panel buffers")
    if status != ZL_BLAS_OK:
        raise QuantizationError(f"qgemm: the backend rejected the arguments (status {status})")


cdef object F32 = np.dtype(np.float32)


cdef inline bint is_f32(cnp.ndarray a):
    # numpy hands out one native float32 descriptor: identity first, the
    # general comparison (an equal descriptor that is another object) after.
    return <object>cnp.PyArray_DESCR(a) is F32 or a.dtype == F32


cdef inline bint contiguous_vector(cnp.ndarray a):
    # One row of float32 values, adjacent and aligned: the common m = 1 argument.
    return cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_STRIDE(a, 0) == 4 \
        and <uintptr_t>cnp.PyArray_DATA(a) % 4 == 0


def qgemm(x, w, out=None, *, mode="fast", threads=None):
    """``out = x @ W.T`` for a QuantizedTensor ``w`` of shape (n, k).

    ``x`` float32 of shape (m, k) or (k,); the result is float32 (m, n) (or (n,)),
    written into ``out`` when given (float32, that shape, rows contiguous).
    ``mode="fast"`` quantizes x per block as ggml does and multiplies integers;
    ``mode="exact"`` multiplies float32 x with W dequantized panel by panel.
    Rows of W are split over ``threads`` threads of the default pool.
    """
    return _qgemm(x, w, out, mode, threads, None, None)


cdef object _qgemm(x, w, out, mode, threads, pool_obj, blas_obj):
    # qgemm on a given pool (its whole size unless `threads` says less) and
    # BLAS backend (exact mode's panels) when they are not None.
    # A decoding step makes hundreds of these calls on small weights, so the
    # common arguments (numpy arrays, a vector x, out a vector or None) are
    # checked in C: the same checks, none of numpy's Python-level attributes.
    if not isinstance(w, QuantizedTensor):
        raise QuantizationError(f"w must be a QuantizedTensor, got {type(w).__name__}")
    cdef QuantizedTensor W = <QuantizedTensor>w
    cmode = _MODES.get(mode)
    if cmode is None:
        raise QuantizationError(f"mode must be 'fast' or 'exact', got {mode!r}")
    if len(W.shape) != 2:
        raise IncompatibleShapes(f"qgemm needs a 2-D weight (n, k), got shape {W.shape}")
    cdef cnp.ndarray X = x if cnp.PyArray_CheckExact(x) else np.asarray(x)
    if not is_f32(X):
        raise UnsupportedDtype(f"qgemm takes float32 activations, got {X.dtype}")
    cdef bint vector = cnp.PyArray_NDIM(X) == 1
    cdef int64_t m = 1, k = W.c.cols, n = W.c.rows, ldx, ldy
    if vector:
        if cnp.PyArray_DIM(X, 0) != k:
            raise IncompatibleShapes(f"x has {X.shape[0]} columns, the weight {W.shape} has rows of {k}")
        if not contiguous_vector(X):
            X = np.array(X, dtype=np.float32, order="C")
        ldx = max(k, 1)
    else:
        if cnp.PyArray_NDIM(X) != 2:
            raise IncompatibleShapes(f"x must be (m, k) or (k,), got shape {np.shape(x)}")
        m = cnp.PyArray_DIM(X, 0)
        if cnp.PyArray_DIM(X, 1) != k:
            raise IncompatibleShapes(f"x has {X.shape[1]} columns, the weight {W.shape} has rows of {k}")
        if not (X.strides[1] == 4 and X.strides[0] % 4 == 0 and (m <= 1 or X.strides[0] >= 4 * k)) \
                or <uintptr_t>array_data(X) % 4:
            X = np.array(X, dtype=np.float32, order="C")
        ldx = X.strides[0] // 4 if m > 1 and k > 0 else max(k, 1)
    cdef cnp.ndarray Y
    cdef cnp.npy_intp dims[2]
    if out is None:
        dims[0] = m
        dims[1] = n
        Y = cnp.PyArray_EMPTY(1, &dims[1], cnp.NPY_FLOAT32, 0) if vector else \
            cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
    else:
        Y = out if cnp.PyArray_Check(out) else np.asarray(out)
        if not is_f32(Y):
            raise UnsupportedDtype(f"out must be float32, got {Y.dtype}")
        if not (cnp.PyArray_NDIM(Y) == 1 and cnp.PyArray_DIM(Y, 0) == n if vector else
                cnp.PyArray_NDIM(Y) == 2 and cnp.PyArray_DIM(Y, 0) == m and cnp.PyArray_DIM(Y, 1) == n):
            oshape = (<object>n,) if vector else (<object>m, <object>n)
            raise IncompatibleShapes(f"out has shape {(<object>Y).shape}, the product is {oshape}")
        if not cnp.PyArray_ISWRITEABLE(Y):
            raise QuantizationError("out is read-only")
    if out is None or vector and contiguous_vector(Y):
        ldy = max(n, 1)     # rows n apart
    else:
        rows = Y.reshape(m, n) if vector else Y
        if not (rows.strides[1] == 4 or n <= 1) or rows.strides[0] % 4 or <uintptr_t>array_data(Y) % 4 or (
                m > 1 and rows.strides[0] < 4 * n):
            raise QuantizationError(f"out must have contiguous rows, got strides {rows.strides}")
        ldy = rows.strides[0] // 4 if m > 1 and n > 0 else max(n, 1)
    cdef int nthreads
    if threads is None and pool_obj is not None:
        nthreads = pool_obj.num_threads
    elif threads is None:
        nthreads = setting_threads()
    elif type(threads) is int and 1 <= <object>threads <= _MAX_THREADS:
        nthreads = threads
    else:
        nthreads = resolve_threads(threads)
    cdef zl_pool *pool = NULL
    cdef PoolHandle handle = None
    if nthreads > 1 and n * k * m >= SPLIT_MIN_WORK:
        if pool_obj is not None:
            pool = pool_ptr(pool_obj)
        else:
            pool = current_thread_pool()
        if pool == NULL:
            handle = default_pool_handle()
            pool = handle.ptr
    cdef const float *xp = <const float *><uintptr_t>array_data(X)
    cdef float *yp = <float *><uintptr_t>array_data(Y)
    cdef int c_mode = cmode
    cdef int status
    # Only the exact mode's panels need the BLAS backend: its look-up costs a
    # few microseconds, a good part of a small GEMV.
    cdef zl_blas blas
    memset(&blas, 0, sizeof(blas))
    if c_mode != ZL_QGEMM_FAST or not zl_qfast_has(W.c.type):
        blas = (<BlasInterface>(blas_obj if isinstance(blas_obj, BlasInterface) else get_blas(blas_obj))).c
    with nogil:
        status = qgemm_on(blas, pool, &W.c, m, xp, ldx, yp, ldy, c_mode, nthreads)
    if status != ZL_BLAS_OK:
        _qgemm_status(status)
    if out is not None:
        return out
    return Y


def _bench_qgemm_floor(x, QuantizedTensor w, y, int threads, int64_t calls):
    """Seconds per call of what ``qgemm(x, w, y, threads=threads)`` runs in C
    (x a vector, fast mode): the pool looked up once, then ``calls`` calls of
    the same kernel in a nogil loop. The wrapper's cost is qgemm's time less
    this (a benchmark probe)."""
    cdef const float[::1] xv = x
    cdef float[::1] yv = y
    cdef zl_pool *pool = NULL
    cdef PoolHandle handle = None
    cdef int64_t i
    cdef int status = 0
    cdef zl_blas blas
    memset(&blas, 0, sizeof(blas))
    if xv.shape[0] != w.c.cols or yv.shape[0] != w.c.rows:
        raise IncompatibleShapes(f"x and y must be ({w.c.cols},) and ({w.c.rows},)")
    if threads > 1 and w.c.rows * w.c.cols >= SPLIT_MIN_WORK:
        pool = current_thread_pool()
        if pool == NULL:
            handle = default_pool_handle()
            pool = handle.ptr
    t0 = time.perf_counter()
    with nogil:
        for i in range(calls):
            status |= qgemm_on(blas, pool, &w.c, 1, &xv[0], w.c.cols, &yv[0], w.c.rows, ZL_QGEMM_FAST, threads)
    elapsed = time.perf_counter() - t0
    _qgemm_status(status)
    return elapsed / calls


def quantize_activations(x, ggml_type):
    """x (float32, k values or (m, k)) quantized the way ``qgemm(mode="fast")``
    quantizes it for a weight of ``ggml_type``: uint8 rows of Q8_0 or Q8_K blocks
    (ggml's quantize_row_q8_0_ref / quantize_row_q8_K_ref, byte for byte), on the
    active kernel path. Returns (blocks, activation type name)."""
    type_id = ggml_type_id(ggml_type)
    if not zl_qfast_has(type_id):
        raise QuantizationError(f"{ggml_type_name(type_id)} has no fast kernel")
    cdef int act = zl_act_of(type_id)
    if act == ZL_ACT_F32:
        raise QuantizationError(f"{ggml_type_name(type_id)} weights take float32 activations")
    X = np.ascontiguousarray(x, dtype=np.float32)
    if X.ndim == 1:
        X = X.reshape(1, -1)
    block = 32 if act == ZL_ACT_Q8_0 else 256
    if X.ndim != 2 or X.shape[1] % block:
        raise IncompatibleShapes(f"x rows must hold whole blocks of {block}, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise QuantizationError("x must be finite")
    cdef int64_t m = X.shape[0], k = X.shape[1], i
    cdef int64_t nbytes = zl_act_row_bytes(act, k)
    out = np.empty((m, nbytes), dtype=np.uint8)
    cdef zl_act_quantize_fn q = zl_act_quantizer(act, zl_qpath_active(),
                                                 q8_0_reference)
    cdef const float *xp = <const float *><uintptr_t>array_data(X)
    cdef uint8_t *op = <uint8_t *><uintptr_t>array_data(out)
    with nogil:
        for i in range(m):
            q(xp + i * k, op + i * nbytes, k)
    return out, ("Q8_0" if act == ZL_ACT_Q8_0 else "Q8_K")


def qgemm_paths():
    """Kernel paths this CPU runs, narrowest first ("portable", "avx2", ...)."""
    return [zl_qpath_name(p).decode() for p in range(ZL_QPATH_COUNT) if zl_qpath_supported(p)]


def qgemm_path():
    """The kernel path qgemm uses now (``ZIGLLAMA_QMATMUL_PATH`` forces a narrower one)."""
    return zl_qpath_name(zl_qpath_active()).decode()


def _qgemm_tile_runs():
    """Products the tiled integer GEMM has run since import, per kernel set
    (the AVX-VNNI path runs the AVX2 set): which kernels a product took."""
    return {name: zl_qgemm_tile_runs(i) for i, name in enumerate(("portable", "avx2", "avx512_vnni"))}


ctypedef struct sweep_job:
    const uint8_t *data
    int64_t n
    int64_t nchunks
    uint64_t acc[64]


cdef int sweep_chunk(void *vjob, int64_t begin, int64_t end) noexcept nogil:
    cdef sweep_job *j = <sweep_job *>vjob
    cdef int64_t c, lo, hi
    for c in range(begin, end):
        lo = j.n * c // j.nchunks // 64 * 64
        hi = j.n if c + 1 == j.nchunks else j.n * (c + 1) // j.nchunks // 64 * 64
        j.acc[c] = zl_read_sweep(j.data + lo, hi - lo)
    return 0


def _read_sweep(data, threads=None):
    """OR of every byte of a C-contiguous uint8 array, read once in contiguous
    ranges on ``threads`` threads of the default pool: the memory-read peer the
    GEMV benchmark measures against (the bytes a GEMV must read, nothing else)."""
    cdef const uint8_t[::1] view = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    cdef sweep_job job
    cdef int nthreads = min(resolve_threads(threads), 64)
    cdef zl_pool *pool = NULL
    pool_obj = None
    job.data = &view[0] if view.shape[0] else NULL
    job.n = view.shape[0]
    job.nchunks = nthreads
    cdef uint64_t acc = 0
    cdef int64_t c
    if nthreads > 1:
        pool_obj = default_pool()
        pool = pool_ptr(pool_obj)
    with nogil:
        if pool != NULL:
            parallel_for_status(pool, job.nchunks, 1, sweep_chunk, &job)
        else:
            sweep_chunk(&job, 0, job.nchunks)
        for c in range(job.nchunks):
            acc |= job.acc[c]
    return acc
