"""The lessons link benchmarks/README.md for figures; those links and its notes stay true.

The commentary on each benchmark table lives in benchmarks/notes/<script stem>.md and
run_all.py renders it under the table; the committed README must carry the current
notes (``python benchmarks/run_all.py --notes-only`` re-renders them), and every
section a lesson links to must exist.
"""
import importlib.util
import os
import re
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
BENCH = os.path.join(ROOT, "benchmarks")
README = os.path.join(BENCH, "README.md")
LINK = re.compile(r"\(\.\./benchmarks/README\.md(?:#([^)\s]*))?\)")


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all_for_docs", os.path.join(BENCH, "run_all.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def github_slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def readme_anchors():
    with open(README, encoding="utf-8") as f:
        return {github_slug(line.lstrip("#")) for line in f if re.match(r"#{1,6} ", line)}


def _pages():
    return sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))


@pytest.mark.parametrize("page", _pages())
def test_links_to_benchmark_sections_resolve(page):
    with open(os.path.join(DOCS, page), encoding="utf-8") as f:
        anchors = [a for a in LINK.findall(f.read()) if a]
    missing = sorted(set(anchors) - readme_anchors())
    assert not missing, f"docs/{page} links benchmarks/README.md sections that do not exist: {missing}"


def test_lessons_with_benchmark_narrative_link_its_section():
    # The pages whose narrative moved to benchmarks/README.md point at its sections.
    for page, anchor in [("threading.md", "thread-pool"), ("blas-integration.md", "gemm-backends"),
                         ("quantization.md", "dequantization"), ("quantization.md", "loading-a-whole-model"),
                         ("quantization.md", "quantized-matrix-products")]:
        with open(os.path.join(DOCS, page), encoding="utf-8") as f:
            assert anchor in LINK.findall(f.read()), f"docs/{page} does not link #{anchor}"


def test_every_note_belongs_to_a_benchmark():
    run_all = _run_all()
    names = {run_all.notes_name(b[1]) for b in run_all.BENCHMARKS}
    notes = {f[:-3] for f in os.listdir(run_all.NOTES_DIR) if f.endswith(".md")}
    assert notes and notes <= names, f"notes for no benchmark: {sorted(notes - names)}"


def test_committed_readme_carries_the_current_notes(tmp_path):
    run_all = _run_all()
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    with open(README, encoding="utf-8") as f:
        committed = f.read()
    assert run_all.rerender_notes(str(copy)) == committed, \
        "benchmarks/README.md is out of date with benchmarks/notes/: run python benchmarks/run_all.py --notes-only"


def test_rerender_is_idempotent_and_keeps_tables(tmp_path):
    run_all = _run_all()
    title, script = "Thread pool", "bench_threading.py"
    page = tmp_path / "README.md"
    page.write_text(f"# t\n\n## Machine\n\n- x\n\n## {title}\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                    "## generic backend: a heading printed by a benchmark\n\ntext\n", encoding="utf-8")
    once = run_all.rerender_notes(str(page))
    twice = run_all.rerender_notes(str(page))
    assert once == twice
    section = once.split(f"## {title}\n", 1)[1]
    assert "| 1 | 2 |" in section and "## generic backend: a heading printed by a benchmark" in section
    assert once.count(run_all.NOTES_BEGIN.format(run_all.notes_name(script))) == 1
    # A benchmark the file has no table for gets a section saying how to measure it.
    assert "## GEMM backends\n" in once and "Not measured in this file's run" in once


def test_slug():
    assert github_slug("Dequantization against ggml's C") == "dequantization-against-ggmls-c"
    assert github_slug("Threads that cooperate (mixed loop)") == "threads-that-cooperate-mixed-loop"
