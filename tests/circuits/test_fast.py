"""The fast engine reaches exactly the reference's decisions (float64: same edges, effects to 1e-10)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import make_batches, make_mlp
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits import acdc, graph_of
from circuits.acdc.fast import supports
from circuits.graph import mlp_graph
from circuits.metrics import logit_diff
from hooked_bimt.model import HookedMLP


def assert_same(ref, fast):
    assert fast.settings["engine_used"] == "fast"
    assert fast.edges == ref.edges
    assert list(fast.effects) == list(ref.effects)  # same test order
    for e, v in ref.effects.items():
        assert math.isclose(fast.effects[e], v, rel_tol=0, abs_tol=1e-10), (e, v, fast.effects[e])
    assert fast.settings["n_tested"] == ref.settings["n_tested"]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    log_thr=st.floats(-4.5, -1.0),
    ablation=st.sampled_from(["resample", "zero", "mean"]),
    activation=st.sampled_from(["silu", "tanh", "relu"]),
    subset=st.booleans(),
)
def test_fast_equals_reference_kl(seed, log_thr, ablation, activation, subset):
    model = make_mlp(seed, widths=(5, 4, 3, 3), activation=activation)
    clean, corrupted = make_batches(seed, batch=4)
    edges = None
    if subset:
        g = torch.Generator().manual_seed(seed)
        all_edges = sorted(graph_of(model).edges())
        edges = [e for e, keep in zip(all_edges, torch.rand(len(all_edges), generator=g) < 0.7) if keep]
    kw = dict(threshold=10**log_thr, ablation=ablation, edges=edges)
    assert_same(acdc(model, clean, corrupted, engine="reference", **kw), acdc(model, clean, corrupted, engine="fast", **kw))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), thr=st.floats(1e-4, 0.5), ablation=st.sampled_from(["resample", "zero", "mean"]))
def test_fast_equals_reference_logit_diff(seed, thr, ablation):
    # threshold > 0: at exactly 0, edges whose true effect is 0 are decided by the reference's rounding noise
    model = make_mlp(seed, widths=(5, 4, 3, 3))
    clean, corrupted = make_batches(seed, batch=4)
    metric = logit_diff(torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 2]))
    kw = dict(threshold=thr, metric=metric, ablation=ablation)
    assert_same(acdc(model, clean, corrupted, engine="reference", **kw), acdc(model, clean, corrupted, engine="fast", **kw))


def test_fast_with_a_plain_callable_metric_and_deeper_net():
    model = make_mlp(11, widths=(6, 5, 4, 4, 3))
    clean, corrupted = make_batches(11, batch=5, d_in=6)

    def l1(logits, full):
        return (logits - full).abs().mean()

    ref = acdc(model, clean, corrupted, threshold=0.01, metric=l1, engine="reference")
    fast = acdc(model, clean, corrupted, threshold=0.01, metric=l1, engine="fast")
    assert_same(ref, fast)
    assert 0 < ref.n_edges < ref.n_total_edges


def test_wider_layer_exercises_speculation_rounds():
    """Many senders per receiver, threshold near the typical effect: predictions fail and are re-verified."""
    model = make_mlp(3, widths=(24, 6, 3))
    clean, corrupted = make_batches(3, batch=6, d_in=24)
    effects = acdc(model, clean, corrupted, threshold=0.0, engine="fast").effects
    thr = float(torch.tensor(list(effects.values())).abs().median())
    fast = acdc(model, clean, corrupted, threshold=thr, engine="fast")
    receivers_tested = len({(e.receiver, e.receiver_index) for e in fast.effects})
    assert fast.settings["verify_passes"] > receivers_tested  # some predictions failed and were re-verified
    assert_same(acdc(model, clean, corrupted, threshold=thr, engine="reference"), fast)


def test_supports_only_mlp_chains(mlp):
    from conftest import HeadMixer, ResidualMLP

    assert supports(mlp, graph_of(mlp))
    assert not supports(ResidualMLP(), graph_of(ResidualMLP()))
    assert not supports(HeadMixer(), graph_of(HeadMixer()))


def test_fast_runs_in_the_model_dtype(batches):
    model = make_mlp(0).float()
    fast = acdc(model, *batches, threshold=0.003, engine="fast")
    ref = acdc(model, *batches, threshold=0.003, engine="reference")
    assert fast.settings["engine_used"] == "fast"
    # float32: effects agree to float32 rounding; no effect of this case lies within it of the threshold
    assert fast.edges == ref.edges
    assert all(abs(fast.effects[e] - v) < 1e-5 for e, v in ref.effects.items())


class _SoftplusMLP(HookedMLP):
    """A HookedMLP subclass whose forward uses softplus (not its ``activation`` string) and says so in its graph."""

    def forward(self, x):
        h = self.hook_in(self.check_input(x))
        for k, block in enumerate(self.blocks):
            h = block.hook_post(torch.nn.functional.softplus(block.hook_pre(self.linears[k](h))))
        return self.hook_logits(self.linears[-1](h))

    def circuit_graph(self):
        return mlp_graph(self, activation=torch.nn.functional.softplus)


def test_fast_engine_takes_the_nonlinearity_from_the_graph(batches):
    torch.manual_seed(4)
    model = _SoftplusMLP((5, 4, 3, 3), activation="silu").double()  # the "silu" string is not what runs
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(3.0)
    fast = acdc(model, *batches, threshold=0.01, engine="fast")
    assert_same(acdc(model, *batches, threshold=0.01, engine="reference"), fast)
    assert 0 < fast.n_edges < fast.n_total_edges


def test_fast_engine_needs_every_hidden_nonlinearity_declared(mlp, batches):
    graph = graph_of(mlp)
    undeclared = dataclasses.replace(graph, activations={})
    assert supports(mlp, graph) and not supports(mlp, undeclared)
    mlp.circuit_graph = lambda: undeclared  # a model that declares its edges but no nonlinearity
    out = acdc(mlp, *batches, threshold=0.003, engine="fast")
    assert out.settings["engine_used"] == "reference"
