/* FailingAllocator: passes requests to a child until `fail_index` allocations
 * have succeeded, then refuses every one (Zig's std.testing.FailingAllocator).
 * Sweeping fail_index over 0..n tests every errdefer path of a constructor that
 * allocates n times. Counters are plain: not thread-safe, like Zig's. */
#include "zl_allocators.h"

static void *failing_alloc(void *ctx, size_t size, size_t alignment) {
    zl_failing *f = (zl_failing *)ctx;
    void *ptr;
    if (zl_refuse_if_closed(&f->stats)) return NULL;
    if (f->allocations >= f->fail_index) {
        f->has_induced_failure = 1;
        zl_stats_on_fail(&f->stats);
        return NULL;
    }
    ptr = zl_alloc(f->child, size, alignment);
    if (ptr == NULL) {
        zl_stats_on_fail(&f->stats);
        return NULL;
    }
    f->allocations++;
    f->allocated_bytes += size;
    zl_stats_on_alloc(&f->stats, size);
    return ptr;
}

static int failing_resize(void *ctx, void *ptr, size_t old_size, size_t new_size, size_t alignment) {
    zl_failing *f = (zl_failing *)ctx;
    if (f->resizes >= f->resize_fail_index) {
        f->has_induced_failure = 1;
        return 0;
    }
    if (!zl_resize(f->child, ptr, old_size, new_size, alignment)) return 0;
    f->resizes++;
    if (new_size > old_size) f->allocated_bytes += new_size - old_size;
    else f->freed_bytes += old_size - new_size;
    zl_stats_on_resize(&f->stats, old_size, new_size);
    return 1;
}

void zl_failing_count_free(zl_failing *f, size_t size) {
    f->deallocations++;
    f->freed_bytes += size;
    zl_stats_on_free(&f->stats, size);
}

static void failing_free(void *ctx, void *ptr, size_t size, size_t alignment) {
    zl_failing *f = (zl_failing *)ctx;
    if (ptr == NULL) return;
    zl_free(f->child, ptr, size, alignment);
    zl_failing_count_free(f, size);
}

const zl_allocator_vtable zl_failing_vtable = {failing_alloc, failing_resize, failing_free};
