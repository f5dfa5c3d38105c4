"""How to bring a model file's pages into RAM (Zig: MappingStrategy and
MappingOptimizer), chosen from what the machine has: MemAvailable, RLIMIT_MEMLOCK
and CAP_IPC_LOCK; and the figures ``zigllama.show_config()`` reports for maps."""
from __future__ import annotations

import os
from typing import Any, ClassVar, NamedTuple, Protocol

from .._arguments import integer
from .mapping_flags import invalid


class _Mapping(Protocol):
    """What a strategy is applied to (a MemoryMap)."""

    def advise(self, advice: str, offset: int = 0, length: int | None = None) -> None: ...
    def lock(self) -> None: ...
    def prefault(self, offset: int = 0, length: int | None = None) -> None: ...


def page_size() -> int:
    """The kernel's page size in bytes."""
    try:
        size = os.sysconf("SC_PAGESIZE")
    except (ValueError, OSError):
        return 4096
    return size if size > 0 else 4096


def meminfo() -> dict[str, int]:
    """/proc/meminfo as {field: bytes}; empty where there is no /proc."""
    fields = {}
    try:
        with open("/proc/meminfo", "rb") as f:  # bytes: no codec lookup needed
            for line in f:
                name, _, rest = line.partition(b":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    scale = 1024 if len(parts) > 1 and parts[1] == b"kB" else 1
                    fields[name.decode("latin-1")] = int(parts[0]) * scale
    except OSError:
        pass
    return fields


def huge_page_size() -> int:
    """The kernel's default huge page size in bytes, or 0 if unknown."""
    return meminfo().get("Hugepagesize", 0)


def memlock_limits() -> tuple[int | None, int | None]:
    """RLIMIT_MEMLOCK (soft, hard) in bytes, None meaning unlimited."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    inf = resource.RLIM_INFINITY
    return (None if soft == inf else soft), (None if hard == inf else hard)


def limit_text(limit: int | None) -> str:
    """A limit from memlock_limits() in words."""
    return "unlimited" if limit is None else f"{limit} bytes"


def has_cap_ipc_lock() -> bool:
    """True if this process may lock memory past RLIMIT_MEMLOCK (CAP_IPC_LOCK)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> 14 & 1)  # CAP_IPC_LOCK is bit 14
    except (OSError, ValueError, IndexError):
        pass
    return False


class _MappingStrategyFields(NamedTuple):
    name: str
    reason: str
    prefault: bool
    lock: bool
    advice: str
    file_size: int
    mem_available: int | None
    memlock_limit: int | None


class MappingStrategy(_MappingStrategyFields):
    """How to bring a file's pages into RAM (Zig: MappingStrategy).

    name: "lazy" (page in on first touch), "prefault" (read every page now) or
    "lock" (read every page now and mlock them); reason: why, in words; advice: the
    madvise() advice to give; mem_available and memlock_limit: the figures the
    choice was made from, in bytes (None: unknown / unlimited).
    """
    __slots__ = ()

    NAMES: ClassVar[tuple[str, ...]] = ("lazy", "prefault", "lock")

    @classmethod
    def named(cls, name: str, file_size: int = 0) -> MappingStrategy:
        """The strategy ``name`` chosen by the caller rather than by the optimizer."""
        if name not in cls.NAMES:
            raise invalid(f"unknown mapping strategy {name!r}; expected one of {', '.join(cls.NAMES)} or 'auto'")
        return cls(name, "requested", name != "lazy", name == "lock",
                   "normal" if name == "lazy" else "willneed", file_size, None, None)

    def apply(self, mapping: _Mapping) -> None:
        """Give the map this strategy's advice, then prefault or lock it."""
        mapping.advise(self.advice)
        if self.lock:
            mapping.lock()  # mlock faults every page in itself
        elif self.prefault:
            mapping.prefault()


_DETECT: Any = object()


class MappingOptimizer:
    """Choose how to map a model file from what the machine has (Zig: MappingOptimizer).

    The Zig original assumes 8 GiB of available memory on every machine and
    locks any file smaller than 4 GiB, though the usual RLIMIT_MEMLOCK is 8 MiB.
    This one reads MemAvailable from /proc/meminfo and RLIMIT_MEMLOCK (and
    CAP_IPC_LOCK, which lifts it) from the running process.
    """

    #: Lock only what fits in this fraction of MemAvailable: locked pages cannot be
    #: reclaimed, so the rest of the system keeps at least half.
    LOCK_FRACTION: float = 0.5
    #: Prefault only what fits in this fraction: prefaulted pages are page cache
    #: the kernel may still reclaim, so a larger share is safe.
    PREFAULT_FRACTION: float = 0.75

    @staticmethod
    def mem_available() -> int | None:
        """MemAvailable in bytes (free memory on systems without it), or None."""
        info = meminfo()
        if "MemAvailable" in info:
            return info["MemAvailable"]
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None

    @staticmethod
    def memlock_limit() -> int | None:
        """Bytes this process may mlock: RLIMIT_MEMLOCK's soft limit, None if unlimited."""
        if has_cap_ipc_lock():
            return None
        return memlock_limits()[0]

    @classmethod
    def detect_optimal_strategy(cls, file_size: int, *, mem_available: int | None = _DETECT,
                                memlock_limit: int | None = _DETECT) -> MappingStrategy:
        """A :class:`MappingStrategy` for a file of ``file_size`` bytes.

        "lock" if the file fits in RLIMIT_MEMLOCK and in LOCK_FRACTION of
        MemAvailable, else "prefault" if it fits in PREFAULT_FRACTION of
        MemAvailable, else "lazy". mem_available and memlock_limit default to the
        running system's (None meaning unknown / unlimited); pass them to plan for
        another machine.
        """
        size = integer(file_size, "file_size")
        if size < 0:
            raise invalid(f"file size {size} is negative")
        avail = cls.mem_available() if mem_available is _DETECT else mem_available
        limit = cls.memlock_limit() if memlock_limit is _DETECT else memlock_limit

        def choose(name: str, reason: str, advice: str) -> MappingStrategy:
            return MappingStrategy(name, reason, name != "lazy", name == "lock", advice, size, avail, limit)

        if size == 0:
            return choose("lazy", "the file is empty: there is nothing to load", "normal")
        if avail is None:
            return choose("lazy", "available memory is unknown: pages come in on first use", "normal")
        fits_limit = limit is None or size <= limit
        if fits_limit and size <= avail * cls.LOCK_FRACTION:
            return choose("lock", f"{size} bytes fit in RLIMIT_MEMLOCK ({limit_text(limit)}) and in "
                                  f"{cls.LOCK_FRACTION:.0%} of MemAvailable ({avail} bytes): "
                                  f"locked, they are never paged out", "willneed")
        if size <= avail * cls.PREFAULT_FRACTION:
            why_not = (f"exceed RLIMIT_MEMLOCK ({limit_text(limit)})" if not fits_limit
                       else f"exceed {cls.LOCK_FRACTION:.0%} of MemAvailable")
            return choose("prefault", f"{size} bytes {why_not} but fit in "
                                      f"{cls.PREFAULT_FRACTION:.0%} of MemAvailable ({avail} bytes): "
                                      f"read them in now, the kernel may still reclaim them", "willneed")
        return choose("lazy", f"{size} bytes exceed {cls.PREFAULT_FRACTION:.0%} of MemAvailable "
                              f"({avail} bytes): pages come in on first use and the kernel "
                              f"evicts the coldest", "normal")


def mapping_config() -> dict[str, int | str | None]:
    """What this machine offers maps, for ``zigllama.show_config()``."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", "rb") as f:
            words = f.read().split()
        thp = next((w.strip(b"[]").decode("latin-1") for w in words if w.startswith(b"[")), "unknown")
    except OSError:
        thp = "unavailable"
    limit = MappingOptimizer.memlock_limit()
    return {
        "page_size": page_size(),
        "huge_page_size": huge_page_size(),
        "transparent_hugepages": thp,
        "mem_available": MappingOptimizer.mem_available(),
        "memlock_limit": "unlimited" if limit is None else limit,
    }
