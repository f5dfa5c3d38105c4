"""The package as installed: it is not the source tree, it reports its build, and
its headers and .pxd files ship."""
import glob
import io
import os
import subprocess
import sys

import zigllama


def test_imports_installed_package_not_sources(repo_root):
    pkg_dir = os.path.realpath(os.path.dirname(zigllama.__file__))
    assert pkg_dir != os.path.realpath(os.path.join(repo_root, "zigllama")), (
        f"the tests imported zigllama from the source tree ({pkg_dir}): install the package "
        "(pip install '.[test]') and run them from tests/, as the README says"
    )
    assert glob.glob(os.path.join(pkg_dir, "_core", "*.so")), f"no compiled extensions in {pkg_dir}"


def test_show_config_reports_build():
    buf = io.StringIO()
    zigllama.show_config(file=buf)
    out = buf.getvalue()
    assert f"zigllama {zigllama.__version__}" in out
    for word in ("compiler", "openmp", "cpu_features", "simd_kernels", "threads"):
        assert word in out


def test_get_include_has_headers_and_pxds():
    inc = zigllama.get_include()
    assert os.path.isfile(os.path.join(inc, "zigllama", "zl_cpu.h"))
    core = os.path.dirname(inc)
    assert os.path.isfile(os.path.join(core, "platform.pxd"))


def test_cpu_features_match_proc_cpuinfo():
    from zigllama._core import platform

    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    feats = platform.cpu_features()
    if flags:
        assert feats["avx2"] == ("avx2" in flags)
        assert feats["fma"] == ("fma" in flags)
        assert feats["f16c"] == ("f16c" in flags)


def test_disable_simd_env_forces_portable_kernels():
    code = "from zigllama._core import platform; print(platform.simd_kernels(), platform.simd_disabled())"
    env = dict(os.environ, ZIGLLAMA_DISABLE_SIMD="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_num_threads_setting(monkeypatch):
    monkeypatch.setenv("ZIGLLAMA_NUM_THREADS", "3")
    assert zigllama.num_threads() == 3
    zigllama.set_num_threads(1)
    try:
        assert zigllama.num_threads() == 1
    finally:
        zigllama.set_num_threads(None)
    monkeypatch.setenv("ZIGLLAMA_NUM_THREADS", "zero")
    try:
        zigllama.num_threads()
    except ValueError as e:
        assert "ZIGLLAMA_NUM_THREADS" in str(e)
    else:
        raise AssertionError("a bad ZIGLLAMA_NUM_THREADS must raise")


def test_cli_topology_runs():
    from zigllama.cli import main

    assert main(["topology"]) == 0
