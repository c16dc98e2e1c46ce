"""The original BIMT notebook's relocate (issue 14) against a brute-force re-derivation written here.

The reference below keeps its own weights, coordinates and cost: the output neurons are physically
permuted (rows of the last weight) while their ring slots stay fixed, as in the notebook, and every
candidate swap is scored by the full connection cost of a swapped copy of all the weights.
"""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_bimt import HookedMLP, connection_cost
from hooked_bimt.swaps_original import original_swaps, relocate_original

Y_STAR = 0.5


# ---------------------------------------------------------------------------- the independent re-derivation
def ref_coords(widths, phase=0.5):
    """Input/hidden: m x m grid of cell centres for a square width (row-major), else a line; output: a ring
    of radius 1/4 around the centre, slot s at angle 2 pi (s + phase) / n."""
    coords = []
    for n in widths[:-1]:
        m = math.isqrt(n)
        if m * m == n and n > 1:
            pts = [((b + 0.5) / m, (a + 0.5) / m) for a in range(m) for b in range(m)]
        else:
            pts = [((i + 0.5) / n, 0.5) for i in range(n)]
        coords.append(torch.tensor(pts, dtype=torch.float64))
    n = widths[-1]
    ang = [2 * math.pi * (s + phase) / n for s in range(n)]
    ring = [(0.5 + 0.25 * math.cos(a), 0.5 + 0.25 * math.sin(a)) for a in ang]
    coords.append(torch.tensor(ring, dtype=torch.float64))
    return coords


def ref_cost(ws, bs, coords, a):
    total = 0.0
    for l, (w, b) in enumerate(zip(ws, bs)):
        d = (coords[l + 1][:, None, :] - coords[l][None, :, :]).abs().sum(-1)
        total += float((w.abs() * (a * d + Y_STAR)).mean()) + float((b.abs() * Y_STAR).mean())
    return total


def ref_swap(ws, bs, layer, x, y):
    """Swap the neurons at positions x, y of ``layer`` (1..L) in place: rows in, columns out (if any)."""
    for t in (ws[layer - 1], bs[layer - 1]):
        t[[x, y]] = t[[y, x]]
    if layer < len(ws):
        ws[layer][:, [x, y]] = ws[layer][:, [y, x]]


def ref_relocate(model, top_k, a=2.0):
    """The notebook's procedure by brute force. Returns (swaps, weights, biases, class_at_slot)."""
    ws = [lin.weight.detach().clone() for lin in model.linears]
    bs = [lin.bias.detach().clone() for lin in model.linears]
    coords, L = ref_coords(model.widths), len(ws)
    cls = list(range(model.widths[-1]))  # the class whose row sits in slot s
    swaps = []
    for layer in range(1, L + 1):
        n = model.widths[layer]
        imp = ws[layer - 1].abs().sum(1) + (ws[layer].abs().sum(0) if layer < L else 0)
        listed = sorted(range(n), key=lambda i: (-float(imp[i]), i))[:top_k]
        for x in listed:
            costs = []
            for y in range(n):
                w2, b2 = [w.clone() for w in ws], [b.clone() for b in bs]
                ref_swap(w2, b2, layer, x, y)
                costs.append(ref_cost(w2, b2, coords, a))
            low = min(costs)
            y = next(i for i, c in enumerate(costs) if c <= low + 1e-13 * abs(low))  # first minimum
            if y != x:
                ref_swap(ws, bs, layer, x, y)
                if layer == L:
                    cls[x], cls[y] = cls[y], cls[x]
                swaps.append((layer, x, y))
    return swaps, ws, bs, cls


# ---------------------------------------------------------------------------- models
def trained_like(widths, seed, dead=0):
    """Sparse heavy-tailed weights, as after L1 training; ``dead`` hidden neurons with no weights at all."""
    torch.manual_seed(seed)
    model = HookedMLP(widths, ring_phase=0.5).double()
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_((torch.rand_like(lin.weight) < 0.3) * torch.randn_like(lin.weight).abs() * 5)
        for k in range(dead):  # exact ties: swapping two dead neurons changes nothing
            model.linears[0].weight[2 * k + 1] = 0
            model.linears[0].bias[2 * k + 1] = 0
            model.linears[1].weight[:, 2 * k + 1] = 0
    return model


def assert_matches_reference(model, top_k):
    expected, ws, bs, cls = ref_relocate(model, top_k)
    x = torch.randn(5, model.widths[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    logits = model(x).detach()
    assert original_swaps(model, top_k=top_k, distance_factor=2.0) == expected
    torch.testing.assert_close(model(x), logits, atol=1e-12, rtol=0)  # class order kept
    L = model.n_layers
    for l in range(L - 1):
        assert torch.equal(model.linears[l].weight, ws[l]) and torch.equal(model.linears[l].bias, bs[l])
    for s, c in enumerate(cls):
        assert int(model.out_perm[c]) == s
        assert torch.equal(model.linears[-1].weight[c], ws[-1][s]) and model.linears[-1].bias[c] == bs[-1][s]
    return expected


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), top_k=st.integers(1, 16), dead=st.integers(0, 3))
def test_same_swaps_as_brute_force_small(seed, top_k, dead):
    assert_matches_reference(trained_like((9, 16, 16, 4), seed, dead), top_k)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_exact_ties_go_to_the_first_position(seed):
    """Dead neurons tie exactly (a swap of two changes nothing): the first minimum in index order wins,
    as a first-occurrence argmin over the brute-force costs finds (a last-minimum rule fails here)."""
    assert_matches_reference(trained_like((9, 16, 16, 4), seed, dead=3), top_k=16)


def test_all_tied_layer_sends_every_listed_position_to_the_first():
    model = trained_like((4, 4, 3), 0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    expected = [(1, 1, 0), (1, 2, 0), (1, 3, 0), (2, 1, 0), (2, 2, 0)]
    assert original_swaps(model, top_k=4, distance_factor=2.0) == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_same_swaps_as_brute_force_mid_size(seed):
    swaps = assert_matches_reference(trained_like((64, 36, 36, 10), seed, dead=2), top_k=30)
    per_layer = [sum(s[0] == layer for s in swaps) for layer in (1, 2, 3)]
    assert all(n > 0 for n in per_layer), per_layer  # every layer moved, the outputs on their ring too


widths_st = st.tuples(st.integers(2, 20), st.lists(st.integers(2, 12), min_size=1, max_size=3), st.integers(2, 8)).map(
    lambda t: (t[0], *t[1], t[2])
)


@settings(max_examples=30, deadline=None)
@given(widths=widths_st, seed=st.integers(0, 10_000), top_k=st.integers(1, 12))
def test_keeps_function_and_never_raises_the_scoring_cost(widths, seed, top_k):
    model = trained_like(widths, seed)
    x = torch.randn(6, widths[0], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    logits, cost = model(x).detach(), float(connection_cost(model, 2.0).detach())
    relocate_original(model, top_k=top_k, distance_factor=2.0)
    torch.testing.assert_close(model(x), logits, atol=1e-10, rtol=0)
    assert float(connection_cost(model, 2.0).detach()) <= cost + 1e-12 * cost
    assert torch.equal(model.in_perm, torch.arange(widths[0]))  # pixels never move
    assert sorted(model.out_perm.tolist()) == list(range(widths[-1]))


@pytest.mark.parametrize("moments", ["in_place", "moved"])
def test_the_benchmarks_brute_force_search_makes_the_same_decisions(moments):
    """The claim-4 benchmark's brute force (``benchmarks/_brute_relocate.py``, the notebook's way: a full cost of a
    model copy per candidate) and the fast search: the same swaps, weights and optimizer moments."""
    from benchmarks._brute_relocate import brute_force_swaps

    fast, fast_opt = _with_moments(seed=3)
    slow = copy.deepcopy(fast)
    slow_opt = torch.optim.AdamW(slow.parameters(), lr=1e-3)
    slow_opt.load_state_dict(fast_opt.state_dict())
    expected = original_swaps(fast, 16, 2.0, optimizer=fast_opt, moments=moments)
    assert brute_force_swaps(slow, 16, 2.0, optimizer=slow_opt, moments=moments) == expected
    assert any(layer == slow.n_layers for layer, _, _ in expected)  # the output ring moved too
    for a, b in zip(fast.state_dict().values(), slow.state_dict().values()):
        assert torch.equal(a, b)
    for p, q in zip(fast.parameters(), slow.parameters()):
        assert all(torch.equal(fast_opt.state[p][k], slow_opt.state[q][k]) for k in fast_opt.state[p])


# ---------------------------------------------------------------------------- optimizer moments
def _with_moments(widths=(9, 16, 16, 10), seed=4):
    model = trained_like(widths, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(16, widths[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        opt.zero_grad()
        (model(x) - 1).pow(2).sum().backward()
        opt.step()
    return model, opt


def _pairs(model, opt):
    """{every nonzero parameter entry's value: its (exp_avg, exp_avg_sq)}: the values are distinct, so this
    pairs each weight with its own moments wherever a swap puts it."""
    out = {}
    for p in model.parameters():
        moments = [opt.state[p][k].flatten().tolist() for k in ("exp_avg", "exp_avg_sq")]
        for v, m, s2 in zip(p.detach().flatten().tolist(), *moments):
            if v != 0:
                out[v] = (m, s2)
    return out


def test_moments_moved_travel_with_their_neuron():
    model, opt = _with_moments()
    before = _pairs(model, opt)
    swaps = original_swaps(model, 16, 2.0, optimizer=opt, moments="moved")
    assert {s[0] for s in swaps} == {1, 2, 3}
    assert _pairs(model, opt) == before


def test_moments_in_place_stay_at_their_position():
    model, opt = _with_moments()
    state = {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    slot_class = torch.argsort(model.out_perm)
    before = _pairs(model, opt)
    swaps = original_swaps(model, 16, 2.0, optimizer=opt, moments="in_place")
    assert {s[0] for s in swaps} == {1, 2, 3}
    assert _pairs(model, opt) != before  # the weights moved away from their moments
    for p in list(model.parameters())[:-2]:  # hidden layers: moments untouched while the weights moved
        assert all(torch.equal(opt.state[p][k], state[id(p)][k]) for k in ("exp_avg", "exp_avg_sq"))
    last = model.linears[-1]
    new_slot_class = torch.argsort(model.out_perm)  # outputs: the moments stay with the ring slot
    for p in (last.weight, last.bias):
        moved = state[id(p)]["exp_avg"][slot_class]
        torch.testing.assert_close(opt.state[p]["exp_avg"][new_slot_class], moved, atol=0, rtol=0)


def test_bad_options_are_clear_errors():
    model = trained_like((9, 4, 3), 0)
    with pytest.raises(ValueError, match="moments"):
        relocate_original(model, moments="kept")
    with pytest.raises(TypeError, match="search"):  # the library has the fast search only
        relocate_original(model, search="brute_force")
    with pytest.raises(ValueError, match="top_k"):
        relocate_original(model, top_k=0)


# ---------------------------------------------------------------------------- ring phase
def test_original_ring_phase():
    model = HookedMLP((4, 3, 6), ring_phase=0.5)
    for c in range(6):
        angle = 2 * math.pi * (c + 0.5) / 6
        expected = torch.tensor([0.5 + 0.25 * math.cos(angle), 0.5 + 0.25 * math.sin(angle)])
        torch.testing.assert_close(model.coords(2)[c], expected.to(model.coords(2).dtype))
    assert model.coords(2)[0, 1] > 0.5  # (our default puts class 0 on the x axis)
    assert HookedMLP(**model.config()).ring_phase == 0.5
    with pytest.raises(ValueError, match="ring_phase"):
        HookedMLP((4, 3, 6), ring_phase=float("nan"))
