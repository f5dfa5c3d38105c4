"""A quantized weight where a float weight goes: ``x @ w.T``, ``Tensor @ w.T`` and
``ParallelOps.matmul(x, w.T)`` run ``qgemm`` on the blocks where they lie, and
give its bits."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import zigllama as zl
from zigllama import pipeline
from zigllama.cli import main
from zigllama.errors import IncompatibleShapes, InvalidArgumentType, QuantizationError, UnsupportedDtype, ZigLlamaError

TYPES = ("Q4_0", "Q8_0", "Q4_K", "Q6_K", "IQ4_XS", "F16")


def weight(ggml_type, n=48, k=256, seed=0):
    w = np.random.default_rng(seed).standard_normal((n, k), dtype=np.float32)
    return zl.QuantizedTensor(zl.quantize(w, ggml_type), ggml_type, (n, k))


def activations(m, k=256, seed=1):
    return np.random.default_rng(seed).standard_normal((m, k), dtype=np.float32)


@pytest.mark.parametrize("ggml_type", TYPES)
@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_every_operand_form_gives_qgemms_bits(ggml_type, mode):
    w, x = weight(ggml_type), activations(7)
    wt = w.T if mode == "fast" else w.transposed(mode)
    expected = zl.qgemm(x, w, mode=mode)
    np.testing.assert_array_equal(x @ wt, expected)
    np.testing.assert_array_equal(zl.ParallelOps(zl.default_pool()).matmul(x, wt), expected)
    t = zl.Tensor.from_numpy(x) @ wt
    assert isinstance(t, zl.Tensor) and t.shape == (7, 48)
    np.testing.assert_array_equal(np.asarray(t), expected)


@pytest.mark.parametrize("ggml_type", ("Q4_K", "Q8_0"))
def test_the_exact_operand_is_the_dequantized_product(ggml_type):
    w, x = weight(ggml_type), activations(5)
    ref = x.astype(np.float64) @ w.dequantize().astype(np.float64).T
    got = x @ w.transposed("exact")
    bound = 8 * np.finfo(np.float32).eps * (np.abs(x).astype(np.float64) @ np.abs(w.dequantize()).T)
    assert np.all(np.abs(got - ref) <= bound)


def test_the_transpose_describes_itself():
    w = weight("Q4_K")
    assert w.T.shape == (256, 48) and w.T.ndim == 2
    assert w.T.T is w and w.T.weight is w and w.T.mode == "fast"
    assert w.transposed("exact").mode == "exact"
    assert "Q4_K" in repr(w.T) and "fast mode" in repr(w.T)


def test_batched_activations_keep_their_leading_axes():
    w = weight("Q4_K")
    x = activations(6).reshape(2, 3, 256)
    expected = zl.qgemm(x.reshape(6, 256), w).reshape(2, 3, 48)
    np.testing.assert_array_equal(x @ w.T, expected)
    t = zl.Tensor.from_numpy(x) @ w.T
    assert t.shape == (2, 3, 48)
    np.testing.assert_array_equal(np.asarray(t), expected)
    out = np.full((2, 3, 48), np.nan, np.float32)
    assert w.T._zl_rmatmul(x, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_a_vector_times_the_transpose_is_a_vector():
    w, x = weight("Q8_0"), activations(1)[0]
    np.testing.assert_array_equal(x @ w.T, zl.qgemm(x, w))
    assert (zl.Tensor.from_numpy(x) @ w.T).shape == (48,)


def test_out_is_filled_in_place():
    w, x = weight("Q6_K"), activations(4)
    expected = zl.qgemm(x, w)
    out = np.empty((4, 48), np.float32)
    assert zl.ParallelOps(zl.default_pool()).matmul(x, w.T, out=out) is out
    np.testing.assert_array_equal(out, expected)
    t_out = zl.Tensor.zeros((4, 48), "float32")
    assert zl.Tensor.from_numpy(x).matmul(w.T, out=t_out) is t_out
    np.testing.assert_array_equal(np.asarray(t_out), expected)


def test_the_tensor_result_comes_from_the_allocator_given():
    w, x = weight("Q4_K"), activations(4)
    arena = zl.ArenaAllocator()
    t = zl.Tensor.from_numpy(x).matmul(w.T, allocator=arena)
    assert arena.live_allocations == 1 and arena.used >= 4 * 48 * 4
    np.testing.assert_array_equal(np.asarray(t), zl.qgemm(x, w))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_ops_runs_the_product_on_its_own_pool(threads):
    w, x = weight("Q4_K", n=512, k=2048), activations(16, k=2048)
    pool = zl.ThreadPool(threads)
    try:
        before = pool.stats().parallel_fors
        got = zl.ParallelOps(pool).matmul(x, w.T)
        after = pool.stats().parallel_fors
        assert (after > before) == (pool.num_threads > 1)
    finally:
        pool.shutdown()
    # Integer sums per block: the split over threads changes no bit.
    np.testing.assert_array_equal(got, zl.qgemm(x, w, threads=1))


@given(m=st.integers(1, 9), lead=st.integers(1, 3), ggml_type=st.sampled_from(TYPES))
@settings(max_examples=30, deadline=None)
def test_any_row_count_matches_qgemm(m, lead, ggml_type):
    w = weight(ggml_type, n=40)
    x = activations(m * lead).reshape(lead, m, 256)
    np.testing.assert_array_equal(x @ w.T, zl.qgemm(x.reshape(-1, 256), w).reshape(lead, m, 40))


def test_bad_operands_raise_the_package_errors():
    w = weight("Q4_K")
    ops = zl.ParallelOps(zl.default_pool())
    with pytest.raises(IncompatibleShapes):
        activations(3, k=512) @ w.T
    with pytest.raises(IncompatibleShapes):
        ops.matmul(activations(3, k=512), w.T)
    with pytest.raises(UnsupportedDtype):
        activations(3).astype(np.float64) @ w.T          # numpy defers to the weight, which refuses
    with pytest.raises(UnsupportedDtype):
        zl.Tensor.from_numpy(activations(3).astype(np.float64)) @ w.T
    with pytest.raises(IncompatibleShapes):
        ops.matmul(activations(3), w.T, out=np.empty((3, 47), np.float32))
    with pytest.raises(IncompatibleShapes):
        w.T._zl_rmatmul(activations(6).reshape(2, 3, 256), out=np.empty((2, 3, 47), np.float32))
    with pytest.raises(InvalidArgumentType, match="from the right"):
        w.T @ activations(3).T
    with pytest.raises(QuantizationError, match="mode must be"):
        w.transposed("fastest")
    flat = zl.QuantizedTensor(zl.quantize(activations(1, k=512)[0], "Q8_0"), "Q8_0", (512,))
    with pytest.raises(IncompatibleShapes, match="2-D weight"):
        flat.T
    with pytest.raises(ZigLlamaError):
        zl.Tensor.from_numpy(np.float32(1.0).reshape(())) @ w.T


def test_a_big_endian_file_falls_back_to_dequantized_projections(tmp_path, capsys):
    src = pipeline.write_demo_model(str(tmp_path / "le.gguf"), n_layer=1, n_vocab=64)
    big = str(tmp_path / "be.gguf")
    assert main(["convert-endian", src, big, "big", "--quiet"]) == 0
    capsys.readouterr()
    le = pipeline.run_block(src, np.arange(5), threads=1, matmul="exact")
    be = pipeline.run_block(big, np.arange(5), threads=1, matmul="exact")
    assert {s.backend for s in be[1] if "projection" in s.name} != {"qgemm exact"}
    np.testing.assert_allclose(be[0], le[0], rtol=1e-4, atol=1e-4 * float(np.abs(le[0]).max()))
