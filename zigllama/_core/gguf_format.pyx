"""GGUF model files: a validating, zero-copy reader (Zig twin: gguf_format.zig).

The file is mapped, never copied. At open a C parser walks the header, every
metadata value and every tensor info without the GIL, checking each declared
length against the bytes left and each size for overflow; it records positions,
not values. Values are decoded when read: scalars and strings on first access,
numeric arrays as zero-copy numpy views, string arrays (a 262,144-entry vocabulary)
as a lazy sequence over an index built once at open.
"""
from collections.abc import Mapping, Sequence
import os

import numpy as np

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from ..errors import (
    GGUFDuplicate,
    GGUFError,
    GGUFFileChanged,
    GGUFIndexError,
    GGUFInvalidValue,
    GGUFLayoutError,
    GGUFLimitExceeded,
    GGUFMissingKey,
    GGUFTruncated,
    NotCopyable,
    GGUFTypeMismatch,
    GGUFUnknownType,
    GGUFUnsupportedVersion,
    OutOfMemory,
    UnsupportedDtype,
)
from ..ggml_types import GGML_TYPE_TRAITS, GGMLType
from .gguf_value_types import FLOAT_TYPES, INT_TYPES, TENSOR_DTYPES, VALUE_DTYPES, GGUFValueType
from .tensor import Tensor
from .memory_mapping cimport fault_guarded_call, fault_touch
from .array_data cimport array_data
from .memory_mapping import MemoryMap

__all__ = [
    "GGUFReader", "GGUFValueType", "GGMLType", "TensorInfo",
    "Metadata", "LazyArray", "StringArray", "NestedArray", "validate",
    "GGUF_MAGIC", "GGUF_DEFAULT_ALIGNMENT", "GGUF_MAX_ALIGNMENT", "GGUF_MAX_ARRAY_DEPTH", "GGUF_MAX_NAME",
]

cdef extern from "zigllama/zl_gguf.h" nogil:
    int ZL_GGUF_E_MAGIC, ZL_GGUF_E_VERSION, ZL_GGUF_E_TRUNCATED, ZL_GGUF_E_TYPE
    int ZL_GGUF_E_DUPLICATE, ZL_GGUF_E_LIMIT, ZL_GGUF_E_VALUE, ZL_GGUF_E_LAYOUT, ZL_GGUF_E_NOMEM
    int ZL_GGUF_TYPE_STRING, ZL_GGUF_TYPE_ARRAY, ZL_GGUF_TYPE_BOOL, ZL_GGUF_TYPE_COUNT
    unsigned int C_DEFAULT_ALIGNMENT "ZL_GGUF_DEFAULT_ALIGNMENT"
    unsigned int C_MAX_ALIGNMENT "ZL_GGUF_MAX_ALIGNMENT"
    int C_MAX_ARRAY_DEPTH "ZL_GGUF_MAX_ARRAY_DEPTH"
    int C_MAX_NAME "ZL_GGUF_MAX_NAME"
    int zl_gguf_parse(zl_gguf_ctx *ctx, const uint8_t *data, uint64_t size)
    void zl_gguf_free(zl_gguf_ctx *ctx)
    uint64_t zl_gguf_type_size(uint32_t type)
    uint64_t zl_gguf_read_u64(const zl_gguf_ctx *ctx, uint64_t pos)
    uint32_t zl_gguf_read_u32(const zl_gguf_ctx *ctx, uint64_t pos)
    int zl_gguf_array_header(const zl_gguf_ctx *ctx, uint64_t array_pos, uint32_t *elem_type,
                          uint64_t *count, uint64_t *data_pos)
    int zl_gguf_array_index(const zl_gguf_ctx *ctx, uint64_t array_pos, uint64_t *positions)
    int zl_gguf_utf8_valid(const uint8_t *s, uint64_t n, uint64_t *bad_at)
    int zl_gguf_check_strings(zl_gguf_ctx *ctx)
    ctypedef struct zl_gguf_parse_args:
        zl_gguf_ctx *ctx
        const uint8_t *data
        uint64_t size
    int zl_gguf_parse_guarded(void *args)
    int zl_gguf_check_strings_guarded(void *ctx)
    ctypedef struct zl_gguf_string_probe:
        const zl_gguf_ctx *ctx
        uint64_t pos
        uint64_t len
    int zl_gguf_probe_string(void *probe)
    ctypedef struct zl_gguf_strings_probe:
        const zl_gguf_ctx *ctx
        const uint64_t *positions
        uint64_t n
        uint64_t bad
    int zl_gguf_probe_strings(void *probe)
    ctypedef struct zl_gguf_find_args:
        const zl_gguf_ctx *ctx
        const char *name
        uint64_t name_len
        zl_gguf_tensor_ref *out
    int zl_gguf_find_tensor_guarded(void *args)

GGUF_MAGIC = 0x46554747  # b"GGUF" read as a little-endian u32
GGUF_DEFAULT_ALIGNMENT = C_DEFAULT_ALIGNMENT
GGUF_MAX_ALIGNMENT = C_MAX_ALIGNMENT
GGUF_MAX_ARRAY_DEPTH = C_MAX_ARRAY_DEPTH
#: ggml's GGML_MAX_NAME: a tensor name's bytes plus ggml's terminating NUL.
GGUF_MAX_NAME = C_MAX_NAME


# Value type -> numpy dtype of a little-endian file's values (swapped for big-endian files).
_VALUE_DTYPES = {t: dt.newbyteorder("<") for t, dt in VALUE_DTYPES.items()}
_INT_TYPES = INT_TYPES
_FLOAT_TYPES = FLOAT_TYPES

# ggml type -> numpy dtype of a little-endian file's elements, for the plain (non-block) types.
_TENSOR_DTYPES = {t: dt.newbyteorder("<") for t, dt in TENSOR_DTYPES.items()}

# ggml types a zigllama Tensor holds, by the Tensor's dtype name.
_TENSOR_CLASS_DTYPES = {
    GGMLType.F32: "float32", GGMLType.F16: "float16", GGMLType.BF16: "bfloat16",
    GGMLType.F64: "float64", GGMLType.I8: "int8", GGMLType.I32: "int32",
}

_ERROR_KINDS = {
    ZL_GGUF_E_MAGIC: GGUFError,
    ZL_GGUF_E_VERSION: GGUFUnsupportedVersion,
    ZL_GGUF_E_TRUNCATED: GGUFTruncated,
    ZL_GGUF_E_TYPE: GGUFUnknownType,
    ZL_GGUF_E_DUPLICATE: GGUFDuplicate,
    ZL_GGUF_E_LIMIT: GGUFLimitExceeded,
    ZL_GGUF_E_VALUE: GGUFInvalidValue,
    ZL_GGUF_E_LAYOUT: GGUFLayoutError,
    ZL_GGUF_E_CHANGED: GGUFFileChanged,
}


def _gguf_error(cls, field, offset, message, path=None):
    """A GGUFError of kind `cls` naming the field and the byte offset."""
    where = f"{os.fspath(path)}: " if path is not None else ""
    err = cls(f"{where}{field} at byte {offset}: {message}")
    err.field = field
    err.offset = offset
    return err


cdef object _ctx_error(zl_gguf_ctx *ctx, object path):
    if ctx.err == ZL_GGUF_E_NOMEM:
        return OutOfMemory(f"out of memory while parsing a GGUF file: {ctx.err_msg.decode('utf-8', 'replace')}")
    return _gguf_error(_ERROR_KINDS[ctx.err], ctx.err_field.decode("utf-8", "replace"), ctx.err_pos,
                       ctx.err_msg.decode("utf-8", "replace"), path)


cdef int gguf_find_tensor(GGUFReader reader, const char *name, size_t name_len,
                          zl_gguf_tensor_ref *out) noexcept nogil:
    cdef zl_gguf_find_args args
    args.ctx = &reader.ctx
    args.name = name
    args.name_len = name_len
    args.out = out
    return fault_guarded_call(zl_gguf_find_tensor_guarded, &args, ZL_GGUF_E_CHANGED)


cdef int raise_gguf_status(int status, GGUFReader reader, const char *what) except -1 with gil:
    where = os.fspath(reader.path) if reader.path is not None else "GGUF data"
    name = what.decode("utf-8", "replace")
    if status == ZL_GGUF_E_NOTFOUND:
        raise GGUFMissingKey(f"{where}: no tensor named {name!r}")
    if status == ZL_GGUF_E_NOMEM:
        raise OutOfMemory(f"{where}: out of memory while reading {name}")
    if status == ZL_GGUF_E_CHANGED:
        raise _gguf_error(GGUFFileChanged, name, 0, "part of the file is past its end now (SIGBUS): "
                          "the file shrank after it was opened", reader.path)
    raise _gguf_error(_ERROR_KINDS.get(status, GGUFError), name, 0, f"status {status}", reader.path)


cdef int check_gguf_status(int status, GGUFReader reader, const char *what) except -1 nogil:
    if status == ZL_GGUF_OK:
        return 0
    return raise_gguf_status(status, reader, what)


def _close_map(m):
    """Close a map the reader opened, unless views of it are still alive (then the
    map closes itself when the last view goes)."""
    close = getattr(m, "close", None)
    if close is None:
        return
    try:
        close()
    except (BufferError, OSError, ValueError):
        pass


cdef class TensorInfo:
    """One tensor's descriptor: where its bytes are and how to read them.

    ``ne`` is in file (ggml) order, ne[0] varying fastest; ``shape`` is the numpy
    order (reversed). ``offset`` is relative to the data section, ``data_offset``
    is the absolute position in the file.
    """

    def __init__(self, name, ggml_type, ne, offset, data_offset, nbytes, info_offset=None):
        self.name = name
        self.ggml_type = GGMLType(ggml_type)
        self.ne = tuple(int(n) for n in ne)
        self.shape = self.ne[::-1]
        self.offset = int(offset)
        self.data_offset = int(data_offset)
        self.nbytes = int(nbytes)
        n = 1
        for d in self.ne:
            n *= d
        self.n_elements = n
        self.info_offset = info_offset

    @property
    def n_dims(self):
        return len(self.ne)

    def __repr__(self):
        return (f"TensorInfo(name={self.name!r}, ggml_type={self.ggml_type.name}, ne={self.ne}, "
                f"offset={self.offset}, nbytes={self.nbytes})")


cdef object _changed(GGUFReader r, object field, uint64_t pos, uint64_t n):
    return _gguf_error(GGUFFileChanged, field, pos, f"a length or count of {n} now runs past the end of the "
                       f"{r.ctx.size}-byte file: the file changed after it was opened", r.path)


cdef object _shrank(GGUFReader r, object field, uint64_t pos):
    return _gguf_error(GGUFFileChanged, field, pos, "the bytes are past the end of the file now "
                       "(SIGBUS): the file shrank after it was opened", r.path)


cdef inline uint64_t _string_length(GGUFReader r, uint64_t pos, object what, Py_ssize_t index) except? 0:
    """The length field at pos, checked again against the file: the bytes may have been
    rewritten since open (a writable buffer edited, the mapped file rewritten). The
    position itself comes from the tables built at open, so pos + 8 <= size. The
    string's pages are read once under the SIGBUS guard, so that decoding it next
    cannot fault (unless the file shrinks in between: a window of microseconds)."""
    cdef zl_gguf_string_probe probe
    cdef int rc
    r.check_open()  # here, not only in the callers: nothing may run between it and the read
    probe.ctx = &r.ctx
    probe.pos = pos
    probe.len = 0
    rc = fault_guarded_call(zl_gguf_probe_string, &probe, -1)
    if rc == 1:
        raise _changed(r, what if index < 0 else f"{what}[{index}]", pos, probe.len)
    if rc != 0:
        raise _shrank(r, what if index < 0 else f"{what}[{index}]", pos)
    return probe.len


cdef inline object _decode_string(GGUFReader r, uint64_t pos, object what, Py_ssize_t index=-1):
    """The string whose length field is at pos. `what` (+ `[index]`) names it in errors."""
    return _decode_at(r, pos, _string_length(r, pos, what, index), what, index)


# Elements of a string array probed together under one guarded call, then decoded: the
# per-string guard costs about a fifth of decoding a short token.
cdef enum:
    _PROBE_RUN = 4096


cdef int _probe_run(StringArray a, Py_ssize_t first, Py_ssize_t count) except -1:
    """Elements [first, first + count) of a string array checked and paged in under the
    SIGBUS guard, so that _decode_probed can decode them right after."""
    cdef zl_gguf_strings_probe probe
    cdef int rc
    a.reader.check_open()
    probe.ctx = &a.reader.ctx
    probe.positions = a.positions + first
    probe.n = count
    probe.bad = 0
    rc = fault_guarded_call(zl_gguf_probe_strings, &probe, -1)
    if rc == 1:
        i = first + <Py_ssize_t>probe.bad
        raise _changed(a.reader, f"{a.what}[{i}]", a.positions[i], zl_gguf_read_u64(&a.reader.ctx, a.positions[i]))
    if rc != 0:
        raise _shrank(a.reader, f"{a.what}[{first}..{first + count}]", a.positions[first])
    return 0


cdef inline object _decode_probed(StringArray a, Py_ssize_t i):
    """Element i, just probed by _probe_run: its length is checked again (the bytes may
    change in between), its pages were just read."""
    cdef uint64_t pos = a.positions[i]
    cdef uint64_t n
    a.reader.check_open()
    n = zl_gguf_read_u64(&a.reader.ctx, pos)
    if n > a.reader.ctx.size - pos - 8:
        raise _changed(a.reader, f"{a.what}[{i}]", pos, n)
    return _decode_at(a.reader, pos, n, a.what, i)


cdef inline object _decode_at(GGUFReader r, uint64_t pos, uint64_t n, object what, Py_ssize_t index):
    cdef uint64_t bad = 0
    cdef const uint8_t *s = r.ctx.data + pos + 8
    try:
        return PyUnicode_DecodeUTF8(<const char *>s, n, NULL)
    except UnicodeDecodeError:
        zl_gguf_utf8_valid(s, n, &bad)
        field = what if index < 0 else f"{what}[{index}]"
        raise _gguf_error(GGUFInvalidValue, field, pos + 8 + bad, "not valid UTF-8", r.path) from None


cdef Py_ssize_t _element_index(object index, Py_ssize_t n) except -1:
    """index (negative from the end) checked against n elements."""
    cdef Py_ssize_t i = index
    if i < 0:
        i += n
    if i < 0 or i >= n:
        raise GGUFIndexError(f"array index {index} out of range for {n} elements")
    return i


cdef class LazyArray:
    """A metadata array read element by element from the file (the base of
    StringArray and NestedArray): a Sequence that compares equal to a list of the
    same elements."""

    cdef GGUFReader reader
    cdef Py_ssize_t n
    cdef str what

    cdef object item(self, Py_ssize_t i):
        raise NotImplementedError  # each kind of array reads its own elements

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.item(i) for i in range(*index.indices(self.n))]
        return self.item(_element_index(index, self.n))

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self.n):
            yield self.item(i)

    def __reduce__(self):
        raise NotCopyable(f"a {type(self).__name__} cannot be pickled or copied: it reads an open file; copy tolist() instead")

    def __eq__(self, other):
        if isinstance(other, (LazyArray, list, tuple)):
            return len(self) == len(other) and all(_values_equal(a, b) for a, b in zip(self, other))
        return NotImplemented


cdef class StringArray(LazyArray):
    """A metadata array of strings, decoded one element at a time when read.

    The position of every element was recorded when the file was opened, so
    ``tokens[i]`` is one lookup and one UTF-8 decode; no string exists as a Python
    object until it is asked for.
    """

    cdef const uint64_t *positions
    cdef object positions_owner   # a numpy array when the positions are this array's own

    cdef object item(self, Py_ssize_t i):
        self.reader.check_open()
        return _decode_string(self.reader, self.positions[i], self.what, i)

    def tolist(self):
        """Every element decoded, as a list."""
        cdef Py_ssize_t i, start, count
        out = []
        for start in range(0, self.n, _PROBE_RUN):
            count = min(_PROBE_RUN, self.n - start)
            _probe_run(self, start, count)
            for i in range(start, start + count):
                out.append(_decode_probed(self, i))
        return out

    def __iter__(self):
        cdef Py_ssize_t i, start, count
        for start in range(0, self.n, _PROBE_RUN):
            count = min(_PROBE_RUN, self.n - start)
            _probe_run(self, start, count)
            chunk = [_decode_probed(self, i) for i in range(start, start + count)]
            yield from chunk

    def byte_lengths(self):
        """The length in bytes of every element, as a uint64 array (no decoding)."""
        cdef Py_ssize_t i
        self.reader.check_open()
        out = np.empty(self.n, dtype=np.uint64)
        cdef uint64_t[::1] o = out
        for i in range(self.n):
            o[i] = _string_length(self.reader, self.positions[i], self.what, i)
        return out

    def __repr__(self):
        head = ", ".join(repr(s) for s in self[:3])
        return f"StringArray([{head}{', ...' if self.n > 3 else ''}], n={self.n})"


cdef class NestedArray(LazyArray):
    """A metadata array whose elements are arrays (bounded nesting), read lazily."""

    cdef object positions   # uint64 numpy array: each element's position
    cdef int depth

    cdef object item(self, Py_ssize_t i):
        return self.reader._array_at(int(self.positions[i]), self.depth + 1, f"{self.what}[{i}]")

    def tolist(self):
        return [v.tolist() for v in self]

    def __repr__(self):
        return f"NestedArray(n={self.n})"


def _values_equal(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


Sequence.register(LazyArray)


cdef class Metadata:
    """The file's metadata: a read-only mapping from key to value, in file order.

    Strings are ``str``, scalars Python ``int``/``float``/``bool``, numeric arrays
    read-only numpy views of the file, string arrays a lazy ``StringArray``, arrays
    of arrays a ``NestedArray``. Typed getters check the stored type.
    """

    cdef GGUFReader reader
    cdef dict index     # key -> kv index
    cdef list order
    cdef dict cache

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        return iter(self.order)

    def __contains__(self, key):
        return key in self.index

    cdef Py_ssize_t _index(self, key) except -1:
        try:
            return self.index[key]
        except (KeyError, TypeError):  # TypeError: an unhashable key
            raise GGUFMissingKey(f"{self.reader.path or 'GGUF data'}: no metadata key {key!r}") from None

    def __getitem__(self, key):
        i = self._index(key)
        try:
            return self.cache[i]
        except KeyError:
            pass
        v = self.reader._kv_value(i, key)
        self.cache[i] = v
        return v

    def get(self, key, default=None):
        return self[key] if key in self.index else default

    def keys(self):
        return list(self.order)

    def items(self):
        return [(k, self[k]) for k in self.order]

    def values(self):
        return [self[k] for k in self.order]

    def __eq__(self, other):
        if not isinstance(other, Mapping) or len(other) != len(self):
            return NotImplemented if not isinstance(other, Mapping) else False
        return all(k in other and _values_equal(self[k], other[k]) for k in self.order)

    def __reduce__(self):
        raise NotCopyable(f"a {type(self).__name__} cannot be pickled or copied: it reads an open file; copy dict(metadata.items()) instead")

    def __repr__(self):
        return f"Metadata({len(self.order)} keys: {', '.join(self.order[:5])}{', ...' if len(self.order) > 5 else ''})"

    # Every method below looks the key up first (a dict lookup may run Python code and
    # so let another thread close the reader), then checks the reader is open, then
    # reads the C tables: nothing between the check and the read can switch threads.

    cdef const zl_gguf_kv *_kv(self, key) except NULL:
        cdef Py_ssize_t i = self._index(key)
        self.reader.check_open()
        return &self.reader.ctx.kv[i]

    def value_type(self, key):
        """The GGUFValueType of a key's value."""
        return GGUFValueType(self._kv(key).type)

    def element_type(self, key):
        """The element type of an array value (None for scalars and strings)."""
        cdef const zl_gguf_kv *kv = self._kv(key)
        if kv.type != ZL_GGUF_TYPE_ARRAY:
            return None
        return GGUFValueType(kv.elem_type)

    def raw_value(self, key):
        """The value's bytes as stored (type field included): a uint8 view."""
        cdef const zl_gguf_kv *kv = self._kv(key)
        cdef uint64_t start = kv.value_pos - 4, count = kv.end_pos - kv.value_pos + 4
        return np.frombuffer(self.reader.base, dtype=np.uint8, count=count, offset=start)

    def offset(self, key):
        """Byte offset of the key/value pair in the file."""
        return self._kv(key).entry_pos

    def _typed(self, key, default, allowed, expected):
        if key not in self.index:
            return default
        t = self._kv(key).type
        if t not in allowed:
            raise _gguf_error(GGUFTypeMismatch, f"kv {key!r}", self.offset(key),
                              f"holds a {GGUFValueType(t).name.lower()}, not {expected}", self.reader.path)
        return self[key]

    def get_u8(self, key, default=None): return self._typed(key, default, (0,), "a uint8")
    def get_i8(self, key, default=None): return self._typed(key, default, (1,), "an int8")
    def get_u16(self, key, default=None): return self._typed(key, default, (2,), "a uint16")
    def get_i16(self, key, default=None): return self._typed(key, default, (3,), "an int16")
    def get_u32(self, key, default=None): return self._typed(key, default, (4,), "a uint32")
    def get_i32(self, key, default=None): return self._typed(key, default, (5,), "an int32")
    def get_f32(self, key, default=None): return self._typed(key, default, (6,), "a float32")
    def get_bool(self, key, default=None): return self._typed(key, default, (7,), "a bool")
    def get_str(self, key, default=None): return self._typed(key, default, (8,), "a string")
    def get_u64(self, key, default=None): return self._typed(key, default, (10,), "a uint64")
    def get_i64(self, key, default=None): return self._typed(key, default, (11,), "an int64")
    def get_f64(self, key, default=None): return self._typed(key, default, (12,), "a float64")

    def get_int(self, key, default=None):
        """Any integer type, as a Python int."""
        return self._typed(key, default, _INT_TYPES, "an integer")

    def get_float(self, key, default=None):
        """float32 or float64, as a Python float."""
        return self._typed(key, default, _FLOAT_TYPES, "a float")

    def get_array(self, key, default=None, element_type=None):
        """An array value; with `element_type`, also checks the elements' type."""
        v = self._typed(key, default, (ZL_GGUF_TYPE_ARRAY,), "an array")
        if element_type is not None and key in self.index and self.element_type(key) != element_type:
            raise _gguf_error(GGUFTypeMismatch, f"kv {key!r}", self.offset(key),
                              f"is an array of {self.element_type(key).name.lower()}, "
                              f"not of {GGUFValueType(element_type).name.lower()}", self.reader.path)
        return v


Mapping.register(Metadata)


# No tp_clear: the collector would drop the buffer's exporter before __dealloc__ could
# release it, and a MemoryMap or bytearray would stay exported for ever. The reader's
# cycles (through its Metadata and arrays) are broken by clearing those instead.
@cython.no_gc_clear
cdef class GGUFReader:
    """A GGUF file, mapped and validated.

    ``GGUFReader(source)`` takes a path, a MemoryMap, or any bytes-like object.
    The whole structure is checked at open (see ``validate`` for the one check
    left: the UTF-8 of every string value); any violation raises a GGUFError
    naming the field and its byte offset.

    Attributes: ``version``, ``byte_order`` ("little"/"big"), ``alignment``,
    ``data_offset``, ``metadata`` (a read-only mapping), ``tensors`` (TensorInfo
    tuple, in file order). ``tensor(name)`` is a zero-copy view of a tensor's bytes.
    """

    def __cinit__(self):
        self.has_view = False

    def __init__(self, source):
        cdef const uint8_t *data
        cdef uint64_t size
        cdef int rc
        cdef zl_gguf_parse_args args
        if self.has_view:
            raise GGUFError("GGUFReader.__init__ called twice")
        self.path = None
        if isinstance(source, (str, os.PathLike)):
            self.path = source
            self.owned_map = MemoryMap.from_file(source)
            self.base = self.owned_map
        else:
            self.base = source
        PyObject_GetBuffer(self.base, &self.view, PyBUF_SIMPLE)
        self.has_view = True
        data = <const uint8_t *>self.view.buf
        size = <uint64_t>self.view.len
        args.ctx = &self.ctx
        args.data = data
        args.size = size
        with nogil:
            rc = fault_guarded_call(zl_gguf_parse_guarded, &args, -2)
        if rc == -2:
            self.close()
            raise _gguf_error(GGUFFileChanged, "header", 0, "the file shrank while it was being opened "
                              "(SIGBUS reading its map)", self.path)
        if rc != 0:
            err = _ctx_error(&self.ctx, self.path)
            self.close()
            raise err
        self._build_tables()

    cdef _build_tables(self):
        cdef Py_ssize_t i
        cdef const zl_gguf_kv *kv
        cdef const zl_gguf_tensor *t
        cdef const uint8_t *data = self.ctx.data
        md = Metadata.__new__(Metadata)
        (<Metadata>md).reader = self
        keys = []
        index = {}
        for i in range(<Py_ssize_t>self.ctx.n_kv):
            kv = &self.ctx.kv[i]
            key = PyUnicode_DecodeUTF8(<const char *>(data + kv.key_pos), kv.key_len, NULL)
            keys.append(key)
            index[key] = i
        (<Metadata>md).order = keys
        (<Metadata>md).index = index
        (<Metadata>md).cache = {}
        self.metadata = md
        infos = []
        self.tensor_index = {}
        for i in range(<Py_ssize_t>self.ctx.n_tensors):
            t = &self.ctx.tensors[i]
            name = PyUnicode_DecodeUTF8(<const char *>(data + t.name_pos), t.name_len, NULL)
            info = TensorInfo(name, t.type, [t.ne[d] for d in range(t.n_dims)], t.offset,
                              self.ctx.data_offset + t.offset, t.nbytes, t.info_pos)
            infos.append(info)
            self.tensor_index[name] = i
        self.tensors = tuple(infos)

    cdef int check_open(self) except -1:
        if not self.has_view:
            raise GGUFError(f"{self.path or 'GGUF data'}: the reader is closed")
        return 0

    cdef int pin(self) except -1:
        self.check_open()
        self.busy += 1
        return 0

    cdef void unpin(self) noexcept:
        self.busy -= 1

    # ---- header -------------------------------------------------------------------

    @property
    def version(self):
        return self.ctx.version

    @property
    def byte_order(self):
        return "big" if self.ctx.swapped else "little"

    @property
    def alignment(self):
        return self.ctx.alignment

    @property
    def data_offset(self):
        """Start of the tensor data section (a multiple of the alignment)."""
        return self.ctx.data_offset

    @property
    def file_size(self):
        return self.ctx.size

    @property
    def tensor_count(self):
        return self.ctx.n_tensors

    @property
    def kv_count(self):
        return self.ctx.n_kv

    @property
    def closed(self):
        return not self.has_view

    # ---- values ---------------------------------------------------------------------

    cdef object _dtype(self, uint32_t value_type):
        dt = _VALUE_DTYPES[value_type]
        return dt.newbyteorder(">") if self.ctx.swapped and dt.itemsize > 1 else dt

    def _kv_value(self, Py_ssize_t i, key):
        self.check_open()
        cdef const zl_gguf_kv *kv = &self.ctx.kv[i]
        what = f"kv[{i}] {key!r}"
        if kv.type == ZL_GGUF_TYPE_STRING:
            return _decode_string(self, kv.value_pos, what + ".value")
        if kv.type == ZL_GGUF_TYPE_ARRAY:
            if kv.elem_type == ZL_GGUF_TYPE_STRING:
                return self._string_array(self.ctx.str_index + kv.index if kv.count else NULL, None,
                                          kv.count, what)
            return self._array_at(kv.value_pos, 1, what)
        return self._scalar(kv.type, kv.data_pos)

    cdef object _scalar(self, uint32_t value_type, uint64_t pos):
        v = np.frombuffer(self.base, dtype=self._dtype(value_type), count=1, offset=pos)[0]
        return v.item()

    cdef object _string_array(self, const uint64_t *positions, object owner, uint64_t n, str what):
        s = StringArray.__new__(StringArray)
        (<StringArray>s).reader = self
        (<StringArray>s).positions = positions
        (<StringArray>s).positions_owner = owner
        (<StringArray>s).n = n
        (<StringArray>s).what = what
        return s

    def _array_at(self, uint64_t pos, int depth, str what):
        """The array whose element-type field is at pos (validated at open)."""
        cdef uint32_t et
        cdef uint64_t count, data_pos, esz
        cdef uint64_t[::1] p
        self.check_open()
        if zl_gguf_array_header(&self.ctx, pos, &et, &count, &data_pos) != 0:
            raise _gguf_error(GGUFFileChanged, what, pos, "the array's header no longer fits the file: "
                              "the file changed after it was opened", self.path)
        # The count is read again here: it must still fit what was validated at open
        # (each element takes at least 8 bytes unless it is a number).
        esz = zl_gguf_type_size(et)
        if count > (self.ctx.size - data_pos) // (esz if esz else 8):
            raise _changed(self, what, pos + 4, count)
        if esz:
            arr = np.frombuffer(self.base, dtype=self._dtype(et), count=count, offset=data_pos)
            return arr
        positions = np.empty(count, dtype=np.uint64)
        if count:
            p = positions
            if zl_gguf_array_index(&self.ctx, pos, &p[0]) != 0:
                raise _gguf_error(GGUFLayoutError, what, pos, "array outside the file", self.path)
        if et == ZL_GGUF_TYPE_STRING:
            return self._string_array(&p[0] if count else NULL, positions, count, what)
        a = NestedArray.__new__(NestedArray)
        (<NestedArray>a).reader = self
        (<NestedArray>a).positions = positions
        (<NestedArray>a).n = count
        (<NestedArray>a).depth = depth
        (<NestedArray>a).what = what
        return a

    # ---- tensors --------------------------------------------------------------------

    def tensor_names(self):
        """The tensors' names, in file order."""
        return [info.name for info in self.tensors]

    def tensor_info(self, name):
        """The TensorInfo of a tensor, by name."""
        try:
            return self.tensors[self.tensor_index[name]]
        except KeyError:
            raise GGUFMissingKey(f"{self.path or 'GGUF data'}: no tensor named {name!r}") from None

    def tensor(self, name):
        """A zero-copy, read-only view of a tensor's data, in numpy order.

        F32, F16, BF16, F64, I8 and I32 tensors are zigllama ``Tensor``s of ``shape``.
        The rest are numpy arrays: I16/I64 typed; block formats uint8 with a row's
        bytes as the last axis (``shape[:-1] + (row_bytes,)``, (n_rows, row_bytes)
        for a matrix, as in the gguf package). A big-endian file's tensors are numpy
        arrays with a ``>`` dtype (a Tensor is native-endian), BF16 as its uint16 bits;
        so are empty and 0-d tensors. ``np.asarray`` of any of them is a view.
        """
        self.check_open()
        info = self.tensor_info(name)
        t = info.ggml_type
        name_of = _TENSOR_CLASS_DTYPES.get(t)
        if (name_of is not None and not self.ctx.swapped and info.nbytes and info.n_dims
                and (<uintptr_t>self.view.buf + <uintptr_t>info.data_offset) % _TENSOR_DTYPES[t].itemsize == 0):
            return Tensor.from_buffer(self.base, name_of, info.shape, info.data_offset)
        return self._numpy_view(info)

    cdef object _numpy_view(self, TensorInfo info):
        t = info.ggml_type
        dt = _TENSOR_DTYPES.get(t)
        if dt is not None:
            if self.ctx.swapped and dt.itemsize > 1:
                dt = dt.newbyteorder(">")
            shape = info.shape
        else:
            dt = np.dtype(np.uint8)
            block, size = GGML_TYPE_TRAITS[t]
            shape = info.shape[:info.n_dims - 1] + (info.ne[0] // block * size,)
        if info.nbytes == 0:
            return np.empty(shape, dtype=dt)
        arr = np.frombuffer(self.base, dtype=dt, count=info.nbytes // dt.itemsize, offset=info.data_offset)
        return arr.reshape(shape)

    def load(self, name, dtype="float32", out=None, threads=None):
        """A tensor dequantized to float32 (every GGML type): a new ``Tensor`` of the
        tensor's shape (a 0-d tensor, one element, as shape (1,), and an empty tensor as
        an empty float32 numpy array: a Tensor has at least one element), or ``out``
        (float32, C-contiguous, that many elements) filled. The bytes are decoded
        straight from the map, rows split across ``threads`` (a big-endian file's
        blocks from a copy with their scales swapped)."""
        try:
            is_f32 = np.dtype(dtype) == np.float32
        except Exception:  # TypeError, or a UnicodeEncodeError for a name numpy cannot even read
            is_f32 = False
        if not is_f32:
            raise UnsupportedDtype(f"load decodes to float32, not {dtype!r}")
        from .quantization import dequantize, dequantize_tensor
        info = self.tensor_info(name)
        if self.ctx.swapped and info.ggml_type.is_quantized:
            # a big-endian file's block scales are big-endian too (as gguf-convert-endian
            # and ggml on a big-endian host write them): decode a little-endian copy
            from ..gguf_endian import swap_block_bytes
            raw = self.raw_tensor(name)
            # the copy reads the map in numpy: its pages are read under the SIGBUS guard
            # first (as the other byte order's conversions in quantization do)
            if raw.size and fault_touch(<const void *><uintptr_t>array_data(raw), raw.nbytes) != 0:
                raise GGUFFileChanged(
                    f"{self.path or 'GGUF data'}: tensor {name!r} (bytes {info.data_offset}.."
                    f"{info.data_offset + info.nbytes}) is past the end of the file now (SIGBUS): "
                    "the file shrank after it was opened")
            little = swap_block_bytes(raw, info.ggml_type)
            return dequantize(little, int(info.ggml_type), info.shape, out=out, threads=threads)
        return dequantize_tensor(self, name, out=out, threads=threads)

    def quantized(self, name):
        """A tensor as a ``QuantizedTensor``: a zero-copy view of its blocks in the map
        (kept alive by the view), shape in numpy order, for ``zigllama.qgemm``."""
        self.check_open()
        info = self.tensor_info(name)
        if self.ctx.swapped:
            raise GGUFError(f"{self.path or 'GGUF data'}: tensor {name!r} is in a big-endian file; "
                            f"quantized views need native byte order (load() converts)")
        from .qmatmul import QuantizedTensor
        return QuantizedTensor(self.raw_tensor(name), info.ggml_type, info.shape)

    def raw_tensor(self, name):
        """A tensor's bytes as a flat uint8 view."""
        self.check_open()
        info = self.tensor_info(name)
        if info.nbytes == 0:
            return np.empty(0, dtype=np.uint8)
        return np.frombuffer(self.base, dtype=np.uint8, count=info.nbytes, offset=info.data_offset)

    # ---- checks ---------------------------------------------------------------------

    def validate(self):
        """The checks not done at open: the UTF-8 of every string value. Raises a
        GGUFError on the first bad one; returns None if the file is valid."""
        cdef int rc
        self.check_open()
        self.busy += 1
        try:
            with nogil:
                rc = fault_guarded_call(zl_gguf_check_strings_guarded, &self.ctx, -2)
        finally:
            self.busy -= 1
        if rc == -2:
            self.ctx.err = 0
            raise _gguf_error(GGUFFileChanged, "metadata", 0, "part of the file is past its end now "
                              "(SIGBUS): the file shrank after it was opened", self.path)
        if rc != 0:
            err = _ctx_error(&self.ctx, self.path)
            self.ctx.err = 0
            raise err

    # ---- lifetime -------------------------------------------------------------------

    def close(self):
        """Release the file. Views taken from it stay valid (they keep the map alive).

        The parsed tables (positions, not bytes) live until the reader is collected:
        an object that checked the reader was open a moment before another thread
        closed it still reads valid tables, and every read of the file's bytes checks
        again."""
        if self.busy:
            raise GGUFError(f"{self.path or 'GGUF data'}: close() while another thread validates the file "
                            "or nogil code reads it (the reader is pinned)")
        if self.metadata is not None:
            (<Metadata>self.metadata).cache.clear()  # its array views hold the map too
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False
        if self.owned_map is not None:
            _close_map(self.owned_map)
            self.owned_map = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.has_view:
            PyBuffer_Release(&self.view)
        zl_gguf_free(&self.ctx)

    def __reduce__(self):
        raise NotCopyable(f"a {type(self).__name__} cannot be pickled or copied: it holds the open file; pickle its path and open it again")

    def __repr__(self):
        if not self.has_view:
            return f"<GGUFReader {self.path!r} closed>"
        return (f"<GGUFReader {self.path or 'buffer'!s}: GGUF v{self.ctx.version} {self.byte_order}-endian, "
                f"{self.ctx.n_kv} keys, {self.ctx.n_tensors} tensors, alignment {self.ctx.alignment}>")


def validate(source):
    """Check a GGUF file (path, MemoryMap or bytes) against every rule: raises a
    GGUFError naming the field and byte offset of the first violation; returns None
    if the file is valid."""
    with GGUFReader(source) as r:
        r.validate()
