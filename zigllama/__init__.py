"""zigllama: the Foundations layer of an LLM inference engine, in Cython.

Tensors generic over their element type, explicit allocators, memory-mapped GGUF
model files, dequantization of every GGML block format, a BLAS vtable and a
work-stealing thread pool: from a model file on disk to a matrix product on
every core. Each module mirrors a Zig module of ZigLlama (see ``docs/``).

The names below are imported on first use (PEP 562), so ``import zigllama`` and
the command line load only the extensions a program actually touches. (A program
that drops privileges or chroots should touch the names it needs first.)
"""
import importlib as _importlib
import os as _os

# Idle OpenMP threads sleep instead of spinning (unless the user chose): with
# numpy's and scipy's BLAS threads and the pool in the same process, a team that
# spins after each GEMM takes the cores the next library's call needs (see
# docs/threading.md). libgomp reads this once, when the first of zigllama's
# extensions that uses it is loaded (on first use of a name below), so it is set
# at import, before any of them.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The same for OpenBLAS (numpy's and scipy's): its workers busy-wait about 0.1 s
# after each parallel call (2**28 cycles) unless OPENBLAS_THREAD_TIMEOUT says
# otherwise, holding a core through whatever runs next; 4 (2**4 cycles) lets them
# sleep at once. OpenBLAS reads it when it loads: it holds when zigllama is
# imported before numpy (a process that loaded numpy first keeps the spin).
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import errors
from .errors import *  # noqa: F401,F403  (the error family is public API)

__version__ = "0.1.0"

# public name -> (module, attribute in it)
_LAZY = {
    "num_threads": ("._config", "num_threads"),
    "set_num_threads": ("._config", "set_num_threads"),
    **{n: ("._core.allocator", n) for n in (
        "Allocator", "ArenaAllocator", "FailingAllocator", "FixedBufferAllocator",
        "GeneralPurposeAllocator", "HeapAllocator", "PageAllocator")},
    "Tensor": ("._core.tensor", "Tensor"),
    "dequantize": ("._core.quantization", "dequantize"),
    "quantize": ("._core.quantization", "quantize"),
    **{n: ("._core.qmatmul", n) for n in ("QuantizedTensor", "qgemm")},
    **{n: ("._core.blas_integration", n) for n in ("BlasInterface", "get_blas")},
    "BlasConfig": ("._core.blas_config", "BlasConfig"),
    "BlasManager": ("._core.blas_manager", "BlasManager"),
    "BlasStats": ("._core.blas_stats", "BlasStats"),
    **{n: ("._core.threading", n) for n in (
        "NumaAllocator", "ParallelOps", "ThreadPool", "WorkStealingQueue", "default_pool")},
    "CpuTopology": ("._core.cpu_topology", "CpuTopology"),
    **{n: ("._core.thread_pool_config", n) for n in ("NumaPolicy", "ThreadPoolConfig")},
    "ThreadPoolStats": ("._core.thread_pool_stats", "ThreadPoolStats"),
    "GGMLType": (".ggml_types", "GGMLType"),
    **{n: ("._core.gguf_format", n) for n in ("GGUFReader", "GGUFValueType")},
    "GGUFModelLoader": ("._core.gguf_model_loader", "GGUFModelLoader"),
    "validate_gguf": ("._core.gguf_format", "validate"),
    **{n: (".gguf_writer", n) for n in ("GGUFValue", "GGUFWriter", "rewrite_metadata")},
    "MemoryMap": ("._core.memory_mapping", "MemoryMap"),
    **{n: ("._core.mapping_flags", n) for n in ("MapFlags", "Protection")},
    "MappingOptimizer": ("._core.mapping_strategy", "MappingOptimizer"),
    "ModelFileMapper": ("._core.model_file_mapper", "ModelFileMapper"),
    **{n: (".model", n) for n in ("Model", "Sampler")},
    "Tokenizer": (".tokenizer", "Tokenizer"),
}

__all__ = ["errors", "get_include", "show_config", *errors.__dict__.get("__all__", [
    n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception)]), *_LAZY]


def __getattr__(name):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'zigllama' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(module, __name__), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def get_include():
    """Directory to add to a downstream extension's include path.

    It holds the ``zigllama/*.h`` C headers; the ``.pxd`` files are found by
    Cython through the installed package itself (``cimport zigllama.tensor``,
    ``from zigllama cimport gguf_format``: see docs/cython-api.md).
    """
    return _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_core", "include")


def show_config(file=None):
    """Print what this build of zigllama has: compiler, OpenMP, CPU features,
    BLAS backend and thread settings."""
    from ._show_config import config_lines

    print("\n".join(config_lines()), file=file)
