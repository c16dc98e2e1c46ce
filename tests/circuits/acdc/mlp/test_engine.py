"""The fast engine reaches exactly the reference's decisions (float64: same edges, effects to 1e-10)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import fast_state, kl_with_first_hidden_input, make_batches, make_mlp, sparse_batches
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits import acdc, graph_of
from circuits.acdc.mlp.engine import supports
from circuits.acdc.options import MLPOptions, Options
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
    compiled=st.booleans(),
)
def test_fast_equals_reference_kl(seed, log_thr, ablation, activation, subset, compiled):
    model = make_mlp(seed, widths=(5, 4, 3, 3), activation=activation)
    clean, corrupted = make_batches(seed, batch=4)
    edges = None
    if subset:
        g = torch.Generator().manual_seed(seed)
        all_edges = sorted(graph_of(model).edges())
        edges = [e for e, keep in zip(all_edges, torch.rand(len(all_edges), generator=g) < 0.7) if keep]
    kw = dict(threshold=10**log_thr, ablation=ablation, edges=edges)
    # ACDC's loop compiled (the default here), or speculation
    fast = acdc(model, clean, corrupted, engine="fast", options=Options(mlp=MLPOptions(compiled=compiled)), **kw)
    assert fast.settings["path"] == ("mlp.compiled" if compiled else "mlp.speculative")
    assert_same(acdc(model, clean, corrupted, engine="reference", **kw), fast)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), thr=st.one_of(st.just(0.0), st.floats(1e-4, 0.5)),
       ablation=st.sampled_from(["resample", "zero", "mean"]))
def test_fast_equals_reference_logit_diff(seed, thr, ablation):
    # threshold 0 included: an edge whose removal changes nothing has effect exactly 0 by rule in both engines
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


def test_wider_layer_exercises_speculation_rounds(speculative):
    """Many senders per receiver, threshold near the typical effect: predictions fail and are re-verified."""
    model = make_mlp(3, widths=(24, 6, 3))
    clean, corrupted = make_batches(3, batch=6, d_in=24)
    effects = acdc(model, clean, corrupted, threshold=0.0, engine="fast", options=speculative).effects
    thr = float(torch.tensor(list(effects.values())).abs().median())
    fast = acdc(model, clean, corrupted, threshold=thr, engine="fast", options=speculative)
    assert fast.settings["path"] == "mlp.speculative"
    receivers_tested = len({(e.receiver, e.receiver_index) for e in fast.effects})
    assert fast.settings["passes"] > receivers_tested  # some predictions failed and were re-verified
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


# ---------------------------------------------------------------------------- issue 10: engine-independent circuits
import copy  # noqa: E402

from circuits.acdc.mlp import speculative as speculative_module  # noqa: E402
from circuits.circuit import model_identity  # noqa: E402


@pytest.fixture
def speculative():
    """Options for the fast engine's speculate-and-verify path (other metrics, float32, accelerators) on a float64 KL."""
    return Options(mlp=MLPOptions(compiled=False))


@pytest.fixture(scope="module")
def mnist_f32():
    """A float32 HookedMLP trained on real MNIST, small enough for the reference engine in a test.

    Digits average-pooled to 7x7 (49 inputs), widths 49-24-24-10 (1,992 edges), 300 AdamW steps on the
    first 8,000 test-split images; 50 pairs of 8 (clean) vs 3 (corrupted) from the other 2,000. At
    threshold 1e-5 this model's float32 KL decides near-ties differently in the two engines unless
    the ties are settled (2 differing edges before issue 10).
    """
    from hooked_bimt.data import load_split
    from hooked_bimt.model import HookedMLP

    split = load_split("test")
    x = torch.nn.functional.adaptive_avg_pool2d(split.images.unsqueeze(1), 7).flatten(1)
    y = split.labels
    torch.manual_seed(0)
    model = HookedMLP((49, 24, 24, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        idx = torch.randint(0, 8000, (100,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    eights, threes = (8000 + torch.nonzero(y[8000:] == d).flatten()[:50] for d in (8, 3))
    return model, x[eights], x[threes]


def same_circuit(ref, fast, tol):
    assert fast.settings["engine_used"] == "fast"
    assert len(fast.edges ^ ref.edges) == 0
    assert list(fast.effects) == list(ref.effects)
    assert max(abs(fast.effects[e] - v) for e, v in ref.effects.items()) <= tol


@pytest.mark.parametrize("threshold", [1e-4, 1e-5])
def test_float32_mnist_model_gives_one_circuit_from_both_engines(mnist_f32, threshold):
    model, clean, corrupted = mnist_f32
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = acdc(model, clean, corrupted, threshold=threshold, engine="reference")
    fast = acdc(model, clean, corrupted, threshold=threshold, engine="fast")
    same_circuit(ref, fast, 1e-12)  # discovery in float64 on an upcast copy (the default dtype)
    assert 0 < fast.n_edges < fast.n_total_edges and fast.settings["dtype"] == "float64"
    # the user's model is untouched and the circuit records its fingerprint
    assert next(model.parameters()).dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert fast.model == model_identity(model)


@pytest.mark.parametrize("dtype", [torch.float64, None])
def test_a_threshold_equal_to_an_effect_is_decided_as_the_reference_decides(mnist_f32, dtype):
    """The hardest tie: the threshold is exactly the first tested edge's effect (which does not depend
    on the threshold). The reference keeps that edge (``effect < threshold`` is false); an engine whose
    rounding differs by one ulp would drop it and the whole circuit would follow (99 differing edges
    before the ties were settled, in float64 and float32 alike). ``dtype=None`` keeps float32."""
    model, clean, corrupted = mnist_f32
    first, effect = next(iter(acdc(model, clean, corrupted, threshold=1e-3, engine="reference", dtype=dtype).effects.items()))
    ref = acdc(model, clean, corrupted, threshold=effect, engine="reference", dtype=dtype)
    fast = acdc(model, clean, corrupted, threshold=effect, engine="fast", dtype=dtype)
    assert ref.effects[first] == effect == fast.effects[first] and first in ref.edges and first in fast.edges
    assert fast.settings["ties_rescored"] > 0
    same_circuit(ref, fast, 1e-12 if dtype else 1e-5)


def test_threshold_zero_float64_identical(mnist_f32):
    """At threshold 0 an edge that changes nothing (a pixel equal in both images of every pair) has
    effect exactly 0 in both engines by rule and stays; the rest are decided identically."""
    model, clean, corrupted = mnist_f32
    model = copy.deepcopy(model).double()
    ref = acdc(model, clean, corrupted, threshold=0.0, engine="reference")
    fast = acdc(model, clean, corrupted, threshold=0.0, engine="fast")
    same_circuit(ref, fast, 1e-12)
    zero_ref = {e for e, v in ref.effects.items() if v == 0.0}
    zero_fast = {e for e, v in fast.effects.items() if v == 0.0}
    still = (clean == corrupted).all(dim=0)  # input pixels equal in every pair
    assert zero_ref == zero_fast and len(zero_ref) >= int(still.sum()) * 24 > 0
    assert zero_ref <= ref.edges  # kept: 0 < 0 is false


def test_zero_weight_edges_have_effect_exactly_zero():
    model = make_mlp(4, widths=(5, 4, 3))
    with torch.no_grad():
        model.linears[0].weight[1, 2] = 0.0
        model.linears[1].weight[0, 3] = 0.0
    clean, corrupted = make_batches(4, batch=5)
    for thr in (0.0, 1e-3):
        ref = acdc(model, clean, corrupted, threshold=thr, engine="reference")
        fast = acdc(model, clean, corrupted, threshold=thr, engine="fast")
        assert_same(ref, fast)
        g = graph_of(model)
        w0 = [e for e in ref.effects if (e.sender, e.sender_index, e.receiver_index) in
              {(g.connections[0].sender, 2, 1), (g.connections[1].sender, 3, 0)}]
        assert w0 and all(ref.effects[e] == 0.0 == fast.effects[e] for e in w0)
        assert all((e in ref.edges) == (thr == 0.0) for e in w0)


@pytest.mark.parametrize("block", [1, 3, 7])
def test_multi_block_speculation_matches_reference(block):
    """More candidate senders than one speculation block: chains are cut into blocks, each verified."""
    options = Options(mlp=MLPOptions(compiled=False, block=block))
    model = make_mlp(5, widths=(24, 6, 3))
    clean, corrupted = make_batches(5, batch=6, d_in=24)
    effects = acdc(model, clean, corrupted, threshold=0.0, engine="reference").effects
    thr = float(torch.tensor(list(effects.values())).abs().median())
    fast = acdc(model, clean, corrupted, threshold=thr, engine="fast", options=options)
    assert fast.settings["passes"] >= 6 * 24 // block  # every receiver needed several blocks
    assert_same(acdc(model, clean, corrupted, threshold=thr, engine="reference"), fast)


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


@pytest.mark.parametrize("predict,degree", [(False, 6), (True, 2), (True, 6)])
def test_model_guesses_only_decide_what_is_scored(predict, degree):
    """Guesses (the per-example polynomial model of the KL, ``guess.Polynomial``; "removed" without it) only
    choose which states are scored together: the circuit is the reference's whatever the model, and a good model
    needs fewer verification passes than none."""
    model = make_mlp(7, widths=(40, 5, 3))
    clean, corrupted = make_batches(7, batch=6, d_in=40)
    effects = acdc(model, clean, corrupted, threshold=0.0, engine="reference").effects
    thr = float(torch.tensor(list(effects.values())).abs().quantile(0.7))
    ref = acdc(model, clean, corrupted, threshold=thr, engine="reference")
    passes = {}
    for p, dg in ((predict, degree), (False, 6)):
        options = Options(mlp=MLPOptions(compiled=False, predict=p, degree=dg))
        fast = acdc(model, clean, corrupted, threshold=thr, engine="fast", options=options)
        assert_same(ref, fast)
        passes[(p, dg)] = fast.settings["passes"]
    if (predict, degree) == (True, 6):
        assert passes[(True, 6)] < passes[(False, 6)]


def test_polynomial_model_interpolates_the_per_example_kl():
    """Along the states the loop visits when it removes every edge, the model follows each example's KL term to a few
    percent of its range (a guess only), and degree 6 follows it more closely than a quadratic."""
    from circuits.acdc.mlp.guess import Polynomial

    model = make_mlp(5, widths=(12, 5, 4, 3))
    clean, corrupted = make_batches(5, batch=4, d_in=12)
    s = fast_state(model, clean, corrupted, 1e-3)
    d = (s.P[0] - s.A[0]) * s.W[0][1]
    z0 = s.Z[1][:, 1].clone()
    path = (z0.unsqueeze(1) + torch.cumsum(d, dim=1)).T  # states the loop reaches if it removes everything
    exact = s.scores(0, 1, path, per_example=True)
    spread = float(exact.max() - exact.min())
    err = {deg: float((Polynomial(s, 0, 1, z0, d, deg)._value(path) - exact).abs().max()) for deg in (2, 6)}
    assert spread > 0 and err[6] < 0.05 * spread and err[6] < err[2]


# ---------------------------------------------------------------------------- sparse input changes (pairs path)
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), share=st.floats(0.4, 0.9), quantile=st.floats(0.3, 0.9),
       block=st.sampled_from([3, 8, 192]), degree=st.sampled_from([2, 6]))
def test_pairs_path_matches_reference(seed, share, quantile, block, degree):
    """Where inputs move only some examples, the fast engine sums per-example KL differences over the examples a
    candidate moves (``_Pairs``), whatever the guessing model and with chains cut into blocks: still the
    reference's circuit, its effects to 1e-10."""
    model = make_mlp(seed % 97, widths=(30, 6, 5, 4))
    clean, corrupted = sparse_batches(seed, batch=6, d_in=30, share=share)
    effects = acdc(model, clean, corrupted, threshold=0.0, engine="reference").effects
    thr = float(torch.tensor([abs(v) for v in effects.values() if v != 0]).quantile(quantile))
    used = []
    plain = speculative_module._Pairs.chain
    options = Options(mlp=MLPOptions(compiled=False, block=block, degree=degree))
    with pytest.MonkeyPatch.context() as mp:  # a spy: which scorer ran (the options choose the path)
        mp.setattr(speculative_module._Pairs, "chain", lambda self, *a: used.append(1) or plain(self, *a))
        fast = acdc(model, clean, corrupted, threshold=thr, engine="fast", options=options)
    assert_same(acdc(model, clean, corrupted, threshold=thr, engine="reference"), fast)
    first = graph_of(model).connections[0].sender
    assert bool(used) == any(v != 0 for e, v in fast.effects.items() if e.sender == first)  # pairs: first layer


def test_pairs_effect_is_the_whole_batch_difference():
    """``_Pairs``' effect of a candidate (a sum over the examples it moves) equals the difference of whole-batch KLs
    of the two states, computed here from logits by a plain forward pass."""
    model = make_mlp(3, widths=(12, 5, 4, 3))
    clean, corrupted = sparse_batches(3, batch=5, d_in=12, share=0.6)
    s = fast_state(model, clean, corrupted, 1e-3)
    diff = s.P[0] - s.A[0]
    cand = torch.nonzero((diff != 0).any(dim=0)).flatten()
    d = diff[:, cand] * s.W[0][2, cand]
    pairs = speculative_module._Pairs(s, 0, 2, d)
    pred = torch.rand(len(cand), generator=torch.Generator().manual_seed(0)) < 0.5
    eff = pairs.chain(0, s.Z[1][:, 2].clone(), pred)
    kl_with = lambda z2: kl_with_first_hidden_input(model, clean, s.p.full_logits, torch.nn.functional.silu, 2, z2)  # noqa: E731

    z, cur = s.Z[1][:, 2].clone(), kl_with(s.Z[1][:, 2])
    for i in range(len(cand)):
        new = kl_with(z + d[:, i])
        assert math.isclose(float(eff[i]), new - cur, rel_tol=0, abs_tol=1e-12)
        if pred[i]:
            z, cur = z + d[:, i], new
