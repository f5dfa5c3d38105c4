# The GGUF reader for Cython callers (Zig twin: gguf_format.zig).
#
# A parsed file is a `gguf_ctx`: positions into the mapped bytes, validated once at
# open. Cython code may read `reader.ctx.tensors[i]` (ne, type, offset, nbytes) and
# `reader.ctx.data + reader.ctx.data_offset + offset` directly while the reader is
# open (check_open() first).

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

cdef extern from "zigllama/zl_gguf.h" nogil:
    ctypedef struct gguf_kv:
        uint64_t entry_pos
        uint64_t key_pos
        uint64_t key_len
        uint64_t value_pos
        uint32_t type
        uint32_t elem_type
        uint64_t count
        uint64_t data_pos
        uint64_t index
        uint64_t end_pos

    ctypedef struct gguf_tensor:
        uint64_t info_pos
        uint64_t name_pos
        uint64_t name_len
        uint32_t n_dims
        uint32_t type
        uint64_t ne[4]
        uint64_t offset
        uint64_t nbytes

    ctypedef struct gguf_ctx:
        const uint8_t *data
        uint64_t size
        int swapped
        uint32_t version
        uint64_t n_tensors
        uint64_t n_kv
        gguf_kv *kv
        gguf_tensor *tensors
        uint64_t *str_index
        uint64_t str_index_len
        uint32_t alignment
        int64_t alignment_kv
        uint64_t data_offset
        uint64_t data_size
        int err
        uint64_t err_pos
        char err_field[160]
        char err_msg[224]


cdef class TensorInfo:
    cdef readonly str name
    cdef readonly object ggml_type
    cdef readonly tuple ne
    cdef readonly tuple shape
    cdef readonly object offset
    cdef readonly object data_offset
    cdef readonly object nbytes
    cdef readonly object n_elements
    cdef readonly object info_offset


cdef class GGUFReader:
    cdef gguf_ctx ctx
    cdef Py_buffer view          # held while open: the bytes cannot go away under us
    cdef bint has_view
    cdef int busy                # >0 while nogil code reads the map: close() must wait
    cdef object base             # what the bytes come from (a MemoryMap, an mmap, bytes)
    cdef object owned_map        # a map this reader opened itself, closed with it
    cdef readonly object path
    cdef readonly object metadata
    cdef readonly tuple tensors
    cdef dict tensor_index

    # 0 if open, else raises GGUFError.
    cdef int check_open(self) except -1
    cdef _build_tables(self)
    cdef object _dtype(self, uint32_t value_type)
    cdef object _scalar(self, uint32_t value_type, uint64_t pos)
    cdef object _numpy_view(self, TensorInfo info)
    cdef object _string_array(self, const uint64_t *positions, object owner, uint64_t n, str what)
