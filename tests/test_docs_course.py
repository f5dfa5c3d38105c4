"""The docs are a course whose listings must stay true.

Three kinds of listing are checked:

- A quote of zigllama's own code: a line ``From `path:first-last`:`` followed by a
  fenced block. The block must occur verbatim in that file of the repository at
  exactly those lines. When the code moves, the failure names the page, the listing
  and where the excerpt is now (or that it is gone), so it can be fixed at merge time;
  ``python tests/test_docs_course.py --fix`` rewrites the line numbers of excerpts
  that only moved.
- A reference to the ZigLlama source: a code span ``file.zig:line`` or
  ``file.zig:first-last`` (``src/...`` paths, or a bare foundation file name). The
  docs never copy the Zig code; ``zig_citations.json`` records, for the pinned commit,
  each file's line count and a SHA-256 of every cited range (text only of hashes: no
  Zig source is copied into this repository). The test checks that every reference
  in the docs is recorded and in range, and that nothing recorded is uncited (CI has
  no network). With a ZigLlama checkout, ``python tests/test_docs_course.py --record
  PATH`` records the docs' references and ``--verify PATH`` finds each recorded range
  by content in the real source.
- Every ```cython block compiles, verbatim, against the zigllama under test; every
  page has exercises whose solutions are ```python blocks (test_docs.py runs them).
"""
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
CITATIONS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zig_citations.json")

QUOTE = re.compile(r"^From `(?P<path>[^`:\s]+):(?P<first>\d+)-(?P<last>\d+)`:\n\n?"
                   r"```(?P<lang>[\w+-]*)\n(?P<body>.*?)^```", re.M | re.S)
ZIG_REF = re.compile(r"`(?P<file>(?:src/(?:\w+/)*)?\w+\.zig):(?P<first>\d+)(?:-(?P<last>\d+))?`")
CYTHON_BLOCK = re.compile(r"^```cython\n(.*?)^```", re.M | re.S)
# Bare names of the five foundation files; other files are cited by their path.
FOUNDATION = {"tensor.zig", "memory_mapping.zig", "gguf_format.zig", "blas_integration.zig", "threading.zig"}
LESSON_PAGES = ["tensors.md", "memory-management.md", "memory-mapping.md", "gguf-format.md",
                "quantization.md", "blas-integration.md", "threading.md"]


def pages():
    return sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))


def read(page):
    with open(os.path.join(DOCS, page), encoding="utf-8") as f:
        return f.read()


def quotes(text):
    return list(QUOTE.finditer(text))


def find_excerpt(lines, excerpt):
    """1-based first lines at which ``excerpt`` (a list of lines) occurs in ``lines``."""
    n = len(excerpt)
    return [i + 1 for i in range(len(lines) - n + 1) if lines[i:i + n] == excerpt]


def check_quote(page, number, match):
    """None if the quote is true, else a message saying what went stale and where."""
    path, first, last = match["path"], int(match["first"]), int(match["last"])
    where = f"docs/{page}, listing {number} ({path}:{first}-{last})"
    full = os.path.join(ROOT, path)
    if not os.path.isfile(full):
        return f"{where}: the file {path} does not exist"
    with open(full, encoding="utf-8") as f:
        lines = f.read().splitlines()
    excerpt = match["body"].splitlines()
    if last - first + 1 != len(excerpt):
        return f"{where}: cites {last - first + 1} lines, the excerpt has {len(excerpt)}"
    if lines[first - 1:last] == excerpt:
        return None
    found = find_excerpt(lines, excerpt)
    if found:
        now = ", ".join(f"{s}-{s + len(excerpt) - 1}" for s in found)
        return f"{where}: the excerpt moved to line(s) {now}; update the citation (--fix does it)"
    for i, line in enumerate(excerpt):
        if line not in lines:
            return (f"{where}: stale excerpt, its line {i + 1} is no longer in {path}: {line.strip()!r}; "
                    f"quote the current code")
    return f"{where}: stale excerpt, its lines no longer occur together in {path}; quote the current code"


@pytest.mark.parametrize("page", pages())
def test_quoted_zigllama_code_matches_its_source(page):
    problems = [p for n, m in enumerate(quotes(read(page)), 1) if (p := check_quote(page, n, m))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", LESSON_PAGES)
def test_lesson_pages_quote_zigllama_and_cite_zig(page):
    text = read(page)
    assert quotes(text), f"docs/{page} quotes none of zigllama's code"
    assert ZIG_REF.search(text), f"docs/{page} cites no Zig file:line"


def resolve(name):
    if name.startswith("src/") or name == "build.zig":
        return name
    if name in FOUNDATION:
        return f"src/foundation/{name}"
    return None


def zig_references():
    """[(page, path, first, last)] for every Zig file:line code span in the docs."""
    refs = []
    for page in pages():
        for m in ZIG_REF.finditer(read(page)):
            first = int(m["first"])
            refs.append((page, resolve(m["file"]) or m["file"], first, int(m["last"] or first)))
    return refs


def load_citations():
    with open(CITATIONS_FILE, encoding="utf-8") as f:
        return json.load(f)


def citation_key(path, first, last):
    return f"{path}:{first}-{last}"


def range_digest(lines, first, last):
    return hashlib.sha256("\n".join(lines[first - 1:last]).encode("utf-8")).hexdigest()


def test_zig_references_are_recorded_and_in_range():
    recorded = load_citations()
    problems = []
    for page, path, first, last in zig_references():
        if path not in recorded["files"]:
            problems.append(f"docs/{page}: `{path}:{first}` names a file not recorded (cite src/... paths "
                            f"for files outside src/foundation)")
            continue
        n_lines = recorded["files"][path]["lines"]
        if not 1 <= first <= last <= n_lines:
            problems.append(f"docs/{page}: `{path}:{first}-{last}` is outside the file's {n_lines} lines")
        elif citation_key(path, first, last) not in recorded["citations"]:
            problems.append(f"docs/{page}: `{path}:{first}-{last}` is not recorded; run "
                            f"python tests/test_docs_course.py --record PATH-TO-ZIGLLM")
    assert not problems, "\n".join(problems)


def test_recorded_citations_are_all_cited():
    cited = {citation_key(path, first, last) for _, path, first, last in zig_references()}
    stale = sorted(set(load_citations()["citations"]) - cited)
    assert not stale, f"recorded but cited by no page (rerun --record): {stale}"


def test_index_names_the_pinned_commit():
    pinned = load_citations()["pinned"]
    index = read("index.md")
    assert pinned["commit"] in index and pinned["repository"] in index


def zig_source_lines(source, path, commit):
    """The lines of ``path`` at ``commit`` from a ZigLlama checkout or bare repository."""
    git_dir = source if os.path.isfile(os.path.join(source, "HEAD")) else os.path.join(source, ".git")
    text = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"],
                          capture_output=True, text=True, check=True).stdout
    return text.splitlines()


def verify_against_source(source):
    """Messages for recorded ranges whose content differs from the real source."""
    recorded = load_citations()
    commit = recorded["pinned"]["commit"]
    problems = []
    for key, digest in recorded["citations"].items():
        path, span = key.rsplit(":", 1)
        first, last = map(int, span.split("-"))
        lines = zig_source_lines(source, path, commit)
        if range_digest(lines, first, last) != digest:
            width = last - first + 1
            moved = [s for s in range(1, len(lines) - width + 2)
                     if range_digest(lines, s, s + width - 1) == digest]
            problems.append(f"{key}: content differs" + (f", found at {moved}" if moved else ""))
    return problems


def record(source):
    """Rewrite zig_citations.json from the references in the docs and the real source."""
    recorded = load_citations()
    commit = recorded["pinned"]["commit"]
    files, citations = {}, {}
    for _, path, first, last in zig_references():
        lines = zig_source_lines(source, path, commit)
        files[path] = {"lines": len(lines)}
        if last > len(lines):
            raise SystemExit(f"{path}:{first}-{last} is past the end ({len(lines)} lines)")
        citations[citation_key(path, first, last)] = range_digest(lines, first, last)
    recorded["files"] = dict(sorted(files.items()))
    recorded["citations"] = dict(sorted(citations.items()))
    with open(CITATIONS_FILE, "w", encoding="utf-8") as f:
        json.dump(recorded, f, indent=1)
        f.write("\n")


def fix_moved_quotes():
    """Rewrite the line numbers of zigllama quotes that moved (content unchanged)."""
    for page in pages():
        text = read(page)

        def renumber(m):
            full = os.path.join(ROOT, m["path"])
            if not os.path.isfile(full):
                return m.group(0)
            with open(full, encoding="utf-8") as f:
                found = find_excerpt(f.read().splitlines(), m["body"].splitlines())
            if len(found) != 1:
                return m.group(0)
            last = found[0] + len(m["body"].splitlines()) - 1
            return m.group(0).replace(f"{m['path']}:{m['first']}-{m['last']}`", f"{m['path']}:{found[0]}-{last}`", 1)

        new = QUOTE.sub(renumber, text)
        if new != text:
            with open(os.path.join(DOCS, page), "w", encoding="utf-8") as f:
                f.write(new)
            print(f"renumbered quotes in docs/{page}")


CYTHON_SETUP = """
import numpy
import zigllama
from Cython.Build import cythonize
from setuptools import Extension, setup

names = {names!r}
setup(name="docs_blocks", ext_modules=cythonize(
    [Extension(n, [n + ".pyx"], include_dirs=[zigllama.get_include(), numpy.get_include()]) for n in names],
    compiler_directives={{"language_level": 3}}),
    options={{"build_ext": {{"parallel": 2}}}})
"""


def cython_blocks():
    return [(page, i, body) for page in pages() for i, body in enumerate(CYTHON_BLOCK.findall(read(page)), 1)]


def test_every_cython_block_compiles_verbatim(tmp_path):
    import outside_extension
    blocks = cython_blocks()
    assert blocks, "no ```cython block in the docs"
    files = {}
    for page, i, body in blocks:
        files[f"doc_{page[:-3].replace('-', '_')}_{i}.pyx"] = body
    names = [name[:-4] for name in files]
    files["setup.py"] = CYTHON_SETUP.format(names=names)
    outside_extension.build(tmp_path, files, setup_args=())
    modules = {name: outside_extension.load(tmp_path, name) for name in names}
    # The tensors page's example adds initialised operands: zeros + 1.5 everywhere.
    import numpy as np
    import zigllama
    out = modules["doc_tensors_1"].add_in(zigllama.ArenaAllocator())
    assert np.asarray(out).tolist() == [[1.5] * 8] * 4


@pytest.mark.parametrize("page", LESSON_PAGES)
def test_lesson_pages_have_exercises_with_solutions(page):
    text = read(page)
    assert "## Exercises" in text, f"docs/{page} has no '## Exercises' section"
    exercises = text.split("## Exercises", 1)[1].split("\n## ", 1)[0]
    asked = re.findall(r"^\d+\. ", exercises, re.M)
    assert len(asked) >= 2, f"docs/{page}: fewer than two exercises"
    assert exercises.count("```python") >= 1, f"docs/{page}: exercises without runnable solutions"


def test_quote_checker_reports_what_went_stale(tmp_path, monkeypatch):
    src = tmp_path / "zigllama"
    src.mkdir()
    (src / "k.c").write_text("a\nb\nc\nd\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    ok, moved, gone = (QUOTE.search(f"From `zigllama/k.c:{r}`:\n\n```c\n{body}```\n")
                       for r, body in (("2-3", "b\nc\n"), ("1-2", "b\nc\n"), ("2-3", "b\nx\n")))
    assert check_quote("p.md", 1, ok) is None
    assert "moved to line(s) 2-3" in check_quote("p.md", 2, moved)
    assert "'x'" in check_quote("p.md", 3, gone)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fix"]:
        fix_moved_quotes()
    elif sys.argv[1:2] == ["--record"] and len(sys.argv) == 3:
        record(sys.argv[2])
        print("\n".join(verify_against_source(sys.argv[2])) or "recorded; all ranges match the source")
    elif sys.argv[1:2] == ["--verify"] and len(sys.argv) == 3:
        print("\n".join(verify_against_source(sys.argv[2])) or "all recorded ranges match the source")
    else:
        raise SystemExit("usage: test_docs_course.py --fix | --record ZIGLLM | --verify ZIGLLM")
