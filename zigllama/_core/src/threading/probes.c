/* Small chunk and task functions for the benchmarks (they do nothing, or spin for
 * a while) and for the test of a pool shut down while busy. */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "zigllama/zl_threading.h"
#include "probes.h"

int zl_probe_empty_rows(void *ctx, int64_t begin, int64_t end) {
    (void)ctx;
    (void)begin;
    (void)end;
    return 0;
}

int zl_probe_spin_rows(void *ctx, int64_t begin, int64_t end) {
    /* Busy for *(int64_t *)ctx nanoseconds per row: work that needs a thread. */
    int64_t until = zl_probe_now_ns() + *(const int64_t *)ctx * (end - begin);
    while (zl_probe_now_ns() < until) {
    }
    return 0;
}

int zl_probe_empty_task(void *ctx) {
    (void)ctx;
    return 0;
}

int zl_probe_sleep_task(void *ctx) {
    /* Sleeps, then counts itself: lets a test shut a pool down while it is busy. */
    zl_probe_sleep *s = ctx;
    struct timespec ts = {0, s->ns};
    nanosleep(&ts, NULL);
    atomic_fetch_add_explicit(&s->done, 1, memory_order_relaxed);
    return 0;
}

void zl_probe_sleep_cancel(void *ctx) {
    atomic_fetch_add_explicit(&((zl_probe_sleep *)ctx)->cancelled, 1, memory_order_relaxed);
}

int64_t zl_probe_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
