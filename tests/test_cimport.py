"""An outside Cython extension, built against the installed package, cimports the
tensor and allocator APIs and adds two arena tensors without the GIL."""
import textwrap

import numpy as np
import pytest

import outside_extension
import zigllama

PYX = textwrap.dedent(
    """
    from zigllama.allocator cimport Allocator
    from zigllama.tensor cimport (
        Tensor, tensor_add, tensor_empty, tensor_fill, tensor_matmul, ZL_F32, ZL_F64,
    )


    def add_in_arena(Allocator arena, Py_ssize_t rows, Py_ssize_t cols):
        cdef ptrdiff_t shape[2]
        cdef Tensor a, b, out
        cdef float *pa
        cdef float *pb
        cdef Py_ssize_t i
        shape[0] = rows
        shape[1] = cols
        a = tensor_empty(2, shape, ZL_F32, arena)
        b = tensor_empty(2, shape, ZL_F32, arena)
        out = tensor_empty(2, shape, ZL_F32, arena)
        pa = <float *>a.view.data
        pb = <float *>b.view.data
        with nogil:
            for i in range(rows * cols):
                pa[i] = <float>i
                pb[i] = <float>(2 * i) + 0.5
            tensor_add(&a.view, &b.view, &out.view)
        return a, b, out


    def add_mismatched(Allocator arena):
        cdef ptrdiff_t s1[1]
        cdef ptrdiff_t s2[1]
        s1[0] = 3
        s2[0] = 4
        a = tensor_empty(1, s1, ZL_F64, arena)
        b = tensor_empty(1, s2, ZL_F64, arena)
        with nogil:
            tensor_fill(&a.view, 1.0)
            tensor_add(&a.view, &b.view, &a.view)   # raises IncompatibleShapes


    def matmul_nogil(Tensor a, Tensor b, Tensor out):
        with nogil:
            tensor_matmul(&a.view, &b.view, &out.view)
        return out
    """
)

SETUP = textwrap.dedent(
    """
    import numpy
    import zigllama
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    setup(
        name="zl_outside",
        ext_modules=cythonize(
            [Extension("zl_outside", ["zl_outside.pyx"],
                       include_dirs=[zigllama.get_include(), numpy.get_include()])],
            compiler_directives={"language_level": 3},
        ),
    )
    """
)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    build = tmp_path_factory.mktemp("outside")
    outside_extension.build(build, {"zl_outside.pyx": PYX, "setup.py": SETUP})
    return outside_extension.load(build, "zl_outside")


def test_outside_extension_adds_arena_tensors_without_the_gil(outside):
    arena = zigllama.ArenaAllocator()
    a, b, out = outside.add_in_arena(arena, 5, 7)
    assert a.allocator is arena and out.allocator is arena
    expected = np.arange(35, dtype=np.float32).reshape(5, 7) * 3 + 0.5
    np.testing.assert_array_equal(np.asarray(out), expected)
    np.testing.assert_array_equal(np.asarray(a) + np.asarray(b), np.asarray(out))
    arena.reset()
    with pytest.raises(zigllama.UseAfterReset):
        out.get(0, 0)


def test_outside_extension_gets_errors_from_nogil_kernels(outside):
    with pytest.raises(zigllama.IncompatibleShapes, match=r"\(3,\).*\(4,\)"):
        outside.add_mismatched(zigllama.ArenaAllocator())


def test_outside_extension_matmul(outside):
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = np.arange(12, dtype=np.float64).reshape(3, 4)
    out = zigllama.Tensor.zeros((2, 4), "float64")
    outside.matmul_nogil(zigllama.Tensor.from_numpy(a), zigllama.Tensor.from_numpy(b), out)
    np.testing.assert_allclose(np.asarray(out), a @ b)


def test_the_core_paths_still_cimport(tmp_path):
    # The public .pxd files re-export zigllama/_core/*.pxd; code written against the
    # _core paths (before the public names existed) still builds and runs.
    core_pyx = PYX.replace("from zigllama.allocator cimport", "from zigllama._core.allocator cimport") \
                  .replace("from zigllama.tensor cimport", "from zigllama._core.tensor cimport")
    assert "zigllama._core.tensor" in core_pyx and "zigllama._core.allocator" in core_pyx
    outside_extension.build(tmp_path, {"zl_outside_core.pyx": core_pyx,
                                       "setup.py": SETUP.replace("zl_outside", "zl_outside_core")})
    core = outside_extension.load(tmp_path, "zl_outside_core")
    a, b, out = core.add_in_arena(zigllama.ArenaAllocator(), 2, 3)
    assert type(out) is zigllama.Tensor
    np.testing.assert_array_equal(np.asarray(out), np.asarray(a) + np.asarray(b))
