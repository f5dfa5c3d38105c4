/* Row kernels for ParallelOps: each call handles rows [begin, end) of a
 * C-contiguous matrix, so parallel_for can hand out row blocks. */
#include <math.h>
#include <stdint.h>

#include "zigllama/zl_threading.h"

/* softmax(x)_j = exp(x_j - max x) / sum_k exp(x_k - max x): subtracting the
 * maximum keeps every exp() in (0, 1], so nothing overflows, and the result is
 * the same as the log-sum-exp form exp(x_j - logsumexp(x)). Sums in double. */
#define DEFINE_SOFTMAX(NAME, T, EXP)                                                     \
    int NAME(void *vctx, int64_t begin, int64_t end) {                                   \
        const zl_rows_ctx *c = vctx;                                                     \
        const int64_t n = c->cols;                                                       \
        if (n <= 0) return 0;                                                            \
        for (int64_t r = begin; r < end; r++) {                                          \
            const T *x = (const T *)c->x + r * n;                                        \
            T *y = (T *)c->out + r * n;                                                  \
            T m = x[0];                                                                  \
            for (int64_t j = 1; j < n; j++) m = x[j] > m ? x[j] : m;                     \
            if (isnan(m)) {                                                              \
                /* x[0] NaN hides the max of the rest; any NaN makes the row NaN. */    \
                for (int64_t j = 0; j < n; j++) y[j] = (T)NAN;                           \
                continue;                                                                \
            }                                                                            \
            double s = 0.0;                                                              \
            for (int64_t j = 0; j < n; j++) {                                            \
                T e = EXP(x[j] - m);                                                     \
                y[j] = e;                                                                \
                s += (double)e;                                                          \
            }                                                                            \
            const T sum = (T)s;                                                          \
            for (int64_t j = 0; j < n; j++) y[j] = y[j] / sum;                           \
        }                                                                                \
        return 0;                                                                        \
    }

DEFINE_SOFTMAX(zl_softmax_rows_f32, float, expf)
DEFINE_SOFTMAX(zl_softmax_rows_f64, double, exp)

/* rmsnorm(x) = x / sqrt(mean(x^2) + eps) * weight (weight may be NULL). */
#define DEFINE_RMSNORM(NAME, T, SQRT)                                                    \
    int NAME(void *vctx, int64_t begin, int64_t end) {                                   \
        const zl_rows_ctx *c = vctx;                                                     \
        const int64_t n = c->cols;                                                       \
        const T *w = (const T *)c->weight;                                               \
        if (n <= 0) return 0;                                                            \
        for (int64_t r = begin; r < end; r++) {                                          \
            const T *x = (const T *)c->x + r * n;                                        \
            T *y = (T *)c->out + r * n;                                                  \
            double ss = 0.0;                                                             \
            for (int64_t j = 0; j < n; j++) ss += (double)x[j] * (double)x[j];           \
            const T scale = (T)(1.0 / sqrt(ss / (double)n + c->eps));                    \
            if (w != NULL)                                                               \
                for (int64_t j = 0; j < n; j++) y[j] = x[j] * scale * w[j];              \
            else                                                                         \
                for (int64_t j = 0; j < n; j++) y[j] = x[j] * scale;                     \
        }                                                                                \
        return 0;                                                                        \
    }

DEFINE_RMSNORM(zl_rmsnorm_rows_f32, float, sqrtf)
DEFINE_RMSNORM(zl_rmsnorm_rows_f64, double, sqrt)
