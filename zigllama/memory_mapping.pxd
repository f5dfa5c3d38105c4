# The public cimport name of zigllama._core.memory_mapping (see docs/cython-api.md):
#
#     from zigllama.memory_mapping cimport ...      or      from zigllama cimport memory_mapping
#
# Everything is declared in zigllama/_core/memory_mapping.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.memory_mapping at run time.
from zigllama._core.memory_mapping cimport *
