/* Quantizers from float32 rows.
 *
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: byte-exact with gguf.quants.quantize, whose
 * float32 steps are those of ggml's quantize_row_*_ref (d = extreme / -8 and
 * so on; truncation after adding 8.5 or 0.5; round-half-away for Q8_0).
 * Q4_K, Q6_K: ggml's quantize_row_q4_K_ref / quantize_row_q6_K_ref with
 * make_qkx2_quants / make_qx_quants (the gguf package has no K quantizers).
 * Inputs are finite (the caller checks).
 */
#include <math.h>

#include "zl_quants_impl.h"

#define QK 32
#define GROUP_MAX_EPS 1e-15f

/* float -> IEEE half, rounding to nearest even (what numpy's astype(float16) and
 * F16C's round-to-nearest mode do); finite inputs. */
static uint16_t f32_to_f16(float f) {
    union { float f; uint32_t u; } v;
    v.f = f;
    const uint32_t sign = (v.u >> 16) & 0x8000u;
    const uint32_t a = v.u & 0x7fffffffu;
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (a < 0x38800000u) { /* below 2^-14: a half subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign;      /* below 2^-25 */
        const uint32_t e = a >> 23;
        const uint32_t m = (a & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e;
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = (a - 0x38000000u) >> 13;
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static void store_f16(uint8_t *p, float f) {
    const uint16_t h = f32_to_f16(f);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* The element of largest magnitude, the first one on ties (numpy's argmax of
 * |x|), with its sign: a block of zeros starting with -0 gives -0. */
static float signed_absmax(const float *x, int n) {
    float amax = fabsf(x[0]), max = x[0];
    for (int j = 1; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *lo, float *hi) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < n; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    *lo = mn;
    *hi = mx;
}

static inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Symmetric blocks (Q4_0, Q5_0): d = the signed extreme / -half, stored as f16;
 * returns 1/d (0 for an all-zero block). */
static float symmetric_scale(const float *x, float half, uint8_t *y) {
    const float d = signed_absmax(x, QK) / -half;
    store_f16(y, d);
    return d != 0.0f ? 1.0f / d : 0.0f;
}

/* Blocks with a min (Q4_1, Q5_1): d = (max - min) / top; d and min stored as
 * f16; returns 1/d (0 for a constant block) and the min. */
static float affine_scale(const float *x, float top, uint8_t *y, float *min) {
    float mn, mx;
    min_max(x, QK, &mn, &mx);
    const float d = (mx - mn) / top;
    store_f16(y, d);
    store_f16(y + 2, mn);
    *min = mn;
    return d != 0.0f ? 1.0f / d : 0.0f;
}

/* Two 4-bit quants per byte: q[j] low, q[j + 16] high. */
static void pack4(const int *q, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
}

/* The 5-bit formats: low nibbles packed as Q4, fifth bits in a little-endian u32. */
static void pack5(const int *q, uint8_t *qh, uint8_t *qs) {
    uint32_t h = 0;
    pack4(q, qs);
    for (int j = 0; j < QK; j++) h |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int b = 0; b < 4; b++) qh[b] = (uint8_t)(h >> (8 * b));
}

void zl_quantize_row_q4_0(const float *restrict x, uint8_t *restrict y, int64_t n) {
    int q[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK, y += 18) {
        const float id = symmetric_scale(x, 8.0f, y);
        for (int j = 0; j < QK; j++) q[j] = clamp_int((int)truncf(x[j] * id + 8.5f), 0, 15);
        pack4(q, y + 2);
    }
}

void zl_quantize_row_q4_1(const float *restrict x, uint8_t *restrict y, int64_t n) {
    int q[QK];
    float mn;
    for (int64_t i = 0; i < n / QK; i++, x += QK, y += 20) {
        const float id = affine_scale(x, 15.0f, y, &mn);
        for (int j = 0; j < QK; j++) q[j] = clamp_int((int)truncf((x[j] - mn) * id + 0.5f), 0, 15);
        pack4(q, y + 4);
    }
}

void zl_quantize_row_q5_0(const float *restrict x, uint8_t *restrict y, int64_t n) {
    int q[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK, y += 22) {
        const float id = symmetric_scale(x, 16.0f, y);
        for (int j = 0; j < QK; j++) q[j] = clamp_int((int)truncf(x[j] * id + 16.5f), 0, 31);
        pack5(q, y + 2, y + 6);
    }
}

void zl_quantize_row_q5_1(const float *restrict x, uint8_t *restrict y, int64_t n) {
    int q[QK];
    float mn;
    for (int64_t i = 0; i < n / QK; i++, x += QK, y += 24) {
        const float id = affine_scale(x, 31.0f, y, &mn);
        for (int j = 0; j < QK; j++) q[j] = clamp_int((int)truncf((x[j] - mn) * id + 0.5f), 0, 31);
        pack5(q, y + 4, y + 8);
    }
}

void zl_quantize_row_q8_0(const float *restrict x, uint8_t *restrict y, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++, x += QK, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_f16(y, d);
        for (int j = 0; j < QK; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

/* ---- K-quants (ggml's reference quantizers) ---- */

/* Round to nearest with ties to even, for |f| <= 2^22 (ggml's nearest_int). */
static inline int nearest_int(float f) {
    union { float f; int32_t i; } v;
    v.f = f + 12582912.0f;
    return (v.i & 0x007fffff) - 0x00400000;
}

/* Scale and min for n values on [0, nmax], searching nstep scales around the
 * min-max one for the least weighted squared error (make_qkx2_quants). */
static float make_qkx2_quants(int n, int nmax, const float *restrict x, const float *restrict weights,
                              uint8_t *restrict L, float *restrict the_min, uint8_t *restrict Laux,
                              float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)clamp_int(l, 0, nmax);
        const float diff = scale * L[i] + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Signed scale for n values on [-nmax, nmax-1], searching 18 scales around
 * -nmax/max for the best weighted fit, weights x^2 (make_qx_quants, rmse_type 1). */
static float make_qx_quants(int n, int nmax, const float *restrict x, int8_t *restrict L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + clamp_int(l, -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void zl_quantize_row_q4_k(const float *restrict x, uint8_t *restrict y, int64_t n) {
    uint8_t L[QK_K], Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K, y += 144) {
        uint8_t *sc = y + 4;
        uint8_t *qs = y + 16;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 32; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
        const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
        memset(sc, 0, 12);
        for (int j = 0; j < QK_K / 32; ++j) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                sc[j] = ls;
                sc[j + 4] = lm;
            } else {
                sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
                sc[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        store_f16(y, max_scale / 63.0f);
        store_f16(y + 2, max_min / 63.0f);
        const float d_all = zl_load_f16(y);
        const float dmin_all = zl_load_f16(y + 2);
        for (int j = 0; j < QK_K / 32; ++j) {
            uint8_t s, m;
            zl_get_scale_min_k4(j, sc, &s, &m);
            const float d = d_all * s;
            if (!d) continue;
            const float dm = dmin_all * m;
            for (int ii = 0; ii < 32; ++ii) {
                L[32 * j + ii] = (uint8_t)clamp_int(nearest_int((x[32 * j + ii] + dm) / d), 0, 15);
            }
        }
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; ++l) qs[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            qs += 32;
        }
    }
}

void zl_quantize_row_q6_k(const float *restrict x, uint8_t *restrict y, int64_t n) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K, y += 210) {
        uint8_t *ql = y;
        uint8_t *qh = y + 128;
        int8_t *sc = (int8_t *)(y + 192);
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(y, 0, 210);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        store_f16(y + 208, 1 / iscale);
        const float d_all = zl_load_f16(y + 208);
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const int v = nearest_int(iscale * scales[ib]);
            sc[ib] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = d_all * sc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                L[16 * j + ii] = (int8_t)(clamp_int(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
            }
        }
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF;
                const uint8_t q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF;
                const uint8_t q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}
