/* AVX-512 VNNI tile kernels of the tiled integer GEMM (qgemm_tile.h).
 *
 * x comes in groups of 8 rows laid side by side per 4-byte column
 * (zl_kxgroup8 / zl_lxgroup8): one vpdpbusd of such a column against 4 bytes of
 * a W row, broadcast, adds that row's products with all 8 x rows, one x row per
 * int32 lane. The lanes never need summing across, the float scaling is one
 * multiply-add per W row and block for 8 x rows, and the W bytes come as
 * broadcast memory operands. 256-bit vectors: Zen 4 splits 512-bit ones in two,
 * and the 8 lanes match the 8 x rows. */
#include "qgemm_tile.h"

#if ZL_X86

#define TILE_TARGET ZL_TARGET_AVX512_VNNI

TILE_TARGET static inline __m256i bcast32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* K family: per 16-value sub-block, 4 vpdpbusd (unsigned W bytes, signed x)
 * then one multiply by the sub-block scale; the offsets (nbias, mins) through
 * vpdpwssd of W's int16 pairs against x's pairs of 16-value sums. */
TILE_TARGET static void ktile_vnni(int64_t nblocks, const zl_ktile *w, const void *vx, int flags,
                                   float out[ZL_TILE_R][ZL_TILE_M_MAX]) {
    const zl_kxgroup8 *x = (const zl_kxgroup8 *)vx;
    __m256 acc[ZL_TILE_R];
    for (int r = 0; r < ZL_TILE_R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblocks; b++, w++, x++) {
        __m256i isum[ZL_TILE_R];
        if (flags & ZL_TILE_NBIAS) {
#pragma GCC unroll 4
            for (int r = 0; r < ZL_TILE_R; r++) {
                __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int p = 0; p < 8; p++)
                    s = _mm256_dpwssd_epi32(s, bcast32(&w->nbias[r][2 * p]),
                                            _mm256_loadu_si256((const __m256i *)x->bsums[p]));
                isum[r] = s;
            }
        } else {
            for (int r = 0; r < ZL_TILE_R; r++) isum[r] = _mm256_setzero_si256();
        }
        for (int g = 0; g < 16; g++) {
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)x->q[4 * g]);
            const __m256i x1 = _mm256_loadu_si256((const __m256i *)x->q[4 * g + 1]);
            const __m256i x2 = _mm256_loadu_si256((const __m256i *)x->q[4 * g + 2]);
            const __m256i x3 = _mm256_loadu_si256((const __m256i *)x->q[4 * g + 3]);
#pragma GCC unroll 4
            for (int r = 0; r < ZL_TILE_R; r++) {
                const uint8_t *q = w->q[r] + 16 * g;
                __m256i t0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bcast32(q), x0);
                __m256i t1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bcast32(q + 4), x1);
                t0 = _mm256_dpbusd_epi32(t0, bcast32(q + 8), x2);
                t1 = _mm256_dpbusd_epi32(t1, bcast32(q + 12), x3);
                isum[r] = _mm256_add_epi32(
                    isum[r], _mm256_mullo_epi32(_mm256_add_epi32(t0, t1), _mm256_set1_epi32(w->sc32[r][g])));
            }
        }
        const __m256 dx = _mm256_loadu_ps(x->d);
#pragma GCC unroll 4
        for (int r = 0; r < ZL_TILE_R; r++) {
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(w->d[r]), dx), _mm256_cvtepi32_ps(isum[r]), acc[r]);
            if (flags & ZL_TILE_MINS) {
                __m256i m = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int p = 0; p < 8; p++)
                    m = _mm256_dpwssd_epi32(m, bcast32(&w->mins[r][2 * p]),
                                            _mm256_loadu_si256((const __m256i *)x->bsums[p]));
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(-w->dmin[r]), dx), _mm256_cvtepi32_ps(m), acc[r]);
            }
        }
    }
    for (int r = 0; r < ZL_TILE_R; r++) _mm256_storeu_ps(out[r], acc[r]);
}

/* Legacy: x stored as x + 128 (unsigned), W's signed bytes broadcast; each
 * row's sum starts from -128 * (the sum of its 32 values). Two chains per row
 * keep eight vpdpbusd in flight. */
TILE_TARGET static void ltile_vnni(int64_t nblocks, const zl_ltile *w, const void *vx, int flags,
                                   float out[ZL_TILE_R][ZL_TILE_M_MAX]) {
    const zl_lxgroup8 *x = (const zl_lxgroup8 *)vx;
    __m256 acc[ZL_TILE_R];
    for (int r = 0; r < ZL_TILE_R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblocks; b++, w++, x++) {
        __m256i xv[8];
        for (int c = 0; c < 8; c++) xv[c] = _mm256_loadu_si256((const __m256i *)x->q[c]);
        const __m256 dx = _mm256_loadu_ps(x->d), sx = _mm256_loadu_ps(x->s);
#pragma GCC unroll 4
        for (int r = 0; r < ZL_TILE_R; r++) {
            const int8_t *q = w->q[r];
            __m256i s0 = _mm256_set1_epi32(w->nsum[r]), s1 = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int c = 0; c < 8; c += 2) {
                s0 = _mm256_dpbusd_epi32(s0, xv[c], bcast32(q + 4 * c));
                s1 = _mm256_dpbusd_epi32(s1, xv[c + 1], bcast32(q + 4 * c + 4));
            }
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(w->d[r]), dx),
                                     _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), acc[r]);
            if (flags & ZL_TILE_MINS) acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(w->m[r]), sx, acc[r]);
        }
    }
    for (int r = 0; r < ZL_TILE_R; r++) _mm256_storeu_ps(out[r], acc[r]);
}

const zl_tile_kernels zl_tile_avx512_vnni = {ktile_vnni, ltile_vnni, 8, zl_tile_pack_x8, zl_tile_x8_bytes,
                                            zl_tile_unpack_avx2, ZL_TILE_SET_AVX512_VNNI};

#else

const zl_tile_kernels zl_tile_avx512_vnni = {NULL, NULL, 8, zl_tile_pack_x8, zl_tile_x8_bytes, NULL,
                                            ZL_TILE_SET_AVX512_VNNI};

#endif
