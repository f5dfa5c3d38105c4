"""Writing GGUF files, streamed tensor by tensor, and rewriting their metadata.

``GGUFWriter`` writes the header, the metadata and every tensor info first (the
offsets follow from the declared shapes and types), then each tensor's bytes as
they are given: a model is never held in memory as a whole. ``rewrite_metadata``
copies a file with keys added, changed or removed; its tensor bytes are copied in
chunks from the map, never decoded (what llama.cpp's gguf-new-metadata does).

The writer checks what the reader checks (key and name rules, types, block
multiples, alignment), so every file it writes reads back.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, NoReturn, SupportsIndex, cast

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Buffer, Self

from .errors import (GGUFDuplicate, GGUFError, GGUFInvalidValue, GGUFLayoutError, GGUFLimitExceeded, GGUFMissingKey,
                     GGUFUnknownType, NotCopyable)
from .ggml_types import GGML_TYPE_TRAITS, GGMLType
from ._core.gguf_format import (
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAX_ALIGNMENT,
    GGUF_MAX_ARRAY_DEPTH,
    GGUF_MAX_NAME,
    GGUFReader,
)
from ._core.gguf_value_types import INT_RANGES, TENSOR_DTYPES, VALUE_DTYPES, GGUFValueType

__all__ = ["GGUFWriter", "GGUFValue", "rewrite_metadata", "float32_to_bfloat16"]

# ggml's GGML_MAX_NAME counts the NUL: a name holds one byte fewer.
_MAX_NAME = GGUF_MAX_NAME - 1
_COPY_CHUNK = 64 << 20

_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h", GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?", GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}
_NUMPY_TO_VALUE = {dt: t for t, dt in VALUE_DTYPES.items()}
_VALUE_TO_NUMPY = VALUE_DTYPES
_INT_RANGES = INT_RANGES
# ggml type -> the numpy dtype its plain elements are given in
_TENSOR_NUMPY = TENSOR_DTYPES
_NUMPY_TO_GGML = {v: k for k, v in _TENSOR_NUMPY.items() if k != GGMLType.BF16}


class GGUFValue:
    """A metadata value with its GGUF type stated (and its element type, for arrays)."""

    __slots__ = ("value", "type", "element_type")

    def __init__(self, value: Any, type: SupportsIndex, element_type: SupportsIndex | None = None) -> None:
        self.value = value
        self.type = _value_type(type)
        self.element_type: GGUFValueType | None = None if element_type is None else _value_type(element_type)

    def __repr__(self) -> str:
        et = f", element_type={self.element_type.name}" if self.element_type is not None else ""
        return f"GGUFValue({self.value!r}, {self.type.name}{et})"


def float32_to_bfloat16(a: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """bfloat16 bit patterns (uint16) of float32 values: round to nearest even, NaNs
    kept quiet (as ggml and the gguf package do)."""
    n: Any = np.asarray(a, dtype=np.float32).view(np.uint32)
    n = np.where((n & 0x7FFFFFFF) > 0x7F800000, (n & np.uint32(0xFFFF0000)) | np.uint32(64 << 16), n)
    n = (n.astype(np.uint64) + (0x7FFF + ((n >> 16) & 1))) >> 16
    bits: npt.NDArray[np.uint16] = n.astype(np.uint16)
    return bits


def _infer_type(value: Any) -> GGUFValueType:
    """GGUF type of a Python/numpy value, as the gguf package infers it (int32 for
    ints that fit, float32 for floats) but widening ints that do not fit."""
    if isinstance(value, GGUFValue):
        return value.type
    if isinstance(value, (str, bytes, bytearray)):
        return GGUFValueType.STRING
    if isinstance(value, (bool, np.bool_)):
        return GGUFValueType.BOOL
    if isinstance(value, np.generic):
        try:
            return _NUMPY_TO_VALUE[value.dtype]
        except KeyError:
            raise GGUFInvalidValue(f"no GGUF type for numpy {value.dtype}") from None
    if isinstance(value, int):
        if -2**31 <= value < 2**31:
            return GGUFValueType.INT32
        if -2**63 <= value < 2**63:
            return GGUFValueType.INT64
        return GGUFValueType.UINT64
    if isinstance(value, float):
        return GGUFValueType.FLOAT32
    if isinstance(value, (np.ndarray, Sequence)):
        return GGUFValueType.ARRAY
    raise GGUFInvalidValue(f"no GGUF type for a {type(value).__name__}")


def _infer_element_type(values: Any) -> GGUFValueType:
    if isinstance(values, np.ndarray):
        try:
            return _NUMPY_TO_VALUE[values.dtype.newbyteorder("=")]
        except KeyError:
            raise GGUFInvalidValue(f"no GGUF element type for numpy {values.dtype}") from None
    if isinstance(values, (bytes, bytearray)):
        return GGUFValueType.UINT8
    if len(values) == 0:
        raise GGUFInvalidValue("an empty array needs an explicit element_type")
    types = {_infer_type(v) for v in values}
    if types <= {GGUFValueType.INT32, GGUFValueType.INT64, GGUFValueType.UINT64}:
        return max(types, key=lambda t: (t == GGUFValueType.UINT64, t == GGUFValueType.INT64))
    if len(types) != 1:
        raise GGUFInvalidValue(f"array elements of mixed types {sorted(t.name for t in types)}")
    return types.pop()


class _Encoder:
    """Metadata values to bytes, in one byte order."""

    def __init__(self, byte_order: str) -> None:
        self.e: Literal["<", ">"] = ">" if byte_order == "big" else "<"

    def u32(self, v: int) -> bytes:
        return struct.pack(self.e + "I", v)

    def u64(self, v: int) -> bytes:
        return struct.pack(self.e + "Q", v)

    def string(self, s: str | bytes | bytearray) -> bytes:
        """A GGUF string: UTF-8 (a lone surrogate or bytes that are not UTF-8 would make
        a file the reader's validate() rejects)."""
        try:
            b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
            if not isinstance(s, str):
                b.decode("utf-8")
        except UnicodeError as exc:
            raise GGUFInvalidValue(f"a GGUF string must be UTF-8: {exc}") from None
        return self.u64(len(b)) + b

    def scalar(self, t: GGUFValueType, v: Any, where: str) -> bytes:
        if isinstance(v, GGUFValue):
            v = v.value
        if t == GGUFValueType.BOOL:
            if v not in (0, 1, True, False):
                raise GGUFInvalidValue(f"{where}: a bool must be True or False, not {v!r}")
            return b"\x01" if v else b"\x00"
        if t in _INT_RANGES:
            lo, hi = _INT_RANGES[t]
            if isinstance(v, (float, np.floating)) or not lo <= int(v) <= hi:
                raise GGUFInvalidValue(f"{where}: {v!r} does not fit a {t.name.lower()}")
            v = int(v)
        return struct.pack(self.e + _SCALAR_FORMATS[t], v)

    def value(self, t: GGUFValueType, v: Any, et: SupportsIndex | None = None, where: str = "",
              depth: int = 0) -> bytes:
        """The bytes of a value (without its type field)."""
        if isinstance(v, GGUFValue):
            t, et, v = v.type, v.element_type if et is None else et, v.value
        if t == GGUFValueType.STRING:
            if not isinstance(v, (str, bytes, bytearray)):
                raise GGUFInvalidValue(f"{where}: a string value must be str or bytes, not {type(v).__name__}")
            return self.string(v)
        if t != GGUFValueType.ARRAY:
            return self.scalar(t, v, where)
        if depth >= GGUF_MAX_ARRAY_DEPTH:
            raise GGUFLimitExceeded(f"{where}: arrays nested deeper than {GGUF_MAX_ARRAY_DEPTH} levels")
        if not isinstance(v, (np.ndarray, Sequence)) or isinstance(v, str):
            raise GGUFInvalidValue(f"{where}: an array value must be a sequence or numpy array")
        if isinstance(v, np.ndarray) and v.ndim != 1:
            # the count written must be the elements written: never guess a flattening
            raise GGUFInvalidValue(f"{where}: a {v.ndim}-d array of shape {v.shape}; GGUF arrays are "
                                   f"1-d: pass values.ravel() to store its elements flat")
        et = _infer_element_type(v) if et is None else _value_type(et)
        head = self.u32(et) + self.u64(len(v))
        if et in _VALUE_TO_NUMPY:
            dt = _VALUE_TO_NUMPY[et]
            if et in _INT_RANGES and not isinstance(v, np.ndarray) and len(v):
                lo, hi = _INT_RANGES[et]
                if not all(isinstance(x, (int, np.integer)) for x in v) or min(v) < lo or max(v) > hi:
                    raise GGUFInvalidValue(f"{where}: elements are not all integers that fit a "
                                           f"{et.name.lower()}")
            if et == GGUFValueType.BOOL and len(v) and not np.isin(np.asarray(v), (0, 1)).all():
                raise GGUFInvalidValue(f"{where}: bools must be True or False")
            try:
                a = np.asarray(v, dtype=dt)  # ints were range-checked: exact even for 2**64-1
            except (TypeError, ValueError, OverflowError) as exc:
                raise GGUFInvalidValue(f"{where}: elements are not all {et.name.lower()}s: {exc}") from None
            if a.shape != (len(v),):
                raise GGUFInvalidValue(f"{where}: {len(v)} elements that are not all {et.name.lower()}s "
                                       f"(nested sequences make an array of shape {a.shape})")
            if isinstance(v, np.ndarray) and not np.array_equal(a, v, equal_nan=a.dtype.kind == "f"):
                raise GGUFInvalidValue(f"{where}: {v.dtype} elements do not all fit a {et.name.lower()}")
            return head + np.ascontiguousarray(a, dtype=dt.newbyteorder(self.e)).tobytes()
        if et == GGUFValueType.STRING:
            for i, s in enumerate(v):
                if not isinstance(s, (str, bytes, bytearray)):
                    raise GGUFInvalidValue(f"{where}[{i}]: a string element must be str or bytes, "
                                           f"not {type(s).__name__}")
            return head + b"".join(self.string(s) for s in v)
        for i, x in enumerate(v):
            if isinstance(x, GGUFValue) and x.type != GGUFValueType.ARRAY:
                raise GGUFInvalidValue(f"{where}[{i}]: an element of an array of arrays must be an array, "
                                       f"not a {x.type.name.lower()}")
        return head + b"".join(self.value(GGUFValueType.ARRAY, x, None, f"{where}[{i}]", depth + 1)
                               for i, x in enumerate(v))


class _TensorSlot:
    __slots__ = ("name", "ggml_type", "shape", "nbytes", "offset", "written", "data")

    def __init__(self, name: str, ggml_type: GGMLType, shape: tuple[int, ...], nbytes: int) -> None:
        self.name, self.ggml_type, self.shape, self.nbytes = name, ggml_type, shape, nbytes
        self.offset = 0
        self.written = False
        self.data: npt.NDArray[Any] | None = None


class GGUFWriter:
    """Write a GGUF file (version 3).

    >>> w = GGUFWriter("model.gguf", alignment=32)         # doctest: +SKIP
    >>> w.add("general.architecture", "llama")             # doctest: +SKIP
    >>> w.add_tensor_info("tok_embd", (8, 4), GGMLType.F32)  # doctest: +SKIP
    >>> w.write_header()                                   # doctest: +SKIP
    >>> w.write_tensor("tok_embd", array)                  # doctest: +SKIP
    >>> w.close()                                          # doctest: +SKIP

    ``add_tensor(name, array)`` declares a tensor and keeps a reference to its data
    until close() streams it out; ``add_tensor_info`` + ``write_tensor`` write it
    only when given (any order, each once). Shapes are numpy order.
    """

    def __init__(self, path: str | os.PathLike[str], *, alignment: int = GGUF_DEFAULT_ALIGNMENT,
                 byte_order: str = "little", version: int = 3) -> None:
        if byte_order not in ("little", "big"):
            raise ValueError(f"byte_order must be 'little' or 'big', not {byte_order!r}")
        if version not in (2, 3):
            raise GGUFInvalidValue(f"GGUF version {version}: only 2 and 3 can be written")
        self.path = os.fspath(path)
        self.byte_order = byte_order
        self.version = version
        self._enc = _Encoder(byte_order)
        self._kv: dict[str, bytes] = {}              # key -> encoded value (type field + value)
        self._tensors: dict[str, _TensorSlot] = {}   # in declaration order
        self._file: IO[bytes] | None = None
        self._data_offset = 0
        self._end = 0
        self._closed = False
        self.alignment = GGUF_DEFAULT_ALIGNMENT
        if alignment != GGUF_DEFAULT_ALIGNMENT:
            self.add("general.alignment", alignment, GGUFValueType.UINT32)

    # ---- metadata -----------------------------------------------------------------

    def _check_open_for_declarations(self, what: str) -> None:
        if self._file is not None or self._closed:
            raise GGUFError(f"{self.path}: {what} after the header was written")

    def add(self, key: str, value: Any, value_type: SupportsIndex | None = None,
            element_type: SupportsIndex | None = None) -> None:
        """Add a key. Its type is inferred if not given (str -> string, bool -> bool,
        int -> int32/int64, float -> float32, list/array -> array)."""
        self._check_open_for_declarations(f"key {key!r} added")
        if len(_name_bytes(key, "a key")) > 65535:
            raise GGUFLimitExceeded(f"key {key[:40]!r}... is longer than 65535 bytes")
        if key in self._kv:
            raise GGUFDuplicate(f"key {key!r} added twice")
        if isinstance(value, GGUFValue):
            value_type = value.type if value_type is None else value_type
            element_type = value.element_type if element_type is None else element_type
            value = value.value
        t = _infer_type(value) if value_type is None else _value_type(value_type)
        if key == "general.alignment":
            if t != GGUFValueType.UINT32:
                raise GGUFInvalidValue(f"general.alignment must be a uint32, not {t.name.lower()}")
            self.alignment = _check_alignment(value)
        self._kv[key] = self._enc.u32(t) + self._enc.value(t, value, element_type, f"key {key!r}")

    def add_raw(self, key: str, raw: Buffer | npt.NDArray[Any]) -> None:
        """Add a key whose value is already encoded (type field + value, this byte order)."""
        self._check_open_for_declarations(f"key {key!r} added")
        if len(_name_bytes(key, "a key")) > 65535:
            raise GGUFLimitExceeded(f"key {key[:40]!r}... is longer than 65535 bytes")
        if key in self._kv:
            raise GGUFDuplicate(f"key {key!r} added twice")
        if key == "general.alignment":
            raise GGUFInvalidValue("general.alignment decides the layout: set it with add()")
        self._kv[key] = bytes(raw)

    def remove(self, key: str) -> None:
        self._check_open_for_declarations(f"key {key!r} removed")
        if key not in self._kv:
            raise GGUFMissingKey(f"no key {key!r} to remove")
        del self._kv[key]
        if key == "general.alignment":
            self.alignment = GGUF_DEFAULT_ALIGNMENT

    def add_uint8(self, key: str, v: int) -> None: self.add(key, v, GGUFValueType.UINT8)
    def add_int8(self, key: str, v: int) -> None: self.add(key, v, GGUFValueType.INT8)
    def add_uint16(self, key: str, v: int) -> None: self.add(key, v, GGUFValueType.UINT16)
    def add_int16(self, key: str, v: int) -> None: self.add(key, v, GGUFValueType.INT16)
    def add_uint32(self, key: str, v: int) -> None: self.add(key, v, GGUFValueType.UINT32)
    def add_int32(self, key: str, v: int) -> None: self.add(key, v, GGUFValueType.INT32)
    def add_float32(self, key: str, v: float) -> None: self.add(key, v, GGUFValueType.FLOAT32)
    def add_bool(self, key: str, v: bool) -> None: self.add(key, v, GGUFValueType.BOOL)
    def add_string(self, key: str, v: str) -> None: self.add(key, v, GGUFValueType.STRING)
    def add_uint64(self, key: str, v: int) -> None: self.add(key, v, GGUFValueType.UINT64)
    def add_int64(self, key: str, v: int) -> None: self.add(key, v, GGUFValueType.INT64)
    def add_float64(self, key: str, v: float) -> None: self.add(key, v, GGUFValueType.FLOAT64)

    def add_array(self, key: str, values: Sequence[Any] | npt.NDArray[Any],
                  element_type: SupportsIndex | None = None) -> None:
        self.add(key, values, GGUFValueType.ARRAY, element_type)

    # ---- tensors ------------------------------------------------------------------

    def add_tensor_info(self, name: str, shape: Sequence[SupportsIndex], ggml_type: SupportsIndex) -> None:
        """Declare a tensor of numpy-order `shape` (the last axis is ggml's ne[0])."""
        self._check_open_for_declarations(f"tensor {name!r} declared")
        t = _ggml_type(ggml_type)
        raw = _name_bytes(name, "a tensor name")
        if len(raw) > _MAX_NAME:
            raise GGUFLimitExceeded(f"tensor name {name!r} is {len(raw)} bytes; at most {_MAX_NAME}")
        if name in self._tensors:
            raise GGUFDuplicate(f"tensor {name!r} declared twice")
        dims = tuple(int(n) for n in shape)
        if len(dims) > 4:
            raise GGUFLimitExceeded(f"tensor {name!r}: {len(dims)} dimensions; at most 4")
        if any(n < 0 for n in dims):
            raise GGUFInvalidValue(f"tensor {name!r}: negative dimension in {dims}")
        block, size = GGML_TYPE_TRAITS[t]
        ne0 = dims[-1] if dims else 1
        if ne0 % block:
            raise GGUFLayoutError(f"tensor {name!r}: a row of {ne0} is not a multiple of "
                                  f"{t.name}'s block size {block}")
        rows = 1
        for n in dims[:-1]:
            rows *= n
        self._tensors[name] = _TensorSlot(name, t, dims, rows * (ne0 // block) * size)

    def add_tensor(self, name: str, data: npt.ArrayLike, ggml_type: SupportsIndex | None = None,
                   shape: Sequence[SupportsIndex] | None = None) -> None:
        """Declare a tensor and keep `data` until close() writes it.

        float32 data with ggml_type F16 or BF16 is converted when written; uint8 data
        with a block ggml_type is raw blocks, of logical `shape` (numpy order; by
        default the byte shape's last axis converted back to elements).
        """
        array = np.asarray(data)
        t, dims = _tensor_type_and_shape(name, array, ggml_type, shape)
        self.add_tensor_info(name, dims, t)
        self._tensors[name].data = array

    def _layout(self) -> int:
        """Offsets of every tensor (in declaration order, each padded)."""
        a = self.alignment
        off = 0
        for slot in self._tensors.values():
            slot.offset = off
            off += -(-slot.nbytes // a) * a
        return off

    def write_header(self) -> None:
        """Write the header, the metadata and the tensor infos; tensors come next."""
        if self._file is not None or self._closed:
            raise GGUFError(f"{self.path}: the header was already written")
        e = self._enc
        total = self._layout()
        out: list[bytes] = [b"GGUF", e.u32(self.version), e.u64(len(self._tensors)), e.u64(len(self._kv))]
        for key, raw in self._kv.items():
            out += [e.string(key), raw]
        for slot in self._tensors.values():
            ne = slot.shape[::-1]
            out += [e.string(slot.name), e.u32(len(ne))] + [e.u64(n) for n in ne]
            out += [e.u32(slot.ggml_type), e.u64(slot.offset)]
        head = b"".join(out)
        self._data_offset = -(-len(head) // self.alignment) * self.alignment
        self._file = f = open(self.path, "wb")
        f.write(head + bytes(self._data_offset - len(head)))
        self._end = self._data_offset + total

    def write_tensor(self, name: str, data: npt.ArrayLike, ggml_type: SupportsIndex | None = None) -> None:
        """Write one declared tensor's data (in any order, each tensor once); a
        `ggml_type` given must be the declared one."""
        if self._file is None:
            self.write_header()
        slot = self._slot(name)
        if ggml_type is not None and _ggml_type(ggml_type) != slot.ggml_type:
            raise GGUFInvalidValue(f"{self.path}: tensor {name!r} was declared {slot.ggml_type.name}, "
                                   f"written as {_ggml_type(ggml_type).name}")
        if slot.written:
            raise GGUFDuplicate(f"{self.path}: tensor {name!r} written twice")
        f = self._open_file()
        for chunk in _tensor_chunks(slot, np.asarray(data), self.byte_order):
            f.seek(self._data_offset + slot.offset)
            f.write(chunk)
        slot.written = True
        slot.data = None

    def _open_file(self) -> IO[bytes]:
        if self._file is None:
            self.write_header()
        assert self._file is not None
        return self._file

    def _slot(self, name: str) -> _TensorSlot:
        if self._closed:
            raise GGUFError(f"{self.path}: the writer is closed")
        try:
            return self._tensors[name]
        except (KeyError, TypeError):
            raise GGUFMissingKey(f"{self.path}: no tensor {name!r} was declared") from None

    def write_tensor_bytes(self, name: str, chunks: Iterable[Buffer | npt.NDArray[Any]]) -> None:
        """Write a declared tensor's bytes as given (an iterable of bytes-like chunks,
        already in the file's layout and byte order): for copying without decoding."""
        if self._file is None:
            self.write_header()
        slot = self._slot(name)
        if slot.written:
            raise GGUFDuplicate(f"{self.path}: tensor {name!r} written twice")
        n = 0
        closed = GGUFError(f"{self.path}: the writer was closed while tensor {name!r} was written")
        f = self._open_file()
        try:
            f.seek(self._data_offset + slot.offset)
        except (ValueError, AttributeError):  # closed by another thread meanwhile
            raise closed from None
        for c in chunks:  # the chunks' own errors pass through as they are
            try:
                n += f.write(cast("Buffer", c))
            except (ValueError, AttributeError):
                raise closed from None
        if n != slot.nbytes:
            raise GGUFLayoutError(f"{self.path}: tensor {name!r}: {n} bytes given, {slot.nbytes} declared")
        slot.written = True

    def close(self) -> None:
        """Write what is left (tensors given to add_tensor), pad, and close the file."""
        if self._closed:
            return
        f = self._open_file()
        try:
            for slot in self._tensors.values():
                if not slot.written and slot.data is not None:
                    self.write_tensor(slot.name, slot.data)
            missing = [s.name for s in self._tensors.values() if not s.written]
            if missing:
                raise GGUFError(f"{self.path}: tensors declared but never written: {', '.join(missing[:5])}")
            f.truncate(self._end)
        finally:
            f.close()
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __reduce__(self) -> NoReturn:
        raise NotCopyable(f"a {type(self).__name__} cannot be pickled or copied: it writes an open file")

    def __exit__(self, exc_type: type[BaseException] | None,
                 *exc: BaseException | TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        elif self._file is not None:
            self._file.close()
            self._closed = True


def _check_alignment(value: Any) -> int:
    a = int(value)
    if a <= 0 or a & (a - 1):
        raise GGUFInvalidValue(f"the alignment must be a non-zero power of two, not {a}")
    if a > GGUF_MAX_ALIGNMENT:
        raise GGUFLimitExceeded(f"alignment {a} exceeds the bound {GGUF_MAX_ALIGNMENT}")
    return a


def _value_type(t: Any) -> GGUFValueType:
    try:
        return GGUFValueType(t)
    except (ValueError, TypeError):
        raise GGUFUnknownType(f"{t!r} is not a GGUF value type (0..12 or a GGUFValueType)") from None


def _ggml_type(t: Any) -> GGMLType:
    try:
        return GGMLType(t)
    except (ValueError, TypeError):
        raise GGUFUnknownType(f"{t!r} is not a ggml type (a GGMLType or its id)") from None


def _name_bytes(name: object, what: str) -> bytes:
    """A key's or tensor name's UTF-8: non-empty, no NUL (ggml keeps names as C
    strings, so "a\0b" would read as "a"), no lone surrogates."""
    if not isinstance(name, str) or not name:
        raise GGUFInvalidValue(f"{what} must be a non-empty string, not {name!r}")
    if "\0" in name:
        raise GGUFInvalidValue(f"{what} must not contain NUL: {name!r}")
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GGUFInvalidValue(f"{what} must be UTF-8: {exc}") from None


def _tensor_type_and_shape(name: str, data: npt.NDArray[Any], ggml_type: SupportsIndex | None,
                           shape: Sequence[SupportsIndex] | None) -> tuple[GGMLType, tuple[int, ...]]:
    if ggml_type is None:
        try:
            ggml_type = _NUMPY_TO_GGML[data.dtype.newbyteorder("=")]
        except KeyError:
            raise GGUFInvalidValue(f"tensor {name!r}: no ggml type for numpy {data.dtype}; "
                                   "give ggml_type") from None
    t = _ggml_type(ggml_type)
    if shape is None:
        shape = data.shape
        if t.is_quantized:
            if data.dtype != np.uint8 or not shape:
                raise GGUFInvalidValue(f"tensor {name!r}: {t.name} data must be uint8 blocks")
            block, size = GGML_TYPE_TRAITS[t]
            if shape[-1] % size:
                raise GGUFLayoutError(f"tensor {name!r}: rows of {shape[-1]} bytes are not whole "
                                      f"{t.name} blocks of {size} bytes")
            shape = shape[:-1] + (shape[-1] // size * block,)
    return t, tuple(shape)


def _tensor_chunks(slot: _TensorSlot, data: npt.NDArray[Any], byte_order: str) -> Iterator[memoryview]:
    """The bytes of a tensor's data, converted to its type and byte order."""
    t = slot.ggml_type
    if t.is_quantized:
        if data.dtype != np.uint8 or data.nbytes != slot.nbytes:
            raise GGUFLayoutError(f"tensor {slot.name!r}: {t.name} data must be {slot.nbytes} uint8 bytes, "
                                  f"got {data.nbytes} of {data.dtype}")
        yield np.ascontiguousarray(data).reshape(-1).data  # flat: castable even with no rows
        return
    want = _TENSOR_NUMPY[t]
    if t == GGMLType.BF16 and data.dtype.kind == "f":
        data = float32_to_bfloat16(data)
    elif data.dtype.newbyteorder("=") != want:
        if data.dtype.kind not in "fiub" or (want.kind in "iu" and data.dtype.kind == "f"):
            raise GGUFInvalidValue(f"tensor {slot.name!r}: cannot write {data.dtype} data as {t.name}")
        data = data.astype(want)
    if data.size * want.itemsize != slot.nbytes:
        raise GGUFLayoutError(f"tensor {slot.name!r}: {data.size} elements given, "
                              f"{slot.nbytes // want.itemsize} declared (shape {slot.shape})")
    target = want.newbyteorder(">" if byte_order == "big" else "<")
    data = np.ascontiguousarray(data, dtype=target)
    yield data.reshape(-1).view(np.uint8).data


def rewrite_metadata(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                     set: Mapping[str, Any] | None = None, remove: Iterable[str] = (), *,
                     alignment: int | None = None) -> None:
    """Copy the GGUF file `src` to `dst` with metadata keys set (added or changed)
    and removed; tensor bytes are copied in chunks, not decoded.

    `set` maps keys to values: a plain value keeps the key's current type (or is
    inferred for a new key); a GGUFValue states the type. Unchanged keys are copied
    byte for byte, in their order; new keys follow.
    """
    set = dict(set or {})
    remove = frozenset(remove)
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise GGUFError(f"{dst}: rewriting a file onto itself; write to another path")
    with GGUFReader(src) as r:
        md = r.metadata
        missing = [k for k in remove if k not in md]
        if missing:
            raise GGUFError(f"{src}: cannot remove keys it does not hold: {', '.join(sorted(missing))}")
        if alignment is not None:
            set["general.alignment"] = GGUFValue(alignment, GGUFValueType.UINT32)
        w = GGUFWriter(dst, byte_order=r.byte_order, version=r.version)
        for key in md:
            if key in remove:
                continue
            if key in set:
                v = set.pop(key)
                if isinstance(v, GGUFValue):
                    w.add(key, v)
                else:
                    w.add(key, v, md.value_type(key), md.element_type(key))
            elif key == "general.alignment":
                w.add(key, md[key], GGUFValueType.UINT32)  # the writer must know it
            else:
                w.add_raw(key, md.raw_value(key))
        for key, v in set.items():
            w.add(key, v)
        for info in r.tensors:
            w.add_tensor_info(info.name, info.shape, info.ggml_type)
        w.write_header()
        for info in r.tensors:
            raw = r.raw_tensor(info.name)
            w.write_tensor_bytes(info.name, (raw[i:i + _COPY_CHUNK] for i in range(0, max(len(raw), 1), _COPY_CHUNK)))
            del raw
        w.close()
