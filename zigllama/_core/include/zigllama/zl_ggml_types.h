/* ggml's tensor types: id, name, elements per block, bytes per block.
 *
 * The ids are ggml's (enum ggml_type), the ones real GGUF files carry; the gaps are
 * ids ggml retired (4, 5: Q4_2/Q4_3; 31-33, 36-38: repacked layouts that never
 * reach a file). The same table, for Python, is zigllama/ggml_types.py; a test
 * checks that both agree with each other and with the gguf package.
 */
#ifndef ZIGLLAMA_ZL_GGML_TYPES_H
#define ZIGLLAMA_ZL_GGML_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ZL_GGML_F32 = 0, ZL_GGML_F16 = 1, ZL_GGML_Q4_0 = 2, ZL_GGML_Q4_1 = 3,
    ZL_GGML_Q5_0 = 6, ZL_GGML_Q5_1 = 7, ZL_GGML_Q8_0 = 8, ZL_GGML_Q8_1 = 9,
    ZL_GGML_Q2_K = 10, ZL_GGML_Q3_K = 11, ZL_GGML_Q4_K = 12, ZL_GGML_Q5_K = 13,
    ZL_GGML_Q6_K = 14, ZL_GGML_Q8_K = 15, ZL_GGML_IQ2_XXS = 16, ZL_GGML_IQ2_XS = 17,
    ZL_GGML_IQ3_XXS = 18, ZL_GGML_IQ1_S = 19, ZL_GGML_IQ4_NL = 20, ZL_GGML_IQ3_S = 21,
    ZL_GGML_IQ2_S = 22, ZL_GGML_IQ4_XS = 23, ZL_GGML_I8 = 24, ZL_GGML_I16 = 25,
    ZL_GGML_I32 = 26, ZL_GGML_I64 = 27, ZL_GGML_F64 = 28, ZL_GGML_IQ1_M = 29,
    ZL_GGML_BF16 = 30, ZL_GGML_TQ1_0 = 34, ZL_GGML_TQ2_0 = 35, ZL_GGML_MXFP4 = 39,
    ZL_GGML_NVFP4 = 40, ZL_GGML_Q1_0 = 41,
    ZL_GGML_TYPE_COUNT = 42
} zl_ggml_type;

typedef struct {
    const char *name;     /* NULL for an id ggml does not (or no longer) use */
    uint32_t block_size;  /* elements per block (1 for plain types) */
    uint32_t type_size;   /* bytes per block */
} zl_ggml_type_traits;

/* Every id in order, retired ones included: C++ compilers take array designators
 * only in order and without gaps. */
static const zl_ggml_type_traits zl_ggml_type_table[ZL_GGML_TYPE_COUNT] = {
    [ZL_GGML_F32] = {"F32", 1, 4},
    [ZL_GGML_F16] = {"F16", 1, 2},
    [ZL_GGML_Q4_0] = {"Q4_0", 32, 18},
    [ZL_GGML_Q4_1] = {"Q4_1", 32, 20},
    [4] = {NULL, 0, 0},
    [5] = {NULL, 0, 0},
    [ZL_GGML_Q5_0] = {"Q5_0", 32, 22},
    [ZL_GGML_Q5_1] = {"Q5_1", 32, 24},
    [ZL_GGML_Q8_0] = {"Q8_0", 32, 34},
    [ZL_GGML_Q8_1] = {"Q8_1", 32, 36}, /* ggml block_q8_1: f16 d, f16 s, 32 x int8 */
    [ZL_GGML_Q2_K] = {"Q2_K", 256, 84},
    [ZL_GGML_Q3_K] = {"Q3_K", 256, 110},
    [ZL_GGML_Q4_K] = {"Q4_K", 256, 144},
    [ZL_GGML_Q5_K] = {"Q5_K", 256, 176},
    [ZL_GGML_Q6_K] = {"Q6_K", 256, 210},
    [ZL_GGML_Q8_K] = {"Q8_K", 256, 292},
    [ZL_GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [ZL_GGML_IQ2_XS] = {"IQ2_XS", 256, 74},
    [ZL_GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [ZL_GGML_IQ1_S] = {"IQ1_S", 256, 50},
    [ZL_GGML_IQ4_NL] = {"IQ4_NL", 32, 18},
    [ZL_GGML_IQ3_S] = {"IQ3_S", 256, 110},
    [ZL_GGML_IQ2_S] = {"IQ2_S", 256, 82},
    [ZL_GGML_IQ4_XS] = {"IQ4_XS", 256, 136},
    [ZL_GGML_I8] = {"I8", 1, 1},
    [ZL_GGML_I16] = {"I16", 1, 2},
    [ZL_GGML_I32] = {"I32", 1, 4},
    [ZL_GGML_I64] = {"I64", 1, 8},
    [ZL_GGML_F64] = {"F64", 1, 8},
    [ZL_GGML_IQ1_M] = {"IQ1_M", 256, 56},
    [ZL_GGML_BF16] = {"BF16", 1, 2},
    [31] = {NULL, 0, 0},
    [32] = {NULL, 0, 0},
    [33] = {NULL, 0, 0},
    [ZL_GGML_TQ1_0] = {"TQ1_0", 256, 54},
    [ZL_GGML_TQ2_0] = {"TQ2_0", 256, 66},
    [36] = {NULL, 0, 0},
    [37] = {NULL, 0, 0},
    [38] = {NULL, 0, 0},
    [ZL_GGML_MXFP4] = {"MXFP4", 32, 17},
    [ZL_GGML_NVFP4] = {"NVFP4", 64, 36},
    [ZL_GGML_Q1_0] = {"Q1_0", 128, 18},
};

/* The traits of a type id, or NULL if ggml has no such type. */
static inline const zl_ggml_type_traits *zl_ggml_type_get(uint32_t id) {
    if (id >= ZL_GGML_TYPE_COUNT || zl_ggml_type_table[id].name == NULL) return NULL;
    return &zl_ggml_type_table[id];
}

#ifdef __cplusplus
}
#endif

#endif /* ZIGLLAMA_ZL_GGML_TYPES_H */
