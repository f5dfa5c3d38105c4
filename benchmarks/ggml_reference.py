"""ggml's own C quantizers, built from a ggml checkout and called through ctypes.

The oracle for zigllama's quantizers: ``GGML_SRC`` names a ggml source tree
(github.com/ggml-org/ggml, or llama.cpp's ``ggml/`` directory). Its base library
is built once with CMake, without CPU-specific flags (the quantizers in it are
portable C), into ``GGML_BUILD`` (default: ``build-zigllama-ref`` inside the
tree), then ``ggml_quantize_chunk`` is called on numpy arrays.
"""
import ctypes
import glob
import os
import subprocess

import numpy as np


class GGMLUnavailable(RuntimeError):
    """No ggml checkout given, or it could not be built."""


def _build(src, build):
    libs = glob.glob(os.path.join(build, "**", "libggml-base.so"), recursive=True)
    if libs:
        return libs[0]
    configure = ["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF",
                 "-DGGML_BUILD_TESTS=OFF", "-DGGML_BUILD_EXAMPLES=OFF", "-DBUILD_SHARED_LIBS=ON"]
    for cmd in (configure, ["cmake", "--build", build, "--target", "ggml-base", "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise GGMLUnavailable(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-2000:]}")
    libs = glob.glob(os.path.join(build, "**", "libggml-base.so"), recursive=True)
    if not libs:
        raise GGMLUnavailable(f"no libggml-base.so under {build}")
    return libs[0]


class GGMLQuantizer:
    """``quantize(x, type_id, imatrix=None)`` by ggml's ``ggml_quantize_chunk``."""

    def __init__(self, src=None):
        src = src or os.environ.get("GGML_SRC")
        if not src:
            raise GGMLUnavailable("set GGML_SRC to a ggml source tree to compare with ggml's C")
        if not os.path.isfile(os.path.join(src, "src", "ggml-quants.c")):
            raise GGMLUnavailable(f"{src} is not a ggml source tree (no src/ggml-quants.c)")
        build = os.environ.get("GGML_BUILD") or os.path.join(src, "build-zigllama-ref")
        self.lib = ctypes.CDLL(_build(src, build))
        f = self.lib.ggml_quantize_chunk
        f.restype = ctypes.c_size_t
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                      ctypes.c_int64, ctypes.c_void_p]
        self.lib.ggml_row_size.restype = ctypes.c_size_t
        self.lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]

    def quantize(self, x, type_id, imatrix=None):
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, n = x.reshape(-1, x.shape[-1]).shape
        row_bytes = self.lib.ggml_row_size(int(type_id), n)
        out = np.zeros((rows, row_bytes), np.uint8)
        w = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
        self.lib.ggml_quantize_chunk(int(type_id), x.ctypes.data, out.ctypes.data, 0, rows, n,
                                     None if w is None else w.ctypes.data)
        return out.reshape(*x.shape[:-1], row_bytes)
