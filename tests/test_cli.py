"""The ``zigllama`` command line as a user meets it: help everywhere, one-line
errors with exit codes, and the bench command printing its tables."""
import subprocess
import sys

import pytest

from zigllama.cli import COMMANDS, main


def run_cli(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "zigllama", *argv], capture_output=True, text=True,
                          timeout=timeout)


def test_every_command_is_installed_and_has_help():
    top = run_cli("--help")
    assert top.returncode == 0
    for name in COMMANDS:
        assert name in top.stdout
        sub = run_cli(name, "--help")
        assert sub.returncode == 0 and "usage: zigllama " + name in sub.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_console_script_entry_point():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "zigllama"]
    assert ep.value == "zigllama.cli:main"


def test_bench_prints_tables_against_peers():
    proc = run_cli("bench", "--only", "tensor,allocator")
    assert proc.returncode == 0, proc.stderr
    assert "## Tensor operations" in proc.stdout and "## Allocators" in proc.stdout
    assert "numpy" in proc.stdout and "failed" not in proc.stdout


def test_bench_rejects_unknown_names(capsys):
    assert main(["bench", "--only", "warp-drive"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["inspect", "validate", "load"])
def test_file_commands_on_a_missing_file_fail_in_one_line(command):
    proc = run_cli(command, "/nonexistent/model.gguf")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "model.gguf" in proc.stderr and ("error" in proc.stderr or "invalid" in proc.stderr)
