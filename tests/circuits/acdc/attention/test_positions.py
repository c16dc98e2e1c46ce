"""The delta scorer leaves position 0 out of a state of a q or k input (``Scorer._first``: position 0 attends to
itself alone, so no head's output there changes): the fast engine still finds the reference's circuit whichever
positions the metric reads (a middle one: level 1's positions shift within level 2's; every position, 0 included:
nothing left out), with LayerNorm folded (GPT-2) and with rotary keys and grouped KV heads (Llama)."""

from __future__ import annotations

import pytest

import circuits
from circuits import metrics

pytest.importorskip("transformer_lens.model_bridge")
from test_bridge import gpt2_bridge, llama_bridge, tokens  # noqa: E402
from test_bridge_architectures import _middling  # noqa: E402


@pytest.mark.parametrize("make, tolerance", [(gpt2_bridge, 1e-12), (llama_bridge, 1e-6)])
@pytest.mark.parametrize("pos", [2, None])
def test_fast_engine_matches_the_reference_whichever_positions_the_metric_reads(make, tolerance, pos):
    bridge = make()
    clean, corrupted = tokens(5)
    metric = metrics.kl(pos=pos)
    threshold = _middling(bridge, clean, corrupted, metric)
    ref = circuits.acdc(bridge, clean, corrupted, threshold=threshold, metric=metric, engine="reference")
    fast = circuits.acdc(bridge, clean, corrupted, threshold=threshold, metric=metric, engine="fast")
    assert fast.settings["path"] == "attention.delta"
    assert 0 < ref.n_edges < ref.n_total_edges
    assert fast.edges == ref.edges and list(fast.effects) == list(ref.effects)
    # Llama's HF norms and softmax run in float32 even on a float64 model: effects agree to that precision there
    assert max(abs(fast.effects[e] - ref.effects[e]) for e in ref.effects) < tolerance

