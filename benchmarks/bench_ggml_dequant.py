"""Dequantization against ggml's own C dequantizers, built here and timed in the same run.

    GGML_SRC=<ggml checkout> python benchmarks/bench_ggml_dequant.py [--rows 1024] [--cols 4096]
        [--repeat 101] [--types Q4_K,Q8_0] [--paths best|all]

ggml's ``src/ggml-quants.c`` (and ``ggml_fp16_to_fp32_row`` / ``ggml_bf16_to_fp32_row``
from ``src/ggml.c``) are compiled the way ggml builds itself for the machine it runs
on (``-O3 -march=native``) into a shared library loaded with ctypes. Both sides decode
the same blocks into preallocated float32 arrays on one thread; each round times
one call of each (the order swapping every round), rates come from the median
times and "x ggml" is the median of the per-round ratios. Single calls, not loops:
on a shared machine a loop's time includes its share of everyone else's, while
the median of single calls is the kernel's own speed. "kernel x ggml" calls
zigllama's C kernel itself (``zl_dequantize_row_<type>``, exported by the
quantization extension) through ctypes as ggml's is called: the same call cost on
both sides, where "x ggml" includes ``zigllama.dequantize``'s argument checks. "same bits" says whether the two outputs are identical
(ggml's -march=native build may fuse a multiply-add where the reference does not).
With --paths all, each SIMD path this CPU supports runs in its own process
(ZIGLLAMA_SIMD), each against ggml measured again in that process.
Without GGML_SRC the benchmark says so and skips.
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_quants import random_blocks

import zigllama
from zigllama._core import platform
from zigllama._core import quantization as zq

HOT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
             "Q8_K", "F16", "BF16"]
ROW_FUNCTIONS = {"F16": "ggml_fp16_to_fp32_row", "BF16": "ggml_bf16_to_fp32_row"}

# What ggml-quants.c needs from the rest of ggml; none of it is reached when dequantizing
# except the f16 table some versions read scales through.
SHIM = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
float ggml_table_f32_f16[1 << 16];
static float shim_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13);
    else if (exp) bits = sign | ((exp + 112u) << 23) | (mant << 13);
    else if (!mant) bits = sign;
    else { exp = 113; while (!(mant & 0x400u)) { mant <<= 1; exp--; } bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13); }
    float f; memcpy(&f, &bits, 4); return f;
}
__attribute__((constructor)) static void shim_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) ggml_table_f32_f16[i] = shim_f16((uint16_t)i);
}
void ggml_abort(const char *file, int line, const char *fmt, ...) { (void)file; (void)line; (void)fmt; abort(); }
size_t ggml_row_size(int type, int64_t ne) { (void)type; (void)ne; abort(); }
const char *ggml_type_name(int type) { (void)type; return "?"; }
size_t ggml_type_size(int type) { (void)type; abort(); }
void ggml_log_internal(int level, const char *fmt, ...) { (void)level; (void)fmt; }
"""


def ggml_function_name(name):
    if name in ROW_FUNCTIONS:
        return ROW_FUNCTIONS[name]
    return "dequantize_row_" + name.lower().replace("_k", "_K")


def extract_c_function(source, name):
    """The text of a top-level C function definition `void name(...) { ... }`."""
    m = re.search(r"^void " + re.escape(name) + r"\(.*?^\}", source, re.S | re.M)
    return m.group(0) if m else None


def build_ggml(ggml_src, workdir):
    """Compile ggml's dequantizers into a shared library; returns its path."""
    cc = os.environ.get("CC") or "cc"
    quants = os.path.join(ggml_src, "src", "ggml-quants.c")
    if not os.path.isfile(quants):
        raise RuntimeError(f"{quants} not found: GGML_SRC must be a ggml (or llama.cpp/ggml) checkout")
    with open(os.path.join(ggml_src, "src", "ggml.c")) as f:
        ggml_c = f.read()
    rows = ['#include "ggml-impl.h"', "#if defined(__x86_64__)", "#include <immintrin.h>", "#endif"]
    for fn in ROW_FUNCTIONS.values():
        body = extract_c_function(ggml_c, fn)
        if body:
            rows.append(body)
    with open(os.path.join(workdir, "rows.c"), "w") as f:
        f.write("\n".join(rows) + "\n")
    with open(os.path.join(workdir, "shim.c"), "w") as f:
        f.write(SHIM)
    lib = os.path.join(workdir, "libggml_dequant.so")
    cmd = [*cc.split(), "-O3", "-march=native", "-DNDEBUG", "-std=gnu11", "-fPIC", "-shared", "-w",
           "-I", os.path.join(ggml_src, "include"), "-I", os.path.join(ggml_src, "src"),
           quants, os.path.join(workdir, "rows.c"), os.path.join(workdir, "shim.c"), "-o", lib, "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("building ggml's dequantizers failed:\n" + proc.stderr[-3000:])
    return lib


def paired_times(first, second, rounds):
    """Seconds of single calls of two functions, `rounds` rounds (after a warm-up
    call of each), the one that goes first swapping every round."""
    first(), second()
    times = ([], [])
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for k in order:
            fn = first if k == 0 else second
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def measure(lib_path, names, rows, cols, repeat):
    """{type: {ggml, zigllama (M elements/s), ratio, same}} on this process's SIMD path."""
    lib = ctypes.CDLL(lib_path)
    ours = ctypes.CDLL(zq.__file__)
    rng = np.random.default_rng(0)
    n = rows * cols
    out_ggml = np.zeros((rows, cols), np.float32)
    out_zig = np.zeros((rows, cols), np.float32)
    results = {}
    for name in names:
        type_id = zq.ggml_type_id(name)
        fn = getattr(lib, ggml_function_name(name), None)
        raw = np.ascontiguousarray(random_blocks(type_id, rows, cols, rng))
        if fn is None:
            results[name] = None
            continue
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        src_ptr, dst_ptr = raw.ctypes.data, out_ggml.ctypes.data

        def run_ggml():
            fn(src_ptr, dst_ptr, n)

        def run_zig():
            zigllama.dequantize(raw, type_id, (rows, cols), out=out_zig, threads=1)

        t_ggml, t_zig = paired_times(run_ggml, run_zig, repeat)
        same = bool(np.array_equal(out_ggml.view(np.uint32), out_zig.view(np.uint32)))
        kernel = getattr(ours, "zl_dequantize_row_" + name.lower(), None)
        kernel_ratio = None
        if kernel is not None:
            kernel.restype = None
            kernel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            zig_ptr = out_zig.ctypes.data
            t_g, t_k = paired_times(run_ggml, lambda: kernel(src_ptr, zig_ptr, n), repeat)
            kernel_ratio = statistics.median(g / k for g, k in zip(t_g, t_k))
        results[name] = {"ggml": n / statistics.median(t_ggml) / 1e6,
                         "zigllama": n / statistics.median(t_zig) / 1e6,
                         "ratio": statistics.median(g / z for g, z in zip(t_ggml, t_zig)),
                         "kernel_ratio": kernel_ratio, "same": same}
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=101, help="rounds (one call of each) per type; medians taken")
    p.add_argument("--types", default="", help="comma-separated type names (default: the hot types)")
    p.add_argument("--paths", choices=("best", "all"), default="best",
                   help="zigllama's widest SIMD path only, or every path the CPU supports")
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)  # a built library: measure, print JSON
    args = p.parse_args(argv)
    names = [s.strip().upper() for s in args.types.split(",") if s.strip()] or HOT_TYPES

    if args.worker:
        print(json.dumps(measure(args.worker, names, args.rows, args.cols, args.repeat)))
        return 0

    ggml_src = os.environ.get("GGML_SRC", "")
    if not ggml_src:
        print("skipped: set GGML_SRC to a ggml source checkout to compare with ggml's C dequantizers")
        return 0
    workdir = tempfile.mkdtemp(prefix="zigllama-ggml-")
    try:
        lib = build_ggml(ggml_src, workdir)
        paths = [platform.simd_path()] if args.paths == "best" else platform.simd_supported_paths()[::-1]
        per_path = {}
        for path in paths:
            if path == platform.simd_path():
                per_path[path] = measure(lib, names, args.rows, args.cols, args.repeat)
                continue
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--rows", str(args.rows),
                   "--cols", str(args.cols), "--repeat", str(args.repeat), "--types", ",".join(names)]
            proc = subprocess.run(cmd, env=dict(os.environ, ZIGLLAMA_SIMD=path), capture_output=True, text=True,
                                  check=True)
            per_path[path] = json.loads(proc.stdout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    print(f"{args.rows} x {args.cols} float32 output, one thread, ggml built with -O3 -march=native; "
          f"medians of {args.repeat} rounds of single calls; load average {load}")
    print()
    head = "| type | ggml M/s |"
    rule = "|---|---:|"
    for path in paths:
        head += f" {path} M/s | {path} x ggml | kernel x ggml | same bits |"
        rule += "---:|---:|---:|:---:|"
    print(head)
    print(rule)
    short = []
    for name in names:
        cells = per_path[paths[0]].get(name)
        if cells is None:
            print(f"| {name} | n/a (no such function in this ggml) |" + " |" * (4 * len(paths) - 1))
            continue
        line = f"| {name} | {cells['ggml']:,.0f} |"
        for path in paths:
            r = per_path[path][name]
            kr = r["kernel_ratio"]
            line += (f" {r['zigllama']:,.0f} | {r['ratio']:.2f}x | {'n/a' if kr is None else f'{kr:.2f}x'} |"
                     f" {'yes' if r['same'] else 'no'} |")
            if path == paths[0] and min(r["ratio"], kr or r["ratio"]) < 1.0:
                short.append(f"{name} {r['ratio']:.2f}x (kernel {'n/a' if kr is None else f'{kr:.2f}x'})")
        print(line, flush=True)
    print()
    print(f"{paths[0]} below 1.00x ggml: " + (", ".join(short) if short else "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
