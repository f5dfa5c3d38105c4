"""Small whole models in each architecture's shape, written by the gguf package.

Weights are random and small; their types are mixed as real quantized files mix
them (Q8_0 embeddings, Q4_K/Q5_0/Q4_0 attention, Q6_K down projections, F32 norms,
an F16 matrix). The vocabulary is SentencePiece-like with scores, so the same
files serve the tokenizer tests.
"""
import numpy as np

import zigllama as zl

# name: (arch, n_layer, n_head, n_head_kv, extra metadata, options)
ARCHS = {
    "llama": ("llama", 2, 4, 2, {}, {}),
    "llama3": ("llama", 2, 4, 1, {"rope.freq_base": 500000.0}, {"rope_freqs": True}),
    "mistral": ("mistral", 2, 4, 2, {"rope.scaling.type": "linear", "rope.scaling.factor": 2.0}, {}),
    "qwen2": ("qwen2", 2, 4, 2, {"rope.freq_base": 1000000.0}, {"bias": True}),
    "gemma": ("gemma", 2, 4, 1, {}, {"tied": True}),
    "gemma2": ("gemma2", 3, 4, 2, {"attention.sliding_window": 4, "attn_logit_softcapping": 50.0,
                                   "final_logit_softcapping": 30.0}, {"post_norms": True}),
    "gemma3": ("gemma3", 7, 4, 1, {"attention.sliding_window": 4, "rope.freq_base": 1000000.0,
                                   "rope.scaling.type": "linear", "rope.scaling.factor": 8.0},
               {"post_norms": True, "qk_norm": True, "tied": True}),
}

N_EMBD, HEAD_DIM, N_FF = 256, 64, 512

WORDS = ("the quick brown fox jumps over lazy dog hello world token model layer attention "
         "cache memory thread core matrix vector file gguf python numpy llama gemma qwen").split()


def spm_vocab():
    """(tokens, scores, types): specials, 256 byte tokens, then pieces by score."""
    tokens = ["<unk>", "<s>", "</s>", "<start_of_turn>", "<mask>"]
    types = [2, 3, 3, 4, 3]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("ABCHW.,!?'") + ["你", "好", "世"]
    for w in WORDS:
        for n in range(2, len(w) + 1):
            pieces += [w[:n], "\u2581" + w[:n]]
    pieces += ["\u2581\u2581", "\u2581\u2581\u2581\u2581", "你好"]
    seen = set(tokens)
    for p in pieces:
        if p not in seen:
            seen.add(p)
            tokens.append(p)
            types.append(1)
    n_special = 5 + 256
    # Longer pieces score higher, ties broken by position: merges toward whole words.
    scores = [0.0] * n_special + [float(len(t)) - 0.001 * i for i, t in enumerate(tokens[n_special:])]
    return tokens, scores, types


def write_model(path, name="llama", seed=0, drop=(), architecture=None):
    """Write the model ``name`` of ARCHS; ``drop`` leaves tensors out, ``architecture``
    overrides general.architecture (for the error tests)."""
    import gguf

    arch, n_layer, n_head, n_kv, extra, opt = ARCHS[name]
    arch = architecture or arch
    tokens, scores, types = spm_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"test-{name}")
    w.add_context_length(64)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(HEAD_DIM)
    for key, value in extra.items():
        full = f"{arch}.{key}"
        if isinstance(value, str):
            w.add_string(full, value)
        elif isinstance(value, float):
            w.add_float32(full, value)
        else:
            w.add_uint32(full, value)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_space_prefix(not arch.startswith("gemma"))

    def mat(n_out, n_in, scale=1.0):
        return (rng.standard_normal((n_out, n_in)) * scale / np.sqrt(n_in)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    def put(tname, data, qtype=None):
        if tname in drop:
            return
        if qtype is None:
            w.add_tensor(tname, data)
            return
        if qtype == "F16":
            w.add_tensor(tname, data.astype(np.float16))
            return
        raw = np.asarray(zl.quantize(data, qtype)).view(np.uint8).reshape(data.shape[0], -1)
        w.add_tensor(tname, raw, raw_dtype=gguf.GGMLQuantizationType[qtype])

    put("token_embd.weight", (rng.standard_normal((n_vocab, N_EMBD)) * 0.5).astype(np.float32), "Q8_0")
    qk_types = ("Q4_K", "Q5_0", "Q8_0", "Q4_0")
    for il in range(n_layer):
        p = f"blk.{il}."
        put(p + "attn_norm.weight", norm(N_EMBD))
        put(p + "attn_q.weight", mat(n_head * HEAD_DIM, N_EMBD, 2.0), qk_types[il % 4])
        put(p + "attn_k.weight", mat(n_kv * HEAD_DIM, N_EMBD, 2.0), qk_types[(il + 1) % 4])
        put(p + "attn_v.weight", mat(n_kv * HEAD_DIM, N_EMBD), "Q6_K" if il % 2 else "Q8_0")
        put(p + "attn_output.weight", mat(N_EMBD, n_head * HEAD_DIM), "F16" if il == 0 else "Q4_K")
        if opt.get("bias"):
            for n, rows in (("attn_q", n_head), ("attn_k", n_kv), ("attn_v", n_kv)):
                put(p + n + ".bias", (0.3 * rng.standard_normal(rows * HEAD_DIM)).astype(np.float32))
        if opt.get("qk_norm"):
            put(p + "attn_q_norm.weight", norm(HEAD_DIM))
            put(p + "attn_k_norm.weight", norm(HEAD_DIM))
        if opt.get("post_norms"):
            put(p + "post_attention_norm.weight", norm(N_EMBD))
            put(p + "post_ffw_norm.weight", norm(N_EMBD))
        put(p + "ffn_norm.weight", norm(N_EMBD))
        put(p + "ffn_gate.weight", mat(N_FF, N_EMBD), "Q4_K")
        put(p + "ffn_up.weight", mat(N_FF, N_EMBD), "Q5_0" if il % 2 else "Q4_K")
        put(p + "ffn_down.weight", mat(N_EMBD, N_FF), "Q6_K")
    put("output_norm.weight", norm(N_EMBD))
    if opt.get("rope_freqs"):
        put("rope_freqs.weight", np.linspace(1.0, 8.0, HEAD_DIM // 2).astype(np.float32))
    if not opt.get("tied"):
        put("output.weight", mat(n_vocab, N_EMBD, 4.0), "Q6_K")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
