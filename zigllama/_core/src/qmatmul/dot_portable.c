/* Portable C dot products of one weight row with one quantized activation row.
 *
 * The arithmetic is ggml's vec_dot_*: integer sums inside a block, the float
 * scales applied once per block (K-quants: per super-block, the sub-block scales
 * folded into the integer sum). Q4_1 and Q5_1 take Q8_0 activations and the
 * exact integer sum of a block (ggml's Q8_1 rounds d * sum to f16). */
#include <math.h>

#include "qmatmul_impl.h"
#include "../quantization/iq_grids.h"

#define QK 32

/* A row kernel `dot_<name>(k, w, x)` -> the zl_qdot_fn `rows_<name>`. */
#define ZL_ROWS(name)                                                                           \
    static void rows_##name(int64_t k, const uint8_t *w, int64_t stride, int64_t nrows,        \
                            const uint8_t *xq, float *y) {                                     \
        for (int64_t r = 0; r < nrows; r++) y[r] = dot_##name(k, w + r * stride, xq);          \
    }

/* ---- activation quantizer (Q8_0 comes from the package's reference quantizer) ---- */

/* ggml's nearest_int: round half to even through the float mantissa (|v| < 2^22). */
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

/* quantize_row_q8_K_ref: d = max / -127 of the element of largest magnitude. */
void zl_quantize_act_q8_k_portable(const float *x, uint8_t *dst, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K, dst += ZL_Q8_K_BYTES) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        int8_t *qs = (int8_t *)(dst + 4);
        if (amax == 0) {
            memset(dst, 0, ZL_Q8_K_BYTES);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(iscale * x[j]);
            qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int16_t sum = 0;
            for (int l = 0; l < 16; l++) sum = (int16_t)(sum + qs[j * 16 + l]);
            memcpy(dst + 260 + 2 * j, &sum, 2);
        }
        const float d = 1 / iscale;
        memcpy(dst, &d, 4);
    }
}

/* ---- legacy blocks of 32 against Q8_0 ---- */

static float dot_q4_0(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t ib = 0; ib < k / QK; ib++, w += 18, x += ZL_Q8_0_BYTES) {
        const int8_t *q8 = (const int8_t *)(x + 2);
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += ((w[2 + j] & 0xF) - 8) * q8[j] + ((w[2 + j] >> 4) - 8) * q8[j + 16];
        s += (float)sumi * (zl_load_f16(w) * zl_load_f16(x));
    }
    return s;
}
ZL_ROWS(q4_0)

static float dot_q4_1(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t ib = 0; ib < k / QK; ib++, w += 20, x += ZL_Q8_0_BYTES) {
        const int8_t *q8 = (const int8_t *)(x + 2);
        int sumi = 0, sumx = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (w[4 + j] & 0xF) * q8[j] + (w[4 + j] >> 4) * q8[j + 16];
            sumx += q8[j] + q8[j + 16];
        }
        const float dx = zl_load_f16(x);
        s += (float)sumi * (zl_load_f16(w) * dx) + zl_load_f16(w + 2) * (dx * (float)sumx);
    }
    return s;
}
ZL_ROWS(q4_1)

static float dot_q5_0(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t ib = 0; ib < k / QK; ib++, w += 22, x += ZL_Q8_0_BYTES) {
        const int8_t *q8 = (const int8_t *)(x + 2);
        const uint32_t qh = zl_load_u32(w + 2);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            sumi += (((w[6 + j] & 0xF) | h0) - 16) * q8[j] + (((w[6 + j] >> 4) | h1) - 16) * q8[j + 16];
        }
        s += (float)sumi * (zl_load_f16(w) * zl_load_f16(x));
    }
    return s;
}
ZL_ROWS(q5_0)

static float dot_q5_1(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t ib = 0; ib < k / QK; ib++, w += 24, x += ZL_Q8_0_BYTES) {
        const int8_t *q8 = (const int8_t *)(x + 2);
        const uint32_t qh = zl_load_u32(w + 4);
        int sumi = 0, sumx = 0;
        for (int j = 0; j < 16; j++) {
            int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            sumi += ((w[8 + j] & 0xF) | h0) * q8[j] + ((w[8 + j] >> 4) | h1) * q8[j + 16];
            sumx += q8[j] + q8[j + 16];
        }
        const float dx = zl_load_f16(x);
        s += (float)sumi * (zl_load_f16(w) * dx) + zl_load_f16(w + 2) * (dx * (float)sumx);
    }
    return s;
}
ZL_ROWS(q5_1)

static float dot_q8_0(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t ib = 0; ib < k / QK; ib++, w += 34, x += ZL_Q8_0_BYTES) {
        const int8_t *qw = (const int8_t *)(w + 2), *q8 = (const int8_t *)(x + 2);
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += qw[j] * q8[j];
        s += (float)sumi * (zl_load_f16(w) * zl_load_f16(x));
    }
    return s;
}
ZL_ROWS(q8_0)

static float dot_iq4_nl(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t ib = 0; ib < k / QK; ib++, w += 18, x += ZL_Q8_0_BYTES) {
        const int8_t *q8 = (const int8_t *)(x + 2);
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += zl_kvalues_iq4nl[w[2 + j] & 0xF] * q8[j] + zl_kvalues_iq4nl[w[2 + j] >> 4] * q8[j + 16];
        s += (float)sumi * (zl_load_f16(w) * zl_load_f16(x));
    }
    return s;
}
ZL_ROWS(iq4_nl)

/* ---- K-quants against Q8_K: x block = f32 d, qs[256] at 4, bsums[16] at 260 ---- */

static inline const int8_t *q8k_qs(const uint8_t *x) { return (const int8_t *)(x + 4); }
static inline int q8k_bsum(const uint8_t *x, int j) { return zl_q_i16(x + 260 + 2 * j); }

/* sum over 16-element sub-blocks j of sc[j] * (a . q8), a given as 256 int8. */
static inline int scaled_dot16(const int8_t *a, const int8_t *q8, const int8_t *sc) {
    int total = 0;
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += a[16 * j + l] * q8[16 * j + l];
        total += sc[j] * s;
    }
    return total;
}

static float dot_q2_k(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t i = 0; i < k / QK_K; i++, w += 84, x += ZL_Q8_K_BYTES) {
        const uint8_t *sc = w, *q2 = w + 16;
        int8_t a[QK_K], scl[16];
        int summs = 0;
        for (int j = 0; j < 16; j++) {
            summs += q8k_bsum(x, j) * (sc[j] >> 4);
            scl[j] = (int8_t)(sc[j] & 0xF);
        }
        for (int half = 0; half < 2; half++)
            for (int g = 0; g < 4; g++)
                for (int l = 0; l < 32; l++) a[128 * half + 32 * g + l] = (int8_t)((q2[32 * half + l] >> (2 * g)) & 3);
        const float dx = zl_load_f32(x);
        const int isum = scaled_dot16(a, q8k_qs(x), scl);
        s += dx * zl_load_f16(w + 80) * (float)isum - dx * zl_load_f16(w + 82) * (float)summs;
    }
    return s;
}
ZL_ROWS(q2_k)

static float dot_q3_k(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t i = 0; i < k / QK_K; i++, w += 110, x += ZL_Q8_K_BYTES) {
        const uint8_t *hm = w, *q3 = w + 32;
        int8_t a[QK_K], sc[16];
        zl_q_scales_q3_k(w + 96, sc);
        uint8_t m = 1;
        for (int half = 0; half < 2; half++)
            for (int g = 0; g < 4; g++, m = (uint8_t)(m << 1))
                for (int l = 0; l < 32; l++)
                    a[128 * half + 32 * g + l] =
                        (int8_t)(((q3[32 * half + l] >> (2 * g)) & 3) - ((hm[l] & m) ? 0 : 4));
        s += zl_load_f16(w + 108) * zl_load_f32(x) * (float)scaled_dot16(a, q8k_qs(x), sc);
    }
    return s;
}
ZL_ROWS(q3_k)

/* Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins. */
static inline float k4_block(const uint8_t *w, const uint8_t *x, const int8_t *a) {
    uint8_t sc[8], mn[8];
    zl_q_scales_mins_k4(w + 4, sc, mn);
    const int8_t *q8 = q8k_qs(x);
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; j++) {
        int t = 0;
        for (int l = 0; l < 32; l++) t += a[32 * j + l] * q8[32 * j + l];
        sumi += sc[j] * t;
        summ += mn[j] * (q8k_bsum(x, 2 * j) + q8k_bsum(x, 2 * j + 1));
    }
    const float dx = zl_load_f32(x);
    return zl_load_f16(w) * dx * (float)sumi - zl_load_f16(w + 2) * dx * (float)summ;
}

static float dot_q4_k(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t i = 0; i < k / QK_K; i++, w += 144, x += ZL_Q8_K_BYTES) {
        const uint8_t *q4 = w + 16;
        int8_t a[QK_K];
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                a[64 * j + l] = (int8_t)(q4[32 * j + l] & 0xF);
                a[64 * j + 32 + l] = (int8_t)(q4[32 * j + l] >> 4);
            }
        s += k4_block(w, x, a);
    }
    return s;
}
ZL_ROWS(q4_k)

static float dot_q5_k(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t i = 0; i < k / QK_K; i++, w += 176, x += ZL_Q8_K_BYTES) {
        const uint8_t *qh = w + 16, *q4 = w + 48;
        int8_t a[QK_K];
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                a[64 * j + l] = (int8_t)((q4[32 * j + l] & 0xF) | (((qh[l] >> (2 * j)) & 1) << 4));
                a[64 * j + 32 + l] = (int8_t)((q4[32 * j + l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4));
            }
        s += k4_block(w, x, a);
    }
    return s;
}
ZL_ROWS(q5_k)

static float dot_q6_k(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t i = 0; i < k / QK_K; i++, w += 210, x += ZL_Q8_K_BYTES) {
        const uint8_t *ql = w, *qh = w + 128;
        int8_t a[QK_K];
        for (int half = 0; half < 2; half++, ql += 64, qh += 32)
            for (int l = 0; l < 32; l++) {
                int8_t *o = a + 128 * half;
                o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        s += zl_load_f16(w + 208) * zl_load_f32(x) * (float)scaled_dot16(a, q8k_qs(x), (const int8_t *)(w + 192));
    }
    return s;
}
ZL_ROWS(q6_k)

static float dot_iq4_xs(int64_t k, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t i = 0; i < k / QK_K; i++, w += 136, x += ZL_Q8_K_BYTES) {
        const uint16_t h = zl_load_u16(w + 2);
        const uint8_t *qs = w + 8;
        const int8_t *q8 = q8k_qs(x);
        int sumi = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int ls = ((w[4 + ib / 2] >> (4 * (ib & 1))) & 0xF) | (((h >> (2 * ib)) & 3) << 4);
            int t = 0;
            for (int j = 0; j < 16; j++)
                t += q8[32 * ib + j] * zl_kvalues_iq4nl[qs[16 * ib + j] & 0xF] +
                     q8[32 * ib + 16 + j] * zl_kvalues_iq4nl[qs[16 * ib + j] >> 4];
            sumi += (ls - 32) * t;
        }
        s += zl_load_f16(w) * zl_load_f32(x) * (float)sumi;
    }
    return s;
}
ZL_ROWS(iq4_xs)

/* ---- float weights against float32 x ---- */

static float dot_f32(int64_t k, const uint8_t *w, const uint8_t *x) {
    const float *xf = (const float *)x;
    float acc[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= k; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += zl_load_f32(w + 4 * (j + l)) * xf[j + l];
    float s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    for (; j < k; j++) s += zl_load_f32(w + 4 * j) * xf[j];
    return s;
}
ZL_ROWS(f32)

static float dot_f16(int64_t k, const uint8_t *w, const uint8_t *x) {
    const float *xf = (const float *)x;
    float s = 0;
    for (int64_t j = 0; j < k; j++) s += zl_load_f16(w + 2 * j) * xf[j];
    return s;
}
ZL_ROWS(f16)

static float dot_bf16(int64_t k, const uint8_t *w, const uint8_t *x) {
    const float *xf = (const float *)x;
    float s = 0;
    for (int64_t j = 0; j < k; j++) s += zl_bf16_to_f32(zl_load_u16(w + 2 * j)) * xf[j];
    return s;
}
ZL_ROWS(bf16)

const zl_qdot_fn zl_qdot_portable[ZL_GGML_TYPE_COUNT] = {
    [ZL_GGML_F32] = rows_f32,       [ZL_GGML_F16] = rows_f16,     [ZL_GGML_BF16] = rows_bf16,
    [ZL_GGML_Q4_0] = rows_q4_0,     [ZL_GGML_Q4_1] = rows_q4_1,   [ZL_GGML_Q5_0] = rows_q5_0,
    [ZL_GGML_Q5_1] = rows_q5_1,     [ZL_GGML_Q8_0] = rows_q8_0,   [ZL_GGML_IQ4_NL] = rows_iq4_nl,
    [ZL_GGML_Q2_K] = rows_q2_k,     [ZL_GGML_Q3_K] = rows_q3_k,   [ZL_GGML_Q4_K] = rows_q4_k,
    [ZL_GGML_Q5_K] = rows_q5_k,     [ZL_GGML_Q6_K] = rows_q6_k,   [ZL_GGML_IQ4_XS] = rows_iq4_xs,
};
