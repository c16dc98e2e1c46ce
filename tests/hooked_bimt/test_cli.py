import subprocess
import sys
from pathlib import Path

import pytest

from hooked_bimt import TrainResult
from hooked_bimt.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_train_subcommand_saves_a_loadable_result(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--regime", "l1_swap", "--steps", "40", "--seed", "3", "--preset", "quick", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out) in printed
    result = TrainResult.load(out)
    assert result.seed == 3 and result.regime.name == "l1_swap" and result.config.steps == 40 and result.finished
    assert result.metrics["peak_memory_bytes"] > 0  # the CLI meters training memory, as the study does


def test_unknown_regime_is_rejected_before_training(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--regime", "bimtt", "--out", "x"])
    assert "invalid choice: 'bimtt'" in capsys.readouterr().err


def test_reproduce_is_registered_only_when_its_module_exists():
    names = build_parser()._subparsers._group_actions[0].choices
    try:
        import hooked_bimt.study.reproduce  # noqa: F401
    except ModuleNotFoundError:
        assert "reproduce" not in names
    else:
        assert "reproduce" in names


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "hooked_bimt", "train", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "--regime" in proc.stdout
