"""A whole llama-family model on the Foundations layer: forward pass, KV cache, generation.

The model is a *user* of the layer below: the file is memory-mapped and parsed by
``GGUFReader``, the weight matrices stay quantized in the map, matrix products go
through ``zigllama.qgemm`` when this build has it (else a chunk of rows is
dequantized into a small reused buffer and multiplied by the BLAS vtable), and the
small row-wise steps (RMSNorm, RoPE, masked softmax, the GLU gate) are nogil
kernels of ``zigllama._model_kernels``.

Architectures: llama (llama-2/3, mistral shapes), mistral, qwen2 (q/k/v biases),
gemma, gemma2 (post-norms, attention and final logit soft-capping, alternating
sliding-window layers), gemma3 (q/k norms, five local layers to one global, each
kind with its own RoPE base). Weights use GGUF's convention: a linear layer's
tensor is (n_out, n_in) in numpy order and computes ``x @ W.T``.

    model = zigllama.Model.from_file("model.gguf", threads=2, n_ctx=512)
    logits = model.forward([2, 818, 5279])          # last position's logits
    ids = model.generate([2, 818], 32, zigllama.Sampler(temperature=0.7, seed=1))
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from . import _config
from .errors import ContextOverflow, InvalidToken, MissingTensor, ModelError, UnsupportedArchitecture

ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3")
# Which pairs RoPE rotates: llama's converter permutes Q/K so that adjacent elements
# pair up ("normal"); the others pair element i with i + n_dims/2 ("neox").
_ROPE_NEOX = {"qwen2", "gemma", "gemma2", "gemma3"}
# Sliding-window layers (llama.cpp's swa pattern): in every run of `n` layers, all
# but the last see only the window.
_SWA_PATTERN = {"gemma2": 2, "gemma3": 6}
# gemma3's local layers use their own RoPE base and no scaling.
_GEMMA3_LOCAL_ROPE_BASE = 10000.0

# Floats of the buffer a weight's rows are dequantized into when qgemm is absent:
# small enough to stay in L2 for a single row (generation), larger for prompts.
_CHUNK_GEMV = 1 << 18
_CHUNK_GEMM = 1 << 22
# Tokens per pass of the layer stack (llama.cpp's default micro-batch): a longer
# prompt runs in passes of this many, so the scratch buffers stay a few MiB.
_UBATCH = 512


@dataclass(frozen=True)
class HParams:
    """A model's hyper-parameters, read from GGUF metadata."""

    architecture: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx_train: int
    rms_eps: float
    rope_base: float
    rope_base_local: float
    rope_freq_scale: float     # 1 / linear scaling factor (global layers)
    rope_dim: int
    rope_neox: bool
    gelu: bool                 # GeGLU (gemma family) or SwiGLU
    embed_scale: float         # gemma family: sqrt(n_embd); else 1
    attn_softcap: float        # gemma2: cap * tanh(scores / cap); 0 = off
    final_softcap: float       # gemma2: the same on the logits
    sliding_window: int        # 0 = every layer global
    swa_layers: tuple          # per layer: True for a sliding-window layer
    attn_scale: float

    @classmethod
    def from_metadata(cls, md, n_vocab):
        arch = md.get("general.architecture")
        if arch is None:
            raise UnsupportedArchitecture("the file has no general.architecture")
        arch = str(arch)
        if arch not in ARCHITECTURES:
            raise UnsupportedArchitecture(
                f"architecture {arch!r} is not supported; supported: {', '.join(ARCHITECTURES)}")

        def get(key, default=None):
            full = f"{arch}.{key}"
            if full in md:
                v = md[full]
                if not isinstance(v, (int, float, str, bool, np.generic)):
                    v = np.asarray(v).flat[0]  # per-layer arrays: the first layer's value
                return v
            if default is None:
                raise ModelError(f"metadata key {full!r} is required for a {arch} model")
            return default

        n_embd = int(get("embedding_length"))
        n_head = int(get("attention.head_count"))
        n_head_kv = int(get("attention.head_count_kv", n_head))
        if n_head <= 0 or n_head_kv <= 0 or n_head % n_head_kv:
            raise ModelError(f"head_count {n_head} is not a positive multiple of head_count_kv {n_head_kv}")
        head_dim = int(get("attention.key_length", n_embd // n_head))
        n_layer = int(get("block_count"))
        gemma = arch.startswith("gemma")
        scaling = str(get("rope.scaling.type", "none"))
        factor = float(get("rope.scaling.factor", 1.0))
        freq_scale = 1.0 / factor if scaling == "linear" and factor > 0 else 1.0
        window = int(get("attention.sliding_window", 0)) if arch in _SWA_PATTERN else 0
        pattern = _SWA_PATTERN.get(arch, 0)
        swa = tuple(bool(window) and (il % pattern) < pattern - 1 for il in range(n_layer))
        return cls(
            architecture=arch, n_vocab=int(n_vocab), n_embd=n_embd, n_layer=n_layer,
            n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim,
            n_ff=int(get("feed_forward_length")),
            n_ctx_train=int(get("context_length", 2048)),
            rms_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_base=float(get("rope.freq_base", 10000.0)),
            rope_base_local=_GEMMA3_LOCAL_ROPE_BASE if arch == "gemma3" else float(get("rope.freq_base", 10000.0)),
            rope_freq_scale=freq_scale,
            rope_dim=int(get("rope.dimension_count", head_dim)),
            rope_neox=arch in _ROPE_NEOX,
            gelu=gemma,
            embed_scale=math.sqrt(n_embd) if gemma else 1.0,
            attn_softcap=float(get("attn_logit_softcapping", 0.0)),
            final_softcap=float(get("final_logit_softcapping", 0.0)),
            sliding_window=window,
            swa_layers=swa,
            attn_scale=1.0 / math.sqrt(head_dim),
        )


def rope_tables(n_ctx, rope_dim, base, freq_scale=1.0, freq_factors=None):
    """cos and sin of position * theta_i, (n_ctx, rope_dim / 2) float32 each, computed
    in float64: theta_i = freq_scale * base^(-2i / rope_dim) / freq_factors[i]."""
    inv = base ** (-np.arange(0, rope_dim // 2, dtype=np.float64) * 2.0 / rope_dim) * freq_scale
    if freq_factors is not None:
        inv = inv / np.asarray(freq_factors, dtype=np.float64)[: rope_dim // 2]
    theta = np.outer(np.arange(n_ctx, dtype=np.float64), inv)
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


class Weight:
    """One weight tensor left in the map: its quantized rows, type and shape."""

    __slots__ = ("name", "ggml_type", "shape", "data", "quantized")

    def __init__(self, reader, name):
        info = reader.tensor_info(name)
        self.name = name
        self.ggml_type = int(info.ggml_type)
        self.shape = tuple(info.shape)
        self.data = np.asarray(reader.tensor(name))
        self.quantized = None
        quantized = getattr(reader, "quantized", None)
        if quantized is not None and len(self.shape) == 2 and self.ggml_type != 0:
            try:
                self.quantized = quantized(name)
            except Exception:  # a type qgemm does not take: the dequantizing path serves it
                self.quantized = None

    def rows_f32(self, rows, threads):
        """Rows (an index array) dequantized to float32."""
        from . import dequantize

        if self.ggml_type == 0:
            return np.ascontiguousarray(self.data[rows], dtype=np.float32)
        raw = np.ascontiguousarray(self.data.reshape(self.shape[0], -1)[rows])
        return np.asarray(dequantize(raw, self.ggml_type, (len(rows), self.shape[1]), threads=threads))

    def vector(self):
        from . import dequantize

        if self.ggml_type == 0:
            return np.asarray(self.data, dtype=np.float32).reshape(-1)
        return np.asarray(dequantize(self.data, self.ggml_type, self.shape)).reshape(-1)


class Layer:
    """One block's weights (norm vectors as float32, matrices as ``Weight``), whether it
    is a sliding-window layer, and its RoPE (cos, sin) tables."""

    def __init__(self):
        self.attn_norm = self.ffn_norm = None
        self.wq = self.wk = self.wv = self.wo = self.w_gate = self.w_up = self.w_down = None
        self.bq = self.bk = self.bv = self.q_norm = self.k_norm = None
        self.post_attn_norm = self.post_ffn_norm = None
        self.swa = False
        self.rope = None


class Model:
    """A llama-family model from a GGUF file, with a KV cache.

    ``forward(tokens, start_pos)`` runs ``tokens`` at positions start_pos.. and returns
    the last position's logits (``all_logits=True``: every position's); the cache
    keeps the keys and values so that decoding one more token costs one token.
    Errors: ``UnsupportedArchitecture``, ``MissingTensor``, ``ContextOverflow``,
    ``InvalidToken`` (all ``ModelError``); after one, the model is as it was.

    ``matmul="fast"`` multiplies quantized weights as llama.cpp does (activations
    rounded to 8-bit blocks, integer dot products); ``"exact"`` multiplies float32
    activations with dequantized weights. Both need ``zigllama.qgemm``; without it
    every product dequantizes rows into a small buffer and uses the BLAS vtable.
    """

    def __init__(self, path, threads=None, n_ctx=None, matmul="fast"):
        from . import GGUFReader

        if matmul not in ("fast", "exact"):
            raise ModelError(f"matmul must be 'fast' or 'exact', got {matmul!r}")
        self.matmul = matmul
        self.path = str(path)
        self.threads = _config.resolve_threads(threads)
        self.reader = GGUFReader(self.path)
        try:
            self._load(n_ctx)
        except BaseException:
            self.reader.close()
            raise

    @classmethod
    def from_file(cls, path, threads=None, n_ctx=None, matmul="fast"):
        return cls(path, threads=threads, n_ctx=n_ctx, matmul=matmul)

    # ---- loading --------------------------------------------------------------------

    def _load(self, n_ctx):
        r = self.reader
        names = set(r.tensor_names())

        def need(name):
            if name not in names:
                raise MissingTensor(f"{self.path}: the model has no tensor {name!r}")
            return Weight(r, name)

        def maybe(name):
            return Weight(r, name) if name in names else None

        self.tok_embd = need("token_embd.weight")
        hp = self.hparams = HParams.from_metadata(r.metadata, self.tok_embd.shape[0])
        self.n_ctx = int(n_ctx) if n_ctx else min(hp.n_ctx_train, 4096)
        if self.n_ctx < 1:
            raise ModelError(f"n_ctx must be at least 1, got {n_ctx}")
        self.output_norm = need("output_norm.weight").vector()
        self.output = maybe("output.weight") or self.tok_embd   # tied embeddings
        freq_factors = maybe("rope_freqs.weight")
        ff = freq_factors.vector() if freq_factors is not None else None
        global_rope = rope_tables(self.n_ctx, hp.rope_dim, hp.rope_base, hp.rope_freq_scale, ff)
        local_rope = (rope_tables(self.n_ctx, hp.rope_dim, hp.rope_base_local)
                      if hp.rope_base_local != hp.rope_base or hp.rope_freq_scale != 1.0 else global_rope)
        self.layers = []
        for il in range(hp.n_layer):
            p = f"blk.{il}."
            L = Layer()
            L.attn_norm = need(p + "attn_norm.weight").vector()
            L.wq, L.wk, L.wv, L.wo = (need(p + n + ".weight") for n in ("attn_q", "attn_k", "attn_v", "attn_output"))
            L.bq, L.bk, L.bv = (self._vector_or_none(maybe(p + n + ".bias")) for n in ("attn_q", "attn_k", "attn_v"))
            L.q_norm = self._vector_or_none(maybe(p + "attn_q_norm.weight"))
            L.k_norm = self._vector_or_none(maybe(p + "attn_k_norm.weight"))
            L.post_attn_norm = self._vector_or_none(maybe(p + "post_attention_norm.weight"))
            L.ffn_norm = need(p + "ffn_norm.weight").vector()
            L.w_gate, L.w_up, L.w_down = (need(p + n + ".weight") for n in ("ffn_gate", "ffn_up", "ffn_down"))
            L.post_ffn_norm = self._vector_or_none(maybe(p + "post_ffw_norm.weight"))
            L.swa = hp.swa_layers[il]
            L.rope = local_rope if L.swa else global_rope
            expect = {"attn_q": (hp.n_head * hp.head_dim, hp.n_embd), "attn_k": (hp.n_head_kv * hp.head_dim, hp.n_embd),
                      "attn_v": (hp.n_head_kv * hp.head_dim, hp.n_embd), "attn_output": (hp.n_embd, hp.n_head * hp.head_dim),
                      "ffn_gate": (hp.n_ff, hp.n_embd), "ffn_up": (hp.n_ff, hp.n_embd), "ffn_down": (hp.n_embd, hp.n_ff)}
            for w in (L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down):
                want = expect[w.name.split(".")[2]]
                if w.shape != want:
                    raise ModelError(f"{w.name}: shape {w.shape}, expected {want} from the metadata")
            self.layers.append(L)
        if self.tok_embd.shape[1] != hp.n_embd or self.output.shape[1] != hp.n_embd:
            raise ModelError(f"embedding width {self.tok_embd.shape[1]} / output {self.output.shape} "
                             f"do not match n_embd {hp.n_embd}")
        shape = (hp.n_layer, hp.n_head_kv, self.n_ctx, hp.head_dim)
        # Zero pages are not touched until written: the cache costs what is used.
        self.k_cache = np.zeros(shape, dtype=np.float32)
        self.v_cache = np.zeros(shape, dtype=np.float32)
        self.n_past = 0
        self._scratch = None
        import zigllama

        # qgemm comes from the quantized-matmul module when this build has it.
        self._qgemm_fn = getattr(zigllama, "qgemm", None)
        self.use_qgemm = self._qgemm_fn is not None
        self._blas = zigllama.get_blas("scipy")
        self._dequantize = zigllama.dequantize
        self._stack = self._layer_stack(global_rope, local_rope)
        # The last position's normed state and logits, reused from token to token.
        self._last_h = np.empty((1, hp.n_embd), dtype=np.float32)
        self._last_logits = None

    def _layer_stack(self, global_rope, local_rope):
        """The nogil runner of every block when each matrix is a QuantizedTensor view
        that qgemm takes; else None (every product then goes through ``linear``)."""
        if not self.use_qgemm:
            return None
        mats = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
        if any(getattr(L, m).quantized is None for L in self.layers for m in mats):
            return None
        from ._model_kernels import LayerStack

        layers = []
        for il, L in enumerate(self.layers):
            d = {m: getattr(L, m).quantized for m in mats}
            d.update(attn_norm=L.attn_norm, ffn_norm=L.ffn_norm, post_attn_norm=L.post_attn_norm,
                     post_ffn_norm=L.post_ffn_norm, q_norm=L.q_norm, k_norm=L.k_norm, bq=L.bq, bk=L.bk, bv=L.bv,
                     cos=L.rope[0], sin=L.rope[1], k_cache=self.k_cache[il], v_cache=self.v_cache[il], swa=L.swa)
            layers.append(d)
        return LayerStack(self.hparams, layers, self.n_ctx, min(self.n_ctx, _UBATCH), self.matmul)

    @staticmethod
    def _vector_or_none(w):
        return None if w is None else w.vector()

    def close(self):
        self._stack = None
        self.k_cache = self.v_cache = None
        self.layers = []
        self.tok_embd = self.output = None
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def reset(self):
        """Forget the cache (the next forward starts at position 0)."""
        self.n_past = 0

    @property
    def n_vocab(self):
        return self.hparams.n_vocab

    # ---- the forward pass -------------------------------------------------------------

    def linear(self, x, w, out=None):
        """x @ w.T for a weight left quantized in the map."""
        n_out, n_in = w.shape
        if out is None:
            out = np.empty((x.shape[0], n_out), dtype=np.float32)
        if self._qgemm_fn is not None and w.quantized is not None:
            self._qgemm_fn(x, w.quantized, out=out, mode=self.matmul, threads=self.threads)
            return out
        if w.ggml_type == 0:
            self._blas.gemm(x, w.data, out=out, trans_b=True)
            return out
        chunk = max(1, (_CHUNK_GEMV if x.shape[0] <= 4 else _CHUNK_GEMM) // n_in)
        if self._scratch is None or self._scratch.size < chunk * n_in:
            self._scratch = np.empty(chunk * n_in, dtype=np.float32)
        raw = w.data.reshape(n_out, -1)
        for r0 in range(0, n_out, chunk):
            r1 = min(n_out, r0 + chunk)
            buf = self._scratch[: (r1 - r0) * n_in].reshape(r1 - r0, n_in)
            self._dequantize(raw[r0:r1], w.ggml_type, buf.shape, out=buf, threads=self.threads)
            self._blas.gemm(x, buf, out=out[:, r0:r1], trans_b=True)
        return out

    def _check_tokens(self, tokens, start_pos):
        toks = np.asarray(tokens)
        if toks.ndim != 1 or toks.size == 0:
            raise InvalidToken(f"tokens must be a non-empty 1-D sequence of ids, got shape {toks.shape}")
        if not np.issubdtype(toks.dtype, np.integer):
            raise InvalidToken(f"token ids must be integers, got {toks.dtype}")
        bad = np.flatnonzero((toks < 0) | (toks >= self.n_vocab))
        if bad.size:
            raise InvalidToken(f"token id {int(toks[bad[0]])} at index {int(bad[0])} is outside the "
                               f"vocabulary of {self.n_vocab}")
        if start_pos < 0 or start_pos > self.n_past:
            raise ModelError(f"start_pos {start_pos} must be within 0..{self.n_past} (the cached positions)")
        if start_pos + toks.size > self.n_ctx:
            raise ContextOverflow(f"{toks.size} tokens from position {start_pos} need {start_pos + toks.size} "
                                  f"positions, the context holds {self.n_ctx}")
        return toks.astype(np.int64)

    def embed(self, toks):
        x = self.tok_embd.rows_f32(toks, self.threads)
        if self.hparams.embed_scale != 1.0:
            x *= np.float32(self.hparams.embed_scale)
        return x

    def forward(self, tokens, start_pos=None, all_logits=False, timings=None, out=None):
        """Logits after ``tokens`` at positions start_pos.. (default: after the cache).

        Returns (n_vocab,) float32 for the last position, or (len(tokens), n_vocab)
        with ``all_logits``. ``timings`` (a dict) gathers seconds per stage. ``out``
        (float32, (n_vocab,)) receives the last position's logits instead of a new
        array: a decoding loop then allocates nothing per token.
        """
        start_pos = self.n_past if start_pos is None else int(start_pos)
        toks = self._check_tokens(tokens, start_pos)
        if out is not None and (all_logits or not isinstance(out, np.ndarray) or out.dtype != np.float32
                                or out.shape != (self.n_vocab,) or not out.flags.c_contiguous):
            raise ModelError(f"out must be a contiguous float32 array of shape ({self.n_vocab},) "
                             f"and all_logits off")
        saved = _config._override
        _config.set_num_threads(self.threads)   # sizes the BLAS behind scipy as well
        try:
            if self._stack is not None:
                return self._forward_stack(toks, start_pos, all_logits, timings, out)
            logits = self._forward(toks, start_pos, all_logits, timings)
            if out is not None:
                out[:] = logits
                return out
            return logits
        finally:
            _config._override = saved

    def _forward_stack(self, toks, start_pos, all_logits, timings, out):
        from . import _model_kernels as K

        hp = self.hparams
        clock = _StageClock(timings)
        step = self._stack.max_seq
        rows, pos = [], start_pos
        for c0 in range(0, toks.size, step):
            chunk = toks[c0:c0 + step]
            x = clock.run("embed", self.embed, chunk)
            # Rows whose output is read: every row, or the prompt's last one (the last
            # block skips the rest, as llama.cpp does); earlier passes only fill the cache.
            n_out = chunk.size if all_logits else int(c0 + step >= toks.size)
            self._stack.run(x, pos, self.threads, timings, n_out)
            pos += chunk.size
            if all_logits:
                t0 = clock.now()
                hn = np.empty_like(x)
                K.rms_norm(x, self.output_norm, hp.rms_eps, hn, self.threads)
                rows.append(self.linear(hn, self.output))
                clock.add("output (logits)", t0)
        self.n_past = pos
        t0 = clock.now()
        if all_logits:
            logits = rows[0] if len(rows) == 1 else np.concatenate(rows)
        else:
            K.rms_norm(x[-1:], self.output_norm, hp.rms_eps, self._last_h, self.threads)
            logits = (out.reshape(1, -1) if out is not None
                      else np.empty((1, hp.n_vocab), dtype=np.float32))
            self.linear(self._last_h, self.output, out=logits)
        if hp.final_softcap:
            K.soft_cap(logits, hp.final_softcap)
        clock.add("output (logits)", t0)
        if all_logits:
            return logits
        return out if out is not None else logits[0]

    def _forward(self, toks, start_pos, all_logits, timings):
        from . import _model_kernels as K

        hp, th = self.hparams, self.threads
        clock = _StageClock(timings)
        seq = toks.size
        end = start_pos + seq
        hd, nh, nkv = hp.head_dim, hp.n_head, hp.n_head_kv
        group = nh // nkv
        x = clock.run("embed", self.embed, toks)
        h = np.empty_like(x)
        attn = np.empty((seq, nh * hd), dtype=np.float32)
        for il, L in enumerate(self.layers):
            t0 = clock.now()
            K.rms_norm(x, L.attn_norm, hp.rms_eps, h, th)
            clock.add("norms", t0)
            t0 = clock.now()
            q = self.linear(h, L.wq)
            k = self.linear(h, L.wk)
            v = self.linear(h, L.wv)
            clock.add("q/k/v projections", t0)
            t0 = clock.now()
            if L.bq is not None:
                q += L.bq
            if L.bk is not None:
                k += L.bk
            if L.bv is not None:
                v += L.bv
            q3 = q.reshape(seq, nh, hd)
            k3 = k.reshape(seq, nkv, hd)
            if L.q_norm is not None:
                K.rms_norm(q.reshape(-1, hd), L.q_norm, hp.rms_eps, q.reshape(-1, hd), th)
            if L.k_norm is not None:
                K.rms_norm(k.reshape(-1, hd), L.k_norm, hp.rms_eps, k.reshape(-1, hd), th)
            cos, sin = L.rope
            K.rope(q3, cos, sin, start_pos, hp.rope_dim, hp.rope_neox)
            K.rope(k3, cos, sin, start_pos, hp.rope_dim, hp.rope_neox)
            kc, vc = self.k_cache[il], self.v_cache[il]
            kc[:, start_pos:end, :] = k3.transpose(1, 0, 2)
            vc[:, start_pos:end, :] = v.reshape(seq, nkv, hd).transpose(1, 0, 2)
            clock.add("rope + cache", t0)
            t0 = clock.now()
            # Keys a sliding-window layer can see start at the first query's window.
            lo = max(0, start_pos - hp.sliding_window + 1) if L.swa else 0
            n_keys = end - lo
            a3 = attn.reshape(seq, nh, hd)
            for g in range(nkv):
                qg = q3[:, g * group:(g + 1) * group, :].reshape(seq * group, hd)
                if not qg.flags.c_contiguous:
                    qg = np.ascontiguousarray(qg)
                # Through the BLAS vtable, whose threads follow the model's setting.
                scores = self._blas.gemm(qg, kc[g, lo:end], trans_b=True)
                K.masked_softmax(scores, group, start_pos - lo, hp.sliding_window if L.swa else 0,
                                 hp.attn_scale, hp.attn_softcap, th)
                a3[:, g * group:(g + 1) * group, :] = self._blas.gemm(scores, vc[g, lo:end]).reshape(seq, group, hd)
            clock.add("attention", t0)
            t0 = clock.now()
            o = self.linear(attn, L.wo)
            clock.add("output projection", t0)
            t0 = clock.now()
            if L.post_attn_norm is not None:
                K.rms_norm(o, L.post_attn_norm, hp.rms_eps, o, th)
            x += o
            K.rms_norm(x, L.ffn_norm, hp.rms_eps, h, th)
            clock.add("norms", t0)
            t0 = clock.now()
            gate = self.linear(h, L.w_gate)
            up = self.linear(h, L.w_up)
            clock.add("gate/up projections", t0)
            t0 = clock.now()
            K.gated_activation(gate, up, hp.gelu, th)
            clock.add("GLU", t0)
            t0 = clock.now()
            f = self.linear(gate, L.w_down)
            clock.add("down projection", t0)
            t0 = clock.now()
            if L.post_ffn_norm is not None:
                K.rms_norm(f, L.post_ffn_norm, hp.rms_eps, f, th)
            x += f
            clock.add("norms", t0)
        self.n_past = end
        t0 = clock.now()
        last = x if all_logits else x[-1:]
        hn = np.empty_like(last)
        K.rms_norm(np.ascontiguousarray(last), self.output_norm, hp.rms_eps, hn, th)
        logits = self.linear(hn, self.output)
        if hp.final_softcap:
            K.soft_cap(logits, hp.final_softcap)
        clock.add("output (logits)", t0)
        return logits if all_logits else logits[0]

    # ---- generation -------------------------------------------------------------------

    def generate(self, prompt_ids, n, sampler=None, on_token=None, stop_at_eos=True, start_pos=0):
        """Run the prompt, then sample up to ``n`` tokens one at a time (greedy without a
        sampler). ``on_token(id)`` is called as each arrives. Returns the new ids; the
        timings of the last call are in ``self.last_timings``."""
        sampler = sampler or Sampler(temperature=0.0)
        prompt = list(prompt_ids)
        if start_pos + len(prompt) + max(0, int(n)) > self.n_ctx:
            raise ContextOverflow(f"a prompt of {len(prompt)} tokens and {n} more need "
                                  f"{start_pos + len(prompt) + n} positions, the context holds {self.n_ctx}")
        eos = self.reader.metadata.get("tokenizer.ggml.eos_token_id")
        eos = None if eos is None else int(eos)
        # One logits buffer for the whole loop: the sampler reads it before the next token.
        if self._last_logits is None:
            self._last_logits = np.empty(self.n_vocab, dtype=np.float32)
        logits = self._last_logits
        t0 = time.perf_counter()
        self.forward(prompt, start_pos=start_pos, out=logits)
        t1 = time.perf_counter()
        out = []
        for _ in range(int(n)):
            tok = sampler.sample(logits)
            out.append(tok)
            if on_token is not None:
                on_token(tok)
            if stop_at_eos and tok == eos:
                break
            if len(out) == n:
                break
            self.forward([tok], out=logits)
        t2 = time.perf_counter()
        self.last_timings = dict(prompt_tokens=len(prompt), prompt_seconds=t1 - t0,
                                 generated_tokens=len(out), generation_seconds=t2 - t1)
        return out


class _StageClock:
    """Seconds per stage into a dict, or nothing when no dict is given."""

    __slots__ = ("d",)

    def __init__(self, d):
        self.d = d

    def now(self):
        return time.perf_counter() if self.d is not None else 0.0

    def add(self, name, t0):
        if self.d is not None:
            self.d[name] = self.d.get(name, 0.0) + time.perf_counter() - t0

    def run(self, name, fn, *args):
        t0 = self.now()
        r = fn(*args)
        self.add(name, t0)
        return r


class Sampler:
    """Next-token choice from logits: greedy at temperature 0, else top-k, then top-p
    (nucleus) over the temperature-scaled softmax, drawn from a seeded generator."""

    def __init__(self, temperature=0.8, top_k=40, top_p=0.95, seed=None):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.rng = np.random.default_rng(seed)

    def probabilities(self, logits):
        """(ids, probabilities) of the candidates left after top-k and top-p, most likely first."""
        logits = np.asarray(logits, dtype=np.float32)
        ids = np.arange(logits.size)
        if 0 < self.top_k < logits.size:
            ids = np.argpartition(-logits, self.top_k - 1)[: self.top_k]
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        z = logits[ids].astype(np.float64) / max(self.temperature, 1e-6)
        p = np.exp(z - z[0])
        p /= p.sum()
        if self.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(p), self.top_p)) + 1
            ids, p = ids[:keep], p[:keep] / p[:keep].sum()
        return ids, p

    def sample(self, logits):
        if self.temperature == 0.0:
            return int(np.argmax(logits))
        ids, p = self.probabilities(logits)
        return int(ids[self.rng.choice(ids.size, p=p)])
