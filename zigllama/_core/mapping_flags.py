"""The protection and flags of a memory map (Zig: ``MemoryMap.Protection`` and
``MemoryMap.Flags``), and how they are spelt: an enum member, an int, letters
(``"rw"``) or ``|``-joined names (``"shared|populate"``)."""
from __future__ import annotations

import enum
import errno
from typing import TypeVar

from ..errors import InvalidArgumentType, InvalidMappingArgument

_Flag = TypeVar("_Flag", bound=enum.IntFlag)


def invalid(what: str, path: object = None) -> InvalidMappingArgument:
    """The error of a map's argument out of its domain (EINVAL)."""
    return InvalidMappingArgument(errno.EINVAL, what, path)


class Protection(enum.IntFlag):
    """What the mapped pages allow (Zig: ``MemoryMap.Protection``; mmap's PROT_*).

    Strings work wherever a Protection does: ``"r"``, ``"rw"``, ``"rx"``, or names
    joined by ``|``: ``"read|write"``. Reading is always required: every view reads.
    """
    READ = 1
    WRITE = 2
    EXEC = 4


class MapFlags(enum.IntFlag):
    """How the pages are mapped (Zig: ``MemoryMap.Flags``).

    PRIVATE (the default) or SHARED, never both: writes to a private map stay in
    this process (copy-on-write), writes to a shared map reach the file.
    POPULATE prefaults every page at map time (MAP_POPULATE). HUGE_PAGES asks for
    huge pages: MAP_HUGETLB for an anonymous map when the kernel has reserved some,
    else transparent huge pages (MADV_HUGEPAGE), else ordinary pages; the
    ``huge_pages`` property says what was granted. Strings work too:
    ``"shared|populate"``.
    """
    PRIVATE = 1
    SHARED = 2
    POPULATE = 4
    HUGE_PAGES = 8


def parse_enum(value: object, enum_type: type[_Flag], letters: dict[str, _Flag] | None, what: str) -> _Flag:
    """An IntFlag from itself, an int, or a string of letters or ``|``-joined names."""
    if isinstance(value, enum_type):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value & ~sum(enum_type):
            raise invalid(f"{what} {value!r} has bits outside {enum_type.__name__}")
        return enum_type(value)
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{what} must be a {enum_type.__name__}, an int or a str, not {type(value).__name__}")
    text = value.strip().lower()
    result = enum_type(0)
    if text and letters and all(c in letters for c in text):
        for c in text:
            result |= letters[c]
        return result
    for word in text.replace(",", "|").replace("+", "|").split("|"):
        key = word.strip().replace("-", "_").upper()
        if key not in enum_type.__members__:
            names = ", ".join(m.lower() for m in enum_type.__members__)
            raise invalid(f"unknown {what} {word.strip()!r} in {value!r}; expected {names}")
        result |= enum_type[key]
    return result


PROTECTION_LETTERS = {"r": Protection.READ, "w": Protection.WRITE, "x": Protection.EXEC}


def parse_protection(protection: object) -> Protection:
    """A readable Protection from any of its spellings."""
    p = parse_enum(protection, Protection, PROTECTION_LETTERS, "protection")
    if not p & Protection.READ:
        raise invalid(f"protection {protection!r} lacks READ: a map must be readable to be viewed")
    return p


def parse_flags(flags: object) -> MapFlags:
    """MapFlags from any of its spellings, PRIVATE unless SHARED (never both)."""
    f = parse_enum(flags, MapFlags, None, "flag")
    if f & MapFlags.PRIVATE and f & MapFlags.SHARED:
        raise invalid(f"flags {flags!r} ask for both PRIVATE and SHARED")
    if not f & MapFlags.SHARED:
        f |= MapFlags.PRIVATE
    return f
