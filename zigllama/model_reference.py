"""A plain float64 numpy forward pass of a whole model, the oracle for ``zigllama.Model``.

Weights come from the ``gguf`` package (its reader and its dequantization), not
from zigllama, so the check is independent of the layer under test. Every position
is recomputed from scratch (no cache): ``reference_logits(path, tokens)`` returns
(len(tokens), n_vocab) float64 logits.
"""
import math

import numpy as np

from .model import _GEMMA3_LOCAL_ROPE_BASE, _ROPE_NEOX, _SWA_PATTERN


def load_gguf_weights(path):
    """(metadata dict, {name: float64 array in numpy order}) through the gguf package."""
    import gguf
    from gguf.quants import dequantize

    r = gguf.GGUFReader(path)
    md = {}
    for key, field in r.fields.items():
        if not field.types:
            continue
        if field.types[0] == gguf.GGUFValueType.STRING and len(field.types) == 1:
            md[key] = bytes(field.parts[field.data[0]]).decode("utf-8")
        elif field.types[0] != gguf.GGUFValueType.ARRAY:
            md[key] = field.parts[field.data[0]][0].item()
    weights = {}
    for t in r.tensors:
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))
        weights[t.name] = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
    return md, weights


def _rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x, pos, n_dims, base, freq_scale, neox, freq_factors=None):
    x = x.copy()
    i = np.arange(n_dims // 2)
    theta_i = freq_scale * base ** (-2.0 * i / n_dims)
    if freq_factors is not None:
        theta_i = theta_i / freq_factors[: n_dims // 2]
    ang = pos[:, None] * theta_i[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if neox:
        a, b = x[..., : n_dims // 2].copy(), x[..., n_dims // 2: n_dims].copy()
        x[..., : n_dims // 2] = a * c - b * s
        x[..., n_dims // 2: n_dims] = a * s + b * c
    else:
        a, b = x[..., 0:n_dims:2].copy(), x[..., 1:n_dims:2].copy()
        x[..., 0:n_dims:2] = a * c - b * s
        x[..., 1:n_dims:2] = a * s + b * c
    return x


def reference_logits(path, tokens, weights=None):
    md, w = weights if weights is not None else load_gguf_weights(path)
    arch = md["general.architecture"]

    def g(key, default=None):
        return md.get(f"{arch}.{key}", default)

    n_embd, n_head = g("embedding_length"), g("attention.head_count")
    n_kv = g("attention.head_count_kv", n_head)
    hd = g("attention.key_length", n_embd // n_head)
    n_layer, eps = g("block_count"), g("attention.layer_norm_rms_epsilon", 1e-5)
    base = g("rope.freq_base", 10000.0)
    n_rot = g("rope.dimension_count", hd)
    freq_scale = 1.0 / g("rope.scaling.factor", 1.0) if g("rope.scaling.type") == "linear" else 1.0
    neox, gemma = arch in _ROPE_NEOX, arch.startswith("gemma")
    window = g("attention.sliding_window", 0) if arch in _SWA_PATTERN else 0
    attn_cap, final_cap = g("attn_logit_softcapping", 0.0), g("final_logit_softcapping", 0.0)
    ff = w.get("rope_freqs.weight")

    toks = np.asarray(tokens)
    seq = toks.size
    pos = np.arange(seq, dtype=np.float64)
    x = w["token_embd.weight"][toks].copy()
    if gemma:
        x *= math.sqrt(n_embd)
    group = n_head // n_kv
    for il in range(n_layer):
        p = f"blk.{il}."
        swa = bool(window) and il % _SWA_PATTERN[arch] < _SWA_PATTERN[arch] - 1
        lin = lambda h, n: h @ w[p + n + ".weight"].T + w.get(p + n + ".bias", 0.0)  # noqa: E731
        h = _rms(x, w[p + "attn_norm.weight"], eps)
        q = lin(h, "attn_q").reshape(seq, n_head, hd)
        k = lin(h, "attn_k").reshape(seq, n_kv, hd)
        v = lin(h, "attn_v").reshape(seq, n_kv, hd)
        if p + "attn_q_norm.weight" in w:
            q = _rms(q, w[p + "attn_q_norm.weight"], eps)
            k = _rms(k, w[p + "attn_k_norm.weight"], eps)
        if swa and arch == "gemma3":
            rb, rs, rf = _GEMMA3_LOCAL_ROPE_BASE, 1.0, None
        else:
            rb, rs, rf = base, freq_scale, ff
        q = _rope(q, pos, n_rot, rb, rs, neox, rf)
        k = _rope(k, pos, n_rot, rb, rs, neox, rf)
        out = np.empty((seq, n_head, hd))
        qi, kj = np.arange(seq)[:, None], np.arange(seq)[None, :]
        visible = kj <= qi
        if swa:
            visible &= qi - kj < window
        for head in range(n_head):
            s = q[:, head] @ k[:, head // group].T / math.sqrt(hd)
            if attn_cap:
                s = attn_cap * np.tanh(s / attn_cap)
            s = np.where(visible, s, -np.inf)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            out[:, head] = s @ v[:, head // group]
        o = lin(out.reshape(seq, n_head * hd), "attn_output")
        if p + "post_attention_norm.weight" in w:
            o = _rms(o, w[p + "post_attention_norm.weight"], eps)
        x = x + o
        h = _rms(x, w[p + "ffn_norm.weight"], eps)
        gate, up = lin(h, "ffn_gate"), lin(h, "ffn_up")
        if gemma:
            act = 0.5 * gate * (1 + np.tanh(math.sqrt(2 / math.pi) * (gate + 0.044715 * gate ** 3)))
        else:
            act = gate / (1 + np.exp(-gate))
        f = lin(act * up, "ffn_down")
        if p + "post_ffw_norm.weight" in w:
            f = _rms(f, w[p + "post_ffw_norm.weight"], eps)
        x = x + f
    x = _rms(x, w["output_norm.weight"], eps)
    logits = x @ w.get("output.weight", w["token_embd.weight"]).T
    if final_cap:
        logits = final_cap * np.tanh(logits / final_cap)
    return logits
