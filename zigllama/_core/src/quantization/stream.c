/* Dequantizing large tensors: decode into a small buffer that stays in L1,
 * then write it out with non-temporal stores.
 *
 * An ordinary store to memory that is not in cache first reads the line in
 * (read for ownership), so writing a large float32 tensor moves twice its size
 * over the memory bus and evicts everything else from the caches. Streaming
 * stores write whole lines without reading them. This wraps any kernel, so
 * every type gets it; results are the kernel's, bit for bit.
 */
#include "zl_quants_impl.h"

/* Floats decoded per round: 16 KB, a multiple of every block size (<= 256). */
#define STREAM_CHUNK 4096

#if ZL_X86
/* dst[0..n) = buf[0..n), streaming where dst is 32-byte aligned. */
ZL_TARGET_AVX2 static void stream_copy(float *dst, const float *buf, int64_t n) {
    int64_t i = 0;
    while (i < n && ((uintptr_t)(dst + i) & 31u) != 0) {
        dst[i] = buf[i];
        i++;
    }
    for (; i + 32 <= n; i += 32) {
        _mm256_stream_ps(dst + i, _mm256_loadu_ps(buf + i));
        _mm256_stream_ps(dst + i + 8, _mm256_loadu_ps(buf + i + 8));
        _mm256_stream_ps(dst + i + 16, _mm256_loadu_ps(buf + i + 16));
        _mm256_stream_ps(dst + i + 24, _mm256_loadu_ps(buf + i + 24));
    }
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(buf + i));
    for (; i < n; i++) dst[i] = buf[i];
}

ZL_TARGET_AVX2 static void dequantize_streaming(zl_dequantize_fn kernel, const uint8_t *src, float *dst,
                                                int64_t n_blocks, int64_t block_size, int64_t type_size) {
    float buf[STREAM_CHUNK] __attribute__((aligned(64)));
    const int64_t per_round = STREAM_CHUNK / block_size;
    for (int64_t b = 0; b < n_blocks; b += per_round) {
        const int64_t count = n_blocks - b < per_round ? n_blocks - b : per_round;
        kernel(src + b * type_size, buf, count * block_size);
        stream_copy(dst + b * block_size, buf, count * block_size);
    }
    _mm_sfence(); /* streaming stores are weakly ordered: publish them */
}
#endif

void zl_dequantize_blocks(zl_dequantize_fn kernel, const uint8_t *src, float *dst, int64_t n_blocks,
                          int64_t block_size, int64_t type_size, int streaming) {
#if ZL_X86
    if (streaming && block_size <= STREAM_CHUNK && zl_cpu_has_avx2()) {
        dequantize_streaming(kernel, src, dst, n_blocks, block_size, type_size);
        return;
    }
#endif
    (void)streaming;
    (void)type_size;
    kernel(src, dst, n_blocks * block_size);
}
