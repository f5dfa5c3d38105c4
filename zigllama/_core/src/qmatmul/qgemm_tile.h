/* The integer GEMM of the fast mode for many x rows (a prompt).
 *
 * A blocked GEMV decodes every weight block once per x row. Here a tile of
 * ZL_TILE_R rows of W is decoded once into an unpacked form (one byte per
 * value, integer scales beside it) and multiplied against ZL_TILE_M x rows at
 * a time, themselves regrouped once per call so that a tile step reads one
 * contiguous piece of each side. The integer sums are those of the GEMV
 * kernels (exact); only the float order of the per-block scaling differs.
 *
 * Two families:
 *  - K: Q4_K, Q5_K, Q6_K against Q8_K. Values are unsigned (0..63), a block of
 *    256 has 16 signed sub-block scales (16 values each; Q4_K/Q5_K's 8 scales
 *    of 32 are doubled), an integer offset folded in through x's 16-value sums
 *    (Q6_K's -32: nbias = -32 * scale), and Q4_K/Q5_K's mins with their own
 *    float scale dmin.
 *  - legacy: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL against Q8_0, and IQ4_XS
 *    against Q8_K: values in a signed byte, one float scale per 32. For
 *    vpdpbusd (unsigned x signed bytes) x is stored as x + 128 and W carries
 *    -128 * (the sum of its values), so the integer sums stay exact. Q4_1 and
 *    Q5_1 (w = d * q + m) add m times x's block sum (d_x * the sum of its
 *    bytes, taken once when x is regrouped: ZL_TILE_MINS). IQ4_XS's sub-blocks
 *    of 32 become legacy blocks with the float scale d * (ls - 32), exact in
 *    float, and x's Q8_K blocks are read as 8 groups of 32 under their one d:
 *    the integer sums per 32 are the GEMV's, only the float order differs. */
#ifndef ZIGLLAMA_QGEMM_TILE_H
#define ZIGLLAMA_QGEMM_TILE_H

#include "qmatmul_impl.h"

#define ZL_TILE_R 4     /* rows of W in a tile */
#define ZL_TILE_M 4     /* x rows in a group (portable, AVX2) */
#define ZL_TILE_M_MAX 8 /* x rows in a group of the widest kernels (AVX-512 VNNI) */

enum { ZL_TILE_NONE = 0, ZL_TILE_K = 1, ZL_TILE_LEGACY = 2 };
/* Which offsets a type has (ZL_TILE_MINS: K family, and Q4_1/Q5_1 in the legacy one) */
enum { ZL_TILE_MINS = 1, ZL_TILE_NBIAS = 2 };

/* One 256-value block of ZL_TILE_R rows of W. */
typedef struct {
    uint8_t q[ZL_TILE_R][QK_K];
    int16_t sc[ZL_TILE_R][16];
    int16_t mins[ZL_TILE_R][16];  /* times dmin, per 16-value sub-block */
    int16_t nbias[ZL_TILE_R][16]; /* integer offset times the sub-block's x sum */
    int32_t sc32[ZL_TILE_R][16];  /* sc, widened (a broadcast operand) */
    float d[ZL_TILE_R];
    float dmin[ZL_TILE_R];
} __attribute__((aligned(32))) zl_ktile;

/* One Q8_K block of ZL_TILE_M x rows. */
typedef struct {
    int8_t q[ZL_TILE_M][QK_K];
    int16_t bsums[ZL_TILE_M][16];
    float d[ZL_TILE_M];
} __attribute__((aligned(32))) zl_kxgroup;

/* One 32-value block of ZL_TILE_R rows of W. */
typedef struct {
    int8_t q[ZL_TILE_R][32];
    float d[ZL_TILE_R];
    int32_t nsum[ZL_TILE_R];     /* -128 * sum of the 32 values */
    float m[ZL_TILE_R];          /* Q4_1/Q5_1: the block's min */
} __attribute__((aligned(32))) zl_ltile;

/* One Q8_0 block (or 32 values of a Q8_K block) of ZL_TILE_M x rows. */
typedef struct {
    int8_t q[ZL_TILE_M][32];
    float d[ZL_TILE_M];
    float s[ZL_TILE_M]; /* with ZL_TILE_MINS: d * the sum of the 32 values */
} __attribute__((aligned(32))) zl_lxgroup;

/* The AVX-512 VNNI kernels' x groups: 8 x rows side by side in each 4-byte
 * column, so that one vpdpbusd against 4 bytes of a W row broadcast gives the
 * 8 rows' sums in its 8 lanes (no horizontal sums). */
typedef struct {
    int8_t q[QK_K / 4][8][4];
    int16_t bsums[8][8][2]; /* pairs of 16-value sums, per x row */
    float d[8];
} __attribute__((aligned(32))) zl_kxgroup8;

typedef struct {
    uint8_t q[8][8][4]; /* x + 128 */
    float d[8];
    float s[8];
} __attribute__((aligned(32))) zl_lxgroup8;

/* out[r][i] = (row r of the tile) . (x row i of the group), over nblocks
 * blocks; x is the kernel set's own group form. */
typedef void (*zl_ktile_fn)(int64_t nblocks, const zl_ktile *w, const void *x, int flags,
                            float out[ZL_TILE_R][ZL_TILE_M_MAX]);
typedef void (*zl_ltile_fn)(int64_t nblocks, const zl_ltile *w, const void *x, int flags,
                            float out[ZL_TILE_R][ZL_TILE_M_MAX]);
typedef void (*zl_tile_pack_x_fn)(int type, const uint8_t *xq, int64_t xq_bytes, int nr, int64_t k, void *dst);
/* Decode one row of k values into row r of the tiles at `tiles`; 0: this
 * decoder does not have the type (the portable one then runs). */
typedef int (*zl_tile_unpack_fn)(int type, const uint8_t *row, int64_t k, void *tiles, int r);

typedef struct zl_tile_kernels {
    zl_ktile_fn k;
    zl_ltile_fn legacy;
    int xrows;                /* x rows in a group */
    zl_tile_pack_x_fn pack_x; /* nr <= xrows quantized x rows into a group */
    int64_t (*x_bytes)(int type, int64_t k);
    zl_tile_unpack_fn unpack_row; /* SIMD decoding of W, or NULL */
    int id;                       /* ZL_TILE_SET_* (the run counters' index) */
} zl_tile_kernels;

enum { ZL_TILE_SET_PORTABLE = 0, ZL_TILE_SET_AVX2 = 1, ZL_TILE_SET_AVX512_VNNI = 2, ZL_TILE_SET_COUNT = 3 };

extern const zl_tile_kernels zl_tile_portable;
extern const zl_tile_kernels zl_tile_avx2;
extern const zl_tile_kernels zl_tile_avx512_vnni;

/* The family of a weight type's tile kernel (ZL_TILE_NONE: blocked GEMV). */
int zl_tile_family(int type);
int zl_tile_flags(int type);
/* Bytes of one tile of W (ZL_TILE_R rows of k values) and of one x group
 * (4 rows; 8 in the VNNI form). */
int64_t zl_tile_w_bytes(int type, int64_t k);
int64_t zl_tile_x_bytes(int type, int64_t k);
int64_t zl_tile_x8_bytes(int type, int64_t k);
/* Decode nr <= ZL_TILE_R rows of W (stride bytes apart) into a tile (with
 * unpack_row where it has the type); the missing rows are zeros. */
void zl_tile_pack_w(int type, const uint8_t *w, int64_t stride, int nr, int64_t k, void *dst,
                    zl_tile_unpack_fn unpack_row);
/* The scales, offsets and d of a Q4_K, Q5_K or Q6_K block in row r of a tile. */
void zl_tile_k_scales(int type, const uint8_t *b, zl_ktile *t, int r);
/* SIMD decoders of W (dot_avx2.c). */
int zl_tile_unpack_avx2(int type, const uint8_t *row, int64_t k, void *tiles, int r);
/* Regroup nr quantized x rows (xq_bytes apart, in the type's activation form)
 * into a group: nr <= ZL_TILE_M
 * (zl_kxgroup / zl_lxgroup) or nr <= 8 (the VNNI forms). */
void zl_tile_pack_x(int type, const uint8_t *xq, int64_t xq_bytes, int nr, int64_t k, void *dst);
void zl_tile_pack_x8(int type, const uint8_t *xq, int64_t xq_bytes, int nr, int64_t k, void *dst);

#endif
