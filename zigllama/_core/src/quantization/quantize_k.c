/* K-quant quantizers (super-blocks of 256): ggml's quantize_row_q{2..6}_K_ref
 * without importance weights, and the quantize_row_q{2..6}_K_impl variants when
 * an importance matrix gives one weight per column. The searches are those of
 * ggml (make_qkx2/qkx3/qx/q3/qp_quants); the float operations are the same, in
 * the same order, so the bytes are the same.
 *
 * Each block function returns 0, or 1 when the block overflowed: a stored f16
 * scale is inf/NaN or an intermediate scale is not finite (squares of values
 * beyond ~1.8e19 overflow float), where ggml would silently store garbage.
 */
#include "quantize_impl.h"

static inline int all_finite(const float *v, int n) {
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) return 0;
    }
    return 1;
}

/* ---- Q2_K: 16 sub-blocks of 16, 2-bit quants, 4-bit scales and mins ---- */

static int q2_k_block(const float *restrict x, uint8_t *restrict y, const float *restrict qw) {
    if (zlq_squares_overflow(x, QK_K)) return 1;
    uint8_t L[QK_K], Laux[16], Ls[16], Lm[16];
    float weights[16], mins[16], scales[16], sw[16];
    uint8_t *sc = y, *qs = y + 16, *dp = y + 80, *mp = y + 82;
    if (!qw) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = zlq_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = 15.f / max_scale;
            for (int j = 0; j < 16; ++j) sc[j] = (uint8_t)zlq_nearest_int(iscale * scales[j]);
            zlq_store_f16(dp, max_scale / 15.f);
        } else {
            memset(sc, 0, 16);
            zlq_store_f16(dp, 0.f);
        }
        if (max_min > 0) {
            const float iscale = 15.f / max_min;
            for (int j = 0; j < 16; ++j) sc[j] |= (uint8_t)(zlq_nearest_int(iscale * mins[j]) << 4);
            zlq_store_f16(mp, max_min / 15.f);
        } else {
            zlq_store_f16(mp, 0.f);
        }
    } else {
        float sumx2 = 0;
        for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
        const float sigma2 = sumx2 / QK_K;
        for (int j = 0; j < 16; ++j) {
            const float *w = qw + 16 * j;
            for (int l = 0; l < 16; ++l) weights[l] = w[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            sw[j] = 0;
            for (int l = 0; l < 16; ++l) sw[j] += weights[l];
            scales[j] = zlq_make_qkx3_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, 0);
        }
        zlq_store_f16(dp, zlq_make_qp_quants(16, 15, scales, Ls, sw));
        zlq_store_f16(mp, zlq_make_qp_quants(16, 15, mins, Lm, sw));
        for (int j = 0; j < 16; ++j) sc[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    }
    if (!all_finite(scales, 16) || !all_finite(mins, 16) || zlq_f16_overflowed(dp) || zlq_f16_overflowed(mp)) return 1;
    const float d_all = zl_load_f16(dp), m_all = zl_load_f16(mp);
    for (int j = 0; j < 16; ++j) {
        const float d = d_all * (sc[j] & 0xF);
        if (!d) continue;
        const float dm = m_all * (sc[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (uint8_t)zlq_clamp(zlq_nearest_int((x[16 * j + ii] + dm) / d), 0, 3);
    }
    zlq_pack2_k(L, qs);
    return 0;
}

/* ---- Q3_K: 16 sub-blocks of 16, 3-bit quants (high bit apart), 6-bit scales ---- */

static int q3_k_block(const float *restrict x, uint8_t *restrict y, const float *restrict qw) {
    if (zlq_squares_overflow(x, QK_K)) return 1;
    int8_t L[QK_K], Ls[16];
    float scales[16], weight[16], sw[16];
    uint8_t *hmask = y, *qs = y + 32, *sc = y + 96, *dp = y + 108;
    memset(sc, 0, 12);
    if (!qw) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; ++j) {
            scales[j] = zlq_make_q3_quants(16, 4, x + 16 * j, L + 16 * j, 1);
            const float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; ++j) {
                int8_t l = (int8_t)zlq_nearest_int(iscale * scales[j]);
                l = (int8_t)(zlq_clamp(l, -32, 31) + 32);
                if (j < 8) sc[j] = (uint8_t)(l & 0xF);
                else sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l = (int8_t)(l >> 4);
                sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            zlq_store_f16(dp, 1 / iscale);
        } else {
            zlq_store_f16(dp, 0.f);
        }
    } else {
        float sumx2 = 0;
        for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
        const float sigma2 = 2 * sumx2 / QK_K;
        for (int j = 0; j < 16; ++j) {
            const float *w = qw + 16 * j;
            for (int l = 0; l < 16; ++l) weight[l] = w[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; ++l) sumw += weight[l];
            sw[j] = sumw;
            scales[j] = zlq_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
        }
        const float d_block = zlq_make_qx_quants(16, 32, scales, Ls, 1, sw);
        for (int j = 0; j < 16; ++j) {
            int l = Ls[j];
            if (j < 8) sc[j] = (uint8_t)(l & 0xF);
            else sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
            l >>= 4;
            sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
        }
        zlq_store_f16(dp, d_block);
    }
    if (!all_finite(scales, 16) || zlq_f16_overflowed(dp)) return 1;
    const float d_all = zl_load_f16(dp);
    for (int j = 0; j < 16; ++j) {
        int8_t s = (int8_t)(j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4);
        s = (int8_t)((s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
        const float d = d_all * s;
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (int8_t)(zlq_clamp(zlq_nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    /* the high bit of quants 0..31 goes to bit 0 of hmask[0..31], 32..63 to bit 1, ... */
    memset(hmask, 0, 32);
    for (int j = 0; j < QK_K; ++j) {
        if (L[j] > 3) {
            hmask[j % 32] |= (uint8_t)(1 << (j / 32));
            L[j] = (int8_t)(L[j] - 4);
        }
    }
    zlq_pack2_k((const uint8_t *)L, qs);
    return 0;
}

/* ---- Q4_K / Q5_K: 8 sub-blocks of 32, 6-bit scales and mins ---- */

static inline void pack_scales_k4(uint8_t *sc, int j, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        sc[j] = ls;
        sc[j + 4] = lm;
    } else {
        sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
        sc[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* Scales, mins and the sub-block quants of a Q4_K (nmax 15) or Q5_K (nmax 31)
 * block into y (d, dmin, 12 scale bytes) and L; 1 on overflow. */
static int scales_k4(const float *restrict x, uint8_t *restrict y, const float *restrict qw, int nmax, uint8_t *L) {
    if (zlq_squares_overflow(x, QK_K)) return 1;
    uint8_t Laux[32], Ls[8], Lm[8];
    float weights[32], mins[8], scales[8], sw[8];
    uint8_t *sc = y + 4;
    if (!qw) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = nmax == 15
                ? zlq_make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, 0)
                : zlq_make_qkx2_quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 0);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < 8; ++j) {
            uint8_t ls = (uint8_t)zlq_nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)zlq_nearest_int(inv_min * mins[j]);
            pack_scales_k4(sc, j, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
        }
        zlq_store_f16(y, max_scale / 63.f);
        zlq_store_f16(y + 2, max_min / 63.f);
    } else {
        float sum_x2 = 0;
        for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
        const float sigma2 = 2 * sum_x2 / QK_K;
        for (int j = 0; j < 8; ++j) {
            const float *w = qw + 32 * j;
            for (int l = 0; l < 32; ++l) weights[l] = w[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 32; ++l) sumw += weights[l];
            sw[j] = sumw;
            scales[j] = zlq_make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, 0);
        }
        const float d_block = zlq_make_qp_quants(8, 63, scales, Ls, sw);
        const float m_block = zlq_make_qp_quants(8, 63, mins, Lm, sw);
        for (int j = 0; j < 8; ++j) pack_scales_k4(sc, j, Ls[j] < 63 ? Ls[j] : 63, Lm[j] < 63 ? Lm[j] : 63);
        zlq_store_f16(y, d_block);
        zlq_store_f16(y + 2, m_block);
    }
    if (!all_finite(scales, 8) || !all_finite(mins, 8) || zlq_f16_overflowed(y) || zlq_f16_overflowed(y + 2)) return 1;
    const float d_all = zl_load_f16(y), m_all = zl_load_f16(y + 2);
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        zl_get_scale_min_k4(j, sc, &s, &m);
        const float d = d_all * s;
        if (!d) continue;
        const float dm = m_all * m;
        for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = (uint8_t)zlq_clamp(zlq_nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
    return 0;
}

static int q4_k_block(const float *restrict x, uint8_t *restrict y, const float *restrict qw) {
    uint8_t L[QK_K];
    if (scales_k4(x, y, qw, 15, L)) return 1;
    uint8_t *q = y + 16;
    for (int j = 0; j < QK_K; j += 64, q += 32) {
        for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
    return 0;
}

static int q5_k_block(const float *restrict x, uint8_t *restrict y, const float *restrict qw) {
    uint8_t L[QK_K];
    if (scales_k4(x, y, qw, 31, L)) return 1;
    uint8_t *qh = y + 16, *ql = y + 48;
    memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64, ql += 32) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
    }
    return 0;
}

/* ---- Q6_K: 16 sub-blocks of 16, 6-bit quants, 8-bit signed scales ---- */

static int q6_k_block(const float *restrict x, uint8_t *restrict y, const float *restrict qw) {
    if (zlq_squares_overflow(x, QK_K)) return 1;
    int8_t L[QK_K];
    float scales[16];
    uint8_t *ql = y, *qh = y + 128;
    int8_t *sc = (int8_t *)(y + 192);
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float scale = zlq_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw ? qw + 16 * ib : NULL);
        scales[ib] = scale;
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    if (!all_finite(scales, 16)) return 1;
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(y, 0, 210);
        return 0;
    }
    const float iscale = -128.f / max_scale;
    zlq_store_f16(y + 208, 1 / iscale);
    if (zlq_f16_overflowed(y + 208)) return 1;
    for (int ib = 0; ib < 16; ++ib) {
        const int v = zlq_nearest_int(iscale * scales[ib]);
        sc[ib] = (int8_t)(v < 127 ? v : 127);
    }
    const float d_all = zl_load_f16(y + 208);
    for (int j = 0; j < 16; ++j) {
        const float d = d_all * sc[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (int8_t)(zlq_clamp(zlq_nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; ++l) {
            ql[l] = (uint8_t)((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
        }
    }
    return 0;
}

#define ZLQ_K_RUN(name, bytes) \
    ZLQ_RUN_DECL(name) { \
        for (int64_t i = 0; i < nb; i++) { \
            if (name##_block(x + i * QK_K, y + i * (bytes), qw ? qw + i * QK_K : NULL)) return i; \
        } \
        return -1; \
    }

ZLQ_K_RUN(q2_k, 84)
ZLQ_K_RUN(q3_k, 110)
ZLQ_K_RUN(q4_k, 144)
ZLQ_K_RUN(q5_k, 176)
ZLQ_K_RUN(q6_k, 210)
