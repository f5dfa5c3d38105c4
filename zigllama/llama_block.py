"""One transformer block of a llama-like model: its hyper-parameters from GGUF
metadata, and a plain numpy reference of its forward pass.

The demo runs the same block through zigllama's own pieces (mapped file, parsed
metadata, dequantized weights, the BLAS vtable, the thread pool) and checks the
result against ``reference_block``; both read weights in GGUF's convention: a
linear layer's tensor has ``ne = [n_in, n_out]``, so its numpy shape is
``(n_out, n_in)`` and the layer computes ``x @ W.T``.
"""
from dataclasses import dataclass, field

import numpy as np

from .errors import GGUFError

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3")
# Which half-pairs RoPE rotates: llama's converter permutes Q/K so that adjacent
# elements pair up ("normal"); the others pair element i with i + d/2 ("neox").
_ROPE_NEOX = {"qwen2", "gemma", "gemma2", "gemma3"}


@dataclass
class BlockConfig:
    architecture: str
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    rms_eps: float
    rope_base: float
    rope_dim: int
    rope_neox: bool
    gelu_gate: bool = False          # gemma family: GeGLU (tanh GELU), others SwiGLU
    scale_embeddings: bool = False   # gemma family: embeddings * sqrt(n_embd)
    attn_softcap: float = 0.0        # gemma2: cap * tanh(scores / cap)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, metadata):
        """Read a block's hyper-parameters from GGUF metadata (any Mapping)."""

        def get(key, default=None, required=False):
            if key in metadata:
                value = metadata[key]
                if isinstance(value, np.ndarray):  # per-layer arrays (e.g. head_count_kv)
                    value = value.flat[0]
                return value
            if required:
                raise GGUFError(f"metadata key {key!r} is required for a {arch} block")
            return default

        arch = metadata.get("general.architecture")
        if arch is None:
            raise GGUFError("metadata has no general.architecture")
        arch = str(arch)
        if arch not in SUPPORTED_ARCHITECTURES:
            raise GGUFError(
                f"architecture {arch!r} is not llama-like; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        n_embd = int(get(f"{arch}.embedding_length", required=True))
        n_head = int(get(f"{arch}.attention.head_count", required=True))
        n_head_kv = int(get(f"{arch}.attention.head_count_kv", n_head))
        head_dim = int(get(f"{arch}.attention.key_length", n_embd // n_head))
        if n_head <= 0 or n_head_kv <= 0 or n_head % n_head_kv:
            raise GGUFError(f"head_count {n_head} is not a multiple of head_count_kv {n_head_kv}")
        gemma = arch.startswith("gemma")
        return cls(
            architecture=arch,
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            n_ff=int(get(f"{arch}.feed_forward_length", required=True)),
            rms_eps=float(get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
            rope_base=float(get(f"{arch}.rope.freq_base", 10000.0)),
            rope_dim=int(get(f"{arch}.rope.dimension_count", head_dim)),
            rope_neox=arch in _ROPE_NEOX,
            gelu_gate=gemma,
            scale_embeddings=gemma,
            attn_softcap=float(get(f"{arch}.attn_logit_softcapping", 0.0)) if arch == "gemma2" else 0.0,
        )


def block_tensor_names(block=0):
    """GGUF names of one block's tensors: required, then optional."""
    p = f"blk.{block}."
    required = [p + n for n in ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                                "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight",
                                "ffn_up.weight", "ffn_down.weight")]
    optional = [p + n for n in ("attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_q_norm.weight",
                                "attn_k_norm.weight", "post_attention_norm.weight", "post_ffw_norm.weight")]
    return required, optional


def rms_norm(x, weight, eps):
    x = np.asarray(x, dtype=np.float32)
    ms = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return (x / np.sqrt(ms + np.float32(eps))) * weight


def rope(x, positions, base, rope_dim, neox):
    """Rotary position embedding of x (seq, heads, head_dim), in float32."""
    x = np.array(x, dtype=np.float32, copy=True)
    half = rope_dim // 2
    inv_freq = (base ** (-np.arange(0, half, dtype=np.float64) * 2.0 / rope_dim))
    theta = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)  # (seq, half)
    cos = np.cos(theta).astype(np.float32)[:, None, :]
    sin = np.sin(theta).astype(np.float32)[:, None, :]
    if neox:
        a, b = x[..., :half].copy(), x[..., half:rope_dim].copy()
        x[..., :half] = a * cos - b * sin
        x[..., half:rope_dim] = a * sin + b * cos
    else:
        a, b = x[..., 0:rope_dim:2].copy(), x[..., 1:rope_dim:2].copy()
        x[..., 0:rope_dim:2] = a * cos - b * sin
        x[..., 1:rope_dim:2] = a * sin + b * cos
    return x


def softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def causal_scores(cfg, q, k):
    """Attention scores (heads, seq, seq) with the causal mask applied, before softmax."""
    seq = q.shape[0]
    group = cfg.n_head // cfg.n_head_kv
    qh = q.transpose(1, 0, 2)                                  # (heads, seq, hd)
    kh = np.repeat(k.transpose(1, 0, 2), group, axis=0)        # (heads, seq, hd)
    scores = (qh @ kh.transpose(0, 2, 1)) * np.float32(1.0 / np.sqrt(cfg.head_dim))
    if cfg.attn_softcap:
        cap = np.float32(cfg.attn_softcap)
        scores = cap * np.tanh(scores / cap)
    mask = np.triu(np.ones((seq, seq), dtype=bool), 1)
    scores[:, mask] = -np.inf
    return scores.astype(np.float32)


def reference_block(cfg, w, x, positions=None, block=0):
    """The block's forward pass in plain numpy float32.

    ``w`` maps GGUF tensor names to float32 arrays in numpy order; ``x`` is
    (seq, n_embd). Returns the block's output (seq, n_embd).
    """
    p = f"blk.{block}."
    x = np.asarray(x, dtype=np.float32)
    seq = x.shape[0]
    positions = np.arange(seq) if positions is None else positions

    def linear(h, name):
        y = h @ w[p + name + ".weight"].T
        bias = w.get(p + name + ".bias")
        return y if bias is None else y + bias

    h = rms_norm(x, w[p + "attn_norm.weight"], cfg.rms_eps)
    q = linear(h, "attn_q").reshape(seq, cfg.n_head, cfg.head_dim)
    k = linear(h, "attn_k").reshape(seq, cfg.n_head_kv, cfg.head_dim)
    v = linear(h, "attn_v").reshape(seq, cfg.n_head_kv, cfg.head_dim)
    if p + "attn_q_norm.weight" in w:
        q = rms_norm(q, w[p + "attn_q_norm.weight"], cfg.rms_eps)
        k = rms_norm(k, w[p + "attn_k_norm.weight"], cfg.rms_eps)
    q = rope(q, positions, cfg.rope_base, cfg.rope_dim, cfg.rope_neox)
    k = rope(k, positions, cfg.rope_base, cfg.rope_dim, cfg.rope_neox)
    probs = softmax(causal_scores(cfg, q, k))
    group = cfg.n_head // cfg.n_head_kv
    vh = np.repeat(v.transpose(1, 0, 2), group, axis=0)          # (heads, seq, hd)
    attn = (probs @ vh).transpose(1, 0, 2).reshape(seq, cfg.n_head * cfg.head_dim)
    attn = linear(attn, "attn_output")
    if p + "post_attention_norm.weight" in w:
        attn = rms_norm(attn, w[p + "post_attention_norm.weight"], cfg.rms_eps)
    x = x + attn
    h = rms_norm(x, w[p + "ffn_norm.weight"], cfg.rms_eps)
    gate = linear(h, "ffn_gate")
    up = linear(h, "ffn_up")
    act = gelu_tanh(gate) if cfg.gelu_gate else silu(gate)
    ffn = linear(act * up, "ffn_down")
    if p + "post_ffw_norm.weight" in w:
        ffn = rms_norm(ffn, w[p + "post_ffw_norm.weight"], cfg.rms_eps)
    return (x + ffn).astype(np.float32)
