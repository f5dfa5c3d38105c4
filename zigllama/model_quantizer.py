"""Quantize a whole GGUF model the way llama.cpp's ``llama-quantize`` does.

``plan_quantization`` chooses each tensor's type with llama-quantize's rules
(llama.cpp ``src/llama-quant.cpp``: which tensors stay as they are, the higher
types of the _M/_L mixes for ``output``/``token_embd``, ``attn_v``,
``ffn_down`` by layer position, architecture and head grouping, and the
fallbacks for rows that are not a whole number of blocks), and records the rule
that chose it. ``quantize_model`` writes the result as llama-quantize writes it:
the tensors in its order (by layer, then by name), the metadata copied with
``general.quantization_version`` and ``general.file_type`` moved to the end and
the ``split.*`` keys dropped. The tensors are quantized by
``zigllama.quantize``, byte for byte as ggml does, a bounded slice of rows at a
time (memory stays at a few tens of MiB whatever the model's size), into a
temporary file beside the output that is renamed into place only when complete.
"""
import os
import re
import struct
import sys
import time

import numpy as np

from ._core.gguf_format import GGUFReader, GGUFValueType
from ._core.quantization import dequantize, quantize
from .errors import GGUFError, QuantizationError
from .ggml_types import GGML_TYPE_TRAITS, GGMLType
from .gguf_summary import FILE_TYPE_NAMES
from .gguf_writer import GGUFWriter

# llama-quantize's file types that zigllama writes -> their default tensor type
_DEFAULT_TYPE = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0",
    "Q5_1": "Q5_1", "Q8_0": "Q8_0", "Q2_K": "Q2_K", "Q2_K_S": "Q2_K", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K",
    "Q3_K_L": "Q3_K", "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K",
    "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS", "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0", "MXFP4_MOE": "MXFP4",
}
_FILE_TYPE_IDS = {name: value for value, name in FILE_TYPE_NAMES.items()}
#: llama-quantize's file types: name -> (general.file_type, default tensor type)
FILE_TYPES = {name: (_FILE_TYPE_IDS[name], default) for name, default in _DEFAULT_TYPE.items()}
#: llama-quantize's aliases
FILE_TYPE_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "MXFP4": "MXFP4_MOE"}

QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION
_SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
_QUANTIZED = {t for t in GGMLType if GGML_TYPE_TRAITS[t][0] > 1}
# Rows per slice: at most this many float32 bytes are decoded at a time.
_SLICE_BYTES = 32 << 20

# Substrings (or exact names) of tensors llama-quantize never quantizes.
_NEVER = ("_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
          "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
          "indexer.q_proj.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
          "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd")
_NEVER_RWKV = tuple(f"time_mix_{s}.weight" for s in (
    "first", "w0", "w1", "w2", "v0", "v1", "v2", "a0", "a1", "a2", "g1", "g2", "decay_w1", "decay_w2", "lerp_fused"))
_NEVER_EXACT = ("position_embd.weight", "token_types.weight")


def resolve_file_type(name):
    """(canonical name, general.file_type, default GGMLType) of a llama-quantize type name."""
    key = str(name).upper()
    key = FILE_TYPE_ALIASES.get(key, key)
    if key not in FILE_TYPES:
        raise QuantizationError(f"unknown file type {name!r}; one of: {', '.join(list(FILE_TYPES) + list(FILE_TYPE_ALIASES))}")
    ftype, default = FILE_TYPES[key]
    return key, ftype, GGMLType[default]


def _layer_of(name):
    m = re.match(r"blk\.([+-]?\d+)", name)
    return int(m.group(1)) if m else -1


def llama_tensor_order(names):
    """The order of llama.cpp's model loader (and so of llama-quantize's output):
    tensors outside the blocks first, then block by block, each by name (bytes)."""
    return sorted(names, key=lambda n: (_layer_of(n), n.encode("utf-8")))


def _category(name):
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for part, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"),
                      ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                      ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                      ("ffn_down", "ffn_down")):
        if part in name:
            return cat
    return "other"


def _n_dims(ne):
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return max(n, 1)


def allows_quantization(name, ne):
    """llama-quantize's tensor_allows_quantization (with the output quantized)."""
    if _n_dims(ne) < 2 or not name.endswith("weight"):
        return False
    if any(s in name for s in _NEVER + _NEVER_RWKV):
        return False
    return name not in _NEVER_EXACT


class _Hparams:
    def __init__(self, md):
        self.arch = md.get("general.architecture", "") or ""
        a = self.arch

        def first(key, default=0):
            v = md.get(f"{a}.{key}", default)
            if isinstance(v, (list, tuple, np.ndarray)):
                v = v[0] if len(v) else default
            return int(v)

        self.n_layer = first("block_count")
        self.n_head = first("attention.head_count")
        self.n_head_kv = first("attention.head_count_kv", self.n_head)
        self.n_expert = first("expert_count")
        self.n_gqa = self.n_head // self.n_head_kv if self.n_head_kv else 0
        self.is_70b = a == "llama" and self.n_layer == 80 and self.n_head != self.n_head_kv


def _use_more_bits(i_layer, n_layers):
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


class _State:
    def __init__(self, hp, names, has_imatrix):
        self.hp = hp
        self.has_imatrix = has_imatrix
        cats = [_category(n) for n in names]
        self.n_attention_wv = sum(c in ("attn_v", "attn_qkv", "attn_kv_b") for c in cats)
        self.has_tied_embeddings = "output" not in cats
        self.n_ffn = hp.n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0


def _layer_info(st, i_layer, name):
    if max(1, st.hp.n_expert) > 1:
        i_layer = _layer_of(name)
        if i_layer < 0 or i_layer >= st.n_ffn:
            raise QuantizationError(f"bad layer {i_layer} for tensor {name}: must be in [0, {st.n_ffn})")
    return i_layer, st.n_ffn


def _mix_type(st, t, name, ne, fname, cat):
    """llama_tensor_get_type_impl for the supported file types: (type, rule)."""
    T = GGMLType
    hp = st.hp
    if cat == "output" or (st.has_tied_embeddings and cat == "token_embd"):
        what = "output" if cat == "output" else "token_embd (tied to the output)"
        if fname == "MXFP4_MOE":
            return T.Q8_0, f"{what}: Q8_0 for MXFP4_MOE"
        if hp.arch == "falcon" or ne[0] % GGML_TYPE_TRAITS[t][0]:
            return T.Q8_0, f"{what}: Q8_0 (falcon, or a row not a whole number of {t.name} blocks)"
        if t != T.Q8_0:
            return T.Q6_K, f"{what}: Q6_K"
        return t, f"{what}: stays Q8_0"
    if fname == "MXFP4_MOE":
        if len(ne) > 2 and ne[2] > 1:
            return T.MXFP4, "MoE expert tensor: MXFP4"
        return T.Q8_0, "not an expert tensor: Q8_0 in MXFP4_MOE"
    if cat == "token_embd":
        if fname in ("TQ1_0", "TQ2_0"):
            return T.Q4_K, "token_embd: Q4_K for ternary files"
        return t, "token_embd: default type"
    if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
        i, n = st.i_attention_wv, st.n_attention_wv
        rule, new = "attn_v: default type", t
        if fname == "Q2_K":
            new, rule = (T.Q4_K, "attn_v: Q4_K (n_gqa >= 4)") if hp.n_gqa >= 4 else (T.Q3_K, "attn_v: Q3_K")
        elif fname == "Q2_K_S" and hp.n_gqa >= 4:
            new, rule = T.Q4_K, "attn_v: Q4_K (n_gqa >= 4)"
        elif fname == "Q3_K_M":
            new, rule = (T.Q5_K, "attn_v: Q5_K (first two)") if i < 2 else (T.Q4_K, "attn_v: Q4_K")
        elif fname == "Q3_K_L":
            new, rule = T.Q5_K, "attn_v: Q5_K"
        elif fname in ("IQ4_NL", "IQ4_XS") and hp.n_gqa >= 4:
            new, rule = T.Q5_K, "attn_v: Q5_K (n_gqa >= 4)"
        elif fname in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new, rule = T.Q6_K, f"attn_v: Q6_K (use_more_bits({i}, {n}))"
        elif fname == "Q4_K_S" and i < 4:
            new, rule = T.Q5_K, "attn_v: Q5_K (first four)"
        if hp.is_70b and new in (T.Q3_K, T.Q4_K):
            new, rule = T.Q5_K, "attn_v: Q5_K (70B, 8 heads share attn_v)"
        if hp.n_expert == 8:
            new, rule = T.Q8_0, "attn_v: Q8_0 (8 experts)"
        st.i_attention_wv += 1
        return new, rule
    if cat == "attn_k":
        if hp.n_expert == 8:
            return T.Q8_0, "attn_k: Q8_0 (8 experts)"
        return t, "default type"
    if cat == "ffn_down":
        i, n = _layer_info(st, st.i_ffn_down, name)
        st.i_ffn_down += 1
        falcon = hp.arch == "falcon"
        if fname == "Q2_K":
            return T.Q3_K, "ffn_down: Q3_K"
        if fname == "Q2_K_S":
            return (T.Q4_K, "ffn_down: Q4_K (first eighth of the layers)") if i < n // 8 else (t, "default type")
        if fname == "Q3_K_M":
            if i < n // 16:
                return T.Q5_K, "ffn_down: Q5_K (first sixteenth)"
            if not falcon or _use_more_bits(i, n):
                return T.Q4_K, "ffn_down: Q4_K"
            return T.Q3_K, "ffn_down: Q3_K (falcon)"
        if fname == "Q3_K_L":
            return (T.Q4_K, "ffn_down: Q4_K (falcon)") if falcon else (T.Q5_K, "ffn_down: Q5_K")
        if fname == "Q4_K_M":
            if falcon:
                if i < n // 16:
                    return T.Q6_K, "ffn_down: Q6_K (falcon, first sixteenth)"
                return (T.Q5_K, "ffn_down: Q5_K (falcon)") if _use_more_bits(i, n) else (T.Q4_K, "default type")
            if _use_more_bits(i, n):
                return T.Q6_K, f"ffn_down: Q6_K (use_more_bits({i}, {n}))"
            return t, "default type"
        if i < n // 8 and fname in ("IQ4_NL", "IQ4_XS") and not st.has_imatrix:
            return T.Q5_K, "ffn_down: Q5_K (first eighth, no imatrix)"
        if fname == "Q5_K_M" and _use_more_bits(i, n):
            return T.Q6_K, f"ffn_down: Q6_K (use_more_bits({i}, {n}))"
        if fname == "Q4_K_S" and not falcon and i < n // 8:
            return T.Q5_K, "ffn_down: Q5_K (first eighth)"
        if fname in ("Q4_0", "Q5_0") and st.has_imatrix and i < n // 8:
            return (T.Q4_1 if fname == "Q4_0" else T.Q5_1), "ffn_down: _1 type (first eighth, with imatrix)"
        return t, "default type"
    if cat == "attn_output":
        if hp.arch != "falcon":
            if hp.n_expert == 8:
                if fname in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                    return T.Q5_K, "attn_output: Q5_K (8 experts)"
            else:
                if fname == "Q2_K":
                    return T.Q3_K, "attn_output: Q3_K"
                if fname == "Q3_K_M":
                    return T.Q4_K, "attn_output: Q4_K"
                if fname == "Q3_K_L":
                    return T.Q5_K, "attn_output: Q5_K"
        elif fname == "Q3_K_L":
            return T.Q4_K, "attn_output: Q4_K (falcon)"
        return t, "default type"
    if cat == "ffn_gate":
        _layer_info(st, st.i_ffn_gate, name)
        st.i_ffn_gate += 1
    elif cat == "ffn_up":
        _layer_info(st, st.i_ffn_up, name)
        st.i_ffn_up += 1
    return t, "default type"


_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0", "Q4_K": "Q5_0",
             "Q5_K": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL"}


class TensorPlan:
    """One tensor of the plan: name, ggml-order dimensions, types and the rule."""
    __slots__ = ("name", "ne", "src_type", "dst_type", "rule", "src_bytes", "dst_bytes")

    def __init__(self, name, ne, src_type, dst_type, rule):
        self.name, self.ne, self.src_type, self.dst_type, self.rule = name, ne, src_type, dst_type, rule
        self.src_bytes = _nbytes(src_type, ne)
        self.dst_bytes = _nbytes(dst_type, ne)


def _nbytes(t, ne):
    block, size = GGML_TYPE_TRAITS[t]
    n = 1
    for d in ne[1:]:
        n *= d
    return n * (ne[0] // block) * size


def plan_quantization(reader, file_type, *, has_imatrix=False):
    """The per-tensor plan (a list of TensorPlan, in output order) for a reader."""
    fname, _, default = resolve_file_type(file_type)
    md = reader.metadata
    hp = _Hparams(md)
    names = llama_tensor_order(reader.tensor_names())
    st = _State(hp, names, has_imatrix)
    plan = []
    for name in names:
        info = reader.tensor_info(name)
        ne = tuple(int(d) for d in info.ne)
        src = GGMLType(int(info.ggml_type))
        if not allows_quantization(name, ne):
            plan.append(TensorPlan(name, ne, src, src, "kept: not quantized (1-D, norm or excluded name)"))
            continue
        new, rule = default, "default type"
        if default in _QUANTIZED:
            new, rule = _mix_type(st, default, name, ne, fname, _category(name))
            block = GGML_TYPE_TRAITS[new][0]
            if ne[0] % block:
                if new.name not in _FALLBACK:
                    raise QuantizationError(f"{name}: no fallback type for {new.name} with rows of {ne[0]}")
                fb = GGMLType[_FALLBACK[new.name]]
                if ne[0] % GGML_TYPE_TRAITS[fb][0]:
                    fb = GGMLType.F16
                rule = f"fallback {new.name} -> {fb.name}: rows of {ne[0]} are not whole {new.name} blocks"
                new = fb
        plan.append(TensorPlan(name, ne, src, new, rule))
    return plan


def format_plan(plan):
    """The plan as a text table, with totals."""
    rows = [("tensor", "shape", "from", "to", "MiB", "rule")]
    for p in plan:
        mib = f"{p.src_bytes / 2**20:.2f} -> {p.dst_bytes / 2**20:.2f}" if p.src_type != p.dst_type \
            else f"{p.src_bytes / 2**20:.2f}"
        rows.append((p.name, "x".join(str(d) for d in p.ne), p.src_type.name, p.dst_type.name, mib, p.rule))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
    src = sum(p.src_bytes for p in plan)
    dst = sum(p.dst_bytes for p in plan)
    n = sum(int(np.prod(p.ne, dtype=np.float64)) for p in plan) or 1
    lines.append(f"total: {src / 2**20:.2f} MiB ({src * 8 / n:.2f} bpw) -> {dst / 2**20:.2f} MiB ({dst * 8 / n:.2f} bpw)")
    return "\n".join(lines)


# ---- importance matrices ------------------------------------------------------------------------

def load_imatrix(path):
    """llama.cpp's importance matrix: name -> float32 weights (one per column and
    expert), from its GGUF format (``<name>.in_sum2`` / ``<name>.counts``) or the
    legacy ``.dat``, normalised as llama-quantize does."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return _load_imatrix_gguf(path)
    return _load_imatrix_dat(path)


def _load_imatrix_gguf(path):
    out = {}
    with GGUFReader(path) as r:
        names = set(r.tensor_names())
        for t in names:
            if not t.endswith(".in_sum2"):
                continue
            base = t[:-len(".in_sum2")]
            if base + ".counts" not in names:
                raise GGUFError(f"{path}: {t} has no {base}.counts")
            sums = np.asarray(r.load(t), np.float32).reshape(-1)
            counts = np.asarray(r.load(base + ".counts"), np.float32).reshape(-1)
            if counts.size == 0 or sums.size % counts.size:
                raise GGUFError(f"{path}: {base}: {sums.size} sums for {counts.size} counts")
            ne0 = sums.size // counts.size
            s = sums.reshape(counts.size, ne0)
            values = np.where(counts[:, None] > 0, s / np.where(counts > 0, counts, 1)[:, None], np.float32(1))
            out[base] = values.astype(np.float32).reshape(-1)
    return out


def _load_imatrix_dat(path):
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise QuantizationError(f"{path}: truncated imatrix at byte {pos}")
        v = struct.unpack_from(fmt, data, pos)
        pos += size
        return v

    (n_entries,) = take("<i")
    if n_entries < 0 or n_entries > len(data):
        raise QuantizationError(f"{path}: not an imatrix file ({n_entries} entries)")
    for _ in range(n_entries):
        (length,) = take("<i")
        if length <= 0 or pos + length > len(data):
            raise QuantizationError(f"{path}: bad entry name length {length} at byte {pos - 4}")
        name = data[pos:pos + length].decode("utf-8", "replace")
        pos += length
        ncall, nval = take("<ii")
        if nval < 1 or pos + 4 * nval > len(data):
            raise QuantizationError(f"{path}: entry {name!r}: bad value count {nval}")
        values = np.frombuffer(data, "<f4", nval, pos).astype(np.float32)
        pos += 4 * nval
        out[name] = values / np.float32(ncall) if ncall > 0 else values.copy()
    return out


# ---- writing ------------------------------------------------------------------------------------

class _Progress:
    def __init__(self, total, enabled):
        self.total, self.done, self.enabled, self.t0 = max(total, 1), 0, enabled, time.monotonic()

    def advance(self, n):
        self.done += n
        if self.enabled:
            frac = self.done / self.total
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r[{bar:<30}] {100 * frac:5.1f}%  {time.monotonic() - self.t0:6.1f} s")
            sys.stderr.flush()

    def finish(self):
        if self.enabled:
            sys.stderr.write("\n")


def _float_rows(reader, info, first_row, n_rows, threads):
    """Rows [first_row, first_row + n_rows) of a tensor (over all its higher
    dimensions, flattened) as float32, decoded from the file's map."""
    t = GGMLType(int(info.ggml_type))
    ne0 = int(info.ne[0])
    block, size = GGML_TYPE_TRAITS[t]
    row_bytes = ne0 // block * size
    raw = reader.raw_tensor(info.name)[first_row * row_bytes:(first_row + n_rows) * row_bytes]
    if t == GGMLType.F32:
        return raw.view("<f4").reshape(n_rows, ne0)
    return np.asarray(dequantize(raw, t, (n_rows, ne0), threads=threads))


def _quantized_chunks(reader, p, imatrix, threads, progress):
    info = reader.tensor_info(p.name)
    ne0 = p.ne[0]
    rows_per_matrix = p.ne[1] if len(p.ne) > 1 else 1
    n_matrices = 1
    for d in p.ne[2:]:
        n_matrices *= d
    step = max(1, min(rows_per_matrix, _SLICE_BYTES // (4 * ne0)))
    for m in range(n_matrices):
        w = None
        if imatrix is not None:
            w = imatrix[m * ne0:(m + 1) * ne0] if imatrix.size == ne0 * n_matrices else imatrix[:ne0]
        for r0 in range(0, rows_per_matrix, step):
            n = min(step, rows_per_matrix - r0)
            x = _float_rows(reader, info, m * rows_per_matrix + r0, n, threads)
            try:
                q = quantize(x, p.dst_type, threads=threads, imatrix=w)
            except QuantizationError as e:
                raise QuantizationError(f"{p.name} (rows {m * rows_per_matrix + r0}.. of the tensor): {e}") from None
            progress.advance(n * ne0)
            yield q.reshape(-1)


def _imatrix_for(p, imatrix):
    """The tensor's weights (one per column, per expert), as llama-quantize
    matches them: by name, of size ne[0] * ne[2]; a size mismatch is an error
    except for the token embeddings, which are then quantized without."""
    if imatrix is None or p.dst_type.name not in _IMATRIX_TYPES:
        return None
    w = imatrix.get(p.name)
    if w is None:
        return None
    expected = p.ne[0] * (p.ne[2] if len(p.ne) > 2 else 1)
    if w.size != expected:
        if p.name in ("token_embd.weight", "per_layer_token_embd.weight"):
            return None
        raise QuantizationError(f"imatrix size {w.size} is different from tensor size {expected} for {p.name}")
    return w


_LEGACY_WEIGHTED = ("Q4_0", "Q4_1", "Q5_0", "Q5_1")
_IMATRIX_TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS")


def quantize_model(src, dst, file_type, *, allow_requantize=False, imatrix=None, threads=None, progress=False,
                   force=True):
    """Quantize the GGUF model ``src`` into ``dst`` (see the module's doc).

    ``imatrix`` is a path (llama.cpp's GGUF or .dat imatrix) or a mapping of
    tensor names to weights. ``dst`` may not be ``src``; an existing ``dst`` is
    replaced only with ``force`` (the default here, as llama-quantize; the
    command asks for ``--force``). Returns the plan (a list of TensorPlan).
    """
    fname, ftype, _ = resolve_file_type(file_type)
    if isinstance(imatrix, (str, os.PathLike)):
        imatrix = load_imatrix(imatrix)
    if imatrix is not None:
        for k, v in imatrix.items():
            if not np.isfinite(v).all():
                raise QuantizationError(f"imatrix entry {k} contains non-finite values")
    from .commands._files import atomic_output

    with GGUFReader(src) as r:
        if r.byte_order != "little":
            raise QuantizationError(f"{src}: big-endian models are not supported; convert it first")
        plan = plan_quantization(r, fname, has_imatrix=imatrix is not None)
        if fname == "Q2_K_S" and imatrix is None:
            raise QuantizationError("Q2_K_S needs an importance matrix (--imatrix), as llama-quantize")
        for p in plan:
            if imatrix is not None and p.src_type != p.dst_type and p.dst_type.name in _LEGACY_WEIGHTED \
                    and p.name in imatrix:
                # ggml weights these too (row-wide statistics); not reproduced here
                raise QuantizationError(f"{p.name}: importance matrices for {p.dst_type.name} are not supported "
                                        f"(only for {', '.join(_IMATRIX_TYPES)})")
            if p.src_type != p.dst_type and p.src_type in _QUANTIZED and not allow_requantize:
                raise QuantizationError(f"requantizing from type {p.src_type.name} is disabled "
                                        f"({p.name}); use --allow-requantize")
        with atomic_output(dst, inputs=(src,), force=force) as tmp:
            _write(r, tmp, plan, ftype, imatrix, threads, progress)
    return plan


def _write(r, path, plan, ftype, imatrix, threads, show_progress):
    md = r.metadata
    w = GGUFWriter(path, byte_order="little", version=3)
    for key in md:
        if key in _SPLIT_KEYS or key in ("general.quantization_version", "general.file_type"):
            continue
        if key == "general.alignment":
            w.add(key, md[key], GGUFValueType.UINT32)
        else:
            w.add_raw(key, md.raw_value(key))
    w.add("general.quantization_version", QUANTIZATION_VERSION, GGUFValueType.UINT32)
    w.add("general.file_type", ftype, GGUFValueType.UINT32)
    for p in plan:
        ne = p.ne[:_n_dims(p.ne)]
        w.add_tensor_info(p.name, tuple(reversed(ne)), p.dst_type)
    w.write_header()
    total = sum(int(np.prod(p.ne, dtype=np.float64)) for p in plan if p.src_type != p.dst_type)
    progress = _Progress(total, show_progress)
    try:
        for p in plan:
            if p.src_type == p.dst_type:
                raw = r.raw_tensor(p.name)
                step = 64 << 20
                w.write_tensor_bytes(p.name, (raw[i:i + step] for i in range(0, max(len(raw), 1), step)))
                del raw
            else:
                w.write_tensor_bytes(p.name, _quantized_chunks(r, p, _imatrix_for(p, imatrix), threads, progress))
        w.close()
    finally:
        progress.finish()
        if not w._closed:
            w.__exit__(RuntimeError, None, None)
