"""The one thread setting every parallel region in zigllama is sized from.

OpenMP regions, the work-stealing pool and the BLAS's own threads all read
``num_threads()``, so they never add up to more threads than cores
(no oversubscription). Order: ``set_num_threads(n)``, else the environment
variable ``ZIGLLAMA_NUM_THREADS``, else the number of CPUs this process may use.
"""
import os

_override = None


def available_cpus():
    """CPUs this process may run on (affinity mask aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def num_threads():
    """Threads a parallel region may use."""
    if _override is not None:
        return _override
    env = os.environ.get("ZIGLLAMA_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"ZIGLLAMA_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"ZIGLLAMA_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    return available_cpus()


def set_num_threads(n):
    """Set the thread count for this process (None returns to the default)."""
    global _override
    if n is not None:
        n = int(n)
        if n < 1:
            raise ValueError(f"num_threads must be >= 1, got {n}")
    _override = n


def resolve_threads(threads=None):
    """A per-call ``threads=`` argument, or the process setting."""
    if threads is None:
        return num_threads()
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads
