"""Cost of allocating and freeing 4 MiB (1M float32) from each allocator, against
``numpy.empty`` of the same size, in the same run.

Two rows per allocator: through Python (``a.alloc(n)``, a Block object that dies at
once, as an ``np.empty`` result does) and through the C vtable from nogil code
(``zl_alloc`` + ``zl_free``, what a kernel or the Tensor does). The memory is not
touched: this measures the allocator, not page faults. Medians of many repeats;
ratios are against ``numpy.empty`` in this run.

    python benchmarks/bench_allocator.py [--repeats 31] [--number 200]
"""
import argparse
import statistics
import time

import numpy as np

import zigllama as zl
from zigllama._core.allocator import _exercise_nogil

ELEMENTS = 1 << 20
NBYTES = ELEMENTS * 4


def per_call(fn, number, repeats):
    """Median over `repeats` of the mean time of `number` calls, in seconds."""
    fn()  # warm up (first chunk, first mapping)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def per_nogil_call(allocator, number, repeats):
    """The same for `number` alloc+free pairs through the vtable, without the GIL."""
    _exercise_nogil(allocator, NBYTES, 64, 1, False)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _exercise_nogil(allocator, NBYTES, 64, number, False)
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--number", type=int, default=200)
    args = parser.parse_args(argv)

    heap = zl.HeapAllocator()
    page = zl.PageAllocator()
    arena = zl.ArenaAllocator(chunk_size=2 * NBYTES)
    gpa = zl.GeneralPurposeAllocator()
    fixed = zl.FixedBufferAllocator(bytearray(2 * NBYTES))

    rows = [("numpy.empty(1M float32)", per_call(lambda: np.empty(ELEMENTS, np.float32), args.number, args.repeats))]
    for name, allocator in [("HeapAllocator", heap), ("PageAllocator", page), ("ArenaAllocator", arena),
                            ("GeneralPurposeAllocator", gpa), ("FixedBufferAllocator", fixed)]:
        rows.append((f"{name}.alloc (Python)", per_call(lambda: allocator.alloc(NBYTES), args.number, args.repeats)))
        rows.append((f"{name} vtable (nogil)", per_nogil_call(allocator, args.number, args.repeats)))
    # An arena used as intended: one reset frees a round of allocations.
    def arena_round():
        arena.alloc(NBYTES)
        arena.reset()
    rows.append(("ArenaAllocator.alloc + reset", per_call(arena_round, args.number, args.repeats)))

    base = rows[0][1]
    print(f"alloc+free of {NBYTES} bytes, median of {args.repeats} x {args.number} calls")
    print(f"{'':40s} {'us/call':>9s} {'vs numpy.empty':>15s}")
    for name, t in rows:
        print(f"{name:40s} {t * 1e6:9.3f} {t / base:14.2f}x")
    for a in (heap, page, arena, gpa, fixed):
        assert a.live_bytes == 0, a


if __name__ == "__main__":
    main()
