"""Dequantization speed per GGML type: zigllama on one and two threads against the
gguf package and against this machine's copy bandwidth, in the same run.

    python benchmarks/bench_quants.py [--rows 4096] [--cols 4096] [--repeat 7] [--types Q4_K,Q8_0]

Output is float32 into a preallocated array (``out=``), so page faults on fresh
memory are not timed; rates are output elements per second (M/s = millions).
The gguf package is timed on a slice of ``--gguf-rows`` rows (it is slow) and
reported per element; for F32 it returns a view, so there is nothing to time.
Timings are medians of ``--repeat`` runs; one and two threads alternate, and
2T / 1T is the median of the per-round ratios.
"""
import argparse
import warnings

import numpy as np
from _timing import median_time, speedup
from gguf import GGMLQuantizationType as T
from gguf import quants as gq

import zigllama
from zigllama._core import quantization as zq

# Goals for one thread (M/s); others 1,000.
GOALS = {"Q8_0": 1700, "Q4_K": 1700, "Q5_K": 1700, "Q4_0": 1200, "Q4_1": 1200}


def random_blocks(type_id, rows, cols, rng):
    """Realistic blocks: random quants, finite f16 scales (quantize real data where we can)."""
    block, size = zq.GGML_QUANT_SIZES[type_id]
    name = zq.ggml_type_name(type_id)
    if name in zq.QUANTIZE_TYPES:
        x = rng.standard_normal((rows, cols), dtype=np.float32)
        return zigllama.quantize(x, type_id)
    if name in ("F16", "BF16", "F32", "F64"):
        x = rng.standard_normal((rows, cols))
        if name == "BF16":
            return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(rows, -1)
        return x.astype({"F16": np.float16, "F32": np.float32, "F64": np.float64}[name]).view(np.uint8)
    if name in ("I8", "I16", "I32", "I64"):
        # Integer tensors hold ids and positions: small values, not random bit patterns.
        dtype = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}[name]
        bound = min(2**20, int(np.iinfo(dtype).max))
        return rng.integers(-bound, bound, size=(rows, cols), dtype=dtype).view(np.uint8)
    raw = rng.integers(0, 256, size=(rows, cols // block * size), dtype=np.uint8)
    blocks = raw.reshape(-1, size)
    if name == "Q8_K":
        blocks[:, 0:4] = np.array([0.01], "<f4").view(np.uint8)
    # A modest finite f16 scale where the layout has one (random bytes elsewhere).
    for off in F16_SCALES.get(name, ()):
        blocks[:, off:off + 2] = np.array([0.01], "<f2").view(np.uint8)
    return raw


# Byte offsets of f16 scales in the blocks of types we cannot produce by quantizing.
F16_SCALES = {
    "Q8_1": (0,), "Q2_K": (80, 82), "Q3_K": (108,), "Q5_K": (0, 2), "Q1_0": (0,),
    "IQ2_XXS": (0,), "IQ2_XS": (0,), "IQ2_S": (0,), "IQ3_XXS": (0,), "IQ3_S": (0,),
    "IQ1_S": (0,), "IQ4_NL": (0,), "IQ4_XS": (0,), "TQ1_0": (52,), "TQ2_0": (64,),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--gguf-rows", type=int, default=256, help="rows given to the gguf package")
    p.add_argument("--types", default="", help="comma-separated type names (default: all with a kernel)")
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    rows, cols = args.rows, args.cols
    n = rows * cols
    out = np.empty((rows, cols), np.float32)
    out.fill(0)  # page it in
    src = np.ones((rows, cols), np.float32)
    copy_s = median_time(lambda: np.copyto(out, src), args.repeat)
    copy_rate = n / copy_s / 1e6

    names = [s.strip().upper() for s in args.types.split(",") if s.strip()]
    type_ids = [zq.ggml_type_id(s) for s in names] or [
        t for t in sorted(zq.GGML_QUANT_SIZES) if zq.has_kernel(t)]

    print(f"{rows} x {cols} float32 output, median of {args.repeat}; "
          f"SIMD kernels: {zq.simd_active()}; np.copyto: {copy_rate:,.0f} M/s")
    print()
    print("| type | 1 thread M/s | 2 threads M/s | 2T / 1T | gguf M/s | x gguf (1T) | x copy (1T) | goal 1T |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for type_id in type_ids:
        name = zq.ggml_type_name(type_id)
        block, _ = zq.GGML_QUANT_SIZES[type_id]
        if cols % block:
            continue
        raw = random_blocks(type_id, rows, cols, rng)
        # One and two threads alternate; 2T / 1T is the median of the per-round ratios.
        t1, t2, scaling = speedup(lambda: zigllama.dequantize(raw, type_id, (rows, cols), out=out, threads=1),
                                  lambda: zigllama.dequantize(raw, type_id, (rows, cols), out=out, threads=2),
                                  args.repeat, 0.02)
        r1, r2 = n / t1 / 1e6, n / t2 / 1e6
        gguf_rate = float("nan")
        try:
            if name == "F32":
                raise NotImplementedError("gguf returns a view, not a conversion")
            gt = T(type_id)
            part = np.ascontiguousarray(raw[:args.gguf_rows])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                gs = median_time(lambda: gq.dequantize(part, gt), max(3, args.repeat // 2))
            gguf_rate = args.gguf_rows * cols / gs / 1e6
        except (NotImplementedError, ValueError):
            pass  # a type the gguf package cannot dequantize
        goal = GOALS.get(name, 1000)
        vs_gguf = f"{r1 / gguf_rate:,.0f}x" if gguf_rate == gguf_rate else "n/a"
        gguf_cell = f"{gguf_rate:,.1f}" if gguf_rate == gguf_rate else "n/a"
        print(f"| {name} | {r1:,.0f} | {r2:,.0f} | {scaling:.2f} | {gguf_cell} | {vs_gguf} | "
              f"{r1 / copy_rate:.2f} | {goal:,}{'' if r1 >= goal else ' (missed)'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
