"""Migrating from TransformerLens 3's HookedTransformer: ``enable_compatibility_mode()`` (LayerNorm folded, weights
centred, as HookedTransformer loaded them) changes the logits by a constant per position only (to ~1e-7: the
processing rounds), so circuits found on it are the same (docs/transformers.md, "Coming from HookedTransformer")."""

from __future__ import annotations

import pytest
import torch

import circuits

pytest.importorskip("transformer_lens.model_bridge")
from test_bridge import gpt2_bridge, tokens  # noqa: E402


def _compat():
    bridge = gpt2_bridge()  # the same weights as gpt2_bridge(): seeded
    bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge


def test_compatibility_mode_shifts_logits_by_a_constant_per_position_only():
    plain, compat = gpt2_bridge(), _compat()
    clean, _ = tokens(3)
    with torch.no_grad():
        a, b = plain(clean), compat(clean)
    assert (a - b).abs().max() > 1e-3  # the processing really happened (center_unembed moves the logits)
    torch.testing.assert_close(torch.log_softmax(a, -1), torch.log_softmax(b, -1), rtol=0, atol=1e-5)  # its processing rounds


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_compatibility_mode_finds_the_same_circuit(engine):
    clean, corrupted = tokens(3)
    plain = circuits.acdc(gpt2_bridge(), clean, corrupted, threshold=0.01, engine=engine)
    compat = circuits.acdc(_compat(), clean, corrupted, threshold=0.01, engine=engine)
    assert 0 < plain.n_edges < plain.n_total_edges
    assert compat.edges == plain.edges
    for edge, effect in plain.effects.items():
        assert compat.effects[edge] == pytest.approx(effect, rel=1e-4, abs=1e-9)


def test_compatibility_mode_gives_the_same_eap_scores():
    clean, corrupted = tokens(4)
    plain, compat = circuits.eap(gpt2_bridge(), clean, corrupted), circuits.eap(_compat(), clean, corrupted)
    scale = max(abs(v) for v in plain.values())
    assert max(abs(plain[e] - compat[e]) for e in plain) < 1e-5 * scale
