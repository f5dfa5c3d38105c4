"""The seed's data flow, end to end, for one transformer block.

GGUF file on disk -> MemoryMap -> GGUFReader -> quantized weights where they
lie (or, the seed's way, dequantized Tensor weights) -> matrix products through
the BLAS vtable (qgemm for quantized weights) -> ThreadPool (parallel rows) ->
Q/K/V projections -> attention scores -> feed-forward. ``run_block`` runs it with
zigllama's own pieces and times each stage; ``zigllama demo`` checks it against
the numpy reference of ``llama_block``.
"""
import os
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import llama_block
from .llama_block import BlockConfig

# The demo model: llama-shaped, small enough to build and run in well under a second.
DEMO_SHAPE = dict(n_embd=256, n_head=8, n_head_kv=4, n_ff=768, n_layer=2, n_vocab=1024, context=2048)


def write_demo_model(path, seed=0, **shape):
    """Write a small llama-shaped GGUF model with zigllama's GGUFWriter.

    Attention weights are Q8_0, the feed-forward gate/up Q4_K and down Q6_K or
    Q8_0, the norms float32, token embeddings Q8_0; the metadata carries what
    llama.cpp's converter writes for a llama model (architecture keys, a small
    tokenizer vocabulary with scores and token types).
    """
    from . import GGMLType, GGUFWriter, quantize

    s = dict(DEMO_SHAPE, **shape)
    d, h, hkv, ff = s["n_embd"], s["n_head"], s["n_head_kv"], s["n_ff"]
    hd = d // h
    rng = np.random.default_rng(seed)

    def linear(n_out, n_in):
        return (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    tensors = [("token_embd.weight", (rng.standard_normal((s["n_vocab"], d)) * 0.5).astype(np.float32), GGMLType.Q8_0)]
    for b in range(s["n_layer"]):
        p = f"blk.{b}."
        tensors += [
            (p + "attn_norm.weight", norm(d), GGMLType.F32),
            (p + "attn_q.weight", linear(h * hd, d), GGMLType.Q8_0),
            (p + "attn_k.weight", linear(hkv * hd, d), GGMLType.Q8_0),
            (p + "attn_v.weight", linear(hkv * hd, d), GGMLType.Q8_0),
            (p + "attn_output.weight", linear(d, h * hd), GGMLType.Q8_0),
            (p + "ffn_norm.weight", norm(d), GGMLType.F32),
            (p + "ffn_gate.weight", linear(ff, d), GGMLType.Q4_K),
            (p + "ffn_up.weight", linear(ff, d), GGMLType.Q4_K),
            (p + "ffn_down.weight", linear(d, ff), GGMLType.Q6_K),
        ]
    tensors += [("output_norm.weight", norm(d), GGMLType.F32),
                ("output.weight", linear(s["n_vocab"], d), GGMLType.Q8_0)]

    vocab = ["<unk>", "<s>", "</s>"] + [f"tok{i}" for i in range(s["n_vocab"] - 3)]
    with GGUFWriter(path) as w:
        w.add_string("general.architecture", "llama")
        w.add_string("general.name", "zigllama-demo")
        w.add_uint32("general.file_type", 15)  # MOSTLY_Q4_K_M
        w.add_uint32("general.quantization_version", 2)
        w.add_uint32("llama.context_length", s["context"])
        w.add_uint32("llama.embedding_length", d)
        w.add_uint32("llama.block_count", s["n_layer"])
        w.add_uint32("llama.feed_forward_length", ff)
        w.add_uint32("llama.rope.dimension_count", hd)
        w.add_float32("llama.rope.freq_base", 10000.0)
        w.add_uint32("llama.attention.head_count", h)
        w.add_uint32("llama.attention.head_count_kv", hkv)
        w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        w.add_uint32("llama.vocab_size", s["n_vocab"])
        w.add_string("tokenizer.ggml.model", "llama")
        w.add_array("tokenizer.ggml.tokens", vocab)
        w.add_array("tokenizer.ggml.scores", np.linspace(0, -10, len(vocab), dtype=np.float32))
        w.add_array("tokenizer.ggml.token_type", np.where(np.arange(len(vocab)) < 3, 3, 1).astype(np.int32))
        w.add_uint32("tokenizer.ggml.bos_token_id", 1)
        w.add_uint32("tokenizer.ggml.eos_token_id", 2)
        encoded = [(name, quantize(data, typ) if typ != GGMLType.F32 else data, typ, data.shape)
                   for name, data, typ in tensors]
        for name, data, typ, shape in encoded:
            w.add_tensor_info(name, shape, typ)
        w.write_header()
        for name, data, typ, shape in encoded:
            w.write_tensor(name, data, typ)
    return path


@dataclass
class Stage:
    name: str
    seconds: float
    nbytes: int = 0
    flops: int = 0
    backend: str = ""
    threads: int = 1

    @property
    def gflops(self):
        return self.flops / self.seconds / 1e9 if self.flops and self.seconds > 0 else 0.0


def median_stages(passes):
    """One stage list from several passes of ``run_block`` (the same stages in
    the same order): each stage's median time. A single pass on a shared machine
    is at the mercy of one preemption, and a first pass also pays one-time costs
    (the BLAS library's thread start-up, first page faults)."""
    merged = []
    for same in zip(*passes):
        first = same[0]
        merged.append(Stage(first.name, statistics.median(s.seconds for s in same), first.nbytes, first.flops,
                            first.backend, first.threads))
    return merged


class _Clock:
    def __init__(self):
        self.stages = []

    def run(self, name, fn, nbytes=0, flops=0, backend="", threads=1):
        t0 = time.perf_counter()
        result = fn()
        self.stages.append(Stage(name, time.perf_counter() - t0, nbytes, flops, backend, threads))
        return result


def _embed(reader, cfg, tokens, threads):
    """Embedding rows for ``tokens``: only those rows are dequantized, straight from the map."""
    from . import dequantize

    info = reader.tensor_info("token_embd.weight")
    if reader.byte_order != sys.byteorder:
        # Blocks in the other byte order: load() converts them (the whole table).
        table = np.asarray(reader.load("token_embd.weight", threads=threads))
        x = table.reshape(info.shape[0], -1)[np.asarray(tokens)]
    else:
        raw = np.asarray(reader.tensor("token_embd.weight"))
        rows = raw.reshape(info.shape[0], -1)[np.asarray(tokens)]
        x = np.asarray(dequantize(np.ascontiguousarray(rows), info.ggml_type, (len(tokens), cfg.n_embd),
                                  threads=threads))
    if cfg.scale_embeddings:
        x = x * np.float32(np.sqrt(cfg.n_embd))
    return np.ascontiguousarray(x, dtype=np.float32)


MATMUL_MODES = ("exact", "fast", "dequantized")


def run_block(path, tokens, block=0, threads=None, blas=None, pool=None, matmul="exact"):
    """Run block ``block`` of the model at ``path`` on ``tokens`` with zigllama.

    The projections multiply the quantized weights where they lie in the map
    (``ParallelOps.matmul(h, w.transposed(matmul))``, the product in
    ``zigllama.qgemm``): ``matmul="exact"`` (float32 activations, equal to the
    dequantized product up to float order) or ``"fast"`` (8-bit activations,
    integer kernels); ``"dequantized"`` takes the seed's path instead, every
    weight dequantized to float32 first and multiplied by ``BlasInterface.gemm``.
    Float weights (F32) always take the BLAS.

    Returns ``(output, stages, weights, x_in, cfg)``: the block's output
    activations (seq, n_embd), the timed stages, the dequantized weights and input
    embeddings (for the numpy reference), and the block's config.
    """
    if matmul not in MATMUL_MODES:
        raise ValueError(f"matmul must be one of {', '.join(MATMUL_MODES)}, got {matmul!r}")
    from . import GGUFReader, ParallelOps, Tensor, get_blas, default_pool
    from ._config import resolve_threads

    threads = resolve_threads(threads)
    blas = get_blas(blas)
    pool = pool if pool is not None else default_pool()
    ops = ParallelOps(pool)
    clock = _Clock()
    n_pool = pool.num_threads

    reader = clock.run("map + parse", lambda: GGUFReader(path), nbytes=os.path.getsize(path))
    cfg = BlockConfig.from_metadata(reader.metadata)
    required, optional = llama_block.block_tensor_names(block)
    names = required + [n for n in optional if n in reader.tensor_names()]
    missing = [n for n in required if n not in reader.tensor_names()]
    if missing:
        from .errors import GGUFError
        raise GGUFError(f"{path}: block {block} lacks tensors {', '.join(missing)}")

    def in_place(name):
        # Zero-copy views of the matrices' blocks; a file in the other byte
        # order has none (its blocks need converting), so its matrices are
        # dequantized.
        info = reader.tensor_info(name)
        return (matmul != "dequantized" and reader.byte_order == sys.byteorder and len(info.shape) == 2
                and info.ggml_type.name != "F32")

    def quantized_views():
        return {n: reader.quantized(n).transposed(matmul) for n in names if in_place(n)}

    qweights = clock.run("quantized views", quantized_views, backend="map") if matmul != "dequantized" else {}

    def load_weights():
        return {n: np.asarray(reader.load(n)) for n in names if n not in qweights}

    weights = clock.run("dequantize weights" if not qweights else "load norms", load_weights,
                        nbytes=sum(reader.tensor_info(n).n_elements * 4 for n in names if n not in qweights),
                        backend="kernels", threads=threads)
    seq = len(tokens)
    x = clock.run("embed tokens", lambda: _embed(reader, cfg, tokens, threads), nbytes=seq * cfg.n_embd * 4)
    p = f"blk.{block}."
    hd, nh, nkv = cfg.head_dim, cfg.n_head, cfg.n_head_kv

    def linear(h, name):
        q = qweights.get(p + name + ".weight")
        y = ops.matmul(h, q, blas=blas) if q is not None else blas.gemm(h, weights[p + name + ".weight"], trans_b=True)
        bias = weights.get(p + name + ".bias")
        if bias is not None:
            y = np.asarray(Tensor.from_numpy(y) + Tensor.from_numpy(bias))
        return y

    def lin_flops(h, name):
        return 2 * h.shape[0] * reader.tensor_info(p + name + ".weight").n_elements

    projection_backend = f"qgemm {matmul}" if qweights else blas.name

    h = clock.run("attn rmsnorm", lambda: ops.rmsnorm(x, weights[p + "attn_norm.weight"], cfg.rms_eps),
                  backend="pool", threads=n_pool)
    h = np.asarray(h)
    q, k, v = clock.run(
        "Q/K/V projections", lambda: tuple(linear(h, n) for n in ("attn_q", "attn_k", "attn_v")),
        flops=sum(lin_flops(h, n) for n in ("attn_q", "attn_k", "attn_v")), backend=projection_backend,
        threads=threads)
    q = q.reshape(seq, nh, hd)
    k = k.reshape(seq, nkv, hd)
    v = v.reshape(seq, nkv, hd)
    if p + "attn_q_norm.weight" in weights:
        q = np.asarray(ops.rmsnorm(q.reshape(-1, hd), weights[p + "attn_q_norm.weight"], cfg.rms_eps)).reshape(q.shape)
        k = np.asarray(ops.rmsnorm(k.reshape(-1, hd), weights[p + "attn_k_norm.weight"], cfg.rms_eps)).reshape(k.shape)
    positions = np.arange(seq)
    q, k = clock.run("rope (numpy)", lambda: (
        llama_block.rope(q, positions, cfg.rope_base, cfg.rope_dim, cfg.rope_neox),
        llama_block.rope(k, positions, cfg.rope_base, cfg.rope_dim, cfg.rope_neox)), backend="numpy")

    group = nh // nkv
    scale = 1.0 / np.sqrt(hd)
    mask = np.triu(np.ones((seq, seq), dtype=bool), 1)

    def scores():
        s = np.empty((nh, seq, seq), dtype=np.float32)
        for head in range(nh):
            qh = np.ascontiguousarray(q[:, head, :])
            kh = np.ascontiguousarray(k[:, head // group, :])
            blas.gemm(qh, kh, out=s[head], alpha=scale, trans_b=True)
        if cfg.attn_softcap:
            cap = np.float32(cfg.attn_softcap)
            s = cap * np.tanh(s / cap)
        s[:, mask] = -np.inf
        return s

    s = clock.run("attention scores", scores, flops=2 * nh * seq * seq * hd, backend=blas.name, threads=threads)
    probs = clock.run("softmax (parallel rows)", lambda: np.asarray(ops.softmax(s.reshape(-1, seq))).reshape(s.shape),
                      backend="pool", threads=n_pool)

    def attend():
        out = np.empty((seq, nh * hd), dtype=np.float32)
        for head in range(nh):
            vh = np.ascontiguousarray(v[:, head // group, :])
            out[:, head * hd:(head + 1) * hd] = blas.gemm(np.ascontiguousarray(probs[head]), vh)
        return out

    attn = clock.run("attention x V", attend, flops=2 * nh * seq * seq * hd, backend=blas.name, threads=threads)
    attn = clock.run("output projection", lambda: linear(attn, "attn_output"),
                     flops=lin_flops(attn, "attn_output"), backend=projection_backend, threads=threads)
    if p + "post_attention_norm.weight" in weights:
        attn = np.asarray(ops.rmsnorm(attn, weights[p + "post_attention_norm.weight"], cfg.rms_eps))
    x1 = clock.run("residual add", lambda: Tensor.from_numpy(x) + Tensor.from_numpy(attn), backend="tensor")
    x1 = np.asarray(x1)

    h2 = np.asarray(clock.run("ffn rmsnorm", lambda: ops.rmsnorm(x1, weights[p + "ffn_norm.weight"], cfg.rms_eps),
                              backend="pool", threads=n_pool))
    gate, up = clock.run("gate/up projections", lambda: (linear(h2, "ffn_gate"), linear(h2, "ffn_up")),
                         flops=lin_flops(h2, "ffn_gate") + lin_flops(h2, "ffn_up"), backend=projection_backend,
                         threads=threads)

    def glu():
        act = llama_block.gelu_tanh(gate) if cfg.gelu_gate else llama_block.silu(gate)
        return np.asarray(Tensor.from_numpy(np.ascontiguousarray(act, dtype=np.float32)) * Tensor.from_numpy(up))

    hidden = clock.run("SwiGLU gate (Hadamard)" if not cfg.gelu_gate else "GeGLU gate (Hadamard)", glu, backend="tensor")
    ffn = clock.run("down projection", lambda: linear(hidden, "ffn_down"),
                    flops=lin_flops(hidden, "ffn_down"), backend=projection_backend, threads=threads)
    if p + "post_ffw_norm.weight" in weights:
        ffn = np.asarray(ops.rmsnorm(ffn, weights[p + "post_ffw_norm.weight"], cfg.rms_eps))
    out = np.asarray(clock.run("residual add", lambda: Tensor.from_numpy(x1) + Tensor.from_numpy(ffn), backend="tensor"))
    # The reference multiplies float weights: the in-place ones, dequantized
    # after the timed pass.
    for n, q in qweights.items():
        weights[n] = q.weight.dequantize()
    qweights.clear()
    reader.close()
    return out, clock.stages, weights, x, cfg


def format_stages(stages):
    """The stage table as markdown."""
    lines = ["| stage | time (ms) | bytes | GFLOPS | backend | threads |", "|---|---:|---:|---:|---|---:|"]
    for s in stages:
        gf = f"{s.gflops:.1f}" if s.flops else ""
        nb = f"{s.nbytes:,}" if s.nbytes else ""
        lines.append(f"| {s.name} | {s.seconds * 1e3:.2f} | {nb} | {gf} | {s.backend} | {s.threads} |")
    total = sum(s.seconds for s in stages)
    lines.append(f"| **total** | {total * 1e3:.2f} | | | | |")
    return "\n".join(lines)
