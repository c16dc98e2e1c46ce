"""Grouped-query attention (a Llama bridge with 4 query heads over 2 key/value groups): a head is one node with
three input hooks (SPEC 7), its own query input and its *group's* key and value inputs, for ACDC's dead-node and
clean-up rules and for MIB's pruning. Head ``h`` reads group ``h // 2``; written out here, not taken from the graph.

Before the fix the key/value inputs of a group belonged to no node: clean-up dropped every edge out of a head
whose query input had lost its edges although its group's keys and values still carried the clean run, so the
circuit returned was not the one ACDC had measured (edges into k/v dangling, the heads' outputs gone)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformer_lens.model_bridge")
from test_bridge import llama_bridge, tokens  # noqa: E402

import circuits  # noqa: E402
from circuits import graph_of  # noqa: E402
from circuits.acdc.loop import clean_up, drop_if_dead  # noqa: E402
from circuits.faithfulness import prune_mask  # noqa: E402
from circuits.graph import Edge  # noqa: E402
from circuits.patching import edges_of_mask, mask_of_edges  # noqa: E402

H, GROUP = 4, 2  # query heads per layer; query heads per key/value group


def head_group(h: int) -> int:
    return h // GROUP


@pytest.fixture(scope="module")
def bridge():
    return llama_bridge()


def _mask(graph, edges):
    return mask_of_edges(graph, set(edges))


def test_clean_up_keeps_a_head_fed_only_through_its_key_value_group(bridge):
    g = graph_of(bridge)
    into_k0 = Edge("embed.hook_out", 0, "blocks.0.attn.hook_k_input", 0)  # group 0: heads 0 and 1
    out = g.output
    kept = [into_k0, Edge("blocks.0.attn.hook_result", 1, out, 0), Edge("blocks.0.attn.hook_result", 2, out, 0)]
    mask = _mask(g, kept)
    clean_up(g, mask)
    left = edges_of_mask(mask)
    assert Edge("blocks.0.attn.hook_result", 1, out, 0) in left  # head 1 reads group 0's keys: it receives an edge
    assert Edge("blocks.0.attn.hook_result", 2, out, 0) not in left  # head 2 (group 1) receives nothing
    assert into_k0 in left


def test_a_key_value_group_whose_heads_feed_nothing_loses_its_inputs(bridge):
    g = graph_of(bridge)
    out = g.output
    edges = [Edge("embed.hook_out", 0, "blocks.0.attn.hook_v_input", grp) for grp in range(2)]
    edges.append(Edge("blocks.0.attn.hook_result", 3, out, 0))  # head 3: group 1 feeds something, group 0 does not
    mask = _mask(g, edges)
    assert drop_if_dead(g, mask, "blocks.0.attn.hook_v_input", 0)
    assert not drop_if_dead(g, mask, "blocks.0.attn.hook_v_input", 1)
    left = edges_of_mask(mask)
    assert edges[0] not in left and edges[1] in left


def test_mib_pruning_keeps_the_group_inputs_of_useful_heads(bridge):
    g = graph_of(bridge)
    out = g.output
    edges = [Edge("embed.hook_out", 0, "blocks.0.attn.hook_k_input", 1), Edge("blocks.0.attn.hook_result", 2, out, 0),
             Edge("embed.hook_out", 0, "blocks.0.attn.hook_k_input", 0)]  # group 0's heads feed nothing: pruned
    pruned = edges_of_mask(prune_mask(g, _mask(g, edges)))
    assert pruned == {edges[0], edges[1]}


def _independent_rule_violations(circuit) -> list[str]:
    """SPEC 4/7's end state, checked with the head -> group map written above: every hidden node with an outgoing
    edge receives one through one of its input hooks, and every key/value group input with an incoming edge feeds
    a head of its group that has an outgoing edge."""
    incoming, outgoing, kv_in = set(), set(), set()
    for e in circuit.edges:
        outgoing.add((e.sender, e.sender_index))
        r = e.receiver
        if r.endswith("hook_q_input"):
            incoming.add((r.replace("hook_q_input", "hook_result"), e.receiver_index))
        elif r.endswith(("hook_k_input", "hook_v_input")):
            res = r.rsplit(".", 1)[0] + ".hook_result"
            kv_in.add((res, e.receiver_index))
            incoming.update((res, h) for h in range(H) if head_group(h) == e.receiver_index)
        elif r.endswith("hook_mlp_in"):
            incoming.add((r.replace("hook_mlp_in", "mlp.hook_out"), 0))
    bad = [f"{n} sends but receives nothing" for n in outgoing if n[0] != "embed.hook_out" and n not in incoming]
    for res, grp in kv_in:
        if not any((res, h) in outgoing for h in range(H) if head_group(h) == grp):
            bad.append(f"{res} group {grp}'s key/value inputs feed no head with an outgoing edge")
    return bad


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_acdc_on_grouped_query_attention_returns_a_closed_circuit(bridge, engine):
    clean, corrupted = tokens(3)
    found = [circuits.acdc(bridge, clean, corrupted, threshold=t, engine=engine) for t in (0.002, 0.01, 0.03)]
    assert any(any(e.receiver.endswith(("k_input", "v_input")) for e in c.edges) for c in found)
    for c in found:
        assert _independent_rule_violations(c) == []
        g = graph_of(bridge)
        assert edges_of_mask(prune_mask(g, mask_of_edges(g, c.edges))) == c.edges  # nothing dangles
