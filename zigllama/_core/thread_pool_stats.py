"""Counters of a thread pool (threading.zig's pool statistics)."""
from __future__ import annotations


class ThreadPoolStats:
    """Counters of a pool since it started (or since ``reset_stats()``)."""

    __slots__ = ("tasks_executed", "tasks_submitted", "tasks_stolen", "failed_steals", "injected",
                 "queue_high_water", "sleeps", "wakes", "parallel_fors", "affinity_failures",
                 "numa_applied")

    tasks_executed: int
    tasks_submitted: int
    tasks_stolen: int
    failed_steals: int
    injected: int
    queue_high_water: int
    sleeps: int
    wakes: int
    parallel_fors: int
    affinity_failures: int
    numa_applied: int

    def __init__(self, **counters: int) -> None:
        for name in self.__slots__:
            setattr(self, name, int(counters.get(name, 0)))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ThreadPoolStats) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return "ThreadPoolStats(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items()) + ")"
