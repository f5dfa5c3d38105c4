/* The "generic" backend: zigllama's own BLAS (cache-blocked, packed, register-
 * tiled GEMM with an AVX2/FMA micro-kernel chosen at run time, OpenMP over the
 * tiles) and the Level 1/2 routines it needs. The loops are written once in
 * generic_impl.h and kernel_impl.h and instantiated here for float and double. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zigllama/zl_cpu.h"
#include "zigllama/zl_omp.h"
#include "zl_blas_backends.h"

#if ZL_X86
#include <immintrin.h>
#endif

/* Below these amounts of work (multiply-adds) a call runs on one thread: waking
 * the OpenMP team costs more than it saves. */
#define ZL_GEMM_SERIAL_WORK (96.0 * 96.0 * 96.0)
#define ZL_GEMV_SERIAL_WORK (256.0 * 256.0)
/* Blocks of rows of C per thread a parallel GEMM aims for (load balance). */
#define ZL_BLOCKS_PER_THREAD 4

#if defined(_OPENMP)
#define ZL_THREAD_NUM() omp_get_thread_num()
#else
#define ZL_THREAD_NUM() 0
#endif

/* The context's count, never above ZL_MAX_THREADS nor the calling thread's
 * OpenMP limit (OMP_NUM_THREADS, or what threadpoolctl set with
 * omp_set_num_threads): zigllama never raises a limit the user chose. */
static inline int zl_blas_threads_for(int threads, double work, double serial_work) {
    if (threads <= 1 || work < serial_work) return 1;
    if (threads > ZL_MAX_THREADS) threads = ZL_MAX_THREADS;
    int omp_limit = zl_omp_max_threads();
    return threads < omp_limit ? threads : (omp_limit > 1 ? omp_limit : 1);
}

static inline zl_blas_int zl_round_up(zl_blas_int v, zl_blas_int to) { return (v + to - 1) / to * to; }

/* Packed panels are 64-byte aligned: the micro-kernels use aligned loads. */
static void *zl_blas_alloc(size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 64) != 0) return NULL;
    return p;
}

#if ZL_X86
/* ---- AVX-512 tiles: 14 x 32 floats and 14 x 16 doubles (two zmm per row) ----
 * The same loops as below over wider tiles with their own blocking; only the
 * GEMM is instantiated (ZL_GEMM_ONLY) and the vtable's gemm calls it when the
 * CPU has AVX-512. */
#define ZL_GEMM_ONLY 1
#define ZL_PICK_KERNEL() ZL_X(kernel_avx512)
#define ZL_T float
#define ZL_X(name) s512_##name
#define ZL_PACK_B_MIN_TILE_ROWS 2
#define ZL_MR ZL_SGEMM512_MR
#define ZL_NR ZL_SGEMM512_NR
#define ZL_BLOCKING(ctx) ((ctx)->s512)
#define ZL_V __m512
#define ZL_W 16
#define ZL_MASK __mmask16
#define ZL_VZERO _mm512_setzero_ps
#define ZL_VLOADU _mm512_loadu_ps
#define ZL_VSET1 _mm512_set1_ps
#define ZL_VMUL _mm512_mul_ps
#define ZL_VFMADD _mm512_fmadd_ps
#define ZL_VMASK_STOREU _mm512_mask_storeu_ps
#define ZL_VMASKZ_LOADU _mm512_maskz_loadu_ps
#include "kernel_avx512.h"
#include "generic_impl.h"
#include "kernel_undef.h"

#define ZL_T double
#define ZL_X(name) d512_##name
#define ZL_PACK_B_MIN_TILE_ROWS 2
#define ZL_MR ZL_DGEMM512_MR
#define ZL_NR ZL_DGEMM512_NR
#define ZL_BLOCKING(ctx) ((ctx)->d512)
#define ZL_V __m512d
#define ZL_W 8
#define ZL_MASK __mmask8
#define ZL_VZERO _mm512_setzero_pd
#define ZL_VLOADU _mm512_loadu_pd
#define ZL_VSET1 _mm512_set1_pd
#define ZL_VMUL _mm512_mul_pd
#define ZL_VFMADD _mm512_fmadd_pd
#define ZL_VMASK_STOREU _mm512_mask_storeu_pd
#define ZL_VMASKZ_LOADU _mm512_maskz_loadu_pd
#include "kernel_avx512.h"
#include "generic_impl.h"
#include "kernel_undef.h"
#undef ZL_GEMM_ONLY
#undef ZL_PICK_KERNEL
#endif

#if ZL_X86
#define ZL_PICK_KERNEL() (zl_cpu_has_avx2() ? ZL_X(kernel_avx2) : ZL_X(kernel_portable))
#else
#define ZL_PICK_KERNEL() ZL_X(kernel_portable)
#endif

/* ---- float32: 6 x 16 tiles (two 8-float vectors per row) ---- */
/* A short A whose block has at least ZL_PACK_B_MIN_TILE_ROWS rows of tiles
 * gets each micro-panel of B packed as it is reached; with fewer, B is read in
 * place. A float64 tile does half the arithmetic per cache line of B, so
 * waiting for B costs it sooner: measured against reading in place, float64
 * gains from 6 rows of tiles on (1.2x to 1.5x), float32 from 10 (1.1x to 1.5x;
 * at 8, two threads on m = 96 lost 20%). */
#define ZL_T float
#define ZL_X(name) s##name
#define ZL_PACK_B_MIN_TILE_ROWS 10
#define ZL_MR ZL_SGEMM_MR
#define ZL_NR ZL_SGEMM_NR
#define ZL_TMAX FLT_MAX
#define ZL_SQRT sqrtf
#define ZL_BLOCKING(ctx) ((ctx)->s)
#if ZL_X86
#define ZL_GEMM_WIDE s512_gemm_strided
#endif
#define ZL_V __m256
#define ZL_W 8
#define ZL_VZERO _mm256_setzero_ps
#define ZL_VLOAD _mm256_load_ps
#define ZL_VLOADU _mm256_loadu_ps
#define ZL_VSTOREU _mm256_storeu_ps
#define ZL_VBCAST _mm256_broadcast_ss
#define ZL_VSET1 _mm256_set1_ps
#define ZL_VMUL _mm256_mul_ps
#define ZL_VFMADD _mm256_fmadd_ps
#include "kernel_impl.h"
#include "generic_impl.h"
#include "kernel_undef.h"

/* ---- float64: 6 x 8 tiles (two 4-double vectors per row) ---- */
#define ZL_T double
#define ZL_X(name) d##name
#define ZL_PACK_B_MIN_TILE_ROWS 6
#define ZL_MR ZL_DGEMM_MR
#define ZL_NR ZL_DGEMM_NR
#define ZL_TMAX DBL_MAX
#define ZL_SQRT sqrt
#define ZL_BLOCKING(ctx) ((ctx)->d)
#if ZL_X86
#define ZL_GEMM_WIDE d512_gemm_strided
#endif
#define ZL_V __m256d
#define ZL_W 4
#define ZL_VZERO _mm256_setzero_pd
#define ZL_VLOAD _mm256_load_pd
#define ZL_VLOADU _mm256_loadu_pd
#define ZL_VSTOREU _mm256_storeu_pd
#define ZL_VBCAST _mm256_broadcast_sd
#define ZL_VSET1 _mm256_set1_pd
#define ZL_VMUL _mm256_mul_pd
#define ZL_VFMADD _mm256_fmadd_pd
#include "kernel_impl.h"
#include "generic_impl.h"
#include "kernel_undef.h"

/* Exported (the module is built with hidden visibility): threadpoolctl finds this
 * extension module by this symbol (see zigllama/_threadpoolctl.py). */
__attribute__((visibility("default"))) const zl_blas_vtable zl_blas_generic_vtable = {
    sdot, ddot, saxpy, daxpy, sscal, dscal, snrm2, dnrm2, sgemv, dgemv, sgemm, dgemm,
    zl_blas_generic_qgemm,
};

int zl_generic_uses_avx2(void) { return ZL_X86 && zl_cpu_has_avx2(); }
int zl_generic_uses_avx512(void) { return ZL_X86 && zl_cpu_has_avx512(); }

/* ---- cache sizes and blocking ---- */

/* Size in bytes of the data (or unified) cache of `level` for cpu0, from
 * /sys/devices/system/cpu/cpu0/cache/index*, or 0. */
static long zl_sysfs_cache_size(int level) {
    for (int idx = 0; idx < 8; idx++) {
        char path[96], buf[32];
        int lvl = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", idx);
        FILE *f = fopen(path, "r");
        if (f == NULL) break;
        int ok = fscanf(f, "%d", &lvl) == 1;
        fclose(f);
        if (!ok || lvl != level) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", idx);
        if ((f = fopen(path, "r")) == NULL) continue;
        ok = fgets(buf, sizeof buf, f) != NULL;
        fclose(f);
        if (!ok || strncmp(buf, "Instruction", 11) == 0) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
        if ((f = fopen(path, "r")) == NULL) continue;
        long size = 0;
        char unit = 0;
        int got = fscanf(f, "%ld%c", &size, &unit);
        fclose(f);
        if (got < 1) continue;
        if (unit == 'K') size <<= 10;
        else if (unit == 'M') size <<= 20;
        return size;
    }
    return 0;
}

static long zl_cache_size(int level, long fallback) {
    long size = zl_sysfs_cache_size(level);
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    if (size <= 0) {
        const int name = level == 1 ? _SC_LEVEL1_DCACHE_SIZE : level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE;
        size = sysconf(name);
    }
#endif
    return size > 0 ? size : fallback;
}

static zl_blas_int zl_clamp(zl_blas_int v, zl_blas_int lo, zl_blas_int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* BLIS's analytical rule: a kc x NR micro-panel of B fills half of L1 (the other
 * half streams A), an mc x kc block of A half of L2, a kc x nc panel of B a
 * quarter of L3 (shared with the other cores). */
static zl_gemm_blocking zl_blocking_for(long l1, long l2, long l3, size_t elem, zl_blas_int mr, zl_blas_int nr) {
    zl_gemm_blocking b;
    b.kc = zl_clamp((zl_blas_int)(l1 / 2 / (long)(nr * elem)) / 8 * 8, 64, 1024);
    b.mc = zl_clamp((zl_blas_int)(l2 / 2 / (long)(b.kc * elem)) / mr * mr, mr, 1020);
    b.nc = zl_clamp((zl_blas_int)(l3 / 4 / (long)(b.kc * elem)) / nr * nr, nr, 4080 / nr * nr);
    return b;
}

void zl_generic_ctx_init(zl_generic_ctx *ctx) {
    ctx->num_threads = 1;
    ctx->l1d = zl_cache_size(1, 32 << 10);
    ctx->l2 = zl_cache_size(2, 256 << 10);
    ctx->l3 = zl_cache_size(3, 4 << 20);
    ctx->s = zl_blocking_for(ctx->l1d, ctx->l2, ctx->l3, sizeof(float), ZL_SGEMM_MR, ZL_SGEMM_NR);
    ctx->d = zl_blocking_for(ctx->l1d, ctx->l2, ctx->l3, sizeof(double), ZL_DGEMM_MR, ZL_DGEMM_NR);
    ctx->s512 = zl_blocking_for(ctx->l1d, ctx->l2, ctx->l3, sizeof(float), ZL_SGEMM512_MR, ZL_SGEMM512_NR);
    ctx->d512 = zl_blocking_for(ctx->l1d, ctx->l2, ctx->l3, sizeof(double), ZL_DGEMM512_MR, ZL_DGEMM512_NR);
}
