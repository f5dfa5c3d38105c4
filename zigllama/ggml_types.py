"""ggml's tensor types: the ids real GGUF files carry, with each type's block layout.

``GGMLType`` uses ggml's own ids (``enum ggml_type``), the ones in the ``gguf``
package's ``GGMLQuantizationType``; the seed's Zig table numbers the newer types
differently (IQ1_M 24, BF16 25), which would misread every real file using them.
``GGML_TYPE_TRAITS`` maps a type to ``(block_size, type_size)``: elements per block
and bytes per block. Both are built from the C table the kernels use
(``include/zigllama/zl_ggml_types.h``), the one place the types are listed.
"""
from enum import IntEnum

from ._core.ggml_type_table import ggml_types

__all__ = ["GGMLType", "GGML_TYPE_TRAITS", "row_nbytes", "tensor_nbytes"]


class _GGMLTypeBase(IntEnum):
    """A ggml tensor type, by ggml's id."""

    @property
    def block_size(self) -> int:
        """Elements per block (1 for the plain types)."""
        return GGML_TYPE_TRAITS[self][0]

    @property
    def type_size(self) -> int:
        """Bytes per block."""
        return GGML_TYPE_TRAITS[self][1]

    @property
    def is_quantized(self) -> bool:
        """True for the block formats (anything that is not a plain number per element)."""
        return self.block_size > 1


_TABLE = ggml_types()

#: A ggml tensor type, by ggml's id: the members come from the C table.
GGMLType = _GGMLTypeBase("GGMLType", [(name, type_id) for type_id, name, _, _ in _TABLE],  # type: ignore[misc]
                           module=__name__, qualname="GGMLType")
GGMLType.__doc__ = _GGMLTypeBase.__doc__

# type -> (elements per block, bytes per block)
GGML_TYPE_TRAITS = {GGMLType(type_id): (block, size) for type_id, _, block, size in _TABLE}


def row_nbytes(ggml_type, ne0):
    """Bytes of one row of ``ne0`` elements; ``ne0`` must be a whole number of blocks."""
    block_size, type_size = GGML_TYPE_TRAITS[GGMLType(ggml_type)]
    if ne0 < 0 or ne0 % block_size:
        raise ValueError(f"{GGMLType(ggml_type).name} rows hold a multiple of {block_size} elements, not {ne0}")
    return ne0 // block_size * type_size


def tensor_nbytes(ggml_type, shape):
    """Bytes of a tensor of numpy-order ``shape`` (the last axis is ggml's ne[0])."""
    shape = tuple(int(n) for n in shape)
    if not shape:
        return row_nbytes(ggml_type, 1)
    rows = 1
    for n in shape[:-1]:
        if n < 0:
            raise ValueError(f"negative dimension in {shape}")
        rows *= n
    return rows * row_nbytes(ggml_type, shape[-1])
