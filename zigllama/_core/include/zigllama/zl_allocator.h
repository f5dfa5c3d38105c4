/* The allocator interface: Zig's std.mem.Allocator as a C struct.
 *
 * An allocator is a context pointer plus a table of functions, so code that
 * allocates (a Tensor, a kernel's scratch space) never knows which allocator it
 * has. All three functions are callable without the GIL and never raise:
 * alloc returns NULL when it cannot (or, for the failing allocator, will not)
 * provide memory: NULL on failure is the allocator contract (the one exception to
 * the status-code rule of zigllama/errors.py, kept because every C allocator
 * speaks it). The module's checked wrapper, check_alloc in allocator.pxd, turns
 * NULL into OutOfMemory naming the size at the Python boundary.
 */
#ifndef ZIGLLAMA_ZL_ALLOCATOR_H
#define ZIGLLAMA_ZL_ALLOCATOR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zl_allocator_vtable {
    /* size bytes aligned to alignment (a power of two), or NULL. */
    void *(*alloc)(void *ctx, size_t size, size_t alignment);
    /* Grow or shrink in place; 1 if done, 0 if the caller must alloc+copy+free. */
    int (*resize)(void *ctx, void *ptr, size_t old_size, size_t new_size, size_t alignment);
    /* Give back memory from alloc, with the size and alignment it was asked with. */
    void (*free)(void *ctx, void *ptr, size_t size, size_t alignment);
} zl_allocator_vtable;

typedef struct zl_allocator {
    void *ctx;
    const zl_allocator_vtable *vtable;
} zl_allocator;

static inline void *zl_alloc(zl_allocator a, size_t size, size_t alignment) {
    return a.vtable->alloc(a.ctx, size, alignment);
}

static inline int zl_resize(zl_allocator a, void *ptr, size_t old_size, size_t new_size, size_t alignment) {
    return a.vtable->resize(a.ctx, ptr, old_size, new_size, alignment);
}

static inline void zl_free(zl_allocator a, void *ptr, size_t size, size_t alignment) {
    a.vtable->free(a.ctx, ptr, size, alignment);
}

/* Tensors and kernel buffers are 64-byte aligned: a cache line, and an AVX-512 vector. */
#define ZL_DEFAULT_ALIGNMENT 64

#ifdef __cplusplus
}
#endif

#endif
