"""The compiled modules. Their graph: allocator and platform at the bottom, tensor
on them; memory_mapping, blas_integration, threading and gguf_format on tensor
(gguf_format also on memory_mapping); quantization beside gguf_format; qmatmul on
blas_integration, threading and quantization (tests/test_module_graph.py holds it).

This package joins what the modules above tensor cannot ask of each other."""


def wire():
    """Choose Tensor.matmul's GEMM and the pool that splits large GEMMs, once.

    The tensor module calls this (with the GIL) before its first product, and the
    BLAS module before its first GEMM, so the choice is the same whatever was
    imported first: the default backend (``ZIGLLAMA_BLAS``, else scipy) for
    float32/float64 products, split over the default pool; and every backend's
    qgemm slot, which zigllama._core.qmatmul fills when imported."""
    from . import blas_integration, qmatmul, tensor, threading  # noqa: F401 (qmatmul fills the vtables' qgemm slot)

    threading.install_range_runner()
    tensor.set_backend_lookup(blas_integration.get_blas)
    blas_integration.install_tensor_backend()
