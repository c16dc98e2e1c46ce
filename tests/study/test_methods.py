"""The study's method comparison: ACDC's sweep scores from stored circuits, EAP / EAP-IG curves, summaries."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from circuits import acdc, graph_of, run_circuit, threshold_sweep, Circuit
from hooked_bimt.model import HookedMLP
from hooked_bimt.study.methods import (METHODS, method_columns, method_rows, methods_markdown, methods_unit,
                                       summarize_methods, sweep_scores, task_metric)


def small_model(seed: int = 0) -> HookedMLP:
    torch.manual_seed(seed)
    model = HookedMLP((6, 5, 4, 3)).double()
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(2.0)
    return model.eval()


def batches(seed: int = 0, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randn(n, 6, generator=g, dtype=torch.float64)


class Task:
    """Logit difference between classes 0 and 2, as the study's tasks give it."""

    name = "toy"

    @staticmethod
    def logit_diff(logits):
        return logits[..., 0] - logits[..., 2]

    def metric(self):
        return lambda logits, full=None: -self.logit_diff(logits).mean()


class Batch:
    def __init__(self, clean, corrupted):
        self.clean, self.corrupted = clean, corrupted


def test_sweep_scores_from_stored_circuits_equal_threshold_sweep():
    model, (clean, corrupted) = small_model(1), batches(1)
    ts = [1e-3, 1e-5, 1e-4, 1e-2]
    stored = {t: acdc(model, clean, corrupted, threshold=t) for t in ts}
    ours = sweep_scores(stored, list(graph_of(model).edges()))
    assert ours == dict(threshold_sweep(model, clean, corrupted, ts))
    assert any(math.isinf(v) for v in ours.values()) and len(set(ours.values())) >= 3


def test_methods_unit_curves_and_rows():
    model, (clean, corrupted) = small_model(2), batches(2)
    ts = [1e-4, 1e-3, 1e-2]
    stored = {t: acdc(model, clean, corrupted, threshold=t) for t in ts}
    rec = methods_unit(model, Task(), Batch(clean, corrupted), stored, acdc_seconds=1.25)
    assert set(rec) == set(METHODS) and rec["acdc"]["seconds"] == 1.25
    n = graph_of(model).n_edges  # 30 + 20 + 12
    for m in METHODS:
        f = rec[m]["faithfulness"]
        assert rec[m]["n_edges"][-1] == n and f[-1] == pytest.approx(1.0) and rec[m]["seconds"] > 0
        assert 0.0 <= rec[m]["cmd"] and math.isfinite(rec[m]["cpr"])
    # ACDC's level keeping int(0.5 * 62) = 31 edges: the 31 top-ranked by the sweep (inf first, graph order on ties)
    order = list(graph_of(model).edges())
    rank = sweep_scores(stored, order)
    top = sorted(order, key=lambda e: (-rank[e], order.index(e)))[: int(0.5 * n)]
    with torch.no_grad():
        full, empty = model(clean), run_circuit(model, Circuit.empty(graph_of(model)), clean, corrupted)
    ld = lambda x: float(Task.logit_diff(x).mean())  # noqa: E731
    want = (ld(run_circuit(model, Circuit.from_edges(graph_of(model), top), clean, corrupted)) - ld(empty)) / (
        ld(full) - ld(empty))
    assert rec["acdc"]["faithfulness"][rec["acdc"]["levels"].index(0.5)] == pytest.approx(want, rel=1e-9)
    rows = method_rows({"regime": "bimt", "seed": 0, "task": "toy", "batch": 0}, rec)
    assert [r["method"] for r in rows] == list(METHODS)
    assert set(rows[0]) == set(method_columns(rec["eap"]["levels"])) and rows[1]["f@1"] == pytest.approx(1.0)


def test_summaries_skip_nan_and_tables_name_every_method_and_regime():
    rows = [{"regime": r, "task": "t", "method": m, "seed": s, "batch": 0, "cpr": c, "cmd": 1 - c, "seconds": 0.5}
            for r in ("l1", "bimt") for m in METHODS for s, c in enumerate((0.6, 0.8, float("nan")))]
    summary = summarize_methods(rows)
    iv = summary[("t", "eap", "bimt")]["cpr"]
    assert iv.n == 2 and iv.mean == pytest.approx(np.mean([0.6, 0.8])) and 0.6 <= iv.low <= iv.high <= 0.8
    text = "\n".join(methods_markdown(summary, ["t"], ["l1", "bimt"]))
    assert all(f"| {m} | {r} | 2 | 0.7 [" in text for m in METHODS for r in ("l1", "bimt"))
    assert methods_markdown({}, ["t"], ["l1"]) == []


def test_methods_unit_judges_a_label_task_on_a_bridge():
    """A task without a logit difference of its own (the transformer tasks: ``logit_diff`` None) is judged on the
    batch's labels at the last position (``task_metric``); bridges have graphs too."""
    pytest.importorskip("transformer_lens.model_bridge")
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel

    from circuits import metrics

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=12, n_positions=8, initializer_range=0.3)
    bridge = build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel", hf_config=cfg,
                                      tokenizer=None, device="cpu")
    g = torch.Generator().manual_seed(0)
    clean, corrupted = torch.randint(0, 12, (4, 5), generator=g), torch.randint(0, 12, (4, 5), generator=g)
    task, batch = SimpleNamespace(logit_diff=None), Batch(clean, corrupted)
    batch.clean_labels, batch.corrupt_labels = clean[:, -1], (clean[:, -1] + 1) % 12
    metric, rows = task_metric(task, batch), torch.arange(4)
    with torch.no_grad():
        logits = bridge(clean)
    direct = -(logits[rows, -1, batch.clean_labels] - logits[rows, -1, batch.corrupt_labels]).mean()
    assert isinstance(metric, metrics.Metric) and float(metric(logits, logits)) == pytest.approx(float(direct))
    stored = {t: acdc(bridge, clean, corrupted, threshold=t, metric=metric) for t in (1e-3, 1e-1)}
    rec = methods_unit(bridge, task, batch, stored, acdc_seconds=2.0)
    n = graph_of(bridge).n_edges
    for m in METHODS:
        assert rec[m]["n_total_edges"] == n and rec[m]["faithfulness"][-1] == pytest.approx(1.0)
