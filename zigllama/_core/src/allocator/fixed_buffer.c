/* FixedBufferAllocator: a bump pointer over memory the caller provides (Zig's
 * std.heap.FixedBufferAllocator). Nothing is ever taken from the system; when
 * the buffer is full, alloc returns NULL. Not thread-safe, like Zig's. */
#include "zl_allocators.h"

static void *fixed_alloc(void *ctx, size_t size, size_t alignment) {
    zl_fixed *f = (zl_fixed *)ctx;
    void *ptr;
    if (zl_refuse_if_closed(&f->stats)) return NULL;
    ptr = zl_bump_alloc(&f->bump, size, alignment);
    if (ptr == NULL) {
        zl_stats_on_fail(&f->stats);
        return NULL;
    }
    zl_stats_on_alloc(&f->stats, ZL_NONZERO(size));
    return ptr;
}

static int fixed_resize(void *ctx, void *ptr, size_t old_size, size_t new_size, size_t alignment) {
    zl_fixed *f = (zl_fixed *)ctx;
    (void)alignment;
    if (!zl_bump_resize(&f->bump, ptr, old_size, new_size)) return 0;
    zl_stats_on_resize(&f->stats, ZL_NONZERO(old_size), ZL_NONZERO(new_size));
    return 1;
}

static void fixed_free(void *ctx, void *ptr, size_t size, size_t alignment) {
    zl_fixed *f = (zl_fixed *)ctx;
    (void)alignment;
    if (ptr == NULL) return;
    zl_bump_free(&f->bump, ptr, size);
    zl_stats_on_free(&f->stats, ZL_NONZERO(size));
}

void zl_fixed_reset(zl_fixed *f) {
    f->bump.start = f->buffer;
    f->bump.cursor = f->buffer;
    f->bump.end = f->buffer + f->size;
    zl_stats_reset_live(&f->stats);
}

const zl_allocator_vtable zl_fixed_vtable = {fixed_alloc, fixed_resize, fixed_free};
