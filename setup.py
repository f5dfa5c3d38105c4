"""Build the zigllama extensions.

Every ``zigllama/_core/<name>.pyx`` becomes the extension ``zigllama._core.<name>``;
C sources in ``zigllama/_core/src/<name>/`` are compiled into it. Compiler
directives and flags are set here once, for every module.

No tuning for the build machine's CPU: kernels that want AVX2/FMA/F16C carry ``target`` attributes
and are picked at run time (see ``include/zigllama/zl_cpu.h``), so a wheel built
here runs on any x86-64 machine.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CORE = os.path.join("zigllama", "_core")
INCLUDE = os.path.join(CORE, "include")

COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "embedsignature": True,
    "binding": True,
    "cpow": True,
}

# -ffp-contract=off: dequantization must match the reference bit for bit, so the
# compiler may not fuse a*b+c into an FMA where the reference does not (GCC fuses by
# default in GNU C mode wherever FMA is enabled, e.g. inside target("fma") kernels).
#
# -fvisibility=hidden: an extension module exports PyInit_<name> only (Python marks it
# visible); its C functions stay private to it, so no symbol of zigllama can clash with
# another library in the process (ggml's gguf_*, a BLAS). Other extensions reach the
# kernels through the Cython C API (the .pxd files), not by symbol.
BASE_CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-Wno-unused-function", "-fvisibility=hidden"]


def _compiler_accepts(flags, source="int main(void){return 0;}\n", link_flags=()):
    """Compile-and-link probe: does the C compiler accept these flags?"""
    cc = os.environ.get("CC") or "cc"
    tmp = tempfile.mkdtemp(prefix="zigllama-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        cmd = cc.split() + list(flags) + [src, "-o", os.path.join(tmp, "probe")] + list(link_flags)
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_PROBE = """
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def openmp_flags():
    """OpenMP compile/link flags, or empty lists if the compiler lacks OpenMP.

    ZIGLLAMA_DISABLE_OPENMP=1 forces a serial build (prange then runs serially).
    """
    if os.environ.get("ZIGLLAMA_DISABLE_OPENMP", "") not in ("", "0"):
        return [], []
    for flag in ("-fopenmp", "-qopenmp"):
        if _compiler_accepts([flag], OPENMP_PROBE, [flag]):
            return [flag], [flag]
    return [], []


def sanitizer_flags():
    """ZIGLLAMA_SANITIZE=address,undefined: build with those sanitizers (for the CI's
    sanitizer job; the interpreter must then preload the sanitizer runtime). Returns
    (compile flags, link flags); the optimisation level drops to -O1 for usable reports."""
    wanted = os.environ.get("ZIGLLAMA_SANITIZE", "").strip()
    if not wanted:
        return [], []
    flag = f"-fsanitize={wanted}"
    extra = ["-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-g", "-O1"]
    return [flag] + extra, [flag]


def extensions():
    omp_compile, omp_link = openmp_flags()
    san_compile, san_link = sanitizer_flags()
    if san_compile:
        print(f"zigllama: sanitizers {san_compile[0]}")
    have_openmp = bool(omp_compile)
    print(f"zigllama: OpenMP {'enabled' if have_openmp else 'NOT available: prange runs serially'}")
    exts = []
    for pyx in sorted(glob(os.path.join(CORE, "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        sources = [pyx] + sorted(glob(os.path.join(CORE, "src", name, "*.c")))
        # Every header a source may include: editing one rebuilds the extension.
        headers = sorted(glob(os.path.join(INCLUDE, "zigllama", "*.h")) + glob(os.path.join(CORE, "src", name, "*.h")))
        exts.append(
            Extension(
                f"zigllama._core.{name}",
                sources=sources,
                depends=headers,
                include_dirs=[INCLUDE, os.path.join(CORE, "src", name), numpy.get_include()],
                define_macros=[
                    ("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION"),
                    ("ZL_HAVE_OPENMP", "1" if have_openmp else "0"),
                ],
                extra_compile_args=BASE_CFLAGS + omp_compile + san_compile,
                extra_link_args=omp_link + san_link,
            )
        )
    # The model runner's kernels: a user of the layer, outside _core (it cimports the
    # public zigllama/*.pxd names and includes the shipped headers).
    model_src = os.path.join("zigllama", "src", "model_kernels")
    exts.append(
        Extension(
            "zigllama._model_kernels",
            sources=[os.path.join("zigllama", "_model_kernels.pyx")] + sorted(glob(os.path.join(model_src, "*.c"))),
            depends=sorted(glob(os.path.join(INCLUDE, "zigllama", "*.h")) + glob(os.path.join(model_src, "*.h"))),
            include_dirs=[INCLUDE, model_src, numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
            extra_compile_args=BASE_CFLAGS + san_compile,
            extra_link_args=san_link,
        )
    )
    return cythonize(
        exts,
        compiler_directives=COMPILER_DIRECTIVES,
        include_path=[CORE],
        nthreads=int(os.environ.get("ZIGLLAMA_BUILD_JOBS", "0")) or (os.cpu_count() or 1),
        annotate=os.environ.get("ZIGLLAMA_ANNOTATE", "") not in ("", "0"),
    )


class BuildExt(build_ext):
    """Compile extensions in parallel unless told otherwise."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
