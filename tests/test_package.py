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
    pkg_dir = os.path.dirname(os.path.abspath(zigllama.__file__))
    assert os.path.realpath(pkg_dir) != os.path.realpath(os.path.join(repo_root, "zigllama")) or \
        glob.glob(os.path.join(pkg_dir, "_core", "*.so")), "tests must run against a built package"


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
    from zigllama._core import platform

    feats = platform.cpu_features()
    avx2 = all(feats[k] for k in ("avx", "avx2", "fma", "f16c", "os_avx"))
    avx512 = avx2 and all(feats[k] for k in ("avx512f", "avx512bw", "avx512vl", "avx512dq", "os_avx512"))
    supported = ["portable"] + (["avx2"] if avx2 else []) + (["avx512"] if avx512 else [])
    assert platform.simd_supported_paths() == supported
    if not os.environ.get("ZIGLLAMA_SIMD") and not os.environ.get("ZIGLLAMA_DISABLE_SIMD"):
        assert platform.simd_path() == supported[-1]
        assert platform.simd_vnni() == (avx512 and feats["avx512_vnni"], avx2 and feats["avx_vnni"])


@pytest.mark.parametrize("request_, disable", [("portable", ""), ("avx2", ""), ("avx512", ""),
                                               ("nonsense", ""), ("", "1"), ("avx512", "1")])
def test_simd_env_picks_the_path(request_, disable):
    """ZIGLLAMA_SIMD caps the path at what the CPU supports; ZIGLLAMA_DISABLE_SIMD=1 means
    portable unless ZIGLLAMA_SIMD names a path; an unknown name is ignored."""
    from zigllama._core import platform

    supported = platform.simd_supported_paths()
    code = ("from zigllama._core import platform as p; import zigllama, io; b = io.StringIO();"
            "zigllama.show_config(file=b); print(p.simd_path(), p.simd_kernels(), 'path: ' + p.simd_path() in b.getvalue())")
    env = dict(os.environ, ZIGLLAMA_SIMD=request_, ZIGLLAMA_DISABLE_SIMD=disable)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if request_ in ("portable", "avx2", "avx512"):
        expected = supported[min(["portable", "avx2", "avx512"].index(request_), len(supported) - 1)]
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
