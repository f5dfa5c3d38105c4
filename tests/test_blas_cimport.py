"""The BLAS vtable from outside the package: a Cython extension built against the
installed zigllama (cimport of the .pxd, headers from get_include()) calls sgemm
without the GIL, and ctypes calls every backend through the PyCapsule."""
import ctypes
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import outside_extension
from zigllama import get_blas

BACKENDS = ("scipy", "generic", "naive")
ROW_MAJOR, COL_MAJOR, NO_TRANS, TRANS = 101, 102, 111, 112

_I64, _P = ctypes.c_int64, ctypes.c_void_p
_SGEMM = ctypes.CFUNCTYPE(ctypes.c_int, _P, ctypes.c_int, ctypes.c_int, ctypes.c_int, _I64, _I64, _I64,
                          ctypes.c_float, _P, _I64, _P, _I64, ctypes.c_float, _P, _I64)
_DGEMM = ctypes.CFUNCTYPE(ctypes.c_int, _P, ctypes.c_int, ctypes.c_int, ctypes.c_int, _I64, _I64, _I64,
                          ctypes.c_double, _P, _I64, _P, _I64, ctypes.c_double, _P, _I64)
_SDOT = ctypes.CFUNCTYPE(ctypes.c_int, _P, _I64, _P, _I64, _P, _I64, ctypes.POINTER(ctypes.c_float))
_NAMES = ("sdot", "ddot", "saxpy", "daxpy", "sscal", "dscal", "snrm2", "dnrm2", "sgemv", "dgemv", "sgemm", "dgemm")


class _Vtable(ctypes.Structure):
    _fields_ = [(name, _P) for name in _NAMES]


class _Blas(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("ctx", _P), ("vtable", ctypes.POINTER(_Vtable))]


class _Fns:
    def __init__(self, vt):
        self.sgemm = _SGEMM(vt.sgemm)
        self.dgemm = _DGEMM(vt.dgemm)
        self.sdot = _SDOT(vt.sdot)


def vtable_of(interface):
    """(zl_blas struct, typed function pointers) from the interface's capsule."""
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = _P
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    blas = _Blas.from_address(get_pointer(interface.capsule, b"zigllama.blas_vtable"))
    return blas, _Fns(blas.vtable.contents)


@pytest.mark.parametrize("backend", BACKENDS)
def test_capsule_through_ctypes(backend):
    interface = get_blas(backend)
    blas, fns = vtable_of(interface)
    assert blas.name.decode() == backend
    assert ctypes.addressof(blas) == interface.address
    rng = np.random.default_rng(0)
    m, n, k = 9, 21, 13
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32)     # used transposed
    c = np.full((m, n), np.nan, np.float32)
    status = fns.sgemm(blas.ctx, ROW_MAJOR, NO_TRANS, TRANS, m, n, k, 1.0, a.ctypes.data, k,
                       b.ctypes.data, k, 0.0, c.ctypes.data, n)
    assert status == 0
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-5, atol=1e-5)
    # Column-major float64 through the same table.
    af, bf = np.asfortranarray(a, np.float64), np.asfortranarray(b.T, np.float64)
    cf = np.zeros((m, n), np.float64, order="F")
    status = fns.dgemm(blas.ctx, COL_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 2.0, af.ctypes.data, m,
                       bf.ctypes.data, k, 0.0, cf.ctypes.data, m)
    assert status == 0
    np.testing.assert_allclose(cf, 2.0 * (af @ bf), rtol=1e-12, atol=1e-12)


def test_capsule_name_is_checked():
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = _P
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    with pytest.raises(ValueError):
        get_pointer(get_blas("generic").capsule, b"not.the.name")


EXTENSION = textwrap.dedent("""
    from cython.parallel cimport prange
    from zigllama.blas_integration cimport (
        BlasInterface, zl_blas, zl_blas_int, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_BLAS_OK)
    import zigllama

    def sgemm_nogil(str backend, const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] c):
        '''c = a @ b through the vtable, with the GIL released for the whole call.'''
        cdef zl_blas blas = (<BlasInterface>zigllama.get_blas(backend)).c
        cdef int status
        with nogil:
            status = blas.vtable.sgemm(blas.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_NO_TRANS,
                                       a.shape[0], b.shape[1], a.shape[1], 1.0, &a[0, 0], a.shape[1],
                                       &b[0, 0], b.shape[1], 0.0, &c[0, 0], c.shape[1])
        return status

    def sgemm_rows_prange(str backend, const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] c):
        '''One single-row product per prange iteration: calls from worker threads.'''
        cdef zl_blas blas = (<BlasInterface>zigllama.get_blas(backend)).c
        cdef Py_ssize_t i
        cdef int failures = 0
        for i in prange(a.shape[0], nogil=True):
            if blas.vtable.sgemm(blas.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_NO_TRANS, 1, b.shape[1],
                                 a.shape[1], 1.0, &a[i, 0], a.shape[1], &b[0, 0], b.shape[1], 0.0,
                                 &c[i, 0], c.shape[1]) != ZL_BLAS_OK:
                failures += 1
        return failures
""")

SETUP = textwrap.dedent("""
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    import zigllama

    setup(ext_modules=cythonize(
        [Extension("outside_blas", ["outside_blas.pyx"], include_dirs=[zigllama.get_include()])],
        compiler_directives={"language_level": 3}))
""")

CHECK = textwrap.dedent("""
    import numpy as np
    import outside_blas
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 29)).astype(np.float32)
    b = rng.standard_normal((29, 41)).astype(np.float32)
    for backend in ("scipy", "generic", "naive"):
        c = np.full((37, 41), np.nan, np.float32)
        assert outside_blas.sgemm_nogil(backend, a, b, c) == 0
        np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
        c[...] = np.nan
        assert outside_blas.sgemm_rows_prange(backend, a, b, c) == 0
        np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
    print("outside extension ok")
""")


def test_outside_cython_extension_calls_sgemm_without_the_gil(tmp_path):
    env = outside_extension.build(tmp_path, {"outside_blas.pyx": EXTENSION, "setup.py": SETUP, "check.py": CHECK})
    run = subprocess.run([sys.executable, "check.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "outside extension ok" in run.stdout
