"""The zigllama error family.

Zig returns error unions (``error.InvalidShape``); zigllama raises exceptions of one
family, each also an instance of the built-in exception a Python user would catch
(an invalid index is an ``IndexError``, running out of memory a ``MemoryError``).
nogil kernels return a status; the status becomes one of these once, at the
boundary between C and Python.
"""


class ZigLlamaError(Exception):
    """Base class of every error zigllama raises on purpose."""


# Tensor (tensor.zig: error{InvalidShape, IncompatibleShapes, InvalidIndex, OutOfMemory})
class TensorError(ZigLlamaError):
    """A tensor operation got arguments it cannot work with."""


class InvalidShape(TensorError, ValueError):
    """A shape with zero, negative or too many dimensions, or a bad reshape."""


class IncompatibleShapes(TensorError, ValueError):
    """Operands whose shapes do not fit the operation."""


class InvalidIndex(TensorError, IndexError):
    """An index out of range, or the wrong number of indices."""


class UnsupportedDtype(TensorError, TypeError):
    """An element type zigllama has no kernels for."""


class InvalidLayout(TensorError, ValueError):
    """Memory a tensor cannot wrap as it is: non-contiguous, or misaligned for its dtype."""


class ReadOnlyTensor(TensorError, ValueError):
    """A write to a tensor over read-only memory (a read-only array, bytes, a read-only map)."""


# Memory (std.mem.Allocator: error.OutOfMemory, and the GeneralPurposeAllocator's checks)
class OutOfMemory(ZigLlamaError, MemoryError):
    """An allocator could not (or, for FailingAllocator, would not) provide memory."""


class AllocatorError(ZigLlamaError):
    """Misuse of an allocator: double free, freeing with the wrong allocator, ..."""


class InvalidAllocation(AllocatorError, ValueError):
    """A request no allocator can serve: a negative size, an alignment that is not a power of two."""


class DoubleFree(AllocatorError):
    """Memory freed twice."""


class InvalidFree(AllocatorError):
    """Memory freed through an allocator that did not allocate it."""


class UseAfterReset(AllocatorError):
    """Memory from an arena used after the arena was reset (Zig's arena escape)."""


class LeakError(AllocatorError):
    """Allocations still live when an allocator that checks for leaks was closed."""


# Memory-mapped files
class MappingError(ZigLlamaError, OSError):
    """A memory map could not be created, or was used after close."""


# GGUF files
class GGUFError(ZigLlamaError, ValueError):
    """A GGUF file that is malformed, unsupported, or does not hold what was asked."""


# Quantization
class QuantizationError(ZigLlamaError, ValueError):
    """Quantized data or arguments that do not fit the block format."""


# BLAS
class BlasError(ZigLlamaError, ValueError):
    """BLAS arguments that do not fit (shapes, dtypes, layout, aliasing)."""


# Threading
class ThreadPoolError(ZigLlamaError, RuntimeError):
    """The thread pool is closed, was inherited across fork, or a task failed."""
