"""The checks of quantization's Python entry points (dequantize, quantize,
dequantize_tensor): what a caller passed, turned into the buffers the C kernels
take, or a QuantizationError that says what was wrong. Plain Python: the
kernels themselves are in quantization.pyx."""
from __future__ import annotations

import operator
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import QuantizationError
from .tensor import Tensor


def as_byte_buffer(raw: Any) -> npt.NDArray[np.uint8]:
    """A zero-copy uint8 view of any C-contiguous bytes-like object or array."""
    if isinstance(raw, np.ndarray):
        if not raw.flags.c_contiguous:
            raise QuantizationError("raw data must be C-contiguous")
        if raw.dtype.hasobject:
            raise QuantizationError(f"raw data must be bytes, not an array of {raw.dtype}")
        return raw.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(raw, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as e:
        raise QuantizationError(f"raw data must be a C-contiguous bytes-like object: {e}") from None


def as_shape(shape: Any) -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints (an int is one dimension)."""
    dims: tuple[int, ...]
    try:
        dims = (operator.index(shape),)
    except TypeError:
        try:
            dims = tuple(operator.index(d) for d in shape)
        except TypeError:
            raise QuantizationError(f"shape must be a tuple of ints, got {shape!r}") from None
    if not dims:
        raise QuantizationError("shape must have at least one dimension")
    if any(d < 0 for d in dims):
        raise QuantizationError(f"shape {dims} has a negative dimension")
    return dims


def check_out(out: Any, dims: tuple[int, ...], n: int) -> npt.NDArray[np.float32]:
    """The float32 numpy view of a suitable ``out`` (an ndarray or a Tensor)."""
    if isinstance(out, Tensor):
        if not out.valid:
            raise QuantizationError("out is a tensor whose memory is gone")
        out = np.asarray(out)
    if not isinstance(out, np.ndarray):
        raise QuantizationError(f"out must be a numpy array or a Tensor, got {type(out).__name__}")
    if out.dtype != np.float32:
        raise QuantizationError(f"out must have dtype float32, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise QuantizationError("out must be C-contiguous")
    if not out.flags.writeable:
        raise QuantizationError("out is read-only")
    if out.size != n:
        raise QuantizationError(f"out has {out.size} elements, shape {dims} needs {n}")
    return out


def as_imatrix(imatrix: Any, row: int, name: str) -> npt.NDArray[np.float32]:
    """One float32 weight per column, C-contiguous, finite and non-negative."""
    try:
        w = np.ascontiguousarray(imatrix, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise QuantizationError(f"imatrix must be an array of floats: {e}") from None
    if w.ndim != 1 or w.shape[0] != row:
        raise QuantizationError(f"imatrix must hold one weight per column: {row}, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise QuantizationError(f"imatrix weights for {name} must be finite and non-negative")
    return w
