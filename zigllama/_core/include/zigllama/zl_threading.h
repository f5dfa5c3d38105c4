/* The work-stealing thread pool: ZigLlama's threading.zig as a C library.
 *
 * Three layers, each usable on its own and without the GIL:
 *
 *  - zl_deque: the Chase-Lev work-stealing deque in the form proven correct for
 *    weak memory models by Le, Pop, Cohen and Zappa Nardelli (PPoPP 2013).
 *    One owner thread pushes and takes at the bottom; any thread steals at the top.
 *  - zl_pool: native worker threads, one deque each, an injection queue for work
 *    from outside the pool, random-victim stealing, idle workers that spin briefly
 *    and then sleep on a futex.
 *  - zl_parallel_for: split [0, n) into chunks of `grain` and run them on the pool
 *    and on the calling thread; the first non-zero status of any chunk is returned.
 *
 * Status codes: a task or chunk function returns 0 on success and any other int on
 * failure (its own code, passed through unchanged). The pool's own failures are the
 * negative ZL_POOL_E* codes below; task functions should not use them.
 */
#ifndef ZIGLLAMA_ZL_THREADING_H
#define ZIGLLAMA_ZL_THREADING_H

#include <stddef.h>
#include <stdint.h>

#include "zigllama/zl_omp.h" /* ZL_MAX_THREADS */

#ifdef __cplusplus
extern "C" {
/* C++ has no _Atomic qualifier. A C++ caller only passes a task group to the
 * functions below (which are compiled as C), so it sees the same layout with
 * plain fields. */
#define ZL_ATOMIC(T) T
#else
#include <stdatomic.h>
#define ZL_ATOMIC(T) _Atomic T
#endif

/* Per-worker data is aligned and padded to this, so two workers never write to
 * the same cache line (false sharing). 64 bytes on x86-64 and most ARM cores. */
#define ZL_CACHE_LINE 64

/* Threads outside a pool that get their own deque in it (others share a locked queue). */
#define ZL_MAX_EXTERNAL 32

enum {
    ZL_POOL_OK = 0,
    ZL_POOL_ECLOSED = -10001,    /* the pool was shut down */
    ZL_POOL_ENOMEM = -10002,     /* no memory for a task, a job or a deque */
    ZL_POOL_EFORKED = -10003,    /* the pool was created in a parent process before fork() */
    ZL_POOL_EINVAL = -10004,     /* a bad argument (negative n, NULL function, ...) */
    ZL_POOL_ECANCELLED = -10005, /* the task was dropped by a cancelling shutdown */
    ZL_POOL_ESELF = -10006,      /* a pool shut down from one of its own tasks */
    ZL_POOL_ETHREAD = -10007     /* pthread_create failed */
};

/* ------------------------------------------------------------------------ */
/* The deque                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct zl_deque zl_deque;

enum { ZL_STEAL_OK = 0, ZL_STEAL_EMPTY = 1, ZL_STEAL_ABORT = 2 };

/* A deque for non-NULL pointers with an initial capacity of 2**log_capacity
 * (it grows by doubling). NULL when out of memory. */
zl_deque *zl_deque_create(int log_capacity);
/* Frees the deque and every array it outgrew. No thread may be using it. */
void zl_deque_destroy(zl_deque *q);
/* Owner only. 0, or ZL_POOL_ENOMEM if the array had to grow and could not
 * (the item was not pushed). item must not be NULL. */
int zl_deque_push(zl_deque *q, void *item);
/* Owner only: the most recently pushed item, or NULL when empty. */
void *zl_deque_take(zl_deque *q);
/* Any thread: the oldest item, or NULL with *result set to ZL_STEAL_EMPTY or
 * ZL_STEAL_ABORT (lost a race with the owner or another thief: retry). */
void *zl_deque_steal(zl_deque *q, int *result);
/* bottom - top: exact when quiescent, a snapshot otherwise. */
int64_t zl_deque_size(const zl_deque *q);
/* Capacity of the current array, and how many outgrown arrays are retired. */
int64_t zl_deque_capacity(const zl_deque *q);
int64_t zl_deque_retired(const zl_deque *q);

/* ------------------------------------------------------------------------ */
/* The pool                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct zl_pool zl_pool;

/* A task: fn(ctx) returns 0 or an error status. */
typedef int (*zl_task_fn)(void *ctx);
/* Called instead of fn for a task dropped by a cancelling shutdown (may be NULL). */
typedef void (*zl_cancel_fn)(void *ctx);
/* A parallel_for chunk: rows [begin, end); returns 0 or an error status. */
typedef int (*zl_range_fn)(void *ctx, int64_t begin, int64_t end);

enum {
    ZL_NUMA_DISABLED = 0,   /* no NUMA system calls at all */
    ZL_NUMA_LOCAL = 1,      /* each worker allocates on the node it runs on */
    ZL_NUMA_INTERLEAVE = 2, /* each worker's pages are spread round-robin over all nodes */
    ZL_NUMA_BALANCED = 3    /* workers spread evenly over nodes, memory local to each */
};

typedef struct zl_pool_config {
    int num_workers;       /* 1 .. ZL_MAX_THREADS - 1: threads besides the caller */
    size_t stack_size;     /* bytes; 0 = the system default */
    int spin_us;           /* how long an idle worker spins before sleeping */
    int numa_policy;       /* ZL_NUMA_*; a no-op when num_nodes < 2 */
    int num_nodes;         /* NUMA nodes on the machine (from the topology) */
    const int *worker_cpu; /* NULL, or num_workers CPU ids to pin worker i to (-1: no pin) */
    const int *worker_node;/* NULL, or num_workers NUMA node ids (for LOCAL / BALANCED) */
} zl_pool_config;

typedef struct zl_pool_stats {
    int64_t tasks_executed;   /* tasks and parallel_for chunks run, by anyone */
    int64_t tasks_submitted;  /* tasks pushed through submit */
    int64_t tasks_stolen;     /* tasks a worker took from another worker's deque */
    int64_t failed_steals;    /* steal attempts that found nothing or lost a race */
    int64_t injected;         /* tasks that came through the injection queue */
    int64_t queue_high_water; /* most tasks seen in one queue at once */
    int64_t sleeps;           /* times a worker went to sleep */
    int64_t wakes;            /* times a sleeping worker woke up */
    int64_t parallel_fors;    /* parallel_for calls */
    int64_t affinity_failures;/* workers whose pinning or NUMA policy the OS refused */
    int64_t numa_applied;     /* workers that set a NUMA memory policy */
} zl_pool_stats;

/* A group of submitted tasks to wait for together; zero it with init. */
typedef struct zl_task_group {
    ZL_ATOMIC(int64_t) pending;   /* submitted and not yet finished */
    ZL_ATOMIC(int) status;        /* first non-zero task status */
    ZL_ATOMIC(uint32_t) done_seq; /* futex word: bumped when pending reaches 0 */
    ZL_ATOMIC(int) waiters;       /* threads asleep on done_seq */
} zl_task_group;

/* NULL on failure with *status set (ZL_POOL_ENOMEM, ZL_POOL_ETHREAD, ZL_POOL_EINVAL). */
zl_pool *zl_pool_create(const zl_pool_config *config, int *status);
/* Refuse new work from outside the pool and let the workers exit once the queues
 * are empty (cancelling what is pending if cancel_pending), without waiting. */
int zl_pool_close(zl_pool *p, int cancel_pending);
/* Close, then join the workers. Pending tasks run first, unless cancel_pending,
 * in which case their cancel function (or nothing) runs instead. Idempotent. Returns
 * ZL_POOL_ESELF when called from one of the pool's own tasks (nothing is done).
 * In a child process after fork() it only marks the pool closed. */
int zl_pool_shutdown(zl_pool *p, int cancel_pending);
/* Shut down (cancelling) if needed, then free. */
void zl_pool_free(zl_pool *p);

int zl_pool_num_workers(const zl_pool *p);
/* 0 while usable, else ZL_POOL_ECLOSED or ZL_POOL_EFORKED. */
int zl_pool_check(const zl_pool *p);
/* The index of the calling thread among p's workers, or -1. */
int zl_pool_current_worker(const zl_pool *p);
/* The pool whose worker the calling thread is, or NULL. It stays alive while
 * the caller runs one of its tasks: code inside a task can split its own work
 * on it (parallel_for nests) without looking a pool up elsewhere. */
zl_pool *zl_pool_of_current_thread(void);
void zl_pool_get_stats(const zl_pool *p, zl_pool_stats *out);
void zl_pool_reset_stats(zl_pool *p);

static inline void zl_task_group_init(zl_task_group *g) {
#ifdef __cplusplus
    g->pending = 0;
    g->status = 0;
    g->done_seq = 0;
    g->waiters = 0;
#else
    atomic_init(&g->pending, 0);
    atomic_init(&g->status, 0);
    atomic_init(&g->done_seq, 0);
    atomic_init(&g->waiters, 0);
#endif
}
/* Queue fn(ctx) (cancel(ctx) if dropped by a cancelling shutdown). From a worker
 * it goes to that worker's deque, from another thread to that thread's own deque
 * in the pool (no lock), or the injection queue when every slot is taken.
 * g may be NULL. 0 or ZL_POOL_E*; on error nothing was queued. */
int zl_pool_submit(zl_pool *p, zl_task_group *g, zl_task_fn fn, zl_cancel_fn cancel, void *ctx);
/* Wait until every task of g has run, running queued tasks meanwhile. Returns
 * the first non-zero status of g's tasks, or 0. */
int zl_task_group_wait(zl_pool *p, zl_task_group *g);

/* Help-while-waiting for code that waits on something other than a task group
 * (a Python future): run one queued task of p on the calling thread. 1 if one
 * ran, 0 if none was queued. */
int zl_pool_help_once(zl_pool *p);
/* Batching on a worker of p: when the next task this worker would run has the
 * task function fn and no group, take it off the queues (counted as executed)
 * and return its ctx: the caller runs it. Otherwise leave it queued (on this
 * worker's deque) and return NULL; NULL also outside p's workers and while a
 * cancelling shutdown runs. A Python task uses it to run the Python tasks
 * queued behind it under the GIL it already holds. */
void *zl_pool_claim_next_if(zl_pool *p, zl_task_fn fn);

/* Chunks per thread a parallel_for makes when its grain is left to it. */
#define ZL_PFOR_CHUNKS_PER_THREAD 8

/* Run fn over [0, n) in chunks of grain rows (grain <= 0: about
 * ZL_PFOR_CHUNKS_PER_THREAD chunks per thread) on the workers and the calling
 * thread, and return when all are done.
 * After a chunk fails, chunks not yet started are skipped; the first non-zero
 * status is returned. Safe to call from inside a task (nested): the caller runs
 * whatever no idle worker picks up, so it never waits for a busy worker. */
int zl_parallel_for(zl_pool *p, int64_t n, int64_t grain, zl_range_fn fn, void *ctx);

/* ------------------------------------------------------------------------ */
/* NUMA and aligned memory                                                   */
/* ------------------------------------------------------------------------ */

/* Bumped in every child process after fork() (pthread_atfork). */
uint64_t zl_fork_generation(void);

/* Memory of `size` bytes mapped fresh and bound to NUMA node `node` with mbind
 * (node < 0 or a single-node machine: no binding). NULL on failure. Free with
 * zl_numa_free(ptr, size). *bound is set to 1 when mbind was applied. */
void *zl_numa_alloc(size_t size, int node, int num_nodes, int *bound);
void zl_numa_free(void *ptr, size_t size);
/* The NUMA node the page holding ptr lives on (get_mempolicy), or -1. */
int zl_numa_node_of(const void *ptr);

/* size bytes, zeroed, aligned to ZL_CACHE_LINE and padded to a multiple of it. */
void *zl_cacheline_calloc(size_t count, size_t size);
void zl_cacheline_free(void *ptr);

/* Row kernels behind ParallelOps: rows [begin, end) of a C-contiguous matrix. */
typedef struct zl_rows_ctx {
    const void *x;
    void *out;
    const void *weight; /* rmsnorm */
    int64_t cols;
    double eps;         /* rmsnorm */
} zl_rows_ctx;
int zl_softmax_rows_f32(void *ctx, int64_t begin, int64_t end);
int zl_softmax_rows_f64(void *ctx, int64_t begin, int64_t end);
int zl_rmsnorm_rows_f32(void *ctx, int64_t begin, int64_t end);
int zl_rmsnorm_rows_f64(void *ctx, int64_t begin, int64_t end);

#ifdef __cplusplus
}
#endif

#endif
