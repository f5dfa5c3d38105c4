/* Torture test for zl_deque: one owner pushing and taking, several thieves
 * stealing, every item must be taken exactly once.
 *
 *   deque_torture <items> <thieves> <seed>
 *
 * The owner pushes items in bursts of random length (some long, so the array
 * grows from 4 slots many times over) and takes back a random share of each
 * burst, often down to the last item while the thieves are stealing: the race
 * between take() and steal() for the last item happens thousands of times per run.
 * Each item is a struct the owner writes (non-atomically) just before pushing it
 * and the taker reads afterwards, so a missing happens-before edge shows up as a
 * wrong value here, and as a data race under -fsanitize=thread.
 * Exit status 0 and a summary line when every item was taken exactly once.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "zigllama/zl_threading.h"

typedef struct item {
    int64_t id;
    int64_t check; /* id * 7 + 3, written by the owner before the push */
} item;

static zl_deque *q;
static item *items;
static atomic_uchar *taken;
static atomic_int owner_done;
static atomic_llong bad_payload, steal_ok, steal_empty, steal_abort;

static void consume(item *it) {
    if (it->check != it->id * 7 + 3) atomic_fetch_add(&bad_payload, 1);
    atomic_fetch_add_explicit(&taken[it->id], 1, memory_order_relaxed);
}

static void *thief(void *arg) {
    (void)arg;
    long long ok = 0, empty = 0, aborted = 0;
    for (;;) {
        int r;
        item *it = zl_deque_steal(q, &r);
        if (it != NULL) {
            consume(it);
            ok++;
        } else if (r == ZL_STEAL_ABORT) {
            aborted++;
        } else {
            empty++;
            if (atomic_load(&owner_done) && zl_deque_size(q) == 0) break;
        }
    }
    atomic_fetch_add(&steal_ok, ok);
    atomic_fetch_add(&steal_empty, empty);
    atomic_fetch_add(&steal_abort, aborted);
    return NULL;
}

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 4000000;
    int nthieves = argc > 2 ? atoi(argv[2]) : 3;
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) | 1 : 88172645463325252ULL;
    if (n < 1 || nthieves < 1 || nthieves > 64) {
        fprintf(stderr, "usage: deque_torture items thieves seed\n");
        return 2;
    }
    items = malloc((size_t)n * sizeof(item));
    taken = calloc((size_t)n, 1);
    q = zl_deque_create(2);
    if (!items || !taken || !q) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    pthread_t th[64];
    for (int i = 0; i < nthieves; i++) pthread_create(&th[i], NULL, thief, NULL);

    long long pushes = 0, takes = 0, take_ok = 0, last_item_takes = 0, last_item_lost = 0;
    int64_t next = 0;
    while (next < n) {
        /* Mostly short bursts; one in 64 is long enough to make the array grow. The
         * first is long whatever the draw, so the array always grows under theft. */
        int64_t burst = (rnd() % 64 == 0) ? (int64_t)(rnd() % 20000) + 1 : (int64_t)(rnd() % 8) + 1;
        if (next == 0) burst = 20000;
        if (burst > n - next) burst = n - next;
        for (int64_t k = 0; k < burst; k++, next++) {
            items[next].id = next;
            items[next].check = next * 7 + 3;
            if (zl_deque_push(q, &items[next]) != 0) {
                fprintf(stderr, "push failed (out of memory)\n");
                return 2;
            }
            pushes++;
        }
        /* Take back a random share; half the time try to drain to empty, which
         * ends on the last item racing the thieves. */
        int64_t want = (rnd() & 1) ? burst + 1 : (int64_t)(rnd() % (uint64_t)(burst + 1));
        for (int64_t k = 0; k < want; k++) {
            int64_t before = zl_deque_size(q);
            item *it = zl_deque_take(q);
            takes++;
            if (before == 1) last_item_takes++;
            if (it == NULL) {
                if (before == 1) last_item_lost++;
                break;
            }
            consume(it);
            take_ok++;
        }
    }
    atomic_store(&owner_done, 1);
    /* The owner drains too, so both ends stay busy until the very end. */
    for (item *it; (it = zl_deque_take(q)) != NULL;) {
        consume(it);
        takes++;
        take_ok++;
    }
    for (int i = 0; i < nthieves; i++) pthread_join(th[i], NULL);

    int64_t missing = 0, duplicated = 0;
    for (int64_t i = 0; i < n; i++) {
        unsigned char c = atomic_load_explicit(&taken[i], memory_order_relaxed);
        if (c == 0) missing++;
        if (c > 1) duplicated++;
    }
    long long ops = pushes + takes + steal_ok + steal_empty + steal_abort;
    printf("items=%" PRId64 " thieves=%d ops=%lld pushes=%lld takes=%lld taken_by_owner=%lld "
           "stolen=%lld steal_empty=%lld steal_abort=%lld last_item_takes=%lld last_item_lost=%lld "
           "capacity=%" PRId64 " retired_arrays=%" PRId64 " missing=%" PRId64 " duplicated=%" PRId64
           " bad_payload=%lld\n",
           n, nthieves, ops, pushes, takes, take_ok, (long long)steal_ok, (long long)steal_empty,
           (long long)steal_abort, last_item_takes, last_item_lost, zl_deque_capacity(q),
           zl_deque_retired(q), missing, duplicated, (long long)bad_payload);
    int ok = missing == 0 && duplicated == 0 && bad_payload == 0 && take_ok + steal_ok == n;
    zl_deque_destroy(q);
    free(items);
    free(taken);
    return ok ? 0 : 1;
}
