# The allocator interface for Cython callers (Zig's std.mem.Allocator).
#
# nogil code receives `Allocator.c` (a {ctx, vtable} struct) and calls zl_alloc /
# zl_free on it: zl_alloc returns NULL on failure (the allocator contract, the one
# exception to the status-code rule of zigllama/errors.py). The module's checked
# wrapper is check_alloc (nogil: NULL -> OutOfMemory naming the size, the GIL taken
# only then); with the GIL, `allocate` also checks the allocator is open and the
# alignment valid, and `deallocate` turns misuse into an AllocatorError.

from libc.stdint cimport uint64_t

cdef extern from "zigllama/zl_allocator.h" nogil:
    ctypedef struct zl_allocator_vtable:
        void *(*alloc)(void *ctx, size_t size, size_t alignment) noexcept nogil
        int (*resize)(void *ctx, void *ptr, size_t old_size, size_t new_size, size_t alignment) noexcept nogil
        void (*free)(void *ctx, void *ptr, size_t size, size_t alignment) noexcept nogil

    ctypedef struct zl_allocator:
        void *ctx
        const zl_allocator_vtable *vtable

    void *zl_alloc(zl_allocator a, size_t size, size_t alignment) noexcept
    int zl_resize(zl_allocator a, void *ptr, size_t old_size, size_t new_size, size_t alignment) noexcept
    void zl_free(zl_allocator a, void *ptr, size_t size, size_t alignment) noexcept
    size_t ZL_DEFAULT_ALIGNMENT


cdef class Allocator:
    # {ctx, vtable}: what nogil code is handed.
    cdef zl_allocator c
    # Bumped whenever memory handed out earlier becomes invalid all at once
    # (an arena reset): memory allocated in an older generation is dead.
    cdef readonly uint64_t generation
    # close() was called: allocate raises, deallocate still works (so memory
    # handed out earlier can still go back).
    cdef readonly bint closed
    # Live buffer views (memoryview, np.asarray) of memory from this allocator;
    # a reset or close refuses while any remain, as mmap.close does.
    cdef readonly Py_ssize_t exports

    # With the GIL: NULL from the vtable becomes OutOfMemory naming the size.
    cdef void *allocate(self, size_t size, size_t alignment) except NULL
    # With the GIL: a double free or a free of foreign memory raises (where the
    # allocator can tell); otherwise the memory goes back. Memory from an older
    # generation went back with the reset: compare `generation` and skip the free.
    cdef int deallocate(self, void *ptr, size_t size, size_t alignment) except -1
    # 0 if memory from `generation` is still valid, else raises UseAfterReset.
    cdef int check_generation(self, uint64_t generation) except -1
    # A buffer view of memory from `generation` is being handed out: checks the
    # generation and counts the view. Pair with release_export.
    cdef int acquire_export(self, uint64_t generation) except -1
    cdef void release_export(self) noexcept
    # Raises AllocatorError if closed.
    cdef int check_open(self) except -1
    # The exception to raise when the vtable returned NULL for this request.
    cdef object out_of_memory(self, size_t size, size_t alignment)


# The checked wrapper of zl_alloc: ptr when it is not NULL; else takes the GIL and
# raises OutOfMemory naming size and alignment. Usage, without the GIL:
#     p = check_alloc(zl_alloc(arena.c, n, ZL_DEFAULT_ALIGNMENT), n, ZL_DEFAULT_ALIGNMENT)
cdef void *check_alloc(void *ptr, size_t size, size_t alignment) except NULL nogil
