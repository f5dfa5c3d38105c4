/* Helpers of the IQ, TQ and MXFP4 kernels (iq1.c, iq2.c, iq3.c, iq4.c, tq.c).
 *
 * Every helper has a portable form and an AVX2 form computing the same float
 * operations in the same order, so both paths give the reference's bits:
 *   y = scale * (float)level                       (IQ2, IQ3, IQ4, TQ, MXFP4)
 *   y = -y where the element's sign bit is set     (IQ2, IQ3: xor of the sign bit,
 *                                                   the same as the reference's *-1)
 *   y = scale * ((float)level + delta)             (IQ1)
 */
#ifndef ZIGLLAMA_IQ_IMPL_H
#define ZIGLLAMA_IQ_IMPL_H

#include "iq_grids.h"
#include "zl_quants_impl.h"

/* v with its sign flipped when `flip` is 1: the reference's v * -1, without a
 * branch on random sign bits. */
static inline float iq_flip_sign(float v, uint32_t flip) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    bits ^= flip << 31;
    memcpy(&v, &bits, 4);
    return v;
}

/* 8 outputs: scale * grid magnitude, negated where bit j of `signs` is set. */
static inline void iq_signed8(float *y, float scale, const uint8_t *grid, uint32_t signs) {
    for (int j = 0; j < 8; j++) y[j] = iq_flip_sign(scale * (float)grid[j], (signs >> j) & 1);
}

/* The same over two 4-element grid points (IQ3 formats). */
static inline void iq_signed4x2(float *y, float scale, const uint8_t *g0, const uint8_t *g1,
                                uint32_t signs) {
    for (int j = 0; j < 4; j++) {
        y[j] = iq_flip_sign(scale * (float)g0[j], (signs >> j) & 1);
        y[j + 4] = iq_flip_sign(scale * (float)g1[j], (signs >> (j + 4)) & 1);
    }
}

/* 8 IQ1 outputs: scale * (grid value + delta). */
static inline void iq_shifted8(float *y, float scale, const int8_t *grid, float delta) {
    for (int j = 0; j < 8; j++) y[j] = scale * ((float)grid[j] + delta);
}

/* 32 outputs of a 4-bit code book: low nibbles first, then high nibbles. */
static inline void iq_codebook32(float *y, float scale, const uint8_t *qs, const int8_t *book) {
    for (int j = 0; j < 16; j++) {
        y[j] = scale * (float)book[qs[j] & 0x0F];
        y[j + 16] = scale * (float)book[qs[j] >> 4];
    }
}

/* Their types, for the walks that take one. */
typedef void (*iq_signed8_fn)(float *y, float scale, const uint8_t *grid, uint32_t signs);
typedef void (*iq_signed4x2_fn)(float *y, float scale, const uint8_t *g0, const uint8_t *g1, uint32_t signs);
typedef void (*iq_shifted8_fn)(float *y, float scale, const int8_t *grid, float delta);
typedef void (*iq_codebook32_fn)(float *y, float scale, const uint8_t *qs, const int8_t *book);

#if ZL_X86
/* The AVX2 twins of the helpers above: same arguments, same float operations. */

ZL_TARGET_AVX2 static inline float iq_load_f16_f16c(const uint8_t *p) {
    return _cvtsh_ss(zl_load_u16(p));
}

/* 8 outputs from 8 unsigned grid bytes: scale * g, sign bit j flipped where bit j
 * of `signs` is set. */
ZL_TARGET_AVX2 static inline void iq_store_signed8(float *y, float scale, __m128i grid8, uint32_t signs) {
    const __m256i to_top = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
    const __m256i sign = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32((int)signs), to_top),
                                          _mm256_set1_epi32((int)0x80000000u));
    const __m256 g = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(grid8));
    _mm256_storeu_ps(y, _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(scale), g), _mm256_castsi256_ps(sign)));
}

ZL_TARGET_AVX2 static inline void iq_signed8_avx2(float *y, float scale, const uint8_t *grid, uint32_t signs) {
    iq_store_signed8(y, scale, _mm_loadl_epi64((const __m128i *)grid), signs);
}

ZL_TARGET_AVX2 static inline void iq_signed4x2_avx2(float *y, float scale, const uint8_t *g0, const uint8_t *g1,
                                                    uint32_t signs) {
    const __m128i g = _mm_insert_epi32(_mm_cvtsi32_si128((int)zl_load_u32(g0)), (int)zl_load_u32(g1), 1);
    iq_store_signed8(y, scale, g, signs);
}

ZL_TARGET_AVX2 static inline void iq_shifted8_avx2(float *y, float scale, const int8_t *grid, float delta) {
    const __m256 g = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)grid)));
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_set1_ps(scale), _mm256_add_ps(g, _mm256_set1_ps(delta))));
}

ZL_TARGET_AVX2 static inline void iq_codebook32_avx2(float *y, float scale, const uint8_t *qs, const int8_t *book) {
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m128i levels = _mm_load_si128((const __m128i *)book);
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256 vscale = _mm256_set1_ps(scale);
    zl_store16_mul(y, _mm_shuffle_epi8(levels, _mm_and_si128(q, low4)), vscale);
    zl_store16_mul(y + 16, _mm_shuffle_epi8(levels, _mm_and_si128(_mm_srli_epi16(q, 4), low4)), vscale);
}

#endif /* ZL_X86 */

/* A format's walk over its blocks, `name##_rows(src, y, nb, out)`, is written once
 * and takes the helper that writes the outputs; forced inline into the portable and
 * the AVX2 kernel, the helper becomes a direct, inlined call in each. */
#define IQ_ALWAYS_INLINE inline __attribute__((always_inline))

/* The portable and AVX2 kernels of a format from its walk and its helper `out`
 * (the AVX2 one is out##_avx2), and the public kernel choosing between them. */
#if ZL_X86
#define IQ_KERNELS(name, block_size, out) \
    static void name##_portable(const uint8_t *src, float *y, int64_t nb) { name##_rows(src, y, nb, out); } \
    ZL_TARGET_AVX2 static void name##_avx2(const uint8_t *src, float *y, int64_t nb) { \
        name##_rows(src, y, nb, out##_avx2); \
    } \
    IQ_DISPATCH(name, block_size)
#else
#define IQ_KERNELS(name, block_size, out) \
    static void name##_portable(const uint8_t *src, float *y, int64_t nb) { name##_rows(src, y, nb, out); } \
    IQ_DISPATCH(name, block_size)
#endif

/* The public kernel: AVX2 path when the CPU has it (and it is not disabled).
 * Without x86 the AVX2 variant is never declared, so ZL_PICK drops its call. */
#define IQ_DISPATCH(name, block_size) \
    ZL_DEQUANTIZE_DECL(name) { \
        ZL_PICK(name##_avx2(src, dst, n / (block_size)), name##_portable(src, dst, n / (block_size))); \
    }

#endif
