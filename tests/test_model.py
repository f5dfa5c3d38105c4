"""The whole-model forward pass against a float64 numpy reference, per architecture.

The reference (zigllama.model_reference) reads the same file with the gguf package
and dequantizes with it; it recomputes every position without a cache. zigllama
runs in float32 with the weights left quantized, multiplied exactly
(``matmul="exact"``). Bound: the logits agree within 1e-4 of the logits' largest
magnitude. float32 carries 24 bits (6e-8 relative); a dot product of n terms errs
by about sqrt(n) * 6e-8 of the sum of |terms|, about 1.4e-6 over the widest product
here (512), and RMSNorm renormalises each block's error instead of letting it grow:
measured 0.4e-6 to 2.2e-6 on these models, so 1e-4 leaves a margin of ~50, while a
wrong RoPE pairing or base, mask, norm or scale moves logits by 1e-2 of the scale or
more. ``matmul="fast"`` rounds activations to 8-bit blocks as llama.cpp does (up to
1/254 of each block's largest value, per product): measured 1.6e-3 to 6.3e-2 here,
the most on the models whose sharp attention (q/k weights scaled by 2) magnifies
any perturbation; its bound is 1e-1, and the best token must mostly agree.
"""
import json

import numpy as np
import pytest

import zigllama as zl
from zigllama.model_reference import load_gguf_weights, reference_logits

from model_files import ARCHS, write_model

RTOL = 1e-4
RTOL_FAST = 1e-1
TOKENS = [1, 300, 17, 45, 290, 311, 262, 5, 270, 299, 301, 280]  # crosses the sliding window of 4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    cache = {}

    def get(name):
        if name not in cache:
            path = str(d / f"{name}.gguf")
            write_model(path, name)
            cache[name] = (path, reference_logits(path, TOKENS, load_gguf_weights(path)))
        return cache[name]
    return get


def close(actual, expected, rtol=RTOL):
    err = float(np.max(np.abs(actual - expected)))
    scale = float(np.max(np.abs(expected)))
    return err <= rtol * scale, f"max error {err:.3g} against scale {scale:.3g}"


@pytest.mark.parametrize("name", list(ARCHS))
def test_logits_match_reference_full_and_cached(files, name):
    path, ref = files(name)
    with zl.Model(path, threads=1, n_ctx=32, matmul="exact") as m:
        full = m.forward(TOKENS, all_logits=True)
        ok, msg = close(full, ref)
        assert ok, f"{name} full recompute: {msg}"
        # The same positions through the KV cache: a prompt of 5, then one at a time.
        m.reset()
        rows = [m.forward(TOKENS[:5])]
        for t in TOKENS[5:]:
            rows.append(m.forward([t]))
        ok, msg = close(np.stack(rows), ref[4:])
        assert ok, f"{name} with the KV cache: {msg}"
        assert np.max(np.abs(np.stack(rows) - full[4:])) <= RTOL * np.max(np.abs(full))


def test_two_threads_agree(files):
    path, ref = files("gemma3")
    with zl.Model(path, threads=2, n_ctx=32, matmul="exact") as m:
        ok, msg = close(m.forward(TOKENS, all_logits=True), ref)
        assert ok, msg


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_fast_matmul_within_its_bound(files, name):
    path, ref = files(name)
    with zl.Model(path, threads=1, n_ctx=32, matmul="fast") as m:
        fast = m.forward(TOKENS, all_logits=True)
    ok, msg = close(fast, ref, RTOL_FAST)
    assert ok, msg
    assert np.mean(fast.argmax(1) == ref.argmax(1)) >= 0.75


def test_rewind_recomputes_from_a_position(files):
    path, ref = files("llama")
    with zl.Model(path, threads=1, n_ctx=32, matmul="exact") as m:
        m.forward(TOKENS[:8])
        last = m.forward(TOKENS[3:6], start_pos=3)   # overwrite positions 3..5
        ok, msg = close(last, ref[5])
        assert ok, msg
        assert m.n_past == 6


def test_bad_input_leaves_the_model_usable(files):
    path, ref = files("qwen2")
    with zl.Model(path, threads=1, n_ctx=16, matmul="exact") as m:
        m.forward(TOKENS[:4])
        with pytest.raises(zl.InvalidToken, match="outside the vocabulary"):
            m.forward([5, m.n_vocab])
        with pytest.raises(zl.InvalidToken):
            m.forward([-1])
        with pytest.raises(zl.ContextOverflow, match="context holds 16"):
            m.forward(list(range(13)))
        with pytest.raises(zl.ContextOverflow):
            m.generate(TOKENS[:4], 20)
        assert m.n_past == 4
        ok, msg = close(m.forward(TOKENS[4:6]), ref[5])
        assert ok, msg


def test_missing_tensor_and_unsupported_architecture(tmp_path):
    path = write_model(str(tmp_path / "m.gguf"), "llama", drop=("blk.1.ffn_up.weight",))
    with pytest.raises(zl.MissingTensor, match="blk.1.ffn_up.weight"):
        zl.Model(path)
    path = write_model(str(tmp_path / "r.gguf"), "llama", architecture="rwkv6")
    with pytest.raises(zl.UnsupportedArchitecture, match="rwkv6"):
        zl.Model(path)


def test_generate_greedy_and_sampling(files):
    path, ref = files("gemma2")
    with zl.Model(path, threads=1, n_ctx=32, matmul="exact") as m:
        greedy = m.generate(TOKENS[:4], 5, stop_at_eos=False)
        # Greedy decoding is the argmax of full recomputes of the growing sequence.
        seq = list(TOKENS[:4])
        for _ in range(5):
            m.reset()
            seq.append(int(np.argmax(m.forward(seq))))
        assert greedy == seq[4:]
        m.reset()
        a = m.generate(TOKENS[:4], 6, zl.Sampler(temperature=1.0, seed=7), stop_at_eos=False)
        m.reset()
        b = m.generate(TOKENS[:4], 6, zl.Sampler(temperature=1.0, seed=7), stop_at_eos=False)
        assert a == b and len(a) == 6
        t = m.last_timings
        assert t["prompt_tokens"] == 4 and t["generated_tokens"] == 6


def test_sampler():
    logits = np.array([0.0, 3.0, 1.0, 2.9, -5.0], dtype=np.float32)
    assert zl.Sampler(temperature=0).sample(logits) == 1
    assert zl.Sampler(temperature=1.0, top_k=1, seed=0).sample(logits) == 1
    ids, p = zl.Sampler(temperature=1.0, top_k=3, top_p=1.0).probabilities(logits)
    assert list(ids) == [1, 3, 2] and abs(p.sum() - 1) < 1e-12
    ids, _ = zl.Sampler(temperature=1.0, top_k=0, top_p=0.5).probabilities(logits)
    assert list(ids) == [1, 3]
    draws = {zl.Sampler(temperature=5.0, top_k=0, top_p=1.0, seed=s).sample(logits) for s in range(50)}
    assert len(draws) >= 4
    with pytest.raises(ValueError):
        zl.Sampler(top_p=0.0)


def test_tokenizer_from_model_file(files):
    path, _ = files("llama")
    tok = zl.Tokenizer.from_file(path)
    ids = tok.encode("hello world")
    assert ids == [1, tok.token_to_id["\u2581hello"], tok.token_to_id["\u2581world"]]
    assert tok.decode(ids) == "hello world"


def test_run_command(files, capsys):
    from zigllama import cli

    path, _ = files("gemma3")
    assert cli.main(["run", path, "-p", "hello", "-n", "4", "--temp", "0", "--json", "-t", "1", "-c", "32"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt_ids"][0] == 2 or out["prompt_ids"][0] == 1
    assert len(out["generated_ids"]) <= 4 and out["peak_rss_mib"] > 0
    assert cli.main(["run", path, "--tokens", "1,300,17", "-n", "3", "--temp", "0.7", "--seed", "1",
                     "--ignore-eos", "-c", "32"]) == 0
    captured = capsys.readouterr()
    assert "tok/s" in captured.err and "peak RSS" in captured.err
    assert cli.main(["run", path, "--tokens", "1,99999", "-n", "2", "-c", "32"]) == 1
    assert "InvalidToken" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["gemma2", "qwen2"])
def test_long_prompt_runs_in_passes_and_the_python_path_agrees(files, name, monkeypatch):
    """A prompt longer than the layer stack's pass (here 5 tokens) runs in several
    passes, crossing the sliding window between them; the per-product Python path
    (taken when a matrix has no QuantizedTensor view) gives the same logits."""
    import zigllama.model as model_module

    path, ref = files(name)
    monkeypatch.setattr(model_module, "_UBATCH", 5)
    with zl.Model(path, threads=2, n_ctx=32, matmul="exact") as m:
        assert m._stack is not None and m._stack.max_seq == 5
        ok, msg = close(m.forward(TOKENS, all_logits=True), ref)
        assert ok, f"passes of 5: {msg}"
        m.reset()
        ok, msg = close(m.forward(TOKENS), ref[-1])
        assert ok, f"passes of 5, last position: {msg}"
        x = np.zeros((3, m.hparams.n_embd), np.float32)
        with pytest.raises(ValueError, match="n_out"):
            m._stack.run(x, 0, 1, None, 4)
        with pytest.raises(ValueError, match="at most 5"):
            m._stack.run(np.zeros((6, m.hparams.n_embd), np.float32), 0)
    monkeypatch.setattr(model_module.Model, "_layer_stack", lambda self, g, l: None)
    with zl.Model(path, threads=1, n_ctx=32, matmul="exact") as m:
        assert m._stack is None
        ok, msg = close(m.forward(TOKENS, all_logits=True), ref)
        assert ok, f"per-product path: {msg}"


def test_logits_into_a_callers_buffer(files):
    path, ref = files("llama3")
    with zl.Model(path, threads=1, n_ctx=32, matmul="exact") as m:
        buf = np.full(m.n_vocab, np.nan, dtype=np.float32)
        assert m.forward(TOKENS[:6], out=buf) is buf
        ok, msg = close(buf, ref[5])
        assert ok, msg
        for bad in (np.empty(m.n_vocab, np.float64), np.empty(m.n_vocab + 1, np.float32), [0.0] * m.n_vocab):
            with pytest.raises(zl.ModelError, match="out must be"):
                m.forward(TOKENS[6:7], out=bad)
        with pytest.raises(zl.ModelError, match="out must be"):
            m.forward(TOKENS[6:7], all_logits=True, out=buf)
        assert m.n_past == 6
