/* 4-bit code-book formats: IQ4_NL, IQ4_XS and MXFP4.
 *
 * Each weight is a nibble indexing 16 levels; 32 weights share one scale:
 *   y = scale * level[q]
 * with the levels of IQ4_NL (non-linear, -127..113) or of MXFP4 (the E2M1
 * values, doubled), and the scale an f16 (IQ4_NL), f16 * 6-bit integer (IQ4_XS)
 * or a power of two stored as an E8M0 exponent (MXFP4). In every 16-byte group
 * the low nibbles are weights 0-15, the high nibbles weights 16-31.
 */
#include "iq_impl.h"

/* IQ4_NL, 18 bytes: f16 d | 16 bytes of nibbles. */
#define IQ4_NL_BYTES 18
#define IQ4_NL_BLOCK 32

/* IQ4_XS, 136 bytes: f16 d | u16 scales_h (8 x 2 high bits) | 4 bytes scales_l
 * (8 x 4 low bits) | 8 x 16 bytes of nibbles. Scale of 32 weights: d * (6-bit - 32). */
#define IQ4_XS_BYTES 136

static inline float iq4_xs_scale(float d, const uint8_t *b, int ib) {
    const int low = (b[4 + (ib >> 1)] >> (4 * (ib & 1))) & 0x0F;
    const int high = (zl_load_u16(b + 2) >> (2 * ib)) & 3;
    return d * (float)((low | (high << 4)) - 32);
}

/* MXFP4, 17 bytes: E8M0 exponent e | 16 bytes of nibbles. The scale is 2^(e-127)
 * halved (the levels are doubled), as ggml_e8m0_to_fp32_half: e = 0 and 1 give
 * the float32 subnormals 2^-128 and 2^-127 exactly. */
#define MXFP4_BYTES 17
#define MXFP4_BLOCK 32

static inline float mxfp4_scale(uint8_t e) {
    return zl_fp32_from_bits(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

IQ_ALWAYS_INLINE static void iq4_nl_rows(const uint8_t *src, float *y, int64_t nb, iq_codebook32_fn out32) {
    for (int64_t i = 0; i < nb; i++, y += IQ4_NL_BLOCK) {
        const uint8_t *b = src + i * IQ4_NL_BYTES;
        out32(y, zl_load_f16(b), b + 2, zl_kvalues_iq4nl);
    }
}

IQ_ALWAYS_INLINE static void iq4_xs_rows(const uint8_t *src, float *y, int64_t nb, iq_codebook32_fn out32) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ4_XS_BYTES;
        const float d = zl_load_f16(b);
        for (int ib = 0; ib < 8; ib++, y += 32)
            out32(y, iq4_xs_scale(d, b, ib), b + 8 + 16 * ib, zl_kvalues_iq4nl);
    }
}

IQ_ALWAYS_INLINE static void mxfp4_rows(const uint8_t *src, float *y, int64_t nb, iq_codebook32_fn out32) {
    for (int64_t i = 0; i < nb; i++, y += MXFP4_BLOCK) {
        const uint8_t *b = src + i * MXFP4_BYTES;
        out32(y, mxfp4_scale(b[0]), b + 1, zl_kvalues_mxfp4);
    }
}

IQ_KERNELS(iq4_nl, IQ4_NL_BLOCK, iq_codebook32)
IQ_KERNELS(iq4_xs, QK_K, iq_codebook32)
IQ_KERNELS(mxfp4, MXFP4_BLOCK, iq_codebook32)
