/* GGUF parsing over a byte range: header, metadata, tensor infos, validated.
 *
 * The parser never copies the file and never trusts a count: every declared length
 * is checked against the bytes left before anything is read or allocated, every
 * size is computed with overflow checks, and the first violation stops the parse
 * with an error kind, the field it concerns and its byte offset. Values are not
 * decoded here: the tables hold positions into the file, decoded on demand.
 * All functions are reentrant and need no Python (called without the GIL).
 */
#ifndef ZIGLLAMA_ZL_GGUF_H
#define ZIGLLAMA_ZL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZL_GGUF_MAGIC_BYTES "GGUF"
#define ZL_GGUF_DEFAULT_ALIGNMENT 32u
#define ZL_GGUF_MAX_ALIGNMENT (1u << 20)   /* 1 MiB: beyond any real file's alignment */
#define ZL_GGUF_MAX_DIMS 4                 /* GGML_MAX_DIMS */
#define ZL_GGUF_MAX_NAME 64                /* GGML_MAX_NAME, including ggml's NUL */
#define ZL_GGUF_MAX_KEY 65535              /* the specification's key length bound */
#define ZL_GGUF_MAX_ARRAY_DEPTH 8          /* arrays of arrays: nesting levels allowed */

typedef enum {
    ZL_GGUF_TYPE_UINT8 = 0, ZL_GGUF_TYPE_INT8 = 1, ZL_GGUF_TYPE_UINT16 = 2, ZL_GGUF_TYPE_INT16 = 3,
    ZL_GGUF_TYPE_UINT32 = 4, ZL_GGUF_TYPE_INT32 = 5, ZL_GGUF_TYPE_FLOAT32 = 6, ZL_GGUF_TYPE_BOOL = 7,
    ZL_GGUF_TYPE_STRING = 8, ZL_GGUF_TYPE_ARRAY = 9, ZL_GGUF_TYPE_UINT64 = 10, ZL_GGUF_TYPE_INT64 = 11,
    ZL_GGUF_TYPE_FLOAT64 = 12, ZL_GGUF_TYPE_COUNT = 13
} zl_gguf_value_type;

/* Error kinds; each becomes one GGUFError subclass at the Python boundary. */
typedef enum {
    ZL_GGUF_OK = 0,
    ZL_GGUF_E_MAGIC,        /* not a GGUF file */
    ZL_GGUF_E_VERSION,      /* version 1 or unknown */
    ZL_GGUF_E_TRUNCATED,    /* a declared length runs past the end of the file */
    ZL_GGUF_E_TYPE,         /* unknown value type or ggml type */
    ZL_GGUF_E_DUPLICATE,    /* a key or tensor name seen twice */
    ZL_GGUF_E_LIMIT,        /* a bound exceeded, or an overflowing size */
    ZL_GGUF_E_VALUE,        /* an invalid value: empty key, bool of 7, bad alignment, bad UTF-8 */
    ZL_GGUF_E_LAYOUT,       /* tensor data misaligned, overlapping, outside the file, partial blocks */
    ZL_GGUF_E_NOMEM,
    ZL_GGUF_E_CHANGED,      /* a length validated at open no longer fits: the bytes changed since */
    ZL_GGUF_E_NOTFOUND      /* zl_gguf_find_tensor: no tensor of that name */
} zl_gguf_error_kind;

typedef struct {
    uint64_t entry_pos;  /* where the key/value pair starts */
    uint64_t key_pos;    /* the key's bytes (not NUL-terminated) */
    uint64_t key_len;
    uint64_t value_pos;  /* the value (for strings: their length field; arrays: their type field) */
    uint32_t type;       /* zl_gguf_value_type */
    uint32_t elem_type;  /* arrays: element type */
    uint64_t count;      /* strings: length in bytes; arrays: element count */
    uint64_t data_pos;   /* strings: their bytes; arrays: the first element */
    uint64_t index;      /* string arrays: first slot of their entries in str_index */
    uint64_t end_pos;    /* just past the value */
} zl_gguf_kv;

typedef struct {
    uint64_t info_pos;   /* where the tensor info starts */
    uint64_t name_pos;
    uint64_t name_len;
    uint32_t n_dims;
    uint32_t type;       /* ggml type id */
    uint64_t ne[ZL_GGUF_MAX_DIMS];  /* file order: ne[0] varies fastest; 1 past n_dims */
    uint64_t offset;     /* relative to the data section */
    uint64_t nbytes;
} zl_gguf_tensor;

typedef struct {
    const uint8_t *data;
    uint64_t size;
    int swapped;          /* 1: a big-endian file read on this little-endian machine */
    uint32_t version;
    uint64_t n_tensors;
    uint64_t n_kv;
    zl_gguf_kv *kv;          /* n_kv entries once parsed */
    zl_gguf_tensor *tensors; /* n_tensors entries once parsed */
    uint64_t *str_index;  /* positions of each string's length field, for string arrays */
    uint64_t str_index_len;
    uint32_t alignment;
    int64_t alignment_kv; /* index of general.alignment, or -1 */
    uint64_t data_offset; /* start of the data section */
    uint64_t data_size;   /* end of the last tensor, relative to the data section */
    /* the first error */
    int err;
    uint64_t err_pos;
    char err_field[160];
    char err_msg[224];
} zl_gguf_ctx;

/* Parse and validate data[0:size]. 0 on success; -1 with ctx->err set. Call
 * zl_gguf_free afterwards in both cases. */
int zl_gguf_parse(zl_gguf_ctx *ctx, const uint8_t *data, uint64_t size);
void zl_gguf_free(zl_gguf_ctx *ctx);

/* Element size of a fixed-size value type, 0 for strings and arrays or unknown ids. */
uint64_t zl_gguf_type_size(uint32_t type);

/* Read integers from the file in its byte order. */
uint64_t zl_gguf_read_u64(const zl_gguf_ctx *ctx, uint64_t pos);
uint32_t zl_gguf_read_u32(const zl_gguf_ctx *ctx, uint64_t pos);

/* A validated array at array_pos (its element-type field): its element type, count
 * and first element. For arrays of strings or arrays, fills positions[0:count] with
 * each element's position (positions may be NULL to only read the header).
 * Returns 0, or -1 if the array does not lie within the file. */
int zl_gguf_array_header(const zl_gguf_ctx *ctx, uint64_t array_pos, uint32_t *elem_type,
                      uint64_t *count, uint64_t *data_pos);
int zl_gguf_array_index(const zl_gguf_ctx *ctx, uint64_t array_pos, uint64_t *positions);

/* 1 if s[0:n] is well-formed UTF-8, else 0 (and *bad_at = offset of the first bad byte). */
int zl_gguf_utf8_valid(const uint8_t *s, uint64_t n, uint64_t *bad_at);

/* Check every string of the metadata (keys were checked at parse) for UTF-8. 0 or -1
 * with the error set. Separate from zl_gguf_parse: it reads every string byte. */
int zl_gguf_check_strings(zl_gguf_ctx *ctx);

/* A tensor found by name: where its bytes are and what they hold. */
typedef struct {
    const uint8_t *data;   /* its first byte (ctx->data + ctx->data_offset + offset) */
    uint64_t nbytes;
    uint32_t type;         /* ggml type id */
    uint32_t n_dims;
    uint64_t ne[ZL_GGUF_MAX_DIMS]; /* file order: ne[0] varies fastest; 1 past n_dims */
    uint64_t index;        /* its position in ctx->tensors */
    int swapped;           /* 1: the bytes are big-endian (as the file is) */
} zl_gguf_tensor_ref;

/* The tensor named name[0:name_len] of a parsed file into *out: ZL_GGUF_OK, or
 * ZL_GGUF_E_NOTFOUND (out untouched). Reads the names in the file's bytes: a file
 * that may shrink is searched through zl_gguf_find_tensor_guarded. */
int zl_gguf_find_tensor(const zl_gguf_ctx *ctx, const char *name, uint64_t name_len,
                        zl_gguf_tensor_ref *out);

typedef struct {
    const zl_gguf_ctx *ctx;
    const char *name;
    uint64_t name_len;
    zl_gguf_tensor_ref *out;
} zl_gguf_find_args;
int zl_gguf_find_tensor_guarded(void *args); /* zl_gguf_find_tensor(args...) */

/* The same calls shaped for the SIGBUS guard (zl_fault_guarded_call): the file may
 * shrink under a reader, and these read its map. */
typedef struct {
    zl_gguf_ctx *ctx;
    const uint8_t *data;
    uint64_t size;
} zl_gguf_parse_args;
int zl_gguf_parse_guarded(void *args);        /* zl_gguf_parse(args->ctx, args->data, args->size) */
int zl_gguf_check_strings_guarded(void *ctx); /* zl_gguf_check_strings(ctx) */

/* The string whose length field is at pos (a position recorded at open): its length
 * read again into len and checked against the file, then one byte of every page of
 * the string read, so that decoding it afterwards touches only pages just read.
 * 0, or 1 if the length no longer fits the file (the bytes changed since open). */
typedef struct {
    const zl_gguf_ctx *ctx;
    uint64_t pos;
    uint64_t len;
} zl_gguf_string_probe;
int zl_gguf_probe_string(void *probe);

/* zl_gguf_probe_string for positions[0:n] at once (one guarded call for a run of a
 * string array): 0, or 1 with bad = the index of the first length that no longer fits. */
typedef struct {
    const zl_gguf_ctx *ctx;
    const uint64_t *positions;
    uint64_t n;
    uint64_t bad;
} zl_gguf_strings_probe;
int zl_gguf_probe_strings(void *probe);

#ifdef __cplusplus
}
#endif

#endif /* ZIGLLAMA_ZL_GGUF_H */
