"""Several named maps of model files, and their total use (Zig: ModelFileMapper)."""
from __future__ import annotations

import errno
from collections.abc import Iterator
from types import TracebackType
from typing import Literal, NoReturn

from ..errors import MappingInUse, MappingNotFound, NotCopyable
from .mapping_flags import MapFlags, Protection, invalid
from .mapping_strategy import MappingOptimizer, MappingStrategy, page_size
from .memory_mapping import MappingStats, MemoryMap


class ModelFileMapper:
    """Several named maps of model files, and their total use (Zig: ModelFileMapper).

    Unlike the Zig original, which returns pointers into a growing ArrayList (so
    the second load can move the first map), each map here is its own object and
    stays valid for as long as anyone holds it.
    """

    def __init__(self) -> None:
        self._maps: dict[str, MemoryMap] = {}

    def open(self, name: str, path: str | bytes, *, strategy: str | MappingStrategy = "lazy",
             protection: Protection | int | str = "r", flags: MapFlags | int | str = "private") -> MemoryMap:
        """Map ``path`` under ``name`` and apply ``strategy``; returns the MemoryMap.

        strategy: "lazy", "prefault", "lock", "auto" (ask
        :meth:`MappingOptimizer.detect_optimal_strategy`) or a MappingStrategy.
        If the strategy fails (a lock over RLIMIT_MEMLOCK), the map is closed and
        the error raised.
        """
        if name in self._maps:
            raise invalid(f"a map named {name!r} is already open", path)
        mapping = MemoryMap.from_file(path, protection, flags)
        try:
            if isinstance(strategy, str):
                strategy = (MappingOptimizer.detect_optimal_strategy(mapping.size) if strategy == "auto"
                            else MappingStrategy.named(strategy, mapping.size))
            strategy.apply(mapping)
        except BaseException:
            mapping.close()
            raise
        self._maps[name] = mapping
        return mapping

    def get(self, name: str) -> MemoryMap:
        """The map opened under ``name`` (KeyError if none)."""
        try:
            return self._maps[name]
        except KeyError:
            raise MappingNotFound(errno.ENOENT, f"no map named {name!r}") from None

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._maps

    def __len__(self) -> int:
        return len(self._maps)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._maps))

    def close(self, name: str | None = None) -> None:
        """Close the map ``name``, or every map. Maps with live views stay open
        and make close() raise MappingInUse naming them, after the others closed."""
        names = list(self._maps) if name is None else [name]
        busy = []
        for n in names:
            mapping = self.get(n)
            try:
                mapping.close()
            except MappingInUse:
                busy.append(n)
            else:
                del self._maps[n]
        if busy:
            raise MappingInUse(errno.EBUSY, f"maps with live views stay open: {', '.join(map(repr, busy))}")

    def stats(self) -> MappingStats:
        """The MappingStats of every map, summed (locked: any map is locked)."""
        every = [m.stats() for m in self._maps.values()]
        return MappingStats(
            sum(s.size for s in every), page_size(), sum(s.pages for s in every),
            sum(s.resident_bytes for s in every), any(s.locked for s in every))

    @property
    def total_mapped_bytes(self) -> int:
        """Bytes mapped across every map."""
        return sum(m.size for m in self._maps.values())

    @property
    def total_resident_bytes(self) -> int:
        """Bytes of every map in RAM now (mincore)."""
        return self.stats().resident_bytes

    def __enter__(self) -> ModelFileMapper:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        self.close()
        return False

    def __reduce__(self) -> NoReturn:
        raise NotCopyable(f"a {type(self).__name__} cannot be pickled or copied: it holds open maps; pickle the paths and open them again")

    def __repr__(self) -> str:
        return f"<ModelFileMapper {len(self._maps)} maps, {self.total_mapped_bytes} bytes>"
