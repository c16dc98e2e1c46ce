"""results.csv -> summary.csv: per regime x task x ACDC threshold, the mean of each measure with its 95%
bootstrap interval.

Circuit measures are resampled over seeds x example batches; training measures (one value per trained
model, the same at every task and threshold) over seeds only, so a model is not counted once per unit.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Sequence

from hooked_bimt.atomic import atomic_write_text
from hooked_bimt.study.bootstrap import Interval, bootstrap_ci

CIRCUIT_MEASURES = ("logit_gap", "edge_sparsity", "edges_kept", "node_sparsity", "discovery_seconds",
                    "logit_diff_recovery", "kl")
TRAIN_MEASURES = ("test_accuracy", "train_seconds", "seconds_per_step", "peak_memory_bytes", "inference_ms_per_batch")
MEASURES = CIRCUIT_MEASURES + TRAIN_MEASURES
Summary = dict[tuple[str, str, float], dict[str, Interval]]  # (regime, task, threshold) -> circuit measures
Training = dict[str, dict[str, Interval]]  # regime -> training measures


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) with these ``columns`` to ``path`` atomically; floats at full precision (repr)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: repr(float(v)) if isinstance(v, float) else v for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x else None  # drop NaN


def _intervals(rows: Sequence[dict[str, Any]], measures: Sequence[str], n_resamples: int, seed: int) -> dict:
    out = {}
    for m in measures:
        xs = [x for x in (_float(r.get(m)) for r in rows) if x is not None]
        if xs:
            out[m] = bootstrap_ci(xs, n_resamples=n_resamples, seed=seed)
    return out


def summarize(rows: Sequence[dict[str, Any]], *, n_resamples: int = 2000, seed: int = 0) -> Summary:
    """``{(regime, task, threshold): {circuit measure: Interval}}`` over the rows of results.csv (missing values
    skipped); intervals over seeds x example batches."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        if "edges_kept" not in r and _float(r.get("n_edges")) is not None and _float(r.get("n_total_edges")):
            # fraction of edges kept, an empty circuit counted as one edge (log axes stay finite)
            r = {**r, "edges_kept": max(float(r["n_edges"]), 1.0) / float(r["n_total_edges"])}
        groups.setdefault((str(r["regime"]), str(r["task"]), float(r["threshold"])), []).append(r)
    return {key: _intervals(rs, CIRCUIT_MEASURES, n_resamples, seed) for key, rs in groups.items()}


def summarize_training(rows: Sequence[dict[str, Any]], *, n_resamples: int = 2000, seed: int = 0) -> Training:
    """``{regime: {training measure: Interval}}``, one value per trained model (seed): intervals over seeds."""
    per_model: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        per_model.setdefault(str(r["regime"]), {}).setdefault(str(r["seed"]), r)
    return {regime: _intervals(list(models.values()), TRAIN_MEASURES, n_resamples, seed)
            for regime, models in per_model.items()}


def summary_rows(summary: Summary, training: Training, regimes: Sequence[str], *,
                 by_task: dict[str, Training] | None = None) -> list[dict[str, Any]]:
    """Wide rows for summary.csv: regime, task, threshold, n, n_seeds, then ``{measure}_mean/_low/_high``
    (training measures repeated on each of the regime's rows: ``training``, or ``by_task[task]`` where each task has
    its own models); regimes in ``regimes`` order."""
    order = {r: i for i, r in enumerate(regimes)}
    rows = []
    for (regime, task, thr), ivs in sorted(summary.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 99), kv[0][2])):
        row: dict[str, Any] = {"regime": regime, "task": task, "threshold": thr}
        tr = (by_task.get(task, {}) if by_task is not None else training).get(regime, {})
        row["n"] = max((iv.n for iv in ivs.values()), default=0)
        row["n_seeds"] = max((iv.n for iv in tr.values()), default=0)
        for m, iv in list(ivs.items()) + list(tr.items()):
            row.update({f"{m}_mean": iv.mean, f"{m}_low": iv.low, f"{m}_high": iv.high})
        rows.append(row)
    return rows


def summary_columns() -> list[str]:
    return ["regime", "task", "threshold", "n", "n_seeds"] + [f"{m}_{s}" for m in MEASURES for s in ("mean", "low", "high")]
