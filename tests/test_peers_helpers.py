"""The pure helpers of ``benchmarks/peers/compare.py`` (the peer environment itself is not part of the suite):
our edges' auto-circuit names and the ACDC order handed to auto-circuit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))
from compare import _node, acdc_order, peer_name  # noqa: E402

from circuits.graph import Edge, graph_of  # noqa: E402


@pytest.fixture(scope="module")
def graph():
    from bench_bridge_acdc import bridge  # on the path through compare

    return graph_of(bridge(2))


def peer_layer(name: str, n_layers: int) -> int:
    """auto-circuit's ``DestNode.layer`` (sequential GPT-2: heads of block l at 2l + 1, its MLP at 2l + 2)."""
    if name == "Resid End":
        return 2 * n_layers + 1
    if name.startswith("MLP "):
        return 2 * int(name[4:]) + 2
    return 2 * int(name[1:].split(".")[0]) + 1


def test_names_are_one_to_one(graph):
    edges = list(graph.edges())
    names = [peer_name(e, 2) for e in edges]
    assert len(set(names)) == len(edges) == 310  # SPEC 7: a 2-layer, 8-head GPT-2
    assert peer_name(edges[0], 2) == "Resid Start->A0.0.Q"
    assert peer_name(Edge("blocks.0.attn.hook_result", 3, "blocks.0.hook_mlp_in", 0), 2) == "A0.3->MLP 0"
    assert peer_name(Edge("blocks.1.mlp.hook_out", 0, "blocks.1.hook_out", 0), 2) == "MLP 1->Resid End"
    assert peer_name(Edge("blocks.0.mlp.hook_out", 0, "blocks.1.attn.hook_k_input", 5), 2) == "MLP 0->A1.5.K"


def test_unknown_hook_is_refused():
    with pytest.raises(ValueError, match="no auto-circuit name"):
        _node("blocks.0.ln1.hook_normalized", 0, 2, True)


def test_acdc_order_is_specs_and_survives_auto_circuits_sort(graph):
    edges = list(graph.edges())
    order = acdc_order(edges, graph.receivers())
    assert sorted(order, key=edges.index) == edges  # a permutation
    hooks = list(dict.fromkeys(e.receiver for e in order))
    assert hooks == list(reversed(graph.receivers()))  # receiver hooks from the output backwards
    for h in hooks:  # within a hook: graph order (receiver node ascending, senders forward)
        assert [e for e in order if e.receiver == h] == [e for e in edges if e.receiver == h]
    layers = [peer_layer(peer_name(e, 2).split("->")[1], 2) for e in order]
    # auto-circuit sorts by dest layer, descending and stable: our order must already be sorted so
    assert sorted(layers, reverse=True) == layers
