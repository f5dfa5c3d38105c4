"""The package as installed: it is not the source tree, it reports its build, and
its headers and .pxd files ship."""
import glob
import io
import os
import subprocess
import sys

import pytest

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
        for ours, linux in (("avx512f", "avx512f"), ("avx512bw", "avx512bw"), ("avx512vl", "avx512vl"),
                            ("avx512dq", "avx512dq"), ("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni")):
            assert feats[ours] == (linux in flags), ours


def test_simd_path_is_the_widest_the_cpu_and_os_support():
    from conftest import expected_simd_path, kernel_cpu_flags, kernel_simd_paths
    from zigllama._core import platform

    supported = kernel_simd_paths()
    assert platform.simd_supported_paths() == supported
    assert platform.simd_path() == expected_simd_path()
    if platform.simd_path() == supported[-1]:
        flags = kernel_cpu_flags()
        assert platform.simd_vnni() == ("avx512" in supported and "avx512_vnni" in flags,
                                        "avx2" in supported and "avx_vnni" in flags)


@pytest.mark.parametrize("request_, disable", [("portable", ""), ("avx2", ""), ("avx512", ""),
                                               ("nonsense", ""), ("", "1"), ("avx512", "1")])
def test_simd_env_picks_the_path(request_, disable):
    """ZIGLLAMA_SIMD caps the path at what the CPU supports; ZIGLLAMA_DISABLE_SIMD=1 means
    portable unless ZIGLLAMA_SIMD names a path; an unknown name is ignored."""
    from conftest import SIMD_PATHS, kernel_simd_paths

    supported = kernel_simd_paths()
    code = ("from zigllama._core import platform as p; import zigllama, io; b = io.StringIO();"
            "zigllama.show_config(file=b); print(p.simd_path(), p.simd_kernels(), 'path: ' + p.simd_path() in b.getvalue())")
    env = dict(os.environ, ZIGLLAMA_SIMD=request_, ZIGLLAMA_DISABLE_SIMD=disable)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if request_ in SIMD_PATHS:
        expected = supported[min(SIMD_PATHS.index(request_), len(supported) - 1)]
    else:
        expected = "portable" if disable else supported[-1]
    assert out.stdout.split() == [expected, str(expected != "portable"), "True"]


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
