"""CPU topology, a work-stealing thread pool and parallel row operations.

The twin of ZigLlama's ``threading.zig``. The lock-free parts (the Chase-Lev deque,
the pool, ``parallel_for``) are C in ``src/threading/`` behind
``zigllama/zl_threading.h``; this module reads the machine's topology, builds pool
configurations, runs Python callables on the pool (taking the GIL in the worker)
and gives the ``parallel_for`` C API to Cython callers (see ``threading.pxd``).
"""
import atexit
import os
import threading as _pythreading
import time
import weakref
from concurrent.futures import Executor, Future

import numpy as np

from cpython.buffer cimport PyBUF_FORMAT
from cpython.ref cimport Py_DECREF, Py_INCREF
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, getenv, malloc
from libc.string cimport memcpy, memset, strcmp, strlen

from .. import _config
from .._config import resolve_threads
from ..errors import (
    BlasError,
    IncompatibleShapes,
    InvalidShape,
    NotCopyable,
    OutOfMemory,
    ThreadPoolError,
    UnsupportedDtype,
)

cdef extern from "affinity.h" nogil:
    int zl_affinity_cpus() noexcept

cdef extern from "probes.h" nogil:
    ctypedef struct zl_probe_sleep:
        long ns
        int64_t done
        int64_t cancelled
    int zl_probe_empty_rows(void *ctx, int64_t begin, int64_t end) noexcept
    int zl_probe_spin_rows(void *ctx, int64_t begin, int64_t end) noexcept
    int zl_probe_empty_task(void *ctx) noexcept
    int zl_probe_sleep_task(void *ctx) noexcept
    void zl_probe_sleep_cancel(void *ctx) noexcept
    int64_t zl_probe_now_ns() noexcept
    size_t zl_pool_worker_stride() noexcept

from .tensor cimport RangeTask, range_fn_t, set_range_runner
from .array_data cimport array_data
from libc.stdint cimport uintptr_t
from .tensor import matmul_backend

# The pool's pure Python (topology, configuration, statistics) sits below this
# module; its names are this module's too.
from .cpu_topology import CpuTopology
from .thread_pool_config import DEFAULT_SPIN_US, DEFAULT_STACK_SIZE, NumaPolicy, ThreadPoolConfig
from .thread_pool_stats import ThreadPoolStats

if (NumaPolicy.DISABLED, NumaPolicy.LOCAL, NumaPolicy.INTERLEAVE, NumaPolicy.BALANCED) != \
        (ZL_NUMA_DISABLED, ZL_NUMA_LOCAL, ZL_NUMA_INTERLEAVE, ZL_NUMA_BALANCED):
    raise ImportError("NumaPolicy's values differ from zl_numa_policy in zigllama/zl_threading.h")
CACHE_LINE = ZL_CACHE_LINE
# The pool's own status codes (zl_threading.h), for C-level callers and tests.
POOL_ECLOSED = ZL_POOL_ECLOSED
POOL_ENOMEM = ZL_POOL_ENOMEM
POOL_EFORKED = ZL_POOL_EFORKED
POOL_EINVAL = ZL_POOL_EINVAL
_EFORKED = ZL_POOL_EFORKED

_POOL_ERRORS = {
    ZL_POOL_ECLOSED: "the thread pool is shut down",
    ZL_POOL_ENOMEM: "out of memory in the thread pool",
    ZL_POOL_EFORKED: ("the thread pool was created in the parent process before fork(); "
                      "its workers do not exist here: create a new pool in the child "
                      "(zigllama.default_pool() does so by itself)"),
    ZL_POOL_EINVAL: "invalid argument to the thread pool",
    ZL_POOL_ECANCELLED: "the task was cancelled by a shutdown",
    ZL_POOL_ESELF: "a thread pool cannot be shut down from one of its own tasks",
    ZL_POOL_ETHREAD: "could not start the worker threads (pthread_create failed)",
}


def _pool_error(int status):
    if status == ZL_POOL_ENOMEM:
        return OutOfMemory(_POOL_ERRORS.get(status))
    msg = _POOL_ERRORS.get(status)
    if msg is None:
        msg = f"a task failed with status {status}"
    return ThreadPoolError(msg)


cdef int check_pool_status(int status) except -1 nogil:
    if status >= 0:
        return status
    with gil:
        raise _pool_error(status)


cdef int pool_threads(zl_pool *pool) noexcept nogil:
    return zl_pool_num_workers(pool) + 1


cdef zl_pool *current_thread_pool() noexcept nogil:
    return zl_pool_of_current_thread()


cdef int parallel_for_status(zl_pool *pool, int64_t n, int64_t grain, zl_range_fn fn, void *ctx) noexcept nogil:
    return zl_parallel_for(pool, n, grain, fn, ctx)


cdef int parallel_for(zl_pool *pool, int64_t n, int64_t grain, zl_range_fn fn, void *ctx) except -1 nogil:
    return check_pool_status(zl_parallel_for(pool, n, grain, fn, ctx))


cdef int submit(zl_pool *pool, zl_task_group *group, zl_task_fn fn, void *ctx) except -1 nogil:
    return check_pool_status(zl_pool_submit(pool, group, fn, NULL, ctx))


cdef int wait(zl_pool *pool, zl_task_group *group) except -1 nogil:
    return check_pool_status(zl_task_group_wait(pool, group))


cdef extern from "Python.h":
    void PyErr_SetInterrupt()


cdef zl_pool *lookup_default_pool(void **ref) noexcept nogil:
    # The default pool, with a reference held until release_pool(ref); NULL
    # (run on the caller) if it cannot be had. Takes the GIL. This function
    # cannot raise: an error means running on the caller, except that a Ctrl-C
    # (KeyboardInterrupt) that arrived meanwhile is signalled again, so that the
    # interpreter raises it at its next check instead of losing it.
    with gil:
        try:
            pool = default_pool()
            result = pool_ptr(pool)
        except Exception:
            ref[0] = NULL
            return NULL
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                PyErr_SetInterrupt()
            ref[0] = NULL
            return NULL
        Py_INCREF(pool)
        ref[0] = <void *>pool
        return result


cdef zl_pool *acquire_pool(void **ref) noexcept nogil:
    # The pool to split on (see lookup_default_pool for `ref`). Inside a pool's
    # task that is the task's own pool, found without the GIL: the thread
    # waiting for the task may hold the GIL, and taking it here would deadlock.
    # (This function has no Python locals, so Cython takes no GIL on its way
    # out either.) Elsewhere the default pool.
    cdef zl_pool *own = current_thread_pool()
    if own != NULL:
        ref[0] = NULL
        return own
    return lookup_default_pool(ref)


cdef void release_pool(void *ref) noexcept nogil:
    if ref != NULL:
        with gil:
            Py_DECREF(<object>ref)


cdef int _run_range(int64_t nchunks, int64_t grain, range_fn_t fn, void *ctx) noexcept nogil:
    # The tensor module's range runner (what the BLAS module splits large GEMMs
    # with): chunks on the pool, or all on the caller when the pool cannot take
    # them (shut down, out of memory): a chunk only writes its own block of the output.
    cdef void *ref = NULL
    cdef zl_pool *pool = acquire_pool(&ref)
    cdef int rc = ZL_POOL_EINVAL
    if pool != NULL:
        rc = zl_parallel_for(pool, nchunks, grain, fn, ctx)
    release_pool(ref)
    if rc <= ZL_POOL_ECLOSED and rc >= ZL_POOL_ETHREAD:
        rc = fn(ctx, 0, nchunks)
    return rc


def install_range_runner():
    """The package's wiring (zigllama._core.wire): the pool becomes the tensor
    module's range runner, which the BLAS module splits large GEMMs with."""
    set_range_runner(_run_range)


# --------------------------------------------------------------------------
# The pool
# --------------------------------------------------------------------------

cdef class PoolHandle:
    """Owns a native pool. Built by ThreadPool; Cython code gets at the
    ``zl_pool *`` with ``pool_ptr(pool)``."""

    def __cinit__(self, config):
        cdef zl_pool_config c
        cdef int status = 0
        cdef int *cpus = NULL
        cdef int *nodes = NULL
        n = config.num_workers
        cpu_list = config.worker_cpus()
        node_list = config.worker_nodes()
        topo = config.topology
        cpus = <int *>malloc(n * sizeof(int))
        nodes = <int *>malloc(n * sizeof(int))
        if cpus == NULL or nodes == NULL:
            free(cpus)
            free(nodes)
            raise OutOfMemory("out of memory for the pool configuration")
        for i in range(n):
            cpus[i] = cpu_list[i]
            nodes[i] = node_list[i]
        memset(&c, 0, sizeof(c))
        c.num_workers = n
        c.stack_size = config.stack_size
        c.spin_us = config.spin_us
        c.numa_policy = int(config.numa_policy)
        c.num_nodes = topo.num_numa_nodes if topo is not None else 1
        c.worker_cpu = cpus
        c.worker_node = nodes
        with nogil:
            self.ptr = zl_pool_create(&c, &status)
        free(cpus)
        free(nodes)
        if self.ptr == NULL:
            raise _pool_error(status)
        self.num_workers = n
        self.fork_generation = zl_fork_generation()

    def __dealloc__(self):
        if self.ptr != NULL:
            # Joining may need the GIL (a running Python task): release it.
            with nogil:
                zl_pool_free(self.ptr)
            self.ptr = NULL

    def close(self, bint cancel=False):
        with nogil:
            zl_pool_close(self.ptr, cancel)

    def shutdown(self, bint cancel=False):
        cdef int rc
        with nogil:
            rc = zl_pool_shutdown(self.ptr, cancel)
        if rc != 0:
            raise _pool_error(rc)

    def check(self):
        cdef int rc = zl_pool_check(self.ptr)
        if rc != 0:
            raise _pool_error(rc)

    @property
    def usable(self):
        return zl_pool_check(self.ptr) == 0

    @property
    def forked(self):
        return zl_pool_check(self.ptr) == ZL_POOL_EFORKED

    def current_worker(self):
        return zl_pool_current_worker(self.ptr)

    def stats(self):
        cdef zl_pool_stats s
        zl_pool_get_stats(self.ptr, &s)
        counters = s
        return ThreadPoolStats(**counters)

    def reset_stats(self):
        zl_pool_reset_stats(self.ptr)


cdef zl_pool *pool_ptr(object pool) except NULL:
    if pool is None:
        pool = default_pool()
    if isinstance(pool, ThreadPool):
        pool = (<object>pool)._handle
    if not isinstance(pool, PoolHandle):
        raise TypeError(f"expected a ThreadPool or None, got {type(pool).__name__}")
    return (<PoolHandle>pool).ptr


cdef inline object _adopt(void *ref):
    # The object behind a reference that travelled through C (taken with
    # Py_INCREF by whoever queued it): returned as an owned Python object.
    obj = <object>ref
    Py_DECREF(obj)
    return obj


# A Python task is a tuple (pending set, future, fn, args, kwargs) whose reference
# travels through the C queue as its ctx.

# Python tasks one worker runs under one GIL acquisition at most (the first
# and the ones queued right behind it). Fairness does not suffer: the
# interpreter still hands the GIL over between bytecodes when another thread
# asks, only the hand-over between consecutive tasks is saved.
cdef int PYTHON_BATCH = 1024


cdef inline void _run_python_item(void *ctx):
    item = _adopt(ctx)  # the reference submit took
    try:
        pending, future, fn, args, kwargs = item
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
        # Only now: a fork while it runs must still find it (and fail it in the child).
        pending.discard(future)
    except BaseException:
        pass  # a future already resolved elsewhere (fork): nothing to report to


cdef int _run_python_task(void *ctx) noexcept nogil:
    cdef zl_pool *pool = zl_pool_of_current_thread()
    cdef void *next_ctx
    cdef int batched = 0
    with gil:
        _run_python_item(ctx)
        while pool != NULL and batched < PYTHON_BATCH:
            next_ctx = zl_pool_claim_next_if(pool, _run_python_task)
            if next_ctx == NULL:
                break
            _run_python_item(next_ctx)
            batched += 1
    return 0


cdef void _cancel_python_task(void *ctx) noexcept nogil:
    with gil:
        item = _adopt(ctx)
        try:
            pending, future = item[0], item[1]
            pending.discard(future)
            future.cancel()
        except BaseException:
            pass


_live_pools = weakref.WeakSet()


class PoolFuture(Future):
    """The Future of a ThreadPool task.

    It holds its pool (a pool referenced only through its futures stays alive
    until they are done, as with concurrent.futures). ``result()`` and
    ``exception()`` called on one of the pool's own workers help while they
    wait: the worker runs other queued tasks (the awaited one among them)
    instead of blocking, so a task that submits a sub-task and waits for it
    completes even on a pool of one worker."""

    def __init__(self, pool):
        super().__init__()
        self._pool = pool

    def _help_while_pending(self, timeout):
        cdef PoolHandle h = self._pool._handle
        cdef int ran
        if self.done() or zl_pool_current_worker(h.ptr) < 0:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            with nogil:
                ran = zl_pool_help_once(h.ptr)
            if ran:
                continue
            wait = 0.001
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            with self._condition:
                if not self.done():
                    # Woken at once when the future completes; the time-out only
                    # brings the worker back to look for other tasks to help with.
                    self._condition.wait(wait)

    def result(self, timeout=None):
        self._help_while_pending(timeout)
        return super().result(timeout)

    def exception(self, timeout=None):
        self._help_while_pending(timeout)
        return super().exception(timeout)


class ThreadPool(Executor):
    """A work-stealing pool of native threads (threading.zig's ThreadPool).

    ``ThreadPool(num_threads=None, *, numa_policy="balanced", affinity=False,
    stack_size=8 MiB, spin_us=50, config=None)``: ``num_threads`` threads work in
    a ``parallel_for``, the caller and ``num_threads - 1`` workers (at least one).
    A ``concurrent.futures.Executor``: ``submit`` returns a Future whose
    ``result()`` re-raises the task's exception; ``map``; ``shutdown``/``close``;
    a context manager. Python tasks take the GIL in the worker; C tasks submitted
    through the Cython API (``threading.pxd``) run without it.
    """

    def __init__(self, num_threads=None, *, config=None, **options):
        if config is None:
            config = ThreadPoolConfig.detect(num_threads, **options)
        elif num_threads is not None or options:
            raise TypeError("pass either config or num_threads/options, not both")
        self.config = config
        self._handle = PoolHandle(config)
        self._pending = set()
        self._shutdown_lock = _pythreading.Lock()
        self._closed = False
        _live_pools.add(self)

    @property
    def num_threads(self):
        """Threads that work in a parallel_for: the workers and the caller."""
        return self._handle.num_workers + 1

    @property
    def num_workers(self):
        return self._handle.num_workers

    @property
    def closed(self):
        return not self._handle.usable

    def submit(self, fn, /, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on a worker; returns a Future."""
        cdef PoolHandle h = self._handle
        cdef int rc
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        h.check()
        future = PoolFuture(self)
        item = (self._pending, future, fn, args, kwargs)
        self._pending.add(future)
        Py_INCREF(item)
        rc = zl_pool_submit(h.ptr, NULL, _run_python_task, _cancel_python_task, <void *>item)
        if rc != 0:
            Py_DECREF(item)
            self._pending.discard(future)
            raise _pool_error(rc)
        return future

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Refuse new tasks; with ``wait``, run the queued ones (or cancel them with
        ``cancel_futures``) and join the workers. Idempotent."""
        with self._shutdown_lock:
            self._closed = True
            if wait:
                self._handle.shutdown(cancel_futures)
            else:
                self._handle.close(cancel_futures)

    def close(self):
        """shutdown(wait=True)."""
        self.shutdown(wait=True)

    def stats(self):
        """A ThreadPoolStats snapshot."""
        return self._handle.stats()

    def reset_stats(self):
        self._handle.reset_stats()

    def __reduce__(self):
        raise NotCopyable("a ThreadPool cannot be pickled or copied: it owns running threads; "
                          "make a new one with the same ThreadPoolConfig")

    def _after_fork_in_child(self):
        # The workers did not survive the fork: fail what waited on them.
        self._handle.close(True)
        for future in list(self._pending):
            try:
                future.set_exception(ThreadPoolError(_POOL_ERRORS.get(_EFORKED)))
            except Exception:
                pass
        self._pending.clear()

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<ThreadPool {state} threads={self.num_threads} workers={self.num_workers}>"


# --------------------------------------------------------------------------
# The thread setting and the default pool, as every call looks them up
# --------------------------------------------------------------------------
# _config.num_threads() reads the override, the threadpoolctl limit, the
# environment and the CPU affinity each time (2-3 µs, a tenth of a small GEMV).
# setting_threads() keeps its last answer beside the inputs it came from and
# gives it again while they are unchanged: _config's generation (every setter
# bumps it), _config._override and the pool limit (by identity, so a direct
# assignment is seen too), the variable as the C environment holds it now
# (os.environ writes through to it), and the affinity mask's size when the
# answer came from the CPU count.

cdef const char *SETTING_VARIABLE = b"ZIGLLAMA_NUM_THREADS"
# The longest variable value kept for comparison (a longer one is never cached).
cdef enum:
    SEEN_ENV_MAX = 64

cdef int _seen_threads = 0           # 0: nothing cached
cdef object _seen_generation = None
cdef object _seen_override = None
cdef object _seen_limit = None
cdef bint _seen_env_set = False
cdef char _seen_env[SEEN_ENV_MAX]
cdef int _seen_cpus = -1             # -1: the answer did not come from the CPU count


cdef inline bint _same_environment(bint env_set, const char *seen) noexcept:
    cdef const char *env = getenv(SETTING_VARIABLE)
    if env == NULL:
        return not env_set
    return env_set and strcmp(env, seen) == 0


cdef inline bint _same_inputs(generation, override, limit):
    return generation is _config._generation and override is _config._override and limit is _config._limits["pool"]


cdef int setting_threads() except -1:
    global _seen_threads, _seen_generation, _seen_override, _seen_limit, _seen_env_set, _seen_cpus
    if _seen_threads > 0 and _same_inputs(_seen_generation, _seen_override, _seen_limit) \
            and _same_environment(_seen_env_set, _seen_env) \
            and (_seen_cpus < 0 or zl_affinity_cpus() == _seen_cpus):
        return _seen_threads
    _seen_threads = 0
    generation = _config._generation
    override = _config._override
    limit = _config._limits["pool"]
    # The inputs as they are before the answer is computed (the variable copied
    # at once: a later write may free the string), kept only if none moved
    # meanwhile (another thread's setter, a change of the variable or mask).
    cdef char env[SEEN_ENV_MAX]
    cdef const char *now = getenv(SETTING_VARIABLE)
    cdef bint env_set = now != NULL
    cdef size_t env_len = strlen(now) if env_set else 0
    if env_len >= SEEN_ENV_MAX:
        return _config.num_threads()
    if env_set:
        memcpy(env, now, env_len + 1)
    cdef int cpus = zl_affinity_cpus()
    cdef int n = _config.num_threads()      # raises on a bad variable: nothing cached
    cdef bint from_cpus = _config.explicit_num_threads() is None
    if (from_cpus and (cpus < 0 or zl_affinity_cpus() != cpus)) or not _same_inputs(generation, override, limit) \
            or not _same_environment(env_set, env):
        return n
    _seen_env_set = env_set
    if env_set:
        memcpy(_seen_env, env, env_len + 1)
    _seen_generation = generation
    _seen_override = override
    _seen_limit = limit
    _seen_cpus = cpus if from_cpus else -1
    _seen_threads = n
    return n


_default = None
_default_lock = _pythreading.Lock()


cdef inline bint _serves(pool, int threads):
    # The default pool still usable (not shut down, not inherited across fork)
    # and of the size the setting asks for.
    cdef PoolHandle h = pool._handle
    return zl_pool_check(h.ptr) == 0 and h.num_workers + 1 == threads


cdef object current_default_pool():
    global _default
    cdef int want = setting_threads()
    cdef int size = want if want > 2 else 2   # a pool has one worker at least
    pool = _default
    if pool is not None and _serves(pool, size):
        return pool
    with _default_lock:
        pool = _default
        if pool is None or not _serves(pool, size):
            _default = pool = ThreadPool(want)
        return pool


cdef PoolHandle default_pool_handle():
    return (<object>current_default_pool())._handle


def default_pool():
    """The process-wide pool, created on first use and sized from the thread
    setting (``zigllama.set_num_threads`` / ZIGLLAMA_NUM_THREADS). A new one is
    made when the setting changed, after fork(), or if it was shut down."""
    return current_default_pool()


def _setting_cache():
    """(threads, override, limit, variable, cpus) as the thread setting's cache
    holds them now; threads 0 when nothing is cached (for the tests)."""
    return (_seen_threads, _seen_override, _seen_limit,
            (<bytes>_seen_env).decode() if _seen_env_set else None, _seen_cpus)


def _shutdown_all_pools():
    # Before the interpreter finalizes, while workers may still take the GIL.
    for pool in list(_live_pools):
        try:
            pool.shutdown(wait=True)
        except Exception:
            pass


def _after_fork_in_child():
    global _default, _default_lock
    _default = None
    _default_lock = _pythreading.Lock()
    for pool in list(_live_pools):
        pool._after_fork_in_child()


atexit.register(_shutdown_all_pools)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------
# The deque, for tests and teaching
# --------------------------------------------------------------------------

cdef class WorkStealingQueue:
    """The pool's Chase-Lev deque holding Python objects.

    The owner (the thread that created it) pushes and takes at the bottom (LIFO);
    any thread steals at the top (FIFO). ``take`` and ``push`` from another
    thread raise ThreadPoolError, as they would corrupt a real deque.
    """

    cdef zl_deque *q
    cdef readonly object owner

    def __cinit__(self, int log_capacity=4):
        if not 1 <= log_capacity <= 30:
            raise ValueError(f"log_capacity must be in [1, 30], got {log_capacity}")
        self.q = zl_deque_create(log_capacity)
        if self.q == NULL:
            raise OutOfMemory("out of memory for the deque")
        self.owner = _pythreading.get_ident()

    def __dealloc__(self):
        cdef void *x
        cdef int r
        if self.q != NULL:
            while True:
                x = zl_deque_steal(self.q, &r)
                if x == NULL:
                    if r == ZL_STEAL_ABORT:
                        continue
                    break
                _adopt(x)
            zl_deque_destroy(self.q)

    cdef _check_owner(self, what):
        if _pythreading.get_ident() != self.owner:
            raise ThreadPoolError(f"{what}() is for the deque's owner thread only; other threads steal()")

    def push(self, item):
        """Push at the bottom (owner only)."""
        self._check_owner("push")
        Py_INCREF(item)
        if zl_deque_push(self.q, <void *>item) != 0:
            Py_DECREF(item)
            raise OutOfMemory("out of memory growing the deque")

    def take(self):
        """The newest item (owner only); IndexError when empty."""
        self._check_owner("take")
        cdef void *x = zl_deque_take(self.q)
        if x == NULL:
            raise IndexError("take from an empty WorkStealingQueue")
        return _adopt(x)

    def steal(self):
        """The oldest item (any thread); IndexError when empty. A lost race with
        another taker is retried."""
        cdef void *x
        cdef int r = ZL_STEAL_ABORT
        while r == ZL_STEAL_ABORT:
            x = zl_deque_steal(self.q, &r)
        if x == NULL:
            raise IndexError("steal from an empty WorkStealingQueue")
        return _adopt(x)

    def __len__(self):
        return zl_deque_size(self.q)

    @property
    def capacity(self):
        return zl_deque_capacity(self.q)

    @property
    def retired_arrays(self):
        """Outgrown arrays kept until the deque is destroyed (a thief may still read them)."""
        return zl_deque_retired(self.q)


# --------------------------------------------------------------------------
# NUMA-aware allocation
# --------------------------------------------------------------------------

cdef class _NumaBuffer:
    cdef void *ptr
    cdef size_t size
    cdef readonly bint bound
    cdef readonly int node
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __cinit__(self, size_t size, int node, int num_nodes):
        cdef int bound = 0
        self.ptr = zl_numa_alloc(size, node, num_nodes, &bound)
        if self.ptr == NULL:
            raise OutOfMemory(f"could not map {size} bytes for NUMA node {node}")
        self.size = size
        self.bound = bound
        self.node = node

    def __dealloc__(self):
        zl_numa_free(self.ptr, self.size)

    def __getbuffer__(self, Py_buffer *view, int flags):
        self.shape[0] = self.size
        self.strides[0] = 1
        view.buf = self.ptr
        view.obj = self
        view.len = self.size
        view.readonly = 0
        view.itemsize = 1
        if flags & PyBUF_FORMAT:
            view.format = b"B"
        else:
            view.format = NULL
        view.ndim = 1
        view.shape = self.shape
        view.strides = self.strides
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer *view):
        pass


class NumaAllocator:
    """Arrays whose pages live on one NUMA node (threading.zig's NumaAllocator).

    Memory is mapped fresh and bound with mbind(2) before first touch, so each
    page is placed on ``node``. On a single-node machine (or with node=None) no
    system call is made and this is a plain anonymous mapping: ``bound`` says
    which happened.
    """

    def __init__(self, node=None, topology=None):
        self.topology = topology or CpuTopology.detect()
        if node is not None and int(node) not in self.topology.numa_nodes:
            raise ValueError(f"no NUMA node {node}; this machine has {sorted(self.topology.numa_nodes)}")
        self.node = None if node is None else int(node)

    def empty(self, shape, dtype=np.float32):
        """A zero-filled C-contiguous array (fresh pages are zero)."""
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise InvalidShape(f"negative dimension in shape {shape}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        nbytes = count * dtype.itemsize
        buf = _NumaBuffer(max(nbytes, 1), -1 if self.node is None else self.node,
                          self.topology.num_numa_nodes)
        arr = np.frombuffer(buf, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)
        return arr

    zeros = empty

    @staticmethod
    def is_bound(array):
        """True when the array's memory was bound to a node with mbind."""
        base = array
        while base is not None and not isinstance(base, _NumaBuffer):
            base = getattr(base, "base", None)
            if isinstance(base, memoryview):
                base = base.obj
        return bool(base is not None and base.bound)

    @staticmethod
    def node_of(array):
        """The NUMA node holding the array's first page, or -1 if the kernel will not say."""
        array = np.asarray(array)
        if array.nbytes == 0:
            return -1
        return zl_numa_node_of(<const void *><uintptr_t>array_data(array))


# --------------------------------------------------------------------------
# Parallel operations
# --------------------------------------------------------------------------

def _as_rows(x, name):
    """A C-contiguous float32/float64 array and its (rows, last axis) view."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise UnsupportedDtype(f"{name} must be float32 or float64, got {x.dtype}")
    if x.ndim < 1:
        raise InvalidShape(f"{name} must have at least one dimension, got shape {x.shape}")
    x = np.ascontiguousarray(x)
    cols = x.shape[x.ndim - 1]
    return x, x.reshape(x.size // cols if cols else int(np.prod(x.shape[:x.ndim - 1])), cols)


def _out_array(out, shape, dtype, name="out"):
    """`out` checked to be a writeable C-contiguous array of this shape and dtype,
    or a new one."""
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array")
    if out.shape != tuple(shape):
        raise IncompatibleShapes(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise UnsupportedDtype(f"{name} has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    return out


cdef int _run_rows(zl_pool *pool, int64_t rows, int64_t grain, zl_range_fn fn, zl_rows_ctx *ctx) except -1:
    cdef int status
    with nogil:
        status = parallel_for(pool, rows, grain, fn, ctx)
    if status != 0:
        raise ThreadPoolError(f"a row kernel failed with status {status}")
    return 0


def _matrix(x, name):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise UnsupportedDtype(f"{name} must be float32 or float64, got {x.dtype}")
    if x.ndim != 2:
        raise InvalidShape(f"{name} must be a 2-D matrix, got shape {x.shape}")
    return np.ascontiguousarray(x)


class ParallelOps:
    """Row-parallel operations on a pool (threading.zig's ParallelOps).

    Each row is independent, so rows are split in blocks of ``grain`` (default:
    about four blocks per thread) and run on the workers and the caller.
    """

    def __init__(self, pool=None):
        self.pool = pool if pool is not None else default_pool()
        if not isinstance(self.pool, ThreadPool):
            raise TypeError(f"pool must be a ThreadPool or None, got {type(pool).__name__}")

    def _grain(self, grain):
        if grain is None:
            return 0
        grain = int(grain)
        if grain < 1:
            raise ValueError(f"grain must be >= 1, got {grain}")
        return grain

    def softmax(self, x, out=None, grain=None):
        """softmax over the last axis, max-subtracted (never overflows); equals
        ``exp(x - max) / sum(exp(x - max))`` computed by numpy."""
        cdef zl_rows_ctx ctx
        x, rows = _as_rows(x, "x")
        out = _out_array(out, x.shape, x.dtype)
        if x.size == 0:
            return out
        ctx.x = <const void *><uintptr_t>array_data(rows)
        ctx.out = <void *><uintptr_t>array_data(out)
        ctx.weight = NULL
        ctx.cols = rows.shape[1]
        ctx.eps = 0.0
        _run_rows(pool_ptr(self.pool), rows.shape[0], self._grain(grain),
                  zl_softmax_rows_f32 if x.dtype == np.float32 else zl_softmax_rows_f64, &ctx)
        return out

    def matmul(self, a, b, out=None, blas=None, grain=None):
        """``a @ b`` by blocks of ``grain`` rows of ``a``, each block one GEMM
        through the BLAS vtable (``zigllama.get_blas(blas)``). The BLAS's own
        threads are pinned to one meanwhile (scipy's BLAS through its thread
        setting, a one-thread context for the generic backend): the pool is the
        only parallel layer, nothing nests.

        ``b`` may also be a quantized weight's transpose (``QuantizedTensor.T``):
        the product then runs in ``zigllama.qgemm`` on this pool (``blas``
        serves the exact mode's panels), ``a`` float32 (m, k)."""
        if hasattr(type(b), "_zl_rmatmul"):
            return b._zl_rmatmul(_matrix(a, "a"), out=out, pool=self.pool, blas=blas)
        a = _matrix(a, "a")
        b = _matrix(b, "b")
        if a.dtype != b.dtype:
            raise UnsupportedDtype(f"a is {a.dtype} and b is {b.dtype}: use one dtype")
        if a.shape[1] != b.shape[0]:
            raise IncompatibleShapes(f"cannot multiply {a.shape} by {b.shape}: "
                                     f"inner dimensions {a.shape[1]} != {b.shape[0]}")
        m, k, n = a.shape[0], a.shape[1], b.shape[1]
        out = _out_array(out, (m, n), a.dtype)
        if m == 0 or n == 0:
            return out
        if k == 0:
            out[...] = 0
            return out
        if grain is None:
            # About two blocks per thread: big enough for the GEMM to run at full
            # speed, small enough for stealing to even out the threads.
            grain = max(8, -(-m // (2 * self.pool.num_threads)))
        # The backend comes from the tensor module's registry (this module does
        # not import the BLAS module): a RangeTask of row-block GEMMs.
        cdef RangeTask task = matmul_backend(blas).gemm_rows(a, b, out)
        cdef zl_pool *p = pool_ptr(self.pool)
        cdef int status = 0
        cdef int64_t rows = m
        cdef int64_t g = self._grain(grain)
        with task:
            with nogil:
                status = parallel_for(p, rows, g, task.fn, task.ctx)
        (<object>task).raise_status(status)
        return out

    def rmsnorm(self, x, weight=None, eps=1e-6, out=None, grain=None):
        """``x / sqrt(mean(x**2, axis=-1) + eps) * weight`` over the last axis."""
        cdef zl_rows_ctx ctx
        x, rows = _as_rows(x, "x")
        eps = float(eps)
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if weight is not None:
            weight = np.ascontiguousarray(weight)
            cols = x.shape[x.ndim - 1]
            if weight.shape != (cols,):
                raise IncompatibleShapes(f"weight has shape {weight.shape}, expected ({cols},)")
            if weight.dtype != x.dtype:
                raise UnsupportedDtype(f"weight has dtype {weight.dtype}, expected {x.dtype}")
        out = _out_array(out, x.shape, x.dtype)
        if x.size == 0:
            return out
        ctx.x = <const void *><uintptr_t>array_data(rows)
        ctx.out = <void *><uintptr_t>array_data(out)
        ctx.weight = NULL
        if weight is not None:
            ctx.weight = <const void *><uintptr_t>array_data(weight)
        ctx.cols = rows.shape[1]
        ctx.eps = eps
        _run_rows(pool_ptr(self.pool), rows.shape[0], self._grain(grain),
                  zl_rmsnorm_rows_f32 if x.dtype == np.float32 else zl_rmsnorm_rows_f64, &ctx)
        return out


# --------------------------------------------------------------------------
# Probes for the tests and benchmarks (not public API). The tests' own probes of
# parallel_for and submit live in a test-only extension (tests/pool_probes.pyx)
# that uses the public .pxd; the one below needs a task's cancel callback, which
# that API does not take.
# --------------------------------------------------------------------------

def _probe_shutdown_busy(int num_threads, int64_t ntasks, long sleep_ns, bint cancel):
    """Fill a pool with sleeping tasks and shut it down at once; returns (done, cancelled)."""
    cdef zl_probe_sleep s
    cdef int64_t i
    s.ns = sleep_ns
    s.done = 0
    s.cancelled = 0
    pool = ThreadPool(num_threads)
    cdef zl_pool *p = pool_ptr(pool)
    with nogil:
        for i in range(ntasks):
            zl_pool_submit(p, NULL, zl_probe_sleep_task, zl_probe_sleep_cancel, &s)
    pool.shutdown(wait=True, cancel_futures=cancel)
    return s.done, s.cancelled


def _bench_parallel_for(pool, int64_t iters, int64_t n):
    """Nanoseconds per empty parallel_for(n, grain=1) dispatch and join."""
    cdef zl_pool *p = pool_ptr(pool)
    cdef int64_t i, t0, t1
    with nogil:
        zl_parallel_for(p, n, 1, zl_probe_empty_rows, NULL)
        t0 = zl_probe_now_ns()
        for i in range(iters):
            zl_parallel_for(p, n, 1, zl_probe_empty_rows, NULL)
        t1 = zl_probe_now_ns()
    return (t1 - t0) / iters


def _bench_omp(int64_t iters, int64_t n, int num_threads):
    """Nanoseconds per OpenMP prange(n) region with a trivial body (the peer)."""
    cdef int64_t i, j, t0, t1
    sink = np.zeros(max(n, 1), dtype=np.int64)
    cdef int64_t[::1] out = sink
    with nogil:
        for j in prange(n, num_threads=num_threads, schedule="static"):
            out[j] = j
        t0 = zl_probe_now_ns()
        for i in range(iters):
            for j in prange(n, num_threads=num_threads, schedule="static"):
                out[j] = i
        t1 = zl_probe_now_ns()
    return (t1 - t0) / iters


def _bench_submit_split(pool, int64_t ntasks):
    """(ns per submit call, ns per task for submit + run + wait) for empty C tasks."""
    cdef zl_pool *p = pool_ptr(pool)
    cdef zl_task_group g
    cdef int64_t i, t0, t1, t2
    zl_task_group_init(&g)
    with nogil:
        t0 = zl_probe_now_ns()
        for i in range(ntasks):
            zl_pool_submit(p, &g, zl_probe_empty_task, NULL, NULL)
        t1 = zl_probe_now_ns()
        zl_task_group_wait(p, &g)
        t2 = zl_probe_now_ns()
    return (t1 - t0) / ntasks, (t2 - t0) / ntasks


def _worker_stride():
    """sizeof the per-worker data: padded to whole cache lines against false sharing."""
    return zl_pool_worker_stride()


def _bench_omp_tasks(int64_t ntasks, int num_threads):
    """Nanoseconds per iteration of an OpenMP prange with schedule(dynamic, 1):
    OpenMP's cost of handing out one unit of work (the peer of submit)."""
    cdef int64_t i, t0, t1
    sink = np.zeros(max(ntasks, 1), dtype=np.int64)
    cdef int64_t[::1] out = sink
    with nogil:
        t0 = zl_probe_now_ns()
        for i in prange(ntasks, num_threads=num_threads, schedule="dynamic", chunksize=1):
            out[i] = i
        t1 = zl_probe_now_ns()
    return (t1 - t0) / ntasks


def _bench_fork_join(pool, int64_t iters, int64_t nchunks, int64_t work_ns):
    """Nanoseconds per parallel_for of nchunks chunks busy work_ns each; with
    pool=None, the same chunks run one after another on the caller (the baseline)."""
    cdef zl_pool *p = NULL
    cdef int64_t i, j, t0, t1
    if pool is not None:
        p = pool_ptr(pool)
    with nogil:
        t0 = zl_probe_now_ns()
        for i in range(iters):
            if p != NULL:
                zl_parallel_for(p, nchunks, 1, zl_probe_spin_rows, &work_ns)
            else:
                for j in range(nchunks):
                    zl_probe_spin_rows(&work_ns, j, j + 1)
        t1 = zl_probe_now_ns()
    return (t1 - t0) / iters


def _bench_omp_fork_join(int64_t iters, int64_t nchunks, int64_t work_ns, int num_threads):
    """The OpenMP peer of _bench_fork_join: prange over the same busy chunks."""
    cdef int64_t i, j, t0, t1
    with nogil:
        t0 = zl_probe_now_ns()
        for i in range(iters):
            for j in prange(nchunks, num_threads=num_threads, schedule="static"):
                zl_probe_spin_rows(&work_ns, j, j + 1)
        t1 = zl_probe_now_ns()
    return (t1 - t0) / iters
