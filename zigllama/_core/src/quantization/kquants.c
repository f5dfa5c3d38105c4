/* K-quants: super-blocks of 256 elements in 8 or 16 sub-blocks, each sub-block
 * scale (and min) quantized against the super-block's f16 scale.
 *
 * Order of operations as in gguf.quants (ggml's dequantize_row_*_K agrees):
 *   Q2_K         y = (d * sc) * q - (dmin * m)     sc, m: 4 bits each
 *   Q3_K         y = (d * (sc - 32)) * q           sc: 6 bits, q in [-4, 3]
 *   Q4_K, Q5_K   y = (d * sc) * q - (dmin * m)     sc, m: 6 bits (get_scale_min_k4)
 *   Q6_K         y = (d * sc) * (q - 32)           sc: int8
 *   Q8_K         y = d * q                         d: f32
 */
#include "zl_quants_impl.h"

enum {
    Q2_K_SIZE = 84,
    Q3_K_SIZE = 110,
    Q4_K_SIZE = 144,
    Q5_K_SIZE = 176,
    Q6_K_SIZE = 210,
    Q8_K_SIZE = 292,
};

/* The 16 signed 6-bit scales of a Q3_K block (minus 32). */
static inline void q3_k_scales(const uint8_t *s, int8_t *out) {
    for (int i = 0; i < 16; i++) {
        const int low = i < 8 ? (s[i] & 0x0F) : (s[i - 8] >> 4);
        const int high = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        out[i] = (int8_t)((low | (high << 4)) - 32);
    }
}

/* ---- portable ---- */

static void q2_k_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += Q2_K_SIZE, dst += QK_K) {
        const uint8_t *scales = src;
        const uint8_t *qs = src + 16;
        const float d = zl_load_f16(src + 80);
        const float dmin = zl_load_f16(src + 82);
        for (int half = 0; half < 2; half++) {
            for (int s = 0; s < 4; s++) {
                for (int l = 0; l < 32; l++) {
                    const int is = half * 8 + s * 2 + (l >> 4);
                    const float dl = d * (float)(scales[is] & 0x0F);
                    const float ml = dmin * (float)(scales[is] >> 4);
                    const int q = (qs[half * 32 + l] >> (2 * s)) & 3;
                    dst[half * 128 + s * 32 + l] = dl * (float)q - ml;
                }
            }
        }
    }
}

static void q3_k_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += Q3_K_SIZE, dst += QK_K) {
        const uint8_t *hmask = src;
        const uint8_t *qs = src + 32;
        int8_t sc[16];
        q3_k_scales(src + 96, sc);
        const float d = zl_load_f16(src + 108);
        for (int half = 0; half < 2; half++) {
            for (int s = 0; s < 4; s++) {
                const int hbit = half * 4 + s;
                for (int l = 0; l < 32; l++) {
                    const float dl = d * (float)sc[half * 8 + s * 2 + (l >> 4)];
                    const int low = (qs[half * 32 + l] >> (2 * s)) & 3;
                    const int q = low - (((hmask[l] >> hbit) & 1) ? 0 : 4);
                    dst[half * 128 + s * 32 + l] = dl * (float)q;
                }
            }
        }
    }
}

/* Q4_K and Q5_K share everything but the fifth bit (qh == NULL for Q4_K). */
static void q45_k_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb, int size) {
    for (int64_t i = 0; i < nb; i++, src += size, dst += QK_K) {
        const float d = zl_load_f16(src);
        const float dmin = zl_load_f16(src + 2);
        const uint8_t *scales = src + 4;
        const uint8_t *qh = size == Q5_K_SIZE ? src + 16 : NULL;
        const uint8_t *qs = qh ? src + 48 : src + 16;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            zl_get_scale_min_k4(j, scales, &sc, &m);
            const float d1 = d * (float)sc;
            const float m1 = dmin * (float)m;
            const int shift = 4 * (j & 1);
            for (int l = 0; l < 32; l++) {
                int q = (qs[(j >> 1) * 32 + l] >> shift) & 0x0F;
                if (qh) q |= ((qh[l] >> j) & 1) << 4;
                dst[j * 32 + l] = d1 * (float)q - m1;
            }
        }
    }
}

static void q6_k_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += Q6_K_SIZE, dst += QK_K) {
        const float d = zl_load_f16(src + 208);
        const int8_t *sc = (const int8_t *)(src + 192);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = src + half * 64;
            const uint8_t *qh = src + 128 + half * 32;
            float *y = dst + half * 128;
            for (int l = 0; l < 32; l++) {
                const int is = half * 8 + (l >> 4);
                const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = (d * (float)sc[is]) * (float)q1;
                y[l + 32] = (d * (float)sc[is + 2]) * (float)q2;
                y[l + 64] = (d * (float)sc[is + 4]) * (float)q3;
                y[l + 96] = (d * (float)sc[is + 6]) * (float)q4;
            }
        }
    }
}

static void q8_k_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += Q8_K_SIZE, dst += QK_K) {
        const float d = zl_load_f32(src);
        const int8_t *qs = (const int8_t *)(src + 4);
        for (int j = 0; j < QK_K; j++) dst[j] = d * (float)qs[j];
    }
}

/* ---- AVX2 ---- */
#if ZL_X86

/* 32 quants (bytes) spanning two sub-blocks of 16, with their own scales. */
ZL_TARGET_AVX2 static inline void store32_two_scales(float *dst, __m256i q, float d0, float d1) {
    zl_store16_mul(dst, _mm256_castsi256_si128(q), _mm256_set1_ps(d0));
    zl_store16_mul(dst + 16, _mm256_extracti128_si256(q, 1), _mm256_set1_ps(d1));
}

ZL_TARGET_AVX2 static void q2_k_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m256i three = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < nb; i++, src += Q2_K_SIZE, dst += QK_K) {
        const uint8_t *scales = src;
        const float d = zl_load_f16(src + 80);
        const float dmin = zl_load_f16(src + 82);
        for (int half = 0; half < 2; half++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(src + 16 + half * 32));
            for (int s = 0; s < 4; s++) {
                const int is = half * 8 + s * 2;
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * s), three);
                float *y = dst + half * 128 + s * 32;
                zl_store16_mul_sub(y, _mm256_castsi256_si128(q), _mm256_set1_ps(d * (float)(scales[is] & 0x0F)),
                                   _mm256_set1_ps(dmin * (float)(scales[is] >> 4)));
                zl_store16_mul_sub(y + 16, _mm256_extracti128_si256(q, 1),
                                   _mm256_set1_ps(d * (float)(scales[is + 1] & 0x0F)),
                                   _mm256_set1_ps(dmin * (float)(scales[is + 1] >> 4)));
            }
        }
    }
}

ZL_TARGET_AVX2 static void q3_k_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m256i three = _mm256_set1_epi8(3);
    const __m256i four = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < nb; i++, src += Q3_K_SIZE, dst += QK_K) {
        int8_t sc[16];
        q3_k_scales(src + 96, sc);
        const float d = zl_load_f16(src + 108);
        const __m256i hmask = _mm256_loadu_si256((const __m256i *)src);
        for (int half = 0; half < 2; half++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(src + 32 + half * 32));
            for (int s = 0; s < 4; s++) {
                const int hbit = half * 4 + s;
                const __m256i bit = _mm256_set1_epi8((char)(1 << hbit));
                /* 4 where the high bit is clear, 0 where it is set. */
                const __m256i off = _mm256_andnot_si256(
                    _mm256_cmpeq_epi8(_mm256_and_si256(hmask, bit), bit), four);
                const __m256i q = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(qs, 2 * s), three), off);
                const int is = half * 8 + s * 2;
                store32_two_scales(dst + half * 128 + s * 32, q, d * (float)sc[is], d * (float)sc[is + 1]);
            }
        }
    }
}

ZL_TARGET_AVX2 static void q45_k_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb, int size) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < nb; i++, src += size, dst += QK_K) {
        const float d = zl_load_f16(src);
        const float dmin = zl_load_f16(src + 2);
        const uint8_t *scales = src + 4;
        const int has_qh = size == Q5_K_SIZE;
        const uint8_t *qs = has_qh ? src + 48 : src + 16;
        const __m256i qh = has_qh ? _mm256_loadu_si256((const __m256i *)(src + 16)) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i packed = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            for (int h = 0; h < 2; h++) {
                const int j = 2 * c + h;
                __m256i q = _mm256_and_si256(h ? _mm256_srli_epi16(packed, 4) : packed, low4);
                if (has_qh) {
                    const __m256i fifth = _mm256_and_si256(_mm256_srli_epi16(qh, j), one);
                    q = _mm256_or_si256(q, _mm256_slli_epi16(fifth, 4));
                }
                uint8_t sc, m;
                zl_get_scale_min_k4(j, scales, &sc, &m);
                const __m256 d1 = _mm256_set1_ps(d * (float)sc);
                const __m256 m1 = _mm256_set1_ps(dmin * (float)m);
                zl_store16_mul_sub(dst + 32 * j, _mm256_castsi256_si128(q), d1, m1);
                zl_store16_mul_sub(dst + 32 * j + 16, _mm256_extracti128_si256(q, 1), d1, m1);
            }
        }
    }
}

ZL_TARGET_AVX2 static void q6_k_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i three = _mm256_set1_epi8(3);
    const __m256i bias = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; i++, src += Q6_K_SIZE, dst += QK_K) {
        const float d = zl_load_f16(src + 208);
        const int8_t *sc = (const int8_t *)(src + 192);
        for (int half = 0; half < 2; half++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(src + half * 64));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(src + half * 64 + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(src + 128 + half * 32));
            const __m256i lows[4] = {
                _mm256_and_si256(ql0, low4),
                _mm256_and_si256(ql1, low4),
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
            };
            for (int k = 0; k < 4; k++) {
                const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), three);
                const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lows[k], _mm256_slli_epi16(high, 4)), bias);
                const int is = half * 8 + 2 * k;
                store32_two_scales(dst + half * 128 + 32 * k, q, d * (float)sc[is], d * (float)sc[is + 1]);
            }
        }
    }
}

ZL_TARGET_AVX2 static void q8_k_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += Q8_K_SIZE, dst += QK_K) {
        const __m256 d = _mm256_set1_ps(zl_load_f32(src));
        for (int j = 0; j < QK_K; j += 16) zl_store16_mul(dst + j, _mm_loadu_si128((const __m128i *)(src + 4 + j)), d);
    }
}
#endif

/* ---- AVX-512 ----
 * Q2_K..Q5_K look their outputs up in a table of the sub-block's values (see
 * zl_quants_impl.h); Q6_K and Q8_K, with 64 and 256 values, convert and scale. */
#if ZL_X86

/* 16 outputs of a sub-block with quants in the low bits of 16 bytes. */
ZL_TARGET_AVX512 static inline void store16_lookup(float *dst, __m128i q, __m512 tbl) {
    _mm512_storeu_ps(dst, _mm512_permutexvar_ps(zl512_idx(q), tbl));
}

ZL_TARGET_AVX512 static void q2_k_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    /* vpermps reads four bits of each index and a quant has two: the table
     * repeats its four values, so the two bits above the quant do not matter. */
    const __m512 q_of_lane = _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    const __m512i low4 = _mm512_set1_epi32(0x0F);
    for (int64_t i = 0; i < nb; i++, src += Q2_K_SIZE, dst += QK_K) {
        /* The 16 sub-block scales and mins at once: d * sc and dmin * m. */
        const __m512i sc = zl512_idx(_mm_loadu_si128((const __m128i *)src));
        float dl[16], ml[16];
        _mm512_storeu_ps(dl, _mm512_mul_ps(zl512_f16_set1(src + 80), _mm512_cvtepi32_ps(_mm512_and_si512(sc, low4))));
        _mm512_storeu_ps(ml, _mm512_mul_ps(zl512_f16_set1(src + 82), _mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 4))));
        for (int half = 0; half < 2; half++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(src + 16 + half * 32));
            for (int s = 0; s < 4; s++) {
                const __m256i q = _mm256_srli_epi16(qs, 2 * s);
                const int is = half * 8 + s * 2;
                float *y = dst + half * 128 + s * 32;
                store16_lookup(y, _mm256_castsi256_si128(q),
                               _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(dl[is]), q_of_lane), _mm512_set1_ps(ml[is])));
                store16_lookup(y + 16, _mm256_extracti128_si256(q, 1),
                               _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(dl[is + 1]), q_of_lane),
                                             _mm512_set1_ps(ml[is + 1])));
            }
        }
    }
}

ZL_TARGET_AVX512 static void q3_k_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    /* Index = two low bits | high-mask bit << 2; the quant is index - 4 (a set
     * high bit leaves the low bits, a clear one subtracts 4). Bit 3 is noise:
     * the eight values repeat. */
    const __m512 q_of_lane = _mm512_setr_ps(-4, -3, -2, -1, 0, 1, 2, 3, -4, -3, -2, -1, 0, 1, 2, 3);
    const __m256i three = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < nb; i++, src += Q3_K_SIZE, dst += QK_K) {
        int8_t sc[16];
        q3_k_scales(src + 96, sc);
        float dl[16];
        _mm512_storeu_ps(dl, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_set1_epi16((short)zl_load_u16(src + 108))),
                                           _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)sc)))));
        const __m256i hmask = _mm256_loadu_si256((const __m256i *)src);
        for (int half = 0; half < 2; half++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(src + 32 + half * 32));
            for (int s = 0; s < 4; s++) {
                const int hbit = half * 4 + s;
                /* bit hbit of hmask to bit 2 of each byte (bits of a byte's neighbour never reach bit 2:
                 * the shift is 2 at most to the right, 2 at most to the left). */
                const __m256i h = hbit >= 2 ? _mm256_srli_epi16(hmask, hbit - 2) : _mm256_slli_epi16(hmask, 2 - hbit);
                /* the two quant bits from qs, the rest from h (0xE4: c ? a : b, bit by bit) */
                const __m256i idx = _mm256_ternarylogic_epi32(_mm256_srli_epi16(qs, 2 * s), h, three, 0xE4);
                const int is = half * 8 + s * 2;
                float *y = dst + half * 128 + s * 32;
                store16_lookup(y, _mm256_castsi256_si128(idx), _mm512_mul_ps(_mm512_set1_ps(dl[is]), q_of_lane));
                store16_lookup(y + 16, _mm256_extracti128_si256(idx, 1),
                               _mm512_mul_ps(_mm512_set1_ps(dl[is + 1]), q_of_lane));
            }
        }
    }
}

/* The eight d * sc and eight dmin * m of a Q4_K/Q5_K block at once: the 12 bytes of
 * 6-bit scales and mins rearranged in four 32-bit words into eight scale bytes
 * then eight min bytes (as get_scale_min_k4 picks them), widened, converted and
 * multiplied by [d x 8, dmin x 8]. */
ZL_TARGET_AVX512 static inline void q45_k_scales_avx512(const uint8_t *src, float *dm) {
    const uint32_t k1 = 0x3f3f3f3fu, k2 = 0x0f0f0f0fu, k3 = 0x03030303u;
    uint32_t u[4];
    memcpy(u, src + 4, 12);
    u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4); /* mins 4..7 */
    const uint32_t mins_lo = u[1] & k1;                    /* mins 0..3 */
    u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);        /* scales 4..7 */
    u[2] = mins_lo;
    u[0] &= k1;                                            /* scales 0..3 */
    const __m512 ints = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)u)));
    const __m128 d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128((int)zl_load_u32(src)));
    const __m512 scale = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                               _mm512_castps128_ps512(d_dmin));
    _mm512_storeu_ps(dm, _mm512_mul_ps(scale, ints));
}

/* Q4_K and Q5_K: y = d1 * q - m1 per sub-block of 32, from a table of 16 (or 32) values. */
ZL_TARGET_AVX512 static void q45_k_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb, int size) {
    const __m512 lo = zl512_iota(0.0f), hi = zl512_iota(16.0f);
    const int has_qh = size == Q5_K_SIZE;
    for (int64_t i = 0; i < nb; i++, src += size, dst += QK_K) {
        float dm[16];
        q45_k_scales_avx512(src, dm);
        const uint8_t *qs = has_qh ? src + 48 : src + 16;
        __m128i qh0 = _mm_setzero_si128(), qh1 = _mm_setzero_si128();
        if (has_qh) {
            qh0 = _mm_loadu_si128((const __m128i *)(src + 16));
            qh1 = _mm_loadu_si128((const __m128i *)(src + 32));
        }
        for (int j = 0; j < 8; j++) {
            const __m512 d1 = _mm512_set1_ps(dm[j]), m1 = _mm512_set1_ps(dm[8 + j]);
            const __m512 tlo = _mm512_sub_ps(_mm512_mul_ps(d1, lo), m1);
            __m512i i0 = zl512_idx(_mm_loadu_si128((const __m128i *)(qs + (j >> 1) * 32)));
            __m512i i1 = zl512_idx(_mm_loadu_si128((const __m128i *)(qs + (j >> 1) * 32 + 16)));
            if (j & 1) { /* the high nibbles */
                i0 = _mm512_srli_epi32(i0, 4);
                i1 = _mm512_srli_epi32(i1, 4);
            }
            float *y = dst + 32 * j;
            if (has_qh) {
                const __m512 thi = _mm512_sub_ps(_mm512_mul_ps(d1, hi), m1);
                const __m128i bit = _mm_set1_epi8((char)(1 << j));
                _mm512_storeu_ps(y, _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(i0, tlo),
                                                               _mm_test_epi8_mask(qh0, bit), i0, thi));
                _mm512_storeu_ps(y + 16, _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(i1, tlo),
                                                                    _mm_test_epi8_mask(qh1, bit), i1, thi));
            } else {
                _mm512_storeu_ps(y, _mm512_permutexvar_ps(i0, tlo));
                _mm512_storeu_ps(y + 16, _mm512_permutexvar_ps(i1, tlo));
            }
        }
    }
}

ZL_TARGET_AVX512 static void q6_k_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i bits45 = _mm256_set1_epi8(0x30);
    const __m256i bias = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; i++, src += Q6_K_SIZE, dst += QK_K) {
        float dl[16];
        _mm512_storeu_ps(dl, _mm512_mul_ps(zl512_f16_set1(src + 208),
                                           _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                               _mm_loadu_si128((const __m128i *)(src + 192))))));
        for (int half = 0; half < 2; half++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(src + half * 64));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(src + half * 64 + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(src + 128 + half * 32));
            /* low nibble | two high bits moved to bits 4-5 (0xD8: c ? b : a, bit by bit). */
            const __m256i q[4] = {
                _mm256_ternarylogic_epi32(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(qh, 4), bits45, 0xD8),
                _mm256_ternarylogic_epi32(_mm256_and_si256(ql1, low4), _mm256_slli_epi16(qh, 2), bits45, 0xD8),
                _mm256_ternarylogic_epi32(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), qh, bits45, 0xD8),
                _mm256_ternarylogic_epi32(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                          _mm256_srli_epi16(qh, 2), bits45, 0xD8),
            };
            for (int k = 0; k < 4; k++) {
                const __m256i qk = _mm256_sub_epi8(q[k], bias);
                const int is = half * 8 + 2 * k;
                float *y = dst + half * 128 + 32 * k;
                zl512_store16_mul(y, _mm256_castsi256_si128(qk), _mm512_set1_ps(dl[is]));
                zl512_store16_mul(y + 16, _mm256_extracti128_si256(qk, 1), _mm512_set1_ps(dl[is + 1]));
            }
        }
    }
}

ZL_TARGET_AVX512 static void q8_k_avx512(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += Q8_K_SIZE, dst += QK_K) {
        const __m512 d = _mm512_set1_ps(zl_load_f32(src));
        for (int j = 0; j < QK_K; j += 16)
            zl512_store16_mul(dst + j, _mm_loadu_si128((const __m128i *)(src + 4 + j)), d);
    }
}
#endif

/* ---- public kernels ---- */

void zl_dequantize_row_q2_k(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q2_k_avx512(src, dst, n / QK_K), q2_k_avx2(src, dst, n / QK_K),
             q2_k_portable(src, dst, n / QK_K));
}

void zl_dequantize_row_q3_k(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q3_k_avx512(src, dst, n / QK_K), q3_k_avx2(src, dst, n / QK_K),
             q3_k_portable(src, dst, n / QK_K));
}

void zl_dequantize_row_q4_k(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q45_k_avx512(src, dst, n / QK_K, Q4_K_SIZE), q45_k_avx2(src, dst, n / QK_K, Q4_K_SIZE),
             q45_k_portable(src, dst, n / QK_K, Q4_K_SIZE));
}

void zl_dequantize_row_q5_k(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q45_k_avx512(src, dst, n / QK_K, Q5_K_SIZE), q45_k_avx2(src, dst, n / QK_K, Q5_K_SIZE),
             q45_k_portable(src, dst, n / QK_K, Q5_K_SIZE));
}

void zl_dequantize_row_q6_k(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q6_k_avx512(src, dst, n / QK_K), q6_k_avx2(src, dst, n / QK_K),
             q6_k_portable(src, dst, n / QK_K));
}

void zl_dequantize_row_q8_k(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK3(q8_k_avx512(src, dst, n / QK_K), q8_k_avx2(src, dst, n / QK_K),
             q8_k_portable(src, dst, n / QK_K));
}
