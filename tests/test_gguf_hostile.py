"""Hostile GGUF files: every malformed file is a GGUFError naming the field and the
byte offset; never a crash, a hang, a MemoryError or a huge allocation. Each batch
runs in a subprocess whose address space is limited (RLIMIT_AS) to what the
interpreter already uses plus 128 MiB."""
import random
import struct
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import zigllama as zl
from zigllama import GGUFReader

sys.path.insert(0, __import__("os").path.dirname(__file__))
from gguf_hostile_cases import (  # noqa: E402
    ARR, BASE_KVS, BASE_TENSORS, BOOL, F32, I32, I_MUTATIONS, Q_MUTATIONS, STR, U8, U32,
    base_file, build, patched, run_cases,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")


def assert_all_gguf_errors(results, allowed_valid=()):
    bad = {k: v for k, v in results.items() if v[0] != "GGUFError" and not (k in allowed_valid and v[0] == "ok")}
    assert not bad, f"{len(bad)} cases not a GGUFError, e.g. {list(bad.items())[:5]}"
    for label, (_, cls, msg) in results.items():
        if results[label][0] == "GGUFError":
            assert " at byte " in msg, (label, msg)


def test_base_file_is_valid_and_read_correctly():
    for e in "<>":
        data, _ = base_file(e)
        with GGUFReader(data) as r:
            assert r.byte_order == ("little" if e == "<" else "big")
            assert r.alignment == 64 and r.data_offset % 64 == 0
            assert list(r.metadata["tokens"]) == ["<s>", "", "wörd"]
            assert r.metadata["nested"][1] == ["x"] and r.metadata["nested"][0].tolist() == [1, 2]
            assert r.metadata["flag"] is True and list(r.metadata["bools"]) == [False, True]
            assert [t.name for t in r.tensors] == ["a", "q", "h"]
            assert np.asarray(r.tensor("q")).shape == (34,)
            r.validate()


def test_truncation_at_every_byte(tmp_path):
    cases = []
    for e in "<>":
        data, _ = base_file(e)
        cases += [(f"{e}truncated at {n}", data[:n]) for n in range(len(data))]
    results = run_cases(cases, str(tmp_path))
    assert len(results) == len(cases)
    assert_all_gguf_errors(results)
    kinds = {cls for _, cls, _ in results.values()}
    assert {"GGUFTruncated", "GGUFLayoutError"} <= kinds


def test_every_length_and_count_field_mutated(tmp_path):
    cases, maybe_valid = [], set()
    for e in "<>":
        data, fields = base_file(e)
        for label, pos, fmt in fields:
            old = struct.unpack_from(e + fmt, data, pos)[0]
            for v in (Q_MUTATIONS if fmt == "Q" else I_MUTATIONS):
                if v == old:
                    continue
                name = f"{e}{label}={v}"
                cases.append((name, patched(data, pos, fmt, v, e)))
                if ".ne[" in label and v == 0:
                    maybe_valid.add(name)  # a zero-size tensor is legal in ggml
    results = run_cases(cases, str(tmp_path))
    assert_all_gguf_errors(results, allowed_valid=maybe_valid)
    # The huge counts are refused from the header, before anything is read or allocated.
    assert results["<header.n_kv=9223372036854775808"][1] == "GGUFTruncated"
    assert "header.kv_count at byte 16" in results["<header.n_kv=18446744073709551615"][2]
    assert results["<tensor[0].n_dims=5"][1] == "GGUFLimitExceeded"


def named_cases():
    """Each rule of the format broken once."""
    ok_tensor = [("t", [32], 0, 0, 128)]
    out = {
        "bad magic": b"GGUX" + base_file()[0][4:],
        "empty file": b"",
        "version 1": patched(base_file()[0], 4, "I", 1),
        "version 4": patched(base_file()[0], 4, "I", 4),
        "version 0x01000000": patched(base_file()[0], 4, "I", 0x01000000),
        "empty key": build([("", U32, 1)], [])[0],
        "duplicate key": build([("k", U32, 1), ("k", U32, 2)], [])[0],
        "duplicate key of another type": build([("k", U32, 1), ("k", STR, "x")], [])[0],
        "200,000 keys, the last repeating the first": build(
            [(f"k{i}", U8, 1) for i in range(200000)] + [("k0", U8, 1)], [])[0],
        "duplicate tensor name": build([], [("t", [8], 0, 0, 32), ("t", [8], 0, 32, 32)])[0],
        "tensor name of 64 bytes": build([], [("n" * 64, [8], 0, 0, 32)])[0],
        "n_dims 5": build([], [("t", [1, 1, 1, 1, 8], 0, 0, 32)])[0],
        "unknown value type 13": patched(build([("k", U32, 1)], [])[0], 24 + 8 + 1, "I", 13),
        "unknown value type 2^32-1": patched(build([("k", U32, 1)], [])[0], 24 + 8 + 1, "I", 2**32 - 1),
        "unknown array element type": patched(build([("k", ARR, (U8, [1]))], [])[0], 24 + 8 + 1 + 4, "I", 13),
        "unknown ggml type 4": build([], [("t", [8], 4, 0, 32)])[0],
        "unknown ggml type 31": build([], [("t", [8], 31, 0, 32)])[0],
        "unknown ggml type 42": build([], [("t", [8], 42, 0, 32)])[0],
        "unknown ggml type 2^32-1": build([], [("t", [8], 2**32 - 1, 0, 32)])[0],
        "ne[0] not a multiple of the block": build([], [("t", [33], 8, 0, 64)])[0],
        "alignment 0": build([("general.alignment", U32, 0)], ok_tensor)[0],
        "alignment 3": build([("general.alignment", U32, 3)], ok_tensor)[0],
        "alignment 2^31": build([("general.alignment", U32, 2**31)], ok_tensor)[0],
        "alignment typed i32": build([("general.alignment", I32, 32)], ok_tensor)[0],
        "alignment typed string": build([("general.alignment", STR, "32")], ok_tensor)[0],
        "misaligned offset": build([], [("a", [8], 0, 0, 32), ("b", [8], 0, 40, 32)], data_size=96)[0],
        "overlapping offsets": build([], [("a", [16], 0, 0, 64), ("b", [8], 0, 32, 32)])[0],
        "same offsets": build([], [("a", [8], 0, 0, 32), ("b", [8], 0, 0, 32)])[0],
        "offset out of the file": build([], [("a", [8], 0, 2**40, 32)], data_size=32)[0],
        "offset near 2^64": build([], [("a", [8], 0, 2**64 - 32, 32)], data_size=32)[0],
        "data past the end": build([], [("a", [64], 0, 0, 256)], data_size=100)[0],
        "dims 2^42+1": build([], [("t", [2**42 + 1, 2**42 + 1], 0, 0, 32)])[0],
        "dims 2^42+1 single": build([], [("t", [2**42 + 1], 0, 0, 32)])[0],
        "dims near 2^64": build([], [("t", [2**64 - 1], 0, 0, 32)])[0],
        "dims product near 2^64": build([], [("t", [2**32, 2**32], 0, 0, 32)])[0],
        "block dims overflowing bytes": build([], [("t", [2**62, 2], 8, 0, 32)])[0],
        "bool of 7": build([("b", BOOL, 7)], [])[0],
        "bool of 7 in an array": build([("b", ARR, (BOOL, [0, 1, 7]))], [])[0],
        "trailing garbage": build([], [("a", [8], 0, 0, 32)], data_size=200)[0],
        "garbage after a tensorless file": build([("k", U32, 1)], [])[0] + b"x" * 40,
        "key not UTF-8": build([(b"\xff\xfe", U32, 1)], [])[0],
        "tensor name not UTF-8": build([], [(b"\xc3(", [8], 0, 0, 32)])[0],
        "string value not UTF-8": build([("k", STR, b"ok\xed\xa0\x80")], [])[0],
        "string array element not UTF-8": build([("k", ARR, (STR, ["a", b"\xf8\x88\x80\x80\x80"]))], [])[0],
        "key length 2^64-1": build([], [], n_kv=1, alignment=1)[0] + struct.pack("<Q", 2**64 - 1) + b"k" * 64,
        "string array of 2^61 entries": build([("k", ARR, (STR, ["a"]))], [])[0][:24 + 8 + 1 + 4 + 4] +
        struct.pack("<Q", 2**61) + b"\x00" * 64,
    }
    # 1,000 levels, written flat: (array type, count 1) x 999, then one u8 array
    head = build([], [], n_kv=1, alignment=1)[0] + struct.pack("<Q", 4) + b"deep" + struct.pack("<I", ARR)
    out["arrays nested 1,000 deep"] = (head + struct.pack("<IQ", ARR, 1) * 999 + struct.pack("<IQB", U8, 1, 1))
    nine = (U8, [1])
    for _ in range(8):
        nine = (ARR, [nine])
    out["arrays nested 9 deep"] = build([("deep", ARR, nine)], [])[0]
    return out


EXPECTED_KIND = {
    "version 1": "GGUFUnsupportedVersion", "version 4": "GGUFUnsupportedVersion",
    "empty key": "GGUFInvalidValue", "duplicate key": "GGUFDuplicate", "duplicate tensor name": "GGUFDuplicate",
    "200,000 keys, the last repeating the first": "GGUFDuplicate",
    "tensor name of 64 bytes": "GGUFLimitExceeded", "n_dims 5": "GGUFLimitExceeded",
    "unknown value type 13": "GGUFUnknownType", "unknown ggml type 31": "GGUFUnknownType",
    "ne[0] not a multiple of the block": "GGUFLayoutError", "alignment 0": "GGUFInvalidValue",
    "alignment 3": "GGUFInvalidValue", "alignment 2^31": "GGUFLimitExceeded",
    "alignment typed i32": "GGUFInvalidValue", "misaligned offset": "GGUFLayoutError",
    "overlapping offsets": "GGUFLayoutError", "offset out of the file": "GGUFLayoutError",
    "dims 2^42+1": "GGUFLimitExceeded", "bool of 7": "GGUFInvalidValue",
    "arrays nested 1,000 deep": "GGUFLimitExceeded", "trailing garbage": "GGUFLayoutError",
    "string value not UTF-8": "GGUFInvalidValue", "key length 2^64-1": "GGUFTruncated",
    "offset near 2^64": "GGUFLayoutError",
    "string array of 2^61 entries": "GGUFTruncated",
}


def test_each_rule_broken(tmp_path):
    cases = named_cases()
    results = run_cases(list(cases.items()), str(tmp_path))
    assert_all_gguf_errors(results)
    for label, kind in EXPECTED_KIND.items():
        assert results[label][1] == kind, (label, results[label])
    assert "alignment" in results["alignment 3"][2] and "power of two" in results["alignment 3"][2]
    assert "version 1" in results["version 1"][2]
    assert "kv[200000] 'k0'.key" in results["200,000 keys, the last repeating the first"][2]
    assert "bool" in results["bool of 7"][2] and "found 7" in results["bool of 7"][2]
    assert "kv[0].key at byte 24: declared length 18446744073709551615" in results["key length 2^64-1"][2]


def test_errors_name_field_and_offset():
    data = build([("k", U32, 1), ("k", U32, 2)], [])[0]
    with pytest.raises(zl.GGUFDuplicate) as e:
        GGUFReader(data)
    assert e.value.field == "kv[1] 'k'.key" and e.value.offset == 24 + 17
    data = build([], [("a", [8], 0, 0, 32), ("b", [8], 0, 40, 32)], data_size=96)[0]
    with pytest.raises(zl.GGUFLayoutError) as e:
        GGUFReader(data)
    assert e.value.field == "tensor[1] 'b'.offset" and "multiple of the alignment 32" in str(e.value)
    assert data[e.value.offset:e.value.offset + 8] == struct.pack("<Q", 40)


def test_random_mutations_never_crash(tmp_path):
    """Random byte edits of the base file: each is valid or a GGUFError, nothing else."""
    rnd = random.Random(1234)
    base, fields = base_file()
    cases = []
    for i in range(600):
        b = bytearray(base)
        for _ in range(rnd.randint(1, 4)):
            op = rnd.random()
            pos = rnd.randrange(len(b))
            if op < 0.5:
                b[pos] = rnd.randrange(256)
            elif op < 0.7:
                label, fpos, fmt = rnd.choice(fields)
                b[fpos:fpos + struct.calcsize(fmt)] = struct.pack(
                    "<" + fmt, rnd.choice((0, 1, 2**31, 2**32 - 1) if fmt == "I" else Q_MUTATIONS + (rnd.getrandbits(64),)))
            elif op < 0.85:
                del b[pos:pos + rnd.randint(1, 16)]
            else:
                b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
        cases.append((f"mutation {i}", bytes(b)))
    results = run_cases(cases, str(tmp_path))
    others = {k: v for k, v in results.items() if v[0] not in ("ok", "GGUFError")}
    assert not others, list(others.items())[:5]


@given(st.data())
def test_hypothesis_splices_are_valid_or_gguf_errors(data):
    """Bytes spliced into the base file (in-process; hypothesis shrinks a failure to
    the smallest splice)."""
    base = base_file(data.draw(st.sampled_from("<>")))[0]
    pos = data.draw(st.integers(0, len(base) - 1))
    chunk = data.draw(st.binary(min_size=1, max_size=12))
    mutated = base[:pos] + chunk + base[pos + data.draw(st.integers(0, 12)):]
    try:
        with GGUFReader(mutated) as r:
            for k in r.metadata:
                v = r.metadata[k]
                if not isinstance(v, (int, float, str)):
                    [np.asarray(x) if not isinstance(x, str) else x for x in v]
            for t in r.tensors:
                np.asarray(r.tensor(t.name)).tobytes()
            r.validate()
    except zl.GGUFError as e:
        assert " at byte " in str(e)
