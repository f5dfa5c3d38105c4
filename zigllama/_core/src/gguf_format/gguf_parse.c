/* GGUF parsing over a byte range (see zigllama/zl_gguf.h).
 *
 * Layout (every integer in the file's byte order):
 *   "GGUF" | version u32 | n_tensors u64 | n_kv u64
 *   n_kv x   { key: u64 len + bytes | value type u32 | value }
 *   n_tensors x { name: u64 len + bytes | n_dims u32 | ne u64[n_dims] | ggml type u32 | offset u64 }
 *   padding to the alignment | tensor data (each tensor at data_offset + offset)
 * A value is a scalar, a string (u64 len + bytes) or an array (element type u32,
 * count u64, elements).
 */
#include "zigllama/zl_gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zigllama/zl_ggml_types.h"

/* The smallest encodings, used to bound declared counts by the bytes left. */
#define MIN_KV_BYTES 14u     /* key length 8 + key 1 + type 4 + value 1 */
#define MIN_TENSOR_BYTES 24u /* name length 8 + n_dims 4 + type 4 + offset 8 */
#define MIN_ARRAY_BYTES 12u  /* element type 4 + count 8 */
#define MIN_STRING_BYTES 8u  /* length 8 */

static uint32_t bswap32(uint32_t x) { return __builtin_bswap32(x); }
static uint64_t bswap64(uint64_t x) { return __builtin_bswap64(x); }

uint32_t zl_gguf_read_u32(const zl_gguf_ctx *ctx, uint64_t pos) {
    uint32_t v;
    memcpy(&v, ctx->data + pos, 4);
    return ctx->swapped ? bswap32(v) : v;
}

uint64_t zl_gguf_read_u64(const zl_gguf_ctx *ctx, uint64_t pos) {
    uint64_t v;
    memcpy(&v, ctx->data + pos, 8);
    return ctx->swapped ? bswap64(v) : v;
}

uint64_t zl_gguf_type_size(uint32_t type) {
    switch (type) {
    case ZL_GGUF_TYPE_UINT8: case ZL_GGUF_TYPE_INT8: case ZL_GGUF_TYPE_BOOL: return 1;
    case ZL_GGUF_TYPE_UINT16: case ZL_GGUF_TYPE_INT16: return 2;
    case ZL_GGUF_TYPE_UINT32: case ZL_GGUF_TYPE_INT32: case ZL_GGUF_TYPE_FLOAT32: return 4;
    case ZL_GGUF_TYPE_UINT64: case ZL_GGUF_TYPE_INT64: case ZL_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static const char *const TYPE_NAMES[ZL_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

/* ---- errors ----------------------------------------------------------------- */

/* What is being parsed, e.g. "kv[3] 'general.alignment'": the prefix of error fields. */
typedef struct {
    char where[96];
} place;

static void place_set(place *p, const char *kind, uint64_t i, const zl_gguf_ctx *ctx, uint64_t name_pos,
                      uint64_t name_len) {
    int n = snprintf(p->where, sizeof p->where, "%s[%llu]", kind, (unsigned long long)i);
    if (name_len == 0 || n < 0) return;
    /* The name as printable ASCII, cut short: it is untrusted bytes. */
    char shown[52];
    uint64_t k, m = name_len < 40 ? name_len : 40;
    for (k = 0; k < m; k++) {
        uint8_t c = ctx->data[name_pos + k];
        shown[k] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    shown[k] = 0;
    snprintf(p->where + n, sizeof p->where - (size_t)n, " '%s%s'", shown, name_len > m ? "..." : "");
}

static int fail(zl_gguf_ctx *ctx, int kind, uint64_t pos, const place *p, const char *field, const char *fmt, ...) {
    if (ctx->err) return -1;
    ctx->err = kind;
    ctx->err_pos = pos;
    snprintf(ctx->err_field, sizeof ctx->err_field, "%s%s", p ? p->where : "", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err_msg, sizeof ctx->err_msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* Are n more bytes at pos inside the file? (Overflow-safe: pos <= size always.) */
static int need(zl_gguf_ctx *ctx, uint64_t pos, uint64_t n, const place *p, const char *field) {
    if (n <= ctx->size - pos) return 0;
    return fail(ctx, ZL_GGUF_E_TRUNCATED, pos, p, field, "needs %llu bytes, only %llu left in the file",
                (unsigned long long)n, (unsigned long long)(ctx->size - pos));
}

/* ---- growable tables: grown with what was parsed, never by a declared count ---- */

/* Make room for `want` items, growing by doubling but never past `most` (what the
 * file was shown to hold), so a table tracks what was parsed. */
static int grow(zl_gguf_ctx *ctx, void **buf, uint64_t *cap, uint64_t want, uint64_t most, size_t item) {
    if (want <= *cap) return 0;
    uint64_t c = *cap ? 2 * *cap : 16;
    if (c > most) c = most;
    if (c < want) c = want;
    if (c > SIZE_MAX / item) return fail(ctx, ZL_GGUF_E_NOMEM, 0, NULL, "", "table too large");
    void *nb = realloc(*buf, (size_t)(c * item));
    if (!nb) return fail(ctx, ZL_GGUF_E_NOMEM, 0, NULL, "", "out of memory for %llu entries", (unsigned long long)c);
    *buf = nb;
    *cap = c;
    return 0;
}

/* ---- UTF-8 ------------------------------------------------------------------- */

int zl_gguf_utf8_valid(const uint8_t *s, uint64_t n, uint64_t *bad_at) {
    uint64_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
        }
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        uint64_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else goto bad;
        if (n - i < len) goto bad;
        for (uint64_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) goto bad;
        i += len;
        continue;
    bad:
        if (bad_at) *bad_at = i;
        return 0;
    }
    return 1;
}

/* ---- values ------------------------------------------------------------------ */

/* A string at *pos: u64 length + bytes. */
static int parse_string(zl_gguf_ctx *ctx, uint64_t *pos, const place *p, const char *field, uint64_t *len_out) {
    if (need(ctx, *pos, 8, p, field)) return -1;
    uint64_t len = zl_gguf_read_u64(ctx, *pos);
    if (len > ctx->size - *pos - 8)
        return fail(ctx, ZL_GGUF_E_TRUNCATED, *pos, p, field, "declared length %llu exceeds the %llu bytes left in the file",
                    (unsigned long long)len, (unsigned long long)(ctx->size - *pos - 8));
    *pos += 8 + len;
    if (len_out) *len_out = len;
    return 0;
}

static int check_bools(zl_gguf_ctx *ctx, uint64_t pos, uint64_t n, const place *p, const char *field) {
    const uint8_t *b = ctx->data + pos;
    for (uint64_t i = 0; i < n; i++)
        if (b[i] > 1)
            return fail(ctx, ZL_GGUF_E_VALUE, pos + i, p, field, "a bool must be 0 or 1, found %u", b[i]);
    return 0;
}

/* An array at *pos (its element-type field). depth: nesting level of this array.
 * record: append each string's position to ctx->str_index (top-level string arrays). */
static int parse_array(zl_gguf_ctx *ctx, uint64_t *pos, int depth, const place *p, int record, uint64_t *cap,
                       uint32_t *elem_out, uint64_t *count_out, uint64_t *data_out) {
    uint64_t start = *pos;
    if (depth > ZL_GGUF_MAX_ARRAY_DEPTH)
        return fail(ctx, ZL_GGUF_E_LIMIT, start, p, ".value", "arrays nested deeper than %d levels",
                    ZL_GGUF_MAX_ARRAY_DEPTH);
    if (need(ctx, start, MIN_ARRAY_BYTES, p, ".array_header")) return -1;
    uint32_t et = zl_gguf_read_u32(ctx, start);
    uint64_t count = zl_gguf_read_u64(ctx, start + 4);
    uint64_t data = start + 12, left = ctx->size - data;
    if (et >= ZL_GGUF_TYPE_COUNT)
        return fail(ctx, ZL_GGUF_E_TYPE, start, p, ".array_type", "unknown value type %u", et);
    uint64_t esz = zl_gguf_type_size(et);
    uint64_t min_elem = esz ? esz : (et == ZL_GGUF_TYPE_STRING ? MIN_STRING_BYTES : MIN_ARRAY_BYTES);
    if (count > left / min_elem)
        return fail(ctx, ZL_GGUF_E_TRUNCATED, start + 4, p, ".array_count",
                    "%llu elements of %s need at least %llu bytes per element, only %llu bytes left in the file",
                    (unsigned long long)count, TYPE_NAMES[et], (unsigned long long)min_elem,
                    (unsigned long long)left);
    if (elem_out) *elem_out = et;
    if (count_out) *count_out = count;
    if (data_out) *data_out = data;
    uint64_t q = data;
    if (esz) {
        if (et == ZL_GGUF_TYPE_BOOL && check_bools(ctx, data, count, p, ".value")) return -1;
        q += count * esz;
    } else if (et == ZL_GGUF_TYPE_STRING) {
        uint64_t base = ctx->str_index_len;
        for (uint64_t i = 0; i < count; i++) {
            /* inline parse_string: this loop runs once per vocabulary entry */
            if (ctx->size - q < 8) return need(ctx, q, 8, p, ".value[string]");
            uint64_t len = zl_gguf_read_u64(ctx, q);
            if (len > ctx->size - q - 8)
                return fail(ctx, ZL_GGUF_E_TRUNCATED, q, p, ".value[string]",
                            "element %llu: declared length %llu exceeds the %llu bytes left in the file",
                            (unsigned long long)i, (unsigned long long)len, (unsigned long long)(ctx->size - q - 8));
            if (record) {
                if (base + i >= *cap &&
                    grow(ctx, (void **)&ctx->str_index, cap, base + i + 1, base + count, sizeof(uint64_t)))
                    return -1;
                ctx->str_index[base + i] = q;
            }
            q += 8 + len;
        }
        if (record) ctx->str_index_len += count;
    } else { /* arrays of arrays */
        for (uint64_t i = 0; i < count; i++)
            if (parse_array(ctx, &q, depth + 1, p, 0, NULL, NULL, NULL, NULL)) return -1;
    }
    *pos = q;
    return 0;
}

/* A key or tensor name at *pos: length-prefixed UTF-8 of at most max_len bytes. Sets
 * the place to "kind[i] 'name'" for the errors that follow. */
static int parse_name(zl_gguf_ctx *ctx, uint64_t *pos, const char *kind, uint64_t i, place *p, const char *field,
                      uint64_t max_len, uint64_t *name_pos, uint64_t *name_len) {
    uint64_t start = *pos, len, bad;
    place_set(p, kind, i, ctx, 0, 0);
    if (parse_string(ctx, pos, p, field, &len)) return -1;
    *name_pos = start + 8;
    *name_len = len;
    place_set(p, kind, i, ctx, start + 8, len);
    if (len > max_len)
        return fail(ctx, ZL_GGUF_E_LIMIT, start, p, field, "%llu bytes long; at most %llu allowed",
                    (unsigned long long)len, (unsigned long long)max_len);
    if (!zl_gguf_utf8_valid(ctx->data + start + 8, len, &bad))
        return fail(ctx, ZL_GGUF_E_VALUE, start + 8 + bad, p, field, "not valid UTF-8");
    /* ggml keeps keys and names as C strings: "a\0b" would be found as "a" */
    const uint8_t *nul = len ? memchr(ctx->data + start + 8, 0, (size_t)len) : NULL;
    if (nul) return fail(ctx, ZL_GGUF_E_VALUE, (uint64_t)(nul - ctx->data), p, field, "contains a NUL byte");
    return 0;
}

static int parse_kv(zl_gguf_ctx *ctx, uint64_t *pos, uint64_t i, uint64_t *idx_cap) {
    place p;
    zl_gguf_kv *kv = &ctx->kv[i];
    memset(kv, 0, sizeof *kv);
    kv->entry_pos = *pos;
    uint64_t q = *pos;
    if (parse_name(ctx, &q, "kv", i, &p, ".key", ZL_GGUF_MAX_KEY, &kv->key_pos, &kv->key_len)) return -1;
    if (kv->key_len == 0) return fail(ctx, ZL_GGUF_E_VALUE, *pos, &p, ".key", "a key must not be empty");
    if (need(ctx, q, 4, &p, ".value_type")) return -1;
    uint32_t type = zl_gguf_read_u32(ctx, q);
    if (type >= ZL_GGUF_TYPE_COUNT) return fail(ctx, ZL_GGUF_E_TYPE, q, &p, ".value_type", "unknown value type %u", type);
    kv->type = type;
    q += 4;
    kv->value_pos = q;
    uint64_t esz = zl_gguf_type_size(type);
    if (esz) {
        if (need(ctx, q, esz, &p, ".value")) return -1;
        if (type == ZL_GGUF_TYPE_BOOL && check_bools(ctx, q, 1, &p, ".value")) return -1;
        kv->data_pos = q;
        kv->count = 1;
        q += esz;
    } else if (type == ZL_GGUF_TYPE_STRING) {
        if (parse_string(ctx, &q, &p, ".value", &kv->count)) return -1;
        kv->data_pos = kv->value_pos + 8;
    } else {
        kv->index = ctx->str_index_len;
        if (parse_array(ctx, &q, 1, &p, 1, idx_cap, &kv->elem_type, &kv->count, &kv->data_pos)) return -1;
    }
    kv->end_pos = q;
    *pos = q;
    return 0;
}

/* ---- duplicates: sort the names, compare neighbours -----------------------------
 * Sorting, not hashing: a crafted file cannot make it quadratic. */

typedef struct {
    const uint8_t *ptr;
    uint64_t len, idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    int c = x->len ? memcmp(x->ptr, y->ptr, (size_t)x->len) : 0;
    if (c) return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx; /* equal names in file order */
}

/* 0 if the n spans are distinct byte strings; else 1, with the first repeated name's
 * index in *second and its earlier occurrence in *first. Sorts spans in place. */
static int find_duplicate(span *spans, uint64_t n, uint64_t *first, uint64_t *second) {
    int found = 0;
    if (n < 2) return 0;
    qsort(spans, (size_t)n, sizeof *spans, cmp_span);
    for (uint64_t k = 1; k < n; k++) {
        const span *x = &spans[k - 1], *y = &spans[k];
        if (x->len == y->len && (x->len == 0 || memcmp(x->ptr, y->ptr, (size_t)x->len) == 0) &&
            (!found || y->idx < *second)) {
            *first = x->idx;
            *second = y->idx;
            found = 1;
        }
    }
    return found;
}

static int check_unique(zl_gguf_ctx *ctx, span *spans, uint64_t n, const char *kind) {
    uint64_t a = 0, b = 0;
    if (!find_duplicate(spans, n, &a, &b)) return 0;
    int is_kv = strcmp(kind, "kv") == 0;
    uint64_t name_pos = is_kv ? ctx->kv[b].key_pos : ctx->tensors[b].name_pos;
    uint64_t name_len = is_kv ? ctx->kv[b].key_len : ctx->tensors[b].name_len;
    uint64_t where = is_kv ? ctx->kv[b].entry_pos : ctx->tensors[b].info_pos;
    place p;
    place_set(&p, kind, b, ctx, name_pos, name_len);
    return fail(ctx, ZL_GGUF_E_DUPLICATE, where, &p, is_kv ? ".key" : ".name", "the same %s as %s[%llu]",
                is_kv ? "key" : "name", kind, (unsigned long long)a);
}

/* ---- tensor infos -------------------------------------------------------------- */

static int parse_tensor(zl_gguf_ctx *ctx, uint64_t *pos, uint64_t i) {
    place p;
    zl_gguf_tensor *t = &ctx->tensors[i];
    memset(t, 0, sizeof *t);
    t->info_pos = *pos;
    uint64_t q = *pos;
    /* ggml's names hold GGML_MAX_NAME bytes including the NUL */
    if (parse_name(ctx, &q, "tensor", i, &p, ".name", ZL_GGUF_MAX_NAME - 1, &t->name_pos, &t->name_len)) return -1;
    if (t->name_len == 0) return fail(ctx, ZL_GGUF_E_VALUE, *pos, &p, ".name", "a tensor name must not be empty");
    if (need(ctx, q, 4, &p, ".n_dims")) return -1;
    t->n_dims = zl_gguf_read_u32(ctx, q);
    if (t->n_dims > ZL_GGUF_MAX_DIMS)
        return fail(ctx, ZL_GGUF_E_LIMIT, q, &p, ".n_dims", "%u dimensions; at most %d allowed", t->n_dims,
                    ZL_GGUF_MAX_DIMS);
    q += 4;
    if (need(ctx, q, 8ull * t->n_dims + 12, &p, ".ne")) return -1;
    uint64_t elements = 1;
    int zero = 0;
    for (uint32_t d = 0; d < ZL_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims) {
            ne = zl_gguf_read_u64(ctx, q + 8ull * d);
            char f[8];
            snprintf(f, sizeof f, ".ne[%u]", d);
            /* ggml counts elements in int64 */
            if (ne > (uint64_t)INT64_MAX)
                return fail(ctx, ZL_GGUF_E_LIMIT, q + 8ull * d, &p, f, "dimension %llu exceeds 2^63-1",
                            (unsigned long long)ne);
            /* The product of the non-zero dimensions is checked even after a zero, and in
               8-byte elements: numpy (so tensor() and load()) refuses any shape whose
               non-zero dimensions times the item size pass 2^63-1, empty or not. A file
               holding a non-empty tensor that large cannot exist anyway. */
            if (ne == 0) zero = 1;
            else if (elements > (uint64_t)INT64_MAX / 8 / ne)
                return fail(ctx, ZL_GGUF_E_LIMIT, q + 8ull * d, &p, f,
                            "the element count overflows 2^63-1 bytes of 8-byte elements (dimension %llu)",
                            (unsigned long long)ne);
            else elements *= ne;
        }
        t->ne[d] = ne;
    }
    q += 8ull * t->n_dims;
    t->type = zl_gguf_read_u32(ctx, q);
    const zl_ggml_type_traits *tr = zl_ggml_type_get(t->type);
    if (!tr) return fail(ctx, ZL_GGUF_E_TYPE, q, &p, ".type", "unknown ggml type %u", t->type);
    if (t->ne[0] % tr->block_size)
        return fail(ctx, ZL_GGUF_E_LAYOUT, t->info_pos + 8 + t->name_len + 4, &p, ".ne[0]",
                    "%llu is not a multiple of %s's block size %u", (unsigned long long)t->ne[0], tr->name,
                    tr->block_size);
    q += 4;
    t->offset = zl_gguf_read_u64(ctx, q);
    if (t->offset % ctx->alignment)
        return fail(ctx, ZL_GGUF_E_LAYOUT, q, &p, ".offset", "offset %llu is not a multiple of the alignment %u",
                    (unsigned long long)t->offset, ctx->alignment);
    /* bytes = ne[0]/block * type_size * ne[1] * ne[2] * ne[3], bounded by the file */
    uint64_t nbytes = 0;
    if (!zero) {
        nbytes = t->ne[0] / tr->block_size * tr->type_size;
        for (uint32_t d = 1; d < ZL_GGUF_MAX_DIMS; d++) {
            if (nbytes > ctx->size / t->ne[d])
                return fail(ctx, ZL_GGUF_E_LAYOUT, t->info_pos, &p, ".ne",
                            "the tensor's data cannot fit in a file of %llu bytes", (unsigned long long)ctx->size);
            nbytes *= t->ne[d];
        }
        if (nbytes > ctx->size)
            return fail(ctx, ZL_GGUF_E_LAYOUT, t->info_pos, &p, ".ne",
                        "the tensor's %llu bytes cannot fit in a file of %llu bytes", (unsigned long long)nbytes,
                        (unsigned long long)ctx->size);
    }
    t->nbytes = nbytes;
    *pos = q + 8;
    return 0;
}

typedef struct {
    uint64_t start, end, i;
} extent;

/* Where a tensor info's offset field is: after name, n_dims, ne[] and type. */
static uint64_t offset_field_pos(const zl_gguf_tensor *t) {
    return t->info_pos + 8 + t->name_len + 4 + 8ull * t->n_dims + 4;
}

static int cmp_extent(const void *a, const void *b) {
    const extent *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Tensor data: inside the file, not overlapping, nothing but padding after it. */
static int check_layout(zl_gguf_ctx *ctx) {
    uint64_t n = ctx->n_tensors, end_max = 0;
    uint64_t room = ctx->data_offset <= ctx->size ? ctx->size - ctx->data_offset : 0;
    extent *ex = n ? malloc((size_t)n * sizeof *ex) : NULL;
    if (n && !ex) return fail(ctx, ZL_GGUF_E_NOMEM, 0, NULL, "", "out of memory checking the layout");
    uint64_t m = 0;
    for (uint64_t i = 0; i < n; i++) {
        zl_gguf_tensor *t = &ctx->tensors[i];
        if (t->offset > room || t->nbytes > room - t->offset) {
            place p;
            place_set(&p, "tensor", i, ctx, t->name_pos, t->name_len);
            uint64_t at = offset_field_pos(t);
            free(ex);
            return fail(ctx, ZL_GGUF_E_LAYOUT, at, &p, ".offset",
                        "%llu bytes at offset %llu of the data section run past the end of the file "
                        "(the section holds %llu bytes)",
                        (unsigned long long)t->nbytes, (unsigned long long)t->offset, (unsigned long long)room);
        }
        if (t->offset + t->nbytes > end_max) end_max = t->offset + t->nbytes;
        if (t->nbytes) ex[m++] = (extent){t->offset, t->offset + t->nbytes, i};
    }
    if (m > 1) qsort(ex, (size_t)m, sizeof *ex, cmp_extent); /* ex is NULL without tensors */
    for (uint64_t k = 1; k < m; k++) {
        if (ex[k].start < ex[k - 1].end) {
            zl_gguf_tensor *t = &ctx->tensors[ex[k].i];
            place p;
            place_set(&p, "tensor", ex[k].i, ctx, t->name_pos, t->name_len);
            uint64_t at = offset_field_pos(t);
            uint64_t other = ex[k - 1].i;
            free(ex);
            return fail(ctx, ZL_GGUF_E_LAYOUT, at, &p, ".offset", "its data overlaps tensor[%llu]'s",
                        (unsigned long long)other);
        }
    }
    free(ex);
    ctx->data_size = end_max;
    /* Only alignment padding may follow the last tensor: anything more means the
     * counts do not describe this file. */
    if (n && room - end_max >= ctx->alignment)
        return fail(ctx, ZL_GGUF_E_LAYOUT, ctx->data_offset + end_max, NULL, "data section",
                    "%llu bytes after the last tensor's data; at most alignment-1 = %u bytes of padding allowed",
                    (unsigned long long)(room - end_max), ctx->alignment - 1);
    if (!n && ctx->size > ctx->data_offset)
        return fail(ctx, ZL_GGUF_E_LAYOUT, ctx->data_offset, NULL, "data section",
                    "%llu bytes after the tensor infos of a file without tensors",
                    (unsigned long long)(ctx->size - ctx->data_offset));
    return 0;
}

/* ---- the whole file ------------------------------------------------------------ */

static int parse_alignment(zl_gguf_ctx *ctx) {
    for (uint64_t i = 0; i < ctx->n_kv; i++) {
        zl_gguf_kv *kv = &ctx->kv[i];
        if (kv->key_len != 17 || memcmp(ctx->data + kv->key_pos, "general.alignment", 17)) continue;
        place p;
        place_set(&p, "kv", i, ctx, kv->key_pos, kv->key_len);
        if (kv->type != ZL_GGUF_TYPE_UINT32)
            return fail(ctx, ZL_GGUF_E_VALUE, kv->value_pos - 4, &p, ".value_type",
                        "general.alignment must be a u32, found %s", TYPE_NAMES[kv->type]);
        uint32_t a = zl_gguf_read_u32(ctx, kv->data_pos);
        if (a == 0 || (a & (a - 1)))
            return fail(ctx, ZL_GGUF_E_VALUE, kv->data_pos, &p, ".value",
                        "the alignment must be a non-zero power of two, found %u", a);
        if (a > ZL_GGUF_MAX_ALIGNMENT)
            return fail(ctx, ZL_GGUF_E_LIMIT, kv->data_pos, &p, ".value", "alignment %u exceeds the bound %u", a,
                        ZL_GGUF_MAX_ALIGNMENT);
        ctx->alignment = a;
        ctx->alignment_kv = (int64_t)i;
    }
    return 0;
}

int zl_gguf_parse(zl_gguf_ctx *ctx, const uint8_t *data, uint64_t size) {
    memset(ctx, 0, sizeof *ctx);
    ctx->data = data;
    ctx->size = size;
    ctx->alignment = ZL_GGUF_DEFAULT_ALIGNMENT;
    ctx->alignment_kv = -1;
    place hdr = {"header"};

    if (size < 4 || memcmp(data, ZL_GGUF_MAGIC_BYTES, 4) != 0) {
        if (size < 4) return need(ctx, 0, 4, &hdr, ".magic");
        return fail(ctx, ZL_GGUF_E_MAGIC, 0, &hdr, ".magic", "not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
                    data[0], data[1], data[2], data[3]);
    }
    if (need(ctx, 4, 4, &hdr, ".version")) return -1;
    uint32_t v;
    memcpy(&v, data + 4, 4);
    /* The version's byte order tells the file's: a small number either way round. */
    if (v == 2 || v == 3) ctx->version = v;
    else if (bswap32(v) == 2 || bswap32(v) == 3) { ctx->version = bswap32(v); ctx->swapped = 1; }
    else if (v == 1 || bswap32(v) == 1)
        return fail(ctx, ZL_GGUF_E_VERSION, 4, &hdr, ".version",
                    "GGUF version 1 (32-bit counts, 2023) is not supported: convert the model again with a current llama.cpp");
    else
        return fail(ctx, ZL_GGUF_E_VERSION, 4, &hdr, ".version", "unknown GGUF version %u (this reader knows 2 and 3)",
                    v < bswap32(v) ? v : bswap32(v));
    if (need(ctx, 8, 16, &hdr, ".counts")) return -1;
    ctx->n_tensors = zl_gguf_read_u64(ctx, 8);
    ctx->n_kv = zl_gguf_read_u64(ctx, 16);
    uint64_t pos = 24, left = size - pos;
    if (ctx->n_kv > left / MIN_KV_BYTES)
        return fail(ctx, ZL_GGUF_E_TRUNCATED, 16, &hdr, ".kv_count",
                    "%llu key/value pairs need at least %llu bytes each, only %llu bytes left in the file",
                    (unsigned long long)ctx->n_kv, (unsigned long long)MIN_KV_BYTES, (unsigned long long)left);
    if (ctx->n_tensors > (left - ctx->n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return fail(ctx, ZL_GGUF_E_TRUNCATED, 8, &hdr, ".tensor_count",
                    "%llu tensor infos need at least %llu bytes each, only %llu bytes left in the file",
                    (unsigned long long)ctx->n_tensors, (unsigned long long)MIN_TENSOR_BYTES,
                    (unsigned long long)left);

    uint64_t kv_cap = 0, idx_cap = 0;
    for (uint64_t i = 0; i < ctx->n_kv; i++) {
        if (grow(ctx, (void **)&ctx->kv, &kv_cap, i + 1, ctx->n_kv, sizeof(zl_gguf_kv))) return -1;
        if (parse_kv(ctx, &pos, i, &idx_cap)) return -1;
    }
    if (parse_alignment(ctx)) return -1;

    uint64_t t_cap = 0;
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        if (grow(ctx, (void **)&ctx->tensors, &t_cap, i + 1, ctx->n_tensors, sizeof(zl_gguf_tensor))) return -1;
        if (parse_tensor(ctx, &pos, i)) return -1;
    }
    ctx->data_offset = pos + (ctx->alignment - pos % ctx->alignment) % ctx->alignment;

    /* Keys and tensor names unique. */
    uint64_t n_spans = ctx->n_kv > ctx->n_tensors ? ctx->n_kv : ctx->n_tensors;
    if (n_spans) {
        span *spans = malloc((size_t)n_spans * sizeof *spans);
        if (!spans) return fail(ctx, ZL_GGUF_E_NOMEM, 0, NULL, "", "out of memory checking names");
        for (uint64_t i = 0; i < ctx->n_kv; i++)
            spans[i] = (span){ctx->data + ctx->kv[i].key_pos, ctx->kv[i].key_len, i};
        int r = check_unique(ctx, spans, ctx->n_kv, "kv");
        for (uint64_t i = 0; r == 0 && i < ctx->n_tensors; i++)
            spans[i] = (span){ctx->data + ctx->tensors[i].name_pos, ctx->tensors[i].name_len, i};
        if (r == 0) r = check_unique(ctx, spans, ctx->n_tensors, "tensor");
        free(spans);
        if (r) return -1;
    }
    return check_layout(ctx);
}

void zl_gguf_free(zl_gguf_ctx *ctx) {
    free(ctx->kv);
    free(ctx->tensors);
    free(ctx->str_index);
    ctx->kv = NULL;
    ctx->tensors = NULL;
    ctx->str_index = NULL;
}

/* ---- reading validated arrays (nested ones are indexed when first read) -------- */

int zl_gguf_array_header(const zl_gguf_ctx *ctx, uint64_t array_pos, uint32_t *elem_type, uint64_t *count,
                      uint64_t *data_pos) {
    if (array_pos > ctx->size || ctx->size - array_pos < MIN_ARRAY_BYTES) return -1;
    *elem_type = zl_gguf_read_u32(ctx, array_pos);
    *count = zl_gguf_read_u64(ctx, array_pos + 4);
    *data_pos = array_pos + 12;
    return *elem_type < ZL_GGUF_TYPE_COUNT ? 0 : -1;
}

/* Bytes of the array at pos, or 0 if it does not lie within the file. */
static uint64_t array_extent(const zl_gguf_ctx *ctx, uint64_t pos, int depth) {
    uint32_t et;
    uint64_t count, q;
    if (depth > ZL_GGUF_MAX_ARRAY_DEPTH || zl_gguf_array_header(ctx, pos, &et, &count, &q)) return 0;
    uint64_t esz = zl_gguf_type_size(et);
    if (esz) {
        if (count > (ctx->size - q) / esz) return 0;
        return 12 + count * esz;
    }
    for (uint64_t i = 0; i < count; i++) {
        if (et == ZL_GGUF_TYPE_STRING) {
            if (ctx->size - q < 8) return 0;
            uint64_t len = zl_gguf_read_u64(ctx, q);
            if (len > ctx->size - q - 8) return 0;
            q += 8 + len;
        } else {
            uint64_t n = array_extent(ctx, q, depth + 1);
            if (!n) return 0;
            q += n;
        }
    }
    return q - pos;
}

int zl_gguf_array_index(const zl_gguf_ctx *ctx, uint64_t array_pos, uint64_t *positions) {
    uint32_t et;
    uint64_t count, q;
    if (zl_gguf_array_header(ctx, array_pos, &et, &count, &q)) return -1;
    if (zl_gguf_type_size(et)) return 0;
    for (uint64_t i = 0; i < count; i++) {
        positions[i] = q;
        if (et == ZL_GGUF_TYPE_STRING) {
            if (ctx->size - q < 8) return -1;
            uint64_t len = zl_gguf_read_u64(ctx, q);
            if (len > ctx->size - q - 8) return -1;
            q += 8 + len;
        } else {
            uint64_t n = array_extent(ctx, q, 2);
            if (!n) return -1;
            q += n;
        }
    }
    return 0;
}

/* UTF-8 of every string in the array at pos (recursing into nested arrays). */
static int check_array_strings(zl_gguf_ctx *ctx, uint64_t pos, int depth, const place *p) {
    uint32_t et;
    uint64_t count, q;
    if (depth > ZL_GGUF_MAX_ARRAY_DEPTH || zl_gguf_array_header(ctx, pos, &et, &count, &q)) return 0;
    if (zl_gguf_type_size(et)) return 0;
    for (uint64_t i = 0; i < count; i++) {
        if (et == ZL_GGUF_TYPE_STRING) {
            if (ctx->size - q < 8)
                return fail(ctx, ZL_GGUF_E_CHANGED, q, p, ".value", "element %llu now starts past the end of the "
                            "file: the file changed after it was opened", (unsigned long long)i);
            uint64_t len = zl_gguf_read_u64(ctx, q), bad;
            if (len > ctx->size - q - 8) /* validated at open: the bytes were rewritten since */
                return fail(ctx, ZL_GGUF_E_CHANGED, q, p, ".value", "element %llu's length %llu now runs past the "
                            "end of the file: the file changed after it was opened", (unsigned long long)i,
                            (unsigned long long)len);
            if (!zl_gguf_utf8_valid(ctx->data + q + 8, len, &bad))
                return fail(ctx, ZL_GGUF_E_VALUE, q + 8 + bad, p, ".value", "element %llu is not valid UTF-8",
                            (unsigned long long)i);
            q += 8 + len;
        } else {
            if (check_array_strings(ctx, q, depth + 1, p)) return -1;
            uint64_t n = array_extent(ctx, q, depth + 1);
            if (!n)
                return fail(ctx, ZL_GGUF_E_CHANGED, q, p, ".value", "element %llu now runs past the end of the "
                            "file: the file changed after it was opened", (unsigned long long)i);
            q += n;
        }
    }
    return 0;
}

int zl_gguf_check_strings(zl_gguf_ctx *ctx) {
    for (uint64_t i = 0; i < ctx->n_kv; i++) {
        zl_gguf_kv *kv = &ctx->kv[i];
        place p;
        place_set(&p, "kv", i, ctx, kv->key_pos, kv->key_len);
        uint64_t bad;
        if (kv->type == ZL_GGUF_TYPE_STRING && zl_gguf_read_u64(ctx, kv->value_pos) != kv->count)
            return fail(ctx, ZL_GGUF_E_CHANGED, kv->value_pos, &p, ".value", "the string's length is no longer "
                        "the %llu bytes read at open: the file changed after it was opened",
                        (unsigned long long)kv->count);
        if (kv->type == ZL_GGUF_TYPE_STRING && !zl_gguf_utf8_valid(ctx->data + kv->data_pos, kv->count, &bad))
            return fail(ctx, ZL_GGUF_E_VALUE, kv->data_pos + bad, &p, ".value", "the string is not valid UTF-8");
        if (kv->type == ZL_GGUF_TYPE_ARRAY && check_array_strings(ctx, kv->value_pos, 1, &p)) return -1;
    }
    return 0;
}

/* ---- entry points for the SIGBUS guard -------------------------------------------- */

int zl_gguf_parse_guarded(void *args) {
    zl_gguf_parse_args *a = (zl_gguf_parse_args *)args;
    return zl_gguf_parse(a->ctx, a->data, a->size);
}

int zl_gguf_check_strings_guarded(void *ctx) { return zl_gguf_check_strings((zl_gguf_ctx *)ctx); }

int zl_gguf_probe_string(void *probe) {
    zl_gguf_string_probe *s = (zl_gguf_string_probe *)probe;
    const zl_gguf_ctx *ctx = s->ctx;
    s->len = zl_gguf_read_u64(ctx, s->pos);
    if (s->len > ctx->size - s->pos - 8) return 1;
    const volatile uint8_t *b = ctx->data + s->pos + 8;
    uint8_t sink = 0;
    for (uint64_t i = 0; i < s->len; i += 4096) sink ^= b[i];
    if (s->len) sink ^= b[s->len - 1];
    (void)sink;
    return 0;
}

int zl_gguf_probe_strings(void *probe) {
    zl_gguf_strings_probe *s = (zl_gguf_strings_probe *)probe;
    zl_gguf_string_probe one = {s->ctx, 0, 0};
    for (uint64_t i = 0; i < s->n; i++) {
        one.pos = s->positions[i];
        if (zl_gguf_probe_string(&one)) {
            s->bad = i;
            return 1;
        }
    }
    return 0;
}

int zl_gguf_find_tensor(const zl_gguf_ctx *ctx, const char *name, uint64_t name_len,
                        zl_gguf_tensor_ref *out) {
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        const zl_gguf_tensor *t = &ctx->tensors[i];
        if (t->name_len != name_len || memcmp(ctx->data + t->name_pos, name, name_len) != 0) continue;
        out->data = ctx->data + ctx->data_offset + t->offset;
        out->nbytes = t->nbytes;
        out->type = t->type;
        out->n_dims = t->n_dims;
        memcpy(out->ne, t->ne, sizeof out->ne);
        out->index = i;
        out->swapped = ctx->swapped;
        return ZL_GGUF_OK;
    }
    return ZL_GGUF_E_NOTFOUND;
}

int zl_gguf_find_tensor_guarded(void *args) {
    zl_gguf_find_args *a = (zl_gguf_find_args *)args;
    return zl_gguf_find_tensor(a->ctx, a->name, a->name_len, a->out);
}
