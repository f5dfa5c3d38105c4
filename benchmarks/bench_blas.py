"""GFLOPS of each zigllama BLAS backend against numpy.matmul, in the same run.

    python benchmarks/bench_blas.py            # full table (a few minutes)
    python benchmarks/bench_blas.py --quick    # small sizes, fewer repeats

Square n = 16 .. 2048 and the transformer shapes (1x2048)@(2048x8192),
(32x2048)@(2048x2048), (512x640)@(640x2048), float32 and float64, at 1 and 2
threads. Each cell is the median of --repeat timings; within one repetition the
contenders run back to back, so machine noise hits them alike. Ratios are
against numpy.matmul measured in the same repetition set. The header says which
BLAS library (and which of its CPU kernels) numpy and scipy run; the
scipy.linalg.blas column is scipy's own wrapper of the library our scipy backend
calls. A last table pairs the generic backend's one- and two-thread runs. With
--paths all, the generic backend runs again, one thread, on each narrower SIMD
path this CPU supports (AVX-512 14x32 / 14x16 tiles, AVX2 6x16 / 6x8, portable
on the --quick sizes), each in its own process (ZIGLLAMA_SIMD) against numpy
measured in that process.
"""
import argparse
import os
import statistics
import subprocess
import sys

import numpy as np
from _timing import SETTLE_SECONDS, alternating, speedup, two_core_control
from threadpoolctl import threadpool_info, threadpool_limits

import zigllama
from scipy.linalg import blas as scipy_blas
from zigllama import get_blas
from zigllama._core import platform
from zigllama._core.blas_integration import generic_info

SQUARE = (16, 32, 64, 128, 256, 512, 1024, 2048)
TRANSFORMER = ((1, 2048, 8192), (32, 2048, 2048), (512, 640, 2048))  # (m, k, n)
NAIVE_MAX_FLOPS = 2 * 256**3   # the triple loop is for teaching, not for 2048^3


def measure(m, k, n, dtype, backends, repeat, min_seconds, settle=0.0, same_library=False):
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
    if same_library:
        # scipy's own wrapper of the library our scipy backend calls: C = AB as
        # C^T = B^T A^T on Fortran-order views, so nothing is copied.
        f2py_gemm = scipy_blas.sgemm if dtype == np.float32 else scipy_blas.dgemm
        contenders["scipy.linalg.blas"] = lambda: f2py_gemm(1.0, b.T, a.T, c=out.T, overwrite_c=True)
    times = alternating(contenders, repeat, min_seconds, settle)
    # GFLOPS from the median time; the ratio to numpy is the median of the
    # per-round ratios (a round's timings share the load of their moment).
    return {name: (flops / statistics.median(t) / 1e9,
                   statistics.median(ref / mine for ref, mine in zip(times["numpy"], t)))
            for name, t in times.items()}


def print_scaling(args, repeat, min_seconds):
    """The generic backend on two threads against itself on one, in alternation."""
    sizes = (512, 1024) if args.quick else (512, 1024, 2048)
    print("\n## generic backend: two threads against one (goal >= 1.8x at n = 1024)\n")
    print("One- and two-thread calls alternate (each after the idle time above); the speed-up is "
          "the median of the per-round ratios. \"Two cores gave\": in the same rounds, two chunks of "
          "busy-waiting on one thread and on two, what the shared machine's cores gave at the time "
          "(the ceiling).\n")
    print("| dtype | n | 1 thread GFLOPS | 2 threads GFLOPS | speed-up | two cores gave |")
    print("|---|---|---|---|---|---|")
    generic = get_blas("generic")
    pool = zigllama.ThreadPool(2)
    control = two_core_control(pool)
    for dtype in args.dtypes.split(","):
        for n in sizes:
            rng = np.random.default_rng(0)
            a = rng.standard_normal((n, n)).astype(dtype)
            b = rng.standard_normal((n, n)).astype(dtype)
            out = np.empty((n, n), dtype)

            def on(threads):
                def run():
                    zigllama.set_num_threads(threads)
                    generic.gemm(a, b, out=out)
                return run

            one, two, ratio, cores = speedup(on(1), on(2), max(repeat, 7), min_seconds, SETTLE_SECONDS,
                                             control=control)
            flops = 2.0 * n ** 3
            print(f"| {dtype} | {n} | {flops / one / 1e9:.1f} | {flops / two / 1e9:.1f} | {ratio:.2f}x | "
                  f"{cores:.2f}x |", flush=True)
    pool.shutdown()
    zigllama.set_num_threads(None)


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
    parser.add_argument("--paths", choices=("best", "all"), default="best",
                        help="also run the generic backend on every narrower SIMD path")
    parser.add_argument("--no-scaling", action="store_true", help="skip the two-threads-against-one table")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    min_seconds = 0.01 if args.quick else 0.05
    square = [n for n in SQUARE if n <= 256] if args.quick else list(SQUARE)
    shapes = [(n, n, n) for n in square] + list(TRANSFORMER[1:2] if args.quick else TRANSFORMER)
    backends = args.backends.split(",")

    print("# zigllama BLAS benchmark\n")
    print("\n".join(library_lines()))
    print(f"- median of {repeat}; GFLOPS = 2mnk / time; (x) = median of the per-round ratios to numpy.matmul in the same run; "
          f"contenders alternate within each repetition and each starts right after the previous one, "
          f"as in a user's process (no idle time: whatever the previous library's threads still do "
          f"counts against the next)")
    print("- scipy.linalg.blas: scipy's own (f2py) wrapper of the library the scipy backend calls, "
          "as C^T = B^T A^T without copies: what that library gives, for comparing our scipy "
          "backend with its own library as well as with numpy's\n")
    columns = backends + ["scipy.linalg.blas"]
    header = ["dtype", "threads", "m x k @ k x n", "numpy"] + columns
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for threads in (int(t) for t in args.threads.split(",")):
        zigllama.set_num_threads(threads)
        with threadpool_limits(limits=threads, user_api="blas"):
            for dtype in args.dtypes.split(","):
                for m, k, n in shapes:
                    g = measure(m, k, n, np.dtype(dtype), backends, repeat, min_seconds, same_library=True)
                    cells = [f"{g['numpy'][0]:.1f}"]
                    for name in columns:
                        cells.append(f"{g[name][0]:.1f} ({g[name][1]:.2f}x)" if name in g else "-")
                    print(f"| {dtype} | {threads} | {m}x{k} @ {k}x{n} | " + " | ".join(cells) + " |", flush=True)

    if "generic" in backends and not args.no_scaling:
        print_scaling(args, repeat, min_seconds)
    if args.paths == "all":
        print_other_paths(args)
    return 0


def print_other_paths(args):
    """The generic backend's table again on each narrower SIMD path, one process each."""
    for path in platform.simd_supported_paths()[::-1]:
        if path == platform.simd_path():
            continue
        print(f"\n## generic backend on the {path} path (ZIGLLAMA_SIMD={path}), one thread\n")
        cmd = [sys.executable, os.path.abspath(__file__), "--backends", "generic", "--threads", "1",
               "--dtypes", args.dtypes, "--no-scaling"]
        # The portable kernel runs 1-3 GFLOPS: its table keeps to the small sizes.
        if args.quick or path == "portable":
            cmd.append("--quick")
        if args.repeat:
            cmd += ["--repeat", str(args.repeat)]
        proc = subprocess.run(cmd, env=dict(os.environ, ZIGLLAMA_SIMD=path), capture_output=True, text=True,
                              check=True)
        table = [line for line in proc.stdout.splitlines() if line.startswith("|") or "zigllama generic" in line]
        print("\n".join(table), flush=True)


if __name__ == "__main__":
    sys.exit(main())
