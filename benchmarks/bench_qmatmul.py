"""Quantized matrix products (zigllama.qgemm) against the machine and against sgemm.

    python benchmarks/bench_qmatmul.py [--types Q4_K,Q6_K,Q8_0,Q4_0,Q5_0] [--repeat 5] [--quick]
        [--gemm-types Q4_1,Q5_1,IQ4_XS] [--no-gemv] [--no-gemm]

GEMV (m = 1): bytes of W read per second, against a read-only sweep of the same
bytes in the same run (``_read_sweep``: every byte loaded once, OR-reduced, on
the same threads) and against sgemv on the pre-dequantized float32 weight
(numpy's BLAS, the same thread count). Goal: >= 85% of the sweep and >= 4x
sgemv on two threads. With GGML_SRC set to a ggml checkout, ggml's own
``ggml_vec_dot_<type>_q8_<0|K>`` (ggml-cpu's x86 kernels, compiled here with the
flags of the active path: -O3 -mavx2 -mfma -mf16c, plus the AVX-512 VNNI ones on
that path) runs the same GEMV on the same bytes, one call per row as ggml's
mul_mat does, on x already quantized (ours quantizes x inside each call), rows
split over OpenMP threads: "x ggml" is its time over ours.
GEMM (m = 32, 128, 512): fast and exact modes against scipy's sgemm on the
float32 weight (x @ W.T). Goal: >= 0.8x at m = 512.
Contenders alternate within each round; figures are medians of the rounds.
"""
import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import tempfile

import numpy as np
from _timing import SETTLE_SECONDS, speedup, time_call, two_core_control
from threadpoolctl import threadpool_limits

import zigllama
from zigllama._core.qmatmul import _read_sweep, qgemm_path, quantize_activations

from bench_quants import random_blocks
from zigllama._core import quantization as zq

# ggml's vec_dot takes Q8_1 activations for these; ours take Q8_0.
GGML_OTHER_ACTIVATIONS = ("Q4_1", "Q5_1")

# A row loop over one vec_dot, split over OpenMP threads as ggml splits rows,
# and what ggml-cpu's quants.c needs from the rest of ggml.
GGML_DRIVER = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>
typedef void (*vec_dot_fn)(int n, float *s, size_t bs, const void *vx, size_t bx, const void *vy, size_t by,
                           int nrc);
void bench_gemv(vec_dot_fn f, int n, int64_t rows, const uint8_t *w, int64_t stride, const void *xq, float *y,
                int threads) {
    #pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int64_t r = rows * t / nt; r < rows * (t + 1) / nt; r++) f(n, y + r, 0, w + r * stride, 0, xq, 0, 1);
    }
}
float ggml_table_f32_e8m0_half[256];
float ggml_table_f32_ue4m3[256];
void quantize_row_q8_K_ref(const float *x, void *y, int64_t k) { (void)x; (void)y; (void)k; abort(); }
"""


class GGMLVecDot:
    """ggml-cpu's x86 vec_dot kernels from the checkout GGML_SRC names."""

    def __init__(self, src, avx512):
        from bench_ggml_dequant import SHIM
        quants = os.path.join(src, "src", "ggml-cpu", "arch", "x86", "quants.c")
        if not os.path.isfile(quants):
            raise RuntimeError(f"{quants} not found: GGML_SRC must be a ggml checkout")
        self.workdir = tempfile.mkdtemp(prefix="zigllama-ggml-vecdot-")
        for name, text in (("shim.c", SHIM), ("driver.c", GGML_DRIVER)):
            with open(os.path.join(self.workdir, name), "w") as f:
                f.write(text)
        lib = os.path.join(self.workdir, "libggml_vecdot.so")
        flags = ["-mavx2", "-mfma", "-mf16c"]
        if avx512:
            flags += ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]
        cc = os.environ.get("CC") or "cc"
        cmd = [*cc.split(), "-O3", *flags, "-DNDEBUG", "-std=gnu11", "-fPIC", "-shared", "-fopenmp", "-w",
               "-I", os.path.join(src, "include"), "-I", os.path.join(src, "src"),
               "-I", os.path.join(src, "src", "ggml-cpu"), quants,
               os.path.join(self.workdir, "shim.c"), os.path.join(self.workdir, "driver.c"), "-o", lib, "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise RuntimeError("building ggml's vec_dot kernels failed:\n" + proc.stderr[-3000:])
        self.flags = " ".join(flags)
        self.lib = ctypes.CDLL(lib)
        self.lib.bench_gemv.restype = None
        self.lib.bench_gemv.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]

    def gemv(self, w, x, y):
        """A callable running ggml's GEMV y = W x (x quantized here, once), or None
        when this ggml has no vec_dot for the type against our activation blocks."""
        name = w.type_name
        if name in GGML_OTHER_ACTIVATIONS or name in ("F32", "F16", "BF16"):
            return None
        xq, act = quantize_activations(x, w.ggml_type)
        fn = getattr(self.lib, f"ggml_vec_dot_{name.lower().replace('_k', '_K')}_{act.lower().replace('_k', '_K')}",
                     None)
        if fn is None:
            return None
        fptr = ctypes.cast(fn, ctypes.c_void_p).value
        args = (fptr, w.n_cols, w.n_rows, w.data.ctypes.data, w.row_stride, xq.ctypes.data, y.ctypes.data)
        keep = (xq, w, y)

        def run(threads):
            self.lib.bench_gemv(*args, threads)
            return keep
        return run

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)


GEMV_SHAPES = [(4096, 4096), (640, 2048), (2048, 640), (262144, 640)]
GEMM_SHAPE = (4096, 4096)
GEMM_M = (32, 128, 512)
GEMM_TYPES = "Q4_K,Q6_K,Q8_0,Q4_0,Q5_0,Q4_1,Q5_1,IQ4_XS"


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


def gemv_table(types, shapes, repeat, min_seconds, skip_float_above, ggml=None):
    rng = np.random.default_rng(0)
    print("GEMV (m = 1): GB/s of W read; `sweep` reads the same bytes; `sgemv` runs on the float32 weight; "
          "`ggml` is ggml's vec_dot GEMV on the same bytes (x ggml: its time / ours)")
    print()
    print("| type | n x k | threads | qgemm GB/s | sweep GB/s | x sweep | ggml GB/s | x ggml | qgemm µs "
          "| sgemv µs | x sgemv |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in types:
        for n, k in shapes:
            if k % zq.GGML_QUANT_SIZES[zq.ggml_type_id(name)][0]:
                continue   # K-quant rows are whole 256-blocks: 640-wide weights use other types
            w = weight(name, n, k, rng)
            x = rng.standard_normal(k).astype(np.float32)
            y = np.empty(n, np.float32)
            wf = w.dequantize() if n * k <= skip_float_above else None
            y_ggml = np.empty(n, np.float32)
            ggml_run = ggml.gemv(w, x, y_ggml) if ggml is not None else None
            for threads in (1, 2):
                contenders = {
                    "q": lambda: zigllama.qgemm(x, w, y, threads=threads),
                    "sweep": lambda: _read_sweep(w.data, threads),
                }
                if wf is not None:
                    contenders["sgemv"] = lambda: np.matmul(wf, x)
                if ggml_run is not None:
                    contenders["ggml"] = lambda: ggml_run(threads)
                t = rounds(contenders, repeat, min_seconds, threads)
                gbs = w.nbytes / t["q"] / 1e9
                sweep = w.nbytes / t["sweep"] / 1e9
                sg = t.get("sgemv")
                sg_cells = f"{sg * 1e6:,.0f} | {sg / t['q']:.1f}x" if sg else "n/a | n/a"
                gg = t.get("ggml")
                gg_cells = f"{w.nbytes / gg / 1e9:.1f} | {gg / t['q']:.2f}x" if gg else "n/a | n/a"
                print(f"| {name} | {n} x {k} | {threads} | {gbs:.1f} | {sweep:.1f} | {gbs / sweep:.0%} | "
                      f"{gg_cells} | {t['q'] * 1e6:,.0f} | {sg_cells} |", flush=True)
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
                    # W x^T in Fortran terms: both operands as they lie, no copy
                    # (x @ wf.T would have scipy copy the 64 MiB weight each call)
                    "sgemm": lambda: sgemm(1.0, wf.T, x.T, trans_a=True),
                }, repeat, min_seconds, threads)
                flops = 2.0 * m * n * k
                f, e, s = (flops / t[c] / 1e9 for c in ("fast", "exact", "sgemm"))
                print(f"| {name} | {m} | {threads} | {f:.1f} | {e:.1f} | {s:.1f} | {f / s:.2f} | {e / s:.2f} |",
                      flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--types", default="Q4_K,Q6_K,Q8_0,Q4_0,Q5_0")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer rounds")
    p.add_argument("--no-gemm", action="store_true")
    p.add_argument("--gemm-types", default=GEMM_TYPES)
    p.add_argument("--no-gemv", action="store_true")
    args = p.parse_args(argv)
    gemm_types = [s.strip().upper() for s in args.gemm_types.split(",") if s.strip()]
    types = [s.strip().upper() for s in args.types.split(",") if s.strip()]
    shapes = GEMV_SHAPES[:3] if args.quick else GEMV_SHAPES
    print(f"kernel path: {qgemm_path()}; pool threads: {zigllama.default_pool().num_workers + 1}; "
          f"load average: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    # What two threads can give at all right now: busy work (no memory) on one
    # thread against the same split over the pool.
    control = speedup(*two_core_control(zigllama.default_pool()), 5, 0.02)[2]
    print(f"two-core control (busy work, 2 threads / 1): {control:.2f}x")
    ggml = None
    if os.environ.get("GGML_SRC"):
        try:
            ggml = GGMLVecDot(os.environ["GGML_SRC"], avx512=qgemm_path() == "avx512_vnni")
            print(f"ggml vec_dot: built from GGML_SRC with -O3 {ggml.flags}")
        except RuntimeError as e:
            print(f"ggml vec_dot column skipped: {e}")
    else:
        print("ggml vec_dot column skipped: set GGML_SRC to a ggml checkout to compare with ggml's vec_dot kernels")
    print()
    try:
        if not args.no_gemv:
            gemv_table(types, shapes, 3 if args.quick else args.repeat, 0.05, 64 << 20, ggml)
    finally:
        if ggml is not None:
            ggml.close()
    if not args.no_gemm:
        gemm_table(gemm_types[:2] if args.quick else gemm_types, (1024, 1024) if args.quick else GEMM_SHAPE,
                   GEMM_M, 3 if args.quick else args.repeat, 0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
