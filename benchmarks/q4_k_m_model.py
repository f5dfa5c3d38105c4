"""Write a synthetic GGUF model with the tensor types of a Q4_K_M file, for
timing ``zigllama load``:

    python benchmarks/q4_k_m_model.py model.gguf          # about 250 MB
    zigllama load model.gguf --threads 2

Like llama.cpp's Q4_K_M: most matrices Q4_K; the output matrix, half of the
ffn_down and attn_v matrices Q6_K; a few Q5_0 and Q8_0 (which llama.cpp falls back
to); norms F32. The blocks hold random quants with finite scales.
"""
import argparse

import numpy as np

from zigllama import GGMLType, GGUFWriter
from zigllama._core.quantization import GGML_QUANT_SIZES

# Byte offsets of the f16 scales in each block type used here.
SCALES = {GGMLType.Q4_K: (0, 2), GGMLType.Q6_K: (208,), GGMLType.Q5_0: (0,), GGMLType.Q8_0: (0,)}


def random_blocks(rng, t, shape):
    block, size = GGML_QUANT_SIZES[int(t)]
    rows = int(np.prod(shape[:-1]))
    raw = rng.integers(0, 256, size=(rows, shape[-1] // block * size), dtype=np.uint8)
    for off in SCALES[t]:
        raw.reshape(-1, size)[:, off:off + 2] = np.array([0.002], "<f2").view(np.uint8)
    return raw


def tensors(layers, dim, ff, vocab):
    """(name, ggml type, numpy-order shape) of a llama-like model."""
    Q4, Q5, Q6, Q8 = GGMLType.Q4_K, GGMLType.Q5_0, GGMLType.Q6_K, GGMLType.Q8_0
    yield "token_embd.weight", Q4, (vocab, dim)
    for i in range(layers):
        more_bits = i < layers // 8 or i >= 7 * layers // 8 or i % 3 == 2  # llama.cpp's use_more_bits
        yield f"blk.{i}.attn_norm.weight", GGMLType.F32, (dim,)
        yield f"blk.{i}.attn_q.weight", Q4, (dim, dim)
        yield f"blk.{i}.attn_k.weight", Q8 if i == 0 else Q4, (dim, dim)
        yield f"blk.{i}.attn_v.weight", Q6 if more_bits else Q5, (dim, dim)
        yield f"blk.{i}.attn_output.weight", Q4, (dim, dim)
        yield f"blk.{i}.ffn_norm.weight", GGMLType.F32, (dim,)
        yield f"blk.{i}.ffn_gate.weight", Q4, (ff, dim)
        yield f"blk.{i}.ffn_up.weight", Q4, (ff, dim)
        yield f"blk.{i}.ffn_down.weight", Q6 if more_bits else Q4, (dim, ff)
    yield "output_norm.weight", GGMLType.F32, (dim,)
    yield "output.weight", Q6, (vocab, dim)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--ff", type=int, default=5632)
    p.add_argument("--vocab", type=int, default=16000)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    with GGUFWriter(args.path) as w:
        w.add("general.architecture", "llama")
        w.add("general.name", "synthetic Q4_K_M")
        plan = list(tensors(args.layers, args.dim, args.ff, args.vocab))
        for name, t, shape in plan:
            w.add_tensor_info(name, shape, t)
        w.write_header()
        for name, t, shape in plan:
            if t == GGMLType.F32:
                w.write_tensor(name, np.ones(shape, np.float32))
            else:
                w.write_tensor(name, random_blocks(rng, t, shape), t)
    print(f"wrote {args.path}: {len(plan)} tensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
