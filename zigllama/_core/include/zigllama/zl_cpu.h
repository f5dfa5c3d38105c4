/* Run-time CPU feature detection and the choice of SIMD path.
 *
 * The package is compiled for baseline x86-64 (no -march=native). A kernel that
 * wants AVX2, FMA or F16C is compiled with ZL_TARGET_AVX2, one that wants AVX-512
 * with ZL_TARGET_AVX512, and is chosen at run time when zl_cpu_has_avx2() /
 * zl_cpu_has_avx512() say the CPU and the OS (XCR0, read with XGETBV: the OS saves
 * the YMM, opmask and ZMM registers on a context switch) support it.
 *
 * The environment picks a lower path, so every fallback is testable on any machine:
 *   ZIGLLAMA_SIMD=portable|avx2|avx512  the widest path allowed (never more than the
 *                                       CPU supports; an unknown value is ignored)
 *   ZIGLLAMA_DISABLE_SIMD=1             the same as ZIGLLAMA_SIMD=portable
 * Both are read once per extension module (the answer is cached).
 */
#ifndef ZIGLLAMA_ZL_CPU_H
#define ZIGLLAMA_ZL_CPU_H

#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__x86_64__) || defined(__i386__)
#define ZL_X86 1
#define ZL_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ZL_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define ZL_TARGET_AVX512_VNNI \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define ZL_HAVE_AVX_VNNI_TARGET 1 /* the compiler knows "avxvnni" */
#define ZL_TARGET_AVX_VNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
#else
#define ZL_HAVE_AVX_VNNI_TARGET 0
#define ZL_TARGET_AVX_VNNI ZL_TARGET_AVX2
#endif
#else
#define ZL_HAVE_AVX_VNNI_TARGET 0
#define ZL_X86 0
#define ZL_TARGET_AVX2
#define ZL_TARGET_AVX512
#define ZL_TARGET_AVX512_VNNI
#define ZL_TARGET_AVX_VNNI
#endif

enum {
    ZL_CPU_SSE42 = 1 << 0,
    ZL_CPU_AVX = 1 << 1,
    ZL_CPU_AVX2 = 1 << 2,
    ZL_CPU_FMA = 1 << 3,
    ZL_CPU_F16C = 1 << 4,
    ZL_CPU_AVX512F = 1 << 5,
    ZL_CPU_AVX512BW = 1 << 6,
    ZL_CPU_AVX512VL = 1 << 7,
    ZL_CPU_AVX512DQ = 1 << 8,
    ZL_CPU_AVX512VNNI = 1 << 9,
    ZL_CPU_AVXVNNI = 1 << 10,
    ZL_CPU_OS_AVX = 1 << 11,    /* XCR0 has SSE and YMM state */
    ZL_CPU_OS_AVX512 = 1 << 12, /* XCR0 also has opmask, ZMM0-15 upper halves, ZMM16-31 */
    ZL_CPU_AVX512BITALG = 1 << 13, /* vpshufbitqmb, vpopcntb/w (Ice Lake, Zen 4 on) */
};

/* The SIMD paths, narrowest first. */
enum { ZL_SIMD_PORTABLE = 0, ZL_SIMD_AVX2 = 1, ZL_SIMD_AVX512 = 2 };

#if ZL_X86 && (defined(__GNUC__) || defined(__clang__))
static inline void zl_cpuid(unsigned int leaf, unsigned int sub, unsigned int r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* XCR0 (only call when CPUID says OSXSAVE). The raw encoding of xgetbv needs no
 * target attribute. */
static inline unsigned long long zl_xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

/* Bit set of ZL_CPU_* flags the running CPU supports (ignores the environment):
 * an instruction set counts when CPUID lists it and XCR0 says the OS saves its
 * registers (the ZL_CPU_OS_* flags). */
static inline int zl_cpu_features(void) {
    int f = 0;
#if ZL_X86 && (defined(__GNUC__) || defined(__clang__))
    unsigned int r[4];
    zl_cpuid(0, 0, r);
    unsigned int max_leaf = r[0];
    zl_cpuid(1, 0, r);
    unsigned int ecx1 = r[2];
    if (ecx1 & (1u << 20)) f |= ZL_CPU_SSE42;
    if (ecx1 & (1u << 28)) f |= ZL_CPU_AVX;
    if (ecx1 & (1u << 12)) f |= ZL_CPU_FMA;
    if (ecx1 & (1u << 29)) f |= ZL_CPU_F16C;
    if (ecx1 & (1u << 27)) { /* OSXSAVE: XGETBV is usable */
        unsigned long long xcr0 = zl_xgetbv0();
        if ((xcr0 & 0x6) == 0x6) f |= ZL_CPU_OS_AVX;
        if ((xcr0 & 0xE6) == 0xE6) f |= ZL_CPU_OS_AVX512;
    }
    if (max_leaf >= 7) {
        zl_cpuid(7, 0, r);
        unsigned int ebx7 = r[1], ecx7 = r[2], max_sub = r[0];
        if (ebx7 & (1u << 5)) f |= ZL_CPU_AVX2;
        if (ebx7 & (1u << 16)) f |= ZL_CPU_AVX512F;
        if (ebx7 & (1u << 17)) f |= ZL_CPU_AVX512DQ;
        if (ebx7 & (1u << 30)) f |= ZL_CPU_AVX512BW;
        if (ebx7 & (1u << 31)) f |= ZL_CPU_AVX512VL;
        if (ecx7 & (1u << 11)) f |= ZL_CPU_AVX512VNNI;
        if (ecx7 & (1u << 12)) f |= ZL_CPU_AVX512BITALG;
        if (max_sub >= 1) {
            zl_cpuid(7, 1, r);
            if (r[0] & (1u << 4)) f |= ZL_CPU_AVXVNNI;
        }
    }
    /* As the Linux kernel (and libgcc) do: an instruction set whose registers the
     * OS does not save is not there. */
    if (!(f & ZL_CPU_OS_AVX)) f &= ~(ZL_CPU_AVX | ZL_CPU_AVX2 | ZL_CPU_FMA | ZL_CPU_F16C | ZL_CPU_AVXVNNI);
    if (!(f & ZL_CPU_OS_AVX512))
        f &= ~(ZL_CPU_AVX512F | ZL_CPU_AVX512BW | ZL_CPU_AVX512VL | ZL_CPU_AVX512DQ | ZL_CPU_AVX512VNNI |
               ZL_CPU_AVX512BITALG);
#endif
    return f;
}

/* The widest path the environment allows: ZIGLLAMA_SIMD, else ZIGLLAMA_DISABLE_SIMD. */
static inline int zl_simd_env_limit(void) {
    const char *s = getenv("ZIGLLAMA_SIMD");
    if (s != NULL) {
        if (strcmp(s, "portable") == 0) return ZL_SIMD_PORTABLE;
        if (strcmp(s, "avx2") == 0) return ZL_SIMD_AVX2;
        if (strcmp(s, "avx512") == 0) return ZL_SIMD_AVX512;
    }
    s = getenv("ZIGLLAMA_DISABLE_SIMD");
    if (s != NULL && s[0] != '\0' && !(s[0] == '0' && s[1] == '\0')) return ZL_SIMD_PORTABLE;
    return ZL_SIMD_AVX512;
}

/* True when the environment forces the portable kernels. */
static inline int zl_simd_disabled(void) { return zl_simd_env_limit() == ZL_SIMD_PORTABLE; }

/* zl_cpu_features(), asked once (CPUID traps to the hypervisor in a VM: slow). */
static inline int zl_cpu_features_cached(void) {
    static int cached = -1;
    if (cached < 0) cached = zl_cpu_features();
    return cached;
}

/* The widest path the CPU and OS support, ignoring the environment. */
static inline int zl_simd_supported(void) {
    int f = zl_cpu_features_cached();
    int avx2 = ZL_CPU_AVX | ZL_CPU_AVX2 | ZL_CPU_FMA | ZL_CPU_F16C | ZL_CPU_OS_AVX;
    int avx512 = avx2 | ZL_CPU_AVX512F | ZL_CPU_AVX512BW | ZL_CPU_AVX512VL | ZL_CPU_AVX512DQ | ZL_CPU_OS_AVX512;
    if ((f & avx512) == avx512) return ZL_SIMD_AVX512;
    if ((f & avx2) == avx2) return ZL_SIMD_AVX2;
    return ZL_SIMD_PORTABLE;
}

/* The path in use: the narrower of what is supported and what the environment allows. */
static inline int zl_simd_level(void) {
    static int cached = -1;
    if (cached < 0) {
        int supported = zl_simd_supported(), limit = zl_simd_env_limit();
        cached = supported < limit ? supported : limit;
    }
    return cached;
}

/* True when the AVX2+FMA+F16C kernels may run: supported and allowed. */
static inline int zl_cpu_has_avx2(void) { return zl_simd_level() >= ZL_SIMD_AVX2; }

/* True when the AVX-512 F+BW+VL+DQ kernels may run (the OS saves the ZMM state). */
static inline int zl_cpu_has_avx512(void) { return zl_simd_level() >= ZL_SIMD_AVX512; }

/* AVX-512 VNNI (vpdpbusd on ZMM), within the AVX-512 path. */
static inline int zl_cpu_has_avx512_vnni(void) {
    return zl_cpu_has_avx512() && (zl_cpu_features_cached() & ZL_CPU_AVX512VNNI) != 0;
}

/* AVX-512 BITALG (vpshufbitqmb: 64 bits picked into a mask by byte indices),
 * within the AVX-512 path. */
static inline int zl_cpu_has_avx512_bitalg(void) {
    return zl_cpu_has_avx512() && (zl_cpu_features_cached() & ZL_CPU_AVX512BITALG) != 0;
}

/* AVX-VNNI (the VEX-encoded vpdpbusd on YMM), within the AVX2 path. */
static inline int zl_cpu_has_avx_vnni(void) {
    return zl_cpu_has_avx2() && (zl_cpu_features_cached() & ZL_CPU_AVXVNNI) != 0;
}

/* The name of the path in use, as show_config() reports it. */
static inline const char *zl_simd_name(void) {
    switch (zl_simd_level()) {
    case ZL_SIMD_AVX512: return "avx512";
    case ZL_SIMD_AVX2: return "avx2";
    default: return "portable";
    }
}

#ifdef __cplusplus
}
#endif

#endif
