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
    assert m["logit_diff_recovery"] == pytest.approx(float(ld_circ / ld_full))
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
