/* The quantizer table and the loop that hands each run of blocks of one row,
 * with its columns' importance weights, to a type's run function. */
#include "quantize_impl.h"
#include "zigllama/zl_ggml_types.h"

static const zl_quantizer quantizers[] = {
    {ZL_GGML_F16, zlq_run_f16, 0},
    {ZL_GGML_BF16, zlq_run_bf16, 0},
    {ZL_GGML_Q4_0, zlq_run_q4_0, 0},
    {ZL_GGML_Q4_1, zlq_run_q4_1, 0},
    {ZL_GGML_Q5_0, zlq_run_q5_0, 0},
    {ZL_GGML_Q5_1, zlq_run_q5_1, 0},
    {ZL_GGML_Q8_0, zlq_run_q8_0, 0},
    {ZL_GGML_Q2_K, zlq_run_q2_k, 1},
    {ZL_GGML_Q3_K, zlq_run_q3_k, 1},
    {ZL_GGML_Q4_K, zlq_run_q4_k, 1},
    {ZL_GGML_Q5_K, zlq_run_q5_k, 1},
    {ZL_GGML_Q6_K, zlq_run_q6_k, 1},
    {ZL_GGML_IQ4_NL, zlq_run_iq4_nl, 1},
    {ZL_GGML_IQ4_XS, zlq_run_iq4_xs, 1},
    {ZL_GGML_TQ1_0, zlq_run_tq1_0, 0},
    {ZL_GGML_TQ2_0, zlq_run_tq2_0, 0},
    {ZL_GGML_MXFP4, zlq_run_mxfp4, 0},
};

const zl_quantizer *zl_quantizer_find(int type_id) {
    for (size_t i = 0; i < sizeof(quantizers) / sizeof(quantizers[0]); i++) {
        if (quantizers[i].type_id == type_id) return &quantizers[i];
    }
    return NULL;
}

int64_t zl_quantize_blocks(const zl_quantizer *q, const float *src, uint8_t *dst, int64_t first, int64_t count,
                           int64_t blocks_per_row, const float *imatrix) {
    const zl_ggml_type_traits *t = zl_ggml_type_get((uint32_t)q->type_id);
    const int64_t bs = t->block_size, ts = t->type_size;
    const float *qw_all = q->takes_imatrix ? imatrix : NULL;
    const int64_t end = first + count;
    for (int64_t b = first; b < end;) {
        const int64_t column_block = b % blocks_per_row;
        int64_t run = blocks_per_row - column_block;
        if (run > end - b) run = end - b;
        const int64_t bad = q->run(src + b * bs, dst + b * ts, run, qw_all ? qw_all + column_block * bs : NULL);
        if (bad >= 0) return b + bad;
        b += run;
    }
    return -1;
}

void zl_quantize_note_overflow(int64_t *first_bad, int64_t bad) {
    int64_t seen = __atomic_load_n(first_bad, __ATOMIC_RELAXED);
    while (seen < 0 || bad < seen) {
        if (__atomic_compare_exchange_n(first_bad, &seen, bad, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) break;
    }
}
