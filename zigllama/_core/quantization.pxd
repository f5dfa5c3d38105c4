# Dequantization kernels for every GGML block format (and the quantizers), for
# Cython callers. Each kernel turns n / block_size whole blocks into n float32
# values, without the GIL; `dequantize_into` adds the type lookup and the
# split across threads.

from libc.stdint cimport int64_t, uint8_t, uint16_t

cdef extern from "zigllama/zl_quants.h" nogil:
    ctypedef void (*zl_dequantize_fn)(const uint8_t *src, float *dst, int64_t n) noexcept nogil

    ctypedef struct zl_quant_type:
        int type_id
        const char *name
        int64_t block_size
        int64_t type_size
        zl_dequantize_fn dequantize

    const zl_quant_type *zl_quant_type_find(int type_id) noexcept
    const zl_quant_type *zl_quant_types(int *count) noexcept
    int zl_quants_simd_active() noexcept
    void zl_dequantize_blocks(zl_dequantize_fn kernel, const uint8_t *src, float *dst, int64_t n_blocks,
                              int64_t block_size, int64_t type_size, int streaming) noexcept
    float zl_f16_to_f32(uint16_t h) noexcept
    float zl_bf16_to_f32(uint16_t h) noexcept

    void zl_dequantize_row_f32(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_f16(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_bf16(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_f64(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_i8(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_i16(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_i32(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_i64(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q4_0(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q4_1(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q5_0(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q5_1(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q8_0(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q8_1(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q2_k(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q3_k(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q4_k(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q5_k(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q6_k(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q8_k(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_nvfp4(const uint8_t *src, float *dst, int64_t n) noexcept
    void zl_dequantize_row_q1_0(const uint8_t *src, float *dst, int64_t n) noexcept

    void zl_quantize_row_q4_0(const float *src, uint8_t *dst, int64_t n) noexcept
    void zl_quantize_row_q4_1(const float *src, uint8_t *dst, int64_t n) noexcept
    void zl_quantize_row_q5_0(const float *src, uint8_t *dst, int64_t n) noexcept
    void zl_quantize_row_q5_1(const float *src, uint8_t *dst, int64_t n) noexcept
    void zl_quantize_row_q8_0(const float *src, uint8_t *dst, int64_t n) noexcept
    void zl_quantize_row_q4_k(const float *src, uint8_t *dst, int64_t n) noexcept
    void zl_quantize_row_q6_k(const float *src, uint8_t *dst, int64_t n) noexcept

# Work on blocks [first, first + count) of one call.
ctypedef void (*block_range_fn)(void *ctx, int64_t first, int64_t count) noexcept nogil

# Split n_blocks blocks (block_size elements each) across up to nthreads threads
# and call fn on each contiguous range. Rows are whole blocks and contiguous, so
# this is the row split; the one place that decides how work is divided.
cdef void split_blocks(block_range_fn fn, void *ctx, int64_t n_blocks, int64_t block_size,
                       int nthreads) noexcept nogil

# n_elements values of ggml type `type_id` from src into dst with nthreads
# threads. Returns 0, or -1 for an unknown type or a missing kernel and -2 for
# a count that is not a whole number of blocks (nothing written).
cdef int dequantize_into(int type_id, const uint8_t *src, float *dst, int64_t n_elements,
                         int nthreads) noexcept nogil
