/* Helpers shared by the dequantization kernels of this directory (not public). */
#ifndef ZIGLLAMA_ZL_QUANTS_IMPL_H
#define ZIGLLAMA_ZL_QUANTS_IMPL_H

#include <stdint.h>
#include <string.h>

#include "zigllama/zl_cpu.h"
#include "zigllama/zl_quants.h"

#if ZL_X86
#include <immintrin.h>
#endif

#define QK_K 256

/* Run the AVX2 variant when the CPU has it (and SIMD is not disabled). */
#if ZL_X86
#define ZL_PICK(avx2_call, portable_call) \
    do { \
        if (zl_cpu_has_avx2()) avx2_call; \
        else portable_call; \
    } while (0)
#else
#define ZL_PICK(avx2_call, portable_call) portable_call
#endif

/* Run the widest variant the CPU has (and the environment allows). */
#if ZL_X86
#define ZL_PICK3(avx512_call, avx2_call, portable_call) \
    do { \
        if (zl_cpu_has_avx512()) avx512_call; \
        else if (zl_cpu_has_avx2()) avx2_call; \
        else portable_call; \
    } while (0)
#else
#define ZL_PICK3(avx512_call, avx2_call, portable_call) portable_call
#endif


/* The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (get_scale_min_k4). */
static inline void zl_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

#if ZL_X86
/* dst[0..16) = d * q for 16 signed bytes q (the reference's float product). */
ZL_TARGET_AVX2 static inline void zl_store16_mul(float *dst, __m128i q, __m256 d) {
    __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    _mm256_storeu_ps(dst, _mm256_mul_ps(d, a));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(d, b));
}

/* dst[0..16) = d * q + m: a rounded product, then a rounded sum (no FMA). */
ZL_TARGET_AVX2 static inline void zl_store16_mul_add(float *dst, __m128i q, __m256 d, __m256 m) {
    __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_mul_ps(d, a), m));
    _mm256_storeu_ps(dst + 8, _mm256_add_ps(_mm256_mul_ps(d, b), m));
}

/* dst[0..16) = d * q - m. */
ZL_TARGET_AVX2 static inline void zl_store16_mul_sub(float *dst, __m128i q, __m256 d, __m256 m) {
    __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    _mm256_storeu_ps(dst, _mm256_sub_ps(_mm256_mul_ps(d, a), m));
    _mm256_storeu_ps(dst + 8, _mm256_sub_ps(_mm256_mul_ps(d, b), m));
}

/* Byte j of the result is 0xFF where bit j of x is set, 0x00 elsewhere. */
ZL_TARGET_AVX2 static inline __m256i zl_bytes_from_bits32(uint32_t x) {
    const __m256i spread = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                              0x0202020202020202LL, 0x0303030303030303LL);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

/* 16 packed bytes -> 32 nibbles: low nibbles in bytes 0..15, high in 16..31. */
ZL_TARGET_AVX2 static inline __m256i zl_nibbles32(const uint8_t *p) {
    __m128i q = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/* ---- AVX-512 helpers ----
 * Most AVX-512 kernels decode through a table: a sub-block's every possible
 * output, v[q] = d * q (+ or - m), computed with the reference's own operations
 * on (float)q, is one or two zmm registers, and vpermps picks each output by the
 * low bits of its quant. Same bits as the reference, fewer operations than
 * converting and scaling every element. */

/* The f16 at p, as 16 equal floats (F16C is exact but for quieting a signalling
 * NaN, which any product the kernels form quiets anyway). */
ZL_TARGET_AVX512 static inline __m512 zl512_f16_set1(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_set1_epi16((short)zl_load_u16(p)));
}

/* 16 bytes zero-extended to 16 dwords: vpermps indices (only the low bits count). */
ZL_TARGET_AVX512 static inline __m512i zl512_idx(__m128i bytes) { return _mm512_cvtepu8_epi32(bytes); }

/* dst[0..16) = d * q for 16 signed bytes q. */
ZL_TARGET_AVX512 static inline void zl512_store16_mul(float *dst, __m128i q, __m512 d) {
    _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
}

/* The floats 0, 1, ..., 15 and 16, ..., 31. */
ZL_TARGET_AVX512 static inline __m512 zl512_iota(float first) {
    return _mm512_add_ps(_mm512_set1_ps(first),
                         _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}
#endif

#endif
