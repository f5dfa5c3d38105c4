"""Hostile GGUF files, built byte by byte, and a runner that opens them under an
address-space limit. Shared by test_gguf_hostile.py and the fuzz target."""
import json
import os
import pickle
import struct
import subprocess
import sys

Q_MUTATIONS = (0, 2**31, 2**63, 2**64 - 1)
I_MUTATIONS = (0, 5, 2**31, 2**32 - 1)

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B",
        U64: "Q", I64: "q", F64: "d"}


class Raw:
    """Bytes under construction, remembering where each length/count field is."""

    def __init__(self, e="<"):
        self.e = e
        self.buf = bytearray()
        self.fields = []  # (label, position, struct format)

    def put(self, fmt, v, label=None):
        if label:
            self.fields.append((label, len(self.buf), fmt))
        self.buf += struct.pack(self.e + fmt, v)

    def string(self, s, label):
        b = s if isinstance(s, bytes) else s.encode()
        self.put("Q", len(b), label + ".len")
        self.buf += b

    def value(self, t, v, label):
        if t == STR:
            self.string(v, label)
        elif t == ARR:
            et, items = v
            self.put("I", et)
            self.put("Q", len(items), label + ".count")
            for j, x in enumerate(items):
                self.value(et, x, f"{label}[{j}]")
        else:
            self.put(_FMT[t], v)


def build(kvs, tensors, *, e="<", version=3, alignment=32, n_kv=None, n_tensors=None, data_size=None):
    """A GGUF file. kvs: (key, type, value); an array value is (element type, items).
    tensors: (name, ne, ggml type, offset, nbytes). `alignment` only places the data
    section (write general.alignment yourself). Returns (bytes, fields)."""
    r = Raw(e)
    r.buf += b"GGUF"
    r.put("I", version)
    r.put("Q", len(tensors) if n_tensors is None else n_tensors, "header.n_tensors")
    r.put("Q", len(kvs) if n_kv is None else n_kv, "header.n_kv")
    for i, (k, t, v) in enumerate(kvs):
        r.string(k, f"kv[{i}].key")
        r.put("I", t)
        r.value(t, v, f"kv[{i}].value")
    for i, (name, ne, gt, off, nbytes) in enumerate(tensors):
        r.string(name, f"tensor[{i}].name")
        r.put("I", len(ne), f"tensor[{i}].n_dims")
        for d, n in enumerate(ne):
            r.put("Q", n, f"tensor[{i}].ne[{d}]")
        r.put("I", gt)
        r.put("Q", off, f"tensor[{i}].offset")
    r.buf += bytes(-len(r.buf) % alignment)
    if data_size is None:
        data_size = max((off + nbytes for _, _, _, off, nbytes in tensors), default=0)
    r.buf += bytes(i % 251 for i in range(data_size))
    return bytes(r.buf), r.fields


# A small valid file touching every structure: scalars, strings, arrays of numbers,
# strings and arrays, general.alignment, and tensors of a plain and a block type.
BASE_KVS = [
    ("general.architecture", STR, "llama"),
    ("general.alignment", U32, 64),
    ("llama.context_length", U32, 4096),
    ("flag", BOOL, 1),
    ("tokens", ARR, (STR, ["<s>", "", "wörd"])),
    ("scores", ARR, (F32, [0.5, -1.0])),
    ("bools", ARR, (BOOL, [0, 1])),
    ("nested", ARR, (ARR, [(U8, [1, 2]), (STR, ["x"])])),
    ("pi", F64, 3.25),
]
BASE_TENSORS = [
    ("a", [4, 2], 0, 0, 32),          # F32 2x4
    ("q", [32], 8, 64, 34),           # Q8_0, one block
    ("h", [8], 1, 128, 16),           # F16
]


def base_file(e="<"):
    return build(BASE_KVS, BASE_TENSORS, e=e, alignment=64)


def patched(data, pos, fmt, value, e="<"):
    b = bytearray(data)
    b[pos:pos + struct.calcsize(fmt)] = struct.pack(e + fmt, value)
    return bytes(b)


RUNNER = r"""
import json, pickle, resource, sys
import numpy as np
from zigllama import GGUFReader, GGUFError

def vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

def deep(v):
    if hasattr(v, "dtype"):
        np.asarray(v).tobytes()
    elif hasattr(v, "__len__") and not isinstance(v, str):
        for x in v:
            deep(x)

def touch(data):
    r = GGUFReader(data)
    try:
        for k in r.metadata:
            deep(r.metadata[k])
        for t in r.tensors:
            np.asarray(r.tensor(t.name)).tobytes()
        r.validate()
    finally:
        r.close()

cases = pickle.load(open(sys.argv[1], "rb"))
headroom = int(sys.argv[2])
# Address space: what the interpreter has now plus a little; an allocation sized
# from a hostile count would fail with MemoryError instead of succeeding.
resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + headroom, resource.RLIM_INFINITY))
try:
    bytearray(4 * headroom)
    out = [("address-space limit", "not enforced", "", "")]
except MemoryError:
    out = []
for label, data in cases:
    try:
        touch(data)
        out.append((label, "ok", "", ""))
    except GGUFError as e:
        out.append((label, "GGUFError", type(e).__name__, str(e)))
    except BaseException as e:
        out.append((label, "other", type(e).__name__, str(e)[:300]))
print(json.dumps(out))
"""


def run_cases(cases, tmpdir, headroom=128 << 20, timeout=300):
    """Open every (label, bytes) case in one subprocess under RLIMIT_AS; returns
    {label: (outcome, error class, message)}. A crash or hang fails loudly."""
    path = os.path.join(tmpdir, "cases.pkl")
    with open(path, "wb") as f:
        pickle.dump(cases, f)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", RUNNER, path, str(headroom)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert p.returncode == 0, f"the runner died (status {p.returncode}): {p.stderr[-2000:]}"
    results = {label: tuple(rest) for label, *rest in json.loads(p.stdout)}
    assert "address-space limit" not in results, "RLIMIT_AS did not limit the runner"
    return results
