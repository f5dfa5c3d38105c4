# The public cimport name of zigllama._core.platform (see docs/cython-api.md):
#
#     from zigllama.platform cimport ...      or      from zigllama cimport platform
#
# Everything is declared in zigllama/_core/platform.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.platform at run time.
from zigllama._core.platform cimport *
