"""The run directory: configuration guard, moving corrupt units aside, presets and argument checks."""

from __future__ import annotations

import json

import pytest

from hooked_bimt.study.presets import PRESETS, get_preset
from hooked_bimt.study.reproduce import main, reproduce
from hooked_bimt.study.units import ConfigMismatchError, RunStore


def test_claim_records_then_refuses_another_configuration(tmp_path):
    store = RunStore(tmp_path / "run", log=lambda m: None)
    assert store.claim({"preset": "smoke", "seeds": [0]}) is False
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["seeds"] == [0]
    assert store.claim({"preset": "smoke", "seeds": [0]}) is True  # same configuration: resume
    with pytest.raises(ConfigMismatchError, match=r"another configuration \(seeds: \[0\] \(in DIR\) vs \[0, 1\]"):
        store.claim({"preset": "smoke", "seeds": [0, 1]})
    assert isinstance(ConfigMismatchError("x"), ValueError)


def test_claim_resumes_a_directory_whose_train_config_holds_a_retired_field(tmp_path):
    """Before the brute-force search left the library, run.json's train config held ``original_search: "fast"``."""
    store = RunStore(tmp_path / "run", log=lambda m: None)
    config = {"preset": "smoke", "train_config": {"steps": 40, "original_moments": "in_place"}}
    store.claim({**config, "train_config": {**config["train_config"], "original_search": "fast"}})
    assert store.claim(config) is True
    with pytest.raises(ConfigMismatchError, match=r"train_config.steps: 40 \(in DIR\) vs 41"):
        store.claim({**config, "train_config": {**config["train_config"], "steps": 41}})


def test_claim_refuses_results_without_run_json(tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(ValueError, match="no run.json"):
        RunStore(tmp_path).claim({"preset": "smoke"})


def test_move_aside_keeps_every_bad_copy(tmp_path):
    msgs = []
    store = RunStore(tmp_path, log=msgs.append)
    for i in (1, 2):
        d = store.model_dir("bimt", 0)
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"bad %d" % i)
        assert store.move_aside(d, "test").name == f"seed0.corrupt-{i}"
    assert (d.parent / "seed0.corrupt-1" / "model.safetensors").read_bytes() == b"bad 1"
    assert (d.parent / "seed0.corrupt-2" / "model.safetensors").read_bytes() == b"bad 2"
    assert "corrupt" in msgs[0] and "moved aside" in msgs[0]


def test_unfinished_and_corrupt_discovery_units(tmp_path):
    store = RunStore(tmp_path, log=lambda m: None)
    key = ("bimt", 0, "8v3", 0)
    assert store.load_unit(key, 1e-5, "fp") is None  # nothing yet
    d = store.unit_dir(*key, 1e-5)
    assert d.name == "thr1e-05" and d.parent.name == "batch0"  # one unit per threshold under its batch
    d.mkdir(parents=True)
    (d / "measures.json").write_text("{not json")
    assert store.load_unit(key, 1e-5, "fp") is None
    assert (d.parent / "thr1e-05.corrupt-1" / "measures.json").exists() and not d.exists()


def test_batch_records_are_tied_to_their_model(tmp_path):
    store = RunStore(tmp_path, log=lambda m: None)
    key = ("l1", 1, "circle", 2)
    store.save_record(key, "node_patching", {"row": {"node_patch_max": 0.5}, "model_fingerprint": "aa"})
    assert store.load_record(key, "node_patching", "aa")["row"] == {"node_patch_max": 0.5}
    assert store.load_record(key, "node_patching", "bb") is None  # another (retrained) model
    (store.batch_dir(*key) / "skipped.json").write_text("[")
    assert store.load_record(key, "skipped", "aa") is None
    assert (store.batch_dir(*key) / "skipped.json.corrupt-1").exists()


def test_presets():
    assert {"quick", "paper", "smoke"} <= set(PRESETS)
    assert PRESETS["paper"].n_seeds >= 3 and PRESETS["paper"].base_config == "paper"
    assert set(PRESETS["quick"].regimes) == {"vanilla", "l1", "l1_local", "l1_swap", "bimt"}
    # issue 12: sweeps from near-full to near-empty circuits
    assert len(PRESETS["quick"].thresholds) >= 3 and len(PRESETS["paper"].thresholds) >= 8
    assert min(PRESETS["paper"].thresholds) <= 1e-6 and max(PRESETS["paper"].thresholds) >= 1e-2
    from hooked_bimt.regimes import REGIMES

    originals = {r for r in REGIMES if r.endswith("_original")}
    assert originals <= set(PRESETS["paper"].regimes)  # issue 14's faithful modes join the paper preset
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(preset="huge"), "unknown preset"), (dict(tasks=["square"]), "unknown task"),
     (dict(seeds=0), "seeds must be"), (dict(device="tpu"), "device"),
     (dict(thresholds=[-1.0]), "thresholds"), (dict(thresholds=[1e-5, 1e-5]), "distinct"),
     (dict(executor="cloud"), "unknown executor"), (dict(executor="inline", jobs=2), "inline runs one job"),
     (dict(jobs=0), "jobs must be"), (dict(executor="slurm"), "Slurm")],
)
def test_bad_input_fails_before_any_work(tmp_path, kwargs, match):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        reproduce(out, **({"preset": "smoke"} | kwargs))
    assert not out.exists()  # nothing written


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["--preset", "huge", "--out", str(tmp_path / "o")]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert main(["--preset", "smoke", "--tasks", "8v3,square", "--out", str(tmp_path / "o")]) == 2
    assert "unknown task 'square'" in capsys.readouterr().err


def test_public_names_are_the_functions():
    import importlib

    import hooked_bimt.study as study

    importlib.import_module("hooked_bimt.study.reproduce")  # what the CLI does
    assert callable(study.reproduce) and study.reproduce.__name__ == "reproduce"
    assert hasattr(importlib.import_module("hooked_bimt.study.reproduce"), "add_arguments")
    assert study.get_task("8v3") == study.digit_pair(8, 3)
