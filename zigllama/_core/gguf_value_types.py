"""GGUF's value types and the numpy dtypes of values and plain tensors: the one
table the reader (gguf_format) and the writer (zigllama.gguf_writer) share."""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from ..ggml_types import GGMLType


class GGUFValueType(IntEnum):
    """The type of a metadata value (GGUF's ids 0..12)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


#: Value type -> numpy dtype of one value, in native byte order (a file stores
#: them little-endian, or big-endian in a big-endian file).
VALUE_DTYPES: dict[GGUFValueType, np.dtype] = {
    GGUFValueType.UINT8: np.dtype(np.uint8), GGUFValueType.INT8: np.dtype(np.int8),
    GGUFValueType.UINT16: np.dtype(np.uint16), GGUFValueType.INT16: np.dtype(np.int16),
    GGUFValueType.UINT32: np.dtype(np.uint32), GGUFValueType.INT32: np.dtype(np.int32),
    GGUFValueType.FLOAT32: np.dtype(np.float32), GGUFValueType.BOOL: np.dtype(np.bool_),
    GGUFValueType.UINT64: np.dtype(np.uint64), GGUFValueType.INT64: np.dtype(np.int64),
    GGUFValueType.FLOAT64: np.dtype(np.float64),
}

#: Integer value type -> (least, greatest) value it holds.
INT_RANGES: dict[GGUFValueType, tuple[int, int]] = {
    t: (int(np.iinfo(dt).min), int(np.iinfo(dt).max)) for t, dt in VALUE_DTYPES.items() if dt.kind in "iu"}
INT_TYPES = frozenset(INT_RANGES)
FLOAT_TYPES = frozenset(t for t, dt in VALUE_DTYPES.items() if dt.kind == "f")

#: Plain (non-block) ggml type -> numpy dtype of its elements, native order. BF16
#: has no numpy dtype: its elements are their uint16 bit patterns.
TENSOR_DTYPES: dict[GGMLType, np.dtype] = {
    GGMLType.F32: np.dtype(np.float32), GGMLType.F16: np.dtype(np.float16),
    GGMLType.F64: np.dtype(np.float64), GGMLType.I8: np.dtype(np.int8),
    GGMLType.I16: np.dtype(np.int16), GGMLType.I32: np.dtype(np.int32),
    GGMLType.I64: np.dtype(np.int64), GGMLType.BF16: np.dtype(np.uint16),
}
