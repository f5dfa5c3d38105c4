"""qgemm reads the weight where it lies: the peak memory of a product over a
262,144 x 640 Q8_0 weight (a Gemma-3 vocabulary's output projection, 178 MB of
blocks in a file's map) grows by the weight's bytes plus O(m x n), never by a
float32 copy of W (671 MB). Each product runs in a fresh process, whose peak RSS
(VmHWM) is compared with its RSS just before the call; a control process
that dequantizes W first shows that the measure sees a copy."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zigllama as zl

ROWS, COLS = 262144, 640
MiB = 1 << 20

CHILD = r"""
import json, resource, sys
import numpy as np
import zigllama as zl

path, mode, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
reader = zl.GGUFReader(path)
w = reader.quantized("output.weight")
x = np.random.default_rng(0).standard_normal((m, w.n_cols), dtype=np.float32)
# Kernels, pool threads and the BLAS started on a slice big enough to be split
# over the pool: the call measured then adds only what the product itself needs.
zl.qgemm(x, w.rows(0, 2048), mode="exact")
zl.qgemm(x, w.rows(0, 2048), mode="fast")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

before = rss()
if mode == "dequantize first":
    y = x @ w.dequantize().T
else:
    y = zl.qgemm(x, w, mode=mode)
# VmHWM, this address space's peak: ru_maxrss would also count the parent's
# RSS at fork (Linux folds the forked copy's peak into it at exec).
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
print(json.dumps({"before": before, "peak": peak, "weight": w.nbytes, "out": y.nbytes,
                  "finite": bool(np.isfinite(y).all()), "threads": zl.num_threads(),
                  "env": {k: v for k, v in __import__("os").environ.items()
                          if k.startswith(("ZIGLLAMA", "OMP", "OPENBLAS", "MALLOC", "GLIBC"))}}))
"""


@pytest.fixture(scope="module")
def vocabulary_weight(tmp_path_factory):
    """A GGUF file holding one 262,144 x 640 Q8_0 tensor, written block by block
    (never a float32 array of its size in the test process either)."""
    path = str(tmp_path_factory.mktemp("qgemm-memory") / "output.gguf")
    rng = np.random.default_rng(7)
    scale = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    rows_per_chunk = 16384

    def chunks():
        for _ in range(ROWS // rows_per_chunk):
            blocks = rng.integers(-127, 128, size=(rows_per_chunk, COLS // 32, 34), dtype=np.int8).view(np.uint8)
            blocks[:, :, 0:2] = scale
            yield blocks

    w = zl.GGUFWriter(path)
    w.add_tensor_info("output.weight", (ROWS, COLS), zl.GGMLType.Q8_0)
    w.write_header()
    w.write_tensor_bytes("output.weight", chunks())
    w.close()
    return path


def peak_growth(path, mode, m):
    env = dict(os.environ, ZIGLLAMA_NUM_THREADS="2")   # whatever an earlier test left set
    proc = subprocess.run([sys.executable, "-c", CHILD, path, mode, str(m)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["finite"]
    print(r)
    return r["peak"] - r["before"], r["weight"], r["out"]


@pytest.mark.parametrize("mode", ["fast", "exact"])
@pytest.mark.parametrize("m", [1, 8])
def test_a_product_over_the_vocabulary_weight_adds_its_bytes_not_a_float_copy(vocabulary_weight, mode, m):
    growth, weight, out = peak_growth(vocabulary_weight, mode, m)
    float_copy = ROWS * COLS * 4
    # The map's pages as they are read (file-backed, they count in RSS), y, x's
    # quantized rows, and the exact mode's 16 MiB panels of dequantized rows.
    bound = weight + out + 32 * MiB
    print(f"\n{mode} m={m}: peak RSS grew {growth / MiB:.1f} MiB; weight {weight / MiB:.1f} MiB, "
          f"float32 copy {float_copy / MiB:.1f} MiB, bound {bound / MiB:.1f} MiB")
    assert growth <= bound
    assert growth < float_copy / 2


def test_the_measure_sees_a_float_copy(vocabulary_weight):
    growth, weight, out = peak_growth(vocabulary_weight, "dequantize first", 1)
    print(f"\ndequantize first: peak RSS grew {growth / MiB:.1f} MiB")
    assert growth >= ROWS * COLS * 4
