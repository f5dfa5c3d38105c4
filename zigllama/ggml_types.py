"""ggml's tensor types: the ids real GGUF files carry, with each type's block layout.

``GGMLType`` uses ggml's own ids (``enum ggml_type``), the ones in the ``gguf``
package's ``GGMLQuantizationType``; the seed's Zig table numbers the newer types
differently (IQ1_M 24, BF16 25), which would misread every real file using them.
``GGML_TYPE_TRAITS`` maps a type to ``(block_size, type_size)``: elements per block
and bytes per block. The C twin of this table is ``include/zigllama/zl_ggml_types.h``.
"""
from enum import IntEnum

__all__ = ["GGMLType", "GGML_TYPE_TRAITS", "row_nbytes", "tensor_nbytes"]


class GGMLType(IntEnum):
    """A ggml tensor type, by ggml's id."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41

    @property
    def block_size(self):
        """Elements per block (1 for the plain types)."""
        return GGML_TYPE_TRAITS[self][0]

    @property
    def type_size(self):
        """Bytes per block."""
        return GGML_TYPE_TRAITS[self][1]

    @property
    def is_quantized(self):
        """True for the block formats (anything that is not a plain number per element)."""
        return self.block_size > 1


# type -> (elements per block, bytes per block)
GGML_TYPE_TRAITS = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.Q4_0: (32, 18),
    GGMLType.Q4_1: (32, 20),
    GGMLType.Q5_0: (32, 22),
    GGMLType.Q5_1: (32, 24),
    GGMLType.Q8_0: (32, 34),
    GGMLType.Q8_1: (32, 36),  # ggml's block_q8_1: f16 d, f16 s, 32 x int8 (gguf-py still says 40)
    GGMLType.Q2_K: (256, 84),
    GGMLType.Q3_K: (256, 110),
    GGMLType.Q4_K: (256, 144),
    GGMLType.Q5_K: (256, 176),
    GGMLType.Q6_K: (256, 210),
    GGMLType.Q8_K: (256, 292),
    GGMLType.IQ2_XXS: (256, 66),
    GGMLType.IQ2_XS: (256, 74),
    GGMLType.IQ3_XXS: (256, 98),
    GGMLType.IQ1_S: (256, 50),
    GGMLType.IQ4_NL: (32, 18),
    GGMLType.IQ3_S: (256, 110),
    GGMLType.IQ2_S: (256, 82),
    GGMLType.IQ4_XS: (256, 136),
    GGMLType.I8: (1, 1),
    GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4),
    GGMLType.I64: (1, 8),
    GGMLType.F64: (1, 8),
    GGMLType.IQ1_M: (256, 56),
    GGMLType.BF16: (1, 2),
    GGMLType.TQ1_0: (256, 54),
    GGMLType.TQ2_0: (256, 66),
    GGMLType.MXFP4: (32, 17),
    GGMLType.NVFP4: (64, 36),
    GGMLType.Q1_0: (128, 18),
}


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
