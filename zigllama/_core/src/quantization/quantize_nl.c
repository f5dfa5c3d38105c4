/* IQ4_NL and IQ4_XS: 4-bit indices into a non-linear table of 16 levels, as
 * ggml's quantize_iq4_nl / quantize_iq4_xs do it (quantize_row_iq4_nl_impl with
 * 7 tries either side of the first scale, with or without importance weights).
 * That is what ggml_quantize_chunk, and so llama-quantize, produces; ggml's
 * quantize_row_iq4_nl_ref alone makes no tries and can differ. */
#include "quantize_impl.h"

static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const float levels_f[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

#define NTRY 7

/* Index of the level nearest to x (ties go down), by bisection. */
static inline int nearest_level(float x) {
    const int8_t *val = kvalues_iq4nl;
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < val[mav]) mu = mav;
        else ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* Nearest level indices of id * x[j] for n values. */
static void indices(const float *x, float id, int n, uint8_t *L) {
#if ZL_X86
    if (zl_cpu_has_avx2()) {
        zlq_iq4_indices_avx2(x, id, n, levels_f, L);
        return;
    }
#endif
    for (int j = 0; j < n; ++j) L[j] = (uint8_t)nearest_level(id * x[j]);
}

/* Best scale of one block of 32 (0 for a block of zeros); its indices in Lb. */
static float block_scale(const float *xb, const float *weight, uint8_t *Lb) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
        const float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < GROUP_MAX_EPS) return 0;
    float d = -max / kvalues_iq4nl[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    indices(xb, id, 32, Lb);
    for (int j = 0; j < 32; ++j) {
        const int l = Lb[j];
        const float q = kvalues_iq4nl[l];
        sumqx += weight[j] * q * xb[j];
        sumq2 += weight[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
#if ZL_X86
    if (zl_cpu_has_avx2()) {
        zlq_iq4_tries_avx2(xb, weight, max, levels_f, &d, &best);
        return d;
    }
#endif
    for (int itry = -NTRY; itry <= NTRY; ++itry) {
        id = (itry + kvalues_iq4nl[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            const float q = kvalues_iq4nl[nearest_level(id * xb[j])];
            sumqx += weight[j] * q * xb[j];
            sumq2 += weight[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Weights of one block of 32: qw * sqrt(sigma2 + x^2) with importance weights,
 * x^2 without. */
static inline void block_weights(const float *xb, const float *qw, float sigma2, float *weight) {
    for (int j = 0; j < 32; ++j) weight[j] = qw ? qw[j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
}

static inline float mean_square_x2(const float *x, int n) {
    float sigma2 = 0;
    for (int j = 0; j < n; ++j) sigma2 += x[j] * x[j];
    return sigma2 * (2.f / n);
}

static inline void pack_nibbles(const uint8_t *L, uint8_t *q4, int n) {
    for (int i = 0; i < n / 32; ++i) {
        for (int j = 0; j < 16; ++j) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
    }
}

ZLQ_RUN_DECL(iq4_nl) {
    uint8_t L[32];
    float weight[32];
    for (int64_t i = 0; i < nb; i++, x += 32, y += 18) {
        const float *w = qw ? qw + 32 * i : NULL;
        if (zlq_squares_overflow(x, 32)) return i;
        block_weights(x, w, mean_square_x2(x, 32), weight);
        /* L keeps its last contents for a block of zeros, as in ggml: the
         * re-indexing below overwrites them anyway. */
        const float d = block_scale(x, weight, L);
        if (!isfinite(d)) return i;
        zlq_store_f16(y, d);
        if (zlq_f16_overflowed(y)) return i;
        const float id = d ? 1 / d : 0;
        indices(x, id, 32, L);
        pack_nibbles(L, y + 2, 32);
    }
    return -1;
}

ZLQ_RUN_DECL(iq4_xs) {
    uint8_t L[QK_K];
    float weight[32], scales[8];
    for (int64_t i = 0; i < nb; i++, x += QK_K, y += 136) {
        const float *w = qw ? qw + QK_K * i : NULL;
        if (zlq_squares_overflow(x, QK_K)) return i;
        const float sigma2 = mean_square_x2(x, QK_K);
        float max_scale = 0, amax_scale = 0;
        for (int ib = 0; ib < 8; ++ib) {
            block_weights(x + 32 * ib, w ? w + 32 * ib : NULL, sigma2, weight);
            scales[ib] = block_scale(x + 32 * ib, weight, L + 32 * ib);
            if (!isfinite(scales[ib])) return i;
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        const float d = -max_scale / 32;
        zlq_store_f16(y, d);
        if (zlq_f16_overflowed(y)) return i;
        const float id = d ? 1 / d : 0.f;
        uint16_t scales_h = 0;
        uint8_t *scales_l = y + 4;
        for (int ib = 0; ib < 8; ++ib) {
            int l = zlq_clamp(zlq_nearest_int(id * scales[ib]), -32, 31);
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            indices(x + 32 * ib, idl, 32, L + 32 * ib);
            l += 32;
            if (ib % 2 == 0) scales_l[ib / 2] = (uint8_t)(l & 0xf);
            else scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
            scales_h |= (uint16_t)((l >> 4) << (2 * (ib % 8)));
        }
        y[2] = (uint8_t)(scales_h & 0xff);
        y[3] = (uint8_t)(scales_h >> 8);
        pack_nibbles(L, y + 8, QK_K);
    }
    return -1;
}
