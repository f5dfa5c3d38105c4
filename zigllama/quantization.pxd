# The public cimport name of zigllama._core.quantization (see docs/cython-api.md):
#
#     from zigllama.quantization cimport ...      or      from zigllama cimport quantization
#
# Everything is declared in zigllama/_core/quantization.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.quantization at run time.
from zigllama._core.quantization cimport *
