"""Every ```python example in docs/ runs, page by page, against the installed package.

The blocks of one page share a namespace, in order, the way a reader types them in.
Run each page in a fresh temporary working directory so examples may write files.
"""
import os
import re

import pytest

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def _pages():
    if not os.path.isdir(DOCS):
        return []
    return sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))


def python_blocks(text):
    return [m.group(1) for m in FENCE.finditer(text)]


@pytest.mark.parametrize("page", _pages())
def test_doc_examples_run(page, tmp_path, monkeypatch):
    with open(os.path.join(DOCS, page), encoding="utf-8") as f:
        blocks = python_blocks(f.read())
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page[:-3].replace('-', '_')}"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{page} (example {i + 1})", "exec")
        exec(code, namespace)


def test_fence_parser_finds_blocks():
    text = "intro\n```python\nx = 1\n```\nmid\n```python\ny = x + 1\n```\n```sh\nls\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x + 1\n"]
