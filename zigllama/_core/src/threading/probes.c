/* Small chunk and task functions for the tests and the benchmarks: they check that
 * each row runs exactly once, fail on purpose, nest, or do nothing. */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "zigllama/zl_threading.h"
#include "probes.h"

int zl_probe_count_rows(void *vctx, int64_t begin, int64_t end) {
    zl_probe_ctx *c = vctx;
    for (int64_t i = begin; i < end; i++) {
        atomic_fetch_add_explicit(&c->hits[i], 1, memory_order_relaxed);
        if (c->fail_at == i) return c->fail_status;
    }
    atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
    return 0;
}

int zl_probe_nested_rows(void *vctx, int64_t begin, int64_t end) {
    zl_probe_ctx *c = vctx;
    for (int64_t i = begin; i < end; i++) {
        /* Inner row j of outer row i is hit index i * inner + j. */
        zl_probe_ctx inner = *c->inner_template;
        inner.hits = c->hits + i * c->inner_n;
        int rc = zl_parallel_for(c->pool, c->inner_n, 1, zl_probe_count_rows, &inner);
        if (rc != 0) return rc;
    }
    return 0;
}

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

int zl_probe_count_task(void *ctx) {
    atomic_fetch_add_explicit((_Atomic int64_t *)ctx, 1, memory_order_relaxed);
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
