"""Provenance enforced (issue 10 item 5): run_circuit, evaluate and the viewers refuse a circuit found on
another model (fingerprint or graph), naming both; ``check_model=False`` allows a deliberate transfer."""

from __future__ import annotations

import dataclasses
import re

import matplotlib.pyplot as plt
import pytest
import torch
from conftest import make_batches, make_mlp

from circuits import Circuit, acdc, evaluate, graph_of, run_circuit
from circuits.viz import circuit_graph, network_vs_circuit

LABELS = dict(clean_labels=torch.tensor([0, 1, 2, 0, 1, 2]), corrupt_labels=torch.tensor([1, 2, 0, 2, 0, 1]))


def _use(name, model, circuit, batches, **kw):
    if name == "run_circuit":
        return run_circuit(model, circuit, *batches, **kw)
    if name == "evaluate":
        return evaluate(model, circuit, *batches, **LABELS, **kw)
    if name == "circuit_graph":
        return circuit_graph(model, circuit, input_shape=None, **kw)
    fig = network_vs_circuit(model, circuit, **kw)
    plt.close(fig)
    return fig


USERS = ["run_circuit", "evaluate", "circuit_graph", "network_vs_circuit"]


@pytest.fixture
def found():
    model, batches = make_mlp(0), make_batches(0)
    circuit = acdc(model, *batches, threshold=0.003)
    assert 0 < circuit.n_edges < circuit.n_total_edges
    return model, batches, circuit


def _fine_tuned(model):
    tuned = make_mlp(0)
    tuned.load_state_dict(model.state_dict())
    with torch.no_grad():
        tuned.linears[1].weight[0, 0] += 1e-3  # one weight moved a little
    return tuned


@pytest.mark.parametrize("user", USERS)
def test_a_circuit_from_another_model_is_refused_naming_both_fingerprints(found, user):
    model, batches, circuit = found
    for other in (make_mlp(1), _fine_tuned(model)):  # same architecture: another seed, a fine-tuned copy
        with pytest.raises(ValueError, match="fingerprint") as err:
            _use(user, other, circuit, batches)
        msg = err.value.args[0]
        prints = re.findall(r"fingerprint ([0-9a-f]{16})", msg)
        assert prints[0] == circuit.model["fingerprint"] and len(prints) == 2 and prints[1] != prints[0], msg
        assert "check_model=False" in msg
        _use(user, other, circuit, batches, check_model=False)  # the deliberate transfer works


def test_the_transfer_runs_the_same_edges_on_the_other_model(found):
    model, batches, circuit = found
    tuned = _fine_tuned(model)
    anonymous = Circuit.from_edges(graph_of(tuned), circuit.edges)  # a hand-made circuit stores no model
    assert anonymous.model == {}
    torch.testing.assert_close(run_circuit(tuned, circuit, *batches, check_model=False),
                               run_circuit(tuned, anonymous, *batches), rtol=0, atol=0)
    assert not torch.equal(run_circuit(tuned, anonymous, *batches), run_circuit(model, circuit, *batches))


@pytest.mark.parametrize("user", USERS)
def test_a_circuit_from_another_graph_is_refused_naming_both_signatures(found, user):
    model, batches, circuit = found
    g = graph_of(model)
    other = make_mlp(0)  # same weights (same fingerprint), but a different declaration with the same edges
    other.circuit_graph = lambda: dataclasses.replace(g, node_output={}, activations={})
    assert graph_of(other).n_edges == g.n_edges
    with pytest.raises(ValueError, match="signature") as err:
        _use(user, other, circuit, batches)
    sigs = re.findall(r"signature ([0-9a-f]{16})", err.value.args[0])
    assert sigs == [circuit.model["graph"], graph_of(other).signature()] and sigs[0] != sigs[1]
    _use(user, other, circuit, batches, check_model=False)


def test_the_same_model_a_float64_copy_and_a_reloaded_circuit_are_accepted(found, tmp_path):
    model, batches, circuit = found
    loaded = Circuit.load(circuit.save(tmp_path / "c.json"))
    assert loaded.model == circuit.model
    for user in USERS:
        _use(user, model, loaded, batches)
    f32 = make_mlp(0).float()
    c32 = acdc(f32, *batches, threshold=0.003)
    assert c32.model["fingerprint"] == Circuit.load(c32.save(tmp_path / "d.json")).model["fingerprint"]
    run_circuit(f32.double(), c32, *batches)  # float32 -> float64 is exact: the same fingerprint


def test_edges_outside_the_graph_are_refused_even_without_the_model_check(found):
    model, batches, circuit = found
    small = make_mlp(0, widths=(5, 3, 3, 3))
    with pytest.raises(ValueError, match="edges"):
        run_circuit(small, circuit, *make_batches(0), check_model=False)
