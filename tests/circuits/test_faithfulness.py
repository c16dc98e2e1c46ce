"""faithfulness_curve (SPEC 5, MIB): checked against a direct computation written here.

The reference ranks the edges with a plain ``sorted``, builds each level's circuit with ``Circuit.from_edges``,
runs it with ``run_circuit``, computes KL / logit difference with explicit formulas and integrates with
``numpy.trapezoid``; pruning is checked against an explicit search for input-output paths over (layer, neuron).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_batches, make_mlp
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits import (MIB_LEVELS, Circuit, Edge, eap, faithfulness_curve, graph_of, metrics, run_circuit,
                      threshold_sweep)
from circuits.faithfulness import areas


def plain_kl(logits: torch.Tensor, full: torch.Tensor) -> float:
    p = torch.softmax(full, -1)
    return float((p * (torch.log(p) - torch.log_softmax(logits, -1))).sum(-1).mean())


def top_edges(scores: dict, order: list, k: int, absolute: bool = True) -> list:
    key = (lambda e: -abs(scores[e])) if absolute else (lambda e: -scores[e])
    return sorted(order, key=lambda e: (key(e), order.index(e)))[:k]


def direct_curve(model, scores, clean, corrupted, levels, metric=plain_kl, ablation="resample", keep=None):
    """f per level and the metric values, by run_circuit on the top int(p * n) edges (``keep`` may prune them)."""
    graph = graph_of(model)
    order = list(graph.edges())
    with torch.no_grad():
        full = model(clean)
    m_full = metric(full, full)
    m_empty = metric(run_circuit(model, Circuit.empty(graph), clean, corrupted, ablation), full)
    fs, ns = [], []
    for p in levels:
        edges = top_edges(scores, order, int(p * len(order)))
        edges = keep(edges) if keep else edges
        logits = run_circuit(model, Circuit.from_edges(graph, edges), clean, corrupted, ablation)
        fs.append((metric(logits, full) - m_empty) / (m_full - m_empty))
        ns.append(len(edges))
    return np.array(fs), ns


def random_scores(model, seed: int, ties: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    edges = list(graph_of(model).edges())
    vals = torch.randn(len(edges), generator=g, dtype=torch.float64)
    if ties:
        vals = vals.round()  # many equal |scores|, both signs
    return dict(zip(edges, vals.tolist()))


LEVELS = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


@pytest.mark.parametrize("source", ["random", "eap", "sweep"])
def test_matches_run_circuit_at_every_level(source):
    model = make_mlp(1)
    clean, corrupted = make_batches(1)
    if source == "random":
        scores = random_scores(model, 3)
    elif source == "eap":
        scores = eap(model, clean, corrupted, "kl")
    else:
        scores = threshold_sweep(model, clean, corrupted, [1e-4, 1e-3, 1e-2])
        assert any(math.isinf(v) for v in scores.values())  # never-pruned edges rank first
    curve = faithfulness_curve(model, scores, clean, corrupted, metric="kl", levels=LEVELS)
    f, ns = direct_curve(model, scores, clean, corrupted, LEVELS)
    np.testing.assert_allclose(curve.faithfulness, f, rtol=1e-9, atol=1e-12)
    assert list(curve.n_edges) == ns == [int(p * 41) for p in LEVELS]
    assert curve.faithfulness[0] == pytest.approx(0.0, abs=1e-12) and curve.faithfulness[-1] == pytest.approx(1.0)
    assert curve.cpr == pytest.approx(np.trapezoid(f, LEVELS), rel=1e-9)
    assert curve.cmd == pytest.approx(np.trapezoid(np.abs(1 - f), LEVELS), rel=1e-9)
    assert curve.levels == LEVELS and curve.n_total_edges == 41


def test_mib_levels_round_down_and_logit_diff_metric():
    model = make_mlp(4, widths=(6, 8, 8, 3))  # 48 + 64 + 24 = 136 edges
    clean, corrupted = make_batches(4, batch=8, d_in=6)
    cl, dl = torch.zeros(8, dtype=torch.long), torch.full((8,), 2)
    scores = random_scores(model, 5)

    def plain_ld(logits, full):
        return -float((logits[:, 0] - logits[:, 2]).mean())

    curve = faithfulness_curve(model, scores, clean, corrupted, metric=metrics.logit_diff(cl, dl), levels=MIB_LEVELS,
                               ablation="mean")
    f, ns = direct_curve(model, scores, clean, corrupted, MIB_LEVELS, metric=plain_ld, ablation="mean")
    assert list(curve.n_edges) == ns == [0, 0, 0, 1, 2, 6, 13, 27, 68, 136]
    np.testing.assert_allclose(curve.faithfulness, f, rtol=1e-9, atol=1e-12)
    assert curve.cpr == pytest.approx(np.trapezoid(f, MIB_LEVELS), rel=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(), absolute=st.booleans())
def test_ties_and_signs_follow_the_graph_order(seed, ties, absolute):
    model = make_mlp(0)
    clean, corrupted = make_batches(0)
    scores = random_scores(model, seed, ties=ties)
    levels = (0.1, 0.3, 0.6)
    curve = faithfulness_curve(model, scores, clean, corrupted, levels=levels, absolute=absolute)
    graph = graph_of(model)
    order = list(graph.edges())
    for p, got in zip(levels, curve.metric_values):
        edges = top_edges(scores, order, int(p * 41), absolute=absolute)
        with torch.no_grad():
            full = model(clean)
        want = plain_kl(run_circuit(model, Circuit.from_edges(graph, edges), clean, corrupted), full)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_equal_scores_keep_the_first_edges_in_graph_order():
    model = make_mlp(2)
    clean, corrupted = make_batches(2)
    order = list(graph_of(model).edges())
    scores = {e: (-1.0 if i % 2 else 1.0) for i, e in enumerate(order)}  # |score| all equal
    curve = faithfulness_curve(model, scores, clean, corrupted, levels=(0.75,))  # int(0.75 * 41) = 30 edges
    with torch.no_grad():
        full = model(clean)
    first, last = (run_circuit(model, Circuit.from_edges(graph_of(model), es), clean, corrupted)
                   for es in (order[:30], order[-30:]))
    assert curve.metric_values[0] == pytest.approx(plain_kl(first, full), rel=1e-9)
    assert abs(plain_kl(last, full) - plain_kl(first, full)) > 1e-3  # the tie-break decides the value


def on_a_path(edges: list, widths: tuple) -> list:
    """Edges of ``edges`` on some path input -> output, by explicit search over (layer, neuron) nodes."""
    L = len(widths) - 1

    def node(hook: str, i: int, sender: bool) -> tuple[int, int]:
        if hook == "hook_in":
            return (0, i)
        if hook == "hook_logits":
            return (L, i)
        return (int(hook.split(".")[1]) + 1, i)

    arcs = [(node(e.sender, e.sender_index, True), node(e.receiver, e.receiver_index, False)) for e in edges]
    fwd, bwd = {(0, i) for i in range(widths[0])}, {(L, i) for i in range(widths[-1])}
    for _ in range(L):
        fwd |= {v for u, v in arcs if u in fwd}
        bwd |= {u for u, v in arcs if v in bwd}
    return [e for e, (u, v) in zip(edges, arcs) if u in fwd and v in bwd]


def test_pruning_drops_kept_edges_off_every_input_output_path():
    widths = (3, 3, 3, 2)
    model = make_mlp(6, widths=widths)
    clean, corrupted = make_batches(6, d_in=3)
    graph = graph_of(model)
    order = list(graph.edges())
    dangling_out = Edge("blocks.1.hook_post", 2, "hook_logits", 0)  # neuron 2 of layer 2 gets no kept input
    dead_end = Edge("hook_in", 1, "blocks.0.hook_pre", 1)  # neuron 1 of layer 1 feeds nothing kept
    path = [Edge("hook_in", 0, "blocks.0.hook_pre", 0), Edge("blocks.0.hook_post", 0, "blocks.1.hook_pre", 0),
            Edge("blocks.1.hook_post", 0, "hook_logits", 1)]
    top = [dangling_out, dead_end, *path]
    scores = {e: (10.0 - top.index(e) if e in top else 0.01 * i) for i, e in enumerate(order)}
    level = len(top) / len(order) + 1e-9
    curve = faithfulness_curve(model, scores, clean, corrupted, levels=(level, 1.0), prune=True)
    assert on_a_path(top, widths) == path
    assert curve.n_edges == (3, len(order)) and curve.pruned
    f, ns = direct_curve(model, scores, clean, corrupted, (level, 1.0), keep=lambda es: on_a_path(es, widths))
    assert ns == [3, len(order)]
    np.testing.assert_allclose(curve.faithfulness, f, rtol=1e-9)
    unpruned = faithfulness_curve(model, scores, clean, corrupted, levels=(level,))
    assert unpruned.n_edges == (5,)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_pruning_agrees_with_a_path_search(seed):
    widths = (4, 3, 3, 2)
    model = make_mlp(7, widths=widths)
    clean, corrupted = make_batches(7, d_in=4)
    scores = random_scores(model, seed)
    levels = (0.1, 0.2, 0.35, 0.5)
    curve = faithfulness_curve(model, scores, clean, corrupted, levels=levels, prune=True)
    f, ns = direct_curve(model, scores, clean, corrupted, levels, keep=lambda es: on_a_path(es, widths))
    assert list(curve.n_edges) == ns
    np.testing.assert_allclose(curve.faithfulness, f, rtol=1e-9, atol=1e-12)


def test_areas_by_hand():
    assert areas((0.0, 0.5, 1.0), (0.0, 0.5, 1.0)) == pytest.approx((0.5, 0.5))
    # 0.5 * (0 + 1.5) / 2 + 0.5 * (1.5 + 1) / 2 = 1.0 ; |1 - f|: 0.5 * (1 + 0.5) / 2 + 0.5 * (0.5 + 0) / 2 = 0.5
    assert areas((0.0, 0.5, 1.0), (0.0, 1.5, 1.0)) == pytest.approx((1.0, 0.5))
    assert areas((0.2,), (0.7,)) == (0.0, 0.0)


def test_bad_input_is_refused_before_any_forward_pass():
    model = make_mlp(0)
    clean, corrupted = make_batches(0)
    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    good = random_scores(model, 0)
    one = next(iter(good))
    with pytest.raises(ValueError, match="does not have"):
        faithfulness_curve(model, {**good, Edge("hook_in", 99, "blocks.0.hook_pre", 0): 1.0}, clean, corrupted)
    with pytest.raises(ValueError, match="lack 1"):
        faithfulness_curve(model, {e: v for e, v in good.items() if e != one}, clean, corrupted)
    with pytest.raises(ValueError, match="NaN"):
        faithfulness_curve(model, {**good, one: float("nan")}, clean, corrupted)
    with pytest.raises(ValueError, match="empty"):
        faithfulness_curve(model, good, clean, corrupted, levels=())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        faithfulness_curve(model, good, clean, corrupted, levels=(0.5, 1.5))
    with pytest.raises(ValueError, match="increasing"):
        faithfulness_curve(model, good, clean, corrupted, levels=(0.5, 0.2))
    with pytest.raises(ValueError, match="ablation"):
        faithfulness_curve(model, good, clean, corrupted, ablation="noise")
    with pytest.raises(TypeError, match="dict"):
        faithfulness_curve(model, list(good.values()), clean, corrupted)
    handle.remove()
    assert not calls


def test_undefined_normalisation_is_nan():
    model = make_mlp(0)
    clean, _ = make_batches(0)
    curve = faithfulness_curve(model, random_scores(model, 1), clean, clean.clone(), levels=(0.5, 1.0))
    assert all(math.isnan(x) for x in curve.faithfulness) and math.isnan(curve.cpr)


def test_to_dict_round_trips_through_json():
    import json

    model = make_mlp(0)
    curve = faithfulness_curve(model, random_scores(model, 1), *make_batches(0), levels=(0.5, 1.0))
    d = json.loads(json.dumps(curve.to_dict()))
    assert d["faithfulness"] == list(curve.faithfulness) and d["cpr"] == curve.cpr


# ---------------------------------------------------------------------------- TransformerLens 4 bridges (SPEC 7)
def gpt2_bridge(seed: int = 0):
    pytest.importorskip("transformer_lens.model_bridge")
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=16, vocab_size=20, n_positions=16, initializer_range=0.3)
    hf = GPT2LMHeadModel(cfg).double().eval()
    return build_bridge_from_module(hf, "GPT2LMHeadModel", hf_config=cfg, tokenizer=None, device="cpu")


def bridge_node(hook: str, index: int) -> tuple:
    """SPEC 7's nodes by hook name: the embedding, a head (its result or any of its q/k/v inputs), an MLP, the output."""
    if hook.startswith("embed"):
        return ("input",)
    layer = int(hook.split(".")[1])
    if "attn" in hook:
        return (layer, "head", index)
    return (layer, "mlp") if "mlp" in hook else ("output",)


def bridge_on_a_path(edges: list) -> list:
    arcs = [(bridge_node(e.sender, e.sender_index), bridge_node(e.receiver, e.receiver_index)) for e in edges]
    fwd, bwd = {("input",)}, {("output",)}
    for _ in range(len(arcs) + 1):
        fwd |= {v for u, v in arcs if u in fwd}
        bwd |= {u for u, v in arcs if v in bwd}
    return [e for e, (u, v) in zip(edges, arcs) if u in fwd and v in bwd]


@pytest.fixture(scope="module")
def bridge():
    return gpt2_bridge()


@pytest.mark.parametrize("prune", [False, True])
def test_bridge_matches_run_circuit_at_every_level(bridge, prune):
    g = torch.Generator().manual_seed(0)
    clean, corrupted = torch.randint(0, 20, (4, 5), generator=g), torch.randint(0, 20, (4, 5), generator=g)
    cl, dl = clean[:, -1] % 20, (clean[:, -1] + 1) % 20

    def plain_ld(logits, full):
        rows = torch.arange(4)
        return -float((logits[rows, -1, cl] - logits[rows, -1, dl]).mean())

    scores = eap(bridge, clean, corrupted, metrics.logit_diff(cl, dl))
    levels = (0.02, 0.1, 0.2, 0.5, 1.0)
    curve = faithfulness_curve(bridge, scores, clean, corrupted, metric=metrics.logit_diff(cl, dl), levels=levels,
                               prune=prune)
    f, ns = direct_curve(bridge, scores, clean, corrupted, levels, metric=plain_ld,
                         keep=bridge_on_a_path if prune else None)
    assert curve.n_total_edges == 110 and list(curve.n_edges) == ns
    if prune:
        assert sum(ns) < sum(int(p * 110) for p in levels)  # the pruning removed something here
    np.testing.assert_allclose(curve.faithfulness, f, rtol=1e-8, atol=1e-10)
