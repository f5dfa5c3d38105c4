#include "zl_mmap.h"

#include <errno.h>

unsigned char zl_touch_pages(const unsigned char *p, size_t n, size_t page)
{
    const volatile unsigned char *v = p;
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i += page)
        acc ^= v[i];
    if (n > 0)
        acc ^= v[n - 1];  /* the last page, when n is not a multiple of page */
    return acc;
}

#define ZL_MINCORE_CHUNK 4096  /* pages per mincore() call: 16 MiB of 4 KiB pages */

int zl_resident_bytes(unsigned char *p, size_t n, size_t page, size_t *resident_bytes)
{
    unsigned char vec[ZL_MINCORE_CHUNK];
    size_t total = 0;
    size_t pages = n / page + (n % page != 0);
    for (size_t first = 0; first < pages; first += ZL_MINCORE_CHUNK) {
        size_t count = pages - first < ZL_MINCORE_CHUNK ? pages - first : ZL_MINCORE_CHUNK;
        size_t start = first * page;
        size_t len = n - start < count * page ? n - start : count * page;
        if (mincore(p + start, len, vec) != 0)
            return errno;
        for (size_t i = 0; i < count; i++) {
            if (vec[i] & 1) {
                size_t at = start + i * page;
                total += n - at < page ? n - at : page;
            }
        }
    }
    *resident_bytes = total;
    return 0;
}
