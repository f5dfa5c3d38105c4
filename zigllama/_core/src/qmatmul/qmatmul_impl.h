/* Kernels of the quantized matrix products (not public; see zigllama/zl_qmatmul.h). */
#ifndef ZIGLLAMA_QMATMUL_IMPL_H
#define ZIGLLAMA_QMATMUL_IMPL_H

#include <stdint.h>
#include <string.h>

#include "zigllama/zl_cpu.h"
#include "zigllama/zl_ggml_types.h"
#include "zigllama/zl_qmatmul.h"
#include "zigllama/zl_quants.h"

#if ZL_X86
#include <immintrin.h>
#endif

#define QK_K 256

/* The form x takes for a weight type's dot product. */
enum {
    ZL_ACT_F32 = 0,  /* float32 as given (F32, F16, BF16 weights) */
    ZL_ACT_Q8_0 = 1, /* ggml block_q8_0: f16 d, 32 x int8 (34 bytes) */
    ZL_ACT_Q8_K = 2  /* ggml block_q8_K: f32 d, 256 x int8, 16 x int16 sums (292 bytes) */
};
#define ZL_Q8_0_BYTES 34
#define ZL_Q8_K_BYTES 292

/* y[r] = (row r of W) . x for r < nrows: W rows `stride` bytes apart, each k
 * values; xq is x in the type's activation form. */
typedef void (*zl_qdot_fn)(int64_t k, const uint8_t *w, int64_t stride, int64_t nrows,
                           const uint8_t *xq, float *y);

/* Quantize one row of k floats into the activation form (ZL_ACT_Q8_0/Q8_K). */
typedef void (*zl_act_quantize_fn)(const float *x, uint8_t *dst, int64_t k);

typedef struct {
    int type;
    int act;
    zl_qdot_fn dot[ZL_QPATH_COUNT]; /* NULL: use the next narrower path */
} zl_qkernel;

/* The kernel set of a weight type, or NULL when the fast mode has none. */
const zl_qkernel *zl_qkernel_find(int type);
/* The dot of `kern` for `path` or the widest narrower path that has one. */
zl_qdot_fn zl_qkernel_dot(const zl_qkernel *kern, int path);
/* Bytes of one row of k values in activation form `act`. */
int64_t zl_act_row_bytes(int act, int64_t k);
/* The activation quantizer of `act` on `path` (q8_0_portable: the package's
 * reference Q8_0 quantizer, passed in by the caller). */
zl_act_quantize_fn zl_act_quantizer(int act, int path, zl_act_quantize_fn q8_0_portable);

/* Paths: what the CPU runs, and the one in use (ZIGLLAMA_QMATMUL_PATH forces a
 * narrower one: portable, avx2, avx_vnni, avx512_vnni). */
int zl_qpath_supported(int path);
int zl_qpath_best(void);
int zl_qpath_active(void);
const char *zl_qpath_name(int path);

/* Portable kernels (dot_portable.c) and the per-path tables. */
void zl_quantize_act_q8_k_portable(const float *x, uint8_t *dst, int64_t k);
extern const zl_qdot_fn zl_qdot_portable[ZL_GGML_TYPE_COUNT];
extern const zl_qdot_fn *const zl_qdot_avx2;
extern const zl_qdot_fn *const zl_qdot_avx512_vnni;
extern const zl_qdot_fn *const zl_qdot_avx512_bitalg; /* the same with BITALG where it helps */
void zl_quantize_act_q8_0_avx2(const float *x, uint8_t *dst, int64_t k);
void zl_quantize_act_q8_k_avx2(const float *x, uint8_t *dst, int64_t k);

/* Little-endian unaligned loads: zl_load_f16/u32/f32 (zl_quants.h), and a signed 16-bit one. */
static inline int16_t zl_q_i16(const uint8_t *p) {
    int16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* The 6-bit scales and mins of a Q4_K/Q5_K block, 8 of each (get_scale_min_k4). */
static inline void zl_q_scales_mins_k4(const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        mn[j] = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The 16 signed 6-bit scales of a Q3_K block (scales - 32). */
static inline void zl_q_scales_q3_k(const uint8_t *q, int8_t *sc) {
    uint32_t a[4];
    memcpy(a, q, 12);
    const uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu;
    const uint32_t tmp = a[2];
    a[2] = ((a[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    a[3] = ((a[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    a[0] = (a[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    a[1] = (a[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    memcpy(sc, a, 16);
    for (int j = 0; j < 16; j++) sc[j] = (int8_t)(sc[j] - 32);
}

#endif
