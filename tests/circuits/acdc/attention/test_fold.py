"""The fast attention engine's shortcuts: LayerNorm folded into many heads' projections (``bridge_fold``) against
LayerNorm-then-projection written here, and the speculation policy (``speculate``): its rules against brute
force, and the engine's decisions unchanged whatever it guesses."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuits
from circuits.acdc.attention import fold as bridge_fold, speculate
from circuits.acdc.options import AttentionOptions, Options

pytest.importorskip("transformer_lens.model_bridge")
from test_bridge import gpt2_bridge, tokens  # noqa: E402


def _ln_project(x, w, beta, eps, W, bias):
    """LayerNorm of each head's input, then that head's projection: ``(x - mean) / sqrt(var + eps) * w + beta``."""
    out = []
    for h in range(x.shape[-2]):
        xh = x[..., h, :]
        mean = xh.mean(-1, keepdim=True)
        var = ((xh - mean) ** 2).mean(-1, keepdim=True)
        out.append(((xh - mean) / torch.sqrt(var + eps) * w + beta) @ W[h] + bias[h])
    return torch.stack(out, dim=-2)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 5), u=st.integers(1, 4), n=st.integers(1, 3),
       scale=st.sampled_from([1e-6, 1e-2, 1.0, 10.0]))
def test_folded_projection_equals_layernorm_then_projection(seed, k, u, n, scale):
    """Heads with cached inputs ``b_h``, each changed by one of ``u`` shared changes: the folded projection from
    the cache equals LayerNorm of ``b_h + t`` then the head's projection."""
    g = torch.Generator().manual_seed(seed)
    B, T, d, dh = 2, 3, 8, 4
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    b, t = r(B, T, k, d) * 2 + 1, r(n, B, T, u, d) * scale
    w, beta, W, bias, eps = r(d), r(d), r(k, d, dh), r(k, dh), 1e-5
    inverse = torch.randint(0, u, (k,), generator=g)
    inverse[: min(u, k)] = torch.arange(min(u, k))  # every change used when there are heads enough
    t = t[..., : int(inverse.max()) + 1, :]
    w_hat = w.view(1, -1, 1) * W
    c = bridge_fold.cache(b, w_hat)
    how = bridge_fold.plan(w_hat, inverse, t.shape[-2])
    got = bridge_fold.project(c["c"], c["var"], c["R"], t.movedim(-2, 0), inverse, how, beta @ W + bias, eps)
    expected = _ln_project(b + t[..., inverse, :], w, beta, eps, W, bias)
    assert got.shape == (n, B, T, k, dh)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3), scale=st.sampled_from([1e-6, 1e-2, 1.0, 10.0]))
def test_folded_mlp_map_equals_layernorm_then_the_map(seed, n, scale):
    """``fold.mlp_pre``: an MLP input cached as ``b`` and changed by ``t`` in each of ``n`` states gives
    LayerNorm of ``b + t`` then ``W_in``, ``b_in`` (``torch.nn.functional.layer_norm``, written apart)."""
    g = torch.Generator().manual_seed(seed)
    B, T, d, m = 2, 3, 8, 5
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    b, t = r(B, T, d) * 2 + 1, r(n, B, T, d) * scale
    w, beta, W_in, b_in, eps = r(d), r(d), r(m, d), r(m), 1e-5
    w_hat = W_in * w
    weights = bridge_fold.MLPFold(w_hat, w_hat.sum(1), W_in @ beta + b_in, torch.empty(0), eps)
    c = bridge_fold.mlp_cache(b, weights)
    got = bridge_fold.mlp_pre((c["c"], c["var"], c["R"]), t, t @ w_hat.T, weights)
    expected = torch.nn.functional.layer_norm(b + t, (d,), w, beta, eps) @ W_in.T + b_in
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def test_folded_weights_are_the_norm_weight_times_each_heads_weights():
    bridge = gpt2_bridge(seed=2, layers=1, heads=2, d=8)
    from circuits.acdc.attention.blocks import BridgeBlocks
    bb = BridgeBlocks(bridge)
    x = torch.randn(2, 3, 2, 8, dtype=torch.float64)
    heads = torch.arange(2)
    for role in "qkv":
        w_hat, c = bridge_fold.weights(bb, 0, role)
        cache = bridge_fold.cache(x, w_hat)
        zero, inverse = torch.zeros(1, 1, 2, 3, 8, dtype=torch.float64), torch.zeros(2, dtype=torch.long)
        got = bridge_fold.project(cache["c"], cache["var"], cache["R"], zero, inverse,
                                  bridge_fold.plan(w_hat, inverse, 1), c, bb.layers[0].norm1[2])
        assert torch.allclose(got[0], bb.project(0, role, x, heads, None, torch.arange(3)), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- speculation
@settings(max_examples=40, deadline=None)
@given(q=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=9), overhead=st.floats(0.0, 5.0),
       k_max=st.integers(1, 12))
def test_block_length_maximises_expected_accepted_per_cost(q, overhead, k_max):
    def rate(k):  # E[accepted] by enumerating every outcome of the k guesses
        total = 0.0
        for outcome in itertools.product([True, False], repeat=k):  # True: the guess holds
            p = 1.0
            for qi, ok in zip(q, outcome):
                p *= (1 - qi) if ok else qi
            accepted = next((i + 1 for i, ok in enumerate(outcome) if not ok), k)
            total += p * accepted
        return total / (overhead + k)

    k = speculate.Guesser(overhead).block(q, k_max)
    assert 1 <= k <= min(k_max, len(q))
    assert rate(k) >= max(rate(j) for j in range(1, min(k_max, len(q)) + 1)) - 1e-12


@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=15))
def test_prior_split_misclassifies_fewest_decisions(data):
    data = sorted((float(s), removed) for s, removed in data)
    errors = lambda tau: sum((s < tau) != removed for s, removed in data)  # noqa: E731
    candidates = [float("-inf"), float("inf")] + [s + off for s, _ in data for off in (-0.5, 0.0, 0.5)]
    assert errors(speculate._split(data)) == min(errors(tau) for tau in candidates)


class _Adversary(speculate.Guesser):
    """Random guesses and random block lengths: only which states are scored changes."""

    def __init__(self, overhead: float, seed: int) -> None:
        super().__init__(overhead)
        self.rng = random.Random(seed)

    def prior(self, sizes):
        return [self.rng.random() < 0.5 for _ in sizes], [self.rng.random() for _ in sizes]

    def block(self, q, k_max):
        return self.rng.randint(1, min(k_max, len(q)))


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_engine_decisions_do_not_depend_on_the_guesses(seed):
    bridge = gpt2_bridge(seed=5, layers=2, heads=4, d=16)
    clean, corrupted = tokens(9)
    ref = circuits.acdc(bridge, clean, corrupted, threshold=0.01, engine="reference")
    options = Options(attention=AttentionOptions(guesser=lambda overhead: _Adversary(overhead, seed)))
    fast = circuits.acdc(bridge, clean, corrupted, threshold=0.01, engine="fast", options=options)
    assert fast.settings["engine_used"] == "fast_attention" and fast.settings["path"] == "attention.delta"
    assert 0 < ref.n_edges < ref.n_total_edges
    assert fast.edges == ref.edges and list(fast.effects) == list(ref.effects)
    assert max(abs(fast.effects[e] - ref.effects[e]) for e in ref.effects) < 1e-12


def test_stacked_bridge_path_matches_the_reference():
    """Bridges ``bridge_blocks`` cannot describe are scored by stacked bridge forwards: the same decisions."""
    bridge = gpt2_bridge(seed=6, layers=2, heads=2, d=8)
    clean, corrupted = tokens(10)
    ref = circuits.acdc(bridge, clean, corrupted, threshold=0.01, engine="reference")
    options = Options(attention=AttentionOptions(delta=False))  # as on a bridge the blocks cannot read
    fast = circuits.acdc(bridge, clean, corrupted, threshold=0.01, engine="fast", options=options)
    assert fast.settings["engine_used"] == "fast_attention" and fast.settings["path"] == "attention.stacked"
    assert 0 < ref.n_edges < ref.n_total_edges
    assert fast.edges == ref.edges and list(fast.effects) == list(ref.effects)
    assert max(abs(fast.effects[e] - ref.effects[e]) for e in ref.effects) < 1e-12


@pytest.mark.parametrize("order", list(itertools.permutations([0, 1, 2])))
@pytest.mark.parametrize("u", [1, 2, 3])
@pytest.mark.parametrize("level", [1, 2])
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_pattern_sums_equal_the_sum_over_present_senders(seed, u, level, order):
    """``Scorer._sums``: per pattern, the sum of (new - cached) over the pattern's senders; a sender known at the
    metric positions only (level 1) read at every position (level 2) adds there and nowhere else. Senders' outputs
    node-first ``(a, n, B, T, d)``, the sums pattern-first ``(U, n, B, T, d)``; the senders in any order (the first
    one read makes the sum, the others are added into it; a one-node sender read alone is used as is)."""
    from circuits.acdc.attention.scorer import Scorer

    g = torch.Generator().manual_seed(seed)
    n, B, T, d, a = 2, 3, 5, 4, 3
    P = torch.tensor([1, 4])
    scorer = Scorer.__new__(Scorer)
    scorer.pos, scorer.rel = {1: P, 2: torch.arange(T)}, {1: P}
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    kinds = [(r(a, n, B, T, d), r(a, B, T, d), 2),  # heads at every position
             (r(a, n, B, 2, d), r(a, B, 2, d), 1),  # heads known at P only
             (r(1, n, B, T, d), r(1, B, T, d), 2)]  # an MLP
    columns = {0: range(0, a), 1: range(a, 2 * a), 2: range(2 * a, 2 * a + 1)}
    read = torch.rand(u, 2 * a + 1, generator=g) < 0.6
    read[:, 2 * a] |= ~read.any(1)  # every pattern reads something
    parts = [kinds[i] for i in order]
    before = [(t.clone(), old.clone()) for t, old, _ in kinds]
    patterns = torch.cat([read[:, list(columns[i])] for i in order], 1)
    got = scorer._sums(parts, patterns, level)  # level 1: at the metric positions P only
    expected = torch.zeros(u, n, B, T, d, dtype=torch.float64)
    for k in range(u):
        for s in range(a):
            if read[k, s]:
                expected[k] += kinds[0][0][s] - kinds[0][1][s]
            if read[k, a + s]:
                expected[k, :, :, P] += kinds[1][0][s] - kinds[1][1][s]
        if read[k, 2 * a]:
            expected[k] += kinds[2][0][0] - kinds[2][1][0]
    expected = expected if level == 2 else expected[:, :, :, P]
    assert torch.allclose(got.expand_as(expected), expected, rtol=0, atol=1e-12)
    for (t, old, _), (t0, old0) in zip(kinds, before):  # the senders' outputs are read, never written
        assert torch.equal(t, t0) and torch.equal(old, old0)
