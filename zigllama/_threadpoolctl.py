"""zigllama's runtimes as threadpoolctl libraries.

threadpoolctl is how scientific Python controls threads: ``threadpool_info()``
lists every runtime loaded in the process and ``threadpool_limits(n)`` caps
them all for a block. Two controllers make zigllama one of them:

- ``zigllama`` (internal API ``zigllama_pool``): the work-stealing pool and
  every region sized from the thread setting (dequantize, ParallelOps, the
  scipy backend's split of large GEMMs);
- ``openmp`` (internal API ``zigllama_openmp``): the generic GEMM's OpenMP
  team, so ``threadpool_limits(n, user_api="openmp")`` reaches it too.

A limit only ever lowers zigllama's count (``zigllama._config.set_limit``);
when threadpoolctl restores the previous value on leaving the block, the limit
is lifted. threadpoolctl finds a controller's library by its file name and an
exported symbol: the extension modules that hold the pool and the GEMM.
"""
from __future__ import annotations

from . import _config

_registered = False


def register() -> bool:
    """Register the controllers once (threadpoolctl >= 3.5 has ``register``;
    with an older one zigllama is simply not listed)."""
    global _registered
    try:
        import threadpoolctl  # type: ignore[import-untyped]
    except ImportError:
        return False
    if _registered or not hasattr(threadpoolctl, "register"):
        return False
    class ZigllamaPoolController(threadpoolctl.LibController):  # type: ignore[misc]
        user_api = "zigllama"
        internal_api = "zigllama_pool"
        filename_prefixes = ("threading.",)
        check_symbols = ("zl_pool_create", "zl_parallel_for")

        def get_num_threads(self) -> int:
            return _config.num_threads()

        def set_num_threads(self, num_threads: int) -> None:
            _config.set_limit("pool", num_threads)

        def get_version(self) -> str:
            from . import __version__

            return __version__

    class ZigllamaOpenMPController(threadpoolctl.LibController):  # type: ignore[misc]
        user_api = "openmp"
        internal_api = "zigllama_openmp"
        filename_prefixes = ("blas_integration.",)
        check_symbols = ("zl_blas_generic_vtable",)

        def get_num_threads(self) -> int:
            return _config.openmp_threads()

        def set_num_threads(self, num_threads: int) -> None:
            _config.set_limit("openmp", num_threads)

        def get_version(self) -> str:
            from . import __version__

            return __version__

    threadpoolctl.register(ZigllamaPoolController)
    threadpoolctl.register(ZigllamaOpenMPController)
    _registered = True
    return True
