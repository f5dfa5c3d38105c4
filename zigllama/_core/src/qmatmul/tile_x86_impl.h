/* The AVX2 tile kernels of the tiled integer GEMM (qgemm_tile.h): 4 x rows per
 * group, each pair's 8 lanes summed across at the end of a block (the VNNI
 * kernels, tile_avx512.c, avoid that with another x layout). Included by
 * dot_avx2.c after dot_x86_impl.h (whose QK_TARGET and QK_NAME it shares),
 * with
 *   QK_TR                   rows of a tile taken per pass (the registers hold
 *                           QK_TR x ZL_TILE_M integer accumulators)
 *   QK_DPWSSD(acc, a, b)    acc + the int32 sums of pairs of int16 products a * b
 *   QK_SCALES(v, p, c)      the int16 scales of 32-value chunk c: p[2c] in the low
 *                           half, p[2c + 1] in the high half (v: p loaded)
 *   QK_LDOT(x, w)           8 int32 sums of 4 products of signed bytes x and w */

/* The full sums of four vectors of 8 int32, in lanes 0..3. */
QK_TARGET static inline __m128i QK_NAME(hsum4_epi32)(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

QK_TARGET static void QK_NAME(ktile)(int64_t nblocks, const zl_ktile *w, const void *vx, int flags,
                                     float out[ZL_TILE_R][ZL_TILE_M_MAX]) {
    const zl_kxgroup *x = (const zl_kxgroup *)vx;
    for (int r0 = 0; r0 < ZL_TILE_R; r0 += QK_TR) {
        __m128 acc[QK_TR];
        for (int r = 0; r < QK_TR; r++) acc[r] = _mm_setzero_ps();
        const zl_ktile *wb = w;
        const zl_kxgroup *xb = x;
        for (int64_t b = 0; b < nblocks; b++, wb++, xb++) {
            __m256i s[QK_TR][ZL_TILE_M], scv[QK_TR];
#pragma GCC unroll 4
            for (int r = 0; r < QK_TR; r++) {
                scv[r] = _mm256_loadu_si256((const __m256i *)wb->sc[r0 + r]);
                if (flags & ZL_TILE_NBIAS) {
                    const __m256i nb = _mm256_loadu_si256((const __m256i *)wb->nbias[r0 + r]);
                    for (int i = 0; i < ZL_TILE_M; i++)
                        s[r][i] = _mm256_madd_epi16(nb, _mm256_loadu_si256((const __m256i *)xb->bsums[i]));
                } else {
                    for (int i = 0; i < ZL_TILE_M; i++) s[r][i] = _mm256_setzero_si256();
                }
            }
#pragma GCC unroll 8
            for (int c = 0; c < QK_K / 32; c++) {
                __m256i wq[QK_TR], sc[QK_TR];
#pragma GCC unroll 4
                for (int r = 0; r < QK_TR; r++) {
                    wq[r] = _mm256_loadu_si256((const __m256i *)(wb->q[r0 + r] + 32 * c));
                    sc[r] = QK_SCALES(scv[r], wb->sc[r0 + r], c);
                }
#pragma GCC unroll 4
                for (int i = 0; i < ZL_TILE_M; i++) {
                    const __m256i xv = _mm256_loadu_si256((const __m256i *)(xb->q[i] + 32 * c));
#pragma GCC unroll 4
                    for (int r = 0; r < QK_TR; r++) s[r][i] = QK_DPWSSD(s[r][i], _mm256_maddubs_epi16(wq[r], xv), sc[r]);
                }
            }
            const __m128 dx = _mm_loadu_ps(xb->d);
#pragma GCC unroll 4
            for (int r = 0; r < QK_TR; r++) {
                const __m128i isum = QK_NAME(hsum4_epi32)(s[r][0], s[r][1], s[r][2], s[r][3]);
                acc[r] = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(wb->d[r0 + r]), dx), _mm_cvtepi32_ps(isum), acc[r]);
                if (flags & ZL_TILE_MINS) {
                    const __m256i mn = _mm256_loadu_si256((const __m256i *)wb->mins[r0 + r]);
                    __m256i m[ZL_TILE_M];
                    for (int i = 0; i < ZL_TILE_M; i++)
                        m[i] = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)xb->bsums[i]));
                    const __m128i msum = QK_NAME(hsum4_epi32)(m[0], m[1], m[2], m[3]);
                    acc[r] = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(-wb->dmin[r0 + r]), dx), _mm_cvtepi32_ps(msum), acc[r]);
                }
            }
        }
        for (int r = 0; r < QK_TR; r++) _mm_storeu_ps(out[r0 + r], acc[r]);
    }
}

QK_TARGET static void QK_NAME(ltile)(int64_t nblocks, const zl_ltile *w, const void *vx, int flags,
                                     float out[ZL_TILE_R][ZL_TILE_M_MAX]) {
    const zl_lxgroup *x = (const zl_lxgroup *)vx;
    __m128 acc[ZL_TILE_R];
    for (int r = 0; r < ZL_TILE_R; r++) acc[r] = _mm_setzero_ps();
    for (int64_t b = 0; b < nblocks; b++, w++, x++) {
        __m256i xv[ZL_TILE_M];
        for (int i = 0; i < ZL_TILE_M; i++) xv[i] = _mm256_loadu_si256((const __m256i *)x->q[i]);
        const __m128 dx = _mm_loadu_ps(x->d);
#pragma GCC unroll 4
        for (int r = 0; r < ZL_TILE_R; r++) {
            const __m256i wq = _mm256_loadu_si256((const __m256i *)w->q[r]);
            const __m128i isum = QK_NAME(hsum4_epi32)(QK_LDOT(xv[0], wq), QK_LDOT(xv[1], wq),
                                                      QK_LDOT(xv[2], wq), QK_LDOT(xv[3], wq));
            acc[r] = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(w->d[r]), dx), _mm_cvtepi32_ps(isum), acc[r]);
            if (flags & ZL_TILE_MINS) acc[r] = _mm_fmadd_ps(_mm_set1_ps(w->m[r]), _mm_loadu_ps(x->s), acc[r]);
        }
    }
    for (int r = 0; r < ZL_TILE_R; r++) _mm_storeu_ps(out[r], acc[r]);
}

/* ---- decoding W into tiles (the AVX2 and AVX-512 VNNI paths both use it) ---- */

/* Sum of 32 signed bytes. */
QK_TARGET static inline int QK_NAME(sum_i8)(__m256i v) {
    const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256());
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    return (int)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1)) - 32 * 128;
}

/* zl_tile_k_scales with vectors: scales (and mins) of 32 doubled over 16s. */
QK_TARGET static inline void QK_NAME(k_scales)(int type, const uint8_t *row, zl_ktile *t, int r) {
    __m256i sc16;
    if (type == ZL_GGML_Q6_K) {
        sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + 192)));
        _mm256_storeu_si256((__m256i *)t->nbias[r], _mm256_mullo_epi16(sc16, _mm256_set1_epi16(-32)));
        t->d[r] = QK_NAME(f16)(row + 208);
    } else {
        const __m256i sm = QK_NAME(k4_scales_mins)(row + 4);
        const __m128i s8 = _mm256_castsi256_si128(sm), m8 = _mm256_extracti128_si256(sm, 1);
        sc16 = _mm256_set_m128i(_mm_unpackhi_epi16(s8, s8), _mm_unpacklo_epi16(s8, s8));
        _mm256_storeu_si256((__m256i *)t->mins[r],
                            _mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8)));
        t->d[r] = QK_NAME(f16)(row);
        t->dmin[r] = QK_NAME(f16)(row + 2);
    }
    _mm256_storeu_si256((__m256i *)t->sc[r], sc16);
    _mm256_storeu_si256((__m256i *)t->sc32[r], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(sc16)));
    _mm256_storeu_si256((__m256i *)(t->sc32[r] + 8), _mm256_cvtepi16_epi32(_mm256_extracti128_si256(sc16, 1)));
}

QK_TARGET static int QK_NAME(unpack_row)(int type, const uint8_t *row, int64_t k, void *tiles, int r) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    switch (type) {
    case ZL_GGML_Q4_0: case ZL_GGML_Q4_1: case ZL_GGML_Q5_0: case ZL_GGML_Q5_1: case ZL_GGML_Q8_0:
    case ZL_GGML_IQ4_NL: {
        const int64_t wb = zl_ggml_type_table[type].type_size;
        const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)zl_kvalues_iq4nl));
        zl_ltile *t = (zl_ltile *)tiles;
        for (int64_t i = 0; i < k / 32; i++, t++, row += wb) {
            __m256i q;
            if (type == ZL_GGML_Q4_0) {
                q = _mm256_sub_epi8(QK_NAME(nibbles)(row + 2), _mm256_set1_epi8(8));
            } else if (type == ZL_GGML_Q4_1) {
                q = QK_NAME(nibbles)(row + 4);
                t->m[r] = QK_NAME(f16)(row + 2);
            } else if (type == ZL_GGML_Q5_1) {
                const __m256i hi = _mm256_and_si256(QK_NAME(bits32)(zl_load_u32(row + 4)), _mm256_set1_epi8(0x10));
                q = _mm256_or_si256(QK_NAME(nibbles)(row + 8), hi);
                t->m[r] = QK_NAME(f16)(row + 2);
            } else if (type == ZL_GGML_Q5_0) {
                const __m256i hi = _mm256_andnot_si256(QK_NAME(bits32)(zl_load_u32(row + 2)), _mm256_set1_epi8((char)0xF0));
                q = _mm256_or_si256(QK_NAME(nibbles)(row + 6), hi);
            } else if (type == ZL_GGML_Q8_0) {
                q = _mm256_loadu_si256((const __m256i *)(row + 2));
            } else {
                q = _mm256_shuffle_epi8(table, QK_NAME(nibbles)(row + 2));
            }
            _mm256_storeu_si256((__m256i *)t->q[r], q);
            t->nsum[r] = -128 * QK_NAME(sum_i8)(q);
            t->d[r] = QK_NAME(f16)(row);
        }
        return 1;
    }
    case ZL_GGML_IQ4_XS: { /* 8 legacy tiles per block of 256 (unpack_iq4_xs in qgemm_tile.c) */
        const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)zl_kvalues_iq4nl));
        zl_ltile *t = (zl_ltile *)tiles;
        for (int64_t i = 0; i < k / QK_K; i++, row += 136) {
            const float d = QK_NAME(f16)(row);
            const uint16_t h = zl_load_u16(row + 2);
            for (int ib = 0; ib < 8; ib++, t++) {
                const int ls = ((row[4 + ib / 2] >> (4 * (ib & 1))) & 0xF) | (((h >> (2 * ib)) & 3) << 4);
                const __m256i q = _mm256_shuffle_epi8(table, QK_NAME(nibbles)(row + 8 + 16 * ib));
                _mm256_storeu_si256((__m256i *)t->q[r], q);
                t->nsum[r] = -128 * QK_NAME(sum_i8)(q);
                t->d[r] = d * (float)(ls - 32);
            }
        }
        return 1;
    }
    case ZL_GGML_Q4_K: case ZL_GGML_Q5_K: {
        const int64_t wb = type == ZL_GGML_Q4_K ? 144 : 176;
        zl_ktile *t = (zl_ktile *)tiles;
        for (int64_t i = 0; i < k / QK_K; i++, t++, row += wb) {
            const uint8_t *q4 = row + (type == ZL_GGML_Q4_K ? 16 : 48);
            const __m256i hbits = _mm256_loadu_si256((const __m256i *)(row + 16));
            for (int j = 0; j < 4; j++) {
                const __m256i bits = _mm256_loadu_si256((const __m256i *)(q4 + 32 * j));
                __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                if (type == ZL_GGML_Q5_K) {
                    const __m256i bit = _mm256_set1_epi8(0x10);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j), 4), bit));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j + 1), 4), bit));
                }
                _mm256_storeu_si256((__m256i *)(t->q[r] + 64 * j), lo);
                _mm256_storeu_si256((__m256i *)(t->q[r] + 64 * j + 32), hi);
            }
            QK_NAME(k_scales)(type, row, t, r);
        }
        return 1;
    }
    case ZL_GGML_Q6_K: {
        const __m256i m2 = _mm256_set1_epi8(3);
        zl_ktile *t = (zl_ktile *)tiles;
        for (int64_t i = 0; i < k / QK_K; i++, t++, row += 210) {
            const uint8_t *ql = row, *qh = row + 128;
            for (int half = 0; half < 2; half++, ql += 64, qh += 32) {
                const __m256i b1 = _mm256_loadu_si256((const __m256i *)ql);
                const __m256i b2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
                uint8_t *o = t->q[r] + 128 * half;
                _mm256_storeu_si256((__m256i *)o, _mm256_or_si256(_mm256_and_si256(b1, m4),
                                                                  _mm256_slli_epi16(_mm256_and_si256(h, m2), 4)));
                _mm256_storeu_si256((__m256i *)(o + 32),
                                    _mm256_or_si256(_mm256_and_si256(b2, m4),
                                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4)));
                _mm256_storeu_si256((__m256i *)(o + 64),
                                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
                                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4)));
                _mm256_storeu_si256((__m256i *)(o + 96),
                                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4)));
            }
            QK_NAME(k_scales)(type, row, t, r);
        }
        return 1;
    }
    default:
        return 0;
    }
}
