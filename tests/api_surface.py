"""Every closable object of the package and everything that can be called on it.

The objects come from factories (one per kind: reader, metadata, string array, loader,
map, pool, allocator, arena tensor, ...); the members are not listed by hand but read
from each object's type (`public_members`), so a method added tomorrow is tested
tomorrow. Arguments are guessed from parameter names (`arguments_for`); a call whose
guess is wrong raises the same on an open object, which `call_outcome` records so the
tests can tell a wrong guess from a real misuse error.
"""
import inspect
import os

import numpy as np

import zigllama as zl

# Members that end the object's life or wait for work: the tests call them on purpose.
LIFETIME = {"close", "shutdown", "reset", "__exit__", "__enter__", "__del__", "free", "join"}
# Dunders worth calling on a closed object (the rest are object plumbing).
DUNDERS = ("__len__", "__iter__", "__contains__", "__getitem__", "__repr__", "__eq__", "__bool__",
           "__array__", "__buffer__", "__hash__", "__str__")


def write_model(path):
    """A small model with every kind of value the reader hands out lazily."""
    with zl.GGUFWriter(path) as w:
        w.add("general.architecture", "llama")
        w.add("general.name", "tiny")
        w.add("llama.context_length", 64, zl.GGUFValueType.UINT32)
        w.add("llama.embedding_length", 8, zl.GGUFValueType.UINT32)
        w.add("llama.block_count", 1, zl.GGUFValueType.UINT32)
        w.add("llama.attention.head_count", 2, zl.GGUFValueType.UINT32)
        w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "héllo", "x" * 300])
        w.add_array("tokenizer.ggml.scores", np.array([0.0, -1.0, -2.0, -3.0], np.float32))
        w.add_array("nested", [[1, 2], [3]])
        w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
        w.add_tensor("blk.0.q.weight", zl.quantize(np.ones((2, 32), np.float32), "Q8_0"), zl.GGMLType.Q8_0)
    return path


# Values for parameters, by name: whatever an open object accepts.
ARGUMENTS = {
    "key": "general.architecture", "name": "token_embd.weight", "index": 0, "i": 0,
    "offset": 0, "count": 4, "length": 4, "size": 64, "nbytes": 64, "n": 2, "shape": (2, 2),
    "dtype": "float32", "default": None, "element_type": None, "fn": abs, "func": abs,
    "alignment": 16, "advice": "normal", "other": None, "path": None, "value": 1.0,
    "threads": 1, "out": None, "block": None, "data": b"\0" * 16, "x": 1, "items": [1, 2],
    "iterable": [1, 2], "item": 1, "task": abs, "args": (), "timeout": 1.0, "key_or_index": 0,
}


def arguments_for(member, obj):
    """Positional arguments for a call of `member` (a bound method): the required
    parameters, filled from ARGUMENTS (unknown names get 0)."""
    try:
        sig = inspect.signature(member)
    except (TypeError, ValueError):
        return ()
    args = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if p.default is not p.empty:
            continue
        if p.name == "fn" or p.name == "func":
            args.append(abs)
        else:
            args.append(ARGUMENTS.get(p.name, 0))
    if getattr(member, "__name__", "") == "submit" and args:
        args = [abs, -1]
    return tuple(args)


def public_members(obj):
    """(name, kind) of every public method/property of obj's type, plus the dunders
    that mean something for data (len, iteration, indexing, repr, ...)."""
    out = []
    t = type(obj)
    for name in sorted(set(dir(t))):
        if name.startswith("_") and name not in DUNDERS:
            continue
        if name in LIFETIME:
            continue
        try:
            attr = inspect.getattr_static(t, name)
        except AttributeError:
            continue
        if name == "__hash__" and attr is None:
            continue
        if isinstance(attr, property) or type(attr).__name__ in ("getset_descriptor", "member_descriptor"):
            out.append((name, "property"))
        elif callable(attr) or isinstance(attr, (staticmethod, classmethod)):
            if isinstance(attr, (staticmethod, classmethod)) or type(attr).__name__ == "staticmethod":
                continue  # constructors: nothing to do with this object's life
            out.append((name, "method"))
    return out


def call(obj, name, kind):
    """Use one member; returns the result (forcing lazy iteration)."""
    if kind == "property":
        return getattr(obj, name)
    member = getattr(obj, name)
    if name == "__getitem__":
        key = ARGUMENTS["key"] if isinstance(obj, (zl._core.gguf_format.Metadata,)) else 0
        return member(key)
    if name == "__contains__":
        return member(ARGUMENTS["key"])
    if name == "__eq__":
        return member(obj)
    if name == "__iter__":
        return list(member())
    if name == "__array__":
        return member()
    return member(*arguments_for(member, obj))


def call_outcome(obj, name, kind):
    """'ok', or the exception's type."""
    try:
        result = call(obj, name, kind)
        if inspect.isgenerator(result):
            list(result)
        return "ok"
    except BaseException as exc:  # noqa: B902 - the tests classify every outcome
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return type(exc)


# ---- the closable objects ---------------------------------------------------------

class Subject:
    """A closable object, a way to make a fresh one, and how its life ends."""

    def __init__(self, kind, make, end):
        self.kind = kind
        self.make = make    # tmpdir -> (object, owner): owner is what `end` acts on
        self.end = end      # owner -> None: close / shutdown / reset

    def __repr__(self):
        return self.kind


def _reader(d):
    r = zl.GGUFReader(write_model(os.path.join(d, "m.gguf")))
    return r, r


def _from_reader(get):
    def make(d):
        r = zl.GGUFReader(write_model(os.path.join(d, "m.gguf")))
        return get(r), r
    return make


def _loader(d):
    m = zl.GGUFModelLoader(write_model(os.path.join(d, "m.gguf")))
    return m, m


def _file_map(d):
    m = zl.MemoryMap.from_file(write_model(os.path.join(d, "m.gguf")))
    return m, m


def _anon_map(d):
    m = zl.MemoryMap.anonymous(4096)
    return m, m


def _mapper(d):
    f = zl.ModelFileMapper()
    f.open("m", write_model(os.path.join(d, "m.gguf")))
    return f, f


def _pool(d):
    p = zl.ThreadPool(2)
    return p, p


def _allocator(cls):
    def make(d):
        if cls is zl.FixedBufferAllocator:
            a = cls(bytearray(4096))
        elif cls is zl.FailingAllocator:
            a = cls(zl.HeapAllocator(), fail_index=100)
        else:
            a = cls()
        return a, a
    make.__name__ = cls.__name__
    return make


def _arena_tensor(d):
    a = zl.ArenaAllocator()
    t = zl.Tensor.empty((4, 4), "float32", allocator=a)
    t.fill(1.0)
    return t, a


def _arena_block(d):
    a = zl.ArenaAllocator()
    return a.alloc(64), a


def _map_tensor(d):
    m = zl.MemoryMap.anonymous(4096)
    return m.tensor(0, (4, 4)), m


def _writer(d):
    w = zl.GGUFWriter(os.path.join(d, "w.gguf"))
    w.add("general.architecture", "llama")
    return w, w


def _close(o):
    o.close()


def _shutdown(o):
    o.shutdown()


def _reset(o):
    o.reset(retain_capacity=False)


SUBJECTS = [
    Subject("GGUFReader", _reader, _close),
    Subject("Metadata", _from_reader(lambda r: r.metadata), _close),
    Subject("StringArray", _from_reader(lambda r: r.metadata["tokenizer.ggml.tokens"]), _close),
    Subject("NestedArray", _from_reader(lambda r: r.metadata["nested"]), _close),
    Subject("TensorInfo", _from_reader(lambda r: r.tensors[0]), _close),
    Subject("reader Tensor", _from_reader(lambda r: r.tensor("token_embd.weight")), _close),
    Subject("GGUFModelLoader", _loader, _close),
    Subject("MemoryMap(file)", _file_map, _close),
    Subject("MemoryMap(anonymous)", _anon_map, _close),
    Subject("ModelFileMapper", _mapper, _close),
    Subject("map Tensor", _map_tensor, _close),
    Subject("ThreadPool", _pool, _shutdown),
    Subject("ArenaAllocator", _allocator(zl.ArenaAllocator), _close),
    Subject("FixedBufferAllocator", _allocator(zl.FixedBufferAllocator), _close),
    Subject("GeneralPurposeAllocator", _allocator(zl.GeneralPurposeAllocator), _close),
    Subject("PageAllocator", _allocator(zl.PageAllocator), _close),
    Subject("HeapAllocator", _allocator(zl.HeapAllocator), _close),
    Subject("arena Tensor", _arena_tensor, _reset),
    Subject("arena Block", _arena_block, _reset),
    Subject("GGUFWriter", _writer, _close),
]


def cases(tmpdir):
    """(subject, member name, kind) for every member of every subject."""
    out = []
    for s in SUBJECTS:
        obj, owner = s.make(tmpdir)
        for name, kind in public_members(obj):
            out.append((s, name, kind))
        _end_quietly(s, owner)
    return out


def _end_quietly(subject, owner):
    try:
        subject.end(owner)
    except zl.ZigLlamaError:
        pass


# Objects whose memory a buffer export pins: dropped in a cycle, the export must end.
def exporters():
    """(kind, make exporter, make holders of an export) for every object of the package
    that takes a buffer export of something else."""
    def reader_over(src):
        return [zl.GGUFReader(src)]

    def reader_views(src):
        r = zl.GGUFReader(src)
        return [r, r.metadata, r.tensor("token_embd.weight"), r.raw_tensor("blk.0.q.weight"),
                r.metadata["tokenizer.ggml.scores"], r.metadata["tokenizer.ggml.tokens"]]

    def map_views(src):
        return [src.view(0, 8), src.tensor(0, (2,)), memoryview(src), np.asarray(src)]

    def tensor_over(src):
        return [zl.Tensor.from_buffer(src, "uint8" if False else "int8", (8,))]

    def fixed_over(src):
        return [zl.FixedBufferAllocator(src)]

    return [
        ("GGUFReader over a MemoryMap", "map", reader_over),
        ("GGUFReader and its views over a MemoryMap", "map", reader_views),
        ("GGUFReader over a bytearray", "bytearray", reader_over),
        ("MemoryMap views", "map", map_views),
        ("Tensor.from_buffer over a bytearray", "bytearray", tensor_over),
        ("FixedBufferAllocator over a bytearray", "plain-bytearray", fixed_over),
    ]
