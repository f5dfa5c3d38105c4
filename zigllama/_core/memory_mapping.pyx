"""Memory-mapped files (Zig twin: memory_mapping.zig).

A model file is mapped, never read: its bytes enter the address space on first
touch and numpy or Tensor views of them cost no copy. The map owns the memory;
every view holds the map and counts as an export, and close() refuses while an
export is alive, so no view can outlive the memory it points to.
"""
import errno as _errno
import os as _os
import stat as _stat

from cpython.buffer cimport PyBuffer_FillInfo, PyBUF_WRITABLE
from libc.errno cimport errno
from libc.string cimport strerror
from posix.mman cimport (
    MAP_FAILED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap,
)
from posix.unistd cimport sysconf, _SC_PAGESIZE

from ..errors import InvalidMappingArgument, MappingError, MappingInUse

# The buffer handed out for a zero-length map: never NULL, never dereferenced.
cdef unsigned char _empty_buffer[1]


cdef inline size_t _kernel_page_size() noexcept nogil:
    cdef long page = sysconf(_SC_PAGESIZE)
    return <size_t>page if page > 0 else 4096


def _os_error(int err, str what, path=None):
    """A MappingError carrying errno, its message and the path (if any)."""
    return MappingError(err, f"{what}: {strerror(err).decode('utf-8', 'replace')}", path)


cdef class MemoryMap:
    """A region of memory mapped from a file (or anonymous memory).

    Create one with :meth:`from_file`; use it as a context manager or call
    :meth:`close`. It exports its bytes through the buffer protocol
    (``memoryview(m)``, ``numpy.asarray(m)``), zero-copy.
    """

    def __cinit__(self):
        self.ptr = NULL
        self.size = 0
        self.map_length = 0
        self.page_size = _kernel_page_size()
        self.exports = 0
        self.closed = True
        self.path = None

    def __init__(self):
        raise TypeError("use MemoryMap.from_file(path) or MemoryMap.anonymous(size)")

    @staticmethod
    def from_file(path):
        """Map the whole file at ``path`` read-only and private."""
        cdef MemoryMap self = MemoryMap.__new__(MemoryMap)
        fspath = _os.fspath(path)
        try:
            fd = _os.open(fspath, _os.O_RDONLY | _os.O_CLOEXEC)
        except OSError as exc:
            raise MappingError(exc.errno, f"cannot open file to map: {exc.strerror}", fspath) from None
        try:
            st = _os.fstat(fd)
            if not _stat.S_ISREG(st.st_mode):
                raise MappingError(_errno.EINVAL if not _stat.S_ISDIR(st.st_mode) else _errno.EISDIR,
                                   "not a regular file, cannot map it", fspath)
            self._map(st.st_size, PROT_READ, MAP_PRIVATE, fd, fspath)
        finally:
            _os.close(fd)
        self.file_backed = True
        self.path = fspath
        return self

    cdef int _map(self, object length, int prot, int flags, int fd, object path) except -1:
        cdef void *addr
        if length < 0 or length > <object>(<size_t>-1 >> 1):
            raise InvalidMappingArgument(_errno.EINVAL, f"cannot map {length} bytes", path)
        cdef size_t n = length
        self.writable = (prot & PROT_WRITE) != 0
        self.shared = (flags & MAP_SHARED) != 0
        if n == 0:
            # mmap rejects a zero length; an empty map still opens, views and closes.
            self.ptr = NULL
        else:
            with nogil:
                addr = mmap(NULL, n, prot, flags, fd, 0)
            if addr == MAP_FAILED:
                raise _os_error(errno, f"mmap of {n} bytes failed", path)
            self.ptr = <unsigned char *>addr
        self.size = n
        self.map_length = n
        self.closed = False
        return 0

    cdef int check_open(self) except -1:
        if self.closed:
            raise MappingError(_errno.EBADF, "memory map is closed", self.path)
        return 0

    cdef int pin(self, size_t offset, size_t length) except -1:
        self.check_open()
        if offset > self.size or length > self.size - offset:
            raise InvalidMappingArgument(
                _errno.EINVAL,
                f"range [{offset}, {offset}+{length}) is outside the {self.size}-byte map",
                self.path)
        self.exports += 1
        return 0

    cdef void unpin(self) noexcept:
        self.exports -= 1

    @property
    def closed(self):
        """True once close() has unmapped the memory."""
        return self.closed

    @property
    def exports(self):
        """How many views (buffers, arrays) of the map are alive."""
        return self.exports

    def __len__(self):
        self.check_open()
        return self.size

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        self.check_open()
        if (flags & PyBUF_WRITABLE) and not self.writable:
            raise BufferError("memory map is read-only")
        cdef void *data = <void *>self.ptr if self.ptr != NULL else <void *>_empty_buffer
        PyBuffer_FillInfo(buffer, self, data, <Py_ssize_t>self.size, not self.writable, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1

    def close(self):
        """Unmap the memory. Raises MappingInUse while views are alive.

        Closing a closed map does nothing, so ``with`` after an explicit close is fine.
        """
        if self.closed:
            return
        if self.exports > 0:
            raise MappingInUse(
                _errno.EBUSY,
                f"cannot close the memory map: {self.exports} view(s) of it are still alive",
                self.path)
        self._unmap()

    cdef void _unmap(self) noexcept:
        if self.ptr != NULL:
            munmap(self.ptr, self.map_length)  # unmapping also drops any mlock
        self.ptr = NULL
        self.closed = True
        self.locked = False

    def __dealloc__(self):
        # Views hold a reference to the map, so none is alive here.
        if not self.closed:
            self._unmap()

    def __enter__(self):
        self.check_open()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self.closed else f"{self.size} bytes"
        mode = "rw" if self.writable else "r"
        source = repr(self.path) if self.path is not None else "anonymous"
        return f"<MemoryMap {source} {mode} {state}>"
