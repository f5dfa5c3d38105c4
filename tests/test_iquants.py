"""IQ, TQ and MXFP4 dequantization: bit for bit against gguf.quants.dequantize.

Every kernel runs twice: here on the AVX2 path (when the CPU has it) and, in
test_portable_path, the whole file again in a subprocess with
ZIGLLAMA_DISABLE_SIMD=1, on the portable C path.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from hypothesis import given
from hypothesis import strategies as st

import zigllama as zl
from zigllama._core import platform, quantization

Q = GGMLQuantizationType
TYPES = [
    Q.IQ1_S, Q.IQ1_M, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.IQ3_XXS, Q.IQ3_S,
    Q.IQ4_NL, Q.IQ4_XS, Q.TQ1_0, Q.TQ2_0, Q.MXFP4,
]

# Where each block keeps its f16 scale (byte offset); IQ1_M spreads its scale over
# the top nibbles of 4 u16 at byte 48, MXFP4 has an E8M0 exponent byte instead.
F16_SCALE_OFFSET = {Q.TQ1_0: 52, Q.TQ2_0: 64}
F16_SPECIAL = [
    0x0000, 0x8000,                  # +-0
    0x0001, 0x03FF, 0x8001, 0x83FF,  # subnormals
    0x0400, 0x3C00, 0xBC00, 0x7BFF,  # smallest normal, +-1, largest
    0x7C00, 0xFC00,                  # +-inf
    0x7E00, 0x7C01, 0xFE00, 0xFFFF,  # NaNs
]
E8M0_SPECIAL = [0, 1, 2, 3, 126, 127, 128, 253, 254, 255]


def dequantize(raw, qtype, shape):
    return np.asarray(zl.dequantize(np.asarray(raw, dtype=np.uint8), int(qtype), shape))


def reference(raw, qtype, shape):
    with np.errstate(all="ignore"):
        return gguf_dequantize(np.asarray(raw, dtype=np.uint8).reshape(shape[0], -1), qtype).reshape(shape)


def assert_same_bits(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], ref.view(np.uint32)[~nan])


def set_scale(raw, qtype, offset, scale):
    """Write a block's scale: an f16 bit pattern, or an E8M0 byte for MXFP4."""
    if qtype == Q.MXFP4:
        raw[offset] = scale & 0xFF
    elif qtype == Q.IQ1_M:
        for k in range(4):
            hi = offset + 48 + 2 * k + 1
            raw[hi] = (raw[hi] & 0x0F) | (((scale >> (4 * k)) & 0x0F) << 4)
    else:
        at = offset + F16_SCALE_OFFSET.get(qtype, 0)
        raw[at:at + 2] = list(scale.to_bytes(2, "little"))


@st.composite
def quantized(draw, qtype):
    """(raw bytes, shape): random blocks whose scales include 0, subnormals, inf, NaN."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    rows = draw(st.integers(1, 3))
    per_row = draw(st.integers(1, 3))
    raw = bytearray(draw(st.binary(min_size=rows * per_row * type_size, max_size=rows * per_row * type_size)))
    special = E8M0_SPECIAL if qtype == Q.MXFP4 else F16_SPECIAL
    for i in range(rows * per_row):
        scale = draw(st.one_of(st.sampled_from(special), st.integers(0, 0xFF if qtype == Q.MXFP4 else 0xFFFF)))
        set_scale(raw, qtype, i * type_size, scale)
    return np.frombuffer(bytes(raw), dtype=np.uint8), (rows, per_row * block_size)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_hypothesis_blocks_match_gguf(qtype):
    @given(quantized(qtype))
    def check(case):
        raw, shape = case
        assert_same_bits(dequantize(raw, qtype, shape), reference(raw, qtype, shape))

    check()


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_many_random_blocks_match_gguf(qtype):
    """2048 random blocks with finite scales: every grid point, sign pattern and code
    is hit many times over."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(int(qtype))
    raw = rng.integers(0, 256, size=2048 * type_size, dtype=np.uint8)
    special = E8M0_SPECIAL if qtype == Q.MXFP4 else [0x3C00, 0x2E66, 0xB800, 0x0001, 0x5BFF]
    for i in range(2048):
        set_scale(raw, qtype, i * type_size, int(special[i % len(special)]))
    shape = (16, 128 * block_size)
    assert_same_bits(dequantize(raw, qtype, shape), reference(raw, qtype, shape))


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_large_outputs_split_and_streamed_give_the_same_bits(qtype):
    """16 MB and more of output is written with streaming stores and split across
    threads; each half on its own (8 MB, ordinary stores, one thread) must agree."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    rows, cols = 64, 65536
    rng = np.random.default_rng(1000 + int(qtype))
    raw = rng.integers(0, 256, size=(rows, cols // block_size * type_size), dtype=np.uint8)
    whole = np.asarray(zl.dequantize(raw, qtype, (rows, cols), threads=2))
    for half in (slice(0, rows // 2), slice(rows // 2, rows)):
        part = np.asarray(zl.dequantize(np.ascontiguousarray(raw[half]), qtype, (rows // 2, cols), threads=1))
        assert_same_bits(whole[half], part)


def block(qtype):
    return np.zeros(GGML_QUANT_SIZES[qtype][1], dtype=np.uint8)


def u16(raw, offset, value):
    raw[offset:offset + 2] = np.array([value], dtype="<u2").view(np.uint8)


def u32(raw, offset, value):
    raw[offset:offset + 4] = np.array([value], dtype="<u4").view(np.uint8)


def check_vector(qtype, raw, expected):
    """A hand-worked block (ggml-common.h layout and grids) against both implementations."""
    expected = np.asarray(expected, dtype=np.float32)
    shape = (1, expected.size)
    assert_same_bits(dequantize(raw, qtype, shape), expected.reshape(shape))
    assert_same_bits(reference(raw, qtype, shape), expected.reshape(shape))


def test_iq2_xxs_hand_vector():
    # ggml iq2xxs_grid[1] = 0x080808080808082b, [0] all 0x08, [255] = 0x2b2b2b1908081908.
    raw = block(Q.IQ2_XXS)
    u16(raw, 0, 0x3C00)                   # d = 1
    raw[2:6] = [1, 0, 0, 255]             # grid indices of sub-block 0
    u32(raw, 6, (3 << 28) | 1)            # scale 3, sign index 1 -> ksigns 0x81
    db = 1.0 * (0.5 + 3) * 0.25           # 0.875
    y = np.full(256, 8 * 0.125)           # the other sub-blocks: scale 0, grid 0
    y[0:8] = [-43 * db] + [8 * db] * 6 + [-8 * db]
    y[8:24] = 8 * db
    y[24:32] = np.array([8, 25, 8, 8, 25, 43, 43, 43]) * db
    check_vector(Q.IQ2_XXS, raw, y)


def test_iq2_xs_hand_vector():
    raw = block(Q.IQ2_XS)
    u16(raw, 0, 0x3C00)
    u16(raw, 2, (2 << 9) | 1)             # grid 1, sign index 2 -> ksigns 0x82
    raw[66] = 0x21                        # scales 1 (weights 0-15) and 2 (16-31)
    y = np.full(256, 8 * 0.125)
    y[0:8] = [43 * 0.375, -8 * 0.375] + [8 * 0.375] * 5 + [-8 * 0.375]
    y[8:16] = 8 * 0.375
    y[16:32] = 8 * 0.625
    check_vector(Q.IQ2_XS, raw, y)


def test_iq2_s_hand_vector():
    raw = block(Q.IQ2_S)
    u16(raw, 0, 0x4000)                   # d = 2
    raw[2] = 1                            # grid index 1 (qh bits 0)
    raw[34] = 0xF0                        # signs of weights 4-7
    raw[74] = 0x03                        # scale 3 for weights 0-15, 0 for 16-31
    db = 2.0 * 3.5 * 0.25
    y = np.full(256, 8 * 2.0 * 0.5 * 0.25)
    y[0:8] = [43 * db] + [8 * db] * 3 + [-8 * db] * 4
    y[8:16] = 8 * db
    check_vector(Q.IQ2_S, raw, y)


def test_iq3_xxs_hand_vector():
    # ggml iq3xxs_grid[0] = 0x04040404, [1] = 0x04040414.
    raw = block(Q.IQ3_XXS)
    u16(raw, 0, 0x3C00)
    raw[2] = 1
    u32(raw, 66, (2 << 28) | 1)           # scale 2, sign index 1 -> 0x81
    db = 1.0 * 2.5 * 0.5
    y = np.full(256, 4 * 0.25)
    y[0:32] = 4 * db
    y[0:4] = [-20 * db, 4 * db, 4 * db, 4 * db]
    y[7] = -4 * db
    check_vector(Q.IQ3_XXS, raw, y)


def test_iq3_s_hand_vector():
    # ggml iq3s_grid[0] = 0x01010101, [1] = 0x01010103.
    raw = block(Q.IQ3_S)
    u16(raw, 0, 0x3800)                   # d = 0.5
    raw[2] = 1
    raw[74] = 0x01                        # sign of weight 0
    raw[106] = 0x02                       # scale 2 -> d * 5 for weights 0-31
    y = np.full(256, 0.5)
    y[0:32] = 2.5
    y[0] = -3 * 2.5
    y[1:4] = 2.5
    check_vector(Q.IQ3_S, raw, y)


def test_iq1_s_hand_vector():
    # ggml iq1s_grid[0] = all -1, [1] = 0xffffffffffffff01.
    raw = block(Q.IQ1_S)
    u16(raw, 0, 0x3C00)
    raw[2] = 1
    u16(raw, 34, 0x8000 | (3 << 12))      # scale 2*3+1 = 7, delta -1/8
    y = np.full(256, 1.0 * (-1 + 0.125))
    y[0:32] = 7 * (-1 - 0.125)
    y[0] = 7 * (1 - 0.125)
    check_vector(Q.IQ1_S, raw, y)


def test_iq1_m_hand_vector():
    raw = block(Q.IQ1_M)
    raw[0] = 1                            # grid index 1
    raw[32] = 0x08                        # weights 0-7: delta -1/8; 8-15: +1/8
    # d = 1.0 = 0x3C00 spread over the top nibbles (0, 0, 0xC, 3); scales 2 and 1.
    for k, value in enumerate([(0x0 << 12) | (1 << 3) | 2, 0x0 << 12, 0xC << 12, 0x3 << 12]):
        u16(raw, 48 + 2 * k, value)
    y = np.full(256, 1.0 * (-1 + 0.125))
    y[0:8] = [5 * (1 - 0.125)] + [5 * (-1 - 0.125)] * 7
    y[8:16] = 5 * (-1 + 0.125)
    y[16:32] = 3 * (-1 + 0.125)
    check_vector(Q.IQ1_M, raw, y)


KVALUES_IQ4NL = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]


def test_iq4_nl_hand_vector():
    raw = block(Q.IQ4_NL)
    u16(raw, 0, 0x3800)                   # d = 0.5
    raw[2] = 0x8F                         # weight 0: level 15, weight 16: level 8
    y = np.full(32, 0.5 * KVALUES_IQ4NL[0])
    y[0], y[16] = 0.5 * 113, 0.5 * 1
    check_vector(Q.IQ4_NL, raw, y)


def test_iq4_xs_hand_vector():
    raw = block(Q.IQ4_XS)
    u16(raw, 0, 0x3C00)
    u16(raw, 2, 0x0002)                   # high bits of scale 0: 2
    raw[4] = 0x01                         # low bits of scale 0: 1 -> 33 - 32 = 1
    raw[8] = 0x8F
    y = np.full(256, -32.0 * -127)        # the other sub-blocks: scale 0 - 32
    y[0:32] = -127
    y[0], y[16] = 113, 1
    check_vector(Q.IQ4_XS, raw, y)


def test_tq1_0_hand_vector():
    # Digits (2, 0, 1, 2, 1) = 2*81 + 0*27 + 1*9 + 2*3 + 1 = 178 -> ceil(178 * 256 / 243) = 188.
    raw = block(Q.TQ1_0)
    raw[0] = 188                          # weights 0, 32, 64, 96, 128
    raw[48] = 188                         # weights 240, 244, 248, 252 (4 digits)
    u16(raw, 52, 0xB800)                  # d = -0.5
    y = np.full(256, -0.5 * -1)
    y[[0, 32, 64, 96, 128]] = -0.5 * np.array([1, -1, 0, 1, 0])
    y[[240, 244, 248, 252]] = -0.5 * np.array([1, -1, 0, 1])
    check_vector(Q.TQ1_0, raw, y)


def test_tq2_0_hand_vector():
    raw = block(Q.TQ2_0)
    raw[0] = 0b11100100                   # weights 0, 32, 64, 96: codes 0, 1, 2, 3
    raw[32] = 0b10                        # weight 128: code 2
    u16(raw, 64, 0x3C00)
    y = np.full(256, -1.0)
    y[[0, 32, 64, 96, 128]] = [-1, 0, 1, 2, 1]
    check_vector(Q.TQ2_0, raw, y)


def test_mxfp4_hand_vector():
    kvalues = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]
    raw = np.zeros(2 * 17, dtype=np.uint8)
    raw[0] = 128                          # 2^(128-127), halved: 1.0
    raw[1] = 0x9F                         # weight 0: -12, weight 16: -1
    raw[2] = 0x07                         # weight 1: 12, weight 17: 0
    raw[17] = 0                           # 2^-127 halved: the subnormal 2^-128
    raw[18:34] = 0x77
    y = np.zeros(64)
    y[0:32] = kvalues[0]
    y[[0, 16, 1, 17]] = [-12, -1, 12, 0]
    y[32:64] = 12 * 2.0 ** -128
    check_vector(Q.MXFP4, raw, y)


def test_grid_header_is_generated_from_gguf(repo_root):
    """iq_grids.h is exactly what gen_iq_grids.py makes of the gguf package's tables."""
    src = os.path.join(repo_root, "zigllama", "_core", "src", "quantization")
    spec = importlib.util.spec_from_file_location("gen_iq_grids", os.path.join(src, "gen_iq_grids.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    with open(os.path.join(src, "iq_grids.h"), encoding="ascii") as f:
        assert f.read() == gen.render()


def test_kernel_path():
    """The AVX2 path runs wherever the CPU has it, unless it is disabled."""
    features = platform.cpu_features()
    expected = features["avx2"] and features["fma"] and features["f16c"] and not platform.simd_disabled()
    assert platform.simd_kernels() == expected
    assert quantization.simd_active() == expected


def test_portable_path():
    """The whole file again with ZIGLLAMA_DISABLE_SIMD=1: the portable kernels."""
    env = dict(os.environ, ZIGLLAMA_DISABLE_SIMD="1")
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.basename(__file__),
         "-k", "not test_portable_path"],
        cwd=here, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
