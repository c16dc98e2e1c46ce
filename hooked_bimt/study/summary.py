"""results.csv -> summary.csv: per regime x task, the mean of each measure with its 95% bootstrap interval.

Circuit measures are resampled over seeds x example batches; training measures (one value per trained
model) over seeds only, so a model is not counted once per batch.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Sequence

from hooked_bimt.atomic import atomic_write_text
from hooked_bimt.study.bootstrap import Interval, bootstrap_ci

CIRCUIT_MEASURES = ("logit_gap", "edge_sparsity", "node_sparsity", "discovery_seconds", "logit_diff_recovery", "kl")
TRAIN_MEASURES = ("test_accuracy", "train_seconds", "seconds_per_step", "peak_memory_bytes", "inference_ms_per_batch")
MEASURES = CIRCUIT_MEASURES + TRAIN_MEASURES
Summary = dict[tuple[str, str], dict[str, Interval]]


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


def summarize(rows: Sequence[dict[str, Any]], *, n_resamples: int = 2000, seed: int = 0) -> Summary:
    """``{(regime, task): {measure: Interval}}`` over the rows of results.csv (missing values skipped)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["regime"]), str(r["task"])), []).append(r)
    out: Summary = {}
    for key, rs in groups.items():
        out[key] = {}
        per_model = {str(r["seed"]): r for r in rs}  # training measures: one value per trained model
        for m in MEASURES:
            source = per_model.values() if m in TRAIN_MEASURES else rs
            xs = [x for x in (_float(r.get(m)) for r in source) if x is not None]
            if xs:
                out[key][m] = bootstrap_ci(xs, n_resamples=n_resamples, seed=seed)
    return out


def summary_rows(summary: Summary, regimes: Sequence[str]) -> list[dict[str, Any]]:
    """Wide rows for summary.csv: regime, task, n, then ``{measure}_mean/_low/_high``; regimes in ``regimes`` order."""
    order = {r: i for i, r in enumerate(regimes)}
    rows = []
    for (regime, task), ivs in sorted(summary.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 99))):
        row: dict[str, Any] = {"regime": regime, "task": task}
        row["n"] = max((iv.n for m, iv in ivs.items() if m in CIRCUIT_MEASURES), default=0)
        row["n_seeds"] = max((iv.n for m, iv in ivs.items() if m in TRAIN_MEASURES), default=0)
        for m in MEASURES:
            if m in ivs:
                row.update({f"{m}_mean": ivs[m].mean, f"{m}_low": ivs[m].low, f"{m}_high": ivs[m].high})
        rows.append(row)
    return rows


def summary_columns() -> list[str]:
    return ["regime", "task", "n", "n_seeds"] + [f"{m}_{s}" for m in MEASURES for s in ("mean", "low", "high")]
