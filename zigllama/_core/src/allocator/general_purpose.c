/* GeneralPurposeAllocator: every live allocation in a hash table (address ->
 * size, alignment), so it can report leaks and refuse double frees, frees of
 * memory it never gave out, and frees with the wrong size (the checks of Zig's
 * std.heap.GeneralPurposeAllocator). Memory itself comes from a child allocator.
 *
 * Thread-safe when its child is: the table is guarded by a mutex, and the child
 * is always called outside it. */
#include <stdlib.h>
#include <string.h>

#include "zl_allocators.h"

#define EMPTY ((uintptr_t)0)
#define DELETED ((uintptr_t)1)

static size_t slot_of(uintptr_t ptr, size_t capacity) {
    /* Fibonacci hashing; the low bits of aligned addresses are all zero. */
    return (size_t)(((uint64_t)ptr * 0x9E3779B97F4A7C15ull) >> 17) & (capacity - 1);
}

int zl_gpa_init(zl_gpa *g, zl_allocator child) {
    g->child = child;
    g->capacity = 64;
    g->table = (zl_gpa_entry *)calloc(g->capacity, sizeof(zl_gpa_entry));
    if (g->table == NULL) return 0;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g->table);
        g->table = NULL;
        return 0;
    }
    return 1;
}

void zl_gpa_destroy(zl_gpa *g) {
    if (g->table == NULL) return;
    pthread_mutex_destroy(&g->lock);
    free(g->table);
    g->table = NULL;
}

static zl_gpa_entry *find(zl_gpa *g, uintptr_t ptr) {
    size_t i = slot_of(ptr, g->capacity);
    for (;;) {
        zl_gpa_entry *e = &g->table[i];
        if (e->ptr == ptr) return e;
        if (e->ptr == EMPTY) return NULL;
        i = (i + 1) & (g->capacity - 1);
    }
}

static void place(zl_gpa_entry *table, size_t capacity, zl_gpa_entry entry) {
    size_t i = slot_of(entry.ptr, capacity);
    while (table[i].ptr > DELETED) i = (i + 1) & (capacity - 1);
    table[i] = entry;
}

/* Room for one more entry: rehash (dropping deleted slots) at 3/4 full. */
static int reserve_one(zl_gpa *g) {
    size_t live = g->stats.live_allocations, capacity = g->capacity, i;
    zl_gpa_entry *table;
    if ((g->used_slots + 1) * 4 <= g->capacity * 3) return 1;
    while ((live + 1) * 2 > capacity) capacity *= 2;
    table = (zl_gpa_entry *)calloc(capacity, sizeof(zl_gpa_entry));
    if (table == NULL) return 0;
    for (i = 0; i < g->capacity; i++)
        if (g->table[i].ptr > DELETED) place(table, capacity, g->table[i]);
    free(g->table);
    g->table = table;
    g->capacity = capacity;
    g->used_slots = live;
    return 1;
}

static void *gpa_alloc(void *ctx, size_t size, size_t alignment) {
    zl_gpa *g = (zl_gpa *)ctx;
    zl_gpa_entry entry;
    int ok;
    void *ptr;
    if (zl_refuse_if_closed(&g->stats)) return NULL;
    ptr = zl_alloc(g->child, size, alignment);
    if (ptr == NULL) {
        zl_stats_on_fail(&g->stats);
        return NULL;
    }
    entry.ptr = (uintptr_t)ptr;
    entry.size = size;
    entry.alignment = alignment;
    pthread_mutex_lock(&g->lock);
    ok = reserve_one(g);
    if (ok) {
        size_t i = slot_of(entry.ptr, g->capacity);
        while (g->table[i].ptr > DELETED) i = (i + 1) & (g->capacity - 1);
        if (g->table[i].ptr == EMPTY) g->used_slots++;
        g->table[i] = entry;
        zl_stats_on_alloc(&g->stats, size);
    }
    pthread_mutex_unlock(&g->lock);
    if (!ok) {
        zl_stats_on_fail(&g->stats);
        zl_free(g->child, ptr, size, alignment);
        return NULL;
    }
    return ptr;
}

zl_gpa_status zl_gpa_free_checked(zl_gpa *g, void *ptr, size_t size, size_t alignment,
                                  zl_gpa_entry *recorded) {
    zl_gpa_status status = ZL_GPA_OK;
    zl_gpa_entry *e;
    size_t i;
    pthread_mutex_lock(&g->lock);
    e = find(g, (uintptr_t)ptr);
    if (e == NULL) {
        status = ZL_GPA_INVALID_FREE;
        for (i = 0; i < ZL_GPA_RECENT; i++)
            if (g->recent[i] == (uintptr_t)ptr) status = ZL_GPA_DOUBLE_FREE;
    } else if (e->size != size) {
        status = ZL_GPA_SIZE_MISMATCH;
    } else if (e->alignment != alignment) {
        status = ZL_GPA_ALIGNMENT_MISMATCH;
    }
    if (status != ZL_GPA_OK) {
        if (e != NULL && recorded != NULL) *recorded = *e;
        pthread_mutex_unlock(&g->lock);
        return status;
    }
    e->ptr = DELETED;
    g->recent[g->recent_next] = (uintptr_t)ptr;
    g->recent_next = (g->recent_next + 1) % ZL_GPA_RECENT;
    zl_stats_on_free(&g->stats, size);
    pthread_mutex_unlock(&g->lock);
    zl_free(g->child, ptr, size, alignment);
    return ZL_GPA_OK;
}

static int gpa_resize(void *ctx, void *ptr, size_t old_size, size_t new_size, size_t alignment) {
    zl_gpa *g = (zl_gpa *)ctx;
    zl_gpa_entry *e;
    int known;
    pthread_mutex_lock(&g->lock);
    e = find(g, (uintptr_t)ptr);
    known = e != NULL && e->size == old_size && e->alignment == alignment;
    pthread_mutex_unlock(&g->lock);
    /* Misuse is refused here and reported when the memory is freed. */
    if (!known || !zl_resize(g->child, ptr, old_size, new_size, alignment)) return 0;
    pthread_mutex_lock(&g->lock);
    e = find(g, (uintptr_t)ptr);
    if (e != NULL) e->size = new_size;
    zl_stats_on_resize(&g->stats, old_size, new_size);
    pthread_mutex_unlock(&g->lock);
    return 1;
}

static void gpa_free(void *ctx, void *ptr, size_t size, size_t alignment) {
    zl_gpa *g = (zl_gpa *)ctx;
    if (ptr == NULL) return;
    /* nogil callers cannot raise: count the misuse for close() to report. */
    if (zl_gpa_free_checked(g, ptr, size, alignment, NULL) != ZL_GPA_OK)
        __atomic_add_fetch(&g->bad_frees, 1, __ATOMIC_RELAXED);
}

size_t zl_gpa_live(zl_gpa *g, zl_gpa_entry *out, size_t max) {
    size_t i, n = 0;
    pthread_mutex_lock(&g->lock);
    for (i = 0; i < g->capacity; i++) {
        if (g->table[i].ptr > DELETED) {
            if (n < max) out[n] = g->table[i];
            n++;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return n;
}

const zl_allocator_vtable zl_gpa_vtable = {gpa_alloc, gpa_resize, gpa_free};
