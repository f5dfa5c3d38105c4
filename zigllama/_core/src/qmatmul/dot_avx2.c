/* AVX2 kernels: activation quantizers and dot products (ggml's AVX2 scheme:
 * sign-adjusted unsigned x signed byte products, _mm256_maddubs_epi16, then
 * 32-bit sums scaled per block into float lanes). */
#include <math.h>

#include "qmatmul_impl.h"
#include "qgemm_tile.h"
#include "../quantization/iq_grids.h"

#if ZL_X86

/* ---- helpers ---- */

ZL_TARGET_AVX2 static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* roundf: to nearest, halves away from zero. */
ZL_TARGET_AVX2 static inline __m256 round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    const __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                                    _mm256_or_ps(_mm256_set1_ps(1.0f), sign));
    return _mm256_add_ps(t, up);
}

/* 32 int32 lanes (4 vectors) -> 32 int8 in order. */
ZL_TARGET_AVX2 static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i p = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* ---- activation quantizers ---- */

/* quantize_row_q8_0_ref: d = amax / 127 (stored as f16), q = roundf(x / d). */
ZL_TARGET_AVX2 void zl_quantize_act_q8_0_avx2(const float *x, uint8_t *dst, int64_t k) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < k / 32; i++, x += 32, dst += ZL_Q8_0_BYTES) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(x + 8 * j);
            amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], absmask));
        }
        const float d = hmax8(amax) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(d), _MM_FROUND_TO_NEAREST_INT), 0);
        memcpy(dst, &h, 2);
        const __m256 mul = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++) q[j] = _mm256_cvtps_epi32(round_away(_mm256_mul_ps(v[j], mul)));
        _mm256_storeu_si256((__m256i *)(dst + 2), pack32(q[0], q[1], q[2], q[3]));
    }
}

/* quantize_row_q8_K_ref: iscale = -127 / (the element of largest magnitude),
 * q = round-half-even(iscale * x) capped at 127, 16-element sums. */
ZL_TARGET_AVX2 void zl_quantize_act_q8_k_avx2(const float *x, uint8_t *dst, int64_t k) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K, dst += ZL_Q8_K_BYTES) {
        __m256 amaxv = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) amaxv = _mm256_max_ps(amaxv, _mm256_and_ps(_mm256_loadu_ps(x + j), absmask));
        const float amax = hmax8(amaxv);
        if (amax == 0) {
            memset(dst, 0, ZL_Q8_K_BYTES);
            continue;
        }
        int first = 0; /* the first element of that magnitude gives the sign */
        const __m256 target = _mm256_set1_ps(amax);
        for (int j = 0; j < QK_K; j += 8) {
            int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), absmask), target, _CMP_EQ_OQ));
            if (mask) {
                first = j + __builtin_ctz((unsigned)mask);
                break;
            }
        }
        const float iscale = -127.f / x[first];
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256i cap = _mm256_set1_epi32(127);
        int8_t *qs = (int8_t *)(dst + 4);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i q[4];
            for (int l = 0; l < 4; l++)
                q[l] = _mm256_min_epi32(cap, _mm256_cvtps_epi32(_mm256_round_ps(
                                                 _mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * l), mul),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
            const __m256i p = pack32(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(qs + j), p);
            /* two 16-element sums */
            const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), p);
            const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
            const __m128i lo = _mm256_castsi256_si128(s32), hi = _mm256_extracti128_si256(s32, 1);
            const __m128i l2 = _mm_hadd_epi32(lo, hi);          /* l0+l1, l2+l3, h0+h1, h2+h3 */
            const __m128i l4 = _mm_hadd_epi32(l2, l2);          /* sum lo, sum hi, ... */
            const int16_t b0 = (int16_t)_mm_extract_epi32(l4, 0), b1 = (int16_t)_mm_extract_epi32(l4, 1);
            memcpy(dst + 260 + 2 * (j / 16), &b0, 2);
            memcpy(dst + 260 + 2 * (j / 16 + 1), &b1, 2);
        }
        const float d = 1 / iscale;
        memcpy(dst, &d, 4);
    }
}

/* ---- dot products ---- */

#define QK_TARGET ZL_TARGET_AVX2
#define QK_NAME(name) avx2_##name
#define QK_DOT_U8I8(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define QK_DPWSSD(acc, a, b) _mm256_add_epi32((acc), _mm256_madd_epi16((a), (b)))
#define QK_DPBUSD(acc, u, s) _mm256_add_epi32((acc), QK_DOT_U8I8((u), (s)))
#include "dot_x86_impl.h"

/* Tiles: two rows per pass (16 registers), the scales broadcast from memory;
 * legacy blocks through the sign trick on signed x. */
#define QK_TR 2
#define QK_SCALES(v, p, c) \
    ((void)(v), _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((p)[2 * (c)])), _mm_set1_epi16((p)[2 * (c) + 1]), 1))
#define QK_LDOT(x, w) avx2_dot_i8((w), (x))
#include "tile_x86_impl.h"

const zl_qdot_fn *const zl_qdot_avx2 = avx2_table;
const zl_tile_kernels zl_tile_avx2 = {avx2_ktile, avx2_ltile, ZL_TILE_M, zl_tile_pack_x, zl_tile_x_bytes,
                                     avx2_unpack_row, ZL_TILE_SET_AVX2};

int zl_tile_unpack_avx2(int type, const uint8_t *row, int64_t k, void *tiles, int r) {
    return avx2_unpack_row(type, row, k, tiles, r);
}

#else /* not x86: no AVX2 kernels; the driver never picks this path */

static const zl_qdot_fn no_kernels[ZL_GGML_TYPE_COUNT];
const zl_qdot_fn *const zl_qdot_avx2 = no_kernels;
const zl_tile_kernels zl_tile_avx2 = {NULL, NULL, ZL_TILE_M, zl_tile_pack_x, zl_tile_x_bytes, NULL, ZL_TILE_SET_AVX2};
int zl_tile_unpack_avx2(int type, const uint8_t *row, int64_t k, void *tiles, int r) {
    (void)type; (void)row; (void)k; (void)tiles; (void)r;
    return 0;
}
void zl_quantize_act_q8_0_avx2(const float *x, uint8_t *dst, int64_t k) { (void)x; (void)dst; (void)k; }
void zl_quantize_act_q8_k_avx2(const float *x, uint8_t *dst, int64_t k) { zl_quantize_act_q8_k_portable(x, dst, k); }

#endif
