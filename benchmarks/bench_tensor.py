"""Tensor against numpy, in the same run: add and multiply of 1M elements (float32,
float64), and the cost of creating a tensor (heap, arena) against numpy.empty.

    python benchmarks/bench_tensor.py [--repeats 300]

Each figure is the median of many timed calls (the machine is shared and noisy);
the table prints zigllama's median over numpy's: below 1.0 is faster than numpy.
"""
import argparse
import statistics
import time

import numpy as np

import zigllama as zl


def median_seconds(fn, repeats, inner=1):
    """Median over `repeats` timings of `inner` back-to-back calls, per call."""
    clock = time.perf_counter
    for _ in range(max(3, repeats // 20)):  # warm up caches and allocators
        fn()
    samples = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(inner):
            fn()
        samples.append((clock() - t0) / inner)
    return statistics.median(samples)


def rows(repeats):
    n = 1 << 20
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        a = rng.standard_normal(n).astype(dtype)
        b = rng.standard_normal(n).astype(dtype)
        ta, tb = zl.Tensor.from_numpy(a), zl.Tensor.from_numpy(b)
        out_np, out_zl = np.empty_like(a), zl.Tensor.empty(n, dtype)
        yield (f"add 1M {dtype} (new result)", median_seconds(lambda: ta + tb, repeats),
               median_seconds(lambda: a + b, repeats))
        yield (f"mul 1M {dtype} (new result)", median_seconds(lambda: ta * tb, repeats),
               median_seconds(lambda: a * b, repeats))
        yield (f"add 1M {dtype} (into out)", median_seconds(lambda: ta.add(tb, out=out_zl), repeats),
               median_seconds(lambda: np.add(a, b, out=out_np), repeats))
        yield (f"mul 1M {dtype} (into out)", median_seconds(lambda: ta.mul(tb, out=out_zl), repeats),
               median_seconds(lambda: np.multiply(a, b, out=out_np), repeats))

    inner = 200
    empty, zeros = zl.Tensor.empty, zl.Tensor.zeros
    heap = zl.HeapAllocator()
    for shape in ((64, 64), (4096,)):
        np_empty = median_seconds(lambda: np.empty(shape, np.float32), repeats, inner)
        yield (f"create {shape} float32, heap", median_seconds(
            lambda: empty(shape, "float32", heap), repeats, inner), np_empty)
        arena = zl.ArenaAllocator(chunk_size=1 << 24)

        def per_arena_tensor(factory):
            # `inner` tensors, then one reset: the reset's cost is spread over them
            def run():
                for _ in range(inner):
                    factory(shape, "float32", arena)
                arena.reset()
            return median_seconds(run, repeats) / inner

        yield (f"create {shape} float32, arena", per_arena_tensor(empty), np_empty)
        yield (f"zeros {shape} float32, arena", per_arena_tensor(zeros),
               median_seconds(lambda: np.zeros(shape, np.float32), repeats, inner))
        arena.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    from zigllama._core import platform

    print(f"zigllama {zl.__version__}, numpy {np.__version__}, "
          f"SIMD kernels: {'avx2' if platform.simd_kernels() else 'portable'}; "
          f"medians of {args.repeats} repeats")
    print(f"{'operation':<36} {'zigllama':>12} {'numpy':>12} {'ratio':>7}")
    for name, ours, theirs in rows(args.repeats):
        print(f"{name:<36} {fmt(ours):>12} {fmt(theirs):>12} {ours / theirs:>7.2f}")


def fmt(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e9:.0f} ns"


if __name__ == "__main__":
    main()
