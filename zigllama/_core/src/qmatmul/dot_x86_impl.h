/* x86 dot-product kernels, written once and compiled per instruction set.
 *
 * The including file defines
 *   QK_TARGET            the target attribute (AVX2, or AVX2 + AVX-512 VNNI/VL)
 *   QK_NAME(name)        a per-path name for each kernel
 *   QK_DOT_U8I8(u, s)    8 int32 sums of 4 products of unsigned bytes u (< 128)
 *                        and signed bytes s: maddubs + madd, or one vpdpbusd
 *   QK_DPWSSD(acc, a, b) acc + the int32 sums of pairs of int16 products a * b:
 *                        madd + add, or one vpdpwssd
 *   QK_DPBUSD(acc, u, s) acc + QK_DOT_U8I8(u, s): one vpdpbusd where there is one
 * Four rows of W go through each loop together, sharing the loads of x (a GEMV
 * is bound by reading W: x stays in L1). Block scales are f16 read with F16C. */

QK_TARGET static inline float QK_NAME(f16)(const uint8_t *p) {
    return _cvtsh_ss(zl_load_u16(p));
}

QK_TARGET static inline float QK_NAME(hsum)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 int32 sums of products of 32 signed bytes a and b (|a| applied to both). */
QK_TARGET static inline __m256i QK_NAME(dot_i8)(__m256i a, __m256i b) {
    return QK_DOT_U8I8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

/* Software prefetch: the kernels do so much work per cache line that few lines
 * are in flight and DRAM latency, not bandwidth, sets the pace. The rows a pass
 * reads are (nearly) contiguous, so one pointer walks the region they span,
 * QK_PREFETCH bytes ahead of the reads, one prefetch (into L2) per cache line:
 * 16 KiB ahead took a DRAM-resident Q8_0 GEMV from 7 to 27 GB/s of CPU time. */
#ifndef QK_PREFETCH
#define QK_PREFETCH 16384
#endif

/* Lines covering the `bytes` a step of the row loop reads, issued with a fixed
 * count (an unrolled loop: no branch to mispredict). */
#define QK_PF_STEP(addr, bytes)                                                                 \
    do {                                                                                        \
        for (int q_ = 0; q_ < ((bytes) + 63) / 64; q_++)                                        \
            _mm_prefetch((const char *)(addr) + QK_PREFETCH + 64 * q_, _MM_HINT_T1);            \
    } while (0)

/* Rows of W a pass of the row driver reads together, per type: four share x's
 * loads and keep four chains of integer sums in flight. */
#ifndef QK_ROWS_NR_K
#define QK_ROWS_NR_K 4
#endif
#define QK_ROWS_NR_q4_1 4
#define QK_ROWS_NR_q5_1 4
#define QK_ROWS_NR_iq4_nl 4
#define QK_ROWS_NR_q4_k QK_ROWS_NR_K
#define QK_ROWS_NR_q5_k QK_ROWS_NR_K
#define QK_ROWS_NR_q6_k QK_ROWS_NR_K

/* Row driver: BLOCK(w, x, acc) adds one block's products into acc; NR rows
 * (4 or 1) of W go through the block loop together, sharing x's loads. */
#define QK_ROWS_N(name, wbytes, xbytes, BLOCK, NR)                                                  \
    QK_TARGET static void QK_NAME(rows_##name)(int64_t k, const uint8_t *w, int64_t stride,         \
                                               int64_t nrows, const uint8_t *xq, float *y) {        \
        const int64_t nb = k / (xbytes == ZL_Q8_0_BYTES ? 32 : QK_K);                               \
        int64_t r = 0;                                                                              \
        if (NR == 4)                                                                                \
            for (; r + 4 <= nrows; r += 4) {                                                        \
                const uint8_t *w0 = w + r * stride, *w1 = w0 + stride, *w2 = w1 + stride;           \
                const uint8_t *w3 = w2 + stride, *x = xq;                                           \
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                         \
                for (int64_t i = 0; i < nb; i++) {                                                  \
                    QK_PF_STEP(w + r * stride + 4 * i * wbytes, 4 * (wbytes));                      \
                    a0 = BLOCK(w0, x, a0);                                                          \
                    a1 = BLOCK(w1, x, a1);                                                          \
                    a2 = BLOCK(w2, x, a2);                                                          \
                    a3 = BLOCK(w3, x, a3);                                                          \
                    w0 += wbytes, w1 += wbytes, w2 += wbytes, w3 += wbytes, x += xbytes;            \
                }                                                                                   \
                y[r] = QK_NAME(hsum)(a0);                                                           \
                y[r + 1] = QK_NAME(hsum)(a1);                                                       \
                y[r + 2] = QK_NAME(hsum)(a2);                                                       \
                y[r + 3] = QK_NAME(hsum)(a3);                                                       \
            }                                                                                       \
        for (; r < nrows; r++) {                                                                    \
            const uint8_t *w0 = w + r * stride, *x = xq;                                            \
            __m256 a0 = _mm256_setzero_ps();                                                        \
            for (int64_t i = 0; i < nb; i++, w0 += wbytes, x += xbytes) {                           \
                if (NR == 1) QK_PF_STEP(w0, wbytes);                                                \
                a0 = BLOCK(w0, x, a0);                                                              \
            }                                                                                       \
            y[r] = QK_NAME(hsum)(a0);                                                               \
        }                                                                                           \
    }
#define QK_ROWS(name, wbytes, xbytes, BLOCK) QK_ROWS_N(name, wbytes, xbytes, BLOCK, QK_ROWS_NR_##name)

/* ---- legacy blocks against Q8_0 (x: f16 d, 32 int8) ---- */

QK_TARGET static inline __m256i QK_NAME(nibbles)(const uint8_t *p) {
    const __m128i q = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

QK_TARGET static inline __m256i QK_NAME(q8x)(const uint8_t *x) { return _mm256_loadu_si256((const __m256i *)(x + 2)); }

/* Q4_1: d * (q . x8) + m * (sum x8), both scaled by x's d. */
QK_TARGET static inline __m256 QK_NAME(blk_q4_1)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const float dx = QK_NAME(f16)(x);
    const __m256i x8 = QK_NAME(q8x)(x);
    const __m256i p = QK_DOT_U8I8(QK_NAME(nibbles)(b + 4), x8);
    const __m256i s = QK_DOT_U8I8(_mm256_set1_epi8(1), x8);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b) * dx), _mm256_cvtepi32_ps(p), acc);
    return _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b + 2) * dx), _mm256_cvtepi32_ps(s), acc);
}
QK_ROWS(q4_1, 20, ZL_Q8_0_BYTES, QK_NAME(blk_q4_1))

/* Byte j is 0xFF where bit j of x is set. */
QK_TARGET static inline __m256i QK_NAME(bits32)(uint32_t v) {
#ifdef QK_MASK_TO_BYTES
    return QK_MASK_TO_BYTES(v);
#endif
    const __m256i spread = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                              0x0202020202020202LL, 0x0303030303030303LL);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

QK_TARGET static inline __m256 QK_NAME(blk_q5_1)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const float dx = QK_NAME(f16)(x);
    const __m256i x8 = QK_NAME(q8x)(x);
    const __m256i hi = _mm256_and_si256(QK_NAME(bits32)(zl_load_u32(b + 4)), _mm256_set1_epi8(0x10));
    const __m256i p = QK_DOT_U8I8(_mm256_or_si256(QK_NAME(nibbles)(b + 8), hi), x8);
    const __m256i s = QK_DOT_U8I8(_mm256_set1_epi8(1), x8);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b) * dx), _mm256_cvtepi32_ps(p), acc);
    return _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b + 2) * dx), _mm256_cvtepi32_ps(s), acc);
}
QK_ROWS(q5_1, 24, ZL_Q8_0_BYTES, QK_NAME(blk_q5_1))

QK_TARGET static inline __m256 QK_NAME(blk_iq4_nl)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)zl_kvalues_iq4nl));
    const __m256 d = _mm256_set1_ps(QK_NAME(f16)(b) * QK_NAME(f16)(x));
    const __m256i q = _mm256_shuffle_epi8(table, QK_NAME(nibbles)(b + 2));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(QK_NAME(dot_i8)(q, QK_NAME(q8x)(x))), acc);
}
QK_ROWS(iq4_nl, 18, ZL_Q8_0_BYTES, QK_NAME(blk_iq4_nl))

/* Q4_0 and Q5_0, two rows to a vector. The 16 bytes of nibbles of a block of
 * row a and of row b fill one vector: masked, it holds both rows' first 16
 * values, shifted, their last 16, each half against x's matching 16 values
 * broadcast to both halves. The values go in unsigned (q, not q - 8: no sign
 * fix-ups) and the offset comes back through x's sums: sum (q - o) x =
 * sum q x - o sum x, exact in each lane. x's side of that (-o times each lane's
 * x sum) and x's scale as a float are worked out once per call for a run of
 * blocks (QK_PAIR_SEG of them, on the stack), not once per block and row group.
 * Lane l of a half sums the values 4l..4l+3 and 16+4l..16+4l+3 of its row, the
 * same lanes whichever row shares the vector, so a row's result does not
 * depend on its neighbours (the last rows reuse the code with a row repeated). */

#ifndef QK_PAIR_SEG
#define QK_PAIR_SEG 256 /* x blocks prepared at once: 5 KiB of stack */
#endif

/* For x's blocks 0..nb: -o * the 4 lane sums (values 4l..4l+3 and 16+4l..16+4l+3)
 * and the scale d as a float. */
QK_TARGET static inline void QK_NAME(pair_x_prep)(const uint8_t *x, int64_t nb, int o, int32_t (*ncorr)[4], float *dx) {
    for (int64_t i = 0; i < nb; i++, x += ZL_Q8_0_BYTES) {
        const __m256i s = QK_DPBUSD(_mm256_setzero_si256(), _mm256_set1_epi8((char)o), QK_NAME(q8x)(x));
        const __m128i l = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        _mm_storeu_si128((__m128i *)ncorr[i], _mm_sub_epi32(_mm_setzero_si128(), l));
        dx[i] = QK_NAME(f16)(x);
    }
}

/* The block scales of four rows times x's, as the two vectors of row pairs. */
QK_TARGET static inline void QK_NAME(pair_scales)(const uint8_t *w0, const uint8_t *w1, const uint8_t *w2,
                                                  const uint8_t *w3, const float *dx, __m256 *s01, __m256 *s23) {
    const uint64_t h = (uint64_t)zl_load_u16(w0) | (uint64_t)zl_load_u16(w1) << 16 |
                       (uint64_t)zl_load_u16(w2) << 32 | (uint64_t)zl_load_u16(w3) << 48;
    const __m128 d = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)h)), _mm_broadcast_ss(dx));
    const __m256 d2 = _mm256_castps128_ps256(d);
    *s01 = _mm256_permutevar8x32_ps(d2, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    *s23 = _mm256_permutevar8x32_ps(d2, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3));
}

/* Sum of the four lanes of one half. */
QK_TARGET static inline float QK_NAME(hsum_half)(__m256 v, int half) {
    __m128 s = half ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Unsigned values of a Q4_0 pair: lo, hi as above. */
QK_TARGET static inline void QK_NAME(pair_q4_0)(const uint8_t *a, const uint8_t *b, __m256i *lo, __m256i *hi) {
    const __m256i q = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(b + 2)), _mm_loadu_si128((const __m128i *)(a + 2)));
    *lo = _mm256_and_si256(q, _mm256_set1_epi8(0x0F));
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0F));
}

/* Q5_0: the nibbles plus the fifth bits (bit j of qh for value j). qh of row a
 * fills the low half of a vector, that of row b the high half; each byte of a
 * half then needs bit j of its own qh for its value j (j < 16 for lo, j >= 16
 * for hi). With BITALG one vpshufbitqmb picks those 32 bits straight into a
 * mask; with AVX-512BW a byte shuffle puts qh byte j / 8 in byte j and vptestmb
 * tests bit j % 8; either way one masked byte add sets the fifth bit. AVX2
 * spreads the bits to 0x10 bytes with shuffle, test and mask. */
QK_TARGET static inline void QK_NAME(pair_q5_0)(const uint8_t *a, const uint8_t *b, __m256i *lo, __m256i *hi) {
    const __m256i q = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(b + 6)), _mm_loadu_si128((const __m128i *)(a + 6)));
#ifdef QK_MASK_TO_BYTES /* a merge-masked broadcast puts b's qh in the high half */
    const __m256i qh = _mm256_mask_set1_epi32(_mm256_set1_epi32((int)zl_load_u32(a + 2)), 0xF0, (int)zl_load_u32(b + 2));
#else
    const __m256i qh = _mm256_blend_epi32(_mm256_set1_epi32((int)zl_load_u32(a + 2)), _mm256_set1_epi32((int)zl_load_u32(b + 2)), 0xF0);
#endif
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit = _mm256_set1_epi8(0x10);
    const __m256i l = _mm256_and_si256(q, m4), h = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
#if defined(QK_BITSHUFFLE)
    const __m256i jlo = _mm256_setr_epi64x(0x0706050403020100LL, 0x0F0E0D0C0B0A0908LL, 0x0706050403020100LL, 0x0F0E0D0C0B0A0908LL);
    *lo = _mm256_mask_add_epi8(l, _mm256_bitshuffle_epi64_mask(qh, jlo), l, bit);
    *hi = _mm256_mask_add_epi8(h, _mm256_bitshuffle_epi64_mask(qh, _mm256_add_epi8(jlo, bit)), h, bit);
#else
    const __m256i sel = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0, 0x0101010101010101LL);
    const __m256i two = _mm256_set1_epi8(2);
    const __m256i pick = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i blo = _mm256_shuffle_epi8(qh, sel), bhi = _mm256_shuffle_epi8(qh, _mm256_add_epi8(sel, two));
#if defined(QK_MASK_TO_BYTES)
    *lo = _mm256_mask_add_epi8(l, _mm256_test_epi8_mask(blo, pick), l, bit);
    *hi = _mm256_mask_add_epi8(h, _mm256_test_epi8_mask(bhi, pick), h, bit);
#else
    *lo = _mm256_or_si256(l, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(blo, pick), pick), bit));
    *hi = _mm256_or_si256(h, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bhi, pick), pick), bit));
#endif
#endif
}

/* Rows in groups of four over x's blocks 0..nb (ncorr, dx: pair_x_prep's),
 * y set or (accumulate) added to. Prefetch: with whole rows (`whole`) the four
 * rows' span is walked ahead; over part of the rows, each row's own stream. */
#define QK_PAIR_ROWS(name, wbytes, offset)                                                          \
    QK_TARGET static inline __attribute__((always_inline)) void QK_NAME(run_##name)(               \
        const uint8_t *w, int64_t stride, int64_t nrows, const uint8_t *xq, int32_t (*ncorr_seg)[4], \
        const float *dx_seg, int64_t nb, float *y, int accumulate, int whole) {                    \
        for (int64_t r = 0; r < nrows; r += 4) {                                                   \
            const int64_t n = nrows - r < 4 ? nrows - r : 4;                                       \
            const uint8_t *w0 = w + r * stride;                                                    \
            const uint8_t *w1 = w0 + (n > 1 ? stride : 0), *w2 = w0 + (n > 2 ? 2 * stride : 0);    \
            const uint8_t *w3 = w0 + (n > 3 ? 3 * stride : 0), *x = xq;                            \
            __m256 a01 = _mm256_setzero_ps(), a23 = a01;                                           \
            for (int64_t i = 0; i < nb; i++) {                                                     \
                if (whole) {                                                                       \
                    QK_PF_STEP(w + r * stride + 4 * i * (wbytes), 4 * (wbytes));                   \
                } else {                                                                           \
                    QK_PF_STEP(w0, wbytes); QK_PF_STEP(w1, wbytes);                                \
                    QK_PF_STEP(w2, wbytes); QK_PF_STEP(w3, wbytes);                                \
                }                                                                                  \
                const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + 2)));  \
                const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(x + 18))); \
                const __m256i ncorr = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ncorr_seg[i])); \
                __m256 s01, s23;                                                                   \
                QK_NAME(pair_scales)(w0, w1, w2, w3, dx_seg + i, &s01, &s23);                      \
                __m256i lo, hi;                                                                    \
                QK_NAME(pair_##name)(w0, w1, &lo, &hi);                                            \
                const __m256i p01 = QK_DPBUSD(QK_DPBUSD(ncorr, lo, xlo), hi, xhi);                 \
                QK_NAME(pair_##name)(w2, w3, &lo, &hi);                                            \
                const __m256i p23 = QK_DPBUSD(QK_DPBUSD(ncorr, lo, xlo), hi, xhi);                 \
                a01 = _mm256_fmadd_ps(s01, _mm256_cvtepi32_ps(p01), a01);                          \
                a23 = _mm256_fmadd_ps(s23, _mm256_cvtepi32_ps(p23), a23);                          \
                w0 += wbytes, w1 += wbytes, w2 += wbytes, w3 += wbytes, x += ZL_Q8_0_BYTES;        \
            }                                                                                      \
            const float v[4] = {QK_NAME(hsum_half)(a01, 0), QK_NAME(hsum_half)(a01, 1),            \
                                QK_NAME(hsum_half)(a23, 0), QK_NAME(hsum_half)(a23, 1)};           \
            for (int64_t q = 0; q < n; q++) y[r + q] = accumulate ? y[r + q] + v[q] : v[q];        \
        }                                                                                          \
    }                                                                                              \
    /* x's blocks in runs of QK_PAIR_SEG: one run unless k is longer */                            \
    QK_TARGET static void QK_NAME(rows_##name)(int64_t k, const uint8_t *w, int64_t stride,        \
                                               int64_t nrows, const uint8_t *xq, float *y) {       \
        int32_t ncorr_seg[QK_PAIR_SEG][4];                                                         \
        float dx_seg[QK_PAIR_SEG];                                                                 \
        const int64_t nb = k / 32;                                                                 \
        if (nb <= QK_PAIR_SEG) {                                                                   \
            QK_NAME(pair_x_prep)(xq, nb, offset, ncorr_seg, dx_seg);                               \
            QK_NAME(run_##name)(w, stride, nrows, xq, ncorr_seg, dx_seg, nb, y, 0, 1);             \
            return;                                                                                \
        }                                                                                          \
        for (int64_t s0 = 0; s0 < nb; s0 += QK_PAIR_SEG) {                                         \
            const int64_t len = nb - s0 < QK_PAIR_SEG ? nb - s0 : QK_PAIR_SEG;                     \
            const uint8_t *xs = xq + s0 * ZL_Q8_0_BYTES;                                           \
            QK_NAME(pair_x_prep)(xs, len, offset, ncorr_seg, dx_seg);                              \
            QK_NAME(run_##name)(w + s0 * (wbytes), stride, nrows, xs, ncorr_seg, dx_seg, len, y, s0 > 0, 0); \
        }                                                                                          \
    }

QK_PAIR_ROWS(q4_0, 18, 8)
QK_PAIR_ROWS(q5_0, 22, 16)

/* Q8_0, four rows per pass sharing x's loads; the four rows' scales from one
 * conversion (as the pairs above), x's scale prepared once per call. With VNNI
 * the weights go in unsigned, w + 128 (one xor, no sign fix-ups: vpdpbusd
 * sums into int32 without saturating), and x's lane sums times -128, prepared
 * with the scales, start each sum; AVX2's maddubs would saturate on that, so
 * it keeps the sign trick. */
#ifndef QK_Q8_SEG
#define QK_Q8_SEG 128 /* x blocks prepared at once: 4.5 KiB of stack */
#endif

QK_TARGET static inline void QK_NAME(q8_x_prep)(const uint8_t *x, int64_t nb, int32_t (*ncorr)[8], float *dx) {
    for (int64_t i = 0; i < nb; i++, x += ZL_Q8_0_BYTES) {
#ifdef QK_VNNI
        const __m256i s = QK_DPBUSD(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), QK_NAME(q8x)(x));
        _mm256_storeu_si256((__m256i *)ncorr[i], _mm256_sub_epi32(_mm256_setzero_si256(), s));
#else
        (void)ncorr;
#endif
        dx[i] = QK_NAME(f16)(x);
    }
}

/* 8 int32 sums of w . x for one row's block (ncorr: the row-independent start). */
QK_TARGET static inline __m256i QK_NAME(q8_dot)(const uint8_t *b, __m256i x8, __m256i ncorr) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(b + 2));
#ifdef QK_VNNI
    return QK_DPBUSD(ncorr, _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)), x8);
#else
    (void)ncorr;
    return QK_NAME(dot_i8)(q, x8);
#endif
}

QK_TARGET static inline __attribute__((always_inline)) void QK_NAME(run_q8_0)(
    const uint8_t *w, int64_t stride, int64_t nrows, const uint8_t *xq, int32_t (*ncorr_seg)[8],
    const float *dx_seg, int64_t nb, float *y, int accumulate, int whole) {
    for (int64_t r = 0; r < nrows; r += 4) {
        const int64_t n = nrows - r < 4 ? nrows - r : 4;
        const uint8_t *w0 = w + r * stride;
        const uint8_t *w1 = w0 + (n > 1 ? stride : 0), *w2 = w0 + (n > 2 ? 2 * stride : 0);
        const uint8_t *w3 = w0 + (n > 3 ? 3 * stride : 0), *x = xq;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < nb; i++) {
            if (whole) {
                QK_PF_STEP(w + r * stride + 4 * i * 34, 4 * 34);
            } else {
                QK_PF_STEP(w0, 34); QK_PF_STEP(w1, 34);
                QK_PF_STEP(w2, 34); QK_PF_STEP(w3, 34);
            }
            const __m256i x8 = QK_NAME(q8x)(x);
#ifdef QK_VNNI
            const __m256i ncorr = _mm256_loadu_si256((const __m256i *)ncorr_seg[i]);
#else
            const __m256i ncorr = _mm256_setzero_si256();
#endif
            const uint64_t h = (uint64_t)zl_load_u16(w0) | (uint64_t)zl_load_u16(w1) << 16 |
                               (uint64_t)zl_load_u16(w2) << 32 | (uint64_t)zl_load_u16(w3) << 48;
            const __m256 d = _mm256_castps128_ps256(
                _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)h)), _mm_broadcast_ss(dx_seg + i)));
            a0 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(0)),
                                 _mm256_cvtepi32_ps(QK_NAME(q8_dot)(w0, x8, ncorr)), a0);
            a1 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(1)),
                                 _mm256_cvtepi32_ps(QK_NAME(q8_dot)(w1, x8, ncorr)), a1);
            a2 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(2)),
                                 _mm256_cvtepi32_ps(QK_NAME(q8_dot)(w2, x8, ncorr)), a2);
            a3 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d, _mm256_set1_epi32(3)),
                                 _mm256_cvtepi32_ps(QK_NAME(q8_dot)(w3, x8, ncorr)), a3);
            w0 += 34, w1 += 34, w2 += 34, w3 += 34, x += ZL_Q8_0_BYTES;
        }
        const float v[4] = {QK_NAME(hsum)(a0), QK_NAME(hsum)(a1), QK_NAME(hsum)(a2), QK_NAME(hsum)(a3)};
        for (int64_t q = 0; q < n; q++) y[r + q] = accumulate ? y[r + q] + v[q] : v[q];
    }
}

QK_TARGET static void QK_NAME(rows_q8_0)(int64_t k, const uint8_t *w, int64_t stride, int64_t nrows,
                                         const uint8_t *xq, float *y) {
    int32_t ncorr_seg[QK_Q8_SEG][8];
    float dx_seg[QK_Q8_SEG];
    const int64_t nb = k / 32;
    if (nb <= QK_Q8_SEG) {
        QK_NAME(q8_x_prep)(xq, nb, ncorr_seg, dx_seg);
        QK_NAME(run_q8_0)(w, stride, nrows, xq, ncorr_seg, dx_seg, nb, y, 0, 1);
        return;
    }
    for (int64_t s0 = 0; s0 < nb; s0 += QK_Q8_SEG) {
        const int64_t len = nb - s0 < QK_Q8_SEG ? nb - s0 : QK_Q8_SEG;
        const uint8_t *xs = xq + s0 * ZL_Q8_0_BYTES;
        QK_NAME(q8_x_prep)(xs, len, ncorr_seg, dx_seg);
        QK_NAME(run_q8_0)(w + s0 * 34, stride, nrows, xs, ncorr_seg, dx_seg, len, y, s0 > 0, 0);
    }
}

/* ---- K-quants against Q8_K (x: f32 d, 256 int8 at 4, 16 int16 sums at 260) ---- */

/* Broadcast int16 lane i of each 128-bit half to the whole half. */
QK_TARGET static inline __m256i QK_NAME(lane16)(__m256i v, int i) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(((2 * i + 1) << 8) | (2 * i))));
}

/* Q4_K and Q5_K scales and mins: 16 int16, scales in 0..7, mins in 8..15. */
QK_TARGET static inline __m256i QK_NAME(k4_scales_mins)(const uint8_t *s) {
    uint32_t u[4];
    memcpy(u, s, 12);
    const uint32_t kmask1 = 0x3f3f3f3fu, kmask2 = 0x0f0f0f0fu, kmask3 = 0x03030303u;
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = uaux;
    u[0] &= kmask1;
    return _mm256_cvtepu8_epi16(_mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]));
}

/* -dmin * (mins . pair sums of x's 16-element sums), as 4 float lanes into accm. */
QK_TARGET static inline __m256 QK_NAME(k4_mins)(__m256i sm, const uint8_t *x, float dmin, __m256 acc) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)(x + 260));
    const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    const __m128i prod = _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), pairs);
    return _mm256_fmadd_ps(_mm256_set1_ps(-dmin), _mm256_set_m128(_mm_setzero_ps(), _mm_cvtepi32_ps(prod)), acc);
}

QK_TARGET static inline __m256 QK_NAME(blk_q4_k)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const float dx = zl_load_f32(x);
    const __m256i sm = QK_NAME(k4_scales_mins)(b + 4);
    acc = QK_NAME(k4_mins)(sm, x, QK_NAME(f16)(b + 2) * dx, acc);
    const __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *q4 = b + 16;
    const int8_t *q8 = (const int8_t *)(x + 4);
    __m256i sumi = _mm256_setzero_si256(), sumh = sumi; /* two chains of vpdpwssd */
    for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)q4);
        const __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        const __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
        const __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
        sumi = QK_DPWSSD(sumi, QK_NAME(lane16)(scales, 2 * j), pl);
        sumh = QK_DPWSSD(sumh, QK_NAME(lane16)(scales, 2 * j + 1), ph);
    }
    sumi = _mm256_add_epi32(sumi, sumh);
    return _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b) * dx), _mm256_cvtepi32_ps(sumi), acc);
}
QK_ROWS(q4_k, 144, ZL_Q8_K_BYTES, QK_NAME(blk_q4_k))

QK_TARGET static inline __m256 QK_NAME(blk_q5_k)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const float dx = zl_load_f32(x);
    const __m256i sm = QK_NAME(k4_scales_mins)(b + 4);
    acc = QK_NAME(k4_mins)(sm, x, QK_NAME(f16)(b + 2) * dx, acc);
    const __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit = _mm256_set1_epi8(0x10);
    const __m256i hbits = _mm256_loadu_si256((const __m256i *)(b + 16));
    const uint8_t *q4 = b + 48;
    const int8_t *q8 = (const int8_t *)(x + 4);
    __m256i sumi = _mm256_setzero_si256(), sumh = sumi; /* two chains of vpdpwssd */
    for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)q4);
        const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j), 4), bit);
        const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j + 1), 4), bit);
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4), h0);
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), h1);
        const __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
        const __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
        sumi = QK_DPWSSD(sumi, QK_NAME(lane16)(scales, 2 * j), pl);
        sumh = QK_DPWSSD(sumh, QK_NAME(lane16)(scales, 2 * j + 1), ph);
    }
    sumi = _mm256_add_epi32(sumi, sumh);
    return _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b) * dx), _mm256_cvtepi32_ps(sumi), acc);
}
QK_ROWS(q5_k, 176, ZL_Q8_K_BYTES, QK_NAME(blk_q5_k))

/* Q6_K: ql[128], qh[64], int8 scales[16], f16 d; the sum of sc * (q - 32) * x
 * as that of sc * q * x less 32 * (sc . x's 16-value sums): exact integers. */
QK_TARGET static inline __m256 QK_NAME(blk_q6_k)(const uint8_t *b, const uint8_t *x, __m256 acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192)));
    /* scales 0..7 and 8..15, each in both halves, for the in-lane picks below */
    const __m256i sclo = _mm256_permute2x128_si256(sc16, sc16, 0x00), schi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *q8 = (const int8_t *)(x + 4);
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)(x + 260));
    __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc16, bsums), 5));
    __m256i sumh = _mm256_setzero_si256(); /* a second chain of vpdpwssd */
    for (int j = 0; j < 2; j++, ql += 64, qh += 32) {
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)ql);
        const __m256i b2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
        const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_slli_epi16(_mm256_and_si256(h, m2), 4));
        q[1] = _mm256_or_si256(_mm256_and_si256(b2, m4), _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(12)), 2));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4), _mm256_and_si256(h, _mm256_set1_epi8(48)));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                               _mm256_srli_epi16(_mm256_and_si256(h, _mm256_set1_epi8((char)0xC0)), 2));
        const __m256i scv = j ? schi : sclo;
        for (int l = 0; l < 4; l++) {
            const __m256i x8 = _mm256_loadu_si256((const __m256i *)(q8 + 128 * j + 32 * l));
            const __m256i p = _mm256_maddubs_epi16(q[l], x8);
            /* int16 scale 2l of the group in the low half, 2l + 1 in the high half */
            const char lo0 = (char)(4 * l), lo1 = (char)(4 * l + 1), hi0 = (char)(4 * l + 2), hi1 = (char)(4 * l + 3);
            const __m256i two = _mm256_shuffle_epi8(
                scv, _mm256_setr_epi8(lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1,
                                      hi0, hi1, hi0, hi1, hi0, hi1, hi0, hi1, hi0, hi1, hi0, hi1, hi0, hi1, hi0, hi1));
            if (l & 1)
                sumh = QK_DPWSSD(sumh, two, p);
            else
                sumi = QK_DPWSSD(sumi, two, p);
        }
    }
    sumi = _mm256_add_epi32(sumi, sumh);
    return _mm256_fmadd_ps(_mm256_set1_ps(QK_NAME(f16)(b + 208) * zl_load_f32(x)), _mm256_cvtepi32_ps(sumi), acc);
}
QK_ROWS(q6_k, 210, ZL_Q8_K_BYTES, QK_NAME(blk_q6_k))

/* ---- float weights against float32 x ---- */

QK_TARGET static inline __m256 QK_NAME(ld_f32)(const uint8_t *p) { return _mm256_loadu_ps((const float *)p); }
QK_TARGET static inline __m256 QK_NAME(ld_f16)(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
QK_TARGET static inline __m256 QK_NAME(ld_bf16)(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

#define QK_FLOAT_ROWS(name, esize, LOAD, SCALAR)                                                   \
    QK_TARGET static void QK_NAME(rows_##name)(int64_t k, const uint8_t *w, int64_t stride,          \
                                               int64_t nrows, const uint8_t *xq, float *y) {         \
        const float *x = (const float *)xq;                                                          \
        for (int64_t r = 0; r < nrows; r++) {                                                        \
            const uint8_t *p = w + r * stride;                                                       \
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                               \
            int64_t j = 0;                                                                           \
            for (; j + 16 <= k; j += 16) {                                                           \
                a0 = _mm256_fmadd_ps(LOAD(p + esize * j), _mm256_loadu_ps(x + j), a0);               \
                a1 = _mm256_fmadd_ps(LOAD(p + esize * (j + 8)), _mm256_loadu_ps(x + j + 8), a1);     \
            }                                                                                        \
            float s = QK_NAME(hsum)(_mm256_add_ps(a0, a1));                                          \
            for (; j < k; j++) s += SCALAR(p + esize * j) * x[j];                                    \
            y[r] = s;                                                                                \
        }                                                                                            \
    }

static inline float QK_NAME(sc_bf16)(const uint8_t *p) { return zl_bf16_to_f32(zl_load_u16(p)); }
QK_FLOAT_ROWS(f32, 4, QK_NAME(ld_f32), zl_load_f32)
QK_FLOAT_ROWS(f16, 2, QK_NAME(ld_f16), zl_load_f16)
QK_FLOAT_ROWS(bf16, 2, QK_NAME(ld_bf16), QK_NAME(sc_bf16))

#include "dot_x86_lowbit_impl.h"

const zl_qdot_fn QK_NAME(table)[ZL_GGML_TYPE_COUNT] = {
    [ZL_GGML_Q4_0] = QK_NAME(rows_q4_0), [ZL_GGML_Q4_1] = QK_NAME(rows_q4_1),
    [ZL_GGML_Q5_0] = QK_NAME(rows_q5_0), [ZL_GGML_Q5_1] = QK_NAME(rows_q5_1),
    [ZL_GGML_Q8_0] = QK_NAME(rows_q8_0), [ZL_GGML_IQ4_NL] = QK_NAME(rows_iq4_nl),
    [ZL_GGML_Q4_K] = QK_NAME(rows_q4_k), [ZL_GGML_Q5_K] = QK_NAME(rows_q5_k),
    [ZL_GGML_Q6_K] = QK_NAME(rows_q6_k),
    [ZL_GGML_Q2_K] = QK_NAME(rows_q2_k),
    [ZL_GGML_Q3_K] = QK_NAME(rows_q3_k),
    [ZL_GGML_IQ4_XS] = QK_NAME(rows_iq4_xs),
    [ZL_GGML_F32] = QK_NAME(rows_f32), [ZL_GGML_F16] = QK_NAME(rows_f16), [ZL_GGML_BF16] = QK_NAME(rows_bf16),
};
