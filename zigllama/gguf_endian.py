"""Converting a GGUF file between little- and big-endian byte order.

Every multi-byte number changes order: the header, the metadata (lengths, counts,
numbers, arrays of them), the tensor infos and the tensor data. Plain tensors swap
every element; block formats swap the fields of each block that ggml declares wider
than a byte (``ggml_half`` scales, ``uint16_t``/``uint32_t`` words, ``block_q8_K``'s
float and ``int16_t`` sums, see ggml's ``ggml-common.h``), which is what a
big-endian host running ggml reads and writes natively, and what the ``gguf``
package's ``gguf-convert-endian`` does for the types it knows. Bytes (quants,
packed 6-bit scales, E8M0 exponents) stay as they are. Converting twice gives the
original file back byte for byte.
"""
import os

import numpy as np

from .errors import GGUFError, GGUFUnknownType
from .ggml_types import GGML_TYPE_TRAITS, GGMLType
from ._core.gguf_format import GGUFReader, GGUFValueType

__all__ = ["convert_endian", "swap_block_bytes", "BLOCK_SWAPS"]

_CHUNK_BYTES = 16 << 20
_T = GGMLType

# ggml type -> the fields to byte-swap in each block: (byte offset, field width, count)
BLOCK_SWAPS = {
    _T.F32: ((0, 4, 1),), _T.F16: ((0, 2, 1),), _T.BF16: ((0, 2, 1),), _T.F64: ((0, 8, 1),),
    _T.I8: (), _T.I16: ((0, 2, 1),), _T.I32: ((0, 4, 1),), _T.I64: ((0, 8, 1),),
    _T.Q4_0: ((0, 2, 1),),                 # d
    _T.Q4_1: ((0, 2, 2),),                 # d, m
    _T.Q5_0: ((0, 2, 1), (2, 4, 1)),       # d, qh (read as one uint32)
    _T.Q5_1: ((0, 2, 2), (4, 4, 1)),       # d, m, qh
    _T.Q8_0: ((0, 2, 1),),                 # d
    _T.Q8_1: ((0, 2, 2),),                 # d, s
    _T.Q2_K: ((80, 2, 2),),                # scales[16] qs[64] | d, dmin
    _T.Q3_K: ((108, 2, 1),),               # hmask[32] qs[64] scales[12] | d
    _T.Q4_K: ((0, 2, 2),),                 # d, dmin | scales[12] qs[128]
    _T.Q5_K: ((0, 2, 2),),                 # d, dmin | scales[12] qh[32] qs[128]
    _T.Q6_K: ((208, 2, 1),),               # ql[128] qh[64] scales[16] | d
    _T.Q8_K: ((0, 4, 1), (260, 2, 16)),    # float d | qs[256] | int16 bsums[16]
    _T.IQ2_XXS: ((0, 2, 1), (2, 2, 32)),   # d, uint16 qs[32]
    _T.IQ2_XS: ((0, 2, 1), (2, 2, 32)),    # d, uint16 qs[32] | scales[8]
    _T.IQ2_S: ((0, 2, 1),),                # d | qs[64] qh[8] scales[8]
    _T.IQ3_XXS: ((0, 2, 1), (66, 4, 8)),   # d | grid[64] | uint32 scales_and_signs[8]
    _T.IQ3_S: ((0, 2, 1),),                # d | qs[64] qh[8] signs[32] scales[4]
    _T.IQ1_S: ((0, 2, 1), (34, 2, 8)),     # d | qs[32] | uint16 qh[8]
    _T.IQ1_M: ((48, 2, 4),),               # qs[32] qh[16] | scales read as uint16[4]
    _T.IQ4_NL: ((0, 2, 1),),               # d | qs[16]
    _T.IQ4_XS: ((0, 2, 2),),               # d, uint16 scales_h | scales_l[4] qs[128]
    _T.TQ1_0: ((52, 2, 1),),               # qs[48] qh[4] | d
    _T.TQ2_0: ((64, 2, 1),),               # qs[64] | d
    _T.MXFP4: (),                          # e (E8M0 byte) | qs[16]
    _T.NVFP4: (),                          # d[4] (UE4M3 bytes) | qs[32]
    _T.Q1_0: ((0, 2, 1),),                 # d | qs[16]
}


def swap_block_bytes(raw, ggml_type):
    """The bytes `raw` (whole blocks of `ggml_type`) with every multi-byte field of
    each block byte-swapped, as a new uint8 array."""
    t = GGMLType(ggml_type)
    try:
        fields = BLOCK_SWAPS[t]
    except KeyError:
        raise GGUFUnknownType(f"no byte-order layout is known for {t.name} blocks") from None
    size = GGML_TYPE_TRAITS[t][1]
    blocks = np.array(raw, dtype=np.uint8, copy=True).reshape(-1, size)
    for offset, width, count in fields:
        end = offset + width * count
        field = blocks[:, offset:end].reshape(len(blocks), count, width)
        blocks[:, offset:end] = field[:, :, ::-1].reshape(len(blocks), width * count)
    return blocks.reshape(-1)


def _swap_value(raw, pos, t, order):
    """The value of type `t` at `raw[pos:]` (after its type field), swapped:
    returns (a list of byte pieces, the position after the value)."""
    t = GGUFValueType(t)
    if t == GGUFValueType.STRING:
        n = int.from_bytes(raw[pos:pos + 8], order)
        return [raw[pos:pos + 8][::-1], raw[pos + 8:pos + 8 + n]], pos + 8 + n
    if t != GGUFValueType.ARRAY:
        width = np.dtype(_SCALAR_WIDTH[t]).itemsize
        return [raw[pos:pos + width][::-1]], pos + width
    et = int.from_bytes(raw[pos:pos + 4], order)
    count = int.from_bytes(raw[pos + 4:pos + 12], order)
    out = [raw[pos:pos + 4][::-1], raw[pos + 4:pos + 12][::-1]]
    pos += 12
    if et in _SCALAR_WIDTH:
        width = np.dtype(_SCALAR_WIDTH[et]).itemsize
        body = np.frombuffer(raw, dtype=np.uint8, count=width * count, offset=pos)
        out.append(body.reshape(count, width)[:, ::-1].tobytes())
        return out, pos + width * count
    for _ in range(count):
        pieces, pos = _swap_value(raw, pos, et, order)
        out += pieces
    return out, pos


_SCALAR_WIDTH = {
    GGUFValueType.UINT8: "u1", GGUFValueType.INT8: "i1", GGUFValueType.BOOL: "u1",
    GGUFValueType.UINT16: "u2", GGUFValueType.INT16: "i2", GGUFValueType.UINT32: "u4",
    GGUFValueType.INT32: "i4", GGUFValueType.FLOAT32: "f4", GGUFValueType.UINT64: "u8",
    GGUFValueType.INT64: "i8", GGUFValueType.FLOAT64: "f8",
}


def swapped_raw_value(raw, byte_order_from):
    """A metadata value's stored bytes (type field first, as ``Metadata.raw_value``
    gives them) converted to the other byte order."""
    raw = bytes(raw)
    t = int.from_bytes(raw[:4], byte_order_from)
    pieces, end = _swap_value(raw, 4, t, byte_order_from)
    if end != len(raw):
        raise GGUFError(f"a {GGUFValueType(t).name.lower()} value of {len(raw) - 4} bytes swapped as {end - 4}")
    return raw[:4][::-1] + b"".join(pieces)


def convert_endian(src, dst, byte_order, *, progress=None):
    """Write `src` to `dst` in `byte_order` ("little" or "big"). Returns False (and
    writes nothing) if `src` is already in that order. `progress(done, total)` is
    called with tensor bytes as they are written."""
    from .gguf_writer import GGUFWriter

    if byte_order not in ("little", "big"):
        raise ValueError(f"byte order must be 'little' or 'big', not {byte_order!r}")
    with GGUFReader(src) as r:
        if r.byte_order == byte_order:
            return False
        for info in r.tensors:
            if info.ggml_type not in BLOCK_SWAPS:
                raise GGUFUnknownType(f"{src}: tensor {info.name!r}: no byte-order layout is known "
                                      f"for {info.ggml_type.name}")
        with GGUFWriter(os.fspath(dst), byte_order=byte_order, version=r.version) as w:
            _copy_swapped(r, w, progress)
    return True


def _copy_swapped(r, w, progress):
    """Metadata, tensor infos and tensor data of reader `r` to writer `w`, swapped."""
    md = r.metadata
    for key in md:
        if key == "general.alignment":
            w.add(key, md[key], GGUFValueType.UINT32)  # the writer must know it
        else:
            w.add_raw(key, swapped_raw_value(md.raw_value(key), r.byte_order))
    for info in r.tensors:
        w.add_tensor_info(info.name, info.shape, info.ggml_type)
    w.write_header()
    total = sum(info.nbytes for info in r.tensors)
    done = 0
    for info in r.tensors:
        raw = r.raw_tensor(info.name).reshape(-1)
        size = GGML_TYPE_TRAITS[info.ggml_type][1]
        step = max(1, _CHUNK_BYTES // size) * size
        w.write_tensor_bytes(info.name, (swap_block_bytes(raw[i:i + step], info.ggml_type).data
                                         for i in range(0, len(raw), step)))
        done += info.nbytes
        if progress is not None:
            progress(done, total)
        del raw
