/* Helpers shared by the quantizers of this directory (not public).
 *
 * Every quantizer reproduces the float arithmetic of ggml's C quantizers step for
 * step (same operations, same order; the build has -ffp-contract=off), since a
 * single differently rounded product can move a quant and change the bytes.
 */
#ifndef ZIGLLAMA_QUANTIZE_IMPL_H
#define ZIGLLAMA_QUANTIZE_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "zl_quants_impl.h"

#define GROUP_MAX_EPS 1e-15f

static inline uint32_t zlq_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float zlq_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* float -> IEEE half as ggml's portable conversion does it: round to nearest
 * even, overflow to inf, every NaN to a quiet 0x7E00 with the input's sign. */
static inline uint16_t zlq_f32_to_f16(float f) {
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = zlq_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = zlq_float((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = zlq_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

/* Stores f as a little-endian half and returns what was stored, as a float
 * (the quantizers continue with the rounded scale, as ggml does). */
static inline float zlq_store_f16(uint8_t *p, float f) {
    const uint16_t h = zlq_f32_to_f16(f);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
    return zl_f16_to_f32(h);
}

/* True when the half at p is inf or NaN. */
static inline int zlq_f16_overflowed(const uint8_t *p) { return (zl_load_u16(p) & 0x7C00u) == 0x7C00u; }

/* Round to nearest, ties to even, for |f| <= 2^22 (ggml's nearest_int). */
static inline int zlq_nearest_int(float f) {
    const float v = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* True when the squares of a super-block's values overflow float32 (values
 * beyond about 1.8e19 / sqrt(n)): the K-quant and IQ4 searches weight by them
 * and would turn the block into NaN or zeros. */
static inline int zlq_squares_overflow(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return !isfinite(s);
}

static inline int zlq_clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Packs 256 2-bit quants the K-quant way: byte l of each 32-byte group holds
 * the quants l, l+32, l+64, l+96 of its 128-value half. */
static inline void zlq_pack2_k(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        }
    }
}

/* ggml's searches for a sub-block's scale (quantize_search.c). */
float zlq_make_qkx2_quants(int n, int nmax, const float *restrict x, const float *restrict weights,
                           uint8_t *restrict L, float *restrict the_min, uint8_t *restrict Laux,
                           float rmin, float rdelta, int nstep, int use_mad);
float zlq_make_qkx3_quants(int n, int nmax, const float *restrict x, const float *restrict weights,
                           uint8_t *restrict L, float *restrict the_min, uint8_t *restrict Laux,
                           float rmin, float rdelta, int nstep, int use_mad);
float zlq_make_qx_quants(int n, int nmax, const float *restrict x, int8_t *restrict L, int rmse_type,
                         const float *restrict qw);
float zlq_make_q3_quants(int n, int nmax, const float *restrict x, int8_t *restrict L, int do_rmse);
float zlq_make_qp_quants(int n, int nmax, const float *restrict x, uint8_t *restrict L, const float *restrict qw);

#if ZL_X86
/* The candidate loop of make_qkx2/qkx3_quants, eight candidates per step
 * (quantize_simd.c), bit-identical to the portable loop. */
void zlq_search_scale_min_avx2(int n, int nmax, const float *restrict x, const float *restrict w, float sum_w,
                               float sum_x, float *min_io, float max, uint8_t *restrict L, float *scale_io,
                               float *best_error_io, float rmin, float rdelta, int nstep, int use_mad);
/* The 18 neighbouring candidates of make_qx_quants in lanes (quantize_simd.c);
 * w holds each value's weight. */
void zlq_qx_candidates_avx2(int n, int nmax, const float *restrict x, const float *restrict w, float max,
                            int8_t *restrict L, float *scale_io, float *best_io);
/* IQ4 (quantize_nl.c): nearest levels of id * x for n values (a multiple of 8),
 * and the 15 scale tries of a block of 32, in lanes. levels: the table as floats. */
void zlq_iq4_indices_avx2(const float *restrict x, float id, int n, const float *levels, uint8_t *restrict L);
void zlq_iq4_tries_avx2(const float *restrict xb, const float *restrict weight, float max, const float *levels,
                        float *d_io, float *best_io);
#endif

/* The K-quant kernels (quantize_k.c), the non-linear 4-bit ones (quantize_nl.c)
 * and the rest (quantize_legacy.c). */
#define ZLQ_RUN_DECL(name) \
    int64_t zlq_run_##name(const float *restrict x, uint8_t *restrict y, int64_t nb, const float *restrict qw)

ZLQ_RUN_DECL(q4_0);
ZLQ_RUN_DECL(q4_1);
ZLQ_RUN_DECL(q5_0);
ZLQ_RUN_DECL(q5_1);
ZLQ_RUN_DECL(q8_0);
ZLQ_RUN_DECL(q2_k);
ZLQ_RUN_DECL(q3_k);
ZLQ_RUN_DECL(q4_k);
ZLQ_RUN_DECL(q5_k);
ZLQ_RUN_DECL(q6_k);
ZLQ_RUN_DECL(iq4_nl);
ZLQ_RUN_DECL(iq4_xs);
ZLQ_RUN_DECL(tq1_0);
ZLQ_RUN_DECL(tq2_0);
ZLQ_RUN_DECL(mxfp4);
ZLQ_RUN_DECL(f16);
ZLQ_RUN_DECL(bf16);

#endif
