# The public cimport name of zigllama._core.qmatmul (see docs/cython-api.md):
#
#     from zigllama.qmatmul cimport ...      or      from zigllama cimport qmatmul
#
# Everything is declared in zigllama/_core/qmatmul.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.qmatmul at run time.
from zigllama._core.qmatmul cimport *
