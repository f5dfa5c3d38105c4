"""BLAS integration: every backend equals numpy (the oracle) on every layout,
transpose pair, alpha/beta, leading dimension and micro-kernel edge; bad
arguments get BlasErrors that name the shapes."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import other_simd_paths
import zigllama
from zigllama import BlasConfig, BlasError, BlasInterface, BlasManager, BlasStats, get_blas
from zigllama._core import blas_integration

BACKENDS = ("scipy", "generic", "naive")
DTYPES = (np.float32, np.float64)
# Sizes around the micro-kernel tiles (6 rows; 16 float32 / 8 float64 columns)
# and the degenerate ones.
EDGE_SIZES = (0, 1, 2, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 31, 32, 33)


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    zigllama.set_num_threads(None)


def stored(rng, rows, cols, dtype, order, pad):
    """A rows x cols matrix in `order` whose leading dimension exceeds the row
    (or column) by `pad`: a view into a larger buffer, as BLAS callers pass."""
    if order == "C":
        buf = rng.standard_normal((rows, cols + pad)).astype(dtype)
        return buf[:, :cols]
    buf = rng.standard_normal((cols, rows + pad)).astype(dtype)
    return buf[:, :rows].T


def error_bound(dtype, k, alpha, beta, abs_op_a, abs_op_b, c0):
    """Forward error bound of a dot product of length k (Higham), times 4."""
    eps = np.finfo(dtype).eps
    scale = abs(alpha) * (abs_op_a @ abs_op_b) + abs(beta) * np.abs(c0)
    return 4 * (k + 2) * eps * scale + np.finfo(dtype).tiny


gemm_cases = st.fixed_dictionaries({
    "m": st.sampled_from(EDGE_SIZES), "n": st.sampled_from(EDGE_SIZES), "k": st.sampled_from(EDGE_SIZES),
    "dtype": st.sampled_from(DTYPES),
    "order_a": st.sampled_from("CF"), "order_b": st.sampled_from("CF"), "order_c": st.sampled_from("CF"),
    "pad_a": st.sampled_from((0, 3)), "pad_b": st.sampled_from((0, 1)), "pad_c": st.sampled_from((0, 2)),
    "trans_a": st.booleans(), "trans_b": st.booleans(),
    "alpha": st.sampled_from((1.0, -0.5, 2.0, 0.0)), "beta": st.sampled_from((0.0, 1.0, 0.25, -1.5)),
    "seed": st.integers(0, 2**32 - 1),
})


def check_gemm(backend, case):
    rng = np.random.default_rng(case["seed"])
    m, n, k, dt = case["m"], case["n"], case["k"], case["dtype"]
    shape_a = (k, m) if case["trans_a"] else (m, k)
    shape_b = (n, k) if case["trans_b"] else (k, n)
    a = stored(rng, *shape_a, dt, case["order_a"], case["pad_a"])
    b = stored(rng, *shape_b, dt, case["order_b"], case["pad_b"])
    out = stored(rng, m, n, dt, case["order_c"], case["pad_c"])
    if case["beta"] == 0.0:
        out[...] = np.nan  # beta == 0 overwrites: NaN must not survive
    c0 = np.nan_to_num(out.astype(np.float64))
    op_a = (a.T if case["trans_a"] else a).astype(np.float64)
    op_b = (b.T if case["trans_b"] else b).astype(np.float64)
    expected = case["alpha"] * (op_a @ op_b) + case["beta"] * c0
    result = get_blas(backend).gemm(a, b, out=out, alpha=case["alpha"], beta=case["beta"],
                                    trans_a=case["trans_a"], trans_b=case["trans_b"])
    assert result is out and out.dtype == dt
    assert not np.isnan(out).any()
    bound = error_bound(dt, k, case["alpha"], case["beta"], np.abs(op_a), np.abs(op_b), c0)
    assert np.all(np.abs(out - expected) <= bound)


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=gemm_cases)
def test_gemm_matches_numpy(backend, case):
    check_gemm(backend, case)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_without_out_returns_c_ordered_product(backend, dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 5)).astype(dtype)
    b = rng.standard_normal((5, 9)).astype(dtype)
    c = get_blas(backend).gemm(a, b)
    assert c.shape == (7, 9) and c.dtype == dtype and c.flags.c_contiguous
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("dtype", DTYPES)
def test_generic_gemm_crosses_cache_blocks(threads, dtype):
    """Sizes past kc, mc and nc: every blocking loop runs more than once."""
    zigllama.set_num_threads(threads)
    blk = blas_integration.generic_info()["blocking_" + np.dtype(dtype).name]
    rng = np.random.default_rng(threads)
    cases = [(blk["mc"] + 7, 41, blk["kc"] + 5), (13, blk["nc"] + 19, 9), (40, 37, 2 * blk["kc"] + 1)]
    for m, n, k in cases:
        a = rng.standard_normal((k, m)).astype(dtype).T   # column-major A
        b = rng.standard_normal((k, n)).astype(dtype)
        out = np.full((m, n), np.nan, dtype)
        get_blas("generic").gemm(a, b, out=out)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        tol = 2e-4 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.sqrt(k))


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("dtype", DTYPES)
def test_generic_short_a_reads_b_in_place_or_packs_each_panel(threads, dtype):
    """A short A (one block of rows) reads a row-major B in place with few rows of
    tiles, and packs each micro-panel of B as it goes with more: both sides of
    the switch, a B with a row stride wider than its rows, and edge panels."""
    zigllama.set_num_threads(threads)
    blk = blas_integration.generic_info()["blocking_" + np.dtype(dtype).name]
    rng = np.random.default_rng(11)
    for m in (29, 30, 31, 36, 37, 54, 55, 60, 61, blk["mc"]):  # the switch: 6 (float64), 10 (float32) rows of tiles
        k, n = blk["kc"] + 3, 3 * 16 + 5
        a = rng.standard_normal((m, k)).astype(dtype)
        wide = rng.standard_normal((k, n + 7)).astype(dtype)
        b = wide[:, 2:n + 2]                       # row stride n + 7
        out = np.full((m, n), np.nan, dtype)
        get_blas("generic").gemm(a, b, out=out, beta=0.0)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        tol = 2e-4 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.sqrt(k))


def test_generic_gemm_same_bits_on_one_and_two_threads():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((301, 517)).astype(np.float32)
    b = rng.standard_normal((517, 203)).astype(np.float32)
    zigllama.set_num_threads(1)
    one = get_blas("generic").gemm(a, b)
    zigllama.set_num_threads(2)
    two = get_blas("generic").gemm(a, b)
    np.testing.assert_array_equal(one, two)


# Level 1 and 2 -------------------------------------------------------------

vector_cases = st.fixed_dictionaries({
    "n": st.sampled_from((0, 1, 2, 7, 8, 9, 16, 17, 100)),
    "dtype": st.sampled_from(DTYPES),
    "step_x": st.sampled_from((1, 2, 3)), "step_y": st.sampled_from((1, 2)),
    "alpha": st.sampled_from((0.0, 1.0, -2.5)),
    "seed": st.integers(0, 2**32 - 1),
})


def strided_vector(rng, n, dtype, step):
    return rng.standard_normal(n * step).astype(dtype)[::step]


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=vector_cases)
def test_level1_matches_numpy(backend, case):
    blas = get_blas(backend)
    rng = np.random.default_rng(case["seed"])
    n, dt = case["n"], case["dtype"]
    x = strided_vector(rng, n, dt, case["step_x"])
    y = strided_vector(rng, n, dt, case["step_y"])
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    eps = np.finfo(dt).eps
    bound = 4 * (n + 2) * eps * (np.abs(x64) @ np.abs(y64)) + np.finfo(dt).tiny
    assert abs(blas.dot(x, y) - x64 @ y64) <= bound
    assert isinstance(blas.dot(x, y), float)
    assert abs(blas.nrm2(x) - np.linalg.norm(x64)) <= 4 * (n + 2) * eps * np.linalg.norm(x64) + np.finfo(dt).tiny
    y_before = y64.copy()
    assert blas.axpy(case["alpha"], x, y) is y
    np.testing.assert_allclose(y, y_before + case["alpha"] * x64, rtol=4 * eps, atol=4 * eps * (1 + np.abs(x64).max(initial=0)))
    assert blas.scal(case["alpha"], x) is x
    np.testing.assert_allclose(x, case["alpha"] * x64, rtol=2 * eps, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nrm2_does_not_overflow_float32(backend):
    x = np.full(4, 1e30, np.float32)
    assert get_blas(backend).nrm2(x) == pytest.approx(2e30, rel=1e-6)


gemv_cases = st.fixed_dictionaries({
    "m": st.sampled_from(EDGE_SIZES), "n": st.sampled_from(EDGE_SIZES),
    "dtype": st.sampled_from(DTYPES), "order": st.sampled_from("CF"), "pad": st.sampled_from((0, 3)),
    "trans": st.booleans(), "step_x": st.sampled_from((1, 2)), "step_y": st.sampled_from((1, 3)),
    "alpha": st.sampled_from((1.0, -0.5, 0.0)), "beta": st.sampled_from((0.0, 1.0, 0.5)),
    "seed": st.integers(0, 2**32 - 1),
})


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=gemv_cases)
def test_gemv_matches_numpy(backend, case):
    rng = np.random.default_rng(case["seed"])
    m, n, dt = case["m"], case["n"], case["dtype"]
    a = stored(rng, m, n, dt, case["order"], case["pad"])
    op_a = (a.T if case["trans"] else a).astype(np.float64)
    x = strided_vector(rng, op_a.shape[1], dt, case["step_x"])
    y = strided_vector(rng, op_a.shape[0], dt, case["step_y"])
    if case["beta"] == 0.0:
        y[...] = np.nan
    y0 = np.nan_to_num(y.astype(np.float64))
    expected = case["alpha"] * (op_a @ x.astype(np.float64)) + case["beta"] * y0
    assert get_blas(backend).gemv(a, x, out=y, alpha=case["alpha"], beta=case["beta"], trans=case["trans"]) is y
    assert not np.isnan(y).any()
    bound = error_bound(dt, op_a.shape[1], case["alpha"], case["beta"], np.abs(op_a),
                        np.abs(x.astype(np.float64)), y0)
    assert np.all(np.abs(y - expected) <= bound)


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("dtype", DTYPES)
def test_generic_single_row_and_column_products(threads, dtype):
    """gemm with one row or one column runs the parallel matrix-vector path."""
    zigllama.set_num_threads(threads)
    rng = np.random.default_rng(3)
    for a_shape, b_shape in [((1, 700), (700, 300)), ((300, 700), (700, 1))]:
        for trans in (False, True):
            a = rng.standard_normal(a_shape).astype(dtype)
            b = rng.standard_normal(b_shape).astype(dtype)
            bt = np.ascontiguousarray(b.T) if trans else b
            out = np.full((a_shape[0], b_shape[1]), np.nan, dtype)
            get_blas("generic").gemm(a, bt, out=out, trans_b=trans)
            tol = 1e-4 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=tol, atol=tol * 30)


# Every micro-kernel ----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_generic_gemm_tile_edges(dtype):
    """Around the tile of the micro-kernel in use (14 x 32 / 14 x 16 on AVX-512,
    6 x 16 / 6 x 8 otherwise): ragged rows and columns, beta on and off, a C
    inside a larger array whose surroundings must stay untouched."""
    info = blas_integration.generic_info()
    mr, nr = map(int, info["tile_" + np.dtype(dtype).name].split("x"))
    kc = info["blocking_" + np.dtype(dtype).name]["kc"]
    rng = np.random.default_rng(mr * nr)
    tol = 2e-4 if dtype == np.float32 else 1e-11
    for m in (2, mr - 1, mr, mr + 1, 2 * mr + 3):
        for n in (2, nr - 1, nr, nr + 1, 2 * nr + 5):
            for k, beta in ((1, 0.0), (7, 0.5), (kc + 3, -1.0)):
                a = rng.standard_normal((m, k)).astype(dtype)
                b = rng.standard_normal((k, n)).astype(dtype)
                big = rng.standard_normal((m + 2, n + 3)).astype(dtype)
                before = big.copy()
                out = big[1:m + 1, 1:n + 1]
                get_blas("generic").gemm(a, b, out=out, alpha=1.5, beta=beta)
                ref = 1.5 * (a.astype(np.float64) @ b) + beta * before[1:m + 1, 1:n + 1]
                np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.sqrt(k), err_msg=f"{m}x{n}x{k}")
                mask = np.ones(big.shape, bool)
                mask[1:m + 1, 1:n + 1] = False
                np.testing.assert_array_equal(big[mask], before[mask])


# The generic backend's tests, rerun in a process for each other SIMD path the
# CPU supports (ZIGLLAMA_SIMD; the CPU check is cached per process).
PATH_RERUN = (
    "test_gemm_matches_numpy[generic]",
    "test_generic_gemm_tile_edges",
    "test_generic_gemm_crosses_cache_blocks",
    "test_generic_short_a_reads_b_in_place_or_packs_each_panel",
    "test_generic_gemm_same_bits_on_one_and_two_threads",
    "test_generic_single_row_and_column_products",
    "test_generic_micro_kernel_follows_the_simd_path",
)


@pytest.mark.parametrize("path", other_simd_paths())
def test_generic_every_simd_path_matches_numpy(path):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, ZIGLLAMA_SIMD=path)
    ids = [f"{os.path.basename(__file__)}::{name}" for name in PATH_RERUN]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ids],
                         cwd=here, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout


def test_generic_micro_kernel_follows_the_simd_path():
    from conftest import expected_simd_path

    expected = {"avx512": "avx512", "avx2": "avx2+fma", "portable": "portable"}[expected_simd_path()]
    info = blas_integration.generic_info()
    assert info["micro_kernel"] == expected
    wide = expected == "avx512"
    assert (info["tile_float32"], info["tile_float64"]) == (("14x32", "14x16") if wide else ("6x16", "6x8"))


# Bad arguments ---------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_gemm_bad_arguments_name_the_shapes(backend):
    blas = get_blas(backend)
    a = np.ones((3, 4), np.float32)
    b = np.ones((5, 2), np.float32)
    with pytest.raises(BlasError, match=r"\(3, 4\).*\(5, 2\).*inner dimensions 4 and 5"):
        blas.gemm(a, b)
    with pytest.raises(BlasError, match=r"out has shape \(2, 2\).*\(3, 2\)"):
        blas.gemm(a, np.ones((4, 2), np.float32), out=np.ones((2, 2), np.float32))
    with pytest.raises(BlasError, match="float64.*float32"):
        blas.gemm(a, np.ones((4, 2), np.float64))
    with pytest.raises(BlasError, match="int64.*float32 and float64"):
        blas.gemm(np.ones((3, 4), np.int64), np.ones((4, 2), np.int64))
    with pytest.raises(BlasError, match=r"2-D.*\(2, 3, 4\)"):
        blas.gemm(np.ones((2, 3, 4), np.float32), b)
    with pytest.raises(BlasError, match="contiguous rows or columns"):
        blas.gemm(np.ones((3, 8), np.float32)[:, ::2], np.ones((4, 2), np.float32))
    with pytest.raises(BlasError, match="positive strides"):
        blas.gemm(np.ones((3, 4), np.float32)[::-1], np.ones((4, 2), np.float32))
    with pytest.raises(BlasError, match="positive strides"):
        blas.gemm(np.broadcast_to(np.ones(4, np.float32), (3, 4)), np.ones((4, 2), np.float32))
    readonly = np.zeros((3, 2), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(BlasError, match="read-only"):
        blas.gemm(a, np.ones((4, 2), np.float32), out=readonly)
    with pytest.raises(BlasError, match="buffer protocol"):
        blas.gemm("abc", b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemm_refuses_out_aliasing_an_input(backend):
    blas = get_blas(backend)
    buf = np.ones((4, 8), np.float32)
    with pytest.raises(BlasError, match="shares memory with a"):
        blas.gemm(buf[:, :4], np.eye(4, dtype=np.float32), out=buf[:, 2:6])
    with pytest.raises(BlasError, match="shares memory with b"):
        blas.gemm(np.eye(4, dtype=np.float32), buf[:, :4], out=buf[:, :4])
    # Interleaved but disjoint: allowed (the exact test, not just the bounds).
    out = blas.gemm(buf[:, :4], np.eye(4, dtype=np.float32), out=buf[:, 4:])
    np.testing.assert_array_equal(out, np.ones((4, 4), np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_level1_and_gemv_bad_arguments(backend):
    blas = get_blas(backend)
    x = np.ones(3, np.float64)
    with pytest.raises(BlasError, match=r"x has shape \(3,\) but y has shape \(4,\)"):
        blas.dot(x, np.ones(4))
    with pytest.raises(BlasError, match="float32"):
        blas.axpy(1.0, x, np.ones(3, np.float32))
    with pytest.raises(BlasError, match="shares memory"):
        blas.axpy(1.0, x, x)
    with pytest.raises(BlasError, match="1-D"):
        blas.nrm2(np.ones((2, 2)))
    with pytest.raises(BlasError, match="positive stride"):
        blas.scal(2.0, x[::-1])
    readonly = np.ones(3)
    readonly.flags.writeable = False
    with pytest.raises(BlasError, match="read-only"):
        blas.scal(2.0, readonly)
    with pytest.raises(BlasError, match=r"op\(a\) is \(2, 3\).*x has shape \(2,\)"):
        blas.gemv(np.ones((2, 3)), np.ones(2))
    with pytest.raises(BlasError, match=r"out has shape \(3,\)"):
        blas.gemv(np.ones((2, 3)), np.ones(3), out=np.ones(3))


def test_get_blas_names_and_default(monkeypatch):
    for name in BACKENDS:
        blas = get_blas(name)
        assert isinstance(blas, BlasInterface) and blas.name == name and blas is get_blas(name)
    monkeypatch.delenv("ZIGLLAMA_BLAS", raising=False)
    assert get_blas().name == "scipy"
    monkeypatch.setenv("ZIGLLAMA_BLAS", "generic")
    assert get_blas().name == "generic"
    with pytest.raises(BlasError, match="unknown BLAS backend 'openblas'.*scipy, generic, naive"):
        get_blas("openblas")
    with pytest.raises(TypeError, match="get_blas"):
        BlasInterface()


def test_c_level_argument_checks_protect_c_callers():
    """The vtable functions themselves reject bad sizes (for C callers, who skip
    the Python checks): status, not a crash."""
    import ctypes

    from test_blas_cimport import vtable_of

    c = np.zeros((2, 2), np.float32)
    for name in BACKENDS:
        blas, fns = vtable_of(get_blas(name))
        # lda = 1 < k = 2 for a row-major A: invalid.
        status = fns.sgemm(blas.ctx, 101, 111, 111, 2, 2, 2, 1.0, c.ctypes.data, 1, c.ctypes.data, 2, 0.0,
                           c.ctypes.data, 2)
        assert status == -1, name
        assert fns.sdot(blas.ctx, 2, c.ctypes.data, 0, c.ctypes.data, 1, ctypes.byref(ctypes.c_float())) == -1


# Config, stats, manager, threads ----------------------------------------------

def test_blas_config_reports_what_runs():
    from threadpoolctl import threadpool_info

    cfg = BlasConfig.detect()
    blas_libs = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert cfg.library in {"OpenBLAS", "MKL", "BLIS", "FlexiBLAS", "unknown"}
    if blas_libs:
        assert cfg.filepath in {i["filepath"] for i in blas_libs}
        assert cfg.version in {i["version"] for i in blas_libs}
    d = cfg.as_dict()
    assert d["generic"]["micro_kernel"] in ("avx512", "avx2+fma", "portable")
    assert d["generic"]["cache_bytes"]["l1d"] > 0
    # scipy's Linux wheels bundle OpenBLAS, which threadpoolctl always sees
    if any(i["internal_api"] == "openblas" for i in blas_libs):
        assert cfg.library == "OpenBLAS" and "OpenBLAS" in repr(cfg)
    assert blas_libs, "threadpoolctl sees no BLAS in this process"
    buf = __import__("io").StringIO()
    zigllama.show_config(file=buf)
    assert "blas:" in buf.getvalue() and "micro_kernel" in buf.getvalue()


def test_one_setting_sizes_the_blas_threads():
    # The setting sizes the generic backend's team and the scipy backend's split
    # over the pool; the BLAS behind scipy keeps its own count (never raised).
    from threadpoolctl import threadpool_info

    blas_visible = any(i["user_api"] == "blas" for i in threadpool_info())
    assert blas_visible == (BlasConfig.detect().library != "unknown")
    a = np.ones((128, 128))
    outside = BlasConfig.detect().blas_threads
    for n in (1, 2):
        zigllama.set_num_threads(n)
        get_blas("scipy").gemm(a, a)
        get_blas("generic").gemm(a, a)
        assert blas_integration.generic_threads() == n
        assert get_blas("scipy").threads == n
        assert BlasConfig.detect().num_threads == n
        if blas_visible:
            assert BlasConfig.detect().blas_threads == outside
    with blas_integration.limit_blas_threads(1):
        get_blas("scipy").gemm(a, a)
        get_blas("generic").gemm(a, a)
        assert blas_integration.generic_threads() == 1
        if blas_visible:
            assert BlasConfig.detect().blas_threads == 1
    get_blas("generic").gemm(a, a)
    assert blas_integration.generic_threads() == 2
    with pytest.raises(ValueError, match="limit"):
        with blas_integration.limit_blas_threads(0):
            pass


def test_single_threaded_view():
    a = np.random.default_rng(4).standard_normal((130, 140))
    b = np.random.default_rng(5).standard_normal((140, 70))
    zigllama.set_num_threads(2)
    generic = get_blas("generic")
    view = generic.single_threaded()
    assert view.threads == 1 and view.name == "generic"
    # The view's calls apply the thread setting to the shared context, never to its own.
    np.testing.assert_allclose(view.gemm(a, b), a @ b, rtol=1e-12, atol=1e-12)
    assert view.threads == 1 and generic.threads == 2
    # One thread gives the same bits as the team (each element is one dot product).
    np.testing.assert_array_equal(view.gemm(a, b), generic.gemm(a, b))
    assert get_blas("naive").single_threaded().threads == 1
    with pytest.raises(BlasError, match="limit_blas_threads"):
        get_blas("scipy").single_threaded()


def test_blas_manager_ops_and_stats():
    rng = np.random.default_rng(7)
    mgr = BlasManager("generic")
    a = rng.standard_normal((2, 5, 6)).astype(np.float32)
    w = rng.standard_normal((6, 3)).astype(np.float32)
    np.testing.assert_allclose(mgr.matmul(a, w), a @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mgr.matmul(a[0], w), a[0] @ w, rtol=1e-5, atol=1e-5)
    x = rng.standard_normal(3).astype(np.float32)
    np.testing.assert_allclose(mgr.matvec(w, x), w @ x, rtol=1e-5, atol=1e-5)
    v = np.arange(4.0)
    assert mgr.scale(v, 2.0) is v and list(v) == [0.0, 2.0, 4.0, 6.0]
    assert mgr.dot(v, v) == pytest.approx(56.0)
    assert mgr.norm(v) == pytest.approx(np.sqrt(56.0))
    with pytest.raises(BlasError, match=r"2-D @ 2-D or 3-D @ 2-D.*\(6, 3\) and \(3,\)"):
        mgr.matmul(w, x)
    stats = mgr.stats
    assert stats.count("matmul") == 2 and stats.count("matvec") == 1 and stats.count("gemm") == 0
    assert stats.flops("matmul") == 2 * (10 * 6 * 3) + 2 * (5 * 6 * 3)
    assert stats.seconds("matmul") > 0 and stats.gflops("matmul") > 0
    text = str(stats)
    for op in ("matmul", "matvec", "scale", "dot", "norm", "GFLOPS"):
        assert op in text
    stats.reset()
    assert stats.operations() == []


def test_blas_stats_arithmetic():
    stats = BlasStats()
    stats.record("gemm", 0.5, 10**9)
    stats.record("gemm", 0.5, 10**9)
    assert stats.count("gemm") == 2 and stats.gflops("gemm") == pytest.approx(2.0)
    assert stats.as_dict()["gemm"]["flops"] == 2 * 10**9
    assert stats.gflops("dot") == 0.0


def test_inputs_through_the_buffer_protocol():
    """Anything exporting a buffer (a Tensor does) is taken without a copy."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((3, 2), np.float32)
    out = np.zeros((2, 2), np.float32)
    get_blas("generic").gemm(memoryview(a), memoryview(b), out=memoryview(out))
    np.testing.assert_array_equal(out, a @ b)


# Tensor.matmul and @ ---------------------------------------------------------

TENSOR_SCRIPT = """
import numpy as np
import zigllama as zl
from zigllama._core import blas_integration as bi

assert bi.tensor_backend() is zl.get_blas(), (bi.tensor_backend(), zl.get_blas())
rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    a = rng.standard_normal((37, 29)).astype(dtype)
    b = rng.standard_normal((29, 41)).astype(dtype)
    # Bit for bit what the default backend's gemm gives: the product went through it.
    np.testing.assert_array_equal(np.asarray(zl.Tensor.from_numpy(a) @ zl.Tensor.from_numpy(b)),
                                  zl.get_blas().gemm(a, b))
print("tensor ok", zl.get_blas().name)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensor_matmul_goes_through_the_default_backend(backend):
    env = dict(os.environ, ZIGLLAMA_BLAS=backend)
    run = subprocess.run([sys.executable, "-c", TENSOR_SCRIPT], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"tensor ok {backend}" in run.stdout


ORDER_SCRIPT = """
import hashlib, sys
import numpy as np
for name in sys.argv[1:]:
    __import__(name)
from zigllama._core.tensor import Tensor
rng = np.random.default_rng(5)
digest = hashlib.sha256()
for dtype in (np.float32, np.float64):
    for m, k, n in ((37, 29, 41), (300, 200, 260)):   # one GEMM; split over the pool
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        digest.update(np.asarray(Tensor.from_numpy(a) @ Tensor.from_numpy(b)).tobytes())
print(digest.hexdigest())
"""


def test_tensor_matmul_bits_do_not_depend_on_import_order():
    """Tensor.matmul's backend is chosen in one place (zigllama._core.wire): a fresh
    interpreter gives the same bits whatever it imported first."""
    runs = {}
    for first in ((), ("zigllama._core.blas_integration",), ("zigllama._core.threading",),
                  ("zigllama._core.threading", "zigllama._core.blas_integration")):
        run = subprocess.run([sys.executable, "-c", ORDER_SCRIPT, *first], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        runs[first] = run.stdout.strip()
    assert len(set(runs.values())) == 1, runs


def test_importing_the_blas_module_leaves_tensors_alone():
    code = ("import zigllama._core.tensor as t, zigllama._core.blas_integration, sys; "
            "print('zigllama._core.threading' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"   # nothing wired on import: no pool started


@pytest.fixture(params=BACKENDS)
def tensor_backend(request):
    previous = blas_integration.tensor_backend().name
    yield blas_integration.set_tensor_backend(request.param)
    blas_integration.set_tensor_backend(previous)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_matmul_layouts_and_batches(tensor_backend, dtype):
    from zigllama import Tensor

    rng = np.random.default_rng(11)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)

    def check(ta, tb):
        a, b = np.asarray(ta), np.asarray(tb)
        got = np.asarray(ta @ tb)
        np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), **tol)

    T = Tensor.from_numpy
    a = rng.standard_normal((4, 13, 9)).astype(dtype)
    w = rng.standard_normal((9, 17)).astype(dtype)
    check(T(a), T(w))                                          # one GEMM over 4*13 rows
    check(T(a), T(rng.standard_normal((4, 9, 17)).astype(dtype)))   # batch by batch
    check(T(a[0]), T(rng.standard_normal((3, 9, 17)).astype(dtype)))  # a broadcast over the batch
    check(T(a[1].T.copy()).transpose(), T(w))                  # column-major operand
    check(T(a[2]), T(w.T.copy()).transpose())                  # transposed view
    check(T(rng.standard_normal((9, 30)).astype(dtype))[:, 3:12], T(w))   # leading dimension > row
    check(T(a[3]).transpose(), T(a[3]))


def test_tensor_matmul_other_dtypes_keep_the_loops(tensor_backend):
    from zigllama import Tensor

    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    b = np.arange(8, dtype=np.int32).reshape(4, 2)
    np.testing.assert_array_equal(np.asarray(Tensor.from_numpy(a) @ Tensor.from_numpy(b)), a @ b)
    h = np.linspace(-1, 1, 12, dtype=np.float16).reshape(3, 4)
    np.testing.assert_allclose(np.asarray(Tensor.from_numpy(h) @ Tensor.from_numpy(h.T.copy())),
                               (h @ h.T), rtol=1e-3, atol=1e-3)
