/* zigllama's own BLAS, written once for both element types (included by
 * generic.c with ZL_T, ZL_X(name), ZL_MR, ZL_NR and ZL_BLOCKING(ctx) defined).
 *
 * GEMM follows the BLIS/GotoBLAS structure: B is packed once into kc x nc
 * panels shared by the threads; each thread takes blocks of rows of C in turn
 * and, for each kc step, packs the mc x kc block of A into its own buffer and
 * runs the register-tiled micro-kernel over the block's MR x NR tiles of C. Matrices arrive as general strides, so
 * both layouts and all transpose pairs reduce to one loop nest.
 *
 * ZL_PICK_KERNEL() names the micro-kernel a call runs. With ZL_GEMM_ONLY defined
 * only gemm_strided and its helpers are instantiated (the AVX-512 tiles' loops).
 */

/* Pack op(B)[p0:p0+kc, j0:j0+nc] into micro-panels of ZL_NR columns, each stored
 * row by row; columns past n are zero. */
static void ZL_X(pack_b_panel)(zl_blas_int kc, zl_blas_int nr, const ZL_T *b, zl_blas_int rs, zl_blas_int cs,
                               ZL_T *restrict dst) {
    if (cs == 1) {
        for (zl_blas_int p = 0; p < kc; p++) {
            const ZL_T *src = b + p * rs;
            int j = 0;
            for (; j < nr; j++) dst[p * ZL_NR + j] = src[j];
            for (; j < ZL_NR; j++) dst[p * ZL_NR + j] = 0;
        }
    } else {
        int j = 0;
        for (; j < nr; j++) {
            const ZL_T *src = b + j * cs;
            for (zl_blas_int p = 0; p < kc; p++) dst[p * ZL_NR + j] = src[p * rs];
        }
        for (; j < ZL_NR; j++)
            for (zl_blas_int p = 0; p < kc; p++) dst[p * ZL_NR + j] = 0;
    }
}

/* Pack op(A)[i0:i0+mr, p0:p0+kc] into one micro-panel stored column by column;
 * rows past m are zero. */
/* Ask for the first cache line of each of `rows` rows `ld` apart, into L2
 * (strided rows map to few L1 sets). */
static void ZL_X(prefetch_rows)(zl_blas_int rows, const ZL_T *p, zl_blas_int ld) {
#if ZL_X86
    for (zl_blas_int r = 0; r < rows; r++) _mm_prefetch((const char *)(p + r * ld), _MM_HINT_T1);
#else
    (void)rows, (void)p, (void)ld;
#endif
}

static void ZL_X(pack_a_panel)(zl_blas_int kc, zl_blas_int mr, const ZL_T *a, zl_blas_int rs, zl_blas_int cs,
                               ZL_T *restrict dst) {
    if (rs == 1) {
        for (zl_blas_int p = 0; p < kc; p++) {
            const ZL_T *src = a + p * cs;
            int i = 0;
            for (; i < mr; i++) dst[p * ZL_MR + i] = src[i];
            for (; i < ZL_MR; i++) dst[p * ZL_MR + i] = 0;
        }
    } else {
        int i = 0;
        for (; i < mr; i++) {
            const ZL_T *src = a + i * rs;
            for (zl_blas_int p = 0; p < kc; p++) dst[p * ZL_MR + i] = src[p * cs];
        }
        for (; i < ZL_MR; i++)
            for (zl_blas_int p = 0; p < kc; p++) dst[p * ZL_MR + i] = 0;
    }
}

/* C = beta * C over an m x n row-major block; beta == 0 writes zeros (NaN in C
 * gives no NaN). */
static void ZL_X(scale_c)(zl_blas_int m, zl_blas_int n, ZL_T beta, ZL_T *c, zl_blas_int ldc) {
    if (beta == 1) return;
    for (zl_blas_int i = 0; i < m; i++) {
        ZL_T *ci = c + i * ldc;
        if (beta == 0) {
            for (zl_blas_int j = 0; j < n; j++) ci[j] = 0;
        } else {
            for (zl_blas_int j = 0; j < n; j++) ci[j] *= beta;
        }
    }
}

/* y[0:m] = alpha * X x + beta * y, X(i, j) = a[i*rs + j*cs]: the matrix-vector
 * product behind gemv and behind gemm calls with one row or one column. */
static void ZL_X(gemv_strided)(zl_blas_int m, zl_blas_int n, ZL_T alpha, const ZL_T *a, zl_blas_int rs,
                               zl_blas_int cs, const ZL_T *x, zl_blas_int incx, ZL_T beta, ZL_T *y,
                               zl_blas_int incy, int threads) {
    const int nt = zl_blas_threads_for(threads, (double)m * (double)n, ZL_GEMV_SERIAL_WORK);
    if (cs == 1 || rs != 1) {
        /* Rows of X are contiguous (or nothing is): one dot product per row. */
        zl_blas_int i;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (i = 0; i < m; i++) {
            const ZL_T *row = a + i * rs;
            ZL_T acc[8] = {0};
            zl_blas_int j = 0;
            if (cs == 1 && incx == 1) {
                for (; j + 8 <= n; j += 8)
                    for (int u = 0; u < 8; u++) acc[u] += row[j + u] * x[j + u];
            }
            ZL_T sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for (; j < n; j++) sum += row[j * cs] * x[j * incx];
            ZL_T *yi = y + i * incy;
            *yi = beta == 0 ? alpha * sum : alpha * sum + beta * *yi;
        }
        return;
    }
    /* Columns of X are contiguous: y += (alpha x_j) X[:, j], each thread owning
     * a range of rows of y so that no two write the same element. */
    const zl_blas_int chunk = (m + nt - 1) / nt;
    int t;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (t = 0; t < nt; t++) {
        const zl_blas_int i0 = (zl_blas_int)t * chunk;
        const zl_blas_int i1 = i0 + chunk < m ? i0 + chunk : m;
        for (zl_blas_int i = i0; i < i1; i++) {
            ZL_T *yi = y + i * incy;
            *yi = beta == 0 ? 0 : beta * *yi;
        }
        /* Four columns per pass: y is read and written a quarter as often. */
        zl_blas_int j = 0;
        for (; j + 4 <= n; j += 4) {
            const ZL_T x0 = alpha * x[j * incx], x1 = alpha * x[(j + 1) * incx];
            const ZL_T x2 = alpha * x[(j + 2) * incx], x3 = alpha * x[(j + 3) * incx];
            const ZL_T *c0 = a + j * cs, *c1 = c0 + cs, *c2 = c1 + cs, *c3 = c2 + cs;
            for (zl_blas_int i = i0; i < i1; i++)
                y[i * incy] += (x0 * c0[i] + x1 * c1[i]) + (x2 * c2[i] + x3 * c3[i]);
        }
        for (; j < n; j++) {
            const ZL_T xj = alpha * x[j * incx];
            const ZL_T *col = a + j * cs;
            for (zl_blas_int i = i0; i < i1; i++) y[i * incy] += xj * col[i];
        }
    }
}

/* C (m x n, row-major, ldc) = alpha * A B + beta * C, where A(i, p) = a[i*rsa + p*csa]
 * and B(p, j) = b[p*rsb + j*csb]. */
static int ZL_X(gemm_strided)(const zl_generic_ctx *ctx, zl_blas_int m, zl_blas_int n, zl_blas_int k,
                              ZL_T alpha, const ZL_T *a, zl_blas_int rsa, zl_blas_int csa,
                              const ZL_T *b, zl_blas_int rsb, zl_blas_int csb,
                              ZL_T beta, ZL_T *c, zl_blas_int ldc) {
    if (m == 0 || n == 0) return ZL_BLAS_OK;
    if (k == 0 || alpha == 0) {
        ZL_X(scale_c)(m, n, beta, c, ldc);
        return ZL_BLAS_OK;
    }
    /* A single row or column of C is a matrix-vector product: packing would
     * copy all of B (or A) to use it once. */
    if (m == 1) {
        ZL_X(gemv_strided)(n, k, alpha, b, csb, rsb, a, csa, beta, c, 1, ctx->num_threads);
        return ZL_BLAS_OK;
    }
    if (n == 1) {
        ZL_X(gemv_strided)(m, k, alpha, a, rsa, csa, b, rsb, beta, c, ldc, ctx->num_threads);
        return ZL_BLAS_OK;
    }
    const zl_gemm_blocking blk = ZL_BLOCKING(ctx);
    const int nt = zl_blas_threads_for(ctx->num_threads, (double)m * (double)n * (double)k, ZL_GEMM_SERIAL_WORK);
    /* Blocks of rows of C are the unit of parallel work (each thread packs its
     * own block of A; the panel of B is shared), handed out dynamically: at
     * least ZL_BLOCKS_PER_THREAD per thread (while blocks stay >= 8 tiles high),
     * of even height, so a thread the OS preempts delays the others by one
     * small block, not by half the product. */
    zl_blas_int n_ic = (m + blk.mc - 1) / blk.mc;
    if (nt > 1) {
        const zl_blas_int most = (m + 8 * ZL_MR - 1) / (8 * ZL_MR);
        zl_blas_int want = (zl_blas_int)nt * ZL_BLOCKS_PER_THREAD;
        if (want > most) want = most;
        n_ic = zl_round_up(n_ic > want ? n_ic : want, nt);
    }
    const zl_blas_int mc_blk = zl_round_up((m + n_ic - 1) / n_ic, ZL_MR);
    n_ic = (m + mc_blk - 1) / mc_blk;
    const zl_blas_int kc_max = k < blk.kc ? k : blk.kc;
    /* B is packed for all of k at once (every kc x nc panel of it), so a thread
     * keeps its block of rows of C through the whole sum: one barrier per
     * panel of columns, not two per kc step. The columns per panel shrink so
     * that the packed k x nc stays within a quarter of L3. */
    zl_blas_int nc_blk = (zl_blas_int)((size_t)ctx->l3 / 4 / sizeof(ZL_T) / (size_t)k) / ZL_NR * ZL_NR;
    nc_blk = nc_blk < ZL_NR ? ZL_NR : nc_blk > blk.nc ? blk.nc : nc_blk;
    const zl_blas_int nc_max = zl_round_up(n < nc_blk ? n : nc_blk, ZL_NR);
    /* A short A (one block of rows) meets each row of B's panel once: rows of B
     * that are contiguous are then read in place, not packed (only a last,
     * narrower micro-panel is packed, so nothing past column n is read). */
    const int direct_b = csb == 1 && m <= blk.mc;
    /* When a micro-panel's kc rows, ldb apart, spread wider than L1, they fall
     * in a few cache sets and are fetched again for every row of tiles: with
     * enough rows of tiles to meet it, copying the micro-panel to a contiguous
     * buffer (while the next one is prefetched) pays for itself. With few rows
     * of tiles in a thread's block, reading in place is cheaper (measured on a
     * 2048-wide B: m = 8 was 1.2x to 1.5x slower packed). */
    const int pack_b_panels = direct_b && (mc_blk + ZL_MR - 1) / ZL_MR >= ZL_PACK_B_MIN_TILE_ROWS &&
                              (double)kc_max * (double)rsb * sizeof(ZL_T) > (double)ctx->l1d;
    const zl_blas_int n_pc = (k + blk.kc - 1) / blk.kc;
    const size_t apack_elems = (size_t)mc_blk * kc_max;
    const size_t bpack_elems = direct_b ? (size_t)ZL_NR * kc_max : (size_t)nc_max * k;
    ZL_T *apack = zl_blas_alloc((size_t)nt * apack_elems * sizeof(ZL_T));
    ZL_T *bpack = zl_blas_alloc((size_t)(direct_b ? nt : 1) * bpack_elems * sizeof(ZL_T));
    if (apack == NULL || bpack == NULL) {
        free(apack);
        free(bpack);
        return ZL_BLAS_ENOMEM;
    }
    void (*kernel)(zl_blas_int, const ZL_T *, const ZL_T *, zl_blas_int, ZL_T *, zl_blas_int, ZL_T, ZL_T, int,
                   int) = ZL_PICK_KERNEL();

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        ZL_T *my_apack = apack + (size_t)ZL_THREAD_NUM() * apack_elems;
        ZL_T *my_bedge = bpack + (direct_b ? (size_t)ZL_THREAD_NUM() * bpack_elems : 0);
        for (zl_blas_int jc = 0; jc < n; jc += nc_blk) {
            const zl_blas_int nc = n - jc < nc_blk ? n - jc : nc_blk;
            const zl_blas_int n_jr = (nc + ZL_NR - 1) / ZL_NR;
            zl_blas_int t, icb;
            if (!direct_b) {
                /* The panel for rows pc.. of B starts at pc * nc_max: kc x nc_max each. */
#pragma omp for schedule(static)
                for (t = 0; t < n_pc * n_jr; t++) {
                    const zl_blas_int pc = (t / n_jr) * blk.kc, j = jc + (t % n_jr) * ZL_NR;
                    const zl_blas_int kc = k - pc < blk.kc ? k - pc : blk.kc;
                    ZL_X(pack_b_panel)(kc, n - j < ZL_NR ? n - j : ZL_NR, b + pc * rsb + j * csb, rsb, csb,
                                       bpack + pc * nc_max + (t % n_jr) * ZL_NR * kc);
                }
            }
#pragma omp for schedule(dynamic, 1)
            for (icb = 0; icb < n_ic; icb++) {
                const zl_blas_int ic = icb * mc_blk;
                const zl_blas_int mc = m - ic < mc_blk ? m - ic : mc_blk;
                const zl_blas_int n_ir = (mc + ZL_MR - 1) / ZL_MR;
                for (zl_blas_int pc = 0; pc < k; pc += blk.kc) {
                    const zl_blas_int kc = k - pc < blk.kc ? k - pc : blk.kc;
                    /* Only the first block of k applies the caller's beta. */
                    const ZL_T beta_eff = pc == 0 ? beta : (ZL_T)1;
                    for (zl_blas_int ir = 0; ir < n_ir; ir++) {
                        const zl_blas_int i = ic + ir * ZL_MR;
                        ZL_X(pack_a_panel)(kc, m - i < ZL_MR ? m - i : ZL_MR, a + i * rsa + pc * csa, rsa, csa,
                                           my_apack + ir * ZL_MR * kc);
                    }
                    /* Each B micro-panel stays in L1 while it meets every row of tiles. */
                    for (zl_blas_int jr = 0; jr < n_jr; jr++) {
                        const zl_blas_int j = jc + jr * ZL_NR;
                        const int nr = (int)(n - j < ZL_NR ? n - j : ZL_NR);
                        const ZL_T *bp = bpack + pc * nc_max + jr * ZL_NR * kc;
                        zl_blas_int ldbp = ZL_NR;
                        if (direct_b && nr == ZL_NR && !pack_b_panels) {
                            bp = b + pc * rsb + j;
                            ldbp = rsb;
                        } else if (direct_b) {
                            if (pack_b_panels && jr + 1 < n_jr)
                                ZL_X(prefetch_rows)(kc, b + pc * rsb + j + ZL_NR, rsb);
                            ZL_X(pack_b_panel)(kc, nr, b + pc * rsb + j, rsb, 1, my_bedge);
                            bp = my_bedge;
                        }
                        for (zl_blas_int ir = 0; ir < n_ir; ir++) {
                            const zl_blas_int i = ic + ir * ZL_MR;
                            kernel(kc, my_apack + ir * ZL_MR * kc, bp, ldbp, c + i * ldc + j, ldc, alpha, beta_eff,
                                   (int)(m - i < ZL_MR ? m - i : ZL_MR), nr);
                        }
                    }
                }
            }
        }
    }
    free(apack);
    free(bpack);
    return ZL_BLAS_OK;
}

#ifndef ZL_GEMM_ONLY
/* The vtable's gemm: every layout and transpose pair as strides for gemm_strided
 * (or for ZL_GEMM_WIDE, the same loops over AVX-512 tiles, where the CPU has it). */
static int ZL_X(gemm)(void *ctx_, zl_blas_layout layout, zl_blas_trans ta, zl_blas_trans tb, zl_blas_int m,
                      zl_blas_int n, zl_blas_int k, ZL_T alpha, const ZL_T *a, zl_blas_int lda,
                      const ZL_T *b, zl_blas_int ldb, ZL_T beta, ZL_T *c, zl_blas_int ldc) {
    const zl_generic_ctx *ctx = ctx_;
    if (zl_blas_check_gemm(layout, ta, tb, m, n, k, lda, ldb, ldc)) return ZL_BLAS_EINVAL;
    /* Row-major: op(A)(i, p) is a[i*lda + p] (N) or a[p*lda + i] (T).
     * Column-major C is the row-major C^T = op(B)^T op(A)^T, whose factors have
     * the very same strides: swap the operands, never copy. */
    const zl_blas_int rsa = ta == ZL_NO_TRANS ? lda : 1, csa = ta == ZL_NO_TRANS ? 1 : lda;
    const zl_blas_int rsb = tb == ZL_NO_TRANS ? ldb : 1, csb = tb == ZL_NO_TRANS ? 1 : ldb;
    int (*strided)(const zl_generic_ctx *, zl_blas_int, zl_blas_int, zl_blas_int, ZL_T, const ZL_T *, zl_blas_int,
                   zl_blas_int, const ZL_T *, zl_blas_int, zl_blas_int, ZL_T, ZL_T *, zl_blas_int) =
        ZL_X(gemm_strided);
#ifdef ZL_GEMM_WIDE
    if (zl_cpu_has_avx512()) strided = ZL_GEMM_WIDE;
#endif
    if (layout == ZL_ROW_MAJOR)
        return strided(ctx, m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, ldc);
    return strided(ctx, n, m, k, alpha, b, rsb, csb, a, rsa, csa, beta, c, ldc);
}

static int ZL_X(gemv)(void *ctx_, zl_blas_layout layout, zl_blas_trans trans, zl_blas_int m, zl_blas_int n,
                      ZL_T alpha, const ZL_T *a, zl_blas_int lda, const ZL_T *x, zl_blas_int incx,
                      ZL_T beta, ZL_T *y, zl_blas_int incy) {
    const zl_generic_ctx *ctx = ctx_;
    if (zl_blas_check_gemv(layout, trans, m, n, lda, incx, incy)) return ZL_BLAS_EINVAL;
    zl_blas_int rs = layout == ZL_ROW_MAJOR ? lda : 1, cs = layout == ZL_ROW_MAJOR ? 1 : lda;
    if (trans == ZL_TRANS) {
        zl_blas_int t = rs; rs = cs; cs = t;
        t = m; m = n; n = t;
    }
    if (m == 0) return ZL_BLAS_OK;
    if (n == 0 || alpha == 0) {
        ZL_X(scale_c)(m, 1, beta, y, incy);
        return ZL_BLAS_OK;
    }
    ZL_X(gemv_strided)(m, n, alpha, a, rs, cs, x, incx, beta, y, incy, ctx->num_threads);
    return ZL_BLAS_OK;
}

static int ZL_X(dot)(void *ctx, zl_blas_int n, const ZL_T *x, zl_blas_int incx, const ZL_T *y,
                     zl_blas_int incy, ZL_T *result) {
    (void)ctx;
    if (zl_blas_check_vector(n, incx) || zl_blas_check_vector(n, incy)) return ZL_BLAS_EINVAL;
    ZL_T acc[8] = {0};
    zl_blas_int i = 0;
    if (incx == 1 && incy == 1)
        for (; i + 8 <= n; i += 8)
            for (int u = 0; u < 8; u++) acc[u] += x[i + u] * y[i + u];
    ZL_T sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) sum += x[i * incx] * y[i * incy];
    *result = sum;
    return ZL_BLAS_OK;
}

static int ZL_X(axpy)(void *ctx, zl_blas_int n, ZL_T alpha, const ZL_T *x, zl_blas_int incx, ZL_T *y,
                      zl_blas_int incy) {
    (void)ctx;
    if (zl_blas_check_vector(n, incx) || zl_blas_check_vector(n, incy)) return ZL_BLAS_EINVAL;
    if (alpha == 0) return ZL_BLAS_OK;
    if (incx == 1 && incy == 1) {
        for (zl_blas_int i = 0; i < n; i++) y[i] += alpha * x[i];
    } else {
        for (zl_blas_int i = 0; i < n; i++) y[i * incy] += alpha * x[i * incx];
    }
    return ZL_BLAS_OK;
}

static int ZL_X(scal)(void *ctx, zl_blas_int n, ZL_T alpha, ZL_T *x, zl_blas_int incx) {
    (void)ctx;
    if (zl_blas_check_vector(n, incx)) return ZL_BLAS_EINVAL;
    for (zl_blas_int i = 0; i < n; i++) x[i * incx] *= alpha;
    return ZL_BLAS_OK;
}

/* Scaled sum of squares (as LAPACK's classic nrm2): no overflow or underflow for
 * any finite input; an infinity gives inf, a NaN gives NaN. */
static int ZL_X(nrm2)(void *ctx, zl_blas_int n, const ZL_T *x, zl_blas_int incx, ZL_T *result) {
    (void)ctx;
    if (zl_blas_check_vector(n, incx)) return ZL_BLAS_EINVAL;
    ZL_T scale = 0, ssq = 1;
    int saw_nan = 0, saw_inf = 0;
    for (zl_blas_int i = 0; i < n; i++) {
        const ZL_T v = x[i * incx];
        if (v != v) { saw_nan = 1; continue; }
        ZL_T av = v < 0 ? -v : v;
        if (av == 0) continue;
        if (av > ZL_TMAX) { saw_inf = 1; continue; }
        if (scale < av) {
            ssq = 1 + ssq * (scale / av) * (scale / av);
            scale = av;
        } else {
            ssq += (av / scale) * (av / scale);
        }
    }
    *result = saw_nan ? (ZL_T)NAN : saw_inf ? (ZL_T)INFINITY : scale * ZL_SQRT(ssq);
    return ZL_BLAS_OK;
}
#endif /* ZL_GEMM_ONLY */
