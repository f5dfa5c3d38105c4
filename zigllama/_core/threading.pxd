# The work-stealing pool for Cython callers (twin of threading.zig).
#
# A kernel that wants its rows spread over the cores writes a chunk function
#
#     cdef int my_rows(void *ctx, int64_t begin, int64_t end) noexcept nogil
#
# returning 0, or a positive error code of its own, and calls
#
#     cdef zl_pool *pool = pool_ptr(None)          # the default pool (needs the GIL)
#     with nogil:
#         status = parallel_for(pool, n_rows, grain, my_rows, &ctx)
#
# `parallel_for` raises ThreadPoolError for the pool's own failures (closed,
# inherited across fork, out of memory) and otherwise returns the first non-zero
# status of any chunk, for the caller to turn into its own exception. The calling
# thread runs chunks too, and a parallel_for inside a task does not deadlock.
#
# An extension outside zigllama links only to the cdef functions at the end of
# this file (pool_ptr, pool_threads, check_pool_status, parallel_for,
# parallel_for_status, submit, wait) and to the header's inline
# zl_task_group_init; the zl_* functions are compiled into
# zigllama._core.threading itself. A task group lives until wait() returns: wait
# even when a submit failed, since tasks already queued still point at it.

from libc.stdint cimport int64_t, uint64_t


cdef extern from "zigllama/zl_threading.h" nogil:
    enum:
        ZL_CACHE_LINE
        ZL_POOL_OK
        ZL_POOL_ECLOSED
        ZL_POOL_ENOMEM
        ZL_POOL_EFORKED
        ZL_POOL_EINVAL
        ZL_POOL_ECANCELLED
        ZL_POOL_ESELF
        ZL_POOL_ETHREAD
        ZL_STEAL_OK
        ZL_STEAL_EMPTY
        ZL_STEAL_ABORT
        ZL_NUMA_DISABLED
        ZL_NUMA_LOCAL
        ZL_NUMA_INTERLEAVE
        ZL_NUMA_BALANCED

    ctypedef struct zl_deque:
        pass
    zl_deque *zl_deque_create(int log_capacity) noexcept
    void zl_deque_destroy(zl_deque *q) noexcept
    int zl_deque_push(zl_deque *q, void *item) noexcept
    void *zl_deque_take(zl_deque *q) noexcept
    void *zl_deque_steal(zl_deque *q, int *result) noexcept
    int64_t zl_deque_size(const zl_deque *q) noexcept
    int64_t zl_deque_capacity(const zl_deque *q) noexcept
    int64_t zl_deque_retired(const zl_deque *q) noexcept

    ctypedef struct zl_pool:
        pass
    ctypedef int (*zl_task_fn)(void *ctx) noexcept nogil
    ctypedef void (*zl_cancel_fn)(void *ctx) noexcept nogil
    ctypedef int (*zl_range_fn)(void *ctx, int64_t begin, int64_t end) noexcept nogil

    ctypedef struct zl_pool_config:
        int num_workers
        size_t stack_size
        int spin_us
        int numa_policy
        int num_nodes
        const int *worker_cpu
        const int *worker_node

    ctypedef struct zl_pool_stats:
        int64_t tasks_executed
        int64_t tasks_submitted
        int64_t tasks_stolen
        int64_t failed_steals
        int64_t injected
        int64_t queue_high_water
        int64_t sleeps
        int64_t wakes
        int64_t parallel_fors
        int64_t affinity_failures
        int64_t numa_applied

    ctypedef struct zl_task_group:
        pass

    zl_pool *zl_pool_create(const zl_pool_config *config, int *status) noexcept
    int zl_pool_close(zl_pool *p, int cancel_pending) noexcept
    int zl_pool_shutdown(zl_pool *p, int cancel_pending) noexcept
    void zl_pool_free(zl_pool *p) noexcept
    int zl_pool_num_workers(const zl_pool *p) noexcept
    int zl_pool_check(const zl_pool *p) noexcept
    int zl_pool_current_worker(const zl_pool *p) noexcept
    zl_pool *zl_pool_of_current_thread() noexcept
    void zl_pool_get_stats(const zl_pool *p, zl_pool_stats *out) noexcept
    void zl_pool_reset_stats(zl_pool *p) noexcept
    void zl_task_group_init(zl_task_group *g) noexcept
    int zl_pool_submit(zl_pool *p, zl_task_group *g, zl_task_fn fn, zl_cancel_fn cancel, void *ctx) noexcept
    int zl_task_group_wait(zl_pool *p, zl_task_group *g) noexcept
    int zl_pool_help_once(zl_pool *p) noexcept
    void *zl_pool_claim_next_if(zl_pool *p, zl_task_fn fn) noexcept
    int zl_parallel_for(zl_pool *p, int64_t n, int64_t grain, zl_range_fn fn, void *ctx) noexcept

    uint64_t zl_fork_generation() noexcept
    void *zl_numa_alloc(size_t size, int node, int num_nodes, int *bound) noexcept
    void zl_numa_free(void *ptr, size_t size) noexcept
    int zl_numa_node_of(const void *ptr) noexcept
    void *zl_cacheline_calloc(size_t count, size_t size) noexcept
    void zl_cacheline_free(void *ptr) noexcept

    ctypedef struct zl_rows_ctx:
        const void *x
        void *out
        const void *weight
        int64_t cols
        double eps
    int zl_softmax_rows_f32(void *ctx, int64_t begin, int64_t end) noexcept
    int zl_softmax_rows_f64(void *ctx, int64_t begin, int64_t end) noexcept
    int zl_rmsnorm_rows_f32(void *ctx, int64_t begin, int64_t end) noexcept
    int zl_rmsnorm_rows_f64(void *ctx, int64_t begin, int64_t end) noexcept


cdef class PoolHandle:
    """Owns one zl_pool; the Python ThreadPool holds one."""
    cdef zl_pool *ptr
    cdef readonly int num_workers
    cdef readonly uint64_t fork_generation


# The zl_pool behind a ThreadPool, a PoolHandle, or None (the default pool).
cdef zl_pool *pool_ptr(object pool) except NULL

# The thread setting (zigllama.num_threads()) and the default pool's handle
# (it keeps the zl_pool alive) without the Python calls: both cached, and
# looked up again when the setting's inputs change or the pool cannot serve
# (shut down, inherited across fork, another size). Need the GIL.
cdef int setting_threads() except -1
cdef PoolHandle default_pool_handle()

# Raise ThreadPoolError for a ZL_POOL_E* status; return any other status unchanged.
cdef int check_pool_status(int status) except -1 nogil

# Threads that work in a parallel_for on this pool: its workers and the caller.
cdef int pool_threads(zl_pool *pool) noexcept nogil

# The pool whose worker the calling thread is (it stays alive while the caller
# runs one of its tasks), or NULL: code inside a task splits its own work on it.
cdef zl_pool *current_thread_pool() noexcept nogil

# The pool to split work on: the calling thread's own pool inside a task (found
# without the GIL), else the default pool, with a reference kept in *ref until
# release_pool(ref). NULL (run on the caller) when none can be had.
cdef zl_pool *acquire_pool(void **ref) noexcept nogil
cdef void release_pool(void *ref) noexcept nogil

# zl_parallel_for itself, for a caller whose own API returns a status: 0, the
# first non-zero status of a chunk, or a pool failure (ZL_POOL_E*, negative)
# for it to turn into an exception at its boundary with check_pool_status.
cdef int parallel_for_status(zl_pool *pool, int64_t n, int64_t grain, zl_range_fn fn, void *ctx) noexcept nogil

# zl_parallel_for, zl_pool_submit and zl_task_group_wait with the pool's own
# failures raised as ThreadPoolError. They return 0 or the first positive status
# of a chunk or task (a negative status that is not the pool's is raised too).
cdef int parallel_for(zl_pool *pool, int64_t n, int64_t grain, zl_range_fn fn, void *ctx) except -1 nogil
cdef int submit(zl_pool *pool, zl_task_group *group, zl_task_fn fn, void *ctx) except -1 nogil
cdef int wait(zl_pool *pool, zl_task_group *group) except -1 nogil
