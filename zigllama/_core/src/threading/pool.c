/* The work-stealing pool: workers, injection queue, sleeping, parallel_for.
 *
 * Where a task goes:
 *  - submitted from one of the pool's workers: onto that worker's deque (LIFO for
 *    the owner, cache-warm; FIFO for thieves, who take the oldest, biggest work);
 *  - submitted from any other thread: onto that thread's own deque in the pool (a
 *    thread outside the pool is given one on its first submit, up to ZL_MAX_EXTERNAL
 *    of them), so submitting never takes a lock; when the slots are used up, onto
 *    the injection queue (a mutex-protected ring; workers take a batch at a time).
 * An idle worker looks in its own deque, then the injection queue, then steals from
 * the other workers' and the outside threads' deques, starting at a random victim. Finding nothing, it spins for
 * spin_us, then sleeps on a futex word `epoch`. A producer bumps `epoch` and wakes
 * sleepers after making work visible; the seq_cst fence in notify() and the
 * seq_cst increment of `sleepers` before the sleeper's last look at the queues
 * ensure one of the two sees the other (no lost wake-up).
 *
 * parallel_for does not create a task per chunk: the job holds an atomic chunk
 * counter, and it queues one helper task per idle worker that can help. Helpers and
 * the caller claim chunks until none are left. The caller never waits for a helper
 * to start (only for chunks already claimed to finish), so a nested parallel_for
 * inside a task completes even when every other worker is busy. The job lives on
 * the heap with a reference count, because a helper may be dequeued after the
 * caller returned; it finds no chunk left and drops its reference.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "zigllama/zl_threading.h"
#include "threading_internal.h"

/* ------------------------------------------------------------------------ */
/* Futex (a short sleep loop where there is none)                            */
/* ------------------------------------------------------------------------ */

static void futex_wait(_Atomic uint32_t *addr, uint32_t expected) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
    struct timespec ts = {0, 50000};
    if (atomic_load(addr) == expected) nanosleep(&ts, NULL);
#endif
}

static void futex_wake(_Atomic uint32_t *addr, int count) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
#else
    (void)addr;
    (void)count;
#endif
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Fork safety                                                               */
/* ------------------------------------------------------------------------ */

static _Atomic uint64_t g_fork_generation;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void) { atomic_fetch_add(&g_fork_generation, 1); }
static void register_atfork(void) { pthread_atfork(NULL, NULL, on_fork_child); }

uint64_t zl_fork_generation(void) { return atomic_load(&g_fork_generation); }

/* ------------------------------------------------------------------------ */
/* Structures                                                                */
/* ------------------------------------------------------------------------ */

enum { TASK_USER = 0, TASK_PFOR_HELPER = 1 };

struct task_cache;

typedef struct zl_task {
    zl_task_fn fn;
    zl_cancel_fn cancel;
    void *ctx;
    zl_task_group *group;
    int kind;
    struct zl_task *next;     /* on a free list */
    struct task_cache *home;  /* the cache it returns to (NULL: malloc'd alone) */
} zl_task;

/* Task memory without malloc/free per task: a submitting thread allocates from its
 * own free list; whoever runs the task pushes it on the owner's `returned` stack
 * (many pushers, one thread that takes the whole stack at once: no ABA). */
enum { TASK_SLAB = 64 };

typedef struct task_slab {
    struct task_slab *next;
    zl_task tasks[TASK_SLAB];
} task_slab;

typedef struct task_cache {
    _Alignas(ZL_CACHE_LINE) zl_task *free_list; /* owner only */
    task_slab *slabs;                           /* owner only; freed with the pool */
    _Alignas(ZL_CACHE_LINE) _Atomic(zl_task *) returned;
} task_cache;

static zl_task *task_alloc(task_cache *c) {
    if (c == NULL) {
        zl_task *t = malloc(sizeof *t);
        if (t) t->home = NULL;
        return t;
    }
    zl_task *t = c->free_list;
    if (t == NULL) t = atomic_exchange_explicit(&c->returned, NULL, memory_order_acquire);
    if (t == NULL) {
        task_slab *slab = malloc(sizeof *slab);
        if (slab == NULL) return NULL;
        slab->next = c->slabs;
        c->slabs = slab;
        for (int i = 0; i < TASK_SLAB; i++) {
            slab->tasks[i].home = c;
            slab->tasks[i].next = i + 1 < TASK_SLAB ? &slab->tasks[i + 1] : NULL;
        }
        t = &slab->tasks[0];
    }
    c->free_list = t->next;
    return t;
}

static void task_free(zl_task *t) {
    task_cache *c = t->home;
    if (c == NULL) {
        free(t);
        return;
    }
    zl_task *head = atomic_load_explicit(&c->returned, memory_order_relaxed);
    do {
        t->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&c->returned, &head, t, memory_order_release,
                                                    memory_order_relaxed));
}

static void task_cache_release(task_cache *c) {
    for (task_slab *s = c->slabs, *next; s != NULL; s = next) {
        next = s->next;
        free(s);
    }
    c->slabs = NULL;
}

/* Statistics a worker writes only itself: plain relaxed load+store, no lock prefix. */
#define BUMP(field) atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + 1, memory_order_relaxed)

typedef struct zl_worker {
    _Alignas(ZL_CACHE_LINE) zl_pool *pool;
    zl_deque *deque;
    pthread_t thread;
    int index;
    int cpu;
    int node;
    int started;
    uint64_t rng;
    task_cache cache;
    _Atomic int64_t executed, stolen, failed_steals, sleeps, wakes, high_water, injected;
} zl_worker;

struct zl_pool {
    int nworkers;
    zl_worker *workers;
    uint64_t fork_gen;
    int spin_ns;
    int numa_policy;
    int num_nodes;

    _Alignas(ZL_CACHE_LINE) _Atomic int closing;
    _Atomic int cancel;
    int joined;
    pthread_mutex_t shutdown_lock;

    /* Injection queue: a ring under inj_lock; inj_size is readable without it. */
    _Alignas(ZL_CACHE_LINE) pthread_mutex_t inj_lock;
    zl_task **inj_buf;
    int64_t inj_cap, inj_head, inj_count, inj_high;
    _Atomic int64_t inj_size;

    /* Sleep and wake-up. */
    _Alignas(ZL_CACHE_LINE) _Atomic uint32_t epoch;
    _Atomic int sleepers;
    _Alignas(ZL_CACHE_LINE) _Atomic uint32_t group_seq;
    _Atomic int group_waiters;

    /* Deques of threads outside the pool, owned by the thread that registered them. */
    _Alignas(ZL_CACHE_LINE) _Atomic int n_external;
    uint64_t id;
    pthread_t external_owner[ZL_MAX_EXTERNAL];
    zl_deque *external[ZL_MAX_EXTERNAL];
    task_cache external_cache[ZL_MAX_EXTERNAL];

    /* Counters for work done by threads that are not workers. */
    _Alignas(ZL_CACHE_LINE) _Atomic int64_t ext_executed, ext_stolen, ext_failed_steals;
    _Atomic int64_t submitted, parallel_fors, affinity_failures, numa_applied, ext_high_water;
};

static __thread zl_worker *tls_worker;

/* The deque this (outside) thread owns in the pool it used last. */
static __thread struct {
    zl_pool *pool;
    uint64_t id;
    zl_deque *deque;
    task_cache *cache;
} tls_external;
static _Atomic uint64_t g_pool_ids;

static inline zl_worker *current_worker(const zl_pool *p) {
    zl_worker *w = tls_worker;
    return (w != NULL && w->pool == p) ? w : NULL;
}

int zl_pool_current_worker(const zl_pool *p) {
    zl_worker *w = current_worker(p);
    return w ? w->index : -1;
}

zl_pool *zl_pool_of_current_thread(void) { return tls_worker != NULL ? tls_worker->pool : NULL; }

int zl_pool_num_workers(const zl_pool *p) { return p->nworkers; }

size_t zl_pool_worker_stride(void) { return sizeof(zl_worker); }

int zl_pool_check(const zl_pool *p) {
    if (p->fork_gen != zl_fork_generation()) return ZL_POOL_EFORKED;
    if (atomic_load_explicit(&((zl_pool *)p)->closing, memory_order_acquire)) return ZL_POOL_ECLOSED;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Injection queue                                                           */
/* ------------------------------------------------------------------------ */

/* Caller holds inj_lock. */
static int inj_push_locked(zl_pool *p, zl_task *t) {
    if (p->inj_count == p->inj_cap) {
        int64_t cap = p->inj_cap * 2;
        zl_task **buf = malloc((size_t)cap * sizeof(zl_task *));
        if (buf == NULL) return ZL_POOL_ENOMEM;
        for (int64_t i = 0; i < p->inj_count; i++) buf[i] = p->inj_buf[(p->inj_head + i) % p->inj_cap];
        free(p->inj_buf);
        p->inj_buf = buf;
        p->inj_cap = cap;
        p->inj_head = 0;
    }
    p->inj_buf[(p->inj_head + p->inj_count) % p->inj_cap] = t;
    p->inj_count++;
    if (p->inj_count > p->inj_high) p->inj_high = p->inj_count;
    atomic_store_explicit(&p->inj_size, p->inj_count, memory_order_release);
    return 0;
}

/* Take up to max tasks from the injection queue into out[]. */
static int inj_pop(zl_pool *p, zl_task **out, int max) {
    if (atomic_load_explicit(&p->inj_size, memory_order_acquire) == 0) return 0;
    pthread_mutex_lock(&p->inj_lock);
    int k = 0;
    if (p->inj_count > 0) {
        /* A fair share: leave some for the other workers. */
        int64_t share = p->inj_count / (p->nworkers + 1) + 1;
        k = (int)(share < max ? share : max);
        for (int i = 0; i < k; i++) {
            out[i] = p->inj_buf[p->inj_head];
            p->inj_head = (p->inj_head + 1) % p->inj_cap;
        }
        p->inj_count -= k;
        atomic_store_explicit(&p->inj_size, p->inj_count, memory_order_release);
    }
    pthread_mutex_unlock(&p->inj_lock);
    return k;
}

/* ------------------------------------------------------------------------ */
/* Deques of threads outside the pool                                        */
/* ------------------------------------------------------------------------ */

/* The calling (outside) thread's deque in p, registering one if needed; NULL
 * when all slots are taken (the caller uses the injection queue). */
static zl_deque *external_deque(zl_pool *p, int create) {
    if (tls_external.pool == p && tls_external.id == p->id) return tls_external.deque;
    pthread_t self = pthread_self();
    int slot = -1;
    int n = atomic_load_explicit(&p->n_external, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (pthread_equal(p->external_owner[i], self)) slot = i;
    if (slot < 0 && create) {
        pthread_mutex_lock(&p->inj_lock);
        n = atomic_load_explicit(&p->n_external, memory_order_relaxed);
        if (n < ZL_MAX_EXTERNAL && (p->external[n] = zl_deque_create(8)) != NULL) {
            p->external_owner[n] = self;
            slot = n;
            atomic_store_explicit(&p->n_external, n + 1, memory_order_release);
        }
        pthread_mutex_unlock(&p->inj_lock);
    }
    if (slot < 0) return NULL;
    tls_external.pool = p;
    tls_external.id = p->id;
    tls_external.deque = p->external[slot];
    tls_external.cache = &p->external_cache[slot];
    return tls_external.deque;
}

/* ------------------------------------------------------------------------ */
/* Wake-ups                                                                  */
/* ------------------------------------------------------------------------ */

/* Wake up to `count` sleeping workers after making work visible. Only when some
 * worker sleeps (or is about to) is there a system call. */
static void notify(zl_pool *p, int count) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0) {
        atomic_fetch_add_explicit(&p->epoch, 1, memory_order_seq_cst);
        futex_wake(&p->epoch, count);
    }
}

static int work_available(zl_pool *p) {
    if (atomic_load_explicit(&p->inj_size, memory_order_seq_cst) > 0) return 1;
    for (int i = 0; i < p->nworkers; i++)
        if (zl_deque_size(p->workers[i].deque) > 0) return 1;
    int n = atomic_load_explicit(&p->n_external, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (zl_deque_size(p->external[i]) > 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tasks                                                                     */
/* ------------------------------------------------------------------------ */

static void group_finish(zl_pool *p, zl_task_group *g, int rc) {
    if (rc != 0) {
        int zero = 0;
        atomic_compare_exchange_strong(&g->status, &zero, rc);
    }
    if (atomic_fetch_sub_explicit(&g->pending, 1, memory_order_seq_cst) == 1) {
        /* The waiter may free g as soon as it sees pending == 0: from here on
         * only the pool is touched. */
        atomic_fetch_add_explicit(&p->group_seq, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&p->group_waiters, memory_order_seq_cst) > 0) futex_wake(&p->group_seq, INT_MAX);
    }
}

static void pfor_helper_run(zl_task *t);

/* Work done by worker w (NULL: a thread outside the pool). */
static void count_executed(zl_pool *p, zl_worker *w, int64_t units) {
    if (units == 0) return;
    if (w != NULL)
        atomic_store_explicit(&w->executed, atomic_load_explicit(&w->executed, memory_order_relaxed) + units,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&p->ext_executed, units, memory_order_relaxed);
}

/* Run (or cancel) a task. It is counted before its group hears of it, so the
 * statistics are complete when a wait returns. */
static void run_task(zl_pool *p, zl_task *t) {
    if (t->kind == TASK_PFOR_HELPER) {
        /* Always runs: its caller is waiting for the chunks in any case. */
        pfor_helper_run(t);
        return;
    }
    int rc;
    if (atomic_load_explicit(&p->cancel, memory_order_relaxed)) {
        if (t->cancel) t->cancel(t->ctx);
        rc = ZL_POOL_ECANCELLED;
    } else {
        rc = t->fn(t->ctx);
    }
    zl_task_group *g = t->group;
    task_free(t);
    count_executed(p, current_worker(p), 1);
    if (g != NULL) group_finish(p, g, rc);
}


static void note_high_water(zl_worker *w) {
    int64_t size = zl_deque_size(w->deque);
    if (size > atomic_load_explicit(&w->high_water, memory_order_relaxed))
        atomic_store_explicit(&w->high_water, size, memory_order_relaxed);
}

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Next task for worker w (NULL: a thread outside the pool). */
static zl_task *find_task(zl_pool *p, zl_worker *w) {
    zl_task *t;
    zl_deque *own = w != NULL ? w->deque : external_deque(p, 0);
    if (own != NULL && (t = zl_deque_take(own)) != NULL) return t;

    enum { BATCH = 32 };
    zl_task *batch[BATCH];
    int k = inj_pop(p, batch, w != NULL ? BATCH : 1);
    if (k > 0) {
        if (w != NULL) {
            atomic_store_explicit(&w->injected, atomic_load_explicit(&w->injected, memory_order_relaxed) + k,
                                  memory_order_relaxed);
            /* Keep the first, share the rest through our deque; push in reverse
             * so that our own takes run them in submission order. */
            int pushed = 0;
            for (int i = k - 1; i >= 1; i--) {
                if (zl_deque_push(w->deque, batch[i]) != 0) {
                    run_task(p, batch[i]); /* no memory to queue it: run it now */
                    continue;
                }
                pushed++;
            }
            if (pushed) {
                note_high_water(w);
                if (pushed > 1) notify(p, pushed - 1);
            }
        }
        return batch[0];
    }

    /* Victims: the workers' deques, then the outside threads' deques. */
    int nw = p->nworkers;
    int n = nw + atomic_load_explicit(&p->n_external, memory_order_acquire);
    uint64_t seed;
    uint64_t *rng = w != NULL ? &w->rng : &seed;
    if (w == NULL) seed = (uint64_t)(uintptr_t)&seed ^ (uint64_t)now_ns();
    int start = (int)(xorshift(rng) % (uint64_t)n);
    for (int i = 0; i < n; i++) {
        int v = (start + i) % n;
        zl_deque *victim = v < nw ? p->workers[v].deque : p->external[v - nw];
        if (victim == own) continue;
        for (int attempt = 0; attempt < 4; attempt++) {
            int r;
            t = zl_deque_steal(victim, &r);
            if (t != NULL) {
                if (w) BUMP(w->stolen);
                else atomic_fetch_add_explicit(&p->ext_stolen, 1, memory_order_relaxed);
                return t;
            }
            if (w) BUMP(w->failed_steals);
            else atomic_fetch_add_explicit(&p->ext_failed_steals, 1, memory_order_relaxed);
            if (r == ZL_STEAL_EMPTY) break;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                   */
/* ------------------------------------------------------------------------ */

static void worker_setup(zl_worker *w) {
    zl_pool *p = w->pool;
#ifdef __linux__
    char name[16];
    snprintf(name, sizeof name, "zl-worker-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
            atomic_fetch_add(&p->affinity_failures, 1);
    }
#endif
    if (p->numa_policy != ZL_NUMA_DISABLED && p->num_nodes > 1) {
        if (zl_numa_set_thread_policy(p->numa_policy, w->node, p->num_nodes) == 0)
            atomic_fetch_add(&p->numa_applied, 1);
        else
            atomic_fetch_add(&p->affinity_failures, 1);
    }
}

static void *worker_main(void *arg) {
    zl_worker *w = arg;
    zl_pool *p = w->pool;
    tls_worker = w;
    worker_setup(w);
    for (;;) {
        zl_task *t = find_task(p, w);
        if (t != NULL) {
            run_task(p, t);
            continue;
        }
        if (atomic_load_explicit(&p->closing, memory_order_seq_cst)) {
            atomic_thread_fence(memory_order_seq_cst); /* pairs with enqueue's re-check */
            if (!work_available(p)) break;
            continue;
        }
        /* Spin: new work usually follows soon (the next parallel_for of a layer). */
        int64_t deadline = now_ns() + p->spin_ns;
        int found = 0;
        for (int i = 0; !found; i++) {
            cpu_relax();
            if ((i & 15) == 15) {
                found = work_available(p) || atomic_load_explicit(&p->closing, memory_order_relaxed);
                if (!found && now_ns() > deadline) break;
            }
            if ((i & 1023) == 1023) sched_yield(); /* let a preempted producer run */
        }
        if (found) continue;
        /* Sleep until notify() bumps epoch. */
        uint32_t e = atomic_load_explicit(&p->epoch, memory_order_seq_cst);
        atomic_fetch_add_explicit(&p->sleepers, 1, memory_order_seq_cst);
        if (work_available(p) || atomic_load_explicit(&p->closing, memory_order_seq_cst)) {
            atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_seq_cst);
            continue;
        }
        BUMP(w->sleeps);
        futex_wait(&p->epoch, e);
        atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_seq_cst);
        BUMP(w->wakes);
    }
    tls_worker = NULL;
    return NULL;
}

static void pool_release(zl_pool *p) {
    for (int i = 0; i < p->n_external; i++) {
        zl_deque_destroy(p->external[i]);
        task_cache_release(&p->external_cache[i]);
    }
    if (p->workers != NULL) {
        for (int i = 0; i < p->nworkers; i++) {
            zl_deque_destroy(p->workers[i].deque);
            task_cache_release(&p->workers[i].cache);
        }
        zl_cacheline_free(p->workers);
    }
    free(p->inj_buf);
    zl_cacheline_free(p);
}

static void wake_all(zl_pool *p) {
    atomic_fetch_add_explicit(&p->epoch, 1, memory_order_seq_cst);
    futex_wake(&p->epoch, INT_MAX);
}

/* Exported (the module is built with hidden visibility): threadpoolctl finds this
 * extension module by this symbol and zl_parallel_for (see zigllama/_threadpoolctl.py). */
__attribute__((visibility("default"))) zl_pool *zl_pool_create(const zl_pool_config *cfg, int *status) {
    int st_dummy;
    if (status == NULL) status = &st_dummy;
    if (cfg == NULL || cfg->num_workers < 1 || cfg->num_workers > ZL_MAX_THREADS - 1 || cfg->spin_us < 0) {
        *status = ZL_POOL_EINVAL;
        return NULL;
    }
    pthread_once(&g_atfork_once, register_atfork);
    zl_pool *p = zl_cacheline_calloc(1, sizeof(zl_pool));
    if (p == NULL) {
        *status = ZL_POOL_ENOMEM;
        return NULL;
    }
    p->nworkers = cfg->num_workers;
    p->id = atomic_fetch_add(&g_pool_ids, 1) + 1;
    p->fork_gen = zl_fork_generation();
    p->spin_ns = cfg->spin_us > 1000000 ? 1000000000 : cfg->spin_us * 1000;
    p->numa_policy = cfg->numa_policy;
    p->num_nodes = cfg->num_nodes;
    pthread_mutex_init(&p->inj_lock, NULL);
    pthread_mutex_init(&p->shutdown_lock, NULL);
    p->inj_cap = 256;
    p->inj_buf = malloc((size_t)p->inj_cap * sizeof(zl_task *));
    p->workers = zl_cacheline_calloc((size_t)p->nworkers, sizeof(zl_worker));
    if (p->inj_buf == NULL || p->workers == NULL) {
        p->nworkers = p->workers ? p->nworkers : 0;
        pool_release(p);
        *status = ZL_POOL_ENOMEM;
        return NULL;
    }
    uint64_t seed = (uint64_t)now_ns() | 1;
    for (int i = 0; i < p->nworkers; i++) {
        zl_worker *w = &p->workers[i];
        w->pool = p;
        w->index = i;
        w->cpu = cfg->worker_cpu ? cfg->worker_cpu[i] : -1;
        w->node = cfg->worker_node ? cfg->worker_node[i] : -1;
        w->rng = (seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)) | 1;
        w->deque = zl_deque_create(8);
        if (w->deque == NULL) {
            pool_release(p);
            *status = ZL_POOL_ENOMEM;
            return NULL;
        }
    }

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (cfg->stack_size > 0) {
        size_t size = cfg->stack_size < (size_t)PTHREAD_STACK_MIN ? (size_t)PTHREAD_STACK_MIN : cfg->stack_size;
        if (pthread_attr_setstacksize(&attr, size) != 0) {
            pthread_attr_destroy(&attr);
            pool_release(p);
            *status = ZL_POOL_EINVAL;
            return NULL;
        }
    }
    /* Workers block every signal: SIGINT and friends go to the application's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int failed = 0;
    for (int i = 0; i < p->nworkers; i++) {
        if (pthread_create(&p->workers[i].thread, &attr, worker_main, &p->workers[i]) != 0) {
            failed = 1;
            break;
        }
        p->workers[i].started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (failed) {
        atomic_store(&p->closing, 1);
        wake_all(p);
        for (int i = 0; i < p->nworkers; i++)
            if (p->workers[i].started) pthread_join(p->workers[i].thread, NULL);
        pool_release(p);
        *status = ZL_POOL_ETHREAD;
        return NULL;
    }
    *status = 0;
    return p;
}

int zl_pool_close(zl_pool *p, int cancel_pending) {
    if (p->fork_gen != zl_fork_generation()) {
        atomic_store(&p->closing, 1);
        return 0;
    }
    pthread_mutex_lock(&p->inj_lock);
    if (cancel_pending) atomic_store(&p->cancel, 1);
    atomic_store(&p->closing, 1);
    pthread_mutex_unlock(&p->inj_lock);
    wake_all(p);
    return 0;
}

int zl_pool_shutdown(zl_pool *p, int cancel_pending) {
    if (p->fork_gen != zl_fork_generation()) {
        /* The workers do not exist in this process, and the locks may be held
         * by threads that do not exist either: only mark the pool closed. */
        atomic_store(&p->closing, 1);
        p->joined = 1;
        return 0;
    }
    if (current_worker(p) != NULL) return ZL_POOL_ESELF;
    pthread_mutex_lock(&p->shutdown_lock);
    if (p->joined) {
        pthread_mutex_unlock(&p->shutdown_lock);
        return 0;
    }
    zl_pool_close(p, cancel_pending);
    for (int i = 0; i < p->nworkers; i++) pthread_join(p->workers[i].thread, NULL);
    /* Workers drain every queue before they exit; anything a last task queued
     * after that runs (or is cancelled) here. */
    for (zl_task *t; (t = find_task(p, NULL)) != NULL;) run_task(p, t);
    p->joined = 1;
    pthread_mutex_unlock(&p->shutdown_lock);
    return 0;
}

static void *pool_reaper(void *arg) {
    zl_pool_free(arg);
    return NULL;
}

void zl_pool_free(zl_pool *p) {
    if (p == NULL) return;
    if (p->fork_gen != zl_fork_generation()) {
        /* Child after fork: free the memory, never touch the inherited locks. */
        pool_release(p);
        return;
    }
    if (current_worker(p) != NULL) {
        /* The last reference went away inside one of the pool's own tasks (a
         * Python future dropped there): a worker cannot join itself, so a
         * detached thread frees the pool once this task has returned. */
        pthread_t reaper;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&reaper, &attr, pool_reaper, p);
        pthread_attr_destroy(&attr);
        if (rc != 0) zl_pool_close(p, 1); /* no thread: let the workers exit, leak the memory */
        return;
    }
    zl_pool_shutdown(p, 1);
    pthread_mutex_destroy(&p->inj_lock);
    pthread_mutex_destroy(&p->shutdown_lock);
    pool_release(p);
}

void zl_pool_get_stats(const zl_pool *cp, zl_pool_stats *s) {
    zl_pool *p = (zl_pool *)cp;
    memset(s, 0, sizeof *s);
    s->tasks_executed = atomic_load(&p->ext_executed);
    s->tasks_stolen = atomic_load(&p->ext_stolen);
    s->failed_steals = atomic_load(&p->ext_failed_steals);
    for (int i = 0; i < p->nworkers; i++) {
        zl_worker *w = &p->workers[i];
        s->tasks_executed += atomic_load_explicit(&w->executed, memory_order_relaxed);
        s->tasks_stolen += atomic_load_explicit(&w->stolen, memory_order_relaxed);
        s->failed_steals += atomic_load_explicit(&w->failed_steals, memory_order_relaxed);
        s->injected += atomic_load_explicit(&w->injected, memory_order_relaxed);
        s->sleeps += atomic_load_explicit(&w->sleeps, memory_order_relaxed);
        s->wakes += atomic_load_explicit(&w->wakes, memory_order_relaxed);
        int64_t hw = atomic_load_explicit(&w->high_water, memory_order_relaxed);
        if (hw > s->queue_high_water) s->queue_high_water = hw;
    }
    /* inj_high is written under the lock; a torn read is impossible for an aligned int64. */
    int64_t ih = *(volatile int64_t *)&p->inj_high;
    if (ih > s->queue_high_water) s->queue_high_water = ih;
    ih = atomic_load(&p->ext_high_water);
    if (ih > s->queue_high_water) s->queue_high_water = ih;
    s->tasks_submitted = atomic_load(&p->submitted);
    s->parallel_fors = atomic_load(&p->parallel_fors);
    s->affinity_failures = atomic_load(&p->affinity_failures);
    s->numa_applied = atomic_load(&p->numa_applied);
}

void zl_pool_reset_stats(zl_pool *p) {
    atomic_store(&p->ext_executed, 0);
    atomic_store(&p->ext_stolen, 0);
    atomic_store(&p->ext_failed_steals, 0);
    atomic_store(&p->submitted, 0);
    atomic_store(&p->parallel_fors, 0);
    atomic_store(&p->ext_high_water, 0);
    for (int i = 0; i < p->nworkers; i++) {
        zl_worker *w = &p->workers[i];
        atomic_store(&w->executed, 0);
        atomic_store(&w->stolen, 0);
        atomic_store(&w->failed_steals, 0);
        atomic_store(&w->injected, 0);
        atomic_store(&w->sleeps, 0);
        atomic_store(&w->wakes, 0);
        atomic_store(&w->high_water, 0);
    }
    pthread_mutex_lock(&p->inj_lock);
    p->inj_high = p->inj_count;
    pthread_mutex_unlock(&p->inj_lock);
}

/* ------------------------------------------------------------------------ */
/* submit / wait                                                             */
/* ------------------------------------------------------------------------ */

/* Queue an already built task: own deque from a worker, else the injection queue. */
static int enqueue(zl_pool *p, zl_worker *w, zl_task *t) {
    if (w != NULL) {
        int rc = zl_deque_push(w->deque, t);
        if (rc != 0) return rc;
        note_high_water(w);
        return 0;
    }
    zl_deque *own = external_deque(p, 1);
    if (own != NULL && zl_deque_push(own, t) == 0) {
        /* A shutdown may have started since the caller checked: then the workers
         * may have looked at this deque for the last time. Take the task back
         * unless one of them has it already (then it runs). */
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&p->closing, memory_order_seq_cst)) {
            zl_task *back = zl_deque_take(own);
            if (back == t) return ZL_POOL_ECLOSED;
            if (back != NULL) zl_deque_push(own, back);
        }
        int64_t size = zl_deque_size(own);
        if (size > atomic_load_explicit(&p->ext_high_water, memory_order_relaxed))
            atomic_store_explicit(&p->ext_high_water, size, memory_order_relaxed);
        return 0;
    }
    pthread_mutex_lock(&p->inj_lock);
    int rc = atomic_load(&p->closing) ? ZL_POOL_ECLOSED : inj_push_locked(p, t);
    pthread_mutex_unlock(&p->inj_lock);
    return rc;
}

int zl_pool_submit(zl_pool *p, zl_task_group *g, zl_task_fn fn, zl_cancel_fn cancel, void *ctx) {
    if (fn == NULL) return ZL_POOL_EINVAL;
    zl_worker *w = current_worker(p);
    int rc = zl_pool_check(p);
    /* A task of a closing pool may still queue work: the workers drain it. */
    if (rc != 0 && !(rc == ZL_POOL_ECLOSED && w != NULL)) return rc;
    task_cache *cache = w != NULL ? &w->cache : (external_deque(p, 1) != NULL ? tls_external.cache : NULL);
    zl_task *t = task_alloc(cache);
    if (t == NULL) return ZL_POOL_ENOMEM;
    t->fn = fn;
    t->cancel = cancel;
    t->ctx = ctx;
    t->group = g;
    t->kind = TASK_USER;
    if (g != NULL) atomic_fetch_add_explicit(&g->pending, 1, memory_order_relaxed);
    rc = enqueue(p, w, t);
    if (rc != 0) {
        if (g != NULL) atomic_fetch_sub_explicit(&g->pending, 1, memory_order_relaxed);
        task_free(t);
        return rc;
    }
    atomic_fetch_add_explicit(&p->submitted, 1, memory_order_relaxed);
    notify(p, 1);
    return 0;
}

int zl_task_group_wait(zl_pool *p, zl_task_group *g) {
    zl_worker *w = current_worker(p);
    int forked = p->fork_gen != zl_fork_generation();
    while (atomic_load_explicit(&g->pending, memory_order_acquire) > 0) {
        if (forked) return ZL_POOL_EFORKED;
        /* Help: run queued tasks (ours or not) instead of idling. */
        zl_task *t = find_task(p, w);
        if (t != NULL) {
            run_task(p, t);
            continue;
        }
        int64_t deadline = now_ns() + p->spin_ns;
        while (atomic_load_explicit(&g->pending, memory_order_acquire) > 0 && !work_available(p) &&
               now_ns() < deadline)
            for (int i = 0; i < 16; i++) cpu_relax();
        if (atomic_load_explicit(&g->pending, memory_order_acquire) == 0 || work_available(p)) continue;
        uint32_t seq = atomic_load_explicit(&p->group_seq, memory_order_seq_cst);
        atomic_fetch_add_explicit(&p->group_waiters, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&g->pending, memory_order_seq_cst) > 0) futex_wait(&p->group_seq, seq);
        atomic_fetch_sub_explicit(&p->group_waiters, 1, memory_order_seq_cst);
    }
    return atomic_load_explicit(&g->status, memory_order_acquire);
}

int zl_pool_help_once(zl_pool *p) {
    if (p->fork_gen != zl_fork_generation()) return 0;
    zl_task *t = find_task(p, current_worker(p));
    if (t == NULL) return 0;
    run_task(p, t);
    return 1;
}

void *zl_pool_claim_next_if(zl_pool *p, zl_task_fn fn) {
    zl_worker *w = current_worker(p);
    if (w == NULL || p->fork_gen != zl_fork_generation() || atomic_load_explicit(&p->cancel, memory_order_relaxed))
        return NULL;
    zl_task *t = find_task(p, w);
    if (t == NULL) return NULL;
    if (t->kind == TASK_USER && t->fn == fn && t->group == NULL) {
        void *ctx = t->ctx;
        task_free(t);
        count_executed(p, w, 1);
        return ctx;
    }
    /* Another kind of task: back onto our own deque, where this worker takes it
     * next (or a thief does), once the caller has returned. */
    if (zl_deque_push(w->deque, t) != 0) run_task(p, t); /* no memory to queue it: run it now */
    else notify(p, 1);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* parallel_for                                                              */
/* ------------------------------------------------------------------------ */

typedef struct pfor_job {
    _Alignas(ZL_CACHE_LINE) _Atomic int64_t next; /* next chunk to claim */
    _Alignas(ZL_CACHE_LINE) _Atomic int64_t remaining; /* chunks not finished */
    _Atomic int status;
    _Atomic uint32_t done;  /* futex word: 1 when remaining reached 0 */
    _Atomic int waiting;
    _Atomic int refs;       /* the caller + helpers not yet run */
    zl_pool *pool;
    int64_t n, grain, nchunks;
    zl_range_fn fn;
    void *ctx;
    int nhelpers;
    zl_task helpers[];
} pfor_job;

static void job_release(pfor_job *job) {
    if (atomic_fetch_sub_explicit(&job->refs, 1, memory_order_acq_rel) == 1) zl_cacheline_free(job);
}

/* Claim and run chunks until none are left. Each chunk is counted before it is
 * marked finished, so the statistics are complete when parallel_for returns. */
static void job_work(pfor_job *job) {
    zl_pool *p = job->pool;
    zl_worker *w = current_worker(p);
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (i >= job->nchunks) break;
        /* After a failure the remaining chunks are skipped, not run. */
        if (atomic_load_explicit(&job->status, memory_order_relaxed) == 0) {
            int64_t begin = i * job->grain;
            int64_t end = begin + job->grain < job->n ? begin + job->grain : job->n;
            int rc = job->fn(job->ctx, begin, end);
            if (rc != 0) {
                int zero = 0;
                atomic_compare_exchange_strong(&job->status, &zero, rc);
            }
            count_executed(p, w, 1);
        }
        if (atomic_fetch_sub_explicit(&job->remaining, 1, memory_order_seq_cst) == 1) {
            atomic_store_explicit(&job->done, 1, memory_order_seq_cst);
            if (atomic_load_explicit(&job->waiting, memory_order_seq_cst)) futex_wake(&job->done, 1);
        }
    }
}

static void pfor_helper_run(zl_task *t) {
    pfor_job *job = t->ctx;
    job_work(job); /* counts its own chunks */
    job_release(job);
}

__attribute__((visibility("default"))) int zl_parallel_for(zl_pool *p, int64_t n, int64_t grain, zl_range_fn fn,
                                                           void *ctx) {
    if (n < 0 || fn == NULL) return ZL_POOL_EINVAL;
    if (n == 0) return 0;
    zl_worker *w = current_worker(p);
    int rc = zl_pool_check(p);
    if (rc != 0 && !(rc == ZL_POOL_ECLOSED && w != NULL)) return rc;
    atomic_fetch_add_explicit(&p->parallel_fors, 1, memory_order_relaxed);
    int threads = p->nworkers + 1;
    if (grain <= 0) {
        /* Chunks are claimed one at a time (an atomic add, tens of ns), so many
         * small ones cost little, and a thread the OS preempts holds back at
         * most one small chunk. */
        grain = n / ((int64_t)threads * ZL_PFOR_CHUNKS_PER_THREAD);
        if (grain < 1) grain = 1;
    }
    int64_t nchunks = (n - 1) / grain + 1;
    /* Workers that could help: all of them, or all but the caller when it is one. */
    int64_t idle = w != NULL ? p->nworkers - 1 : p->nworkers;
    int nhelpers = (int)(nchunks - 1 < idle ? nchunks - 1 : idle);
    if (nhelpers <= 0) {
        /* Nothing to share: run the chunks here, in order, without a job. */
        int status = 0;
        int64_t i = 0;
        while (i < nchunks && status == 0) {
            int64_t begin = i * grain, end = begin + grain < n ? begin + grain : n;
            status = fn(ctx, begin, end);
            i++;
        }
        count_executed(p, w, i);
        return status;
    }
    pfor_job *job = zl_cacheline_calloc(1, sizeof(pfor_job) + (size_t)nhelpers * sizeof(zl_task));
    if (job == NULL) return ZL_POOL_ENOMEM;
    atomic_init(&job->next, 0);
    atomic_init(&job->remaining, nchunks);
    atomic_init(&job->status, 0);
    atomic_init(&job->done, 0);
    atomic_init(&job->waiting, 0);
    job->pool = p;
    job->n = n;
    job->grain = grain;
    job->nchunks = nchunks;
    job->fn = fn;
    job->ctx = ctx;
    job->nhelpers = nhelpers;
    atomic_init(&job->refs, nhelpers + 1);
    for (int i = 0; i < nhelpers; i++) {
        job->helpers[i] = (zl_task){.fn = NULL, .cancel = NULL, .ctx = job, .group = NULL, .kind = TASK_PFOR_HELPER};
    }

    /* Queue the helpers (a failure to queue one only means less help). */
    int queued = 0;
    zl_deque *own = w != NULL ? w->deque : external_deque(p, 1);
    if (own != NULL) {
        for (int i = 0; i < nhelpers; i++)
            if (zl_deque_push(own, &job->helpers[i]) == 0) queued++;
        if (w != NULL) note_high_water(w);
    } else {
        pthread_mutex_lock(&p->inj_lock);
        for (int i = 0; i < nhelpers; i++)
            if (inj_push_locked(p, &job->helpers[i]) == 0) queued++;
        pthread_mutex_unlock(&p->inj_lock);
    }
    if (queued < nhelpers) atomic_fetch_sub(&job->refs, nhelpers - queued);
    if (queued > 0) notify(p, queued);

    job_work(job);

    /* Wait for chunks other threads claimed: spin first (they are usually short),
     * then yield (the thread running them may be waiting for this CPU), then sleep. */
    for (int i = 0; atomic_load_explicit(&job->remaining, memory_order_acquire) > 0; i++) {
        if (i < 1024) {
            cpu_relax();
            continue;
        }
        if (i < 1024 + 64) {
            sched_yield();
            continue;
        }
        atomic_store_explicit(&job->waiting, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&job->remaining, memory_order_seq_cst) > 0) futex_wait(&job->done, 0);
    }
    int status = atomic_load_explicit(&job->status, memory_order_acquire);

    if (own != NULL) {
        /* Our helpers nobody took are on top of our deque: take them back now
         * rather than leave them to be run for nothing later. */
        zl_task *t;
        while ((t = zl_deque_take(own)) != NULL) {
            if (t->kind != TASK_PFOR_HELPER || t->ctx != job) {
                zl_deque_push(own, t); /* cannot fail: the slot was just freed */
                break;
            }
            job_release(job);
        }
    }
    job_release(job);
    return status;
}
