"""Dequantization of every GGML block format to float32, and quantization to
the common ones.

The twin of ZigLlama's quantization, k_quantization and iq_quantization files
and of the seed's GGUF loader (which dequantizes Q4_0, Q4_1, Q8_0 and F16).
Every kernel is C over whole blocks (``zigllama/zl_quants.h``), bit-exact with
``gguf.quants.dequantize``, with an AVX2/F16C path chosen at run time and a
portable one always; this module checks arguments once, then splits the blocks
over the work-stealing pool (``zigllama.default_pool()``) without the GIL.
"""
import errno
import operator

import numpy as np

from libc.stdint cimport int64_t, uint8_t

from .platform cimport zl_simd_name
from .threading cimport (
    acquire_pool, check_pool_status, parallel_for_status, pool_ptr, pool_threads, release_pool, zl_pool)

from .._config import resolve_threads
from .threading import default_pool
from ..errors import GGUFFileChanged, MappingError, QuantizationError
from .memory_mapping cimport fault_guarded_call, fault_touch
from .quantization_arguments import as_byte_buffer, as_imatrix, as_shape, check_out
from .tensor import Tensor

cdef extern from "zigllama/zl_quants.h" nogil:
    const zl_quant_type *zl_quant_type_find(int type_id) noexcept
    const zl_quant_type *zl_quant_types(int *count) noexcept
    int zl_quants_simd_active() noexcept
    void zl_dequantize_blocks(zl_dequantize_fn kernel, const uint8_t *src, float *dst, int64_t n_blocks,
                              int64_t block_size, int64_t type_size, int streaming) noexcept
    ctypedef struct zl_quantizer:
        int type_id
        quantize_fn run
        int takes_imatrix
    const zl_quantizer *zl_quantizer_find(int type_id) noexcept
    int64_t zl_quantize_blocks(const zl_quantizer *q, const float *src, uint8_t *dst, int64_t first,
                               int64_t count, int64_t blocks_per_row, const float *imatrix) noexcept
    void zl_quantize_note_overflow(int64_t *first_bad, int64_t bad) noexcept

cdef extern from "zigllama/zl_ggml_types.h":
    enum:
        ZL_GGML_F16
        ZL_GGML_BF16

# A call is split over the pool from this many output bytes on; smaller ones
# run on the caller alone. Measured on 2 cores: a 256 KiB output takes about
# 10 us on one thread, and splitting it gained nothing even with the worker
# awake (11 us), while a call right after other libraries ran paid for waking
# it (45-85 us); 4 MiB (100-150 us on one thread) gains 1.3-1.5x.
cdef int64_t SPLIT_MIN_BYTES = 1 << 20
# A chunk writes at least this many output bytes: much more than the few
# microseconds a parallel_for costs, and small enough that a thread which
# claims one late (its core busy) holds back little.
cdef int64_t CHUNK_MIN_BYTES = 128 << 10
# Chunks per thread when every pool thread may help: stealing evens out a thread
# that starts late or shares its core.
cdef int64_t CHUNKS_PER_THREAD = 4
# From this many output bytes on, write with streaming stores: an output larger
# than the last-level cache cannot stay there, so keeping it would only evict the
# source; a smaller one is better left in cache for whoever reads it next.
def _last_level_cache_bytes():
    from .cpu_topology import CpuTopology

    topo = CpuTopology.detect()
    for size in (topo.l3_size, topo.l2_size):
        if size:
            return int(size)
    return 16 << 20


cdef int64_t STREAMING_MIN_BYTES = _last_level_cache_bytes() + 1


def streaming_min_bytes():
    """Outputs of at least this many bytes are written with streaming stores
    (one byte more than the last-level cache)."""
    return STREAMING_MIN_BYTES


ctypedef struct split_ctx:
    block_range_fn fn
    void *ctx
    int64_t n_blocks
    int64_t nchunks


cdef int run_chunks(void *vctx, int64_t begin, int64_t end) noexcept nogil:
    # Chunks [begin, end) of the split: contiguous, near-equal block ranges.
    cdef split_ctx *s = <split_ctx *>vctx
    cdef int64_t first = s.n_blocks * begin // s.nchunks
    cdef int64_t last = s.n_blocks * end // s.nchunks
    if last > first:
        s.fn(s.ctx, first, last - first)
    return 0


cdef int split_blocks_on(zl_pool *pool, block_range_fn fn, void *ctx, int64_t n_blocks,
                         int64_t block_size, int nthreads) noexcept nogil:
    cdef split_ctx s
    cdef int64_t limit = pool_threads(pool) if pool != NULL else 1
    cdef int64_t by_size = n_blocks * block_size * <int64_t>sizeof(float) // CHUNK_MIN_BYTES
    if n_blocks <= 0:
        return 0
    # Fewer chunks than pool threads also caps the threads that take part (one
    # chunk each); with all of them allowed, several per thread for balance.
    if nthreads < limit:
        s.nchunks = nthreads
    else:
        s.nchunks = limit * CHUNKS_PER_THREAD
    if s.nchunks > by_size:
        s.nchunks = by_size
    if s.nchunks <= 1 or pool == NULL:
        fn(ctx, 0, n_blocks)
        return 0
    s.fn = fn
    s.ctx = ctx
    s.n_blocks = n_blocks
    return parallel_for_status(pool, s.nchunks, 1, run_chunks, &s)


cdef bint worth_splitting(int64_t n_blocks, int64_t block_size, int nthreads) noexcept nogil:
    return nthreads > 1 and n_blocks * block_size * <int64_t>sizeof(float) >= SPLIT_MIN_BYTES


cdef void split_blocks(block_range_fn fn, void *ctx, int64_t n_blocks, int64_t block_size,
                       int nthreads) noexcept nogil:
    cdef void *ref = NULL
    cdef zl_pool *pool = NULL
    if worth_splitting(n_blocks, block_size, nthreads):
        pool = acquire_pool(&ref)
    if split_blocks_on(pool, fn, ctx, n_blocks, block_size, nthreads) != 0:
        # The pool failed before or while sharing out the chunks (shut down,
        # out of memory): a range function only writes its own output, so
        # running every range here gives the same result.
        fn(ctx, 0, n_blocks)
    release_pool(ref)


ctypedef struct dequantize_ctx:
    zl_dequantize_fn kernel
    const uint8_t *src
    float *dst
    int64_t block_size
    int64_t type_size
    int streaming
    int faulted     # set (only ever to 1, by any thread) when a chunk took a SIGBUS


cdef int _touch(object arr) except -2:
    """Every page of a C-contiguous array read once under the SIGBUS guard: 0, or -1
    if part of it is past the end of its file."""
    cdef const uint8_t[::1] raw = arr.reshape(-1).view(np.uint8)
    return fault_touch(&raw[0], raw.shape[0])


ctypedef struct dequantize_chunk:
    dequantize_ctx *c
    int64_t first
    int64_t count


cdef int dequantize_chunk_fn(void *arg) noexcept nogil:
    cdef dequantize_chunk *k = <dequantize_chunk *>arg
    cdef dequantize_ctx *c = k.c
    zl_dequantize_blocks(c.kernel, c.src + k.first * c.type_size, c.dst + k.first * c.block_size, k.count,
                         c.block_size, c.type_size, c.streaming)
    return 0


cdef void dequantize_range(void *ctx, int64_t first, int64_t count) noexcept nogil:
    # Under the SIGBUS guard, in whichever thread runs the chunk: the source is often
    # a file's map, and a file that shrank since must be an error, not a dead process.
    # (One sigsetjmp per chunk of 64 KiB or more of output.)
    cdef dequantize_chunk k
    k.c = <dequantize_ctx *>ctx
    k.first = first
    k.count = count
    if fault_guarded_call(dequantize_chunk_fn, &k, -1) != 0:
        k.c.faulted = 1


cdef const zl_quant_type *quant_type(int type_id) noexcept nogil:
    return zl_quant_type_find(type_id)


cdef int dequantize_into_on(zl_pool *pool, int type_id, const uint8_t *src, float *dst,
                            int64_t n_elements, int nthreads) noexcept nogil:
    cdef const zl_quant_type *t = zl_quant_type_find(type_id)
    cdef dequantize_ctx ctx
    if t == NULL or t.dequantize == NULL:
        return ZL_QUANT_EUNKNOWN_TYPE
    if n_elements < 0 or n_elements % t.block_size != 0:
        return ZL_QUANT_EPARTIAL_BLOCK
    ctx.kernel = t.dequantize
    ctx.src = src
    ctx.dst = dst
    ctx.block_size = t.block_size
    ctx.type_size = t.type_size
    ctx.streaming = n_elements * <int64_t>sizeof(float) >= STREAMING_MIN_BYTES
    ctx.faulted = 0
    cdef int status = split_blocks_on(pool, dequantize_range, &ctx, n_elements // t.block_size, t.block_size,
                                      nthreads)
    if status == 0 and ctx.faulted:
        return ZL_QUANT_ESOURCE_GONE
    return status


cdef int raise_quant_status(int status, int type_id, int64_t n_elements) except -1 with gil:
    cdef const zl_quant_type *t = zl_quant_type_find(type_id)
    name = t.name.decode() if t != NULL else f"ggml type {type_id}"
    if status == ZL_QUANT_EUNKNOWN_TYPE:
        raise QuantizationError(f"{name}: no such ggml type, or no dequantization kernel for it")
    if status == ZL_QUANT_EPARTIAL_BLOCK:
        raise QuantizationError(f"{name}: {n_elements} elements are not a whole number of "
                                f"blocks of {t.block_size if t != NULL else '?'}")
    if status == ZL_QUANT_ESOURCE_GONE:
        raise MappingError(errno.EFAULT, "the data being decoded is past the end of its file now "
                           "(SIGBUS): the file behind the map shrank")
    check_pool_status(status)  # the pool's own failures: ThreadPoolError / OutOfMemory
    raise QuantizationError(f"{name}: dequantizing {n_elements} elements failed with status {status}")


cdef int check_quant_status(int status, int type_id, int64_t n_elements) except -1 nogil:
    if status == ZL_QUANT_OK:
        return 0
    return raise_quant_status(status, type_id, n_elements)


cdef int dequantize_into(int type_id, const uint8_t *src, float *dst, int64_t n_elements,
                         int nthreads) noexcept nogil:
    cdef void *ref = NULL
    cdef zl_pool *pool = NULL
    cdef const zl_quant_type *t = zl_quant_type_find(type_id)
    cdef int status
    if t != NULL and worth_splitting(n_elements // t.block_size, t.block_size, nthreads):
        pool = acquire_pool(&ref)
    status = dequantize_into_on(pool, type_id, src, dst, n_elements, nthreads)
    release_pool(ref)
    return status


ctypedef struct quantize_ctx:
    const zl_quantizer *q
    const float *src
    uint8_t *dst
    int64_t blocks_per_row
    const float *imatrix
    int64_t first_bad  # the lowest overflowed block any range found, or -1


cdef void quantize_range(void *ctx, int64_t first, int64_t count) noexcept nogil:
    cdef quantize_ctx *c = <quantize_ctx *>ctx
    cdef int64_t bad = zl_quantize_blocks(c.q, c.src, c.dst, first, count, c.blocks_per_row, c.imatrix)
    if bad >= 0:
        zl_quantize_note_overflow(&c.first_bad, bad)


cdef quantize_fn quantizer_for(int type_id) noexcept nogil:
    cdef const zl_quantizer *q = zl_quantizer_find(type_id)
    return q.run if q != NULL else NULL


def _type_table():
    cdef int count = 0
    cdef const zl_quant_type *types = zl_quant_types(&count)
    cdef int i
    return {
        types[i].type_id: (types[i].name.decode("ascii"), types[i].block_size, types[i].type_size,
                           types[i].dequantize != NULL)
        for i in range(count)
    }


# id -> (name, block size, bytes per block, has a kernel)
_TYPES = _type_table()
_IDS = {name: type_id for type_id, (name, _, _, _) in _TYPES.items()}

#: ggml type id -> (elements per block, bytes per block), like gguf's table
#: (keys are plain ints, so gguf.GGMLQuantizationType members work as keys too).
GGML_QUANT_SIZES = {type_id: (block, size) for type_id, (_, block, size, _) in _TYPES.items()}

#: Types ``quantize`` can produce.
QUANTIZE_TYPES = tuple(name for type_id, (name, _, _, _) in sorted(_TYPES.items())
                       if quantizer_for(type_id) != NULL)

#: Types whose quantizers use an importance matrix (``quantize(..., imatrix=)``).
IMATRIX_TYPES = tuple(name for type_id, (name, _, _, _) in sorted(_TYPES.items())
                      if zl_quantizer_find(type_id) != NULL and zl_quantizer_find(type_id).takes_imatrix)


def ggml_type_id(ggml_type):
    """The ggml type id of ``ggml_type``: an id, a ``GGMLQuantizationType`` or a
    name such as ``"Q4_K"``. Raises QuantizationError for an unknown type."""
    if isinstance(ggml_type, str):
        type_id = _IDS.get(ggml_type.upper())
        if type_id is None:
            raise QuantizationError(f"unknown ggml type name {ggml_type!r}")
        return type_id
    try:
        type_id = operator.index(ggml_type)
    except TypeError:
        raise QuantizationError(
            f"ggml type must be an int id or a name, got {type(ggml_type).__name__}") from None
    if type_id not in _TYPES:
        raise QuantizationError(f"unknown ggml type id {type_id}")
    return type_id


def ggml_type_name(ggml_type):
    """The ggml name of a type (``"Q4_K"``)."""
    return _TYPES[ggml_type_id(ggml_type)][0]


def has_kernel(ggml_type):
    """True when a dequantization kernel for this type is linked in."""
    return _TYPES[ggml_type_id(ggml_type)][3]


def simd_active():
    """True when the kernels take SIMD paths (AVX2/F16C or AVX-512;
    ZIGLLAMA_SIMD=portable or ZIGLLAMA_DISABLE_SIMD=1 at start-up forces the portable ones)."""
    return bool(zl_quants_simd_active())


def simd_path():
    """The kernels' path: "avx512", "avx2" or "portable" (see zigllama._core.platform)."""
    return zl_simd_name().decode("ascii")


def dequantize(raw, ggml_type, shape, out=None, threads=None):
    """Dequantize GGML data to float32.

    raw        bytes-like object or C-contiguous array holding whole blocks
               (read in place, never copied)
    ggml_type  ggml type id, ``GGMLQuantizationType`` or name (``"Q4_K"``)
    shape      the tensor's shape in numpy order; the last axis is the row,
               a multiple of the type's block size
    out        optional float32 C-contiguous numpy array or Tensor of the same
               size to fill (for example memory already paged in); returned as is
    threads    threads to use; default ``zigllama.num_threads()``

    Returns a new float32 ``zigllama.Tensor`` of ``shape`` (``np.asarray`` of it
    shares its memory), or ``out``. Raises QuantizationError
    for an unknown type, a row length that is not a whole number of blocks, a
    byte count that does not match the shape, or an unsuitable ``out``.
    """
    cdef int type_id = ggml_type_id(ggml_type)
    cdef int64_t block_size, type_size
    name, block_size, type_size, kernel = _TYPES[type_id]
    dims = as_shape(shape)
    buf = as_byte_buffer(raw)
    if not kernel:
        raise QuantizationError(f"no kernel for {name}")
    row = dims[len(dims) - 1]
    if row % block_size:
        raise QuantizationError(
            f"row length {row} is not a multiple of the {name} block size {block_size}")
    n = 1  # a Python int: a product of absurd dimensions must not wrap
    for d in dims:
        n *= d
    if buf.size % type_size:
        raise QuantizationError(
            f"{buf.size} bytes is not a whole number of {name} blocks ({type_size} bytes each)")
    expected = n // block_size * type_size
    if buf.size != expected:
        raise QuantizationError(
            f"shape {dims} of {name} needs {expected} bytes ({n // block_size} blocks), got {buf.size}")
    cdef int nthreads = resolve_threads(threads)
    if out is None:
        result = Tensor.empty(dims, "float32")
        target = np.asarray(result)
    else:
        target = check_out(out, dims, n)
        if np.may_share_memory(target, buf):
            raise QuantizationError("out overlaps the raw data")
        result = out
    if n == 0:
        return result
    cdef const uint8_t[::1] src = buf
    cdef float[::1] dst = target.reshape(-1)
    cdef int64_t count = n
    cdef int status
    # A call too small to split needs no pool (and creates none); `owner` keeps
    # the pool alive through the call.
    owner = default_pool() if worth_splitting(count // block_size, block_size, nthreads) else None
    cdef zl_pool *pool = pool_ptr(owner) if owner is not None else NULL
    with nogil:
        status = dequantize_into_on(pool, type_id, &src[0], &dst[0], count, nthreads)
    check_quant_status(status, type_id, count)
    return result


def quantize(array, ggml_type, threads=None, imatrix=None):
    """Quantize a float array to a GGML type, byte for byte as ggml's C does.

    Types: F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
    Q6_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4 (``QUANTIZE_TYPES``): the bytes
    of ggml's ``ggml_quantize_chunk`` (``quantize_row_*_ref`` without an
    importance matrix). The last axis is the row and must be a multiple of the
    block size. ``imatrix`` (one non-negative weight per column) is used as
    ggml uses it by the types whose quantizers take one (``IMATRIX_TYPES``:
    Q2_K..Q6_K, IQ4_NL, IQ4_XS) and refused by the others.

    Values must be finite, except for F16 and BF16, which convert NaN and inf as
    ggml does. A block whose scale the format cannot hold (a finite value the
    reference would turn into inf, NaN or a lost block) raises
    QuantizationError naming its row and block. Returns uint8 blocks of shape
    ``(*array.shape[:-1], row_bytes)``, as gguf does, ready for
    ``GGUFWriter.add_tensor(..., raw_dtype=type)``.
    """
    cdef int type_id = ggml_type_id(ggml_type)
    cdef int64_t block_size, type_size
    name, block_size, type_size, _ = _TYPES[type_id]
    cdef const zl_quantizer *q = zl_quantizer_find(type_id)
    if q == NULL:
        raise QuantizationError(f"cannot quantize to {name}; supported: {', '.join(QUANTIZE_TYPES)}")
    a = np.asarray(array)
    if a.dtype.kind not in "fiub":
        raise QuantizationError(f"cannot quantize an array of dtype {a.dtype}")
    if a.ndim == 0:
        raise QuantizationError("cannot quantize a 0-d array: the last axis is the row")
    a = np.ascontiguousarray(a, dtype=np.float32)
    lead, row = a.shape[:a.ndim - 1], a.shape[a.ndim - 1]
    if row % block_size:
        raise QuantizationError(
            f"row length {row} is not a multiple of the {name} block size {block_size}")
    if type_id != ZL_GGML_F16 and type_id != ZL_GGML_BF16:
        finite = np.isfinite(a)
        if not finite.all():
            bad = tuple(int(i) for i in np.unravel_index(int(np.argmin(finite)), a.shape))
            raise QuantizationError(f"cannot quantize non-finite value {a[bad]} at index {bad}")
    weights = None
    if imatrix is not None:
        if not q.takes_imatrix:
            raise QuantizationError(
                f"{name} takes no importance matrix (types that do: {', '.join(IMATRIX_TYPES)})")
        weights = as_imatrix(imatrix, row, name)
    result = np.empty((*lead, row // block_size * type_size), dtype=np.uint8)
    cdef int nthreads = resolve_threads(threads)
    if a.size == 0:
        return result
    cdef const float[::1] src = a.reshape(-1)
    cdef uint8_t[::1] dst = result.reshape(-1)
    cdef const float[::1] w
    cdef quantize_ctx ctx
    ctx.q = q
    ctx.src = &src[0]
    ctx.dst = &dst[0]
    ctx.blocks_per_row = row // block_size
    ctx.imatrix = NULL
    ctx.first_bad = -1
    if weights is not None:
        w = weights
        ctx.imatrix = &w[0]
    cdef int64_t n_blocks = src.shape[0] // block_size
    # Work is counted in output-float equivalents: the K-quant searches cost far
    # more per value than a dequantization, so even small calls are split.
    owner = default_pool() if worth_splitting(n_blocks * 16, block_size, nthreads) else None
    cdef zl_pool *pool = pool_ptr(owner) if owner is not None else NULL
    cdef int status
    with nogil:
        status = split_blocks_on(pool, quantize_range, &ctx, n_blocks, block_size * 16, nthreads)
    check_pool_status(status)
    if ctx.first_bad >= 0:
        r, b = divmod(ctx.first_bad, ctx.blocks_per_row)
        index = np.unravel_index(r, lead) if lead else ()
        where = f"row {tuple(int(i) for i in index)}" if len(lead) != 1 else f"row {int(index[0])}"
        if not lead:
            where = "the row"
        block = a.reshape(-1, row)[r, b * block_size:(b + 1) * block_size]
        unit = "value" if block_size == 1 else "block"
        raise QuantizationError(
            f"{name} cannot hold {where}, {unit} {b} (columns {b * block_size}..{(b + 1) * block_size - 1}): "
            f"its largest magnitude {float(np.abs(block.astype(np.float64)).max()):.6g} overflows the format's scale")
    return result


def dequantize_tensor(source, name, out=None, threads=None):
    """A tensor of a GGUF file as float32, by name.

    ``source`` is a ``GGUFReader`` or ``GGUFModelLoader`` (anything with
    ``tensor_info(name)`` and ``tensor(name)``). The tensor's bytes are read in
    place from the file's map; ``out`` and ``threads`` are as for ``dequantize``.
    Big-endian files store plain multi-byte types swapped (block formats are
    stored as written), so those are converted by numpy. Returns a float32
    Tensor of the tensor's shape (numpy order), or ``out``.
    """
    info = source.tensor_info(name)
    data = np.asarray(source.tensor(name))  # a Tensor for plain types, numpy otherwise
    type_id = int(info.ggml_type)
    shape = info.shape or (1,)  # a 0-d tensor (no dimensions: one element) loads as shape (1,)
    if info.n_elements == 0:
        # a Tensor has no empty shape: an empty tensor loads as an empty numpy array
        if out is None:
            return np.empty(shape, np.float32)
        check_out(out, shape, 0)
        return out
    if data.dtype.byteorder != ">":
        try:
            return dequantize(data, type_id, shape, out=out, threads=threads)
        except MappingError as exc:
            if exc.errno != errno.EFAULT:
                raise
            raise GGUFFileChanged(f"{getattr(source, 'path', None) or 'GGUF data'}: tensor {name!r} "
                                  f"(bytes {info.data_offset}..{info.data_offset + info.nbytes}) is past "
                                  f"the end of the file now (SIGBUS): the file shrank after it was "
                                  f"opened") from None
    if data.size and _touch(data) != 0:
        raise GGUFFileChanged(f"{getattr(source, 'path', None) or 'GGUF data'}: tensor {name!r} is past "
                              f"the end of the file now (SIGBUS): the file shrank after it was opened")
    if type_id == ZL_GGML_BF16:  # bit patterns, byte-swapped
        converted = (data.astype(np.uint32) << 16).view(np.float32)
    else:
        converted = data.astype(np.float32)
    converted = converted.reshape(shape)
    if out is None:
        return Tensor.from_numpy(converted)
    np.copyto(check_out(out, shape, converted.size).reshape(shape), converted)
    return out
