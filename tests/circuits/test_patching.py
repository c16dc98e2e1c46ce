"""run_circuit: the SPEC patching formula, through hooks, on MLPs and on non-MLP graphs."""

from __future__ import annotations

import pytest
import torch
from conftest import HeadMixer, ResidualMLP, make_batches, make_mlp
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits import Circuit, Edge, graph_of, run_circuit
from hooked_bimt.model import ACTIVATIONS

ABLATIONS = ["resample", "zero", "mean"]


def direct_spec(model, edges, clean, corrupted, ablation):
    """z_{k+1}[j] = b[j] + sum_i W[j,i] (a_k[i] if (i->j) in C else a'_k[i]), written out with matrices."""
    act = ACTIVATIONS[model.activation]
    L = model.n_layers

    def full_run(x):
        acts = [x]
        for k, lin in enumerate(model.linears):
            z = x @ lin.weight.T + lin.bias
            x = act(z) if k < L - 1 else z
            acts.append(x)
        return acts

    a_corr = full_run(corrupted)
    a = clean
    for k, lin in enumerate(model.linears):
        ap = a_corr[k]
        if ablation == "zero":
            ap = torch.zeros_like(ap)
        elif ablation == "mean":
            ap = ap.mean(0, keepdim=True).expand_as(ap)
        present = torch.zeros_like(lin.weight)
        for e in edges:
            if e.sender == model.layer_hook(k, "post"):
                present[e.receiver_index, e.sender_index] = 1.0
        # sum_i W[j,i] * (present * a_i + (1 - present) * a'_i), per example
        z = lin.bias + torch.einsum("ji,bi->bj", lin.weight * present, a) + torch.einsum("ji,bi->bj", lin.weight * (1 - present), ap)
        a = act(z) if k < L - 1 else z
    return a


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ablation=st.sampled_from(ABLATIONS), frac=st.floats(0, 1))
def test_hook_patching_equals_the_spec_formula(seed, ablation, frac):
    model = make_mlp(seed % 7, widths=(4, 3, 3, 2), activation=["silu", "tanh", "relu"][seed % 3])
    clean, corrupted = make_batches(seed, batch=5, d_in=4)
    g = torch.Generator().manual_seed(seed)
    all_edges = sorted(graph_of(model).edges())
    keep = torch.rand(len(all_edges), generator=g) < frac
    edges = [e for e, k in zip(all_edges, keep) if k]
    circuit = Circuit.from_edges(graph_of(model), edges)
    got = run_circuit(model, circuit, clean, corrupted, ablation=ablation)
    torch.testing.assert_close(got, direct_spec(model, edges, clean, corrupted, ablation), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: make_mlp(3), lambda: ResidualMLP(with_weight=True),
                                  lambda: ResidualMLP(with_weight=False), lambda: HeadMixer()])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_full_circuit_is_clean_run_and_empty_is_corrupted(make, ablation):
    model = make()
    graph = graph_of(model)
    shape = (3, 2) if isinstance(model, HeadMixer) else ()
    d_in = model.widths[0] if hasattr(model, "widths") else 4
    clean, corrupted = make_batches(1, batch=5, d_in=d_in, shape=shape)
    with torch.no_grad():
        torch.testing.assert_close(run_circuit(model, Circuit.full(graph), clean, corrupted, ablation=ablation),
                                   model(clean), rtol=0, atol=1e-12)
        empty = run_circuit(model, Circuit.empty(graph), clean, corrupted, ablation=ablation)
        if ablation == "resample":
            torch.testing.assert_close(empty, model(corrupted), rtol=0, atol=1e-12)
        elif ablation == "mean":  # every example sees the same mean activations: identical rows
            torch.testing.assert_close(empty, empty[:1].expand_as(empty), rtol=0, atol=1e-12)
        assert not model.hook_dict["hook_logits"].fwd_hooks  # hooks never stay on the model


def test_generic_contribute_path_equals_weight_path():
    with_w, without = ResidualMLP(with_weight=True, seed=4), ResidualMLP(with_weight=False, seed=4)
    clean, corrupted = make_batches(2, batch=5, d_in=4)
    graph = graph_of(with_w)
    edges = [e for i, e in enumerate(sorted(graph.edges())) if i % 3 != 1]
    for ablation in ABLATIONS:
        a = run_circuit(with_w, Circuit.from_edges(graph, edges), clean, corrupted, ablation=ablation)
        b = run_circuit(without, Circuit.from_edges(graph_of(without), edges), clean, corrupted, ablation=ablation)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_head_axis_edge_matches_a_hand_computation():
    """HeadMixer with only in[0] -> z[1] and post[1] -> logits: z[1] = mix[1,0] x[0] V + sum_{g != 0} mix[1,g] x'[g] V."""
    model = HeadMixer(seed=2)
    clean, corrupted = make_batches(3, batch=4, shape=(3, 2))
    edges = [Edge("hook_in", 0, "hook_z", 1), Edge("hook_post", 1, "hook_logits", 0)]
    got = run_circuit(model, Circuit.from_edges(graph_of(model), edges), clean, corrupted)
    with torch.no_grad():
        h_corr = torch.tanh(model._mix(corrupted))
        mixed_in_1 = torch.einsum("bgd,g,de->be", torch.cat([clean[:, :1], corrupted[:, 1:]], 1), model.mix[1], model.v)
        h = h_corr.clone()
        h[:, 1] = torch.tanh(mixed_in_1)
        want = model._out(torch.cat([h_corr[:, :1], h[:, 1:2], h_corr[:, 2:]], 1)) + model.bias
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_bad_inputs_raise_clear_errors(mlp, batches):
    clean, corrupted = batches
    graph = graph_of(mlp)
    full = Circuit.full(graph)
    with pytest.raises(ValueError, match="batch sizes"):
        run_circuit(mlp, full, clean, corrupted[:3])
    with pytest.raises(ValueError, match="shapes differ"):
        run_circuit(mlp, full, clean, torch.cat([corrupted, corrupted], 1))
    bad = clean.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        run_circuit(mlp, full, bad, corrupted)
    with pytest.raises(ValueError, match="unknown ablation"):
        run_circuit(mlp, full, clean, corrupted, ablation="noise")
    with pytest.raises(TypeError, match="torch.Tensor"):
        run_circuit(mlp, full, clean.tolist(), corrupted)
    other = Circuit.full(graph_of(make_mlp(0, widths=(5, 6, 3))))
    with pytest.raises(ValueError, match="graph of"):
        run_circuit(mlp, other, clean, corrupted)


def test_inputs_follow_the_model_dtype(batches):
    model = make_mlp(0).float()
    clean, corrupted = batches
    out = run_circuit(model, Circuit.empty(graph_of(model)), clean, corrupted)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, model(corrupted.float()), rtol=1e-5, atol=1e-5)
