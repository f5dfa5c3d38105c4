"""The GGUF toolbox of the command line, against the gguf package as the oracle:
set-metadata, new-metadata, convert-endian, split / merge, inspect's summary, and
the command line's hygiene (escaped output, closed pipes, one-line errors)."""
import argparse
import builtins
import json
import os
import shutil
import subprocess
import sys

import gguf
import numpy as np
import pytest

import zigllama as zl
from zigllama import GGMLType, GGUFReader, GGUFValueType as VT, GGUFWriter
from zigllama.cli import COMMANDS, main as cli_main
from zigllama.commands._terminal import escape
from zigllama.ggml_types import GGML_TYPE_TRAITS
from zigllama.gguf_endian import BLOCK_SWAPS, convert_endian
from zigllama.gguf_split import SPLIT_KEYS, merge_model, parse_size, plan_split, shard_path, split_model
from zigllama.gguf_writer import _TENSOR_NUMPY
from zigllama.gguf_summary import FILE_TYPE_NAMES, file_type_name

VOCAB = ["<unk>", "<s>", "</s>", "hello", "world", "<|eot|>", "é", "中"]
# the types gguf-convert-endian converts (with its byte-swap of block scales)
GGUF_CONVERTS = ("F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K", "Q6_K", "MXFP4")


def _tensor_bytes(rng, t, rows):
    block, size = GGML_TYPE_TRAITS[t]
    return rng.integers(0, 256, (rows, 2 * size), dtype=np.uint8), (rows, 2 * block)


def write_model(path, types=("F32", "F16", "Q8_0", "Q4_K", "Q6_K"), n_layers=3, seed=0, alignment=None,
                nested=True):
    """A llama-shaped file written by the gguf package: keys of every type, and for
    each layer one tensor of each of `types` (random bytes)."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment:
        w.data_alignment = alignment
        w.add_uint32("general.alignment", alignment)
    w.add_name("tiny")
    w.add_file_type(15)
    w.add_context_length(128)
    w.add_block_count(n_layers)
    w.add_uint8("test.u8", 7)
    w.add_int16("test.i16", -300)
    w.add_uint32("test.u32", 123456)
    w.add_float32("test.f32", 1.5)
    w.add_float64("test.f64", -2.25)
    w.add_bool("test.bool", True)
    w.add_uint64("test.u64", 2**40 + 3)
    w.add_string("test.string", "abc")
    w.add_array("test.ints", [1, 2, 3])
    w.add_array("test.floats", [0.5, 1.5])
    if nested:  # (gguf-new-metadata flattens arrays of arrays)
        w.add_array("test.nested", [[1, 2], [3]])
    w.add_token_list(VOCAB)
    w.add_eos_token_id(2)
    for layer in range(n_layers):
        for t in types:
            gt = GGMLType[t]
            raw, shape = _tensor_bytes(rng, gt, 2)
            name = f"blk.{layer}.{t.lower()}.weight"
            if gt == GGMLType.F32:
                w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
            elif gt == GGMLType.F16:
                w.add_tensor(name, rng.standard_normal(shape).astype(np.float16))
            else:
                w.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType[t])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gguf_fields(path):
    """{key: contents} as the gguf package reads them (header fields left out)."""
    r = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


def gguf_tensors(path):
    r = gguf.GGUFReader(str(path))
    return {t.name: (t.tensor_type.name, bytes(np.asarray(t.data).tobytes())) for t in r.tensors}


# ---- the terminal ------------------------------------------------------------------


def test_escape_leaves_no_control_character_for_any_code_point():
    # every code point: what escape() returns is printable and shows it unambiguously
    bad = [c for c in range(0x110000) if not escape(chr(c)).isprintable()]
    assert bad == []
    for c in list(range(0x20)) + [0x7F] + list(range(0x80, 0xA0)) + [0x202E, 0x2028, 0x200B]:
        assert escape(chr(c)) != chr(c)
    assert escape("blk.0.attn_q.weight") == "blk.0.attn_q.weight"
    assert escape("a\\x1b") == "a\\\\x1b" and escape("a\x1bb") == "a\\x1bb"  # never ambiguous
    assert escape("é中▁") == "é中▁"


HOSTILE = ["evil\x1b]0;pwned\x07", "clear\x1b[2J\x1b[H", "erase\x1b[1A\x1b[K", "bidi\u202egnp.exe", "c1\x9b31m"]


@pytest.fixture
def hostile_file(tmp_path):
    path = tmp_path / "hostile.gguf"
    with GGUFWriter(path) as w:
        w.add("general.architecture", "llama\x1b[31m")
        for i, s in enumerate(HOSTILE):
            w.add(s, s)
            w.add_tensor(s[:60], np.zeros(4, np.float32) + i)
    return path


@pytest.mark.parametrize("argv", [["inspect"], ["inspect", "--filter", "*"], ["validate"]])
def test_human_output_escapes_every_untrusted_string(hostile_file, argv, capsys):
    assert cli_main(argv + [str(hostile_file)]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in "\x1b\x07\x9b\u202e")
    if argv[0] == "inspect":
        for s in HOSTILE:
            assert escape(s) in out  # shown, escaped, not dropped


def test_writer_refuses_a_scalar_inside_an_array_of_arrays(tmp_path):
    with pytest.raises(zl.GGUFInvalidValue, match="must be an array"):
        with GGUFWriter(tmp_path / "x.gguf") as w:
            w.add("a.b", [zl.GGUFValue(0, VT.UINT32)], VT.ARRAY, VT.ARRAY)


def test_json_output_is_escaped_and_exact(hostile_file, capsys):
    assert cli_main(["inspect", "--json", str(hostile_file)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    d = json.loads(out)
    assert set(HOSTILE) <= set(d["metadata"]) and {t["name"] for t in d["tensors"]} == {s[:60] for s in HOSTILE}


def test_other_commands_escape_paths_and_keys(tmp_path, capsys):
    src = write_model(tmp_path / "m\x1b[2J.gguf")
    assert cli_main(["set-metadata", str(src), "evil\x1b]0;x\x07", "v"]) == 0
    assert cli_main(["new-metadata", str(src), str(tmp_path / "o\x1b.gguf"), "--set", "k\x1b=1"]) == 0
    assert cli_main(["split", str(src), str(tmp_path / "s\x1b"), "--max-tensors", "5"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out


# ---- command line hygiene ---------------------------------------------------------


def run_cli(*argv, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "zigllama", *map(str, argv)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, **kw)


def test_closed_pipe_ends_quietly_with_141(tmp_path):
    path = tmp_path / "many.gguf"
    with GGUFWriter(path) as w:  # a tensor table far longer than a pipe's buffer
        w.add("general.architecture", "llama")
        for i in range(3000):
            w.add_tensor(f"blk.{i}.a_rather_long_tensor_name.weight", np.zeros(32, np.float32))
    for argv in (["inspect", path], ["inspect", "--json", path]):
        p = subprocess.Popen([sys.executable, "-m", "zigllama", *map(str, argv)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        first = p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read()
        p.wait(timeout=60)
        p.stderr.close()
        assert first and p.returncode == 141 and err == b"", (p.returncode, err)


def test_every_command_has_help_and_errors_in_one_line(tmp_path):
    missing = tmp_path / "missing.gguf"
    argvs = {
        "inspect": [missing], "validate": [missing], "load": [missing],
        "set-metadata": [missing, "k", "1"], "new-metadata": [missing, tmp_path / "o.gguf"],
        "convert-endian": [missing, tmp_path / "o.gguf", "big"], "split": [missing],
        "merge": [tmp_path / "m-00001-of-00002.gguf", tmp_path / "o.gguf"],
    }
    for name, argv in argvs.items():
        assert name in COMMANDS
        proc = run_cli(name, *argv)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, (name, proc.stderr)
        assert "Traceback" not in proc.stderr and "missing.gguf" in proc.stderr or "m-0000" in proc.stderr
    proc = run_cli("inspect", missing, env={"ZIGLLAMA_TRACEBACK": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr


@pytest.mark.parametrize("argv,message", [
    (["set-metadata", "{m}", "test.u32", "not-a-number"], "GGUFInvalidValue"),
    (["set-metadata", "{m}", "test.u8", "300"], "does not fit"),
    (["set-metadata", "{m}", "k", "1", "--type", "quaternion"], "unknown value type"),
    (["new-metadata", "{m}", "{o}", "--set", "novalue"], "KEY=VALUE"),
    (["new-metadata", "{m}", "{o}", "--special-token", "eos", "<nope>"], "no token"),
    (["new-metadata", "{m}", "{o}", "--special-token-by-id", "eos", "99"], "not within"),
    (["new-metadata", "{m}", "{m}"], "input of this command"),
    (["new-metadata", "{m}", "{o}", "--remove", "no.such.key"], "does not hold"),
    (["convert-endian", "{m}", "{o}", "little"], "already little-endian"),
    (["convert-endian", "{m}", "{m}", "big"], "input of this command"),
    (["split", "{m}", "--max-size", "lots"], "not a size"),
    (["split", "{m}", "--max-tensors", "0"], "at least one tensor"),
    (["merge", "{m}", "{o}"], "not a split model"),
])
def test_bad_use_is_one_clear_line(tmp_path, argv, message, capsys):
    m = write_model(tmp_path / "m.gguf")
    before = m.read_bytes()
    argv = [a.format(m=m, o=tmp_path / "o.gguf") for a in argv]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert m.read_bytes() == before and not (tmp_path / "o.gguf").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]  # no temporary file left behind


def test_outputs_are_never_overwritten_without_force(tmp_path, capsys):
    m = write_model(tmp_path / "m.gguf")
    out = tmp_path / "out.gguf"
    out.write_bytes(b"precious")
    for argv in (["new-metadata", m, out], ["convert-endian", m, out, "big"]):
        assert cli_main(list(map(str, argv))) == 1
        assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"precious"
        assert cli_main(list(map(str, argv + ["--force"]))) == 0
        GGUFReader(out).close()
        out.write_bytes(b"precious")


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    from zigllama import gguf_endian

    m = write_model(tmp_path / "m.gguf")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(gguf_endian, "swap_block_bytes", boom)
    assert cli_main(["convert-endian", str(m), str(tmp_path / "o.gguf"), "big"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


# ---- convert-endian ------------------------------------------------------------------


def test_block_swap_table_covers_every_type_with_its_block_size():
    assert set(BLOCK_SWAPS) == set(GGMLType)
    for t, fields in BLOCK_SWAPS.items():
        for offset, width, count in fields:
            assert offset + width * count <= GGML_TYPE_TRAITS[t][1], t


def _gguf_convert_endian(path, monkeypatch, order="big"):
    from gguf.scripts import gguf_convert_endian

    monkeypatch.setattr(builtins, "input", lambda prompt="": "YES")
    args = argparse.Namespace(order=order, dry_run=False)
    gguf_convert_endian.convert_byteorder(gguf.GGUFReader(str(path), "r+"), args)


def test_convert_endian_is_gguf_convert_endian_byte_for_byte(tmp_path, monkeypatch):
    m = write_model(tmp_path / "m.gguf", types=GGUF_CONVERTS)
    ours = tmp_path / "big.gguf"
    assert convert_endian(m, ours, "big")
    theirs = tmp_path / "theirs.gguf"
    shutil.copy(m, theirs)
    _gguf_convert_endian(theirs, monkeypatch)
    assert ours.read_bytes() == theirs.read_bytes()
    # and back again with both tools
    back = tmp_path / "back.gguf"
    assert cli_main(["convert-endian", str(ours), str(back), "little"]) == 0
    _gguf_convert_endian(theirs, monkeypatch, "little")
    assert back.read_bytes() == theirs.read_bytes() == m.read_bytes()


@pytest.mark.parametrize("alignment", [None, 64])
def test_convert_endian_twice_gives_the_original_for_every_type(tmp_path, alignment):
    types = [t.name for t in GGMLType if t.name not in ("F32", "F16")]
    src = tmp_path / "all.gguf"
    rng = np.random.default_rng(1)
    with GGUFWriter(src, alignment=alignment or 32) as w:
        w.add("general.architecture", "llama")
        w.add("a.nested", [[1, 2], ["x", "yz"], [0.5]], VT.ARRAY)
        w.add("a.strings", ["", "é", "long" * 50])
        w.add("a.f64s", np.array([1.5, -np.inf, np.nan]))
        w.add("a.bools", [True, False, True])
        w.add("a.u16", 65535, VT.UINT16)
        for t in types:
            block, size = GGML_TYPE_TRAITS[GGMLType[t]]
            raw = rng.integers(0, 256, (3, 2 * size), dtype=np.uint8)
            if GGMLType[t].is_quantized:
                w.add_tensor(t, raw, GGMLType[t], (3, 2 * block))
            else:  # plain types: the same random bytes, as their elements
                w.add_tensor(t, raw.view(_TENSOR_NUMPY[GGMLType[t]]), GGMLType[t])
        w.add_tensor("f32", rng.standard_normal((3, 5)).astype(np.float32))
        w.add_tensor("f16", rng.standard_normal(7).astype(np.float16))
    big, back = tmp_path / "big.gguf", tmp_path / "back.gguf"
    assert convert_endian(src, big, "big") and convert_endian(big, back, "little")
    assert back.read_bytes() == src.read_bytes()
    assert not convert_endian(src, tmp_path / "x.gguf", "little") and not (tmp_path / "x.gguf").exists()
    with GGUFReader(src) as a, GGUFReader(big) as b:
        assert b.byte_order == "big" and list(a.metadata) == list(b.metadata)
        for k in a.metadata:
            va, vb = a.metadata[k], b.metadata[k]
            va, vb = (v.tolist() if hasattr(v, "tolist") else v for v in (va, vb))
            assert json.dumps(va) == json.dumps(vb), k
        for name in ("f32", "f16"):
            assert np.array_equal(np.asarray(a.tensor(name)), np.asarray(b.tensor(name)))
        for t in types:  # each multi-byte field of each block reversed, nothing else moved
            ra, rb = np.asarray(a.raw_tensor(t)).reshape(-1), np.asarray(b.raw_tensor(t)).reshape(-1)
            size = GGML_TYPE_TRAITS[GGMLType[t]][1]
            expect = ra.reshape(-1, size).copy()
            for off, width, count in BLOCK_SWAPS[GGMLType[t]]:
                for j in range(count):
                    s = slice(off + j * width, off + (j + 1) * width)
                    expect[:, s] = expect[:, s][:, ::-1]
            assert np.array_equal(rb, expect.reshape(-1)), t
    fields = gguf_fields(big)  # the gguf package reads the big-endian file
    assert fields["a.strings"] == ["", "é", "long" * 50] and fields["a.u16"] == 65535


# ---- split and merge ---------------------------------------------------------------


@pytest.mark.parametrize("max_tensors", [1, 4, 7, 15, 100])
def test_split_by_tensor_count_then_merge_gives_the_original(tmp_path, max_tensors):
    m = write_model(tmp_path / "m.gguf", n_layers=3)  # 15 tensors
    plan = split_model(m, tmp_path / "s", max_tensors=max_tensors)
    n = -(-15 // max_tensors)
    assert [p for p, _ in plan] == [shard_path(tmp_path / "s", i, n) for i in range(n)]
    original = gguf_fields(m)
    names = list(gguf_tensors(m))
    seen = []
    for i, (path, group) in enumerate(plan):
        fields = gguf_fields(path)
        assert (fields["split.no"], fields["split.count"], fields["split.tensors.count"]) == (i, n, 15)
        r = gguf.GGUFReader(path)
        assert [r.fields[k].types[0].name for k in SPLIT_KEYS] == ["UINT16", "INT32", "UINT16"]
        assert list(fields)[-3:] == list(SPLIT_KEYS)
        if i == 0:
            assert {k: v for k, v in fields.items() if k not in SPLIT_KEYS} == original
        else:
            assert set(fields) == set(SPLIT_KEYS)
        seen += list(gguf_tensors(path))
        assert len(group) == min(max_tensors, 15 - i * max_tensors)
    assert seen == names
    with zl.GGUFModelLoader(plan[-1][0]) as model:
        assert model.tensor_names() == names
    out = tmp_path / "merged.gguf"
    assert cli_main(["merge", plan[0][0], str(out)]) == 0
    assert out.read_bytes() == m.read_bytes()


@pytest.mark.parametrize("alignment,byte_order", [(None, "little"), (64, "little"), (None, "big")])
def test_split_by_size_follows_llama_gguf_split(tmp_path, alignment, byte_order):
    m = write_model(tmp_path / "m.gguf", types=("F32", "Q8_0", "Q6_K"), n_layers=4, alignment=alignment)
    if byte_order == "big":
        assert convert_endian(m, tmp_path / "big.gguf", "big")
        m = tmp_path / "big.gguf"
    with GGUFReader(m) as r:
        sizes = [-(-t.nbytes // 32) * 32 for t in r.tensors]
    limit = 3 * max(sizes)
    plan = split_model(m, tmp_path / "s", max_size=limit)
    for _, group in plan:
        assert sum(-(-t.nbytes // 32) * 32 for t in group) <= limit
    # greedy: the next shard's first tensor would not have fitted the one before
    for (_, a), (_, b) in zip(plan, plan[1:]):
        assert sum(-(-t.nbytes // 32) * 32 for t in a) + -(-b[0].nbytes // 32) * 32 > limit
    out = tmp_path / "merged.gguf"
    merge_model(plan[1][0], out)  # any shard names them all
    assert out.read_bytes() == m.read_bytes()


def test_split_is_compatible_with_the_gguf_package_shards(tmp_path):
    # the gguf package's writer splits by tensor count as llama-gguf-split does
    rng = np.random.default_rng(3)
    tensors = {f"blk.{i}.w": rng.standard_normal((2, 32)).astype(np.float32) for i in range(7)}

    def write(path, **kw):
        w = gguf.GGUFWriter(str(path), "llama", **kw)
        w.add_block_count(7)
        for n, a in tensors.items():
            w.add_tensor(n, a)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    (tmp_path / "theirs").mkdir()
    write(tmp_path / "whole.gguf")
    write(tmp_path / "theirs" / "m.gguf", split_max_tensors=3)
    theirs = sorted((tmp_path / "theirs").iterdir())
    assert [p.name for p in theirs] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    plan = split_model(tmp_path / "whole.gguf", tmp_path / "m", max_tensors=3)
    for (ours, _), their in zip(plan, theirs):
        assert gguf_fields(ours) == gguf_fields(their) and gguf_tensors(ours) == gguf_tensors(their)
    merged = tmp_path / "merged.gguf"
    merge_model(theirs[0], merged)
    assert merged.read_bytes() == (tmp_path / "whole.gguf").read_bytes()


def test_split_plan_edge_cases():
    class T:
        def __init__(self, n):
            self.nbytes = n

    ts = [T(100), T(5000), T(10), T(10)]
    assert [len(g) for g in plan_split(ts, max_size=200)] == [1, 1, 2]  # an oversized tensor alone
    assert [len(g) for g in plan_split(ts, max_tensors=3)] == [3, 1]
    assert [len(g) for g in plan_split(ts, max_tensors=3, no_tensor_first_split=True)] == [0, 3, 1]
    assert [len(g) for g in plan_split(ts)] == [4]
    assert [len(g) for g in plan_split([])] == [0]
    assert parse_size("500M") == 500_000_000 and parse_size("2G") == 2_000_000_000
    assert parse_size("1.5k") == 1500 and parse_size("123") == 123 and parse_size("3MB") == 3_000_000


def test_split_refuses_its_input_and_existing_shards(tmp_path, capsys):
    m = write_model(tmp_path / "m.gguf")
    assert cli_main(["split", str(m), "--max-tensors", "5", "--dry-run"]) == 0
    assert "would write 3 shard(s)" in capsys.readouterr().out and len(list(tmp_path.iterdir())) == 1
    assert cli_main(["split", str(m), "--max-tensors", "5"]) == 0
    first = tmp_path / "m-00001-of-00003.gguf"
    assert first.exists()
    assert cli_main(["split", str(m), "--max-tensors", "5"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["split", str(m), "--max-tensors", "5", "--force"]) == 0
    assert cli_main(["split", str(first), str(tmp_path / "again")]) == 1
    assert "merge the shards first" in capsys.readouterr().err
    assert cli_main(["merge", str(first), str(tmp_path / "m-00002-of-00003.gguf")]) == 1
    assert "input of this command" in capsys.readouterr().err


def test_loader_reads_split_count_zero_as_unsplit(tmp_path):
    # what llama-gguf-split --merge leaves in its output
    with GGUFWriter(tmp_path / "merged.gguf") as w:
        w.add("general.architecture", "llama")
        w.add("split.no", 0, VT.UINT16)
        w.add("split.tensors.count", 1, VT.INT32)
        w.add("split.count", 0, VT.UINT16)
        w.add_tensor("t", np.arange(4, dtype=np.float32))
    with zl.GGUFModelLoader(tmp_path / "merged.gguf") as m:
        assert m.tensor_names() == ["t"] and len(m.readers) == 1


# ---- set-metadata and new-metadata -------------------------------------------------


def _gguf_set_metadata(path, key, value):
    from gguf.scripts import gguf_set_metadata

    args = argparse.Namespace(key=key, value=value, dry_run=False, force=True)
    gguf_set_metadata.set_metadata(gguf.GGUFReader(str(path), "r+"), args)


@pytest.mark.parametrize("key,value,expect", [
    ("test.u32", "42", 42), ("test.u8", "255", 255), ("test.i16", "-7", -7), ("test.f32", "0.25", 0.25),
    ("test.f64", "1e300", 1e300), ("test.u64", "18446744073709551615", 2**64 - 1),
    ("general.file_type", "7", 7),
])
def test_set_metadata_in_place_is_gguf_set_metadata(tmp_path, key, value, expect, capsys):
    m = write_model(tmp_path / "m.gguf")
    theirs = tmp_path / "theirs.gguf"
    shutil.copy(m, theirs)
    inode = os.stat(m).st_ino
    assert cli_main(["set-metadata", str(m), key, value]) == 0
    assert "(in place)" in capsys.readouterr().out and os.stat(m).st_ino == inode
    _gguf_set_metadata(theirs, key, value)
    assert m.read_bytes() == theirs.read_bytes()
    assert gguf_fields(m)[key] == expect


def test_set_metadata_rewrites_when_the_size_changes(tmp_path, capsys):
    m = write_model(tmp_path / "m.gguf")
    os.chmod(m, 0o640)
    tensors = gguf_tensors(m)
    for argv, key, expect, how in [
        (["general.name", "a much longer name"], "general.name", "a much longer name", "rewritten"),
        (["general.name", "same length name!!"], "general.name", "same length name!!", "in place"),
        (["new.key", "hello"], "new.key", "hello", "rewritten"),
        (["new.count", "12", "--type", "uint64"], "new.count", 12, "rewritten"),
        (["test.u32", "2.5", "--type", "float32"], "test.u32", 2.5, "in place"),
        (["test.bool", "false"], "test.bool", False, "in place"),  # gguf-set-metadata reads "0" as True
        (["test.ints", "[4, 5, 6, 7]"], "test.ints", [4, 5, 6, 7], "rewritten"),
    ]:
        assert cli_main(["set-metadata", str(m), *argv]) == 0
        assert f"({how})" in capsys.readouterr().out
        assert gguf_fields(m)[key] == expect
        assert gguf_tensors(m) == tensors
    assert os.stat(m).st_mode & 0o777 == 0o640
    assert cli_main(["set-metadata", str(m), "test.u32", "2.5"]) == 0
    assert "already" in capsys.readouterr().out
    before = m.read_bytes()
    assert cli_main(["set-metadata", str(m), "test.u8", "9", "--dry-run"]) == 0
    assert m.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def _gguf_new_metadata(monkeypatch, argv):
    from gguf.scripts import gguf_new_metadata

    monkeypatch.setattr(sys, "argv", ["gguf-new-metadata", *map(str, argv)])
    monkeypatch.setattr(builtins, "input", lambda prompt="": "YES")
    gguf_new_metadata.main()


@pytest.mark.parametrize("options", [
    ["--general-name", "renamed"],
    ["--general-description", "a model", "--pre-tokenizer", "llama-bpe"],
    ["--special-token", "eos", "<|eot|>", "--special-token-by-id", "bos", "1"],
    ["--special-token", "padding", "<unk>"],
    ["--remove-metadata", "test.f32", "--remove-metadata", "test.ints"],
    ["--chat-template", "{% for m in messages %}{{ m.content }}{% endfor %}"],
])
def test_new_metadata_is_gguf_new_metadata_byte_for_byte(tmp_path, monkeypatch, options):
    m = write_model(tmp_path / "m.gguf", nested=False)
    assert cli_main(["new-metadata", str(m), str(tmp_path / "ours.gguf"), *options]) == 0
    _gguf_new_metadata(monkeypatch, [m, tmp_path / "theirs.gguf", *options, "--force"])
    assert (tmp_path / "ours.gguf").read_bytes() == (tmp_path / "theirs.gguf").read_bytes()


def test_new_metadata_set_and_template_files(tmp_path, capsys):
    m = write_model(tmp_path / "m.gguf")
    (tmp_path / "t.jinja").write_text("{{ bos_token }}", encoding="utf-8")
    (tmp_path / "config.json").write_text(json.dumps({"chat_template": "{{ cfg }}"}), encoding="utf-8")
    out = tmp_path / "o.gguf"
    assert cli_main(["new-metadata", str(m), str(out), "--set", "test.u32=5", "--set", "x.y:float64=0.5",
                     "--set", "x.s=text=with=equals", "--chat-template-file", str(tmp_path / "t.jinja")]) == 0
    f = gguf_fields(out)
    assert (f["test.u32"], f["x.y"], f["x.s"], f["tokenizer.chat_template"]) == (5, 0.5, "text=with=equals",
                                                                                 "{{ bos_token }}")
    r = gguf.GGUFReader(str(out))
    assert r.fields["test.u32"].types == [gguf.GGUFValueType.UINT32]
    assert r.fields["x.y"].types == [gguf.GGUFValueType.FLOAT64]
    out2 = tmp_path / "o2.gguf"
    assert cli_main(["new-metadata", str(out), str(out2), "--chat-template-config", str(tmp_path / "config.json"),
                     "--alignment", "64"]) == 0
    f = gguf_fields(out2)
    assert f["tokenizer.chat_template"] == "{{ cfg }}" and f["general.alignment"] == 64
    assert gguf_tensors(out2) == gguf_tensors(m)


# ---- inspect -----------------------------------------------------------------------


def test_file_type_names_are_llama_cpp_names():
    for ft in gguf.LlamaFileType:
        if ft.name == "GUESSED":
            continue
        name = ft.name.removeprefix("MOSTLY_")
        assert FILE_TYPE_NAMES[ft.value] == ("F32" if name == "ALL_F32" else name)
    assert file_type_name(15) == "Q4_K_M" and file_type_name(1024 | 15) == "Q4_K_M (guessed)"
    assert file_type_name(999) == "unknown (999)" and file_type_name(None) is None


def test_inspect_summary_against_the_gguf_package(tmp_path, capsys):
    m = write_model(tmp_path / "m.gguf", types=("F32", "F16", "Q8_0", "Q4_K"), n_layers=2)
    assert cli_main(["inspect", "--json", str(m)]) == 0
    d = json.loads(capsys.readouterr().out)
    s = d["summary"]
    r = gguf.GGUFReader(str(m))
    assert s["parameters"] == sum(int(t.n_elements) for t in r.tensors)
    assert s["tensor_bytes"] == sum(int(t.n_bytes) for t in r.tensors)
    assert s["metadata_bytes"] == r.data_offset
    assert s["bits_per_weight"] == pytest.approx(8 * s["tensor_bytes"] / s["parameters"])
    assert (s["file_type"], s["file_type_name"], s["architecture"], s["name"]) == (15, "Q4_K_M", "llama", "tiny")
    for t in ("F32", "F16", "Q8_0", "Q4_K"):
        ts = [x for x in r.tensors if x.tensor_type.name == t]
        e = s["types"][t]
        assert (e["tensors"], e["elements"], e["bytes"]) == (len(ts), sum(int(x.n_elements) for x in ts),
                                                             sum(int(x.n_bytes) for x in ts))
    assert s["types"]["Q8_0"]["bits_per_weight"] == 8.5 and s["types"]["Q4_K"]["bits_per_weight"] == 4.5
    assert {t["name"]: t["bits_per_weight"] for t in d["tensors"]}["blk.0.f16.weight"] == 16.0
    assert cli_main(["inspect", str(m)]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "bits per weight" in out and "Q4_K_M" in out and "blk.1.q4_k.weight" in out


def test_inspect_no_tensors_and_filter(tmp_path, capsys):
    m = write_model(tmp_path / "m.gguf", n_layers=3)
    assert cli_main(["inspect", "--no-tensors", str(m)]) == 0
    out = capsys.readouterr().out
    assert "blk.0." not in out and "parameters" in out
    assert cli_main(["inspect", "--json", "--no-tensors", str(m)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "tensors" not in d and d["summary"]["parameters"] > 0 and d["tensor_count"] == 15
    assert cli_main(["inspect", "--json", "--filter", "blk.1.*", str(m)]) == 0
    names = [t["name"] for t in json.loads(capsys.readouterr().out)["tensors"]]
    assert names and all(n.startswith("blk.1.") for n in names) and len(names) == 5
    assert cli_main(["inspect", "--json", "--filter", "q8_0", str(m)]) == 0
    assert len(json.loads(capsys.readouterr().out)["tensors"]) == 3
    assert cli_main(["inspect", "--filter", "q8_0", str(m)]) == 0
    assert "3 of 15" in capsys.readouterr().out


# ---- start-up ----------------------------------------------------------------------


def test_inspect_imports_only_what_it_needs(tmp_path):
    m = write_model(tmp_path / "m.gguf")
    code = ("import sys; from zigllama.cli import main; main(['inspect', sys.argv[1]]); "
            "print(sorted(m for m in sys.modules if m.startswith(('zigllama', 'scipy', 'gguf'))))")
    proc = subprocess.run([sys.executable, "-c", code, str(m)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = eval(proc.stdout.strip().splitlines()[-1])
    for heavy in ("scipy", "zigllama._core.blas_integration", "zigllama._core.threading",
                  "zigllama._core.quantization", "zigllama.commands.bench", "zigllama.commands.demo"):
        assert heavy not in loaded, heavy


def test_lazy_package_exports_what_its_stub_says():
    import ast

    stub = ast.parse(open(os.path.join(os.path.dirname(zl.__file__), "__init__.pyi")).read())
    declared = {a.asname or a.name for n in stub.body if isinstance(n, ast.ImportFrom) for a in n.names}
    declared |= {n.targets[0].id for n in stub.body if isinstance(n, ast.Assign)}
    declared |= {n.name for n in stub.body if isinstance(n, ast.FunctionDef)}
    errors = {n for n, v in vars(zl.errors).items() if isinstance(v, type) and issubclass(v, Exception)}
    assert set(zl.__all__) - errors <= declared  # the error family: `from .errors import *` in both
    assert errors <= set(zl.__all__)
    for name in zl.__all__:
        assert getattr(zl, name) is not None and name in dir(zl)
    assert zl.GGUFReader is GGUFReader and zl.validate_gguf is zl._core.gguf_format.validate
    with pytest.raises(AttributeError):
        zl.not_exported


def test_a_converted_big_endian_model_loads_to_the_same_numbers(tmp_path):
    # block scales are swapped by convert-endian (and gguf-convert-endian): the reader
    # swaps them back before decoding, for every quantized type it decodes
    rng = np.random.default_rng(5)
    types = [t for t in GGMLType if t.is_quantized]
    src = tmp_path / "q.gguf"
    with GGUFWriter(src) as w:
        w.add("general.architecture", "llama")
        for t in types:
            block, size = GGML_TYPE_TRAITS[t]
            w.add_tensor(t.name, zl.quantize(rng.standard_normal((2, block)).astype(np.float32), t)
                         if t.name in ("Q4_0", "Q8_0", "Q4_K", "Q6_K") else
                         rng.integers(0, 256, (2, size), dtype=np.uint8), t, (2, block))
    big = tmp_path / "big.gguf"
    assert convert_endian(src, big, "big")
    with zl.GGUFModelLoader(src) as a, zl.GGUFModelLoader(big) as b:
        checked = 0
        for t in types:
            try:
                want = np.asarray(a.load_tensor(t.name))
            except zl.ZigLlamaError:
                continue  # a type this build does not decode
            got = np.asarray(b.load_tensor(t.name))
            assert np.array_equal(want, got, equal_nan=True), t.name
            checked += 1
        assert checked >= 20


@pytest.mark.parametrize("command,numpy_first,expect", [
    ("inspect", False, "1"), ("inspect", True, None), ("load", False, None)])
def test_commands_without_blas_skip_openblas_threads_only_in_a_fresh_process(tmp_path, command, numpy_first,
                                                                             expect):
    m = tmp_path / "m.gguf"
    with GGUFWriter(m) as w:
        w.add("general.architecture", "llama")
        w.add_tensor("t", np.zeros(4, np.float32))
    code = ("import os, sys\n" + ("import numpy\n" if numpy_first else "") +
            "from zigllama.cli import main\n"
            f"main([{command!r}, '--quiet' if {command!r} == 'load' else '--json', sys.argv[1]])\n"
            "print(os.environ.get('OPENBLAS_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code, str(m)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(expect)


# ---- generated files: every round trip on whatever the writer can write -------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_SCALARS = {
    VT.UINT8: st.integers(0, 255), VT.INT8: st.integers(-128, 127), VT.UINT16: st.integers(0, 65535),
    VT.INT16: st.integers(-2**15, 2**15 - 1), VT.UINT32: st.integers(0, 2**32 - 1),
    VT.INT32: st.integers(-2**31, 2**31 - 1), VT.UINT64: st.integers(0, 2**64 - 1),
    VT.INT64: st.integers(-2**63, 2**63 - 1), VT.FLOAT64: st.floats(allow_nan=False),
    VT.FLOAT32: st.floats(width=32, allow_nan=False), VT.BOOL: st.booleans(),
    VT.STRING: st.text(max_size=12),
}


@st.composite
def _values(draw, depth=0):
    t = draw(st.sampled_from(list(_SCALARS) + ([VT.ARRAY] if depth < 2 else [])))
    if t != VT.ARRAY:
        return t, None, draw(_SCALARS[t])
    et = draw(st.sampled_from(list(_SCALARS) + ([VT.ARRAY] if depth < 1 else [])))
    if et == VT.ARRAY:
        items = draw(st.lists(_arrays(), min_size=1, max_size=3))
        return t, et, [zl.GGUFValue(v, it, iet) for it, iet, v in items]
    return t, et, draw(st.lists(_SCALARS[et], max_size=5))


def _arrays():
    return st.sampled_from(list(_SCALARS)).flatmap(
        lambda et: st.lists(_SCALARS[et], max_size=4).map(lambda v: (VT.ARRAY, et, v)))


_TYPES = [t for t in GGMLType if t in BLOCK_SWAPS]


@settings(max_examples=15)
@given(keys=st.dictionaries(st.from_regex(r"[a-z]{1,6}\.[a-z_]{1,8}", fullmatch=True), _values(), max_size=6),
       tensors=st.lists(st.tuples(st.sampled_from(_TYPES), st.integers(0, 3)), min_size=1, max_size=6),
       max_tensors=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_generated_files_round_trip(tmp_path_factory, keys, tensors, max_tensors, seed):
    d = tmp_path_factory.mktemp("gen")
    rng = np.random.default_rng(seed)
    src = d / "m.gguf"
    with GGUFWriter(src) as w:
        for k, (t, et, v) in keys.items():
            w.add(k, v, t, et)
        for i, (t, rows) in enumerate(tensors):
            block, size = GGML_TYPE_TRAITS[t]
            raw = rng.integers(0, 256, (rows, size), dtype=np.uint8)
            if t.is_quantized:
                w.add_tensor(f"t{i}", raw, t, (rows, block))
            else:
                w.add_tensor(f"t{i}", raw.view(_TENSOR_NUMPY[t]), t)
    original = src.read_bytes()
    assert convert_endian(src, d / "big.gguf", "big") and convert_endian(d / "big.gguf", d / "back.gguf", "little")
    assert (d / "back.gguf").read_bytes() == original
    assert gguf.GGUFReader(str(d / "big.gguf")).fields.keys() == gguf.GGUFReader(str(src)).fields.keys()
    plan = split_model(src, d / "s", max_tensors=max_tensors)
    assert len(plan) == -(-len(tensors) // max_tensors)
    merge_model(plan[0][0], d / "merged.gguf")
    assert (d / "merged.gguf").read_bytes() == original
