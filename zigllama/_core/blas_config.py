"""What really runs behind the BLAS interface (the seed's BlasConfig): the default
backend, the library behind scipy, the generic backend's kernel and threads."""
from __future__ import annotations

from typing import Any

from .._config import resolve_threads
from . import scipy_blas
from .blas_integration import default_backend, generic_info

_LIBRARY_NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS", "flexiblas": "FlexiBLAS"}


class BlasConfig:
    """What really runs: the default backend, the BLAS library behind scipy (as
    threadpoolctl finds it loaded: name, version, threads, CPU kernel), and the
    generic backend's micro-kernel, blocking and OpenMP threads."""

    def __init__(self, default_backend: str, library: str | None, version: str | None,
                 architecture: str | None, threading_layer: str | None, filepath: str | None,
                 blas_threads: int | None, num_threads: int, generic: dict[str, Any]) -> None:
        self.default_backend = default_backend
        self.library = library
        self.version = version
        self.architecture = architecture
        self.threading_layer = threading_layer
        self.filepath = filepath
        self.blas_threads = blas_threads
        self.num_threads = num_threads
        self.generic = generic

    @classmethod
    def detect(cls) -> BlasConfig:
        libs = scipy_blas.libraries()
        fields: tuple[Any, ...]
        if libs:
            info = libs[0].info()
            library = _LIBRARY_NAMES.get(info.get("internal_api"), info.get("internal_api"))
            fields = (library, info.get("version"), info.get("architecture"), info.get("threading_layer"),
                      info.get("filepath"), info.get("num_threads"))
        else:
            # A BLAS threadpoolctl cannot see (Accelerate, a static reference BLAS).
            fields = ("unknown", None, None, None, None, None)
        library, version, architecture, threading_layer, filepath, blas_threads = fields
        return cls(default_backend(), library, version, architecture, threading_layer, filepath, blas_threads,
                   resolve_threads(None), generic_info())

    def as_dict(self) -> dict[str, Any]:
        return {
            "default_backend": self.default_backend,
            "scipy_blas": {
                "library": self.library,
                "library_version": self.version,
                "architecture": self.architecture,
                "threading_layer": self.threading_layer,
                "threads": self.blas_threads,
                "filepath": self.filepath,
            },
            "generic": dict(self.generic, threads=self.num_threads),
        }

    def __repr__(self) -> str:
        return (f"BlasConfig(default_backend={self.default_backend!r}, library={self.library!r}, "
                f"version={self.version!r}, architecture={self.architecture!r}, "
                f"blas_threads={self.blas_threads}, num_threads={self.num_threads}, "
                f"generic_kernel={self.generic['micro_kernel']!r})")
