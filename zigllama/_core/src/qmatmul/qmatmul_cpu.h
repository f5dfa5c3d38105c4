/* VNNI detection for the quantized kernels until zl_cpu.h carries it. */
#ifndef ZIGLLAMA_QMATMUL_CPU_H
#define ZIGLLAMA_QMATMUL_CPU_H

#include "zigllama/zl_cpu.h"

static inline int zl_q_cpu_avx512_vnni(void) {
#if ZL_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

static inline int zl_q_cpu_avx_vnni(void) {
#if ZL_X86 && (defined(__GNUC__) || defined(__clang__))
    /* CPUID leaf 7, subleaf 1, EAX bit 4 (older compilers have no "avxvnni" name). */
    unsigned int a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    if (a < 7) return 0;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
    return (a >> 4) & 1;
#else
    return 0;
#endif
}

#endif
