"""Write a synthetic GGUF model with the tensor types of a Q4_K_M file, for
timing ``zigllama load`` and whole-model runs:

    python benchmarks/q4_k_m_model.py model.gguf          # about 250 MB
    zigllama load model.gguf --threads 2
    python benchmarks/q4_k_m_model.py --shape gemma3-270m gemma3.gguf   # about 250 MB
    zigllama run gemma3.gguf -p "Hello" -n 32

``--shape gemma3-270m`` is Gemma-3-270M's exact shape and llama.cpp's Q4_K_M type
mix for it (18 layers, n_embd 640, 4 heads / 1 KV head of 256, n_ff 2048, a
262,144-token SentencePiece vocabulary, tied Q8_0 embeddings), with every metadata
key llama.cpp needs to load it: the same file runs on both engines.

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
# A block scale of 2e-3 keeps a random model's activations finite; the min of Q4_K
# (its second f16) smaller, so that rows are not all biased one way.
SCALE_VALUES = {(GGMLType.Q4_K, 2): 1e-3}


def random_blocks(rng, t, shape):
    block, size = GGML_QUANT_SIZES[int(t)]
    rows = int(np.prod(shape[:-1]))
    raw = rng.integers(0, 256, size=(rows, shape[-1] // block * size), dtype=np.uint8)
    for off in SCALES[t]:
        value = SCALE_VALUES.get((t, off), 0.002)
        raw.reshape(-1, size)[:, off:off + 2] = np.array([value], "<f2").view(np.uint8)
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


def gemma3_270m_tensors(layers=18, dim=640, heads=4, kv_heads=1, head_dim=256, ff=2048, vocab=262144):
    """llama.cpp's Q4_K_M choices for Gemma-3-270M: rows of 640 are no whole number
    of 256-blocks, so the K types fall back (Q4_K -> Q5_0, Q6_K -> Q8_0) wherever
    the input width is n_embd; the embeddings double as the output matrix (Q8_0)."""
    Q4, Q5, Q6, Q8, F32 = GGMLType.Q4_K, GGMLType.Q5_0, GGMLType.Q6_K, GGMLType.Q8_0, GGMLType.F32
    yield "token_embd.weight", Q8, (vocab, dim)
    for i in range(layers):
        more_bits = i < layers // 8 or i >= 7 * layers // 8 or i % 3 == 2
        p = f"blk.{i}."
        yield p + "attn_norm.weight", F32, (dim,)
        yield p + "attn_q.weight", Q5, (heads * head_dim, dim)
        yield p + "attn_k.weight", Q5, (kv_heads * head_dim, dim)
        yield p + "attn_v.weight", Q8 if more_bits else Q5, (kv_heads * head_dim, dim)
        yield p + "attn_q_norm.weight", F32, (head_dim,)
        yield p + "attn_k_norm.weight", F32, (head_dim,)
        yield p + "attn_output.weight", Q4, (dim, heads * head_dim)
        yield p + "post_attention_norm.weight", F32, (dim,)
        yield p + "ffn_norm.weight", F32, (dim,)
        yield p + "ffn_gate.weight", Q5, (ff, dim)
        yield p + "ffn_up.weight", Q5, (ff, dim)
        yield p + "ffn_down.weight", Q6 if more_bits else Q4, (dim, ff)
        yield p + "post_ffw_norm.weight", F32, (dim,)
    yield "output_norm.weight", F32, (dim,)


def spm_vocabulary(size):
    """(tokens, scores, types) of a SentencePiece-like vocabulary of ``size`` tokens:
    gemma's specials, the 256 byte tokens, then word pieces (with and without the
    U+2581 space mark) ranked by how often they occur in Python's own sources, then
    filler pieces of rare letters with the lowest scores."""
    import collections
    import glob
    import os
    import re

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    types = [3, 3, 3, 2, 4, 4, 4]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    counts = collections.Counter()
    src = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:200]
    for path in src:
        with open(path, encoding="utf-8", errors="replace") as f:
            for word in re.findall(r"[A-Za-z]+|[^\sA-Za-z0-9]", f.read()):
                for n in range(1, min(len(word), 12) + 1):
                    counts[word[:n]] += 1
                    counts["\u2581" + word[:n]] += 1
                    counts[word[-n:]] += 1
    for ch in "0123456789\u2581\n\t你好世界こんにちは😀":
        counts[ch] += 1
    seen = set(tokens)
    pieces = [p for p, _ in counts.most_common() if p not in seen][: size - len(tokens)]
    n_fixed = len(tokens)
    tokens += pieces
    types += [1] * len(pieces)
    scores = [0.0] * n_fixed + [-float(i) for i in range(len(pieces))]
    rng = np.random.default_rng(1)
    letters = np.array(list("qxzjkvwy"))
    while len(tokens) < size:
        piece = "\u2581" + "".join(rng.choice(letters, size=8)) + str(len(tokens))
        tokens.append(piece)
        types.append(1)
        scores.append(-1e6 - len(tokens))
    return tokens, np.asarray(scores, dtype=np.float32), np.asarray(types, dtype=np.int32)


def write_gemma3_270m(path, rng):
    plan = list(gemma3_270m_tensors())
    tokens, scores, types = spm_vocabulary(262144)
    with GGUFWriter(path) as w:
        a = "gemma3"
        w.add("general.architecture", a)
        w.add("general.name", "synthetic Gemma-3-270M Q4_K_M")
        w.add_uint32("general.file_type", 15)
        w.add_uint32("general.quantization_version", 2)
        w.add_uint32(f"{a}.context_length", 32768)
        w.add_uint32(f"{a}.embedding_length", 640)
        w.add_uint32(f"{a}.block_count", 18)
        w.add_uint32(f"{a}.feed_forward_length", 2048)
        w.add_uint32(f"{a}.attention.head_count", 4)
        w.add_uint32(f"{a}.attention.head_count_kv", 1)
        w.add_uint32(f"{a}.attention.key_length", 256)
        w.add_uint32(f"{a}.attention.value_length", 256)
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
        w.add_float32(f"{a}.rope.freq_base", 1000000.0)
        w.add_uint32(f"{a}.attention.sliding_window", 512)
        w.add_string("tokenizer.ggml.model", "llama")
        w.add_string("tokenizer.ggml.pre", "default")
        w.add_array("tokenizer.ggml.tokens", tokens)
        w.add_array("tokenizer.ggml.scores", scores)
        w.add_array("tokenizer.ggml.token_type", types)
        w.add_uint32("tokenizer.ggml.bos_token_id", 2)
        w.add_uint32("tokenizer.ggml.eos_token_id", 1)
        w.add_uint32("tokenizer.ggml.unknown_token_id", 3)
        w.add_uint32("tokenizer.ggml.padding_token_id", 0)
        w.add_bool("tokenizer.ggml.add_bos_token", True)
        w.add_bool("tokenizer.ggml.add_eos_token", False)
        w.add_bool("tokenizer.ggml.add_space_prefix", False)
        for name, t, shape in plan:
            w.add_tensor_info(name, shape, t)
        w.write_header()
        for name, t, shape in plan:
            if t == GGMLType.F32:
                w.write_tensor(name, np.ones(shape, np.float32))
            else:
                w.write_tensor(name, random_blocks(rng, t, shape), t)
    return plan


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--ff", type=int, default=5632)
    p.add_argument("--vocab", type=int, default=16000)
    p.add_argument("--shape", choices=("llama", "gemma3-270m"), default="llama",
                   help="llama: the sizes above; gemma3-270m: Gemma-3-270M's exact shape")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.shape == "gemma3-270m":
        plan = write_gemma3_270m(args.path, rng)
        print(f"wrote {args.path}: {len(plan)} tensors")
        return 0
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
