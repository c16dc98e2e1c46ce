"""The graph protocol: check_graph catches lying declarations; empty/full circuits reproduce the
corrupted/clean runs through the engine's ``run_circuit`` for every architecture."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuits
from circuits.circuit import Circuit
from circuits.graph import Connection, Graph, Nodes, graph_of
from circuits.protocol_check import check_graph
from hooked_bimt.model import HookedMLP
from hooked_bimt.zoo import HookedAttnOnly, HookedResidualMLP



def _mlp(seed=0):
    torch.manual_seed(seed)
    return HookedMLP((4, 3, 3, 2), activation="silu").double()


def _x(n=6, d=4, seed=1):
    return torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _with_connections(graph: Graph, conns) -> Graph:
    return replace(graph, connections=tuple(conns))


def test_mlp_graph_passes():
    check_graph(_mlp(), example_input=_x(), rtol=1e-9)


def test_non_linear_edge_declared_as_additive_is_detected():
    m = _mlp()
    g = graph_of(m)
    # claim blocks.1.hook_pre is a linear function of hook_in (skipping the SiLU): false
    W = lambda: m.linears[1].weight @ m.linears[0].weight  # noqa: E731
    fake = Connection("hook_in", "blocks.1.hook_pre", lambda a: a @ W().T, W)
    conns = [c if c.receiver != "blocks.1.hook_pre" else fake for c in g.connections]
    with pytest.raises(ValueError, match="blocks.1.hook_pre.*do not sum.*non-linear"):
        check_graph(m, _with_connections(g, conns), _x())


def test_missing_connection_is_detected():
    m = HookedResidualMLP(3, 4, 3, 2).double()
    g = graph_of(m)
    conns = [c for c in g.connections if not (c.sender == "blocks.0.hook_post" and c.receiver == "blocks.2.hook_pre")]
    with pytest.raises(ValueError, match="blocks.2.hook_pre.*do not sum"):
        check_graph(m, _with_connections(g, conns), _x(d=3))


def test_declaration_naming_a_missing_hook():
    m = _mlp()
    g = graph_of(m)
    nodes = dict(g.nodes, **{"blocks.7.hook_post": Nodes("blocks.7.hook_post", 3)})
    bad = replace(g, nodes=nodes, connections=g.connections + (
        Connection("blocks.7.hook_post", "hook_logits", lambda a: a @ m.linears[2].weight.T),))
    with pytest.raises(ValueError, match="blocks.7.hook_post"):
        check_graph(m, bad, _x())

    class Liar(HookedMLP):
        def circuit_graph(self):
            return bad

    with pytest.raises(ValueError, match="does not have.*blocks.7.hook_post"):
        graph_of(Liar((4, 3, 3, 2)))


def test_wrong_node_count_and_axis():
    m = _mlp()
    g = graph_of(m)
    wrong_count = replace(g, nodes=dict(g.nodes, hook_in=Nodes("hook_in", 5)))
    with pytest.raises(ValueError, match="hook_in: declared 5 nodes"):
        check_graph(m, wrong_count, _x())
    wrong_axis = replace(g, nodes=dict(g.nodes, hook_in=Nodes("hook_in", 6, axis=0)))
    with pytest.raises(ValueError, match="hook_in: node axis 0"):
        check_graph(m, wrong_axis, _x())


def test_contribution_with_a_bias_is_rejected():
    m = _mlp()
    g = graph_of(m)
    lin = m.linears[0]
    biased = Connection("hook_in", "blocks.0.hook_pre", lambda a: a @ lin.weight.T + lin.bias)
    conns = [biased if c.receiver == "blocks.0.hook_pre" else c for c in g.connections]
    with pytest.raises(ValueError, match=r"contribute\(0\) != 0"):
        check_graph(m, _with_connections(g, conns), _x())


def test_weight_disagreeing_with_contribute_is_rejected():
    m = _mlp()
    g = graph_of(m)
    lin = m.linears[0]
    liar = Connection("hook_in", "blocks.0.hook_pre", lambda a: a @ lin.weight.T, lambda: 2 * lin.weight)
    conns = [liar if c.receiver == "blocks.0.hook_pre" else c for c in g.connections]
    with pytest.raises(ValueError, match="weight"):
        check_graph(m, _with_connections(g, conns), _x())


def test_mismatched_batches_and_missing_input():
    m = _mlp()
    with pytest.raises(ValueError, match="batches must match"):
        check_graph(m, example_input=_x(6), second_input=_x(5))
    with pytest.raises(ValueError, match="example_input"):
        check_graph(m)
    with pytest.raises(ValueError, match="two examples"):
        check_graph(m, example_input=_x(1))


# ---------------------------------------------------------------- engine round trips (need circuits.run_circuit)

def _architecture(kind: str, seed: int):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    if kind == "mlp":
        m = HookedMLP((4, 5, 3, 3), activation="silu").double()
        return m, torch.randn(5, 4, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen, dtype=torch.float64)
    if kind == "residual":
        m = HookedResidualMLP(4, 3, 3, 3, activation="silu").double()
        return m, torch.randn(5, 4, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen, dtype=torch.float64)
    m = HookedAttnOnly(2, 2, 6, 3, 4, 5).double()
    return m, torch.randint(0, 5, (5, 4), generator=gen), torch.randint(0, 5, (5, 4), generator=gen)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["mlp", "residual", "attn"]), st.integers(0, 10**6))
def test_empty_and_full_circuits_reproduce_corrupted_and_clean_runs(kind, seed):
    model, clean, corrupted = _architecture(kind, seed)
    graph = graph_of(model)
    full = circuits.run_circuit(model, Circuit.full(graph), clean, corrupted, ablation="resample")
    empty = circuits.run_circuit(model, Circuit.empty(graph), clean, corrupted, ablation="resample")
    with torch.no_grad():
        torch.testing.assert_close(full, model(clean), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(empty, model(corrupted), rtol=1e-9, atol=1e-10)


def test_the_worked_example_in_the_docs_runs_and_passes():
    """docs/your_model.md's declaration example is real code that passes the check."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "your_model.md").read_text()
    declare, check = re.findall(r"```python\n(.*?)```", doc, re.S)[:2]
    namespace: dict = {}
    exec(declare + "\n" + check, namespace)
    assert graph_of(namespace["model"]).n_edges == 4 * 5 + 4 * 2 + 5 * 2

