"""The model's row-wise kernels against numpy, and their argument checks."""
import numpy as np
import pytest

from zigllama._core import _model_kernels as K


@pytest.mark.parametrize("threads", [1, 2])
def test_masked_softmax_causal_window_softcap(threads):
    rng = np.random.default_rng(0)
    group, start, seq, window = 2, 3, 5, 4
    n = start + seq
    s = rng.standard_normal((seq * group, n)).astype(np.float32) * 4
    expected = np.zeros_like(s, dtype=np.float64)
    for r in range(seq * group):
        qpos = start + r // group
        keep = [j for j in range(n) if j <= qpos and qpos - j < window]
        v = 30.0 * np.tanh(s[r, keep].astype(np.float64) * 0.5 / 30.0)
        e = np.exp(v - v.max())
        expected[r, keep] = e / e.sum()
    K.masked_softmax(s, group, start, window, 0.5, 30.0, threads)
    np.testing.assert_allclose(s, expected, atol=1e-6)


def test_rope_pairs_and_tail():
    x = np.arange(2 * 1 * 6, dtype=np.float32).reshape(2, 1, 6)
    cos = np.array([[1, 1], [0, 0]], np.float32)
    sin = np.array([[0, 0], [1, 1]], np.float32)
    normal = x.copy()
    K.rope(normal, cos, sin, 0, 4, False)   # position 1: (a, b) -> (-b, a) on adjacent pairs
    assert normal[1, 0].tolist() == [-7, 6, -9, 8, 10, 11]
    neox = x.copy()
    K.rope(neox, cos, sin, 0, 4, True)      # pairs i and i + 2
    assert neox[1, 0].tolist() == [-8, -9, 6, 7, 10, 11]
    with pytest.raises(ValueError, match="outside the tables"):
        K.rope(x.copy(), cos, sin, 1, 4, True)


def test_rms_norm_and_glu_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    out = np.empty_like(x)
    K.rms_norm(x, w, 1e-6, out)
    np.testing.assert_allclose(out, x / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-6) * w,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        K.rms_norm(x, w[:10], 1e-6, out)
    g, u = x.copy(), rng.standard_normal((3, 64)).astype(np.float32)
    K.gated_activation(g, u, False)
    np.testing.assert_allclose(g, x / (1 + np.exp(-x)) * u, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        K.gated_activation(g, u[:2], True)
