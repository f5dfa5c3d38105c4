"""MemoryMap (Zig twin: memory_mapping.zig): mapping, views, lifetime, paging, errors."""
import errno
import gc
import io
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import outside_extension
import zigllama as zl
import zigllama._show_config
from zigllama._core.memory_mapping import MappingStats, MappingStrategy

PAGE = os.sysconf("SC_PAGE_SIZE")


def write_uncached(path, data):
    """Write ``data`` to ``path`` and drop it from the page cache, so that what a
    map later finds resident is what the map itself brought in."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


def is_mapped(path):
    with open("/proc/self/maps") as f:
        return any(line.rstrip().endswith(str(path)) for line in f)


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(bytes(range(256)) * 64)
    return path


@pytest.fixture(scope="module")
def floats_file(tmp_path_factory):
    """Read-only in every test that uses it (shared ones write their own copy)."""
    path = tmp_path_factory.mktemp("floats") / "floats.bin"
    path.write_bytes(np.arange(4096, dtype="<f4").tobytes())
    return path


# -- mapping a file -------------------------------------------------------------


@pytest.mark.parametrize("as_path", [str, os.fsencode, lambda p: p])
def test_from_file_maps_the_bytes_zero_copy(small_file, as_path):
    with zl.MemoryMap.from_file(as_path(small_file)) as m:
        assert len(m) == m.size == 256 * 64
        assert not m.writable and not m.shared and not m.anonymous_memory
        assert m.protection == zl.Protection.READ
        view = memoryview(m)
        assert view.readonly
        assert bytes(view) == small_file.read_bytes()
        assert m.exports == 1
        view.release()
        assert m.exports == 0
        assert is_mapped(small_file)
    assert not is_mapped(small_file)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with zl.MemoryMap.from_file(path) as m:
        assert m.size == 0
        assert bytes(m) == b""
        assert m.view(0, 0, "float64").shape == (0,)
        assert m.view(0, None, "float32").shape == (0,)
        with pytest.raises(zl.InvalidMappingArgument):
            m.view(0, 1)
        m.prefault()
        m.advise("willneed")
        m.lock()
        assert m.stats() == MappingStats(0, PAGE, 0, 0, True)
        m.unlock()


@pytest.mark.parametrize("kind", ["missing", "directory", "device"])
def test_unmappable_paths_name_the_path(tmp_path, kind):
    path = {"missing": str(tmp_path / "nope"), "directory": str(tmp_path), "device": "/dev/null"}[kind]
    with pytest.raises(zl.MappingError) as info:
        zl.MemoryMap.from_file(path)
    assert info.value.filename == path
    assert info.value.errno == {"missing": errno.ENOENT, "directory": errno.EISDIR, "device": errno.ENODEV}[kind]
    assert path in str(info.value)


def test_constructor_and_pickle_are_refused(small_file):
    with pytest.raises(TypeError, match="from_file"):
        zl.MemoryMap()
    with zl.MemoryMap.from_file(small_file) as m:
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(m)


# -- protection and flags ---------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("r", zl.Protection.READ),
        ("rw", zl.Protection.READ | zl.Protection.WRITE),
        ("rx", zl.Protection.READ | zl.Protection.EXEC),
        ("read|write", zl.Protection.READ | zl.Protection.WRITE),
        ("READ, exec", zl.Protection.READ | zl.Protection.EXEC),
        (zl.Protection.READ | zl.Protection.WRITE, zl.Protection.READ | zl.Protection.WRITE),
        (3, zl.Protection.READ | zl.Protection.WRITE),
    ],
)
def test_protection_spellings(small_file, spec, expected):
    with zl.MemoryMap.from_file(small_file, protection=spec) as m:
        assert m.protection == expected
        assert m.writable == bool(expected & zl.Protection.WRITE)


@pytest.mark.parametrize("spec", ["w", "x", "", "rq", "read|delete", 8, -1, zl.Protection.WRITE])
def test_bad_protection(small_file, spec):
    with pytest.raises(zl.InvalidMappingArgument):
        zl.MemoryMap.from_file(small_file, protection=spec)


@pytest.mark.parametrize("spec", [None, 1.0, True, b"r"])
def test_protection_of_the_wrong_type(small_file, spec):
    with pytest.raises(TypeError):
        zl.MemoryMap.from_file(small_file, protection=spec)


@pytest.mark.parametrize("spec", ["private|shared", "sideways", zl.MapFlags.PRIVATE | zl.MapFlags.SHARED, 16])
def test_bad_flags(small_file, spec):
    with pytest.raises(zl.InvalidMappingArgument):
        zl.MemoryMap.from_file(small_file, flags=spec)


def test_writes_to_a_read_only_map_raise(small_file):
    with zl.MemoryMap.from_file(small_file) as m:
        array = m.view(0, 16)
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
        view = memoryview(m)
        with pytest.raises(TypeError):
            view[0] = 1
        with pytest.raises(TypeError, match="read-write"):
            io.BytesIO(b"x").readinto(m)  # asks for a writable buffer: refused
        with pytest.raises(ValueError):
            array.flags.writeable = True
        del array, view
    assert small_file.read_bytes()[0] == 0


def test_private_writable_map_keeps_writes_from_the_file(small_file):
    original = small_file.read_bytes()
    with zl.MemoryMap.from_file(small_file, "rw", "private") as m:
        array = m.view(0, m.size)
        array[:4] = 7
        assert bytes(m)[:4] == b"\x07" * 4
        with pytest.raises(zl.MappingError, match="private map"):
            m.sync()
        del array
    assert small_file.read_bytes() == original


def test_shared_writable_map_writes_the_file(tmp_path):
    path = tmp_path / "shared.bin"
    path.write_bytes(np.arange(4096, dtype="<f4").tobytes())
    with zl.MemoryMap.from_file(path, "rw", "shared") as m:
        assert m.shared and m.writable
        m.view(8, 2, "<f4")[:] = [-1.5, 2.5]
        m.sync(8, 8)
        m.sync(asynchronous=True)
    data = np.fromfile(path, "<f4")
    assert data[2] == -1.5 and data[3] == 2.5 and data[4] == 4.0


def test_sync_refuses_maps_without_a_file_to_write(small_file):
    with zl.MemoryMap.from_file(small_file, "r", "shared") as m:
        with pytest.raises(zl.MappingError, match="read-only map"):
            m.sync()
    with zl.MemoryMap.anonymous(PAGE, flags="shared") as a:
        with pytest.raises(zl.MappingError, match="anonymous map"):
            a.sync()


def test_exec_protection(small_file):
    with zl.MemoryMap.from_file(small_file, "rx") as m:
        assert m.protection & zl.Protection.EXEC
        assert bytes(m.view(0, 4)) == b"\x00\x01\x02\x03"


# -- anonymous maps and huge pages ----------------------------------------------------


def test_anonymous_map_is_zeroed_and_writable():
    with zl.MemoryMap.anonymous(3 * PAGE + 5) as a:
        assert a.anonymous_memory and a.writable and a.path is None
        array = a.view(0, None, "uint8")
        assert not array.any()
        array[-1] = 9
        assert bytes(a)[-1] == 9
        del array
    with zl.MemoryMap.anonymous(0) as empty:
        assert empty.size == 0


@pytest.mark.parametrize("size", [-1, 2**64, 2**63])
def test_anonymous_bad_sizes(size):
    with pytest.raises((zl.InvalidMappingArgument, zl.MappingError)):
        zl.MemoryMap.anonymous(size)


def test_huge_pages_fall_back_gracefully(tmp_path):
    size = 4 << 20  # a multiple of the 2 MiB huge page: tries MAP_HUGETLB first
    with zl.MemoryMap.anonymous(size, flags="private|huge_pages") as a:
        assert a.huge_pages in ("hugetlb", "transparent", None)
        array = a.view(0, None, "uint64")
        array[:] = np.arange(array.size)
        assert a.view(8 * 1000, 1, "uint64")[0] == 1000
        del array
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    if os.path.exists(thp) and "[never]" not in open(thp).read():
        with zl.MemoryMap.anonymous(size - 1, flags=zl.MapFlags.HUGE_PAGES) as a:
            assert a.huge_pages == "transparent"
    path = write_uncached(tmp_path / "h.bin", b"x" * PAGE)
    with zl.MemoryMap.from_file(path, flags="private|huge_pages") as m:
        assert m.huge_pages in ("transparent", None)
        assert bytes(m) == b"x" * PAGE


# -- typed views ------------------------------------------------------------------------


def test_view_reads_typed_values(floats_file):
    with zl.MemoryMap.from_file(floats_file) as m:
        v = m.view(16, 4, "<f4")
        np.testing.assert_array_equal(v, [4, 5, 6, 7])
        assert not v.flags.writeable and not v.flags.owndata
        grid = m.view(0, (2, 3), "float32")
        np.testing.assert_array_equal(grid, [[0, 1, 2], [3, 4, 5]])
        big_endian = m.view(0, 2, ">u4")
        assert big_endian[1] == int.from_bytes(np.float32(1).tobytes(), "big")
        assert m.view(0, None, "f4").shape == (4096,)  # a temporary: released at once
        assert m.exports == 3
        del v, grid, big_endian
        assert m.exports == 0


@given(data=st.data())
def test_view_matches_frombuffer(floats_file, data):
    raw = floats_file.read_bytes()
    dtype = np.dtype(data.draw(st.sampled_from(["u1", "i2", "<u2", "f4", ">f4", "f8", "c8", "i8", "V3"])))
    offset = data.draw(st.integers(0, len(raw) // dtype.alignment)) * dtype.alignment
    offset = min(offset, len(raw))
    count = data.draw(st.integers(0, (len(raw) - offset) // dtype.itemsize))
    with zl.MemoryMap.from_file(floats_file) as m:
        view = m.view(offset, count, dtype)
        expected = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        assert view.dtype == dtype
        assert view.tobytes() == expected.tobytes()
        del view


@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=4), data=st.data())
def test_view_shapes_match_numpy(floats_file, shape, data):
    raw = floats_file.read_bytes()
    total = int(np.prod(shape, dtype=np.int64))
    with zl.MemoryMap.from_file(floats_file) as m:
        if 8 * total > len(raw):
            with pytest.raises(zl.InvalidMappingArgument, match="runs past the end"):
                m.view(0, tuple(shape), "<f8")
            return
        offset = 8 * data.draw(st.integers(0, (len(raw) - 8 * total) // 8))
        view = m.view(offset, tuple(shape), "<f8")
        expected = np.frombuffer(raw, "<f8", total, offset).reshape(shape)
        assert view.shape == tuple(shape) and view.flags.c_contiguous and view.flags.aligned
        np.testing.assert_array_equal(view, expected)
        assert m.exports == 1
        del view
        assert m.exports == 0


def test_view_of_huge_zero_size_shapes(floats_file):
    with zl.MemoryMap.from_file(floats_file) as m:
        assert m.view(0, (0, 2**40), "f4").shape == (0, 2**40)
        with pytest.raises(zl.InvalidMappingArgument):
            m.view(0, (0, 2**62, 2**62), "f4")
        with pytest.raises(zl.InvalidMappingArgument, match="dimensions"):
            m.view(0, (1,) * 33)


@pytest.mark.parametrize(
    "offset, count, dtype, message",
    [
        (-1, 1, "u1", "offset -1"),
        (-(2**70), 1, "u1", "outside"),
        (16385, 0, "u1", "outside"),
        (2**64, 1, "u1", "outside"),
        (16384, 1, "u1", "runs past the end"),
        (16380, 2, "f4", "runs past the end"),
        (0, 4097, "f4", "runs past the end"),
        (0, -1, "f4", "negative"),
        (0, (2, -3), "f4", "negative"),
        (0, 2**62, "f8", "runs past the end"),
        (0, (2**32, 2**32, 2**32), "u1", "runs past the end"),
        (2, 1, "f4", "alignment"),
        (4, 1, "f8", "alignment"),
        (1, None, "f4", "alignment"),
        (0, None, "V3", "whole number"),
        (0, 1, "O", "Python objects"),
        (0, 1, [("a", "f4"), ("b", "O")], "Python objects"),
    ],
)
def test_view_bad_arguments(floats_file, offset, count, dtype, message):
    with zl.MemoryMap.from_file(floats_file) as m:
        with pytest.raises(zl.InvalidMappingArgument, match=message) as info:
            m.view(offset, count, dtype)
        assert isinstance(info.value, ValueError)
        assert m.exports == 0


@pytest.mark.parametrize("offset, count", [(1.0, 1), ("0", 1), (0, 1.5)])
def test_view_wrong_argument_types(floats_file, offset, count):
    with zl.MemoryMap.from_file(floats_file) as m:
        with pytest.raises(TypeError):
            m.view(offset, count)


def test_views_keep_the_map_alive(floats_file):
    m = zl.MemoryMap.from_file(floats_file)
    view = m.view(4, 3, "f4")
    del m
    gc.collect()
    assert is_mapped(floats_file)
    np.testing.assert_array_equal(view, [1, 2, 3])
    derived = view[1:]
    del view
    gc.collect()
    np.testing.assert_array_equal(derived, [2, 3])
    del derived
    gc.collect()
    assert not is_mapped(floats_file)  # the last view's release unmapped it


# -- Tensors at an offset -------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, numpy_dtype",
    [("float32", "<f4"), ("float64", "<f8"), ("float16", "<f2"), ("int8", "i1"), ("int32", "<i4"),
     (np.float32, "<f4")],
)
def test_tensor_views_the_map(floats_file, dtype, numpy_dtype):
    raw = floats_file.read_bytes()
    with zl.MemoryMap.from_file(floats_file) as m:
        t = m.tensor(64, (3, 4), dtype)
        assert isinstance(t, zl.Tensor) and t.shape == (3, 4) and not t.writable
        expected = np.frombuffer(raw, numpy_dtype, 12, 64).reshape(3, 4)
        np.testing.assert_array_equal(np.asarray(t), expected)
        assert m.exports == 1
        with pytest.raises(zl.MappingInUse):
            m.close()
        del t
        assert m.exports == 0


def test_tensor_bfloat16_holds_the_raw_bits(floats_file):
    raw = floats_file.read_bytes()
    with zl.MemoryMap.from_file(floats_file) as m:
        t = m.tensor(8, (4,), "bfloat16")
        assert t.dtype == "bfloat16" and t.itemsize == 2
        assert np.asarray(t).tobytes() == raw[8:16]
        # the high half of a float32 is the bfloat16 of it: floats 2.0 and 3.0 at byte 8
        assert [t.get(i) for i in range(4)] == [0.0, 2.0, 0.0, 3.0]
        del t


def test_tensor_keeps_the_map_alive_and_writes_through(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(np.zeros(16, "<f4").tobytes())
    m = zl.MemoryMap.from_file(path, "rw", "shared")
    t = m.tensor(0, (4, 4), "float32")
    assert t.writable
    t.fill(1.5)
    del m
    gc.collect()
    assert is_mapped(path)
    del t
    gc.collect()
    assert not is_mapped(path)
    assert (np.fromfile(path, "<f4") == 1.5).all()


@pytest.mark.parametrize(
    "offset, shape, dtype, error",
    [
        (-4, (1,), "float32", zl.InvalidMappingArgument),
        (16384, (1,), "float32", zl.InvalidMappingArgument),
        (16380, (2,), "float32", zl.InvalidMappingArgument),
        (2, (1,), "float32", zl.InvalidMappingArgument),
        (4, (1,), "float64", zl.InvalidMappingArgument),
        (0, (2**31, 2**31), "int8", zl.InvalidMappingArgument),
        (0, (1,), "uint8", zl.UnsupportedDtype),
        (0, (1,), ">f4", zl.UnsupportedDtype),
        (0, (0, 4), "float32", zl.InvalidShape),
    ],
)
def test_tensor_bad_arguments(floats_file, offset, shape, dtype, error):
    with zl.MemoryMap.from_file(floats_file) as m:
        with pytest.raises(error):
            m.tensor(offset, shape, dtype)
        assert m.exports == 0


# -- lifetime -----------------------------------------------------------------------------


def test_close_refuses_while_views_are_alive(small_file):
    m = zl.MemoryMap.from_file(small_file)
    arr = np.asarray(m)
    sliced = m.view(10, 5)[1:]
    with pytest.raises(zl.MappingInUse) as info:
        m.close()
    assert isinstance(info.value, BufferError) and isinstance(info.value, zl.MappingError)
    assert "2 view(s)" in str(info.value)
    assert arr[1] == 1 and sliced[0] == 11  # still mapped
    del arr
    gc.collect()
    with pytest.raises(zl.MappingInUse, match="1 view"):
        m.close()
    del sliced
    gc.collect()
    m.close()
    assert m.closed
    m.close()  # idempotent


def test_context_manager_exit_with_a_live_view_raises(small_file):
    with pytest.raises(zl.MappingInUse):
        with zl.MemoryMap.from_file(small_file) as m:
            kept = m.view(0, 4)
    assert not m.closed
    del kept
    m.close()


def test_context_manager_lets_the_original_error_through(small_file):
    """An error inside ``with`` is not masked by MappingInUse from live views."""
    with pytest.raises(KeyError):
        with zl.MemoryMap.from_file(small_file) as m:
            kept = m.view(0, 4)
            raise KeyError("original")
    assert not m.closed and kept[1] == 1
    del kept
    m.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda m: len(m),
        lambda m: memoryview(m),
        lambda m: m.view(0, 1),
        lambda m: m.tensor(0, (1,), "float32"),
        lambda m: m.lock(),
        lambda m: m.unlock(),
        lambda m: m.prefault(),
        lambda m: m.advise("normal"),
        lambda m: m.sync(),
        lambda m: m.stats(),
        lambda m: m.__enter__(),
    ],
)
def test_every_method_of_a_closed_map_raises(small_file, call):
    m = zl.MemoryMap.from_file(small_file, "rw", "shared")
    m.close()
    with pytest.raises(zl.MappingError, match="closed"):
        call(m)
    assert m.size == 256 * 64 and m.closed and "closed" in repr(m)


def test_nogil_work_pins_the_map(tmp_path):
    """close() from another thread while prefault() runs without the GIL refuses
    (MappingInUse) instead of unmapping the pages being read: without the pin this
    test dies with SIGSEGV."""
    path = write_uncached(tmp_path / "pin.bin", b"\1" * (8 << 20))
    m = zl.MemoryMap.from_file(path)
    m.advise("random")  # one page per fault: the prefault takes a while
    outcomes = []
    started = threading.Event()

    def closer():
        started.wait()  # set just before prefault(), which pins before it lets the GIL go
        while not m.closed:
            try:
                m.close()
                outcomes.append("closed")
            except zl.MappingInUse:
                outcomes.append("busy")
                time.sleep(0.001)  # hand the GIL back

    worker = threading.Thread(target=closer)
    worker.start()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(10.0)  # this thread keeps the GIL until prefault() lets it go
    try:
        started.set()
        m.prefault()
    finally:
        sys.setswitchinterval(interval)
    worker.join()
    assert outcomes[-1] == "closed" and outcomes.count("closed") == 1 and m.closed
    assert outcomes[0] == "busy"  # prefault pinned the map before the GIL went


# -- paging: lock, prefault, advise, stats ------------------------------------------------------


def test_lock_and_unlock(small_file):
    with zl.MemoryMap.from_file(small_file) as m:
        assert not m.locked
        m.lock()
        assert m.locked and m.stats().locked
        assert m.stats().resident_bytes == m.size
        m.lock()  # already locked: nothing to do
        m.unlock()
        assert not m.locked and not m.stats().locked
        m.unlock()


LOW_MEMLOCK_SCRIPT = textwrap.dedent(
    """
    import os, resource, sys
    import zigllama as zl
    zl.MemoryMap, zl.MappingOptimizer, zl.ModelFileMapper  # names load on first use: before dropping root
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)  # drops CAP_IPC_LOCK, which ignores RLIMIT_MEMLOCK
    assert zl.MappingOptimizer.memlock_limit() == 65536
    small = zl.MemoryMap.anonymous(4096)
    small.lock()
    assert small.locked
    m = zl.MemoryMap.anonymous(1 << 20)
    try:
        m.lock()
    except zl.MappingError as exc:
        assert not m.locked
        print(exc.errno, exc)
    else:
        sys.exit("mlock of 1 MiB succeeded under a 64 KiB RLIMIT_MEMLOCK")
    plan = zl.MappingOptimizer.detect_optimal_strategy(1 << 20)
    assert plan.name in ("prefault", "lazy"), plan
    assert "RLIMIT_MEMLOCK (65536 bytes)" in plan.reason or plan.name == "lazy", plan
    fm = zl.ModelFileMapper()
    path = sys.argv[1]
    try:
        fm.open("weights", path, strategy="lock")
    except zl.MappingError as exc:
        assert "RLIMIT_MEMLOCK" in str(exc), exc
        assert len(fm) == 0 and "weights" not in fm
    else:
        sys.exit("ModelFileMapper locked 1 MiB under a 64 KiB RLIMIT_MEMLOCK")
    """
)


def test_lock_failure_names_rlimit_memlock():
    # A directory of its own under /tmp, readable after the script drops root.
    directory = tempfile.mkdtemp(prefix="zigllama-memlock-", dir="/tmp")
    try:
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "lock.bin")
        with open(path, "wb") as f:
            f.write(b"\0" * (1 << 20))
        os.chmod(path, 0o644)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        result = subprocess.run(
            [sys.executable, "-c", LOW_MEMLOCK_SCRIPT, path],
            capture_output=True, text=True, env=env, timeout=120,
        )
    finally:
        shutil.rmtree(directory)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.split()[0] in (str(errno.ENOMEM), str(errno.EPERM), str(errno.EAGAIN))
    assert "RLIMIT_MEMLOCK is soft=65536 bytes hard=65536 bytes" in out
    assert "mlock of 1048576 bytes failed" in out


def test_prefault_brings_in_exactly_the_range(tmp_path):
    path = write_uncached(tmp_path / "cold.bin", os.urandom(64 * PAGE))
    with zl.MemoryMap.from_file(path) as m:
        m.advise("random")  # no read-ahead: a fault reads just its page
        assert m.stats().resident_bytes == 0
        m.prefault(3 * PAGE + 5, PAGE)  # spans pages 3 and 4
        assert m.stats().resident_bytes == 2 * PAGE
        m.prefault()
        assert m.stats() == MappingStats(64 * PAGE, PAGE, 64, 64 * PAGE, False)


def test_populate_prefaults_at_map_time(tmp_path):
    path = write_uncached(tmp_path / "populate.bin", os.urandom(32 * PAGE + 100))
    with zl.MemoryMap.from_file(path, flags="private|populate") as m:
        assert m.stats().resident_bytes == m.size  # the last partial page counts its bytes
        assert m.stats().pages == 33


@pytest.mark.parametrize("advice", ["normal", "sequential", "random", "willneed", "dontneed", "WillNeed", "DONT_NEED"])
def test_advise_names(small_file, advice):
    with zl.MemoryMap.from_file(small_file) as m:
        m.advise(advice)
        m.advise(advice, 100, 5000)  # widened to whole pages
        assert bytes(m) == small_file.read_bytes()


def test_advise_hugepage_on_anonymous_memory():
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    with zl.MemoryMap.anonymous(4 << 20) as a:
        if os.path.exists(thp) and "[never]" not in open(thp).read():
            a.advise("hugepage")
        else:
            with pytest.raises(zl.MappingError):
                a.advise("hugepage")


def test_dontneed_discards_private_writes():
    with zl.MemoryMap.anonymous(2 * PAGE) as a:
        array = a.view(0, None)
        array[:] = 5
        a.advise("dontneed", PAGE, PAGE)
        assert (array[:PAGE] == 5).all() and not array[PAGE:].any()
        del array


@pytest.mark.parametrize(
    "args, error",
    [
        (("sometimes",), zl.InvalidMappingArgument),
        (("normal", -1), zl.InvalidMappingArgument),
        (("normal", 0, 16385), zl.InvalidMappingArgument),
        (("normal", 16385), zl.InvalidMappingArgument),
        (("normal", 16384, -1), zl.InvalidMappingArgument),
        (("normal", 0.5), TypeError),
    ],
)
def test_advise_bad_arguments(small_file, args, error):
    with zl.MemoryMap.from_file(small_file) as m:
        with pytest.raises(error):
            m.advise(*args)
        with pytest.raises(error if args[0] != "sometimes" else TypeError):
            m.prefault(*args[1:]) if len(args) > 1 else m.prefault(None)
        assert m.exports == 0


def test_opening_a_1gib_file_leaves_under_1_percent_resident(tmp_path):
    """Must show: map a 1 GiB file, read its header, and find < 1% of it in RAM."""
    size = 1 << 30
    path = tmp_path / "model.bin"
    with open(path, "wb") as f:
        f.write(b"GGUF" + (3).to_bytes(4, "little"))
        f.truncate(size)  # sparse: no disk blocks, nothing cached
    with zl.MemoryMap.from_file(path) as m:
        header = m.view(0, 2, "<u4")
        assert header[0] == int.from_bytes(b"GGUF", "little") and header[1] == 3
        assert int(m.view(size - PAGE, PAGE).sum()) == 0  # and a page at the end
        stats = m.stats()
        assert stats.size == size and stats.pages == size // PAGE
        assert 0 < stats.resident_bytes < size // 100, stats
        del header
        m.advise("random")  # no read-ahead: each touch brings in one page
        m.prefault(size // 2, 1)
        assert m.stats().resident_bytes - stats.resident_bytes <= 16 * PAGE


# -- ModelFileMapper -----------------------------------------------------------------------


def test_model_file_mapper(small_file, floats_file):
    with zl.ModelFileMapper() as fm:
        a = fm.open("small", small_file)
        b = fm.open("floats", floats_file, strategy="prefault")
        assert list(fm) == ["small", "floats"] and len(fm) == 2 and "small" in fm
        assert fm.get("small") is a and fm["floats"] is b
        assert fm.total_mapped_bytes == a.size + b.size
        assert fm.total_resident_bytes == a.stats().resident_bytes + b.stats().resident_bytes
        total = fm.stats()
        assert total.size == a.size + b.size and total.pages == a.stats().pages + b.stats().pages
        assert not total.locked
        fm.open("locked", small_file, strategy="lock")
        assert fm.stats().locked
        with pytest.raises(zl.InvalidMappingArgument, match="already open"):
            fm.open("small", floats_file)
        with pytest.raises(KeyError, match="nope"):
            fm.get("nope")
        with pytest.raises(zl.InvalidMappingArgument, match="strategy"):
            fm.open("x", small_file, strategy="eager")
        assert "x" not in fm
        fm.close("small")
        assert a.closed and "small" not in fm
        view = b.view(0, 4, "f4")
        with pytest.raises(zl.MappingInUse, match="floats"):
            fm.close()
        assert list(fm) == ["floats"]  # the busy map stays; the others closed
        del view
    assert b.closed and len(fm) == 0


def test_model_file_mapper_auto_strategy(small_file):
    with zl.ModelFileMapper() as fm:
        m = fm.open("auto", small_file, strategy="auto")
        plan = zl.MappingOptimizer.detect_optimal_strategy(m.size)
        assert m.locked == plan.lock
        if plan.prefault:
            assert m.stats().resident_bytes == m.size


def test_strategy_objects_apply_to_maps(small_file):
    plan = zl.MappingOptimizer.detect_optimal_strategy(
        PAGE, mem_available=1 << 30, memlock_limit=None)
    with zl.MemoryMap.from_file(small_file) as m:
        plan.apply(m)
        assert m.locked


# -- MappingOptimizer ------------------------------------------------------------------------------

GiB = 1 << 30


@pytest.mark.parametrize(
    "size, avail, limit, expected",
    [
        (0, 8 * GiB, None, "lazy"),
        (1 << 20, None, None, "lazy"),
        (1 << 20, 8 * GiB, 8 << 20, "lock"),
        (8 << 20, 8 * GiB, 8 << 20, "lock"),
        ((8 << 20) + 1, 8 * GiB, 8 << 20, "prefault"),
        (4 * GiB, 8 * GiB, None, "lock"),
        (4 * GiB + 1, 8 * GiB, None, "prefault"),
        (6 * GiB, 8 * GiB, None, "prefault"),
        (6 * GiB + 1, 8 * GiB, None, "lazy"),
        (100 * GiB, 8 * GiB, None, "lazy"),
    ],
)
def test_optimizer_choices(size, avail, limit, expected):
    plan = zl.MappingOptimizer.detect_optimal_strategy(size, mem_available=avail, memlock_limit=limit)
    assert isinstance(plan, MappingStrategy)
    assert plan.name == expected
    assert plan.lock == (expected == "lock") and plan.prefault == (expected != "lazy")
    assert (plan.file_size, plan.mem_available, plan.memlock_limit) == (size, avail, limit)
    assert plan.reason


@given(
    sizes=st.lists(st.integers(0, 2**48), min_size=2, max_size=2).map(sorted),
    avail=st.integers(1, 2**40),
    limit=st.one_of(st.none(), st.integers(0, 2**40)),
)
def test_optimizer_is_monotonic_in_file_size(sizes, avail, limit):
    """A bigger file never gets a more eager strategy."""
    rank = {"lock": 0, "prefault": 1, "lazy": 2}
    small, big = (
        zl.MappingOptimizer.detect_optimal_strategy(s, mem_available=avail, memlock_limit=limit)
        for s in sizes
    )
    if sizes[0] > 0:
        assert rank[small.name] <= rank[big.name]


def test_optimizer_reads_the_running_system():
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    total = int(meminfo["MemTotal"].split()[0]) * 1024
    avail = zl.MappingOptimizer.mem_available()
    assert 0 < avail <= total
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    limit = zl.MappingOptimizer.memlock_limit()
    cap_ipc_lock = int(
        next(l for l in open("/proc/self/status") if l.startswith("CapEff")).split()[1], 16
    ) >> 14 & 1
    if cap_ipc_lock or soft == resource.RLIM_INFINITY:
        assert limit is None
    else:
        assert limit == soft
    plan = zl.MappingOptimizer.detect_optimal_strategy(1 << 20)
    assert plan.mem_available is not None and plan.memlock_limit == limit


@pytest.mark.parametrize("size, error", [(-1, zl.InvalidMappingArgument), (1.5, TypeError)])
def test_optimizer_bad_sizes(size, error):
    with pytest.raises(error):
        zl.MappingOptimizer.detect_optimal_strategy(size)


# -- the Cython contract ---------------------------------------------------------------------


def test_cython_authors_can_cimport_the_map(tmp_path, small_file):
    """The docs' cimport example compiles against the installed .pxd and runs."""
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
    page = open(os.path.join(docs, "memory-mapping.md"), encoding="utf-8").read()
    source = page.split("```cython\n", 1)[1].split("```", 1)[0]
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(zl.__file__)))
    outside_extension.build(tmp_path, {
        "mm_checksum.pyx": source + "\n\ndef py_checksum(m):\n    return checksum(m)\n",
        "setup.py": textwrap.dedent(f"""
            from Cython.Build import cythonize
            from setuptools import setup
            setup(ext_modules=cythonize("mm_checksum.pyx", include_path=[{package_parent!r}],
                                        compiler_directives={{"language_level": 3}}))
        """)}, timeout=300)
    mm_checksum = outside_extension.load(tmp_path, "mm_checksum")
    m = zl.MemoryMap.from_file(small_file)
    assert mm_checksum.py_checksum(m) == sum(small_file.read_bytes())
    assert m.exports == 0  # unpinned
    m.close()
    with pytest.raises(zl.MappingError, match="closed"):
        mm_checksum.py_checksum(m)


def test_show_config_reports_the_mapping_facts():
    info = zl._show_config.config_dict()["memory_mapping"]
    assert info["page_size"] == PAGE
    assert info["memlock_limit"] == ("unlimited" if zl.MappingOptimizer.memlock_limit() is None
                                     else zl.MappingOptimizer.memlock_limit())
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    assert info["huge_page_size"] == int(meminfo["Hugepagesize"].split()[0]) * 1024
    assert 0 < info["mem_available"] <= int(meminfo["MemTotal"].split()[0]) * 1024
