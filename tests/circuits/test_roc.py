"""ROC / pessimistic AUC on hand-made rankings, and against a brute-force pair count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.graph import Edge
from circuits.roc import pessimistic_auc, roc_curve

E = [Edge("s", i, "r", 0) for i in range(6)]


def test_perfect_reversed_and_tied_rankings():
    true = {E[0], E[1]}
    perfect = {e: 10.0 - i for i, e in enumerate(E)}
    assert pessimistic_auc(perfect, true) == 1.0
    reversed_ = {e: float(i) for i, e in enumerate(E)}
    assert pessimistic_auc(reversed_, true) == 0.0
    assert pessimistic_auc({e: 1.0 for e in E}, true) == 0.0  # all tied: resolved against the method


def test_partial_ties_are_pessimistic():
    true = {E[0]}
    scores = {E[0]: 2.0, E[1]: 2.0, E[2]: 1.0, E[3]: 0.0}
    # the tied false edge E[1] counts as ranked above E[0]: 2 of 3 negatives below
    assert pessimistic_auc(scores, true) == pytest.approx(2 / 3)
    fpr, tpr = roc_curve(scores, true)
    np.testing.assert_allclose(fpr, [0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0, 1, 1, 1])


def test_absolute_missing_and_universe():
    true = {E[0]}
    scores = {E[0]: -5.0, E[1]: 1.0, E[2]: 0.5}
    assert pessimistic_auc(scores, true) == 0.0
    assert pessimistic_auc(scores, true, absolute=True) == 1.0
    with pytest.raises(ValueError, match="no score"):
        pessimistic_auc(scores, true, universe=E)
    assert pessimistic_auc(scores, true, universe=E, missing=0.0, absolute=True) == 1.0
    assert pessimistic_auc({E[1]: 1.0, E[2]: 0.0}, {E[0]}, universe=E[:3], missing=float("inf")) == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="at least one true and one other"):
        pessimistic_auc({E[0]: 1.0}, {E[0]})
    with pytest.raises(ValueError, match="not in the ranked universe"):
        pessimistic_auc({E[0]: 1.0, E[1]: 0.0}, {E[5]})
    with pytest.raises(ValueError, match="NaN"):
        pessimistic_auc({E[0]: float("nan"), E[1]: 0.0}, {E[0]})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=12))
def test_auc_is_the_pairwise_win_rate_with_ties_lost(items):
    scores = {Edge("s", i, "r", 0): float(v) for i, (v, _) in enumerate(items)}
    true = {Edge("s", i, "r", 0) for i, (_, t) in enumerate(items) if t}
    if not true or len(true) == len(items):
        return
    pos = [scores[e] for e in true]
    neg = [s for e, s in scores.items() if e not in true]
    wins = sum(p > n for p, n in itertools.product(pos, neg))
    assert pessimistic_auc(scores, true) == pytest.approx(wins / (len(pos) * len(neg)))
    fpr, tpr = roc_curve(scores, true)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
