"""Build and run-time platform facts: compiler, OpenMP, CPU features."""

cdef extern from *:
    """
    #ifndef __VERSION__
    #define __VERSION__ "unknown"
    #endif
    static const char *zl_compiler_version = __VERSION__;
    """
    const char *zl_compiler_version
    int ZL_HAVE_OPENMP


def compiler():
    """The C compiler version the extensions were built with."""
    return zl_compiler_version.decode("ascii", "replace")


def openmp():
    """(built with OpenMP, OpenMP version macro, omp_get_max_threads())."""
    return bool(ZL_HAVE_OPENMP), zl_omp_version(), zl_omp_max_threads()


def cpu_features():
    """The SIMD features of the running CPU, as a dict of name -> bool."""
    cdef int f = zl_cpu_features()
    return {
        "sse4.2": bool(f & ZL_CPU_SSE42),
        "avx": bool(f & ZL_CPU_AVX),
        "avx2": bool(f & ZL_CPU_AVX2),
        "fma": bool(f & ZL_CPU_FMA),
        "f16c": bool(f & ZL_CPU_F16C),
        "avx512f": bool(f & ZL_CPU_AVX512F),
    }


def simd_kernels():
    """True when the AVX2/FMA/F16C kernels are in use (CPU support, not disabled)."""
    return bool(zl_cpu_has_avx2())


def simd_disabled():
    """True when ZIGLLAMA_DISABLE_SIMD forces the portable kernels."""
    return bool(zl_simd_disabled())
