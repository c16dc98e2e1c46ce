"""EAP / EAP-IG: exact where first order is exact, converging where it must, deterministic, generic."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuits
from circuits.attribution import circuit_from_scores, eap, eap_then_acdc, kl_metric
from circuits.graph import Edge, enable_graph_hooks, graph_of
from circuits.planted import removal_effects
from hooked_bimt.zoo.planted import planted_mlp
from hooked_bimt.model import HookedMLP
from hooked_bimt.zoo import HookedAttnOnly, HookedResidualMLP



def linear_metric(logits, full_logits):
    """Minus the mean logit difference between classes 0 and 1: linear in the logits."""
    return -(logits[:, 0] - logits[:, 1]).mean()


def _batches(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(n, d, generator=gen, dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["mlp", "residual"]))
def test_eap_equals_exact_removal_effect_on_a_linear_model(seed, kind):
    """Identity activations + a linear metric: the first-order estimate IS the removal effect."""
    torch.manual_seed(seed)
    if kind == "mlp":
        model = HookedMLP((4, 3, 3, 2), activation="identity").double()
    else:
        model = HookedResidualMLP(4, 3, 2, 2, activation="identity").double()
    clean, corrupted = _batches(5, 4, seed)
    scores = eap(model, clean, corrupted, linear_metric)
    exact = removal_effects(model, clean, corrupted, linear_metric)
    assert list(scores) == list(graph_of(model).edges())
    for e in exact:
        assert scores[e] == pytest.approx(exact[e], rel=1e-9, abs=1e-12)


def test_eap_is_the_directional_derivative_on_the_attention_model():
    """On a non-linear model, score(e) = d/dt M(z_r + t c_e) at t = 0 (central finite difference)."""
    torch.manual_seed(3)
    model = HookedAttnOnly(2, 2, 6, 3, 4, 5).double()
    gen = torch.Generator().manual_seed(4)
    clean, corrupted = torch.randint(0, 5, (6, 4), generator=gen), torch.randint(0, 5, (6, 4), generator=gen)
    scores = eap(model, clean, corrupted, linear_metric, point="clean")
    h = 1e-5
    for e in [Edge("hook_embed", 0, "blocks.1.hook_k_input", 1), Edge("blocks.0.attn.hook_z", 1, "blocks.1.hook_q_input", 0),
              Edge("blocks.1.attn.hook_z", 0, "hook_logits", 0), Edge("hook_embed", 0, "blocks.0.hook_v_input", 1)]:
        up = _scaled_removal(model, clean, corrupted, e, h)
        down = _scaled_removal(model, clean, corrupted, e, -h)
        assert scores[e] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)


def _scaled_removal(model, clean, corrupted, edge, t, metric=linear_metric):
    """M after adding t times the edge's removal shift (t=1: exact removal)."""
    def node_slice(t, nodes, index):  # keep node ``index`` only (independent of circuits.patching)
        if nodes.axis is None:
            return t
        out = torch.zeros_like(t)
        out.select(nodes.axis, index).copy_(t.select(nodes.axis, index))
        return out

    graph = graph_of(model)
    enable_graph_hooks(model)  # graph_of leaves a bridge's gated hooks as they were; the cache below reads them
    conn = next(c for c in graph.connections if (c.sender, c.receiver) == (edge.sender, edge.receiver))
    _, ca = model.run_with_cache(clean)
    _, cb = model.run_with_cache(corrupted)
    delta = cb[edge.sender] - ca[edge.sender]
    shift = node_slice(conn.contribute(node_slice(delta, graph.nodes[edge.sender], edge.sender_index)),
                    graph.nodes[edge.receiver], edge.receiver_index)
    with torch.no_grad():
        full = model(clean)
        out = model.run_with_hooks(clean, fwd_hooks=[(edge.receiver, lambda z, hook: z + t * shift)])
    return float(metric(out, full))


def test_eap_ig_converges_to_the_exact_effect_of_a_single_edge():
    """Only input 0 differs and only edge in[0] -> pre[0] carries it: the IG path integral along the input
    line is then exactly that edge's removal effect; the midpoint rule converges as 1/k^2."""
    torch.manual_seed(0)
    model = HookedMLP((3, 3, 2), activation="silu").double()
    with torch.no_grad():
        model.linears[0].weight[1:, 0] = 0.0
        model.linears[0].weight[0, 0] = 2.0
    clean, corrupted = _batches(8, 3, 5)
    corrupted[:, 1:] = clean[:, 1:]
    edge = Edge("hook_in", 0, "blocks.0.hook_pre", 0)
    exact = removal_effects(model, clean, corrupted, "kl", [edge])[edge]
    assert exact > 1e-3
    errors = [abs(eap(model, clean, corrupted, "kl", steps=k)[edge] - exact) for k in (2, 8, 64)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3 * exact


def test_kl_gradient_point():
    """KL is stationary at the clean run: point='clean' gives all-zero scores, 'auto' uses the corrupted run."""
    p = planted_mlp(n_batch=16)
    zero = eap(p.model, p.clean, p.corrupted, "kl", point="clean")
    assert max(abs(v) for v in zero.values()) < 1e-12
    auto = eap(p.model, p.clean, p.corrupted, "kl")
    assert auto == eap(p.model, p.clean, p.corrupted, kl_metric, point="corrupted")
    assert max(abs(v) for v in auto.values()) > 1e-3


@pytest.mark.parametrize("steps", [None, 3])
def test_scores_are_deterministic_and_cover_the_graph(steps):
    torch.manual_seed(2)
    model = HookedAttnOnly(2, 2, 6, 3, 4, 5).double()
    gen = torch.Generator().manual_seed(4)
    clean, corrupted = torch.randint(0, 5, (6, 4), generator=gen), torch.randint(0, 5, (6, 4), generator=gen)
    a = eap(model, clean, corrupted, steps=steps)
    b = eap(model, clean, corrupted, steps=steps)
    assert a == b
    assert set(a) == set(graph_of(model).edges())
    # pos-embed is identical in clean and corrupted runs: its edges score exactly 0
    assert all(v == 0.0 for e, v in a.items() if e.sender == "hook_pos_embed")


def test_bad_input():
    model = HookedMLP((4, 3, 2)).double()
    clean, corrupted = _batches(5, 4, 0)
    with pytest.raises(ValueError, match="paired"):
        eap(model, clean, corrupted[:3])
    with pytest.raises(ValueError, match="unknown metric"):
        eap(model, clean, corrupted, "l2")
    with pytest.raises(TypeError, match="metric"):
        eap(model, clean, corrupted, 3)
    with pytest.raises(ValueError, match="steps"):
        eap(model, clean, corrupted, steps=0)
    with pytest.raises(ValueError, match="point"):
        eap(model, clean, corrupted, point="middle")


def test_circuit_from_scores():
    model = HookedMLP((2, 2, 1)).double()
    graph = graph_of(model)
    edges = list(graph.edges())
    scores = {e: float(i) * (-1) ** i for i, e in enumerate(edges)}  # |score| = position
    top = circuit_from_scores(scores, model, top_n=2)
    assert top.edges == frozenset(edges[-2:]) and top.n_total_edges == graph.n_edges
    thr = circuit_from_scores(scores, graph, threshold=3.0)
    assert thr.edges == frozenset(e for e in edges if abs(scores[e]) >= 3.0)
    with pytest.raises(ValueError, match="exactly one"):
        circuit_from_scores(scores, model, top_n=1, threshold=1.0)
    with pytest.raises(ValueError, match="no connection"):
        circuit_from_scores({Edge("hook_in", 0, "hook_logits", 0): 1.0}, model, top_n=1)


def test_eap_prefilter_feeds_acdc():
    """ACDC restricted to the top EAP edges of a planted MLP still finds the planted circuit (awaits engine)."""
    p = planted_mlp(n_batch=32)
    found = eap_then_acdc(p.model, p.clean, p.corrupted, top_n=20, threshold=1e-3)
    assert found.edges == frozenset(p.true_edges)
    direct = circuits.acdc(p.model, p.clean, p.corrupted, threshold=1e-3,
                           edges=circuit_from_scores(eap(p.model, p.clean, p.corrupted), p.model, top_n=20).edges)
    assert direct.edges == found.edges


def test_eap_is_the_directional_derivative_on_a_bridge():
    """Every scoring path on a TransformerLens bridge (declared ``node_mix``; without it, the adjoint of
    ``contribute`` or contributions per sender) is d/dt M(z_r + t c_e) at t = 0 (central finite difference)."""
    import dataclasses

    pytest.importorskip("transformer_lens.model_bridge")
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel


    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=16, vocab_size=20, n_positions=16, initializer_range=0.3)
    model = build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel", hf_config=cfg,
                                     tokenizer=None, device="cpu")
    gen = torch.Generator().manual_seed(4)
    clean, corrupted = torch.randint(0, 20, (4, 5), generator=gen), torch.randint(0, 20, (4, 5), generator=gen)

    def metric(logits, full):
        return -(logits[:, -1, 3] - logits[:, -1, 5]).mean()

    declared = eap(model, clean, corrupted, metric, point="clean")
    graph = graph_of(model)
    plain = dataclasses.replace(graph, connections=tuple(dataclasses.replace(c, node_mix=None) for c in graph.connections))
    model.circuit_graph = lambda: plain  # the same bridge declared without node_mix: the generic paths
    try:
        generic = eap(model, clean, corrupted, metric, point="clean")
    finally:
        del model.circuit_graph
    h = 1e-5
    for e in [Edge("embed.hook_out", 0, "blocks.1.attn.hook_q_input", 2),
              Edge("blocks.0.attn.hook_result", 1, "blocks.1.attn.hook_k_input", 3),
              Edge("blocks.0.attn.hook_result", 2, "blocks.0.hook_mlp_in", 0),
              Edge("blocks.1.mlp.hook_out", 0, "blocks.1.hook_out", 0)]:
        up = _scaled_removal(model, clean, corrupted, e, h, metric)
        down = _scaled_removal(model, clean, corrupted, e, -h, metric)
        assert declared[e] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9), e
        assert generic[e] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9), e
    assert all(generic[e] == pytest.approx(v, rel=1e-9, abs=1e-13) for e, v in declared.items())
