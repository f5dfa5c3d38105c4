"""A short run of the GGUF fuzz target (tests/fuzz/fuzz_gguf.py; its docstring has
the command for a long one). Any finding (an exception other than GGUFError, a
crash, a leak past the RSS limit, a slow input) fails the run."""
import os
import subprocess
import sys

import zigllama

FUZZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "fuzz_gguf.py")


def test_fuzz_gguf_short_run(tmp_path):
    # the zigllama this test imported, whether installed or built in place
    where = os.path.dirname(os.path.dirname(os.path.abspath(zigllama.__file__)))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([where] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    p = subprocess.run(
        [sys.executable, FUZZ, "-runs=100000", "-rss_limit_mb=1024", "-timeout=10", "-seed=1",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Done 100000 runs" in p.stderr
    assert not [f for f in os.listdir(tmp_path) if f.startswith(("crash-", "leak-", "timeout-", "oom-"))]
