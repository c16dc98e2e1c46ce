"""Every swap kind is function-preserving, and training continues as if it had not happened (float64, 1e-12)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from hooked_bimt.transformer import connection_cost, relocate, swap_heads, swap_mlp_neurons, swap_residual
from gpt2_fixtures import (adam_step, assert_swap_preserves_function_and_next_step, clone, tiny_gpt2,  # noqa: F401
                           trained_pair)  # trained_pair: a fixture

TOKENS = torch.tensor([[1, 4, 2, 9, 4, 7], [3, 3, 0, 10, 5, 1]])


def _swap(kind, model, opt, a, b, layer):
    if kind == "residual":
        swap_residual(model, a % 8, b % 8, optimizer=opt)
    elif kind == "mlp":
        swap_mlp_neurons(model, layer, a % 12, b % 12, optimizer=opt)
    else:
        swap_heads(model, layer, a % 2, b % 2, optimizer=opt)


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["residual", "mlp", "head"]), a=st.integers(0, 11), b=st.integers(0, 11),
       layer=st.integers(0, 1))
def test_swap_preserves_logits_and_the_next_optimizer_step(trained_pair, kind, a, b, layer):
    model, opt = trained_pair
    assert_swap_preserves_function_and_next_step(model, opt, lambda m, o: _swap(kind, m, o, a, b, layer),
                                                 lambda m, o: adam_step(m, o, TOKENS), TOKENS)


def test_a_swap_really_moves_weights(trained_pair):
    """Guards the test above against a swap that does nothing: the parameters change, the logits do not."""
    model, opt = trained_pair
    m2, o2 = clone(model, opt)
    for kind in ("residual", "mlp", "head"):
        before = [p.clone() for p in m2.parameters()]
        _swap(kind, m2, o2, 0, 1, 1)
        assert any(not torch.equal(p, q) for p, q in zip(before, m2.parameters())), kind


def test_swap_arguments_are_checked():
    model = tiny_gpt2()
    with pytest.raises(ValueError, match="i must be an integer in 0..7"):
        swap_residual(model, 8, 0)
    with pytest.raises(ValueError, match="layer"):
        swap_mlp_neurons(model, 2, 0, 1)
    with pytest.raises(ValueError, match="g must be"):
        swap_heads(model, 0, 0, 2)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), A=st.sampled_from([0.5, 2.0]), top_k=st.sampled_from([1, 3, 30]))
def test_relocate_lowers_the_cost_and_keeps_the_function(seed, A, top_k):
    model = tiny_gpt2(seed)
    with torch.no_grad():  # sparse, structured weights: relocation has something to gain
        for p in model.parameters():
            p.mul_((torch.rand_like(p) < 0.3).double() * 5)
    before_logits = model(TOKENS).logits.detach()
    before = connection_cost(model, A).item()
    n = relocate(model, top_k=top_k, distance_factor=A)
    after = connection_cost(model, A).item()
    assert after <= before + 1e-12
    assert n == 0 or after < before
    torch.testing.assert_close(model(TOKENS).logits, before_logits, rtol=0, atol=1e-12)


def test_relocate_with_an_optimizer_lowers_the_cost_and_converges():
    """Dense random weights: relocate makes swaps that lower the cost; repeated, it runs out of gains."""
    model = tiny_gpt2(5)
    opt = torch.optim.AdamW(model.parameters())
    adam_step(model, opt, TOKENS)
    before = connection_cost(model).item()
    n = relocate(model, top_k=30, optimizer=opt)
    assert n > 0 and connection_cost(model).item() < before
    counts = [relocate(model, top_k=30, optimizer=opt) for _ in range(20)]
    assert counts[-1] == 0  # greedy descent on a finite set of layouts stops


@pytest.mark.parametrize("kind", ["residual", "mlp", "head"])
def test_relocate_scores_are_the_exact_cost_change_of_each_swap(kind):
    """relocate's one-matrix score M[x,y] + M[y,x] - M[x,x] - M[y,y] equals the change of connection_cost (SPEC 8,
    recomputed in full) for every candidate swap of each kind."""
    from hooked_bimt.transformer.geometry import dims, penalised_maps
    from hooked_bimt.transformer.relocate import _block_sides, _head_matrix, _residual_sides, position_costs

    model = tiny_gpt2(7)
    d = dims(model)
    maps = {m.name: m for m in penalised_maps(model)}
    mlp_sides, head_sides = _block_sides(maps, 1, d)
    if kind == "residual":
        m, n, swap = position_costs(_residual_sides(maps), 2.0), 8, lambda x, y: swap_residual(model, x, y)
    elif kind == "mlp":
        m, n, swap = position_costs(mlp_sides, 2.0), 12, lambda x, y: swap_mlp_neurons(model, 1, x, y)
    else:
        m, n, swap = _head_matrix(position_costs(head_sides, 2.0), 2), 2, lambda x, y: swap_heads(model, 1, x, y)
    for x in range(n):
        for y in range(x + 1, n):
            before = connection_cost(model, 2.0).item()
            swap(x, y)
            actual = connection_cost(model, 2.0).item() - before
            swap(x, y)
            predicted = float(m[x, y] + m[y, x] - m[x, x] - m[y, y])
            assert predicted == pytest.approx(actual, abs=1e-13), (x, y)
