/* PageAllocator: whole pages straight from mmap (Zig's std.heap.page_allocator),
 * optionally mlock'ed so the kernel never pages them out (weights that must stay
 * resident). Alignments above the page size are met by over-mapping and trimming. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>
#include "zl_allocators.h"

size_t zl_page_size(void) {
    long n = sysconf(_SC_PAGESIZE);
    return n > 0 ? (size_t)n : 4096;
}

size_t zl_page_mapped_size(const zl_page *p, size_t size) {
    return zl_align_up(ZL_NONZERO(size), p->page_size);
}

static void page_fail(zl_page *p, int op, int err) {
    p->last_failed_op = op;
    p->last_errno = err;
    zl_stats_on_fail(&p->stats);
}

static void *page_alloc(void *ctx, size_t size, size_t alignment) {
    zl_page *p = (zl_page *)ctx;
    size_t len = zl_page_mapped_size(p, size);
    size_t extra = alignment > p->page_size ? alignment - p->page_size : 0;
    unsigned char *map, *ptr;
    if (zl_refuse_if_closed(&p->stats)) return NULL;
    if (len == 0 || len > SIZE_MAX - extra) {
        page_fail(p, 1, ENOMEM);
        return NULL;
    }
    map = mmap(NULL, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        page_fail(p, 1, errno);
        return NULL;
    }
    ptr = map;
    if (extra) {
        /* Keep the aligned window, give the pages around it back. */
        uintptr_t aligned = ((uintptr_t)map + alignment - 1) & ~(uintptr_t)(alignment - 1);
        ptr = (unsigned char *)aligned;
        if (ptr > map) munmap(map, (size_t)(ptr - map));
        if (map + len + extra > ptr + len) munmap(ptr + len, (size_t)(map + len + extra - (ptr + len)));
    }
    if (p->lock && mlock(ptr, len) != 0) {
        int err = errno;
        munmap(ptr, len);
        page_fail(p, 2, err);
        return NULL;
    }
    zl_system_on_alloc(&p->stats, ptr, len);
    return ptr;
}

static int page_resize(void *ctx, void *ptr, size_t old_size, size_t new_size, size_t alignment) {
    zl_page *p = (zl_page *)ctx;
    size_t old_len = zl_page_mapped_size(p, old_size);
    size_t new_len = zl_page_mapped_size(p, new_size);
    (void)alignment;
    if (new_len == 0) return 0;
    if (new_len > old_len) {
#ifdef __linux__
        /* Without MREMAP_MAYMOVE the mapping grows only where it is. */
        if (mremap(ptr, old_len, new_len, 0) == MAP_FAILED) return 0;
        if (p->lock && mlock((unsigned char *)ptr + old_len, new_len - old_len) != 0) {
            mremap(ptr, new_len, old_len, 0);
            return 0;
        }
#else
        return 0;
#endif
    } else if (new_len < old_len) {
        munmap((unsigned char *)ptr + new_len, old_len - new_len);
    }
    zl_system_on_resize(&p->stats, ptr, old_len, new_len);
    return 1;
}

static void page_free(void *ctx, void *ptr, size_t size, size_t alignment) {
    zl_page *p = (zl_page *)ctx;
    size_t len = zl_page_mapped_size(p, size);
    (void)alignment;
    if (ptr == NULL) return;
    zl_system_on_free(&p->stats, ptr, len);
    munmap(ptr, len); /* also unlocks */
}

const zl_allocator_vtable zl_page_vtable = {page_alloc, page_resize, page_free};
