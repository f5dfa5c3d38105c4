/* The tiled integer GEMM (see qgemm_tile.h): decoding W and regrouping x into
 * tiles, the portable tile kernels, and the chunk body the pool runs. */
#include <stdlib.h>

#include "qgemm_job.h"
#include "qgemm_tile.h"
#include "../quantization/iq_grids.h"

int zl_tile_family(int type) {
    switch (type) {
    case ZL_GGML_Q2_K: case ZL_GGML_Q3_K: case ZL_GGML_Q4_K: case ZL_GGML_Q5_K: case ZL_GGML_Q6_K:
        return ZL_TILE_K;
    case ZL_GGML_Q4_0: case ZL_GGML_Q4_1: case ZL_GGML_Q5_0: case ZL_GGML_Q5_1: case ZL_GGML_Q8_0:
    case ZL_GGML_IQ4_NL: case ZL_GGML_IQ4_XS:
        return ZL_TILE_LEGACY;
    default:
        return ZL_TILE_NONE;
    }
}

int zl_tile_flags(int type) {
    switch (type) {
    case ZL_GGML_Q2_K: case ZL_GGML_Q4_K: case ZL_GGML_Q5_K: case ZL_GGML_Q4_1: case ZL_GGML_Q5_1:
        return ZL_TILE_MINS;
    case ZL_GGML_Q3_K: case ZL_GGML_Q6_K: return ZL_TILE_NBIAS;
    default: return 0;
    }
}

int64_t zl_tile_w_bytes(int type, int64_t k) {
    return zl_tile_family(type) == ZL_TILE_K ? k / QK_K * (int64_t)sizeof(zl_ktile)
                                             : k / 32 * (int64_t)sizeof(zl_ltile);
}

int64_t zl_tile_x_bytes(int type, int64_t k) {
    return zl_tile_family(type) == ZL_TILE_K ? k / QK_K * (int64_t)sizeof(zl_kxgroup)
                                             : k / 32 * (int64_t)sizeof(zl_lxgroup);
}

int64_t zl_tile_x8_bytes(int type, int64_t k) {
    return zl_tile_family(type) == ZL_TILE_K ? k / QK_K * (int64_t)sizeof(zl_kxgroup8)
                                             : k / 32 * (int64_t)sizeof(zl_lxgroup8);
}

/* ---- decoding one block of one row into a tile's row r ---- */

static void unpack_q2_k(const uint8_t *b, zl_ktile *t, int r) {
    const uint8_t *q2 = b + 16;
    for (int half = 0; half < 2; half++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) t->q[r][128 * half + 32 * g + l] = (q2[32 * half + l] >> (2 * g)) & 3;
    for (int s = 0; s < 16; s++) {
        t->sc[r][s] = b[s] & 0xF;
        t->mins[r][s] = b[s] >> 4;
    }
    t->d[r] = zl_load_f16(b + 80);
    t->dmin[r] = zl_load_f16(b + 82);
}

/* Q3_K: value = (2 low bits | 4 if the high bit is set) - 4. */
static void unpack_q3_k(const uint8_t *b, zl_ktile *t, int r) {
    const uint8_t *hm = b, *q3 = b + 32;
    int8_t sc[16];
    zl_q_scales_q3_k(b + 96, sc);
    for (int half = 0; half < 2; half++)
        for (int g = 0; g < 4; g++) {
            const uint8_t bit = (uint8_t)(1u << (4 * half + g));
            for (int l = 0; l < 32; l++)
                t->q[r][128 * half + 32 * g + l] =
                    (uint8_t)(((q3[32 * half + l] >> (2 * g)) & 3) | ((hm[l] & bit) ? 4 : 0));
        }
    for (int s = 0; s < 16; s++) {
        t->sc[r][s] = sc[s];
        t->nbias[r][s] = (int16_t)(-4 * sc[s]);
    }
    t->d[r] = zl_load_f16(b + 108);
}

/* Q4_K and Q5_K: 8 sub-blocks of 32, each scale and min doubled over its two 16s. */
static void k4_scales(const uint8_t *b, zl_ktile *t, int r) {
    uint8_t sc[8], mn[8];
    zl_q_scales_mins_k4(b + 4, sc, mn);
    for (int s = 0; s < 16; s++) {
        t->sc[r][s] = sc[s / 2];
        t->mins[r][s] = mn[s / 2];
    }
    t->d[r] = zl_load_f16(b);
    t->dmin[r] = zl_load_f16(b + 2);
}

static void unpack_q4_k(const uint8_t *b, zl_ktile *t, int r) {
    const uint8_t *q4 = b + 16;
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            t->q[r][64 * j + l] = q4[32 * j + l] & 0xF;
            t->q[r][64 * j + 32 + l] = q4[32 * j + l] >> 4;
        }
    k4_scales(b, t, r);
}

static void unpack_q5_k(const uint8_t *b, zl_ktile *t, int r) {
    const uint8_t *qh = b + 16, *q4 = b + 48;
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            t->q[r][64 * j + l] = (uint8_t)((q4[32 * j + l] & 0xF) | (((qh[l] >> (2 * j)) & 1) << 4));
            t->q[r][64 * j + 32 + l] = (uint8_t)((q4[32 * j + l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4));
        }
    k4_scales(b, t, r);
}

/* Q6_K: values 0..63 with the -32 carried by nbias = -32 * scale. */
static void q6_k_scales(const uint8_t *b, zl_ktile *t, int r) {
    for (int s = 0; s < 16; s++) {
        const int8_t sc = (int8_t)b[192 + s];
        t->sc[r][s] = sc;
        t->nbias[r][s] = (int16_t)(-32 * sc);
    }
    t->d[r] = zl_load_f16(b + 208);
}

static void unpack_q6_k(const uint8_t *b, zl_ktile *t, int r) {
    const uint8_t *ql = b, *qh = b + 128;
    for (int half = 0; half < 2; half++, ql += 64, qh += 32) {
        uint8_t *o = t->q[r] + 128 * half;
        for (int l = 0; l < 32; l++) {
            o[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
            o[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            o[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
    q6_k_scales(b, t, r);
}

void zl_tile_k_scales(int type, const uint8_t *b, zl_ktile *t, int r) {
    if (type == ZL_GGML_Q6_K)
        q6_k_scales(b, t, r);
    else
        k4_scales(b, t, r);
    for (int s = 0; s < 16; s++) t->sc32[r][s] = t->sc[r][s];
}

/* The sum for nsum is taken as the values are made: reading the tile's bytes
 * back would stall on the stores just issued. */
static void unpack_legacy(int type, const uint8_t *b, zl_ltile *t, int r) {
    int8_t *q = t->q[r];
    int sum = 0;
    switch (type) {
    case ZL_GGML_Q4_0:
        for (int j = 0; j < 16; j++) {
            const int lo = (b[2 + j] & 0xF) - 8, hi = (b[2 + j] >> 4) - 8;
            q[j] = (int8_t)lo;
            q[j + 16] = (int8_t)hi;
            sum += lo + hi;
        }
        break;
    case ZL_GGML_Q4_1:
        for (int j = 0; j < 16; j++) {
            const int lo = b[4 + j] & 0xF, hi = b[4 + j] >> 4;
            q[j] = (int8_t)lo;
            q[j + 16] = (int8_t)hi;
            sum += lo + hi;
        }
        t->m[r] = zl_load_f16(b + 2);
        break;
    case ZL_GGML_Q5_0: {
        const uint32_t qh = zl_load_u32(b + 2);
        for (int j = 0; j < 16; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            const int lo = ((b[6 + j] & 0xF) | h0) - 16, hi = ((b[6 + j] >> 4) | h1) - 16;
            q[j] = (int8_t)lo;
            q[j + 16] = (int8_t)hi;
            sum += lo + hi;
        }
        break;
    }
    case ZL_GGML_Q5_1: {
        const uint32_t qh = zl_load_u32(b + 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            const int lo = (b[8 + j] & 0xF) | h0, hi = (b[8 + j] >> 4) | h1;
            q[j] = (int8_t)lo;
            q[j + 16] = (int8_t)hi;
            sum += lo + hi;
        }
        t->m[r] = zl_load_f16(b + 2);
        break;
    }
    case ZL_GGML_Q8_0:
        memcpy(q, b + 2, 32);
        for (int j = 0; j < 32; j++) sum += (int8_t)b[2 + j];
        break;
    default: /* IQ4_NL */
        for (int j = 0; j < 16; j++) {
            const int lo = zl_kvalues_iq4nl[b[2 + j] & 0xF], hi = zl_kvalues_iq4nl[b[2 + j] >> 4];
            q[j] = (int8_t)lo;
            q[j + 16] = (int8_t)hi;
            sum += lo + hi;
        }
    }
    t->nsum[r] = -128 * sum;
    t->d[r] = zl_load_f16(b);
}

/* IQ4_XS: a block of 256 as 8 legacy tiles of 32, each scaled by d * (ls - 32)
 * (an f16 times a 6-bit integer: exact in float). */
static void unpack_iq4_xs(const uint8_t *b, zl_ltile *t, int r) {
    const float d = zl_load_f16(b);
    const uint16_t h = zl_load_u16(b + 2);
    for (int ib = 0; ib < 8; ib++, t++) {
        const uint8_t *qs = b + 8 + 16 * ib;
        const int ls = ((b[4 + ib / 2] >> (4 * (ib & 1))) & 0xF) | (((h >> (2 * ib)) & 3) << 4);
        int sum = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = zl_kvalues_iq4nl[qs[j] & 0xF], hi = zl_kvalues_iq4nl[qs[j] >> 4];
            t->q[r][j] = (int8_t)lo;
            t->q[r][j + 16] = (int8_t)hi;
            sum += lo + hi;
        }
        t->nsum[r] = -128 * sum;
        t->d[r] = d * (float)(ls - 32);
    }
}

void zl_tile_pack_w(int type, const uint8_t *w, int64_t stride, int nr, int64_t k, void *dst,
                    zl_tile_unpack_fn unpack_row) {
    const int64_t wb = zl_ggml_type_table[type].type_size;
    memset(dst, 0, (size_t)zl_tile_w_bytes(type, k));
    if (unpack_row != NULL) {
        int r = 0;
        while (r < nr && unpack_row(type, w + r * stride, k, dst, r)) r++;
        if (r == nr) return;
    }
    if (zl_tile_family(type) == ZL_TILE_K) {
        zl_ktile *t = (zl_ktile *)dst;
        for (int64_t i = 0; i < k / QK_K; i++, t++)
            for (int r = 0; r < nr; r++) {
                const uint8_t *b = w + r * stride + i * wb;
                switch (type) {
                case ZL_GGML_Q2_K: unpack_q2_k(b, t, r); break;
                case ZL_GGML_Q3_K: unpack_q3_k(b, t, r); break;
                case ZL_GGML_Q4_K: unpack_q4_k(b, t, r); break;
                case ZL_GGML_Q5_K: unpack_q5_k(b, t, r); break;
                default: unpack_q6_k(b, t, r);
                }
                for (int s = 0; s < 16; s++) t->sc32[r][s] = t->sc[r][s];
            }
    } else {
        zl_ltile *t = (zl_ltile *)dst;
        if (type == ZL_GGML_IQ4_XS) {
            for (int64_t i = 0; i < k / QK_K; i++, t += 8)
                for (int r = 0; r < nr; r++) unpack_iq4_xs(w + r * stride + i * wb, t, r);
        } else {
            for (int64_t i = 0; i < k / 32; i++, t++)
                for (int r = 0; r < nr; r++) unpack_legacy(type, w + r * stride + i * wb, t, r);
        }
    }
}

/* The 32 values of legacy block i of a quantized x row (*q) and their scale:
 * a Q8_0 block, or the i % 8-th 32 of a Q8_K block (IQ4_XS) under its d. */
static float legacy_x_block(int type, const uint8_t *row, int64_t i, const int8_t **q) {
    if (zl_act_of(type) == ZL_ACT_Q8_K) {
        const uint8_t *b = row + i / 8 * ZL_Q8_K_BYTES;
        *q = (const int8_t *)(b + 4 + 32 * (i % 8));
        return zl_load_f32(b);
    }
    const uint8_t *b = row + i * ZL_Q8_0_BYTES;
    *q = (const int8_t *)(b + 2);
    return zl_load_f16(b);
}

static int sum32(const int8_t *q) {
    int s = 0;
    for (int l = 0; l < 32; l++) s += q[l];
    return s;
}

void zl_tile_pack_x(int type, const uint8_t *xq, int64_t xq_bytes, int nr, int64_t k, void *dst) {
    if (zl_tile_family(type) == ZL_TILE_K) {
        zl_kxgroup *g = (zl_kxgroup *)dst;
        memset(g, 0, (size_t)zl_tile_x_bytes(type, k));
        for (int64_t i = 0; i < k / QK_K; i++, g++)
            for (int r = 0; r < nr; r++) {
                const uint8_t *b = xq + r * xq_bytes + i * ZL_Q8_K_BYTES;
                g->d[r] = zl_load_f32(b);
                memcpy(g->q[r], b + 4, QK_K);
                memcpy(g->bsums[r], b + 260, 32);
            }
    } else {
        zl_lxgroup *g = (zl_lxgroup *)dst;
        memset(g, 0, (size_t)zl_tile_x_bytes(type, k));
        const int mins = zl_tile_flags(type) & ZL_TILE_MINS;
        for (int64_t i = 0; i < k / 32; i++, g++)
            for (int r = 0; r < nr; r++) {
                const int8_t *q;
                g->d[r] = legacy_x_block(type, xq + r * xq_bytes, i, &q);
                memcpy(g->q[r], q, 32);
                if (mins) g->s[r] = g->d[r] * (float)sum32(q);
            }
    }
}

void zl_tile_pack_x8(int type, const uint8_t *xq, int64_t xq_bytes, int nr, int64_t k, void *dst) {
    if (zl_tile_family(type) == ZL_TILE_K) {
        zl_kxgroup8 *g = (zl_kxgroup8 *)dst;
        memset(g, 0, (size_t)zl_tile_x8_bytes(type, k));
        for (int64_t i = 0; i < k / QK_K; i++, g++)
            for (int r = 0; r < nr; r++) {
                const uint8_t *b = xq + r * xq_bytes + i * ZL_Q8_K_BYTES;
                g->d[r] = zl_load_f32(b);
                for (int c = 0; c < QK_K / 4; c++) memcpy(g->q[c][r], b + 4 + 4 * c, 4);
                for (int p = 0; p < 8; p++) memcpy(g->bsums[p][r], b + 260 + 4 * p, 4);
            }
    } else {
        zl_lxgroup8 *g = (zl_lxgroup8 *)dst;
        memset(g, 0x80, (size_t)zl_tile_x8_bytes(type, k));
        const int mins = zl_tile_flags(type) & ZL_TILE_MINS;
        for (int64_t i = 0; i < k / 32; i++, g++) {
            for (int r = 0; r < 8; r++) g->d[r] = g->s[r] = 0.0f;
            for (int r = 0; r < nr; r++) {
                const int8_t *q;
                g->d[r] = legacy_x_block(type, xq + r * xq_bytes, i, &q);
                for (int c = 0; c < 8; c++)
                    for (int l = 0; l < 4; l++) g->q[c][r][l] = (uint8_t)(q[4 * c + l] ^ 0x80);
                if (mins) g->s[r] = g->d[r] * (float)sum32(q);
            }
        }
    }
}

/* ---- portable tile kernels ---- */

static void ktile_portable(int64_t nblocks, const zl_ktile *w, const void *vx, int flags,
                           float out[ZL_TILE_R][ZL_TILE_M_MAX]) {
    const zl_kxgroup *x = (const zl_kxgroup *)vx;
    float acc[ZL_TILE_R][ZL_TILE_M] = {{0}};
    for (int64_t b = 0; b < nblocks; b++, w++, x++)
        for (int r = 0; r < ZL_TILE_R; r++)
            for (int i = 0; i < ZL_TILE_M; i++) {
                int isum = 0, msum = 0;
                for (int s = 0; s < 16; s++) {
                    int t = 0;
                    for (int l = 0; l < 16; l++) t += w->q[r][16 * s + l] * x->q[i][16 * s + l];
                    isum += w->sc[r][s] * t + w->nbias[r][s] * x->bsums[i][s];
                    msum += w->mins[r][s] * x->bsums[i][s];
                }
                acc[r][i] += (w->d[r] * x->d[i]) * (float)isum;
                if (flags & ZL_TILE_MINS) acc[r][i] += (-w->dmin[r] * x->d[i]) * (float)msum;
            }
    for (int r = 0; r < ZL_TILE_R; r++) memcpy(out[r], acc[r], sizeof(acc[r]));
}

static void ltile_portable(int64_t nblocks, const zl_ltile *w, const void *vx, int flags,
                           float out[ZL_TILE_R][ZL_TILE_M_MAX]) {
    const zl_lxgroup *x = (const zl_lxgroup *)vx;
    float acc[ZL_TILE_R][ZL_TILE_M] = {{0}};
    for (int64_t b = 0; b < nblocks; b++, w++, x++)
        for (int r = 0; r < ZL_TILE_R; r++)
            for (int i = 0; i < ZL_TILE_M; i++) {
                int isum = 0;
                for (int l = 0; l < 32; l++) isum += w->q[r][l] * x->q[i][l];
                acc[r][i] += (w->d[r] * x->d[i]) * (float)isum;
                if (flags & ZL_TILE_MINS) acc[r][i] += w->m[r] * x->s[i];
            }
    for (int r = 0; r < ZL_TILE_R; r++) memcpy(out[r], acc[r], sizeof(acc[r]));
}

const zl_tile_kernels zl_tile_portable = {ktile_portable, ltile_portable, ZL_TILE_M, zl_tile_pack_x,
                                          zl_tile_x_bytes, NULL, ZL_TILE_SET_PORTABLE};

/* ---- the driver ---- */

/* Bytes of decoded W tiles a chunk holds at a time: every x group passes over
 * them (from L2) before the next rows are decoded. Below glibc's mmap
 * threshold (128 KiB), so the chunk's buffer comes from the heap, not fresh
 * pages faulted in on every call. */
#define TILE_W_BUDGET (96 << 10)

static void *aligned_buffer(int64_t bytes) {
    return aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
}

static int64_t tile_runs[ZL_TILE_SET_COUNT];

int64_t zl_qgemm_tile_runs(int set) {
    return set >= 0 && set < ZL_TILE_SET_COUNT ? __atomic_load_n(&tile_runs[set], __ATOMIC_RELAXED) : 0;
}

int zl_qgemm_tile_setup(zl_qgemm_job *j, const zl_tile_kernels *kernels) {
    __atomic_fetch_add(&tile_runs[kernels->id], 1, __ATOMIC_RELAXED);
    j->tiles = kernels;
    j->xgroup_bytes = kernels->x_bytes(j->w.type, j->w.cols);
    j->ngroups = (j->m + kernels->xrows - 1) / kernels->xrows;
    j->xpack = (uint8_t *)aligned_buffer(j->ngroups * j->xgroup_bytes);
    if (j->xpack == NULL) return 1;
    for (int64_t g = 0; g < j->ngroups; g++) {
        const int64_t i0 = g * kernels->xrows;
        const int nr = (int)(j->m - i0 < kernels->xrows ? j->m - i0 : kernels->xrows);
        kernels->pack_x(j->w.type, j->xq + i0 * j->xq_bytes, j->xq_bytes, nr, j->w.cols,
                        j->xpack + g * j->xgroup_bytes);
    }
    return 0;
}

int zl_qgemm_tile_chunk(void *vjob, int64_t begin, int64_t end) {
    const zl_qgemm_job *j = (const zl_qgemm_job *)vjob;
    int64_t r0, r1;
    zl_qgemm_chunk_rows(j, begin, end, &r0, &r1);
    if (r1 <= r0) return 0;
    const int type = j->w.type, k4 = zl_tile_family(type) == ZL_TILE_K, flags = zl_tile_flags(type);
    const int64_t k = j->w.cols, nblocks = k4 ? k / QK_K : k / 32;
    const int64_t wbytes = zl_tile_w_bytes(type, k);
    int64_t ntiles = TILE_W_BUDGET / wbytes;
    if (ntiles < 1) ntiles = 1;
    if (ntiles > (r1 - r0 + ZL_TILE_R - 1) / ZL_TILE_R) ntiles = (r1 - r0 + ZL_TILE_R - 1) / ZL_TILE_R;
    uint8_t *wpack = (uint8_t *)aligned_buffer(ntiles * wbytes);
    if (wpack == NULL) return 1;
    float out[ZL_TILE_R][ZL_TILE_M_MAX];
    const int64_t xrows = j->tiles->xrows;
    for (int64_t r = r0; r < r1; r += ntiles * ZL_TILE_R) {
        const int64_t rows = (r1 - r < ntiles * ZL_TILE_R) ? r1 - r : ntiles * ZL_TILE_R;
        const int64_t nt = (rows + ZL_TILE_R - 1) / ZL_TILE_R;
        for (int64_t t = 0; t < nt; t++) {
            const int64_t nr = rows - t * ZL_TILE_R < ZL_TILE_R ? rows - t * ZL_TILE_R : ZL_TILE_R;
            zl_tile_pack_w(type, j->w.data + (r + t * ZL_TILE_R) * j->w.row_stride, j->w.row_stride, (int)nr, k,
                           wpack + t * wbytes, j->tiles->unpack_row);
        }
        for (int64_t g = 0; g < j->ngroups; g++) {
            const uint8_t *xg = j->xpack + g * j->xgroup_bytes;
            const int64_t i0 = g * xrows;
            const int64_t mi = j->m - i0 < xrows ? j->m - i0 : xrows;
            for (int64_t t = 0; t < nt; t++) {
                const uint8_t *wt = wpack + t * wbytes;
                if (k4)
                    j->tiles->k(nblocks, (const zl_ktile *)wt, xg, flags, out);
                else
                    j->tiles->legacy(nblocks, (const zl_ltile *)wt, xg, flags, out);
                const int64_t rt = r + t * ZL_TILE_R;
                const int64_t nr = rows - t * ZL_TILE_R < ZL_TILE_R ? rows - t * ZL_TILE_R : ZL_TILE_R;
                for (int64_t i = 0; i < mi; i++)
                    for (int64_t q = 0; q < nr; q++) j->y[(i0 + i) * j->ldy + rt + q] = out[q][i];
            }
        }
    }
    free(wpack);
    return 0;
}

/* Below this many x rows the blocked GEMV wins: a tile's x group would be
 * mostly padding and W's decoding would not pay for itself. */
#define TILE_MIN_M 4

const zl_tile_kernels *zl_qgemm_tiles_for(int type, int64_t m, int path) {
    if (m < TILE_MIN_M || zl_tile_family(type) == ZL_TILE_NONE) return NULL;
#if ZL_X86
    if (path == ZL_QPATH_AVX2 || path == ZL_QPATH_AVX_VNNI) return &zl_tile_avx2;
    if (path == ZL_QPATH_AVX512_VNNI) return &zl_tile_avx512_vnni;
#endif
    (void)path;
    return &zl_tile_portable;
}
