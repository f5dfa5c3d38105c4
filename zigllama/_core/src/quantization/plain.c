/* Plain element types to float32: F32 (copy), F16, BF16, F64 and the integers.
 *
 * The reference is numpy's astype(np.float32): exact for F16 (NaN payloads and
 * signalling NaNs kept), BF16 (a shift), I8 and I16; round to nearest even for
 * F64, I32 and I64, which is what the C casts do.
 */
#include "zl_quants_impl.h"

void zl_dequantize_row_f32(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_portable(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = zl_f16_to_f32(zl_load_u16(src + 2 * i));
}

static void bf16_portable(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = zl_bf16_to_f32(zl_load_u16(src + 2 * i));
}

/* A C cast per element, from unaligned little-endian values: how F64 and the
 * integers convert without SIMD (the I8, I16 and I32 loops vectorise at -O3). */
#define ZL_CAST_ROW(fn, ctype)                                                     \
    void fn(const uint8_t *restrict src, float *restrict dst, int64_t n) {        \
        for (int64_t i = 0; i < n; i++) {                                          \
            ctype v;                                                               \
            memcpy(&v, src + sizeof(ctype) * i, sizeof(ctype));                    \
            dst[i] = (float)v;                                                     \
        }                                                                          \
    }

static ZL_CAST_ROW(f64_portable, double)

#if ZL_X86
/* F16C converts exactly except that it quiets signalling NaNs; numpy keeps them.
 * Sixteen halves are checked at once and the rare signalling NaN is redone. */
ZL_TARGET_AVX2 static void f16_avx2(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    const __m256i exp_quiet = _mm256_set1_epi16(0x7e00);
    const __m256i snan_exp = _mm256_set1_epi16(0x7c00);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
        __m256i maybe_snan = _mm256_cmpeq_epi16(_mm256_and_si256(h, exp_quiet), snan_exp);
        if (__builtin_expect(!_mm256_testz_si256(maybe_snan, maybe_snan), 0)) {
            f16_portable(src + 2 * i, dst + i, 16);
        }
    }
    f16_portable(src + 2 * i, dst + i, n - i);
}

ZL_TARGET_AVX2 static void bf16_avx2(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + 2 * i));
        __m256i zero = _mm256_setzero_si256();
        /* Interleaving a zero below each half gives h << 16 per 32-bit lane;
         * unpack works within 128-bit lanes, so fix the order with a permute. */
        __m256i lo = _mm256_unpacklo_epi16(zero, h);
        __m256i hi = _mm256_unpackhi_epi16(zero, h);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(dst + i + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
    bf16_portable(src + 2 * i, dst + i, n - i);
}

ZL_TARGET_AVX2 static void f64_avx2(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128 a = _mm256_cvtpd_ps(_mm256_loadu_pd((const double *)(src + 8 * i)));
        __m128 b = _mm256_cvtpd_ps(_mm256_loadu_pd((const double *)(src + 8 * i + 32)));
        _mm256_storeu_ps(dst + i, _mm256_set_m128(b, a));
    }
    f64_portable(src + 8 * i, dst + i, n - i);
}
#endif

#if ZL_X86
/* As f16_avx2, 32 halves at a time. */
ZL_TARGET_AVX512 static void f16_avx512(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    const __m512i exp_quiet = _mm512_set1_epi16(0x7e00);
    const __m512i snan_exp = _mm512_set1_epi16(0x7c00);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512i h = _mm512_loadu_si512((const void *)(src + 2 * i));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm512_castsi512_si256(h)));
        _mm512_storeu_ps(dst + i + 16, _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)));
        if (__builtin_expect(_mm512_cmpeq_epi16_mask(_mm512_and_si512(h, exp_quiet), snan_exp) != 0, 0))
            f16_portable(src + 2 * i, dst + i, 32);
    }
    f16_portable(src + 2 * i, dst + i, n - i);
}

ZL_TARGET_AVX512 static void bf16_avx512(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(src + 2 * i));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(src + 2 * i + 32));
        _mm512_storeu_si512((void *)(dst + i), _mm512_slli_epi32(_mm512_cvtepu16_epi32(a), 16));
        _mm512_storeu_si512((void *)(dst + i + 16), _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
    }
    bf16_portable(src + 2 * i, dst + i, n - i);
}
#endif

void zl_dequantize_row_f16(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(f16_avx512(src, dst, n), f16_avx2(src, dst, n), f16_portable(src, dst, n));
}

void zl_dequantize_row_bf16(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(bf16_avx512(src, dst, n), bf16_avx2(src, dst, n), bf16_portable(src, dst, n));
}

void zl_dequantize_row_f64(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK(f64_avx2(src, dst, n), f64_portable(src, dst, n));
}

ZL_CAST_ROW(zl_dequantize_row_i8, int8_t)
ZL_CAST_ROW(zl_dequantize_row_i16, int16_t)
ZL_CAST_ROW(zl_dequantize_row_i32, int32_t)
static ZL_CAST_ROW(i64_portable, int64_t)

#if ZL_X86
/* AVX2 has no int64 -> float conversion, and going through double would round
 * twice. But a value that fits in int32 converts exactly as its low half does,
 * and integer tensors nearly always fit: eight at a time take that path when
 * all eight fit, the scalar cast otherwise. */
ZL_TARGET_AVX2 static void i64_avx2(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + 8 * i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + 8 * i + 32));
        /* A value fits in int32 when its high half (odd dword) equals the sign
         * of its low half (even dword), copied up by the shuffle. */
        __m256i a_sign = _mm256_shuffle_epi32(_mm256_srai_epi32(a, 31), _MM_SHUFFLE(2, 2, 0, 0));
        __m256i b_sign = _mm256_shuffle_epi32(_mm256_srai_epi32(b, 31), _MM_SHUFFLE(2, 2, 0, 0));
        __m256i same = _mm256_and_si256(_mm256_cmpeq_epi32(a, a_sign), _mm256_cmpeq_epi32(b, b_sign));
        if (((unsigned)_mm256_movemask_epi8(same) & 0xF0F0F0F0u) != 0xF0F0F0F0u) {
            i64_portable(src + 8 * i, dst + i, 8);
            continue;
        }
        __m128i lo_a = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(a, low_halves));
        __m128i lo_b = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(b, low_halves));
        _mm256_storeu_ps(dst + i, _mm256_cvtepi32_ps(_mm256_set_m128i(lo_b, lo_a)));
    }
    i64_portable(src + 8 * i, dst + i, n - i);
}
#endif

void zl_dequantize_row_i64(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK(i64_avx2(src, dst, n), i64_portable(src, dst, n));
}
