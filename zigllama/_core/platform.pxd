# What the build and the running CPU provide. Kernels ask here, once per call,
# which path to take; `zigllama.show_config()` reports it.

cdef extern from "zigllama/zl_cpu.h" nogil:
    int ZL_CPU_SSE42, ZL_CPU_AVX, ZL_CPU_AVX2, ZL_CPU_FMA, ZL_CPU_F16C, ZL_CPU_AVX512F
    int ZL_CPU_AVX512BW, ZL_CPU_AVX512VL, ZL_CPU_AVX512DQ, ZL_CPU_AVX512VNNI, ZL_CPU_AVXVNNI
    int ZL_CPU_OS_AVX, ZL_CPU_OS_AVX512
    int ZL_SIMD_PORTABLE, ZL_SIMD_AVX2, ZL_SIMD_AVX512
    int zl_cpu_features() noexcept
    int zl_cpu_has_avx2() noexcept
    int zl_cpu_has_avx512() noexcept
    int zl_cpu_has_avx512_vnni() noexcept
    int zl_cpu_has_avx_vnni() noexcept
    int zl_simd_disabled() noexcept
    int zl_simd_level() noexcept
    int zl_simd_supported() noexcept
    const char *zl_simd_name() noexcept

cdef extern from "zigllama/zl_omp.h" nogil:
    int zl_omp_max_threads() noexcept
    int zl_omp_version() noexcept
