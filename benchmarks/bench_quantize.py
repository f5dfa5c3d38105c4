"""Quantization speed per type: zigllama on one and two threads against the gguf
package (where it quantizes the type) and against ggml's own C quantizers
(``ggml_quantize_chunk``, one thread, built from the checkout ``GGML_SRC`` names;
skipped with a note otherwise), in the same run.

    python benchmarks/bench_quantize.py [--rows 256] [--cols 4096] [--repeat 5] [--types Q4_K,Q8_0]
    GGML_SRC=/path/to/ggml python benchmarks/bench_quantize.py

Input: standard normal float32 rows. Rates are input values per second (M/s);
"imatrix" rows pass one random weight per column. Contenders are timed
one after the other; times are medians. Every zigllama result is also checked byte
for byte against ggml's (when built) and the gguf package's.
"""
import argparse
import os
import warnings

import numpy as np
from _timing import median_time
from gguf import GGMLQuantizationType as T
from gguf import quants as gq

import zigllama
from zigllama._core import quantization as zq

GGUF_TYPES = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16", "TQ1_0", "TQ2_0", "MXFP4"}


def gguf_quantize(x, name):
    if name == "F16":
        return x.astype(np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return gq.quantize(x, T[name])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--types", default=",".join(zq.QUANTIZE_TYPES))
    args = ap.parse_args()

    ggml = None
    try:
        from ggml_reference import GGMLQuantizer, GGMLUnavailable
        ggml = GGMLQuantizer()
    except GGMLUnavailable as e:
        note = f"ggml's C: skipped ({e})"
    else:
        note = "ggml's C: ggml_quantize_chunk built from the checkout GGML_SRC names (one thread)"

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    w = rng.random(args.cols, dtype=np.float32)
    n = x.size
    print(f"{args.rows} x {args.cols} float32, medians of {args.repeat}; load average "
          f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(note)
    print()
    print("| type | imatrix | zigllama 1T M/s | zigllama 2T M/s | gguf M/s | 1T / gguf | ggml C M/s | 1T / ggml |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.types.split(","):
        type_id = zq.ggml_type_id(name)
        for imatrix in ([None, w] if name in zq.IMATRIX_TYPES else [None]):
            one = median_time(lambda: zigllama.quantize(x, name, threads=1, imatrix=imatrix), args.repeat)
            two = median_time(lambda: zigllama.quantize(x, name, threads=2, imatrix=imatrix), args.repeat)
            got = zigllama.quantize(x, name, imatrix=imatrix)
            row = [name, "yes" if imatrix is not None else "", f"{n / one / 1e6:.1f}", f"{n / two / 1e6:.1f}"]
            if imatrix is None and (name in GGUF_TYPES or name == "F16"):
                t = median_time(lambda: gguf_quantize(x, name), max(1, args.repeat // 2))
                row += [f"{n / t / 1e6:.1f}", f"{t / one:.1f}x"]
                if name in GGUF_TYPES:
                    same = np.array_equal(got, gguf_quantize(x, name))
                    row[-1] += "" if same else " (bytes differ!)"
            else:
                row += ["-", "-"]
            if ggml is not None:
                t = median_time(lambda: ggml.quantize(x, type_id, imatrix), args.repeat)
                same = np.array_equal(got, ggml.quantize(x, type_id, imatrix))
                row += [f"{n / t / 1e6:.1f}", f"{t / one:.1f}x" + ("" if same else " (bytes differ!)")]
            else:
                row += ["-", "-"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
