/* The ggml type table: id -> name, block size, bytes per block, kernel.
 *
 * Ids, names and sizes from zigllama/zl_ggml_types.h (ggml.h / ggml-common.h).
 * The IQ, TQ and MXFP4 kernels live in their own files (iq*.c) and are referenced
 * weakly, so this table links whether or not they are compiled in: a missing
 * kernel is a NULL entry, which the Python layer reports as "no kernel for <type>".
 */
#include "zl_quants_impl.h"
#include "zigllama/zl_ggml_types.h"

#define ZL_WEAK(name) ZL_DEQUANTIZE_DECL(name) __attribute__((weak))
ZL_WEAK(iq1_s);
ZL_WEAK(iq1_m);
ZL_WEAK(iq2_xxs);
ZL_WEAK(iq2_xs);
ZL_WEAK(iq2_s);
ZL_WEAK(iq3_xxs);
ZL_WEAK(iq3_s);
ZL_WEAK(iq4_nl);
ZL_WEAK(iq4_xs);
ZL_WEAK(tq1_0);
ZL_WEAK(tq2_0);
ZL_WEAK(mxfp4);

/* Names and sizes come from the shared type table (zl_ggml_types.h); this table
 * adds the kernels, filled in once. */
static const struct {
    int type_id;
    zl_dequantize_fn kernel;
} kernels[] = {
    {ZL_GGML_F32, zl_dequantize_row_f32},       {ZL_GGML_F16, zl_dequantize_row_f16},
    {ZL_GGML_Q4_0, zl_dequantize_row_q4_0},     {ZL_GGML_Q4_1, zl_dequantize_row_q4_1},
    {ZL_GGML_Q5_0, zl_dequantize_row_q5_0},     {ZL_GGML_Q5_1, zl_dequantize_row_q5_1},
    {ZL_GGML_Q8_0, zl_dequantize_row_q8_0},     {ZL_GGML_Q8_1, zl_dequantize_row_q8_1},
    {ZL_GGML_Q2_K, zl_dequantize_row_q2_k},     {ZL_GGML_Q3_K, zl_dequantize_row_q3_k},
    {ZL_GGML_Q4_K, zl_dequantize_row_q4_k},     {ZL_GGML_Q5_K, zl_dequantize_row_q5_k},
    {ZL_GGML_Q6_K, zl_dequantize_row_q6_k},     {ZL_GGML_Q8_K, zl_dequantize_row_q8_k},
    {ZL_GGML_IQ2_XXS, zl_dequantize_row_iq2_xxs}, {ZL_GGML_IQ2_XS, zl_dequantize_row_iq2_xs},
    {ZL_GGML_IQ3_XXS, zl_dequantize_row_iq3_xxs}, {ZL_GGML_IQ1_S, zl_dequantize_row_iq1_s},
    {ZL_GGML_IQ4_NL, zl_dequantize_row_iq4_nl}, {ZL_GGML_IQ3_S, zl_dequantize_row_iq3_s},
    {ZL_GGML_IQ2_S, zl_dequantize_row_iq2_s},   {ZL_GGML_IQ4_XS, zl_dequantize_row_iq4_xs},
    {ZL_GGML_I8, zl_dequantize_row_i8},         {ZL_GGML_I16, zl_dequantize_row_i16},
    {ZL_GGML_I32, zl_dequantize_row_i32},       {ZL_GGML_I64, zl_dequantize_row_i64},
    {ZL_GGML_F64, zl_dequantize_row_f64},       {ZL_GGML_IQ1_M, zl_dequantize_row_iq1_m},
    {ZL_GGML_BF16, zl_dequantize_row_bf16},     {ZL_GGML_TQ1_0, zl_dequantize_row_tq1_0},
    {ZL_GGML_TQ2_0, zl_dequantize_row_tq2_0},   {ZL_GGML_MXFP4, zl_dequantize_row_mxfp4},
    {ZL_GGML_NVFP4, zl_dequantize_row_nvfp4},   {ZL_GGML_Q1_0, zl_dequantize_row_q1_0},
};

#define N_TYPES ((int)(sizeof(kernels) / sizeof(kernels[0])))

static zl_quant_type table[N_TYPES];

static void build_table(void) {
    for (int i = 0; i < N_TYPES; i++) {
        const zl_ggml_type_traits *t = zl_ggml_type_get((uint32_t)kernels[i].type_id);
        table[i].type_id = kernels[i].type_id;
        table[i].name = t->name;
        table[i].block_size = t->block_size;
        table[i].type_size = t->type_size;
        table[i].dequantize = kernels[i].kernel;
    }
}

/* Built on first use; every thread that races here writes the same values, and
 * the Python module calls it once at import, before any thread exists. */
static const zl_quant_type *types(void) {
    static int built = 0;
    if (!__atomic_load_n(&built, __ATOMIC_ACQUIRE)) {
        build_table();
        __atomic_store_n(&built, 1, __ATOMIC_RELEASE);
    }
    return table;
}

const zl_quant_type *zl_quant_type_find(int type_id) {
    const zl_quant_type *all = types();
    for (int i = 0; i < N_TYPES; i++) {
        if (all[i].type_id == type_id) return &all[i];
    }
    return NULL;
}

const zl_quant_type *zl_quant_types(int *count) {
    *count = N_TYPES;
    return types();
}

int zl_quants_simd_active(void) { return zl_cpu_has_avx2(); }
