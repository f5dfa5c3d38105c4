/* RMSNorm fused with its weight and, between blocks, with the residual add (and
 * gemma2/3's post-norm of the block's output): one pass over a row that stays in L1.
 * Sums of squares are accumulated in double, as the reference does. */
#include <math.h>

#include "zl_model_kernels.h"
#include "zigllama/zl_cpu.h"

static double sumsq_portable(const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static void scale_mul_portable(const float *x, float scale, const float *w, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void add_portable(float *x, const float *d, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += d[i];
}

#if ZL_X86
#include <immintrin.h>

ZL_TARGET_AVX2 static double sumsq_avx2(const float *x, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

ZL_TARGET_AVX2 static void scale_mul_avx2(const float *x, float scale, const float *w, float *out, int64_t n) {
    __m256 s = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = x[i] * scale * w[i];
}

ZL_TARGET_AVX2 static void add_avx2(float *x, const float *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(d + i)));
    for (; i < n; i++) x[i] += d[i];
}

ZL_TARGET_AVX512 static double sumsq_avx512(const float *x, int64_t n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        a0 = _mm512_fmadd_pd(lo, lo, a0);
        a1 = _mm512_fmadd_pd(hi, hi, a1);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

ZL_TARGET_AVX512 static void scale_mul_avx512(const float *x, float scale, const float *w, float *out, int64_t n) {
    __m512 s = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), s), _mm512_maskz_loadu_ps(k, w + i));
        _mm512_mask_storeu_ps(out + i, k, v);
    }
}

ZL_TARGET_AVX512 static void add_avx512(float *x, const float *d, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, d + i)));
    }
}
#endif

static double sumsq(const float *x, int64_t n) {
#if ZL_X86
    if (zl_cpu_has_avx512()) return sumsq_avx512(x, n);
    if (zl_cpu_has_avx2()) return sumsq_avx2(x, n);
#endif
    return sumsq_portable(x, n);
}

static void scale_mul(const float *x, float scale, const float *w, float *out, int64_t n) {
#if ZL_X86
    if (zl_cpu_has_avx512()) {
        scale_mul_avx512(x, scale, w, out, n);
        return;
    }
    if (zl_cpu_has_avx2()) {
        scale_mul_avx2(x, scale, w, out, n);
        return;
    }
#endif
    scale_mul_portable(x, scale, w, out, n);
}

static void add_row(float *x, const float *d, int64_t n) {
#if ZL_X86
    if (zl_cpu_has_avx512()) {
        add_avx512(x, d, n);
        return;
    }
    if (zl_cpu_has_avx2()) {
        add_avx2(x, d, n);
        return;
    }
#endif
    add_portable(x, d, n);
}

static float rms_scale(const float *x, float eps, int64_t n) {
    return (float)(1.0 / sqrt(sumsq(x, n) / (double)n + (double)eps));
}

void zl_rms_norm_row(const float *x, const float *w, float eps, float *out, int64_t n) {
    if (n <= 0) return;
    scale_mul(x, rms_scale(x, eps, n), w, out, n);
}

void zl_residual_norm_row(float *x, const float *delta, const float *post_w, const float *next_w,
                          float eps, float *out, int64_t n) {
    if (n <= 0) return;
    if (post_w != NULL) {
        /* x += rms_norm(delta) * post_w, without writing delta: out is the scratch. */
        scale_mul(delta, rms_scale(delta, eps, n), post_w, out, n);
        add_row(x, out, n);
    } else {
        add_row(x, delta, n);
    }
    if (next_w != NULL) scale_mul(x, rms_scale(x, eps, n), next_w, out, n);
}
