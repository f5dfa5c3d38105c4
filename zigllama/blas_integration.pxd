# The public cimport name of zigllama._core.blas_integration (see docs/cython-api.md):
#
#     from zigllama.blas_integration cimport ...      or      from zigllama cimport blas_integration
#
# Everything is declared in zigllama/_core/blas_integration.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.blas_integration at run time.
from zigllama._core.blas_integration cimport *
