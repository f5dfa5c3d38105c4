# The public cimport name of zigllama._core.gguf_format (see docs/cython-api.md):
#
#     from zigllama.gguf_format cimport ...      or      from zigllama cimport gguf_format
#
# Everything is declared in zigllama/_core/gguf_format.pxd, an implementation detail that
# may move; the cdef classes and functions resolve to zigllama._core.gguf_format at run time.
from zigllama._core.gguf_format cimport *
