/* Dequantization kernels for every GGML block format: the contract.
 *
 * One kernel per type, over whole blocks:
 *
 *     void zl_dequantize_row_<name>(const uint8_t *restrict src, float *restrict dst, int64_t n);
 *
 *   n    number of output elements, a multiple of the type's block size;
 *   src  n / block_size whole blocks, laid out as in ggml-common.h (no alignment
 *        assumed: blocks of odd size follow each other packed);
 *   dst  n float32 values.
 *
 * <name> is the lower-case ggml name (q4_0, q4_k, iq2_xxs, mxfp4, f16, bf16, ...).
 * Every kernel has a portable C path and, where it pays, an AVX2/F16C path
 * (ZL_TARGET_AVX2) and an AVX-512 one (ZL_TARGET_AVX512), chosen inside the kernel
 * at run time with zl_cpu_has_avx512() / zl_cpu_has_avx2() (zigllama/zl_cpu.h).
 * Results are bit-exact with the reference (gguf.quants.dequantize), so every
 * path gives the same bits: the
 * build has -ffp-contract=off and kernels use no fused multiply-add where the
 * reference multiplies and adds separately.
 *
 * Kernels cannot fail and take no lock: callers split rows across threads.
 */
#ifndef ZIGLLAMA_ZL_QUANTS_H
#define ZIGLLAMA_ZL_QUANTS_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*zl_dequantize_fn)(const uint8_t *src, float *dst, int64_t n);

/* What dequantize_into / dequantize_into_on return (quantization.pxd); the pool's
 * own failures (ZL_POOL_E*, below -10000) pass through. check_quant_status turns
 * any of them into an exception. */
typedef enum zl_quant_status {
    ZL_QUANT_OK = 0,
    ZL_QUANT_EUNKNOWN_TYPE = -1, /* no ggml type of that id, or no kernel for it */
    ZL_QUANT_EPARTIAL_BLOCK = -2,/* n_elements is negative or not a whole number of blocks */
    ZL_QUANT_ESOURCE_GONE = -3   /* reading src took a SIGBUS (its file shrank): dst partly written */
} zl_quant_status;

#define ZL_DEQUANTIZE_DECL(name) \
    void zl_dequantize_row_##name(const uint8_t *__restrict src, float *__restrict dst, int64_t n)

/* Plain element types: conversions. */
ZL_DEQUANTIZE_DECL(f32);
ZL_DEQUANTIZE_DECL(f16);
ZL_DEQUANTIZE_DECL(bf16);
ZL_DEQUANTIZE_DECL(f64);
ZL_DEQUANTIZE_DECL(i8);
ZL_DEQUANTIZE_DECL(i16);
ZL_DEQUANTIZE_DECL(i32);
ZL_DEQUANTIZE_DECL(i64);

/* Legacy blocks of 32. */
ZL_DEQUANTIZE_DECL(q4_0);
ZL_DEQUANTIZE_DECL(q4_1);
ZL_DEQUANTIZE_DECL(q5_0);
ZL_DEQUANTIZE_DECL(q5_1);
ZL_DEQUANTIZE_DECL(q8_0);
ZL_DEQUANTIZE_DECL(q8_1);

/* K-quants: super-blocks of 256. */
ZL_DEQUANTIZE_DECL(q2_k);
ZL_DEQUANTIZE_DECL(q3_k);
ZL_DEQUANTIZE_DECL(q4_k);
ZL_DEQUANTIZE_DECL(q5_k);
ZL_DEQUANTIZE_DECL(q6_k);
ZL_DEQUANTIZE_DECL(q8_k);

/* Newer small formats. */
ZL_DEQUANTIZE_DECL(nvfp4);
ZL_DEQUANTIZE_DECL(q1_0);

/* Importance-matrix, ternary and microscaling formats (src/quantization/iq*.c). */
ZL_DEQUANTIZE_DECL(iq1_s);
ZL_DEQUANTIZE_DECL(iq1_m);
ZL_DEQUANTIZE_DECL(iq2_xxs);
ZL_DEQUANTIZE_DECL(iq2_xs);
ZL_DEQUANTIZE_DECL(iq2_s);
ZL_DEQUANTIZE_DECL(iq3_xxs);
ZL_DEQUANTIZE_DECL(iq3_s);
ZL_DEQUANTIZE_DECL(iq4_nl);
ZL_DEQUANTIZE_DECL(iq4_xs);
ZL_DEQUANTIZE_DECL(tq1_0);
ZL_DEQUANTIZE_DECL(tq2_0);
ZL_DEQUANTIZE_DECL(mxfp4);

/* The ggml type table (ids as in ggml.h / gguf.GGMLQuantizationType). */
typedef struct {
    int type_id;              /* ggml_type */
    const char *name;         /* upper-case ggml name, "Q4_K" */
    int64_t block_size;       /* elements per block */
    int64_t type_size;        /* bytes per block */
    zl_dequantize_fn dequantize; /* NULL: no kernel linked in */
} zl_quant_type;

/* Entry for a ggml type id, or NULL for an unknown id. */
const zl_quant_type *zl_quant_type_find(int type_id);

/* All entries; *count receives their number. */
const zl_quant_type *zl_quant_types(int *count);

/* Run `kernel` over n_blocks blocks. With `streaming`, output goes through a
 * small cache-resident buffer and non-temporal stores (for outputs much larger
 * than the caches, which would otherwise be read before being overwritten). */
void zl_dequantize_blocks(zl_dequantize_fn kernel, const uint8_t *src, float *dst, int64_t n_blocks,
                          int64_t block_size, int64_t type_size, int streaming);

/* True when the kernels take their AVX2 paths (CPU support, SIMD not disabled). */
int zl_quants_simd_active(void);

/* Quantizers: float32 rows into blocks, byte-equal with ggml's C quantizers
 * (ggml_quantize_chunk: quantize_row_*_ref without an importance matrix, the
 * quantize_* functions with one). A run function quantizes `nb` consecutive
 * blocks of one row; `qw` is NULL or the importance weights of the run's first
 * column (one weight per column). It returns -1, or the index in the run of the
 * first block whose scale overflowed the format (inf/NaN where ggml would store
 * them; the blocks from there on are not all written). */
typedef int64_t (*zl_quantize_run_fn)(const float *src, uint8_t *dst, int64_t nb, const float *qw);

typedef struct {
    int type_id;              /* ggml_type */
    zl_quantize_run_fn run;
    int takes_imatrix;        /* ggml's quantizer for it uses importance weights */
} zl_quantizer;

/* The quantizer of a ggml type id, or NULL. */
const zl_quantizer *zl_quantizer_find(int type_id);

/* Quantizes blocks [first, first + count) of rows of `blocks_per_row` blocks:
 * src and dst point at block 0 of the whole call; `imatrix` is NULL or one
 * weight per column. Returns -1, or the (absolute) index of the first block
 * that overflowed. */
int64_t zl_quantize_blocks(const zl_quantizer *q, const float *src, uint8_t *dst, int64_t first, int64_t count,
                           int64_t blocks_per_row, const float *imatrix);

/* *first_bad = bad if it is -1 or larger, atomically (ranges of one call run
 * on several threads and the error names the first overflowed block). */
void zl_quantize_note_overflow(int64_t *first_bad, int64_t bad);

/* Shared helpers for kernels: IEEE half / bfloat16 to float, exact for every
 * input (zero, subnormal, inf, NaN keep their meaning; NaN payloads kept). */
static inline float zl_fp32_from_bits(uint32_t w) {
    union { uint32_t u; float f; } v;
    v.u = w;
    return v.f;
}

static inline float zl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* Subnormal half: normalise into a float. */
        uint32_t e = 113u;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    return zl_fp32_from_bits(bits);
}

static inline float zl_bf16_to_f32(uint16_t h) { return zl_fp32_from_bits((uint32_t)h << 16); }

/* Little-endian values read from unaligned block bytes (GGUF data is little-endian). */
static inline uint16_t zl_load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static inline uint32_t zl_load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline float zl_load_f32(const uint8_t *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* An f16 block scale. */
static inline float zl_load_f16(const uint8_t *p) { return zl_f16_to_f32(zl_load_u16(p)); }

#ifdef __cplusplus
}
#endif

#endif
