"""``zigllama demo`` runs its worked example and exits 0."""
from zigllama.cli import main


def test_demo_runs_and_matches_numpy(capsys):
    assert main(["demo", "--tokens", "2", "--dim", "16"]) == 0
    out = capsys.readouterr().out
    assert "all results match numpy" in out
    assert "UseAfterReset" in out
    assert "ok (0 bytes live)" in out


def test_demo_rejects_bad_sizes(capsys):
    assert main(["demo", "--dim", "0"]) == 1
    assert "InvalidShape" in capsys.readouterr().err
