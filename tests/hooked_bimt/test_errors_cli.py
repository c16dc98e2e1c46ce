"""Issue 13, CLI half: refused before any training, nothing saved is lost, --help without torch, settings shown."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hooked_bimt import MNISTSplit, TrainConfig, TrainResult
from hooked_bimt.cli import main

from bimt_fixtures import random_mnist  # noqa: E402
from hooked_bimt.study.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformer_lens", "numpy", "matplotlib")


def _data() -> tuple[MNISTSplit, MNISTSplit]:
    return random_mnist(200)


class Watch:
    """A ``StepsHook`` for ``main(..., hook=)``: records the config of every training run started (its window is
    empty, so it changes nothing in the run)."""

    def __init__(self) -> None:
        self.configs: list[TrainConfig] = []

    def window(self, config: TrainConfig) -> range:
        self.configs.append(config)
        return range(0)

    def around(self, training, run):
        raise AssertionError("an empty window never opens")


def _main(argv: list[str], watch: Watch) -> int:
    """The CLI, training (if it gets that far) on 200 random images: seconds."""
    return main(argv, data=_data(), hook=watch)


def _seconds(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return time.perf_counter() - t0


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["reproduce", "--help"]])
def test_help_imports_no_torch_and_answers_well_under_import_torch(argv):
    probe = ("import sys\nfrom hooked_bimt.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
             "print('LOADED', sorted(m for m in %r if m in sys.modules))" % (argv, HEAVY))
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    loaded = out.rsplit("LOADED", 1)[1].strip()
    if argv[0] == "reproduce":  # the chosen plugin's module loads (its options come from it), torch does not
        assert "usage: hooked-bimt reproduce" in out and "--executor" in out
    assert loaded == "[]", loaded
    help_s = min(_seconds(["-m", "hooked_bimt", *argv]) for _ in range(2))
    torch_s = min(_seconds(["-c", "import torch"]) for _ in range(2))
    assert help_s < 0.5 * torch_s, (help_s, torch_s)


def test_train_onto_a_saved_model_needs_force(tmp_path, capsys):
    out, watch = tmp_path / "run", Watch()
    argv = ["train", "--regime", "vanilla", "--preset", "quick", "--steps", "5", "--out", str(out), "--no-progress"]
    assert _main(argv, watch) == 0
    first = (out / "model.safetensors").read_bytes()
    assert _main([*argv, "--seed", "1"], watch) == 2
    assert "already holds a saved model.safetensors" in capsys.readouterr().err and len(watch.configs) == 1
    assert (out / "model.safetensors").read_bytes() == first
    assert _main([*argv, "--seed", "1", "--force"], watch) == 0
    assert (out / "model.safetensors").read_bytes() != first and TrainResult.load(out).seed == 1


@pytest.mark.parametrize("command", ["train", "reproduce"])
@pytest.mark.parametrize(
    "case, message",
    [("under-a-file", "lies under .*afile, which is a file"), ("is-a-file", "is an existing file, not a directory"),
     ("device-foo", "unknown device 'foo'"), ("device-cuda-missing", "CUDA is not available")],
)
def test_impossible_output_or_device_is_refused_before_training(tmp_path, monkeypatch, capsys, command, case,
                                                                message):
    if case == "device-cuda-missing" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    import hooked_bimt.study.executors as executors

    jobs, watch = [], Watch()
    monkeypatch.setattr(executors, "run_jobs", lambda *a, **k: jobs.append(a))  # where reproduce starts training
    (tmp_path / "afile").write_text("x")
    out = {"under-a-file": tmp_path / "afile" / "sub", "is-a-file": tmp_path / "afile"}.get(case, tmp_path / "new")
    device = {"device-foo": "foo", "device-cuda-missing": "cuda"}.get(case, "cpu")
    argv = ["--out", str(out), "--device", device, "--no-progress"]
    argv = ["train", "--regime", "bimt", *argv] if command == "train" else ["reproduce", "--preset", "smoke", *argv]
    assert _main(argv, watch) == 2
    assert re.search(message, capsys.readouterr().err)
    assert watch.configs == [] and jobs == [] and not (tmp_path / "new").exists()


def test_train_prints_and_stores_the_settings_it_used(tmp_path, capsys):
    out, watch = tmp_path / "run", Watch()
    argv = ["train", "--regime", "l1", "--preset", "quick", "--steps", "7", "--out", str(out), "--no-progress"]
    assert _main(argv, watch) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("settings: "))
    assert "regime=l1 seed=0 device=cpu preset=quick" in line
    shown = eval(line.split("TrainConfig=", 1)[1])  # a dict literal of plain values
    stored = json.loads((out / "config.json").read_text())["train_config"]
    expected = dataclasses.replace(TrainConfig.quick(), steps=7, eval_every=7).to_dict()
    assert shown == expected and stored == expected and [c.to_dict() for c in watch.configs] == [expected]


def test_reproduce_prints_the_settings_it_stores(tmp_path, monkeypatch, capsys):
    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    import hooked_bimt.study.executors as executors

    monkeypatch.setattr(executors, "run_jobs", stop)  # the first step after the settings are fixed
    with pytest.raises(Stop):
        main(["reproduce", "--preset", "smoke", "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    stored = json.loads((tmp_path / "r" / "run.json").read_text())["config"]
    line = next(x for x in err.splitlines() if x.startswith("settings (also in"))
    assert str(tmp_path / "r" / "run.json") in line and str(stored["train_config"]["steps"]) in line
    assert f"'preset': 'smoke'" in line and f"'thresholds': {stored['thresholds']}" in line


def test_quick_config_and_quick_preset_are_named_apart_in_the_docs():
    """``TrainConfig.quick()`` (1,200 steps) is not the study's quick preset (6,000): README and --help say which."""
    readme = (ROOT / "README.md").read_text()
    preset_steps = PRESETS["quick"].train_config().steps
    config_steps = TrainConfig.quick().steps
    assert preset_steps != config_steps
    assert re.search(rf"quick preset: {preset_steps:,} steps", readme)
    assert re.search(rf"TrainConfig\.quick\(\).{{0,40}}{config_steps:,} steps", readme)
    help_text = subprocess.run([sys.executable, "-m", "hooked_bimt", "train", "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=120).stdout
    help_text = " ".join(help_text.split())
    assert f"{config_steps:,} steps" in help_text and "not the study's quick preset" in help_text
