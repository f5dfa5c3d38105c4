"""The zigllama error family, and the one rule at the nogil boundary.

Zig returns error unions (``error.InvalidShape``); zigllama raises exceptions of one
family, each also an instance of the built-in exception a Python user would catch
(an invalid index is an ``IndexError``, running out of memory a ``MemoryError``).

The rule at the nogil boundary, followed by every module:

1. A C-level call that runs without the GIL and can fail returns a named status
   code declared in its module's C header, 0 meaning success: ``zl_tensor_status``
   (``zl_tensor.h``), ``zl_quant_status`` (``zl_quants.h``), ``ZL_BLAS_*``
   (``zl_blas.h``), ``zl_gguf_error_kind`` (``zl_gguf.h``), ``ZL_POOL_E*``
   (``zl_threading.h``). It never raises and never takes the GIL on its success
   path (settings that live in Python are read before the GIL is released, or
   kept in C state).
2. Each module has one checked wrapper, ``except -1 nogil``, that turns a status
   into the module's exception with its context (shapes, type, byte offset, file):
   ``check_tensor_status``, ``check_quant_status``, ``check_blas_status``,
   ``check_gguf_status``, ``check_pool_status``. It takes the GIL only when the
   status is an error, as h5py's checked wrappers do. A kernel's checked form
   (``tensor_add``, ``parallel_for``) is its status form passed through it.
3. The allocator vtable returns NULL on failure: that is the allocator contract
   (Zig's ``std.mem.Allocator``, C's ``malloc``), kept for C callers; its checked
   wrapper is ``check_alloc`` (nogil), which turns NULL into ``OutOfMemory`` naming
   the size and alignment (``Allocator.allocate`` with the GIL).
4. Convenience forms that find the default pool (a Python object) take the GIL
   for that lookup only, and only outside a pool's task (``dequantize_into``,
   ``split_blocks``); their ``_on`` forms take a ``zl_pool *`` and never do.
5. An exception a callback raises is never swallowed: a ``KeyboardInterrupt``
   caught where C cannot pass it on is signalled again for the interpreter.

``docs/cython-api.md`` lists the status codes and wrappers of each ``.pxd``.
"""


class ZigLlamaError(Exception):
    """Base class of every error zigllama raises on purpose."""


class InvalidArgumentType(ZigLlamaError, TypeError):
    """An argument of a type the call cannot take (a constructor not meant to be
    called, a bool where an index goes, an operand that is no array)."""


class InvalidArgumentValue(ZigLlamaError, ValueError):
    """An argument of the right type but a value no call accepts (threads=0)."""


class NotCopyable(ZigLlamaError, TypeError):
    """pickle/copy of an object that owns a live resource (a map, a file, a pool)."""


class BufferInUse(ZigLlamaError, BufferError):
    """A buffer request the memory cannot serve: writable views of read-only memory,
    or freeing, resizing, resetting memory whose views are still alive."""


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


class ValueOutOfRange(TensorError, OverflowError, ValueError):
    """A value an element type cannot hold: 300 in an int8 tensor, 2.5 in an integer one."""


class DLPackError(TensorError, BufferError):
    """A DLPack exchange that cannot share memory as asked (another device, a dtype or
    layout zigllama lacks, a read-only tensor for a legacy consumer, a bad capsule)."""


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


class MappingNotFound(MappingError, KeyError):
    """A name a ModelFileMapper has no map for."""

    def __str__(self):  # KeyError would quote the whole message
        return OSError.__str__(self)


class MappingInUse(MappingError, BufferError):
    """close() of a map whose memory is still exported to views (mmap's BufferError)."""


class InvalidMappingArgument(MappingError, ValueError):
    """An offset, length, dtype, protection, flag or advice the map cannot honour."""


# GGUF files
class GGUFError(ZigLlamaError, ValueError):
    """A GGUF file that is malformed, unsupported, or does not hold what was asked."""


# Each malformed-file error carries ``field`` (e.g. "tensor[3] 'output.weight'.offset")
# and ``offset`` (the byte in the file) besides its message.
class GGUFTruncated(GGUFError):
    """A declared length or count runs past the end of the file."""


class GGUFUnsupportedVersion(GGUFError):
    """GGUF version 1, or a version this reader does not know."""


class GGUFUnknownType(GGUFError):
    """A metadata value type or a ggml tensor type that does not exist."""


class GGUFDuplicate(GGUFError):
    """A metadata key or a tensor name that appears twice."""


class GGUFLimitExceeded(GGUFError):
    """A bound exceeded: dimensions, name length, nesting depth, alignment, or a size that overflows."""


class GGUFInvalidValue(GGUFError):
    """A value that breaks a rule: an empty key, a bool of 7, an alignment of 3, bad UTF-8."""


class GGUFLayoutError(GGUFError):
    """Tensor data misaligned, overlapping, outside the file, or not a whole number of blocks."""


class GGUFTypeMismatch(GGUFError, TypeError):
    """A metadata value read as a type it does not have (a typed getter's check)."""


class GGUFFileChanged(GGUFError):
    """The file changed underneath an open reader: truncated, or its bytes rewritten so
    that a length validated at open no longer fits."""


class GGUFIndexError(GGUFError, IndexError):
    """An index out of range of a metadata array."""


class GGUFMissingKey(GGUFError, KeyError):
    """A metadata key or tensor that the file does not hold."""

    def __str__(self):  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


# Quantization
class QuantizationError(ZigLlamaError, ValueError):
    """Quantized data or arguments that do not fit the block format."""


# BLAS
class BlasError(ZigLlamaError, ValueError):
    """BLAS arguments that do not fit (shapes, dtypes, layout, aliasing)."""


# Threading
class ThreadPoolError(ZigLlamaError, RuntimeError):
    """The thread pool is closed, was inherited across fork, or a task failed."""


# Whole models (zigllama.model, zigllama.tokenizer)
class ModelError(ZigLlamaError, ValueError):
    """A model file or a request the model runner cannot serve."""


class UnsupportedArchitecture(ModelError):
    """A ``general.architecture`` the model runner has no forward pass for."""


class MissingTensor(ModelError, KeyError):
    """A tensor the architecture needs that the file does not hold."""

    def __str__(self):  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class ContextOverflow(ModelError):
    """More positions than the model's context (n_ctx) holds."""


class InvalidToken(ModelError, IndexError):
    """A token id outside the vocabulary, or token input of the wrong form."""


class TokenizerError(ModelError):
    """Text the tokenizer cannot encode, or a vocabulary it cannot read."""
