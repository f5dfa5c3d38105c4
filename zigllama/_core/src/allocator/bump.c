/* Bump allocation over one region: the core of the arena and the fixed buffer. */
#include "zl_allocators.h"

void *zl_bump_alloc(zl_bump *b, size_t size, size_t alignment) {
    uintptr_t cursor = (uintptr_t)b->cursor;
    uintptr_t aligned;
    if (b->start == NULL) return NULL;
    aligned = (cursor + alignment - 1) & ~(uintptr_t)(alignment - 1);
    if (aligned < cursor || aligned > (uintptr_t)b->end) return NULL;
    if (ZL_NONZERO(size) > (size_t)((uintptr_t)b->end - aligned)) return NULL;
    b->cursor = (unsigned char *)aligned + ZL_NONZERO(size);
    return (void *)aligned;
}

int zl_bump_resize(zl_bump *b, void *ptr, size_t old_size, size_t new_size) {
    unsigned char *p = (unsigned char *)ptr;
    size_t old_n = ZL_NONZERO(old_size), new_n = ZL_NONZERO(new_size);
    if (p + old_n != b->cursor) {
        /* Not the last allocation: it can only shrink, keeping its bytes. */
        return new_n <= old_n;
    }
    if (new_n > (size_t)(b->end - p)) return 0;
    b->cursor = p + new_n;
    return 1;
}

int zl_bump_free(zl_bump *b, void *ptr, size_t size) {
    unsigned char *p = (unsigned char *)ptr;
    if (p + ZL_NONZERO(size) == b->cursor) {
        b->cursor = p;
        return 1;
    }
    return 0;
}
