"""evaluate: the SPEC 5 measures against direct computations."""

from __future__ import annotations

import pytest
import torch
from conftest import make_batches, make_mlp

from circuits import Circuit, Edge, evaluate, graph_of, run_circuit


@torch.no_grad()
def test_measures_match_direct_computation():
    model = make_mlp(1)
    clean, corrupted = make_batches(1)
    graph = graph_of(model)
    edges = [Edge("hook_in", 1, "blocks.0.hook_pre", 2), Edge("blocks.0.hook_post", 2, "blocks.1.hook_pre", 0),
             Edge("blocks.1.hook_post", 0, "hook_logits", 1)]
    circuit = Circuit.from_edges(graph, edges)
    cl, dl = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([1, 2, 0, 2, 0, 1])
    m = evaluate(model, circuit, clean, corrupted, clean_labels=cl, corrupt_labels=dl)
    full, circ = model(clean), run_circuit(model, circuit, clean, corrupted)
    rows = torch.arange(6)
    ld_full = (full[rows, cl] - full[rows, dl]).mean()
    ld_circ = (circ[rows, cl] - circ[rows, dl]).mean()
    assert m["logit_gap"] == pytest.approx(float((full - circ).abs().mean()))
    assert m["logit_diff_full"] == pytest.approx(float(ld_full))
    ld_corr = (model(corrupted)[rows, cl] - model(corrupted)[rows, dl]).mean()  # resample: empty circuit = corrupted run
    assert m["logit_diff_ablated"] == pytest.approx(float(ld_corr))
    assert m["logit_diff_recovery"] == pytest.approx(float((ld_circ - ld_corr) / (ld_full - ld_corr)))
    assert m["accuracy"] == pytest.approx(float((circ.argmax(-1) == cl).double().mean()))
    assert m["full_accuracy"] == pytest.approx(float((full.argmax(-1) == cl).double().mean()))
    assert m["n_edges"] == 3 and m["edge_sparsity"] == pytest.approx(1 - 3 / graph.n_edges)
    # hidden nodes touched: blocks.0 neuron 2 and blocks.1 neuron 0, out of 4 + 3
    assert m["n_nodes"] == 2 and m["node_sparsity"] == pytest.approx(1 - 2 / 7)


def test_full_circuit_is_perfect_and_custom_logit_diff():
    model = make_mlp(2)
    clean, corrupted = make_batches(2)
    m = evaluate(model, Circuit.full(graph_of(model)), clean, corrupted, logit_diff=lambda x: x[:, 0] - x[:, 2])
    assert m["logit_gap"] == pytest.approx(0, abs=1e-12) and m["kl"] == pytest.approx(0, abs=1e-12)
    assert m["logit_diff_recovery"] == pytest.approx(1.0)
    assert m["node_sparsity"] == 0 and "accuracy" not in m


def test_bad_labels():
    model = make_mlp(0)
    with pytest.raises(ValueError, match="clean_labels"):
        evaluate(model, Circuit.full(graph_of(model)), *make_batches(0), clean_labels=torch.zeros(2, dtype=torch.long))


@torch.no_grad()
def test_recovery_is_zero_for_the_empty_circuit_and_uses_the_ablation_baseline():
    """SPEC 5: recovery = (LD_circuit - LD_ablated) / (LD_full - LD_ablated); the empty circuit scores 0.

    Under zero ablation the empty circuit's logits are the last bias alone (every edge carries 0), computed
    here from the weights, independently of the patching code.
    """
    model = make_mlp(3)
    clean, corrupted = make_batches(3)
    graph = graph_of(model)
    ld = lambda x: x[:, 0] - x[:, 1]  # noqa: E731
    for ablation in ("resample", "zero", "mean"):
        m = evaluate(model, Circuit.empty(graph), clean, corrupted, logit_diff=ld, ablation=ablation)
        assert m["logit_diff_recovery"] == pytest.approx(0.0, abs=1e-12)
    half = Circuit.from_edges(graph, [e for i, e in enumerate(sorted(graph.edges())) if i % 2 == 0])
    m = evaluate(model, half, clean, corrupted, logit_diff=ld, ablation="zero")
    bias = model.linears[-1].bias
    ld_abl = float(bias[0] - bias[1])
    circ = run_circuit(model, half, clean, corrupted, ablation="zero")
    ld_full, ld_circ = float(ld(model(clean)).mean()), float(ld(circ).mean())
    assert m["logit_diff_ablated"] == pytest.approx(ld_abl)
    assert m["logit_diff_recovery"] == pytest.approx((ld_circ - ld_abl) / (ld_full - ld_abl))
