/* IQ2_XXS, IQ2_XS and IQ2_S: 2-bit-ish lattice quants over super-blocks of 256.
 *
 * Each group of 8 weights is one point of a grid of magnitudes {8, 25, 43}
 * (E8 lattice points), a sign byte and a 4-bit scale per 16 or 32 weights:
 *   y = d * (0.5 + s) * 0.25 * grid[j]   negated where sign bit j is set.
 * The sign byte is stored whole (IQ2_S) or as 7 bits expanded by ksigns, whose
 * 8th bit makes the number of minus signs even (IQ2_XXS, IQ2_XS).
 *
 * Each format is walked once (iq2_*_rows); the portable and AVX2 kernels differ
 * only in the helper that writes 8 outputs, inlined into each.
 */
#include "iq_impl.h"

/* d * (0.5 + s) * 0.25, evaluated left to right as the reference does. */
static inline float iq2_scale(float d, uint32_t s) { return d * (0.5f + (float)s) * 0.25f; }

/* IQ2_XXS, 66 bytes: f16 d | 8 x (4 grid-index bytes, u32 of 4 x 7 sign bits + 4-bit scale). */
#define IQ2_XXS_BYTES 66

IQ_ALWAYS_INLINE static void iq2_xxs_rows(const uint8_t *src, float *y, int64_t nb, iq_signed8_fn out8) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ2_XXS_BYTES;
        const float d = zl_load_f16(b);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            const uint8_t *idx = b + 2 + 8 * ib;
            const uint32_t aux = zl_load_u32(idx + 4);
            const float db = iq2_scale(d, aux >> 28);
            for (int l = 0; l < 4; l++)
                out8(y + 8 * l, db, zl_iq2xxs_grid[idx[l]], zl_ksigns_iq2xs[(aux >> (7 * l)) & 127]);
        }
    }
}

/* IQ2_XS, 74 bytes: f16 d | 32 x u16 (9-bit grid index, 7 sign bits) | 8 scale bytes (two nibbles). */
#define IQ2_XS_BYTES 74

IQ_ALWAYS_INLINE static void iq2_xs_rows(const uint8_t *src, float *y, int64_t nb, iq_signed8_fn out8) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ2_XS_BYTES;
        const float d = zl_load_f16(b);
        const uint8_t *scales = b + 66;
        for (int ib = 0; ib < 8; ib++) {
            const float db[2] = {iq2_scale(d, scales[ib] & 0x0F), iq2_scale(d, scales[ib] >> 4)};
            for (int l = 0; l < 4; l++, y += 8) {
                const uint16_t q = zl_load_u16(b + 2 + 2 * (4 * ib + l));
                out8(y, db[l >> 1], zl_iq2xs_grid[q & 511], zl_ksigns_iq2xs[q >> 9]);
            }
        }
    }
}

/* IQ2_S, 82 bytes: f16 d | 32 grid-index low bytes | 32 sign bytes | 8 qh (4 x 2 high
 * index bits) | 8 scale bytes (two nibbles). */
#define IQ2_S_BYTES 82

IQ_ALWAYS_INLINE static void iq2_s_rows(const uint8_t *src, float *y, int64_t nb, iq_signed8_fn out8) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ2_S_BYTES;
        const float d = zl_load_f16(b);
        const uint8_t *qs = b + 2, *signs = b + 34, *qh = b + 66, *scales = b + 74;
        for (int ib = 0; ib < 8; ib++) {
            const float db[2] = {iq2_scale(d, scales[ib] & 0x0F), iq2_scale(d, scales[ib] >> 4)};
            for (int l = 0; l < 4; l++, y += 8) {
                const int k = 4 * ib + l;
                const int index = qs[k] | (((qh[ib] >> (2 * l)) & 3) << 8);
                out8(y, db[l >> 1], zl_iq2s_grid[index], signs[k]);
            }
        }
    }
}

IQ_KERNELS(iq2_xxs, QK_K, iq_signed8)
IQ_KERNELS(iq2_xs, QK_K, iq_signed8)
IQ_KERNELS(iq2_s, QK_K, iq_signed8)
