"""GGUF reader and writer against the gguf package (llama.cpp's own Python reader and
writer): files it writes read identically here, files written here read identically
there, and a metadata rewrite keeps every tensor byte."""
import json
import math
import os
import subprocess
import sys

import gguf
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import zigllama as zl
from zigllama import GGMLType, GGUFReader, GGUFValueType, GGUFWriter
from zigllama._core import gguf_format
from zigllama.cli import main as cli_main
from zigllama.ggml_types import GGML_TYPE_TRAITS
from zigllama.gguf_writer import GGUFValue, float32_to_bfloat16, rewrite_metadata

VT = GGUFValueType
GT = gguf.GGUFValueType

# key -> (value, value type, element type): every value type, arrays of every kind.
SCALARS = {
    "s.u8": (255, VT.UINT8), "s.i8": (-128, VT.INT8), "s.u16": (65535, VT.UINT16),
    "s.i16": (-32768, VT.INT16), "s.u32": (2**32 - 1, VT.UINT32), "s.i32": (-2**31, VT.INT32),
    "s.f32": (1.5, VT.FLOAT32), "s.bool": (True, VT.BOOL), "s.false": (False, VT.BOOL),
    "s.str": ("héllo wörld ✓", VT.STRING), "s.empty": ("", VT.STRING),
    "s.u64": (2**64 - 1, VT.UINT64), "s.i64": (-2**63, VT.INT64), "s.f64": (math.pi, VT.FLOAT64),
}
ARRAYS = {
    "a.u8": ([0, 7, 255], VT.UINT8), "a.i8": ([-1, 2], VT.INT8), "a.u16": ([1, 65535], VT.UINT16),
    "a.i16": ([-5, 5], VT.INT16), "a.u32": ([0, 2**32 - 1], VT.UINT32), "a.i32": ([-7, 1, 2], VT.INT32),
    "a.f32": ([0.5, -2.25], VT.FLOAT32), "a.bool": ([True, False, True], VT.BOOL),
    "a.str": (["<s>", "", "wörd", "▁the"], VT.STRING), "a.u64": ([2**64 - 1, 0], VT.UINT64),
    "a.i64": ([-2**63, 2**63 - 1], VT.INT64), "a.f64": ([1e300, -0.0], VT.FLOAT64),
}
NESTED = {"a.nested": ([[1, 2, 3], [4], [5, 6]], VT.INT32), "a.nested_str": ([["x", "yz"], ["w"]], VT.STRING)}


def write_with_gguf(path, scalars=SCALARS, arrays=ARRAYS, nested=NESTED, tensors=(), alignment=None,
                    endian=gguf.GGUFEndian.LITTLE, arch="llama"):
    """A file written by the gguf package."""
    w = gguf.GGUFWriter(str(path), arch, endianess=endian)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for k, (v, t) in scalars.items():
        w.add_key_value(k, v, GT(t))
    for k, (v, et) in arrays.items():
        w.add_key_value(k, v, GT.ARRAY, sub_type=GT(et))
    for k, (v, et) in nested.items():
        w.add_key_value(k, v, GT.ARRAY, sub_type=GT.ARRAY)
    for name, data, raw_type in tensors:
        w.add_tensor(name, data, raw_dtype=None if raw_type is None else gguf.GGMLQuantizationType(raw_type))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def some_tensors(rng, n=6):
    """Tensors of several types: plain arrays and raw blocks of quantized types."""
    out = []
    kinds = [GGMLType.F32, GGMLType.F16, GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.I32,
             GGMLType.IQ4_NL, GGMLType.F64, GGMLType.Q6_K, GGMLType.I8, GGMLType.TQ2_0, GGMLType.MXFP4]
    for i in range(n):
        t = kinds[i % len(kinds)]
        block, size = GGML_TYPE_TRAITS[t]
        rows = 1 + i % 3
        if t.is_quantized:
            data = rng.integers(0, 256, size=(rows, 2 * size), dtype=np.uint8)
            out.append((f"blk.{i}.weight", data, t))
        else:
            dt = {GGMLType.F32: np.float32, GGMLType.F16: np.float16, GGMLType.I32: np.int32,
                  GGMLType.F64: np.float64, GGMLType.I8: np.int8}[t]
            out.append((f"blk.{i}.weight", (rng.standard_normal((rows, 5 + i)) * 100).astype(dt), None))
    return out


def assert_value(actual, expected, vtype):
    if vtype == VT.FLOAT32 and not isinstance(expected, list):
        assert actual == np.float32(expected)
    elif isinstance(expected, list) and expected and isinstance(expected[0], list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_value(a, e, vtype)
    elif isinstance(expected, list):
        if vtype == VT.STRING:
            assert list(actual) == expected
        else:
            a = np.asarray(actual)
            assert a.tolist() == np.array(expected, dtype=a.dtype).tolist()
    else:
        assert actual == expected and type(actual) is type(expected)


def assert_same_as_gguf_package(path):
    """zigllama and gguf.GGUFReader see the same keys, types, values and tensors."""
    theirs = gguf.GGUFReader(str(path))
    with GGUFReader(path) as ours:
        fields = {k: f for k, f in theirs.fields.items() if not k.startswith("GGUF.")}
        assert list(ours.metadata) == list(fields)
        for k, f in fields.items():
            assert ours.metadata.value_type(k) == f.types[0]
            if f.types[0] == GT.ARRAY and len(f.types) == 1:  # gguf leaves out an empty array's type
                assert len(ours.metadata[k]) == 0
            elif f.types[0] == GT.ARRAY:
                assert ours.metadata.element_type(k) == f.types[1]
                if f.types[1] != GT.ARRAY:
                    v = ours.metadata[k]
                    mine = list(v) if f.types[1] == GT.STRING else np.asarray(v).tolist()
                    assert mine == f.contents()
            else:
                assert ours.metadata[k] == f.contents() or (
                    isinstance(f.contents(), float) and math.isnan(f.contents()) and math.isnan(ours.metadata[k]))
        assert ours.alignment == theirs.alignment
        assert ours.data_offset == theirs.data_offset
        assert len(ours.tensors) == len(theirs.tensors)
        for info, t in zip(ours.tensors, theirs.tensors):
            assert info.name == t.name
            assert info.ggml_type == t.tensor_type
            assert info.ne == tuple(int(n) for n in t.shape)
            assert info.data_offset == t.data_offset
            assert info.nbytes == t.n_bytes
            view = np.asarray(ours.tensor(info.name))
            assert view.tobytes() == np.ascontiguousarray(t.data).tobytes()
            if not info.ggml_type.is_quantized and info.ggml_type != GGMLType.BF16:
                assert view.shape == info.shape
                assert np.array_equal(view, t.data.reshape(view.shape), equal_nan=True)
            else:
                assert view.shape[:-1] == info.shape[:-1]


# ---- files the gguf package writes ----------------------------------------------------


@pytest.mark.parametrize("alignment", [None, 32, 64, 256])
def test_gguf_package_file_every_value_type(tmp_path, alignment):
    rng = np.random.default_rng(0)
    tensors = some_tensors(rng, 12)
    path = write_with_gguf(tmp_path / "m.gguf", tensors=tensors, alignment=alignment)
    assert_same_as_gguf_package(path)
    with GGUFReader(path) as r:
        assert r.version == 3 and r.byte_order == "little"
        assert r.alignment == (alignment or 32) and r.data_offset % r.alignment == 0
        for k, (v, t) in SCALARS.items():
            assert_value(r.metadata[k], v, t)
            assert r.metadata.value_type(k) == t
        for k, (v, et) in {**ARRAYS, **NESTED}.items():
            assert_value(r.metadata[k], v, et)
        for name, data, raw in tensors:
            assert np.asarray(r.tensor(name)).tobytes() == data.tobytes()
        r.validate()


@pytest.mark.parametrize("n_tensors", [0, 1, 40])
def test_gguf_package_file_tensor_counts(tmp_path, n_tensors):
    tensors = some_tensors(np.random.default_rng(n_tensors), n_tensors)
    path = write_with_gguf(tmp_path / "m.gguf", tensors=tensors)
    assert_same_as_gguf_package(path)
    with GGUFReader(path) as r:
        assert len(r.tensors) == n_tensors


def test_gguf_package_big_endian(tmp_path):
    tensors = [(n, d, t) for n, d, t in some_tensors(np.random.default_rng(1), 12)]
    path = write_with_gguf(tmp_path / "be.gguf", tensors=tensors, endian=gguf.GGUFEndian.BIG)
    with GGUFReader(path) as r:
        assert r.byte_order == "big" and r.version == 3
        for k, (v, t) in SCALARS.items():
            assert_value(r.metadata[k], v, t)
        for k, (v, et) in {**ARRAYS, **NESTED}.items():
            assert_value(r.metadata[k], v, et)
        for name, data, raw in tensors:
            view = np.asarray(r.tensor(name))
            if raw is None:  # the writer byte-swapped it; values read back equal
                assert np.array_equal(view, data)
            else:
                assert view.tobytes() == data.tobytes()


def test_version_2_files_read(tmp_path):
    path = write_with_gguf(tmp_path / "v3.gguf", tensors=some_tensors(np.random.default_rng(2), 3))
    data = bytearray(path.read_bytes())
    data[4:8] = (2).to_bytes(4, "little")
    with GGUFReader(bytes(data)) as r:
        assert r.version == 2 and len(r.tensors) == 3


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    """A 262,144-entry vocabulary (as Gemma 3's), float scores, int token types, written by gguf."""
    n = 262144
    tokens = [f"▁tok{i}" if i % 7 else f"<{i}>" for i in range(n)]
    tokens[5] = ""
    scores = np.linspace(-1000, 0, n, dtype=np.float32)
    types = (np.arange(n) % 6 + 1).astype(np.int32)
    path = tmp_path_factory.mktemp("vocab") / "vocab.gguf"
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores.tolist())
    w.add_token_types(types.tolist())
    for i in range(250):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.full((2, 32), i, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, tokens, scores, types


def test_large_vocabulary(vocab_file):
    path, tokens, scores, types = vocab_file
    with GGUFReader(path) as r:
        toks = r.metadata["tokenizer.ggml.tokens"]
        assert isinstance(toks, zl._core.gguf_format.StringArray)
        assert len(toks) == 262144
        assert toks[0] == tokens[0] and toks[-1] == tokens[-1] and toks[5] == "" and toks[7] == "<7>"
        assert list(toks) == tokens
        assert toks[10:13] == tokens[10:13]
        assert np.array_equal(toks.byte_lengths(), [len(t.encode()) for t in tokens])
        s = r.metadata["tokenizer.ggml.scores"]
        assert s.dtype == np.float32 and np.array_equal(s, scores)
        assert np.array_equal(r.metadata.get_array("tokenizer.ggml.token_type", element_type=VT.INT32), types)
        assert len(r.tensors) == 250 and np.all(np.asarray(r.tensor("blk.249.attn_q.weight")) == 249)
        r.validate()


# ---- files zigllama writes ------------------------------------------------------------


def write_with_zigllama(path, tensors, alignment=32, byte_order="little"):
    with GGUFWriter(path, alignment=alignment, byte_order=byte_order) as w:
        w.add("general.architecture", "llama")
        for k, (v, t) in SCALARS.items():
            w.add(k, v, t)
        for k, (v, et) in {**ARRAYS, **NESTED}.items():
            w.add_array(k, v, et if k in ARRAYS else VT.ARRAY)
        w.add_array("a.empty", [], VT.UINT32)
        w.add_array("a.numpy", np.arange(5, dtype=np.uint16))
        for name, data, raw in tensors:
            w.add_tensor(name, data, raw)
    return path


@pytest.mark.parametrize("alignment", [32, 64, 256])
def test_zigllama_file_reads_identically_in_gguf_package(tmp_path, alignment):
    tensors = some_tensors(np.random.default_rng(3), 12)
    path = write_with_zigllama(tmp_path / "z.gguf", tensors, alignment)
    assert_same_as_gguf_package(path)
    theirs = gguf.GGUFReader(str(path))
    assert theirs.fields["a.empty"].contents() == []
    for k, (v, t) in SCALARS.items():
        assert theirs.fields[k].types == [GT(t)]
        got = theirs.fields[k].contents()
        assert got == (np.float32(v) if t == VT.FLOAT32 else v)
    for name, data, raw in tensors:
        t = theirs.tensors[[x.name for x in theirs.tensors].index(name)]
        assert np.ascontiguousarray(t.data).tobytes() == data.tobytes()


def test_zigllama_big_endian_reads_in_gguf_package(tmp_path):
    tensors = [(n, d, t) for n, d, t in some_tensors(np.random.default_rng(4), 6) if t is None]
    path = write_with_zigllama(tmp_path / "zbe.gguf", tensors, byte_order="big")
    theirs = gguf.GGUFReader(str(path))
    assert theirs.endianess == gguf.GGUFEndian.BIG
    assert theirs.fields["s.u64"].contents() == 2**64 - 1
    assert theirs.fields["a.str"].contents() == ARRAYS["a.str"][0]
    with GGUFReader(path) as r:
        for name, data, _ in tensors:
            assert np.array_equal(np.asarray(r.tensor(name)), data)
            t = theirs.tensors[[x.name for x in theirs.tensors].index(name)]
            assert np.array_equal(t.data.reshape(data.shape), data)


def test_writer_float_conversions_match_gguf_package(tmp_path):
    a = np.random.default_rng(5).standard_normal((3, 16)).astype(np.float32)
    a[0, :4] = [np.nan, np.inf, -np.inf, 1e-40]
    with GGUFWriter(tmp_path / "f.gguf") as w:
        w.add_tensor("f16", a, GGMLType.F16)
        w.add_tensor("bf16", a, GGMLType.BF16)
        w.add_tensor("bf16_raw", float32_to_bfloat16(a), GGMLType.BF16)
    ref_bf16 = gguf.quants.quantize(a, gguf.GGMLQuantizationType.BF16)
    with GGUFReader(tmp_path / "f.gguf") as r:
        assert np.asarray(r.tensor("f16")).dtype == np.float16
        assert np.asarray(r.tensor("f16")).tobytes() == a.astype(np.float16).tobytes()
        assert np.asarray(r.tensor("bf16")).tobytes() == ref_bf16.tobytes()
        assert np.asarray(r.tensor("bf16_raw")).tobytes() == ref_bf16.tobytes()
        assert np.asarray(r.tensor("bf16")).shape == (3, 16)
    assert_same_as_gguf_package(tmp_path / "f.gguf")


def test_writer_streams_tensors_in_any_order(tmp_path):
    rows = [np.full((4, 8), i, np.float32) for i in range(3)]
    w = GGUFWriter(tmp_path / "s.gguf", alignment=64)
    for i in range(3):
        w.add_tensor_info(f"t{i}", (4, 8), GGMLType.F32)
    w.add_tensor_info("q", (2, 64), GGMLType.Q8_0)
    w.write_header()
    for i in (2, 0, 1):
        w.write_tensor(f"t{i}", rows[i])
    with pytest.raises(zl.GGUFDuplicate):
        w.write_tensor("t0", rows[0])
    with pytest.raises(zl.GGUFLayoutError):
        w.write_tensor("q", np.zeros((2, 67), np.uint8))
    with pytest.raises(zl.GGUFInvalidValue, match="declared Q8_0"):
        w.write_tensor("q", np.zeros((2, 68), np.uint8), GGMLType.Q4_0)
    w.write_tensor("q", np.zeros((2, 68), np.uint8), GGMLType.Q8_0)
    w.close()
    assert_same_as_gguf_package(tmp_path / "s.gguf")
    with GGUFReader(tmp_path / "s.gguf") as r:
        for i in range(3):
            assert np.array_equal(np.asarray(r.tensor(f"t{i}")), rows[i])
        assert np.asarray(r.tensor("q")).shape == (2, 68)


def test_writer_refuses_what_the_reader_would_reject(tmp_path):
    w = GGUFWriter(tmp_path / "bad.gguf")
    with pytest.raises(zl.GGUFInvalidValue):
        w.add("", 1)
    w.add("k", 1)
    with pytest.raises(zl.GGUFDuplicate):
        w.add("k", 2)
    with pytest.raises(zl.GGUFInvalidValue):
        w.add("general.alignment", 3, VT.UINT32)
    with pytest.raises(zl.GGUFInvalidValue):
        w.add("general.alignment", 64, VT.INT32)
    with pytest.raises(zl.GGUFInvalidValue):
        w.add("x", 300, VT.UINT8)
    with pytest.raises(zl.GGUFLimitExceeded):
        w.add_tensor_info("n" * 64, (32,), GGMLType.F32)
    with pytest.raises(zl.GGUFLimitExceeded):
        w.add_tensor_info("five", (1, 1, 1, 1, 1), GGMLType.F32)
    with pytest.raises(zl.GGUFLayoutError):
        w.add_tensor_info("q", (33,), GGMLType.Q8_0)
    nested = []
    for _ in range(20):
        nested = [nested]
    with pytest.raises(zl.GGUFLimitExceeded):
        w.add_array("deep", nested, VT.ARRAY)
    w.add_tensor_info("t", (2,), GGMLType.F32)
    with pytest.raises(zl.GGUFError, match="never written"):
        w.close()


# ---- metadata rewrite ---------------------------------------------------------------


def test_rewrite_metadata_keeps_tensor_bytes(tmp_path):
    tensors = some_tensors(np.random.default_rng(6), 12)
    src = write_with_gguf(tmp_path / "src.gguf", tensors=tensors, alignment=64)
    dst = tmp_path / "dst.gguf"
    rewrite_metadata(src, dst, set={"general.name": "renamed", "s.u32": 7, "s.new": GGUFValue(9, VT.UINT64),
                                    "a.str": ["p", "q"]},
                     remove=["s.i8", "a.nested"])
    with GGUFReader(src) as a, GGUFReader(dst) as b:
        assert b.metadata["general.name"] == "renamed"
        assert b.metadata.get_u32("s.u32") == 7  # the key's type kept
        assert b.metadata.get_u64("s.new") == 9
        assert list(b.metadata["a.str"]) == ["p", "q"]
        assert "s.i8" not in b.metadata and "a.nested" not in b.metadata
        assert b.alignment == 64
        kept = [k for k in a.metadata if k not in ("s.i8", "a.nested", "s.u32", "a.str")]
        assert [k for k in b.metadata if k in kept] == kept
        for k in kept:
            assert bytes(a.metadata.raw_value(k)) == bytes(b.metadata.raw_value(k))
        assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
        for t in a.tensors:
            assert bytes(a.raw_tensor(t.name)) == bytes(b.raw_tensor(t.name))
    assert_same_as_gguf_package(dst)


def test_rewrite_metadata_changes_alignment_and_byte_order_kept(tmp_path):
    tensors = [(n, d, t) for n, d, t in some_tensors(np.random.default_rng(7), 5)]
    src = write_with_gguf(tmp_path / "be.gguf", tensors=tensors, endian=gguf.GGUFEndian.BIG)
    dst = tmp_path / "be2.gguf"
    rewrite_metadata(src, dst, set={"x": "y"}, alignment=256)
    with GGUFReader(src) as a, GGUFReader(dst) as b:
        assert b.byte_order == "big" and b.alignment == 256 and b.metadata["x"] == "y"
        for t in a.tensors:
            assert bytes(a.raw_tensor(t.name)) == bytes(b.raw_tensor(t.name))
            assert b.tensor_info(t.name).offset % 256 == 0
    with pytest.raises(zl.GGUFError):
        rewrite_metadata(src, src, set={"x": 1})


# ---- the reader's surface -----------------------------------------------------------


def test_sources_bytes_memorymap_path(tmp_path):
    path = write_with_gguf(tmp_path / "m.gguf", tensors=some_tensors(np.random.default_rng(8), 2))
    data = path.read_bytes()
    with zl.MemoryMap.from_file(path) as m:
        with GGUFReader(m) as r:
            assert r.metadata["s.str"] == SCALARS["s.str"][0]
    for src in (data, bytearray(data), memoryview(data), str(path), path):
        with GGUFReader(src) as r:
            assert r.metadata["s.u64"] == 2**64 - 1
            assert np.asarray(r.tensor(r.tensors[0].name)).tobytes() == some_tensors(np.random.default_rng(8), 2)[0][1].tobytes()


def test_views_outlive_the_reader_and_closed_reader_refuses(tmp_path):
    path = write_with_gguf(tmp_path / "m.gguf", tensors=some_tensors(np.random.default_rng(9), 2))
    r = GGUFReader(path)
    v = np.asarray(r.tensor(r.tensors[0].name))
    toks = r.metadata["a.str"]
    expected = v.copy()
    r.close()
    r.close()
    assert np.array_equal(v, expected) and not v.flags.writeable
    with pytest.raises(zl.GGUFError, match="closed"):
        toks[0]
    with pytest.raises(zl.GGUFError, match="closed"):
        np.asarray(r.tensor(r.tensors[0].name))


def test_metadata_mapping_and_typed_getters(tmp_path):
    path = write_with_gguf(tmp_path / "m.gguf")
    with GGUFReader(path) as r:
        md = r.metadata
        from collections.abc import Mapping
        assert isinstance(md, Mapping) and len(md) == len(list(md)) and "s.u8" in md
        assert md.get("missing", 5) == 5 and md.get_u32("missing") is None and md.get_str("missing", "d") == "d"
        assert md.get_u32("s.u32") == 2**32 - 1 and md.get_int("s.i8") == -128 and md.get_float("s.f64") == math.pi
        assert md.get_str("s.str") == SCALARS["s.str"][0] and md.get_bool("s.bool") is True
        with pytest.raises(zl.GGUFTypeMismatch, match="s.i32"):
            md.get_u32("s.i32")
        with pytest.raises(zl.GGUFTypeMismatch):
            md.get_array("a.u8", element_type=VT.INT8)
        with pytest.raises(KeyError):
            md["missing"]
        with pytest.raises(TypeError):
            md["s.u8"] = 1
        arr = md["a.u16"]
        assert arr.dtype == np.uint16 and not arr.flags.writeable
        with pytest.raises(zl.GGUFMissingKey):
            np.asarray(r.tensor("nope"))


def test_ggml_type_table_has_one_source():
    """GGMLType, its traits and the dequantizers' table are all the C header's table."""
    from zigllama._core import quantization
    from zigllama._core.ggml_type_table import ggml_types

    table = {type_id: (name, block, size) for type_id, name, block, size in ggml_types()}
    assert {t.value: (t.name, t.block_size, t.type_size) for t in GGMLType} == table
    assert quantization.GGML_QUANT_SIZES == {i: (b, s) for i, (_, b, s) in table.items()}


@given(st.dictionaries(
    # keys hold no NUL (ggml keeps them as C strings; the reader refuses one)
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20)
    .filter(lambda k: k != "general.alignment" and k != "general.architecture"),
    st.one_of(
        st.integers(-2**31, 2**31 - 1), st.booleans(), st.text(max_size=30),
        st.floats(width=32, allow_nan=False), st.lists(st.integers(0, 255), min_size=1, max_size=5),
        st.lists(st.text(max_size=8), min_size=1, max_size=5)),
    max_size=8))
def test_random_metadata_round_trips(tmp_path_factory, md):
    path = tmp_path_factory.mktemp("h") / "h.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    for k, v in md.items():
        if isinstance(v, list):
            w.add_key_value(k, v, GT.ARRAY, sub_type=GT.STRING if isinstance(v[0], str) else GT.UINT8)
        else:
            w.add_key_value(k, v, GT.get_type(v))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with GGUFReader(path) as r:
        for k, v in md.items():
            got = r.metadata[k]
            if isinstance(v, list):
                assert (list(got) if isinstance(v[0], str) else got.tolist()) == v
            elif isinstance(v, float):
                assert got == np.float32(v)
            else:
                assert got == v
        r.validate()


# ---- split models and the loader ------------------------------------------------------


def test_split_model_opens_from_any_shard(tmp_path):
    base = tmp_path / "model.gguf"
    w = gguf.GGUFWriter(str(base), "llama", split_max_tensors=2)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(5)
    w.add_head_count(8)
    tensors = {f"blk.{i}.w": np.full((2, 4), i, np.float32) for i in range(5)}
    for n, a in tensors.items():
        w.add_tensor(n, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    shards = sorted(p.name for p in tmp_path.iterdir())
    assert shards == [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for s in shards:
        with zl.GGUFModelLoader(tmp_path / s) as m:
            assert len(m.paths) == 3 and len(m.tensors) == 5 and m.tensor_names() == list(tensors)
            assert m.architecture == "llama" and m.context_length == 4096 and m.embedding_length == 64
            assert m.block_count == 5 and m.head_count == 8 and m.head_count_kv == 8
            for n, a in tensors.items():
                assert np.array_equal(np.asarray(m.tensor(n)), a)
            m.validate()
    os.remove(tmp_path / shards[1])
    with pytest.raises(OSError):
        zl.GGUFModelLoader(tmp_path / shards[0])


def test_split_model_inconsistent_counts(tmp_path):
    for i in (1, 2):
        with GGUFWriter(tmp_path / f"m-0000{i}-of-00002.gguf") as w:
            w.add("general.architecture", "llama")
            w.add("split.no", i - 1, VT.UINT16)
            w.add("split.count", 2, VT.UINT16)
            w.add("split.tensors.count", 3, VT.INT32)
            w.add_tensor(f"t{i}", np.zeros(4, np.float32))
    with pytest.raises(zl.GGUFInvalidValue, match="split.tensors.count"):
        zl.GGUFModelLoader(tmp_path / "m-00002-of-00002.gguf")


def test_loader_single_file_helpers(tmp_path):
    with GGUFWriter(tmp_path / "q.gguf") as w:
        w.add("general.architecture", "qwen2")
        w.add("qwen2.context_length", 32768, VT.UINT32)
        w.add("qwen2.embedding_length", 896, VT.UINT32)
        w.add("qwen2.block_count", 24, VT.UINT32)
        w.add("qwen2.attention.head_count", 14, VT.UINT32)
        w.add("qwen2.attention.head_count_kv", 2, VT.UINT32)
        w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    with zl.GGUFModelLoader(tmp_path / "q.gguf") as m:
        assert (m.architecture, m.context_length, m.embedding_length, m.block_count, m.head_count,
                m.head_count_kv) == ("qwen2", 32768, 896, 24, 14, 2)
        assert m.tensor_nbytes == 4 * 32 * 4
    with GGUFWriter(tmp_path / "none.gguf") as w:
        w.add("x", 1)
    with zl.GGUFModelLoader(tmp_path / "none.gguf") as m, pytest.raises(zl.GGUFMissingKey, match="architecture"):
        m.context_length


# ---- command line -------------------------------------------------------------------


def test_cli_inspect_and_validate(tmp_path, vocab_file, capsys):
    path = vocab_file[0]
    assert cli_main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[262144 x string]" in out and "blk.249.attn_q.weight" in out and "GGUF v3" in out
    assert cli_main(["inspect", "--json", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["metadata"]["tokenizer.ggml.tokens"]["count"] == 262144 and len(d["tensors"]) == 250
    assert cli_main(["validate", str(path)]) == 0
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(path.read_bytes()[:1000])
    assert cli_main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "GGUFTruncated" in err and "at byte" in err
    r = subprocess.run([sys.executable, "-m", "zigllama", "validate", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "invalid" in r.stderr


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(zl.GGUFTruncated, match="header.magic at byte 0"):
        GGUFReader(tmp_path / "empty.gguf")
    with pytest.raises(OSError):
        GGUFReader(tmp_path / "missing.gguf")


def test_threads_read_one_reader(tmp_path):
    import threading

    path = write_with_gguf(tmp_path / "m.gguf", tensors=some_tensors(np.random.default_rng(10), 12))
    errors = []
    with GGUFReader(path) as r:
        expected = {t.name: np.asarray(r.tensor(t.name)).tobytes() for t in r.tensors}

        def work():
            try:
                for _ in range(50):
                    assert list(r.metadata["a.str"]) == ARRAYS["a.str"][0]
                    for name, b in expected.items():
                        assert np.asarray(r.tensor(name)).tobytes() == b
                    r.validate()
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors


def test_open_of_a_1_gib_file_leaves_it_unread(tmp_path):
    """Only the header pages are touched: the tensor is a view, nothing is read
    (a sparse file, so no disk is used; readahead may add a few MiB)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gguf_hostile_cases import build

    side = 16384
    header, _ = build([("general.architecture", 8, "llama")], [("big", [side, side], 0, 0, side * side * 4)],
                      data_size=0)
    path = tmp_path / "big.gguf"
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + side * side * 4)
    with zl.MemoryMap.from_file(path) as m:
        r = GGUFReader(m)
        big = np.asarray(r.tensor("big"))
        assert big.shape == (side, side) and big.dtype == np.float32
        assert m.stats().resident_bytes < m.size // 100
        del big
        r.close()


def test_tensor_returns_zigllama_tensors_where_they_fit(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    with GGUFWriter(tmp_path / "t.gguf") as w:
        w.add_tensor("f32", a)
        w.add_tensor("f16", a, GGMLType.F16)
        w.add_tensor("bf16", a, GGMLType.BF16)
        w.add_tensor("i8", a.astype(np.int8))
        w.add_tensor("i16", a.astype(np.int16))
        w.add_tensor("q8", np.zeros((3, 34), np.uint8), GGMLType.Q8_0)
    with GGUFReader(tmp_path / "t.gguf") as r:
        for name, dtype in (("f32", "float32"), ("f16", "float16"), ("bf16", "bfloat16"), ("i8", "int8")):
            t = r.tensor(name)
            assert isinstance(t, zl.Tensor) and t.dtype == dtype and t.shape == (3, 4) and not t.writable
        assert np.array_equal(np.asarray(r.tensor("f32")), a)
        assert np.asarray(r.tensor("f16")).tobytes() == a.astype(np.float16).tobytes()
        assert isinstance(r.tensor("i16"), np.ndarray) and r.tensor("i16").dtype == np.int16
        assert isinstance(r.tensor("q8"), np.ndarray) and r.tensor("q8").shape == (3, 34)


def test_closing_the_reader_lets_the_callers_map_close(tmp_path):
    path = write_with_gguf(tmp_path / "m.gguf", tensors=some_tensors(np.random.default_rng(11), 2))
    m = zl.MemoryMap.from_file(path)
    r = GGUFReader(m)
    assert r.metadata["a.u16"].tolist() == ARRAYS["a.u16"][0]   # a cached view of the map
    v = np.asarray(r.tensor(r.tensors[0].name))
    with pytest.raises(zl.MappingInUse):
        m.close()
    r.close()
    del v
    m.close()
    assert m.closed


def test_split_model_with_a_tensor_in_two_shards(tmp_path):
    for i in (1, 2):
        with GGUFWriter(tmp_path / f"d-0000{i}-of-00002.gguf") as w:
            w.add("general.architecture", "llama")
            w.add("split.no", i - 1, VT.UINT16)
            w.add("split.count", 2, VT.UINT16)
            w.add_tensor("same", np.zeros(4, np.float32))
    with pytest.raises(zl.GGUFDuplicate, match="appears in two shards"):
        zl.GGUFModelLoader(tmp_path / "d-00001-of-00002.gguf")


def test_rewrite_removing_the_alignment_relays_out_the_data(tmp_path):
    src = write_with_zigllama(tmp_path / "a.gguf", some_tensors(np.random.default_rng(12), 4), alignment=256)
    rewrite_metadata(src, tmp_path / "b.gguf", remove=["general.alignment"])
    with GGUFReader(src) as a, GGUFReader(tmp_path / "b.gguf") as b:
        assert a.alignment == 256 and b.alignment == 32 and "general.alignment" not in b.metadata
        for t in a.tensors:
            assert bytes(a.raw_tensor(t.name)) == bytes(b.raw_tensor(t.name))
    assert_same_as_gguf_package(tmp_path / "b.gguf")
