/* The row-wise steps of a transformer forward pass that are not matrix products:
 * the gated activations (SwiGLU, GeGLU), RMSNorm fused with its weight and with the
 * residual add, the masked softmax of attention scores, RoPE. Each entry point
 * picks its AVX-512, AVX2+FMA or portable body at run time (zl_cpu.h); all work on
 * one contiguous row (or a flat run of elements): the caller splits rows over threads. */
#ifndef ZIGLLAMA_ZL_MODEL_KERNELS_H
#define ZIGLLAMA_ZL_MODEL_KERNELS_H

#include <stdint.h>

/* gate[i] = act(gate[i]) * up[i] for i < n; act is SiLU (gelu == 0) or the
 * tanh-approximated GELU, computed as g * sigmoid(2u) (= 0.5 g (1 + tanh u)). */
void zl_glu(float *gate, const float *up, int64_t n, int gelu);

/* out = x / sqrt(mean(x^2) + eps) * w (sum of squares in double); out may be x. */
void zl_rms_norm_row(const float *x, const float *w, float eps, float *out, int64_t n);

/* The residual step between two blocks, in one pass over the row:
 *   d = post_w ? rms_norm(delta) * post_w : delta;  x += d;
 *   out = next_w ? rms_norm(x) * next_w : (nothing written). */
void zl_residual_norm_row(float *x, const float *delta, const float *post_w, const float *next_w,
                          float eps, float *out, int64_t n);

/* One attention row in place: s[lo..hi) scaled (then soft-capped when softcap > 0)
 * and softmax'd; s[0..lo) and s[hi..n) set to 0. */
void zl_softmax_row(float *s, int64_t lo, int64_t hi, int64_t n, float scale, float softcap);

/* One query row against nk keys (rows of hd floats): out[j] = q . k[j]. */
void zl_attn_scores(const float *q, const float *k, int64_t nk, int64_t hd, float *out);

/* out = sum_j p[j] * v[j] over nk value rows of hd floats (keys with p[j] == 0 skipped). */
void zl_attn_weighted_sum(const float *p, const float *v, int64_t nk, int64_t hd, float *out);

/* Rotate one head of head_dim floats: neox pairs (i, i + n_dims/2), normal pairs
 * (2i, 2i+1); elements past n_dims unchanged. cos/sin hold n_dims/2 values. */
void zl_rope_head(float *x, const float *cos_t, const float *sin_t, int64_t n_dims, int neox);

/* x = cap * tanh(x / cap) over n elements. */
void zl_soft_cap(float *x, int64_t n, float cap);

/* The next index of a shared counter (tasks claimed by whichever thread is free). */
static inline int64_t zl_claim_next(int64_t *counter) {
    return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* "avx512", "avx2" or "portable": the path these kernels take. */
const char *zl_model_kernels_path(void);

#endif
