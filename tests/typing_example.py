"""The public API as an editor or mypy sees it through the stubs.

tests/test_typing.py type-checks this file with mypy (strict) against the installed
package, then runs it, so that every annotation here is also what happens.
"""
import io
import os
import sys
import tempfile
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

import zigllama
from zigllama import (
    ArenaAllocator,
    CpuTopology,
    GGMLType,
    GGUFReader,
    GGUFWriter,
    MemoryMap,
    ParallelOps,
    Tensor,
    ThreadPool,
    dequantize,
    get_blas,
    quantize,
)


def tensors() -> float:
    a: Tensor = Tensor.zeros((2, 3))
    b: Tensor = Tensor.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    c: Tensor = (a + b) * 2.0
    d: Tensor = c @ b.T
    shape: tuple[int, ...] = d.shape
    assert shape == (2, 2)
    row: npt.NDArray[np.float32] = np.asarray(d, dtype=np.float32)
    first: float = float(d[0, 0])
    view = b[0]
    assert isinstance(view, Tensor) and view.dtype == "float32"
    return first + float(row.sum())


def arena() -> int:
    with ArenaAllocator(chunk_size=4096) as arena:
        t = Tensor.empty(64, "float32", allocator=arena)
        t.fill(1.0)
        used: int = arena.used
    return used


def gguf_round_trip(directory: str) -> tuple[str, int]:
    path = os.path.join(directory, "tiny.gguf")
    weights = np.linspace(-1.0, 1.0, 4 * 32, dtype=np.float32).reshape(4, 32)
    blocks: npt.NDArray[np.uint8] = quantize(weights, "Q8_0")
    with GGUFWriter(path) as writer:
        writer.add("general.architecture", "llama")
        writer.add_uint32("llama.block_count", 1)
        writer.add_tensor("norm", np.ones(32, dtype=np.float32))
        writer.add_tensor("w", blocks, GGMLType.Q8_0, shape=(4, 32))
    with MemoryMap.from_file(path) as mapped:
        size: int = mapped.size
        with GGUFReader(mapped) as reader:
            arch: str = reader.metadata["general.architecture"]
            blocks_count = reader.metadata.get("llama.block_count", 0)
            loaded: Tensor = reader.load("w")
            raw = reader.raw_tensor("w")
            again: Tensor = dequantize(raw, GGMLType.Q8_0, (4, 32))
            assert np.array_equal(np.asarray(loaded), np.asarray(again))
            del loaded, again, raw
    assert blocks_count == 1
    return arch, size


def blas() -> float:
    a = np.ones((3, 4), dtype=np.float32)
    b = np.ones((4, 2), dtype=np.float32)
    c: npt.NDArray[np.floating] = get_blas().gemm(a, b)
    out = np.zeros((3, 2), dtype=np.float32)
    same: npt.NDArray[np.float32] = get_blas("generic").gemm(a, b, out, alpha=2.0)
    return float(c[0, 0]) + float(same[0, 0])


def square(x: int) -> int:
    return x * x


def threads() -> int:
    with ThreadPool(2) as pool:
        future: Future[int] = pool.submit(square, 7)
        value: int = future.result()
        probs = ParallelOps(pool).softmax(np.zeros((2, 4), dtype=np.float32))
        assert np.allclose(probs.sum(axis=-1), 1.0)
    cpus: int = CpuTopology.detect().num_cpus
    assert cpus >= 1
    return value


def main() -> int:
    buf = io.StringIO()
    zigllama.show_config(file=buf)
    assert "zigllama" in buf.getvalue()
    assert tensors() == 10.0 + 166.0   # d = 2 b b^T = [[10, 28], [28, 100]]
    assert arena() > 0
    with tempfile.TemporaryDirectory() as tmp:
        assert gguf_round_trip(tmp)[0] == "llama"
    assert blas() == 4.0 + 8.0
    assert threads() == 49
    return 0


if __name__ == "__main__":
    sys.exit(main())
