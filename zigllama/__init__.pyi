from typing import IO

from . import errors as errors
from ._config import num_threads as num_threads, set_num_threads as set_num_threads
from ._core.allocator import (
    Allocator as Allocator,
    ArenaAllocator as ArenaAllocator,
    FailingAllocator as FailingAllocator,
    FixedBufferAllocator as FixedBufferAllocator,
    GeneralPurposeAllocator as GeneralPurposeAllocator,
    HeapAllocator as HeapAllocator,
    PageAllocator as PageAllocator,
)
from ._core.tensor import Tensor as Tensor
from ._core.quantization import dequantize as dequantize, quantize as quantize
from ._core.qmatmul import QuantizedTensor as QuantizedTensor, qgemm as qgemm
from ._core.blas_integration import BlasInterface as BlasInterface, get_blas as get_blas
from ._core.blas_config import BlasConfig as BlasConfig
from ._core.blas_manager import BlasManager as BlasManager
from ._core.blas_stats import BlasStats as BlasStats
from ._core.threading import (
    CpuTopology as CpuTopology,
    NumaAllocator as NumaAllocator,
    NumaPolicy as NumaPolicy,
    ParallelOps as ParallelOps,
    ThreadPool as ThreadPool,
    ThreadPoolConfig as ThreadPoolConfig,
    ThreadPoolStats as ThreadPoolStats,
    WorkStealingQueue as WorkStealingQueue,
    default_pool as default_pool,
)
from .errors import *
from .ggml_types import GGMLType as GGMLType
from ._core.gguf_format import GGUFReader as GGUFReader, GGUFValueType as GGUFValueType
from ._core.gguf_model_loader import GGUFModelLoader as GGUFModelLoader
from ._core.gguf_format import validate as _validate
from .gguf_writer import (
    GGUFValue as GGUFValue,
    GGUFWriter as GGUFWriter,
    rewrite_metadata as rewrite_metadata,
)
from ._core.mapping_flags import MapFlags as MapFlags, Protection as Protection
from ._core.mapping_strategy import MappingOptimizer as MappingOptimizer
from ._core.memory_mapping import MemoryMap as MemoryMap
from ._core.model_file_mapper import ModelFileMapper as ModelFileMapper
from .model import Model as Model, Sampler as Sampler
from .tokenizer import Tokenizer as Tokenizer

__version__: str
validate_gguf = _validate

def get_include() -> str: ...
def show_config(file: IO[str] | None = None) -> None: ...
