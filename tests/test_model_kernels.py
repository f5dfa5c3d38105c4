"""The model's row-wise kernels against numpy, and their argument checks."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zigllama import _model_kernels as K


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


def _glu_reference(g, u, gelu):
    g = g.astype(np.float64)
    # 0.5 g (1 + tanh(c (g + a g^3))) written as g * sigmoid(2 c (...)): the same
    # function without the cancellation of 1 + tanh near -1 in float64.
    z = 2 * np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3) if gelu else g
    return g / (1 + np.exp(-z)) * u


# The SIMD bodies are checked on every path this CPU has, each in a child process
# (the path is read once per process from ZIGLLAMA_SIMD).
_PATH_CHECK = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
from test_model_kernels import check_vector_kernels
from zigllama import _model_kernels as K
check_vector_kernels()
print(K.kernels_path())
"""


def check_vector_kernels():
    """GLU and softmax against float64. Bound: the GLU's argument z is rounded to
    float32 before exp (|z| * 2^-24 relative, the same in libm's expf), so results
    agree to rtol 1e-6 where they are not tiny, and to 1e-9 absolute where the
    sigmoid has underflowed toward 0 (exp clamps at float32's range). Softmax: to
    1e-6 absolute (probabilities, sums of up to 300 terms)."""
    rng = np.random.default_rng(3)
    g = np.concatenate([rng.standard_normal(5000) * 4, np.linspace(-40, 40, 4001),
                        [0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 100.0, -100.0]]).astype(np.float32)
    u = rng.standard_normal(g.size).astype(np.float32)
    for n in (g.size, 1, 7, 15, 17, 33):   # the vector bodies' tails
        for gelu in (True, False):
            out = g[:n].copy().reshape(1, -1)
            K.gated_activation(out, u[:n].reshape(1, -1), gelu, 2)
            np.testing.assert_allclose(out[0], _glu_reference(g[:n], u[:n], gelu), rtol=1e-6, atol=1e-9)
    big = (rng.standard_normal((2, 1 << 17)) * 3).astype(np.float32)   # split over the pool
    ub = rng.standard_normal(big.shape).astype(np.float32)
    out = big.copy()
    K.gated_activation(out, ub, True, 2)
    np.testing.assert_allclose(out, _glu_reference(big, ub, True), rtol=1e-6, atol=1e-9)
    for n, start, window, cap in ((300, 236, 0, 0.0), (37, 20, 5, 0.0), (19, 2, 0, 30.0), (1, 0, 0, 0.0)):
        rows = n - start
        s = (rng.standard_normal((rows, n)) * 6).astype(np.float32)
        expected = np.zeros((rows, n))
        for r in range(rows):
            qpos = start + r
            keep = [j for j in range(n) if j <= qpos and (window == 0 or qpos - j < window)]
            v = s[r, keep].astype(np.float64) * 0.3
            if cap:
                v = cap * np.tanh(v / cap)
            e = np.exp(v - v.max())
            expected[r, keep] = e / e.sum()
        K.masked_softmax(s, 1, start, window, 0.3, cap)
        np.testing.assert_allclose(s, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("path", ["portable", "avx2", "avx512"])
def test_vector_kernels_on_each_path(path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, ZIGLLAMA_SIMD=path)
    code = _PATH_CHECK.format(tests=os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ran = proc.stdout.split()[-1]
    # The path run is the one asked for, or narrower when this CPU lacks it.
    order = ["portable", "avx2", "avx512"]
    assert order.index(ran) <= order.index(path)


def test_residual_norm_fuses_post_norm_add_and_next_norm():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 70)).astype(np.float32)
    d = rng.standard_normal((3, 70)).astype(np.float32)
    pw, nw = rng.standard_normal(70).astype(np.float32), rng.standard_normal(70).astype(np.float32)

    def norm(a, w):
        a = a.astype(np.float64)
        return a / np.sqrt((a ** 2).mean(1, keepdims=True) + 1e-6) * w

    for post in (None, pw):
        xs, out = x.copy(), np.zeros_like(x)
        K.residual_norm(xs, d, post, nw, 1e-6, out)
        want_x = x + (d if post is None else norm(d, post))
        np.testing.assert_allclose(xs, want_x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out, norm(want_x, nw), rtol=1e-5, atol=1e-5)
    xs, out = x.copy(), np.zeros_like(x)
    K.residual_norm(xs, d, None, None, 1e-6, out)
    np.testing.assert_array_equal(xs, x + d)
    assert not out.any()
    with pytest.raises(ValueError, match="next_weight"):
        K.residual_norm(x.copy(), d, None, nw[:5], 1e-6, out)
    with pytest.raises(ValueError, match="delta"):
        K.residual_norm(x.copy(), d[:2], None, nw, 1e-6, out)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5), n=st.integers(1, 300), gelu=st.booleans(), seed=st.integers(0, 2**32 - 1),
       half=st.integers(0, 40), neox=st.booleans(), start=st.integers(0, 3))
def test_kernels_on_any_shape(rows, n, gelu, seed, half, neox, start):
    rng = np.random.default_rng(seed)
    g = (rng.standard_normal((rows, n)) * 3).astype(np.float32)
    u = rng.standard_normal((rows, n)).astype(np.float32)
    out = g.copy()
    K.gated_activation(out, u, gelu, 2)
    np.testing.assert_allclose(out, _glu_reference(g, u, gelu), rtol=1e-6, atol=1e-9)
    # RoPE on heads of 2*half (+1 left alone) against the rotation written out in numpy.
    hd = 2 * half + 1
    x = rng.standard_normal((rows, 2, hd)).astype(np.float32)
    theta = rng.uniform(0, 6, (start + rows, max(half, 1)))
    cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    y = x.copy()
    K.rope(y, cos, sin, start, 2 * half, neox)
    xd, want = x.astype(np.float64), x.astype(np.float64).copy()
    c, s = cos[start:start + rows, :half, None], sin[start:start + rows, :half, None]
    c, s = c.transpose(0, 2, 1), s.transpose(0, 2, 1)
    a_idx = np.arange(half) if neox else 2 * np.arange(half)
    b_idx = a_idx + half if neox else a_idx + 1
    a, b = xd[:, :, a_idx], xd[:, :, b_idx]
    want[:, :, a_idx], want[:, :, b_idx] = a * c - b * s, a * s + b * c
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    # Softmax rows: causal from `start`, probabilities summing to 1 over what is seen.
    sc = (rng.standard_normal((rows, start + rows)) * 4).astype(np.float32)
    K.masked_softmax(sc, 1, start, 0, 0.5, 0.0)
    for r in range(rows):
        assert not sc[r, start + r + 1:].any()
        assert abs(float(sc[r].sum()) - 1) < 1e-5
