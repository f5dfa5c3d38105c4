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
cimport cython
from cpython.buffer cimport PyBUF_ANY_CONTIGUOUS, PyBUF_FORMAT, PyBUF_ND, PyBUF_WRITABLE
from cpython.buffer cimport PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

import errno as errno_module
from zigllama._arguments import integer, wrong_type
import resource
import traceback

from zigllama.errors import (
    AllocatorError,
    BufferInUse,
    DoubleFree,
    InvalidArgumentType,
    InvalidAllocation,
    InvalidFree,
    LeakError,
    OutOfMemory,
    NotCopyable,
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
        int closed
    void zl_stats_snapshot(const zl_alloc_stats *s, zl_alloc_stats *out) noexcept

    ctypedef struct zl_heap:
        zl_alloc_stats stats
    const zl_allocator_vtable zl_heap_vtable

    ctypedef struct zl_page:
        zl_alloc_stats stats
        int lock
        int last_errno
        int last_failed_op
        size_t page_size
    const zl_allocator_vtable zl_page_vtable
    size_t zl_page_size() noexcept
    size_t zl_page_mapped_size(const zl_page *p, size_t size) noexcept

    ctypedef struct zl_bump:
        unsigned char *start
        unsigned char *cursor
        unsigned char *end

    ctypedef struct zl_arena_chunk:
        pass
    ctypedef struct zl_arena:
        zl_alloc_stats stats
        zl_allocator child
        zl_arena_chunk *chunks
        zl_bump bump
        size_t capacity
        size_t used
        size_t min_chunk
    const zl_allocator_vtable zl_arena_vtable
    void zl_arena_free_all(zl_arena *a) noexcept
    int zl_arena_reset(zl_arena *a, size_t keep) noexcept
    size_t zl_arena_chunk_count(const zl_arena *a) noexcept

    ctypedef struct zl_fixed:
        zl_alloc_stats stats
        zl_bump bump
        unsigned char *buffer
        size_t size
    const zl_allocator_vtable zl_fixed_vtable
    void zl_fixed_reset(zl_fixed *f) noexcept

    ctypedef struct zl_gpa_entry:
        uintptr_t ptr
        size_t size
        size_t alignment
    ctypedef enum zl_gpa_status:
        ZL_GPA_OK
        ZL_GPA_DOUBLE_FREE
        ZL_GPA_INVALID_FREE
        ZL_GPA_SIZE_MISMATCH
        ZL_GPA_ALIGNMENT_MISMATCH
    ctypedef struct zl_gpa:
        zl_alloc_stats stats
        uint64_t bad_frees
    const zl_allocator_vtable zl_gpa_vtable
    int zl_gpa_init(zl_gpa *g, zl_allocator child) noexcept
    void zl_gpa_destroy(zl_gpa *g) noexcept
    zl_gpa_status zl_gpa_free_checked(zl_gpa *g, void *ptr, size_t size, size_t alignment,
                                      zl_gpa_entry *recorded) noexcept
    size_t zl_gpa_live(zl_gpa *g, zl_gpa_entry *out, size_t max) noexcept

    ctypedef struct zl_failing:
        zl_alloc_stats stats
        zl_allocator child
        uint64_t fail_index
        uint64_t resize_fail_index
        uint64_t allocations
        uint64_t deallocations
        uint64_t resizes
        uint64_t allocated_bytes
        uint64_t freed_bytes
        int has_induced_failure
    const zl_allocator_vtable zl_failing_vtable
    void zl_failing_count_free(zl_failing *f, size_t size) noexcept


# tracemalloc domain of the memory zigllama takes from the system.
TRACEMALLOC_DOMAIN = ZL_TRACEMALLOC_DOMAIN
# The default alignment of every allocation: a cache line, an AVX-512 vector.
DEFAULT_ALIGNMENT = ZL_DEFAULT_ALIGNMENT
# The largest alignment any allocator accepts (larger requests are mistakes).
MAX_ALIGNMENT = 1 << 30

cdef size_t SIZE_MAX_ = <size_t>-1


cdef add_note(exc, str note):
    """Attach a note to an exception in flight (PEP 678; Python 3.11+)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)


cdef inline bint is_power_of_two(size_t x) noexcept nogil:
    return x != 0 and (x & (x - 1)) == 0


cdef size_t checked_size(object size, str name) except? 0:
    """A Python int as a request size: negative is a mistake, too big is OutOfMemory."""
    if type(size) is not int:  # the exact-int fast path skips a Python call
        size = integer(size, name)
    if size < 0:
        raise InvalidAllocation(f"{name} must be >= 0, got {size}")
    if size > <object>SIZE_MAX_:
        raise OutOfMemory(f"cannot allocate {size} bytes: larger than the address space")
    return <size_t>size


cdef size_t checked_alignment(object alignment) except 0:
    if type(alignment) is not int:
        alignment = integer(alignment, "alignment")
    if alignment <= 0 or alignment > MAX_ALIGNMENT or not is_power_of_two(<size_t>alignment):
        raise InvalidAllocation(
            f"alignment must be a power of two between 1 and {MAX_ALIGNMENT}, got {alignment}"
        )
    return <size_t>alignment


cdef inline Block checked_block(object block):
    if not isinstance(block, Block):
        raise wrong_type(block, "block", "a Block")
    return <Block>block


cdef inline Allocator checked_child(object child, bint optional):
    if isinstance(child, Allocator) or (optional and child is None):
        return <Allocator>child
    raise wrong_type(child, "child", "an Allocator or None" if optional else "an Allocator")


cdef zl_alloc_stats snapshot(Allocator allocator) noexcept:
    # Every concrete allocator's C context starts with its zl_alloc_stats.
    cdef zl_alloc_stats s
    memset(&s, 0, sizeof(s))
    if allocator.c.ctx != NULL:
        zl_stats_snapshot(<zl_alloc_stats *>allocator.c.ctx, &s)
    return s


cdef void mark_closed(Allocator allocator) noexcept:
    # The C flag stops nogil callers and parent allocators too.
    allocator.closed = True
    if allocator.c.ctx != NULL:
        (<zl_alloc_stats *>allocator.c.ctx).closed = 1


cdef object refusal(Allocator allocator, size_t size, size_t alignment):
    """Why `allocator` returned NULL for this request, as an exception."""
    if allocator.closed:
        return AllocatorError(f"{type(allocator).__name__} is closed")
    return allocator.out_of_memory(size, alignment)


cdef int raise_alloc_failure(size_t size, size_t alignment) except -1 with gil:
    raise OutOfMemory(f"could not allocate {size} bytes aligned to {alignment}")


cdef void *check_alloc(void *ptr, size_t size, size_t alignment) except NULL nogil:
    if ptr != NULL:
        return ptr
    raise_alloc_failure(size, alignment)
    return NULL


cdef class Allocator:
    """Base class of every allocator: ``{ctx, vtable}`` plus the Python methods.

    Subclasses fill in ``c`` (a C context and vtable). Statistics are kept by the C
    context of every concrete allocator; see :meth:`stats`.
    """

    def __init__(self):
        if type(self) is Allocator:
            raise InvalidArgumentType("Allocator is an interface: use HeapAllocator, ArenaAllocator, ...")

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
            raise refusal(self, size, alignment)
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
        cdef size_t n = checked_size(size, "size")
        cdef size_t a = checked_alignment(alignment)
        # The block first: if allocating raises, it dies owning nothing.
        cdef Block block = Block.__new__(Block)
        block.allocator = self
        block.size = n
        block.alignment = a
        block.generation = self.generation
        block.ptr = self.allocate(n, a)
        return block

    def free(self, block):
        """Give a block back. Raises :class:`InvalidFree` for a block of another
        allocator, :class:`DoubleFree` for a block already freed, and
        ``BufferError`` while views of the block are alive."""
        cdef Block blk = checked_block(block)
        if blk.allocator is not self:
            raise InvalidFree(
                f"{blk!r} was allocated by {type(blk.allocator).__name__} "
                f"at 0x{id(blk.allocator):x}, not by this {type(self).__name__} "
                f"at 0x{id(self):x}"
            )
        if blk.ptr == NULL:
            raise DoubleFree(f"{blk!r} was already freed")
        if blk.exports:
            raise BufferInUse(
                f"cannot free {blk!r}: {blk.exports} buffer view(s) of it are still alive"
            )
        if blk.generation == self.generation:
            self.deallocate(blk.ptr, blk.size, blk.alignment)
        # else: the reset already took the memory back; there is nothing to give.
        blk.ptr = NULL

    def resize(self, block, new_size):
        """Grow or shrink a block in place; True if done, False if the caller must
        allocate, copy and free (Zig's ``Allocator.resize``)."""
        cdef Block blk = checked_block(block)
        cdef size_t n = checked_size(new_size, "new_size")
        cdef int done
        if blk.allocator is not self:
            raise InvalidFree(f"{blk!r} was not allocated by this {type(self).__name__}")
        blk.check_alive()
        if blk.exports:
            raise BufferInUse(f"cannot resize {blk!r}: buffer views of it are still alive")
        done = self.c.vtable.resize(self.c.ctx, blk.ptr, blk.size, n, blk.alignment)
        if done:
            blk.size = n
        return bool(done)

    def close(self):
        """Stop allocating. Memory handed out earlier can still be freed."""
        mark_closed(self)

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

    def __reduce__(self):
        raise NotCopyable(f"a {type(self).__name__} cannot be pickled or copied: it owns live memory; make a new one")

    def __repr__(self):
        state = "closed" if self.closed else f"{self.live_allocations} live, {self.live_bytes} bytes"
        return f"<{type(self).__name__} {state}>"


# Its __dealloc__ still needs the allocator (or child) it refers to.
@cython.no_gc_clear
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
        raise InvalidArgumentType("blocks come from Allocator.alloc()")

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
        if self.allocator is None:
            raise AllocatorError("this block never came from an allocator")
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

    def __reduce__(self):
        raise NotCopyable(f"a {type(self).__name__} cannot be pickled or copied: it is memory of its allocator; copy bytes(block) instead")

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


cdef str errno_name(int err):
    return errno_module.errorcode.get(err, str(err))


cdef class PageAllocator(Allocator):
    """Whole pages straight from ``mmap`` (Zig's ``std.heap.page_allocator``).

    For large, long-lived buffers (model weights). Every allocation is rounded up
    to whole pages (``live_bytes`` counts the pages mapped); alignments above the
    page size are honoured. ``lock=True`` also ``mlock``s the pages so they are
    never swapped out; when the kernel refuses (the ``RLIMIT_MEMLOCK`` limit, see
    ``ulimit -l``), the allocation raises :class:`OutOfMemory` saying so.
    Thread-safe.
    """
    cdef zl_page *page

    def __cinit__(self, *args, **kwargs):
        self.page = <zl_page *>calloc(1, sizeof(zl_page))
        if self.page == NULL:
            raise MemoryError()
        self.c.ctx = self.page

    def __init__(self, *, bint lock=False):
        self.page.page_size = zl_page_size()
        self.page.lock = lock
        self.c.vtable = &zl_page_vtable

    def __dealloc__(self):
        free(self.page)
        self.page = NULL
        self.c.ctx = NULL

    @property
    def lock(self):
        """True if every allocation is mlock'ed."""
        return bool(self.page.lock)

    @property
    def page_size(self):
        return self.page.page_size

    cdef object out_of_memory(self, size_t size, size_t alignment):
        cdef size_t mapped = zl_page_mapped_size(self.page, size)
        if self.page.last_failed_op == 2:
            soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
            limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
            return OutOfMemory(
                f"PageAllocator(lock=True): mlock of {mapped} bytes failed "
                f"({errno_name(self.page.last_errno)}): the locked-memory limit "
                f"RLIMIT_MEMLOCK is {limit} ('ulimit -l' shows it in KiB); raise it, "
                f"or allocate with lock=False"
            )
        return OutOfMemory(
            f"PageAllocator could not map {size} bytes aligned to {alignment} "
            f"({errno_name(self.page.last_errno)})"
        )


# Its __dealloc__ still needs the allocator (or child) it refers to.
@cython.no_gc_clear
cdef class ArenaAllocator(Allocator):
    """A bump pointer over chunks from a child allocator (Zig's
    ``std.heap.ArenaAllocator``): per-token activations, scratch space.

    Allocation is a pointer increment; :meth:`free` gives memory back only for the
    latest allocation. Everything goes at once with :meth:`reset`, which bumps
    :attr:`generation`: memory (blocks, tensors) from before a reset raises
    :class:`UseAfterReset` when touched, and reset refuses (``BufferError``)
    while buffer views of arena memory (``memoryview``, ``np.asarray``) are alive,
    so arena memory is never read after it was given back.

    ``with arena:`` resets on exit, keeping the capacity for the next round;
    :meth:`close` (or :meth:`deinit`) gives every chunk back to the child.
    Not thread-safe, like Zig's: use one arena per thread.

    Chunks grow by half of what the arena holds, starting at ``chunk_size``
    bytes (so n allocations cost O(log n) chunks).
    """
    cdef zl_arena *arena
    cdef readonly Allocator child

    def __cinit__(self, *args, **kwargs):
        self.arena = <zl_arena *>calloc(1, sizeof(zl_arena))
        if self.arena == NULL:
            raise MemoryError()
        self.c.ctx = self.arena

    def __init__(self, child=None, *, chunk_size=64 * 1024):
        cdef Allocator parent = checked_child(child, True)
        if parent is None:
            parent = HeapAllocator()
        parent.check_open()
        if self.child is not None:
            raise AllocatorError("ArenaAllocator is already initialised")
        chunk_size = integer(chunk_size, "chunk_size")
        if chunk_size <= 0:
            raise InvalidAllocation(f"chunk_size must be positive, got {chunk_size}")
        self.child = parent
        self.arena.child = parent.c
        self.arena.min_chunk = chunk_size
        self.c.vtable = &zl_arena_vtable

    def __dealloc__(self):
        if self.arena != NULL:
            if self.child is not None:
                zl_arena_free_all(self.arena)
            free(self.arena)
        self.arena = NULL
        self.c.ctx = NULL

    cdef int check_no_exports(self, str action) except -1:
        if self.exports:
            raise BufferInUse(
                f"cannot {action} {type(self).__name__}: {self.exports} buffer view(s) "
                f"of its memory (memoryview, np.asarray or np.from_dlpack of a tensor) are still alive; "
                f"release them first"
            )
        return 0

    def reset(self, bint retain_capacity=True, limit=None):
        """Free every allocation at once and start a new generation.

        ``retain_capacity=True`` keeps the memory (as one chunk of the total
        size, so the next round of the same work does not grow), or at most
        ``limit`` bytes of it (Zig's ``.retain_with_limit``); ``False`` gives it
        all back to the child (``.free_all``). Returns the capacity kept, in bytes.
        """
        cdef size_t keep = <size_t>-1
        if not retain_capacity:
            keep = 0
        elif limit is not None:
            limit = integer(limit, "limit")
            if limit < 0:
                raise InvalidAllocation(f"limit must be >= 0, got {limit}")
            keep = min(limit, <object>SIZE_MAX_)
        self.check_no_exports("reset")
        if self.child is not None:
            zl_arena_reset(self.arena, keep)
        self.generation += 1
        return self.arena.capacity

    def close(self):
        """Give every chunk back to the child (Zig's ``arena.deinit()``); the arena
        cannot allocate any more and all its memory is dead."""
        if self.closed:
            return
        self.check_no_exports("close")
        mark_closed(self)
        if self.child is not None:
            zl_arena_free_all(self.arena)
        self.generation += 1

    def deinit(self):
        """Zig's name for :meth:`close`."""
        self.close()

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and self.exports:
            # Do not hide the error in flight behind a BufferError.
            add_note(exc, f"{type(self).__name__} was not reset: {self.exports} buffer view(s) still alive")
            return False
        if not self.closed:
            self.reset(True)
        return False

    @property
    def capacity(self):
        """Bytes held from the child allocator (chunk headers included)."""
        return self.arena.capacity

    @property
    def used(self):
        """Bytes handed out since the last reset (alignment padding included)."""
        return self.arena.used

    @property
    def chunks(self):
        """Number of chunks held from the child."""
        return zl_arena_chunk_count(self.arena)

    def stats(self):
        d = Allocator.stats(self)
        d.update(capacity=self.capacity, used=self.used, chunks=self.chunks, generation=self.generation)
        return d

    cdef object out_of_memory(self, size_t size, size_t alignment):
        # A chunk is all the arena ever asks for: say why the child refused it.
        return OutOfMemory(
            f"ArenaAllocator could not allocate {size} bytes aligned to {alignment}: "
            f"no room in its chunks and the child refused a new one "
            f"({refusal(self.child, size, alignment)})"
        )


# No tp_clear: __dealloc__ releases the caller's buffer through its exporter.
@cython.no_gc_clear
cdef class FixedBufferAllocator(Allocator):
    """A bump pointer over memory you provide (Zig's ``std.heap.FixedBufferAllocator``).

    ``buffer`` is any writable, contiguous buffer-protocol object (``bytearray``,
    numpy array, ``mmap``); the allocator keeps it alive (and, for a bytearray,
    un-resizable) until :meth:`close`. Nothing is ever taken from the system:
    when the buffer is full, allocation raises :class:`OutOfMemory`.
    :meth:`reset` (and ``with`` exit) frees everything and starts a new
    generation, as for :class:`ArenaAllocator`. Not thread-safe, like Zig's.
    """
    cdef zl_fixed *fixed
    cdef Py_buffer view
    cdef bint has_view

    def __cinit__(self, *args, **kwargs):
        self.fixed = <zl_fixed *>calloc(1, sizeof(zl_fixed))
        if self.fixed == NULL:
            raise MemoryError()
        self.c.ctx = self.fixed

    def __init__(self, buffer):
        if self.has_view:
            raise AllocatorError("FixedBufferAllocator is already initialised")
        try:
            PyObject_GetBuffer(buffer, &self.view, PyBUF_WRITABLE | PyBUF_ANY_CONTIGUOUS)
        except (BufferError, TypeError, ValueError) as e:
            raise InvalidAllocation(
                f"FixedBufferAllocator needs writable, contiguous memory; "
                f"{type(buffer).__name__} does not provide it ({e})"
            ) from e
        self.has_view = True
        self.fixed.buffer = <unsigned char *>self.view.buf
        self.fixed.size = <size_t>self.view.len
        zl_fixed_reset(self.fixed)
        self.c.vtable = &zl_fixed_vtable

    def __dealloc__(self):
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False
        free(self.fixed)
        self.fixed = NULL
        self.c.ctx = NULL

    def reset(self):
        """Free every allocation at once; the next one starts at the buffer's start."""
        if self.exports:
            raise BufferInUse(
                f"cannot reset FixedBufferAllocator: {self.exports} buffer view(s) of its "
                f"memory are still alive; release them first"
            )
        if self.has_view:
            zl_fixed_reset(self.fixed)
        self.generation += 1

    def close(self):
        """Free everything and let go of the buffer."""
        if self.closed:
            return
        self.reset()
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False
        memset(&self.fixed.bump, 0, sizeof(zl_bump))
        mark_closed(self)

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and self.exports:
            add_note(exc, f"FixedBufferAllocator was not reset: {self.exports} buffer view(s) still alive")
            return False
        if not self.closed:
            self.reset()
        return False

    @property
    def capacity(self):
        """Size of the buffer in bytes."""
        return self.fixed.size

    @property
    def used(self):
        """Bytes handed out since the last reset (alignment padding included)."""
        if self.fixed.bump.cursor == NULL:
            return 0
        return <size_t>(self.fixed.bump.cursor - self.fixed.buffer)

    def stats(self):
        d = Allocator.stats(self)
        d.update(capacity=self.capacity, used=self.used, generation=self.generation)
        return d

    cdef object out_of_memory(self, size_t size, size_t alignment):
        return OutOfMemory(
            f"FixedBufferAllocator is full: {size} bytes aligned to {alignment} do not fit "
            f"({self.used} of {self.fixed.size} bytes used)"
        )


# Its __dealloc__ still needs the allocator (or child) it refers to.
@cython.no_gc_clear
cdef class GeneralPurposeAllocator(Allocator):
    """Tracks every live allocation (Zig's ``std.heap.GeneralPurposeAllocator``).

    Memory comes from ``child`` (a new :class:`HeapAllocator` by default); the
    GPA records each allocation's address, size and alignment, so that:

    * freeing twice raises :class:`DoubleFree`; freeing memory it did not
      allocate raises :class:`InvalidFree`, as does a free with another size or
      alignment than the allocation's (nothing is freed in either case);
    * :meth:`close` raises :class:`LeakError` listing what is still live, and
      :meth:`deinit` returns ``"leak"`` or ``"ok"`` like Zig's ``gpa.deinit()``.

    Closing does not free leaked memory (it may still be in use: a tensor holds
    it); it only stops further allocation. Thread-safe when the child is (the
    table is guarded by a mutex). Frees from nogil code cannot raise: their
    misuse is counted in :attr:`bad_frees` and reported by :meth:`close`.

    ``stack_traces=True`` records where each allocation made with the GIL (a
    block, a tensor) came from, and the leak report shows it, as Zig's GPA
    prints the stack trace of each leak. It costs a traceback per allocation.
    """
    cdef zl_gpa *gpa
    cdef readonly Allocator child
    cdef bint initialised
    # address -> traceback.StackSummary of its allocation (stack_traces=True);
    # entries of freed memory are pruned lazily, live ones are always current.
    cdef dict traces

    def __cinit__(self, *args, **kwargs):
        self.gpa = <zl_gpa *>calloc(1, sizeof(zl_gpa))
        if self.gpa == NULL:
            raise MemoryError()
        self.c.ctx = self.gpa

    def __init__(self, child=None, *, bint stack_traces=False):
        cdef Allocator parent = checked_child(child, True)
        if parent is None:
            parent = HeapAllocator()
        parent.check_open()
        if self.initialised:
            raise AllocatorError("GeneralPurposeAllocator is already initialised")
        if not zl_gpa_init(self.gpa, parent.c):
            raise OutOfMemory("GeneralPurposeAllocator could not allocate its table")
        self.initialised = True
        self.child = parent
        self.traces = {} if stack_traces else None
        self.c.vtable = &zl_gpa_vtable

    cdef void *allocate(self, size_t size, size_t alignment) except NULL:
        cdef void *ptr = Allocator.allocate(self, size, alignment)
        if self.traces is not None:
            if <size_t>len(self.traces) > 2 * self.gpa.stats.live_allocations + 1024:
                live = {address for address, _, _ in self.leaks()}
                self.traces = {k: v for k, v in self.traces.items() if k in live}
            self.traces[<uintptr_t>ptr] = traceback.extract_stack(limit=8)
        return ptr

    @property
    def stack_traces(self):
        """True if allocations record where they came from."""
        return self.traces is not None

    def __dealloc__(self):
        if self.gpa != NULL:
            if self.initialised:
                zl_gpa_destroy(self.gpa)
            free(self.gpa)
        self.gpa = NULL
        self.c.ctx = NULL

    cdef int deallocate(self, void *ptr, size_t size, size_t alignment) except -1:
        cdef zl_gpa_status status
        cdef zl_gpa_entry recorded
        if ptr == NULL:
            return 0
        if not self.initialised:
            raise AllocatorError("GeneralPurposeAllocator was not initialised")
        status = zl_gpa_free_checked(self.gpa, ptr, size, alignment, &recorded)
        if status == ZL_GPA_OK:
            return 0
        where = f"0x{<uintptr_t>ptr:x}"
        if status == ZL_GPA_DOUBLE_FREE:
            raise DoubleFree(f"double free of {where} ({size} bytes): it was already freed")
        if status == ZL_GPA_INVALID_FREE:
            raise InvalidFree(
                f"free of {where} ({size} bytes), which this GeneralPurposeAllocator did not "
                f"allocate (freed with the wrong allocator?)"
            )
        if status == ZL_GPA_SIZE_MISMATCH:
            raise InvalidFree(
                f"free of {where} with size {size}, but it was allocated with size {recorded.size}"
            )
        raise InvalidFree(
            f"free of {where} with alignment {alignment}, but it was allocated with "
            f"alignment {recorded.alignment}"
        )

    def leaks(self):
        """Live allocations as a list of ``(address, size, alignment)``, by address."""
        cdef size_t n, got
        cdef zl_gpa_entry *entries
        if not self.initialised:
            return []
        while True:
            n = zl_gpa_live(self.gpa, NULL, 0)
            entries = <zl_gpa_entry *>calloc(n + 1, sizeof(zl_gpa_entry))
            if entries == NULL:
                raise MemoryError()
            got = zl_gpa_live(self.gpa, entries, n + 1)
            if got <= n + 1:
                break
            free(entries)  # other threads allocated meanwhile: try again
        try:
            return sorted((entries[i].ptr, entries[i].size, entries[i].alignment) for i in range(got))
        finally:
            free(entries)

    @property
    def bad_frees(self):
        """Frees through the vtable (nogil code) that were refused as misuse."""
        return self.gpa.bad_frees

    def check(self):
        """``"leak"`` if allocations are live or nogil code misused frees, else ``"ok"``."""
        return "leak" if (self.live_allocations or self.gpa.bad_frees) else "ok"

    def report(self):
        """A human-readable account of the leaks (empty string if none)."""
        leaks = self.leaks()
        lines = []
        if leaks:
            total = sum(size for _, size, _ in leaks)
            lines.append(f"GeneralPurposeAllocator: {len(leaks)} allocation(s) leaked, {total} bytes:")
            for address, size, alignment in leaks[:20]:
                lines.append(f"  {size} bytes at 0x{address:x} (alignment {alignment})")
                if self.traces is not None and address in self.traces:
                    lines.append("    allocated at (most recent call last):")
                    lines.extend("    " + line for frame in traceback.format_list(self.traces[address])
                                 for line in frame.rstrip("\n").split("\n"))
            if len(leaks) > 20:
                lines.append(f"  ... and {len(leaks) - 20} more")
        if self.gpa.bad_frees:
            lines.append(f"GeneralPurposeAllocator: {self.gpa.bad_frees} invalid or double free(s) from nogil code")
        return "\n".join(lines)

    def deinit(self):
        """Stop allocating and return ``"leak"`` or ``"ok"`` (Zig's ``gpa.deinit()``)."""
        mark_closed(self)
        return self.check()

    def close(self):
        """Stop allocating; raise :class:`LeakError` if anything is still live.

        The error's ``leaks`` attribute is the list from :meth:`leaks`.
        """
        mark_closed(self)
        if self.check() == "leak":
            err = LeakError(self.report())
            err.leaks = self.leaks()
            raise err

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.close()
        elif self.deinit() == "leak":
            # An error is in flight (often the very one that leaked): keep it, and say so.
            add_note(exc, self.report())
        return False

    def stats(self):
        d = Allocator.stats(self)
        d.update(bad_frees=self.gpa.bad_frees)
        return d

    cdef object out_of_memory(self, size_t size, size_t alignment):
        return OutOfMemory(
            f"GeneralPurposeAllocator could not allocate {size} bytes aligned to {alignment} "
            f"({refusal(self.child, size, alignment)})"
        )


# Its __dealloc__ still needs the allocator (or child) it refers to.
@cython.no_gc_clear
cdef class FailingAllocator(Allocator):
    """Passes requests to ``child`` until ``fail_index`` allocations have
    succeeded, then refuses every later one with :class:`OutOfMemory` (Zig's
    ``std.testing.FailingAllocator``).

    The way to test errdefer paths: for a constructor that allocates n times,
    run it with ``fail_index`` = 0, 1, ..., n over a :class:`GeneralPurposeAllocator`
    and check that each failure leaves zero live bytes. ``resize_fail_index``
    does the same for in-place resizes. Not thread-safe, like Zig's.
    """
    cdef zl_failing *failing
    cdef readonly Allocator child

    def __cinit__(self, *args, **kwargs):
        self.failing = <zl_failing *>calloc(1, sizeof(zl_failing))
        if self.failing == NULL:
            raise MemoryError()
        self.c.ctx = self.failing

    def __init__(self, child, fail_index=0, *, resize_fail_index=None):
        cdef Allocator parent = checked_child(child, False)
        parent.check_open()
        if self.child is not None:
            raise AllocatorError("FailingAllocator is already initialised")
        fail_index = integer(fail_index, "fail_index")
        if fail_index < 0:
            raise InvalidAllocation(f"fail_index must be >= 0, got {fail_index}")
        resize_fail_index = (1 << 64) - 1 if resize_fail_index is None else integer(resize_fail_index, "resize_fail_index")
        if resize_fail_index < 0:
            raise InvalidAllocation(f"resize_fail_index must be >= 0, got {resize_fail_index}")
        self.child = parent
        self.failing.child = parent.c
        self.failing.fail_index = min(fail_index, (1 << 64) - 1)
        self.failing.resize_fail_index = min(resize_fail_index, (1 << 64) - 1)
        self.c.vtable = &zl_failing_vtable

    def __dealloc__(self):
        free(self.failing)
        self.failing = NULL
        self.c.ctx = NULL

    cdef int deallocate(self, void *ptr, size_t size, size_t alignment) except -1:
        if ptr == NULL:
            return 0
        if self.child is None:
            raise AllocatorError("FailingAllocator was not initialised")
        # The child checks the free (a GeneralPurposeAllocator raises on misuse).
        self.child.deallocate(ptr, size, alignment)
        zl_failing_count_free(self.failing, size)
        return 0

    cdef object out_of_memory(self, size_t size, size_t alignment):
        if self.failing.allocations >= self.failing.fail_index:
            return OutOfMemory(
                f"FailingAllocator refused allocation #{self.failing.allocations} "
                f"({size} bytes): fail_index={self.failing.fail_index}"
            )
        return OutOfMemory(
            f"FailingAllocator passed {size} bytes on and its child refused "
            f"({refusal(self.child, size, alignment)})"
        )

    @property
    def fail_index(self):
        """Allocations that succeed before every later one fails."""
        return self.failing.fail_index

    @property
    def allocations(self):
        """Successful allocations (Zig: ``alloc_index``)."""
        return self.failing.allocations

    @property
    def deallocations(self):
        return self.failing.deallocations

    @property
    def allocated_bytes(self):
        return self.failing.allocated_bytes

    @property
    def freed_bytes(self):
        return self.failing.freed_bytes

    @property
    def has_induced_failure(self):
        """True once a request was refused on purpose."""
        return bool(self.failing.has_induced_failure)

    def stats(self):
        d = Allocator.stats(self)
        d.update(allocations=self.allocations, deallocations=self.deallocations,
                 allocated_bytes=self.allocated_bytes, freed_bytes=self.freed_bytes,
                 has_induced_failure=self.has_induced_failure)
        return d


def _exercise_nogil(Allocator allocator not None, size_t size, size_t alignment, int count,
                    bint fill=True):
    """Allocate, fill (unless ``fill=False``) and free ``count`` blocks through the
    vtable with the GIL released (what a nogil kernel does); returns how many
    allocations succeeded."""
    cdef zl_allocator a = allocator.c
    cdef int i, ok = 0
    cdef void *ptr
    allocator.check_open()
    with nogil:
        for i in range(count):
            ptr = zl_alloc(a, size, alignment)
            if ptr != NULL:
                if fill:
                    memset(ptr, i & 0xff, size)
                ok += 1
                zl_free(a, ptr, size, alignment)
    return ok


def _deallocate_address(Allocator allocator not None, uintptr_t address, size_t size, size_t alignment):
    """``allocator.deallocate`` on a raw address, as Cython code would call it.

    For tests of the checks of the GeneralPurposeAllocator: handing a raw
    address to any other allocator frees it unchecked."""
    allocator.deallocate(<void *>address, size, alignment)


def _free_nogil(Allocator allocator not None, uintptr_t address, size_t size, size_t alignment):
    """The vtable's free on a raw address with the GIL released (a nogil kernel's free)."""
    cdef zl_allocator a = allocator.c
    if a.vtable == NULL:
        raise AllocatorError(f"{type(allocator).__name__} was not initialised")
    with nogil:
        zl_free(a, <void *>address, size, alignment)
