from collections.abc import Sequence
from typing import Any, Protocol, SupportsIndex, TypeAlias, TypeVar, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

from .tensor import Tensor

# a ggml type id, a gguf.GGMLQuantizationType member or a name such as "Q4_K"
_GGMLTypeLike: TypeAlias = SupportsIndex | str
_Shape: TypeAlias = SupportsIndex | Sequence[SupportsIndex]
_Out = TypeVar("_Out", npt.NDArray[np.float32], Tensor)

class _TensorSource(Protocol):
    def tensor_info(self, name: str, /) -> Any: ...
    def tensor(self, name: str, /) -> Any: ...

GGML_QUANT_SIZES: dict[int, tuple[int, int]]
QUANTIZE_TYPES: tuple[str, ...]
IMATRIX_TYPES: tuple[str, ...]

def ggml_type_id(ggml_type: _GGMLTypeLike) -> int: ...
def ggml_type_name(ggml_type: _GGMLTypeLike) -> str: ...
def has_kernel(ggml_type: _GGMLTypeLike) -> bool: ...
def simd_active() -> bool: ...
def simd_path() -> str: ...
def streaming_min_bytes() -> int: ...
@overload
def dequantize(
    raw: Buffer | npt.NDArray[Any], ggml_type: _GGMLTypeLike, shape: _Shape,
    out: None = None, threads: int | None = None,
) -> Tensor: ...
@overload
def dequantize(
    raw: Buffer | npt.NDArray[Any], ggml_type: _GGMLTypeLike, shape: _Shape,
    out: _Out, threads: int | None = None,
) -> _Out: ...
def quantize(
    array: npt.ArrayLike, ggml_type: _GGMLTypeLike, threads: int | None = None,
    imatrix: npt.ArrayLike | None = None,
) -> npt.NDArray[np.uint8]: ...
@overload
def dequantize_tensor(source: _TensorSource, name: str, out: None = None, threads: int | None = None) -> Tensor: ...
@overload
def dequantize_tensor(source: _TensorSource, name: str, out: _Out, threads: int | None = None) -> _Out: ...
