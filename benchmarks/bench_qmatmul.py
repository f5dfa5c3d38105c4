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
split into qgemm's chunks on zigllama's pool: "x ggml" is its time over ours. The integer ceiling
(``integer_ceiling.c``, built the same way) is the least work any integer GEMV
of the format must do on this path, on the same bytes and threads: where W sits
in cache, it is the limit instead of the sweep ("x ceiling": its time / ours).
Call cost (m = 1, 640 x 2048): a whole qgemm call against the same C call
made in a nogil loop (``_bench_qgemm_floor``): the wrapper's µs.
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
from zigllama._core.qmatmul import _bench_qgemm_floor, _read_sweep, qgemm_path, quantize_activations

from bench_quants import random_blocks
from zigllama._core import quantization as zq

# ggml's vec_dot takes Q8_1 activations for these; ours take Q8_0.
GGML_OTHER_ACTIVATIONS = ("Q4_1", "Q5_1")

# A row loop over one vec_dot, split as qgemm splits its rows (zigllama's pool,
# the same chunks: see PoolSplit), and what ggml-cpu's quants.c needs from the
# rest of ggml.
GGML_DRIVER = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
typedef void (*vec_dot_fn)(int n, float *s, size_t bs, const void *vx, size_t bx, const void *vy, size_t by,
                           int nrc);
typedef int (*range_fn)(void *ctx, int64_t begin, int64_t end);
typedef int (*parallel_for_fn)(void *pool, int64_t n, int64_t grain, range_fn fn, void *ctx);
typedef struct { vec_dot_fn f; int n; int64_t rows, stride, nchunks; const uint8_t *w; const void *xq; float *y; } job;
static int chunk(void *ctx, int64_t begin, int64_t end) {
    const job *j = (const job *)ctx;
    for (int64_t c = begin; c < end; c++)
        for (int64_t r = j->rows * c / j->nchunks; r < j->rows * (c + 1) / j->nchunks; r++)
            j->f(j->n, j->y + r, 0, j->w + r * j->stride, 0, j->xq, 0, 1);
    return 0;
}
int bench_gemv(vec_dot_fn f, int n, int64_t rows, const uint8_t *w, int64_t stride, const void *xq, float *y,
               void *parallel_for, void *pool, int64_t nchunks) {
    job j = {f, n, rows, stride, nchunks < 1 ? 1 : nchunks, w, xq, y};
    if (pool == NULL || j.nchunks == 1) return chunk(&j, 0, j.nchunks);
    return ((parallel_for_fn)parallel_for)(pool, j.nchunks, 1, chunk, &j);
}
float ggml_table_f32_e8m0_half[256];
float ggml_table_f32_ue4m3[256];
void quantize_row_q8_K_ref(const float *x, void *y, int64_t k) { (void)x; (void)y; (void)k; abort(); }
"""


def simd_flags(path):
    """The compiler flags of zigllama's kernel path `path` (no -march=native:
    the C runs what zigllama's kernels run on this machine)."""
    flags = ["-mavx2", "-mfma", "-mf16c"]
    if path == "avx_vnni":
        flags += ["-mavxvnni"]
    if path == "avx512_vnni":
        flags += ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]
    return flags


def build_library(workdir, name, sources, flags, includes=()):
    """A shared library from C sources (paths) with -O3 and `flags`;
    RuntimeError with the compiler's message when it cannot be built."""
    lib = os.path.join(workdir, name)
    cc = os.environ.get("CC") or "cc"
    cmd = [*cc.split(), "-O3", *flags, "-DNDEBUG", "-std=gnu11", "-fPIC", "-shared", "-w",
           *(arg for inc in includes for arg in ("-I", inc)), *sources, "-o", lib, "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building {name} failed:\n" + proc.stderr[-3000:])
    return ctypes.CDLL(lib)


class PoolSplit:
    """How qgemm splits a GEMV's rows, for C peers to split theirs the same way:
    zigllama's zl_parallel_for (exported by the threading extension), the
    default pool's zl_pool (through the capsule of the Cython function
    pool_ptr) and qgemm's chunk count. The peers then pay the same dispatch as
    qgemm (an OpenMP team here would wait passively, as zigllama sets OpenMP
    up, and wake late on every call)."""

    def __init__(self):
        from zigllama._core import threading as zt
        self.parallel_for = ctypes.cast(ctypes.CDLL(zt.__file__).zl_parallel_for, ctypes.c_void_p).value
        api = ctypes.pythonapi
        api.PyCapsule_GetName.restype = ctypes.c_char_p
        api.PyCapsule_GetName.argtypes = [ctypes.py_object]
        api.PyCapsule_GetPointer.restype = ctypes.c_void_p
        api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        capsule = zt.__pyx_capi__["pool_ptr"]
        self._pool_ptr = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object)(
            api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule)))

    def args(self, threads, rows):
        """(parallel_for, pool, nchunks) for a GEMV of `rows` rows on `threads`
        threads: qgemm's 8 chunks per thread of 32 rows at least (qmatmul.pyx)."""
        if threads <= 1:
            return self.parallel_for, None, 1
        pool = zigllama.default_pool()
        return self.parallel_for, self._pool_ptr(pool), min(threads * 8, max(threads, rows // 32))


class GGMLVecDot:
    """ggml-cpu's x86 vec_dot kernels from the checkout GGML_SRC names."""

    def __init__(self, src, path):
        from bench_ggml_dequant import SHIM
        quants = os.path.join(src, "src", "ggml-cpu", "arch", "x86", "quants.c")
        if not os.path.isfile(quants):
            raise RuntimeError(f"{quants} not found: GGML_SRC must be a ggml checkout")
        self.workdir = tempfile.mkdtemp(prefix="zigllama-ggml-vecdot-")
        for name, text in (("shim.c", SHIM), ("driver.c", GGML_DRIVER)):
            with open(os.path.join(self.workdir, name), "w") as f:
                f.write(text)
        self.flags = " ".join(simd_flags(path))
        try:
            self.lib = build_library(self.workdir, "libggml_vecdot.so",
                                     [quants, os.path.join(self.workdir, "shim.c"),
                                      os.path.join(self.workdir, "driver.c")],
                                     simd_flags(path), [os.path.join(src, "include"), os.path.join(src, "src"),
                                                        os.path.join(src, "src", "ggml-cpu")])
        except RuntimeError:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.lib.bench_gemv.restype = ctypes.c_int
        self.lib.bench_gemv.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_void_p, ctypes.c_int64]
        self.split = PoolSplit()

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
            if self.lib.bench_gemv(*args, *self.split.args(threads, w.n_rows)) != 0:
                raise RuntimeError("ggml's GEMV failed on the pool")
            return keep
        return run

    def close(self):
        shutil.rmtree(self.workdir, ignore_errors=True)



class IntegerCeiling:
    """integer_ceiling.c built with the flags of the active kernel path: the
    least work an integer GEMV of each format does (see that file)."""

    # ggml type -> (the offset its unsigned form carries, taken back through x's
    # block sums; None: a K-quant, whose ceiling is not the product itself)
    OFFSETS = {"Q4_0": 8, "Q5_0": 16, "Q8_0": 128, "Q4_K": None, "Q6_K": None}

    def __init__(self, path):
        if path not in ("avx2", "avx_vnni", "avx512_vnni"):
            raise RuntimeError(f"no integer ceiling for the {path} path")
        self.workdir = tempfile.mkdtemp(prefix="zigllama-ceiling-")
        try:
            self.lib = build_library(self.workdir, "libinteger_ceiling.so",
                                     [os.path.join(os.path.dirname(os.path.abspath(__file__)), "integer_ceiling.c")],
                                     simd_flags(path))
        except RuntimeError:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.flags = " ".join(simd_flags(path))
        self.lib.ceiling_kernel.restype = ctypes.c_void_p
        self.lib.ceiling_kernel.argtypes = [ctypes.c_int]
        self.lib.ceiling_gemv.restype = ctypes.c_int
        self.lib.ceiling_gemv.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                          ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        self.split = PoolSplit()

    def gemv(self, w, x, y):
        """A callable running the ceiling's GEMV of w on x (quantized here, once,
        as qgemm quantizes it), or None for a type it does not cover. Where the
        ceiling is the product itself (Q4_0, Q5_0, Q8_0) it is checked against
        qgemm first: a ceiling that skipped work would not match."""
        name = w.type_name
        fn = self.lib.ceiling_kernel(int(w.ggml_type)) if name in self.OFFSETS else None
        if not fn:
            return None
        blocks, act = quantize_activations(x, w.ggml_type)
        if act == "Q8_0":
            b = blocks.reshape(-1, 34)
            xd = b[:, :2].copy().view(np.float16).astype(np.float32).ravel()
            xq = np.ascontiguousarray(b[:, 2:]).view(np.int8).ravel()
            sums = xq.reshape(-1, 32).astype(np.int32).sum(axis=1)
            xc = (-self.OFFSETS[name] * sums).astype(np.int32)
        else:
            b = blocks.reshape(-1, 292)
            xd = b[:, :4].copy().view(np.float32).ravel()
            xq = np.ascontiguousarray(b[:, 4:260]).view(np.int8).ravel()
            xc = np.zeros(len(xd), np.int32)
        args = (fn, w.n_cols, w.n_rows, w.data.ctypes.data, w.row_stride, xq.ctypes.data, xd.ctypes.data,
                xc.ctypes.data, y.ctypes.data)
        keep = (xq, xd, xc, w, y)

        def run(threads):
            if self.lib.ceiling_gemv(*args, *self.split.args(threads, w.n_rows)) != 0:
                raise RuntimeError("the ceiling's GEMV failed on the pool")
            return keep
        if self.OFFSETS[name] is not None:
            run(1)
            want = zigllama.qgemm(x, w)
            tol = 1e-4 * float(np.abs(want).max()) + 1e-6
            if not np.allclose(y, want, rtol=1e-4, atol=tol):
                raise RuntimeError(f"the {name} ceiling does not compute the product "
                                   f"(max error {np.abs(y - want).max():.3g})")
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


def gemv_table(types, shapes, repeat, min_seconds, skip_float_above, ggml=None, ceiling=None):
    rng = np.random.default_rng(0)
    print("GEMV (m = 1): GB/s of W read; `sweep` reads the same bytes; `ceiling` is the integer ceiling (the "
          "least work an integer GEMV of the type does, on the same bytes); `sgemv` runs on the float32 weight; "
          "`ggml` is ggml's vec_dot GEMV on the same bytes (x ggml: its time / ours)")
    print()
    print("| type | n x k | threads | qgemm GB/s | sweep GB/s | x sweep | ceiling GB/s | x ceiling | ggml GB/s "
          "| x ggml | qgemm µs | sgemv µs | x sgemv |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
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
            y_ceiling = np.empty(n, np.float32)
            ceiling_run = ceiling.gemv(w, x, y_ceiling) if ceiling is not None else None
            for threads in (1, 2):
                contenders = {
                    "q": lambda: zigllama.qgemm(x, w, y, threads=threads),
                    "sweep": lambda: _read_sweep(w.data, threads),
                }
                if ceiling_run is not None:
                    contenders["ceiling"] = lambda: ceiling_run(threads)
                if wf is not None:
                    contenders["sgemv"] = lambda: np.matmul(wf, x)
                if ggml_run is not None:
                    contenders["ggml"] = lambda: ggml_run(threads)
                t = rounds(contenders, repeat, min_seconds, threads)
                gbs = w.nbytes / t["q"] / 1e9
                sweep = w.nbytes / t["sweep"] / 1e9
                cells = []
                for peer, what in (("ceiling", "ratio"), ("ggml", "ratio"), ("sgemv", "us")):
                    tp = t.get(peer)
                    if tp is None:
                        cells.append("n/a | n/a")
                    elif what == "ratio":
                        cells.append(f"{w.nbytes / tp / 1e9:.1f} | {tp / t['q']:.2f}x")
                    else:
                        cells.append(f"{tp * 1e6:,.0f} | {tp / t['q']:.1f}x")
                print(f"| {name} | {n} x {k} | {threads} | {gbs:.1f} | {sweep:.1f} | {gbs / sweep:.0%} | "
                      f"{cells[0]} | {cells[1]} | {t['q'] * 1e6:,.0f} | {cells[2]} |", flush=True)
            del wf


CALL_SHAPE = (640, 2048)


def call_cost_table(types, pairs=100, loop=10):
    """µs of a whole qgemm call (m = 1, out given) against the same C call in a
    nogil loop, in alternating loops of `loop` calls; the wrapper's cost is the
    median of the per-pair differences (both halves see the same load)."""
    rng = np.random.default_rng(2)
    n, k = CALL_SHAPE
    print()
    print(f"Call cost (m = 1, {n} x {k}): µs of a qgemm call against the same C call made in a nogil loop "
          f"(`C call`); `wrapper` is the median difference of {pairs} paired loops of {loop} calls")
    print()
    print("| type | threads | qgemm µs | C call µs | wrapper µs | wrapper share |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in types:
        if k % zq.GGML_QUANT_SIZES[zq.ggml_type_id(name)][0]:
            continue
        w = weight(name, n, k, rng)
        x = rng.standard_normal(k).astype(np.float32)
        y = np.empty(n, np.float32)
        for threads in (1, 2):
            import time
            whole, floor, diff = [], [], []
            zigllama.qgemm(x, w, y, threads=threads)
            for _ in range(pairs):
                t0 = time.perf_counter()
                for _ in range(loop):
                    zigllama.qgemm(x, w, y, threads=threads)
                tq = (time.perf_counter() - t0) / loop
                tc = _bench_qgemm_floor(x, w, y, threads, loop)
                whole.append(tq)
                floor.append(tc)
                diff.append(tq - tc)
            q, c, d = (statistics.median(v) * 1e6 for v in (whole, floor, diff))
            print(f"| {name} | {threads} | {q:.1f} | {c:.1f} | {d:.2f} | {d / q:.0%} |", flush=True)


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
            ggml = GGMLVecDot(os.environ["GGML_SRC"], qgemm_path())
            print(f"ggml vec_dot: built from GGML_SRC with -O3 {ggml.flags}")
        except RuntimeError as e:
            print(f"ggml vec_dot column skipped: {e}")
    else:
        print("ggml vec_dot column skipped: set GGML_SRC to a ggml checkout to compare with ggml's vec_dot kernels")
    ceiling = None
    try:
        ceiling = IntegerCeiling(qgemm_path())
        print(f"integer ceiling: integer_ceiling.c built with -O3 {ceiling.flags}")
    except RuntimeError as e:
        print(f"integer ceiling column skipped: {e}")
    print()
    try:
        if not args.no_gemv:
            gemv_table(types, shapes, 3 if args.quick else args.repeat, 0.05, 64 << 20, ggml, ceiling)
    finally:
        if ggml is not None:
            ggml.close()
        if ceiling is not None:
            ceiling.close()
    if not args.no_gemv:
        call_cost_table([t for t in ("Q4_K", "Q8_0") if t in types] or types[:1], 50 if args.quick else 100)
    if not args.no_gemm:
        gemm_table(gemm_types[:2] if args.quick else gemm_types, (1024, 1024) if args.quick else GEMM_SHAPE,
                   GEMM_M, 3 if args.quick else args.repeat, 0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
