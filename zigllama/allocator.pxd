# The public cimport name of zigllama._core.allocator (see docs/cython-api.md):
#
#     from zigllama.allocator cimport ...      or      from zigllama cimport allocator
#
# Everything is declared in zigllama/_core/allocator.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.allocator at run time.
from zigllama._core.allocator cimport *
