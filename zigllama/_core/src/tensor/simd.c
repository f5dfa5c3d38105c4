#include "zl_tensor_simd.h"
#include "zigllama/zl_cpu.h"

#if ZL_X86
#include <immintrin.h>

/* Four 256-bit vectors per iteration (as numpy's own loops), unaligned loads and
 * stores, then a scalar tail. out may be a or b (in place): every element is read
 * before it is written. */
#define ZL_BINARY_AVX2(name, T, VEC, LOAD, STORE, OP, LANES, op)                     \
    ZL_TARGET_AVX2 void name(ptrdiff_t n, const T *a, const T *b, T *out) {          \
        ptrdiff_t i = 0;                                                             \
        for (; i + 4 * LANES <= n; i += 4 * LANES) {                                 \
            VEC x0 = OP(LOAD(a + i), LOAD(b + i));                                   \
            VEC x1 = OP(LOAD(a + i + LANES), LOAD(b + i + LANES));                   \
            VEC x2 = OP(LOAD(a + i + 2 * LANES), LOAD(b + i + 2 * LANES));           \
            VEC x3 = OP(LOAD(a + i + 3 * LANES), LOAD(b + i + 3 * LANES));           \
            STORE(out + i, x0);                                                      \
            STORE(out + i + LANES, x1);                                              \
            STORE(out + i + 2 * LANES, x2);                                          \
            STORE(out + i + 3 * LANES, x3);                                          \
        }                                                                            \
        for (; i < n; i++) out[i] = a[i] op b[i];                                    \
    }

ZL_BINARY_AVX2(zl_add_f32_avx2, float, __m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, 8, +)
ZL_BINARY_AVX2(zl_mul_f32_avx2, float, __m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_mul_ps, 8, *)
ZL_BINARY_AVX2(zl_add_f64_avx2, double, __m256d, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_add_pd, 4, +)
ZL_BINARY_AVX2(zl_mul_f64_avx2, double, __m256d, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_mul_pd, 4, *)

#else
/* Not x86: never chosen (zl_cpu_has_avx2() is 0); plain loops keep the symbols. */
#define ZL_BINARY_PLAIN(name, T, op)                                                 \
    void name(ptrdiff_t n, const T *a, const T *b, T *out) {                         \
        for (ptrdiff_t i = 0; i < n; i++) out[i] = a[i] op b[i];                     \
    }
ZL_BINARY_PLAIN(zl_add_f32_avx2, float, +)
ZL_BINARY_PLAIN(zl_mul_f32_avx2, float, *)
ZL_BINARY_PLAIN(zl_add_f64_avx2, double, +)
ZL_BINARY_PLAIN(zl_mul_f64_avx2, double, *)
#endif
