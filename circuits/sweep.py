"""Threshold sweep: rank edges by the smallest ACDC threshold at which they are pruned.

``rank[e] = min { t in thresholds : e not in acdc(..., threshold=t) }`` (``inf`` if never pruned).
A lower value means a less important edge, so ``rank`` itself is a score (higher = more likely in the
circuit): for ROC curves against a planted circuit (``circuits.roc``) and as ACDC's edge score for
``faithfulness_curve`` (SPEC 5; auto-circuit's convention: never-pruned edges, ``inf``, rank first), where
ACDC meets EAP and EAP-IG on one curve. ACDC is not monotone in the threshold in general, so this is the
first pruning, not a nesting guarantee.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from jaxtyping import Float
from torch import Tensor

from circuits.acdc import acdc, check_threshold
from circuits.circuit import Circuit
from circuits.graph import runnable_graph
from circuits.hook_settings import keeps_hook_settings


class EdgeRanking(dict):
    """``dict[Edge, float]`` (smallest pruning threshold per edge) with ``.circuits``: threshold -> Circuit."""

    circuits: dict[float, Circuit]


@keeps_hook_settings
def threshold_sweep(
    model: Any,
    clean: Float[Tensor, "batch ..."],
    corrupted: Float[Tensor, "batch ..."],
    thresholds: Iterable[float],
    *,
    metric: Any = "kl",
    ablation: str = "resample",
    engine: str = "fast",
) -> EdgeRanking:
    """Run ACDC at each threshold (ascending); every edge of the graph gets its smallest pruning threshold."""
    ts = sorted({check_threshold(t) for t in thresholds})
    if not ts:
        raise ValueError("thresholds is empty")
    graph = runnable_graph(model)
    ranking = EdgeRanking({e: math.inf for e in graph.edges()})
    ranking.circuits = {}
    for t in ts:
        circuit = acdc(model, clean, corrupted, threshold=t, metric=metric, ablation=ablation, engine=engine)
        ranking.circuits[t] = circuit
        for e in ranking:
            if ranking[e] == math.inf and e not in circuit.edges:
                ranking[e] = t
    return ranking
