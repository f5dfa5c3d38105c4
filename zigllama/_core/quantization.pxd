# Dequantization kernels for every GGML block format, for Cython callers.
#
# The kernels are C functions inside this extension module; another extension
# cannot link to them by name (Python loads extension modules privately), so
# it gets them from these cdef functions, exported through the module's C API:
#   quant_type(type_id)    the table entry: name, block size, bytes per block,
#                          and the kernel (nogil, over whole blocks)
#   dequantize_into(...)   lookup, checks and the split across threads
#   quantizer_for(type_id) the quantizer of a type, if there is one

from libc.stdint cimport int64_t, uint8_t

cdef extern from "zigllama/zl_quants.h" nogil:
    # One kernel: n / block_size whole blocks at src -> n float32 values at dst.
    ctypedef void (*zl_dequantize_fn)(const uint8_t *src, float *dst, int64_t n) noexcept nogil

    ctypedef struct zl_quant_type:
        int type_id
        const char *name
        int64_t block_size
        int64_t type_size
        zl_dequantize_fn dequantize

# Work on blocks [first, first + count) of one call.
ctypedef void (*block_range_fn)(void *ctx, int64_t first, int64_t count) noexcept nogil

# Split n_blocks blocks (block_size elements each) across up to nthreads threads
# and call fn on each contiguous range. Rows are whole blocks and contiguous, so
# this is the row split; the one place that decides how work is divided.
cdef void split_blocks(block_range_fn fn, void *ctx, int64_t n_blocks, int64_t block_size,
                       int nthreads) noexcept nogil

# The table entry of a ggml type id (its kernel may be NULL), or NULL if unknown.
cdef const zl_quant_type *quant_type(int type_id) noexcept nogil

# A quantizer: n float32 values (whole blocks, finite) -> n / block_size blocks.
ctypedef void (*quantize_fn)(const float *src, uint8_t *dst, int64_t n) noexcept nogil

# The quantizer of a ggml type id, or NULL when zigllama cannot quantize to it.
cdef quantize_fn quantizer_for(int type_id) noexcept nogil

# n_elements values of ggml type `type_id` from src into dst with nthreads
# threads. Returns 0, or -1 for an unknown type or a missing kernel and -2 for
# a count that is not a whole number of blocks (nothing written).
cdef int dequantize_into(int type_id, const uint8_t *src, float *dst, int64_t n_elements,
                         int nthreads) noexcept nogil
