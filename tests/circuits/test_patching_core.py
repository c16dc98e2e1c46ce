"""The patching core's node helpers against independent implementations (select/copy, one call per node)."""

from __future__ import annotations

import dataclasses

import torch
from conftest import HeadMixer, ResidualMLP, make_batches, make_mlp
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.graph import Nodes, graph_of
from circuits.patching import node_slice, sender_contributions
from circuits.protocol_check import check_declaration
from circuits.recording import record


def _keep_only(t, axis, index):
    out = torch.zeros_like(t)
    out.select(axis, index).copy_(t.select(axis, index))
    return out


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), axis_pick=st.integers(0, 10), seed=st.integers(0, 99))
def test_node_slice_keeps_exactly_one_node(shape, axis_pick, seed):
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    axis = 1 + axis_pick % (len(shape) - 1)  # a non-batch axis
    nodes = Nodes("h", shape[axis], axis=axis - len(shape) if axis_pick % 2 else axis)
    slices = [node_slice(t, nodes, i) for i in range(nodes.count)]
    for i, s in enumerate(slices):
        assert torch.equal(s, _keep_only(t, axis, i))
    assert torch.equal(node_slice(t, Nodes("h", 1, axis=None), 0), t)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 99), which=st.sampled_from(["mlp", "heads"]))
def test_sender_contributions_equal_one_contribute_call_per_node(seed, which):
    model = make_mlp(seed) if which == "mlp" else HeadMixer(seed=seed)
    g = graph_of(model)
    conn = g.connections[0]
    x = make_batches(seed)[0] if which == "mlp" else torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    _, cache = record(model, x, [conn.sender])
    delta = cache[conn.sender]
    nodes = g.nodes[conn.sender]
    senders = torch.tensor([i for i in range(nodes.count) if (i + seed) % 3], dtype=torch.long)
    chunks = list(sender_contributions(conn, nodes, delta, senders))
    got = torch.cat([out for _, out in chunks])
    assert torch.equal(torch.cat([sel for sel, _ in chunks]), senders)
    axis = nodes.axis % delta.dim()
    want = torch.stack([conn.contribute(_keep_only(delta, axis, int(i))) for i in senders])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_record_keys_are_in_firing_order_and_missing_hooks_are_named():
    model = make_mlp(0)
    hooks = ["hook_logits", "blocks.1.hook_post", "hook_in", "blocks.0.hook_pre"]
    _, cache = record(model, make_batches(0)[0], hooks)
    assert list(cache) == ["hook_in", "blocks.0.hook_pre", "blocks.1.hook_post", "hook_logits"]
    try:
        record(model, make_batches(0)[0], ["hook_in", "blocks.7.hook_pre"])
    except Exception as err:  # TransformerLens refuses an unknown hook name, or record names it
        assert "blocks.7.hook_pre" in str(err)
    else:
        raise AssertionError("an unknown hook was silently ignored")


@settings(max_examples=20, deadline=None)
@given(perm_seed=st.integers(0, 10_000), which=st.sampled_from(["mlp", "residual"]))
def test_any_declaration_order_gives_the_firing_order(perm_seed, which):
    model = make_mlp(0, widths=(5, 4, 3, 3, 3)) if which == "mlp" else ResidualMLP()
    g = graph_of(model)
    clean, corrupted = make_batches(0, d_in=5 if which == "mlp" else 4)
    perm = torch.randperm(len(g.connections), generator=torch.Generator().manual_seed(perm_seed)).tolist()
    shuffled = dataclasses.replace(g, connections=tuple(g.connections[i] for i in perm))
    ordered = check_declaration(model, shuffled, clean, corrupted)
    _, cache = record(model, clean, sorted(g.hooks()))
    fired = list(cache)
    pairs = [(c.sender, c.receiver) for c in ordered.connections]
    assert sorted(pairs) == sorted((c.sender, c.receiver) for c in g.connections)
    assert pairs == sorted(pairs, key=lambda p: (fired.index(p[1]), fired.index(p[0])))
