/* Page-level helpers for MemoryMap (memory_mapping.pyx). nogil, no Python. */
#ifndef ZL_MMAP_H
#define ZL_MMAP_H

#include <stddef.h>
#include <sys/mman.h>

/* Linux extensions, 0 (or -1 for advice) where the platform lacks them. */
#ifdef MAP_POPULATE
#define ZL_MAP_POPULATE MAP_POPULATE
#else
#define ZL_MAP_POPULATE 0
#endif
#ifdef MAP_HUGETLB
#define ZL_MAP_HUGETLB MAP_HUGETLB
#else
#define ZL_MAP_HUGETLB 0
#endif
#ifdef MADV_HUGEPAGE
#define ZL_MADV_HUGEPAGE MADV_HUGEPAGE
#else
#define ZL_MADV_HUGEPAGE (-1)
#endif

/* Read one byte of every page of p[0:n] so each page is faulted in. The reads are
   volatile: a plain read whose result is unused may be removed by the compiler
   (the Zig original's `_ = self.ptr[offset]` has that problem). Returns a value
   derived from the bytes, so the loop cannot be elided either. */
unsigned char zl_touch_pages(const unsigned char *p, size_t n, size_t page);

/* Count the resident pages of the page-aligned p[0:n] with mincore(), a bounded
   vector at a time (no allocation proportional to the map). Returns 0 and sets
   *resident_bytes (the last partial page counts only its bytes), or an errno. */
int zl_resident_bytes(unsigned char *p, size_t n, size_t page, size_t *resident_bytes);

#endif
