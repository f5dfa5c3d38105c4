"""Build a Cython extension outside the package, as a user's project would.

The tests that show the ``.pxd`` files and headers work for other code (cimport,
nogil calls through the C APIs) write a ``.pyx`` and a ``setup.py`` into a
temporary directory and build them against the zigllama under test.
"""
import importlib
import os
import subprocess
import sys

import zigllama


def build(directory, files, setup_args=(), timeout=600):
    """Write ``files`` ({name: text}) into ``directory`` and run ``python setup.py
    [setup_args] build_ext --inplace`` there, with the zigllama under test on
    PYTHONPATH (cimport finds its .pxd files through it). Fails the test with the
    compiler's output if the build fails. Returns the environment to run the
    built module in (``directory`` is on its PYTHONPATH too)."""
    for name, text in files.items():
        (directory / name).write_text(text)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(zigllama.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(directory), package_parent, env.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, "setup.py", *setup_args, "build_ext", "--inplace"], cwd=directory,
                            env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return env


def load(directory, module):
    """``module``, built in ``directory``, imported into this process."""
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(directory))


_PROBES = {}


def pool_probes():
    """The pool's test probes (tests/pool_probes.pyx), built once per test session
    into a temporary directory like any outside extension: (module, environment to
    run a child interpreter that imports it)."""
    if not _PROBES:
        import atexit
        import pathlib
        import shutil
        import tempfile

        directory = pathlib.Path(tempfile.mkdtemp(prefix="zigllama-probes-"))
        atexit.register(shutil.rmtree, directory, True)
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "pool_probes.pyx")) as f:
            source = f.read()
        setup = (
            "import zigllama\n"
            "from Cython.Build import cythonize\n"
            "from setuptools import Extension, setup\n"
            "setup(ext_modules=cythonize([Extension('pool_probes', ['pool_probes.pyx'],\n"
            "      include_dirs=[zigllama.get_include()])], compiler_directives={'language_level': 3}))\n"
        )
        env = build(directory, {"pool_probes.pyx": source, "setup.py": setup})
        _PROBES["module"] = load(directory, "pool_probes")
        _PROBES["env"] = env
    return _PROBES["module"], _PROBES["env"]
