"""The BLAS library behind ``scipy.linalg.cython_blas``, as threadpoolctl finds it
loaded: its controllers (threads, version, CPU kernel) and, for OpenBLAS, the
addresses of its own thread-count functions (what blas_integration pins it with)."""
from __future__ import annotations

import os
from typing import Any

_controllers: list[Any] | None = None
_entry_points: list[tuple[int, int]] | bool | None = None


def libraries() -> list[Any]:
    """threadpoolctl controllers of the BLAS library scipy.linalg.cython_blas calls."""
    global _controllers
    if _controllers is None:
        import numpy as np
        import scipy  # type: ignore[import-untyped]
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        scipy_dir = os.path.dirname(os.path.realpath(scipy.__file__))
        numpy_dir = os.path.dirname(os.path.realpath(np.__file__))
        # A wheel's bundled copy sits in scipy.libs/ (or scipy/.dylibs); a system
        # BLAS is shared with numpy, and then there is only one to choose.
        own = [c for c in blas if os.path.realpath(c.filepath).startswith(scipy_dir)]
        if not own:
            own = [c for c in blas if not os.path.realpath(c.filepath).startswith(numpy_dir)] or blas
        _controllers = own
    return _controllers


def entry_points() -> list[tuple[int, int]] | bool:
    """(openblas_set_num_threads, openblas_get_num_threads) addresses of each of
    libraries(), or False when one is not OpenBLAS (then pin through threadpoolctl)."""
    global _entry_points
    if _entry_points is None:
        import ctypes

        found: list[tuple[int, int]] | bool = []
        for lib in libraries():
            try:
                if lib.internal_api != "openblas":
                    raise AttributeError(lib.internal_api)
                # The names as threadpoolctl resolves them (scipy's wheels
                # prefix and suffix OpenBLAS's symbols).
                affix = lib._symbol_prefix, lib._symbol_suffix
                set_fn = getattr(lib.dynlib, f"{affix[0]}openblas_set_num_threads{affix[1]}")
                get_fn = getattr(lib.dynlib, f"{affix[0]}openblas_get_num_threads{affix[1]}")
            except (AttributeError, TypeError):
                found = False
                break
            assert isinstance(found, list)
            found.append((ctypes.cast(set_fn, ctypes.c_void_p).value or 0,
                          ctypes.cast(get_fn, ctypes.c_void_p).value or 0))
        _entry_points = found
    return _entry_points
