"""One thread budget: bounded thread counts, threadpoolctl control, nested waits,
futures that keep their pool, Python tasks batched under one GIL acquisition."""
import gc
import os
import subprocess
import sys
import threading
import time
import weakref

import numpy as np
import pytest
import threadpoolctl

import zigllama as zl
from zigllama import _config
from zigllama._core import blas_integration as zb
from zigllama._core import scipy_blas
from zigllama._core import threading as zt

MAX = _config.MAX_THREADS
BAD_COUNTS = [0, -1, MAX + 1, 4096, 100_000, 2**31, 2**63]


@pytest.fixture(autouse=True)
def _restore_setting():
    yield
    zl.set_num_threads(None)


# -- every place a thread count enters ------------------------------------------

def _raw_q8(n=64):
    return zl.quantize(np.ones((1, n), np.float32), "Q8_0")


ENTRY_POINTS = {
    "set_num_threads": lambda n: zl.set_num_threads(n),
    "ThreadPool": lambda n: zl.ThreadPool(n),
    "ThreadPoolConfig": lambda n: zl.ThreadPoolConfig(n),
    "ThreadPoolConfig.detect": lambda n: zl.ThreadPoolConfig.detect(n),
    "dequantize(threads=)": lambda n: zl.dequantize(_raw_q8(), "Q8_0", (1, 64), threads=n),
    "resolve_threads": lambda n: _config.resolve_threads(n),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("count", BAD_COUNTS)
def test_every_thread_count_is_bounded(entry, count):
    with pytest.raises(ValueError, match=f"between 1 and {MAX}"):
        ENTRY_POINTS[entry](count)


@pytest.mark.parametrize("count", BAD_COUNTS)
def test_threadpoolctl_limits_are_bounded(count):
    # A limit below 1 is refused; one above MAX_THREADS limits nothing.
    zl.set_num_threads(2)
    if count < 1:
        with pytest.raises(ValueError, match=f"between 1 and {MAX}"):
            _config.set_limit("pool", count)
        return
    with threadpoolctl.threadpool_limits(count, user_api="zigllama"):
        assert zl.num_threads() == 2
    assert zl.num_threads() == 2


@pytest.mark.parametrize("value", ["0", "-3", str(MAX + 1), "4096", "100000", "lots", "2.5"])
def test_environment_thread_count_is_bounded(monkeypatch, value):
    monkeypatch.setenv("ZIGLLAMA_NUM_THREADS", value)
    with pytest.raises(ValueError, match="ZIGLLAMA_NUM_THREADS"):
        zl.num_threads()


@pytest.mark.parametrize("value", [True, 2.0, "2", None.__class__])
def test_thread_count_must_be_an_integer(value):
    with pytest.raises(TypeError):
        zl.set_num_threads(value)


def test_largest_count_is_accepted():
    zl.set_num_threads(MAX)
    assert zl.num_threads() == MAX
    assert zl.ThreadPoolConfig(MAX).num_workers == MAX - 1  # built, not started


def test_environment_limit_in_a_fresh_process():
    # libgomp used to exit the process on ZIGLLAMA_NUM_THREADS=4096: now a clear error.
    env = dict(os.environ, ZIGLLAMA_NUM_THREADS="4096")
    code = ("import numpy as np, zigllama as zl\n"
            "a = np.ones((256, 256), np.float32)\n"
            "try:\n    zl.get_blas('generic').gemm(a, a)\nexcept ValueError as e:\n    print('refused', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused" in out.stdout and "ZIGLLAMA_NUM_THREADS" in out.stdout


# -- nested waits make progress ------------------------------------------------------

@pytest.mark.parametrize("threads", [2, 3, 4, 5])   # 1 to 4 workers
def test_task_that_submits_and_waits(threads):
    with zl.ThreadPool(threads) as pool:
        def leaf(x):
            return x * x

        def middle(x):
            return pool.submit(leaf, x).result(timeout=60) + 1

        def outer(x):
            return sum(pool.submit(middle, x + i).result(timeout=60) for i in range(3))

        # More waiting tasks than workers: every worker ends up waiting at once.
        futures = [pool.submit(outer, x) for x in range(3 * threads)]
        got = [f.result(timeout=120) for f in futures]
    assert got == [sum((x + i) ** 2 + 1 for i in range(3)) for x in range(3 * threads)]


@pytest.mark.parametrize("threads", [2, 3, 4, 5])
def test_nested_exception(threads):
    with zl.ThreadPool(threads) as pool:
        def fails():
            raise KeyError("inner")

        def outer():
            with pytest.raises(KeyError):
                pool.submit(fails).result(timeout=60)
            assert isinstance(pool.submit(fails).exception(timeout=60), KeyError)
            return "caught"

        assert pool.submit(outer).result(timeout=120) == "caught"


@pytest.mark.parametrize("threads", [3, 4, 5])
def test_nested_timeout_while_nothing_to_help_with(threads):
    # The awaited task already runs on another worker and nothing else is queued:
    # the waiting worker has nothing to help with and its time-out holds.
    with zl.ThreadPool(threads) as pool:
        started, release = threading.Event(), threading.Event()

        def slow():
            started.set()
            release.wait(60)
            return "slow"

        slow_future = pool.submit(slow)
        assert started.wait(60)

        def outer():
            try:
                slow_future.result(timeout=0.05)
            except TimeoutError:
                return "timed out"
            return "no timeout"

        try:
            assert pool.submit(outer).result(timeout=60) == "timed out"
        finally:
            release.set()
        assert slow_future.result(timeout=60) == "slow"


# -- futures keep their pool --------------------------------------------------------

def test_pool_referenced_only_by_its_future():
    assert zl.ThreadPool(2).submit(pow, 3, 4).result(timeout=60) == 81
    gate = threading.Event()
    fut = zl.ThreadPool(2).submit(lambda: gate.wait(30) and "done")
    ref = weakref.ref(fut._pool)
    gc.collect()
    assert ref() is not None
    gate.set()
    assert fut.result(timeout=60) == "done"
    del fut
    # ... and the pool goes once its futures do (the worker that ran the task
    # may hold the last reference a moment longer: then a reaper frees it).
    deadline = time.monotonic() + 30
    while ref() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert ref() is None


# -- Python tasks batched -----------------------------------------------------------

def test_python_tasks_batched_keep_results_and_errors_apart():
    with zl.ThreadPool(2) as pool:
        before = pool.stats().tasks_executed
        futures = [pool.submit(lambda i=i: 1 // (i % 7)) for i in range(500)]
        for i, f in enumerate(futures):
            if i % 7 == 0:
                assert isinstance(f.exception(timeout=60), ZeroDivisionError)
            else:
                assert f.result(timeout=60) == 1 // (i % 7)
        assert pool.stats().tasks_executed - before == 500


def test_batch_hands_c_work_back():
    # A parallel_for queued behind Python tasks still runs (taken back, not lost).
    with zl.ThreadPool(2) as pool:
        ops = zl.ParallelOps(pool)
        x = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32)

        def softmax():
            return ops.softmax(x)

        futures = [pool.submit(softmax) for _ in range(20)] + [pool.submit(int, 5) for _ in range(20)]
        want = np.exp(x - x.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        for f in futures[:20]:
            np.testing.assert_allclose(f.result(timeout=60), want, rtol=1e-5)
        assert [f.result(timeout=60) for f in futures[20:]] == [5] * 20


# -- threadpoolctl --------------------------------------------------------------

def test_threadpool_info_lists_zigllama():
    info = {lib["internal_api"]: lib for lib in threadpoolctl.threadpool_info()}
    assert info["zigllama_pool"]["user_api"] == "zigllama"
    assert info["zigllama_pool"]["num_threads"] == zl.num_threads()
    assert info["zigllama_openmp"]["user_api"] == "openmp"
    assert info["zigllama_pool"]["version"] == zl.__version__


def _scipy_blas_threads():
    return [lib.num_threads for lib in scipy_blas.libraries()]


def _every_backend_call():
    a = np.random.default_rng(1).standard_normal((320, 320)).astype(np.float32)
    raw = zl.quantize(a, "Q4_0")
    zl.get_blas("scipy").gemm(a, a)
    zl.get_blas("scipy").gemm(a.T, a, trans_b=True)
    zl.get_blas("generic").gemm(a, a)
    zl.get_blas("naive").gemm(a[:40], a[:, :40])
    zl.get_blas("scipy").gemv(a, a[0])
    zl.dequantize(raw, "Q4_0", a.shape)
    zl.ParallelOps().matmul(a, a, blas="scipy")
    zl.ParallelOps().softmax(a)
    np.asarray(zl.Tensor.from_numpy(a) @ zl.Tensor.from_numpy(a))


def test_threadpool_limits_one_holds_across_every_backend():
    zl.set_num_threads(2)
    outside = _scipy_blas_threads()
    with threadpoolctl.threadpool_limits(1):
        for _ in range(2):
            _every_backend_call()
            assert zl.num_threads() == 1
            assert _scipy_blas_threads() == [1] * len(outside)
            assert zl.get_blas("generic").threads == 1
            assert zl.get_blas("scipy").threads == 1
    assert _scipy_blas_threads() == outside
    assert zl.num_threads() == 2


def test_zigllama_never_raises_a_limit():
    # An explicit setting above the user's BLAS limit does not raise it.
    zl.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        _every_backend_call()
        assert _scipy_blas_threads() == [1] * len(_scipy_blas_threads())
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        _every_backend_call()
        assert zl.get_blas("generic").threads == 1
        assert zl.num_threads() == 2   # the pool is not OpenMP


def test_limit_results_match():
    a = np.random.default_rng(2).standard_normal((257, 300)).astype(np.float64)
    b = np.random.default_rng(3).standard_normal((300, 129)).astype(np.float64)
    want = a @ b
    for limit in (1, 2):
        with threadpoolctl.threadpool_limits(limit):
            for name in ("scipy", "generic"):
                np.testing.assert_allclose(zl.get_blas(name).gemm(a, b), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", [(300, 200, 150), (40, 500, 300), (500, 40, 200)])
def test_scipy_split_gemm_every_layout(ta, tb, order, shape):
    m, n, k = shape
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((k, m) if ta else (m, k))
    b = rng.standard_normal((n, k) if tb else (k, n))
    out = np.asfortranarray(rng.standard_normal((m, n))) if order == "F" else rng.standard_normal((m, n))
    want = 1.5 * ((a.T if ta else a) @ (b.T if tb else b)) + 0.5 * out
    zl.set_num_threads(2)
    zl.get_blas("scipy").gemm(a, b, out=out, alpha=1.5, beta=0.5, trans_a=ta, trans_b=tb)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-9)


def test_scipy_split_inside_a_pool_task():
    a = np.random.default_rng(4).standard_normal((400, 400))
    with zl.ThreadPool(2) as pool:
        got = pool.submit(zl.get_blas("scipy").gemm, a, a).result(timeout=60)
    np.testing.assert_allclose(got, a @ a, rtol=1e-10, atol=1e-9)



# -- the setting as qgemm and default_pool() read it: cached, never stale ------------

def _cached_setting():
    """default_pool() looks the setting up (through the cache); the cache then
    holds what zigllama.num_threads() says."""
    pool = zt.default_pool()
    assert pool.num_threads == max(2, zl.num_threads())
    return zt._setting_cache()[0]


def test_cached_setting_follows_every_setter(monkeypatch):
    monkeypatch.delenv("ZIGLLAMA_NUM_THREADS", raising=False)
    zl.set_num_threads(3)
    assert _cached_setting() == 3
    zl.set_num_threads(4)
    assert _cached_setting() == 4
    with threadpoolctl.threadpool_limits(3, user_api="zigllama"):
        assert _cached_setting() == 3
        with threadpoolctl.threadpool_limits(1):
            assert _cached_setting() == 1
        assert _cached_setting() == 3
    assert _cached_setting() == 4
    _config._override = 5            # a direct assignment, as Model.__call__ restores it
    assert _cached_setting() == 5
    zl.set_num_threads(None)
    monkeypatch.setenv("ZIGLLAMA_NUM_THREADS", "3")
    assert _cached_setting() == 3
    monkeypatch.setenv("ZIGLLAMA_NUM_THREADS", "2")
    assert _cached_setting() == 2
    for _ in range(2):               # a bad value is an error on every call, never cached
        monkeypatch.setenv("ZIGLLAMA_NUM_THREADS", "lots")
        with pytest.raises(ValueError, match="ZIGLLAMA_NUM_THREADS"):
            zt.default_pool()
    monkeypatch.delenv("ZIGLLAMA_NUM_THREADS")
    assert _cached_setting() == min(_config.available_cpus(), MAX)



def test_cached_setting_is_not_kept_when_an_input_moved_meanwhile(monkeypatch):
    # Another thread's setters, to 4 and back to 3, while the answer is computed:
    # the answer (4) must not be kept for the setting 3.
    real = _config.num_threads

    def racing():
        zl.set_num_threads(4)
        n = real()
        zl.set_num_threads(3)
        return n

    zl.set_num_threads(3)
    monkeypatch.setattr(_config, "num_threads", racing)
    zt.default_pool()
    monkeypatch.setattr(_config, "num_threads", real)
    assert zt._setting_cache()[0] == 0
    assert _cached_setting() == 3

def test_cached_setting_follows_the_cpu_affinity(monkeypatch):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity here")
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("one CPU: no narrower mask to set")
    monkeypatch.delenv("ZIGLLAMA_NUM_THREADS", raising=False)
    assert _cached_setting() == len(cpus)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        assert _cached_setting() == 1
    finally:
        os.sched_setaffinity(0, cpus)
    assert _cached_setting() == len(cpus)


def test_qgemm_sizes_the_default_pool_from_the_setting():
    w = zl.QuantizedTensor(zl.quantize(np.ones((256, 1024), np.float32), "Q8_0"), "Q8_0", (256, 1024))
    x = np.ones(1024, np.float32)     # 256 x 1024: just enough work to split
    want = zl.qgemm(x, w, threads=1)
    for n in (3, 2):
        zl.set_num_threads(n)
        assert np.array_equal(zl.qgemm(x, w), want)
        assert zt._default.num_threads == n
    zl.set_num_threads(3)
    with threadpoolctl.threadpool_limits(1, user_api="zigllama"):
        assert np.array_equal(zl.qgemm(x, w), want)
        assert zt._default.num_threads == 2      # limited to 1: one worker at least
    assert np.array_equal(zl.qgemm(x, w), want)
    assert zt._default.num_threads == 3


QGEMM_AFTER_FORK = """
import os, numpy as np, zigllama as zl
from zigllama._core import threading as zt
w = zl.QuantizedTensor(zl.quantize(np.ones((256, 1024), np.float32), "Q8_0"), "Q8_0", (256, 1024))
x = np.ones(1024, np.float32)
want = zl.qgemm(x, w, threads=2)       # the default pool, made and cached in the parent
parent = zt.default_pool()
pid = os.fork()
if pid == 0:
    ok = np.array_equal(zl.qgemm(x, w, threads=2), want) and np.array_equal(zl.qgemm(x, w), want)
    os._exit(0 if ok and zt.default_pool() is not parent else 1)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), zt.default_pool() is parent)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_qgemm_after_fork_makes_a_new_default_pool():
    # The cached pool is the parent's: the child must not split on it (its workers
    # did not survive the fork) but on a new one.
    out = subprocess.run([sys.executable, "-c", QGEMM_AFTER_FORK], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["child", "0", "True"], (out.stdout, out.stderr)

# -- OpenMP waits passively unless told otherwise --------------------------------------

@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_wait_policy(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, zigllama; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == expected, out.stderr


# -- OpenBLAS's idle workers sleep at once when zigllama is imported before numpy --

OPENBLAS_TIMEOUT = """
import ctypes, zigllama, numpy, threadpoolctl
seen = []
for lib in threadpoolctl.threadpool_info():
    if lib["internal_api"] == "openblas":
        timeout = ctypes.CDLL(lib["filepath"]).openblas_thread_timeout
        timeout.restype = ctypes.c_int
        seen.append(timeout())
print(seen)
"""


@pytest.mark.parametrize("given, expected", [(None, 4), ("12", 12)])
def test_openblas_thread_timeout(given, expected):
    # numpy's OpenBLAS reads the variable when it loads, after `import zigllama` here;
    # its own getter reports what it read (0: unset, the 2**28-cycle spin).
    if not any(lib["internal_api"] == "openblas" for lib in threadpoolctl.threadpool_info()):
        pytest.skip("numpy's BLAS here is not OpenBLAS")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    out = subprocess.run([sys.executable, "-c", OPENBLAS_TIMEOUT], env=env, capture_output=True, text=True,
                         timeout=120)
    seen = eval(out.stdout.strip() or "None")
    assert seen and all(t == expected for t in seen), (out.stdout, out.stderr)
