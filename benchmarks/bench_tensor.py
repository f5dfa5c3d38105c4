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


def paired_medians(ours, theirs, repeats, inner=1):
    """Median seconds per call of `ours` and of `theirs`, timed alternately (each
    sample `inner` back-to-back calls) so that both see the same machine load."""
    clock = time.perf_counter
    for _ in range(max(3, repeats // 20)):  # warm up caches and allocators
        ours()
        theirs()
    samples = ([], [])
    for _ in range(repeats):
        for fn, out in ((ours, samples[0]), (theirs, samples[1])):
            t0 = clock()
            for _ in range(inner):
                fn()
            out.append((clock() - t0) / inner)
    return statistics.median(samples[0]), statistics.median(samples[1])


def rows(repeats):
    n = 1 << 20
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        a = rng.standard_normal(n).astype(dtype)
        b = rng.standard_normal(n).astype(dtype)
        ta, tb = zl.Tensor.from_numpy(a), zl.Tensor.from_numpy(b)
        out_np, out_zl = np.empty_like(a), zl.Tensor.empty(n, dtype)
        yield (f"add 1M {dtype} (new result)", *paired_medians(lambda: ta + tb, lambda: a + b, repeats))
        yield (f"mul 1M {dtype} (new result)", *paired_medians(lambda: ta * tb, lambda: a * b, repeats))
        yield (f"add 1M {dtype} (into out)", *paired_medians(
            lambda: ta.add(tb, out=out_zl), lambda: np.add(a, b, out=out_np), repeats))
        yield (f"mul 1M {dtype} (into out)", *paired_medians(
            lambda: ta.mul(tb, out=out_zl), lambda: np.multiply(a, b, out=out_np), repeats))

    inner = 200
    empty, zeros = zl.Tensor.empty, zl.Tensor.zeros
    heap = zl.HeapAllocator()
    for shape in ((64, 64), (4096,)):
        yield (f"create {shape} float32, heap", *paired_medians(
            lambda: empty(shape, "float32", heap), lambda: np.empty(shape, np.float32), repeats, inner))
        arena = zl.ArenaAllocator(chunk_size=1 << 24)

        def in_arena(factory):
            # `inner` tensors, then one reset: the reset's cost is spread over them
            def run():
                for _ in range(inner):
                    factory(shape, "float32", arena)
                arena.reset()
            return run

        def numpy_batch(factory):
            def run():
                for _ in range(inner):
                    factory(shape, np.float32)
            return run

        for name, ours, theirs in (("create", empty, np.empty), ("zeros", zeros, np.zeros)):
            t_ours, t_theirs = paired_medians(in_arena(ours), numpy_batch(theirs), repeats)
            yield (f"{name} {shape} float32, arena", t_ours / inner, t_theirs / inner)
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
