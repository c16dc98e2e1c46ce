"""The study loop with training and discovery stubbed out: rows, skipped units, outputs, reuse.

Training is replaced by an oracle classifier that is wrong on every test-set 8, so the 8-vs-3 task
has no usable pair (its units are skipped and reported) while the circle task runs.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from circuits import Circuit
from hooked_bimt.study import measure, pipeline
from hooked_bimt.study.figures import _save
from hooked_bimt.study.presets import PRESETS
from hooked_bimt.study.tasks import get_task
from hooked_bimt.study.units import RunStore


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, k):
        self.n += k

    def set_postfix_str(self, s):
        pass


def test_pipeline_rows_skips_and_outputs(tmp_path, monkeypatch, mnist_test, oracle_cls):
    wrong = set(torch.nonzero(mnist_test.labels == 8).flatten().tolist())
    calls = {"train": 0, "discover": 0}

    def fake_train(regime, cfg, seed, device, data):
        calls["train"] += 1
        m = oracle_cls(mnist_test, wrong)
        return SimpleNamespace(model=m, regime=regime, seed=seed), {"test_accuracy": 0.9, "train_seconds": 1.5,
                                                                    "peak_memory_bytes": 100}

    def fake_discover(model64, task, batch, threshold):
        calls["discover"] += 1
        row = {"logit_gap": 0.25, "edge_sparsity": 0.5, "n_candidates": batch.n_candidates, "n_used": batch.n_used,
               "n_dropped": batch.n_dropped, "discovery_seconds": 0.1}
        return Circuit(edges=frozenset(), n_total_edges=10), row, {}

    def fake_figure(model, circuit, path, regime):
        import matplotlib.pyplot as plt

        return _save(plt.figure(), path)

    monkeypatch.setattr(measure, "train_unit", fake_train)
    monkeypatch.setattr(measure, "discover_unit", fake_discover)
    monkeypatch.setattr(pipeline, "network_figure", fake_figure)
    store = RunStore(tmp_path, log=lambda m: None)
    saved = {}
    monkeypatch.setattr(store, "save_model", lambda result, info: saved.setdefault((result.regime, result.seed), info))
    monkeypatch.setattr(store, "load_model", lambda regime, seed, fp: None)
    preset = PRESETS["smoke"]
    tasks = [get_task("8v3"), get_task("circle")]

    def run_once():
        pipe = pipeline.Pipeline(store, preset, SimpleNamespace(steps=3, batch_size=2), [0], tasks, 0.001, "cpu",
                                 None, mnist_test)
        bar = _Bar()
        rows = pipe.run(bar)
        return pipe, rows, bar

    pipe, rows, bar = run_once()
    assert bar.n == 2 * (1 + 2)  # every unit counted, skipped ones too
    assert [(r["regime"], r["task"]) for r in rows] == [("l1", "circle"), ("bimt", "circle")]
    assert rows[0]["train_seconds"] == 1.5 and rows[0]["logit_gap"] == 0.25
    assert len(pipe.skipped) == 2 and "digit_pair:8:3" in pipe.skipped[0]
    report = pipe.write_outputs(rows, setup_extra={})
    text = report.read_text()
    assert "skipped units**: l1 seed0 digit_pair:8:3 batch0" in text and "circle: 16 pairs used" in text
    assert len(list((tmp_path / "figures").glob("*.png"))) == 5  # (a) has no 8v3 circuit to draw; (b)-(f)
    assert calls == {"train": 2, "discover": 2}
    run_once()  # discovery units are reused: no new discovery
    assert calls == {"train": 4, "discover": 2}
