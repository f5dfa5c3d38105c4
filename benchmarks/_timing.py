"""Timing helpers shared by the benchmarks.

This machine is shared and noisy, so a comparison is only worth its numbers when
both contenders see the same load: contenders alternate within each repetition
and the medians (or the median of per-repetition ratios) are reported.
"""
import statistics
import time

# Idle time before a multi-threaded contender's turn. Every library keeps its own
# threads and lets them spin for a while after a call (OpenBLAS, libgomp, our
# pool): on 2 cores the previous contender's spinning threads would steal the
# next one's cores.
SETTLE_SECONDS = 0.1


def time_call(fn, min_seconds):
    """Seconds per call of fn (after one warm-up call), looping until
    min_seconds have passed."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def median_time(fn, repeat):
    """Median seconds of `repeat` single calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def alternating(contenders, repeat, min_seconds, settle=0.0):
    """Seconds per call of each contender ({name: fn}): `repeat` rounds, each
    timing every contender in turn (`time_call`, after `settle` idle seconds).
    Returns {name: [seconds per round]}."""
    samples = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            if settle:
                time.sleep(settle)
            samples[name].append(time_call(fn, min_seconds))
    return samples


def speedup(serial, parallel, repeat, min_seconds, settle=0.0, control=None):
    """How much faster `parallel` runs than `serial`, measured in alternation.

    Returns (median seconds of serial, median seconds of parallel, median of the
    per-round ratios serial / parallel): a round's two timings share the
    machine's load of that moment, so their ratio is steadier than a ratio of
    medians taken far apart. With `control` (a pair of callables: busy work on
    one thread and the same work split over two), the control's speed-up is
    measured in the same rounds and its median returned as a fourth value: what
    the machine's cores gave at that time, a ceiling no code could beat."""
    contenders = {"serial": serial, "parallel": parallel}
    if control is not None:
        contenders["control serial"], contenders["control parallel"] = control
    s = alternating(contenders, repeat, min_seconds, settle)
    ratios = [a / b for a, b in zip(s["serial"], s["parallel"])]
    result = (statistics.median(s["serial"]), statistics.median(s["parallel"]), statistics.median(ratios))
    if control is None:
        return result
    control_ratios = [a / b for a, b in zip(s["control serial"], s["control parallel"])]
    return result + (statistics.median(control_ratios),)


def two_core_control(pool, iters=1000, work_ns=20000):
    """The control pair for `speedup`: two chunks of `work_ns` busy-waiting,
    one after the other on the caller, or on a 2-thread `pool` (the caller and
    its worker). Nothing is shared and nothing is read from memory, so the
    ratio is the share of two cores the machine gives at that moment."""
    from zigllama._core import threading as zt

    return (lambda: zt._bench_fork_join(None, iters, 2, work_ns),
            lambda: zt._bench_fork_join(pool, iters, 2, work_ns))
