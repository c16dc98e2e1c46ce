"""Claims 1-3 judged at matched sparsity: each regime's threshold sweep read as a frontier.

A *curve* is one (seed, example batch) of a regime on a task: its points over the ACDC thresholds.
The rule (stated in the report):

1. x-axis: ``log10(edges kept / all edges) = log10(1 - edge sparsity)`` (claims 1 and 3) or the circuit
   logit gap (claim 2); the compared measure y: logit gap, discovery seconds, or edge sparsity.
2. Each curve is interpolated linearly in x (points sorted by x, equal x averaged); it has a value at
   level L only when L lies inside its own range (no extrapolation).
3. Common levels: the range every curve of every regime covers, ``[max_c min x_c, min_c max x_c]``; the
   levels sit at 20%, 50% and 80% of it. No common range: the claim is *not evaluated* on that task.
4. Each BIMT variant (``bimt``, and ``bimt_original`` when run) is judged on its own against the non-BIMT
   regimes only (vanilla, l1, l1_local, l1_swap, l1_swap_original): the two BIMT variants are the claim's
   subject, not each other's competitors. At each level: the mean difference ``mean_variant - mean_other``
   over the (seed, batch) keys both have, with a 95% paired percentile bootstrap (2000 resamples of the
   keys, seed 0; the same key resampled for both regimes: same training seed and batch index). The levels
   are those of step 3 over the variant and the non-BIMT regimes.
5. A level is *better* when every difference's interval excludes 0 in the variant's favour, *worse* when
   some other regime's interval excludes 0 in its own favour, *tied* otherwise. Per variant and task:
   *reproduced* if better at every level, *not reproduced* if better at none, *mixed* otherwise (also when
   a comparison rests on a single (seed, batch) sample, which has no interval).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from hooked_bimt.study.bootstrap import Interval

LEVEL_POSITIONS = (0.2, 0.5, 0.8)
N_RESAMPLES = 2000
Curve = tuple[np.ndarray, np.ndarray]


def log_edges(row: dict[str, Any]) -> float:
    """``log10(edges kept / all edges)``; an empty circuit counts as one edge (the log stays finite)."""
    return math.log10(max(float(row["n_edges"]), 1.0) / float(row["n_total_edges"]))


def _value(row: dict[str, Any], name: str) -> float:
    return log_edges(row) if name == "log_edges" else float(row[name])


def curves(rows: Sequence[dict[str, Any]], regime: str, task: str, x: str, y: str) -> dict[tuple[str, str], Curve]:
    """``{(seed, batch): (xs increasing, ys)}`` of one regime on one task; equal xs have their ys averaged."""
    pts: dict[tuple[str, str], dict[float, list[float]]] = {}
    for r in rows:
        if str(r["regime"]) == regime and str(r["task"]) == task:
            xv, yv = _value(r, x), _value(r, y)
            if math.isfinite(xv) and math.isfinite(yv):
                pts.setdefault((str(r["seed"]), str(r["batch"])), {}).setdefault(xv, []).append(yv)
    out = {}
    for key, by_x in pts.items():
        xs = np.array(sorted(by_x))
        out[key] = (xs, np.array([np.mean(by_x[v]) for v in xs]))
    return out


def interp_at(curve: Curve, level: float) -> float | None:
    """The curve's linear interpolation at ``level``; None outside its x-range."""
    xs, ys = curve
    if not xs[0] <= level <= xs[-1]:
        return None
    return float(np.interp(level, xs, ys))


def common_levels(all_curves: Sequence[dict[tuple[str, str], Curve]]) -> list[float]:
    """Levels at LEVEL_POSITIONS of the x-range every curve covers; [] when there is none."""
    cs = [c for group in all_curves for c in group.values()]
    if not cs:
        return []
    lo, hi = max(c[0][0] for c in cs), min(c[0][-1] for c in cs)
    return [lo + p * (hi - lo) for p in LEVEL_POSITIONS] if hi > lo else []


def paired_difference(a: dict[Any, float], b: dict[Any, float], *, seed: int = 0) -> Interval | None:
    """Mean of ``a[k] - b[k]`` over the shared keys with its 95% paired percentile bootstrap; None if none shared."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    d = np.array([a[k] - b[k] for k in keys])
    if len(d) == 1 or np.all(d == d[0]):
        return Interval(float(d.mean()), float(d[0]) if len(d) == 1 else float(d.min()), float(d.max()), len(d))
    idx = np.random.default_rng(seed).integers(0, len(d), size=(N_RESAMPLES, len(d)))
    means = d[idx].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return Interval(float(d.mean()), float(low), float(high), len(d))


def _level_word(diffs: dict[str, Interval | None], lower: bool) -> str:
    good = [iv is not None and iv.n >= 2 and (iv.high < 0 if lower else iv.low > 0) for iv in diffs.values()]
    bad = [iv is not None and iv.n >= 2 and (iv.low > 0 if lower else iv.high < 0) for iv in diffs.values()]
    return "better" if diffs and all(good) else ("worse" if any(bad) else "tied")


def _fmt_level(x: str, level: float) -> str:
    return f"edge sparsity {1 - 10 ** level:.5f}" if x == "log_edges" else f"{x.replace('_', ' ')} {level:.4g}"


def matched(rows: Sequence[dict[str, Any]], task: str, regimes: Sequence[str], *, target: str, x: str, y: str,
            lower: bool) -> tuple[str, str]:
    """(verdict, evidence line) for ``target`` vs the other regimes on ``task`` by the module's rule."""
    per = {r: curves(rows, r, task, x, y) for r in regimes}
    per = {r: c for r, c in per.items() if c}
    if target not in per or len(per) < 2:
        return "not evaluated", f"{task}: {target} or the other regimes are missing"
    levels = common_levels(list(per.values()))
    if not levels:
        return "not evaluated", f"{task}: the regimes' frontiers share no common range of {x.replace('_', ' ')}"
    words, parts, single = [], [], False
    for level in levels:
        vals = {r: {k: v for k, c in cs.items() if (v := interp_at(c, level)) is not None} for r, cs in per.items()}
        diffs = {r: paired_difference(vals[target], vals[r]) for r in per if r != target}
        words.append(_level_word(diffs, lower))
        single = single or any(iv is not None and iv.n < 2 for iv in diffs.values())
        means = ", ".join(f"{r} {np.mean(list(v.values())):.4g}" for r, v in vals.items() if v)
        ds = ", ".join(f"{r} {iv.mean:+.3g} [{iv.low:+.3g}, {iv.high:+.3g}]" for r, iv in diffs.items() if iv)
        parts.append(f"at {_fmt_level(x, level)}: {words[-1]} (means {means}; {target} minus other: {ds})")
    verdict = ("reproduced" if all(w == "better" for w in words)
               else "mixed" if single or "better" in words else "not reproduced")
    note = " (one (seed, batch) sample: no interval)" if single else ""
    return verdict, f"{task}: {verdict}{note}; " + "; ".join(parts)
