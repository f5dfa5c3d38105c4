"""``zigllama quantize`` / zigllama.model_quantizer: llama-quantize's per-tensor
rules, its output layout and metadata, requantizing, importance matrices, and no
half-written output on failure."""
import os
import struct

import numpy as np
import pytest

import gguf
import zigllama
from zigllama import cli
from zigllama.errors import QuantizationError
from zigllama.gguf_writer import GGUFWriter
from zigllama.model_quantizer import (
    format_plan, llama_tensor_order, load_imatrix, plan_quantization, quantize_model, resolve_file_type)

N_EMBD, N_FF, N_VOCAB = 256, 512, 64


def tensors_of(arch, n_layer, n_ff, tied):
    """(name, numpy shape) of a small model of that architecture."""
    out = [("token_embd.weight", (N_VOCAB, N_EMBD)), ("output_norm.weight", (N_EMBD,))]
    if not tied:
        out.append(("output.weight", (N_VOCAB, N_EMBD)))
    for i in range(n_layer):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (N_EMBD,)), (b + "attn_q.weight", (N_EMBD, N_EMBD)),
                (b + "attn_k.weight", (64, N_EMBD)), (b + "attn_v.weight", (64, N_EMBD)),
                (b + "attn_output.weight", (N_EMBD, N_EMBD)), (b + "ffn_norm.weight", (N_EMBD,)),
                (b + "ffn_gate.weight", (n_ff, N_EMBD)), (b + "ffn_up.weight", (n_ff, N_EMBD)),
                (b + "ffn_down.weight", (N_EMBD, n_ff))]
        if arch == "gemma3":
            out += [(b + "attn_q_norm.weight", (64,)), (b + "attn_k_norm.weight", (64,)),
                    (b + "post_attention_norm.weight", (N_EMBD,)), (b + "post_ffw_norm.weight", (N_EMBD,))]
    return out


def write_model(path, arch="llama", n_layer=4, n_ff=N_FF, tied=False, dtype="F32", seed=0, outlier=None):
    rng = np.random.default_rng(seed)
    w = GGUFWriter(path)
    w.add("general.architecture", arch)
    w.add("general.name", "tiny")
    w.add("general.file_type", 0, gguf.GGUFValueType.UINT32)
    w.add(f"{arch}.block_count", n_layer, gguf.GGUFValueType.UINT32)
    w.add(f"{arch}.embedding_length", N_EMBD, gguf.GGUFValueType.UINT32)
    w.add(f"{arch}.attention.head_count", 4, gguf.GGUFValueType.UINT32)
    w.add(f"{arch}.attention.head_count_kv", 1, gguf.GGUFValueType.UINT32)
    data = {}
    for name, shape in tensors_of(arch, n_layer, n_ff, tied):
        x = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        if outlier and name == outlier:
            x.flat[5] = 1e9
        data[name] = x
        if dtype == "F32" or len(shape) == 1:
            w.add_tensor(name, x)
        elif dtype == "F16":
            w.add_tensor(name, x, ggml_type=gguf.GGMLQuantizationType.F16)
        else:
            w.add_tensor(name, zigllama.quantize(x, dtype), ggml_type=gguf.GGMLQuantizationType[dtype], shape=shape)
    w.close()
    return data


def plan_of(path, ftype, **kw):
    with zigllama.GGUFReader(path) as r:
        return {p.name: (p.dst_type.name, p.rule) for p in plan_quantization(r, ftype, **kw)}


def test_order_is_llama_loaders():
    names = ["blk.10.a", "output.weight", "blk.2.b", "blk.2.a", "token_embd.weight", "blk.0.z"]
    assert llama_tensor_order(names) == ["output.weight", "token_embd.weight", "blk.0.z", "blk.2.a", "blk.2.b",
                                         "blk.10.a"]


def test_q4_k_m_rules_llama(tmp_path):
    p = tmp_path / "m.gguf"
    write_model(p)
    plan = plan_of(p, "Q4_K_M")
    # use_more_bits(i, 4): layers 2 and 3 (i >= 7n/8 or (i - n/8) % 3 == 2)
    for i in range(4):
        more = i in (2, 3)
        assert plan[f"blk.{i}.attn_v.weight"][0] == ("Q6_K" if more else "Q4_K")
        assert plan[f"blk.{i}.ffn_down.weight"][0] == ("Q6_K" if more else "Q4_K")
        assert plan[f"blk.{i}.attn_q.weight"][0] == "Q4_K"
        assert plan[f"blk.{i}.attn_norm.weight"] == ("F32", "kept: not quantized (1-D, norm or excluded name)")
    assert plan["output.weight"][0] == "Q6_K"
    assert plan["token_embd.weight"][0] == "Q4_K"  # not tied: output.weight exists


@pytest.mark.parametrize("ftype, expect", [
    ("Q2_K", {"attn_v": "Q4_K", "ffn_down": "Q3_K", "attn_output": "Q3_K", "attn_q": "Q2_K"}),  # n_gqa 4
    ("Q3_K_M", {"attn_v": "Q5_K", "ffn_down": "Q4_K", "attn_output": "Q4_K", "attn_q": "Q3_K"}),
    ("Q3_K_L", {"attn_v": "Q5_K", "ffn_down": "Q5_K", "attn_output": "Q5_K"}),
    ("Q4_K_S", {"attn_v": "Q5_K", "ffn_down": "Q4_K"}),
    ("Q5_K_S", {"attn_v": "Q5_K", "ffn_down": "Q5_K"}),
    ("IQ4_XS", {"attn_v": "Q5_K", "ffn_down": "IQ4_XS", "attn_q": "IQ4_XS"}),
    ("Q8_0", {"attn_v": "Q8_0", "ffn_down": "Q8_0"}),
    ("TQ1_0", {"attn_q": "TQ1_0"}),
])
def test_mix_rules_for_layer_one(tmp_path, ftype, expect):
    p = tmp_path / "m.gguf"
    write_model(p, n_layer=4)
    plan = plan_of(p, ftype)
    for part, t in expect.items():
        assert plan[f"blk.1.{part}.weight"][0] == t, (ftype, part, plan[f"blk.1.{part}.weight"])
    assert plan["output.weight"][0] == ("Q8_0" if ftype == "Q8_0" else "Q6_K")
    if ftype == "TQ1_0":
        assert plan["token_embd.weight"][0] == "Q4_K"


def test_gemma3_tied_embeddings_and_fallback(tmp_path):
    p = tmp_path / "g.gguf"
    write_model(p, arch="gemma3", n_layer=2, n_ff=288, tied=True)
    plan = plan_of(p, "Q4_K_M")
    assert plan["token_embd.weight"][0] == "Q6_K"  # tied: quantized as the output
    assert plan["blk.0.attn_q_norm.weight"][0] == "F32"
    # ffn_down rows of 288 are not whole Q4_K/Q6_K blocks: llama-quantize's fallback
    t, rule = plan["blk.0.ffn_down.weight"]
    assert t == "Q5_0" and rule.startswith("fallback Q4_K -> Q5_0")
    t, rule = plan["blk.1.ffn_down.weight"]  # use_more_bits(1, 2): Q6_K first
    assert t == "Q8_0" and rule.startswith("fallback Q6_K -> Q8_0")
    assert plan["blk.0.ffn_up.weight"][0] == "Q4_K"  # rows of 256


def test_f16_file_type_converts_every_quantizable_tensor(tmp_path):
    p = tmp_path / "m.gguf"
    write_model(p, n_layer=1)
    plan = plan_of(p, "F16")
    assert {plan[n][0] for n in plan if not n.endswith("norm.weight")} == {"F16"}
    assert plan["output_norm.weight"][0] == "F32"


@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q6_K", "IQ4_NL", "BF16", "MXFP4_MOE"])
def test_quantize_writes_what_llama_quantize_writes(tmp_path, ftype):
    src, dst = tmp_path / "m.gguf", tmp_path / "q.gguf"
    data = write_model(src, n_layer=2)
    plan = quantize_model(str(src), str(dst), ftype, threads=2)
    name, file_type, _ = resolve_file_type(ftype)
    r = gguf.GGUFReader(dst)
    keys = [f.name for f in r.fields.values() if not f.name.startswith("GGUF.")]
    assert keys[-2:] == ["general.quantization_version", "general.file_type"]
    assert r.fields["general.file_type"].parts[-1][0] == file_type
    assert r.fields["general.quantization_version"].parts[-1][0] == 2
    assert keys[:2] == ["general.architecture", "general.name"]
    assert [t.name for t in r.tensors] == llama_tensor_order(data)
    by_name = {p.name: p for p in plan}
    for t in r.tensors:
        p = by_name[t.name]
        assert t.tensor_type.name == p.dst_type.name
        x = data[t.name]
        if p.dst_type.name == "F32":
            np.testing.assert_array_equal(np.asarray(t.data).view(np.float32).reshape(x.shape), x)
        else:
            want = zigllama.quantize(x, p.dst_type.name)
            np.testing.assert_array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), want.reshape(-1))
    assert sorted(os.listdir(tmp_path)) == ["m.gguf", "q.gguf"]


def test_requantize_needs_the_flag(tmp_path):
    src, dst = tmp_path / "m.gguf", tmp_path / "q.gguf"
    write_model(src, n_layer=1, dtype="Q8_0")
    with pytest.raises(QuantizationError, match="requantizing from type Q8_0 is disabled"):
        quantize_model(str(src), str(dst), "Q4_K_M")
    assert not dst.exists()
    quantize_model(str(src), str(dst), "Q4_K_M", allow_requantize=True)
    assert gguf.GGUFReader(dst).tensors[0].tensor_type.name in ("Q4_K", "Q6_K")


def test_f16_input_is_converted_not_refused(tmp_path):
    src, dst = tmp_path / "m.gguf", tmp_path / "q.gguf"
    data = write_model(src, n_layer=1, dtype="F16")
    quantize_model(str(src), str(dst), "Q8_0")
    r = gguf.GGUFReader(dst)
    t = next(t for t in r.tensors if t.name == "blk.0.attn_q.weight")
    x16 = data["blk.0.attn_q.weight"].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), zigllama.quantize(x16, "Q8_0").reshape(-1))


def test_failure_leaves_no_output(tmp_path):
    src, dst = tmp_path / "m.gguf", tmp_path / "q.gguf"
    write_model(src, n_layer=1, outlier="blk.0.ffn_up.weight")
    with pytest.raises(QuantizationError, match=r"blk.0.ffn_up.weight .*Q4_K cannot hold row 0, block 0"):
        quantize_model(str(src), str(dst), "Q4_K_M")
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]


def test_refuses_to_overwrite_its_input(tmp_path):
    src = tmp_path / "m.gguf"
    write_model(src, n_layer=1)
    with pytest.raises(zigllama.errors.ZigLlamaError, match="is an input of this command"):
        quantize_model(str(src), str(src), "Q8_0")


def write_imatrix_dat(path, entries, ncall):
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(entries)))
        for name, v in entries.items():
            raw = name.encode()
            f.write(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, v.size))
            f.write(np.asarray(v, "<f4").tobytes())
        f.write(struct.pack("<i", 10) + struct.pack("<i", 4) + b"wiki")


def write_imatrix_gguf(path, entries, count):
    w = GGUFWriter(path)
    w.add("general.type", "imatrix")
    for name, v in entries.items():
        w.add_tensor(name + ".in_sum2", np.asarray(v, np.float32).reshape(1, -1))
        w.add_tensor(name + ".counts", np.array([[count]], np.float32))
    w.close()


@pytest.mark.parametrize("fmt", ["dat", "gguf"])
def test_imatrix_files(tmp_path, fmt):
    src, dst = tmp_path / "m.gguf", tmp_path / "q.gguf"
    data = write_model(src, n_layer=1)
    sums = {n: np.random.default_rng(i).random(x.shape[-1]).astype(np.float32) * 40
            for i, (n, x) in enumerate(data.items()) if x.ndim == 2}
    path = tmp_path / f"imatrix.{fmt}"
    (write_imatrix_dat if fmt == "dat" else write_imatrix_gguf)(path, sums, 8)
    loaded = load_imatrix(path)
    np.testing.assert_array_equal(loaded["blk.0.attn_q.weight"], sums["blk.0.attn_q.weight"] / np.float32(8))
    quantize_model(str(src), str(dst), "Q4_K_M", imatrix=str(path))
    r = gguf.GGUFReader(dst)
    t = next(t for t in r.tensors if t.name == "blk.0.attn_q.weight")
    want = zigllama.quantize(data[t.name], "Q4_K", imatrix=loaded[t.name])
    np.testing.assert_array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), want.reshape(-1))


def test_cli_dry_run_and_write(tmp_path, capsys):
    src, dst = tmp_path / "m.gguf", tmp_path / "q.gguf"
    write_model(src, n_layer=2)
    assert cli.main(["quantize", "--dry-run", str(src), "Q5_K_M"]) == 0
    out = capsys.readouterr().out
    assert "blk.1.attn_v.weight" in out and "Q6_K" in out and "use_more_bits" in out and "bpw" in out
    assert not dst.exists()
    assert cli.main(["quantize", "--quiet", "--threads", "1", str(src), str(dst), "q8_0"]) == 0
    assert dst.exists()
    assert cli.main(["quantize", "--quiet", str(src), str(dst), "q8_0"]) == 1  # exists: --force
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["quantize", "--quiet", "--force", str(src), str(dst), "Q4_0"]) == 0
    assert cli.main(["quantize", str(src), str(tmp_path / "x.gguf"), "Q9_Z"]) == 1
    assert "unknown file type" in capsys.readouterr().err


def test_format_plan_totals(tmp_path):
    src = tmp_path / "m.gguf"
    write_model(src, n_layer=1)
    with zigllama.GGUFReader(src) as r:
        text = format_plan(plan_quantization(r, "Q8_0"))
    assert text.splitlines()[-1].startswith("total: ") and "8.50 bpw" not in text.splitlines()[0]


def test_imatrix_for_legacy_types_is_refused(tmp_path):
    src, dst = tmp_path / "m.gguf", tmp_path / "q.gguf"
    data = write_model(src, n_layer=1)
    w = {n: np.ones(x.shape[-1], np.float32) for n, x in data.items() if x.ndim == 2}
    with pytest.raises(QuantizationError, match="importance matrices for Q4_0 are not supported"):
        quantize_model(str(src), str(dst), "Q4_0", imatrix=w)
    assert not dst.exists()


@pytest.mark.parametrize("content, message", [
    (b"\x02\x00\x00\x00", "truncated imatrix"),
    (b"\xff\xff\xff\x7f", "not an imatrix file"),
    (struct.pack("<i", 1) + struct.pack("<i", 0), "bad entry name length 0"),
    (struct.pack("<i", 1) + struct.pack("<i", 3) + b"abc" + struct.pack("<ii", 1, 1000), "bad value count 1000"),
])
def test_bad_imatrix_files(tmp_path, content, message):
    path = tmp_path / "bad.dat"
    path.write_bytes(content)
    with pytest.raises(QuantizationError, match=message):
        load_imatrix(path)


def test_imatrix_size_mismatch_is_an_error(tmp_path):
    src, dst = tmp_path / "m.gguf", tmp_path / "q.gguf"
    write_model(src, n_layer=1)
    with pytest.raises(QuantizationError, match="imatrix size 3 is different from tensor size 256 for blk.0.attn_q"):
        quantize_model(str(src), str(dst), "Q4_K_M", imatrix={"blk.0.attn_q.weight": np.ones(3, np.float32)})
    assert not dst.exists()
