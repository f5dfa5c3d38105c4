"""``zigllama demo``: the seed's data flow, end to end, checked against numpy.

With no arguments it writes a small llama-shaped GGUF (Q8_0, Q4_K and Q6_K weights,
f32 norms, a small vocabulary, llama.cpp's metadata keys) into a temporary
directory, then runs its first block on a short token sequence: map, parse,
Q/K/V projections on the quantized weights where they lie (qgemm through
``ParallelOps.matmul``; ``--matmul dequantized`` dequantizes them first, as the
seed did), attention scores with a
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
# The fast products round the activations to 8 bits per block (ggml's Q8_0/Q8_K)
# before multiplying: the block then differs from the float reference by about
# 1/256 of the activations' block maxima, not by float rounding.
FAST_RTOL = 2e-2
# The whole model against float64: float32 rounding through every block (see tests/test_model.py).
WHOLE_MODEL_RTOL = 2e-3


def add_arguments(parser):
    parser.add_argument("--model", metavar="FILE", help="a llama-like GGUF model (default: a built-in demo model)")
    parser.add_argument("--tokens", type=int, default=16, help="sequence length (default 16)")
    parser.add_argument("--block", type=int, default=0, help="which block to run (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: ZIGLLAMA_NUM_THREADS or all CPUs)")
    parser.add_argument("--blas", choices=("scipy", "generic", "naive"), default=None,
                        help="BLAS backend (default: ZIGLLAMA_BLAS or scipy)")
    parser.add_argument("--matmul", choices=("exact", "fast", "dequantized"), default="exact",
                        help="projections: quantized weights in place with float32 (exact) or 8-bit (fast) "
                             "activations, or dequantized first (default exact)")
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
                                                              threads=args.threads, blas=args.blas,
                                                              matmul=args.matmul)
            passes.append(stages)
        whole_line, whole_ok = _whole_model_check(path, tokens, args.threads)
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
    rtol = FAST_RTOL if args.matmul == "fast" else RTOL
    ok = bool(np.all(np.isfinite(out))) and err <= rtol * scale
    print(f"numpy reference: max |zigllama - numpy| = {err:.3g} (output scale {scale:.3g}, "
          f"tolerance {rtol:g} x scale, projections {args.matmul}): {'match' if ok else 'MISMATCH'}")
    print(whole_line)
    print(f"total run time {time.perf_counter() - t_start:.2f} s")
    return 0 if ok and whole_ok else 1


# The float64 reference holds every weight as float64: past this file size it
# would need gigabytes.
WHOLE_MODEL_MAX_BYTES = 64 << 20


def _whole_model_check(path, tokens, threads):
    """(line, ok): the whole model's logits at every position (zigllama.Model, the
    KV cache filled in one pass) against the float64 numpy reference."""
    try:
        import gguf  # noqa: F401  (the reference reads the file with the gguf package)
    except ImportError:
        return "whole model: reference check skipped (it reads weights with the gguf package, not installed)", True
    if os.path.getsize(path) > WHOLE_MODEL_MAX_BYTES:
        return (f"whole model: reference check skipped (the float64 reference of a file over "
                f"{WHOLE_MODEL_MAX_BYTES >> 20} MiB would need gigabytes)"), True
    import zigllama as zl
    from zigllama.model_reference import reference_logits

    t0 = time.perf_counter()
    with zl.Model(path, threads=threads, n_ctx=len(tokens), matmul="exact") as m:
        ours = m.forward(tokens, all_logits=True)
    took = time.perf_counter() - t0
    expected = reference_logits(path, tokens)
    err = float(np.max(np.abs(ours - expected)))
    scale = float(np.max(np.abs(expected))) or 1.0
    ok = bool(np.all(np.isfinite(ours))) and err <= WHOLE_MODEL_RTOL * scale
    return (f"whole model ({m.hparams.n_layer} blocks, logits at {len(tokens)} positions, {took * 1e3:.1f} ms): "
            f"max |zigllama - float64 numpy| = {err:.3g} (logit scale {scale:.3g}, tolerance "
            f"{WHOLE_MODEL_RTOL:g} x scale): {'match' if ok else 'MISMATCH'}"), ok
