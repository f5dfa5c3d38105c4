"""zigllama.quantize against ggml's C quantizers (SHA-256 digests of ggml's bytes
over fixed inputs, in ggml_quant_digests.py) and against the gguf package where
it has the type; importance matrices; overflow errors (issue 12's class)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gguf
import zigllama
from zigllama._core import quantization as zq
from zigllama.errors import QuantizationError

import ggml_quant_digests as ref

T = gguf.GGMLQuantizationType
CASES = [(name, case) for name in ref.TYPES for case, _, _ in ref.inputs(name)]


def test_every_type_ggml_quantizes_without_a_grid_is_covered():
    assert set(zq.QUANTIZE_TYPES) == set(ref.TYPES)
    assert set(zq.IMATRIX_TYPES) == set(ref.IMATRIX_TYPES)
    assert set(ref.DIGESTS) == set(CASES)


@pytest.mark.parametrize("name, case", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_bytes_equal_ggml(name, case):
    x, w = next((x, w) for c, x, w in ref.inputs(name) if c == case)
    got = zigllama.quantize(x, name, imatrix=w, threads=2)
    assert got.shape == (ref.ROWS, ref.COLS // zq.GGML_QUANT_SIZES[ref.TYPES[name]][0]
                         * zq.GGML_QUANT_SIZES[ref.TYPES[name]][1])
    assert ref.digest(got) == ref.DIGESTS[(name, case)]


def test_simd_and_portable_paths_agree():
    # The digests above run the AVX2 searches where the CPU has them; this runs
    # a fresh interpreter with SIMD off over the same inputs.
    import subprocess
    import sys
    code = ("import ggml_quant_digests as ref, zigllama\n"
            "bad = [(n, c) for n in ref.TYPES for c, x, w in ref.inputs(n)\n"
            "       if ref.digest(zigllama.quantize(x, n, imatrix=w)) != ref.DIGESTS[(n, c)]]\n"
            "print(bad)\n")
    import os
    env = dict(os.environ, ZIGLLAMA_DISABLE_SIMD="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- the gguf package, where it quantizes the type ----

GGUF_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16", "TQ1_0", "TQ2_0", "MXFP4"]


def gguf_quantize(x, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return gguf.quants.quantize(x, T[name])


def assert_equal_but_signed_zeros(got, want, x, name):
    """Equal, except for the sign of a zero where ggml and gguf choose it
    differently: the d of an all-zero Q4_0/Q5_0 block (ggml always -0 as
    +0 / -8; gguf divides the block's first element, of either sign) and the
    min of a Q4_1/Q5_1 block whose minimum is a zero (ggml keeps the first zero's
    sign, gguf numpy's reduction's)."""
    bsize = zq.GGML_QUANT_SIZES[T[name]][1]
    g = got.reshape(-1, bsize).copy()
    w = want.reshape(-1, bsize).copy()
    if name in ("Q4_0", "Q5_0", "Q4_1", "Q5_1"):
        blocks = x.reshape(-1, 32)
    if name in ("Q4_0", "Q5_0"):
        zero = (blocks == 0).all(axis=1)
        assert (g[zero, 0:2] == [0x00, 0x80]).all()  # -0 as ggml stores it
        g[zero, 1] = w[zero, 1]
    if name in ("Q4_1", "Q5_1"):
        zero_min = blocks.min(axis=1) == 0
        g[zero_min, 3] &= 0x7F
        w[zero_min, 3] &= 0x7F
    np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", GGUF_TYPES)
def test_against_gguf_on_the_digest_inputs(name):
    for case, x, _ in ref.inputs(name):
        assert_equal_but_signed_zeros(zigllama.quantize(x, name), gguf_quantize(x, name), x, name)


finite32 = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(GGUF_TYPES), rows=st.integers(1, 3), data=st.data())
def test_against_gguf_hypothesis(name, rows, data):
    block = zq.GGML_QUANT_SIZES[T[name]][0]
    n = block * data.draw(st.integers(1, 2))
    kind = data.draw(st.sampled_from(["normal", "any", "halves", "zeros"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        x = rng.standard_normal((rows, n)) * data.draw(st.sampled_from([1e-3, 1.0, 100.0]))
    elif kind == "any":
        x = np.array(data.draw(st.lists(finite32, min_size=rows * n, max_size=rows * n))).reshape(rows, n)
    elif kind == "halves":
        x = rng.integers(-8, 9, size=(rows, n)) / 2.0
    else:
        x = np.where(rng.random((rows, n)) < 0.5, -0.0, 0.0)
    x = x.astype(np.float32)
    assert_equal_but_signed_zeros(zigllama.quantize(x, name), gguf_quantize(x, name), x, name)


def test_f16_as_numpy_except_nan_payloads():
    x = ref.float_corners("F16")
    got = zigllama.quantize(x, "F16").view(np.uint16)
    want = x.astype(np.float16).view(np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    # ggml stores every NaN as a quiet 0x7E00 with the input's sign
    np.testing.assert_array_equal(got[nan] & 0x7FFF, 0x7E00)


# ---- importance matrices ----

def test_imatrix_changes_the_result_and_uniform_weights_are_not_the_reference():
    x = np.random.default_rng(0).standard_normal((4, 512)).astype(np.float32)
    w = np.random.default_rng(1).random(512).astype(np.float32)
    for name in zq.IMATRIX_TYPES:
        plain = zigllama.quantize(x, name)
        weighted = zigllama.quantize(x, name, imatrix=w)
        assert plain.shape == weighted.shape and not np.array_equal(plain, weighted), name
        # rows are independent: a row alone gives the same bytes
        np.testing.assert_array_equal(zigllama.quantize(x[2:3], name, imatrix=w), weighted[2:3])


def test_imatrix_splits_over_threads_like_one_thread():
    x = np.random.default_rng(2).standard_normal((96, 1024)).astype(np.float32)
    w = np.random.default_rng(3).random(1024).astype(np.float32)
    for name in ("Q4_K", "IQ4_NL"):
        np.testing.assert_array_equal(zigllama.quantize(x, name, imatrix=w, threads=2),
                                      zigllama.quantize(x, name, imatrix=w, threads=1))


@pytest.mark.parametrize("imatrix, message", [
    (np.ones(256, np.float32), "one weight per column: 512"),
    (np.ones((2, 512), np.float32), "one weight per column"),
    (np.full(512, -1.0, np.float32), "finite and non-negative"),
    (np.full(512, np.nan, np.float32), "finite and non-negative"),
    ("abc", "array of floats"),
])
def test_bad_imatrix(imatrix, message):
    with pytest.raises(QuantizationError, match=message):
        zigllama.quantize(np.zeros((2, 512), np.float32), "Q4_K", imatrix=imatrix)


@pytest.mark.parametrize("name", sorted(set(zq.QUANTIZE_TYPES) - set(zq.IMATRIX_TYPES)))
def test_types_without_imatrix_refuse_one(name):
    with pytest.raises(QuantizationError, match="takes no importance matrix"):
        zigllama.quantize(np.zeros((1, 256), np.float32), name, imatrix=np.ones(256, np.float32))


# ---- overflow: finite input the format cannot hold (issue 12, item 12) ----

# The smallest magnitude that overflows each type's scale, and one just below.
OVERFLOW = {
    "F16": (65520.0, 65504.0), "BF16": (3.4e38, 3.38e38),
    "Q4_0": (8 * 65520.0, 8 * 65504.0), "Q5_0": (16 * 65520.0, 16 * 65504.0),
    "Q8_0": (127 * 65520.0, 127 * 65504.0), "Q4_1": (1e6, 6e4), "Q5_1": (3e6, 6e4),
    "TQ1_0": (65520.0, 65504.0), "TQ2_0": (65520.0, 65504.0),
    "Q2_K": (1e9, 1e5), "Q3_K": (1e9, 1e5), "Q4_K": (1e9, 1e5), "Q5_K": (1e9, 1e5), "Q6_K": (1e9, 1e5),
    "IQ4_NL": (1e9, 1e5), "IQ4_XS": (1e9, 1e5),
}


@pytest.mark.parametrize("name", sorted(OVERFLOW))
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_overflow_raises_naming_row_and_block(name, sign):
    big, fine = OVERFLOW[name]
    x = np.random.default_rng(0).standard_normal((3, 2, 512)).astype(np.float32)
    x[1, 1, 300] = np.float32(sign * fine)
    out = zigllama.quantize(x, name, threads=2)  # just below: no error, finite round trip
    y = np.asarray(zigllama.dequantize(out, name, x.shape))
    assert np.isfinite(y).all()
    x[2, 0, 400] = np.float32(sign * big)
    block = zq.GGML_QUANT_SIZES[T[name]][0]
    unit = "value" if block == 1 else "block"
    with pytest.raises(QuantizationError, match=rf"{name} cannot hold row \(2, 0\), {unit} {400 // block} "):
        zigllama.quantize(x, name, threads=2)


@pytest.mark.parametrize("value", [1e20, 3e38, -3e38])
@pytest.mark.parametrize("name", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"])
def test_squares_that_overflow_raise_instead_of_a_silent_zero(name, value):
    # x * x overflows float: ggml turns the whole block into NaN or zeros (-0.0)
    x = np.zeros((1, 256), np.float32)
    x[0, 17] = value
    with pytest.raises(QuantizationError, match=r"row 0, block 0 "):
        zigllama.quantize(x, name)
    w = np.ones(256, np.float32)
    if name in zq.IMATRIX_TYPES:
        with pytest.raises(QuantizationError):
            zigllama.quantize(x, name, imatrix=w)


def test_signed_zero_scales_as_ggml():
    z = np.full((1, 32), -0.0, np.float32)
    for name in ("Q4_0", "Q5_0"):
        assert zigllama.quantize(z, name)[0, :2].tolist() == [0x00, 0x80]  # d = -0
    for name, off in (("Q4_1", 2), ("Q5_1", 2)):
        assert zigllama.quantize(z, name)[0, off:off + 2].tolist() == [0x00, 0x80]  # min = -0


def test_f16_and_bf16_take_nan_and_inf():
    x = np.array([[np.nan, np.inf, -np.inf, 1.0]], np.float32)
    assert zigllama.quantize(x, "F16").view(np.uint16).tolist() == [[0x7E00, 0x7C00, 0xFC00, 0x3C00]]
    assert zigllama.quantize(x, "BF16").view(np.uint16).tolist() == [[0x7FC0, 0x7F80, 0xFF80, 0x3F80]]
