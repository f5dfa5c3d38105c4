"""The work-stealing pool: the deque in C under torture (and ThreadSanitizer),
the pool under stress, fork, shutdown and leaks, topology from fake sysfs trees,
and ParallelOps against numpy. Every test runs under a watchdog: a hang dumps the
stacks and fails instead of blocking the suite."""
import collections
import faulthandler
import gc
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import CancelledError, Future

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import outside_extension
import zigllama
from zigllama._core import threading as zt
from zigllama._core.threading import (
    CpuTopology,
    NumaAllocator,
    NumaPolicy,
    ParallelOps,
    ThreadPool,
    ThreadPoolConfig,
    ThreadPoolStats,
    WorkStealingQueue,
)
from zigllama.errors import (
    IncompatibleShapes,
    InvalidShape,
    ThreadPoolError,
    UnsupportedDtype,
)

TIMEOUT = 90


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def pool():
    with ThreadPool(2) as p:
        yield p


def probes():
    """The pool's test probes, a test-only extension (tests/pool_probes.pyx)."""
    return outside_extension.pool_probes()[0]


def probes_env():
    """The environment of a child interpreter that imports the probes."""
    return outside_extension.pool_probes()[1]


def run_python(code, timeout=60, env=None):
    """Run code in a fresh interpreter; a hang is a test failure, not a stuck suite."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=full_env)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


# ---------------------------------------------------------------------------
# The deque in C: torture, growth, the last-item race, ThreadSanitizer
# ---------------------------------------------------------------------------

def _torture_sources(repo_root):
    src = os.path.join(repo_root, "tests", "c", "deque_torture.c")
    deque = os.path.join(repo_root, "zigllama", "_core", "src", "threading", "deque.c")
    if not (os.path.exists(src) and os.path.exists(deque)):
        pytest.fail("the C sources of the deque are missing from the checkout")
    return [src, deque, "-I", zigllama.get_include()]


def _build(repo_root, tmp_path, name, flags):
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        pytest.fail(f"no C compiler {cc!r}: the package cannot have been built without one")
    exe = str(tmp_path / name)
    cmd = cc.split() + ["-std=gnu11", "-pthread", *flags] + _torture_sources(repo_root) + ["-o", exe]
    return subprocess.run(cmd, capture_output=True, text=True), exe


def _parse(stdout):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", stdout)}


def test_deque_torture_every_item_taken_exactly_once(repo_root, tmp_path):
    build, exe = _build(repo_root, tmp_path, "torture", ["-O2", "-Wall", "-Werror"])
    assert build.returncode == 0, build.stderr
    proc = subprocess.run([exe, "5000000", "3", "12345"], capture_output=True, text=True, timeout=TIMEOUT)
    stats = _parse(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stats["missing"] == 0 and stats["duplicated"] == 0 and stats["bad_payload"] == 0
    # >= 10 million hand-offs: every item pushed once and taken once.
    assert stats["pushes"] + stats["taken_by_owner"] + stats["stolen"] >= 10_000_000
    assert stats["retired_arrays"] >= 10  # grew from 4 slots many times, under theft
    # The owner took from a deque holding one item while thieves were stealing;
    # how often a thief won that race (last_item_lost) depends on the scheduler.
    assert stats["last_item_takes"] > 0


def test_deque_torture_under_thread_sanitizer(repo_root, tmp_path):
    build, exe = _build(repo_root, tmp_path, "torture_tsan", ["-O1", "-g", "-fsanitize=thread"])
    if build.returncode != 0:
        pytest.skip(f"the compiler cannot build with -fsanitize=thread: {build.stderr.strip()[:200]}")
    proc = subprocess.run([exe, "200000", "3", "99"], capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66"))
    if proc.returncode != 0 and "unexpected memory mapping" in proc.stderr:
        pytest.skip("ThreadSanitizer cannot run under this kernel's address-space layout")
    assert "ThreadSanitizer" not in proc.stderr, proc.stderr[:4000]
    assert proc.returncode == 0, proc.stdout + proc.stderr[:2000]
    assert _parse(proc.stdout)["missing"] == 0


# ---------------------------------------------------------------------------
# The deque from Python
# ---------------------------------------------------------------------------

def test_deque_owner_lifo_thief_fifo_and_growth():
    q = WorkStealingQueue(log_capacity=1)
    for i in range(100):
        q.push(i)
    assert len(q) == 100 and q.capacity >= 100 and q.retired_arrays >= 6
    assert q.take() == 99
    assert q.steal() == 0
    assert q.steal() == 1
    assert q.take() == 98
    assert len(q) == 96
    with pytest.raises(IndexError):
        WorkStealingQueue().take()
    with pytest.raises(IndexError):
        WorkStealingQueue().steal()
    with pytest.raises(ValueError):
        WorkStealingQueue(log_capacity=0)


def test_deque_holds_references():
    q = WorkStealingQueue()
    obj = object()
    before = sys.getrefcount(obj)
    q.push(obj)
    q.push(obj)
    assert sys.getrefcount(obj) == before + 2
    assert q.take() is obj
    assert sys.getrefcount(obj) == before + 1
    del q  # the remaining reference is released with the deque
    gc.collect()
    assert sys.getrefcount(obj) == before


def test_deque_take_and_push_are_owner_only():
    q = WorkStealingQueue()
    q.push("a")
    q.push("b")
    errors, stolen = [], []

    def thief():
        for op in (lambda: q.push("x"), q.take):
            try:
                op()
            except ThreadPoolError as e:
                errors.append(str(e))
        stolen.append(q.steal())

    t = threading.Thread(target=thief)
    t.start()
    t.join()
    assert len(errors) == 2 and "owner" in errors[0]
    assert stolen == ["a"] and q.take() == "b"


@given(st.lists(st.sampled_from(["push", "take", "steal"]), max_size=200))
def test_deque_matches_a_sequential_model(ops):
    q = WorkStealingQueue(log_capacity=1)
    model = collections.deque()
    n = 0
    for op in ops:
        if op == "push":
            q.push(n)
            model.append(n)
            n += 1
        elif op == "take":
            if model:
                assert q.take() == model.pop()
            else:
                with pytest.raises(IndexError):
                    q.take()
        else:
            if model:
                assert q.steal() == model.popleft()
            else:
                with pytest.raises(IndexError):
                    q.steal()
        assert len(q) == len(model)


# ---------------------------------------------------------------------------
# Topology from sysfs / procfs, real and fake
# ---------------------------------------------------------------------------

def _write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _fake_two_node_smt(root, cache=True):
    """2 packages = 2 NUMA nodes, 2 cores each, 2 threads per core: cpus 0-7.
    Siblings as Linux numbers them: core c of package p has cpus (p*2+c, p*2+c+4)."""
    cpu = "sys/devices/system/cpu"
    _write(root, f"{cpu}/online", "0-7\n")
    for c in range(8):
        pkg, core = (c % 4) // 2, c % 2
        _write(root, f"{cpu}/cpu{c}/topology/physical_package_id", f"{pkg}\n")
        _write(root, f"{cpu}/cpu{c}/topology/core_id", f"{core}\n")
    if cache:
        for idx, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                                   (2, "Unified", "2048K"), (3, "Unified", "30M")]):
            base = f"{cpu}/cpu0/cache/index{idx}"
            _write(root, f"{base}/level", f"{level}\n")
            _write(root, f"{base}/type", f"{kind}\n")
            _write(root, f"{base}/size", f"{size}\n")
            _write(root, f"{base}/coherency_line_size", "64\n")
    node = "sys/devices/system/node"
    _write(root, f"{node}/online", "0-1\n")
    _write(root, f"{node}/node0/cpulist", "0-1,4-5\n")
    _write(root, f"{node}/node1/cpulist", "2-3,6-7\n")


def test_topology_of_this_machine():
    topo = CpuTopology.detect()
    assert topo.num_cpus >= 1 and topo.num_cores >= 1
    assert topo.num_cpus == os.cpu_count() or "cpus" in topo.fallbacks or topo.num_cpus <= os.cpu_count()
    assert sum(len(c) for c in topo.cores) == topo.num_cpus
    assert sorted(c for cpus in topo.numa_nodes.values() for c in cpus) == sorted(topo.cpus)
    assert topo.cache_line in (32, 64, 128, 256)
    if os.path.exists("/sys/devices/system/cpu/cpu0/cache/index0/size"):
        assert topo.l1d_size and topo.l1d_size >= 4096


def test_topology_two_nodes_with_smt(tmp_path):
    _fake_two_node_smt(str(tmp_path))
    topo = CpuTopology.detect(root=str(tmp_path))
    assert topo.num_cpus == 8
    assert topo.num_cores == 4 and topo.threads_per_core == 2
    assert set(topo.cores) == {(0, 4), (1, 5), (2, 6), (3, 7)}
    assert topo.packages == 2
    assert topo.numa_nodes == {0: (0, 1, 4, 5), 1: (2, 3, 6, 7)}
    assert (topo.l1d_size, topo.l2_size, topo.l3_size) == (48 * 1024, 2048 * 1024, 30 * 1024 ** 2)
    assert topo.cache_line == 64 and topo.fallbacks == ()
    assert topo.node_of(6) == 1
    assert topo.as_dict()["numa_nodes"] == {0: [0, 1, 4, 5], 1: [2, 3, 6, 7]}


def test_topology_falls_back_when_files_are_missing(tmp_path):
    root = str(tmp_path)
    # Only the CPU directories exist: no online file, no topology, no node or cache dirs.
    for c in range(3):
        os.makedirs(os.path.join(root, f"sys/devices/system/cpu/cpu{c}"))
    topo = CpuTopology.detect(root=root)
    assert topo.cpus == (0, 1, 2)
    assert topo.num_cores == 3 and topo.packages == 1
    assert topo.numa_nodes == {0: (0, 1, 2)}
    assert topo.cache_line == 64 and topo.l1d_size is None
    assert {"cores", "packages", "numa_nodes", "cache_line", "caches"} <= set(topo.fallbacks)


def test_topology_from_proc_cpuinfo_and_malformed_sysfs(tmp_path):
    root = str(tmp_path)
    _write(root, "sys/devices/system/cpu/online", "garbage\n")
    _write(root, "sys/devices/system/node/online", "0-\n")
    info = []
    for c in range(4):
        info.append(f"processor\t: {c}\nphysical id\t: 0\ncore id\t\t: {c // 2}\n"
                    "cache size\t: 8192 KB\ncache_alignment\t: 64\n")
    _write(root, "proc/cpuinfo", "\n".join(info))
    topo = CpuTopology.detect(root=root)
    assert topo.cpus == (0, 1, 2, 3)
    assert set(topo.cores) == {(0, 1), (2, 3)} and topo.threads_per_core == 2
    assert topo.l3_size == 8192 * 1024 and topo.cache_line == 64
    assert topo.numa_nodes == {0: (0, 1, 2, 3)}


def test_topology_of_an_empty_root_still_answers(tmp_path):
    topo = CpuTopology.detect(root=str(tmp_path))
    assert topo.num_cpus == (os.cpu_count() or 1)
    assert "cpus" in topo.fallbacks


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

def test_config_defaults_to_cpus_minus_one_workers(monkeypatch):
    monkeypatch.delenv("ZIGLLAMA_NUM_THREADS", raising=False)
    cfg = ThreadPoolConfig.detect()
    assert cfg.num_threads == zigllama._config.available_cpus()
    assert cfg.num_workers == max(1, cfg.num_threads - 1)
    assert cfg.numa_policy == NumaPolicy.BALANCED and cfg.affinity is False
    assert cfg.stack_size == zt.DEFAULT_STACK_SIZE


def test_config_from_environment_and_argument(monkeypatch):
    monkeypatch.setenv("ZIGLLAMA_NUM_THREADS", "5")
    assert ThreadPoolConfig.detect().num_workers == 4
    assert ThreadPoolConfig.detect(3).num_workers == 2
    assert ThreadPoolConfig.detect(1).num_workers == 1  # always one worker
    monkeypatch.setenv("ZIGLLAMA_NUM_THREADS", "-2")
    with pytest.raises(ValueError, match="ZIGLLAMA_NUM_THREADS"):
        ThreadPoolConfig.detect()


@pytest.mark.parametrize("kwargs", [dict(num_threads=0), dict(numa_policy="nearest"), dict(numa_policy=9),
                                    dict(stack_size=100), dict(stack_size=-1), dict(spin_us=-5),
                                    dict(num_threads=100000)])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        ThreadPoolConfig(**kwargs)


def test_numa_policy_names():
    assert NumaPolicy.coerce("interleave") is NumaPolicy.INTERLEAVE
    assert NumaPolicy.coerce(" Local ") is NumaPolicy.LOCAL
    assert NumaPolicy.coerce(0) is NumaPolicy.DISABLED
    assert [p.name for p in NumaPolicy] == ["DISABLED", "LOCAL", "INTERLEAVE", "BALANCED"]


def test_pinning_order_from_a_two_node_topology(tmp_path, monkeypatch):
    _fake_two_node_smt(str(tmp_path))
    topo = CpuTopology.detect(root=str(tmp_path))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    balanced = ThreadPoolConfig(9, numa_policy="balanced", affinity=True, topology=topo)
    # Physical cores before SMT siblings, nodes taken in turn.
    assert balanced.worker_cpus() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert balanced.worker_nodes() == [0, 1, 0, 1, 0, 1, 0, 1]
    local = ThreadPoolConfig(5, numa_policy="local", affinity=True, topology=topo)
    assert local.worker_cpus() == [0, 1, 4, 5]  # fill node 0 first
    assert ThreadPoolConfig(3, affinity=False, topology=topo).worker_cpus() == [-1, -1]
    unpinned = ThreadPoolConfig(5, numa_policy="balanced", topology=topo)
    assert unpinned.worker_nodes() == [0, 1, 0, 1]


# ---------------------------------------------------------------------------
# The pool: Python tasks
# ---------------------------------------------------------------------------

def test_submit_returns_a_future(pool):
    fut = pool.submit(lambda a, b=1: a * b, 6, b=7)
    assert isinstance(fut, Future)
    assert fut.result(timeout=30) == 42


def test_exceptions_reach_the_caller(pool):
    class Boom(Exception):
        pass

    def fail(x):
        raise Boom(f"task {x} failed")

    fut = pool.submit(fail, 3)
    with pytest.raises(Boom, match="task 3 failed"):
        fut.result(timeout=30)
    assert isinstance(fut.exception(), Boom)
    results = pool.map(lambda x: 1 // x, [1, 0, 2])
    assert next(results) == 1
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_keeps_order_and_runs_on_workers(pool):
    idents = set()

    def square(x):
        idents.add(threading.get_ident())
        return x * x

    assert list(pool.map(square, range(200))) == [x * x for x in range(200)]
    assert threading.get_ident() not in idents


def test_submit_rejects_non_callables(pool):
    with pytest.raises(TypeError):
        pool.submit(42)


def test_context_manager_and_closed_pool():
    with ThreadPool(2) as p:
        futs = [p.submit(time.sleep, 0.001) for _ in range(20)]
    assert all(f.done() for f in futs)  # shutdown(wait=True) ran them all
    assert p.closed
    with pytest.raises(ThreadPoolError, match="shut down"):
        p.submit(print)
    assert probes().parallel_for(p, 10)[0] == zt.POOL_ECLOSED
    with pytest.raises(ThreadPoolError, match="shut down"):
        ParallelOps(p).softmax(np.ones((4, 4)))
    p.shutdown()  # idempotent
    p.close()


def test_cancel_futures_on_shutdown():
    p = ThreadPool(2)
    gate, started = threading.Event(), threading.Event()

    def blocker():
        started.set()
        return gate.wait(30)

    first = p.submit(blocker)
    # A task not yet started when the pool shuts down is cancelled: the blocker
    # must be running first, however slowly a loaded machine starts it.
    assert started.wait(30)
    rest = [p.submit(lambda: 1) for _ in range(50)]
    closer = threading.Thread(target=p.shutdown, kwargs=dict(cancel_futures=True))
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(30)
    assert not closer.is_alive()
    assert first.result() is True
    outcomes = collections.Counter("cancelled" if f.cancelled() else f.result() for f in rest)
    assert outcomes["cancelled"] + outcomes[1] == 50
    for f in rest:
        if f.cancelled():
            with pytest.raises(CancelledError):
                f.result()


def test_shutdown_from_inside_a_task_is_refused():
    with ThreadPool(2) as p:
        fut = p.submit(lambda: p.shutdown())
        with pytest.raises(ThreadPoolError, match="own tasks"):
            fut.result(timeout=30)


def test_python_tasks_run_concurrently_with_native_ones(pool):
    fut = pool.submit(sum, range(1000))
    status, hits, _ = probes().parallel_for(pool, 10000, 7)
    assert status == 0 and hits.min() == hits.max() == 1
    assert fut.result(timeout=30) == sum(range(1000))


# ---------------------------------------------------------------------------
# The pool from C: parallel_for, nesting, errors, submit/wait, stress
# ---------------------------------------------------------------------------

def test_a_million_tasks_each_run_exactly_once(pool):
    pool.reset_stats()
    status, hits, calls = probes().parallel_for(pool, 1_000_000, 1)
    assert status == 0
    assert hits.min() == 1 and hits.max() == 1
    assert calls == 1_000_000
    stats = pool.stats()
    assert stats.tasks_executed >= 1_000_000 and stats.parallel_fors == 1


@pytest.mark.parametrize("n,grain", [(1, 1), (2, 1), (3, 2), (1000, 0), (1000, 7), (1000, 1000), (1000, 5000)])
def test_parallel_for_covers_the_range(pool, n, grain):
    status, hits, calls = probes().parallel_for(pool, n, grain)
    assert status == 0 and hits.min() == 1 and hits.max() == 1
    if grain > 0:
        assert calls == -(-n // grain)


def test_parallel_for_of_nothing_and_bad_arguments(pool):
    status, hits, calls = probes().parallel_for(pool, 0)
    assert status == 0 and calls == 0
    assert probes().parallel_for(pool, -1)[0] == zt.POOL_EINVAL


def test_first_chunk_error_reaches_the_caller(pool):
    status, hits, calls = probes().parallel_for(pool, 100_000, 10, fail_at=5_003, fail_status=42)
    assert status == 42
    assert hits[5_003] == 1
    assert calls < 10_000  # chunks after the failure are skipped


def test_nested_parallel_for_does_not_deadlock(pool):
    status, hits = probes().nested(pool, 64, 500)
    assert status == 0 and hits.min() == 1 and hits.max() == 1


def test_nested_parallel_for_on_many_threads():
    with ThreadPool(6) as p:  # more workers than cores: every worker nests
        for _ in range(5):
            status, hits = probes().nested(p, 40, 300)
            assert status == 0 and hits.min() == hits.max() == 1


def test_submit_and_wait_from_cython(pool):
    status, counter = probes().submit_count(pool, 200_000)
    assert status == 0 and counter == 200_000


def test_parallel_for_from_many_python_threads(pool):
    errors = []

    def run():
        try:
            for _ in range(20):
                status, hits, _ = probes().parallel_for(pool, 5000, 3)
                assert status == 0 and hits.min() == hits.max() == 1
                assert probes().submit_count(pool, 2000) == (0, 2000)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(40)]  # more than ZL_MAX_EXTERNAL
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_shutdown_while_busy_runs_or_cancels_everything():
    done, cancelled = zt._probe_shutdown_busy(3, 200, 200_000, False)
    assert (done, cancelled) == (200, 0)
    done, cancelled = zt._probe_shutdown_busy(3, 200, 200_000, True)
    assert done + cancelled == 200 and cancelled > 0


def _fd_count():
    return len(os.listdir("/proc/self/fd"))


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_create_and_destroy_a_thousand_pools_without_leaks():
    def cycle(k):
        for i in range(k):
            p = ThreadPool(2, spin_us=0)
            if i % 2:
                probes().parallel_for(p, 8, 1)
            if i % 3 == 0:
                p.submit(int, "1")
            p.shutdown()

    cycle(50)  # warm up allocator arenas and thread caches
    gc.collect()
    fds, rss = _fd_count(), _rss_kib()
    cycle(1000)
    gc.collect()
    assert _fd_count() <= fds
    assert _rss_kib() - rss < 8 * 1024, "RSS grew by more than 8 MiB over 1000 pools"
    assert threading.active_count() == 1 or all(t.daemon for t in threading.enumerate()[1:])


def test_pools_dropped_without_shutdown_are_reclaimed():
    run_python("""
        import gc, os
        from zigllama._core.threading import ThreadPool
        from pool_probes import parallel_for as _probe_parallel_for
        def threads():
            return len(os.listdir('/proc/self/task'))
        base = threads()
        for i in range(200):
            p = ThreadPool(3)
            _probe_parallel_for(p, 100, 1)
            p.submit(len, 'abc')
            del p
        gc.collect()
        # A pool whose last reference went with its future inside its own task
        # is freed by a short-lived reaper thread: give those a moment.
        import time
        deadline = time.monotonic() + 30
        while threads() != base and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threads() == base, (threads(), base)
    """, env=probes_env())


def test_idle_workers_sleep_and_wake_on_new_work():
    with ThreadPool(2, spin_us=10) as p:
        deadline = time.monotonic() + 20
        while p.stats().sleeps == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.stats().sleeps >= 1
        assert p.submit(lambda: "awake").result(timeout=30) == "awake"
        assert p.stats().wakes >= 1


def test_stats_fields_and_reset(pool):
    s = pool.stats()
    assert isinstance(s, ThreadPoolStats)
    assert set(s.as_dict()) == {"tasks_executed", "tasks_submitted", "tasks_stolen", "failed_steals",
                                "injected", "queue_high_water", "sleeps", "wakes", "parallel_fors",
                                "affinity_failures", "numa_applied"}
    probes().submit_count(pool, 1000)
    s = pool.stats()
    assert s.tasks_submitted >= 1000 and s.queue_high_water >= 1
    pool.reset_stats()
    assert pool.stats().tasks_submitted == 0


def test_per_worker_data_is_cache_line_padded():
    assert zt.CACHE_LINE == 64
    assert zt._worker_stride() % zt.CACHE_LINE == 0


def test_affinity_and_numa_policy_are_applied_or_counted():
    topo = CpuTopology.detect()
    with ThreadPool(2, affinity=True, numa_policy="interleave") as p:
        assert p.submit(lambda: os.sched_getaffinity(0)).result(timeout=30) <= set(topo.cpus)
        status, hits, _ = probes().parallel_for(p, 1000, 1)
        assert status == 0
        s = p.stats()
        if topo.num_numa_nodes == 1:
            assert s.numa_applied == 0  # a single node: no system call at all
        assert s.affinity_failures + s.numa_applied <= p.num_workers * 2


def test_pinned_worker_runs_on_its_cpu():
    cfg = ThreadPoolConfig(2, affinity=True)
    cpu = cfg.worker_cpus()[0]
    with ThreadPool(config=cfg) as p:
        # The only worker is pinned; the caller thread is not, so ask the worker.
        seen = p.submit(lambda: os.sched_getaffinity(0)).result(timeout=30)
        if p.stats().affinity_failures == 0:
            assert seen == {cpu}


# ---------------------------------------------------------------------------
# Fork
# ---------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_use_after_fork_gives_a_fresh_default_pool_or_a_clear_error():
    out = run_python("""
        import os, sys, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        import zigllama
        from zigllama._core import threading as zt
        import pool_probes
        from zigllama.errors import ThreadPoolError
        explicit = zt.ThreadPool(2)
        default = zt.default_pool()
        gate = threading.Event()
        stuck = explicit.submit(gate.wait, 30)  # busy in the parent at fork time
        assert pool_probes.parallel_for(default, 1000, 1)[0] == 0
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                try:
                    explicit.submit(print)
                    code = 10
                except ThreadPoolError as e:
                    assert "fork" in str(e)
                try:
                    stuck.result(timeout=5)
                    code = 11
                except ThreadPoolError:
                    pass
                fresh = zt.default_pool()
                assert fresh is not default
                status, hits, _ = pool_probes.parallel_for(fresh, 100000, 1)
                assert status == 0 and hits.min() == hits.max() == 1
                assert fresh.submit(lambda: 7).result(timeout=10) == 7
                explicit.shutdown()  # only marks it closed: no join of threads that are not here
            except BaseException as e:
                print("child failed:", repr(e), flush=True)
                code = 12
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        gate.set()
        assert stuck.result(timeout=30) is True
        explicit.shutdown()
        print("child", os.waitstatus_to_exitcode(status))
    """, timeout=120, env=probes_env())
    assert "child 0" in out


# ---------------------------------------------------------------------------
# Default pool
# ---------------------------------------------------------------------------

def test_default_pool_follows_the_thread_setting():
    try:
        zigllama.set_num_threads(3)
        p3 = zt.default_pool()
        assert p3 is zt.default_pool() and p3.num_threads == 3
        zigllama.set_num_threads(2)
        p2 = zt.default_pool()
        assert p2 is not p3 and p2.num_threads == 2
    finally:
        zigllama.set_num_threads(None)


def test_interpreter_exits_with_pools_busy_and_open():
    out = run_python("""
        import time
        from zigllama._core.threading import ThreadPool, default_pool
        p = ThreadPool(3)
        futs = [p.submit(time.sleep, 0.01) for _ in range(30)]
        default_pool().submit(time.sleep, 0.05)
        print("exiting")
    """, timeout=60)
    assert out.splitlines() == ["exiting"]


# ---------------------------------------------------------------------------
# ParallelOps against numpy
# ---------------------------------------------------------------------------

def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_rmsnorm(x, w, eps):
    y = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + eps)
    return (y * (1 if w is None else w)).astype(x.dtype)


TOL = {np.float32: dict(rtol=2e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-300)}


@settings(max_examples=40)
@given(rows=st.integers(1, 70), cols=st.integers(1, 300), dtype=st.sampled_from([np.float32, np.float64]),
       scale=st.sampled_from([1.0, 30.0, 1e3]), grain=st.sampled_from([None, 1, 5, 1000]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_softmax_equals_numpy(pool, rows, cols, dtype, scale, grain, seed):
    x = (np.random.default_rng(seed).standard_normal((rows, cols)) * scale).astype(dtype)
    got = ParallelOps(pool).softmax(x, grain=grain)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, np_softmax(x), **TOL[dtype])
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-5)


@settings(max_examples=40)
@given(rows=st.integers(1, 70), cols=st.integers(1, 300), dtype=st.sampled_from([np.float32, np.float64]),
       weighted=st.booleans(), eps=st.sampled_from([1e-6, 1e-5, 0.0]), seed=st.integers(0, 2 ** 32 - 1))
def test_rmsnorm_equals_numpy(pool, rows, cols, dtype, weighted, eps, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)).astype(dtype) + dtype(0.1)
    w = rng.standard_normal(cols).astype(dtype) if weighted else None
    got = ParallelOps(pool).rmsnorm(x, w, eps=eps)
    np.testing.assert_allclose(got, np_rmsnorm(x, w, eps), rtol=4e-6 if dtype == np.float32 else 1e-12)


def test_softmax_never_overflows_and_propagates_nan(pool):
    ops = ParallelOps(pool)
    x = np.array([[1000.0, 1000.0, -1000.0], [-np.inf, 0.0, 0.0], [np.nan, 1.0, 2.0], [1.0, np.nan, 2.0]])
    with np.errstate(invalid="ignore"):
        ref = np_softmax(x)
    got = ops.softmax(x)
    np.testing.assert_allclose(got[:2], ref[:2], rtol=1e-15)
    assert np.isnan(got[2:]).all() and np.isnan(ref[2:]).all()
    assert np.isfinite(ops.softmax(np.full((2, 5), 3e38, np.float32))).all()


def test_parallel_ops_on_nd_arrays_out_and_views(pool):
    ops = ParallelOps(pool)
    x = np.random.default_rng(0).standard_normal((3, 4, 50))
    np.testing.assert_allclose(ops.softmax(x), np_softmax(x), rtol=1e-13)
    out = np.empty_like(x)
    assert ops.softmax(x, out=out) is out
    strided = x[:, ::2, ::-1]  # not contiguous: copied, result still right
    np.testing.assert_allclose(ops.softmax(strided), np_softmax(strided), rtol=1e-13)
    np.testing.assert_allclose(ops.rmsnorm(x, np.ones(50)), np_rmsnorm(x, None, 1e-6), rtol=1e-12)
    assert ops.softmax(np.empty((0, 5))).shape == (0, 5)
    assert ops.softmax(np.empty((3, 0))).shape == (3, 0)
    assert ops.rmsnorm(np.empty((0, 4), np.float32)).shape == (0, 4)


def test_parallel_ops_reject_bad_input(pool):
    ops = ParallelOps(pool)
    with pytest.raises(UnsupportedDtype):
        ops.softmax(np.ones((2, 2), np.int32))
    with pytest.raises(InvalidShape):
        ops.softmax(np.float64(1.0))
    with pytest.raises(IncompatibleShapes):
        ops.softmax(np.ones((2, 3)), out=np.empty((3, 2)))
    with pytest.raises(UnsupportedDtype):
        ops.softmax(np.ones((2, 3)), out=np.empty((2, 3), np.float32))
    with pytest.raises(ValueError):
        ops.softmax(np.ones((2, 3)), out=np.empty((3, 2)).T)
    with pytest.raises(IncompatibleShapes):
        ops.rmsnorm(np.ones((2, 3)), np.ones(4))
    with pytest.raises(UnsupportedDtype):
        ops.rmsnorm(np.ones((2, 3)), np.ones(3, np.float32))
    with pytest.raises(ValueError):
        ops.rmsnorm(np.ones((2, 3)), eps=-1.0)
    with pytest.raises(ValueError):
        ops.softmax(np.ones((2, 3)), grain=0)
    with pytest.raises(TypeError):
        ParallelOps(pool="nope")


def test_parallel_ops_use_the_default_pool():
    x = np.random.default_rng(1).standard_normal((10, 10))
    np.testing.assert_allclose(ParallelOps().softmax(x), np_softmax(x), rtol=1e-13)


# ---------------------------------------------------------------------------
# NUMA-aware allocation
# ---------------------------------------------------------------------------

def test_numa_allocator_arrays():
    topo = CpuTopology.detect()
    alloc = NumaAllocator(node=0)
    a = alloc.empty((100, 3), np.float64)
    assert a.shape == (100, 3) and a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable
    assert not a.any()  # fresh pages are zero
    a[:] = 1.5
    assert a.sum() == 450.0
    assert NumaAllocator.is_bound(a) == (topo.num_numa_nodes > 1)
    assert NumaAllocator.node_of(a) in (-1, *topo.numa_nodes)
    assert NumaAllocator().empty(0).shape == (0,)
    with pytest.raises(ValueError):
        NumaAllocator(node=4096)
    with pytest.raises(InvalidShape):
        alloc.empty((-1, 2))


def test_numa_allocator_memory_outlives_the_allocator():
    a = NumaAllocator().empty(1000, np.int32)
    a[:] = np.arange(1000)
    gc.collect()
    assert a[999] == 999


# ---------------------------------------------------------------------------
# ParallelOps.matmul through the BLAS vtable
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["scipy", "generic", "naive"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_equals_numpy_on_every_backend(pool, backend, dtype):
    rng = np.random.default_rng(3)
    ops = ParallelOps(pool)
    for m, k, n, grain in [(97, 33, 41, None), (1, 5, 7, None), (64, 64, 64, 1), (130, 17, 3, 50)]:
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        got = ops.matmul(a, b, blas=backend, grain=grain)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.sqrt(k))


def test_matmul_edges_out_and_errors(pool):
    ops = ParallelOps(pool)
    a, b = np.ones((4, 3)), np.ones((3, 2))
    out = np.full((4, 2), np.nan)
    assert ops.matmul(a, b, out=out) is out and (out == 3).all()
    assert (ops.matmul(np.ones((4, 0)), np.ones((0, 2))) == 0).all()
    assert ops.matmul(np.ones((0, 3)), b).shape == (0, 2)
    with pytest.raises(IncompatibleShapes):
        ops.matmul(a, np.ones((4, 2)))
    with pytest.raises(UnsupportedDtype):
        ops.matmul(a, b.astype(np.float32))
    with pytest.raises(UnsupportedDtype):
        ops.matmul(a.astype(np.int64), b)
    with pytest.raises(InvalidShape):
        ops.matmul(np.ones(3), b)
    with pytest.raises(IncompatibleShapes):
        ops.matmul(a, b, out=np.empty((2, 4)))
    with pytest.raises(zigllama.BlasError):
        ops.matmul(a, b, blas="nope")


def test_matmul_leaves_the_blas_thread_count_alone(pool):
    from threadpoolctl import threadpool_info

    before = [(i["filepath"], i["num_threads"]) for i in threadpool_info()]
    ParallelOps(pool).matmul(np.ones((300, 200)), np.ones((200, 100)))
    assert [(i["filepath"], i["num_threads"]) for i in threadpool_info()] == before


def test_public_names_and_show_config():
    import io

    for name in ("CpuTopology", "ThreadPoolConfig", "ThreadPool", "ThreadPoolStats", "WorkStealingQueue",
                 "ParallelOps", "NumaPolicy", "NumaAllocator", "default_pool"):
        assert getattr(zigllama, name) is getattr(zt, name)
    buf = io.StringIO()
    zigllama.show_config(file=buf)
    text = buf.getvalue()
    assert "threading:" in text and "numa_policy" in text and "cache_line" in text


# ---------------------------------------------------------------------------
# The Cython API from outside the package
# ---------------------------------------------------------------------------

OUTSIDE = textwrap.dedent("""
    from libc.stdint cimport int64_t
    from zigllama.threading cimport zl_pool, pool_ptr, parallel_for, submit, wait, zl_task_group, zl_task_group_init

    cdef int scale_rows(void *ctx, int64_t begin, int64_t end) noexcept nogil:
        cdef double *x = <double *>ctx
        cdef int64_t i
        for i in range(begin, end):
            if x[i] < 0:
                return 3            # a positive error code of our own
            x[i] *= 2.0
        return 0

    cdef int add_one(void *ctx) noexcept nogil:
        cdef double *x = <double *>ctx
        x[0] += 1.0
        return 0

    def double_all(double[::1] x, pool=None, int64_t grain=64):
        cdef zl_pool *p = pool_ptr(pool)
        cdef int status
        with nogil:
            status = parallel_for(p, x.shape[0], grain, scale_rows, &x[0])
        return status

    def add_one_each(double[::1] x, pool=None):
        cdef zl_pool *p = pool_ptr(pool)
        cdef zl_task_group g
        cdef Py_ssize_t i
        cdef int status
        zl_task_group_init(&g)
        with nogil:
            for i in range(x.shape[0]):
                submit(p, &g, add_one, &x[i])
            status = wait(p, &g)
        return status
""")

OUTSIDE_CHECK = textwrap.dedent("""
    import numpy as np
    import zigllama
    from zigllama.errors import ThreadPoolError
    import outside_pool
    x = np.arange(10000, dtype=np.float64)
    assert outside_pool.double_all(x) == 0 and (x == 2 * np.arange(10000)).all()
    x[5000] = -1
    assert outside_pool.double_all(x, grain=100) == 3
    pool = zigllama.ThreadPool(3)
    y = np.zeros(5000)
    assert outside_pool.add_one_each(y, pool) == 0 and (y == 1).all()
    pool.shutdown()
    try:
        outside_pool.double_all(x, pool)
    except ThreadPoolError as e:
        assert "shut down" in str(e)
    else:
        raise AssertionError("a closed pool must raise")
    print("outside pool ok")
""")


def test_outside_cython_extension_uses_parallel_for_without_the_gil(tmp_path):
    (tmp_path / "outside_pool.pyx").write_text(OUTSIDE)
    (tmp_path / "setup.py").write_text(textwrap.dedent("""
        from Cython.Build import cythonize
        from setuptools import Extension, setup
        import zigllama
        setup(ext_modules=cythonize(
            [Extension("outside_pool", ["outside_pool.pyx"], include_dirs=[zigllama.get_include()])],
            compiler_directives={"language_level": 3}))
    """))
    (tmp_path / "check.py").write_text(OUTSIDE_CHECK)
    env = outside_extension.build(tmp_path, {}, timeout=TIMEOUT)
    run = subprocess.run([sys.executable, "check.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert run.returncode == 0, run.stderr
    assert "outside pool ok" in run.stdout
