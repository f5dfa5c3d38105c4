/* Allocation statistics, safe to update from several threads at once, and the
 * tracemalloc traces of memory taken from the system. */
#include <Python.h>

#include "zl_allocators.h"

static void raise_high_water(zl_alloc_stats *s, size_t live) {
    size_t high = __atomic_load_n(&s->high_water_bytes, __ATOMIC_RELAXED);
    while (live > high &&
           !__atomic_compare_exchange_n(&s->high_water_bytes, &high, live, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

void zl_stats_on_alloc(zl_alloc_stats *s, size_t size) {
    size_t live = __atomic_add_fetch(&s->live_bytes, size, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->live_allocations, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->total_allocations, 1, __ATOMIC_RELAXED);
    raise_high_water(s, live);
}

void zl_stats_on_resize(zl_alloc_stats *s, size_t old_size, size_t new_size) {
    /* Unsigned wrap-around makes this a subtraction when the block shrank. */
    raise_high_water(s, __atomic_add_fetch(&s->live_bytes, new_size - old_size, __ATOMIC_RELAXED));
}

/* PyTraceMalloc_* take the GIL themselves, and only while tracemalloc is tracing. */
void zl_system_on_alloc(zl_alloc_stats *s, void *ptr, size_t size) {
    zl_stats_on_alloc(s, size);
    PyTraceMalloc_Track(ZL_TRACEMALLOC_DOMAIN, (uintptr_t)ptr, size);
}

void zl_system_on_resize(zl_alloc_stats *s, void *ptr, size_t old_size, size_t new_size) {
    zl_stats_on_resize(s, old_size, new_size);
    PyTraceMalloc_Track(ZL_TRACEMALLOC_DOMAIN, (uintptr_t)ptr, new_size);
}

void zl_system_on_free(zl_alloc_stats *s, void *ptr, size_t size) {
    PyTraceMalloc_Untrack(ZL_TRACEMALLOC_DOMAIN, (uintptr_t)ptr);
    zl_stats_on_free(s, size);
}

void zl_stats_on_free(zl_alloc_stats *s, size_t size) {
    __atomic_sub_fetch(&s->live_bytes, size, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&s->live_allocations, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->total_frees, 1, __ATOMIC_RELAXED);
}

void zl_stats_on_fail(zl_alloc_stats *s) {
    __atomic_add_fetch(&s->failed_allocations, 1, __ATOMIC_RELAXED);
}

void zl_stats_reset_live(zl_alloc_stats *s) {
    __atomic_store_n(&s->live_bytes, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->live_allocations, 0, __ATOMIC_RELAXED);
}

void zl_stats_snapshot(const zl_alloc_stats *s, zl_alloc_stats *out) {
    out->live_bytes = __atomic_load_n(&s->live_bytes, __ATOMIC_RELAXED);
    out->live_allocations = __atomic_load_n(&s->live_allocations, __ATOMIC_RELAXED);
    out->high_water_bytes = __atomic_load_n(&s->high_water_bytes, __ATOMIC_RELAXED);
    out->total_allocations = __atomic_load_n(&s->total_allocations, __ATOMIC_RELAXED);
    out->total_frees = __atomic_load_n(&s->total_frees, __ATOMIC_RELAXED);
    out->failed_allocations = __atomic_load_n(&s->failed_allocations, __ATOMIC_RELAXED);
}
