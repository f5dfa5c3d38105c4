"""Calls, time and floating-point operations per BLAS operation (the seed's BlasStats)."""
from __future__ import annotations


class BlasStats:
    """Calls, time and floating-point operations per operation (gemm, gemv, ...)."""

    def __init__(self) -> None:
        self._ops: dict[str, list[float]] = {}

    def record(self, op: str, seconds: float, flops: int) -> None:
        entry = self._ops.setdefault(op, [0, 0.0, 0])
        entry[0] += 1
        entry[1] += seconds
        entry[2] += flops

    def reset(self) -> None:
        self._ops.clear()

    def operations(self) -> list[str]:
        return list(self._ops)

    def count(self, op: str) -> int:
        return int(self._ops.get(op, (0, 0.0, 0))[0])

    def seconds(self, op: str) -> float:
        return self._ops.get(op, (0, 0.0, 0))[1]

    def flops(self, op: str) -> int:
        return int(self._ops.get(op, (0, 0.0, 0))[2])

    def gflops(self, op: str) -> float:
        """Achieved GFLOPS of `op` over all its calls (0 before any time was spent)."""
        count, seconds, flops = self._ops.get(op, (0, 0.0, 0))
        return flops / seconds / 1e9 if seconds > 0 else 0.0

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {op: {"count": c, "seconds": s, "flops": f, "gflops": self.gflops(op)}
                for op, (c, s, f) in self._ops.items()}

    def __str__(self) -> str:
        lines = ["BLAS statistics:", f"  {'operation':<10} {'calls':>8} {'time (ms)':>11} {'GFLOP':>10} {'GFLOPS':>8}"]
        for op, (count, seconds, flops) in self._ops.items():
            lines.append(f"  {op:<10} {count:>8} {seconds * 1e3:>11.3f} {flops / 1e9:>10.3f} "
                         f"{self.gflops(op):>8.2f}")
        return "\n".join(lines)
