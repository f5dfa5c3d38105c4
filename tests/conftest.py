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
