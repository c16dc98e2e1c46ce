"""ACDC searches a float32 model on an upcast float64 copy. A TransformerLens bridge that has already run (a forward
pass of the user's, ``graph_of``, ``eap``: what a user does before a search) used to make a broken copy: its
capture hooks stayed closures over the original's blocks (``hook_mlp_in`` "never fires"), and the attention's
last pattern, kept with its gradient after ``eap``, could not be deep-copied at all."""

from __future__ import annotations

import pytest
import torch

import circuits

pytest.importorskip("transformer_lens.model_bridge")
from test_bridge import gpt2_bridge, llama_bridge, tokens  # noqa: E402


@pytest.mark.parametrize("make", [gpt2_bridge, llama_bridge])
def test_a_float32_bridge_that_has_run_is_searched_like_a_fresh_one(make):
    clean, corrupted = tokens(6)
    fresh = circuits.acdc(make().float(), clean, corrupted, threshold=0.01)
    used = make().float()
    with torch.no_grad():
        used(clean)
    circuits.graph_of(used)
    circuits.eap(used, clean, corrupted)  # leaves TransformerLens's attention pattern with its gradient
    assert 0 < fresh.n_edges < fresh.n_total_edges
    assert circuits.acdc(used, clean, corrupted, threshold=0.01).edges == fresh.edges
    assert circuits.eap_then_acdc(used, clean, corrupted, top_n=8, threshold=0.01).n_edges <= 8
    errors = circuits.check_graph(used, example_input=clean, rtol=1e-3)  # the original still hooks as before
    assert max(errors.values()) < 1e-5
