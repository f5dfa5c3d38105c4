"""A model in one GGUF file or split across several (llama.cpp's
``name-00001-of-00003.gguf``), read as one: the loader of gguf_format.zig."""
from __future__ import annotations

import os
import re
from typing import Any, NoReturn

from ..errors import GGUFDuplicate, GGUFError, GGUFInvalidValue, GGUFMissingKey, NotCopyable
from .gguf_format import GGUFReader, GGUFValueType, Metadata, TensorInfo
from .gguf_format import _gguf_error as gguf_error

#: A shard's file name: prefix, number, count.
SPLIT_NAME = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class GGUFModelLoader:
    """A model in one GGUF file or split across several (``name-00001-of-00003.gguf``).

    Opened from any shard, a split model reads as one: the metadata of the first
    shard (which holds the model's keys), the tensors of all shards. The helpers
    read the ``{architecture}.xxx`` keys llama.cpp defines.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = os.fspath(path)
        self.paths: list[str] = self._shard_paths(path)
        self.readers: list[GGUFReader] = []
        self._tensor_reader: dict[str, GGUFReader] = {}
        try:
            for p in self.paths:
                self.readers.append(GGUFReader(p))
            self._check_split()
            for r in self.readers:
                for info in r.tensors:
                    if info.name in self._tensor_reader:
                        raise gguf_error(GGUFDuplicate, f"tensor {info.name!r}", info.info_offset,
                                          "appears in two shards", r.path)
                    self._tensor_reader[info.name] = r
        except BaseException:
            self.close()
            raise
        self.tensors: tuple[TensorInfo, ...] = tuple(i for r in self.readers for i in r.tensors)

    @staticmethod
    def _shard_paths(path: str) -> list[str]:
        m = SPLIT_NAME.match(os.path.basename(path))
        if not m:
            return [path]
        count = int(m["count"])
        if count == 0 or not 1 <= int(m["no"]) <= count:
            raise GGUFError(f"{path}: shard {m['no']} of {m['count']} is not a valid split name")
        d = os.path.dirname(path)
        return [os.path.join(d, f"{m['prefix']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]

    def _check_split(self) -> None:
        n = len(self.readers)
        first = self.readers[0].metadata
        count = first.get_int("split.count")
        if not count:  # absent, or 0: llama-gguf-split's merge leaves split.count = 0 in its output
            if n > 1:
                raise GGUFError(f"{self.paths[0]}: named as a split model but its split.count is "
                                f"{'missing' if count is None else 0}")
            return
        if count != n:
            raise gguf_error(GGUFInvalidValue, "kv 'split.count'", first.offset("split.count"),
                              f"says {count} shards, the file names say {n}", self.paths[0])
        total = first.get_int("split.tensors.count")
        for i, r in enumerate(self.readers):
            no = r.metadata.get_int("split.no")
            if no != i:
                raise GGUFInvalidValue(f"{r.path}: split.no is {no}, expected {i} for shard {i + 1} of {n}")
            if r.metadata.get_int("split.count") != n:
                raise GGUFInvalidValue(f"{r.path}: split.count differs from the first shard's ({n})")
        found = sum(len(r.tensors) for r in self.readers)
        if total is not None and total != found:
            raise gguf_error(GGUFInvalidValue, "kv 'split.tensors.count'", first.offset("split.tensors.count"),
                              f"says {total} tensors, the shards hold {found}", self.paths[0])

    @property
    def metadata(self) -> Metadata:
        return self.readers[0].metadata

    def _required(self, key: str) -> Any:
        v = self.metadata.get(key)
        if v is None:
            raise GGUFMissingKey(f"{self.paths[0]}: the model has no {key!r} key")
        return v

    @property
    def architecture(self) -> str:
        v = self.metadata.get_str("general.architecture")
        if v is None:
            raise GGUFMissingKey(f"{self.paths[0]}: the model has no 'general.architecture' key")
        return v

    def _arch_int(self, name: str) -> Any:
        key = f"{self.architecture}.{name}"
        if key not in self.metadata:
            raise GGUFMissingKey(f"{self.paths[0]}: the model has no {key!r} key")
        v = self.metadata[key]
        if self.metadata.value_type(key) == GGUFValueType.ARRAY:
            return v  # per-layer values (some architectures vary head counts by layer)
        return self.metadata.get_int(key)

    @property
    def context_length(self) -> Any:
        return self._arch_int("context_length")

    @property
    def embedding_length(self) -> Any:
        return self._arch_int("embedding_length")

    @property
    def block_count(self) -> Any:
        return self._arch_int("block_count")

    @property
    def head_count(self) -> Any:
        return self._arch_int("attention.head_count")

    @property
    def head_count_kv(self) -> Any:
        """Key/value heads; without the key, as many as query heads (llama.cpp's default)."""
        if f"{self.architecture}.attention.head_count_kv" in self.metadata:
            return self._arch_int("attention.head_count_kv")
        return self.head_count

    @property
    def tensor_nbytes(self) -> int:
        """Bytes of all tensor data (the memory the weights take as stored)."""
        return sum(i.nbytes for i in self.tensors)

    def tensor_names(self) -> list[str]:
        """Every shard's tensor names, in shard and file order."""
        return [info.name for info in self.tensors]

    def tensor_info(self, name: str) -> TensorInfo:
        return self._reader_of(name).tensor_info(name)

    def tensor(self, name: str) -> Any:
        """A zero-copy view of a tensor's bytes (see GGUFReader.tensor)."""
        return self._reader_of(name).tensor(name)

    def load_tensor(self, name: str, out: Any = None, threads: int | None = None) -> Any:
        """A tensor of the model dequantized to float32 (see GGUFReader.load)."""
        return self._reader_of(name).load(name, out=out, threads=threads)

    def _reader_of(self, name: str) -> GGUFReader:
        try:
            return self._tensor_reader[name]
        except KeyError:
            raise GGUFMissingKey(f"{self.paths[0]}: the model has no tensor named {name!r}") from None

    def validate(self) -> None:
        for r in self.readers:
            r.validate()

    def close(self) -> None:
        for r in self.readers:
            r.close()

    def __enter__(self) -> GGUFModelLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        raise NotCopyable(f"a {type(self).__name__} cannot be pickled or copied: it holds open files; pickle its path and open it again")

    def __repr__(self) -> str:
        return f"<GGUFModelLoader {self.paths[0]!r}: {len(self.paths)} file(s), {len(self.tensors)} tensors>"
