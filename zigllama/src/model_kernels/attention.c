/* The two products of one query row's attention when there are too few rows for a
 * GEMM to pay for its packing (decoding: one position, group heads): scores against
 * every key, then the probability-weighted sum of the values. Keys and values are
 * rows of head_dim floats, contiguous in the cache. */
#include "zl_model_kernels.h"
#include "zigllama/zl_cpu.h"

static void scores_portable(const float *q, const float *k, int64_t nk, int64_t hd, float *out) {
    for (int64_t j = 0; j < nk; j++) {
        float s = 0.0f;
        for (int64_t i = 0; i < hd; i++) s += q[i] * k[j * hd + i];
        out[j] = s;
    }
}

static void weighted_sum_portable(const float *p, const float *v, int64_t nk, int64_t hd, float *out) {
    for (int64_t i = 0; i < hd; i++) out[i] = 0.0f;
    for (int64_t j = 0; j < nk; j++) {
        float pj = p[j];
        if (pj == 0.0f) continue;   /* masked keys */
        for (int64_t i = 0; i < hd; i++) out[i] += pj * v[j * hd + i];
    }
}

#if ZL_X86
#include <immintrin.h>

ZL_TARGET_AVX2 static void scores_avx2(const float *q, const float *k, int64_t nk, int64_t hd, float *out) {
    for (int64_t j = 0; j < nk; j++) {
        const float *kj = k + j * hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= hd; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kj + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(kj + i + 8), a1);
        }
        __m256 a = _mm256_add_ps(a0, a1);
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        float r = _mm_cvtss_f32(s);
        for (; i < hd; i++) r += q[i] * kj[i];
        out[j] = r;
    }
}

ZL_TARGET_AVX2 static void weighted_sum_avx2(const float *p, const float *v, int64_t nk, int64_t hd, float *out) {
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t j = 0; j < nk; j++)
            if (p[j] != 0.0f) acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * hd + i), acc);
        _mm256_storeu_ps(out + i, acc);
    }
    for (; i < hd; i++) {
        float s = 0.0f;
        for (int64_t j = 0; j < nk; j++) s += p[j] * v[j * hd + i];
        out[i] = s;
    }
}

ZL_TARGET_AVX512 static void scores_avx512(const float *q, const float *k, int64_t nk, int64_t hd, float *out) {
    for (int64_t j = 0; j < nk; j++) {
        const float *kj = k + j * hd;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= hd; i += 32) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(kj + i), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(kj + i + 16), a1);
        }
        for (; i < hd; i += 16) {
            __mmask16 m = hd - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - i)) - 1);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, kj + i), a0);
        }
        out[j] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

ZL_TARGET_AVX512 static void weighted_sum_avx512(const float *p, const float *v, int64_t nk, int64_t hd, float *out) {
    for (int64_t i = 0; i < hd; i += 16) {
        __mmask16 m = hd - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - i)) - 1);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < nk; j++)
            if (p[j] != 0.0f) acc = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(m, v + j * hd + i), acc);
        _mm512_mask_storeu_ps(out + i, m, acc);
    }
}
#endif

void zl_attn_scores(const float *q, const float *k, int64_t nk, int64_t hd, float *out) {
#if ZL_X86
    if (zl_cpu_has_avx512()) {
        scores_avx512(q, k, nk, hd, out);
        return;
    }
    if (zl_cpu_has_avx2()) {
        scores_avx2(q, k, nk, hd, out);
        return;
    }
#endif
    scores_portable(q, k, nk, hd, out);
}

void zl_attn_weighted_sum(const float *p, const float *v, int64_t nk, int64_t hd, float *out) {
#if ZL_X86
    if (zl_cpu_has_avx512()) {
        weighted_sum_avx512(p, v, nk, hd, out);
        return;
    }
    if (zl_cpu_has_avx2()) {
        weighted_sum_avx2(p, v, nk, hd, out);
        return;
    }
#endif
    weighted_sum_portable(p, v, nk, hd, out);
}
