"""Planted circuits: the ground truth holds by construction; EAP / EAP-IG / ACDC recover it."""

from __future__ import annotations

import math

import pytest
import torch

import circuits
from circuits.attribution import eap
from circuits.graph import graph_of
from circuits.planted import removal_effects
from hooked_bimt.zoo.planted import FAMILIES, planted_attn_only, planted_mlp, planted_residual_mlp
from circuits.roc import pessimistic_auc



@pytest.fixture(scope="module", params=sorted(FAMILIES))
def planted(request):
    p = FAMILIES[request.param](n_batch=32)
    return request.param, p, removal_effects(p.model, p.clean, p.corrupted, p.metric)


def _gap(effects, true):
    true_min = min(effects[e] for e in true)
    other_max = max(abs(v) for e, v in effects.items() if e not in true)
    return true_min, other_max


def test_ground_truth_holds_by_construction(planted):
    name, p, effects = planted
    graph = graph_of(p.model)
    for e in p.true_edges:
        graph.check_edge(e)
    true_min, other_max = _gap(effects, p.true_edges)
    assert true_min > 1e-2, name
    assert true_min > 100 * other_max, name
    others = [abs(v) for e, v in effects.items() if e not in p.true_edges]
    assert sum(v == 0.0 for v in others) > 0 and sum(v > 0.0 for v in others) > 0, "needs zero and tiny effects"


def test_identical_inputs_where_planted():
    p = planted_mlp(n_signal=2, n_distract=2, n_const=3)
    torch.testing.assert_close(p.clean[:, 4:], p.corrupted[:, 4:])
    assert not torch.allclose(p.clean[:, :4], p.corrupted[:, :4])
    a = planted_attn_only(n_ctx=4)
    assert torch.equal(a.clean[:, 1:], a.corrupted[:, 1:]) and torch.all(a.clean[:, 0] != a.corrupted[:, 0])


@pytest.mark.parametrize("steps", [None, 5])
def test_eap_auc_on_every_family(planted, steps):
    name, p, _ = planted
    scores = eap(p.model, p.clean, p.corrupted, p.metric, steps=steps)
    assert pessimistic_auc(scores, p.true_edges, absolute=True) >= 0.99, name


@pytest.mark.parametrize("seed", [1, 2])
def test_eap_auc_other_seeds_float32(seed):
    for build in FAMILIES.values():
        p = build(seed=seed, n_batch=32, dtype=torch.float32)
        assert p.model.dtype == torch.float32
        scores = eap(p.model, p.clean, p.corrupted, p.metric, steps=3)
        assert pessimistic_auc(scores, p.true_edges, absolute=True) >= 0.95


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden"):
        planted_mlp(hidden=3)
    with pytest.raises(ValueError, match="n_signal"):
        planted_residual_mlp(n_signal=0)
    with pytest.raises(ValueError, match="d_vocab"):
        planted_attn_only(d_vocab=1)


# ---------------------------------------------------------------- ACDC on planted circuits (need the engine)

def test_acdc_returns_exactly_the_planted_edges(planted):
    """At a threshold between the distractors' and the signal's effects (geometric mean of the two)."""
    name, p, effects = planted
    true_min, other_max = _gap(effects, p.true_edges)
    threshold = math.sqrt(true_min * max(other_max, 1e-12))
    found = circuits.acdc(p.model, p.clean, p.corrupted, threshold=threshold, metric=p.metric)
    assert found.edges == frozenset(p.true_edges), name


def test_fast_and_reference_engines_agree(planted):
    name, p, effects = planted
    true_min, other_max = _gap(effects, p.true_edges)
    for threshold in (other_max / 10, math.sqrt(true_min * other_max)):
        fast = circuits.acdc(p.model, p.clean, p.corrupted, threshold=threshold, engine="fast")
        ref = circuits.acdc(p.model, p.clean, p.corrupted, threshold=threshold, engine="reference")
        assert fast.edges == ref.edges, name


def test_acdc_sweep_auc(planted):
    name, p, effects = planted
    true_min, other_max = _gap(effects, p.true_edges)
    thresholds = [10.0 ** k for k in range(-8, 1)]
    pruned_at = circuits.threshold_sweep(p.model, p.clean, p.corrupted, thresholds)
    auc = pessimistic_auc(pruned_at, p.true_edges, universe=list(graph_of(p.model).edges()), missing=math.inf)
    assert auc >= 0.95, name
