"""``zigllama demo``: the seed's data flow, end to end, checked against numpy.

With no arguments it writes a small llama-shaped GGUF (Q8_0, Q4_K and Q6_K weights,
f32 norms, a small vocabulary, llama.cpp's metadata keys) into a temporary
directory, then runs its first block on a short token sequence: map, parse,
dequantize, Q/K/V projections through the BLAS vtable, attention scores with a
parallel softmax, the SwiGLU feed-forward, the residual adds. It prints a stage
table and checks the block's output against the numpy reference computed from
the same dequantized weights. ``--model FILE`` runs the same on a real llama-like
model (llama, mistral, qwen2, gemma, gemma2, gemma3).
"""
import os
import tempfile
import time

import numpy as np

from ._terminal import escape

HELP = "run one transformer block from a GGUF file through zigllama, checked against numpy"

# float32 GEMMs in different summation orders: agreement is relative to the output's scale.
RTOL = 2e-4


def add_arguments(parser):
    parser.add_argument("--model", metavar="FILE", help="a llama-like GGUF model (default: a built-in demo model)")
    parser.add_argument("--tokens", type=int, default=16, help="sequence length (default 16)")
    parser.add_argument("--block", type=int, default=0, help="which block to run (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: ZIGLLAMA_NUM_THREADS or all CPUs)")
    parser.add_argument("--blas", choices=("scipy", "generic", "naive"), default=None,
                        help="BLAS backend (default: ZIGLLAMA_BLAS or scipy)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo model and the token ids")
    parser.add_argument("--repeat", type=int, default=5,
                        help="passes over the block; the table shows each stage's median (default 5)")


def run(args):
    import zigllama as zl
    from zigllama import llama_block, pipeline

    if args.tokens < 1:
        raise zl.InvalidShape(f"--tokens must be at least 1, got {args.tokens}")
    if args.threads is not None and args.threads < 1:
        raise zl.InvalidShape(f"--threads must be at least 1, got {args.threads}")
    if args.repeat < 1:
        raise zl.InvalidShape(f"--repeat must be at least 1, got {args.repeat}")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zigllama-demo-") as tmp:
        path = args.model
        if path is None:
            path = os.path.join(tmp, "demo-llama.gguf")
            t0 = time.perf_counter()
            pipeline.write_demo_model(path, seed=args.seed)
            print(f"wrote {path}: {os.path.getsize(path):,} bytes in {(time.perf_counter() - t0) * 1e3:.1f} ms "
                  f"(GGUFWriter, quantize to Q8_0/Q4_K/Q6_K)")
        with zl.GGUFModelLoader(path) as loader:
            arch = llama_block.BlockConfig.from_metadata(loader.metadata).architecture  # llama-like, or an error
            n_vocab = loader.tensor_info("token_embd.weight").shape[0]
            n_blocks = loader.block_count
        if not 0 <= args.block < n_blocks:
            raise zl.InvalidIndex(f"--block {args.block} is out of range: the model has {n_blocks} blocks")
        rng = np.random.default_rng(args.seed)
        tokens = rng.integers(0, n_vocab, size=args.tokens)
        passes = []
        for _ in range(args.repeat):
            out, stages, weights, x, cfg = pipeline.run_block(path, tokens, block=args.block,
                                                              threads=args.threads, blas=args.blas)
            passes.append(stages)
    print(f"model: {escape(arch)}, n_embd {cfg.n_embd}, heads {cfg.n_head}/{cfg.n_head_kv} (head_dim {cfg.head_dim}), "
          f"n_ff {cfg.n_ff}, rope {'neox' if cfg.rope_neox else 'normal'}; block {args.block}, {len(tokens)} tokens")
    print()
    print(pipeline.format_stages(pipeline.median_stages(passes)))
    print()
    one_time = "one-time costs: the BLAS library's threads starting, first page faults"
    if args.repeat > 1:
        first = sum(s.seconds for s in passes[0]) * 1e3
        print(f"stage times: medians of {args.repeat} passes; the first pass took {first:.2f} ms in all "
              f"(it also pays {one_time})")
    else:
        print(f"stage times: one pass (which also pays {one_time})")
    expected = llama_block.reference_block(cfg, weights, x, block=args.block)
    err = float(np.max(np.abs(out - expected)))
    scale = float(np.max(np.abs(expected))) or 1.0
    ok = bool(np.all(np.isfinite(out))) and err <= RTOL * scale
    print(f"numpy reference: max |zigllama - numpy| = {err:.3g} (output scale {scale:.3g}, "
          f"tolerance {RTOL:g} x scale): {'match' if ok else 'MISMATCH'}")
    print(f"total run time {time.perf_counter() - t_start:.2f} s")
    return 0 if ok else 1
