"""Pieces of the delta scorer (``circuits.acdc.attention.gather``) written against plain loops."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.acdc.attention.gather import put as _put, take as _take


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(0, 5), min_size=1), st.sets(st.integers(0, 3), min_size=1), st.integers(0, 3),
       st.integers(0, 10_000))
def test_put_writes_each_position_and_node_and_nothing_else(positions, nodes, extra_dims, seed):
    """``_put(t, positions, nodes, full, value)`` sets ``t[b, positions[i], nodes[k]] = value[b, i, k]`` and leaves
    every other entry as it was, whether either index is everything or not; ``_take`` reads them back."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, 6, 4) + (3,) * extra_dims
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    pos, nod = torch.tensor(sorted(positions)), torch.tensor(sorted(nodes))
    value = torch.randn((2, len(pos), len(nod)) + shape[3:], generator=g, dtype=torch.float64)
    want = t.clone()
    for i, p in enumerate(pos.tolist()):
        for k, n in enumerate(nod.tolist()):
            want[:, p, n] = value[:, i, k]
    _put(t, pos, nod, (6, 4), value)
    assert torch.equal(t, want)
    assert torch.equal(_take(t, pos, nod, (6, 4)), value)


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(0, 7), min_size=1))
def test_run_selects_the_same_nodes_and_is_a_slice_exactly_for_runs(nodes):
    """``run(index)`` indexes the same nodes as ``index`` (list or tensor), and is a slice iff they are consecutive."""
    from circuits.acdc.attention.gather import run

    index = sorted(nodes)
    t = torch.arange(8 * 3).view(8, 3)
    for ix in (index, torch.tensor(index)):
        assert torch.equal(t[run(ix)], t[ix])
    assert isinstance(run(index), slice) == (index == list(range(index[0], index[-1] + 1)))
