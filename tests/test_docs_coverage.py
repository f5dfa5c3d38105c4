"""The docs are a course: each page is read beside one ZigLlama module.

A page's side-by-side table (header `Zig ... | zigllama ... | what changed ...`) must
have a row for every public name of its Zig module (the lists in zig_public_names.py).
A row covers the names written in code spans of its first cell: `Tensor.matmul`,
`MemoryMap.fromFile(path, ...)` (a call covers the name before the parenthesis) or a
group, `GGMLType.{q4_0, q4_1}`. A covering row must fill its other two cells: the
zigllama counterpart (or the reason there is none) and what changed.

The index links every page, and every page has at least one runnable example
(test_docs.py runs them).
"""
import os
import re

import pytest

from zig_public_names import ZIG_PUBLIC_NAMES, ZIG_SOURCES

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
PAGES = sorted(ZIG_PUBLIC_NAMES)

CODE_SPAN = re.compile(r"`([^`]+)`")
GROUP = re.compile(r"([A-Za-z_][\w.]*)\.\{([^}]*)\}")
DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
RULE_ROW = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def split_row(line):
    cells = CELL_SEPARATOR.split(line.strip())
    if cells and cells[0] == "":
        cells = cells[1:]
    if cells and cells[-1] == "":
        cells = cells[:-1]
    return [c.strip() for c in cells]


def tables(text):
    """Yield (header cells, body rows) for each markdown table of a page."""
    block = []
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and RULE_ROW.match(block[1].strip()):
            yield split_row(block[0]), [split_row(row) for row in block[2:]]
        block = []


def is_side_by_side(header):
    return (len(header) >= 3 and "zig" in header[0].lower()
            and "zigllama" in header[1].lower() and "changed" in header[2].lower())


def names_in_cell(cell):
    """The dotted names a table cell writes in code spans, groups expanded."""
    names = set()
    for span in CODE_SPAN.findall(cell):
        def expand(match):
            owner, members = match.group(1), match.group(2)
            for member in members.split(","):
                found = DOTTED_NAME.search(member)
                if found:
                    names.add(f"{owner}.{found.group(0)}")
            return " "
        names.update(DOTTED_NAME.findall(GROUP.sub(expand, span)))
    return names


def side_by_side_rows(text):
    return [row for header, rows in tables(text) if is_side_by_side(header) for row in rows]


def read_page(page):
    path = os.path.join(DOCS, page)
    if not os.path.exists(path):
        pytest.fail(f"docs/{page} is missing: it is the page for {ZIG_SOURCES[page]}")
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("page", PAGES)
def test_every_public_zig_name_has_a_row(page):
    rows = side_by_side_rows(read_page(page))
    assert rows, f"docs/{page} has no 'Zig | zigllama | what changed' table"
    covered = set()
    for row in rows:
        covered |= names_in_cell(row[0])
    missing = [name for name in ZIG_PUBLIC_NAMES[page] if name not in covered]
    assert not missing, (f"docs/{page} has no row for these public names of "
                         f"{ZIG_SOURCES[page]}: {', '.join(missing)}")


@pytest.mark.parametrize("page", PAGES)
def test_rows_say_what_replaces_the_zig_name_and_why(page):
    wanted = set(ZIG_PUBLIC_NAMES[page])
    for row in side_by_side_rows(read_page(page)):
        if names_in_cell(row[0]) & wanted:
            assert len(row) >= 3 and row[1] and row[2], (
                f"docs/{page}: the row for {row[0]} leaves a cell empty")


@pytest.mark.parametrize("page", PAGES)
def test_side_by_side_rows_have_the_header_cells(page):
    # A stray `|` shifts the text into the wrong column; an escaped `\|` does not.
    for header, rows in tables(read_page(page)):
        if is_side_by_side(header):
            for row in rows:
                assert len(row) == len(header), f"docs/{page}: {len(row)} cells in row {row[0]}"


@pytest.mark.parametrize("page", PAGES)
def test_page_has_a_runnable_example(page):
    assert "```python" in read_page(page), f"docs/{page} has no ```python example"


def test_index_links_every_page():
    with open(os.path.join(DOCS, "index.md"), encoding="utf-8") as f:
        index = f.read()
    linked = set(re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]*)?\)", index))
    on_disk = {f for f in os.listdir(DOCS) if f.endswith(".md") and f != "index.md"}
    assert not (set(PAGES) | on_disk) - linked


def test_every_page_has_a_name_list():
    on_disk = {f for f in os.listdir(DOCS) if f.endswith(".md") and f != "index.md"}
    assert on_disk <= set(PAGES), "a docs page without a list in zig_public_names.py"


def test_name_lists_have_no_repeats():
    for page, names in ZIG_PUBLIC_NAMES.items():
        assert len(names) == len(set(names)), page


def test_cell_parser():
    cell = r"`MemoryMap.fromFile(path, flags)`, `lock()` / `GGMLType.{q4_0, q8_0}` `a\|b`"
    assert names_in_cell(cell) == {"MemoryMap.fromFile", "path", "flags", "lock",
                                   "GGMLType.q4_0", "GGMLType.q8_0", "a", "b"}
    assert names_in_cell("Tensor.init, no code span") == set()
    text = ("| Zig | zigllama | what changed |\n|---|---|---|\n| `A.b` | `x` | y |\n\n"
            "| Pitfall in Zig | what happens |\n|---|---|\n| `A.c` | z |\n")
    assert side_by_side_rows(text) == [["`A.b`", "`x`", "y"]]
    assert split_row(r"| `a \| b` | c |") == [r"`a \| b`", "c"]
