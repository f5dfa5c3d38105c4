/* Benchmark probes and the pool-shutdown probe (see probes.c); the tests' other
 * probes are a test-only extension (tests/pool_probes.pyx). */
#ifndef ZIGLLAMA_THREADING_PROBES_H
#define ZIGLLAMA_THREADING_PROBES_H

#include <stdatomic.h>
#include <stdint.h>

#include "zigllama/zl_threading.h"

typedef struct zl_probe_sleep {
    long ns;
    _Atomic int64_t done;
    _Atomic int64_t cancelled;
} zl_probe_sleep;

int zl_probe_empty_rows(void *ctx, int64_t begin, int64_t end);
int zl_probe_spin_rows(void *ctx, int64_t begin, int64_t end);
int zl_probe_empty_task(void *ctx);
int zl_probe_sleep_task(void *ctx);
void zl_probe_sleep_cancel(void *ctx);
int64_t zl_probe_now_ns(void);
/* sizeof the per-worker struct (pool.c): a multiple of the cache line. */
size_t zl_pool_worker_stride(void);

#endif
