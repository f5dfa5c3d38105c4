# Dequantization kernels for every GGML block format, for Cython callers.
#
# The kernels are C functions inside this extension module; another extension
# cannot link to them by name (Python loads extension modules privately), so
# it gets them from these cdef functions, exported through the module's C API:
#   quant_type(type_id)    the table entry: name, block size, bytes per block,
#                          and the kernel (nogil, over whole blocks)
#   dequantize_into(...)   lookup, checks and the split over the thread pool
#   quantizer_for(type_id) the quantizer of a type, if there is one

from libc.stdint cimport int64_t, uint8_t

from .threading cimport zl_pool

cdef extern from "zigllama/zl_quants.h" nogil:
    # One kernel: n / block_size whole blocks at src -> n float32 values at dst.
    ctypedef void (*zl_dequantize_fn)(const uint8_t *src, float *dst, int64_t n) noexcept nogil

    ctypedef enum zl_quant_status:
        ZL_QUANT_OK
        ZL_QUANT_EUNKNOWN_TYPE
        ZL_QUANT_EPARTIAL_BLOCK
        ZL_QUANT_ESOURCE_GONE

    ctypedef struct zl_quant_type:
        int type_id
        const char *name
        int64_t block_size
        int64_t type_size
        zl_dequantize_fn dequantize

# Work on blocks [first, first + count) of one call.
ctypedef void (*block_range_fn)(void *ctx, int64_t first, int64_t count) noexcept nogil

# Split n_blocks blocks (block_size elements each) into contiguous ranges and
# call fn on each, on up to nthreads threads of the pool: the row split, the one
# place that decides how work is divided. Chunks hold at least 64 KiB of float32
# output; nthreads <= 1 or a small call runs fn once on the caller, with no pool.
# Returns 0 or the pool's failure (ZL_POOL_E*, for check_pool_status). pool NULL
# runs on the caller. Safe inside a pool task (parallel_for nests).
cdef int split_blocks_on(zl_pool *pool, block_range_fn fn, void *ctx, int64_t n_blocks,
                         int64_t block_size, int nthreads) noexcept nogil

# split_blocks_on on the pool at hand: inside a pool's task, that pool (found
# without the GIL); elsewhere the default pool (zigllama.default_pool()), which
# a call big enough to split looks up holding the GIL briefly. Code that has a
# zl_pool * (threading's pool_ptr) and never wants the GIL uses the _on form.
# A pool failure is not reported: fn then runs over all the blocks on the caller.
cdef void split_blocks(block_range_fn fn, void *ctx, int64_t n_blocks, int64_t block_size,
                       int nthreads) noexcept nogil

# The table entry of a ggml type id (its kernel may be NULL), or NULL if unknown.
cdef const zl_quant_type *quant_type(int type_id) noexcept nogil

# A quantizer's run (zl_quantize_run_fn): nb blocks of one row, qw NULL or the
# importance weights of its first column; -1, or the first overflowed block.
ctypedef int64_t (*quantize_fn)(const float *src, uint8_t *dst, int64_t nb, const float *qw) noexcept nogil

# The quantizer of a ggml type id, or NULL when zigllama cannot quantize to it.
cdef quantize_fn quantizer_for(int type_id) noexcept nogil

# n_elements values of ggml type `type_id` from src into dst on up to nthreads
# threads of the pool at hand (found as for split_blocks). Returns a zl_quant_status:
# ZL_QUANT_OK, ZL_QUANT_EUNKNOWN_TYPE (unknown type or missing kernel) and
# ZL_QUANT_EPARTIAL_BLOCK (a count that is not a whole number of blocks) with
# nothing written, ZL_QUANT_ESOURCE_GONE when reading src took a SIGBUS (a mapped
# file shrank: the output is partly written), or a pool failure (ZL_POOL_E*).
cdef enum:
    DEQUANTIZE_SOURCE_GONE = -3   # the old name of ZL_QUANT_ESOURCE_GONE

cdef int dequantize_into(int type_id, const uint8_t *src, float *dst, int64_t n_elements,
                         int nthreads) noexcept nogil

# dequantize_into on a given pool (NULL: on the caller), without the GIL at all.
cdef int dequantize_into_on(zl_pool *pool, int type_id, const uint8_t *src, float *dst,
                            int64_t n_elements, int nthreads) noexcept nogil

# The module's one checked wrapper: 0 for ZL_QUANT_OK, else takes the GIL and raises
# QuantizationError (unknown type, partial block: naming the type and the count),
# MappingError (source gone) or ThreadPoolError/OutOfMemory (the pool's codes).
cdef int check_quant_status(int status, int type_id, int64_t n_elements) except -1 nogil
