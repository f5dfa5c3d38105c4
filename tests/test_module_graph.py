"""The module graph of zigllama/_core, read from the import and cimport lines of its
.pyx, .pxd and .py files, must be the seed's (ZigLlama's foundation layer):

    allocator, platform                     (below tensor)
    tensor                                  (the bottom of the seed's graph)
    memory_mapping, blas_integration,
    threading, gguf_format                  (on tensor; gguf_format also on memory_mapping)
    quantization                            (beside gguf_format: tensor, memory_mapping,
                                             the pool of threading, platform's CPU probe)
    qmatmul                                 (on blas_integration, threading, quantization)

Pure-Python modules of _core sit on the compiled ones they name below. The package
itself (zigllama/_core/__init__.py) joins the modules that cannot import each
other: only tensor asks it (for the wiring), and it may import anything.

    python tests/test_module_graph.py [ROOT]     # prints the edges of ROOT's tree
"""
import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PACKAGE = "__init__"

# module -> the _core modules it may import or cimport (directly).
ALLOWED = {
    "platform": set(),
    "array_data": set(),
    "ggml_type_table": set(),   # the C type table, for zigllama.ggml_types
    "allocator": set(),
    "tensor": {"allocator", "platform", PACKAGE},
    "memory_mapping": {"tensor", "mapping_flags", "mapping_strategy"},
    # memory_mapping's pure Python: flags and policy below it, the mapper on it
    "mapping_flags": set(),
    "mapping_strategy": {"mapping_flags"},
    "model_file_mapper": {"memory_mapping", "mapping_flags", "mapping_strategy"},
    "blas_integration": {"tensor", "scipy_blas"},
    # blas_integration's pure Python: the library behind scipy below it, the rest on it
    "scipy_blas": set(),
    "blas_stats": set(),
    "blas_config": {"blas_integration", "scipy_blas"},
    "blas_manager": {"blas_integration", "blas_stats", "tensor"},
    "threading": {"tensor", "cpu_topology", "thread_pool_config", "thread_pool_stats"},
    # threading's pure Python, below it
    "cpu_topology": set(),
    "thread_pool_config": {"cpu_topology"},
    "thread_pool_stats": set(),
    "gguf_format": {"tensor", "memory_mapping", "gguf_value_types"},
    "gguf_value_types": set(),   # shared with the writer (zigllama/gguf_writer.py)
    "gguf_model_loader": {"gguf_format"},
    "quantization": {"tensor", "memory_mapping", "threading", "platform", "cpu_topology",
                     "quantization_arguments"},
    # quantization's pure Python: the checks of its entry points, on tensor
    "quantization_arguments": {"tensor"},
    "qmatmul": {"blas_integration", "threading", "quantization"},
    PACKAGE: None,  # the wiring: anything
}

# Inline helpers (a .pxd with no module behind it) any module may cimport.
EVERYWHERE = {"array_data"}   # a numpy array's data pointer

# Imports inside a function, run on first use, that point up the graph: each one
# named, with why.
LAZY = {
    # GGUFReader.load and .quantized hand the mapped bytes to the decoders (the
    # reader's own parsing never needs them)
    ("gguf_format", "quantization"),
    ("gguf_format", "qmatmul"),
}

_DEF = re.compile(r"^\s*(async\s+)?(c?p?def)\s+[^=]*\(")
_FROM = re.compile(r"^\s*from\s+([.\w]+)\s+c?import\s+(.+)$")
_IMPORT = re.compile(r"^\s*c?import\s+([.\w]+)")


def _target(module, package_parts):
    """The _core module a dotted import names, or None (outside _core)."""
    if module.startswith("."):
        dots = len(module) - len(module.lstrip("."))
        rest = module[dots:]
        base = package_parts[: len(package_parts) - (dots - 1)] if dots > 1 else package_parts
        module = ".".join(base + ([rest] if rest else []))
    parts = module.split(".")
    if parts[:2] != ["zigllama", "_core"]:
        return None
    return parts[2] if len(parts) > 2 else PACKAGE


def edges(root=ROOT, lazy=False):
    """{(importer, imported)} among the modules of root/zigllama/_core: the
    top-level imports, or with `lazy` those inside functions."""
    core = os.path.join(root, "zigllama", "_core")
    found = set()
    for name in sorted(os.listdir(core)):
        stem, ext = os.path.splitext(name)
        if ext not in (".pyx", ".pxd", ".py"):
            continue
        with open(os.path.join(core, name), encoding="utf-8") as f:
            text = f.read()
        # Continuation lines of a parenthesised import do not matter: the module is
        # on the first line. Docstrings and comments may show imports: skip them.
        text = re.sub(r'"""(.|\n)*?"""', "", text)
        func_indent = None  # indentation of the def we are in, if any
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            if func_indent is not None and indent <= func_indent:
                func_indent = None
            if func_indent is None and _DEF.match(line):
                func_indent = indent
                continue
            if (func_indent is not None) != lazy:
                continue
            m = _FROM.match(line)
            targets = []
            if m:
                module, names = m.group(1), m.group(2)
                target = _target(module, ["zigllama", "_core"])
                if target == PACKAGE:
                    # `from . import x, y` names modules; `from zigllama._core import f` the package
                    names = [n.strip().split(" as ")[0] for n in names.strip("()").split(",")]
                    listed = [n for n in names if os.path.exists(os.path.join(core, n + ".pyx"))
                              or os.path.exists(os.path.join(core, n + ".py"))]
                    targets = listed or [PACKAGE]
                elif target is not None:
                    targets = [target]
            else:
                m = _IMPORT.match(line)
                if m:
                    target = _target(m.group(1), ["zigllama", "_core"])
                    if target is not None:
                        targets = [target]
            for target in targets:
                if target != stem:
                    found.add((stem, target))
    return found


def test_every_module_is_placed():
    core = os.path.join(ROOT, "zigllama", "_core")
    modules = {os.path.splitext(n)[0] for n in os.listdir(core) if n.endswith((".pyx", ".py"))}
    assert modules <= set(ALLOWED), f"place {sorted(modules - set(ALLOWED))} in ALLOWED"


@pytest.mark.parametrize("importer, imported", sorted(edges() | edges(lazy=True)))
def test_edge_is_allowed(importer, imported):
    allowed = ALLOWED.get(importer, set())
    assert allowed is None or imported in allowed | EVERYWHERE or (importer, imported) in LAZY, \
        f"{importer} imports {imported}: the graph allows {importer} -> {sorted(allowed)}"


def test_lazy_imports_are_the_named_ones():
    found = {(a, b) for a, b in edges(lazy=True)
             if ALLOWED.get(a) is not None and b not in ALLOWED.get(a, set())}
    assert found <= LAZY, sorted(found - LAZY)


def test_the_graph_has_no_cycle_below_the_package():
    graph = {}
    for a, b in edges() | edges(lazy=True):
        if PACKAGE not in (a, b):
            graph.setdefault(a, set()).add(b)
    state = {}

    def visit(node, path):
        if state.get(node) == "open":
            raise AssertionError("cycle: " + " -> ".join(path + [node]))
        if state.get(node) == "done":
            return
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_threading_and_blas_do_not_know_each_other():
    found = edges()
    assert ("threading", "blas_integration") not in found
    assert ("blas_integration", "threading") not in found


def test_the_parser_sees_each_spelling(tmp_path):
    core = tmp_path / "zigllama" / "_core"
    core.mkdir(parents=True)
    for n in ("a", "b", "c", "d", "e"):
        (core / f"{n}.pyx").write_text("")
    (core / "a.pyx").write_text(
        '"""from .e import x"""\n'
        "from .b cimport f\n"
        "from zigllama._core.c import g  # from .e import y\n"
        "def f(x):\n"
        "    from . import d\n"
        "import zigllama._core.e\n"
        "from zigllama._core import wire\n"
        "from ..errors import Z\n")
    assert edges(str(tmp_path)) == {("a", "b"), ("a", "c"), ("a", "e"), ("a", PACKAGE)}
    assert edges(str(tmp_path), lazy=True) == {("a", "d")}


def test_the_model_runner_uses_only_the_public_names():
    # zigllama/_model_kernels.pyx sits above the layer as an outside user would: it
    # cimports zigllama.<module>, never zigllama._core.<module> or a relative name.
    with open(os.path.join(ROOT, "zigllama", "_model_kernels.pyx"), encoding="utf-8") as f:
        lines = [line for line in f if _FROM.match(line) or _IMPORT.match(line)]
    named = [line.strip() for line in lines if "_core" in line or re.match(r"^\s*from\s+\.", line)]
    assert not named, named
    assert any(line.lstrip().startswith("from zigllama.qmatmul cimport") for line in lines)


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else ROOT
    for a, b in sorted(edges(root)):
        print(f"{a} -> {b}")
    for a, b in sorted(edges(root, lazy=True) - edges(root)):
        print(f"{a} -> {b}   (inside a function)")
