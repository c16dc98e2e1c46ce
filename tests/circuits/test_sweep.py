"""threshold_sweep: each edge's smallest pruning threshold, consistent with the per-threshold circuits."""

from __future__ import annotations

import math

import pytest
from conftest import make_batches, make_mlp

from circuits import acdc, graph_of, threshold_sweep


def test_ranking_matches_the_circuits():
    model = make_mlp(2)
    clean, corrupted = make_batches(2)
    ts = [0.01, 0.0003, 0.001, 0.003]
    rank = threshold_sweep(model, clean, corrupted, ts)
    assert set(rank) == set(graph_of(model).edges())
    assert sorted(rank.circuits) == sorted(ts)
    for e, t in rank.items():
        pruned_at = [x for x in sorted(ts) if e not in rank.circuits[x].edges]
        assert t == (pruned_at[0] if pruned_at else math.inf)
    c = acdc(model, clean, corrupted, threshold=0.01)
    assert rank.circuits[0.01].edges == c.edges
    assert len(set(rank.values())) >= 3  # a ranking, not one bucket


def test_bad_thresholds():
    model = make_mlp(0)
    with pytest.raises(ValueError, match="empty"):
        threshold_sweep(model, *make_batches(0), [])
    with pytest.raises(ValueError, match="threshold"):
        threshold_sweep(model, *make_batches(0), [0.1, -1.0])
