/* Gated activations and the attention softmax: both are exp-bound, so each has a
 * vector exp (Cephes' expf: a degree-6 polynomial on [-ln2/2, ln2/2] after range
 * reduction with a two-part ln 2, within 2 ulp of expf on the clamped range) in an
 * AVX-512 and an AVX2+FMA body, and the libm loop as the portable body. */
#include <math.h>

#include "zl_model_kernels.h"
#include "zigllama/zl_cpu.h"

/* exp's input is clamped here: exp(88.376) is the largest power of two's range that
 * stays finite through the exponent add, exp(-87.336) the smallest normal. Beyond
 * them the callers' results are already exact in float32 (a sigmoid of +-87 is 1 or
 * a subnormal; a softmax term below e^-87 of the maximum adds nothing). */
#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3365447504f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f
/* 2 * sqrt(2 / pi): GELU's tanh(u) = 2 sigmoid(2u) - 1. */
#define GELU_2C 1.5957691216057308f
#define GELU_A 0.044715f

static float glu_scalar(float g, float u, int gelu) {
    float z = gelu ? GELU_2C * (g + GELU_A * g * g * g) : g;
    return g / (1.0f + expf(-z)) * u;
}

static void glu_portable(float *gate, const float *up, int64_t n, int gelu) {
    for (int64_t i = 0; i < n; i++) gate[i] = glu_scalar(gate[i], up[i], gelu);
}

static void softmax_portable(float *s, int64_t lo, int64_t hi, float scale, float softcap) {
    float m = -INFINITY, total = 0.0f;
    for (int64_t j = lo; j < hi; j++) {
        float v = s[j] * scale;
        if (softcap > 0) v = softcap * tanhf(v / softcap);
        s[j] = v;
        if (v > m) m = v;
    }
    for (int64_t j = lo; j < hi; j++) {
        float v = expf(s[j] - m);
        s[j] = v;
        total += v;
    }
    float inv = 1.0f / total;
    for (int64_t j = lo; j < hi; j++) s[j] *= inv;
}

#if ZL_X86
#include <immintrin.h>

ZL_TARGET_AVX2 static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

ZL_TARGET_AVX2 static inline __m256 glu_avx2_vec(__m256 g, __m256 u, int gelu) {
    __m256 z = g;
    if (gelu) {
        __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
        z = _mm256_mul_ps(_mm256_set1_ps(GELU_2C), _mm256_fmadd_ps(_mm256_set1_ps(GELU_A), g3, g));
    }
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), z));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

ZL_TARGET_AVX2 static void glu_avx2(float *gate, const float *up, int64_t n, int gelu) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = glu_avx2_vec(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i), gelu);
        __m256 b = glu_avx2_vec(_mm256_loadu_ps(gate + i + 8), _mm256_loadu_ps(up + i + 8), gelu);
        _mm256_storeu_ps(gate + i, a);
        _mm256_storeu_ps(gate + i + 8, b);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(gate + i, glu_avx2_vec(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i), gelu));
    if (i < n) {
        float g[8] = {0}, u[8] = {0};
        for (int64_t j = i; j < n; j++) g[j - i] = gate[j], u[j - i] = up[j];
        _mm256_storeu_ps(g, glu_avx2_vec(_mm256_loadu_ps(g), _mm256_loadu_ps(u), gelu));
        for (int64_t j = i; j < n; j++) gate[j] = g[j - i];
    }
}

ZL_TARGET_AVX2 static float hmax_avx2(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

ZL_TARGET_AVX2 static float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Scores were scaled (and capped) by the caller's first pass when softcap > 0. */
ZL_TARGET_AVX2 static void softmax_avx2(float *s, int64_t n, float scale) {
    __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
    float m = hmax_avx2(vm);
    for (int64_t t = j; t < n; t++) m = s[t] > m ? s[t] : m;
    /* exp(scale * s - scale * max): the max of the scaled scores (scale > 0). */
    __m256 sm = _mm256_set1_ps(m * scale), acc = _mm256_setzero_ps();
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(s + j), vs, sm));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float total = hsum_avx2(acc);
    for (; j < n; j++) {
        s[j] = expf(s[j] * scale - m * scale);
        total += s[j];
    }
    __m256 inv = _mm256_set1_ps(1.0f / total);
    for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
    for (; j < n; j++) s[j] *= 1.0f / total;
}

ZL_TARGET_AVX512 static inline __m512 exp_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

ZL_TARGET_AVX512 static inline __m512 glu_avx512_vec(__m512 g, __m512 u, int gelu) {
    __m512 z = g;
    if (gelu) {
        __m512 g3 = _mm512_mul_ps(_mm512_mul_ps(g, g), g);
        z = _mm512_mul_ps(_mm512_set1_ps(GELU_2C), _mm512_fmadd_ps(_mm512_set1_ps(GELU_A), g3, g));
    }
    __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), z));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

ZL_TARGET_AVX512 static void glu_avx512(float *gate, const float *up, int64_t n, int gelu) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = glu_avx512_vec(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i), gelu);
        __m512 b = glu_avx512_vec(_mm512_loadu_ps(gate + i + 16), _mm512_loadu_ps(up + i + 16), gelu);
        _mm512_storeu_ps(gate + i, a);
        _mm512_storeu_ps(gate + i + 16, b);
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 g = _mm512_maskz_loadu_ps(k, gate + i), u = _mm512_maskz_loadu_ps(k, up + i);
        _mm512_mask_storeu_ps(gate + i, k, glu_avx512_vec(g, u, gelu));
    }
}

ZL_TARGET_AVX512 static void softmax_avx512(float *s, int64_t n, float scale) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    int64_t j;
    for (j = 0; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        vm = _mm512_mask_max_ps(vm, k, vm, _mm512_maskz_loadu_ps(k, s + j));
    }
    float m = _mm512_reduce_max_ps(vm);
    __m512 vs = _mm512_set1_ps(scale), sm = _mm512_set1_ps(m * scale), acc = _mm512_setzero_ps();
    for (j = 0; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, s + j), vs, sm));
        _mm512_mask_storeu_ps(s + j, k, e);
        acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(acc));
    for (j = 0; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_storeu_ps(s + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), inv));
    }
}
#endif

void zl_glu(float *gate, const float *up, int64_t n, int gelu) {
#if ZL_X86
    if (zl_cpu_has_avx512()) {
        glu_avx512(gate, up, n, gelu);
        return;
    }
    if (zl_cpu_has_avx2()) {
        glu_avx2(gate, up, n, gelu);
        return;
    }
#endif
    glu_portable(gate, up, n, gelu);
}

void zl_softmax_row(float *s, int64_t lo, int64_t hi, int64_t n, float scale, float softcap) {
    for (int64_t j = 0; j < lo; j++) s[j] = 0.0f;
    for (int64_t j = hi; j < n; j++) s[j] = 0.0f;
    if (hi <= lo) return;
#if ZL_X86
    /* The vector bodies take the max of the raw scores, so they need scale > 0 and
     * no cap; a capped row is scaled and capped first, then softmax'd with scale 1. */
    if (scale > 0 && (zl_cpu_has_avx512() || zl_cpu_has_avx2())) {
        if (softcap > 0) {
            for (int64_t j = lo; j < hi; j++) s[j] = softcap * tanhf(s[j] * scale / softcap);
            scale = 1.0f;
        }
        if (zl_cpu_has_avx512())
            softmax_avx512(s + lo, hi - lo, scale);
        else
            softmax_avx2(s + lo, hi - lo, scale);
        return;
    }
#endif
    softmax_portable(s, lo, hi, scale, softcap);
}

void zl_soft_cap(float *x, int64_t n, float cap) {
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

const char *zl_model_kernels_path(void) { return zl_simd_name(); }
