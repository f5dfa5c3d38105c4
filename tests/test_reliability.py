"""Misuse, races and changes underneath: each class of failure tested over its whole
class, generated from the package (api_surface.py), not from hand-picked cases.

A crash here is a failure of the suite run; the cases that could only fail by killing
the process (SIGBUS, blocking opens) run in a subprocess with a timeout.
"""
import copy
import gc
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zigllama as zl
from api_surface import SUBJECTS, Subject, call_outcome, cases, exporters, public_members, write_model
from gguf_hostile_cases import build

_CASE_DIR = tempfile.mkdtemp(prefix="zl-api-")
CASES = cases(_CASE_DIR)


def _allowed(after, before):
    """After the end of its object a member may work, raise one of ours, or fail as it
    failed on the open object (the guessed argument did not fit)."""
    if after == "ok" or after == before:
        return True
    return isinstance(after, type) and issubclass(after, zl.ZigLlamaError)


# ---- class 1: use after close, and close while in use -------------------------------

@pytest.mark.parametrize("subject,name,kind", CASES, ids=[f"{s.kind}.{n}" for s, n, _ in CASES])
def test_member_after_end_of_life(tmp_path, subject, name, kind):
    obj, owner = subject.make(str(tmp_path))
    before = call_outcome(obj, name, kind)
    obj, owner = subject.make(str(tmp_path))
    try:
        subject.end(owner)
    except zl.ZigLlamaError:
        pass  # refused while the object lives (a map with a tensor over it): also safe
    after = call_outcome(obj, name, kind)
    assert _allowed(after, before), f"{subject.kind}.{name} after {subject.end.__name__}: {after}"


def test_cases_cover_every_subject():
    kinds = {s.kind for s, _, _ in CASES}
    assert kinds == {s.kind for s in SUBJECTS}
    assert len(CASES) > 200


@pytest.mark.parametrize("subject", SUBJECTS, ids=repr)
def test_members_while_another_thread_ends_the_object(tmp_path, subject):
    """Every member called in a loop by one thread while the main thread ends the
    object at a different moment each round; the interpreter switches threads as
    often as it can."""
    members = public_members(subject.make(str(tmp_path))[0])
    # what each member does on an open object (the argument guesses)
    obj, owner = subject.make(str(tmp_path))
    before = {n: call_outcome(obj, n, k) for n, k in members}
    bad = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for round_ in range(4):
            obj, owner = subject.make(str(tmp_path))
            stop = threading.Event()

            def hammer():
                while not stop.is_set():
                    for n, k in members:
                        out = call_outcome(obj, n, k)
                        if not _allowed(out, before[n]):
                            bad.append((n, out))

            t = threading.Thread(target=hammer)
            t.start()
            stop.wait(0.002 * (round_ + 1))
            try:
                subject.end(owner)
            except zl.ZigLlamaError:
                pass  # refused while in use: as documented (a validating reader)
            stop.wait(0.01)
            stop.set()
            t.join(30)
            assert not t.is_alive(), f"{subject.kind}: a member hung after the end"
            try:
                subject.end(owner)
            except zl.ZigLlamaError:
                pass
    finally:
        sys.setswitchinterval(old)
    assert not bad, f"{subject.kind}: {sorted(set(bad), key=str)[:10]}"


# ---- class 5: buffer exports held by objects collected in a cycle --------------------

@pytest.mark.parametrize("kind,source,holders", exporters(), ids=[e[0] for e in exporters()])
def test_export_released_when_holders_are_collected_in_a_cycle(tmp_path, kind, source, holders):
    path = write_model(str(tmp_path / "m.gguf"))
    if source == "map":
        src = zl.MemoryMap.from_file(path)
    else:
        with open(path, "rb") as f:
            src = bytearray(f.read())
    objs = holders(src)
    cycle = [objs]
    cycle.append(cycle)
    for o in objs:
        try:
            o.cycle = cycle  # a reference back where the type allows one
        except AttributeError:
            pass
    del objs, cycle, o
    gc.collect()
    if source == "map":
        src.close()  # MappingInUse if an export outlived its holder
    else:
        src.extend(b"\0" * 4096)  # BufferError if still exported


# ---- class 2: non-native byte order on every numeric entry point --------------------

def _blas_calls(b):
    a32 = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    v3 = np.arange(1, 4, dtype=np.float32)
    v2 = np.arange(1, 3, dtype=np.float32)
    return {
        "gemm": ((a32, a32.T.copy()), lambda *x: b.gemm(*x)),
        "gemv": ((a32, v3), lambda *x: b.gemv(*x)),
        "dot": ((v3, v3.copy()), lambda *x: b.dot(*x)),
        "nrm2": ((v3,), lambda *x: b.nrm2(*x)),
        "axpy": ((v3, v3.copy()), lambda x, y: b.axpy(2.0, x, y)),
        "scal": ((v2,), lambda x: b.scal(3.0, x)),
        "matmul": ((a32, a32.T.copy()), lambda *x: zl.BlasManager().matmul(*x)),
        "matvec": ((a32, v3), lambda *x: zl.BlasManager().matvec(*x)),
    }


BYTE_ORDER_CASES = [(backend, op, pos, dt)
                    for backend in ("scipy", "generic", "naive")
                    for op, ((args), _) in _blas_calls(None).items()
                    for pos in range(len(args))
                    for dt in ("f4", "f8")]


@pytest.mark.parametrize("backend,op,pos,dt", BYTE_ORDER_CASES)
def test_blas_swapped_operand_is_refused_or_computed_right(backend, op, pos, dt):
    b = zl.get_blas(backend)
    args, fn = _blas_calls(b)[op]
    native = [a.astype(dt) for a in args]
    swapped = [a.astype(dt) for a in args]
    swapped[pos] = swapped[pos].astype(">" + dt)
    expected = fn(*[a.copy() for a in native])
    try:
        got = fn(*swapped)
    except zl.BlasError as exc:
        assert "byte order" in str(exc)
        return
    np.testing.assert_allclose(np.asarray(got if got is not None else swapped[-1]),
                               np.asarray(expected if expected is not None else native[-1]), rtol=1e-6)


def test_big_endian_file_tensors_are_refused_by_blas_not_misread(tmp_path):
    path = str(tmp_path / "be.gguf")
    with zl.GGUFWriter(path, byte_order="big") as w:
        w.add_tensor("w", np.arange(6, dtype=np.float32).reshape(2, 3))
    with zl.GGUFReader(path) as r:
        t = r.tensor("w")
        assert t.dtype.byteorder == ">"
        with pytest.raises(zl.BlasError, match="byte order"):
            zl.get_blas().gemm(t, np.ones((3, 2), np.float32))
        np.testing.assert_array_equal(np.asarray(r.load("w")), np.arange(6, dtype=np.float32).reshape(2, 3))


# ---- class 3: lengths validated at open, changed afterwards ----------------------------

def _string_length_fields(data):
    """Offsets of every string length field in the metadata values of a file we wrote."""
    with zl.GGUFReader(bytes(data)) as r:
        out = []
        for k in r.metadata:
            t = r.metadata.value_type(k)
            raw_at = r.metadata.offset(k) + 8 + len(k.encode()) + 4  # key, value type
            if t == zl.GGUFValueType.STRING:
                out.append((k, None, raw_at))
            elif t == zl.GGUFValueType.ARRAY and r.metadata.element_type(k) == zl.GGUFValueType.STRING:
                q = raw_at + 12
                for i, n in enumerate(r.metadata[k].byte_lengths()):
                    out.append((k, i, q))
                    q += 8 + int(n)
        return out


def _length_cases():
    d = tempfile.mkdtemp(prefix="zl-len-")
    with open(write_model(os.path.join(d, "m.gguf")), "rb") as f:
        data = f.read()
    return data, _string_length_fields(data)


_LEN_DATA, _LEN_FIELDS = _length_cases()


@pytest.mark.parametrize("key,index,at", _LEN_FIELDS, ids=[f"{k}[{i}]" for k, i, _ in _LEN_FIELDS])
@pytest.mark.parametrize("new_length", [2**26, 2**63, 2**64 - 1])
def test_string_length_rewritten_after_open(key, index, at, new_length):
    buf = bytearray(_LEN_DATA)
    r = zl.GGUFReader(buf)
    # The reader holds an export, so the bytes cannot be resized; they can be edited.
    memoryview(buf)[at:at + 8] = struct.pack("<Q", new_length)
    reads = [lambda: r.metadata[key] if index is None else r.metadata[key][index], r.validate]
    if index is not None:
        reads += [lambda: r.metadata[key].tolist(), lambda: r.metadata[key].byte_lengths(),
                  lambda: list(r.metadata[key])]
    for read in reads:
        with pytest.raises(zl.GGUFFileChanged):
            read()
    r.close()


def test_array_count_rewritten_after_open():
    buf = bytearray(_LEN_DATA)
    r = zl.GGUFReader(buf)
    at = r.metadata.offset("tokenizer.ggml.scores") + 8 + len("tokenizer.ggml.scores") + 4 + 4
    memoryview(buf)[at:at + 8] = struct.pack("<Q", 2**40)
    with pytest.raises(zl.GGUFFileChanged):
        r.metadata["tokenizer.ggml.scores"]
    r.close()


# ---- class 4: the file shrinks or is rewritten under an open reader ------------------

SHRINK_RUNNER = r"""
import os, sys, shutil
import numpy as np
import zigllama as zl
src, work = sys.argv[1], sys.argv[2]
size = os.path.getsize(src)
with zl.GGUFReader(src) as r:
    cuts = sorted({0, 1, 64, r.data_offset // 2, r.data_offset, size - 1}
                  | {t.data_offset + t.nbytes // 2 for t in r.tensors} | {t.data_offset for t in r.tensors})
    names = r.tensor_names()
ops = {
    "validate": lambda r: r.validate(),
    "vocabulary": lambda r: r.metadata["tokenizer.ggml.tokens"].tolist(),
    "token": lambda r: r.metadata["tokenizer.ggml.tokens"][3],
    "byte_lengths": lambda r: r.metadata["tokenizer.ggml.tokens"].byte_lengths(),
    "string": lambda r: r.metadata["general.name"],
}
for n in names:
    ops["load " + n] = (lambda n: lambda r: r.load(n))(n)
    ops["load threads=2 " + n] = (lambda n: lambda r: r.load(n, threads=2))(n)
count = 0
for cut in cuts:
    for label, op in ops.items():
        shutil.copy(src, work)
        r = zl.GGUFReader(work)
        os.truncate(work, cut)
        try:
            op(r)
            outcome = "ok"
        except zl.GGUFError as exc:
            outcome = type(exc).__name__
        r.close()
        count += 1
        print(cut, label, outcome, flush=True)
print("cases", count)
"""


def _big_model(path):
    with zl.GGUFWriter(path) as w:
        w.add("general.architecture", "llama")
        w.add("general.name", "x" * 10000)
        w.add_array("tokenizer.ggml.tokens", [f"tok{i}" * 50 for i in range(400)])
        w.add_tensor("f32", np.ones((256, 256), np.float32))
        w.add_tensor("q8", zl.quantize(np.ones((256, 1024), np.float32), "Q8_0"), zl.GGMLType.Q8_0)
    return path


@pytest.mark.parametrize("byte_order", ["little", "big"])
def test_file_shrinking_under_the_reader_is_an_error_not_a_crash(tmp_path, byte_order):
    src = _big_model(str(tmp_path / "big.gguf"))
    if byte_order == "big":   # quantized blocks then load from a scale-swapped copy
        from zigllama.gguf_endian import convert_endian

        convert_endian(src, str(tmp_path / "big-be.gguf"), "big")
        src = str(tmp_path / "big-be.gguf")
    proc = subprocess.run([sys.executable, "-c", SHRINK_RUNNER, src, str(tmp_path / "work.gguf")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    lines = proc.stdout.splitlines()
    n = int(lines[-1].split()[1])
    assert n >= 80
    outcomes = [ln.rsplit(" ", 1)[1] for ln in lines[:-1]]
    assert set(outcomes) <= {"ok", "GGUFFileChanged"}, set(outcomes)
    assert outcomes.count("GGUFFileChanged") > n // 2


def test_file_shrinking_at_open_is_an_error(tmp_path):
    # the guard around parsing: a map of a file already shorter than its size said
    path = write_model(str(tmp_path / "m.gguf"))
    code = ("import os, sys, zigllama as zl\n"
            "m = zl.MemoryMap.from_file(sys.argv[1]); os.truncate(sys.argv[1], 0)\n"
            "try:\n    zl.GGUFReader(m)\nexcept zl.GGUFFileChanged as e:\n    print('changed')\n")
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "changed", proc.stderr


def test_a_sigbus_outside_the_guard_still_kills_the_process(tmp_path):
    # the handler hands faults it does not own to the previous handler (the default)
    path = write_model(str(tmp_path / "m.gguf"))
    code = ("import os, sys, numpy as np, zigllama as zl\n"
            "m = zl.MemoryMap.from_file(sys.argv[1]); v = np.asarray(m)\n"
            "os.truncate(sys.argv[1], 0); print(int(v[-1]))\n")
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, timeout=120)
    assert proc.returncode == -7  # SIGBUS: numpy views are not guarded (documented)


# ---- class 6: special files ----------------------------------------------------------

SPECIAL_RUNNER = r"""
import os, socket, sys
import zigllama as zl
d = sys.argv[1]
fifo = os.path.join(d, "fifo"); os.mkfifo(fifo)
sock = os.path.join(d, "sock"); s = socket.socket(socket.AF_UNIX); s.bind(sock)
paths = {"fifo": fifo, "socket": sock, "directory": d, "/dev/null": "/dev/null",
         "/dev/zero": "/dev/zero", "/proc file": "/proc/self/status", "/sys file": "/sys/kernel/mm/transparent_hugepage/enabled"}
opens = {"GGUFReader": zl.GGUFReader, "MemoryMap.from_file": zl.MemoryMap.from_file,
         "validate_gguf": zl.validate_gguf, "GGUFModelLoader": zl.GGUFModelLoader}
for pk, p in paths.items():
    if not os.path.exists(p):
        continue
    for ok, op in opens.items():
        try:
            op(p)
            print(pk, ok, "opened", flush=True)
        except zl.ZigLlamaError as exc:
            print(pk, ok, "error", flush=True)
"""


def test_special_files_are_refused_at_once(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SPECIAL_RUNNER, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) >= 20
    assert all(ln.endswith(" error") for ln in lines), lines


def test_cli_validate_of_a_fifo_does_not_hang(tmp_path):
    fifo = str(tmp_path / "f.gguf")
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "zigllama", "validate", fifo], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr


# ---- class 10: what validate() accepts, load() loads -------------------------------

_DIMS = st.sampled_from([0, 1, 2, 3, 32, 2**20, 2**31, 2**40, 2**58, 2**60, 2**61, 2**62, 2**63 - 1])


@settings(max_examples=150)
@given(ne=st.lists(_DIMS, min_size=0, max_size=4),
       ggml_type=st.sampled_from([0, 1, 8, 12, 24, 26, 27, 28]))
def test_validate_accepts_only_what_load_loads(ne, ggml_type):
    block, size = zl.ggml_types.GGML_TYPE_TRAITS[zl.GGMLType(ggml_type)]
    dims = ne + [1] * (4 - len(ne))
    nbytes = 0 if 0 in dims else dims[0] // block * size * dims[1] * dims[2] * dims[3]
    if nbytes > 2**20:
        nbytes = 0  # the file is too short for it: the reader says so, which is all we ask
    data, _ = build([], [("t", ne, ggml_type, 0, nbytes)])
    try:
        r = zl.GGUFReader(data)
        r.validate()
    except zl.GGUFError:
        return
    with r:
        out = r.load("t")
        assert out.shape == (r.tensor_info("t").shape or (1,))
        np.asarray(r.tensor("t"))
        r.raw_tensor("t")


def test_zero_dimension_no_longer_hides_an_overflow():
    data, _ = build([], [("t", [0, 2**62, 2**62, 2**62], 0, 0, 0)])
    with pytest.raises(zl.GGUFLimitExceeded):
        zl.GGUFReader(data)


# ---- class 11: the writer's arrays ---------------------------------------------------

ND_VALUES = [np.ones((2, 3), np.float32), np.ones((1, 1), np.int32), np.zeros((2, 2, 2), np.uint8),
             np.float32(1.0).reshape(()), [[1, 2], [3, 4]], [[1.0], [2.0]], [b"a", 3], ["a", None]]


@pytest.mark.parametrize("value", ND_VALUES, ids=lambda v: f"{type(v).__name__}{np.shape(v) if not isinstance(v, list) else ''}")
@pytest.mark.parametrize("element_type", [None, zl.GGUFValueType.FLOAT32, zl.GGUFValueType.INT32,
                                          zl.GGUFValueType.STRING])
def test_writer_refuses_arrays_it_cannot_write_faithfully(tmp_path, value, element_type):
    if isinstance(value, list) and element_type is None and all(isinstance(x, list) for x in value):
        # lists of lists without an element type are arrays of arrays, which GGUF has
        with zl.GGUFWriter(str(tmp_path / "w.gguf")) as w:
            w.add_array("k", value)
        with zl.GGUFReader(str(tmp_path / "w.gguf")) as r:
            assert r.metadata.element_type("k") == zl.GGUFValueType.ARRAY
            assert [list(np.asarray(x)) for x in r.metadata["k"]] == value
        return
    with zl.GGUFWriter(str(tmp_path / "w.gguf")) as w:
        try:
            w.add_array("k", value, element_type)
        except zl.GGUFError:
            return
        pytest.fail(f"{value!r} as {element_type} was accepted")


@settings(max_examples=60)
@given(st.sampled_from(["f4", "f8", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "?"]),
       st.integers(0, 40))
def test_writer_count_is_the_elements_written(dtype, n):
    d = tempfile.mkdtemp(prefix="zl-w-")
    p = os.path.join(d, "w.gguf")
    a = (np.arange(n) % 2).astype(dtype)
    with zl.GGUFWriter(p) as w:
        w.add_array("k", a)
    with zl.GGUFReader(p) as r:
        assert np.array_equal(np.asarray(r.metadata["k"]), a)


# ---- class 14: the package's own errors --------------------------------------------

def test_gemm_of_a_tensor_after_an_arena_reset_says_use_after_reset():
    a = zl.ArenaAllocator()
    t = zl.Tensor.empty((2, 2), "float32", allocator=a)
    a.reset()
    for backend in ("scipy", "generic", "naive"):
        with pytest.raises(zl.UseAfterReset):
            zl.get_blas(backend).gemm(t, np.ones((2, 2), np.float32))


PICKLE_SUBJECTS = [s for s in SUBJECTS if s.kind not in ("TensorInfo",)]


@pytest.mark.parametrize("subject", PICKLE_SUBJECTS, ids=repr)
@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_copying_core_objects_works_or_says_why(tmp_path, subject, how):
    obj, owner = subject.make(str(tmp_path))
    try:
        if how == "pickle":
            pickle.loads(pickle.dumps(obj))
        elif how == "copy":
            copy.copy(obj)
        else:
            copy.deepcopy(obj)
    except zl.ZigLlamaError as exc:
        assert type(obj).__name__ in str(exc) or subject.kind.split()[0] in str(exc)
        assert "__pyx" not in str(exc) and "cannot be converted" not in str(exc)
    finally:
        try:
            subject.end(owner)
        except zl.ZigLlamaError:
            pass


HOSTILE = [-1, 2**64, 2**1000, float("nan"), "\ud800", "\0", b"\xff", object()]


@pytest.mark.parametrize("subject", SUBJECTS, ids=repr)
def test_hostile_arguments_raise_the_package_errors(tmp_path, subject):
    """Each parameter of each method, replaced by each hostile value in turn: the call
    works or raises a ZigLlamaError (which is also the matching built-in), never a bare
    ValueError, TypeError, OverflowError, UnicodeError or BufferError."""
    import inspect

    obj, owner = subject.make(str(tmp_path))
    bare = []
    tried = 0
    try:
        for name, kind in public_members(obj):
            if kind != "method" or name.startswith("_") or name in ("submit", "map", "open"):
                continue
            member = getattr(obj, name)
            try:
                params = [p for p in inspect.signature(member).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                continue
            from api_surface import arguments_for
            base = list(arguments_for(member, obj))
            for i in range(len(params)):
                for h in HOSTILE:
                    args = base + [None] * (len(params) - len(base))
                    args = [a if j != i else h for j, a in enumerate(args)][:max(len(base), i + 1)]
                    tried += 1
                    try:
                        member(*args)
                    except zl.ZigLlamaError:
                        pass
                    except (ValueError, TypeError, OverflowError, UnicodeError, BufferError) as exc:
                        bare.append(f"{name}({i}={h!r}): {type(exc).__name__}: {exc}")
                    except Exception:
                        pass
    finally:
        try:
            subject.end(owner)
        except zl.ZigLlamaError:
            pass
    assert not bare, f"{len(bare)} of {tried} calls:\n" + "\n".join(bare[:20])


def test_argument_errors_name_the_argument_and_value(tmp_path):
    """The checked conversions say which argument was wrong and what it was."""
    heap = zl.HeapAllocator()
    with pytest.raises(zl.InvalidArgumentType, match=r"size must be an integer, got float nan"):
        heap.alloc(float("nan"))
    with pytest.raises(zl.InvalidArgumentType, match=r"alignment must be an integer, got str '8'"):
        heap.alloc(8, "8")
    with pytest.raises(zl.InvalidArgumentType, match=r"block must be a Block, got int 3"):
        heap.resize(3, 8)
    with pytest.raises(zl.InvalidArgumentType, match=r"block must be a Block, got NoneType"):
        heap.free(None)
    m = zl.MemoryMap.anonymous(4096)
    try:
        with pytest.raises(zl.InvalidArgumentType, match=r"offset must be an integer, got bytes"):
            m.view(b"\xff")
        with pytest.raises(zl.InvalidArgumentType, match=r"length must be an integer, got object"):
            m.prefault(0, object())
        with pytest.raises(zl.InvalidArgumentType, match=r"dtype -1 is not a data type"):
            m.view(0, 4, -1)
        with pytest.raises(zl.InvalidArgumentType, match=r"dtype '\\ud800' is not a data type"):
            m.view(0, 4, "\ud800")
    finally:
        m.close()
    t = zl.Tensor.from_numpy(np.ones((2, 2), np.float32))
    with pytest.raises(zl.InvalidArgumentType, match=r"out must be a Tensor or None, got int 3"):
        t.add(t, 3)
    with pytest.raises(zl.InvalidArgumentType, match=r"allocator must be an Allocator or None, got str 'heap'"):
        t.copy("heap")
    with pytest.raises(zl.InvalidArgumentType, match=r"other must be a Tensor, got NoneType"):
        t.matmul(None)
    assert np.array_equal(np.asarray(t.matmul(t, allocator=heap)), np.full((2, 2), 2, np.float32))
    from zigllama._config import resolve_threads
    with pytest.raises(zl.InvalidArgumentValue, match=r"threads must be between 1 and 1024, got 0"):
        resolve_threads(0)
    with pytest.raises(zl.InvalidArgumentType, match=r"threads must be an integer, got float 2.0"):
        resolve_threads(2.0)


# ---- class 15: NUL bytes and empty names ---------------------------------------------

@pytest.mark.parametrize("where", ["key", "tensor name"])
@pytest.mark.parametrize("name", ["a\0b", "\0", "abc\0"])
def test_nul_in_keys_and_tensor_names_is_refused_by_reader_and_writer(tmp_path, where, name):
    if where == "key":
        data, _ = build([(name, 4, 1)], [])
    else:
        data, _ = build([], [(name, [1], 0, 0, 4)])
    with pytest.raises(zl.GGUFInvalidValue, match="NUL"):
        zl.GGUFReader(data)
    with zl.GGUFWriter(str(tmp_path / "w.gguf")) as w:
        with pytest.raises(zl.GGUFInvalidValue, match="NUL"):
            if where == "key":
                w.add(name, 1)
            else:
                w.add_tensor(name, np.ones(1, np.float32))


def test_empty_tensor_name_is_refused_by_reader_and_writer(tmp_path):
    data, _ = build([], [("", [1], 0, 0, 4)])
    with pytest.raises(zl.GGUFInvalidValue, match="empty"):
        zl.GGUFReader(data)
    with zl.GGUFWriter(str(tmp_path / "w.gguf")) as w:
        with pytest.raises(zl.GGUFInvalidValue):
            w.add_tensor("", np.ones(1, np.float32))


def test_nul_inside_string_values_is_kept(tmp_path):
    p = str(tmp_path / "w.gguf")
    with zl.GGUFWriter(p) as w:
        w.add("k", "a\0b")
        w.add_array("v", ["\0", "x\0"])
    with zl.GGUFReader(p) as r:
        r.validate()
        assert r.metadata["k"] == "a\0b"
        assert list(r.metadata["v"]) == ["\0", "x\0"]


@pytest.mark.parametrize("make, optional", [
    (lambda child: zl.ArenaAllocator(child), True),
    (lambda child: zl.GeneralPurposeAllocator(child), True),
    (lambda child: zl.FailingAllocator(child), False),
])
@pytest.mark.parametrize("child", [3, "heap", object(), np.zeros(2), zl.Tensor.zeros((2,))])
def test_allocator_constructors_check_their_child(make, optional, child):
    expected = "an Allocator or None" if optional else "an Allocator"
    with pytest.raises(zl.InvalidArgumentType, match=f"child must be {expected}, got {type(child).__name__}"):
        make(child)
    if not optional:
        with pytest.raises(zl.InvalidArgumentType, match="child must be an Allocator, got NoneType"):
            make(None)
    inner = zl.HeapAllocator()
    made = make(inner)
    assert made.child is inner
