/* AVX2 builds of the contiguous float32/float64 add and multiply loops.
 *
 * The same loop as the portable kernel in tensor.pyx, compiled for AVX2 through a
 * target attribute (the package itself is built for baseline x86-64) and chosen at
 * run time when zl_cpu_has_avx2() says so. Element-wise IEEE add/multiply round
 * the same on every path, so the results are identical.
 */
#ifndef ZIGLLAMA_ZL_TENSOR_SIMD_H
#define ZIGLLAMA_ZL_TENSOR_SIMD_H

#include <stddef.h>

void zl_add_f32_avx2(ptrdiff_t n, const float *a, const float *b, float *out);
void zl_mul_f32_avx2(ptrdiff_t n, const float *a, const float *b, float *out);
void zl_add_f64_avx2(ptrdiff_t n, const double *a, const double *b, double *out);
void zl_mul_f64_avx2(ptrdiff_t n, const double *a, const double *b, double *out);

#endif
