/* Tensor element types, the C view of a tensor, and the half-precision conversions.
 *
 * The dtype codes are ggml's type ids (GGML_TYPE_F32 = 0, F16 = 1, I8 = 24, I32 = 26,
 * F64 = 28, BF16 = 30), so a GGUF tensor's type field names its zigllama dtype.
 *
 * The float16 conversions reproduce numpy's (npy_floatbits_to_halfbits and friends)
 * bit for bit, NaN payloads included; the bfloat16 ones reproduce ggml's
 * (ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet).
 */
#ifndef ZIGLLAMA_ZL_TENSOR_H
#define ZIGLLAMA_ZL_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum zl_dtype {
    ZL_F32 = 0,
    ZL_F16 = 1,
    ZL_I8 = 24,
    ZL_I32 = 26,
    ZL_F64 = 28,
    ZL_BF16 = 30
} zl_dtype;

/* What a nogil tensor kernel returns (the *_status functions of tensor.pxd); the
 * module's one checked wrapper, check_tensor_status, turns it into an exception. */
typedef enum zl_tensor_status {
    ZL_TENSOR_OK = 0,
    ZL_TENSOR_ESHAPE = -1,   /* shapes that do not broadcast or do not fit the output */
    ZL_TENSOR_EDTYPE = -2,   /* operands (or output) of different dtypes */
    ZL_TENSOR_ENOMEM = -3,   /* the matmul backend found no memory for its buffers */
    ZL_TENSOR_EBACKEND = -4  /* the matmul backend rejected the call */
} zl_tensor_status;

/* The most dimensions a tensor may have (ggml uses 4). */
#define ZL_MAX_DIMS 8

/* What a kernel needs to walk a tensor: shape and byte strides, row-major. */
typedef struct zl_tensor_view {
    char *data;
    int dtype;
    int ndim;
    ptrdiff_t itemsize;
    ptrdiff_t shape[ZL_MAX_DIMS];
    ptrdiff_t strides[ZL_MAX_DIMS]; /* in bytes; may be 0 (broadcast) or negative */
} zl_tensor_view;

/* Storage-only 16-bit floats: distinct C types, so fused kernels specialise on them. */
typedef struct zl_f16 { uint16_t bits; } zl_f16;
typedef struct zl_bf16 { uint16_t bits; } zl_bf16;

/* Bytes per element, or 0 for an unknown code. */
static inline ptrdiff_t zl_dtype_itemsize(int dtype) {
    switch (dtype) {
    case ZL_F32: case ZL_I32: return 4;
    case ZL_F64: return 8;
    case ZL_F16: case ZL_BF16: return 2;
    case ZL_I8: return 1;
    default: return 0;
    }
}

static inline uint32_t zl_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float zl_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint64_t zl_f64_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

/* float32 -> float16, round to nearest even (numpy's npy_floatbits_to_halfbits). */
static inline uint16_t zl_f32_to_f16_bits(float value) {
    uint32_t f = zl_f32_bits(value);
    uint32_t f_exp, f_sig;
    uint16_t h_sgn = (uint16_t)((f & 0x80000000u) >> 16), h_sig;
    f_exp = f & 0x7f800000u;
    if (f_exp >= 0x47800000u) { /* overflow, inf or NaN */
        if (f_exp == 0x7f800000u && (f & 0x007fffffu) != 0) {
            uint16_t ret = (uint16_t)(0x7c00u + ((f & 0x007fffffu) >> 13));
            if (ret == 0x7c00u) ret++; /* keep it a NaN */
            return (uint16_t)(h_sgn + ret);
        }
        return (uint16_t)(h_sgn + 0x7c00u);
    }
    if (f_exp <= 0x38000000u) { /* subnormal half or signed zero */
        if (f_exp < 0x33000000u) return h_sgn;
        f_exp >>= 23;
        f_sig = 0x00800000u + (f & 0x007fffffu);
        f_sig >>= (113 - f_exp);
        /* round half to even; the shift may have dropped sticky bits, so look at f too */
        if (((f_sig & 0x00003fffu) != 0x00001000u) || (f & 0x000007ffu)) f_sig += 0x00001000u;
        h_sig = (uint16_t)(f_sig >> 13);
        return (uint16_t)(h_sgn + h_sig);
    }
    {
        uint16_t h_exp = (uint16_t)((f_exp - 0x38000000u) >> 13);
        f_sig = f & 0x007fffffu;
        if ((f_sig & 0x00003fffu) != 0x00001000u) f_sig += 0x00001000u;
        h_sig = (uint16_t)(f_sig >> 13);
        /* a carry out of the significand bumps the exponent: still correct */
        return (uint16_t)(h_sgn + (uint16_t)(h_sig + h_exp));
    }
}

/* float64 -> float16 directly, not through float32 (numpy's npy_doublebits_to_halfbits):
 * rounding twice could differ from rounding once. */
static inline uint16_t zl_f64_to_f16_bits(double value) {
    uint64_t d = zl_f64_bits(value);
    uint64_t d_exp, d_sig;
    uint16_t h_sgn = (uint16_t)((d & 0x8000000000000000ULL) >> 48), h_sig;
    d_exp = d & 0x7ff0000000000000ULL;
    if (d_exp >= 0x40f0000000000000ULL) {
        if (d_exp == 0x7ff0000000000000ULL && (d & 0x000fffffffffffffULL) != 0) {
            uint16_t ret = (uint16_t)(0x7c00u + ((d & 0x000fffffffffffffULL) >> 42));
            if (ret == 0x7c00u) ret++;
            return (uint16_t)(h_sgn + ret);
        }
        return (uint16_t)(h_sgn + 0x7c00u);
    }
    if (d_exp <= 0x3f00000000000000ULL) {
        if (d_exp < 0x3e60000000000000ULL) return h_sgn;
        d_exp >>= 52;
        d_sig = 0x0010000000000000ULL + (d & 0x000fffffffffffffULL);
        d_sig <<= (d_exp - 998); /* keep the sticky bits in range */
        if ((d_sig & 0x003fffffffffffffULL) != 0x0010000000000000ULL) d_sig += 0x0010000000000000ULL;
        h_sig = (uint16_t)(d_sig >> 53);
        return (uint16_t)(h_sgn + h_sig);
    }
    {
        uint16_t h_exp = (uint16_t)((d_exp - 0x3f00000000000000ULL) >> 42);
        d_sig = d & 0x000fffffffffffffULL;
        if ((d_sig & 0x000007ffffffffffULL) != 0x0000020000000000ULL) d_sig += 0x0000020000000000ULL;
        h_sig = (uint16_t)(d_sig >> 42);
        return (uint16_t)(h_sgn + (uint16_t)(h_sig + h_exp));
    }
}

/* float16 -> float32, exact (numpy's npy_halfbits_to_floatbits). */
static inline float zl_f16_bits_to_f32(uint16_t h) {
    uint16_t h_exp = h & 0x7c00u, h_sig;
    uint32_t f_sgn = ((uint32_t)h & 0x8000u) << 16, f_exp, f_sig;
    switch (h_exp) {
    case 0x0000u: /* zero or subnormal: normalise */
        h_sig = h & 0x03ffu;
        if (h_sig == 0) return zl_bits_f32(f_sgn);
        h_sig <<= 1;
        while ((h_sig & 0x0400u) == 0) { h_sig <<= 1; h_exp++; }
        f_exp = ((uint32_t)(127 - 15 - h_exp)) << 23;
        f_sig = ((uint32_t)(h_sig & 0x03ffu)) << 13;
        return zl_bits_f32(f_sgn + f_exp + f_sig);
    case 0x7c00u: /* inf or NaN, payload kept */
        return zl_bits_f32(f_sgn + 0x7f800000u + (((uint32_t)(h & 0x03ffu)) << 13));
    default:
        return zl_bits_f32(f_sgn + (((uint32_t)(h & 0x7fffu) + 0x1c000u) << 13));
    }
}

/* float16 -> float64, exact, NaN payloads kept as they are (numpy's
 * npy_halfbits_to_doublebits; a float32 -> float64 conversion would quiet them). */
static inline double zl_f16_bits_to_f64(uint16_t h) {
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0) {
        uint64_t d = (((uint64_t)h & 0x8000u) << 48) + 0x7ff0000000000000ULL
                     + (((uint64_t)(h & 0x03ffu)) << 42);
        double r;
        memcpy(&r, &d, 8);
        return r;
    }
    return (double)zl_f16_bits_to_f32(h);
}

/* float32 -> bfloat16, round to nearest even, NaN forced quiet (ggml's). */
static inline uint16_t zl_f32_to_bf16_bits(float value) {
    uint32_t u = zl_f32_bits(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

/* bfloat16 -> float32, exact. */
static inline float zl_bf16_bits_to_f32(uint16_t b) { return zl_bits_f32((uint32_t)b << 16); }

#ifdef __cplusplus
}
#endif

#endif
