"""Build the example: `python setup.py build_ext --inplace` next to an installed zigllama.

The .pxd files come with the package (Cython finds `zigllama/*.pxd` on sys.path);
the C headers they name come from zigllama.get_include().
"""
import numpy
import zigllama
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    name="zl_consumer",
    ext_modules=cythonize(
        [Extension("zl_consumer", ["zl_consumer.pyx"],
                   include_dirs=[zigllama.get_include(), numpy.get_include()])],
        compiler_directives={"language_level": 3},
    ),
)
