"""Dequantization and quantization of GGML block formats.

The oracle is the gguf package (llama.cpp's Python twin of ggml): every type it
can dequantize must come out with exactly its float32 bits, on every SIMD path the
CPU supports (AVX-512, AVX2) and on the portable one (the others in a subprocess
each, with ZIGLLAMA_SIMD naming the path).
Types gguf cannot dequantize are checked against ggml's block layouts written
out in numpy here, and against hand-computed blocks.
"""
import mmap
import os
import subprocess
import sys
import warnings
from unittest import mock

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants as gq
from hypothesis import given, settings
from hypothesis import strategies as st

import outside_extension
from conftest import other_simd_paths
import zigllama
from zigllama import QuantizationError
from zigllama._core import quantization as zq

# Byte offsets of the f16 scales (d, dmin, m) inside one block of each type.
F16_FIELDS = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
}
# The types of this module that gguf.quants.dequantize implements.
GGUF_TYPES = [T.F16, T.BF16, *F16_FIELDS, T.NVFP4]
# The ones it does not: checked against numpy versions of ggml's layouts below.
LAYOUT_TYPES = [T.F32, T.F64, T.I8, T.I16, T.I32, T.I64, T.Q8_1, T.Q8_K, T.Q1_0]
OWN_TYPES = GGUF_TYPES + LAYOUT_TYPES

SPECIAL_F16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0x3C00,
               0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7D55, 0xFFFF]
SPECIAL_BF16 = [0x0000, 0x8000, 0x0001, 0x007F, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFFF, 0x3F80]
SPECIAL_UE4M3 = [0x00, 0x7F, 0x80, 0xFF, 0x01, 0x07, 0x08, 0x38, 0x7E]

SIMD_DISABLED = os.environ.get("ZIGLLAMA_DISABLE_SIMD", "") not in ("", "0")


def sizes(t):
    return zq.GGML_QUANT_SIZES[int(t)]


def assert_same_bits(got, ref):
    """Equal float32 bits, except that where the reference is NaN any NaN will do
    (when two NaN operands meet, which payload wins depends on operand order)."""
    assert got.dtype == np.float32 and got.shape == ref.shape
    g = got.view(np.uint32)
    r = np.ascontiguousarray(ref, dtype=np.float32).view(np.uint32)
    ok = (g == r) | (np.isnan(ref) & np.isnan(got))
    if not ok.all():
        i = np.unravel_index(int(np.argmin(ok)), ok.shape)
        raise AssertionError(f"{(~ok).sum()} elements differ; first at {i}: "
                             f"got {g[i]:#010x} ({got[i]}), expected {r[i]:#010x} ({ref[i]})")


def gguf_dequantize(raw, t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN and inf scales
        return gq.dequantize(raw, t)


@st.composite
def raw_blocks(draw, t):
    """Random rows of whole blocks, with scales forced to special values often."""
    block, size = sizes(t)
    rows = draw(st.integers(1, 3))
    n_blocks = draw(st.integers(1, 6))
    if block == 1:  # plain types: a row of 1..64 elements
        n_blocks = draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**32 - 1))
    raw = np.random.default_rng(seed).integers(0, 256, size=(rows, n_blocks * size), dtype=np.uint8)
    flat = raw.reshape(rows * n_blocks, size)
    fields = F16_FIELDS.get(t, (0, 2) if t == T.Q8_1 else (0,) if t == T.Q1_0 else ())
    specials = SPECIAL_F16
    if t in (T.F16, T.BF16):
        fields = tuple(range(0, size, 2))
        specials = SPECIAL_F16 if t == T.F16 else SPECIAL_BF16
    for b in range(flat.shape[0]):
        for off in fields:
            if draw(st.booleans()):
                flat[b, off:off + 2] = np.array([draw(st.sampled_from(specials))], "<u2").view(np.uint8)
        if t == T.NVFP4:
            for g in range(4):
                if draw(st.booleans()):
                    flat[b, g] = draw(st.sampled_from(SPECIAL_UE4M3))
    return raw


def layout_reference(raw, t):
    """ggml's dequantize_row_* for the types gguf lacks, in numpy."""
    rows = raw.shape[0]
    if t in (T.F32, T.F64, T.I8, T.I16, T.I32, T.I64):
        dtype = {T.F32: "<f4", T.F64: "<f8", T.I8: "i1", T.I16: "<i2", T.I32: "<i4", T.I64: "<i8"}[t]
        return raw.view(dtype).astype(np.float32)
    block, size = sizes(t)
    b = raw.reshape(-1, size)
    if t == T.Q8_1:  # f16 d, f16 s (= d * sum(q), unused), int8 q[32]
        d = b[:, 0:2].copy().view("<f2").astype(np.float32)
        y = d * b[:, 4:].view(np.int8).astype(np.float32)
    elif t == T.Q8_K:  # f32 d, int8 q[256], int16 bsums[16] (unused)
        d = b[:, 0:4].copy().view("<f4")
        y = d * b[:, 4:260].view(np.int8).astype(np.float32)
    elif t == T.Q1_0:  # f16 d, 128 sign bits, least significant first
        d = b[:, 0:2].copy().view("<f2").astype(np.float32)
        bits = np.unpackbits(b[:, 2:], axis=1, bitorder="little").astype(bool)
        y = np.where(bits, d, -d)
    return y.reshape(rows, -1)


def deq(*args, **kwargs):
    """zigllama.dequantize as a numpy array (it returns a Tensor, or `out`)."""
    return np.asarray(zigllama.dequantize(*args, **kwargs))


def dequantize_both(raw, t):
    block, size = sizes(t)
    shape = (raw.shape[0], raw.shape[1] // size * block)
    return np.asarray(zq.dequantize(raw, t, shape))


@pytest.mark.parametrize("t", GGUF_TYPES, ids=lambda t: t.name)
@settings(max_examples=40)
@given(data=st.data())
def test_bit_exact_with_gguf(t, data):
    raw = data.draw(raw_blocks(t))
    assert_same_bits(dequantize_both(raw, t), gguf_dequantize(raw, t))


@pytest.mark.parametrize("t", LAYOUT_TYPES, ids=lambda t: t.name)
@settings(max_examples=25)
@given(data=st.data())
def test_bit_exact_with_ggml_layouts(t, data):
    raw = data.draw(raw_blocks(t))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = layout_reference(raw, t)
    assert_same_bits(dequantize_both(raw, t), ref)


def test_hand_checked_blocks():
    # Q8_1: d = 0.5, s = 7.0 (ignored), q = -128, -1, 0, 1, 127, then zeros.
    q8_1 = np.zeros(36, np.uint8)
    q8_1[0:4] = np.array([0.5, 7.0], "<f2").view(np.uint8)
    q8_1[4:9] = np.array([-128, -1, 0, 1, 127], np.int8).view(np.uint8)
    assert deq(q8_1, T.Q8_1, (32,))[:6].tolist() == [-64.0, -0.5, 0.0, 0.5, 63.5, 0.0]
    # Q8_K: f32 d = 0.25, q[0] = -3, q[255] = 100; bsums (the last 32 bytes) do not matter.
    q8_k = np.zeros(292, np.uint8)
    q8_k[0:4] = np.array([0.25], "<f4").view(np.uint8)
    q8_k[4], q8_k[259], q8_k[260:] = 0xFD, 100, 0xAB
    out = deq(q8_k, "Q8_K", (256,))
    assert (out[0], out[255], np.count_nonzero(out)) == (-0.75, 25.0, 2)
    # Q1_0: d = 2; byte 0 = 0b00000101 -> elements 0 and 2 are +d, the rest of byte 0 -d.
    q1 = np.zeros(18, np.uint8)
    q1[0:2] = np.array([2.0], "<f2").view(np.uint8)
    q1[2] = 0b101
    out = deq(q1, "Q1_0", (128,))
    assert out[:4].tolist() == [2.0, -2.0, 2.0, -2.0] and (out[8:] == -2.0).all()
    # NVFP4: scale byte 0x38 = 2^0 -> halved 0.5; nibble 7 -> kvalue 12 -> 6.0; nibble 0xF -> -12 -> -6.
    nv = np.zeros(36, np.uint8)
    nv[0] = 0x38
    nv[4] = 0xF7
    out = deq(nv, "NVFP4", (64,))
    assert (out[0], out[8], out[1]) == (6.0, -6.0, 0.0)


def test_simd_state_matches_environment():
    from conftest import expected_simd_path

    path = expected_simd_path()
    assert zq.simd_path() == path
    assert zq.simd_active() == (path != "portable")


INT32_EDGES = [0, 1, -1, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**24 + 1, -(2**24 + 1),
               2**53 + 1, 2**63 - 1, -2**63]


@given(st.lists(st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from(INT32_EDGES),
                          st.integers(-2**63, 2**63 - 1)), min_size=1, max_size=70))
@settings(max_examples=200)
def test_hand_checked_i64_as_numpy_casts(values):
    """I64 takes a vector path for groups of eight that all fit in int32 and the
    scalar cast otherwise: both round exactly as numpy's astype."""
    raw = np.array(values, dtype="<i8")
    got = deq(raw.view(np.uint8), T.I64, (len(values),))
    np.testing.assert_array_equal(got.view(np.uint32), raw.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("path", other_simd_paths())
def test_every_simd_path_in_subprocess(path):
    """The bit-exact tests again on each other path the CPU supports (ZIGLLAMA_SIMD)."""
    env = dict(os.environ, ZIGLLAMA_SIMD=path)
    tests = os.path.dirname(os.path.abspath(__file__))
    code = "from zigllama._core import quantization as q; print(q.simd_path())"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == path
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", os.path.abspath(__file__),
         "-k", "bit_exact or hand_checked or simd_state or threads_agree or stream"],
        cwd=tests, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("t", [T.Q4_K, T.Q8_0, T.F16, T.Q6_K], ids=lambda t: t.name)
def test_threads_agree(t):
    block, size = sizes(t)
    rows = 37  # an odd row count: uneven shares
    raw = np.random.default_rng(5).integers(0, 256, size=(rows, 8 * size), dtype=np.uint8)
    for off in F16_FIELDS.get(t, ()):  # finite scales so every element is compared exactly
        raw.reshape(-1, size)[:, off:off + 2] = np.array([0.01], "<f2").view(np.uint8)
    if t == T.F16:
        raw = np.random.default_rng(5).standard_normal((rows, 8 * size // 2)).astype(np.float16).view(np.uint8)
    shape = (rows, 8 * block) if block > 1 else (rows, 8 * size // 2)
    one = deq(raw, t, shape, threads=1)
    for threads in (2, 3, 8):
        assert_same_bits(deq(raw, t, shape, threads=threads), one)
    # Above the size where the work is split: 4096 x 64 elements.
    big = np.tile(raw, (4096 // rows + 1, 1))[:4096]
    ref = deq(big, t, (4096, shape[1]), threads=1)
    assert_same_bits(deq(big, t, (4096, shape[1]), threads=2), ref)
    assert_same_bits(ref[:rows], one)


@pytest.mark.parametrize("t", [T.Q8_0, T.Q4_K], ids=lambda t: t.name)
def test_large_outputs_stream_the_same_bits(t):
    # An output larger than the last-level cache takes the streaming-store path; slices of it do not.
    block, size = sizes(t)
    cols = 4096
    rows = min(max(1025, zq.streaming_min_bytes() // (4 * cols) + 1), 4097)
    raw = zigllama.quantize(np.random.default_rng(3).standard_normal((rows, cols), dtype=np.float32), t)
    whole = deq(raw, t, (rows, cols), threads=2)
    for start in (0, 512, 1024):
        part = raw[start:start + 512]
        assert_same_bits(whole[start:start + 512], deq(part, t, (len(part), cols)))
    # An output that is not 32-byte aligned: the head is written before streaming.
    backing = np.empty(rows * cols + 3, np.float32)
    out = backing[3:]
    deq(raw, t, (rows, cols), out=out, threads=1)
    assert_same_bits(out.reshape(rows, cols), whole)


def pool_data(t, rows=512, cols=1024):
    x = np.random.default_rng(11).standard_normal((rows, cols), dtype=np.float32)
    return zigllama.quantize(x, t), (rows, cols)


@pytest.mark.parametrize("t", [T.Q4_K, T.Q8_0], ids=lambda t: t.name)
def test_pool_split_agrees_and_one_thread_does_not_dispatch(t):
    raw, shape = pool_data(t)  # 2 MiB of output: many 64 KiB chunks
    ref = gq.dequantize(raw, t)
    pool = zigllama.default_pool()
    pool.reset_stats()
    out = np.empty(shape, np.float32)
    zigllama.dequantize(raw, t, shape, out=out, threads=1)
    assert pool.stats().parallel_fors == 0
    assert_same_bits(out, ref)
    for threads in (2, 3):
        assert_same_bits(deq(raw, t, shape, threads=threads), ref)
    assert pool.stats().parallel_fors == 2
    # quantize splits the same way: the same bytes on any thread count.
    x = np.asarray(ref)
    np.testing.assert_array_equal(zigllama.quantize(x, t, threads=2), zigllama.quantize(x, t, threads=1))


def test_dequantize_inside_pool_tasks_does_not_deadlock():
    raw, shape = pool_data(T.Q4_K)
    ref = gq.dequantize(raw, T.Q4_K)
    # Tasks of the default pool dequantizing on the default pool (a nested
    # parallel_for), and tasks of another pool doing the same.
    for pool in (zigllama.default_pool(), zigllama.ThreadPool(2)):
        futures = [pool.submit(deq, raw, T.Q4_K, shape, threads=2) for _ in range(4)]
        for f in futures:
            assert_same_bits(f.result(timeout=60), ref)
        if pool is not zigllama.default_pool():
            pool.shutdown()


def test_tiny_and_zero_row_inputs_on_many_threads():
    assert deq(b"", T.Q8_0, (0, 64), out=np.empty((0, 64), np.float32), threads=3).shape == (0, 64)
    x = np.random.default_rng(2).standard_normal((1, 32)).astype(np.float32)
    raw = gq.quantize(x, T.Q8_0)
    assert_same_bits(deq(raw, T.Q8_0, x.shape, threads=3), gq.dequantize(raw, T.Q8_0))


def test_bad_input_on_the_pool_path_raises_and_the_pool_still_works():
    raw, shape = pool_data(T.Q8_0)
    with pytest.raises(QuantizationError, match="needs"):
        zigllama.dequantize(raw[:-1], T.Q8_0, shape, threads=2)
    with pytest.raises(QuantizationError, match="non-finite"):
        zigllama.quantize(np.full(shape, np.nan, np.float32), T.Q8_0, threads=2)
    assert_same_bits(deq(raw, T.Q8_0, shape, threads=2), gq.dequantize(raw, T.Q8_0))


def test_thread_count_from_environment():
    code = ("import numpy as np, zigllama;"
            "raw = np.zeros(34 * 4096, np.uint8);"
            "print(np.asarray(zigllama.dequantize(raw, 8, (32, 4096))).sum())")
    env = dict(os.environ, ZIGLLAMA_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "0.0", out.stderr
    env["ZIGLLAMA_NUM_THREADS"] = "zero"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "ZIGLLAMA_NUM_THREADS" in out.stderr


# ---- the API ----

def q8_0_data(rows=2, blocks=2):
    x = np.linspace(-1, 1, rows * blocks * 32, dtype=np.float32).reshape(rows, blocks * 32)
    return x, gq.quantize(x, T.Q8_0)


def test_raw_may_be_any_contiguous_buffer(tmp_path):
    x, raw = q8_0_data()
    ref = gq.dequantize(raw, T.Q8_0)
    for obj in (raw, raw.tobytes(), bytearray(raw.tobytes()), memoryview(raw.tobytes()),
                raw.view(np.uint16), raw.reshape(-1)):
        assert_same_bits(deq(obj, T.Q8_0, x.shape), ref)
    path = tmp_path / "blocks.bin"
    path.write_bytes(raw.tobytes())
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert_same_bits(deq(m, T.Q8_0, x.shape), ref)


def test_type_may_be_id_enum_or_name():
    x, raw = q8_0_data()
    ref = deq(raw, 8, x.shape)
    for t in (T.Q8_0, "Q8_0", "q8_0", np.int64(8)):
        assert_same_bits(deq(raw, t, x.shape), ref)
    assert zq.ggml_type_name(8) == "Q8_0" and zq.ggml_type_id("q4_k") == 12


def test_out_is_filled_and_returned():
    x, raw = q8_0_data()
    out = np.full(x.size, np.nan, np.float32)
    got = zigllama.dequantize(raw, T.Q8_0, x.shape, out=out)
    assert got is out
    assert_same_bits(out.reshape(x.shape), gq.dequantize(raw, T.Q8_0))


def test_returns_a_float32_tensor():
    x, raw = q8_0_data()
    t = zigllama.dequantize(raw, T.Q8_0, x.shape)
    assert isinstance(t, zigllama.Tensor) and t.shape == x.shape and t.dtype == "float32"
    assert_same_bits(np.asarray(t), gq.dequantize(raw, T.Q8_0))
    out = zigllama.Tensor.zeros(x.shape)
    assert zigllama.dequantize(raw, T.Q8_0, x.shape, out=out) is out
    assert_same_bits(np.asarray(out), np.asarray(t))
    with pytest.raises(QuantizationError, match="dtype float32"):
        zigllama.dequantize(raw, T.Q8_0, x.shape, out=zigllama.Tensor.zeros(x.shape, "float64"))


def test_empty_and_multidimensional_shapes():
    # A Tensor has no zero-size axis; an empty numpy `out` takes an empty result.
    assert deq(b"", T.Q4_K, (0, 256), out=np.empty((0, 256), np.float32)).shape == (0, 256)
    with pytest.raises(zigllama.InvalidShape):
        zigllama.dequantize(b"", T.F16, (3, 0))
    x = np.random.default_rng(0).standard_normal((2, 3, 64)).astype(np.float32)
    raw = gq.quantize(x, T.Q8_0)
    assert_same_bits(deq(raw, T.Q8_0, x.shape), gq.dequantize(raw, T.Q8_0))
    assert deq(np.zeros(18, np.uint8), T.Q4_0, 32).shape == (32,)


@pytest.mark.parametrize("raw, t, shape, message", [
    (b"\0" * 35, T.Q8_0, (32,), "not a whole number of Q8_0 blocks"),
    (b"\0" * 68, T.Q8_0, (32,), r"needs 34 bytes \(1 blocks\), got 68"),
    (b"\0" * 34, T.Q8_0, (33,), "row length 33 is not a multiple of the Q8_0 block size 32"),
    (b"\0" * 144, T.Q4_K, (2, 128), "row length 128 is not a multiple of the Q4_K block size 256"),
    (b"\0" * 4, 99, (1,), "unknown ggml type id 99"),
    (b"\0" * 4, -1, (1,), "unknown ggml type id -1"),
    (b"\0" * 4, 4, (1,), "unknown ggml type id 4"),
    (b"\0" * 4, "Q9_9", (1,), "unknown ggml type name 'Q9_9'"),
    (b"\0" * 4, 1.5, (1,), "ggml type must be an int id or a name"),
    (b"\0" * 4, T.F32, (), "at least one dimension"),
    (b"\0" * 4, T.F32, (-1, -1), "negative dimension"),
    (b"\0" * 4, T.F32, ("a",), "shape must be a tuple of ints"),
    (np.zeros((4, 4), np.uint8)[:, ::2], T.I8, (8,), "C-contiguous"),
    (memoryview(b"\0" * 8)[::2], T.I8, (4,), "C-contiguous"),
    ("text", T.I8, (4,), "bytes-like"),
    (np.array([b"ab", None, 1, 2.0], dtype=object), T.I8, (4,), "not an array of object"),
])
def test_bad_arguments_raise(raw, t, shape, message):
    with pytest.raises(QuantizationError, match=message):
        deq(raw, t, shape)


@pytest.mark.parametrize("out, message", [
    (np.zeros(63, np.float32), "out has 63 elements, shape"),
    (np.zeros(64, np.float64), "dtype float32"),
    (np.zeros(128, np.float32)[::2], "C-contiguous"),
    (np.zeros((8, 8), np.float32).T, "C-contiguous"),
    ([0.0] * 64, "numpy array or a Tensor"),
])
def test_bad_out_raises(out, message):
    _, raw = q8_0_data(1)
    with pytest.raises(QuantizationError, match=message):
        deq(raw, T.Q8_0, (64,), out=out)


def test_read_only_or_overlapping_out_raises():
    _, raw = q8_0_data(1)
    out = np.zeros(64, np.float32)
    out.flags.writeable = False
    with pytest.raises(QuantizationError, match="read-only"):
        deq(raw, T.Q8_0, (64,), out=out)
    buf = np.zeros(64, np.float32)
    with pytest.raises(QuantizationError, match="overlaps"):
        deq(buf, T.F32, (64,), out=buf)


def test_missing_kernel_is_an_error():
    patched = dict(zq._TYPES)
    patched[16] = (patched[16][0], patched[16][1], patched[16][2], False)
    with mock.patch.object(zq, "_TYPES", patched):
        with pytest.raises(QuantizationError, match="no kernel for IQ2_XXS"):
            deq(b"\0" * 66, T.IQ2_XXS, (256,))


def test_threads_argument_is_checked():
    _, raw = q8_0_data(1)
    with pytest.raises(ValueError, match="threads must be between 1 and"):
        deq(raw, T.Q8_0, (64,), threads=0)


def test_type_table_matches_ggml():
    ours = {t: (name, block, size) for t, (name, block, size, _) in zq._TYPES.items()}
    theirs = {t.value: (t.name, *gguf.GGML_QUANT_SIZES[t]) for t in T}
    # Q8_1: ggml's block is f16 d + f16 s + 32 quants = 36 bytes; gguf 0.19 still
    # lists an older 4 + 4 + 32, fixed upstream in llama.cpp: accept either of theirs.
    name, block, size = theirs.pop(T.Q8_1.value)
    assert (name, block) == ("Q8_1", 32) and size in (36, 40)
    assert ours.pop(T.Q8_1.value) == ("Q8_1", 32, 36)
    assert ours == theirs


def test_every_type_has_a_kernel():
    missing = [name for name, _, _, kernel in zq._TYPES.values() if not kernel]
    assert missing == []


# ---- quantize ----

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=-3e4, max_value=3e4)


@st.composite
def float_rows(draw, block):
    rows = draw(st.integers(1, 3))
    n = draw(st.integers(1, 4)) * block
    kind = draw(st.sampled_from(["normal", "any", "ties", "constant", "tiny"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        x = rng.standard_normal((rows, n)) * draw(st.sampled_from([1e-3, 1.0, 100.0]))
    elif kind == "any":
        x = np.array(draw(st.lists(finite32, min_size=rows * n, max_size=rows * n))).reshape(rows, n)
    elif kind == "ties":  # equal magnitudes of both signs, and halfway points
        x = rng.integers(-8, 9, size=(rows, n)) / 2.0
    elif kind == "constant":
        x = np.full((rows, n), draw(finite32))
    else:
        x = rng.standard_normal((rows, n)) * 1e-30
    return x.astype(np.float32)


def without_negative_zero(x):
    """-0.0 -> +0.0. Where a block's min (or max) is zero and the block holds both
    zeros, which one numpy's SIMD min/max returns depends on its reduction order;
    the _1 formats store that zero's sign, so only there do we leave it out."""
    return x + np.float32(0.0)


@pytest.mark.parametrize("t", [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0], ids=lambda t: t.name)
@given(data=st.data())
def test_quantize_byte_exact_with_gguf(t, data):
    x = data.draw(float_rows(32))
    if t in (T.Q4_1, T.Q5_1):
        x = without_negative_zero(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = gq.quantize(x, t)
    got = zigllama.quantize(x, t)
    assert got.dtype == np.uint8 and got.shape == ref.shape
    if t in (T.Q4_0, T.Q5_0):
        # ggml (which zigllama follows) stores d = +0 / -8 = -0 for a block of
        # zeros; gguf divides the block's first zero, of either sign
        size = got.shape[-1] // (x.shape[-1] // 32)
        g, r = got.reshape(-1, size), ref.reshape(-1, size).copy()
        zero = (x.reshape(-1, 32) == 0).all(axis=1)
        assert (g[zero, :2] == [0x00, 0x80]).all()
        r[zero, 1] = 0x80
        ref = r.reshape(ref.shape)
    np.testing.assert_array_equal(got, ref)


def test_quantize_accepts_float64_and_threads():
    x = np.random.default_rng(1).standard_normal((300, 256))
    ref = gq.quantize(x, T.Q8_0)
    np.testing.assert_array_equal(zigllama.quantize(x, T.Q8_0, threads=2), ref)
    np.testing.assert_array_equal(zigllama.quantize(x, "Q4_K", threads=1), zigllama.quantize(x, "Q4_K", threads=2))


def ggml_test_data(n, offset):
    """test-quantize-fns.cpp's generate_data: 0.1 + 2 cos(i + offset)."""
    return (0.1 + 2 * np.cos(np.arange(n, dtype=np.float32) + np.float32(offset))).astype(np.float32)


@pytest.mark.parametrize("t", [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q6_K], ids=lambda t: t.name)
def test_quantization_error_within_ggml_threshold(t):
    # test-quantize-fns.cpp: array_rmse = sqrt(sum of squared differences) / n must stay
    # below MAX_QUANTIZATION_TOTAL_ERROR = 0.002 for every type of 4 bits or more.
    x = ggml_test_data(32 * 128, 0.0)
    y = deq(zigllama.quantize(x, t), t, x.shape)
    assert np.sqrt(np.sum((x.astype(np.float64) - y) ** 2)) / x.size < 0.002


def naive_q4_k_rmse(x):
    """Round trip through plain min/max 4-bit quantization of 32-element sub-blocks
    with exact (unquantized) scales: what Q4_K's search has to beat."""
    b = x.reshape(-1, 32).astype(np.float64)
    lo = np.minimum(b.min(axis=1, keepdims=True), 0)
    scale = (b.max(axis=1, keepdims=True) - lo) / 15
    q = np.clip(np.rint((b - lo) / np.where(scale == 0, 1, scale)), 0, 15)
    return np.sqrt(np.mean((q * scale + lo - b) ** 2))


@pytest.mark.parametrize("seed", range(3))
def test_k_quantizers_beat_simpler_ones(seed):
    x = np.random.default_rng(seed).standard_normal((16, 1024)).astype(np.float32)

    def rmse(t):
        y = deq(zigllama.quantize(x, t), t, x.shape)
        return np.sqrt(np.mean((x.astype(np.float64) - y) ** 2))

    assert rmse(T.Q4_K) < naive_q4_k_rmse(x)
    assert rmse(T.Q4_K) < rmse(T.Q4_1)
    assert rmse(T.Q6_K) < rmse(T.Q5_1) and rmse(T.Q6_K) < rmse(T.Q4_K) / 3


def test_k_quantizers_keep_zero_and_constant_blocks():
    z = np.zeros((2, 256), np.float32)
    for t in (T.Q4_K, T.Q6_K):
        assert (deq(zigllama.quantize(z, t), t, z.shape) == 0).all()
    # A constant positive block: Q4_K clamps the min to zero, the scale carries it.
    c = np.full(256, 3.0, np.float32)
    y = deq(zigllama.quantize(c, T.Q4_K), T.Q4_K, c.shape)
    assert np.abs(y - c).max() < 3.0 / 63


@pytest.mark.parametrize("array, t, message", [
    (np.zeros(32, np.float32), T.IQ2_XXS, "cannot quantize to IQ2_XXS; supported: F16, Q4_0"),
    (np.zeros(32, np.float32), 99, "unknown ggml type id 99"),
    (np.zeros(48, np.float32), T.Q8_0, "row length 48 is not a multiple"),
    (np.zeros(256, np.float32), T.Q4_K, None),
    (np.float32(1.0), T.Q8_0, "0-d"),
    (np.array([np.nan] + [0.0] * 31, np.float32), T.Q8_0, r"non-finite value nan at index \(0,\)"),
    (np.array([[0.0] * 32, [0.0] * 31 + [np.inf]]), T.Q4_0, r"non-finite value inf at index \(1, 31\)"),
    (np.zeros(32, np.complex64), T.Q8_0, "dtype complex64"),
    (np.array(["a"] * 32), T.Q8_0, "dtype <U1"),
])
def test_quantize_bad_arguments(array, t, message):
    if message is None:
        assert zigllama.quantize(array, t).shape == (144,)
        return
    with pytest.raises(QuantizationError, match=message):
        zigllama.quantize(array, t)


def test_quantize_output_is_usable_by_the_gguf_writer(tmp_path):
    x = np.random.default_rng(2).standard_normal((4, 256)).astype(np.float32)
    path = str(tmp_path / "q.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("w", zigllama.quantize(x, T.Q4_K), raw_dtype=T.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    t = gguf.GGUFReader(path).tensors[0]
    assert t.tensor_type == T.Q4_K
    y = deq(t.data, t.tensor_type, (4, 256))
    assert np.sqrt(np.mean((y - x) ** 2)) < 0.1


def test_exports():
    assert zigllama.dequantize is zq.dequantize and zigllama.quantize is zq.quantize
    assert "Q4_K" in zq.QUANTIZE_TYPES and zq.GGML_QUANT_SIZES[12] == (256, 144)


# ---- GGUF files ----

def write_gguf(path, byte_order="little"):
    """A small file with a block tensor and plain tensors; returns the source arrays."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 256)).astype(np.float32)
    plain = {"f32": rng.standard_normal((3, 5)).astype(np.float32),
             "f16": rng.standard_normal((4, 6)).astype(np.float16),
             "i32": rng.integers(-9, 9, size=(7,), dtype=np.int32)}
    with zigllama.GGUFWriter(path, byte_order=byte_order) as w:
        w.add("general.architecture", "llama")
        w.add_tensor("q4_k", zigllama.quantize(x, T.Q4_K), zigllama.GGMLType.Q4_K, x.shape)
        w.add_tensor("bf16", x[:2], zigllama.GGMLType.BF16)
        for name, a in plain.items():
            w.add_tensor(name, a)
    return x, plain


@pytest.mark.parametrize("byte_order", ["little", "big"])
def test_dequantize_tensor_from_a_file(tmp_path, byte_order):
    path = str(tmp_path / "m.gguf")
    x, plain = write_gguf(path, byte_order)
    with zigllama.GGUFReader(path) as r:
        q = np.asarray(zq.dequantize_tensor(r, "q4_k"))
        ref = gq.dequantize(zigllama.quantize(x, T.Q4_K), T.Q4_K)
        assert_same_bits(q, ref)
        for name, a in plain.items():
            assert_same_bits(np.asarray(zq.dequantize_tensor(r, name)), a.astype(np.float32))
        bf16 = np.asarray(zq.dequantize_tensor(r, "bf16"))
        assert bf16.shape == (2, 256) and np.abs(bf16 - x[:2]).max() <= np.abs(x[:2]).max() / 128
        out = np.empty((3, 5), np.float32)
        assert zq.dequantize_tensor(r, "f32", out=out) is out and (out == plain["f32"]).all()


def test_load_command(tmp_path):
    path = str(tmp_path / "m.gguf")
    write_gguf(path)
    result = subprocess.run([sys.executable, "-m", "zigllama", "load", path, "--threads", "2"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "5 tensors" in result.stdout and "GB/s" in result.stdout and "peak memory" in result.stdout
    assert "100.0%" in result.stderr  # the progress bar
    bad = subprocess.run([sys.executable, "-m", "zigllama", "load", str(tmp_path / "missing.gguf")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "missing.gguf" in bad.stderr


# ---- from another extension module ----

OUTSIDE_PYX = """
import numpy
from libc.stdint cimport int64_t, uint8_t
from zigllama.quantization cimport (
    dequantize_into, dequantize_into_on, quant_type, quantizer_for, split_blocks, zl_quant_type)
from zigllama.threading cimport check_pool_status, parallel_for_status, pool_ptr, zl_pool


def dequantize_on(pool, int type_id, const uint8_t[::1] raw, float[::1] out, int threads):
    # On a given pool without the GIL; the status is raised here, at the boundary.
    cdef zl_pool *p = pool_ptr(pool)
    cdef int status
    with nogil:
        status = dequantize_into_on(p, type_id, &raw[0], &out[0], out.shape[0], threads)
    if status == -1 or status == -2:
        return status
    return check_pool_status(status)


cdef void count_blocks(void *ctx, int64_t first, int64_t count) noexcept nogil:
    cdef int64_t *seen = <int64_t *>ctx
    cdef int64_t i
    for i in range(first, first + count):
        seen[i] += 1


def split_counts(int64_t n_blocks, int threads):
    # How many times split_blocks hands each block to the range function.
    counts = numpy.zeros(n_blocks, numpy.int64)
    cdef int64_t[::1] seen = counts
    with nogil:
        split_blocks(count_blocks, &seen[0], n_blocks, 256, threads)
    return counts


ctypedef struct task_split:
    int64_t *seen
    int64_t n_blocks


cdef int split_in_task(void *ctx, int64_t begin, int64_t end) noexcept nogil:
    # A pool task that splits its own work: split_blocks must use this task's
    # pool, without the GIL, which the thread waiting for the task holds.
    cdef task_split *t = <task_split *>ctx
    cdef int64_t i
    for i in range(begin, end):
        split_blocks(count_blocks, t.seen + i * t.n_blocks, t.n_blocks, 256, 2)
    return 0


def split_counts_in_tasks(pool, int64_t ntasks, int64_t n_blocks):
    # The GIL stays held here while the pool runs the tasks (no `with nogil`).
    counts = numpy.zeros((ntasks, n_blocks), numpy.int64)
    cdef int64_t[:, ::1] seen = counts
    cdef task_split t
    t.seen = &seen[0, 0]
    t.n_blocks = n_blocks
    status = parallel_for_status(pool_ptr(pool), ntasks, 1, split_in_task, &t)
    return status, counts


def dequantize_q8_0(const uint8_t[::1] raw, float[::1] out, int threads):
    cdef const zl_quant_type *t = quant_type(8)
    cdef int status
    with nogil:
        t.dequantize(&raw[0], &out[0], 32)                 # the first block, by the kernel
        status = dequantize_into(8, &raw[0], &out[0], out.shape[0], threads)
    return status, t.name.decode(), t.block_size, t.type_size


def has_quantizer(int type_id):
    return quantizer_for(type_id) != NULL, quant_type(type_id) != NULL
"""

OUTSIDE_SETUP = """
import numpy, zigllama
from Cython.Build import cythonize
from setuptools import Extension, setup
setup(name="zl_quant_outside", ext_modules=cythonize(
    [Extension("zl_quant_outside", ["zl_quant_outside.pyx"],
               include_dirs=[zigllama.get_include(), numpy.get_include()])],
    compiler_directives={"language_level": 3}))
"""


def test_outside_extension_cimports_the_kernels(tmp_path):
    env = outside_extension.build(tmp_path, {"zl_quant_outside.pyx": OUTSIDE_PYX, "setup.py": OUTSIDE_SETUP})
    outside = outside_extension.load(tmp_path, "zl_quant_outside")
    x, raw = q8_0_data(1, 4)
    out = np.empty(x.size, np.float32)
    assert outside.dequantize_q8_0(raw.reshape(-1), out, 2) == (0, "Q8_0", 32, 34)
    assert_same_bits(out.reshape(x.shape), gq.dequantize(raw, T.Q8_0))
    # Big enough to be split: the default pool, found by dequantize_into itself.
    raw, shape = pool_data(T.Q8_0)
    out = np.empty(shape[0] * shape[1], np.float32)
    assert outside.dequantize_q8_0(raw.reshape(-1), out, 2)[0] == 0
    assert_same_bits(out.reshape(shape), gq.dequantize(raw, T.Q8_0))
    assert outside.dequantize_q8_0(raw.reshape(-1), out[:-32], 2)[0] == 0  # a prefix
    assert outside.dequantize_q8_0(raw.reshape(-1), out[:-1], 2)[0] == -2  # not whole blocks
    out[:] = 0
    pool = zigllama.ThreadPool(2)
    assert outside.dequantize_on(pool, 8, raw.reshape(-1), out, 2) == 0
    assert_same_bits(out.reshape(shape), gq.dequantize(raw, T.Q8_0))
    assert outside.dequantize_on(pool, 99, raw.reshape(-1), out, 2) == -1
    pool.shutdown()
    with pytest.raises(zigllama.ThreadPoolError, match="shut down"):
        outside.dequantize_on(pool, 8, raw.reshape(-1), out, 2)
    for n_blocks, threads in ((1000, 2), (1000, 3), (1000, 1), (3, 2)):
        assert (outside.split_counts(n_blocks, threads) == 1).all()
    # split_blocks inside pool tasks whose waiter holds the GIL: each task splits
    # on its own pool. Looking up the default pool would need the GIL and hang,
    # so this runs in a child process under a timeout.
    child = ("import sys, zigllama; sys.path.insert(0, sys.argv[1]); import zl_quant_outside as o; "
             "pool = zigllama.ThreadPool(2); status, counts = o.split_counts_in_tasks(pool, 16, 100000); "
             "assert status == 0 and (counts == 1).all(), (status, counts); "
             "s = pool.stats(); assert s.parallel_fors >= 2, s; print('ok')")  # >= 1 split by the worker
    r = subprocess.run([sys.executable, "-c", child, str(tmp_path)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout[-2000:] + r.stderr[-2000:]
    assert outside.has_quantizer(12) == (True, True)
    assert outside.has_quantizer(10) == (True, True) and outside.has_quantizer(16) == (False, True)
    assert outside.has_quantizer(99) == (False, False)


def test_reader_load_and_loader_load_tensor_decode_every_written_type(tmp_path):
    """GGUFReader.load / GGUFModelLoader.load_tensor equal the gguf package's decode."""
    import gguf

    import zigllama as zl

    rng = np.random.default_rng(7)
    data = rng.standard_normal((4, 256)).astype(np.float32)
    path = str(tmp_path / "m.gguf")
    types = [T.F32, T.F16, T.Q8_0, T.Q4_0, T.Q4_K, T.Q6_K]
    with zl.GGUFWriter(path) as w:
        w.add_string("general.architecture", "llama")
        encoded = {t: (data if t == T.F32 else data.astype(np.float16) if t == T.F16 else zl.quantize(data, t))
                   for t in types}
        for t in types:
            w.add_tensor_info(f"w.{t.name}", data.shape, t)
        w.write_header()
        for t in types:
            w.write_tensor(f"w.{t.name}", encoded[t], t)
    theirs = {str(tt.name): tt for tt in gguf.GGUFReader(path).tensors}
    reader = zl.GGUFReader(path)
    loader = zl.GGUFModelLoader(path)
    for t in types:
        name = f"w.{t.name}"
        expected = gguf.quants.dequantize(theirs[name].data, gguf.GGMLQuantizationType(int(t)))
        expected = np.asarray(expected, dtype=np.float32).reshape(data.shape)
        got = np.asarray(reader.load(name))
        assert got.shape == data.shape
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), name
        assert np.array_equal(np.asarray(loader.load_tensor(name)), got)
        out = np.empty(data.shape, dtype=np.float32)
        assert reader.load(name, out=out, threads=2) is out and np.array_equal(out, got)
    with pytest.raises(zl.UnsupportedDtype):
        reader.load("w.F32", dtype="float64")
    with pytest.raises(zl.UnsupportedDtype):
        reader.load("w.F32", dtype="no such dtype")
    with pytest.raises(zl.GGUFError):
        reader.load("missing")
    loader.close()


@pytest.mark.parametrize("simd", ["1", "0"])
def test_q8_0_subnormal_block_quantizes_as_ggml(simd, tmp_path):
    # amax / 127 is so small that its inverse overflows: ggml's scalar code ends with
    # every quant 0 (and a zero f16 scale), as gguf does; no path may saturate to -128.
    code = """
import numpy as np, zigllama, gguf
x = np.full((1, 32), 5.815321e-39, np.float32)
x[0, ::3] *= -1
got = zigllama.quantize(x, gguf.GGMLQuantizationType.Q8_0)
ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
assert (got == ref).all() and not got.any(), (got, ref)
"""
    env = dict(os.environ, ZIGLLAMA_DISABLE_SIMD=simd)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
