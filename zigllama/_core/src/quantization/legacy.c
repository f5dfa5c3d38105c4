/* The first block formats: blocks of 32 with one f16 scale (and a min for the
 * _1 variants); Q1_0's blocks of 128 sign bits.
 *
 * Order of operations as in gguf.quants (and ggml's dequantize_row_*):
 *   Q4_0, Q5_0, Q8_0, Q8_1  y = d * q
 *   Q4_1, Q5_1              y = (d * q) + m
 *   Q1_0                    y = bit ? d : -d
 */
#include "zl_quants_impl.h"

#define QK 32

/* ---- portable ---- */

static void q4_0_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += 18, dst += QK) {
        const float d = zl_load_f16(src);
        const uint8_t *qs = src + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)((qs[j] & 0x0F) - 8);
            dst[j + 16] = d * (float)((qs[j] >> 4) - 8);
        }
    }
}

static void q4_1_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += 20, dst += QK) {
        const float d = zl_load_f16(src);
        const float m = zl_load_f16(src + 2);
        const uint8_t *qs = src + 4;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)(qs[j] & 0x0F) + m;
            dst[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

static void q5_0_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += 22, dst += QK) {
        const float d = zl_load_f16(src);
        const uint32_t qh = zl_load_u32(src + 2);
        const uint8_t *qs = src + 6;
        for (int j = 0; j < 16; j++) {
            const int lo = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            const int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            dst[j] = d * (float)(lo - 16);
            dst[j + 16] = d * (float)(hi - 16);
        }
    }
}

static void q5_1_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += 24, dst += QK) {
        const float d = zl_load_f16(src);
        const float m = zl_load_f16(src + 2);
        const uint32_t qh = zl_load_u32(src + 4);
        const uint8_t *qs = src + 8;
        for (int j = 0; j < 16; j++) {
            const int lo = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            const int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            dst[j] = d * (float)lo + m;
            dst[j + 16] = d * (float)hi + m;
        }
    }
}

/* Q8_0 (2-byte scale) and Q8_1 (4 bytes: scale and the unused d*sum(q)). */
static void q8_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb, int header) {
    const int size = header + QK;
    for (int64_t i = 0; i < nb; i++, src += size, dst += QK) {
        const float d = zl_load_f16(src);
        const int8_t *qs = (const int8_t *)(src + header);
        for (int j = 0; j < QK; j++) dst[j] = d * (float)qs[j];
    }
}

static void q1_0_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += 18, dst += 128) {
        const float d = zl_load_f16(src);
        const float neg_d = -d;
        const uint8_t *qs = src + 2;
        for (int j = 0; j < 128; j++) dst[j] = ((qs[j >> 3] >> (j & 7)) & 1) ? d : neg_d;
    }
}

/* ---- AVX2 ---- */
#if ZL_X86

ZL_TARGET_AVX2 static void q4_0_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m256i eight = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++, src += 18, dst += QK) {
        const __m256 d = _mm256_set1_ps(zl_load_f16(src));
        __m256i q = _mm256_sub_epi8(zl_nibbles32(src + 2), eight);
        zl_store16_mul(dst, _mm256_castsi256_si128(q), d);
        zl_store16_mul(dst + 16, _mm256_extracti128_si256(q, 1), d);
    }
}

ZL_TARGET_AVX2 static void q4_1_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += 20, dst += QK) {
        const __m256 d = _mm256_set1_ps(zl_load_f16(src));
        const __m256 m = _mm256_set1_ps(zl_load_f16(src + 2));
        __m256i q = zl_nibbles32(src + 4);
        zl_store16_mul_add(dst, _mm256_castsi256_si128(q), d, m);
        zl_store16_mul_add(dst + 16, _mm256_extracti128_si256(q, 1), d, m);
    }
}

ZL_TARGET_AVX2 static void q5_0_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m256i sixteen = _mm256_set1_epi8(16);
    for (int64_t i = 0; i < nb; i++, src += 22, dst += QK) {
        const __m256 d = _mm256_set1_ps(zl_load_f16(src));
        __m256i high = _mm256_and_si256(zl_bytes_from_bits32(zl_load_u32(src + 2)), sixteen);
        __m256i q = _mm256_sub_epi8(_mm256_or_si256(zl_nibbles32(src + 6), high), sixteen);
        zl_store16_mul(dst, _mm256_castsi256_si128(q), d);
        zl_store16_mul(dst + 16, _mm256_extracti128_si256(q, 1), d);
    }
}

ZL_TARGET_AVX2 static void q5_1_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m256i sixteen = _mm256_set1_epi8(16);
    for (int64_t i = 0; i < nb; i++, src += 24, dst += QK) {
        const __m256 d = _mm256_set1_ps(zl_load_f16(src));
        const __m256 m = _mm256_set1_ps(zl_load_f16(src + 2));
        __m256i high = _mm256_and_si256(zl_bytes_from_bits32(zl_load_u32(src + 4)), sixteen);
        __m256i q = _mm256_or_si256(zl_nibbles32(src + 8), high);
        zl_store16_mul_add(dst, _mm256_castsi256_si128(q), d, m);
        zl_store16_mul_add(dst + 16, _mm256_extracti128_si256(q, 1), d, m);
    }
}

ZL_TARGET_AVX2 static void q8_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb, int header) {
    const int size = header + QK;
    for (int64_t i = 0; i < nb; i++, src += size, dst += QK) {
        const __m256 d = _mm256_set1_ps(zl_load_f16(src));
        zl_store16_mul(dst, _mm_loadu_si128((const __m128i *)(src + header)), d);
        zl_store16_mul(dst + 16, _mm_loadu_si128((const __m128i *)(src + header + 16)), d);
    }
}

ZL_TARGET_AVX2 static void q1_0_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (int64_t i = 0; i < nb; i++, src += 18, dst += 128) {
        const float dv = zl_load_f16(src);
        const __m256 d = _mm256_set1_ps(dv);
        const __m256 neg_d = _mm256_set1_ps(-dv);
        for (int j = 0; j < 16; j++) {
            __m256i b = _mm256_and_si256(_mm256_set1_epi32(src[2 + j]), bit);
            __m256 set = _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, bit));
            _mm256_storeu_ps(dst + 8 * j, _mm256_blendv_ps(neg_d, d, set));
        }
    }
}
#endif

/* ---- AVX-512: every output through a table of the block's 16 or 32 values ---- */
#if ZL_X86

/* 32 outputs of a block whose 16 bytes hold the first 16 quants in their low
 * nibbles and the last 16 in their high ones, each looked up in tbl. */
ZL_TARGET_AVX512 static inline void store32_nibbles_lookup(float *dst, __m128i qs, __m512 tbl) {
    _mm512_storeu_ps(dst, _mm512_permutexvar_ps(zl512_idx(qs), tbl));
    _mm512_storeu_ps(dst + 16, _mm512_permutexvar_ps(zl512_idx(_mm_srli_epi16(qs, 4)), tbl));
}

/* The same for 5-bit quants: bit j of qh is the fifth bit of quant j, choosing
 * between the low (tlo) and the high (thi) table. */
ZL_TARGET_AVX512 static inline void store32_nibbles_lookup5(float *dst, __m128i qs, uint32_t qh, __m512 tlo,
                                                            __m512 thi) {
    const __m512i i0 = zl512_idx(qs), i1 = zl512_idx(_mm_srli_epi16(qs, 4));
    _mm512_storeu_ps(dst, _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(i0, tlo), (__mmask16)qh, i0, thi));
    _mm512_storeu_ps(dst + 16,
                     _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(i1, tlo), (__mmask16)(qh >> 16), i1, thi));
}

ZL_TARGET_AVX512 static void q4_0_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m512 centered = zl512_iota(-8.0f); /* (float)(q - 8) for q = 0..15 */
    for (int64_t i = 0; i < nb; i++, src += 18, dst += QK)
        store32_nibbles_lookup(dst, _mm_loadu_si128((const __m128i *)(src + 2)),
                               _mm512_mul_ps(zl512_f16_set1(src), centered));
}

ZL_TARGET_AVX512 static void q4_1_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m512 iota = zl512_iota(0.0f);
    for (int64_t i = 0; i < nb; i++, src += 20, dst += QK) {
        const __m512 tbl = _mm512_add_ps(_mm512_mul_ps(zl512_f16_set1(src), iota), zl512_f16_set1(src + 2));
        store32_nibbles_lookup(dst, _mm_loadu_si128((const __m128i *)(src + 4)), tbl);
    }
}

ZL_TARGET_AVX512 static void q5_0_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m512 lo = zl512_iota(-16.0f), hi = zl512_iota(0.0f); /* (float)(q - 16), q = 0..31 */
    for (int64_t i = 0; i < nb; i++, src += 22, dst += QK) {
        const __m512 d = zl512_f16_set1(src);
        store32_nibbles_lookup5(dst, _mm_loadu_si128((const __m128i *)(src + 6)), zl_load_u32(src + 2),
                                _mm512_mul_ps(d, lo), _mm512_mul_ps(d, hi));
    }
}

ZL_TARGET_AVX512 static void q5_1_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m512 lo = zl512_iota(0.0f), hi = zl512_iota(16.0f);
    for (int64_t i = 0; i < nb; i++, src += 24, dst += QK) {
        const __m512 d = zl512_f16_set1(src), m = zl512_f16_set1(src + 2);
        store32_nibbles_lookup5(dst, _mm_loadu_si128((const __m128i *)(src + 8)), zl_load_u32(src + 4),
                                _mm512_add_ps(_mm512_mul_ps(d, lo), m), _mm512_add_ps(_mm512_mul_ps(d, hi), m));
    }
}

/* 256 values per quant: no table; convert and scale. */
ZL_TARGET_AVX512 static void q8_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb, int header) {
    const int size = header + QK;
    for (int64_t i = 0; i < nb; i++, src += size, dst += QK) {
        const __m512 d = zl512_f16_set1(src);
        zl512_store16_mul(dst, _mm_loadu_si128((const __m128i *)(src + header)), d);
        zl512_store16_mul(dst + 16, _mm_loadu_si128((const __m128i *)(src + header + 16)), d);
    }
}
#endif

/* ---- public kernels ---- */

void zl_dequantize_row_q4_0(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q4_0_avx512(src, dst, n / QK), q4_0_avx2(src, dst, n / QK), q4_0_portable(src, dst, n / QK));
}

void zl_dequantize_row_q4_1(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q4_1_avx512(src, dst, n / QK), q4_1_avx2(src, dst, n / QK), q4_1_portable(src, dst, n / QK));
}

void zl_dequantize_row_q5_0(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q5_0_avx512(src, dst, n / QK), q5_0_avx2(src, dst, n / QK), q5_0_portable(src, dst, n / QK));
}

void zl_dequantize_row_q5_1(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q5_1_avx512(src, dst, n / QK), q5_1_avx2(src, dst, n / QK), q5_1_portable(src, dst, n / QK));
}

void zl_dequantize_row_q8_0(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q8_avx512(src, dst, n / QK, 2), q8_avx2(src, dst, n / QK, 2), q8_portable(src, dst, n / QK, 2));
}

void zl_dequantize_row_q8_1(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q8_avx512(src, dst, n / QK, 4), q8_avx2(src, dst, n / QK, 4), q8_portable(src, dst, n / QK, 4));
}

void zl_dequantize_row_q1_0(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK(q1_0_avx2(src, dst, n / 128), q1_0_portable(src, dst, n / 128));
}
