/* x86 dot-product kernels of the low-bit super-block types against Q8_K:
 * Q2_K, Q3_K and IQ4_XS. Included by dot_x86_impl.h before its table, so it
 * shares that file's QK_TARGET, QK_NAME, QK_DPWSSD, the row driver QK_ROWS and
 * the f16 scale reader.
 *
 * The integer sums are the portable kernels' (dot_portable.c), exactly: values
 * times x's bytes in int16 pairs (maddubs, never saturating for these ranges),
 * sub-block scales applied in int32 (madd, or one vpdpwssd), the float scales
 * once per super-block. x's block: f32 d, 256 int8 at 4, 16 int16 sums at 260. */

#define QK_ROWS_NR_q2_k QK_ROWS_NR_K
#define QK_ROWS_NR_q3_k QK_ROWS_NR_K
#define QK_ROWS_NR_iq4_xs QK_ROWS_NR_K

/* v holds 8 int16 scales in each half (the same in both): int16 lane 2i of
 * a half to the whole low half, lane 2i + 1 to the whole high half, for the
 * two 16-value sub-blocks a 32-byte vector of values spans. */
QK_TARGET static inline __m256i QK_NAME(sub16_pair)(__m256i v, int i) {
    const __m128i lo = _mm_set1_epi16((short)(((4 * i + 1) << 8) | (4 * i)));
    const __m128i hi = _mm_set1_epi16((short)(((4 * i + 3) << 8) | (4 * i + 2)));
    return _mm256_shuffle_epi8(v, _mm256_set_m128i(hi, lo));
}

/* The Q8_K sums of 16 values, as 16 int16. */
QK_TARGET static inline __m256i QK_NAME(q8k_bsums)(const uint8_t *x) {
    return _mm256_loadu_si256((const __m256i *)(x + 260));
}

/* Bit `bit` of each byte of v, moved to bit 2 (16-bit shifts: a bit never
 * crosses into the other byte of its pair, the mask keeps bit 2 only). */
QK_TARGET static inline __m256i QK_NAME(bit_to_4)(__m256i v, int bit) {
    const __m256i four = _mm256_set1_epi8(4);
    return bit >= 2 ? _mm256_and_si256(_mm256_srli_epi16(v, bit - 2), four)
                    : _mm256_and_si256(_mm256_slli_epi16(v, 2 - bit), four);
}

/* sumi + the 256 values of a block of 2-bit layers (value 128h + 32g + l:
 * bits 2g..2g+1 of qs[32h + l], or'ed with bit 4h + g of hbits[l] moved to bit
 * 2 when hbits is given: Q3_K) times x's bytes, each 16-value sub-block times
 * its int16 scale in sc16, in two chains of vpdpwssd. */
QK_TARGET static inline __m256i QK_NAME(two_bit_layers)(const uint8_t *qs, const __m256i *hbits, const uint8_t *x,
                                                       __m256i sc16, __m256i sumi) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const int8_t *q8 = (const int8_t *)(x + 4);
    /* scales 0..7 and 8..15, each in both halves */
    const __m256i sch[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00), _mm256_permute2x128_si256(sc16, sc16, 0x11)};
    __m256i sumh = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * g), m3);
            if (hbits != NULL) q = _mm256_or_si256(q, QK_NAME(bit_to_4)(*hbits, 4 * h + g));
            const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(q8 + 128 * h + 32 * g)));
            if (g & 1)
                sumh = QK_DPWSSD(sumh, QK_NAME(sub16_pair)(sch[h], g), p);
            else
                sumi = QK_DPWSSD(sumi, QK_NAME(sub16_pair)(sch[h], g), p);
        }
    }
    return _mm256_add_epi32(sumi, sumh);
}

/* ---- Q2_K: scales[16] (scale | min << 4), qs[64], f16 d at 80, f16 dmin at 82 ----
 * Value 128h + 32g + l is bits 2g..2g+1 of qs[32h + l]; sub-block j of 16
 * values: d * scale_j * q - dmin * min_j. The mins go through x's sums. */
QK_TARGET static inline __m256 QK_NAME(blk_q2_k)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const float dx = zl_load_f32(x);
    const __m128i sm = _mm_loadu_si128((const __m128i *)b), m4 = _mm_set1_epi8(0x0F);
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sm, m4));
    const __m256i summs = _mm256_madd_epi16(mins, QK_NAME(q8k_bsums)(x));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(-QK_NAME(f16)(b + 82) * dx), _mm256_cvtepi32_ps(summs), acc);
    const __m256i sumi = QK_NAME(two_bit_layers)(b + 16, NULL, x, sc16, _mm256_setzero_si256());
    return _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b + 80) * dx), _mm256_cvtepi32_ps(sumi), acc);
}
QK_ROWS(q2_k, 84, ZL_Q8_K_BYTES, QK_NAME(blk_q2_k))

/* ---- Q3_K: hmask[32], qs[64] at 32, 12 bytes of 6-bit scales at 96, f16 d at 108 ----
 * Value 128h + 32g + l is (bits 2g..2g+1 of qs[32h + l]) - 4 unless bit 4h + g
 * of hmask[l] is set. Taken unsigned as the low bits | the high bit << 2 (q + 4,
 * 0..7), the 4 comes back through x's sums: sum sc (q + 4) x - 4 (sc . bsums). */

/* The 16 signed scales (zl_q_scales_q3_k) as int16. */
QK_TARGET static inline __m256i QK_NAME(q3k_scales)(const uint8_t *s) {
    uint32_t a[3];
    memcpy(a, s, 12);
    const uint32_t m2 = 0x03030303u, m4 = 0x0f0f0f0fu;
    const __m128i u = _mm_setr_epi32((int)((a[0] & m4) | ((a[2] & m2) << 4)),
                                     (int)((a[1] & m4) | (((a[2] >> 2) & m2) << 4)),
                                     (int)(((a[0] >> 4) & m4) | (((a[2] >> 4) & m2) << 4)),
                                     (int)(((a[1] >> 4) & m4) | (((a[2] >> 6) & m2) << 4)));
    return _mm256_cvtepi8_epi16(_mm_sub_epi8(u, _mm_set1_epi8(32)));
}

QK_TARGET static inline __m256 QK_NAME(blk_q3_k)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const __m256i sc16 = QK_NAME(q3k_scales)(b + 96);
    const __m256i hbits = _mm256_loadu_si256((const __m256i *)b);
    /* the values' + 4 comes back as - 4 (sc . bsums) */
    const __m256i offset = _mm256_sub_epi32(_mm256_setzero_si256(),
                                            _mm256_slli_epi32(_mm256_madd_epi16(sc16, QK_NAME(q8k_bsums)(x)), 2));
    const __m256i sumi = QK_NAME(two_bit_layers)(b + 32, &hbits, x, sc16, offset);
    return _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b + 108) * zl_load_f32(x)), _mm256_cvtepi32_ps(sumi), acc);
}
QK_ROWS(q3_k, 110, ZL_Q8_K_BYTES, QK_NAME(blk_q3_k))

/* ---- IQ4_XS: f16 d, scales_h (u16) at 2, scales_l[4] at 4, qs[128] at 8 ----
 * Sub-block ib of 32 values: 16 bytes of nibbles (low: values 0..15, high:
 * 16..31) through the IQ4_NL table, scale ((scales_l nibble ib) | (2 bits ib
 * of scales_h) << 4) - 32. */

/* The 8 scales as int16 in each half: the nibbles and 2-bit fields spread to
 * one byte each with shifts and masks. */
QK_TARGET static inline __m256i QK_NAME(iq4xs_scales)(const uint8_t *b) {
    uint64_t l = zl_load_u32(b + 4), h = zl_load_u16(b + 2);
    l = (l | l << 16) & 0x0000FFFF0000FFFFull;
    l = (l | l << 8) & 0x00FF00FF00FF00FFull; /* byte i of scales_l in byte 2i */
    l = (l & 0x000F000F000F000Full) | ((l << 4) & 0x0F000F000F000F00ull);
    h = (h | h << 24) & 0x000000FF000000FFull;
    h = (h | h << 12) & 0x000F000F000F000Full;
    h = (h | h << 6) & 0x0303030303030303ull; /* bits 2i, 2i + 1 in byte i */
    const __m128i s = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)(l | h << 4)));
    return _mm256_broadcastsi128_si256(_mm_sub_epi16(s, _mm_set1_epi16(32)));
}

/* Two sub-blocks per 32-byte load: the low nibbles of both (their values
 * 0..15) in one vector, the high nibbles (16..31) in another, each against
 * x's matching halves (two 16-byte loads): a fifth fewer instructions than a
 * 16-byte load, shift and insert per sub-block. */
QK_TARGET static inline __m256 QK_NAME(blk_iq4_xs)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)zl_kvalues_iq4nl));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i scv = QK_NAME(iq4xs_scales)(b);
    const uint8_t *q8 = x + 4;
    __m256i sumi = _mm256_setzero_si256(), sumh = sumi; /* two chains of vpdpwssd */
    for (int j = 0; j < 4; j++, q8 += 64) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(b + 8 + 32 * j));
        const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(bits, m4));
        const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4));
        const __m256i xlo = _mm256_loadu2_m128i((const __m128i *)(q8 + 32), (const __m128i *)q8);
        const __m256i xhi = _mm256_loadu2_m128i((const __m128i *)(q8 + 48), (const __m128i *)(q8 + 16));
        /* |q| x sign-adjusted x: pairs within 2 * 127 * 127, no saturation */
        const __m256i pl = _mm256_maddubs_epi16(_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(xlo, lo));
        const __m256i ph = _mm256_maddubs_epi16(_mm256_sign_epi8(hi, hi), _mm256_sign_epi8(xhi, hi));
        const __m256i sc = QK_NAME(sub16_pair)(scv, j); /* sub-block 2j low, 2j + 1 high */
        sumi = QK_DPWSSD(sumi, sc, pl);
        sumh = QK_DPWSSD(sumh, sc, ph);
    }
    sumi = _mm256_add_epi32(sumi, sumh);
    return _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b) * zl_load_f32(x)), _mm256_cvtepi32_ps(sumi), acc);
}
QK_ROWS(iq4_xs, 136, ZL_Q8_K_BYTES, QK_NAME(blk_iq4_xs))
