"""Splitting a GGUF model into shards and merging them back, as llama.cpp's
``llama-gguf-split`` does.

Shards are named ``PREFIX-00001-of-00003.gguf``. Each holds the keys ``split.no``
(uint16, from 0), ``split.tensors.count`` (int32, tensors of the whole model) and
``split.count`` (uint16, shards), in that order after any other keys; the first
shard also carries every key of the model, the others only these three. Tensors
keep their order; a new shard starts every ``max_tensors`` tensors, or when the
next tensor (its bytes padded to 32, as llama-gguf-split counts them) would take the
shard's tensor data past ``max_size`` bytes. Unlike llama-gguf-split, a tensor
larger than ``max_size`` gets a shard of its own instead of an error.

Merging reads the shards (checked as ``GGUFModelLoader`` checks them) and writes one
file with the first shard's keys minus the ``split.*`` ones: a model split and
merged again is the original file byte for byte. (llama-gguf-split's merge keeps the
keys with ``split.count`` 0 instead; zigllama reads such files as unsplit.)
"""
import contextlib
import os
import re

from .errors import GGUFError, GGUFInvalidValue, GGUFLimitExceeded
from ._core.gguf_format import GGUF_DEFAULT_ALIGNMENT, GGUFReader, GGUFValueType
from ._core.gguf_model_loader import GGUFModelLoader

__all__ = ["SPLIT_KEYS", "shard_path", "parse_size", "plan_split", "split_model", "merge_model"]

SPLIT_NO = "split.no"
SPLIT_COUNT = "split.count"
SPLIT_TENSORS_COUNT = "split.tensors.count"
SPLIT_KEYS = (SPLIT_NO, SPLIT_TENSORS_COUNT, SPLIT_COUNT)  # the order the shards carry them in
_MAX_SHARDS = 65535  # split.count is a uint16
_COPY_CHUNK = 64 << 20
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)


def shard_path(prefix, index, count):
    """The path of shard `index` (from 0) of `count`: ``PREFIX-0000i-of-0000n.gguf``."""
    return f"{os.fspath(prefix)}-{index + 1:05d}-of-{count:05d}.gguf"


def parse_size(text):
    """Bytes in '500M', '2G', '1.5G' or '123456' (K, M, G, T are powers of 1000, as
    llama-gguf-split counts them)."""
    m = _SIZE.match(str(text))
    if not m:
        raise GGUFInvalidValue(f"{text!r} is not a size (a number with K, M, G or T)")
    n = int(float(m[1]) * 1000 ** " KMGT".index(m[2].upper() or " "))
    if n <= 0:
        raise GGUFInvalidValue(f"a maximum size must be positive, not {text!r}")
    return n


def _padded(n):
    return -(-n // GGUF_DEFAULT_ALIGNMENT) * GGUF_DEFAULT_ALIGNMENT


def plan_split(tensors, max_tensors=None, max_size=None, no_tensor_first_split=False):
    """Tensor infos grouped into shards (a list of lists, in order). With neither
    limit, 128 tensors per shard (llama-gguf-split's default)."""
    if max_size is None and max_tensors is None:
        max_tensors = 128
    if max_tensors is not None and max_tensors < 1:
        raise GGUFInvalidValue(f"at least one tensor per shard, not {max_tensors}")
    shards = [[]] if no_tensor_first_split else []
    current, size = None, 0
    for i, info in enumerate(tensors):
        n = _padded(info.nbytes)
        if max_size is not None:
            new = current is None or (size + n > max_size and bool(current))
        else:
            new = current is None or i % max_tensors == 0
        if new:
            current, size = [], 0
            shards.append(current)
        current.append(info)
        size += n
    if not shards:
        shards.append([])
    return shards


def _copy_tensor(reader, writer, info):
    raw = reader.raw_tensor(info.name).reshape(-1)
    writer.write_tensor_bytes(info.name, (raw[i:i + _COPY_CHUNK] for i in range(0, len(raw), _COPY_CHUNK)))


def _add_split_keys(writer, no, count, n_tensors):
    writer.add(SPLIT_NO, no, GGUFValueType.UINT16)
    writer.add(SPLIT_TENSORS_COUNT, n_tensors, GGUFValueType.INT32)
    writer.add(SPLIT_COUNT, count, GGUFValueType.UINT16)


def _copy_keys(md, writer, skip=()):
    for key in md:
        if key in skip:
            continue
        if key == "general.alignment":
            writer.add(key, md[key], GGUFValueType.UINT32)  # the writer must know it
        else:
            writer.add_raw(key, md.raw_value(key))


def split_model(src, prefix, *, max_tensors=None, max_size=None, no_tensor_first_split=False,
                force=False, dry_run=False, progress=None):
    """Split the GGUF file `src` into shards ``PREFIX-0000i-of-0000n.gguf``.

    Returns the list of (shard path, tensor infos). With `dry_run` nothing is
    written. An existing shard path is an error unless `force`; if writing fails,
    the shards this call wrote are removed. `progress(done, total)` counts bytes.
    """
    from .commands._files import atomic_output, check_output
    from .gguf_writer import GGUFWriter

    with GGUFReader(src) as r:
        md = r.metadata
        if (md.get_int(SPLIT_COUNT) or 0) > 1:
            raise GGUFError(f"{src}: already shard {md.get_int(SPLIT_NO, 0) + 1} of "
                            f"{md.get_int(SPLIT_COUNT)}; merge the shards first")
        if r.tensor_count > 2**31 - 1:
            raise GGUFLimitExceeded(f"{src}: {r.tensor_count} tensors do not fit split.tensors.count (int32)")
        groups = plan_split(r.tensors, max_tensors, max_size, no_tensor_first_split)
        if len(groups) > _MAX_SHARDS:
            raise GGUFLimitExceeded(f"{src}: {len(groups)} shards; split.count holds at most {_MAX_SHARDS}")
        plan = [(shard_path(prefix, i, len(groups)), g) for i, g in enumerate(groups)]
        for path, _ in plan:
            check_output(path, (src,), force)
        if dry_run:
            return plan
        total = sum(info.nbytes for info in r.tensors)
        done = 0
        written = []
        try:
            for i, (path, group) in enumerate(plan):
                with atomic_output(path, (src,), force) as tmp:
                    with GGUFWriter(tmp, byte_order=r.byte_order, version=r.version) as w:
                        if i == 0:
                            _copy_keys(md, w, skip=SPLIT_KEYS)
                        _add_split_keys(w, i, len(plan), r.tensor_count)
                        for info in group:
                            w.add_tensor_info(info.name, info.shape, info.ggml_type)
                        w.write_header()
                        for info in group:
                            _copy_tensor(r, w, info)
                            done += info.nbytes
                            if progress is not None:
                                progress(done, total)
                written.append(path)
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
    return plan


def merge_model(first, dst, *, force=False, progress=None):
    """Merge the shards of a split model (any shard's path names them all) into
    the single file `dst`. Returns the shard paths read."""
    from .commands._files import atomic_output
    from .gguf_writer import GGUFWriter

    with GGUFModelLoader(first) as model:
        if len(model.readers) < 2 and not model.metadata.get_int(SPLIT_COUNT):
            raise GGUFError(f"{first}: not a split model (no {SPLIT_COUNT} key and no -0000i-of-0000n name)")
        head = model.readers[0]
        for r in model.readers[1:]:
            if r.byte_order != head.byte_order:
                raise GGUFInvalidValue(f"{r.path}: {r.byte_order}-endian, the first shard is {head.byte_order}-endian")
        total = sum(info.nbytes for info in model.tensors)
        done = 0
        with atomic_output(dst, model.paths, force) as tmp:
            with GGUFWriter(tmp, byte_order=head.byte_order, version=head.version) as w:
                _copy_keys(head.metadata, w, skip=SPLIT_KEYS)
                for info in model.tensors:
                    w.add_tensor_info(info.name, info.shape, info.ggml_type)
                w.write_header()
                for r in model.readers:
                    for info in r.tensors:
                        _copy_tensor(r, w, info)
                        done += info.nbytes
                        if progress is not None:
                            progress(done, total)
        return list(model.paths)
