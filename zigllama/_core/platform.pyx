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
        "avx512bw": bool(f & ZL_CPU_AVX512BW),
        "avx512vl": bool(f & ZL_CPU_AVX512VL),
        "avx512dq": bool(f & ZL_CPU_AVX512DQ),
        "avx512_vnni": bool(f & ZL_CPU_AVX512VNNI),
        "avx_vnni": bool(f & ZL_CPU_AVXVNNI),
        "os_avx": bool(f & ZL_CPU_OS_AVX),
        "os_avx512": bool(f & ZL_CPU_OS_AVX512),
    }


_PATH_NAMES = {ZL_SIMD_PORTABLE: "portable", ZL_SIMD_AVX2: "avx2", ZL_SIMD_AVX512: "avx512"}


def simd_path():
    """The SIMD path the kernels take: "avx512", "avx2" or "portable" (the widest the
    CPU and OS support, narrowed by ZIGLLAMA_SIMD / ZIGLLAMA_DISABLE_SIMD)."""
    return zl_simd_name().decode("ascii")


def simd_supported_paths():
    """Every path this CPU can run, narrowest first (tests run each of them)."""
    cdef int top = zl_simd_supported()
    return [name for level, name in sorted(_PATH_NAMES.items()) if level <= top]


def simd_vnni():
    """(AVX-512 VNNI usable, AVX-VNNI usable) on the path in use."""
    return bool(zl_cpu_has_avx512_vnni()), bool(zl_cpu_has_avx_vnni())


def simd_kernels():
    """True when SIMD kernels (AVX2/FMA/F16C or wider) are in use (CPU support, not disabled)."""
    return bool(zl_cpu_has_avx2())


def simd_disabled():
    """True when ZIGLLAMA_DISABLE_SIMD forces the portable kernels."""
    return bool(zl_simd_disabled())
