"""DLPack both ways: numpy (the reference consumer and producer) shares memory with a
Tensor, lifetimes hold as with the buffer protocol, and bad producers get clear errors."""
import gc
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zigllama import ArenaAllocator, DLPackError, InvalidShape, Tensor, UnsupportedDtype, UseAfterReset

NUMPY_DTYPES = ["float32", "float64", "float16", "int8", "int32"]


def tensor_of(array):
    return Tensor.from_numpy(np.ascontiguousarray(array))


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_numpy_consumes_a_tensor_without_copying(dtype):
    t = tensor_of(np.arange(12).reshape(3, 4).astype(dtype))
    a = np.from_dlpack(t)
    assert a.dtype == np.dtype(dtype) and a.shape == (3, 4)
    assert a.ctypes.data == np.asarray(t).ctypes.data
    a[1, 2] = 7
    assert t.get(1, 2) == 7


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_a_tensor_consumes_numpy_without_copying(dtype):
    a = np.arange(12).reshape(3, 4).astype(dtype)
    t = Tensor.from_dlpack(a)
    assert t.dtype == dtype and t.shape == (3, 4) and t.writable
    assert np.asarray(t).ctypes.data == a.ctypes.data
    a[2, 3] = 5
    assert t.get(2, 3) == 5


@given(hnp.arrays(st.sampled_from(NUMPY_DTYPES), hnp.array_shapes(min_dims=1, max_dims=4, max_side=5)),
       st.data())
def test_strided_views_round_trip_both_ways(base, data):
    # every axis sliced with a random step (negative too) and the axes permuted
    index = tuple(slice(None, None, data.draw(st.sampled_from([1, 2, -1, -2]))) for _ in base.shape)
    view = base[index].transpose(data.draw(st.permutations(range(base.ndim))))
    t = Tensor.from_dlpack(view)
    assert t.shape == view.shape
    assert t.strides == view.strides
    np.testing.assert_array_equal(np.asarray(t.copy()), view)
    back = np.from_dlpack(t)
    assert back.strides == view.strides and back.ctypes.data == view.ctypes.data
    np.testing.assert_array_equal(back, view)


def test_tensor_views_export_their_strides():
    t = tensor_of(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    for view in (t.T, t.transpose((1, 0, 2)), t[:, 1:, ::2]):
        np.testing.assert_array_equal(np.from_dlpack(view), np.asarray(view.copy()))


def test_bfloat16_goes_to_another_tensor_bit_for_bit():
    t = Tensor.from_numpy(np.arange(8, dtype=np.float32)).astype("bfloat16")
    u = Tensor.from_dlpack(t)
    assert u.dtype == "bfloat16"
    np.testing.assert_array_equal(np.asarray(u.astype("float32")), np.arange(8, dtype=np.float32))
    cap = t.__dlpack__(max_version=(1, 0))
    assert type(cap).__name__ == "PyCapsule"


def test_read_only_is_carried_by_the_versioned_capsule():
    a = np.arange(6, dtype=np.float32)
    a.flags.writeable = False
    t = Tensor.from_dlpack(a)
    assert not t.writable
    back = np.from_dlpack(t)
    assert not back.flags.writeable
    # a legacy consumer has no read-only flag: refuse, unless it takes a copy
    with pytest.raises(DLPackError, match="read-only"):
        t.__dlpack__()
    copied = Tensor.from_dlpack(FakeProducer(t.__dlpack__(copy=True)))
    assert copied.writable and np.asarray(copied).ctypes.data != a.ctypes.data


def test_copy_true_shares_nothing():
    a = np.arange(4, dtype=np.float64)
    t = Tensor.from_dlpack(a, copy=True)
    a[0] = 9
    assert t.get(0) == 0
    c = np.from_dlpack(t, copy=True)
    c[1] = 5
    assert t.get(1) == 1


def test_an_arena_refuses_to_reset_under_a_consumer():
    arena = ArenaAllocator()
    t = Tensor.zeros((4, 4), "float32", arena)
    consumer = np.from_dlpack(t)
    with pytest.raises(BufferError):
        arena.reset()
    del consumer
    gc.collect()
    arena.reset()
    with pytest.raises(UseAfterReset):
        t.__dlpack__()


@pytest.mark.parametrize("max_version", [None, (1, 0)])
def test_an_unconsumed_capsule_gives_everything_back(max_version):
    arena = ArenaAllocator()
    t = Tensor.zeros((8,), "float32", arena)
    before = sys.getrefcount(t)
    capsule = t.__dlpack__(max_version=max_version)
    assert sys.getrefcount(t) == before + 1
    with pytest.raises(BufferError):
        arena.reset()
    del capsule
    assert sys.getrefcount(t) == before
    arena.reset()


def test_a_consumed_capsule_is_deleted_once_when_the_tensor_goes():
    a = np.arange(5, dtype=np.int32)
    before = sys.getrefcount(a)
    t = Tensor.from_dlpack(a)
    view = t[1:]
    assert sys.getrefcount(a) > before
    del t
    assert sys.getrefcount(a) > before   # the view keeps the export
    del view
    gc.collect()
    assert sys.getrefcount(a) == before


def test_device_and_stream_arguments():
    t = Tensor.zeros((2,))
    assert t.__dlpack_device__() == (1, 0)
    np.from_dlpack(t, device="cpu")
    with pytest.raises(DLPackError, match="device"):
        t.__dlpack__(dl_device=(2, 0))
    with pytest.raises(DLPackError, match="stream"):
        t.__dlpack__(stream=1)


class FakeProducer:
    """A producer that hands out whatever it was given."""

    def __init__(self, capsule, device=(1, 0)):
        self.capsule, self.device = capsule, device

    def __dlpack__(self, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return self.device


def test_bad_producers_get_clear_errors_and_release_what_they_gave():
    with pytest.raises(DLPackError, match="not a DLPack producer"):
        Tensor.from_dlpack([1.0, 2.0])
    with pytest.raises(DLPackError, match="not an unconsumed"):
        Tensor.from_dlpack(FakeProducer("not a capsule"))
    with pytest.raises(DLPackError, match="device"):
        Tensor.from_dlpack(FakeProducer(None, device=(2, 0)))
    capsule = np.arange(3.0).__dlpack__()
    Tensor.from_dlpack(FakeProducer(capsule))
    with pytest.raises(DLPackError, match="not an unconsumed"):
        Tensor.from_dlpack(FakeProducer(capsule))   # a capsule is consumed once


@pytest.mark.parametrize("array, error", [
    (np.zeros(3, bool), UnsupportedDtype),
    (np.zeros(3, np.int64), UnsupportedDtype),
    (np.zeros(3, np.complex64), UnsupportedDtype),
    (np.array(1.0, np.float32), InvalidShape),
    (np.zeros((2, 0), np.float32), InvalidShape),
    (np.zeros((1,) * 9, np.float32), InvalidShape),
])
def test_arrays_a_tensor_cannot_hold_are_refused_and_released(array, error):
    before = sys.getrefcount(array)
    with pytest.raises(error):
        Tensor.from_dlpack(array)
    gc.collect()
    assert sys.getrefcount(array) == before


def test_a_tensor_from_a_tensor_is_a_view_or_a_copy():
    t = Tensor.from_numpy(np.arange(3, dtype=np.float32))
    v = Tensor.from_dlpack(t)
    v.set(0, 5.0)
    assert t.get(0) == 5.0
    c = Tensor.from_dlpack(t, copy=True)
    c.set(1, 7.0)
    assert t.get(1) == 1.0
