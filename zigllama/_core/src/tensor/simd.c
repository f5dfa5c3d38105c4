#include "zl_tensor_simd.h"
#include "zigllama/zl_cpu.h"

/* Plain loops: the compiler vectorises them with 256-bit registers under the target
 * attribute. out may be a or b (in-place), or overlap neither. */
#define ZL_BINARY_LOOP(name, T, OP)                                             \
    ZL_TARGET_AVX2 void name(ptrdiff_t n, const T *a, const T *b, T *out) {    \
        for (ptrdiff_t i = 0; i < n; i++) out[i] = a[i] OP b[i];                \
    }

ZL_BINARY_LOOP(zl_add_f32_avx2, float, +)
ZL_BINARY_LOOP(zl_mul_f32_avx2, float, *)
ZL_BINARY_LOOP(zl_add_f64_avx2, double, +)
ZL_BINARY_LOOP(zl_mul_f64_avx2, double, *)
