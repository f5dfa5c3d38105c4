/* The quantized product's driver: path choice, argument checks and the chunk
 * bodies the pool runs (the split itself is in qmatmul.pyx). */
#include <stdlib.h>

#include "qgemm_job.h"

/* ---- paths ---- */

static const char *const path_names[ZL_QPATH_COUNT] = {"portable", "avx2", "avx_vnni", "avx512_vnni"};

const char *zl_qpath_name(int path) {
    return (path >= 0 && path < ZL_QPATH_COUNT) ? path_names[path] : "unknown";
}

int zl_qpath_supported(int path) {
    if (path == ZL_QPATH_PORTABLE) return 1;
#if ZL_X86
    if (path == ZL_QPATH_AVX2) return zl_cpu_has_avx2();
    if (path == ZL_QPATH_AVX_VNNI) return zl_cpu_has_avx_vnni();
    if (path == ZL_QPATH_AVX512_VNNI) return zl_cpu_has_avx512_vnni();
#endif
    return 0;
}

int zl_qpath_best(void) {
    static int cached = -1;
    if (cached < 0) {
        int best = ZL_QPATH_PORTABLE;
        for (int p = 1; p < ZL_QPATH_COUNT; p++)
            if (zl_qpath_supported(p)) best = p;
        cached = best;
    }
    return cached;
}

/* ZIGLLAMA_QMATMUL_PATH names a path to use instead of the widest; a path the
 * CPU lacks (or an unknown name) gives the widest supported one below it. */
int zl_qpath_active(void) {
    const int best = zl_qpath_best();
    const char *s = getenv("ZIGLLAMA_QMATMUL_PATH");
    if (s == NULL || s[0] == '\0') return best;
    for (int p = 0; p < ZL_QPATH_COUNT; p++) {
        if (strcmp(s, path_names[p]) == 0) {
            while (p > 0 && !zl_qpath_supported(p)) p--;
            return p;
        }
    }
    return best;
}

/* ---- kernels ---- */

/* The AVX-512 VNNI path takes its BITALG build where the CPU has BITALG, unless
 * ZIGLLAMA_QMATMUL_BITALG=0 (the tests run both). */
static int bitalg_allowed(void) {
    const char *s = getenv("ZIGLLAMA_QMATMUL_BITALG");
    return zl_cpu_has_avx512_bitalg() && !(s != NULL && strcmp(s, "0") == 0);
}

/* AVX-VNNI (no AVX-512) runs the AVX2 kernels: its VEX vpdpbusd is left for
 * a machine that has it to test on. */
static const zl_qdot_fn *path_table(int path) {
    switch (path) {
    case ZL_QPATH_AVX2: case ZL_QPATH_AVX_VNNI: return zl_qdot_avx2;
    case ZL_QPATH_AVX512_VNNI: return bitalg_allowed() ? zl_qdot_avx512_bitalg : zl_qdot_avx512_vnni;
    default: return zl_qdot_portable;
    }
}

int zl_act_of(int type) {
    switch (type) {
    case ZL_GGML_F32: case ZL_GGML_F16: case ZL_GGML_BF16:
        return ZL_ACT_F32;
    case ZL_GGML_Q4_0: case ZL_GGML_Q4_1: case ZL_GGML_Q5_0: case ZL_GGML_Q5_1: case ZL_GGML_Q8_0:
    case ZL_GGML_IQ4_NL:
        return ZL_ACT_Q8_0;
    default:
        return ZL_ACT_Q8_K;
    }
}

int zl_qfast_has(int type) {
    return type >= 0 && type < ZL_GGML_TYPE_COUNT && zl_qdot_portable[type] != NULL;
}

zl_qdot_fn zl_qdot_for(int type, int path) {
    for (int p = path; p >= 0; p--) {
        if (path_table(p)[type] != NULL) return path_table(p)[type];
    }
    return NULL;
}

int64_t zl_act_row_bytes(int act, int64_t k) {
    switch (act) {
    case ZL_ACT_Q8_0: return k / 32 * ZL_Q8_0_BYTES;
    case ZL_ACT_Q8_K: return k / QK_K * ZL_Q8_K_BYTES;
    default: return k * (int64_t)sizeof(float);
    }
}

zl_act_quantize_fn zl_act_quantizer(int act, int path, zl_act_quantize_fn q8_0_portable) {
    if (act == ZL_ACT_Q8_0) return path >= ZL_QPATH_AVX2 ? zl_quantize_act_q8_0_avx2 : q8_0_portable;
    if (act == ZL_ACT_Q8_K) return path >= ZL_QPATH_AVX2 ? zl_quantize_act_q8_k_avx2 : zl_quantize_act_q8_k_portable;
    return NULL;
}

/* ---- checks ---- */

int zl_qgemm_check(const zl_qtensor *w, int64_t m, int64_t ldx, int64_t ldy, int mode) {
    if (w == NULL || w->type < 0 || w->type >= ZL_GGML_TYPE_COUNT) return ZL_QGEMM_ETYPE;
    const zl_ggml_type_traits *t = &zl_ggml_type_table[w->type];
    if (t->name == NULL || t->block_size == 0) return ZL_QGEMM_ETYPE;
    if (mode != ZL_QGEMM_FAST && mode != ZL_QGEMM_EXACT) return ZL_QGEMM_EARG;
    if (w->rows < 0 || w->cols < 0 || m < 0) return ZL_QGEMM_EARG;
    if (w->cols % t->block_size != 0) return ZL_QGEMM_EBLOCKS;
    if (w->row_stride < w->cols / t->block_size * t->type_size) return ZL_QGEMM_EARG;
    if (ldx < (w->cols > 1 ? w->cols : 1) || ldy < (w->rows > 1 ? w->rows : 1)) return ZL_QGEMM_EARG;
    if (w->rows > 0 && w->cols > 0 && w->data == NULL) return ZL_QGEMM_EARG;
    return 0;
}

/* ---- chunk bodies ---- */

int zl_qgemm_quantize_rows(void *vjob, int64_t begin, int64_t end) {
    zl_qgemm_job *j = (zl_qgemm_job *)vjob;
    for (int64_t i = begin; i < end; i++)
        j->quantize(j->x + i * j->ldx, j->xq + i * j->xq_bytes, j->w.cols);
    return 0;
}

/* W rows in blocks that stay in L1/L2 while every x row passes over them. */
int zl_qgemm_fast_chunk(void *vjob, int64_t begin, int64_t end) {
    const zl_qgemm_job *j = (const zl_qgemm_job *)vjob;
    if (j->tiles != NULL) return zl_qgemm_tile_chunk(vjob, begin, end);
    int64_t r0, r1;
    zl_qgemm_chunk_rows(j, begin, end, &r0, &r1);
    const int64_t block = j->m == 1 ? r1 - r0 : j->rows_per_block;
    for (int64_t r = r0; r < r1; r += block) {
        const int64_t n = (r1 - r < block) ? r1 - r : block;
        const uint8_t *wr = j->w.data + r * j->w.row_stride;
        for (int64_t i = 0; i < j->m; i++) {
            const uint8_t *xq = j->act == ZL_ACT_F32 ? (const uint8_t *)(j->x + i * j->ldx) : j->xq + i * j->xq_bytes;
            j->dot(j->w.cols, wr, j->w.row_stride, n, xq, j->y + i * j->ldy + r);
        }
    }
    return 0;
}

/* Exact mode, few x rows: each block of W rows dequantized into a buffer of the
 * chunk's own, then float dot products with every x row. */
int zl_qgemm_exact_chunk(void *vjob, int64_t begin, int64_t end) {
    const zl_qgemm_job *j = (const zl_qgemm_job *)vjob;
    int64_t r0, r1;
    zl_qgemm_chunk_rows(j, begin, end, &r0, &r1);
    if (r1 <= r0) return 0;
    const int64_t block = j->rows_per_block;
    float *buf = (float *)malloc((size_t)(block * j->w.cols) * sizeof(float) + 64);
    if (buf == NULL) return 1;
    for (int64_t r = r0; r < r1; r += block) {
        const int64_t n = (r1 - r < block) ? r1 - r : block;
        for (int64_t q = 0; q < n; q++)
            j->dequantize(j->w.data + (r + q) * j->w.row_stride, buf + q * j->w.cols, j->w.cols);
        for (int64_t i = 0; i < j->m; i++)
            j->dot(j->w.cols, (const uint8_t *)buf, j->w.cols * (int64_t)sizeof(float), n,
                   (const uint8_t *)(j->x + i * j->ldx), j->y + i * j->ldy + r);
    }
    free(buf);
    return 0;
}

/* Exact mode, many x rows: the panel's rows [panel_r0, panel_r0 + panel_rows)
 * dequantized, split over chunks; the caller then runs sgemm on the panel. */
int zl_qgemm_panel_chunk(void *vjob, int64_t begin, int64_t end) {
    const zl_qgemm_job *j = (const zl_qgemm_job *)vjob;
    const int64_t q0 = j->panel_rows * begin / j->nchunks, q1 = j->panel_rows * end / j->nchunks;
    for (int64_t q = q0; q < q1; q++)
        j->dequantize(j->w.data + (j->panel_r0 + q) * j->w.row_stride, j->panel + q * j->w.cols, j->w.cols);
    return 0;
}

/* ---- the read sweep: the memory-bandwidth peer of the GEMV benchmark ---- */

#if ZL_X86
ZL_TARGET_AVX2 static uint64_t read_sweep_avx2(const uint8_t *p, int64_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    int64_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a = _mm256_or_si256(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_or_si256(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        c = _mm256_or_si256(c, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        d = _mm256_or_si256(d, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
    uint64_t acc = (uint64_t)_mm256_extract_epi64(a, 0) | (uint64_t)_mm256_extract_epi64(a, 1) |
                   (uint64_t)_mm256_extract_epi64(a, 2) | (uint64_t)_mm256_extract_epi64(a, 3);
    for (; i < n; i++) acc |= p[i];
    return acc;
}
#endif

/* OR of every byte of p[0..n): each byte read once, as fast as the loads go. */
uint64_t zl_read_sweep(const uint8_t *p, int64_t n) {
#if ZL_X86
    if (zl_cpu_has_avx2()) return read_sweep_avx2(p, n);
#endif
    uint64_t acc = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        acc |= v;
    }
    for (; i < n; i++) acc |= p[i];
    return acc;
}
