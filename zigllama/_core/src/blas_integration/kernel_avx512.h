/* The AVX-512 micro-kernel of the generic GEMM, written once for both element
 * types (included by generic.c with ZL_T, ZL_X(name), ZL_MR = 14, ZL_NR = two
 * vectors, ZL_V / ZL_W (zmm type and lanes), ZL_MASK (mask type) and the ZL_V*
 * intrinsic names defined).
 *
 * Same contract as the kernels of kernel_impl.h. 14 rows x 2 vectors of
 * accumulators take 28 of the 32 zmm registers; the A element is broadcast from
 * memory into the FMA itself, so two registers hold the B row and two are spare.
 * Edge tiles store under a lane mask: no spill to a tile buffer.
 */

ZL_TARGET_AVX512 static void ZL_X(kernel_avx512)(zl_blas_int kc, const ZL_T *restrict a, const ZL_T *restrict b,
                                                 zl_blas_int ldb, ZL_T *restrict c, zl_blas_int ldc, ZL_T alpha,
                                                 ZL_T beta, int mr, int nr) {
    ZL_V c00 = ZL_VZERO(), c01 = ZL_VZERO(), c10 = ZL_VZERO(), c11 = ZL_VZERO();
    ZL_V c20 = ZL_VZERO(), c21 = ZL_VZERO(), c30 = ZL_VZERO(), c31 = ZL_VZERO();
    ZL_V c40 = ZL_VZERO(), c41 = ZL_VZERO(), c50 = ZL_VZERO(), c51 = ZL_VZERO();
    ZL_V c60 = ZL_VZERO(), c61 = ZL_VZERO(), c70 = ZL_VZERO(), c71 = ZL_VZERO();
    ZL_V c80 = ZL_VZERO(), c81 = ZL_VZERO(), c90 = ZL_VZERO(), c91 = ZL_VZERO();
    ZL_V cA0 = ZL_VZERO(), cA1 = ZL_VZERO(), cB0 = ZL_VZERO(), cB1 = ZL_VZERO();
    ZL_V cC0 = ZL_VZERO(), cC1 = ZL_VZERO(), cD0 = ZL_VZERO(), cD1 = ZL_VZERO();
    /* The rows of C this tile writes, into L1 while the sum runs. */
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + ZL_NR - 1), _MM_HINT_T0);
    }
#define ZL_ROW_FMA(r, i)                        \
    do {                                        \
        const ZL_V ai = ZL_VSET1(a[i]);         \
        c##r##0 = ZL_VFMADD(ai, b0, c##r##0);   \
        c##r##1 = ZL_VFMADD(ai, b1, c##r##1);   \
    } while (0)
    for (zl_blas_int p = 0; p < kc; p++) {
        const ZL_V b0 = ZL_VLOADU(b), b1 = ZL_VLOADU(b + ZL_W);
        _mm_prefetch((const char *)(a + 8 * ZL_MR), _MM_HINT_T0);
        ZL_ROW_FMA(0, 0);
        ZL_ROW_FMA(1, 1);
        ZL_ROW_FMA(2, 2);
        ZL_ROW_FMA(3, 3);
        ZL_ROW_FMA(4, 4);
        ZL_ROW_FMA(5, 5);
        ZL_ROW_FMA(6, 6);
        ZL_ROW_FMA(7, 7);
        ZL_ROW_FMA(8, 8);
        ZL_ROW_FMA(9, 9);
        ZL_ROW_FMA(A, 10);
        ZL_ROW_FMA(B, 11);
        ZL_ROW_FMA(C, 12);
        ZL_ROW_FMA(D, 13);
        a += ZL_MR;
        b += ldb;
    }
#undef ZL_ROW_FMA
    const ZL_V acc[ZL_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51},
                                {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {cA0, cA1}, {cB0, cB1},
                                {cC0, cC1}, {cD0, cD1}};
    const ZL_V va = ZL_VSET1(alpha);
    /* Lanes of each of the two vectors that lie inside C. */
    const int n0 = nr < ZL_W ? nr : ZL_W, n1 = nr > ZL_W ? nr - ZL_W : 0;
    const ZL_MASK m0 = (ZL_MASK)((1u << n0) - 1u), m1 = (ZL_MASK)((1u << n1) - 1u);
    if (beta == 0) {
        for (int i = 0; i < mr; i++) {
            ZL_VMASK_STOREU(c + i * ldc, m0, ZL_VMUL(va, acc[i][0]));
            ZL_VMASK_STOREU(c + i * ldc + ZL_W, m1, ZL_VMUL(va, acc[i][1]));
        }
    } else {
        const ZL_V vb = ZL_VSET1(beta);
        for (int i = 0; i < mr; i++) {
            ZL_T *ci = c + i * ldc;
            ZL_VMASK_STOREU(ci, m0, ZL_VFMADD(va, acc[i][0], ZL_VMUL(vb, ZL_VMASKZ_LOADU(m0, ci))));
            ZL_VMASK_STOREU(ci + ZL_W, m1, ZL_VFMADD(va, acc[i][1], ZL_VMUL(vb, ZL_VMASKZ_LOADU(m1, ci + ZL_W))));
        }
    }
}
