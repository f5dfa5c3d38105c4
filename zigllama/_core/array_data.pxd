# The data pointer of a numpy array: the one way zigllama's modules take it (a C
# call, no Python attribute lookup). Other buffer-protocol objects go through
# PyObject_GetBuffer (which holds the export), typed memoryviews through &view[0].
#
#     from zigllama._core.array_data cimport array_data
#     cdef float *p = <float *>array_data(arr)     # arr: a numpy array (else TypeError)

cimport numpy as cnp


cdef inline char *array_data(cnp.ndarray arr) noexcept:
    return <char *>cnp.PyArray_DATA(arr)
