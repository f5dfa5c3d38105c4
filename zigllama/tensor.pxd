# The public cimport name of zigllama._core.tensor (see docs/cython-api.md):
#
#     from zigllama.tensor cimport ...      or      from zigllama cimport tensor
#
# Everything is declared in zigllama/_core/tensor.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.tensor at run time.
from zigllama._core.tensor cimport *
