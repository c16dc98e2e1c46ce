"""``benchmarks/growth_acdc.py`` (issue 25 item 3): the sampled check really compares the fast engine with the
reference from the same state, a budget stops the loop between hooks, and the cost model's pure parts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from growth_acdc import blocks_recomputed, hook_edges, receiver_nodes, run_sampled  # noqa: E402

import circuits  # noqa: E402
from circuits.graph import graph_of  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("transformer_lens.model_bridge")
    from bench_bridge_acdc import wrap
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=8, vocab_size=12, n_positions=8, initializer_range=0.5)
    model = wrap("GPT2LMHeadModel", GPT2LMHeadModel(cfg).double().eval(), cfg)
    g = torch.Generator().manual_seed(1)
    return model, torch.randint(0, 12, (4, 5), generator=g), torch.randint(0, 12, (4, 5), generator=g)


def test_hook_edges_counts_spec7_edges(tiny):
    graph = graph_of(tiny[0])
    want = {h: sum(graph.nodes[c.sender].count for c in graph.connections_into(h)) * graph.nodes[h].count
            for h in graph.receivers()}
    assert {h: n for h, n, _ in hook_edges(2, 2)} == want
    assert sum(n for _, n, _ in hook_edges(12, 12)) == 32491  # GPT-2 small
    assert sum(n for _, n, _ in hook_edges(4, 8)) == 1519


def test_blocks_recomputed():
    assert blocks_recomputed("blocks.3.hook_out", 4) == 0
    assert blocks_recomputed("blocks.3.hook_mlp_in", 4) == 1
    assert blocks_recomputed("blocks.0.attn.hook_q_input", 4) == 4


def test_every_node_sampled_gives_the_public_fast_circuit_and_agrees_with_the_reference(tiny):
    model, clean, corrupted = tiny
    nodes = len(receiver_nodes(graph_of(model)))
    out = run_sampled(model, clean, corrupted, 0.01, sample_k=nodes)
    public = circuits.acdc(model, clean, corrupted, threshold=0.01)
    assert out.finished and out.n_kept == public.n_edges and out.tested == public.settings["n_tested"]
    assert out.check.nodes > 0 and out.check.edges > 0 and not out.check.disagreements
    assert out.check.max_effect_diff < 1e-12


def test_a_budget_stops_between_receiver_hooks(tiny):
    out = run_sampled(*tiny, 0.01, sample_k=0, budget_s=0.0)
    assert not out.finished and len(out.hooks) == 1 and out.hooks[0].hook == "blocks.1.hook_out"
