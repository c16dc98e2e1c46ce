"""ACDC: the SPEC loop order, the drop rules, settings, determinism, generic graphs, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import HeadMixer, ResidualMLP, make_batches, make_mlp

from circuits import Circuit, Edge, acdc, graph_of
from circuits.metrics import logit_diff
from hooked_bimt.model import HookedMLP


def identity_mlp(widths, weights) -> HookedMLP:
    model = HookedMLP(widths, activation="identity").double()
    with torch.no_grad():
        for lin, w in zip(model.linears, weights):
            lin.weight.copy_(torch.tensor(w, dtype=torch.float64))
            lin.bias.zero_()
    return model


def abs_error_on_logit0(logits, full):
    return (logits[:, 0] - full[:, 0]).abs().mean()


def squared_error_on_logit0(logits, full):
    return ((logits[:, 0] - full[:, 0]) ** 2).mean()


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_order_of_removal_follows_the_spec(engine):
    """logit0 = x0 + x1, clean (1,1), corrupted (0,0), squared error, threshold 2: sender 0 is tested first
    (cost 1, removed), then sender 1 at the new state (cost 4 - 1 = 3, kept). The reverse order would keep 0."""
    model = identity_mlp((2, 2), [[[1.0, 1.0], [0.0, 0.0]]])
    clean, corrupted = torch.ones(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    c = acdc(model, clean, corrupted, threshold=2.0, metric=squared_error_on_logit0, engine=engine)
    e0, e1 = Edge("hook_in", 0, "hook_logits", 0), Edge("hook_in", 1, "hook_logits", 0)
    assert c.edges == {e1}
    assert c.effects[e0] == pytest.approx(1.0) and c.effects[e1] == pytest.approx(3.0)
    assert c.settings["n_tested"] == 4  # the two edges into logit 1 (weight 0) are tested too, effect 0


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_node_without_outgoing_edges_loses_its_inputs_untested(engine):
    """Hidden neuron 1 feeds the output with weight 0: its outgoing edge goes (effect 0), so its incoming
    edge is dropped without a test; neuron 0 keeps both edges."""
    model = identity_mlp((1, 2, 1), [[[1.0], [1.0]], [[1.0, 0.0]]])
    clean, corrupted = torch.ones(2, 1, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64)
    c = acdc(model, clean, corrupted, threshold=0.5, metric=abs_error_on_logit0, engine=engine)
    into_1 = Edge("hook_in", 0, "blocks.0.hook_pre", 1)
    assert into_1 not in c.effects and into_1 not in c.edges
    assert c.edges == {Edge("hook_in", 0, "blocks.0.hook_pre", 0), Edge("blocks.0.hook_post", 0, "hook_logits", 0)}
    assert c.settings["n_tested"] == 3


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_final_clean_up_drops_outputs_of_nodes_with_no_input(engine):
    """y = h, h = x0 + x1, clean (1,1), corrupted (0,0), |error|, threshold 1.5: h->y costs 2 (kept); then
    x0->h costs 1 (removed) and x1->h costs 2 - 1 = 1 (removed). h receives nothing, so h->y goes too."""
    model = identity_mlp((2, 1, 1), [[[1.0, 1.0]], [[1.0]]])
    clean, corrupted = torch.ones(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    c = acdc(model, clean, corrupted, threshold=1.5, metric=abs_error_on_logit0, engine=engine)
    assert c.effects[Edge("blocks.0.hook_post", 0, "hook_logits", 0)] == pytest.approx(2.0)
    assert c.edges == frozenset()


def test_threshold_zero_keeps_everything_and_settings_are_recorded(mlp, batches, tmp_path):
    clean, corrupted = batches
    c = acdc(mlp, clean, corrupted, threshold=0.0, engine="reference")
    graph = graph_of(mlp)
    assert c.n_total_edges == graph.n_edges
    s = c.settings
    assert (s["threshold"], s["metric"], s["ablation"], s["engine"]) == (0.0, "kl", "resample", "reference")
    assert s["n_tested"] == len(c.effects) > 0
    assert c.model["fingerprint"] and c.seconds > 0
    loaded = Circuit.load(c.save(tmp_path / "c.json"))
    assert loaded.edges == c.edges and loaded.effects == c.effects
    json.loads((tmp_path / "c.json").read_text())


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_results_are_deterministic(engine):
    model = make_mlp(5)
    clean, corrupted = make_batches(5)
    a = acdc(model, clean, corrupted, threshold=0.003, engine=engine)
    b = acdc(model, clean, corrupted, threshold=0.003, engine=engine)
    assert a.edges == b.edges and a.effects == b.effects
    assert 0 < a.n_edges < a.n_total_edges


def test_edges_subset_restricts_what_is_tested(mlp, batches):
    clean, corrupted = batches
    graph = graph_of(mlp)
    subset = [e for i, e in enumerate(sorted(graph.edges())) if i % 2 == 0]
    c = acdc(mlp, clean, corrupted, threshold=0.0, edges=subset, engine="reference")
    assert set(c.effects) <= set(subset) and c.edges <= set(subset)


@pytest.mark.parametrize("make,shape", [(lambda: ResidualMLP(seed=1), ()), (lambda: ResidualMLP(with_weight=False, seed=1), ()),
                                        (lambda: HeadMixer(seed=1), (3, 2))])
def test_generic_graphs_fall_back_to_the_reference_with_the_same_answer(make, shape):
    model = make()
    clean, corrupted = make_batches(2, batch=5, d_in=4, shape=shape)
    ref = acdc(model, clean, corrupted, threshold=0.002, engine="reference")
    fast = acdc(model, clean, corrupted, threshold=0.002, engine="fast")
    assert fast.settings["engine_used"] == "reference"
    assert fast.edges == ref.edges and fast.effects == ref.effects
    # every edge of the graph is decided; each kept edge was tested and cost at least the threshold
    assert all(ref.effects[e] >= 0.002 for e in ref.edges)


def test_residual_receiver_iterates_sender_hooks_in_connection_order():
    model = ResidualMLP(seed=3)
    clean, corrupted = make_batches(3, batch=4, d_in=4)
    c = acdc(model, clean, corrupted, threshold=0.0, engine="reference")
    tested = list(c.effects)  # insertion order = test order
    first = [e for e in tested if e.receiver == "hook_logits" and e.receiver_index == 0]
    assert [e.sender for e in first] == ["hook_in"] * 4 + ["hook_post"] * 3
    assert [e.sender_index for e in first] == [0, 1, 2, 3, 0, 1, 2]
    assert tested[0].receiver == "hook_logits" and tested[-1].receiver == "hook_pre"


def test_bad_input_raises_before_any_work(mlp, batches):
    clean, corrupted = batches
    with pytest.raises(ValueError, match="threshold"):
        acdc(mlp, clean, corrupted, threshold=-0.1)
    with pytest.raises(ValueError, match="threshold"):
        acdc(mlp, clean, corrupted, threshold=float("nan"))
    with pytest.raises(ValueError, match="unknown metric"):
        acdc(mlp, clean, corrupted, threshold=0.1, metric="l2")
    with pytest.raises(ValueError, match="unknown ablation"):
        acdc(mlp, clean, corrupted, threshold=0.1, ablation="noise")
    with pytest.raises(ValueError, match="unknown engine"):
        acdc(mlp, clean, corrupted, threshold=0.1, engine="turbo")
    with pytest.raises(ValueError, match="batch sizes"):
        acdc(mlp, clean, corrupted[:2], threshold=0.1)
    bad = corrupted.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        acdc(mlp, clean, bad, threshold=0.1)
    with pytest.raises(ValueError, match="node index"):
        acdc(mlp, clean, corrupted, threshold=0.1, edges=[Edge("hook_in", 99, "blocks.0.hook_pre", 0)])


def test_model_whose_graph_names_missing_hooks_is_rejected(batches):
    class Renamed(ResidualMLP):
        def circuit_graph(self):
            g = super().circuit_graph()
            from circuits.graph import Graph, Nodes

            nodes = dict(g.nodes)
            nodes["hook_ghost"] = Nodes("hook_ghost", 2)
            return Graph(nodes, g.connections, g.output, g.node_output)

    with pytest.raises(ValueError, match="hook_ghost"):
        acdc(Renamed(), *make_batches(0, d_in=4), threshold=0.1)
    with pytest.raises(TypeError, match="declares no circuit graph"):
        acdc(torch.nn.Linear(5, 3), *batches, threshold=0.1)


def test_logit_diff_metric_is_named_in_settings(mlp, batches):
    clean, corrupted = batches
    labels = torch.zeros(len(clean), dtype=torch.long)
    c = acdc(mlp, clean, corrupted, threshold=0.01, metric=logit_diff(labels, labels + 1), engine="reference")
    assert c.settings["metric"] == "logit_diff"
