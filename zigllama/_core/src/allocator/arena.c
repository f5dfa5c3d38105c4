/* ArenaAllocator: a bump pointer over chunks taken from a child allocator (Zig's
 * std.heap.ArenaAllocator). Individual frees only give back the last allocation;
 * everything goes at once on reset. Not thread-safe, like Zig's. */
#include <string.h>

#include "zl_allocators.h"

/* The header sits at the start of each chunk; allocations follow it. */
#define CHUNK_HEADER zl_align_up(sizeof(zl_arena_chunk), ZL_DEFAULT_ALIGNMENT)

static int arena_add_chunk(zl_arena *a, size_t len) {
    zl_arena_chunk *chunk = (zl_arena_chunk *)zl_alloc(a->child, len, ZL_DEFAULT_ALIGNMENT);
    if (chunk == NULL) return 0;
    chunk->next = a->chunks;
    chunk->size = len;
    a->chunks = chunk;
    a->capacity += len;
    a->bump.start = (unsigned char *)chunk;
    a->bump.cursor = (unsigned char *)chunk + CHUNK_HEADER;
    a->bump.end = (unsigned char *)chunk + len;
    return 1;
}

static int arena_new_chunk(zl_arena *a, size_t size, size_t alignment) {
    size_t need, want, len;
    /* Room for the header, the worst-case padding and the request. */
    if (size > SIZE_MAX - CHUNK_HEADER - alignment) return 0;
    need = CHUNK_HEADER + alignment + ZL_NONZERO(size);
    /* Grow geometrically (by half of what is held) so n allocations cost O(log n) chunks. */
    want = a->capacity ? a->capacity / 2 : a->min_chunk;
    if (want < a->min_chunk) want = a->min_chunk;
    len = need > want ? need : want;
    if (arena_add_chunk(a, len)) return 1;
    /* The geometric size was too much: try what is needed. */
    return len > need && arena_add_chunk(a, need);
}

static void *arena_alloc(void *ctx, size_t size, size_t alignment) {
    zl_arena *a = (zl_arena *)ctx;
    unsigned char *before = a->bump.cursor;
    void *ptr;
    if (zl_refuse_if_closed(&a->stats)) return NULL;
    ptr = zl_bump_alloc(&a->bump, size, alignment);
    if (ptr == NULL) {
        if (!arena_new_chunk(a, size, alignment)) {
            zl_stats_on_fail(&a->stats);
            return NULL;
        }
        before = a->bump.cursor;
        ptr = zl_bump_alloc(&a->bump, size, alignment);
    }
    a->used += (size_t)(a->bump.cursor - before);
    zl_stats_on_alloc(&a->stats, ZL_NONZERO(size));
    return ptr;
}

static int arena_resize(void *ctx, void *ptr, size_t old_size, size_t new_size, size_t alignment) {
    zl_arena *a = (zl_arena *)ctx;
    unsigned char *before = a->bump.cursor;
    (void)alignment;
    if (!zl_bump_resize(&a->bump, ptr, old_size, new_size)) return 0;
    a->used += (size_t)(a->bump.cursor - before); /* wraps correctly when it shrank */
    zl_stats_on_resize(&a->stats, ZL_NONZERO(old_size), ZL_NONZERO(new_size));
    return 1;
}

static void arena_free(void *ctx, void *ptr, size_t size, size_t alignment) {
    zl_arena *a = (zl_arena *)ctx;
    unsigned char *before = a->bump.cursor;
    (void)alignment;
    if (ptr == NULL) return;
    if (zl_bump_free(&a->bump, ptr, size)) a->used -= (size_t)(before - a->bump.cursor);
    zl_stats_on_free(&a->stats, ZL_NONZERO(size));
}

void zl_arena_free_all(zl_arena *a) {
    zl_arena_chunk *chunk = a->chunks;
    while (chunk != NULL) {
        zl_arena_chunk *next = chunk->next;
        zl_free(a->child, chunk, chunk->size, ZL_DEFAULT_ALIGNMENT);
        chunk = next;
    }
    a->chunks = NULL;
    a->capacity = 0;
    a->used = 0;
    memset(&a->bump, 0, sizeof(a->bump));
    zl_stats_reset_live(&a->stats);
}

size_t zl_arena_chunk_count(const zl_arena *a) {
    size_t n = 0;
    const zl_arena_chunk *chunk;
    for (chunk = a->chunks; chunk != NULL; chunk = chunk->next) n++;
    return n;
}

int zl_arena_reset(zl_arena *a, size_t keep) {
    size_t total = a->capacity < keep ? a->capacity : keep;
    if (total <= CHUNK_HEADER) {
        zl_arena_free_all(a);
        return 1;
    }
    if (a->chunks->next == NULL && a->chunks->size == total) {
        /* One chunk, all of it kept: just rewind it. */
        a->bump.cursor = a->bump.start + CHUNK_HEADER;
        a->used = 0;
        zl_stats_reset_live(&a->stats);
        return 1;
    }
    /* Replace the chunks by one of the kept size, so the next round of the same
     * work fits without growing (what Zig's retain_capacity does). Free first,
     * so the peak is not twice the capacity. */
    zl_arena_free_all(a);
    return arena_add_chunk(a, total);
}

const zl_allocator_vtable zl_arena_vtable = {arena_alloc, arena_resize, arena_free};
