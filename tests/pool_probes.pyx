# The pool's test probes: chunk and task functions that count each row and task,
# fail on purpose or nest. A test-only extension, built in the tests like any
# outside user's (outside_extension.pool_probes()): it cimports the public
# zigllama._core.threading .pxd and nothing else of the package.
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memset

import numpy as np

from zigllama._core.threading cimport (
    parallel_for_status, pool_ptr, submit, wait, zl_pool, zl_task_group, zl_task_group_init,
)

cdef extern from *:
    """
    #include <stdint.h>
    static inline void probe_count_u8(uint8_t *p) { __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }
    static inline void probe_count_i64(int64_t *p) { __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }
    """
    void probe_count_u8(uint8_t *p) noexcept nogil
    void probe_count_i64(int64_t *p) noexcept nogil


ctypedef struct probe_ctx:
    uint8_t *hits                  # one counter per row
    int64_t calls                  # chunks run
    int64_t fail_at                # the row whose chunk fails (-1: none)
    int fail_status
    zl_pool *pool                  # nested: the pool of the inner loops
    int64_t inner_n
    probe_ctx *inner_template


cdef int count_rows(void *vctx, int64_t begin, int64_t end) noexcept nogil:
    cdef probe_ctx *c = <probe_ctx *>vctx
    cdef int64_t i
    for i in range(begin, end):
        probe_count_u8(&c.hits[i])
        if c.fail_at == i:
            return c.fail_status
    probe_count_i64(&c.calls)
    return 0


cdef int nested_rows(void *vctx, int64_t begin, int64_t end) noexcept nogil:
    # Inner row j of outer row i is hit index i * inner_n + j.
    cdef probe_ctx *c = <probe_ctx *>vctx
    cdef probe_ctx inner
    cdef int64_t i
    cdef int rc
    for i in range(begin, end):
        inner = c.inner_template[0]
        inner.hits = c.hits + i * c.inner_n
        rc = parallel_for_status(c.pool, c.inner_n, 1, count_rows, &inner)
        if rc != 0:
            return rc
    return 0


cdef int count_task(void *ctx) noexcept nogil:
    probe_count_i64(<int64_t *>ctx)
    return 0


def parallel_for(pool, int64_t n, int64_t grain=1, int64_t fail_at=-1, int fail_status=7):
    """Count each row of [0, n) on the pool; returns (status, hits per row, chunks run)."""
    cdef zl_pool *p = pool_ptr(pool)
    cdef probe_ctx ctx
    cdef int status
    hits = np.zeros(max(n, 1), dtype=np.uint8)
    cdef uint8_t[::1] h = hits
    memset(&ctx, 0, sizeof(ctx))
    ctx.hits = &h[0]
    ctx.fail_at = fail_at
    ctx.fail_status = fail_status
    with nogil:
        status = parallel_for_status(p, n, grain, count_rows, &ctx)
    return status, hits[:n], ctx.calls


def nested(pool, int64_t outer, int64_t inner):
    """parallel_for over outer rows, each running a parallel_for over inner rows."""
    cdef zl_pool *p = pool_ptr(pool)
    cdef probe_ctx ctx, template
    cdef int status
    hits = np.zeros(max(outer * inner, 1), dtype=np.uint8)
    cdef uint8_t[::1] h = hits
    memset(&ctx, 0, sizeof(ctx))
    memset(&template, 0, sizeof(template))
    template.fail_at = -1
    ctx.hits = &h[0]
    ctx.fail_at = -1
    ctx.pool = p
    ctx.inner_n = inner
    ctx.inner_template = &template
    with nogil:
        status = parallel_for_status(p, outer, 1, nested_rows, &ctx)
    return status, hits[:outer * inner]


def submit_count(pool, int64_t ntasks):
    """Submit ntasks C tasks in one group and wait; returns (status, times run)
    (the pool's own failures raise ThreadPoolError)."""
    cdef zl_pool *p = pool_ptr(pool)
    cdef zl_task_group g
    cdef int64_t counter = 0
    cdef int64_t i
    cdef int status
    zl_task_group_init(&g)
    try:
        with nogil:
            for i in range(ntasks):
                submit(p, &g, count_task, &counter)
    finally:
        with nogil:
            status = wait(p, &g)
    return status, counter
