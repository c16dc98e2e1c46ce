"""Issue 24, command-line half: an unwritable --out before training, Ctrl-C, the default preset, fast argument errors,
and the settings the Python ``train()`` prints."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hooked_bimt import MNISTSplit, TrainConfig, train
from hooked_bimt.cli import main

from bimt_fixtures import random_mnist  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _data() -> tuple[MNISTSplit, MNISTSplit]:
    return random_mnist(100)


class CtrlC:
    """A ``StepsHook`` for ``main(..., hook=)``: KeyboardInterrupt (what Ctrl-C raises) when step ``at`` (0-based)
    is about to run; ``done`` records how many optimiser steps the run had made by then."""

    def __init__(self, at: int) -> None:
        self.at, self.done = at, []

    def window(self, config: TrainConfig) -> range:
        return range(self.at, self.at + 1)

    def around(self, training, run):
        state = list(training.optimizer.state.values())
        self.done.append(int(state[0]["step"]) if state else 0)
        raise KeyboardInterrupt


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc (a folder nothing can be written in)")
def test_an_unwritable_out_is_refused_before_training_even_as_root(capsys):
    """``--out /proc/x``: os.access says yes to root; a real probe says no, before any training."""
    ctrl_c = CtrlC(at=0)  # stops a run that starts at its first step
    assert main(["train", "--regime", "bimt", "--out", "/proc/x", "--no-progress"], data=_data(), hook=ctrl_c) == 2
    assert "output path /proc/x: /proc is not writable" in capsys.readouterr().err
    assert ctrl_c.done == []


def test_ctrl_c_in_train_says_nothing_was_saved_and_how_to_start_again(tmp_path, capsys):
    """The real training loop, interrupted by KeyboardInterrupt (what Ctrl-C does) at its fourth optimiser step."""
    ctrl_c, out = CtrlC(at=3), tmp_path / "run"
    argv = ["train", "--regime", "l1", "--preset", "quick", "--steps", "20", "--out", str(out), "--no-progress"]
    code = main(argv, data=_data(), hook=ctrl_c)
    err = capsys.readouterr().err
    assert code == 130 and ctrl_c.done == [3]
    assert "hooked-bimt train: interrupted. Nothing was saved" in err and str(out) in err
    assert "Traceback" not in err and not out.exists()


def test_ctrl_c_in_reproduce_says_what_is_kept_and_how_to_resume(tmp_path, monkeypatch, capsys):
    import hooked_bimt.study.executors as executors

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(executors, "run_jobs", interrupted)
    out = tmp_path / "study"
    assert main(["reproduce", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert f"hooked-bimt reproduce: interrupted. Every model and discovery unit finished so far is kept in {out}" in err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert (out / "run.json").exists()  # the configuration that a resume checks against is kept


def test_train_help_names_the_default_preset_and_its_length():
    text = subprocess.run([sys.executable, "-m", "hooked_bimt", "train", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120).stdout
    text = " ".join(text.split())
    assert "default paper: TrainConfig.paper() (SPEC 2: 40,000 steps" in text


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be positive, got 0"),
    (["--threads", "0"], "--threads must be positive, got 0"),
])
def test_train_argument_errors_answer_without_importing_torch(argv, message):
    probe = ("import sys\nfrom hooked_bimt.cli import main\ncode = main(%r)\n"
             "print('CODE', code, 'torch' in sys.modules)" % (["train", "--regime", "bimt", "--out", "x", *argv],))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().endswith("CODE 2 False"), (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert time.perf_counter() - t0 < 60


def test_python_train_prints_its_settings_unless_silent(capsys):
    config = dataclasses.replace(TrainConfig.quick(), steps=2, eval_every=2, train_subset=None, test_subset=None)
    train("l1", config, seed=3, data=_data(), progress=True)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("settings: "))
    assert line.startswith("settings: regime=l1 seed=3 device=cpu TrainConfig=")
    assert eval(line.split("TrainConfig=", 1)[1]) == config.to_dict()
    train("l1", config, seed=3, data=_data(), progress=False)
    assert "settings: " not in capsys.readouterr().out


def test_reproduce_into_another_configuration_names_the_differences_briefly(tmp_path, monkeypatch, capsys):
    """A DIR of the smoke preset, reused with the quick preset: the message lists the differing settings by path,
    a few of them, in a few lines (it ran to ~2,000 characters, whole nested configs)."""
    import hooked_bimt.study.executors as executors

    monkeypatch.setattr(executors, "run_jobs", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    out = tmp_path / "study"
    assert main(["reproduce", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 130
    capsys.readouterr()
    assert main(["reproduce", "--preset", "quick", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds results of another configuration (preset: 'smoke' (in DIR) vs 'quick' (now); " in err
    assert re.search(r"; and \d+ more\); refusing to mix them", err)
    assert len(err) < 800, len(err)


@pytest.mark.parametrize("change, message", [
    ({"steps": 2.5}, "TrainConfig.steps must be an int, got 2.5"),
    ({"activation": 3}, "TrainConfig.activation must be a string, got 3"),
    ({"lr": "x"}, "TrainConfig.lr must be a finite number, got 'x'"),
])
def test_config_type_errors_read_as_english(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(TrainConfig.quick(), **change)


@pytest.mark.parametrize("value, message", [("7", "'n_total_edges' must be an int, got a string"),
                                            ([1], "'n_total_edges' must be an int, got a list")])
def test_circuit_file_type_errors_read_as_english(tmp_path, value, message):
    import json

    from circuits import Circuit

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"edges": [], "n_total_edges": value}))
    with pytest.raises(ValueError, match=re.escape(message)):
        Circuit.load(path)
