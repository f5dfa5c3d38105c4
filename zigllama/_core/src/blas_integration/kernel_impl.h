/* Micro-kernels of the generic GEMM, written once for both element types.
 *
 * Included by generic.c with ZL_T (element type), ZL_X(name) (s- or d- prefixed
 * name), ZL_MR x ZL_NR (tile) and, for the AVX2 kernel, ZL_V (vector type), ZL_W
 * (lanes) and the ZL_V* intrinsic names defined.
 *
 * A kernel multiplies an ZL_MR x kc micro-panel of packed A (column by column)
 * by a kc x ZL_NR micro-panel of packed B (row by row) and writes
 * C[0:mr, 0:nr] = alpha * AB + beta * C. Tiles at the right or bottom edge of C
 * (mr < ZL_MR or nr < ZL_NR) are computed whole (the packed panels are zero-filled
 * there) and only their valid part is written: the caller's arrays are never
 * read or written past their end.
 */

/* C[0:mr, 0:nr] = alpha * acc + beta * C, acc an ZL_MR x ZL_NR row-major tile. */
static inline void ZL_X(store_tile)(const ZL_T *acc, ZL_T *c, zl_blas_int ldc, ZL_T alpha, ZL_T beta,
                                    int mr, int nr) {
    for (int i = 0; i < mr; i++) {
        ZL_T *ci = c + i * ldc;
        const ZL_T *ai = acc + i * ZL_NR;
        if (beta == 0) {
            for (int j = 0; j < nr; j++) ci[j] = alpha * ai[j];
        } else {
            for (int j = 0; j < nr; j++) ci[j] = alpha * ai[j] + beta * ci[j];
        }
    }
}

static void ZL_X(kernel_portable)(zl_blas_int kc, const ZL_T *restrict a, const ZL_T *restrict b,
                                  ZL_T *restrict c, zl_blas_int ldc, ZL_T alpha, ZL_T beta, int mr, int nr) {
    ZL_T acc[ZL_MR * ZL_NR] = {0};
    for (zl_blas_int p = 0; p < kc; p++) {
        for (int i = 0; i < ZL_MR; i++) {
            const ZL_T ai = a[i];
            for (int j = 0; j < ZL_NR; j++) acc[i * ZL_NR + j] += ai * b[j];
        }
        a += ZL_MR;
        b += ZL_NR;
    }
    ZL_X(store_tile)(acc, c, ldc, alpha, beta, mr, nr);
}

#if ZL_X86
/* ZL_MR (= 6) rows x 2 vectors of accumulators: 12 of the 16 ymm registers,
 * leaving two for the B row and one for the broadcast A element. Named
 * variables, not an array: GCC would keep an array in memory. */
ZL_TARGET_AVX2 static void ZL_X(kernel_avx2)(zl_blas_int kc, const ZL_T *restrict a, const ZL_T *restrict b,
                                             ZL_T *restrict c, zl_blas_int ldc, ZL_T alpha, ZL_T beta,
                                             int mr, int nr) {
    ZL_V c00 = ZL_VZERO(), c01 = ZL_VZERO(), c10 = ZL_VZERO(), c11 = ZL_VZERO();
    ZL_V c20 = ZL_VZERO(), c21 = ZL_VZERO(), c30 = ZL_VZERO(), c31 = ZL_VZERO();
    ZL_V c40 = ZL_VZERO(), c41 = ZL_VZERO(), c50 = ZL_VZERO(), c51 = ZL_VZERO();
#define ZL_ROW_FMA(i)                           \
    do {                                        \
        const ZL_V ai = ZL_VBCAST(a + i);       \
        c##i##0 = ZL_VFMADD(ai, b0, c##i##0);   \
        c##i##1 = ZL_VFMADD(ai, b1, c##i##1);   \
    } while (0)
    for (zl_blas_int p = 0; p < kc; p++) {
        const ZL_V b0 = ZL_VLOAD(b), b1 = ZL_VLOAD(b + ZL_W);
        ZL_ROW_FMA(0);
        ZL_ROW_FMA(1);
        ZL_ROW_FMA(2);
        ZL_ROW_FMA(3);
        ZL_ROW_FMA(4);
        ZL_ROW_FMA(5);
        a += ZL_MR;
        b += ZL_NR;
    }
#undef ZL_ROW_FMA
    const ZL_V acc[ZL_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    const ZL_V va = ZL_VSET1(alpha);
    if (mr == ZL_MR && nr == ZL_NR) {
        if (beta == 0) {
            for (int i = 0; i < ZL_MR; i++) {
                ZL_VSTOREU(c + i * ldc, ZL_VMUL(va, acc[i][0]));
                ZL_VSTOREU(c + i * ldc + ZL_W, ZL_VMUL(va, acc[i][1]));
            }
        } else {
            const ZL_V vb = ZL_VSET1(beta);
            for (int i = 0; i < ZL_MR; i++) {
                ZL_T *ci = c + i * ldc;
                ZL_VSTOREU(ci, ZL_VFMADD(va, acc[i][0], ZL_VMUL(vb, ZL_VLOADU(ci))));
                ZL_VSTOREU(ci + ZL_W, ZL_VFMADD(va, acc[i][1], ZL_VMUL(vb, ZL_VLOADU(ci + ZL_W))));
            }
        }
        return;
    }
    ZL_T tile[ZL_MR * ZL_NR] __attribute__((aligned(32)));
    for (int i = 0; i < ZL_MR; i++) {
        ZL_VSTOREU(tile + i * ZL_NR, acc[i][0]);
        ZL_VSTOREU(tile + i * ZL_NR + ZL_W, acc[i][1]);
    }
    ZL_X(store_tile)(tile, c, ldc, alpha, beta, mr, nr);
}
#endif
