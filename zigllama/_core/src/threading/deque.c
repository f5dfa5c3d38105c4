/* The Chase-Lev work-stealing deque, as corrected for weak memory models by
 * N. M. Le, A. Pop, A. Cohen and F. Zappa Nardelli, "Correct and Efficient
 * Work-Stealing for Weak Memory Models", PPoPP 2013 (Figure 1), in C11 atomics.
 *
 * What each detail is for:
 *  - top and bottom are signed 64-bit: take() decrements bottom below top on an
 *    empty deque (bottom = -1 for a fresh one) and the comparisons must see that.
 *  - take() publishes its decrement of bottom and then reads top behind a seq_cst
 *    fence; steal() reads top and then bottom behind one. Without both fences the
 *    owner and a thief can each miss the other's update and both take the last item.
 *  - when the deque held exactly one item (t == b) the owner takes it with the same
 *    CAS on top that thieves use, so exactly one of them wins it.
 *  - steal() reads the slot *before* its CAS: after a successful CAS the owner may
 *    immediately reuse the slot. Slots are atomics, so a read that races with a
 *    later push is not undefined behaviour; its value is discarded when the CAS fails.
 *  - stores of bottom are release stores (the paper writes a release fence before
 *    a relaxed store in push): a thief that reads bottom with acquire also sees
 *    everything the owner wrote before it (the task's payload). On x86-64 both are a
 *    plain mov; the stronger form also lets ThreadSanitizer, which does not model
 *    fences, follow the hand-off.
 *
 * Growth: when full, the owner copies the live items into an array twice as big and
 * publishes it. A thief that loaded the old array pointer just before may still be
 * reading a slot of it, and nothing tells the owner when that read is over (that
 * would need hazard pointers or epochs on the thieves' fast path). So outgrown
 * arrays are not freed at once: they go on a retired list freed by
 * zl_deque_destroy, when no thread uses the deque any more (the pool destroys its
 * deques after joining its workers). Arrays double, so everything retired together
 * is smaller than the live array: at most 2x the peak memory, and a deque only
 * grows a few times in its life.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "zigllama/zl_threading.h"

typedef struct zl_deque_array {
    int64_t size; /* a power of two */
    int64_t mask;
    struct zl_deque_array *retired_next;
    _Atomic(void *) slot[];
} zl_deque_array;

/* top is written by thieves, bottom by the owner: separate cache lines. */
struct zl_deque {
    _Alignas(ZL_CACHE_LINE) _Atomic int64_t top;
    _Alignas(ZL_CACHE_LINE) _Atomic int64_t bottom;
    _Atomic(zl_deque_array *) array;
    zl_deque_array *retired; /* owner only (and destroy) */
    int64_t n_retired;
};

static zl_deque_array *array_new(int64_t size) {
    zl_deque_array *a = malloc(sizeof(zl_deque_array) + (size_t)size * sizeof(a->slot[0]));
    if (a == NULL) return NULL;
    a->size = size;
    a->mask = size - 1;
    a->retired_next = NULL;
    for (int64_t i = 0; i < size; i++) atomic_init(&a->slot[i], NULL);
    return a;
}

zl_deque *zl_deque_create(int log_capacity) {
    if (log_capacity < 1) log_capacity = 1;
    if (log_capacity > 40) return NULL;
    zl_deque *q = aligned_alloc(ZL_CACHE_LINE, sizeof(zl_deque));
    if (q == NULL) return NULL;
    zl_deque_array *a = array_new((int64_t)1 << log_capacity);
    if (a == NULL) {
        free(q);
        return NULL;
    }
    atomic_init(&q->top, 0);
    atomic_init(&q->bottom, 0);
    atomic_init(&q->array, a);
    q->retired = NULL;
    q->n_retired = 0;
    return q;
}

void zl_deque_destroy(zl_deque *q) {
    if (q == NULL) return;
    zl_deque_array *r = q->retired;
    while (r != NULL) {
        zl_deque_array *next = r->retired_next;
        free(r);
        r = next;
    }
    free(atomic_load_explicit(&q->array, memory_order_relaxed));
    free(q);
}

/* Owner only: copy [t, b) into an array twice the size and publish it. */
static zl_deque_array *grow(zl_deque *q, zl_deque_array *a, int64_t t, int64_t b) {
    zl_deque_array *bigger = array_new(a->size * 2);
    if (bigger == NULL) return NULL;
    for (int64_t i = t; i < b; i++) {
        void *x = atomic_load_explicit(&a->slot[i & a->mask], memory_order_relaxed);
        atomic_store_explicit(&bigger->slot[i & bigger->mask], x, memory_order_relaxed);
    }
    /* release: a thief that loads the new pointer sees the copied slots. */
    atomic_store_explicit(&q->array, bigger, memory_order_release);
    a->retired_next = q->retired;
    q->retired = a;
    q->n_retired++;
    return bigger;
}

int zl_deque_push(zl_deque *q, void *item) {
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    zl_deque_array *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    if (b - t > a->size - 1) {
        a = grow(q, a, t, b);
        if (a == NULL) return ZL_POOL_ENOMEM;
    }
    atomic_store_explicit(&a->slot[b & a->mask], item, memory_order_relaxed);
    atomic_store_explicit(&q->bottom, b + 1, memory_order_release);
    return 0;
}

void *zl_deque_take(zl_deque *q) {
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed) - 1;
    zl_deque_array *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    atomic_store_explicit(&q->bottom, b, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    void *x = NULL;
    if (t <= b) {
        x = atomic_load_explicit(&a->slot[b & a->mask], memory_order_relaxed);
        if (t == b) {
            /* The last item: race the thieves for it through top. */
            if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
                                                         memory_order_relaxed))
                x = NULL;
            atomic_store_explicit(&q->bottom, b + 1, memory_order_release);
        }
    } else {
        /* Empty: undo the decrement. */
        atomic_store_explicit(&q->bottom, b + 1, memory_order_release);
    }
    return x;
}

void *zl_deque_steal(zl_deque *q, int *result) {
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    atomic_thread_fence(memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_acquire);
    if (t < b) {
        /* The paper loads the array with consume; compilers implement consume as acquire. */
        zl_deque_array *a = atomic_load_explicit(&q->array, memory_order_acquire);
        void *x = atomic_load_explicit(&a->slot[t & a->mask], memory_order_relaxed);
        if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
                                                     memory_order_relaxed)) {
            if (result) *result = ZL_STEAL_ABORT;
            return NULL;
        }
        if (result) *result = ZL_STEAL_OK;
        return x;
    }
    if (result) *result = ZL_STEAL_EMPTY;
    return NULL;
}

int64_t zl_deque_size(const zl_deque *q) {
    int64_t b = atomic_load_explicit(&((zl_deque *)q)->bottom, memory_order_acquire);
    int64_t t = atomic_load_explicit(&((zl_deque *)q)->top, memory_order_acquire);
    return b > t ? b - t : 0;
}

int64_t zl_deque_capacity(const zl_deque *q) {
    return atomic_load_explicit(&((zl_deque *)q)->array, memory_order_acquire)->size;
}

int64_t zl_deque_retired(const zl_deque *q) { return q->n_retired; }
