"""The planted GPT-2 bridge: only the three planted edges matter, checked with the hook-only SPEC 7 of
tests/circuits/test_bridge.py (not the engine's patching); ACDC recovers them and attribution ranks them first."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformer_lens.model_bridge")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "circuits"))
from test_bridge import spec7_edges, spec7_kl, spec7_run  # noqa: E402  (the independent hook-only SPEC 7)

import circuits  # noqa: E402
from circuits.roc import pessimistic_auc  # noqa: E402
from hooked_bimt.zoo.planted_bridge import planted_gpt2_bridge  # noqa: E402


@pytest.fixture(scope="module")
def planted():
    p = planted_gpt2_bridge(n_batch=16, seed=3)
    circuits.graph_of(p.model)  # turns on the gated hooks the hook-only SPEC 7 uses
    return p


def test_the_model_does_the_task(planted):
    logits = planted.model(planted.clean)
    assert torch.equal(logits[:, -1].argmax(-1), planted.clean[:, 0])  # it reads the first token


def test_keeping_only_the_planted_edges_keeps_the_clean_run(planted):
    full = planted.model(planted.clean).detach()
    only_true = spec7_run(planted.model, set(planted.true_edges), planted.clean, planted.corrupted)
    assert spec7_kl(only_true, full) < 1e-3  # everything else removed: distractors cost O(eps^2)
    nothing = spec7_run(planted.model, set(), planted.clean, planted.corrupted)
    assert spec7_kl(nothing, full) > 1.0
    for edge in planted.true_edges:  # each planted edge alone matters
        assert spec7_kl(spec7_run(planted.model, set(planted.true_edges) - {edge}, planted.clean, planted.corrupted),
                        full) > 1.0


def test_acdc_recovers_exactly_and_attribution_ranks_the_planted_edges_first(planted):
    found = circuits.acdc(planted.model, planted.clean, planted.corrupted, threshold=1e-3)
    assert found.edges == frozenset(planted.true_edges)
    universe = spec7_edges(planted.model.cfg)
    for steps in (None, 5):
        scores = circuits.eap(planted.model, planted.clean, planted.corrupted, "kl", steps=steps)
        assert set(scores) == set(universe)
        assert math.isclose(pessimistic_auc(scores, planted.true_edges, universe, absolute=True), 1.0)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="n_heads"):
        planted_gpt2_bridge(n_heads=1)
