"""The type stubs as users meet them: mypy reads the installed package (py.typed and
the .pyi files it ships), accepts a script using the public API under --strict,
reports a script that misuses it, and stubtest finds the stubs true to the
compiled modules."""
import importlib.util
import os
import subprocess
import sys

import pytest

import zigllama

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "typing_example.py")
ALLOWLIST = os.path.join(HERE, "stubtest_allowlist.txt")
PACKAGE = os.path.dirname(os.path.abspath(zigllama.__file__))


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    # one cache for the module: numpy's stubs are analysed once
    return str(tmp_path_factory.mktemp("mypy_cache"))


def run_mypy(cache_dir, *files):
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", cache_dir,
         "--no-error-summary", "--hide-error-context", *files],
        capture_output=True, text=True, cwd=HERE, timeout=300,
    )


def test_package_ships_its_stubs():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))
    # .pyi beside a .py only where the .py cannot say it: the lazy package and
    # the enum built from the C table
    for name in ("__init__", "ggml_types"):
        assert os.path.isfile(os.path.join(PACKAGE, name + ".pyi")), name
    compiled = {f.split(".")[0] for f in os.listdir(os.path.join(PACKAGE, "_core"))
                if f.endswith((".so", ".pyd"))}
    assert compiled, "the compiled modules are not built"
    for name in sorted(compiled):
        assert os.path.isfile(os.path.join(PACKAGE, "_core", name + ".pyi")), name


def test_mypy_strict_accepts_the_example(mypy_cache):
    result = run_mypy(mypy_cache, EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_runs():
    # what the annotations claim is what happens
    spec = importlib.util.spec_from_file_location("typing_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main() == 0


MISUSES = {
    "Tensor.zeros((2, 2)).fill('one')": 'Argument 1 to "fill" of "Tensor" has incompatible type "str"',
    "x: str = get_blas().dot(np.ones(3), np.ones(3))": 'Incompatible types in assignment (expression has type "float"',
    "Tensor.zeros((2, 2)) @ 2.0": 'Unsupported operand types for @ ("Tensor" and "float")',
    "y: str = ThreadPool(2).submit(len, 'abc').result()": 'expression has type "int", variable has type "str"',
    "quantize(np.ones(32), 'Q8_0').no_such_method()": 'has no attribute "no_such_method"',
    "zigllama.not_exported": 'Module has no attribute "not_exported"',
}


def test_mypy_reports_misuse(mypy_cache, tmp_path):
    lines = ["import numpy as np", "import zigllama",
             "from zigllama import Tensor, ThreadPool, get_blas, quantize", ""]
    first = len(lines) + 1
    lines += list(MISUSES)
    script = tmp_path / "misuse.py"
    script.write_text("\n".join(lines) + "\n")
    result = run_mypy(mypy_cache, str(script))
    assert result.returncode == 1, result.stdout + result.stderr
    reported = result.stdout.splitlines()
    for lineno, (code, message) in enumerate(MISUSES.items(), start=first):
        hits = [r for r in reported if f"misuse.py:{lineno}: error:" in r]
        assert any(message in r for r in hits), (code, hits, result.stdout)


def test_stubtest_finds_the_stubs_true_to_the_modules():
    # --ignore-unused-allowlist: from Python 3.12 the buffer slots show as
    # __buffer__ at run time, and their allowlist entries are then unused
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "zigllama", "--allowlist", ALLOWLIST,
         "--ignore-unused-allowlist", "--mypy-config-file", os.path.join(HERE, "stubtest_mypy.ini")],
        capture_output=True, text=True, cwd=HERE, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
