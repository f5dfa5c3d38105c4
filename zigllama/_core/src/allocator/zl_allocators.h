/* The allocators behind zigllama._core.allocator, in C.
 *
 * Every context struct starts with a zl_alloc_stats, so Python code reads the
 * statistics of any allocator the same way. Statistics are updated with relaxed
 * atomics: the heap and page allocators are called from several threads at once.
 * No function here takes the GIL except through PyTraceMalloc_Track/Untrack
 * (which take it briefly, and only while tracemalloc is tracing), and none of
 * them holds a lock while calling another allocator, so nogil callers cannot
 * deadlock against a thread that holds the GIL.
 */
#ifndef ZIGLLAMA_ALLOCATORS_H
#define ZIGLLAMA_ALLOCATORS_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "zigllama/zl_allocator.h"

/* tracemalloc domain of memory zigllama takes from the system ("zl"). */
#define ZL_TRACEMALLOC_DOMAIN 0x7a6cu

/* Zero-byte requests get one byte, so every allocation has its own address. */
#define ZL_NONZERO(size) ((size) ? (size) : (size_t)1)

typedef struct zl_alloc_stats {
    size_t live_bytes;
    size_t live_allocations;
    size_t high_water_bytes;
    uint64_t total_allocations;
    uint64_t total_frees;
    uint64_t failed_allocations;
    /* Not a statistic: set by close(); from then on alloc returns NULL, also for
     * nogil callers and parent allocators that hold the vtable. Frees still work. */
    int closed;
} zl_alloc_stats;

/* 1 (and counts the refusal) if the allocator was closed. */
static inline int zl_refuse_if_closed(zl_alloc_stats *s) {
    if (!__atomic_load_n(&s->closed, __ATOMIC_RELAXED)) return 0;
    __atomic_add_fetch(&s->failed_allocations, 1, __ATOMIC_RELAXED);
    return 1;
}

void zl_stats_on_alloc(zl_alloc_stats *s, size_t size);
void zl_stats_on_free(zl_alloc_stats *s, size_t size);
void zl_stats_on_fail(zl_alloc_stats *s);
/* An allocation changed size in place. */
void zl_stats_on_resize(zl_alloc_stats *s, size_t old_size, size_t new_size);
/* The same for memory taken from the system (heap, pages): also tell tracemalloc. */
void zl_system_on_alloc(zl_alloc_stats *s, void *ptr, size_t size);
void zl_system_on_resize(zl_alloc_stats *s, void *ptr, size_t old_size, size_t new_size);
void zl_system_on_free(zl_alloc_stats *s, void *ptr, size_t size);
void zl_stats_reset_live(zl_alloc_stats *s);
void zl_stats_snapshot(const zl_alloc_stats *s, zl_alloc_stats *out);

/* Round up to a multiple of the power of two `alignment`; 0 on overflow. */
static inline size_t zl_align_up(size_t value, size_t alignment) {
    size_t mask = alignment - 1;
    if (value > SIZE_MAX - mask) return 0;
    return (value + mask) & ~mask;
}

/* ---- heap: posix_memalign / free ---------------------------------------- */
typedef struct zl_heap {
    zl_alloc_stats stats;
} zl_heap;
extern const zl_allocator_vtable zl_heap_vtable;

/* ---- page: whole pages from mmap, optionally mlock'ed ------------------- */
typedef struct zl_page {
    zl_alloc_stats stats;
    int lock;           /* mlock every mapping */
    int last_errno;     /* errno of the last failed mmap/mlock */
    int last_failed_op; /* 1 = mmap, 2 = mlock */
    size_t page_size;
} zl_page;
extern const zl_allocator_vtable zl_page_vtable;
size_t zl_page_size(void);
/* Bytes a request of `size` at `alignment` really maps (0 on overflow). */
size_t zl_page_mapped_size(const zl_page *p, size_t size);

/* ---- bump allocation, shared by the arena and the fixed buffer ---------- */
typedef struct zl_bump {
    unsigned char *start; /* current region */
    unsigned char *cursor;
    unsigned char *end;
} zl_bump;
void *zl_bump_alloc(zl_bump *b, size_t size, size_t alignment);
int zl_bump_resize(zl_bump *b, void *ptr, size_t old_size, size_t new_size);
/* Gives the bytes back only when ptr is the last allocation; 1 if it did. */
int zl_bump_free(zl_bump *b, void *ptr, size_t size);

/* ---- arena: bump pointer over chunks from a child allocator ------------- */
typedef struct zl_arena_chunk {
    struct zl_arena_chunk *next; /* older chunk */
    size_t size;                 /* bytes taken from the child, header included */
} zl_arena_chunk;

typedef struct zl_arena {
    zl_alloc_stats stats;
    zl_allocator child;
    zl_arena_chunk *chunks; /* newest first; the bump region is in the newest */
    zl_bump bump;
    size_t capacity;        /* bytes held from the child */
    size_t used;            /* bytes handed out (padding included) since the last reset */
    size_t min_chunk;       /* the first chunk's size; later chunks grow by half */
} zl_arena;
extern const zl_allocator_vtable zl_arena_vtable;
/* Give every chunk back to the child. */
void zl_arena_free_all(zl_arena *a);
/* Forget every allocation, keeping at most `keep` bytes of capacity (SIZE_MAX:
 * all of it, 0: none) as one chunk. 0 if getting that chunk failed: the arena
 * is then simply empty. */
int zl_arena_reset(zl_arena *a, size_t keep);
size_t zl_arena_chunk_count(const zl_arena *a);

/* ---- fixed buffer: bump pointer over caller memory ---------------------- */
typedef struct zl_fixed {
    zl_alloc_stats stats;
    zl_bump bump;
    unsigned char *buffer;
    size_t size;
} zl_fixed;
extern const zl_allocator_vtable zl_fixed_vtable;
void zl_fixed_reset(zl_fixed *f);

/* ---- general purpose: tracks every live allocation ---------------------- */
typedef struct zl_gpa_entry {
    uintptr_t ptr;      /* 0 = empty slot, 1 = deleted slot */
    size_t size;
    size_t alignment;
} zl_gpa_entry;

#define ZL_GPA_RECENT 4096 /* freed addresses remembered to tell double from invalid frees */

typedef enum zl_gpa_status {
    ZL_GPA_OK = 0,
    ZL_GPA_DOUBLE_FREE = 1,
    ZL_GPA_INVALID_FREE = 2,
    ZL_GPA_SIZE_MISMATCH = 3,
    ZL_GPA_ALIGNMENT_MISMATCH = 4,
} zl_gpa_status;

typedef struct zl_gpa {
    zl_alloc_stats stats;
    zl_allocator child;
    pthread_mutex_t lock;
    zl_gpa_entry *table;   /* open addressing, linear probing */
    size_t capacity;       /* slots, a power of two */
    size_t used_slots;     /* live + deleted */
    uintptr_t recent[ZL_GPA_RECENT];
    size_t recent_next;
    /* Misuse seen by the vtable's free (nogil callers cannot raise): reported by close(). */
    uint64_t bad_frees;
} zl_gpa;
extern const zl_allocator_vtable zl_gpa_vtable;
int zl_gpa_init(zl_gpa *g, zl_allocator child);
void zl_gpa_destroy(zl_gpa *g);
/* Check and free; on misuse, nothing is freed and the status says why (with a
 * size or alignment mismatch, *recorded is the allocation as it was made). */
zl_gpa_status zl_gpa_free_checked(zl_gpa *g, void *ptr, size_t size, size_t alignment,
                                  zl_gpa_entry *recorded);
/* Copy up to max live entries into out; returns the number of live entries. */
size_t zl_gpa_live(zl_gpa *g, zl_gpa_entry *out, size_t max);

/* ---- failing: refuses the Nth allocation and every later one ------------ */
typedef struct zl_failing {
    zl_alloc_stats stats;
    zl_allocator child;
    uint64_t fail_index;       /* allocations that succeed before the first failure */
    uint64_t resize_fail_index;
    uint64_t allocations;      /* successful allocations */
    uint64_t deallocations;
    uint64_t resizes;
    uint64_t allocated_bytes;
    uint64_t freed_bytes;
    int has_induced_failure;
} zl_failing;
extern const zl_allocator_vtable zl_failing_vtable;
/* Count a free that the Python layer passed to the child itself (to check it). */
void zl_failing_count_free(zl_failing *f, size_t size);

#endif
