/* NVFP4: blocks of 64 E2M1 values in four groups of 16, each group with an
 * unsigned E4M3 scale (bias 7). As in gguf.quants.NVFP4 (ggml_ue4m3_to_fp32):
 *   scale(x) = 0 for x == 0 or 0x7F, else ue4m3(x & 0x7F) / 2
 *   y = scale * kvalue[nibble]     (kvalues are the doubled E2M1 values)
 * Group g uses bytes qs[8g .. 8g+8): low nibbles give elements 0..7, high 8..15.
 */
#include "zl_quants_impl.h"

static const int8_t kvalues_e2m1[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* Exact: at most 4 significant bits times a power of two, built from its bits. */
static inline float ue4m3_half(uint8_t x) {
    if (x == 0 || x == 0x7F) return 0.0f;
    const uint32_t e = (x >> 3) & 0xF;
    const uint32_t m = x & 7;
    if (e == 0) return (float)m * 0x1p-10f; /* m * 2^-9, halved */
    return zl_fp32_from_bits(((e + 119u) << 23) | (m << 20)); /* (1 + m/8) * 2^(e-7), halved */
}

static void nvfp4_portable(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, src += 36, dst += 64) {
        for (int g = 0; g < 4; g++) {
            const float d = ue4m3_half(src[g]);
            const uint8_t *qs = src + 4 + 8 * g;
            for (int j = 0; j < 8; j++) {
                dst[16 * g + j] = d * (float)kvalues_e2m1[qs[j] & 0x0F];
                dst[16 * g + j + 8] = d * (float)kvalues_e2m1[qs[j] >> 4];
            }
        }
    }
}

#if ZL_X86
ZL_TARGET_AVX2 static void nvfp4_avx2(const uint8_t *restrict src, float *restrict dst, int64_t nb) {
    const __m128i table = _mm_loadu_si128((const __m128i *)kvalues_e2m1);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, src += 36, dst += 64) {
        for (int g = 0; g < 4; g++) {
            const __m128i packed = _mm_loadl_epi64((const __m128i *)(src + 4 + 8 * g));
            const __m128i nib = _mm_and_si128(_mm_unpacklo_epi64(packed, _mm_srli_epi16(packed, 4)), low4);
            zl_store16_mul(dst + 16 * g, _mm_shuffle_epi8(table, nib), _mm256_set1_ps(ue4m3_half(src[g])));
        }
    }
}
#endif

void zl_dequantize_row_nvfp4(const uint8_t *restrict src, float *restrict dst, int64_t n) {
    ZL_PICK(nvfp4_avx2(src, dst, n / 64), nvfp4_portable(src, dst, n / 64));
}
