"""The study compares circuit-discovery methods too: ACDC, EAP and EAP-IG on one MIB faithfulness curve each.

Per example batch (regime x seed x task x batch), once its ACDC threshold units are done (float64, the same
clean / corrupted pairs):

- **ACDC**: each edge's score is ``threshold_sweep``'s rank, the smallest of the study's thresholds at which
  the unit's ACDC circuit lacks it (``inf``: in every circuit), read from the stored circuits; its time is
  the sum of those ACDC runs' ``discovery_seconds`` (what the ranking cost).
- **EAP** (``circuits.eap``, gradient at the clean run) and **EAP-IG** (``steps=5``, ``EAP_IG_STEPS``) with the task
  metric, ``-mean(logit difference)``; their wall-clock seconds.
- ``circuits.faithfulness_curve`` of each score at ``MIB_LEVELS`` with the task metric and resample ablation (ACDC
  found its circuits with KL; every method is judged on the task's logit difference, as MIB does):
  ``f(p) = (LD(C_p) - LD(empty)) / (LD(full) - LD(empty))``, CPR (area under f, higher is better) and CMD
  (area between f and 1, lower is better).

One JSON record per batch (``methods.json``, written atomically, reused on resume); ``methods.csv`` has one row
per (regime, seed, task, batch, method); ``summarize_methods`` gives 95% bootstrap intervals over seeds x
batches per (task, method, regime).
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

from hooked_bimt.study.bootstrap import Interval, bootstrap_ci

METHODS = ("acdc", "eap", "eap_ig")
EAP_IG_STEPS = 5
METHOD_MEASURES = ("cpr", "cmd", "seconds")
METHOD_KEY = ("regime", "seed", "task", "batch", "method")


def sweep_scores(circuits: dict[float, Any], edges: Sequence[Any]) -> dict[Any, float]:
    """``threshold_sweep``'s rank from already discovered circuits: the smallest threshold whose circuit lacks the
    edge, ``inf`` when every circuit has it (``circuits.sweep``: higher = more important)."""
    rank = {e: math.inf for e in edges}
    for t in sorted(circuits):
        kept = circuits[t].edges
        for e in rank:
            if rank[e] == math.inf and e not in kept:
                rank[e] = t
    return rank


def methods_unit(model64: Any, task: Any, batch: Any, circuits: dict[float, Any], acdc_seconds: float
                 ) -> dict[str, dict[str, Any]]:
    """``{method: {"seconds", "cpr", "cmd", "faithfulness", "n_edges", "levels", ...}}`` for one batch: any hooked
    model with a circuit graph (an MLP, a TransformerBridge), ``batch`` anything with ``.clean`` / ``.corrupted`` (and
    ``.clean_labels`` / ``.corrupt_labels`` for a task judged on its labels, ``task_metric``)."""
    from circuits import MIB_LEVELS, eap, faithfulness_curve, graph_of

    metric = task_metric(task, batch)
    scores: dict[str, tuple[dict, float]] = {
        "acdc": (sweep_scores(circuits, list(graph_of(model64).edges())), float(acdc_seconds))}
    for name, steps in (("eap", None), ("eap_ig", EAP_IG_STEPS)):
        t0 = time.perf_counter()
        s = eap(model64, batch.clean, batch.corrupted, metric, steps=steps)
        scores[name] = (s, time.perf_counter() - t0)
    out = {}
    for name, (s, seconds) in scores.items():
        curve = faithfulness_curve(model64, s, batch.clean, batch.corrupted, metric=metric, levels=MIB_LEVELS,
                                   ablation="resample")
        out[name] = {"seconds": seconds, **curve.to_dict()}
    return out


def task_metric(task: Any, batch: Any) -> Any:
    """``-mean(logit difference)``: the MNIST tasks' ``metric()``; a task without a logit difference of its own (the
    transformer tasks) is judged on the batch's labels, ``circuits.metrics.logit_diff`` at the last position."""
    if getattr(task, "logit_diff", None) is not None:
        return task.metric()
    from circuits.metrics import logit_diff

    return logit_diff(batch.clean_labels, batch.corrupt_labels)


def method_rows(key: dict[str, Any], record: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of methods.csv for one batch: the key, the method, CPR, CMD, seconds and ``f@p`` per level."""
    rows = []
    for method in METHODS:
        m = record[method]
        row = {**key, "method": method, "cpr": m["cpr"], "cmd": m["cmd"], "seconds": m["seconds"],
               "n_total_edges": m["n_total_edges"]}
        row.update({f"f@{p:g}": f for p, f in zip(m["levels"], m["faithfulness"])})
        rows.append(row)
    return rows


def method_columns(levels: Sequence[float]) -> list[str]:
    return [*METHOD_KEY, "cpr", "cmd", "seconds", "n_total_edges", *(f"f@{p:g}" for p in levels)]


MethodSummary = dict[tuple[str, str, str], dict[str, Interval]]  # (task, method, regime) -> measures


def summarize_methods(rows: Sequence[dict[str, Any]], *, n_resamples: int = 2000, seed: int = 0) -> MethodSummary:
    """95% percentile bootstrap intervals of CPR, CMD and seconds per (task, method, regime), over seeds x batches
    (NaN, e.g. a batch whose full and empty logit differences coincide, left out)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["task"]), str(r["method"]), str(r["regime"])), []).append(r)
    out: MethodSummary = {}
    for key, rs in groups.items():
        out[key] = {}
        for m in METHOD_MEASURES:
            xs = [float(r[m]) for r in rs if r.get(m) not in (None, "") and float(r[m]) == float(r[m])]
            if xs:
                out[key][m] = bootstrap_ci(xs, n_resamples=n_resamples, seed=seed)
    return out


def methods_markdown(summary: MethodSummary, tasks: Sequence[str], regimes: Sequence[str]) -> list[str]:
    """The report's section: what is compared, then per task one table, rows method x regime."""
    if not summary:
        return []
    fmt = lambda iv: "n/a" if iv is None else f"{iv.mean:.4g} [{iv.low:.4g}, {iv.high:.4g}]"  # noqa: E731
    para = __doc__.split("Per example batch")[1].split("\n\nOne JSON record")[0].split("\n- ")
    para[0] = "Per example batch" + para[0]
    lines = ["## Discovery methods compared (MIB faithfulness curves)", "", " ".join(para[0].split()), "",
             *("- " + " ".join(b.split()) for b in para[1:]), "",
             "Mean [95% bootstrap interval] over seeds x example batches; `n` = batches. CPR: higher is better "
             "(1 = the full model's logit difference at every level); CMD: lower is better (0 = no gap to the full "
             "model); seconds: wall-clock of producing the scores (ACDC: the whole threshold sweep).", ""]
    for task in tasks:
        lines += [f"### {task}", "", "| method | regime | n | CPR | CMD | seconds |", "|---|---|---|---|---|---|"]
        for method in METHODS:
            for regime in regimes:
                ivs = summary.get((task, method, regime))
                if ivs:
                    n = (ivs.get("cpr") or max(ivs.values(), key=lambda iv: iv.n)).n
                    lines.append(f"| {method} | {regime} | {n} | " + " | ".join(fmt(ivs.get(m)) for m in
                                                                             METHOD_MEASURES) + " |")
        lines.append("")
    return lines
