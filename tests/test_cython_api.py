"""The Cython API as a product (docs/cython-api.md): the shipped example
(examples/cython_consumer) compiled as it is against the zigllama under test, and an
outside extension that checks the rule at the nogil boundary: status forms, checked
wrappers, pins that make misuse raise instead of crash, no GIL on a success path."""
import os
import shutil
import subprocess
import sys
import textwrap

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import outside_extension
import zigllama
from zigllama.errors import BufferInUse, GGUFError, GGUFMissingKey, IncompatibleShapes, UnsupportedDtype

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "cython_consumer")
Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    if not os.path.isdir(EXAMPLE):
        pytest.skip("examples/ ships in the source distribution, not in the wheel")
    build = tmp_path_factory.mktemp("consumer")
    files = {name: open(os.path.join(EXAMPLE, name)).read() for name in ("setup.py", "zl_consumer.pyx")}
    env = outside_extension.build(build, files)
    return outside_extension.load(build, "zl_consumer"), build, env


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A GGUF file with a Q4_K, a Q8_0 and an F32 tensor, written by the gguf package."""
    path = tmp_path_factory.mktemp("model") / "m.gguf"
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(str(path), "llama")
    weights = {}
    for name, qtype, shape in (("blk.0.q4k", Q.Q4_K, (6, 512)), ("blk.0.q8", Q.Q8_0, (5, 64)),
                               ("norm", Q.F32, (3, 8))):
        x = rng.standard_normal(shape).astype(np.float32)
        if qtype == Q.F32:
            w.add_tensor(name, x)
        else:
            raw = np.asarray(zigllama.quantize(x, int(qtype)))  # gguf cannot quantize Q4_K
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        weights[name] = qtype
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, weights


def test_example_fills_an_arena_tensor_without_the_gil(consumer):
    zl_consumer = consumer[0]
    arena = zigllama.ArenaAllocator()
    t = zl_consumer.arena_ramp(arena, 3, 5)
    assert type(t) is zigllama.Tensor and t.allocator is arena  # the public cimport is _core's class
    np.testing.assert_array_equal(np.asarray(t), np.arange(15, dtype=np.float32).reshape(3, 5) * 0.5)
    assert arena.exports == 0  # unpinned
    arena.reset()
    with pytest.raises(zigllama.UseAfterReset):
        t.get(0, 0)


@pytest.mark.parametrize("backend", ["scipy", "generic", "naive"])
def test_example_sgemm_through_the_vtable(consumer, backend):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 13)).astype(np.float32)
    b = rng.standard_normal((9, 13)).astype(np.float32)
    np.testing.assert_allclose(consumer[0].sgemm_abt(zigllama.get_blas(backend), a, b), a @ b.T,
                               rtol=1e-5, atol=1e-5)


def test_example_parallel_for(consumer):
    pool = zigllama.ThreadPool(2)
    try:
        pool.reset_stats()
        out = consumer[0].parallel_squares(pool, 10_000)
        assert pool.stats().parallel_fors == 1
    finally:
        pool.shutdown()
    np.testing.assert_array_equal(out, np.arange(10_000, dtype=np.float64) ** 2)
    np.testing.assert_array_equal(consumer[0].parallel_squares(None, 3), [0.0, 1.0, 4.0])


def test_example_dequantizes_by_name_bit_equal_to_gguf(consumer, model):
    path, weights = model
    reader = gguf.GGUFReader(str(path))
    theirs = {t.name: t for t in reader.tensors}
    with zigllama.GGUFReader(path) as r:
        for name, qtype in weights.items():
            ours = consumer[0].dequantize_by_name(r, name)
            expected = gguf.quants.dequantize(theirs[name].data, qtype)
            assert ours.shape == expected.shape
            assert ours.tobytes() == np.ascontiguousarray(expected, np.float32).tobytes(), name
        with pytest.raises(GGUFMissingKey, match="no tensor named 'missing'"):
            consumer[0].dequantize_by_name(r, "missing")
        with pytest.raises(GGUFMissingKey):
            consumer[0].dequantize_by_name(r, "norm\x00")  # a prefix match is no match
    with pytest.raises(GGUFError, match="closed"):
        consumer[0].dequantize_by_name(r, "norm")


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
def test_example_quantized_gemv_through_the_qgemm_slot(consumer, model, exact):
    path, weights = model
    x = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    with zigllama.GGUFReader(path) as r:
        y = consumer[0].qgemv_by_name(zigllama.get_blas("generic"), r, "blk.0.q4k", x, exact)
        w = consumer[0].dequantize_by_name(r, "blk.0.q4k")
        # The same product through the Python API, on the same kernels.
        expected = np.asarray(zigllama.qgemm(x, r.quantized("blk.0.q4k"), mode="exact" if exact else "fast"))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, w @ x, rtol=2e-2, atol=5e-2 if not exact else 1e-4)


RULES = textwrap.dedent("""
    from libc.stdint cimport int64_t
    from zigllama.allocator cimport Allocator, check_alloc, zl_alloc, zl_free
    from zigllama.blas_integration cimport BlasInterface, zl_blas, zl_qtensor
    from zigllama.gguf_format cimport GGUFReader, ZL_GGUF_E_NOTFOUND, ZL_GGUF_OK, gguf_find_tensor, zl_gguf_tensor_ref
    from zigllama.quantization cimport check_quant_status, dequantize_into
    from zigllama.tensor cimport (
        Tensor, ZL_TENSOR_EDTYPE, ZL_TENSOR_ESHAPE, ZL_TENSOR_OK, check_tensor_status, tensor_add_status,
        tensor_matmul_status, tensor_pin, tensor_unpin,
    )
    from zigllama.threading cimport pool_ptr, submit, wait, zl_pool, zl_task_group, zl_task_group_init
    from zigllama.tensor cimport zl_tensor_view


    def add_status(Tensor a, Tensor b, Tensor out):
        cdef int status
        with nogil:
            status = tensor_add_status(&a.view, &b.view, &out.view)
        return status


    def add_checked(Tensor a, Tensor b, Tensor out):
        cdef int status
        with nogil:
            status = tensor_add_status(&a.view, &b.view, &out.view)
            check_tensor_status(status, "add", &a.view, &b.view, &out.view)


    def codes():
        return ZL_TENSOR_OK, ZL_TENSOR_ESHAPE, ZL_TENSOR_EDTYPE


    def pin(Tensor t):
        tensor_pin(t)


    def matmul_pinned(Tensor a, Tensor b, Tensor out):
        # The documented way: pin the operands, then the nogil product.
        cdef int status
        tensor_pin(a)
        tensor_pin(b)
        tensor_pin(out)
        with nogil:
            status = tensor_matmul_status(&a.view, &b.view, &out.view)
        tensor_unpin(out)
        tensor_unpin(b)
        tensor_unpin(a)
        return status


    def alloc_and_free(Allocator a, size_t n):
        cdef void *p
        with nogil:
            p = check_alloc(zl_alloc(a.c, n, 64), n, 64)
            (<char *>p)[n - 1] = 1
            zl_free(a.c, p, n, 64)


    def dequantize_checked(int type_id, const unsigned char[::1] raw, float[::1] out, int nthreads):
        cdef int status
        with nogil:
            status = dequantize_into(type_id, &raw[0], &out[0], out.shape[0], nthreads)
            check_quant_status(status, type_id, out.shape[0])


    def q8_0_gemv_status(BlasInterface blas, const unsigned char[:, ::1] w, int64_t cols,
                         const float[::1] x, float[::1] y):
        cdef zl_qtensor q
        cdef zl_blas vt = blas.c
        cdef int status
        q.data = &w[0, 0]
        q.type = 8  # Q8_0
        q.rows = w.shape[0]
        q.cols = cols
        q.row_stride = w.shape[1]
        with nogil:
            status = vt.vtable.qgemm(vt.ctx, &q, 1, &x[0], cols, &y[0], q.rows, 1, 1)
        return status


    def unpin(Tensor t):
        tensor_unpin(t)


    NOTFOUND = ZL_GGUF_E_NOTFOUND


    def find(GGUFReader r, bytes name):
        cdef zl_gguf_tensor_ref ref
        cdef const char *p = name
        cdef size_t n = len(name)
        cdef int status
        r.pin()
        try:
            with nogil:
                status = gguf_find_tensor(r, p, n, &ref)
            if status != ZL_GGUF_OK:
                return status
            return (ref.index, ref.type, tuple(ref.ne[d] for d in range(ref.n_dims)), ref.nbytes,
                    <size_t>ref.data - <size_t>r.ctx.data)
        finally:
            r.unpin()


    def pin_reader(GGUFReader r):
        r.pin()


    def unpin_reader(GGUFReader r):
        r.unpin()


    ctypedef struct mm_job:
        const zl_tensor_view *a
        const zl_tensor_view *b
        zl_tensor_view *out
        int status

    cdef int mm_task(void *ctx) noexcept nogil:
        cdef mm_job *j = <mm_job *>ctx
        j.status = tensor_matmul_status(j.a, j.b, j.out)
        return 0


    def matmul_in_tasks_holding_the_gil(pool, Tensor a, Tensor b, list outs):
        '''Pool tasks run tensor_matmul while this thread waits for them WITHOUT
        releasing the GIL: a task that took the GIL would never finish.'''
        cdef zl_pool *p = pool_ptr(pool)
        cdef zl_task_group g
        cdef mm_job jobs[8]
        cdef Tensor o
        cdef int i
        assert len(outs) <= 8
        zl_task_group_init(&g)
        for i in range(len(outs)):
            o = outs[i]
            jobs[i].a = &a.view
            jobs[i].b = &b.view
            jobs[i].out = &o.view
            submit(p, &g, mm_task, &jobs[i])
        wait(p, &g)
        return [jobs[i].status for i in range(len(outs))]
""")

RULES_SETUP = textwrap.dedent("""
    import numpy
    import zigllama
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    setup(ext_modules=cythonize(
        [Extension("zl_rules", ["zl_rules.pyx"], include_dirs=[zigllama.get_include(), numpy.get_include()])],
        compiler_directives={"language_level": 3}))
""")


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    build = tmp_path_factory.mktemp("rules")
    env = outside_extension.build(build, {"zl_rules.pyx": RULES, "setup.py": RULES_SETUP})
    return outside_extension.load(build, "zl_rules"), build, env


def test_status_forms_return_named_codes_and_the_wrapper_raises(rules):
    zl_rules = rules[0]
    ok, eshape, edtype = zl_rules.codes()
    assert ok == 0 and eshape != 0 and edtype != 0 and eshape != edtype
    a = zigllama.Tensor.from_numpy(np.ones((2, 3), np.float32))
    out = zigllama.Tensor.zeros((2, 3), "float32")
    assert zl_rules.add_status(a, a, out) == ok
    np.testing.assert_array_equal(np.asarray(out), np.full((2, 3), 2.0, np.float32))
    wrong = zigllama.Tensor.zeros((4,), "float32")
    assert zl_rules.add_status(a, wrong, out) == eshape
    assert zl_rules.add_status(a, zigllama.Tensor.zeros((2, 3), "float64"), out) == edtype
    with pytest.raises(IncompatibleShapes, match=r"add: shapes \(2, 3\) and \(4,\)"):
        zl_rules.add_checked(a, wrong, out)
    with pytest.raises(UnsupportedDtype, match="float32 and float64"):
        zl_rules.add_checked(a, zigllama.Tensor.zeros((2, 3), "float64"), out)


NAMES = ["a", "ab", "abc", "b\u00e9", "blk.0.w", "blk.0.w2", "\u6f22\u5b57"]


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A GGUF file whose tensor names are prefixes of each other, and not ASCII."""
    path = tmp_path_factory.mktemp("named") / "names.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    for i, name in enumerate(NAMES):
        w.add_tensor(name, np.full((i + 1, 2), i, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@given(st.one_of(st.sampled_from(NAMES), st.text(max_size=12)))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_lookup_by_name_agrees_with_the_reader(rules, named, name):
    with zigllama.GGUFReader(named) as r:
        found = rules[0].find(r, name.encode())
        if name not in r.tensor_names():
            assert found == rules[0].NOTFOUND
            return
        info = r.tensor_info(name)
        index, ggml_type, ne, nbytes, offset = found
        assert r.tensors[index] is info
        assert (ggml_type, ne, nbytes, offset) == (int(info.ggml_type), tuple(info.ne), info.nbytes,
                                                   info.data_offset)


def test_misuse_of_pins_raises_instead_of_crashing(rules, model):
    zl_rules = rules[0]
    arena = zigllama.ArenaAllocator()
    t = zigllama.Tensor.zeros((4, 4), "float32", allocator=arena)
    zl_rules.pin(t)
    with pytest.raises(BufferInUse):
        arena.reset()          # the pinned memory stays valid
    assert np.asarray(t).sum() == 0
    zl_rules.unpin(t)
    arena.reset()
    with pytest.raises(zigllama.UseAfterReset):
        zl_rules.pin(t)        # a dead tensor cannot be pinned for nogil work
    with pytest.raises(zigllama.TensorError):
        zl_rules.pin(zigllama.Tensor.__new__(zigllama.Tensor))
    reader = zigllama.GGUFReader(model[0])
    zl_rules.pin_reader(reader)
    with pytest.raises(GGUFError, match="pinned"):
        reader.close()
    zl_rules.unpin_reader(reader)
    reader.close()
    with pytest.raises(GGUFError, match="closed"):
        zl_rules.pin_reader(reader)


def test_allocator_null_and_its_checked_wrapper(rules):
    rules[0].alloc_and_free(zigllama.HeapAllocator(), 4096)
    failing = zigllama.FailingAllocator(zigllama.HeapAllocator(), fail_index=0)
    with pytest.raises(zigllama.OutOfMemory, match="could not allocate 4096 bytes aligned to 64"):
        rules[0].alloc_and_free(failing, 4096)


def test_dequantize_into_status_and_its_checked_wrapper(rules):
    zl_rules = rules[0]
    raw = np.asarray(zigllama.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64), 8)).reshape(-1)
    out = np.empty(64, np.float32)
    zl_rules.dequantize_checked(8, raw, out, 1)
    assert out.tobytes() == gguf.quants.dequantize(raw, Q.Q8_0).tobytes()
    with pytest.raises(zigllama.QuantizationError, match="Q8_0: 63 elements are not a whole number of blocks of 32"):
        zl_rules.dequantize_checked(8, raw, out[:63], 1)
    with pytest.raises(zigllama.QuantizationError, match="ggml type 4: no such ggml type"):
        zl_rules.dequantize_checked(4, raw, out, 1)


def test_ctrl_c_in_the_default_pool_lookup_reaches_the_interpreter(rules, monkeypatch):
    # dequantize_into looks the default pool up (a Python call) for a call big enough
    # to split; a KeyboardInterrupt raised there cannot cross the nogil C function,
    # and used to be swallowed. Now the call finishes on the caller and the
    # interpreter raises the interrupt at its next check.
    import zigllama._core.threading as threading_module

    calls = []

    def interrupted():
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading_module, "default_pool", interrupted)
    n = 1 << 20                                       # 4 MiB of output: split
    raw = np.zeros(n // 32 * 34, np.uint8)            # Q8_0 zeros
    out = np.full(n, np.nan, np.float32)
    with pytest.raises(KeyboardInterrupt):
        rules[0].dequantize_checked(8, raw, out, 2)
        for _ in range(1000):
            pass
    assert calls == [1]
    assert not out.any()                              # every block decoded, on the caller


def test_qgemm_slot_works_without_importing_qmatmul(rules):
    # A fresh interpreter where nothing imports zigllama._core.qmatmul (the vtable's
    # qgemm kernels live there): every interface get_blas hands out has the slot
    # working anyway, where it used to return ZL_BLAS_ENOSYS.
    _, build, env = rules
    code = textwrap.dedent("""
        import sys, numpy as np, zigllama, zl_rules
        assert "zigllama._core.qmatmul" not in sys.modules
        x = np.linspace(-1, 1, 64, dtype=np.float32)
        w = np.linspace(-2, 2, 3 * 64, dtype=np.float32).reshape(3, 64)
        raw = np.asarray(zigllama.quantize(w, 8))
        y = np.zeros(3, np.float32)
        status = zl_rules.q8_0_gemv_status(zigllama.get_blas("naive"), raw, 64, x, y)
        assert status == 0, status
        assert np.allclose(y, np.asarray(zigllama.dequantize(raw, 8, (3, 64))) @ x, rtol=1e-5, atol=1e-5), y
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=build, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_a_pinned_nogil_matmul_takes_the_package_backend_in_a_fresh_process(rules):
    # A Cython caller's first product in a fresh interpreter, before any Python-level
    # product: the pin wires the package, so the bits are the default backend's
    # (those of Tensor.matmul), not the plain loops' that stand in before the wiring.
    _, build, env = rules
    code = textwrap.dedent("""
        import numpy as np, zigllama, zl_rules
        rng = np.random.default_rng(5)
        a = rng.standard_normal((96, 200), dtype=np.float32)
        b = rng.standard_normal((200, 80), dtype=np.float32)
        ta, tb = zigllama.Tensor.from_numpy(a), zigllama.Tensor.from_numpy(b)
        out = zigllama.Tensor.zeros((96, 80), dtype=np.float32)
        assert zl_rules.matmul_pinned(ta, tb, out) == 0
        expected = np.asarray(zigllama.get_blas().gemm(a, b))
        loops = np.asarray(zigllama.get_blas("naive").gemm(a, b))
        assert not np.array_equal(loops, expected), "the shapes must tell the backends apart"
        assert np.asarray(out).tobytes() == expected.tobytes()
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=build, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout[-500:] + result.stderr[-2000:]


def test_tensor_matmul_takes_no_gil_in_pool_tasks(rules):
    # Run in a child: before the fix a task's matmul of 64**3 or more took the GIL
    # to read the thread setting, and this would hang, not fail.
    _, build, env = rules
    code = textwrap.dedent("""
        import numpy as np, zigllama, zl_rules
        for backend in ("scipy", "generic"):
            zigllama._core.blas_integration.set_tensor_backend(backend)
            rng = np.random.default_rng(0)
            a = zigllama.Tensor.from_numpy(rng.standard_normal((96, 96)).astype(np.float32))
            b = zigllama.Tensor.from_numpy(rng.standard_normal((96, 96)).astype(np.float32))
            a @ b  # a Python-level product first: the thread setting is read into C state
            outs = [zigllama.Tensor.zeros((96, 96), "float32") for _ in range(6)]
            pool = zigllama.ThreadPool(2)
            assert zl_rules.matmul_in_tasks_holding_the_gil(pool, a, b, outs) == [0] * 6
            pool.shutdown()
            expected = np.asarray(a) @ np.asarray(b)
            for o in outs:
                np.testing.assert_allclose(np.asarray(o), expected, rtol=1e-4, atol=1e-4)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=build, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_no_gil_on_the_success_path_of_the_tensor_matmul_backend():
    # The source-level form of the test above: the backend's nogil function has no
    # `with gil` block at all (errors are statuses, raised by check_tensor_status).
    source = open(os.path.join(ROOT, "zigllama", "_core", "blas_integration.pyx")).read() \
        if os.path.exists(os.path.join(ROOT, "zigllama", "_core", "blas_integration.pyx")) else None
    if source is None:
        pytest.skip("needs the source tree")
    body = source.split("cdef int _tensor_matmul(", 1)[1].split("\ndef ", 1)[0].split("\ncdef ", 1)[0]
    assert "noexcept nogil" in body.splitlines()[0]
    assert "with gil" not in body


# Every nogil function that takes the GIL, and why the rule allows it.
GIL_TAKERS = {
    # the checked wrappers, on their error path (check_tensor_status and the like
    # call a `with gil` raiser only when the status is not 0)
    "raise_tensor_status": "error path", "raise_quant_status": "error path",
    "raise_gguf_status": "error path", "check_blas_status": "error path", "check_pool_status": "error path",
    "raise_alloc_failure": "error path (check_alloc of a NULL)",
    "lookup_default_pool": "finding the default pool (a Python object), outside pool tasks",
    "release_pool": "dropping the default pool's reference taken by lookup_default_pool",
    "_run_python_task": "a Python callable submitted to the pool",
    "_cancel_python_task": "a Python callable submitted to the pool",
    "delete_legacy": "a DLPack deleter drops the exported Tensor",
    "delete_versioned": "a DLPack deleter drops the exported Tensor",
}


def test_the_gil_is_taken_only_where_the_rule_allows():
    import glob
    import re

    sources = sorted(glob.glob(os.path.join(ROOT, "zigllama", "_core", "*.pyx")))
    if not sources:
        pytest.skip("needs the source tree")
    takers = {}
    for path in sources:
        text = open(path).read()
        for chunk in re.split(r"(?m)^(?=(?:cdef|cpdef|def|class|ctypedef|@)\b)", text):
            head = re.match(r"cdef\s[^(]*?(\w+)\s*\((.*?)\)([^:\n]*):", chunk, re.S)
            if head is None:
                continue
            qualifiers = head.group(3)
            if ("nogil" in qualifiers and "with gil" in chunk) or "with gil" in qualifiers:
                takers[head.group(1)] = os.path.basename(path)
    assert "_tensor_matmul" not in takers
    assert set(takers) == set(GIL_TAKERS), {n: takers.get(n) for n in set(takers) ^ set(GIL_TAKERS)}


def test_every_core_pxd_has_a_public_name_beside_the_package():
    package = os.path.dirname(os.path.abspath(zigllama.__file__))
    core = {f[:-4] for f in os.listdir(os.path.join(package, "_core")) if f.endswith(".pxd")}
    public = {f[:-4] for f in os.listdir(package) if f.endswith(".pxd")}
    assert core and core == public
    for name in public:
        with open(os.path.join(package, f"{name}.pxd")) as f:
            assert f"from zigllama._core.{name} cimport *" in f.read(), name
