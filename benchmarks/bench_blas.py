"""GFLOPS of each zigllama BLAS backend against numpy.matmul, in the same run.

    python benchmarks/bench_blas.py            # full table (a few minutes)
    python benchmarks/bench_blas.py --quick    # small sizes, fewer repeats

Square n = 16 .. 2048 and the transformer shapes (1x2048)@(2048x8192),
(32x2048)@(2048x2048), (512x640)@(640x2048), float32 and float64, at 1 and 2
threads. Each cell is the median of --repeat timings; within one repetition the
contenders run back to back, so machine noise hits them alike. Ratios are
against numpy.matmul measured in the same repetition set. The header says which
BLAS library (and which of its CPU kernels) numpy and scipy run.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import zigllama
from zigllama import get_blas
from zigllama._core.blas_integration import generic_info

SQUARE = (16, 32, 64, 128, 256, 512, 1024, 2048)
TRANSFORMER = ((1, 2048, 8192), (32, 2048, 2048), (512, 640, 2048))  # (m, k, n)
NAIVE_MAX_FLOPS = 2 * 256**3   # the triple loop is for teaching, not for 2048^3


def time_call(fn, min_seconds):
    """Seconds per call of fn, looping until min_seconds have passed."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


# Idle time before each contender's turn. Every library keeps its own threads and
# lets them spin for a while after a call (OpenBLAS, libgomp): on 2 cores, the
# previous contender's spinning threads would steal the next one's cores.
SETTLE_SECONDS = 0.1


def measure(m, k, n, dtype, backends, repeat, min_seconds, settle=0.0):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out = np.empty((m, n), dtype)
    flops = 2.0 * m * n * k
    contenders = {"numpy": lambda: np.matmul(a, b, out=out)}
    for name in backends:
        if name == "naive" and flops > NAIVE_MAX_FLOPS:
            continue
        blas = get_blas(name)
        contenders[name] = lambda blas=blas: blas.gemm(a, b, out=out)
    times = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            if settle:
                time.sleep(settle)
            times[name].append(time_call(fn, min_seconds))
    return {name: flops / statistics.median(t) / 1e9 for name, t in times.items()}


def library_lines():
    lines = []
    for info in threadpool_info():
        if info["user_api"] != "blas":
            continue
        owner = "numpy" if "numpy" in info["filepath"] else "scipy" if "scipy" in info["filepath"] else "?"
        lines.append(f"- {owner}: {info['internal_api']} {info['version']}, kernel {info.get('architecture')}, "
                     f"{os.path.basename(info['filepath'])}")
    gi = generic_info()
    lines.append(f"- zigllama generic: {gi['micro_kernel']} micro-kernel, tiles f32 {gi['tile_float32']} / "
                 f"f64 {gi['tile_float64']}, blocking f32 {gi['blocking_float32']}, "
                 f"f64 {gi['blocking_float64']}")
    lines.append(f"- OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
                 f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n <= 256, one transformer shape, 3 repeats")
    parser.add_argument("--repeat", type=int, default=None, help="timings per cell (median taken)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--backends", default="scipy,generic,naive")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    min_seconds = 0.01 if args.quick else 0.05
    square = [n for n in SQUARE if n <= 256] if args.quick else list(SQUARE)
    shapes = [(n, n, n) for n in square] + list(TRANSFORMER[1:2] if args.quick else TRANSFORMER)
    backends = args.backends.split(",")

    print("# zigllama BLAS benchmark\n")
    print("\n".join(library_lines()))
    print(f"- median of {repeat}; GFLOPS = 2mnk / time; (x) = ratio to numpy.matmul in the same run; "
          f"with 2+ threads each contender starts after {SETTLE_SECONDS:g} s idle (no other library's threads spinning)\n")
    header = ["dtype", "threads", "m x k @ k x n", "numpy"] + backends
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for threads in (int(t) for t in args.threads.split(",")):
        zigllama.set_num_threads(threads)
        with threadpool_limits(limits=threads, user_api="blas"):
            for dtype in args.dtypes.split(","):
                for m, k, n in shapes:
                    g = measure(m, k, n, np.dtype(dtype), backends, repeat, min_seconds,
                                settle=SETTLE_SECONDS if threads > 1 else 0.0)
                    cells = [f"{g['numpy']:.1f}"]
                    for name in backends:
                        cells.append(f"{g[name]:.1f} ({g[name] / g['numpy']:.2f}x)" if name in g else "-")
                    print(f"| {dtype} | {threads} | {m}x{k} @ {k}x{n} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
