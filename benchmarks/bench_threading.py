"""The work-stealing pool against concurrent.futures and OpenMP, in the same run.

    python benchmarks/bench_threading.py           # the full table
    python benchmarks/bench_threading.py --quick   # fewer repeats

Rows:
  - dispatch + join of an empty parallel_for over 2 chunks on a 2-thread pool
    (one worker plus the caller), against an OpenMP prange over 2 iterations on
    2 threads and ThreadPoolExecutor(2) running 2 empty tasks (submit + result);
  - the same with 20 us of work per chunk, so that both threads must run one:
    the fork-join overhead is the time above 20 us;
  - per-task cost of submitting an empty C task from Cython (the submit call
    alone, and submit + run + wait per task), and per chunk of a parallel_for
    of one-row chunks, against an OpenMP prange(schedule(dynamic, 1)) iteration
    and ThreadPoolExecutor.submit;
  - per-task cost of a Python task (submit from Python, wait for all) on the
    pool against ThreadPoolExecutor;
  - softmax over the rows of a (1024, 4096) float32 matrix: one thread (the whole
    range as one chunk, run by the caller) against the 2-thread pool (speed-up),
    with numpy's softmax for scale;
  - dequantization of Q4_K and Q8_0 into a preallocated float32 `out` (so page
    faults do not count): threads=1 (on the caller, no dispatch) against
    threads=2 on the default pool, for a (4096, 4096) output (64 MB: memory
    bandwidth bounds both) and a (256, 4096) one (4 MB, within L3); and of
    IQ2_S (4096, 4096), whose grid lookups make one thread compute-bound.
Speed-ups alternate their one- and two-thread runs and report the median of
the per-round ratios, each contender starting after a short idle time; in the
same rounds, two chunks of busy-waiting on one thread and on the pool measure
what the two cores gave at the time ("two cores gave"), the ceiling on a shared
machine.
Every cell is the median of --repeat measurements; contenders alternate within
each repetition so that machine noise hits them alike.
"""
import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
from _timing import SETTLE_SECONDS, median_time, speedup, two_core_control

import zigllama
from zigllama._core import platform
from zigllama._core import threading as zt


def executor_dispatch(ex, n, iters):
    """ns per round of n empty tasks submitted to ex and waited for."""
    noop = int
    start = time.perf_counter_ns()
    for _ in range(iters):
        wait([ex.submit(noop) for _ in range(n)])
    return (time.perf_counter_ns() - start) / iters


def executor_per_task(ex, ntasks):
    noop = int
    start = time.perf_counter_ns()
    futs = [ex.submit(noop) for _ in range(ntasks)]
    wait(futs)
    return (time.perf_counter_ns() - start) / ntasks


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 15)
    iters = 2000 if args.quick else 20000
    ntasks = 20000 if args.quick else 100000
    built_omp = platform.openmp()[0]

    pool = zt.ThreadPool(2)
    ex = ThreadPoolExecutor(max_workers=2)
    rows = []

    disp = {"pool": [], "omp": [], "executor": []}
    for _ in range(repeat):
        disp["pool"].append(zt._bench_parallel_for(pool, iters, 2))
        disp["omp"].append(zt._bench_omp(iters, 2, 2))
        disp["executor"].append(executor_dispatch(ex, 2, max(200, iters // 20)))
    d = {k: statistics.median(v) for k, v in disp.items()}
    rows.append(("empty parallel_for, 2 chunks, dispatch + join (goal <= 5 us)",
                 f"{d['pool'] / 1000:.2f} us", f"{d['omp'] / 1000:.2f} us" + ("" if built_omp else " (no OpenMP)"),
                 f"{d['executor'] / 1000:.2f} us", f"{d['omp'] / d['pool']:.1f}x / {d['executor'] / d['pool']:.1f}x"))

    # The empty loop above lets the caller run both chunks before the worker looks:
    # with 20 us of work per chunk, both threads must take part.
    fj = {"pool": [], "omp": [], "serial": []}
    for _ in range(repeat):
        fj["pool"].append(zt._bench_fork_join(pool, max(100, iters // 20), 2, 20000))
        fj["omp"].append(zt._bench_omp_fork_join(max(100, iters // 20), 2, 20000, 2))
        fj["serial"].append(zt._bench_fork_join(None, max(100, iters // 20), 2, 20000))
    f = {k: statistics.median(v) for k, v in fj.items()}
    rows.append(("2 chunks of 20 us each (1 thread: %.1f us): time, speed-up over 1 thread" % (f["serial"] / 1000),
                 f"{f['pool'] / 1000:.2f} us, {f['serial'] / f['pool']:.2f}x",
                 f"{f['omp'] / 1000:.2f} us, {f['serial'] / f['omp']:.2f}x", "-",
                 f"{f['omp'] / f['pool']:.2f}x / -"))

    per = {"submit": [], "e2e": [], "chunk": [], "omp": [], "executor": []}
    for _ in range(repeat):
        call, e2e = zt._bench_submit_split(pool, ntasks)
        per["submit"].append(call)
        per["e2e"].append(e2e)
        per["chunk"].append(zt._bench_parallel_for(pool, 3, ntasks) / ntasks)
        per["omp"].append(zt._bench_omp_tasks(ntasks, 2))
        per["executor"].append(executor_per_task(ex, max(2000, ntasks // 20)))
    p = {k: statistics.median(v) for k, v in per.items()}
    rows.append(("submit an empty C task from Cython: the call (goal <= 200 ns)",
                 f"{p['submit']:.0f} ns", f"{p['omp']:.0f} ns", f"{p['executor']:.0f} ns",
                 f"{p['omp'] / p['submit']:.1f}x / {p['executor'] / p['submit']:.0f}x"))
    rows.append(("submit + run + wait, per task",
                 f"{p['e2e']:.0f} ns", f"{p['omp']:.0f} ns", f"{p['executor']:.0f} ns",
                 f"{p['omp'] / p['e2e']:.1f}x / {p['executor'] / p['e2e']:.0f}x"))
    # Python tasks: consecutive ones run under one GIL acquisition on a worker.
    py = {"pool": [], "executor": []}
    for _ in range(repeat):
        py["pool"].append(executor_per_task(pool, max(2000, ntasks // 20)))
        py["executor"].append(executor_per_task(ex, max(2000, ntasks // 20)))
    q = {k: statistics.median(v) for k, v in py.items()}
    rows.append(("submit a Python task (`int`) from Python + wait for all, per task",
                 f"{q['pool'] / 1000:.1f} us", "-", f"{q['executor'] / 1000:.1f} us",
                 f"- / {q['executor'] / q['pool']:.1f}x"))
    rows.append(("parallel_for over %d one-row chunks, per chunk (OpenMP: dynamic,1)" % ntasks,
                 f"{p['chunk']:.0f} ns", f"{p['omp']:.0f} ns", "-", f"{p['omp'] / p['chunk']:.1f}x / -"))

    # Speed-ups: the one-thread and two-thread runs alternate, and the speed-up is
    # the median of the per-round ratios (each round's pair shares the load of
    # its moment).
    x = np.random.default_rng(0).standard_normal((1024, 4096)).astype(np.float32)
    out = np.empty_like(x)
    ops = zt.ParallelOps(pool)
    one, two, ratio, cores = speedup(lambda: ops.softmax(x, out=out, grain=x.shape[0]),
                                     lambda: ops.softmax(x, out=out), repeat, 0.05, SETTLE_SECONDS,
                                     control=two_core_control(pool))
    numpy_time = median_time(lambda: np_softmax(x), repeat)
    rows.append(("softmax (1024, 4096) f32: 1 thread vs pool of 2 (goal >= 1.8x)",
                 f"{two * 1e3:.2f} ms (1 thread: {one * 1e3:.2f} ms)", "-",
                 f"numpy: {numpy_time * 1e3:.2f} ms", f"speed-up {ratio:.2f}x (two cores gave {cores:.2f}x)"))
    pool.shutdown()
    ex.shutdown()

    # Dequantization is bound by memory bandwidth once its output outgrows the
    # caches and one thread already writes near the machine's bandwidth: a 64 MB
    # output of Q4_K and Q8_0 shows the bound; a 4 MB one (within L3), and IQ2_S
    # (a grid lookup per 8 weights: compute-bound on one thread), show the
    # speed-up where bandwidth allows.
    zigllama.set_num_threads(2)  # the default pool that dequantize runs on: 2 threads
    w = np.random.default_rng(1).standard_normal((4096, 4096)).astype(np.float32)
    iq2_s = np.random.default_rng(2).integers(0, 256, size=(4096, 16 * 82), dtype=np.uint8)
    iq2_s.reshape(-1, 82)[:, 0:2] = np.array([0.01], "<f2").view(np.uint8)  # a finite scale per block
    cases = [("Q4_K", 4096, "64 MB, memory-bound"), ("Q8_0", 4096, "64 MB, memory-bound"),
             ("Q4_K", 256, "4 MB, in L3"), ("Q8_0", 256, "4 MB, in L3"),
             ("IQ2_S", 4096, "64 MB, compute-bound type")]
    for qtype, nrows, where in cases:
        raw = iq2_s if qtype == "IQ2_S" else zigllama.quantize(w[:nrows], qtype)
        out = np.empty((nrows, w.shape[1]), np.float32)
        one, two, ratio, cores = speedup(
            lambda: zigllama.dequantize(raw, qtype, out.shape, out=out, threads=1),
            lambda: zigllama.dequantize(raw, qtype, out.shape, out=out, threads=2),
            repeat, 0.05, SETTLE_SECONDS, control=two_core_control(zigllama.default_pool()))
        rows.append((f"dequantize {qtype} ({nrows}, 4096) into out ({where}): 1 thread vs pool of 2 "
                     f"(goal >= 1.8x)",
                     f"{two * 1e3:.2f} ms (1 thread: {one * 1e3:.2f} ms)", "-", "-",
                     f"speed-up {ratio:.2f}x (two cores gave {cores:.2f}x)"))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"zigllama {zigllama.__version__}, {os.cpu_count()} CPUs, load average {load:.1f}, "
          f"OpenMP {'on' if built_omp else 'off'}, median of {repeat}\n")
    print("| measurement | zigllama pool | OpenMP prange | ThreadPoolExecutor | pool faster by (OpenMP / executor) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
