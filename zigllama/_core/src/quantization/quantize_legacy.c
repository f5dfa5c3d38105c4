/* Quantizers of the blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4), the
 * ternary super-blocks (TQ1_0, TQ2_0) and the F16 / BF16 conversions: ggml's
 * quantize_row_*_ref and ggml_fp32_to_{fp16,bf16}_row(_ref).
 *
 * Where the gguf package differs from ggml, these follow ggml: ggml finds the
 * extreme with `amax < |v|` starting from amax = max = +0, so a block of zeros
 * (of either sign) gets d = +0 / -8 = -0 for Q4_0 and Q5_0; the gguf package
 * takes the signed element itself and stores +0.
 */
#include "quantize_impl.h"

#define QK 32

/* The value of largest magnitude, ggml's way (see above). */
static inline float signed_extreme(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static inline void min_max(const float *x, float *lo, float *hi) {
    float mn = 3.40282347e+38f, mx = -3.40282347e+38f;
    for (int j = 0; j < QK; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    *lo = mn;
    *hi = mx;
}

/* The 5-bit formats keep the fifth bits of the 32 quants in a little-endian u32. */
static inline void store_high_bits(uint8_t *qh, uint32_t h) {
    for (int b = 0; b < 4; b++) qh[b] = (uint8_t)(h >> (8 * b));
}

ZLQ_RUN_DECL(q4_0) {
    (void)qw;
    for (int64_t i = 0; i < nb; i++, x += QK, y += 18) {
        const float d = signed_extreme(x) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        zlq_store_f16(y, d);
        if (zlq_f16_overflowed(y)) return i;
        for (int j = 0; j < QK / 2; ++j) {
            const int lo = (int8_t)(x[j] * id + 8.5f);
            const int hi = (int8_t)(x[j + QK / 2] * id + 8.5f);
            y[2 + j] = (uint8_t)((lo < 15 ? lo : 15) | ((hi < 15 ? hi : 15) << 4));
        }
    }
    return -1;
}

ZLQ_RUN_DECL(q4_1) {
    (void)qw;
    float mn, mx;
    for (int64_t i = 0; i < nb; i++, x += QK, y += 20) {
        min_max(x, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        zlq_store_f16(y, d);
        zlq_store_f16(y + 2, mn);
        if (zlq_f16_overflowed(y) || zlq_f16_overflowed(y + 2)) return i;
        for (int j = 0; j < QK / 2; ++j) {
            const int lo = (int8_t)((x[j] - mn) * id + 0.5f);
            const int hi = (int8_t)((x[j + QK / 2] - mn) * id + 0.5f);
            y[4 + j] = (uint8_t)((lo < 15 ? lo : 15) | ((hi < 15 ? hi : 15) << 4));
        }
    }
    return -1;
}

ZLQ_RUN_DECL(q5_0) {
    (void)qw;
    for (int64_t i = 0; i < nb; i++, x += QK, y += 22) {
        const float d = signed_extreme(x) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        zlq_store_f16(y, d);
        if (zlq_f16_overflowed(y)) return i;
        uint32_t h = 0;
        for (int j = 0; j < QK / 2; ++j) {
            int lo = (int8_t)(x[j] * id + 16.5f);
            int hi = (int8_t)(x[j + QK / 2] * id + 16.5f);
            lo = lo < 31 ? lo : 31;
            hi = hi < 31 ? hi : 31;
            y[6 + j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
            h |= (uint32_t)((lo & 0x10) >> 4) << j;
            h |= (uint32_t)((hi & 0x10) >> 4) << (j + QK / 2);
        }
        store_high_bits(y + 2, h);
    }
    return -1;
}

ZLQ_RUN_DECL(q5_1) {
    (void)qw;
    float mn, mx;
    for (int64_t i = 0; i < nb; i++, x += QK, y += 24) {
        min_max(x, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        zlq_store_f16(y, d);
        zlq_store_f16(y + 2, mn);
        if (zlq_f16_overflowed(y) || zlq_f16_overflowed(y + 2)) return i;
        uint32_t h = 0;
        for (int j = 0; j < QK / 2; ++j) {
            /* ggml converts straight to uint8_t, without a clamp */
            const uint8_t lo = (uint8_t)(int)((x[j] - mn) * id + 0.5f);
            const uint8_t hi = (uint8_t)(int)((x[j + QK / 2] - mn) * id + 0.5f);
            y[8 + j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
            h |= (uint32_t)((lo & 0x10u) >> 4) << j;
            h |= (uint32_t)((hi & 0x10u) >> 4) << (j + QK / 2);
        }
        store_high_bits(y + 4, h);
    }
    return -1;
}

/* 1/d for Q8_0. A subnormal amax makes 1/d overflow to inf; ggml's scalar code then
 * converts the +-inf/NaN products to int8 through x86's 0x80000000, whose low byte is
 * 0: every quant 0. An inverse of 0 gives those bytes without the undefined conversion
 * (and without the AVX2 path's saturating packs turning them into -128). */
static inline float q8_0_inverse_scale(float d) {
    const float id = d ? 1.0f / d : 0.0f;
    return isinf(id) ? 0.0f : id;
}

static int64_t q8_0_portable(const float *restrict x, uint8_t *restrict y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = q8_0_inverse_scale(d);
        zlq_store_f16(y, d);
        if (zlq_f16_overflowed(y)) return i;
        for (int j = 0; j < QK; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
    return -1;
}

#if ZL_X86
/* roundf (half away from zero) of eight products: truncate, then step away from
 * zero when the dropped fraction (exact: |v| < 2^23) is at least a half. */
ZL_TARGET_AVX2 static inline __m256i round_half_away8(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)));
    const __m256 frac = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)), _mm256_sub_ps(v, t));
    const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                                      _mm256_or_ps(_mm256_set1_ps(1.0f), sign));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, step));
}

ZL_TARGET_AVX2 static int64_t q8_0_avx2(const float *restrict x, uint8_t *restrict y, int64_t nb) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < nb; i++, x += QK, y += 34) {
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            m = _mm256_max_ps(m, _mm256_and_ps(v[k], abs_mask));
        }
        /* the maximum does not depend on the order it is taken in */
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        const float amax = _mm_cvtss_f32(h);
        const float d = amax / 127;
        const float id = q8_0_inverse_scale(d);
        zlq_store_f16(y, d);
        if (zlq_f16_overflowed(y)) return i;
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i q0 = round_half_away8(_mm256_mul_ps(v[0], vid)), q1 = round_half_away8(_mm256_mul_ps(v[1], vid));
        const __m256i q2 = round_half_away8(_mm256_mul_ps(v[2], vid)), q3 = round_half_away8(_mm256_mul_ps(v[3], vid));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(y + 2), p);
    }
    return -1;
}
#endif

ZLQ_RUN_DECL(q8_0) {
    (void)qw;
#if ZL_X86
    if (zl_cpu_has_avx2()) return q8_0_avx2(x, y, nb);
#endif
    return q8_0_portable(x, y, nb);
}

/* ---- MXFP4: an E8M0 exponent and 32 FP4 (E2M1) values, doubled ---- */

static const int8_t kvalues_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* Half of 2^(e - 127), as a float (subnormal for e < 2). */
static inline float e8m0_half(uint8_t e) {
    return zlq_float(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

static inline uint8_t nearest_fp4(float x, float d) {
    int best = 0;
    float best_err = fabsf(kvalues_fp4[0] * d - x);
    for (int i = 1; i < 16; i++) {
        const float err = fabsf(kvalues_fp4[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return (uint8_t)best;
}

ZLQ_RUN_DECL(mxfp4) {
    (void)qw;
    for (int64_t i = 0; i < nb; i++, x += QK, y += 17) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) {
            if (amax < fabsf(x[j])) amax = fabsf(x[j]);
        }
        /* ggml converts the float exponent to uint8_t; below 2^-125 that wraps
         * (the x86 conversion goes through a 32-bit int, done here explicitly). */
        const uint8_t e = amax > 0.0f ? (uint8_t)(int)(floorf(log2f(amax)) - 2 + 127) : 0;
        const float d = e8m0_half(e);
        y[0] = e;
        for (int j = 0; j < QK / 2; ++j) {
            y[1 + j] = (uint8_t)(nearest_fp4(x[j], d) | (nearest_fp4(x[j + QK / 2], d) << 4));
        }
    }
    return -1;
}

/* ---- Ternary super-blocks of 256: d = max |x|, trits -1, 0, 1 ---- */

static inline float ternary_scale(const float *x, uint8_t *d_out, float *id) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    zlq_store_f16(d_out, amax);
    *id = amax ? 1.0f / amax : 0.0f;
    return amax;
}

/* n trits x[0], x[stride], ... as base-3 digits, most significant first, then
 * scaled to a byte by ceiling division (ggml's 5-trits-per-byte packing). */
static inline uint8_t pack_trits(const float *x, int n, int stride, float id, int pad) {
    uint8_t q = 0;
    for (int t = 0; t < n; ++t) q = (uint8_t)(q * 3 + (int)lroundf(x[t * stride] * id) + 1);
    if (pad) q = (uint8_t)(q * 3);
    return (uint8_t)(((uint16_t)q * 256 + 242) / 243);
}

ZLQ_RUN_DECL(tq1_0) {
    (void)qw;
    for (int64_t i = 0; i < nb; i++, y += 54) {
        float id;
        ternary_scale(x, y + 52, &id);
        if (zlq_f16_overflowed(y + 52)) return i;
        for (int m = 0; m < 32; ++m) y[m] = pack_trits(x + m, 5, 32, id, 0);
        x += 160;
        for (int m = 0; m < 16; ++m) y[32 + m] = pack_trits(x + m, 5, 16, id, 0);
        x += 80;
        for (int j = 0; j < 4; ++j) y[48 + j] = pack_trits(x + j, 4, 4, id, 1);
        x += 16;
    }
    return -1;
}

ZLQ_RUN_DECL(tq2_0) {
    (void)qw;
    for (int64_t i = 0; i < nb; i++, y += 66) {
        float id;
        ternary_scale(x, y + 64, &id);
        if (zlq_f16_overflowed(y + 64)) return i;
        for (int j = 0; j < 64; j += 32, x += 128) {
            for (int m = 0; m < 32; ++m) {
                uint8_t q = 0;
                for (int t = 0; t < 4; ++t) q = (uint8_t)(q + ((((int)lroundf(x[m + 32 * t] * id) + 1) & 3) << (2 * t)));
                y[j + m] = q;
            }
        }
    }
    return -1;
}

/* ---- F16 and BF16: one value per "block" ---- */

static inline int overflowed_to_inf(float x, uint16_t h, uint16_t exp_mask) {
    return (h & 0x7fffu) == exp_mask && isfinite(x);
}

static int64_t f16_portable(const float *restrict x, uint8_t *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = zlq_f32_to_f16(x[i]);
        memcpy(y + 2 * i, &h, 2);
        if (overflowed_to_inf(x[i], h, 0x7C00u)) return i;
    }
    return -1;
}

#if ZL_X86
/* F16C rounds to nearest even as ggml does; only NaN differs (F16C keeps the
 * payload, ggml stores 0x7E00), and finite values from 65520 up become inf:
 * eight values at a time go the fast way unless one of them is either. */
ZL_TARGET_AVX2 static int64_t f16_avx2(const float *restrict x, uint8_t *restrict y, int64_t n) {
    const __m256 limit = _mm256_set1_ps(65520.0f);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 big = _mm256_cmp_ps(_mm256_and_ps(v, abs_mask), limit, _CMP_NLT_UQ);
        if (_mm256_movemask_ps(big)) {
            const int64_t bad = f16_portable(x + i, y + 2 * i, 8);
            if (bad >= 0) return i + bad;
            continue;
        }
        _mm_storeu_si128((__m128i *)(y + 2 * i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    const int64_t bad = f16_portable(x + i, y + 2 * i, n - i);
    return bad >= 0 ? i + bad : -1;
}
#endif

ZLQ_RUN_DECL(f16) {
    (void)qw;
#if ZL_X86
    if (zl_cpu_has_avx2()) return f16_avx2(x, y, nb);
#endif
    return f16_portable(x, y, nb);
}

/* ggml_compute_fp32_to_bf16: NaN keeps its top half, forced quiet; everything
 * else rounds to nearest even (overflowing to inf). */
static int64_t bf16_portable(const float *restrict x, uint8_t *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint32_t u = zlq_bits(x[i]);
        const uint16_t h = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 64)
                                                            : (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
        memcpy(y + 2 * i, &h, 2);
        if (overflowed_to_inf(x[i], h, 0x7F80u)) return i;
    }
    return -1;
}

#if ZL_X86
/* The same integer steps, eight at a time; a group with an infinite result
 * goes the scalar way, which tells an overflow from an inf input. */
ZL_TARGET_AVX2 static int64_t bf16_avx2(const float *restrict x, uint8_t *restrict y, int64_t n) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(64);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
        const __m256i rounded = _mm256_srli_epi32(
            _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one))), 16);
        const __m256i h = _mm256_blendv_epi8(rounded, _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet), nan);
        const __m256i is_inf = _mm256_cmpeq_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)),
                                                  _mm256_set1_epi32(0x7f80));
        if (_mm256_movemask_epi8(is_inf)) {
            const int64_t bad = bf16_portable(x + i, y + 2 * i, 8);
            if (bad >= 0) return i + bad;
            continue;
        }
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);
        _mm_storeu_si128((__m128i *)(y + 2 * i), _mm256_castsi256_si128(packed));
    }
    const int64_t bad = bf16_portable(x + i, y + 2 * i, n - i);
    return bad >= 0 ? i + bad : -1;
}
#endif

ZLQ_RUN_DECL(bf16) {
    (void)qw;
#if ZL_X86
    if (zl_cpu_has_avx2()) return bf16_avx2(x, y, nb);
#endif
    return bf16_portable(x, y, nb);
}
