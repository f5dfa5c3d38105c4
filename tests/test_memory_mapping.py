"""MemoryMap (Zig twin: memory_mapping.zig): mapping, views, lifetime, errors."""
import numpy as np
import pytest

import zigllama as zl


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(bytes(range(256)) * 64)
    return path


def test_from_file_maps_the_bytes_zero_copy(small_file):
    with zl.MemoryMap.from_file(small_file) as m:
        assert len(m) == m.size == 256 * 64
        assert not m.writable
        view = memoryview(m)
        assert view.readonly
        assert bytes(view) == small_file.read_bytes()
        assert m.exports == 1
        view.release()
        assert m.exports == 0


def test_close_refuses_while_views_are_alive(small_file):
    m = zl.MemoryMap.from_file(small_file)
    arr = np.asarray(m)
    with pytest.raises(zl.MappingInUse) as info:
        m.close()
    assert isinstance(info.value, BufferError)
    assert "1 view" in str(info.value)
    assert arr[1] == 1  # still mapped
    del arr
    m.close()
    assert m.closed
    m.close()  # idempotent
    with pytest.raises(zl.MappingError, match="closed"):
        len(m)
    with pytest.raises(zl.MappingError, match="closed"):
        memoryview(m)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with zl.MemoryMap.from_file(path) as m:
        assert m.size == 0
        assert bytes(m) == b""


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unmappable_paths_name_the_path(tmp_path, kind):
    path = tmp_path / "nope" if kind == "missing" else tmp_path
    with pytest.raises(zl.MappingError) as info:
        zl.MemoryMap.from_file(path)
    assert info.value.filename == str(path)
