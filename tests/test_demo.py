"""``zigllama demo``: the seed's data flow on the built-in model and on models
written by llama.cpp's own ``gguf`` package in the shapes of real architectures,
each checked against the numpy reference."""
import subprocess
import sys
import time

import gguf
import numpy as np
import pytest

import zigllama as zl
from zigllama import llama_block, pipeline
from zigllama.cli import main

STAGES = ("map + parse", "quantized views", "Q/K/V projections", "attention scores",
          "softmax (parallel rows)", "gate/up projections", "down projection", "residual add")


def test_demo_default_runs_fast_and_matches_numpy():
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zigllama", "demo"], capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    for stage in STAGES:
        assert f"| {stage} |" in proc.stdout
    assert ": match" in proc.stdout
    assert "model: llama" in proc.stdout
    # The bound is 10 s of run time; generous here for a loaded CI machine.
    assert elapsed < 60


def _write_with_gguf_package(path, arch, *, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, head_dim=None,
                             biases=False, qk_norm=False, post_norms=False, softcap=None, seed=1):
    """A one-block model in the layout llama.cpp's converter writes for ``arch``."""
    rng = np.random.default_rng(seed)
    hd = head_dim or n_embd // n_head
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(512)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    if head_dim:
        w.add_key_length(hd)
        w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    if softcap:
        w.add_attn_logit_softcapping(softcap)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(64)])

    def add(name, shape, qtype=gguf.GGMLQuantizationType.F32, scale=None):
        if len(shape) == 1:
            data = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            data = (rng.standard_normal(shape) * (scale or 1 / np.sqrt(shape[1]))).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, data)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, data.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    Q8, F16 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F16
    add("token_embd.weight", (64, n_embd), Q8, scale=0.5)
    p = "blk.0."
    add(p + "attn_norm.weight", (n_embd,))
    add(p + "attn_q.weight", (n_head * hd, n_embd), Q8)
    add(p + "attn_k.weight", (n_head_kv * hd, n_embd), F16)
    add(p + "attn_v.weight", (n_head_kv * hd, n_embd), Q8)
    add(p + "attn_output.weight", (n_embd, n_head * hd), Q8)
    if biases:
        for n, size in (("attn_q", n_head * hd), ("attn_k", n_head_kv * hd), ("attn_v", n_head_kv * hd)):
            w.add_tensor(p + n + ".bias", (0.1 * rng.standard_normal(size)).astype(np.float32))
    if qk_norm:
        add(p + "attn_q_norm.weight", (hd,))
        add(p + "attn_k_norm.weight", (hd,))
    if post_norms:
        add(p + "post_attention_norm.weight", (n_embd,))
        add(p + "post_ffw_norm.weight", (n_embd,))
    add(p + "ffn_norm.weight", (n_embd,))
    add(p + "ffn_gate.weight", (n_ff, n_embd), Q8)
    add(p + "ffn_up.weight", (n_ff, n_embd), Q8)
    add(p + "ffn_down.weight", (n_embd, n_ff), Q8)
    add("output_norm.weight", (n_embd,))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


MODELS = {
    "llama": dict(),
    "mistral": dict(n_head=8, n_head_kv=2),
    "qwen2": dict(biases=True),
    "gemma": dict(n_head_kv=4, head_dim=64),
    "gemma2": dict(head_dim=64, post_norms=True, softcap=50.0),
    "gemma3": dict(head_dim=64, post_norms=True, qk_norm=True),
}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_demo_model_written_by_gguf_package(tmp_path, arch, capsys):
    path = _write_with_gguf_package(tmp_path / f"{arch}.gguf", arch, **MODELS[arch])
    assert main(["demo", "--model", path, "--tokens", "7"]) == 0
    out = capsys.readouterr().out
    assert f"model: {arch}" in out and ": match" in out


def test_block_config_reads_architecture_keys(tmp_path):
    path = _write_with_gguf_package(tmp_path / "g.gguf", "gemma2", **MODELS["gemma2"])
    with zl.GGUFModelLoader(path) as m:
        cfg = llama_block.BlockConfig.from_metadata(m.metadata)
    assert (cfg.n_embd, cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.n_ff) == (128, 4, 2, 64, 256)
    assert cfg.rope_neox and cfg.gelu_gate and cfg.scale_embeddings and cfg.attn_softcap == 50.0
    assert cfg.rms_eps == pytest.approx(1e-6)


@pytest.mark.parametrize("matmul", ["exact", "dequantized"])
def test_pipeline_equals_reference_on_each_backend(tmp_path, matmul):
    path = pipeline.write_demo_model(str(tmp_path / "d.gguf"), n_layer=1, n_vocab=64)
    tokens = np.arange(5)
    for backend in ("scipy", "generic", "naive"):
        out, stages, weights, x, cfg = pipeline.run_block(path, tokens, blas=backend, threads=1, matmul=matmul)
        ref = llama_block.reference_block(cfg, weights, x)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
        expected = backend if matmul == "dequantized" else "qgemm exact"
        assert {s.backend for s in stages if "projection" in s.name} == {expected}
        names = {s.name for s in stages}
        assert ("dequantize weights" in names) == (matmul == "dequantized")
        assert ("quantized views" in names) == (matmul != "dequantized")


def test_pipeline_fast_projections_stay_near_the_float_reference(tmp_path):
    path = pipeline.write_demo_model(str(tmp_path / "d.gguf"), n_layer=1, n_vocab=64)
    out, stages, weights, x, cfg = pipeline.run_block(path, np.arange(9), threads=2, matmul="fast")
    ref = llama_block.reference_block(cfg, weights, x)
    scale = float(np.abs(ref).max())
    err = float(np.abs(out - ref).max())
    from zigllama.commands.demo import FAST_RTOL, RTOL
    # 8-bit activations: further from the float reference than float rounding,
    # within the demo's bound for the mode.
    assert RTOL * scale < err <= FAST_RTOL * scale
    assert {s.backend for s in stages if "projection" in s.name} == {"qgemm fast"}


def test_pipeline_rejects_an_unknown_matmul_mode(tmp_path):
    path = pipeline.write_demo_model(str(tmp_path / "d.gguf"), n_layer=1, n_vocab=64)
    with pytest.raises(ValueError, match="matmul must be one of"):
        pipeline.run_block(path, np.arange(3), matmul="fastest")


@pytest.mark.parametrize("mode", ["fast", "dequantized"])
def test_demo_matmul_modes_match(mode, capsys):
    assert main(["demo", "--matmul", mode, "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert f"projections {mode}): match" in out


def test_median_stages_takes_each_stage_median_and_keeps_its_metadata():
    S = pipeline.Stage
    passes = [[S("gemm", 9.0, flops=90, backend="scipy", threads=2), S("add", 1.0)],
              [S("gemm", 1.0, flops=90, backend="scipy", threads=2), S("add", 4.0)],
              [S("gemm", 2.0, flops=90, backend="scipy", threads=2), S("add", 3.0)]]
    gemm, add = pipeline.median_stages(passes)
    assert (gemm.name, gemm.seconds, gemm.flops, gemm.backend, gemm.threads) == ("gemm", 2.0, 90, "scipy", 2)
    assert (add.name, add.seconds) == ("add", 3.0)
    assert pipeline.median_stages(passes[:2])[1].seconds == 2.5  # an even count: the mean of the middle two


def test_demo_single_pass(capsys):
    assert main(["demo", "--repeat", "1", "--tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "stage times: one pass" in out and ": match" in out


def test_demo_model_reads_back_with_gguf_package(tmp_path):
    path = pipeline.write_demo_model(str(tmp_path / "d.gguf"))
    r = gguf.GGUFReader(path)
    names = {t.name: t for t in r.tensors}
    assert names["blk.0.ffn_gate.weight"].tensor_type == gguf.GGMLQuantizationType.Q4_K
    assert names["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert names["blk.1.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q6_K
    ours = zl.GGUFReader(path)
    theirs = gguf.quants.dequantize(names["blk.0.ffn_gate.weight"].data, gguf.GGMLQuantizationType.Q4_K)
    assert np.array_equal(np.asarray(ours.load("blk.0.ffn_gate.weight")), theirs.reshape(768, 256))


@pytest.mark.parametrize("argv, expected", [
    (["demo", "--tokens", "0"], "InvalidShape"),
    (["demo", "--threads", "0"], "InvalidShape"),
    (["demo", "--repeat", "0"], "InvalidShape"),
    (["demo", "--block", "7"], "InvalidIndex"),
])
def test_demo_rejects_bad_arguments(argv, expected, capsys):
    assert main(argv) == 1
    assert expected in capsys.readouterr().err


def test_demo_rejects_non_llama_model(tmp_path, capsys):
    w = gguf.GGUFWriter(str(tmp_path / "b.gguf"), "bert")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    assert main(["demo", "--model", str(tmp_path / "b.gguf")]) == 1
    err = capsys.readouterr().err
    assert "GGUFError" in err and "bert" in err


def test_demo_missing_file(capsys):
    assert main(["demo", "--model", "/nonexistent/model.gguf"]) == 1
    assert "error" in capsys.readouterr().err
