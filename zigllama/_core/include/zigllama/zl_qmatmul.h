/* Quantized matrix products: y = x @ W.T with W left in its GGML blocks.
 *
 * W is a zl_qtensor: `rows` rows of `cols` values of ggml type `type`, each row
 * `row_stride` bytes apart (GGUF stores a (out_features, in_features) weight as
 * out_features rows of in_features values). x is m rows of cols float32 values,
 * ldx floats apart; y receives m rows of `rows` float32 values, ldy apart.
 *
 * Two modes:
 *  - ZL_QGEMM_FAST: x is quantized per block as ggml's vec_dot does (Q8_0 for the
 *    legacy types and IQ4_NL, Q8_K for the K-quants and IQ4_XS) and every block
 *    product is an integer dot product scaled once; F16/BF16/F32 weights take x
 *    as float32.
 *  - ZL_QGEMM_EXACT: panels of W are dequantized to float32 and multiplied with
 *    the backend's sgemm: dequantize(W) @ x.T up to float summation order.
 *
 * The entry point is the `qgemm` slot at the end of zl_blas_vtable (zl_blas.h):
 *     status = blas.vtable->qgemm(blas.ctx, &w, m, x, ldx, y, ldy, ZL_QGEMM_FAST, 0);
 * nthreads <= 0 uses every thread of the pool at hand (the calling task's pool,
 * else zigllama's default pool). It returns ZL_BLAS_OK or a negative ZL_BLAS_E*
 * code, never raises and never needs the GIL except to look up the default pool.
 */
#ifndef ZIGLLAMA_ZL_QMATMUL_H
#define ZIGLLAMA_ZL_QMATMUL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zl_qtensor {
    const uint8_t *data; /* the first row's first block */
    int type;            /* ggml type id */
    int64_t rows;        /* output features */
    int64_t cols;        /* input features: a whole number of blocks */
    int64_t row_stride;  /* bytes from one row to the next (>= the row's bytes) */
} zl_qtensor;

enum { ZL_QGEMM_FAST = 0, ZL_QGEMM_EXACT = 1 };

/* Kernel paths, widest last. */
enum {
    ZL_QPATH_PORTABLE = 0,
    ZL_QPATH_AVX2 = 1,
    ZL_QPATH_AVX_VNNI = 2,
    ZL_QPATH_AVX512_VNNI = 3,
    ZL_QPATH_COUNT = 4
};

#ifdef __cplusplus
}
#endif

#endif
