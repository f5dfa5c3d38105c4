# What the build and the running CPU provide. Kernels ask here, once per call,
# which path to take; `zigllama.show_config()` reports it.

cdef extern from "zigllama/zl_cpu.h" nogil:
    int ZL_CPU_SSE42, ZL_CPU_AVX, ZL_CPU_AVX2, ZL_CPU_FMA, ZL_CPU_F16C, ZL_CPU_AVX512F
    int zl_cpu_features() noexcept
    int zl_cpu_has_avx2() noexcept
    int zl_simd_disabled() noexcept

cdef extern from "zigllama/zl_omp.h" nogil:
    int zl_omp_max_threads() noexcept
    int zl_omp_version() noexcept
