"""The seed's tensor operations on one BLAS backend, with statistics (BlasManager)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..errors import BlasError
from .blas_integration import BlasInterface, as_operand, get_blas
from .blas_stats import BlasStats

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Buffer

    from .tensor import Tensor

    # float32 or float64 data: a numpy array, a Tensor or any buffer-protocol object
    _Operand = npt.NDArray[Any] | Tensor | Buffer

# results come back as the type of the operand: a Tensor for Tensors
_T = TypeVar("_T", "npt.NDArray[Any]", "Tensor")
_Out = TypeVar("_Out", bound="_Operand")


def _like(template: object, result: np.ndarray[Any, Any]) -> Any:
    # Results come back as the caller's type: a Tensor for Tensors.
    if isinstance(template, np.ndarray):
        return result
    from_numpy = getattr(type(template), "from_numpy", None)
    return from_numpy(result) if from_numpy is not None else result


class BlasManager:
    """The seed's tensor operations on one backend, with statistics.

    ``matmul`` takes 2-D @ 2-D and batched 3-D @ 2-D (one GEMM over all the
    batch's rows); ``matvec``, ``scale`` (in place), ``dot`` and ``norm``.
    """

    def __init__(self, backend: BlasInterface | str | None = None) -> None:
        self.blas: BlasInterface = backend if isinstance(backend, BlasInterface) else get_blas(backend)
        self.stats = BlasStats()

    def __repr__(self) -> str:
        return f"BlasManager({self.blas.name!r})"

    def matmul(self, a: _T, b: _Operand) -> _T:
        A = as_operand(a, "matmul", "a")
        B = as_operand(b, "matmul", "b")
        if B.ndim != 2 or A.ndim not in (2, 3):
            raise BlasError(f"matmul: expected 2-D @ 2-D or 3-D @ 2-D, got shapes {A.shape} and {B.shape}")
        # A batch (b, s, d) @ (d, e) is one (b*s, d) @ (d, e) product.
        flat = A.reshape(A.shape[0] * A.shape[1], A.shape[2]) if A.ndim == 3 else A
        start = time.perf_counter()
        out = self.blas.gemm(flat, B)
        self.stats.record("matmul", time.perf_counter() - start, 2 * flat.shape[0] * B.shape[0] * B.shape[1])
        if A.ndim == 3:
            out = out.reshape(A.shape[0], A.shape[1], B.shape[1])
        return _like(a, out)  # type: ignore[no-any-return]

    def matvec(self, a: _Operand, x: _T) -> _T:
        start = time.perf_counter()
        out = self.blas.gemv(a, x)  # type: ignore[call-overload]
        self.stats.record("matvec", time.perf_counter() - start, 2 * as_operand(a, "matvec", "a").size)
        return _like(x, out)  # type: ignore[no-any-return]

    def scale(self, x: _Out, alpha: float) -> _Out:
        """``x *= alpha`` in place; returns ``x``."""
        start = time.perf_counter()
        self.blas.scal(alpha, x)
        self.stats.record("scale", time.perf_counter() - start, as_operand(x, "scale", "x").size)
        return x

    def dot(self, x: _Operand, y: _Operand) -> float:
        start = time.perf_counter()
        result = self.blas.dot(x, y)
        self.stats.record("dot", time.perf_counter() - start, 2 * as_operand(x, "dot", "x").size)
        return result

    def norm(self, x: _Operand) -> float:
        start = time.perf_counter()
        result = self.blas.nrm2(x)
        self.stats.record("norm", time.perf_counter() - start, 2 * as_operand(x, "norm", "x").size)
        return result
