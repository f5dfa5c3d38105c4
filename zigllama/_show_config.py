"""The report behind ``zigllama.show_config()`` and ``zigllama topology``."""
import platform as _py_platform

from ._core import platform
from ._config import available_cpus, num_threads


def config_dict():
    """Build and run-time facts as a dict (JSON-serialisable)."""
    from . import __version__

    built_omp, omp_version, omp_threads = platform.openmp()
    info = {
        "version": __version__,
        "python": _py_platform.python_version(),
        "machine": _py_platform.machine(),
        "compiler": platform.compiler(),
        "openmp": {"built": built_omp, "version": omp_version, "max_threads": omp_threads},
        "cpu_features": platform.cpu_features(),
        "simd_kernels": platform.simd_path(),
        "simd": _simd_section(),
        "threads": {"setting": num_threads(), "available_cpus": available_cpus()},
    }
    for extra in _EXTRA_SECTIONS:
        info.update(extra())
    return info


def _simd_section():
    import os

    avx512_vnni, avx_vnni = platform.simd_vnni()
    return {
        "path": platform.simd_path(),
        "supported": ", ".join(platform.simd_supported_paths()),
        "ZIGLLAMA_SIMD": os.environ.get("ZIGLLAMA_SIMD", ""),
        "ZIGLLAMA_DISABLE_SIMD": os.environ.get("ZIGLLAMA_DISABLE_SIMD", ""),
        "avx512_vnni": avx512_vnni,
        "avx_vnni": avx_vnni,
    }


def _blas_section():
    from ._core.blas_config import BlasConfig

    return {"blas": BlasConfig.detect().as_dict()}


# Modules that arrive later (BLAS, threading) add sections here.
_EXTRA_SECTIONS = [_blas_section]


def _memory_mapping_section():
    from ._core.memory_mapping import mapping_config

    return {"memory_mapping": mapping_config()}


_EXTRA_SECTIONS.append(_memory_mapping_section)


def _threading_section():
    from ._core.thread_pool_config import ThreadPoolConfig

    config = ThreadPoolConfig.detect()
    return {"threading": dict(config.as_dict(), topology=config.topology.as_dict())}


_EXTRA_SECTIONS.append(_threading_section)


def _qmatmul_section():
    from ._core.qmatmul import qgemm_path, qgemm_paths

    return {"qmatmul": {"path": qgemm_path(), "supported_paths": ", ".join(qgemm_paths())}}


_EXTRA_SECTIONS.append(_qmatmul_section)


def config_lines():
    info = config_dict()
    lines = [f"zigllama {info['version']}"]

    def walk(d, indent):
        for k, v in d.items():
            if k == "version":
                continue
            if isinstance(v, dict):
                lines.append(f"{'  ' * indent}{k}:")
                walk(v, indent + 1)
            else:
                lines.append(f"{'  ' * indent}{k}: {v}")

    walk(info, 1)
    return lines
