/* The qgemm slot of the C backends (see zl_blas_backends.h). */
#include <stddef.h>

#include "zl_blas_backends.h"

static zl_qgemm_impl_fn registered_impl;

void zl_blas_register_qgemm(zl_qgemm_impl_fn impl) { __atomic_store_n(&registered_impl, impl, __ATOMIC_RELEASE); }

int zl_blas_qgemm_via(zl_blas self, const struct zl_qtensor *w, zl_blas_int m, const float *x,
                      zl_blas_int ldx, float *y, zl_blas_int ldy, int mode, int nthreads) {
    zl_qgemm_impl_fn impl = __atomic_load_n(&registered_impl, __ATOMIC_ACQUIRE);
    if (impl == NULL) return ZL_BLAS_ENOSYS;
    return impl(self, w, m, x, ldx, y, ldy, mode, nthreads);
}

int zl_blas_generic_qgemm(void *ctx, const struct zl_qtensor *w, zl_blas_int m, const float *x,
                          zl_blas_int ldx, float *y, zl_blas_int ldy, int mode, int nthreads) {
    zl_blas self = {"generic", ctx, &zl_blas_generic_vtable};
    return zl_blas_qgemm_via(self, w, m, x, ldx, y, ldy, mode, nthreads);
}

int zl_blas_naive_qgemm(void *ctx, const struct zl_qtensor *w, zl_blas_int m, const float *x,
                        zl_blas_int ldx, float *y, zl_blas_int ldy, int mode, int nthreads) {
    zl_blas self = {"naive", ctx, &zl_blas_naive_vtable};
    return zl_blas_qgemm_via(self, w, m, x, ldx, y, ldy, mode, nthreads);
}
