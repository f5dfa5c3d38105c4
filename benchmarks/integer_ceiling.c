/* The integer ceiling of a quantized GEMV: the least work any integer GEMV of a
 * format must do on this SIMD path, timed on the same bytes as qgemm.
 *
 * Per 32 weights of a row: W's bytes loaded once, split into one byte per value
 * (nibbles, the fifth or the 2 high bits, as the format packs them), one
 * unsigned x signed byte multiply-add against x (vpdpbusd with AVX-512 VNNI or
 * AVX-VNNI, maddubs + madd on AVX2) into an int32 vector. Per block of a row:
 * its f16 scale broadcast and converted, times x's float scale, the int32 sums
 * converted and multiply-added into the row's float sums. Four rows go through
 * the block loop together, sharing x's loads (x stays in L1, quantized once
 * beforehand, as the ggml column's is); Q4_0 and Q5_0 put two rows' 16 bytes
 * of nibbles in one vector, as qgemm's kernels do, so a block's scale, int32 to
 * float conversion and multiply-add serve two rows. One prefetch per 64 bytes
 * of W, 16 KiB ahead, as qgemm's kernels issue. Rows are split into the chunks
 * qgemm makes, run by zigllama's own pool (its zl_parallel_for, passed in).
 *
 * Q8_0, Q4_0 and Q5_0 compute the true product (the offset of their unsigned
 * form, -128, -8 or -16 times x's block sum, starts each block's int32 sums: x
 * is shared, so that costs nothing per row). The K-quants leave out their
 * sub-block scales (and Q4_K its mins, Q6_K its -32): every value of a block
 * is summed with the block's one scale. Compiled at run time with the flags
 * of zigllama's active kernel path (bench_qmatmul.py). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DPBUSD(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define VNNI 1
#elif defined(__AVXVNNI__)
#define DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#define VNNI 1
#else
#define DPBUSD(acc, u, s) \
    _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#define VNNI 0
#endif

#define PREFETCH_AHEAD 16384

static inline uint16_t load_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t load_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* The block's f16 scale in every lane, times x's. */
static inline __m256 scale(const uint8_t *d, __m256 dx) {
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16((short)load_u16(d))), dx);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum_half(__m256 v, int half) {
    __m128 s = half ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Rows a and b's f16 scales: a's in the low four lanes, b's in the high four, times x's. */
static inline __m256 pair_scale(const uint8_t *a, const uint8_t *b, __m256 dx) {
    const __m128i h = _mm_blend_epi32(_mm_set1_epi16((short)load_u16(a)), _mm_set1_epi16((short)load_u16(b)), 0xC);
    return _mm256_mul_ps(_mm256_cvtph_ps(h), dx);
}

/* Two rows' 16 bytes of nibbles (at a and b) as two vectors of byte values:
 * lo holds values 0..15 of a, then of b; hi values 16..31 of each. */
static inline void pair_nibbles(const uint8_t *a, const uint8_t *b, __m256i *lo, __m256i *hi) {
    const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                              _mm_loadu_si128((const __m128i *)b), 1);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    *lo = _mm256_and_si256(q, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
}

/* 16 added to byte j where bit j of h is set (Q5_0's fifth bits). */
static inline __m256i add_bit4(__m256i v, uint32_t h) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    return _mm256_mask_add_epi8(v, (__mmask32)h, v, _mm256_set1_epi8(16));
#else
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), spread);
    return _mm256_or_si256(v, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit),
                                               _mm256_set1_epi8(16)));
#endif
}

/* int32 sums of rows a and b's unsigned values times x (xlo: x's values 0..15
 * in both halves, xhi: 16..31), from `init`. */
static inline __m256i pair_q4_0(const uint8_t *a, const uint8_t *b, __m256i xlo, __m256i xhi, __m256i init) {
    __m256i lo, hi;
    pair_nibbles(a + 2, b + 2, &lo, &hi);
    return DPBUSD(DPBUSD(init, lo, xlo), hi, xhi);
}
static inline __m256i pair_q5_0(const uint8_t *a, const uint8_t *b, __m256i xlo, __m256i xhi, __m256i init) {
    __m256i lo, hi;
    pair_nibbles(a + 6, b + 6, &lo, &hi);
    lo = add_bit4(lo, (uint32_t)load_u16(a + 2) | (uint32_t)load_u16(b + 2) << 16);
    hi = add_bit4(hi, (uint32_t)load_u16(a + 4) | (uint32_t)load_u16(b + 4) << 16);
    return DPBUSD(DPBUSD(init, lo, xlo), hi, xhi);
}

#define PREFETCH_STEP(addr, bytes)                                                                        \
    for (int q_ = 0; q_ < ((bytes) + 63) / 64; q_++)                                                      \
        _mm_prefetch((const char *)(addr) + PREFETCH_AHEAD + 64 * q_, _MM_HINT_T1)

/* Rows [r0, r1) of a type with two rows to a vector; xq: k int8, xd: a float
 * per 32, xc: the int32 offset term per 32 (-offset * the block's x sum),
 * placed in lanes 0 and 4 (one per row of a pair). A last odd row is paired
 * with itself. */
#define PAIR_ROWS(name, wbytes)                                                                           \
    static void rows_##name(int64_t k, const uint8_t *w, int64_t stride, int64_t r0, int64_t r1,          \
                            const int8_t *xq, const float *xd, const int32_t *xc, float *y) {           \
        const int64_t nb = k / 32;                                                                      \
        for (int64_t r = r0; r < r1; r += 4) {                                                          \
            const int64_t n = r1 - r < 4 ? r1 - r : 4;                                                  \
            const uint8_t *w0 = w + r * stride;                                                         \
            const uint8_t *w1 = w0 + (n > 1 ? stride : 0), *w2 = w0 + (n > 2 ? 2 * stride : 0);         \
            const uint8_t *w3 = w0 + (n > 3 ? 3 * stride : 0);                                          \
            __m256 a01 = _mm256_setzero_ps(), a23 = a01;                                                \
            for (int64_t i = 0; i < nb; i++) {                                                          \
                PREFETCH_STEP(w + r * stride + 4 * i * (wbytes), 4 * (wbytes));                         \
                const __m128i *xp = (const __m128i *)(xq + 32 * i);                                     \
                const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp));                   \
                const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(xp + 1));               \
                const __m256i init = _mm256_setr_epi32(xc[i], 0, 0, 0, xc[i], 0, 0, 0);                 \
                const __m256 dx = _mm256_set1_ps(xd[i]);                                                \
                const __m256i p01 = pair_##name(w0, w1, xlo, xhi, init);                                \
                const __m256i p23 = pair_##name(w2, w3, xlo, xhi, init);                                \
                a01 = _mm256_fmadd_ps(pair_scale(w0, w1, dx), _mm256_cvtepi32_ps(p01), a01);            \
                a23 = _mm256_fmadd_ps(pair_scale(w2, w3, dx), _mm256_cvtepi32_ps(p23), a23);            \
                w0 += wbytes, w1 += wbytes, w2 += wbytes, w3 += wbytes;                                 \
            }                                                                                           \
            y[r] = hsum_half(a01, 0);                                                                   \
            if (n > 1) y[r + 1] = hsum_half(a01, 1);                                                    \
            if (n > 2) y[r + 2] = hsum_half(a23, 0);                                                    \
            if (n > 3) y[r + 3] = hsum_half(a23, 1);                                                    \
        }                                                                                               \
    }

PAIR_ROWS(q4_0, 18)
PAIR_ROWS(q5_0, 22)

/* Q8_0: 32 bytes fill a vector, one row to a vector. */
static inline __m256i dot_q8_0(const uint8_t *b, __m256i x, __m256i init) {
    const __m256i w = load256(b + 2);
#if VNNI
    return DPBUSD(init, _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)), x);   /* w + 128, unsigned */
#else
    (void)init;   /* maddubs would saturate on w + 128: |w| against x with w's sign */
    return DPBUSD(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
#endif
}

static void rows_q8_0(int64_t k, const uint8_t *w, int64_t stride, int64_t r0, int64_t r1, const int8_t *xq,
                      const float *xd, const int32_t *xc, float *y) {
    const int64_t nb = k / 32;
    for (int64_t r = r0; r < r1; r += 4) {
        const int64_t n = r1 - r < 4 ? r1 - r : 4;
        const uint8_t *w0 = w + r * stride;
        const uint8_t *w1 = w0 + (n > 1 ? stride : 0), *w2 = w0 + (n > 2 ? 2 * stride : 0);
        const uint8_t *w3 = w0 + (n > 3 ? 3 * stride : 0);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < nb; i++) {
            PREFETCH_STEP(w + r * stride + 4 * i * 34, 4 * 34);
            const __m256i x = load256(xq + 32 * i), init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(xc[i]));
            const __m256 dx = _mm256_set1_ps(xd[i]);
            a0 = _mm256_fmadd_ps(scale(w0, dx), _mm256_cvtepi32_ps(dot_q8_0(w0, x, init)), a0);
            a1 = _mm256_fmadd_ps(scale(w1, dx), _mm256_cvtepi32_ps(dot_q8_0(w1, x, init)), a1);
            a2 = _mm256_fmadd_ps(scale(w2, dx), _mm256_cvtepi32_ps(dot_q8_0(w2, x, init)), a2);
            a3 = _mm256_fmadd_ps(scale(w3, dx), _mm256_cvtepi32_ps(dot_q8_0(w3, x, init)), a3);
            w0 += 34, w1 += 34, w2 += 34, w3 += 34;
        }
        const __m256 s[4] = {a0, a1, a2, a3};
        for (int j = 0; j < n; j++) y[r + j] = hsum(s[j]);
    }
}

/* One 256-value K-quant block: int32 sums of all its values times x, one chain. */
static inline __m256i dot_q4_k(const uint8_t *b, const int8_t *x) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        const __m256i q = load256(b + 16 + 32 * j);
        acc = DPBUSD(acc, _mm256_and_si256(q, m4), load256(x + 64 * j));
        acc = DPBUSD(acc, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4), load256(x + 64 * j + 32));
    }
    return acc;
}

static inline __m256i dot_q6_k(const uint8_t *b, const int8_t *x) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 2; j++) {
        const __m256i b1 = load256(b + 64 * j), b2 = load256(b + 64 * j + 32), h = load256(b + 128 + 32 * j);
        const __m256i q0 = _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_slli_epi16(_mm256_and_si256(h, m2), 4));
        const __m256i q1 = _mm256_or_si256(_mm256_and_si256(b2, m4),
                                           _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(12)), 2));
        const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
                                           _mm256_and_si256(h, _mm256_set1_epi8(48)));
        const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                                           _mm256_srli_epi16(_mm256_and_si256(h, _mm256_set1_epi8((char)0xC0)), 2));
        acc = DPBUSD(acc, q0, load256(x + 128 * j));
        acc = DPBUSD(acc, q1, load256(x + 128 * j + 32));
        acc = DPBUSD(acc, q2, load256(x + 128 * j + 64));
        acc = DPBUSD(acc, q3, load256(x + 128 * j + 96));
    }
    return acc;
}

/* Four rows of a K-quant; d_at: the offset of the block's f16 scale d. */
#define K_ROWS(name, wbytes, d_at)                                                                       \
    static void rows_##name(int64_t k, const uint8_t *w, int64_t stride, int64_t r0, int64_t r1,          \
                            const int8_t *xq, const float *xd, const int32_t *xc, float *y) {           \
        (void)xc;                                                                                       \
        const int64_t nb = k / 256;                                                                     \
        for (int64_t r = r0; r < r1; r += 4) {                                                          \
            const int64_t n = r1 - r < 4 ? r1 - r : 4;                                                  \
            const uint8_t *w0 = w + r * stride;                                                         \
            const uint8_t *w1 = w0 + (n > 1 ? stride : 0), *w2 = w0 + (n > 2 ? 2 * stride : 0);         \
            const uint8_t *w3 = w0 + (n > 3 ? 3 * stride : 0);                                          \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                 \
            for (int64_t i = 0; i < nb; i++) {                                                          \
                PREFETCH_STEP(w + r * stride + 4 * i * (wbytes), 4 * (wbytes));                         \
                const int8_t *x = xq + 256 * i;                                                         \
                const __m256 dx = _mm256_set1_ps(xd[i]);                                                \
                a0 = _mm256_fmadd_ps(scale(w0 + (d_at), dx), _mm256_cvtepi32_ps(dot_##name(w0, x)), a0); \
                a1 = _mm256_fmadd_ps(scale(w1 + (d_at), dx), _mm256_cvtepi32_ps(dot_##name(w1, x)), a1); \
                a2 = _mm256_fmadd_ps(scale(w2 + (d_at), dx), _mm256_cvtepi32_ps(dot_##name(w2, x)), a2); \
                a3 = _mm256_fmadd_ps(scale(w3 + (d_at), dx), _mm256_cvtepi32_ps(dot_##name(w3, x)), a3); \
                w0 += wbytes, w1 += wbytes, w2 += wbytes, w3 += wbytes;                                 \
            }                                                                                           \
            const __m256 s[4] = {a0, a1, a2, a3};                                                       \
            for (int j = 0; j < n; j++) y[r + j] = hsum(s[j]);                                          \
        }                                                                                               \
    }

K_ROWS(q4_k, 144, 0)
K_ROWS(q6_k, 210, 208)

typedef void (*rows_fn)(int64_t, const uint8_t *, int64_t, int64_t, int64_t, const int8_t *, const float *,
                        const int32_t *, float *);

/* The kernel of a ggml type id, or NULL. */
void *ceiling_kernel(int type) {
    switch (type) {
    case 2: return (void *)rows_q4_0;
    case 6: return (void *)rows_q5_0;
    case 8: return (void *)rows_q8_0;
    case 12: return (void *)rows_q4_k;
    case 14: return (void *)rows_q6_k;
    default: return NULL;
    }
}

/* The ceiling's GEMV, split as qgemm splits a GEMV: `nchunks` contiguous row
 * ranges (whole quads of rows), run by zigllama's pool through its
 * zl_parallel_for, or here for one chunk. */
typedef int (*range_fn)(void *ctx, int64_t begin, int64_t end);
typedef int (*parallel_for_fn)(void *pool, int64_t n, int64_t grain, range_fn fn, void *ctx);

typedef struct {
    rows_fn fn;
    int64_t k, rows, stride, nchunks;
    const uint8_t *w;
    const int8_t *xq;
    const float *xd;
    const int32_t *xc;
    float *y;
} ceiling_job;

static int ceiling_chunk(void *ctx, int64_t begin, int64_t end) {
    const ceiling_job *j = (const ceiling_job *)ctx;
    const int64_t quads = (j->rows + 3) / 4;
    for (int64_t c = begin; c < end; c++) {
        const int64_t r0 = 4 * (quads * c / j->nchunks);
        int64_t r1 = 4 * (quads * (c + 1) / j->nchunks);
        if (r1 > j->rows) r1 = j->rows;
        if (r0 < r1) j->fn(j->k, j->w, j->stride, r0, r1, j->xq, j->xd, j->xc, j->y);
    }
    return 0;
}

int ceiling_gemv(void *fn, int64_t k, int64_t rows, const uint8_t *w, int64_t stride, const int8_t *xq,
                 const float *xd, const int32_t *xc, float *y, void *parallel_for, void *pool, int64_t nchunks) {
    if (nchunks < 1) nchunks = 1;
    ceiling_job j = {(rows_fn)fn, k, rows, stride, nchunks, w, xq, xd, xc, y};
    if (pool == NULL || nchunks == 1) return ceiling_chunk(&j, 0, nchunks);
    return ((parallel_for_fn)parallel_for)(pool, nchunks, 1, ceiling_chunk, &j);
}
