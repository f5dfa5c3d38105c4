"""A whole Q4_K_M-like model to float32: ``zigllama load`` and what bounds it.

    python benchmarks/bench_load.py [--repeat 5] [--threads 2] [--model FILE]

Writes the ~230 MB model of ``q4_k_m_model.py`` (unless --model names one), then
runs, alternately and each in a fresh process (as a user's ``zigllama load`` is):
  - ``zigllama load`` itself (every tensor into a new float32 array);
  - first touch: the same arrays (zigllama Tensors, as the load allocates)
    set to zero by C memset on as many threads, no dequantization: what the kernel charges for handing out
    that much fresh memory (the floor under any load into fresh arrays);
  - the dequantization alone: every tensor into arrays already filled (so
    paged in) before the clock starts.
The medians show how much of a load is dequantization and how much is the
kernel faulting in (and zeroing) fresh memory, which only reusing memory avoids
(``dequantize(..., out=)``). Transparent huge pages cut the faults 512-fold on
bare metal; on this virtual machine their first touch costs more, not less.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import q4_k_m_model

# Run in a fresh interpreter: the arrays of each tensor of the model, then one of
# the modes. Prints the timed seconds.
CHILD = r"""
import ctypes, sys, time, threading
import numpy as np
from zigllama._core.gguf_format import GGUFModelLoader
from zigllama._core.quantization import dequantize_tensor
from zigllama._core.tensor import Tensor

path, mode, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])


def fill_zeros(arrays):
    # C memset through ctypes, which releases the GIL: the threads fault in parallel.
    spans = [(a.ctypes.data, a.nbytes) for a in arrays]

    def part(i):
        for address, nbytes in spans:
            share = -(-nbytes // threads)
            begin = min(i * share, nbytes)
            ctypes.memset(address + begin, 0, min(share, nbytes - begin))

    workers = [threading.Thread(target=part, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def new_arrays(infos):
    # What `zigllama load` allocates: Tensors (numpy's own large arrays are
    # madvised for huge pages, which fault in differently).
    return [np.asarray(Tensor.empty(i.shape, "float32")) for i in infos]


with GGUFModelLoader(path) as model:
    infos = model.tensors
    if mode == "touch":
        t0 = time.perf_counter()
        fill_zeros(new_arrays(infos))
    elif mode == "warm":
        outs = new_arrays(infos)
        fill_zeros(outs)
        t0 = time.perf_counter()
        for i, out in zip(infos, outs):
            dequantize_tensor(model, i.name, out=out, threads=threads)
    print(time.perf_counter() - t0)
"""


def run_load(path, threads):
    out = subprocess.run([sys.executable, "-m", "zigllama", "load", path, "--threads", str(threads), "--quiet"],
                         check=True, capture_output=True, text=True).stdout
    ms = float(re.search(r"time ([\d,.]+) ms", out).group(1).replace(",", ""))
    return ms / 1e3, out


def run_child(path, mode, threads):
    out = subprocess.run([sys.executable, "-c", CHILD, path, mode, str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="an existing .gguf (default: write the synthetic one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            path = os.path.join(tmp, "q4_k_m.gguf")
            t0 = time.perf_counter()
            q4_k_m_model.main([path])
            print(f"(written in {time.perf_counter() - t0:.1f} s)")
        size = os.path.getsize(path)
        samples = {"load": [], "touch": [], "warm": []}
        report = ""
        order = ["load", "touch", "warm"]
        for r in range(args.repeat):
            for mode in order[r % 3:] + order[:r % 3]:  # rotated: no mode always runs first
                if mode == "load":
                    seconds, report = run_load(path, args.threads)
                else:
                    seconds = run_child(path, mode, args.threads)
                samples[mode].append(seconds)
    med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    out_bytes = float(re.search(r"output ([\d.]+) GB", report).group(1))
    print(f"\nmodel: {size / 1e6:.0f} MB on disk, {out_bytes:.3f} GB as float32; {args.threads} threads; "
          f"median of {args.repeat} fresh processes each\n")
    print("| measurement | ms | GB/s of float32 |")
    print("|---|---:|---:|")
    rows = (("`zigllama load` into fresh arrays (goal < 400 ms)", med["load"]),
            ("first touch: C memset of the same new arrays by as many threads, no dequantization", med["touch"]),
            ("dequantization alone, into arrays already paged in", med["warm"]))
    for label, ms in rows:
        print(f"| {label} | {ms:,.0f} | {out_bytes / (ms / 1e3):.2f} |")
    print(f"\nload - first touch = {med['load'] - med['touch']:,.0f} ms; "
          f"all runs (ms): " + "; ".join(f"{k} " + ", ".join(f"{v * 1e3:.0f}" for v in s) for k, s in samples.items()))
    print("\nThe last `zigllama load` report:\n\n```\n" + report.strip() + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
