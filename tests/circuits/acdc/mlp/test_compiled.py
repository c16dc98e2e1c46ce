"""The fast engine's compiled sequential loop (``circuits.acdc.mlp.compiled``: KL, CPU, float64): the reference's
circuit and effects, its per-example KL terms equal to a plain forward pass, its own ``exp`` within 2 ulp of libm's."""

from __future__ import annotations

import dataclasses
import math

import numba
import numpy as np
import pytest
import torch
from conftest import fast_state, kl_with_first_hidden_input, make_batches, make_mlp, sparse_batches
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits import acdc, graph_of
from circuits.acdc.mlp import compiled as fast_compiled

ACTS = {"silu": torch.nn.functional.silu, "relu": torch.relu, "gelu": torch.nn.functional.gelu, "tanh": torch.tanh}


def assert_same(ref, fast):
    assert fast.edges == ref.edges
    assert list(fast.effects) == list(ref.effects)
    for e, v in ref.effects.items():
        assert math.isclose(fast.effects[e], v, rel_tol=0, abs_tol=1e-10), (e, v, fast.effects[e])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(sorted(ACTS)),
       widths=st.sampled_from([(12, 5, 4, 3), (10, 6, 5, 4, 3), (8, 4, 2)]), share=st.floats(0.0, 0.8),
       quantile=st.floats(0.2, 0.9))
def test_compiled_loop_equals_reference(seed, activation, widths, share, quantile):
    """Every nonlinearity the loop knows, one to three hidden layers (hops from several changed neurons), two
    output classes (every class changed: no unchanged-class log-sum-exp), inputs that move some examples only."""
    model = make_mlp(seed % 97, widths=widths, activation=activation)
    clean, corrupted = sparse_batches(seed, batch=5, d_in=widths[0], share=share)
    effects = acdc(model, clean, corrupted, threshold=0.0, engine="reference").effects
    moved = [abs(v) for v in effects.values() if v != 0]
    thr = float(torch.tensor(moved).quantile(quantile)) if moved else 1e-3
    fast = acdc(model, clean, corrupted, threshold=thr, engine="fast")
    assert_same(acdc(model, clean, corrupted, threshold=thr, engine="reference"), fast)
    assert fast.settings["path"] == "mlp.compiled"  # the compiled loop decided them


def test_effects_are_differences_of_plain_forward_kls():
    """Independent of the engine's algebra: each candidate's effect is the difference of whole-batch KLs of two
    plain forward passes (the receiver's input set to the state before and after removing it), following the
    loop's own decisions."""
    from circuits.acdc.mlp.ties import Ties

    model = make_mlp(3, widths=(12, 5, 4, 3), activation="gelu")
    clean, corrupted = sparse_batches(3, batch=5, d_in=12, share=0.5)
    s = fast_state(model, clean, corrupted, 2e-3)
    assert fast_compiled.supports(s)
    diff = s.P[0] - s.A[0]
    cand = torch.nonzero((diff != 0).any(dim=0)).flatten()
    d = diff[:, cand] * s.W[0][2, cand]
    ties = Ties(s)
    ties.start(s.M[0][2].clone(), cand[:0], cand)
    effects, removed, current, z_end = fast_compiled.decide(s, ties, 0, 2, d)
    assert 0 < int(removed.sum()) < len(cand)
    kl_with = lambda z2: kl_with_first_hidden_input(model, clean, s.p.full_logits, torch.nn.functional.gelu, 2, z2)  # noqa: E731

    z, cur = s.Z[1][:, 2].clone(), kl_with(s.Z[1][:, 2])
    for i in range(len(cand)):
        new = kl_with(z + d[:, i])
        assert math.isclose(float(effects[i]), new - cur, rel_tol=0, abs_tol=1e-12)
        assert bool(removed[i]) == (float(effects[i]) < s.p.threshold)
        if removed[i]:
            z, cur = z + d[:, i], new
    assert torch.allclose(z_end, z, rtol=0, atol=1e-12) and math.isclose(float(current), cur, abs_tol=1e-12)


def test_what_the_compiled_loop_does_not_cover_goes_to_speculation(batches):
    """float32 discovery and a nonlinearity it does not know (softplus, declared by the graph) take the
    speculative path, with the reference's circuit."""
    model = make_mlp(2, widths=(5, 4, 3, 3))
    ref = acdc(model, *batches, threshold=3e-3, engine="reference", dtype=torch.float32)
    fast = acdc(model, *batches, threshold=3e-3, engine="fast", dtype=torch.float32)
    assert fast.settings["engine_used"] == "fast" and fast.settings["path"] == "mlp.speculative"
    assert fast.edges == ref.edges
    assert acdc(model, *batches, threshold=3e-3, engine="fast").settings["path"] == "mlp.compiled"  # float64
    graph = graph_of(model)
    soft = dataclasses.replace(graph, activations={r: torch.nn.functional.softplus for r in graph.activations})
    assert fast_compiled.supports(fast_state(model, *batches, 1e-3))
    assert not fast_compiled.supports(fast_state(model, *batches, 1e-3, graph=soft))


def test_near_ties_stop_the_compiled_loop_and_are_rescored():
    """The threshold exactly the first tested edge's effect (which does not depend on the threshold): the loop
    stops there, the reference's computation decides (the edge stays: ``effect < threshold`` is false) and the
    loop goes on after it; the reference's circuit."""
    model = make_mlp(9, widths=(16, 5, 3))
    clean, corrupted = make_batches(9, batch=6, d_in=16)
    first, effect = next(iter(acdc(model, clean, corrupted, threshold=1e-3, engine="reference").effects.items()))
    ref = acdc(model, clean, corrupted, threshold=effect, engine="reference")
    fast = acdc(model, clean, corrupted, threshold=effect, engine="fast")
    assert fast.settings["path"] == "mlp.compiled" and fast.settings["ties_rescored"] > 0
    assert fast.effects[first] == effect and first in fast.edges
    assert_same(ref, fast)


@numba.njit
def _exp_many(x, out):
    for i in range(x.shape[0]):
        out[i] = fast_compiled._exp(x[i])


@settings(max_examples=300, deadline=None)
@given(x=st.floats(-708.0, 709.0))
def test_own_exp_within_two_ulp_of_libm(x):
    out = np.empty(1)
    _exp_many(np.array([x]), out)
    want = math.exp(x)
    assert abs(out[0] - want) <= 2 * math.ulp(want), (x, out[0], want)


def test_own_exp_exact_points_and_clamp():
    xs = np.array([0.0, 1.0, -1.0, math.log(2.0), 700.0, -700.0, -800.0])
    out = np.empty_like(xs)
    _exp_many(xs, out)
    assert out[0] == 1.0
    assert all(abs(o - math.exp(v)) <= 2 * math.ulp(math.exp(v)) for o, v in zip(out[:-1], xs[:-1]))
    assert 0.0 < out[-1] <= math.exp(-708.0) * (1 + 1e-15)  # below -708: clamped (a term of ~1e-308)
