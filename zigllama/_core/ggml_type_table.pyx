"""ggml's type table, as the C kernels see it (zigllama/zl_ggml_types.h): the one
source of the ids, names and block layouts; zigllama.ggml_types builds GGMLType
from it."""
from libc.stdint cimport uint32_t

cdef extern from "zigllama/zl_ggml_types.h" nogil:
    ctypedef struct zl_ggml_type_traits:
        const char *name
        uint32_t block_size
        uint32_t type_size
    const zl_ggml_type_traits *zl_ggml_type_get(uint32_t id)
    int ZL_GGML_TYPE_COUNT


def ggml_types():
    """Every type ggml uses, in id order: (id, name, elements per block, bytes per block)."""
    cdef const zl_ggml_type_traits *t
    cdef uint32_t i
    out = []
    for i in range(<uint32_t>ZL_GGML_TYPE_COUNT):
        t = zl_ggml_type_get(i)
        if t != NULL:
            out.append((i, t.name.decode("ascii"), t.block_size, t.type_size))
    return tuple(out)
