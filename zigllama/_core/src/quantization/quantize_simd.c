/* AVX2 versions of the scale searches: eight candidate scales at once, one per
 * lane. Each lane does exactly the scalar arithmetic of its candidate, summing
 * over the values in the same order, so the results are bit-identical to the
 * portable searches (quantize_search.c); only the candidates run side by side.
 * No FMA: the build has -ffp-contract=off and these use separate mul/add. */
#include "quantize_impl.h"

#if ZL_X86

ZL_TARGET_AVX2 static inline __m256i nearest_int8(__m256 f) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256i i = _mm256_castps_si256(_mm256_add_ps(f, magic));
    return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

/* The candidate loop of search_scale_min (make_qkx2/qkx3_quants): candidates
 * is = 0..nstep. For each, in order, the same test as the scalar loop decides
 * whether it replaces the best so far; L, scale and min are updated in place.
 * A candidate that wins changes the min the later candidates start from, so
 * the lanes after a winner are discarded and recomputed from the new min
 * (wins are rare after the first few candidates). */
ZL_TARGET_AVX2 void zlq_search_scale_min_avx2(int n, int nmax, const float *restrict x, const float *restrict w,
                                              float sum_w, float sum_x, float *min_io, float max,
                                              uint8_t *restrict L, float *scale_io, float *best_error_io,
                                              float rmin, float rdelta, int nstep, int use_mad) {
    int32_t Lc[256 * 8];  /* the quants of the eight candidates, value-major */
    float xm[256];
    float min = *min_io, scale = *scale_io, best_error = *best_error_io;
    const __m256i zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(nmax);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int is0 = 0; is0 <= nstep;) {
        const float min0 = min;
        for (int i = 0; i < n; ++i) xm[i] = x[i] - min0;
        float iscale_l[8];
        for (int k = 0; k < 8; ++k) iscale_l[k] = (rmin + rdelta * (is0 + k) + nmax) / (max - min0);
        const __m256 iscale = _mm256_loadu_ps(iscale_l);
        __m256 sum_l = _mm256_setzero_ps(), sum_l2 = _mm256_setzero_ps(), sum_xl = _mm256_setzero_ps();
        for (int i = 0; i < n; ++i) {
            __m256i l = nearest_int8(_mm256_mul_ps(iscale, _mm256_set1_ps(xm[i])));
            l = _mm256_min_epi32(_mm256_max_epi32(l, zero), top);
            _mm256_storeu_si256((__m256i *)(Lc + 8 * i), l);
            const __m256 lf = _mm256_cvtepi32_ps(l);
            const __m256 wl = _mm256_mul_ps(_mm256_set1_ps(w[i]), lf);
            sum_l = _mm256_add_ps(sum_l, wl);
            sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, lf));
            sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, _mm256_set1_ps(x[i])));
        }
        const __m256 vsum_w = _mm256_set1_ps(sum_w), vsum_x = _mm256_set1_ps(sum_x);
        const __m256 D = _mm256_sub_ps(_mm256_mul_ps(vsum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(vsum_w, sum_xl), _mm256_mul_ps(vsum_x, sum_l)), D);
        __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, vsum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
        const __m256 positive = _mm256_cmp_ps(this_min, _mm256_setzero_ps(), _CMP_GT_OQ);
        this_min = _mm256_andnot_ps(positive, this_min);
        this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), positive);
        __m256 err = _mm256_setzero_ps();
        for (int i = 0; i < n; ++i) {
            const __m256 lf = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(Lc + 8 * i)));
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, lf), this_min), _mm256_set1_ps(x[i]));
            diff = use_mad ? _mm256_and_ps(diff, abs_mask) : _mm256_mul_ps(diff, diff);
            err = _mm256_add_ps(err, _mm256_mul_ps(_mm256_set1_ps(w[i]), diff));
        }
        float Dl[8], sl[8], ml[8], el[8];
        _mm256_storeu_ps(Dl, D);
        _mm256_storeu_ps(sl, this_scale);
        _mm256_storeu_ps(ml, this_min);
        _mm256_storeu_ps(el, err);
        int next = is0 + 8;
        for (int k = 0; k < 8 && is0 + k <= nstep; ++k) {
            if (Dl[k] > 0 && el[k] < best_error) {
                for (int i = 0; i < n; ++i) L[i] = (uint8_t)Lc[8 * i + k];
                best_error = el[k];
                scale = sl[k];
                min = ml[k];
                next = is0 + k + 1;
                break;
            }
        }
        is0 = next;
    }
    *min_io = min;
    *scale_io = scale;
    *best_error_io = best_error;
}

/* The 18 neighbouring scales of make_qx_quants, -(nmax + 0.1 is) / max for
 * is = -9..9 but 0: they do not depend on each other, so all are evaluated in
 * lanes and then tested in order exactly as the scalar loop tests them. */
ZL_TARGET_AVX2 void zlq_qx_candidates_avx2(int n, int nmax, const float *restrict x, const float *restrict w,
                                           float max, int8_t *restrict L, float *scale_io, float *best_io) {
    static const int steps[24] = {-9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9};
    int32_t Lc[256 * 8];
    float wx[256];
    float scale = *scale_io, best = *best_io;
    for (int i = 0; i < n; ++i) wx[i] = w[i] * x[i];
    const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
    for (int c0 = 0; c0 < 18; c0 += 8) {
        float iscale_l[8];
        for (int k = 0; k < 8; ++k) iscale_l[k] = -(nmax + 0.1f * steps[c0 + k]) / max;
        const __m256 iscale = _mm256_loadu_ps(iscale_l);
        __m256 sumlx = _mm256_setzero_ps(), suml2 = _mm256_setzero_ps();
        for (int i = 0; i < n; ++i) {
            __m256i l = nearest_int8(_mm256_mul_ps(iscale, _mm256_set1_ps(x[i])));
            l = _mm256_min_epi32(_mm256_max_epi32(l, lo), hi);
            _mm256_storeu_si256((__m256i *)(Lc + 8 * i), l);
            const __m256 lf = _mm256_cvtepi32_ps(l);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_set1_ps(wx[i]), lf));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), lf), lf));
        }
        float sx[8], s2[8];
        _mm256_storeu_ps(sx, sumlx);
        _mm256_storeu_ps(s2, suml2);
        for (int k = 0; k < 8 && c0 + k < 18; ++k) {
            if (s2[k] > 0 && sx[k] * sx[k] > best * s2[k]) {
                for (int i = 0; i < n; ++i) L[i] = (int8_t)(nmax + Lc[8 * i + k]);
                scale = sx[k] / s2[k];
                best = scale * sx[k];
            }
        }
    }
    *scale_io = scale;
    *best_io = best;
}

/* ggml's best_index_int8 over the IQ4 levels for eight values: past either end
 * the end index; otherwise, with mu the number of levels <= x (what the
 * bisection finds), mu - 1 when x - level[mu-1] < level[mu] - x, else mu. */
ZL_TARGET_AVX2 static inline __m256i nearest_level8(__m256 x, const float *levels) {
    __m256i count = _mm256_setzero_si256();
    for (int j = 0; j < 16; ++j) {
        const __m256 ge = _mm256_cmp_ps(x, _mm256_set1_ps(levels[j]), _CMP_GE_OQ);
        count = _mm256_sub_epi32(count, _mm256_castps_si256(ge));
    }
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i mu = _mm256_min_epi32(_mm256_max_epi32(count, one), _mm256_set1_epi32(15));
    const __m256i below = _mm256_sub_epi32(mu, one);
    const __m256 lo = _mm256_i32gather_ps(levels, below, 4), hi = _mm256_i32gather_ps(levels, mu, 4);
    const __m256 take_lower = _mm256_cmp_ps(_mm256_sub_ps(x, lo), _mm256_sub_ps(hi, x), _CMP_LT_OQ);
    __m256i l = _mm256_blendv_epi8(mu, below, _mm256_castps_si256(take_lower));
    const __m256 at_bottom = _mm256_cmp_ps(x, _mm256_set1_ps(levels[0]), _CMP_LE_OQ);
    const __m256 at_top = _mm256_cmp_ps(x, _mm256_set1_ps(levels[15]), _CMP_GE_OQ);
    l = _mm256_blendv_epi8(l, _mm256_set1_epi32(15), _mm256_castps_si256(at_top));
    return _mm256_andnot_si256(_mm256_castps_si256(at_bottom), l);
}

/* Indices of n (a multiple of 8) values id * x[j] (IQ4's re-indexing). */
ZL_TARGET_AVX2 void zlq_iq4_indices_avx2(const float *restrict x, float id, int n, const float *levels,
                                         uint8_t *restrict L) {
    int32_t tmp[8];
    for (int j = 0; j < n; j += 8) {
        _mm256_storeu_si256((__m256i *)tmp,
                            nearest_level8(_mm256_mul_ps(_mm256_set1_ps(id), _mm256_loadu_ps(x + j)), levels));
        for (int k = 0; k < 8; ++k) L[j + k] = (uint8_t)tmp[k];
    }
}

/* The 15 tries of an IQ4 block's scale, (itry + level[0]) / max for itry =
 * -7..7, in lanes; tested in order as the scalar loop does. */
ZL_TARGET_AVX2 void zlq_iq4_tries_avx2(const float *restrict xb, const float *restrict weight, float max,
                                       const float *levels, float *d_io, float *best_io) {
    float d = *d_io, best = *best_io;
    for (int t0 = -7; t0 <= 7; t0 += 8) {
        float id_l[8];
        for (int k = 0; k < 8; ++k) id_l[k] = (t0 + k + levels[0]) / max;
        const __m256 id = _mm256_loadu_ps(id_l);
        __m256 sumqx = _mm256_setzero_ps(), sumq2 = _mm256_setzero_ps();
        for (int j = 0; j < 32; ++j) {
            const __m256 xj = _mm256_set1_ps(xb[j]);
            const __m256 q = _mm256_i32gather_ps(levels, nearest_level8(_mm256_mul_ps(id, xj), levels), 4);
            const __m256 wq = _mm256_mul_ps(_mm256_set1_ps(weight[j]), q);
            sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, xj));
            sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
        }
        float sx[8], s2[8];
        _mm256_storeu_ps(sx, sumqx);
        _mm256_storeu_ps(s2, sumq2);
        for (int k = 0; k < 8 && t0 + k <= 7; ++k) {
            if (s2[k] > 0 && sx[k] * sx[k] > best * s2[k]) {
                d = sx[k] / s2[k];
                best = d * sx[k];
            }
        }
    }
    *d_io = d;
    *best_io = best;
}

#endif
