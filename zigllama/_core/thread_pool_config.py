"""How a ThreadPool is built (threading.zig's ThreadPoolConfig and NumaPolicy):
threads, NUMA policy, pinning, stacks, spinning; and where each worker goes."""
from __future__ import annotations

import enum
import os
from typing import Any

from .._config import resolve_threads
from .cpu_topology import CpuTopology

#: Default worker stack: 8 MiB, as in threading.zig (Python tasks need room too).
DEFAULT_STACK_SIZE = 8 * 1024 * 1024
#: How long an idle worker spins before it sleeps, in microseconds.
DEFAULT_SPIN_US = 50


class NumaPolicy(enum.IntEnum):
    """Where a worker's memory goes (threading.zig's NumaPolicy).

    DISABLED: no NUMA system calls. LOCAL: each worker allocates on the node it
    runs on; workers fill one node before the next. INTERLEAVE: every worker's
    pages go round-robin over all nodes (bandwidth over latency). BALANCED:
    workers are spread evenly over the nodes, each allocating locally.
    On a machine with one node all four are the same and nothing is called.
    """

    # zl_numa_policy of zigllama/zl_threading.h (the threading module checks them at import)
    DISABLED = 0
    LOCAL = 1
    INTERLEAVE = 2
    BALANCED = 3

    @classmethod
    def coerce(cls, value: object) -> NumaPolicy:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(m.name.lower() for m in cls)
        raise ValueError(f"numa_policy must be one of {names}, got {value!r}")


class ThreadPoolConfig:
    """How a ThreadPool is built (threading.zig's ThreadPoolConfig).

    num_threads counts every thread that works in a ``parallel_for``: the
    ``num_workers = num_threads - 1`` workers plus the calling thread, which helps
    (at least one worker, so that submitted tasks always make progress).
    """

    __slots__ = ("num_threads", "numa_policy", "affinity", "stack_size", "spin_us", "topology")

    def __init__(self, num_threads: int | None = None, numa_policy: NumaPolicy | str | int = NumaPolicy.BALANCED,
                 affinity: bool = False, stack_size: int = DEFAULT_STACK_SIZE, spin_us: int = DEFAULT_SPIN_US,
                 topology: CpuTopology | None = None) -> None:
        self.num_threads = resolve_threads(num_threads)   # 1 .. MAX_THREADS, or an error
        self.numa_policy = NumaPolicy.coerce(numa_policy)
        self.affinity = bool(affinity)
        stack_size = int(stack_size)
        if stack_size < 0 or (0 < stack_size < 64 * 1024) or stack_size > (1 << 40):
            raise ValueError(f"stack_size must be 0 (system default) or 64 KiB .. 1 TiB, got {stack_size}")
        self.stack_size = stack_size
        spin_us = int(spin_us)
        if not 0 <= spin_us <= 1_000_000:
            raise ValueError(f"spin_us must be in [0, 1000000], got {spin_us}")
        self.spin_us = spin_us
        self.topology = topology

    @classmethod
    def detect(cls, num_threads: int | None = None, **options: Any) -> ThreadPoolConfig:
        """Size from the argument, else ZIGLLAMA_NUM_THREADS, else the CPUs this
        process may use; read the topology for pinning and NUMA."""
        topology = options.pop("topology", None) or CpuTopology.detect()
        return cls(num_threads, topology=topology, **options)

    @property
    def num_workers(self) -> int:
        return max(1, self.num_threads - 1)

    def worker_cpus(self) -> list[int]:
        """The CPU each worker is pinned to (all -1 when affinity is off).

        One worker per physical core before any SMT sibling; BALANCED takes the
        nodes in turn, the other policies fill one node before the next.
        """
        n = self.num_workers
        if not self.affinity:
            return [-1] * n
        topo = self.topology or CpuTopology.detect()
        try:
            allowed = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            allowed = set(topo.cpus)
        per_node = []
        for node in sorted(topo.numa_nodes):
            cpus = set(topo.numa_nodes[node]) & allowed
            cores = [[c for c in core if c in cpus] for core in topo.cores]
            cores = [c for c in cores if c]
            depth = max((len(c) for c in cores), default=0)
            order = [core[k] for k in range(depth) for core in cores if k < len(core)]
            if order:
                per_node.append(order)
        if not per_node:
            return [-1] * n
        if self.numa_policy == NumaPolicy.BALANCED:
            order = [cpus[k] for k in range(max(map(len, per_node))) for cpus in per_node if k < len(cpus)]
        else:
            order = [c for cpus in per_node for c in cpus]
        return [order[i % len(order)] for i in range(n)]

    def worker_nodes(self) -> list[int]:
        """The NUMA node each worker allocates on (-1: wherever it runs)."""
        topo = self.topology or CpuTopology.detect()
        cpus = self.worker_cpus()
        if self.affinity:
            return [topo.node_of(c) if c >= 0 else -1 for c in cpus]
        if self.numa_policy == NumaPolicy.BALANCED and topo.num_numa_nodes > 1:
            nodes = sorted(topo.numa_nodes)
            return [nodes[i % len(nodes)] for i in range(self.num_workers)]
        return [-1] * self.num_workers

    def as_dict(self) -> dict[str, Any]:
        return {
            "num_threads": self.num_threads,
            "num_workers": self.num_workers,
            "numa_policy": self.numa_policy.name.lower(),
            "affinity": self.affinity,
            "stack_size": self.stack_size,
            "spin_us": self.spin_us,
        }

    def __repr__(self) -> str:
        return "ThreadPoolConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"
