/* TQ1_0 and TQ2_0: ternary weights {-1, 0, 1} times an f16 scale, super-blocks of 256.
 *
 * TQ2_0 packs each weight in 2 bits. TQ1_0 packs 5 weights in one byte as a
 * fixed-point base-3 fraction q = ceil(256 * v / 243), v = sum(t_i 3^(4-i)): the
 * digit i is read back by multiplying by 3^i modulo 256 (shifting the fraction)
 * and taking the integer part of 3 * q / 256.
 */
#include "iq_impl.h"

/* TQ1_0, 54 bytes: 48 bytes of 5 digits (32 bytes x 5, then 16 bytes x 5) |
 * 4 bytes of 4 digits | f16 d. Digit j of byte m of a run of `width` bytes is
 * weight width * j + m of that run. */
#define TQ1_0_BYTES 54

/* TQ2_0, 66 bytes: 2 runs of 32 bytes, bits 2l..2l+1 of byte m of run r holding
 * weight 128 r + 32 l + m | f16 d. */
#define TQ2_0_BYTES 66

static const uint8_t tq1_pow3[5] = {1, 3, 9, 27, 81};

static inline int tq1_digit(uint8_t byte, int j) {
    const uint8_t q = (uint8_t)(byte * tq1_pow3[j]);
    return ((q * 3) >> 8) - 1;
}

static void tq1_0_portable(const uint8_t *src, float *y, int64_t nb) {
    static const int runs[3][3] = {{0, 32, 5}, {32, 16, 5}, {48, 4, 4}}; /* offset, width, digits */
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * TQ1_0_BYTES;
        const float d = zl_load_f16(b + 52);
        for (int r = 0; r < 3; r++) {
            const uint8_t *qs = b + runs[r][0];
            const int width = runs[r][1];
            for (int j = 0; j < runs[r][2]; j++, y += width)
                for (int m = 0; m < width; m++) y[m] = d * (float)tq1_digit(qs[m], j);
        }
    }
}

static void tq2_0_portable(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * TQ2_0_BYTES;
        const float d = zl_load_f16(b + 64);
        for (int r = 0; r < 2; r++)
            for (int l = 0; l < 4; l++, y += 32)
                for (int m = 0; m < 32; m++) y[m] = d * (float)(((b[32 * r + m] >> (2 * l)) & 3) - 1);
    }
}

#if ZL_X86

/* 16 u16 lanes of bytes -> their digit at power `pow3` (1, 3, 9, 27, 81) as a
 * digit - 1 in int16, then 16 outputs. */
ZL_TARGET_AVX2 static inline void tq1_store16(float *y, __m256 d, __m256i bytes16, __m256i pow3) {
    const __m256i low8 = _mm256_set1_epi16(0xFF);
    __m256i q = _mm256_and_si256(_mm256_mullo_epi16(bytes16, pow3), low8);
    __m256i t = _mm256_sub_epi16(_mm256_srli_epi16(_mm256_mullo_epi16(q, _mm256_set1_epi16(3)), 8),
                                 _mm256_set1_epi16(1));
    __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(t)));
    __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(t, 1)));
    _mm256_storeu_ps(y, _mm256_mul_ps(d, lo));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, hi));
}

ZL_TARGET_AVX2 static void tq1_0_avx2(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * TQ1_0_BYTES;
        const __m256 d = _mm256_set1_ps(iq_load_f16_f16c(b + 52));
        const __m256i a0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b));
        const __m256i a1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + 16)));
        const __m256i a2 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + 32)));
        for (int j = 0; j < 5; j++) {
            const __m256i p = _mm256_set1_epi16(tq1_pow3[j]);
            tq1_store16(y + 32 * j, d, a0, p);
            tq1_store16(y + 32 * j + 16, d, a1, p);
            tq1_store16(y + 160 + 16 * j, d, a2, p);
        }
        /* The last 16 weights: byte m of 4, digit j at 4 j + m. */
        const uint32_t h = zl_load_u32(b + 48);
        const __m256i hb = _mm256_cvtepu8_epi16(_mm_set1_epi32((int)h));
        tq1_store16(y + 240, d, hb, _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27));
        y += QK_K;
    }
}

ZL_TARGET_AVX2 static void tq2_0_avx2(const uint8_t *src, float *y, int64_t nb) {
    const __m128i two_bits = _mm_set1_epi8(3), one = _mm_set1_epi8(1);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * TQ2_0_BYTES;
        const __m256 d = _mm256_set1_ps(iq_load_f16_f16c(b + 64));
        for (int r = 0; r < 2; r++) {
            const __m128i x0 = _mm_loadu_si128((const __m128i *)(b + 32 * r));
            const __m128i x1 = _mm_loadu_si128((const __m128i *)(b + 32 * r + 16));
            for (int l = 0; l < 4; l++, y += 32) {
                const __m128i t0 = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(x0, 2 * l), two_bits), one);
                const __m128i t1 = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(x1, 2 * l), two_bits), one);
                zl_store16_mul(y, t0, d);
                zl_store16_mul(y + 16, t1, d);
            }
        }
    }
}

#endif

IQ_DISPATCH(tq1_0, QK_K)
IQ_DISPATCH(tq2_0, QK_K)
