/* The ggml type table: id -> name, block size, bytes per block, kernel.
 *
 * Ids and sizes as in ggml.h / ggml-common.h. The IQ, TQ and MXFP4 kernels live
 * in their own files (iq*.c) and are referenced weakly, so this table links
 * whether or not they are compiled in: a missing kernel is a NULL entry, which
 * the Python layer reports as "no kernel for <type>".
 */
#include "zl_quants_impl.h"

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

#define ROW(id, NAME, name, block, size) {id, #NAME, block, size, zl_dequantize_row_##name}

/* Q8_1 is 36 bytes in ggml (f16 d and s); gguf's GGML_QUANT_SIZES still lists the
 * older 40-byte layout with f32 fields. ggml's layout is the one files carry. */
static const zl_quant_type table[] = {
    ROW(0, F32, f32, 1, 4),
    ROW(1, F16, f16, 1, 2),
    ROW(2, Q4_0, q4_0, 32, 18),
    ROW(3, Q4_1, q4_1, 32, 20),
    ROW(6, Q5_0, q5_0, 32, 22),
    ROW(7, Q5_1, q5_1, 32, 24),
    ROW(8, Q8_0, q8_0, 32, 34),
    ROW(9, Q8_1, q8_1, 32, 36),
    ROW(10, Q2_K, q2_k, 256, 84),
    ROW(11, Q3_K, q3_k, 256, 110),
    ROW(12, Q4_K, q4_k, 256, 144),
    ROW(13, Q5_K, q5_k, 256, 176),
    ROW(14, Q6_K, q6_k, 256, 210),
    ROW(15, Q8_K, q8_k, 256, 292),
    ROW(16, IQ2_XXS, iq2_xxs, 256, 66),
    ROW(17, IQ2_XS, iq2_xs, 256, 74),
    ROW(18, IQ3_XXS, iq3_xxs, 256, 98),
    ROW(19, IQ1_S, iq1_s, 256, 50),
    ROW(20, IQ4_NL, iq4_nl, 32, 18),
    ROW(21, IQ3_S, iq3_s, 256, 110),
    ROW(22, IQ2_S, iq2_s, 256, 82),
    ROW(23, IQ4_XS, iq4_xs, 256, 136),
    ROW(24, I8, i8, 1, 1),
    ROW(25, I16, i16, 1, 2),
    ROW(26, I32, i32, 1, 4),
    ROW(27, I64, i64, 1, 8),
    ROW(28, F64, f64, 1, 8),
    ROW(29, IQ1_M, iq1_m, 256, 56),
    ROW(30, BF16, bf16, 1, 2),
    ROW(34, TQ1_0, tq1_0, 256, 54),
    ROW(35, TQ2_0, tq2_0, 256, 66),
    ROW(39, MXFP4, mxfp4, 32, 17),
    ROW(40, NVFP4, nvfp4, 64, 36),
    ROW(41, Q1_0, q1_0, 128, 18),
};

const zl_quant_type *zl_quant_type_find(int type_id) {
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (table[i].type_id == type_id) return &table[i];
    }
    return NULL;
}

const zl_quant_type *zl_quant_types(int *count) {
    *count = (int)(sizeof(table) / sizeof(table[0]));
    return table;
}

int zl_quants_simd_active(void) { return zl_cpu_has_avx2(); }
