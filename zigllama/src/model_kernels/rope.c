/* Rotary position embedding of one head, from the position's cos/sin rows. The
 * loops are plain C: GCC vectorizes the neox form (two contiguous halves) by itself;
 * the normal form's adjacent pairs are cheap enough at head_dim <= 256. */
#include "zl_model_kernels.h"

void zl_rope_head(float *x, const float *cos_t, const float *sin_t, int64_t n_dims, int neox) {
    int64_t half = n_dims / 2;
    if (neox) {
        float *a = x, *b = x + half;
        for (int64_t i = 0; i < half; i++) {
            float xa = a[i], xb = b[i], c = cos_t[i], s = sin_t[i];
            a[i] = xa * c - xb * s;
            b[i] = xa * s + xb * c;
        }
    } else {
        for (int64_t i = 0; i < half; i++) {
            float xa = x[2 * i], xb = x[2 * i + 1], c = cos_t[i], s = sin_t[i];
            x[2 * i] = xa * c - xb * s;
            x[2 * i + 1] = xa * s + xb * c;
        }
    }
}
