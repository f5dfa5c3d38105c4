/* IQ3_XXS and IQ3_S: 3-bit-ish lattice quants over super-blocks of 256.
 *
 * Each group of 4 weights is one point of a grid of magnitudes, each 8 weights
 * share a sign byte, each 32 weights a 4-bit scale:
 *   IQ3_XXS  y = d * (0.5 + s) * 0.5 * grid[j]     grid in {4, 12, ..., 52, 62}
 *   IQ3_S    y = d * (1 + 2 s) * grid[j]           grid in {1, 3, ..., 15}
 * negated where the element's sign bit is set.
 */
#include "iq_impl.h"

static inline float iq3_xxs_scale(float d, uint32_t s) { return d * (0.5f + (float)s) * 0.5f; }

static inline float iq3_s_scale(float d, int s) { return d * (float)(1 + 2 * s); }

/* IQ3_XXS, 98 bytes: f16 d | 64 grid-index bytes | 8 x u32 (4 x 7 sign bits + 4-bit scale). */
#define IQ3_XXS_BYTES 98

IQ_ALWAYS_INLINE static void iq3_xxs_rows(const uint8_t *src, float *y, int64_t nb, iq_signed4x2_fn out8) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ3_XXS_BYTES;
        const float d = zl_load_f16(b);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = b + 2 + 8 * ib;
            const uint32_t aux = zl_load_u32(b + 66 + 4 * ib);
            const float db = iq3_xxs_scale(d, aux >> 28);
            for (int l = 0; l < 4; l++, y += 8)
                out8(y, db, zl_iq3xxs_grid[qs[2 * l]], zl_iq3xxs_grid[qs[2 * l + 1]],
                     zl_ksigns_iq2xs[(aux >> (7 * l)) & 127]);
        }
    }
}

/* IQ3_S, 110 bytes: f16 d | 64 grid-index low bytes | 8 qh (the 9th index bits) |
 * 32 sign bytes | 4 scale bytes (two nibbles). */
#define IQ3_S_BYTES 110

static inline int iq3_s_index(const uint8_t *qs, const uint8_t *qh, int k) {
    return qs[k] | (((qh[k >> 3] >> (k & 7)) & 1) << 8);
}

static void iq3_s_portable(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ3_S_BYTES;
        const float d = zl_load_f16(b);
        const uint8_t *qs = b + 2, *qh = b + 66, *signs = b + 74, *scales = b + 106;
        for (int ib = 0; ib < 8; ib++) {
            const float db = iq3_s_scale(d, (scales[ib >> 1] >> (4 * (ib & 1))) & 0x0F);
            for (int l = 0; l < 4; l++, y += 8) {
                const int k = 8 * ib + 2 * l;
                iq_signed4x2(y, db, zl_iq3s_grid[iq3_s_index(qs, qh, k)],
                             zl_iq3s_grid[iq3_s_index(qs, qh, k + 1)], signs[4 * ib + l]);
            }
        }
    }
}

#if ZL_X86

ZL_TARGET_AVX2 static void iq3_s_avx2(const uint8_t *src, float *y, int64_t nb) {
    /* The 8 indices of a sub-block at once: lane j takes bit j of its qh byte as bit 8. */
    const __m256i to_bit8 = _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1);
    const __m256i bit8 = _mm256_set1_epi32(256);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ3_S_BYTES;
        const float d = iq_load_f16_f16c(b);
        const uint8_t *qs = b + 2, *qh = b + 66, *signs = b + 74, *scales = b + 106;
        for (int ib = 0; ib < 8; ib++, y += 32) {
            const float db = iq3_s_scale(d, (scales[ib >> 1] >> (4 * (ib & 1))) & 0x0F);
            const __m256i high = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(qh[ib]), to_bit8), bit8);
            const __m256i low = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 8 * ib)));
            uint32_t index[8];
            _mm256_storeu_si256((__m256i *)index, _mm256_or_si256(low, high));
            for (int l = 0; l < 4; l++)
                iq_signed4x2_avx2(y + 8 * l, db, zl_iq3s_grid[index[2 * l]], zl_iq3s_grid[index[2 * l + 1]],
                                  signs[4 * ib + l]);
        }
    }
}

#endif

IQ_KERNELS(iq3_xxs, QK_K, iq_signed4x2)
IQ_DISPATCH(iq3_s, QK_K)
