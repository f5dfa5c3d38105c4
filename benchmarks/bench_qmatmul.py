"""Quantized matrix products (zigllama.qgemm) against the machine and against sgemm.

    python benchmarks/bench_qmatmul.py [--types Q4_K,Q6_K,Q8_0,Q4_0] [--repeat 5] [--quick]

GEMV (m = 1): bytes of W read per second, against a read-only sweep of the same
bytes in the same run (``_read_sweep``: every byte loaded once, OR-reduced, on
the same threads) and against sgemv on the pre-dequantized float32 weight
(numpy's BLAS, the same thread count). Goal: >= 85% of the sweep and >= 4x
sgemv on two threads.
GEMM (m = 32, 128, 512): fast and exact modes against scipy's sgemm on the
float32 weight (x @ W.T). Goal: >= 0.8x at m = 512.
Contenders alternate within each round; figures are medians of the rounds.
"""
import argparse
import os
import statistics

import numpy as np
from _timing import SETTLE_SECONDS, time_call
from threadpoolctl import threadpool_limits

import zigllama
from zigllama._core.qmatmul import _read_sweep, qgemm_path

from bench_quants import random_blocks
from zigllama._core import quantization as zq

GEMV_SHAPES = [(4096, 4096), (640, 2048), (2048, 640), (262144, 640)]
GEMM_SHAPE = (4096, 4096)
GEMM_M = (32, 128, 512)


def rounds(contenders, repeat, min_seconds, threads):
    """{name: median seconds per call}: each round times every contender in turn."""
    samples = {name: [] for name in contenders}
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(repeat):
            for name, fn in contenders.items():
                if threads > 1:
                    import time
                    time.sleep(SETTLE_SECONDS)
                samples[name].append(time_call(fn, min_seconds))
    return {name: statistics.median(v) for name, v in samples.items()}


def weight(name, n, k, rng):
    type_id = zq.ggml_type_id(name)
    return zigllama.QuantizedTensor(random_blocks(type_id, n, k, rng), name, (n, k))


def gemv_table(types, shapes, repeat, min_seconds, skip_float_above):
    rng = np.random.default_rng(0)
    print("GEMV (m = 1): GB/s of W read; `sweep` reads the same bytes; `sgemv` runs on the float32 weight")
    print()
    print("| type | n x k | threads | qgemm GB/s | sweep GB/s | x sweep | qgemm µs | sgemv µs | x sgemv |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in types:
        for n, k in shapes:
            if k % zq.GGML_QUANT_SIZES[zq.ggml_type_id(name)][0]:
                continue   # K-quant rows are whole 256-blocks: 640-wide weights use other types
            w = weight(name, n, k, rng)
            x = rng.standard_normal(k).astype(np.float32)
            y = np.empty(n, np.float32)
            wf = w.dequantize() if n * k <= skip_float_above else None
            for threads in (1, 2):
                contenders = {
                    "q": lambda: zigllama.qgemm(x, w, y, threads=threads),
                    "sweep": lambda: _read_sweep(w.data, threads),
                }
                if wf is not None:
                    contenders["sgemv"] = lambda: np.matmul(wf, x)
                t = rounds(contenders, repeat, min_seconds, threads)
                gbs = w.nbytes / t["q"] / 1e9
                sweep = w.nbytes / t["sweep"] / 1e9
                sg = t.get("sgemv")
                sg_cells = f"{sg * 1e6:,.0f} | {sg / t['q']:.1f}x" if sg else "n/a | n/a"
                print(f"| {name} | {n} x {k} | {threads} | {gbs:.1f} | {sweep:.1f} | {gbs / sweep:.0%} | "
                      f"{t['q'] * 1e6:,.0f} | {sg_cells} |", flush=True)
            del wf


def gemm_table(types, shape, ms, repeat, min_seconds):
    rng = np.random.default_rng(1)
    n, k = shape
    print()
    print(f"GEMM: x (m x {k}) @ W.T, W {n} x {k}; GFLOPS (2 m n k / s) against scipy sgemm on the float32 weight")
    print()
    print("| type | m | threads | fast GFLOPS | exact GFLOPS | sgemm GFLOPS | fast / sgemm | exact / sgemm |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    from scipy.linalg.blas import sgemm
    for name in types:
        w = weight(name, n, k, rng)
        wf = w.dequantize()
        for m in ms:
            x = rng.standard_normal((m, k)).astype(np.float32)
            y = np.empty((m, n), np.float32)
            for threads in (1, 2):
                t = rounds({
                    "fast": lambda: zigllama.qgemm(x, w, y, threads=threads),
                    "exact": lambda: zigllama.qgemm(x, w, y, mode="exact", threads=threads),
                    "sgemm": lambda: sgemm(1.0, x, wf, trans_b=True),
                }, repeat, min_seconds, threads)
                flops = 2.0 * m * n * k
                f, e, s = (flops / t[c] / 1e9 for c in ("fast", "exact", "sgemm"))
                print(f"| {name} | {m} | {threads} | {f:.1f} | {e:.1f} | {s:.1f} | {f / s:.2f} | {e / s:.2f} |",
                      flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--types", default="Q4_K,Q6_K,Q8_0,Q4_0")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer rounds")
    p.add_argument("--no-gemm", action="store_true")
    args = p.parse_args(argv)
    types = [s.strip().upper() for s in args.types.split(",") if s.strip()]
    shapes = GEMV_SHAPES[:3] if args.quick else GEMV_SHAPES
    print(f"kernel path: {qgemm_path()}; pool threads: {zigllama.default_pool().num_workers + 1}; "
          f"load average: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print()
    gemv_table(types, shapes, 3 if args.quick else args.repeat, 0.05, 64 << 20)
    if not args.no_gemm:
        gemm_table(types[:2] if args.quick else types, (1024, 1024) if args.quick else GEMM_SHAPE,
                   GEMM_M, 3 if args.quick else args.repeat, 0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
