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
} zl_qgemm_job;

int zl_qfast_has(int type);
/* The activation form (ZL_ACT_*) of a weight type's fast kernel. */
int zl_act_of(int type);
zl_qdot_fn zl_qdot_for(int type, int path);
int zl_qgemm_check(const zl_qtensor *w, int64_t m, int64_t ldx, int64_t ldy, int mode);
int zl_qgemm_quantize_rows(void *job, int64_t begin, int64_t end);
int zl_qgemm_fast_chunk(void *job, int64_t begin, int64_t end);
int zl_qgemm_exact_chunk(void *job, int64_t begin, int64_t end);
int zl_qgemm_panel_chunk(void *job, int64_t begin, int64_t end);

/* OR of every byte of p[0..n): a read-only sweep, the bandwidth peer of the benchmarks. */
uint64_t zl_read_sweep(const uint8_t *p, int64_t n);

#endif
