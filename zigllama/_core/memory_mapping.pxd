# MemoryMap for Cython callers (Zig twin: memory_mapping.zig).
#
# A parser reads `ptr[0:size]` directly while the map is open; Python code gets
# zero-copy views through the buffer protocol. Every live view counts in
# `exports`, and close() refuses while any remain, so no pointer dangles.

cdef class MemoryMap:
    cdef unsigned char *ptr        # NULL once closed (and for a zero-length file)
    cdef readonly size_t size      # bytes mapped
    cdef readonly bint writable
    cdef Py_ssize_t exports        # live buffer views
    cdef bint closed

    # Beyond the contract: what the kernel was asked for, so every later call can
    # check that it makes sense (sync needs a shared file map, munmap the real length).
    cdef size_t map_length         # bytes passed to mmap, and so to munmap
    cdef size_t page_size          # the running kernel's page size
    cdef int prot                  # PROT_* bits the map was created with
    cdef bint shared               # MAP_SHARED (else MAP_PRIVATE)
    cdef bint file_backed          # from_file (else anonymous)
    cdef bint locked               # mlock succeeded and no munlock since
    cdef object huge_pages_kind    # None, "hugetlb" or "transparent"
    cdef readonly object path      # the file mapped (None for anonymous maps)

    # 0 if open, else raises MappingError.
    cdef int check_open(self) except -1
    # Pin the map for nogil work on ptr[offset:offset+length]: checks the range
    # (overflow-safe) and counts as an export until unpin(), so close() cannot
    # unmap the memory underneath.
    cdef int pin(self, size_t offset, size_t length) except -1
    cdef void unpin(self) noexcept

    cdef int _map(self, object length, int prot, int flags, int fd, object path) except -1
    cdef int _finish(self, object mapflags) except -1
    cdef int _range(self, object offset, object length, size_t *start, size_t *count) except -1
    cdef int _madvise(self, int advice, size_t start, size_t count) noexcept nogil
    cdef void _unmap(self) noexcept


# The package's SIGBUS guard (zl_fault_guard.h): reads of a file's map that would
# kill the process if the file shrank run through these, from any extension.
# (Declared here, not from the header: a downstream cimport needs no include path.)
ctypedef int (*zl_fault_guarded_fn)(void *arg) noexcept nogil

# fn(arg), or fault_status if the calling thread took a SIGBUS inside it.
cdef int fault_guarded_call(zl_fault_guarded_fn fn, void *arg, int fault_status) noexcept nogil
# 0 if every page of [p, p + n) can be read, -1 if one is past the end of its file.
cdef int fault_touch(const void *p, unsigned long long n) noexcept nogil
