import os

import pytest
from hypothesis import HealthCheck, settings

# A shared 2-core machine: no deadlines (timing is for benchmarks/), bounded examples.
settings.register_profile(
    "ci", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile(os.environ.get("ZIGLLAMA_HYPOTHESIS_PROFILE", "ci"))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def repo_root():
    return REPO


def kernel_cpu_flags():
    """The CPU flags the kernel reports in /proc/cpuinfo: an oracle independent of the
    package's own CPUID probe (the kernel drops AVX flags the OS does not save)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    raise RuntimeError("/proc/cpuinfo has no flags line")


SIMD_PATHS = ("portable", "avx2", "avx512")


def kernel_simd_paths():
    """The SIMD paths the kernel's CPU flags allow, narrowest first."""
    flags = kernel_cpu_flags()
    paths = ["portable"]
    if {"avx", "avx2", "fma", "f16c"} <= flags:
        paths.append("avx2")
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            paths.append("avx512")
    return paths


def expected_simd_path():
    """The path the kernels should take in this process: the widest the CPU allows,
    capped by ZIGLLAMA_SIMD (a known name) or else ZIGLLAMA_DISABLE_SIMD."""
    import os

    supported = kernel_simd_paths()
    request = os.environ.get("ZIGLLAMA_SIMD", "")
    if request in SIMD_PATHS:
        cap = SIMD_PATHS.index(request)
    elif os.environ.get("ZIGLLAMA_DISABLE_SIMD", "") not in ("", "0"):
        cap = 0
    else:
        cap = len(SIMD_PATHS) - 1
    return supported[min(cap, len(supported) - 1)]


def other_simd_paths():
    """The paths this CPU supports besides this process's: tests rerun on each."""
    return [p for p in kernel_simd_paths() if p != expected_simd_path()]
