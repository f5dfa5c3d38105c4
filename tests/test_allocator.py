"""Allocators: the std.mem.Allocator vtable and its six implementations."""
import gc
import os
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import outside_extension
import zigllama as zl
from zigllama._core import allocator as A
from zigllama.errors import (
    AllocatorError,
    DoubleFree,
    InvalidAllocation,
    InvalidFree,
    LeakError,
    OutOfMemory,
    UseAfterReset,
)

PAGE = os.sysconf("SC_PAGESIZE")


def make_heap():
    return zl.HeapAllocator()


def make_page():
    return zl.PageAllocator()


def make_arena():
    return zl.ArenaAllocator(chunk_size=4096)


def make_gpa():
    return zl.GeneralPurposeAllocator()


def make_fixed():
    return zl.FixedBufferAllocator(bytearray(1 << 20))


def make_failing():
    return zl.FailingAllocator(zl.HeapAllocator(), fail_index=1 << 30)


MAKERS = [make_heap, make_page, make_arena, make_gpa, make_fixed, make_failing]
KINDS = pytest.mark.parametrize("make", MAKERS, ids=lambda f: f.__name__[5:])


def test_exports():
    for name in ["Allocator", "HeapAllocator", "PageAllocator", "ArenaAllocator",
                 "GeneralPurposeAllocator", "FixedBufferAllocator", "FailingAllocator"]:
        assert getattr(zl, name) is getattr(A, name)
        assert issubclass(getattr(zl, name), zl.Allocator)
    assert A.DEFAULT_ALIGNMENT == 64


# ---- every allocator: the common contract --------------------------------------------


@KINDS
@pytest.mark.parametrize("alignment", [1, 2, 8, 16, 64, 256, 4096, 1 << 16])
def test_alignment_and_contents(make, alignment):
    a = make()
    blocks = [a.alloc(n, alignment) for n in (1, 7, 100, 1000)]
    for i, b in enumerate(blocks):
        assert b.address % alignment == 0
        assert b.alignment == alignment
        memoryview(b)[:] = bytes([i + 1]) * len(b)
    for i, b in enumerate(blocks):
        assert bytes(memoryview(b)) == bytes([i + 1]) * len(b)
    for b in blocks:
        a.free(b)
    assert a.live_allocations == 0 and a.live_bytes == 0


@KINDS
def test_default_alignment_is_64(make):
    a = make()
    for n in (1, 3, 65, 1000):
        b = a.alloc(n)
        assert b.address % 64 == 0 and b.alignment == 64
        b.free()


@KINDS
def test_stats_count_allocations_and_frees(make):
    a = make()
    b1, b2 = a.alloc(100), a.alloc(200)
    assert a.live_allocations == 2
    assert a.total_allocations == 2
    assert a.live_bytes >= 300
    high = a.high_water_bytes
    assert high >= a.live_bytes
    a.free(b2)
    a.free(b1)
    s = a.stats()
    assert s["live_allocations"] == 0 and s["live_bytes"] == 0
    assert s["total_frees"] == 2 and s["high_water_bytes"] == high


@KINDS
def test_numpy_view_shares_memory(make):
    a = make()
    b = a.alloc(4 * 1000)
    x = np.frombuffer(b, dtype=np.float32)
    x[:] = np.arange(1000, dtype=np.float32)
    y = np.frombuffer(b, dtype=np.float32)
    np.testing.assert_array_equal(y, np.arange(1000, dtype=np.float32))
    assert x.ctypes.data == b.address
    del x, y


@KINDS
def test_zero_size_allocation(make):
    a = make()
    b = a.alloc(0)
    assert len(b) == 0 and len(memoryview(b)) == 0
    c = a.alloc(0)
    assert b.address != c.address
    a.free(c)
    a.free(b)
    assert a.live_allocations == 0


@KINDS
@pytest.mark.parametrize("size", [2**62, 2**63, 2**64 - 1, 2**64, 2**100])
def test_huge_sizes_raise_out_of_memory(make, size):
    a = make()
    with pytest.raises(OutOfMemory, match="bytes"):
        a.alloc(size)
    assert a.live_allocations == 0
    assert isinstance(OutOfMemory("x"), MemoryError)
    a.free(a.alloc(10))  # still usable


@KINDS
@pytest.mark.parametrize("size", [-1, -(2**70)])
def test_negative_sizes_raise(make, size):
    with pytest.raises(InvalidAllocation, match=">= 0"):
        make().alloc(size)


@KINDS
@pytest.mark.parametrize("alignment", [0, -64, 3, 48, 100, 2**31, 2**64])
def test_bad_alignments_raise(make, alignment):
    a = make()
    with pytest.raises(InvalidAllocation, match="power of two"):
        a.alloc(16, alignment)
    assert isinstance(InvalidAllocation("x"), ValueError)


@KINDS
def test_non_integer_size_is_a_type_error(make):
    with pytest.raises(TypeError):
        make().alloc("12")
    with pytest.raises(TypeError):
        make().alloc(None)


@KINDS
def test_double_free(make):
    a = make()
    b = a.alloc(32)
    a.free(b)
    with pytest.raises(DoubleFree, match="already freed"):
        a.free(b)
    with pytest.raises(DoubleFree):
        b.free()
    assert a.live_allocations == 0


@KINDS
def test_free_with_the_wrong_allocator(make):
    a, other = make(), make()
    b = a.alloc(32)
    with pytest.raises(InvalidFree, match="not by this"):
        other.free(b)
    assert a.live_allocations == 1 and other.live_allocations == 0
    a.free(b)


@KINDS
def test_freed_block_cannot_be_touched(make):
    a = make()
    b = a.alloc(32)
    b.free()
    assert b.freed and not b.valid
    with pytest.raises(AllocatorError, match="freed"):
        memoryview(b)
    with pytest.raises(AllocatorError, match="freed"):
        b.address
    assert "freed" in repr(b)


@KINDS
def test_free_refused_while_a_view_is_alive(make):
    a = make()
    b = a.alloc(64)
    m = memoryview(b)
    with pytest.raises(BufferError, match="view"):
        a.free(b)
    m.release()
    a.free(b)


@KINDS
def test_garbage_collection_frees(make):
    a = make()
    b = a.alloc(1000)
    x = np.frombuffer(b, dtype=np.uint8)
    del b
    assert a.live_allocations == 1  # the array keeps the block alive
    del x
    gc.collect()
    assert a.live_allocations == 0


@KINDS
def test_closed_allocator(make):
    a = make()
    b = a.alloc(16)
    if isinstance(a, zl.GeneralPurposeAllocator):
        with pytest.raises(LeakError):
            a.close()  # and closed anyway
    else:
        a.close()
    assert a.closed
    with pytest.raises(AllocatorError, match="closed"):
        a.alloc(16)
    with pytest.raises(AllocatorError, match="closed"):
        A._exercise_nogil(a, 16, 64, 1)
    with pytest.raises(AllocatorError, match="closed"):
        with a:
            pass
    b.free()  # memory from before close can still go back
    a.close()  # closing twice is harmless (and the GPA has nothing live any more)


@KINDS
def test_resize_in_place(make):
    a = make()
    b = a.alloc(1000)
    memoryview(b)[:] = b"x" * 1000
    assert a.resize(b, 500) is True  # every allocator can shrink in place
    assert len(b) == 500 and bytes(memoryview(b)) == b"x" * 500
    grown = a.resize(b, 600)
    assert len(b) == (600 if grown else 500)
    b.free()
    assert a.live_bytes == 0


def test_resize_misuse():
    heap, other = zl.HeapAllocator(), zl.HeapAllocator()
    b = heap.alloc(100)
    with pytest.raises(InvalidFree):
        other.resize(b, 50)
    m = memoryview(b)
    with pytest.raises(BufferError):
        heap.resize(b, 50)
    m.release()
    with pytest.raises(InvalidAllocation):
        heap.resize(b, -1)
    b.free()
    with pytest.raises(AllocatorError, match="freed"):
        heap.resize(b, 50)
    arena = zl.ArenaAllocator()
    c = arena.alloc(100)
    arena.reset()
    with pytest.raises(UseAfterReset):
        arena.resize(c, 50)


def test_with_statement_closes_heap_and_page():
    for make in (zl.HeapAllocator, zl.PageAllocator):
        with make() as a:
            a.alloc(10).free()
        assert a.closed
        with pytest.raises(AllocatorError, match="closed"):
            a.alloc(1)


@KINDS
def test_nogil_vtable(make):
    a = make()
    assert A._exercise_nogil(a, 4096, 64, 50) == 50
    assert a.live_allocations == 0
    assert a.total_allocations >= 50


@KINDS
def test_uninitialised_allocator_raises(make):
    a = make()
    raw = type(a).__new__(type(a))
    with pytest.raises(AllocatorError, match="not initialised"):
        raw.alloc(8)
    with pytest.raises(AllocatorError):
        A._exercise_nogil(raw, 8, 8, 1)
    assert raw.live_bytes == 0


@pytest.mark.parametrize("parent", [
    lambda child: zl.ArenaAllocator(child, chunk_size=4096),
    zl.GeneralPurposeAllocator,
    lambda child: zl.FailingAllocator(child, 100),
])
def test_closing_a_child_stops_its_parents(parent):
    child = zl.GeneralPurposeAllocator()
    p = parent(child)
    kept = p.alloc(100)
    assert child.deinit() == "leak"  # closes the child
    with pytest.raises(OutOfMemory, match="GeneralPurposeAllocator is closed"):
        p.alloc(8000)
    # nogil callers of the parent's vtable get NULL too
    assert A._exercise_nogil(p, 8000, 64, 3) == 0
    kept.free()
    if isinstance(p, zl.ArenaAllocator):
        p.close()
    assert child.check() == "ok"


def test_base_class_is_abstract():
    with pytest.raises(TypeError, match="interface"):
        zl.Allocator()
    with pytest.raises(TypeError):
        A.Block()


def test_repr():
    a = zl.HeapAllocator()
    b = a.alloc(10)
    assert "HeapAllocator" in repr(a) and "1 live" in repr(a)
    assert "10 bytes" in repr(b)


# ---- HeapAllocator ---------------------------------------------------------------------


def nogil_threads(allocator, size, count, threads=4, fill=True):
    """Start `threads` threads allocating and freeing through the vtable without the GIL."""
    started = [threading.Thread(target=A._exercise_nogil, args=(allocator, size, 64, count, fill))
               for _ in range(threads)]
    for t in started:
        t.start()
    return started


def join_all(threads):
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("make", [zl.HeapAllocator, zl.PageAllocator, zl.GeneralPurposeAllocator])
def test_thread_safe_allocators_with_the_gil_released(make):
    a = make()
    join_all(nogil_threads(a, 1000, 1000))
    assert a.total_allocations == 4000 and a.total_frees == 4000
    assert a.live_bytes == 0 and a.live_allocations == 0
    assert a.failed_allocations == 0


# ---- tracemalloc -------------------------------------------------------------------------


def domain_bytes(snapshot):
    f = tracemalloc.DomainFilter(inclusive=True, domain=A.TRACEMALLOC_DOMAIN)
    return sum(s.size for s in snapshot.filter_traces([f]).statistics("filename"))


@pytest.mark.parametrize("make, expected", [
    (zl.HeapAllocator, 1 << 20),
    (zl.PageAllocator, 1 << 20),
    # The arena shows the chunk it took from its heap.
    (lambda: zl.ArenaAllocator(chunk_size=1 << 21), 1 << 21),
])
def test_tracemalloc_sees_allocations(make, expected):
    a = make()
    tracemalloc.start()
    try:
        before = domain_bytes(tracemalloc.take_snapshot())
        b = a.alloc(1 << 20)
        during = domain_bytes(tracemalloc.take_snapshot())
        traced, _ = tracemalloc.get_traced_memory()
        del b
        if isinstance(a, zl.ArenaAllocator):
            a.close()
        after = domain_bytes(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    assert during - before == expected
    assert traced >= expected
    assert after == before


def test_tracemalloc_sees_nogil_allocations():
    tracemalloc.start()
    try:
        heap = zl.HeapAllocator()
        peak_before = tracemalloc.get_traced_memory()[1]
        A._exercise_nogil(heap, 8 << 20, 64, 1)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - peak_before >= 8 << 20


def test_tracemalloc_with_nogil_threads_and_the_gil_holder_at_once():
    # nogil threads take the GPA's mutex and (to trace) the GIL; the main thread
    # holds the GIL and takes the mutex. The GPA never holds its mutex while
    # calling the child, so this cannot deadlock.
    gpa = zl.GeneralPurposeAllocator()
    tracemalloc.start()
    try:
        threads = nogil_threads(gpa, 512, 3000, threads=3, fill=False)
        for _ in range(3000):
            gpa.alloc(512).free()
        join_all(threads)
    finally:
        tracemalloc.stop()
    assert gpa.total_allocations == 12000 and gpa.bad_frees == 0 and gpa.deinit() == "ok"


# ---- PageAllocator -----------------------------------------------------------------------


def test_page_allocator_rounds_to_pages():
    p = zl.PageAllocator()
    assert p.page_size == PAGE and not p.lock
    b = p.alloc(1)
    assert b.address % PAGE == 0
    assert p.live_bytes == PAGE
    c = p.alloc(PAGE + 1)
    assert p.live_bytes == 3 * PAGE
    p.free(b)
    p.free(c)
    assert p.live_bytes == 0


@pytest.mark.parametrize("alignment", [1 << 16, 1 << 21])
def test_page_allocator_large_alignment(alignment):
    p = zl.PageAllocator()
    blocks = [p.alloc(3 * PAGE, alignment) for _ in range(3)]
    for b in blocks:
        assert b.address % alignment == 0
        memoryview(b)[-1] = 1
    for b in blocks:
        b.free()
    assert p.live_bytes == 0


def test_page_allocator_resize():
    p = zl.PageAllocator()
    b = p.alloc(4 * PAGE)
    assert p.resize(b, PAGE)
    assert p.live_bytes == PAGE
    grown = p.resize(b, 2 * PAGE)
    assert p.live_bytes == (2 if grown else 1) * PAGE
    b.free()
    assert p.live_bytes == 0


def vm_locked_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    raise AssertionError("no VmLck line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_page_allocator_lock():
    p = zl.PageAllocator(lock=True)
    assert p.lock
    before = vm_locked_kib()
    b = p.alloc(PAGE)
    assert vm_locked_kib() - before == PAGE // 1024
    b.free()
    assert vm_locked_kib() == before


MLOCK_LIMIT_SCRIPT = """
import os, resource
import zigllama as zl
zl.PageAllocator  # names load on first use: before dropping root
resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, 64 * 1024))
if os.geteuid() == 0:  # root ignores RLIMIT_MEMLOCK: become nobody
    os.setgid(65534)
    os.setuid(65534)
p = zl.PageAllocator(lock=True)
try:
    p.alloc(16 << 20)
except zl.OutOfMemory as e:
    print(e)
    assert p.live_bytes == 0
    zl.PageAllocator().alloc(16 << 20).free()  # unlocked pages are still fine
else:
    raise SystemExit("mlock beyond RLIMIT_MEMLOCK succeeded")
"""


def test_page_allocator_lock_beyond_the_limit_names_rlimit_memlock():
    out = subprocess.run([sys.executable, "-c", MLOCK_LIMIT_SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "RLIMIT_MEMLOCK is 65536 bytes" in out.stdout
    assert "mlock of 16777216 bytes failed" in out.stdout


# ---- ArenaAllocator ----------------------------------------------------------------------


def test_arena_bumps_within_a_chunk():
    arena = zl.ArenaAllocator(chunk_size=1 << 16)
    b1 = arena.alloc(100)
    b2 = arena.alloc(100)
    assert b2.address == b1.address + 128  # 100 rounded to the next 64-byte boundary
    assert arena.chunks == 1 and arena.capacity == 1 << 16
    assert arena.used == 228


def test_arena_grows_across_chunks_and_reset_retains_one():
    gpa = zl.GeneralPurposeAllocator()
    arena = zl.ArenaAllocator(gpa, chunk_size=4096)
    blocks = [arena.alloc(3000) for _ in range(20)]
    assert arena.chunks > 3
    # The chunk count grows logarithmically: each new chunk is half of what is held.
    assert arena.chunks < 12
    assert gpa.live_allocations == arena.chunks and gpa.live_bytes == arena.capacity
    capacity = arena.capacity
    assert arena.reset(retain_capacity=True) == capacity
    assert arena.chunks == 1 and arena.capacity == capacity and arena.used == 0
    assert arena.live_bytes == 0 and arena.generation == 1
    # The next round of the same work fits in the retained chunk.
    blocks = [arena.alloc(3000) for _ in range(20)]
    assert arena.chunks == 1
    arena.reset(retain_capacity=False)
    assert arena.capacity == 0 and arena.chunks == 0
    assert gpa.live_bytes == 0
    del blocks
    arena.close()
    assert gpa.deinit() == "ok"


def test_arena_reset_with_a_limit():
    gpa = zl.GeneralPurposeAllocator()
    arena = zl.ArenaAllocator(gpa, chunk_size=4096)
    blocks = [arena.alloc(3000) for _ in range(20)]
    capacity = arena.capacity
    assert arena.reset(limit=10000) == 10000  # Zig's .retain_with_limit
    assert arena.chunks == 1 and gpa.live_bytes == 10000
    blocks = [arena.alloc(3000) for _ in range(3)]  # fits in what was kept
    assert arena.chunks == 1
    assert arena.reset(limit=1 << 40) == 10000  # a limit above the capacity keeps it all
    assert arena.reset(limit=0) == 0 and arena.chunks == 0
    with pytest.raises(InvalidAllocation, match="limit"):
        arena.reset(limit=-1)
    assert arena.reset(retain_capacity=False, limit=10000) == 0  # free_all wins
    del blocks
    arena.close()
    assert capacity > 10000 and gpa.deinit() == "ok"


def test_arena_free_gives_back_only_the_last_allocation():
    arena = zl.ArenaAllocator()
    b1 = arena.alloc(64)
    b2 = arena.alloc(64)
    address = b2.address
    arena.free(b2)
    b3 = arena.alloc(64)
    assert b3.address == address
    arena.free(b1)  # not the last: counted, but the bytes stay until reset
    b4 = arena.alloc(64)
    assert b4.address == b3.address + 64
    assert arena.live_allocations == 2


def test_arena_resize_grows_the_last_allocation():
    arena = zl.ArenaAllocator(chunk_size=4096)
    b1 = arena.alloc(100)
    assert arena.resize(b1, 1000) and len(b1) == 1000
    b2 = arena.alloc(100)
    assert not arena.resize(b1, 2000)  # no longer the last one
    assert arena.resize(b2, 3000) and arena.chunks == 1
    assert not arena.resize(b2, 5000)  # beyond the chunk
    assert arena.live_bytes == 1000 + 3000


def test_arena_reset_makes_old_memory_raise():
    arena = zl.ArenaAllocator()
    b = arena.alloc(64)
    arena.reset()
    assert not b.valid and not b.freed
    with pytest.raises(UseAfterReset, match="generation 0 .* now at generation 1"):
        memoryview(b)
    with pytest.raises(UseAfterReset):
        b.address
    b.free()  # giving back memory the reset already took is a no-op
    assert arena.live_allocations == 0
    c = arena.alloc(64)  # and did not disturb the new generation
    assert arena.live_allocations == 1 and c.valid


def test_arena_reset_refused_while_views_are_alive():
    arena = zl.ArenaAllocator()
    b = arena.alloc(4000)
    x = np.frombuffer(b, dtype=np.float32)
    assert arena.exports == 1
    with pytest.raises(BufferError, match="1 buffer view"):
        arena.reset()
    with pytest.raises(BufferError):
        arena.close()
    assert arena.generation == 0 and b.valid
    del x
    assert arena.exports == 0
    arena.reset()
    assert arena.generation == 1
    with pytest.raises(BufferError):
        with arena:
            m = memoryview(arena.alloc(8))
    assert arena.generation == 1
    m.release()


def test_arena_with_statement_resets_on_exit():
    gpa = zl.GeneralPurposeAllocator()
    arena = zl.ArenaAllocator(gpa, chunk_size=4096)
    for token in range(3):
        with arena as a:
            assert a is arena
            blocks = [arena.alloc(1000) for _ in range(10)]
        assert arena.generation == token + 1
        assert not any(b.valid for b in blocks)
        assert arena.live_bytes == 0
    assert arena.chunks == 1
    arena.close()
    assert gpa.live_bytes == 0


def test_arena_with_statement_keeps_the_error_in_flight():
    arena = zl.ArenaAllocator()
    with pytest.raises(KeyError) as info:
        with arena:
            m = memoryview(arena.alloc(8))
            raise KeyError("boom")
    if sys.version_info >= (3, 11):
        assert "not reset" in info.value.__notes__[0]
    assert arena.generation == 0
    m.release()


def test_arena_close_returns_everything_to_the_child():
    gpa = zl.GeneralPurposeAllocator()
    arena = zl.ArenaAllocator(gpa, chunk_size=1024)
    blocks = [arena.alloc(900) for _ in range(5)]
    arena.deinit()
    assert gpa.live_bytes == 0 and arena.capacity == 0
    with pytest.raises(UseAfterReset):
        memoryview(blocks[0])
    with pytest.raises(AllocatorError, match="closed"):
        arena.alloc(1)


def test_arena_keeps_its_child_alive():
    arena = zl.ArenaAllocator(zl.GeneralPurposeAllocator())
    b = arena.alloc(100)
    gc.collect()
    assert isinstance(arena.child, zl.GeneralPurposeAllocator)
    assert arena.child.live_allocations == 1
    memoryview(b)[:] = b"a" * 100


def test_arena_bad_arguments():
    with pytest.raises(InvalidAllocation, match="chunk_size"):
        zl.ArenaAllocator(chunk_size=0)
    with pytest.raises(TypeError):
        zl.ArenaAllocator("heap")
    closed = zl.HeapAllocator()
    closed.close()
    with pytest.raises(AllocatorError, match="closed"):
        zl.ArenaAllocator(closed)


# ---- GeneralPurposeAllocator ------------------------------------------------------------


def test_gpa_leak_report():
    gpa = zl.GeneralPurposeAllocator()
    b1, b2 = gpa.alloc(100), gpa.alloc(7, 8)
    with pytest.raises(LeakError, match="2 allocation") as info:
        gpa.close()
    assert sorted((size, alignment) for _, size, alignment in info.value.leaks) == [(7, 8), (100, 64)]
    assert "100 bytes" in str(info.value) and "7 bytes" in str(info.value)
    assert gpa.closed
    # Leaked memory was not freed under its owners: they can still use and free it.
    memoryview(b1)[:] = b"z" * 100
    b1.free()
    b2.free()
    assert gpa.leaks() == [] and gpa.check() == "ok"
    gpa.close()  # nothing leaks any more


def leaky_helper(gpa):
    return gpa.alloc(100)


def test_gpa_stack_traces_show_where_leaks_came_from():
    gpa = zl.GeneralPurposeAllocator(stack_traces=True)
    assert gpa.stack_traces and not zl.GeneralPurposeAllocator().stack_traces
    kept = leaky_helper(gpa)
    for _ in range(3000):  # freed allocations' traces are pruned, live ones kept
        gpa.alloc(8).free()
    with pytest.raises(LeakError) as info:
        gpa.close()
    report = str(info.value)
    assert "allocated at" in report and "in leaky_helper" in report
    assert report.count("allocated at") == 1
    kept.free()


def test_gpa_deinit_returns_leak_or_ok():
    gpa = zl.GeneralPurposeAllocator()
    b = gpa.alloc(10)
    assert gpa.deinit() == "leak"
    b.free()
    assert gpa.deinit() == "ok"


def test_gpa_with_statement():
    with zl.GeneralPurposeAllocator() as gpa:
        gpa.alloc(10).free()
    with pytest.raises(LeakError):
        with zl.GeneralPurposeAllocator() as gpa:
            kept = gpa.alloc(10)
    kept.free()


def test_gpa_with_statement_adds_the_leak_to_the_error_in_flight():
    with pytest.raises(ValueError) as info:
        with zl.GeneralPurposeAllocator() as gpa:
            kept = gpa.alloc(10)
            raise ValueError("error path")
    if sys.version_info >= (3, 11):
        assert "1 allocation(s) leaked" in info.value.__notes__[0]
    kept.free()


def test_gpa_raw_misuse_is_refused():
    gpa = zl.GeneralPurposeAllocator()
    b = gpa.alloc(100)
    address = b.address
    with pytest.raises(InvalidFree, match="allocated with size 100"):
        A._deallocate_address(gpa, address, 99, 64)
    with pytest.raises(InvalidFree, match="alignment"):
        A._deallocate_address(gpa, address, 100, 32)
    with pytest.raises(InvalidFree, match="did not allocate"):
        A._deallocate_address(gpa, address + 64, 100, 64)
    other = zl.HeapAllocator().alloc(10)
    with pytest.raises(InvalidFree, match="did not allocate"):
        A._deallocate_address(gpa, other.address, 10, 64)
    assert gpa.live_allocations == 1
    b.free()
    with pytest.raises(DoubleFree, match="already freed"):
        A._deallocate_address(gpa, address, 100, 64)
    assert gpa.live_allocations == 0 and gpa.bad_frees == 0


def test_gpa_nogil_misuse_is_counted_and_reported():
    gpa = zl.GeneralPurposeAllocator()
    b = gpa.alloc(64)
    A._free_nogil(gpa, b.address + 64, 64, 64)  # never allocated: refused, counted
    assert gpa.bad_frees == 1 and gpa.live_allocations == 1
    b.free()
    assert gpa.check() == "leak"
    with pytest.raises(LeakError, match="1 invalid or double free"):
        gpa.close()


def test_gpa_table_grows_and_shrinks():
    gpa = zl.GeneralPurposeAllocator()
    blocks = [gpa.alloc(i % 50) for i in range(5000)]
    assert gpa.live_allocations == 5000
    assert len(gpa.leaks()) == 5000
    for b in blocks[::2]:
        b.free()
    for _ in range(3):  # churn: deleted slots must not fill the table
        more = [gpa.alloc(8) for _ in range(3000)]
        for b in more:
            b.free()
    assert gpa.live_allocations == 2500
    del blocks
    assert gpa.deinit() == "ok"


# ---- FixedBufferAllocator ---------------------------------------------------------------


def test_fixed_buffer_allocates_inside_the_buffer():
    buf = np.zeros(4096, dtype=np.uint8)
    fba = zl.FixedBufferAllocator(buf)
    b = fba.alloc(100)
    base = buf.ctypes.data
    assert base <= b.address and b.address + 100 <= base + 4096
    memoryview(b)[:] = b"\x07" * 100
    offset = b.address - base
    assert (buf[offset:offset + 100] == 7).all()
    assert fba.capacity == 4096 and fba.used == offset + 100


def test_fixed_buffer_out_of_memory_when_full():
    fba = zl.FixedBufferAllocator(bytearray(1000))
    first = fba.alloc(900, 1)
    with pytest.raises(OutOfMemory, match="full: 200 bytes"):
        fba.alloc(200, 1)
    assert fba.failed_allocations == 1
    rest = fba.alloc(100, 1)  # exactly what is left
    with pytest.raises(OutOfMemory):
        fba.alloc(1, 1)
    del rest, first  # the last allocation goes back on free, and then the one before
    assert fba.used == 0


def test_fixed_buffer_keeps_the_buffer_alive():
    buf = bytearray(b"\x00" * 256)
    fba = zl.FixedBufferAllocator(buf)
    with pytest.raises(BufferError):
        buf.extend(b"more")  # exported: cannot move
    del buf
    gc.collect()
    b = fba.alloc(256, 1)
    memoryview(b)[:] = b"\x01" * 256
    assert bytes(memoryview(b)) == b"\x01" * 256


def test_fixed_buffer_reset_and_close():
    buf = bytearray(1024)
    fba = zl.FixedBufferAllocator(buf)
    b = fba.alloc(1000, 1)
    with fba:
        pass  # exit resets
    assert fba.used == 0 and fba.generation == 1
    with pytest.raises(UseAfterReset):
        memoryview(b)
    c = fba.alloc(1000, 1)
    m = memoryview(c)
    with pytest.raises(BufferError):
        fba.reset()
    m.release()
    fba.close()
    buf.extend(b"ok")  # released: the bytearray may move again
    with pytest.raises(AllocatorError, match="closed"):
        fba.alloc(1)


@pytest.mark.parametrize("buffer", [
    b"read-only bytes",
    np.zeros(100, dtype=np.uint8)[::2],  # not contiguous
    "a str",
    42,
])
def test_fixed_buffer_bad_inputs(buffer):
    with pytest.raises(InvalidAllocation, match="writable, contiguous"):
        zl.FixedBufferAllocator(buffer)


def test_fixed_buffer_read_only_numpy():
    a = np.zeros(64, dtype=np.uint8)
    a.setflags(write=False)
    with pytest.raises(InvalidAllocation, match="writable"):
        zl.FixedBufferAllocator(a)
    with pytest.raises(InvalidAllocation):
        zl.FixedBufferAllocator(memoryview(bytearray(10)).toreadonly())


def test_fixed_buffer_empty():
    fba = zl.FixedBufferAllocator(bytearray())
    with pytest.raises(OutOfMemory):
        fba.alloc(1)


# ---- FailingAllocator -------------------------------------------------------------------


def test_failing_allocator_fails_the_nth_allocation_and_after():
    gpa = zl.GeneralPurposeAllocator()
    f = zl.FailingAllocator(gpa, fail_index=2)
    b1, b2 = f.alloc(10), f.alloc(20)
    assert not f.has_induced_failure
    with pytest.raises(OutOfMemory, match="refused allocation #2 .*fail_index=2"):
        f.alloc(30)
    assert f.has_induced_failure
    b1.free()
    with pytest.raises(OutOfMemory):
        f.alloc(1)  # frees do not re-open the gate
    b2.free()
    assert f.allocations == 2 and f.deallocations == 2
    assert f.allocated_bytes == 30 and f.freed_bytes == 30
    assert f.failed_allocations == 2
    assert gpa.deinit() == "ok"


def test_failing_allocator_zero_fails_everything():
    f = zl.FailingAllocator(zl.HeapAllocator(), 0)
    with pytest.raises(OutOfMemory):
        f.alloc(1)
    assert A._exercise_nogil(f, 16, 16, 5) == 0


def test_failing_allocator_passes_misuse_to_the_gpa_below():
    gpa = zl.GeneralPurposeAllocator()
    f = zl.FailingAllocator(gpa, 10)
    b = f.alloc(10)
    with pytest.raises(InvalidFree):
        A._deallocate_address(f, b.address, 11, 64)
    address = b.address
    b.free()
    with pytest.raises(DoubleFree):
        A._deallocate_address(f, address, 10, 64)
    assert f.deallocations == 1


def test_failing_allocator_resize_fail_index():
    f = zl.FailingAllocator(zl.HeapAllocator(), 10, resize_fail_index=1)
    b = f.alloc(100)
    assert f.resize(b, 50)
    assert not f.resize(b, 40)
    assert f.has_induced_failure and len(b) == 50


def test_failing_allocator_bad_arguments():
    with pytest.raises(InvalidAllocation):
        zl.FailingAllocator(zl.HeapAllocator(), -1)
    with pytest.raises(TypeError):
        zl.FailingAllocator(None, 1)


def grow_arena(arena, count=24, size=3000):
    """A multi-allocation construction: a list of blocks filling several chunks."""
    blocks = []
    for i in range(count):
        blocks.append(arena.alloc(size))
        memoryview(blocks[-1])[:4] = i.to_bytes(4, "little")
    return blocks


def test_failing_sweep_over_arena_growth_leaves_nothing_live():
    # How many chunk allocations does the construction need?
    probe_gpa = zl.GeneralPurposeAllocator()
    probe = zl.FailingAllocator(probe_gpa, 1 << 30)
    arena = zl.ArenaAllocator(probe, chunk_size=4096)
    grow_arena(arena)
    needed = probe.allocations
    arena.close()
    assert needed >= 4 and probe_gpa.deinit() == "ok"

    for fail_index in range(needed + 1):
        gpa = zl.GeneralPurposeAllocator()
        failing = zl.FailingAllocator(gpa, fail_index)
        arena = zl.ArenaAllocator(failing, chunk_size=4096)
        try:
            blocks = grow_arena(arena)
        except OutOfMemory:
            assert fail_index < needed and failing.has_induced_failure
        else:
            assert fail_index == needed and len(blocks) == 24
        finally:
            arena.close()
        assert gpa.live_bytes == 0 and gpa.live_allocations == 0
        assert gpa.deinit() == "ok"


def test_failing_sweep_over_arena_retaining_reset():
    # reset(retain_capacity=True) replaces several chunks by one: if that allocation
    # fails the arena is empty, not broken, and nothing leaks.
    for fail_index in range(1, 8):
        gpa = zl.GeneralPurposeAllocator()
        failing = zl.FailingAllocator(gpa, fail_index)
        arena = zl.ArenaAllocator(failing, chunk_size=4096)
        try:
            grow_arena(arena, count=6)
        except OutOfMemory:
            pass
        kept = arena.reset(retain_capacity=True)
        assert kept == arena.capacity
        assert gpa.live_bytes == arena.capacity
        arena.close()
        assert gpa.deinit() == "ok"


# ---- model-based: random alloc/free sequences ------------------------------------------


@st.composite
def programs(draw):
    ops = []
    live = 0
    for _ in range(draw(st.integers(1, 60))):
        if live and draw(st.booleans()):
            ops.append(("free", draw(st.integers(0, live - 1))))
            live -= 1
        else:
            ops.append(("alloc", draw(st.integers(0, 5000)), 1 << draw(st.integers(0, 12))))
            live += 1
    return ops


CHILDREN = {
    "heap": zl.HeapAllocator,
    "page": zl.PageAllocator,
    "arena": lambda: zl.ArenaAllocator(chunk_size=2048),
    "fixed": lambda: zl.FixedBufferAllocator(bytearray(4 << 20)),
}


@settings(max_examples=40)
@given(program=programs(), child=st.sampled_from(sorted(CHILDREN)))
def test_random_programs_under_a_gpa(program, child):
    """Blocks are aligned, never overlap, keep their contents, and the GPA's
    accounting matches a plain Python model."""
    gpa = zl.GeneralPurposeAllocator(CHILDREN[child]())
    live = []  # (block, fill byte)
    model_bytes = 0
    for step, op in enumerate(program):
        if op[0] == "alloc":
            _, size, alignment = op
            b = gpa.alloc(size, alignment)
            assert b.address % alignment == 0
            fill = step % 251 + 1
            memoryview(b)[:] = bytes([fill]) * size
            live.append((b, fill))
            model_bytes += size
        else:
            b, fill = live.pop(op[1])
            model_bytes -= len(b)
            b.free()
        assert gpa.live_bytes == model_bytes and gpa.live_allocations == len(live)
        for b, fill in live:
            assert bytes(memoryview(b)) == bytes([fill]) * len(b)
    spans = sorted((b.address, b.address + len(b)) for b, _ in live if len(b))
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    for b, _ in live:
        b.free()
    assert gpa.deinit() == "ok"


# ---- the cimport API, from an outside extension -----------------------------------------

OUTSIDE_PYX = '''
from libc.stdint cimport uint64_t
from zigllama.allocator cimport Allocator, zl_allocator, zl_alloc, zl_free, ZL_DEFAULT_ALIGNMENT

def scratch_sum(Allocator allocator, size_t n):
    cdef zl_allocator a = allocator.c
    cdef double *buf
    cdef double total = 0
    cdef size_t i
    with nogil:
        buf = <double *>zl_alloc(a, n * sizeof(double), ZL_DEFAULT_ALIGNMENT)
        if buf != NULL:
            for i in range(n):
                buf[i] = i
                total += buf[i]
            zl_free(a, buf, n * sizeof(double), ZL_DEFAULT_ALIGNMENT)
    if buf == NULL:
        raise MemoryError(n)
    return total

def allocate_and_free(Allocator allocator, size_t n):
    cdef void *p = allocator.allocate(n, ZL_DEFAULT_ALIGNMENT)
    cdef uint64_t generation = allocator.generation
    allocator.deallocate(p, n, ZL_DEFAULT_ALIGNMENT)
    return generation

def check(Allocator allocator, uint64_t generation):
    return allocator.check_generation(generation)
'''

OUTSIDE_SETUP = '''
import sys
from setuptools import Extension, setup
from Cython.Build import cythonize
include, package_root = sys.argv.pop(1), sys.argv.pop(1)
setup(ext_modules=cythonize(
    [Extension("outside_alloc", ["outside_alloc.pyx"], include_dirs=[include])],
    include_path=[package_root], compiler_directives={"language_level": 3}, quiet=True))
'''

OUTSIDE_RUN = '''
import zigllama as zl
import outside_alloc as ext
gpa = zl.GeneralPurposeAllocator()
arena = zl.ArenaAllocator(gpa)
assert ext.scratch_sum(arena, 1000) == sum(range(1000))
assert ext.allocate_and_free(arena, 64) == 0
try:
    ext.allocate_and_free(arena, 2**62)
except zl.OutOfMemory:
    pass
else:
    raise AssertionError("no OutOfMemory")
arena.reset()
try:
    ext.check(arena, 0)
except zl.UseAfterReset:
    pass
else:
    raise AssertionError("no UseAfterReset")
assert ext.check(arena, 1) == 0
arena.close()
gpa.close()
print("outside extension ok")
'''


def test_outside_extension_cimports_the_allocator(tmp_path):
    package_root = os.path.dirname(os.path.dirname(zl.__file__))
    env = outside_extension.build(tmp_path, {"outside_alloc.pyx": OUTSIDE_PYX, "setup.py": OUTSIDE_SETUP},
                                  setup_args=(zl.get_include(), package_root))
    run = subprocess.run([sys.executable, "-c", OUTSIDE_RUN], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "outside extension ok" in run.stdout
