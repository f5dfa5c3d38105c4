"""The one thread setting every parallel region in zigllama is sized from.

OpenMP regions, the work-stealing pool and the BLAS's own threads all read
``num_threads()``, so they never add up to more threads than cores
(no oversubscription). Order: ``set_num_threads(n)``, else the environment
variable ``ZIGLLAMA_NUM_THREADS``, else the number of CPUs this process may use;
then capped by a limit threadpoolctl set (``threadpool_limits(n)`` reaches
zigllama through the controllers in ``zigllama._threadpoolctl``).

``zigllama._core.threading.setting_threads`` (what qgemm and ``default_pool()``
read) caches ``num_threads()`` beside the inputs it read: ``_generation`` (which
every setter here bumps), ``_override``, ``_limits["pool"]``, the environment
variable and, without an explicit count, the CPU affinity. An input added here
must join that comparison.

Every thread count is bounded by ``MAX_THREADS``: a larger one is an error at
once (libgomp exits the process on a team it cannot create, and a pool of
100,000 threads exhausts memory long before it helps).
"""
from __future__ import annotations

import os

from ._arguments import integer, integer_in_range
from .errors import InvalidArgumentType, InvalidArgumentValue

#: The largest thread count zigllama accepts anywhere (setting, pool, per call).
MAX_THREADS = 1024

_override: int | None = None
# Bumped by every setter: a cache of num_threads() keyed on it cannot miss a
# change and back (A, B, A) made while it computed.
_generation: int = 0
# Limits set through threadpoolctl: "pool" (the pool and every region sized from
# the setting) and "openmp" (the generic GEMM's OpenMP team). None: no limit.
_limits: dict[str, int | None] = {"pool": None, "openmp": None}


def check_thread_count(n: int, what: str = "num_threads") -> int:
    """n as an int in [1, MAX_THREADS]; InvalidArgumentType/InvalidArgumentValue
    (a TypeError/ValueError) naming `what` otherwise."""
    if isinstance(n, bool):
        raise InvalidArgumentType(f"{what} must be an integer, got a bool")
    return integer_in_range(n, what, 1, MAX_THREADS)


def available_cpus() -> int:
    """CPUs this process may run on (affinity mask aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_threads() -> int | None:
    env = os.environ.get("ZIGLLAMA_NUM_THREADS", "").strip()
    if not env:
        return None
    try:
        n = int(env)
    except ValueError:
        raise ValueError(f"ZIGLLAMA_NUM_THREADS must be an integer between 1 and {MAX_THREADS}, "
                         f"got {env!r}") from None
    return check_thread_count(n, "ZIGLLAMA_NUM_THREADS")


def base_num_threads() -> int:
    """The setting before any threadpoolctl limit."""
    if _override is not None:
        return _override
    n = _env_threads()
    return n if n is not None else min(available_cpus(), MAX_THREADS)


def explicit_num_threads() -> int | None:
    """The count the user gave (set_num_threads or ZIGLLAMA_NUM_THREADS), or None.
    Only an explicit count is ever applied to another library's threads."""
    return _override if _override is not None else _env_threads()


def num_threads() -> int:
    """Threads a parallel region may use."""
    n = base_num_threads()
    limit = _limits["pool"]
    return n if limit is None else min(n, limit)


def openmp_threads() -> int:
    """Threads of the generic GEMM's OpenMP team: the setting, capped by the
    OpenMP limit threadpoolctl set."""
    n = num_threads()
    limit = _limits["openmp"]
    return n if limit is None else min(n, limit)


def set_num_threads(n: int | None) -> None:
    """Set the thread count for this process (None returns to the default)."""
    global _override, _generation
    _override = None if n is None else check_thread_count(n)
    _generation += 1


def set_limit(kind: str, n: int) -> None:
    """A limit from threadpoolctl: n at or above the setting lifts it (a limit
    above MAX_THREADS too: a cap that high limits nothing)."""
    global _generation
    n = integer(n, f"the {kind} thread limit")
    if n < 1:
        raise InvalidArgumentValue(f"the {kind} thread limit must be between 1 and {MAX_THREADS}, got {n}")
    _limits[kind] = None if n >= base_num_threads() else n
    _generation += 1


def resolve_threads(threads: int | None = None) -> int:
    """A per-call ``threads=`` argument, or the process setting."""
    if threads is None:
        return num_threads()
    return check_thread_count(threads, "threads")
