/* Run-time CPU feature detection.
 *
 * The package is compiled for baseline x86-64 (no -march=native). A kernel that
 * wants AVX2, FMA or F16C is compiled with ZL_TARGET_AVX2 and chosen at run time
 * when zl_cpu_has_avx2() says the CPU (and the OS, via XSAVE) supports it.
 * ZIGLLAMA_DISABLE_SIMD=1 in the environment forces the portable paths, so the
 * fallbacks are testable on any machine.
 */
#ifndef ZIGLLAMA_ZL_CPU_H
#define ZIGLLAMA_ZL_CPU_H

#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#define ZL_X86 1
#define ZL_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define ZL_X86 0
#define ZL_TARGET_AVX2
#endif

enum {
    ZL_CPU_SSE42 = 1 << 0,
    ZL_CPU_AVX = 1 << 1,
    ZL_CPU_AVX2 = 1 << 2,
    ZL_CPU_FMA = 1 << 3,
    ZL_CPU_F16C = 1 << 4,
    ZL_CPU_AVX512F = 1 << 5,
};

static inline int zl_simd_disabled(void) {
    const char *s = getenv("ZIGLLAMA_DISABLE_SIMD");
    return s != NULL && s[0] != '\0' && !(s[0] == '0' && s[1] == '\0');
}

/* Bit set of ZL_CPU_* flags the running CPU supports (ignores ZIGLLAMA_DISABLE_SIMD). */
static inline int zl_cpu_features(void) {
    int f = 0;
#if ZL_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= ZL_CPU_SSE42;
    if (__builtin_cpu_supports("avx")) f |= ZL_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= ZL_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= ZL_CPU_FMA;
    if (__builtin_cpu_supports("avx512f")) f |= ZL_CPU_AVX512F;
    /* GCC < 14 has no "f16c" name for __builtin_cpu_supports: ask CPUID leaf 1, ECX bit 29. */
    {
        unsigned int a, b, c, d;
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
        if (c & (1u << 29)) f |= ZL_CPU_F16C;
    }
#endif
    return f;
}

/* True when the AVX2+FMA+F16C kernels may run: supported and not disabled. */
static inline int zl_cpu_has_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        int need = ZL_CPU_AVX2 | ZL_CPU_FMA | ZL_CPU_F16C;
        cached = ((zl_cpu_features() & need) == need) && !zl_simd_disabled();
    }
    return cached;
}

#endif
