/* One quantized product in flight: what the pool's chunks share. */
#ifndef ZIGLLAMA_QGEMM_JOB_H
#define ZIGLLAMA_QGEMM_JOB_H

#include "qmatmul_impl.h"

/* zl_qgemm_check's verdicts (the Python layer turns them into messages). */
enum {
    ZL_QGEMM_ETYPE = 1,   /* not a ggml type with blocks zigllama can read */
    ZL_QGEMM_EBLOCKS = 2, /* cols is not a whole number of blocks */
    ZL_QGEMM_EARG = 3     /* a size, stride or leading dimension out of range */
};

typedef struct {
    zl_qtensor w;
    int64_t m;
    const float *x;
    int64_t ldx;
    float *y;
    int64_t ldy;
    int64_t nchunks;        /* chunks of W rows (or of the panel) */
    int64_t rows_per_block; /* W rows a chunk takes at a time */
    zl_qdot_fn dot;         /* the type's dot (fast) or the float32 dot (exact) */
    int act;
    zl_act_quantize_fn quantize;
    uint8_t *xq;            /* m quantized x rows, xq_bytes apart */
    int64_t xq_bytes;
    zl_dequantize_fn dequantize;
    float *panel;           /* exact mode, many rows: panel_rows x cols */
    int64_t panel_r0, panel_rows;
    const struct zl_tile_kernels *tiles; /* fast mode, many x rows: the tiled GEMM */
    uint8_t *xpack;         /* x regrouped for it: ngroups groups, xgroup_bytes apart */
    int64_t xgroup_bytes, ngroups;
} zl_qgemm_job;

/* Rows [*r0, *r1) of W for chunks [begin, end) of the job's nchunks: whole
 * multiples of 16 rows (64 bytes of y) between chunks, so that two threads
 * never write one cache line of y. */
static inline void zl_qgemm_chunk_rows(const zl_qgemm_job *j, int64_t begin, int64_t end, int64_t *r0, int64_t *r1) {
    *r0 = begin >= j->nchunks ? j->w.rows : j->w.rows * begin / j->nchunks / 16 * 16;
    *r1 = end >= j->nchunks ? j->w.rows : j->w.rows * end / j->nchunks / 16 * 16;
}

int zl_qfast_has(int type);
/* The activation form (ZL_ACT_*) of a weight type's fast kernel. */
int zl_act_of(int type);
zl_qdot_fn zl_qdot_for(int type, int path);
int zl_qgemm_check(const zl_qtensor *w, int64_t m, int64_t ldx, int64_t ldy, int mode);
int zl_qgemm_quantize_rows(void *job, int64_t begin, int64_t end);
int zl_qgemm_fast_chunk(void *job, int64_t begin, int64_t end);
int zl_qgemm_exact_chunk(void *job, int64_t begin, int64_t end);
int zl_qgemm_panel_chunk(void *job, int64_t begin, int64_t end);

/* The tiled GEMM's kernels for a weight type, m x rows and a path, or NULL
 * when the blocked GEMV serves better (few x rows) or the type has none. */
const struct zl_tile_kernels *zl_qgemm_tiles_for(int type, int64_t m, int path);
/* Regroup the quantized x (job->xq) for the tiled GEMM; 1: no memory. The
 * caller frees job->xpack. */
int zl_qgemm_tile_setup(zl_qgemm_job *job, const struct zl_tile_kernels *kernels);
int zl_qgemm_tile_chunk(void *job, int64_t begin, int64_t end);
/* Products the tiled GEMM has run since load, per kernel set (0 portable,
 * 1 AVX2, 2 AVX-512 VNNI; -1 or more: 0): which kernels a product took. */
int64_t zl_qgemm_tile_runs(int set);

/* OR of every byte of p[0..n): a read-only sweep, the bandwidth peer of the benchmarks. */
uint64_t zl_read_sweep(const uint8_t *p, int64_t n);

#endif
