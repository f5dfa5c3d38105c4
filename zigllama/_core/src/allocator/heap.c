/* HeapAllocator: the C library's aligned allocator (Zig's std.heap.c_allocator). */
#define _GNU_SOURCE
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include "zl_allocators.h"

static void *heap_alloc(void *ctx, size_t size, size_t alignment) {
    zl_heap *h = (zl_heap *)ctx;
    void *ptr = NULL;
    size_t n = ZL_NONZERO(size);
    if (zl_refuse_if_closed(&h->stats)) return NULL;
    /* posix_memalign wants a multiple of sizeof(void *). */
    if (alignment < sizeof(void *)) alignment = sizeof(void *);
    if (posix_memalign(&ptr, alignment, n) != 0) {
        zl_stats_on_fail(&h->stats);
        return NULL;
    }
    zl_system_on_alloc(&h->stats, ptr, n);
    return ptr;
}

static int heap_resize(void *ctx, void *ptr, size_t old_size, size_t new_size, size_t alignment) {
    zl_heap *h = (zl_heap *)ctx;
    size_t old_n = ZL_NONZERO(old_size), new_n = ZL_NONZERO(new_size);
    (void)alignment;
    if (new_n > old_n) {
#ifdef __GLIBC__
        if (malloc_usable_size(ptr) < new_n) return 0;
#else
        return 0;
#endif
    }
    /* The block stays where it is; only the accounting changes. */
    zl_system_on_resize(&h->stats, ptr, old_n, new_n);
    return 1;
}

static void heap_free(void *ctx, void *ptr, size_t size, size_t alignment) {
    zl_heap *h = (zl_heap *)ctx;
    (void)alignment;
    if (ptr == NULL) return;
    zl_system_on_free(&h->stats, ptr, ZL_NONZERO(size));
    free(ptr);
}

const zl_allocator_vtable zl_heap_vtable = {heap_alloc, heap_resize, heap_free};
