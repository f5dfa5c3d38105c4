"""The machine's CPUs as the OS reports them (threading.zig's CpuTopology): read
from sysfs and /proc/cpuinfo (under any root: a fake tree in tests), with the
fallbacks named."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)


def _parse_size(text: str | None) -> int | None:
    """'48K' -> 49152 (sysfs cache sizes), None if unreadable."""
    if text is None:
        return None
    m = _SIZE_RE.match(text)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[m.group(2).upper()]


def _parse_cpulist(text: str | None) -> list[int] | None:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]; None if malformed."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return []
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                first, last = part.split("-")
                lo, hi = int(first), int(last)
                if hi < lo or lo < 0 or hi - lo > 65536:
                    return None
                out.extend(range(lo, hi + 1))
            else:
                v = int(part)
                if v < 0:
                    return None
                out.append(v)
    except ValueError:
        return None
    return sorted(set(out))


class CpuTopology:
    """The machine's CPUs as the OS reports them (threading.zig's CpuTopology).

    ``detect(root="/")`` reads ``/sys/devices/system/{cpu,node}`` and
    ``/proc/cpuinfo`` under ``root`` (a fake tree in tests). Whatever is missing
    falls back to the next source (sysfs, then /proc/cpuinfo, then
    ``os.cpu_count()``, one package, one NUMA node, 64-byte lines); ``fallbacks``
    lists which facts were not read from the system.
    """

    __slots__ = ("cpus", "cores", "packages", "numa_nodes", "cache_line",
                 "l1d_size", "l2_size", "l3_size", "fallbacks")

    def __init__(self, cpus: Iterable[int], cores: Iterable[Iterable[int]], packages: int,
                 numa_nodes: Mapping[int, Iterable[int]], cache_line: int = 64, l1d_size: int | None = None,
                 l2_size: int | None = None, l3_size: int | None = None, fallbacks: Iterable[str] = ()) -> None:
        self.cpus = tuple(cpus)
        self.cores = tuple(tuple(c) for c in cores)
        self.packages = int(packages)
        self.numa_nodes = {int(k): tuple(v) for k, v in numa_nodes.items()}
        self.cache_line = int(cache_line)
        self.l1d_size = l1d_size
        self.l2_size = l2_size
        self.l3_size = l3_size
        self.fallbacks = tuple(fallbacks)

    @property
    def num_cpus(self) -> int:
        """Logical CPUs (hardware threads) online."""
        return len(self.cpus)

    @property
    def num_cores(self) -> int:
        return len(self.cores)

    @property
    def num_numa_nodes(self) -> int:
        return len(self.numa_nodes)

    @property
    def threads_per_core(self) -> int:
        return max((len(c) for c in self.cores), default=1)

    def node_of(self, cpu: int) -> int:
        """The NUMA node of a CPU (0 if unknown)."""
        for node, cpus in self.numa_nodes.items():
            if cpu in cpus:
                return node
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpus": self.num_cpus,
            "cores": self.num_cores,
            "threads_per_core": self.threads_per_core,
            "packages": self.packages,
            "numa_nodes": {k: list(v) for k, v in self.numa_nodes.items()},
            "cache_line": self.cache_line,
            "l1d": self.l1d_size,
            "l2": self.l2_size,
            "l3": self.l3_size,
            "fallbacks": list(self.fallbacks),
        }

    def __repr__(self) -> str:
        return (f"CpuTopology(cpus={self.num_cpus}, cores={self.num_cores}, packages={self.packages}, "
                f"numa_nodes={self.num_numa_nodes}, cache_line={self.cache_line}, l1d={self.l1d_size}, "
                f"l2={self.l2_size}, l3={self.l3_size})")

    @classmethod
    def detect(cls, root: str = "/") -> CpuTopology:
        def read(*parts: str) -> str | None:
            try:
                with open(os.path.join(root, *parts)) as f:
                    return f.read().strip()
            except (OSError, UnicodeDecodeError):
                return None

        def read_int(*parts: str) -> int | None:
            text = read(*parts)
            try:
                return int(text) if text is not None else None
            except ValueError:
                return None

        fallbacks: list[str] = []
        cpu_dir = os.path.join("sys", "devices", "system", "cpu")
        cpuinfo = _parse_cpuinfo(read("proc", "cpuinfo"))

        cpus = _parse_cpulist(read(cpu_dir, "online"))
        if not cpus:
            try:
                names = os.listdir(os.path.join(root, cpu_dir))
            except OSError:
                names = []
            cpus = sorted(int(n[3:]) for n in names if re.fullmatch(r"cpu\d+", n))
            if not cpus:
                cpus = sorted(cpuinfo) or list(range(os.cpu_count() or 1))
                fallbacks.append("cpus")

        # Cores: CPUs sharing (package, core id) are SMT siblings of one core.
        core_key: dict[int, tuple[Any, Any]] = {}
        package_of: dict[int, int] = {}
        for cpu in cpus:
            pkg = read_int(cpu_dir, f"cpu{cpu}", "topology", "physical_package_id")
            core: Any = read_int(cpu_dir, f"cpu{cpu}", "topology", "core_id")
            if pkg is None or core is None:
                info = cpuinfo.get(cpu, {})
                pkg = info.get("physical id", pkg)
                core = info.get("core id", core)
            if core is None:
                siblings = _parse_cpulist(read(cpu_dir, f"cpu{cpu}", "topology", "thread_siblings_list"))
                core = ("siblings", min(siblings)) if siblings else ("cpu", cpu)
                if not siblings and "cores" not in fallbacks:
                    fallbacks.append("cores")
            package_of[cpu] = pkg if pkg is not None else 0
            core_key[cpu] = (package_of[cpu], core)
        groups: dict[tuple[Any, Any], list[int]] = {}
        for cpu in cpus:
            groups.setdefault(core_key[cpu], []).append(cpu)
        cores = sorted((tuple(sorted(g)) for g in groups.values()), key=lambda c: c[0])
        packages = len(set(package_of.values())) or 1
        if all(read_int(cpu_dir, f"cpu{c}", "topology", "physical_package_id") is None for c in cpus) \
                and not any("physical id" in cpuinfo.get(c, {}) for c in cpus):
            fallbacks.append("packages")

        # NUMA nodes and their CPUs.
        node_dir = os.path.join("sys", "devices", "system", "node")
        nodes = _parse_cpulist(read(node_dir, "online"))
        if nodes is None:
            try:
                names = os.listdir(os.path.join(root, node_dir))
            except OSError:
                names = []
            nodes = sorted(int(n[4:]) for n in names if re.fullmatch(r"node\d+", n))
        numa: dict[int, tuple[int, ...]] = {}
        online = set(cpus)
        for node in nodes or []:
            node_cpus = _parse_cpulist(read(node_dir, f"node{node}", "cpulist"))
            numa[node] = tuple(c for c in (node_cpus or []) if c in online)
        if not numa or not any(numa.values()):
            numa = {0: tuple(cpus)}
            fallbacks.append("numa_nodes")

        # Caches of the first CPU: L1 data, L2, L3 and the coherency line size.
        sizes: dict[int, int] = {}
        line = None
        first = cpus[0]
        try:
            indexes = sorted(n for n in os.listdir(os.path.join(root, cpu_dir, f"cpu{first}", "cache"))
                             if re.fullmatch(r"index\d+", n))
        except OSError:
            indexes = []
        for idx in indexes:
            base = (cpu_dir, f"cpu{first}", "cache", idx)
            level = read_int(*base, "level")
            kind = (read(*base, "type") or "").lower()
            size = _parse_size(read(*base, "size"))
            if level is None or kind == "instruction":
                continue
            if size is not None:
                sizes.setdefault(level, size)
            line = line or read_int(*base, "coherency_line_size")
        if not line:
            line = cpuinfo.get(first, {}).get("cache_alignment")
        if not line:
            line = 64
            fallbacks.append("cache_line")
        if not sizes:
            fallbacks.append("caches")
            last = cpuinfo.get(first, {}).get("cache size")
            if last:
                sizes[3] = last  # /proc/cpuinfo reports the last-level cache
        return cls(cpus, cores, packages, numa, line, sizes.get(1), sizes.get(2), sizes.get(3), fallbacks)


def _parse_cpuinfo(text: str | None) -> dict[int, dict[str, int]]:
    """processor -> {"physical id", "core id", "cache_alignment", "cache size"} from /proc/cpuinfo."""
    out: dict[int, dict[str, int]] = {}
    if not text:
        return out
    current: int | None = None
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            try:
                current = int(value)
            except ValueError:
                current = None
                continue
            out[current] = {}
        elif current is not None and key in ("physical id", "core id", "cache_alignment"):
            try:
                out[current][key] = int(value)
            except ValueError:
                pass
        elif current is not None and key == "cache size":
            size = _parse_size(value.replace(" ", ""))
            if size:
                out[current][key] = size
    return out
