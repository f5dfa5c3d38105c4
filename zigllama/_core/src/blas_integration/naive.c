/* The "naive" backend: the seed's triple loop (see naive_impl.h). */
#include <math.h>

#include "zl_blas_backends.h"

#define ZL_T float
#define ZL_X(name) s##name
#include "naive_impl.h"
#undef ZL_T
#undef ZL_X

#define ZL_T double
#define ZL_X(name) d##name
#include "naive_impl.h"

const zl_blas_vtable zl_blas_naive_vtable = {
    snaive_dot, dnaive_dot, snaive_axpy, dnaive_axpy, snaive_scal, dnaive_scal, snaive_nrm2, dnaive_nrm2,
    snaive_gemv, dnaive_gemv, snaive_gemm, dnaive_gemm, zl_blas_naive_qgemm,
};
