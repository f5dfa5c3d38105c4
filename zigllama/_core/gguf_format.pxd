# The GGUF reader for Cython callers (Zig twin: gguf_format.zig).
#
# A parsed file is a `zl_gguf_ctx`: positions into the mapped bytes, validated once
# at open. From Cython, find a tensor's bytes by name without the GIL:
#
#     from zigllama.gguf_format cimport GGUFReader, zl_gguf_tensor_ref, gguf_find_tensor, check_gguf_status
#     cdef zl_gguf_tensor_ref ref
#     reader.pin()                       # raises if closed; close() now refuses
#     try:
#         with nogil:
#             status = gguf_find_tensor(reader, b"blk.0.attn_q.weight", 19, &ref)
#             ... read ref.data[0:ref.nbytes] (after check_gguf_status(status, ...)) ...
#     finally:
#         reader.unpin()

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

cdef extern from "zigllama/zl_gguf.h" nogil:
    ctypedef struct zl_gguf_kv:
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

    ctypedef struct zl_gguf_tensor:
        uint64_t info_pos
        uint64_t name_pos
        uint64_t name_len
        uint32_t n_dims
        uint32_t type
        uint64_t ne[4]
        uint64_t offset
        uint64_t nbytes

    ctypedef struct zl_gguf_tensor_ref:
        const uint8_t *data
        uint64_t nbytes
        uint32_t type
        uint32_t n_dims
        uint64_t ne[4]
        uint64_t index
        int swapped

    enum:
        ZL_GGUF_OK
        ZL_GGUF_E_CHANGED
        ZL_GGUF_E_NOTFOUND

    ctypedef struct zl_gguf_ctx:
        const uint8_t *data
        uint64_t size
        int swapped
        uint32_t version
        uint64_t n_tensors
        uint64_t n_kv
        zl_gguf_kv *kv
        zl_gguf_tensor *tensors
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
    cdef zl_gguf_ctx ctx
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
    # Pin the open reader for nogil reads of its bytes: check_open(), then counted
    # until unpin(); close() raises GGUFError while any pin remains (as MemoryMap's
    # close refuses while pinned). With the GIL; one unpin per successful pin.
    cdef int pin(self) except -1
    cdef void unpin(self) noexcept
    cdef _build_tables(self)
    cdef object _dtype(self, uint32_t value_type)
    cdef object _scalar(self, uint32_t value_type, uint64_t pos)
    cdef object _numpy_view(self, TensorInfo info)
    cdef object _string_array(self, const uint64_t *positions, object owner, uint64_t n, str what)


# The tensor named name[0:name_len] of a pinned reader, without the GIL: ZL_GGUF_OK
# with *out filled (its bytes, ggml type, ne, byte size), ZL_GGUF_E_NOTFOUND, or
# ZL_GGUF_E_CHANGED if the file shrank under the map (read under the SIGBUS guard).
cdef int gguf_find_tensor(GGUFReader reader, const char *name, size_t name_len,
                          zl_gguf_tensor_ref *out) noexcept nogil

# The module's one checked wrapper: 0 for ZL_GGUF_OK, else takes the GIL and raises
# the GGUFError of that status (GGUFMissingKey for ZL_GGUF_E_NOTFOUND) naming the
# reader's file and `what` (the tensor's name, a field).
cdef int check_gguf_status(int status, GGUFReader reader, const char *what) except -1 nogil
