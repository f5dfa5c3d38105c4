"""zigllama: the Foundations layer of an LLM inference engine, in Cython.

Tensors generic over their element type, explicit allocators, memory-mapped GGUF
model files, dequantization of every GGML block format, a BLAS vtable and a
work-stealing thread pool: from a model file on disk to a matrix product on
every core. Each module mirrors a Zig module of ZigLlama (see ``docs/``).
"""
import os as _os

from . import errors
from ._config import num_threads, set_num_threads
from ._core.allocator import Allocator, ArenaAllocator, FailingAllocator, FixedBufferAllocator, GeneralPurposeAllocator, HeapAllocator, PageAllocator  # noqa: E501
from ._core.tensor import Tensor
from ._core.quantization import dequantize, quantize
from ._core.blas_integration import BlasConfig, BlasInterface, BlasManager, BlasStats, get_blas
from ._core.threading import CpuTopology, NumaAllocator, NumaPolicy, ParallelOps, ThreadPool, ThreadPoolConfig, ThreadPoolStats, WorkStealingQueue, default_pool  # noqa: E501
from .errors import *  # noqa: F401,F403  (the error family is public API)
from .ggml_types import GGMLType
from ._core.qmatmul import QuantizedTensor, qgemm
from ._core.gguf_format import GGUFModelLoader, GGUFReader, GGUFValueType
from ._core.gguf_format import validate as validate_gguf
from .gguf_writer import GGUFValue, GGUFWriter, rewrite_metadata
from ._core.memory_mapping import MapFlags, MappingOptimizer, MemoryMap, ModelFileMapper, Protection
from .model import Model, Sampler
from .tokenizer import Tokenizer

__version__ = "0.1.0"


def get_include():
    """Directory to add to a downstream extension's include path.

    It holds the ``zigllama/*.h`` C headers; the ``.pxd`` files are found by
    Cython through the installed package itself.
    """
    return _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_core", "include")


def show_config(file=None):
    """Print what this build of zigllama has: compiler, OpenMP, CPU features,
    BLAS backend and thread settings."""
    from ._show_config import config_lines

    print("\n".join(config_lines()), file=file)
