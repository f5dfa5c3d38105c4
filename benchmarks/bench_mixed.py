"""Threads that cooperate: numpy, scipy's BLAS, the OpenMP GEMM and the pool in one process.

    python benchmarks/bench_mixed.py            # 1 and 2 threads, sizes 64, 256, 1024
    python benchmarks/bench_mixed.py --quick    # fewer rounds
    python benchmarks/bench_mixed.py --noisy    # also with a busy neighbour process

A user mixes libraries in one process. Each call below (numpy.matmul, the scipy
and generic backends' gemm, dequantize of Q4_K, ParallelOps.softmax, each on an
n x n float32 problem) is timed twice in the same run:
  - "own": in a loop of its own (the call repeated, as every other benchmark
    measures it);
  - "mixed": in a loop that calls the five in turn, so each call starts right
    after another library's threads ran (and may still spin).
The ratio mixed / own is the cost of sharing the process (goal: <= 1.25x).
Part of it is not threads at all: the other calls evict the caches, and a
short call right after its thread waited runs on a cold core. Four controls run
the own loop with no thread runtime involved before each call: a single-threaded
copy of as many bytes as the other calls touch (caches evicted), a 1 ms sleep
(the thread waited), the caller busy, touching no data, for as long as the other
four calls take in the mixed loop (time alone: on a shared host caches go cold
within milliseconds even while the thread runs), and the other four calls
themselves, each on the caller's thread alone (the mixed loop's traffic without
its thread runtimes). "control" is the slowest of the four, the machine's own
limit for that call, and "mixed / control" what is left for the thread runtimes
to answer for.
With --noisy, the mixed loop runs again while another process keeps one core
busy; its ratio is taken against the quiet own-loop median and against the
noisy control, the slower of the quiet control and the call's own loop beside
the neighbour (goal: <= 2.5x:
losing one of two cores costs 2x, busy-waiting threads cost 10-80x). The
ceiling of that case is measured too: one core busy-looping in Python against
the same loop while the neighbour runs ("busy core").
Thread counts are set for everyone at once: threadpoolctl's threadpool_limits(t)
(numpy's and scipy's BLAS, and zigllama through its registered controllers)
plus zigllama.set_num_threads(t). Medians of per-call times over all rounds.

numpy's own OpenBLAS team keeps spinning after each of its parallel calls
(OpenBLAS's worker threads busy-wait for 2**28 cycles, about 0.1 s, before they
sleep; only the OPENBLAS_THREAD_TIMEOUT variable, read when the library loads,
changes that). On two cores that spinner holds one core through every call that
follows numpy.matmul in the mixed loop, whoever makes it. The script measures
the spin (CPU time the process burns while it sleeps right after a numpy.matmul)
and, with --spin-control, runs the multi-thread mixed loop again in a child
process started with OPENBLAS_THREAD_TIMEOUT=4 (what `import zigllama` sets
when it comes before numpy; this script imports numpy first, as most programs do),
where numpy's team sleeps as soon as its work ends: what is left there is what
the other runtimes answer for.
"""
import json
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import threadpoolctl

import zigllama as zl

SIZES = (64, 256, 1024)
NAMES = ("numpy.matmul", "scipy gemm", "generic gemm", "dequantize Q4_K", "softmax")


def make_calls(n, pool, serial=False):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    # Q4_K blocks hold 256 values: quantize the n*n values as rows of 256.
    rows = (n * n // 256, 256)
    raw = zl.quantize(a.reshape(rows), "Q4_K")
    deq = np.empty(rows, np.float32)
    sm = np.empty((n, n), np.float32)
    scipy_blas, generic_blas = zl.get_blas("scipy"), zl.get_blas("generic")
    ops = zl.ParallelOps(pool)
    return {
        "numpy.matmul": lambda: np.matmul(a, b, out=c),
        "scipy gemm": lambda: scipy_blas.gemm(a, b, out=c),
        "generic gemm": lambda: generic_blas.gemm(a, b, out=c),
        "dequantize Q4_K": lambda: zl.dequantize(raw, "Q4_K", rows, out=deq),
        # serial: one block of rows, which the caller runs itself.
        "softmax": (lambda: ops.softmax(a, out=sm, grain=n)) if serial else (lambda: ops.softmax(a, out=sm)),
    }


def own_loop(fn, calls, between=None):
    for _ in range(2):
        fn()
    times = []
    for _ in range(calls):
        if between is not None:
            between()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def nap():
    """The second control: the calling thread sleeps 1 ms before the call, as it
    waits while another library's call runs elsewhere. Its core idles or runs
    another process meanwhile (caches, TLB and branch predictors go cold, the
    clock may drop), with no thread runtime of ours involved."""
    time.sleep(0.001)


def time_of_others(times, name):
    """How long the other calls of the mixed loop run between two calls of
    `name`: the sum of their medians in that loop."""
    return sum(statistics.median(ts) for other, ts in times.items() if other != name)


def spin_for(seconds):
    """The third control: the calling thread stays busy, touching no data, for
    as long as the other calls of the mixed loop take. Nothing of the call's
    stays in use meanwhile, and no other thread runtime runs: what that much
    time alone costs the call on this machine. On a shared host it is much
    more than the 1 ms nap suggests: a 256 KiB dequantize that takes 9 us
    back to back takes 90-130 us after 10-30 ms of a Python busy loop, on one
    thread, the caches and TLBs having been taken by other work on the host."""
    def busy():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            pass
    return busy


def others_on_one_thread(serial_calls, name, threads):
    """The fourth control: the other four calls of the mixed loop, each on the
    caller's thread alone (threadpool_limits(1), zigllama.set_num_threads(1),
    softmax in one block), before each call of the own loop. The same data goes
    through the caches in the same order and as long as in the mixed loop, and
    no thread runtime runs but the caller: mixed / this control is what the
    runtimes themselves cost. (On one thread it is the mixed loop itself.)"""
    others = [fn for other, fn in serial_calls.items() if other != name]

    def replay():
        with threadpoolctl.threadpool_limits(1):
            zl.set_num_threads(1)
            try:
                for fn in others:
                    fn()
            finally:
                zl.set_num_threads(threads)
    return replay


def traffic_of_others(n):
    """The cache control: a single-threaded copy moving as many bytes as the
    other four calls of the mixed loop touch (their operands and outputs), run
    before each call of an own loop. It evicts the caches as the mixed loop
    does, with no other thread runtime involved."""
    nbytes = n * n * 4 * (3 + 3 + 3 + 2)  # three GEMMs (a, b, c) and softmax (x, out)
    src = np.ones(nbytes // 8, np.float32)
    dst = np.empty_like(src)
    return lambda: np.copyto(dst, src)


def mixed_loop(calls, rounds):
    for fn in calls.values():
        fn()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def rounds_for(n, quick):
    base = {64: 200, 256: 40, 1024: 6}[n]
    return max(3, base // 3) if quick else base


def measure(threads, quick, repeats, noisy):
    """{(size, name): (own median, mixed median, noisy median or None)}."""
    zl.set_num_threads(threads)
    pool = zl.default_pool()
    out = {}
    with threadpoolctl.threadpool_limits(threads):
        for n in SIZES:
            calls = make_calls(n, pool)
            serial_calls = make_calls(n, pool, serial=True)
            rounds = rounds_for(n, quick)
            own = {name: [] for name in calls}
            cold = {name: [] for name in calls}
            asleep = {name: [] for name in calls}
            mixed = {name: [] for name in calls}
            idle = {name: [] for name in calls}
            replayed = {name: [] for name in calls}
            evict = traffic_of_others(n)
            for _ in range(repeats):
                latest = mixed_loop(calls, rounds)
                for name, ts in latest.items():
                    mixed[name] += ts
                for name, fn in calls.items():
                    own[name] += own_loop(fn, rounds)
                    cold[name] += own_loop(fn, rounds, evict)
                    asleep[name] += own_loop(fn, rounds, nap)
                    idle[name] += own_loop(fn, rounds, spin_for(time_of_others(latest, name)))
                    replayed[name] += own_loop(fn, rounds, others_on_one_thread(serial_calls, name, threads))
            loud = loud_own = None
            if noisy:
                loud = {name: [] for name in calls}
                loud_own = {name: [] for name in calls}
                with neighbour():
                    for _ in range(repeats):
                        for name, ts in mixed_loop(calls, rounds).items():
                            loud[name] += ts
                        for name, fn in calls.items():
                            loud_own[name] += own_loop(fn, rounds)
            for name in calls:
                control = max(statistics.median(cold[name]), statistics.median(asleep[name]),
                              statistics.median(idle[name]), statistics.median(replayed[name]))
                # Beside the neighbour, the call's own loop there is the machine's
                # limit too (how a library splits its work over a core it shares).
                loud_control = max(control, statistics.median(loud_own[name])) if loud else None
                out[(n, name)] = (statistics.median(own[name]), control,
                                  statistics.median(mixed[name]),
                                  statistics.median(loud[name]) if loud else None, loud_control)
    zl.set_num_threads(None)
    return out


class neighbour:
    """Another process keeping one core busy for the duration of a with block."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def busy_core_ratio(seconds=0.3):
    """How much slower one busy Python loop runs with the neighbour than without:
    what the machine itself gives a single thread under that load (the ceiling)."""
    def spin():
        t0 = time.perf_counter()
        x = 0
        for i in range(400_000):
            x += i
        return time.perf_counter() - t0

    quiet = statistics.median(spin() for _ in range(7))
    with neighbour():
        loud = statistics.median(spin() for _ in range(7))
    return loud / quiet


def numpy_team_spin(n=256, nap=0.2, repeats=5):
    """CPU time (ms) this process burns in `nap` seconds of sleep right after a
    numpy.matmul on the threads threadpoolctl allows: numpy's OpenBLAS workers
    spinning, as no thread of the caller runs meanwhile."""
    a = np.ones((n, n), np.float32)
    burnt = []
    for _ in range(repeats):
        np.matmul(a, a)
        t0 = time.process_time()
        time.sleep(nap)
        burnt.append((time.process_time() - t0) * 1e3)
    return statistics.median(burnt)


def fmt_us(s):
    return f"{s * 1e6:,.0f}" if s >= 1e-4 else f"{s * 1e6:.1f}"


def print_table(res, threads, worst, title):
    noisy = any(loud is not None for (_, _, _, loud, _) in res.values())
    head = ("| n | call | own loop (us) | control (us) | mixed loop (us) | mixed / own "
            "| control / own | mixed / control |")
    rule = "|---:|---|---:|---:|---:|---:|---:|---:|"
    if noisy:
        head += " noisy neighbour (us) | noisy / own | noisy control (us) | noisy / noisy control |"
        rule += "---:|---:|---:|---:|"
    print(f"### {title}\n")
    print(head)
    print(rule)
    for (n, name), (own, cold, mixed, loud, loud_cold) in res.items():
        row = (f"| {n} | {name} | {fmt_us(own)} | {fmt_us(cold)} | {fmt_us(mixed)} | {mixed / own:.2f}x "
               f"| {cold / own:.2f}x | {mixed / cold:.2f}x |")
        for kind, ratio in (("mixed", mixed / own), ("control", cold / own),
                            ("mixed against the control", mixed / cold)):
            worst[(kind, threads)] = max(worst.get((kind, threads), 0), ratio)
        if loud is not None:
            row += f" {fmt_us(loud)} | {loud / own:.2f}x | {fmt_us(loud_cold)} | {loud / loud_cold:.2f}x |"
            for kind, ratio in (("noisy", loud / own), ("noisy against its control", loud / loud_cold)):
                worst[(kind, threads)] = max(worst.get((kind, threads), 0), ratio)
        print(row)
    print()


def spin_control(threads, args):
    """The mixed loop again in a child whose numpy OpenBLAS team does not spin."""
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(threads), "--repeats", str(args.repeats),
           "--json"] + (["--quick"] if args.quick else []) + (["--noisy"] if args.noisy else [])
    env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT="4")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    res = {(n, name): tuple(v) for n, name, v in data["results"]}
    return res, data["spin_ms"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--noisy", action="store_true", help="also run the mixed loop beside a busy process")
    p.add_argument("--spin-control", action="store_true",
                   help="also run the multi-thread mixed loop with numpy's OpenBLAS team not spinning")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--repeats", type=int, default=3, help="own/mixed alternations per size")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the spin control's child
    args = p.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    if args.json:
        res = measure(thread_counts[0], args.quick, args.repeats, args.noisy)
        with threadpoolctl.threadpool_limits(thread_counts[0]):
            spin = numpy_team_spin()
        print(json.dumps({"results": [[n, name, v] for (n, name), v in res.items()], "spin_ms": spin}))
        return 0
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Load average at start: {load}. Goals: mixed/own <= 1.25x; noisy/own <= 2.5x.\n")
    ceiling = busy_core_ratio() if args.noisy else None
    worst = {}
    spins = []
    for threads in thread_counts:
        res = measure(threads, args.quick, args.repeats, args.noisy)
        print_table(res, threads, worst, f"{threads} thread{'s' if threads > 1 else ''}")
        if args.spin_control and threads > 1:
            with threadpoolctl.threadpool_limits(threads):
                spins.append((threads, numpy_team_spin(), None))
            calm, calm_spin = spin_control(threads, args)
            spins[-1] = (threads, spins[-1][1], calm_spin)
            calm_worst = {}
            print_table(calm, threads, calm_worst,
                        f"{threads} threads, numpy's OpenBLAS team not spinning (OPENBLAS_THREAD_TIMEOUT=4)")
            for (kind, t), r in calm_worst.items():
                worst[(kind + " with numpy's team not spinning", t)] = r
    print("Worst ratios: " + ", ".join(f"{kind} on {t} thread{'s' if t > 1 else ''} {r:.2f}x"
                                       for (kind, t), r in worst.items()))
    for threads, spin, calm_spin in spins:
        print(f"numpy's OpenBLAS team on {threads} threads burns {spin:.0f} ms of CPU in the 0.2 s after a "
              f"256 x 256 numpy.matmul (the caller asleep); {calm_spin:.0f} ms with OPENBLAS_THREAD_TIMEOUT=4.")
    if ceiling is not None:
        print(f"Busy core: a single-threaded Python loop runs {ceiling:.2f}x slower beside the neighbour "
              "(the machine's own cost of the noisy case).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
