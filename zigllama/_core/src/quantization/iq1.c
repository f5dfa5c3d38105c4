/* IQ1_S and IQ1_M: 1.56 and 1.75 bits per weight, super-blocks of 256.
 *
 * Each group of 8 weights is one of 2048 points with values in {-1, 0, 1},
 * shifted by a delta of +-1/8, scaled by an odd multiple of d:
 *   y = d * (2 s + 1) * (grid[j] + delta)
 */
#include "iq_impl.h"

#define IQ1S_DELTA 0.125f

static inline float iq1_scale(float d, int s) { return d * (float)(2 * s + 1); }

/* +-1/8, negative when `negative` is 1 (no branch on random bits). */
static inline float iq1_delta(uint32_t negative) { return iq_flip_sign(IQ1S_DELTA, negative); }

/* IQ1_S, 50 bytes: f16 d | 32 grid-index low bytes | 8 x u16 qh: per 32 weights,
 * 4 x 3 high index bits, a 3-bit scale (bits 12-14) and the delta sign (bit 15). */
#define IQ1_S_BYTES 50

static inline int iq1_s_index(const uint8_t *qs, uint16_t qh, int l) {
    return qs[l] | (((qh >> (3 * l)) & 7) << 8);
}

IQ_ALWAYS_INLINE static void iq1_s_rows(const uint8_t *src, float *y, int64_t nb, iq_shifted8_fn out8) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ1_S_BYTES;
        const float d = zl_load_f16(b);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = b + 2 + 4 * ib;
            const uint16_t qh = zl_load_u16(b + 34 + 2 * ib);
            const float dl = iq1_scale(d, (qh >> 12) & 7);
            const float delta = iq1_delta(qh >> 15);
            for (int l = 0; l < 4; l++, y += 8)
                out8(y, dl, zl_iq1s_grid[iq1_s_index(qs, qh, l)], delta);
        }
    }
}

/* IQ1_M, 56 bytes: 32 grid-index low bytes | 16 qh bytes (per 8 weights a nibble:
 * 3 high index bits, delta sign) | 4 x u16 scales: 4 x 3-bit scales (one per 16
 * weights) in the low 12 bits, the f16 super-block scale spread over the 4 top nibbles. */
#define IQ1_M_BYTES 56

static inline uint16_t iq1_m_d_bits(const uint8_t *sc) {
    const uint16_t s0 = zl_load_u16(sc), s1 = zl_load_u16(sc + 2);
    const uint16_t s2 = zl_load_u16(sc + 4), s3 = zl_load_u16(sc + 6);
    return (uint16_t)((s0 >> 12) | ((s1 >> 8) & 0x00F0) | ((s2 >> 4) & 0x0F00) | (s3 & 0xF000));
}

/* Sub-block k (16 weights): its 3-bit scale. */
static inline int iq1_m_sub_scale(const uint8_t *sc, int k) {
    return (zl_load_u16(sc + 2 * (k >> 2)) >> (3 * (k & 3))) & 7;
}

static inline int iq1_m_nibble(const uint8_t *qh, int k) { return (qh[k >> 1] >> (4 * (k & 1))) & 0x0F; }

static void iq1_m_portable(const uint8_t *src, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ1_M_BYTES;
        const uint8_t *qs = b, *qh = b + 32, *sc = b + 48;
        const float d = zl_f16_to_f32(iq1_m_d_bits(sc));
        for (int k = 0; k < 32; k++, y += 8) {
            const float dl = iq1_scale(d, iq1_m_sub_scale(sc, k >> 1));
            const int h = iq1_m_nibble(qh, k);
            iq_shifted8(y, dl, zl_iq1s_grid[qs[k] | ((h & 7) << 8)], iq1_delta(h >> 3));
        }
    }
}

#if ZL_X86

ZL_TARGET_AVX2 static void iq1_m_avx2(const uint8_t *src, float *y, int64_t nb) {
    const __m128i low4 = _mm_set1_epi8(0x0F), low3 = _mm_set1_epi8(7);
    float dl[16], delta[32];
    uint16_t index[32];
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * IQ1_M_BYTES;
        const uint8_t *qs = b, *qh = b + 32, *sc = b + 48;
        const float d = _cvtsh_ss(iq1_m_d_bits(sc));
        for (int k = 0; k < 16; k++) dl[k] = iq1_scale(d, iq1_m_sub_scale(sc, k));
        /* The 32 qh nibbles in order (low nibble of each byte first), then the 32
         * grid indices and the 32 deltas (+-1/8 as float bits) at once. */
        const __m128i h = _mm_loadu_si128((const __m128i *)qh);
        const __m128i lo = _mm_and_si128(h, low4), hi = _mm_and_si128(_mm_srli_epi16(h, 4), low4);
        const __m128i nib[2] = {_mm_unpacklo_epi8(lo, hi), _mm_unpackhi_epi8(lo, hi)};
        for (int half = 0; half < 2; half++) {
            const __m256i q = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 16 * half)));
            const __m256i high = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(nib[half], low3)), 8);
            _mm256_storeu_si256((__m256i *)(index + 16 * half), _mm256_or_si256(q, high));
            for (int part = 0; part < 2; part++) {
                const __m256i n = _mm256_cvtepu8_epi32(_mm_srli_si128(nib[half], 8 * part));
                const __m256i sign = _mm256_slli_epi32(_mm256_srli_epi32(n, 3), 31);
                _mm256_storeu_ps(delta + 16 * half + 8 * part,
                                 _mm256_xor_ps(_mm256_set1_ps(IQ1S_DELTA), _mm256_castsi256_ps(sign)));
            }
        }
        for (int k = 0; k < 32; k++, y += 8)
            iq_shifted8_avx2(y, dl[k >> 1], zl_iq1s_grid[index[k]], delta[k]);
    }
}

#endif

IQ_KERNELS(iq1_s, QK_K, iq_shifted8)
IQ_DISPATCH(iq1_m, QK_K)
