# The public cimport name of zigllama._core.threading (see docs/cython-api.md):
#
#     from zigllama.threading cimport ...      or      from zigllama cimport threading
#
# Everything is declared in zigllama/_core/threading.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.threading at run time.
from zigllama._core.threading cimport *
