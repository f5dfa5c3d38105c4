"""Quantized matrix products (zigllama.qgemm) against float64 oracles.

fast mode: x is quantized per block (Q8_0 or Q8_K, ggml's reference
quantizers, checked byte for byte); the oracle multiplies dequantize(W) by the
dequantized activation blocks in float64, so the only error left is the
kernels' float32 summation. exact mode: against dequantize(W) @ x in float64.
Every kernel path the CPU has is run (ZIGLLAMA_QMATMUL_PATH), portable included.
"""
import gc

import gguf
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import zigllama
from zigllama import QuantizedTensor, qgemm
from zigllama._core.qmatmul import _qgemm_gemv_kernels, _qgemm_tile_runs, qgemm_path, qgemm_paths, quantize_activations
from zigllama.errors import GGUFError, IncompatibleShapes, QuantizationError, UnsupportedDtype

FAST_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
              "IQ4_XS", "F16", "BF16", "F32")
# Byte offsets of the f16 scales in each block: random bytes elsewhere cover every
# bit pattern of the quants, sane scales keep the products finite.
F16_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "IQ4_NL": (0,),
              "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
              "IQ4_XS": (0,), "IQ3_XXS": (0,), "IQ2_XXS": (0,)}
PATHS = qgemm_paths()
EPS = np.finfo(np.float32).eps


def block_of(t):
    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t]]


def make_weight(t, n, k, rng):
    """(n, k) weight bytes of type t: random quants with small, finite scales."""
    if t in ("F16", "BF16", "F32"):
        w = rng.standard_normal((n, k)).astype(np.float32)
        if t == "F16":
            return w.astype(np.float16).view(np.uint8)
        if t == "BF16":
            return (w.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        return w.view(np.uint8)
    block, size = block_of(t)
    raw = rng.integers(0, 256, size=(n, k // block, size), dtype=np.uint8)
    for off in F16_FIELDS[t]:
        scales = (rng.standard_normal((n, k // block)) * 0.01).astype(np.float16)
        raw[:, :, off:off + 2] = scales.view(np.uint8).reshape(n, k // block, 2)
    return raw.reshape(n, -1)


# Every path, and the AVX-512 VNNI one once more without its BITALG kernels
# (ZIGLLAMA_QMATMUL_BITALG=0: what a CPU without BITALG runs).
VARIANTS = PATHS + (["avx512_vnni:no-bitalg"] if "avx512_vnni" in PATHS else [])


@pytest.fixture(params=VARIANTS)
def path(request, monkeypatch):
    name, _, option = request.param.partition(":")
    monkeypatch.setenv("ZIGLLAMA_QMATMUL_PATH", name)
    if option == "no-bitalg":
        monkeypatch.setenv("ZIGLLAMA_QMATMUL_BITALG", "0")
    assert qgemm_path() == name
    return name


def fast_oracle(x, w):
    """(float64 product, float64 sum of |terms|) of what the fast kernels compute.
    Blocks with two f16 scales (d and a min or offset) have the two parts of
    each value summed apart, as ggml sums them: each part's terms count."""
    wd = w.dequantize().astype(np.float64)
    if w.type_name in ("F16", "BF16", "F32"):
        xd = x.astype(np.float64)
    else:
        blocks, act = quantize_activations(x, w.ggml_type)
        xd = np.asarray(zigllama.dequantize(blocks, act, x.shape)).astype(np.float64)
    fields = F16_FIELDS.get(w.type_name, ())
    if len(fields) < 2:
        return xd @ wd.T, np.abs(xd) @ np.abs(wd).T
    size = 0
    for keep in fields:   # the weight with every other f16 scale zeroed
        raw = np.array(w.data, np.uint8).reshape(w.n_rows, -1, block_of(w.type_name)[1])
        for off in fields:
            if off != keep:
                raw[:, :, off:off + 2] = 0
        part = QuantizedTensor(raw.reshape(w.n_rows, -1), w.type_name, (w.n_rows, w.n_cols)).dequantize()
        size = size + np.abs(xd) @ np.abs(part.astype(np.float64)).T
    return xd @ wd.T, size


def check_close(got, ref, size, terms):
    # Sequential float32 sums of `terms` products: error <= terms * eps * sum|terms|.
    bound = (terms + 8) * EPS * size + 1e-30
    assert np.all(np.abs(got.astype(np.float64) - ref) <= bound), np.max(np.abs(got - ref) / bound)


@pytest.mark.parametrize("t", FAST_TYPES)
def test_fast_mode_against_the_oracle(t, path):
    rng = np.random.default_rng(hash(t) % 2**32)
    block = block_of(t)[0]
    k = 2 * max(block, 32) * 2
    for n, m in ((37, 1), (5, 3), (64, 17)):
        w = QuantizedTensor(make_weight(t, n, k, rng), t, (n, k))
        x = rng.standard_normal((m, k)).astype(np.float32)
        ref, size = fast_oracle(x, w)
        check_close(qgemm(x, w), ref, size, k // max(block, 32) * 4)


@pytest.mark.parametrize("t", FAST_TYPES + ("IQ2_XXS", "IQ3_XXS"))
def test_exact_mode_against_dequantize(t, path):
    rng = np.random.default_rng(7)
    block = block_of(t)[0]
    k = 2 * max(block, 32)
    for n, m in ((23, 1), (40, 4), (33, 12)):
        w = QuantizedTensor(make_weight(t, n, k, rng), t, (n, k))
        x = rng.standard_normal((m, k)).astype(np.float32)
        wd = w.dequantize().astype(np.float64)
        check_close(qgemm(x, w, mode="exact"), x.astype(np.float64) @ wd.T, np.abs(x) @ np.abs(wd).T, k)


@pytest.mark.parametrize("t", ("Q4_0", "Q5_0", "Q8_0"))
def test_gemv_rows_longer_than_one_run_of_x_blocks(t, path):
    # The x86 Q4_0/Q5_0/Q8_0 GEMV prepares x's block sums and scales in runs
    # (256 or 128 blocks): a longer row is several runs, each adding into y.
    rng = np.random.default_rng(11)
    k = 32 * 259
    w = QuantizedTensor(make_weight(t, 6, k, rng), t, (6, k))
    x = rng.standard_normal((2, k)).astype(np.float32)
    ref, size = fast_oracle(x, w)
    check_close(qgemm(x, w), ref, size, k // 32 * 4)


def test_types_without_fast_kernels_take_the_exact_path():
    rng = np.random.default_rng(3)
    w = QuantizedTensor(make_weight("IQ2_XXS", 9, 256, rng), "IQ2_XXS", (9, 256))
    assert not w.fast
    x = rng.standard_normal((2, 256)).astype(np.float32)
    np.testing.assert_array_equal(qgemm(x, w), qgemm(x, w, mode="exact"))


@given(t=st.sampled_from(FAST_TYPES), n=st.integers(1, 70), m=st.integers(1, 17),
       blocks=st.integers(1, 3), transposed=st.booleans(), with_out=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_shapes_strides_and_out(t, n, m, blocks, transposed, with_out, seed):
    rng = np.random.default_rng(seed)
    k = blocks * max(block_of(t)[0], 32)
    w = QuantizedTensor(make_weight(t, n, k, rng), t, (n, k))
    x = rng.standard_normal((k, m) if transposed else (m, k)).astype(np.float32)
    x = x.T if transposed else x       # non-contiguous x
    out = np.full((m, n), np.nan, np.float32) if with_out else None
    y = qgemm(x, w, out)
    if with_out:
        assert y is out
    ref, size = fast_oracle(np.ascontiguousarray(x), w)
    check_close(y, ref, size, k // max(block_of(t)[0], 32) * 4)


# Types with a tiled integer GEMM: from 4 x rows on, W is decoded into tiles of
# 4 rows and multiplied against groups of x rows (4, or 8 on AVX-512 VNNI).
TILED_TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL",
               "IQ4_XS")
# The tile kernel set each path runs.
TILE_SET = {"portable": "portable", "avx2": "avx2", "avx_vnni": "avx2", "avx512_vnni": "avx512_vnni"}


@pytest.mark.parametrize("t", TILED_TYPES)
def test_tiled_gemm_against_the_oracle(t, path):
    rng = np.random.default_rng(hash(t) % 2**32 + 1)
    k = 3 * max(block_of(t)[0], 32)
    terms = k // max(block_of(t)[0], 32) * 4
    for n, m in ((1, 4), (6, 9), (13, 21), (5, 17)):   # ragged tiles of W and groups of x
        w = QuantizedTensor(make_weight(t, n, k, rng), t, (n, k))
        x = rng.standard_normal((m, k)).astype(np.float32)
        runs = _qgemm_tile_runs()[TILE_SET[path]]
        y = qgemm(x, w)
        assert _qgemm_tile_runs()[TILE_SET[path]] == runs + 1   # the tiles of this path ran
        ref, size = fast_oracle(x, w)
        check_close(y, ref, size, terms)
        # the GEMV (one x row at a time) sums the same integers: equal up to float order
        gemv = np.concatenate([qgemm(x[i:i + 1], w) for i in range(m)])
        assert _qgemm_tile_runs()[TILE_SET[path]] == runs + 1
        check_close(y, gemv.astype(np.float64), 2 * size, terms)
        # every (W row, x row) pair is summed on its own: moving x rows between
        # groups and lanes changes no bit, nor does a strided x or a given out
        perm = rng.permutation(m)
        np.testing.assert_array_equal(qgemm(x[perm], w), y[perm])
        xt = np.asfortranarray(x)
        out = np.full((m, n), np.nan, np.float32)
        assert qgemm(xt, w, out) is out
        np.testing.assert_array_equal(out, y)


@pytest.mark.parametrize("t", TILED_TYPES)
def test_tiled_gemm_at_the_extremes_of_the_integer_ranges(t, path):
    # Every quant at its largest (all bits set) against x quantized to +-127
    # everywhere: the widest products the byte and 16-bit sums must hold.
    # All bits clear too: the most negative values (IQ4's -127, Q4_0's -8).
    block, size = block_of(t)
    k = 2 * max(block, 32)
    n = 5
    signs = np.where(np.arange(k) % 3 == 0, -1.0, 1.0).astype(np.float32)
    x = np.stack([np.ones(k, np.float32), -np.ones(k, np.float32), signs, -signs, 2 * signs])
    for fill in (0xFF, 0x00):
        raw = np.full((n, k // block, size), fill, np.uint8)
        for off in F16_FIELDS[t]:
            raw[:, :, off:off + 2] = np.array([0.01], "<f2").view(np.uint8)
        w = QuantizedTensor(raw.reshape(n, -1), t, (n, k))
        ref, size_ = fast_oracle(x, w)
        check_close(qgemm(x, w), ref, size_, k // max(block, 32) * 4)


@pytest.mark.parametrize("t", FAST_TYPES)
def test_every_fast_type_has_a_gemv_kernel_on_each_path(t, path):
    # a type missing from a path's table would quietly run a narrower path's kernel
    assert _qgemm_gemv_kernels(t) == TILE_SET[path]


def fixed_scale_weight(t, fills, k, scale):
    """Rows of blocks filled with the bytes `fills` (one per row), f16 scales `scale`."""
    block, size = block_of(t)
    raw = np.empty((len(fills), k // block, size), np.uint8)
    raw[:] = np.asarray(fills, np.uint8)[:, None, None]
    for off in F16_FIELDS[t]:
        raw[:, :, off:off + 2] = np.array([scale], "<f2").view(np.uint8)
    return QuantizedTensor(raw.reshape(len(fills), -1), t, (len(fills), k))


@pytest.mark.parametrize("t", TILED_TYPES)
def test_gemv_at_the_extremes_of_the_integer_ranges(t, path):
    # The GEMV (1..3 x rows) on quants with all bits set, all clear and mixed,
    # against x quantized to +-127: the widest sums the kernels' bytes and int16
    # pairs must hold, in 4-row passes and the ragged rows after them.
    k = 2 * max(block_of(t)[0], 32)
    signs = np.where(np.arange(k) % 3 == 0, -1.0, 1.0).astype(np.float32)
    x = np.stack([np.ones(k, np.float32), -np.ones(k, np.float32), signs])
    before = _qgemm_tile_runs()
    for fills in ([0xFF] * 5, [0x00] * 5, [0xFF, 0x00, 0xAA, 0x55, 0x0F, 0xF0, 0xFF]):
        w = fixed_scale_weight(t, fills, k, 0.01)
        for m in (1, 2, 3):
            ref, size = fast_oracle(x[:m], w)
            check_close(qgemm(x[:m], w), ref, size, k // max(block_of(t)[0], 32) * 4)
    assert _qgemm_tile_runs() == before


@pytest.mark.parametrize("t", TILED_TYPES)
def test_gemv_integer_sums_are_exact(t, path):
    # f16 scales of 1 and x of small integers with a -127 in every 32 (so x's
    # quantized blocks have d = 1): every product and partial sum is an integer
    # well below 2^24, so every path must give the oracle's integers exactly.
    rng = np.random.default_rng(hash(t) % 2**32 + 2)
    block, size = block_of(t)
    k = 256
    for n in (1, 3, 4, 9):
        raw = rng.integers(0, 256, size=(n, k // block, size), dtype=np.uint8)
        for off in F16_FIELDS[t]:
            raw[:, :, off:off + 2] = np.array([1.0], "<f2").view(np.uint8)
        w = QuantizedTensor(raw.reshape(n, -1), t, (n, k))
        x = rng.integers(-1, 2, size=(3, k)).astype(np.float32)
        x[:, rng.integers(0, 32) + np.arange(0, k, 32)] = -127
        ref, size_ = fast_oracle(x, w)
        assert size_.max() < 2**23 and np.all(ref == np.round(ref))
        for m in (1, 3):
            np.testing.assert_array_equal(qgemm(x[:m], w), ref[:m].astype(np.float32))


def test_few_x_rows_take_the_gemv_not_the_tiles():
    rng = np.random.default_rng(5)
    w = QuantizedTensor(make_weight("Q4_1", 8, 64, rng), "Q4_1", (8, 64))
    before = _qgemm_tile_runs()
    qgemm(rng.standard_normal((3, 64)).astype(np.float32), w)
    assert _qgemm_tile_runs() == before


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_threads_split_rows_without_changing_a_bit(mode):
    rng = np.random.default_rng(11)
    for t in ("Q4_K", "Q4_1", "IQ4_XS") if mode == "fast" else ("Q4_K",):
        w = QuantizedTensor(make_weight(t, 301, 1024, rng), t, (301, 1024))
        for m in (1, 5, 40):
            x = rng.standard_normal((m, 1024)).astype(np.float32)
            one = qgemm(x, w, mode=mode, threads=1)
            if mode == "fast" or m <= 8:
                np.testing.assert_array_equal(qgemm(x, w, mode=mode, threads=2), one)
            else:   # the panels' sgemm may split its sums differently on more threads
                np.testing.assert_allclose(qgemm(x, w, mode=mode, threads=2), one, rtol=1e-5, atol=1e-5)


def test_vector_x_gives_a_vector():
    rng = np.random.default_rng(1)
    w = QuantizedTensor(make_weight("Q8_0", 7, 64, rng), "Q8_0", (7, 64))
    x = rng.standard_normal(64).astype(np.float32)
    y = qgemm(x, w)
    assert y.shape == (7,)
    np.testing.assert_array_equal(y, qgemm(x[None], w)[0])
    out = np.empty(7, np.float32)
    assert qgemm(x, w, out) is out
    np.testing.assert_array_equal(out, y)



def test_vector_arguments_in_every_form():
    # A vector x and out are checked in C (the decoding path); every form the
    # general path takes gives the same bits, every form it refuses is refused.
    rng = np.random.default_rng(3)
    w = QuantizedTensor(make_weight("Q4_K", 9, 256, rng), "Q4_K", (9, 256))
    x = rng.standard_normal(512).astype(np.float32)
    want = qgemm(x[None, :256], w)[0]
    spaced = np.zeros(512, np.float32)
    spaced[::2] = x[:256]
    unaligned = np.frombuffer(b"\0" + x[:256].tobytes(), np.float32, 256, 1)
    for form in (x[:256], spaced[::2], x[:256][::-1].copy()[::-1], unaligned, np.asarray(x[:256], ">f4").astype("=f4"),
                 x[:256].view(type("Sub", (np.ndarray,), {}))):
        np.testing.assert_array_equal(np.ravel(qgemm(form, w)), want)
    out = np.full(18, np.nan, np.float32)
    for threads in (None, 1, 2, np.int64(2)):
        assert qgemm(x[:256], w, out[:9], threads=threads) is not None
        np.testing.assert_array_equal(out[:9], want)
    with pytest.raises(QuantizationError, match="contiguous rows"):
        qgemm(x[:256], w, out[::2])
    frozen = np.zeros(9, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(QuantizationError, match="read-only"):
        qgemm(x[:256], w, frozen)
    with pytest.raises(IncompatibleShapes, match=r"out has shape \(1, 9\), the product is \(9,\)"):
        qgemm(x[:256], w, np.zeros((1, 9), np.float32))
    with pytest.raises(IncompatibleShapes, match=r"out has shape \(9,\), the product is \(1, 9\)"):
        qgemm(x[None, :256], w, np.zeros(9, np.float32))
    with pytest.raises(UnsupportedDtype, match="float32"):
        qgemm(np.asarray(x[:256], ">f4"), w)
    with pytest.raises(UnsupportedDtype, match="float32"):
        qgemm(x[:256], w, np.zeros(9, ">f4"))
    with pytest.raises(UnsupportedDtype, match="float32"):
        qgemm([float(v) for v in x[:256]], w)    # a list of floats is float64
    with pytest.raises(IncompatibleShapes, match="columns"):
        qgemm(x[:255], w)
    with pytest.raises(IncompatibleShapes, match=r"\(m, k\) or \(k,\)"):
        qgemm(np.float32(1), w)
    for bad in (0, -1, 1025):
        with pytest.raises(ValueError, match="between 1 and"):
            qgemm(x[:256], w, threads=bad)
    for bad in (True, 2.0, "2"):
        with pytest.raises(TypeError):
            qgemm(x[:256], w, threads=bad)

# ---- the activation quantizers, byte for byte ----

def q8_k_reference(x):
    """quantize_row_q8_K_ref in numpy: f32 d, 256 int8, 16 int16 sums per block."""
    out = []
    for blk in x.reshape(-1, 256):
        a = np.abs(blk)
        if a.max() == 0:
            out.append(np.zeros(292, np.uint8))
            continue
        mx = blk[np.argmax(a)]
        iscale = np.float32(-127.0) / mx
        v = np.rint((iscale * blk).astype(np.float32))      # half to even, as nearest_int
        q = np.minimum(127, v).astype(np.int8)
        sums = q.reshape(16, 16).astype(np.int16).sum(axis=1).astype(np.int16)
        d = np.float32(1) / iscale
        out.append(np.concatenate([np.array([d], np.float32).view(np.uint8), q.view(np.uint8), sums.view(np.uint8)]))
    return np.concatenate(out)


@given(blocks=st.integers(1, 4), scale=st.sampled_from([1e-3, 1.0, 300.0]), seed=st.integers(0, 2**32 - 1),
       ties=st.booleans())
def test_activation_quantizers_are_ggml_reference(blocks, scale, seed, ties):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(256 * blocks) * scale).astype(np.float32)
    if ties:   # halves, equal magnitudes of both signs, zero blocks
        x[:64] = np.round(x[:64] * 2) / 2
        x[70], x[71] = 5 * scale, -5 * scale
        x[256 * blocks - 32:] = 0
    import os
    before = os.environ.get("ZIGLLAMA_QMATMUL_PATH")
    try:
        for p in PATHS:
            os.environ["ZIGLLAMA_QMATMUL_PATH"] = p
            q8_0, act = quantize_activations(x, "Q4_0")
            assert act == "Q8_0"
            np.testing.assert_array_equal(q8_0[0], zigllama.quantize(x, "Q8_0"))
            np.testing.assert_array_equal(q8_0[0], gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0))
            q8_k, act = quantize_activations(x, "Q4_K")
            assert act == "Q8_K"
            np.testing.assert_array_equal(q8_k[0], q8_k_reference(x))
    finally:
        if before is None:
            os.environ.pop("ZIGLLAMA_QMATMUL_PATH", None)
        else:
            os.environ["ZIGLLAMA_QMATMUL_PATH"] = before


# ---- views ----

def test_quantized_view_of_a_gguf_file(tmp_path):
    rng = np.random.default_rng(5)
    w_f = rng.standard_normal((48, 256)).astype(np.float32)
    raw = zigllama.quantize(w_f, "Q4_K")
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "test")
    writer.add_tensor("w", raw, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with zigllama.GGUFReader(tmp_path / "m.gguf") as reader:
        w = reader.quantized("w")
        assert w.shape == (48, 256) and w.type_name == "Q4_K" and w.ggml_type == zigllama.GGMLType.Q4_K
        assert w.row_stride == 144 and w.nbytes == raw.nbytes
        assert np.shares_memory(w.data, reader.raw_tensor("w"))
        dense = np.asarray(reader.load("w")).copy()
    np.testing.assert_array_equal(w.dequantize(), dense)   # the view outlives the reader
    x = rng.standard_normal((3, 256)).astype(np.float32)
    ref, size = fast_oracle(x, w)
    check_close(qgemm(x, w), ref, size, 8)
    np.testing.assert_array_equal(w.take([[3, 0], [47, 3]]), dense[[[3, 0], [47, 3]]])
    sub = w.rows(10, 20)
    np.testing.assert_array_equal(qgemm(x, sub), qgemm(x, w)[:, 10:20])
    del reader
    gc.collect()


def test_big_endian_file_is_refused(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "be.gguf"), "test", endianess=gguf.GGUFEndian.BIG)
    writer.add_tensor("w", np.zeros((2, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with zigllama.GGUFReader(tmp_path / "be.gguf") as reader:
        with pytest.raises(GGUFError, match="big-endian"):
            reader.quantized("w")


def test_closed_reader_is_an_error(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "test")
    writer.add_tensor("w", np.zeros((2, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = zigllama.GGUFReader(tmp_path / "m.gguf")
    reader.close()
    with pytest.raises(GGUFError, match="closed"):
        reader.quantized("w")


# ---- bad input ----

def test_bad_input_is_a_clear_error():
    rng = np.random.default_rng(2)
    raw = make_weight("Q4_0", 4, 64, rng)
    w = QuantizedTensor(raw, "Q4_0", (4, 64))
    x = np.zeros((2, 64), np.float32)
    with pytest.raises(IncompatibleShapes, match="columns"):
        qgemm(np.zeros((2, 32), np.float32), w)
    with pytest.raises(UnsupportedDtype, match="float32"):
        qgemm(x.astype(np.float64), w)
    with pytest.raises(IncompatibleShapes, match="out has shape"):
        qgemm(x, w, np.zeros((2, 5), np.float32))
    with pytest.raises(UnsupportedDtype):
        qgemm(x, w, np.zeros((2, 4), np.float64))
    with pytest.raises(QuantizationError, match="contiguous rows"):
        qgemm(x, w, np.zeros((4, 2), np.float32).T)
    with pytest.raises(QuantizationError, match="mode"):
        qgemm(x, w, mode="sloppy")
    with pytest.raises(QuantizationError, match="QuantizedTensor"):
        qgemm(x, raw)
    with pytest.raises(IncompatibleShapes, match="2-D"):
        qgemm(x, QuantizedTensor(raw, "Q4_0", (2, 2, 64)))
    with pytest.raises(QuantizationError, match="whole blocks"):
        QuantizedTensor(raw, "Q4_0", (4, 60))
    with pytest.raises(QuantizationError, match="needs 144 bytes"):
        QuantizedTensor(raw.reshape(-1)[:-1], "Q4_0", (4, 64))
    with pytest.raises(UnsupportedDtype, match="uint8"):
        QuantizedTensor(raw.view(np.int8), "Q4_0", (4, 64))
    with pytest.raises(QuantizationError, match="unknown ggml type"):
        QuantizedTensor(raw, "Q9_9", (4, 64))
    with pytest.raises(QuantizationError, match="shape"):
        QuantizedTensor(raw, "Q4_0", "rows")


def test_empty_products():
    w = QuantizedTensor(np.zeros((0, 18), np.uint8), "Q4_0", (0, 32))
    assert qgemm(np.zeros((3, 32), np.float32), w).shape == (3, 0)
    w = QuantizedTensor(np.zeros((5, 0), np.uint8), "Q4_0", (5, 0))
    np.testing.assert_array_equal(qgemm(np.zeros((2, 0), np.float32), w), np.zeros((2, 5)))
    w = QuantizedTensor(np.zeros((5, 18), np.uint8), "Q4_0", (5, 32))
    assert qgemm(np.zeros((0, 32), np.float32), w).shape == (0, 5)


def test_show_config_names_the_kernel_path():
    from zigllama._show_config import config_dict

    section = config_dict()["qmatmul"]
    assert section["path"] == qgemm_path()
    assert "portable" in section["supported_paths"]


# ---- from Cython, without the GIL ----

QGEMM_EXTENSION = """
from zigllama.blas_integration cimport BlasInterface, zl_blas, ZL_BLAS_OK
from zigllama.qmatmul cimport QuantizedTensor, ZL_QGEMM_FAST, ZL_QGEMM_EXACT
import zigllama

def qgemm_nogil(str backend, QuantizedTensor w, const float[:, ::1] x, float[:, ::1] y, bint exact):
    '''y = x @ W.T through the vtable's qgemm slot, the GIL released.'''
    cdef zl_blas blas = (<BlasInterface>zigllama.get_blas(backend)).c
    cdef int status, mode = ZL_QGEMM_EXACT if exact else ZL_QGEMM_FAST
    with nogil:
        status = blas.vtable.qgemm(blas.ctx, &w.c, x.shape[0], &x[0, 0], x.shape[1], &y[0, 0], y.shape[1],
                                   mode, 0)
    return status
"""

QGEMM_SETUP = """
from Cython.Build import cythonize
from setuptools import Extension, setup
import zigllama

setup(ext_modules=cythonize(
    [Extension("outside_qgemm", ["outside_qgemm.pyx"], include_dirs=[zigllama.get_include()])],
    compiler_directives={"language_level": 3}))
"""


def test_outside_cython_extension_calls_qgemm_without_the_gil(tmp_path):
    import outside_extension

    outside_extension.build(tmp_path, {"outside_qgemm.pyx": QGEMM_EXTENSION, "setup.py": QGEMM_SETUP})
    mod = outside_extension.load(tmp_path, "outside_qgemm")
    rng = np.random.default_rng(4)
    w = QuantizedTensor(make_weight("Q4_K", 70, 512, rng), "Q4_K", (70, 512))
    x = rng.standard_normal((40, 512)).astype(np.float32)
    for backend in ("scipy", "generic", "naive"):
        for exact in (False, True):
            y = np.full((40, 70), np.nan, np.float32)
            assert mod.qgemm_nogil(backend, w, x, y, exact) == 0
            np.testing.assert_allclose(y, qgemm(x, w, mode="exact" if exact else "fast"), rtol=1e-5, atol=1e-4)
    bad = np.empty((40, 69), np.float32)   # ldy shorter than a row of y: rejected, nothing written
    assert mod.qgemm_nogil("generic", w, x, bad, False) < 0
