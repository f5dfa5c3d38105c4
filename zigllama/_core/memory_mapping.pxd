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

    # 0 if open, else raises MappingError.
    cdef int check_open(self) except -1
