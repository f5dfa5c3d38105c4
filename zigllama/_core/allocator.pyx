"""Allocators: the Python face of Zig's ``std.mem.Allocator``.

An allocator is a C struct ``{ctx, vtable}`` (``zigllama/zl_allocator.h``) whose
alloc/resize/free functions are ``noexcept nogil``: a tensor, or a kernel's scratch
space, gets memory without knowing where it comes from, with or without the GIL.
Python code goes through :meth:`Allocator.alloc` / :meth:`Allocator.free` (or
Cython's ``allocate`` / ``deallocate``), where a NULL becomes :class:`OutOfMemory`
and misuse an :class:`AllocatorError`.

Memory zigllama takes from the system (heap blocks, mapped pages) is visible to
:mod:`tracemalloc` in the domain :data:`TRACEMALLOC_DOMAIN`.
"""
from cpython.buffer cimport PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES
from cpython.buffer cimport PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport uint64_t, uintptr_t
from libc.string cimport memset

from zigllama.errors import (
    AllocatorError,
    DoubleFree,
    InvalidAllocation,
    InvalidFree,
    OutOfMemory,
    UseAfterReset,
)

cdef extern from "zl_allocators.h" nogil:
    unsigned int ZL_TRACEMALLOC_DOMAIN

    ctypedef struct zl_alloc_stats:
        size_t live_bytes
        size_t live_allocations
        size_t high_water_bytes
        uint64_t total_allocations
        uint64_t total_frees
        uint64_t failed_allocations
    void zl_stats_snapshot(const zl_alloc_stats *s, zl_alloc_stats *out) noexcept

    ctypedef struct zl_heap:
        zl_alloc_stats stats
    const zl_allocator_vtable zl_heap_vtable

cdef extern from "<stdlib.h>" nogil:
    void *calloc(size_t n, size_t size)
    void free(void *ptr)

# tracemalloc domain of the memory zigllama takes from the system.
TRACEMALLOC_DOMAIN = ZL_TRACEMALLOC_DOMAIN
# The default alignment of every allocation: a cache line, an AVX-512 vector.
DEFAULT_ALIGNMENT = ZL_DEFAULT_ALIGNMENT
# The largest alignment any allocator accepts (larger requests are mistakes).
MAX_ALIGNMENT = 1 << 30

cdef size_t SIZE_MAX_ = <size_t>-1


cdef inline bint is_power_of_two(size_t x) noexcept nogil:
    return x != 0 and (x & (x - 1)) == 0


cdef size_t checked_size(object size) except? 0:
    """A Python int as a request size: negative is a mistake, too big is OutOfMemory."""
    size = int(size)
    if size < 0:
        raise InvalidAllocation(f"allocation size must be >= 0, got {size}")
    if size > <object>SIZE_MAX_:
        raise OutOfMemory(f"cannot allocate {size} bytes: larger than the address space")
    return <size_t>size


cdef size_t checked_alignment(object alignment) except 0:
    alignment = int(alignment)
    if alignment <= 0 or alignment > MAX_ALIGNMENT or not is_power_of_two(<size_t>alignment):
        raise InvalidAllocation(
            f"alignment must be a power of two between 1 and {MAX_ALIGNMENT}, got {alignment}"
        )
    return <size_t>alignment


cdef zl_alloc_stats snapshot(Allocator allocator) noexcept:
    # Every concrete allocator's C context starts with its zl_alloc_stats.
    cdef zl_alloc_stats s
    memset(&s, 0, sizeof(s))
    if allocator.c.ctx != NULL:
        zl_stats_snapshot(<zl_alloc_stats *>allocator.c.ctx, &s)
    return s


cdef class Allocator:
    """Base class of every allocator: ``{ctx, vtable}`` plus the Python methods.

    Subclasses fill in ``c`` (a C context and vtable). Statistics are kept by the C
    context of every concrete allocator; see :meth:`stats`.
    """

    def __init__(self):
        if type(self) is Allocator:
            raise TypeError("Allocator is an interface: use HeapAllocator, ArenaAllocator, ...")

    # ---- the cimport API ------------------------------------------------------
    cdef int check_open(self) except -1:
        if self.c.vtable == NULL:
            raise AllocatorError(f"{type(self).__name__} was not initialised (its __init__ did not run)")
        if self.closed:
            raise AllocatorError(f"{type(self).__name__} is closed: it cannot allocate any more")
        return 0

    cdef object out_of_memory(self, size_t size, size_t alignment):
        return OutOfMemory(
            f"{type(self).__name__} could not allocate {size} bytes aligned to {alignment}"
        )

    cdef void *allocate(self, size_t size, size_t alignment) except NULL:
        cdef void *ptr
        self.check_open()
        if not is_power_of_two(alignment) or alignment > MAX_ALIGNMENT:
            raise InvalidAllocation(
                f"alignment must be a power of two between 1 and {MAX_ALIGNMENT}, got {alignment}"
            )
        ptr = self.c.vtable.alloc(self.c.ctx, size, alignment)
        if ptr == NULL:
            raise self.out_of_memory(size, alignment)
        return ptr

    cdef int deallocate(self, void *ptr, size_t size, size_t alignment) except -1:
        if ptr == NULL:
            return 0
        if self.c.vtable == NULL:
            raise AllocatorError(f"{type(self).__name__} was not initialised")
        self.c.vtable.free(self.c.ctx, ptr, size, alignment)
        return 0

    cdef int check_generation(self, uint64_t generation) except -1:
        if generation != self.generation:
            raise UseAfterReset(
                f"memory allocated in generation {generation} of this {type(self).__name__} "
                f"is no longer valid: the allocator was reset and is now at generation "
                f"{self.generation}"
            )
        return 0

    cdef int acquire_export(self, uint64_t generation) except -1:
        self.check_generation(generation)
        self.exports += 1
        return 0

    cdef void release_export(self) noexcept:
        self.exports -= 1

    # ---- Python methods ---------------------------------------------------------
    def alloc(self, size, alignment=DEFAULT_ALIGNMENT):
        """Allocate ``size`` bytes aligned to ``alignment``; returns a :class:`Block`.

        The block is writable memory (``memoryview(block)``, ``np.frombuffer``);
        it goes back on :meth:`free` or when the block is garbage collected.
        Raises :class:`OutOfMemory` when the memory cannot be had and
        :class:`InvalidAllocation` for a negative size or a bad alignment.
        """
        cdef size_t n = checked_size(size)
        cdef size_t a = checked_alignment(alignment)
        cdef void *ptr = self.allocate(n, a)
        cdef Block block = Block.__new__(Block)
        block.allocator = self
        block.ptr = ptr
        block.size = n
        block.alignment = a
        block.generation = self.generation
        return block

    def free(self, Block block not None):
        """Give a block back. Raises :class:`InvalidFree` for a block of another
        allocator, :class:`DoubleFree` for a block already freed, and
        ``BufferError`` while views of the block are alive."""
        if block.allocator is not self:
            raise InvalidFree(
                f"{block!r} was allocated by {type(block.allocator).__name__} "
                f"at 0x{id(block.allocator):x}, not by this {type(self).__name__} "
                f"at 0x{id(self):x}"
            )
        if block.ptr == NULL:
            raise DoubleFree(f"{block!r} was already freed")
        if block.exports:
            raise BufferError(
                f"cannot free {block!r}: {block.exports} buffer view(s) of it are still alive"
            )
        if block.generation == self.generation:
            self.deallocate(block.ptr, block.size, block.alignment)
        # else: the reset already took the memory back; there is nothing to give.
        block.ptr = NULL

    def resize(self, Block block not None, new_size):
        """Grow or shrink a block in place; True if done, False if the caller must
        allocate, copy and free (Zig's ``Allocator.resize``)."""
        cdef size_t n = checked_size(new_size)
        cdef int done
        if block.allocator is not self:
            raise InvalidFree(f"{block!r} was not allocated by this {type(self).__name__}")
        block.check_alive()
        if block.exports:
            raise BufferError(f"cannot resize {block!r}: buffer views of it are still alive")
        done = self.c.vtable.resize(self.c.ctx, block.ptr, block.size, n, block.alignment)
        if done:
            block.size = n
        return bool(done)

    def close(self):
        """Stop allocating. Memory handed out earlier can still be freed."""
        self.closed = True

    def __enter__(self):
        self.check_open()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    @property
    def live_bytes(self):
        """Bytes allocated and not yet freed."""
        return snapshot(self).live_bytes

    @property
    def live_allocations(self):
        """Allocations not yet freed."""
        return snapshot(self).live_allocations

    @property
    def high_water_bytes(self):
        """The largest ``live_bytes`` ever reached."""
        return snapshot(self).high_water_bytes

    @property
    def total_allocations(self):
        """Successful allocations since creation."""
        return snapshot(self).total_allocations

    @property
    def total_frees(self):
        """Frees since creation (a reset counts as none)."""
        return snapshot(self).total_frees

    @property
    def failed_allocations(self):
        """Requests that returned NULL (became OutOfMemory)."""
        return snapshot(self).failed_allocations

    def stats(self):
        """All counters as a dict."""
        s = snapshot(self)
        return {
            "live_bytes": s.live_bytes,
            "live_allocations": s.live_allocations,
            "high_water_bytes": s.high_water_bytes,
            "total_allocations": s.total_allocations,
            "total_frees": s.total_frees,
            "failed_allocations": s.failed_allocations,
        }

    def __repr__(self):
        state = "closed" if self.closed else f"{self.live_allocations} live, {self.live_bytes} bytes"
        return f"<{type(self).__name__} {state}>"


cdef class Block:
    """Memory from an allocator: ``size`` writable bytes at ``address``.

    Supports the buffer protocol (``memoryview(block)``, ``np.frombuffer(block,
    dtype)``). Freed by ``allocator.free(block)``, :meth:`free`, or garbage
    collection. Touching a block of an arena that has since been reset raises
    :class:`UseAfterReset`; the arena refuses to reset while views are alive.
    """
    cdef readonly Allocator allocator
    cdef void *ptr
    cdef readonly size_t size
    cdef readonly size_t alignment
    cdef readonly uint64_t generation
    cdef Py_ssize_t exports
    cdef Py_ssize_t view_shape[1]

    def __init__(self):
        raise TypeError("blocks come from Allocator.alloc()")

    cdef int check_alive(self) except -1:
        if self.ptr == NULL:
            raise AllocatorError(f"{self!r} was freed")
        self.allocator.check_generation(self.generation)
        return 0

    @property
    def address(self):
        """The address of the first byte (raises if freed or reset)."""
        self.check_alive()
        return <uintptr_t>self.ptr

    @property
    def freed(self):
        return self.ptr == NULL

    @property
    def valid(self):
        """False once freed, or once its arena was reset."""
        return self.ptr != NULL and self.generation == self.allocator.generation

    def free(self):
        """``self.allocator.free(self)``."""
        self.allocator.free(self)

    def __len__(self):
        return self.size

    def __getbuffer__(self, Py_buffer *view, int flags):
        self.check_alive()
        self.allocator.acquire_export(self.generation)
        self.exports += 1
        self.view_shape[0] = <Py_ssize_t>self.size
        view.buf = self.ptr
        view.obj = self
        view.len = <Py_ssize_t>self.size
        view.readonly = 0
        view.itemsize = 1
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = b"B"
        view.ndim = 1
        view.shape = NULL
        if flags & PyBUF_ND:
            view.shape = self.view_shape
        view.strides = NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1
        self.allocator.release_export()

    def __dealloc__(self):
        # Garbage collection frees; memory of a reset arena is already gone.
        if self.ptr != NULL and self.allocator is not None \
                and self.generation == self.allocator.generation:
            self.allocator.c.vtable.free(self.allocator.c.ctx, self.ptr, self.size, self.alignment)
        self.ptr = NULL

    def __repr__(self):
        if self.ptr == NULL:
            return f"<Block of {self.size} bytes, freed>"
        return (f"<Block of {self.size} bytes at 0x{<uintptr_t>self.ptr:x} from "
                f"{type(self.allocator).__name__}, generation {self.generation}>")


cdef class HeapAllocator(Allocator):
    """The C library's heap, aligned (Zig's ``std.heap.c_allocator``).

    ``posix_memalign`` + ``free``. Thread-safe: any number of threads may call its
    vtable at once, with or without the GIL. Counts its live bytes and shows its
    blocks to tracemalloc.
    """

    def __cinit__(self, *args, **kwargs):
        self.c.ctx = calloc(1, sizeof(zl_heap))
        if self.c.ctx == NULL:
            raise MemoryError()

    def __init__(self):
        self.c.vtable = &zl_heap_vtable

    def __dealloc__(self):
        free(self.c.ctx)
        self.c.ctx = NULL


def _exercise_nogil(Allocator allocator not None, size_t size, size_t alignment, int count):
    """Allocate, fill and free ``count`` blocks through the vtable with the GIL
    released (what a nogil kernel does); returns how many allocations succeeded."""
    cdef zl_allocator a = allocator.c
    cdef int i, ok = 0
    cdef void *ptr
    allocator.check_open()
    with nogil:
        for i in range(count):
            ptr = zl_alloc(a, size, alignment)
            if ptr != NULL:
                memset(ptr, i & 0xff, size)
                ok += 1
                zl_free(a, ptr, size, alignment)
    return ok
