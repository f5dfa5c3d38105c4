"""Memory-mapped files (Zig twin: memory_mapping.zig).

A model file is mapped, never read: its bytes enter the address space on first
touch and numpy or Tensor views of them cost no copy. The map owns the memory;
every view holds the map and counts as an export, and close() refuses while an
export is alive, so no view can outlive the memory it points to.
"""
import collections as _collections
import errno as _errno
import os as _os
import stat as _stat

import numpy as _np

cimport cython
cimport numpy as cnp
from cpython.buffer cimport PyBuffer_FillInfo, PyBUF_WRITABLE
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.errno cimport errno
from libc.string cimport strerror
from posix.mman cimport (
    MADV_DONTNEED, MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED,
    MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, MAP_SHARED, MS_ASYNC, MS_SYNC,
    PROT_EXEC, PROT_READ, PROT_WRITE, madvise, mlock, mmap, msync, munlock, munmap,
)
from posix.unistd cimport sysconf, _SC_PAGESIZE

from .tensor cimport dtype_code, zl_dtype_itemsize

from .._arguments import dtype as _checked_dtype, integer as _integer
from .mapping_flags import MapFlags, Protection, invalid, parse_flags, parse_protection
# The map's policy lives in pure Python below this module; re-exported here.
from .mapping_strategy import (
    MappingOptimizer, MappingStrategy, huge_page_size, limit_text, mapping_config, memlock_limits,
)
from .tensor import Tensor
from ..errors import BufferInUse, InvalidArgumentType, InvalidMappingArgument, MappingError, MappingInUse, MappingNotFound, NotCopyable

cdef extern from "zl_mmap.h" nogil:
    int ZL_MAP_POPULATE, ZL_MAP_HUGETLB, ZL_MADV_HUGEPAGE
    unsigned char zl_touch_pages(const unsigned char *p, size_t n, size_t page)
    int zl_resident_bytes(unsigned char *p, size_t n, size_t page, size_t *resident_bytes)

cdef extern from "numpy/arrayobject.h":
    # Steals a reference to descr; numpy's own .pxd leaves it undeclared.
    object PyArray_NewFromDescr(PyTypeObject *subtype, cnp.dtype descr, int nd,
                                cnp.npy_intp *dims, cnp.npy_intp *strides, void *data,
                                int flags, object obj)

cnp.import_array()

cdef extern from "zigllama/zl_fault_guard.h" nogil:
    int zl_fault_guard_install()
    int zl_fault_guarded_call(int (*fn)(void *) noexcept nogil, void *arg, int fault_status)
    int zl_fault_touch(const void *p, unsigned long long n)

# Once, at import: SIGBUS in a guarded read becomes an error, anywhere else it goes to
# whatever handled it before (see zl_fault_guard.h).
zl_fault_guard_install()


cdef int fault_guarded_call(zl_fault_guarded_fn fn, void *arg, int fault_status) noexcept nogil:
    return zl_fault_guarded_call(fn, arg, fault_status)


cdef int fault_touch(const void *p, unsigned long long n) noexcept nogil:
    return zl_fault_touch(p, n)


# The most dimensions a view may have (numpy 1's limit; GGUF tensors have 4).
cdef enum:
    _MAX_DIMS = 32

# The buffer handed out for a zero-length map: never NULL, never dereferenced.
cdef unsigned char _empty_buffer[1]


cdef inline size_t _kernel_page_size() noexcept nogil:
    cdef long page = sysconf(_SC_PAGESIZE)
    return <size_t>page if page > 0 else 4096


def _os_error(int err, str what, path=None):
    """A MappingError carrying errno, its message and the path (if any)."""
    return MappingError(err, f"{what}: {strerror(err).decode('utf-8', 'replace')}", path)


cdef int _prot_bits(object protection) except -1:
    p = parse_protection(protection)
    return (PROT_READ
            | (PROT_WRITE if p & Protection.WRITE else 0)
            | (PROT_EXEC if p & Protection.EXEC else 0))


# advise() names -> madvise() advice (Zig: MemoryAdvice). "hugepage" is Linux-only.
_ADVICE = {
    "normal": MADV_NORMAL,
    "sequential": MADV_SEQUENTIAL,
    "random": MADV_RANDOM,
    "willneed": MADV_WILLNEED,
    "dontneed": MADV_DONTNEED,
    "hugepage": ZL_MADV_HUGEPAGE,
}


MappingStats = _collections.namedtuple(
    "MappingStats", ["size", "page_size", "pages", "resident_bytes", "locked"])
MappingStats.__doc__ = """Memory use of a map (Zig: MemoryStats).

size: bytes mapped; page_size: the kernel's page size; pages: pages spanned;
resident_bytes: bytes in RAM now, measured with mincore() (the Zig original
guesses half the file); locked: whether mlock() holds the pages.
"""


cdef int _place(MemoryMap m, object offset, object count, Py_ssize_t itemsize,
                Py_ssize_t alignment, object dtype, Py_ssize_t *dims, int *ndim,
                size_t *start) except -1:
    """Check ``count`` (an element count, a shape, or None for the rest of the map)
    elements of ``itemsize`` bytes at ``offset`` against the map and the alignment;
    fill ``dims``/``ndim`` and the byte offset ``start``. Python ints throughout:
    no product or sum can overflow before it is compared with the map's size."""
    cdef int i
    if itemsize <= 0:
        raise invalid(f"dtype {dtype} has no size", m.path)
    off = _integer(offset, "offset")
    if off < 0 or off > m.size:
        raise invalid(f"offset {off} is outside the {m.size}-byte map", m.path)
    if off % alignment:
        raise invalid(f"offset {off} is not a multiple of the {alignment}-byte alignment "
                       f"of {dtype}", m.path)
    available = m.size - off
    if count is None:
        if available % itemsize:
            raise invalid(f"the {available} bytes after offset {off} are not a whole number "
                           f"of {dtype} elements", m.path)
        ndim[0] = 1
        dims[0] = available // itemsize
    else:
        shape = count if isinstance(count, (tuple, list)) else (count,)
        if len(shape) > _MAX_DIMS:
            raise invalid(f"shape {count!r} has more than {_MAX_DIMS} dimensions", m.path)
        total = nonzero = 1
        for d in shape:
            d = _integer(d, "count" if shape is not count else "shape dimension")
            if d < 0:
                raise invalid(f"negative count or dimension in {count!r}", m.path)
            total *= d
            nonzero *= d or 1
        if total * itemsize > available or nonzero * itemsize > PY_SSIZE_T_MAX:
            raise invalid(f"{total} x {dtype} ({total * itemsize} bytes) in shape {count!r} at "
                           f"offset {off} runs past the end of the {m.size}-byte map", m.path)
        ndim[0] = len(shape)
        for i in range(ndim[0]):
            dims[i] = shape[i]
    start[0] = off
    return 0


# No tp_clear: in a collected cycle the owner must still be there for __dealloc__,
# else the map counts the export for ever and refuses to close.
@cython.no_gc_clear
cdef class _Export:
    """One export of a map, held as the base of the arrays view() builds."""
    cdef MemoryMap owner

    def __dealloc__(self):
        if self.owner is not None:
            self.owner.exports -= 1


cdef class MemoryMap:
    """A region of memory mapped from a file, or anonymous memory (Zig: MemoryMap).

    Create one with :meth:`from_file` or :meth:`anonymous`; use it as a context
    manager or call :meth:`close`. Its bytes are exported zero-copy through the
    buffer protocol (``memoryview(m)``, ``numpy.asarray(m)``), as typed numpy
    views (:meth:`view`) and as Tensors (:meth:`tensor`). Each view keeps the map
    alive and counts in ``exports``;
    ``close()`` raises :class:`MappingInUse` while any is alive. After close,
    every method raises :class:`MappingError`.
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
        raise InvalidArgumentType("use MemoryMap.from_file(path) or MemoryMap.anonymous(size)")

    @staticmethod
    def from_file(path, protection="r", flags="private"):
        """Map the whole file at ``path``.

        protection: :class:`Protection` or a string ("r", "rw", "rx", "read|write").
        flags: :class:`MapFlags` or a string ("private", "shared|populate",
        "private|huge_pages"). A zero-length file gives a zero-length map. A
        missing file, a directory or anything but a regular file raises
        :class:`MappingError` with ``filename`` set to the path.
        """
        cdef int prot = _prot_bits(protection)
        cdef MemoryMap self = MemoryMap.__new__(MemoryMap)
        mapflags = parse_flags(flags)
        fspath = _os.fspath(path)
        shared = bool(mapflags & MapFlags.SHARED)
        # A private map never writes the file back (copy-on-write), so a read-only
        # descriptor serves even a writable private map of a read-only file.
        mode = _os.O_RDWR if shared and prot & PROT_WRITE else _os.O_RDONLY
        # O_NONBLOCK: opening a FIFO (or a tty, a device) must not wait for a writer;
        # fstat then refuses anything but a regular file before a byte is read.
        # (The flag has no effect on a regular file's map.)
        try:
            fd = _os.open(fspath, mode | _os.O_NONBLOCK | getattr(_os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise MappingError(exc.errno, f"cannot open the file to map: {exc.strerror}", fspath) from None
        try:
            st = _os.fstat(fd)
            if _stat.S_ISDIR(st.st_mode):
                raise MappingError(_errno.EISDIR, "cannot map a directory", fspath)
            if not _stat.S_ISREG(st.st_mode):
                raise MappingError(_errno.ENODEV, "cannot map anything but a regular file", fspath)
            if st.st_size == 0 and _os.pread(fd, 1, 0):
                # /proc and /sys files say 0 bytes and hold more: a map would show none
                raise MappingError(_errno.ENODEV, "cannot map a file whose size is not known "
                                   "(a /proc or /sys file)", fspath)
            self._map(st.st_size, prot,
                      (MAP_SHARED if shared else MAP_PRIVATE)
                      | (ZL_MAP_POPULATE if mapflags & MapFlags.POPULATE else 0),
                      fd, fspath)
        finally:
            _os.close(fd)  # the mapping keeps its own reference to the file
        self.file_backed = True
        self.path = fspath
        self._finish(mapflags)
        return self

    @staticmethod
    def anonymous(size, protection="rw", flags="private"):
        """Map ``size`` bytes of zero-filled memory backed by no file.

        With ``huge_pages`` a size that is a multiple of the huge page size first
        tries reserved huge pages (MAP_HUGETLB), then transparent huge pages.
        """
        cdef int prot = _prot_bits(protection)
        cdef MemoryMap self = MemoryMap.__new__(MemoryMap)
        mapflags = parse_flags(flags)
        size = _integer(size, "size")
        cdef int base = (MAP_SHARED if mapflags & MapFlags.SHARED else MAP_PRIVATE) | MAP_ANONYMOUS
        if mapflags & MapFlags.POPULATE:
            base |= ZL_MAP_POPULATE
        huge = huge_page_size() if mapflags & MapFlags.HUGE_PAGES and ZL_MAP_HUGETLB else 0
        if huge and size > 0 and size % huge == 0:
            try:
                self._map(size, prot, base | ZL_MAP_HUGETLB, -1, None)
            except MappingError:
                pass  # no reserved huge pages (the usual case): fall back below
            else:
                self.huge_pages_kind = "hugetlb"
        if self.closed:
            self._map(size, prot, base, -1, None)
        self.file_backed = False
        self._finish(mapflags)
        return self

    cdef int _map(self, object length, int prot, int flags, int fd, object path) except -1:
        cdef void *addr
        if length < 0 or length > <object>(<size_t>-1 >> 1):
            raise invalid(f"cannot map {length} bytes", path)
        cdef size_t n = length
        if n > 0:
            with nogil:
                addr = mmap(NULL, n, prot, flags, fd, 0)
            if addr == MAP_FAILED:
                raise _os_error(errno, f"mmap of {n} bytes failed", path)
            self.ptr = <unsigned char *>addr
        else:
            self.ptr = NULL  # mmap rejects length 0; an empty map still views and closes
        self.size = n
        self.map_length = n
        self.prot = prot
        self.writable = (prot & PROT_WRITE) != 0
        self.shared = (flags & MAP_SHARED) != 0
        self.closed = False
        return 0

    cdef int _finish(self, object mapflags) except -1:
        # What mmap() flags alone cannot do: transparent huge pages, populate elsewhere.
        if mapflags & MapFlags.HUGE_PAGES and self.huge_pages_kind is None:
            # Graceful: a kernel without THP, or a file system without THP for
            # files, says EINVAL and the map keeps ordinary pages.
            if ZL_MADV_HUGEPAGE >= 0 and self.size and self._madvise(ZL_MADV_HUGEPAGE, 0, self.size) == 0:
                self.huge_pages_kind = "transparent"
        if mapflags & MapFlags.POPULATE and ZL_MAP_POPULATE == 0:
            self.prefault()
        return 0

    cdef int check_open(self) except -1:
        if self.closed:
            raise MappingError(_errno.EBADF, "memory map is closed", self.path)
        return 0

    cdef int pin(self, size_t offset, size_t length) except -1:
        self.check_open()
        if offset > self.size or length > self.size - offset:
            raise invalid(f"range [{offset}, {offset}+{length}) is outside the {self.size}-byte map",
                           self.path)
        self.exports += 1
        return 0

    cdef void unpin(self) noexcept:
        self.exports -= 1

    cdef int _range(self, object offset, object length, size_t *start, size_t *count) except -1:
        """Check offset/length (Python ints: no overflow) against the map."""
        self.check_open()
        off = _integer(offset, "offset")
        if off < 0 or off > self.size:
            raise invalid(f"offset {off} is outside the {self.size}-byte map", self.path)
        n = self.size - off if length is None else _integer(length, "length")
        if n < 0 or n > self.size - off:
            raise invalid(f"length {n} at offset {off} runs past the end of the "
                           f"{self.size}-byte map", self.path)
        start[0] = off
        count[0] = n
        return 0

    cdef int _madvise(self, int advice, size_t start, size_t count) noexcept nogil:
        """madvise() on the pages spanning [start, start+count); 0 or an errno."""
        if self.ptr == NULL or count == 0:
            return 0
        cdef size_t first = start - start % self.page_size
        if madvise(self.ptr + first, start + count - first, advice) != 0:
            return errno
        return 0

    # -- properties ---------------------------------------------------------

    @property
    def closed(self):
        """True once close() has unmapped the memory."""
        return self.closed

    @property
    def exports(self):
        """How many views (buffers, arrays) of the map are alive."""
        return self.exports

    @property
    def locked(self):
        """True while lock() holds the pages in RAM."""
        return self.locked

    @property
    def shared(self):
        """True for MAP_SHARED (writes reach the file), False for private."""
        return self.shared

    @property
    def anonymous_memory(self):
        """True for a map made by anonymous(), False for a file map."""
        return not self.file_backed

    @property
    def page_size(self):
        """The kernel's page size in bytes."""
        return self.page_size

    @property
    def protection(self):
        """The :class:`Protection` the pages were mapped with."""
        return (Protection.READ
                | (Protection.WRITE if self.prot & PROT_WRITE else Protection(0))
                | (Protection.EXEC if self.prot & PROT_EXEC else Protection(0)))

    @property
    def huge_pages(self):
        """The huge pages granted: "hugetlb", "transparent" or None."""
        return self.huge_pages_kind

    def __len__(self):
        self.check_open()
        return self.size

    # -- buffer protocol ----------------------------------------------------

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        self.check_open()
        if (flags & PyBUF_WRITABLE) and not self.writable:
            raise BufferInUse("memory map is read-only")
        cdef void *data = <void *>self.ptr if self.ptr != NULL else <void *>_empty_buffer
        PyBuffer_FillInfo(buffer, self, data, <Py_ssize_t>self.size, not self.writable, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1

    # -- typed views --------------------------------------------------------

    def view(self, offset, count=None, dtype="uint8"):
        """A zero-copy numpy array of ``count`` ``dtype`` elements at ``offset``.

        count: an element count, a shape tuple, or None for the rest of the map.
        The array keeps the map alive and counts as an export until it (and
        every array derived from it) is gone. It is writable only if the map is.
        Raises :class:`InvalidMappingArgument` for a negative or out-of-map
        offset or count, an offset that breaks the dtype's alignment, or a dtype
        holding Python objects.
        """
        cdef size_t start
        cdef int ndim
        cdef Py_ssize_t dims[_MAX_DIMS]
        cdef _Export export
        self.check_open()
        dt = _checked_dtype(dtype)
        if dt.hasobject:
            raise invalid(f"dtype {dt} holds Python objects; a map holds only bytes", self.path)
        _place(self, offset, count, dt.itemsize, dt.alignment, dt, dims, &ndim, &start)
        # The export is counted now and released when the token dies with the last
        # array that shares this memory.
        export = _Export.__new__(_Export)
        export.owner = self
        self.exports += 1
        Py_INCREF(dt)  # stolen by PyArray_NewFromDescr
        array = PyArray_NewFromDescr(
            <PyTypeObject *>cnp.ndarray, dt, ndim, <cnp.npy_intp *>dims, NULL,
            self.ptr + start if self.ptr != NULL else _empty_buffer,
            cnp.NPY_ARRAY_CARRAY if self.writable else cnp.NPY_ARRAY_CARRAY_RO, None)
        Py_INCREF(export)  # stolen by PyArray_SetBaseObject
        cnp.PyArray_SetBaseObject(array, export)
        return array

    def tensor(self, offset, shape, dtype="float32"):
        """A zero-copy :class:`zigllama.Tensor` of ``shape`` and ``dtype`` at ``offset``.

        dtype: a Tensor element type (float32, float64, float16, bfloat16, int8,
        int32). The tensor holds a buffer export of the map for as long as it
        (or any view of it) lives. Offsets and sizes are checked as in
        :meth:`view`; dtypes and shapes a Tensor cannot hold raise the Tensor's
        own errors (UnsupportedDtype, InvalidShape).
        """
        cdef size_t start
        cdef int ndim
        cdef Py_ssize_t dims[_MAX_DIMS]
        self.check_open()
        itemsize = zl_dtype_itemsize(dtype_code(dtype))
        _place(self, offset, shape, itemsize, itemsize, dtype, dims, &ndim, &start)
        return Tensor.from_buffer(self, dtype, shape, start)

    # -- paging ---------------------------------------------------------------

    def lock(self):
        """Hold every page in RAM (mlock). A failure names RLIMIT_MEMLOCK."""
        self.check_open()
        if self.locked or self.size == 0:
            self.locked = True
            return
        cdef int rc, err = 0
        self.pin(0, self.size)
        try:
            with nogil:
                rc = mlock(self.ptr, self.size)
                if rc != 0:
                    err = errno
        finally:
            self.unpin()
        if rc != 0:
            soft, hard = memlock_limits()
            raise MappingError(
                err,
                f"mlock of {self.size} bytes failed: {strerror(err).decode('utf-8', 'replace')}; "
                f"RLIMIT_MEMLOCK is soft={limit_text(soft)} hard={limit_text(hard)}: raise it "
                f"(ulimit -l, /etc/security/limits.conf, systemd LimitMEMLOCK=) or grant CAP_IPC_LOCK",
                self.path)
        self.locked = True

    def unlock(self):
        """Let the pages be paged out again (munlock)."""
        self.check_open()
        if not self.locked:
            return
        if self.size and munlock(self.ptr, self.size) != 0:
            raise _os_error(errno, f"munlock of {self.size} bytes failed", self.path)
        self.locked = False

    def prefault(self, offset=0, length=None):
        """Fault in the pages of [offset, offset+length) by reading one byte of each.

        Runs without the GIL. A file truncated by another process after mapping
        makes the read raise SIGBUS, as with any mmap reader.
        """
        cdef size_t start, count
        self._range(offset, length, &start, &count)
        if count == 0:
            return
        self.pin(start, count)
        try:
            with nogil:
                zl_touch_pages(self.ptr + start, count, self.page_size)
        finally:
            self.unpin()

    def advise(self, advice, offset=0, length=None):
        """Tell the kernel how [offset, offset+length) will be used (madvise).

        advice: "normal", "sequential", "random", "willneed", "dontneed" or
        "hugepage". The range is widened to whole pages. A refusal raises
        :class:`MappingError` (the Zig original logs it and carries on).
        "dontneed" on a private writable map discards what was written.
        """
        cdef size_t start, count
        cdef int code, err
        name = str(advice).lower().replace("_", "").replace("-", "")
        if name not in _ADVICE:
            raise invalid(f"unknown advice {advice!r}; expected one of {', '.join(_ADVICE)}", self.path)
        code = _ADVICE[name]
        if code < 0:
            raise MappingError(_errno.ENOSYS, f"advice {name!r} is not available on this system", self.path)
        self._range(offset, length, &start, &count)
        self.pin(start, count)
        try:
            with nogil:
                err = self._madvise(code, start, count)
        finally:
            self.unpin()
        if err:
            raise _os_error(err, f"madvise({name}) of bytes [{start}, {start + count}) failed", self.path)

    def sync(self, offset=0, length=None, *, asynchronous=False):
        """Write the changes in [offset, offset+length) back to the file (msync).

        Only a writable shared file map has changes the file can receive; on any
        other map sync() raises rather than pretend (the Zig original returns
        silently for anonymous maps and syncs private ones for nothing).
        """
        cdef size_t start, count, first
        cdef int rc
        cdef int how = MS_ASYNC if asynchronous else MS_SYNC
        self.check_open()
        if not (self.file_backed and self.shared and self.writable):
            kind = ("an anonymous map" if not self.file_backed
                    else "a private map" if not self.shared else "a read-only map")
            raise MappingError(_errno.EINVAL, f"sync() needs a writable shared file map, not {kind}",
                               self.path)
        self._range(offset, length, &start, &count)
        if count == 0:
            return
        first = start - start % self.page_size
        self.pin(start, count)
        try:
            with nogil:
                rc = msync(self.ptr + first, start + count - first, how)
        finally:
            self.unpin()
        if rc != 0:
            raise _os_error(errno, f"msync of bytes [{start}, {start + count}) failed", self.path)

    def stats(self):
        """A :class:`MappingStats`: size, page size, pages, resident bytes, locked."""
        cdef size_t resident = 0
        cdef int err = 0
        self.check_open()
        if self.size:
            self.pin(0, self.size)
            try:
                with nogil:
                    err = zl_resident_bytes(self.ptr, self.size, self.page_size, &resident)
            finally:
                self.unpin()
            if err:
                raise _os_error(err, "mincore failed", self.path)
        pages = self.size // self.page_size + (self.size % self.page_size != 0)
        return MappingStats(self.size, self.page_size, pages, resident, bool(self.locked))

    # -- lifetime -------------------------------------------------------------

    def close(self):
        """Unmap the memory. Raises :class:`MappingInUse` while views are alive.

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
            munmap(self.ptr, self.map_length)  # unmapping also drops the mlock
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
        if exc_type is not None and self.exports > 0:
            # Let the original error through rather than mask it with MappingInUse;
            # the map is unmapped when its last view (and reference) is gone.
            return False
        self.close()
        return False

    def __reduce__(self):
        raise NotCopyable("a MemoryMap cannot be pickled or copied; pickle its path and map it again")

    def __repr__(self):
        state = "closed" if self.closed else f"{self.size} bytes"
        mode = "rw" if self.writable else "r"
        kind = "shared" if self.shared else "private"
        source = repr(self.path) if self.path is not None else "anonymous"
        return f"<MemoryMap {source} {mode} {kind} {state}>"
