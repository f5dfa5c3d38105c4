"""A stateful fuzz of the API: hypothesis interleaves open / read / load / validate /
close of readers and maps, arena allocations and resets, pool submits and shutdowns,
some of them on background threads racing the main one. After every step: nothing
crashed, nothing hung, and every exception raised was one of the package's.

ZIGLLAMA_STATEFUL_EXAMPLES sets the number of runs (the suite runs a short one).
"""
import os
import tempfile
import threading

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

import zigllama as zl
from api_surface import write_model

EXAMPLES = int(os.environ.get("ZIGLLAMA_STATEFUL_EXAMPLES", "25"))
_DIR = tempfile.mkdtemp(prefix="zl-stateful-")
MODEL = write_model(os.path.join(_DIR, "m.gguf"))
with open(MODEL, "rb") as _f:
    MODEL_BYTES = _f.read()
KEYS = ["general.architecture", "general.name", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "nested",
        "llama.context_length", "missing"]
TENSORS = ["token_embd.weight", "blk.0.q.weight", "missing"]


def _ours(fn):
    """Run fn; a ZigLlamaError is an expected outcome, anything else fails the run."""
    try:
        return fn()
    except zl.ZigLlamaError:
        return None


def _read_everything(r):
    md = r.metadata
    for k in KEYS:
        v = _ours(lambda: md[k])
        if isinstance(v, (zl._core.gguf_format.LazyArray,)):
            _ours(v.tolist)
        _ours(lambda: md.get_str(k))
        _ours(lambda: md.get_int(k))
        _ours(lambda: md.value_type(k))
        _ours(lambda: md.offset(k))


class APIMachine(RuleBasedStateMachine):
    readers = Bundle("readers")
    maps = Bundle("maps")
    arenas = Bundle("arenas")
    tensors = Bundle("tensors")
    pools = Bundle("pools")

    def __init__(self):
        super().__init__()
        self.threads = []
        self.failures = []
        self.owned = []

    def _background(self, fn):
        def run():
            try:
                fn()
            except zl.ZigLlamaError:
                pass
            except BaseException as exc:  # noqa: B902 - recorded, then failed on
                self.failures.append(repr(exc))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    # ---- readers and maps -----------------------------------------------------------

    @rule(target=maps)
    def open_map(self):
        m = zl.MemoryMap.from_file(MODEL)
        self.owned.append(m)
        return m

    @rule(target=readers, source=st.sampled_from(["path", "bytes", "bytearray"]))
    def open_reader(self, source):
        r = zl.GGUFReader(MODEL if source == "path" else
                          MODEL_BYTES if source == "bytes" else bytearray(MODEL_BYTES))
        self.owned.append(r)
        return r

    @rule(target=readers, m=maps)
    def open_reader_over_map(self, m):
        r = _ours(lambda: zl.GGUFReader(m))
        if r is not None:
            self.owned.append(r)
        return r

    @rule(r=readers, background=st.booleans())
    def read(self, r, background):
        if r is None:
            return
        if background:
            self._background(lambda: _read_everything(r))
        else:
            _read_everything(r)

    @rule(r=readers, name=st.sampled_from(TENSORS), threads=st.sampled_from([1, 2]), background=st.booleans())
    def load(self, r, name, threads, background):
        if r is None:
            return
        fn = lambda: _ours(lambda: np.asarray(r.load(name, threads=threads)).sum())  # noqa: E731
        self._background(fn) if background else fn()

    @rule(r=readers, background=st.booleans())
    def validate(self, r, background):
        if r is None:
            return
        self._background(r.validate) if background else _ours(r.validate)

    @rule(r=readers, background=st.booleans())
    def close_reader(self, r, background):
        if r is None:
            return
        self._background(r.close) if background else _ours(r.close)

    @rule(m=maps, background=st.booleans())
    def close_map(self, m, background):
        self._background(m.close) if background else _ours(m.close)

    @rule(m=maps)
    def view_map(self, m):
        v = _ours(lambda: m.view(0, 16))
        if v is not None:
            assert bytes(v[:4]) == b"GGUF"

    # ---- arenas and tensors -----------------------------------------------------------

    @rule(target=arenas)
    def new_arena(self):
        a = zl.ArenaAllocator()
        self.owned.append(a)
        return a

    @rule(target=tensors, a=arenas, n=st.integers(1, 8))
    def alloc_tensor(self, a, n):
        t = _ours(lambda: zl.Tensor.empty((n, n), "float32", allocator=a))
        if t is not None:
            _ours(lambda: t.fill(1.0))
        return t

    @rule(a=arenas)
    def reset_arena(self, a):
        _ours(lambda: a.reset())

    @rule(t=tensors, backend=st.sampled_from(["scipy", "generic", "naive"]))
    def gemm(self, t, backend):
        if t is None:
            return
        out = _ours(lambda: zl.get_blas(backend).gemm(t, t))
        if out is not None:
            n = np.asarray(t).shape[0]
            assert np.allclose(np.asarray(out), np.asarray(t) @ np.asarray(t)) or n == 0

    # ---- pools -------------------------------------------------------------------------

    @rule(target=pools)
    def new_pool(self):
        p = zl.ThreadPool(2)
        self.owned.append(p)
        return p

    @rule(p=pools, x=st.integers(-5, 5))
    def submit(self, p, x):
        f = _ours(lambda: p.submit(abs, x))
        if f is not None:
            try:
                assert f.result(timeout=60) == abs(x)
            except zl.ZigLlamaError:
                pass
            except Exception as exc:  # a pool shut down under the future: cancelled
                assert type(exc).__name__ == "CancelledError", repr(exc)

    @rule(p=pools, background=st.booleans())
    def shutdown(self, p, background):
        self._background(p.shutdown) if background else _ours(p.shutdown)

    # ---- after every step --------------------------------------------------------------

    @invariant()
    def only_package_errors(self):
        assert not self.failures, self.failures

    def teardown(self):
        for t in self.threads:
            t.join(60)
            assert not t.is_alive(), "a background call hung"
        assert not self.failures, self.failures
        for o in reversed(self.owned):
            try:
                if isinstance(o, zl.ThreadPool):
                    o.shutdown()
                else:
                    o.close()
            except zl.ZigLlamaError:
                pass


APIMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None)
TestAPIStateful = APIMachine.TestCase
