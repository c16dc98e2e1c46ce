"""ROC curves and the pessimistic AUC of an edge ranking against a known (planted) circuit.

A ranking is a score per edge, higher = more likely in the circuit (EAP: ``|score|``; an ACDC threshold
sweep: the smallest threshold at which the edge was pruned, so edges that survive larger thresholds rank
higher). Sweeping a cut from the top, the ROC curve plots the true-positive rate (fraction of true edges
above the cut) against the false-positive rate (fraction of other edges above it).

Ties are resolved AGAINST the method, as in the ACDC paper: within a group of equal scores the false
edges are counted before the true ones, so the curve is a staircase that first moves right, then up.
Its area is

    AUC = sum over tie groups g of  (negatives in g / N) * TPR(before g)
        = P(score(true edge) > score(other edge))   (ties count as losses),

1.0 for a ranking with every true edge strictly above every other, 0.0 for the reverse.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
from jaxtyping import Float

from circuits.graph import Edge


def _prepare(scores: dict[Edge, float], true_edges: Iterable[Edge], universe: Optional[Iterable[Edge]],
             missing: Optional[float], absolute: bool) -> tuple[np.ndarray, np.ndarray]:
    true = set(true_edges)
    edges = list(scores) if universe is None else list(dict.fromkeys(universe))
    lacking = [e for e in edges if e not in scores]
    if lacking and missing is None:
        raise ValueError(f"{len(lacking)} edges of the universe have no score (e.g. {lacking[0]}); "
                         "pass missing= to give them one")
    extra = true - set(edges)
    if extra:
        raise ValueError(f"{len(extra)} true edges are not in the ranked universe (e.g. {next(iter(extra))})")
    values = np.array([scores.get(e, missing) for e in edges], dtype=float)
    if np.isnan(values).any():
        raise ValueError("scores contain NaN")
    if absolute:
        values = np.abs(values)
    labels = np.array([e in true for e in edges], dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("a ROC curve needs at least one true and one other edge")
    return values, labels


def roc_curve(scores: dict[Edge, float], true_edges: Iterable[Edge], universe: Optional[Iterable[Edge]] = None,
              *, missing: Optional[float] = None, absolute: bool = False
              ) -> tuple[Float[np.ndarray, "n_points"], Float[np.ndarray, "n_points"]]:
    """The pessimistic ROC staircase ``(fpr, tpr)``, from (0, 0) to (1, 1).

    Args:
        scores: edge -> score (higher = in the circuit).
        true_edges: the known circuit.
        universe: every candidate edge (default: the scored ones); unscored edges get ``missing``.
        absolute: rank by ``|score|``.
    """
    values, labels = _prepare(scores, true_edges, universe, missing, absolute)
    P, N = labels.sum(), (~labels).sum()
    fpr, tpr = [0.0], [0.0]
    tp = fp = 0
    for level in sorted(set(values.tolist()), reverse=True):
        group = values == level
        neg, pos = int((group & ~labels).sum()), int((group & labels).sum())
        if neg:
            fp += neg
            fpr.append(fp / N)
            tpr.append(tp / P)
        if pos:
            tp += pos
            fpr.append(fp / N)
            tpr.append(tp / P)
    return np.array(fpr), np.array(tpr)


def pessimistic_auc(scores: dict[Edge, float], true_edges: Iterable[Edge], universe: Optional[Iterable[Edge]] = None,
                    *, missing: Optional[float] = None, absolute: bool = False) -> float:
    """Area under the pessimistic ROC staircase (module docstring); in [0, 1]."""
    fpr, tpr = roc_curve(scores, true_edges, universe, missing=missing, absolute=absolute)
    return float(np.sum(np.diff(fpr) * tpr[:-1]))  # horizontal steps happen at the height before them
