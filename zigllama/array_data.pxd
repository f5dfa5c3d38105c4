# The public cimport name of zigllama._core.array_data (see docs/cython-api.md):
#
#     from zigllama.array_data cimport array_data
#
# Everything is declared in zigllama/_core/array_data.pxd, an implementation detail that
# may move; array_data is inline (no module behind it at run time).
from zigllama._core.array_data cimport *
