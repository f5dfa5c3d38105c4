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

#endif
