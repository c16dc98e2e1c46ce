"""The study's jobs and outputs with training and discovery stubbed out: rows, skipped units, outputs, reuse.

Training is replaced by an oracle classifier that is wrong on every test-set 8, so the 8-vs-3 task
has no usable pair (its units are skipped and reported) while the circle task runs.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from circuits import Circuit
from hooked_bimt.study import figures, jobs, measure, methods
from hooked_bimt.study import pipeline
from hooked_bimt.study.figures import _save
from hooked_bimt.study.methods import METHODS
from hooked_bimt.study.presets import PRESETS
from hooked_bimt.study.reproduce import study_config
from hooked_bimt.study.units import RunStore

THRESHOLDS = (1e-4, 1e-3, 1e-2)


def test_jobs_rows_skips_and_outputs(tmp_path, monkeypatch, mnist_test, oracle_cls):
    wrong = set(torch.nonzero(mnist_test.labels == 8).flatten().tolist())
    calls = {"train": 0, "discover": [], "node_patching": 0}
    models = {}

    def fake_train(regime, cfg, seed, device, data, concurrent):
        calls["train"] += 1
        m = models.setdefault(regime, oracle_cls(mnist_test, wrong))
        return SimpleNamespace(model=m, regime=regime, seed=seed), {"test_accuracy": 0.9, "train_seconds": 1.5,
                                                                    "peak_memory_bytes": 100}

    def fake_discover(model64, task, batch, threshold):
        calls["discover"].append(threshold)
        n = int(100 * (1 - threshold * 50))  # fewer edges at higher thresholds
        row = {"logit_gap": 0.25 + threshold, "edge_sparsity": 1 - n / 1000, "n_edges": n, "n_total_edges": 1000,
               "threshold": threshold, "n_candidates": batch.n_candidates, "n_used": batch.n_used,
               "n_dropped": batch.n_dropped, "discovery_seconds": 0.1}
        return Circuit(edges=frozenset(), n_total_edges=10), row

    def fake_node_patching(model64, task, batch):
        calls["node_patching"] += 1
        return {"node_patch_max": 0.5}, {}

    def fake_figure(model, circuit, path, regime, what):
        import matplotlib.pyplot as plt

        return _save(plt.figure(), path), "caption"

    def fake_methods(model64, task, batch, circuits, acdc_seconds):
        calls["methods"].append(acdc_seconds)
        return {m: {"seconds": acdc_seconds if m == "acdc" else 0.2, "cpr": 0.5, "cmd": 0.4, "n_total_edges": 10,
                    "levels": [0.5, 1.0], "faithfulness": [0.3, 1.0]} for m in METHODS}

    calls["methods"], calls["warm"] = [], 0
    monkeypatch.setattr(methods, "methods_unit", fake_methods)
    monkeypatch.setattr(measure, "warm_up", lambda *a: calls.__setitem__("warm", calls["warm"] + 1) or 0.0)
    monkeypatch.setattr(measure, "train_unit", fake_train)
    monkeypatch.setattr(measure, "discover_unit", fake_discover)
    monkeypatch.setattr(measure, "node_patching_unit", fake_node_patching)
    monkeypatch.setattr(figures, "network_figure", fake_figure)
    monkeypatch.setattr(jobs, "fingerprint", lambda model: f"fp{id(model)}")
    monkeypatch.setattr(measure, "discovery_model", lambda model, device: model)
    monkeypatch.setattr(RunStore, "save_model", lambda self, result, info, **kw: saved.__setitem__(
        (result.regime, result.seed), (SimpleNamespace(model=result.model), info)))
    monkeypatch.setattr(RunStore, "load_model", lambda self, regime, seed, fp, **kw: saved.get((regime, seed)))
    saved: dict = {}
    store = RunStore(tmp_path, log=lambda m: None)
    preset = PRESETS["smoke"]
    store.claim(study_config(preset, 1, "cpu", THRESHOLDS, ["digit_pair:8:3", "circle"]))
    for regime in preset.regimes:
        jobs.model_job(str(tmp_path), regime, 0, 1, 1)
    rows, skipped = jobs.collect_rows(store, store.config())
    # every threshold of every circle batch, in (regime, seed, task, batch, threshold) order
    assert [(r["regime"], r["task"], r["threshold"]) for r in rows] == [
        (g, "circle", t) for g in ("l1", "bimt") for t in THRESHOLDS]
    assert rows[0]["train_seconds"] == 1.5 and rows[0]["logit_gap"] == 0.25 + 1e-4 and rows[0]["node_patch_max"] == 0.5
    assert len(skipped) == 2 and "digit_pair:8:3" in skipped[0]
    report = pipeline.write_outputs(store, preset, setup_extra={}, executor="inline")
    text = report.read_text()
    assert "skipped units**: l1 seed0 digit_pair:8:3 batch0" in text and "circle: 16 pairs used" in text
    assert "| bimt | circle | 0.001 | 1 |" in text  # the per-threshold table
    # (a) has no 8v3 circuit to draw; one frontier per task; (d)-(f)
    assert len(list((tmp_path / "figures").glob("*.png"))) == 5
    assert calls["train"] == 2 and calls["discover"] == list(THRESHOLDS) * 2 and calls["node_patching"] == 2
    # one untimed warm-up per job; one methods record per usable batch, ACDC's time = the sweep's (3 x 0.1 s)
    assert calls["warm"] == 2 and calls["methods"] == pytest.approx([0.3, 0.3])
    mrows = (tmp_path / "methods.csv").read_text().splitlines()
    assert len(mrows) == 1 + 2 * 3 and mrows[1].startswith("l1,0,circle,0,acdc,0.5,0.4,")
    assert "| eap_ig | bimt | 1 | 0.5 [0.5, 0.5] | 0.4 [0.4, 0.4] |" in text
    for regime in preset.regimes:  # rerun: every unit is reused
        jobs.model_job(str(tmp_path), regime, 0, 1, 1)
    assert calls["train"] == 2 and len(calls["discover"]) == 6 and calls["node_patching"] == 2
    assert len(calls["methods"]) == 2 and calls["warm"] == 2  # reused: no warm-up when nothing is timed
    # a lost threshold unit is recomputed alone
    import shutil

    shutil.rmtree(store.unit_dir("bimt", 0, "circle", 0, 1e-3))
    jobs.model_job(str(tmp_path), "bimt", 0, 1, 1)
    assert calls["discover"][6:] == [1e-3] and calls["node_patching"] == 2
