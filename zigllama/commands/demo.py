"""``zigllama demo``: the Foundations at work on a small built-in example.

Until model loading lands, the demo runs a toy feed-forward step over a few tokens
with what exists: weights in heap tensors (and a float16 copy), per-token
activations in an arena that is reset after every token, a matmul, a bias add and a
Hadamard gate, each checked against numpy; then it shows the arena-escape check.
"""
import numpy as np

HELP = "run a small worked example of tensors and allocators, checked against numpy"


def add_arguments(parser):
    parser.add_argument("--tokens", type=int, default=4, help="tokens to process (default 4)")
    parser.add_argument("--dim", type=int, default=64, help="model width (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights")


def run(args):
    import zigllama as zl

    if args.tokens < 1 or args.dim < 1:
        raise zl.InvalidShape(f"--tokens and --dim must be positive, got {args.tokens} and {args.dim}")
    rng = np.random.default_rng(args.seed)
    d, hidden = args.dim, 2 * args.dim
    heap = zl.GeneralPurposeAllocator()   # long-lived weights; it checks for leaks at the end
    scale = 1.0 / np.sqrt(d)
    w_up = zl.Tensor.from_numpy((rng.standard_normal((d, hidden)) * scale).astype(np.float32)).copy(heap)
    w_gate = zl.Tensor.from_numpy((rng.standard_normal((d, hidden)) * scale).astype(np.float32)).copy(heap)
    bias = zl.Tensor.from_numpy(rng.standard_normal(hidden).astype(np.float32)).copy(heap)
    w_up16 = w_up.astype("float16")       # half the bytes; arithmetic as numpy's float16
    embeddings = rng.standard_normal((args.tokens, d)).astype(np.float32)

    print(f"weights: 2 x {w_up.dtype} {w_up.shape} + bias {bias.shape} "
          f"({heap.live_bytes} bytes live in a GeneralPurposeAllocator)")
    arena = zl.ArenaAllocator()
    worst = 0.0
    for token in range(args.tokens):
        with arena:                        # every activation of this token dies at the reset
            x = zl.Tensor.zeros((1, d), allocator=arena)
            x[0] = embeddings[token]
            up = x @ w_up + bias           # matmul, then the (1, hidden) + (hidden,) bias add
            gate = x @ w_gate
            h = up * gate                  # Hadamard product: the gating of SwiGLU
            expected = ((embeddings[token:token + 1] @ np.asarray(w_up) + np.asarray(bias))
                        * (embeddings[token:token + 1] @ np.asarray(w_gate)))
            err = float(np.max(np.abs(np.asarray(h) - expected)))
            worst = max(worst, err)
            up16 = x.astype("float16") @ w_up16
            err16 = float(np.max(np.abs(np.asarray(up16).astype(np.float32)
                                        - (embeddings[token:token + 1] @ np.asarray(w_up)))))
            print(f"token {token}: h = (x @ W_up + b) * (x @ W_gate) {h.shape}, "
                  f"max |h - numpy| = {err:.2e}; float16 x @ W_up off by {err16:.2e}; "
                  f"arena holds {arena.capacity} bytes, {arena.used} used")
        escaped = h
    try:
        escaped.get(0, 0)
    except zl.UseAfterReset as e:
        print(f"touching an activation after its arena's reset: UseAfterReset: {str(e)[:72]}...")
    del w_up, w_gate, bias, w_up16
    print(f"GeneralPurposeAllocator after freeing the weights: {heap.deinit()} "
          f"({heap.live_bytes} bytes live)")
    ok = worst < 1e-4
    print("all results match numpy" if ok else f"MISMATCH: max error {worst:.3e}")
    return 0 if ok else 1
